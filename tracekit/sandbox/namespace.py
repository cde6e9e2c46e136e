"""Which globals proposed code sees in the sandbox, decided from the original function.

Proposed code gets:
- every module the original's module imported (`re`, `json`, `torch`, `tk`...): modules
  are libraries, not secrets, and the worker imports them itself;
- the globals and closure variables the original function itself uses, when they are
  plain data (copied) or functions and classes (library ones imported by name in the
  worker, the user's own ones defined there from their source).

Everything else in the module (other constants, credentials, objects) never crosses, so a
proposal cannot read a global that the code it replaces did not use.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

from tracekit.sandbox import wire


@dataclass
class Namespace:
    """The plan for one function's globals in the worker (all plain data)."""

    modules: dict[str, str] = field(default_factory=dict)          # alias -> module name
    refs: dict[str, list[str]] = field(default_factory=dict)       # alias -> [module, qualname]
    helpers: dict[str, str] = field(default_factory=dict)          # alias -> source
    values: dict[str, Any] = field(default_factory=dict)           # alias -> plain data

    @functools.cached_property
    def preload(self) -> set[str]:
        """Top-level packages the worker must load before it locks itself down."""
        names = set(self.modules.values()) | {module for module, _ in self.refs.values()}
        return {n for n in names if n != "builtins"}

    @functools.cached_property
    def read_paths(self) -> set[str]:
        """Where those packages' files lie (granted read access in the worker)."""
        paths = set()
        for name in self.preload:
            top = sys.modules.get(name.split(".")[0])
            if top is None:
                continue
            for entry in getattr(top, "__path__", None) or [getattr(top, "__file__", None)]:
                if entry:
                    paths.add(os.path.abspath(entry))
        return paths


def plan(fn: Any) -> Namespace:
    """The namespace plan for proposals replacing `fn`."""
    ns = Namespace()
    fn = inspect.unwrap(fn)
    module_name = getattr(fn, "__module__", None)
    g = getattr(fn, "__globals__", {}) or {}
    for alias, value in g.items():
        if isinstance(value, types.ModuleType) and not alias.startswith("__"):
            ns.modules[alias] = value.__name__
    _add_used(ns, fn, module_name, depth=0)
    return ns


def _add_used(ns: Namespace, fn: Any, module_name: str | None, depth: int) -> None:
    """Add the globals and closure variables `fn` uses (and, through the user's own
    helpers, the ones they use, a few levels deep)."""
    try:
        closure = inspect.getclosurevars(fn)
        used = {**closure.globals, **closure.nonlocals}
    except (TypeError, ValueError):
        return
    for alias, value in used.items():
        if alias not in ns.values and alias not in ns.helpers and alias not in ns.refs:
            _add(ns, alias, value, module_name, depth)


def _add(ns: Namespace, alias: str, value: Any, module_name: str | None, depth: int = 0) -> None:
    if isinstance(value, types.ModuleType):
        ns.modules[alias] = value.__name__
        return
    if wire.is_plain(value):
        ns.values[alias] = value
        return
    ref = _importable(value)
    if ref is not None and ref[0] != module_name:
        ns.refs[alias] = list(ref)
        return
    plain = inspect.unwrap(value) if callable(value) else value  # a bundled helper: its function
    if inspect.isfunction(plain) or inspect.isclass(plain):
        try:
            ns.helpers[alias] = _own_source(plain, alias)
        except (OSError, TypeError, SyntaxError):
            pass
        else:
            if depth < 4 and inspect.isfunction(plain):
                _add_used(ns, plain, module_name, depth + 1)
            return
    # anything else stays out: using it in the sandbox is a NameError there


def _importable(value: Any) -> tuple[str, str] | None:
    """(module, qualname) when `value` is reachable again by importing it by name."""
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module == "__main__" or module not in sys.modules:
        return None
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return (module, qualname) if obj is value else None


def _own_source(value: Any, alias: str) -> str:
    """The user's own helper (function or class) as source, bound to `alias`."""
    src = textwrap.dedent(inspect.getsource(value))
    lines = [line for line in src.splitlines() if not line.lstrip().startswith("@")]
    src = "\n".join(lines)
    name = value.__name__
    return src if name == alias else f"{src}\n{alias} = {name}\n"
