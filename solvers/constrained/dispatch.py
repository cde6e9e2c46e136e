"""One entry point for constrained problems: validate, dispatch, grade, report.

``minimize`` accepts torch callables (or a cvxpy problem), picks a method, runs it, and
grades the returned point with the shared checks of ``solvers.constrained.kkt`` so that ``success``
means the same for every method: ``max_violation <= feas_tol`` and
``kkt_residual <= kkt_tol``.

``method="auto"`` chooses, in this order:

1. a cvxpy ``Problem`` or expression -> ``"cvxpy"`` (global optimum of a convex problem,
   solver certificate);
2. a batch (``batched=True`` with more than one row) or CUDA tensors -> ``"auglag"`` (the
   only method that batches and runs on GPU);
3. otherwise ``"ipopt"`` (IPOPT through CasADi, exact derivatives; see ``ipopt.py``), or
   ``"slsqp"`` where CasADi is not installed. Its point is graded by our checks, not by its
   own flag, and if it does not pass, ``"auglag"`` is run warm-started from it (and from
   ``x0`` if that fails too); the best graded point is returned. ``res.solver`` records
   the path taken.

Every point any method returns then gets the same infeasibility test and the same
second-order test (``second_order.py``): a stationary point with negative curvature along
the feasible directions, or one reached only with exploding multipliers, is not optimal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from . import arguments as args
from . import ipopt, second_order
from .auglag import AugLagOptions, auglag
from .constraints import Eq, Evaluator, Ineq, Problem, ProblemError
from .convex import build_problem, is_cvxpy_object, solve_problem
from .infeasibility import infeasible_message, least_violation
from .kkt import Compiled, estimate_multipliers, measures
from .result import Multipliers, OptimizeResult
from .scipy_methods import solve_scipy

__all__ = ["minimize", "METHODS"]

METHODS = ("auto", "auglag", "cvxpy", "ipopt", "slsqp", "trust-constr")


def _check_method(method: str) -> str:
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ProblemError(f"unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}.")
    return method.lower()


def _stack_multipliers(values: Any, ev: Evaluator, kind: str, B: int, like: torch.Tensor) -> torch.Tensor | None:
    """Flatten user dual warm starts (one entry per constraint) to ``(B, m)``."""
    if values is None:
        return None
    cons = ev.problem.ineq if kind == "ineq" else ev.problem.eq
    values = list(values)
    if len(values) != len(cons):
        raise ProblemError(
            f"multipliers0.{kind} has {len(values)} entries but there are {len(cons)} "
            f"{kind} constraints; give one array per constraint, in order."
        )
    parts = []
    nI = len(ev.problem.ineq)
    for i, v in enumerate(values):
        k = 1 + i + (0 if kind == "ineq" else nI)
        t = torch.as_tensor(np.asarray(v, dtype=float) if not torch.is_tensor(v) else v,
                            dtype=like.dtype, device=like.device)
        size = ev.sizes[k]
        if t.numel() == size:
            t = t.reshape(1, size).expand(B, size)
        elif t.numel() == B * size:
            t = t.reshape(B, size)
        else:
            raise ProblemError(
                f"multipliers0.{kind}[{i}] has {t.numel()} values; constraint has {size} "
                f"outputs per instance (batch {B})."
            )
        parts.append(t)
    return torch.cat(parts, dim=1) if parts else like.new_zeros(B, 0)


def _read_multipliers0(multipliers0: Any) -> tuple[Any, Any]:
    if multipliers0 is None:
        return None, None
    if isinstance(multipliers0, Multipliers):
        return multipliers0.ineq or None, multipliers0.eq or None
    if isinstance(multipliers0, dict):
        return multipliers0.get("ineq"), multipliers0.get("eq")
    raise ProblemError("multipliers0 must be a Multipliers object or a dict with 'ineq' and 'eq' lists.")


class _Graded:
    """A candidate point with its grade (for choosing among several runs)."""

    def __init__(self, X, lam, mu, m, status, messages, solver, nit):
        self.X, self.lam, self.mu, self.m = X, lam, mu, m
        self.status, self.messages, self.solver, self.nit = status, messages, solver, nit
        self.info: dict[str, Any] = {}  # how IPOPT got its derivatives, when it ran (the result's info)
        self.notes: dict[int, str] = {}  # rows that pass first order but are not minima, and why
        self.compiled = None  # IPOPT's compiled derivatives of a captured problem (second_order._at)
        self.inertia_ok = False  # IPOPT's last factorization showed positive curvature (ipopt.py)


def _grade_status(m, backend_status: list[str], messages: list[str], feas_tol: float, kkt_tol: float,
                  unbounded: float = 1e20, notes: dict[int, str] | None = None
                  ) -> tuple[torch.Tensor, list[str], list[str]]:
    # a point out where the objective is below -1e20 is a diverged iterate, never a solution
    # (its KKT residual can read 0 in floating point)
    success = m.finite & (m.violation <= feas_tol) & (m.kkt <= kkt_tol) & (m.f >= -unbounded)
    for b in (notes or {}):
        success[b] = False
    status, msgs = [], []
    for b in range(len(backend_status)):
        s, msg = backend_status[b], messages[b]
        if notes and b in notes:
            status.append("not_converged")
            msgs.append(notes[b])
            continue
        if bool(success[b]):
            status.append("optimal")
            msgs.append(f"max violation {float(m.violation[b]):.2e} and KKT residual "
                        f"{float(m.kkt[b]):.2e} within tolerance")
            continue
        if not bool(m.finite[b]):
            s = "nan"
            msg = msg or "a function returned NaN or inf at the final point"
        elif float(m.f[b]) < -unbounded and (s == "unbounded" or float(m.violation[b]) <= feas_tol):
            s = "unbounded"
        elif s in ("optimal", "running"):
            s = "not_converged"
        if s == "not_converged":
            msg = (f"{msg}; " if msg else "") + (
                f"graded as not converged: violation {float(m.violation[b]):.2e} "
                f"(tol {feas_tol:g}), KKT residual {float(m.kkt[b]):.2e} (tol {kkt_tol:g})")
        status.append(s)
        msgs.append(msg)
    return success, status, msgs


def _run_auglag(ev, X0, lo, hi, lam0, mu0, tol, max_iter, options):
    if ev.has_fd:  # central differences are accurate to about 1e-10 in gradients
        tol = max(tol, 1e-7)
    opts = AugLagOptions(tol=tol, **(options or {}))
    if max_iter is not None:
        opts.max_outer = int(max_iter)
    out = auglag(ev, X0, lo, hi, lam0, mu0, opts)
    m = measures(ev, out.X, out.lam, out.mu, lo.expand_as(out.X), hi.expand_as(out.X))
    return _Graded(out.X, out.lam, out.mu, m, out.status, out.messages, "auglag", out.nit)


def _run_scipy(ev, X0, lo, hi, method, tol, max_iter):
    out = solve_scipy(ev, X0, lo, hi, method, tol=min(tol, 1e-10) if method == "slsqp" else tol,
                      maxiter=max_iter or 1000)
    lam, mu = estimate_multipliers(ev, out.X, lo, hi)
    m = measures(ev, out.X, lam, mu, lo.expand_as(out.X), hi.expand_as(out.X))
    status = ["optimal" if ok else "not_converged" for ok in out.backend_success]
    msgs = [f"{method}: {msg}" for msg in out.messages]
    return _Graded(out.X, lam, mu, m, status, msgs, method, out.nit)


def _compiled(out: ipopt.IpoptOutput) -> Compiled | None:
    """The values, ``grad f`` and ``grad l`` at IPOPT's point from the compiled graph it used
    (None on torch callbacks): the grading then needs torch's forward pass only (its
    values must agree), and the second-order test finds the Jacobian cached."""
    if out.second_derivatives is None or out.values is None:
        return None
    x = out.X[0].detach().cpu().double().numpy()
    y = torch.cat([out.lam, out.mu], dim=1)[0].detach().cpu().double().numpy()
    gf, J, _ = out.second_derivatives(x, y, False)
    gl = gf + (J.T @ y if y.size else 0.0)
    as_row = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=out.X.dtype,  # noqa: E731
                                       device=out.X.device).reshape(out.X.shape)
    return Compiled(out.values, as_row(gf), as_row(gl))


def _run_ipopt(prob, ev, X0, lo, hi, tol, max_iter, options, kkt_tol=1e-6):
    # weakly active bounds (IPOPT leaves them ~sqrt(mu) away) are common in large problems,
    # where a second solve costs most: those are solved tight from the start
    tight = X0.shape[1] >= ipopt.TIGHT_FROM_N
    out = ipopt.solve_ipopt(prob, ev, X0, lo, hi, tol=tol, max_iter=max_iter, options=options, tight=tight)
    m = measures(ev, out.X, out.lam, out.mu, lo.expand_as(out.X), hi.expand_as(out.X), compiled=_compiled(out))
    k = float(m.kkt[0])
    if (not tight and out.status[0] == "optimal" and float(m.violation[0]) <= max(1e-6, 10 * tol)
            and kkt_tol < k <= 1e3 * kkt_tol):
        # just outside the grade: weakly active bounds left ~sqrt(mu) away; solve again tighter
        again = ipopt.solve_ipopt(prob, ev, out.X, lo, hi, tol=tol, max_iter=max_iter, options=options, tight=True)
        m2 = measures(ev, again.X, again.lam, again.mu, lo.expand_as(again.X), hi.expand_as(again.X),
                      compiled=_compiled(again))
        if bool(m2.finite[0]) and float(m2.kkt[0]) < k and float(m2.violation[0]) <= max(1e-6, 10 * tol):
            out, m = again, m2
    status, msgs = list(out.status), list(out.messages)
    if status[0] == "unbounded" and not float(m.violation[0]) <= max(1e-6, 10 * tol):
        # IPOPT's Diverging_Iterates far from feasibility is no proof of unboundedness
        status[0] = "not_converged"
        msgs[0] += f" (iterates diverged at violation {float(m.violation[0]):.3g})"
    g = _Graded(out.X, out.lam, out.mu, m, status, msgs, "ipopt", out.nit)
    g.compiled, g.inertia_ok = out.second_derivatives, out.inertia_ok
    g.info = {"ipopt_derivatives": out.derivatives, **({"ipopt_constant": list(out.constant)} if out.constant else {})}
    return g


def _better(a: _Graded, b: _Graded, feas_tol: float, kkt_tol: float) -> bool:
    """True if candidate ``a`` (single instance) is preferable to ``b``."""
    def key(c: _Graded) -> tuple:
        v, k, f = float(c.m.violation[0]), float(c.m.kkt[0]), float(c.m.f[0])
        ok = math.isfinite(v) and v <= feas_tol and k <= kkt_tol
        feas = math.isfinite(v) and v <= feas_tol
        return (not ok, not feas, f if feas else v, k)
    return key(a) < key(b)


def minimize(
    f: Callable[..., Any] | Any,
    x0: Any = None,
    constraints: Sequence[Ineq | Eq] | None = None,
    bounds: Any = None,
    method: str = "auto",
    *,
    batched: bool = False,
    tol: float = 1e-8,
    feas_tol: float = 1e-6,
    kkt_tol: float = 1e-6,
    multipliers0: Multipliers | dict | None = None,
    max_iter: int | None = None,
    solver: str | None = None,
    options: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Minimize ``f(x)`` subject to ``Ineq`` (``g(x) <= 0``), ``Eq`` (``h(x) == 0``) and bounds.

    Args:
        f: callable ``x -> scalar tensor`` (floats work, via finite differences), or a
            cvxpy ``Problem`` / scalar expression (then ``x0`` is ignored and constraints
            may be cvxpy constraints).
        x0: starting point (tensor, array or scalar); its dtype (float64 for non-tensors)
            and device are used throughout. With ``batched=True`` its first dimension
            indexes independent instances, solved together.
        constraints: list of ``Ineq`` / ``Eq``.
        bounds: ``(lo, hi)`` scalars or arrays shaped like one ``x``; ``±inf`` allowed.
        method: ``"auto"``, ``"ipopt"``, ``"auglag"``, ``"cvxpy"``, ``"slsqp"`` or
            ``"trust-constr"`` (see the module docstring for what ``"auto"`` picks).
        tol: accuracy the method aims for (violation and KKT residual).
        feas_tol, kkt_tol: thresholds that define ``success``.
        multipliers0: dual warm start, ``Multipliers`` or ``{"ineq": [...], "eq": [...]}``
            (used by ``auglag``; SciPy methods cannot take one).
        max_iter: outer iterations (auglag) or iterations (scipy).
        solver: cvxpy solver name for ``method="cvxpy"``.
        options: extra ``AugLagOptions`` fields for ``auglag`` (and ``auto``'s fallback),
            IPOPT options for ``ipopt`` (plus ``"capture"``), or keyword arguments for
            ``cvxpy.Problem.solve``.
    """
    t0 = time.perf_counter()
    method = _check_method(method)
    if is_cvxpy_object(f):
        args.optional_str("solver", solver)
        args.options_for("cvxpy", options)
        if method not in ("auto", "cvxpy"):
            raise ProblemError(f"a cvxpy problem can only be solved with method='cvxpy' or 'auto', not {method!r}.")
        return _minimize_cvxpy_object(f, constraints, solver, options, feas_tol, t0)
    if not callable(f):
        raise ProblemError(
            f"f must be a callable x -> scalar tensor or a cvxpy Problem, got {type(f).__name__}."
        )
    if x0 is None:
        raise ProblemError("x0 is required for a callable objective; pass a starting point shaped like x.")
    for name, v in (("tol", tol), ("feas_tol", feas_tol), ("kkt_tol", kkt_tol)):
        args.positive(name, v)
    args.iterations("max_iter", max_iter)
    args.flag("batched", batched)
    args.constraint_list("constraints", constraints)
    args.options_for(method, options)
    args.optional_str("solver", solver)
    prob, X0 = Problem.build(f, x0, constraints, bounds, batched=batched)
    if method == "cvxpy":
        return _minimize_cvxpy_callables(prob, X0, solver, options, feas_tol, kkt_tol, t0)
    ev = Evaluator(prob, X0)
    B = X0.shape[0]
    lo, hi = _bounds(prob)
    lam_in, mu_in = _read_multipliers0(multipliers0)
    lam0 = _stack_multipliers(lam_in, ev, "ineq", B, X0)
    mu0 = _stack_multipliers(mu_in, ev, "eq", B, X0)
    if method == "auto":
        if B > 1 or X0.device.type != "cpu" or (prob.n > 300 and not ipopt.available()):
            best = _run_auglag(ev, X0, lo, hi, lam0, mu0, tol, max_iter, options)
            method_used = "auto: auglag"
        else:
            best, method_used = _auto_single(prob, ev, X0, lo, hi, lam0, mu0, tol, feas_tol, kkt_tol,
                                             max_iter, options)
    elif method == "auglag":
        best = _run_auglag(ev, X0, lo, hi, lam0, mu0, tol, max_iter, options)
        method_used = "auglag"
    elif method == "ipopt":
        best = _run_ipopt(prob, ev, X0, lo, hi, tol, max_iter, options, kkt_tol)
        method_used = "ipopt"
    else:
        best = _run_scipy(ev, X0, lo, hi, method, tol, max_iter)
        method_used = method + (" (loop over batch)" if B > 1 else "")

    def rerun(Xs: torch.Tensor) -> _Graded:  # the same method from another start
        if method == "auto":
            return _auto_single(prob, ev, Xs, lo, hi, None, None, tol, feas_tol, kkt_tol, max_iter, options)[0]
        if method == "auglag":
            return _run_auglag(ev, Xs, lo, hi, None, None, tol, max_iter, options)
        if method == "ipopt":
            return _run_ipopt(prob, ev, Xs, lo, hi, tol, max_iter, options, kkt_tol)
        return _run_scipy(ev, Xs, lo, hi, method, tol, max_iter)

    def tight(Xs: torch.Tensor) -> _Graded:  # the same point solved 100x more tightly
        if ipopt.available() and B == 1:
            return _run_ipopt(prob, ev, Xs, lo, hi, tol * 1e-2, max_iter,
                              {"constr_viol_tol": tol * 1e-2, "bound_relax_factor": 0.0})
        return _run_auglag(ev, Xs, lo, hi, None, None, tol * 1e-2, max_iter, None)

    best, moved = _second_order(ev, best, lo, hi, feas_tol, kkt_tol, rerun, tight)
    if moved:
        method_used += f" -> {moved}"
    return _build_result(prob, ev, best, method_used, feas_tol, kkt_tol, t0)


