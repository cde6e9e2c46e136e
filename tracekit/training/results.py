"""What evaluations and runs return: `EvalResult` (a dataset's scores) and `TrainResult`
(a run's summary, also `summary.json`), and the LLM usage of a step report as run-log
fields. Used by `tracekit.training.trainer.Trainer` (and re-exported there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.llm.accounting import REPORT_FIELDS, Usage
from tracekit.nodes import short_repr
from tracekit.training import checkpoint as ckpt
from tracekit.training.scoring import ExampleResult


def oriented(score: float | None, higher_is_better: bool, error_score: float) -> float:
    """One example's score turned so that higher is better (no score: the error score)."""
    value = score if score is not None else error_score
    return value if higher_is_better else -value


def oriented_scores(trainer: Any, result: EvalResult) -> list[float]:
    """A result's per-example scores, higher is better: what the pool search ranks
    candidates on and staged validation compares them on."""
    return [oriented(r.score, trainer.higher_is_better, trainer.error_score) for r in result.results]


@dataclass
class EvalResult:
    """Scores of a dataset: the mean score and one `ExampleResult` per example, in order."""

    score: float | None
    results: list[ExampleResult]

    @property
    def errors(self) -> int:
        return sum(1 for r in self.results if r.error)

    def objective_means(self, names: Sequence[str]) -> dict[str, float | None]:
        """Per-objective means under `Trainer(objectives=...)` (names: the primary first): the
        primary is `score` (failed examples count as the error score); each other objective is
        the mean over the examples that gave it (None when none did)."""
        means: dict[str, float | None] = {names[0]: self.score}
        for name in names[1:]:
            values = [r.scores[name] for r in self.results if r.scores and r.scores.get(name) is not None]
            means[name] = sum(values) / len(values) if values else None
        return means


@dataclass
class TrainResult:
    """The summary of a run (also written to `summary.json` in the run directory)."""

    initial_score: float | None
    best_score: float | None
    final_score: float | None
    best_step: int
    steps: int
    stop_reason: str
    best_params: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    higher_is_better: bool = True
    run_dir: str | None = None
    strategy: str = "greedy"
    #: what was spent (metric_calls, llm_cost, seconds) and what is left of each set budget
    budget: dict[str, Any] = field(default_factory=dict)
    #: pool searches: the best candidate's lineage and the pool's Pareto front over
    #: validation examples (the front candidates' lineages)
    best_candidate: dict[str, Any] | None = None
    pool_front: list[dict[str, Any]] = field(default_factory=list)
    #: the run's Pareto front (`run_front`): with `objectives=`, the non-dominated validated
    #: steps as {step, scores, params}; else, with a pool search, `pool_front`
    front: list[dict[str, Any]] = field(default_factory=list)
    #: `objectives=` as declared, {name: "max" | "min"}, the primary first (None without)
    objectives: dict[str, str] | None = None

    def run_front(self, objectives_front: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Which front `front` is: the objectives' when declared (what a user ships from),
        else the pool's; `tracekit show` follows the same rule."""
        return objectives_front if objectives_front is not None else list(self.pool_front)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (history left out: it is the run log)."""
        return {k: ckpt.jsonable(v) for k, v in self.__dict__.items() if k != "history"}

    def __str__(self) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        score = next(iter(self.objectives)) if self.objectives else "score"  # the primary objective
        lines = [
            f"training: {self.steps} steps, stopped: {self.stop_reason}",
            f"  validation {score} ({direction}): {_fmt(self.initial_score)} before -> "
            f"{_fmt(self.best_score)} best (step {self.best_step}); last step {_fmt(self.final_score)}",
            f"  LLM: {self.llm_calls} calls, {self.prompt_tokens + self.completion_tokens} tokens "
            f"({self.prompt_tokens} prompt + {self.completion_tokens} completion), cost {self.cost:.4g}",
            f"  time: {self.seconds:.1f}s" + (f"; run directory {self.run_dir}" if self.run_dir else ""),
        ]
        if self.budget:
            spent = self.budget.get("spent", {})
            lines.append(f"  budget: {spent.get('metric_calls', 0)} metric calls spent"
                         + "".join(f"; {k} left {v:.4g}" for k, v in self.budget.get("left", {}).items()))
        if self.best_candidate is not None:
            lines.append(f"  search ({self.strategy}): best candidate {self.best_candidate['id']} "
                         f"(parents {self.best_candidate['parents']}); Pareto front "
                         f"{[c['id'] for c in self.pool_front]}")
        if self.objectives:
            lines.append(f"  objectives: {', '.join(f'{n} ({d})' for n, d in self.objectives.items())}; "
                         f"Pareto front: {len(self.front)} step(s)")
            for m in self.front:
                lines.append(f"    step {m['step']}: " + ", ".join(
                    f"{n} {_fmt(m['scores'].get(n))}" for n in self.objectives))
        lines.append("  best parameters:")
        for name, value in self.best_params.items():
            lines.append(f"    {name} = {short_repr(value, 100)}")
        return "\n".join(lines)


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.4g}"


def _usage(report: Any) -> dict[str, Any]:
    """LLM calls, tokens and cost of a step report, as run-log fields. When the optimizer's
    `llm` has no accounting (a plain callable), the text solvers' own per-step usage (the
    `llm_usage` of their report info) is used."""
    if report is None:
        return Usage().report_fields()
    usage = Usage.from_report(report)
    if usage.calls or usage.prompt_tokens:
        return usage.report_fields()
    seen: set[str] = set()
    for c in report.changes:
        spent = (c.info or {}).get("llm_usage")
        if isinstance(spent, Usage) and c.solver not in seen:
            seen.add(c.solver)
            usage = usage + spent
    return usage.report_fields()


def step_usage(report: Any, scope: Usage | None) -> dict[str, Any]:
    """LLM calls, tokens and cost of a step so far, as run-log fields: every backend call
    this process made during the step (`scope`: the optimizer's and those of workflows run
    in-process, each counted once even when they share a backend), plus the calls the
    report counted outside any backend (see `_usage`). Without a scope: the report's."""
    if scope is None:
        return _usage(report)
    reported = Usage.from_report(report) if report is not None else Usage()
    extra = Usage()
    if report is not None and not (reported.calls or reported.prompt_tokens):
        fields = _usage(report)  # a plain callable's usage, which no backend recorded
        extra = Usage(**{key: fields[name] for key, name in REPORT_FIELDS.items()})
    return (scope + extra).report_fields()
