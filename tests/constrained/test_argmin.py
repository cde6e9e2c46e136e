"""tk.argmin: a constrained solve as a differentiable node of a traced workflow."""

import pytest
import torch

import tracekit as tk

D = torch.float64


def fd_grad(fun, x, eps=1e-5):
    """Central finite differences of a scalar function of a tensor."""
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e.view(-1)[i] = eps
        g.view(-1)[i] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return g


def ridge_objective(w, A, b, lam):
    return 0.5 * ((A @ w - b) ** 2).sum() + 0.5 * lam * (w * w).sum()


def test_unconstrained_gradient_matches_closed_form():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(12, 4, dtype=D, generator=gen)
    b = tk.param(torch.randn(12, dtype=D, generator=gen), name="b")
    lam = tk.param(torch.tensor(0.7, dtype=D), name="lam")
    w = tk.argmin(ridge_objective, torch.zeros(4, dtype=D), A, b, lam)
    assert isinstance(w, tk.ArgminNode) and w.converged == "yes"
    assert [p.name for p in w.parents][1:] == ["b", "lam"]
    c = torch.arange(1.0, 5.0, dtype=D)
    (w.data @ c).backward()
    # closed form y* = (A^T A + lam I)^-1 A^T b, differentiated by autograd
    b2 = b.raw.detach().clone().requires_grad_(True)
    lam2 = lam.raw.detach().clone().requires_grad_(True)
    exact = torch.linalg.solve(A.T @ A + lam2 * torch.eye(4, dtype=D), A.T @ b2)
    (exact @ c).backward()
    assert torch.allclose(w.data.detach(), exact.detach(), atol=1e-9)
    assert torch.allclose(b.raw.grad, b2.grad, rtol=1e-7, atol=1e-10)
    assert torch.allclose(lam.raw.grad, lam2.grad, rtol=1e-7, atol=1e-10)


def test_active_constraints_gradient_matches_closed_form():
    # Euclidean projection onto {sum y = 1, y >= 0}: y2 sits at its bound
    c = tk.param(torch.tensor([0.8, 0.5, -0.3], dtype=D), name="c")
    w = tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(3, dtype=D), c,
                  constraints=[tk.Eq(lambda y, c: y.sum() - 1, name="budget")], bounds=(0.0, None))
    assert torch.allclose(w.data.detach(), torch.tensor([0.65, 0.35, 0.0], dtype=D), atol=1e-9)
    assert any("budget" in a for a in w.outcome.active) and any("y[2]" in a for a in w.outcome.active)
    (w.data * torch.tensor([1.0, 2.0, 3.0], dtype=D)).sum().backward()
    # on the active set y_i = c_i + (1 - c0 - c1) / 2 for i in {0, 1}, y2 = 0
    assert torch.allclose(c.raw.grad, torch.tensor([-0.5, 0.5, 0.0], dtype=D), atol=1e-9)


def test_nonlinear_active_inequality_matches_finite_differences():
    # min sum(exp(y)) - theta.y  s.t.  ||y||^2 <= r  (active for this theta), r an input too
    theta0 = torch.tensor([2.0, 1.0, -0.5], dtype=D)
    r0 = torch.tensor(1.5, dtype=D)

    def objective(y, theta, r):
        return torch.exp(y).sum() - theta @ y

    cons = [tk.Ineq(lambda y, theta, r: (y * y).sum() - r, name="ball")]
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=D)

    def loss_at(theta, r):
        out = tk.argmin(objective, torch.zeros(3, dtype=D), theta, r, constraints=cons)
        return out, float((out.data.detach() @ weights) ** 2)

    theta = theta0.clone().requires_grad_(True)
    r = r0.clone().requires_grad_(True)
    out, _ = loss_at(theta, r)
    assert out.outcome.active and out.result.multipliers.ineq[0].item() > 1e-3
    ((out.data @ weights) ** 2).backward()
    g_theta = fd_grad(lambda t: loss_at(t, r0)[1], theta0)
    g_r = fd_grad(lambda t: loss_at(theta0, t)[1], r0)
    assert torch.allclose(theta.grad, g_theta, atol=1e-6)
    assert torch.allclose(r.grad, g_r, atol=1e-6)


