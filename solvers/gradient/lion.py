"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), fused.

    u = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * weight_decay) - lr * sign(u)       (decoupled weight decay)
    m = beta2 * m + (1 - beta2) * g

Backends: "ckernel" (one fused C pass per step over all CPU float32/float64 tensors, see
`_ckernel` and `fused`), "foreach" (torch `_foreach_*` ops: five passes, used on CUDA and as the CPU
fallback) and "reference" (one tensor at a time, for tests). "auto" picks the fused kernel
for contiguous CPU tensors when it has been built ahead (`python -m solvers.gradient.prebuild`;
"ckernel" builds it at construction) and foreach otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from solvers.gradient import _ckernel
from solvers.gradient.fused import KernelOptimizer, _number

BACKENDS = ("auto", "ckernel", "foreach", "reference")
_PARALLEL_MIN = 1 << 18  # elements


class Lion(KernelOptimizer, torch.optim.Optimizer):
    """Lion with decoupled weight decay; a `torch.optim.Optimizer` (param groups, state dicts).

    `step()` runs the fused C kernel over all groups when every tensor allows it (see
    `solvers.gradient.fused`), else each group with its backend; `guarded_step()` checks
    the gradients in the same pass.
    """

    _kernel_name = "lion"
    _ptr_keys = ("exp_avg",)

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
        if backend == "ckernel":
            _ckernel.build()  # asked for by name: compiled now (once), never during a step
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay,
                                  "backend": backend})

    def _kernel_group_ok(self, group: dict[str, Any]) -> bool:
        b1, b2 = group["betas"]
        return (group.get("backend", "auto") in ("auto", "ckernel")
                and _number(group["lr"], b1, b2, group["weight_decay"]))

    def _kernel_state(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[list, bool]:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            return [state["exp_avg"]], True
        return [state["exp_avg"]], False

    def _kernel_scalars(self, group: dict[str, Any], decay: float, da: Any) -> None:
        lr = group["lr"]
        b1, b2 = group["betas"]
        mul = 1.0 - lr * group["weight_decay"]
        if decay:
            mul *= 1.0 - lr * decay
        da[0], da[1], da[2], da[3] = lr, mul, b1, b2

    @torch.no_grad()
    def _torch_step(self) -> None:
        """Each group with its backend (the kernel could not take every tensor at once)."""
        self._invalidate()
        self.last_backend = "foreach"
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
