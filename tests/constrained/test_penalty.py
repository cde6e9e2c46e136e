"""ALPenalty: the augmented-Lagrangian term used by tk.Optimizer for numeric parameters."""

from __future__ import annotations

import pytest
import torch

import tracekit as tk
from tracekit.problems import ALPenalty


def test_method_of_multipliers_with_torch_optimizer_reaches_constrained_optimum():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    pen = ALPenalty([tk.Eq(lambda w: w.sum() - 3, name="budget"), tk.Ineq(lambda w: w[2] - 1.2, name="cap")])
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = ((w - target) ** 2).sum() + pen.term(w)
        loss.backward()
        return loss

    for _outer in range(15):
        opt.step(closure)
        viol = pen.update(w)
    # exact solution: w2 = 1.2 (cap active), w0 + w1 = 1.8 with w0 - w1 = -1 -> (0.4, 1.4)
    assert viol < 1e-6
    assert torch.allclose(w.detach(), torch.tensor([0.4, 1.4, 1.2], dtype=torch.float64), atol=1e-5)
    assert float(pen.multipliers[1]) == pytest.approx(2.4, abs=1e-4)  # active cap: positive
    assert float(pen.multipliers[0]) == pytest.approx(1.2, abs=1e-4)
    assert pen.describe(w) == []


def test_describe_and_state_dict():
    pen = ALPenalty([tk.Ineq(lambda x: x - 1.0, name="limit")], rho=2.0)
    x = torch.tensor(3.0)
    assert pen.violation(x) == pytest.approx(2.0)
    assert "limit" in pen.describe(x)[0] and "2" in pen.describe(x)[0]
    term = pen.term(x)
    assert term.item() == pytest.approx(0.25 * (2.0 * 2.0) ** 2)  # 1/(2 rho) max(0, rho g)^2
    pen.update(x)
    state = pen.state_dict()
    pen2 = ALPenalty([tk.Ineq(lambda x: x - 1.0)])
    pen2.load_state_dict(state)
    assert float(pen2.multipliers[0]) == pytest.approx(4.0) and pen2.rho == pen.rho


def test_penalty_rejects_bad_constraints():
    with pytest.raises(ValueError, match="Ineq"):
        ALPenalty([lambda x: x])
