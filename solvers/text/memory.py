"""What the optimizer remembers across steps: per parameter, the values tried and what followed.

Every step records the values the parameters held when the feedback was given (what followed
them is that feedback, and the objective's loss when one is known), and every candidate an
objective judged. From this one record come three things: the bounded digest of earlier
attempts shown in the prompt, the values left out of later replies (a value already tried
is never proposed again while untried ones remain), and the pool an exploratory proposal
draws from. Values are compared as the exclusion grammar compares them: strings in
`normal_form`, other values by type and JSON form. The state is plain JSON-ready data.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from .exclude import normal_form
from .problem import MemoryEntry

FEEDBACK_CHARS = 300  # what is kept of the feedback that followed a value
MAX_VALUES = 64  # values remembered per parameter (the oldest are forgotten first)
MAX_ASSIGNMENTS = 256  # whole assignments remembered (for multi-parameter steps and the digest)
MAX_VALUE_CHARS = 20_000  # a larger non-text value (a big tensor) is remembered by a digest only


def value_key(value: Any) -> str:
    """The identity of a value for memory: a string's normal form, else its typed JSON form."""
    if isinstance(value, str):
        return "s:" + normal_form(value)
    try:
        form = json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        form = repr(value)
    if len(form) > MAX_VALUE_CHARS:
        return type(value).__name__ + ":sha1:" + hashlib.sha1(form.encode("utf-8", "replace")).hexdigest()
    return type(value).__name__ + ":" + form


def _kept(value: Any) -> Any:
    """What the memory holds of `value`: the value, or for a large non-text value (a big
    tensor as nested lists) a short note, so that the memory stays small."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    key = value_key(value)
    if ":sha1:" in key:
        return f"<a {type(value).__name__} too large to remember (digest {key.rsplit(':', 1)[1][:12]})>"
    return value


def _plain(value: Any) -> Any:
    """`value` when it is JSON-ready, else its repr (cut): the state holds plain data only."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:2000]


@dataclass
class Tried:
    """One value (or assignment) tried: when last, the feedback that followed, its loss."""

    value: Any
    step: int
    feedback: str = ""
    loss: float | None = None

    def note(self) -> str:
        """What followed, in one line: the loss when known, then the feedback."""
        parts = []
        if self.loss is not None:
            parts.append(f"objective loss {self.loss:.6g}")
        if self.feedback:
            parts.append(self.feedback)
        return "; ".join(parts) or "no feedback"

    def state(self) -> dict[str, Any]:
        return {"value": _plain(self.value), "step": self.step, "feedback": self.feedback,
                "loss": self.loss}


class Memory:
    """Per-parameter history of tried values, and the assignments tried together."""

    def __init__(self, max_values: int = MAX_VALUES, max_assignments: int = MAX_ASSIGNMENTS) -> None:
        self.max_values = max(1, max_values)
        self.max_assignments = max(1, max_assignments)
        self.values: dict[str, dict[str, Tried]] = {}  # name -> key -> record (oldest first)
        self.assignments: dict[str, Tried] = {}  # assignment key -> record (value: name -> value)

    def __len__(self) -> int:
        """How many assignments are remembered."""
        return len(self.assignments)

    # --- recording ------------------------------------------------------------------------
    def record(self, values: dict[str, Any], step: int, feedback: str = "",
               loss: float | None = None) -> None:
        """Remember that `values` (name -> value) were tried together and what followed.

        A value tried again moves to the newest place; its feedback and loss are updated
        when new ones are given. A non-finite loss is kept as a failure note."""
        failed = loss is not None and not math.isfinite(loss)
        loss = None if failed else loss
        feedback = feedback[:FEEDBACK_CHARS]
        for name, value in values.items():
            _upsert(self.values.setdefault(name, {}), value_key(value), _kept(value), step, feedback, loss,
                    self.max_values, failed)
        _upsert(self.assignments, self.assignment_key(values), {k: _kept(v) for k, v in values.items()},
                step, feedback, loss, self.max_assignments, failed)

    @staticmethod
    def assignment_key(values: dict[str, Any]) -> str:
        return json.dumps({k: value_key(v) for k, v in values.items()}, sort_keys=True)

    # --- reading -------------------------------------------------------------------------
    def tried(self, name: str) -> list[Any]:
        """The values of `name` tried so far, oldest first."""
        return [t.value for t in self.values.get(name, {}).values()]

    def record_of(self, name: str, value: Any) -> Tried | None:
        """The record of `value` for `name`, or None when it was never tried."""
        return self.values.get(name, {}).get(value_key(value))

    def assignment_tried(self, values: dict[str, Any]) -> bool:
        return self.assignment_key(values) in self.assignments

    def digest(self, current: dict[str, Any] | None = None) -> list[MemoryEntry]:
        """The earlier attempts for the prompt, oldest first (the prompt shows the newest):
        each assignment once, with what followed it; the `current` one is left out (the
        prompt shows it with its feedback already)."""
        skip = self.assignment_key(current) if current is not None else None
        return [MemoryEntry(dict(t.value), t.note()) for key, t in self.assignments.items() if key != skip]

    # --- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"values": {name: [{**t.state(), "key": key} for key, t in records.items()]
                           for name, records in self.values.items()},
                "assignments": [{**t.state(), "value": {k: _plain(v) for k, v in t.value.items()}, "key": key}
                                for key, t in self.assignments.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.clear()
        self.assignments.clear()
        for name, records in (state.get("values") or {}).items():
            for r in records:
                _upsert(self.values.setdefault(name, {}), r.get("key") or value_key(r["value"]), r["value"],
                        int(r.get("step", 0)),
                        str(r.get("feedback", "")), r.get("loss"), self.max_values)
        for r in state.get("assignments") or []:
            values = dict(r["value"])
            _upsert(self.assignments, r.get("key") or self.assignment_key(values), values, int(r.get("step", 0)),
                    str(r.get("feedback", "")), r.get("loss"), self.max_assignments)


def _upsert(table: dict[str, Tried], key: str, value: Any, step: int, feedback: str,
            loss: float | None, limit: int, failed: bool = False) -> None:
    old = table.get(key)
    if old is not None:
        feedback = feedback or old.feedback
        loss = loss if loss is not None else old.loss
        if old.step != step:  # tried again later: it moves to the newest place
            del table[key]
    if failed and "the objective failed" not in feedback:
        feedback = (feedback + "; " if feedback else "") + "the objective failed"
    table[key] = Tried(value, step, feedback[:FEEDBACK_CHARS], loss)
    while len(table) > limit:
        del table[next(iter(table))]
