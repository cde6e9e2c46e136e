"""Zeroth-order optimization by SPSA (Spall, 1992): two evaluations per gradient estimate,
whatever the dimension, for parameters with no differentiable path to the loss.

One `SPSA.step(f, x)`:

    c_k = c / (k + 1) ** gamma                 perturbation, in scaled units
    a_k = a / (k + 1 + A) ** alpha             step, in scaled units
    delta ~ Rademacher (+1 / -1 per coordinate)
    g   = mean over `samples` of (f(x + c_k delta) - f(x - c_k delta)) / (x+ - x-)
    x  <- project(x - a_k * g / max|g|)        (normalized: the largest coordinate moves a_k)

Scaled units: a coordinate with finite bounds (lo, hi) is measured in units of (hi - lo);
an unbounded one in units of max(|x0|, 1) (x0: its value at the first step). So `a` and
`c` are fractions of each parameter's range, and the step does not depend on the scale of f.

Evaluation budget (calls of f): each step uses `2 * samples` evaluations, plus, when
`guarded` (default), one evaluation of the candidate, which is accepted only if it is not
worse than the current value; the very first guarded step also evaluates f(x0) once. So
step 1 costs 2*samples + 2, later steps 2*samples + 1. `max_evals` caps the total: a step
that would exceed it does nothing and says so.

Integers (`integer[i]` true): SPSA keeps a continuous value theta (in its state) and f is
evaluated at round(theta +/- c delta), rounding half to even (Python's `round`, numpy's
`rint`); the perturbation is at least one unit, so the two points always differ, and the
difference quotient uses the actual rounded points. The value returned is round(theta),
clipped into [ceil(lo), floor(hi)]; theta keeps sub-integer progress between steps (also
when a guarded step is rejected, for integer coordinates whose rounded value did not move,
since f at the current point does not see it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np


@dataclass
class SPSAResult:
    """The outcome of one SPSA step."""

    x: np.ndarray  # the values to use now (rounded for integer coordinates)
    f: float | None  # f at x when known (guarded mode), else None
    evals: int  # evaluations of f made by this step
    accepted: bool  # False: the candidate was worse (guarded), or the budget ran out
    reason: str = ""
    grad_estimate: np.ndarray | None = None


@dataclass
class SPSA:
    """SPSA with normalized steps, bounds, integer rounding and a guarded acceptance test."""

    a: float = 0.1
    c: float = 0.05
    alpha: float = 0.602
    gamma: float = 0.101
    A: float = 5.0
    samples: int = 1
    guarded: bool = True
    max_evals: int | None = None
    seed: int | None = 0
    k: int = 0
    evals: int = 0
    theta: np.ndarray | None = None
    f_current: float | None = None
    scale: np.ndarray | None = None
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"SPSA samples must be >= 1, got {self.samples}")
        self.rng = np.random.default_rng(self.seed)

    def evals_for_next_step(self) -> int:
        """How many evaluations the next `step` will make (the documented budget)."""
        first = self.guarded and self.f_current is None
        return 2 * self.samples + (1 if self.guarded else 0) + (1 if first else 0)

    def step(self, f: Callable[[np.ndarray], float], x: Sequence[float] | np.ndarray, *,
             lower: Sequence[float] | np.ndarray | None = None,
             upper: Sequence[float] | np.ndarray | None = None,
             integer: Sequence[bool] | np.ndarray | None = None) -> SPSAResult:
        """One step from `x` (or from the kept continuous value when it rounds to `x`)."""
        x_flat = np.asarray(x, dtype=np.float64).ravel()
        n = x_flat.size
        lo = np.full(n, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64).ravel()
        hi = np.full(n, np.inf) if upper is None else np.asarray(upper, dtype=np.float64).ravel()
        is_int = np.zeros(n, bool) if integer is None else np.asarray(integer, dtype=bool).ravel()
        if self.max_evals is not None and self.evals + self.evals_for_next_step() > self.max_evals:
            return SPSAResult(x_flat.copy(), self.f_current, 0, False,
                              f"evaluation budget exhausted ({self.evals}/{self.max_evals})")
        if self.theta is None or self.theta.size != n or not np.allclose(
                self._round(self.theta, is_int, lo, hi), x_flat, rtol=1e-6, atol=1e-12):
            self.theta = x_flat.copy()  # start, or the value was changed from outside: restart there
            self.f_current = None
        if self.scale is None or self.scale.size != n:
            finite = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
            self.scale = np.where(finite, hi - lo, np.maximum(np.abs(x_flat), 1.0))
        evals = 0

        def call(point: np.ndarray) -> float:
            nonlocal evals
            evals += 1
            self.evals += 1
            try:
                value = float(f(point))
            except Exception:
                return math.inf
            return value if math.isfinite(value) else math.inf

        if self.guarded and self.f_current is None:
            self.f_current = call(self._round(self.theta, is_int, lo, hi))
        ck = self.c / (self.k + 1) ** self.gamma
        ak = self.a / (self.k + 1 + self.A) ** self.alpha
        pert = ck * self.scale
        pert = np.where(is_int, np.maximum(pert, 1.0), pert)
        grad = np.zeros(n)
        used = 0
        for _ in range(self.samples):
            delta = self.rng.choice(np.array([-1.0, 1.0]), size=n)
            xp = self._round(self.theta + pert * delta, is_int, lo, hi)
            xm = self._round(self.theta - pert * delta, is_int, lo, hi)
            fp, fm = call(xp), call(xm)
            if not (math.isfinite(fp) and math.isfinite(fm)):
                continue
            diff = xp - xm
            safe = np.where(diff != 0, diff, 1.0)
            grad += np.where(diff != 0, (fp - fm) / safe, 0.0)
            used += 1
        self.k += 1
        if used == 0:
            return SPSAResult(self._round(self.theta, is_int, lo, hi), self.f_current, evals, False,
                              "every perturbed evaluation failed or was not finite; value kept")
        grad /= used
        grad_scaled = grad * self.scale  # d f / d(scaled coordinate)
        peak = float(np.max(np.abs(grad_scaled)))
        current = self._round(self.theta, is_int, lo, hi)
        if peak == 0.0:
            return SPSAResult(current, self.f_current, evals, False,
                              "zero gradient estimate (flat objective here); value kept", grad)
        theta_new = np.clip(self.theta - ak * self.scale * grad_scaled / peak, lo, hi)
        candidate = self._round(theta_new, is_int, lo, hi)
        if self.guarded:
            f_new = call(candidate)
            if f_new <= cast(float, self.f_current):  # set above when guarded
                self.theta, self.f_current = theta_new, f_new
                return SPSAResult(candidate, f_new, evals, True, "", grad)
            # integer coordinates whose rounded value did not change keep their sub-integer
            # progress: f at the current point is unchanged by it, so the guard still holds
            keep = is_int & (candidate == current)
            self.theta = np.where(keep, theta_new, self.theta)
            return SPSAResult(current, self.f_current, evals, False,
                              f"candidate worse ({f_new:.6g} > {self.f_current:.6g}); value kept", grad)
        self.theta = theta_new
        return SPSAResult(candidate, None, evals, True, "", grad)

    @staticmethod
    def _round(values: np.ndarray, is_int: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Clip into bounds; integer coordinates to the nearest integer (half to even) inside them."""
        out = np.clip(values, lo, hi)
        if is_int.any():
            ilo = np.where(np.isfinite(lo), np.ceil(lo), lo)
            ihi = np.where(np.isfinite(hi), np.floor(hi), hi)
            out = np.where(is_int, np.clip(np.rint(out), ilo, ihi), out)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The state as a plain dict of numbers and NumPy arrays (copies), the random
        generator state included."""
        return {"k": self.k, "evals": self.evals,
                "theta": None if self.theta is None else self.theta.copy(),
                "scale": None if self.scale is None else self.scale.copy(),
                "f_current": self.f_current, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k = int(state["k"])
        self.evals = int(state["evals"])
        self.theta = None if state["theta"] is None else np.asarray(state["theta"], dtype=np.float64)
        self.scale = None if state["scale"] is None else np.asarray(state["scale"], dtype=np.float64)
        self.f_current = state["f_current"]
        self.rng.bit_generator.state = state["rng"]
