"""`OpenAICompatible`: any OpenAI-compatible chat endpoint through the official `openai` client.

Works with OpenAI itself and with vLLM, Ollama, llama.cpp and other servers that speak the
same protocol. Retries with exponential backoff on 408/409/429/5xx and connection errors are
the client's own (`max_retries`); `timeout` bounds each request. `openai` is imported on first
use so that `import tracekit.llm` stays cheap.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from tracekit.errors import message_of

from .accounting import Budget, estimate_tokens
from .backend import Backend, Completion, Request
from .cache import Cache
from .errors import LLMConfigError, LLMConnectionError, LLMRequestError, LLMTimeoutError, describe
from .settings import LLMSettings

# Placeholder for servers that need no key (the openai client insists on one).
NO_KEY = "not-needed"


def redact_url(url: str | None) -> str:
    """A URL without user:password@, query or fragment (safe for cache keys and logs)."""
    if not url:
        return "https://api.openai.com/v1"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class OpenAICompatible(Backend):
    """A chat model behind an OpenAI-compatible HTTP API.

    Args:
        model: model name as the server knows it ("gpt-4o-mini", "llama3.2", ...); defaults to
            `TRACEKIT_LLM_MODEL`.
        base_url: server URL ending in /v1; None means OpenAI (or `TRACEKIT_LLM_BASE_URL`).
        api_key: defaults to `TRACEKIT_LLM_API_KEY` / `OPENAI_API_KEY`; not needed for local
            servers. Never written to the cache or logs.
        timeout: seconds per request; max_retries: client retries with backoff.
        structured_mode: "auto" (probe json_schema, then json_object+schema, json_object,
            prompt; the first that works is kept), or one of those names.
        temperature, max_tokens, seed: default sampling parameters (per-call kwargs win).
        Other keyword arguments: see `Backend` (cache, budget, prices, max_concurrency,
        max_reasks, defaults, name).
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        structured_mode: str = "auto",
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        max_concurrency: int | None = None,
        cache: Cache | bool | str | None = None,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        max_reasks: int = 2,
        defaults: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        settings = LLMSettings()
        model = model or settings.model
        if not model:
            raise LLMConfigError(
                "OpenAICompatible needs a model name: pass model='gpt-4o-mini' (or the name your "
                "server uses) or set TRACEKIT_LLM_MODEL."
            )
        base_url = base_url or settings.base_url
        secret = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        if not secret:
            if base_url is None:
                raise LLMConfigError(
                    f"OpenAICompatible(model={model!r}) talks to OpenAI and needs an API key: "
                    f"set OPENAI_API_KEY or pass api_key=...; for a local server pass base_url= "
                    f"(or set TRACEKIT_LLM_BASE_URL)."
                )
            secret = NO_KEY
        if structured_mode not in ("auto", "json_schema", "json_object_schema", "json_object",
                                   "prompt"):
            raise LLMConfigError(
                f"structured_mode={structured_mode!r} is not one of 'auto', 'json_schema', "
                f"'json_object_schema', 'json_object', 'prompt'."
            )
        sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        super().__init__(
            model=model,
            name=name or f"OpenAICompatible({model} @ {redact_url(base_url)})",
            cache=cache,
            budget=budget,
            prices=prices,
            max_concurrency=max_concurrency or settings.max_concurrency,
            max_reasks=max_reasks,
            defaults={**sampling, **(defaults or {})},
        )
        if base_url is None and structured_mode == "auto":
            structured_mode = "json_schema"  # OpenAI itself supports it
        self.structured_mode = structured_mode
        self.base_url = base_url
        self.timeout = timeout if timeout is not None else settings.timeout
        self.max_retries = max_retries if max_retries is not None else settings.max_retries
        self._api_key = SecretStr(secret)  # repr shows '**********', never the key
        self._clients: dict[int, Any] = {}
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._client_lock = threading.Lock()

    @property
    def cache_namespace(self) -> str:
        return f"openai-compatible:{redact_url(self.base_url)}"

    # -- clients (one per process; one async client per event loop) -------------------------
    def _client_options(self) -> dict[str, Any]:
        return {
            "api_key": self._api_key.get_secret_value(),
            "base_url": self._resolve_base_url(),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def _resolve_base_url(self) -> str | None:
        return self.base_url

    def client(self) -> Any:
        """The `openai.OpenAI` client of this process (re-created after a fork)."""
        pid = os.getpid()
        with self._client_lock:
            if pid not in self._clients:
                import openai

                self._clients = {pid: openai.OpenAI(**self._client_options())}
            return self._clients[pid]

    def async_client(self) -> Any:
        """The `openai.AsyncOpenAI` client of the running event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._client_lock:
            client = self._async_clients.get(loop)
            if client is None:
                import openai

                client = openai.AsyncOpenAI(**self._client_options())
                self._async_clients[loop] = client
            return client

    # -- transport -------------------------------------------------------------------------
    def _create_args(self, request: Request) -> dict[str, Any]:
        params = dict(request.params)
        extra_body = dict(params.pop("extra_body", None) or {})
        fmt = params.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_object" and "schema" in fmt:
            # llama.cpp's extension: the openai client would drop unknown keys, so send raw.
            extra_body["response_format"] = params.pop("response_format")
        args: dict[str, Any] = {"model": self.model, "messages": request.messages, **params}
        if extra_body:
            args["extra_body"] = extra_body
        if request.timeout is not None:
            args["timeout"] = request.timeout
        return args

    def _complete(self, request: Request) -> Completion:
        client = self.client()
        if request.probe:
            client = client.with_options(max_retries=0)
        try:
            response = client.chat.completions.create(**self._create_args(request))
        except Exception as exc:
            raise self._translate(exc) from exc
        return self._completion(request, response)

    async def _acomplete(self, request: Request) -> Completion:
        client = self.async_client()
        if request.probe:
            client = client.with_options(max_retries=0)
        try:
            response = await client.chat.completions.create(**self._create_args(request))
        except Exception as exc:
            raise self._translate(exc) from exc
        return self._completion(request, response)

    def _completion(self, request: Request, response: Any) -> Completion:
        try:
            text = response.choices[0].message.content or ""
            finish = getattr(response.choices[0], "finish_reason", None)
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMRequestError(
                f"{self.name} sent a reply without choices[0].message ({response!r:.200}); is "
                f"base_url an OpenAI-compatible /v1 endpoint?"
            ) from exc
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            return Completion(text, int(usage.prompt_tokens), int(usage.completion_tokens or 0),
                              model=getattr(response, "model", None) or None,
                              finish_reason=finish if isinstance(finish, str) else None)
        return Completion(text, request.prompt_estimate, estimate_tokens(text),
                          tokens_estimated=True,
                          finish_reason=finish if isinstance(finish, str) else None)

    def _translate(self, exc: Exception) -> Exception:
        """Map an `openai` exception to a tracekit one whose message says what to do."""
        import openai

        where = f"{self.name}"
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(
                f"{where}: no reply within {self.timeout:g}s after {self.max_retries} retries. "
                f"Raise timeout= (or TRACEKIT_LLM_TIMEOUT), shorten the prompt, or lower "
                f"max_tokens."
            )
        if isinstance(exc, openai.APIConnectionError):
            return LLMConnectionError(
                f"{where}: cannot connect ({message_of(exc, 300)}) after {self.max_retries} retries. Check that "
                f"the server is running and that base_url is right."
            )
        if isinstance(exc, openai.AuthenticationError):
            return LLMRequestError(
                f"{where}: the server rejected the API key (HTTP 401). Set OPENAI_API_KEY or "
                f"TRACEKIT_LLM_API_KEY, or pass api_key=.", status_code=401,
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            hint = {
                429: "rate limited even after retries; lower max_concurrency or wait",
                404: "unknown model or wrong base_url",
                400: "the server rejected the request",
            }.get(status, "server error after retries" if status >= 500 else "request failed")
            return LLMRequestError(f"{where}: HTTP {status}: {hint}. Server said: "
                                   f"{message_of(exc, 300)}", status_code=status)
        if isinstance(exc, openai.OpenAIError):
            return LLMRequestError(f"{where}: {message_of(exc, 300)}")
        if isinstance(exc, ValueError):  # a body that is not JSON
            return LLMRequestError(
                f"{where}: the server's reply is not an OpenAI chat completion ({describe(exc)}). "
                f"Is base_url an OpenAI-compatible endpoint ending in /v1?"
            )
        return exc
