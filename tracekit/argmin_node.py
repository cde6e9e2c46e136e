"""`tk.argmin`: a constrained (or cvxpy) solve as a node of a traced workflow.

`argmin(objective, y0, *inputs, constraints=..., bounds=..., method=...)` solves
`min_y objective(y, *inputs)` with `solvers.constrained` and returns an `ArgminNode`
whose `data` is `y*`, a tensor with an autograd path to every floating tensor input
(implicit differentiation of the KKT conditions, `solvers.constrained.implicit`), so a
downstream loss trains tensor parameters upstream of the solve. `argmin(problem,
parameters={cp_param: value}, variables=[cp_var])` does the same for a DPP cvxpy problem
through cvxpylayers (which differentiates the cone program).

Failures are nodes, not crashes: an infeasible, unbounded or unconverged solve returns an
`ExceptionNode` carrying `InfeasibleError`, `UnboundedError` or `NotConvergedError`; a solve
that stopped close to tolerance (violation and KKT residual below 1e-4) returns a normal
node with `converged == "approximate"`. Each call site keeps its last solution (primal and
dual) and the next call there starts from it (`node.warm_started`).
"""

from __future__ import annotations

import inspect
import math
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracekit.codeparam import source_of
from tracekit.context import used_nodes
from tracekit.errors import InfeasibleError, NotConvergedError, SolveError, UnboundedError
from tracekit.nodes import (
    ExceptionNode,
    MessageNode,
    Node,
    TracedError,
    _is_tensor,
    _propagate_error,
)

__all__ = ["argmin", "ArgminNode", "ArgminOp", "ArgminOutcome", "APPROXIMATE_TOL"]

#: a failed solve whose violation and KKT residual are both below this is "approximate"
APPROXIMATE_TOL = 1e-4
#: the most characters of solver description shown to an LLM per argmin node
DESCRIPTION_CHARS = 1500
#: an objective value below minus this means the problem is unbounded below
UNBOUNDED = 1e20
_WARM_SITES = 256
_warm: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_layers: OrderedDict[tuple, tuple[Any, Any, bool]] = OrderedDict()  # (problem, layer, with duals)


@dataclass
class ArgminOutcome:
    """What a solve ended with, as the node shows it (and the LLM optimizer reads it)."""

    status: str
    converged: str  # "yes" | "approximate" | "no"
    fun: Any = None
    max_violation: Any = None
    kkt_residual: Any = None
    active: list[str] = field(default_factory=list)
    solver: str = ""
    message: str = ""
    warm_started: bool = False
    time: float = 0.0
    result: Any = None  # the solver's OptimizeResult (None for cvxpylayers)
    backward: dict[str, Any] = field(default_factory=dict)  # the last backward: linear solver, singular, ...


class ArgminOp:
    """The op of an argmin node: its code line, its documentation and the solve's text."""

    doc = ("solves the optimization problem shown under the call (objective, constraints) "
           "for the inputs given; its output is the minimizer y*.")

    def __init__(self, label: str, problem_text: str, call_args: str = "") -> None:
        self.name = "argmin"
        self.label = label
        self.problem_text = problem_text
        self.call_args = call_args
        self.outcome: ArgminOutcome | None = None

    def code_line(self, argnames: Any, labels: Any) -> str:
        args = ", ".join([self.label, *labels])
        return f"argmin({args}{self.call_args})"

    def call_detail(self) -> str:
        """The problem's source and the outcome, bounded to `DESCRIPTION_CHARS`."""
        text = self.problem_text
        o = self.outcome
        if o is not None:
            parts = [f"status {o.status}" + ("" if o.converged == "yes" else f" (converged: {o.converged})")]
            if o.fun is not None:
                parts.append(f"objective {_fmt(o.fun)}")
            if o.max_violation is not None:
                parts.append(f"max violation {_fmt(o.max_violation)}")
            parts.append("active constraints: " + ("; ".join(o.active) if o.active else "none"))
            if o.warm_started:
                parts.append("warm-started from the previous solution")
            if o.solver:
                parts.append(f"solver {o.solver}")
            outcome = "outcome: " + ", ".join(parts)
            text = _cut(text, DESCRIPTION_CHARS - min(len(outcome), DESCRIPTION_CHARS // 2) - 1) + "\n" + outcome
        return _cut(text, DESCRIPTION_CHARS)

    def __repr__(self) -> str:
        return f"<argmin {self.label}>"


class ArgminNode(MessageNode):
    """The output of `tk.argmin`: `data` is `y*`; `outcome` says how the solve ended."""

    __slots__ = ("outcome",)

    def __init__(self, data: Any, parents: tuple[Node, ...], argnames: tuple[str, ...], op: ArgminOp,
                 outcome: ArgminOutcome, name: str | None = None) -> None:
        super().__init__(data, parents, argnames, op, name=name)
        self.outcome = outcome

    @property
    def warm_started(self) -> bool:
        """True when this solve started from the previous solution of the same call site."""
        return self.outcome.warm_started

    @property
    def converged(self) -> str:
        """"yes", or "approximate" when the solve stopped near (not within) tolerance."""
        return self.outcome.converged

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def result(self) -> Any:
        """The solver's `OptimizeResult` (multipliers, KKT residual, ...); None for cvxpy nodes."""
        return self.outcome.result

    def _default_prefix(self) -> str:
        return "argmin_"


def argmin(objective: Any, y0: Any = None, *inputs: Any, constraints: Any = None, bounds: Any = None,
           method: str = "auto", tol: float | None = None, name: str | None = None,
           parameters: dict | None = None, variables: Any = None, batched: bool = False,
           options: dict[str, Any] | None = None) -> Node:
    """`y* = argmin_y objective(y, *inputs)` s.t. `constraints`, `bounds`, as a traced node.

    `objective(y, *inputs)` returns a scalar (a `(B,)` tensor with `batched=True`, where
    the first dimension of `y0` indexes independent instances solved in one call);
    `constraints` are `tk.Ineq(g)` / `tk.Eq(h)` with `g(y, *inputs)`; `bounds` are
    constant. Inputs may be nodes, tensors or plain values; they become the node's parents.
    With a cvxpy problem as first argument, give `parameters={cp_param: value_or_node}`
    and `variables=[cp_var, ...]` instead. Returns an `ArgminNode`, or an `ExceptionNode`
    carrying a `tk.SolveError` subclass when the solve fails. `tol` is the solver's
    accuracy (default 1e-10, 1e-9 for a cvxpy problem's cone solver: the gradient's error
    is proportional to it); `method="auto"` uses IPOPT for one instance on the CPU and the augmented Lagrangian for batches, CUDA tensors and dual warm starts (see
    docs/concepts/argmin.md).
    """
    frame = sys._getframe(1)
    site = (frame.f_code.co_filename, frame.f_lineno, name)
    del frame
    if _is_cvxpy_problem(objective):
        if y0 is not None or inputs or constraints is not None or bounds is not None:
            raise TypeError("tk.argmin(problem, parameters={cp_param: value}, variables=[cp_var]): a cvxpy "
                            "problem carries its own constraints; pass its inputs as `parameters`, not "
                            "positionally.")
        return _cvxpy_argmin(objective, parameters, variables, name, site, tol)
    if parameters is not None or variables is not None:
        raise TypeError("`parameters=` and `variables=` are for a cvxpy problem; with a callable objective "
                        "pass the inputs positionally: tk.argmin(objective, y0, *inputs).")
    if not callable(objective):
        raise TypeError(f"tk.argmin needs a callable objective(y, *inputs) -> scalar or a cvxpy Problem, "
                        f"got {type(objective).__name__}.")
    if y0 is None:
        raise TypeError("tk.argmin(objective, y0, *inputs): y0, the starting point shaped like y, is required.")
    return _callable_argmin(objective, y0, inputs, list(constraints or []), bounds, method, tol, name, site,
                            batched, options)


# --- callable objectives ------------------------------------------------------------------------
def _callable_argmin(objective: Callable[..., Any], y0: Any, inputs: tuple[Any, ...], constraints: list[Any],
                     bounds: Any, method: str, tol: float | None, name: str | None, site: tuple,
                     batched: bool, options: dict[str, Any] | None) -> Any:  # a Node; plain inside a bundle
    import torch

    from solvers.constrained.constraints import Eq, Ineq, ProblemError
    from solvers.constrained.implicit import ArgminSpec, solve_argmin
    from solvers.constrained.result import Multipliers

    for i, c in enumerate(constraints):
        if not isinstance(c, (Ineq, Eq)):
            raise TypeError(f"constraints[{i}] must be tk.Ineq(g) or tk.Eq(h) with g(y, *inputs); "
                            f"got {type(c).__name__}.")
    y0v = y0.raw if isinstance(y0, Node) else y0
    outer = used_nodes.get()
    parents = tuple(a if isinstance(a, Node) else Node(a) for a in inputs)
    argnames = _input_names(objective, len(inputs))
    op = ArgminOp(getattr(objective, "__name__", "objective").replace("<lambda>", "objective"),
                  _problem_text(objective, constraints, bounds),
                  _call_args(constraints, bounds))
    if outer is None and any(p.is_error for p in parents):
        return _propagate_error(op, parents, argnames)
    values = [p.raw for p in parents]
    spec = ArgminSpec(objective=objective, constraints=constraints, bounds=bounds, method=method,
                      batched=batched, tol=1e-10 if tol is None else float(tol), options=dict(options or {}))
    start = y0v
    warm = _warm.get(site)
    shape = tuple(y0v.shape) if _is_tensor(y0v) else tuple(torch.as_tensor(y0v).shape)
    warm_started = False
    if warm is not None and warm["shape"] == shape and warm["n_cons"] == len(constraints):
        start = warm["y"]
        spec.multipliers0 = warm["multipliers"]
        warm_started = True
    try:
        try:
            y, res = solve_argmin(spec, start, values)
        except ProblemError:
            if not warm_started:
                raise
            spec.multipliers0, warm_started = None, False  # the warm duals did not fit: start cold
            y, res = solve_argmin(spec, y0v, values)
    except Exception as exc:
        cause = exc.__cause__
        if isinstance(exc, ProblemError) and (cause is None or isinstance(cause, ProblemError)):
            raise TypeError(f"tk.argmin: {exc}") from exc  # bad input: a clear error, nothing ran
        if outer is not None:
            raise
        # the user's functions raised: a node, as in a bundle (the message says which function)
        original = cause if isinstance(exc, ProblemError) else exc
        err = TracedError(type(original).__name__, str(exc), "", None, "argmin", original)
        return ExceptionNode(err, parents, argnames, op)
    outcome = _grade(res, constraints, warm_started)
    outcome.backward = spec.backward_info  # filled when a gradient is computed
    op.outcome = outcome
    if outcome.converged != "no" and bool(torch.isfinite(y).all()):
        _remember(site, shape, y, Multipliers(ineq=[m.detach() for m in res.multipliers.ineq],
                                               eq=[m.detach() for m in res.multipliers.eq]), len(constraints))
    error = None if outcome.converged != "no" else _error_for(res, outcome)
    if outer is not None:  # nested in a bundle or under no_trace: plain values
        if error is not None:
            raise error
        return y
    if error is not None:
        return ExceptionNode(TracedError(type(error).__name__, str(error), "", None, "argmin", error),
                             parents, argnames, op)
    return ArgminNode(y, parents, argnames, op, outcome, name=name)


def _grade(res: Any, constraints: list, warm_started: bool) -> ArgminOutcome:
    import torch

    def worst(v: Any) -> float:
        if torch.is_tensor(v):
            v = v.detach().float()
            return float(v.nan_to_num(nan=math.inf).max()) if v.numel() else 0.0
        return float(v) if v is not None else math.nan

    statuses = list(res.status) if isinstance(res.status, list) else [res.status]
    success = bool(torch.as_tensor(res.success).all())
    funs = torch.as_tensor(res.fun, dtype=torch.float64).reshape(-1)
    for i, f in enumerate(funs.tolist()):  # a "solution" out at 1e20 is a diverged iterate
        if i < len(statuses) and (f < -UNBOUNDED or math.isinf(f)):
            statuses[i], success = "unbounded", False
    if isinstance(res.status, list):
        res.status = statuses
    else:
        res.status = statuses[0]
    viol, kkt = worst(res.max_violation), worst(res.kkt_residual)
    if success:
        converged = "yes"
    elif (all(s not in ("infeasible", "unbounded", "nan") for s in statuses)
          and viol <= APPROXIMATE_TOL and (math.isnan(kkt) or kkt <= APPROXIMATE_TOL)):
        converged = "approximate"
    else:
        converged = "no"
    status = statuses[0] if len(statuses) == 1 else ", ".join(sorted(set(statuses)))
    return ArgminOutcome(status=status, converged=converged, fun=res.fun, max_violation=res.max_violation,
                         kkt_residual=res.kkt_residual, active=_active(res, constraints), solver=res.solver,
                         message=res.message, warm_started=warm_started, time=res.time, result=res)


def _active(res: Any, constraints: list, tol: float = 1e-9, limit: int = 12) -> list[str]:
    """Active constraints with their multipliers (first instance of a batch)."""
    from solvers.constrained.constraints import Ineq

    out: list[str] = []
    mult = res.multipliers
    it_i, it_e = iter(mult.ineq), iter(mult.eq)
    for k, c in enumerate(constraints):
        m = next(it_i if isinstance(c, Ineq) else it_e, None)
        if m is None:
            continue
        flat = m.detach().reshape(-1) if isinstance(res.status, str) else m.detach()[0].reshape(-1)
        idx = [i for i in range(flat.numel()) if (not isinstance(c, Ineq)) or float(flat[i]) > tol]
        label = _cname(c, k)
        for i in idx:
            suffix = f"[{i}]" if flat.numel() > 1 else ""
            out.append(f"{label}{suffix} (multiplier {float(flat[i]):.4g})")
    z = mult.bounds
    if z is not None:
        zf = z.detach().reshape(-1) if isinstance(res.status, str) else z.detach()[0].reshape(-1)
        for i in range(zf.numel()):
            if abs(float(zf[i])) > tol:
                side = "lower" if float(zf[i]) < 0 else "upper"
                out.append(f"y[{i}] at its {side} bound (multiplier {abs(float(zf[i])):.4g})")
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more"]
    return out


def _error_for(res: Any, outcome: ArgminOutcome) -> SolveError:
    statuses = res.status if isinstance(res.status, list) else [res.status]
    viol = outcome.max_violation
    viol_f = float(viol.max()) if _is_tensor(viol) else viol
    cls: type[SolveError] = NotConvergedError
    if "infeasible" in statuses:
        cls, what = InfeasibleError, "the constraints admit no feasible point"
    elif "unbounded" in statuses:
        cls, what = UnboundedError, "the objective is unbounded below on the feasible set"
    else:
        what = "the solver stopped before meeting its tolerances"
    where = ""
    if len(statuses) > 1:
        bad = [i for i, s in enumerate(statuses) if s != "optimal"]
        where = f" in batch instance(s) {bad[:10]}"
    msg = (f"argmin failed{where}: {what} (status {outcome.status}, max violation {_fmt(viol_f)}); "
           f"solver {res.solver}: {_cut(res.message, 300)}")
    return cls(msg, status=outcome.status, max_violation=viol_f, solver_message=res.message, result=res)


def _remember(site: tuple, shape: tuple, y: Any, multipliers: Any, n_cons: int) -> None:
    _warm[site] = {"shape": shape, "y": y.detach().clone(), "multipliers": multipliers, "n_cons": n_cons}
    _warm.move_to_end(site)
    while len(_warm) > _WARM_SITES:
        _warm.popitem(last=False)


def _input_names(objective: Any, count: int) -> tuple[str, ...]:
    try:
        params = list(inspect.signature(objective).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(names[i] if i < len(names) else f"input_{i}" for i in range(count))


def _call_args(constraints: list, bounds: Any) -> str:
    text = ""
    if constraints:
        text += ", constraints=[" + ", ".join(f"{type(c).__name__}({_cname(c, i)})"
                                              for i, c in enumerate(constraints)) + "]"
    if bounds is not None:
        text += f", bounds={_cut(_short(bounds), 60)}"
    return text


def _cname(c: Any, i: int) -> str:
    """A constraint's name, or `constraint_<i>` for an anonymous lambda."""
    name = getattr(c, "name", "") or ""
    return f"constraint_{i}" if not name or name.startswith("<") else name


def _problem_text(objective: Any, constraints: list, bounds: Any) -> str:
    lines = ["objective (minimized over y):", _cut(_source(objective), 600)]
    for i, c in enumerate(constraints):
        rel = "<= 0" if type(c).__name__ == "Ineq" else "== 0"
        lines.append(f"constraint {_cname(c, i)} ({rel}): {_cut(_source(c.fn), 300)}")
    if bounds is not None:
        lines.append(f"bounds on y: {_cut(_short(bounds), 120)}")
    return "\n".join(lines)


def _source(fn: Any) -> str:
    if getattr(fn, "__name__", "") == "<lambda>":
        return _lambda_source(fn)
    try:
        return source_of(fn)
    except Exception:  # noqa: BLE001 - a callable object without source
        return repr(fn)


def _lambda_source(fn: Any) -> str:
    """The `lambda ...: ...` expression itself, not the whole line around it."""
    import ast
    import textwrap

    try:
        text = textwrap.dedent(inspect.getsource(fn)).strip()
    except (OSError, TypeError):
        return "<lambda>"
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a fragment of a multi-line call: cut the lambda out by brackets
        return _scan_lambda(text)
    code = fn.__code__
    args = list(code.co_varnames[: code.co_argcount])
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and [a.arg for a in n.args.args] == args]
    if len(found) == 1:
        return ast.get_source_segment(text, found[0]) or text
    return text


def _scan_lambda(text: str) -> str:
    start = text.find("lambda")
    if start < 0:
        return text
    depth = 0
    body = text.find(":", start)  # the arguments' commas are not the end
    for i in range(body if body > 0 else start, len(text)):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return text[start:i].strip()
            depth -= 1
        elif ch == "," and depth == 0:
            return text[start:i].strip()
    return text[start:].strip()


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if _is_tensor(value):
        return repr(value.detach().cpu().tolist()) if value.numel() <= 8 else f"tensor{tuple(value.shape)}"
    return repr(value)


def _fmt(v: Any) -> str:
    if _is_tensor(v):
        v = v.detach().cpu()
        return f"{float(v):.6g}" if v.numel() == 1 else _cut(repr([round(float(x), 6) for x in v.reshape(-1)]), 120)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 20, 0)] + f"...[+{len(text) - limit + 20} chars]"


