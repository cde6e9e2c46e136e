"""The reply: its pydantic model, a lenient parser, and the reading of each proposed value.

The model (built from the variables being updated) gives the backend a JSON schema to
constrain generation: numbers must be numbers, categorical values one of the choices.
Replies that do not validate as a whole are still read field by field, so that one bad
value does not throw away good ones. Each value is then normalised (quotes around a
choice, code fences, light code repairs) and screened for reply artefacts (a placeholder
echoed from the instructions, a runaway text); whether the value is *acceptable* is not
decided here but by the variable's `check`, which the caller supplies (tracekit passes its
one definition per kind, `tracekit.kinds`). A value that fails is dropped with a reason —
never half-applied.
"""

from __future__ import annotations

import ast
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..errors import message_of
from .completeness import cut_off
from .exclude import exclusion_pattern, normal_form
from .problem import Variable

MAX_REPLY_CHARS = 200_000  # longer replies are cut before parsing (bounded work)
REASONING_CHARS = 200
SMALL_INT_RANGE = 64
CODE_PATTERN_LINES = 3  # the last one a return statement  # integer ranges up to this size can be enums
REPAIR_CHARS = 20_000  # damaged JSON longer than this is not repaired (bounded work)
REPAIR_DEPTH = 32
SUGGESTION_KEYS = ("suggestion", "suggestions", "Suggestion", "new_values", "variables", "answer")
PLACEHOLDERS = ("<new text>", "new text", "[new text]", "<one short sentence>", "...", "<text>", "<value>")
# bracketed placeholders are refused with anything after them too ("<new text> free, prize"):
# tiny models copy the placeholder and then write on
PLACEHOLDER_PREFIXES = tuple(p for p in PLACEHOLDERS if p[0] in "<[")
_PLACEHOLDER_FORMS = frozenset(normal_form(p) for p in PLACEHOLDERS)  # as the grammar compares
_PREFIX_FORMS = tuple(normal_form(p) for p in PLACEHOLDER_PREFIXES)


class ReplyError(ValueError):
    """A value or reply that cannot be used; the message says why (it goes in re-asks)."""


# --- the model ---------------------------------------------------------------------------
def _field_type(v: Variable, exclude: list[Any] | None = None, constrain_code: bool = False,
                constrain_text: bool = False) -> tuple[Any, dict[str, Any]]:
    """The annotation and Field options of one variable's value.

    With `exclude`, a categorical value (or an integer with a small range) is an enum
    without those values (when some remain), so a schema-constrained reply proposes
    something new; with `constrain_text`, a text value gets a pattern that leaves the
    instructions' placeholders out, and those strings too (see `exclude.py`).
    """
    def keep(options: tuple[Any, ...]) -> tuple[Any, ...]:
        if exclude is None:
            return options
        left = tuple(o for o in options if not any(type(o) is type(x) and o == x for x in exclude))
        return left or options

    if v.kind == "numeric":
        if v.value_type in ("list", "Tensor", "ndarray", "tuple"):
            return list[Any], {}
        if (exclude is not None and v.value_type == "int" and v.bounds is not None
                and v.bounds[1] - v.bounds[0] <= SMALL_INT_RANGE):
            values = keep(tuple(range(math.ceil(v.bounds[0]), math.floor(v.bounds[1]) + 1)))
            if values:
                return Literal[values], {}
        bounds = {"ge": v.bounds[0], "le": v.bounds[1]} if v.bounds else {}
        return (int if v.value_type == "int" else float), bounds
    if v.kind == "categorical":
        choices = tuple(c if isinstance(c, (str, int, float, bool)) else str(c) for c in v.choices or [])
        return Literal[keep(choices)], {}
    if v.value_type == "dict":
        return dict[str, Any], {}
    if v.value_type in ("list", "tuple"):
        return list[Any], {}
    if v.kind == "code" and constrain_code:
        pattern = code_pattern(v)
        if pattern:  # shown to the server's grammar only; acceptance is the variable's check
            return str, {"min_length": 1, "json_schema_extra": {"pattern": pattern}}
    if v.kind == "text" and constrain_text:
        # the budget goes first to the placeholders (so that the grammar refuses all that
        # the reply screening refuses; also beside other variables, where nothing else is
        # left out), then the current value, then the newest tried values
        texts = [x for x in exclude or [] if isinstance(x, str)]
        ordered = [*PLACEHOLDERS, *([v.value] if v.value in texts else []), *texts[::-1]]
        pattern = exclusion_pattern(ordered, prefixes=PLACEHOLDER_PREFIXES, forbid=debris_chars(v))
        if pattern:  # for the server's grammar only; the check and the optimizer still decide
            return str, {"min_length": 1, "json_schema_extra": {"pattern": pattern}}
    return str, {"min_length": 1}


