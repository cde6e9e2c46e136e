"""The "demos" route of `tk.Optimizer`: few-shot demos of `tk.Predict` calls, by selection.

Each step harvests demos from the traced calls in the parameter's feedback: a call whose
answer was read and whose record scored best (the lowest loss of the step's records, or text
feedback that says it is right) becomes a bootstrapped demo; the `Predict`'s labelled
`examples` join the pool too. `solvers.text.DemoSelector` then proposes subsets (which and in
which order), and with an objective (the Trainer's minibatch objective, or `objective=`)
keeps the best one only when it beats the current demos. No text is generated.

Options: `demo_trials` (subsets evaluated per step, default 4), `seed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from solvers.text.demos import DemoPool, DemoSelector
from solvers.text.signal import says_right
from tracekit.feedback import loss_to_float
from tracekit.nodes import MessageNode, ParameterNode
from tracekit.seam import ParamUpdate, StepContext, trials_left, values_objective

DEFAULT_TRIALS = 4


class DemoSolver:
    """Demos parameters -> bootstrap from scored calls + labelled examples -> best subset."""

    name = "demos"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        self.trials = int(options.get("demo_trials") or DEFAULT_TRIALS)
        self.seed = options.get("seed", 0)
        self._selectors: dict[str, DemoSelector] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # loaded states, used on first sight

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        updates = []
        for p in params:
            name = context.name_of(p)
            calls = _calls(p)
            if not calls:
                updates.append(ParamUpdate(name, self.name, reason="kept: no tk.Predict call of these demos in the trace"))
                continue
            module = calls[0][0].op.module
            selector = self._selector(name, module)
            added = self._harvest(p, selector.pool, calls, module)
            objective = self._objective(p, name, context.objective)
            chosen, info = selector.choose(list(p.raw), objective, limit=trials_left(context.objective))
            info["added"] = added
            if chosen is None:
                why = ("no subset beat the current demos" if info.get("proposals") else
                       "no trials left in this step's share of max_metric_calls" if "capped_at" in info else
                       "no new subset to try")
                updates.append(ParamUpdate(name, self.name, reason=f"kept: {why} (pool {info['pool']})", info=info))
                continue
            scored = (f", loss {info['baseline_loss']:.4g} -> {min(info['losses']):.4g}"
                      if "losses" in info else "")
            updates.append(ParamUpdate(name, self.name, new_value=chosen, info=info,
                                       reason=f"{len(chosen)} demos from a pool of {info['pool']}{scored}"))
        return updates

    def _selector(self, name: str, module: Any) -> DemoSelector:
        selector = self._selectors.get(name)
        if selector is None:
            selector = DemoSelector(DemoPool(list(module.inputs)), k=module.max_demos, trials=self.trials,
                                    seed=self.seed)
            if name in self._pending:
                selector.load_state_dict(self._pending.pop(name))
            self._selectors[name] = selector
        return selector

    def _harvest(self, p: ParameterNode, pool: DemoPool, calls: list[tuple[MessageNode, Any, float | None]],
                 module: Any) -> int:
        """Add the labelled examples and the calls that scored best; returns how many were new."""
        added = sum(pool.add(row, "labelled") for row in module.examples)
        known = [loss for _, _, loss in calls if loss is not None]
        best = min(known) if known else None
        spread = bool(known) and max(known) > min(known)
        for node, record, loss in calls:
            if node.op.reading is None or node.op.reading.problem or node.raw is None:
                continue  # an answer that was not read teaches nothing
            right = says_right(record.feedback.text or "")
            if (loss is not None and loss == best and (spread or right)) or (loss is None and right):
                demo = {n: parent.raw for n, parent in zip(node.argnames, node.parents) if n in module.inputs}
                demo[module.output_name] = _plain(node.raw)
                added += pool.add(demo, "bootstrap")
        return added

    def _objective(self, p: ParameterNode, name: str, objective: Callable[..., Any] | None
                   ) -> Callable[[list[dict[str, Any]]], float] | None:
        if objective is None:
            return None
        loss = values_objective(objective, {name: p})
        return lambda demos: loss({name: demos})

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Each demos parameter's pool, tried subsets and random state (JSON data)."""
        return {name: s.state_dict() for name, s in self._selectors.items()} | dict(self._pending)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Checked on a scratch selector first (all or nothing); applied on first sight."""
        for s in state.values():
            DemoSelector(DemoPool([]), k=1).load_state_dict(s)
        for name, s in state.items():
            if name in self._selectors:
                self._selectors[name].load_state_dict(s)
            else:
                self._pending[name] = s


def _calls(p: ParameterNode) -> list[tuple[MessageNode, Any, float | None]]:
    """(call node, its feedback record, the loss of the output it led to) for each tk.Predict
    call of `p` in the feedback; the loss is the output's own when the feedback has one per
    output (the Trainer's), else the record's."""
    found = []
    for record in p.feedback:
        outputs = record.outputs or (record.output,)
        losses = record.feedback.losses
        if losses is not None and len(losses) == len(outputs):
            for out, loss in zip(outputs, losses):
                found += [(n, record, loss) for n in _predict_calls(out, p)]
        else:
            loss = _loss(record)
            found += [(n, record, loss) for n in record.graph.nodes if _is_call_of(n, p)]
    return found


def _is_call_of(n: Any, p: ParameterNode) -> bool:
    from tracekit.predict import PredictOp

    return isinstance(n, MessageNode) and isinstance(n.op, PredictOp) and any(q is p for q in n.parents)


def _predict_calls(output: Any, p: ParameterNode) -> list[MessageNode]:
    """The calls of `p` that `output` depends on (a walk up its parents, each node once)."""
    found, seen, stack = [], set(), [output]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if _is_call_of(n, p):
            found.append(n)
        stack.extend(getattr(n, "parents", ()))
    return found


def _loss(record: Any) -> float | None:
    loss = record.feedback.loss
    if loss is None:
        return None
    try:
        return loss_to_float(loss)
    except Exception:
        return None


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value
