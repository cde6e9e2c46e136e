"""The C++ pointer reader (solvers.gradient._tensormeta): what it reports for each kind of
change, that steps through it match torch, and that everything works without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
import torch

import solvers.gradient.fused as fused
from solvers.gradient import Lion, _ckernel, _tensormeta
from solvers.gradient.fused import FusedAdam, FusedSGD

ROOT = Path(__file__).resolve().parents[2]
needs_cxx = pytest.mark.skipif(
    _ckernel.load() is None or shutil.which(os.environ.get("CXX", "c++")) is None
    and shutil.which("g++") is None, reason="no C/C++ compiler: the Python path is the only one")


@pytest.fixture(scope="module")
def meta():
    lib = _tensormeta.load(wait=True)
    assert lib is not None, "a C++ compiler is present, so the library must build"
    return lib


def _addr(a: array) -> int:
    return a.buffer_info()[0]


def _gather(meta, params, pptr=None, numel=None, itemsize=4):
    pptr = array("Q", [p.data_ptr() for p in params]) if pptr is None else pptr
    numel = array("q", [p.numel() for p in params]) if numel is None else numel
    gptr = array("Q", bytes(8 * len(params)))
    return meta.tk_gather(params, _addr(pptr), _addr(numel), itemsize, _addr(gptr)), list(gptr)


@needs_cxx
def test_gather_reads_gradient_pointers(meta):
    params = [torch.randn(n).requires_grad_() for n in (3, 1000, 1, 0)]
    params.append(torch.nn.Parameter(torch.randn(2, 5)))  # a Parameter is a tensor too
    for p in params:
        p.grad = torch.randn(p.shape)
    status, gptr = _gather(meta, params)
    assert status == _tensormeta.OK
    assert gptr == [p.grad.data_ptr() for p in params]


@needs_cxx
def test_gather_reports_each_kind_of_change(meta):
    def fresh():
        ps = [torch.randn(6).requires_grad_() for _ in range(3)]
        for p in ps:
            p.grad = torch.randn(6)
        return ps, array("Q", [p.data_ptr() for p in ps]), array("q", [p.numel() for p in ps])

    ps, pptr, numel = fresh()
    ps[1].grad = None
    assert _gather(meta, ps, pptr, numel)[0] == _tensormeta.NO_GRAD
    ps, pptr, numel = fresh()
    with torch.no_grad():
        ps[2].data = torch.randn(6)  # new storage
    assert _gather(meta, ps, pptr, numel)[0] == _tensormeta.MOVED
    ps, pptr, numel = fresh()
    ps[0].data = ps[0].data[:4]  # same pointer, fewer elements
    ps[0].grad = torch.randn(4)
    assert _gather(meta, ps, pptr, numel)[0] == _tensormeta.MOVED
    ps, pptr, numel = fresh()
    ps[1].grad = torch.randn(12)[::2]  # not contiguous
    assert _gather(meta, ps, pptr, numel)[0] == _tensormeta.BAD_GRAD
    ps, pptr, numel = fresh()
    ps[1].grad = torch.randn(6).to_sparse()
    assert _gather(meta, ps, pptr, numel)[0] == _tensormeta.BAD_GRAD
    ps, pptr, numel = fresh()
    assert _gather(meta, [*ps, 3.0], pptr, numel)[0] == _tensormeta.NOT_TENSOR
    assert meta.tk_gather(tuple(ps), _addr(pptr), _addr(numel), 4, 0) == _tensormeta.NOT_TENSOR
    assert _gather(meta, ps, pptr, numel, itemsize=8)[0] == _tensormeta.MOVED  # not float64
    no_grad_meta = [torch.randn(3)]  # never required grad: no autograd meta at all
    assert _gather(meta, no_grad_meta)[0] == _tensormeta.NO_GRAD


@needs_cxx
def test_bump_increments_every_version_once(meta):
    ps = [torch.randn(4).requires_grad_() for _ in range(50)]
    before = [p._version for p in ps]
    assert meta.tk_bump(ps) == _tensormeta.OK
    assert [p._version for p in ps] == [v + 1 for v in before]
    assert meta.tk_bump([ps[0], "x"]) == _tensormeta.NOT_TENSOR
    with torch.inference_mode():
        frozen = torch.ones(3)
    assert meta.tk_bump([frozen]) == _tensormeta.ERROR  # torch refuses; the caller re-raises its error


@needs_cxx
@pytest.mark.parametrize("path", ["c++", "python"])
@pytest.mark.parametrize("cls,ref_cls,kw", [(FusedAdam, torch.optim.Adam, {"weight_decay": 0.1}),
                                            (FusedSGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True})])
def test_steps_through_either_path_match_torch(meta, monkeypatch, path, cls, ref_cls, kw):
    if path == "python":
        monkeypatch.setattr(fused._tensormeta, "load", lambda wait=False: None)
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(n, generator=gen).requires_grad_() for n in (5, 300, 1, 64)]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    a, b = cls(ours, lr=0.01, **kw), ref_cls(ref, lr=0.01, **kw)
    paths = []
    for step in range(6):
        for p, r in zip(ours, ref):
            g = torch.randn(p.shape, generator=gen)
            p.grad, r.grad = g, g.clone()
        if step == 3:  # the user swaps a parameter's storage: the plan must notice
            with torch.no_grad():
                ours[1].data = ours[1].data.clone()
        versions = [p._version for p in ours]
        a.step()
        b.step()
        paths.append(a.last_gather)
        assert [p._version for p in ours] == [v + 1 for v in versions]
    # the first step creates state, the second caches the plan; after the swap it is rebuilt
    expected = ["python", "python", "c++", "python", "c++", "c++"] if path == "c++" else ["python"] * 6
    assert paths == expected
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-6, atol=1e-6)


@needs_cxx
def test_a_resized_parameter_is_never_written_past_its_end(meta):
    """Same address, fewer elements (the allocator may reuse a freed block): the plan is
    rebuilt and the state no longer fits, so torch's own step runs and raises its error."""
    x = torch.randn(1000, requires_grad=True)
    opt = FusedAdam([x], lr=0.1)
    for _ in range(3):
        x.grad = torch.ones(1000)
        opt.step()
    assert opt.last_gather == "c++"
    x.data = x.data[:10]
    x.grad = torch.ones(10)
    with pytest.raises(RuntimeError):
        opt.step()
    assert opt.last_backend == "torch"


