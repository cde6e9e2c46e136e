"""Calibrate a simulation's physical parameters by gradients, inside a traced workflow.

A damped, driven oscillator  x'' = -k x - c x' + F sin(w t)  is simulated with a
semi-implicit Euler scheme written in torch. We observe a noisy trajectory produced by
unknown (k, c, F) and recover them: the simulation is a bundled function, the parameters
are `tk.param` tensors with physical bounds, and `tk.Optimizer` gets their exact
gradients through the whole simulation (no LLM guessing numbers); bounds keep them
physical, and each step's report carries the gradient norm and any active bound.

The same calibration is then handed to the LLM optimizer (the parameters as plain floats,
so there is no gradient: the LLM reads the trace and the loss and guesses new numbers), to
compare both ways on loss, steps, time and tokens.

    python examples/numeric_calibration.py            # full run (2000 steps; 8 LLM steps)
    python examples/numeric_calibration.py --quick    # a reduced run for tests / CI
    python examples/numeric_calibration.py --llm-steps 0   # gradients only
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import tracekit as tk

TRUE = {"stiffness": 4.0, "damping": 0.3, "drive": 1.5}


@tk.bundle()
def simulate(stiffness: torch.Tensor, damping: torch.Tensor, drive: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
    """Semi-implicit Euler integration of x'' = -k x - c x' + F sin(1.3 t), x(0)=1, x'(0)=0."""
    dt = t[1] - t[0]
    x = torch.ones((), dtype=t.dtype)
    v = torch.zeros((), dtype=t.dtype)
    xs = []
    for ti in t:
        xs.append(x)
        a = -stiffness * x - damping * v + drive * torch.sin(1.3 * ti)
        v = v + dt * a
        x = x + dt * v
    return torch.stack(xs)


@tk.bundle()
def mse(pred: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the simulated and the observed trajectory."""
    return torch.mean((pred - observed) ** 2)


class Oscillator(tk.Module):
    """A traced workflow: simulate, then compare with observations."""

    def __init__(self) -> None:
        self.stiffness = tk.param(torch.tensor(1.0, dtype=torch.float64), name="stiffness",
                                  bounds=(0.1, 20.0), description="spring constant k")
        self.damping = tk.param(torch.tensor(1.0, dtype=torch.float64), name="damping",
                                bounds=(0.0, 5.0), description="damping c")
        self.drive = tk.param(torch.tensor(0.5, dtype=torch.float64), name="drive",
                              bounds=(0.0, 10.0), description="driving amplitude F")

    def forward(self, t: tk.Node) -> tk.Node:
        return simulate(self.stiffness, self.damping, self.drive, t)


def observations(t: torch.Tensor, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    truth = Oscillator()
    for name, value in TRUE.items():
        getattr(truth, name).data = torch.tensor(value, dtype=torch.float64)
    with torch.no_grad():
        clean = truth(tk.node(t)).data.detach()
    gen = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)


def llm_guess(t: torch.Tensor, observed: torch.Tensor, steps: int) -> dict:
    """Let the LLM optimizer guess (k, c, F) from the trace and the loss: no gradients."""
    start = {"stiffness": 1.0, "damping": 1.0, "drive": 0.5}
    bounds = {"stiffness": (0.1, 20.0), "damping": (0.0, 5.0), "drive": (0.0, 10.0)}
    params = {n: tk.param(v, name=n, bounds=bounds[n]) for n, v in start.items()}

    def loss_of(values: dict) -> float:
        with torch.no_grad(), tk.no_trace():
            pred = simulate(*(torch.tensor(float(values[n]), dtype=torch.float64) for n in start), t)
            return float(torch.mean((pred - observed) ** 2))

    # the objective in the param group (not the Optimizer's) keeps these floats on the LLM
    # route and lets the candidate search keep a proposal only when it lowers the loss
    opt = tk.Optimizer([{"params": list(params.values()), "objective": loss_of}], llm=None,
                       n_candidates=2)
    began, tokens, losses = time.perf_counter(), 0, []
    for _ in range(steps):
        opt.zero_feedback()
        loss = mse(simulate(*params.values(), tk.node(t, name="t")), tk.node(observed, name="observed"))
        value = float(loss.data)
        losses.append(value)
        # text feedback (the loss written in it): a loss in tk.Feedback would route these
        # floats to Bayesian search; this comparison is about the LLM guessing numbers
        opt.backward(loss, f"loss = {value:.6g} (lower is better). Make the simulated trajectory "
                           f"match the observations.")
        tokens += opt.step().tokens
    final = loss_of({n: p.data for n, p in params.items()})
    return {"steps": steps, "seconds": round(time.perf_counter() - began, 3), "loss_first": losses[0] if losses else final,
            "loss_last": final, "tokens": tokens, "estimates": {n: p.data for n, p in params.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (fewer samples and steps)")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw", "lion"])
    parser.add_argument("--llm-steps", type=int, default=None,
                        help="steps of the LLM comparison (default 1 with --quick, else 8; 0 skips it)")
    args = parser.parse_args(argv)
    n_points, steps = (40, 150) if args.quick else (200, 2000)
    t = torch.linspace(0.0, 10.0, n_points, dtype=torch.float64)
    observed = observations(t)

    model = Oscillator()
    lr = {"sgd": 0.05, "adam": 0.05, "adamw": 0.05, "lion": 0.01}[args.optimizer]
    opt = tk.Optimizer(model.parameters(), numeric=args.optimizer, lr=lr,
                       schedule="cosine", total_steps=steps, clip_grad_norm=10.0)
    start = time.perf_counter()
    first = last = None
    for step in range(steps):
        opt.zero_feedback()
        loss = mse(model(tk.node(t, name="t")), tk.node(observed, name="observed"))
        opt.backward(loss, loss)
        report = opt.step()
        last = float(loss.data.detach())
        first = last if first is None else first
        if step % max(1, steps // 5) == 0:
            print(f"step {step:5d}  loss {last:.5f}  " + "  ".join(
                f"{n}={float(p.data.detach()):.3f}" for n, p in model.named_parameters()))
    result = {
        "optimizer": args.optimizer, "steps": steps, "seconds": round(time.perf_counter() - start, 3),
        "loss_first": first, "loss_last": last,
        "estimates": {n: float(p.data.detach()) for n, p in model.named_parameters()},
        "truth": TRUE,
        "last_report": {c.name: c.info for c in report.changes},
    }
    llm_steps = args.llm_steps if args.llm_steps is not None else (1 if args.quick else 8)
    if llm_steps > 0:
        result["llm_guess"] = llm_guess(t, observed, llm_steps)
        print(f"\ngradients: loss {first:.4f} -> {last:.5f} in {steps} steps, {result['seconds']} s, 0 tokens")
        g = result["llm_guess"]
        print(f"LLM guess: loss {g['loss_first']:.4f} -> {g['loss_last']:.5f} in {g['steps']} steps, "
              f"{g['seconds']} s, {g['tokens']} tokens")
    print(json.dumps({k: v for k, v in result.items() if k != "last_report"}, indent=2))
    return result


if __name__ == "__main__":
    main()