def _passes(c: _Graded, b: int, feas_tol: float, kkt_tol: float, unbounded: float = 1e20) -> bool:
    m = c.m
    return (bool(m.finite[b]) and float(m.violation[b]) <= feas_tol and float(m.kkt[b]) <= kkt_tol
            and float(m.f[b]) >= -unbounded)


def _step_off(ev: Evaluator, X: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
              f0: float, v0: float, feas_tol: float) -> torch.Tensor | None:
    """A point along ``+-d`` from a saddle with a lower objective and no more violation."""
    scale = max(1.0, float(X.abs().max()))
    for t in (1e-3, 1e-2, 1e-1, 1.0):
        for sign in (1.0, -1.0):
            Xt = torch.minimum(torch.maximum(X + sign * t * scale * d.reshape(1, -1), lo), hi)
            with torch.no_grad():
                m = measures(ev, Xt, X.new_zeros(1, ev.m_ineq), X.new_zeros(1, ev.m_eq), lo, hi)
            if bool(m.finite[0]) and float(m.f[0]) < f0 - 1e-9 * max(1.0, abs(f0)) \
                    and float(m.violation[0]) <= max(feas_tol, v0):
                return Xt
    return None


def _second_order(ev: Evaluator, c: _Graded, lo: torch.Tensor, hi: torch.Tensor, feas_tol: float,
                  kkt_tol: float, rerun: Callable[[torch.Tensor], _Graded],
                  tight: Callable[[torch.Tensor], _Graded]) -> tuple[_Graded, str]:
    """Flag (or leave) points that pass the first-order grade but are not minima: negative
    curvature along the active manifold, or exploding multipliers (``second_order.py``).
    A single instance at a saddle is moved off it along the negative-curvature direction
    and solved again once; what that run finds (a lower minimum, or an unbounded
    objective) replaces the saddle. Large multipliers alone are legitimate (nearly
    parallel constraint gradients, as in CUTEst SNAKE); they are flagged when solving the
    same point 100x more tightly makes them grow tenfold or fails (HS13's cusp, where no
    multipliers exist at the solution)."""
    B = c.X.shape[0]
    rows = [b for b in range(B) if _passes(c, b, feas_tol, kkt_tol)]
    if not rows:
        return c, ""
    lo_b, hi_b = lo.expand_as(c.X), hi.expand_as(c.X)
    # IPOPT's inertia-controlled factorization already tested the curvature at its point
    neg = {} if c.inertia_ok else second_order.curvature(ev, c.X, c.m.g, c.lam, c.mu, lo_b, hi_b, rows,
                                                         compiled=c.compiled)
    moved = ""
    if B == 1 and 0 in neg:  # step off along the direction; keep what a new solve finds there
        Xs = _step_off(ev, c.X, neg[0][0], lo_b, hi_b, float(c.m.f[0]), float(c.m.violation[0]), feas_tol)
        if Xs is not None:
            neg[0] = (neg[0][0], True)  # a feasible lower point along it: not a minimum either way
            cand = rerun(Xs)
            gone = cand.status[0] == "unbounded" or float(cand.m.f[0]) < -1e20
            if gone or (_passes(cand, 0, feas_tol, kkt_tol) and float(cand.m.f[0]) < float(c.m.f[0])):
                moved = f"{cand.solver} from a step off the saddle"
                c = cand
                rows = [0] if _passes(c, 0, feas_tol, kkt_tol) else []
                neg = (second_order.curvature(ev, c.X, c.m.g, c.lam, c.mu, lo_b, hi_b, rows, compiled=c.compiled)
                       if rows and not c.inertia_ok else {})
    neg = {b: v for b, v in neg.items() if v[1]}  # zero curvature with no descent along it is fine
    notes: dict[int, str] = {}
    for b in neg:
        notes[b] = ("stationary but not a minimum: along the active constraints the Hessian of the "
                    "Lagrangian has negative curvature, or zero curvature in a direction where the "
                    "objective decreases (a saddle, a maximum or an inflection); start elsewhere")
    ratio = second_order.cancellation(ev, c.X, c.lam, c.mu, c.m.bound_multipliers,
                                      [b for b in rows if b not in notes], compiled=c.compiled)
    for b, r in ratio.items():
        if r <= second_order.CANCELLATION_MAX:
            continue
        if B == 1:
            t = tight(c.X)
            lo_t = second_order.cancellation(ev, t.X, t.lam, t.mu, t.m.bound_multipliers, [0],
                                             compiled=t.compiled).get(0, r)
            if _passes(t, 0, feas_tol, kkt_tol) and lo_t <= 10 * r:
                continue  # large but settled multipliers
            r = max(r, lo_t)
        notes[b] = (f"stationary only to tolerance: the multipliers cancel each other (ratio {r:.2g} "
                    "to the objective's gradient) and grow as the tolerance tightens, so constraint "
                    "qualifications fail here and the objective can be off by more than the "
                    "tolerances suggest")
    c.notes = notes
    return c, moved


