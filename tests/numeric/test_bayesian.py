"""The "bayesian" route (Optuna, through `solvers.search`): numbers, integers and
categoricals without a gradient path, with an objective or from the feedback's loss."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

import tracekit as tk
from solvers.search import SAMPLERS, BayesianSearch, Categorical, Float, Int, check_sampler
from tracekit.optimizer import route_of

HAS_CMAES = importlib.util.find_spec("cmaes") is not None


def _feed(opt, params, loss=1.0):
    """A backward pass that reaches `params` with a numeric loss (not through torch)."""
    opt.zero_feedback()
    opt.backward(list(params), loss)


def _search(opt):
    """The single study of a one-group optimizer's bayesian route."""
    (search,) = opt._solvers[(0, "bayesian")]._searches.values()
    return search


# --- with an objective ---------------------------------------------------------------------
def test_a_bounded_float_is_solved_and_no_step_makes_the_objective_worse():
    x = tk.param(0.0, name="x", bounds=(-5.0, 5.0))
    calls = []

    def objective():
        calls.append(x.data)
        return (x.data - 2.0) ** 2

    opt = tk.Optimizer([x], objective=objective)  # defaults: TPE, 4 trials per step, seed 0
    previous = (x.data - 2.0) ** 2
    for step in range(10):
        before = len(calls)
        _feed(opt, [x])
        report = opt.step()
        assert len(calls) - before == (5 if step == 0 else 4)  # current value once, then 4 trials
        now = (x.data - 2.0) ** 2
        assert now <= previous
        previous = now
    assert report["x"].solver == "bayesian" and isinstance(x.data, float)
    assert abs(x.data - 2.0) < 0.1
    info = report["x"].info
    assert info["sampler"] == "TPE" and info["n_trials"] == len(calls) and info["mode"] == "objective"
    assert info["best_loss"] == pytest.approx((x.data - 2.0) ** 2)


def test_an_int_and_a_categorical_together_with_an_objective_of_values():
    k = tk.param(1, name="k", bounds=(1, 8))
    mode = tk.param("a", name="mode", choices=["a", "b", "c"])
    seen, held = [], []

    def objective(values):  # one argument: it gets {name: candidate}, the parameters stay put
        seen.append(values)
        assert (k.data, mode.data) == held[-1]
        return (values["k"] - 5) ** 2 + {"a": 1.0, "b": 0.0, "c": 2.0}[values["mode"]]

    opt = tk.Optimizer([k, mode], objective=objective)
    for _ in range(12):
        held.append((k.data, mode.data))
        _feed(opt, [k, mode])
        report = opt.step()
    assert k.data == 5 and mode.data == "b" and isinstance(k.data, int)
    assert report["k"].solver == report["mode"].solver == "bayesian"
    assert all(isinstance(v["k"], int) and v["mode"] in ("a", "b", "c") for v in seen)
    assert "TPE" in report["k"].reason or "none better" in report["k"].reason


def test_an_unbounded_float_finds_an_optimum_outside_its_first_interval():
    x = tk.param(0.0, name="x")  # no bounds: the search starts on [-1, 1] and widens
    opt = tk.Optimizer([x], objective=lambda: (x.data - 10.0) ** 2)
    for _ in range(15):
        _feed(opt, [x])
        opt.step()
    low, high = _search(opt).intervals["x"]
    assert high >= 10.0 and low == -1.0
    assert abs(x.data - 10.0) < 0.5


def test_an_int_with_one_open_side_widens_on_that_side_only():
    k = tk.param(0, name="k", bounds=(0, math.inf))
    opt = tk.Optimizer([k], objective=lambda: abs(k.data - 40))
    for _ in range(15):
        _feed(opt, [k])
        opt.step()
    low, high = _search(opt).intervals["k"]
    assert low == 0 and high >= 40 and abs(k.data - 40) <= 3


