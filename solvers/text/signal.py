"""A signed signal from text feedback on a number: should the output be larger or smaller?

Text feedback gives a number no loss, so no sampler can search until the text is read as a
signal. `read_signal` reads it in the order that asks least of a model:

1. **A target in the text.** Numbers in the feedback other than the output's own value and
   the parameter's (and digits inside names or after `**`): exactly one left is the wanted
   value, so the signal has a sign and a size ("x*x is 9, but it should be 16" -> +7). With
   several left, the model picks one, a multiple-choice question a small model can answer,
   asked twice with the choices in opposite orders; the two answers must agree.
2. **Direction words**: "too small", "should be larger", "increase" (and their opposites).
3. **Satisfied words** ("correct", "success") with no word of failure: the signal is 0.
4. **The question** "larger or smaller?", asked twice with the options in opposite orders:
   a tiny model that always names the first option gives two different answers, which is
   no signal (measured: SmolLM2-135M says "larger" to every ordering-fixed question).

Without an answer the signal is None and the caller keeps the value or asks otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: `ask(question, options) -> one of options` (or None): the model's multiple-choice answer
Ask = Callable[[str, Sequence[str]], "str | None"]

_NUMBER = re.compile(r"(?<![\w.*^])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")
_BIGGER = r"(larger|bigger|higher|greater|more|longer)"
_SMALLER = r"(smaller|lower|less|shorter|fewer)"
#: what a direction reads like: "too small", "should be larger", "go higher", "increase it",
#: "not big enough", "below the target", or a bare "Higher!" (a guessing game's answer)
_UP = re.compile(rf"\btoo (small|low|little|short|few|cold)\b|\b(should|must|needs? to|has to) be "
                 rf"{_BIGGER}\b|\b(increase|raise) (it|the|this|that|your|[a-z])\b|\bnot (big|large|high|long) "
                 rf"enough\b|\b(go|aim|try|guess|move) (a |an )?{_BIGGER[:-1]}|up)\b|\b(below|under) (the )?"
                 rf"(target|goal|expected)\b|^\W*{_BIGGER}\W*$", re.I)
_DOWN = re.compile(rf"\btoo (large|big|high|much|long|many|hot)\b|\b(should|must|needs? to|has to) be "
                   rf"{_SMALLER}\b|\b(decrease|reduce|lower) (it|the|this|that|your|[a-z])\b|\bnot (small|low"
                   rf"|short) enough\b|\b(go|aim|try|guess|move) (a |an )?{_SMALLER[:-1]}|down)\b|\b(above|over) (the )?"
                   rf"(target|goal|expected)\b|^\W*{_SMALLER}\W*$", re.I)
_GOOD = re.compile(r"\b(correct|success|successful|solved|perfect|exactly right|well done)\b", re.I)
_BAD = re.compile(r"\b(not|wrong|incorrect|try again|fail|failed|error)\b|n't\b", re.I)


@dataclass
class Signal:
    """+1: the output should grow; -1: shrink; 0: it is right. `size`: how far, when the
    text gives a target; `how`: where the signal came from (for the step report)."""

    sign: int
    size: float | None
    how: str


def says_right(text: str) -> bool:
    """True when `text` says the output is right ("correct", "success") and nothing failed."""
    return bool(_GOOD.search(text)) and not _BAD.search(text)


def numbers(text: str) -> list[float]:
    """The numbers written in `text`, except digits inside names (`x2`, `call_1`) or after
    an exponent operator (`x**2`, `x^2`)."""
    found = []
    for match in _NUMBER.finditer(text):
        try:
            found.append(float(match.group()))
        except ValueError:
            continue
    return found


def _same(shown: float, value: float) -> bool:
    """True when `shown` (as written in the text) is `value`, up to the text's rounding."""
    tolerance = max(1e-9 * max(abs(value), 1.0), 0.5 * 10 ** -_decimals(shown))
    return abs(shown - value) <= tolerance


def _decimals(x: float) -> int:
    text = repr(x)
    if "e" in text or "E" in text:
        return 12
    return min(len(text.split(".")[1].rstrip("0")) if "." in text else 0, 12)


def has_signal(text: str, output: float | None, known: Sequence[float] = ()) -> bool:
    """True when `text` alone gives a signal, or candidate targets for the model to pick from
    (no model is asked here: a cheap test for routing)."""
    if output is not None and _targets(text, output, known):
        return True  # one target is a signal; several are choices for the model
    return bool(_UP.search(text)) != bool(_DOWN.search(text)) or says_right(text)


def _targets(text: str, output: float, known: Sequence[float]) -> list[float]:
    """The numbers of `text` that may be the wanted value: each known value (the output's,
    the parameter's) drops the written number nearest it."""
    targets = list(dict.fromkeys(numbers(text)))
    for value in (output, *known):
        near = [n for n in targets if _same(n, value)]
        if near:
            targets.remove(min(near, key=lambda n: abs(n - value)))
    return targets


def read_signal(text: str, output: float | None, known: Sequence[float] = (),
                ask: Ask | None = None, subject: str = "the output", direct: bool = True) -> Signal | None:
    """The signal in feedback `text` on an output of value `output` (None when the output is
    not a number), or None when the text gives none. `known`: other numbers of the problem
    that are not targets (the parameter's value). `ask`: the model's multiple-choice answer,
    used only when the text alone does not decide; `direct=False` asks it only to pick among
    targets, not the "larger or smaller?" question. See the module doc for the order."""
    if output is not None:
        targets = _targets(text, output, known)
        if len(targets) > 1 and ask is not None:
            targets = [t for t in [_choose(text, targets, ask, subject)] if t is not None]
        if len(targets) == 1:
            gap = targets[0] - output
            return Signal(_sign(gap), abs(gap), f"target {targets[0]:g} in the feedback")
    up, down = bool(_UP.search(text)), bool(_DOWN.search(text))
    if up != down:
        return Signal(1 if up else -1, None, "direction words in the feedback")
    if says_right(text):
        return Signal(0, None, "the feedback says it is right")
    if ask is None or not direct:
        return None
    question = f"Feedback on {subject}: {text}\nShould {subject} be {{}} or {{}}?"
    first = ask(question.format("larger", "smaller"), ["larger", "smaller"])
    second = ask(question.format("smaller", "larger"), ["smaller", "larger"])
    if first is None or first != second:
        return None
    return Signal(1 if first == "larger" else -1, None, "the model's answer (asked in both orders)")


def _choose(text: str, targets: list[float], ask: Ask, subject: str) -> float | None:
    """The target the model picks among `targets`, asked in two orders; None unless both agree."""
    options = [f"{t:g}" for t in targets]
    question = f"Feedback on {subject}: {text}\nWhich value should {subject} have?"
    first = ask(question, options)
    second = ask(question, options[::-1])
    if first is None or first != second or first not in options:
        return None
    return targets[options.index(first)]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)
