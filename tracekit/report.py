"""The step report of `tk.Optimizer`: which parameters changed, by which solver, why the
others did not, and what the LLM calls cost.

A step over many tensors must not pay for a report nobody reads, so rows are cheap until
read: a solver that updates a group of tensors in place returns one `GroupUpdate` (see
`tracekit.seam`) and the report keeps one `GroupRows` for it, whose per-parameter
`ParamChange` rows are built on first access (`report.changes`, `report["w"]`,
`str(report)`). Value previews (`short_repr`, 40 characters) are rendered when first read
too; what a later step could change is pinned during the step (see `Snapshot`).

Printed, a report is one headline and one line per parameter (`change_line`):
`name: old -> new (solver) — short reason`, the values shortened and the reason cut to its
first clause (`short_reason`); `report.format(full=True)` gives the whole reasons and the
diffs of code parameters, and `report.changes[i].reason` keeps the whole reason.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracekit.nodes import _is_tensor, short_repr

DIFF_LINES = 40
LINE_WIDTH = 120  # a printed report line (`change_line`): at most this many characters
VALUE_CHARS = 30  # each of the old and new values on that line
REASON_CHARS = 64  # the reason on that line, at most (less when the line is full)
_IMMUTABLE = (str, int, float, bool, complex, bytes, type(None))
_IMMUTABLE_TYPES = frozenset(_IMMUTABLE)


@dataclass
class ParamChange:
    """One line of a step report. `old` and `new` are previews (`short_repr`) of the value
    before and after the step, rendered when first read (see `_Preview`)."""

    name: str
    kind: str
    solver: str
    old: str
    new: str
    changed: bool
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    if TYPE_CHECKING:  # `old` and `new` are given as text or as a `_Preview`, read as text
        def __init__(self, name: str, kind: str, solver: str, old: str | _Preview,
                     new: str | _Preview, changed: bool, reason: str = "",
                     info: dict[str, Any] = ...) -> None: ...

    @property
    def diff(self) -> str:
        """A unified diff of the whole old and new value of a changed text or code parameter
        (the previews show 40 characters); "" otherwise. At most `DIFF_LINES` lines."""
        old, new = self.__dict__.get("_old"), self.__dict__.get("_new")
        if not (self.changed and isinstance(old, _Preview) and isinstance(new, _Preview)
                and isinstance(old.value, str) and isinstance(new.value, str)):
            return ""
        import difflib

        lines = list(difflib.unified_diff(old.value.splitlines(), new.value.splitlines(),
                                          "before", "after", lineterm="", n=1))
        if len(lines) > DIFF_LINES:
            lines = lines[:DIFF_LINES] + [f"... ({len(lines) - DIFF_LINES} more diff lines)"]
        return "\n".join(lines)

    def line(self, width: int = LINE_WIDTH) -> str:
        """This row as one line of at most about `width` characters:
        `name: old -> new (solver) — short reason` (see `change_line`)."""
        return change_line(self.name, _brief(self.__dict__.get("_old", "")),
                           _brief(self.__dict__.get("_new", "")), self.solver, self.changed,
                           self.reason, width)


class _Preview:
    """`short_repr(value, 40)`, rendered on first read: most reports are never printed.

    What a later step could change is pinned now: a tensor's shape and dtype (its preview
    does not show the values above 8 entries; small tensors are rendered at once), and
    any mutable Python value (rendered at once). Immutable values are kept as they are.
    `_Preview.lazy(tensor)` keeps a parameter's own tensor instead (see `Snapshot`).
    """

    __slots__ = ("value", "shape", "dtype", "text", "plain")

    def __init__(self, value: Any) -> None:
        self.value = self.shape = self.dtype = self.text = self.plain = None
        if _is_tensor(value):
            if value.numel() <= 8:  # short_repr shows its values: the same text from a list
                self.plain = value.detach().cpu().tolist()
                self.text = short_repr(self.plain, 40)
            else:
                self.shape, self.dtype = value.shape, value.dtype
        elif isinstance(value, _IMMUTABLE):
            self.value = value
        else:
            self.text = short_repr(value, 40)

    @classmethod
    def lazy(cls, value: Any) -> _Preview:
        """A preview of `value` as it will be when read (for a tensor of more than 8 entries
        updated in place, whose preview shows only its shape and dtype, or for a copy)."""
        preview = cls.__new__(cls)
        preview.value, preview.shape, preview.dtype, preview.text, preview.plain = value, None, None, None, None
        return preview

    def render(self) -> str:
        if self.text is None:
            if self.shape is not None:  # short_repr's text for a tensor of more than 8 entries
                text = f"tensor(shape={tuple(self.shape)}, dtype={str(self.dtype).replace('torch.', '')})"
                self.text = text if len(text) <= 40 else text[:28] + f"...[+{len(text) - 28} chars]"
            else:
                value: Any = self.value
                if _is_tensor(value) and value.numel() <= 8:
                    value = value.detach().cpu().tolist()  # short_repr shows the same
                if isinstance(value, (int, float, list)):
                    self.plain = value  # numbers for `brief`
                self.text = short_repr(value, 40)
                if not isinstance(self.value, str):
                    self.value = None  # rendered: let a tensor or a copy go
        return self.text

    def brief(self) -> str:
        """The value for a one-line report: numbers to 4 significant digits, a string's
        repr in full (the line shortens it), anything else as `render` shows it."""
        text = self.render()
        if isinstance(self.value, str):
            return repr(self.value[:400])
        return (_numbers(self.plain) if self.plain is not None else None) or text


def _brief(preview: Any) -> str:
    return preview.brief() if isinstance(preview, _Preview) else str(preview)


def _numbers(value: Any) -> str | None:
    """A number, or a tensor / list / tuple of at most 8 numbers, at 4 significant digits;
    None for anything else."""
    if _is_tensor(value):
        if value.numel() > 8:
            return None
        value = value.detach().cpu().tolist()
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)) and len(value) <= 8:
        parts = [_numbers(v) for v in value]
        if all(p is not None for p in parts):
            text = ", ".join(p for p in parts if p is not None)
            return f"[{text}]" if isinstance(value, list) else f"({text}{',' if len(parts) == 1 else ''})"
    return None


# --- one line per parameter ----------------------------------------------------------------
_PARENS = re.compile(r"\s*\([^()]*\)")
_CLAUSE_END = re.compile(r";\s|,?\s+because\b|\.\s")
_CUT_MARK = re.compile(r"\.\.\.\[\+\d+ chars\]$")  # how `short_repr` marks a cut


def short_reason(reason: str, limit: int = REASON_CHARS) -> str:
    """The first clause of a step report's reason, for one line: asides in parentheses
    (nested ones too) dropped, cut before the first "; ", ", because" or sentence end, and
    at most `limit` characters (cut at a word, marked with "…"). The whole reason stays in
    `ParamChange.reason` and in the run log."""
    text = " ".join(reason.split())
    previous = None
    while previous != text:  # innermost parentheses first, until none are left
        previous, text = text, _PARENS.sub("", text)
    text = text.split("(")[0] if "(" in text else text  # an unclosed aside
    match = _CLAUSE_END.search(text)
    if match:
        text = text[: match.start()]
    text = " ".join(text.split()).rstrip(" ,;:.")
    if not text:  # the reason was an aside only: show its start
        text = " ".join(reason.split()).strip("()")
    return _clip(text, limit, at_word=True)


def _clip(text: str, limit: int, at_word: bool = False) -> str:
    """`text` in at most `limit` characters, "…" marking a cut."""
    text = text.replace("\n", "\\n")
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)]
    if at_word and " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")].rstrip(" ,;:")
    if len(cut) > 2 and cut[0] in "'\"" and not at_word:
        return cut[:-1] + "…" + cut[0]  # a string's repr keeps its closing quote
    return cut + "…"


def _value(text: str) -> str:
    """A value preview cut to `VALUE_CHARS` ("…" for `short_repr`'s longer cut mark), a
    number to 4 significant digits."""
    text = str(text)
    marked = _CUT_MARK.search(text)
    if marked:
        text = text[: marked.start()]
        quote = text[0] if text[:1] in ("'", '"') else ""
        return text[: VALUE_CHARS - 1 - len(quote)] + "…" + quote
    if text[:1] not in ("'", '"', "[", "(", "{"):
        try:
            return f"{float(text):.4g}"  # a number as a run log's preview has it
        except ValueError:
            pass
    return _clip(text, VALUE_CHARS)


def change_line(name: str, old: str, new: str, solver: str, changed: bool, reason: str = "",
                width: int = LINE_WIDTH) -> str:
    """One report line: `name: old -> new (solver) — short reason` for a changed parameter,
    `name: kept old (solver) — short reason` for a kept one. Old and new are cut to
    `VALUE_CHARS` each, the reason to its first clause in what is left of `width`."""
    old, new = _value(old), _value(new)
    head = f"  {name}: {old} -> {new} ({solver})" if changed else f"  {name}: kept {old} ({solver})"
    if not reason:
        return head
    room = max(min(REASON_CHARS, width - len(head) - 3), 24)
    why = short_reason(reason, room)
    if not changed:  # the line says "kept" already
        why = re.sub(r"^kept\b[:,]?\s*", "", why) or why
    return f"{head} — {why}" if why else head


def _preview_property(slot: str) -> property:
    def get(self: ParamChange) -> str:
        value = self.__dict__[slot]
        return value.render() if isinstance(value, _Preview) else value  # renders once

    def set_(self: ParamChange, value: Any) -> None:
        self.__dict__[slot] = value

    return property(get, set_)


ParamChange.old = _preview_property("_old")  # type: ignore[assignment]
ParamChange.new = _preview_property("_new")  # type: ignore[assignment]


def _tensor_type() -> type | None:
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


class Snapshot:
    """Previews of parameters' values before a step, indexed by `id(param)`.

    Cheap for many tensors: a tensor of more than 8 entries is kept by reference (it is
    the parameter's own object, alive anyway; its preview shows only shape and dtype,
    which an in-place update keeps); small tensors are copied and mutable Python values
    rendered now, since the step may change them; immutable values are kept as they are.
    """

    __slots__ = ("params", "values", "pinned", "_index")

    def __init__(self, params: Sequence[Any]) -> None:
        self.params = params
        self.values = values = [p.raw for p in params]
        self.pinned: dict[int, _Preview] = {}  # position -> a preview fixed now
        self._index: dict[int, int] | None = None
        tensor = _tensor_type()
        for i, v in enumerate(values):
            kind = type(v)
            if kind in _IMMUTABLE_TYPES:
                continue
            if tensor is not None and (kind is tensor or isinstance(v, tensor)):
                if v.numel() <= 8:
                    self.pinned[i] = _Preview.lazy(v.detach().clone())
            else:
                self.pinned[i] = _Preview(v)

    def preview(self, i: int) -> _Preview:
        """The preview of `params[i]` before the step."""
        pinned = self.pinned.get(i)
        return pinned if pinned is not None else _Preview.lazy(self.values[i])

    def __getitem__(self, key: int) -> _Preview:
        """By `id(param)`, as a dict of previews would be."""
        if self._index is None:
            self._index = {id(p): i for i, p in enumerate(self.params)}
        return self.preview(self._index[key])


class GroupRows(Sequence):
    """The report rows of one `GroupUpdate` (many tensors updated in place by one solver),
    built on first read. New previews: the same tensor object as before the step (updated
    in place), except for small tensors, copied at the end of the step."""

    def __init__(self, update: Any, names: dict[int, str], old: Snapshot) -> None:
        self.update = update
        self.names = names  # the optimizer's name table of this step (replaced, not mutated)
        self.old = old
        self.new_pinned = {i: _Preview.lazy(update.params[i].raw.detach().clone())
                           for i in old.pinned if _is_tensor(update.params[i].raw)}
        self._rows: list[ParamChange] | None = None

    def changed_names(self) -> list[str]:
        names, applied = self.names, self.update.applied
        return [names[id(p)] for p, a in zip(self.update.params, applied) if a]

    def rows(self) -> list[ParamChange]:
        if self._rows is None:
            update, old, names = self.update, self.old, self.names
            rows = []
            for i, (p, applied) in enumerate(zip(update.params, update.applied)):
                reason, info = update.details(i)
                before = old.preview(i)
                after = self.new_pinned.get(i) or (before if p.raw is old.values[i] else _Preview(p.raw))
                rows.append(ParamChange(names[id(p)], p.kind, update.solver, before, after,
                                        applied, reason, info))
            self._rows = rows
        return self._rows

    def __len__(self) -> int:
        return len(self.update.params)

    def __getitem__(self, i: Any) -> Any:
        return self.rows()[i]

    def __iter__(self) -> Iterator[ParamChange]:
        return iter(self.rows())


class StepReport:
    """Which parameters changed, by which solver, why others did not, and LLM usage.

    `changes`: one `ParamChange` per parameter (built when first read); `changed`: the
    names of the changed ones; `report[name]`: one row; `str(report)`: a readable table.
    """

    def __init__(self, changes: Iterable[Any] = (), llm_calls: int = 0, prompt_tokens: int = 0,
                 completion_tokens: int = 0, cost: float = 0.0, seconds: float = 0.0,
                 max_violation: float | None = None) -> None:
        self._parts: list[Any] = list(changes)  # ParamChange rows and GroupRows
        self._changes: list[ParamChange] | None = None
        self.llm_calls = llm_calls
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost = cost
        self.seconds = seconds
        self.max_violation = max_violation  # of the optimizer's constraints, after the step

    @property
    def changes(self) -> list[ParamChange]:
        if self._changes is None:
            rows: list[ParamChange] = []
            for part in self._parts:
                if isinstance(part, GroupRows):
                    rows.extend(part.rows())
                else:
                    rows.append(part)
            self._changes, self._parts = rows, rows
        return self._changes

    @changes.setter
    def changes(self, rows: list[ParamChange]) -> None:
        self._parts = self._changes = list(rows)

    @property
    def changed(self) -> list[str]:
        if self._changes is not None:
            return [c.name for c in self._changes if c.changed]
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, GroupRows):
                out.extend(part.changed_names())
            elif part.changed:
                out.append(part.name)
        return out

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def _count(self) -> int:
        return sum(len(p) if isinstance(p, GroupRows) else 1 for p in self._parts)

    def __getitem__(self, name: str) -> ParamChange:
        for c in self.changes:
            if c.name == name:
                return c
        raise KeyError(name)

    def __repr__(self) -> str:
        return (f"StepReport({len(self.changed)}/{self._count()} changed, seconds={self.seconds:.4f}, "
                f"llm_calls={self.llm_calls}, tokens={self.tokens})")

    def headline(self) -> str:
        """The report's first line without its "step: " prefix: how many parameters changed,
        in how long, and the LLM calls, tokens and cost of the step."""
        return (f"{len(self.changed)}/{len(self.changes)} parameters changed in {self.seconds:.3f}s; "
                f"LLM calls {self.llm_calls}, tokens {self.tokens}, cost {self.cost:.4g}")

    def format(self, width: int = LINE_WIDTH, full: bool = False, head: bool = True) -> str:
        """The report as text. By default (this is `str(report)`): the headline, then one line
        per parameter, `name: old -> new (solver) — short reason` (`change_line`), of at most
        about `width` characters. `full=True`: per parameter its kind, solver, old and new
        previews and whole reason, and the diff of a changed code parameter. `head=False`
        leaves the headline out (print your own with `headline()`)."""
        lines = ["step: " + self.headline()] if head else []
        if self.max_violation is not None:
            lines.append(f"  constraints: max violation {self.max_violation:.3g}")
        for c in self.changes:
            if not full:
                lines.append(c.line(width))
                continue
            mark = "*" if c.changed else " "
            detail = f"{c.old} -> {c.new}" if c.changed else f"kept {c.old}"
            lines.append(f" {mark} {c.name} [{c.kind}, {c.solver}]: {detail}")
            if c.reason:
                lines.append(f"     reason: {c.reason}")
            if c.kind == "code" and c.changed:  # code reads better as a diff than a preview
                lines.extend("     " + line for line in c.diff.splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
