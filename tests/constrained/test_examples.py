"""The examples run offline in --quick mode (as subprocesses, like a user would run them)."""

from __future__ import annotations

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
