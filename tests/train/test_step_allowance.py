"""Steps shrink to fit `max_metric_calls`: the step objective's allowance, shared by the
routes that compare candidates, so a small budget buys a smaller step instead of one that is
thrown away when it runs out."""

from __future__ import annotations

import pytest

import tracekit as tk
from tracekit.errors import TrialsSpent
from tracekit.seam import trials_left
from tracekit.training import Trainer
from tracekit.training.objective import StepObjective


class Holder:
    def __init__(self, value):
        self.raw = value


def test_the_allowance_counts_fresh_evaluations_only():
    held = Holder(0)
    calls = []
    objective = StepObjective(lambda: calls.append(held.raw) or float(held.raw), lambda: [("x", held)])
    objective.start_step(current_loss=5.0, allowance=2)
    assert objective() == 5.0 and objective.trials_left == 2  # the seeded current values: free
    held.raw = 1
    assert objective() == 1.0
    held.raw = 2
    assert objective() == 2.0 and objective.trials_left == 0
    assert objective() == 2.0  # a memo hit costs nothing, even with nothing left
    held.raw = 3
    with pytest.raises(TrialsSpent, match="max_metric_calls"):
        objective()
    assert calls == [1, 2]
    objective.start_step(allowance=None)  # no budget: no cap
    assert objective.trials_left is None and objective.share(3) is objective and trials_left(objective) is None


def test_routes_share_what_is_left_and_pass_on_what_they_leave():
    held = Holder(0)
    objective = StepObjective(lambda: float(held.raw), lambda: [("x", held)])
    objective.start_step(current_loss=0.0, allowance=7)
    first = objective.share(3)
    assert first.trials_left == 2 and trials_left(first) == 2
    held.raw = 1
    first()
    assert first.trials_left == 1 and objective.trials_left == 6
    second = objective.share(2)  # the first route left one evaluation: the others get it
    assert second.trials_left == 3
    for v in (2, 3, 4):
        held.raw = v
        second()
    held.raw = 5
    with pytest.raises(TrialsSpent, match="share of 3"):
        second()
    held.raw = 1
    assert second() == 1.0  # known values are still answered
    assert objective.share(1).trials_left == 3


def _number_task(budget):
    """An int parameter the Bayesian route tunes; 8 training and 8 validation examples."""
    x = tk.param(0, name="x", bounds=(0, 20), description="a count")

    @tk.bundle()
    def predict(x, example):
        """Return x."""
        return x

    calls = []

    def metric(prediction, example):
        calls.append(1)
        return -abs(prediction - 7) / 7

    data = list(range(8))
    trainer = Trainer(lambda ex: predict(x, ex), tk.Optimizer([x], trials_per_step=4), metric, train=data,
                      val=data, batch_size=4, max_steps=3, progress=False, max_metric_calls=budget, seed=0)
    return x, trainer, calls


def test_a_step_shrinks_to_fit_the_budget_instead_of_being_discarded():
    # initial validation 8 + minibatch 4 + full validation 8 leaves 8 calls: two 4-example trials,
    # where the route's own setting asks for four (a step of 36 calls, which would not fit)
    x, trainer, calls = _number_task(28)
    result = trainer.fit()
    steps = [r for r in result.history if r["step"] >= 1]
    assert len(steps) == 1 and len(calls) == result.budget["spent"]["metric_calls"] <= 28
    assert len(calls) == 8 + 4 + 2 * 4 + 8
    (change,) = [c for c in steps[0]["changes"] if c["name"] == "x"]
    assert change["solver"] == "bayesian" and change["reason"].startswith("TPE trial")
    assert "max_metric_calls" in result.stop_reason


def test_a_larger_budget_keeps_the_solvers_own_trial_counts():
    x, trainer, calls = _number_task(10_000)
    trainer.max_steps = 1
    result = trainer.fit()
    assert [r["step"] for r in result.history] == [0, 1]
    assert len(calls) == 8 + 4 + 4 * 4 + 8  # four trials, as trials_per_step says


def test_the_demo_selector_evaluates_no_more_subsets_than_its_share():
    from solvers.text.demos import DemoPool, DemoSelector

    pool = DemoPool(["ticket"])
    for i in range(6):
        pool.add({"ticket": f"ticket {i}", "label": "urgent" if i % 2 else "routine"}, "labelled")
    scored = []
    selector = DemoSelector(pool, k=2, trials=4, seed=0)
    chosen, info = selector.choose([], lambda demos: scored.append(demos) or -len(demos), limit=1)
    assert len(scored) == 2 and info["proposals"] == 1 and info["capped_at"] == 1  # the baseline + one
    assert len(selector.tried) == 1  # subsets never scored are not counted as tried
    _, info = selector.choose(chosen or [], lambda demos: 0.0, limit=0)
    assert info["proposals"] == 0 and info["capped_at"] == 0


def test_the_text_route_asks_for_no_more_candidates_than_its_share():
    from tests.text.textopt_helpers import Scripted, reply

    llm = Scripted([reply({"word": "spam"})])
    word = tk.param("hello", name="word", description="a word")
    held_loss = {"calls": 0}

    def loss():
        held_loss["calls"] += 1
        return 0.0 if word.data == "spam" else 1.0

    objective = StepObjective(loss, lambda: [("word", word)])
    opt = tk.Optimizer([word], llm=llm, n_candidates=4, explore=False)
    opt.objective = objective
    objective.start_step(current_loss=1.0, allowance=2)
    opt.backward(word + "!", "should be a spam word")
    opt.step()
    assert len(llm.kwargs) == 2 and held_loss["calls"] == 1  # two proposals, one distinct value scored
    assert word.data == "spam"
    objective.start_step(current_loss=0.0, allowance=0)
    opt.zero_feedback()
    opt.backward(word + "!", "should be a spam word")
    report = opt.step()
    assert len(llm.kwargs) == 2 and "no trials left" in report.changes[0].reason  # no model call
