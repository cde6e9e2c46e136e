"""The step report (tracekit/report.py) and the optimizer's bounded history: rows of a
group of tensors updated in place are built when read and say the same as per-parameter
rows would; `opt.history` keeps a bounded number of reports."""

from __future__ import annotations

import math

import pytest
import torch

import tracekit as tk
from tracekit.report import GroupRows, StepReport


def _quadratic_step(opt: tk.Optimizer, params: list, targets: list) -> tk.StepReport:
    loss = sum(torch.sum((p.raw - t) ** 2) for p, t in zip(params, targets))
    opt.zero_feedback()
    loss.backward()
    return opt.step()


def test_step_report_is_exported_from_report_module():
    assert tk.StepReport is StepReport


def test_group_rows_are_built_when_read_and_match_the_update():
    small = tk.param(torch.tensor([1.0, 2.0]), name="small")
    big = tk.param(torch.zeros(20), name="big", bounds=(-0.05, 0.05))
    opt = tk.Optimizer([small, big], numeric="sgd", lr=0.1)
    targets = [torch.zeros(2), torch.ones(20)]
    report = _quadratic_step(opt, [small, big], targets)
    assert isinstance(report._parts[0], GroupRows) and report._parts[0]._rows is None  # lazy
    assert report.changed == ["small", "big"]  # without building the rows
    assert report._parts[0]._rows is None
    row = report["small"]
    assert row.solver == "gradient" and row.changed
    assert row.old == "[1.0, 2.0]"  # pinned before the in-place update
    assert row.new == repr(small.raw.detach().tolist())  # pinned after it
    assert math.isclose(row.info["grad_norm"], float(torch.tensor([2.0, 4.0]).norm()), rel_tol=1e-6)
    big_row = report["big"]
    assert big_row.old == big_row.new == "tensor(shape=(20,), dtype=float32)"
    assert big_row.info["bound_active"] == 20 and "bound active" in big_row.reason
    # a later step does not change what this report says about the small tensor
    _quadratic_step(opt, [small, big], targets)
    assert report["small"].new == row.new and "small" in str(report)


def test_a_nan_gradient_is_reported_per_tensor_in_a_group():
    ws = [tk.param(torch.ones(3), name=f"w{i}") for i in range(4)]
    opt = tk.Optimizer(ws, numeric="adam", lr=0.1)
    for i, w in enumerate(ws):
        w.raw.grad = torch.full((3,), math.nan) if i == 2 else torch.ones(3)
    report = opt.step()
    assert report.changed == ["w0", "w1", "w3"]
    assert report["w2"].reason == "NaN/inf gradient: skipped, value kept"
    assert report["w2"].info["skipped"] == "non-finite gradient"
    assert torch.equal(ws[2].raw.detach(), torch.ones(3))


def test_mixed_groups_keep_per_parameter_rows():
    a = tk.param(torch.ones(3), name="a")
    b = tk.param(torch.ones(3), name="b")  # no gradient, no feedback
    opt = tk.Optimizer([a, b], numeric="sgd", lr=0.1)
    a.raw.grad = torch.ones(3)
    report = opt.step()
    assert [c.name for c in report.changes] == ["a", "b"]
    assert report["b"].reason == "no feedback reached it" and not report["b"].changed
    assert report.changed == ["a"] and "1/2 changed" in repr(report)


def test_history_is_bounded_by_default_and_configurable():
    w = tk.param(torch.zeros(4), name="w")
    opt = tk.Optimizer([w], numeric="sgd", lr=0.1)
    assert opt.history_size == 100
    last = None
    for _ in range(130):
        w.raw.grad = torch.ones(4)
        last = opt.step()
    assert len(opt.history) == 100 and opt.history[-1] is last
    opt.history_size = 5
    assert len(opt.history) == 5 and opt.history[-1] is last
    opt.history_size = None
    for _ in range(7):
        w.raw.grad = torch.ones(4)
        opt.step()
    assert len(opt.history) == 12
    with pytest.raises(ValueError, match="history_size"):
        opt.history_size = -1


def test_history_memory_stops_growing_once_full():
    import gc
    import tracemalloc

    from tracekit.report import ParamChange

    ws = [tk.param(torch.zeros(4), name=f"w{i}") for i in range(200)]
    opt = tk.Optimizer(ws, numeric="sgd", lr=0.1)
    opt.history_size = 20

    def run(steps: int) -> None:
        for _ in range(steps):
            for w in ws:
                w.raw.grad = torch.ones(4)
            str(opt.step())  # rows and previews built, as when a report is printed

    def rows_alive() -> int:
        return sum(type(o) is ParamChange for o in gc.get_objects())

    gc.collect()
    baseline = rows_alive()  # rows other tests of this process still hold
    run(25)
    tracemalloc.start()
    try:
        run(40)  # past the allocator's warm-up (blocks reused from before tracing)
        full = tracemalloc.get_traced_memory()[0]
        run(40)
        later = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    gc.collect()
    assert len(opt.history) == 20 and rows_alive() - baseline <= 20 * 200
    # 40 more reports of 200 rows each would add megabytes if kept
    assert later - full < 100_000, (full, later)


def test_history_size_is_a_constructor_argument_and_is_checked():
    w = tk.param(torch.zeros(2), name="w")
    assert tk.Optimizer([w], history_size=3).history.maxlen == 3
    assert tk.Optimizer([w], history_size=None).history.maxlen is None
    with pytest.raises(ValueError, match="history_size"):
        tk.Optimizer([w], history_size=-1)
