"""solvers.gradient on plain tensors: convergence, Lion, guards, schedules, state, SPSA."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from solvers.gradient import SPSA, GradientOptimizer, Lion, _ckernel, lion_update, make_schedule
from tests.legacy_format import to_jsonable
from tracekit import storage

ALGOS = ["sgd", "adam", "adamw", "lion"]
LR = {"sgd": 0.02, "adam": 0.15, "adamw": 0.15, "lion": 0.1}


def _options(algo: str) -> dict:
    opts: dict = {"momentum": 0.9, "nesterov": True} if algo == "sgd" else {}
    if algo == "adamw":
        opts["weight_decay"] = 0.0  # the minimizer of the plain objective, not a shrunk one
    return opts


def _run(f, x0, algo, steps, **extra):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = GradientOptimizer([x], algo, lr=LR[algo], **{**_options(algo), **extra})
    for _ in range(steps):
        opt.zero_grad()
        f(x).backward()
        opt.step()
    return x.detach()


def _quadratic(x):
    a = torch.tensor([1.0, 4.0, 10.0], dtype=x.dtype)
    return 0.5 * torch.sum(a * (x - torch.tensor([1.0, -2.0, 0.5], dtype=x.dtype)) ** 2)


def _rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


@pytest.mark.parametrize("algo", ALGOS)
def test_each_optimizer_minimizes_a_convex_quadratic(algo):
    x0 = [5.0, 5.0, -5.0]
    start = float(_quadratic(torch.tensor(x0, dtype=torch.float64)))
    x = _run(_quadratic, x0, algo, 400, schedule="cosine", total_steps=400)
    assert float(_quadratic(x)) < 1e-3 * start
    assert torch.allclose(x, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=0.05)


@pytest.mark.parametrize("algo", ALGOS)
def test_each_optimizer_reduces_rosenbrock(algo):
    x0 = [-1.2, 1.0]
    start = float(_rosenbrock(torch.tensor(x0, dtype=torch.float64)))  # 24.2
    lr = {"sgd": 2e-4, "adam": 0.02, "adamw": 0.02, "lion": 0.005}[algo]
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = GradientOptimizer([x], algo, lr=lr, clip_grad_norm=50.0, schedule="cosine",
                            total_steps=1500, **_options(algo))
    for _ in range(1500):
        opt.zero_grad()
        _rosenbrock(x).backward()
        opt.step()
    assert float(_rosenbrock(x.detach())) < 0.05 * start


@pytest.mark.parametrize("backend", ["ckernel", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_lion_matches_the_reference_rule(backend, dtype):
    if backend == "ckernel" and _ckernel.build() is None:
        pytest.skip("no C compiler: the fused kernel falls back to foreach")
    gen = torch.Generator().manual_seed(0)
    shapes = [(3,), (70000,), (5, 7), (1,), (200, 300)]
    ps = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    gs = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    ms = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    ref_p, ref_m = [p.clone() for p in ps], [m.clone() for m in ms]
    kw = dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.3)
    lion_update(ps, gs, ms, backend=backend, **kw)
    lion_update(ref_p, gs, ref_m, backend="reference", **kw)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for a, b in zip(ps + ms, ref_p + ref_m):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    assert not torch.equal(ps[1], ref_p[1] * 0)  # it moved


def test_lion_falls_back_for_non_contiguous_tensors():
    base = torch.randn(8, 6, requires_grad=True)
    w = base.detach().t()  # non-contiguous view
    p = torch.nn.Parameter(w)
    p.grad = torch.ones_like(p)
    before = p.detach().clone()
    Lion([p], lr=0.1).step()
    assert torch.allclose(p.detach(), before - 0.1)


@pytest.mark.parametrize("backend", ["auto", "foreach"])
def test_lion_with_weight_decay_keeps_the_sup_norm_below_one_over_lambda(backend):
    lam, lr = 2.0, 0.05
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1000, generator=gen, dtype=torch.float64) - 0.5).requires_grad_()
    opt = Lion([x], lr=lr, weight_decay=lam, backend=backend)
    reached = 0.0
    for _ in range(300):
        # gradients pushing every entry outward: only the decay holds them back
        x.grad = -torch.sign(x.detach()) * torch.rand(1000, generator=gen, dtype=torch.float64)
        opt.step()
        sup = float(x.detach().abs().max())
        reached = max(reached, sup)
        assert sup <= 1 / lam + 1e-12
    assert reached > 0.99 / lam  # the bound is approached, so the check is not vacuous


def test_sgd_weight_decay_is_decoupled_and_adam_is_l2():
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = GradientOptimizer([x], "sgd", lr=0.1, weight_decay=0.5)
    x.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()
    assert torch.allclose(x.detach(), torch.full((3,), 1 - 0.1 * 0.5, dtype=torch.float64))
    y = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ref = y.detach().clone().requires_grad_()
    ours = GradientOptimizer([y], "adam", lr=0.1, weight_decay=0.5)
    theirs = torch.optim.Adam([ref], lr=0.1, weight_decay=0.5)
    for _ in range(5):
        y.grad = torch.full((3,), 0.3, dtype=torch.float64)
        ref.grad = y.grad.clone()
        ours.step()
        theirs.step()
    assert torch.allclose(y.detach(), ref.detach())


@pytest.mark.parametrize("algo,torch_cls,kw", [
    ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adam", torch.optim.Adam, {}),
    ("adamw", torch.optim.AdamW, {"weight_decay": 0.1}),
])
def test_named_optimizers_match_torch_defaults(algo, torch_cls, kw):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(50, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    ours = GradientOptimizer([x], algo, lr=0.01, **kw)
    theirs = torch_cls([ref], lr=0.01, **kw)
    for _ in range(10):
        g = torch.randn(50, generator=gen, dtype=torch.float64)
        x.grad, ref.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert torch.allclose(x.detach(), ref.detach(), atol=1e-10)


def test_gradient_clipping_by_norm_and_value():
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = GradientOptimizer([x], "sgd", lr=1.0, clip_grad_norm=1.0)
    x.grad = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    stats = opt.step()
    assert stats.clipped and stats.total_grad_norm == pytest.approx(5.0)
    assert float(x.detach().norm()) == pytest.approx(1.0, rel=1e-5)
    y = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = GradientOptimizer([y], "sgd", lr=1.0, clip_grad_value=0.5)
    y.grad = torch.tensor([3.0, -0.2], dtype=torch.float64)
    opt.step()
    assert torch.allclose(y.detach(), torch.tensor([-0.5, 0.2], dtype=torch.float64))


def test_schedules():
    const = make_schedule("constant", warmup_steps=4)
    assert [const(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    lin = make_schedule("linear", total_steps=10, warmup_steps=2, final=0.0)
    assert lin(0) == 0.5 and lin(2) == 1.0 and lin(6) == pytest.approx(0.5) and lin(10) == 0.0
    assert lin(50) == 0.0
    cos = make_schedule("cosine", total_steps=100, final=0.1)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("cosine")
    # the optimizer applies it to each group's initial lr
    x = torch.zeros(1, requires_grad=True)
    opt = GradientOptimizer([x], "sgd", lr=0.2, schedule="linear", total_steps=4)
    lrs = []
    for _ in range(4):
        x.grad = torch.ones(1)
        lrs.append(opt.step().lr)
    assert lrs == pytest.approx([0.2, 0.15, 0.1, 0.05])


def test_bounds_are_projected_and_reported():
    x = torch.tensor([0.0, 0.5, 0.9], requires_grad=True)
    y = torch.tensor([5.0], requires_grad=True)
    opt = GradientOptimizer([{"params": [x], "bounds": (0.0, 1.0)}, {"params": [y]}], "sgd", lr=1.0)
    x.grad = torch.tensor([1.0, 0.1, -1.0])
    y.grad = torch.tensor([100.0])
    stats = opt.step()
    assert x.detach().tolist() == pytest.approx([0.0, 0.4, 1.0])
    assert stats.bound_active == {0: 2}
    assert float(y.detach()) == -95.0  # unbounded group


@pytest.mark.parametrize("algo,extra", [("adam", {}), ("sgd", {"momentum": 0.9}),
                                        ("lion", {}),  # the fused check-and-update C pass
                                        ("lion", {"clip_grad_norm": 1e6}),  # the generic check
                                        ("lion", {"lion_backend": "foreach"})])
def test_nan_gradient_skips_that_tensor_only_and_keeps_state(algo, extra):
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(70000, requires_grad=True)
    opt = GradientOptimizer([a, b], algo, lr=0.1, **extra)
    a.grad = torch.tensor([1.0, float("nan"), 1.0])
    b.grad = torch.ones(70000)
    stats = opt.step()
    assert torch.equal(a.detach(), torch.ones(3)) and not torch.equal(b.detach(), torch.ones(70000))
    assert 0 in stats.skipped and "NaN" in stats.skipped[0] and stats.updated == [False, True]
    assert a.grad is not None and math.isnan(float(a.grad[1]))  # restored, not swallowed
    assert stats.grad_norm[1] == pytest.approx(math.sqrt(70000))
    state = opt.optimizer.state.get(a, {})
    assert "step" not in state and not any(torch.count_nonzero(v) for v in state.values())
    a.grad = torch.tensor([1.0, float("inf"), 1.0])
    assert 0 in opt.step().skipped
    assert torch.equal(a.detach(), torch.ones(3))


def test_only_restricts_the_update():
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = GradientOptimizer([a, b], "sgd", lr=1.0)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step(only=[b])
    assert torch.equal(a.detach(), torch.zeros(2)) and torch.equal(b.detach(), -torch.ones(2))
    assert a.grad is not None


@pytest.mark.parametrize("legacy", [False, True], ids=["storage", "first-json-form"])
@pytest.mark.parametrize("algo", ALGOS)
def test_state_dict_round_trip_through_a_file(algo, legacy, tmp_path):
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(2, 3, generator=gen) for _ in range(8)]
    x1 = torch.ones(2, 3, requires_grad=True)
    opt1 = GradientOptimizer([x1], algo, lr=0.01, schedule="cosine", total_steps=8, **_options(algo))
    for g in grads[:4]:
        x1.grad = g.clone()
        opt1.step()
    if legacy:  # written by the old JSON encoder: still loads
        saved = json.loads(json.dumps(to_jsonable(opt1.state_dict())))
    else:
        storage.save(tmp_path / "opt.json", {"format": "test", "state": opt1.state_dict()})
        saved = storage.load(tmp_path / "opt.json", "optimizer state", ["test"])["state"]
    x2 = x1.detach().clone().requires_grad_()
    opt2 = GradientOptimizer([x2], algo, lr=0.01, schedule="cosine", total_steps=8, **_options(algo))
    opt2.load_state_dict(saved)
    assert opt2.steps == 4
    for g in grads[4:]:
        x1.grad, x2.grad = g.clone(), g.clone()
        opt1.step()
        opt2.step()
    assert torch.allclose(x1.detach(), x2.detach(), atol=1e-7)
    # a fresh optimizer (no state) diverges from it: the state really carried momentum
    x3 = x1.detach().clone().requires_grad_()
    with pytest.raises(ValueError, match="state is for"):
        GradientOptimizer([x3], "sgd" if algo != "sgd" else "adam", lr=0.01).load_state_dict(saved)


def test_native_state_dict_and_device_moves_keep_state():
    x = torch.ones(4, requires_grad=True)
    opt = GradientOptimizer([x], "adam", lr=0.1, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert x.device.type == expected
    x.grad = torch.ones(4, device=x.device)
    opt.step()
    avg = opt.optimizer.state[x]["exp_avg"].clone()
    opt.to("cpu")
    assert x.device.type == "cpu" and opt.optimizer.state[x]["exp_avg"].device.type == "cpu"
    assert torch.allclose(opt.optimizer.state[x]["exp_avg"], avg.cpu())
    native = opt.state_dict()
    assert isinstance(native["torch"]["state"][0]["exp_avg"], torch.Tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_moving_to_cuda_and_back_keeps_state():
    x = torch.ones(4, requires_grad=True)
    opt = GradientOptimizer([x], "lion", lr=0.1)
    x.grad = torch.ones(4)
    opt.step()
    m = opt.optimizer.state[x]["exp_avg"].clone()
    opt.to("cuda")
    assert opt.optimizer.state[x]["exp_avg"].is_cuda
    x.grad = torch.ones(4, device="cuda")
    opt.step()
    opt.to("cpu")
    assert torch.allclose(opt.optimizer.state[x]["exp_avg"], m * 0.99 + 0.01)


def test_user_optimizer_object_and_factory():
    x = torch.zeros(2, requires_grad=True)
    inner = torch.optim.SGD([x], lr=0.5)
    opt = GradientOptimizer([x], inner, bounds=(-0.25, 1.0))
    x.grad = torch.ones(2)
    assert opt.step().bound_active == {0: 2}
    assert torch.equal(x.detach(), torch.full((2,), -0.25))
    y = torch.zeros(2, requires_grad=True)
    opt = GradientOptimizer([y], torch.optim.RMSprop, lr=0.01)
    y.grad = torch.ones(2)
    opt.step()
    assert float(y.detach()[0]) < 0
    with pytest.raises(ValueError, match="does not hold"):
        GradientOptimizer([torch.zeros(1, requires_grad=True)], inner)
    with pytest.raises(ValueError, match="unknown algorithm"):
        GradientOptimizer([y], "adagrad-ish")


# --- SPSA -------------------------------------------------------------------------------
def test_spsa_minimizes_a_quadratic_within_its_documented_budget():
    target = np.array([0.3, -1.0, 2.0, 0.5, 0.0])
    calls = []

    def f(x):
        calls.append(1)
        return float(np.sum((x - target) ** 2))

    spsa = SPSA(a=0.3, c=0.05, seed=0)
    x = np.zeros(5)
    start = f(x)
    calls.clear()
    for step in range(150):
        expected = spsa.evals_for_next_step()
        assert expected == (4 if step == 0 else 3)  # 2*samples + candidate (+ f(x0) at first)
        before = len(calls)
        x = spsa.step(f, x, lower=[-5] * 5, upper=[5] * 5).x
        assert len(calls) - before == expected
    assert spsa.evals == len(calls)
    assert f(x) < 0.02 * start


def test_spsa_rounds_integers_half_to_even_and_respects_the_budget():
    seen = []

    def f(x):
        seen.append(x.copy())
        return float((x[0] - 7) ** 2 + (x[1] - 0.25) ** 2)

    spsa = SPSA(a=0.5, c=0.05, seed=1, max_evals=60)
    x = np.array([2.0, 0.0])
    for _ in range(30):
        result = spsa.step(f, x, lower=[0, -1], upper=[10, 1], integer=[True, False])
        x = result.x
    assert all(float(v[0]).is_integer() for v in seen)  # the integer coordinate is only seen rounded
    assert x[0] == 7 and spsa.evals <= 60
    assert "budget exhausted" in result.reason
    assert SPSA._round(np.array([2.5, 3.5]), np.array([True, True]), np.array([-9.0] * 2),
                       np.array([9.0] * 2)).tolist() == [2.0, 4.0]


def test_spsa_state_round_trip(tmp_path):
    def f(x):
        return float(np.sum((x - 1) ** 2))

    a, b = SPSA(seed=5), SPSA(seed=99)
    x = np.zeros(3)
    for _ in range(3):
        x = a.step(f, x).x
    storage.save(tmp_path / "spsa.json", {"format": "test", "state": a.state_dict()})
    loaded = storage.load(tmp_path / "spsa.json", "SPSA state", ["test"])["state"]
    assert isinstance(loaded["theta"], np.ndarray)  # arrays come back as arrays
    b.load_state_dict(loaded)
    xa = a.step(f, x).x
    xb = b.step(f, x).x
    assert np.array_equal(xa, xb)
