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


def test_many_rows_go_in_blocks_and_agree_with_one_pass_per_row(monkeypatch):
    """Above FUNC_MIN rows the maxima come from batched blocks (smaller than the Jacobian);
    they equal the row-by-row ones, including sqrt's infinite slope at 0 read as 0."""
    import solvers.constrained.row_norms as rn

    torch.manual_seed(1)
    n, k = 30, rn.FUNC_MIN + 70
    A = torch.randn(k, n, dtype=torch.float64)
    X = torch.rand(2, n, dtype=torch.float64)
    X[0, 3] = 0.0
    X.requires_grad_(True)
    out = torch.cat([torch.tanh(X @ A.T), X[:, 3:4].sqrt(), torch.ones(2, 1, dtype=torch.float64)], dim=1)
    w = torch.rand(n, dtype=torch.float64) + 0.5
    monkeypatch.setattr(rn, "BLOCK", 2 * n * rn.FUNC_MIN)  # two blocks
    blocks = row_max_abs(out, X, weight=w)
    sub = torch.tensor(list(range(k - 1, -1, -1)))
    sub_blocks = row_max_abs(out, X, rows=sub, weight=w)
    monkeypatch.setattr(rn, "FUNC_MIN", 10**9)  # now one backward pass per row
    rows = row_max_abs(out, X, weight=w)
    assert torch.allclose(blocks, rows, rtol=1e-13, atol=0)
    assert blocks[0, k] == 0 and blocks[1, k] > 0 and torch.all(blocks[:, k + 1] == 0)
    assert torch.allclose(sub_blocks, rows[:, sub], rtol=1e-13, atol=0)
