"""Source code as a parameter: extracting a function's source, and checking and defining
new versions of it before they are ever run.

The checks are `tracekit.kinds.accept_code` (documented in docs/code-safety.md): the value
must parse, hold exactly one function definition and nothing else (so no statement runs at
definition time), define the same function name with the same parameters, keep constant
defaults, introduce no risky name the original does not use, and compile. A version that
passes is then defined in the sandbox worker (`tracekit.sandbox`), where it also runs; only
with `sandbox=False` (unsafe, opt-out) is it defined in this process.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

from tracekit import kinds
from tracekit.errors import (
    InvalidValueError,
    SandboxUnavailableError,
    UnsafeCodeWarning,
    describe,
    message_of,
)
from tracekit.sandbox.limits import Limits
from tracekit.sandbox.limits import defaults as sandbox_defaults

_LAZY_ANNOTATIONS = __import__("__future__").annotations.compiler_flag
_warned_unsafe = False

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
    """The original function and the defined versions of accepted new sources: sandboxed
    callables (`tracekit.sandbox.client.SandboxedFunction`) by default, in-process
    functions with `sandbox=False`."""

    def __init__(self, fn: Callable, original_source: str, sandbox: bool | Limits = True,
                 is_method: bool = False) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.original_source = original_source
        self.sandbox = sandbox
        self.is_method = is_method
        self._compiled: dict[str, Callable] = {}
        self._counter = 0
        self._namespace: Any = None

    def validate(self, source: Any) -> str:
        """Check (`tracekit.kinds.accept_code`, against the original) and define a proposed
        source (in the sandbox worker by default); raise InvalidValueError on any problem."""
        if isinstance(source, str) and (source == self.original_source or source in self._compiled):
            return source
        kinds.accept_code(source, self.original_source, f"code for {self.name!r}")
        text = textwrap.dedent(source)
        self._compiled[source] = self._sandboxed(text) if self.sandbox is not False else self._compile(text)
        return source

    def _sandboxed(self, source: str) -> Callable:
        """`source` as a sandboxed function; refused when no sandbox can be set up."""
        from tracekit.sandbox import namespace
        from tracekit.sandbox.client import SandboxedFunction

        where = f"code for {self.name!r}"  # it compiles: `accept_code` checked that
        if self._namespace is None:
            self._namespace = namespace.plan(self.fn)
        limits = self.sandbox if isinstance(self.sandbox, Limits) else sandbox_defaults()
        fn = SandboxedFunction(self.name, source, self._namespace, limits, self.is_method)
        try:
            fn.ready()
        except SandboxUnavailableError as exc:
            raise InvalidValueError(
                f"{where} is refused: code that did not come from your own file runs only in a "
                f"sandbox, and none can be set up here: {exc.message}. To run it in this process "
                f"anyway (unsafe), use tk.bundle(trainable=True, sandbox=False); see "
                f"docs/code-safety.md") from None
        return fn

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
        _warn_unsafe(self.name)
        try:
            code = compile(tree, filename, "exec", flags=_LAZY_ANNOTATIONS, dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            raise InvalidValueError(f"{where} does not compile: {message_of(exc)}") from None
        # Register the text so tracebacks and exception nodes can show the failing line.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = self._globals()
        local_ns: dict[str, Any] = {}
        try:
            exec(code, namespace, local_ns)  # defines the function only (checked above)
        except BaseException as exc:  # e.g. a default value that raises
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


def _warn_unsafe(name: str) -> None:
    """Warn once per process that proposed code runs unsandboxed (`sandbox=False`)."""
    global _warned_unsafe
    if _warned_unsafe:
        return
    _warned_unsafe = True
    warnings.warn(f"code proposed for {name!r} runs in this process without a sandbox "
                  f"(tk.bundle(..., sandbox=False)): it can read and write your files, use the "
                  f"network and see your secrets; see docs/code-safety.md",
                  UnsafeCodeWarning, stacklevel=3)
