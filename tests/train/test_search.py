"""Pool search in the Trainer: Pareto front, merge, beam width, priority, budgets, resume,
run log, `tracekit show`, plot (scripted solvers: deterministic)."""

from __future__ import annotations

import json
import random
import time

import pytest
import torch

import tracekit as tk
from tests.train.helpers import (
    ModulesModel,
    register_plan,
    register_subset_proposer,
    solved_metric,
)
from tracekit.errors import StateDictError
from tracekit.training import Trainer, load_checkpoint, read_log
from tracekit.training.pool import Candidate, Pool, child_values, merge_values, pareto_front
from tracekit.training.strategies import Beam, Greedy, Pareto, Priority, get_strategy

DATA = list(range(20))


def sim_trainer(strategy, seed=1, proposer_seed=1, cost=0.0, **kw):
    register_subset_proposer(seed=proposer_seed, cost=cost)
    model = ModulesModel(start=seed)
    opt = tk.Optimizer(model.parameters())
    kw.setdefault("max_steps", 200)
    trainer = Trainer(model, opt, solved_metric, train=DATA, val=DATA, batch_size=4, seed=seed,
                      progress=False, executor="serial", batch_objective=False, strategy=strategy, **kw)
    return model, trainer


def cand(cid, scores, parents=(), **values):
    return Candidate(cid, values, list(scores), list(parents))


# --- the pool ---------------------------------------------------------------------------
def test_pareto_front_keeps_winners_of_some_example_and_drops_dominated_ones():
    pool = Pool([cand(0, [1, 0, 0, 0]),        # best on example 0
                 cand(1, [0, 1, 1, 0]),        # best on 1 and 2
                 cand(2, [0, 1, 0, 0]),        # dominated by 1
                 cand(3, [0, 0, 0, 0.5]),      # best on 3
                 cand(4, [0.9, 0.9, 0.9, 0.4]),  # best nowhere: never a parent
                 cand(5, [0, 1, 1, 0])])       # the same scores as 1: 1 stands for both
    assert [c.id for c in pool.front()] == [0, 1, 3]
    assert pool.best().id == 4  # the best mean is not necessarily on the front
    assert pool.wins(pool.get(1)) == 2
    counts = {0: 0, 1: 0, 3: 0}
    rng = random.Random(0)
    for _ in range(600):
        counts[Pareto().select(pool, rng).id] += 1
    assert counts[1] > counts[0] and counts[1] > counts[3] and min(counts.values()) > 50


def test_pareto_front_of_a_single_candidate_is_itself():
    assert [c.id for c in pareto_front([cand(7, [0.0, 0.0])])] == [7]


def test_child_shares_the_unchanged_values_of_its_parent_and_copies_changed_ones():
    w, v = torch.ones(3), torch.zeros(2)
    parent = Candidate(0, {"w": w, "v": v, "text": "a"}, [1.0])
    current = {"w": w.clone(), "v": v + 1, "text": "a"}
    child = child_values(parent, current)
    assert child["w"] is w and child["text"] is parent.values["text"]  # shared, not copied
    assert child["v"] is not current["v"] and torch.equal(child["v"], v + 1)  # a copy of the new value


def test_merge_takes_each_parameter_from_the_parent_that_changed_it():
    base = Candidate(0, {"prompt": "p0", "threshold": 0.5, "mode": "a"}, [0, 0, 0])
    a = Candidate(1, {"prompt": "p1", "threshold": 0.5, "mode": "a"}, [1, 0, 0], [0])   # a new prompt
    b = Candidate(2, {"prompt": "p0", "threshold": 0.7, "mode": "a"}, [0, 1, 0], [0])   # a new threshold
    pool = Pool([base, a, b])
    assert merge_values(pool, a, b) == {"prompt": "p1", "threshold": 0.7, "mode": "a"}
    # both changed the same parameter: the one winning on more examples gives it
    c = Candidate(3, {"prompt": "p3", "threshold": 0.5, "mode": "a"}, [0, 1, 1], [0])
    pool.add(c)
    assert merge_values(pool, a, c)["prompt"] == "p3"


def test_strategy_names_objects_and_bad_values():
    assert isinstance(get_strategy("pareto"), Pareto) and isinstance(get_strategy("greedy"), Greedy)
    custom = Beam(width=2)
    assert get_strategy(custom) is custom
    with pytest.raises(ValueError, match="strategy must be one of"):
        get_strategy("genetic")
    with pytest.raises(TypeError, match="Strategy protocol"):
        get_strategy(object())
    with pytest.raises(ValueError, match="width"):
        Beam(width=0)
    with pytest.raises(ValueError, match="exploration"):
        Priority(exploration=-1)


