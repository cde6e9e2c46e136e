"""`@tk.bundle`: make a Python function a traced operation (and, optionally, its code a parameter).

A top-level call of a bundled function records one MessageNode: its inputs, its output,
and the function's name, docstring and source. Calls made from inside another bundled
function run untraced (plain values in and out), so the graph shows the outer operation.
"""

from __future__ import annotations

import functools
import inspect
import linecache
from collections.abc import Callable
from typing import Any, cast, overload

from tracekit import arguments
from tracekit.codeparam import CodeVersions, source_of
from tracekit.context import _Discard, used_nodes
from tracekit.errors import SandboxError, message_of, type_name
from tracekit.nodes import (
    ExceptionNode,
    MessageNode,
    Node,
    ParameterNode,
    TracedError,
    _propagate_error,
)
from tracekit.sandbox.limits import Limits

_CODE_ATTR = "_tracekit_code_params"


class BundledFunction:
    """A function whose calls are recorded in the graph. See `bundle`."""

    def __init__(self, fn: Callable, trainable: bool = False, description: str | None = None,
                 catch_errors: bool = True, name: str | None = None,
                 sandbox: bool | Limits = True) -> None:
        if not callable(fn):
            raise TypeError(f"@tk.bundle needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self.doc = description or inspect.getdoc(fn) or ""
        self.trainable = trainable
        self.catch_errors = catch_errors
        self.sandbox = sandbox
        self.is_async = inspect.iscoroutinefunction(fn)
        self.is_method = False
        self._code_param: ParameterNode | None = None
        self._versions: CodeVersions | None = None
        self._signature = _safe_signature(fn)
        self._positional = [
            p.name for p in self._signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ] if self._signature else []
        var = [p.name for p in self._signature.parameters.values() if p.kind == p.VAR_POSITIONAL] \
            if self._signature else []
        self._varargs = var[0] if var else "args"
        self._bound_positional = self._positional[1:]

    # --- descriptor protocol: bundled methods -------------------------------------
    def __set_name__(self, owner: type, attr: str) -> None:
        self.is_method = True

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> BundledFunction: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> BoundBundle: ...
    def __get__(self, instance: Any, owner: type | None = None) -> BundledFunction | BoundBundle:
        if instance is None:
            return self
        return BoundBundle(self, instance)

    # --- source and code parameter ---------------------------------------------------
    @property
    def versions(self) -> CodeVersions:
        """The original source and the compiled versions an optimizer proposed."""
        if self._versions is None:
            self._versions = CodeVersions(self.fn, source_of(self.fn), self.sandbox, self.is_method)
        return self._versions

    @property
    def source(self) -> str:
        return self.versions.original_source

    def code_param_for(self, instance: Any = None) -> ParameterNode | None:
        """The code parameter (one per instance for methods), created on first use."""
        if not self.trainable:
            return None
        if instance is None:
            if self._code_param is None:
                self._code_param = self._new_code_param(self.name)
            return self._code_param
        try:
            store = instance.__dict__.setdefault(_CODE_ATTR, {})
        except AttributeError:
            raise TypeError(
                f"trainable bundled method {self.name!r} needs an instance with a __dict__ "
                f"to hold its code parameter; {type(instance).__name__} uses __slots__"
            ) from None
        if self.name not in store:
            store[self.name] = self._new_code_param(f"{type(instance).__name__}.{self.name}")
        return store[self.name]

    def _new_code_param(self, name: str) -> ParameterNode:
        versions = self.versions
        return ParameterNode(versions.original_source, name=name, kind="code",
                             description=f"source code of the function {self.name}",
                             validator=versions.validate)

    def parameters(self) -> list[ParameterNode]:
        """The function's trainable parameters: its code, when trainable."""
        if self.is_method:
            return []  # per instance: see BoundBundle.parameters / Module.parameters
        param = self.code_param_for(None)
        return [param] if param is not None else []

    # --- Op interface used by MessageNode -------------------------------------------
    def code_line(self, argnames: Any, labels: Any) -> str:
        pairs = ", ".join(f"{n}={v}" for n, v in zip(argnames, labels) if n != "__code__")
        return f"{self.name}({pairs})"

    # --- calling ------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._acall(None, args, kwargs)
        return self._call(None, args, kwargs)

    def _resolve(self, instance: Any) -> tuple[ParameterNode | None, Callable]:
        """The code parameter (if trainable) and the function version to run."""
        if self.trainable:
            code_param = cast(ParameterNode, self.code_param_for(instance))  # trainable: one
            return code_param, self.versions.function_for(code_param.raw)
        return None, self.fn

    def _call(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        code_param, fn = self._resolve(instance)
        outer = used_nodes.get()
        if outer is not None:  # nested in another bundle, or under tk.no_trace()
            return self._plain_call(fn, instance, args, kwargs, code_param, outer)
        parents, argnames, values, kwvalues, error = self._bind(args, kwargs, code_param)
        if error:
            return _propagate_error(self, tuple(parents), tuple(argnames))
        collected: list = []
        token = used_nodes.set(collected)
        try:
            result = fn(instance, *values, **kwvalues) if instance is not None else fn(*values, **kwvalues)
        except BaseException as exc:
            if not self.catch_errors or not self._caught(exc, fn):
                raise
            return ExceptionNode(self._error(exc, fn), tuple(parents), tuple(argnames), self)
        finally:
            used_nodes.reset(token)
        if not collected and not isinstance(result, Node):  # the common case
            return MessageNode(result, tuple(parents), tuple(argnames), self)
        return self._record(result, parents, argnames, collected)

    async def _acall(self, instance: Any, args: tuple, kwargs: dict) -> Any:
        code_param, fn = self._resolve(instance)
        outer = used_nodes.get()
        if outer is not None:
            return await self._plain_call(fn, instance, args, kwargs, code_param, outer)
        parents, argnames, values, kwvalues, error = self._bind(args, kwargs, code_param)
        if error:
            return _propagate_error(self, tuple(parents), tuple(argnames))
        collected: list = []
        token = used_nodes.set(collected)
        try:
            coro = fn(instance, *values, **kwvalues) if instance is not None else fn(*values, **kwvalues)
            result = await coro if inspect.isawaitable(coro) else coro
        except BaseException as exc:
            if not self.catch_errors or not self._caught(exc, fn):
                raise
            return ExceptionNode(self._error(exc, fn), tuple(parents), tuple(argnames), self)
        finally:
            used_nodes.reset(token)
        return self._record(result, parents, argnames, collected)

    def _plain_call(self, fn: Callable, instance: Any, args: tuple, kwargs: dict,
                    code_param: ParameterNode | None, outer: list | _Discard | None) -> Any:
        """Untraced call (nested in another bundle, or under no_trace): plain values."""
        if outer is not None and code_param is not None:
            outer.append(code_param)
        values = [a.data if isinstance(a, Node) else a for a in args]
        kwvalues = {k: v.data if isinstance(v, Node) else v for k, v in kwargs.items()}
        try:
            if instance is not None:
                return fn(instance, *values, **kwvalues)
            return fn(*values, **kwvalues)
        except Exception:
            raise
        except BaseException as exc:  # SystemExit & co. from proposed code end nothing
            if not self._caught(exc, fn):
                raise
            raise RuntimeError(f"code proposed for {self.name} raised {type_name(exc)}: "
                               f"{message_of(exc)}") from None

    def _bind(self, args: tuple, kwargs: dict, code_param: ParameterNode | None
              ) -> tuple[list[Node], list[str], list[Any], dict[str, Any], bool]:
        """Inputs as nodes (plain values wrapped), their names, their values, and whether
        any input is an exception node."""
        positional = self._bound_positional if self.is_method else self._positional
        parents: list[Node] = []
        values: list[Any] = []
        error = False
        for a in args:
            n = a if isinstance(a, Node) else Node(a)
            error = error or n.is_error
            parents.append(n)
            values.append(n.raw)
        if len(args) <= len(positional):
            argnames = positional[: len(args)]
        else:
            extra = len(args) - len(positional)
            argnames = positional + [f"{self._varargs}_{i}" for i in range(extra)]
        kwvalues: dict[str, Any] = {}
        for k, a in kwargs.items():
            n = a if isinstance(a, Node) else Node(a)
            error = error or n.is_error
            parents.append(n)
            kwvalues[k] = n.raw
            argnames.append(k)
        if code_param is not None:
            parents.append(code_param)
            argnames.append("__code__")
        return parents, argnames, values, kwvalues, error

    def _record(self, result: Any, parents: list[Node], argnames: list[str],
                collected: list | None) -> MessageNode:
        """Make the output node; nodes read inside the call become extra parents."""
        extra: list[Node] = list(collected or ())
        if isinstance(result, Node):
            extra.append(result)
            result = result.raw
        if extra:
            seen = {id(p) for p in parents}
            for n in extra:
                if id(n) not in seen:
                    seen.add(id(n))
                    parents.append(n)
                    argnames.append(f"__used__{n.py_name}")
        return MessageNode(result, tuple(parents), tuple(argnames), self)

    def _caught(self, exc: BaseException, fn: Callable) -> bool:
        """Which exceptions become exception nodes: every Exception, and anything at all
        (SystemExit, KeyboardInterrupt...) raised by code that did not come from the
        user's own file."""
        return isinstance(exc, Exception) or (fn is not self.fn and self.trainable)

    def _error(self, exc: BaseException, fn: Callable) -> TracedError:
        """Describe an exception with the failing line inside the bundled function."""
        if isinstance(exc, SandboxError):
            return TracedError(exc.type_name, exc.message, exc.line, exc.lineno, self.name, exc)
        frames = []
        tb = exc.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code, tb.tb_lineno))
            tb = tb.tb_next
        target = getattr(fn, "__code__", None)
        own = [f for f in frames if f[0] is target]
        chosen = own[-1] if own else (frames[-1] if frames else None)
        line, lineno = "", None
        if chosen is not None:
            code, abs_lineno = chosen
            line = linecache.getline(code.co_filename, abs_lineno).strip()
            lineno = abs_lineno
            if code is target:
                lineno = abs_lineno - _def_line(code) + 1  # counted from the def line
        return TracedError(type_name(exc), message_of(exc), line, lineno, self.name, exc)

    def __repr__(self) -> str:
        kind = "trainable " if self.trainable else ""
        return f"<{kind}bundled function {self.name}>"