def test_argmin_fed_by_argmin_and_node_used_twice():
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(8, 3, dtype=D, generator=gen)
    b0 = torch.randn(8, dtype=D, generator=gen)
    lam0 = torch.tensor(0.3, dtype=D)

    def pipeline(b, lam):
        w1 = tk.argmin(ridge_objective, torch.zeros(3, dtype=D), A, b, lam)
        # the first solution is the center of a projection onto the box [0, 0.2]
        w2 = tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(3, dtype=D), w1, bounds=(0.0, 0.2))
        return w1, w2, (w2.data ** 2).sum() + (w2.data * w1.data).sum() + w2.data.sum()

    b = tk.param(b0.clone(), name="b")
    lam = tk.param(lam0.clone(), name="lam")
    w1, w2, loss = pipeline(b, lam)
    assert w1 in w2.parents
    loss.backward()

    def value(bv, lv):
        with torch.no_grad():
            return float(pipeline(bv, lv)[2])

    assert torch.allclose(b.raw.grad, fd_grad(lambda t: value(t, lam0), b0), atol=1e-6)
    assert torch.allclose(lam.raw.grad, fd_grad(lambda t: value(b0, t), lam0), atol=1e-6)


def test_batched_matches_one_at_a_time():
    gen = torch.Generator().manual_seed(2)
    B, n = 5, 4
    C = torch.randn(B, n, dtype=D, generator=gen).requires_grad_(True)
    obj = lambda y, c: ((y - c) ** 2).sum(-1) + 0.1 * (y**4).sum(-1)  # noqa: E731
    cons = [tk.Ineq(lambda y, c: y.sum(-1, keepdim=True) - 1.0, name="cap")]
    w = tk.argmin(obj, torch.zeros(B, n, dtype=D), C, constraints=cons, bounds=(-0.5, None), batched=True)
    assert w.data.shape == (B, n)
    (w.data ** 2).sum().backward()
    for i in range(B):
        ci = C.detach()[i].clone().requires_grad_(True)
        wi = tk.argmin(lambda y, c: ((y - c) ** 2).sum() + 0.1 * (y**4).sum(), torch.zeros(n, dtype=D), ci,
                       constraints=[tk.Ineq(lambda y, c: y.sum() - 1.0)], bounds=(-0.5, None))
        (wi.data ** 2).sum().backward()
        assert torch.allclose(w.data[i].detach(), wi.data.detach(), atol=1e-6)
        assert torch.allclose(C.grad[i], ci.grad, atol=1e-5)


def test_warm_start_from_previous_solution_of_same_call_site():
    c = torch.tensor([0.2, 0.9], dtype=D)
    nodes = [tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(2, dtype=D), c, bounds=(0.0, 0.5))
             for _ in range(2)]
    assert [n.warm_started for n in nodes] == [False, True]
    assert torch.allclose(nodes[1].data, torch.tensor([0.2, 0.5], dtype=D))


def test_infeasible_is_an_exception_node_and_a_step_changes_nothing():
    c = tk.param(torch.tensor([0.3, 0.4], dtype=D), name="c")
    before = c.raw.detach().clone()
    w = tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(2, dtype=D), c,
                  constraints=[tk.Ineq(lambda y, c: 1 - y.sum(), name="at_least_one"),
                               tk.Ineq(lambda y, c: y.sum() + 1, name="at_most_minus_one")])
    assert isinstance(w, tk.ExceptionNode)
    assert isinstance(w.error.exception, tk.InfeasibleError)
    assert isinstance(w.error.exception, tk.SolveError)
    assert "infeasible" in str(w.error) and w.error.exception.max_violation > 0.5
    assert c in w.parents
    later = w + 1  # operators over it pass the error on
    assert isinstance(later, tk.ExceptionNode)
    # an LLM that would move c if it were asked: a failed solve must not let it guess numbers
    asked = []

    def llm(messages, **kw):
        asked.append(messages)
        return '{"reasoning": "move it", "suggestion": {"c": [9.0, 9.0]}}'

    opt = tk.Optimizer([c], llm=llm, lr=0.1)
    opt.zero_feedback()
    opt.backward(later, "the allocation step failed")
    report = opt.step()
    assert torch.equal(c.raw.detach(), before)
    assert not asked and not report.changed


