"""Trace's `bundle(description, trainable=..., catch_execution_error=...,
allow_external_dependencies=...)` and `ExecutionError`, as a thin subclass of tk.bundle's
`BundledFunction`.

Trace raises when a bundled function fails; tracekit returns an `ExceptionNode`. With
`catch_execution_error=True` (Trace's default) the failure is recorded as tracekit does and
then raised as `ExecutionError(exception_node)`, so `except ExecutionError as e:
e.exception_node` works; with `catch_execution_error=False` the original exception
propagates, as in Trace.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from tracekit.bundled import BoundBundle, BundledFunction
from tracekit.errors import InvalidOptionError, TracekitError
from tracekit.module import Module
from tracekit.nodes import ExceptionNode, ParameterNode

_NAMED = re.compile(r"^\s*\[([^\]]+)\]\s*(.*)$", re.DOTALL)


class ExecutionError(TracekitError, RuntimeError):
    """A traced operation raised; `exception_node` is the `ExceptionNode` recording the
    failing call (its inputs are its parents, `.data` / `.error` say what failed)."""

    def __init__(self, exception_node: ExceptionNode) -> None:
        self.exception_node = exception_node
        super().__init__(f"{exception_node.name}: {exception_node.error}")


class TraceBundle(BundledFunction):
    """A bundled function that raises `ExecutionError` instead of returning an exception node
    (unless built with `catch_execution_error=False`, which lets the exception through), and
    has Trace's `parameter` attribute."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return TraceBoundBundle(self, instance)

    @property
    def parameter(self) -> ParameterNode | None:
        """The code parameter of a trainable function (Trace's `fun.parameter`); None otherwise."""
        return self.code_param_for(None)

    @property
    def info(self) -> dict[str, Any]:
        """Trace's `fun.info`: `source`, the code under the bundle decorator (decorators
        below it included), and `line_number`, the line of its first line in the file."""
        return _decorated_source(self.fn)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the function's code parameter (Trace's `fun.save`), as `tk.Module.save` does:
        a JSON manifest, no pickle."""
        return _FunctionState(self).save(path)

    def load(self, path: str | os.PathLike) -> None:
        """Load code saved by `save`; code that does not compile is refused (StateDictError)."""
        _FunctionState(self).load(path)

    def _call(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        return _raise_failure(super()._call(instance, args, kwargs))

    async def _acall(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        return _raise_failure(await super()._acall(instance, args, kwargs))


class _FunctionState(Module):
    """The state of one bundled function, saved and loaded like a model's."""

    def __init__(self, fn: BundledFunction) -> None:
        self.function = fn


class TraceBoundBundle(BoundBundle):
    """A `TraceBundle` method bound to an instance: `parameter` is that instance's code."""

    __slots__ = ()

    @property
    def parameter(self) -> ParameterNode | None:
        return self.bundle.code_param_for(self.instance)


def _decorated_source(fn: Callable) -> dict[str, Any]:
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return {"source": "", "line_number": None}
    text = textwrap.dedent("".join(lines))
    skip = 0
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    if tree is not None and tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        for decorator in tree.body[0].decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name == "bundle":
                skip = cast(int, decorator.end_lineno)  # the lines up to the end of the bundle decorator
    body = text.splitlines()[skip:]
    return {"source": "\n".join(body).rstrip("\n"), "line_number": start + skip}


def _raise_failure(result: Any) -> Any:
    if isinstance(result, ExceptionNode):
        raise ExecutionError(result)
    return result


def bundle(description: str | None = None, traceable_code: bool = False, _process_inputs: bool = True,
           trainable: bool = False, catch_execution_error: bool = True,
           allow_external_dependencies: bool = False, overwrite_python_recursion: bool = False,
           ) -> Callable[[Callable], TraceBundle]:
    """Trace's decorator factory: `@bundle()`, `@bundle("[name] what it does", trainable=True)`.

    A leading `[name]` in the description names the operation (Trace's convention).
    `allow_external_dependencies` and `overwrite_python_recursion` need nothing: parameters
    read inside a call become its inputs, and calls nested in a bundled call run untraced.
    `_process_inputs=False` is accepted, but the function still receives values (tracekit
    never hands nodes to a bundled function). `traceable_code=True` (expanding the inner
    graph) is refused with `InvalidOptionError`: tracekit records the outer call only.
    """
    if callable(description) and not isinstance(description, str):
        raise InvalidOptionError("write @bundle() with parentheses, as Trace requires "
                                 "(or use tk.bundle, which takes both forms)")
    if traceable_code:
        raise InvalidOptionError(
            "bundle(traceable_code=True) is not supported: tracekit records a bundled call as one "
            "operation; drop traceable_code, or bundle the inner functions you want to see")
    name = None
    if description is not None:
        match = _NAMED.match(description)
        if match:
            name, description = match.group(1), match.group(2) or None

    def decorate(fn: Callable) -> TraceBundle:
        return TraceBundle(fn, trainable=trainable, description=description,
                           catch_errors=catch_execution_error, name=name)

    return decorate
