"""`GradientOptimizer`: one gradient step with the guards a trainable workflow needs.

It wraps a torch optimizer (SGD / Adam / AdamW / Lion from this package, which run one
fused C kernel per step on CPU once it has been built ahead (`python -m
solvers.gradient.prebuild`) and torch's fused kernels otherwise, or any user optimizer)
and adds, around its `step()`:

1. a finiteness check: tensors whose gradient holds NaN/inf are left untouched this step
   (their gradient is hidden from the inner optimizer, then restored) and reported; with
   the C kernel and no clipping, the check runs in the same pass as the update;
2. gradient clipping (global norm and/or value) over the finite gradients;
3. a learning-rate schedule (a multiplier of each group's `initial_lr`);
4. decoupled weight decay for SGD (torch's is coupled, L2);
5. projection onto each group's `bounds=(lo, hi)` after the step, with the number of
   entries left on a bound reported.

Param groups work as in torch: `GradientOptimizer([{"params": [w], "lr": 0.1,
"bounds": (0, 1)}, {"params": [b]}], algorithm="adam", lr=1e-2)`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from solvers.gradient.fused import FusedAdam, FusedAdamW, FusedSGD, KernelOptimizer
from solvers.gradient.lion import Lion
from solvers.gradient.schedules import Schedule, make_schedule
from solvers.gradient.state import from_jsonable

ALGORITHMS = ("sgd", "adam", "adamw", "lion")
FORMAT = "tracekit.gradient/1"
_SKIPPED = "NaN/inf gradient: skipped, value kept"
_MAX = sys.float_info.max


@dataclass
class StepStats:
    """What one step did, per tensor in `GradientOptimizer.params` order."""

    step: int
    lr: float  # learning rate of the first group after the schedule
    grad_norm: list[float | None]  # per tensor, before clipping; None: no gradient
    total_grad_norm: float  # over the finite gradients, before clipping
    clipped: bool
    updated: list[bool]
    skipped: dict[int, str] = field(default_factory=dict)  # tensor index -> why
    bound_active: dict[int, int] = field(default_factory=dict)  # tensor index -> entries on a bound


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """`"auto"` -> CUDA when available else CPU; None -> None (leave tensors where they are)."""
    if device is None:
        return None
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused kernels need floating tensors on CPU or CUDA, one device type."""
    types = {p.device.type for p in params}
    return bool(params) and len(types) == 1 and types <= {"cpu", "cuda"} and all(
        p.is_floating_point() for p in params)


def build_torch_optimizer(algorithm: str, groups: list[dict[str, Any]], lr: float, *,
                          weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                          momentum: float = 0.0, nesterov: bool = False, dampening: float = 0.0,
                          betas: tuple[float, float] | None = None, eps: float = 1e-8,
                          fused: bool | None = None, lion_backend: str = "auto",
                          backend: str = "auto") -> tuple[torch.optim.Optimizer, float, bool]:
    """The inner optimizer for a named algorithm, plus (weight decay, decoupled) that the
    wrapper must apply itself (SGD's decoupled decay).

    sgd / adam / adamw: `FusedSGD` / `FusedAdam` / `FusedAdamW` (torch's classes with the C
    kernel on CPU; `backend="torch"` keeps torch's step, `fused` is torch's flag for it)."""
    algorithm = algorithm.lower()
    all_params = [p for g in groups for p in g["params"]]
    use_fused = _fused_ok(all_params) if fused is None else fused
    opt: torch.optim.Optimizer
    if algorithm == "sgd":
        wd = 0.0 if weight_decay is None else weight_decay
        decoupled = True if decoupled_weight_decay is None else decoupled_weight_decay
        opt = FusedSGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                       weight_decay=0.0 if decoupled else wd, fused=use_fused or None, backend=backend)
        return opt, (wd if decoupled else 0.0), decoupled
    if algorithm in ("adam", "adamw"):
        default_wd, default_dec = (0.0, False) if algorithm == "adam" else (1e-2, True)
        wd = default_wd if weight_decay is None else weight_decay
        decoupled = default_dec if decoupled_weight_decay is None else decoupled_weight_decay
        cls = FusedAdamW if decoupled else FusedAdam
        opt = cls(groups, lr=lr, betas=betas or (0.9, 0.999), eps=eps, weight_decay=wd,
                  fused=use_fused or None, backend=backend)
        return opt, 0.0, decoupled
    if algorithm == "lion":
        wd = 0.0 if weight_decay is None else weight_decay
        opt = Lion(groups, lr=lr, betas=betas or (0.9, 0.99), weight_decay=wd, backend=lion_backend)
        return opt, 0.0, True
    raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}, a torch optimizer "
                     f"object, or a factory f(params, lr=...) -> optimizer")


