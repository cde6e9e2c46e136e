"""Graph nodes: constants/inputs, parameters, messages (results of traced calls), exceptions.

A node holds a value (`node.data`) and the nodes it was computed from (`node.parents`).
Nodes keep only references to their parents, never to their children, so dropping the
outputs of a workflow frees its whole graph.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tracekit import arguments, kinds
from tracekit.context import tracing_disabled, used_nodes
from tracekit.errors import InvalidValueError

KINDS = ("text", "code", "numeric", "categorical", "demos")

_uids = itertools.count()  # next() on itertools.count is atomic under the GIL

# Feedback propagation for `Node.backward`, installed by tracekit.feedback when it is
# imported (the core's nodes cannot import feedback: feedback imports nodes).
_BACKWARD: list[Callable[..., Any]] = []


def install_backward(fn: Callable[..., Any]) -> None:
    """Let `node.backward(feedback)` call `fn(node, feedback, ...)` (tracekit.feedback.backward)."""
    _BACKWARD[:] = [fn]


def _is_tensor(value: Any) -> bool:
    """True for a torch tensor, without importing torch when it was never imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_ndarray(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def short_repr(value: Any, limit: int = 80) -> str:
    """A one-line preview of a value, cut with a marker when long."""
    if _is_tensor(value):
        text = f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')})"
        if value.numel() <= 8:
            text = repr(value.detach().cpu().tolist())
    else:
        text = repr(value)
    text = text.replace("\n", "\\n")
    if len(text) > limit:
        text = text[: limit - 12] + f"...[+{len(text) - limit + 12} chars]"
    return text


class Op:
    """Describes a built-in traced operation: its name and how to show it as code."""

    __slots__ = ("name", "template", "doc")

    def __init__(self, name: str, template: str, doc: str = "") -> None:
        self.name = name
        self.template = template  # str.format template over argument names
        self.doc = doc

    def code_line(self, argnames: Sequence[str], arg_labels: Sequence[str]) -> str:
        """The call as one line of Python over the names of its input nodes."""
        if self.template:
            try:
                return self.template.format(*arg_labels)
            except (IndexError, KeyError):
                pass
        if self.name == "call" and arg_labels:
            args = [f"{n}={v}" if not n.startswith("arg") else v for n, v in zip(argnames[1:], arg_labels[1:])]
            return f"{arg_labels[0]}({', '.join(args)})"
        pairs = ", ".join(f"{n}={v}" for n, v in zip(argnames, arg_labels))
        return f"{self.name}({pairs})"

    def __repr__(self) -> str:
        return f"Op({self.name!r})"


def _identifier(text: str) -> str:
    """`text` with every character that cannot be in a Python identifier made `_`."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


class Node:
    """A value in the traced graph; constants and inputs are plain `Node`s.

    `node.data` is the value; `node.parents` the nodes it was computed from.
    `==` compares values and returns a bool (so nodes work in containers and asserts);
    use `node.eq(other)` for a traced comparison. Nodes hash by identity.
    """

    __slots__ = ("_data", "parents", "_name", "_uid", "__weakref__")
    is_parameter = False
    is_error = False

    def __init__(self, data: Any, name: str | None = None, parents: tuple[Node, ...] = ()) -> None:
        if isinstance(data, Node):
            data = data._data
        self._data = data
        self.parents = parents
        self._name = name
        self._uid = next(_uids)

    # --- value access -------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The node's value. Reading it inside a bundled function records a dependency."""
        collector = used_nodes.get()
        if collector is not None:
            collector.append(self)
        return self._data

    @property
    def raw(self) -> Any:
        """The node's value, read without recording a dependency: for tracekit's own code
        (optimizer, solvers' adapters, saving), which must not show up in a trace."""
        return self._data

    @property
    def name(self) -> str:
        if self._name is None:
            return f"{self._default_prefix()}{self._uid}"
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def _default_prefix(self) -> str:
        return "const"

    @property
    def inputs(self) -> dict[str, Node]:
        """Argument name -> input node; a leaf (constant, input, parameter) has none."""
        return {}

    @property
    def py_name(self) -> str:
        """The name made into a Python identifier, for code lines shown to an LLM."""
        return _identifier(self.name)

    @property
    def stable_name(self) -> str:
        """`py_name`, or for an unnamed node its prefix with `#` for the running number
        (`const#`, `classify_#`): a prompt numbers those per problem (`tracekit.seam.
        label_for`), so a step's prompt repeats the last one's where the graph has the same
        shape, and an LLM server reuses the shared prefix instead of reading it again."""
        if self._name is not None:
            return self.py_name
        return f"{_identifier(self._default_prefix()) or 'value'}#"

    # --- Python protocol ----------------------------------------------------------
    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, data={short_repr(self._data)})"

    def __str__(self) -> str:
        return str(self.data)

    def __format__(self, spec: str) -> str:
        return format(self.data, spec)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, item: Any) -> bool:
        return (item._data if isinstance(item, Node) else item) in self.data

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: Any) -> bool:
        if other is self:
            return True
        other_value = other._data if isinstance(other, Node) else other
        return _values_equal(self._data, other_value)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __iter__(self) -> Iterator[Node]:
        data = self._data
        if isinstance(data, dict):
            keys = apply_op(OPS["keys"], (self,))
            for i in range(len(data)):
                yield keys[i]
            return
        try:
            n = len(data)
        except TypeError:
            raise TypeError(f"{type(data).__name__} data of node {self.name!r} is not iterable") from None
        for i in range(n):
            yield self[i]

    def __getattr__(self, attr: str) -> Node:
        # Only reached for names that are not slots or class attributes.
        if attr.startswith("_"):
            raise AttributeError(attr)
        data = self._data
        if not hasattr(data, attr):
            raise AttributeError(
                f"{type(self).__name__} {self.name!r} has no attribute {attr!r}, and neither "
                f"has its data of type {type(data).__name__}"
            )
        return apply_op(OPS["getattr"], (self, Node(attr)))

    def __call__(self, *args: Any, **kwargs: Any) -> Node:
        """Call the node's value (for example a method reached by attribute access).

        Nodes inside list, tuple and dict arguments are unwrapped to their values and
        become parents of the result (`node("+").join([x, y])`)."""
        if not callable(self._data):
            raise TypeError(f"data of node {self.name!r} ({type(self._data).__name__}) is not callable")
        parents: list[Node] = [self]
        names: list[str] = ["fn"]
        call_args = [_call_argument(a, f"arg{i}", parents, names) for i, a in enumerate(args)]
        call_kwargs = {k: _call_argument(v, k, parents, names) for k, v in kwargs.items()}
        if tracing_disabled():
            return Node(self._data(*call_args, **call_kwargs))
        if any(p.is_error for p in parents):
            return _propagate_error(OPS["call"], tuple(parents), tuple(names))
        return MessageNode(self._data(*call_args, **call_kwargs), tuple(parents), tuple(names), OPS["call"])

    # --- the graph around a node ------------------------------------------------------
    @property
    def parameter_dependencies(self) -> set[ParameterNode]:
        """The parameters this node's value depends on (itself included), walked on demand."""
        found: set[ParameterNode] = set()
        seen: set[int] = set()
        stack: list[Node] = [self]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.is_parameter:
                found.add(n)  # type: ignore[arg-type]
            stack.extend(n.parents)
        return found

    def backward(self, feedback: Any = "", retain_graph: bool = False) -> Any:
        """Propagate `feedback` on this node to the parameters it depends on (Trace's
        spelling of `tk.backward(node, feedback)`; the default feedback is empty text).
        Returns the subgraph linking the parameters to this node."""
        if not _BACKWARD:  # only when tracekit.nodes is imported without the package
            raise RuntimeError("node.backward needs tracekit.feedback: `import tracekit` first")
        return _BACKWARD[0](self, feedback, retain_graph=retain_graph)

    # --- dict views: lists of nodes, so that `for k, v in node.items()` and `{}.update(node)` work
    def keys(self) -> list[Node]:
        """Traced keys of a dict node (each `keys_node[i]`); other data: its own `keys()`."""
        if not isinstance(self._data, dict):
            return self.__getattr__("keys")()
        return list(self)

    def values(self) -> list[Node]:
        """Traced values of a dict node (each `values_node[i]`); other data: its own `values()`."""
        if not isinstance(self._data, dict):
            return self.__getattr__("values")()
        values = apply_op(OPS["values"], (self,))
        return [values[i] for i in range(len(self._data))]

    def items(self) -> list[tuple[Node, Node]]:
        """Traced (key, value) pairs of a dict node: `value = node[key]`; other data: its `items()`."""
        if not isinstance(self._data, dict):
            return self.__getattr__("items")()
        return [(k, self[k]) for k in self.keys()]

    # --- traced methods that have no operator -------------------------------------
    def eq(self, other: Any) -> Node:
        return apply_op(OPS["eq"], (self, _as_node(other)))

    def neq(self, other: Any) -> Node:
        return apply_op(OPS["ne"], (self, _as_node(other)))

    def contains(self, item: Any) -> Node:
        return apply_op(OPS["contains"], (self, _as_node(item)))

    def len(self) -> Node:
        return apply_op(OPS["len"], (self,))

    def getattr(self, name: str) -> Node:
        """Traced attribute access by name: `node.getattr("x")` is `node.x` (Trace's spelling)."""
        return apply_op(OPS["getattr"], (self, _as_node(name)))

    def call(self, name: str, *args: Any, **kwargs: Any) -> Node:
        """Traced method call by name: `node.call("add", 2)` is `node.add(2)` (Trace's spelling)."""
        return self.getattr(name)(*args, **kwargs)

    def clone(self) -> Node:
        """A traced copy: a new node holding a deep copy of the value, with this node as parent."""
        return apply_op(OPS["clone"], (self,))

    def format(self, *args: Any, **kwargs: Any) -> Node:
        """Traced `str.format` on the node's text."""
        nodes = (self,) + tuple(_as_node(a) for a in args) + tuple(_as_node(v) for v in kwargs.values())
        names = ("template",) + tuple(f"arg{i}" for i in range(len(args))) + tuple(kwargs)
        return apply_op(OPS["format"], nodes, names, kw_count=len(kwargs))

    # --- torch interop: torch.sin(node) and friends are traced ---------------------
    @classmethod
    def __torch_function__(cls, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        parents: list[Node] = []
        call_args = [_collect(a, parents) for a in args]
        call_kwargs = {k: _collect(v, parents) for k, v in kwargs.items()}
        if tracing_disabled():
            return Node(func(*call_args, **call_kwargs))
        name = getattr(func, "__name__", "torch_op")
        op = Op(f"torch.{name}", f"torch.{name}(" + ", ".join(f"{{{i}}}" for i in range(len(parents))) + ")")
        if any(p.is_error for p in parents):
            return _propagate_error(op, tuple(parents), tuple(f"arg{i}" for i in range(len(parents))))
        return MessageNode(func(*call_args, **call_kwargs), tuple(parents),
                           tuple(f"arg{i}" for i in range(len(parents))), op)


def _collect(value: Any, parents: list[Node]) -> Any:
    """`value` with the nodes inside it (also in lists, tuples and dicts) replaced by their
    values; those nodes are appended to `parents`."""
    if isinstance(value, Node):
        parents.append(value)
        return value._data
    if isinstance(value, (list, tuple)) and any(_holds_node(v) for v in value):
        items = [_collect(v, parents) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict) and any(_holds_node(k) or _holds_node(v) for k, v in value.items()):
        return {_collect(k, parents): _collect(v, parents) for k, v in value.items()}
    return value


def _holds_node(value: Any) -> bool:
    if isinstance(value, Node):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_node(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_node(k) or _holds_node(v) for k, v in value.items())
    return False


def _call_argument(value: Any, name: str, parents: list[Node], names: list[str]) -> Any:
    """The value passed for one argument of a traced call; its nodes join `parents`."""
    if not isinstance(value, Node) and _holds_node(value):
        inner: list[Node] = []
        plain = _collect(value, inner)
        parents.extend(inner)
        names.extend(f"{name}_{i}" for i in range(len(inner)))
        return plain
    n = _as_node(value)
    parents.append(n)
    names.append(name)
    return n._data


def _values_equal(a: Any, b: Any) -> bool:
    if _is_tensor(a) or _is_tensor(b) or _is_ndarray(a) or _is_ndarray(b):
        try:
            import numpy as np

            to_np = lambda v: v.detach().cpu().numpy() if _is_tensor(v) else np.asarray(v)  # noqa: E731
            return bool(np.array_equal(to_np(a), to_np(b)))
        except Exception:
            return a is b
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _as_node(value: Any) -> Node:
    return value if isinstance(value, Node) else Node(value)


class ParameterNode(Node):
    """A trainable leaf: text, code, numeric (number or tensor) or categorical.

    Assigning `param.data = v` (or `param.set(v)`) validates and casts `v` for the kind;
    a refused value raises `InvalidValueError` and the old value stays in place.
    """

    __slots__ = ("kind", "description", "bounds", "choices", "feedback", "validator",
                 "trainable", "value_type", "constraints")
    is_parameter = True

    def __init__(
        self,
        value: Any,
        name: str | None = None,
        kind: str | None = None,
        description: str | None = None,
        bounds: tuple[float, float] | None = None,
        choices: Sequence[Any] | None = None,
        trainable: bool = True,
        validator: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(value, Node):
            value = value._data
        arguments.optional_text("name", name, empty=False)
        arguments.optional_text("description", description)
        arguments.flag("trainable", trainable)
        arguments.function("validator", validator, "a callable validator(value)", optional=True)
        if choices is not None and (isinstance(choices, (str, bytes, dict))
                                    or not isinstance(choices, (list, tuple, range))):
            raise TypeError(f"choices must be a list of the allowed values, got {type(choices).__name__}")
        if choices is not None and not choices:
            raise ValueError("choices must not be empty: list the allowed values")
        kind = infer_kind(value, kind, choices)
        value = _prepare_value(value, kind)
        super().__init__(value, name=name)
        self.kind = kind
        self.description = description
        self.bounds = _check_bounds(bounds, name)
        self.choices = list(choices) if choices is not None else None
        if self.choices is not None and value not in self.choices:
            raise InvalidValueError(
                f"parameter {name!r}: initial value {value!r} is not one of choices {self.choices!r}; "
                f"add it to choices or start from one of them"
            )
        self.feedback: list = []
        self.validator = validator
        self.trainable = trainable
        self.value_type = type(value)
        self.constraints: list = []
        if self.bounds is not None and kind == "numeric":
            self._check_in_bounds(value)
        try:  # the initial value must pass the parameter's own validation, as every later one
            kinds.accept(self, value)
        except InvalidValueError as exc:
            raise InvalidValueError(f"initial value refused: {exc}") from None

    def _default_prefix(self) -> str:
        return "param"

    # same getter as Node.data (records reads inside bundles); assignment validates
    data = property(Node.data.fget, lambda self, value: self.set(value), doc=Node.data.__doc__)

    @property
    def is_tensor(self) -> bool:
        return _is_tensor(self._data)

    def validate(self, value: Any) -> Any:
        """Return `value` in the form this parameter stores, or raise InvalidValueError:
        `tracekit.kinds.accept` (the rule shared by assignment, loading, solvers and the
        step's apply; out-of-bounds values are refused, not clamped), then `validator`."""
        if isinstance(value, Node):
            value = value._data
        value = kinds.accept(self, value)  # the one definition of a valid value per kind
        if self.validator is not None:
            result = self.validator(value)
            value = value if result is None else result
        return value

    def set(self, value: Any) -> None:
        """Validate and store a new value; tensors are updated in place (same object)."""
        self.write(self.validate(value))

    def write(self, value: Any) -> None:
        """Store a value that `validate` returned, without checking it again: for callers
        that validate everything first and write after (loading, the optimizer's apply)."""
        if _is_tensor(self._data):
            import torch

            with torch.no_grad():
                self._data.copy_(value)
        else:
            self._data = value

    @contextlib.contextmanager
    def trial(self, value: Any) -> Iterator[None]:
        """Hold a validated `value` inside the `with` block, then put the old value back
        (also on errors): how candidate values are tried without being kept."""
        if _is_tensor(self._data):
            import torch

            old = self._data.detach().clone()
            self.set(value)
            try:
                yield
            finally:
                with torch.no_grad():
                    self._data.copy_(old)
        else:
            old = self._data
            self.set(value)
            try:
                yield
            finally:
                self._data = old  # the value it held before: already validated

    def _check_in_bounds(self, value: Any) -> None:
        kinds.check_bounds(value, self.bounds, f"parameter {self.name!r}: initial value")


def infer_kind(value: Any, kind: str | None, choices: Sequence[Any] | None) -> str:
    """The kind of a parameter: given, or inferred from choices and the value's type."""
    if kind is not None:
        if kind not in KINDS:
            raise InvalidValueError(f"unknown parameter kind {kind!r}; use one of {KINDS}")
        return kind
    if choices is not None:
        return "categorical"
    if isinstance(value, bool):
        raise InvalidValueError(
            "cannot infer a kind for a bool value; pass choices=[False, True] (categorical)"
        )
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float)) or _is_tensor(value) or _is_ndarray(value):
        return "numeric"
    if isinstance(value, (list, dict, tuple)):
        return "text"
    raise InvalidValueError(
        f"cannot infer a parameter kind for a value of type {type(value).__name__}; "
        f"pass kind= one of {KINDS} (and choices= for a categorical parameter)"
    )


