"""The flagship example runs with --quick in a subprocess (scripted default LLM), and a
real end-to-end Trainer run with the built-in gradient solver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUNNER = r"""
import json, runpy, sys
import tracekit as tk
calls = []
def scripted(messages, **kwargs):
    calls.append(1)
    prompt = json.dumps(messages)
    suggestion = {}
    if "cue_words" in prompt:
        suggestion["cue_words"] = ("urgent, down, crash, broken, outage, locked, charged, loss, breach, "
                                   "emergency, failed, blocked, losing")
    if "match" in prompt:
        suggestion["match"] = "prefix"
    return json.dumps({"reasoning": "cover the missed urgent tickets", "suggestion": suggestion})
tk.llm.set_default(scripted)
sys.argv = [sys.argv[1], "--quick", "--run-dir", sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
print("LLM_CALLS", len(calls))
"""


def test_flagship_quick_with_a_scripted_llm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    example = ROOT / "examples" / "joint_prompt_and_hyperparameters.py"
    done = subprocess.run([sys.executable, "-c", RUNNER, str(example), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-2])
    assert int(lines[-1].split()[1]) >= 1
    assert summary["after"] > summary["before"] + 0.2
    assert "outage" in summary["params"]["cue_words"]
    assert summary["params"]["match"] in ("word", "prefix", "substring")
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    solvers = {c["name"]: c["solver"] for c in records[1]["changes"]}
    # the Trainer lends the optimizer an objective: the number and the categorical are
    # searched by Optuna, the cue words go to the LLM
    assert solvers == {"threshold": "bayesian", "match": "bayesian", "cue_words": "text"}


def test_end_to_end_with_the_real_gradient_solver():
    import torch

    import tracekit as tk
    from tracekit.training import Score, Trainer

    torch.manual_seed(0)
    xs = torch.linspace(-1, 1, 32)
    data = [(float(x), float(3 * x - 1)) for x in xs]
    w = tk.param(torch.zeros(2), name="w")

    def line(x):
        return w * torch.tensor([x, 1.0])

    def metric(prediction, example):
        loss = (prediction.sum() - example[1]) ** 2
        return Score(-float(loss.detach()), None, loss)

    opt = tk.Optimizer([w], numeric="adam", lr=0.5)
    result = Trainer(line, opt, metric, train=data[::2], val=data[1::2], batch_size=8, epochs=12,
                     progress=False, executor="serial", trace_examples=None).fit()
    assert result.initial_score < -3 and result.best_score > -0.05
    assert torch.allclose(w.data, torch.tensor([3.0, -1.0]), atol=0.15)
    assert result.history[1]["changes"][0]["solver"] == "gradient"