# --- runs ----------------------------------------------------------------------------------
def test_pareto_run_screens_on_the_minibatch_merges_and_logs_lineage(empty_registry, tmp_path):
    model, trainer = sim_trainer("pareto", max_metric_calls=500, run_dir=tmp_path / "run")
    result = trainer.fit()
    log = read_log(tmp_path / "run")
    steps = [r for r in log[1:] if r["candidate"]["origin"] == "step"]
    rejected = [r for r in steps if not r["accepted"]]
    assert rejected and all(r["val_score"] is None for r in rejected)  # never validated
    assert any(r["rejected_because"] == "not better than its parent on the minibatch" for r in rejected)
    for r in steps:
        if r["screen"] is not None and r["accepted"]:
            assert r["screen"]["child"] > r["screen"]["parent"]
    merges = [r for r in log if r.get("candidate", {}).get("origin") == "merge"]
    assert merges, "a pareto run merges candidates that win on different examples"
    assert all(len(r["candidate"]["parents"]) == 2 for r in merges)
    for r in log[1:]:
        assert set(r["candidate"]) >= {"id", "parents", "step", "origin", "changed", "solvers", "usage"}
    assert log[-1]["stop_reason"] == result.stop_reason
    assert result.best_score >= result.initial_score
    assert result.best_candidate["id"] in {r["candidate"]["id"] for r in log}
    assert result.front and all("parents" in c for c in result.front)
    # the workflow holds the best candidate's values
    saved = load_checkpoint(tmp_path / "run")
    best = next(c for c in saved["pool"]["candidates"] if c["id"] == result.best_candidate["id"])
    assert {n: getattr(model, n).data for n in best["values"]} == best["values"]


def test_beam_keeps_at_most_width_candidates(empty_registry):
    _, trainer = sim_trainer(Beam(width=2), max_steps=25)
    result = trainer.fit()
    sizes = [r["pool_size"] for r in result.history[1:]]
    assert max(sizes) <= 2 and 2 in sizes
    assert any(r["dropped"] for r in result.history[1:])
    assert result.best_score >= result.initial_score


def test_priority_expands_other_candidates_than_the_best(empty_registry):
    _, trainer = sim_trainer(Priority(exploration=1.0), max_steps=30)
    result = trainer.fit()
    parents = [r["candidate"]["parents"][0] for r in result.history[1:]]
    assert len(set(parents)) >= 3
    assert result.best_score >= result.initial_score


class NewestFirst:
    """A user strategy: always expand the newest candidate (the protocol is enough)."""

    name, screen, merge_every = "newest", False, 0

    def select(self, pool, rng):
        return max(pool.scored(), key=lambda c: c.id)

    def admit(self, pool, child):
        return []

    def merge_pair(self, pool, rng):
        return None


def test_a_strategy_object_with_the_protocol_is_used(empty_registry):
    _, trainer = sim_trainer(NewestFirst(), max_steps=6)
    result = trainer.fit()
    assert result.strategy == "newest"
    newest = 0
    for r in result.history[1:]:
        assert r["candidate"]["parents"] == [newest]
        if r["accepted"]:
            newest = r["candidate"]["id"]
    assert newest > 0


# --- budgets ---------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["greedy", "pareto", "beam", "priority"])
@pytest.mark.parametrize("budget", [37, 150, 333])
def test_metric_call_budget_is_never_passed_and_named(empty_registry, strategy, budget):
    calls = []

    def counting(prediction, example):
        calls.append(example)
        return solved_metric(prediction, example)

    register_subset_proposer(seed=2)
    model = ModulesModel(start=2)
    trainer = Trainer(model, tk.Optimizer(model.parameters()), counting, train=DATA, val=DATA,
                      batch_size=4, max_steps=500, progress=False, executor="serial",
                      batch_objective=False, strategy=strategy, max_metric_calls=budget)
    result = trainer.fit()
    assert len(calls) <= budget
    assert result.budget["spent"]["metric_calls"] == len(calls)
    assert result.stop_reason.startswith(f"max_metric_calls={budget}")
    assert result.history[-1]["stop_reason"] == result.stop_reason
    if trainer.search is not None:  # a discarded step left nothing in the pool
        logged = {r["candidate"]["id"] for r in result.history}
        assert {c.id for c in trainer.search.pool} <= logged
        assert trainer.search.pool.next_id == max(logged) + 1
        expanded = [r["candidate"]["parents"][0] for r in result.history[1:] if r["candidate"]["origin"] == "step"]
        assert all(c.expansions == expanded.count(c.id) for c in trainer.search.pool)


