"""Training on out-of-process executors (a local process pool): every phase of a step on
the workers, the same run as in-process, faults cost one example, clear errors."""

from __future__ import annotations

import builtins
import threading

import pytest
import torch

import tracekit as tk
from tests.train.distributed_helpers import (
    Asker,
    Mixed,
    PricedAsker,
    ScriptedLLM,
    canonical,
    mixed_call,
    mixed_data,
    mixed_metric,
    square_or_die,
)
from tests.train.helpers import ListSolver
from tracekit.errors import NotPortableError
from tracekit.training import ProcessExecutor, Trainer
from tracekit.training.executors import RayExecutor, get_executor


@pytest.fixture(scope="module")
def pool():
    executor = ProcessExecutor(2)
    yield executor
    executor.close()


def run_mixed(executor, model=None, steps=2, **options):
    model = model or Mixed()
    llm = ScriptedLLM()
    opt = tk.Optimizer([model.keywords, model.w], llm=llm, numeric="sgd", lr=0.01)
    result = Trainer(model, opt, mixed_metric, train=mixed_data(8), val=mixed_data(8), call=mixed_call,
                     batch_size=4, max_steps=steps, executor=executor, progress=False,
                     batch_objective=False, **options).fit()
    return result, model, llm


def assert_same_run(a, b):
    (ra, ma, la), (rb, mb, lb) = a, b
    assert [h["val_score"] for h in ra.history] == [h["val_score"] for h in rb.history]
    assert [h["train_score"] for h in ra.history] == [h["train_score"] for h in rb.history]
    assert ma.keywords.data == mb.keywords.data
    assert torch.allclose(ma.w.data, mb.w.data, rtol=0, atol=1e-12)
    assert len(la.prompts) == len(lb.prompts) >= 2
    assert [canonical(p) for p in la.prompts] == [canonical(p) for p in lb.prompts]


def test_a_process_pool_run_is_the_serial_run(pool):
    serial = run_mixed("serial")
    remote = run_mixed(pool)
    assert_same_run(serial, remote)
    assert serial[1].keywords.data != "good"  # the run did learn something
    history = remote[0].history
    assert all(h["lost_examples"] == 0 and h["incomplete"] is False for h in history[1:])


class GradientRecorder:
    """A gradient solver that records each parameter's gradient and changes nothing."""

    name = "recorder"

    def __init__(self, params, seen=None, **options):
        self.seen = seen

    def step(self, params, context):
        from tracekit.seam import ParamUpdate

        for p in params:
            self.seen.append(p.raw.grad.detach().clone())
        return [ParamUpdate(context.name_of(p), self.name) for p in params]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_gradients_match_in_process_gradients(pool, empty_registry):
    grads = {"serial": [], "pool": []}
    for key, executor in (("serial", "serial"), ("pool", pool)):
        tk.register_solver("text", lambda params, **o: ListSolver(params))
        tk.register_solver("gradient", lambda params, _k=key, **o: GradientRecorder(params, grads[_k]))
        model = Mixed()
        opt = tk.Optimizer([model.keywords, model.w])
        Trainer(model, opt, mixed_metric, train=mixed_data(10), call=mixed_call, batch_size=5,
                max_steps=2, executor=executor, progress=False, batch_objective=False).fit()
    assert len(grads["serial"]) == len(grads["pool"]) == 2
    for a, b in zip(grads["serial"], grads["pool"]):
        assert a.dtype == b.dtype == torch.float64
        assert torch.allclose(a, b, rtol=0, atol=1e-12) and a.abs().sum() > 0


def test_an_example_that_raises_is_error_feedback(pool):
    result, model, llm = run_mixed(pool, Mixed(boom={"great food"}))
    assert any(h["train_errors"] >= 1 for h in result.history[1:])
    assert all(h["lost_examples"] == 0 for h in result.history[1:])
    assert "the workflow raised ValueError: cannot read 'great food'" in "\n".join(llm.prompts)


def test_a_worker_killed_mid_step_costs_its_example(pool):
    result, model, llm = run_mixed(pool, Mixed(kill={"nice view"}))
    lost = [h["lost_examples"] for h in result.history[1:]]
    assert sum(lost) >= 1 and any(h["incomplete"] for h in result.history[1:])
    assert result.steps == 2 and model.keywords.data != "good"
    assert "the worker running this example failed" in "\n".join(llm.prompts + [str(result.history)])
    # the pool works again afterwards
    assert [o.value for o in pool.map(square_or_die, [1, 2])] == [1, 4]


