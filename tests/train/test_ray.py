"""The Ray executor on a local Ray instance (optional extra: tracekit[ray])."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

import tracekit as tk  # noqa: E402
from tests.train.helpers import DATA, KeywordModel, accuracy, register_plan  # noqa: E402
from tracekit.training import RayExecutor, Trainer  # noqa: E402


def square_or_fail(i):
    if i == 3:
        raise ValueError("three is not welcome")
    return i * i


@pytest.fixture(scope="module")
def local_ray():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # workers import this module as pytest named it ("train.test_ray" or "tests.train.test_ray")
    path = os.pathsep.join([str(root), str(root / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_order_errors_and_validation_in_training(local_ray, empty_registry):
    executor = RayExecutor(max_concurrency=2)
    outcomes = executor.map(square_or_fail, list(range(6)))
    assert [o.value for o in outcomes] == [0, 1, 4, None, 16, 25]
    assert isinstance(outcomes[3].error, ValueError) and "three" in str(outcomes[3].error)

    register_plan("text", {"keywords": ["good, great", "good, great, nice, lovely"]})
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    result = Trainer(model, opt, accuracy, train=DATA, val=DATA, batch_size=4, max_steps=2,
                     executor=executor, progress=False, batch_objective=False).fit()
    # validation ran on Ray workers with the parameters of each step
    assert [r["val_score"] for r in result.history] == [0.625, 0.75, 1.0]
    assert model.keywords.data == "good, great, nice, lovely"


# --- every phase of a training step on Ray -------------------------------------------------------
def test_a_ray_run_is_the_serial_run_with_float64_gradients(local_ray):
    from tests.train.distributed_helpers import Mixed
    from tests.train.test_distributed import assert_same_run, run_mixed

    serial = run_mixed("serial")
    remote = run_mixed(RayExecutor(max_concurrency=2))
    assert_same_run(serial, remote)
    assert all(h["lost_examples"] == 0 for h in remote[0].history[1:])
    assert isinstance(remote[1], Mixed)


def test_ray_gradients_match_in_process(local_ray, empty_registry):
    from tests.train.test_distributed import test_gradients_match_in_process_gradients

    test_gradients_match_in_process_gradients(RayExecutor(max_concurrency=2), empty_registry)


def test_ray_worker_killed_and_example_raising_cost_one_example_each(local_ray):
    from tests.train.distributed_helpers import Mixed
    from tests.train.test_distributed import run_mixed

    executor = RayExecutor(max_concurrency=2, task_options={"max_retries": 0})
    result, model, llm = run_mixed(executor, Mixed(boom={"great food"}, kill={"nice view"}))
    steps = result.history[1:]
    assert sum(h["lost_examples"] for h in steps) >= 1 and any(h["incomplete"] for h in steps)
    assert any(h["train_errors"] >= 2 for h in steps)  # the raising and the killing example
    prompts = "\n".join(llm.prompts)
    assert "cannot read 'great food'" in prompts and "the worker running this example failed" in prompts
    assert result.steps == 2


def test_ray_resume_after_a_driver_stop_gives_the_uninterrupted_run(local_ray, tmp_path):
    import torch

    from tests.train.test_distributed import run_mixed

    executor = RayExecutor(max_concurrency=2)
    whole = run_mixed(executor, steps=2)
    run_mixed(executor, steps=1, run_dir=tmp_path / "run")
    resumed = run_mixed(executor, steps=2, run_dir=tmp_path / "run", resume=True)
    assert [h["val_score"] for h in resumed[0].history] == [h["val_score"] for h in whole[0].history]
    assert resumed[1].keywords.data == whole[1].keywords.data
    assert torch.allclose(resumed[1].w.data, whole[1].w.data, rtol=0, atol=1e-12)


@pytest.mark.timeout(400)
def test_ray_resume_after_killing_the_driver_gives_the_uninterrupted_run(local_ray, tmp_path):
    """Drivers in subprocesses join this cluster (address="auto"); one is killed with SIGKILL
    mid-run and resumed from its checkpoint."""
    from tests.train.test_resume import kill_driver_and_resume

    kill_driver_and_resume(tmp_path, "ray", delay=0.1)


def test_a_task_ray_retried_counts_its_gradients_once(local_ray, empty_registry, tmp_path):
    from tests.train.test_distributed import check_a_rerun_task_counts_its_gradients_once

    executor = RayExecutor(max_concurrency=2, task_options={"max_retries": 1})
    check_a_rerun_task_counts_its_gradients_once(executor, tmp_path)


def test_objectives_on_ray_are_the_serial_run(local_ray, empty_registry):
    """Ray workers return every objective's value: the serial run's val_scores and front."""
    from tests.train.test_objectives import scripted_trainer

    depths = [6, 5, 10]
    _, serial = scripted_trainer(depths)
    expected = serial.fit()
    _, remote = scripted_trainer(depths, executor=RayExecutor(max_concurrency=2))
    result = remote.fit()
    assert [r.get("val_scores") for r in result.history] == [r.get("val_scores") for r in expected.history]
    assert result.front == expected.front and len(result.front) >= 2
