"""The sandbox with the real embedded model (SmolLM2-135M on llama.cpp) proposing code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit as tk
from tracekit.sandbox.client import SandboxedFunction

pytestmark = pytest.mark.real_llm
ROOT = Path(__file__).resolve().parents[2]


def test_real_proposals_are_defined_scored_and_run_in_the_sandbox(embedded_llm_nocache):
    @tk.bundle(trainable=True)
    def parse(text):
        """Return the number after the colon in text, as an int."""
        return text.split(":")[0]

    code = parse.parameters()[0]
    cases = [("total: 12", 12), ("sum: 7", 7)]

    def errors():
        with tk.no_trace():
            wrong = 0
            for text, want in cases:
                try:
                    wrong += parse(text) != want
                except Exception:
                    wrong += 1
            return wrong

    opt = tk.Optimizer([{"params": [code], "objective": errors}], llm=embedded_llm_nocache,
                       max_reasks=1, n_candidates=2)
    tried = []
    for _ in range(3):
        out = parse("total: 12")
        opt.zero_feedback()
        opt.backward(out, f"parse returned {out.data!r}; it should return 12")
        report = opt.step()
        tried += [v for v in parse.versions._compiled.values()]
        if report.changed:
            break
    assert tried, f"the model gave no code that passed the checks in 3 steps: {report}"
    assert all(isinstance(fn, SandboxedFunction) for fn in tried)
    if report.changed:
        assert isinstance(parse.versions.function_for(code.raw), SandboxedFunction)
        assert isinstance(parse("total: 12"), tk.Node)  # runs in the worker, result or error node


RUNNER = r"""
import json, runpy, sys
import tracekit as tk
from tracekit.sandbox.client import SandboxedFunction, _workers
sys.argv = [sys.argv[1], "--quick"]
ns = runpy.run_path(sys.argv[0], run_name="__main__")
versions = ns["parse_amount"].versions._compiled.values()
print(json.dumps({"versions": len(versions),
                  "all_sandboxed": all(isinstance(v, SandboxedFunction) for v in versions),
                  "worker_starts": sum(w.starts for w in _workers.values())}))
"""


def test_example_trainable_agent_runs_sandboxed_on_the_real_model(embedded_llm):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "examples" / "trainable_agent.py")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    summary, sandbox = json.loads(lines[-2]), json.loads(lines[-1])
    assert summary["final_errors"] <= summary["start_errors"]
    assert sandbox["all_sandboxed"]
    assert sandbox["worker_starts"] >= (1 if sandbox["versions"] else 0)
