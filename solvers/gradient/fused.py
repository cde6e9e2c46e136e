"""SGD, Adam and AdamW that run one fused C kernel per step on CPU tensors.

`FusedSGD`, `FusedAdam` and `FusedAdamW` are `torch.optim.SGD` / `Adam` / `AdamW`
(same constructor, param groups, state layout and state dicts: `momentum_buffer`;
`exp_avg`, `exp_avg_sq` and `step` as a float32 scalar tensor), whose `step()` updates
every contiguous float32/float64 CPU tensor in one call of the kernels in `_ckernel`
(one pass over memory for all tensors, OpenMP threads). Anything the kernel does not
cover runs torch's own step (its fused kernel when the group says `fused=True`): CUDA
or other devices, non-contiguous tensors, `amsgrad`, `capturable`, `differentiable`,
tensor learning rates, `backend="torch"`, kernels not built ahead (no C compiler, or
`python -m solvers.gradient.prebuild` not run), or `TRACEKIT_NO_CKERNEL=1`.

`guarded_step(decay=0.0)` checks and updates in the same pass: each gradient's sum of
squares (double) is computed first and a tensor whose sum is not finite is left alone
(value and state, and no state is created for it); it returns {id(param): sum of
squares}, or None (nothing done) when the kernel cannot run; `guarded_sums` returns the
same as a list over the params of all groups. `decay` multiplies each updated parameter
by `1 - lr * decay` first (the decoupled weight decay `GradientOptimizer` gives SGD).

The pointers of parameters and state are cached per param group and re-checked each
step (the parameters' data pointers and sizes, the state dict's identity); gradient
pointers are read each step. The step bumps the parameters' autograd version counters
(`torch.autograd.graph.increment_version`), as torch's in-place ops do. Do not swap state
tensors behind the optimizer's back (load a state dict instead).

The kernel library is never compiled here: it runs when it has been built ahead of time
(`python -m solvers.gradient.prebuild`, see `_ckernel.build`) or when `backend="ckernel"`
asks for it at construction; otherwise torch's step runs.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast

import torch

from solvers.gradient import _ckernel

KERNEL_BACKENDS = ("auto", "ckernel", "torch")
_FLOATS = (torch.float32, torch.float64)


class _Plan:
    """Pointers for the tensors of one param group that have gradients: cached between
    steps when every tensor of the group has one, rebuilt each step otherwise."""

    __slots__ = ("params", "pptr", "calls", "fresh", "numel", "dtypes")

    def __init__(self, params: list) -> None:
        self.params = params
        self.pptr = array("Q", [p.data_ptr() for p in params])
        self.numel = array("q", [p.numel() for p in params])
        self.dtypes = [p.dtype for p in params]
        self.calls: list[tuple] = []  # (indices or None, C function, ia, da, keep-alive)
        self.fresh: list = []  # params whose state this plan created


class KernelOptimizer:
    """Mixin for a torch optimizer whose `step` can run one of `_ckernel`'s fused kernels.

    Subclasses set `_kernel_name` and `_ptr_keys` (the state tensors the kernel reads) and
    define `_kernel_group_ok(group)`, `_kernel_state(p, group) -> (tensors, fresh)` (the
    state, created as torch would), `_kernel_scalars(group, decay, da)` and optionally
    `_kernel_flags(group, ia)` (the arguments of the C entry point, see `_ckernel`).
    """

    _kernel_name = ""
    _ptr_keys: tuple[str, ...] = ()  # state tensors whose pointers go to ia[7], ia[8], ...
    _flags_slot = 0  # where the first-step flags go in ia (0: not used)
    backend = "auto"
    last_backend = ""  # "ckernel" or "torch": what the last step ran
    if TYPE_CHECKING:  # given by the torch optimizer this is mixed into
        state: defaultdict[torch.Tensor, Any]
        param_groups: list[dict[str, Any]]

    # -- bookkeeping ---------------------------------------------------------------------
    def _set_backend(self, backend: str) -> None:
        if backend not in KERNEL_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {KERNEL_BACKENDS}")
        if backend == "ckernel" and _ckernel.build() is None:  # asked for: built now, not in a step
            raise RuntimeError("backend 'ckernel' requested but the C kernel could not be built "
                               "(no C compiler, or TRACEKIT_NO_CKERNEL is set); use backend='auto'")
        self.backend = backend

    def _invalidate(self) -> None:
        self.__dict__.pop("_plans", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # type: ignore[misc]
        self._invalidate()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]
        self._invalidate()

    def __getstate__(self) -> dict[str, Any]:
        state = cast(dict[str, Any], super().__getstate__())  # torch.optim.Optimizer's
        state["backend"] = self.backend
        return state

    # -- steps -----------------------------------------------------------------------------
    def step(self, closure: Any = None) -> Any:
        """One step for every parameter with a gradient: the fused C kernel when every
        tensor allows it, torch's step otherwise."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._kernel_step(False) is None:
            self._torch_step()
        return loss

    def guarded_step(self, decay: float = 0.0) -> dict[int, float] | None:
        """Check every gradient and update in one fused pass; see the module docstring."""
        sums = self._kernel_step(True, decay)
        if sums is None:
            return None
        params = [p for g in self.param_groups for p in g["params"]]
        return {id(p): s for p, s in zip(params, sums) if s is not None}

    def guarded_sums(self, decay: float = 0.0) -> list[float | None] | None:
        """`guarded_step` with the sums as a list over the params of all groups in order
        (None: no gradient), the cheapest form for many tensors."""
        return self._kernel_step(True, decay)

    def _torch_step(self) -> None:
        """torch's own step (its hooks already ran around ours: call it unhooked)."""
        self._invalidate()  # torch may create or replace state tensors
        self.last_backend = "torch"
        for cls in type(self).__mro__:
            if cls.__module__.startswith("torch.optim") and "step" in cls.__dict__:
                fn = cls.__dict__["step"]
                if getattr(fn, "hooked", False):
                    fn = fn.__wrapped__
                fn(self)
                return
        raise TypeError(f"{type(self).__name__} has no torch optimizer base")  # pragma: no cover

    def _kernel_step(self, check: bool, decay: float = 0.0) -> list[float | None] | None:
        """Run the kernel over all groups; None, with nothing changed, when it cannot.

        Returns the gradients' sums of squares (with `check`; else an empty list), one per
        param of all groups in order, None for a param without a gradient."""
        if self.backend == "torch":
            return None
        lib = _ckernel.load()
        if lib is None:
            return None
        plans = self.__dict__.get("_plans")
        if plans is None or plans[0] is not self.state:
            plans = self.__dict__["_plans"] = (self.state, {})
        cache: dict[int, _Plan] = plans[1]
        jobs = []
        base = 0
        for gi, group in enumerate(self.param_groups):  # first check everything, change nothing
            params = group["params"]
            size = len(params)
            plan = cache.get(gi)
            grads = [p.grad for p in params]
            present = [g for g in grads if g is not None]  # (`is`: == on tensors is an op)
            if not present:
                base += size
                continue
            if not self._kernel_group_ok(group):
                return None
            pos = None
            if len(present) != size:  # some tensors have no gradient this step: a plan for the others
                pos = [j for j, g in enumerate(grads) if g is not None]
                params = [params[j] for j in pos]
                grads = present
                plan = None
            elif plan is not None and (plan.params is not params
                                       or array("Q", [p.data_ptr() for p in params]) != plan.pptr
                                       or array("q", [p.numel() for p in params]) != plan.numel
                                       or [p.dtype for p in params] != plan.dtypes):
                plan = None
            if plan is None and not self._fits(params, grads):
                return None
            # gradient pointers, -1 for a non-contiguous (or sparse) gradient; one pass, as
            # after a step these tensors' metadata is out of the caches
            gptrs = [g.data_ptr() if g.is_contiguous() else -1 for g in grads]
            if -1 in gptrs:
                return None
            jobs.append((gi, group, plan, params, gptrs, pos, base))
            base += size
        sums: list[float | None] = [None] * base if check else []
        threads = torch.get_num_threads()
        for gi, group, plan, params, gptrs, pos, start in jobs:
            if plan is None:
                plan = self._make_plan(params, group)
                if pos is None and not plan.fresh:
                    cache[gi] = plan
            for idx, fn, ia, da, _keep in plan.calls:
                ps = params if idx is None else [params[i] for i in idx]
                gaddr = array("q", gptrs if idx is None else [gptrs[i] for i in idx])
                ia[2], ia[3], ia[6] = threads, check, gaddr.buffer_info()[0]
                self._kernel_flags(group, ia)
                self._kernel_scalars(group, decay, da)
                if check:
                    out = array("d", bytes(8 * len(ps)))
                    if fn(ia.buffer_info()[0], da.buffer_info()[0], out.buffer_info()[0]) < 0:
                        raise MemoryError("the fused optimizer kernel could not allocate its work arrays")
                    if idx is None and pos is None:
                        sums[start:start + len(ps)] = out
                    else:
                        where = idx if idx is not None else range(len(ps))
                        for k, s in zip(where, out):
                            sums[start + (k if pos is None else pos[k])] = s
                    if plan.fresh:  # torch would not have created state for skipped tensors
                        for p, s in zip(ps, out):
                            if not math.isfinite(s) and any(p is q for q in plan.fresh):
                                self.state.pop(p, None)
                elif fn(ia.buffer_info()[0], da.buffer_info()[0], None) < 0:
                    raise MemoryError("the fused optimizer kernel could not allocate its work arrays")
                ia[6] = 0  # the gradient pointers live only for this call
                # written behind autograd's back: tell it, as torch's in-place ops would
                torch.autograd.graph.increment_version(ps)
        self.last_backend = "ckernel"
        return sums

    def _fits(self, params: list, grads: list) -> bool:
        """Can the kernel update these tensors (contiguous CPU float32/float64, state alike)?"""
        for p, g in zip(params, grads):
            if (p.device.type != "cpu" or p.dtype not in _FLOATS or not p.is_contiguous()
                    or g.dtype != p.dtype or g.device.type != "cpu" or g.layout != torch.strided):
                return False
            state = self.state.get(p)
            if state:
                for key in self._ptr_keys:
                    t = state.get(key)
                    if key != "step" and t is not None and not _same_layout(t, p):
                        return False
        return True

    def _make_plan(self, params: list, group: dict[str, Any]) -> _Plan:
        """Pointer arrays for `params` (checked by `_fits`), creating missing state as torch would."""
        plan = _Plan(params)
        by_dtype: dict[torch.dtype, list[int]] = {}
        states = []
        for i, p in enumerate(params):
            by_dtype.setdefault(p.dtype, []).append(i)
            tensors, fresh = self._kernel_state(p, group)
            states.append((tensors, fresh))
            if fresh:
                plan.fresh.append(p)
        lib = _ckernel.load()
        for dtype, idx in by_dtype.items():
            ps = [params[i] for i in idx]
            keep: list = list(ps)
            ptrs = [_ckernel.addresses(ps)]
            for j in range(len(self._ptr_keys)):
                ts = [states[i][0][j] for i in idx]
                keep.extend(ts)
                ptrs.append(array("Q", [0 if t is None else t.data_ptr() for t in ts]))
            flags = array("B", [1 if states[i][1] else 0 for i in idx])
            sizes = array("q", [p.numel() for p in ps])
            keep.extend([ptrs, flags, sizes])
            ia = array("q", [0] * _ckernel.IA_SIZE)
            ia[0], ia[1], ia[4], ia[5] = len(idx), _addr(sizes), _ckernel.SMALL, _addr(ptrs[0])
            for j, a in enumerate(ptrs[1:]):
                ia[7 + j] = _addr(a)
            if self._flags_slot:
                ia[self._flags_slot] = _addr(flags)
            fn = getattr(lib, f"{self._kernel_name}_{'f32' if dtype is torch.float32 else 'f64'}")
            plan.calls.append((None if len(idx) == len(params) else idx, fn, ia,
                               array("d", [0.0] * 8), keep))
        return plan

    # -- per algorithm ---------------------------------------------------------------------
    def _kernel_group_ok(self, group: dict[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _kernel_state(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[list, bool]:  # pragma: no cover
        raise NotImplementedError

    def _kernel_flags(self, group: dict[str, Any], ia: array) -> None:
        pass

    def _kernel_scalars(self, group: dict[str, Any], decay: float, da: array) -> None:  # pragma: no cover
        raise NotImplementedError


def _same_layout(t: torch.Tensor, p: torch.Tensor) -> bool:
    return (t.device.type == "cpu" and t.dtype == p.dtype and t.is_contiguous()
            and t.numel() == p.numel())


def _addr(a: array) -> int:
    return a.buffer_info()[0]


def _number(*xs: Any) -> bool:
    """All plain numbers (not tensors, not bools)?"""
    for x in xs:
        if type(x) is not float and type(x) is not int and (
                not isinstance(x, (int, float)) or isinstance(x, bool)):
            return False
    return True


class _SGDKernel(KernelOptimizer):
    _kernel_name = "sgd"
    _ptr_keys = ("momentum_buffer",)
    _flags_slot = 8

    def _kernel_group_ok(self, group: dict[str, Any]) -> bool:
        return (_number(group["lr"], group["momentum"], group["dampening"], group["weight_decay"])
                and not group.get("differentiable", False))

    def _kernel_state(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[list, bool]:
        if not group["momentum"]:
            return [None], False
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:  # torch's first step: buf = grad (the kernel writes it)
            state["momentum_buffer"] = buf = torch.empty_like(p, memory_format=torch.contiguous_format)
            return [buf], True
        return [buf], False

    def _kernel_flags(self, group: dict[str, Any], ia: array) -> None:
        ia[9], ia[10] = bool(group["nesterov"]), bool(group.get("maximize", False))

    def _kernel_scalars(self, group: dict[str, Any], decay: float, da: array) -> None:
        lr = group["lr"]
        da[0], da[1], da[2], da[3], da[4] = (lr, group["momentum"], group["dampening"],
                                             group["weight_decay"], 1.0 - lr * decay)


class _AdamKernel(KernelOptimizer):
    _kernel_name = "adam"
    _ptr_keys = ("exp_avg", "exp_avg_sq", "step")

    def _kernel_group_ok(self, group: dict[str, Any]) -> bool:
        b1, b2 = group["betas"]
        return (_number(group["lr"], b1, b2, group["weight_decay"], group["eps"])
                and not group.get("amsgrad") and not group.get("capturable")
                and not group.get("differentiable"))

    def _kernel_state(self, p: torch.Tensor, group: dict[str, Any]) -> tuple[list, bool]:
        state = self.state[p]
        fresh = len(state) == 0
        if fresh:  # as torch.optim.Adam._init_group (step: a float32 scalar, as in its fused path)
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        step = state["step"]
        if not (isinstance(step, torch.Tensor) and step.dtype == torch.float32
                and step.device.type == "cpu" and step.numel() == 1 and step.is_contiguous()):
            state["step"] = step = torch.tensor(float(step), dtype=torch.float32)
        return [state["exp_avg"], state["exp_avg_sq"], step], fresh

    def _kernel_flags(self, group: dict[str, Any], ia: array) -> None:
        ia[10] = bool(group.get("maximize", False))

    def _kernel_scalars(self, group: dict[str, Any], decay: float, da: array) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        b1, b2 = group["betas"]
        decoupled = group.get("decoupled_weight_decay", False)
        mul = 1.0 - lr * wd if decoupled else 1.0
        if decay:
            mul *= 1.0 - lr * decay
        da[0], da[1], da[2], da[3], da[4], da[5] = lr, b1, b2, group["eps"], 0.0 if decoupled else wd, mul


class FusedSGD(_SGDKernel, torch.optim.SGD):
    """`torch.optim.SGD` with a fused C kernel on CPU (`backend`: "auto" | "ckernel" | "torch")."""

    def __init__(self, params: Any, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        self._set_backend(backend)


class FusedAdam(_AdamKernel, torch.optim.Adam):
    """`torch.optim.Adam` with a fused C kernel on CPU (`backend`: "auto" | "ckernel" | "torch")."""

    def __init__(self, params: Any, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        self._set_backend(backend)


class FusedAdamW(_AdamKernel, torch.optim.AdamW):
    """`torch.optim.AdamW` with a fused C kernel on CPU (`backend`: "auto" | "ckernel" | "torch")."""

    def __init__(self, params: Any, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        self._set_backend(backend)