@needs_cxx
def test_lion_and_guarded_steps_use_it(meta):
    ps = [torch.randn(n).requires_grad_() for n in (7, 100)]
    opt = Lion(ps, lr=0.01)
    for _ in range(3):
        for p in ps:
            p.grad = torch.randn(p.shape)
        sums = opt.guarded_sums()
    assert opt.last_gather == "c++"
    assert sums == pytest.approx([float(p.grad.double().pow(2).sum()) for p in ps], rel=1e-9)


@needs_cxx
def test_without_a_cxx_compiler_the_python_path_runs(tmp_path):
    script = """
import torch
from solvers.gradient import _tensormeta
from solvers.gradient.fused import FusedAdam
assert _tensormeta.load(wait=True) is None
x = torch.zeros(5, requires_grad=True)
r = x.detach().clone().requires_grad_()
opt, ref = FusedAdam([x], lr=0.1), torch.optim.Adam([r], lr=0.1)
for _ in range(3):
    x.grad, r.grad = torch.ones(5), torch.ones(5)
    opt.step(); ref.step()
assert opt.last_backend == "ckernel" and opt.last_gather == "python", opt.last_gather
torch.testing.assert_close(x.detach(), r.detach())
print("ok")
"""
    env = {**os.environ, "CXX": "/bin/false", "TRACEKIT_KERNEL_DIR": str(tmp_path)}
    env.pop("TRACEKIT_NO_CKERNEL", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    assert not list(tmp_path.glob("tensormeta_*.so"))


@needs_cxx
def test_float64_groups_take_it_too(meta):
    ours = [torch.randn(n, dtype=torch.float64).requires_grad_() for n in (9, 40)]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    a, b = FusedAdam(ours, lr=0.01), torch.optim.Adam(ref, lr=0.01)
    for _ in range(4):
        for p, r in zip(ours, ref):
            p.grad = torch.randn(p.shape, dtype=torch.float64)
            r.grad = p.grad.clone()
        a.step()
        b.step()
    assert a.last_gather == "c++"
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-12, atol=1e-12)
