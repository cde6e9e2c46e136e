"""tk.Optimizer checks every argument when it is built, as torch.optim does."""

import math

import pytest
import torch

import tracekit as tk
from tracekit import seam
from tracekit.errors import InvalidOptionError
from tracekit.options import ROUTE_OPTIONS


@pytest.fixture
def w():
    return tk.param(torch.zeros(3), name="w")


@pytest.mark.parametrize("name", ["adamz", "sdg", "rmsprop", ""])
def test_an_unknown_numeric_optimizer_is_refused_at_construction(w, name):
    with pytest.raises(InvalidOptionError) as caught:
        tk.Optimizer([w], numeric=name)
    message = str(caught.value)
    assert f"numeric={name!r}" in message
    assert all(f'"{algo}"' in message for algo in ("sgd", "adam", "adamw", "lion"))
    assert isinstance(caught.value, ValueError)


def test_an_unknown_numeric_optimizer_is_refused_without_tensor_parameters_too():
    with pytest.raises(InvalidOptionError, match="adamz.*did you mean 'adam'"):
        tk.Optimizer([tk.param("Be brief.", name="prompt")], numeric="adamz")


def test_numeric_accepts_names_in_any_case_objects_and_factories(w):
    tk.Optimizer([w], numeric="AdamW")
    tk.Optimizer([w], numeric=torch.optim.SGD([w.data], lr=0.1))
    tk.Optimizer([w], numeric=lambda groups, lr: torch.optim.SGD(groups, lr=lr))
    with pytest.raises(InvalidOptionError, match="numeric must be"):
        tk.Optimizer([w], numeric=3)


@pytest.mark.parametrize("lr", [-1e-3, math.nan, math.inf, -math.inf, "fast", None, True])
def test_a_bad_learning_rate_is_refused(w, lr):
    with pytest.raises(InvalidOptionError, match=r"lr .*must be a finite number >= 0|lr must be"):
        tk.Optimizer([w], lr=lr)


def test_good_learning_rates_pass(w):
    for lr in (0, 0.0, 1e-3, 3, torch.tensor(0.01)):
        tk.Optimizer([w], lr=lr)


def test_an_unknown_option_is_refused_with_a_suggestion_and_the_accepted_names(w):
    with pytest.raises(InvalidOptionError) as caught:
        tk.Optimizer([w], weight_decy=0.1)
    message = str(caught.value)
    assert "'weight_decy' (did you mean 'weight_decay'?)" in message
    for names in ROUTE_OPTIONS.values():  # every route's options are listed
        assert all(name in message for name in names)


def test_every_route_option_is_accepted(w):
    options = {"weight_decay": 0.1, "clip_grad_norm": 1.0, "schedule": "cosine", "total_steps": 10,
               "numeric_options": {}, "spsa_a": 0.2, "spsa_samples": 2, "n_candidates": 2,
               "max_reasks": 1, "prompt_tokens": 3000}
    opt = tk.Optimizer([w], **options)
    assert all(opt.param_groups[0][k] == v for k, v in options.items())


def test_param_group_options_are_checked_and_the_message_names_the_group(w):
    t = tk.param(0.5, name="t")
    with pytest.raises(InvalidOptionError, match="'spsa_z'.* in param group 1"):
        tk.Optimizer([{"params": [w]}, {"params": [t], "spsa_z": 1}])
    with pytest.raises(InvalidOptionError, match="lr in param group 0 must be"):
        tk.Optimizer([{"params": [w], "lr": -0.5}])
    with pytest.raises(InvalidOptionError, match="numeric='adamz' in param group 0"):
        tk.Optimizer([{"params": [w], "numeric": "adamz"}])
    with pytest.raises(InvalidOptionError, match="'params' list"):
        tk.Optimizer([{"lr": 0.1}])


def test_empty_parameter_lists_are_refused(w):
    with pytest.raises(InvalidOptionError, match="empty parameter list"):
        tk.Optimizer([])
    with pytest.raises(InvalidOptionError, match="empty parameter list"):
        tk.Optimizer(p for p in [])
    with pytest.raises(InvalidOptionError, match="params in param group 0: an empty parameter list"):
        tk.Optimizer([{"params": []}, {"params": [w]}])
    with pytest.raises(InvalidOptionError, match="params must be a list"):
        tk.Optimizer("w")


def test_a_parameter_given_twice_is_refused(w):
    with pytest.raises(InvalidOptionError, match="'w' is given twice in param group 0"):
        tk.Optimizer([w, w])
    with pytest.raises(InvalidOptionError,
                       match=r"'w' is given twice \(in param group 0 and again in param group 1\)"):
        tk.Optimizer([{"params": [w]}, {"params": [tk.param(1.0, name="b"), w]}])
    opt = tk.Optimizer([w])
    with pytest.raises(InvalidOptionError, match="given twice"):
        opt.add_param_group({"params": [w]})
    with pytest.raises(InvalidOptionError, match="'momentun'"):
        opt.add_param_group({"params": [tk.param(1.0, name="c")], "momentun": 0.9})
    assert len(opt.param_groups) == 1  # nothing half-added


def test_a_registered_solver_declares_its_own_options(monkeypatch):
    monkeypatch.setattr(seam, "_factories", {})
    monkeypatch.setattr(seam, "_options", {})
    p = tk.param("Answer.", name="instruction")
    with pytest.raises(InvalidOptionError, match="'creativity'"):
        tk.Optimizer([p], creativity=0.9)
    seen = {}

    class Solver:
        name = "mine"

        def __init__(self, params, creativity=0.0, **options):
            seen["creativity"] = creativity

        def step(self, params, context):
            return [seam.ParamUpdate(context.name_of(q), self.name) for q in params]

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    tk.register_solver("text", Solver, options=["creativity"])
    opt = tk.Optimizer([p], creativity=0.9)
    opt.backward(p + "?", "more")
    opt.step()
    assert seen == {"creativity": 0.9}
    with pytest.raises(TypeError, match="list of option names"):
        tk.register_solver("text", Solver, options="creativity")
