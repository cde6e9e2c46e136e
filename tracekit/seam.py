"""The seam between `tk.Optimizer` and its solvers: what a solver receives and returns.

A solver gets its parameters and a `StepContext` and returns one `ParamUpdate` per
parameter (a proposal, `UNCHANGED`, or a tensor it updated in place), or one
`GroupUpdate` for tensors it updated in place; the optimizer validates and applies. Each
parameter is routed by its kind and path (`tracekit.optimizer.route_of`): text / code ->
"text"; a tensor with a gradient -> "gradient", one without -> "zeroth_order" (SPSA) when
an objective is given, else "text"; a Python number or a categorical -> "bayesian"
(Optuna) when an objective is given or its feedback carries a numeric loss, else "text".
A factory builds one solver per route per Optimizer (`register_solver` replaces a
built-in one).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracekit.errors import TracekitError
from tracekit.feedback import FeedbackRecord
from tracekit.nodes import ParameterNode

UNCHANGED = object()  # ParamUpdate.new_value when the solver proposes nothing


@dataclass
class ParamUpdate:
    """What a solver did (or proposes) for one parameter."""

    name: str
    solver: str
    new_value: Any = UNCHANGED  # a proposal to validate and apply; UNCHANGED if none
    applied_in_place: bool = False  # True when the solver already updated a tensor in place
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupUpdate:
    """What a solver did to many tensors at once, updating them in place: the cheap form of
    a list of `ParamUpdate` for the gradient route (no object per parameter per step).

    Returning it says the solver has already guarded what the optimizer would otherwise
    check per parameter: it skipped non-finite gradients and projected every updated tensor
    onto its bounds, so `tk.Optimizer` does not validate these tensors again. `applied[i]`:
    `params[i]` was updated in place. `details(i)` -> (reason, info) for `params[i]`,
    called only when the step report's rows are read.
    """

    solver: str
    params: list
    applied: list[bool]
    details: Callable[[int], tuple[str, dict[str, Any]]]


def nonfinite_loss(p: ParameterNode) -> bool:
    """Whether a loss that reached this parameter in the last backward was NaN or inf
    (its solver then skips it and keeps the value)."""
    return any(not r.loss_is_finite for r in p.feedback)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... if taken; the result is added to `taken`. How
    parameters and traced values get the unique names the LLM and the report use."""
    name, k = base, 2
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


class PromptNames:
    """Unique names for the nodes of one prompt, from their `Node.stable_name`: a name is
    kept (`unique_name`), and for `prefix#` the prefix is numbered from 1 within the
    prompt (`const1`, `classify_2`), so consecutive steps over graphs of the same shape
    get the same names. Linear in the number of nodes (the last number per prefix is kept)."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken: set[str] = set(taken)
        self._last: dict[str, int] = {}

    def new(self, stable_name: str) -> str:
        """A name not given yet in this prompt for a node whose stable name is given."""
        if not stable_name.endswith("#"):
            return unique_name(stable_name, self.taken)
        prefix = stable_name[:-1]
        k = self._last.get(prefix, 0) + 1
        while f"{prefix}{k}" in self.taken:
            k += 1
        self._last[prefix] = k
        self.taken.add(f"{prefix}{k}")
        return f"{prefix}{k}"


def takes_argument(fn: Callable[..., Any]) -> bool:
    """Whether `fn` needs a positional argument: how an objective is called, as
    `objective(values)` (`{name: candidate value}`) or as `objective()` with the candidate
    values held by the parameters. Callables without a readable signature count as `fn()`."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in parameters)


def values_objective(objective: Callable[..., Any], params: dict[str, ParameterNode], *,
                     lock: Any = None, no_grad: bool = False) -> Callable[[dict[str, Any]], float]:
    """`loss(values)` for a solver that compares candidates (`values` = {name: value}): the
    user's objective called as `objective(values)` when it takes an argument, else as
    `objective()` with the named parameters holding the values (restored after, also on
    errors), under `lock` when given (candidates share the parameters) and without an
    autograd graph when `no_grad` (and torch is in use). The one place this is decided."""
    import contextlib
    import sys

    from tracekit.feedback import loss_to_float

    if takes_argument(objective):
        return lambda values: loss_to_float(objective(dict(values)))

    def loss(values: dict[str, Any]) -> float:
        with contextlib.ExitStack() as held:
            if lock is not None:
                held.enter_context(lock)
            for name, value in values.items():
                held.enter_context(params[name].trial(value))
            torch = sys.modules.get("torch")
            if no_grad and torch is not None:
                held.enter_context(torch.no_grad())
            return loss_to_float(objective())

    return loss


