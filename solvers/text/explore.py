"""Exploratory proposals: what a step proposes by itself when it is stuck.

A tiny model can stay stuck: it repeats the current value or one already tried, step after
step; or, with an objective, none of its proposals is better. Rather than leave the
parameter as it is, the step then proposes a value of its own, of the kind a random search
would try, never one already tried:
- a categorical (or a small integer range): an untried choice, drawn at random; when every
  choice was tried, the least recently tried one;
- a number: the current value perturbed (a Gaussian step of a quarter of the bounds' width,
  or a uniform draw inside them; half each), or a relative step when there are no bounds;
  a list of numbers (a tensor): each entry perturbed;
- a text: a recombination of the pieces of values seen (the current value, values tried,
  and the text inputs of the trace), split on the current value's separator (commas,
  lines, sentences or words), joined the same way; when the current value is a list of
  single words, the trace's texts give their words;
- code is not explored (a random edit of a function is rarely worth a step).
Every proposal goes through the variable's reading and `check` (the one acceptance rule).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from typing import Any

from .form import short_item, word_list
from .memory import value_key
from .problem import Variable
from .reply import SMALL_INT_RANGE, ReplyError, check_value

_REVISIT = "the least recently tried"
DRAWS = 24  # values drawn before giving up (each is read and checked)
MAX_PIECES = 4  # pieces in a recombined text
WORD_CHARS = 3  # the shortest word a list of single words takes from the trace's texts


def explore(v: Variable, tried: list[Any], rng: random.Random, texts: Iterable[str] = ()) -> tuple[Any, str] | None:
    """An accepted value for `v` that is neither its current value nor in `tried` (oldest
    first), and how it was made; None when the kind is not explored or nothing new is found.
    `texts` are strings seen in the trace, pieces a text may be recombined from."""
    current = value_key(v.value)
    seen = {current, *(value_key(t) for t in tried)}
    for value, how in _draws(v, tried, rng, list(texts)):
        # a finite kind whose every value was tried may go back to one (never the current)
        taken = {current} if how.startswith(_REVISIT) else seen
        if value_key(value) in taken:
            continue
        try:
            accepted = check_value(v, value)
        except ReplyError:
            continue
        if value_key(accepted) not in taken:
            return accepted, how
    return None


def _draws(v: Variable, tried: list[Any], rng: random.Random, texts: list[str]) -> Iterable[tuple[Any, str]]:
    if v.kind == "categorical":
        yield from _choices(list(v.choices or []), v.value, tried, rng)
    elif v.kind == "numeric":
        if isinstance(v.value, bool):
            yield (not v.value), "the other truth value"
        elif isinstance(v.value, (int, float)):
            small = (v.value_type == "int" and v.bounds is not None
                     and v.bounds[1] - v.bounds[0] <= SMALL_INT_RANGE)
            if small:
                lo, hi = math.ceil(v.bounds[0]), math.floor(v.bounds[1])  # type: ignore[index]
                yield from _choices(list(range(lo, hi + 1)), v.value, tried, rng, noun="integer")
            else:
                for _ in range(DRAWS):
                    yield _number(v, float(v.value), rng), "the current value perturbed at random"
        elif isinstance(v.value, list):
            for _ in range(DRAWS):
                yield _perturbed(v, v.value, rng), "each entry perturbed at random"
    elif v.kind == "text":
        if isinstance(v.value, str):
            for _ in range(DRAWS):
                text = _recombined(v.value, tried, texts, rng)
                if text:
                    yield text, "a recombination of pieces of values seen"
        elif isinstance(v.value, list) and all(isinstance(x, str) for x in v.value):
            pool = _unique([x for value in [v.value, *tried] if isinstance(value, list) for x in value
                            if isinstance(x, str)])
            for _ in range(DRAWS):
                if pool:
                    yield rng.sample(pool, rng.randint(1, min(len(pool), MAX_PIECES))), \
                        "a recombination of items of values seen"


def _choices(options: list[Any], current: Any, tried: list[Any], rng: random.Random,
             noun: str = "choice") -> Iterable[tuple[Any, str]]:
    taken = {value_key(current), *(value_key(t) for t in tried)}
    untried = [o for o in options if value_key(o) not in taken]
    if untried:
        yield rng.choice(untried), f"an untried {noun}, drawn at random"
        return
    # every one was tried: the least recently tried (the caller lets these through)
    for t in tried:
        if value_key(t) != value_key(current):
            yield t, f"{_REVISIT} {noun} (all have been tried)"


def _number(v: Variable, x: float, rng: random.Random) -> float | int:
    if v.bounds is not None and math.isfinite(v.bounds[0]) and math.isfinite(v.bounds[1]):
        lo, hi = float(v.bounds[0]), float(v.bounds[1])
        y = rng.gauss(x, (hi - lo) / 4) if rng.random() < 0.5 else rng.uniform(lo, hi)
        y = min(max(y, lo), hi)
    else:
        y = x + rng.gauss(0.0, max(abs(x), 1.0))
        if v.bounds is not None:
            y = min(max(y, float(v.bounds[0])), float(v.bounds[1]))
    if v.value_type == "int":
        return int(round(y))
    return float(f"{y:.4g}")


def _perturbed(v: Variable, value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):
        return [_perturbed(v, x, rng) for x in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    y = value + rng.gauss(0.0, 0.1 * max(abs(value), 1.0))
    if v.bounds is not None:
        y = min(max(y, float(v.bounds[0])), float(v.bounds[1]))
    return int(round(y)) if isinstance(value, int) else float(f"{y:.4g}")


_SEPARATORS = ((",", ", "), ("\n", "\n"), (". ", ". "), (" ", " "))


def _recombined(current: str, tried: list[Any], texts: list[str], rng: random.Random) -> str:
    """Pieces of the current value, tried values and trace texts, split on the current
    value's separator, joined the same way (1 to MAX_PIECES pieces, in random order)."""
    split, join = next(((s, j) for s, j in _SEPARATORS if s in current), (",", ", "))
    values = [current, *(t for t in tried if isinstance(t, str))]
    pool = _unique([p.strip() for text in values for p in text.split(split)])
    first = next((t for t in tried if isinstance(t, str)), current)  # the form is the first value's
    if word_list(first) or (split != " " and pool and all(" " not in p.strip() for p in current.split(split)
                                                          if p.strip())):
        # a list of single words: trace texts give their words (of WORD_CHARS letters or more),
        # and pieces of other values only their short items (the list keeps its form)
        pool = [p for p in pool if short_item(p)]
        pool = _unique(pool + [w for text in texts for w in re.findall(r"[^\W\d_][\w'-]*", text)
                               if len(w) >= WORD_CHARS])
    else:  # trace texts come whole, or cut on the same separator when they hold it
        pool = _unique(pool + [p.strip() for text in texts for p in (text.split(split) if split != " " else [text])])
    pool = [p for p in pool if p and len(p) <= 200]
    if not pool:
        return ""
    return join.join(rng.sample(pool, rng.randint(1, min(len(pool), MAX_PIECES))))


def _unique(items: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for item in items:
        key = re.sub(r"\s+", " ", item.lower()).strip()
        if key and key not in out:
            out[key] = item
    return list(out.values())
