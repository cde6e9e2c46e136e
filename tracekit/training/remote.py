"""Training steps on out-of-process executors (Ray, a process pool): the driver's side.

With an executor whose `in_process` is False, every phase of a step that runs the
workflow runs on the workers: the training minibatch (traced, backward included), the
validation set and the minibatch objective. The driver keeps the parameters, the
optimizer and the aggregation:

1. once per run, the workflow, the metric and the trained parameters are pickled into a
   `Payload` (cloudpickle); each worker process unpickles it once;
2. each call, the current parameter values travel as state (`{name: value}`, tensors as
   tensors, put once in Ray's object store) and workers load them through each
   parameter's own validation (code parameters are checked again on the worker);
3. workers return plain results (`portable.ChunkResult`): per example the score, text and
   trace piece; per chunk the summed gradients and the LLM usage of the workflows;
4. the driver merges them into what an in-process minibatch would have given (same
   aggregated feedback and score, same prompt up to node names, same summed gradients)
   and takes the optimizer step.

Faults: a chunk whose worker died is run again one example per task, so a worker that
dies costs only the example that killed it; such an example becomes error feedback and is
counted in the step record (`lost_examples`, `incomplete`). Each chunk's result is used
once, so a task the executor retried never counts its gradients twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.errors import NotPortableError, TracekitError
from tracekit.feedback import Feedback
from tracekit.llm.accounting import Usage, process_scope
from tracekit.nodes import Node, _is_tensor
from tracekit.training import portable, shipping
from tracekit.training.executors import Executor


class WorkersFailedError(TracekitError, RuntimeError):
    """No example of a call could run on the workers (a set-up problem: a module missing
    there, a parameter value refused there); the message has the first worker error."""


# --- the worker's side --------------------------------------------------------------------------
@dataclass
class PortableExample:
    """One example's plain result (see `tracekit.training.trainer.ExampleResult`)."""

    index: int
    prediction: Any = None
    score: float | None = None
    text: str | None = None
    loss: Any = None  # a float or a detached tensor
    error: str | None = None
    piece: portable.TracePiece | None = None
    scores: dict[str, float] | None = None  # Trainer(objectives=...): every objective's value


@dataclass
class ChunkResult:
    """What a worker returns for a chunk of examples: one `PortableExample` each, the
    gradients of the tensor parameters summed over the chunk's losses, and the usage of
    the LLM calls made by the workflows."""

    examples: list[PortableExample]
    grads: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    problem: Exception | None = None  # objectives=: the metric's first misuse on this worker


@dataclass
class ChunkTask:
    """Runs a chunk of `(index, example)` items on a worker (picklable; see module doc)."""

    payload_key: str
    payload: Any  # a handle from Executor.share: the pickled Payload
    state_key: str
    state: Any  # a handle (Executor.share_state): load() gives {name: value} of the trained parameters
    traced: bool
    numpy_grads: bool = False  # gradients travel back as numpy arrays (Executor.numpy_transport)
    grad_blocks: dict[str, Any] | None = None  # "slot:name" -> where a chunk writes its gradient

    def __call__(self, job: tuple[int | None, list[tuple[int, Any]]]) -> ChunkResult:
        slot, chunk = job
        payload = portable.load(self.payload_key, self.payload, self.state_key, self.state)
        evaluate = dataclasses.replace(payload.evaluate, traced=self.traced)
        names = {id(p): name for p, name in zip(payload.params, payload.names)}
        tensors = [(name, p) for p, name in zip(payload.params, payload.names) if p.is_tensor]
        for _, p in tensors:
            p.raw.grad = None
        examples: list[PortableExample] = []
        grad_losses: list[Any] = []
        memo: dict[int, Any] = {}  # values of nodes shared by the chunk's traces
        with process_scope() as usage:
            for item in chunk:
                r = portable.call_coroutine(evaluate(item))
                piece = None
                if self.traced and isinstance(r.output, Node):
                    piece = portable.trace_piece(r.output, payload.params, names, payload.shared_below, memo)
                loss = portable.loss_of(r, payload.higher_is_better)
                if self.traced and _is_tensor(loss) and loss.requires_grad:
                    grad_losses.append(loss)
                examples.append(PortableExample(r.index, portable.portable_value(r.prediction, True), r.score, r.text,
                                                portable.detached(loss), r.error, piece, r.scores))
        grads: dict[str, Any] = {}
        if grad_losses:
            total = sum(grad_losses[1:], grad_losses[0])
            if math.isfinite(float(total.detach())):
                total.backward()
            for name, p in tensors:
                if p.raw.grad is not None:  # dropped here, so the tensor itself can travel
                    g = p.raw.grad.detach().cpu()
                    p.raw.grad = None
                    spec = (self.grad_blocks or {}).get(f"{slot}:{name}") if slot is not None else None
                    if spec is not None and shipping.write_result(spec, g):
                        grads[name] = shipping.InBlock(f"{slot}:{name}")
                    else:
                        grads[name] = shipping.pack_tensor(g, self.numpy_grads)
        return ChunkResult(examples, grads, usage.copy(), _take_problem(evaluate.metric))


