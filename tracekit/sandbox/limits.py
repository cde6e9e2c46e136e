"""The sandbox's limits: one value object, with the defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Limits of sandboxed code.

    timeout_s: wall-clock seconds per call (and per definition); past it the worker is
        killed, the call becomes an exception node, and that version is not run again.
    memory_mb: address space the worker may add after loading its libraries (RLIMIT_AS).
    cpu_s: CPU seconds for the worker's whole life (RLIMIT_CPU); the worker is replaced
        before it runs out.
    start_timeout_s: how long a new worker may take to start and lock itself down.
    """

    timeout_s: float = 5.0
    memory_mb: int = 1024
    cpu_s: int = 600
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "cpu_s", "start_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"sandbox limit {name} must be a positive number, got {value!r}")
        if self.memory_mb < 64:
            raise ValueError(f"sandbox limit memory_mb must be at least 64, got {self.memory_mb}")


_defaults = Limits()


def defaults() -> Limits:
    """The limits used when a bundle does not give its own."""
    return _defaults


def configure(**changes: Any) -> Limits:
    """Change the default limits for this process, e.g. `configure(timeout_s=10)`;
    returns the new defaults. Unknown names raise TypeError."""
    global _defaults
    _defaults = replace(_defaults, **changes)
    return _defaults
