"""`tk.Module`: a workflow with parameters, state, and save/load (a JSON manifest and a
safetensors payload for tensors, written by `tracekit.storage`; no pickle).

Parameters are found in attributes, nested modules, lists/tuples/dicts of them, and
trainable bundled methods (one code parameter per instance).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from tracekit import storage
from tracekit.bundled import BundledFunction
from tracekit.errors import StateDictError
from tracekit.nodes import ParameterNode, _is_tensor

_C = TypeVar("_C")

STATE_FORMAT = "tracekit.state/2"
#: Files of the first format (tensors as nested JSON lists) still load.
STATE_FORMATS = (STATE_FORMAT, "tracekit.state/1")


class Module:
    """Base class for trainable workflows (like torch.nn.Module, for any parameter kind)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # --- parameters ---------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, ParameterNode]]:
        """(dotted path, parameter) pairs, each parameter once, in a stable order."""
        seen: set[int] = set()
        for name, p in _walk(self, prefix, set()):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self) -> list[ParameterNode]:
        return [p for _, p in self.named_parameters()]

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{dotted path: {"kind", "value"}} of every parameter; tensors are detached copies."""
        return {name: {"kind": p.kind, "value": copy_value(p.raw)} for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Load values; with strict=True every key must match. All values are checked by each
        parameter's own validation before any is written, so a bad state leaves the model as it was."""
        if not isinstance(state, dict):
            raise StateDictError(f"a state must be a dict of {{name: {{'kind', 'value'}}}}, got {type(state).__name__}")
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if strict and (missing or unexpected):
            raise StateDictError(
                f"state does not match {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}. Load a state saved from the same model, or pass strict=False."
            )
        staged: list[tuple[ParameterNode, Any]] = []
        for name, entry in state.items():
            if name not in params:
                continue
            p = params[name]
            if not isinstance(entry, dict) or "value" not in entry:
                raise StateDictError(f"state entry {name!r} is malformed: expected {{'kind', 'value'}}")
            if entry.get("kind", p.kind) != p.kind:
                raise StateDictError(f"state entry {name!r} has kind {entry.get('kind')!r}, the model has {p.kind!r}")
            staged.append((p, validated(p, name, storage.decode(entry["value"], what=f"state entry {name!r}"))))
        for p, value in staged:
            p.write(value)  # validated above, before anything was written

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state: a JSON manifest at `path` and, when there are tensors, a safetensors
        payload beside it (`<path name>.<hash>.safetensors`); both atomic, no pickle."""
        payload = {"format": STATE_FORMAT, "model": _class_id(self), "parameters": self.state_dict()}
        return storage.save(path, payload)

    def load(self, path: str | os.PathLike, strict: bool = True) -> None:
        """Load a state saved by `save`; a damaged file, a file from another model or a value a
        parameter refuses raises StateDictError naming the problem, and nothing is changed."""
        payload = storage.load(path, "state file", STATE_FORMATS)
        if strict and payload.get("model") != _class_id(self):
            raise StateDictError(
                f"{path} was saved from model {payload.get('model')!r}, not {_class_id(self)!r}; "
                f"load it into that model, or pass strict=False to load matching keys"
            )
        if not isinstance(payload.get("parameters"), dict):
            raise StateDictError(f"{path} is not a tracekit state file (no 'parameters' dict)")
        self.load_state_dict(payload["parameters"], strict=strict)


def copy_value(value: Any) -> Any:
    """A parameter value safe to keep while the parameter changes (tensors detached and cloned)."""
    return value.detach().clone() if _is_tensor(value) else value


def validated(p: ParameterNode, name: str, value: Any) -> Any:
    """`value` as the parameter's own validation accepts it, or StateDictError naming `name`."""
    try:
        return p.validate(value)
    except RecursionError:
        raise StateDictError(f"state entry {name!r} is nested too deeply to be a value") from None
    except Exception as exc:
        raise StateDictError(f"state entry {name!r} is not a valid value: {exc}") from None


def _class_id(obj: Any) -> str:
    cls = type(obj)
    if getattr(cls, "_tracekit_model_of", None) is not None:
        cls = cls._tracekit_model_of
    return f"{cls.__module__}.{cls.__qualname__}"


def _walk(obj: Any, prefix: str, visiting: set[int]) -> Iterator[tuple[str, ParameterNode]]:
    if id(obj) in visiting:
        return
    visiting.add(id(obj))

    def join(key: Any) -> str:
        return f"{prefix}.{key}" if prefix else str(key)

    if isinstance(obj, ParameterNode):
        if obj.trainable:
            yield prefix or obj.name, obj
        return
    if isinstance(obj, Module) or _is_model_instance(obj):
        # trainable bundled methods: one code parameter per instance
        for cls in type(obj).__mro__:
            for attr, value in vars(cls).items():
                if isinstance(value, BundledFunction) and value.trainable:
                    yield join(attr), cast(ParameterNode, value.code_param_for(obj))  # trainable: one
        for attr, value in vars(obj).items():
            if attr.startswith("_tracekit"):
                continue
            yield from _walk(value, join(attr), visiting)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, join(k), visiting)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, join(i), visiting)
    elif isinstance(obj, BundledFunction):
        for p in obj.parameters():
            yield join("__code__"), p


def _is_model_instance(obj: Any) -> bool:
    return getattr(type(obj), "_tracekit_model_of", None) is not None


def model(cls: type[_C]) -> type[_C]:
    """Class decorator: make a plain class a `tk.Module` (Trace's `@model`).

    The class then has `Module`'s methods, which type checkers do not see (a decorator
    cannot add a base class for them): typed code subclasses `tk.Module` instead."""
    return model_of(cls, Module)


def model_of(cls: type[_C], base: type[Module]) -> type[_C]:
    """`cls` made a subclass of `base` (a `Module` class) that keeps its name and docs;
    `cls` itself when it already is a `Module`."""
    if issubclass(cls, Module):
        return cls
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__, "_tracekit_model_of": cls}
    return cast("type[_C]", type(cls.__name__, (cls, base), namespace))
