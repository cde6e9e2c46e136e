"""Port of Trace's tests/unit_tests/test_nodes.py."""

import copy

import numpy as np

from tests.compat.helpers import contain, differs
from tracekit.trace import Node, node
from tracekit.trace import operators as ops


def test_sum_of_str():
    x = node("NodeX")
    y = node("NodeY")
    z = ops.add(x=x, y=y)
    assert z.data == x.data + y.data
    assert x in z.parents and y in z.parents
    env = {"x": x, "y": y}
    for k, v in z.inputs.items():
        assert env[k] == v


@differs("nodes do not reference their children (no `children`): tracekit keeps only parent "
         "links so that dropping an output frees its graph; walk `parents` from the output")
def test_children_links():
    x = node("NodeX")
    y = node("NodeY")
    z = ops.add(x=x, y=y)
    assert z in x.children and z in y.children


def test_join_of_str():
    x = node("NodeX")
    y = node("NodeY")
    z = node("+").join([x, y])
    assert z.data == x.data + "+" + y.data


def test_sum_of_integers():
    x = node(1)
    y = node(2)
    z = ops.add(x, y)
    assert z.data == x.data + y.data
    assert x in z.parents and y in z.parents
    env = {"x": x, "y": y}
    for k, v in z.inputs.items():
        assert env[k] == v


def test_condition():
    x, y = node(1), node(2)
    condition = node(True)
    z = ops.cond(condition, x, y)
    assert z.data == x.data if condition.data else y.data
    assert x in z.parents and y in z.parents and condition in z.parents
    env = {"x": x, "y": y, "condition": condition}
    for k, v in z.inputs.items():
        assert env[k] == v


def test_getitem_of_list_of_nodes():
    index = node(0)
    x = node([node(1), node(2), node(3)])
    z = ops.getitem(x, index)
    assert z == x[index]
    assert z is not x[index]  # different calls create different nodes
    assert z.data == x.data[index.data].data
    assert x in z.parents and index in z.parents


@differs("a node returned by (or read inside) a bundled call becomes one more input of the "
         "call, named __used__<name>: tracekit records every node a result depends on")
def test_getitem_of_list_of_nodes_inputs():
    index = node(0)
    x = node([node(1), node(2), node(3)])
    z = ops.getitem(x, index)
    env = {"x": x, "index": index}
    for k, v in z.inputs.items():
        assert env[k] == v


def test_getitem_of_list():
    index = node(0)
    x = node([1, 2, 3])
    z = ops.getitem(x, index)
    assert z == x[index]
    assert z.data == x.data[index.data]
    assert x in z.parents and index in z.parents


def test_iterables():
    x = node([1, 2, 3])
    for k, v in enumerate(x):
        assert v.data == x.data[k]
    x = node(dict(a=1, b=2, c=3))
    for k, v in x.items():
        assert v.data == x.data[k.data]


def test_identity_and_clone():
    z = ops.getitem(node([1, 2, 3]), node(0))
    z_new = ops.identity(z)
    z_clone = z.clone()
    assert z_new.data == z.data
    assert z_clone.data == z.data
    assert contain(z_new.parents, z) and len(z_new.parents) == 1
    assert contain(z_clone.parents, z) and len(z_clone.parents) == 1


@differs("copy.deepcopy copies a node together with its history (the parents are copied too), "
         "so that deep copies of feedback records and optimizers keep whole graphs; for a "
         "detached copy write node(copy.deepcopy(z.data)), for a traced one z.clone()")
def test_deepcopy_detaches():
    z = ops.getitem(node([1, 2, 3]), node(0))
    z_copy = copy.deepcopy(z)
    assert z_copy.data == z.data
    assert not contain(z_copy.parents, z) and len(z_copy.parents) == 0


def test_magic_function():
    x = node("NodeX")
    y = node("NodeY")
    z = x + y
    assert z.data == x.data + y.data
    assert x in z.parents and y in z.parents
    env = {"x": x, "y": y}
    for k, v in z.inputs.items():
        assert env[k] == v


def test_boolean_operators():
    x = node(1)
    y = node(2)
    z = x < y
    assert z.data == (x.data < y.data)
    assert bool(z)


def test_hash():
    x = node(1)
    y = node(1)
    assert y in [x]
    assert y not in {x}
    assert hash(x) != hash(y)


def test_callable_node():
    def fun(x):
        return x + 1

    fun_node = node(fun)
    output = fun_node(node(2))
    assert output == 3
    assert len(output.parents) == 2


def test_trainable_of_trainable():
    a = []
    x = node(a, trainable=True)
    y = node(x, trainable=True)  # a separate node whose data is the same object
    assert x.data is y.data
    x = node(a, trainable=False)
    y = node(x, trainable=True)
    assert x.data is y.data


@differs("a plain node has no description and a parameter's description is the user's text "
         "(no '[Node]' / '[ParameterNode]' prefix); the LLM sees the kind and name separately")
def test_description():
    x = node(1, description="x")
    assert x.description == "[Node] x"
    x = node(1, description="x", trainable=True)
    assert x.description == "[ParameterNode] x"


def test_parameter_keeps_the_description():
    x = node(1, description="x", trainable=True)
    assert x.description == "x"


def test_iterating_numpy_array():
    x = node(np.array([1, 2, 3]))
    for i, v in enumerate(x):
        assert isinstance(v, Node)
        assert v.data == x.data[i]
