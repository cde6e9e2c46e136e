"""Trace's `Module` and `@model`: tk.Module plus Trace's `parameters_dict()`."""

from __future__ import annotations

from typing import Any, TypeVar

from tracekit import module as core_module
from tracekit.bundled import BundledFunction
from tracekit.nodes import ParameterNode


class Module(core_module.Module):
    """`tk.Module` with Trace's `parameters_dict()`."""

    def parameters_dict(self) -> dict[str, Any]:
        """Trace's view: attribute name -> its parameter (a trainable value, or the code of a
        trainable bundled method or function), or the sub-module / container holding some."""
        out: dict[str, Any] = {}
        for path, p in self.named_parameters():
            head = path.split(".")[0]
            value = _attribute(self, head)
            if isinstance(value, (ParameterNode, BundledFunction)) or value is None:
                out[head] = p
            else:
                out[head] = value
        return out


def _attribute(obj: Any, name: str) -> Any:
    if name in vars(obj):
        return vars(obj)[name]
    for cls in type(obj).__mro__:
        if name in vars(cls):
            return vars(cls)[name]
    return None


_C = TypeVar("_C")


def model(cls: type[_C]) -> type[_C]:
    """Class decorator: make a plain class a `Module` (Trace's `@model`, as `tk.model`)."""
    return core_module.model_of(cls, Module)