def test_every_objective_call_of_an_exploring_step_is_charged():
    """The built-in solvers with the minibatch objective: the model repeats one value, so
    text steps explore (and score what they explore) and SPSA scores its probes; every
    metric call they make is charged, and the budget is never passed."""
    import json

    from tests.train.helpers import DATA as KEYWORD_DATA
    from tests.train.helpers import KeywordModel

    calls = []

    def counting(prediction, example):
        calls.append(example)
        return 1.0 if prediction == example[1] else (0.0, f"expected {example[1]}")

    def stuck(messages, **kwargs):
        return json.dumps({"reasoning": "the same", "suggestion": {"keywords": "good"}})

    model = KeywordModel()
    opt = tk.Optimizer(model.parameters(), llm=stuck)
    result = Trainer(model, opt, counting, train=KEYWORD_DATA, val=KEYWORD_DATA, batch_size=4, max_steps=50,
                     progress=False, executor="serial", max_metric_calls=120, seed=3).fit()
    assert len(calls) <= 120 and result.budget["spent"]["metric_calls"] == len(calls)
    assert result.stop_reason.startswith("max_metric_calls=120")
    # the stuck text steps explored, scoring their proposals on the minibatch (charged above)
    explored = [c for r in result.history for c in r["changes"] if "exploratory proposal" in c["reason"]
                or c["reason"].startswith("explored")]
    assert len(explored) == result.steps >= 2


def test_a_budget_smaller_than_the_first_validation_is_refused_before_running(empty_registry):
    register_subset_proposer()
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=DATA,
                      progress=False, max_metric_calls=10)
    with pytest.raises(Exception, match="max_metric_calls=10"):
        trainer.fit()


def test_llm_cost_budget_stops_before_a_step_that_would_pass_it(empty_registry):
    _, trainer = sim_trainer("greedy", cost=0.01, max_llm_cost=0.035)
    result = trainer.fit()
    assert result.cost <= 0.035 and result.cost == pytest.approx(0.03)
    assert result.stop_reason.startswith("max_llm_cost=0.035")


def test_seconds_budget_stops_before_passing_it(empty_registry):
    def slow(prediction, example):
        time.sleep(0.002)
        return solved_metric(prediction, example)

    register_subset_proposer()
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), slow, train=DATA, val=DATA,
                      batch_size=4, max_steps=1000, progress=False, executor="serial",
                      batch_objective=False, strategy="beam", max_seconds=0.6)
    start = time.perf_counter()
    result = trainer.fit()
    assert result.stop_reason.startswith("max_seconds=0.6")
    assert result.seconds <= 0.6 + 0.1 and time.perf_counter() - start < 3


def test_budget_arguments_are_checked():
    model = ModulesModel()
    for kw, error in ((dict(max_metric_calls=0), ValueError), (dict(max_llm_cost=-1.0), ValueError),
                      (dict(max_seconds="10"), TypeError)):
        with pytest.raises(error):
            Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=DATA, **kw)


# --- resume ------------------------------------------------------------------------------
def strip(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "time", "stop_reason")} for r in records]


@pytest.mark.parametrize("strategy", ["pareto", "beam", "priority"])
def test_resume_of_a_pool_mid_run_gives_the_same_result(empty_registry, tmp_path, strategy):
    model, trainer = sim_trainer(strategy, max_steps=24, run_dir=tmp_path / "whole")
    whole = trainer.fit()

    _, first = sim_trainer(strategy, max_steps=9, run_dir=tmp_path / "split")
    first.fit()
    # the proposer is rebuilt with another seed: only the restored solver state makes it match
    model2, second = sim_trainer(strategy, proposer_seed=99, max_steps=24, run_dir=tmp_path / "split",
                                 resume=True)
    resumed = second.fit()
    assert strip(read_log(tmp_path / "split")) == strip(read_log(tmp_path / "whole"))
    assert resumed.best_params == whole.best_params and resumed.best_candidate == whole.best_candidate
    assert [c["id"] for c in resumed.front] == [c["id"] for c in whole.front]
    assert resumed.budget["spent"]["metric_calls"] == whole.budget["spent"]["metric_calls"]
    assert {n: getattr(model2, n).data for n in ("m0", "m1")} == {n: getattr(model, n).data for n in ("m0", "m1")}


