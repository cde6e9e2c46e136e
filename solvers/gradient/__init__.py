"""Gradient and zeroth-order solvers on plain tensors (standalone: never imports tracekit).

- `GradientOptimizer`: SGD (momentum, Nesterov), Adam, AdamW and Lion, with NaN/inf
  guards, clipping, schedules, decoupled weight decay, projection onto bounds,
  plain-dict state (tensors) and device moves.
- `FusedSGD`, `FusedAdam`, `FusedAdamW`: torch's optimizers whose CPU step is one fused C
  kernel call for all tensors (with the NaN/inf check fused in `guarded_step`) once the
  kernels are built ahead (`python -m solvers.gradient.prebuild`); torch's fused step
  otherwise.
- `Lion`: a `torch.optim.Optimizer` (same C kernel on CPU); `lion_update` the bare update.
- `make_schedule`: constant, warmup + linear decay, cosine.
- `SPSA`: two-point zeroth-order steps with an evaluation budget and integer rounding.

    opt = GradientOptimizer([w], "adam", lr=1e-2, clip_grad_norm=1.0, bounds=(-1, 1))
    loss = f(w); loss.backward(); stats = opt.step(); opt.zero_grad()
"""

from solvers.gradient.fused import FusedAdam, FusedAdamW, FusedSGD
from solvers.gradient.lion import Lion, lion_update
from solvers.gradient.optimizer import (
    ALGORITHMS,
    GradientOptimizer,
    StepStats,
    build_torch_optimizer,
    resolve_device,
)
from solvers.gradient.schedules import Constant, Cosine, WarmupLinear, make_schedule
from solvers.gradient.spsa import SPSA, SPSAResult
from solvers.gradient.state import from_jsonable

__all__ = [
    "ALGORITHMS", "GradientOptimizer", "StepStats", "build_torch_optimizer", "resolve_device",
    "FusedSGD", "FusedAdam", "FusedAdamW", "Lion", "lion_update", "Constant", "Cosine", "WarmupLinear", "make_schedule",
    "SPSA", "SPSAResult", "from_jsonable",
]
