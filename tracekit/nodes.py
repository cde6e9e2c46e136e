"""Graph nodes: constants/inputs, parameters, messages (results of traced calls), exceptions.

A node holds a value (`node.data`) and the nodes it was computed from (`node.parents`).
Nodes keep only references to their parents, never to their children, so dropping the
outputs of a workflow frees its whole graph.

This module is the public face of the nodes and holds their constructors, `param` and
`node`; the classes live by concept in `tracekit.node_core` (Node, MessageNode,
ExceptionNode, apply_op), `tracekit.parameters` (ParameterNode and its kinds),
`tracekit.ops` (the traced operators) and `tracekit.values` (plain-value helpers), and are
all importable from here.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tracekit import node_core
from tracekit.node_core import (  # noqa: F401  (private helpers other modules import from here)
    _BACKWARD,
    ExceptionNode,
    MessageNode,
    Node,
    TracedError,
    _as_node,
    _call_argument,
    _collect,
    _holds_node,
    _identifier,
    _propagate_error,
    apply_op,
    install_backward,
)
from tracekit.ops import _ARGNAMES, _OP_FUNCS, _OP_TABLE, OPS, Op  # noqa: F401
from tracekit.parameters import (  # noqa: F401
    KINDS,
    ParameterNode,
    _check_bounds,
    _prepare_value,
    infer_kind,
)
from tracekit.values import _is_ndarray, _is_tensor, _values_equal, short_repr  # noqa: F401

__all__ = [
    "KINDS",
    "OPS",
    "ExceptionNode",
    "MessageNode",
    "Node",
    "Op",
    "ParameterNode",
    "TracedError",
    "apply_op",
    "infer_kind",
    "install_backward",
    "node",
    "param",
    "short_repr",
]

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


# --- the node counter ------------------------------------------------------------------
# `tracekit.nodes._uids` is the counter that numbers every node (`tracekit.node_core._uids`):
# reading it here and replacing it here (a training worker moves it past the driver's,
# tracekit.training.portable) both act on the one in node_core.
if TYPE_CHECKING:
    _uids: Iterator[int]


class _NodesModule(types.ModuleType):
    @property
    def _uids(self) -> Iterator[int]:
        return node_core._uids

    @_uids.setter
    def _uids(self, counter: Iterator[int]) -> None:
        node_core._uids = counter


sys.modules[__name__].__class__ = _NodesModule
