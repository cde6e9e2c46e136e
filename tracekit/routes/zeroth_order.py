"""The "zeroth_order" route of `tk.Optimizer`: numbers (and tensors with no differentiable
path) trained by SPSA, re-running the workflow through the `objective=` callable given to
`tk.Optimizer`. See docs/numeric.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from solvers.gradient import SPSA
from tracekit.nodes import ParameterNode
from tracekit.options import SPSA_OPTIONS  # tk.Optimizer(..., spsa_a=0.1, spsa_samples=1, ...)
from tracekit.seam import UNCHANGED, ParamUpdate, StepContext, nonfinite_loss, values_objective


class ZerothOrderSolver:
    """Numbers (and tensors without a differentiable path) -> SPSA through `objective`.

    The objective is `objective()` (the parameters hold the candidate values while it
    runs) or `objective(values)` with `values = {name: candidate}`; it returns a loss
    (number, scalar tensor, node or tk.Feedback). Budget per step: see `solvers.gradient.spsa`.
    """

    name = "zeroth_order"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        self.spsa_options = {dst: options[src] for src, dst in SPSA_OPTIONS.items() if src in options}
        self._spsa: dict[str, SPSA] = {}

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        updates: dict[int, ParamUpdate] = {}
        active: list[ParameterNode] = []
        for p in params:
            name = context.name_of(p)
            if p.kind != "numeric":
                updates[id(p)] = ParamUpdate(name, self.name, reason=f"{p.kind} parameter: not numeric")
            elif nonfinite_loss(p):
                updates[id(p)] = ParamUpdate(name, self.name, reason="NaN/inf loss: skipped, value kept",
                                             info={"skipped": "non-finite loss"})
            elif context.objective is None:
                updates[id(p)] = ParamUpdate(name, self.name, reason="no objective callable given")
            else:
                active.append(p)
        if active:
            self._step(active, context, updates)
        return [updates[id(p)] for p in params]

    def _step(self, params: list[ParameterNode], context: StepContext,
              updates: dict[int, ParamUpdate]) -> None:
        names = [context.name_of(p) for p in params]
        key = "|".join(names)
        spsa = self._spsa.get(key)
        if spsa is None:
            spsa = self._spsa[key] = SPSA(**self.spsa_options)
        sizes = [p.raw.numel() if p.is_tensor else 1 for p in params]
        x = np.concatenate([_flat(p) for p in params])
        lower = np.concatenate([np.full(s, p.bounds[0] if p.bounds else -np.inf) for p, s in zip(params, sizes)])
        upper = np.concatenate([np.full(s, p.bounds[1] if p.bounds else np.inf) for p, s in zip(params, sizes)])
        integer = np.concatenate([np.full(s, _is_integer(p)) for p, s in zip(params, sizes)])
        evaluate = _evaluator(params, names, sizes, context.objective)
        before = spsa.f_current
        result = spsa.step(evaluate, x, lower=lower, upper=upper, integer=integer)
        offsets = np.cumsum([0] + sizes)
        for j, p in enumerate(params):
            info = {"evals": result.evals, "total_evals": spsa.evals, "iteration": spsa.k,
                    "loss_before": before, "loss_after": result.f, "accepted": result.accepted,
                    "differentiable": False,
                    "path": "no differentiable path (tensor)" if p.is_tensor else "Python number"}
            value = _unflat(p, result.x[offsets[j]:offsets[j + 1]])
            reason = result.reason
            if p.is_tensor:
                reason = "no differentiable path: SPSA" + (f"; {reason}" if reason else "")
            if p.bounds is not None and np.any((result.x[offsets[j]:offsets[j + 1]] == p.bounds[0])
                                               | (result.x[offsets[j]:offsets[j + 1]] == p.bounds[1])):
                info["bound_active"] = True
                reason = (reason + "; " if reason else "") + f"bound active {p.bounds}"
            updates[id(p)] = ParamUpdate(names[j], self.name,
                                         new_value=value if result.accepted else UNCHANGED,
                                         reason=reason, info=info)

    def state_dict(self) -> dict[str, Any]:
        """One SPSA state per set of parameters stepped together (arrays; `tracekit.storage` saves it)."""
        return {key: s.state_dict() for key, s in self._spsa.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load every SPSA state into fresh instances first, then swap them in (all or nothing)."""
        loaded = {}
        for key, s in state.items():
            loaded[key] = SPSA(**self.spsa_options)
            loaded[key].load_state_dict(s)
        self._spsa.update(loaded)


def _is_integer(p: ParameterNode) -> bool:
    if p.is_tensor:
        return not (p.raw.is_floating_point() or p.raw.is_complex())
    return p.value_type is int


def _flat(p: ParameterNode) -> np.ndarray:
    if p.is_tensor:
        return p.raw.detach().to("cpu", torch.float64).reshape(-1).numpy().copy()
    return np.array([float(p.raw)])


def _unflat(p: ParameterNode, values: np.ndarray) -> Any:
    if p.is_tensor:
        t = p.raw
        return torch.as_tensor(values, dtype=torch.float64).reshape(t.shape).to(t.device, t.dtype)
    return int(values[0]) if p.value_type is int else float(values[0])


def _evaluator(params: list[ParameterNode], names: list[str], sizes: list[int],
               objective: Callable) -> Callable[[np.ndarray], float]:
    """f(x) for SPSA: run the objective with the parameters at x, then restore them."""
    loss = values_objective(objective, dict(zip(names, params)), no_grad=True)
    offsets = np.cumsum([0] + sizes)

    def f(x: np.ndarray) -> float:
        return loss({name: _unflat(p, x[offsets[j]:offsets[j + 1]])
                     for j, (name, p) in enumerate(zip(names, params))})

    return f
