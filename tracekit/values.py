"""Plain values as the tracing core sees them, without importing torch or numpy: tensor and
array tests, one-line previews and equality (`==` on nodes compares values)."""

from __future__ import annotations

import sys
from typing import Any


def _is_tensor(value: Any) -> bool:
    """True for a torch tensor, without importing torch when it was never imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_ndarray(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def short_repr(value: Any, limit: int = 80) -> str:
    """A one-line preview of a value, cut with a marker when long."""
    if _is_tensor(value):
        text = f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')})"
        if value.numel() <= 8:
            text = repr(value.detach().cpu().tolist())
    else:
        text = repr(value)
    text = text.replace("\n", "\\n")
    if len(text) > limit:
        text = text[: limit - 12] + f"...[+{len(text) - limit + 12} chars]"
    return text


def _values_equal(a: Any, b: Any) -> bool:
    if _is_tensor(a) or _is_tensor(b) or _is_ndarray(a) or _is_ndarray(b):
        try:
            import numpy as np

            to_np = lambda v: v.detach().cpu().numpy() if _is_tensor(v) else np.asarray(v)  # noqa: E731
            return bool(np.array_equal(to_np(a), to_np(b)))
        except Exception:
            return a is b
    try:
        return bool(a == b)
    except Exception:
        return a is b
