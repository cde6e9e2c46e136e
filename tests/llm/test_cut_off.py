"""A reply cut off at the token limit is marked by the backend and never cached."""

from __future__ import annotations

import pytest
from llm_fake_server import Reply, completion
from pydantic import BaseModel

from tracekit.llm import OpenAICompatible, StructuredOutputError, as_backend


class Answer(BaseModel):
    text: str


def cut(text: str) -> dict:
    body = completion(text)
    body["choices"][0]["finish_reason"] = "length"
    return body


def make(server, tmp_path, **options):
    return OpenAICompatible("fake-model", base_url=server.base_url, api_key="k",
                            cache=tmp_path / "cache", max_retries=0, **options)


def test_server_finish_reason_travels_with_the_reply_and_a_cut_reply_is_not_cached(fake_server, tmp_path):
    fake_server.push(Reply(200, cut('{"text": "Answer in one')))
    llm = make(fake_server, tmp_path)
    reply = llm("q")
    assert reply.finish_reason == "length"
    fake_server.push(Reply(200, completion('{"text": "Answer in one complete sentence."}')))
    again = llm("q")  # not answered from the cache: the server is asked again
    assert again.finish_reason == "stop" and len(fake_server.requests) == 2


def test_structured_refuses_a_cut_reply_even_when_it_validates_and_asks_with_more_room(fake_server, tmp_path):
    # the server stopped at the limit exactly after a closing brace: the JSON is valid, the
    # reply is still cut (the model had not finished), so it is re-asked with more room
    fake_server.push(Reply(200, cut('{"text": "Answer in one"}')),
                     Reply(200, completion('{"text": "Answer in one complete sentence."}')))
    llm = make(fake_server, tmp_path, structured_mode="json_object")
    answer = llm.structured("q", Answer, max_tokens=50)
    assert answer.text == "Answer in one complete sentence."
    assert [r["max_tokens"] for r in fake_server.requests] == [50, 100]


def test_callable_returning_a_chat_completion_reports_its_finish_reason():
    from openai.types.chat import ChatCompletion

    body = cut('{"text": "Answer in one')
    backend = as_backend(lambda messages: ChatCompletion.model_validate(body))
    assert backend("q").finish_reason == "length"
    with pytest.raises(StructuredOutputError, match="cut off"):
        backend.structured("q", Answer, max_reasks=0)


def test_plain_callable_cut_mid_json_is_refused_not_repaired():
    backend = as_backend(lambda messages: '{"text": "Answer in one')
    assert backend("q").finish_reason is None
    with pytest.raises(StructuredOutputError, match="cut off"):
        backend.structured("q", Answer, max_reasks=1)