class GradientOptimizer:
    """Gradient descent on plain tensors with NaN guards, clipping, schedules and bounds.

    `algorithm`: "sgd" | "adam" | "adamw" | "lion", a `torch.optim.Optimizer` built over the
    same tensors, or a factory `f(param_groups, lr=...) -> optimizer`.
    `weight_decay`: decoupled for sgd, adamw and lion; L2 (torch's) for adam unless
    `decoupled_weight_decay=True`. `clip_grad_norm` / `clip_grad_value`: clipping before
    the step. `schedule`: "constant" | "linear" | "cosine" | callable(step) -> multiplier,
    with `warmup_steps`, `total_steps`, `final_lr_ratio`. `bounds`: default (lo, hi) for
    groups that do not give their own. `device`: None (leave tensors where they are),
    "auto" (CUDA when present, else CPU) or a device; the state moves with the tensors.
    `check_finite`: skip tensors with NaN/inf gradients (fused into the update pass with
    the C kernel when no clipping is asked for; else one extra read of the gradients).
    `backend`: "auto" (the C kernel on CPU when built ahead, else torch) | "ckernel" (build
    it now if needed) | "torch",
    for sgd / adam / adamw; `lion_backend` for lion.
    """

    def __init__(self, params: Iterable[Any], algorithm: Any = "adam", lr: float = 1e-3, *,
                 weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                 momentum: float = 0.0, nesterov: bool = False, dampening: float = 0.0,
                 betas: tuple[float, float] | None = None, eps: float = 1e-8,
                 clip_grad_norm: float | None = None, clip_grad_value: float | None = None,
                 schedule: str | Schedule | None = "constant", total_steps: int | None = None,
                 warmup_steps: int = 0, final_lr_ratio: float = 0.0,
                 bounds: tuple[float, float] | None = None, device: Any = None,
                 fused: bool | None = None, lion_backend: str = "auto",
                 check_finite: bool = True, backend: str = "auto") -> None:
        groups = _as_groups(params)
        for g in groups:
            g.setdefault("bounds", bounds)
            if g["bounds"] is not None:
                lo, hi = g["bounds"]
                if float(lo) > float(hi):
                    raise ValueError(f"bounds low {lo} is above high {hi}")
                g["bounds"] = (float(lo), float(hi))
        self.device = resolve_device(device)
        if self.device is not None:
            for g in groups:
                for p in g["params"]:
                    _move_tensor(p, self.device)
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.check_finite = check_finite
        self.schedule = make_schedule(schedule, total_steps, warmup_steps, final_lr_ratio)
        self.steps = 0
        self._decay = 0.0
        if isinstance(algorithm, str):
            self.algorithm = algorithm.lower()
            self.optimizer, self._decay, _ = build_torch_optimizer(
                self.algorithm, groups, lr, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled_weight_decay, momentum=momentum, nesterov=nesterov,
                dampening=dampening, betas=betas, eps=eps, fused=fused, lion_backend=lion_backend,
                backend=backend)
        elif hasattr(algorithm, "step") and hasattr(algorithm, "param_groups"):
            self.algorithm = type(algorithm).__name__
            self.optimizer = algorithm
            mine = {id(p) for g in groups for p in g["params"]}
            theirs = {id(p) for g in algorithm.param_groups for p in g["params"]}
            if not mine <= theirs:
                raise ValueError("the optimizer object given does not hold every tensor to train; "
                                 "build it over the same tensors, or pass a factory f(params, lr=...)")
            bounds_of = {id(p): gg["bounds"] for gg in groups for p in gg["params"]}
            for g in algorithm.param_groups:
                g.setdefault("bounds", next((bounds_of[id(p)] for p in g["params"] if id(p) in bounds_of),
                                            bounds))
        elif callable(algorithm):
            self.algorithm = getattr(algorithm, "__name__", type(algorithm).__name__)
            try:
                self.optimizer = algorithm(groups, lr=lr)
            except TypeError:
                self.optimizer = algorithm(groups)
        else:
            raise TypeError(f"algorithm must be one of {ALGORITHMS}, an optimizer object or a "
                            f"factory; got {type(algorithm).__name__}")
        for g in self.optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
            g.setdefault("bounds", bounds)

    # --- the step ----------------------------------------------------------------------
    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, only: Iterable[torch.Tensor] | None = None) -> StepStats:
        """One guarded step. `only`: update just these tensors (others keep their gradient)."""
        params = self.params
        fused_guard = (self.check_finite and self.clip_grad_norm is None and self.clip_grad_value is None
                       and hasattr(self.optimizer, "guarded_sums"))
        if fused_guard and only is None:
            # check and update in one pass (the C kernel); None: not applicable, nothing done
            fused_guard = False
            lr = self._apply_schedule()
            sums = cast(KernelOptimizer, self.optimizer).guarded_sums(self._decay)
            if sums is not None:
                return self._fused_stats(lr, params, sums)
        allowed = None if only is None else {id(t) for t in only}
        grad_norm: list[float | None] = [None] * len(params)
        skipped: dict[int, str] = {}
        hidden: dict[int, torch.Tensor | None] = {}
        active: list[int] = []
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            if allowed is not None and id(p) not in allowed:
                hidden[i] = p.grad
            else:
                active.append(i)
        if fused_guard and active:  # the same, with the gradients outside `only` hidden
            for i in hidden:
                params[i].grad = None
            try:
                lr = self._apply_schedule()
                sums = cast(KernelOptimizer, self.optimizer).guarded_sums(self._decay)
            finally:
                for i, grad in hidden.items():
                    params[i].grad = grad
            if sums is not None:
                return self._fused_stats(lr, params, sums)
        with torch.no_grad():
            return self._checked_step(params, active, hidden, grad_norm, skipped)

    def _checked_step(self, params: list[torch.Tensor], active: list[int], hidden: dict[int, torch.Tensor | None],
                      grad_norm: list[float | None], skipped: dict[int, str]) -> StepStats:
        """The step with torch ops: norms (the NaN guard), clipping, decay, the inner step."""
        if self.check_finite and active:
            values = _to_floats(torch._foreach_norm(_grads(params, active)))
            for i, v in zip(active, values):
                grad_norm[i] = v
                if not math.isfinite(v):
                    skipped[i] = _SKIPPED
                    hidden[i] = params[i].grad
        kept = [i for i in active if i not in skipped]
        total = math.sqrt(sum(v ** 2 for v in (grad_norm[i] for i in kept) if v is not None))
        for i in hidden:
            params[i].grad = None
        try:
            clipped = self._clip(params, kept, total)
            lr = self._apply_schedule()
            if self._decay and kept:
                for g in self.optimizer.param_groups:
                    ps = [p for p in g["params"] if p.grad is not None]
                    if ps:
                        torch._foreach_mul_(ps, 1.0 - g["lr"] * self._decay)
            if kept:
                self.optimizer.step()
            bound_active = self._project(kept, params)
        finally:
            for i, grad in hidden.items():
                params[i].grad = grad
        return self._stats(lr, grad_norm, total, clipped, kept, skipped, bound_active)

    def _fused_stats(self, lr: float, params: list[torch.Tensor], sums: list[float | None]) -> StepStats:
        """Stats from the fused pass's sums of squares (None: no gradient; not finite:
        skipped by the kernel), then projection onto the bounds."""
        updated = [s is not None and s <= _MAX for s in sums]  # False for NaN and inf
        grad_norm = [None if s is None else math.sqrt(s) for s in sums]
        total = math.sqrt(sum([s for s, u in zip(sums, updated) if u and s is not None]))
        skipped = {} if all(updated) else {i: _SKIPPED for i, (s, u) in enumerate(zip(sums, updated))
                                           if s is not None and not u}
        bound_active = self._project([i for i, u in enumerate(updated) if u], params)
        self.steps += 1
        return StepStats(self.steps, lr, grad_norm, total, False, updated, skipped, bound_active)

    def _stats(self, lr: float, grad_norm: list[float | None], total: float, clipped: bool,
               kept: list[int], skipped: dict[int, str], bound_active: dict[int, int]) -> StepStats:
        self.steps += 1
        kept_set = set(kept)
        updated = [i in kept_set for i in range(len(grad_norm))]
        return StepStats(self.steps, lr, grad_norm, total, clipped, updated, skipped, bound_active)

    def _clip(self, params: list[torch.Tensor], kept: list[int], total: float) -> bool:
        clipped = False
        grads = _grads(params, kept)
        if not grads:
            return False
        if self.clip_grad_value is not None:
            torch._foreach_clamp_min_(grads, -float(self.clip_grad_value))
            torch._foreach_clamp_max_(grads, float(self.clip_grad_value))
            clipped = True
        if self.clip_grad_norm is not None:
            if not self.check_finite or self.clip_grad_value is not None:
                total = math.sqrt(sum(v * v for v in _to_floats(torch._foreach_norm(grads))))
            if total > self.clip_grad_norm:
                torch._foreach_mul_(grads, float(self.clip_grad_norm) / (total + 1e-6))
                clipped = True
        return clipped

    def _apply_schedule(self) -> float:
        factor = float(self.schedule(self.steps))
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        return float(self.optimizer.param_groups[0]["lr"])

    def _project(self, kept: list[int], params: list[torch.Tensor]) -> dict[int, int]:
        """Clamp updated tensors into their group's bounds; count entries on a bound."""
        out: dict[int, int] = {}
        groups = [g for g in self.optimizer.param_groups if g.get("bounds") is not None]
        if not groups or not kept:
            return out
        index = {id(p): i for i, p in enumerate(params)}
        kept_set = set(kept)
        with torch.no_grad():
            for g in groups:
                lo, hi = g["bounds"]
                for p in g["params"]:
                    i = index[id(p)]
                    if i not in kept_set:
                        continue
                    p.clamp_(lo, hi)
                    on_bound = int(((p == lo) | (p == hi)).sum())
                    if on_bound:
                        out[i] = on_bound
        return out

    # --- devices and state -------------------------------------------------------------
    def to(self, device: Any) -> GradientOptimizer:
        """Move the tensors and the optimizer state to `device` ("auto" allowed)."""
        target = resolve_device(device)
        if target is None:
            return self
        state = self.optimizer.state_dict()
        for p in self.params:
            _move_tensor(p, target)
        self.optimizer.load_state_dict(state)  # torch casts each state tensor to its param's device
        self.device = target
        return self

    def state_dict(self) -> dict[str, Any]:
        """The state: algorithm, step count and torch's state dict (tensors, not copies; save
        it with `tracekit.storage`, safetensors, or `torch.save`)."""
        return {"format": FORMAT, "algorithm": self.algorithm, "steps": self.steps,
                "torch": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a state from `state_dict()` (also the first JSON form: tensors as tagged
        lists, string keys, lists for tuples)."""
        state = from_jsonable(state)  # idempotent on the native form
        inner = state["torch"]
        inner["state"] = {int(k): v for k, v in inner["state"].items()}
        for g in inner["param_groups"]:
            for key in ("betas", "bounds"):
                if isinstance(g.get(key), list):
                    g[key] = tuple(g[key])
        if state.get("format") != FORMAT:
            raise ValueError(f"not a GradientOptimizer state (format {state.get('format')!r})")
        if state["algorithm"] != self.algorithm:
            raise ValueError(f"state is for {state['algorithm']!r}, this optimizer runs {self.algorithm!r}")
        self.optimizer.load_state_dict(state["torch"])
        self.steps = int(state["steps"])


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    if isinstance(params, torch.Tensor):
        params = [params]
    items = list(params)
    if not items:
        raise ValueError("GradientOptimizer got an empty parameter list")
    if all(isinstance(x, dict) for x in items):
        return [{**g, "params": list(g["params"])} for g in items]
    if any(isinstance(x, dict) for x in items):
        raise TypeError("pass either tensors or param-group dicts, not a mix")
    return [{"params": items}]


def _grads(params: list[torch.Tensor], indices: list[int]) -> list[torch.Tensor]:
    """The gradients of `params[i]` for `indices` (each of them has one)."""
    return cast(list[torch.Tensor], [params[i].grad for i in indices])


def _to_floats(norms: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[float]:
    """Scalar tensors -> floats with one host transfer when they share a device and dtype."""
    if not norms:
        return []
    try:
        return torch.stack(norms).to(torch.float64).tolist()
    except RuntimeError:
        return [float(n) for n in norms]


def _move_tensor(p: torch.Tensor, device: torch.device) -> None:
    """Move a leaf tensor in place (same Python object), with its gradient."""
    if p.device == device:
        return
    with torch.no_grad():
        p.data = p.data.to(device)
        if p.grad is not None:
            p.grad = p.grad.to(device)


OptimizerFactory = Callable[..., torch.optim.Optimizer]
