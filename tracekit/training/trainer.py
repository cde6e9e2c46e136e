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

The pieces live in their own modules, and the names are re-exported here:
`tracekit.training.scoring` (Score, as_score, ExampleResult, Evaluate, default_call),
`.feedback_text` (aggregate_feedback), `.results` (EvalResult, TrainResult),
`.resume` (checkpoint records and resuming), `.callbacks` (Callback hooks).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracekit.feedback import Feedback
from tracekit.llm.accounting import Usage, process_scope
from tracekit.nodes import Node
from tracekit.training import checkpoint as ckpt
from tracekit.training import front as _front
from tracekit.training import pacing as _pacing
from tracekit.training import progress as _progress
from tracekit.training import resume as _resume
from tracekit.training import staged as _staged
from tracekit.training.budget import BudgetExhausted, RunBudget
from tracekit.training.callbacks import Callback, check_callbacks, notify
from tracekit.training.checks import check_arguments
from tracekit.training.executors import Executor, ThreadExecutor, get_executor
from tracekit.training.feedback_text import _input_of, _sort_key, aggregate_feedback
from tracekit.training.front import Front
from tracekit.training.objective import StepObjective
from tracekit.training.results import EvalResult, TrainResult, _usage, oriented_scores, step_usage
from tracekit.training.scoring import (
    Evaluate,
    ExampleResult,
    ObjectiveMetric,
    Score,
    _loss_of,
    _mean,
    _plain_loss,
    as_score,
    default_call,
)
from tracekit.training.search import PoolSearch
from tracekit.training.strategies import Greedy, get_strategy

__all__ = ["Callback", "EvalResult", "Evaluate", "ExampleResult", "Score", "TrainResult", "Trainer",
           "aggregate_feedback", "as_score", "default_call"]