def _auto_single(prob, ev, X0, lo, hi, lam0, mu0, tol, feas_tol, kkt_tol, max_iter, options):
    """One instance on the CPU: IPOPT (SLSQP where CasADi is missing), graded by the shared
    checks; a point that does not pass goes to auglag, warm-started from it and then from
    ``x0``; the best graded point wins."""
    if ipopt.available():
        best = _run_ipopt(prob, ev, X0, lo, hi, tol, max_iter, None, kkt_tol)
        path = "auto: ipopt"
    else:
        best = _run_scipy(ev, X0, lo, hi, "slsqp", tol, max_iter)
        path = "auto: slsqp"
        if _passes(best, 0, feas_tol, kkt_tol) and float(best.m.violation[0]) > 10 * tol:
            # SLSQP stops on a small change in f and may leave ~1e-7 violation that
            # buys objective below the optimum: polish with auglag from its point
            cand = _run_auglag(ev, best.X, lo, hi, best.lam, best.mu, tol, max_iter, options)
            cv, ck = float(cand.m.violation[0]), float(cand.m.kkt[0])
            if math.isfinite(cv) and cv <= float(best.m.violation[0]) and ck <= kkt_tol:
                best, path = cand, "auto: slsqp -> auglag polish"
    if _passes(best, 0, feas_tol, kkt_tol):
        return best, path
    first = best.solver
    starts = []
    if bool(torch.isfinite(best.X).all()):
        starts.append((f"{first} point", best.X, best.lam, best.mu))
    starts.append(("x0", X0, lam0, mu0))
    for label, Xs, ls, ms in starts:
        cand = _run_auglag(ev, Xs, lo, hi, ls, ms, tol, max_iter, options)
        tag = f"auglag from {label}"
        if _better(cand, best, feas_tol, kkt_tol):
            best, path = cand, f"{path} -> {tag}"
        else:
            path = f"{path}, {tag} not better"
        if best.solver == "auglag" and _passes(best, 0, feas_tol, kkt_tol):
            break
        if cand.status[0] in ("infeasible", "unbounded"):
            break  # a second start would most likely conclude the same
    return best, path


