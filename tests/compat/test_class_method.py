"""Port of Trace's tests/unit_tests/test_class_method.py: each instance of a model owns the
code parameter of its trainable bundled methods, also after deep copies."""

from copy import deepcopy

import pytest

from tests.compat.helpers import contain, differs
from tracekit import trace


@trace.model
class Model:
    @trace.bundle(trainable=True)
    def forward(self, x):
        return x + 1


def two_models():
    m1 = Model()
    return m1, Model()


def copied_model():
    m1 = Model()
    return m1, deepcopy(m1)


def nested_copy():
    m1 = Model()
    return m1, deepcopy(deepcopy(m1))


CASES = pytest.mark.parametrize("make", [two_models, copied_model, nested_copy],
                                ids=["two_models", "model_copy", "model_nested_copy"])


@CASES
def test_parameters_are_per_instance(make):
    m1, m2 = make()
    assert len(m1.parameters()) == 1
    assert len(m2.parameters()) == 1
    assert m1.parameters()[0] is not m2.parameters()[0]
    assert m1.forward.parameter is m1.parameters()[0]
    assert m2.forward.parameter is m2.parameters()[0]
    # each instance has a version different from the class' version
    assert m1.forward is not m2.forward
    assert m1.forward is not Model.forward
    assert m2.forward.parameter == Model.forward.parameter == m1.forward.parameter
    y1 = m1.forward(1)
    y2 = m2.forward(2)
    assert contain(y1.parents, m1.forward.parameter)
    assert contain(y2.parents, m2.forward.parameter)


@differs("self is not an input of a bundled method (no hidden __TRACE_RESERVED_self_node): "
         "a call's inputs are its arguments, plus the instance's code parameter when trainable")
def test_self_node_is_an_input():
    for make in (two_models, copied_model, nested_copy):  # the same check in Trace's three cases
        m1, m2 = make()
        y1 = m1.forward(1)
        assert len(y1.parents) == 3
        assert contain(y1.parents, m1.__TRACE_RESERVED_self_node)


@CASES
def test_inputs_are_the_argument_and_the_code(make):
    m1, _ = make()
    y1 = m1.forward(1)
    assert len(y1.parents) == 2 and y1 == 2
