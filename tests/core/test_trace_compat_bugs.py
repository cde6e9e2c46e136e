"""Regression tests for four bugs found by porting Trace's unit tests (issue 17):
nodes inside container arguments of traced calls, dict views of a dict node, operators
under `tk.no_trace()`, and deep copies of LLM backends and stepped optimizers."""

import copy
import json
import threading

import pytest

import tracekit as tk
from tracekit.nodes import MessageNode


def test_nodes_inside_a_list_argument_are_unwrapped_and_become_parents():
    x, y = tk.node("NodeX"), tk.node("NodeY")
    sep = tk.node("+")
    z = sep.join([x, y])
    assert z.data == "NodeX+NodeY"
    assert x in z.parents and y in z.parents
    assert any(p.parents and p.parents[0] is sep for p in z.parents)  # the bound method


def test_nodes_inside_tuple_and_dict_arguments_and_keywords_are_parents():
    a, b = tk.node(1), tk.node(2)
    f = tk.node(lambda pair, table, extra=None: (sum(pair), table["k"], extra))
    out = f((a, 5), {"k": b}, extra=[a])
    assert out.data == (6, 2, [1])
    assert sum(p is a for p in out.parents) == 2 and b in out.parents


def test_an_error_inside_a_list_argument_passes_on():
    @tk.bundle()
    def fails(v):
        raise ValueError("bad")

    err = fails(1)
    out = tk.node(",").join([err, tk.node("x")])
    assert out.is_error and "bad" in out.error.message


def test_items_keys_values_of_a_dict_node_are_traced_nodes():
    x = tk.node(dict(a=1, b=2, c=3))
    pairs = x.items()
    assert [(k.data, v.data) for k, v in pairs] == [("a", 1), ("b", 2), ("c", 3)]
    for k, v in pairs:
        assert x in k.parents[0].parents  # key = keys_node[i], keys_node from x
        assert x in v.parents and k in v.parents  # value = x[key]
    assert [k.data for k in x.keys()] == ["a", "b", "c"]
    values = x.values()
    assert [v.data for v in values] == [1, 2, 3]
    assert all(x in v.parents[0].parents for v in values)


def test_dict_update_with_a_dict_node():
    x = tk.node(dict(a=1, b=2))
    y = {}
    y.update(x)
    assert sorted((k.data, v.data) for k, v in y.items()) == [("a", 1), ("b", 2)]
    assert all(x in v.parents for v in y.values())


def test_views_of_non_dict_data_stay_the_datas_own_methods():
    class Table:
        def keys(self):
            return ["only"]

    out = tk.node(Table()).keys()
    assert isinstance(out, MessageNode) and out.data == ["only"]


def test_operators_under_no_trace_record_no_parents():
    x, y = tk.node(1), tk.node(2)
    with tk.no_trace():
        z = x + y
        w = -x
        item = tk.node([1, 2])[0]
        joined = tk.node("+").join([tk.node("a"), tk.node("b")])
    for n in (z, w, item, joined):
        assert n.parents == () and n.inputs == {} and not isinstance(n, MessageNode)
    assert (z.data, w.data, item.data, joined.data) == (3, -1, 1, "a+b")
    assert isinstance(x + y, MessageNode)  # traced again outside the block


def test_torch_functions_under_no_trace_record_no_parents():
    torch = pytest.importorskip("torch")
    w = tk.param(torch.ones(2), name="w")
    with tk.no_trace():
        out = torch.sum(w)
    assert out.parents == ()


def test_deepcopy_of_the_default_backend_shares_it():
    llm = tk.llm.default()
    assert copy.deepcopy(llm) is llm
    assert copy.deepcopy({"llm": llm})["llm"] is llm


def test_deepcopy_of_an_optimizer_after_a_step():
    lock = threading.Lock()

    def llm(messages, **kwargs):
        with lock:  # a scripted model holding a lock, like a real client
            return json.dumps({"reasoning": "r", "suggestion": {"prompt": "Be brief."}})

    prompt = tk.param("Be verbose.", name="prompt")
    opt = tk.Optimizer([prompt], llm=llm)
    opt.zero_feedback()
    opt.backward(prompt + "!", "shorter")
    opt.step()
    assert prompt.data == "Be brief."
    twin = copy.deepcopy(opt)
    assert twin.llm is opt.llm  # the backend is shared
    assert twin.params[0] is not prompt and twin.params[0].data == "Be brief."
    twin.params[0].data = "other"
    assert prompt.data == "Be brief."  # the copy's parameters are its own
