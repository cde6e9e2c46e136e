"""Callbacks: your code at fixed points of `Trainer.fit`, for experiment tracking
(`tracekit.integrations.mlflow.MLflowCallback`, W&B, TensorBoard), printing or alerts.

    class Printer(tk.Callback):
        def on_step_end(self, trainer, record):
            print(record["step"], record["val_score"])

    Trainer(agent, opt, metric, train=train, callbacks=[Printer()]).fit()

The hooks, in the order a run calls them (each gets the `Trainer` first):

    on_run_start(trainer)                  fit() begins: before the initial validation, or
                                           before the checkpoint of a resumed run is loaded
    on_validation(trainer, step, result)   after each validation (step 0: the initial one);
                                           `result` is an `EvalResult` (score, per-example)
    on_step_end(trainer, record)           after each step's record is written (step 0: the
                                           initial validation's); pool-search steps too
    on_run_end(trainer, result)            fit() is done: the workflow holds the best values,
                                           the run directory holds summary.json
    on_run_failed(trainer, error)          fit() raised (then no on_run_end); error re-raised

`record` is the step's run-log record, JSON-ready (the same dict as a line of `log.jsonl`:
step, train_score, val_score, best_score, improved, reverted, params, changes, llm_calls,
prompt_tokens, completion_tokens, cost, spent_metric_calls, seconds, ...); treat it as
read-only. A validation of a step that a budget then discards is reported by
`on_validation`, but the step has no record.

A callback that raises does not stop the run: the Trainer warns (`CallbackWarning`, naming
the callback, the hook and the error), appends the message to `trainer.callback_errors`,
and goes on; the other callbacks still run. KeyboardInterrupt and SystemExit propagate.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from tracekit.errors import describe
from tracekit.report import LINE_WIDTH, change_line
from tracekit.training.results import EvalResult, TrainResult

#: the trainer's type, named in annotations only (the trainer imports this module)
Trainer = Any

HOOKS = ("on_run_start", "on_validation", "on_step_end", "on_run_end", "on_run_failed")


class CallbackWarning(RuntimeWarning):
    """A callback raised; the run went on without it for that hook."""


class Callback:
    """Base class of Trainer callbacks: override the hooks you need; each does nothing here.
    See the module doc for when each hook is called and what it receives."""

    def on_run_start(self, trainer: Trainer) -> None:
        """`fit()` begins (before the initial validation, or before a checkpoint is loaded)."""

    def on_validation(self, trainer: Trainer, step: int, result: EvalResult) -> None:
        """A validation ended: `result.score` and `result.results` (one per example)."""

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """A step's run-log record was written (and checkpointed); step 0 is the initial
        validation's record."""

    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        """`fit()` is done; `result` is what it returns."""

    def on_run_failed(self, trainer: Trainer, error: BaseException) -> None:
        """`fit()` raised `error` (it is raised again after the callbacks)."""


def check_callbacks(callbacks: Iterable[Any] | None) -> list[Any]:
    """The callbacks as a list; TypeError for something that has none of the hooks."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of tk.Callback objects, got {type(callbacks).__name__}")
    out = list(callbacks)
    for cb in out:
        if not isinstance(cb, Callback) and not any(callable(getattr(cb, h, None)) for h in HOOKS):
            raise TypeError(f"a callback must be a tk.Callback (or have one of its methods {', '.join(HOOKS)}), "
                            f"got {type(cb).__name__}")
    return out


def notify(trainer: Trainer, hook: str, *args: Any) -> None:
    """Call `hook` on each of the trainer's callbacks; one that raises is reported (a
    `CallbackWarning` and `trainer.callback_errors`) and the run goes on."""
    for cb in trainer.callbacks:
        method = getattr(cb, hook, None)
        if method is None:
            continue
        try:
            method(trainer, *args)
        except Exception as exc:
            message = (f"callback {type(cb).__name__}.{hook} raised {describe(exc)}; "
                       f"the run goes on without it for this call")
            trainer.callback_errors.append(message)
            warnings.warn(message, CallbackWarning, stacklevel=2)


class StepPrinter(Callback):
    """Prints one line per step (scores, tokens, cost) and one per parameter that changed
    (`name: old -> new (solver) — short reason`), through `tqdm.write` so that the lines
    do not cut through the progress bar. `all_params=True` also prints the kept ones."""

    def __init__(self, all_params: bool = False, width: int = LINE_WIDTH) -> None:
        self.all_params = all_params
        self.width = width

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        for line in step_lines(record, self.all_params, self.width):
            tqdm.write(line)


def step_lines(record: dict[str, Any], all_params: bool = False, width: int = LINE_WIDTH) -> list[str]:
    """A run-log record as readable lines: the step's scores, then one line per changed
    parameter (every parameter with `all_params`)."""

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    parts = [f"step {record.get('step')}:"]
    if record.get("train_score") is not None:
        parts.append(f"train {fmt(record['train_score'])},")
    parts.append(f"val {fmt(record.get('val_score'))}, best {fmt(record.get('best_score'))}")
    if record.get("reverted"):
        parts.append("(reverted)" if record.get("accepted") is not False else "(rejected)")
    elif record.get("improved"):
        parts.append("(improved)")
    tokens = record.get("prompt_tokens", 0) + record.get("completion_tokens", 0)
    if tokens or record.get("llm_calls"):
        parts.append(f"; LLM calls {record.get('llm_calls', 0)}, tokens {tokens}")
    if record.get("cost"):
        parts.append(f", cost {record['cost']:.4g}")
    lines = [" ".join(parts).replace(" ;", ";").replace(" ,", ",")]
    for c in record.get("changes") or []:
        if not (all_params or c.get("changed")):
            continue
        if "old" not in c:  # a pool-search merge: the value comes from a candidate
            lines.append(f"  {c.get('name')}: from candidate {c.get('from')} ({c.get('solver')})")
        else:
            lines.append(change_line(str(c.get("name")), str(c.get("old", "")), str(c.get("new", "")),
                                     str(c.get("solver", "")), bool(c.get("changed")),
                                     str(c.get("reason") or ""), width))
    return lines
