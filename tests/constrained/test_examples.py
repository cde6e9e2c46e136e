"""The examples run offline in --quick mode (as subprocesses, like a user would run them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, expected", [
    ("constrained_portfolio.py", ["status=optimal", "4/4 instances solved", "frontier is monotone: True"]),
    ("bilevel_ridge.py", ["lambda* =", "relative error", "status optimal"]),
])
def test_example_quick(script, expected):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in expected:
        assert text in proc.stdout, proc.stdout


@pytest.mark.real_llm
def test_portfolio_agent_quick():
    """The argmin workflow example: a categorical (embedded LLM), forecasts (gradients) and a
    constrained allocation trained together; the cvxpy form of the allocation agrees."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "portfolio_agent.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ["step 2:", "warm_started=True", "final allocation:", "active constraints: budget",
                 "cvxpy form agrees: True"]:
        assert text in proc.stdout, proc.stdout
