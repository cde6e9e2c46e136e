"""The parent's side of the sandbox: one persistent worker process, requests with deadlines.

A worker is a fresh interpreter (`python -I -B`, started by `subprocess`, never a fork of
this process's memory) with a clean environment; it is started on first use and reused.
Requests are serialised by a lock. A request past its wall-clock limit kills the worker;
the next request starts a new one. Replies are parsed with `tracekit.sandbox.wire` only.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from tracekit.errors import (
    NotPlainDataError,
    SandboxCrash,
    SandboxedCodeError,
    SandboxTimeout,
    SandboxUnavailableError,
)
from tracekit.sandbox import isolation, wire
from tracekit.sandbox.limits import Limits
from tracekit.sandbox.namespace import Namespace

_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from tracekit.sandbox.worker import main; main()")
_ENV_KEPT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # hardware workarounds, no secrets
_ids = itertools.count(1)
_SPIN_S = 0.0003  # poll this long for a reply before blocking in select


def _root() -> str:
    """The folder holding the `tracekit` package (put first on the worker's path)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


def _clean_env() -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    env.update({k: os.environ[k] for k in _ENV_KEPT if k in os.environ})
    return env


class Worker:
    """One sandboxed interpreter and the functions defined in it."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.preloaded: frozenset[str] = frozenset()
        self.read_paths: frozenset[str] = frozenset()
        self.defined: set[int] = set()
        self.starts = 0
        self.arena: wire.Arena | None = None

    # --- process -------------------------------------------------------------------------
    def ensure(self, preload: set[str], read_paths: set[str]) -> None:
        """A worker that has loaded `preload` and may read `read_paths` (one that died since
        its last reply is found by the next request, which then starts a new one)."""
        if self.proc is not None and preload <= self.preloaded and read_paths <= self.read_paths:
            return
        self.stop()
        self._start(set(preload) | self.preloaded, set(read_paths) | self.read_paths)

    def _start(self, preload: set[str], read_paths: set[str]) -> None:
        reason = isolation.unavailable()
        if reason is not None:
            raise SandboxUnavailableError(reason)
        if self.arena is None:
            try:
                self.arena = wire.Arena.create()
            except (OSError, AttributeError):  # no memfd: arrays go through the pipe
                self.arena = None
        arena_fd = self.arena.fd if self.arena is not None else -1
        arena_size = self.arena.size if self.arena is not None else 0
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT, _root(), str(req_r), str(rep_w),
                 str(arena_fd), str(arena_size)],
                pass_fds=(req_r, rep_w) + ((arena_fd,) if arena_fd >= 0 else ()),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_clean_env(), cwd="/", start_new_session=True,
                close_fds=True)
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.proc, self.fd_out, self.fd_in = proc, req_w, rep_r
        wire.set_pipe_size(req_w)
        wire.set_pipe_size(rep_r)
        self.defined = set()
        self.starts += 1
        preload = set(preload) | {m for m in ("numpy", "torch") if m in sys.modules}
        path = _path_entries()
        hello = {"sys_path": path, "preload": sorted(preload),
                 "memory_mb": self.limits.memory_mb, "cpu_s": self.limits.cpu_s,
                 "read_paths": sorted(read_paths | _package_dirs(preload)), "list_paths": path}
        try:
            wire.write_frame(self.fd_out, wire.encode(hello))
            reply, _ = self._read(self.limits.start_timeout_s, "starting the sandbox worker")
        except SandboxTimeout as exc:
            raise SandboxUnavailableError(f"the sandbox worker did not start: {exc}") from None
        except (SandboxCrash, OSError) as exc:
            self.stop()
            raise SandboxUnavailableError(f"the sandbox worker did not start: {exc}") from None
        if not reply.get("ok"):
            self.stop()
            raise SandboxUnavailableError(f"the sandbox could not be set up: {reply.get('error')}")
        self.preloaded = frozenset(preload)
        self.read_paths = frozenset(read_paths)

    def stop(self) -> None:
        """Kill the worker (if any); the next request starts a new one."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for fd in (self.fd_in, self.fd_out):
            try:
                os.close(fd)
            except OSError:
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.defined = set()

    # --- requests ------------------------------------------------------------------------
    def request(self, message: dict[str, Any], values: dict[str, Any] | None, timeout_s: float,
                what: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            frame = wire.encode_parts(message, values, self.arena)
        except wire.NotPlainData as exc:
            raise NotPlainDataError(str(exc), "NotPlainData") from None
        try:
            wire.write_frame(self.fd_out, frame)
        except OSError:
            raise self._crashed(what) from None
        reply, out = self._read(timeout_s, what)
        if self.limits.cpu_s and float(reply.get("cpu", 0)) > 0.8 * self.limits.cpu_s:
            self.stop()  # recycle before the worker's CPU budget runs out
        return reply, out

    def _read(self, timeout_s: float, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return wire.read_frame(self.fd_in, self.arena, timeout_s, _SPIN_S)
        except TimeoutError:
            self.stop()
            raise SandboxTimeout(f"timed out after {timeout_s:g} s while {what} (the sandbox's "
                                 f"wall-clock limit); the worker was stopped") from None
        except EOFError:
            raise self._crashed(what) from None
        except wire.WireError as exc:
            self.stop()
            raise SandboxCrash(f"the sandbox worker sent a malformed reply ({exc}); it was stopped") from None

    def _crashed(self, what: str) -> SandboxCrash:
        proc = self.proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        self.stop()
        if code is not None and code < 0:
            sig = -code
            if sig in (signal.SIGXCPU, signal.SIGKILL):
                why = f"CPU limit {self.limits.cpu_s} s reached or the worker was killed (signal {sig})"
            else:
                why = f"the worker was ended by signal {signal.Signals(sig).name}"
        else:
            why = f"the worker process ended (exit code {code})"
        return SandboxCrash(f"{why} while {what}; a new worker starts on the next call")


def _path_entries() -> list[str]:
    seen = []
    for entry in [_root(), *sys.path]:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.isdir(path) and path not in seen:
            seen.append(path)
    return seen


def _package_dirs(names: set[str]) -> set[str]:
    out = {os.path.join(_root(), "tracekit"), os.path.join(_root(), "solvers"),
           sys.prefix, sys.base_prefix, sys.exec_prefix}
    import site
    import sysconfig

    out.update(site.getsitepackages())
    out.update(p for p in sysconfig.get_paths().values() if p)
    for name in names:
        top = sys.modules.get(name.split(".")[0])
        for entry in (getattr(top, "__path__", None) or [getattr(top, "__file__", None)]) if top else []:
            if entry:
                out.add(os.path.abspath(entry))
    return out


# --- the workers of this process, one per set of limits -----------------------------------------
_workers: dict[tuple[int, int], Worker] = {}
_workers_lock = threading.Lock()


def worker_for(limits: Limits) -> Worker:
    key = (limits.memory_mb, limits.cpu_s)
    with _workers_lock:
        worker = _workers.get(key)
        if worker is None:
            worker = _workers[key] = Worker(limits)
        return worker


def shutdown() -> None:
    """Stop every worker of this process (they also end with it)."""
    with _workers_lock:
        for worker in _workers.values():
            with worker.lock:
                worker.stop()


atexit.register(shutdown)


class SandboxedFunction:
    """A proposed function, defined and called in the sandbox worker; calling it returns
    the function's result as plain data or raises a `tracekit.errors.SandboxError`."""

    def __init__(self, name: str, source: str, namespace: Namespace, limits: Limits,
                 is_method: bool = False) -> None:
        self.__name__ = name
        self.name = name
        self.source = source
        self.namespace = namespace
        self.limits = limits
        self.is_method = is_method
        self.id = next(_ids)
        self.poisoned: SandboxTimeout | None = None

    def ready(self) -> None:
        """Make sure a worker for this function runs (SandboxUnavailableError when none can
        start). The definition itself travels with the first call: one round trip."""
        worker = worker_for(self.limits)
        with worker.lock:
            worker.ensure(self.namespace.preload, self.namespace.read_paths)

    def _definition(self) -> dict[str, Any]:
        ns = self.namespace
        return {"name": self.name, "source": self.source, "modules": ns.modules,
                "refs": ns.refs, "helpers": ns.helpers}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.poisoned is not None:
            raise SandboxTimeout(f"{self.poisoned.message} (this version timed out before and is "
                                 f"not run again)")
        values: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
        if self.is_method and args:
            values["args"] = list(args[1:])
            values["self"] = _snapshot(args[0])
        worker = worker_for(self.limits)
        with worker.lock:
            for attempt in range(2):
                message: dict[str, Any] = {"op": "call", "id": str(self.id)}
                try:
                    worker.ensure(self.namespace.preload, self.namespace.read_paths)
                    if self.id not in worker.defined:
                        message["define"] = self._definition()
                        values["ns"] = self.namespace.values
                    reply, out = worker.request(message, values, self.limits.timeout_s,
                                                f"running {self.name}")
                except SandboxTimeout as exc:
                    self.poisoned = exc
                    raise
                except SandboxCrash:
                    if attempt:  # it ended a fresh worker too: this code is the cause
                        raise
                    continue  # maybe earlier code broke that worker: once more, fresh
                values.pop("ns", None)
                if reply.get("defined"):
                    worker.defined.add(self.id)
                if reply.get("type") == "UnknownFunction":
                    worker.defined.discard(self.id)
                    continue
                if not reply.get("ok"):
                    raise _code_error(reply)
                return out.get("r")
        raise SandboxCrash(f"{self.name} could not be defined in the sandbox worker")

    def __repr__(self) -> str:
        return f"<sandboxed function {self.name}>"


def _code_error(reply: dict[str, Any]) -> SandboxedCodeError:
    lineno = reply.get("lineno")
    return SandboxedCodeError(str(reply.get("message", "")), str(reply.get("type") or "Error"),
                              str(reply.get("line") or ""), lineno if isinstance(lineno, int) else None)


def _snapshot(instance: Any) -> tuple[str, dict[str, Any]]:
    """A method's `self` as plain data: the attributes that are plain data, copied."""
    attrs = {key: value for key, value in getattr(instance, "__dict__", {}).items()
             if not key.startswith("_tracekit") and wire.is_plain(value)}
    return type(instance).__name__, attrs
