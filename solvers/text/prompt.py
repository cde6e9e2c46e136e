"""Building the prompt: the problem as text, within a token budget, in linear time.

The prompt shows what OptoPrime shows — the code of the traced calls, the documentation
of the functions, the variables with their kinds, bounds, choices and constraints, the
inputs, intermediate values, outputs and the feedback — in our own wording, and then
asks for one JSON reply. A large graph is reduced to what matters: calls are ranked by
their distance to a variable or an output (two linear passes), runs of calls with the
same shape are collapsed, and what does not fit is counted instead of shown.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .problem import Call, MemoryEntry, Problem, Value, Variable

DEFAULT_BUDGET = 4000
MIN_BUDGET = 300
MIN_GRAPH_CHARS = 300  # less room than this for the graph leaves it out
CHARS_PER_TOKEN = 3.5  # conservative for English and code: real counts are usually lower
RUN_MIDDLES = 4  # calls shown from the middle of a run of same-shaped calls

DEFAULT_INSTRUCTION = (
    "You are improving a program. The variables below are used by the code; the feedback "
    "says how good its outputs were. Propose new values for the variables so that the "
    "feedback improves."
)


def estimate_tokens(text: str) -> int:
    """Tokens in `text`, estimated from its length (about 3.5 characters per token)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


#: the mark `_cut` leaves in a shortened text (a value holding it copies the prompt)
CUT_MARK = re.compile(r"\[\d+ chars cut\]")


