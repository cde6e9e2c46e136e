"""Feedback on outputs and its propagation to parameters (`backward`).

Feedback is text (for the LLM optimizer), a loss to minimize (a number, or a scalar
tensor whose autograd graph gives tensor parameters their gradients), or both.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from tracekit.errors import FeedbackError
from tracekit.graph import Subgraph, subgraph
from tracekit.nodes import Node, ParameterNode, _is_tensor, install_backward


@dataclass
class Feedback:
    """Feedback on an output: `loss` (number or scalar tensor, lower is better) and/or `text`."""

    loss: Any = None
    text: str | None = None
    #: with several outputs: the loss of each, in the order given to `backward` (the Trainer
    #: gives each example's; the demo solver bootstraps demos from the best-scored calls)
    losses: list[float] | None = None

    def __post_init__(self) -> None:
        if self.loss is None and self.text is None:
            raise FeedbackError("Feedback needs a loss, a text, or both; got neither")
        if self.losses is not None:
            try:
                self.losses = [loss_to_float(x) for x in self.losses]
            except (TypeError, ValueError):
                raise FeedbackError("Feedback.losses must be a list of numbers, one per output") from None
        if isinstance(self.loss, Node):
            self.loss = self.loss.raw
        if self.loss is not None:
            _check_loss(self.loss)
        if self.text is not None and not isinstance(self.text, str):
            raise FeedbackError(f"Feedback.text must be a str, got {type(self.text).__name__}")

    @property
    def loss_value(self) -> float | None:
        """The loss as a Python float (None when there is no loss)."""
        return None if self.loss is None else loss_to_float(self.loss)

    def describe(self) -> str:
        """One text for an LLM: the text feedback and the loss, whichever are present."""
        parts = []
        if self.text:
            parts.append(self.text)
        if self.loss is not None:
            parts.append(f"loss = {self.loss_value:.6g} (lower is better)")
        return "\n".join(parts)


def loss_to_float(value: Any) -> float:
    """A loss (or score) as a Python float: a number, a one-element tensor or array, a
    traced node holding one, or a `Feedback` with a loss. The one conversion used by
    feedback, the routes calling an objective and the trainer's metrics; anything else
    raises `FeedbackError` naming what was given."""
    if isinstance(value, (int, float)):  # the common case first (bool included)
        return float(value)
    if isinstance(value, Node):
        value = value.raw
    if isinstance(value, Feedback):
        if value.loss is None:
            raise FeedbackError("this tk.Feedback has text but no loss, so it has no number; "
                                "give it one with tk.Feedback(loss=..., text=...)")
        value = value.loss
    if _is_tensor(value) or (hasattr(value, "item") and hasattr(value, "size")):  # numpy too
        size = value.numel() if _is_tensor(value) else value.size
        if size != 1:
            raise FeedbackError(f"a loss must hold one number, got shape {tuple(value.shape)}; "
                                f"reduce it first, e.g. loss.mean() or loss.sum()")
        return float(value.item())
    if isinstance(value, numbers.Real):
        return float(value)
    raise FeedbackError(f"a loss must be a number, a one-element tensor, a traced node holding "
                        f"one, or tk.Feedback with a loss; got {type(value).__name__}")


def _check_loss(loss: Any) -> None:
    if _is_tensor(loss):
        if loss.numel() != 1:
            raise FeedbackError(
                f"a loss tensor must hold one number, got shape {tuple(loss.shape)}; "
                f"reduce it first, e.g. loss.mean() or loss.sum()"
            )
        return
    if isinstance(loss, bool) or not isinstance(loss, (int, float)):
        raise FeedbackError(
            f"a loss must be a number or a scalar tensor, got {type(loss).__name__}; "
            f"for text feedback pass a str or tk.Feedback(text=...)"
        )


def as_feedback(value: Any) -> Feedback:
    """Normalize what users pass as feedback: str, number, scalar tensor, Node or Feedback."""
    if isinstance(value, Feedback):
        return value
    if isinstance(value, Node):
        value = value.raw
    if isinstance(value, str):
        return Feedback(text=value)
    if _is_tensor(value) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return Feedback(loss=value)
    raise FeedbackError(
        f"feedback must be a str (text), a number or scalar tensor (a loss), or "
        f"tk.Feedback(loss=..., text=...); got {type(value).__name__}"
    )


@dataclass
class FeedbackRecord:
    """One backward pass as a parameter sees it: the output, its feedback and the graph."""

    output: Node
    feedback: Feedback
    graph: Subgraph
    loss_is_finite: bool = True
    outputs: tuple[Node, ...] = ()  # every output of the backward pass (`output` is the first)


def backward(output: Node | Sequence[Node], feedback: Any,
             params: Sequence[ParameterNode] | None = None, retain_graph: bool = False) -> Subgraph:
    """Attach `feedback` on `output` to every parameter it depends on.

    A tensor loss with an autograd graph is back-propagated, so tensor parameters on a
    differentiable path get `.grad`. A NaN/inf loss is recorded but not back-propagated.
    Returns the subgraph linking the parameters to the output.
    """
    outputs: list[Any] = (  # checked to be nodes just below
        [output] if isinstance(output, Node) else list(output) if isinstance(output, (list, tuple)) else [output])
    for o in outputs:
        if not isinstance(o, Node):
            raise FeedbackError(
                f"backward needs the traced output node(s), got {type(o).__name__}; "
                f"pass the value returned by a bundled function or node operation"
            )
    loss_node = feedback if isinstance(feedback, Node) else None
    fb = as_feedback(feedback)
    if loss_node is not None and all(loss_node is not o for o in outputs):
        outputs.append(loss_node)  # a traced loss: its own graph leads to the parameters
    graph = subgraph(outputs, params)
    finite = True
    if fb.loss is not None:
        finite = math.isfinite(cast(float, fb.loss_value))  # a float when there is a loss
        if finite and _is_tensor(fb.loss) and fb.loss.requires_grad:
            fb.loss.backward(retain_graph=retain_graph)
    record = FeedbackRecord(outputs[0], fb, graph, finite, tuple(outputs))
    for p in graph.parameters:
        p.feedback.append(record)
    return graph


install_backward(backward)  # node.backward(feedback) is this function
