"""Port of Trace's tests/unit_tests/test_apply_op.py: `apply_op` broadcasts an operator over
the nodes of containers of the same structure. tracekit has no NodeContainer broadcasting."""

from tests.compat.helpers import differs


@differs("not supported: tracekit has no NodeContainer / apply_op broadcasting over the fields "
         "of objects; write the loop over the fields (each operation is traced)")
def test_apply_op_broadcasts_over_containers():
    from tracekit.trace import apply_op  # noqa: F401


def test_the_loop_that_replaces_apply_op():
    from tracekit.trace import node
    from tracekit.trace import operators as ops

    foo = {"x": node("foo"), "list_x": [node("foo1"), node("foo2")]}
    bar = {"x": node("bar"), "list_x": [node("bar1"), node("bar2")]}
    foobar = {"x": ops.add(foo["x"], bar["x"]),
              "list_x": [ops.add(a, b) for a, b in zip(foo["list_x"], bar["list_x"])]}
    assert foobar["x"].data == "foobar"
    assert foo["x"] in foobar["x"].parents and bar["x"] in foobar["x"].parents
    assert [n.data for n in foobar["list_x"]] == ["foo1bar1", "foo2bar2"]
