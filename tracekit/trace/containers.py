"""Trace's `Seq` and `Map`: a list and a dict that report the parameters they hold
(keys included). They are `list` and `dict` subclasses, so a model holding one finds the
parameters inside as it does in plain lists and dicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tracekit.nodes import Node, ParameterNode


def _parameters(value: Any, seen: set[int]) -> Iterator[ParameterNode]:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, ParameterNode):
        if value.trainable:
            yield value
    elif isinstance(value, Node):
        return
    elif isinstance(value, (Seq, Map)):
        yield from value._own_parameters(seen)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _parameters(item, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _parameters(key, seen)
            yield from _parameters(item, seen)
    elif hasattr(value, "parameters") and callable(value.parameters):
        yield from value.parameters()


class Seq(list):
    """A list of values, nodes and containers: `Seq([1, x])` or `Seq(1, x)`."""

    def __init__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            super().__init__(args[0])
        else:
            super().__init__(args)

    def _own_parameters(self, seen: set[int]) -> Iterator[ParameterNode]:
        for item in self:
            yield from _parameters(item, seen)

    def parameters(self) -> list[ParameterNode]:
        """The trainable parameters inside, nested containers included, each once."""
        return list(self._own_parameters(set()))

    def parameters_dict(self) -> dict[str, ParameterNode]:
        return {p.name: p for p in self.parameters()}


class Map(dict):
    """A dict whose keys and values may be parameters (Trace's `Map`)."""

    def __init__(self, mapping: Any = None) -> None:
        super().__init__(mapping or {})

    def _own_parameters(self, seen: set[int]) -> Iterator[ParameterNode]:
        for key, item in self.items():
            yield from _parameters(key, seen)
            yield from _parameters(item, seen)

    def parameters(self) -> list[ParameterNode]:
        """The trainable parameters among keys and values, nested containers included."""
        return list(self._own_parameters(set()))

    def parameters_dict(self) -> dict[str, ParameterNode]:
        return {p.name: p for p in self.parameters()}
