"""A schema pattern for "any JSON string except these": keeps grammar-constrained replies new.

Tiny local models often copy the current value (or a value already tried) back into their
reply, which wastes the call. A grammar-based server (llama.cpp) turns a schema `pattern`
into a generation grammar, so a pattern that matches every string *except* a given set
makes such a copy impossible to generate: the model must diverge somewhere.

The regular expression is built from a trie of the excluded strings, written in the
subset llama.cpp's converter supports (no lookaheads). At each trie node a reply may stop
(when the node does not end an excluded string), continue with a character that leaves the
trie (then anything follows), or follow one of the node's children. Its size is linear in
the excluded strings' total length. Grammar servers match patterns against the raw JSON
text between the quotes, so characters are JSON string tokens: a plain character other
than a quote, a backslash or a control character, or a two-character escape (`\\n`, `\\"`,
...). `\\uXXXX` escapes are not generated, so excluded strings that need them cannot be
produced anyway and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

ESCAPE_LETTERS = '"\\/bfnrt'
_PLAIN_OUT = '"\\\\\\x00-\\x1f'  # left out of plain characters: quote, backslash, controls
_ESCAPE_CLASS = "".join(f"\\x{ord(c):02x}" for c in ESCAPE_LETTERS)
ANY_TOKEN = f"([^{_PLAIN_OUT}]|\\\\[{_ESCAPE_CLASS}])"
# a reply may not start with whitespace, so that it is never blank (str.isspace characters)
_SPACE_CLASS = "\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_SPACE_ESCAPES = "nrtf"
MAX_TOKENS_PER_VALUE = 300  # the trie's depth becomes nested groups; converters recurse on them
# llama.cpp refuses a grammar with too many generated rules (each `*` and `?` makes some;
# "exceeds sane defaults"), and its Python server then dies. Measured with llama-cpp-python
# 0.3.36: 300 tokens of excluded text (a deep value or many short ones) work; ~1,000 fail.
MAX_TOTAL_TOKENS = 300
_END = ""  # trie key marking the end of an excluded string (no token is empty)


def json_tokens(text: str) -> list[str] | None:
    """`text` as JSON string tokens (a plain character or a 2-character escape); None when
    its JSON form needs a `\\uXXXX` escape (such strings cannot be generated here)."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    tokens: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] == "u":
                return None
            tokens.append(body[i:i + 2])
            i += 2
        else:
            tokens.append(body[i])
            i += 1
    return tokens


def _hex(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _literal(token: str) -> str:
    """One token as a pattern piece; anything not alphanumeric goes in a character class,
    which llama.cpp's converter copies verbatim (its literal escaping is narrower)."""
    if len(token) == 2:
        return f"\\\\[{_hex(token[1])}]"
    return token if token.isascii() and token.isalnum() else f"[{_hex(token)}]"


def _leave(children: list[str], first: bool = False) -> str:
    """A token that is none of `children` (and, as the `first`, not whitespace)."""
    plain = "".join(_hex(t) for t in children if len(t) == 1)
    taken = {t[1] for t in children if len(t) == 2}
    other = f"[^{_PLAIN_OUT}{plain}{_SPACE_CLASS if first else ''}]"
    letters = "".join(_hex(c) for c in ESCAPE_LETTERS
                      if c not in taken and not (first and c in _SPACE_ESCAPES))
    return f"({other}|\\\\[{letters}])" if letters else other


def exclusion_pattern(excluded: Iterable[str]) -> str:
    """A `^...$` pattern matching the JSON text of every string except those in `excluded`
    and those that start with whitespace (so never a blank one). Strings longer than `MAX_TOKENS_PER_VALUE`
    tokens, or past `MAX_TOTAL_TOKENS` in all, are not excluded (callers still check);
    returns "" when nothing could be excluded besides the empty string."""
    trie: dict[str, dict] = {}
    total = 0
    kept = 0
    for text in dict.fromkeys(excluded):  # ordered, no repeats: earlier values win the budget
        tokens = json_tokens(text) if isinstance(text, str) else None
        if not tokens or len(tokens) > MAX_TOKENS_PER_VALUE or total + len(tokens) > MAX_TOTAL_TOKENS:
            continue
        total += len(tokens)
        kept += 1
        node = trie
        for token in tokens:
            node = node.setdefault(token, {})
        node[_END] = {}
    if not kept:
        return ""
    trie[_END] = {}  # the empty string
    tail = f"{ANY_TOKEN}{{0,}}"  # `{0,}`: the converter makes it one shared rule

    def build(node: dict[str, dict], first: bool = False) -> str:
        children = [t for t in node if t != _END]
        if first:  # a leading whitespace token cannot start a reply, so it needs no branch
            children = [t for t in children if not (t.isspace() or (len(t) == 2 and t[1] in _SPACE_ESCAPES))]
        branches = [_leave(children, first) + tail] + [_literal(t) + build(node[t]) for t in children]
        group = "(" + "|".join(branches) + ")"
        return group if _END in node else group + "?"

    return "^" + build(trie, first=True) + "$"
