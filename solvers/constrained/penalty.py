"""Augmented-Lagrangian penalty for gradient-trained parameters (traced workflows).

``ALPenalty(constraints)`` turns a list of ``Ineq`` / ``Eq`` into a scalar torch term to
add to a loss, plus the first-order multiplier update to call after each optimizer step
(or every few steps). Minimizing ``loss + penalty.term(*values)`` with any torch optimizer
and calling ``penalty.update(*values)`` in between is the classical method of
multipliers: the iterates approach a KKT point without the ill-conditioning of a pure
quadratic penalty. The constraint functions are called with the same positional
arguments as ``term`` (for example the parameter tensors).

    pen = ALPenalty([Ineq(lambda w: w.sum() - 1), Eq(lambda w: w[0] - w[1])])
    loss = f(w) + pen.term(w); loss.backward(); opt.step()
    pen.update(w)          # multipliers and penalty; returns the max violation
    pen.describe(w)        # ["Ineq <lambda> violated by 0.12", ...] for LLM feedback
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .constraints import Eq, Ineq, ProblemError

__all__ = ["ALPenalty"]


class ALPenalty:
    """PHR augmented-Lagrangian term and multiplier updates for ``Ineq``/``Eq`` lists.

    ``rho`` is the initial penalty; it grows by ``growth`` (up to ``rho_max``) whenever
    an ``update`` does not cut the violation by ``decrease``. Multipliers start at zero
    (or at ``multipliers``, a list aligned with ``constraints``) and follow the library
    convention: ``>= 0`` for ``Ineq`` with Lagrangian ``f + lam.g + mu.h``.
    """

    def __init__(
        self,
        constraints: Sequence[Ineq | Eq],
        rho: float = 10.0,
        growth: float = 10.0,
        decrease: float = 0.25,
        rho_max: float = 1e8,
        multipliers: Sequence[Any] | None = None,
    ) -> None:
        for i, c in enumerate(constraints):
            if not isinstance(c, (Ineq, Eq)):
                raise ProblemError(
                    f"constraints[{i}] is a {type(c).__name__}; use Ineq(g) for g(...) <= 0 "
                    "or Eq(h) for h(...) == 0."
                )
        if rho <= 0:
            raise ProblemError(f"rho must be positive, got {rho}.")
        self.constraints = list(constraints)
        self.rho = float(rho)
        self.growth, self.decrease, self.rho_max = float(growth), float(decrease), float(rho_max)
        self.multipliers: list[torch.Tensor | None] = (
            [None if m is None else torch.as_tensor(m) for m in multipliers]
            if multipliers is not None
            else [None] * len(self.constraints)
        )
        self._last_violation = float("inf")

    def _values(self, *args: Any) -> list[torch.Tensor]:
        out = []
        for c in self.constraints:
            v = c.fn(*args)
            out.append(v if torch.is_tensor(v) else torch.as_tensor(v, dtype=torch.float64))
        return out

    def _mult(self, i: int, like: torch.Tensor) -> torch.Tensor:
        m = self.multipliers[i]
        if m is None:
            return torch.zeros_like(like.detach())
        return m.to(dtype=like.dtype, device=like.device)

    def term(self, *args: Any) -> torch.Tensor:
        """Scalar penalty to add to the loss (differentiable in the arguments)."""
        total: torch.Tensor | None = None
        rho = self.rho
        for i, (c, v) in enumerate(zip(self.constraints, self._values(*args))):
            lam = self._mult(i, v)
            if isinstance(c, Eq):
                t = (lam * v).sum() + 0.5 * rho * (v * v).sum()
            else:
                t = (0.5 / rho) * (((lam + rho * v).clamp(min=0)) ** 2 - lam**2).sum()
            total = t if total is None else total + t
        if total is None:
            return torch.zeros(())
        return total

    def violation(self, *args: Any) -> float:
        """Largest violation: ``max(g, 0)`` for Ineq, ``|h|`` for Eq."""
        worst = 0.0
        with torch.no_grad():
            for c, v in zip(self.constraints, self._values(*args)):
                if v.numel() == 0:
                    continue
                worst = max(worst, float(v.clamp(min=0).max() if isinstance(c, Ineq) else v.abs().max()))
        return worst

    def update(self, *args: Any) -> float:
        """First-order multiplier step and adaptive penalty; returns the max violation."""
        with torch.no_grad():
            values = self._values(*args)
            for i, (c, v) in enumerate(zip(self.constraints, values)):
                lam = self._mult(i, v) + self.rho * v.detach()
                self.multipliers[i] = lam.clamp(min=0) if isinstance(c, Ineq) else lam
        viol = self.violation(*args)
        if viol > self.decrease * self._last_violation:
            self.rho = min(self.rho * self.growth, self.rho_max)
        self._last_violation = viol
        return viol

    def describe(self, *args: Any, tol: float = 1e-6) -> list[str]:
        """One line per violated constraint, for textual (LLM) feedback."""
        lines = []
        with torch.no_grad():
            for c, v in zip(self.constraints, self._values(*args)):
                amount = float(v.clamp(min=0).max() if isinstance(c, Ineq) else v.abs().max()) if v.numel() else 0.0
                if amount > tol:
                    rel = "<= 0" if isinstance(c, Ineq) else "== 0"
                    lines.append(f"constraint {c.name} ({rel}) is violated by {amount:.4g}")
        return lines

    def state_dict(self) -> dict[str, Any]:
        """Multipliers and penalty, for checkpoints."""
        return {"rho": self.rho, "multipliers": [None if m is None else m.clone() for m in self.multipliers],
                "last_violation": self._last_violation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rho = float(state["rho"])
        self.multipliers = list(state["multipliers"])
        self._last_violation = float(state.get("last_violation", float("inf")))
