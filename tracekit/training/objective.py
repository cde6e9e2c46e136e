"""The minibatch objective a `Trainer` lends its optimizer, memoized by parameter values.

Within one step every solver that compares candidates (Bayesian search, the demo solver,
the text solver's candidate tests) first scores the *current* values on the same minibatch;
the traced minibatch run has already scored them. `StepObjective` answers each distinct
set of values once per step, so those repeats cost no metric calls. The memo is cleared at
every step: the minibatch changes, and stochastic workflows are re-scored per step.

Under `max_metric_calls` a step also has an *allowance* of fresh evaluations: what is left
of the budget after the step's validation is set aside, in minibatches. The Optimizer
splits it among the routes that compare candidates (`share`), each solver caps its trials
at its share (`tracekit.seam.trials_left`), and an evaluation past the share raises
`TrialsSpent`, which a solver treats as "stop trying, keep the best so far". So a small
budget buys smaller steps instead of a step that is thrown away when it runs out.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tracekit.errors import TrialsSpent


def values_key(named_params: Sequence[tuple[str, Any]]) -> str:
    """A key that is equal exactly when the parameters hold equal values (tensors by their
    bytes, dtype and shape; other values by their JSON or repr)."""
    digest = hashlib.sha1()
    for name, p in named_params:
        digest.update(name.encode())
        digest.update(_value_bytes(p.raw))
    return digest.hexdigest()


def _value_bytes(value: Any) -> bytes:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8)  # any dtype, bfloat16 included, as its bytes
        return f"{t.dtype}{tuple(t.shape)}".encode() + raw.numpy().tobytes()
    try:
        return json.dumps(value, sort_keys=True, default=repr).encode()
    except (TypeError, ValueError):
        return repr(value).encode()


class StepObjective:
    """`objective()` -> the loss of the current values on this step's minibatch, computed
    once per distinct set of values, within the step's allowance (see module doc)."""

    def __init__(self, evaluate: Callable[[], float], named_params: Callable[[], Sequence[tuple[str, Any]]]
                 ) -> None:
        self.evaluate = evaluate
        self.named_params = named_params
        self.memo: dict[str, float] = {}
        self.hits = 0
        self.fresh = 0  # evaluations made (or started) this step
        self.allowance: int | None = None  # fresh evaluations this step may make (None: any)
        self._lock = threading.Lock()

    def start_step(self, current_loss: float | None = None, allowance: int | None = None) -> None:
        """A new minibatch: forget the memo; `current_loss` is the current values' loss on it
        when the step has already scored them (the traced run); `allowance` caps the step's
        fresh evaluations (None: no cap)."""
        with self._lock:
            self.memo.clear()
            self.fresh, self.allowance = 0, allowance
            if current_loss is not None:
                self.memo[values_key(self.named_params())] = float(current_loss)

    @property
    def trials_left(self) -> int | None:
        """Fresh evaluations this step may still make (None: no cap)."""
        return None if self.allowance is None else max(0, self.allowance - self.fresh)

    def share(self, ways: int) -> StepObjective | ObjectiveShare:
        """The objective for one of `ways` routes still to run this step: an equal part of
        what is left (the routes after it get what it leaves), or this objective when
        nothing caps the step."""
        left = self.trials_left
        if left is None:
            return self
        return ObjectiveShare(self, left // max(1, ways))

    def __call__(self) -> float:
        return self.evaluate_within(None)

    def evaluate_within(self, share: ObjectiveShare | None) -> float:
        """The loss of the current values: from the memo, or evaluated when the step's
        allowance (and `share`'s) has room; else TrialsSpent."""
        key = values_key(self.named_params())
        with self._lock:
            if key in self.memo:
                self.hits += 1
                return self.memo[key]
            if self.allowance is not None and self.fresh >= self.allowance:
                raise TrialsSpent(f"the step's {self.allowance} trial evaluation(s) under max_metric_calls "
                                  f"are spent; the best values scored so far are kept")
            if share is not None and share.used >= share.limit:
                raise TrialsSpent(f"this solver's share of {share.limit} trial evaluation(s) under "
                                  f"max_metric_calls is spent; the best values scored so far are kept")
            self.fresh += 1
            if share is not None:
                share.used += 1
        loss = self.evaluate()
        with self._lock:
            self.memo[key] = loss
        return loss


class ObjectiveShare:
    """One route's part of the step's allowance: at most `limit` fresh evaluations (memo
    hits are free); the same memo and budget as the step's objective."""

    def __init__(self, parent: StepObjective, limit: int) -> None:
        self.parent = parent
        self.limit = limit
        self.used = 0

    @property
    def trials_left(self) -> int:
        """Fresh evaluations this route may still make."""
        step_left = self.parent.trials_left
        mine = max(0, self.limit - self.used)
        return mine if step_left is None else min(mine, step_left)

    def __call__(self) -> float:
        return self.parent.evaluate_within(self)
