"""Memory across steps and exploration at the defaults (`tk.Optimizer(params)`), with
scripted LLMs that behave like the tiny embedded model: they alternate between two
choices, fixate on one number, or echo the instructions' placeholder."""

from __future__ import annotations

import json
import random

import pytest
from textopt_helpers import Scripted, reply

import tracekit as tk
from solvers.text import Problem, TextOptimizer, Variable
from solvers.text.explore import explore
from solvers.text.memory import Memory


def op_task():
    op = tk.param("add", name="op", choices=["add", "sub", "mul"], description="the operation to apply")

    @tk.bundle()
    def apply(op, a, b):
        """Apply the operation named op to a and b."""
        return {"add": a + b, "sub": a - b, "mul": a * b}[op]

    def feedback(opt):
        z = apply(op, 6, 7)
        opt.zero_feedback()
        opt.backward(z, f"op(6, 7) = {z.data}, but it should be 42")

    return op, feedback


def test_a_categorical_told_wrong_tries_the_third_choice():
    """The model prefers add and sub and swaps them each step; the old optimizer alternated
    between the two for ever. Tried choices are refused, so the third one comes."""
    op, feedback = op_task()
    swap = lambda messages, **kw: reply({"op": "sub" if "current value: 'add'" in messages[-1]["content"] else "add"})  # noqa: E731
    opt = tk.Optimizer([op], llm=Scripted([swap]))
    seen = [op.data]
    for _ in range(3):
        feedback(opt)
        report = opt.step()
        seen.append(op.data)
        if op.data == "mul":
            break
    assert "mul" in seen, seen
    assert len(seen) == len(set(seen)), f"a tried choice was repeated: {seen}"
    assert "explored: an untried choice" in report["op"].reason or "LLM suggestion" in report["op"].reason


def test_tried_choices_leave_the_schema_and_the_prompt_says_what_is_untried():
    op, feedback = op_task()
    prompts = []

    def llm(messages, **kwargs):
        prompts.append(messages[-1]["content"])
        return reply({"op": "sub"})
    opt = tk.Optimizer([op], llm=tk.llm.as_backend(llm))  # structured: the schema is sent
    feedback(opt)
    opt.step()
    assert op.data == "sub"
    feedback(opt)
    opt.step()  # sub is current, add was tried: mul is the only choice the schema allows
    assert '"const":"mul"' in prompts[-1].replace(" ", "")  # a one-value enum
    assert 'Not tried yet: op = "mul"' in prompts[-1]
    assert "op='add' -> op(6, 7) = 13, but it should be 42" in prompts[-1]


def test_a_number_keeps_moving_when_the_model_repeats_itself():
    """The model always answers 1.0: the old optimizer moved once and then refused every
    reply (equal to the current value). Now each stuck step explores within the bounds."""
    x = tk.param(3.0, name="x", bounds=(-10.0, 10.0), description="a number")
    opt = tk.Optimizer([x], llm=Scripted([reply({"x": 1.0})]))
    values = [x.data]
    for _ in range(5):
        y = x * x
        opt.zero_feedback()
        opt.backward(y, f"y = {y.data}; not good yet")  # no target, no direction: the text route
        report = opt.step()
        values.append(x.data)
    assert len(set(values)) == len(values), values  # moved every step, never back
    assert all(-10 <= v <= 10 and isinstance(v, float) for v in values)
    assert report["x"].changed and report["x"].reason.startswith("explored: the current value perturbed")
    assert report["x"].info["explored"] == {"x": "the current value perturbed at random"}


@pytest.mark.parametrize("text", ["<new text> free, prize", "<NEW TEXT>, win", "[new text] prize",
                                  "  <value> cash", "<one short sentence> and more"])
def test_placeholder_prefixed_values_are_refused(text):
    keywords = tk.param("hello, thanks", name="keywords", description="comma-separated words")
    opt = tk.Optimizer([keywords], llm=Scripted([reply({"keywords": text})]), max_reasks=0)
    opt.zero_feedback()
    opt.backward(keywords + "", "find spam words")
    report = opt.step()
    # the placeholder is never applied: a reply pasted from the prompt leaves the step stuck,
    # so it explores (a recombination of words seen)
    assert text not in keywords.data and "new text" not in keywords.data.lower()
    assert report["keywords"].reason.startswith("explored") and "placeholder" in report["keywords"].reason


def test_a_text_copying_a_feedback_line_is_refused():
    line = "message 'lunch at noon?' was labeled spam: wrong, expected ham"
    keywords = tk.param("hello, thanks", name="keywords")
    opt = tk.Optimizer([keywords], llm=Scripted([reply({"keywords": f"prize, {line}"})]), max_reasks=0)
    opt.zero_feedback()
    opt.backward(keywords + "", line)
    report = opt.step()
    # the copy is never applied; a reply that only pastes the prompt back leaves the step
    # stuck, so it explores instead (a recombination of words seen)
    assert line not in keywords.data and keywords.data != "hello, thanks"
    reason = report["keywords"].reason
    assert reason.startswith("explored: a recombination") and "cannot be used" in reason
    assert "copies the feedback" in reason


