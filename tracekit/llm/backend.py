"""The backend protocol and the pipeline every LLM call goes through.

`Backend.__call__` (and `acall`) run the same steps for every subclass: normalize the
messages, answer from the cache when that is correct, check the budget, wait for a
concurrency slot, call the model (`_complete` / `_acomplete`, the only part a subclass
writes), then record tokens, latency and cost. `structured` / `astructured` build on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from solvers.text.completeness import LENGTH_REASONS

from .accounting import Accounting, Budget, CallRecord, Reservation, Usage, estimate_tokens
from .cache import Cache, CachedReply, cache_key, is_cacheable, resolve_cache
from .errors import LLMRequestError, describe
from .structured import (
    ENFORCED_MODES,
    STRUCTURED_MODES,
    StructuredAttempts,
    StructuredMode,
    response_format,
)

logger = logging.getLogger("tracekit.llm")

ModelT = TypeVar("ModelT", bound=BaseModel)
Messages = Sequence[Mapping[str, Any]] | str

# Per-call options that tracekit consumes itself; everything else goes to the model.
CALL_OPTIONS = ("rollout_id", "cache", "timeout")
# Status codes that mean "this server does not support that response_format".
_UNSUPPORTED_FORMAT_STATUS = frozenset({400, 404, 415, 422, 500, 501})


@dataclass
class Completion:
    """What a backend's transport returns for one request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str | None = None
    tokens_estimated: bool = False
    finish_reason: str | None = None  # the server's ("stop", "length", ...); None if unknown


class Reply(str):
    """The reply text, carrying the server's `finish_reason` ("length": cut off at the
    token limit; None when the backend cannot tell). A plain `str` everywhere else;
    `solvers.text.completeness.cut_off` reads the attribute."""

    finish_reason: str | None = None

    def __new__(cls, text: str, finish_reason: str | None = None) -> Reply:
        reply = super().__new__(cls, text)
        reply.finish_reason = finish_reason
        return reply


MAX_REASK_TOKENS = 8192  # a re-ask after a cut-off reply doubles max_tokens up to this


@dataclass
class Request:
    """One normalized request, as seen by `_complete`."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]
    rollout_id: str | None = None
    timeout: float | None = None
    cache_key: str | None = None
    probe: bool = False  # a capability probe: no retries
    prompt_estimate: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """A copy of `messages` as a list of dicts; a bare string becomes one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        messages = [messages]
    result = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(
                f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}} "
                f"(OpenAI chat format), got {message!r}"
            )
        result.append(dict(message))
    if not result:
        raise ValueError("messages is empty: pass at least one {'role': 'user', ...} message")
    return result


