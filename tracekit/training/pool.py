"""The candidate pool of a search run: whole parameter states, their per-example validation
scores and their lineage.

A `Candidate` holds the value of every trained parameter (any kind). A child shares the
value objects of the parameters it did not change with its parent (a tensor left unchanged
is the same tensor, not a copy); only the values a step changed are copied. Scores are one
per validation example, oriented so that higher is better, which is what the Pareto front
and merges compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.errors import StateDictError
from tracekit.module import copy_value


@dataclass
class Candidate:
    """One parameter state in the pool, with its scores and where it came from.

    `values`: {parameter name: value}. `scores`: per validation example, higher is better
    (None until validated). `parents`: ids of the candidates it was made from (two for a
    merge). `step`: the trainer step that made it. `origin`: "initial", "step" or "merge".
    `changes`: what changed (name, solver, reason). `usage`: LLM calls, tokens and cost
    spent making it. `expansions`: how often it was picked as a parent.
    """

    id: int
    values: dict[str, Any]
    scores: list[float] | None = None
    parents: list[int] = field(default_factory=list)
    step: int = 0
    origin: str = "initial"
    changes: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    expansions: int = 0

    @property
    def score(self) -> float | None:
        """The mean validation score (higher is better), None before validation."""
        if not self.scores:
            return None
        return sum(self.scores) / len(self.scores)

    def lineage(self) -> dict[str, Any]:
        """What the run log says about this candidate (values left to the `params` field)."""
        return {"id": self.id, "parents": list(self.parents), "step": self.step, "origin": self.origin,
                "changed": [c["name"] for c in self.changes if c.get("changed")],
                "solvers": sorted({c["solver"] for c in self.changes if c.get("changed")}),
                "usage": dict(self.usage), "score": self.score}

    def state_dict(self) -> dict[str, Any]:
        """The candidate as checkpoint data (tensors go to the safetensors payload)."""
        return {"id": self.id, "values": dict(self.values), "scores": self.scores,
                "parents": list(self.parents), "step": self.step, "origin": self.origin,
                "changes": self.changes, "usage": self.usage, "expansions": self.expansions}


def child_values(parent: Candidate, current: dict[str, Any]) -> dict[str, Any]:
    """A child's values: the parent's own objects for unchanged parameters, copies of the
    changed ones (a tensor compared by content, other values by equality)."""
    out: dict[str, Any] = {}
    for name, value in current.items():
        old = parent.values.get(name, _MISSING)
        out[name] = old if old is not _MISSING and same_value(old, value) else copy_value(value)
    return out


_MISSING = object()


def same_value(a: Any, b: Any) -> bool:
    """Whether two parameter values are equal (tensors: same shape, dtype and content)."""
    if a is b:
        return True
    if hasattr(a, "detach") and hasattr(b, "detach"):
        import torch

        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.detach(), b.detach()))
    if hasattr(a, "detach") or hasattr(b, "detach"):
        return False
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return False


class Pool:
    """The candidates of a run, by id, with the questions strategies ask of them."""

    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self.candidates: list[Candidate] = list(candidates)
        self.next_id = max((c.id for c in self.candidates), default=-1) + 1

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def get(self, cid: int) -> Candidate:
        """The candidate with this id (KeyError when it was pruned)."""
        for c in self.candidates:
            if c.id == cid:
                return c
        raise KeyError(cid)

    def new(self, values: dict[str, Any], **fields: Any) -> Candidate:
        """A candidate with the next id (not yet added)."""
        c = Candidate(self.next_id, values, **fields)
        self.next_id += 1
        return c

    def add(self, candidate: Candidate) -> None:
        """Add a validated candidate."""
        self.candidates.append(candidate)

    def remove(self, cids: Iterable[int]) -> None:
        """Drop candidates (a pruned beam)."""
        drop = set(cids)
        self.candidates = [c for c in self.candidates if c.id not in drop]

    def scored(self) -> list[Candidate]:
        """Candidates with validation scores."""
        return [c for c in self.candidates if c.scores]

    def best(self) -> Candidate:
        """The candidate with the highest mean validation score (the oldest on a tie)."""
        scored = self.scored()
        if not scored:
            raise ValueError("the pool has no validated candidate")
        return max(scored, key=lambda c: (c.score, -c.id))

    def ranked(self) -> list[Candidate]:
        """Validated candidates, best mean score first (older first on ties)."""
        return sorted(self.scored(), key=lambda c: (-validated_score(c), c.id))

    def front(self) -> list[Candidate]:
        """The Pareto front over per-example scores: candidates that are best on at least one
        example and not dominated by another candidate (GEPA's parent set)."""
        return pareto_front(self.scored())

    def wins(self, candidate: Candidate) -> int:
        """On how many examples this candidate reaches the pool's best score."""
        scored = self.scored()
        n = len(candidate.scores or [])
        tops = [max(validated_scores(c)[i] for c in scored) for i in range(n)]
        return sum(1 for i in range(n) if validated_scores(candidate)[i] >= tops[i])

    def state_dict(self) -> dict[str, Any]:
        """The pool as checkpoint data."""
        return {"next_id": self.next_id, "candidates": [c.state_dict() for c in self.candidates]}

    @classmethod
    def from_state(cls, state: Any, where: str = "checkpoint pool") -> Pool:
        """A pool from `state_dict()` output; a malformed entry raises StateDictError."""
        if not isinstance(state, dict) or not isinstance(state.get("candidates"), list):
            raise StateDictError(f"{where} is malformed: expected a dict with a 'candidates' list")
        candidates = []
        for i, c in enumerate(state["candidates"]):
            try:
                candidates.append(Candidate(**c))
            except TypeError as exc:
                raise StateDictError(f"{where} candidate {i} is malformed: {exc}") from None
            if not isinstance(candidates[-1].values, dict):
                raise StateDictError(f"{where} candidate {i} has no dict of values")
        pool = cls(candidates)
        pool.next_id = max(pool.next_id, int(state.get("next_id", 0)))
        return pool


def validated_scores(candidate: Candidate) -> list[float]:
    """The per-example scores of a validated candidate (the ones `Pool.scored()` returns)."""
    assert candidate.scores is not None, f"candidate {candidate.id} has not been validated"
    return candidate.scores


def validated_score(candidate: Candidate) -> float:
    """The mean score of a validated candidate (the ones `Pool.scored()` returns)."""
    score = candidate.score
    assert score is not None, f"candidate {candidate.id} has not been validated"
    return score


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether scores `a` are >= `b` everywhere and > somewhere (higher is better)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates best on at least one example, less those another such candidate dominates;
    among candidates with identical scores the oldest stands for them all."""
    if not candidates:
        return []
    n = len(candidates[0].scores or [])
    tops = [max(validated_scores(c)[i] for c in candidates) for i in range(n)]
    winners = [c for c in candidates if any(validated_scores(c)[i] >= tops[i] for i in range(n))]
    front: list[Candidate] = []
    seen: set[tuple[float, ...]] = set()
    for c in sorted(winners, key=lambda c: c.id):
        key = tuple(validated_scores(c))
        if key in seen or any(dominates(validated_scores(o), validated_scores(c)) for o in winners if o is not c):
            continue
        seen.add(key)
        front.append(c)
    return front


def ancestors(pool: Pool, candidate: Candidate) -> set[int]:
    """Ids of the candidate's ancestors still in the pool (itself included)."""
    out: set[int] = set()
    stack = [candidate.id]
    while stack:
        cid = stack.pop()
        if cid in out:
            continue
        out.add(cid)
        try:
            stack.extend(pool.get(cid).parents)
        except KeyError:
            pass
    return out


def merge_values(pool: Pool, a: Candidate, b: Candidate) -> dict[str, Any]:
    """A child of `a` and `b` built per parameter: where only one of them changed a
    parameter since their closest common ancestor, that one's value; where both did (or
    they share no ancestor), the value of the parent that wins on more examples."""
    common = ancestors(pool, a) & ancestors(pool, b)
    base = pool.get(max(common)) if common else None
    a_first = (pool.wins(a), a.score or 0.0, -a.id) >= (pool.wins(b), b.score or 0.0, -b.id)
    out: dict[str, Any] = {}
    for name, va in a.values.items():
        vb = b.values.get(name, va)
        if base is not None and name in base.values:
            if same_value(va, base.values[name]):
                out[name] = vb
                continue
            if same_value(vb, base.values[name]):
                out[name] = va
                continue
        out[name] = va if a_first else vb
    return out
