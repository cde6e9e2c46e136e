"""Numeric parameters inside traced workflows: gradients, routes, guards, SPSA, state."""

from __future__ import annotations

import json

import pytest
import torch

import tracekit as tk
from tracekit.routes.gradient import GradientSolver
from tracekit.routes.zeroth_order import ZerothOrderSolver


def _data(seed: int = 0, n: int = 40):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.7
    return X, y


def _layer(w, b, X):
    """A small model: tanh features, then a linear read-out."""
    h = torch.tanh(X * w)
    return h.sum(dim=1) * 2.0 + b


def test_gradients_through_bundles_match_torch_autograd():
    X, y = _data()
    w0 = torch.tensor([0.3, -0.1, 0.8], dtype=torch.float64)
    b0 = torch.tensor(0.2, dtype=torch.float64)
    # plain torch
    w_ref, b_ref = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    loss_ref = torch.mean((_layer(w_ref, b_ref, X) - y) ** 2) + 0.1 * torch.sum(w_ref ** 2)
    loss_ref.backward()
    # traced: a bundled function, then node operators and torch functions on nodes
    w, b = tk.param(w0.clone(), name="w"), tk.param(b0.clone(), name="b")
    layer = tk.bundle()(_layer)
    out = layer(w, b, tk.node(X, name="X"))
    loss = torch.mean((out - y) ** 2) + 0.1 * torch.sum(w ** 2)
    assert isinstance(loss, tk.Node)
    opt = tk.Optimizer([w, b], numeric="sgd", lr=0.0)
    opt.zero_feedback()
    opt.backward(out, loss)
    assert torch.allclose(w.data.grad, w_ref.grad, atol=1e-12)
    assert torch.allclose(b.data.grad, b_ref.grad, atol=1e-12)
    assert float(loss.data.detach()) == pytest.approx(float(loss_ref.detach()))


def test_mixed_graph_one_differentiable_one_not():
    X, y = _data()
    w = tk.param(torch.zeros(3, dtype=torch.float64), name="w")
    shift = tk.param(torch.zeros(1, dtype=torch.float64), name="shift")  # read through float()
    gain = tk.param(1.0, name="gain", bounds=(0.0, 5.0))  # a Python number

    @tk.bundle()
    def predict(w, shift, gain, X):
        offset = shift[0].item()  # breaks the autograd path for `shift`
        return (X @ w) * gain + offset

    def run():
        out = predict(w, shift, gain, tk.node(X))
        return out, torch.mean((out - y) ** 2)

    calls = []

    def objective():
        calls.append(1)
        return run()[1]

    opt = tk.Optimizer([w, shift, gain], numeric="adam", lr=0.05, objective=objective)
    first = None
    for _ in range(40):
        opt.zero_feedback()
        out, loss = run()
        first = first if first is not None else float(loss.data.detach())
        opt.backward(out, loss)
        report = opt.step()
    assert report["w"].solver == "gradient" and report["w"].info["differentiable"] is True
    assert report["shift"].solver == "zeroth_order"
    assert "no differentiable path" in report["shift"].reason
    assert report["gain"].solver == "bayesian" and report["gain"].info["mode"] == "objective"
    assert isinstance(gain.data, float) and 0.0 <= gain.data <= 5.0
    assert calls and float(run()[1].data.detach()) < 0.2 * first


def test_python_numbers_route_to_bayesian_search_with_an_objective_or_a_loss():
    from tracekit.optimizer import route_of

    t = tk.param(0.5, name="t")
    tk.backward(t * 2, 1.0)
    assert route_of(t, False) == "bayesian" and route_of(t, True) == "bayesian"
    u = tk.param(0.5, name="u")
    tk.backward(u * 2, float("nan"))  # no finite loss and no objective: the LLM optimizer
    assert route_of(u, False) == "text" and route_of(u, True) == "bayesian"


def test_bounds_are_enforced_and_reported():
    w = tk.param(torch.tensor([0.5, 0.5]), name="w", bounds=(0.0, 1.0))
    opt = tk.Optimizer([w], numeric="sgd", lr=1.0)
    out = torch.sum(w * torch.tensor([3.0, -0.1]))  # pushes w[0] down hard, w[1] up a little
    opt.backward(out, out)
    report = opt.step()
    assert w.data.tolist() == pytest.approx([0.0, 0.6])
    assert report["w"].info["bound_active"] == 1 and "bound active" in report["w"].reason


