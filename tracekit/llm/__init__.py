"""tracekit's LLM layer: every LLM call goes through a cached, counted, retried backend.

    llm = tracekit.llm.default()          # configured backend, else the embedded local model
    llm = tracekit.llm.OpenAICompatible("gpt-4o-mini")              # or base_url="http://.../v1"
    text = llm([{"role": "user", "content": "Hi"}])
    answer = llm.structured(messages, Answer)                       # a validated pydantic model
    with llm.accounting.scope() as usage: ...                       # tokens / cost of a block
    backend = tracekit.llm.as_backend(any_function_or_backend)

See docs/llm.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .accounting import Accounting, Budget, CallRecord, Prices, Usage
from .backend import Backend, Completion, Reply, Request
from .cache import Cache, is_cacheable
from .callable_backend import CallableBackend
from .embedded import EmbeddedLLM, EmbeddedServer
from .errors import (
    BudgetExceeded,
    EmbeddedModelError,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    StructuredOutputError,
)
from .openai_backend import OpenAICompatible
from .settings import LLMSettings

__all__ = [
    "Accounting",
    "Backend",
    "Budget",
    "BudgetExceeded",
    "Cache",
    "CallRecord",
    "CallableBackend",
    "Completion",
    "EmbeddedLLM",
    "EmbeddedModelError",
    "EmbeddedServer",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMError",
    "LLMRequestError",
    "LLMSettings",
    "LLMTimeoutError",
    "OpenAICompatible",
    "Prices",
    "Reply",
    "Request",
    "StructuredOutputError",
    "Usage",
    "as_backend",
    "default",
    "is_cacheable",
    "set_default",
]

_default: Backend | None = None
_default_lock = threading.Lock()


def default() -> Backend:
    """The process-wide default backend (built once, then the same object).

    `TRACEKIT_LLM_BASE_URL` and/or `TRACEKIT_LLM_MODEL` select an `OpenAICompatible` backend
    (with `OPENAI_API_KEY` / `TRACEKIT_LLM_API_KEY` as its key); otherwise, or with
    `TRACEKIT_LLM_MODEL=embedded`, the embedded local model. An API key alone does not switch
    away from the local model, so that nothing is spent by accident.
    """
    global _default
    with _default_lock:
        if _default is None:
            settings = LLMSettings()
            _default = OpenAICompatible() if settings.wants_remote() else EmbeddedLLM()
        return _default


def set_default(backend: Backend | Callable[..., Any] | None) -> None:
    """Replace the default backend (any callable is wrapped); None rebuilds it from settings."""
    global _default
    with _default_lock:
        _default = None if backend is None else as_backend(backend)


def as_backend(obj: Backend | Callable[..., Any] | None, **options: Any) -> Backend:
    """A tracekit backend for whatever was passed as `llm=`.

    A `Backend` is returned unchanged; None gives `default()`; any other callable
    `f(messages, **kwargs) -> str` is wrapped in a `CallableBackend` (options go to it).
    """
    if isinstance(obj, Backend):
        return obj
    if obj is None:
        return default()
    if callable(obj):
        return CallableBackend(obj, **options)
    raise TypeError(
        f"llm= must be a tracekit backend or a callable llm(messages, **kwargs) -> str, got "
        f"{type(obj).__name__}. Use tracekit.llm.OpenAICompatible(model=...) for a server."
    )
