"""Per-thread / per-task tracing context, kept in contextvars (no shared mutable state).

Two things live here: whether tracing is switched off (`no_trace`) and the collector
that records which parameter nodes a bundled function reads while it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class _Discard:
    """The collector under `no_trace`: reads are not recorded."""

    __slots__ = ()

    def append(self, node: object) -> None:
        pass


# What Node.data appends to while a bundled function runs: a list (traced call),
# a _Discard (no_trace), or None (top level: the next bundled call is traced).
used_nodes: ContextVar[list | _Discard | None] = ContextVar("tracekit_used_nodes", default=None)


@contextlib.contextmanager
def no_trace() -> Iterator[None]:
    """Run code without recording a graph: bundled functions return plain values."""
    token = used_nodes.set(_Discard())
    try:
        yield
    finally:
        used_nodes.reset(token)


def is_tracing() -> bool:
    """True when a bundled function called here would record a node."""
    return used_nodes.get() is None


def tracing_disabled() -> bool:
    """True inside `no_trace()` (and only there): operators then record no parents."""
    return isinstance(used_nodes.get(), _Discard)