_REEXPORTED = (_input_of, _usage)  # private names other modules and tests import from here


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
      higher_is_better: the metric's direction (default True; with `objectives`, the primary
        objective's). error_score: the score of an example whose workflow or metric raised
        (its error becomes feedback).
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
      seed: seeds shuffling, Python/NumPy/torch RNGs and Bayesian searches without a
        `search_seed`. progress: show a tqdm bar.
      strategy: the search over candidates: "greedy" (default: one current state, a worse
        step is reverted), "pareto", "beam", "priority", or a Strategy object
        (`tracekit.training.strategies`). max_metric_calls, max_llm_cost, max_seconds:
        budgets; the run stops before passing one (see `tracekit.training.budget`).
      callbacks: `tk.Callback` objects whose hooks run at the start and end of the run, after
        each validation and after each step's record (`tracekit.training.callbacks`), e.g.
        `MLflowCallback` (`tracekit.integrations.mlflow`); one that raises is warned about
        and the run goes on.
      validation: "full" validates every changed step on the whole set; "staged" scores it
        on growing slices first and stops at the first slice where it is worse than the best
        parameters on the same examples (successive halving; `tracekit.training.staged`);
        "auto" (default) stages under `max_metric_calls`. A step that changed nothing is
        not validated again.
      objectives: several scores, {name: "max" | "min"}, the first one primary: the metric
        returns a dict with every name (plus optional "feedback"/"loss") or
        `Score(value=<primary>, scores={...})`. The primary is the score (acceptance, early
        stopping, `best_score`); every full validation logs `val_scores` and the Pareto front
        of validated steps is kept (`trainer.front`, `TrainResult.front`;
        `tracekit.training.front`), with every strategy and executor (a pool search also
        keeps its own front over examples).
    """

    def __init__(self, workflow: Callable[..., Any], optimizer: Any, metric: Callable[[Any, Any], Any],
                 train: Sequence[Any], val: Sequence[Any] | None = None, *,
                 call: Callable[[Any, Any], Any] | None = None,
                 batch_size: int = 8, epochs: int | None = None, max_steps: int | None = None,
                 higher_is_better: bool | None = None, error_score: float = 0.0,
                 revert_on_worse: bool = True, patience: int | None = None, min_delta: float = 0.0,
                 executor: Executor | str | None = "thread", max_concurrency: int = 8,
                 batch_objective: bool | str = True, feedback_chars: int = 2000,
                 trace_examples: int | None = 4, run_dir: str | Path | None = None,
                 resume: bool = False, seed: int = 0, progress: bool = True,
                 strategy: Any = "greedy", max_metric_calls: int | None = None,
                 max_llm_cost: float | None = None, max_seconds: float | None = None,
                 callbacks: Sequence[Callback] | None = None, validation: str = "auto",
                 objectives: Mapping[str, str] | None = None) -> None:
        check_arguments(workflow=workflow, optimizer=optimizer, metric=metric, train=train, val=val,
                        call=call, batch_size=batch_size, epochs=epochs, max_steps=max_steps,
                        patience=patience, trace_examples=trace_examples, max_concurrency=max_concurrency,
                        feedback_chars=feedback_chars, seed=seed, error_score=error_score,
                        min_delta=min_delta, higher_is_better=True if higher_is_better is None else higher_is_better,
                        revert_on_worse=revert_on_worse, resume=resume, progress=progress,
                        run_dir=run_dir, batch_objective=batch_objective)
        self.train_set = list(train)
        if not self.train_set:
            raise ValueError("the training set is empty")
        self.val_set = list(val) if val is not None else None
        if self.val_set is not None and not self.val_set:
            raise ValueError("the validation set is empty; pass val=None to validate on the training set")
        self.workflow = workflow
        self.optimizer = optimizer
        # objectives=: several scores, the first primary (it sets higher_is_better; tracekit.training.front)
        self.objectives, self.higher_is_better = _front.declare(objectives, higher_is_better)
        self.metric = metric if self.objectives is None else ObjectiveMetric(metric, self.objectives.names)
        self.front: Front | None = None if self.objectives is None else Front(self.objectives)
        self.call = call
        self.batch_size = batch_size
        self.epochs = epochs if epochs is not None or max_steps is not None else 1
        self.max_steps = max_steps
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
        self.callbacks: list[Callback] = check_callbacks(callbacks)
        self.callback_errors: list[str] = []  # what raising callbacks said (`tracekit.training.callbacks`)
        self.state: dict[str, Any] | None = None  # the run's state during fit(): step, best_score, ...
        self._step_loss: float | None = None  # the minibatch's mean loss in the current step
        if validation not in _staged.MODES:
            raise ValueError(f"validation must be one of {list(_staged.MODES)}, got {validation!r}")
        self.validation = validation
        self.objective: StepObjective | None = None  # the memoized minibatch objective during fit()

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
                        error: str | None, scores: dict[str, float] | None = None) -> ExampleResult:
        """An untraced `ExampleResult` (from a worker process: `tracekit.training.remote`)."""
        return ExampleResult(index, prediction, score, text, loss, error, None, scores)

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
        self.state = None
        notify(self, "on_run_start")
        try:
            return self._fit()
        except BaseException as exc:
            notify(self, "on_run_failed", exc)
            raise

    def _fit(self) -> TrainResult:
        if self._remote is not None:
            self._remote.reset()  # ship the workflow as it is now
        self._seed_searches()
        state = self.state = self._start()
        set_objective = self.batch_objective is not False and getattr(self.optimizer, "objective", None) is None
        if set_objective:
            self.objective = StepObjective(self._batch_loss, lambda: self.named_params)
            self.optimizer.objective = self.objective
        bar = self._bar(state)
        try:
            while state["stop_reason"] is None:
                reason = self.budget.stop_before_step(_pacing.first_step_calls(self), _pacing.smallest_step_calls(self))
                if reason:
                    state["stop_reason"] = reason
                    break
                self._calls_at_step, self._step_loss = self.budget.metric_calls, None
                before = {k: state[k] for k in ("step", "epoch", "position", "order", "bad_steps")}
                mark = self.search.mark() if self.search is not None else None
                try:
                    with process_scope() as self._scope:  # every LLM call of this process during the step
                        taken = self._take_step(state)
                    if not taken:
                        break
                except BudgetExhausted:  # an evaluation would pass max_metric_calls: discard the step
                    state.update(before)
                    if self.search is not None and mark is not None:
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
                self.optimizer.objective = self.objective = None
            if bar is not None:
                bar.close()
            for owned in self._owned:
                owned.close()
        return self._finish(state)

    def _seed_searches(self) -> None:
        """A Bayesian search without a seed of its own (`search_seed`) follows the Trainer's
        `seed`, so that runs with different seeds are different runs (the default seed 0
        gives the default search seed 0)."""
        for group in getattr(self.optimizer, "param_groups", []):
            group.setdefault("search_seed", self.seed)

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

    def objective_knows(self, train: EvalResult) -> None:
        """Start the step's objective memo with the minibatch just scored: the current values'
        loss on it (`tracekit.training.objective`); the "train" objective is not seeded."""
        if self.objective is None:
            return
        known = None
        if self.batch_objective != "train" and train.score is not None:
            known = -train.score if self.higher_is_better else train.score
        self.objective.start_step(known, _pacing.trial_allowance(self))

    def _end_step(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        """Charge the step to the budgets, add what was spent to its record, and record it."""
        self.budget.end_step(self.budget.metric_calls - self._calls_at_step, record.get("cost", 0.0),
                             record.get("seconds", 0.0))
        record["spent_metric_calls"] = self.budget.metric_calls
        if self._step_loss is not None and "train_loss" not in record:
            record["train_loss"] = self._step_loss  # the minibatch's mean loss (lower is better)
        self._record(state, record)

    def _start(self) -> dict[str, Any]:
        """The run's first state: the checkpoint's when resuming (`_load`), else a fresh start
        whose initial validation is recorded as step 0 (`tracekit.training.resume.start`)."""
        return _resume.start(self)

    def _load(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Restore parameters, optimizer states, RNGs, history and the data position from a
        checkpoint; every part is checked first (`tracekit.training.resume.load`)."""
        return _resume.load(self, saved)

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

    @property
    def validation_set(self) -> list[Any]:
        """What a step is validated on: `val`, or the training set without one."""
        return self.val_set if self.val_set is not None else self.train_set

    def _validate(self) -> EvalResult:
        self.budget.charge_metric_calls(len(self.validation_set))
        result = self.evaluate(self.validation_set)
        if result.score is None:
            raise ValueError(
                "the metric returned text only, but validation needs a score: return a number, "
                "a (score, text) pair or tk.Score(value=..., text=...)")
        notify(self, "on_validation", self.state["step"] if self.state is not None else 0, result)
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
        self.objective_knows(train)
        report = self._optimize(train, [ex for _, ex in batch], run)
        val, screen = _staged.validate_step(self, state, report)
        val_scores = _front.observe(self, state["step"], val)  # objectives=: the means; the front
        improved = val is not None and self._improves(val.score, state["best_score"])
        reverted = False
        if val is None:  # nothing changed, or it lost a slice of the validation set
            state["bad_steps"] += 1
            if screen is not None and "rejected" in screen:
                ckpt.restore(self.named_params, state["best_params"])
                reverted = True
        elif improved:
            state["best_score"], state["best_step"], state["bad_steps"] = val.score, state["step"], 0
            state["best_params"] = ckpt.snapshot(self.named_params)
            state["best_val"] = oriented_scores(self, val)
        else:
            state["bad_steps"] += 1
            if self.revert_on_worse and self._worse(val.score, state["best_score"]):
                ckpt.restore(self.named_params, state["best_params"])
                reverted = True
            elif not self._worse(val.score, state["best_score"]):
                # as good as the best: keep the new values as the best ones
                state["best_params"] = ckpt.snapshot(self.named_params)
                state["best_val"] = oriented_scores(self, val)
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
            "train_errors": train.errors, "val_score": _staged.score_after(val, screen, state),
            "best_score": state["best_score"], "improved": improved, "reverted": reverted,
            "val_errors": 0 if val is None else val.errors, **({"screen": screen} if screen else {}),
            **({"val_scores": val_scores} if val_scores is not None else {}),
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
        return step_usage(report, self._scope)

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
        if any(r.loss is not None for r in results):  # the metric gave losses: log their mean
            self._step_loss = _plain_loss(loss)
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
        """Append to the history and the run log, checkpoint everything atomically, then
        tell the callbacks (`on_step_end`, with the record as the run log has it)."""
        _resume.record_step(self, state, record)
        notify(self, "on_step_end", self.history[-1])

    def _finish(self, state: dict[str, Any]) -> TrainResult:
        ckpt.restore(self.named_params, state["best_params"])
        state["stop_reason"] = state["stop_reason"] or "done"
        result = _resume.finish(self, state)  # the summary; the run log says why the run stopped
        notify(self, "on_run_end", result)
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(str(result))
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
        return _progress.bar(self, state)

    def _postfix(self) -> str:
        return _progress.postfix(self)
