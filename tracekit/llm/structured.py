"""Turning replies into validated pydantic instances: constrain, parse, repair, re-ask.

`StructuredAttempts` holds the state of one structured call and is driven by the backend's
sync or async loop, so both share one implementation. The order is fixed: ask (with the
schema-constrained `response_format` the backend supports), refuse a cut-off reply
(`solvers.text.completeness.cut_off`; the backend then gives the next attempt more room),
validate with pydantic, try one repair of malformed JSON's syntax (`json_repair`, not
schema-guided), and otherwise re-ask with the problem named — at most `max_reasks` times —
before raising `StructuredOutputError`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from solvers.text.completeness import cut_off

from .errors import StructuredOutputError

StructuredMode = Literal["json_schema", "json_object_schema", "json_object", "prompt"]
#: modes whose server constrains generation to the schema (llama.cpp's grammar): a caller
#: whose messages describe the reply's form need not send the schema as text too
ENFORCED_MODES = ("json_object_schema",)
STRUCTURED_MODES: tuple[StructuredMode, ...] = (
    "json_schema",
    "json_object_schema",
    "json_object",
    "prompt",
)

ModelT = TypeVar("ModelT", bound=BaseModel)


def json_schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a pydantic model (raises a clear TypeError for anything else)."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(
            f"structured() needs a pydantic model class as `schema`, got {schema!r}. "
            f"Define `class Answer(pydantic.BaseModel): ...` and pass `Answer`."
        )
    return schema.model_json_schema()


def response_format(mode: StructuredMode, schema: type[BaseModel]) -> dict[str, Any] | None:
    """The `response_format` request field for a structured mode (None for prompt-only)."""
    if mode == "json_schema":
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "reply"
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": json_schema_of(schema), "strict": False},
        }
    if mode == "json_object_schema":  # llama.cpp's server: grammar-constrained JSON
        return {"type": "json_object", "schema": json_schema_of(schema)}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _for_reading(node: Any) -> Any:
    """The schema as the model reads it: without generated "title" strings (noise for
    small models) and without "pattern" regexes, which constrain generation through the
    server's grammar and can be long (tracekit's text optimizer builds them)."""
    if isinstance(node, dict):
        return {k: _for_reading(v) for k, v in node.items()
                if not (k in ("title", "pattern") and isinstance(v, str))}
    if isinstance(node, list):
        return [_for_reading(v) for v in node]
    return node


def instruction(schema: type[BaseModel]) -> str:
    """The text that asks for a JSON reply matching `schema`."""
    compact = json.dumps(_for_reading(json_schema_of(schema)), separators=(",", ":"))
    return f"Reply with only a JSON object that matches this JSON schema: {compact}"


def with_instruction(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Append `text` to the last user message (small models ignore system prompts)."""
    messages = [dict(m) for m in messages]
    last = messages[-1] if messages else None
    if last is not None and last.get("role") == "user" and isinstance(last.get("content"), str):
        last["content"] = f"{last['content']}\n\n{text}"
    else:
        messages.append({"role": "user", "content": text})
    return messages


def _summarize(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item.get("loc", ())) or "(root)"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_reply(reply: str, schema: type[ModelT]) -> tuple[ModelT | None, str]:
    """Validate `reply` as `schema`, with one JSON repair of its syntax (quotes, commas,
    fences; not of types or missing fields); returns (instance, problem).

    A cut-off reply (`solvers.text.completeness.cut_off`: finish_reason "length", or JSON
    that never closes) is refused before any repair, which would complete the cut value.
    """
    why = cut_off(reply)
    if why:
        return None, why
    try:
        return schema.model_validate_json(reply), ""
    except ValidationError as error:
        first_problem = _summarize(error)
    try:
        json.loads(reply)
        return None, first_problem  # well-formed JSON that does not validate: nothing to repair
    except (ValueError, RecursionError):
        pass
    from json_repair import repair_json  # imported on first need; pure Python

    try:  # syntax only: a schema-guided repair would coerce wrong types (0 -> "0") and
        # fill missing fields, hiding exactly what validation must refuse
        repaired = repair_json(reply, return_objects=True)
    except Exception:
        repaired = ""
    if repaired in ("", None):
        return None, f"the reply contains no JSON ({first_problem})"
    try:
        return schema.model_validate(repaired), ""
    except ValidationError as error:
        return None, _summarize(error)


class StructuredAttempts(Generic[ModelT]):
    """State of one structured call: the messages to send next and the attempts so far."""

    def __init__(
        self,
        messages: list[dict[str, Any]],
        schema: type[ModelT],
        *,
        max_reasks: int,
        backend_name: str,
        instruct: bool = True,
    ) -> None:
        json_schema_of(schema)  # fail fast on a non-model
        if max_reasks < 0:
            raise ValueError(f"max_reasks must be >= 0, got {max_reasks}")
        self.schema = schema
        self.max_reasks = max_reasks
        self.backend_name = backend_name
        # the schema as text, unless the caller described the form and the server enforces it
        self.messages = with_instruction(messages, instruction(schema)) if instruct else list(messages)
        self.attempts: list[tuple[str, str]] = []
        self.last_cut = False  # the last reply was cut off: the next one gets more room

    @property
    def exhausted(self) -> bool:
        return len(self.attempts) > self.max_reasks

    def take(self, reply: str) -> ModelT | None:
        """Validate one reply; on failure, prepare the re-ask messages and return None."""
        instance, problem = parse_reply(reply, self.schema)
        if instance is not None:
            return instance
        self.last_cut = bool(cut_off(reply))
        self.attempts.append((reply, problem))
        self.messages = self.messages + [
            {"role": "assistant", "content": reply},
            {
                "role": "user",
                "content": f"That reply is not valid: {problem}. "
                + instruction(self.schema),
            },
        ]
        return None

    def error(self) -> StructuredOutputError:
        return StructuredOutputError(self.schema, self.attempts, self.backend_name)
