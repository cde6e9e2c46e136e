"""The fused C kernels (solvers.gradient.fused, _ckernel) against torch.optim: numerics over
several steps, state layout and state dicts, the fused NaN/inf check, and the fallbacks."""

from __future__ import annotations

import copy
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from solvers.gradient import GradientOptimizer, Lion, _ckernel, lion_update
from solvers.gradient.fused import FusedAdam, FusedAdamW, FusedSGD

needs_kernel = pytest.mark.skipif(_ckernel.build() is None, reason="no C compiler: torch's step is used")

# odd sizes (not multiples of the vector width), tiny and empty tensors, two "large" ones
# that the threads share in the checked pass when two threads run
SHAPES = [(3,), (70001,), (5, 7), (1,), (200, 301), (0,), (17,)]

CASES = {
    "sgd": (FusedSGD, torch.optim.SGD, {}),
    "sgd-momentum": (FusedSGD, torch.optim.SGD, {"momentum": 0.9}),
    "sgd-nesterov-wd": (FusedSGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    "sgd-dampening-maximize": (FusedSGD, torch.optim.SGD, {"momentum": 0.8, "dampening": 0.3, "maximize": True}),
    "adam": (FusedAdam, torch.optim.Adam, {}),
    "adam-l2-maximize": (FusedAdam, torch.optim.Adam,
                         {"weight_decay": 0.1, "maximize": True, "betas": (0.8, 0.99), "eps": 1e-6}),
    "adamw": (FusedAdamW, torch.optim.AdamW, {"weight_decay": 0.1}),
}


def _tol(dtype: torch.dtype) -> dict:
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _pair(shapes, dtype, seed=0, ref_dtype=None):
    gen = torch.Generator().manual_seed(seed)
    ours = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
    ref = [p.detach().to(ref_dtype or dtype).clone().requires_grad_() for p in ours]
    return ours, ref, gen


def _set_grads(ours, ref, gen):
    for p, r in zip(ours, ref):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad, r.grad = g.clone(), g.to(r.dtype)


def _assert_state_close(a, b, ours, ref, dtype):
    for p, r in zip(ours, ref):
        sa, sb = a.state.get(p, {}), b.state.get(r, {})
        assert set(sa) == set(sb)
        for key in sa:
            if isinstance(sb[key], torch.Tensor):
                assert sa[key].shape == sb[key].shape, key
                torch.testing.assert_close(sa[key], sb[key].to(sa[key].dtype), **_tol(dtype), msg=key)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_kernels_match_torch_optim(case, dtype, threads):
    """float32 is compared with torch in float64 (rtol = atol = 1e-6), which our float32
    kernel follows more closely than torch's own float32 step does (where v is tiny), and
    with torch in float32 at 1e-5."""
    ours_cls, ref_cls, kw = CASES[case]
    torch.set_num_threads(threads)  # the fixture restores it
    ours, ref, gen = _pair(SHAPES, dtype, ref_dtype=torch.float64)
    ref32 = [p.detach().clone().requires_grad_() for p in ours]
    a, b, b32 = ours_cls(ours, lr=0.01, **kw), ref_cls(ref, lr=0.01, **kw), ref_cls(ref32, lr=0.01, **kw)
    for step in range(6):
        _set_grads(ours, ref, gen)
        for p, r in zip(ours, ref32):
            r.grad = p.grad.clone()
        b32.step()
        if step % 2:
            sums = a.guarded_step()  # the checked pass: same update, plus the sums
            assert sums is not None
            for p in ours:
                assert sums[id(p)] == pytest.approx(float(p.grad.double().pow(2).sum()), rel=1e-9)
        else:
            a.step()
        b.step()
        assert a.last_backend == "ckernel"
    for p, r, r32 in zip(ours, ref, ref32):
        torch.testing.assert_close(p.detach(), r.detach().to(dtype), **_tol(dtype))
        torch.testing.assert_close(p.detach(), r32.detach(), rtol=1e-5, atol=1e-5)
    _assert_state_close(a, b, ours, ref, dtype)


@needs_kernel
@pytest.mark.parametrize("case", ["sgd-momentum", "adam", "adamw"])
def test_state_dict_round_trips_between_the_kernel_and_torch(case):
    ours_cls, ref_cls, kw = CASES[case]
    ours, ref, gen = _pair([(4, 5), (9,)], torch.float32, seed=1)
    a, b = ours_cls(ours, lr=0.05, **kw), ref_cls(ref, lr=0.05, **kw)
    for _ in range(3):
        _set_grads(ours, ref, gen)
        a.step()
        b.step()
    # ours -> a fresh torch optimizer, torch -> a fresh one of ours; keep stepping all four
    ours2 = [p.detach().clone().requires_grad_() for p in ours]
    ref2 = [r.detach().clone().requires_grad_() for r in ref]
    b2 = ref_cls(ours2, lr=0.05, **kw)
    b2.load_state_dict(copy.deepcopy(a.state_dict()))
    a2 = ours_cls(ref2, lr=0.05, **kw)
    a2.load_state_dict(copy.deepcopy(b.state_dict()))
    if "exp_avg" in a.state[ours[0]]:
        assert a.state[ours[0]]["step"].dtype == torch.float32 and a.state[ours[0]]["step"].ndim == 0
        assert float(a.state[ours[0]]["step"]) == 3.0
    for _ in range(3):
        g = [torch.randn(p.shape, generator=gen) for p in ours]
        for group in (ours, ref, ours2, ref2):
            for p, gi in zip(group, g):
                p.grad = gi.clone()
        for opt in (a, b, a2, b2):
            opt.step()
    assert a2.last_backend == "ckernel"
    for p, r, p2, r2 in zip(ours, ref, ours2, ref2):
        for other in (p, p2, r2):
            torch.testing.assert_close(other.detach(), r.detach(), rtol=1e-6, atol=1e-6)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", ["sgd-momentum", "adam", "adamw"])
def test_checked_pass_skips_non_finite_gradients_only(case, threads):
    ours_cls, ref_cls, kw = CASES[case]
    torch.set_num_threads(threads)
    shapes = [(3,), (70001,), (200, 301), (17,)]
    ours, ref, gen = _pair(shapes, torch.float32, seed=2)
    a, b = ours_cls(ours, lr=0.01, **kw), ref_cls(ref, lr=0.01, **kw)
    _set_grads(ours, ref, gen)
    a.step()
    b.step()
    before = [p.detach().clone() for p in ours]
    state_before = {i: {k: v.clone() for k, v in a.state[ours[i]].items()} for i in (1, 3)}
    _set_grads(ours, ref, gen)
    ours[1].grad[12345] = float("nan")  # a large tensor, split over the threads
    ours[3].grad[0] = float("inf")  # a small one
    sums = a.guarded_step()
    assert math.isnan(sums[id(ours[1])]) and math.isinf(sums[id(ours[3])])
    for i in (1, 3):
        assert torch.equal(ours[i].detach(), before[i])
        for k, v in a.state[ours[i]].items():
            assert torch.equal(v, state_before[i][k]), k
    ref[1].grad = ref[3].grad = None  # torch, told to leave those two alone
    b.step()
    for i in (0, 2):
        torch.testing.assert_close(ours[i].detach(), ref[i].detach(), rtol=1e-6, atol=1e-6)
        assert sums[id(ours[i])] == pytest.approx(float(ours[i].grad.double().pow(2).sum()), rel=1e-9)


@needs_kernel
@pytest.mark.parametrize("case", ["sgd-momentum", "adam"])
def test_first_step_skip_creates_no_state(case):
    ours_cls, _, kw = CASES[case]
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(5, requires_grad=True)
    opt = ours_cls([a, b], lr=0.1, **kw)
    a.grad = torch.tensor([1.0, float("nan"), 1.0])
    b.grad = torch.ones(5)
    opt.guarded_step()
    assert a not in opt.state or not opt.state[a]
    assert opt.state[b] and not torch.equal(b.detach(), torch.ones(5))
    a.grad = torch.ones(3)
    opt.guarded_step()  # now it starts as torch would: buffer = gradient, step 1
    ref = torch.ones(3, requires_grad=True)
    ref.grad = torch.ones(3)
    CASES[case][1]([ref], lr=0.1, **kw).step()
    torch.testing.assert_close(a.detach(), ref.detach())


@needs_kernel
def test_tensors_without_gradients_and_several_groups_and_dtypes():
    gen = torch.Generator().manual_seed(3)
    x32 = [torch.randn(11, generator=gen).requires_grad_() for _ in range(3)]
    x64 = [torch.randn(7, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2)]
    ref32 = [p.detach().clone().requires_grad_() for p in x32]
    ref64 = [p.detach().clone().requires_grad_() for p in x64]
    a = FusedAdam([{"params": x32 + x64[:1]}, {"params": x64[1:], "lr": 0.2}], lr=0.05)
    b = torch.optim.Adam([{"params": ref32 + ref64[:1]}, {"params": ref64[1:], "lr": 0.2}], lr=0.05)
    for step in range(4):
        for i, (p, r) in enumerate(zip(x32 + x64, ref32 + ref64)):
            if (i + step) % 3 == 0:  # some tensors get no gradient on some steps
                p.grad = r.grad = None
            else:
                g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
                p.grad, r.grad = g.clone(), g.clone()
        a.step()
        b.step()
        assert a.last_backend == "ckernel"
    for p, r in zip(x32 + x64, ref32 + ref64):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-6, atol=1e-6)
        assert float(a.state[p]["step"]) == float(b.state[r]["step"])


