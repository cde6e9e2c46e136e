"""Prompt content and budget on graphs of 10, 1k and 10k nodes; linear build time."""

from __future__ import annotations

import time

import pytest
from textopt_helpers import chain_graph, fanout_graph

import tracekit as tk
from solvers.text import (
    Call,
    MemoryEntry,
    Problem,
    Value,
    Variable,
    build_prompt,
    estimate_tokens,
    rank_calls,
    shorten,
)
from tracekit.routes.text import build_problem


def chain_prompt(n: int, budget: int = 4000):
    out, prefix, step = chain_graph(n)
    tk.backward(out, "the total should be 100")
    problem = build_problem([prefix, step], [prefix.feedback[-1]], {id(prefix): "prefix", id(step): "step"})
    return problem, build_prompt(problem, budget)


@pytest.mark.parametrize("n", [10, 1000, 10_000])
def test_chain_prompt_shows_what_matters_within_budget(n):
    problem, prompt = chain_prompt(n)
    text = prompt.text
    assert prompt.tokens <= 4000 and estimate_tokens(text) == prompt.tokens
    assert len(problem.calls) == n + 1
    # the variables, with kinds and limits, the feedback, the output and the docs
    assert "- prefix (text)" in text and "text put before the total" in text
    assert "- step (numeric; integer; between 0 and 100)" in text
    assert "the total should be 100" in text
    assert f"'Total: {2 * n}'" in text
    assert "accumulate: Add the step to the running total." in text
    assert "render(prefix=prefix, total=" in text
    # the reply's example holds the current values (to be edited, nothing to fill in)
    assert '{"suggestion": {"prefix": "Total:", "step": 2}' in text
    if n == 10:
        assert prompt.stats["calls_left_out"] == 0 and "Left out" not in text
        assert text.count("accumulate(total=") == 10
    else:
        left = prompt.stats["calls_left_out"]
        assert left > n - 50
        assert f"{left} of {n + 1} calls" in text
        assert "x accumulate(...)" in text  # the collapsed run is counted
        assert len(text) < 20_000


@pytest.mark.parametrize("n", [10, 1000, 10_000])
def test_fanout_prompt_within_budget(n):
    out, w = fanout_graph(n)
    tk.backward(out, "make the total smaller")
    problem = build_problem([w], [w.feedback[-1]], {id(w): "w"})
    prompt = build_prompt(problem, 1500)
    assert prompt.tokens <= 1500
    assert "w * const" in prompt.text and "make the total smaller" in prompt.text
    assert "# Outputs" in prompt.text


def test_budget_is_respected_at_many_sizes():
    problem, _ = chain_prompt(1000)
    for budget in (300, 500, 1000, 2000, 8000):
        prompt = build_prompt(problem, budget)
        assert prompt.tokens <= budget, budget
        assert '"suggestion"' in prompt.text  # the reply format always survives
    with pytest.raises(ValueError):
        build_prompt(problem, 100)


def test_build_time_is_linear():
    timings = {}
    for n in (1000, 10_000):
        out, w = fanout_graph(n)  # Trace's worst case: one parameter feeds every op
        tk.backward(out, "smaller")
        best = float("inf")
        for _ in range(3):  # best of three: a loaded machine only slows single runs
            start = time.perf_counter()
            build_prompt(build_problem([w], [w.feedback[-1]], {id(w): "w"}))
            best = min(best, time.perf_counter() - start)
        timings[n] = best
    # a complexity guard, not a speed target (those live in benchmarks/text_optimizer.py):
    # 10x the graph must cost about 10x, far from the 100x of a quadratic build
    assert timings[10_000] / timings[1000] < 40


def test_long_values_are_shortened_with_a_marker():
    long_text = "word " * 5000
    problem = Problem(
        variables=[Variable("prompt", "text", long_text)],
        calls=[Call("out", "out = ask(prompt=prompt, doc=doc)", "ask", "Ask.", ["prompt", "doc"])],
        values=[Value("doc", "x" * 50_000, "input"), Value("out", list(range(100_000)), "output")],
        feedback=["too long " * 2000],
    )
    prompt = build_prompt(problem, 1000)
    assert prompt.tokens <= 1000
    assert "chars cut]" in prompt.text and "items]" in prompt.text


def test_shorten():
    assert shorten("abc", 10) == "'abc'"
    assert shorten("abc", 10, raw_str=True) == "abc"
    cut = shorten("a" * 1000, 100, raw_str=True)
    assert len(cut) <= 100 and "[" in cut and "chars cut]" in cut
    big = shorten(list(range(10**6)), 80)
    assert len(big) <= 80 and "items]" in big
    assert shorten({"k": "v" * 1000}, 60).startswith("{'k':")

    class Bad:
        def __repr__(self):
            raise RuntimeError("no")
    assert "repr failed" in shorten(Bad())


def test_rank_calls_puts_errors_and_near_calls_first():
    calls = [Call(f"v{i}", f"v{i} = f(x=v{i - 1})", "f", "", [f"v{i - 1}"]) for i in range(1, 30)]
    calls[14].error = "(ValueError) boom"
    problem = Problem([Variable("v0", "numeric", 1.0)], calls, [Value("v29", 1, "output")])
    order = rank_calls(problem, collapse=False)
    assert order[0] == 14
    assert set(order[1:3]) == {0, 28}  # next to the variable and next to the output


