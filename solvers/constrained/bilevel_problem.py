"""Bilevel problems by implicit differentiation: ``min_x F(x, y*(x))``,
``y*(x) = argmin_y G(x, y)`` subject to inner bounds and constraints.

Hypergradient. ``dF/dx = F_x + F_y . dy*/dx``; the product is the vector-Jacobian
product of the inner argmin computed by ``solvers.constrained.implicit.implicit_vjp``
(implicit differentiation of the inner KKT conditions on the active set), the same code
path that makes ``tk.argmin`` nodes differentiable. See that module for the linear
systems (dense KKT, or matrix-free CG on Hessian-vector products for large unconstrained
inner problems; ``linear_solver`` = ``"auto"`` | ``"dense"`` | ``"cg"``).

The inner problem is solved by ``solvers.constrained.dispatch`` (``inner_method``, default
``"auglag"`` warm-started from the previous ``y``) to ``inner_tol``, because the
hypergradient error is proportional to the inner KKT residual. The outer problem is an
ordinary ``minimize`` call whose objective is ``F(x, y*(x))`` with this hypergradient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from . import arguments as args
from .constraints import Eq, Ineq, ProblemError
from .implicit import KKTPoint, implicit_vjp
from .result import OptimizeResult

__all__ = ["bilevel", "hypergradient", "solve_inner", "InnerSolution"]


@dataclass
class InnerSolution:
    y: torch.Tensor
    ineq: list[torch.Tensor]  # multipliers, one per inner Ineq
    eq: list[torch.Tensor]
    bounds: torch.Tensor | None
    success: bool
    message: str
    kkt_residual: float


def _bind(constraints: Sequence[Ineq | Eq] | None, x: torch.Tensor) -> list[Ineq | Eq]:
    out: list[Ineq | Eq] = []
    for i, c in enumerate(constraints or []):
        if not isinstance(c, (Ineq, Eq)):
            raise ProblemError(f"inner_constraints[{i}] must be Ineq(g) or Eq(h) with g(x, y), h(x, y).")
        out.append(type(c)((lambda y, fn=c.fn: fn(x, y)), name=c.name))
    return out


def solve_inner(
    inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y0: torch.Tensor,
    inner_bounds: Any = None,
    inner_constraints: Sequence[Ineq | Eq] | None = None,
    tol: float = 1e-11,
    method: str = "auglag",
) -> InnerSolution:
    """Solve ``min_y G(x, y)`` for fixed ``x`` to tolerance ``tol``."""
    from .dispatch import minimize

    xd = x.detach()
    res = minimize(lambda y: inner(xd, y), y0.detach(), constraints=_bind(inner_constraints, xd),
                   bounds=inner_bounds, method=method, tol=tol)
    return InnerSolution(res.x.detach(), list(res.multipliers.ineq), list(res.multipliers.eq),
                         res.multipliers.bounds, bool(res.success), res.message, float(res.kkt_residual))


def hypergradient(
    outer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sol: InnerSolution | torch.Tensor,
    inner_constraints: Sequence[Ineq | Eq] | None = None,
    linear_solver: str = "auto",
    cg_tol: float = 1e-12,
    active_tol: float = 1e-9,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``F(x, y*)`` and ``dF/dx`` at an inner solution (see the module docstring).

    ``sol`` is an ``InnerSolution`` or, for an unconstrained inner problem, just ``y*``.
    Returns ``(F, grad, info)``; ``info`` has the linear-solver name and CG iterations.
    """
    if torch.is_tensor(sol):
        sol = InnerSolution(sol, [], [], None, True, "", 0.0)
    with torch.enable_grad():
        return _hypergradient(outer, inner, x, sol, inner_constraints, linear_solver, cg_tol, active_tol)


def _hypergradient(outer, inner, x, sol, inner_constraints, linear_solver, cg_tol, active_tol):
    """``F`` and ``F_x + F_y . dy*/dx``: the product comes from ``implicit.implicit_vjp``."""
    x = x.detach().requires_grad_(True)
    y = sol.y.detach().requires_grad_(True)
    cons = list(inner_constraints or [])
    ineq = [c for c in cons if isinstance(c, Ineq)]
    eq = [c for c in cons if isinstance(c, Eq)]
    with torch.enable_grad():
        F = outer(x, y)
        Fx, Fy = torch.autograd.grad(F, (x, y), allow_unused=True)
    Fx = torch.zeros_like(x) if Fx is None else Fx
    Fy = torch.zeros_like(y) if Fy is None else Fy
    Y = y.detach().reshape(1, -1)

    def flat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.to(Y).reshape(1, -1) for p in parts], 1) if parts else Y.new_zeros(1, 0)

    bounds = None if sol.bounds is None else sol.bounds.to(Y).reshape(1, -1)
    point = KKTPoint(Y, flat(sol.ineq), flat(sol.eq), bounds)
    swap = [(lambda yy, xx, fn=c.fn: fn(xx, yy)) for c in ineq], [(lambda yy, xx, fn=c.fn: fn(xx, yy)) for c in eq]
    grads, info = implicit_vjp(lambda yy, xx: inner(xx, yy), swap[0], swap[1], point, [x.detach()], Fy,
                               shape=tuple(y.shape), linear_solver=linear_solver, active_tol=active_tol,
                               cg_tol=cg_tol)
    g = grads[0]
    total = Fx if g is None else Fx + g.reshape(x.shape)
    return F.detach(), total.detach(), info


