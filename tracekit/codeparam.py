"""Source code as a parameter: extracting a function's source, and checking and compiling
new versions of it before they are ever run.

The checks are `tracekit.kinds.accept_code` (documented in docs/code-safety.md): the value
must parse, hold exactly one function definition and nothing else (so no statement runs at
definition time), define the same function name with the same parameters, introduce no
risky name the original does not use, and compile. These checks stop typos, renamed or
re-shaped functions and top-level side effects; they do not sandbox what the function body
does when called.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from collections.abc import Callable
from typing import Any

from tracekit import kinds
from tracekit.errors import InvalidValueError, describe, message_of

_PLACEHOLDER = "    ...  # source unavailable (defined in a REPL or with -c)"


def source_of(fn: Callable) -> str:
    """The function's own source (decorators stripped, dedented), or a header-only
    placeholder when `inspect.getsource` cannot find it."""
    try:
        raw = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(raw)
        fdef = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        lines = raw.splitlines()
        return "\n".join(lines[fdef.lineno - 1: fdef.end_lineno])
    except (OSError, TypeError, SyntaxError, StopIteration, IndentationError):
        try:
            signature = str(inspect.signature(fn))
        except (TypeError, ValueError):
            signature = "(*args, **kwargs)"
        prefix = "async def" if inspect.iscoroutinefunction(fn) else "def"
        return f"{prefix} {fn.__name__}{signature}:\n{_PLACEHOLDER}"


class CodeVersions:
    """The original function and the compiled versions of accepted new sources."""

    def __init__(self, fn: Callable, original_source: str) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.original_source = original_source
        self._compiled: dict[str, Callable] = {}
        self._counter = 0

    def validate(self, source: Any) -> str:
        """Check (`tracekit.kinds.accept_code`, against the original) and compile a proposed
        source in the original's globals; raise InvalidValueError on any problem."""
        if isinstance(source, str) and (source == self.original_source or source in self._compiled):
            return source
        kinds.accept_code(source, self.original_source, f"code for {self.name!r}")
        self._compiled[source] = self._compile(textwrap.dedent(source))
        return source

    def function_for(self, source: str) -> Callable:
        if source == self.original_source:
            return self.fn
        fn = self._compiled.get(source)
        if fn is None:
            self.validate(source)
            fn = self._compiled[source]
        return fn

    def _compile(self, source: str) -> Callable:
        where = f"code for {self.name!r}"
        tree = ast.parse(source)  # checked by `validate` before
        self._counter += 1
        filename = f"<tracekit:{self.name}:v{self._counter}>"
        try:
            code = compile(tree, filename, "exec")
        except (SyntaxError, ValueError) as exc:
            raise InvalidValueError(f"{where} does not compile: {message_of(exc)}") from None
        # Register the text so tracebacks and exception nodes can show the failing line.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = self._globals()
        local_ns: dict[str, Any] = {}
        try:
            exec(code, namespace, local_ns)  # defines the function only (checked above)
        except Exception as exc:  # e.g. a default value that raises
            raise InvalidValueError(f"{where} failed while defining the function: {describe(exc)}") from None
        return local_ns[self.name]

    def _globals(self) -> dict[str, Any]:
        """The original's globals; closure variables are added to a copy when present."""
        base = getattr(self.fn, "__globals__", {})
        try:
            nonlocals = inspect.getclosurevars(self.fn).nonlocals
        except (TypeError, ValueError):
            nonlocals = {}
        if not nonlocals:
            return base
        merged = dict(base)
        merged.update(nonlocals)
        return merged
