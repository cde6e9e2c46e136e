"""Error types of the tracing core; each message names the problem and the fix."""

from __future__ import annotations


class TracekitError(Exception):
    """Base class for tracekit errors."""


class InvalidValueError(TracekitError, ValueError):
    """A value given to a parameter was refused; the parameter keeps its old value."""


class StateDictError(TracekitError, ValueError):
    """A saved state does not match the model it is loaded into."""


class DamagedFileError(StateDictError):
    """A file tracekit reads (state, checkpoint, payload, log, cache entry) is missing,
    truncated, malformed, too large or too deeply nested; nothing was changed."""


class MissingSolverError(TracekitError, RuntimeError):
    """No solver is registered for a kind of parameter that needs one."""


class FeedbackError(TracekitError, TypeError):
    """Feedback of a type tracekit cannot use."""


MESSAGE_CHARS = 2000  # an exception's message is cut to this many characters when described
CAUSE_DEPTH = 3  # causes/contexts named after the exception itself


def type_name(exc: BaseException) -> str:
    try:
        name = type(exc).__name__
        return name if isinstance(name, str) else "Exception"
    except Exception:
        return "Exception"


def message_of(exc: BaseException, limit: int = MESSAGE_CHARS) -> str:
    """The message of `exc` (its `str`), never raising: when `__str__` raises or returns
    something odd, its `repr`, then its args, then a placeholder; cut to `limit` characters."""
    text: str | None = None
    for attempt in (lambda: str(exc), lambda: repr(exc), lambda: ", ".join(map(repr, exc.args))):
        try:
            value = attempt()
        except Exception:
            continue
        if isinstance(value, str):
            text = value
            break
    if text is None:
        text = f"<{type_name(exc)} whose message cannot be shown>"
    if len(text) > limit:
        text = f"{text[:limit]}... [{len(text) - limit} more characters]"
    return text


def describe(exc: BaseException, *, limit: int = MESSAGE_CHARS, causes: bool = False) -> str:
    """"Type: message" for any exception, never raising (see `message_of`): for messages,
    reports and logs. With `causes`, up to `CAUSE_DEPTH` causes/contexts are named too
    (a cycle in `__cause__`/`__context__` is followed once)."""
    message = message_of(exc, limit)
    text = f"{type_name(exc)}: {message}" if message else type_name(exc)
    if not causes:
        return text
    seen = {id(exc)}
    current: BaseException | None = exc
    for _ in range(CAUSE_DEPTH):
        try:
            nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        except Exception:
            break
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            break
        seen.add(id(nxt))
        text += f" (from {type_name(nxt)}: {message_of(nxt, limit // 4)})"
        current = nxt
    return text


class NotPortableError(TracekitError, TypeError):
    """A workflow, metric or `call` cannot be shipped to worker processes (it cannot be
    pickled); the message names the object and how to make it shippable."""


class InvalidOptionError(TracekitError, ValueError):
    """An argument of `tk.Optimizer` (an option, a parameter list, a param group) is refused
    when the optimizer is built; the message names the argument and what is accepted."""


class SolveError(TracekitError, RuntimeError):
    """An optimization step inside a workflow (`tk.argmin`) did not produce a solution.

    `status` is the solver's status, `max_violation` the constraint violation at the
    returned point, `solver_message` the solver's own words and `result` its full result
    (an `OptimizeResult`, or None when the solver raised).
    """

    def __init__(self, message: str, status: str | None = None, max_violation: float | None = None,
                 solver_message: str = "", result: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.max_violation = max_violation
        self.solver_message = solver_message
        self.result = result


class InfeasibleError(SolveError):
    """The constraints of an argmin admit no point (the solver proved it or stalled infeasible)."""


class UnboundedError(SolveError):
    """The objective of an argmin decreases without bound on the feasible set."""


class NotConvergedError(SolveError):
    """The solver of an argmin stopped before meeting its tolerances (or hit NaN/inf)."""
