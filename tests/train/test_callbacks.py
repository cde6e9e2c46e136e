"""Trainer callbacks (tracekit/training/callbacks.py): the hooks' order and arguments, pool
search steps, resumed runs, a raising callback (warned about, the run goes on), a failed
run, the run log's train_loss, and StepPrinter's one-line-per-parameter output."""

from __future__ import annotations

import warnings

import pytest
import torch

import tracekit as tk
from tests.train.helpers import (
    DATA,
    KeywordModel,
    ModulesModel,
    accuracy,
    register_plan,
    register_subset_proposer,
    solved_metric,
)
from tracekit.seam import ParamUpdate
from tracekit.training import Callback, CallbackWarning, Score, StepPrinter, Trainer
from tracekit.training.callbacks import step_lines

LONG_REASON = ("explored: a recombination of pieces of values seen, because the model only gave values "
               "that cannot be used (pasted from the prompt, or of another form) (keywords: the current "
               "value is a comma-separated list (of single words); propose a value not tried yet)")


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_run_start(self, trainer):
        self.events.append(("start", len(trainer.history)))

    def on_validation(self, trainer, step, result):
        self.events.append(("validation", step, result.score, len(result.results)))

    def on_step_end(self, trainer, record):
        assert record is trainer.history[-1]
        self.events.append(("step", record["step"], record["val_score"]))

    def on_run_end(self, trainer, result):
        self.events.append(("end", result.steps, result.best_score))

    def on_run_failed(self, trainer, error):
        self.events.append(("failed", type(error).__name__))


def make_trainer(callbacks, **kw):
    model = KeywordModel()
    opt = tk.Optimizer([model.keywords])
    kw.setdefault("max_steps", 2)
    return Trainer(model, opt, accuracy, train=DATA, val=DATA, batch_size=4, progress=False,
                   executor="serial", batch_objective=False, callbacks=callbacks, **kw)


def test_hooks_run_in_order_with_the_step_records_and_the_result(empty_registry):
    register_plan("text", {"keywords": ["good, great", "good, great, nice, lovely"]})
    rec = Recorder()
    trainer = make_trainer([rec])
    result = trainer.fit()
    h = result.history
    assert rec.events == [
        ("start", 0),
        ("validation", 0, h[0]["val_score"], len(DATA)), ("step", 0, h[0]["val_score"]),
        ("validation", 1, h[1]["val_score"], len(DATA)), ("step", 1, h[1]["val_score"]),
        ("validation", 2, h[2]["val_score"], len(DATA)), ("step", 2, h[2]["val_score"]),
        ("end", 2, result.best_score),
    ]
    assert trainer.callback_errors == []


def test_pool_search_steps_reach_on_step_end(empty_registry):
    register_subset_proposer(seed=1)
    model = ModulesModel(start=1)
    rec = Recorder()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=list(range(20)),
                      val=list(range(20)), batch_size=4, max_steps=6, progress=False, executor="serial",
                      batch_objective=False, strategy="pareto", callbacks=[rec])
    result = trainer.fit()
    steps = [e[1] for e in rec.events if e[0] == "step"]
    assert steps == [r["step"] for r in result.history] == list(range(7))
    assert all(r.get("candidate") for r in result.history)  # pool-search records, accepted or not


def test_a_raising_callback_is_warned_about_and_the_run_goes_on(empty_registry):
    register_plan("text", {"keywords": ["good, great", "good, great, nice, lovely"]})

    class Broken(Callback):
        def on_step_end(self, trainer, record):
            raise RuntimeError("tracking server down")

        def on_run_end(self, trainer, result):
            raise KeyError("summary")

    rec = Recorder()
    trainer = make_trainer([Broken(), rec])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainer.fit()
    messages = [str(w.message) for w in caught if w.category is CallbackWarning]
    assert len(messages) == 4 and "Broken.on_step_end raised RuntimeError: tracking server down" in messages[0]
    assert result.steps == 2 and result.best_params["keywords"] == "good, great, nice, lovely"
    assert [e[0] for e in rec.events].count("step") == 3 and rec.events[-1][0] == "end"  # others still run
    assert len(trainer.callback_errors) == 4  # 3 step records + the end
    assert "Broken.on_run_end raised KeyError" in trainer.callback_errors[-1]


