"""Compiled IPOPT solvers of captured problems, kept for the next solve of the same functions.

Building a solver costs a capture (the user's functions run once on a symbolic ``x``) and
CasADi's ``nlpsol`` (symbolic derivatives): about 2 ms on a small problem, where IPOPT's
own solve takes 1-5 ms. A CasADi user builds once and calls many times; this cache does
the same for ``tk.minimize`` called again with the same objective and constraint
functions (a loop over starting points or bounds, a benchmark's repeats).

A hit is only a candidate: the functions are the same objects, but what they compute may
have changed (a closure over a tensor updated in place, a global). The caller checks the
cached graph's values against the torch functions before it uses it, as for a fresh
capture (at ``x0``, and at a second point where ``x0`` has zero entries), and every
returned point is graded by the torch functions, which also compare their values with
the graph's there (a change the checks missed costs a fallback, never a wrong answer).

Entries hold weak references to the functions (a dead or reused ``id`` never matches)
and are taken out while a solve uses them, so two threads never share one solver.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CachedSolver", "SolverCache", "SOLVERS"]


@dataclass
class CachedSolver:
    """A built solver and the graph it came from."""

    solver: Any  # casadi nlpsol Function
    check: Any  # casadi Function x -> (f, constraint values), for the value checks
    sizes: list[int]  # output sizes per function (objective first)
    weight: int = 1  # variables + constraints: what the entry costs to keep



class SolverCache:
    """An LRU of ``CachedSolver`` keyed by the functions' identities, the variable's shape
    and dtype, and the solver options; at most ``size`` entries of at most ``weight``
    variables and constraints together (a solver of 10,000 variables holds about 50 MB)."""

    def __init__(self, size: int = 64, weight: int = 20_000) -> None:
        self.size, self.weight = size, weight
        self._entries: OrderedDict[tuple, tuple[list[weakref.ref], CachedSolver]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(fns: Sequence[Callable[..., Any]], shape: tuple[int, ...], dtype: Any,
            options: dict[str, Any]) -> tuple | None:
        """The cache key, or None when a function cannot be weakly referenced."""
        try:
            for fn in fns:
                weakref.ref(fn)
        except TypeError:
            return None
        return (tuple(id(fn) for fn in fns), tuple(shape), str(dtype), repr(sorted(options.items())))

    def take(self, key: tuple, fns: Sequence[Callable[..., Any]]) -> CachedSolver | None:
        """Remove and return the entry for ``key`` if it was built from these very functions."""
        with self._lock:
            got = self._entries.pop(key, None)
        if got is None:
            return None
        refs, entry = got
        if len(refs) != len(fns) or any(r() is not fn for r, fn in zip(refs, fns)):
            return None
        return entry

    def put(self, key: tuple, fns: Sequence[Callable[..., Any]], entry: CachedSolver) -> None:
        """Store (or put back) an entry; the least recently used ones go beyond the limits
        (an entry heavier than ``weight`` on its own is not kept, nor makes room)."""
        if entry.weight > self.weight:
            return
        refs = [weakref.ref(fn) for fn in fns]
        with self._lock:
            self._entries[key] = (refs, entry)
            self._entries.move_to_end(key)
            total = sum(e.weight for _, e in self._entries.values())
            while self._entries and (len(self._entries) > self.size or total > self.weight):
                total -= self._entries.popitem(last=False)[1][1].weight

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The process-wide cache used by ``ipopt.solve_ipopt``.
SOLVERS = SolverCache()
