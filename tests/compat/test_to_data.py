"""Port of Trace's tests/unit_tests/test_to_data.py: turning nodes, also nested in
containers, into plain values. tracekit's spelling is `node.data` for one node; nodes inside
containers are unwrapped by every traced call (bundles, method calls on nodes)."""

from tests.compat.helpers import differs
from tracekit.trace import node


@differs("there is no to_data(): read node.data; nodes nested in containers are unwrapped "
         "when they are passed to a bundled function or a method of a node")
def test_to_data_function():
    from tracekit.trace import to_data  # noqa: F401


def test_unnested():
    assert node(1).data == 1
    assert node({"2": 2}).data == {"2": 2}
    assert node([1, 2, 3]).data == [1, 2, 3]


def test_container_over_nodes_is_unwrapped_by_a_traced_call():
    total = node(sum)([node(1), node(2), node(3)])
    assert total.data == 6 and len(total.parents) == 4


def test_node_over_container_over_container_over_node():
    a = node(({node(1): node("1")},))
    values = node(lambda t: [(k.data, v.data) for d in t for k, v in d.items()])(a)
    assert values.data == [(1, "1")]
