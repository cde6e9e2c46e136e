"""The "demos" route of `tk.Optimizer`: few-shot demos of `tk.Predict` calls, by selection.

Each step harvests demos from the traced calls in the parameter's feedback: a call whose
answer was read and whose record scored best (the lowest loss of the step's records, or text
feedback that says it is right) becomes a bootstrapped demo; the `Predict`'s labelled
`examples` join the pool too. `solvers.text.DemoSelector` then proposes subsets (which and in
which order), and with an objective (the Trainer's minibatch objective, or `objective=`)
keeps the best one only when it beats the current demos. A `Predict`'s `demo_selection`
is decided here too: with an objective, retrieval ("nearest": the labelled examples most like
each call's inputs) is proposed beside the fixed subsets. No text is generated.

Options: `demo_trials` (subsets evaluated per step, default 4), `seed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from solvers.text.demos import Choice, DemoPool, DemoSelector
from solvers.text.signal import says_right
from tracekit.feedback import loss_to_float
from tracekit.nodes import MessageNode, ParameterNode
from tracekit.seam import ParamUpdate, StepContext, trials_left, values_objective

DEFAULT_TRIALS = 4


class DemoSolver:
    """Demos parameters -> bootstrap from scored calls + labelled examples -> best subset.

    A `tk.Predict`'s `demo_selection` comes here too (its `route` says so): the demos of a
    call and where they come from are one decision, so retrieval ("nearest") is one of the
    proposals beside fixed subsets, each judged by the same objective."""

    name = "demos"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        self.trials = int(options.get("demo_trials") or DEFAULT_TRIALS)
        self.seed = options.get("seed", 0)
        self._selectors: dict[str, DemoSelector] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # loaded states, used on first sight

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        updates: list[ParamUpdate] = []
        groups: dict[int, tuple[Any, dict[str, ParameterNode], list[tuple[MessageNode, Any, float | None]]]] = {}
        for p in params:
            calls = _calls(p)
            if not calls:
                updates.append(ParamUpdate(context.name_of(p), self.name,
                                           reason="kept: no tk.Predict call of this parameter in the trace"))
                continue
            module = calls[0][0].op.module
            part = "demos" if p is module.demos else "selection" if p is module.demo_selection else None
            if part is None:  # routed here by hand, but neither part of a call
                updates.append(ParamUpdate(context.name_of(p), self.name, reason=(
                    "kept: the demos solver trains a tk.Predict's demos and demo_selection only")))
                continue
            _, parts, found = groups.setdefault(id(module), (module, {}, []))
            parts[part] = p
            if not found:
                found.extend(calls)
        for module, parts, calls in groups.values():
            updates += self._step_call(module, parts, calls, context)
        return updates

    def _step_call(self, module: Any, parts: dict[str, ParameterNode],
                   calls: list[tuple[MessageNode, Any, float | None]], context: StepContext) -> list[ParamUpdate]:
        """One `tk.Predict`'s demos and/or demo selection: propose, judge, keep the best."""
        names = {part: context.name_of(p) for part, p in parts.items()}
        demos_p, selection_p = parts.get("demos"), parts.get("selection")
        rule = str(selection_p.raw) if selection_p is not None else "fixed"
        selector = self._selector(names.get("demos") or names["selection"], module)
        added = self._harvest(selector.pool, calls, module)
        rules = [c for c in (selection_p.choices or []) if c != "fixed" or demos_p is None] if selection_p else []
        if not module.examples:
            rules = [c for c in rules if c != "nearest"]  # retrieval from no examples shows nothing
        current: Choice = rule if rule != "fixed" or demos_p is None else list(demos_p.raw)
        objective = self._objective(parts, names, context.objective)
        chosen, info = selector.choose(current, objective, limit=trials_left(context.objective),
                                       rules=rules, subsets=demos_p is not None)
        info["added"] = added
        if chosen is None:
            why = ("no proposal beat the current demos" if info.get("proposals") else
                   "no trials left in this step's share of max_metric_calls" if "capped_at" in info else
                   "nothing new to try")
            return [ParamUpdate(n, self.name, reason=f"kept: {why} (pool {info['pool']})", info=info)
                    for n in names.values()]
        scored = f", loss {info['baseline_loss']:.4g} -> {min(info['losses']):.4g}" if "losses" in info else ""
        values = _values(chosen, parts, names)
        what = (f"demos from the {chosen!r} rule per call" if isinstance(chosen, str)
                else f"{len(chosen)} demos from a pool of {info['pool']}")
        return [ParamUpdate(n, self.name, new_value=values[n], info=info, reason=what + scored)
                if n in values and values[n] != parts[part].raw else
                ParamUpdate(n, self.name, info=info, reason=f"kept: {what} chosen{scored}")
                for part, n in names.items()]

    def _selector(self, name: str, module: Any) -> DemoSelector:
        selector = self._selectors.get(name)
        if selector is None:
            selector = DemoSelector(DemoPool(list(module.inputs)), k=module.max_demos, trials=self.trials,
                                    seed=self.seed)
            if name in self._pending:
                selector.load_state_dict(self._pending.pop(name))
            self._selectors[name] = selector
        return selector

    def _harvest(self, pool: DemoPool, calls: list[tuple[MessageNode, Any, float | None]], module: Any) -> int:
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

    def _objective(self, parts: dict[str, ParameterNode], names: dict[str, str],
                   objective: Callable[..., Any] | None) -> Callable[[Choice], float] | None:
        if objective is None:
            return None
        loss = values_objective(objective, {names[part]: p for part, p in parts.items()})
        return lambda choice: loss(_values(choice, parts, names))

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


def _values(choice: Choice, parts: dict[str, ParameterNode], names: dict[str, str]) -> dict[str, Any]:
    """{name: value} for a choice: a rule sets the selection; fixed demos set the demos and
    the selection to "fixed"."""
    if isinstance(choice, str):
        return {names["selection"]: choice}
    values: dict[str, Any] = {names["demos"]: choice}
    if "selection" in parts:
        values[names["selection"]] = "fixed"
    return values


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
