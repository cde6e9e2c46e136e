"""A captured problem's IPOPT solver is reused for the same functions, and only while the
functions still compute what the graph computes (solvers.constrained.solver_cache)."""

from __future__ import annotations

import threading

import casadi
import pytest
import torch

import tracekit as tk
from solvers.constrained import solver_cache
from solvers.constrained.solver_cache import SOLVERS, CachedSolver, SolverCache


@pytest.fixture
def builds(monkeypatch):
    """Counts the IPOPT solvers built (casadi.nlpsol calls), on an empty cache."""
    SOLVERS.clear()
    count = [0]
    real = casadi.nlpsol

    def counting(*a, **k):
        count[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(casadi, "nlpsol", counting)
    yield count
    SOLVERS.clear()


def hs71():
    f = lambda x: x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]  # noqa: E731
    cons = [tk.Ineq(lambda x: 25 - x.prod()), tk.Eq(lambda x: (x**2).sum() - 40)]
    return f, cons


X0 = torch.tensor([1.0, 5.0, 5.0, 1.0], dtype=torch.float64)


def test_a_second_solve_of_the_same_functions_reuses_the_solver(builds):
    f, cons = hs71()
    first = tk.minimize(f, X0, cons, bounds=(1.0, 5.0), method="ipopt")
    second = tk.minimize(f, X0 + 0.1, cons, bounds=(1.0, 5.0), method="ipopt")
    assert builds[0] == 1
    assert first.success and second.success
    assert second.info["ipopt_derivatives"] == "captured"
    assert abs(second.fun - 17.0140173) < 1e-6
    assert torch.allclose(first.x, second.x, atol=1e-6)


def test_new_bounds_reuse_the_solver_and_are_obeyed(builds):
    f = lambda x: ((x - 3.0) ** 2).sum()  # noqa: E731
    a = tk.minimize(f, torch.zeros(3, dtype=torch.float64), bounds=(-1.0, 1.0), method="ipopt")
    b = tk.minimize(f, torch.zeros(3, dtype=torch.float64), bounds=(-1.0, 2.0), method="ipopt")
    assert builds[0] == 1
    assert torch.allclose(a.x, torch.ones(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(b.x, torch.full((3,), 2.0, dtype=torch.float64), atol=1e-6)


def test_a_constant_changed_in_place_is_captured_again(builds):
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)
    f = lambda x: ((x - target) ** 2).sum()  # noqa: E731
    x0 = torch.zeros(2, dtype=torch.float64)
    a = tk.minimize(f, x0, method="ipopt")
    target.mul_(3.0)  # the same function object now computes something else
    b = tk.minimize(f, x0, method="ipopt")
    assert builds[0] == 2
    assert torch.allclose(a.x, torch.tensor([1.0, -2.0], dtype=torch.float64), atol=1e-7)
    assert torch.allclose(b.x, torch.tensor([3.0, -6.0], dtype=torch.float64), atol=1e-7)
    c = tk.minimize(f, x0, method="ipopt")  # and that new graph is reused in turn
    assert builds[0] == 2 and torch.allclose(c.x, b.x)


def test_a_change_invisible_at_x0_is_caught_at_the_second_point(builds):
    scale = [1.0]
    f = lambda x: ((x - 1.0) ** 2).sum() + scale[0] * x[0] * x[1]  # noqa: E731
    x0 = torch.zeros(2, dtype=torch.float64)  # the product term is 0 there whatever the scale
    a = tk.minimize(f, x0, method="ipopt")
    scale[0] = -1.0
    b = tk.minimize(f, x0, method="ipopt")
    assert builds[0] == 2
    assert torch.allclose(a.x, torch.full((2,), 2.0 / 3.0, dtype=torch.float64), atol=1e-7)
    assert torch.allclose(b.x, torch.full((2,), 2.0, dtype=torch.float64), atol=1e-7)


def test_other_options_or_reuse_off_build_anew(builds):
    f, cons = hs71()
    tk.minimize(f, X0, cons, bounds=(1.0, 5.0), method="ipopt")
    tk.minimize(f, X0, cons, bounds=(1.0, 5.0), method="ipopt", options={"mu_strategy": "adaptive"})
    assert builds[0] == 2
    tk.minimize(f, X0, cons, bounds=(1.0, 5.0), method="ipopt", options={"reuse": False})
    tk.minimize(f, X0, cons, bounds=(1.0, 5.0), method="ipopt", options={"reuse": False})
    assert builds[0] == 4


def test_auto_reuses_too(builds):
    f, cons = hs71()
    for _ in range(3):
        r = tk.minimize(f, X0, cons, bounds=(1.0, 5.0))
        assert r.success
    assert builds[0] == 1


def test_concurrent_solves_of_the_same_functions_are_right():
    SOLVERS.clear()
    f, cons = hs71()
    results: list = []

    def solve(shift: float) -> None:
        for _ in range(5):
            results.append(tk.minimize(f, X0 + shift, cons, bounds=(1.0, 5.0), method="ipopt"))

    threads = [threading.Thread(target=solve, args=(0.05 * i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert all(r.success and abs(r.fun - 17.0140173) < 1e-6 for r in results)


def test_the_cache_keeps_only_live_identical_functions():
    cache = SolverCache(size=2)

    def f(x):
        return x

    def g(x):
        return x

    entry = CachedSolver(solver=object(), check=object(), sizes=[1])
    key = cache.key([f], (2,), torch.float64, {})
    assert key is not None
    cache.put(key, [f], entry)
    assert cache.take(key, [g]) is None  # another function under the same key (a reused id)
    cache.put(key, [f], entry)
    assert cache.take(key, [f]) is entry
    assert cache.take(key, [f]) is None  # taken out while in use
    for i in range(3):
        cache.put(("k", i), [f], entry)
    assert len(cache) == 2  # least recently used first out
    heavy = SolverCache(size=10, weight=100)
    for i in range(3):
        heavy.put(("k", i), [f], CachedSolver(object(), object(), [1], weight=40))
    assert len(heavy) == 2  # within the weight
    heavy.put(("big",), [f], CachedSolver(object(), object(), [1], weight=101))
    assert len(heavy) == 2  # too heavy to keep at all, and it pushes nothing out

    class Slotted:  # a callable without weak references is never cached
        __slots__ = ()

        def __call__(self, x):
            return x

    assert SolverCache.key([Slotted()], (2,), torch.float64, {}) is None
    assert solver_cache.SOLVERS is SOLVERS
