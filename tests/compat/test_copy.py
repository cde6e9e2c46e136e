"""Port of Trace's tests/unit_tests/test_copy.py: nodes, code parameters, an optimizer and
the LLM can be deep-copied (Trace skips the optimizer and LLM part without a config file;
here the default backend and a scripted LLM are used)."""

import copy
import json

import tracekit as tk
from tracekit import trace
from tracekit.trace import OptoPrime


def test_copy_nodes():
    x = trace.node("x")
    assert copy.deepcopy(x).data == "x"

    @trace.bundle(trainable=True)
    def fun(x):
        pass

    code = copy.deepcopy(fun.parameter)
    assert code.data == fun.parameter.data and code is not fun.parameter
    x = trace.node("x", trainable=True)
    assert copy.deepcopy(x).data == "x"


def test_copy_optimizer_and_llm():
    x = trace.node("x", trainable=True)
    optimizer = OptoPrime([x])
    optimizer2 = copy.deepcopy(optimizer)
    assert optimizer2.parameters[0] is not x
    llm = tk.llm.default()
    assert copy.deepcopy(llm) is llm  # a backend is a shared service


def test_copy_optimizer_after_a_step():
    def llm(messages, **kwargs):
        return json.dumps({"reasoning": "r", "suggestion": {"x": "y"}})

    x = trace.node("x", trainable=True, name="x")
    optimizer = OptoPrime([x], llm=llm)
    optimizer.zero_feedback()
    optimizer.backward(x + "!", "make it y")
    optimizer.step()
    assert x.data == "y"
    assert copy.deepcopy(optimizer).parameters[0].data == "y"
