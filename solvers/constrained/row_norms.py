"""Scaled infinity norms of constraint gradients, a block of rows at a time, never the
whole Jacobian.

The augmented Lagrangian scales each constraint by its gradient's norm at ``x0``, and the
multiplier-cancellation test weighs each multiplier by its row's largest entry. Both need
one number per row, not the Jacobian: with 5,000 constraints on 10,000 variables the
Jacobian is 400 MB, and forming it took 3.7 s where the cancellation test needs the rows
with a multiplier only. Rows are taken in blocks of about a million Jacobian entries
(``batched_vjp``, at least ``FUNC_MIN`` rows), each reduced to its maxima at once; fewer
rows than that, or a graph that cannot be batched, take one backward pass per row.
Measured: 0.44 s against 0.73 s row by row for 5,001 sparse rows on 10,000 variables,
0.015 s against 0.09 s for 500 dense rows on 1,000.
"""

from __future__ import annotations

import torch

from .batched_vjp import FUNC_MIN, batched_vjp

__all__ = ["row_max_abs"]

BLOCK = 1 << 20  # Jacobian entries formed at once


def row_max_abs(out: torch.Tensor, X: torch.Tensor, rows: torch.Tensor | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """``max_j |d out[b, i] / d X[b, j]| * weight[b, j]`` per instance ``b`` and row ``i``,
    shape ``(B, len(rows))``.

    ``out`` ``(B, k)`` is recorded on ``X`` ``(B, n)`` with instances independent of each
    other (row ``b`` of ``out`` depends on row ``b`` of ``X`` only); ``rows``: the row
    indices wanted (all by default); ``weight``: ``(B, n)`` or ``(n,)``, ones by default.
    Rows that do not depend on ``X``, and infinite maxima, give 0. The graph is kept.
    """
    B, n = X.shape
    idx = list(range(out.shape[1])) if rows is None else rows.tolist()
    w = X.new_ones(1, n) if weight is None else weight.reshape(-1, n)
    res = X.new_zeros(B, len(idx))
    if len(idx) >= FUNC_MIN and out.requires_grad:
        try:
            _blocks(out, X, idx, w, res)
            return torch.where(torch.isfinite(res), res, torch.zeros_like(res))
        except RuntimeError:  # a backward that cannot be batched: row by row below
            res.zero_()
    for j, i in enumerate(idx):
        o = out[:, i]
        if not o.requires_grad:
            continue
        (G,) = torch.autograd.grad(o.sum(), X, retain_graph=True, allow_unused=True)
        if G is not None:  # NaN entries are 0 * inf from a sibling row's backward (cat, stack)
            res[:, j] = torch.nan_to_num((G.detach() * w).abs(), nan=0.0, posinf=float("inf")).amax(1)
    return torch.where(torch.isfinite(res), res, torch.zeros_like(res))


def _blocks(out: torch.Tensor, X: torch.Tensor, idx: list[int], w: torch.Tensor, res: torch.Tensor) -> None:
    """``res[:, j]`` for every wanted row, ``block`` rows per batched backward pass."""
    B, n = X.shape
    block = max(FUNC_MIN, BLOCK // max(B * n, 1))
    rows = torch.tensor(idx, device=X.device)
    for s in range(0, len(idx), block):
        sel = rows[s:s + block]
        V = out.new_zeros(len(sel), *out.shape)
        V[torch.arange(len(sel), device=X.device), :, sel] = 1.0
        G = batched_vjp(out, X, V)
        if G is None:
            return
        G = torch.nan_to_num((G.detach() * w).abs(), nan=0.0, posinf=float("inf"))
        res[:, s:s + len(sel)] = G.amax(2).T