def _prepare_value(value: Any, kind: str) -> Any:
    """Numeric arrays become tensors; floating tensors get requires_grad."""
    if kind != "numeric":
        return value
    if _is_ndarray(value):
        import torch

        value = torch.from_numpy(value.copy())
    if _is_tensor(value):
        if value.grad_fn is not None:
            value = value.detach().clone()
        if value.is_floating_point() or value.is_complex():
            value.requires_grad_(True)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValueError(f"numeric parameter value must be finite, got {value!r}")
        return value
    raise InvalidValueError(
        f"a numeric parameter needs an int, float, numpy array or torch tensor, got {type(value).__name__}"
    )


def _check_bounds(bounds: Any, name: str | None) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = bounds
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise InvalidValueError(f"parameter {name!r}: bounds must be a pair (low, high), got {bounds!r}") from None
    if math.isnan(lo) or math.isnan(hi):
        raise InvalidValueError(f"parameter {name!r}: bounds must not be NaN, got {bounds!r}; "
                                f"use -inf/inf for a missing bound")
    if lo > hi:
        raise InvalidValueError(f"parameter {name!r}: bounds low {lo} is above high {hi}; swap them")
    return (lo, hi)


class MessageNode(Node):
    """The result of a traced call: an operator, a torch function or a bundled function."""

    __slots__ = ("op", "argnames")

    def __init__(self, data: Any, parents: tuple[Node, ...], argnames: tuple[str, ...], op: Any,
                 name: str | None = None) -> None:
        self._data = data
        self.parents = parents
        self._name = name
        self._uid = next(_uids)
        self.op = op
        self.argnames = argnames

    def _default_prefix(self) -> str:
        return getattr(self.op, "name", "op").replace(".", "_") + "_"

    @property
    def inputs(self) -> dict[str, Node]:
        """Argument name -> input node (an argument used twice appears under both names)."""
        return dict(zip(self.argnames, self.parents))

    def code_line(self) -> str:
        """This call as a line of Python: `out = fn(arg=input, ...)`."""
        labels = [p.py_name for p in self.parents]
        return f"{self.py_name} = {self.op.code_line(self.argnames, labels)}"


