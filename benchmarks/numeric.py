"""Numeric-parameter benchmarks; prints one JSON document.

0. tk.Optimizer against torch (ratios in one process, steady state unless said):
   small_problem: 10 tensors, a raw torch SGD loop vs the same loop through tk.Optimizer
   (goal <= 1.15); many_tensors: one Adam step on 1000 tensors, tk.Optimizer.step() vs
   torch's fused and foreach Adam (goal <= 1.0 vs fused); cold_start: a fresh process's
   first steps vs its steady state, with an empty kernel cache and with prebuilt kernels.
1. overhead: a 1k-parameter regression trained 500 steps with raw torch vs through a traced
   workflow (`@tk.bundle` + `tk.Optimizer`); goal: ratio <= 1.3 (vs raw torch Adam). The
   traced run's inner optimizer is `FusedAdam` (the C kernel), so a raw loop with it is
   timed too: the ratio to it is the cost of tracing, feedback, guards and the report.
2. throughput: one optimizer step over 10M float32 parameters (20 tensors, and 1000 small
   tensors) for each optimizer we ship (the update alone, "kernel", and the guarded
   `GradientOptimizer.step`) vs torch's default Adam and torch's own fused SGD / Adam /
   AdamW, in effective GB/s, next to the measured streaming bandwidth (a large in-place
   add `a.add_(c, alpha=0.5)`, 3 streams, timed in the same rounds as the steps; a copy is
   reported too); goal: >= 80 % of it.
3. linear regression y = 15x + 14 from 50 points (OPRO's task): gradients vs the LLM text
   optimizer on the embedded model, when that optimizer and model are available.

    python benchmarks/numeric.py [--quick] [--threads N] [--skip-llm] [--only PART] [--out results.json]

`--quick` uses 1M parameters, which fit in the last-level cache: its GB/s are cache, not
DRAM, figures (a smoke test of the script, not a measurement).

Timings are the minimum over repeats (the least disturbed run); the machine's other load
only slows runs down, so the minimum is the closest to the code's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tracekit as tk  # noqa: E402
from solvers.gradient import FusedAdam, GradientOptimizer  # noqa: E402

# bytes moved per parameter per step, in units of the element size (reads + writes)
STREAMS = {
    "torch_adam_default": 7,  # read p, g, m, v; write p, m, v
    "sgd": 5,  # momentum: read p, g, buf; write p, buf
    "adam": 7,
    "adamw": 7,
    "lion": 5,  # read p, g, m; write p, m
}


# --- 0. tk.Optimizer against torch: small problem, 1000 tensors, cold start ------------------
def small_problem(steps: int, repeats: int) -> dict[str, Any]:
    """10 tensor parameters (16 entries each), SGD lr=1e-2: a raw torch loop vs the same
    loop through `tk.Optimizer` (the loss from one `@tk.bundle` node; zero_feedback,
    backward, step). Target: ratio <= 1.15.

    Each iteration (forward, backward, step) is timed on its own, one of each loop in
    turn, and the ratio is that of the lower quartiles: on a loaded machine a long run
    is often preempted, a single 0.3 ms iteration rarely."""
    gen = torch.Generator().manual_seed(0)
    targets = [torch.randn(16, generator=gen) for _ in range(10)]
    ws = [torch.zeros(16, requires_grad=True) for _ in range(10)]
    raw_opt = torch.optim.SGD(ws, lr=1e-2)

    def raw() -> None:
        loss = sum(torch.sum((w - t) ** 2) for w, t in zip(ws, targets))
        raw_opt.zero_grad()
        loss.backward()
        raw_opt.step()

    @tk.bundle()
    def objective(*ws: torch.Tensor) -> torch.Tensor:
        return sum(torch.sum((w - t) ** 2) for w, t in zip(ws, targets))

    nodes = [tk.param(torch.zeros(16), name=f"w{i}") for i in range(10)]
    opt = tk.Optimizer(nodes, numeric="sgd", lr=1e-2)

    def traced() -> None:
        loss = objective(*nodes)  # one traced node
        opt.zero_feedback()
        opt.backward(loss, loss)
        opt.step()

    runs = {"raw_torch_sgd": raw, "tk_optimizer_sgd": traced}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(steps * repeats + 50):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if i >= 50:  # warm-up
                times[name].append(time.perf_counter() - start)
    q = {k: sorted(v)[len(v) // 4] for k, v in times.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"task": f"10 tensors x 16 entries, SGD lr=1e-2, {len(times['raw_torch_sgd'])} iterations "
                    "(forward+backward+step) each, interleaved",
            "per_step_us_lower_quartile": {k: round(v * 1e6, 1) for k, v in q.items()},
            "per_step_us_median": {k: round(v * 1e6, 1) for k, v in med.items()},
            "ratio": round(q["tk_optimizer_sgd"] / q["raw_torch_sgd"], 3),
            "ratio_of_medians": round(med["tk_optimizer_sgd"] / med["raw_torch_sgd"], 3),
            "goal": "ratio <= 1.15"}


def many_tensors(count: int, size: int, repeats: int) -> dict[str, Any]:
    """One Adam step on `count` tensors of `size` entries: `tk.Optimizer.step()` (gradients
    set directly, so the step alone is timed, report included) vs torch's Adam step with
    fused=True and foreach=True on tensors of the same shapes. Target: ratio <= 1.0."""
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(size, generator=gen) for _ in range(count)]
    nodes = [tk.param(torch.randn(size, generator=gen), name=f"w{i}") for i in range(count)]
    tk_opt = tk.Optimizer(nodes, numeric="adam", lr=1e-4)
    peers = {}
    for name, kw in (("torch_adam_fused", {"fused": True}), ("torch_adam_foreach", {"foreach": True})):
        ts = [torch.randn(size, generator=gen).requires_grad_() for _ in range(count)]
        for t, g in zip(ts, grads):
            t.grad = g
        peers[name] = torch.optim.Adam(ts, lr=1e-4, **kw).step

    def tk_step() -> None:
        for n, g in zip(nodes, grads):
            n.raw.grad = g
        tk_opt.step()

    steps: dict[str, Callable[[], Any]] = {"tk_optimizer_adam": tk_step, **peers}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for round_ in range(repeats + 3):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            if round_ >= 3:  # warm-up: state created, caches filled
                times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"task": f"one Adam step, {count} tensors x {size} entries (best and median of {repeats} "
                    "interleaved rounds)",
            "step_ms": {k: round(v * 1e3, 3) for k, v in best.items()},
            "step_ms_median": {k: round(v * 1e3, 3) for k, v in med.items()},
            "ratio_vs_torch_fused": round(best["tk_optimizer_adam"] / best["torch_adam_fused"], 3),
            "ratio_vs_torch_foreach": round(best["tk_optimizer_adam"] / best["torch_adam_foreach"], 3),
            "ratio_of_medians_vs_torch_fused": round(med["tk_optimizer_adam"] / med["torch_adam_fused"], 3),
            "goal": "ratio_vs_torch_fused <= 1.0"}


_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, tracekit as tk
count, size, steps, peer = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "torch"
grads = [torch.randn(size) for _ in range(count)]
if peer:  # torch's fused Adam, built in the first step as tk.Optimizer builds its solver
    ts = [torch.randn(size).requires_grad_() for _ in range(count)]
    holder = []
    def step():
        if not holder:
            holder.append(torch.optim.Adam(ts, lr=1e-4, fused=True))
        holder[0].step()
    def set_grads():
        for t, g in zip(ts, grads):
            t.grad = g
else:
    nodes = [tk.param(torch.randn(size), name=f"w{i}") for i in range(count)]
    opt = tk.Optimizer(nodes, numeric="adam", lr=1e-4)
    step = opt.step
    def set_grads():
        for n, g in zip(nodes, grads):
            n.raw.grad = g
t_import = time.perf_counter() - t0
times = []
for _ in range(steps):
    set_grads()
    s = time.perf_counter(); step(); times.append(time.perf_counter() - s)
print(json.dumps({"import_and_build_s": t_import, "times": times}))
"""


