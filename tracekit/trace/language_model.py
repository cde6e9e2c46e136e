"""Trace's `LLM` (`opto.utils.llm.LLM`): a callable that answers chat messages like an OpenAI
chat completion (`llm(messages=...).choices[0].message.content`), over a tracekit backend
(cached, counted, the embedded model by default)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tracekit import llm as llm_layer


class LLM:
    """`LLM()` uses `tk.llm.default()`; `LLM(model="gpt-4o-mini")` an OpenAI-compatible
    server (`TRACEKIT_LLM_BASE_URL`, `OPENAI_API_KEY`); `LLM(llm=f)` any tracekit backend or
    `f(messages, **kwargs) -> str`. `reset_freq` and `cache` are Trace's and have no effect
    (tracekit's backends keep their own cache)."""

    def __init__(self, model: str | None = None, reset_freq: int | None = None, cache: bool = True,
                 llm: Any = None) -> None:
        self.backend: llm_layer.Backend | None
        if llm is not None:
            self.backend = llm_layer.as_backend(llm)
        elif model is not None:
            self.backend = llm_layer.OpenAICompatible(model=model)
        else:
            self.backend = None  # the default backend, resolved at the first call

    def __call__(self, messages: list[dict[str, str]] | None = None, **kwargs: Any) -> SimpleNamespace:
        """Send `messages`; the reply text is `result.choices[0].message.content`."""
        if messages is None:
            raise TypeError("LLM() needs messages=[{'role': ..., 'content': ...}, ...]")
        backend = self.backend if self.backend is not None else llm_layer.default()
        text = backend(messages, **kwargs)
        message = SimpleNamespace(role="assistant", content=text)
        return SimpleNamespace(choices=[SimpleNamespace(index=0, message=message, finish_reason="stop")],
                               model=getattr(backend, "model", ""))

    create = __call__
