"""Per-thread / per-task tracing context, kept in contextvars (no shared mutable state).

Two things live here: whether tracing is switched off (`no_trace`) and the collector
that records which parameter nodes a bundled function reads while it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

# A list that ParameterNode.data appends to while a bundled function runs, or None.
used_nodes: ContextVar[list | None] = ContextVar("tracekit_used_nodes", default=None)
tracing_enabled: ContextVar[bool] = ContextVar("tracekit_tracing_enabled", default=True)


@contextlib.contextmanager
def no_trace() -> Iterator[None]:
    """Run code without recording a graph: bundled functions return plain values."""
    token = tracing_enabled.set(False)
    try:
        yield
    finally:
        tracing_enabled.reset(token)
