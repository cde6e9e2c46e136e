"""Search strategies of `Trainer(strategy=...)`: which candidate of the pool a step starts
from, whether a child is screened on the minibatch first, what the pool keeps, and when
two candidates are merged.

    Trainer(..., strategy="pareto")                 # or "greedy" (default), "beam", "priority"
    Trainer(..., strategy=Beam(width=3))            # or any object with the Strategy protocol

- `Greedy` (default): today's loop -- one current state, a worse step is reverted.
- `Pareto`: GEPA's search. The parent is drawn from the Pareto front over per-example
  validation scores (weighted by the examples it wins); the child is scored on the step's
  minibatch first and on the whole validation set only if it beats its parent there;
  merges of two front candidates that win on different examples.
- `Beam(width)`: the `width` best candidates are kept; steps expand them in turn.
- `Priority(exploration)`: best-first with an exploration bonus (UCB over how often a
  candidate was expanded); nothing is pruned.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tracekit.training.pool import Candidate, Pool, validated_score, validated_scores

STRATEGIES = ("greedy", "pareto", "beam", "priority")


@runtime_checkable
class Strategy(Protocol):
    """What the trainer asks a search strategy (all decisions about the pool live here).

    `name`: shown in the run log. `screen`: score a child on the minibatch first and
    validate it only when it beats its parent there. `merge_every`: try a merge after every
    n-th accepted child (0: never). Methods: `select(pool, rng)` -> the parent of the next
    step; `admit(pool, child)` -> ids to drop after a child joined (a beam's width);
    `merge_pair(pool, rng)` -> two candidates to merge, or None.
    """

    name: str
    screen: bool
    merge_every: int

    def select(self, pool: Pool, rng: random.Random) -> Candidate: ...

    def admit(self, pool: Pool, child: Candidate) -> list[int]: ...

    def merge_pair(self, pool: Pool, rng: random.Random) -> tuple[Candidate, Candidate] | None: ...


class _Base:
    name = "base"
    screen = False
    merge_every = 0

    def admit(self, pool: Pool, child: Candidate) -> list[int]:
        """Keep every candidate."""
        return []

    def merge_pair(self, pool: Pool, rng: random.Random) -> tuple[Candidate, Candidate] | None:
        """Two front candidates that each win an example the other loses, or None."""
        return complementary_pair(pool, rng)

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


@dataclass(repr=False)
class Greedy(_Base):
    """Today's loop: the step starts from the best state; a worse step is reverted."""

    name = "greedy"

    def select(self, pool: Pool, rng: random.Random) -> Candidate:
        """The best candidate."""
        return pool.best()


@dataclass(repr=False)
class Pareto(_Base):
    """Parents from the Pareto front over per-example scores (GEPA).

    screen: score a child on the minibatch before validating it. merge_every: try a merge
    after every n-th accepted child (0: never)."""

    screen: bool = True
    merge_every: int = 2
    name = "pareto"

    def select(self, pool: Pool, rng: random.Random) -> Candidate:
        """A front candidate, drawn with weight = the number of examples it is best on."""
        front = pool.front()
        weights = [max(pool.wins(c), 1) for c in front]
        return rng.choices(front, weights=weights, k=1)[0]


@dataclass(repr=False)
class Beam(_Base):
    """Keep the `width` best candidates; each step expands the least-expanded of them."""

    width: int = 4
    merge_every: int = 0
    name = "beam"

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"Beam(width=...) must be an int >= 1, got {self.width!r}")

    def select(self, pool: Pool, rng: random.Random) -> Candidate:
        """The beam member expanded least often (the better one on ties)."""
        beam = pool.ranked()[: self.width]
        return min(beam, key=lambda c: (c.expansions, -validated_score(c), c.id))

    def admit(self, pool: Pool, child: Candidate) -> list[int]:
        """Drop everything below the `width` best."""
        return [c.id for c in pool.ranked()[self.width:]]


@dataclass(repr=False)
class Priority(_Base):
    """Best-first with exploration: the parent maximizes mean score + exploration *
    sqrt(log(total expansions + 1) / (expansions + 1)) (UCB1), so good candidates are
    expanded first and rarely expanded ones get their turn."""

    exploration: float = 0.3
    merge_every: int = 0
    name = "priority"

    def __post_init__(self) -> None:
        if isinstance(self.exploration, bool) or not isinstance(self.exploration, (int, float)) \
                or not math.isfinite(self.exploration) or self.exploration < 0:
            raise ValueError(f"Priority(exploration=...) must be a number >= 0, got {self.exploration!r}")

    def select(self, pool: Pool, rng: random.Random) -> Candidate:
        """The candidate of highest priority."""
        scored = pool.scored()
        total = sum(c.expansions for c in scored)
        return max(scored, key=lambda c: (validated_score(c) + self.exploration *
                                          math.sqrt(math.log(total + 1) / (c.expansions + 1)), -c.id))


def complementary_pair(pool: Pool, rng: random.Random) -> tuple[Candidate, Candidate] | None:
    """Two front candidates where each beats the other on some example (a merge can then
    gain), chosen at random among such pairs; None when there is none."""
    front = pool.front()
    pairs = [(a, b) for i, a in enumerate(front) for b in front[i + 1:]
             if any(x > y for x, y in zip(validated_scores(a), validated_scores(b)))
             and any(y > x for x, y in zip(validated_scores(a), validated_scores(b)))]
    return rng.choice(pairs) if pairs else None


def get_strategy(strategy: Any) -> Any:
    """A strategy from a name ("greedy", "pareto", "beam", "priority") or an object with
    the `Strategy` protocol (returned as is)."""
    if isinstance(strategy, str):
        factories = {"greedy": Greedy, "pareto": Pareto, "beam": Beam, "priority": Priority}
        if strategy not in factories:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)} or a Strategy object "
                             f"(tracekit.training.Pareto(), Beam(width=4), ...), got {strategy!r}")
        return factories[strategy]()
    missing = [a for a in ("name", "screen", "merge_every", "select", "admit", "merge_pair")
               if not hasattr(strategy, a)]
    if missing:
        raise TypeError(f"strategy must be a name in {list(STRATEGIES)} or an object with the Strategy "
                        f"protocol (missing {missing}), got {type(strategy).__name__}")
    return strategy
