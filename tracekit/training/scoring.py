"""What a metric says about one example, and how one example is run and scored.

`Score` and `as_score` normalize a metric's return value; `Evaluate` runs the workflow on
one `(index, example)` and scores it (picklable, so that executors can ship it) and returns
an `ExampleResult`; `default_call` is how an example reaches the workflow by default.
Used by `tracekit.training.trainer.Trainer` (and re-exported there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracekit.context import no_trace
from tracekit.errors import FeedbackError, describe
from tracekit.feedback import Feedback, loss_to_float
from tracekit.nodes import Node, short_repr


@dataclass
class Score:
    """What a metric says about one prediction.

    `value`: the score (higher is better unless the Trainer says otherwise), None for
    text-only feedback. `text`: feedback for the LLM optimizer. `loss`: an optional
    differentiable loss (lower is better), e.g. a torch scalar, for gradient parameters.
    """

    value: float | None = None
    text: str | None = None
    loss: Any = None


def as_score(result: Any) -> Score:
    """Normalize a metric's return value (number, str, (score, text), dict, Score, Feedback)."""
    if isinstance(result, Score):
        return result
    if isinstance(result, Node):
        result = result.raw
    if isinstance(result, Feedback):
        loss_value = result.loss_value
        return Score(None if loss_value is None else -loss_value, result.text, result.loss)
    if isinstance(result, str):
        return Score(None, result)
    if isinstance(result, dict):
        unknown = set(result) - {"score", "feedback", "text", "loss"}
        if unknown:
            raise TypeError(f"a metric dict may hold 'score', 'feedback' (or 'text') and 'loss'; "
                            f"got unknown keys {sorted(unknown)}")
        value = result.get("score")
        return Score(None if value is None else _as_float(value, "score"),
                     result.get("feedback", result.get("text")), result.get("loss"))
    if isinstance(result, tuple) and len(result) == 2:
        value, text = result
        if text is not None and not isinstance(text, str):
            raise TypeError(f"a metric (score, text) pair needs text as a str, got {type(text).__name__}")
        return Score(None if value is None else _as_float(value, "score"), text)
    return Score(_as_float(result, "metric result"), None)


def _as_float(value: Any, what: str) -> float:
    try:
        return loss_to_float(value)
    except FeedbackError:
        raise TypeError(
            f"the metric must return a score (a number), a str (text feedback), a (score, text) "
            f"pair, a dict with 'score'/'feedback'/'loss', or tk.Score; the {what} was a "
            f"{type(value).__name__}: {short_repr(value, 60)}"
        ) from None


@dataclass
class ExampleResult:
    """One evaluated example: its traced output (training only), plain prediction, score,
    text feedback, optional loss, and the error it raised (then score = `error_score`)."""

    index: int
    prediction: Any = None
    score: float | None = None
    text: str | None = None
    loss: Any = None
    error: str | None = None
    output: Any = None


def default_call(workflow: Callable[..., Any], example: Any) -> Any:
    """How an example reaches the workflow by default: `example["input"]` for a dict with
    an "input" key, `example[0]` for an (input, target) pair, else the example itself."""
    if isinstance(example, dict) and "input" in example:
        return workflow(example["input"])
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return workflow(example[0])
    return workflow(example)


@dataclass
class Evaluate:
    """Runs the workflow on one `(index, example)` and scores it (picklable, for executors).

    With `traced=False` the workflow runs under `tk.no_trace()` (no graph is recorded).
    Returns an `ExampleResult`, or a coroutine of one for async workflows and metrics.
    """

    workflow: Callable[..., Any]
    metric: Callable[[Any, Any], Any]
    call: Callable[[Any, Any], Any] | None = None
    error_score: float = 0.0
    traced: bool = True

    def __call__(self, item: tuple[int, Any]) -> Any:
        index, example = item
        call = self.call or default_call
        try:
            if self.traced:
                out = call(self.workflow, example)
            else:
                with no_trace():
                    out = call(self.workflow, example)
        except Exception as exc:
            return self._failed(index, None, f"the workflow raised {describe(exc)}")
        if _is_awaitable(out):
            return self._finish_async(index, example, out)
        return self._score(index, example, out)

    async def _finish_async(self, index: int, example: Any, awaitable: Any) -> ExampleResult:
        try:
            if self.traced:
                out = await awaitable
            else:
                with no_trace():
                    out = await awaitable
        except Exception as exc:
            return self._failed(index, None, f"the workflow raised {describe(exc)}")
        result = self._score(index, example, out)
        if _is_awaitable(result):
            result = await result
        return result

    def _score(self, index: int, example: Any, out: Any) -> Any:
        output = out if isinstance(out, Node) else None
        if output is not None and output.is_error:
            return self._failed(index, output, f"the workflow raised {output.raw}")
        prediction = _plain(out)
        try:
            raw = self.metric(prediction, example)
        except Exception as exc:
            return self._failed(index, output, f"the metric raised {describe(exc)}",
                                prediction)
        if _is_awaitable(raw):
            return self._score_async(index, output, prediction, raw)
        return self._result(index, output, prediction, raw)

    async def _score_async(self, index: int, output: Any, prediction: Any, raw: Any) -> ExampleResult:
        try:
            value = await raw
        except Exception as exc:
            return self._failed(index, output, f"the metric raised {describe(exc)}", prediction)
        return self._result(index, output, prediction, value)

    def _result(self, index: int, output: Any, prediction: Any, raw: Any) -> ExampleResult:
        score = as_score(raw)
        return ExampleResult(index, prediction, score.value, score.text, score.loss,
                             None, output if self.traced else None)

    def _failed(self, index: int, output: Any, message: str, prediction: Any = None) -> ExampleResult:
        return ExampleResult(index, prediction, self.error_score, message, None, message,
                             output if self.traced else None)


def _is_awaitable(value: Any) -> bool:
    import inspect

    return inspect.isawaitable(value)


def _plain(value: Any) -> Any:
    """Node values unwrapped, also inside tuples, lists and dicts."""
    if isinstance(value, Node):
        return value.raw
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value



def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _loss_of(result: Any, higher_is_better: bool) -> Any:
    """One example's loss (lower is better): its metric's loss (a number or a differentiable
    tensor), else its score turned round; None without either."""
    if result.loss is not None:
        return result.loss
    if result.score is None:
        return None
    return -result.score if higher_is_better else result.score


def _plain_loss(loss: Any) -> float | None:
    """A minibatch loss as a float for the run log (None when it is not a finite number)."""
    try:
        value = loss_to_float(loss) if loss is not None else None
    except (FeedbackError, TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) else None
