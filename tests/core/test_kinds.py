"""One definition of a valid value per kind: the same value gets the same verdict through
assignment, `Module.load_state_dict`, the text solver's reply path and the step's apply."""

from __future__ import annotations

import json
import math

import pytest
import torch

import tracekit as tk
from tracekit import kinds
from tracekit import seam as registry
from tracekit.seam import ParamUpdate

PARSE_SRC = "def parse(text):\n    return text.split(':')[0]"
NAN = float("nan")


def _float():
    return tk.param(0.7, name="p", bounds=(0.0, 2.0))


def _int():
    return tk.param(3, name="p", bounds=(0, 10))


def _tensor():
    return tk.param(torch.zeros(3), name="p", bounds=(-1.0, 1.0))


def _int_tensor():
    return tk.param(torch.tensor([1, 2]), name="p")


def _choice():
    return tk.param("bm25", name="p", choices=["bm25", "dense"])


def _number_choice():
    return tk.param(1, name="p", choices=[1, 2])


def _text():
    return tk.param("Answer.", name="p")


def _words():
    return tk.param(["a", "b"], name="p")


def _code():
    return tk.param(PARSE_SRC, name="p", kind="code")


# (parameter factory, proposed value, the value stored when accepted or None when refused)
CASES = {
    "float inside bounds": (_float, 1.5, 1.5),
    "float on a bound": (_float, 2.0, 2.0),
    "float as text": (_float, "1.25", 1.25),
    "float above bounds": (_float, 3.5, None),
    "float below bounds": (_float, -0.1, None),
    "float NaN": (_float, NAN, None),
    "bool for a number": (_float, True, None),
    "int whole": (_int, 4.0, 4),
    "int not whole": (_int, 4.6, None),
    "int out of bounds": (_int, 11, None),
    "tensor inside bounds": (_tensor, [0.5, -0.5, 1.0], [0.5, -0.5, 1.0]),
    "tensor out of bounds": (_tensor, [0.5, 2.0, 0.0], None),
    "tensor wrong shape": (_tensor, [0.5, 0.5], None),
    "tensor NaN": (_tensor, [0.0, NAN, 0.0], None),
    "tensor with a bool": (_tensor, [True, 0.0, 0.0], None),
    "int tensor whole": (_int_tensor, [3.0, 4], [3, 4]),
    "int tensor not whole": (_int_tensor, [1.5, 2], None),
    "choice exact": (_choice, "dense", "dense"),
    "choice in another case": (_choice, "Dense", "dense"),
    "choice unknown": (_choice, "sparse", None),
    "bool for a number choice": (_number_choice, True, None),
    "number choice as text": (_number_choice, "2", 2),
    "text": (_text, "Answer in one word.", "Answer in one word."),
    "text blank": (_text, "   ", None),
    "text not a string": (_text, ["x"], None),
    "text list": (_words, ["c"], ["c"]),
    "text list empty": (_words, [], []),
    "code": (_code, "def parse(text):\n    return text.split(':')[1]",
             "def parse(text):\n    return text.split(':')[1]"),
    "code that does not parse": (_code, "def parse(text):\n    return (", None),
    "code with another signature": (_code, "def parse(text, sep):\n    return text.split(sep)[0]", None),
    "code with another name": (_code, "def other(text):\n    return text", None),
    "code with a new import": (_code, "def parse(text):\n    import os\n    return os.sep", None),
    "code with two statements": (_code, "x = 1\n" + PARSE_SRC.replace("[0]", "[1]"), None),
}


def _plain(value):
    return value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value


def _same(a, b):
    return type(a) is type(b) and a == b


def _feed(opt, p):
    opt.zero_feedback()
    opt.backward(p.eq(0), "make it better")


# --- the four paths: each returns the stored value, or None when refused (old value kept) ----
def by_assignment(p, value):
    before = _plain(p.raw)
    try:
        p.data = value
    except tk.InvalidValueError:
        assert _plain(p.raw) == before or (isinstance(before, float) and math.isnan(before))
        return None
    return _plain(p.raw)


def by_loading(p, value):
    class Model(tk.Module):
        pass

    model = Model()
    model.p = p
    before = _plain(p.raw)
    try:
        model.load_state_dict({"p": {"kind": p.kind, "value": value}})
    except tk.StateDictError:
        assert _plain(p.raw) == before
        return None
    return _plain(p.raw)


def by_text_solver(p, value):
    """A real `tk.Optimizer` step through the text solver, with an LLM that replies `value`."""
    llm = _Replies(json.dumps({"reasoning": "r", "suggestion": {p.name: value}}))
    opt = tk.Optimizer([p], llm=llm, max_reasks=0)
    _feed(opt, p)
    before = _plain(p.raw)
    report = opt.step()
    if not report[p.name].changed:
        assert _plain(p.raw) == before
        return None
    return _plain(p.raw)


