"""The small-model defaults follow the server, not the class: any llama.cpp server found by
probing its structured output once (also when many threads ask at the same time)."""

from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel

import tracekit as tk
from tracekit.routes.text import EMBEDDED_BUDGET, TextSolver, small_model_server

pytestmark = pytest.mark.real_llm


class Yes(BaseModel):
    ok: bool


def openai_client_on(embedded_llm) -> tk.llm.OpenAICompatible:
    embedded_llm("hi", max_tokens=1)  # the server is up
    return tk.llm.OpenAICompatible(model="local", base_url=embedded_llm.server.base_url,
                                   api_key="none", cache=False)


def test_an_openai_compatible_backend_on_llama_cpp_gets_the_small_model_defaults(embedded_llm):
    backend = openai_client_on(embedded_llm)
    assert backend.structured_mode == "auto"
    assert small_model_server(backend) and backend.structured_mode == "json_object_schema"
    solver = TextSolver([], llm=backend)
    x = tk.param("hello", name="x")

    class Context:
        llm = backend

    optimizer = solver._get_optimizer(Context(), has_objective=False)
    assert optimizer.budget == EMBEDDED_BUDGET and optimizer.constrain_text and optimizer.constrain_code
    assert x.data == "hello"


def test_structured_output_is_probed_once_under_concurrency(embedded_llm):
    backend = openai_client_on(embedded_llm)
    results, errors = [], []

    def ask() -> None:
        try:
            results.append(backend.structured([{"role": "user", "content": "Is 2 > 1? JSON."}], Yes,
                                              max_reasks=0, max_tokens=16))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6
    usage = backend.accounting.totals()
    # one refused json_schema probe at most, never one per thread
    assert usage.errors <= 1 and usage.calls <= 7, usage
    assert backend.structured_mode == "json_object_schema"