def test_unbounded_is_an_exception_node():
    w = tk.argmin(lambda y, c: (c * y).sum(), torch.zeros(2, dtype=D), torch.tensor([1.0, -1.0], dtype=D),
                  method="auglag")
    assert isinstance(w, tk.ExceptionNode)
    assert isinstance(w.error.exception, (tk.UnboundedError, tk.NotConvergedError))


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="y0"):
        tk.argmin(lambda y: (y**2).sum())
    with pytest.raises(TypeError, match="Ineq"):
        tk.argmin(lambda y: (y**2).sum(), torch.zeros(2), constraints=[lambda y: y])


def test_optimizer_trains_upstream_tensor_through_argmin():
    # learn the center c so that its projection onto the simplex hits a target allocation
    target = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=D)
    c = tk.param(torch.zeros(4, dtype=D), name="c")
    opt = tk.Optimizer([c], numeric="adam", lr=0.05)
    losses = []
    for _ in range(120):
        w = tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.full((4,), 0.25, dtype=D), c,
                      constraints=[tk.Eq(lambda y, c: y.sum() - 1, name="budget")], bounds=(0.0, 1.0))
        loss = ((w.data - target) ** 2).sum()
        losses.append(loss.item())
        opt.zero_feedback()
        opt.backward(w, loss)
        opt.step()
    assert losses[-1] < 1e-4 < losses[0]


def test_cvxpy_problem_node_matches_callable_path():
    cp = pytest.importorskip("cvxpy")
    pytest.importorskip("cvxpylayers")
    n = 3
    y = cp.Variable(n)
    c_par = cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - c_par)), [cp.sum(y) == 1, y >= 0])
    c = tk.param(torch.tensor([0.8, 0.5, -0.3], dtype=D), name="c")
    w = tk.argmin(problem, parameters={c_par: c}, variables=[y])
    assert isinstance(w, tk.ArgminNode) and c in w.parents
    assert torch.allclose(w.data.detach(), torch.tensor([0.65, 0.35, 0.0], dtype=D), atol=1e-5)
    (w.data * torch.tensor([1.0, 2.0, 3.0], dtype=D)).sum().backward()
    assert torch.allclose(c.raw.grad, torch.tensor([-0.5, 0.5, 0.0], dtype=D), atol=1e-4)
    assert "cvxpy problem" in w.op.call_detail()
    # the multipliers come from the same solve (KKT: 2(y - c) + nu - mu = 0 -> nu 0.3, mu_2 0.9)
    assert [a.split("(multiplier ")[1] for a in w.outcome.active] == ["0.3)", "0.9)"]
    assert "`0.0 <= var" in w.outcome.active[1] and "[2]" in w.outcome.active[1]
    assert "multiplier 0.9" in w.op.call_detail()
    # batched parameters solve a batch in one call
    cb = torch.tensor([[0.8, 0.5, -0.3], [0.1, 0.1, 0.1]], dtype=D)
    wb = tk.argmin(problem, parameters={c_par: cb}, variables=[y])
    assert wb.data.shape == (2, 3)
    assert torch.allclose(wb.data[1], torch.full((3,), 1 / 3, dtype=D), atol=1e-5)


def test_cvxpy_infeasible_is_an_exception_node():
    cp = pytest.importorskip("cvxpy")
    pytest.importorskip("cvxpylayers")
    y = cp.Variable(2)
    c_par = cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - c_par)), [cp.sum(y) >= 1, cp.sum(y) <= -1])
    w = tk.argmin(problem, parameters={c_par: torch.zeros(2, dtype=D)}, variables=[y])
    assert isinstance(w, tk.ExceptionNode)
    assert isinstance(w.error.exception, tk.SolveError)


