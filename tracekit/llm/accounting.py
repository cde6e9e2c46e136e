"""Counting what LLM calls cost: tokens, latency, cache hits, money, and budgets.

Each backend owns one `Accounting`. Every request is recorded as a `CallRecord` and added to
the backend's totals and to every open `scope()` (how the optimizer measures one step). A
`Budget` is checked *before* a call is made, with the tokens and cost of calls still in
flight reserved, so that concurrent calls cannot pass it together.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BudgetExceeded

# USD per 1M tokens (input, output). List prices, for convenience only: check your provider
# and set your own with `backend.accounting.prices[...] = (input, output)`.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


@dataclass(frozen=True)
class CallRecord:
    """One request: what it used and how long it took."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cache_hit: bool
    cost: float
    priced: bool = True
    tokens_estimated: bool = False
    error: str | None = None
    timestamp: float = field(default_factory=time.time)


# Usage field -> the name a step report (`tk.StepReport`), a trainer's run log and its
# summary show it under: the one renaming between them.
REPORT_FIELDS = {"calls": "llm_calls", "prompt_tokens": "prompt_tokens",
                 "completion_tokens": "completion_tokens", "cost": "cost"}


@dataclass
class Usage:
    """Totals over a set of requests: the one usage type of tracekit, from a backend's
    accounting to the step report, the text solver's report info and the trainer's log.

    `calls` counts requests sent to the model (failed ones included); answers served from the
    cache count in `cache_hits` only and cost nothing. `unpriced_calls` counts calls to models
    missing from the price table (their cost is counted as 0).
    """

    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def requests(self) -> int:
        """Everything answered: model calls plus cache hits."""
        return self.calls + self.cache_hits

    def add(self, record: CallRecord) -> None:
        """Fold one record into the totals."""
        self.latency_s += record.latency_s
        if record.cache_hit:
            self.cache_hits += 1
            return
        self.calls += 1
        self.errors += record.error is not None
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.cost += record.cost
        self.unpriced_calls += not record.priced

    def copy(self) -> Usage:
        return Usage(**self.__dict__)

    def as_dict(self) -> dict[str, float]:
        return {**self.__dict__, "total_tokens": self.total_tokens}

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: Usage) -> Usage:
        """What was spent between two snapshots: `after - before`."""
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def report_fields(self) -> dict[str, float]:
        """Calls, tokens and cost under the names of a step report (`llm_calls`, ...)."""
        return {name: getattr(self, key) for key, name in REPORT_FIELDS.items()}

    @classmethod
    def from_report(cls, report: Any) -> Usage:
        """The usage a step report shows (its `llm_calls`, `prompt_tokens`, ... fields)."""
        return cls(**{key: getattr(report, name) or 0 for key, name in REPORT_FIELDS.items()})


@dataclass(frozen=True)
class Budget:
    """Upper limits on model calls, tokens and cost (None means no limit).

    A call is refused, with `BudgetExceeded`, when its worst case would pass a limit: one more
    call, the estimated prompt tokens plus `max_tokens` (when given), and their price.
    """

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None

    def check(self, used: Usage, pending: Usage, request: Usage, where: str) -> None:
        """Raise `BudgetExceeded` if `used + pending + request` passes a limit."""
        checks = (
            ("calls", self.max_calls, used.calls + pending.calls, request.calls),
            ("tokens", self.max_tokens, used.total_tokens + pending.total_tokens,
             request.total_tokens),
            ("cost (USD)", self.max_cost, used.cost + pending.cost, request.cost),
        )
        for name, maximum, spent, wanted in checks:
            if maximum is not None and spent + wanted > maximum:
                raise BudgetExceeded(name, spent, wanted, maximum, where)


