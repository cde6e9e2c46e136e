"""The pool search of `Trainer(strategy="pareto" | "beam" | "priority" | a Strategy)`.

Each step: the strategy picks a parent from the pool; the parent's values are loaded; the
minibatch runs traced through the workflow (these are the parent's minibatch scores) and the
optimizer proposes a child from that feedback. With screening, the child is scored on the
same minibatch and validated only when it beats its parent there; otherwise it is validated
at once. A validated child joins the pool with its per-example scores and lineage, and the
strategy prunes the pool. After every `merge_every` accepted children the next step is a
merge instead: a child built per parameter from two front candidates that win on different
examples (`tracekit.training.pool.merge_values`), validated like any child.

With `Trainer(objectives=...)` the pool's own front stays over examples (scored by the
primary objective); every validated child is also offered to the objectives' Pareto front
(`tracekit.training.front`), so both fronts are kept.

Every child, accepted or not, is one run-log record with its lineage; the pool is part of
the checkpoint, so a resumed run continues the same search.
"""

from __future__ import annotations

import time
from typing import Any

from tracekit.training import checkpoint as ckpt
from tracekit.training import front as _front
from tracekit.training.pool import Candidate, Pool, child_values, merge_values, same_value
from tracekit.training.results import oriented_scores

#: the trainer's types, named in annotations only (this module never imports the trainer)
Trainer = Any
EvalResult = Any


