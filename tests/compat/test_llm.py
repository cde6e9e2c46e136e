"""Port of Trace's tests/unit_tests/test_llm.py: calling the configured LLM with chat
messages and reading the reply as from an OpenAI completion. Trace runs it only with a key;
here with a scripted backend, and with the embedded model (real_llm)."""

import pytest

from tracekit.trace import LLM
from tracekit.trace import operators as ops

SYSTEM_PROMPT = "You are a helpful assistant."
USER_PROMPT = "Hello world."
MESSAGES = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": USER_PROMPT}]


def echo(messages, **kwargs):
    return f"echo: {messages[-1]['content']}"


def test_call_with_messages():
    llm = LLM(llm=echo)
    output = llm(messages=MESSAGES)
    response = output.choices[0].message.content
    assert response == "echo: Hello world."
    assert llm.create(messages=MESSAGES).choices[0].message.content == response


def test_call_llm_operator():
    import tracekit as tk

    tk.llm.set_default(echo)
    try:
        out = ops.call_llm(SYSTEM_PROMPT, USER_PROMPT)
    finally:
        tk.llm.set_default(None)
    assert out.data == "echo: Hello world."


@pytest.mark.real_llm
def test_default_model_replies(embedded_llm):
    output = LLM(llm=embedded_llm)(messages=MESSAGES, max_tokens=8)
    response = output.choices[0].message.content
    assert isinstance(response, str) and response.strip()
