"""Checks of public arguments, each error naming the argument and what it accepts.

Used by `tk.param`, `tk.bundle` and `tk.Trainer` before any work, so a wrong argument is a
TypeError (wrong type) or ValueError (right type, wrong value) whose message starts with
the argument's name, never an error from deep inside a later call.
"""

from __future__ import annotations

import math
import os
from typing import Any


def flag(name: str, value: Any) -> bool:
    """True or False (not 1, "yes"...)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def optional_text(name: str, value: Any, *, empty: bool = True) -> str | None:
    """None or a string (non-empty unless `empty`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ValueError(f"{name} must not be empty; pass a name or None")
    return value


def count(name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> int | None:
    """A whole number >= `minimum` (or None when `optional`)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number >= {minimum}{' or None' if optional else ''}, "
                        f"got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' or None' if optional else ''}, got {value}")
    return value


def number(name: str, value: Any, *, minimum: float | None = None) -> float:
    """A finite real number (>= `minimum` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def function(name: str, value: Any, what: str, *, optional: bool = False) -> Any:
    """A callable (or None when `optional`)."""
    if value is None and optional:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def path(name: str, value: Any) -> Any:
    """None, a string or an os.PathLike."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path) or None, got {type(value).__name__}")
    return value
