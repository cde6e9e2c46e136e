"""Constraints attached to the Optimizer: augmented Lagrangian for tensors, text feedback
for the other parameters."""

import pytest
import torch

import tracekit as tk
from tracekit import seam as registry
from tracekit.seam import ParamUpdate


def test_tensor_parameters_reach_the_constrained_optimum():
    # min ||w - (2, 2)||^2  s.t.  w0 + w1 <= 1   ->  w* = (0.5, 0.5)
    w = tk.param(torch.zeros(2, dtype=torch.float64), name="w")
    target = torch.tensor([2.0, 2.0], dtype=torch.float64)
    opt = tk.Optimizer([w], numeric="adam", lr=0.05, constraints=[tk.Ineq(lambda w: w.sum() - 1.0)])
    for _ in range(600):
        opt.zero_feedback()
        out = torch.sum((w - target) ** 2)
        opt.backward(out, out)
        report = opt.step()
    assert w.data.tolist() == pytest.approx([0.5, 0.5], abs=2e-2)
    assert report.max_violation < 1e-2
    assert "max violation" in str(report)


def test_unconstrained_run_differs_so_the_constraint_matters():
    w = tk.param(torch.zeros(2, dtype=torch.float64), name="w")
    opt = tk.Optimizer([w], numeric="adam", lr=0.05)
    for _ in range(300):
        opt.zero_feedback()
        out = torch.sum((w - 2.0) ** 2)
        opt.backward(out, out)
        opt.step()
    assert w.data.sum().item() > 3.5


def test_violated_constraints_reach_text_parameters_as_feedback(monkeypatch):
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_BUILTIN", {})
    seen = []

    class Recorder:
        name = "recorder"

        def __init__(self, params, **options):
            pass

        def step(self, params, context):
            for r in context.records(params):
                seen.append(r.feedback.text)
            return [ParamUpdate(context.name_of(p), self.name, new_value="short") for p in params]

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    tk.register_solver("text", Recorder)
    prompt = tk.param("a very long prompt indeed", name="prompt")
    opt = tk.Optimizer([prompt], constraints=[tk.Ineq(lambda p: len(p) - 10.0)])
    opt.backward(prompt + "!", "answer was fine")
    report = opt.step()
    assert any("violated" in (t or "") for t in seen)
    assert prompt.data == "short" and report.max_violation == 0.0


def test_constraint_state_round_trips_through_a_file(tmp_path):
    from tracekit import storage

    w = tk.param(torch.zeros(2, dtype=torch.float64), name="w")
    opt = tk.Optimizer([w], numeric="adam", lr=0.05, constraints=[tk.Ineq(lambda w: w.sum() - 1.0)],
                       constraint_update_every=1)
    for _ in range(3):
        opt.zero_feedback()
        out = torch.sum((w - 2.0) ** 2)
        opt.backward(out, out)
        opt.step()
    storage.save(tmp_path / "opt.json", {"format": "test", "state": opt.state_dict()})
    state = storage.load(tmp_path / "opt.json", "optimizer state", ["test"])["state"]
    other = tk.Optimizer([w], numeric="adam", lr=0.05, constraints=[tk.Ineq(lambda w: w.sum() - 1.0)])
    other.load_state_dict(state)
    assert other._steps == 3
    assert other._penalty.multipliers[0].tolist() == opt._penalty.multipliers[0].tolist()