def _check_infeasible(prob: Problem, ev: Evaluator, c: _Graded, feas_tol: float) -> _Graded:
    """Every method's result gets the same infeasibility test (see `infeasibility.py`):
    rows left above `feas_tol` are moved to a least-violation point; where the violation
    stops decreasing above `feas_tol` the status is "infeasible" at that point, and where
    a feasible point turns up the method's own "infeasible" becomes "not_converged"."""
    m = c.m
    # an objective below -1e20 proves nothing while the point is infeasible: those rows
    # get the same least-violation test (a diverged infeasible iterate is not "unbounded")
    rows = [b for b in range(len(c.status))
            if bool(m.finite[b]) and float(m.violation[b]) > feas_tol and c.status[b] != "nan"]
    if not rows:
        return c
    lo, hi = _bounds(prob)
    R = least_violation(ev, c.X, rows, lo, hi)
    mr = measures(ev, R, c.lam, c.mu, lo.expand_as(R), hi.expand_as(R))
    X = c.X.detach().clone()
    status, msgs = list(c.status), list(c.messages)
    for b in rows:
        v_old, v_new = float(m.violation[b]), float(mr.violation[b])
        if not (bool(mr.finite[b]) and v_new == v_new):
            continue
        if v_new > feas_tol:
            if v_new < v_old:
                X[b] = R[b]
            status[b] = "infeasible"
            msgs[b] = infeasible_message(min(v_new, v_old), f"{c.solver} ended with: {msgs[b]}")
        elif status[b] == "infeasible":
            status[b] = "not_converged"
            msgs[b] = (f"{msgs[b]}; but a point with violation {v_new:.3g} exists, so the "
                       f"problem is not infeasible there: {c.solver} did not converge")
    m = measures(ev, X, c.lam, c.mu, lo.expand_as(X), hi.expand_as(X))
    out = _Graded(X, c.lam, c.mu, m, status, msgs, c.solver, c.nit)
    out.info, out.notes, out.compiled, out.inertia_ok = c.info, c.notes, c.compiled, c.inertia_ok
    return out


