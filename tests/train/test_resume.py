"""Checkpoints: kill a training subprocess with SIGKILL mid-run, resume, lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracekit.training import load_checkpoint, read_log

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import os, random, sys, time
import tracekit as tk
from tracekit import seam as registry
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan
from tracekit.training import RayExecutor, Trainer

registry._factories.clear(); registry._BUILTIN.clear()
# the solver proposes from its step counter: a resumed run matches the uninterrupted one
# only when the optimizer state was restored
lists = ["good", "good, great", "bad", "good, great, nice", "awful", "good, great, nice, lovely"]
register_plan("text", {"keywords": [lists[k % len(lists)] for k in range(100)]})
register_plan("bayesian", {"threshold": [round(0.3 + 0.05 * (k % 5), 2) for k in range(100)]})
delay = float(sys.argv[2])
executor = sys.argv[3]

def metric(prediction, example):
    time.sleep(delay)
    score = accuracy(prediction, example)
    if executor != "serial":  # on the workers, whose RNGs are not the driver's
        return score
    # in the driver it consumes the global RNG: resuming must restore it too
    return (score if isinstance(score, float) else score[0]) + 1e-3 * random.random()

if executor == "ray":  # join the running cluster, as on a real one
    executor = RayExecutor(address="auto", max_concurrency=2,
                           init_options={"runtime_env": {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}})
model = KeywordModel()
opt = tk.Optimizer(model.parameters())
result = Trainer(model, opt, metric, train=DATA, val=DATA[:4], batch_size=3, epochs=4, seed=5,
                 run_dir=sys.argv[1], resume=True, progress=False, executor=executor).fit()
print("FINAL", result.best_score, model.keywords.data, model.threshold.data)
'''


def run(run_dir, delay, executor="serial", **kw):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir), str(delay), executor], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in records]


def kill_driver_and_resume(tmp_path, executor: str = "serial", delay: float = 0.05) -> None:
    """A training driver killed with SIGKILL mid-run, then resumed: the same final
    parameters, run log and summary as an uninterrupted run."""
    reference = run(tmp_path / "reference", 0.0, executor)
    out, err = reference.communicate(timeout=180)
    assert reference.returncode == 0, err[-3000:]
    victim = run(tmp_path / "victim", delay, executor)
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:  # wait until a few steps are checkpointed
        try:
            saved = load_checkpoint(tmp_path / "victim")  # never a torn file: os.replace is atomic
        except FileNotFoundError:
            saved = None
        if saved and saved["step"] >= 3:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)  # returns once workers holding its pipes have gone too
    assert victim.returncode == -signal.SIGKILL, "the run should still be going when it is killed"
    assert 3 <= load_checkpoint(tmp_path / "victim")["step"] < 12, "the run should be killed mid-way"
    resumed = run(tmp_path / "victim", 0.0, executor)
    out2, err2 = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err2[-3000:]
    assert out2.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    got, want = read_log(tmp_path / "victim"), read_log(tmp_path / "reference")
    assert [r["step"] for r in got] == list(range(13))
    assert strip_times(got) == strip_times(want)
    assert json.loads((tmp_path / "victim" / "summary.json").read_text())["steps"] == 12


@pytest.mark.timeout(120)
def test_resume_after_sigkill_loses_nothing(tmp_path):
    kill_driver_and_resume(tmp_path, "serial", delay=0.02)


@pytest.mark.timeout(300)
def test_resume_after_killing_a_process_pool_driver(tmp_path):
    kill_driver_and_resume(tmp_path, "process")


def test_resume_of_a_finished_run_returns_its_summary(tmp_path):
    first = run(tmp_path / "done", 0.0)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err[-2000:]
    again = run(tmp_path / "done", 0.0)
    out2, err2 = again.communicate(timeout=60)
    assert again.returncode == 0, err2[-2000:]
    assert out2.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    assert len(read_log(tmp_path / "done")) == 13