class TracedError:
    """What an exception node holds: the error type, its message and the failing line."""

    __slots__ = ("type", "message", "line", "lineno", "function", "exception")

    def __init__(self, type: str, message: str, line: str, lineno: int | None, function: str,
                 exception: BaseException | None = None) -> None:
        self.type = type
        self.message = message
        self.line = line
        self.lineno = lineno
        self.function = function
        self.exception = exception

    def __str__(self) -> str:
        where = f" at line {self.lineno}" if self.lineno else ""
        line = f": `{self.line}`" if self.line else ""
        return f"({self.type}) {self.message} in {self.function}{where}{line}"

    __repr__ = __str__


class ExceptionNode(MessageNode):
    """A traced call that raised: `data` is a TracedError; parents are the call's inputs."""

    __slots__ = ()
    is_error = True

    @property
    def error(self) -> TracedError:
        return self._data

    def _default_prefix(self) -> str:
        return "exception_"


def _propagate_error(op: Any, parents: tuple[Node, ...], argnames: tuple[str, ...]) -> ExceptionNode:
    """An op over an exception node does not run; it passes the upstream error on."""
    upstream = next(p for p in parents if p.is_error).error
    err = TracedError(upstream.type, f"upstream error: {upstream.message}", upstream.line,
                      upstream.lineno, upstream.function, upstream.exception)
    return ExceptionNode(err, parents, argnames, op)