def test_failed_objective_trials_are_never_proposed():
    x = tk.param(0.0, name="x", bounds=(-5.0, 5.0))

    def objective():
        return float("nan") if x.data > 1.0 else (x.data - 3.0) ** 2  # best allowed: x = 1

    opt = tk.Optimizer([x], objective=objective)
    for _ in range(8):
        _feed(opt, [x])
        opt.step()
    states = {t.state.name for t in _search(opt).study.trials}
    assert states == {"COMPLETE", "FAIL"}
    assert 0.0 < x.data <= 1.0


def test_an_objective_that_raises_leaves_the_value_and_fails_its_trial():
    x = tk.param(0.5, name="x", bounds=(0.0, 1.0))
    calls = []

    def objective():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the workflow broke")
        return x.data

    opt = tk.Optimizer([x], objective=objective)
    _feed(opt, [x])
    report = opt.step()  # an expected failure: reported, the value rolled back
    assert x.data == 0.5 and "the workflow broke" in report["x"].reason
    assert [t.state.name for t in _search(opt).study.trials][-1] == "FAIL"


# --- without an objective: ask/tell across steps ------------------------------------------------
def test_feedback_losses_drive_ask_and_tell_across_steps():
    x = tk.param(0.0, name="x", bounds=(-4.0, 4.0))
    mode = tk.param("slow", name="mode", choices=["slow", "fast"])

    @tk.bundle()
    def workflow(x, mode):
        """A black box: a number comes out, no gradient."""
        return (x - 1.5) ** 2 + (0.0 if mode == "fast" else 1.0)

    opt = tk.Optimizer([x, mode])
    losses, reports = [], []
    for _ in range(30):
        out = workflow(x, mode)
        opt.zero_feedback()
        opt.backward(out, float(out.data))  # the loss of the values now in the parameters
        losses.append(float(out.data))
        reports.append(opt.step())
    assert {reports[-1]["x"].solver, reports[-1]["mode"].solver} == {"bayesian"}
    for before, after in zip(reports, reports[1:]):  # each step tells what the last trial scored
        assert after["x"].info["trial"] == before["x"].info["next_trial"]
        assert after["x"].info["mode"] == "feedback"
    assert min(losses) < 0.05 < losses[0]
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5
    assert reports[-1]["x"].info["best_loss"] == pytest.approx(min(losses))
    assert _search(opt).n_trials == 31  # 30 told, the last proposal pending


def test_a_nonfinite_loss_fails_the_trial_and_keeps_the_value():
    mode = tk.param("a", name="mode", choices=["a", "b"])
    opt = tk.Optimizer([mode])
    opt.backward(mode, float("nan"))
    assert route_of(mode, False) == "bayesian"
    report = opt.step()
    assert mode.data == "a" and not report["mode"].changed
    assert "NaN/inf loss" in report["mode"].reason and "value kept" in report["mode"].reason
    assert report["mode"].info["skipped"] == "non-finite loss"
    assert [t.state.name for t in _search(opt).study.trials] == ["FAIL"]
    # with an objective, a NaN loss from the feedback keeps the value too
    t = tk.param(2.0, name="t", bounds=(0.0, 4.0))
    opt = tk.Optimizer([t], objective=lambda: 1.0)
    opt.backward(t * float("nan"), float("nan"))
    report = opt.step()
    assert t.data == 2.0 and "NaN/inf loss" in report["t"].reason and "failed trial" in report["t"].reason


