"""The Pareto front of validated candidates under `Trainer(objectives=...)`.

With several objectives (`objectives={"accuracy": "max", "tokens": "min"}`, the first one
primary), every validation on the whole set gives a vector of per-objective means. The
front keeps the validated parameter sets that no other validated set dominates: at least
as good on every objective (each in its own direction) and better on one. Of equal
vectors the earliest is kept. Slices of a staged validation never enter it (only a step
validated on the whole set does), and a step reverted for its primary score still does.

`Objectives` is the declaration, `Front` the front (saved in the checkpoint), and
`front_of_log` rebuilds it from a run log for `tracekit show` and `plot_run`. The other
functions are the Trainer's (`declare`, `start`, `observe`, `load`); this
module never imports the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracekit.errors import StateDictError
from tracekit.training import checkpoint as ckpt

#: the accepted spellings of a direction (Optuna's "maximize"/"minimize" too)
DIRECTIONS = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}
#: names a metric dict uses for other things
RESERVED = ("feedback", "text", "loss")

#: the trainer's type, named in annotations only (this module never imports the trainer)
Trainer = Any


@dataclass(frozen=True)
class Objectives:
    """Declared objectives: ordered (name, "max" | "min") pairs, the first one primary."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, value: Any) -> Objectives:
        """Check a `Trainer(objectives=...)` argument; TypeError / ValueError say what to fix."""
        if not isinstance(value, Mapping):
            raise TypeError(f"objectives must be a dict of name -> 'max' | 'min', e.g. "
                            f"{{'accuracy': 'max', 'tokens': 'min'}}; got {type(value).__name__}")
        if not value:
            raise ValueError("objectives is empty: name at least one, e.g. {'accuracy': 'max'} "
                             "(or leave objectives out for a single score)")
        pairs = []
        for name, direction in value.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"objective names must be non-empty str, got {name!r}")
            if name in RESERVED:
                raise ValueError(f"objective name {name!r} is reserved for the metric's feedback; "
                                 f"rename it (reserved: {list(RESERVED)})")
            if not isinstance(direction, str) or direction.lower() not in DIRECTIONS:
                raise ValueError(f"objective {name!r} has direction {direction!r}; use 'max' (higher is "
                                 f"better) or 'min' (lower is better)")
            pairs.append((name, DIRECTIONS[direction.lower()]))
        return cls(tuple(pairs))

    @property
    def names(self) -> tuple[str, ...]:
        """The objectives' names, the primary first."""
        return tuple(name for name, _ in self.pairs)

    @property
    def primary(self) -> str:
        """The primary objective's name: the Trainer's score."""
        return self.pairs[0][0]

    @property
    def directions(self) -> dict[str, str]:
        """{name: "max" | "min"} in order, as the checkpoint and the run log keep it."""
        return dict(self.pairs)

    @property
    def higher_is_better(self) -> bool:
        """The primary objective's direction, which the Trainer's score follows."""
        return self.pairs[0][1] == "max"

    def dominates(self, a: Mapping[str, float], b: Mapping[str, float]) -> bool:
        """Whether score vector `a` is at least as good as `b` everywhere and better somewhere."""
        better = False
        for name, direction in self.pairs:
            x, y = (a[name], b[name]) if direction == "max" else (b[name], a[name])
            if x < y:
                return False
            better = better or x > y
        return better

    def describe(self) -> str:
        """e.g. "accuracy (max, primary), tokens (min)"."""
        return ", ".join(f"{n} ({d}{', primary' if i == 0 else ''})" for i, (n, d) in enumerate(self.pairs))


@dataclass
class Member:
    """One front member: the step that validated it, its per-objective means, its values."""

    step: int
    scores: dict[str, float]
    params: dict[str, Any]


