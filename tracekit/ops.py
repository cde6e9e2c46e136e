"""The built-in traced operations: `Op` (an operation's name and how a call to it is shown
as a line of Python) and the table of Python operators and helpers that nodes trace."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence
from typing import Any

from tracekit.values import _is_tensor


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



_ARGNAMES = {0: (), 1: ("x",), 2: ("x", "y"), 3: ("x", "y", "z")}

# name -> (python function, code template)
_OP_TABLE: dict[str, tuple[Callable[..., Any], str]] = {
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

