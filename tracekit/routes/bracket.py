"""The "bracket" route of `tk.Optimizer`: a number whose feedback is text only.

Such a number has no loss and no gradient, and asking an LLM to write the right value is a
guess (a small model writes any number). This route reads a *signal* from the text instead
(`solvers.text.signal`: a target written in the feedback, direction words, or a
"larger or smaller?" question asked in both orders) and searches with it
(`solvers.gradient.Bracket`: expand until the sign flips, then bracket and bisect), one
value per step. A number goes to this route when the text gives a signal without a model
(`takes`); other numbers with text feedback stay with the text route. Once a search has
started, a step whose text says nothing readable asks the model "larger or smaller?" in
both orders, and keeps the value unless the answers agree.
"""

from __future__ import annotations

from typing import Any, Literal

from solvers.gradient.bracket import Bracket
from solvers.text.signal import Signal, has_signal, read_signal
from tracekit.nodes import ParameterNode, _is_tensor
from tracekit.seam import ParamUpdate, StepContext

ANSWER_TOKENS = 16  # a multiple-choice answer is one short JSON string


class BracketSolver:
    """Numbers with text-only feedback -> a signal read from the text -> bracket and bisect."""

    name = "bracket"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        self.llm = llm
        self._brackets: dict[str, Bracket] = {}

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        updates = []
        ask = self._asker(context)
        for p in params:
            name = context.name_of(p)
            bracket = self._brackets.get(name)
            started = bracket is not None and bool(bracket.observations)
            # the "larger or smaller?" question only once a search has started (the route is
            # taken on a signal the text gives); before, the model only picks among targets
            signal = combine([read_signal(record_text(r), as_number(r.output.raw), known=[float(p.raw)],
                                          ask=ask, direct=started) for r in p.feedback])
            if signal is None:
                updates.append(ParamUpdate(name, self.name, reason="kept: the feedback gives no direction "
                                           "(neither a target nor larger/smaller)"))
                continue
            if bracket is None:
                bracket = self._brackets[name] = Bracket(bounds=p.bounds, integer=p.value_type is int)
            updates.append(self._move(p, name, bracket, signal))
        return updates

    def searching(self, name: str) -> bool:
        """Whether a search for number `name` has started (its later steps stay here)."""
        bracket = self._brackets.get(name)
        return bracket is not None and bool(bracket.observations)

    def _move(self, p: ParameterNode, name: str, bracket: Bracket, signal: Signal) -> ParamUpdate:
        x = float(p.raw)
        bracket.tell(x, signal.sign, signal.size)
        new = bracket.ask()
        value: Any = int(round(new)) if p.value_type is int else new
        gap = "" if signal.size is None else f" ({'+' if signal.sign > 0 else '-'}{signal.size:.4g})"
        where = (f"bracket [{bracket.low.x:.6g}, {bracket.high.x:.6g}]"
                 if bracket.low is not None and bracket.high is not None else "no sign change yet")
        info = {"signal": signal.sign, "size": signal.size, "how": signal.how, "observations": len(bracket.observations),
                "bracket": None if bracket.low is None or bracket.high is None else [bracket.low.x, bracket.high.x]}
        if signal.sign == 0:
            return ParamUpdate(name, self.name, reason=f"kept: {signal.how}", info=info)
        if new == x:
            why = "converged" if bracket.converged() else "at a bound"
            return ParamUpdate(name, self.name, reason=f"kept ({why}): {signal.how}{gap}; {where}", info=info)
        return ParamUpdate(name, self.name, new_value=value,
                           reason=f"{signal.how}{gap}; {where}", info=info)

    # --- the model's multiple-choice answers ------------------------------------------------------
    def _asker(self, context: StepContext) -> Any:
        """`ask(question, options)` on the step's LLM: a schema-constrained choice at
        temperature 0 (None on any failure: no signal rather than a guess)."""
        from pydantic import create_model

        from tracekit import llm as llm_layer

        state: dict[str, Any] = {}

        def ask(question: str, options: list[str]) -> str | None:
            if "backend" not in state:
                state["backend"] = llm_layer.as_backend(self.llm if self.llm is not None else context.llm)
            backend = state["backend"]
            answer: Any = Literal[tuple(options)]  # built at run time: typed Any
            model = create_model("Answer", answer=(answer, ...))
            messages = [{"role": "user", "content": f"{question}\nAnswer with one of: {', '.join(options)}."}]
            try:
                reply = backend.structured(messages, model, max_reasks=0, temperature=0.0,
                                           max_tokens=ANSWER_TOKENS + 8 * max(len(o) for o in options))
            except Exception:  # any failure (transport, parse) is no answer, never a guess
                return None
            answer = getattr(reply, "answer", None)
            return answer if answer in options else None

        return ask

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Each number's observations and bracket (JSON data)."""
        return {"brackets": {name: b.state_dict() for name, b in self._brackets.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """All or nothing: every bracket is loaded into a fresh one before any is swapped in."""
        loaded = {}
        for name, s in dict(state.get("brackets", {})).items():
            loaded[name] = Bracket()
            loaded[name].load_state_dict(s)
        self._brackets.update(loaded)


def combine(signals: list[Signal | None]) -> Signal | None:
    """One signal from a step's records: the majority sign of those that read one (0 when
    all say right), with the mean size when every one of that sign has a size."""
    read = [s for s in signals if s is not None]
    if not read:
        return None
    total = sum(s.sign for s in read)
    if total == 0:
        if all(s.sign == 0 for s in read):
            return Signal(0, None, read[0].how)
        return None  # as many say larger as smaller: no signal
    sign = 1 if total > 0 else -1
    same = [s for s in read if s.sign == sign]
    sizes = [s.size for s in same]
    size = sum(sizes) / len(sizes) if all(x is not None for x in sizes) else None  # type: ignore[arg-type]
    how = same[0].how + (f" ({len(same)} of {len(read)} outputs)" if len(read) > 1 else "")
    return Signal(sign, size, how)


def record_text(record: Any) -> str:
    """The feedback text of one record."""
    fb = record.feedback
    return fb.text if isinstance(getattr(fb, "text", None), str) else fb.describe()


def as_number(value: Any) -> float | None:
    """The output as a number: a number, a one-element tensor or a numeric text; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if _is_tensor(value) and value.numel() == 1:
        return float(value.detach().reshape(()).item())
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def takes(p: ParameterNode) -> bool:
    """Whether `p` goes to this route: a Python number whose feedback is text only, and some
    of it gives a signal without asking a model (a target, candidate targets, a direction,
    "correct"). Other numbers with text feedback stay with the text route."""
    if p.kind != "numeric" or _is_tensor(p.raw) or not p.feedback:
        return False
    if not all(r.feedback.loss is None and r.feedback.text for r in p.feedback):
        return False
    return any(has_signal(record_text(r), as_number(r.output.raw), known=[float(p.raw)]) for r in p.feedback)
