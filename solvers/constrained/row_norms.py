"""Scaled infinity norms of constraint gradients, one row at a time, never the Jacobian.

The augmented Lagrangian scales each constraint by its gradient's norm at ``x0``, and the
multiplier-cancellation test weighs each multiplier by its row's largest entry. Both need
one number per row, not the Jacobian: with 5,000 constraints on 10,000 variables the
Jacobian is 400 MB, and forming it (one batched backward pass) took 3.7 s where the
cancellation test needs the rows with a multiplier only. Each row is one backward pass,
reduced to its maximum at once. (Batching rows through ``is_grads_batched`` was measured
and is slower on these graphs: 0.94 s against 0.20 s for 501 dense rows on 1,000
variables, and 1.7 s against 1.25 s for 5,002 sparse rows on 10,000.)
"""

from __future__ import annotations

import torch

__all__ = ["row_max_abs"]


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
    idx = range(out.shape[1]) if rows is None else rows.tolist()
    w = X.new_ones(1, n) if weight is None else weight.reshape(-1, n)
    res = X.new_zeros(B, len(idx))
    for j, i in enumerate(idx):
        o = out[:, i]
        if not o.requires_grad:
            continue
        (G,) = torch.autograd.grad(o.sum(), X, retain_graph=True, allow_unused=True)
        if G is not None:  # NaN entries are 0 * inf from a sibling row's backward (cat, stack)
            res[:, j] = torch.nan_to_num((G.detach() * w).abs(), nan=0.0, posinf=float("inf")).amax(1)
    return torch.where(torch.isfinite(res), res, torch.zeros_like(res))
