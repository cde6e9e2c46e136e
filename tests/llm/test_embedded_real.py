"""The real embedded model (SmolLM2-135M on llama.cpp's server), started once per session."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.real_llm

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


class Capital(BaseModel):
    country: str
    capital: str


class Review(BaseModel):
    sentiment: str = Field(description="positive or negative")
    score: int


def test_plain_reply_with_accounting(embedded_llm_nocache):
    llm = embedded_llm_nocache
    with llm.accounting.scope() as usage:
        text = llm(HELLO, max_tokens=16)
    assert isinstance(text, str) and text.strip()
    assert usage.calls == 1 and usage.cache_hits == 0 and usage.errors == 0
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 16
    assert usage.cost == 0.0 and usage.unpriced_calls == 0 and usage.latency_s > 0
    record = llm.accounting.records[-1]
    assert not record.tokens_estimated and not record.cache_hit


def test_structured_reply_is_a_validated_model(embedded_llm):
    with embedded_llm.accounting.scope() as usage:
        answer = embedded_llm.structured(
            "What is the capital of France? Give the country and its capital.",
            Capital, max_tokens=48,
        )
    assert isinstance(answer, Capital) and answer.capital.strip()
    assert 1 <= usage.calls + usage.cache_hits <= 3  # schema-constrained: rarely re-asks


def test_cache_hit_on_repeat(embedded_llm):
    messages = [{"role": "user", "content": "Name one colour. Answer with one word."}]
    first = embedded_llm(messages, max_tokens=64)
    assert first.finish_reason == "stop"  # a reply cut at max_tokens would not be cached
    with embedded_llm.accounting.scope() as usage:
        second = embedded_llm(messages, max_tokens=64)
    assert second == first
    assert usage.cache_hits == 1 and usage.calls == 0 and usage.total_tokens == 0
    hit = embedded_llm.accounting.records[-1]
    assert hit.cache_hit and hit.latency_s < 0.05


def test_unseeded_sampling_is_never_served_from_cache(embedded_llm):
    messages = [{"role": "user", "content": "Write a word."}]
    with embedded_llm.accounting.scope() as usage:
        embedded_llm(messages, temperature=1.0, max_tokens=6)
        embedded_llm(messages, temperature=1.0, max_tokens=6)
    assert usage.calls == 2 and usage.cache_hits == 0  # fresh samples, never the cache


def test_seed_makes_sampling_reproducible(embedded_llm_nocache):
    messages = [{"role": "user", "content": "Invent a name for a cat."}]
    first = embedded_llm_nocache(messages, temperature=1.0, seed=11, max_tokens=10)
    second = embedded_llm_nocache(messages, temperature=1.0, seed=11, max_tokens=10)
    assert first == second


def test_async_calls(embedded_llm_nocache):
    llm = embedded_llm_nocache

    async def main():
        return await asyncio.gather(
            llm.acall([{"role": "user", "content": "Say yes."}], max_tokens=4),
            llm.astructured("Review: 'great phone, love it'. Sentiment and score 1-5?",
                            Review, max_tokens=32),
        )

    text, review = asyncio.run(main())
    assert text.strip() and isinstance(review, Review)
    assert llm.usage.calls >= 2


@pytest.mark.slow
def test_prompt_longer_than_llama_cpp_default_context(embedded_llm_nocache):
    # llama.cpp's default n_ctx is 2048; tracekit starts the server with 8192.
    filler = "The quick brown fox jumps over the lazy dog. " * 215  # about 2150 tokens
    with embedded_llm_nocache.accounting.scope() as usage:
        text = embedded_llm_nocache(
            [{"role": "user", "content": filler + "\nWhat animal jumps?"}], max_tokens=4
        )
    assert isinstance(text, str) and usage.prompt_tokens > 2048
