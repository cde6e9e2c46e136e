"""End to end on the real embedded model (SmolLM2-135M on llama.cpp).

SmolLM2-135M ignores system prompts, so the parameters here are consumed by code: a
keyword list (a prompt-like text parameter) and a parsing function (a code parameter).
The model is weak; the tests check what the optimizer guarantees with it: replies are
read, suggestions are valid, parameters change from feedback, and with an objective the
loss never gets worse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit as tk

pytestmark = pytest.mark.real_llm
ROOT = Path(__file__).resolve().parents[2]

MESSAGES = [("win a free prize now", "spam"), ("claim your cash reward", "spam"),
            ("lunch at noon?", "ham"), ("the meeting moved to 3pm", "ham")]


@tk.bundle()
def classify(message, keywords):
    """Label the message spam if it contains any of the comma-separated keywords, else ham."""
    words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
    return "spam" if any(w in message.lower() for w in words) else "ham"


def spam_errors(keywords: str) -> int:
    with tk.no_trace():
        return sum(classify(m, keywords) != label for m, label in MESSAGES)


def test_text_parameter_updated_from_feedback(real_llm):
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")
    opt = tk.Optimizer([keywords], llm=real_llm, max_reasks=2)
    changed = False
    for _ in range(3):
        opt.zero_feedback()
        for message, label in MESSAGES:
            out = classify(message, keywords)
            opt.backward(out, f"{message!r} was labeled {out.data}; expected {label}")
        report = opt.step()
        assert report.llm_calls >= 1 and report.tokens > 0  # the real backend was used and counted
        if report.changed:
            changed = True
            break
    assert changed, f"no valid suggestion in 3 steps: {report}"
    assert isinstance(keywords.data, str) and keywords.data.strip()
    assert keywords.data != "hello, thanks"


def test_every_reply_is_a_new_valid_text_value(real_llm):
    """With the exclusion pattern (on by default for the embedded model) the grammar cannot
    produce the current value, a tried value, a blank value or a placeholder."""
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")
    opt = tk.Optimizer([{"params": [keywords], "objective": lambda: spam_errors(keywords.data)}],
                       llm=real_llm, n_candidates=3, max_reasks=1)
    for _ in range(2):
        opt.zero_feedback()
        for message, label in MESSAGES:
            out = classify(message, keywords)
            opt.backward(out, f"{message!r} was labeled {out.data}; expected {label}")
        info = opt.step()["keywords"].info
        # every candidate is a new valid value, unless the model's replies were refused as
        # unusable (a message of the trace pasted as a "keyword", a sentence for a word list)
        unusable = [p for p in info["reply_problems"] if p.endswith("instead of a new value for the variable")]
        # or the current words with other punctuation ("hello, thanks."): the grammar leaves
        # out the exact value, not every spelling of it; the reply check refuses those
        same_words = [p for p in info["reply_problems"] if "the same words as" in p]
        assert info["candidates"] >= 3 and (info["valid_candidates"] >= 3 or unusable or same_words), \
            info["reply_problems"]
        # what the pattern guarantees: no call is spent on a copy or a blank value
        # (a rare other problem, e.g. a reply cut at the token cap, may still be re-asked)
        assert not [p for p in info["reply_problems"] if "equals the current" in p or "empty" in p], info
    solver = next(iter(opt._solvers.values()))._optimizer
    tried = solver.tried["keywords"]
    # the start value got feedback (so it counts as tried, once); each value tried was new
    assert tried.count("hello, thanks") == 1 and len({str(t) for t in tried}) == len(tried) >= 2


def test_code_parameter_updated_from_feedback(real_llm):
    @tk.bundle(trainable=True)
    def parse(text):
        """Return the number after the colon in text, as an int."""
        return text.split(":")[0]

    code = parse.parameters()[0]
    opt = tk.Optimizer([code], llm=real_llm, max_reasks=1, n_candidates=2)
    original = code.data
    changed = False
    for _ in range(2):
        out = parse("total: 12")
        opt.zero_feedback()
        opt.backward(out, f"parse returned {out.data!r}; it should return 12")
        report = opt.step()
        if report.changed:
            changed = True
            break
    assert changed, f"no valid code in 2 steps: {report}"
    assert code.data != original and code.data.lstrip().startswith("def parse(text)")
    compile(code.data, "<new>", "exec")  # the accepted code compiles; the bundle runs it
    result = parse("total: 12")
    assert isinstance(result, tk.Node)  # ran the new code (a raise would be an exception node)


def test_candidate_search_never_makes_the_objective_worse(real_llm):
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")
    opt = tk.Optimizer([{"params": [keywords], "objective": lambda: spam_errors(keywords.data)}],
                       llm=real_llm, n_candidates=2, max_reasks=1)
    losses = [spam_errors(keywords.data)]
    valid = 0
    for _ in range(1):
        opt.zero_feedback()
        for message, label in MESSAGES:
            out = classify(message, keywords)
            opt.backward(out, f"{message!r} was labeled {out.data}; expected {label}")
        report = opt.step()
        info = report["keywords"].info
        # a usable reply, or (every reply refused as unusable) a scored exploratory proposal
        valid += info["valid_candidates"] + info.get("exploratory_candidates", 0)
        losses.append(spam_errors(keywords.data))
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses
    assert valid >= 1, info


def test_example_trainable_agent_quick_runs(real_llm):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "trainable_agent.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["final_errors"] <= summary["start_errors"]
    assert "step 1:" in done.stdout


def test_a_categorical_reaches_the_untried_right_choice_at_defaults(real_llm):
    """Told "wrong" each step, the optimizer at its defaults never repeats a tried choice, so
    the right one (the third) is reached within two steps whatever the model prefers."""
    op = tk.param("add", name="op", choices=["add", "sub", "mul"], description="the operation to apply")

    @tk.bundle()
    def apply(op, a, b):
        """Apply the operation named op to a and b."""
        return {"add": a + b, "sub": a - b, "mul": a * b}[op]

    opt = tk.Optimizer([op], llm=real_llm)
    seen = [op.data]
    for _ in range(2):
        z = apply(op, 6, 7)
        if z.data == 42:
            break
        opt.zero_feedback()
        opt.backward(z, f"op(6, 7) = {z.data}, but it should be 42")
        report = opt.step()
        assert report.llm_calls >= 1
        seen.append(op.data)
    assert op.data == "mul", seen
    assert len(seen) == len(set(seen)), seen


def test_a_number_keeps_moving_at_defaults(real_llm):
    """The tiny model tends to repeat one number; each step still moves it to a value not
    tried, within the bounds (from the model or, when it only repeats, by exploration)."""
    x = tk.param(3.0, name="x", bounds=(-10.0, 10.0), description="a number")
    opt = tk.Optimizer([x], llm=real_llm)
    values = [x.data]
    for _ in range(3):
        y = x * x
        opt.zero_feedback()
        opt.backward(y, f"y = {y.data}, but y should be 16")
        report = opt.step()
        values.append(x.data)
        assert report["x"].changed, report["x"].reason
    assert len(set(values)) == len(values) and all(-10 <= v <= 10 for v in values), values
