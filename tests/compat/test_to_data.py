"""Port of Trace's tests/unit_tests/test_to_data.py: `to_data` turns nodes, also nested in
containers, into plain values."""

from tracekit.trace import node, to_data


def test_unnested():
    a = node(1)
    assert to_data(a) == 1
    a = node({"2": 2})
    assert to_data(a) == {"2": 2}
    a = node([1, 2, 3])
    assert to_data(a) == [1, 2, 3]


def test_node_over_container():
    a = node([node(1), node(2), node(3)])
    assert to_data(a) == [1, 2, 3]


def test_container_over_node():
    a = [node(1), node(2), node(3)]
    assert to_data(a) == [1, 2, 3]


def test_container_over_container_over_node():
    a = ({node(1): node("1")},)  # Trace: "currently fails, and we don't expect this to work"
    assert to_data(a) == ({1: "1"},)


def test_node_over_container_over_container_over_node():
    a = node(({node(1): node("1")},))
    assert to_data(a) == ({1: "1"},)
