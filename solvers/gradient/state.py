"""Reading optimizer states saved in the first JSON form (tensors as nested lists).

States are now plain dicts holding tensors, serialised by `tracekit.storage` (JSON manifest
plus safetensors); this module only reads the old form back:
`{"__tensor__": nested list, "dtype": "float32", "shape": [...]}` becomes a CPU tensor.
"""

from __future__ import annotations

from typing import Any

import torch

_TAG = "__tensor__"


def from_jsonable(value: Any) -> Any:
    """Tagged dicts become CPU tensors again (torch moves them on load); tensors stay."""
    if isinstance(value, dict):
        if _TAG in value:
            dtype = getattr(torch, value["dtype"])
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{value['dtype']!r} is not a torch dtype")
            return torch.tensor(value[_TAG], dtype=dtype).reshape(value["shape"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value
