"""Port of Trace's tests/unit_tests/not_covered_usage_cases.py: usages Trace lists as not
covered. Case 1 needs traceable_code in Trace; in tracekit the code of a trainable function
called inside another bundled call is an input of the outer call, so feedback reaches it.
Case 2 (a bundled function updating a dict it was given) works with and without a node."""

import tracekit as tk
from tests.compat.helpers import contain
from tracekit.trace import bundle, node


def test_nested_function_visibility():
    @bundle(description="[func_a] Returns a+1", trainable=True)
    def func_a(a):
        return a + 1

    @bundle(description="[func_b] Returns b+1", trainable=True)
    def func_b(b):
        return func_a(b) + 1

    x = node(3)
    y = func_b(x)
    assert y == 5
    tk.backward(y, "")
    assert func_a.parameter.feedback and func_b.parameter.feedback
    assert contain(y.parents, func_a.parameter)


@bundle(description="[func_c] Update dictionary")
def func_c(dic):
    dic["a"] = 1


class Env(dict):
    def __init__(self, init_k, init_v):
        self[init_k] = init_v


def test_func_c_with_a_dict():
    dic = {}
    func_c(dic)
    assert "a" in dic, "Failed to update dictionary"


def test_func_c_with_a_dict_node():
    dic = node({})
    func_c(dic)
    assert "a" in dic, "Failed to update dictionary"


def test_func_c_with_a_dict_subclass():
    dic = Env("c", 0)
    func_c(dic)
    assert "a" in dic, "Failed to update dictionary"


def test_func_c_with_a_dict_subclass_node():
    dic = node(Env("c", 0))
    func_c(dic)
    assert "a" in dic, "Failed to update dictionary"