def test_resume_with_another_strategy_is_refused_without_changes(empty_registry, tmp_path):
    model, trainer = sim_trainer("pareto", max_steps=3, run_dir=tmp_path / "run")
    trainer.fit()
    model2, greedy = sim_trainer("greedy", max_steps=6, run_dir=tmp_path / "run", resume=True)
    before = {n: getattr(model2, n).data for n in ("m0", "m1", "m2", "m3")}
    with pytest.raises(StateDictError, match="same strategy"):
        greedy.fit()
    assert {n: getattr(model2, n).data for n in before} == before


def test_a_damaged_pool_in_the_checkpoint_is_refused(empty_registry, tmp_path):
    from tracekit.training import checkpoint as ckpt

    _, trainer = sim_trainer("pareto", max_steps=3, run_dir=tmp_path / "run")
    trainer.fit()
    saved = ckpt.load_checkpoint(tmp_path / "run")
    saved.pop("format")
    saved["pool"]["candidates"][0]["values"]["m0"] = 12  # not a text value
    ckpt.save_checkpoint(tmp_path / "run", saved)
    model, again = sim_trainer("pareto", max_steps=6, run_dir=tmp_path / "run", resume=True)
    with pytest.raises(StateDictError, match="pool candidate 0"):
        again.fit()


def test_greedy_stays_the_default_and_its_log_is_unchanged(empty_registry):
    register_plan("text", {"m0": ["11111"]})
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=DATA, val=DATA,
                      batch_size=4, max_steps=2, progress=False, batch_objective=False)
    result = trainer.fit()
    assert trainer.strategy.name == "greedy" and result.strategy == "greedy"
    assert result.best_candidate is None and "candidate" not in result.history[1]
    # the second step changed nothing: it is not validated again (its record shows the best score)
    assert [r["spent_metric_calls"] for r in result.history] == [20, 44, 48]
    assert result.history[2]["screen"] == {"skipped": "the step changed nothing"}
    assert result.history[2]["val_score"] == result.history[1]["val_score"]


# --- show and plot -------------------------------------------------------------------------
def test_show_prints_the_best_candidate_and_the_front(empty_registry, tmp_path, capsys):
    from tracekit.cli import main

    _, trainer = sim_trainer("pareto", max_metric_calls=300, run_dir=tmp_path / "run")
    result = trainer.fit()
    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"best candidate {result.best_candidate['id']}" in out
    assert "Pareto front" in out and "metric calls" in out
    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["front"] == [c["id"] for c in result.front]
    assert summary["stop_reason"].startswith("max_metric_calls=300")


def test_plot_run_draws_score_against_metric_calls(empty_registry, tmp_path):
    pytest.importorskip("matplotlib")
    from tracekit.pictures.run_plot import run_series

    _, trainer = sim_trainer("pareto", max_metric_calls=200, run_dir=tmp_path / "run")
    trainer.fit()
    records = read_log(tmp_path / "run")
    xs, ys = run_series(records, x="spent_metric_calls")["best_score"]
    assert xs == sorted(xs) and xs[-1] <= 200 and xs[0] == 20
    path = tk.plot_run(tmp_path / "run", tmp_path / "run.svg", x="spent_metric_calls")
    assert path.exists() and "metric calls" in path.read_text()


