"""The text feedback of a minibatch: one bounded text the optimizer reads for all examples.

`aggregate_feedback` writes the minibatch's mean score, then one line per example, worst
first (its input, not its label: `_input_of`), cut at a character budget. Used by
`tracekit.training.trainer.Trainer` (and re-exported there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracekit.nodes import short_repr
from tracekit.training.scoring import ExampleResult


def aggregate_feedback(results: Sequence[ExampleResult], examples: Sequence[Any],
                       max_chars: int = 2000, higher_is_better: bool = True) -> str:
    """One bounded text about a minibatch: its mean score, then one line per example,
    worst first, cut at `max_chars` with a count of the examples left out."""
    scores = [r.score for r in results if r.score is not None]
    errors = sum(1 for r in results if r.error)
    direction = "higher is better" if higher_is_better else "lower is better"
    head = f"Minibatch of {len(results)} examples"
    if scores:
        head += f": mean score {sum(scores) / len(scores):.4g} ({direction})"
    if errors:
        head += f"; {errors} raised an error"
    lines = [head + "."]
    used = len(lines[0])
    ordered = sorted(range(len(results)), key=lambda i: _sort_key(results[i], higher_is_better))
    shown = 0
    for i in ordered:
        r = results[i]
        parts = [f"- example {r.index}: input {short_repr(_input_of(examples[i]), 120)}",
                 f"output {short_repr(r.prediction, 120)}"]
        if r.score is not None:
            parts.append(f"score {r.score:.4g}")
        if r.text:
            parts.append(r.text.strip())
        line = "; ".join(parts)
        if used + len(line) + 1 > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
        shown += 1
    if shown < len(results):
        lines.append(f"... {len(results) - shown} more examples not shown (text budget {max_chars} chars).")
    return "\n".join(lines)


def _sort_key(r: ExampleResult, higher_is_better: bool) -> tuple:
    if r.score is None:
        return (1, 0.0)
    return (0, r.score if higher_is_better else -r.score)


_INPUT_KEYS = ("input", "text", "question", "query", "prompt", "x")
_TARGET_KEYS = {"label", "target", "answer", "expected", "y", "output", "split", "id"}


def _input_of(example: Any) -> Any:
    """What to show of an example in feedback: its input, not its label."""
    if isinstance(example, dict):
        for key in _INPUT_KEYS:
            if key in example:
                return example[key]
        return {k: v for k, v in example.items() if k not in _TARGET_KEYS}
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return example[0]
    return example

