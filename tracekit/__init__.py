"""tracekit: make whole AI workflows trainable.

Importing tracekit is cheap: heavy pieces (torch, openai, cvxpy) load on first use
through the lazy attribute table below. Type checkers read the same names from the
`TYPE_CHECKING` imports (each name with its real type; the package ships `py.typed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    "Callback": ("tracekit.training.callbacks", "Callback"),
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

if TYPE_CHECKING:
    # What type checkers see: the same names as _LAZY (tests/test_typing.py checks that),
    # imported for real. At run time nothing here is imported; __getattr__ loads each name.
    # mypy sees no __getattr__, so a misspelled `tk.name` is an error, not Any.
    from tracekit import llm as llm
    from tracekit import sandbox as sandbox
    from tracekit import training as training
    from tracekit.argmin_node import ArgminNode as ArgminNode
    from tracekit.argmin_node import argmin as argmin
    from tracekit.bundled import BundledFunction as BundledFunction
    from tracekit.bundled import bundle as bundle
    from tracekit.context import no_trace as no_trace
    from tracekit.errors import DamagedFileError as DamagedFileError
    from tracekit.errors import InfeasibleError as InfeasibleError
    from tracekit.errors import InvalidOptionError as InvalidOptionError
    from tracekit.errors import InvalidValueError as InvalidValueError
    from tracekit.errors import MissingSolverError as MissingSolverError
    from tracekit.errors import NotConvergedError as NotConvergedError
    from tracekit.errors import SolveError as SolveError
    from tracekit.errors import StateDictError as StateDictError
    from tracekit.errors import TracekitError as TracekitError
    from tracekit.errors import UnboundedError as UnboundedError
    from tracekit.feedback import Feedback as Feedback
    from tracekit.feedback import backward as backward
    from tracekit.graph import Subgraph as Subgraph
    from tracekit.graph import subgraph as subgraph
    from tracekit.graph import to_networkx as to_networkx
    from tracekit.module import Module as Module
    from tracekit.module import model as model
    from tracekit.nodes import ExceptionNode as ExceptionNode
    from tracekit.nodes import MessageNode as MessageNode
    from tracekit.nodes import Node as Node
    from tracekit.nodes import ParameterNode as ParameterNode
    from tracekit.nodes import node as node
    from tracekit.nodes import param as param
    from tracekit.optimizer import Optimizer as Optimizer
    from tracekit.pictures.graph_picture import render as render
    from tracekit.pictures.run_plot import plot_run as plot_run
    from tracekit.predict import Predict as Predict
    from tracekit.problems import Eq as Eq
    from tracekit.problems import Ineq as Ineq
    from tracekit.problems import OptimizeResult as OptimizeResult
    from tracekit.problems import bilevel as bilevel
    from tracekit.problems import minimize as minimize
    from tracekit.report import StepReport as StepReport
    from tracekit.seam import register_solver as register_solver
    from tracekit.training import Score as Score
    from tracekit.training import Trainer as Trainer
    from tracekit.training import TrainResult as TrainResult
    from tracekit.training.callbacks import Callback as Callback
    from tracekit.training.executors import AsyncExecutor as AsyncExecutor
    from tracekit.training.executors import Executor as Executor
    from tracekit.training.executors import ProcessExecutor as ProcessExecutor
    from tracekit.training.executors import RayExecutor as RayExecutor
    from tracekit.training.executors import SerialExecutor as SerialExecutor
    from tracekit.training.executors import ThreadExecutor as ThreadExecutor
else:

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

