"""Learning-rate schedules: a multiplier of the base learning rate as a function of the step.

A schedule is a plain callable `schedule(step) -> float` (step counts from 0), so users can
pass their own. `make_schedule` builds the three built-ins by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class Constant:
    """The base learning rate at every step (after an optional linear warmup)."""

    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps) if step < self.warmup_steps else 1.0


@dataclass(frozen=True)
class WarmupLinear:
    """Linear warmup from 0 to 1 over `warmup_steps`, then linear decay to `final` at `total_steps`."""

    total_steps: int
    warmup_steps: int = 0
    final: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        return 1.0 + (self.final - 1.0) * _decay_fraction(step, self.warmup_steps, self.total_steps)


@dataclass(frozen=True)
class Cosine:
    """Linear warmup, then half a cosine from 1 down to `final` at `total_steps`."""

    total_steps: int
    warmup_steps: int = 0
    final: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        frac = _decay_fraction(step, self.warmup_steps, self.total_steps)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac))


def _decay_fraction(step: int, warmup_steps: int, total_steps: int) -> float:
    """How far past the warmup `step` is, from 0 to 1 at `total_steps`."""
    return min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))


def _warmup(step: int, warmup_steps: int) -> float:
    # step 0 gets 1/warmup_steps (not 0): a zero first step would waste a backward pass
    return (step + 1) / warmup_steps


def make_schedule(schedule: str | Schedule | None = "constant", total_steps: int | None = None,
                  warmup_steps: int = 0, final: float = 0.0) -> Schedule:
    """A schedule by name ("constant", "linear" / "warmup_linear", "cosine") or a callable as is."""
    if schedule is None:
        schedule = "constant"
    if callable(schedule):
        return schedule
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    name = str(schedule).lower()
    if name == "constant":
        return Constant(warmup_steps)
    if name in ("linear", "warmup_linear", "cosine"):
        if total_steps is None or total_steps <= 0:
            raise ValueError(f"schedule {schedule!r} needs total_steps > 0 (the step where it ends)")
        cls = Cosine if name == "cosine" else WarmupLinear
        return cls(int(total_steps), int(warmup_steps), float(final))
    raise ValueError(f"unknown schedule {schedule!r}; use 'constant', 'linear', 'cosine' or a callable")