# --- samplers and options -------------------------------------------------------------------
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_name_works(sampler):
    x = tk.param(0.0, name="x", bounds=(-3.0, 3.0))
    k = tk.param(0, name="k", bounds=(-5, 5))
    mode = tk.param("a", name="mode", choices=["a", "b"])

    def objective():
        return (x.data - 1.0) ** 2 + 0.1 * (k.data - 2) ** 2 + (mode.data == "a")

    if sampler == "cmaes" and not HAS_CMAES:  # an optional package: a clear refusal instead
        with pytest.raises(tk.InvalidOptionError, match="pip install cmaes"):
            tk.Optimizer([x, k, mode], objective=objective, sampler=sampler)
        return
    opt = tk.Optimizer([x, k, mode], objective=objective, sampler=sampler, trials_per_step=5)
    start = objective()
    for _ in range(6):
        _feed(opt, [x, k, mode])
        report = opt.step()
    assert objective() < start  # a sanity check: some budget, every sampler improves
    assert report["x"].info["sampler"] == {"tpe": "TPE", "cmaes": "CMA-ES", "gp": "GP",
                                           "random": "random", "qmc": "QMC"}[sampler]
    assert report["x"].info["n_trials"] == 31


def test_an_optuna_sampler_instance_is_used_as_is():
    import optuna

    x = tk.param(0.0, name="x", bounds=(-1.0, 1.0))
    opt = tk.Optimizer([x], objective=lambda: (x.data - 0.5) ** 2,
                       sampler=optuna.samplers.RandomSampler(seed=3))
    _feed(opt, [x])
    assert opt.step()["x"].info["sampler"] == "RandomSampler"


def test_a_missing_sampler_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # as if `cmaes` were not installed
    with pytest.raises(ImportError, match="pip install cmaes"):
        check_sampler("cmaes")
    with pytest.raises(tk.InvalidOptionError, match="'cmaes' package"):
        tk.Optimizer([tk.param(0.5, name="x")], sampler="cmaes")


def test_bad_options_are_refused_when_the_optimizer_is_built():
    x = tk.param(0.5, name="x")
    with pytest.raises(tk.InvalidOptionError) as err:
        tk.Optimizer([x], sampler="tpee")
    assert all(repr(name) in str(err.value) for name in SAMPLERS)
    with pytest.raises(tk.InvalidOptionError, match="BaseSampler"):
        tk.Optimizer([x], sampler=42)
    with pytest.raises(tk.InvalidOptionError, match="trials_per_step"):
        tk.Optimizer([x], trials_per_step=0)
    with pytest.raises(tk.InvalidOptionError, match="search_seed"):
        tk.Optimizer([x], search_seed="zero")
    with pytest.raises(tk.InvalidOptionError, match="did you mean 'sampler'"):
        tk.Optimizer([x], samplr="tpe")
    tk.Optimizer([x], sampler="random", trials_per_step=2, search_seed=None)  # accepted


# --- state and resume --------------------------------------------------------------------------
def _objective_run(steps, state=None, storage_dir=None):
    """Steps of a seeded search; optionally resumed from `state` (values restored too)."""
    x = tk.param(0.0, name="x", bounds=(-5.0, 5.0))
    mode = tk.param("a", name="mode", choices=["a", "b", "c"])
    opt = tk.Optimizer([x, mode], objective=lambda: (x.data - 1.0) ** 2 + (mode.data != "c"))
    if state is not None:
        x.data, mode.data = state["values"]
        opt.load_state_dict(state["optimizer"])
    proposals = []
    for _ in range(steps):
        _feed(opt, [x, mode])
        report = opt.step()
        proposals.append((x.data, mode.data, report["x"].info["n_trials"]))
    return opt, (x.data, mode.data), proposals


def test_a_checkpoint_resumes_the_same_study_with_an_objective():
    _, _, uninterrupted = _objective_run(6)
    opt, values, first = _objective_run(3)
    state = json.loads(json.dumps(opt.state_dict()))  # plain JSON
    assert set(state["solvers"]) == {"0:bayesian"}
    saved = state["solvers"]["0:bayesian"]["x|mode"]
    assert len(saved["trials"]) == first[-1][2] == 13
    assert {"params", "distributions", "value", "state"} <= set(saved["trials"][0])
    _, _, resumed = _objective_run(3, {"values": values, "optimizer": state})
    assert first + resumed == uninterrupted  # same trials, the same next proposals