def test_nan_gradient_skips_the_parameter_and_keeps_its_value():
    a = tk.param(torch.tensor([-1.0, 4.0]), name="a")
    b = tk.param(torch.tensor([2.0]), name="b")
    opt = tk.Optimizer([a, b], numeric="adam", lr=0.1)
    # the where/sqrt trap: the loss is finite, the gradient of sqrt(-1) is NaN
    out = torch.sum(torch.where(a > 0, torch.sqrt(a), torch.zeros(2))) + torch.sum(b ** 2)
    assert torch.isfinite(out.data)
    opt.backward(out, out)
    assert torch.isnan(a.data.grad).any()
    report = opt.step()
    assert a.data.tolist() == [-1.0, 4.0] and not report["a"].changed
    assert "NaN" in report["a"].reason and report["a"].info["skipped"] == "non-finite gradient"
    assert report["b"].changed and float(b.data.detach()) < 2.0


def test_nan_loss_is_reported_and_changes_nothing():
    t = tk.param(2.0, name="t")
    w = tk.param(torch.ones(2), name="w")
    opt = tk.Optimizer([t, w], numeric="adam", lr=0.1, objective=lambda: 1.0)
    out = torch.sum(w) * t * float("nan")
    opt.backward(out, out)
    report = opt.step()
    assert t.data == 2.0 and w.data.tolist() == [1.0, 1.0]
    assert "NaN/inf loss" in report["t"].reason and "NaN/inf loss" in report["w"].reason


@pytest.mark.parametrize("numeric", ["sgd", "adam", "adamw", "lion"])
def test_end_to_end_traced_workflow_with_each_optimizer(numeric):
    X, y = _data(1)
    w = tk.param(torch.zeros(3, dtype=torch.float64), name="w")
    b = tk.param(torch.zeros((), dtype=torch.float64), name="b")

    @tk.bundle()
    def predict(w, b, X):
        """Linear model."""
        return X @ w + b

    @tk.bundle()
    def mse(pred, y):
        return torch.mean((pred - y) ** 2)

    lr = {"sgd": 0.1, "adam": 0.1, "adamw": 0.1, "lion": 0.05}[numeric]
    extra = {"momentum": 0.9} if numeric == "sgd" else {}
    if numeric == "adamw":
        extra["weight_decay"] = 0.0
    opt = tk.Optimizer([w, b], numeric=numeric, lr=lr, schedule="cosine", total_steps=150, **extra)
    losses = []
    for _ in range(150):
        opt.zero_feedback()
        loss = mse(predict(w, b, tk.node(X)), tk.node(y))
        opt.backward(loss, loss)
        losses.append(float(loss.data.detach()))
        report = opt.step()
    assert losses[-1] < 0.01 * losses[0]
    assert report["w"].solver == "gradient" and report["w"].info["grad_norm"] is not None
    assert torch.allclose(w.data.detach(), torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64), atol=0.3)


def test_user_optimizer_factory_and_group_options():
    w = tk.param(torch.ones(2), name="w")
    v = tk.param(torch.ones(2), name="v")
    opt = tk.Optimizer([{"params": [w], "lr": 0.5}, {"params": [v], "numeric": torch.optim.SGD, "lr": 0.1}],
                       numeric="sgd", clip_grad_norm=1e9, n_candidates=2)  # a text option: ignored here
    assert opt.param_groups[1]["n_candidates"] == 2
    out = torch.sum(w) + torch.sum(v)
    opt.backward(out, out)
    opt.step()
    assert w.data.tolist() == pytest.approx([0.5, 0.5]) and v.data.tolist() == pytest.approx([0.9, 0.9])
    assert opt._solvers[(1, "gradient")].optimizer.algorithm == "SGD"


def test_state_dict_round_trip_through_tk_optimizer(tmp_path):
    from tracekit import storage

    X, y = _data(2)

    @tk.bundle()
    def predict(w, t, s, X):
        return X @ w + t + s[0].item()  # w: gradient; t (a float): Bayesian search; s: SPSA

    def make():
        w = tk.param(torch.zeros(3, dtype=torch.float64), name="w")
        t = tk.param(0.0, name="t", bounds=(-2.0, 2.0))
        s = tk.param(torch.zeros(1, dtype=torch.float64), name="s", bounds=(-2.0, 2.0))
        return w, t, s

    def objective(w, t, s):
        return lambda: torch.mean((X @ w.data.detach() + t.data + float(s.data[0]) - y) ** 2)

    def train(w, t, s, opt, steps):
        for _ in range(steps):
            opt.zero_feedback()
            out = predict(w, t, s, tk.node(X))
            loss = torch.mean((out - y) ** 2)
            opt.backward(out, loss)
            opt.step()

    w1, t1, s1 = make()
    opt1 = tk.Optimizer([w1, t1, s1], numeric="adam", lr=0.05, objective=objective(w1, t1, s1))
    train(w1, t1, s1, opt1, 5)
    storage.save(tmp_path / "opt.json", {"format": "test", "state": opt1.state_dict()})
    saved = storage.load(tmp_path / "opt.json", "optimizer state", ["test"])["state"]
    assert set(saved["solvers"]) == {"0:gradient", "0:zeroth_order", "0:bayesian"}

    w2, t2, s2 = make()
    w2.data = w1.data.detach().clone()
    t2.data = t1.data
    s2.data = s1.data.detach().clone()
    opt2 = tk.Optimizer([w2, t2, s2], numeric="adam", lr=0.05, objective=objective(w2, t2, s2))
    opt2.load_state_dict(saved)
    train(w1, t1, s1, opt1, 5)
    train(w2, t2, s2, opt2, 5)
    assert torch.allclose(w1.data, w2.data) and t1.data == t2.data and torch.equal(s1.data, s2.data)


