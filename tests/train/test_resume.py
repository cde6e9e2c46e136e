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
import random, sys, time
import tracekit as tk
from tracekit import seam as registry
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan
from tracekit.training import Trainer

registry._factories.clear(); registry._BUILTIN.clear()
# the solver proposes from its step counter: a resumed run matches the uninterrupted one
# only when the optimizer state was restored
lists = ["good", "good, great", "bad", "good, great, nice", "awful", "good, great, nice, lovely"]
register_plan("text", {"keywords": [lists[k % len(lists)] for k in range(100)]})
register_plan("zeroth_order", {"threshold": [round(0.3 + 0.05 * (k % 5), 2) for k in range(100)]})
delay = float(sys.argv[2])

def metric(prediction, example):
    time.sleep(delay)
    # consumes the global RNG: resuming must restore it too
    return accuracy(prediction, example)[0] + 1e-3 * random.random()

model = KeywordModel()
opt = tk.Optimizer(model.parameters())
result = Trainer(model, opt, metric, train=DATA, val=DATA[:4], batch_size=3, epochs=4, seed=5,
                 run_dir=sys.argv[1], resume=True, progress=False, executor="serial").fit()
print("FINAL", result.best_score, model.keywords.data, model.threshold.data)
'''


def run(run_dir, delay, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir), str(delay)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in records]


@pytest.mark.timeout(120)
def test_resume_after_sigkill_loses_nothing(tmp_path):
    reference = run(tmp_path / "reference", 0.0)
    out, err = reference.communicate(timeout=60)
    assert reference.returncode == 0, err[-2000:]

    victim = run(tmp_path / "victim", 0.02)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until a few steps are checkpointed
        try:
            saved = load_checkpoint(tmp_path / "victim")
        except ValueError:  # never a torn file: os.replace is atomic
            raise
        except FileNotFoundError:
            saved = None
        if saved and saved["step"] >= 3:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(tmp_path / "victim")["step"]
    assert 3 <= killed_at < 12, "the run should be killed mid-way"

    resumed = run(tmp_path / "victim", 0.0)
    out2, err2 = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err2[-2000:]
    assert out2.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    got, want = read_log(tmp_path / "victim"), read_log(tmp_path / "reference")
    assert [r["step"] for r in got] == list(range(13))
    assert strip_times(got) == strip_times(want)
    assert json.loads((tmp_path / "victim" / "summary.json").read_text())["steps"] == 12


REMOTE_SCRIPT = r'''
import os, sys, time
import tracekit as tk
from tracekit import seam as registry
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan
from tracekit.training import RayExecutor, Trainer

registry._factories.clear(); registry._BUILTIN.clear()
lists = ["good", "good, great", "bad", "good, great, nice", "awful", "good, great, nice, lovely"]
register_plan("text", {"keywords": [lists[k % len(lists)] for k in range(100)]})
register_plan("zeroth_order", {"threshold": [round(0.3 + 0.05 * (k % 5), 2) for k in range(100)]})
delay = float(sys.argv[2])

def metric(prediction, example):  # runs on the workers
    time.sleep(delay)
    return accuracy(prediction, example)

if sys.argv[3] == "ray":  # join the running cluster, as on a real one
    root = os.environ["PYTHONPATH"]
    executor = RayExecutor(address="auto", max_concurrency=2,
                           init_options={"runtime_env": {"env_vars": {"PYTHONPATH": root}}})
else:
    executor = sys.argv[3]
model = KeywordModel()
opt = tk.Optimizer(model.parameters())
result = Trainer(model, opt, metric, train=DATA, val=DATA[:4], batch_size=3, epochs=4, seed=5,
                 run_dir=sys.argv[1], resume=True, progress=False, executor=executor,
                 batch_objective=False).fit()
print("FINAL", result.best_score, model.keywords.data, model.threshold.data)
'''


def kill_driver_and_resume(tmp_path, executor: str, delay: float = 0.05) -> None:
    """A training driver on an out-of-process executor killed with SIGKILL mid-run, then
    resumed: the same final parameters and run log as an uninterrupted run."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))

    def start(run_dir, d):
        return subprocess.Popen([sys.executable, "-c", REMOTE_SCRIPT, str(run_dir), str(d), executor], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    reference = start(tmp_path / "reference", 0.0)
    out, err = reference.communicate(timeout=180)
    assert reference.returncode == 0, err[-3000:]
    victim = start(tmp_path / "victim", delay)
    deadline = time.time() + 120
    saved = None
    while time.time() < deadline and victim.poll() is None:
        try:
            saved = load_checkpoint(tmp_path / "victim")
        except FileNotFoundError:
            saved = None
        if saved and saved["step"] >= 3:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)  # returns once the workers, holding its pipes, have gone too
    assert victim.returncode == -signal.SIGKILL, "the run should still be going when it is killed"
    assert 3 <= load_checkpoint(tmp_path / "victim")["step"] < 12
    resumed = start(tmp_path / "victim", 0.0)
    out2, err2 = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err2[-3000:]
    assert out2.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    got, want = read_log(tmp_path / "victim"), read_log(tmp_path / "reference")
    assert [r["step"] for r in got] == list(range(13))
    assert strip_times(got) == strip_times(want)


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