def test_an_unusable_reply_is_not_reasked_the_step_explores():
    """A reply that pastes the prompt back costs one call: a small model's re-ask pastes
    again, so the step explores at once (no call). Without exploration it is re-asked."""
    line = "message 'lunch at noon?' was labeled spam: wrong, expected ham"
    for explores, calls in ((True, 1), (False, 3)):
        keywords = tk.param("hello, thanks", name="keywords")
        llm = Scripted([reply({"keywords": f"prize, {line}"})])
        opt = tk.Optimizer([keywords], llm=llm, explore=explores)  # max_reasks=2 by default
        opt.zero_feedback()
        opt.backward(keywords + "", line)
        report = opt.step()
        assert len(llm.prompts) == calls and line not in keywords.data
        assert report["keywords"].reason.startswith("explored" if explores else "kept")


def test_a_text_pasting_the_description_or_an_input_is_refused():
    """The tiny model's keyword lists: the description pasted back, or a message of the
    trace with a few words around it. Neither is applied; the step explores."""
    @tk.bundle()
    def classify(message, keywords):
        """Spam when the message holds a keyword."""
        return "spam" if any(k.strip() in message for k in keywords.split(",")) else "ham"

    description = "comma-separated words; a message containing any of them is spam"
    for junk in ("{'" + description + "'},", "the meeting moved to 3pm, 'the meeting moved to 3pm' is correct",
                 "[16 chars cut]...,"):
        keywords = tk.param("hello, thanks", name="keywords", description=description)
        opt = tk.Optimizer([keywords], llm=Scripted([reply({"keywords": junk})]), max_reasks=0, seed=1)
        opt.zero_feedback()
        opt.backward(classify("the meeting moved to 3pm", keywords), "labeled ham: correct")
        report = opt.step()
        assert keywords.data != junk and report["keywords"].reason.startswith("explored: a recombination")
        assert any(f"copies {what}" in report["keywords"].reason for what in
                   ("the description", "an input of the trace", "the prompt's mark")) \
            or "the reply's JSON structure" in report["keywords"].reason
        # a list of single words recombines words: the trace's words join the pool
        assert all(" " not in w.strip() for w in keywords.data.split(","))


def test_a_long_prompt_quoting_one_example_is_not_a_copy():
    prompt = tk.param("Answer briefly.", name="prompt")
    longer = ("Classify each message as spam or ham. Spam offers prizes, cash or gifts; ham is ordinary "
              "talk between colleagues. For example, 'the meeting moved to 3pm' is ham.")

    @tk.bundle()
    def answer(message, prompt):
        """Ask with the prompt."""
        return prompt + message

    opt = tk.Optimizer([prompt], llm=Scripted([reply({"prompt": longer})]), max_reasks=0)
    opt.zero_feedback()
    opt.backward(answer("the meeting moved to 3pm", prompt), "be more specific")
    opt.step()
    assert prompt.data == longer


def test_a_bad_reply_still_keeps_the_value():
    """Exploration is for a stuck step, not a failed one: junk replies keep the value."""
    x = tk.param(3.0, name="x", bounds=(-10.0, 10.0))
    opt = tk.Optimizer([x], llm=Scripted(["no json here"]))
    opt.zero_feedback()
    opt.backward(x * 2, "not what was wanted")  # no direction: the text route
    report = opt.step()
    assert x.data == 3.0 and not report["x"].changed and report["x"].info["explored"] == {}


def test_several_parameters_never_repeat_a_tried_combination():
    a = Variable("a", "categorical", "p", choices=["p", "q"])
    b = Variable("b", "categorical", "r", choices=["r", "s"])
    llm = Scripted([reply({"a": "q", "b": "s"})])
    opt = TextOptimizer(llm, max_reasks=1)
    first = opt.step(Problem([a, b], feedback=["wrong"]))
    assert first.suggestion == {"a": "q", "b": "s"}
    second = opt.step(Problem([Variable("a", "categorical", "q", choices=["p", "q"]),
                               Variable("b", "categorical", "s", choices=["r", "s"])], feedback=["wrong"]))
    # the model repeats the current values; every single value was tried, so the step
    # explores a combination that was not: (p, s) or (q, r)
    assert second.explored and {**{"a": "q", "b": "s"}, **second.suggestion} not in ({"a": "p", "b": "r"},
                                                                                     {"a": "q", "b": "s"})


def test_memory_survives_the_optimizer_state_and_keeps_refusing_tried_values():
    op, feedback = op_task()
    opt = tk.Optimizer([op], llm=Scripted([reply({"op": "sub"})]))
    feedback(opt)
    opt.step()
    state = json.loads(json.dumps(opt.state_dict(), allow_nan=False))  # plain JSON
    memory = state["solvers"]["0:text"]["memory"]
    assert [r["value"] for r in memory["values"]["op"]] == ["add"]
    assert "it should be 42" in memory["values"]["op"][0]["feedback"]
    op.data = "add"  # back to the start; a fresh optimizer from the saved state
    opt2 = tk.Optimizer([op], llm=Scripted([reply({"op": "add"}), reply({"op": "sub"})]), max_reasks=0)
    opt2.load_state_dict(state)
    op.data = "sub"
    feedback(opt2)
    report = opt2.step()  # the model wants add back: tried, refused; the step explores mul
    assert op.data == "mul", report["op"].reason