def _check_arguments(x0: Any, y0: Any, inner_bounds: Any, inner_constraints: Any, constraints: Any,
                     method: Any, inner_method: Any, inner_tol: Any, linear_solver: Any, tol: Any,
                     feas_tol: Any, kkt_tol: Any, max_iter: Any) -> None:
    """Every argument of `bilevel` checked before the first solve, each error naming it
    (the inner problem's are otherwise only used inside the outer objective)."""
    from .constraints import as_bounds
    from .dispatch import METHODS

    for name, value in (("x0", x0), ("y0", y0)):
        if value is None:
            raise ProblemError(f"{name} is required: pass a starting point.")
        try:
            t = value if torch.is_tensor(value) else torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ProblemError(f"{name} must be numeric (scalar, array or tensor), got {value!r}.") from None
        if not t.is_floating_point() and t.dtype not in (torch.int32, torch.int64):
            raise ProblemError(f"{name} must be numeric, got a tensor of {t.dtype}.")
        if t.numel() == 0 or not bool(torch.isfinite(t.double()).all()):
            raise ProblemError(f"{name} must have at least one entry, all finite.")
    y = y0 if torch.is_tensor(y0) else torch.as_tensor(y0, dtype=torch.float64)
    try:
        as_bounds(inner_bounds, y.numel(), tuple(y.shape), torch.float64, y.device)
    except ProblemError as exc:
        raise ProblemError(f"inner_bounds: {exc}") from None
    args.constraint_list("inner_constraints", inner_constraints)
    args.constraint_list("constraints", constraints)
    args.one_of("method", method, METHODS)
    args.one_of("inner_method", inner_method, METHODS)
    args.one_of("linear_solver", linear_solver, args.LINEAR_SOLVERS)
    for name, value in (("inner_tol", inner_tol), ("tol", tol), ("feas_tol", feas_tol),
                        ("kkt_tol", kkt_tol)):
        args.positive(name, value)
    args.iterations("max_iter", max_iter)


def bilevel(
    outer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: Any,
    y0: Any,
    inner_bounds: Any = None,
    inner_constraints: Sequence[Ineq | Eq] | None = None,
    constraints: Sequence[Ineq | Eq] | None = None,
    bounds: Any = None,
    *,
    method: str = "auglag",
    inner_method: str = "auglag",
    inner_tol: float = 1e-11,
    linear_solver: str = "auto",
    tol: float = 1e-8,
    feas_tol: float = 1e-6,
    kkt_tol: float = 1e-6,
    max_iter: int | None = None,
) -> OptimizeResult:
    """Solve ``min_x F(x, y*(x))`` s.t. outer ``constraints``/``bounds`` on ``x``.

    ``outer(x, y)`` and ``inner(x, y)`` return scalars; the outer problem is solved by
    ``method`` (default ``"auglag"``: its stationarity test is on the hypergradient
    itself, whereas SLSQP stops on a small change in ``F`` and often leaves a 1e-5
    gradient); ``inner_constraints`` are
    ``Ineq``/``Eq`` of ``(x, y)``; ``constraints`` are ``Ineq``/``Eq`` of ``x``. The result
    is that of the outer ``minimize`` with ``y`` (the inner solution at ``res.x``) added;
    ``res.info`` holds the last hypergradient and inner-solve diagnostics.
    """
    from .dispatch import minimize

    for name, fn in (("outer", outer), ("inner", inner)):
        if not callable(fn):
            raise ProblemError(f"{name} must be a callable (x, y) -> scalar tensor, got {type(fn).__name__}.")
    _check_arguments(x0, y0, inner_bounds, inner_constraints, constraints, method, inner_method,
                     inner_tol, linear_solver, tol, feas_tol, kkt_tol, max_iter)
    t0 = time.perf_counter()
    y_start = y0 if torch.is_tensor(y0) else torch.as_tensor(y0, dtype=torch.float64)
    state: dict[str, Any] = {"y": y_start.detach().clone(), "inner_solves": 0, "inner_failures": 0}

    def solve_at(x: torch.Tensor) -> InnerSolution:
        sol = solve_inner(inner, x, state["y"], inner_bounds, inner_constraints, inner_tol, inner_method)
        state["inner_solves"] += 1
        if not sol.success:
            state["inner_failures"] += 1
            state["last_inner_message"] = sol.message
        if torch.isfinite(sol.y).all():
            state["y"] = sol.y
        return sol

    class _Hyper(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            sol = solve_at(x)
            ctx.sol = sol
            ctx.save_for_backward(x)
            with torch.no_grad():
                return torch.as_tensor(outer(x.detach(), sol.y), dtype=x.dtype).reshape(())

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            _, g, info = hypergradient(outer, inner, x, ctx.sol, inner_constraints, linear_solver)
            state["hypergradient"] = g
            state["hypergradient_info"] = info
            return grad_out * g

    def objective(x: torch.Tensor) -> torch.Tensor:
        return _Hyper.apply(x)

    objective.autograd_hessian = False  # type: ignore[attr-defined]  # the hypergradient is not differentiated again
    res = minimize(objective, x0, constraints=constraints, bounds=bounds, method=method,
                   tol=tol, feas_tol=feas_tol, kkt_tol=kkt_tol, max_iter=max_iter)
    final = solve_at(res.x)
    res.y = final.y
    res.time = time.perf_counter() - t0
    res.solver = f"bilevel[{res.solver}; inner {inner_method}]"
    res.info.update({k: state[k] for k in state if k != "y"})
    res.info["inner_kkt_residual"] = final.kkt_residual
    if state["inner_failures"]:
        res.message += f"; {state['inner_failures']} inner solve(s) did not meet tolerance"
    return res
