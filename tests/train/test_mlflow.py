"""MLflowCallback (tracekit/integrations/mlflow.py) against a real local MLflow store in
tmp_path, read back through MLflow's own client: parameters, metrics per step, artifacts,
the run's status; a resumed run continues its MLflow run; the flagship example's
`--mlflow` flag (scripted LLM, no model needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit as tk
from tests.train.helpers import DATA, KeywordModel, accuracy

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from tracekit.integrations.mlflow import MLflowCallback, resolve_tracking_uri  # noqa: E402
from tracekit.training import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOOD = "good, great, nice, lovely"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One local store for the module (creating MLflow's tables takes seconds)."""
    return tmp_path_factory.mktemp("mlruns")


def scripted_llm(messages, **kwargs):
    """A plain callable LLM: always proposes the full keyword list."""
    return json.dumps({"reasoning": "add the positive words", "suggestion": {"keywords": GOOD}})


def fit(store, run_dir, callback, max_steps=3, resume=False, **kw):
    model = KeywordModel()
    opt = tk.Optimizer(model.parameters(), llm=scripted_llm)
    trainer = Trainer(model, opt, accuracy, train=DATA, val=DATA, batch_size=4, max_steps=max_steps,
                      executor="serial", progress=False, run_dir=run_dir, resume=resume,
                      callbacks=[callback], **kw)
    return trainer, trainer.fit()


def artifacts(client, run_id, path=None):
    out = []
    for a in client.list_artifacts(run_id, path):
        out.extend(artifacts(client, run_id, a.path) if a.is_dir else [a.path])
    return out


def read_artifact(client, run_id, path, tmp_path):
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


def history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_a_run_is_logged_and_read_back_through_mlflow(store, tmp_path):
    cb = MLflowCallback("trainer-test", tracking_uri=store, run_name="keywords")
    trainer, result = fit(store, tmp_path / "run", cb)
    assert trainer.callback_errors == []
    client = MlflowClient(cb.tracking_uri)
    run = client.get_run(cb.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "keywords"
    assert client.get_experiment(run.info.experiment_id).name == "trainer-test"

    # parameters: the Trainer's and the optimizer's settings, the parameters' kinds
    params = run.data.params
    assert params["trainer.batch_size"] == "4" and params["trainer.max_steps"] == "3"
    assert params["trainer.strategy"] == "greedy" and params["trainer.metric"] == "accuracy"
    assert params["optimizer.numeric"] == "adam" and params["optimizer.llm"] == "scripted_llm"
    assert params["param.keywords.kind"] == "text" and params["param.threshold.kind"] == "numeric"
    assert params["data.train_examples"] == "8"

    # metrics per step, as in the run log
    h = result.history
    steps = list(range(len(h)))
    assert history(client, cb.run_id, "val_score") == [(i, r["val_score"]) for i, r in enumerate(h)]
    assert history(client, cb.run_id, "best_score") == [(i, r["best_score"]) for i, r in enumerate(h)]
    assert [s for s, _ in history(client, cb.run_id, "train_score")] == steps[1:]  # no minibatch at step 0
    tokens = [r["prompt_tokens"] + r["completion_tokens"] for r in h]
    assert [v for _, v in history(client, cb.run_id, "tokens")] == tokens and sum(tokens) > 0
    assert history(client, cb.run_id, "total_tokens")[-1][1] == result.prompt_tokens + result.completion_tokens
    assert [v for _, v in history(client, cb.run_id, "llm_calls")] == [r["llm_calls"] for r in h]
    assert [v for _, v in history(client, cb.run_id, "spent_metric_calls")] == [r["spent_metric_calls"] for r in h]
    assert [s for s, _ in history(client, cb.run_id, "cost")] == steps
    assert [v for _, v in history(client, cb.run_id, "param.threshold")] == [r["params"]["threshold"] for r in h]
    assert run.data.metrics["final_score"] == result.final_score
    assert run.data.tags["tracekit.stop_reason"] == "max_steps=3 reached"

    # artifacts: each step's values, the best values, the summary, the pictures, the run directory
    files = artifacts(client, cb.run_id)
    assert {f"params/step_{i:04d}.json" for i in steps} <= set(files)
    step1 = json.loads(read_artifact(client, cb.run_id, "params/step_0001.json", tmp_path / "a"))
    assert step1["params"]["keywords"] == GOOD
    assert step1["changes"][0]["reason"] == h[1]["changes"][0]["reason"]  # the whole reason
    best = json.loads(read_artifact(client, cb.run_id, "best/params.json", tmp_path / "b"))
    assert best == result.best_params and best["keywords"] == GOOD
    summary = json.loads(read_artifact(client, cb.run_id, "summary.json", tmp_path / "c"))
    assert summary["best_score"] == result.best_score == 1.0
    assert {"run_dir/log.jsonl", "run_dir/summary.json", "run_dir/best.json", "run_dir/checkpoint.json"} <= set(files)
    assert "run.png" in files  # matplotlib is a dev dependency
    assert {"graph.svg", "graph.png"} & set(files)


def test_a_resumed_run_continues_its_mlflow_run(store, tmp_path):
    first = MLflowCallback("resume-test", tracking_uri=store)
    fit(store, tmp_path / "run", first, max_steps=1)
    second = MLflowCallback("resume-test", tracking_uri=store)
    _, result = fit(store, tmp_path / "run", second, max_steps=3, resume=True)
    assert second.run_id == first.run_id
    client = MlflowClient(second.tracking_uri)
    assert [s for s, _ in history(client, second.run_id, "val_score")] == [0, 1, 2, 3]  # each step once
    assert client.get_run(second.run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(second.run_id).info.experiment_id])) == 1


