"""Parameters: `ParameterNode`, the trainable leaf of a traced graph (text, code, numeric,
categorical or demos), how its kind is inferred and how its initial value is checked."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tracekit import arguments, kinds
from tracekit.errors import InvalidValueError
from tracekit.node_core import Node
from tracekit.values import _is_ndarray, _is_tensor

KINDS = ("text", "code", "numeric", "categorical", "demos")

_NODE_DATA: property = vars(Node)["data"]  # Node's `data` property, whose getter parameters share


class ParameterNode(Node):
    """A trainable leaf: text, code, numeric (number or tensor) or categorical.

    Assigning `param.data = v` (or `param.set(v)`) validates and casts `v` for the kind;
    a refused value raises `InvalidValueError` and the old value stays in place.
    `route`: the optimizer route that trains it, when its kind does not say (None: chosen
    by kind and feedback, `tk.optimizer.route_of`); e.g. `tk.Predict`'s `demo_selection`, a
    categorical, is trained by the demo solver together with the demos.
    """

    __slots__ = ("kind", "description", "bounds", "choices", "feedback", "validator",
                 "trainable", "value_type", "constraints", "route")
    is_parameter = True

    def __init__(
        self,
        value: Any,
        name: str | None = None,
        kind: str | None = None,
        description: str | None = None,
        bounds: tuple[float, float] | None = None,
        choices: Sequence[Any] | None = None,
        trainable: bool = True,
        validator: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(value, Node):
            value = value._data
        arguments.optional_text("name", name, empty=False)
        arguments.optional_text("description", description)
        arguments.flag("trainable", trainable)
        arguments.function("validator", validator, "a callable validator(value)", optional=True)
        if choices is not None and (isinstance(choices, (str, bytes, dict))
                                    or not isinstance(choices, (list, tuple, range))):
            raise TypeError(f"choices must be a list of the allowed values, got {type(choices).__name__}")
        if choices is not None and not choices:
            raise ValueError("choices must not be empty: list the allowed values")
        kind = infer_kind(value, kind, choices)
        value = _prepare_value(value, kind)
        super().__init__(value, name=name)
        self.kind = kind
        self.description = description
        self.bounds = _check_bounds(bounds, name)
        self.choices = list(choices) if choices is not None else None
        if self.choices is not None and value not in self.choices:
            raise InvalidValueError(
                f"parameter {name!r}: initial value {value!r} is not one of choices {self.choices!r}; "
                f"add it to choices or start from one of them"
            )
        self.feedback: list = []
        self.validator = validator
        self.trainable = trainable
        self.value_type = type(value)
        self.constraints: list = []
        self.route: str | None = None
        if self.bounds is not None and kind == "numeric":
            self._check_in_bounds(value)
        try:  # the initial value must pass the parameter's own validation, as every later one
            kinds.accept(self, value)
        except InvalidValueError as exc:
            raise InvalidValueError(f"initial value refused: {exc}") from None

    def _default_prefix(self) -> str:
        return "param"

    # same getter as Node.data (records reads inside bundles); assignment validates
    data = property(_NODE_DATA.fget, lambda self, value: self.set(value), doc=_NODE_DATA.__doc__)

    @property
    def is_tensor(self) -> bool:
        return _is_tensor(self._data)

    def validate(self, value: Any) -> Any:
        """Return `value` in the form this parameter stores, or raise InvalidValueError:
        `tracekit.kinds.accept` (the rule shared by assignment, loading, solvers and the
        step's apply; out-of-bounds values are refused, not clamped), then `validator`."""
        if isinstance(value, Node):
            value = value._data
        value = kinds.accept(self, value)  # the one definition of a valid value per kind
        if self.validator is not None:
            result = self.validator(value)
            value = value if result is None else result
        return value

    def set(self, value: Any) -> None:
        """Validate and store a new value; tensors are updated in place (same object)."""
        self.write(self.validate(value))

    def write(self, value: Any) -> None:
        """Store a value that `validate` returned, without checking it again: for callers
        that validate everything first and write after (loading, the optimizer's apply)."""
        if _is_tensor(self._data):
            import torch

            with torch.no_grad():
                self._data.copy_(value)
        else:
            self._data = value

    @contextlib.contextmanager
    def trial(self, value: Any) -> Iterator[None]:
        """Hold a validated `value` inside the `with` block, then put the old value back
        (also on errors): how candidate values are tried without being kept."""
        if _is_tensor(self._data):
            import torch

            old = self._data.detach().clone()
            self.set(value)
            try:
                yield
            finally:
                with torch.no_grad():
                    self._data.copy_(old)
        else:
            old = self._data
            self.set(value)
            try:
                yield
            finally:
                self._data = old  # the value it held before: already validated

    def _check_in_bounds(self, value: Any) -> None:
        kinds.check_bounds(value, self.bounds, f"parameter {self.name!r}: initial value")


def infer_kind(value: Any, kind: str | None, choices: Sequence[Any] | None) -> str:
    """The kind of a parameter: given, or inferred from choices and the value's type."""
    if kind is not None:
        if kind not in KINDS:
            raise InvalidValueError(f"unknown parameter kind {kind!r}; use one of {KINDS}")
        return kind
    if choices is not None:
        return "categorical"
    if isinstance(value, bool):
        raise InvalidValueError(
            "cannot infer a kind for a bool value; pass choices=[False, True] (categorical)"
        )
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float)) or _is_tensor(value) or _is_ndarray(value):
        return "numeric"
    if isinstance(value, (list, dict, tuple)):
        return "text"
    raise InvalidValueError(
        f"cannot infer a parameter kind for a value of type {type(value).__name__}; "
        f"pass kind= one of {KINDS} (and choices= for a categorical parameter)"
    )


def _prepare_value(value: Any, kind: str) -> Any:
    """Numeric arrays become tensors; floating tensors get requires_grad."""
    if kind != "numeric":
        return value
    if _is_ndarray(value):
        import torch

        value = torch.from_numpy(value.copy())
    if _is_tensor(value):
        if value.grad_fn is not None:
            value = value.detach().clone()
        if value.is_floating_point() or value.is_complex():
            value.requires_grad_(True)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValueError(f"numeric parameter value must be finite, got {value!r}")
        return value
    raise InvalidValueError(
        f"a numeric parameter needs an int, float, numpy array or torch tensor, got {type(value).__name__}"
    )


def _check_bounds(bounds: Any, name: str | None) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = bounds
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise InvalidValueError(f"parameter {name!r}: bounds must be a pair (low, high), got {bounds!r}") from None
    if math.isnan(lo) or math.isnan(hi):
        raise InvalidValueError(f"parameter {name!r}: bounds must not be NaN, got {bounds!r}; "
                                f"use -inf/inf for a missing bound")
    if lo > hi:
        raise InvalidValueError(f"parameter {name!r}: bounds low {lo} is above high {hi}; swap them")
    return (lo, hi)