def code_pattern(v: Variable) -> str:
    """A regular expression for the schema (used with `constrain_code`): a constrained reply
    starts with the original `def` line and continues with at most a few indented lines
    that do not end inside an open bracket or after a colon, the last a `return`. Grammar-based servers match patterns
    against the raw JSON text, so a double quote is allowed only escaped, and braces (which
    tiny models use to close the JSON early) are left out."""
    line = v.signature
    if not line and isinstance(v.value, str):
        try:
            line = code_facts(v.value)[2]
        except (SyntaxError, StopIteration, ValueError):
            return ""
    if not line or any(ch in line for ch in '"\\{}\n'):
        return ""
    body = '([^\\n"\\\\{}]|\\\\")'
    last = '[^\\n"\\\\{}(\\[,: ]'
    head = re.escape(line).replace(chr(92) + " ", " ")
    line_re = f"{body}{{0,99}}{last}"
    return f"^{head}(\\n    {line_re}){{0,{CODE_PATTERN_LINES - 1}}}\\n    return {line_re}$"


def _describe(v: Variable) -> str:
    return (v.description or f"new value of {v.name}")[:200]


def reply_model(variables: list[Variable], exclude_current: bool = False,
                constrain_code: bool = False, exclude: dict[str, list[Any]] | None = None,
                constrain_text: bool = False) -> type[BaseModel]:
    """A pydantic model of the reply `{"suggestion": {name: value}, "reasoning": str}`.

    One required field per variable (aliased to its name, which need not be an
    identifier); unknown names are allowed and reported, not applied. `exclude_current`
    leaves the current value out of categorical (and small integer) enums, and `exclude`
    (name -> values) leaves those out too, as long as some value remains;
    `constrain_code` adds `code_pattern` to code fields and `constrain_text` an exclusion
    pattern to text fields (both for small local models behind grammar servers).
    """
    fields: dict[str, Any] = {}
    for i, v in enumerate(variables):
        left_out = list((exclude or {}).get(v.name, []))
        if exclude_current:
            left_out.append(v.value)
        typ, options = _field_type(v, left_out if (exclude_current or left_out) else None,
                                   constrain_code, constrain_text)
        fields[f"v{i}"] = (typ, Field(..., alias=v.name, description=_describe(v), **options))
    suggestion = create_model(
        "Suggestion",
        # extra names are read (and reported), but the schema asks for exactly these names
        # strict: the schema shapes generation but converts nothing (True is not 1.0, 42 not
        # "42"); a value it refuses is read leniently and judged by the variable's check
        __config__=ConfigDict(extra="allow", populate_by_name=False, strict=True,
                              json_schema_extra={"additionalProperties": False}),
        **fields
    )
    return create_model(
        "OptimizerReply",
        suggestion=(suggestion, Field(..., description="new value for each variable")),
        reasoning=(str, Field("", description="one short sentence",
                              json_schema_extra={"maxLength": REASONING_CHARS})),
    )


def model_values(instance: BaseModel, variables: list[Variable]) -> tuple[dict[str, Any], list[str], str]:
    """(name -> value, unknown names, reasoning) from a validated reply instance."""
    suggestion = instance.suggestion  # type: ignore[attr-defined]
    values = {v.name: getattr(suggestion, f"v{i}") for i, v in enumerate(variables)
              if getattr(suggestion, f"v{i}", None) is not None}
    unknown = sorted((suggestion.model_extra or {}).keys())
    return values, unknown, str(getattr(instance, "reasoning", "") or "")


# --- lenient parsing ---------------------------------------------------------------------
@dataclass
class Parsed:
    """What could be read from a reply: raw values by variable name, and why not others."""

    values: dict[str, Any] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    reasoning: str = ""
    problem: str = ""
    cut: bool = False  # the reply was cut off (see completeness.py): nothing in it is used


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON object in `text` (code fences, prose around it and light damage
    tolerated); None when there is none. Work is bounded for any input."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_REPLY_CHARS].strip()
    if not text:
        return None
    candidates = [text] + [m.group(1) for m in _FENCE.finditer(text)][:3]
    for chunk in candidates:
        try:
            obj = json.loads(chunk, strict=False)  # raw newlines inside strings are common
            if isinstance(obj, dict):
                return obj
        except (ValueError, RecursionError):
            pass
    decoder = json.JSONDecoder(strict=False)
    start = text.find("{")
    tries = 0
    while start != -1 and tries < 20:
        try:
            obj, _ = decoder.raw_decode(text, start)
            if isinstance(obj, dict):
                return obj
        except (ValueError, RecursionError):
            pass
        tries += 1
        start = text.find("{", start + 1)
    try:
        from json_repair import repair_json
    except ImportError:  # optional: without it, damaged JSON is simply not read
        return None
    chunk = text[text.find("{"):][:REPAIR_CHARS] if "{" in text else ""
    if not chunk or _depth(chunk) > REPAIR_DEPTH:
        return None  # nothing to repair, or shaped to make the repairer slow
    try:
        obj = repair_json(chunk, return_objects=True)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


