"""The seam between the tracing core and the solvers: routes and solver factories.

Each parameter is routed by its kind and path (text/code/categorical -> "text",
tensor with a gradient -> "gradient", number without gradient -> "zeroth_order" when an
objective is given, else "text"). A factory builds one solver per route per Optimizer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

ROUTES = ("text", "gradient", "zeroth_order")


class Solver(Protocol):
    """What the Optimizer needs from a solver."""

    name: str

    def step(self, params: list, context: Any) -> list:
        """Return one ParamUpdate per parameter (proposals are validated by the Optimizer)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


SolverFactory = Callable[..., Solver]

_factories: dict[str, SolverFactory] = {}
# Built-in solvers, imported on first need: route -> "module:attribute".
_BUILTIN: dict[str, str] = {
    "text": "tracekit.text_solver:TextSolver",
    "gradient": "tracekit.numeric:GradientSolver",
    "zeroth_order": "tracekit.numeric:ZerothOrderSolver",
}


def register_solver(route: str, factory: SolverFactory) -> None:
    """Make `factory(params, **options)` the solver for a route ("text", "gradient", ...)."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes are {ROUTES}")
    if not callable(factory):
        raise TypeError("a solver factory must be callable: factory(params, **options) -> solver")
    _factories[route] = factory


def register_builtin(route: str, target: str) -> None:
    """Declare a built-in solver by import path, loaded only when a step needs it."""
    _BUILTIN[route] = target


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
