"""Several objectives in tk.Trainer: per-objective validation means, the Pareto front of
validated steps, its checkpoint, `tracekit show`, `plot_run`, and every misuse."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracekit as tk
from tracekit.bundled import bundle
from tracekit.cli import main
from tracekit.errors import StateDictError
from tracekit.pictures.run_plot import plot_run
from tracekit.training import ProcessExecutor, Score, Trainer, as_score
from tracekit.training import checkpoint as ckpt
from tracekit.training.front import Front, Objectives, front_of_log
from tracekit.training.results import EvalResult
from tracekit.training.scoring import ExampleResult, ObjectivesError, objective_score

from .helpers import register_plan

OBJECTIVES = {"accuracy": "max", "tokens": "min"}


@bundle()
def solve(x, depth):
    """Solve x when the search depth reaches it."""
    return x if x < depth else -1


class Solver(tk.Module):
    """One int parameter: deeper solves more and costs more tokens."""

    def __init__(self, depth=2, high=20):
        self.depth = tk.param(depth, name="depth", bounds=(1, high))

    def forward(self, x):
        return solve(x, self.depth)


def tokens_of(depth):
    """Even depths are cheap, odd ones waste 100 tokens: some steps are dominated."""
    return 10 * depth + (100 if depth % 2 else 0)


def make_metric(model):
    def metric(prediction, x):
        return {"accuracy": float(prediction == x), "tokens": tokens_of(model.depth.data),
                "feedback": "solved" if prediction == x else "not deep enough"}

    return metric


def scripted_trainer(depths, data=20, start=2, **kw):
    """A Trainer whose "bayesian" solver proposes `depths`, one per step."""
    register_plan("bayesian", {"depth": list(depths)})
    model = Solver(depth=start, high=40)
    kw.setdefault("objectives", OBJECTIVES)
    kw.setdefault("executor", "serial")
    trainer = Trainer(model, tk.Optimizer(model.parameters()), make_metric(model), train=list(range(data)),
                      val=list(range(data)), batch_size=4, max_steps=len(depths), progress=False, **kw)
    return model, trainer


# --- the front in a run ------------------------------------------------------------------------
def test_bayesian_search_of_an_int_parameter_keeps_a_front_of_conflicting_objectives():
    """The real Bayesian route (Optuna) tunes depth on the primary objective; accuracy and
    tokens conflict, so the initial and the accurate depth are both on the front."""
    model = Solver(depth=2, high=20)
    data = list(range(20))
    trainer = Trainer(model, tk.Optimizer(model.parameters()), make_metric(model), train=data, val=data,
                      batch_size=4, max_steps=4, progress=False, executor="serial", seed=1,
                      objectives=OBJECTIVES)
    result = trainer.fit()
    assert trainer.higher_is_better is True and result.objectives == OBJECTIVES
    first = result.history[0]
    assert first["objectives"] == OBJECTIVES
    assert first["val_scores"] == {"accuracy": 0.1, "tokens": 20.0}
    validated = [r for r in result.history if "val_scores" in r]
    assert len(result.front) >= 2 and len(validated) >= 2
    assert [m["step"] for m in result.front] == trainer.front.steps
    vectors = {r["step"]: r["val_scores"] for r in validated}
    objectives = Objectives.parse(OBJECTIVES)
    for m in result.front:  # every member is a validated step, with its values and scores
        assert m["scores"] == vectors[m["step"]]
        assert m["params"] == next(r["params"] for r in validated if r["step"] == m["step"])
        assert not any(objectives.dominates(v, m["scores"]) for v in vectors.values())
    assert result.front[0]["step"] == 0 and result.front[0]["params"] == {"depth": 2}
    # the primary objective is the score: the best step is the most accurate, and it is kept
    assert result.best_score == max(v["accuracy"] for v in vectors.values())
    assert model.depth.data == result.best_params["depth"] > 2
    for r in validated:
        assert r["val_scores"]["accuracy"] == r["val_score"]
    text = str(result)
    assert "validation accuracy (higher is better)" in text
    assert f"Pareto front: {len(result.front)} step(s)" in text and "step 0: accuracy 0.1, tokens 20" in text
    saved = result.to_dict()
    assert saved["objectives"] == OBJECTIVES and saved["front"][0]["scores"]["tokens"] == 20.0


def test_dominated_and_reverted_steps(empty_registry):
    """depth 6 beats 2 on accuracy; 5 is worse on both than 6 (reverted, dominated); 10 is
    the most accurate; 3 is dominated by 6. A reverted step can be on the front: 4 is."""
    model, trainer = scripted_trainer([6, 5, 10, 3, 4])
    result = trainer.fit()
    rows = {r["step"]: r for r in result.history}
    assert rows[2]["reverted"] and rows[2]["val_scores"] == {"accuracy": 0.25, "tokens": 150.0}
    assert rows[5]["reverted"] and rows[5]["val_scores"] == {"accuracy": 0.2, "tokens": 40.0}
    assert trainer.front.steps == [0, 1, 3, 5]
    assert [m["scores"] for m in result.front] == [
        {"accuracy": 0.1, "tokens": 20.0}, {"accuracy": 0.3, "tokens": 60.0},
        {"accuracy": 0.5, "tokens": 100.0}, {"accuracy": 0.2, "tokens": 40.0}]
    assert [m["params"]["depth"] for m in result.front] == [2, 6, 10, 4]
    assert result.best_step == 3 and model.depth.data == 10  # the workflow ends with the primary's best
    trainer.front.apply(5, trainer.named_params)  # ship a cheaper trade-off
    assert model.depth.data == 4
    with pytest.raises(KeyError, match="not on the Pareto front"):
        trainer.front.apply(2, trainer.named_params)


def test_a_score_with_scores_is_the_same_as_a_dict(empty_registry):
    register_plan("bayesian", {"depth": [6, 5]})
    model = Solver()

    def metric(prediction, x):
        return Score(value=float(prediction == x), text="ok", scores={"tokens": tokens_of(model.depth.data)})

    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=list(range(20)),
                      val=list(range(20)), batch_size=4, max_steps=2, progress=False, executor="serial",
                      objectives=OBJECTIVES)
    result = trainer.fit()
    assert trainer.front.steps == [0, 1]
    assert result.history[2]["val_scores"] == {"accuracy": 0.25, "tokens": 150.0}


def test_a_primary_to_minimize_sets_the_direction(empty_registry):
    """objectives={"errors": "min", ...}: the Trainer's score is lower-is-better."""
    register_plan("bayesian", {"depth": [6]})
    model = Solver()

    def metric(prediction, x):
        return {"errors": float(prediction != x), "tokens": tokens_of(model.depth.data)}

    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=list(range(20)),
                      val=list(range(20)), batch_size=4, max_steps=1, progress=False, executor="serial",
                      objectives={"errors": "minimize", "tokens": "min"})
    assert trainer.higher_is_better is False
    result = trainer.fit()
    assert result.best_score == pytest.approx(0.7) and result.best_step == 1
    assert trainer.front.steps == [0, 1]  # fewer errors for more tokens: a trade-off
    assert "validation errors (lower is better)" in str(result)


