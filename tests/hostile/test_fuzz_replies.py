"""Generated LLM replies against text, code, numeric, categorical and tensor parameters in
one optimizer: valid, invalid, cut at any position, wrong types, huge, unicode edge cases,
extra keys. After every step every parameter holds a value its own validation accepts, and
a changed parameter got its value from a complete reply.

Run long with HYPOTHESIS_PROFILE=long (see docs/guarantees.md).
"""

from __future__ import annotations

import json
import math

import torch
from hypothesis import given
from hypothesis import strategies as st

import tracekit as tk

NAMES = ("prompt", "act", "rate", "mode", "weights")
CHOICES = ["fast", "careful", "balanced"]


def make_params():
    return {
        "prompt": tk.param("Answer briefly.", name="prompt", description="the instruction"),
        "act": tk.param("def act(x):\n    return x", kind="code", name="act"),
        "rate": tk.param(0.5, name="rate", bounds=(0.0, 1.0)),
        "mode": tk.param("fast", name="mode", choices=CHOICES),
        "weights": tk.param(torch.tensor([0.1, 0.2], dtype=torch.float64), name="weights",
                            bounds=(-1.0, 1.0)),
    }


@tk.bundle()
def run(prompt, act, rate, mode, weights):
    """The workflow: every parameter reaches the output."""
    return f"{prompt} | {rate} | {mode} | {weights}"


# --- generated values -------------------------------------------------------------------
odd_text = st.sampled_from(["\u202e reversed", "zero\u200bwidth", "nul\x00byte", "emoji \U0001f600",
                            "lone \ud800 surrogate", "tab\tand\nnewline", "\\", '"quoted"',
                            "}{][", "x" * 300_000, "", "   ", "<new text>", "..."])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
valid = {
    "prompt": st.text(min_size=1, max_size=80).filter(lambda s: s.strip()),
    "act": st.integers(-99, 99).map(lambda k: f"def act(x):\n    return x + {k}"),
    "rate": st.floats(0.0, 1.0),
    "mode": st.sampled_from(CHOICES + ["FAST", " careful "]),
    "weights": st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=2),
}
hostile = {
    "prompt": st.one_of(odd_text, json_values),
    "act": st.one_of(st.sampled_from(["def act(x):\n    ret", "def act(x, y):\n    return x",
                                      "def other(x):\n    return x", "import os\ndef act(x):\n    return os",
                                      "def act(x):\n    return eval('x')", "lambda x: x",
                                      "def act(x):\n  return (", "x" * 100_000]), json_values),
    "rate": st.one_of(st.sampled_from([1.5, -0.1, "0.7", "NaN", "1e400", True, None, [0.5]]), json_values),
    "mode": st.one_of(st.sampled_from(["slow", "", "fast!", 1, ["fast"]]), json_values),
    "weights": st.one_of(st.sampled_from([[0.1], [0.1, 0.2, 0.3], [2.0, 0.0], ["a", "b"],
                                          [[0.1], [0.2]], "[0.3, 0.4]", [1e400, 0]]), json_values),
}


@st.composite
def replies(draw):
    """(reply text, complete?, values a complete reply proposes)."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
    values = {n: draw(st.one_of(valid[n], hostile[n])) for n in names}
    suggestion = dict(values)
    if draw(st.booleans()):
        suggestion[draw(st.text(max_size=8))] = draw(json_values)  # an extra, unknown key
    obj = {"reasoning": draw(st.text(max_size=30)), "suggestion": suggestion}
    if draw(st.booleans()):
        obj[draw(st.text(max_size=5))] = draw(json_values)  # an extra top-level key
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    shape = draw(st.sampled_from(["whole", "cut", "cut", "fenced", "prose", "garbage", "nested"]))
    if shape == "cut":
        return text[:draw(st.integers(0, len(text) - 1))], False, {}
    if shape == "fenced":
        text = f"```json\n{text}\n```"
    elif shape == "prose":
        text = f"Here is my answer: {text} Hope it helps."
    elif shape == "garbage":
        return draw(st.one_of(st.text(max_size=50), st.just("{" * 500), st.just("[" * 500 + "1"))), False, {}
    elif shape == "nested":
        text = json.dumps({"suggestion": json.dumps(suggestion)})
    return text, True, values


def same(p, proposed, held) -> bool:
    """`held` is what validating `proposed` could give for parameter `p`."""
    if p.kind == "code":
        return isinstance(proposed, str) and held.startswith("def act(x):")
    if p.kind == "categorical":  # the choice it names, up to case and surrounding blanks
        return isinstance(proposed, str) and proposed.strip().lower() == held
    if p.is_tensor:
        try:
            want = torch.as_tensor(json.loads(proposed) if isinstance(proposed, str) else proposed,
                                   dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return False
        return want.shape == held.shape and torch.allclose(want.clamp(-1, 1), held)
    if p.kind == "numeric":
        try:
            return math.isclose(float(proposed), float(held), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return proposed == held


@given(steps=st.lists(st.lists(replies(), min_size=1, max_size=3), min_size=1, max_size=2),
       structured=st.booleans())
def test_every_parameter_stays_valid_and_only_complete_replies_are_applied(steps, structured):
    params = make_params()
    script: list = []
    sent: list = []

    def llm(messages):
        reply = script.pop(0) if script else sent[-1]
        sent.append(reply)
        return reply[0]

    opt = tk.Optimizer(list(params.values()), llm=llm, max_reasks=1, use_structured=structured)
    for step_replies in steps:
        script[:] = list(step_replies)
        sent.clear()
        before = {n: (p.raw.clone() if p.is_tensor else p.raw) for n, p in params.items()}
        opt.zero_feedback()
        opt.backward(run(*params.values()), "make it better")
        report = opt.step()
        for name, p in params.items():
            held = p.raw
            p.validate(held)  # its own validation accepts what it holds
            if isinstance(held, str):
                held.encode("utf-8")  # storable: no lone surrogate
            unchanged = torch.equal(held, before[name]) if p.is_tensor else held == before[name]
            if unchanged:
                continue
            row = report[name]
            if row.reason.startswith("explored:"):  # the step's own proposal, when the model
                assert name in row.info["explored"]  # only repeated itself: said so, and checked
                assert not any(same(p, r[2].get(name), held) for r in sent if r[1] and name in r[2])
                continue
            sources = [r for r in sent if r[1] and name in r[2] and same(p, r[2][name], held)]
            assert sources, (name, held, [r[0][:200] for r in sent], str(report))