def _depth(text: str) -> int:
    """The deepest bracket nesting in `text` (strings not excluded: an upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth = max(depth - 1, 0)
    return deepest


def storable(value: Any) -> bool:
    """True when every string in `value` (a decoded JSON value) encodes as UTF-8: JSON
    escapes can decode to unpaired surrogates ("\\ud800"), which no file can hold."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False
    return True


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_reply(text: Any, variables: list[Variable], finish_reason: str | None = None) -> Parsed:
    """Read a reply leniently: find the JSON object, its suggestion, and match names.

    A cut-off reply (`completeness.cut_off`: the server's `finish_reason`, read from the
    argument or the reply's `.finish_reason`, or JSON that never closes) yields no values
    and `cut=True`: a repair would turn the unfinished value into a truncated one.
    """
    out = Parsed()
    why = cut_off(text, finish_reason)
    if why:
        out.problem, out.cut = why, True
        return out
    obj = extract_json(text) if isinstance(text, str) else (text if isinstance(text, dict) else None)
    if obj is None:
        out.problem = "the reply holds no JSON object"
        return out
    reasoning = obj.get("reasoning", "")
    out.reasoning = reasoning[:REASONING_CHARS] if isinstance(reasoning, str) else ""
    suggestion: Any = None
    for key in SUGGESTION_KEYS:
        if key in obj:
            suggestion = obj[key]
            break
    if isinstance(suggestion, str):
        why = cut_off(suggestion)
        if why:
            out.problem, out.cut = why, True
            return out
        inner = extract_json(suggestion)
        suggestion = inner if inner is not None else suggestion
    names = {v.name for v in variables}
    if not isinstance(suggestion, dict):
        if any(k in names for k in obj):  # names given at the top level
            suggestion = {k: val for k, val in obj.items() if k not in ("reasoning",)}
        elif suggestion is None:
            out.problem = 'the JSON object has no "suggestion" object'
            return out
        else:
            out.problem = f'"suggestion" must be an object mapping names to values, got {type(suggestion).__name__}'
            return out
    by_norm: dict[str, list[str]] = {}
    for v in variables:
        by_norm.setdefault(_norm(v.name), []).append(v.name)
    for key, val in suggestion.items():
        key_s = str(key)
        if key_s in names:
            out.values[key_s] = val
            continue
        match = by_norm.get(_norm(key_s), [])
        if len(match) == 1 and match[0] not in out.values:
            out.values[match[0]] = val
        else:
            out.unknown.append(key_s[:60])
    if not out.values:
        out.problem = "the suggestion names none of the variables" + (
            f" (it names {', '.join(repr(u) for u in out.unknown[:5])})" if out.unknown else "")
    return out


# --- reading one value ---------------------------------------------------------------------
def check_value(v: Variable, raw: Any, max_text_chars: int | None = None) -> Any:
    """`raw` normalised for the variable's kind and accepted by `v.check`, or ReplyError
    saying why not.

    Normalising: a categorical value loses surrounding whitespace and quotes; code is read
    as `check_code` does. Screening (reply artefacts, not validity): a text that repeats an
    instructions' placeholder, or is longer than `max_text_chars` (default: 20 times the
    current value, at least 4,000 characters, so a runaway reply cannot replace a prompt),
    is refused. Acceptance is `v.check`'s alone; without a check, values are only read.
    """
    if max_text_chars is None:
        max_text_chars = max(20 * len(str(v.value)), 4000)
    if v.kind == "code":
        return check_code(v, raw)
    if v.kind == "categorical" and isinstance(raw, str):
        raw = raw.strip().strip("\"'")
    elif v.kind == "text":
        _screen_text(v, raw, max_text_chars)
    return accepted(v, raw)


def accepted(v: Variable, value: Any) -> Any:
    """`v.check(value)` (the caller's acceptance rule) with its refusal as a ReplyError;
    a check that returns None keeps `value`."""
    if v.check is None:
        return value
    try:
        result = v.check(value)
    except Exception as exc:
        raise ReplyError(message_of(exc, 300) or type(exc).__name__) from None
    return value if result is None else result