def test_an_async_metric_gives_its_objectives(empty_registry):
    register_plan("bayesian", {"depth": [6]})
    model = Solver()

    async def metric(prediction, x):
        return {"accuracy": float(prediction == x), "tokens": tokens_of(model.depth.data)}

    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=list(range(20)),
                      val=list(range(20)), batch_size=4, max_steps=1, progress=False, executor="async",
                      objectives=OBJECTIVES)
    assert trainer.fit().front[1]["scores"] == {"accuracy": 0.3, "tokens": 60.0}


def test_staged_validation_keeps_rejected_slices_off_the_front(empty_registry):
    """Staged validation: depth 1 loses the first slice (never validated in full: no
    val_scores, not on the front, though nothing dominates its tokens)."""
    model, trainer = scripted_trainer([1, 30], data=40, start=20, validation="staged")
    result = trainer.fit()
    rejected, accepted = result.history[1], result.history[2]
    assert "rejected" in rejected["screen"] and "val_scores" not in rejected
    assert accepted["val_scores"] == {"accuracy": 0.75, "tokens": 300.0} and "slices" in accepted["screen"]
    assert len(accepted["screen"]["slices"]) > 1
    assert trainer.front.steps == [0, 2]


def test_failed_examples_count_as_the_error_score_on_the_primary_only():
    ok = ExampleResult(0, 1, 1.0, scores={"accuracy": 1.0, "tokens": 10.0})
    failed = ExampleResult(1, None, -1.0, "the workflow raised", error="the workflow raised")
    result = EvalResult(0.0, [ok, failed])
    assert result.objective_means(["accuracy", "tokens"]) == {"accuracy": 0.0, "tokens": 10.0}
    assert EvalResult(-1.0, [failed]).objective_means(["accuracy", "tokens"]) == {"accuracy": -1.0, "tokens": None}