class Front:
    """The non-dominated validated parameter sets, in the order they were validated."""

    def __init__(self, objectives: Objectives, members: Iterable[Member] = ()) -> None:
        self.objectives = objectives
        self.members: list[Member] = list(members)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def offer(self, step: int, scores: Mapping[str, float], params: dict[str, Any]) -> bool:
        """Add a validated candidate unless a member dominates it or has the same scores;
        members it dominates leave. True when it joined."""
        vector = {name: float(scores[name]) for name in self.objectives.names}
        if any(m.scores == vector or self.objectives.dominates(m.scores, vector) for m in self.members):
            return False
        self.members = [m for m in self.members if not self.objectives.dominates(vector, m.scores)]
        self.members.append(Member(step, vector, params))
        return True

    @property
    def steps(self) -> list[int]:
        """The members' steps, in validation order."""
        return [m.step for m in self.members]

    def member(self, step: int) -> Member:
        """The member validated at `step` (KeyError naming the front's steps otherwise)."""
        for m in self.members:
            if m.step == step:
                return m
        raise KeyError(f"step {step} is not on the Pareto front (its steps: {self.steps})")

    def apply(self, step: int, named_params: Iterable[tuple[str, Any]]) -> None:
        """Write a member's values into the parameters, e.g. `trainer.front.apply(3,
        trainer.named_params)` to ship a cheaper trade-off than the best."""
        ckpt.restore(named_params, self.member(step).params)

    def to_list(self) -> list[dict[str, Any]]:
        """The members as {step, scores, params} dicts (values JSON-ready, as the run log has them)."""
        return [{"step": m.step, "scores": dict(m.scores), "params": _plain(m.params)} for m in self.members]

    def state_dict(self) -> list[dict[str, Any]]:
        """The members for the checkpoint (values exact: tensors are kept)."""
        return [{"step": m.step, "scores": dict(m.scores), "params": dict(m.params)} for m in self.members]

    @classmethod
    def from_state(cls, state: Any, objectives: Objectives, where: str) -> Front:
        """A front from `state_dict()`'s output; a malformed one raises StateDictError."""
        if not isinstance(state, list):
            raise StateDictError(f"{where} must be a list of members, got {type(state).__name__}; it is damaged")
        members = []
        for i, entry in enumerate(state):
            what = f"{where} member {i}"
            if not isinstance(entry, dict) or set(entry) != {"step", "scores", "params"}:
                raise StateDictError(f"{what} must be a dict with 'step', 'scores' and 'params'; it is damaged")
            step, scores, params = entry["step"], entry["scores"], entry["params"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise StateDictError(f"{what} has step {step!r}, not a step number; it is damaged")
            if not isinstance(scores, dict) or set(scores) != set(objectives.names):
                raise StateDictError(f"{what} scores {scores!r} are not one number per objective "
                                     f"{list(objectives.names)}; it is damaged")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) for v in scores.values()):
                raise StateDictError(f"{what} scores {scores!r} are not all numbers; it is damaged")
            if not isinstance(params, dict):
                raise StateDictError(f"{what} params must be a dict of values; it is damaged")
            members.append(Member(step, {n: float(scores[n]) for n in objectives.names}, params))
        front = cls(objectives, members)
        vectors = [m.scores for m in members]
        if any(objectives.dominates(a, b) or (a == b and i != j)
               for i, a in enumerate(vectors) for j, b in enumerate(vectors)):
            raise StateDictError(f"{where} holds a dominated or repeated member; it is damaged")
        return front


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return ckpt.plain_values([(name, _Raw(v)) for name, v in values.items()])


