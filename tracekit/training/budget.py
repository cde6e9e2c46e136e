"""Budgets as stopping rules for `Trainer`: metric calls, LLM cost and wall-clock seconds.

    Trainer(..., max_metric_calls=500, max_llm_cost=0.50, max_seconds=600, max_steps=40)

A run stops *before* it would pass a budget, and says which one stopped it. Metric calls are
counted exactly (every example the metric scores: training minibatches, the objective lent
to the optimizer, minibatch screening and validation) and checked before each evaluation,
so the limit is never passed: an evaluation that would pass it is not run, the step it
belonged to is discarded and the run ends. LLM cost and seconds are only known after a
step, so a new step starts only when what is spent plus the costliest step so far fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracekit import arguments


class BudgetExhausted(Exception):
    """Raised inside a step when an evaluation would pass `max_metric_calls`; the trainer
    discards the step and stops (never seen by the user)."""


@dataclass
class RunBudget:
    """The limits of a run (None: no limit) and what has been spent so far."""

    max_metric_calls: int | None = None
    max_llm_cost: float | None = None
    max_seconds: float | None = None
    metric_calls: int = 0
    llm_cost: float = 0.0
    seconds: float = 0.0
    #: the costliest step so far, per resource: the estimate of the next step's cost
    worst_step: dict[str, float] = field(default_factory=dict)
    exhausted: str | None = None

    def __post_init__(self) -> None:
        arguments.count("max_metric_calls", self.max_metric_calls, optional=True)
        for name in ("max_llm_cost", "max_seconds"):
            if getattr(self, name) is not None:
                arguments.number(name, getattr(self, name), minimum=0.0)

    @property
    def limited(self) -> bool:
        """Whether any budget is set."""
        return any(v is not None for v in (self.max_metric_calls, self.max_llm_cost, self.max_seconds))

    def charge_metric_calls(self, n: int) -> None:
        """Spend `n` metric calls, or raise BudgetExhausted (spending nothing) when that
        would pass `max_metric_calls` or the budget was already found exhausted in this step
        (an objective whose error a solver swallowed must not let the step go on)."""
        if self.exhausted:
            raise BudgetExhausted(self.exhausted)
        if self.max_metric_calls is not None and self.metric_calls + n > self.max_metric_calls:
            self.exhausted = (f"max_metric_calls={self.max_metric_calls} reached "
                              f"({self.metric_calls} spent; the next evaluation needs {n})")
            raise BudgetExhausted(self.exhausted)
        self.metric_calls += n

    def end_step(self, metric_calls: int, llm_cost: float, seconds: float) -> None:
        """Record one step's spending (metric calls are already charged)."""
        self.llm_cost += llm_cost
        self.seconds += seconds
        for key, value in (("metric_calls", metric_calls), ("llm_cost", llm_cost), ("seconds", seconds)):
            self.worst_step[key] = max(self.worst_step.get(key, 0.0), float(value))

    def stop_before_step(self, first_step_calls: int, shrinks_to: int | None = None) -> str | None:
        """Why the next step must not start (it would pass a budget), or None.
        `first_step_calls`: the metric calls a step needs at least (before any step ran);
        `shrinks_to`: when steps shrink to fit what is left (a step allowance), the calls of
        the smallest one, which then replaces both estimates."""
        if self.exhausted:
            return self.exhausted
        need = shrinks_to if shrinks_to is not None else \
            max(self.worst_step.get("metric_calls", 0), first_step_calls)
        if self.max_metric_calls is not None and self.metric_calls + need > self.max_metric_calls:
            self.exhausted = (f"max_metric_calls={self.max_metric_calls} reached ({self.metric_calls} "
                              f"spent; a step needs about {int(need)})")
        elif self.max_llm_cost is not None and self.llm_cost + self.worst_step.get("llm_cost", 0.0) \
                > self.max_llm_cost:
            self.exhausted = (f"max_llm_cost={self.max_llm_cost:g} reached ({self.llm_cost:.4g} spent; "
                              f"the costliest step cost {self.worst_step.get('llm_cost', 0.0):.4g})")
        elif self.max_seconds is not None and self.seconds + self.worst_step.get("seconds", 0.0) \
                > self.max_seconds:
            self.exhausted = (f"max_seconds={self.max_seconds:g} reached ({self.seconds:.1f}s spent; "
                              f"the longest step took {self.worst_step.get('seconds', 0.0):.1f}s)")
        return self.exhausted

    def spent(self) -> dict[str, Any]:
        """What was spent, for the run log and the summary."""
        return {"metric_calls": self.metric_calls, "llm_cost": self.llm_cost, "seconds": self.seconds}

    def left(self) -> dict[str, Any]:
        """What is left of each set budget."""
        out: dict[str, Any] = {}
        if self.max_metric_calls is not None:
            out["metric_calls"] = self.max_metric_calls - self.metric_calls
        if self.max_llm_cost is not None:
            out["llm_cost"] = self.max_llm_cost - self.llm_cost
        if self.max_seconds is not None:
            out["seconds"] = self.max_seconds - self.seconds
        return out

    def postfix(self) -> str:
        """RunBudget spent / limit for the progress bar."""
        parts = []
        if self.max_metric_calls is not None:
            parts.append(f"calls={self.metric_calls}/{self.max_metric_calls}")
        else:
            parts.append(f"calls={self.metric_calls}")
        if self.max_llm_cost is not None:
            parts.append(f"cost={self.llm_cost:.3g}/{self.max_llm_cost:g}")
        if self.max_seconds is not None:
            parts.append(f"time={self.seconds:.0f}/{self.max_seconds:g}s")
        return " ".join(parts)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (limits come from the new run's arguments)."""
        return {"metric_calls": self.metric_calls, "llm_cost": self.llm_cost, "seconds": self.seconds,
                "worst_step": dict(self.worst_step)}

    def load_state_dict(self, state: Any) -> None:
        """Restore what was spent; a malformed state raises StateDictError and changes nothing."""
        from tracekit.errors import StateDictError

        try:
            metric_calls = int(state.get("metric_calls", 0))
            llm_cost = float(state.get("llm_cost", 0.0))
            seconds = float(state.get("seconds", 0.0))
            worst = {str(k): float(v) for k, v in dict(state.get("worst_step", {})).items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise StateDictError(f"checkpoint 'budget' entry is malformed ({exc}); it is damaged") from None
        if metric_calls < 0 or min(llm_cost, seconds, *worst.values(), 0.0) < 0:
            raise StateDictError("checkpoint 'budget' entry has a negative amount spent; it is damaged")
        self.metric_calls, self.llm_cost, self.seconds, self.worst_step = metric_calls, llm_cost, seconds, worst
        self.exhausted = None
