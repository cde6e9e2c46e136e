"""The reply cache: keys, the sampling rule, persistence, threads and processes."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from tracekit.llm import Cache, is_cacheable
from tracekit.llm.cache import CachedReply, cache_key, resolve_cache

MESSAGES = [{"role": "user", "content": "hi"}]


def key(**changes):
    base = {"namespace": "ns", "model": "m", "messages": MESSAGES,
            "params": {"temperature": 0.0}, "rollout_id": None}
    base.update(changes)
    return cache_key(base["namespace"], base["model"], base["messages"], base["params"],
                     base["rollout_id"])


def test_key_changes_with_everything_that_changes_the_answer():
    reference = key()
    assert key() == reference
    assert key(namespace="other") != reference
    assert key(model="m2") != reference
    assert key(messages=[{"role": "user", "content": "hello"}]) != reference
    assert key(params={"temperature": 0.5}) != reference
    assert key(params={"temperature": 0.0, "seed": 1}) != reference
    assert key(rollout_id="r1") != reference


def test_key_ignores_credentials_and_transport_options():
    reference = key()
    assert key(params={"temperature": 0.0, "api_key": "sk-1", "timeout": 3,
                       "extra_headers": {"Authorization": "Bearer x"}}) == reference


@pytest.mark.parametrize(
    ("params", "rollout_id", "expected"),
    [
        ({"temperature": 0.0}, None, True),  # greedy: repeatable
        ({"temperature": 0.7}, None, False),  # sampling: always a fresh sample
        ({}, None, False),  # server default temperature: treated as sampling
        ({"temperature": 0.7, "seed": 3}, None, True),  # seeded sample: repeatable
        ({"temperature": 0.7}, "rollout-4", True),  # the caller names the sample
    ],
)
def test_sampling_rule(params, rollout_id, expected):
    assert is_cacheable(params, rollout_id) is expected


def test_disk_persistence_across_instances(tmp_path):
    path = tmp_path / "c.sqlite3"
    first = Cache(path)
    first.put("k", CachedReply("text", 3, 4))
    second = Cache(path)
    assert second.get("k") == CachedReply("text", 3, 4)
    assert len(second) == 1
    second.clear()
    assert Cache(path).get("k") is None


def test_memory_only_cache_and_lru_bound():
    cache = Cache(None, memory_size=2)
    for name in "abc":
        cache.put(name, CachedReply(name, 0, 0))
    assert cache.get("a") is None and cache.get("c") is not None and len(cache) == 2


def test_resolve_cache_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEKIT_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache(False) is None
    assert resolve_cache(None).path == (tmp_path / "env" / "llm.sqlite3").resolve()
    assert resolve_cache(tmp_path / "x").path == (tmp_path / "x" / "llm.sqlite3").resolve()
    monkeypatch.setenv("TRACEKIT_LLM_CACHE", "0")
    assert resolve_cache(None) is None
    assert resolve_cache(True) is not None  # explicit True wins over the environment
    mine = Cache(None)
    assert resolve_cache(mine) is mine


def test_threads_share_one_cache(tmp_path):
    cache = Cache(tmp_path / "c.sqlite3")

    def work(worker: int) -> None:
        for i in range(50):
            cache.put(f"{worker}-{i}", CachedReply(str(i), i, i))
            assert cache.get(f"{worker}-{i}") is not None

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 400 and cache.disk_errors == 0


def _write_from_process(path: str, worker: int) -> None:
    cache = Cache(path)
    for i in range(40):
        cache.put(f"{worker}-{i}", CachedReply(f"w{worker}", 1, 1))
    cache.close()


def test_processes_share_one_file(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    Cache(path).put("parent", CachedReply("p", 0, 0))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_from_process, args=(path, w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    cache = Cache(path)
    assert len(cache) == 161
    assert cache.get("3-39") == CachedReply("w3", 1, 1)


@pytest.mark.parametrize("stored", ["", "{not json", "[1, 2]", '{"text": 1, "prompt_tokens": 1, "completion_tokens": 1}',
                                    '{"text": "hi"}', "[" * 5000 + "]" * 5000,
                                    '{"text": "hi", "prompt_tokens": 1, "completion_tokens": 2, "extra": 0}'])
def test_a_damaged_disk_entry_is_a_miss_not_a_crash(tmp_path, stored):
    import sqlite3

    cache = Cache(tmp_path / "c.sqlite3")
    cache.put("k", CachedReply("fine", 1, 2))
    cache.close()
    with sqlite3.connect(tmp_path / "c.sqlite3") as db:
        db.execute("UPDATE replies SET reply = ? WHERE key = 'k'", (stored,))
    fresh = Cache(tmp_path / "c.sqlite3")
    assert fresh.get("k") is None and fresh.disk_errors == 1
    fresh.put("k", CachedReply("again", 3, 4))  # the entry is rewritten on the next call
    assert Cache(tmp_path / "c.sqlite3").get("k") == CachedReply("again", 3, 4)
