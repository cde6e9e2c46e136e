"""The Optimizer's dispatch seam: routes, missing solvers, validation, reports."""

import pytest
import torch

import tracekit as tk
from tracekit import seam as registry
from tracekit.optimizer import UNCHANGED, ParamChange, ParamUpdate


@pytest.fixture
def empty_registry(monkeypatch):
    """No solver registered and no built-in found."""
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_BUILTIN", {})


class ScriptedSolver:
    """Proposes fixed values: a test double for the seam, not a real optimizer."""

    name = "scripted"

    def __init__(self, params, proposals=None, fail=False, **options):
        self.proposals = proposals or {}
        self.fail = fail
        self.options = options
        self.calls = 0

    def step(self, params, context):
        self.calls += 1
        if self.fail:
            raise RuntimeError("solver exploded")
        return [ParamUpdate(context.name_of(p), self.name,
                            new_value=self.proposals.get(context.name_of(p), UNCHANGED))
                for p in params]

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_step_without_a_solver_names_the_missing_solver_and_changes_nothing(empty_registry):
    p = tk.param("Answer.", name="instruction")
    opt = tk.Optimizer([p])
    opt.backward(p + "!", "too short")
    with pytest.raises(tk.MissingSolverError, match=r"text: \['instruction'\].*register_solver"):
        opt.step()
    assert p.data == "Answer."


def test_registered_solver_gets_its_parameters_and_proposals_are_validated(empty_registry):
    instruction = tk.param("Answer.", name="instruction")
    k = tk.param("bm25", name="k", choices=["bm25", "dense"])
    tk.register_solver("text", lambda params, **o: ScriptedSolver(
        params, proposals={"instruction": "Answer in one word.", "k": "sparse"}, **o))
    opt = tk.Optimizer([instruction, k])
    opt.zero_feedback()
    opt.backward(instruction + k, "wrong")
    report = opt.step()
    assert instruction.data == "Answer in one word."
    assert k.data == "bm25"  # "sparse" is not a choice: refused, old value kept
    assert report.changed == ["instruction"]
    assert "not one of the choices" in report["k"].reason
    assert "instruction" in str(report)


def test_a_failing_solver_changes_nothing_and_says_why(empty_registry):
    p = tk.param("Answer.", name="instruction")
    tk.register_solver("text", lambda params, **o: ScriptedSolver(params, fail=True))
    opt = tk.Optimizer([p])
    opt.backward(p + "?", "bad")
    report = opt.step()
    assert p.data == "Answer." and report.changed == []
    assert "solver exploded" in report["instruction"].reason


def test_routes_by_kind_and_path():
    from tracekit.optimizer import route_of

    text = tk.param("a", name="a")
    w = tk.param(torch.zeros(2), name="w")
    t = tk.param(0.5, name="t")
    c = tk.param("x", name="c", choices=["x", "y"])
    loss = torch.sum(w * 2)
    tk.backward(loss, loss)
    tk.backward(t * 2, 1.0)
    tk.backward(c, "try the other one")
    assert route_of(text, False) == "text"
    assert route_of(w, False) == "gradient"
    # a number with a loss, or any number or categorical given an objective: Bayesian search
    assert route_of(t, True) == "bayesian" and route_of(t, False) == "bayesian"
    assert route_of(c, True) == "bayesian" and route_of(c, False) == "text"


def test_parameters_without_feedback_are_reported_unchanged(empty_registry):
    a, b = tk.param("a", name="a"), tk.param("b", name="b")
    tk.register_solver("text", lambda params, **o: ScriptedSolver(params, proposals={"a": "A"}))
    opt = tk.Optimizer([a, b])
    opt.backward(a + "x", "more")
    report = opt.step()
    assert report["b"].reason == "no feedback reached it" and not report["b"].changed
    assert report["a"].changed


def test_clashing_names_are_made_unique_and_groups_carry_options(empty_registry):
    seen = {}

    def factory(params, **options):
        seen.setdefault("lrs", []).append(options["lr"])
        return ScriptedSolver(params, proposals={"p": "one", "p_2": "two"})

    tk.register_solver("text", factory)
    first, second = tk.param("x", name="p"), tk.param("y", name="p")
    opt = tk.Optimizer([{"params": [first], "lr": 0.1}, {"params": [second]}], lr=0.5)
    opt.backward(first + second, "change both")
    opt.step()
    assert (first.data, second.data) == ("one", "two")
    assert sorted(seen["lrs"]) == [0.1, 0.5]
    state = opt.state_dict()
    assert state["solvers"]["0:text"] == {"calls": 1}
    opt.load_state_dict({"solvers": {"0:text": {"calls": 5}}})
    assert opt._solvers[(0, "text")].calls == 5