def test_without_objectives_nothing_changes(empty_registry):
    register_plan("bayesian", {"depth": [6]})
    model = Solver()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), lambda p, x: float(p == x),
                      train=list(range(20)), batch_size=4, max_steps=1, progress=False, executor="serial")
    result = trainer.fit()
    assert trainer.objectives is None and trainer.front is None and trainer.higher_is_better is True
    assert result.objectives is None and result.front == []
    assert all("val_scores" not in r and "objectives" not in r for r in result.history)
    assert "objectives" not in str(result) and "validation score (higher is better)" in str(result)


# --- dominance ---------------------------------------------------------------------------------
def test_dominance_respects_each_direction():
    objectives = Objectives.parse({"accuracy": "max", "tokens": "min"})
    assert objectives.dominates({"accuracy": 0.9, "tokens": 10}, {"accuracy": 0.8, "tokens": 10})
    assert objectives.dominates({"accuracy": 0.9, "tokens": 5}, {"accuracy": 0.9, "tokens": 10})
    assert not objectives.dominates({"accuracy": 0.9, "tokens": 10}, {"accuracy": 0.9, "tokens": 10})
    assert not objectives.dominates({"accuracy": 0.9, "tokens": 20}, {"accuracy": 0.8, "tokens": 10})
    front = Front(objectives)
    assert front.offer(0, {"accuracy": 0.5, "tokens": 10}, {})
    assert not front.offer(1, {"accuracy": 0.5, "tokens": 10}, {})  # equal: the earliest stays
    assert front.offer(2, {"accuracy": 0.6, "tokens": 10}, {})  # dominates step 0
    assert front.steps == [2]


@given(directions=st.lists(st.sampled_from(["max", "min"]), min_size=1, max_size=3),
       data=st.data())
def test_the_front_is_exactly_the_non_dominated_validated_entries(directions, data):
    objectives = Objectives.parse({f"o{i}": d for i, d in enumerate(directions)})
    names = objectives.names
    entries = data.draw(st.lists(st.tuples(*[st.integers(0, 4)] * len(names)), max_size=25))
    vectors = [dict(zip(names, map(float, e))) for e in entries]
    front = Front(objectives)
    for step, v in enumerate(vectors):
        front.offer(step, v, {"step": step})
    members = {m.step: m.scores for m in front}
    for step, v in members.items():  # no member is dominated by any validated entry
        assert v == vectors[step]
        assert not any(objectives.dominates(w, v) for w in vectors)
    for step, v in enumerate(vectors):  # every non-dominated entry is there, or an earlier equal one
        if not any(objectives.dominates(w, v) for w in vectors):
            first = vectors.index(v)
            assert first in members and (step == first or step not in members)
    assert len({tuple(v.values()) for v in members.values()}) == len(members)
    assert front.steps == sorted(front.steps)  # in validation order


# --- checkpoints -------------------------------------------------------------------------------
def test_resume_continues_the_same_front(empty_registry, tmp_path):
    depths = [6, 5, 10, 3, 4]
    _, whole = scripted_trainer(depths)
    expected = whole.fit()
    _, first = scripted_trainer(depths, run_dir=tmp_path / "run")
    first.max_steps = 2
    first.fit()
    assert first.front.steps == [0, 1]
    saved = ckpt.load_checkpoint(tmp_path / "run")
    assert saved["objectives"] == OBJECTIVES and [m["step"] for m in saved["front"]] == [0, 1]
    model, resumed = scripted_trainer(depths, run_dir=tmp_path / "run", resume=True)
    result = resumed.fit()
    assert result.front == expected.front and resumed.front.steps == [0, 1, 3, 5]
    assert model.depth.data == 10


def _damage(run_dir, **changes):
    saved = ckpt.load_checkpoint(run_dir)
    saved.pop("format", None)
    saved.update(changes)
    ckpt.save_checkpoint(run_dir, saved)


