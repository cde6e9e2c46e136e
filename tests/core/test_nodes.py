"""Parameters, constants and operator tracing."""

import numpy as np
import pytest
import torch

import tracekit as tk
from tracekit.nodes import MessageNode


def test_kind_is_inferred_from_value_and_choices():
    assert tk.param("Answer in one word.", name="instruction").kind == "text"
    assert tk.param(0.7, name="t", bounds=(0.0, 2.0)).kind == "numeric"
    assert tk.param(3, name="k").kind == "numeric"
    assert tk.param(torch.zeros(8), name="w").kind == "numeric"
    assert tk.param("bm25", name="r", choices=["bm25", "dense"]).kind == "categorical"
    assert tk.param("def f(x):\n    return x", name="f", kind="code").kind == "code"


def test_float_param_stays_a_python_float_and_tensor_gets_requires_grad():
    t = tk.param(0.7, name="temperature")
    assert type(t.data) is float
    w = tk.param(torch.zeros(3), name="w")
    assert w.data.requires_grad
    a = tk.param(np.arange(3.0), name="a")
    assert isinstance(a.data, torch.Tensor) and a.data.dtype == torch.float64 and a.data.requires_grad


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(value=object()), "pass kind="),
        (dict(value=True), r"choices=\[False, True\]"),
        (dict(value="a", kind="prompt"), "unknown parameter kind"),
        (dict(value=5.0, bounds=(0, 1)), "outside bounds"),
        (dict(value=0.5, bounds=(1, 0)), "swap them"),
        (dict(value="x", choices=["a", "b"]), "not one of choices"),
        (dict(value=float("nan")), "finite"),
    ],
)
def test_bad_parameters_get_clear_errors(kwargs, message):
    with pytest.raises(tk.InvalidValueError, match=message):
        tk.param(**kwargs)


def test_assignment_is_validated_and_refusal_keeps_old_value():
    t = tk.param(0.7, name="t", bounds=(0.0, 2.0))
    t.data = "1.5"
    assert t.data == 1.5
    with pytest.raises(tk.InvalidValueError, match="outside bounds"):
        t.data = 3.0
    assert t.data == 1.5
    k = tk.param("bm25", name="k", choices=["bm25", "dense"])
    with pytest.raises(tk.InvalidValueError, match="not one of the choices"):
        k.data = "sparse"
    assert k.data == "bm25"
    p = tk.param("hello", name="p")
    with pytest.raises(tk.InvalidValueError, match="empty"):
        p.data = "   "
    with pytest.raises(tk.InvalidValueError, match="expected a string"):
        p.data = 42
    assert p.data == "hello"
    n = tk.param(3, name="n")
    n.data = 4.0
    assert n.data == 4 and type(n.data) is int
    with pytest.raises(tk.InvalidValueError, match="expected an integer"):
        n.data = 4.6  # refused, not rounded: acceptance never changes a value
    assert n.data == 4


def test_out_of_bounds_tensor_is_refused_like_a_number_not_clamped():
    w = tk.param(torch.zeros(3), name="w", bounds=(-1.0, 1.0))
    before = w.data
    with pytest.raises(tk.InvalidValueError, match="1 of 3 entries are outside bounds"):
        w.data = [0.5, 2.0, 0.0]
    assert w.data is before and w.data.tolist() == [0.0, 0.0, 0.0]
    w.data = [0.5, 1.0, -1.0]  # the bounds themselves are inside
    assert w.data.tolist() == [0.5, 1.0, -1.0]
    ks = tk.param(torch.tensor([1, 2]), name="ks")
    with pytest.raises(tk.InvalidValueError, match="whole numbers"):
        ks.data = [1.5, 2.0]  # an integer tensor is not truncated
    assert ks.data.tolist() == [1, 2]


def test_categorical_assignment_names_a_choice_like_a_reply_does():
    k = tk.param("bm25", name="k", choices=["bm25", "dense"])
    k.data = " Dense "
    assert k.data == "dense"
    flag = tk.param(1, name="flag", choices=[1, 2])
    with pytest.raises(tk.InvalidValueError, match="not one of the choices"):
        flag.data = True  # a bool is not the number 1 here
    assert flag.data == 1


