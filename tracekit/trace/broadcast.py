"""Trace's `apply_op` and `NodeContainer`: apply an operator field by field over objects,
lists and dicts of nodes that share one structure (each application is an ordinary traced
call; this only walks the structure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracekit.nodes import Node


class NodeContainer:
    """Marks a class whose instance attributes `apply_op` walks (Trace's `NodeContainer`)."""


def apply_op(op: Callable[..., Any], output: Any, *args: Any, **kwargs: Any) -> Any:
    """Apply `op` to matching parts of the inputs and write the results into `output`.

    When every input is a node, the result is `op(*args, **kwargs)`. Otherwise `output`
    gives the structure: its list items, dict entries or (for a `NodeContainer`) attributes
    are replaced by `apply_op` over the matching parts of the inputs (a node input is used
    whole at every position). Other values of `output` are kept. Returns `output`.
    """
    inputs = [*args, *kwargs.values()]
    if all(isinstance(x, Node) for x in inputs):
        return op(*args, **kwargs)
    for x in inputs:
        if not isinstance(x, Node) and type(x) is not type(output):
            raise TypeError(f"apply_op: input of type {type(x).__name__} does not match the output's "
                            f"type {type(output).__name__}; give nodes or containers shaped like the output")

    def part(x: Any, key: Any, by_attribute: bool) -> Any:
        if isinstance(x, Node):
            return x
        return getattr(x, key) if by_attribute else x[key]

    def fill(key: Any, current: Any, by_attribute: bool) -> Any:
        return apply_op(op, current, *[part(x, key, by_attribute) for x in args],
                        **{k: part(v, key, by_attribute) for k, v in kwargs.items()})

    if isinstance(output, (list, tuple)):
        for x in inputs:
            if not isinstance(x, Node) and len(x) != len(output):
                raise ValueError(f"apply_op: output of length {len(output)} and an input of length "
                                 f"{len(x)} differ")
        items = [fill(i, current, False) for i, current in enumerate(output)]
        if isinstance(output, tuple):
            return tuple(items)
        output[:] = items
    elif isinstance(output, dict):
        for key, current in list(output.items()):
            output[key] = fill(key, current, False)
    elif isinstance(output, NodeContainer):
        for key, current in list(vars(output).items()):
            setattr(output, key, fill(key, current, True))
    return output
