"""`tk.Optimizer`: one PyTorch-style optimizer that dispatches each parameter to its solver.

    opt = tk.Optimizer(agent.parameters(), llm=..., numeric="adam", lr=1e-2)
    opt.zero_feedback(); opt.backward(out, feedback); report = opt.step()

A step is transactional per parameter: proposals are validated before anything is
written, and a solver that fails leaves its parameters as they were; the report says why
for an expected failure, and a bug (TypeError, AttributeError, ...) propagates
(`tracekit.seam.expected_failure` decides which). Arguments are checked when the optimizer
is built (`tracekit.options`). The step report lives in `tracekit.report`. Work is done per
(param group, route), not per parameter, where it can be: the plan of a group whose tensors
all have gradients is the group itself, and the gradient route answers with one
`GroupUpdate` whose report rows are built when read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

from tracekit.errors import InvalidOptionError, MissingSolverError, SolveError, describe, message_of
from tracekit.feedback import Feedback, as_feedback, backward
from tracekit.nodes import Node, ParameterNode, _is_tensor
from tracekit.options import check_options, check_params
from tracekit.report import GroupRows, ParamChange, Snapshot, StepReport, _Preview
from tracekit.seam import (
    UNCHANGED,
    GroupUpdate,
    ParamUpdate,
    SolverFactory,
    StepContext,
    expected_failure,
    nonfinite_loss,
    solver_factory,
    unique_name,
)

__all__ = ["Optimizer", "ParamChange", "ParamUpdate", "StepReport", "UNCHANGED", "route_of"]

HISTORY = 100  # step reports kept in `Optimizer.history` by default (see `history_size`)
#: routes whose solvers compare candidates with the objective (they share a capped one)
COMPARING_ROUTES = ("text", "demos", "bayesian", "zeroth_order")


def route_of(p: ParameterNode, has_objective: bool) -> str:
    """Which solver route a parameter takes in this step.

    Text and code -> "text". A categorical or a Python number (no gradient path) ->
    "bayesian" (Optuna search) when there is an objective or its feedback carries a
    loss (a finite one for a number); a number with text-only feedback that gives a
    signal (a target, a direction) -> "bracket"; else "text". Tensors: "gradient" when the loss reached them through torch, else
    "zeroth_order" (SPSA: high-dimensional) with an objective, else "text". A parameter
    whose `route` is set (e.g. `tk.Predict`'s `demo_selection`: "demos") takes that route."""
    if p.route is not None:
        return p.route
    if p.kind in ("text", "code"):
        return "text"
    if p.kind == "demos":
        return "demos"  # selection from scored calls and labelled examples
    if p.kind == "categorical":
        return "bayesian" if has_objective or _has_loss(p, finite=False) else "text"
    if not p.is_tensor:  # a Python number
        if has_objective or _has_loss(p, finite=True):
            return "bayesian"
        from tracekit.routes.bracket import takes  # a signal in the text feedback (no model asked)

        return "bracket" if takes(p) else "text"
    if p.raw.grad is not None or not p.feedback:
        return "gradient"
    if p.raw.is_floating_point() and nonfinite_loss(p):
        return "gradient"  # NaN/inf loss: the gradient solver skips it, keeps the value, says why
    if p.raw.is_floating_point() and _through_failed_solve(p):
        return "gradient"  # its path runs through a failed tk.argmin: no gradient, value kept
    # a tensor whose loss did not reach it through torch: no gradient path
    return "zeroth_order" if has_objective else "text"


def _has_loss(p: ParameterNode, finite: bool) -> bool:
    """True when `p` has feedback and every record carries a loss (finite, if asked)."""
    return bool(p.feedback) and all(r.feedback.loss is not None and (r.loss_is_finite or not finite)
                                    for r in p.feedback)


def _through_failed_solve(p: ParameterNode) -> bool:
    """True when every feedback record of `p` reached it through a failed solve (an
    exception node carrying a `SolveError`): no number is guessed from such feedback."""
    def failed(record: Any) -> bool:
        return any(getattr(n, "is_error", False) and isinstance(getattr(n.raw, "exception", None), SolveError)
                   for n in record.graph.nodes)

    return bool(p.feedback) and all(failed(r) for r in p.feedback)


class Optimizer:
    """Dispatches parameters by kind and path to solvers, PyTorch style.

    `params`: parameters, or dicts `{"params": [...], **options}` (param groups, as in torch).
    `llm`: any callable `llm(messages, **kwargs) -> str` or a tracekit backend.
    `numeric`: "sgd" | "adam" | "adamw" | "lion" or an optimizer object for tensors.
    `objective`: a callable returning a loss, used by the Bayesian search (Python numbers,
    categoricals) and SPSA (tensors without a gradient path); see `route_of`.
    `constraints`: `tk.Ineq(g)` / `tk.Eq(h)`; `g` and `h` get the parameter values in
    the order given here. Tensor parameters see them through an augmented-Lagrangian term
    added to a tensor loss in `backward`; other parameters get the violated constraints as
    text feedback in `step`. `report.max_violation` tracks feasibility; multipliers are
    updated every `constraint_update_every` steps, with penalty `constraint_rho`.
    `**options`: read by the routes' solvers (names in `tracekit.options`); unknown names,
    an unknown `numeric`, a bad `lr`, empty or repeated parameters raise
    `tk.InvalidOptionError` here, as torch.optim does.
    """

    def __init__(self, params: Iterable[Any], llm: Any = None, numeric: Any = "adam",
                 lr: float = 1e-2, constraints: list | None = None, objective: Any = None,
                 constraint_update_every: int = 25, constraint_rho: float = 10.0,
                 history_size: int | None = HISTORY, **options: Any) -> None:
        # every option is checked here, as torch.optim does, not at the first step
        check_options({"numeric": numeric, "lr": lr, **options})
        self.defaults: dict[str, Any] = {"numeric": numeric, "lr": lr, **options}
        self.param_groups: list[dict[str, Any]] = []
        for group in _as_groups(params):
            self.add_param_group(group)
        self.llm = llm
        self.objective = objective
        self.constraints = list(constraints or [])
        self._penalty = _make_penalty(self.constraints, constraint_rho) if self.constraints else None
        # Multipliers move after the inner problem has had a few steps (method of
        # multipliers); updating them every step with a first-order optimizer overshoots.
        self.constraint_update_every = max(1, int(constraint_update_every))
        self._steps = 0
        self._solvers: dict[tuple[int, str], Any] = {}
        self.history: deque[StepReport] = deque(maxlen=HISTORY)  # the last reports (history_size)
        self.history_size = history_size  # checked by the property's setter

    # --- parameters ------------------------------------------------------------------
    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add `{"params": [...], **options}`; its options override the defaults (torch style).
        Refuses unknown options, bad values and parameters already in a group."""
        where = f"in param group {len(self.param_groups)}"
        if not isinstance(group, dict) or "params" not in group:
            raise InvalidOptionError(f"a param group must be a dict with a 'params' list, got "
                                     f"{group!r:.80} {where}")
        options = {k: v for k, v in group.items() if k != "params"}
        check_options(options, where)
        seen = {id(p): f"in param group {i}" for i, g in enumerate(self.param_groups)
                for p in g["params"]}
        params = check_params(group["params"], where, seen)
        self.param_groups.append({**self.defaults, **options, "params": params})
        self._assign_names()

    @property
    def history_size(self) -> int | None:
        """How many step reports `history` keeps (default `HISTORY`, 100; None: all, which
        grows by about 1 KB per parameter per step once the reports are read)."""
        return self.history.maxlen

    @history_size.setter
    def history_size(self, size: int | None) -> None:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ValueError(f"history_size must be an int >= 0 or None, got {size!r}")
        self.history = deque(self.history, maxlen=size)

    @property
    def params(self) -> list[ParameterNode]:
        return [p for g in self.param_groups for p in g["params"]]

    def _assign_names(self) -> None:
        """Unique names for the LLM and the report: the user's name, suffixed on clashes."""
        self.names: dict[int, str] = {}
        used: set[str] = set()
        for p in self.params:
            self.names[id(p)] = unique_name(p.name, used)

    # --- the PyTorch-style loop -----------------------------------------------------------
    def zero_feedback(self) -> None:
        """Forget feedback and gradients from earlier backward passes."""
        for p in self.params:
            p.feedback.clear()
            if p.is_tensor:
                p.raw.grad = None

    zero_grad = zero_feedback

    def backward(self, output: Node, feedback: Any, retain_graph: bool = False) -> Any:
        """Attach feedback on `output` to this optimizer's parameters (see tk.backward).

        With `constraints=`, a tensor loss gets the augmented-Lagrangian term added, so
        tensor parameters are pushed towards feasibility by their gradients.
        """
        if self._penalty is not None:
            fb = as_feedback(feedback)
            if _is_tensor(fb.loss) and fb.loss.requires_grad:
                feedback = Feedback(loss=fb.loss + self._penalty.term(*self._values()), text=fb.text)
        return backward(output, feedback, params=self.params, retain_graph=retain_graph)

    def _values(self) -> list[Any]:
        """Parameter values in optimizer order: the arguments of constraint functions."""
        return [p.raw for p in self.params]

    def _constraint_feedback(self) -> None:
        """State violated constraints as text feedback to the non-tensor parameters."""
        import torch

        with torch.no_grad():
            lines = self._penalty.describe(*self._values())  # type: ignore[union-attr]  # step() checked
        if not lines:
            return
        text = "Constraints violated by the current values: " + "; ".join(lines)
        for p in self.params:
            if not p.is_tensor and p.trainable:
                backward(p, text, params=[p])

    def step(self) -> StepReport:
        """Update every parameter that received feedback with its route's solver."""
        start = time.perf_counter()
        if self._penalty is not None:
            self._constraint_feedback()
        plan, idle = self._plan()
        if any(route == "text" for _, route in plan):
            self._resolve_llm()
        usage_before = _llm_usage(self.llm)
        parts: list[Any] = []  # ParamChange rows and GroupRows (built when read)
        # a capped objective (a Trainer's under max_metric_calls) is shared fairly among the
        # routes that compare candidates with it; a route leaves its unused part to the next
        comparing = [key for key in plan if key[1] in COMPARING_ROUTES] \
            if callable(getattr(self.objective, "share", None)) else []
        for (group_index, route), params in plan.items():
            group = self.param_groups[group_index]
            objective = self.objective
            if (group_index, route) in comparing:
                objective = self.objective.share(len(comparing) - comparing.index((group_index, route)))
            rows = self._run_solver(group_index, group, route, params, objective)
            if isinstance(rows, GroupRows):
                parts.append(rows)
            else:
                parts.extend(rows)
        for p in idle:
            preview = _Preview(p.raw)
            parts.append(ParamChange(self.names[id(p)], p.kind, "-", preview, preview, False,
                                     "no feedback reached it"))
        usage = _llm_usage(self.llm)
        report = StepReport(parts, seconds=time.perf_counter() - start,
                            **{k: usage[k] - usage_before[k] for k in usage})
        self._steps += 1
        if self._penalty is not None:
            import torch

            with torch.no_grad():
                if self._steps % self.constraint_update_every == 0:
                    self._penalty.update(*self._values())  # multipliers and adaptive penalty
                report.max_violation = float(self._penalty.violation(*self._values()))
        self.history.append(report)
        return report

    def _plan(self) -> tuple[dict[tuple[int, str], list[ParameterNode]], list[ParameterNode]]:
        """Group parameters with feedback by (param group, route), and list those without
        (the report says no feedback reached them); fail before any update when a route has
        no solver.

        A group whose parameters are all trainable numeric tensors with a gradient goes to
        the gradient route whole, checked in one pass (the common case of a torch model);
        other groups are routed parameter by parameter (`route_of`)."""
        plan: dict[tuple[int, str], list[ParameterNode]] = {}
        idle: list[ParameterNode] = []
        has_objective = self.objective is not None
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            try:  # a number has no .grad: AttributeError, and the careful path below
                if params and all(p.trainable and p.kind == "numeric" and p.raw.grad is not None
                                  for p in params):
                    plan[(gi, "gradient")] = params
                    continue
            except AttributeError:
                pass
            for p in params:
                if not p.feedback and not (p.is_tensor and p.raw.grad is not None):
                    idle.append(p)
                    continue
                if not p.trainable:
                    continue
                route = route_of(p, has_objective)
                if route == "text" and self._searching(gi, p):
                    route = "bracket"  # a search it started goes on, asking "larger or smaller?"
                plan.setdefault((gi, route), []).append(p)
        missing = {route: [self.names[id(p)] for p in ps] for (_, route), ps in plan.items()
                   if solver_factory(route) is None}
        if missing:
            lines = "; ".join(f"{route}: {names}" for route, names in missing.items())
            raise MissingSolverError(
                f"no solver is registered for these parameters ({lines}). Register one with "
                f"tk.register_solver(route, factory), or install the optional solver package "
                f"for that route. Nothing was changed."
            )
        return plan, idle

    def _searching(self, group_index: int, p: ParameterNode) -> bool:
        """True when the bracket route of this group has a search going for number `p`."""
        solver = self._solvers.get((group_index, "bracket"))
        return (solver is not None and p.kind == "numeric" and not p.is_tensor
                and solver.searching(self.names[id(p)]))

    def _resolve_llm(self) -> None:
        """Make `self.llm` a tracekit backend (the default one when None) so that every
        call is cached and counted, and the report can show its usage."""
        from tracekit.llm import as_backend

        self.llm = as_backend(self.llm)

    def _solver(self, group_index: int, group: dict[str, Any], route: str) -> Any:
        key = (group_index, route)
        if key not in self._solvers:
            options = {k: v for k, v in group.items() if k != "params"}
            factory = cast(SolverFactory, solver_factory(route))  # the plan has known routes only
            self._solvers[key] = factory(group["params"], llm=self.llm, **options)
        return self._solvers[key]

    def _run_solver(self, group_index: int, group: dict[str, Any], route: str,
                    params: list[ParameterNode], objective: Any) -> list[ParamChange] | GroupRows:
        """Run one solver on its parameters. A failing solver changes nothing: its parameters
        are rolled back; an expected failure (`seam.expected_failure`) becomes the reason in
        the report, any other exception (a bug: TypeError, AttributeError, ...) propagates.

        Values are saved for the rollback except on the gradient route, whose solver
        updates tensors in place after checking them (a copy would cost as much as the step)."""
        context = StepContext(self.names, llm=self.llm, objective=objective,
                              constraints=self.constraints,
                              options={k: v for k, v in group.items() if k != "params"})
        old = Snapshot(params)
        saved = None if route == "gradient" else _save_values(params)
        try:
            solver = self._solver(group_index, group, route)
            updates = solver.step(params, context)
        except Exception as exc:  # a failing solver changes nothing
            if saved is not None:
                _restore_values(saved)
            if not expected_failure(exc):
                exc.add_note(f"raised by the {route!r} solver of tk.Optimizer: not an expected "
                             f"solver failure, so it is not hidden in the step report; its "
                             f"parameters were rolled back")
                raise
            reason = f"solver {route} failed: {describe(exc)}"
            return [ParamChange(self.names[id(p)], p.kind, route, old[id(p)], old[id(p)], False, reason)
                    for p in params]
        return self._apply(params, updates, old, getattr(solver, "name", route))

    def _apply(self, params: list[ParameterNode], updates: list[ParamUpdate] | GroupUpdate,
               old: Snapshot, solver_name: str) -> list[ParamChange] | GroupRows:
        """Validate every proposal first, then write them; refused ones keep the old value.

        This is where tensors updated in place are exempted from validation: a solver that
        returns a `GroupUpdate` (the gradient route) has skipped non-finite gradients and
        projected onto the bounds itself, so its tensors are reported, not re-checked, and
        their rows are built only when the report is read."""
        if isinstance(updates, GroupUpdate):
            return GroupRows(updates, self.names, old)
        by_name = {u.name: u for u in updates}
        validated: dict[int, Any] = {}
        reasons: dict[int, str] = {}
        for p in params:
            u = by_name.get(self.names[id(p)])
            if u is None or u.new_value is UNCHANGED:
                continue
            try:
                validated[id(p)] = p.validate(u.new_value)
            except Exception as exc:
                reasons[id(p)] = f"proposal refused: {message_of(exc)}"
        changes = []
        for p in params:
            name = self.names[id(p)]
            u = by_name.get(name)
            changed = False
            if id(p) in validated:
                p.write(validated[id(p)])
                changed = True
            elif u is not None and u.applied_in_place:
                changed = True
            reason = reasons.get(id(p)) or (u.reason if u is not None else "solver proposed nothing")
            changes.append(ParamChange(name, p.kind, u.solver if u else solver_name, old[id(p)],
                                       _Preview(p.raw), changed, reason,
                                       dict(u.info) if u else {}))
        return changes

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Solver states keyed by group and route: plain dicts holding tensors, arrays and
        JSON values (`tracekit.storage` writes them: tensors to safetensors)."""
        state: dict[str, Any] = {
            "solvers": {f"{gi}:{route}": s.state_dict() for (gi, route), s in self._solvers.items()},
            "steps": self._steps,
        }
        if self._penalty is not None:
            state["constraints"] = self._penalty.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load `state_dict()`'s output (also the first format, tensors as lists). All or
        nothing: a state that does not fit raises StateDictError and the solvers keep theirs."""
        from tracekit.errors import StateDictError

        if not isinstance(state, dict) or not isinstance(state.get("solvers", {}), dict):
            raise StateDictError("optimizer state must be a dict with a 'solvers' dict (from Optimizer.state_dict())")
        before = self.state_dict()
        solvers_before = dict(self._solvers)
        steps_before = self._steps
        try:
            self._load_state(state)
        except Exception as exc:
            self._solvers = solvers_before
            self._steps = steps_before
            try:
                self._load_state(before)
            except Exception:  # the previous state always fits; never hide the first error
                pass
            raise StateDictError(f"optimizer state does not fit this optimizer: {type(exc).__name__}: {exc}") \
                from None

    def _load_state(self, state: dict[str, Any]) -> None:
        steps = state.get("steps", self._steps)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"'steps' must be a non-negative int, got {steps!r}")
        if self._penalty is not None and "constraints" in state:
            import torch

            pen = dict(state["constraints"])
            pen["multipliers"] = [None if m is None else torch.as_tensor(m, dtype=torch.float64)
                                  for m in pen["multipliers"]]
            self._penalty.load_state_dict(pen)
        for key, solver_state in state.get("solvers", {}).items():
            gi, route = key.split(":", 1)
            if not gi.isdigit() or int(gi) >= len(self.param_groups):
                raise ValueError(f"solver key {key!r} names a param group this optimizer does not have")
            solver = self._solver(int(gi), self.param_groups[int(gi)], route)
            solver.load_state_dict(solver_state)
        self._steps = steps


