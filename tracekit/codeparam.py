"""Source code as a parameter: extracting a function's source, and checking and compiling
new versions of it before they are ever run.

The checks (documented in docs/code-safety.md): the value must parse, hold exactly one
function definition and nothing else (so no statement runs at definition time), define
the same function name with the same parameters, and compile. These checks stop typos,
renamed or re-shaped functions and top-level side effects; they do not sandbox what the
function body does when called.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from collections.abc import Callable
from typing import Any

from tracekit.errors import InvalidValueError, describe

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


def _param_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


class CodeVersions:
    """The original function and the compiled versions of accepted new sources."""

    def __init__(self, fn: Callable, original_source: str) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.original_source = original_source
        self.is_async = inspect.iscoroutinefunction(fn)
        self._compiled: dict[str, Callable] = {}
        self._counter = 0
        try:
            original_tree = ast.parse(original_source)
            self.param_names = _param_names(original_tree.body[0].args)
        except (SyntaxError, IndexError, AttributeError):
            self.param_names = None

    def validate(self, source: Any) -> str:
        """Check and compile a proposed source; raise InvalidValueError on any problem."""
        if not isinstance(source, str) or not source.strip():
            raise InvalidValueError(f"code for {self.name!r} must be a non-empty string")
        if source == self.original_source or source in self._compiled:
            return source
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
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise InvalidValueError(f"{where} does not parse: {exc.msg} at line {exc.lineno}") from None
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        others = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if len(defs) != 1 or others:
            raise InvalidValueError(
                f"{where} must hold exactly one function definition and nothing else "
                f"(found {len(defs)} definitions and {len(others)} other statements)"
            )
        fdef = defs[0]
        if fdef.name != self.name:
            raise InvalidValueError(f"{where} defines {fdef.name!r}; it must define {self.name!r}")
        if isinstance(fdef, ast.AsyncFunctionDef) != self.is_async:
            raise InvalidValueError(f"{where} must {'' if self.is_async else 'not '}be an async function")
        if fdef.decorator_list:
            raise InvalidValueError(f"{where} must not have decorators")
        names = _param_names(fdef.args)
        if self.param_names is not None and names != self.param_names:
            raise InvalidValueError(
                f"{where} changes the signature: parameters {names} instead of {self.param_names}"
            )
        self._counter += 1
        filename = f"<tracekit:{self.name}:v{self._counter}>"
        try:
            code = compile(tree, filename, "exec")
        except (SyntaxError, ValueError) as exc:
            raise InvalidValueError(f"{where} does not compile: {exc}") from None
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
