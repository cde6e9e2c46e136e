"""Microsoft Trace's spellings on tracekit's machinery: a Trace program runs after changing
`from opto.trace import ...` to `from tracekit.trace import ...` (and `opto.optimizers` to
`tracekit.trace`).

Everything here is an alias or a thin adapter over the core (`tk.node`, `tk.param`,
`tk.bundle`, `tk.Module`, `tk.no_trace`, `tk.Optimizer`); the differences that remain are
listed, with their reasons, in docs/coming-from-trace.md and checked by tests/compat/.
"""

from __future__ import annotations

from tracekit.context import no_trace as stop_tracing
from tracekit.nodes import ExceptionNode, MessageNode, Node, ParameterNode
from tracekit.trace import operators
from tracekit.trace.broadcast import NodeContainer, apply_op
from tracekit.trace.bundling import ExecutionError, TraceBundle, bundle
from tracekit.trace.containers import Map, Seq
from tracekit.trace.language_model import LLM
from tracekit.trace.modeling import Module, model
from tracekit.trace.nodes_api import node, to_data
from tracekit.trace.optimizers import OptoPrime, TraceOptimizer

__all__ = [
    "ExceptionNode", "ExecutionError", "LLM", "Map", "MessageNode", "Module", "Node", "NodeContainer", "OptoPrime",
    "ParameterNode", "Seq", "TraceBundle", "TraceOptimizer", "apply_op", "bundle", "model", "node",
    "operators", "stop_tracing", "to_data",
]
