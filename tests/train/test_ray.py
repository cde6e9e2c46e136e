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
