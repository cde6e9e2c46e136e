"""Experiment tracking with MLflow: a `tk.Callback` that logs a Trainer run as an MLflow run.

    from tracekit.integrations.mlflow import MLflowCallback
    trainer = tk.Trainer(agent, opt, metric, train=train, val=val, run_dir="runs/a",
                         callbacks=[MLflowCallback(experiment="triage", tracking_uri="mlruns")])
    trainer.fit()

Needs `pip install "tracekit[mlflow]"` (mlflow-skinny: the tracking client, no server).
What one run holds:

- parameters: the Trainer's settings (`trainer.*`), the optimizer's defaults and the
  options of each param group that differ (`optimizer.*`), each trained parameter's kind
  (`param.<name>.kind`), the sizes of the data (`data.*`);
- metrics per step (the run log's step): train_score, val_score, best_score, train_loss
  (when the metric gives losses), llm_calls, prompt_tokens, completion_tokens, tokens,
  cost and their running totals (total_*), spent_metric_calls, seconds, improved,
  reverted, val_errors, each number-valued parameter as `param.<name>`, and with
  `Trainer(objectives=...)` each objective's validation mean as `val_score.<name>`;
- artifacts per step: `params/step_0003.json`, every parameter's value after the step
  (text in full) and the step's changes with their whole reasons;
- artifacts at the end: `best/params.json` (the best values, which the workflow holds
  after `fit`), `summary.json`, `run.png` (the run plot, when matplotlib is installed),
  `front.json` (with `objectives=`: the Pareto front's members, their scores and values),
  `graph.svg` or `graph.png` (the traced graph of one training example run once more
  with the best values; `graph=False` skips that call), and the run directory's files
  under `run_dir/` (checkpoint, log.jsonl, best.json, summary.json);
- summary metrics (initial_score, final_score, best_step, steps) and the tags
  `tracekit.stop_reason`, `tracekit.best_step`.

`tracking_uri`: None uses MLflow's own setting (`MLFLOW_TRACKING_URI`, else its default);
a URI (`sqlite:///...`, `http://...`, `file:...`, `databricks`) is used as given; a plain
directory (str or Path) is a local store: the runs in `DIR/mlflow.db` (SQLite) and the
artifacts under `DIR/artifacts`, readable with `mlflow ui --backend-store-uri
sqlite:///DIR/mlflow.db` or `MlflowClient`. (MLflow 3 keeps the older `file:` store in
maintenance mode: a `file:` URI needs `MLFLOW_ALLOW_FILE_STORE=true`.)

With `run_dir` and `resume=True`, a resumed run continues the same MLflow run (its id is
kept in `RUN_DIR/mlflow_run.json`); without it, the new MLflow run is given the history
of the resumed run first. Logging failures never stop training (see `tk.Callback`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tracekit.training.callbacks import Callback
from tracekit.training.checkpoint import CHECKPOINT_FILE, jsonable
from tracekit.training.results import TrainResult

logger = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"  # in the run directory: the MLflow run a resumed run continues
PARAM_CHARS = 500  # MLflow's smallest limit on a parameter's value (older servers)
_STEP_METRICS = ("train_score", "val_score", "best_score", "train_loss", "llm_calls", "prompt_tokens",
                 "completion_tokens", "cost", "spent_metric_calls", "seconds", "train_errors", "val_errors")
_TOTALS = ("llm_calls", "tokens", "cost")

#: the trainer's type, named in annotations only
Trainer = Any


def _require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ImportError('MLflowCallback needs MLflow: pip install "tracekit[mlflow]" '
                          '(or mlflow-skinny, or mlflow)') from None
    return mlflow


def resolve_tracking_uri(tracking_uri: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    """(tracking URI, artifact location for new experiments): a URI as given; a plain
    directory as a local SQLite store `DIR/mlflow.db` with artifacts in `DIR/artifacts`."""
    if tracking_uri is None:
        return None, None
    text = os.fspath(tracking_uri)
    scheme = text.split(":", 1)[0] if ":" in text else ""
    if text == "databricks" or (isinstance(tracking_uri, str) and len(scheme) > 1
                                and all(c.isalnum() or c in "+-." for c in scheme)):
        return text, None
    root = Path(text).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}", (root / "artifacts").as_uri()


class MLflowCallback(Callback):
    """Logs a Trainer run to MLflow: settings as parameters, scores, usage and number-valued
    parameters as metrics per step, every parameter's value per step and the best values,
    the run plot, the graph and the run directory as artifacts (see the module doc).

    Arguments:
      experiment: the MLflow experiment's name (created when missing).
      tracking_uri: where runs go: None (MLflow's setting), a URI, or a local directory.
      run_name: the MLflow run's name (default: MLflow's).
      run_id: log into this existing run (e.g. `mlflow.active_run().info.run_id`); it is
        not ended by the callback.
      tags: extra tags for the run.
      graph: at the end, run one training example once more with the best values, traced,
        and log a picture of its graph (one more workflow call, outside the budgets).
      plot: log the run plot (`tk.plot_run`) when matplotlib is installed.
      step_params: log `params/step_NNNN.json` after every step.
    """

    def __init__(self, experiment: str = "tracekit", tracking_uri: str | os.PathLike[str] | None = None,
                 run_name: str | None = None, *, run_id: str | None = None,
                 tags: dict[str, Any] | None = None, graph: bool = True, plot: bool = True,
                 step_params: bool = True) -> None:
        if not isinstance(experiment, str) or not experiment:
            raise TypeError(f"experiment must be a non-empty str, got {experiment!r}")
        _require_mlflow()
        self.experiment = experiment
        self.tracking_uri, self._artifact_location = resolve_tracking_uri(tracking_uri)
        self.run_name = run_name
        self.run_id: str | None = run_id
        self._own_run = run_id is None  # a run this callback made, which it also ends
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.graph = graph
        self.plot = plot
        self.step_params = step_params
        self.client: Any = None
        self._logged: int | None = None  # records of trainer.history logged so far
        self._continued = False  # a resumed run continues its MLflow run

    # --- the run ---------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self.client is None:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(self.tracking_uri)
            if self.tracking_uri is None:
                import mlflow

                self.tracking_uri = mlflow.get_tracking_uri()
        return self.client

    def _experiment_id(self) -> str:
        client = self._client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(self.experiment, artifact_location=self._artifact_location))
        except Exception:  # made meanwhile by another process
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def on_run_start(self, trainer: Trainer) -> None:
        client = self._client()
        self._logged, self._continued = None, False
        if self.run_id is None or self._own_run:
            self.run_id = self._resumed_run(trainer)
            self._continued = self.run_id is not None
            if self.run_id is None:
                tags = {"tracekit.workflow": type(trainer.workflow).__name__, **self.tags}
                run = client.create_run(self._experiment_id(), run_name=self.run_name, tags=tags)
                self.run_id = run.info.run_id
            else:
                client.update_run(self.run_id, status="RUNNING")
            if trainer.run_dir is not None:
                Path(trainer.run_dir).mkdir(parents=True, exist_ok=True)
                (Path(trainer.run_dir) / RUN_FILE).write_text(json.dumps(
                    {"run_id": self.run_id, "tracking_uri": self.tracking_uri}))
        self._log_params(trainer)

    def _resumed_run(self, trainer: Trainer) -> str | None:
        """The MLflow run of the run being resumed, when it is in this store."""
        if not (trainer.resume and trainer.run_dir is not None):
            return None
        run_dir = Path(trainer.run_dir)
        try:
            saved = json.loads((run_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not (run_dir / CHECKPOINT_FILE).exists() or saved.get("tracking_uri") != self.tracking_uri:
            return None
        try:
            run = self._client().get_run(saved["run_id"])
        except Exception:
            return None
        return str(run.info.run_id) if run.info.lifecycle_stage == "active" else None

    def _log_params(self, trainer: Trainer) -> None:
        from mlflow.entities import Param

        params = settings(trainer)
        if self._continued:  # parameters are set once; keep those the run has
            have = self._client().get_run(self.run_id).data.params
            params = {k: v for k, v in params.items() if k not in have}
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self._client().log_batch(self.run_id, params=items[i: i + 100])

    # --- steps -----------------------------------------------------------------------------------
    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        history = trainer.history
        if self._logged is None:  # the first record of this fit(): earlier ones came from a checkpoint
            self._logged = len(history) - 1 if self._continued else 0
        pending = history[self._logged:] or [record]
        for i, entry in enumerate(pending):
            self._log_record(entry, history[: self._logged + i + 1])
        self._logged = len(history)

    def _log_record(self, record: dict[str, Any], upto: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        step = int(record.get("step", len(upto) - 1))
        stamp = int(1000 * record.get("time", time.time()))
        values: dict[str, Any] = {key: record.get(key) for key in _STEP_METRICS}
        values["tokens"] = record.get("prompt_tokens", 0) + record.get("completion_tokens", 0)
        for key in _TOTALS:
            values[f"total_{key}"] = sum(_tokens(r) if key == "tokens" else (r.get(key) or 0) for r in upto)
        for key in ("improved", "reverted"):
            if record.get(key) is not None:
                values[key] = float(bool(record[key]))
        for name, value in (record.get("params") or {}).items():
            if isinstance(value, (int, float)):  # a bool too
                values[f"param.{_key(name)}"] = float(value)
        for name, value in (record.get("val_scores") or {}).items():  # objectives=: one metric each
            values[f"val_score.{_key(name)}"] = value
        metrics = [Metric(k, float(v), stamp, step) for k, v in values.items() if _finite(v)]
        self._client().log_batch(self.run_id, metrics=metrics)
        if self.step_params:
            text = json.dumps({"step": step, "params": record.get("params", {}),
                               "changes": record.get("changes", [])}, indent=2, default=str)
            self._client().log_text(self.run_id, text, f"params/step_{step:04d}.json")

    # --- the end ---------------------------------------------------------------------------------
    def on_run_end(self, trainer: Trainer, result: TrainResult) -> None:
        from mlflow.entities import Metric, RunTag

        client = self._client()
        stamp = int(1000 * time.time())
        summary: dict[str, Any] = {"initial_score": result.initial_score, "final_score": result.final_score,
                   "best_step": result.best_step, "steps": result.steps}
        metrics = [Metric(k, float(v), stamp, result.steps) for k, v in summary.items() if _finite(v)]
        tags = [RunTag("tracekit.stop_reason", str(result.stop_reason)[:5000]),
                RunTag("tracekit.best_step", str(result.best_step))]
        client.log_batch(self.run_id, metrics=metrics, tags=tags)
        client.log_text(self.run_id, json.dumps(jsonable(result.best_params), indent=2, default=str),
                        "best/params.json")
        client.log_text(self.run_id, json.dumps(result.to_dict(), indent=2, default=str), "summary.json")
        if result.front:
            client.log_text(self.run_id, json.dumps(jsonable(result.front), indent=2, default=str),
                            "front.json")
        with tempfile.TemporaryDirectory(prefix="tracekit-mlflow-") as tmp:
            if self.plot:
                self._log_plot(trainer, Path(tmp))
            if self.graph:
                self._log_graph(trainer, Path(tmp))
        if trainer.run_dir is not None and Path(trainer.run_dir).is_dir():
            client.log_artifacts(self.run_id, str(trainer.run_dir), "run_dir")
        if self._own_run:
            client.set_terminated(self.run_id, "FINISHED")

    def on_run_failed(self, trainer: Trainer, error: BaseException) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import RunTag

        client = self._client()
        client.log_batch(self.run_id, tags=[RunTag("tracekit.error", f"{type(error).__name__}: {error}"[:5000])])
        if self._own_run:
            client.set_terminated(self.run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    def _log_plot(self, trainer: Trainer, tmp: Path) -> None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            logger.info("MLflowCallback: matplotlib is not installed; no run plot")
            return
        from tracekit.pictures.run_plot import plot_run

        try:
            path = plot_run(trainer.history, tmp / "run.png", title=f"{self.experiment}: run")
        except Exception as exc:  # a plot is a nicety: the run's numbers are logged anyway
            logger.info("MLflowCallback: no run plot (%s: %s)", type(exc).__name__, exc)
            return
        self._client().log_artifact(self.run_id, str(path))

    def _log_graph(self, trainer: Trainer, tmp: Path) -> None:
        """The traced graph of the first training example, run with the best values."""
        import inspect

        from tracekit.nodes import Node
        from tracekit.pictures.graph_picture import render
        from tracekit.training.scoring import Evaluate

        try:
            done = Evaluate(trainer.workflow, trainer.metric, trainer.call, trainer.error_score, True)(
                (0, trainer.train_set[0]))
            if inspect.isawaitable(done):  # an async workflow: not run here
                getattr(done, "close", lambda: None)()
                return
            if not isinstance(done.output, Node):
                return
            import shutil

            path = render(done.output, tmp / ("graph.svg" if shutil.which("dot") else "graph.png"),
                          title=f"{self.experiment}: one training example")
        except Exception as exc:  # a picture is a nicety: skip it
            logger.info("MLflowCallback: no graph picture (%s: %s)", type(exc).__name__, exc)
            return
        self._client().log_artifact(self.run_id, str(path))


# --- what is logged -------------------------------------------------------------------------------
def settings(trainer: Trainer) -> dict[str, str]:
    """The run's settings as MLflow parameters (str values of at most `PARAM_CHARS`)."""
    budget = trainer.budget
    out: dict[str, Any] = {
        "trainer.batch_size": trainer.batch_size, "trainer.epochs": trainer.epochs,
        "trainer.max_steps": trainer.max_steps, "trainer.higher_is_better": trainer.higher_is_better,
        "trainer.error_score": trainer.error_score, "trainer.revert_on_worse": trainer.revert_on_worse,
        "trainer.patience": trainer.patience, "trainer.min_delta": trainer.min_delta,
        "trainer.executor": type(trainer.executor).__name__,
        "trainer.batch_objective": trainer.batch_objective, "trainer.feedback_chars": trainer.feedback_chars,
        "trainer.trace_examples": trainer.trace_examples, "trainer.seed": trainer.seed,
        "trainer.strategy": trainer.strategy.name, "trainer.max_metric_calls": budget.max_metric_calls,
        "trainer.max_llm_cost": budget.max_llm_cost, "trainer.max_seconds": budget.max_seconds,
        "trainer.run_dir": trainer.run_dir, "trainer.metric": _name(trainer.metric),
        "trainer.workflow": _name(trainer.workflow),
        "data.train_examples": len(trainer.train_set),
        "data.val_examples": len(trainer.val_set) if trainer.val_set is not None else None,
    }
    opt = trainer.optimizer
    defaults = dict(getattr(opt, "defaults", {}) or {})
    out.update({f"optimizer.{_key(k)}": v for k, v in defaults.items()})
    out["optimizer.type"] = type(opt).__name__
    llm = getattr(opt, "llm", None)
    if llm is not None:
        out["optimizer.llm"] = _name(llm) + (f" ({llm.model})" if isinstance(getattr(llm, "model", None), str)
                                             else "")
    for i, group in enumerate(getattr(opt, "param_groups", []) or []):
        for k, v in group.items():
            if k != "params" and (k not in defaults or defaults[k] is not v and defaults[k] != v):
                out[f"optimizer.group{i}.{_key(k)}"] = v
    for name, p in trainer.named_params:
        out[f"param.{_key(name)}.kind"] = p.kind
    return {k: _param_text(v) for k, v in out.items()}


def _name(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__)


def _param_text(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = str(value)
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(jsonable(value), default=str)
    else:
        text = _name(value) if callable(value) else repr(value)
    return text if len(text) <= PARAM_CHARS else text[: PARAM_CHARS - 3] + "..."


def _key(name: str) -> str:
    """A name as MLflow accepts it in keys (letters, digits, _ - . / and spaces)."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))


def _tokens(record: dict[str, Any]) -> int:
    return int(record.get("prompt_tokens", 0) or 0) + int(record.get("completion_tokens", 0) or 0)


def _finite(value: Any) -> bool:
    """A value MLflow can log as a metric: a bool or a finite number."""
    return isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value))