@pytest.mark.parametrize("front, message", [
    ("nope", "must be a list of members"),
    ([{"step": 0, "scores": {"accuracy": 0.1}}], "must be a dict with 'step', 'scores' and 'params'"),
    ([{"step": -1, "scores": {"accuracy": 0.1, "tokens": 1}, "params": {"depth": 2}}], "not a step number"),
    ([{"step": 0, "scores": {"accuracy": 0.1, "cost": 1}, "params": {"depth": 2}}], "one number per objective"),
    ([{"step": 0, "scores": {"accuracy": "x", "tokens": 1}, "params": {"depth": 2}}], "not all numbers"),
    ([{"step": 0, "scores": {"accuracy": 0.1, "tokens": 1}, "params": {"depth": 2}},
      {"step": 1, "scores": {"accuracy": 0.2, "tokens": 1}, "params": {"depth": 3}}], "dominated or repeated"),
    ([{"step": 0, "scores": {"accuracy": 0.1, "tokens": 1}, "params": {"width": 2}}], "front member of step 0"),
    ([{"step": 0, "scores": {"accuracy": 0.1, "tokens": 1}, "params": {"depth": "deep"}}], "front member"),
])
def test_a_malformed_saved_front_is_refused(empty_registry, tmp_path, front, message):
    model, trainer = scripted_trainer([6], run_dir=tmp_path)
    trainer.fit()
    _damage(tmp_path, front=front)
    model, resumed = scripted_trainer([6, 8], run_dir=tmp_path, resume=True)
    with pytest.raises(StateDictError, match=re.escape(message)):
        resumed.fit()
    assert model.depth.data == 2  # nothing was set


def test_resuming_with_other_objectives_is_refused(empty_registry, tmp_path):
    _, trainer = scripted_trainer([6], run_dir=tmp_path)
    trainer.fit()
    _, other = scripted_trainer([6, 8], run_dir=tmp_path, resume=True,
                                objectives={"tokens": "min", "accuracy": "max"}, higher_is_better=None)
    with pytest.raises(StateDictError, match="resume with the same objectives"):
        other.fit()
    _, none = scripted_trainer([6, 8], run_dir=tmp_path, resume=True, objectives=None)
    with pytest.raises(StateDictError, match="with objectives="):
        none.fit()
    _damage(tmp_path, objectives=None, front=None)
    _, again = scripted_trainer([6, 8], run_dir=tmp_path, resume=True)
    with pytest.raises(StateDictError, match="without objectives="):
        again.fit()


