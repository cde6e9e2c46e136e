"""The README's demo (`make demo`: examples/quickstart.py) on the real embedded model.

One `opt.step()` must update the text parameter through the LLM optimizer and the tensor
through its gradient, and the demo must write the two pictures it names.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_llm
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "quickstart.py"


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_step_updates_the_text_by_the_llm_and_the_tensor_by_its_gradient(embedded_llm_nocache, tmp_path):
    quickstart = load_quickstart()
    reports = quickstart.main(quick=True, out_dir=tmp_path, llm=embedded_llm_nocache)
    assert len(reports) == 2
    both = []
    for report in reports:
        text, tensor = report["positive_words"], report["weights"]
        assert (text.kind, text.solver) == ("text", "text"), text
        assert (tensor.kind, tensor.solver) == ("numeric", "gradient"), tensor
        assert tensor.changed, tensor  # the loss reaches the weights every step
        assert report.llm_calls >= 1 and report.tokens > 0, str(report)  # the real model was asked
        if text.changed:
            assert text.new != text.old
            both.append(report)
    assert both, "no step changed the text parameter:\n" + "\n".join(map(str, reports))
    assert sorted(both[0].changed) == ["positive_words", "weights"]
    ET.fromstring((tmp_path / "graph.svg").read_bytes())
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_script_runs_and_names_its_pictures(embedded_llm, tmp_path):
    """What `make demo` runs, as a script (it starts its own embedded server)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "pictures")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "features(text=" in out.stdout and "classify(x=" in out.stdout
    # each step: one line, then one line per parameter (name: old -> new (solver) — reason)
    lines = out.stdout.splitlines()
    steps = [i for i, line in enumerate(lines) if re.match(r"step \d: accuracy before it", line)]
    assert len(steps) == 2, out.stdout[-3000:]
    for i in steps:
        assert lines[i + 1].startswith("  positive_words: ") and "(text)" in lines[i + 1]
        assert lines[i + 2].startswith("  weights: ") and "(gradient)" in lines[i + 2]
        assert not lines[i + 3].startswith("  ")  # no more lines for the step
    assert all(len(line) <= 120 for line in lines if "picture of" not in line)
    assert "training" in out.stderr  # the progress bar
    for label, name in (("picture of the graph", "graph.svg"), ("picture of the run", "run.png")):
        match = re.search(rf"{label}: (\S+)", out.stdout)
        assert match, out.stdout[-2000:]
        assert Path(match.group(1)) == tmp_path / "pictures" / name and Path(match.group(1)).stat().st_size > 0
