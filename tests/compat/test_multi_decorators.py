"""Port of Trace's tests/unit_tests/test_multi_decorators.py: bundle composed with other
decorators, above and below; `fun.info` gives the code under the bundle decorator and its
line. (Trace writes the expected line numbers as constants; here they are looked up in
this file, which has a different layout.)"""

from pathlib import Path

import pytest

from tracekit import trace

bundle = trace.bundle


def dec(fun):
    return fun


def dec2(fun):
    return fun


code_str = ('@dec\ndef my_fun():  # some comment with bundle\n    """ Some def """  # bundle comments\n'
            "    print('run')  # bundle comments")


def line_of(marker):
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if line.endswith(marker)) + 1


@trace.bundle(\
        )   # random comments  [form 1]
@dec
def my_fun():  # some comment with bundle
    """ Some def """  # bundle comments
    print('run')  # bundle comments


form_1 = my_fun


@bundle()  # [form 2]
@dec
def my_fun():  # some comment with bundle  # noqa: F811
    """ Some def """  # bundle comments
    print('run')  # bundle comments


form_2 = my_fun


@dec2
@bundle()  # [form 3]
@dec
def my_fun():  # some comment with bundle  # noqa: F811
    """ Some def """  # bundle comments
    print('run')  # bundle comments


form_3 = my_fun


@dec2
@trace.bundle()  # [form 4]
@dec
def my_fun():  # some comment with bundle  # noqa: F811
    """ Some def """  # bundle comments
    print('run')  # bundle comments


form_4 = my_fun


@pytest.mark.parametrize("form", [1, 2, 3, 4])
def test_decorator_forms(form, capsys):
    fun = {1: form_1, 2: form_2, 3: form_3, 4: form_4}[form]
    fun()
    assert capsys.readouterr().out == "run\n"
    assert fun.info["source"].replace("  # noqa: F811", "") == code_str
    assert fun.info["line_number"] == line_of(f"[form {form}]")