def apply_op(op: Op, parents: tuple[Node, ...], argnames: tuple[str, ...] | None = None,
             kw_count: int = 0) -> Node:
    """Run a built-in op on node values and record the result as a MessageNode."""
    if argnames is None:
        argnames = _ARGNAMES[len(parents)]
    untraced = tracing_disabled()  # under no_trace: a plain node, no history
    if not untraced:
        for p in parents:
            if p.is_error:
                return _propagate_error(op, parents, argnames)
    values = [p._data for p in parents]
    fn = _OP_FUNCS[op.name]
    if kw_count:
        split = len(values) - kw_count
        result = fn(*values[:split], **dict(zip(argnames[split:], values[split:])))
    else:
        result = fn(*values)
    if untraced:
        return Node(result)
    return MessageNode(result, parents, argnames, op)


_ARGNAMES = {0: (), 1: ("x",), 2: ("x", "y"), 3: ("x", "y", "z")}

# name -> (python function, code template)
_OP_TABLE: dict[str, tuple[Callable, str]] = {
    "add": (operator.add, "{0} + {1}"), "sub": (operator.sub, "{0} - {1}"),
    "mul": (operator.mul, "{0} * {1}"), "truediv": (operator.truediv, "{0} / {1}"),
    "floordiv": (operator.floordiv, "{0} // {1}"), "mod": (operator.mod, "{0} % {1}"),
    "pow": (operator.pow, "{0} ** {1}"), "matmul": (operator.matmul, "{0} @ {1}"),
    "lshift": (operator.lshift, "{0} << {1}"), "rshift": (operator.rshift, "{0} >> {1}"),
    "and": (operator.and_, "{0} & {1}"), "or": (operator.or_, "{0} | {1}"),
    "xor": (operator.xor, "{0} ^ {1}"),
    "lt": (operator.lt, "{0} < {1}"), "le": (operator.le, "{0} <= {1}"),
    "gt": (operator.gt, "{0} > {1}"), "ge": (operator.ge, "{0} >= {1}"),
    "eq": (operator.eq, "{0} == {1}"), "ne": (operator.ne, "{0} != {1}"),
    "neg": (operator.neg, "-{0}"), "pos": (operator.pos, "+{0}"),
    "abs": (abs, "abs({0})"), "invert": (operator.invert, "~{0}"),
    "getitem": (operator.getitem, "{0}[{1}]"), "getattr": (getattr, "getattr({0}, {1})"),
    "contains": (lambda c, x: x in c, "{1} in {0}"), "len": (len, "len({0})"),
    "keys": (lambda d: list(d.keys()), "list({0}.keys())"),
    "values": (lambda d: list(d.values()), "list({0}.values())"),
    "clone": (lambda v: v.clone() if _is_tensor(v) else copy.deepcopy(v), "copy.deepcopy({0})"),
    "call": (lambda f, *a, **k: f(*a, **k), "call"),
    "format": (lambda t, *a, **k: t.format(*a, **k), "format"),
}
_OP_FUNCS = {name: fn for name, (fn, _) in _OP_TABLE.items()}
# "call" and "format" have no fixed template: they render as name(arg=..., ...).
OPS: dict[str, Op] = {
    name: Op(name, "" if tpl in ("call", "format") else tpl) for name, (_, tpl) in _OP_TABLE.items()
}


