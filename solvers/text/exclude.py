"""A schema pattern for "any JSON string except these": keeps grammar-constrained replies new.

Tiny local models often copy the current value (or a value already tried) back into their
reply, which wastes the call. A grammar-based server (llama.cpp) turns a schema `pattern`
into a generation grammar, so a pattern that matches every string *except* a given set
makes such a copy impossible to generate: the model must diverge somewhere.

Strings are compared in their `normal_form` (ASCII letters lowered, trailing whitespace
dropped), so a copy that differs only in letter case or trailing spaces is left out too; the
reply checks use the same function, so whatever they refuse as a placeholder the grammar
already cannot produce.

The regular expression is built from a trie of the excluded normal forms, written in the
subset llama.cpp's converter supports (no lookaheads). At each trie node a reply may stop
(when the node does not end an excluded string), continue with a character that leaves the
trie (then anything follows), or follow one of the node's children. After the end of an
excluded string, only whitespace is a "closed" way out: it must be followed by something
else before the reply may stop. A *prefix* (an instructions' placeholder such as
`<new text>`) is excluded with everything that follows it: its end has no way out at all.
Its size is linear in the excluded strings' total length.
Grammar servers match patterns against the raw JSON text between the quotes, so characters
are JSON string tokens: a plain character other than a quote, a backslash or a control
character, or a two-character escape (`\\n`, `\\"`, `\\/`, ...). `\\uXXXX` escapes are not
generated, so excluded strings that need them cannot be produced anyway and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def _hex(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


ESCAPE_LETTERS = '"\\/bfnrt'
_PLAIN_OUT = '"\\\\\\x00-\\x1f'  # left out of plain characters: quote, backslash, controls
_ESCAPE_CLASS = "".join(_hex(c) for c in ESCAPE_LETTERS)
ANY_TOKEN = f"([^{_PLAIN_OUT}]|\\\\[{_ESCAPE_CLASS}])"
# whitespace a reply can hold: the str.isspace characters that are plain JSON, and escapes
_SPACE_CHARS = (" ", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028", "\u2029",
                "\u202f", "\u205f", "\u3000")
_SPACE_CLASS = "".join(_hex(c) for c in _SPACE_CHARS)
_SPACE_ESCAPES = "nrtf"
_SPACE_TOKEN = f"([{_SPACE_CLASS}]|\\\\[{_SPACE_ESCAPES}])"
MAX_TOKENS_PER_VALUE = 300  # the trie's depth becomes nested groups; converters recurse on them
# llama.cpp refuses a grammar with too many generated rules (each `*` and `?` makes some;
# "exceeds sane defaults"), and its Python server then dies. Measured with llama-cpp-python
# 0.3.36 on four shapes (one deep value; 300 tried values of 50, 3 and 17 characters):
# 450 tokens of excluded text work for all, 700 crash the server on the 50-character ones.
# 370 leaves 300 for values after the reply placeholders (64 tokens), which go first.
MAX_TOTAL_TOKENS = 370
_END = ""  # trie key marking the end of an excluded string (no token is empty)
_PREFIX = "\0"  # trie key marking the end of an excluded prefix (no JSON token is a NUL)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normal_form(text: str) -> str:
    """What exclusion compares: ASCII letters lowered and trailing whitespace dropped."""
    return text.translate(_ASCII_LOWER).rstrip()


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


def _is_space(token: str) -> bool:
    return token.isspace() if len(token) == 1 else token[1] in _SPACE_ESCAPES


def _spellings(token: str) -> tuple[set[str], set[str]]:
    """The plain characters and escape letters that read as `token` in the normal form:
    both cases of an ASCII letter, and `/` written plain or as `\\/`."""
    if len(token) == 2:
        return ({token[1]} if token[1] == "/" else set()), {token[1]}
    plain = {token, token.upper()} if token.isascii() and token.isalpha() else {token}
    return plain, ({"/"} if token == "/" else set())


def _token_class(plain: set[str], escapes: set[str]) -> str:
    """A pattern piece for one token spelled as any of `plain` or `\\` + any of `escapes`;
    characters go in classes, which llama.cpp's converter copies verbatim."""
    parts = []
    if plain:
        parts.append("[" + "".join(_hex(c) for c in sorted(plain)) + "]")
    if escapes:
        parts.append("\\\\[" + "".join(_hex(c) for c in sorted(escapes)) + "]")
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def _literal(token: str) -> str:
    if len(token) == 1 and token.isascii() and token.isalnum() and not token.isalpha():
        return token  # digits stand for themselves
    return _token_class(*_spellings(token))


