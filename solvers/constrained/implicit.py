"""Implicit differentiation of a constrained argmin: the one code path behind ``tk.argmin``
nodes and ``tk.bilevel``.

Problem. ``y*(theta) = argmin_y f(y, *theta)`` subject to ``g(y, *theta) <= 0``,
``h(y, *theta) == 0`` and constant bounds on ``y``. At a KKT point with Lagrangian
``L = f + lam.g + mu.h`` the *active set* is: equalities, inequalities with
``lam > active_tol``, and variables held at a bound by a nonzero bound multiplier (they
are fixed: ``dy = 0``). Differentiating ``grad_y L = 0`` (free variables) and
``c_A = 0`` (active constraints) in ``theta`` gives, for an upstream gradient ``ybar``,

    [H  A^T] [v]   [ybar]
    [A   0 ] [w] = [ 0  ],       theta_bar = - d/dtheta [ v . grad_y L + w . c_A ]

(``H = grad_yy L`` on the free variables, ``A`` the active-constraint Jacobian, ``y``,
``lam``, ``v``, ``w`` held fixed). This is the vector-Jacobian product of ``y*``; a
bilevel hypergradient is ``F_x`` plus this product with ``ybar = F_y``.

Batching and degenerate cases. Every instance gets the same ``(n + m) x (n + m)`` system:
fixed variables and inactive constraints are identity rows (so ``v_i = 0`` and
``w_j = 0``), which lets a batch of instances with different active sets be solved by
one batched ``torch.linalg.solve``. When the system is singular (the active constraint
gradients are linearly dependent, or ``H`` is singular on the tangent space, i.e. the
solution is not unique) the minimum-norm least-squares solution (pseudo-inverse) is
used and ``info["singular"]`` says so: the result is then *a* generalized gradient, not
the derivative, which does not exist there. The active-set rule assumes strict
complementarity; a constraint active with a zero multiplier is treated as inactive
(one-sided derivative). Without any constraint row and with more than 200 free
variables (or ``linear_solver="cg"``) the system ``H v = ybar`` is solved matrix-free by
conjugate gradient on Hessian-vector products.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.autograd.function import once_differentiable

from .batched_vjp import batched_vjp
from .constraints import Eq, Ineq, ProblemError
from .krylov import cg
from .result import Multipliers, OptimizeResult

__all__ = ["ArgminSpec", "KKTPoint", "implicit_vjp", "solve_argmin"]


@dataclass
class KKTPoint:
    """A primal-dual point: ``y`` shaped ``(B, n)`` and multipliers, flat per instance.

    ``ineq`` is ``(B, mI)``, ``eq`` ``(B, mE)`` and ``bounds`` ``(B, n)`` (signed, zero
    for a free variable) or None when no variable sits at a bound.
    """

    y: torch.Tensor
    ineq: torch.Tensor
    eq: torch.Tensor
    bounds: torch.Tensor | None = None


def _flat_rows(value: Any, B: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return t.reshape(B, -1)


def kkt_point(y: torch.Tensor, mult: Multipliers, batched: bool) -> KKTPoint:
    """Flatten a solver result's ``x`` and multipliers to a ``KKTPoint``."""
    B = y.shape[0] if batched else 1
    Y = y.detach().reshape(B, -1)
    ineq = [_flat_rows(m, B, Y) for m in mult.ineq if m is not None]
    eq = [_flat_rows(m, B, Y) for m in mult.eq if m is not None]
    bounds = None if mult.bounds is None else _flat_rows(mult.bounds, B, Y)
    return KKTPoint(Y, torch.cat(ineq, 1) if ineq else Y.new_zeros(B, 0),
                    torch.cat(eq, 1) if eq else Y.new_zeros(B, 0), bounds)


