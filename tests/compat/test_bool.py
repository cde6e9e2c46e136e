"""Port of Trace's tests/unit_tests/test_bool.py: `and` / `or` with nodes follow Python's
short-circuit rules on the nodes' truth values."""

from tracekit import trace


def test_true_node_and():
    x = trace.node(True)
    y = True and x
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = x and True
    assert y == True and type(y) == bool  # noqa: E712, E721
    y = trace.node(True) and x
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = x and trace.node(True)
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = False and x
    assert y == False and type(y) == bool  # noqa: E712, E721
    y = x and False
    assert y == False and type(y) == bool  # noqa: E712, E721
    y = trace.node(False) and x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x and trace.node(False)
    assert y == False and type(y) == trace.Node  # noqa: E712, E721


def test_true_node_or():
    x = trace.node(True)
    y = True or x
    assert y == True and type(y) == bool  # noqa: E712, E721
    y = x or True
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = x or trace.node(True)
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = False or x
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = x or False
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = trace.node(False) or x
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = x or trace.node(False)
    assert y == True and type(y) == trace.Node  # noqa: E712, E721


def test_false_node_and():
    x = trace.node(False)
    y = True and x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x and True
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = trace.node(True) and x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x and trace.node(True)
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = False and x
    assert y == False and type(y) == bool  # noqa: E712, E721
    y = x and False
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = trace.node(False) and x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x and trace.node(False)
    assert y == False and type(y) == trace.Node  # noqa: E712, E721


def test_false_node_or():
    x = trace.node(False)
    y = True or x
    assert y == True and type(y) == bool  # noqa: E712, E721
    y = x or True
    assert y == True and type(y) == bool  # noqa: E712, E721
    y = x or trace.node(True)
    assert y == True and type(y) == trace.Node  # noqa: E712, E721
    y = False or x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x or False
    assert y == False and type(y) == bool  # noqa: E712, E721
    y = trace.node(False) or x
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
    y = x or trace.node(False)
    assert y == False and type(y) == trace.Node  # noqa: E712, E721