def _build_result(prob: Problem, ev: Evaluator, c: _Graded, solver: str, feas_tol: float,
                  kkt_tol: float, t0: float) -> OptimizeResult:
    c = _check_infeasible(prob, ev, c, feas_tol)
    success, status, msgs = _grade_status(c.m, c.status, c.messages, feas_tol, kkt_tol, notes=c.notes)
    batched = prob.batch is not None
    X = c.X.detach()
    x = X.reshape((X.shape[0],) + prob.shape) if batched else X.reshape(prob.shape)
    z = c.m.bound_multipliers
    z = z.reshape(x.shape)
    mult = Multipliers(ineq=ev.split(c.lam, "ineq"), eq=ev.split(c.mu, "eq"), bounds=z)
    fun: torch.Tensor | float
    succ: torch.Tensor | bool
    viol: torch.Tensor | float
    kkt: torch.Tensor | float
    st: list[str] | str
    if batched:
        n_ok = int(success.sum())
        message = f"{n_ok}/{len(status)} instances solved"
        bad = [f"#{b}: {status[b]}: {msgs[b]}" for b in range(len(status)) if not bool(success[b])]
        if bad:
            message += "; first failure " + bad[0]
        fun, succ, viol, kkt, st = c.m.f, success, c.m.violation, c.m.kkt, status
    else:
        fun, succ = float(c.m.f[0]), bool(success[0])
        viol, kkt, st, message = float(c.m.violation[0]), float(c.m.kkt[0]), status[0], msgs[0]
    deriv = ev.derivatives
    info = dict(c.info)
    if deriv != "autograd":
        message += f" (gradients by {deriv})"
    return OptimizeResult(
        x=x, fun=fun, success=succ, status=st, message=message, max_violation=viol,
        kkt_residual=kkt, multipliers=mult, nit=int(c.nit), nfev=int(ev.nfev), solver=solver,
        time=time.perf_counter() - t0, derivatives=deriv, info=info,
    )