def trials_left(objective: Any) -> int | None:
    """How many fresh evaluations `objective` may still make this step (None: no cap). A
    Trainer's objective under `max_metric_calls` is capped (`tracekit.training.objective`);
    a solver asks no more trials than this, and stops at `TrialsSpent`."""
    left = getattr(objective, "trials_left", None)
    return left if isinstance(left, int) else None


@dataclass
class StepContext:
    """What a solver gets besides its parameters."""

    names: dict[int, str]
    llm: Any = None
    objective: Any = None
    constraints: list = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def name_of(self, p: ParameterNode) -> str:
        return self.names[id(p)]

    def records(self, params: Iterable[ParameterNode]) -> list[FeedbackRecord]:
        """The feedback records of these parameters, each backward pass once."""
        seen: set[int] = set()
        out: list[FeedbackRecord] = []
        for p in params:
            for r in p.feedback:
                if id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
        return out


ROUTES = ("text", "gradient", "zeroth_order", "bracket", "bayesian", "demos")

# What a solver may fail with as part of its job: `tk.Optimizer` rolls its parameters back
# and says why in the step report. tracekit's typed errors (LLM errors, refused values and
# feedback included), bad values met by the solvers' own checks (their errors are
# ValueErrors: a reply that does not parse, a bad setting), numerical trouble, torch and
# runtime failures (RuntimeError: device, shapes, out of memory), and the environment
# (OSError: files, connections, time-outs; MemoryError).
EXPECTED_SOLVER_FAILURES: tuple[type[Exception], ...] = (
    TracekitError, ValueError, ArithmeticError, RuntimeError, OSError, MemoryError)
# Programming errors among those bases: they propagate like any other unexpected error
# (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, ...).
_PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (NotImplementedError, RecursionError)


def expected_failure(exc: BaseException) -> bool:
    """Whether a solver's exception is an expected failure (reported; the step goes on)
    rather than a bug (propagated after rollback, so that it is seen and fixed).

    The one place this is decided; see `EXPECTED_SOLVER_FAILURES`."""
    if isinstance(exc, TracekitError):
        return True  # typed errors, even those that are also TypeErrors (FeedbackError)
    return isinstance(exc, EXPECTED_SOLVER_FAILURES) and not isinstance(exc, _PROGRAMMING_ERRORS)


class Solver(Protocol):
    """What the Optimizer needs from a solver."""

    name: str

    def step(self, params: list, context: Any) -> list:
        """Return one ParamUpdate per parameter (proposals are validated by the Optimizer),
        or a GroupUpdate for tensors updated in place."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


SolverFactory = Callable[..., Solver]

_factories: dict[str, SolverFactory] = {}
_options: dict[str, tuple[str, ...]] = {}  # route -> option names a registered solver reads
# Built-in solvers, imported on first need: route -> "module:attribute".
_BUILTIN: dict[str, str] = {
    "text": "tracekit.routes.text:TextSolver",
    "gradient": "tracekit.routes.gradient:GradientSolver",
    "zeroth_order": "tracekit.routes.zeroth_order:ZerothOrderSolver",
    "bracket": "tracekit.routes.bracket:BracketSolver",
    "bayesian": "tracekit.routes.bayesian:BayesianSolver",
    "demos": "tracekit.routes.demos:DemoSolver",
}


def register_solver(route: str, factory: SolverFactory, options: Iterable[str] = ()) -> None:
    """Make `factory(params, **options)` the solver for a route ("text", "gradient", ...).

    `options`: names of extra options this solver reads, so that `tk.Optimizer` accepts
    them (it refuses option names no solver reads)."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes are {ROUTES}")
    if not callable(factory):
        raise TypeError("a solver factory must be callable: factory(params, **options) -> solver")
    if isinstance(options, str):
        raise TypeError(f"options must be a list of option names, got the string {options!r}")
    _factories[route] = factory
    _options[route] = tuple(options)


def registered_options() -> dict[str, tuple[str, ...]]:
    """Extra option names read by registered solvers, by route."""
    return dict(_options)


def solver_factory(route: str) -> SolverFactory | None:
    if route in _factories:
        return _factories[route]
    target = _BUILTIN.get(route)
    if target is None:
        return None
    module_name, attribute = target.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the solver module exists but is broken: say so, do not hide it
        return None
    _factories[route] = factory
    return factory
