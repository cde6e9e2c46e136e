"""Executors: how the Trainer evaluates many examples at once.

An executor maps a function over items and returns one `Outcome` per item, in the
order of the items. An exception raised for one item is caught and returned in its
`Outcome` (it never stops the other items), so a failing example becomes feedback,
not a crashed run.

    SerialExecutor()                    # one after the other (debugging)
    ThreadExecutor(max_workers=8)       # the default: a thread pool
    AsyncExecutor(max_concurrency=8)    # async workflows: coroutines on one event loop
    ProcessExecutor(max_workers=2)      # worker processes on this machine (no Ray needed)
    RayExecutor(num_cpus=2)             # a Ray cluster (optional extra: tracekit[ray])

Write your own by subclassing `Executor` and implementing `map` (and setting
`in_process = False` when items run in other processes: the Trainer then ships the
parameters as state and gets plain results back, see `tracekit.training.remote`).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import pickle
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tracekit.errors import describe
from tracekit.training.shipping import (
    FileShared,
    PickledState,
    RayShared,
    RayState,
    Shared,
    SharedBlocks,
    SharedMemoryState,
    in_blocks,
)


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
    numpy_transport: bool = False  # results carry tensors as numpy arrays (cheaper to move here)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        raise NotImplementedError

    def share(self, blob: bytes, slot: str) -> Shared:
        """A handle to `blob` that tasks carry instead of the bytes (`handle.get()` on the
        worker): an out-of-process executor stores it once where its workers can read it
        (Ray's object store, a file), so a large payload is not copied into every task.
        `slot`: a new blob in the same slot replaces the previous one."""
        return Shared(blob)

    def share_state(self, state: dict[str, Any]) -> Any:
        """A handle to the trained parameters' values (`handle.load()` on the worker gives
        `{name: value}`); this default pickles them into one shared blob, out-of-process
        executors keep tensors out of pickling (`tracekit.training.shipping`)."""
        return PickledState(self.share(pickle.dumps(state, protocol=5), "state"))

    def result_blocks(self, specs: dict[str, tuple[Any, tuple[int, ...]]]) -> dict[str, Any] | None:
        """Places on this machine where workers write large tensor results (key -> (dtype,
        shape) asked; key -> block spec given), read back with `result_view`; None (this
        default): results carry their tensors."""
        return None

    def result_view(self, key: str) -> Any:
        raise KeyError(f"{type(self).__name__} has no result blocks")

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

    The function is put once per `map` call in Ray's object store (pickled with
    cloudpickle) and each item runs as one task. With the Trainer every phase of a step
    runs on the cluster: the workflow and metric are shipped once, the parameters travel
    as state each call, and traces come back as plain data (`tracekit.training.remote`).

    `address`: an existing cluster ("auto", "ray://host:10001"); None starts a local
    instance with `num_cpus` CPUs (or joins the one already started by `ray.init`).
    `max_concurrency` bounds the tasks in flight; `task_options` go to `ray.remote`
    (e.g. `{"max_retries": 1}`: how often Ray reruns a task whose worker died).
    """

    in_process = False
    numpy_transport = True  # numpy arrays cross Ray's object store without copies; tensors are pickled

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_concurrency: int = 64, init_options: dict[str, Any] | None = None,
                 task_options: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("RayExecutor needs Ray, an optional extra: pip install 'tracekit[ray]' "
                              "(or pip install ray); without Ray, executor='process' runs the "
                              "workers on this machine") from None
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
        self._slots: int | None = None
        self._shared: dict[str, Any] = {}
        self._task = ray.remote(**task_options)(_ray_task) if task_options else ray.remote(_ray_task)

    @property
    def slots(self) -> int:
        """How many tasks the cluster runs at once (its CPUs, at most `max_concurrency`):
        the Trainer splits a minibatch into this many chunks."""
        if self._slots is None:
            cpus = int(self._ray.cluster_resources().get("CPU", 1))
            self._slots = max(1, min(cpus, self.max_concurrency))
        return self._slots

    def share(self, blob: bytes, slot: str) -> Shared:
        """`blob` put once in Ray's object store (the previous blob of `slot` is released)."""
        handle = RayShared(self._ray.put(blob))
        self._shared[slot] = handle
        return handle

    def share_state(self, state: dict[str, Any]) -> RayState:
        """The state put in Ray's object store, tensors as numpy arrays (zero-copy reads)."""
        handle = RayState(self._ray.put(RayState.pack(state)))
        self._shared["state"] = handle
        return handle

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
    """Runs on a worker: the function's value, or the exception it raised (no crash)."""
    outcome = _run_one(fn, item)
    error = outcome.error
    if error is not None:
        try:  # an exception that cannot be pickled travels as a RuntimeError with its text
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(describe(error))
    return outcome.value, error, outcome.traceback


class WorkerDiedError(RuntimeError):
    """The worker process running an item died (killed, crashed, out of memory)."""