def by_apply(p, value, monkeypatch):
    """A solver proposes `value`; the Optimizer's apply accepts or refuses it."""
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_BUILTIN", {})
    for route in registry.ROUTES:  # whichever route the parameter takes
        tk.register_solver(route, lambda params, **o: _Proposes(value))
    opt = tk.Optimizer([p])
    _feed(opt, p)
    before = _plain(p.raw)
    report = opt.step()
    if not report["p"].changed:
        assert _plain(p.raw) == before and "refused" in report["p"].reason
        return None
    return _plain(p.raw)


class _Replies:
    def __init__(self, text):
        self.text = text

    def __call__(self, messages, **kwargs):
        return self.text


class _Proposes:
    name = "proposes"

    def __init__(self, value):
        self.value = value

    def step(self, params, context):
        return [ParamUpdate(context.name_of(p), self.name, new_value=self.value) for p in params]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_value_gets_the_same_verdict_on_every_path(case, monkeypatch):
    make, value, expected = CASES[case]
    results = {
        "assignment": by_assignment(make(), value),
        "load_state_dict": by_loading(make(), value),
        "text solver reply": by_text_solver(make(), value),
        "optimizer apply": by_apply(make(), value, monkeypatch),
    }
    for path, got in results.items():
        assert _same(got, expected) or (isinstance(got, list) and got == expected), (path, got, expected)


def test_bundled_code_gets_the_same_verdict_on_assignment_and_reply():
    @tk.bundle(trainable=True)
    def parse(text):
        return text.split(":")[0]

    code = parse.parameters()[0]
    for bad in ("def parse(text, sep):\n    return text", "def parse(text):\n    return eval(text)",
                "def parse(text):\n    return ("):
        with pytest.raises(tk.InvalidValueError):
            code.data = bad
        assert by_text_solver(code, bad) is None
    good = "def parse(text):\n    return text.split(':')[1]"
    assert by_text_solver(code, good) == good
    assert parse(tk.node("a:b")).data == "b"


def test_out_of_bounds_is_refused_not_clamped_with_the_reason():
    w = tk.param(torch.zeros(4), name="w", bounds=(0.0, 1.0))
    with pytest.raises(tk.InvalidValueError, match=r"2 of 4 entries are outside bounds.*not clamped"):
        w.data = [0.5, 1.5, -0.5, 0.0]
    assert w.data.tolist() == [0.0, 0.0, 0.0, 0.0]
    t = tk.param(1.0, name="t", bounds=(0.0, 2.0))
    with pytest.raises(tk.InvalidValueError, match="outside bounds.*not clamped"):
        t.data = 2.5
    assert t.data == 1.0


def test_bounds_are_compared_in_the_tensor_dtype():
    # 0.1 is not exact in float32: the stored float32(0.1) is on the bound, not above it
    w = tk.param(torch.zeros(2), name="w", bounds=(0.0, 0.1))
    w.data = torch.tensor([0.1, 0.05], dtype=torch.float64)
    assert w.data.dtype == torch.float32
    assert w.validate(w.data).tolist() == w.data.tolist()


def test_gradient_projection_lands_on_values_acceptance_takes():
    w = tk.param(torch.tensor([0.05, 0.09]), name="w", bounds=(0.0, 0.1))
    opt = tk.Optimizer([w], numeric="sgd", lr=1.0)
    out = torch.sum(w * -1.0)
    opt.zero_feedback()
    opt.backward(out, out)
    opt.step()
    assert w.data.tolist() == [pytest.approx(0.1)] * 2  # projected onto the bound
    w.validate(w.data)  # and the projected value is one that assignment accepts
    w.data = w.data.detach().clone()


def test_zeroth_order_proposals_are_inside_the_bounds():
    t = tk.param(1.9, name="t", bounds=(0.0, 2.0))
    opt = tk.Optimizer([t], objective=lambda: -t.raw, spsa_seed=0)
    for _ in range(5):
        opt.zero_feedback()
        opt.backward(t * 1.0, -t.raw)
        report = opt.step()
        assert "refused" not in report["t"].reason
        assert 0.0 <= t.data <= 2.0


def test_kinds_parts_are_usable_alone():
    assert kinds.accept_number("3", (0, 5), True, "k") == 3
    assert kinds.accept_choice(" DENSE ", ["bm25", "dense"], "c") == "dense"
    assert kinds.accept_choice("aB", ["Ab", "aB"], "c") == "aB"  # exact first
    with pytest.raises(tk.InvalidValueError, match="not one of the choices"):
        kinds.accept_choice("ab", ["Ab", "aB"], "c")  # two choices differ only by case: ambiguous
    assert kinds.accept_code(PARSE_SRC.replace("[0]", "[1]"), PARSE_SRC, "f").endswith("[1]")
    with pytest.raises(tk.InvalidValueError, match="import os"):
        kinds.accept_code("def parse(text):\n    import os\n    return os.sep", PARSE_SRC, "f")
    uses_os = "def parse(text):\n    import os\n    return os.sep"
    assert kinds.accept_code("def parse(text):\n    import os\n    return os.name", uses_os, "f")
