"""The example runs with --quick as a subprocess (here with a scripted default LLM)."""

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
    if len(calls) == 1:
        return "not json at all"
    return json.dumps({"reasoning": "look for digits", "suggestion": {
        "keywords": "refund, charged, invoice",
        "parse_amount": "def parse_amount(text):\n    for w in text.split():\n        if w.isdigit():\n            return int(w)\n    return None"}})
tk.llm.set_default(scripted)
sys.argv = [sys.argv[1], "--quick"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_trainable_agent_quick_with_scripted_llm():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "examples" / "trainable_agent.py")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["start_errors"] == 6 and summary["final_errors"] == 0
    assert summary["keywords"] == "refund, charged, invoice"
    assert "step 1: 0 errors" in done.stdout