def test_the_pool_maps_in_order_and_a_dying_item_costs_only_itself(pool):
    outcomes = pool.map(square_or_die, list(range(6)))
    assert [o.value for o in outcomes if o.ok] == [0, 1, 4, 16, 25]
    assert not outcomes[3].ok and "died" in str(outcomes[3].error)


def test_worker_llm_usage_counts_in_the_step_record(pool):
    result, _, _ = run_mixed(pool, Asker(), steps=1)
    start, step = result.history
    assert start["worker_usage"]["llm_calls"] == start["llm_calls"] == 8  # the initial validation
    # 4 training + 8 validation calls, all on workers
    assert step["worker_usage"]["llm_calls"] == 12
    assert step["llm_calls"] == step["worker_usage"]["llm_calls"] + 1  # + the optimizer's call
    assert result.llm_calls == 8 + 13


@pytest.mark.parametrize("executor", ["serial", "pool"])
def test_an_llm_cost_budget_holds_over_the_workers_calls(pool, executor):
    """The workflows' LLM calls on the workers count against max_llm_cost: the run stops
    before a step that would pass it, at the same step as a serial run."""
    run_on = pool if executor == "pool" else "serial"
    free, _, _ = run_mixed(run_on, PricedAsker(), steps=1)
    start, step = free.history
    assert start["cost"] > 0 and step["cost"] > 0  # the initial validation's calls, the step's
    if executor == "pool":
        assert step["worker_usage"]["cost"] == pytest.approx(step["cost"])
    limit = start["cost"] + 2.5 * step["cost"]
    result, _, _ = run_mixed(run_on, PricedAsker(), steps=10, max_llm_cost=limit)
    assert result.stop_reason.startswith(f"max_llm_cost={limit:g}")
    assert result.cost <= limit and result.steps == 2
    assert result.cost == pytest.approx(free.history[0]["cost"] + 2 * step["cost"])


def test_resume_with_the_pool_gives_the_uninterrupted_run(pool, tmp_path):
    whole = run_mixed(pool, steps=2)
    run_mixed(pool, steps=1, run_dir=tmp_path / "run")
    resumed = run_mixed(pool, steps=2, run_dir=tmp_path / "run", resume=True)
    assert [h["val_score"] for h in resumed[0].history] == [h["val_score"] for h in whole[0].history]
    assert resumed[1].keywords.data == whole[1].keywords.data
    assert torch.allclose(resumed[1].w.data, whole[1].w.data, rtol=0, atol=1e-12)


class Locked(Mixed):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


def test_a_workflow_that_cannot_travel_gets_a_typed_error(pool):
    with pytest.raises(NotPortableError, match="the workflow cannot be sent to worker processes.*thread"):
        run_mixed(pool, Locked())


def test_without_ray_the_error_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    for make in (RayExecutor, lambda: get_executor("ray")):
        with pytest.raises(ImportError, match=r"pip install 'tracekit\[ray\]'.*executor='process'"):
            make()


def test_process_is_a_known_executor_name():
    executor = get_executor("process", max_concurrency=2)
    assert isinstance(executor, ProcessExecutor) and not executor.in_process
    executor.close()
    with pytest.raises(ValueError, match="'process'"):
        get_executor("processes")


class InlineRemote(tk.training.SerialExecutor):
    """An executor of your own that says its items run elsewhere: the Trainer then sends
    picklable tasks (here run in this process, on unpickled copies of the workflow)."""

    in_process = False


def test_your_own_out_of_process_executor_gets_the_same_run():
    assert_same_run(run_mixed("serial"), run_mixed(InlineRemote()))


class CountingRemote(InlineRemote):
    def __init__(self):
        self.shipped = self.calls = 0

    def share_state(self, state):
        self.shipped += 1
        return super().share_state(state)

    def map(self, fn, items):
        self.calls += 1
        return super().map(fn, items)


