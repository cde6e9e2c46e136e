"""Training a whole workflow: the `Trainer` loop, search strategies over a candidate pool,
budgets, executors, checkpoints and run logs.

    from tracekit.training import Trainer       # also `tk.Trainer`
    result = Trainer(agent, opt, metric, train=train, val=val, run_dir="runs/a").fit()
    Trainer(..., callbacks=[StepPrinter(), MLflowCallback("exp")])   # tracekit.integrations.mlflow

See docs/training.md.
"""

from __future__ import annotations

from tracekit.training.budget import RunBudget
from tracekit.training.callbacks import Callback, CallbackWarning, StepPrinter
from tracekit.training.checkpoint import load_checkpoint, read_log
from tracekit.training.executors import (
    AsyncExecutor,
    Executor,
    Outcome,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    ThreadExecutor,
    get_executor,
)
from tracekit.training.pool import Candidate, Pool
from tracekit.training.strategies import Beam, Greedy, Pareto, Priority, Strategy
from tracekit.training.trainer import (
    EvalResult,
    ExampleResult,
    Score,
    Trainer,
    TrainResult,
    aggregate_feedback,
    as_score,
)

__all__ = [
    "AsyncExecutor",
    "Beam",
    "Callback",
    "CallbackWarning",
    "RunBudget",
    "StepPrinter",
    "Candidate",
    "Greedy",
    "Pareto",
    "Pool",
    "Priority",
    "Strategy",
    "EvalResult",
    "ExampleResult",
    "Executor",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "Score",
    "SerialExecutor",
    "ThreadExecutor",
    "TrainResult",
    "Trainer",
    "aggregate_feedback",
    "as_score",
    "get_executor",
    "load_checkpoint",
    "read_log",
]
