"""The Trainer with scripted solvers: dispatch, aggregation, revert, early stopping, seeds."""

from __future__ import annotations

import json

import pytest
import torch

import tracekit as tk
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan
from tracekit.bundled import bundle
from tracekit.training import Score, Trainer, aggregate_feedback, as_score
from tracekit.training.trainer import ExampleResult


def make_trainer(model, opt, **kw):
    kw.setdefault("progress", False)
    return Trainer(model, opt, accuracy, train=DATA, val=DATA, **kw)


def test_mixed_parameters_are_dispatched_to_their_solvers_in_one_step(empty_registry):
    """Text -> "text"; a tensor with a gradient -> "gradient"; a float and a categorical
    -> "bayesian" (the Trainer gives the optimizer an objective)."""
    built = []
    register_plan("text", {"keywords": ["good, great, nice, lovely"]}, built)
    register_plan("bayesian", {"threshold": [0.4], "mode": ["strict"]}, built)
    register_plan("gradient", {}, built)

    @bundle()
    def run(text, keywords, threshold, mode, w):
        words = text.lower().split()
        keys = {k.strip() for k in keywords.split(",")}
        share = sum(x in keys for x in words) / len(words)
        return "pos" if share >= threshold else "neg"

    class Mixed(tk.Module):
        def __init__(self):
            self.keywords = tk.param("good", name="keywords")
            self.threshold = tk.param(0.5, name="threshold", bounds=(0.0, 1.0))
            self.mode = tk.param("loose", name="mode", choices=["loose", "strict"])
            self.w = tk.param(torch.ones(2), name="w")

        def forward(self, text):
            return run(text, self.keywords, self.threshold, self.mode, self.w)

    def metric(prediction, example):
        loss = (model.w.data ** 2).sum()  # a differentiable loss gives w a gradient
        return Score(1.0 if prediction == example[1] else 0.0, None, loss)

    model = Mixed()
    opt = tk.Optimizer(model.parameters())
    trainer = Trainer(model, opt, metric, train=DATA, val=DATA, batch_size=8, max_steps=1,
                      progress=False, executor="serial")
    result = trainer.fit()
    step = result.history[1]
    solvers = {c["name"]: c["solver"] for c in step["changes"]}
    assert solvers == {"keywords": "scripted-text", "mode": "scripted-bayesian",
                       "threshold": "scripted-bayesian", "w": "scripted-gradient"}
    changed = {c["name"] for c in step["changes"] if c["changed"]}
    assert changed == {"keywords", "mode", "threshold"}
    assert result.best_score == 1.0 and model.keywords.data == "good, great, nice, lovely"
    assert opt.objective is None  # the Trainer's objective was only lent for fit()


def test_feedback_of_a_minibatch_is_aggregated_into_one_bounded_step(empty_registry):
    built = []
    register_plan("text", {"keywords": ["good"]}, built)
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    make_trainer(model, opt, batch_size=8, max_steps=1, batch_objective=False).fit()
    solver = built[0]
    assert solver.calls == 1 and len(solver.seen_feedback) == 1  # one backward for 8 examples
    text = solver.seen_feedback[0]
    assert text.startswith("Minibatch of 8 examples: mean score 0.625")
    assert text.count("expected pos") == 3  # the three wrong ones, worst first
    assert text.index("expected pos") < text.index("score 1")
    assert "loss = -0.625" in text

    results = [ExampleResult(i, "neg", 0.0, "x" * 50) for i in range(40)]
    bounded = aggregate_feedback(results, [(f"t{i}", "pos") for i in range(40)], max_chars=400)
    assert len(bounded) <= 400 + 80 and "more examples not shown" in bounded


