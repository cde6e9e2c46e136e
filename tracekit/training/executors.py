"""Executors: how the Trainer evaluates many examples at once.

An executor maps a function over items and returns one `Outcome` per item, in the
order of the items. An exception raised for one item is caught and returned in its
`Outcome` (it never stops the other items), so a failing example becomes feedback,
not a crashed run.

    SerialExecutor()                    # one after the other (debugging)
    ThreadExecutor(max_workers=8)       # the default: a thread pool
    AsyncExecutor(max_concurrency=8)    # async workflows: coroutines on one event loop
    RayExecutor(num_cpus=2)             # a Ray cluster (optional extra: tracekit[ray])

Write your own by subclassing `Executor` and implementing `map` (and setting
`in_process = False` when items run in other processes: the Trainer then uses the
executor only for evaluations that need no traced graph, i.e. validation).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tracekit.errors import describe


@dataclass
class Outcome:
    """The result of one item: `value`, or the `error` it raised (with its traceback text)."""

    value: Any = None
    error: BaseException | None = None
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _capture(exc: BaseException) -> Outcome:
    return Outcome(error=exc, traceback="".join(traceback.format_exception(exc)))


class Executor:
    """Maps a function over items; results in order, exceptions per item (see module doc).

    `in_process`: True when the function runs in this process, so traced graphs and
    parameter objects are shared with the caller.
    """

    in_process: bool = True
    max_concurrency: int = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for executors that own nothing)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _run_one(fn: Callable[[Any], Any], item: Any) -> Outcome:
    try:
        value = fn(item)
        if inspect.isawaitable(value):
            value = _run_coroutine(value)
        return Outcome(value=value)
    except Exception as exc:  # one example's failure is data, not a crash
        return _capture(exc)


class SerialExecutor(Executor):
    """Runs items one after the other in the calling thread."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        return [_run_one(fn, item) for item in items]


class ThreadExecutor(Executor):
    """A thread pool with at most `max_workers` items in flight (the default executor).

    Each item runs in a copy of the caller's context, so `tk.no_trace()` and other
    context variables set by the caller hold inside the workers.
    """

    def __init__(self, max_workers: int = 8) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_concurrency = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="tracekit-eval")
            return self._pool

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        items = list(items)
        if len(items) <= 1 or self.max_concurrency == 1:
            return [_run_one(fn, item) for item in items]
        pool = self._get_pool()
        futures = [pool.submit(contextvars.copy_context().run, _run_one, fn, item) for item in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


class AsyncExecutor(Executor):
    """Runs an async function (or one returning awaitables) on one event loop, at most
    `max_concurrency` at a time. Sync functions are run in threads by the loop.

    Works from synchronous code; when called from a thread that already runs an event
    loop, the items run on a private loop in a helper thread.
    """

    def __init__(self, max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency

    async def amap(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        """The same as `map`, awaited inside a running event loop."""
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(item: Any) -> Outcome:
            async with semaphore:
                try:
                    if inspect.iscoroutinefunction(fn):
                        value = await fn(item)
                    else:
                        ctx = contextvars.copy_context()
                        value = await asyncio.to_thread(ctx.run, fn, item)
                    while inspect.isawaitable(value):
                        value = await value
                    return Outcome(value=value)
                except Exception as exc:
                    return _capture(exc)

        return list(await asyncio.gather(*(one(item) for item in items)))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        return _run_coroutine(self.amap(fn, list(items)))


def _run_coroutine(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(coro))
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, _await(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="tracekit-async")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _await(awaitable: Any) -> Any:
    return await awaitable


class RayExecutor(Executor):
    """Evaluates items as Ray tasks (`pip install tracekit[ray]`).

    The function and its items are shipped with Ray's pickling (cloudpickle): the
    workflow, its parameters' current values and the metric travel with each `map` call,
    so the workers always see the parameters of the current step. Traced graphs do not
    come back (`in_process = False`): the Trainer uses Ray for validation and keeps the
    training minibatch, whose graph it needs for feedback, in this process.

    `address`: an existing cluster ("auto", "ray://host:10001"); None starts a local
    instance with `num_cpus` CPUs (or joins the one already started by `ray.init`).
    `max_concurrency` bounds the tasks in flight.
    """

    in_process = False

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_concurrency: int = 64, init_options: dict[str, Any] | None = None,
                 task_options: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("RayExecutor needs Ray: pip install 'tracekit[ray]' (or pip install ray)") from None
        self._ray = ray
        if not ray.is_initialized():
            options = dict(init_options or {})
            options.setdefault("ignore_reinit_error", True)
            options.setdefault("include_dashboard", False)
            options.setdefault("log_to_driver", False)
            if address is not None:
                options["address"] = address
            elif num_cpus is not None:
                options["num_cpus"] = num_cpus
            ray.init(**options)
        self.max_concurrency = max_concurrency
        self._task = ray.remote(**task_options)(_ray_task) if task_options else ray.remote(_ray_task)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        ray = self._ray
        items = list(items)
        fn_ref = ray.put(fn)
        refs: list[Any] = []
        results: list[Outcome | None] = [None] * len(items)
        pending: dict[Any, int] = {}
        for i, item in enumerate(items):
            if len(pending) >= self.max_concurrency:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    results[pending.pop(ref)] = self._get(ref)
            ref = self._task.remote(fn_ref, item)
            refs.append(ref)
            pending[ref] = i
        for ref, i in list(pending.items()):
            results[i] = self._get(ref)
        return [r if r is not None else Outcome(error=RuntimeError("no result")) for r in results]

    def _get(self, ref: Any) -> Outcome:
        try:
            value, error, tb = self._ray.get(ref)
        except Exception as exc:  # the task or its worker died
            return _capture(exc)
        if error is not None:
            return Outcome(error=error, traceback=tb)
        return Outcome(value=value)


def _ray_task(fn: Callable[[Any], Any], item: Any) -> tuple[Any, BaseException | None, str]:
    """Runs on a Ray worker: the function's value, or the exception it raised (no crash)."""
    outcome = _run_one(fn, item)
    error = outcome.error
    if error is not None:
        try:  # an exception that cannot be pickled travels as a RuntimeError with its text
            import pickle

            pickle.dumps(error)
        except Exception:
            error = RuntimeError(describe(error))
    return outcome.value, error, outcome.traceback


def get_executor(spec: Executor | str | None, max_concurrency: int = 8) -> Executor:
    """An executor from a name ("thread", "async", "serial", "ray") or an instance."""
    if isinstance(spec, Executor):
        return spec
    if spec is None or spec == "thread":
        return ThreadExecutor(max_concurrency)
    if spec == "async":
        return AsyncExecutor(max_concurrency)
    if spec == "serial":
        return SerialExecutor()
    if spec == "ray":
        return RayExecutor(max_concurrency=max_concurrency)
    raise ValueError(
        f"unknown executor {spec!r}: use 'thread', 'async', 'serial', 'ray' or an Executor instance"
    )
