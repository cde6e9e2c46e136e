"""tk.argmin seen by the LLM optimizer: the prompt shows the solve, and one step updates a
categorical (LLM) and a tensor (gradient) parameter through the same argmin."""

import json

import pytest
import torch

import tracekit as tk

D = torch.float64
REALIZED = torch.tensor([0.02, 0.07, -0.01], dtype=D)
COV = torch.tensor([[0.04, 0.01, 0.0], [0.01, 0.09, 0.02], [0.0, 0.02, 0.01]], dtype=D)


@tk.bundle()
def risk_aversion(profile):
    """Risk-aversion coefficient of a risk profile (higher means more cautious)."""
    return {"cautious": 8.0, "balanced": 3.0, "aggressive": 0.5}[profile]


def mean_variance(w, mu, gamma):
    """Expected return minus a risk penalty, negated (argmin minimizes)."""
    return -(mu @ w) + 0.5 * gamma * (w @ COV @ w)


def workflow(profile, mu):
    gamma = risk_aversion(profile)
    w = tk.argmin(mean_variance, torch.full((3,), 1 / 3, dtype=D), mu, gamma,
                  constraints=[tk.Eq(lambda w, mu, gamma: w.sum() - 1, name="budget")], bounds=(0.0, 1.0))
    return w


def params():
    profile = tk.param("cautious", name="risk_profile", choices=["cautious", "balanced", "aggressive"])
    mu = tk.param(torch.tensor([0.05, 0.05, 0.05], dtype=D), name="mu")
    return profile, mu


def step(llm, profile, mu):
    w = workflow(profile, mu)
    assert isinstance(w, tk.ArgminNode)
    loss = -(w.data @ REALIZED)
    opt = tk.Optimizer([profile, mu], llm=llm, numeric="sgd", lr=0.5)
    opt.zero_feedback()
    # the loss gives mu its gradient; the text record sends the categorical to the LLM (a
    # categorical whose every record carries a loss would go to Bayesian search instead)
    opt.backward(w, loss)
    opt.backward(w, f"realized return {-loss.item():.4f}; higher is better")
    return w, opt.step()


def test_prompt_shows_the_solve_and_both_kinds_update_in_one_step():
    prompts = []

    def llm(messages, **kwargs):
        prompts.append("\n".join(m["content"] for m in messages))
        return json.dumps({"reasoning": "take more risk", "suggestion": {"risk_profile": "aggressive"}})

    profile, mu = params()
    mu_before = mu.raw.detach().clone()
    w, report = step(llm, profile, mu)
    prompt = prompts[0]
    assert "argmin(mean_variance, mu, gamma" in prompt or "argmin(mean_variance, mu, risk_aversion" in prompt
    assert "constraints=[Eq(budget)]" in prompt
    assert "def mean_variance(w, mu, gamma):" in prompt  # the objective's source
    assert "constraint budget (== 0): lambda w, mu, gamma: w.sum() - 1\n" in prompt  # the constraint's source
    assert "status optimal" in prompt and "active constraints:" in prompt and "multiplier" in prompt
    assert "budget (multiplier" in prompt
    # both parameters changed in the same step: the categorical by the LLM, mu by its gradient
    assert profile.data == "aggressive"
    assert not torch.equal(mu.raw.detach(), mu_before)
    assert set(report.changed) == {"risk_profile", "mu"}
    # the gradient pushed mu up where the realized return was high
    delta = mu.raw.detach() - mu_before
    assert float(delta[0]) > 0 > float(delta[2])


def test_prompt_bounds_a_long_objective():
    from tracekit.argmin_node import DESCRIPTION_CHARS

    long_source = "def objective(y, a):\n    return " + " + ".join(f"{i} * 0 * y.sum()" for i in range(400)) \
        + " + ((y - a) ** 2).sum()\n"
    scope = {}
    exec(compile(long_source, "<long>", "exec"), scope)  # a source inspect cannot find: placeholder
    w = tk.argmin(scope["objective"], torch.zeros(2, dtype=D), torch.ones(2, dtype=D))
    assert len(w.op.call_detail()) <= DESCRIPTION_CHARS


@pytest.mark.real_llm
def test_real_model_step_through_argmin(embedded_llm):
    profile, mu = params()
    mu_before = mu.raw.detach().clone()
    w, report = step(embedded_llm, profile, mu)
    assert report.llm_calls >= 1
    assert profile.data in ("cautious", "balanced", "aggressive")
    assert not torch.equal(mu.raw.detach(), mu_before)  # the gradient route ran in the same step


def test_failed_solve_feeds_back_to_the_categorical_and_keeps_the_tensor():
    @tk.bundle()
    def max_weight(profile):
        """Largest weight one asset may get under a risk profile."""
        return {"cautious": 0.2, "balanced": 0.5, "aggressive": 1.0}[profile]

    prompts = []

    def llm(messages, **kwargs):
        prompts.append("\n".join(m["content"] for m in messages))
        return json.dumps({"reasoning": "0.2 x 3 < 1", "suggestion": {"risk_profile": "balanced"}})

    profile, mu = params()
    mu_before = mu.raw.detach().clone()
    def capped(w, mu, gamma, cap):
        return mean_variance(w, mu, gamma)

    cap = max_weight(profile)
    w = tk.argmin(capped, torch.full((3,), 1 / 3, dtype=D), mu, 3.0, cap,
                  constraints=[tk.Eq(lambda w, mu, gamma, cap: w.sum() - 1, name="budget"),
                               tk.Ineq(lambda w, mu, gamma, cap: w - cap, name="cap")])
    assert isinstance(w, tk.ExceptionNode) and isinstance(w.error.exception, tk.InfeasibleError)
    opt = tk.Optimizer([profile, mu], llm=llm, numeric="sgd", lr=0.5)
    opt.zero_feedback()
    opt.backward(w, "the allocation failed; choose a profile that allows a fully invested portfolio")
    report = opt.step()
    assert prompts and "InfeasibleError" in prompts[0] and "lambda w, mu, gamma, cap: w - cap" in prompts[0]
    assert profile.data == "balanced" and report.changed == ["risk_profile"]
    assert torch.equal(mu.raw.detach(), mu_before)
    # with the new profile the same workflow solves
    w = tk.argmin(capped, torch.full((3,), 1 / 3, dtype=D), mu, 3.0, max_weight(profile),
                  constraints=[tk.Eq(lambda w, mu, gamma, cap: w.sum() - 1, name="budget"),
                               tk.Ineq(lambda w, mu, gamma, cap: w - cap, name="cap")])
    assert isinstance(w, tk.ArgminNode) and w.data.max().item() <= 0.5 + 1e-8