def _feedback_run(steps, state=None):
    k = tk.param(1, name="k", bounds=(1, 20))
    opt = tk.Optimizer([k])
    if state is not None:
        k.data = state["k"]
        opt.load_state_dict(state["optimizer"])
    seen = []
    for _ in range(steps):
        opt.zero_feedback()
        opt.backward(k * 1, float(abs(k.data - 13)))
        opt.step()
        seen.append(k.data)
    return opt, k, seen


def test_pending_trials_survive_a_checkpoint_through_tracekit_storage(tmp_path):
    from tracekit import storage

    _, _, uninterrupted = _feedback_run(10)
    opt, k, first = _feedback_run(5)
    search = _search(opt)
    assert search.trial(search.n_trials - 1).state == "RUNNING"  # the proposal, not told yet
    storage.save(tmp_path / "opt.json", {"format": "test", "k": k.data, "optimizer": opt.state_dict()})
    saved = storage.load(tmp_path / "opt.json", "optimizer state", ["test"])
    opt2, _, resumed = _feedback_run(5, saved)
    assert first + resumed == uninterrupted
    assert _search(opt2).n_trials == 11


def test_a_state_that_does_not_fit_is_refused_whole():
    opt, values, _ = _objective_run(2)
    state = json.loads(json.dumps(opt.state_dict()))
    bad = json.loads(json.dumps(state))
    bad["solvers"]["0:bayesian"]["x|mode"]["trials"][1]["state"] = "EXPLODED"
    before = opt.state_dict()
    with pytest.raises(tk.StateDictError, match="EXPLODED"):
        opt.load_state_dict(bad)
    assert opt.state_dict() == before
    # another space (the bounds changed): the study restarts and the report says so
    x = tk.param(0.0, name="x", bounds=(-1.0, 1.0))
    mode = tk.param("a", name="mode", choices=["a", "b", "c"])
    other = tk.Optimizer([x, mode], objective=lambda: x.data ** 2)
    other.load_state_dict(state)
    _feed(other, [x, mode])
    report = other.step()
    assert "saved search state not used" in report["x"].info["restarted"]


# --- routing ---------------------------------------------------------------------------------
def test_routing_rules():
    text = tk.param("Answer.", name="text")
    number = tk.param(0.5, name="number")
    choice = tk.param("a", name="choice", choices=["a", "b"])
    w = tk.param(torch.ones(2), name="w")
    broken = tk.param(torch.ones(2), name="broken")  # read through .item(): no gradient

    @tk.bundle()
    def read(b):
        return b.sum().item()

    tk.backward(text + "!", 1.0)
    tk.backward(number * 2, 1.0)
    tk.backward(choice, 1.0)
    loss = torch.sum(w * 2)
    tk.backward(loss, loss)
    tk.backward(read(broken), 1.0)
    assert route_of(text, False) == "text"
    assert route_of(number, False) == route_of(number, True) == "bayesian"
    assert route_of(choice, False) == route_of(choice, True) == "bayesian"
    assert route_of(w, False) == "gradient"
    assert route_of(broken, True) == "zeroth_order" and route_of(broken, False) == "text"
    # text-only feedback: no number to search on
    n2, c2 = tk.param(0.5, name="n2"), tk.param("a", name="c2", choices=["a", "b"])
    tk.backward(n2 * 2, "make it bigger")
    tk.backward(c2, "pick the other one")
    assert route_of(n2, False) != "bayesian" and route_of(c2, False) == "text"
    assert route_of(n2, True) == route_of(c2, True) == "bayesian"
    # a NaN loss: a categorical still goes to the search (a failed trial), a number does not
    n3 = tk.param(0.5, name="n3")
    tk.backward(n3 * 2, float("nan"))
    assert route_of(n3, False) == "text" and route_of(n3, True) == "bayesian"