def _take_problem(metric: Any) -> Exception | None:
    """An `ObjectiveMetric`'s first misuse on this worker, cleared there (it travels once)."""
    problem = getattr(metric, "problem", None)
    if problem is not None:
        metric.problem = None
    return problem if isinstance(problem, Exception) else None


def _dumps(value: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with Ray
        import pickle

        return pickle.dumps(value)
    return cloudpickle.dumps(value)


# --- the driver's side -------------------------------------------------------------------------
@dataclass
class BatchRun:
    """The merged results of a minibatch: per example (in batch order) its result and
    trace piece (None: not traced or lost), the summed gradients, and how many were lost."""

    results: list[Any]
    pieces: list[portable.TracePiece | None]
    grads: dict[str, Any]
    lost: int = 0


class RemoteRunner:
    """Runs a Trainer's evaluations and minibatches on an out-of-process executor (module doc)."""

    def __init__(self, trainer: Any, executor: Executor) -> None:
        self.trainer = trainer
        self.executor = executor
        self._payload: tuple[str, Any] | None = None
        self._state: tuple[dict[str, Any], str, Any] | None = None  # last shipped: values, key, handle
        self.usage = Usage()  # LLM usage of the workflows on workers, since `take_usage`
        self.lost = 0  # examples lost to failed workers, since `take_lost`

    # --- shipping -----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the shipped payload and state (the next call ships both again)."""
        self._payload = None
        self._state = None

    def payload(self) -> tuple[str, Any]:
        """(key, shared handle of the pickled `Payload`), built once per run;
        NotPortableError names what cannot travel."""
        if self._payload is not None and not self._payload[1].alive():
            self._payload = self._state = None  # the executor was closed (and reopened) since: ship again
        if self._payload is None:
            t = self.trainer
            named = t.named_params
            payload = portable.Payload(t._evaluator(True), [p for _, p in named], [n for n, _ in named],
                                       t.higher_is_better, portable.node_counter())
            try:
                blob = _dumps(payload)
            except Exception as exc:
                raise NotPortableError(self._culprit(exc)) from exc
            self._payload = (hashlib.sha256(blob).hexdigest(), self.executor.share(blob, "payload"))
        return self._payload

    def _culprit(self, exc: Exception) -> str:
        t = self.trainer
        for what, obj in (("workflow", t.workflow), ("metric", t.metric), ("call", t.call)):
            try:
                _dumps(obj)
            except Exception as inner:
                return (f"the {what} cannot be sent to worker processes ({type(inner).__name__}: {inner}). "
                        f"Make it picklable with cloudpickle: keep open files, locks, sockets and live "
                        f"clients out of it (create them lazily inside the call, or give the class "
                        f"__getstate__/__setstate__), or use executor='thread'")
        return (f"the training payload cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                f"make the workflow, metric and parameters picklable, or use executor='thread'")

    def task(self, traced: bool, slots: int = 0) -> ChunkTask:
        """A task carrying the payload and the parameters' current values (and, traced, the
        executor's blocks for the gradients of chunks 0 .. slots-1, if it has such blocks)."""
        key, payload = self.payload()
        values = portable.parameter_state(self.trainer.named_params)
        if self._state is not None and _same_state(self._state[0], values):
            state_key, state = self._state[1], self._state[2]  # unchanged: workers keep what they loaded
        else:
            state_key, state = uuid.uuid4().hex, self.executor.share_state(values)
            self._state = ({k: (v.clone() if _is_tensor(v) else v) for k, v in values.items()}, state_key, state)
        blocks = None
        if traced and slots:
            specs = {f"{k}:{name}": (v.dtype, tuple(v.shape)) for name, v in values.items()
                     if shipping.in_blocks(v) for k in range(slots)}
            blocks = self.executor.result_blocks(specs) if specs else None
        return ChunkTask(key, payload, state_key, state, traced,
                         bool(getattr(self.executor, "numpy_transport", False)), blocks)

    def _chunks(self, items: list[Any]) -> list[list[Any]]:
        slots = max(1, int(getattr(self.executor, "slots", 0) or self.executor.max_concurrency))
        n = min(len(items), slots)
        size, extra = divmod(len(items), n) if n else (0, 0)
        chunks, start = [], 0
        for k in range(n):
            end = start + size + (1 if k < extra else 0)
            chunks.append(items[start:end])
            start = end
        return chunks

    def _run(self, items: list[tuple[int, Any]], traced: bool) -> tuple[list[Any], dict[str, Any], int]:
        """Per item its `PortableExample` (or the error text of a lost one), the summed gradients
        and the number of lost examples."""
        chunks = self._chunks(items)
        task = self.task(traced, len(chunks))
        per_item: list[Any] = [None] * len(items)
        grads: dict[str, Any] = {}
        usage = Usage()
        lost = 0
        positions, start = [], 0
        for chunk in chunks:
            positions.append(list(range(start, start + len(chunk))))
            start += len(chunk)
        retry: list[int] = []
        errors: list[BaseException | None] = []
        for chunk_positions, outcome in zip(positions, self.executor.map(task, list(enumerate(chunks)))):
            if outcome.ok:
                usage = self._take(outcome.value, chunk_positions, per_item, grads, usage)
            elif len(chunk_positions) > 1:
                retry.extend(chunk_positions)
            else:
                per_item[chunk_positions[0]] = _lost_text(outcome.error)
                errors.append(outcome.error)
                lost += 1
        if retry:  # one example per task: a worker that dies again costs only its example
            for pos, outcome in zip(retry, self.executor.map(task, [(None, [items[i]]) for i in retry])):
                if outcome.ok:
                    usage = self._take(outcome.value, [pos], per_item, grads, usage)
                else:
                    per_item[pos] = _lost_text(outcome.error)
                    errors.append(outcome.error)
                    lost += 1
        if items and lost == len(items):  # nothing ran anywhere: a set-up problem, not bad luck
            raise WorkersFailedError(
                f"no example could run on the workers ({type(errors[0]).__name__}: {errors[0]}); check that "
                f"the modules your workflow and metric use are importable on the workers (install them "
                f"there, or ship them with RayExecutor(init_options={{'runtime_env': {{'working_dir': '.'}}}})), "
                f"and that the parameters' values pass their checks there")
        self.usage = self.usage + usage
        self.lost += lost
        return per_item, grads, lost

    def _take(self, result: ChunkResult, chunk_positions: list[int], per_item: list[Any],
              grads: dict[str, Any], usage: Usage) -> Usage:
        for pos, example in zip(chunk_positions, result.examples):
            per_item[pos] = example
        for name, g in result.grads.items():
            if isinstance(g, shipping.InBlock):  # shared memory the next call overwrites: copied
                g = self.executor.result_view(g.key)
                grads[name] = g.clone() if name not in grads else grads[name] + g
                continue
            g = shipping.unpack_tensor(g)
            grads[name] = g if name not in grads else grads[name] + g
        metric = self.trainer.metric  # objectives=: a worker's misuse is raised by the Trainer, as in-process
        if result.problem is not None and getattr(metric, "problem", False) is None:
            metric.problem = result.problem
        return usage + result.usage

    def _results(self, items: list[tuple[int, Any]], per_item: list[Any]) -> list[Any]:
        """The Trainer's `ExampleResult`s: of a `PortableExample`, or of a lost example's text."""
        out = []
        for (index, _), ex in zip(items, per_item):
            if isinstance(ex, PortableExample):
                out.append(self.trainer._example_result(index, ex.prediction, ex.score, ex.text, ex.loss, ex.error,
                                                        ex.scores))
            else:
                out.append(self.trainer._example_result(index, None, self.trainer.error_score, ex, None, ex))
        return out

    # --- what the Trainer calls --------------------------------------------------------------
    def evaluate(self, items: list[tuple[int, Any]]) -> list[Any]:
        """`ExampleResult`s of untraced runs (validation, the minibatch objective)."""
        per_item, _, _ = self._run(items, traced=False)
        return self._results(items, per_item)

    def run_batch(self, items: list[tuple[int, Any]]) -> BatchRun:
        """A traced minibatch: results, trace pieces and summed gradients."""
        per_item, grads, lost = self._run(items, traced=True)
        pieces = [ex.piece if isinstance(ex, PortableExample) else None for ex in per_item]
        return BatchRun(self._results(items, per_item), pieces, grads, lost)

    def backward(self, run: BatchRun, traced: Sequence[int], feedback: Feedback, n_losses: int) -> None:
        """What `Optimizer.backward` does with live traces, from a merged minibatch: the
        gradients (summed on the workers, divided by the `n_losses` the loss averages) on
        the tensor parameters, and one `PortableRecord` over the `traced` examples (worst
        first) given to the parameters they reached. Call after `zero_feedback()`."""
        t = self.trainer
        opt = t.optimizer
        loss = feedback.loss_value  # None when the feedback has no loss
        finite = loss is None or math.isfinite(loss)
        by_name = dict(t.named_params)
        if finite and run.grads:
            for name, g in run.grads.items():
                p = by_name[name].raw
                p.grad = (g / n_losses).to(device=p.device, dtype=p.dtype)
            penalty = getattr(opt, "_penalty", None)
            if penalty is not None:  # what Optimizer.backward adds to a tensor loss
                penalty.term(*[p.raw for p in opt.params]).backward()

        def piece(i: int) -> portable.TracePiece:
            found = run.pieces[i]
            assert found is not None, f"example {i} of the minibatch was not traced"
            return found

        first = piece(traced[0])
        in_order = [piece(i) for i in sorted(traced)]
        reached = {name for i in traced for name in piece(i).params}
        params = [p for name, p in t.named_params if name in reached]
        record = portable.PortableRecord(feedback, params, in_order, first, finite,
                                         run.results[traced[0]].prediction)
        portable.attach(record, params)

    def take_usage(self) -> Usage:
        """The workflows' LLM usage on workers since the last call (and reset it)."""
        usage, self.usage = self.usage, Usage()
        return usage

    def take_lost(self) -> int:
        lost, self.lost = self.lost, 0
        return lost


def _same_state(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the parameters still hold the values last shipped (tensors bit for bit;
    text, numbers and other plain values by equality; anything else counts as changed)."""
    if old.keys() != new.keys():
        return False
    for name, value in new.items():
        before = old[name]
        if _is_tensor(value):
            if not (_is_tensor(before) and before.dtype == value.dtype and before.shape == value.shape
                    and bool((before == value).all())):
                return False
        elif not (type(before) is type(value) and isinstance(value, (str, int, float, bool, type(None)))
                  and before == value):
            return False
    return True


def _lost_text(error: BaseException | None) -> str:
    return (f"evaluation failed: the worker running this example failed "
            f"({type(error).__name__}: {error}); the example was not scored")
