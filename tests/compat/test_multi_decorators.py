"""Port of Trace's tests/unit_tests/test_multi_decorators.py: bundle composed with other
decorators, above and below. Trace's `fun.info['source']` / `info['line_number']` are
`fun.source` here."""

from tests.compat.helpers import differs
from tracekit import trace

bundle = trace.bundle


def dec(fun):
    return fun


def dec2(fun):
    return fun


@trace.bundle(
        )   # random comments
@dec
def my_fun_1():  # some comment with bundle
    """ Some def """  # bundle comments
    return "run"  # bundle comments


@bundle()
@dec
def my_fun_2():  # some comment with bundle
    """ Some def """  # bundle comments
    return "run"  # bundle comments


@dec2
@bundle()
@dec
def my_fun_3():  # some comment with bundle
    """ Some def """  # bundle comments
    return "run"  # bundle comments


@dec2
@trace.bundle()
@dec
def my_fun_4():  # some comment with bundle
    """ Some def """  # bundle comments
    return "run"  # bundle comments


def test_decorator_orders():
    for i, fun in enumerate([my_fun_1, my_fun_2, my_fun_3, my_fun_4], start=1):
        assert fun() == "run"
        assert f"def my_fun_{i}():" in fun.source
        assert '""" Some def """' in fun.source


@differs("there is no fun.info dict: the source is fun.source (the function alone, without "
         "its decorators, since that is the code an optimizer may rewrite)")
def test_info_source_and_line_number():
    assert my_fun_2.info["source"].startswith("@dec\ndef my_fun_2")
