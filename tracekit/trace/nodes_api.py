"""Trace's `node(value, trainable=..., description=...)`: `tk.node` for constants and
inputs, `tk.param` for trainable values."""

from __future__ import annotations

from typing import Any

from tracekit.nodes import Node, param
from tracekit.nodes import node as core_node


def node(value: Any, name: str | None = None, trainable: bool = False, description: str | None = None,
         constraint: str | None = None, info: dict | None = None) -> Node:
    """A node as Trace makes it: `trainable=True` gives a `ParameterNode` (a new node sharing
    the value when `value` is a node; a bool becomes a categorical over [False, True]),
    otherwise a constant (a node passed in is returned unchanged). `constraint` is kept in
    the description, as Trace shows it to the LLM; `info` is not kept."""
    if not trainable:
        return core_node(value, name=name)
    data = value.raw if isinstance(value, Node) else value
    if constraint:
        description = f"{description or ''} Constraint: {constraint}".strip()
    choices = [False, True] if isinstance(data, bool) else None
    return param(data, name=name, description=description, choices=choices)


def to_data(obj: Any) -> Any:
    """Trace's `to_data`: `obj` with every node replaced by its value, also nodes inside
    lists, tuples, sets and dicts (keys included) and containers held by nodes."""
    if isinstance(obj, Node):
        return to_data(obj.raw)
    if isinstance(obj, dict):
        return {to_data(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = [to_data(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj
