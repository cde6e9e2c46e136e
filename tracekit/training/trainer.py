"""`Trainer`: the training loop for a traced workflow and a `tk.Optimizer`.

    trainer = Trainer(agent, opt, metric, train=train_set, val=val_set, batch_size=8,
                      epochs=3, patience=2, run_dir="runs/agent", resume=True)
    result = trainer.fit()          # the workflow now holds the best parameters found
    print(result)                   # summary: scores before/after, best step, tokens, cost

Each step runs one minibatch through the workflow (in parallel, traced), scores every
example with the metric, aggregates the feedback of the whole minibatch into one
`backward` (bounded text, mean loss), takes one `optimizer.step()`, then scores the
validation set. A step that makes the validation score worse is reverted; the best
parameters are kept; training stops early after `patience` steps without improvement.
Every step is checkpointed atomically, so `resume=True` continues a killed run.

The metric is `metric(prediction, example)` and returns a score, **higher is better**
(pass `higher_is_better=False` for a loss-like metric), and/or text feedback:
a number, a str, a `(score, text)` pair, a dict `{"score", "feedback", "loss"}`, or a
`Score(value, text, loss)`; `loss` is an optional differentiable loss (lower is better,
e.g. a torch scalar) that gives tensor parameters real gradients.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit import arguments
from tracekit.context import no_trace
from tracekit.errors import FeedbackError, StateDictError, describe
from tracekit.feedback import Feedback, loss_to_float
from tracekit.llm.accounting import REPORT_FIELDS, Usage, process_scope
from tracekit.nodes import Node, short_repr
from tracekit.training import checkpoint as ckpt
from tracekit.training.budget import BudgetExhausted, RunBudget
from tracekit.training.executors import Executor, ThreadExecutor, get_executor
from tracekit.training.search import PoolSearch
from tracekit.training.strategies import Greedy, get_strategy


# --- metric results --------------------------------------------------------------------------
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
    call: Callable[[Callable[..., Any], Any], Any] | None = None
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


# --- feedback aggregation ----------------------------------------------------------------------
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


# --- results -----------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Scores of a dataset: the mean score and one `ExampleResult` per example, in order."""

    score: float | None
    results: list[ExampleResult]

    @property
    def errors(self) -> int:
        return sum(1 for r in self.results if r.error)


@dataclass
class TrainResult:
    """The summary of a run (also written to `summary.json` in the run directory)."""

    initial_score: float | None
    best_score: float | None
    final_score: float | None
    best_step: int
    steps: int
    stop_reason: str
    best_params: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    higher_is_better: bool = True
    run_dir: str | None = None
    strategy: str = "greedy"
    #: what was spent (metric_calls, llm_cost, seconds) and what is left of each set budget
    budget: dict[str, Any] = field(default_factory=dict)
    #: pool searches: the best candidate's lineage and the Pareto front (lineages)
    best_candidate: dict[str, Any] | None = None
    front: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (history left out: it is the run log)."""
        return {k: ckpt.jsonable(v) for k, v in self.__dict__.items() if k != "history"}

    def __str__(self) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        lines = [
            f"training: {self.steps} steps, stopped: {self.stop_reason}",
            f"  validation score ({direction}): {_fmt(self.initial_score)} before -> "
            f"{_fmt(self.best_score)} best (step {self.best_step}); last step {_fmt(self.final_score)}",
            f"  LLM: {self.llm_calls} calls, {self.prompt_tokens + self.completion_tokens} tokens "
            f"({self.prompt_tokens} prompt + {self.completion_tokens} completion), cost {self.cost:.4g}",
            f"  time: {self.seconds:.1f}s" + (f"; run directory {self.run_dir}" if self.run_dir else ""),
        ]
        if self.budget:
            spent = self.budget.get("spent", {})
            lines.append(f"  budget: {spent.get('metric_calls', 0)} metric calls spent"
                         + "".join(f"; {k} left {v:.4g}" for k, v in self.budget.get("left", {}).items()))
        if self.best_candidate is not None:
            lines.append(f"  search ({self.strategy}): best candidate {self.best_candidate['id']} "
                         f"(parents {self.best_candidate['parents']}); Pareto front "
                         f"{[c['id'] for c in self.front]}")
        lines.append("  best parameters:")
        for name, value in self.best_params.items():
            lines.append(f"    {name} = {short_repr(value, 100)}")
        return "\n".join(lines)


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.4g}"


# --- the trainer -------------------------------------------------------------------------------
class Trainer:
    """Trains a workflow's parameters with a `tk.Optimizer` on a dataset (see module doc).

    Arguments:
      workflow: the model (`tk.Module`) or any callable that returns a traced output.
      optimizer: a `tk.Optimizer` over the parameters to train.
      metric: `metric(prediction, example)` -> score (higher is better) and/or text.
      train, val: sequences of examples; `val=None` validates on the training set.
      call: `call(workflow, example)` runs one example (default: `default_call`).
      batch_size, epochs, max_steps: minibatch size; passes over `train`; step limit
        (with neither epochs nor max_steps, one epoch).
      higher_is_better: the metric's direction. error_score: the score of an example
        whose workflow or metric raised (its error becomes feedback).
      revert_on_worse: undo a step that lowers the validation score. patience: stop
        after this many steps without improving the best score by more than min_delta.
      executor: "thread" (default), "async", "serial", "process", "ray" or an `Executor`;
        max_concurrency: examples in flight. With out-of-process executors ("process",
        "ray") every phase runs on the workers: minibatches (traced, backward included),
        validation and the minibatch objective; parameters travel as state and traces
        come back as plain data (`tracekit.training.remote`; docs/distributed.md).
      batch_objective: when the optimizer has no `objective`, give it one during `fit`:
        True or "batch": the current minibatch's loss (mean of -score, untraced);
        "train": the whole training set's loss (steadier; for cheap workflows). With it
        Bayesian search tunes numbers, the demo solver compares demo subsets and the
        text solver tests its candidates. False leaves the optimizer as is.
      feedback_chars: bound on the aggregated text feedback of a minibatch.
      trace_examples: how many outputs (worst first) carry the trace to the optimizer
        (None: all); the text feedback and the loss always cover the whole minibatch.
      run_dir: where checkpoints, the JSONL log, best.json and summary.json go (None:
        no files). resume: continue from the checkpoint in run_dir when there is one.
      seed: seeds shuffling and Python/NumPy/torch RNGs. progress: show a tqdm bar.
      strategy: the search over candidates: "greedy" (default: one current state, a worse
        step is reverted), "pareto", "beam", "priority", or a Strategy object
        (`tracekit.training.strategies`). max_metric_calls, max_llm_cost, max_seconds:
        budgets; the run stops before passing one (see `tracekit.training.budget`).
    """

    def __init__(self, workflow: Callable[..., Any], optimizer: Any, metric: Callable[[Any, Any], Any],
                 train: Sequence[Any], val: Sequence[Any] | None = None, *,
                 call: Callable[[Callable[..., Any], Any], Any] | None = None,
                 batch_size: int = 8, epochs: int | None = None, max_steps: int | None = None,
                 higher_is_better: bool = True, error_score: float = 0.0,
                 revert_on_worse: bool = True, patience: int | None = None, min_delta: float = 0.0,
                 executor: Executor | str | None = "thread", max_concurrency: int = 8,
                 batch_objective: bool | str = True, feedback_chars: int = 2000,
                 trace_examples: int | None = 4, run_dir: str | Path | None = None,
                 resume: bool = False, seed: int = 0, progress: bool = True,
                 strategy: Any = "greedy", max_metric_calls: int | None = None,
                 max_llm_cost: float | None = None, max_seconds: float | None = None) -> None:
        if not callable(workflow):
            raise TypeError(f"workflow must be callable (a tk.Module or function), got {type(workflow).__name__}")
        if not callable(metric):
            raise TypeError("metric must be a callable metric(prediction, example) -> score and/or text")
        for attr in ("params", "names", "zero_feedback", "backward", "step", "state_dict"):
            if not hasattr(optimizer, attr):
                raise TypeError(f"optimizer must be a tk.Optimizer (missing {attr!r}), got {type(optimizer).__name__}")
        for name, data in (("train", train), ("val", val)):
            if data is not None and (isinstance(data, (str, bytes, dict))
                                     or not hasattr(data, "__iter__")):
                raise TypeError(f"{name} must be a list of examples, got {type(data).__name__}")
        arguments.function("call", call, "a callable call(workflow, example)", optional=True)
        arguments.count("batch_size", batch_size)
        for name, value in (("epochs", epochs), ("max_steps", max_steps), ("patience", patience),
                            ("trace_examples", trace_examples)):
            arguments.count(name, value, optional=True)
        arguments.count("max_concurrency", max_concurrency)
        arguments.count("feedback_chars", feedback_chars)
        arguments.count("seed", seed, minimum=0)
        arguments.number("error_score", error_score)
        arguments.number("min_delta", min_delta, minimum=0.0)
        for name, value in (("higher_is_better", higher_is_better), ("revert_on_worse", revert_on_worse),
                            ("resume", resume), ("progress", progress)):
            arguments.flag(name, value)
        arguments.path("run_dir", run_dir)
        self.train_set = list(train)
        if not self.train_set:
            raise ValueError("the training set is empty")
        self.val_set = list(val) if val is not None else None
        if self.val_set is not None and not self.val_set:
            raise ValueError("the validation set is empty; pass val=None to validate on the training set")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for name, value in (("epochs", epochs), ("max_steps", max_steps), ("patience", patience),
                            ("trace_examples", trace_examples)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        self.workflow = workflow
        self.optimizer = optimizer
        self.metric = metric
        self.call = call
        self.batch_size = batch_size
        self.epochs = epochs if epochs is not None or max_steps is not None else 1
        self.max_steps = max_steps
        self.higher_is_better = higher_is_better
        self.error_score = float(error_score)
        self.revert_on_worse = revert_on_worse
        self.patience = patience
        self.min_delta = float(min_delta)
        self.executor = get_executor(executor, max_concurrency)
        self.local_executor = self.executor if self.executor.in_process else ThreadExecutor(max_concurrency)
        self._remote: Any = None
        if not self.executor.in_process:  # every phase on the workers: tracekit.training.remote
            from tracekit.training.remote import RemoteRunner

            self._remote = RemoteRunner(self, self.executor)
        # executors built here from a name are closed after fit(); yours stay open
        self._owned = [e for e in {id(self.executor): self.executor, id(self.local_executor):
                                   self.local_executor}.values() if e is not executor]
        if batch_objective not in (True, False, "batch", "train"):
            raise ValueError(f"batch_objective must be True, False, 'batch' or 'train', got {batch_objective!r}")
        self.batch_objective = batch_objective
        self.feedback_chars = feedback_chars
        self.trace_examples = trace_examples
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.seed = seed
        self.progress = progress
        self.rng = random.Random(seed)
        self.history: list[dict[str, Any]] = []
        self._batch: list[tuple[int, Any]] = []
        self.budget = RunBudget(max_metric_calls, max_llm_cost, max_seconds)
        self._scope: Usage | None = None  # this process's LLM usage during the current step
        self.strategy = get_strategy(strategy)
        self.search = None if isinstance(self.strategy, Greedy) else PoolSearch(self, self.strategy)
        self._calls_at_step = 0

    # --- parameters ----------------------------------------------------------------------
    @property
    def named_params(self) -> list[tuple[str, Any]]:
        """(optimizer name, parameter) pairs of the parameters being trained."""
        return [(self.optimizer.names[id(p)], p) for p in self.optimizer.params]

    # --- evaluation --------------------------------------------------------------------------
    def _evaluator(self, traced: bool) -> Evaluate:
        return Evaluate(self.workflow, self.metric, self.call, self.error_score, traced)

    @staticmethod
    def _example_result(index: int, prediction: Any, score: float | None, text: str | None, loss: Any,
                        error: str | None) -> ExampleResult:
        """An untraced `ExampleResult` (from a worker process: `tracekit.training.remote`)."""
        return ExampleResult(index, prediction, score, text, loss, error, None)

    def evaluate(self, dataset: Sequence[Any] | None = None) -> EvalResult:
        """Score a dataset (default: the validation set) without recording graphs."""
        data = list(dataset) if dataset is not None else (self.val_set or self.train_set)
        if self._remote is not None:
            results = self._remote.evaluate(list(enumerate(data)))
            return EvalResult(_mean([r.score for r in results]), results)
        outcomes = self.executor.map(self._evaluator(False), list(enumerate(data)))
        return self._collect(outcomes)

    def _collect(self, outcomes: list[Any]) -> EvalResult:
        results: list[ExampleResult] = []
        for i, o in enumerate(outcomes):
            if o.ok:
                results.append(o.value)
            else:  # the evaluation itself failed (e.g. a worker died): still feedback
                message = f"evaluation failed: {type(o.error).__name__}: {o.error}"
                results.append(ExampleResult(i, None, self.error_score, message, None, message))
        return EvalResult(_mean([r.score for r in results]), results)

    def _evaluate_items(self, items: list[tuple[int, Any]]) -> EvalResult:
        """Score (index, example) pairs untraced, charged to the metric-call budget."""
        self.budget.charge_metric_calls(len(items))
        if self._remote is not None:  # on the workers, with the parameters as they are now
            results = self._remote.evaluate(list(items))
            result = EvalResult(_mean([r.score for r in results]), results)
        else:
            result = self._collect(self.executor.map(self._evaluator(False), list(items)))
        for r, (index, _) in zip(result.results, items):
            r.index = index
        return result

    def _run_batch(self, batch: list[tuple[int, Any]]) -> EvalResult:
        self.budget.charge_metric_calls(len(batch))
        outcomes = self.local_executor.map(self._evaluator(True), batch)
        result = self._collect(outcomes)
        for r, (index, _) in zip(result.results, batch):
            r.index = index
        return result

    def _batch_loss(self) -> float:
        """The objective given to the optimizer: the mean loss on the current minibatch."""
        items = list(enumerate(self.train_set)) if self.batch_objective == "train" else self._batch
        self.budget.charge_metric_calls(len(items))
        if self._remote is not None:
            results = self._remote.evaluate(items)
            result = EvalResult(_mean([r.score for r in results]), results)
        else:
            result = self._collect(self.local_executor.map(self._evaluator(False), items))
        if result.score is None:
            raise ValueError("the metric returned no score, so the minibatch has no loss")
        return -result.score if self.higher_is_better else result.score

    # --- comparisons -------------------------------------------------------------------------------
    def _improves(self, score: float | None, best: float | None) -> bool:
        if score is None:
            return False
        if best is None:
            return True
        return score > best + self.min_delta if self.higher_is_better else score < best - self.min_delta

    def _worse(self, score: float | None, best: float | None) -> bool:
        if score is None or best is None:
            return False
        return score < best if self.higher_is_better else score > best

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until the epochs or steps are done or early stopping; return the summary.
        The workflow ends with the best parameters found."""
        if self._remote is not None:
            self._remote.reset()  # ship the workflow as it is now
        state = self._start()
        set_objective = self.batch_objective is not False and getattr(self.optimizer, "objective", None) is None
        if set_objective:
            self.optimizer.objective = self._batch_loss
        bar = self._bar(state)
        try:
            while state["stop_reason"] is None:
                reason = self.budget.stop_before_step(self._first_step_calls())
                if reason:
                    state["stop_reason"] = reason
                    break
                self._calls_at_step = self.budget.metric_calls
                before = {k: state[k] for k in ("step", "epoch", "position", "order", "bad_steps")}
                mark = self.search.mark() if self.search is not None else None
                try:
                    with process_scope() as self._scope:  # every LLM call of this process during the step
                        taken = self._take_step(state)
                    if not taken:
                        break
                except BudgetExhausted:  # an evaluation would pass max_metric_calls: discard the step
                    state.update(before)
                    if self.search is not None:
                        self.search.rollback(mark)
                    ckpt.restore(self.named_params, state["best_params"])
                    state["stop_reason"] = self.budget.exhausted
                    break
                finally:
                    self._scope = None
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix())
        finally:
            if set_objective:
                self.optimizer.objective = None
            if bar is not None:
                bar.close()
            for owned in self._owned:
                owned.close()
        return self._finish(state)

    def _take_step(self, state: dict[str, Any]) -> bool:
        """One step (a merge when the pool search wants one); False when the data or the
        step limit is done."""
        if self.search is not None and self.search.merge_due():
            if self.max_steps is not None and state["step"] >= self.max_steps:
                state["stop_reason"] = f"max_steps={self.max_steps} reached"
                return False
            if self.search.merge(state):
                return True
        batch = self._next_batch(state)
        if batch is None:
            return False
        if self.search is not None:
            self.search.step(state, batch)
        else:
            self._step(state, batch)
        return True

    def _first_step_calls(self) -> int:
        """The fewest metric calls a step can take (the estimate before any step ran)."""
        batch = min(self.batch_size, len(self.train_set))
        if self.search is not None and self.strategy.screen:
            return 2 * batch
        return batch + len(self.val_set if self.val_set is not None else self.train_set)

    def _end_step(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        """Charge the step to the budgets, add what was spent to its record, and record it."""
        self.budget.end_step(self.budget.metric_calls - self._calls_at_step, record.get("cost", 0.0),
                             record.get("seconds", 0.0))
        record["spent_metric_calls"] = self.budget.metric_calls
        self._record(state, record)

    def _start(self) -> dict[str, Any]:
        saved = ckpt.load_checkpoint(self.run_dir) if (self.resume and self.run_dir) else None
        if saved is not None:
            return self._load(saved)
        ckpt.seed_everything(self.seed)
        self.rng = random.Random(self.seed)
        self.budget.load_state_dict({})
        first = len(self.val_set if self.val_set is not None else self.train_set)
        if self.budget.max_metric_calls is not None and self.budget.max_metric_calls < first:
            raise ValueError(f"max_metric_calls={self.budget.max_metric_calls} is less than one validation "
                             f"({first} examples): raise it, or validate on fewer examples (val=...)")
        start = time.perf_counter()
        with process_scope() as in_process:  # the workflows' LLM calls in this process
            initial = self._validate()
        if self.search is not None:
            self.search.start(initial)
        state: dict[str, Any] = {
            "step": 0, "epoch": 0, "position": 0, "order": self._shuffled(), "stop_reason": None,
            "best_score": initial.score, "best_step": 0, "bad_steps": 0,
            "best_params": ckpt.snapshot(self.named_params), "elapsed": 0.0,
        }
        record = {"step": 0, "epoch": 0, "train_score": None, "val_score": initial.score,
                  "best_score": initial.score, "improved": None, "reverted": False,
                  "val_errors": initial.errors, "params": ckpt.plain_values(self.named_params),
                  "changes": [], **in_process.report_fields(),
                  "seconds": time.perf_counter() - start, "time": time.time()}
        if self._remote is not None:  # the initial validation's LLM calls on the workers
            workers = self._remote.take_usage()
            record.update((in_process + workers).report_fields())
            record.update(worker_usage=workers.report_fields(), lost_examples=self._remote.take_lost())
        self.budget.llm_cost = record["cost"]  # the initial validation counts against max_llm_cost
        state["elapsed"] = record["seconds"]
        record["spent_metric_calls"] = self.budget.metric_calls
        if self.search is not None:
            record.update(strategy=self.strategy.name, candidate=self.search.best().lineage(), accepted=True)
        self.budget.seconds = record["seconds"]
        self.history = []
        if self.run_dir is not None:
            ckpt.write_log(self.run_dir, [])
        self._record(state, record)
        return state

    def _load(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Restore parameters, optimizer states, RNGs, history and the data position. Every
        part is checked first; a damaged checkpoint or one of another run raises
        StateDictError and leaves the parameters, the optimizer and the RNGs as they were."""
        where = f"checkpoint {self.run_dir / ckpt.CHECKPOINT_FILE}"
        ckpt.check_checkpoint(saved, where)
        kinds = {name: p.kind for name, p in self.named_params}
        if "kinds" in saved and saved["kinds"] != kinds:
            raise StateDictError(
                f"{where} was written by another run (training {saved['kinds']}; this run trains {kinds}); "
                f"use another run_dir, or resume=False to start over")
        if any(not 0 <= i < len(self.train_set) for i in saved["order"]) or \
                saved["position"] > len(saved["order"]):
            raise StateDictError(f"{where} refers to examples outside this training set "
                                 f"({len(self.train_set)} examples); it was written by another run")
        staged = ckpt.stage(self.named_params, saved["params"], f"{where} params", strict=True)
        best = ckpt.stage(self.named_params, saved["best_params"], f"{where} best_params", strict=True)
        rng = random.Random(self.seed)
        set_rngs = ckpt.stage_rng_state(rng, saved["rng"])
        set_pool = None
        if self.search is not None:
            set_pool = self.search.load(saved.get("pool"), where)  # checked before anything is set
        elif saved.get("pool") is not None:
            raise StateDictError(f"{where} holds a pool search ({saved['pool'].get('strategy')!r}); "
                                 f"resume it with the same strategy=, or use another run_dir")
        budget = RunBudget()
        budget.load_state_dict(saved.get("budget") or {"seconds": saved["elapsed"]})  # checked first
        if saved.get("optimizer"):
            self.optimizer.load_state_dict(saved["optimizer"])  # all or nothing
        for p, value in staged:
            p.write(value)  # validated when staged
        if set_pool is not None:
            set_pool()
        self.rng = rng
        for setter in set_rngs:
            setter()
        self.history = list(saved["history"])
        ckpt.write_log(self.run_dir, self.history)  # drop records written after the checkpoint
        state = {k: saved[k] for k in ("step", "epoch", "position", "order", "stop_reason", "best_score",
                                       "best_step", "bad_steps", "elapsed")}
        state["best_params"] = {name: value for (name, _), (_, value) in zip(self.named_params, best)}
        if state["stop_reason"] and not state["stop_reason"].startswith("early stopping"):
            state["stop_reason"] = None  # a step, epoch or budget limit: the new limits decide
        self.budget.load_state_dict(budget.state_dict())
        return state

    def _shuffled(self) -> list[int]:
        order = list(range(len(self.train_set)))
        self.rng.shuffle(order)
        return order

    def _next_batch(self, state: dict[str, Any]) -> list[tuple[int, Any]] | None:
        if self.max_steps is not None and state["step"] >= self.max_steps:
            state["stop_reason"] = f"max_steps={self.max_steps} reached"
            return None
        if state["position"] >= len(state["order"]):
            if self.epochs is not None and state["epoch"] + 1 >= self.epochs:
                state["stop_reason"] = f"{self.epochs} epoch(s) done"
                return None
            state["epoch"] += 1
            state["position"] = 0
            state["order"] = self._shuffled()
        indices = state["order"][state["position"]: state["position"] + self.batch_size]
        state["position"] += len(indices)
        return [(i, self.train_set[i]) for i in indices]

    def _validate(self) -> EvalResult:
        self.budget.charge_metric_calls(len(self.val_set if self.val_set is not None else self.train_set))
        result = self.evaluate(self.val_set if self.val_set is not None else self.train_set)
        if result.score is None:
            raise ValueError(
                "the metric returned text only, but validation needs a score: return a number, "
                "a (score, text) pair or tk.Score(value=..., text=...)")
        return result

    def _step(self, state: dict[str, Any], batch: list[tuple[int, Any]]) -> None:
        start = time.perf_counter()
        state["step"] += 1
        self._batch = [(i, ex) for i, ex in batch]
        run = None
        if self._remote is not None:  # on the workers; traces come back as plain pieces
            run = self._remote.run_batch(batch)
            train = EvalResult(_mean([r.score for r in run.results]), run.results)
        else:
            train = self._run_batch(batch)
        report = self._optimize(train, [ex for _, ex in batch], run)
        val = self._validate()
        improved = self._improves(val.score, state["best_score"])
        reverted = False
        if improved:
            state["best_score"], state["best_step"], state["bad_steps"] = val.score, state["step"], 0
            state["best_params"] = ckpt.snapshot(self.named_params)
        else:
            state["bad_steps"] += 1
            if self.revert_on_worse and self._worse(val.score, state["best_score"]):
                ckpt.restore(self.named_params, state["best_params"])
                reverted = True
            elif not self._worse(val.score, state["best_score"]):
                # as good as the best: keep the new values as the best ones
                state["best_params"] = ckpt.snapshot(self.named_params)
        if self.patience is not None and state["bad_steps"] >= self.patience:
            state["stop_reason"] = f"early stopping: no improvement in {self.patience} step(s)"
        usage = self.usage_of(report)
        remote: dict[str, Any] = {}
        if self._remote is not None:  # the workflows' LLM calls on the workers count too
            workers = self._remote.take_usage()
            lost = self._remote.take_lost()
            usage = {k: usage[k] + v for k, v in workers.report_fields().items()}
            remote = {"worker_usage": workers.report_fields(), "lost_examples": lost, "incomplete": lost > 0}
        seconds = time.perf_counter() - start
        state["elapsed"] += seconds
        record = {
            "step": state["step"], "epoch": state["epoch"], "train_score": train.score,
            "train_errors": train.errors, "val_score": val.score, "best_score": state["best_score"],
            "improved": improved, "reverted": reverted, "val_errors": val.errors,
            "params": ckpt.plain_values(self.named_params),
            "changes": [] if report is None else [
                {"name": c.name, "kind": c.kind, "solver": c.solver, "changed": c.changed,
                 "old": c.old, "new": c.new, "reason": c.reason} for c in report.changes],
            **usage, **remote, "seconds": seconds, "time": time.time(),
        }
        self._end_step(state, record)

    def usage_of(self, report: Any) -> dict[str, Any]:
        """LLM calls, tokens and cost of the step so far, as run-log fields: every backend
        call this process made during the step (the optimizer's and those of workflows run
        in-process, each counted once even when they share a backend), plus the calls the
        report counted outside any backend (see `_usage`). Outside a step: the report's."""
        if self._scope is None:
            return _usage(report)
        reported = Usage.from_report(report) if report is not None else Usage()
        extra = Usage()
        if report is not None and not (reported.calls or reported.prompt_tokens):
            fields = _usage(report)  # a plain callable's usage, which no backend recorded
            extra = Usage(**{key: fields[name] for key, name in REPORT_FIELDS.items()})
        return (self._scope + extra).report_fields()

    def _optimize(self, train: EvalResult, examples: list[Any], run: Any = None) -> Any:
        """One optimizer step from the whole minibatch's feedback; None when nothing was traced.
        `run`: the minibatch ran on workers (`remote.BatchRun`): its traces are plain pieces."""
        opt = self.optimizer
        results = train.results
        order = sorted(range(len(results)), key=lambda i: _sort_key(results[i], self.higher_is_better))
        if run is None:
            traced = [i for i in order if isinstance(results[i].output, Node)]
        else:
            traced = [i for i in order if run.pieces[i] is not None]
        if self.trace_examples is not None:
            traced = traced[: self.trace_examples]
        if not traced:
            return None
        text = aggregate_feedback(train.results, examples, self.feedback_chars, self.higher_is_better)
        losses = [_loss_of(r, self.higher_is_better) for r in train.results]
        losses = [x for x in losses if x is not None]
        loss = sum(losses[1:], losses[0]) / len(losses) if losses else None
        opt.zero_feedback()
        if run is None:
            each = [_loss_of(results[i], self.higher_is_better) for i in traced]
            per_output = [x if x is not None else math.inf for x in each] if loss is not None else None
            opt.backward([results[i].output for i in traced], Feedback(loss=loss, text=text, losses=per_output))
        else:
            self._remote.backward(run, traced, Feedback(loss=loss, text=text), len(losses))
        report = opt.step()
        opt.zero_feedback()  # free the graphs; the step is done
        return report

    def _record(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        """Append to the history and the run log, then checkpoint everything atomically."""
        self.history.append(ckpt.jsonable(record))
        if self.run_dir is None:
            return
        ckpt.append_log(self.run_dir, record)
        ckpt.save_checkpoint(self.run_dir, {
            **{k: state[k] for k in ("step", "epoch", "position", "order", "stop_reason", "best_score",
                                     "best_step", "bad_steps", "best_params", "elapsed")},
            "seed": self.seed,
            "kinds": {name: p.kind for name, p in self.named_params},
            "params": ckpt.snapshot(self.named_params),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.rng_state(self.rng),
            "history": self.history,
            "budget": self.budget.state_dict(),
            **({"pool": self.search.state_dict()} if self.search is not None else {}),
        })
        ckpt.write_json(self.run_dir / ckpt.BEST_FILE, state["best_params"])

    def _finish(self, state: dict[str, Any]) -> TrainResult:
        ckpt.restore(self.named_params, state["best_params"])
        state["stop_reason"] = state["stop_reason"] or "done"
        h = self.history
        result = TrainResult(
            initial_score=h[0]["val_score"] if h else None, best_score=state["best_score"],
            final_score=next((r["val_score"] for r in reversed(h) if r.get("val_score") is not None), None),
            best_step=state["best_step"],
            steps=state["step"], stop_reason=state["stop_reason"],
            best_params=ckpt.plain_values(self.named_params), history=list(h),
            llm_calls=sum(r.get("llm_calls", 0) for r in h),
            prompt_tokens=sum(r.get("prompt_tokens", 0) for r in h),
            completion_tokens=sum(r.get("completion_tokens", 0) for r in h),
            cost=sum(r.get("cost", 0.0) for r in h), seconds=state["elapsed"],
            higher_is_better=self.higher_is_better,
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            strategy=self.strategy.name,
            budget={"spent": self.budget.spent(), "left": self.budget.left()},
            **(self.search.summary() if self.search is not None else {}))
        if self.history:  # the run log's last record says why the run stopped
            self.history[-1]["stop_reason"] = state["stop_reason"]
            result.history[-1] = self.history[-1]
            if self.run_dir is not None:
                ckpt.write_log(self.run_dir, self.history)
        if self.run_dir is not None:
            saved = ckpt.load_checkpoint(self.run_dir) or {}
            saved.pop("format", None)
            saved["stop_reason"] = state["stop_reason"]
            ckpt.save_checkpoint(self.run_dir, saved)
            ckpt.write_json(self.run_dir / ckpt.SUMMARY_FILE, result.to_dict())
        if self.progress:
            print(result)
        return result

    # --- progress ---------------------------------------------------------------------------------
    def total_steps(self) -> int | None:
        """The number of steps the run will take without early stopping (None if unbounded)."""
        per_epoch = math.ceil(len(self.train_set) / self.batch_size)
        totals = [self.max_steps] if self.max_steps is not None else []
        if self.epochs is not None:
            totals.append(self.epochs * per_epoch)
        return min(totals) if totals else None

    def _bar(self, state: dict[str, Any]) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps(), initial=state["step"], desc="training", unit="step")
        bar.set_postfix_str(self._postfix())
        return bar

    def _postfix(self) -> str:
        if not self.history:
            return ""
        last = self.history[-1]
        parts = [f"val={_fmt(last['val_score'])}", f"best={_fmt(last['best_score'])}"]
        if last.get("train_score") is not None:
            parts.insert(0, f"train={_fmt(last['train_score'])}")
        tokens = sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in self.history)
        if tokens:
            parts.append(f"tokens={tokens}")
        parts.append(self.budget.postfix())
        return " ".join(parts)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _usage(report: Any) -> dict[str, Any]:
    """LLM calls, tokens and cost of a step report, as run-log fields. When the optimizer's
    `llm` has no accounting (a plain callable), the text solvers' own per-step usage (the
    `llm_usage` of their report info) is used."""
    if report is None:
        return Usage().report_fields()
    usage = Usage.from_report(report)
    if usage.calls or usage.prompt_tokens:
        return usage.report_fields()
    seen: set[str] = set()
    for c in report.changes:
        spent = (c.info or {}).get("llm_usage")
        if isinstance(spent, Usage) and c.solver not in seen:
            seen.add(c.solver)
            usage = usage + spent
    return usage.report_fields()


def _loss_of(result: Any, higher_is_better: bool) -> float | None:
    """One example's loss (lower is better): its metric's loss, else its score turned round."""
    if result.loss is not None:
        return result.loss
    if result.score is None:
        return None
    return -result.score if higher_is_better else result.score
