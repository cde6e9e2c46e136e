"""Per-row scaled gradient maxima without the Jacobian (solvers.constrained.row_norms)."""

from __future__ import annotations

import torch

from solvers.constrained.row_norms import row_max_abs


def outputs(X: torch.Tensor) -> torch.Tensor:
    """Three rows per instance: a smooth one, a sparse linear one, and a constant."""
    a = (X**2 * torch.arange(1, X.shape[1] + 1, dtype=X.dtype)).sum(1) + torch.sin(X[:, 0] * X[:, 1])
    b = 3.0 * X[:, 2] - 0.5 * X[:, 0]
    c = torch.ones(X.shape[0], dtype=X.dtype)
    return torch.stack([a, b, c], dim=1)


def test_row_maxima_match_the_jacobian():
    torch.manual_seed(0)
    X = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, dtype=torch.float64) + 0.5
    got = row_max_abs(outputs(X), X, weight=w)
    for b in range(2):
        J = torch.autograd.functional.jacobian(lambda x: outputs(x.reshape(1, -1))[0], X[b].detach())
        assert torch.allclose(got[b], (J * w).abs().amax(1), rtol=1e-12)
    assert torch.all(got[:, 2] == 0)  # a row that does not depend on x


def test_a_subset_of_rows_in_the_order_asked():
    X = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    out = outputs(X)
    full = row_max_abs(out, X)
    part = row_max_abs(out, X, rows=torch.tensor([1, 0]))
    assert torch.equal(part[0], full[0, [1, 0]])
    assert row_max_abs(out, X, rows=torch.tensor([], dtype=torch.long)).shape == (1, 0)


def test_non_finite_gradients_read_zero():
    X = torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    out = torch.stack([X[:, 0].sqrt(), X[:, 1] * 2], dim=1)  # d sqrt(x)/dx at 0 is inf
    assert torch.equal(row_max_abs(out, X)[0], torch.tensor([0.0, 2.0], dtype=torch.float64))
