"""Errors raised by the LLM layer.

Every error subclasses `LLMError`, and every message says what went wrong and how to fix it,
so that callers can catch one class and users can act on the text alone.
"""

from __future__ import annotations

from tracekit.errors import TracekitError, message_of, type_name

INSTALL_HINT = (
    "Install the embedded model with `make setup` (or `bash scripts/setup.sh`), or point "
    "tracekit at another OpenAI-compatible endpoint: set TRACEKIT_LLM_BASE_URL (e.g. "
    "http://127.0.0.1:11434/v1 for Ollama) and TRACEKIT_LLM_MODEL, or set OPENAI_API_KEY and "
    "TRACEKIT_LLM_MODEL=gpt-4o-mini for OpenAI."
)


class LLMError(TracekitError):
    """Base class of every error raised by `tracekit.llm` (a `tk.TracekitError`: a solver
    failing with one is an expected failure, reported in the step report)."""


class LLMConfigError(LLMError):
    """A backend is configured wrongly (missing API key, unknown option, ...)."""


class EmbeddedModelError(LLMConfigError):
    """The embedded llama.cpp server or its model is missing or failed to start."""

    def __init__(self, problem: str, *, log_tail: str = "") -> None:
        message = f"{problem} {INSTALL_HINT}"
        if log_tail:
            message += f"\nLast lines of the server log:\n{log_tail}"
        super().__init__(message)
        self.problem = problem
        self.log_tail = log_tail


class LLMRequestError(LLMError):
    """A request failed after the backend's retries (HTTP error, bad reply, ...)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMTimeoutError(LLMRequestError):
    """A request took longer than the backend's `timeout` (after retries)."""


class LLMConnectionError(LLMRequestError):
    """The server could not be reached (after retries)."""


class BudgetExceeded(LLMError):
    """The next call would pass a `Budget`; it was not made."""

    def __init__(self, limit: str, used: float, requested: float, maximum: float, where: str) -> None:
        super().__init__(
            f"LLM budget exceeded: this call would bring {limit} to {used + requested:g} "
            f"(used {used:g} + this call {requested:g}), over the limit of {maximum:g} set on "
            f"{where}. The call was not made. Raise the limit, reset the accounting, or use a "
            f"cheaper model."
        )
        self.limit = limit
        self.used = used
        self.requested = requested
        self.maximum = maximum


class StructuredOutputError(LLMError):
    """No reply could be turned into a valid instance of the requested schema."""

    def __init__(self, schema: type, attempts: list[tuple[str, str]], backend: str) -> None:
        last_reply, last_problem = attempts[-1] if attempts else ("", "no reply")
        shown = last_reply if len(last_reply) <= 300 else last_reply[:300] + "..."
        super().__init__(
            f"Could not get a valid {schema.__name__} from {backend} after {len(attempts)} "
            f"attempt(s), each followed by a JSON repair. Last problem: {last_problem}\n"
            f"Last reply: {shown!r}\n"
            f"Fix: allow more re-asks (max_reasks=...), simplify the schema, or use a stronger "
            f"model / a server with schema-constrained output."
        )
        self.schema = schema
        self.attempts = attempts
        self.last_reply = last_reply


def describe(exc: BaseException) -> str:
    """One line naming an exception, for messages and logs (never raises: see
    `tracekit.errors.describe`)."""
    text = message_of(exc, 300).strip().splitlines()
    return f"{type_name(exc)}: {text[0] if text else ''}"

