"""Few-shot demos without generation: a pool of scored examples, and subsets chosen by score.

A demo is a dict of fields (an example's inputs and its output). `DemoPool` keeps the
candidates: demos bootstrapped from calls whose output the metric scored well, and labelled
examples the user gave. `DemoSelector` proposes subsets (which demos, in which order) and,
with an objective, keeps the best one found; it never asks a model to write anything, so it
works with a model too small to write a useful prompt (the demos do the teaching).

A caller may also offer per-call selection *rules* by name (`tk.Predict`'s "nearest": the
labelled examples most like each call's inputs): with an objective they are proposed first,
each at most `RULE_TRIES` times over a run (a rule is one choice, so a minibatch that
happened to disfavour it is given another chance, but not forever).

Proposals per step, at most `trials`: the rules, then the newest bootstrapped demos (what the model
got right on this very data), then random *balanced* subsets of `k` demos (as many as the
pool has, up to `k`), never a subset already tried. Balanced: the answers take turns, so
each answer in the pool is shown about equally often; with a small model the answers of the
demos are what it copies (four "urgent" demos make every answer "urgent"), and a classifier
shown one class learns nothing about the other. With free-text answers (all different) this
is a plain random subset. The order within a subset is random.
The state (pool, tried subsets, random state) is plain JSON data.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Demo = dict[str, Any]
Choice = list[Demo] | str  # fixed demos, or the name of a per-call selection rule
RULE_TRIES = 3  # a rule is proposed at most this many times over a run
MAX_POOL = 200  # candidates kept (the oldest bootstrapped ones are forgotten first)
MAX_TRIED = 500


def demo_key(demo: Demo, fields: Sequence[str] | None = None) -> str:
    """A demo's identity: its input fields (two demos for the same input are one)."""
    keys = sorted(demo) if fields is None else list(fields)
    return json.dumps([demo.get(k) for k in keys], sort_keys=True, default=str)


@dataclass
class DemoPool:
    """Candidate demos, each with where it came from ("bootstrap" or "labelled")."""

    inputs: list[str]
    demos: list[Demo] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, demo: Demo, source: str) -> bool:
        """Add `demo` unless one for the same input is there (a labelled one is replaced by a
        bootstrapped one: the model's own correct answer teaches its format). True if added."""
        key = demo_key(demo, self.inputs)
        for i, old in enumerate(self.demos):
            if demo_key(old, self.inputs) == key:
                if source == "bootstrap" and self.sources[i] != "bootstrap":
                    self.demos[i], self.sources[i] = dict(demo), source
                    return True
                return False
        self.demos.append(dict(demo))
        self.sources.append(source)
        while len(self.demos) > MAX_POOL:
            drop = next((i for i, s in enumerate(self.sources) if s == "bootstrap"), 0)
            del self.demos[drop], self.sources[drop]
        return True

    def bootstrapped(self) -> list[Demo]:
        return [d for d, s in zip(self.demos, self.sources) if s == "bootstrap"]


