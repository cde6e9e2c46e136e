"""Plain descriptions of an optimization problem for the text optimizer.

Nothing here knows about tracekit: an adapter (or a user) fills these dataclasses with the
parameters, the traced calls that link them to the outputs, the values seen, and the
feedback, and the optimizer turns them into a prompt and validated suggestions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("text", "code", "numeric", "categorical")


@dataclass
class Variable:
    """A trainable value the LLM may change.

    `name` is the key the LLM must use in its suggestion. `value_type` is the Python type
    name of the value ("str", "int", "float", "list", ...). For code, `signature` is the
    `def` line and `function` the function's name (both derived from the value when empty).
    `check` decides acceptance: it takes a proposed value (already read from the reply:
    quotes, code fences) and returns the value to use or raises with the reason, which is
    shown to the LLM in a re-ask. tracekit passes its one definition per kind (bounds,
    choices, shapes, code checks). Without a check, proposed values are only read, not
    judged: `bounds` and `choices` then shape the prompt and the reply schema only.
    """

    name: str
    kind: str
    value: Any
    description: str = ""
    bounds: tuple[float, float] | None = None
    choices: list[Any] | None = None
    constraints: list[str] = field(default_factory=list)
    value_type: str = ""
    signature: str = ""
    function: str = ""
    check: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"variable {self.name!r}: unknown kind {self.kind!r}; use one of {KINDS}")
        if self.kind == "categorical" and not self.choices:
            raise ValueError(f"categorical variable {self.name!r} needs choices")
        if not self.value_type:
            self.value_type = type(self.value).__name__


@dataclass
class Call:
    """One traced call, shown as a line of code `out = fn(arg=name, ...)`.

    `output` is the name of the value it produced; `inputs` the names it read (in argument
    order). `function` keys the documentation; `doc` is that documentation. `detail` is
    text about this particular call (an optimization step's problem and outcome), shown
    as comment lines under the call and bounded by the prompt.
    """

    output: str
    code: str
    function: str = ""
    doc: str = ""
    inputs: list[str] = field(default_factory=list)
    error: str = ""
    detail: str = ""  # what the call did, shown under its line (e.g. a solve's problem and outcome)


@dataclass
class Value:
    """A value seen in the trace: an input, an intermediate result, or an output."""

    name: str
    value: Any
    role: str = "other"  # "input" | "other" | "output"
    type: str = ""

    def __post_init__(self) -> None:
        if not self.type:
            self.type = type(self.value).__name__


@dataclass
class MemoryEntry:
    """Values tried in an earlier step and the feedback (or objective) they got."""

    values: dict[str, Any]
    feedback: str


@dataclass
class Problem:
    """Everything the optimizer shows the LLM.

    `calls` are in execution order; `values` maps names used in `calls` to what they held.
    `feedback` is one text per output (or one text for all). `instruction` overrides the
    default task statement.
    """

    variables: list[Variable]
    calls: list[Call] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    instruction: str = ""
    memory: list[MemoryEntry] = field(default_factory=list)

    def variable(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)


@dataclass
class Candidate:
    """One proposal: validated values, the problems found, and how it scored."""

    index: int
    temperature: float | None
    seed: int | None
    values: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    reasoning: str = ""
    attempts: int = 0
    error: str = ""
    cut_off: int = 0  # replies refused because they were cut off (then re-asked with more room)
    loss: float | None = None
    eval_error: str = ""
    explored: dict[str, str] = field(default_factory=dict)  # the step's own proposal: name -> how made
    repeated: bool = False  # a reply proposed only values already tried (or the current ones)
    unusable: bool = False  # a reply gave only unusable values (pasted from the prompt, of another form)

    @property
    def valid(self) -> bool:
        return bool(self.values)


@dataclass
class Result:
    """What one optimizer step produced.

    `suggestion` holds the chosen new values (only parameters that change); `reasons`
    says, per parameter, why it changed or was kept. The rest is diagnostics.
    """

    suggestion: dict[str, Any]
    reasons: dict[str, str]
    candidates: list[Candidate]
    chosen: int | None
    baseline_loss: float | None
    prompt_tokens: int
    prompt_stats: dict[str, Any]
    llm_calls: int
    seconds: float
    explored: dict[str, str] = field(default_factory=dict)  # parameters given an exploratory value: how