def test_error_calls_are_shown():
    problem = Problem([Variable("p", "text", "x")],
                      [Call("e", "e = parse(text=p)", "parse", "", ["p"], error="(KeyError) 'a' at line 2")],
                      [Value("e", "err", "output")], ["it failed"])
    assert "# raised (KeyError) 'a' at line 2" in build_prompt(problem).text


def test_memory_is_shown_newest_first_within_budget():
    mem = [MemoryEntry({"x": i}, f"loss {i}") for i in range(50)]
    problem = Problem([Variable("x", "numeric", 3)], feedback=["f"], memory=mem)
    text = build_prompt(problem, memory_size=3).text
    assert "x=49 -> loss 49" in text and "x=47 -> loss 47" in text and "x=46" not in text
    assert text.index("x=49") < text.index("x=48")
    assert "Earlier attempts" not in build_prompt(problem, memory_size=0).text


def test_code_variable_shows_source_and_signature():
    src = "def parse(text):\n    return text.split(':')[0]"
    problem = Problem([Variable("parse", "code", src, signature="def parse(text):")], feedback=["wrong"])
    text = build_prompt(problem).text
    assert "keep the line `def parse(text):` unchanged" in text
    assert "        return text.split(':')[0]" in text


def test_system_message_option():
    problem = Problem([Variable("x", "numeric", 1.0)], feedback=["f"])
    prompt = build_prompt(problem, system=True)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert [m["role"] for m in build_prompt(problem).messages] == ["user"]


def test_adapter_problem_uses_optimizer_names_and_labels():
    a = tk.param("hello", name="greeting")
    b = tk.param("hello", name="greeting")  # same user name: the optimizer makes it unique

    @tk.bundle(trainable=True)
    def join(x, y):
        """Join two words."""
        return x + " " + y

    out = join(a, b)
    opt = tk.Optimizer([a, b, join.parameters()[0]], llm=lambda m, **k: "{}")
    opt.zero_feedback()
    opt.backward(out, "say it twice")
    names = {id(p): opt.names[id(p)] for p in opt.params}
    problem = build_problem(opt.params, [a.feedback[-1]], names)
    assert [v.name for v in problem.variables] == ["greeting", "greeting_2", "join"]
    assert problem.calls[0].code.startswith("join_") and "x=greeting, y=greeting_2" in problem.calls[0].code
    assert "runs the code in variable join" in problem.calls[0].code
    assert problem.calls[0].doc == "Join two words."
    assert any(v.role == "output" and v.value == "hello hello" for v in problem.values)


def test_a_small_budget_keeps_the_variables_whole_and_the_first_failures():
    """At a budget too small for everything (the embedded model's), the variables are never
    cut, the feedback keeps its first whole lines (failures come first) with a count of the
    rest, and a graph squeezed to a few counts is left out."""
    variables = [Variable(name="cue_words", value="urgent, asap, down, crash", kind="text",
                          description="comma-separated words that signal an urgent ticket"),
                 Variable(name="match", value="word", kind="categorical", choices=["word", "prefix", "substring"])]
    lines = [f"- example {i}: input 'Server down since this morning, our whole team is blocked'; "
             f"output 'routine'; score {0 if i < 3 else 1}" for i in range(12)]
    calls = [Call(code=f"d_{i} = decide(density=c_{i}, threshold=threshold)", function="decide",
                  inputs=[f"c_{i}", "threshold"], output=f"d_{i}") for i in range(40)]
    problem = Problem(variables=variables, feedback=["Minibatch of 12 examples:\n" + "\n".join(lines)],
                      calls=calls)
    for budget in (300, 450, 700):
        text = build_prompt(problem, budget).text
        assert estimate_tokens(text) <= budget
        assert "current value: 'urgent, asap, down, crash'" in text and "one of \"word\"" in text
        assert lines[0] in text and "chars cut" not in text
        assert "more lines left out]" in text
        assert "# Code" not in text or "d_0 = decide(" in text or "d_39 = decide(" in text
    wide = build_prompt(problem, 4000).text
    assert all(line in wide for line in lines)  # everything fits at the default budget


def test_names_are_numbered_per_prompt_so_steps_share_the_prompts_opening():
    """Unnamed nodes get their prefix numbered within the prompt (`const1`, `add_2`), not
    the process-wide counter: two steps over graphs of the same shape show the same code
    lines (a server with prefix caching reuses them), and every label stays unique."""
    def code_section(run: int) -> str:
        x = tk.param(2, name="x", bounds=(0, 10))

        @tk.bundle()
        def scale(value, factor):
            """Multiply."""
            return value * factor

        outs = [scale(tk.node(run + i), x) for i in range(3)]
        for out in outs:
            tk.backward(out, "larger")
        problem = build_problem([x], x.feedback, {id(x): "x"})
        labels = [v.name for v in problem.values]
        assert len(problem.calls) == 3 and len(labels) == len(set(labels)) == 6
        text = build_prompt(problem).text
        return text[text.index("# Code"):text.index("# Documentation")]

    first, second = code_section(0), code_section(100)
    assert first == second and "scale_3 = scale(value=const3, factor=x)" in first
