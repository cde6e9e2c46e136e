"""batched_vjp: many vector-Jacobian products of one graph, on both batching paths,
against one backward pass per product."""

from __future__ import annotations

import pytest
import torch

from solvers.constrained.batched_vjp import FUNC_MIN, batched_vjp


def _loop(out: torch.Tensor, X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.autograd.grad(out, X, grad_outputs=v, retain_graph=True)[0] for v in V])


@pytest.mark.parametrize("n", [FUNC_MIN // 4, FUNC_MIN + 22])
def test_hessian_of_a_dense_quadratic_and_a_chain_matches_the_loop(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    Q = M @ M.T
    X = torch.randn(2, n, generator=g, dtype=torch.float64).requires_grad_(True)
    L = 0.5 * (X * (X @ Q)).sum(1) + (100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2).sum(1)
    (G,) = torch.autograd.grad(L.sum(), X, create_graph=True)
    E = torch.eye(n, dtype=X.dtype).unsqueeze(1).expand(n, 2, n)
    H = batched_vjp(G, X, E)
    assert H is not None and H.shape == (n, 2, n)
    assert torch.allclose(H, _loop(G, X, E), rtol=1e-12, atol=1e-9)
    # the quadratic part is exactly Q: check one instance against the analytic Hessian
    x = X[0].detach()
    chain = torch.zeros(n, n, dtype=torch.float64)
    i = torch.arange(n - 1)
    chain[i, i] += 200 * (-2 * (x[1:] - x[:-1] ** 2) + 4 * x[:-1] ** 2)
    chain[i + 1, i + 1] += 200
    chain[i, i + 1] = chain[i + 1, i] = -400 * x[:-1]
    assert torch.allclose(H[:, 0, :].T, Q + chain, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("k", [3, FUNC_MIN])
def test_jacobian_rows_and_an_output_that_ignores_x(k: int) -> None:
    n = 40
    A = torch.randn(k, n, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    X = torch.randn(n, dtype=torch.float64).requires_grad_(True)
    out = torch.tanh(A @ X)
    J = batched_vjp(out, X, torch.eye(k, dtype=X.dtype))
    assert J is not None and torch.allclose(J, (1 - out.detach() ** 2)[:, None] * A, rtol=1e-12, atol=1e-14)
    # an output recorded without X: no products (None), on either path
    Y = torch.randn(n, dtype=torch.float64).requires_grad_(True)
    other = (A @ Y) ** 2
    assert batched_vjp(other, X, torch.eye(k, dtype=X.dtype)) is None


class _NumpyBackward(torch.autograd.Function):
    """An op whose backward leaves torch (no batching rule anywhere)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return torch.as_tensor(2 * x.detach().numpy() * g.detach().numpy())


@pytest.mark.parametrize("k", [4, FUNC_MIN])
def test_a_backward_no_path_can_batch_raises_runtime_error(k: int) -> None:
    X = torch.randn(k, dtype=torch.float64).requires_grad_(True)
    out = _NumpyBackward.apply(X)
    with pytest.raises(RuntimeError):
        batched_vjp(out, X, torch.eye(k, dtype=X.dtype))
    # the callers' last resort, one pass per product, still works on it
    assert torch.allclose(_loop(out, X, torch.eye(k, dtype=X.dtype)), torch.diag(2 * X.detach()))


def test_torch_func_batches_from_func_min_products_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = torch.func.vmap

    def counting(fn, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(fn, *a, **kw)

    monkeypatch.setattr(torch.func, "vmap", counting)
    X = torch.randn(FUNC_MIN, dtype=torch.float64).requires_grad_(True)
    out = torch.sin(X)
    batched_vjp(out, X, torch.eye(FUNC_MIN - 1, FUNC_MIN, dtype=X.dtype))
    assert calls == []  # below: the legacy batched backward
    J = batched_vjp(out, X, torch.eye(FUNC_MIN, dtype=X.dtype))
    assert calls == [1] and J is not None and torch.allclose(J, torch.diag(torch.cos(X.detach())))
