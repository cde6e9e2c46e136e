"""`CallableBackend`: any plain function `f(messages, **kwargs) -> str` as a full backend.

The wrapper adds what a bare function lacks: accounting (tokens estimated from text when the
function does not report them), budgets, the concurrency limit, optional cache and retries,
async calls, and `structured` (JSON asked for in the prompt, parsed, repaired, re-asked).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .accounting import Budget, estimate_tokens
from .backend import Backend, Completion, Request
from .cache import Cache
from .errors import LLMError


def _accepted_kwargs(fn: Callable[..., Any]) -> Literal[True] | frozenset[str]:
    """True if `fn` takes **kwargs; else the keyword names it takes besides `messages`."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return frozenset()
    parameters = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    names = [
        p.name for p in parameters[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return frozenset(names)


def _text_of(result: Any, fn_name: str) -> tuple[str, int | None, int | None, str | None]:
    """Reply text, token counts and finish reason (None where not reported) from what a
    callable returned (a plain str has no finish reason; a `Reply` or ChatCompletion has)."""
    if isinstance(result, str):
        finish = getattr(result, "finish_reason", None)
        return str(result), None, None, finish if isinstance(finish, str) else None
    choices = getattr(result, "choices", None)
    if choices:  # an openai ChatCompletion returned as-is
        usage = getattr(result, "usage", None)
        finish = getattr(choices[0], "finish_reason", None)
        return (
            choices[0].message.content or "",
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            finish if isinstance(finish, str) else None,
        )
    raise LLMError(
        f"The LLM callable {fn_name} returned {type(result).__name__}; it must return the "
        f"reply text as str (or an openai ChatCompletion)."
    )


class CallableBackend(Backend):
    """Wraps `fn(messages, **kwargs) -> str` (sync or async) into a `Backend`.

    `fn` receives only the keyword arguments its signature accepts (all of them if it takes
    **kwargs); temperature defaults are not injected. The cache is off by default, because a
    plain function may be random or scripted; pass `cache=True` (and a stable `name`) to turn
    it on. `retries` retries calls that raise one of `retry_on`, with exponential backoff.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        model: str | None = None,
        cache: Cache | bool | str | None = False,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        max_concurrency: int = 8,
        max_reasks: int = 2,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"as_backend() needs a callable llm(messages, **kwargs) -> str, got {fn!r}")
        label = name or getattr(fn, "__qualname__", None) or type(fn).__qualname__
        module = getattr(fn, "__module__", None) or type(fn).__module__
        super().__init__(
            model=model or label,
            name=name or f"CallableBackend({module}.{label})",
            cache=cache,
            budget=budget,
            prices=prices if prices is not None else {},
            max_concurrency=max_concurrency,
            max_reasks=max_reasks,
            defaults={"temperature": None, **(defaults or {})},
        )
        self.fn = fn
        self.retries = retries
        self.retry_on = retry_on
        self._accepts = _accepted_kwargs(fn)
        call_method = type(fn).__call__ if not inspect.isroutine(fn) else None
        self._is_async = inspect.iscoroutinefunction(fn) or (
            call_method is not None and inspect.iscoroutinefunction(call_method)
        )
        self.structured_mode = "prompt"

    @property
    def cache_namespace(self) -> str:
        return f"callable:{self.name}"

    def _is_cacheable(self, params: Mapping[str, Any], rollout_id: str | None) -> bool:
        # With the cache turned on explicitly, a call that sets no temperature is taken as
        # deterministic: the function decides, and the user asked for caching.
        return "temperature" not in params or super()._is_cacheable(params, rollout_id)

    def _arguments(self, request: Request) -> dict[str, Any]:
        if self._accepts is True:
            return dict(request.params)
        return {k: v for k, v in request.params.items() if k in self._accepts}

    def _completion(self, request: Request, result: Any) -> Completion:
        text, prompt_tokens, completion_tokens, finish = _text_of(result, self.name)
        if prompt_tokens is None or completion_tokens is None:
            return Completion(text, request.prompt_estimate, estimate_tokens(text),
                              tokens_estimated=True, finish_reason=finish)
        return Completion(text, int(prompt_tokens), int(completion_tokens), finish_reason=finish)

    def _retrying(self) -> Any:
        import tenacity

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5),
            retry=tenacity.retry_if_exception_type(self.retry_on),
            reraise=True,
        )

    def _complete(self, request: Request) -> Completion:
        def once() -> Any:
            result = self.fn(request.messages, **self._arguments(request))
            if inspect.isawaitable(result):
                try:
                    asyncio.get_running_loop()
                except RuntimeError:
                    return asyncio.run(_awaited(result))
                raise LLMError(
                    f"{self.name} is async; inside an event loop use `await llm.acall(...)`."
                )
            return result

        result = self._retrying()(once) if self.retries else once()
        return self._completion(request, result)

    async def _acomplete(self, request: Request) -> Completion:
        if not self._is_async:
            return await super()._acomplete(request)
        import tenacity

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5),
            retry=tenacity.retry_if_exception_type(self.retry_on),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await self.fn(request.messages, **self._arguments(request))
        return self._completion(request, result)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
