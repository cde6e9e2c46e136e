"""`tk.argmin` benchmark: prints (and optionally writes) one JSON document.

1. QP with active inequality constraints, ``min 0.5 y'Qy + q'y s.t. G y <= h``, inputs
   ``q`` and ``h`` (n = 10, 100; batch 1 and 64): gradient of ``c . y*`` in ``q`` and
   ``h`` from tracekit (``tk.argmin``, implicit differentiation) and from cvxpylayers
   (``CvxpyLayer``, diffcp), each compared with the exact gradient (the KKT system of the
   QP on the active set, differentiated by torch); forward+backward time per call (cold
   solves: a new call site per repetition, so no warm start).
2. Ridge regression, ``w*(t) = argmin 0.5|Aw - b|^2 + 0.5 e^t |w|^2``: gradient of the
   validation loss in ``t`` from ``tk.argmin`` and from torchopt's implicit
   differentiation (``custom_root``), against the closed form. torchopt runs in a separate
   virtual environment (``--peer-python``, default /work/bench-venv/bin/python) so that
   it never touches the project's dependencies.
3. Bilevel training through ``tk.Optimizer``: the ridge hyperparameter ``t`` is a tensor
   parameter, the inner fit a ``tk.argmin`` node, 300 Adam steps on the validation loss;
   compared with ``tk.bilevel``'s optimum.

Usage: ``python benchmarks/argmin.py [--quick] [--out FILE] [--peer-python PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tracekit as tk  # noqa: E402

D = torch.float64
warnings.filterwarnings("ignore", category=DeprecationWarning)


# --- 1. QP with active inequalities --------------------------------------------------------------
def qp_data(n: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, dtype=D, generator=gen)
    Q = M @ M.T / n + torch.eye(n, dtype=D)
    G = torch.randn(n, n, dtype=D, generator=gen)
    # h chosen so that about half of the constraints are active at the optimum
    q = torch.randn(n, dtype=D, generator=gen)
    y_free = torch.linalg.solve(Q, -q)
    slack = (G @ y_free)
    h = slack - torch.where(torch.arange(n) % 2 == 0, 0.5, -0.5).to(D)
    c = torch.randn(n, dtype=D, generator=gen)
    return {"Q": Q, "G": G, "q": q, "h": h, "c": c}


def batch_inputs(d: dict, B: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n = d["q"].numel()
    if B == 1:
        return d["q"].clone(), d["h"].clone()
    return (d["q"] + 0.05 * torch.randn(B, n, dtype=D, generator=gen),
            d["h"] + 0.05 * torch.randn(B, n, dtype=D, generator=gen))


def exact_grads(d: dict, y: torch.Tensor, lam: torch.Tensor, q: torch.Tensor, h: torch.Tensor,
                tol: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact gradient: the active-set KKT system of the QP solved and differentiated by torch."""
    Q, G, c = d["Q"], d["G"], d["c"]
    batched = q.dim() == 2
    qs, hs = (q, h) if batched else (q[None], h[None])
    ls = lam if batched else lam[None]  # only the active set is read from the solution
    gq, gh = torch.zeros_like(qs), torch.zeros_like(hs)
    n = Q.shape[0]
    for b in range(qs.shape[0]):
        act = torch.nonzero(ls[b] > tol).flatten()
        GA = G[act]
        m = act.numel()
        K = torch.zeros(n + m, n + m, dtype=D)
        K[:n, :n], K[:n, n:], K[n:, :n] = Q, GA.T, GA
        qb = qs[b].clone().requires_grad_(True)
        hb = hs[b].clone().requires_grad_(True)
        sol = torch.linalg.solve(K, torch.cat([-qb, hb[act]]))
        (sol[:n] @ c).backward()
        gq[b], gh[b] = qb.grad, hb.grad
    return (gq, gh) if batched else (gq[0], gh[0])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def tracekit_qp(d: dict, q: torch.Tensor, h: torch.Tensor, site: str) -> tuple:
    Q, G = d["Q"], d["G"]
    batched = q.dim() == 2

    def objective(y, q, h):
        return 0.5 * ((y @ Q) * y).sum(-1) + (q * y).sum(-1)

    qr, hr = q.clone().requires_grad_(True), h.clone().requires_grad_(True)
    y0 = torch.zeros_like(q)
    t0, c0 = time.perf_counter(), time.process_time()
    w = tk.argmin(objective, y0, qr, hr, constraints=[tk.Ineq(lambda y, q, h: y @ G.T - h, name="Gy<=h")],
                  batched=batched, name=site)
    if w.is_error:
        raise RuntimeError(str(w.error))
    c1 = time.process_time()
    (w.data @ d["c"]).sum().backward()
    elapsed = (time.perf_counter() - t0, time.process_time() - c0, time.process_time() - c1)
    lam = w.result.multipliers.ineq[0].reshape(q.shape)
    return w.data.detach(), lam, qr.grad, hr.grad, elapsed, w.result.solver


