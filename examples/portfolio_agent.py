"""A portfolio agent: an LLM-chosen risk profile, gradient-trained return forecasts and a
constrained allocation (`tk.argmin`) trained together against realized returns.

The workflow, per period:

    gamma = risk_aversion(profile)                   # categorical parameter -> LLM optimizer
    w     = tk.argmin(mean_variance, w0, mu, gamma,  # mu: tensor parameter -> gradients
                      constraints=[tk.Eq(budget)], bounds=(0, cap))   # long-only, budget 1
    loss  = -(realized utility of w)

The gradient of the loss reaches the forecasts `mu` *through the solve* (implicit
differentiation of the allocation's KKT conditions), and the LLM optimizer reads the solve
in its prompt (objective source, active constraints, multipliers) when it reconsiders the
risk profile. At the end the same allocation is written as a cvxpy problem
(`tk.argmin(problem, parameters=..., variables=...)`, differentiated by cvxpylayers) and
both forms are compared.

Run: python examples/portfolio_agent.py [--quick]   (offline: the embedded model by default)
"""

from __future__ import annotations

import argparse
import math

import torch

import tracekit as tk

D = torch.float64
N_ASSETS = 5
CAP = 0.6  # at most 60% in one asset
TRUE_AVERSION = 3.0  # the client's real utility: mean - TRUE_AVERSION/2 * variance


def market(seed: int = 0, periods: int = 240) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic monthly returns: a covariance and `periods` realized return vectors."""
    gen = torch.Generator().manual_seed(seed)
    true_mu = torch.tensor([0.010, 0.014, 0.006, 0.018, 0.004], dtype=D)
    vol = torch.tensor([0.04, 0.06, 0.02, 0.09, 0.01], dtype=D)
    corr = torch.full((N_ASSETS, N_ASSETS), 0.2, dtype=D).fill_diagonal_(1.0)
    cov = vol[:, None] * corr * vol[None, :]
    chol = torch.linalg.cholesky(cov)
    returns = true_mu + torch.randn(periods, N_ASSETS, dtype=D, generator=gen) @ chol.T
    return cov, returns


COV, RETURNS = market()


@tk.bundle()
def risk_aversion(profile):
    """Risk-aversion coefficient of the client's risk profile (higher = more cautious)."""
    return {"cautious": 12.0, "balanced": 3.0, "aggressive": 0.5}[profile]


def mean_variance(w, mu, gamma):
    """Negated mean-variance utility of the allocation w (argmin minimizes)."""
    return -(mu @ w) + 0.5 * gamma * (w @ COV @ w)


def allocate(profile: tk.Node, mu: tk.Node) -> tk.Node:
    """The allocation step of the workflow: long-only, fully invested, capped."""
    gamma = risk_aversion(profile)
    return tk.argmin(mean_variance, torch.full((N_ASSETS,), 1.0 / N_ASSETS, dtype=D), mu, gamma,
                     constraints=[tk.Eq(lambda w, mu, gamma: w.sum() - 1, name="budget")], bounds=(0.0, CAP),
                     name="allocation")


def realized_utility(w: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """What the client values, measured on realized returns."""
    r = returns @ w
    return r.mean() - 0.5 * TRUE_AVERSION * r.var()


def cvxpy_allocation(mu_value: torch.Tensor, gamma_value: float) -> tk.Node:
    """The same allocation as a cvxpy problem, differentiated by cvxpylayers."""
    import cvxpy as cp

    w = cp.Variable(N_ASSETS)
    mu = cp.Parameter(N_ASSETS)
    chol = torch.linalg.cholesky(COV).numpy()
    gamma = float(gamma_value)
    problem = cp.Problem(cp.Minimize(-mu @ w + 0.5 * gamma * cp.sum_squares(chol.T @ w)),
                         [cp.sum(w) == 1, w >= 0, w <= CAP])
    return tk.argmin(problem, parameters={mu: mu_value}, variables=[w])


def train(steps: int, llm, seed: int = 0, batch: int = 48) -> dict:
    profile = tk.param("cautious", name="risk_profile", choices=["cautious", "balanced", "aggressive"],
                       description="the client's risk profile; sets how much variance the allocation accepts")
    mu = tk.param(torch.full((N_ASSETS,), 0.01, dtype=D), name="mu",
                  description="forecast monthly return of each asset")
    opt = tk.Optimizer([profile, mu], llm=llm, numeric="adam", lr=2e-3, n_candidates=1, max_tokens=120)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        idx = torch.randint(0, RETURNS.shape[0], (batch,), generator=gen)
        w = allocate(profile, mu)
        if w.is_error:  # a failed solve is a node: say so and keep the values
            opt.zero_feedback()
            opt.backward(w, f"the allocation failed: {w.error}")
            opt.step()
            continue
        utility = realized_utility(w.data, RETURNS[idx])
        loss = -utility
        text = (f"realized utility {utility.item():.5f} per month (mean minus {TRUE_AVERSION / 2} x variance, "
                f"higher is better) with allocation {[round(x, 3) for x in w.data.tolist()]}")
        opt.zero_feedback()
        opt.backward(w, tk.Feedback(loss=loss, text=text))
        report = opt.step()
        history.append(utility.item())
        print(f"step {step}: profile={profile.data} utility={utility.item():.5f} "
              f"warm_started={w.warm_started} changed={report.changed}")
    final = allocate(profile, mu)
    full = realized_utility(final.data.detach(), RETURNS).item()
    return {"profile": profile.data, "mu": mu.data.detach(), "w": final.data.detach(), "utility": full,
            "node": final, "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 steps (for tests and CI)")
    parser.add_argument("--steps", type=int, help="training steps (default 40, 3 with --quick)")
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 40)
    start = realized_utility(torch.full((N_ASSETS,), 1.0 / N_ASSETS, dtype=D), RETURNS).item()
    print(f"equal-weight utility on all periods: {start:.5f}")
    out = train(steps, tk.llm.default())
    print(f"final profile: {out['profile']}")
    print(f"final forecasts mu: {[round(x, 4) for x in out['mu'].tolist()]}")
    print(f"final allocation: {[round(x, 3) for x in out['w'].tolist()]} (sum {out['w'].sum().item():.6f})")
    print(f"final utility on all periods: {out['utility']:.5f}")
    print("the solve as the LLM optimizer sees it:")
    print(out["node"].op.call_detail())
    gamma = risk_aversion(out["profile"]).data
    alt = cvxpy_allocation(out["mu"], gamma)
    gap = (alt.data.detach() - out["w"]).abs().max().item()
    print(f"cvxpy form agrees: {gap < 1e-4} (max difference {gap:.1e})")
    assert math.isfinite(out["utility"])


if __name__ == "__main__":
    main()