class PoolSearch:
    """Runs the pool-search steps of one `Trainer` (its strategy decides; this executes)."""

    def __init__(self, trainer: Trainer, strategy: Any) -> None:
        self.trainer = trainer
        self.strategy = strategy
        self.pool = Pool()
        self.accepted_since_merge = 0

    # --- state ------------------------------------------------------------------------------
    def start(self, initial: EvalResult) -> None:
        """The pool of a fresh run: the initial parameters, validated."""
        self.pool = Pool()
        first = self.pool.new(ckpt.snapshot(self.trainer.named_params), scores=oriented_scores(self.trainer, initial))
        self.pool.add(first)
        self.accepted_since_merge = 0

    def state_dict(self) -> dict[str, Any]:
        """The pool and the merge counter, for the checkpoint."""
        return {**self.pool.state_dict(), "accepted_since_merge": self.accepted_since_merge,
                "strategy": self.strategy.name}

    def load(self, state: Any, where: str) -> Any:
        """Check the pool of a checkpoint and return the call that restores it; every value
        is checked by its parameter's own validation first (StateDictError naming the
        entry), and nothing is set until the call."""
        from tracekit.errors import StateDictError

        if state is None:
            raise StateDictError(f"{where} has no 'pool' entry: it was written by a run without a "
                                 f"pool search (strategy={self.strategy.name!r} needs one); use another "
                                 f"run_dir, or resume=False to start over")
        pool = Pool.from_state(state, f"{where} pool")
        params = self.trainer.named_params
        for c in pool:
            try:
                staged = ckpt.stage(params, c.values, f"{where} pool candidate {c.id}", strict=True)
            except StateDictError as exc:
                raise StateDictError(f"{where} pool candidate {c.id}: {exc}") from None
            c.values = {name: value for (name, _), (_, value) in zip(params, staged)}
        if not pool.scored():
            raise StateDictError(f"{where} pool has no validated candidate; it is damaged")
        accepted = state.get("accepted_since_merge", 0)
        if isinstance(accepted, bool) or not isinstance(accepted, int) or accepted < 0:
            raise StateDictError(f"{where} pool entry 'accepted_since_merge' is malformed; it is damaged")

        def restore() -> None:
            self.pool = pool
            self.accepted_since_merge = accepted

        return restore

    def best(self) -> Candidate:
        """The best candidate so far."""
        return self.pool.best()

    def summary(self) -> dict[str, Any]:
        """The best candidate and the pool's Pareto front, for the TrainResult and `tracekit show`."""
        best = self.pool.best()
        return {"best_candidate": best.lineage(),
                "pool_front": [c.lineage() for c in self.pool.front()]}

    def mark(self) -> tuple[int, dict[int, int]]:
        """What a step changes in the pool before its record: to undo a discarded step."""
        self._accepted_mark = self.accepted_since_merge
        return self.pool.next_id, {c.id: c.expansions for c in self.pool}

    def rollback(self, mark: tuple[int, dict[int, int]]) -> None:
        """Undo the pool changes of a step discarded before its record (a budget ran out)."""
        next_id, expansions = mark
        self.pool.next_id = next_id
        self.pool.remove([c.id for c in self.pool if c.id not in expansions])
        for c in self.pool:
            c.expansions = expansions[c.id]
        self.accepted_since_merge = self._accepted_mark

    # --- steps -----------------------------------------------------------------------------
    def merge_due(self) -> bool:
        """Whether the next step should be a merge."""
        every = self.strategy.merge_every
        return bool(every) and self.accepted_since_merge >= every

    def merge(self, state: dict[str, Any]) -> bool:
        """One merge step; False (nothing done, counter reset) when no pair can gain."""
        t = self.trainer
        self.accepted_since_merge = 0
        pair = self.strategy.merge_pair(self.pool, t.rng)
        if pair is None:
            return False
        a, b = pair
        values = merge_values(self.pool, a, b)
        if any(all(same_value(values[k], c.values.get(k)) for k in values) for c in self.pool):
            return False  # the merge is a candidate we already have
        start = time.perf_counter()
        state["step"] += 1
        ckpt.restore(t.named_params, values)
        child = self.pool.new(values, parents=[a.id, b.id], step=state["step"], origin="merge",
                              changes=[{"name": k, "solver": "merge", "changed": True,
                                        "from": b.id if same_value(values[k], b.values[k]) and
                                        not same_value(values[k], a.values[k]) else a.id}
                                       for k in values if not same_value(values[k], a.values[k])
                                       or not same_value(values[k], b.values[k])])
        val = t._validate()
        self._admit(state, child, val, None, None, start)
        return True

    def step(self, state: dict[str, Any], batch: list[tuple[int, Any]]) -> None:
        """One search step from the strategy's parent on this minibatch."""
        t = self.trainer
        start = time.perf_counter()
        state["step"] += 1
        parent = self.strategy.select(self.pool, t.rng)
        parent.expansions += 1
        ckpt.restore(t.named_params, parent.values)
        t._batch = list(batch)
        train = t._run_batch(batch)
        t.objective_knows(train)
        report = t._optimize(train, [ex for _, ex in batch])
        usage = t.usage_of(report)
        changes = [] if report is None else [
            {"name": c.name, "kind": c.kind, "solver": c.solver, "changed": c.changed,
             "old": c.old, "new": c.new, "reason": c.reason} for c in report.changes]
        current = {name: p.raw for name, p in t.named_params}
        child = self.pool.new(child_values(parent, current), parents=[parent.id], step=state["step"],
                              origin="step", changes=changes, usage=usage)
        if all(child.values[k] is parent.values[k] for k in child.values):
            self._reject(state, child, train, "the step changed nothing", None, start)
            return
        screen = None
        if self.strategy.screen:
            mini = t._evaluate_items(batch)
            sign = 1.0 if t.higher_is_better else -1.0
            screen = {"parent": train.score, "child": mini.score}
            if mini.score is None or train.score is None or not sign * mini.score > sign * train.score:
                self._reject(state, child, train, "not better than its parent on the minibatch", screen, start)
                return
        val = t._validate()
        self._admit(state, child, val, train, screen, start)

    # --- bookkeeping ------------------------------------------------------------------------
    def _admit(self, state: dict[str, Any], child: Candidate, val: EvalResult, train: EvalResult | None,
               screen: dict[str, Any] | None, start: float) -> None:
        t = self.trainer
        val_scores = _front.observe(t, state["step"], val)  # objectives=: the child's values join the front
        child.scores = oriented_scores(self.trainer, val)
        self.pool.add(child)
        dropped = self.strategy.admit(self.pool, child)
        self.pool.remove(dropped)
        if child.origin == "step":
            self.accepted_since_merge += 1
        best = self.pool.best()
        improved = t._improves(val.score, state["best_score"]) and best is child
        if improved:
            state["best_score"], state["best_step"], state["bad_steps"] = val.score, state["step"], 0
        else:
            state["bad_steps"] += 1
        state["best_params"] = dict(best.values)
        ckpt.restore(t.named_params, best.values)
        self._write(state, child, train, val, improved, True, None, screen, dropped, start, val_scores)

    def _reject(self, state: dict[str, Any], child: Candidate, train: EvalResult, why: str,
                screen: dict[str, Any] | None, start: float) -> None:
        t = self.trainer
        _front.observe(t, state["step"], None)  # objectives=: a metric's misuse on the minibatch is raised
        state["bad_steps"] += 1
        ckpt.restore(t.named_params, self.pool.best().values)
        self._write(state, child, train, None, False, False, why, screen, [], start)

    def _write(self, state: dict[str, Any], child: Candidate, train: EvalResult | None,
               val: EvalResult | None, improved: bool, accepted: bool, why: str | None,
               screen: dict[str, Any] | None, dropped: list[int], start: float,
               val_scores: dict[str, float | None] | None = None) -> None:
        t = self.trainer
        if t.patience is not None and state["bad_steps"] >= t.patience:
            state["stop_reason"] = f"early stopping: no improvement in {t.patience} step(s)"
        seconds = time.perf_counter() - start
        state["elapsed"] += seconds
        usage = child.usage or {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
        record = {
            "step": state["step"], "epoch": state["epoch"],
            "train_score": None if train is None else train.score,
            "train_errors": 0 if train is None else train.errors,
            "val_score": None if val is None else val.score, "best_score": state["best_score"],
            "improved": improved, "reverted": not accepted, "val_errors": 0 if val is None else val.errors,
            "params": ckpt.plain_values([(k, _Value(v)) for k, v in child.values.items()]),
            "changes": child.changes, **usage, "seconds": seconds, "time": time.time(),
            "strategy": self.strategy.name, "candidate": child.lineage(), "accepted": accepted,
            "rejected_because": why, "screen": screen, "dropped": dropped,
            "pool_size": len(self.pool), "front": [c.id for c in self.pool.front()],
            **({"val_scores": val_scores} if val_scores is not None else {}),
        }
        t._end_step(state, record)


class _Value:
    """A stand-in parameter for `plain_values` (it reads `.raw`)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
