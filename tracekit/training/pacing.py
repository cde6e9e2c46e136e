"""How large a `Trainer` step may be under `max_metric_calls`, decided in one place.

Before a step: whether one still fits (`first_step_calls` before any step ran, and with a
step allowance the `smallest_step_calls`, since steps then shrink to fit). At the start of a
step: its `trial_allowance`, the fresh minibatch evaluations the solvers may share once the
step's validation is set aside (`tracekit.training.objective`).
"""

from __future__ import annotations

from typing import Any

from tracekit.training import staged as _staged


def _screens(t: Any) -> bool:
    return t.search is not None and t.strategy.screen


def first_step_calls(t: Any) -> int:
    """The fewest metric calls a step of Trainer `t` can take (the estimate before any step ran)."""
    batch = min(t.batch_size, len(t.train_set))
    if _screens(t):
        return 2 * batch
    size = len(t.validation_set)
    return batch + (_staged.rungs(size)[0] if _staged.enabled(t) else size)


def smallest_step_calls(t: Any) -> int | None:
    """With a step allowance (the Trainer's own objective under `max_metric_calls`), the metric
    calls of the smallest useful step: the minibatch, one trial and the whole validation set
    aside; steps shrink to fit, so the costliest one so far does not decide. None without."""
    if t.objective is None or t.budget.max_metric_calls is None:
        return None
    batch = min(t.batch_size, len(t.train_set))
    trial = len(t.train_set) if t.batch_objective == "train" else batch
    return batch + trial + validation_reserve(t, batch)


def trial_allowance(t: Any) -> int | None:
    """Fresh objective evaluations this step can afford under `max_metric_calls`: what is left
    once the step's validation is set aside, in objective-sized evaluations (None: no
    metric-call budget)."""
    left = t.budget.left().get("metric_calls")
    if left is None:
        return None
    size = len(t.train_set) if t.batch_objective == "train" else max(1, len(t._batch))
    return max(0, (left - validation_reserve(t, len(t._batch))) // size)


def validation_reserve(t: Any, batch: int) -> int:
    """The most metric calls a step's validation can take: the whole set, plus the minibatch
    screen (`batch` examples) of a pool search."""
    return len(t.validation_set) + (batch if _screens(t) else 0)
