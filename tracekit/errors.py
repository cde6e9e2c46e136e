"""Error types of the tracing core; each message names the problem and the fix."""

from __future__ import annotations

# Describing an exception never raises: one definition, in the dependency-free
# `solvers.errors` (solvers never import tracekit), re-exported here for tracekit's code.
from solvers.errors import CAUSE_DEPTH, MESSAGE_CHARS, describe, message_of, type_name  # noqa: F401


class TracekitError(Exception):
    """Base class for tracekit errors."""


class InvalidValueError(TracekitError, ValueError):
    """A value given to a parameter was refused; the parameter keeps its old value."""


class StateDictError(TracekitError, ValueError):
    """A saved state does not match the model it is loaded into."""


class DamagedFileError(StateDictError):
    """A file tracekit reads (state, checkpoint, payload, log, cache entry) is missing,
    truncated, malformed, too large or too deeply nested; nothing was changed."""


class MissingSolverError(TracekitError, RuntimeError):
    """No solver is registered for a kind of parameter that needs one."""


class FeedbackError(TracekitError, TypeError):
    """Feedback of a type tracekit cannot use."""


class NotPortableError(TracekitError, TypeError):
    """A workflow, metric or `call` cannot be shipped to worker processes (it cannot be
    pickled); the message names the object and how to make it shippable."""


class TrialsSpent(TracekitError, RuntimeError):
    """A step's share of trial evaluations (its part of `Trainer(max_metric_calls=...)`) is
    spent: the solver keeps the best it has scored and the step goes on."""


class InvalidOptionError(TracekitError, ValueError):
    """An argument of `tk.Optimizer` (an option, a parameter list, a param group) is refused
    when the optimizer is built; the message names the argument and what is accepted."""


class SolveError(TracekitError, RuntimeError):
    """An optimization step inside a workflow (`tk.argmin`) did not produce a solution.

    `status` is the solver's status, `max_violation` the constraint violation at the
    returned point, `solver_message` the solver's own words and `result` its full result
    (an `OptimizeResult`, or None when the solver raised).
    """

    def __init__(self, message: str, status: str | None = None, max_violation: float | None = None,
                 solver_message: str = "", result: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.max_violation = max_violation
        self.solver_message = solver_message
        self.result = result


class InfeasibleError(SolveError):
    """The constraints of an argmin admit no point (the solver proved it or stalled infeasible)."""


class UnboundedError(SolveError):
    """The objective of an argmin decreases without bound on the feasible set."""


class NotConvergedError(SolveError):
    """The solver of an argmin stopped before meeting its tolerances (or hit NaN/inf)."""


class SandboxError(TracekitError, RuntimeError):
    """Sandboxed code could not run to the end: it timed out, hit a limit, ended the
    worker, or tried what the sandbox blocks. `type_name`, `line` and `lineno` say what
    the code raised and where (line counted from the `def`), when it got that far."""

    def __init__(self, message: str, raised: str | None = None, line: str = "",
                 lineno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.type_name = raised or type(self).__name__
        self.line = line
        self.lineno = lineno


class SandboxedCodeError(SandboxError):
    """Sandboxed code raised an exception (its type name is `type_name`)."""


class SandboxTimeout(SandboxError):
    """Sandboxed code ran past the wall-clock limit; the worker was stopped."""


class SandboxCrash(SandboxError):
    """The sandbox worker ended while running code (a resource limit, or the code ended it)."""


class SandboxUnavailableError(SandboxError):
    """No sandbox can be set up on this system; proposed code is refused."""


class NotPlainDataError(SandboxError, TypeError):
    """A value that must cross the sandbox boundary is not plain data."""


class UnsafeCodeWarning(UserWarning):
    """Proposed code runs in this process, unsandboxed (`tk.bundle(..., sandbox=False)`)."""
