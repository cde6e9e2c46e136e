"""examples/from_trace.py (Trace's examples/greeting.py with tracekit imports) runs end to end:
as a script with a scripted default LLM, and with the real embedded model."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit as tk
from tracekit import trace

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "from_trace.py"

RUNNER = r"""
import json, runpy, sys
import tracekit as tk
from tracekit import trace
seen = []
def scripted(messages, **kwargs):
    seen.append(messages[-1]["content"])
    if "suggestion" in messages[0]["content"] + messages[-1]["content"]:  # the optimizer
        return json.dumps({"reasoning": "greet in the user's language", "suggestion": {
            "Agent.decide_lang": "def decide_lang(self, response):\n    return 'es'"}})
    return "Juan"  # call_llm: the name
tk.llm.set_default(scripted)
agent = runpy.run_path(sys.argv[1])["train"]()
print(json.dumps({"calls": len(seen), "code": agent.decide_lang.parameter.data}))
"""


def test_runs_as_a_script_with_a_scripted_llm():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", RUNNER, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Training Epoch 0" in done.stdout and "Training Epoch 1" not in done.stdout  # "Correct" at once
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["calls"] == 3  # two call_llm calls and one optimizer call
    assert summary["code"] == "def decide_lang(self, response):\n    return 'es'"


def test_the_diff_is_the_imports():
    source = EXAMPLE.read_text(encoding="utf-8")
    assert "opto" not in source.split('"""', 2)[2]
    assert "from tracekit.trace import node, bundle, model, ExecutionError" in source


@pytest.mark.real_llm
def test_runs_with_the_embedded_model(embedded_llm, capsys):
    tk.llm.set_default(embedded_llm)
    try:
        agent = runpy.run_path(str(EXAMPLE))["train"]()
    finally:
        tk.llm.set_default(None)
    out = capsys.readouterr().out
    print(out[-3000:])  # the step report, for the record
    assert "Training Epoch 0" in out
    params = agent.parameters()
    assert len(params) == 4
    assert all(p.feedback for p in params)  # the feedback reached both prompts and both functions
    try:  # whatever the small model proposed was validated: the agent still runs
        greeting = agent("Hola, soy Juan.")
        assert isinstance(greeting.data, str)
    except trace.ExecutionError as e:
        assert e.exception_node.error.type
