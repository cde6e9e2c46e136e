"""Small helpers shared by the ported Trace tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest


def contain(container: Iterable[Any], x: Any) -> bool:
    """Trace's `opto.trace.utils.contain`: membership by identity (nodes compare by value)."""
    return any(item is x for item in container)


def differs(reason: str) -> Any:
    """A deliberate difference from Trace: a strict xfail saying what tracekit does instead."""
    return pytest.mark.xfail(strict=True, reason=reason)
