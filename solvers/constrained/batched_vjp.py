"""Many vector-Jacobian products of one recorded graph at once: the dense Jacobians and
Hessians of the constrained solvers (AL Newton steps, polishing, second-order checks,
implicit differentiation) all come from here.

``torch.autograd.grad(..., is_grads_batched=True)`` batches the backward pass with torch's
legacy vmap, which has no fast rule for some common operations: a Hessian through a dense
matrix-vector product took 3.4 s at n = 1000, a 501-row Jacobian through ``A @ x`` 1.1 s.
``torch.func.vmap`` over ``torch.autograd.grad`` runs the same products on the same graph
with functorch's batching rules: 0.14 s and 0.05 s there, and never slower in our
measurements (n = 10 to 1000, batches of 1 and 8). Its first use in a process costs about
0.3 s, so it is used from ``FUNC_MIN`` products up, where it saves more than that; below,
and wherever functorch cannot batch a backward, the legacy path runs. Callers keep their
own last resort (one backward pass per product) for graphs neither can batch, which raise
``RuntimeError``.
"""

from __future__ import annotations

import torch

__all__ = ["FUNC_MIN", "batched_vjp"]

FUNC_MIN = 128  # products from which torch.func.vmap is used


def batched_vjp(out: torch.Tensor, X: torch.Tensor, V: torch.Tensor, retain_graph: bool = True) -> torch.Tensor | None:
    """``(k, *X.shape)``: the vector-Jacobian products of ``out`` (recorded on ``X``) with
    each of the ``k`` cotangents ``V (k, *out.shape)``, or None where ``out`` does not
    depend on ``X``. Raises ``RuntimeError`` where the backward pass cannot be batched."""
    if V.shape[0] >= FUNC_MIN:
        try:
            return torch.func.vmap(
                lambda v: torch.autograd.grad(out, X, grad_outputs=v, retain_graph=True)[0])(V)
        except Exception:  # noqa: BLE001 - unused inputs, no functorch rule: the legacy path decides
            pass
    (J,) = torch.autograd.grad(out, X, grad_outputs=V, is_grads_batched=True, retain_graph=retain_graph,
                               allow_unused=True)
    return J