def cvxpylayers_qp(d: dict, q: torch.Tensor, h: torch.Tensor, layer: object) -> tuple:
    qr, hr = q.clone().requires_grad_(True), h.clone().requires_grad_(True)
    t0, c0 = time.perf_counter(), time.process_time()
    (y,) = layer(qr, hr)
    (y @ d["c"]).sum().backward()
    elapsed = (time.perf_counter() - t0, time.process_time() - c0)
    return y.detach(), qr.grad, hr.grad, elapsed


def make_layer(d: dict) -> object:
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    n = d["q"].numel()
    y = cp.Variable(n)
    q = cp.Parameter(n)
    h = cp.Parameter(n)
    L = torch.linalg.cholesky(d["Q"]).numpy()
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(L.T @ y) + q @ y), [d["G"].numpy() @ y <= h])
    return CvxpyLayer(problem, parameters=[q, h], variables=[y])


def _ms(times: list[tuple[float, float]]) -> dict:
    """Median wall and CPU milliseconds (the machine may be shared: CPU time is the steadier)."""
    out = {"median_ms": round(1e3 * float(np.median([t[0] for t in times])), 2),
           "median_cpu_ms": round(1e3 * float(np.median([t[1] for t in times])), 2)}
    if len(times[0]) > 2:  # tracekit: the implicit-differentiation backward alone
        out["backward_median_cpu_ms"] = round(1e3 * float(np.median([t[2] for t in times])), 2)
    return out


def run_qp(sizes: list[int], batches: list[int], repeats: int) -> list[dict]:
    rows = []
    for n in sizes:
        d = qp_data(n)
        layer = make_layer(d)
        for B in batches:
            q, h = batch_inputs(d, B)
            tk_times, cv_times = [], []
            tracekit_qp(d, q, h, site=f"qp{n}-{B}-warmup")  # first calls pay imports and set-up
            cvxpylayers_qp(d, q, h, layer)
            for r in range(repeats):
                y, lam, gq, gh, dt, solver = tracekit_qp(d, q, h, site=f"qp{n}-{B}-{r}")
                tk_times.append(dt)
                yc, cq, ch, dtc = cvxpylayers_qp(d, q, h, layer)
                cv_times.append(dtc)
            # a training loop calls the same site again with slightly changed inputs: warm start
            gen = torch.Generator().manual_seed(7)
            tracekit_qp(d, q, h, site=f"qp{n}-{B}-warm")
            warm = tracekit_qp(d, q + 1e-3 * torch.randn(q.shape, dtype=D, generator=gen), h,
                               site=f"qp{n}-{B}-warm")[4]
            eq, eh = exact_grads(d, y, lam, q, h)
            active = float((lam > 1e-7).to(D).sum(-1).mean())
            row = {
                "n": n, "batch": B, "active_constraints_mean": active,
                "tracekit": {**_ms(tk_times), "solver": solver,
                             "warm_started_cpu_ms": round(1e3 * warm[1], 2),
                             "grad_rel_err_vs_exact": max(rel(gq, eq), rel(gh, eh))},
                "cvxpylayers": {**_ms(cv_times), "grad_rel_err_vs_exact": max(rel(cq, eq), rel(ch, eh))},
                "solution_max_diff": float((y - yc).abs().max()),
                "grad_rel_diff_tracekit_vs_cvxpylayers": max(rel(gq, cq), rel(gh, ch)),
            }
            row["time_ratio_tracekit_over_cvxpylayers"] = round(row["tracekit"]["median_ms"]
                                                                / row["cvxpylayers"]["median_ms"], 3)
            row["cpu_time_ratio_tracekit_over_cvxpylayers"] = round(row["tracekit"]["median_cpu_ms"]
                                                                    / row["cvxpylayers"]["median_cpu_ms"], 3)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


