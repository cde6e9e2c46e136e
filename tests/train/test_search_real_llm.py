"""A Pareto search on the real embedded model (SmolLM2-135M on llama.cpp) completes within
its metric-call budget, with the LLM usage in the candidates' lineage."""

from __future__ import annotations

import pytest

import tracekit as tk
from tracekit.training import Trainer, read_log

pytestmark = pytest.mark.real_llm

MESSAGES = [("win a free prize now", "spam"), ("claim your cash reward", "spam"),
            ("free money, click here", "spam"), ("you won a gift card", "spam"),
            ("lunch at noon?", "ham"), ("the meeting moved to 3pm", "ham"),
            ("see you at the station", "ham"), ("draft attached for review", "ham")]


@tk.bundle()
def classify(message, keywords):
    """Label the message spam if it contains any of the comma-separated keywords, else ham."""
    words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
    return "spam" if any(w in message.lower() for w in words) else "ham"


def test_pareto_run_on_the_embedded_model_stays_within_its_metric_budget(embedded_llm, tmp_path):
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")

    def metric(prediction, example):
        return 1.0 if prediction == example[1] else (0.0, f"labeled {prediction}, expected {example[1]}")

    opt = tk.Optimizer([keywords], llm=embedded_llm, max_reasks=1)
    budget = 60
    result = Trainer(lambda m: classify(m, keywords), opt, metric, train=MESSAGES, val=MESSAGES,
                     batch_size=4, max_steps=8, strategy="pareto", max_metric_calls=budget,
                     run_dir=tmp_path / "run", progress=False, executor="serial",
                     batch_objective=False).fit()
    spent = result.budget["spent"]["metric_calls"]
    assert spent <= budget
    assert result.stop_reason.startswith((f"max_metric_calls={budget}", "max_steps=8"))
    assert result.llm_calls >= 1 and result.prompt_tokens > 0  # the real model was asked
    log = read_log(tmp_path / "run")
    assert log[-1]["spent_metric_calls"] == spent
    steps = [r for r in log[1:] if r["candidate"]["origin"] == "step"]
    assert steps and all(r["candidate"]["parents"] for r in steps)
    assert any(r["llm_calls"] >= 1 for r in steps)
    assert result.best_score >= result.initial_score
    assert keywords.data == result.best_params["keywords"]
