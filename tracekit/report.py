"""The step report of `tk.Optimizer`: which parameters changed, by which solver, why the
others did not, and what the LLM calls cost.

A step over many tensors must not pay for a report nobody reads, so rows are cheap until
read: a solver that updates a group of tensors in place returns one `GroupUpdate` (see
`tracekit.seam`) and the report keeps one `GroupRows` for it, whose per-parameter
`ParamChange` rows are built on first access (`report.changes`, `report["w"]`,
`str(report)`). Value previews (`short_repr`, 40 characters) are rendered when first read
too; what a later step could change is pinned during the step (see `Snapshot`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.nodes import _is_tensor, short_repr

DIFF_LINES = 40
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


class _Preview:
    """`short_repr(value, 40)`, rendered on first read: most reports are never printed.

    What a later step could change is pinned now: a tensor's shape and dtype (its preview
    does not show the values above 8 entries; small tensors are rendered at once), and
    any mutable Python value (rendered at once). Immutable values are kept as they are.
    `_Preview.lazy(tensor)` keeps a parameter's own tensor instead (see `Snapshot`).
    """

    __slots__ = ("value", "shape", "dtype", "text")

    def __init__(self, value: Any) -> None:
        self.value = self.shape = self.dtype = self.text = None
        if _is_tensor(value):
            if value.numel() <= 8:
                self.text = short_repr(value, 40)
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
        preview.value, preview.shape, preview.dtype, preview.text = value, None, None, None
        return preview

    def render(self) -> str:
        if self.text is None:
            if self.shape is not None:  # short_repr's text for a tensor of more than 8 entries
                text = f"tensor(shape={tuple(self.shape)}, dtype={str(self.dtype).replace('torch.', '')})"
                self.text = text if len(text) <= 40 else text[:28] + f"...[+{len(text) - 28} chars]"
            else:
                self.text = short_repr(self.value, 40)
                if not isinstance(self.value, str):
                    self.value = None  # rendered: let a tensor or a copy go
        return self.text


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
                rows.append(ParamChange(names[id(p)], p.kind, update.solver, before, after,  # type: ignore[arg-type]
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

    def __str__(self) -> str:
        lines = [f"step: {len(self.changed)}/{len(self.changes)} parameters changed in "
                 f"{self.seconds:.3f}s; LLM calls {self.llm_calls}, tokens {self.tokens}, cost {self.cost:.4g}"]
        if self.max_violation is not None:
            lines.append(f" constraints: max violation {self.max_violation:.3g}")
        for c in self.changes:
            mark = "*" if c.changed else " "
            detail = f"{c.old} -> {c.new}" if c.changed else f"kept {c.old}"
            why = f"  ({c.reason})" if c.reason else ""
            lines.append(f" {mark} {c.name} [{c.kind}, {c.solver}]: {detail}{why}")
            if c.kind == "code" and c.changed:  # code reads better as a diff than a preview
                lines.extend("     " + line for line in c.diff.splitlines())
        return "\n".join(lines)