# --- 2. ridge: tracekit vs torchopt ---------------------------------------------------------------
RIDGE_SETUP = """
import torch, time, json, numpy as np
D = torch.float64
gen = torch.Generator().manual_seed(0)
n, d = 200, 50
A = torch.randn(n, d, generator=gen, dtype=D)
wt = torch.randn(d, generator=gen, dtype=D)
b = A @ wt + 2.0 * torch.randn(n, generator=gen, dtype=D)
Av = torch.randn(n, d, generator=gen, dtype=D)
bv = Av @ wt + 2.0 * torch.randn(n, generator=gen, dtype=D)
eye = torch.eye(d, dtype=D)
def inner(t, w):
    return 0.5 * ((A @ w - b) ** 2).sum() + 0.5 * torch.exp(t) * (w * w).sum()
def outer(w):
    return 0.5 * ((Av @ w - bv) ** 2).sum()
def closed(t):
    lam = torch.exp(t)
    M = A.T @ A + lam * eye
    w = torch.linalg.solve(M, A.T @ b)
    dw = -torch.linalg.solve(M, w)
    return w, lam * ((Av @ w - bv) @ (Av @ dw))
"""

TORCHOPT_SCRIPT = RIDGE_SETUP + """
import torchopt
REPEATS = int(__import__("sys").argv[1])
t = torch.tensor(1.0, dtype=D)
_, g_true = closed(t)
def stationarity(params, t_):
    (w,) = params
    return (torch.func.grad(lambda w_: inner(t_, w_))(w),)
out = {"version": torchopt.__version__, "torch": torch.__version__}
for name, solve in (("cg", torchopt.linear_solve.solve_cg(rtol=1e-12, atol=0.0, maxiter=500)),
                    ("inv", torchopt.linear_solve.solve_inv())):
    @torchopt.diff.implicit.custom_root(stationarity, argnums=1, solve=solve)
    def solve_fn(params, t_):
        lam = torch.exp(t_.detach())
        return (torch.linalg.solve(A.T @ A + lam * eye, A.T @ b),)
    times, errs = [], []
    for _ in range(REPEATS):
        tt = t.clone().requires_grad_(True)
        t0 = time.perf_counter()
        (w,) = solve_fn((torch.zeros(d, dtype=D),), tt)
        (g,) = torch.autograd.grad(outer(w), tt)
        times.append(time.perf_counter() - t0)
        errs.append(float((g - g_true).abs() / g_true.abs()))
    out[name] = {"median_ms_with_closed_form_inner_solve": round(1e3 * float(np.median(times)), 3),
                 "grad_rel_err_vs_closed_form": max(errs)}
print(json.dumps(out))
"""


