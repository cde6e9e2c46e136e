"""The "gradient" route of `tk.Optimizer`: tensor parameters whose loss reached them through
torch (they have `.grad`), trained by `solvers.gradient.GradientOptimizer`: fused SGD / Adam
/ AdamW / Lion, NaN guards, clipping, schedules, projection onto `bounds`.

Options are read from the param group (`tk.Optimizer(..., weight_decay=0.1, schedule=
"cosine", total_steps=500)`; names in `tracekit.options.GRADIENT_OPTIONS`); options of
other routes are ignored here. See docs/numeric.md.
"""

from __future__ import annotations

from typing import Any

import torch

from solvers.gradient import GradientOptimizer
from tracekit.nodes import ParameterNode
from tracekit.options import GRADIENT_OPTIONS
from tracekit.seam import ParamUpdate, StepContext, nonfinite_loss


class GradientSolver:
    """Tensor parameters with gradients -> one guarded gradient step (updated in place)."""

    name = "gradient"

    def __init__(self, params: list[ParameterNode], llm: Any = None, numeric: Any = "adam",
                 lr: float = 1e-2, **options: Any) -> None:
        self.nodes = [p for p in params if isinstance(p, ParameterNode) and p.kind == "numeric"
                      and p.is_tensor and p.raw.is_floating_point()]
        if not self.nodes:
            raise ValueError("the gradient solver got no floating-point tensor parameter")
        kwargs = {k: options[k] for k in GRADIENT_OPTIONS if k in options}
        kwargs.update(options.get("numeric_options") or {})
        by_bounds: dict[Any, list[torch.Tensor]] = {}
        for p in self.nodes:
            by_bounds.setdefault(p.bounds, []).append(p.raw)
        groups = [{"params": ts, "bounds": b} for b, ts in by_bounds.items()]
        self.numeric = numeric
        self.optimizer = GradientOptimizer(groups, algorithm=numeric, lr=lr, **kwargs)
        positions = {id(t): i for i, t in enumerate(self.optimizer.params)}
        self._index = {id(p): positions[id(p.raw)] for p in self.nodes}

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        """Step the parameters given (those with a gradient this time); report per parameter."""
        updates: dict[int, ParamUpdate] = {}
        eligible: list[ParameterNode] = []
        for p in params:
            name = context.name_of(p)
            if id(p) not in self._index:
                updates[id(p)] = ParamUpdate(name, self.name, reason="not a floating-point tensor "
                                             "known to this solver; kept")
            elif nonfinite_loss(p):
                updates[id(p)] = ParamUpdate(name, self.name, reason="NaN/inf loss: skipped, value kept",
                                             info={"skipped": "non-finite loss"})
            elif p.raw.grad is None:
                updates[id(p)] = ParamUpdate(name, self.name, reason="no gradient: no differentiable "
                                             "path to the loss", info={"differentiable": False})
            else:
                eligible.append(p)
        if eligible:
            # every tensor of this solver eligible: no need to restrict (and hide gradients)
            only = None if len(eligible) == len(self.nodes) else [p.raw for p in eligible]
            stats = self.optimizer.step(only=only)
            for p in eligible:
                i = self._index[id(p)]
                info: dict[str, Any] = {"algorithm": self.optimizer.algorithm, "step": stats.step,
                                        "lr": stats.lr, "grad_norm": stats.grad_norm[i],
                                        "differentiable": True}
                if stats.clipped:
                    info["clipped"] = True
                    info["total_grad_norm"] = stats.total_grad_norm
                if i in stats.skipped:
                    info["skipped"] = "non-finite gradient"
                    updates[id(p)] = ParamUpdate(context.name_of(p), self.name, reason=stats.skipped[i],
                                                 info=info)
                    continue
                reason = ""
                if i in stats.bound_active:
                    info["bound_active"] = stats.bound_active[i]
                    reason = f"bound active: {stats.bound_active[i]} entries on a bound {p.bounds}"
                if stats.grad_norm[i] == 0.0:
                    reason = (reason + "; " if reason else "") + "zero gradient"
                updates[id(p)] = ParamUpdate(context.name_of(p), self.name, applied_in_place=True,
                                             reason=reason, info=info)
        return [updates[id(p)] for p in params]

    def to(self, device: Any) -> GradientSolver:
        """Move the tensors and the optimizer state ("auto": CUDA when present)."""
        self.optimizer.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-friendly (tensors as nested lists): fine for small states; see docs/numeric.md."""
        return {"names": [p.name for p in self.nodes], "optimizer": self.optimizer.state_dict(json=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = [p.name for p in self.nodes]
        if state.get("names") != names:
            raise ValueError(f"gradient state is for parameters {state.get('names')}, not {names}")
        self.optimizer.load_state_dict(state["optimizer"])