def _leave(children: list[str], spaces: bool | None, forbid: str = "") -> str:
    """A token that is none of `children`: only whitespace (`spaces=True`), none
    (`spaces=False`) or any (`None`); "" when no such token exists."""
    plain: set[str] = set()
    taken: set[str] = set()
    for child in children:
        p, e = _spellings(child)
        plain |= p
        taken |= e
    letters = [c for c in ESCAPE_LETTERS if c not in taken]
    if spaces is True:  # plain whitespace not taken: a class of the whitespace class minus them
        chars = [c for c in _SPACE_CHARS if c not in plain]
        letters = [c for c in letters if c in _SPACE_ESCAPES]
        other = "[" + "".join(_hex(c) for c in chars) + "]" if chars else ""
    else:
        out = "".join(_hex(c) for c in sorted(plain | set(forbid)))
        other = f"[^{_PLAIN_OUT}{out}{_SPACE_CLASS if spaces is False else ''}]"
        if spaces is False:
            letters = [c for c in letters if c not in _SPACE_ESCAPES]
    escaped = "\\\\[" + "".join(_hex(c) for c in letters) + "]" if letters else ""
    pieces = [p for p in (other, escaped) if p]
    if not pieces:
        return ""
    return pieces[0] if len(pieces) == 1 else "(" + "|".join(pieces) + ")"


def exclusion_pattern(excluded: Iterable[str], prefixes: Iterable[str] = (), forbid: str = "") -> str:
    """A `^...$` pattern matching the JSON text of every string except those whose
    `normal_form` is that of a string in `excluded` or starts with that of one in
    `prefixes`, those that start with whitespace (so never a blank one), and those holding
    a character of `forbid` (plain ASCII punctuation, such as the braces that close a
    reply: tiny models write the reply's structure into the string). Strings
    longer than `MAX_TOKENS_PER_VALUE` tokens, or past `MAX_TOTAL_TOKENS` in all (prefixes
    first, then earlier strings first), are not excluded (callers still check); returns ""
    when nothing could be excluded besides the empty string."""
    trie: dict[str, dict] = {}
    total = 0
    kept = 0
    entries = [(normal_form(t), _PREFIX) for t in prefixes if isinstance(t, str)]
    entries += [(normal_form(t), _END) for t in excluded if isinstance(t, str)]
    for text, mark in dict.fromkeys(entries):
        tokens = json_tokens(text)
        if not tokens or len(tokens) > MAX_TOKENS_PER_VALUE or total + len(tokens) > MAX_TOTAL_TOKENS:
            continue
        total += len(tokens)
        kept += 1
        node = trie
        for token in tokens:
            if _PREFIX in node:
                break  # already excluded with all that follows
            node = node.setdefault(token, {})
        else:
            if mark == _PREFIX:
                node.clear()  # longer excluded strings under it are covered by the prefix
            node[mark] = {}
    if not kept:
        return ""
    trie[_END] = {}  # the empty string
    any_token = ANY_TOKEN if not forbid else _leave([], spaces=None, forbid=forbid)
    tail = f"{any_token}{{0,}}"  # `{0,}`: the converter makes it one shared rule
    # after an excluded string, whitespace that is not a trie child must lead somewhere else
    after_space = f"{_SPACE_TOKEN}{{0,}}{_leave([], spaces=False, forbid=forbid)}{tail}"

    def build(node: dict[str, dict], closed: bool, first: bool = False) -> str:
        """`closed`: the text so far is an excluded string plus whitespace (it may not stop)."""
        children = [t for t in node if t not in (_END, _PREFIX) and t not in forbid]
        if first:  # a leading whitespace token cannot start a reply, so it needs no branch
            children = [t for t in children if not _is_space(t)]
        closed = closed or _END in node
        if closed:
            branches = [_leave(children, spaces=False, forbid=forbid) + tail]
            if not first and (out := _leave(children, spaces=True)):
                branches.append(out + after_space)
        else:
            branches = [_leave(children, spaces=None, forbid=forbid) + tail]
        # a prefix's last token is left out of the ways out above and leads nowhere
        branches += [_literal(t) + build(node[t], closed and _is_space(t)) for t in children
                     if _PREFIX not in node[t]]
        group = "(" + "|".join(branches) + ")"
        return group if closed else group + "?"

    return "^" + build(trie, closed=True, first=True) + "$"
