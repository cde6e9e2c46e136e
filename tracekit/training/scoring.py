"""What a metric says about one example, and how one example is run and scored.

`Score` and `as_score` normalize a metric's return value; `Evaluate` runs the workflow on
one `(index, example)` and scores it (picklable, so that executors can ship it) and returns
an `ExampleResult`; `default_call` is how an example reaches the workflow by default.
Used by `tracekit.training.trainer.Trainer` (and re-exported there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tracekit.context import no_trace
from tracekit.errors import FeedbackError, TracekitError, describe
from tracekit.feedback import Feedback, loss_to_float
from tracekit.nodes import Node, short_repr


@dataclass
class Score:
    """What a metric says about one prediction.

    `value`: the score (higher is better unless the Trainer says otherwise), None for
    text-only feedback. `text`: feedback for the LLM optimizer. `loss`: an optional
    differentiable loss (lower is better), e.g. a torch scalar, for gradient parameters.
    `scores`: the other objectives of a `Trainer(objectives=...)`, {name: number}
    (`value` is the first, primary objective).
    """

    value: float | None = None
    text: str | None = None
    loss: Any = None
    scores: dict[str, float] | None = None


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
                            f"got unknown keys {sorted(unknown)} (for several scores, declare them: "
                            f"Trainer(objectives={{'accuracy': 'max', 'tokens': 'min'}}))")
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


# --- several objectives (Trainer(objectives=...)) -------------------------------------------
class ObjectivesError(TracekitError, TypeError, ValueError):
    """A metric's return does not match the `objectives=` declared to the Trainer."""


#: what a metric dict may hold besides the declared objectives
FEEDBACK_KEYS = ("feedback", "text", "loss")


def objective_score(result: Any, names: Sequence[str]) -> Score:
    """A metric's return under `objectives=names` (the primary first) as a `Score` whose
    `value` is the primary objective and `scores` every objective: a dict holding each name
    (plus optional 'feedback'/'text'/'loss'), a `Score(value=primary, scores={...})`, or,
    with a single objective, any form `as_score` reads."""
    primary = names[0]
    if isinstance(result, Node):
        result = result.raw
    if isinstance(result, dict):
        unknown = [k for k in result if k not in names and k not in FEEDBACK_KEYS]
        if unknown:
            raise ObjectivesError(f"the metric returned unknown keys {sorted(map(str, unknown))}; under "
                                  f"objectives={list(names)} a metric dict holds those names plus optional "
                                  f"{list(FEEDBACK_KEYS)} (declare every score in objectives=)")
        text = result.get("feedback", result.get("text"))
        if text is not None and not isinstance(text, str):
            raise ObjectivesError(f"the metric's 'feedback' must be a str, got {type(text).__name__}")
        values = {k: result[k] for k in names if k in result}
        score = Score(None, text, result.get("loss"))
    else:
        score = as_score(result)
        values = dict(score.scores or {})
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ObjectivesError(f"the metric's tk.Score(scores=...) has unknown objectives {sorted(unknown)}; "
                                  f"objectives= declares {list(names)}")
        if score.value is not None:
            if primary in values and _objective_value(values[primary], primary) != score.value:
                raise ObjectivesError(f"the metric's tk.Score gives the primary objective {primary!r} twice "
                                      f"and differently: value={score.value} and scores[{primary!r}]="
                                      f"{values[primary]}; give it once")
            values[primary] = score.value
    missing = [k for k in names if values.get(k) is None]
    if missing:
        raise ObjectivesError(
            f"the metric returned no value for objective(s) {missing}; under objectives={list(names)} return "
            f"a dict with every name, e.g. {{{', '.join(f'{k!r}: ...' for k in names)}, 'feedback': '...'}}, "
            f"or tk.Score(value=<{primary}>, scores={{...}})")
    vector = {k: _objective_value(values[k], k) for k in names}
    return Score(vector[primary], score.text, score.loss, vector)


def _objective_value(value: Any, name: str) -> float:
    try:
        number = loss_to_float(value)
    except FeedbackError:
        raise ObjectivesError(f"objective {name!r} must be a number, the metric returned a "
                              f"{type(value).__name__}: {short_repr(value, 60)}") from None
    if math.isnan(number):
        raise ObjectivesError(f"objective {name!r} is NaN; the metric must return a number for every "
                              f"objective (use error_score= for failed examples)")
    return number


class ObjectiveMetric:
    """The user's metric under `objectives=`: its return read by `objective_score`. The
    first misuse is kept in `problem` (the Trainer raises it, since a raising metric
    otherwise only becomes per-example feedback)."""

    def __init__(self, metric: Callable[[Any, Any], Any], names: Sequence[str]) -> None:
        self.metric = metric
        self.names = tuple(names)
        self.problem: ObjectivesError | None = None
        self.__name__ = str(getattr(metric, "__name__", type(metric).__name__))
        self.__qualname__ = str(getattr(metric, "__qualname__", self.__name__))
        self.__wrapped__ = metric

    def __call__(self, prediction: Any, example: Any) -> Any:
        raw = self.metric(prediction, example)
        if _is_awaitable(raw):
            return self._convert_async(raw)
        return self._convert(raw)

    async def _convert_async(self, awaitable: Any) -> Score:
        return self._convert(await awaitable)

    def _convert(self, raw: Any) -> Score:
        try:
            return objective_score(raw, self.names)
        except ObjectivesError as exc:
            if self.problem is None:
                self.problem = exc
            raise


@dataclass
class ExampleResult:
    """One evaluated example: its traced output (training only), plain prediction, score,
    text feedback, optional loss, the error it raised (then score = `error_score`), and
    under `Trainer(objectives=...)` every objective's value (`scores`, the primary first)."""

    index: int
    prediction: Any = None
    score: float | None = None
    text: str | None = None
    loss: Any = None
    error: str | None = None
    output: Any = None
    scores: dict[str, float] | None = None


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
                             None, output if self.traced else None, score.scores)

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
