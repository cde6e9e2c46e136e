"""Portable traces: a training minibatch run in another process, sent back as plain data.

A worker process runs the workflow on its examples (traced), scores them, runs backward
locally and returns, per example, the score, the text feedback and a `TracePiece`: the
part of its trace the text optimizer reads (the plain `solvers.text` calls and values,
their values already bounded to what a prompt can show), plus the summed gradients of
the tensor parameters. No node, closure or tensor with autograd history crosses the
process boundary. The driver merges the pieces of the minibatch (`merge_problem`) into
the `Problem` an in-process minibatch would have produced, and sets the summed gradients.

Node names in the pieces are placeholders (`\\x00<i>\\x00`) resolved on the driver, so
labels made unique across workers read as they would in one process; nodes that existed
before the examples ran (parts of the workflow shipped from the driver, e.g. a frozen
parameter) keep one identity across workers. Names that tracekit derives from node
counters (`const17`, `classify_42`) depend on the process, as they depend on the order
of runs in one process.

Used by `tracekit.training.remote`; the format is internal to tracekit (both ends run the
same tracekit version).
"""

from __future__ import annotations

import itertools
import pickle
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from solvers.text import Call, Problem, Value
from tracekit import nodes as _nodes
from tracekit.feedback import Feedback, FeedbackRecord
from tracekit.graph import Subgraph, subgraph
from tracekit.nodes import MessageNode, Node, ParameterNode, _is_tensor
from tracekit.seam import PromptNames

# A value heavier than this (pickled) travels as its rendering, cut to VALUE_CHARS.
MAX_VALUE_BYTES = 32_000
VALUE_CHARS = 16_000  # the most a prompt of the default budget can show of one value
_PROCESS = uuid.uuid4().hex  # node keys of nodes made in this process
#: A node's identity across processes: ("param", optimizer name), ("driver", counter) or
#: (a process's `_PROCESS`, counter).
NodeKey = tuple[str, str | int]


