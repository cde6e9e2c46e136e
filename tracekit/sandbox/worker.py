"""The sandbox worker: a fresh interpreter that defines and runs proposed functions.

Started by `tracekit.sandbox.client` as `python -I -B -c ...` with a clean environment and
two pipe descriptors. It reads a hello frame (its import path, the modules to load, its
limits and readable paths), loads those modules, locks itself down
(`tracekit.sandbox.isolation.apply`) and only then serves `call` requests; a call carries
the function's definition the first time (one round trip).
Every reply is plain data (`tracekit.sandbox.wire`); any BaseException raised by proposed
code is described, not propagated.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import inspect
import sys
import time
import traceback
from typing import Any

from tracekit.errors import message_of
from tracekit.sandbox import wire

_FILENAME = "<sandboxed {}>"
_SPIN_S = 0.0003  # poll this long for the next request before blocking, in a burst of calls


class SelfSnapshot:
    """The plain-data attributes of a method's `self`, copied into the sandbox (read-only
    in effect: changes stay in the worker)."""

    def __init__(self, type_name: str, attrs: dict[str, Any]) -> None:
        self.__dict__.update(attrs)
        object.__setattr__(self, "_tracekit_type", type_name)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"{self.__dict__.get('_tracekit_type', 'self')}.{name} did not cross into the sandbox: "
            f"only attributes that are plain data (numbers, strings, lists, dicts, arrays) do")


class Worker:
    def __init__(self, fd_in: int, fd_out: int, arena: wire.Arena | None) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.arena = arena
        self.functions: dict[str, Any] = {}
        self.memory_mb = 0
        self.sources: dict[str, list[str]] = {}

    # --- start ---------------------------------------------------------------------------
    def start(self) -> None:
        hello, _ = wire.read_frame(self.fd_in)
        try:
            sys.path[:] = [p for p in hello.get("sys_path", []) if isinstance(p, str)]
            for name in ["numpy", *hello.get("preload", [])]:
                try:
                    importlib.import_module(name)
                except BaseException:  # noqa: BLE001 - its names stay undefined in the sandbox
                    pass
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(1)
            self.memory_mb = int(hello["memory_mb"])
            from tracekit.sandbox import isolation

            isolation.apply(self.memory_mb * 2**20, int(hello["cpu_s"]),
                            hello.get("read_paths", []), hello.get("list_paths", []))
        except BaseException as exc:  # noqa: BLE001 - the parent refuses to run code then
            self.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            raise SystemExit(1) from None
        self.send({"ok": True})

    # --- serving -------------------------------------------------------------------------
    def serve(self) -> None:
        spin = 0.0
        while True:
            sent = time.perf_counter()
            wire.wait_readable(self.fd_in, spin, None)
            # poll for the next request only while requests come back to back (a tight loop
            # of calls); otherwise block at once and leave the core to the parent
            spin = _SPIN_S if time.perf_counter() - sent < _SPIN_S / 2 else 0.0
            try:
                request, values = wire.read_frame(self.fd_in, self.arena)
            except EOFError:
                return
            op = request.get("op")
            if op == "call":
                reply, result = self.call(request, values)
                self.send(reply, result)
            else:
                self.send({"ok": False, "type": "ProtocolError", "message": f"unknown op {op!r}"})

    def send(self, reply: dict[str, Any], values: dict[str, Any] | None = None) -> None:
        reply["cpu"] = time.process_time()
        try:
            frame: bytes | list[Any] = wire.encode_parts(reply, values, self.arena)
        except wire.NotPlainData as exc:
            frame = wire.encode({"ok": False, "type": "NotPlainData", "message":
                                 f"the function returned a value that cannot leave the sandbox: {exc}",
                                 "cpu": reply["cpu"]})
        except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError while encoding
            frame = wire.encode({"ok": False, "type": type(exc).__name__,
                                 "message": self.describe(exc), "cpu": reply["cpu"]})
        wire.write_frame(self.fd_out, frame)

    def define(self, fid: str, definition: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """Define one function in a namespace of its own (modules and references the worker
        loaded, plain values, helpers); a name that could not be loaded stays undefined."""
        name, source = definition["name"], definition["source"]
        namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "tracekit_sandboxed"}
        for alias, module in definition.get("modules", {}).items():
            if module in sys.modules:
                namespace[alias] = sys.modules[module]
        for alias, (module, qualname) in definition.get("refs", {}).items():
            obj = sys.modules.get(module)
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            if obj is not None:
                namespace[alias] = obj
        namespace.update(values)
        try:
            for alias, helper in definition.get("helpers", {}).items():
                exec(compile(helper, _FILENAME.format(alias), "exec"), namespace)  # noqa: S102
            code = compile(source, _FILENAME.format(name), "exec", flags=_LAZY_ANNOTATIONS,
                           dont_inherit=True)
            exec(code, namespace)  # noqa: S102 - defines the function only (checked by the parent)
        except BaseException as exc:  # noqa: BLE001
            return self.failure(exc, name)
        self.functions[fid] = (namespace[name], name)
        self.sources[name] = source.splitlines()
        return {"ok": True}

    def call(self, request: dict[str, Any], values: dict[str, Any]) -> tuple[dict, dict | None]:
        defined = False
        if isinstance(request.get("define"), dict):
            reply = self.define(request["id"], request["define"], values.get("ns", {}))
            if not reply.get("ok"):
                return reply, None
            defined = True
        entry = self.functions.get(request["id"])
        if entry is None:
            return {"ok": False, "type": "UnknownFunction", "message": "not defined"}, None
        fn, name = entry
        args = list(values.get("args", []))
        if "self" in values:
            type_name, attrs = values["self"]
            args.insert(0, SelfSnapshot(type_name, attrs))
        try:
            result = fn(*args, **values.get("kwargs", {}))
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
        except BaseException as exc:  # noqa: BLE001 - any exception is data for the parent
            return dict(self.failure(exc, name), defined=defined), None
        return {"ok": True, "defined": defined}, {"r": result}

    def failure(self, exc: BaseException, name: str) -> dict[str, Any]:
        line, lineno = "", None
        target = _FILENAME.format(name)
        for frame, number in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == target:
                lineno = number
        if lineno is not None:
            source = self.source_line(name, lineno)
            line = source.strip() if source else ""
        return {"ok": False, "type": type(exc).__name__, "message": self.describe(exc),
                "line": line, "lineno": lineno}

    def source_line(self, name: str, lineno: int) -> str:
        entry = self.sources.get(name)
        if entry and 0 < lineno <= len(entry):
            return entry[lineno - 1]
        return ""

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, MemoryError):
            return f"memory limit {self.memory_mb} MiB reached"
        if isinstance(exc, PermissionError):
            target = exc.filename
            if target is not None:
                return (f"tried to open or change a file ({target!r}): the sandbox allows no writes, "
                        f"and reads only the Python libraries")
            return "tried an operation the sandbox blocks (processes, network, signals, file changes)"
        if isinstance(exc, SystemExit):
            return f"tried to exit (SystemExit {exc.code!r})"
        return message_of(exc)


_LAZY_ANNOTATIONS = __import__("__future__").annotations.compiler_flag  # annotations never run


def main() -> None:
    fd_in, fd_out, fd_arena, arena_size = (int(a) for a in sys.argv[-4:])
    arena = wire.Arena(fd_arena, arena_size) if fd_arena >= 0 else None
    worker = Worker(fd_in, fd_out, arena)
    worker.start()
    worker.serve()


if __name__ == "__main__":
    main()
