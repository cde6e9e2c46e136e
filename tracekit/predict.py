"""`tk.Predict`: an LLM call as a traced step of a workflow, its prompt's parts as parameters.

    triage = tk.Predict("ticket -> label", instruction="Is this support ticket urgent or routine?",
                        output=Literal["urgent", "routine"], examples=labelled_train_rows)
    label = triage(ticket="The site is down")        # a node; label.data == "urgent"

Parameters (`triage.parameters()`), each trained by the solver of its kind:
- `instruction` (text): the LLM optimizer, which sees this call's rendered prompt, the raw
  answer and how it was read (`call_detail`);
- `demos` (kind "demos"): the demo solver, which bootstraps demos from calls that scored well
  and from the labelled `examples`, and chooses subsets and their order (no generation);
- `temperature` (a number in [0, 1], no gradient; up to 2 when it starts above 1) and `demo_selection` ("fixed": the demos
  parameter; "nearest": per call, the `max_demos` labelled examples most like the inputs, by
  BM25): Bayesian search with a loss or objective.

Demos are shown as earlier turns of the chat (the inputs as a user message, the answer as
the assistant's reply), so even a 135M model answers in their pattern.

The output type is `str`, a `Literal[...]` of choices, `bool`, `int`, `float` or a pydantic
model. Typed outputs are asked for through the backend's structured output (a grammar on
llama.cpp, `json_schema` on OpenAI-compatible servers) and read leniently: an answer that
cannot be read is an output of `None`, with the reason in the call's detail, so the metric
and the optimizer see it; it never raises out of the workflow.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, create_model

from solvers.text.nearest import NearestDemos
from tracekit.context import tracing_disabled
from tracekit.errors import InvalidValueError
from tracekit.module import Module
from tracekit.nodes import MessageNode, Node, ParameterNode, _propagate_error, param

DETAIL_CHARS = 1500  # the detail shown to the LLM optimizer under this call's line
ANSWER_TOKENS = 256  # the reply cap for a plain text or small typed answer
DEFAULT_MAX_DEMOS = 4  # small models have short contexts; more demos rarely help them
SELECTIONS = ("fixed", "nearest")  # where a call's demos come from (the demo_selection choices)


@dataclass
class Reading:
    """How one answer was read: the value (None when it could not be) and why."""

    value: Any
    raw: str
    problem: str = ""


def parse_signature(signature: str) -> tuple[list[str], str]:
    """("a, b -> out") -> (["a", "b"], "out"); names must be identifiers."""
    if "->" not in signature:
        raise ValueError(f"a signature reads 'input, ... -> output', got {signature!r}")
    left, right = signature.split("->", 1)
    inputs = [n.strip() for n in left.split(",") if n.strip()]
    output = right.strip()
    bad = [n for n in [*inputs, output] if not n.isidentifier()]
    if not inputs or bad:
        raise ValueError(f"signature {signature!r}: names must be Python identifiers and at least one "
                         f"input is needed" + (f" (bad: {bad})" if bad else ""))
    return inputs, output


class Predict(Module):
    """One LLM call with a trainable instruction, demos and temperature (see module doc).

    `signature`: "input, ... -> output" field names. `instruction`: what the model is asked.
    `output`: the answer's type. `examples`: labelled rows (dicts holding the input fields and
    the output field) the demo solver may use as demos. `demos`: the starting demos.
    `demo_selection`: "fixed" (the demos parameter) or "nearest" (the labelled examples most
    like each call's inputs). `max_demos`: at most this many demos in the prompt. `llm`: a backend or callable (the
    configured default when None). `name`: prefix of the parameters' names.
    """

    def __init__(self, signature: str = "question -> answer", *, instruction: str,
                 output: Any = str, examples: Sequence[dict[str, Any]] = (),
                 demos: Sequence[dict[str, Any]] = (), temperature: float = 0.0,
                 demo_selection: str = "fixed", max_demos: int = DEFAULT_MAX_DEMOS, llm: Any = None,
                 name: str | None = None, max_tokens: int | None = None) -> None:
        self.inputs, self.output_name = parse_signature(signature)
        self.output_type = output
        self.is_model = isinstance(output, type) and issubclass(output, BaseModel)  # answers are that model
        self.choices = _choices(output)
        if isinstance(max_demos, bool) or not isinstance(max_demos, int) or max_demos < 0:
            raise ValueError(f"max_demos must be an int >= 0, got {max_demos!r}")
        self.max_demos = max_demos
        self.llm = llm
        self.max_tokens = max_tokens
        self.name = name or self.output_name
        fields = [*self.inputs, self.output_name]
        self.examples = [self._check_row(row, i, fields) for i, row in enumerate(examples)]
        self.instruction = param(instruction, name=f"{self.name}_instruction", kind="text",
                                 description=f"the instruction of the LLM call that answers "
                                             f"{self.output_name} from {', '.join(self.inputs)}")
        self.demos = ParameterNode(list(demos), name=f"{self.name}_demos", kind="demos",
                                   description=f"worked examples shown to the LLM call {self.name}",
                                   validator=self._check_demos)
        self.temperature = param(float(temperature), name=f"{self.name}_temperature", bounds=(0.0, max(1.0, min(float(temperature), 2.0))),
                                 description=f"sampling temperature of the LLM call {self.name}")
        if demo_selection not in SELECTIONS:
            raise ValueError(f"demo_selection must be one of {list(SELECTIONS)}, got {demo_selection!r}")
        self.demo_selection = param(demo_selection, name=f"{self.name}_demo_selection", choices=list(SELECTIONS),
                                    description=f"how the LLM call {self.name} gets its demos: the fixed "
                                                f"demos, or the labelled examples nearest to its inputs")
        self.demo_selection.route = "demos"  # chosen by the demo solver, beside the demos themselves
        self._nearest: NearestDemos | None = None
        self._backend: Any = None
        self._reply_model: Any = False  # False: not built yet (None: plain text answers)

    # --- checks -----------------------------------------------------------------------------------
    def _check_row(self, row: Any, i: int, fields: list[str]) -> dict[str, Any]:
        if not isinstance(row, dict) or any(f not in row for f in fields):
            raise ValueError(f"example {i} must be a dict with the fields {fields}, got {row!r:.120}")
        return {f: row[f] for f in fields}

    def _check_demos(self, demos: list[dict[str, Any]]) -> None:
        if len(demos) > self.max_demos:
            raise InvalidValueError(f"{self.name}: {len(demos)} demos, at most {self.max_demos} (max_demos)")
        fields = [*self.inputs, self.output_name]
        for i, demo in enumerate(demos):
            missing = [f for f in fields if f not in demo]
            if missing:
                raise InvalidValueError(f"{self.name}: demo {i} lacks the fields {missing}")

    # --- the call -------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Node:
        """Call the model on the input fields (positional in signature order, or by name)."""
        if len(args) > len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} input(s) {self.inputs}, got {len(args)}")
        given = dict(zip(self.inputs, args))
        for key, value in kwargs.items():
            if key not in self.inputs or key in given:
                raise TypeError(f"{self.name}: unexpected or repeated input {key!r}; inputs are {self.inputs}")
            given[key] = value
        missing = [n for n in self.inputs if n not in given]
        if missing:
            raise TypeError(f"{self.name}: missing input(s) {missing}")
        order = [v if isinstance(v, Node) else Node(v, name=n) for n, v in ((n, given[n]) for n in self.inputs)]
        parents = (self.instruction, self.demos, self.temperature, self.demo_selection, *order)
        argnames = ("instruction", "demos", "temperature", "demo_selection", *self.inputs)
        op = PredictOp(self)
        if not tracing_disabled() and any(p.is_error for p in parents):
            return _propagate_error(op, parents, argnames)
        values = {n: node._data for n, node in zip(self.inputs, order)}
        messages = self.render(values)
        reading = self._ask(messages)
        op.messages, op.reading = messages, reading
        if tracing_disabled():
            return Node(reading.value)
        return MessageNode(reading.value, parents, argnames, op)

    def render(self, values: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages for one call: the instruction opens the first user message; each
        demo is a user turn (its inputs) and an assistant turn (its answer); the call's inputs
        are the last user turn (no system prompt: small local models ignore it)."""
        instruction = str(self.instruction._data).strip()
        messages: list[dict[str, str]] = []
        for demo in self.demos_for(values):
            messages.append({"role": "user", "content": self._fields(demo)})
            messages.append({"role": "assistant", "content": self.answer_text(demo[self.output_name])})
        messages.append({"role": "user", "content": self._fields(values)})
        messages[0]["content"] = f"{instruction}\n\n{messages[0]['content']}"
        return messages

    def demos_for(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """The demos of one call: the demos parameter, or the nearest labelled examples."""
        if self.demo_selection._data != "nearest":
            return list(self.demos._data)
        if self._nearest is None:
            self._nearest = NearestDemos(self.examples, self.inputs)
        return self._nearest.pick(values, self.max_demos)

    def answer_text(self, value: Any) -> str:
        """An answer as the model is asked to write it: JSON for typed outputs, else text."""
        if self._schema() is None:
            return _show(value)
        if isinstance(value, BaseModel):
            return value.model_dump_json()
        if self.is_model:
            return json.dumps(value, default=str)
        return json.dumps({self.output_name: value}, default=str)

    def _fields(self, row: dict[str, Any]) -> str:
        return "\n".join(f"{_title(n)}: {_show(row[n])}" for n in self.inputs)

    def _ask(self, messages: list[dict[str, str]]) -> Reading:
        from tracekit import llm as llm_layer

        if self._backend is None:
            self._backend = llm_layer.as_backend(self.llm)
        backend = self._backend
        options: dict[str, Any] = {"temperature": float(self.temperature._data),
                                   "max_tokens": self.max_tokens or ANSWER_TOKENS}
        schema = self._schema()
        if schema is None:
            try:
                raw = backend(messages, **options)
            except Exception as exc:  # a failed call is an unread answer, not a crash
                return Reading(None, "", f"the call failed: {type(exc).__name__}: {exc}"[:300])
            return Reading(str(raw).strip(), str(raw))
        try:
            instance = backend.structured(messages, schema, max_reasks=0, described=False, **options)
            return self._read(instance, json.dumps(instance.model_dump(mode="json")))
        except Exception as exc:
            attempts = getattr(exc, "attempts", None)
            raw = str(attempts[-1][0]) if attempts else ""
            if not raw:
                return Reading(None, "", f"the call failed: {type(exc).__name__}: {exc}"[:300])
            return self.read(raw)

    def _schema(self) -> Any:
        """The reply's pydantic model (None for plain text answers), built once."""
        if self._reply_model is False:
            if self.is_model:
                self._reply_model = self.output_type
            elif self.output_type is str:
                self._reply_model = None
            else:
                self._reply_model = create_model(  # type: ignore[call-overload]
                    "Answer", **{self.output_name: (self.output_type, ...)})
        return self._reply_model

    def _read(self, instance: Any, raw: str) -> Reading:
        if self.is_model:
            return Reading(instance, raw)
        return Reading(getattr(instance, self.output_name), raw)

    def read(self, raw: str) -> Reading:
        """An answer read leniently: JSON first, then for choices the one choice the text
        names (a text naming two, "urgent or routine", is not read), then the type's own
        conversion; a reading that fails says why."""
        from solvers.text.reply import extract_json

        schema = self._schema()
        obj = extract_json(raw)
        if obj is not None and schema is not None:
            try:
                return self._read(schema.model_validate(obj), raw)
            except ValidationError:
                pass
        if self.is_model:
            return Reading(None, raw, f"not a valid {self.output_type.__name__}")
        text = str(obj.get(self.output_name, raw)) if isinstance(obj, dict) else raw
        if self.choices is not None:
            named = [c for c in self.choices if re.search(rf"(?<!\w){re.escape(str(c))}(?!\w)", text, re.I)]
            if len(named) == 1:
                return Reading(named[0], raw)
            why = "names none of" if not named else f"names {len(named)} of"
            return Reading(None, raw, f"the answer {why} the choices {list(self.choices)}")
        try:
            return Reading(self._convert(text.strip()), raw)
        except (TypeError, ValueError):
            return Reading(None, raw, f"cannot be read as {getattr(self.output_type, '__name__', self.output_type)}")

    def _convert(self, text: str) -> Any:
        if self.output_type is int:
            return int(float(text))
        if self.output_type is float:
            return float(text)
        return text

    def __repr__(self) -> str:
        return f"Predict({', '.join(self.inputs)} -> {self.output_name}, name={self.name!r})"


class PredictOp:
    """The op of one `Predict` call: its code line, documentation and what happened."""

    def __init__(self, module: Predict) -> None:
        self.module = module
        self.name = module.name
        self.doc = (f"asks the LLM: instruction, then the demos, then the input fields; the "
                    f"answer is read as {_type_name(module.output_type)} (None when it cannot be read)")
        self.messages: list[dict[str, str]] = []
        self.reading: Reading | None = None

    def code_line(self, argnames: Any, labels: Any) -> str:
        return f"llm_call_{self.name}({', '.join(f'{n}={v}' for n, v in zip(argnames, labels))})"

    def call_detail(self) -> str:
        """The rendered prompt, the raw answer and how it was read (bounded)."""
        if self.reading is None:
            return ""
        prompt = "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages)
        reading = (f"read as {self.reading.value!r}" if self.reading.problem == ""
                   else f"not read: {self.reading.problem}")
        tail = f"answer: {self.reading.raw.strip()[:300]!r}\n{reading}"
        room = max(DETAIL_CHARS - len(tail) - 10, 200)
        shown = prompt if len(prompt) <= room else prompt[: room // 3] + " [...] " + prompt[-(room * 2 // 3):]
        return f"prompt:\n{shown}\n{tail}"

    def __repr__(self) -> str:
        return f"<llm call {self.name}>"


def _choices(output: Any) -> list[Any] | None:
    if typing.get_origin(output) is Literal:
        return list(typing.get_args(output))
    if output is bool:
        return [True, False]
    return None


def _type_name(output: Any) -> str:
    choices = _choices(output)
    if choices is not None:
        return "one of " + ", ".join(map(str, choices))
    return getattr(output, "__name__", str(output))


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