def implicit_vjp(
    objective: Callable[..., torch.Tensor],
    ineq: Sequence[Callable[..., torch.Tensor]],
    eq: Sequence[Callable[..., torch.Tensor]],
    point: KKTPoint,
    theta: Sequence[torch.Tensor],
    ybar: torch.Tensor,
    *,
    shape: tuple[int, ...] | None = None,
    linear_solver: str = "auto",
    active_tol: float = 1e-9,
    cg_tol: float = 1e-12,
) -> tuple[list[torch.Tensor | None], dict[str, Any]]:
    """``ybar . dy*/dtheta`` for each tensor in ``theta`` (see the module docstring).

    The functions take ``(y, *theta)``; ``y`` is passed shaped ``shape`` (one instance,
    then ``point.y`` must have one row) or, when ``shape`` is None, as the batch
    ``(B, n)`` reshaped to ``(B, *rest)`` by the caller's own functions. Objective outputs
    are summed over the batch; constraint outputs are flattened per instance. Returns the
    gradients (None where ``theta`` does not enter) and diagnostics: ``linear_solver``,
    ``free`` (free variables), ``active_constraints``, ``singular``.
    """
    with torch.enable_grad():
        return _vjp(objective, list(ineq), list(eq), point, list(theta), ybar, shape, linear_solver,
                    active_tol, cg_tol)


def _vjp(objective, ineq, eq, point, theta, ybar, shape, linear_solver, active_tol, cg_tol):
    Y = point.y.detach().requires_grad_(True)
    B, n = Y.shape
    th = [t.detach().requires_grad_(True) if torch.is_tensor(t) and t.is_floating_point() else t for t in theta]
    yin = Y.reshape(shape) if shape is not None else Y

    def rows(v: Any) -> torch.Tensor:
        return torch.as_tensor(v, dtype=Y.dtype, device=Y.device).reshape(B, -1)

    f = objective(yin, *th)
    gv = [rows(fn(yin, *th)) for fn in ineq]
    hv = [rows(fn(yin, *th)) for fn in eq]
    G = torch.cat(gv, 1) if gv else Y.new_zeros(B, 0)
    Hc = torch.cat(hv, 1) if hv else Y.new_zeros(B, 0)
    lam = point.ineq.to(Y)
    mu = point.eq.to(Y)
    if lam.shape[1] != G.shape[1] or mu.shape[1] != Hc.shape[1]:
        raise ProblemError(f"multipliers do not match the constraints: {lam.shape[1]} inequality and "
                           f"{mu.shape[1]} equality multipliers for {G.shape[1]} and {Hc.shape[1]} outputs.")
    lag = torch.as_tensor(f, dtype=Y.dtype).sum() + (G * lam).sum() + (Hc * mu).sum()
    (Ly,) = torch.autograd.grad(lag, Y, create_graph=True)
    free = torch.ones(B, n, dtype=Y.dtype, device=Y.device)
    if point.bounds is not None:
        free = (point.bounds.to(Y).reshape(B, n).abs() <= active_tol).to(Y.dtype)
    C = torch.cat([G, Hc], 1)  # (B, m) all constraint outputs
    m = C.shape[1]
    act = torch.cat([(lam > active_tol), torch.ones_like(mu, dtype=torch.bool)], 1).to(Y.dtype)
    rhs = ybar.detach().to(Y).reshape(B, n) * free
    info: dict[str, Any] = {"free": int(free.sum()) if B == 1 else free.sum(1).tolist(),
                            "active_constraints": int(act.sum()) if B == 1 else act.sum(1).tolist(),
                            "singular": False}
    nfree = int(free.sum(1).max())
    use_cg = m == 0 and (linear_solver == "cg" or (linear_solver == "auto" and nfree > 200))
    if use_cg:
        def hvp(V: torch.Tensor) -> torch.Tensor:
            (Hv,) = torch.autograd.grad(Ly, Y, grad_outputs=V * free, retain_graph=True, allow_unused=True)
            Hv = torch.zeros_like(V) if Hv is None else Hv
            return Hv * free + V * (1 - free)

        v, cinfo = cg(hvp, rhs, rtol=cg_tol, maxiter=10 * n + 50)
        w = Y.new_zeros(B, 0)
        info["linear_solver"] = "cg"
        info["cg_iterations"] = int(cinfo["iterations"].max())
    else:
        H = _batched_jacobian(Ly, Y)  # (B, n, n)
        H = 0.5 * (H + H.transpose(1, 2))
        eye_n = torch.eye(n, dtype=Y.dtype, device=Y.device)
        Hm = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1 - free)
        if m:
            A = _batched_jacobian(C, Y) * act[:, :, None] * free[:, None, :]  # (B, m, n)
            K = torch.cat([torch.cat([Hm, A.transpose(1, 2)], 2),
                           torch.cat([A, torch.diag_embed(1 - act)], 2)], 1)
            b = torch.cat([rhs, Y.new_zeros(B, m)], 1)
        else:
            K, b = Hm, rhs
        sol, bad = torch.linalg.solve_ex(K, b[:, :, None])
        residual = (K @ sol - b[:, :, None]).abs().amax()
        if int(bad.abs().sum()) or not torch.isfinite(sol).all() or residual > 1e-6 * (1 + b.abs().amax()):
            sol = torch.linalg.pinv(K) @ b[:, :, None]  # minimum-norm least squares
            info["singular"] = True
        sol = sol[:, :, 0]
        v, w = sol[:, :n], sol[:, n:] * act if m else Y.new_zeros(B, 0)
        info["linear_solver"] = "dense KKT" if m else "dense"
        del eye_n
    s = (Ly * v.detach()).sum()
    if m:
        s = s + (C * w.detach()).sum()
    wanted = [t for t in th if torch.is_tensor(t) and t.requires_grad]
    grads_w = torch.autograd.grad(s, wanted, allow_unused=True) if wanted and s.requires_grad else [None] * len(wanted)
    it = iter(grads_w)
    out: list[torch.Tensor | None] = []
    for t in th:
        if torch.is_tensor(t) and t.requires_grad:
            g = next(it)
            out.append(None if g is None else -g)
        else:
            out.append(None)
    return out, info


