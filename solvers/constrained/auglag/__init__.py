"""The augmented-Lagrangian method: batched, matrix-free, on CPU or GPU.

``method`` runs the outer loop (multipliers, penalties, status), ``inner`` the projected
trust-region Newton solve of each subproblem, ``polish`` the active-set KKT phase, and
``options`` holds the tuning knobs.
"""

from .method import AugLagOutput, auglag
from .options import AugLagOptions

__all__ = ["AugLagOptions", "AugLagOutput", "auglag"]