def _minimize_cvxpy_object(obj: Any, constraints: Any, solver: str | None, options: dict | None,
                           feas_tol: float, t0: float) -> OptimizeResult:
    import cvxpy as cp

    if isinstance(obj, cp.Problem):
        if constraints:
            raise ProblemError("pass constraints inside the cvxpy Problem, not as a separate list.")
        prob = obj
    else:
        cons = list(constraints or [])
        for i, c in enumerate(cons):
            if not isinstance(c, cp.constraints.constraint.Constraint):
                raise ProblemError(f"with a cvxpy objective, constraints[{i}] must be a cvxpy constraint "
                                   f"(e.g. A @ x <= b), got {type(c).__name__}.")
        prob = cp.Problem(cp.Minimize(obj), cons)
    out = solve_problem(prob, solver=solver, **(options or {}))
    values = {k: (None if v is None else torch.as_tensor(v, dtype=torch.float64)) for k, v in out.values.items()}
    x = next(iter(values.values())) if len(values) == 1 else values
    success = out.status == "optimal" and out.violation <= feas_tol
    status = "optimal" if success else (out.status if out.status != "optimal" else "not_converged")
    message = f"cvxpy ({out.solver}) status {out.cvxpy_status}"
    if status == "infeasible":  # a certificate, but no point: the violation is not measured
        message = (f"infeasible: cvxpy ({out.solver}) proved that no point satisfies the "
                   f"constraints (status {out.cvxpy_status}); max_violation is nan because a cvxpy "
                   f"problem gives no point to measure")
    return OptimizeResult(
        x=x, fun=out.fun, success=success, status=status, message=message,
        max_violation=out.violation, kkt_residual=float("nan"),
        multipliers=Multipliers(ineq=[_t(d) for d in out.ineq_duals], eq=[_t(d) for d in out.eq_duals]),
        nit=out.iterations, nfev=0, solver=f"cvxpy:{out.solver}", time=time.perf_counter() - t0,
        derivatives="none", info={"cvxpy_problem": prob, "solve_time": out.time, "other_duals": out.other_duals},
    )


def _bounds(prob: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat bounds of `prob` (`Problem.build` fills both in)."""
    return cast(torch.Tensor, prob.lower), cast(torch.Tensor, prob.upper)


def _t(v: Any) -> Any:
    return None if v is None else torch.as_tensor(np.asarray(v, dtype=float))


def _minimize_cvxpy_callables(prob: Problem, X0: torch.Tensor, solver: str | None, options: dict | None,
                              feas_tol: float, kkt_tol: float, t0: float) -> OptimizeResult:
    if prob.batch is not None:
        raise ProblemError("method='cvxpy' does not batch; use method='auglag' for batched=True.")
    lo_t, hi_t = _bounds(prob)
    lo = lo_t.cpu().numpy()
    hi = hi_t.cpu().numpy()
    cp_prob, var, nI, nE = build_problem(prob.objective, [c.fn for c in prob.ineq], [c.fn for c in prob.eq],
                                         prob.shape, lo, hi)
    out = solve_problem(cp_prob, solver=solver, **(options or {}))
    xv = out.values.get(var.name())
    x = torch.as_tensor(xv if xv is not None else np.full(prob.shape, np.nan), dtype=prob.dtype).reshape(prob.shape)
    ineq = [_t(d) for d in out.ineq_duals[:nI]]
    eq = [_t(d) for d in out.eq_duals[:nE]]
    kkt = float("nan")
    viol = out.violation
    fun = out.fun
    deriv = "none"
    # grade with the torch checks when the functions also accept tensors
    if xv is not None:
        try:
            ev = Evaluator(prob, x.reshape(1, -1))
            lam = torch.cat([d.reshape(1, -1) for d in ineq], 1) if ineq else x.new_zeros(1, ev.m_ineq)
            mu = torch.cat([d.reshape(1, -1) for d in eq], 1) if eq else x.new_zeros(1, ev.m_eq)
            m = measures(ev, x.reshape(1, -1).to(prob.dtype), lam.to(prob.dtype), mu.to(prob.dtype),
                         lo_t, hi_t)
            kkt, viol, fun, deriv = float(m.kkt[0]), float(m.violation[0]), float(m.f[0]), ev.derivatives
        except Exception:  # noqa: BLE001 - functions may only speak cvxpy
            pass
    success = out.status == "optimal" and viol <= feas_tol and (math.isnan(kkt) or kkt <= kkt_tol)
    status = "optimal" if success else (out.status if out.status != "optimal" else "not_converged")
    message = f"cvxpy ({out.solver}) status {out.cvxpy_status}"
    if status == "infeasible":  # measured like every method: the least-violation point from x0
        try:
            ev = Evaluator(prob, X0)
            R = least_violation(ev, X0, [0], lo_t, hi_t)
            mr = measures(ev, R, R.new_zeros(1, ev.m_ineq), R.new_zeros(1, ev.m_eq),
                          lo_t.expand_as(R), hi_t.expand_as(R))
            x, viol, fun, kkt = R.reshape(prob.shape), float(mr.violation[0]), float(mr.f[0]), float(mr.kkt[0])
            deriv = ev.derivatives
            message = infeasible_message(viol, f"cvxpy ({out.solver}) status {out.cvxpy_status}")
        except Exception:  # noqa: BLE001 - functions may only speak cvxpy
            message = f"infeasible: {message}; max_violation is nan (the functions do not take tensors)"
    return OptimizeResult(
        x=x, fun=fun, success=success, status=status,
        message=message, max_violation=viol, kkt_residual=kkt,
        multipliers=Multipliers(ineq=ineq, eq=eq), nit=out.iterations, nfev=0, solver=f"cvxpy:{out.solver}",
        time=time.perf_counter() - t0, derivatives=deriv, info={"cvxpy_problem": cp_prob},
    )
