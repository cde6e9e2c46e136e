"""The `tracekit` command line: run (script and config), show, graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tracekit.cli import main

ROOT = Path(__file__).resolve().parents[2]

TRAINING = '''
import tracekit as tk
from tracekit import seam as registry
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan
from tracekit.training import Trainer


def build(run_dir=None, resume=False, steps=2):
    registry._factories.clear(); registry._BUILTIN.clear()
    register_plan("text", {"keywords": ["good, great", "good, great, nice, lovely"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    return Trainer(model, opt, accuracy, train=DATA, val=DATA, batch_size=4, max_steps=steps,
                   run_dir=run_dir, resume=resume, progress=False, batch_objective=False)


def output():
    return KeywordModel()("good day")


if __name__ == "__main__":
    import sys
    build(run_dir=sys.argv[1]).fit()
    print("SCRIPT DONE", sys.argv[1:])
'''


def cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tracekit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_run_a_script_then_show_the_run(tmp_path):
    script = tmp_path / "train_kw.py"
    script.write_text(TRAINING)
    run_dir = tmp_path / "run"
    done = cli("run", script, run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"SCRIPT DONE ['{run_dir}']" in done.stdout
    shown = cli("show", run_dir, "--steps")
    assert shown.returncode == 0, shown.stderr
    assert "0.625 before -> 1 best (step 2)" in shown.stdout
    assert "keywords = 'good, great, nice, lovely'" in shown.stdout
    as_json = json.loads(cli("show", run_dir / "log.jsonl", "--json").stdout)
    assert as_json["best_score"] == 1.0 and as_json["steps"] == 2 and as_json["best_step"] == 2
    assert as_json["best_params"] == {"keywords": "good, great, nice, lovely"}
    plotted = cli("show", run_dir, "--plot", tmp_path / "run.png")
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"


def test_run_a_config_and_resume(tmp_path):
    (tmp_path / "train_kw.py").write_text(TRAINING)
    config = tmp_path / "train.toml"
    config.write_text(f'trainer = "train_kw.py:build"\nrun_dir = "{tmp_path / "cfg"}"\n[options]\nsteps = 1\n')
    done = cli("run", config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training: 1 steps" in done.stdout
    config.write_text(f'trainer = "train_kw.py:build"\nrun_dir = "{tmp_path / "cfg"}"\n[options]\nsteps = 2\n')
    again = cli("run", config, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "cfg" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]  # continued, not restarted


def test_graph_as_text_and_dot(tmp_path):
    (tmp_path / "train_kw.py").write_text(TRAINING)
    text = cli("graph", tmp_path / "train_kw.py:output")
    assert text.returncode == 0, text.stderr[-2000:]
    assert "keywords [text] = 'good'" in text.stdout and "classify(" in text.stdout
    dot = cli("graph", tmp_path / "train_kw.py:output", "-o", tmp_path / "g.dot")
    assert dot.returncode == 0, dot.stderr
    content = (tmp_path / "g.dot").read_text()
    assert content.startswith("digraph tracekit {") and "->" in content and "shape=box" in content
    assert "fillcolor" in content  # the DOT of tk.render (graph_to_dot), the only DOT writer
    svg = cli("graph", tmp_path / "train_kw.py:output", "-o", tmp_path / "g.svg")
    assert svg.returncode == 0, svg.stderr[-2000:]
    assert f"wrote {tmp_path / 'g.svg'}" in svg.stdout and "<svg" in (tmp_path / "g.svg").read_text()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nothing")]) == 1
    assert "no run log" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('trainer = 3\n')
    assert main(["run", str(bad)]) == 1
    assert "module:function" in capsys.readouterr().err
    assert main(["graph", "no_such_module_xyz:f"]) == 1
    assert "cannot import" in capsys.readouterr().err
    assert main([]) == 2