def test_a_failed_run_calls_on_run_failed_and_not_on_run_end(empty_registry):
    register_plan("text", {})
    rec = Recorder()
    model = KeywordModel()
    trainer = Trainer(model, tk.Optimizer([model.keywords]), lambda p, e: "text only", train=DATA,
                      progress=False, executor="serial", callbacks=[rec])
    with pytest.raises(ValueError, match="validation needs a score"):
        trainer.fit()
    assert rec.events == [("start", 0), ("failed", "ValueError")]


def test_a_resumed_run_reports_only_its_new_steps(empty_registry, tmp_path):
    register_plan("text", {"keywords": ["good, great", "good, great, nice", "good, great, nice, lovely"]})
    first = Recorder()
    make_trainer([first], max_steps=1, run_dir=tmp_path).fit()
    second = Recorder()
    trainer = make_trainer([second], max_steps=3, run_dir=tmp_path, resume=True)
    trainer.fit()
    assert second.events[0] == ("start", 0)
    assert [e[1] for e in second.events if e[0] == "step"] == [2, 3]
    assert len(trainer.history) == 4


def test_callbacks_must_have_hooks():
    with pytest.raises(TypeError, match="callbacks must be a list"):
        make_trainer(Recorder())
    with pytest.raises(TypeError, match="must be a tk.Callback"):
        make_trainer([object()])
    assert tk.Callback is Callback


def test_duck_typed_callbacks_need_only_the_hooks_they_use(empty_registry):
    register_plan("text", {})
    seen = []

    class OnlySteps:
        def on_step_end(self, trainer, record):
            seen.append(record["step"])

    make_trainer([OnlySteps()], max_steps=1).fit()
    assert seen == [0, 1]


def test_the_run_log_has_the_minibatch_loss_when_the_metric_gives_losses(empty_registry):
    register_plan("gradient", {})
    w = tk.param(torch.ones(2), name="w")

    def metric(prediction, example):
        loss = (w.raw ** 2).sum() * example
        return Score(-float(loss.detach()), None, loss)

    trainer = Trainer(lambda x: w * x, tk.Optimizer([w]), metric, train=[1.0, 2.0, 3.0], batch_size=3,
                      max_steps=1, progress=False, executor="serial", batch_objective=False)
    result = trainer.fit()
    assert result.history[1]["train_loss"] == pytest.approx(4.0)  # mean of 2, 4, 6
    assert "train_loss" not in result.history[0]  # the initial validation has no minibatch


def test_step_printer_prints_one_short_line_per_changed_parameter(empty_registry, capsys):
    class Explaining:
        """A text solver whose reason is long and nested, as exploration's can be."""

        def __init__(self, params, **options):
            pass

        def step(self, params, context):
            return [ParamUpdate(context.name_of(p), "text", new_value="good, great, nice, lovely, " * 4,
                                reason=LONG_REASON) for p in params]

    tk.register_solver("text", Explaining)
    trainer = make_trainer([StepPrinter()], max_steps=1, run_dir=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CallbackWarning)
        result = trainer.fit()
    out = capsys.readouterr().out.splitlines()
    step1 = out.index(next(line for line in out if line.startswith("step 1:")))
    line = out[step1 + 1]
    assert line.startswith("  keywords: 'good' -> 'good, great, nice, lovely") and "…" in line  # cut
    assert line.endswith("(text) — explored: a recombination of pieces of values seen")
    assert len(line) <= 120 and "because" not in line and "(" not in line.split("—")[1]
    assert result.history[1]["changes"][0]["reason"] == LONG_REASON  # the run log keeps it whole


def test_step_lines_of_a_merge_and_of_kept_parameters():
    record = {"step": 4, "train_score": None, "val_score": 0.5, "best_score": 0.75, "reverted": True,
              "accepted": False, "changes": [
                  {"name": "m0", "solver": "merge", "changed": True, "from": 3},
                  {"name": "k", "solver": "text", "changed": False, "old": "'a'", "new": "'a'",
                   "reason": "kept: the suggestion equals the current value (after stripping)"}]}
    assert step_lines(record) == ["step 4: val 0.5, best 0.75 (rejected)", "  m0: from candidate 3 (merge)"]
    assert step_lines(record, all_params=True)[-1] == \
        "  k: kept 'a' (text) — the suggestion equals the current value"
