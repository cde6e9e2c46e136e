"""Reply cache: an in-memory LRU in front of a SQLite file.

The key is a hash of everything that changes the answer: the backend's namespace, the model,
the messages, the sampling parameters, the seed and the caller's rollout id. Credentials are
never part of it (see `cache_key`). SQLite runs in WAL mode with a busy timeout, and each
process opens its own connection, so threads and processes can share one file.

The sampling rule (`is_cacheable`): a reply is cached only when repeating it is correct —
greedy decoding (temperature 0), or a fixed `seed`, or a caller-supplied `rollout_id`.
A request with temperature > 0 and neither of those is always sent to the model, so it never
returns the same stored sample forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Request options that never change the reply (or must never be stored).
_NOT_PART_OF_KEY = frozenset(
    {"api_key", "extra_headers", "timeout", "stream", "user", "metadata", "store"}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CachedReply:
    """A stored reply and the token counts of the call that produced it."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def is_cacheable(params: Mapping[str, Any], rollout_id: str | None) -> bool:
    """Whether repeating a stored reply is a correct answer to this request.

    True for greedy decoding (temperature 0), a fixed seed, or a rollout id; False when the
    request samples (temperature > 0, or unset so the server default applies) without them.
    """
    if rollout_id is not None or params.get("seed") is not None:
        return True
    temperature = params.get("temperature")
    return temperature is not None and float(temperature) == 0.0


def cache_key(
    namespace: str,
    model: str,
    messages: list[dict[str, Any]],
    params: Mapping[str, Any],
    rollout_id: str | None,
) -> str:
    """A stable SHA-256 key of a request; credentials and transport options are left out."""
    payload = {
        "namespace": namespace,
        "model": model,
        "messages": messages,
        "params": {k: v for k, v in sorted(params.items()) if k not in _NOT_PART_OF_KEY},
        "rollout_id": rollout_id,
    }
    blob = json.dumps(payload, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
    """Two-level reply store: memory (LRU, `memory_size` entries) and SQLite at `path`.

    `path=None` keeps replies in memory only. Reads and writes never raise on a locked or
    broken database file: the cache degrades to memory and the call goes on.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, memory_size: int = 4096) -> None:
        self.path = Path(path) if path is not None else None
        self.memory_size = memory_size
        self._memory: OrderedDict[str, CachedReply] = OrderedDict()
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._connection_pid: int | None = None
        self.disk_errors = 0

    def __repr__(self) -> str:
        return f"Cache(path={str(self.path) if self.path else None!r})"

    # -- SQLite ----------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection | None:
        """This process's connection (re-opened after a fork), or None for memory-only."""
        if self.path is None:
            return None
        if self._connection is None or self._connection_pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute(_SCHEMA)
            self._connection, self._connection_pid = connection, os.getpid()
        return self._connection

    # -- public ----------------------------------------------------------------------------
    def get(self, key: str) -> CachedReply | None:
        """The stored reply for `key`, or None."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
            try:
                db = self._db()
                row = db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone() \
                    if db is not None else None
            except sqlite3.Error:
                self.disk_errors += 1
                return None
            if row is None:
                return None
            reply = _parse_reply(row[0])
            if reply is None:  # a damaged entry is a miss: the call goes to the model
                self.disk_errors += 1
                return None
            self._remember(key, reply)
            return reply

    def put(self, key: str, reply: CachedReply, *, namespace: str = "", model: str = "") -> None:
        """Store `reply` under `key` in memory and on disk."""
        with self._lock:
            self._remember(key, reply)
            try:
                db = self._db()
                if db is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                        (key, namespace, model, json.dumps(reply.__dict__), time.time()),
                    )
            except sqlite3.Error:
                self.disk_errors += 1

    def clear(self) -> None:
        """Forget every stored reply (memory and disk)."""
        with self._lock:
            self._memory.clear()
            try:
                db = self._db()
                if db is not None:
                    db.execute("DELETE FROM replies")
            except sqlite3.Error:
                self.disk_errors += 1

    def __len__(self) -> int:
        with self._lock:
            db = self._db()
            if db is None:
                return len(self._memory)
            return int(db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection_pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _remember(self, key: str, reply: CachedReply) -> None:
        self._memory[key] = reply
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)


def _parse_reply(text: Any) -> CachedReply | None:
    """A stored reply read through tracekit's guarded JSON reader, or None when the entry
    is damaged (not JSON, too deep, wrong fields or types)."""
    from tracekit.errors import DamagedFileError
    from tracekit.storage import parse_json

    try:
        obj = parse_json(text if isinstance(text, (str, bytes)) else "", "LLM cache entry")
    except DamagedFileError:
        return None
    if set(obj) != {"text", "prompt_tokens", "completion_tokens"} or not isinstance(obj["text"], str) or \
            not all(isinstance(obj[k], int) and not isinstance(obj[k], bool) for k in ("prompt_tokens", "completion_tokens")):
        return None
    return CachedReply(**obj)


_shared: dict[Path, Cache] = {}
_shared_lock = threading.Lock()


def shared_cache(directory: str | os.PathLike[str]) -> Cache:
    """The process-wide cache stored in `directory/llm.sqlite3` (one per directory)."""
    path = Path(directory).expanduser().resolve() / "llm.sqlite3"
    with _shared_lock:
        if path not in _shared:
            _shared[path] = Cache(path)
        return _shared[path]


def resolve_cache(cache: Cache | bool | str | os.PathLike[str] | None) -> Cache | None:
    """Turn a backend's `cache=` argument into a Cache (or None for no caching).

    None: the configured default (in `TRACEKIT_CACHE_DIR`, on unless `TRACEKIT_LLM_CACHE=0`);
    True: on, in the configured directory; False: off; a path: a cache in that directory;
    a Cache: itself.
    """
    if isinstance(cache, Cache):
        return cache
    if cache is False:
        return None
    if cache is True or cache is None:
        from .settings import LLMSettings

        settings = LLMSettings()
        if cache is None and not settings.cache:
            return None
        return shared_cache(settings.cache_dir)
    return shared_cache(cache)