class _Raw:
    """A stand-in parameter for `plain_values` (it reads `.raw`)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw


# --- a run log ---------------------------------------------------------------------------------
def front_of_log(records: Sequence[Mapping[str, Any]]) -> tuple[Objectives, list[Member], Front] | None:
    """The objectives, every fully validated step and the front of a run log (records with
    `val_scores`; the directions from the record that has `objectives`, step 0); None for a
    run without objectives."""
    declared = next((r["objectives"] for r in records if isinstance(r.get("objectives"), Mapping)), None)
    if declared is None:
        return None
    try:
        objectives = Objectives.parse(declared)
    except (TypeError, ValueError):
        return None
    validated: list[Member] = []
    front = Front(objectives)
    for r in records:
        scores = r.get("val_scores")
        if not isinstance(scores, Mapping):
            continue
        vector = {n: _number(scores.get(n)) for n in objectives.names}
        if any(v is None for v in vector.values()):
            continue
        complete = {n: float(v) for n, v in vector.items() if v is not None}
        step = r.get("step")
        member = Member(step if isinstance(step, int) else len(validated), complete, dict(r.get("params") or {}))
        validated.append(member)
        front.offer(member.step, member.scores, member.params)
    return objectives, validated, front


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)  # "inf" / "-inf" as the run log writes them
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


# --- the Trainer's ---------------------------------------------------------------------------
def declare(objectives: Any, higher_is_better: bool | None) -> tuple[Objectives | None, bool]:
    """The Trainer's objectives and score direction: without `objectives`, `higher_is_better`
    (default True); with them, the primary objective's direction (ValueError when an explicit
    `higher_is_better` says otherwise)."""
    if objectives is None:
        return None, True if higher_is_better is None else bool(higher_is_better)
    declared = Objectives.parse(objectives)
    if higher_is_better is not None and bool(higher_is_better) != declared.higher_is_better:
        raise ValueError(
            f"higher_is_better={higher_is_better} contradicts the primary objective "
            f"{declared.primary!r}: {declared.pairs[0][1]!r}; the primary's direction sets it, so leave "
            f"higher_is_better out (or change the direction)")
    return declared, declared.higher_is_better


def start(trainer: Trainer) -> None:
    """A fresh run's empty front (a resumed run's comes from its checkpoint: `load`)."""
    if trainer.objectives is not None:
        trainer.front = Front(trainer.objectives)
        trainer.metric.problem = None


def observe(trainer: Trainer, step: int, val: Any) -> dict[str, float | None] | None:
    """After a validation: raise a metric's misuse of the objectives; return the per-objective
    means of a full validation `val` (None: no objectives, or `val` is None) and offer the
    current values to the front."""
    if trainer.objectives is None:
        return None
    problem = getattr(trainer.metric, "problem", None)
    if problem is not None:
        raise problem
    if val is None:
        return None
    scores = val.objective_means(trainer.objectives.names)
    if all(v is not None for v in scores.values()):
        trainer.front.offer(step, scores, ckpt.snapshot(trainer.named_params))
    return scores


def load(trainer: Trainer, saved: Mapping[str, Any], where: str) -> Callable[[], None]:
    """Check the front of a checkpoint and return the call that restores it; nothing is set
    until the call (StateDictError naming the problem)."""
    declared = saved.get("objectives")
    objectives = trainer.objectives
    if objectives is None:
        if declared is not None:
            raise StateDictError(f"{where} was written by a run with objectives={declared}; resume it with "
                                 f"the same objectives=, or use another run_dir")
        return lambda: None
    if declared is None or "front" not in saved:
        raise StateDictError(f"{where} was written by a run without objectives=; use another run_dir, "
                             f"or resume=False to start over")
    if not isinstance(declared, dict) or list(declared.items()) != list(objectives.pairs):
        raise StateDictError(f"{where} was written with objectives={declared}; this run declares "
                             f"{objectives.directions}: resume with the same objectives, or use another run_dir")
    front = Front.from_state(saved["front"], objectives, f"{where} front")
    params = trainer.named_params
    for m in front.members:
        try:
            staged = ckpt.stage(params, m.params, "its params", strict=True)
        except StateDictError as exc:
            raise StateDictError(f"{where} front member of step {m.step}: {exc}") from None
        m.params = {name: value for (name, _), (_, value) in zip(params, staged)}

    def restore() -> None:
        trainer.front = front
        trainer.metric.problem = None

    return restore
