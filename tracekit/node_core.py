"""Graph nodes: `Node` (a constant, an input, the base of every node), `MessageNode` (the
result of a traced call), `ExceptionNode` (a traced call that raised, holding a `TracedError`)
and `apply_op`, which runs a built-in operation on nodes and records its result.

A node holds a value (`node.data`) and the nodes it was computed from (`node.parents`).
Nodes keep only references to their parents, never to their children, so dropping the
outputs of a workflow frees its whole graph. `tracekit.nodes` re-exports all of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from tracekit.context import tracing_disabled, used_nodes
from tracekit.ops import _ARGNAMES, _OP_FUNCS, OPS, Op
from tracekit.values import _values_equal, short_repr

if TYPE_CHECKING:
    from tracekit.parameters import ParameterNode

_uids: Iterator[int] = itertools.count()  # next() on itertools.count is atomic under the GIL

# Feedback propagation for `Node.backward`, installed by tracekit.feedback when it is
# imported (the core's nodes cannot import feedback: feedback imports nodes).
_BACKWARD: list[Callable[..., Any]] = []


def install_backward(fn: Callable[..., Any]) -> None:
    """Let `node.backward(feedback)` call `fn(node, feedback, ...)` (tracekit.feedback.backward)."""
    _BACKWARD[:] = [fn]


def _identifier(text: str) -> str:
    """`text` with every character that cannot be in a Python identifier made `_`."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


# Operator methods of Node, made per operator; each runs `apply_op` with the operator of OPS.
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


class Node:
    """A value in the traced graph; constants and inputs are plain `Node`s.

    `node.data` is the value; `node.parents` the nodes it was computed from.
    `==` compares values and returns a bool (so nodes work in containers and asserts);
    use `node.eq(other)` for a traced comparison. Nodes hash by identity.
    """

    __slots__ = ("_data", "parents", "_name", "_uid", "__weakref__")
    _data: Any
    parents: tuple[Node, ...]
    _name: str | None
    _uid: int
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
    def keys(self) -> list[Node] | Node:
        """Traced keys of a dict node (each `keys_node[i]`); other data: its own `keys()`."""
        if not isinstance(self._data, dict):
            return self.__getattr__("keys")()
        return list(self)

    def values(self) -> list[Node] | Node:
        """Traced values of a dict node (each `values_node[i]`); other data: its own `values()`."""
        if not isinstance(self._data, dict):
            return self.__getattr__("values")()
        values = apply_op(OPS["values"], (self,))
        return [values[i] for i in range(len(self._data))]

    def items(self) -> list[tuple[Node, Node]] | Node:
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

    # --- operators: traced, `a + b` is a MessageNode with parents (a, b) -------------
    __add__, __radd__ = _binary("add"), _reflected("add")
    __sub__, __rsub__ = _binary("sub"), _reflected("sub")
    __mul__, __rmul__ = _binary("mul"), _reflected("mul")
    __truediv__, __rtruediv__ = _binary("truediv"), _reflected("truediv")
    __floordiv__, __rfloordiv__ = _binary("floordiv"), _reflected("floordiv")
    __mod__, __rmod__ = _binary("mod"), _reflected("mod")
    __pow__, __rpow__ = _binary("pow"), _reflected("pow")
    __matmul__, __rmatmul__ = _binary("matmul"), _reflected("matmul")
    __lshift__, __rlshift__ = _binary("lshift"), _reflected("lshift")
    __rshift__, __rrshift__ = _binary("rshift"), _reflected("rshift")
    __and__, __rand__ = _binary("and"), _reflected("and")
    __or__, __ror__ = _binary("or"), _reflected("or")
    __xor__, __rxor__ = _binary("xor"), _reflected("xor")
    __lt__, __le__, __gt__, __ge__ = _binary("lt"), _binary("le"), _binary("gt"), _binary("ge")
    __getitem__ = _binary("getitem")
    __neg__, __pos__, __abs__, __invert__ = _unary("neg"), _unary("pos"), _unary("abs"), _unary("invert")

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



def _as_node(value: Any) -> Node:
    return value if isinstance(value, Node) else Node(value)
class MessageNode(Node):
    """The result of a traced call: an operator, a torch function or a bundled function."""

    __slots__ = ("op", "argnames")
    op: Any  # an Op, a BundledFunction or a solver node's op: name, code_line(argnames, labels)
    argnames: tuple[str, ...]

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
    upstream = cast(ExceptionNode, next(p for p in parents if p.is_error)).error
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
