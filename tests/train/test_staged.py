"""Cheaper steps under a budget: staged validation (successive halving against the best's
per-example scores) and the step objective's memo by parameter values."""

from __future__ import annotations

import pytest

import tracekit as tk
from tests.train.helpers import ModulesModel, register_plan, solved_metric
from tracekit.training import Trainer, load_checkpoint
from tracekit.training.objective import StepObjective, values_key
from tracekit.training.staged import order, run, rungs

DATA = list(range(20))


class Counting:
    """The metric, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prediction, example):
        self.calls += 1
        return solved_metric(prediction, example)


def test_rungs_double_and_end_at_the_whole_set():
    assert rungs(30) == [8, 16, 30]
    assert rungs(20) == [8, 16, 20]
    assert rungs(100) == [8, 16, 32, 64, 100]
    assert rungs(15) == [15]  # too small to stage
    assert rungs(17) == [8, 17]  # a last slice of one example decides nothing
    assert sorted(order(20, 3)) == DATA and order(20, 3) == order(20, 3) != order(20, 4)


def test_a_candidate_is_stopped_at_the_first_slice_it_loses():
    best = [1.0] * 10 + [0.0] * 20
    scored = []

    def evaluate(indices):
        scored.extend(indices)
        return [0.0 for _ in indices]  # worse than the best on the first slice

    staged = run(evaluate, best, list(range(30)), lambda r: r)
    assert not staged.complete and scored == list(range(8))
    assert staged.slices == [{"examples": 8, "score": 0.0, "best": 1.0}]
    staged = run(lambda idx: [best[i] for i in idx], best, list(range(30)), lambda r: r)
    assert staged.complete and sorted(staged.results) == list(range(30))  # ties go on to the whole set


def test_a_losing_step_costs_a_slice_not_the_whole_validation(empty_registry):
    register_plan("text", {"m0": ["00000"]})  # undoes what the start solved
    metric = Counting()
    model = ModulesModel()
    model.m0.data = "11111"
    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=DATA, val=DATA, batch_size=4,
                      max_steps=1, progress=False, batch_objective=False, max_metric_calls=200)
    result = trainer.fit()
    record = result.history[1]
    assert record["reverted"] and record["val_score"] is None and "rejected" in record["screen"]
    slices = record["screen"]["slices"]
    assert slices[-1]["score"] < slices[-1]["best"]
    assert metric.calls == 20 + 4 + slices[-1]["examples"] < 20 + 4 + 20
    assert model.m0.data == "11111" and result.best_score == 0.25


def test_a_winning_step_is_validated_in_full_and_full_mode_never_stages(empty_registry):
    for mode, staged in (("auto", True), ("full", False)):
        register_plan("text", {"m0": ["11111"]})
        model = ModulesModel()
        trainer = Trainer(model, tk.Optimizer(model.parameters()), Counting(), train=DATA, val=DATA,
                          batch_size=4, max_steps=1, progress=False, batch_objective=False,
                          max_metric_calls=200, validation=mode)
        result = trainer.fit()
        record = result.history[1]
        assert record["improved"] and record["val_score"] == pytest.approx(0.25)
        assert ("screen" in record) is staged
        assert trainer.evaluate(DATA).score == pytest.approx(0.25)
    with pytest.raises(ValueError, match="validation must be one of"):
        Trainer(model, tk.Optimizer(model.parameters()), Counting(), train=DATA, validation="half")


def test_the_best_per_example_scores_resume_with_the_checkpoint(empty_registry, tmp_path):
    register_plan("text", {"m0": ["11111"]})
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), Counting(), train=DATA, val=DATA, batch_size=4,
                      max_steps=1, progress=False, batch_objective=False, max_metric_calls=200,
                      run_dir=tmp_path)
    trainer.fit()
    saved = load_checkpoint(tmp_path)
    assert saved["best_val"] == [1.0] * 5 + [0.0] * 15
    saved["best_val"] = saved["best_val"][:3]  # damaged: the next step validates in full
    from tracekit.training.resume import _best_val

    assert _best_val(saved["best_val"], trainer) is None


def test_the_step_objective_answers_equal_values_once(empty_registry):
    seen = []

    class Probing:
        name = "probing"

        def __init__(self, params, **options):
            pass

        def step(self, params, context):
            from tracekit.seam import ParamUpdate

            seen.append(context.objective())  # the current values: known from the traced minibatch
            seen.append(context.objective())
            first = params[0].data
            params[0].data = "11111"
            seen.append(context.objective())  # new values: scored once ...
            seen.append(context.objective())  # ... then remembered
            params[0].data = first
            return [ParamUpdate(context.name_of(p), self.name) for p in params[:1]]

    tk.register_solver("text", Probing)
    metric = Counting()
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=DATA[:5], val=DATA,
                      batch_size=5, max_steps=1, progress=False)
    trainer.fit()
    assert seen == [-0.0, -0.0, -1.0, -1.0]
    assert metric.calls == 20 + 5 + 5  # validation, the traced minibatch, one objective call
    assert trainer.objective is None  # lent during fit() only


def test_values_key_tells_values_apart():
    import torch

    a, b = tk.param(torch.zeros(3), name="a"), tk.param("x", name="b")
    key = values_key([("a", a), ("b", b)])
    assert key == values_key([("a", a), ("b", b)])
    a.data = torch.tensor([0.0, 0.0, 1.0])
    assert values_key([("a", a), ("b", b)]) != key
    half = tk.param(torch.ones(2, dtype=torch.bfloat16), name="h")
    assert values_key([("h", half)]) != values_key([("h", tk.param(torch.ones(2), name="h"))])
    calls = []
    objective = StepObjective(lambda: calls.append(1) or 2.0, lambda: [("b", b)])
    objective.start_step(5.0)
    assert objective() == 5.0 and calls == []
    b.data = "y"
    assert objective() == objective() == 2.0 and calls == [1]
