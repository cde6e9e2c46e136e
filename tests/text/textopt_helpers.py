"""Shared helpers of the text-optimizer tests: scripted LLMs and graph builders."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import tracekit as tk


class Scripted:
    """An LLM callable that returns the given replies in order (the last one repeats)."""

    def __init__(self, replies: Iterable[Any]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []
        self.kwargs: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        with self._lock:
            self.prompts.append(messages[-1]["content"])
            self.kwargs.append(kwargs)
            i = min(len(self.prompts) - 1, len(self.replies) - 1)
            reply = self.replies[i]
        return reply(messages, **kwargs) if callable(reply) else reply


def reply(suggestion: Any, reasoning: str = "because") -> str:
    return json.dumps({"reasoning": reasoning, "suggestion": suggestion})


def chain_graph(n_ops: int, doc: str = "Add the step to the running total.") -> tuple[Any, Any, Any]:
    """A chain of n traced bundled calls fed by one text and one numeric parameter."""
    prefix = tk.param("Total:", name="prefix", description="text put before the total")
    step = tk.param(2, name="step", bounds=(0, 100))

    @tk.bundle(description=doc)
    def accumulate(total, step):
        return total + step

    @tk.bundle()
    def render(prefix, total):
        """Render the total after the prefix."""
        return f"{prefix} {total}"

    total = tk.node(0, name="start")
    for _ in range(n_ops):
        total = accumulate(total, step)
    out = render(prefix, total)
    return out, prefix, step


def fanout_graph(n_ops: int) -> tuple[Any, Any]:
    """One parameter feeding many operator calls whose results are summed (Trace's cubic case)."""
    w = tk.param(1.5, name="w", bounds=(-10, 10))
    total = w * 0
    for i in range(n_ops // 2):
        total = total + w * i
    return total, w


def sane(params: list[Any], before: dict[int, Any], check_code: Callable[[str], Any] | None = None) -> None:
    """Assert that every parameter holds its old value or a value its own validation accepts."""
    for p in params:
        value = p.data
        old = before[id(p)]
        if value is old or value == old:
            continue
        assert type(value) is type(old), f"{p.name}: type changed to {type(value).__name__}"
        assert p.validate(value) == value, f"{p.name}: value does not validate"
        if p.kind == "numeric" and p.bounds is not None:
            assert p.bounds[0] <= value <= p.bounds[1]
        if p.kind == "categorical":
            assert value in p.choices
        if p.kind in ("text", "code"):
            assert isinstance(value, str) and value.strip()
