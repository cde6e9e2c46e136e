"""Whether an LLM reply is complete: the one place that decides it.

A reply is cut off when the server says it stopped at the token limit (`finish_reason`
"length"), or — for any backend, including plain functions that report no finish reason —
when its JSON never closes: a JSON repair would have to close an unterminated string, array
or object, which turns the unfinished value into a plausible but truncated one (a prompt cut
mid-sentence, a function cut mid-line). A cut-off reply is a bad reply: it is re-asked or
refused, never repaired into a value.
"""

from __future__ import annotations

import json

# finish reasons that mean "stopped at the token limit" (OpenAI and compatible servers;
# "max_tokens" is what some proxies of other providers report)
LENGTH_REASONS = frozenset({"length", "max_tokens"})
SCAN_CHARS = 400_000  # longer text is scanned only this far (bounded work)


def unclosed(text: str) -> str:
    """What the first JSON object in `text` leaves open at the end ("a string", "an
    array", "an object"), or "" when it closes (or there is none). Brackets inside strings
    are skipped; escapes are honoured."""
    start = text.find("{")
    if start == -1:
        return ""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[start:SCAN_CHARS]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                return ""  # the first object closed: what follows is not part of it
    if in_string:
        return "a string"
    if stack:
        return "an array" if stack[-1] == "[" else "an object"
    return ""


def cut_off(text: object, finish_reason: str | None = None) -> str:
    """Why `text` is a cut-off reply ("" when it is complete).

    `finish_reason` is the server's, when the backend reports one (tracekit backends attach
    it to the reply string as `.finish_reason`; it is read from there when not given).
    """
    if finish_reason is None:
        finish_reason = getattr(text, "finish_reason", None)
    if isinstance(finish_reason, str) and finish_reason in LENGTH_REASONS:
        return (f"the reply was cut off at the token limit (finish_reason {finish_reason!r}); "
                f"a cut value is never used")
    if not isinstance(text, str):
        return ""
    try:
        json.loads(text, strict=False)
        return ""  # valid JSON as a whole
    except (ValueError, RecursionError):
        pass
    left_open = unclosed(text)
    if left_open:
        return f"the reply's JSON ends inside {left_open} (the reply was cut off); a cut value is never used"
    return ""
