"""Port of Trace's tests/unit_tests/test_containers.py (Seq and Map)."""

import pickle

from tracekit.trace import Map, Seq, node


def roundtrip(obj, tmp_path):
    path = tmp_path / "test.pkl"
    path.write_bytes(pickle.dumps(obj))
    return pickle.loads(path.read_bytes())


def test_map_pickles(tmp_path):
    a = Map({"a": 1, "b": 2})
    b = roundtrip(a, tmp_path)
    assert a == b
    assert a["a"] == 1 and a["b"] == 2
    assert type(a["a"]) == int  # noqa: E721


def test_seq_pickles(tmp_path):
    a = Seq([1, 2, 3])
    b = roundtrip(a, tmp_path)
    assert a == b
    assert a[0] == 1 and a[1] == 2 and a[2] == 3


def test_containers_of_nodes_pickle(tmp_path):
    a = Map({"a": 1, "b": node(2)})
    assert a == roundtrip(a, tmp_path)
    a = Seq([1, 2, node(3)])
    assert a == roundtrip(a, tmp_path)


def test_nested_parameter_retrieval():
    a = Seq([1, 2, Seq(3, 4, 5)])
    assert a.parameters() == [], "Seq itself is not a parameter node"
    a = Seq([1, node(2, trainable=True), Seq(3, node(4, trainable=True), 5)])
    assert len(a.parameters()) == 2
    a = Map({"a": 1, "b": node(2, trainable=True), node("c", trainable=True): 3})
    assert len(a.parameters()) == 2, "both keys and values can be parameters"
    a = Map({"a": 1, "b": node(2, trainable=True), "c": Seq(3, node(4, trainable=True), 5)})
    assert len(a.parameters()) == 2


def test_seq_indexed_by_a_node_does_not_crash_the_program():
    a = node(3, trainable=True)
    b = Seq([1, 2, 3, 4])
    try:  # work in progress in Trace too: only checks that nothing else breaks
        b[a]
    except Exception:
        pass


def test_a_model_finds_the_parameters_in_its_containers():
    from tracekit.trace import model

    @model
    class Agent:
        def __init__(self):
            self.tools = Seq([node("search", trainable=True), 1])
            self.prompts = Map({"system": node("Be brief.", trainable=True)})

    assert [p.data for p in Agent().parameters()] == ["search", "Be brief."]