# --- cvxpy problems -----------------------------------------------------------------------------
def _is_cvxpy_problem(obj: Any) -> bool:
    cp = sys.modules.get("cvxpy")
    return cp is not None and isinstance(obj, cp.Problem)


def _layer(problem: Any, params: list, variables: list) -> tuple[Any, bool]:
    """The cached CvxpyLayer of a problem and whether it also returns the constraints'
    multipliers (their dual variables, asked for after the primal ones)."""
    key = (id(problem), tuple(id(p) for p in params), tuple(id(v) for v in variables))
    hit = _layers.get(key)
    if hit is not None and hit[0] is problem:
        _layers.move_to_end(key)
        return hit[1], hit[2]
    from cvxpylayers.torch import CvxpyLayer

    if not problem.is_dpp():
        raise TypeError("tk.argmin(problem, ...): the cvxpy problem must be DPP (parameters enter affinely; "
                        "see cvxpy's 'Disciplined Parametrized Programming'), so that cvxpylayers can "
                        "differentiate it.")
    duals = [c.dual_variables[0] for c in problem.constraints if len(c.dual_variables) == 1]
    with_duals = len(duals) == len(problem.constraints) > 0
    try:  # the multipliers come from the same cone solve; a layer without them if refused
        layer = CvxpyLayer(problem, parameters=params, variables=variables + (duals if with_duals else []))
    except (ValueError, TypeError, KeyError):
        if not with_duals:
            raise
        with_duals = False
        layer = CvxpyLayer(problem, parameters=params, variables=variables)
    _layers[key] = (problem, layer, with_duals)
    while len(_layers) > 32:
        _layers.popitem(last=False)
    return layer, with_duals


