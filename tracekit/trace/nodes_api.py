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
