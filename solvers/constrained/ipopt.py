"""IPOPT behind ``tk.minimize(method="ipopt")``, through CasADi's wheel.

Why CasADi: its PyPI wheel bundles a current IPOPT (3.14, with the MUMPS sparse solver)
for every platform, so ``pip install`` is the whole setup. cyipopt has no Linux wheels on
PyPI and builds against a system IPOPT (Debian ships 3.11.9, from 2014), which needs root
and a compiler. CasADi also lets us hand IPOPT our own derivative functions.

Derivatives, in order of preference:

1. **Captured** (``symbolic.capture``): the objective and constraints, called once on a
   symbolic ``x``, become a CasADi expression graph; IPOPT gets exact sparse Jacobians
   and Lagrangian Hessians in compiled code. The capture is checked against the torch
   functions at ``x0`` and at a second point and dropped on any difference.
2. **Torch callbacks** (``oracle.TorchOracle``): CasADi ``Callback`` functions that
   evaluate the torch functions, with ``grad f`` and the Jacobian from one batched
   backward pass and the Lagrangian Hessian from a second one, once per point. Above
   ``dense_hessian_max`` variables, or when a function has no exact Hessian, IPOPT's
   limited-memory quasi-Newton approximation replaces the Hessian.

IPOPT solves one instance; the result is graded by the caller like every other method.
Its constraint multipliers are passed through in the library's convention (CasADi's
``lam_g`` for ``g(x) <= 0`` is ``>= 0`` at an active constraint, the same sign).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from .constraints import Evaluator, Problem, ProblemError
from .oracle import TorchOracle
from .solver_cache import SOLVERS, CachedSolver
from .symbolic import capture

__all__ = ["available", "solve_ipopt", "IpoptOutput", "IPOPT_STATUS"]

#: IPOPT's return status -> the library's status (before grading by the shared checks).
IPOPT_STATUS = {
    "Solve_Succeeded": "optimal",
    "Solved_To_Acceptable_Level": "optimal",
    "Feasible_Point_Found": "optimal",
    "Infeasible_Problem_Detected": "infeasible",
    "Diverging_Iterates": "unbounded",
    "Maximum_Iterations_Exceeded": "max_iter",
    "Maximum_CpuTime_Exceeded": "max_iter",
    "Maximum_WallTime_Exceeded": "max_iter",
    "Invalid_Number_Detected": "nan",
}

DEFAULTS: dict[str, Any] = {"dense_hessian_max": 2000, "capture": True, "structure": True, "reuse": True}
#: from this many variables IPOPT runs with the tight tolerance at once (see solve_ipopt)
TIGHT_FROM_N = 1000


def available() -> bool:
    """True when CasADi (and so IPOPT) can be imported."""
    try:
        import casadi  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class IpoptOutput:
    X: torch.Tensor  # (1, n)
    lam: torch.Tensor  # (1, mI)
    mu: torch.Tensor  # (1, mE)
    status: list[str]
    messages: list[str]
    nit: int
    derivatives: str  # "captured" | "torch" | "torch, quasi-Newton"
    # with a captured graph: x, multipliers -> (grad f, J, Lagrangian Hessian), compiled
    # (the second-order test uses it instead of torch double-backward passes)
    second_derivatives: Callable[..., tuple] | None = None
    # IPOPT's own second-order evidence: it iterated and its last factorization of the
    # primal-dual system had the right inertia with no Hessian regularization, i.e. the
    # Hessian of the Lagrangian (plus positive barrier terms) was positive definite on the
    # null space of the constraint Jacobian
    inertia_ok: bool = False
    # on torch callbacks: the parts found constant ("Jacobian", "objective Hessian"),
    # computed once (oracle.structure)
    constant: tuple[str, ...] = ()
    # f and the constraint values (inequalities, then equalities) at X as the compiled
    # graph computed them: the grading checks them against torch's before it uses the
    # compiled derivatives (kkt.gradients)
    values: np.ndarray | None = None


def _casadi():
    try:
        import casadi
    except ImportError as exc:  # pragma: no cover - casadi is a dependency
        raise ProblemError(
            "method='ipopt' needs CasADi (which bundles IPOPT): pip install casadi"
        ) from exc
    return casadi


def _captured_nlp(prob: Problem, ev: Evaluator) -> tuple[dict, Any] | None:
    """The problem as a CasADi SX graph and its value function ``x -> (f, constraints)``,
    if capture works (its values are checked by ``_agrees`` before use)."""
    ca = _casadi()
    fns = [prob.objective] + [c.fn for c in prob.ineq] + [c.fn for c in prob.eq]
    got = capture(fns, prob.shape)
    if got is None:
        return None
    x, outs = got
    if outs[0].shape != (1, 1) or [o.shape[0] for o in outs[1:]] != ev.sizes[1:]:
        return None
    f, c = outs[0], ca.vertcat(*outs[1:]) if len(outs) > 1 else ca.SX(0, 1)
    return {"x": x, "f": f, "g": c}, ca.Function("tk_check", [x], [f, c])


def _agrees(check: Any, prob: Problem, ev: Evaluator, X0: torch.Tensor) -> bool:
    """Whether a graph's values are the torch functions' at ``x0`` and, where ``x0`` has
    zero entries (at which terms vanish), at a second, random point."""
    # torch's values at x0 come from the evaluator's first call when it was made there
    x0 = X0[0].detach().cpu().to(torch.float64)
    same_x0 = ev.X_initial.shape == X0.shape and bool((ev.X_initial == X0).all())
    points: list = [(x0, ev.initial if same_x0 else None)]
    if bool((x0 == 0).any()) or not same_x0:
        points.append((_second_point(prob, x0), None))
    rtol = max(1e-9, 100 * torch.finfo(X0.dtype).eps)  # float32 functions round at 1e-7
    for pt, tv in points:
        if tv is None:
            with torch.no_grad():
                tv = list(ev.evaluate(pt.to(X0.dtype).to(X0.device).reshape(1, -1)))
        want = torch.cat([v.reshape(-1) for v in tv]).double().cpu().numpy()
        fv, cv = check(pt.numpy())
        got_v = np.concatenate([np.asarray(fv).ravel(), np.asarray(cv).ravel()])
        if got_v.shape != want.shape:
            return False
        ok = np.isfinite(want) == np.isfinite(got_v)
        both = np.isfinite(want) & np.isfinite(got_v)
        ok &= ~both | (np.abs(want - got_v) <= rtol * np.maximum(1.0, np.abs(want)))
        if not ok.all():
            return False
    return True


def _second_point(prob: Problem, x0: torch.Tensor) -> torch.Tensor:
    """A random point near ``x0`` inside the bounds, where a property seen at ``x0`` (a
    capture's values, a constant derivative) is checked again."""
    gen = torch.Generator().manual_seed(0)
    x1 = x0 + 0.1 * (1 + x0.abs()) * torch.rand(x0.shape, generator=gen, dtype=torch.float64)
    lower, upper = cast(torch.Tensor, prob.lower), cast(torch.Tensor, prob.upper)  # filled in by now
    return torch.minimum(torch.maximum(x1, lower.cpu().double()), upper.cpu().double())


def _callback_nlp(oracle: TorchOracle, n: int, m: int, exact: bool) -> tuple[dict, dict, list]:
    """CasADi Callbacks over the torch oracle: the NLP, the derivative options, and the
    callback objects (which must outlive the solver). A constant Jacobian or Lagrangian
    Hessian (``oracle.structure``) is declared with its exact sparsity."""
    ca: Any = _casadi()
    dense = ca.Sparsity.dense
    none = dense(0, 1)
    J_pattern, J_take = _pattern(ca, oracle.J_const, m, n) if oracle.J_const is not None else (dense(m, n), None)
    H_fixed = oracle.Hf_const is not None and (oracle.J_const is not None or not m)
    if H_fixed:
        upper, H_take = _pattern(ca, np.triu(cast(np.ndarray, oracle.Hf_const)), n, n)
    else:
        upper, H_take = ca.Sparsity.upper(n), None
    rows, cols = np.tril_indices(n)  # column-major order of the upper triangle

    class _Fn(ca.Callback):
        def __init__(self, name: str, ins: list, outs: list, body, reverse=None) -> None:
            ca.Callback.__init__(self)
            self._ins, self._outs, self._body, self._reverse = ins, outs, body, reverse
            self._keep: list = []
            self.construct(name, {})

        def has_reverse(self, nadj: int) -> bool:
            return self._reverse is not None and nadj == 1

        def get_reverse(self, nadj: int, name: str, inames: Any, onames: Any, opts: Any):
            fn = _Fn(name, self._ins + self._outs + self._outs, [self._ins[0]], self._reverse)
            self._keep.append(fn)
            return fn

        def get_n_in(self) -> int:
            return len(self._ins)

        def get_n_out(self) -> int:
            return len(self._outs)

        def get_sparsity_in(self, i: int):
            return self._ins[i]

        def get_sparsity_out(self, i: int):
            return self._outs[i]

        def eval(self, arg: list) -> list:
            return self._body(np.asarray(arg[0], dtype=np.float64).ravel(), arg)

    def fg(x, arg):
        f, c = oracle.values(x)
        return [f, c.reshape(m, 1)]

    def grad_f(x, arg):
        f, _ = oracle.values(x)
        gf, _ = oracle.first(x)
        return [f, gf.reshape(n, 1)]

    J_fixed = ca.DM(J_pattern, J_take) if J_take is not None else None

    def jac_g(x, arg):
        _, c = oracle.values(x)
        if J_fixed is not None:
            return [c.reshape(m, 1), J_fixed]
        _, J = oracle.first(x)
        return [c.reshape(m, 1), J]

    def vjp(x, arg):  # CasADi asks once, for the multipliers of the bounds at the end
        gf, J = oracle.first(x)
        wf = float(np.asarray(arg[3]).ravel()[0])
        wc = np.asarray(arg[4], dtype=np.float64).ravel()
        return [(wf * gf + (J.T @ wc if m else 0.0)).reshape(n, 1)]

    H_fixed_dm = ca.DM(upper, H_take) if H_take is not None else None

    def hess(x, arg):
        sigma = float(np.asarray(arg[2]).ravel()[0])
        if H_fixed_dm is not None:
            return [H_fixed_dm * sigma]
        y = np.asarray(arg[3], dtype=np.float64).ravel()
        H = oracle.hessian(x, sigma, y)
        return [ca.DM(upper, H[rows, cols])]

    fgf = _Fn("tk_fg", [dense(n, 1)], [dense(1, 1), dense(m, 1)], fg, reverse=vjp)
    gff = _Fn("tk_grad_f", [dense(n, 1), none], [dense(1, 1), dense(n, 1)], grad_f)
    jgf = _Fn("tk_jac_g", [dense(n, 1), none], [dense(m, 1), J_pattern], jac_g)
    keep = [fgf, gff, jgf]
    x = ca.MX.sym("x", n)
    f, c = fgf(x)
    opts: dict[str, Any] = {"grad_f": gff, "jac_g": jgf}
    if exact:
        hlf = _Fn("tk_hess_lag", [dense(n, 1), none, dense(1, 1), dense(m, 1)], [upper], hess)
        keep.append(hlf)
        opts["hess_lag"] = hlf
    else:
        opts["ipopt.hessian_approximation"] = "limited-memory"
    return {"x": x, "f": f, "g": c}, opts, keep


def _pattern(ca: Any, A: np.ndarray, rows: int, cols: int) -> tuple[Any, np.ndarray]:
    """The sparsity of a constant matrix (its exact zeros) and its nonzeros in CasADi's order."""
    r, c = np.nonzero(A)
    sp = ca.Sparsity.triplet(rows, cols, r.tolist(), c.tolist())
    tr, tc = sp.get_triplet()
    return sp, A[np.asarray(tr, dtype=np.int64), np.asarray(tc, dtype=np.int64)]


SMALL = 250_000  # entries up to which compiled derivatives come back as dense arrays


def _compiled_derivatives(solver: Any, m: int) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """``(grad f, J, H)`` at ``x`` for multipliers ``y`` from the functions IPOPT itself used."""
    grad_f, jac_g, hess = (solver.get_function(k) for k in ("nlp_grad_f", "nlp_jac_g", "nlp_hess_l"))

    last: dict = {}

    def at(x: np.ndarray, y: np.ndarray, hessian: bool = True) -> tuple:
        """``grad f`` (dense), ``J`` and ``H`` (dense arrays up to ``SMALL`` entries, where
        scipy's set-up costs more than the arithmetic; else ``scipy.sparse``, as IPOPT had them)."""
        if last.get("x") != x.tobytes():  # the grading, curvature and cancellation ask at one point
            last.clear()
            last["x"] = x.tobytes()
            J = jac_g(x, [])[1]
            Jv = (J.full() if m * x.size <= SMALL else J.sparse()) if m else np.zeros((0, x.size))
            last["first"] = (np.asarray(grad_f(x, [])[1], dtype=np.float64).ravel(), Jv)
        if hessian and last.get("y") != y.tobytes():
            last["y"] = y.tobytes()
            U = hess(x, [], 1.0, y)
            if x.size * x.size <= SMALL:
                Ud = U.full()
                last["H"] = Ud + Ud.T - np.diag(np.diag(Ud))
            else:
                import scipy.sparse as sp  # here only: importing it costs 0.1 s, more than a small solve

                Us = U.sparse()
                last["H"] = (Us + Us.T - sp.diags(Us.diagonal())).tocsr()
        return (*last["first"], last.get("H") if hessian else None)
    return at


def solve_ipopt(
    prob: Problem,
    ev: Evaluator,
    X0: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    tol: float = 1e-8,
    max_iter: int | None = None,
    options: dict[str, Any] | None = None,
    tight: bool = False,
) -> IpoptOutput:
    """Solve row 0 of ``X0`` with IPOPT; ``options`` are IPOPT options (``"print_level"``,
    ``"mu_strategy"``, ...) plus ``"capture"`` (default True), ``"structure"`` (default
    True: constant Jacobians and objective Hessians on torch callbacks are found once,
    ``oracle.TorchOracle.structure``), ``"reuse"`` (default True: a captured problem's
    solver is kept for the next solve of the same functions, ``solver_cache``) and
    ``"dense_hessian_max"``."""
    ca = _casadi()
    if X0.shape[0] != 1:
        raise ProblemError("method='ipopt' solves one instance; use method='auglag' for batched=True.")
    opts_in = dict(DEFAULTS)
    opts_in.update(options or {})
    use_capture = bool(opts_in.pop("capture"))
    use_structure = bool(opts_in.pop("structure"))
    use_reuse = bool(opts_in.pop("reuse"))
    dense_max = int(opts_in.pop("dense_hessian_max"))
    n, mI, mE = X0.shape[1], ev.m_ineq, ev.m_eq
    m = mI + mE
    # IPOPT's tol is on its scaled error; 1e-2 x ours passes the shared, unscaled grade
    # but for weakly active bounds (small multiplier, distance ~ sqrt of their product),
    # where the caller solves again with "tight" (1e-4 x ours, two or three iterations more).
    # (IPOPT's tol = ours saves an iteration or two on small problems, but problems with
    # many bounds, such as a banded QP in a box, then need the second solve: 5x slower.)
    # Bounds are relaxed by at most tol (IPOPT's default relaxation is 1e-8) and the
    # violation IPOPT accepts is tol, so its point meets the caller's accuracy.
    opts: dict[str, Any] = {
        "print_time": False, "ipopt.print_level": 0, "ipopt.sb": "yes",
        "ipopt.tol": (1e-4 if tight else 1e-2) * float(tol), "ipopt.constr_viol_tol": float(tol),
        "ipopt.bound_relax_factor": min(1e-8, float(tol)), "ipopt.max_iter": int(max_iter or 3000)}
    for k, v in opts_in.items():
        opts[k if "." in k else f"ipopt.{k}"] = v
    keep: list = []
    constant: tuple[str, ...] = ()
    solver = entry = None
    fns = [prob.objective] + [c.fn for c in prob.ineq] + [c.fn for c in prob.eq]
    key = SOLVERS.key(fns, prob.shape, X0.dtype, opts) if use_capture and use_reuse and not ev.has_fd else None
    if key is not None:  # the same functions solved before: their solver, if its values still hold
        entry = SOLVERS.take(key, fns)
        if entry is not None and entry.sizes == list(ev.sizes) and _agrees(entry.check, prob, ev, X0):
            solver = entry.solver
        else:
            entry = None
    got = _captured_nlp(prob, ev) if solver is None and use_capture and not ev.has_fd else None
    if got is not None and not _agrees(got[1], prob, ev, X0):
        got = None
    if solver is not None or got is not None:
        derivatives = "captured"
        nlp = got[0] if got is not None else None
    else:
        oracle = TorchOracle(ev, X0)
        if use_structure:
            x0 = X0[0].detach().cpu().double()
            oracle.structure(x0.numpy(), _second_point(prob, x0).numpy(), hessian=n <= dense_max)
        exact = ev.exact_hessian and n <= dense_max
        nlp, cb_opts, keep = _callback_nlp(oracle, n, m, exact)
        opts.update(cb_opts)
        derivatives = "torch" if exact else "torch, quasi-Newton"
        constant = tuple(w for w, c in (("Jacobian", oracle.J_const), ("objective Hessian", oracle.Hf_const))
                         if c is not None)
    if solver is None:
        try:
            solver = ca.nlpsol("tracekit_ipopt", "ipopt", nlp, opts)
        except RuntimeError as exc:
            raise ProblemError(f"IPOPT rejected the problem or its options: {exc}") from exc
        if got is not None and key is not None:
            entry = CachedSolver(solver, got[1], list(ev.sizes), n + m)
    inf = math.inf
    sol = solver(x0=X0[0].detach().cpu().double().numpy(), lbx=lo.cpu().double().numpy(),
                 ubx=hi.cpu().double().numpy(), lbg=np.r_[np.full(mI, -inf), np.zeros(mE)],
                 ubg=np.zeros(m))
    del keep  # the callbacks may go once the solve has returned
    if constant and not oracle.constants_hold(np.asarray(sol["x"], dtype=np.float64).ravel()):
        # a piecewise function looked constant at two points but not at the solution:
        # solve again with every derivative computed where it is asked for
        return solve_ipopt(prob, ev, X0, lo, hi, tol, max_iter, {**(options or {}), "structure": False}, tight)
    stats = solver.stats()
    ret = str(stats.get("return_status", "unknown"))
    status = IPOPT_STATUS.get(ret, "not_converged")
    x = torch.as_tensor(np.asarray(sol["x"]).ravel(), dtype=X0.dtype, device=X0.device).reshape(1, n)
    y = np.asarray(sol["lam_g"], dtype=np.float64).ravel()
    lam = torch.as_tensor(np.maximum(y[:mI], 0.0), dtype=X0.dtype, device=X0.device).reshape(1, mI)
    mu = torch.as_tensor(y[mI:], dtype=X0.dtype, device=X0.device).reshape(1, mE)
    second = _compiled_derivatives(solver, m) if derivatives == "captured" else None
    nit = int(stats.get("iter_count", 0))
    reg = list((stats.get("iterations") or {}).get("regularization_size") or [])
    inertia_ok = bool(nit >= 1 and reg and reg[-1] == 0)
    values = np.r_[np.asarray(sol["f"], dtype=np.float64).ravel(), np.asarray(sol["g"], dtype=np.float64).ravel()]
    if entry is not None and key is not None:  # read out: another solve may use it now
        SOLVERS.put(key, fns, entry)
    return IpoptOutput(x, lam, mu, [status], [f"ipopt: {ret}"], nit, derivatives, second, inertia_ok, constant,
                       values)
