"""tracekit: make whole AI workflows trainable.

Importing tracekit is cheap: heavy pieces (torch, openai, cvxpy) load on first use
through the lazy attribute table below.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means "the module itself"
_LAZY: dict[str, tuple[str, str | None]] = {
    # tracing core
    "Node": ("tracekit.nodes", "Node"),
    "ParameterNode": ("tracekit.nodes", "ParameterNode"),
    "MessageNode": ("tracekit.nodes", "MessageNode"),
    "ExceptionNode": ("tracekit.nodes", "ExceptionNode"),
    "param": ("tracekit.nodes", "param"),
    "node": ("tracekit.nodes", "node"),
    "TracekitError": ("tracekit.errors", "TracekitError"),
    "InvalidValueError": ("tracekit.errors", "InvalidValueError"),
    "InvalidOptionError": ("tracekit.errors", "InvalidOptionError"),
    "StateDictError": ("tracekit.errors", "StateDictError"),
    "DamagedFileError": ("tracekit.errors", "DamagedFileError"),
    "MissingSolverError": ("tracekit.errors", "MissingSolverError"),
    "bundle": ("tracekit.bundled", "bundle"),
    "BundledFunction": ("tracekit.bundled", "BundledFunction"),
    "no_trace": ("tracekit.context", "no_trace"),
    "Module": ("tracekit.module", "Module"),
    "model": ("tracekit.module", "model"),
    "Feedback": ("tracekit.feedback", "Feedback"),
    "backward": ("tracekit.feedback", "backward"),
    "Subgraph": ("tracekit.graph", "Subgraph"),
    "subgraph": ("tracekit.graph", "subgraph"),
    "to_networkx": ("tracekit.graph", "to_networkx"),
    "Optimizer": ("tracekit.optimizer", "Optimizer"),
    "StepReport": ("tracekit.report", "StepReport"),
    "register_solver": ("tracekit.seam", "register_solver"),
    # constrained and bilevel problems
    "minimize": ("tracekit.problems", "minimize"),
    "bilevel": ("tracekit.problems", "bilevel"),
    "Ineq": ("tracekit.problems", "Ineq"),
    "Eq": ("tracekit.problems", "Eq"),
    "OptimizeResult": ("tracekit.problems", "OptimizeResult"),
    # solver nodes inside a workflow
    "argmin": ("tracekit.argmin_node", "argmin"),
    "Predict": ("tracekit.predict", "Predict"),
    "ArgminNode": ("tracekit.argmin_node", "ArgminNode"),
    "SolveError": ("tracekit.errors", "SolveError"),
    "InfeasibleError": ("tracekit.errors", "InfeasibleError"),
    "UnboundedError": ("tracekit.errors", "UnboundedError"),
    "NotConvergedError": ("tracekit.errors", "NotConvergedError"),
    # training
    "Trainer": ("tracekit.training", "Trainer"),
    "TrainResult": ("tracekit.training", "TrainResult"),
    "Score": ("tracekit.training", "Score"),
    "Executor": ("tracekit.training.executors", "Executor"),
    "ThreadExecutor": ("tracekit.training.executors", "ThreadExecutor"),
    "AsyncExecutor": ("tracekit.training.executors", "AsyncExecutor"),
    "SerialExecutor": ("tracekit.training.executors", "SerialExecutor"),
    "RayExecutor": ("tracekit.training.executors", "RayExecutor"),
    "ProcessExecutor": ("tracekit.training.executors", "ProcessExecutor"),
    "training": ("tracekit.training", None),
    # pictures
    "render": ("tracekit.pictures.graph_picture", "render"),
    "plot_run": ("tracekit.pictures.run_plot", "plot_run"),
    # LLM layer (a subpackage)
    "llm": ("tracekit.llm", None),
    # the sandbox for proposed code (a subpackage)
    "sandbox": ("tracekit.sandbox", None),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Load public names on first access so that `import tracekit` stays fast."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tracekit' has no attribute {name!r}") from None
    from importlib import import_module  # local: the namespace exposes no importlib

    module = import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

