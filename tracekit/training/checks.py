"""The checks of a `Trainer`'s arguments (`tracekit.training.trainer`): a wrong type raises
TypeError and a value out of range ValueError, when the Trainer is built, not mid-run."""

from __future__ import annotations

from typing import Any

from tracekit import arguments


def check_arguments(*, workflow: Any, optimizer: Any, metric: Any, train: Any, val: Any, call: Any,
                    batch_size: Any, epochs: Any, max_steps: Any, patience: Any, trace_examples: Any,
                    max_concurrency: Any, feedback_chars: Any, seed: Any, error_score: Any,
                    min_delta: Any, higher_is_better: Any, revert_on_worse: Any, resume: Any,
                    progress: Any, run_dir: Any, batch_objective: Any) -> None:
    """Raise TypeError / ValueError for an argument a Trainer cannot use."""
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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for name, value in (("epochs", epochs), ("max_steps", max_steps), ("patience", patience),
                        ("trace_examples", trace_examples)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if batch_objective not in (True, False, "batch", "train"):
        raise ValueError(f"batch_objective must be True, False, 'batch' or 'train', got {batch_objective!r}")
