"""Port of Trace's tests/unit_tests/test_basic_operators.py."""

import pytest

from tracekit import trace

OPS = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^"]


@pytest.mark.parametrize("op", OPS)
def test_operator_with_a_plain_value(op):
    x = trace.node(1)
    y = 2
    env = {"x": x, "y": y}
    assert eval(f"x {op} y", env) == eval(f"x.data {op} y", env)
    assert eval(f"y {op} x", env) == eval(f"y {op} x.data", env)