def test_approximate_convergence_is_noted_on_the_node():
    from solvers.constrained.result import Multipliers, OptimizeResult
    from tracekit.argmin_node import _grade

    near = OptimizeResult(x=torch.zeros(2, dtype=D), fun=0.0, success=False, status="not_converged",
                          message="stopped", max_violation=3e-6, kkt_residual=2e-5, multipliers=Multipliers(),
                          nit=5, nfev=5, solver="auglag", time=0.0)
    assert _grade(near, [], False).converged == "approximate"
    near.kkt_residual = 1e-2
    assert _grade(near, [], False).converged == "no"


def test_inside_a_bundle_argmin_runs_plain():
    @tk.bundle()
    def project(c):
        """Projection onto the box [0, 0.5]."""
        return tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(2, dtype=D), c, bounds=(0.0, 0.5))

    c = tk.param(torch.tensor([0.2, 0.9], dtype=D), name="c")
    out = project(c)
    assert torch.is_tensor(out.data) and torch.allclose(out.data, torch.tensor([0.2, 0.5], dtype=D))
    out.data.sum().backward()
    assert torch.allclose(c.raw.grad, torch.tensor([1.0, 0.0], dtype=D))


def test_linearly_dependent_active_constraints_give_the_minimum_norm_gradient():
    # the same constraint twice (scaled): multipliers are not unique, the KKT matrix is singular,
    # but y* is differentiable: y0 = 0.1 fixed, y1 = c1
    c = torch.tensor([0.5, 0.5], dtype=D, requires_grad=True)
    w = tk.argmin(lambda y, c: ((y - c) ** 2).sum(), torch.zeros(2, dtype=D), c,
                  constraints=[tk.Ineq(lambda y, c: y[:1] - 0.1), tk.Ineq(lambda y, c: 2 * (y[:1] - 0.1))])
    assert torch.allclose(w.data.detach(), torch.tensor([0.1, 0.5], dtype=D), atol=1e-8)
    (w.data * torch.tensor([3.0, 5.0], dtype=D)).sum().backward()
    assert torch.allclose(c.grad, torch.tensor([0.0, 5.0], dtype=D), atol=1e-8)
    info = w.outcome.backward
    assert info["linear_solver"] == "dense KKT"
    assert info["singular"] == (info["active_constraints"] == 2)


def test_an_objective_that_raises_is_an_exception_node():
    def objective(y, table, key):
        return ((y - table[key]) ** 2).sum()

    key = tk.node("missing", name="key")
    w = tk.argmin(objective, torch.zeros(2, dtype=D), {"present": torch.ones(2, dtype=D)}, key)
    assert isinstance(w, tk.ExceptionNode) and w.error.type == "KeyError"
    assert "objective raised KeyError" in w.error.message and key in w.parents


def test_a_cvxpy_node_is_solved_to_the_callable_paths_accuracy():
    # a long-only allocation with two assets at their lower bound: the cone solver's default
    # accuracy (about 1e-4) returned w = -9e-5 there, an infeasible allocation
    import cvxpy as cp

    n, cap, gamma = 5, 0.6, 12.0
    vol = torch.tensor([0.04, 0.06, 0.02, 0.09, 0.01], dtype=torch.float64)
    corr = torch.full((n, n), 0.2, dtype=torch.float64).fill_diagonal_(1.0)
    cov = vol[:, None] * corr * vol[None, :]
    mu = torch.tensor([0.0144, 0.01, 0.0056, 0.01, 0.01], dtype=torch.float64)
    w_var, mu_par = cp.Variable(n), cp.Parameter(n)
    chol = torch.linalg.cholesky(cov).numpy()
    problem = cp.Problem(cp.Minimize(-mu_par @ w_var + 0.5 * gamma * cp.sum_squares(chol.T @ w_var)),
                         [cp.sum(w_var) == 1, w_var >= 0, w_var <= cap])
    cone = tk.argmin(problem, parameters={mu_par: mu}, variables=[w_var]).data
    direct = tk.argmin(lambda w, m: -(m @ w) + 0.5 * gamma * (w @ cov @ w), torch.full((n,), 0.2, dtype=torch.float64),
                       mu, constraints=[tk.Eq(lambda w, m: w.sum() - 1)], bounds=(0.0, cap)).data
    assert (cone - direct).abs().max() < 1e-7
    assert float(cone.min()) > -1e-7