class ProcessExecutor(Executor):
    """A pool of `max_workers` worker processes on this machine (no Ray needed).

    Processes are started with `start_method` ("spawn" by default; "forkserver" on
    POSIX): plain fork can deadlock once torch's threads run. The function is pickled
    once per `map` call (cloudpickle when installed), so lambdas and functions of
    `__main__` work. A worker that dies costs its item only: the pool is restarted and
    the items that were in flight are run again one at a time.
    """

    in_process = False

    def __init__(self, max_workers: int | None = None, start_method: str = "spawn") -> None:
        import multiprocessing

        workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {workers}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available here; use one of "
                             f"{multiprocessing.get_all_start_methods()}")
        self.max_concurrency = self.slots = workers
        self._context = multiprocessing.get_context(start_method)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._dir: Any = None  # a temporary directory for shared blobs
        self._files: dict[str, str] = {}
        self._blocks: SharedBlocks | None = None  # the tensors of the state, in shared memory
        self._results: SharedBlocks | None = None  # where workers write gradients
        self._result_specs: dict[str, Any] = {}

    def share(self, blob: bytes, slot: str) -> Shared:
        """`blob` written once to a temporary file that the workers read (replacing the
        previous file of `slot`); removed by `close`."""
        import tempfile

        with self._lock:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="tracekit-pool-")
            fd, path = tempfile.mkstemp(prefix=f"{slot}-", dir=self._dir.name)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            old = self._files.get(slot)
            self._files[slot] = path
        if old is not None:
            os.unlink(old)
        return FileShared(path)

    def share_state(self, state: dict[str, Any]) -> SharedMemoryState:
        """Tensors written in place into shared-memory blocks (one per parameter, kept across
        calls), the other values pickled into a shared file."""
        with self._lock:
            if self._blocks is None:
                self._blocks = self._new_blocks("s")
            blocks = {name: self._blocks.write(name, v) for name, v in state.items() if in_blocks(v)}
        rest = {name: v for name, v in state.items() if name not in blocks}
        return SharedMemoryState(blocks, self.share(pickle.dumps(rest, protocol=5), "state"))

    def _new_blocks(self, kind: str) -> SharedBlocks:
        """A set of shared-memory blocks named for this pool, unlinked even if close() is never called."""
        import uuid

        blocks = SharedBlocks(f"tk{os.getpid()}{uuid.uuid4().hex[:6]}{kind}-")
        weakref.finalize(self, blocks.close)
        return blocks

    def result_blocks(self, specs: dict[str, tuple[Any, tuple[int, ...]]]) -> dict[str, Any]:
        """Shared-memory blocks the workers write gradients into (kept across calls)."""
        with self._lock:
            if self._results is None:
                self._results = self._new_blocks("r")
            given = {key: self._results.ensure(key, dtype, shape) for key, (dtype, shape) in specs.items()}
            self._result_specs.update(given)
            return given

    def result_view(self, key: str) -> Any:
        """The tensor a worker wrote into block `key` (valid until the next call writes it)."""
        if self._results is None:
            raise KeyError(f"no result block {key!r}: result_blocks() was not called")
        return self._results.view(key, self._result_specs[key])

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                threads = max(1, (os.cpu_count() or 1) // self.max_concurrency)
                self._pool = ProcessPoolExecutor(self.max_concurrency, mp_context=self._context,
                                                 initializer=_init_worker, initargs=(threads,))
            return self._pool

    def _reset(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        items = list(items)
        if not items:
            return []
        blob = _dumps(fn)
        pool = self._get_pool()
        futures = [pool.submit(_process_task, blob, item) for item in items]
        results: list[Outcome | None] = []
        broken: list[int] = []
        for i, future in enumerate(futures):
            try:
                results.append(_unpack(future.result()))
            except BrokenProcessPool:
                results.append(None)
                broken.append(i)
            except Exception as exc:  # e.g. an item that cannot be pickled
                results.append(_capture(exc))
        if broken:
            self._reset()
            for i in broken:  # one at a time: only the item that kills its worker is lost
                try:
                    results[i] = _unpack(self._get_pool().submit(_process_task, blob, items[i]).result())
                except BrokenProcessPool:
                    self._reset()
                    results[i] = _capture(WorkerDiedError(
                        "the worker process running this item died (killed, crashed or out of memory)"))
                except Exception as exc:
                    results[i] = _capture(exc)
        return [r if r is not None else Outcome(error=RuntimeError("no result")) for r in results]

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None
                self._files = {}
            for blocks in (self._blocks, self._results):
                if blocks is not None:
                    blocks.close()
            self._blocks = self._results = None
            self._result_specs = {}


def _dumps(fn: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - plain pickle: importable functions only
        return pickle.dumps(fn)
    return cloudpickle.dumps(fn)


def _init_worker(threads: int) -> None:
    """A pool process's start: torch gets its share of the cores (`threads` intra-op threads),
    as Ray and torch's DataLoader give their workers (otherwise each worker's torch threads
    spin on every core and slow the other workers down), and the worker exits when the
    driver does, even when the driver was killed (SIGKILL runs no clean-up)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:  # a driver killed outright leaves no orphans: its workers follow it
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="tracekit-parent-watch").start()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(threads)


def _exit_with(parent: Any) -> None:
    """Wait for the driver process to end, then end this worker."""
    parent.join()
    os._exit(0)


def _process_task(blob: bytes, item: Any) -> tuple[Any, BaseException | None, str]:
    """Runs in a pool process: the function unpickled, then as `_ray_task`."""
    return _ray_task(pickle.loads(blob), item)


def _unpack(result: tuple[Any, BaseException | None, str]) -> Outcome:
    value, error, tb = result
    return Outcome(value=value) if error is None else Outcome(error=error, traceback=tb)


def get_executor(spec: Executor | str | None, max_concurrency: int = 8) -> Executor:
    """An executor from a name ("thread", "async", "serial", "process", "ray") or an instance."""
    if isinstance(spec, Executor):
        return spec
    if spec is None or spec == "thread":
        return ThreadExecutor(max_concurrency)
    if spec == "async":
        return AsyncExecutor(max_concurrency)
    if spec == "serial":
        return SerialExecutor()
    if spec == "process":
        return ProcessExecutor(min(max_concurrency, os.cpu_count() or 1))
    if spec == "ray":
        return RayExecutor(max_concurrency=max_concurrency)
    raise ValueError(
        f"unknown executor {spec!r}: use 'thread', 'async', 'serial', 'process', 'ray' or an "
        f"Executor instance"
    )