def test_plain_code_parameters_get_the_code_checks():
    f = tk.param("def f(x):\n    return x", name="f", kind="code")
    for bad, message in [("def f(x):\n    return (", "does not parse"),
                         ("def g(x):\n    return x", "must define 'f'"),
                         ("def f(x, y):\n    return x", "changes the signature"),
                         ("def f(x):\n    import os\n    return os.sep", "import os")]:
        with pytest.raises(tk.InvalidValueError, match=message):
            f.data = bad
    assert f.data == "def f(x):\n    return x"


def test_tensor_assignment_keeps_identity_shape_and_finiteness():
    w = tk.param(torch.zeros(3), name="w")
    before = w.data
    w.data = [1.0, 2.0, 3.0]
    assert w.data is before and w.data.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(tk.InvalidValueError, match="shape"):
        w.data = [1.0, 2.0]
    with pytest.raises(tk.InvalidValueError, match="NaN"):
        w.data = [1.0, float("nan"), 0.0]
    assert w.data.tolist() == [1.0, 2.0, 3.0]


def test_node_data_and_parents():
    x = tk.node(3.0)
    assert x.data == 3.0 and x.parents == ()
    assert tk.node(x) is x


def test_arithmetic_and_reflected_ops_are_traced():
    x = tk.param(3.0, name="x")
    y = 2 * x + 1 - x / 3
    assert isinstance(y, MessageNode)
    assert y.data == pytest.approx(2 * 3.0 + 1 - 3.0 / 3)
    assert (x ** 2).data == 9.0 and (-x).data == -3.0 and abs(-x).data == 3.0
    assert (10 // tk.node(3)).data == 3 and (tk.node(10) % 3).data == 1


def test_parameter_used_twice_in_one_op():
    x = tk.param(3.0, name="x")
    y = x + x
    assert y.data == 6.0
    assert y.parents == (x, x) or (y.parents[0] is x and y.parents[1] is x)
    assert y.code_line().endswith("= x + x")
    graph = tk.subgraph(y)
    assert graph.parameters == [x]


def test_comparisons_indexing_attributes_and_calls():
    x = tk.param(3.0, name="x")
    assert (x < 4).data is True and (x >= 4).data is False
    assert x.eq(3.0).data is True and x.neq(3.0).data is False
    items = tk.node([10, 20, 30])
    assert items[1].data == 20
    assert [n.data for n in items] == [10, 20, 30]
    assert items.len().data == 3 and len(items) == 3
    assert items.contains(20).data is True and 20 in items
    text = tk.param("Hello", name="greeting")
    upper = text.upper()
    assert upper.data == "HELLO"
    assert "greeting" in [p.name for p in tk.subgraph(upper).parameters]
    d = tk.node({"a": 1, "b": 2})
    assert [k.data for k in d] == ["a", "b"]
    with pytest.raises(AttributeError, match="has no attribute"):
        _ = x.not_an_attribute


def test_string_formatting_is_traced():
    template = tk.param("Q: {q} A:", name="template")
    out = template.format(q=tk.node("why?"))
    assert out.data == "Q: why? A:"
    assert template in tk.subgraph(out).parameters
    assert f"{tk.node(3.14159):.2f}" == "3.14"


def test_equality_is_plain_and_hash_is_identity():
    a, b = tk.node(1), tk.node(1)
    assert a == b and a == 1
    assert len({a, b}) == 2
    assert tk.node(torch.ones(2)) == torch.ones(2)


def test_torch_functions_on_nodes_are_traced_with_autograd():
    w = tk.param(torch.tensor([1.0, 2.0]), name="w")
    loss = torch.sum(w * w)
    assert isinstance(loss, MessageNode)
    loss.data.backward()
    assert w.data.grad.tolist() == [2.0, 4.0]


def test_iterating_a_non_iterable_is_a_clear_error():
    with pytest.raises(TypeError, match="not iterable"):
        list(tk.node(3))


def test_trial_holds_a_value_then_restores_it():
    p = tk.param(3, name="n", bounds=(0, 10))
    with p.trial(7):
        assert p.data == 7
    assert p.data == 3
    with pytest.raises(RuntimeError), p.trial(5):
        raise RuntimeError("objective failed")
    assert p.data == 3  # restored on errors too
    with pytest.raises(tk.InvalidValueError), p.trial(11):
        pass  # out of bounds: refused before anything changes
    assert p.data == 3
    w = tk.param(torch.zeros(3), name="w")
    tensor = w.data
    with w.trial(torch.ones(3)):
        assert float(w.data.sum()) == 3.0
    assert w.data is tensor and float(w.data.sum()) == 0.0  # same tensor object, old values