def _batched_jacobian(out: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``d out[b, i] / d Y[b, j]`` for ``out`` ``(B, k)`` whose rows depend on their own ``Y`` row."""
    B, k = out.shape
    if not out.requires_grad:
        return Y.new_zeros(B, k, Y.shape[1])
    eye = torch.eye(k, dtype=out.dtype, device=out.device)[:, None, :].expand(k, B, k)
    try:
        J = batched_vjp(out, Y, eye)
    except RuntimeError:  # an op without a batching rule: one row at a time
        cols = [torch.autograd.grad(out, Y, grad_outputs=e, retain_graph=True, allow_unused=True)[0]
                for e in eye]
        J = None if cols[0] is None else torch.stack(cols)
    if J is None:
        return Y.new_zeros(B, k, Y.shape[1])
    return J.permute(1, 0, 2)  # (B, k, n)


# --- the argmin as a torch.autograd.Function ---------------------------------------------------
@dataclass
class ArgminSpec:
    """What to solve: ``objective(y, *inputs)`` under ``constraints`` (``Ineq``/``Eq`` of
    ``(y, *inputs)``) and constant ``bounds``. ``inputs`` may mix tensors and other values;
    the tensors are the differentiable ones. ``tol`` is the accuracy asked of the solver;
    success requires violation and KKT residual below ``100 * tol`` (at least 1e-9),
    because the gradient's error is proportional to the KKT residual. After a forward pass, ``result`` holds the
    solver's ``OptimizeResult`` and ``backward_info`` the last backward's diagnostics."""

    objective: Callable[..., Any]
    constraints: list[Ineq | Eq] = field(default_factory=list)
    bounds: Any = None
    method: str = "auto"
    batched: bool = False
    tol: float = 1e-10
    multipliers0: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    linear_solver: str = "auto"
    result: OptimizeResult | None = None
    backward_info: dict[str, Any] = field(default_factory=dict)


def _split(constraints: Sequence[Ineq | Eq]) -> tuple[list[Callable], list[Callable]]:
    ineq = [c.fn for c in constraints if isinstance(c, Ineq)]
    eq = [c.fn for c in constraints if isinstance(c, Eq)]
    return ineq, eq


class _Argmin(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, spec: ArgminSpec, y0: torch.Tensor, slots: tuple, *tensors: torch.Tensor) -> torch.Tensor:
        from .dispatch import minimize
        from .ipopt import available as ipopt_available

        values = _fill(slots, [t.detach() for t in tensors])
        cons = [type(c)((lambda y, fn=c.fn: fn(y, *values)), name=c.name) for c in spec.constraints]
        # "auto": IPOPT for one instance on the CPU (it reaches the 1e-10 KKT residual the
        # gradient needs, fastest); the augmented Lagrangian for batches, CUDA tensors and a
        # dual warm start (which IPOPT cannot take), or where CasADi is missing
        method = spec.method
        if method == "auto":
            one_cpu = not spec.batched and y0.device.type == "cpu" and spec.multipliers0 is None
            method = "ipopt" if one_cpu and ipopt_available() else "auglag"
        res = minimize(lambda y: spec.objective(y, *values), y0.detach(), constraints=cons, bounds=spec.bounds,
                       method=method, batched=spec.batched, tol=spec.tol, multipliers0=spec.multipliers0,
                       feas_tol=max(100 * spec.tol, 1e-9), kkt_tol=max(100 * spec.tol, 1e-9),
                       options=spec.options or None)
        spec.result = res
        x = res.x.detach()
        ctx.spec, ctx.slots = spec, slots
        ctx.point = kkt_point(x, res.multipliers, spec.batched)
        ctx.shape = tuple(x.shape)
        ctx.save_for_backward(*tensors)
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, ybar: torch.Tensor) -> tuple:
        spec: ArgminSpec = ctx.spec
        tensors = ctx.saved_tensors
        if not any(ctx.needs_input_grad[3:]):
            return (None, None, None) + (None,) * len(tensors)
        slots = ctx.slots
        ineq, eq = _split(spec.constraints)

        def bind(fn: Callable) -> Callable:
            return lambda y, *ts: fn(y, *_fill(slots, list(ts)))

        grads, info = implicit_vjp(bind(spec.objective), [bind(f) for f in ineq], [bind(f) for f in eq],
                                   ctx.point, tensors, ybar, shape=ctx.shape, linear_solver=spec.linear_solver)
        spec.backward_info.clear()
        spec.backward_info.update(info)
        out = tuple(None if g is None or not need else g.to(t.dtype)
                    for g, t, need in zip(grads, tensors, ctx.needs_input_grad[3:]))
        return (None, None, None) + out


def _fill(slots: tuple, tensors: list) -> list:
    """The input list with the tensor slots (marked ``_TENSOR``) filled in order."""
    it = iter(tensors)
    return [next(it) if s is _TENSOR else s for s in slots]


_TENSOR = object()


def solve_argmin(spec: ArgminSpec, y0: Any, inputs: Sequence[Any]) -> tuple[torch.Tensor, OptimizeResult]:
    """Solve ``spec`` at ``inputs``; ``y*`` carries an autograd path to every floating tensor
    input (implicit differentiation, see the module docstring). Returns ``(y*, result)``."""
    if not callable(spec.objective):
        raise ProblemError(f"objective must be a callable (y, *inputs) -> scalar, got {type(spec.objective).__name__}.")
    for i, c in enumerate(spec.constraints):
        if not isinstance(c, (Ineq, Eq)):
            raise ProblemError(f"constraints[{i}] must be Ineq(g) or Eq(h) with g(y, *inputs); got {type(c).__name__}.")
    if torch.is_tensor(y0):
        y0t = y0.detach()
        if not y0t.is_floating_point():
            y0t = y0t.to(torch.float64)
    else:  # a plain start joins the inputs' device (CUDA inputs keep the solve on CUDA)
        like = next((v for v in inputs if torch.is_tensor(v) and v.is_floating_point()), None)
        y0t = torch.as_tensor(y0, dtype=torch.float64, device=None if like is None else like.device)
    slots = tuple(_TENSOR if torch.is_tensor(v) and v.is_floating_point() else v for v in inputs)
    tensors = [v for v in inputs if torch.is_tensor(v) and v.is_floating_point()]
    y = _Argmin.apply(spec, y0t, slots, *tensors)
    return y, cast(OptimizeResult, spec.result)  # set by the forward pass that just ran
