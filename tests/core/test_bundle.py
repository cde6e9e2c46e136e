"""The bundle decorator: recording, methods, async, code parameters, exceptions."""

import asyncio
import subprocess
import sys
import textwrap

import pytest

import tracekit as tk
from tracekit.nodes import ExceptionNode, MessageNode


@tk.bundle()
def score(a, b):
    """Weighted sum of two numbers."""
    return 2 * a + b


def test_call_records_inputs_output_name_doc_and_source():
    x = tk.param(3.0, name="x")
    out = score(x, 4)
    assert isinstance(out, MessageNode)
    assert out.data == 10.0
    assert out.inputs["a"] is x and out.inputs["b"].data == 4
    assert out.op.name == "score"
    assert out.op.doc == "Weighted sum of two numbers."
    assert "return 2 * a + b" in out.op.source and "@tk.bundle" not in out.op.source
    assert out.code_line() == f"{out.py_name} = score(a=x, b={out.inputs['b'].py_name})"


def test_inside_a_bundle_arguments_are_plain_values():
    seen = {}

    @tk.bundle()
    def probe(a):
        seen["type"] = type(a)
        return a

    probe(tk.node("text"))
    assert seen["type"] is str


def test_nested_bundles_are_not_traced_separately():
    @tk.bundle()
    def inner(a):
        return a + 1

    @tk.bundle()
    def outer(a):
        return inner(a) * 2

    x = tk.param(1.0, name="x")
    out = outer(x)
    assert out.data == 4.0
    assert [n.op.name for n in tk.subgraph(out).calls()] == ["outer"]


def test_parameters_read_inside_a_bundle_become_parents():
    prompt = tk.param("Be brief.", name="prompt")

    @tk.bundle()
    def build(question):
        return f"{prompt} {question}"

    out = build(tk.node("Why?"))
    assert out.data == "Be brief. Why?"
    assert prompt in tk.subgraph(out).parameters


class Agent(tk.Module):
    def __init__(self):
        self.prefix = tk.param("Answer:", name="prefix")

    @tk.bundle(trainable=True)
    def parse(self, text):
        return text.strip().lower()

    def forward(self, question):
        return self.parse(self.prefix + question)


def test_trainable_method_has_one_code_parameter_per_instance():
    a, b = Agent(), Agent()
    assert a.parse.code_param is not b.parse.code_param
    names = dict(a.named_parameters())
    assert set(names) == {"parse", "prefix"}
    assert names["parse"].kind == "code"
    b.parse.code_param.data = "def parse(self, text):\n    return text.upper()"
    assert a(" X").data == "answer: x"
    assert b(" X").data == "ANSWER: X"
    out = a(" Y")
    assert a.parse.code_param in tk.subgraph(out).parameters


@tk.bundle(trainable=True)
def parse_number(text):
    return int(text)


@pytest.mark.parametrize(
    "source, message",
    [
        ("def parse_number(text:\n    return 1", "does not parse"),
        ("def other(text):\n    return 1", "must define 'parse_number'"),
        ("def parse_number(text, base):\n    return 1", "changes the signature"),
        ("import os\ndef parse_number(text):\n    return 1", "exactly one function definition"),
        ("def parse_number(text):\n    return 1\ndef parse_number(text):\n    return 2", "exactly one"),
        ("@staticmethod\ndef parse_number(text):\n    return 1", "decorators"),
        ("async def parse_number(text):\n    return 1", "not be an async"),
        ("", "empty value is not allowed"),
    ],
)
def test_invalid_code_values_are_refused_and_old_code_kept(source, message):
    param = parse_number.parameters()[0]
    before = param.data
    with pytest.raises(tk.InvalidValueError, match=message):
        param.data = source
    assert param.data == before
    assert parse_number(tk.node("12")).data == 12


def test_valid_new_code_is_compiled_and_used_and_can_be_reverted():
    param = parse_number.parameters()[0]
    original = param.data
    param.data = "def parse_number(text):\n    return int(text) * 10"
    try:
        assert parse_number(tk.node("2")).data == 20
    finally:
        param.data = original
    assert parse_number(tk.node("2")).data == 2


def test_code_from_llm_that_fails_at_runtime_becomes_an_exception_node_with_its_line():
    param = parse_number.parameters()[0]
    original = param.data
    param.data = "def parse_number(text):\n    value = int(text)\n    return value / 0"
    try:
        out = parse_number(tk.node("2"))
        assert isinstance(out, ExceptionNode)
        assert out.error.type == "ZeroDivisionError"
        assert out.error.line == "return value / 0"
        assert out.error.lineno == 3
    finally:
        param.data = original


def test_exception_becomes_a_node_with_type_message_line_and_parents():
    @tk.bundle()
    def divide(a, b):
        ratio = a / b
        return ratio

    x = tk.param(1.0, name="x")
    out = divide(x, 0)
    assert isinstance(out, ExceptionNode)
    assert out.error.type == "ZeroDivisionError"
    assert "division by zero" in out.error.message
    assert out.error.line == "ratio = a / b"
    assert out.error.lineno == 2
    assert out.parents[0] is x
    # feedback flows through the exception node to the parameter
    graph = tk.backward(out, "the call crashed")
    assert x in graph.parameters and x.feedback[-1].feedback.text == "the call crashed"
    x.feedback.clear()


def test_exception_nodes_propagate_through_later_ops_and_bundles():
    @tk.bundle()
    def fail(a):
        raise ValueError("bad input")

    x = tk.param(1.0, name="x")
    err = fail(x)
    later = score(err + 1, 2)
    assert isinstance(later, ExceptionNode)
    assert "upstream error: bad input" in later.error.message
    assert x in tk.subgraph(later).parameters


def test_catch_errors_false_re_raises():
    @tk.bundle(catch_errors=False)
    def fail(a):
        raise KeyError("missing")

    with pytest.raises(KeyError):
        fail(tk.node(1))


def test_async_bundles_are_traced():
    @tk.bundle()
    async def fetch(a):
        await asyncio.sleep(0)
        return a * 2

    async def main():
        x = tk.param(2.0, name="x")
        results = await asyncio.gather(*(fetch(x + i) for i in range(5)))
        return x, results

    x, results = asyncio.run(main())
    assert [r.data for r in results] == [4.0, 6.0, 8.0, 10.0, 12.0]
    assert all(x in tk.subgraph(r).parameters for r in results)


def test_bundle_without_retrievable_source_falls_back_in_the_repl_and_with_c():
    code = textwrap.dedent(
        """
        import tracekit as tk
        @tk.bundle(trainable=True)
        def double(x):
            return x * 2
        out = double(tk.node(3))
        print(out.data)
        print(double.parameters()[0].data.splitlines()[0])
        double.parameters()[0].data = "def double(x):\\n    return x * 3"
        print(double(tk.node(3)).data)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "6"
    assert lines[1] == "def double(x):"
    assert lines[2] == "9"


def test_bundle_without_parentheses_and_bad_targets():
    @tk.bundle
    def inc(a):
        return a + 1

    assert inc(tk.node(1)).data == 2
    with pytest.raises(TypeError, match="needs a function"):
        tk.bundle(42)


def test_no_trace_returns_plain_values():
    with tk.no_trace():
        assert score(1, 2) == 4
