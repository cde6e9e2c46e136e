"""Port of Trace's tests/unit_tests/test_backward.py.

Trace writes `output.backward(feedback)`; tracekit accepts that spelling and also
`tk.backward(output, feedback)` / `optimizer.backward(output, feedback)`, which the rest of
the port uses; the assertions are Trace's."""

import tracekit as tk
from tests.compat.helpers import contain, differs
from tracekit.trace import Node, bundle, node


def test_node_backward_method():
    x = node(1, name="x", trainable=True)
    y = node(1, name="y", trainable=True)
    output = (x * 2 + y * 3) + 1
    output.backward("test feedback")
    assert x.feedback
    # tracekit: the same records as tk.backward, and the default feedback is empty text
    assert [r.feedback.text for r in y.feedback] == ["test feedback"]
    output.backward()
    assert [r.feedback.text for r in x.feedback] == ["test feedback", ""]


def test_backward_reaches_every_parameter():
    x = node(1, name="x", trainable=True)
    y = node(1, name="y", trainable=True)
    output = (x * 2 + y * 3) + 1
    tk.backward(output, "test feedback")
    assert [r.feedback.text for r in x.feedback] == ["test feedback"]
    assert [r.feedback.text for r in y.feedback] == ["test feedback"]


def test_graph_of_each_parameter():
    x = node(1, name="x", trainable=True)
    y = node(1, name="y", trainable=True)
    output = (x * 2 + y * 3) + 1
    tk.backward(output, "test feedback")
    for p in (x, y):
        record = p.feedback[0]
        assert record.feedback.text == "test feedback"
        nodes = record.graph.nodes
        assert all(isinstance(n, Node) for n in nodes)
        assert contain(nodes, p) and contain(nodes, output)
    # Trace's GraphPropagator gives each parameter only its own path; tracekit's record is the
    # graph from the output to the parameters (both), so that one LLM call sees all of them
    assert contain(x.feedback[0].graph.nodes, y)


def test_feedback_to_a_trainable_function():
    @bundle(trainable=True)
    def my_fun(x):
        """Test function"""
        return x**2 + 1

    x = node(-1, trainable=False)
    y = my_fun(x)
    tk.backward(y, "test feedback")
    record = my_fun.parameter.feedback[0]
    assert record.feedback.text == "test feedback"
    assert contain(record.graph.nodes, y) and contain(record.graph.nodes, x)
    assert "my_fun" in y.code_line()


@differs("feedback is a list of records (output, feedback, graph) per parameter, not Trace's "
         "dict {child: [feedback]}; there is no node_to_function_feedback (the text optimizer "
         "builds its prompt from the record's graph)")
def test_feedback_is_a_dict_by_child():
    x = node(1, name="x", trainable=True)
    output = x * 2
    tk.backward(output, "test feedback")
    for _k, v in x.feedback.items():
        assert v[0].user_feedback == "test feedback"
