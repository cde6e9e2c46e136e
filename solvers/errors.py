"""Describing an exception without ever raising: the one definition, used by the solvers
and re-exported by `tracekit.errors` (it imports nothing, so the tracing core may use it)."""

from __future__ import annotations

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
    current: BaseException = exc
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
