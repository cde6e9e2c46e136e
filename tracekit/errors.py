"""Error types of the tracing core; each message names the problem and the fix."""

from __future__ import annotations


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


class InvalidOptionError(TracekitError, ValueError):
    """An argument of `tk.Optimizer` (an option, a parameter list, a param group) is refused
    when the optimizer is built; the message names the argument and what is accepted."""