class Shown:
    """A value that was too heavy or not picklable: it travels as its `repr` (bounded)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple:
        return (Shown, (self.text,))


def portable_value(value: Any, top_tensor: bool = False) -> Any:
    """`value` as it can travel and renders the same in a prompt: a tensor with autograd
    history (or a large one) as `Shown(repr)`, also inside lists, tuples and dicts; other
    tensors detached on the CPU; other values as they are when small and picklable, else
    `Shown(repr)` cut to VALUE_CHARS. `top_tensor`: a tensor at the top always travels as
    a detached tensor (predictions: `short_repr` shows no autograd details)."""
    if isinstance(value, Node):
        value = value.raw
    if top_tensor and _is_tensor(value):
        return value.detach().cpu().clone()
    value = _strip(value)
    if isinstance(value, (Shown, bool, int, float, type(None))) or _is_tensor(value):
        return value
    if isinstance(value, str) and len(value) <= MAX_VALUE_BYTES:
        return value
    try:
        blob = pickle.dumps(value)
        if len(blob) <= MAX_VALUE_BYTES:
            return value
    except Exception:  # not picklable: its text travels
        pass
    from solvers.text.prompt import shorten

    return Shown(shorten(value, VALUE_CHARS))


def _strip(value: Any, depth: int = 0) -> Any:
    """Tensors replaced as in `portable_value`, inside plain lists, tuples and dicts."""
    if _is_tensor(value):
        if value.requires_grad or value.numel() > 4096:
            return Shown(repr(value))
        return value.detach().cpu().clone()
    if depth > 20:
        return value
    kind = type(value)
    if kind in (list, tuple):
        return kind(_strip(v, depth + 1) for v in value)
    if kind is dict:
        return {k: _strip(v, depth + 1) for k, v in value.items()}
    return value


# --- what a worker sends back ------------------------------------------------------------------
@dataclass
class CallPiece:
    """One on-path call of an example: its `Call` with placeholder names, the nodes labeled
    for it (parents, then itself: the order labels are given in `build_problem`), and the
    values it shows: `(node index, value, role, type)`; role None: decided when merged."""

    node: int
    call: Call
    label_order: list[int]
    values: list[tuple[int, Any, str | None, str]]


@dataclass
class TracePiece:
    """The part of one example's trace the text optimizer needs (see module doc).

    `nodes[i]` = (identity key, base name) of the node behind placeholder `i`; a trained
    parameter's key is ("param", its optimizer name): the solver that reads the pieces
    writes its own parameters under their names and any other as a node.
    `output`: (node index, value, type) of the traced output. `params`: optimizer names of
    the trained parameters the example reached.
    """

    nodes: list[tuple[NodeKey, str]] = field(default_factory=list)
    calls: list[CallPiece] = field(default_factory=list)
    output: tuple[int, Any, str] | None = None
    params: list[str] = field(default_factory=list)


def placeholder(i: int) -> str:
    return f"\x00{i}\x00"


_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def trace_piece(output: Node, params: Sequence[ParameterNode], names: dict[int, str],
                shared_below: int, memo: dict[int, Any] | None = None) -> TracePiece:
    """The `TracePiece` of one traced output (the worker's half of `build_problem`).

    `shared_below`: nodes whose counter is below it came from the driver (one identity in
    every worker); the others were made here. `memo`: portable values of those shared
    nodes, kept across the examples of a chunk (a large parameter is rendered once)."""
    memo = {} if memo is None else memo

    def value_of(n: Node) -> Any:
        if id(n) not in names and n._uid >= shared_below:
            return portable_value(n)
        if id(n) not in memo:
            memo[id(n)] = portable_value(n)
        return memo[id(n)]

    from tracekit.routes.text import _call, _type_name

    graph = subgraph([output], params)
    piece = TracePiece(params=[names[id(p)] for p in graph.parameters])
    index: dict[int, int] = {}

    def ref(n: Node) -> int:
        i = index.get(id(n))
        if i is None:
            key: NodeKey
            if id(n) in names:
                key = ("param", names[id(n)])
            else:
                key = ("driver", n._uid) if n._uid < shared_below else (_PROCESS, n._uid)
            i = index[id(n)] = len(piece.nodes)
            piece.nodes.append((key, n.stable_name))
        return i

    def label(n: Node) -> str:
        return placeholder(ref(n))

    on_path = graph.on_path
    for n in graph.nodes:
        if id(n) not in on_path or not isinstance(n, MessageNode):
            continue
        order = [ref(p) for p in n.parents]
        call = _call(n, label, {})
        order.append(ref(n))
        values: list[tuple[int, Any, str | None, str]] = [
            (ref(p), value_of(p), "other" if id(p) in on_path else "input", _type_name(p.raw))
            for p in n.parents]
        values.append((ref(n), portable_value(n), None, _type_name(n.raw)))
        piece.calls.append(CallPiece(ref(n), call, order, values))
    piece.output = (ref(output), portable_value(output), _type_name(output.raw))
    return piece


# --- the driver's half ---------------------------------------------------------------------
def merge_problem(pieces: Sequence[TracePiece], first: TracePiece, names: Collection[str],
                  feedback: Feedback, loss_is_finite: bool) -> Problem:
    """The calls, values and feedback of one backward over the outputs of `pieces` (in
    the order the examples ran), as `build_problem` makes them from one live record
    whose output is `first`'s (the worst example), for a solver whose parameters are
    `names`. Variables are left to the solver."""
    labels: dict[tuple[str, Any], str] = {("param", n): n for n in names}
    prompt_names = PromptNames(names)
    mine = set(labels)

    def final(piece: TracePiece, i: int) -> str:
        key, base = piece.nodes[i]
        found = labels.get(key)
        if found is not None:
            return found
        lab = labels[key] = prompt_names.new(base)
        return lab

    def resolve(piece: TracePiece, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: final(piece, int(m.group(1))), text)

    output_keys = {p.nodes[p.output[0]][0] for p in pieces if p.output is not None}
    calls: list[Call] = []
    values: dict[NodeKey, Value] = {}
    seen_calls: set[NodeKey] = set()
    for piece in pieces:
        for cp in piece.calls:
            key = piece.nodes[cp.node][0]
            if key in seen_calls:
                continue
            seen_calls.add(key)
            for i in cp.label_order:
                final(piece, i)
            c = cp.call
            calls.append(Call(output=resolve(piece, c.output), code=resolve(piece, c.code),
                              function=c.function, doc=c.doc,
                              inputs=[resolve(piece, x) for x in c.inputs], error=c.error, detail=c.detail))
            for i, value, role, type_name in cp.values:
                k = piece.nodes[i][0]
                if k in values or k in mine:
                    continue
                if role is None:
                    role = "output" if k in output_keys else "other"
                values[k] = Value(final(piece, i), value, role, type_name)
    text = feedback.describe()
    if not loss_is_finite:
        text += " (the loss is not finite)"
    if first.output is not None:
        i, value, type_name = first.output
        key = first.nodes[i][0]
        if key not in values and key not in mine:
            values[key] = Value(final(first, i), value, "output", type_name)
    for key, v in values.items():
        if key in output_keys:
            v.role = "output"
    return Problem(variables=[], calls=calls, values=list(values.values()), feedback=[text])


class PortableRecord(FeedbackRecord):
    """A feedback record built from portable traces: no graph to walk; the text solver
    asks it for its pieces (`problem_pieces`, read by `tracekit.routes.text.build_problem`).

    `pieces`: the selected examples' `TracePiece`s in the order they ran; `first`: the
    piece of the record's output (the worst example)."""

    def __init__(self, feedback: Feedback, params: list[ParameterNode], pieces: list[TracePiece],
                 first: TracePiece, loss_is_finite: bool, prediction: Any = None) -> None:
        output = Node(prediction, name="output")
        super().__init__(output, feedback, Subgraph([output], [output], params, set()), loss_is_finite)
        self.pieces = pieces
        self.first = first

    def problem_pieces(self, names: Collection[str]) -> Problem:
        """The calls, values and feedback for a solver whose parameters are `names`."""
        return merge_problem(self.pieces, self.first, names, self.feedback, self.loss_is_finite)


def attach(record: PortableRecord, params: Sequence[ParameterNode]) -> None:
    """Give `record` to `params`, as `tk.backward` gives a live record to the parameters reached."""
    for p in params:
        p.feedback.append(record)


# --- the worker's side: payload and state ----------------------------------------------------
@dataclass
class Payload:
    """What a worker needs besides the parameter values, shipped once per run.

    `evaluate`: the trainer's `Evaluate` (workflow, metric, call, error score); `params`
    and `names`: the trained parameters (inside the workflow) and their optimizer names;
    `shared_below`: the driver's node counter when pickled (see `trace_piece`)."""

    evaluate: Any
    params: list[ParameterNode]
    names: list[str]
    higher_is_better: bool
    shared_below: int


_loaded: dict[str, Any] = {}  # this worker process: the last payload and state loaded


def node_counter() -> int:
    """The next node counter value of this process (the driver records it in the payload)."""
    value = next(_nodes._uids)
    return value


def load(payload_key: str, payload: Any, state_key: str, state: Any) -> Payload:
    """The payload, unpickled once per process, with the parameters set to the state
    (through each parameter's own validation: code is checked again here). `payload` and
    `state` are handles (`Executor.share`) read only when their key is new here."""
    if _loaded.get("payload_key") != payload_key:
        loaded = pickle.loads(payload.get())
        if node_counter() < loaded.shared_below:  # nodes made here never pass for the driver's
            _nodes._uids = itertools.count(loaded.shared_below)
        _loaded.clear()
        _loaded.update(payload_key=payload_key, payload=loaded)
    current = _loaded["payload"]
    if _loaded.get("state_key") != state_key:
        _loaded.pop("state_key", None)
        values = state.load()
        for p, name in zip(current.params, current.names):
            if name in values:
                _assign(p, values[name])
        _loaded["state_key"] = state_key
    return current


def _assign(p: ParameterNode, value: Any) -> None:
    """Give `p` the driver's value. A tensor of the same shape and dtype is copied into the
    parameter's own storage (the value may be a view of shared memory, and the driver
    validated it); anything else goes through `set` (code is checked again here)."""
    raw = p.raw
    if (p.is_tensor and _is_tensor(value) and value.shape == raw.shape and value.dtype == raw.dtype):
        import torch

        with torch.no_grad():
            raw.copy_(value)
        return
    p.set(value.clone() if _is_tensor(value) else value)


def parameter_state(named: Sequence[tuple[str, ParameterNode]]) -> dict[str, Any]:
    """{name: value} of the trained parameters, tensors detached and on the CPU (what
    travels: the executor's `share_state` copies them, so no copy is made here)."""
    return {name: (p.raw.detach().cpu() if p.is_tensor else p.raw) for name, p in named}


def call_coroutine(value: Any) -> Any:
    """A coroutine's result (async workflows and metrics), else the value."""
    import inspect

    if inspect.isawaitable(value):
        from tracekit.training.executors import _run_coroutine

        return _run_coroutine(value)
    return value


def loss_of(result: Any, higher_is_better: bool) -> Any:
    """An example's loss as the trainer counts it: its metric's loss, else -score (or score)."""
    if result.loss is not None:
        return result.loss
    if result.score is None:
        return None
    return -result.score if higher_is_better else result.score


def detached(loss: Any) -> Any:
    return loss.detach().cpu() if _is_tensor(loss) else loss


__all__ = ["CallPiece", "Payload", "PortableRecord", "Shown", "TracePiece", "attach", "call_coroutine",
           "detached", "load", "loss_of", "merge_problem", "parameter_state", "portable_value", "trace_piece"]