def _cut(text: str, limit: int) -> str:
    """Keep the head and tail of `text`, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    limit = max(limit, 24)
    marker_len = 24
    keep = max(limit - marker_len, 8)
    head = keep * 2 // 3
    tail = keep - head
    omitted = len(text) - head - tail
    return f"{text[:head]}...[{omitted} chars cut]...{text[len(text) - tail:] if tail else ''}"


def shorten(value: Any, limit: int = 200, raw_str: bool = False) -> str:
    """A one-piece rendering of `value` of at most about `limit` characters.

    Strings are cut in the middle with a marker; lists, tuples, sets and dicts are rendered
    item by item and stop early (so a huge container costs no more than `limit`); `raw_str`
    shows a string without quotes (for text variables).
    """
    if isinstance(value, str):
        return _cut(value if raw_str else repr(value), limit)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return _cut(_container(value, limit), limit)
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the prompt
        text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    return _cut(text, limit)


def _container(value: Any, limit: int) -> str:
    if isinstance(value, dict):
        opening, closing = "{", "}"
        items = iter(value.items())
        render = lambda kv: f"{shorten(kv[0], limit // 2)}: {shorten(kv[1], limit // 2)}"  # noqa: E731
    else:
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")") if isinstance(value, tuple) else ("{", "}")
        items = iter(value)
        render = lambda v: shorten(v, limit // 2)  # noqa: E731
    parts: list[str] = []
    used = 2
    shown = 0
    for item in items:
        piece = render(item)
        if used + len(piece) + 2 > limit and shown:
            break
        parts.append(piece)
        used += len(piece) + 2
        shown += 1
    rest = len(value) - shown
    if rest > 0:
        parts.append(f"...[+{rest} items]")
    return opening + ", ".join(parts) + closing


# --- the sections -----------------------------------------------------------------------
def describe_variable(v: Variable, value_chars: int) -> str:
    """The lines that present one variable: name, kind, limits, description, value."""
    facts = [v.kind]
    if v.kind == "numeric":
        facts.append("integer" if v.value_type == "int" else "number")
        if v.bounds is not None:
            facts.append(f"between {v.bounds[0]:g} and {v.bounds[1]:g}")
    elif v.kind == "categorical":
        facts.append("one of " + ", ".join(json.dumps(c) if _jsonable(c) else str(c) for c in v.choices or []))
    elif v.kind == "code":
        sig = v.signature or ""
        facts.append(f"Python source of one function; keep the line `{sig}` unchanged" if sig
                     else "Python source of one function; keep its name and parameters")
    elif v.value_type in ("list", "dict", "tuple"):
        facts.append(f"a JSON {'object' if v.value_type == 'dict' else 'list'}")
    head = f"- {v.name} ({'; '.join(facts)})"
    lines = [head]
    if v.description:
        lines.append(f"  description: {_cut(v.description, 300)}")
    for c in v.constraints:
        lines.append(f"  constraint: {_cut(str(c), 200)}")
    if v.kind in ("code", "text") and isinstance(v.value, str) and ("\n" in v.value or len(v.value) > 60):
        lines.append("  current value:\n" + _indent(shorten(v.value, value_chars, raw_str=True)))
    else:
        rendered = shorten(v.value, value_chars, raw_str=False)
        lines.append(f"  current value: {rendered}")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines() or [""])


def _equal(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _jsonable(c: Any) -> bool:
    return isinstance(c, (str, int, float, bool)) or c is None


#: the most characters of a current value shown in the reply's example object
EXAMPLE_CHARS = 300


def value_example(v: Variable) -> str:
    """What the reply's example object holds for one variable: its current value as JSON.

    The example is the object to edit, not a template to fill: small models copy what they
    are shown, and a copy of the current value changes nothing (it is refused as unchanged,
    and a grammar-constrained reply cannot produce it), where a copied placeholder such as
    `<new text>` or a variant of it would be a new value. A long value is shown cut, with
    the prompt's cut mark inside, which the reply check refuses in a value. Code is too long
    to repeat: it is described, and a copy of the description does not compile."""
    if v.kind == "code":
        return '"<the whole new function source, as a JSON string>"'
    value = v.value
    if isinstance(value, str):
        return json.dumps(_cut(value, EXAMPLE_CHARS), ensure_ascii=False)
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = json.dumps(shorten(value, EXAMPLE_CHARS), ensure_ascii=False)
    return text if len(text) <= EXAMPLE_CHARS else shorten(value, EXAMPLE_CHARS)


REPLY_HEAD = "# Your reply\nThis JSON object holds the current values:"
REPLY_ASK = ("Reply with only this JSON object, nothing before or after it, with a better value for "
             "every variable you change (keep the names) and one short sentence in \"reasoning\".")


def reply_instructions(variables: list[Variable]) -> str:
    """The closing request: the current values as one JSON object, to be replied edited."""
    fields = ", ".join(f"{json.dumps(v.name)}: {value_example(v)}" for v in variables)
    return f'{REPLY_HEAD}\n{{"suggestion": {{{fields}}}, "reasoning": ""}}\n{REPLY_ASK}'


#: the notes and titles the prompt writes around the data (see the sections below)
NOTES = ("more feedback texts left out", "more lines left out", "chars cut", "calls left out here",
         "Left out to fit the prompt budget", "# Variables (you may change these)",
         "# Earlier attempts (values tried and what followed; do not propose them again)",
         "Not tried yet", "# Code (the calls that ran, in order", "# Intermediate values",
         "(no feedback text)")
WORDING_CHARS = 16  # shorter pieces of the prompt's own wording are common words, not copies


def own_wording(problem: Problem) -> list[str]:
    """The pieces of the prompt that the optimizer wrote, not the data: the instruction, the
    reply request, titles and notes, split at punctuation into pieces of at least
    `WORDING_CHARS` characters. A proposed text holding one copies the prompt."""
    texts = [problem.instruction or DEFAULT_INSTRUCTION, REPLY_HEAD, REPLY_ASK, *NOTES]
    pieces = (p.strip() for t in texts for p in re.split(r'[.,;:()\[\]"#\n]', t))
    return [p for p in dict.fromkeys(pieces) if len(p) >= WORDING_CHARS]


@dataclass
class Prompt:
    """The built prompt and what it holds: `stats` counts shown and left-out items."""

    messages: list[dict[str, str]]
    text: str
    tokens: int
    budget: int
    stats: dict[str, Any] = field(default_factory=dict)


def build_prompt(problem: Problem, budget: int = DEFAULT_BUDGET, *, memory_size: int = 5,
                 value_chars: int = 240, system: bool = False) -> Prompt:
    """Render `problem` as chat messages of at most `budget` estimated tokens.

    Time is linear in the number of calls and values. `system=True` puts the fixed
    instructions in a system message (small local models ignore those: default off).
    """
    if budget < MIN_BUDGET:
        raise ValueError(f"prompt budget {budget} is too small; use at least {MIN_BUDGET} tokens")
    chars = int(budget * CHARS_PER_TOKEN)
    for shrink in (1.0, 0.8, 0.6, 0.4, 0.25):
        text, stats = _assemble(problem, int(chars * shrink), memory_size, value_chars)
        if estimate_tokens(text) <= budget:
            break
    else:  # last resort: the essentials, and a middle cut only if even they do not fit
        text = _essentials(problem, chars)
        stats["hard_cut"] = True
        if estimate_tokens(text) > budget:
            tail = reply_instructions(problem.variables)
            body = text[: len(text) - len(tail)]
            text = (_cut(body, max(chars - len(tail) - 60, 40)) + "\n\n" + tail)[:chars]
    tokens = estimate_tokens(text)
    stats["tokens"] = tokens
    if system:
        head, _, rest = text.partition("\n\n")
        messages = [{"role": "system", "content": head}, {"role": "user", "content": rest}]
    else:
        messages = [{"role": "user", "content": text}]
    return Prompt(messages, text, tokens, budget, stats)


def _assemble(problem: Problem, chars: int, memory_size: int, value_chars: int) -> tuple[str, dict[str, Any]]:
    """One attempt at the prompt within `chars` characters."""
    stats: dict[str, Any] = {}
    instruction = _cut(problem.instruction or DEFAULT_INSTRUCTION, max(chars // 10, 200))
    closing = reply_instructions(problem.variables)
    fixed = len(instruction) + len(closing) + 200

    # Variables: up to half of the room, shared evenly, unused share passed on.
    var_room = max((chars - fixed) // 2, 120 * max(len(problem.variables), 1))
    variables_text = _variables(problem.variables, var_room)

    room = chars - fixed - len(variables_text)
    # Feedback: a fifth of what is left, or up to two thirds when it needs more (it is the
    # signal; the graph mostly repeats its inputs); each text keeps its first whole lines
    feedback_items = [f for f in problem.feedback if f] or ["(no feedback text)"]
    fb_room = max(room // 5, min(sum(len(f) + 1 for f in feedback_items), room * 2 // 3), 200)
    shown_fb = feedback_items[: max(fb_room // 60, 1)]
    feedback_text = "# Feedback\n" + "\n".join(
        _head_lines(f, share) for f, share in zip(shown_fb, _shares([len(f) for f in shown_fb], fb_room)))
    if len(shown_fb) < len(feedback_items):
        feedback_text += f"\n[{len(feedback_items) - len(shown_fb)} more feedback texts left out]"
    room -= len(feedback_text)

    # Memory: up to a sixth of what is left, newest first.
    memory_text, mem_stats = _memory(problem.memory[-memory_size:] if memory_size else [],
                                     max(room // 6, 0), problem)
    room -= len(memory_text)
    stats.update(mem_stats)

    # a graph squeezed below MIN_GRAPH_CHARS shows only counts of what was left out
    graph_text, graph_stats = _graph(problem, room, value_chars) if room >= MIN_GRAPH_CHARS else \
        ("", {"calls_shown": 0, "calls_left_out": len(problem.calls)})
    stats.update(graph_stats)
    parts = [instruction, graph_text, variables_text, feedback_text]
    if memory_text:
        parts.append(memory_text)
    parts.append(closing)
    return "\n\n".join(p for p in parts if p), stats


def _variables(variables: list[Variable], room: int) -> str:
    """The variables section within about `room` characters: shared evenly, the room a
    short value does not use passed on to the longer ones; in the variables' order."""
    lines: dict[str, str] = {}
    remaining, left = room, len(variables)
    for v in sorted(variables, key=lambda v: len(str(v.value))):  # small first
        share = max(remaining // max(left, 1), 60)
        lines[v.name] = describe_variable(v, max(share - 80, 40))
        remaining -= len(lines[v.name])
        left -= 1
    return "# Variables (you may change these)\n" + "\n".join(lines[v.name] for v in variables)


def _essentials(problem: Problem, chars: int) -> str:
    """The smallest prompt that still asks the whole question, for a budget too small for
    the graph: a short instruction, every variable, the feedback's first lines that fit
    (failures come first), the reply format."""
    closing = reply_instructions(problem.variables)
    instruction = _cut(problem.instruction or DEFAULT_INSTRUCTION, 200)
    variables = _variables(problem.variables, chars // 3)
    room = chars - len(instruction) - len(variables) - len(closing) - 40
    feedback = _head_lines("\n".join(f for f in problem.feedback if f) or "(no feedback text)", max(room, 60))
    return "\n\n".join([instruction, variables, "# Feedback\n" + feedback, closing])


def _shares(sizes: list[int], room: int, least: int = 60) -> list[int]:
    """Room for each of several texts of `sizes`: an even share each, and what a short text
    does not use passes to the longer ones (so a text a little over the even share is not
    cut when another one leaves room)."""
    shares = [0] * len(sizes)
    left, remaining = len(sizes), room
    for i in sorted(range(len(sizes)), key=sizes.__getitem__):  # shortest first
        shares[i] = max(min(sizes[i] + 1, remaining // max(left, 1)), least)
        remaining -= shares[i]
        left -= 1
    return shares


def _head_lines(text: str, limit: int) -> str:
    """The first whole lines of `text` that fit in about `limit` characters, and a count of
    the lines left out (feedback lists failures first); a first line too long is cut."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    shown = [_cut(lines[0], limit - 40)]
    used = len(shown[0]) + 40  # room for the count
    for line in lines[1:]:
        if used + len(line) + 1 > limit:
            break
        shown.append(line)
        used += len(line) + 1
    if len(shown) < len(lines):
        shown.append(f"[{len(lines) - len(shown)} more lines left out]")
    return "\n".join(shown)


def _memory(entries: list[MemoryEntry], room: int, problem: Problem | None = None) -> tuple[str, dict[str, Any]]:
    """The digest of earlier attempts, newest first, within `room` characters; for a
    categorical variable, the choices not tried yet (among all of `problem.memory`)."""
    if not entries or room < 80:
        return "", {"memory_shown": 0, "memory_left_out": len(entries)}
    lines = ["# Earlier attempts (values tried and what followed; do not propose them again)"]
    for v in problem.variables if problem is not None else []:
        if v.kind != "categorical":
            continue
        tried = [e.values[v.name] for e in problem.memory if v.name in e.values]  # type: ignore[union-attr]
        untried = [c for c in v.choices or [] if not _equal(c, v.value) and not any(_equal(c, t) for t in tried)]
        if untried:
            lines.append(_cut(f"Not tried yet: {v.name} = " + " or ".join(
                json.dumps(c) if _jsonable(c) else str(c) for c in untried), 300))
    used = sum(len(line) + 1 for line in lines)
    shown = 0
    per = max(room // len(entries), 80)
    for entry in reversed(entries):  # newest first
        values = ", ".join(f"{k}={shorten(v, max(per // 3, 30))}" for k, v in entry.values.items())
        line = _cut(f"- {values} -> {entry.feedback}", per)
        if used + len(line) + 1 > room:
            break
        lines.append(line)
        used += len(line) + 1
        shown += 1
    if shown == 0:
        return "", {"memory_shown": 0, "memory_left_out": len(entries)}
    return "\n".join(lines), {"memory_shown": shown, "memory_left_out": len(entries) - shown}


# --- the graph: ranking, collapsing and counting ---------------------------------------------
def _template(call: Call) -> str:
    """The shape of a call without its variable names: `add(x, y)`."""
    code = call.code.split("=", 1)[1].strip() if "=" in call.code else call.code
    head = code.split("(", 1)[0].strip() if "(" in code else (call.function or "op")
    if call.function:
        head = call.function
    return f"{head}/{len(call.inputs)}"


def rank_calls(problem: Problem, collapse: bool = True, templates: list[str] | None = None) -> list[int]:
    """Call indices, most relevant first (linear time).

    A call's distance is the smaller of its distance from a variable (forward pass) and
    its distance to an output (backward pass); failed calls come first, then by distance;
    calls of a shape seen many times (same function and arity) come after all others
    beyond the first three, and most of them are left out (collapsed into a count).
    """
    calls = problem.calls
    n = len(calls)
    var_names = {v.name for v in problem.variables}
    outputs = {v.name for v in problem.values if v.role == "output"}
    producer: dict[str, int] = {}
    for i, c in enumerate(calls):
        producer[c.output] = i
    big = n + 1
    d_var = [big] * n
    for i, c in enumerate(calls):
        best = big
        for name in c.inputs:
            if name in var_names:
                best = 0
                break
            j = producer.get(name)
            if j is not None and j < i and d_var[j] + 1 < best:
                best = d_var[j] + 1
        d_var[i] = best
    d_out = [0 if c.output in outputs else big for c in calls]
    for i in range(n - 1, -1, -1):
        if d_out[i] >= big:
            continue
        for name in calls[i].inputs:
            j = producer.get(name)
            if j is not None and j < i and d_out[i] + 1 < d_out[j]:
                d_out[j] = d_out[i] + 1
    # repeated structure: beyond the first three and the last call of a shape (function and
    # arity), a few more rank last and the rest are collapsed into a count. Calls next to an
    # output are always eligible.
    if templates is None:
        templates = [_template(c) for c in calls]
    total: Counter[str] = Counter(templates) if collapse else Counter()
    seen: Counter[str] = Counter()
    middle = [0] * n  # 0: ranked normally, 1: ranks last, 2: collapsed
    for i, t in enumerate(templates):
        k = seen[t]
        seen[t] += 1
        if total[t] > 6 and 3 <= k < total[t] - 1 and d_out[i] > 1:
            middle[i] = 1 if k - 3 < RUN_MIDDLES else 2
    # bucket sort on (error first, middle last, distance)
    buckets: list[list[int]] = [[] for _ in range(2 * big + 2)]
    for i in range(n):
        if middle[i] == 2 and not calls[i].error:
            continue
        d = min(d_var[i], d_out[i])
        key = 0 if calls[i].error else (1 + d + (big if middle[i] else 0))
        buckets[min(key, len(buckets) - 1)].append(i)
    return [i for bucket in buckets for i in bucket]


def _graph(problem: Problem, room: int, value_chars: int) -> tuple[str, dict[str, Any]]:
    """The code, documentation and values sections within `room` characters. Everything
    is shown when it fits; otherwise repeated structure is collapsed first."""
    if sum(len(c.code) + 1 for c in problem.calls) < room:  # the code alone fits: try all
        text, stats = _graph_once(problem, room, value_chars, collapse=False)
        if not stats["calls_left_out"]:
            return text, stats
    return _graph_once(problem, room, value_chars, collapse=True)


def _graph_once(problem: Problem, room: int, value_chars: int, collapse: bool) -> tuple[str, dict[str, Any]]:
    calls = problem.calls
    values = {v.name: v for v in problem.values}
    var_names = {v.name for v in problem.variables}
    stats: dict[str, Any] = {"calls_total": len(calls), "values_total": len(values)}
    # value lines get smaller when there is a lot to show
    per_value = max(60, min(value_chars, room // max(4 * min(len(calls), 50) + 1, 1)))

    shown_calls: set[int] = set()
    shown_values: dict[str, str] = {}
    documented: dict[str, str] = {}
    used = 0
    budget = room - 200  # headers and the omission notes
    # outputs first (up to a quarter of the room), then calls by rank
    for v in problem.values:
        if v.role == "output" and v.name not in var_names:
            text = f"{v.name} ({v.type}) = {shorten(v.value, per_value)}"
            if used + len(text) + 1 <= budget // 4:
                shown_values[v.name] = text
                used += len(text) + 1
    templates = [_template(c) for c in calls]
    for i in rank_calls(problem, collapse, templates):
        if used >= budget - 40:
            break  # full: the rest is counted, not rendered
        c = calls[i]
        cost_parts: list[tuple[str, str]] = []
        line = _call_text(c)
        cost = len(line) + 1
        doc = ""
        if c.function and c.function not in documented and c.doc:
            doc = f"{c.function}: {_cut(' '.join(c.doc.split()), 300)}"
            cost += len(doc) + 1
        for name in [*c.inputs, c.output]:
            if name in var_names or name in shown_values or name not in values:
                continue
            v = values[name]
            text = f"{name} ({v.type}) = {shorten(v.value, per_value)}"
            cost_parts.append((name, text))
            cost += len(text) + 1
        if used + cost > budget:
            continue
        used += cost
        shown_calls.add(i)
        if doc:
            documented[c.function] = doc
        for name, text in cost_parts:
            shown_values[name] = text
    if not calls:  # no trace: show the values given, within the room
        for v in problem.values:
            if v.name in shown_values or v.name in var_names:
                continue
            text = f"{v.name} ({v.type}) = {shorten(v.value, per_value)}"
            if used + len(text) + 1 <= budget:
                shown_values[v.name] = text
                used += len(text) + 1

    # code section in execution order, with omission notes for the gaps
    code_lines: list[str] = []
    gap: Counter[str] = Counter()
    gap_count = 0
    for i, c in enumerate(calls):
        if i in shown_calls:
            if gap_count:
                code_lines.append(_gap_note(gap_count, gap))
                gap.clear()
                gap_count = 0
            code_lines.append(_call_text(c))
        else:
            gap[templates[i].split("/")[0]] += 1
            gap_count += 1
    if gap_count:
        code_lines.append(_gap_note(gap_count, gap))

    sections: list[str] = []
    if code_lines:
        sections.append("# Code (the calls that ran, in order; `a = f(x=b)` called f with x=b)\n"
                        + "\n".join(code_lines))
    if documented:
        sections.append("# Documentation\n" + "\n".join(documented.values()))
    groups: dict[str, list[str]] = {"input": [], "other": [], "output": []}
    for v in problem.values:  # execution order
        shown = shown_values.get(v.name)
        if shown is not None:
            groups[v.role if v.role in groups else "other"].append(shown)
    titles = {"input": "# Inputs", "other": "# Intermediate values", "output": "# Outputs"}
    for role in ("input", "other", "output"):
        if groups[role]:
            sections.append(titles[role] + "\n" + "\n".join(groups[role]))
    left_calls = len(calls) - len(shown_calls)
    left_values = len([v for v in values if v not in shown_values and v not in var_names])
    if left_calls or left_values:
        sections.append(f"[Left out to fit the prompt budget: {left_calls} of {len(calls)} calls, "
                        f"{left_values} values.]")
    stats.update(calls_shown=len(shown_calls), calls_left_out=left_calls,
                 values_shown=len(shown_values), values_left_out=left_values)
    return "\n\n".join(sections), stats


#: the most characters of a call's `detail` shown under its line
DETAIL_CHARS = 1500


def _call_text(c: Call) -> str:
    """A call's code line, its error, and its detail as indented comment lines (bounded)."""
    line = _cut(c.code, 300) + (f"   # raised {_cut(c.error, 200)}" if c.error else "")
    if c.detail:
        body = _cut(c.detail, DETAIL_CHARS)
        line += "\n" + "\n".join(f"#   {row}" for row in body.splitlines())
    return line


def _gap_note(count: int, templates: Counter[str]) -> str:
    common = ", ".join(f"{n}x {name}(...)" for name, n in templates.most_common(3))
    more = len(templates) - min(len(templates), 3)
    noun = "call" if count == 1 else "calls"
    return f"# ... {count} {noun} left out here ({common}{', ...' if more > 0 else ''})"


__all__ = ["Prompt", "build_prompt", "estimate_tokens", "rank_calls", "shorten", "Value"]