def run_ridge(repeats: int, peer_python: str) -> dict:
    scope: dict = {}
    exec(RIDGE_SETUP, scope)  # the same data and functions as the peer's script
    inner, outer, closed, d = scope["inner"], scope["outer"], scope["closed"], scope["d"]
    t = torch.tensor(1.0, dtype=D)
    _, g_true = closed(t)

    def objective(w, t):
        return inner(t, w)

    out: dict = {"n_train": 200, "features": d, "log_lambda": 1.0}
    times, errs = [], []
    tk.argmin(objective, torch.zeros(d, dtype=D), t, name="ridge-warmup")
    for r in range(repeats):
        tt = t.clone().requires_grad_(True)
        t0 = time.perf_counter()
        w = tk.argmin(objective, torch.zeros(d, dtype=D), tt, name=f"ridge-{r}")
        (g,) = torch.autograd.grad(outer(w.data), tt)
        times.append(time.perf_counter() - t0)
        errs.append(float((g - g_true).abs() / g_true.abs()))
    out["tracekit_argmin"] = {"median_ms_including_inner_solve": round(1e3 * float(np.median(times)), 3),
                              "grad_rel_err_vs_closed_form": max(errs), "solver": w.result.solver}
    # the implicit step alone, from the exact solution (what torchopt's figure measures
    # besides its closed-form inner solve)
    from solvers.constrained.implicit import KKTPoint, implicit_vjp

    w_star, _ = closed(t)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ybar = torch.func.grad(outer)(w_star)
        grads, info = implicit_vjp(objective, [], [], KKTPoint(w_star[None], torch.zeros(1, 0, dtype=D),
                                                               torch.zeros(1, 0, dtype=D)), [t], ybar,
                                   shape=(d,))
        times.append(time.perf_counter() - t0)
    out["tracekit_implicit_step_only"] = {"median_ms": round(1e3 * float(np.median(times)), 3),
                                          "grad_rel_err_vs_closed_form": float((grads[0] - g_true).abs() / g_true.abs()),
                                          "linear_solver": info["linear_solver"]}
    if peer_python and Path(peer_python).exists():
        try:
            done = subprocess.run([peer_python, "-c", TORCHOPT_SCRIPT, str(repeats)], capture_output=True,
                                  text=True, timeout=300)
            out["torchopt"] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                "error": done.stderr[-400:]}
        except Exception as exc:  # noqa: BLE001 - the peer is optional
            out["torchopt"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        out["torchopt"] = {"error": f"no peer interpreter at {peer_python!r} (create a separate venv with "
                                    "torch==2.13.0 and torchopt)"}
    return out


# --- 3. bilevel training through tk.Optimizer -------------------------------------------------------
def run_bilevel_training(steps: int) -> dict:
    scope: dict = {}
    exec(RIDGE_SETUP, scope)
    inner, outer, closed, d = scope["inner"], scope["outer"], scope["closed"], scope["d"]
    t0 = time.perf_counter()
    res = tk.bilevel(lambda t, w: outer(w), inner, torch.tensor(0.0, dtype=D), torch.zeros(d, dtype=D))
    bilevel_s = time.perf_counter() - t0
    t = tk.param(torch.tensor(0.0, dtype=D), name="log_lambda")
    opt = tk.Optimizer([t], numeric="adam", lr=0.05)
    t0 = time.perf_counter()
    warm = 0
    for _ in range(steps):
        w = tk.argmin(lambda w, t: inner(t, w), torch.zeros(d, dtype=D), t)
        warm += int(w.warm_started)
        loss = outer(w.data)
        opt.zero_feedback()
        opt.backward(w, loss)
        opt.step()
    train_s = time.perf_counter() - t0
    t_final = t.raw.detach()
    return {
        "steps": steps, "optimizer": "adam lr=0.05",
        "tk_optimizer": {"log_lambda": float(t_final), "outer_value": float(outer(closed(t_final)[0])),
                         "hypergradient_closed_form": float(closed(t_final)[1]), "time_s": round(train_s, 2),
                         "warm_started_solves": warm},
        "tk_bilevel": {"log_lambda": float(res.x), "outer_value": float(res.fun), "success": bool(res.success),
                       "time_s": round(bilevel_s, 2)},
        "log_lambda_abs_diff": abs(float(t_final) - float(res.x)),
        "outer_value_rel_diff": abs(float(outer(closed(t_final)[0])) - float(res.fun)) / abs(float(res.fun)),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 10 only, fewer repetitions, 100 training steps")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--peer-python", default="/work/bench-venv/bin/python",
                    help="interpreter of a separate venv with torchopt installed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    repeats = 2 if args.quick else 3
    result = {
        "benchmark": "argmin",
        "platform": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
                     "threads": 1},
        "qp_vs_cvxpylayers": run_qp([10] if args.quick else [10, 100], [1, 64], repeats),
        "ridge_vs_torchopt": run_ridge(5 if args.quick else 20, args.peer_python),
        "bilevel_training": run_bilevel_training(100 if args.quick else 300),
    }
    try:
        import cvxpylayers
        result["platform"]["cvxpylayers"] = cvxpylayers.__version__
    except Exception:  # noqa: BLE001
        pass
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
