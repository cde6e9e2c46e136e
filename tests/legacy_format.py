"""The first on-disk format (tensors as nested JSON lists), copied from the encoders it
replaced, so tests can write files exactly as older tracekit versions did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

_TAG = "__tensor__"


def to_jsonable(value: Any) -> Any:
    """The old `solvers.gradient.state.to_jsonable` (optimizer state)."""
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


def encode_value(value: Any) -> Any:
    """The old `tracekit.module.encode_value` (module state)."""
    if isinstance(value, torch.Tensor):
        return {_TAG: value.detach().cpu().tolist(), "dtype": str(value.dtype).replace("torch.", ""),
                "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode_value(v) for v in value]}
    return value


def save_module_v1(module: Any, path: Path) -> Path:
    """What `Module.save` wrote in format tracekit.state/1: one JSON file."""
    from tracekit.module import _class_id

    params = {name: {"kind": p.kind, "value": encode_value(p.raw)} for name, p in module.named_parameters()}
    path.write_text(json.dumps({"format": "tracekit.state/1", "model": _class_id(module), "parameters": params},
                               indent=1))
    return path