def test_spsa_on_tensors_without_a_gradient_path_through_tk_optimizer():
    """Tensors read outside torch go to SPSA (Python numbers go to Bayesian search)."""
    temperature = tk.param(torch.tensor([0.2], dtype=torch.float64), name="temperature",
                           bounds=(0.0, 2.0))
    beams = tk.param(torch.tensor([1]), name="beams", bounds=(1, 8))  # integer dtype: rounded

    @tk.bundle()
    def run_api(temperature, beams):
        """A black box: only the score comes back (a Python number)."""
        t, b = temperature[0].item(), int(beams[0].item())
        return (t - 1.3) ** 2 + 0.05 * (b - 5) ** 2

    evals = []

    def objective():
        evals.append(1)
        return run_api(temperature, beams)

    opt = tk.Optimizer([temperature, beams], objective=objective, spsa_a=0.3, spsa_seed=0)
    for step in range(40):
        opt.zero_feedback()
        out = run_api(temperature, beams)
        opt.backward(out, out.data)
        before = len(evals)
        report = opt.step()
        assert len(evals) - before == (4 if step == 0 else 3)  # the documented budget
    assert report["temperature"].solver == report["beams"].solver == "zeroth_order"
    assert beams.data.dtype == torch.int64 and temperature.data.dtype == torch.float64
    assert abs(temperature.data[0].item() - 1.3) < 0.15 and beams.data[0].item() in (4, 5, 6)
    assert report["temperature"].info["total_evals"] == len(evals)


def test_objective_receiving_values_and_budget_limit():
    t = tk.param(torch.zeros(1), name="t", bounds=(-5.0, 5.0))  # a tensor, no gradient: SPSA
    seen = []

    def objective(values):
        seen.append(values["t"])
        return float((values["t"][0] - 2.0) ** 2)

    opt = tk.Optimizer([t], objective=objective, spsa_max_evals=10, spsa_a=0.5)
    for _ in range(6):
        opt.zero_feedback()
        opt.backward(t + 0.0, 1.0)
        report = opt.step()
    assert report["t"].solver == "zeroth_order"
    assert len(seen) <= 10 and "budget exhausted" in report["t"].reason
    assert t.data[0].item() == 0.0 or abs(t.data[0].item() - 2.0) < 2.0


def test_solver_state_is_json_and_checks_names():
    w = tk.param(torch.ones(2), name="w")
    solver = GradientSolver([w], numeric="lion", lr=0.1)
    state = json.loads(json.dumps(solver.state_dict()))
    other = GradientSolver([tk.param(torch.ones(2), name="other")], numeric="lion")
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(state)
    zo = ZerothOrderSolver([tk.param(1.0, name="x")])
    assert json.loads(json.dumps(zo.state_dict())) == {}


def test_step_report_previews_are_taken_at_step_time():
    """The report's old/new strings are rendered lazily, but show the values of that step."""
    from tracekit.nodes import short_repr

    small = tk.param(torch.tensor([1.0, 2.0]), name="small")
    big = tk.param(torch.zeros(1000), name="big")
    opt = tk.Optimizer([small, big], numeric="sgd", lr=0.5)
    out = torch.sum(small) + torch.sum(big)
    opt.backward(out, out)
    report = opt.step()
    out = torch.sum(small) + torch.sum(big)
    opt.zero_feedback()
    opt.backward(out, out)
    opt.step()  # changes the tensors again, in place
    assert report["small"].old == "[1.0, 2.0]" and report["small"].new == "[0.5, 1.5]"
    assert report["big"].old == report["big"].new == short_repr(big.data, 40)
    assert "small" in str(report) and report["small"].changed