def _binary(name: str) -> Callable[[Node, Any], Node]:
    op = OPS[name]

    def method(self: Node, other: Any) -> Node:
        return apply_op(op, (self, other if isinstance(other, Node) else Node(other)))

    method.__name__ = f"__{name}__"
    return method


def _reflected(name: str) -> Callable[[Node, Any], Node]:
    op = OPS[name]

    def method(self: Node, other: Any) -> Node:
        return apply_op(op, (other if isinstance(other, Node) else Node(other), self))

    method.__name__ = f"__r{name}__"
    return method


def _unary(name: str) -> Callable[[Node], Node]:
    op = OPS[name]

    def method(self: Node) -> Node:
        return apply_op(op, (self,))

    method.__name__ = f"__{name}__"
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
              "lshift", "rshift", "and", "or", "xor"):
    setattr(Node, f"__{_name}__", _binary(_name))
    setattr(Node, f"__r{_name}__", _reflected(_name))
for _name in ("lt", "le", "gt", "ge", "getitem"):
    setattr(Node, f"__{_name}__", _binary(_name))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(Node, f"__{_name}__", _unary(_name))


# --- public constructors ---------------------------------------------------------------
def param(
    value: Any,
    name: str | None = None,
    kind: str | None = None,
    description: str | None = None,
    bounds: tuple[float, float] | None = None,
    choices: Sequence[Any] | None = None,
    trainable: bool = True,
) -> ParameterNode:
    """A trainable parameter. Kind is inferred: str -> text, number/tensor/array -> numeric,
    `choices` -> categorical; pass `kind="code"` for source code."""
    return ParameterNode(value, name=name, kind=kind, description=description, bounds=bounds,
                         choices=choices, trainable=trainable)


def node(value: Any, name: str | None = None) -> Node:
    """A constant or input node (not trainable). A node passed in is returned unchanged."""
    if isinstance(value, Node):
        return value
    return Node(value, name=name)
