"""The search space: one `Float`, `Int` or `Categorical` per named value.

Each dimension knows its Optuna distribution over a given interval, how a value is stored
in a trial (`encode`) and read back (`decode`), and a JSON description (`describe`) that
a saved state must match. A categorical is searched over the positions of its choices
(Optuna's `CategoricalDistribution([0, 1, ...])`), so any Python objects can be choices
and a saved state stays JSON; choices are matched by position when a state is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _side(value: float | None) -> float | None:
    """A bound as a finite float, or None for an open side (None, -inf or inf)."""
    if value is None or math.isinf(float(value)):
        return None
    if math.isnan(float(value)):
        raise ValueError("a bound must not be NaN")
    return float(value)


@dataclass(frozen=True)
class Float:
    """A real number in [low, high]. A side given as None or +-inf is open: the search
    starts on an interval around the start value and widens it (`solvers.search.interval`)."""

    low: float | None = None
    high: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        low, high = _side(self.low), _side(self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if low is not None and high is not None and low > high:
            raise ValueError(f"Float: low {low} is above high {high}")
        if self.log and (low is None or high is None or low <= 0):
            raise ValueError("Float(log=True) needs finite bounds with low > 0")

    integer = False

    def distribution(self, interval: tuple[float, float]) -> Any:
        """Optuna's FloatDistribution over `interval`."""
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(interval[0]), float(interval[1]), log=self.log)

    def encode(self, value: Any) -> float:
        """The value as a trial stores it: a float."""
        return float(value)

    def decode(self, stored: Any) -> float:
        """The value a trial stored, as the caller gets it."""
        return float(stored)

    def describe(self) -> dict[str, Any]:
        """JSON description, compared when a state is loaded."""
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (a side given as None or +-inf is open, as for `Float`);
    fractional bounds are rounded inwards."""

    low: float | None = None
    high: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        low, high = _side(self.low), _side(self.high)
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if low is not None and high is not None and low > high:
            raise ValueError(f"Int: no integer between low {self.low} and high {self.high}")
        if self.log and (low is None or high is None or low < 1):
            raise ValueError("Int(log=True) needs finite bounds with low >= 1")

    integer = True

    def distribution(self, interval: tuple[float, float]) -> Any:
        """Optuna's IntDistribution over `interval`."""
        from optuna.distributions import IntDistribution

        return IntDistribution(int(interval[0]), int(interval[1]), log=self.log)

    def encode(self, value: Any) -> int:
        """The value as a trial stores it: an int (a whole float is accepted)."""
        if float(value) != round(float(value)):
            raise ValueError(f"Int: {value!r} is not a whole number")
        return int(round(float(value)))

    def decode(self, stored: Any) -> int:
        """The value a trial stored, as the caller gets it."""
        return int(stored)

    def describe(self) -> dict[str, Any]:
        """JSON description, compared when a state is loaded."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Categorical:
    """One of `choices` (any Python objects), searched by position."""

    choices: tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError("Categorical needs at least one choice")

    integer = False
    low = None
    high = None

    def distribution(self, interval: tuple[float, float] | None = None) -> Any:
        """Optuna's CategoricalDistribution over the positions 0 .. n-1."""
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(range(len(self.choices))))

    def encode(self, value: Any) -> int:
        """The position of `value` among the choices (the same object first, else equal)."""
        for i, choice in enumerate(self.choices):
            if choice is value:
                return i
        for i, choice in enumerate(self.choices):
            if choice == value:
                return i
        raise ValueError(f"Categorical: {value!r} is not one of {list(self.choices)!r}")

    def decode(self, stored: Any) -> Any:
        """The choice at the stored position."""
        return self.choices[int(stored)]

    def describe(self) -> dict[str, Any]:
        """JSON description (the number of choices), compared when a state is loaded."""
        return {"type": "categorical", "n_choices": len(self.choices)}


Dimension = Float | Int | Categorical