def test_state_ships_only_when_a_parameter_changed():
    from tracekit.training.remote import _same_state

    executor = CountingRemote()
    assert_same_run(run_mixed("serial", steps=3), run_mixed(executor, steps=3))
    # per step: the minibatch, then validation after the update; the next minibatch reuses
    # validation's state (the parameters did not change in between)
    assert executor.calls == 7 and executor.shipped == 4
    w = torch.ones(3)
    assert _same_state({"w": w.clone(), "k": "a"}, {"w": w, "k": "a"})
    assert not _same_state({"w": w.clone()}, {"w": w + 1e-6})
    assert not _same_state({"w": torch.tensor([float("nan")])}, {"w": torch.tensor([float("nan")])})
    assert not _same_state({"k": "a"}, {"k": "b"}) and not _same_state({"k": [1]}, {"k": [1]})
    assert not _same_state({"k": 1}, {"k": 1.0}) and not _same_state({"k": 1}, {"j": 1})


def test_a_large_untrained_value_travels_bounded():
    from tracekit.training.portable import MAX_VALUE_BYTES, Shown, portable_value

    big = "x" * (MAX_VALUE_BYTES + 10)
    shown = portable_value([big, 1])
    assert isinstance(shown, Shown) and len(repr(shown)) < 17_000
    grad = torch.ones(3, requires_grad=True) * 2
    assert repr(portable_value((grad, "a"))) == repr((grad, "a"))  # the prompt shows the same
    assert not portable_value(grad, True).requires_grad


class Unloadable(Mixed):
    """Refuses to be unpickled anywhere: every worker fails before running an example."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ImportError("No module named 'only_on_the_driver'")


def test_workers_that_cannot_load_the_workflow_stop_the_run_with_the_reason():
    from tracekit.training.remote import WorkersFailedError

    with pytest.raises(WorkersFailedError, match="only_on_the_driver.*importable on the workers"):
        run_mixed(InlineRemote(), Unloadable())


def check_a_rerun_task_counts_its_gradients_once(executor, tmp_path):
    """A worker dies once mid-step; its task runs again: same gradients as serial, nothing lost."""
    from tests.train.distributed_helpers import KillOnce

    tk.register_solver("text", lambda params, **o: ListSolver(params))
    seen = {"serial": [], "remote": []}
    results = {}
    for key, ex, model in (("serial", "serial", Mixed()),
                           ("remote", executor, KillOnce(tmp_path / "marker", kill={"nice view"}))):
        tk.register_solver("gradient", lambda params, _k=key, **o: GradientRecorder(params, seen[_k]))
        opt = tk.Optimizer([model.keywords, model.w])
        results[key] = Trainer(model, opt, mixed_metric, train=mixed_data(8), call=mixed_call, batch_size=8,
                               max_steps=1, executor=ex, progress=False, batch_objective=False).fit()
    assert (tmp_path / "marker").exists()  # a worker did die
    assert results["remote"].history[1]["lost_examples"] == 0
    assert len(seen["remote"]) == 1
    assert torch.allclose(seen["serial"][0], seen["remote"][0], rtol=0, atol=1e-12)


def test_a_rerun_task_counts_its_gradients_once(pool, empty_registry, tmp_path):
    check_a_rerun_task_counts_its_gradients_once(pool, tmp_path)


def test_evaluate_after_fit_with_a_pool_the_trainer_made_and_closed():
    model = Mixed()
    opt = tk.Optimizer([model.keywords, model.w], llm=ScriptedLLM(), numeric="sgd", lr=0.01)
    trainer = Trainer(model, opt, mixed_metric, train=mixed_data(4), call=mixed_call, batch_size=4,
                      max_steps=1, executor="process", max_concurrency=2, progress=False,
                      batch_objective=False)
    result = trainer.fit()
    again = trainer.evaluate(mixed_data(4))
    assert again.errors == 0 and again.score == result.best_score
    trainer.executor.close()


@pytest.mark.parametrize("strategy", ["pareto", "beam"])
def test_a_pool_search_on_the_process_pool_is_the_serial_search(pool, strategy):
    # candidates are scored on the workers with the candidate's own values
    serial = run_mixed("serial", steps=3, strategy=strategy, seed=0)
    remote = run_mixed(pool, steps=3, strategy=strategy, seed=0)
    assert [h["val_score"] for h in serial[0].history] == [h["val_score"] for h in remote[0].history]
    assert serial[1].keywords.data == remote[1].keywords.data
    assert torch.allclose(serial[1].w.data, remote[1].w.data, rtol=0, atol=1e-12)