class Prices(dict):
    """Model name -> (USD per 1M input tokens, USD per 1M output tokens).

    Lookup falls back to the longest table entry that prefixes the model name, so that
    "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini".
    """

    def lookup(self, model: str) -> tuple[float, float] | None:
        if model in self:
            return self[model]
        prefixes = [name for name in self if model.startswith(name)]
        return self[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
        """(cost in USD, whether the model was in the table)."""
        price = self.lookup(model)
        if price is None:
            return 0.0, False
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, True


class _Scope:
    def __init__(self, budget: Budget | None) -> None:
        self.usage = Usage()
        self.pending = Usage()
        self.budget = budget


class Reservation:
    """Tokens and cost held for a call in flight; released when the call ends."""

    def __init__(self, accounting: Accounting, usage: Usage, scopes: list[_Scope]) -> None:
        self.accounting = accounting
        self.usage = usage
        self.scopes = scopes
        self.released = False


class Accounting:
    """Thread-safe totals of one backend, open scopes, budget and price table."""

    def __init__(
        self,
        *,
        name: str = "backend",
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        keep_records: int = 10_000,
    ) -> None:
        self.name = name
        self.budget = budget
        self.prices = Prices(DEFAULT_PRICES if prices is None else prices)
        self.total = Usage()
        self.records: deque[CallRecord] = deque(maxlen=keep_records)
        self._pending = Usage()
        self._scopes: list[_Scope] = []
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------
    def totals(self) -> Usage:
        """A snapshot of this backend's totals."""
        with self._lock:
            return self.total.copy()

    def reset(self) -> None:
        """Zero the totals and forget the records (open scopes are kept)."""
        with self._lock:
            self.total = Usage()
            self.records.clear()

    @contextlib.contextmanager
    def scope(self, budget: Budget | None = None) -> Iterator[Usage]:
        """Totals of the calls made on this backend while the block runs.

        Scopes nest, and count calls from every thread and task on this backend. An optional
        budget limits the calls inside the block only.
        """
        scope = _Scope(budget)
        with self._lock:
            self._scopes.append(scope)
        try:
            yield scope.usage
        finally:
            with self._lock:
                self._scopes.remove(scope)

    # -- writing ---------------------------------------------------------------------------
    def estimate(self, model: str, prompt_tokens: int, max_tokens: int | None) -> Usage:
        """The worst case of one call, as far as it is known before making it."""
        completion = max_tokens or 0
        cost, _ = self.prices.cost(model, prompt_tokens, completion)
        return Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion, cost=cost)

    def reserve(self, request: Usage) -> Reservation:
        """Check every budget against `request` and hold it until `release`."""
        with self._lock:
            if self.budget is not None:
                self.budget.check(self.total, self._pending, request, f"backend {self.name!r}")
            for scope in self._scopes:
                if scope.budget is not None:
                    scope.budget.check(scope.usage, scope.pending, request, "an accounting scope")
            scopes = list(self._scopes)
            for target in [self._pending] + [s.pending for s in scopes]:
                _shift(target, request, +1)
            return Reservation(self, request, scopes)

    def release(self, reservation: Reservation) -> None:
        """Give back what `reserve` held (idempotent)."""
        with self._lock:
            self._release(reservation)

    def _release(self, reservation: Reservation) -> None:
        if reservation.released:
            return
        reservation.released = True
        for target in [self._pending] + [s.pending for s in reservation.scopes]:
            _shift(target, reservation.usage, -1)

    def record(self, record: CallRecord, reservation: Reservation | None = None) -> None:
        """Add one finished request to the totals and every open scope; release its hold."""
        with self._lock:
            if reservation is not None:
                self._release(reservation)
            self.records.append(record)
            self.total.add(record)
            for scope in self._scopes:
                scope.usage.add(record)
        with _process_lock:
            for usage in _process_scopes:
                usage.add(record)

    def price(self, model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
        return self.prices.cost(model, prompt_tokens, completion_tokens)


_process_scopes: list[Usage] = []
_process_lock = threading.Lock()


@contextlib.contextmanager
def process_scope() -> Iterator[Usage]:
    """Totals of the calls made by every backend of this process while the block runs.

    How a worker process counts the LLM calls of the workflows it runs (whatever backend
    objects they use), so that the driver can add them to its step report, and how the
    Trainer counts a step's calls once whichever backends made them. Scopes nest."""
    usage = Usage()
    with _process_lock:
        _process_scopes.append(usage)
    try:
        yield usage
    finally:
        with _process_lock:  # by identity: two scopes with equal totals are still two scopes
            del _process_scopes[next(i for i, u in enumerate(_process_scopes) if u is usage)]


def _shift(target: Usage, delta: Usage, sign: int) -> None:
    target.calls += sign * delta.calls
    target.prompt_tokens += sign * delta.prompt_tokens
    target.completion_tokens += sign * delta.completion_tokens
    target.cost += sign * delta.cost


def estimate_tokens(text: str) -> int:
    """A rough token count (about 4 characters per token) for budgets and plain callables."""
    return max(1, (len(text) + 3) // 4) if text else 0