@needs_kernel
def test_what_the_kernel_cannot_take_runs_torch():
    x = torch.randn(6, 4, requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    opt, theirs = FusedAdam([x], lr=0.1), torch.optim.Adam([ref], lr=0.1)
    g = torch.randn(4, 6).t()  # a non-contiguous gradient
    x.grad, ref.grad = g, g.clone()
    opt.step()
    theirs.step()
    assert opt.last_backend == "torch"
    x.grad, ref.grad = torch.ones(6, 4), torch.ones(6, 4)  # contiguous again: back to the kernel
    opt.step()
    theirs.step()
    assert opt.last_backend == "ckernel"
    torch.testing.assert_close(x.detach(), ref.detach())
    y = torch.randn(5, requires_grad=True)
    ams = FusedAdam([y], lr=0.1, amsgrad=True)
    y.grad = torch.ones(5)
    ams.step()
    assert ams.last_backend == "torch" and ams.guarded_step() is None
    z = torch.randn(5, requires_grad=True)
    forced = FusedSGD([z], lr=0.1, momentum=0.9, backend="torch")
    z.grad = torch.ones(5)
    forced.step()
    assert forced.last_backend == "torch" and forced.guarded_step() is None
    with pytest.raises(ValueError, match="unknown backend"):
        FusedSGD([z], lr=0.1, backend="fast")


@needs_kernel
def test_kernel_steps_bump_autograd_versions_and_survive_pickling():
    x = torch.zeros(4, requires_grad=True)
    opt = FusedAdam([x], lr=0.1)
    x.grad = torch.ones(4)
    version = x._version
    opt.step()
    assert x._version > version
    opt2 = pickle.loads(pickle.dumps(opt))
    assert opt2.backend == "auto" and opt2.state_dict()["state"][0]["step"] == 1
    opt3 = copy.deepcopy(opt)
    (p3,) = opt3.param_groups[0]["params"]
    p3.grad = torch.ones(4)
    opt3.step()  # its own tensors, not the original's
    assert opt3.last_backend == "ckernel" and not torch.equal(p3.detach(), x.detach())


def test_without_the_kernel_everything_runs_torch(tmp_path):
    script = """
import math, torch
from solvers.gradient import GradientOptimizer, _ckernel
assert _ckernel.load() is None
for algo, kw, cls in [("sgd", {"momentum": 0.9}, torch.optim.SGD), ("adam", {}, torch.optim.Adam),
                      ("adamw", {"weight_decay": 0.1}, torch.optim.AdamW)]:
    x = torch.ones(5, requires_grad=True)
    r = torch.ones(5, requires_grad=True)
    opt, ref = GradientOptimizer([x], algo, lr=0.1, **kw), cls([r], lr=0.1, **kw)
    for _ in range(3):
        x.grad, r.grad = torch.arange(5.0), torch.arange(5.0)
        stats = opt.step()
        ref.step()
    assert opt.optimizer.last_backend == "torch", algo
    assert torch.allclose(x, r), algo
    x.grad = torch.tensor([1.0, math.nan, 1, 1, 1])
    assert 0 in opt.step().skipped
print("ok")
"""
    env = {**os.environ, "TRACEKIT_NO_CKERNEL": "1"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_training_step_never_compiles(tmp_path):
    """With an empty kernel cache, steps run torch's kernels and build nothing; only an
    explicit build (or backend="ckernel") compiles."""
    script = """
import torch
from solvers.gradient import GradientOptimizer, Lion, _ckernel
x = torch.ones(5, requires_grad=True)
opt = GradientOptimizer([x], "adam", lr=0.1)
lion = Lion([y := torch.ones(5, requires_grad=True)], lr=0.1)
for _ in range(3):
    x.grad = torch.arange(5.0); y.grad = torch.arange(5.0)
    opt.step(); lion.step()
assert opt.optimizer.last_backend == "torch"
assert _ckernel.load() is None
print("ok")
"""
    env = {**os.environ, "TRACEKIT_KERNEL_DIR": str(tmp_path)}
    env.pop("TRACEKIT_NO_CKERNEL", None)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert list(tmp_path.iterdir()) == []  # nothing was compiled


# --- through GradientOptimizer ---------------------------------------------------------------
@needs_kernel
@pytest.mark.parametrize("algo,kw", [("sgd", {"momentum": 0.9, "weight_decay": 0.2}),
                                     ("sgd", {"weight_decay": 0.2}),
                                     ("adam", {"weight_decay": 0.1}),
                                     ("adamw", {"weight_decay": 0.1}),
                                     ("lion", {"weight_decay": 0.1})])
def test_fused_guard_matches_the_generic_guard(algo, kw):
    """clip_grad_norm=1e9 never clips but takes the generic path (foreach norms, then the
    inner step); both must agree, SGD's decoupled decay included."""
    gen = torch.Generator().manual_seed(4)
    xs = [torch.randn(s, generator=gen).requires_grad_() for s in [(3,), (1000,), (17, 3)]]
    ys = [p.detach().clone().requires_grad_() for p in xs]
    fused = GradientOptimizer(xs, algo, lr=0.01, **kw)
    generic = GradientOptimizer(ys, algo, lr=0.01, clip_grad_norm=1e9, **kw)
    for step in range(4):
        _set_grads(xs, ys, gen)
        if step == 2:
            xs[0].grad[1] = ys[0].grad[1] = float("nan")
        s1, s2 = fused.step(), generic.step()
        assert fused.optimizer.last_backend == "ckernel"
        assert s1.skipped.keys() == s2.skipped.keys() and s1.updated == s2.updated
        for a, b in zip(s1.grad_norm, s2.grad_norm):
            assert a == pytest.approx(b, rel=1e-5, nan_ok=True)
    for p, r in zip(xs, ys):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-6, atol=1e-6)


@needs_kernel
def test_gradient_optimizer_uses_the_kernel_classes():
    x = torch.zeros(3, requires_grad=True)
    for algo, cls in [("sgd", FusedSGD), ("adam", FusedAdam), ("adamw", FusedAdamW), ("lion", Lion)]:
        opt = GradientOptimizer([x], algo, lr=0.1)
        assert type(opt.optimizer) is cls
    assert GradientOptimizer([x], "adam", backend="torch").optimizer.backend == "torch"


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lion_kernel_with_two_threads_matches_the_reference(dtype):
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(5)
    ps = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    gs = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    ms = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    ref_p, ref_m = [p.clone() for p in ps], [m.clone() for m in ms]
    kw = dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.3)
    assert _ckernel.lion_step(ps, gs, ms, 0.01, 0.3, 0.9, 0.99, 2, check=True) is not None
    lion_update(ref_p, gs, ref_m, backend="reference", **kw)
    for a, b in zip(ps + ms, ref_p + ref_m):
        torch.testing.assert_close(a, b, **_tol(dtype))
