"""The README's demo runs end to end (reduced mode)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_learns():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "features(text=" in out.stdout and "classify(x=" in out.stdout
    assert "weights: 1 record(s), gradient" in out.stdout
    assert "After" in out.stdout, out.stdout[-2000:]