# --- show and plot -----------------------------------------------------------------------------
def test_show_prints_the_front(empty_registry, tmp_path, capsys):
    _, trainer = scripted_trainer([6, 5, 10, 3, 4], run_dir=tmp_path)
    trainer.fit()
    capsys.readouterr()
    assert main(["show", str(tmp_path), "--steps"]) == 0
    out = capsys.readouterr().out
    assert "objectives: accuracy (max), tokens (min); Pareto front: 4 of 6 validated step(s)" in out
    lines = [line.strip() for line in out.splitlines() if re.match(r"\s+step\s+\d+:", line)]
    assert lines == ["step    0: accuracy 0.1, tokens 20", "step    1: accuracy 0.3, tokens 60",
                     "step    3: accuracy 0.5, tokens 100", "step    5: accuracy 0.2, tokens 40"]
    assert "validation accuracy: 0.1 before -> 0.5 best (step 3)" in out
    assert "val 0.25 [accuracy 0.25, tokens 150] reverted" in out
    assert main(["show", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["objectives"] == OBJECTIVES and summary["validated_steps"] == 6
    assert [m["step"] for m in summary["front"]] == [0, 1, 3, 5]
    assert summary["front"][2]["params"] == {"depth": 10}


def test_show_of_a_run_without_objectives_has_no_front(empty_registry, tmp_path, capsys):
    register_plan("bayesian", {"depth": [6]})
    model = Solver()
    Trainer(model, tk.Optimizer(model.parameters()), lambda p, x: float(p == x), train=list(range(20)),
            batch_size=4, max_steps=1, progress=False, executor="serial", run_dir=tmp_path).fit()
    capsys.readouterr()
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "objectives" not in out and "validation score:" in out


def _axes_in(svg_text):
    return len(re.findall(r'<g id="axes_\d+"', svg_text))


def test_plot_run_adds_a_front_panel(empty_registry, tmp_path):
    _, trainer = scripted_trainer([6, 5, 10, 3, 4], run_dir=tmp_path / "run")
    trainer.fit()
    text = plot_run(tmp_path / "run", tmp_path / "run.svg").read_text(encoding="utf-8")
    assert "Pareto front: 4 of 6 validated step(s)" in text
    assert "accuracy (max: higher is better)" in text and "tokens (min: lower is better)" in text
    records = ckpt.read_log(tmp_path / "run")
    plain = [{k: v for k, v in r.items() if k not in ("val_scores", "objectives")} for r in records]
    without = plot_run(plain, tmp_path / "plain.svg").read_text(encoding="utf-8")
    assert "Pareto front" not in without
    assert _axes_in(text) == _axes_in(without) + 1
    assert plot_run(tmp_path / "run", tmp_path / "run.png").stat().st_size > 0


def test_front_of_log_reads_non_finite_scores_and_skips_incomplete_ones():
    records = [{"step": 0, "objectives": OBJECTIVES, "val_scores": {"accuracy": 0.5, "tokens": "inf"}},
               {"step": 1, "val_scores": {"accuracy": 0.4, "tokens": 3}},
               {"step": 2, "val_scores": {"accuracy": 0.9, "tokens": None}}]
    objectives, validated, front = front_of_log(records)
    assert [m.step for m in validated] == [0, 1] and math.isinf(validated[0].scores["tokens"])
    assert front.steps == [0, 1]
    assert front_of_log([{"step": 0, "val_score": 1.0}]) is None


# --- misuse ------------------------------------------------------------------------------------
@pytest.mark.parametrize("objectives, error, message", [
    (["accuracy"], TypeError, "must be a dict"),
    ({}, ValueError, "objectives is empty"),
    ({"accuracy": "up"}, ValueError, "use 'max' (higher is better) or 'min'"),
    ({"accuracy": 1}, ValueError, "has direction 1"),
    ({"feedback": "max"}, ValueError, "reserved"),
    ({1: "max"}, TypeError, "names must be non-empty str"),
])
def test_bad_objectives_are_explained(objectives, error, message):
    model = Solver()
    with pytest.raises(error, match=re.escape(message)):
        Trainer(model, tk.Optimizer(model.parameters()), make_metric(model), train=[1, 2], objectives=objectives)


def test_higher_is_better_must_agree_with_the_primary():
    model = Solver()
    opt = tk.Optimizer(model.parameters())
    with pytest.raises(ValueError, match="contradicts the primary objective 'accuracy'"):
        Trainer(model, opt, make_metric(model), train=[1], objectives=OBJECTIVES, higher_is_better=False)
    assert Trainer(model, opt, make_metric(model), train=[1], objectives=OBJECTIVES,
                   higher_is_better=True).higher_is_better is True
    with pytest.raises(ValueError, match="contradicts"):
        Trainer(model, opt, make_metric(model), train=[1], objectives={"cost": "min"}, higher_is_better=True)


# --- with a pool search and with worker processes ------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    executor = ProcessExecutor(2)
    yield executor
    executor.close()


def test_a_pool_search_offers_every_validated_child_to_the_front(empty_registry):
    """strategy="pareto" keeps its pool (over examples) and the objectives' front (over the
    validated children): the same dominance as a greedy run's, rebuilt from the log too."""
    model, trainer = scripted_trainer([6, 5, 10, 3, 4], strategy="pareto", seed=0)
    result = trainer.fit()
    validated = [r for r in result.history if "val_scores" in r]
    assert [r["step"] for r in validated] == [r["step"] for r in result.history
                                              if r["step"] == 0 or r.get("accepted")]
    assert len(validated) >= 3  # the initial values and at least two children
    objectives = Objectives.parse(OBJECTIVES)
    vectors = {r["step"]: r["val_scores"] for r in validated}
    expected = [s for s, v in vectors.items()
                if not any(objectives.dominates(w, v) or (w == v and t < s) for t, w in vectors.items())]
    assert trainer.front.steps == expected and len(expected) >= 2
    for m in result.front:  # each member carries the child's own values, not the pool's best
        assert {"accuracy": 0.05 * m["params"]["depth"], "tokens": float(tokens_of(m["params"]["depth"]))} == \
            pytest.approx(m["scores"])
    assert front_of_log(result.history)[2].steps == expected
    assert "pool_size" in result.history[-1]  # the pool search ran


def test_objectives_on_a_process_pool_are_the_serial_run(empty_registry, pool):
    """Workers return every objective's value: the same val_scores and front as in-process."""
    depths = [6, 5, 10, 3, 4]
    _, serial = scripted_trainer(depths)
    expected = serial.fit()
    model, remote = scripted_trainer(depths, executor=pool)
    result = remote.fit()
    assert [r.get("val_scores") for r in result.history] == [r.get("val_scores") for r in expected.history]
    assert result.front == expected.front and remote.front.steps == [0, 1, 3, 5]
    assert model.depth.data == 10


def test_a_pool_search_on_a_process_pool_keeps_the_serial_front(empty_registry, pool):
    _, serial = scripted_trainer([6, 5, 10], strategy="beam", seed=0)
    _, remote = scripted_trainer([6, 5, 10], strategy="beam", seed=0, executor=pool)
    assert remote.fit().front == serial.fit().front


def test_a_misuse_on_a_worker_stops_the_run_as_in_process(empty_registry, pool):
    register_plan("bayesian", {"depth": [6]})
    model = Solver()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), lambda p, x: {"accuracy": 1.0},
                      train=list(range(4)), max_steps=1, progress=False, executor=pool, objectives=OBJECTIVES)
    with pytest.raises(ObjectivesError, match=re.escape("no value for objective(s) ['tokens']")):
        trainer.fit()


