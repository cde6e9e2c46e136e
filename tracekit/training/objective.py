"""The minibatch objective a `Trainer` lends its optimizer, memoized by parameter values.

Within one step every solver that compares candidates (Bayesian search, the demo solver,
the text solver's candidate tests) first scores the *current* values on the same minibatch;
the traced minibatch run has already scored them. `StepObjective` answers each distinct
set of values once per step, so those repeats cost no metric calls. The memo is cleared at
every step: the minibatch changes, and stochastic workflows are re-scored per step.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any


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
    once per distinct set of values (see module doc)."""

    def __init__(self, evaluate: Callable[[], float], named_params: Callable[[], Sequence[tuple[str, Any]]]
                 ) -> None:
        self.evaluate = evaluate
        self.named_params = named_params
        self.memo: dict[str, float] = {}
        self.hits = 0
        self._lock = threading.Lock()

    def start_step(self, current_loss: float | None = None) -> None:
        """A new minibatch: forget the memo; `current_loss` is the current values' loss on it
        when the step has already scored them (the traced run)."""
        with self._lock:
            self.memo.clear()
            if current_loss is not None:
                self.memo[values_key(self.named_params())] = float(current_loss)

    def __call__(self) -> float:
        key = values_key(self.named_params())
        with self._lock:
            if key in self.memo:
                self.hits += 1
                return self.memo[key]
        loss = self.evaluate()
        with self._lock:
            self.memo[key] = loss
        return loss