def cold_start(count: int, size: int, steps: int) -> dict[str, Any]:
    """Fresh processes: the first step on `count` tensors (which builds the optimizer, and
    in torch imports torch._dynamo) and the next steps, against the same process's steady
    state. `tk.Optimizer` with an empty kernel cache and with the kernels built ahead
    (`python -m solvers.gradient.prebuild`); torch's fused Adam as the peer. Medians, so
    that a loaded machine's stalls weigh less: whatever compiles or builds during training
    shows as `early_vs_steady` above 1."""
    import statistics
    import subprocess
    import tempfile

    out: dict[str, Any] = {"task": f"fresh process, Adam on {count} tensors x {size}, {steps} steps; "
                                   "early = median of steps 2-31, steady = median of the last half"}
    for variant in ("tk_empty_cache", "tk_kernels_prebuilt", "torch_adam_fused"):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TRACEKIT_KERNEL_DIR": cache,
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            if variant == "tk_kernels_prebuilt":
                subprocess.run([sys.executable, "-c", "from solvers.gradient import _ckernel as k; "
                                "getattr(k, 'build', k.load)()"], env=env, check=True)
            start = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", _COLD, str(count), str(size), str(steps),
                                  "torch" if variant.startswith("torch") else "tk"],
                                 env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - start
        data = json.loads(run.stdout.strip().splitlines()[-1])
        times = data["times"]
        early = statistics.median(times[1:31])
        steady = statistics.median(times[len(times) // 2:])
        out[variant] = {
            "process_wall_s": round(wall, 2), "import_and_setup_s": round(data["import_and_build_s"], 3),
            "first_step_ms": round(times[0] * 1e3, 1), "early_step_ms": round(early * 1e3, 3),
            "steady_step_ms": round(steady * 1e3, 3), "early_vs_steady": round(early / steady, 2)}
    return out


# --- 1. overhead -----------------------------------------------------------------------------
def overhead(steps: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(256, 1000, generator=gen)
    y = X @ torch.randn(1000, generator=gen) * 0.1

    def raw(fused: bool | None, cls: Any = torch.optim.Adam) -> Callable[[], float]:
        def run() -> float:
            w = torch.zeros(1000, requires_grad=True)
            opt = cls([w], lr=1e-2, fused=fused)
            for _ in range(steps):
                loss = torch.mean((X @ w - y) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return float(loss.detach())
        return run

    @tk.bundle()
    def predict(w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Linear model."""
        return X @ w

    @tk.bundle()
    def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.mean((pred - y) ** 2)

    def traced() -> float:
        w = tk.param(torch.zeros(1000), name="w")
        opt = tk.Optimizer([w], numeric="adam", lr=1e-2)
        xn, yn = tk.node(X, name="X"), tk.node(y, name="y")
        for _ in range(steps):
            loss = mse(predict(w, xn), yn)
            opt.zero_feedback()
            opt.backward(loss, loss)
            opt.step()
        return float(loss.data.detach())

    runs = {"raw_torch_adam_default": raw(None), "raw_torch_adam_fused": raw(True),
            "raw_tracekit_fused_adam": raw(None, FusedAdam), "traced_tk_optimizer": traced}
    times: dict[str, float] = {k: float("inf") for k in runs}
    finals: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for name, fn in runs.items():
            start = time.perf_counter()
            finals[name] = fn()
            times[name] = min(times[name], time.perf_counter() - start)
    fastest_raw = min(times["raw_torch_adam_default"], times["raw_torch_adam_fused"])
    return {
        "task": f"linear regression, 1000 parameters, 256 samples, Adam lr=1e-2, {steps} steps",
        "seconds": {k: round(v, 4) for k, v in times.items()},
        "per_step_us": {k: round(v / steps * 1e6, 1) for k, v in times.items()},
        "final_loss": finals,
        "ratio_vs_raw_default": round(times["traced_tk_optimizer"] / times["raw_torch_adam_default"], 3),
        "ratio_vs_fastest_raw": round(times["traced_tk_optimizer"] / fastest_raw, 3),
        # the same inner optimizer (FusedAdam, the C kernel) without tracing: what tracing,
        # feedback, routing, the NaN guard and the step report cost on their own
        "ratio_vs_raw_same_optimizer": round(times["traced_tk_optimizer"] / times["raw_tracekit_fused_adam"], 3),
        "goal": "ratio <= 1.3",
    }


# --- 2. throughput ---------------------------------------------------------------------------
def throughput(total: int, layouts: list[int], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count in layouts:
        out[f"{count}_tensors"] = _layout(total, count, repeats)
    out["note"] = ("GBps = streams x 4 bytes x parameters / step time; streams: "
                   + ", ".join(f"{k}={v}" for k, v in STREAMS.items())
                   + "; kernel = opt.optimizer.step() (backend: what it ran, 'ckernel' = one fused C "
                   "call per step); guarded_step = GradientOptimizer.step(), counted with one more read of the "
                   "gradients (the NaN/inf check and grad norms; fused into the same pass with the C "
                   "kernel, so it may score above the kernel alone); torch_fused = "
                   "torch.optim.<cls>(fused=True).step(); reference = a large in-place add "
                   "a.add_(c, alpha=0.5) over the same number of elements (read a, read c, write a: "
                   "the read-modify-write pattern of an optimizer step), timed in the same rounds "
                   "as every step (one call of each per round, best of all rounds), so that the "
                   "machine's changing speed hits all alike; fraction_of_bandwidth = GBps / the "
                   "reference's GBps; copy_GBps: a large copy, for comparison")
    return out


def _layout(total: int, count: int, repeats: int) -> dict[str, Any]:
    """Every optimizer on `count` tensors holding `total` float32 parameters in all.

    Per algorithm: "kernel" times `opt.optimizer.step()` (the inner optimizer's update
    alone: `FusedSGD` / `FusedAdam` / `FusedAdamW` / `Lion` from solvers.gradient, whose
    CPU step is one fused C kernel call, see "backend"); "guarded_step" times
    `GradientOptimizer.step()` (NaN/inf check and gradient norms, fused into the same pass
    when the C kernel runs, plus the wrapper's bookkeeping); "torch_fused" times torch's
    own fused implementation (`torch.optim.SGD/Adam/AdamW(fused=True)`) on the same tensors.
    All of them, and the reference add, run once per round, interleaved.
    """
    from solvers.gradient import _ckernel

    _ckernel.build()  # ahead of time, as `python -m solvers.gradient.prebuild` does
    size = total // count
    params = [torch.randn(size).requires_grad_() for _ in range(count)]
    grads = [torch.randn(size) for _ in range(count)]
    for p, g in zip(params, grads):
        p.grad = g
    a, c, b = torch.rand(total), torch.rand(total), torch.empty(total)
    steps: dict[str, tuple[Callable[[], Any], int]] = {
        "reference": (lambda: a.add_(c, alpha=0.5), 3), "copy": (lambda: b.copy_(a), 2),
        "torch_adam_default": (torch.optim.Adam(params, lr=1e-4).step, 7)}
    torch_classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    inners: dict[str, Any] = {}
    for algo in ("sgd", "adam", "adamw", "lion"):
        kw = {"momentum": 0.9} if algo == "sgd" else {}
        if algo in torch_classes:  # torch's own fused kernel, same tensors, its own state
            steps[f"{algo}/torch_fused"] = (torch_classes[algo](params, lr=1e-4, fused=True, **kw).step,
                                            STREAMS[algo])
        opt = GradientOptimizer(params, algo, lr=1e-4, **kw)
        inners[algo] = opt.optimizer
        steps[f"{algo}/kernel"] = (opt.optimizer.step, STREAMS[algo])  # the update alone
        steps[f"{algo}/guarded_step"] = (opt.step, STREAMS[algo] + 1)  # + the guard's read of g
    best = {k: float("inf") for k in steps}
    for round_ in range(max(repeats, 15) + 2):
        for name, (fn, _) in steps.items():
            start = time.perf_counter()
            fn()
            if round_ >= 2:  # two warm-up rounds: state created, plans cached
                best[name] = min(best[name], time.perf_counter() - start)
        for p, g in zip(params, grads):  # a step may not take the gradients away, but be sure
            p.grad = g
    ref = 3 * total * 4 / best["reference"] / 1e9

    def entry(name: str) -> dict[str, Any]:
        gbps = steps[name][1] * total * 4 / best[name] / 1e9
        return {"step_ms": round(best[name] * 1e3, 3), "GBps": round(gbps, 2),
                "fraction_of_bandwidth": round(gbps / ref, 3)}

    results: dict[str, Any] = {"reference_GBps": round(ref, 2),
                               "copy_GBps": round(2 * total * 4 / best["copy"] / 1e9, 2),
                               "torch_adam_default": entry("torch_adam_default")}
    base_ms = best["torch_adam_default"] * 1e3
    for algo, inner in inners.items():
        kernel = entry(f"{algo}/kernel")
        kernel["speedup_vs_torch_adam_default"] = round(base_ms / kernel["step_ms"], 2)
        results[algo] = {"kernel": kernel, "guarded_step": entry(f"{algo}/guarded_step"),
                         "inner": f"{type(inner).__module__}.{type(inner).__name__}",
                         "backend": getattr(inner, "last_backend", "")}
        if f"{algo}/torch_fused" in steps:
            results[algo]["torch_fused"] = entry(f"{algo}/torch_fused")
    return results


# --- 3. y = 15x + 14: gradients vs the LLM optimizer -----------------------------------------
def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=gen, dtype=torch.float64) * 10
    y = 15 * x + 14 + torch.randn(50, generator=gen, dtype=torch.float64)
    return x, y


def linear_by_gradients(threshold: float, max_steps: int) -> dict[str, Any]:
    x, y = regression_data()
    w = tk.param(torch.tensor(0.0, dtype=torch.float64), name="w")
    b = tk.param(torch.tensor(0.0, dtype=torch.float64), name="b")

    @tk.bundle()
    def predict(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return w * x + b

    opt = tk.Optimizer([w, b], numeric="adam", lr=1.0, schedule="cosine", total_steps=max_steps)
    start = time.perf_counter()
    loss_value = float("inf")
    steps = 0
    while steps < max_steps:
        steps += 1
        opt.zero_feedback()
        loss = torch.mean((predict(w, b, tk.node(x)) - y) ** 2)
        loss_value = float(loss.data.detach())
        if loss_value < threshold:
            break
        opt.backward(loss, loss)
        opt.step()
    return {"solver": "gradient (adam, lr=1, cosine)", "steps": steps, "seconds": round(time.perf_counter() - start, 4),
            "final_loss": loss_value, "reached": loss_value < threshold,
            "w": float(w.data.detach()), "b": float(b.data.detach())}


def linear_by_llm(threshold: float, max_steps: int, timeout_s: float) -> dict[str, Any]:
    """The same task with Python-number parameters and the text (LLM) optimizer."""
    try:
        import tracekit.routes.text  # noqa: F401

        llm = tk.llm.default()
    except Exception as exc:  # the text optimizer or the embedded model is not available
        return {"status": "not measured", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    x, y = regression_data()
    w = tk.param(0.0, name="w")
    b = tk.param(0.0, name="b")

    @tk.bundle()
    def predict(w: float, b: float, x: torch.Tensor) -> torch.Tensor:
        """Linear model y = w * x + b."""
        return w * x + b

    opt = tk.Optimizer([w, b], llm=llm)
    start = time.perf_counter()
    loss_value, steps, tokens, errors = float("inf"), 0, 0, []
    while steps < max_steps:
        steps += 1
        opt.zero_feedback()
        pred = predict(w, b, tk.node(x))
        loss_value = float(torch.mean((pred.data - y) ** 2))
        if loss_value < threshold or time.perf_counter() - start > timeout_s:
            break
        opt.backward(pred, tk.Feedback(loss=loss_value, text=f"mean squared error {loss_value:.4g}"))
        try:
            report = opt.step()
            tokens += report.tokens
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if len(errors) >= 3:
                return {"status": "not measured", "reason": "; ".join(errors)}
    return {"solver": "LLM text optimizer (embedded model)", "steps": steps,
            "seconds": round(time.perf_counter() - start, 2), "final_loss": loss_value,
            "reached": loss_value < threshold, "tokens": tokens, "w": w.data, "b": b.data,
            "errors": errors}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--skip-llm", action="store_true", help="do not run the LLM comparison")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); on a loaded machine "
                             "1 thread avoids the barrier stalls that make multi-threaded timings noise")
    parser.add_argument("--only", choices=["small", "many", "cold", "overhead", "throughput", "linear"],
                        default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    total = 1_000_000 if args.quick else 10_000_000
    repeats = 3 if args.quick else 7
    doc: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "load_average_at_start": os.getloadavg()},
    }
    if args.only in (None, "small"):
        doc["small_problem"] = small_problem(100, repeats=5 if args.quick else 25)
    if args.only in (None, "many"):
        doc["many_tensors"] = many_tensors(1000, 1000, repeats=5 if args.quick else 40)
    if args.only in (None, "cold"):
        doc["cold_start"] = cold_start(1000, 1000, 60 if args.quick else 300)
    if args.only in (None, "overhead"):
        doc["overhead"] = overhead(100 if args.quick else 500, repeats=2 if args.quick else 5)
    if args.only in (None, "throughput"):
        doc["throughput"] = {"parameters": total, **throughput(total, [20, 1000], repeats)}
    if args.only not in (None, "linear"):
        return _emit(doc, args.out)
    threshold = 2.0  # the noise variance is 1: a loss of 2 means a close fit
    llm_part: dict[str, Any] = {"task": "y = 15x + 14 + N(0, 1) noise, 50 points, loss threshold "
                                        f"{threshold} (MSE)",
                                "gradient": linear_by_gradients(threshold, 2000)}
    if args.skip_llm:
        llm_part["llm"] = {"status": "not measured", "reason": "--skip-llm"}
    else:
        llm_part["llm"] = linear_by_llm(threshold, 20 if args.quick else 50, 120 if args.quick else 420)
    doc["linear_regression"] = llm_part
    return _emit(doc, args.out)


def _emit(doc: dict[str, Any], out: Path | None) -> dict[str, Any]:
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if out:
        out.write_text(text)
    return doc


if __name__ == "__main__":
    main()
