"""Optimizer state <-> JSON-friendly values.

Tensors become `{"__tensor__": nested list, "dtype": "float32", "shape": [...]}`, tuples
become lists. Fine for small states (a few hundred thousand numbers); for large models
save the native state dict with `torch.save` instead.
"""

from __future__ import annotations

from typing import Any

import torch

_TAG = "__tensor__"


def to_jsonable(value: Any) -> Any:
    """A copy of `value` made of dicts, lists, strings, numbers, bools and None."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return {_TAG: t.tolist(), "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return value


def from_jsonable(value: Any) -> Any:
    """Undo `to_jsonable`: tagged dicts become CPU tensors again (torch moves them on load)."""
    if isinstance(value, dict):
        if _TAG in value:
            dtype = getattr(torch, value["dtype"])
            return torch.tensor(value[_TAG], dtype=dtype).reshape(value["shape"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def is_jsonable_form(value: Any) -> bool:
    """True when a state dict holds tagged tensors (came from `to_jsonable`)."""
    if isinstance(value, dict):
        return _TAG in value or any(is_jsonable_form(v) for v in value.values())
    if isinstance(value, list):
        return any(is_jsonable_form(v) for v in value)
    return False