#: accuracy asked of the cone solver behind a cvxpy node when `tol` is not given: its
#: default (about 1e-4) leaves allocations visibly infeasible and gradients off by percents
CVXPY_TOL = 1e-9


def _cvxpy_argmin(problem: Any, parameters: dict | None, variables: Any, name: str | None, site: tuple,
                  tol: float | None = None) -> Any:  # a Node; the plain solution inside a bundle
    import cvxpy as cp
    import torch

    if not isinstance(parameters, dict) or not parameters:
        raise TypeError("tk.argmin(problem, parameters={cp_param: value_or_node, ...}, variables=[cp_var]): "
                        "`parameters` must be a non-empty dict from the problem's cp.Parameter objects to values.")
    params = list(parameters)
    for p in params:
        if not isinstance(p, cp.Parameter):
            raise TypeError(f"parameters keys must be cvxpy Parameters, got {type(p).__name__}.")
    variables = list(variables or problem.variables())
    for v in variables:
        if not isinstance(v, cp.Variable):
            raise TypeError(f"variables must be cvxpy Variables, got {type(v).__name__}.")
    layer, with_duals = _layer(problem, params, variables)
    parents = tuple(v if isinstance(v, Node) else Node(v) for v in parameters.values())
    argnames = tuple(p.name() for p in params)
    op = ArgminOp("problem", "cvxpy problem:\n" + _cut(str(problem), 900),
                  ", variables=[" + ", ".join(v.name() for v in variables) + "]")
    op.code_line = lambda argnames, labels: (  # type: ignore[method-assign]
        "argmin(problem, " + ", ".join(f"{a}={b}" for a, b in zip(argnames, labels)) + op.call_args + ")")
    outer = used_nodes.get()
    if outer is None and any(p.is_error for p in parents):
        return _propagate_error(op, parents, argnames)
    raws = [pn.raw for pn in parents]
    like = next((v for v in raws if _is_tensor(v)), None)  # plain values join the tensors' device
    device = like.device if like is not None else None
    tensors = [v if _is_tensor(v) else torch.as_tensor(v, dtype=torch.float64, device=device) for v in raws]
    eps = CVXPY_TOL if tol is None else float(tol)
    try:
        sols = layer(*tensors, solver_args={"eps_abs": eps, "eps_rel": eps})
    except Exception as exc:  # noqa: BLE001 - the cone solver's failures become typed errors
        text = str(exc)
        low = text.lower()
        cls = (InfeasibleError if "infeasib" in low else UnboundedError if "unbounded" in low
               else NotConvergedError if "solver" in low else SolveError)
        err = cls(f"argmin (cvxpylayers) failed: {_cut(text, 400)}", status=cls.__name__, solver_message=text)
        if outer is not None:
            raise err from exc
        op.outcome = ArgminOutcome(status="failed", converged="no", message=text, solver="cvxpylayers")
        return ExceptionNode(TracedError(type(err).__name__, str(err), "", None, "argmin", err),
                             parents, argnames, op)
    sols, duals = tuple(sols[:len(variables)]), tuple(sols[len(variables):]) if with_duals else None
    data = sols[0] if len(sols) == 1 else tuple(sols)
    outcome = _cvxpy_outcome(problem, params, variables, tensors, sols, duals)
    op.outcome = outcome
    if outer is not None:
        return data
    return ArgminNode(data, parents, argnames, op, outcome, name=name)


