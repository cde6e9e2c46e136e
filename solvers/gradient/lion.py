"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), fused.

    u = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * weight_decay) - lr * sign(u)       (decoupled weight decay)
    m = beta2 * m + (1 - beta2) * g

Backends: "ckernel" (one fused C pass per step over all CPU float32/float64 tensors, see
`_ckernel`), "foreach" (torch `_foreach_*` ops: five passes, used on CUDA and as the CPU
fallback) and "reference" (one tensor at a time, for tests). "auto" picks the fused kernel
for contiguous CPU tensors and foreach otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from solvers.gradient import _ckernel

BACKENDS = ("auto", "ckernel", "foreach", "reference")
_PARALLEL_MIN = 1 << 18  # elements


class Lion(torch.optim.Optimizer):
    """Lion with decoupled weight decay; a `torch.optim.Optimizer` (param groups, state dicts)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, *, backend: str = "auto") -> None:
        if lr < 0:
            raise ValueError(f"Lion: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Lion: betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Lion: weight_decay must be >= 0, got {weight_decay}")
        if backend not in BACKENDS:
            raise ValueError(f"Lion: unknown backend {backend!r}; use one of {BACKENDS}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay,
                                  "backend": backend})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Lion step for every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, avgs = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                avgs.append(state["exp_avg"])
            if params:
                beta1, beta2 = group["betas"]
                lion_update(params, grads, avgs, lr=float(group["lr"]), beta1=float(beta1),
                            beta2=float(beta2), weight_decay=float(group["weight_decay"]),
                            backend=group.get("backend", "auto"))
        return loss

    @torch.no_grad()
    def guarded_step(self) -> dict[int, float] | None:
        """Check every gradient and update in one fused pass (CPU C kernel).

        Returns {id(param): sum of squares of its gradient}; a param whose sum is not
        finite is not updated. Returns None, having changed nothing, when some tensor
        cannot use the kernel (then check with torch ops and call `step`).
        """
        if _ckernel.load() is None:
            return None
        work = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if group.get("backend", "auto") not in ("auto", "ckernel") or not all(
                    _kernel_ok(p, p.grad) for p in ps):
                return None
            work.append((group, ps))
        sums: dict[int, float] = {}
        for group, ps in work:
            by_dtype: dict[torch.dtype, list] = {}
            for p in ps:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                by_dtype.setdefault(p.dtype, []).append(p)
            beta1, beta2 = group["betas"]
            for same in by_dtype.values():
                total = sum(p.numel() for p in same)
                threads = torch.get_num_threads() if total >= _PARALLEL_MIN else 1
                result = _ckernel.lion_step(same, [p.grad for p in same],
                                            [self.state[p]["exp_avg"] for p in same], float(group["lr"]),
                                            float(group["weight_decay"]), float(beta1), float(beta2),
                                            threads, check=True)
                sums.update({id(p): v for p, v in zip(same, result or [])})
        return sums


def _kernel_ok(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None = None) -> bool:
    """Can the fused C kernel update this tensor (contiguous CPU float32/float64, one dtype)?"""
    return (p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)
            and g.dtype == p.dtype and g.device == p.device and not g.is_sparse
            and p.is_contiguous() and g.is_contiguous()
            and (m is None or (m.dtype == p.dtype and m.is_contiguous())))


def lion_update(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                *, lr: float, beta1: float, beta2: float, weight_decay: float,
                backend: str = "auto") -> None:
    """Apply one Lion update in place (no autograd); see the module docstring for the rule."""
    if backend == "reference":
        for p, g, m in zip(params, grads, exp_avgs):
            u = m.lerp(g, 1.0 - beta1)
            p.mul_(1.0 - lr * weight_decay).add_(torch.sign(u), alpha=-lr)
            m.lerp_(g, 1.0 - beta2)
        return
    fused: dict[torch.dtype, tuple[list, list, list]] = {}
    rest: tuple[list, list, list] = ([], [], [])
    use_kernel = backend in ("auto", "ckernel") and _ckernel.load() is not None
    if backend == "ckernel" and not use_kernel:
        raise RuntimeError("Lion backend 'ckernel' requested but the C kernel could not be built")
    for p, g, m in zip(params, grads, exp_avgs):
        if use_kernel and _kernel_ok(p, g, m):
            bucket = fused.setdefault(p.dtype, ([], [], []))
        else:
            bucket = rest
        bucket[0].append(p)
        bucket[1].append(g)
        bucket[2].append(m)
    for ps, gs, ms in fused.values():
        total = sum(p.numel() for p in ps)
        # below a few chunks, waking threads costs more than the work
        threads = torch.get_num_threads() if total >= _PARALLEL_MIN else 1
        _ckernel.lion_step(ps, gs, ms, lr, weight_decay, beta1, beta2, threads)
    if rest[0]:
        _lion_foreach(*rest, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay)


def _lion_foreach(params: list, grads: list, exp_avgs: list, *, lr: float, beta1: float,
                  beta2: float, weight_decay: float) -> None:
    """Lion with torch's multi-tensor ops, grouped by device and dtype as foreach requires."""
    groups: dict[tuple, tuple[list, list, list]] = {}
    for p, g, m in zip(params, grads, exp_avgs):
        bucket = groups.setdefault((p.device, p.dtype), ([], [], []))
        bucket[0].append(p.detach())
        bucket[1].append(g.to(p.dtype))
        bucket[2].append(m)
    for ps, gs, ms in groups.values():
        update = torch._foreach_lerp(ms, gs, 1.0 - beta1)
        torch._foreach_sign_(update)
        if weight_decay:
            torch._foreach_mul_(ps, 1.0 - lr * weight_decay)
        torch._foreach_add_(ps, update, alpha=-lr)
        torch._foreach_lerp_(ms, gs, 1.0 - beta2)