def test_bad_optimizer_inputs():
    with pytest.raises(ValueError, match="empty parameter list"):
        tk.Optimizer([])
    with pytest.raises(TypeError, match="tk.param"):
        tk.Optimizer([1.0])
    p = tk.param("a", name="a")
    with pytest.raises(ValueError, match="more than one parameter group"):
        tk.Optimizer([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="unknown route"):
        tk.register_solver("magic", lambda params, **o: None)


def test_zero_feedback_clears_feedback_and_gradients():
    w = tk.param(torch.ones(2), name="w")
    opt = tk.Optimizer([w])
    loss = torch.sum(w * w)
    opt.backward(loss, loss)
    assert w.feedback and w.data.grad is not None
    opt.zero_feedback()
    assert not w.feedback and w.data.grad is None


def test_step_report_shows_a_diff_for_changed_code():
    import json

    @tk.bundle(trainable=True)
    def parse(text):
        """Return the number after the colon."""
        parts = text.split(":")
        return parts[0]

    code = parse.parameters()[0]
    new_source = code.data.replace("return parts[0]", "return int(parts[1])")

    def llm(messages, **kwargs):
        return json.dumps({"reasoning": "use the part after the colon",
                           "suggestion": {"parse": new_source}})

    opt = tk.Optimizer([code], llm=llm)
    out = parse("total: 12")
    opt.zero_feedback()
    opt.backward(out, "it should return 12")
    report = opt.step()
    change = report.changes[0]
    assert change.changed and change.kind == "code"
    assert "-        return parts[0]" not in change.diff  # the diff keeps the source's indentation
    assert "-    return parts[0]" in change.diff and "+    return int(parts[1])" in change.diff
    assert "+    return int(parts[1])" in report.format(full=True)  # the full report shows the diff
    assert len(str(report).splitlines()) == 2  # printed: the headline and one line for the parameter
    assert change.old.startswith("'def parse(text)")  # the short preview is unchanged
    assert ParamChange("t", "text", "text", "'a'", "'a'", False).diff == ""  # nothing changed


# --- failing solvers: expected failures are reported, bugs propagate; both roll back ----------
class WritingThenFailingSolver:
    """Writes a value into each parameter, then fails with `error`: what a buggy solver
    does half-way through a step."""

    name = "writing"

    def __init__(self, params, error=None, **options):
        self.error = error

    def step(self, params, context):
        for p in params:
            p.set(torch.full_like(p.data, 7.0) if p.is_tensor else
                  (p.data + "!" if isinstance(p.data, str) else p.data + 1.0))
        raise self.error

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _two_params_and_a_step(route_error, route="text"):
    tk.register_solver(route, lambda params, **o: WritingThenFailingSolver(params, error=route_error))
    text = tk.param("Answer.", name="instruction")
    w = tk.param(torch.tensor([1.0, 2.0]), name="w")  # a tensor without gradient: text route too
    opt = tk.Optimizer([text, w])
    opt.backward([text + "?", w * 1], "bad")
    return opt, text, w


def test_a_programming_error_in_a_solver_propagates_after_rollback(empty_registry):
    opt, text, w = _two_params_and_a_step(TypeError("unsupported operand type(s)"))
    with pytest.raises(TypeError, match="unsupported operand") as caught:
        opt.step()
    assert text.data == "Answer." and w.data.tolist() == [1.0, 2.0]  # rolled back
    assert any("not an expected solver failure" in note for note in caught.value.__notes__)
    assert len(opt.history) == 0  # no report for a step that raised


@pytest.mark.parametrize("error", [AttributeError("'NoneType' object has no attribute 'x'"),
                                   NameError("name 'x' is not defined"), KeyError("x"),
                                   NotImplementedError("todo")])
def test_bugs_of_every_kind_propagate(empty_registry, error):
    opt, text, _ = _two_params_and_a_step(error)
    with pytest.raises(type(error)):
        opt.step()
    assert text.data == "Answer."


def test_an_error_building_the_solver_propagates_too(empty_registry):
    def broken_factory(params, **options):
        raise AttributeError("factory bug")

    tk.register_solver("text", broken_factory)
    p = tk.param("Answer.", name="instruction")
    opt = tk.Optimizer([p])
    opt.backward(p + "?", "bad")
    with pytest.raises(AttributeError, match="factory bug"):
        opt.step()
    assert p.data == "Answer."


@pytest.mark.parametrize("error", [
    pytest.param("llm", id="LLMRequestError"),
    pytest.param("feedback", id="FeedbackError (a typed TypeError)"),
    pytest.param(ValueError("reply did not parse"), id="ValueError"),
    pytest.param(RuntimeError("CUDA out of memory"), id="RuntimeError"),
    pytest.param(ConnectionError("refused"), id="OSError"),
])
def test_an_expected_solver_failure_is_reported_and_rolled_back(empty_registry, error):
    from tracekit.errors import FeedbackError
    from tracekit.llm import LLMRequestError

    error = {"llm": LLMRequestError("HTTP 500 after 3 retries"),
             "feedback": FeedbackError("feedback of an unusable type")}.get(error, error)
    opt, text, w = _two_params_and_a_step(error)
    report = opt.step()
    assert text.data == "Answer." and w.data.tolist() == [1.0, 2.0]
    assert report.changed == []
    assert f"solver text failed: {type(error).__name__}" in report["instruction"].reason
    assert str(error) in report["w"].reason


def test_the_expected_failures_are_decided_in_one_place():
    from tracekit.llm import BudgetExceeded
    from tracekit.seam import EXPECTED_SOLVER_FAILURES, expected_failure

    assert tk.TracekitError in EXPECTED_SOLVER_FAILURES
    assert expected_failure(BudgetExceeded("calls", 1, 1, 1, "a test"))  # LLM errors are typed
    assert expected_failure(tk.InvalidValueError("out of bounds"))
    assert not expected_failure(TypeError("bug")) and not expected_failure(AttributeError("bug"))
    assert not expected_failure(RecursionError()) and not expected_failure(NotImplementedError())
