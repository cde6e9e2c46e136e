"""Port of Trace's tests/unit_tests/test_re_parsing.py. Trace finds the `@bundle` line of a
function's source with these patterns; tracekit reads the source with `ast` instead, so the
port checks that the decorator forms the patterns cover all give the function's own source."""

import re

import pytest

from tracekit.codeparam import source_of
from tracekit.trace import bundle


def matches(line):
    return (("@bundle(" in line) or ("@bundle\\" in line)
            or (re.search(r"@.*\.bundle\(.*", line) is not None)
            or (re.search(r"@.*\.bundle\\.*", line) is not None))


@pytest.mark.parametrize("line", ["@bundle()\njklasjdflksd", "@bundle\\ ajsdkfldsjf",
                                  "@.....bundle(jkalsdfj", "@.....bundle\\jklasjdlfk"])
def test_decorator_lines(line):
    assert matches(line)


def test_source_of_a_bundled_function_starts_at_def():
    @bundle(
    )
    def fun(x):
        return x

    assert source_of(fun.fn).startswith("def fun(x):")
