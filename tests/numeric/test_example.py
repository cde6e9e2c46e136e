"""The calibration example runs end to end in its reduced mode and recovers the parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "numeric_calibration.py"


def test_numeric_calibration_example_quick():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: threads only add sync cost
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--quick"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert result["loss_last"] < 0.05 * result["loss_first"]
    for name, truth in result["truth"].items():
        assert abs(result["estimates"][name] - truth) < 0.1 * truth + 0.05, name
    guess = result["llm_guess"]  # the comparison with letting the LLM guess the numbers ran
    assert guess["steps"] == 1
    assert guess["loss_last"] <= guess["loss_first"] + 1e-12  # never worse: candidates are checked
    assert result["loss_last"] < guess["loss_last"]  # gradients beat guessing on this task