def _save_values(params: list[ParameterNode]) -> list[tuple[ParameterNode, Any]]:
    """Each parameter's value (tensors copied), for `_restore_values` after a failed solver."""
    return [(p, p.raw.detach().clone() if p.is_tensor else p.raw) for p in params]


def _restore_values(saved: list[tuple[ParameterNode, Any]]) -> None:
    """Put back what `_save_values` saved where a solver changed it."""
    for p, value in saved:
        if p.is_tensor or p.raw is not value:
            p.write(value)  # the value it held before the step


def _make_penalty(constraints: list, rho: float) -> Any:
    """A fixed-penalty augmented Lagrangian: with stochastic first-order steps the
    violation does not shrink monotonically, so growing the penalty on that signal would
    blow it up; the multipliers do the work."""
    from tracekit.problems import ALPenalty

    return ALPenalty(constraints, rho=rho, growth=1.0)


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    if isinstance(params, (ParameterNode, dict)):
        params = [params]
    elif isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise InvalidOptionError(f"params must be a list of tk.param(...) nodes or of param-group "
                                 f"dicts (e.g. model.parameters()), got {type(params).__name__}")
    items = list(params)
    if not items:
        raise InvalidOptionError("params: tk.Optimizer got an empty parameter list; pass "
                                 "model.parameters() or a list of tk.param(...) nodes (an exhausted "
                                 "generator is empty too)")
    if items and all(isinstance(x, dict) for x in items):
        return items
    if any(isinstance(x, dict) for x in items):
        raise TypeError("params: pass either parameters or param-group dicts to the Optimizer, "
                        "not a mix")
    return [{"params": items}]


def _llm_usage(llm: Any) -> dict[str, Any]:
    """A backend's usage totals (`tracekit.llm.Usage`) as step-report fields; {} for a plain
    callable, which has no accounting (the report then shows zeros)."""
    accounting = getattr(llm, "accounting", None)
    return {} if accounting is None else accounting.totals().report_fields()