@dataclass
class DemoSelector:
    """Subsets of a `DemoPool` as proposals, and the best of them by an objective."""

    pool: DemoPool
    k: int
    trials: int = 4
    seed: int | None = 0
    tried: list[str] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def proposals(self, current: Choice, rules: Sequence[str] = (), subsets: bool = True) -> list[Choice]:
        """Up to `trials` proposals: the `rules` other than `current` not yet tried
        `RULE_TRIES` times, then (when `subsets`) new subsets of at most `k` demos (see the
        module doc)."""
        out: list[Choice] = []
        out += [r for r in dict.fromkeys(rules)
                if r != current and self.tried.count(self._key(r)) < RULE_TRIES][:self.trials]
        seen = set(self.tried) | {self._key(current)}

        def offer(subset: list[Demo]) -> None:
            key = self._key(subset)
            if subset and key not in seen and len(out) < self.trials:
                seen.add(key)
                out.append(subset)

        if not subsets or self.k == 0 or not self.pool.demos:
            return out
        offer(self.pool.bootstrapped()[-self.k:][::-1])  # newest first
        for _ in range(20 * self.trials):
            if len(out) >= self.trials:
                break
            offer(self._balanced(min(self.k, len(self.pool.demos))))
        return out

    def _balanced(self, size: int) -> list[Demo]:
        """`size` random demos whose answers take turns (see the module doc), shuffled."""
        groups: dict[str, list[Demo]] = {}
        for demo in self.pool.demos:
            answer = {k: v for k, v in demo.items() if k not in self.pool.inputs}
            groups.setdefault(json.dumps(answer, sort_keys=True, default=str), []).append(demo)
        queues = [self._rng.sample(g, len(g)) for g in groups.values()]
        self._rng.shuffle(queues)
        chosen: list[Demo] = []
        while len(chosen) < size:
            for queue in queues:
                if queue and len(chosen) < size:
                    chosen.append(queue.pop())
        self._rng.shuffle(chosen)
        return chosen

    def choose(self, current: Choice, objective: Callable[[Choice], float] | None,
               limit: int | None = None, rules: Sequence[str] = (), subsets: bool = True
               ) -> tuple[Choice | None, dict[str, Any]]:
        """The demos or rule to use next, or None to keep `current`, and what was done.
        Without an objective the first subset is taken (rules need evidence: none is
        offered); with one, the best proposal that beats `current`'s loss (each evaluation
        is one call of `objective`, with a subset or a rule's name). `limit` caps the
        proposals evaluated (a step's share of a metric-call budget); the others are not
        counted as tried."""
        proposals = self.proposals(current, rules if objective is not None else (), subsets)
        capped = objective is not None and limit is not None and limit < len(proposals)
        if capped and limit is not None:
            proposals = proposals[:max(0, limit)]
        for p in proposals:
            self._remember(p)
        info: dict[str, Any] = {"pool": len(self.pool.demos), "bootstrapped": len(self.pool.bootstrapped()),
                                "proposals": len(proposals), **({"capped_at": limit} if capped else {})}
        if not proposals:
            return None, info
        if objective is None:
            return proposals[0], info
        baseline = _safe(objective, current)
        losses = [_safe(objective, p) for p in proposals]
        info.update(baseline_loss=baseline, losses=losses)
        best = min(range(len(proposals)), key=lambda i: (losses[i], i))
        if losses[best] < baseline or (math.isinf(baseline) and math.isfinite(losses[best])):
            return proposals[best], info
        return None, info

    def _key(self, choice: Choice) -> str:
        if isinstance(choice, str):
            return json.dumps({"rule": choice})
        return json.dumps([demo_key(d, self.pool.inputs) for d in choice])

    def _remember(self, choice: Choice) -> None:
        self.tried.append(self._key(choice))
        del self.tried[:-MAX_TRIED]

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pool, the subsets tried and the random state, as JSON data."""
        version, internal, gauss = self._rng.getstate()
        return {"demos": self.pool.demos, "sources": self.pool.sources, "tried": list(self.tried),
                "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load `state_dict()`'s output (raises on a malformed state, changing nothing)."""
        demos = [dict(d) for d in state["demos"]]
        sources = [str(s) for s in state["sources"]]
        if len(demos) != len(sources):
            raise ValueError("a demo pool state needs one source per demo")
        tried = [str(t) for t in state["tried"]]
        version, internal, gauss = state["rng"]
        rng = random.Random()
        rng.setstate((int(version), tuple(int(x) for x in internal), gauss))
        self.pool.demos, self.pool.sources, self.tried, self._rng = demos, sources, tried, rng


def _safe(objective: Callable[[Choice], float], choice: Choice) -> float:
    try:
        loss = float(objective(choice))
    except Exception:  # a failed evaluation counts as the worst, never as a crash
        return math.inf
    return loss if math.isfinite(loss) else math.inf
