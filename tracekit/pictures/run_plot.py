"""Pictures of training runs: `plot_run` (tk.plot_run) and the series it draws.

A run log holds one JSON record per step (the trainer's `run_dir/log.jsonl`, see
`tracekit.training.checkpoint`); it is read by the trainer's own reader. `run_series`
picks the metrics, tokens and cost out of the records; `plot_run` draws them.
Pictures of traced graphs are in `tracekit.pictures.graph_picture`. matplotlib is imported
only when a picture is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracekit.pictures.graph_picture import mpl_escape

__all__ = ["plot_run", "read_run_log", "run_series", "SCORE_KEYS"]

SCORE_KEYS = ("train_score", "val_score", "best_score", "score", "train_loss", "val_loss", "loss")


def read_run_log(log: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records of a run log, read by the trainer's own reader so that both agree.

    `log`: a JSONL file path or a run directory holding `log.jsonl` (as written by
    `tk.Trainer(run_dir=...)`), read by `tracekit.training.checkpoint.read_log` (a line
    cut by a crash is skipped); or an iterable of dicts. Records that are not JSON objects
    are left out.
    """
    if isinstance(log, (str, os.PathLike)):
        from tracekit.training.checkpoint import read_log

        return [r for r in read_log(log) if isinstance(r, dict)]
    return [dict(r) for r in log]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _tokens_of(r: Mapping[str, Any]) -> float | None:
    t = _number(r.get("tokens"))
    if t is None and ("prompt_tokens" in r or "completion_tokens" in r):
        parts = [_number(r.get("prompt_tokens")), _number(r.get("completion_tokens"))]
        t = sum(p for p in parts if p is not None)
    return t


#: What `plot_run` can put on the x axis: the step, or a budget spent so far.
X_AXES = {"step": "step", "spent_metric_calls": "metric calls spent", "spent_cost": "LLM cost spent",
          "spent_seconds": "seconds spent"}


def _x_values(records: Sequence[Mapping[str, Any]], x: str) -> list[float | None]:
    """The x value of each record: its step (else its position), or a running total of a
    budget (`spent_metric_calls` as logged; cost and seconds summed from the steps)."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {sorted(X_AXES)}, got {x!r}")
    out: list[float | None] = []
    total = 0.0
    for i, r in enumerate(records):
        if x == "step":
            step = _number(r.get("step"))
            out.append(float(i) if step is None else step)
        elif x == "spent_metric_calls":
            out.append(_number(r.get("spent_metric_calls")))
        else:
            total += _number(r.get("cost" if x == "spent_cost" else "seconds")) or 0.0
            out.append(total)
    return out


def run_series(records: Sequence[Mapping[str, Any]], x: str = "step") -> dict[str, tuple[list[float], list[float]]]:
    """Series found in run records: name -> (x values, values), only those with a value.
    `x`: "step" (default) or a budget spent so far: "spent_metric_calls", "spent_cost",
    "spent_seconds" (records without it are left out)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    xs_all = _x_values(records, x)
    for r, step in zip(records, xs_all):
        if step is None:
            continue
        values = {k: _number(r.get(k)) for k in SCORE_KEYS}
        values["tokens"] = _tokens_of(r)
        values["cost"] = _number(r.get("cost"))
        for k, v in values.items():
            if v is not None:
                xs, ys = series.setdefault(k, ([], []))
                xs.append(step)
                ys.append(v)
    return series