class Backend:
    """Base class of tracekit LLM backends: `llm(messages, **kwargs) -> str`.

    Subclasses implement `_complete` (and `_acomplete` for native async). Construction
    arguments shared by every backend:

    - `cache`: None (configured default), True, False, a directory, or a `Cache`.
    - `budget`: a `Budget` checked before every model call.
    - `prices`: model -> (USD per 1M input tokens, per 1M output tokens).
    - `max_concurrency`: requests in flight at once (per process for sync calls, per event
      loop for async calls).
    - `max_reasks`: re-asks allowed by `structured` after the first attempt.
    - `defaults`: sampling parameters sent with every call unless overridden
      (temperature 0 unless given, which makes replies cacheable).
    """

    structured_mode: StructuredMode | str = "prompt"
    free = False  # local models: every call costs 0

    def __init__(
        self,
        *,
        model: str,
        name: str | None = None,
        cache: Cache | bool | str | None = None,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        max_concurrency: int = 8,
        max_reasks: int = 2,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model = model
        self.name = name or f"{type(self).__name__}({model})"
        self.cache = resolve_cache(cache)
        self.accounting = Accounting(name=self.name, budget=budget, prices=prices)
        self.max_concurrency = max_concurrency
        self.max_reasks = max_reasks
        self.defaults: dict[str, Any] = {"temperature": 0.0, **(defaults or {})}
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._async_slots: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._mode_lock = threading.Lock()
        # held while the structured-output mode is probed: one probe per backend, the other
        # threads wait for its outcome instead of each sending (and losing) its own
        self._probe_lock = threading.Lock()
        self._async_probe: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    def __deepcopy__(self, memo: dict[int, Any]) -> Backend:
        """A backend is a shared service (a connection or a model server, its cache, its
        accounting, its locks): deep copies of what uses it (an optimizer, a model) share it,
        as deep copies of torch modules share a device."""
        return self

    # -- what subclasses provide ----------------------------------------------------------
    @property
    def cache_namespace(self) -> str:
        """What identifies this backend in cache keys (never credentials or ports)."""
        return self.name

    def _complete(self, request: Request) -> Completion:
        raise NotImplementedError

    def _is_cacheable(self, params: Mapping[str, Any], rollout_id: str | None) -> bool:
        """The sampling rule of `cache.is_cacheable`; subclasses may relax it."""
        return is_cacheable(params, rollout_id)

    async def _acomplete(self, request: Request) -> Completion:
        """Default async transport: the sync one in a worker thread."""
        return await asyncio.to_thread(self._complete, request)

    # -- public API ------------------------------------------------------------------------
    @property
    def budget(self) -> Budget | None:
        return self.accounting.budget

    @budget.setter
    def budget(self, value: Budget | None) -> None:
        self.accounting.budget = value

    @property
    def usage(self) -> Usage:
        """A snapshot of this backend's totals (see `accounting.scope()` for a block)."""
        return self.accounting.totals()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __call__(self, messages: Messages, **kwargs: Any) -> str:
        """Send chat `messages` and return the reply text (a `Reply`: a str with the
        server's `.finish_reason`; a reply cut off at the token limit is never cached).

        Extra keyword arguments are sampling parameters for the model (temperature,
        max_tokens, seed, response_format, ...) plus tracekit's own: `rollout_id` (part of
        the cache key), `cache=False` (skip the cache for this call), `timeout` (seconds).
        """
        request, use_cache = self._prepare(messages, kwargs)
        hit = self._lookup(request, use_cache)
        if hit is not None:
            return hit
        reservation = self._reserve(request)
        try:
            with self._slots:
                start = time.perf_counter()
                try:
                    completion = self._complete(request)
                except Exception as exc:
                    self._record_failure(request, start, exc, reservation)
                    raise
            return self._finish(request, use_cache, start, completion, reservation)
        finally:
            self.accounting.release(reservation)  # no-op unless interrupted

    async def acall(self, messages: Messages, **kwargs: Any) -> str:
        """Async `__call__`."""
        request, use_cache = self._prepare(messages, kwargs)
        hit = self._lookup(request, use_cache)
        if hit is not None:
            return hit
        reservation = self._reserve(request)
        try:
            async with self._async_slot():
                start = time.perf_counter()
                try:
                    completion = await self._acomplete(request)
                except Exception as exc:
                    self._record_failure(request, start, exc, reservation)
                    raise
            return self._finish(request, use_cache, start, completion, reservation)
        finally:
            self.accounting.release(reservation)  # no-op unless interrupted

    def structured(
        self,
        messages: Messages,
        schema: type[ModelT],
        *,
        max_reasks: int | None = None,
        described: bool = False,
        **kwargs: Any,
    ) -> ModelT:
        """Ask for a reply that validates as `schema` (a pydantic model) and return it.

        Uses the server's schema-constrained output where it has one, then pydantic
        validation, one JSON repair, and up to `max_reasks` re-asks naming the problem.
        Raises `StructuredOutputError` if no reply validates; nothing partial is returned.
        `described`: the messages already describe the reply's form, so the schema is not
        added as text where the server enforces it (a grammar; saves its prompt tokens).
        """
        attempts = StructuredAttempts(
            normalize_messages(messages), schema,
            max_reasks=self.max_reasks if max_reasks is None else max_reasks,
            backend_name=self.name, instruct=self.sends_schema_text(described),
        )
        while not attempts.exhausted:
            kwargs = self._room_after_cut(attempts, kwargs)
            reply = self._structured_call(attempts, kwargs)
            instance = attempts.take(reply)
            if instance is not None:
                return instance
        raise attempts.error()

    async def astructured(
        self,
        messages: Messages,
        schema: type[ModelT],
        *,
        max_reasks: int | None = None,
        described: bool = False,
        **kwargs: Any,
    ) -> ModelT:
        """Async `structured`."""
        attempts = StructuredAttempts(
            normalize_messages(messages), schema,
            max_reasks=self.max_reasks if max_reasks is None else max_reasks,
            backend_name=self.name, instruct=self.sends_schema_text(described),
        )
        while not attempts.exhausted:
            kwargs = self._room_after_cut(attempts, kwargs)
            reply = await self._astructured_call(attempts, kwargs)
            instance = attempts.take(reply)
            if instance is not None:
                return instance
        raise attempts.error()

    def sends_schema_text(self, described: bool = False) -> bool:
        """Whether `structured` adds the schema to the prompt as text: always, unless the
        caller described the reply's form (`described=True`) and this backend's mode
        enforces the schema (a grammar server)."""
        return not (described and self.structured_mode in ENFORCED_MODES)

    def _room_after_cut(self, attempts: StructuredAttempts[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """After a cut-off reply, the next attempt gets twice the max_tokens (where set)."""
        if not attempts.last_cut:
            return kwargs
        current = kwargs.get("max_tokens") or self.defaults.get("max_tokens")
        if not isinstance(current, int) or isinstance(current, bool):
            return kwargs
        return {**kwargs, "max_tokens": min(2 * current, max(current, MAX_REASK_TOKENS))}

    # -- structured: one attempt, with capability fallback ----------------------------------
    def _structured_modes(self) -> list[StructuredMode]:
        mode = self.structured_mode
        if mode == "auto":
            return list(STRUCTURED_MODES)
        return [mode]  # type: ignore[list-item]

    def _settle_mode(self, mode: StructuredMode) -> None:
        with self._mode_lock:
            if self.structured_mode == "auto":
                logger.info("%s: structured output uses %s", self.name, mode)
                self.structured_mode = mode

    def _format_trials(self, attempts: StructuredAttempts[Any]
                       ) -> list[tuple[StructuredMode, dict[str, Any], bool]]:
        """(mode, extra request arguments, probing?) for each structured-output mode to try:
        every mode but the last is a probe that may be refused by the server."""
        modes = self._structured_modes()
        trials: list[tuple[StructuredMode, dict[str, Any], bool]] = []
        for index, mode in enumerate(modes):
            fmt = response_format(mode, attempts.schema)
            trials.append((mode, {"response_format": fmt} if fmt is not None else {}, index < len(modes) - 1))
        return trials

    @staticmethod
    def _refused_probe(exc: LLMRequestError, probing: bool) -> bool:
        """A probe the server answered with 'unsupported format': try the next mode."""
        return probing and exc.status_code in _UNSUPPORTED_FORMAT_STATUS

    def _structured_call(self, attempts: StructuredAttempts[Any], kwargs: dict[str, Any]) -> str:
        if self.structured_mode == "auto":
            with self._probe_lock:  # one probe per backend (see __init__)
                if self.structured_mode == "auto":
                    return self._try_formats(attempts, kwargs)
        return self._try_formats(attempts, kwargs)

    def _try_formats(self, attempts: StructuredAttempts[Any], kwargs: dict[str, Any]) -> str:
        refused = False
        for mode, extra, probing in self._format_trials(attempts):
            try:
                reply = self(attempts.messages, **kwargs, **extra, _probe=probing)
            except LLMRequestError as exc:
                if self._refused_probe(exc, probing):
                    refused = True
                    continue
                raise
            if probing or refused:  # the last mode, reached after refusals, is settled too
                self._settle_mode(mode)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _astructured_call(
        self, attempts: StructuredAttempts[Any], kwargs: dict[str, Any]
    ) -> str:
        if self.structured_mode == "auto":
            loop = asyncio.get_running_loop()
            lock = self._async_probe.get(loop)
            if lock is None:
                lock = self._async_probe[loop] = asyncio.Lock()
            async with lock:  # one probe per backend and event loop
                if self.structured_mode == "auto":
                    return await self._atry_formats(attempts, kwargs)
        return await self._atry_formats(attempts, kwargs)

    async def _atry_formats(self, attempts: StructuredAttempts[Any], kwargs: dict[str, Any]) -> str:
        refused = False
        for mode, extra, probing in self._format_trials(attempts):
            try:
                reply = await self.acall(attempts.messages, **kwargs, **extra, _probe=probing)
            except LLMRequestError as exc:
                if self._refused_probe(exc, probing):
                    refused = True
                    continue
                raise
            if probing or refused:
                self._settle_mode(mode)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def probe_structured(self) -> str:
        """The structured-output mode this backend's server takes, found with one tiny
        request when it is not known yet ("auto"), then kept: how callers tell a grammar
        server (llama.cpp: "json_object_schema") from others without a class name."""
        if self.structured_mode == "auto":
            from pydantic import create_model

            probe = create_model("Probe", ok=(bool, ...))
            try:
                self.structured(normalize_messages("Reply with JSON: is 2 larger than 1?"), probe,
                                max_reasks=0, max_tokens=16, cache=False)
            except Exception:  # a reply that did not validate still settled the mode
                pass
        return str(self.structured_mode)

    # -- pipeline steps --------------------------------------------------------------------
    def _prepare(self, messages: Messages, kwargs: dict[str, Any]) -> tuple[Request, bool]:
        kwargs = dict(kwargs)
        rollout_id = kwargs.pop("rollout_id", None)
        use_cache = kwargs.pop("cache", True) is not False
        timeout = kwargs.pop("timeout", None)
        probe = bool(kwargs.pop("_probe", False))
        params = {**self.defaults, **kwargs}
        params = {k: v for k, v in params.items() if v is not None}
        normalized = normalize_messages(messages)
        request = Request(
            messages=normalized,
            params=params,
            rollout_id=None if rollout_id is None else str(rollout_id),
            timeout=timeout,
            probe=probe,
            prompt_estimate=sum(estimate_tokens(str(m.get("content") or "")) + 4
                                for m in normalized),
        )
        use_cache = use_cache and self.cache is not None and self._is_cacheable(params, request.rollout_id)
        if use_cache:
            request.cache_key = cache_key(
                self.cache_namespace, self.model, normalized, params, request.rollout_id
            )
        return request, use_cache

    def _lookup(self, request: Request, use_cache: bool) -> str | None:
        if not use_cache or self.cache is None or request.cache_key is None:
            return None
        start = time.perf_counter()
        hit = self.cache.get(request.cache_key)
        if hit is None:
            return None
        self.accounting.record(
            CallRecord(
                model=self.model,
                prompt_tokens=hit.prompt_tokens,
                completion_tokens=hit.completion_tokens,
                latency_s=time.perf_counter() - start,
                cache_hit=True,
                cost=0.0,
            )
        )
        logger.debug("%s: cache hit", self.name)
        return hit.text

    def _reserve(self, request: Request) -> Reservation:
        max_tokens = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
        estimate = self.accounting.estimate(self.model, request.prompt_estimate, max_tokens)
        if self.free:
            estimate.cost = 0.0
        return self.accounting.reserve(estimate)

    def _async_slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slot = self._async_slots.get(loop)
        if slot is None:
            slot = self._async_slots.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
        return slot

    def _record_failure(
        self, request: Request, start: float, exc: BaseException, reservation: Reservation
    ) -> None:
        self.accounting.record(
            CallRecord(
                model=self.model,
                prompt_tokens=0,
                completion_tokens=0,
                latency_s=time.perf_counter() - start,
                cache_hit=False,
                cost=0.0,
                error=describe(exc),
            ),
            reservation,
        )
        if not request.probe:
            logger.info("%s: call failed: %s", self.name, describe(exc))

    def _finish(
        self,
        request: Request,
        use_cache: bool,
        start: float,
        done: Completion,
        reservation: Reservation,
    ) -> str:
        latency = time.perf_counter() - start
        model = done.model or self.model
        if self.free:
            cost, priced = 0.0, True
        else:
            cost, priced = self.accounting.price(model, done.prompt_tokens, done.completion_tokens)
        self.accounting.record(
            CallRecord(
                model=model,
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                latency_s=latency,
                cache_hit=False,
                cost=cost,
                priced=priced,
                tokens_estimated=done.tokens_estimated,
            ),
            reservation,
        )
        cut = done.finish_reason in LENGTH_REASONS
        if use_cache and not cut and self.cache is not None and request.cache_key is not None:
            self.cache.put(
                request.cache_key,
                CachedReply(done.text, done.prompt_tokens, done.completion_tokens),
                namespace=self.cache_namespace,
                model=self.model,
            )
        logger.debug(
            "%s: %d+%d tokens in %.3fs", self.name, done.prompt_tokens,
            done.completion_tokens, latency,
        )
        return Reply(done.text, done.finish_reason)
