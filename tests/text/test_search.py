"""Candidate search, memory and state, standalone and through tk.Optimizer."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from textopt_helpers import Scripted, reply

import tracekit as tk
from solvers.text import Problem, TextOptimizer, Variable


def x_problem() -> Problem:
    return Problem([Variable("x", "numeric", 3, bounds=(-10, 10))], feedback=["x*x should be 16"])


def by_temperature(table: dict[float, str]):
    return lambda messages, temperature=0.0, **kw: table[temperature]


def test_candidates_use_varied_temperatures_and_seeds():
    llm = Scripted([reply({"x": 5})])
    TextOptimizer(llm, n_candidates=4, max_workers=1).step(x_problem())
    assert [k["temperature"] for k in llm.kwargs] == [0.0, 0.7, 1.0, 1.3]
    assert len({k["seed"] for k in llm.kwargs}) == 4


def test_best_candidate_by_objective_is_kept():
    llm = by_temperature({0.0: reply({"x": 5}), 0.7: reply({"x": 4}), 1.0: reply({"x": 2}), 1.3: "junk"})
    result = TextOptimizer(llm, n_candidates=4, max_reasks=0).step(
        x_problem(), objective=lambda v: abs(v.get("x", 3) ** 2 - 16))
    assert result.suggestion == {"x": 4}
    assert result.baseline_loss == 7 and result.candidates[1].loss == 0
    assert not result.candidates[3].valid
    assert "loss 7 -> 0" in result.reasons["x"]


def test_previous_value_kept_when_no_candidate_beats_it():
    llm = by_temperature({0.0: reply({"x": 9}), 0.7: reply({"x": -9})})
    result = TextOptimizer(llm, n_candidates=2, explore=False).step(
        x_problem(), objective=lambda v: abs(v.get("x", 3) ** 2 - 16))
    assert result.suggestion == {} and result.chosen is None
    assert "no candidate beat the current value (loss 7" in result.reasons["x"]


def test_exploration_is_kept_only_when_the_objective_says_it_is_better():
    llm = by_temperature({0.0: reply({"x": 9}), 0.7: reply({"x": -9})})
    never_better = TextOptimizer(llm, n_candidates=2).step(x_problem(), objective=lambda v: 0.0 if "x" not in v else 5.0)
    assert never_better.suggestion == {} and never_better.chosen is None
    assert "an exploratory proposal did not beat it either" in never_better.reasons["x"]
    assert never_better.candidates[-1].explored  # it was tried and judged
    result = TextOptimizer(llm, n_candidates=2).step(x_problem(), objective=lambda v: 0.0 if "x" in v and v["x"] not in (9, -9) else 5.0)
    assert result.chosen == 2 and result.candidates[2].explored and result.suggestion["x"] not in (3, 9, -9)
    assert result.reasons["x"].startswith("explored: an untried integer")
    assert "no LLM candidate beat the current value, loss 5 -> 0" in result.reasons["x"]


def test_ties_go_to_the_earliest_candidate():
    llm = by_temperature({0.0: reply({"x": 4}), 0.7: reply({"x": -4})})
    result = TextOptimizer(llm, n_candidates=2).step(x_problem(), objective=lambda v: abs(v.get("x", 3) ** 2 - 16))
    assert result.suggestion == {"x": 4}


def test_failing_and_nan_candidates_lose():
    def objective(values):
        x = values.get("x", 3)
        if x == 5:
            raise RuntimeError("crashed")
        return float("nan") if x == 6 else abs(x * x - 16)
    llm = by_temperature({0.0: reply({"x": 5}), 0.7: reply({"x": 6}), 1.0: reply({"x": -4})})
    result = TextOptimizer(llm, n_candidates=3).step(x_problem(), objective=objective)
    assert result.suggestion == {"x": -4}
    assert "crashed" in result.candidates[0].eval_error and "nan" in result.candidates[1].eval_error


def test_failing_baseline_is_beaten_by_any_working_candidate():
    def objective(values):
        if "x" not in values:
            raise RuntimeError("current value crashes")
        return 100.0
    result = TextOptimizer(Scripted([reply({"x": 8})])).step(x_problem(), objective=objective)
    assert result.suggestion == {"x": 8}


def test_duplicate_candidates_are_evaluated_once():
    calls = []
    lock = threading.Lock()

    def objective(values):
        with lock:
            calls.append(dict(values))
        return 0.0 if values else 1.0
    TextOptimizer(Scripted([reply({"x": 4})]), n_candidates=4).step(x_problem(), objective=objective)
    assert sorted(json.dumps(c) for c in calls) == sorted([json.dumps({}), json.dumps({"x": 4})])


def test_candidates_are_evaluated_in_parallel():
    def slow(values):
        time.sleep(0.2)
        return -values.get("x", 0)
    llm = by_temperature({t: reply({"x": i + 4}) for i, t in enumerate((0.0, 0.7, 1.0, 1.3))})
    start = time.perf_counter()
    result = TextOptimizer(llm, n_candidates=4, max_workers=5).step(x_problem(), objective=slow)
    assert time.perf_counter() - start < 0.2 * 5 * 0.8  # five evaluations, not in sequence
    assert result.suggestion == {"x": 7}


def test_without_objective_the_first_valid_candidate_wins():
    llm = by_temperature({0.0: "junk", 0.7: reply({"x": 6}), 1.0: reply({"x": 7})})
    result = TextOptimizer(llm, n_candidates=3, max_reasks=0).step(x_problem())
    assert result.suggestion == {"x": 6} and result.chosen == 1


def test_memory_feeds_later_prompts_and_state_round_trips():
    llm = Scripted([reply({"x": 5}), reply({"x": 6}), reply({"x": 7})])
    opt = TextOptimizer(llm, memory_size=3)
    opt.step(x_problem(), objective=lambda v: abs(v.get("x", 3) - 7))
    opt.step(Problem([Variable("x", "numeric", 5, bounds=(-10, 10))], feedback=["still wrong"]))
    assert "Earlier attempts" in llm.prompts[1] and "x=5 -> objective loss 2" in llm.prompts[1]
    assert "x=3 -> objective loss 4; x*x should be 16" in llm.prompts[1]
    state = json.loads(json.dumps(opt.state_dict(), allow_nan=False))
    fresh = TextOptimizer(llm, memory_size=3)
    fresh.load_state_dict(state)
    assert fresh.steps == 2 and len(fresh.memory) == len(opt.memory)
    fresh.step(x_problem())
    assert "still wrong" in llm.prompts[-1]


def test_invalid_options_are_refused():
    with pytest.raises(ValueError):
        TextOptimizer(Scripted(["{}"]), n_candidates=0)
    with pytest.raises(TypeError):
        TextOptimizer("not callable")  # type: ignore[arg-type]


# --- through tk.Optimizer ------------------------------------------------------------------------------
def test_optimizer_objective_zero_arg_sets_and_restores_parameters():
    op = tk.param("add", name="op", choices=["add", "sub", "mul"])

    @tk.bundle()
    def apply(op, a, b):
        """Apply op to a and b."""
        return {"add": a + b, "sub": a - b, "mul": a * b}[op]

    seen = []

    def objective():
        seen.append(op.data)
        return abs(apply(op, 6, 7).data - 42)

    llm = by_temperature({0.0: reply({"op": "sub"}), 0.7: reply({"op": "mul"}), 1.0: reply({"op": "mul"}),
                          1.3: "junk"})
    opt = tk.Optimizer([{"params": [op], "objective": objective}], llm=llm, max_reasks=0)
    out = apply(op, 6, 7)
    opt.zero_feedback()
    opt.backward(out, "should be 42")
    report = opt.step()
    assert op.data == "mul" and report.changed == ["op"]
    assert sorted(seen) == ["add", "mul", "sub"]  # baseline + two unique candidates, restored between
    info = report["op"].info
    assert info["candidates"] == 4 and info["valid_candidates"] == 3 and info["baseline_loss"] == 29


def test_optimizer_keeps_value_when_no_candidate_is_better():
    op = tk.param("mul", name="op", choices=["add", "sub", "mul"])
    opt = tk.Optimizer([{"params": [op], "objective": lambda: 0.0 if op.data == "mul" else 1.0}],
                       llm=Scripted([reply({"op": "add"})]), n_candidates=2)
    out = op + "!"
    opt.zero_feedback()
    opt.backward(out, "fine")
    report = opt.step()
    assert op.data == "mul" and not report.changed
    assert "no candidate beat the current value" in report["op"].reason


def test_objective_taking_values_gets_a_dict():
    op = tk.param("add", name="op", choices=["add", "sub", "mul"])
    got = []

    def objective(values):
        got.append(values)
        return 0.0 if values.get("op") == "sub" else 1.0
    opt = tk.Optimizer([{"params": [op], "objective": objective}], llm=Scripted([reply({"op": "sub"})]))
    opt.zero_feedback()
    opt.backward(op + "", "f")
    opt.step()
    assert op.data == "sub" and {"op": "sub"} in got


def test_solver_state_round_trips_through_the_optimizer():
    p = tk.param("hello", name="greeting")
    opt = tk.Optimizer([p], llm=Scripted([reply({"greeting": "hi"})]))
    opt.zero_feedback()
    opt.backward(p + "!", "shorter")
    opt.step()
    state = json.loads(json.dumps(opt.state_dict()))
    assert state["solvers"]["0:text"]["steps"] == 1
    opt2 = tk.Optimizer([p], llm=Scripted([reply({"greeting": "yo"})]))
    opt2.load_state_dict(state)
    opt2.zero_feedback()
    opt2.backward(p + "!", "again")
    opt2.step()
    assert opt2.state_dict()["solvers"]["0:text"]["steps"] == 2


def test_code_parameter_updated_and_used():
    @tk.bundle(trainable=True)
    def parse(text):
        """Return the number after the colon."""
        return text.split(":")[0]

    code = parse.parameters()[0]
    new = "def parse(text):\n    return text.split(':')[1].strip()"
    opt = tk.Optimizer([code], llm=Scripted([reply({"parse": "def parse(t):\n    return t"}), reply({"parse": new})]))
    out = parse("value: 12")
    opt.zero_feedback()
    opt.backward(out, "expected '12'")
    report = opt.step()
    assert report.changed == ["parse"] and parse("value: 12").data == "12"


def test_numeric_without_gradient_or_signal_goes_to_text_and_stays_in_bounds():
    """Text feedback with no target and no direction, and a model that names the first option
    of every question (no signal): the number goes to the text route, as before."""
    def llm(messages, **kwargs):
        content = messages[-1]["content"]
        if "Answer with one of:" in content:
            return json.dumps({"answer": content.rsplit("Answer with one of:", 1)[1].split(",")[0].strip()})
        return scripted(messages, **kwargs)

    scripted = Scripted([reply({"x": 40}), reply({"x": 4})])
    x = tk.param(3, name="x", bounds=(0, 10))
    opt = tk.Optimizer([x], llm=llm)
    opt.zero_feedback()
    opt.backward(x * x, "not good")
    report = opt.step()
    assert x.data == 4 and type(x.data) is int and report["x"].solver == "text"


def test_numeric_with_a_target_in_the_text_goes_to_the_bracket_route():
    x = tk.param(3, name="x", bounds=(0, 10))
    opt = tk.Optimizer([x], llm=Scripted([reply({"x": 40})]))
    opt.backward(x * x, "should be 16")
    report = opt.step()
    assert report["x"].solver == "bracket" and type(x.data) is int and 3 < x.data <= 10


def test_exception_node_feedback_reaches_the_prompt():
    @tk.bundle(trainable=True)
    def parse(text):
        return int(text)

    llm = Scripted([reply({"parse": "def parse(text):\n    return int(text.split(':')[1])"})])
    opt = tk.Optimizer(parse.parameters(), llm=llm)
    out = parse("a: 3")
    assert out.is_error
    opt.zero_feedback()
    opt.backward(out, "it crashed")
    opt.step()
    assert "ValueError" in llm.prompts[0] and "# raised" in llm.prompts[0]
    assert parse("a: 3").data == 3


def test_unknown_names_are_reported_in_the_step_info():
    p = tk.param("hello", name="greeting")
    opt = tk.Optimizer([p], llm=Scripted([reply({"greeting": "hi", "farewell": "bye"})]))
    opt.zero_feedback()
    opt.backward(p + "!", "shorter")
    report = opt.step()
    assert p.data == "hi" and report["greeting"].info["unknown_names"] == ["farewell"]


def test_feedback_directly_on_a_parameter():
    p = tk.param("Answer briefly.", name="instruction")
    llm = Scripted([reply({"instruction": "Answer in one word."})])
    opt = tk.Optimizer([p], llm=llm)
    opt.zero_feedback()
    opt.backward(p, "too vague")
    assert opt.step().changed == ["instruction"]
    assert "too vague" in llm.prompts[0] and "# Code" not in llm.prompts[0]


def test_values_judged_by_the_objective_leave_the_enum():
    op = Variable("op", "categorical", "add", choices=["add", "sub", "mul", "div"])
    schemas = []

    def llm(messages, **kwargs):
        schemas.append(messages[-1]["content"])
        return reply({"op": "sub"})
    opt = TextOptimizer(tk.llm.as_backend(llm), n_candidates=1, explore=False)  # structured: the schema is sent
    opt.step(Problem([op], feedback=["f"]), objective=lambda v: 1.0)  # sub judged, not better
    assert opt.tried == {"op": ["add", "sub"]}  # the current value got feedback: tried too
    opt.step(Problem([op], feedback=["f"]), objective=lambda v: 1.0)
    assert '"enum":["sub","mul","div"]' in schemas[0].replace(" ", "")
    assert '"enum":["mul","div"]' in schemas[1].replace(" ", "")
    assert TextOptimizer(llm, avoid_tried=False).avoid_tried is False


def test_text_exclusion_keeps_the_current_value_and_leaves_the_prompt_budget_alone():
    keywords = Variable("keywords", "text", "hello, thanks")
    sent = []

    def llm(messages, **kwargs):
        sent.append((messages[-1]["content"], kwargs))
        return reply({"keywords": f"new words {len(sent)}"})
    backend = tk.llm.as_backend(llm)
    opt = TextOptimizer(backend, n_candidates=1, constrain_text=True)
    opt.tried = {"keywords": [f"tried value number {i:03d} with some more words" for i in range(200)]}
    plain = TextOptimizer(backend, n_candidates=1, constrain_text=False)
    problem = Problem([keywords], feedback=["a long feedback line " * 150])
    with_pattern = opt.step(problem, objective=lambda v: 1.0)
    without = plain.step(problem, objective=lambda v: 1.0)
    # the pattern constrains the server's grammar only: the prompt budget and text are the same
    assert with_pattern.prompt_tokens == without.prompt_tokens
    assert "pattern" not in sent[0][0]
    schema = reply_schema_of(opt, problem)
    field = next(iter(schema["$defs"]["Suggestion"]["properties"].values()))
    assert len(field["pattern"]) < 250_000  # bounded however many values were tried
    body = json.dumps("hello, thanks")[1:-1]
    assert re.fullmatch(field["pattern"][1:-1], body) is None  # the current value stays excluded


def reply_schema_of(opt: TextOptimizer, problem: Problem) -> dict:
    from solvers.text.reply import reply_model

    tried = {v.name: list(opt.tried.get(v.name, [])) for v in problem.variables}
    return reply_model(problem.variables, exclude_current=True, exclude=tried,
                       constrain_text=True).model_json_schema()


def test_a_text_repeating_the_current_words_is_not_re_asked_when_exploring():
    """SmolLM2 often answers a keyword list with the same list plus a comma; a re-ask got the
    same again (2 wasted calls a step), so the step explores at once instead."""
    problem = Problem([Variable("keywords", "text", "hello, thanks")], feedback=["'win a prize' is spam"])
    llm = Scripted([reply({"keywords": "hello, thanks,"})])
    result = TextOptimizer(llm, n_candidates=1, max_reasks=2).step(problem)
    assert len(llm.kwargs) == 1 and result.candidates[0].repeated
    assert result.explored and result.suggestion["keywords"] != "hello, thanks"
    llm = Scripted([reply({"keywords": "hello, thanks,"})])
    TextOptimizer(llm, n_candidates=1, max_reasks=2, explore=False).step(problem)
    assert len(llm.kwargs) == 3  # without exploration, re-asks are the only way on