def plot_run(log_path_or_records: str | os.PathLike | Iterable[Mapping[str, Any]],
             path: str | os.PathLike, *, title: str | None = None, dpi: int = 150,
             x: str = "step") -> Path:
    """Plot a run log to `path` (`.png`, `.svg` or `.pdf`) and return the path.

    The log is a JSONL file with one JSON object per step, a run directory holding
    `log.jsonl` (the trainer's `run_dir`), or a list of such dicts.
    Keys read, each optional: `step` (else the record's position); the metrics
    `train_score`, `val_score`, `best_score`, `score` (higher is better) and
    `train_loss`, `val_loss`, `loss`; `tokens` LLM tokens spent in the step (else
    `prompt_tokens` + `completion_tokens`); `cost` the step's cost. Other keys are ignored, as are records
    without any of these (e.g. a header line). Panels: scores per step; losses per step;
    tokens per step (bars) with the running total; cost per step with the running total
    (left out when every cost is 0, as on the local model). The title gives the totals.
    `x`: what the x axis shows: "step" (default), or the budget spent so far --
    "spent_metric_calls" (score vs metric calls, for runs with a budget), "spent_cost",
    "spent_seconds".
    With several objectives (`tk.Trainer(objectives=...)`: records with `val_scores`), a last
    panel plots every validated step on the first two objectives, the Pareto front
    highlighted and joined as a step line (`front_panel`).
    """
    from tracekit.training.front import front_of_log

    records = read_run_log(log_path_or_records)
    series = run_series(records, x)
    found = front_of_log(records)
    front = found if found is not None and len(found[0].names) >= 2 and found[1] else None
    score_keys = [k for k in SCORE_KEYS if k in series and "score" in k]
    loss_keys = [k for k in SCORE_KEYS if k in series and "loss" in k]
    panels: list[str] = []
    if score_keys:
        panels.append("score")
    if loss_keys:
        panels.append("loss")
    if "tokens" in series:
        panels.append("tokens")
    if "cost" in series and any(v != 0 for v in series["cost"][1]):
        panels.append("cost")  # a run on the free local model has no cost panel
    if not panels:
        raise ValueError("the run log has no step with a metric (train_score, val_score, score, "
                         "loss, ...), tokens or cost to plot")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"plot_run writes .svg, .png or .pdf files, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)

    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        if front is None:
            fig = Figure(figsize=(7.5, 2.3 * len(panels) + 0.6), layout="constrained")
            axes = list(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
        else:  # the time panels share their x axis; the front panel has the objectives' axes
            fig = Figure(figsize=(7.5, 2.3 * len(panels) + 4.0), layout="constrained")
            grid = fig.add_gridspec(len(panels) + 1, 1, height_ratios=[1.0] * len(panels) + [1.5])
            axes = [fig.add_subplot(grid[0])]
            axes += [fig.add_subplot(grid[i], sharex=axes[0]) for i in range(1, len(panels))]
            for ax in axes[:-1]:
                ax.tick_params(labelbottom=False)
            front_panel(fig.add_subplot(grid[len(panels)]), *front)
        colors = {"train_score": "#1f77b4", "val_score": "#d62728", "best_score": "#7f7f7f",
                  "score": "#2ca02c",
                  "train_loss": "#1f77b4", "val_loss": "#d62728", "loss": "#2ca02c"}
        for ax, panel in zip(axes, panels):
            ax.grid(True, alpha=0.3)
            if panel in ("score", "loss"):
                for k in score_keys if panel == "score" else loss_keys:
                    xs, ys = series[k]
                    best = k == "best_score"
                    ax.plot(xs, ys, marker="" if best else "o", ms=3, lw=1.2 if best else 1.6,
                            ls="--" if best else "-", color=colors[k], label=k,
                            drawstyle="steps-post" if best else "default")
                ax.set_ylabel(panel + (" (higher is better)" if panel == "score" else " (lower is better)"),
                              fontsize=9)
                ax.legend(fontsize=8, loc="best")
            else:
                xs, ys = series[panel]
                color = "#9467bd" if panel == "tokens" else "#ff7f0e"
                width = _bar_width(xs)
                ax.bar(xs, ys, width=width, color=color, alpha=0.55, label=f"{panel} per step")
                ax.set_ylabel(f"{panel} / step" if panel == "tokens" else "cost / step")
                twin = ax.twinx()
                running = _cumsum(ys)
                twin.plot(xs, running, color=color, lw=1.8, label="running total")
                twin.set_ylabel("total")
                twin.set_ylim(bottom=0)
                h1, l1 = ax.get_legend_handles_labels()
                h2, l2 = twin.get_legend_handles_labels()
                ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
        axes[-1].set_xlabel(X_AXES[x])
        if x in ("step", "spent_metric_calls"):
            axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        totals = []
        if "tokens" in series:
            totals.append(f"{int(sum(series['tokens'][1])):,} tokens")
        if "cost" in series:
            totals.append(f"cost {sum(series['cost'][1]):.4g}")
        heading = title or "training run"
        if totals:
            heading += "  (" + ", ".join(totals) + ")"
        fig.suptitle(mpl_escape(heading), fontsize=12)
        fig.savefig(path, format=fmt, dpi=dpi, facecolor="white")
    return path


def front_panel(ax: Any, objectives: Any, validated: Sequence[Any], front: Any) -> None:
    """Draw every validated step on the first two objectives (`tracekit.training.front`
    `Objectives`, members), the front members highlighted and joined as a step line."""
    (xname, xdir), (yname, ydir) = objectives.pairs[:2]
    on_front = {m.step for m in front.members}
    rest = [m for m in validated if m.step not in on_front]
    ax.grid(True, alpha=0.3)
    ax.scatter([m.scores[xname] for m in rest], [m.scores[yname] for m in rest], s=22, color="#9e9e9e",
               label="validated step", zorder=2)
    members = sorted(front.members, key=lambda m: (m.scores[xname], m.scores[yname]))
    xs, ys = [m.scores[xname] for m in members], [m.scores[yname] for m in members]
    # the border of what the front dominates: a member holds up to the next one in x's worse direction
    ax.plot(xs, ys, color="#d62728", lw=1.4, drawstyle="steps-pre" if xdir == "max" else "steps-post",
            zorder=3)
    ax.scatter(xs, ys, s=46, color="#d62728", edgecolor="black", linewidth=0.6, label="Pareto front", zorder=4)
    for m in validated:
        ax.annotate(str(m.step), (m.scores[xname], m.scores[yname]), xytext=(4, 3),
                    textcoords="offset points", fontsize=7, color="#444444")
    words = {"max": "higher is better", "min": "lower is better"}
    ax.set_xlabel(mpl_escape(f"{xname} ({xdir}: {words[xdir]})"), fontsize=9)
    ax.set_ylabel(mpl_escape(f"{yname} ({ydir}: {words[ydir]})"), fontsize=9)
    more = len(objectives.pairs) - 2
    ax.set_title(mpl_escape(f"Pareto front: {len(members)} of {len(validated)} validated step(s)"
                            + (f" (first two of {more + 2} objectives)" if more else "")), fontsize=10)
    ax.legend(fontsize=8, loc="best")


def _bar_width(xs: Sequence[float]) -> float:
    gaps = [b - a for a, b in zip(xs, xs[1:]) if b > a]
    return 0.7 * (min(gaps) if gaps else 1.0)


def _cumsum(values: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out