def test_a_step_that_makes_validation_worse_is_reverted(empty_registry):
    register_plan("text", {"keywords": ["bad, awful, rude, cold", "good, great, nice, lovely"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    result = make_trainer(model, opt, batch_size=8, max_steps=2, batch_objective=False).fit()
    first, second = result.history[1], result.history[2]
    assert first["val_score"] < result.history[0]["val_score"] and first["reverted"]
    assert first["params"]["keywords"] == "good"  # logged after the revert
    assert second["improved"] and second["val_score"] == 1.0
    assert result.best_score == 1.0 and result.best_step == 2


def test_without_revert_the_best_parameters_are_still_restored_at_the_end(empty_registry):
    register_plan("text", {"keywords": ["good, great, nice, lovely", "bad"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    result = make_trainer(model, opt, batch_size=8, max_steps=2, revert_on_worse=False,
                          batch_objective=False).fit()
    assert result.history[2]["params"]["keywords"] == "bad" and not result.history[2]["reverted"]
    assert model.keywords.data == "good, great, nice, lovely" and result.best_step == 1


def test_early_stopping_after_patience_steps_without_improvement(empty_registry):
    register_plan("text", {"keywords": ["bad"] * 10})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    result = make_trainer(model, opt, batch_size=2, epochs=5, patience=2, batch_objective=False).fit()
    assert result.steps == 2 and "early stopping" in result.stop_reason
    assert model.keywords.data == "good"


def test_seed_makes_minibatches_reproducible_and_different_seeds_differ(empty_registry):
    register_plan("text", {})

    def batches(seed):
        model = KeywordModel()
        opt = tk.Optimizer([model.keywords])
        seen = []

        def metric(prediction, example):
            seen.append(example[0])
            return accuracy(prediction, example)

        Trainer(model, opt, metric, train=DATA, val=DATA[:1], batch_size=3, epochs=2, seed=seed,
                progress=False, executor="serial", batch_objective=False).fit()
        return seen

    assert batches(1) == batches(1)
    assert batches(1) != batches(2)


def test_metric_forms_are_normalized():
    assert as_score(0.5) == Score(0.5)
    assert as_score((1, "ok")) == Score(1.0, "ok")
    assert as_score("too long") == Score(None, "too long")
    assert as_score({"score": 0.2, "feedback": "meh"}) == Score(0.2, "meh")
    assert as_score(tk.Feedback(loss=0.3, text="t")).value == pytest.approx(-0.3)
    with pytest.raises(TypeError, match="must return a score"):
        as_score(object())
    with pytest.raises(TypeError, match="unknown keys"):
        as_score({"score": 1, "grade": "A"})


def test_text_only_metric_cannot_validate(empty_registry):
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    trainer = Trainer(model, opt, lambda p, e: "looks wrong", train=DATA, progress=False)
    with pytest.raises(ValueError, match="validation needs a score"):
        trainer.fit()


def test_lower_is_better_metrics(empty_registry):
    register_plan("text", {"keywords": ["good, great, nice, lovely"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])

    def errors(prediction, example):
        return 0.0 if prediction == example[1] else 1.0

    result = Trainer(model, opt, errors, train=DATA, val=DATA, batch_size=8, max_steps=1,
                     higher_is_better=False, progress=False, batch_objective=False).fit()
    assert result.initial_score == 0.375 and result.best_score == 0.0


def test_bad_arguments_are_explained():
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    with pytest.raises(ValueError, match="training set is empty"):
        Trainer(model, opt, accuracy, train=[])
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(model, opt, accuracy, train=DATA, batch_size=0)
    with pytest.raises(TypeError, match="tk.Optimizer"):
        Trainer(model, object(), accuracy, train=DATA)
    with pytest.raises(ValueError, match="executor"):
        Trainer(model, opt, accuracy, train=DATA, executor="cluster")


def test_run_directory_files(empty_registry, tmp_path):
    register_plan("text", {"keywords": ["good, great", "good, great, nice, lovely"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    result = make_trainer(model, opt, batch_size=4, epochs=1, run_dir=tmp_path,
                          batch_objective=False).fit()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in ("train_score", "val_score", "params", "llm_calls", "prompt_tokens", "cost", "seconds"):
        assert key in records[1]
    assert json.loads((tmp_path / "best.json").read_text()) == {"keywords": "good, great, nice, lovely"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_score"] == result.best_score == 1.0
    assert "validation score" in str(result)
