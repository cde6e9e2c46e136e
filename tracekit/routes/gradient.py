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
from tracekit.seam import GroupUpdate, StepContext


class GradientSolver:
    """Tensor parameters with gradients -> one guarded gradient step (updated in place),
    returned as one `GroupUpdate`: NaN/inf gradients skipped and bounds projected here, so
    the optimizer trusts these tensors without validating each one."""

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

    def step(self, params: list[ParameterNode], context: StepContext) -> GroupUpdate:
        """Step the parameters given (those with a gradient this time) in one guarded step of
        the inner optimizer; the report's per-parameter reasons are built only when read."""
        index = self._index
        positions: list[int] = []  # each param's position in the inner optimizer, -1: unknown
        odd: dict[int, tuple[str, dict[str, Any]]] = {}  # params not stepped -> (reason, info)
        for k, p in enumerate(params):
            i = index.get(id(p), -1)
            positions.append(i)
            if i < 0:
                odd[k] = ("not a floating-point tensor known to this solver; kept", {})
            elif p.feedback and _nonfinite(p.feedback):
                odd[k] = ("NaN/inf loss: skipped, value kept", {"skipped": "non-finite loss"})
            elif p.raw.grad is None:
                odd[k] = ("no gradient: no differentiable path to the loss", {"differentiable": False})
        stats = None
        if len(odd) < len(params):
            # every tensor of this solver eligible: no need to restrict (and hide gradients)
            only = (None if len(params) - len(odd) == len(self.nodes)
                    else [p.raw for k, p in enumerate(params) if k not in odd])
            stats = self.optimizer.step(only=only)
        if stats is None:
            applied = [False] * len(params)
        elif odd:
            applied = [k not in odd and stats.updated[i] for k, i in enumerate(positions)]
        else:
            updated = stats.updated
            applied = [updated[i] for i in positions]
        algorithm = self.optimizer.algorithm

        def details(k: int) -> tuple[str, dict[str, Any]]:
            if k in odd:
                reason, info = odd[k]
                return reason, dict(info)
            assert stats is not None
            i = positions[k]
            info = {"algorithm": algorithm, "step": stats.step, "lr": stats.lr,
                                    "grad_norm": stats.grad_norm[i], "differentiable": True}
            if stats.clipped:
                info["clipped"] = True
                info["total_grad_norm"] = stats.total_grad_norm
            if i in stats.skipped:
                info["skipped"] = "non-finite gradient"
                return stats.skipped[i], info
            reason = ""
            if i in stats.bound_active:
                info["bound_active"] = stats.bound_active[i]
                reason = f"bound active: {stats.bound_active[i]} entries on a bound {params[k].bounds}"
            if stats.grad_norm[i] == 0.0:
                reason = (reason + "; " if reason else "") + "zero gradient"
            return reason, info

        return GroupUpdate(self.name, list(params), applied, details)

    def to(self, device: Any) -> GradientSolver:
        """Move the tensors and the optimizer state ("auto": CUDA when present)."""
        self.optimizer.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Parameter names and the optimizer's native state (tensors; `tracekit.storage` saves it)."""
        return {"names": [p.name for p in self.nodes], "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = [p.name for p in self.nodes]
        if state.get("names") != names:
            raise ValueError(f"gradient state is for parameters {state.get('names')}, not {names}")
        self.optimizer.load_state_dict(state["optimizer"])


def _nonfinite(records: list) -> bool:
    """`tracekit.seam.nonfinite_loss` on a parameter's records, without a generator."""
    for r in records:
        if not r.loss_is_finite:
            return True
    return False
