"""Port of Trace's tests/unit_tests/test_error_handling.py."""

import json

import pytest

from tests.compat.helpers import differs
from tracekit.trace import ExceptionNode, ExecutionError, Node, OptoPrime, bundle, model


@differs("operators on nodes (x / y) raise the Python exception itself; only bundled "
         "functions record an ExceptionNode and raise ExecutionError (bundle the function)")
def test_invalid_input_values_in_plain_code():
    x = Node(1, name="node_x")
    y = Node(0, name="node_y")

    def bug_program(x, y):
        return x / y

    with pytest.raises(ExecutionError) as info:
        bug_program(x, y)
    assert x in info.value.exception_node.parents


def test_invalid_input_values_in_a_bundle():
    x = Node(1, name="node_x")
    y = Node(0, name="node_y")

    @bundle()
    def bug_program(x, y):
        return x / y

    with pytest.raises(ExecutionError) as info:
        bug_program(x, y)
    e = info.value
    assert isinstance(e.exception_node, ExceptionNode)
    assert x in e.exception_node.parents
    assert y in e.exception_node.parents
    assert "ZeroDivisionError" in str(e)


def test_decorator_usage():
    @bundle()
    def error_fun():
        x = None
        x.append(1)
        return x

    with pytest.raises(Exception) as info:
        error_fun()
    assert type(info.value) == ExecutionError  # noqa: E721
    assert "AttributeError" in str(info.value.exception_node.data)


def test_inline_usage():
    def error_fun():
        x = None
        x.append(1)
        return x

    error_fun = bundle()(error_fun)
    with pytest.raises(Exception) as info:
        error_fun()
    assert type(info.value) == ExecutionError  # noqa: E721


def test_nested_error():
    def error_fun():
        x = None
        x.append(1)
        return x

    @bundle()
    def top_fun(x):
        x += 1
        error_fun()
        return 2

    with pytest.raises(Exception) as info:
        top_fun(1)
    assert type(info.value) == ExecutionError  # noqa: E721


SYNTAX_ERROR_CODE = """
def bug_progam(x):
    x = 1
    x *=2
    x . 10 # syntax error
    return
"""


@differs("code is checked when it is assigned: parameter.data = <code with a syntax error> raises "
         "InvalidValueError and the old code stays, so broken code never runs (writing the "
         "private _data bypasses the check, and the call then raises InvalidValueError)")
def test_syntax_error_in_trainable_code():
    @bundle(trainable=True)
    def bug_progam(x):
        x + 10
        return

    bug_progam.parameter._data = SYNTAX_ERROR_CODE
    with pytest.raises(ExecutionError) as info:
        bug_progam(1)
    assert bug_progam.parameter in info.value.exception_node.parents
    assert "SyntaxError" in info.value.exception_node.data


def test_syntax_error_in_trainable_code_is_refused():
    from tracekit import InvalidValueError

    @bundle(trainable=True)
    def bug_progam(x):
        x + 10
        return

    old = bug_progam.parameter.data
    with pytest.raises(InvalidValueError, match="does not parse"):
        bug_progam.parameter.data = SYNTAX_ERROR_CODE
    assert bug_progam.parameter.data == old


def test_execution_error_in_trainable_code():
    @bundle(trainable=True)
    def bug_progam(x):
        x + 10
        x / 0
        return

    with pytest.raises(ExecutionError) as info:
        bug_progam(1)
    assert isinstance(info.value.exception_node, ExceptionNode)
    assert bug_progam.parameter in info.value.exception_node.parents


def test_nested_execution_error_in_trainable_code():
    def bug_progam(x):
        x + 10
        x / 0
        return

    @bundle(trainable=True)
    def top_fun(x):
        bug_progam(x)

    with pytest.raises(ExecutionError) as info:
        top_fun(1)
    assert top_fun.parameter in info.value.exception_node.parents


def test_error_in_a_comprehension():
    @bundle(trainable=True)
    def top_fun(x):
        if False:
            u = [1]
        x = [u[i] for i in range(3)]  # noqa: F821, F841
        return

    with pytest.raises(ExecutionError) as info:
        top_fun(1)
    assert top_fun.parameter in info.value.exception_node.parents


@differs("a bundled function's output is a node whatever its value: unpacking a None output "
         "raises TypeError when the node is unpacked, outside the bundled call")
def test_unpacking_none():
    @bundle(catch_execution_error=True)
    def fun(x):
        return None

    with pytest.raises(ExecutionError):
        a, b = fun(1)


def test_error_inside_a_lambda():
    @bundle()
    def test(a, b):
        return a(b)

    def add_one(y):
        return lambda x: x + y + 1

    with pytest.raises(ExecutionError) as info:
        test(add_one(2), "1")
    assert isinstance(info.value.exception_node, ExceptionNode)


def test_catch_execution_error_false_raises_the_exception():
    @bundle(catch_execution_error=False)
    def fun(x):
        return x / 0

    with pytest.raises(ZeroDivisionError):
        fun(1)


def test_early_exception():
    """Trace runs this one only with an OpenAI key; here with a scripted LLM."""

    @model
    class TestAgent:
        @bundle(trainable=True)
        def func1(self):
            return 1

        @bundle(trainable=True)
        def func2(self):
            return 1

        @bundle(trainable=True)
        def func3(self):
            raise Exception("Error in func1")

        def act(self):
            self.func1()
            self.func2()
            self.func3()

    agent = TestAgent()
    try:
        output = agent.act()
    except ExecutionError as e:
        feedback = str(e.exception_node.data)  # Trace: e.exception_node.create_feedback()
        output = e.exception_node

    def llm(messages, **kwargs):
        return json.dumps({"reasoning": "no reply needed", "suggestion": {}})

    optimizer = OptoPrime(agent.parameters(), llm=llm)
    optimizer.zero_feedback()
    optimizer.backward(output, feedback)
    assert [p.feedback for p in agent.parameters()][-1]  # func3's code got the feedback
    optimizer.step()
