"""The sandbox for code that did not come from the user's own files.

A code parameter's proposals, loaded code and assigned sources are defined and run in one
persistent worker process that has a clean environment and is locked down by the kernel
(Landlock: no writes, reads only of libraries; seccomp: no network, exec, new processes or
signals to others; rlimits: memory and CPU), with a wall-clock limit per call. Only plain
data crosses (`wire`). See docs/code-safety.md.

    tk.sandbox.status()          # None when the sandbox works here, else why not
    tk.sandbox.configure(timeout_s=10, memory_mb=2048)
"""

from __future__ import annotations

from tracekit.sandbox.limits import Limits, configure, defaults


def status() -> str | None:
    """None when code can be sandboxed on this system; otherwise the reason it cannot."""
    from tracekit.sandbox.isolation import unavailable

    return unavailable()


def shutdown() -> None:
    """Stop this process's sandbox workers (a later call starts a new one)."""
    from tracekit.sandbox.client import shutdown as stop_all

    stop_all()


__all__ = ["Limits", "configure", "defaults", "shutdown", "status"]
