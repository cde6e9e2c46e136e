"""Accounting: totals, scopes, prices and budgets that stop before the call."""

from __future__ import annotations

import threading

import pytest

from tracekit.llm import Accounting, Budget, BudgetExceeded, CallRecord, Prices, Usage


def record(prompt=10, completion=5, cost=0.0, cache_hit=False, error=None):
    return CallRecord("m", prompt, completion, 0.01, cache_hit, cost, error=error)


def test_totals_and_nested_scopes():
    accounting = Accounting()
    accounting.record(record())
    with accounting.scope() as outer:
        accounting.record(record(cost=0.5))
        with accounting.scope() as inner:
            accounting.record(record(cache_hit=True))
            accounting.record(record(error="boom"))
    accounting.record(record())
    assert (inner.calls, inner.cache_hits, inner.errors) == (1, 1, 1)
    assert (outer.calls, outer.cache_hits, outer.prompt_tokens) == (2, 1, 20)
    assert outer.cost == pytest.approx(0.5)
    total = accounting.totals()
    assert (total.calls, total.cache_hits, total.total_tokens, total.requests) == (4, 1, 60, 5)
    accounting.reset()
    assert accounting.totals() == Usage()


def test_prices_match_the_longest_prefix():
    prices = Prices({"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)})
    assert prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == (0.15, True)
    assert prices.cost("gpt-4o-2024", 0, 1_000_000) == (10.0, True)
    assert prices.cost("llama", 10, 10) == (0.0, False)


def test_budget_refuses_the_call_that_would_pass_it():
    accounting = Accounting(budget=Budget(max_calls=2, max_tokens=100))
    for _ in range(2):
        accounting.record(record(), accounting.reserve(Usage(calls=1, prompt_tokens=10)))
    with pytest.raises(BudgetExceeded) as info:
        accounting.reserve(Usage(calls=1))
    assert info.value.limit == "calls" and "not made" in str(info.value)
    accounting.budget = Budget(max_tokens=40)
    with pytest.raises(BudgetExceeded, match="tokens"):
        accounting.reserve(Usage(calls=1, prompt_tokens=5, completion_tokens=6))  # 30 + 11 > 40


def test_reservations_hold_budget_for_calls_in_flight():
    accounting = Accounting(budget=Budget(max_calls=3))
    granted, refused = [], []
    barrier = threading.Barrier(6)

    def attempt():
        barrier.wait()
        try:
            granted.append(accounting.reserve(Usage(calls=1)))
        except BudgetExceeded:
            refused.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 3 and len(refused) == 3
    for reservation in granted:
        accounting.release(reservation)
    accounting.reserve(Usage(calls=1))  # released reservations free the budget again


def test_scope_budget_applies_inside_the_block_only():
    accounting = Accounting()
    with accounting.scope(budget=Budget(max_calls=1)):
        accounting.record(record(), accounting.reserve(Usage(calls=1)))
        with pytest.raises(BudgetExceeded, match="scope"):
            accounting.reserve(Usage(calls=1))
    accounting.reserve(Usage(calls=1))