def _cvxpy_outcome(problem: Any, params: list, variables: list, tensors: list, sols: tuple,
                   duals: tuple | None = None) -> ArgminOutcome:
    """Objective value, active constraints and their multipliers at the solution (first
    instance of a batch)."""
    import numpy as np

    def first(t: Any, shape: tuple) -> Any:
        a = t.detach().cpu().numpy()
        return a[0] if a.ndim > len(shape) else a

    active: list[str] = []
    fun = None
    try:
        for p, t in zip(params, tensors):
            p.value = first(t, p.shape)
        for v, s in zip(variables, sols):
            v.value = first(s, v.shape)
        fun = float(problem.objective.value)
        if duals is not None:
            for i, (c, d) in enumerate(zip(problem.constraints, duals)):
                m = np.asarray(first(d, c.dual_variables[0].shape), dtype=float).reshape(-1)
                label = f"constraint {i} `{_cut(str(c), 60)}`"
                equality = type(c).__name__ in ("Equality", "Zero")
                for j in range(m.size) if equality else np.nonzero(np.abs(m) > 1e-6)[0]:
                    active.append(f"{label}{f'[{j}]' if m.size > 1 else ''} (multiplier {m[j]:.4g})")
            if len(active) > 12:
                active = active[:12] + [f"... {len(active) - 12} more"]
            return ArgminOutcome(status="optimal", converged="yes", fun=fun, active=active,
                                 solver="cvxpylayers")
        for i, c in enumerate(problem.constraints):
            if type(c).__name__ in ("Inequality", "NonNeg", "NonPos"):
                r = np.asarray(c.expr.value if hasattr(c, "expr") else c.args[0].value, dtype=float).reshape(-1)
                if type(c).__name__ == "NonNeg":
                    r = -r
                idx = np.nonzero(r > -1e-6)[0]
                if idx.size:
                    active.append(f"constraint {i} `{_cut(str(c), 60)}`" + (
                        f" at {idx[:8].tolist()}" if r.size > 1 else ""))
            elif type(c).__name__ in ("Equality", "Zero"):
                active.append(f"constraint {i} `{_cut(str(c), 60)}` (equality)")
    except Exception:  # noqa: BLE001 - the description is best effort
        pass
    return ArgminOutcome(status="optimal", converged="yes", fun=fun, active=active[:12],
                         solver="cvxpylayers (multipliers not reported)")
