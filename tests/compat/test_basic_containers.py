"""Port of Trace's tests/unit_tests/test_basic_containers.py."""

from tests.compat.helpers import contain
from tracekit import trace
from tracekit.trace import operators as ops


def test_node_of_list():
    x = trace.node([1, 2, 3])
    for i in x:
        assert isinstance(i, trace.Node)
        assert x in i.parents
    y = trace.node((4, 5, 6))
    x = ops.list_extend(x, y)
    assert len(x) == 6
    for i in range(6):
        assert i + 1 in x


def test_node_of_dict():
    x = trace.node(dict(a=1, b=2, c=3))
    for k, v in x.items():
        assert isinstance(k, trace.Node)
        assert isinstance(v, trace.Node)
        assert contain(k.parents[0].parents, x)
        assert contain(v.parents, x)
    for i in x.keys():
        assert isinstance(i, trace.Node)
        assert contain(i.parents[0].parents, x)
    for i in x.values():
        assert isinstance(i, trace.Node)
        assert contain(i.parents[0].parents, x)


def test_dict_of_nodes():
    x = trace.node(dict(a=1, b=2, c=3))
    y = {}
    y.update(x)
    for k, v in y.items():  # the same effect as x.items()
        assert isinstance(k, trace.Node)
        assert isinstance(v, trace.Node)
        assert contain(k.parents[0].parents, x)
        assert contain(v.parents, x)


def test_dict_update_operator():
    x = trace.node(dict(a=1, b=2, c=3))
    y = trace.node({})
    y = ops.dict_update(y, x)
    for k, v in y.items():
        assert isinstance(k, trace.Node)
        assert isinstance(v, trace.Node)
        assert contain(k.parents[0].parents, y)
        assert contain(v.parents, y)
