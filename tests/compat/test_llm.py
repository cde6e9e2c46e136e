"""Port of Trace's tests/unit_tests/test_llm.py: calling the configured LLM with chat
messages. Trace's `LLM()` is `tk.llm.default()` (the embedded model unless configured); a
call returns the reply text rather than an OpenAI completion object."""

import pytest

import tracekit as tk
from tests.compat.helpers import differs

SYSTEM_PROMPT = "You are a helpful assistant."
USER_PROMPT = "Hello world."
MESSAGES = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": USER_PROMPT}]


def echo(messages, **kwargs):
    return f"echo: {messages[-1]['content']}"


def test_call_with_messages():
    llm = tk.llm.as_backend(echo)
    output = llm(messages=MESSAGES)
    assert output == "echo: Hello world."


@differs("a backend call returns the reply text (str), not an OpenAI ChatCompletion: write "
         "llm(messages) instead of llm(messages=...).choices[0].message.content")
def test_reply_is_a_completion_object():
    llm = tk.llm.as_backend(echo)
    assert llm(messages=MESSAGES).choices[0].message.content == "echo: Hello world."


@pytest.mark.real_llm
def test_default_model_replies(embedded_llm):
    output = embedded_llm(messages=MESSAGES, max_tokens=8)
    assert isinstance(output, str) and output.strip()
