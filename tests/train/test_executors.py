"""Parallel evaluation: order, concurrency limit, per-example exceptions, async workflows."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tracekit as tk
from tests.train.helpers import DATA, accuracy, register_plan
from tracekit.bundled import bundle
from tracekit.context import is_tracing
from tracekit.training import AsyncExecutor, SerialExecutor, ThreadExecutor, Trainer


class Gauge:
    """Counts items in flight and remembers the most seen at once."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("executor", [ThreadExecutor(3), AsyncExecutor(3), SerialExecutor()])
def test_results_come_back_in_order_and_exceptions_stay_per_item(executor):
    gauge = Gauge()

    def work(i):
        with gauge:
            time.sleep(0.02 * ((7 * i) % 5))  # finish out of order
            if i % 4 == 3:
                raise ValueError(f"bad item {i}")
            return i * i

    outcomes = executor.map(work, list(range(12)))
    assert [o.value for o in outcomes if o.ok] == [i * i for i in range(12) if i % 4 != 3]
    failed = [i for i, o in enumerate(outcomes) if not o.ok]
    assert failed == [3, 7, 11]
    assert "bad item 7" in str(outcomes[7].error) and "ValueError" in outcomes[7].traceback
    assert gauge.peak <= executor.max_concurrency
    if executor.max_concurrency > 1:
        assert gauge.peak > 1  # really parallel


def test_async_executor_runs_coroutines_concurrently_with_a_limit():
    gauge = Gauge()

    async def work(i):
        with gauge:
            await asyncio.sleep(0.05)
        if i == 2:
            raise RuntimeError("boom")
        return -i

    start = time.perf_counter()
    outcomes = AsyncExecutor(max_concurrency=4).map(work, list(range(8)))
    elapsed = time.perf_counter() - start
    assert [o.value for o in outcomes] == [0, -1, None, -3, -4, -5, -6, -7]
    assert isinstance(outcomes[2].error, RuntimeError)
    assert gauge.peak == 4 and elapsed < 0.35  # 2 waves of 0.05 s, not 8

    async def inside_a_loop():  # map() also works from a thread that runs an event loop
        return AsyncExecutor(2).map(work, [0, 1])

    assert [o.value for o in asyncio.run(inside_a_loop())] == [0, -1]


def test_threads_inherit_the_callers_context():
    with tk.no_trace():
        outcomes = ThreadExecutor(4).map(lambda _: is_tracing(), range(4))
    assert [o.value for o in outcomes] == [False] * 4


def test_exceptions_in_the_workflow_become_feedback_not_a_crash(empty_registry):
    built = []
    register_plan("text", {"keywords": ["good, great, nice, lovely"]}, built)

    @bundle()
    def fragile(text, keywords):
        if text.startswith("bad"):
            raise KeyError("no sentiment for 'bad'")
        keys = {k.strip() for k in keywords.split(",")}
        return "pos" if keys & set(text.split()) else "neg"

    class Fragile(tk.Module):
        def __init__(self):
            self.keywords = tk.param("good", name="keywords")

        def forward(self, text):
            if text.startswith("rude"):
                raise ZeroDivisionError("outside any bundle")
            return fragile(text, self.keywords)

    model = Fragile()
    opt = tk.Optimizer([model.keywords])
    trainer = Trainer(model, opt, accuracy, train=DATA, val=DATA, batch_size=8, max_steps=1,
                      progress=False, batch_objective=False, executor=ThreadExecutor(4), trace_examples=None)
    initial = trainer.evaluate()
    assert initial.errors == 2 and initial.results[4].score == 0.0
    assert "KeyError" in initial.results[4].error and "ZeroDivisionError" in initial.results[6].error
    result = trainer.fit()
    assert result.history[1]["train_errors"] == 2
    text = built[0].seen_feedback[0]
    assert "raised 2 an error" not in text and "2 raised an error" in text
    assert "(KeyError)" in text and "ZeroDivisionError: outside any bundle" in text
    assert result.best_score == 0.75  # everything but the two failing examples


def test_async_workflow_and_async_metric_train_with_the_async_executor(empty_registry):
    register_plan("text", {"keywords": ["good, great, nice, lovely"]})
    gauge = Gauge()

    @bundle()
    async def classify_async(text, keywords):
        with gauge:
            await asyncio.sleep(0.02)
        keys = {k.strip() for k in keywords.split(",")}
        return "pos" if keys & set(text.split()) else "neg"

    class AsyncModel(tk.Module):
        def __init__(self):
            self.keywords = tk.param("good", name="keywords")

        def forward(self, text):
            return classify_async(text, self.keywords)

    async def metric(prediction, example):
        await asyncio.sleep(0)
        return accuracy(prediction, example)

    model = AsyncModel()
    opt = tk.Optimizer([model.keywords])
    result = Trainer(model, opt, metric, train=DATA, val=DATA, batch_size=8, max_steps=1,
                     executor="async", max_concurrency=4, progress=False).fit()
    assert result.initial_score == 0.625 and result.best_score == 1.0
    assert 1 < gauge.peak <= 4
    assert model.keywords.data == "good, great, nice, lovely"