class BoundBundle:
    """A bundled method bound to an instance; trainable ones own a per-instance code param."""

    __slots__ = ("bundle", "instance")

    def __init__(self, bundle: BundledFunction, instance: Any) -> None:
        self.bundle = bundle
        self.instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.bundle.is_async:
            return self.bundle._acall(self.instance, args, kwargs)
        return self.bundle._call(self.instance, args, kwargs)

    def parameters(self) -> list[ParameterNode]:
        param = self.bundle.code_param_for(self.instance)
        return [param] if param is not None else []

    @property
    def code_param(self) -> ParameterNode | None:
        return self.bundle.code_param_for(self.instance)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.bundle, attr)

    def __repr__(self) -> str:
        return f"<bound {self.bundle!r} of {type(self.instance).__name__}>"


def _def_line(code: Any) -> int:
    """The line of the `def` itself (co_firstlineno points at the first decorator)."""
    first = code.co_firstlineno
    for offset in range(50):
        text = linecache.getline(code.co_filename, first + offset).lstrip()
        if text.startswith(("def ", "async def ")):
            return first + offset
        if not text:
            break
    return first


def _safe_signature(fn: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


@overload
def bundle(fn: Callable[..., Any], *, trainable: bool = ..., description: str | None = ...,
           catch_errors: bool = ..., name: str | None = ...,
           sandbox: bool | Limits = ...) -> BundledFunction: ...
@overload
def bundle(fn: None = None, *, trainable: bool = ..., description: str | None = ...,
           catch_errors: bool = ..., name: str | None = ...,
           sandbox: bool | Limits = ...) -> Callable[[Callable[..., Any]], BundledFunction]: ...
def bundle(fn: Callable[..., Any] | None = None, *, trainable: bool = False, description: str | None = None,
           catch_errors: bool = True, name: str | None = None,
           sandbox: bool | Limits = True) -> BundledFunction | Callable[[Callable[..., Any]], BundledFunction]:
    """Decorator: record calls of `fn` in the graph.

    `trainable=True` makes the function's source a parameter of kind "code"; a new value
    is used only after it compiles and defines the same function with the same signature,
    and it runs in the sandbox worker (`tracekit.sandbox`; `sandbox=tk.sandbox.Limits(...)`
    sets its limits). `sandbox=False` runs new code in this process instead: unsafe, it
    warns once (docs/code-safety.md). The function as written in your file always runs here.
    `catch_errors=False` re-raises exceptions instead of returning an ExceptionNode.
    Usable as `@tk.bundle` or `@tk.bundle(...)`.
    """
    arguments.flag("trainable", trainable)
    arguments.flag("catch_errors", catch_errors)
    arguments.optional_text("description", description)
    arguments.optional_text("name", name, empty=False)
    if not isinstance(sandbox, (bool, Limits)):
        raise TypeError(f"sandbox must be True, False or a tk.sandbox.Limits, got {type(sandbox).__name__}")

    def decorate(f: Callable) -> BundledFunction:
        arguments.function("fn", f, "a function: @tk.bundle needs a function to trace")
        return BundledFunction(f, trainable=trainable, description=description,
                               catch_errors=catch_errors, name=name, sandbox=sandbox)

    if fn is not None:
        return decorate(fn)
    return decorate