# --- every kind of parameter -------------------------------------------------------------
def test_pool_of_mixed_parameters_shares_unchanged_tensors_and_resumes(empty_registry, tmp_path):
    """Text, categorical, float and tensor parameters in one pool: a child keeps its parent's
    tensor object when the step left the tensor alone, and the pool survives a resume."""
    from tests.train.helpers import DATA as WORDS

    register_plan("text", {"keywords": ["good, great", "good, great, nice", "bad", "good, great, nice, lovely"]})
    # with the Trainer's objective: the float and the categorical -> "bayesian", the tensor
    # read through float() -> "zeroth_order"
    register_plan("bayesian", {"threshold": [0.4, 0.3, 0.2, 0.1],
                               "mode": ["strict", "loose", "strict", "loose"]})
    register_plan("zeroth_order", {"w": [None, torch.tensor([2.0, 0.0]), None, None]})

    @tk.bundle()
    def run(text, keywords, threshold, mode, w):
        words = text.lower().split()
        keys = {k.strip() for k in keywords.split(",")}
        share = sum(x in keys for x in words) / len(words) + float(w.detach()[1])
        return "pos" if share >= threshold else "neg"

    class Mixed(tk.Module):
        def __init__(self):
            self.keywords = tk.param("good", name="keywords")
            self.threshold = tk.param(0.5, name="threshold", bounds=(0.0, 1.0))
            self.mode = tk.param("loose", name="mode", choices=["loose", "strict"])
            self.w = tk.param(torch.zeros(2), name="w")

        def forward(self, text):
            return run(text, self.keywords, self.threshold, self.mode, self.w)

    def metric(prediction, example):
        return 1.0 if prediction == example[1] else (0.0, f"expected {example[1]}")

    def build(max_steps, resume=False):
        model = Mixed()
        trainer = Trainer(model, tk.Optimizer(model.parameters()), metric, train=WORDS, val=WORDS,
                          batch_size=4, max_steps=max_steps, progress=False, executor="serial",
                          strategy=Pareto(screen=False, merge_every=0), run_dir=tmp_path / "run",
                          resume=resume)
        return model, trainer

    model, trainer = build(2)
    trainer.fit()
    pool = trainer.search.pool
    first = pool.get(1)
    assert first.parents == [0] and first.values["w"] is pool.get(0).values["w"]  # shared, not copied
    model, again = build(4, resume=True)
    result = again.fit()
    kinds = {c["name"] for r in result.history[1:] for c in r["changes"] if c["changed"]}
    assert kinds >= {"keywords", "threshold", "mode"}
    assert len(again.search.pool) >= 3 and result.steps == 4
    best = again.search.pool.best()
    assert torch.equal(model.w.data, best.values["w"]) and model.keywords.data == best.values["keywords"]


def test_budget_found_exhausted_inside_the_objective_ends_the_step_even_if_swallowed(empty_registry):
    """A solver that calls the lent objective and swallows every error cannot make the
    trainer run past max_metric_calls."""
    calls = []

    class Swallowing:
        name = "swallowing"

        def __init__(self, params, **options):
            pass

        def step(self, params, context):
            from tracekit.seam import ParamUpdate

            first = params[0].data
            for i in range(50):  # each objective call on new values (equal ones are memoized)
                params[0].data = f"{i:05d}"
                try:
                    context.objective()
                except Exception:
                    pass
            params[0].data = first
            return [ParamUpdate(context.name_of(p), self.name, new_value="11111") for p in params[:1]]

    def counting(prediction, example):
        calls.append(example)
        return solved_metric(prediction, example)

    tk.register_solver("text", Swallowing)
    model = ModulesModel()
    trainer = Trainer(model, tk.Optimizer(model.parameters()), counting, train=DATA, val=DATA,
                      batch_size=4, max_steps=10, progress=False, executor="serial",
                      max_metric_calls=100)
    result = trainer.fit()
    assert len(calls) <= 100 and result.stop_reason.startswith("max_metric_calls=100")
    # the step's allowance stopped the objective (TrialsSpent, swallowed too) with its
    # validation still affordable: the step counts instead of being discarded
    assert result.steps == 1 and result.budget["spent"]["metric_calls"] == len(calls)


POOL_SCRIPT = r'''
import sys, time
import tracekit as tk
from tracekit import seam as registry
from tests.train.helpers import ModulesModel, register_subset_proposer, solved_metric
from tracekit.training import Trainer

registry._factories.clear(); registry._BUILTIN.clear()
register_subset_proposer(seed=3, targeted=True)
delay = float(sys.argv[2])

def metric(prediction, example):
    time.sleep(delay)
    return solved_metric(prediction, example)

model = ModulesModel(start=3)
result = Trainer(model, tk.Optimizer(model.parameters()), metric, train=list(range(20)), val=list(range(20)),
                 batch_size=4, max_steps=30, seed=3, run_dir=sys.argv[1], resume=True, progress=False,
                 executor="serial", batch_objective=False, strategy="pareto", max_metric_calls=400).fit()
print("FINAL", result.best_score, result.best_candidate["id"], [c["id"] for c in result.front],
      result.budget["spent"]["metric_calls"], [getattr(model, f"m{k}").data for k in range(4)])
'''


