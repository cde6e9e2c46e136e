"""Port of Trace's tests/unit_tests/test_optimizer.py with a scripted LLM (Trace runs these
only with an OpenAI key). The scripted model answers in OptoPrime's reply format
({"reasoning", "suggestion": {name: value}}); what is tested is the loop and the update."""

import json
import pickle

import pytest

from tracekit.trace import OptoPrime, bundle, node


def blackbox(x):
    return -x * 2


@bundle()
def bar(x):
    "This is a test function, which does negative scaling."
    return blackbox(x)


def foo(x):
    y = x + 1
    return x * y


def foobar(x):
    return foo(bar(x))


def user(x):
    if x < 50:
        return "The number needs to be larger."
    return "Success."


class Scripted:
    """Replies with `suggestion` for whichever parameter the prompt names."""

    def __init__(self, value):
        self.value = value
        self.prompts = []

    def __call__(self, messages, **kwargs):
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        names = [n for n in self.names if n in prompt]
        return json.dumps({"reasoning": "scripted", "suggestion": {n: self.value for n in names}})


def test_number(capsys):
    """Trace's numeric example: "The number needs to be larger." is a direction, so the number
    moves larger by the bracket search (no number is guessed by the model)."""
    x = node(-1.0, trainable=True, name="x")
    llm = Scripted(-10.0)
    llm.names = ["x"]
    optimizer = OptoPrime([x], llm=llm)
    output = foobar(x)
    feedback = user(output.data)
    optimizer.zero_feedback()
    optimizer.backward(output, feedback, visualize=True)
    optimizer.step(verbose=True)
    assert x.data > -1.0 and not llm.prompts
    assert "x" in capsys.readouterr().out  # the verbose report


def test_number_without_a_signal_asks_the_llm(capsys):
    x = node(-1.0, trainable=True, name="x")
    llm = Scripted(-10.0)
    llm.names = ["x"]
    optimizer = OptoPrime([x], llm=llm)
    output = foobar(x)
    optimizer.zero_feedback()
    optimizer.backward(output, "Try again.")
    optimizer.step(verbose=True)
    assert x.data == -10.0
    assert any("Try again." in p for p in llm.prompts)


@bundle()
def convert_english_to_numbers(x):
    """This is a function that converts English to numbers. This function has limited ability."""
    x = x.replace('"', "")
    try:
        return int(x)
    except ValueError:
        pass
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    if x in words:
        return words.index(x)
    if x.startswith("negative ") and x[len("negative "):] in words:
        return -words.index(x[len("negative "):])
    return "FAIL"


def user_text(x):
    if x == "FAIL":
        return "The text cannot be converted to a number."
    if x < 50:
        return "The number needs to be larger."
    return "Success."


def foobar_text(x):
    output = convert_english_to_numbers(x)
    if output.data == "FAIL":  # not traced
        return output
    return foo(bar(output))


def test_text():
    x = node("negative point one", trainable=True, name="x")
    llm = Scripted("ten")
    llm.names = ["x"]
    optimizer = OptoPrime([x], llm=llm)
    output = foobar_text(x)
    feedback = user_text(output.data)
    assert feedback == "The text cannot be converted to a number."
    optimizer.zero_feedback()
    optimizer.backward(output, feedback)
    optimizer.step(verbose=False)
    assert x.data == "ten"


def test_code():
    def user_code(output):
        if output < 0:
            return "Success."
        return "Try again. The output should be negative"

    @bundle(trainable=True)
    def my_fun(x):
        """Test function"""
        return x**2 + 1

    old_func_value = my_fun.parameter.data
    new_code = "def my_fun(x):\n    \"\"\"Test function\"\"\"\n    return -x**2 - 1"
    llm = Scripted(new_code)
    llm.names = ["my_fun"]
    x = node(-1, trainable=False)
    optimizer = OptoPrime([my_fun.parameter], llm=llm)
    output = my_fun(x)
    feedback = user_code(output.data)
    optimizer.zero_feedback()
    optimizer.backward(output, feedback)
    assert [p.name for p in optimizer.parameters] == ["my_fun"]
    optimizer.step(verbose=True)
    new_func_value = my_fun.parameter.data
    assert str(old_func_value) != str(new_func_value), "Update failed"
    assert my_fun(x).data == -2


def test_feedback_given_directly_to_a_parameter():
    x = node(-1, trainable=True, name="x")
    llm = Scripted(3)
    llm.names = ["x"]
    optimizer = OptoPrime([x], llm=llm)
    optimizer.zero_feedback()
    optimizer.backward(x, "test")
    optimizer.step(verbose=True)
    assert x.data == 3


def test_log_saves_as_json_and_pickle(tmp_path):
    x = node(-1, trainable=True, name="x")
    llm = Scripted(3)
    llm.names = ["x"]
    optimizer = OptoPrime([x], llm=llm)
    optimizer.zero_feedback()
    optimizer.backward(x, "test")
    optimizer.step()
    (tmp_path / "log.json").write_text(json.dumps(optimizer.log))
    (tmp_path / "log.pik").write_bytes(pickle.dumps(optimizer.log))
    assert optimizer.log[0]["changes"][0]["new"] == "3"


def test_unknown_option_is_refused():
    from tracekit import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="not_an_option"):
        OptoPrime([node("x", trainable=True)], not_an_option=1)