def test_the_step_report_names_each_route():
    w = tk.param(torch.zeros(2), name="w")
    shift = tk.param(torch.zeros(1), name="shift")  # read through .item(): SPSA
    gain = tk.param(1.0, name="gain", bounds=(0.0, 3.0))  # a Python number: Bayesian search

    @tk.bundle()
    def predict(w, shift, gain):
        return torch.sum((w - 1.0) ** 2) + (shift[0].item() - 0.5) ** 2 + (gain - 2.0) ** 2

    opt = tk.Optimizer([w, shift, gain], numeric="adam", lr=0.1,
                       objective=lambda: float(predict(w, shift, gain).data))
    out = predict(w, shift, gain)
    opt.backward(out, out)
    report = opt.step()
    assert {name: report[name].solver for name in ("w", "shift", "gain")} == {
        "w": "gradient", "shift": "zeroth_order", "gain": "bayesian"}


# --- solvers.search on its own ----------------------------------------------------------------
def test_solvers_search_standalone_never_imports_tracekit_or_optuna_early():
    code = ("import sys; import solvers.search as s\n"
            "assert 'optuna' not in sys.modules and 'tracekit' not in sys.modules\n"
            "b = s.BayesianSearch({'x': s.Float(0, 4), 'k': s.Int(1, 3), 'c': s.Categorical([None, 'z'])})\n"
            "for _ in range(12):\n"
            "    v = b.ask(); b.tell(v, (v['x'] - 1) ** 2 + v['k'] + (v['c'] is None))\n"
            "assert 'tracekit' not in sys.modules\n"
            "print(b.best.loss < 3.5)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_bayesian_search_ask_tell_state_and_errors():
    space = {"x": Float(0.0, 4.0), "k": Int(1, 5), "c": Categorical([object(), "b"])}
    search = BayesianSearch(space, seed=1)
    told = search.tell({"x": 1.0, "k": 2, "c": "b"}, 3.0)  # a point that was not asked
    assert told.number == 0 and told.state == "COMPLETE"
    for _ in range(6):
        values = search.ask()
        search.tell(values, (values["x"] - 3.0) ** 2 + values["k"])
    pending = search.ask()
    state = json.loads(json.dumps(search.state_dict()))
    resumed = BayesianSearch(space, seed=1)
    resumed.load_state_dict(state)
    assert resumed.n_trials == search.n_trials == 8 and resumed.trial(7).state == "RUNNING"
    assert resumed.tell(pending, 0.5).number == 7 and search.tell(7, 0.5).state == "COMPLETE"
    assert resumed.ask() == search.ask()  # re-seeded from (seed, n_trials): the same proposal
    assert resumed.best == search.best and resumed.best.loss == 0.5
    assert search.tell(search.ask(), float("inf")).state == "FAIL"
    with pytest.raises(ValueError, match="outside|contained"):
        search.tell({"x": 9.0, "k": 2, "c": "b"}, 1.0)
    with pytest.raises(ValueError, match="not one of"):
        search.tell({"x": 1.0, "k": 2, "c": "zz"}, 1.0)
    with pytest.raises(ValueError, match="expected values"):
        search.tell({"x": 1.0}, 1.0)
    with pytest.raises(ValueError, match="not a pending trial"):
        search.tell(0, 1.0)
    with pytest.raises(ValueError, match="differs"):
        BayesianSearch({"x": Float(0.0, 5.0), "k": Int(1, 5), "c": Categorical(["a", "b"])}).load_state_dict(state)
    with pytest.raises(ValueError, match="unknown sampler 'annealing'"):
        BayesianSearch(space, sampler="annealing")


def test_open_intervals_stretch_to_a_value_told_from_outside():
    search = BayesianSearch({"x": Float(low=0.0)}, start={"x": 1.0})
    assert search.intervals["x"] == (0.0, 2.0)
    search.tell({"x": 50.0}, 1.0)
    assert search.intervals["x"][1] >= 50.0 and search.intervals["x"][0] == 0.0
    assert search.study.trials[0].distributions["x"].high == search.intervals["x"][1]
