"""OpenAICompatible against a scripted local server: replies, retries, timeouts, errors,
cache rules, credentials, structured fallback, concurrency and async."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from llm_fake_server import FAST_RETRY, Reply, completion
from pydantic import BaseModel

from tracekit.llm import (
    Budget,
    BudgetExceeded,
    LLMConfigError,
    LLMConnectionError,
    LLMRequestError,
    LLMTimeoutError,
    OpenAICompatible,
)

SECRET = "sk-test-SECRET-never-stored-1234"


class Verdict(BaseModel):
    ok: bool
    reason: str


def make(server, tmp_path, **options):
    options.setdefault("cache", tmp_path / "cache")
    options.setdefault("max_retries", 2)
    return OpenAICompatible("fake-model", base_url=server.base_url, api_key=SECRET, **options)


def test_plain_reply_and_reported_tokens(fake_server, tmp_path):
    llm = make(fake_server, tmp_path)
    assert llm([{"role": "user", "content": "Hi"}]) == "echo: Hi"
    usage = llm.usage
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (1, 11, 7)
    body = fake_server.requests[0]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0
    assert fake_server.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_retries_429_and_5xx_then_succeeds(fake_server, tmp_path):
    fake_server.push(Reply(429, headers=FAST_RETRY), Reply(503, headers=FAST_RETRY))
    llm = make(fake_server, tmp_path)
    assert llm("Hi") == "echo: Hi"
    assert len(fake_server.requests) == 3


def test_persistent_server_error_is_a_clear_error(fake_server, tmp_path):
    fake_server.push(*[Reply(500, headers=FAST_RETRY)] * 3)
    llm = make(fake_server, tmp_path)
    with pytest.raises(LLMRequestError, match="HTTP 500") as info:
        llm("Hi")
    assert info.value.status_code == 500
    assert len(fake_server.requests) == 3  # 1 try + 2 retries, then stop
    assert llm.usage.errors == 1


def test_timeout(fake_server, tmp_path):
    fake_server.push(Reply(200, completion("late"), delay=1.0))
    llm = make(fake_server, tmp_path, timeout=0.2, max_retries=0)
    with pytest.raises(LLMTimeoutError, match="timeout"):
        llm("Hi")


def test_connection_refused(tmp_path):
    llm = OpenAICompatible("m", base_url="http://127.0.0.1:9/v1", max_retries=0, cache=False)
    with pytest.raises(LLMConnectionError, match="cannot connect"):
        llm("Hi")


def test_garbage_reply_is_a_clear_error(fake_server, tmp_path):
    fake_server.push(Reply(200, "<html>not json</html>"))
    llm = make(fake_server, tmp_path, max_retries=0)
    with pytest.raises(LLMRequestError):
        llm("Hi")


def test_missing_key_for_openai_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TRACEKIT_LLM_API_KEY", raising=False)
    monkeypatch.delenv("TRACEKIT_LLM_BASE_URL", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        OpenAICompatible("gpt-4o-mini")


def test_cache_hit_on_repeat_and_keys_never_stored(fake_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="tracekit.llm")
    llm = make(fake_server, tmp_path)
    assert llm("Hi") == llm("Hi")
    assert len(fake_server.requests) == 1
    assert llm.usage.cache_hits == 1 and llm.usage.calls == 1
    # a second backend with another key shares the entry: keys are not part of the cache key
    other = OpenAICompatible("fake-model", base_url=fake_server.base_url, api_key="sk-other",
                             cache=tmp_path / "cache")
    assert other("Hi") == "echo: Hi" and len(fake_server.requests) == 1
    for path in (tmp_path / "cache").iterdir():
        assert SECRET.encode() not in path.read_bytes()
    assert SECRET not in caplog.text and SECRET not in repr(llm) and SECRET not in str(vars(llm))


def test_sampling_without_seed_is_never_served_from_cache(fake_server, tmp_path):
    llm = make(fake_server, tmp_path)
    llm("Hi", temperature=0.9)
    llm("Hi", temperature=0.9)
    assert len(fake_server.requests) == 2  # two fresh samples
    llm("Hi", temperature=0.9, seed=1)
    llm("Hi", temperature=0.9, seed=1)
    assert len(fake_server.requests) == 3  # seeded: cached
    llm("Hi", temperature=0.9, rollout_id="a")
    llm("Hi", temperature=0.9, rollout_id="a")
    llm("Hi", temperature=0.9, rollout_id="b")
    assert len(fake_server.requests) == 5  # one per rollout id
    assert "rollout_id" not in fake_server.requests[-1]  # tracekit's option is not sent
    llm("Hi", cache=False)
    assert len(fake_server.requests) == 6


def test_cache_can_be_turned_off(fake_server, tmp_path):
    llm = make(fake_server, tmp_path, cache=False)
    llm("Hi")
    llm("Hi")
    assert len(fake_server.requests) == 2 and llm.cache is None


def test_budget_stops_before_the_call(fake_server, tmp_path):
    llm = make(fake_server, tmp_path, cache=False, budget=Budget(max_calls=2))
    llm("a")
    llm("b")
    with pytest.raises(BudgetExceeded, match="calls"):
        llm("c")
    assert len(fake_server.requests) == 2


def test_cost_budget_uses_the_price_table(fake_server, tmp_path):
    llm = make(fake_server, tmp_path, cache=False, prices={"fake-model": (1e6, 1e6)})
    with llm.accounting.scope(budget=Budget(max_cost=30.0)) as usage:
        llm("a")  # 11 + 7 tokens at $1 each = $18
        with pytest.raises(BudgetExceeded, match="cost"):
            llm("b", max_tokens=20)  # worst case 18 + (prompt + 20) > 30
    assert usage.cost == pytest.approx(18.0) and usage.calls == 1
    assert len(fake_server.requests) == 1
    assert llm("c") == "echo: c"  # outside the scope the budget no longer applies


def test_token_budget(fake_server, tmp_path):
    llm = make(fake_server, tmp_path, cache=False, budget=Budget(max_tokens=30))
    llm("a")  # 18 tokens
    with pytest.raises(BudgetExceeded, match="tokens"):
        llm("b", max_tokens=50)
    assert len(fake_server.requests) == 1


def test_unknown_model_cost_is_flagged(fake_server, tmp_path):
    llm = make(fake_server, tmp_path, cache=False)
    llm("a")
    assert llm.usage.cost == 0.0 and llm.usage.unpriced_calls == 1


def test_structured_auto_falls_back_when_json_schema_is_rejected(fake_server, tmp_path):
    fake_server.push(
        Reply(500, {"error": {"message": "json_schema not supported"}}),
        Reply(200, completion('{"ok": true, "reason": "fine"}')),
        Reply(200, completion('{"ok": false, "reason": "again"}')),
    )
    llm = make(fake_server, tmp_path, cache=False)
    assert llm.structured("Judge this.", Verdict) == Verdict(ok=True, reason="fine")
    first, second = fake_server.requests[:2]
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"]["type"] == "json_object"
    assert second["response_format"]["schema"]["title"] == "Verdict"
    assert llm.structured_mode == "json_object_schema"  # remembered
    assert llm.structured("Again.", Verdict).ok is False
    assert fake_server.requests[2]["response_format"]["type"] == "json_object"
    assert len(fake_server.requests) == 3  # the probe was not retried


def test_a_described_reply_form_is_not_sent_again_as_schema_text_where_a_grammar_enforces_it(
        fake_server, tmp_path):
    """`described=True` (the caller's prompt states the form, as the text optimizer's does)
    leaves the schema text out only where the server's grammar enforces the schema; the
    schema is still sent as the response format, and other modes keep the text."""
    def last_prompt(request):
        return request["messages"][-1]["content"]

    fake_server.push(*[Reply(200, completion('{"ok": true, "reason": "fine"}'))] * 4)
    grammar = make(fake_server, tmp_path, cache=False, structured_mode="json_object_schema")
    grammar.structured("Judge this.", Verdict, described=True)
    grammar.structured("Judge this.", Verdict)
    plain = make(fake_server, tmp_path, cache=False, structured_mode="json_object")
    plain.structured("Judge this.", Verdict, described=True)
    first, second, third = fake_server.requests[:3]
    assert last_prompt(first) == "Judge this." and first["response_format"]["schema"]["title"] == "Verdict"
    assert "JSON schema" in last_prompt(second) and "JSON schema" in last_prompt(third)
    assert grammar.sends_schema_text(described=True) is False and plain.sends_schema_text(described=True)


def test_structured_reask_then_clear_error_nothing_half_applied(fake_server, tmp_path):
    fake_server.push(*[Reply(200, completion('{"ok": "maybe"}'))] * 3)
    llm = make(fake_server, tmp_path, cache=False, structured_mode="json_object_schema")
    result = None
    with pytest.raises(Exception) as info:
        result = llm.structured("Judge.", Verdict, max_reasks=2)
    assert type(info.value).__name__ == "StructuredOutputError" and result is None
    assert len(fake_server.requests) == 3
    assert "reason" in str(info.value)


def test_concurrency_limit(fake_server, tmp_path):
    fake_server.default_delay = 0.1
    llm = make(fake_server, tmp_path, cache=False, max_concurrency=2)
    threads = [threading.Thread(target=llm, args=(f"q{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_server.requests) == 6 and fake_server.max_in_flight <= 2
    assert llm.usage.calls == 6


def test_async_calls_respect_the_limit(fake_server, tmp_path):
    fake_server.default_delay = 0.1
    llm = make(fake_server, tmp_path, cache=False, max_concurrency=3)

    async def main():
        return await asyncio.gather(*(llm.acall(f"q{i}") for i in range(7)))

    replies = asyncio.run(main())
    assert replies == [f"echo: q{i}" for i in range(7)]
    assert fake_server.max_in_flight <= 3
    fake_server.push(Reply(200, completion('{"ok": true, "reason": "async"}')))
    verdict = asyncio.run(llm.astructured("x", Verdict))
    assert verdict.reason == "async"


def test_async_budget_is_reserved_for_calls_in_flight(fake_server, tmp_path):
    fake_server.default_delay = 0.1
    llm = make(fake_server, tmp_path, cache=False, budget=Budget(max_calls=3))

    async def main():
        return await asyncio.gather(*(llm.acall(f"q{i}") for i in range(5)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 2
    assert len(fake_server.requests) == 3


def test_urls_in_cache_keys_and_logs_carry_no_credentials():
    from tracekit.llm.openai_backend import redact_url

    assert redact_url("https://user:pw@host:8000/v1/?key=abc#x") == "https://host:8000/v1"
    assert redact_url(None) == "https://api.openai.com/v1"