#: ends every refusal of an unusable value (pasted from the prompt, of another form): the
#: step does not re-ask for those, it explores
UNUSABLE = "instead of a new value for the variable"


def is_placeholder(text: str) -> bool:
    """True when `text` is an instructions' placeholder, or starts with a bracketed one
    (compared in `normal_form`, as the exclusion grammar compares)."""
    form = normal_form(text.lstrip())
    return form in _PLACEHOLDER_FORMS or form.startswith(_PREFIX_FORMS)


#: the characters that close a JSON reply: a text value that gains them (its current value
#: has none) holds the reply's own structure, written inside the string
JSON_DEBRIS = "{}"


def debris_chars(v: Variable) -> str:
    """The JSON structure characters a new value of `v` may not hold: those its current
    value does not hold (a text parameter that is a template with braces keeps them)."""
    current = v.value if isinstance(v.value, str) else ""
    return "".join(ch for ch in JSON_DEBRIS if ch not in current)


def _screen_text(v: Variable, raw: Any, max_text_chars: int) -> None:
    if isinstance(raw, str) and is_placeholder(raw):
        raise ReplyError(f"{v.name} repeats the placeholder from the instructions {UNUSABLE}")
    if isinstance(raw, str) and (found := [ch for ch in debris_chars(v) if ch in raw]):
        raise ReplyError(f"{v.name} holds {' and '.join(found)}, the reply's JSON structure (its current "
                         f"value has none) {UNUSABLE}")
    try:
        size = len(raw) if isinstance(raw, str) else len(json.dumps(raw, default=str))
    except (TypeError, ValueError):
        return
    if size > max_text_chars:
        raise ReplyError(f"{v.name} is too long ({size} characters; at most {max_text_chars})")


# --- code ---------------------------------------------------------------------------------------
def _strip_fences(src: str) -> str:
    m = _FENCE.search(src)
    if m and src.strip().startswith("```"):
        return m.group(1)
    return src


def code_facts(source: str) -> tuple[str, list[str], str]:
    """(function name, parameter names, `def` line) of the one function in `source`."""
    tree = ast.parse(textwrap.dedent(source))
    fdef = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    line = textwrap.dedent(source).splitlines()[fdef.lineno - 1].strip()
    return fdef.name, _params(fdef.args), line


def _params(args: ast.arguments) -> list[str]:
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def code_variants(source: str) -> list[str]:
    """Light repairs of a proposed function, tried in order after the source itself fails:
    comments removed; a flat body re-indented to four spaces; one body line dropped (for
    each line). Bounded: at most a dozen variants, each checked in full like the original."""
    lines = source.split("\n")
    if len(lines) < 2 or len(lines) > 40:
        return []
    head, body = lines[0], lines[1:]
    variants: list[str] = []
    no_comments = [ln for ln in body if not ln.strip().startswith("#")]
    no_comments = [re.sub(r"\s+#[^'\"]*$", "", ln) for ln in no_comments]
    if no_comments and no_comments != body:
        variants.append("\n".join([head, *no_comments]))
    flat = [ln.strip() for ln in no_comments if ln.strip()]
    if flat and not any(ln.endswith(":") for ln in flat):
        variants.append("\n".join([head, *("    " + ln for ln in flat)]))
    for i in range(len(flat) - 1, -1, -1):
        rest = flat[:i] + flat[i + 1:]
        if rest and not any(ln.endswith(":") for ln in rest):
            variants.append("\n".join([head, *("    " + ln for ln in rest)]))
    seen: set[str] = {source}
    out = []
    for variant in variants[:12]:
        if variant not in seen:
            seen.add(variant)
            out.append(variant)
    return out


def check_code(v: Variable, raw: Any) -> str:
    """Proposed source for a code variable, accepted by `v.check` (tracekit's: one
    function, same name and parameters, no new risky name, compiles; nothing is run).
    The source is read first: code fences removed, dedented. When it is refused, light
    repairs (`code_variants`) are tried in order, each checked in full like the original,
    and the first accepted one is returned; else the first refusal is raised."""
    if not isinstance(raw, str) or not raw.strip():
        if v.check is None:
            raise ReplyError(f"code for {v.name} must be a non-empty string with the whole function")
        return accepted(v, raw)
    source = textwrap.dedent(_strip_fences(raw)).strip("\n")
    try:
        return accepted(v, source)
    except ReplyError as first:
        for variant in code_variants(source):
            try:
                return accepted(v, variant)
            except ReplyError:
                continue
        raise first from None
