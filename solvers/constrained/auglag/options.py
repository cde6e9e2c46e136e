"""Tuning knobs of the augmented-Lagrangian method (``solvers.constrained.auglag``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AugLagOptions:
    """Tuning knobs; the defaults aim at 1e-8 violation and KKT residual.

    ``grad_scale`` / ``grad_scale_up``: row scaling (see the module docstring); ``dense_max``:
    up to this many variables trust-region steps come from an eigendecomposition;
    ``factor_max``: up to this many the Hessian is formed and a positive definite one
    factored (Cholesky Newton steps; Steihaug CG on it otherwise) and polishing runs;
    above, Steihaug CG on Hessian-vector products; ``polish``: the active-set Newton-KKT
    phase; ``verbose``: 1 prints one line per outer iteration
    (first instance of the batch), 2 also one per inner step.
    """

    tol: float = 1e-8
    max_outer: int = 60
    max_inner: int = 60
    rho0: float | None = None
    rho_max: float = 1e12
    rho_growth: float = 10.0
    decrease: float = 0.25
    dense_max: int = 400
    factor_max: int = 1500
    unbounded: float = 1e20
    grad_scale: float = 100.0
    infeasible_tol: float = 1e-6
    grad_scale_up: float = 100.0
    polish: bool = True
    verbose: int = 0
