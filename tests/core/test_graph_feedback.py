"""Subgraph extraction, networkx export, feedback and backward."""

import pytest
import torch

import tracekit as tk


@tk.bundle()
def add(a, b):
    return a + b


def test_subgraph_marks_only_nodes_that_depend_on_the_parameters():
    x = tk.param(1.0, name="x")
    c = tk.node(5.0, name="c")
    unrelated = c * 2
    y = add(x, unrelated)
    g = tk.subgraph(y)
    assert g.parameters == [x]
    assert g.depends_on(y) and not g.depends_on(unrelated) and not g.depends_on(c)
    assert [n.name for n in g.calls()] == [y.name]
    assert g.nodes.index(x) < g.nodes.index(y) and g.nodes.index(c) < g.nodes.index(unrelated)


def test_subgraph_of_a_long_chain_has_no_recursion_limit():
    x = tk.param(1.0, name="x")
    y = tk.node(0.0)
    for _ in range(50_000):
        y = y + x
    g = tk.subgraph(y)
    assert len(g) == 50_002 and g.parameters == [x]
    assert y.data == 50_000.0


def test_subgraph_for_chosen_parameters():
    a, b = tk.param(1.0, name="a"), tk.param(2.0, name="b")
    out = add(a * 3, b)
    g = tk.subgraph(out, params=[b])
    assert g.parameters == [b] and not g.depends_on(a)


def test_networkx_export_has_nodes_edges_and_arguments():
    x = tk.param(2.0, name="x")
    y = x + x
    z = add(y, 1)
    g = tk.to_networkx(z)
    assert g.nodes["x"]["type"] == "parameter" and g.nodes["x"]["kind"] == "numeric"
    assert g.edges["x", y.name]["args"] == ["x", "y"]
    assert g.nodes[z.name]["op"] == "add" and g.nodes[z.name]["is_output"]
    import networkx as nx

    assert nx.is_directed_acyclic_graph(g)


def test_backward_accepts_text_numbers_tensors_and_feedback_objects():
    x = tk.param(1.0, name="x")
    out = x * 2
    tk.backward(out, "too small")
    tk.backward(out, 3.5)
    tk.backward(out, tk.Feedback(loss=1.0, text="close"))
    kinds = [(r.feedback.text, r.feedback.loss) for r in x.feedback]
    assert kinds == [("too small", None), (None, 3.5), ("close", 1.0)]
    assert "loss = 1" in x.feedback[-1].feedback.describe()


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "feedback must be"),
    (torch.ones(3), "one number"),
    (None, "feedback must be"),
])
def test_bad_feedback_is_a_clear_error(bad, message):
    x = tk.param(1.0, name="x")
    with pytest.raises(tk.errors.FeedbackError, match=message):
        tk.backward(x * 2, bad)


def test_backward_needs_a_node():
    with pytest.raises(tk.errors.FeedbackError, match="traced output"):
        tk.backward(3.0, "feedback")
    with pytest.raises(tk.errors.FeedbackError, match="neither"):
        tk.Feedback()


def test_tensor_loss_gives_gradients_and_nan_loss_is_not_propagated():
    w = tk.param(torch.tensor([1.0, 2.0]), name="w")
    pred = torch.sum(w * torch.tensor([3.0, 4.0]))
    loss = (pred - 10.0) ** 2
    tk.backward(pred, loss)
    assert w.data.grad.tolist() == pytest.approx([2 * (11 - 10) * 3, 2 * (11 - 10) * 4])
    w.data.grad = None
    bad = torch.sum(w) * float("nan")
    tk.backward(bad, bad)
    assert w.data.grad is None and w.feedback[-1].loss_is_finite is False


def test_loss_to_float_is_the_one_conversion_of_losses():
    import numpy as np

    from tracekit.errors import FeedbackError
    from tracekit.feedback import loss_to_float

    w = torch.tensor([2.0], requires_grad=True)
    assert loss_to_float(3) == 3.0 and loss_to_float(True) == 1.0
    assert loss_to_float((w * 2).sum()) == 4.0  # a tensor with a graph
    assert loss_to_float(np.float32(1.5)) == 1.5 and loss_to_float(np.array([2.5])) == 2.5
    assert loss_to_float(tk.node(0.25)) == 0.25
    assert loss_to_float(tk.Feedback(loss=torch.tensor(0.5), text="ok")) == 0.5
    with pytest.raises(FeedbackError, match=r"shape \(2,\).*loss.mean\(\)"):
        loss_to_float(torch.ones(2))
    with pytest.raises(FeedbackError, match="no loss"):
        loss_to_float(tk.Feedback(text="only words"))
    with pytest.raises(FeedbackError, match="got str"):
        loss_to_float("0.5")


def test_takes_argument_tells_how_an_objective_is_called():
    from tracekit.seam import takes_argument

    assert takes_argument(lambda values: 0.0)
    assert not takes_argument(lambda: 0.0)
    assert not takes_argument(lambda scale=1.0: 0.0)  # defaults: called as objective()
    assert not takes_argument(lambda *, values: 0.0)
    assert not takes_argument(print)  # no readable signature in some builds: objective()
    assert takes_argument(type("Objective", (), {"__call__": lambda self, values: 0.0})())


def test_node_backward_is_tk_backward():
    """Trace's spelling: out.backward(feedback) records what tk.backward records."""
    w = tk.param(torch.ones(2), name="w")
    out = (w * 2).sum()
    graph = out.backward(out.data)  # a scalar tensor loss: gradients flow
    assert torch.equal(w.raw.grad, torch.full((2,), 2.0))
    assert graph.parameters == [w] and len(w.feedback) == 1
    t = tk.param("text", name="t")
    (t + "!").backward()  # default feedback: empty text
    assert [r.feedback.text for r in t.feedback] == [""]
    assert (w * 1).parameter_dependencies == {w}