def test_memory_is_bounded_and_moves_a_value_tried_again_to_the_end():
    memory = Memory(max_values=3, max_assignments=3)
    for step, value in enumerate(["a", "b", "c", "a", "d"]):
        memory.record({"x": value}, step, f"feedback {step}")
    assert memory.tried("x") == ["c", "a", "d"]
    assert memory.record_of("x", "A ") is not None  # compared as the grammar compares
    memory.record({"x": "d"}, 4, loss=float("nan"))
    assert memory.record_of("x", "d").loss is None and "feedback 4" in memory.record_of("x", "d").feedback
    fresh = Memory()
    fresh.load_state_dict(json.loads(json.dumps(memory.state_dict(), allow_nan=False)))
    assert fresh.tried("x") == memory.tried("x") and len(fresh) == len(memory)


@pytest.mark.parametrize("variable", [
    Variable("k", "categorical", "a", choices=["a", "b", "c"]),
    Variable("n", "numeric", 3, bounds=(0, 10), value_type="int"),
    Variable("n", "numeric", 500, bounds=(0, 1000), value_type="int"),
    Variable("f", "numeric", 0.5, bounds=(0.0, 1.0)),
    Variable("f", "numeric", 2.0),
    Variable("w", "numeric", [[1.0, 2.0], [3.0, 4.0]], bounds=(0.0, 5.0), value_type="Tensor"),
    Variable("t", "text", "hello, thanks"),
    Variable("t", "text", ["alpha", "beta"], value_type="list"),
])
def test_exploration_gives_new_accepted_values_for_every_kind(variable):
    rng = random.Random(0)
    checked = []

    def check(value):
        checked.append(value)
        if variable.bounds is not None and variable.kind == "numeric" and not isinstance(value, list):
            assert variable.bounds[0] <= value <= variable.bounds[1]
        return value
    variable.check = check
    tried: list = []
    for _ in range(2):
        found = explore(variable, tried, rng, texts=["win a free prize now"])
        assert found is not None
        value, how = found
        assert value != variable.value and value not in tried and value in checked and how
        tried.append(value)


def test_exploration_respects_the_check_and_skips_code():
    rng = random.Random(0)
    only_c = Variable("k", "categorical", "a", choices=["a", "b", "c"],
                      check=lambda v: v if v == "c" else (_ for _ in ()).throw(ValueError("no")))
    assert explore(only_c, [], rng)[0] == "c"
    code = Variable("f", "code", "def f(x):\n    return x\n")
    assert explore(code, [], rng) is None
    every = Variable("k", "categorical", "a", choices=["a", "b", "c"])
    assert explore(every, ["b", "c"], rng)[0] == "b"  # all tried: the least recently tried one


def test_a_large_value_is_remembered_by_a_digest_not_kept_whole():
    memory = Memory()
    big = [float(i) for i in range(50_000)]
    memory.record({"w": big}, 0, "too big")
    assert memory.record_of("w", list(big)) is not None  # still recognised when tried again
    kept = memory.tried("w")[0]
    assert isinstance(kept, str) and "too large to remember" in kept
    assert len(json.dumps(memory.state_dict())) < 2000
    fresh = Memory()
    fresh.load_state_dict(json.loads(json.dumps(memory.state_dict())))
    assert fresh.record_of("w", list(big)) is not None  # recognised after a reload too


def test_the_embedded_model_gets_a_smaller_prompt_budget_by_default():
    """A prompt token costs the embedded model ~8 ms on a core, so its default budget is 900
    tokens (the ticket task measured as good as 4000, at about half the step time); any
    other backend keeps 4000, and `budget=` overrides both. No model call is made here."""
    from tracekit.llm import EmbeddedLLM
    from tracekit.routes.text import EMBEDDED_BUDGET

    def estimate(llm, **options):
        keywords = tk.param("hello, thanks", name="keywords")
        if isinstance(llm, EmbeddedLLM):  # answer without starting the server
            llm.structured = lambda messages, model, **kw: model.model_validate_json(reply({"keywords": "win"}))
        opt = tk.Optimizer([keywords], llm=llm, **options)
        opt.zero_feedback()
        opt.backward(keywords + "", "\n".join(f"message {i} 'claim your prize number {i}' was labeled ham: "
                                              f"wrong, expected spam" for i in range(200)))
        return opt.step()["keywords"].info["prompt_tokens_estimate"]

    embedded = estimate(EmbeddedLLM(cache=False))
    assert EMBEDDED_BUDGET == 900 and embedded <= EMBEDDED_BUDGET
    assert estimate(Scripted([reply({"keywords": "win"})])) > 2000
    assert estimate(EmbeddedLLM(cache=False), budget=4000) > 2000
