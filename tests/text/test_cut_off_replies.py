"""A reply cut off mid-JSON (or at the server's token limit) is never applied.

The scripted LLM returns a valid reply cut at every position: the parameters keep their
values and the step report says the reply was cut off. With finish_reason "length" the
reply is re-asked with twice the max_tokens. The last test uses the real embedded model
with a tiny max_tokens.
"""

from __future__ import annotations

import json

import pytest

import tracekit as tk

PROMPT = "Answer briefly."
CODE = "def act(x):\n    return x"
VALID = json.dumps({"suggestion": {"prompt": "Answer in one complete sentence, citing the source.",
                                   "act": "def act(x):\n    return x + 1"},
                    "reasoning": "r"})


@tk.bundle()
def answer(prompt, act, question):
    """Answer the question with the prompt, post-processed by act."""
    return f"{prompt} {question}"


def _setup(llm, **options):
    prompt = tk.param(PROMPT, name="prompt", description="the instruction")
    act = tk.param(CODE, kind="code", name="act")
    opt = tk.Optimizer([prompt, act], llm=llm, max_reasks=1, **options)
    opt.backward(answer(prompt, act, "why?"), "the answer was too vague")
    return prompt, act, opt


@pytest.mark.parametrize("structured", [True, False])
def test_a_reply_cut_at_any_position_is_never_applied(structured):
    for end in range(1, len(VALID)):
        cut = VALID[:end]
        prompt, act, opt = _setup(lambda messages, cut=cut: cut, use_structured=structured)
        report = opt.step()
        assert prompt.data == PROMPT and act.data == CODE, (end, cut, report)
        assert not report.changed
        if "{" in cut:
            assert "cut off" in report["prompt"].reason, (cut, report)
    prompt, act, opt = _setup(lambda messages: VALID, use_structured=structured)
    opt.step()  # the whole reply is applied
    assert prompt.data.endswith("source.") and act.data.endswith("x + 1")


def test_the_known_cases_keep_their_values_and_the_report_says_why():
    cases = ['{"suggestion": {"prompt": "Answer in one complete sentence',
             '{"suggestion": {"act": "def act(x):\\n    ret']
    for cut in cases:
        prompt, act, opt = _setup(lambda messages, cut=cut: cut)
        report = opt.step()
        assert (prompt.data, act.data) == (PROMPT, CODE)
        info = report["prompt"].info
        assert info["cut_off_replies"] == 2  # the first reply and the re-ask
        assert any("cut off" in p for p in info["reply_problems"])


def test_finish_reason_length_is_reasked_with_more_room():
    from openai.types.chat import ChatCompletion

    calls = []

    def llm(messages, max_tokens=None):
        calls.append(max_tokens)
        finish = "length" if len(calls) == 1 else "stop"
        return ChatCompletion.model_validate({
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": VALID}}]})

    prompt, act, opt = _setup(llm, max_tokens=300)
    report = opt.step()
    assert calls == [300, 600]  # the cut reply (valid JSON, but unfinished) was not used
    assert prompt.data.endswith("source.")
    assert report["prompt"].info["cut_off_replies"] == 1


@pytest.mark.real_llm
def test_real_model_with_a_tiny_token_limit_changes_nothing(real_llm):
    from tracekit.llm import EmbeddedLLM

    reply = real_llm([{"role": "user", "content": "Write a long story about a cat."}], max_tokens=3)
    assert reply.finish_reason == "length"
    llm = EmbeddedLLM(cache=False, max_tokens=6)
    prompt = tk.param("Say hello to the user in a friendly way.", name="greeting")
    act = tk.param(CODE, kind="code", name="act")
    opt = tk.Optimizer([prompt, act], llm=llm, max_reasks=1, max_tokens=6)
    opt.backward(answer(prompt, act, "hi"), "the greeting is too short; make it warmer")
    report = opt.step()
    # 6 then 12 tokens cannot hold a whole reply: nothing is applied, the report says why
    assert (prompt.data, act.data) == ("Say hello to the user in a friendly way.", CODE), report
    assert report["greeting"].info["cut_off_replies"] >= 1, report
    assert "cut off" in report["greeting"].reason
