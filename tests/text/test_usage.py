"""One LLM usage type end to end: backend accounting -> text solver info -> step report ->
trainer run log (`tracekit.llm.Usage`)."""

import json

import tracekit as tk
from tracekit.llm import CallableBackend, Usage
from tracekit.training.trainer import _usage


def scripted_llm(messages, **kwargs):
    """A scripted model that reports its token counts like an OpenAI ChatCompletion."""
    reply = json.dumps({"reasoning": "be shorter", "suggestion": {"prompt": "Be brief."}})

    class Message:
        content = reply

    class Choice:
        message = Message()

    class Tokens:
        prompt_tokens = 120
        completion_tokens = 30

    class Completion:
        choices = [Choice()]
        usage = Tokens()

    return Completion()


def _step():
    prompt = tk.param("Please answer at length.", name="prompt")
    backend = CallableBackend(scripted_llm, prices={scripted_llm.__qualname__: (1.0, 2.0)})
    opt = tk.Optimizer([prompt], llm=backend)
    opt.backward(prompt + " Q?", "too long")
    return opt.step(), prompt


def test_the_step_report_and_the_solver_info_show_one_usage():
    report, prompt = _step()
    assert prompt.data == "Be brief."
    spent = report["prompt"].info["llm_usage"]
    assert isinstance(spent, Usage)
    assert (spent.calls, spent.prompt_tokens, spent.completion_tokens) == (1, 120, 30)
    assert (report.llm_calls, report.prompt_tokens, report.completion_tokens) == (1, 120, 30)
    assert report.cost == spent.cost > 0
    assert report["prompt"].info["replies"] == 1
    assert Usage.from_report(report).report_fields() == spent.report_fields()
    assert "LLM calls 1, tokens 150" in str(report)


def test_the_trainer_logs_the_same_usage():
    report, _ = _step()
    assert _usage(report) == {"llm_calls": 1, "prompt_tokens": 120, "completion_tokens": 30,
                              "cost": report.cost}
    assert _usage(None) == {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}


def test_the_trainer_falls_back_on_the_solver_info_once_per_solver():
    report, _ = _step()
    report.llm_calls = report.prompt_tokens = report.completion_tokens = 0
    report.cost = 0.0
    assert _usage(report)["llm_calls"] == 1 and _usage(report)["prompt_tokens"] == 120


def test_usage_arithmetic():
    a = Usage(calls=2, prompt_tokens=10, completion_tokens=5, cost=0.5, cache_hits=1)
    b = Usage(calls=1, prompt_tokens=4, completion_tokens=1, cost=0.25)
    assert (a - b).report_fields() == {"llm_calls": 1, "prompt_tokens": 6, "completion_tokens": 4,
                                       "cost": 0.25}
    assert (a + b).calls == 3 and (a + b).cache_hits == 1