@pytest.mark.timeout(180)
def test_a_pareto_run_killed_mid_run_resumes_to_the_same_result(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))

    def run(run_dir, delay):
        return subprocess.Popen([sys.executable, "-c", POOL_SCRIPT, str(run_dir), str(delay)], cwd=root,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    reference = run(tmp_path / "reference", 0.0)
    out, err = reference.communicate(timeout=90)
    assert reference.returncode == 0, err[-2000:]
    victim = run(tmp_path / "victim", 0.003)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            saved = load_checkpoint(tmp_path / "victim")
        except FileNotFoundError:
            saved = None
        if saved and saved["step"] >= 6:
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL, "the run should be killed mid-way"
    killed_at = load_checkpoint(tmp_path / "victim")["step"]
    assert 6 <= killed_at < read_log(tmp_path / "reference")[-1]["step"]
    resumed = run(tmp_path / "victim", 0.0)
    out2, err2 = resumed.communicate(timeout=90)
    assert resumed.returncode == 0, err2[-2000:]
    assert out2.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    assert strip(read_log(tmp_path / "victim")) == strip(read_log(tmp_path / "reference"))


def test_pool_search_with_threads_matches_serial_and_the_bar_shows_the_budget(empty_registry):
    results = []
    for executor in ("serial", "thread"):
        register_subset_proposer(seed=4, targeted=True)
        model = ModulesModel(start=4)
        trainer = Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=DATA, val=DATA,
                          batch_size=4, max_steps=40, seed=4, progress=False, executor=executor,
                          batch_objective=False, strategy="pareto", max_metric_calls=300)
        results.append(trainer.fit())
        assert "calls=" in trainer._postfix() and "/300" in trainer._postfix()
    serial, threaded = results
    assert strip(serial.history) == strip(threaded.history)
    assert serial.best_params == threaded.best_params


def test_show_of_an_unfinished_pool_run_reads_the_front_from_the_log(empty_registry, tmp_path, capsys):
    from tracekit.cli import main

    _, trainer = sim_trainer("pareto", max_steps=12, run_dir=tmp_path / "run")
    result = trainer.fit()
    (tmp_path / "run" / "summary.json").unlink()  # as if the run were still going
    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stop_reason"].startswith("unfinished")
    assert summary["best_candidate"]["id"] == result.best_candidate["id"]
    assert summary["front"] == [c["id"] for c in result.front]


@pytest.mark.parametrize("strategy", ["pareto", "priority"])
def test_a_lower_is_better_metric_is_searched_the_right_way(empty_registry, strategy):
    register_subset_proposer(seed=5, targeted=True)
    model = ModulesModel(start=5)

    def errors(prediction, example):
        return 0.0 if prediction == "ok" else (1.0, "not solved")

    trainer = Trainer(model, tk.Optimizer(model.parameters()), errors, train=DATA, val=DATA, batch_size=4,
                      max_steps=40, seed=5, progress=False, executor="serial", batch_objective=False,
                      strategy=strategy, higher_is_better=False)
    result = trainer.fit()
    assert result.best_score < result.initial_score
    assert result.best_candidate["score"] == pytest.approx(-result.best_score)  # oriented: higher is better
    for r in result.history[1:]:
        if r["screen"] and r["accepted"] and r["candidate"]["origin"] == "step":
            assert r["screen"]["child"] < r["screen"]["parent"]
    with tk.no_trace():
        assert sum(errors(model(i).data if hasattr(model(i), "data") else model(i), i) == 0.0
                   for i in DATA) / 20 == pytest.approx(1 - result.best_score)


@pytest.mark.parametrize("damage", [{"budget": {"metric_calls": "many"}}, {"budget": {"seconds": -1.0}},
                                    {"budget": [1, 2]}])
def test_a_damaged_budget_in_the_checkpoint_is_refused_without_changes(empty_registry, tmp_path, damage):
    from tracekit.training import checkpoint as ckpt

    _, trainer = sim_trainer("beam", max_steps=3, run_dir=tmp_path / "run")
    trainer.fit()
    saved = ckpt.load_checkpoint(tmp_path / "run")
    saved.pop("format")
    saved.update(damage)
    ckpt.save_checkpoint(tmp_path / "run", saved)
    model, again = sim_trainer("beam", max_steps=6, run_dir=tmp_path / "run", resume=True)
    before = {n: getattr(model, n).data for n in ("m0", "m1", "m2", "m3")}
    with pytest.raises(StateDictError, match="budget"):
        again.fit()
    assert {n: getattr(model, n).data for n in before} == before and len(again.search.pool) == 0
