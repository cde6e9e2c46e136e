"""Modules: parameter discovery, state dicts, save/load (JSON manifest + safetensors)."""

import json

import pytest
import torch
from safetensors import safe_open

import tracekit as tk
from tests.legacy_format import save_module_v1


class Retriever(tk.Module):
    def __init__(self):
        self.k = tk.param(3, name="k", bounds=(1, 10))
        self.method = tk.param("bm25", name="method", choices=["bm25", "dense"])


class Pipeline(tk.Module):
    def __init__(self):
        self.instruction = tk.param("Answer briefly.", name="instruction")
        self.retriever = Retriever()
        self.heads = [tk.param(torch.zeros(2), name="w0"), tk.param(torch.ones(2), name="w1")]
        self.extra = {"temperature": tk.param(0.7, name="temperature", bounds=(0.0, 2.0))}
        self.frozen = tk.param("fixed", name="frozen", trainable=False)
        self.shared = self.instruction  # the same parameter twice is listed once

    @tk.bundle(trainable=True)
    def postprocess(self, text):
        return text.strip()

    def forward(self, q):
        return self.postprocess(self.instruction + q)


def test_named_parameters_walk_attributes_nested_modules_containers_and_code():
    names = [n for n, _ in Pipeline().named_parameters()]
    assert names == ["postprocess", "instruction", "retriever.k", "retriever.method",
                     "heads.0", "heads.1", "extra.temperature"]


def test_state_dict_round_trip_through_a_manifest_and_safetensors(tmp_path):
    a = Pipeline()
    a.instruction.data = "Use one word."
    a.retriever.k.data = 7
    a.heads[1].data = [5.0, 6.0]
    a.postprocess.code_param.data = "def postprocess(self, text):\n    return text.upper()"
    a.save(tmp_path / "state.json")
    a.heads[0].data = [1.0, 2.0]
    path = a.save(tmp_path / "state.json")  # the previous payload is replaced, not left behind
    manifest = json.loads(path.read_text())
    payload = tmp_path / manifest["payload"]["file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["state.json", payload.name])  # no temp files
    assert manifest["parameters"]["instruction"]["value"] == "Use one word."  # small values stay readable JSON
    with safe_open(payload, framework="pt") as f:  # tensors: plain safetensors, readable by other tools
        assert sorted(f.keys()) == ["/parameters/heads.0/value", "/parameters/heads.1/value"]
        assert f.get_tensor("/parameters/heads.1/value").tolist() == [5.0, 6.0]
    b = Pipeline()
    b.load(path)
    assert b.instruction.data == "Use one word."
    assert b.retriever.k.data == 7 and type(b.retriever.k.data) is int
    assert b.heads[1].data.tolist() == [5.0, 6.0] and b.heads[1].data.requires_grad
    assert b(" hi").data == "USE ONE WORD. HI"


def test_loading_a_file_from_another_model_is_refused_with_reason(tmp_path):
    path = Retriever().save(tmp_path / "r.json")
    p = Pipeline()
    with pytest.raises(tk.StateDictError, match="saved from model"):
        p.load(path)
    with pytest.raises(tk.StateDictError, match="missing keys"):
        p.load(path, strict=False) if False else p.load_state_dict(json.loads(path.read_text())["parameters"])


def test_not_a_state_file_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(tk.StateDictError, match="invalid JSON"):
        Pipeline().load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(tk.StateDictError, match="not a tracekit state file"):
        Pipeline().load(other)
    with pytest.raises(tk.StateDictError, match="no state file"):
        Pipeline().load(tmp_path / "absent.json")


def test_a_bad_value_in_a_state_leaves_the_model_unchanged():
    p = Pipeline()
    state = p.state_dict()
    state["instruction"]["value"] = "New instruction"
    state["retriever.method"]["value"] = "sparse"  # not a choice
    with pytest.raises(tk.StateDictError, match="retriever.method"):
        p.load_state_dict(state)
    assert p.instruction.data == "Answer briefly."
    state["retriever.method"]["kind"] = "text"
    with pytest.raises(tk.StateDictError, match="has kind"):
        p.load_state_dict(state)


def test_non_strict_load_takes_matching_keys():
    p = Pipeline()
    p.load_state_dict({"instruction": {"kind": "text", "value": "Short."}}, strict=False)
    assert p.instruction.data == "Short."


def test_model_decorator_makes_a_module():
    @tk.model
    class Plain:
        def __init__(self):
            self.p = tk.param("x", name="p")

        def forward(self, q):
            return self.p + q

    m = Plain()
    assert isinstance(m, tk.Module)
    assert [n for n, _ in m.named_parameters()] == ["p"]
    assert m(tk.node("y")).data == "xy"
    assert m.save.__self__ is m


def test_module_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        tk.Module()()


def test_a_file_in_the_first_format_still_loads(tmp_path):
    a = Pipeline()
    a.instruction.data = "Old file."
    a.heads[1].data = [3.0, 4.0]
    path = save_module_v1(a, tmp_path / "old.json")
    assert json.loads(path.read_text())["parameters"]["heads.1"]["value"]["__tensor__"] == [3.0, 4.0]
    b = Pipeline()
    b.load(path)
    assert b.instruction.data == "Old file." and b.heads[1].data.tolist() == [3.0, 4.0]
