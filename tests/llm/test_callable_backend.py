"""Plain callables as backends: wrapping, kwargs, accounting, structured repair and re-ask."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import tracekit.llm as tkllm
from tracekit.llm import (
    Backend,
    BudgetExceeded,
    CallableBackend,
    LLMError,
    StructuredOutputError,
    as_backend,
)


class Answer(BaseModel):
    reasoning: str
    value: int


def scripted(*replies: str):
    """A callable that returns the replies in order and records every call."""
    queue = list(replies)
    calls: list[list[dict]] = []

    def llm(messages):
        calls.append(messages)
        return queue.pop(0)

    llm.calls = calls  # type: ignore[attr-defined]
    return llm


def test_as_backend_wraps_callables_and_keeps_backends():
    backend = as_backend(lambda messages: "hi")
    assert isinstance(backend, CallableBackend)
    assert as_backend(backend) is backend
    assert backend([{"role": "user", "content": "x"}]) == "hi"
    with pytest.raises(TypeError, match="llm= must be"):
        as_backend(42)


def test_messages_only_callable_never_gets_kwargs():
    seen = []

    def llm(messages):
        seen.append(messages)
        return "ok"

    backend = as_backend(llm)
    assert backend("hello", temperature=0.3, max_tokens=5, rollout_id="r1") == "ok"
    assert seen == [[{"role": "user", "content": "hello"}]]


def test_kwargs_reach_callables_that_accept_them():
    seen = {}

    def named(messages, temperature=1.0):
        seen["named"] = temperature
        return "a"

    def anything(messages, **kwargs):
        seen["any"] = kwargs
        return "b"

    as_backend(named)("q", temperature=0.2, max_tokens=3)
    as_backend(anything)("q", temperature=0.2, max_tokens=3, rollout_id="r", cache=False)
    assert seen["named"] == 0.2
    assert seen["any"] == {"temperature": 0.2, "max_tokens": 3}  # tracekit's own options stripped


def test_accounting_estimates_tokens_for_plain_text():
    backend = as_backend(lambda messages: "four")
    with backend.accounting.scope() as usage:
        backend("a" * 40)
        backend("b" * 40)
    assert usage.calls == 2 and usage.cache_hits == 0
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 2
    assert usage.cost == 0.0
    assert backend.usage.calls == 2
    assert all(r.tokens_estimated for r in backend.accounting.records)


def test_non_string_reply_is_a_clear_error():
    with pytest.raises(LLMError, match="must return the reply text as str"):
        as_backend(lambda messages: {"content": "x"})("q")


def test_structured_valid_first_time():
    llm = scripted('{"reasoning": "r", "value": 3}')
    assert as_backend(llm).structured("q", Answer) == Answer(reasoning="r", value=3)
    assert len(llm.calls) == 1
    assert "JSON schema" in llm.calls[0][-1]["content"]  # the prompt asks for JSON


def test_structured_repairs_broken_json_without_reasking():
    llm = scripted("Sure!\n```json\n{'reasoning': 'r', 'value': 3,}\n```")
    assert as_backend(llm).structured("q", Answer).value == 3
    assert len(llm.calls) == 1


def test_structured_never_repairs_json_that_does_not_close():
    # closing the object would be a guess at where the reply ended: it is re-asked instead
    llm = scripted('Sure!\n```json\n{"reasoning": "r", "value": 3,\n```',
                   '{"reasoning": "r", "value": 4}')
    assert as_backend(llm).structured("q", Answer).value == 4
    assert len(llm.calls) == 2
    assert "cut off" in llm.calls[1][-1]["content"]


def test_structured_reasks_with_the_problem_named():
    llm = scripted('{"reasoning": "r"}', '{"reasoning": "r", "value": 5}')
    assert as_backend(llm).structured("q", Answer).value == 5
    assert len(llm.calls) == 2
    reask = llm.calls[1]
    assert reask[-2] == {"role": "assistant", "content": '{"reasoning": "r"}'}
    assert "value" in reask[-1]["content"] and "not valid" in reask[-1]["content"]


def test_structured_gives_up_with_a_clear_error_after_bounded_reasks():
    llm = scripted("no json here", "still none", "nope", "never asked")
    backend = as_backend(llm)
    with pytest.raises(StructuredOutputError) as info:
        backend.structured("q", Answer, max_reasks=2)
    assert len(llm.calls) == 3  # first try + 2 re-asks, then stop
    error = info.value
    assert len(error.attempts) == 3 and error.last_reply == "nope"
    assert "Answer" in str(error) and "max_reasks" in str(error)


def test_structured_rejects_a_non_model_schema():
    with pytest.raises(TypeError, match="pydantic model"):
        as_backend(lambda m: "{}").structured("q", dict)  # type: ignore[arg-type]


def test_budget_counts_structured_attempts():
    llm = scripted("bad", "bad", "bad")
    backend = as_backend(llm, budget=tkllm.Budget(max_calls=2))
    with pytest.raises(BudgetExceeded, match="calls"):
        backend.structured("q", Answer, max_reasks=5)
    assert len(llm.calls) == 2


def test_async_callables_and_acall():
    async def allm(messages, **kwargs):
        await asyncio.sleep(0)
        return '{"reasoning": "async", "value": 1}'

    backend = as_backend(allm)

    async def main():
        text = await backend.acall("q")
        answer = await backend.astructured("q", Answer)
        return text, answer

    text, answer = asyncio.run(main())
    assert answer.reasoning == "async" and text.startswith("{")
    assert backend("q").startswith("{")  # sync call of an async function, outside a loop


def test_sync_callable_through_acall_runs_in_a_thread():
    backend = as_backend(lambda messages: "x")
    assert asyncio.run(backend.acall("q")) == "x"


def test_retries_on_connection_errors_when_asked():
    state = {"n": 0}

    def flaky(messages):
        state["n"] += 1
        if state["n"] < 3:
            raise ConnectionError("down")
        return "up"

    assert as_backend(flaky, retries=2)("q") == "up"
    state["n"] = 0
    backend = as_backend(flaky, retries=0)
    with pytest.raises(ConnectionError):
        backend("q")
    assert backend.usage.errors == 1


def test_cache_is_off_for_callables_unless_asked(tmp_path):
    llm = scripted("one", "two", "three")
    backend = as_backend(llm)
    assert backend("q") == "one" and backend("q") == "two"
    cached = as_backend(scripted("A", "B"), cache=tmp_path, name="fixed")
    assert cached("q") == "A" and cached("q") == "A"
    assert cached.usage.cache_hits == 1


def test_backend_is_the_base_class():
    assert issubclass(CallableBackend, Backend)


def test_bad_messages_are_rejected_clearly():
    backend = as_backend(lambda m: "x")
    with pytest.raises(TypeError, match="OpenAI chat format"):
        backend([{"content": "no role"}])
    with pytest.raises(ValueError, match="empty"):
        backend([])