@pytest.mark.parametrize("returned, message", [
    ({"accuracy": 1.0}, "no value for objective(s) ['tokens']"),
    ({"accuracy": 1.0, "tokens": 3, "cost": 2}, "unknown keys ['cost']"),
    ({"accuracy": 1.0, "tokens": "many"}, "objective 'tokens' must be a number"),
    ({"accuracy": 1.0, "tokens": float("nan")}, "objective 'tokens' is NaN"),
    ({"accuracy": 1.0, "tokens": 3, "feedback": 7}, "'feedback' must be a str"),
    ({"score": 1.0, "tokens": 3}, "unknown keys ['score']"),
    (1.0, "no value for objective(s) ['tokens']"),
    ("too shallow", "no value for objective(s) ['accuracy', 'tokens']"),
    (Score(1.0, scores={"cost": 2}), "unknown objectives ['cost']"),
    (Score(1.0, scores={"accuracy": 0.5, "tokens": 2}), "gives the primary objective 'accuracy' twice"),
    (Score(1.0), "no value for objective(s) ['tokens']"),
])
def test_a_metric_return_that_breaks_the_objectives_stops_the_run(empty_registry, returned, message):
    register_plan("bayesian", {"depth": [6]})
    model = Solver()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), lambda p, x: returned, train=list(range(4)),
                      max_steps=1, progress=False, executor="serial", objectives=OBJECTIVES)
    with pytest.raises(ObjectivesError, match=re.escape(message)):
        trainer.fit()
    with pytest.raises(ObjectivesError, match=re.escape(message)):
        objective_score(returned, list(OBJECTIVES))


def test_objective_forms_are_normalized():
    names = list(OBJECTIVES)
    assert objective_score({"accuracy": True, "tokens": 3, "feedback": "ok", "loss": 0.5}, names) == \
        Score(1.0, "ok", 0.5, {"accuracy": 1.0, "tokens": 3.0})
    assert objective_score(Score(None, "t", scores={"accuracy": 0.5, "tokens": 2}), names) == \
        Score(0.5, "t", None, {"accuracy": 0.5, "tokens": 2.0})
    assert objective_score((0.5, "meh"), ["accuracy"]) == Score(0.5, "meh", None, {"accuracy": 0.5})
    assert isinstance(ObjectivesError("x"), TypeError) and isinstance(ObjectivesError("x"), ValueError)
    with pytest.raises(TypeError, match=re.escape("declare them: Trainer(objectives=")):
        as_score({"accuracy": 1.0, "tokens": 3})


def test_a_metric_that_raises_is_still_feedback_under_objectives(empty_registry):
    """Only a misuse of the objectives stops the run; an example whose metric raises scores
    error_score on the primary and is left out of the other objectives' means."""
    register_plan("bayesian", {"depth": [6]})
    model = Solver()

    def metric(prediction, x):
        if x == 0:
            raise RuntimeError("judge unavailable")
        return {"accuracy": float(prediction == x), "tokens": 5.0}

    trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=list(range(4)), max_steps=1,
                      progress=False, executor="serial", objectives=OBJECTIVES)
    result = trainer.fit()
    assert result.history[0]["val_scores"] == {"accuracy": 0.25, "tokens": 5.0}
    assert result.history[0]["val_errors"] == 1
