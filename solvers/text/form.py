"""The form a text value keeps: a list of single words stays a list of short items.

A comma-separated list of single words ("hello, thanks", "urgent, asap, down") is read by
code that splits it (keywords, cues, stop words). A proposal for such a value that is not
itself a list of short items (a sentence, a pasted feedback line, JSON debris) cannot be
what that code reads, whatever it says, so it is refused with the reason. Values of any
other form (prompts, instructions, lists of phrases) are left to the variable's own check.
"""

from __future__ import annotations

import re

MAX_ITEM_WORDS = 3  # an item of a proposed list: a word or a short phrase
MAX_ITEM_CHARS = 32
_ITEM = re.compile(r"[^\W_][\w'&+#./-]*(?: [\w'&+#./-]+)*")  # words and light punctuation, no sentence marks


def _items(text: str, sep: str) -> list[str]:
    return [i.strip() for i in text.split(sep) if i.strip()]


def short_item(text: str) -> bool:
    """A word or a short phrase: what a proposed list may hold."""
    item = text.strip()
    return len(item) <= MAX_ITEM_CHARS and len(item.split()) <= MAX_ITEM_WORDS and bool(_ITEM.fullmatch(item))


def word_list(text: str) -> str | None:
    """The separator of a list of at least two single words (comma, semicolon or newline),
    else None."""
    for sep in (",", ";", "\n"):
        items = _items(text, sep)
        if len(items) >= 2 and all(" " not in i and _ITEM.fullmatch(i) for i in items):
            return sep
    return None


def breaks_form(current: object, proposal: object) -> str:
    """Why `proposal` breaks the form of `current` ("" when it keeps it): a list of single
    words must be answered by a list of short items (1 to MAX_ITEM_WORDS words each)."""
    if not isinstance(current, str) or not isinstance(proposal, str):
        return ""
    sep = word_list(current)
    if sep is None:
        return ""
    items = _items(proposal, sep)
    bad = next((i for i in items if not short_item(i)), None)
    if not items or bad is not None:
        shown = (bad or proposal)[:60]
        what = {",": "comma", ";": "semicolon", "\n": "line"}[sep]
        return (f"the current value is a {what}-separated list of words, but {shown!r} is not a word or "
                f"a short phrase")
    return ""