def test_a_new_mlflow_run_of_a_resumed_run_gets_its_history(store, tmp_path):
    fit(store, tmp_path / "run", MLflowCallback("backfill-test", tracking_uri=store), max_steps=1)
    (tmp_path / "run" / "mlflow_run.json").unlink()  # as if the first run was not tracked
    cb = MLflowCallback("backfill-test", tracking_uri=store, graph=False, plot=False)
    fit(store, tmp_path / "run", cb, max_steps=2, resume=True)
    client = MlflowClient(cb.tracking_uri)
    assert [s for s, _ in history(client, cb.run_id, "val_score")] == [0, 1, 2]


def test_a_failed_run_is_marked_failed(store, tmp_path):
    cb = MLflowCallback("failure-test", tracking_uri=store)
    model = KeywordModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters(), llm=scripted_llm), lambda p, e: "text only",
                      train=DATA, progress=False, executor="serial", callbacks=[cb])
    with pytest.raises(ValueError, match="validation needs a score"):
        trainer.fit()
    run = MlflowClient(cb.tracking_uri).get_run(cb.run_id)
    assert run.info.status == "FAILED" and run.data.tags["tracekit.error"].startswith("ValueError")


def test_a_file_store_uri_is_used_as_given(tmp_path, monkeypatch):
    """MLflow's `file:` store (maintenance mode in MLflow 3: opted in by its variable)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    cb = MLflowCallback("file-store", tracking_uri=uri, graph=False, plot=False)
    _, result = fit(None, None, cb, max_steps=1)
    client = MlflowClient(uri)
    assert [s for s, _ in history(client, cb.run_id, "best_score")] == [0, 1]
    assert "best/params.json" in artifacts(client, cb.run_id)
    assert (tmp_path / "mlruns").is_dir()


def test_tracking_uris_and_directories():
    assert resolve_tracking_uri(None) == (None, None)
    assert resolve_tracking_uri("http://localhost:5000") == ("http://localhost:5000", None)
    assert resolve_tracking_uri("databricks") == ("databricks", None)
    uri, artifacts_at = resolve_tracking_uri(Path("/tmp/tracekit-mlruns-test"))
    assert uri == "sqlite:////tmp/tracekit-mlruns-test/mlflow.db"
    assert artifacts_at == "file:///tmp/tracekit-mlruns-test/artifacts"
    with pytest.raises(TypeError, match="experiment"):
        MLflowCallback("")


RUNNER = r"""
import json, runpy, sys
import tracekit as tk
def scripted(messages, **kwargs):
    prompt = json.dumps(messages)
    suggestion = {}
    if "cue_words" in prompt:
        suggestion["cue_words"] = "urgent, down, crash, broken, outage, locked, charged, loss, breach, failed"
    if "match" in prompt:
        suggestion["match"] = "prefix"
    return json.dumps({"reasoning": "cover the missed urgent tickets", "suggestion": suggestion})
tk.llm.set_default(scripted)
sys.argv = [sys.argv[1], "--quick", "--run-dir", sys.argv[2], "--mlflow", sys.argv[3]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_flagship_example_logs_to_mlflow(tmp_path):
    """`examples/joint_prompt_and_hyperparameters.py --quick --mlflow DIR` with a scripted LLM."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    example = ROOT / "examples" / "joint_prompt_and_hyperparameters.py"
    done = subprocess.run([sys.executable, "-c", RUNNER, str(example), str(tmp_path / "run"),
                           str(tmp_path / "mlruns")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 1: train" in done.stdout  # StepPrinter's line for the step
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("joint_prompt_and_hyperparameters")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in done.stderr
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert history(client, run.info.run_id, "val_score") == [(r["step"], r["val_score"]) for r in log]
    assert [s for s, _ in history(client, run.info.run_id, "param.threshold")] == [0, 1, 2]
    assert run.data.params["param.cue_words.kind"] == "text" and run.data.params["trainer.batch_size"] == "12"
    files = artifacts(client, run.info.run_id)
    assert {"params/step_0000.json", "params/step_0002.json", "best/params.json", "run_dir/log.jsonl"} <= set(files)
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


def test_each_objective_is_a_metric_and_the_front_an_artifact(store, tmp_path):
    """objectives=: every full validation's per-objective means as `val_score.<name>`, the
    Pareto front as `front.json`."""
    def scores(prediction, example):
        right = float(prediction == example[1])
        return {"accuracy": right, "words": float(len(str(prediction)))}

    cb = MLflowCallback("trainer-objectives", tracking_uri=store)
    model = KeywordModel()
    opt = tk.Optimizer(model.parameters(), llm=scripted_llm)
    trainer = Trainer(model, opt, scores, train=DATA, val=DATA, batch_size=4, max_steps=2, executor="serial",
                      progress=False, callbacks=[cb], objectives={"accuracy": "max", "words": "min"})
    result = trainer.fit()
    assert trainer.callback_errors == []
    client = MlflowClient(cb.tracking_uri)
    validated = [(i, r["val_scores"]) for i, r in enumerate(result.history) if r.get("val_scores")]
    assert validated and history(client, cb.run_id, "val_score.accuracy") == [(i, s["accuracy"]) for i, s in validated]
    assert history(client, cb.run_id, "val_score.words") == [(i, s["words"]) for i, s in validated]
    front = json.loads(read_artifact(client, cb.run_id, "front.json", tmp_path / "f"))
    assert front == json.loads(json.dumps(result.front)) and front
    assert all(set(m["scores"]) == {"accuracy", "words"} for m in front)
