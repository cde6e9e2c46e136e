"""Damaged state files and checkpoints, generated (hypothesis): every one gives one typed
error (`tk.StateDictError` or its subclass `tk.DamagedFileError`) and leaves the model,
the optimizer and the RNGs exactly as they were -- or, when the damage happens to leave a
valid file, loads values each parameter's own validation accepts. Never another exception.

Runs the "ci" hypothesis profile by default (tests/conftest.py); run it long with
`python -m pytest tests/core/test_damaged_files.py --hypothesis-profile=long`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

import tracekit as tk
from tests.legacy_format import save_module_v1
from tests.train.helpers import ListSolver
from tracekit import seam, storage
from tracekit.training import Trainer


class Agent(tk.Module):
    """Every kind of parameter: text, code, bounded float, int, categorical, tensor."""

    def __init__(self) -> None:
        self.prompt = tk.param("Answer briefly.", name="prompt")
        self.temperature = tk.param(0.7, name="temperature", bounds=(0.0, 2.0))
        self.k = tk.param(3, name="k", bounds=(1, 10))
        self.style = tk.param("plain", name="style", choices=["plain", "formal"])
        self.w = tk.param(torch.arange(6.0).reshape(2, 3), name="w")

    @tk.bundle(trainable=True)
    def act(self, x):
        return x.strip()

    def forward(self, x):
        return self.act(self.prompt + x)


class Other(tk.Module):
    def __init__(self) -> None:
        self.question = tk.param("Why?", name="question")


def trained_agent() -> Agent:
    a = Agent()
    a.prompt.data = "Answer in one word."
    a.temperature.data = 1.25
    a.k.data = 7
    a.style.data = "formal"
    a.w.data = torch.full((2, 3), 0.5)
    a.act.code_param.data = "def act(self, x):\n    return x.upper()"
    return a


def values(module: tk.Module) -> dict[str, Any]:
    return {n: (p.raw.detach().clone(), p.raw.dtype) if p.is_tensor else (p.raw, type(p.raw))
            for n, p in module.named_parameters()}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for name in a:
        (x, tx), (y, ty) = a[name], b[name]
        if tx != ty:
            return False
        if isinstance(x, torch.Tensor) and not torch.equal(x, y):
            return False
        if not isinstance(x, torch.Tensor) and x != y:
            return False
    return True


def all_valid(module: tk.Module) -> bool:
    for _, p in module.named_parameters():
        p.validate(p.raw)  # raises when a loaded value is one the parameter refuses
    return True


def load_expecting_typed_error_or_valid(path: Path, must_fail: bool = False) -> None:
    """The property itself: load into a fresh model; either it raises StateDictError and
    the model is untouched, or it loads and every value is valid."""
    model = Agent()
    before = values(model)
    try:
        model.load(path)
    except tk.StateDictError as exc:
        assert str(exc)
        assert same(values(model), before), "a refused file changed the model"
        return
    assert not must_fail, "a damaged file loaded without an error"
    assert all_valid(model)


# --- strategies ---------------------------------------------------------------------------------
json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
               | st.text(max_size=30))
json_values = st.recursive(json_leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                             max_size=4), max_leaves=12)


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


def replaced(obj: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state file (manifest + payload) of a trained agent."""
    directory = tmp_path_factory.mktemp("saved")
    return trained_agent().save(directory / "agent.json")


def copy_of(saved: Path, tmp: Path) -> Path:
    for f in saved.parent.iterdir():
        shutil.copy(f, tmp / f.name)
    return tmp / saved.name


def fresh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("case")


def payload_of(manifest_path: Path) -> Path:
    return manifest_path.with_name(json.loads(manifest_path.read_text())["payload"]["file"])


def rewrite_payload(manifest_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the payload with `tensors` and fix up the manifest's hash (a tampered pair)."""
    payload = payload_of(manifest_path)
    save_file(tensors, payload)
    manifest = json.loads(manifest_path.read_text())
    manifest["payload"]["sha256"] = hashlib.sha256(payload.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


W = "/parameters/w/value"


# --- Module.load: bytes ---------------------------------------------------------------------------
@given(data=st.data())
def test_a_truncated_state_file_is_refused(saved, tmp_path_factory, data):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    text = path.read_bytes()
    path.write_bytes(text[: data.draw(st.integers(0, len(text) - 1), label="cut")])
    load_expecting_typed_error_or_valid(path, must_fail=True)


@given(data=st.data())
def test_bytes_overwritten_anywhere_in_the_manifest(saved, tmp_path_factory, data):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    text = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        text[data.draw(st.integers(0, len(text) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(text))
    load_expecting_typed_error_or_valid(path)


@given(value=json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_state_file_of_the_wrong_top_level_type_is_refused(tmp_path_factory, value):
    path = fresh_dir(tmp_path_factory) / "agent.json"
    path.write_text(json.dumps(value))
    with pytest.raises(tk.DamagedFileError, match="not a dict"):
        Agent().load(path)


@given(depth=st.integers(101, 200_000), where=st.sampled_from(["file", "value", "tuple"]))
def test_deep_nesting_gives_a_typed_error_not_recursion_error(saved, tmp_path_factory, depth, where):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    if where == "file":
        path.write_text("[" * depth + "]" * depth)
    else:
        manifest = json.loads(path.read_text())
        inner = '{"__tuple__": [' * depth + "1" + "]}" * depth if where == "tuple" else "[" * depth + "]" * depth
        text = json.dumps(manifest).replace('"Answer in one word."', inner)
        path.write_text(text)
    load_expecting_typed_error_or_valid(path, must_fail=True)


def test_deep_nesting_in_memory_gives_a_typed_error():
    deep: Any = "x"
    for _ in range(50_000):
        deep = [deep]
    state = Agent().state_dict()
    state["prompt"]["value"] = deep
    model = Agent()
    before = values(model)
    with pytest.raises(tk.StateDictError, match="nested deeper"):
        model.load_state_dict(state)
    assert same(values(model), before)


def test_empty_huge_and_overlong_number_files_are_refused(saved, tmp_path, monkeypatch):
    path = copy_of(saved, tmp_path)
    path.write_text("")
    with pytest.raises(tk.DamagedFileError, match="empty"):
        Agent().load(path)
    path.write_text('{"format": "tracekit.state/2", "k": ' + "9" * 5000 + "}")
    with pytest.raises(tk.DamagedFileError, match="invalid JSON"):
        Agent().load(path)
    monkeypatch.setattr(storage, "MAX_JSON_BYTES", 1000)
    path.write_text(json.dumps({"format": "tracekit.state/2", "pad": "x" * 5000}))
    with pytest.raises(tk.DamagedFileError, match="more than the 1000"):
        Agent().load(path)


# --- Module.load: manifest structure and values ----------------------------------------------------
@given(data=st.data())
def test_any_entry_of_the_manifest_replaced_or_deleted(saved, tmp_path_factory, data):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    manifest = json.loads(path.read_text())
    where = data.draw(st.sampled_from(paths(manifest)[1:]), label="path")
    delete = data.draw(st.booleans(), label="delete")
    path.write_text(json.dumps(replaced(manifest, where, data.draw(json_values, label="value"), delete)))
    load_expecting_typed_error_or_valid(path)


@given(name=st.sampled_from(["temperature", "k"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not -1 <= x <= 11),
                       st.sampled_from([{"__float__": "nan"}, {"__float__": "-inf"}, "NaN", True, None, [1.0]])))
def test_non_finite_out_of_bounds_and_wrong_type_numbers_are_refused(saved, tmp_path_factory, name, value):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    manifest = json.loads(path.read_text())
    manifest["parameters"][name]["value"] = value
    path.write_text(json.dumps(manifest))
    load_expecting_typed_error_or_valid(path, must_fail=True)


@given(choice=st.text(max_size=20).filter(lambda c: c.strip() not in ("plain", "formal")))
def test_unknown_choices_are_refused(saved, tmp_path_factory, choice):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    manifest = json.loads(path.read_text())
    manifest["parameters"]["style"]["value"] = choice
    path.write_text(json.dumps(manifest))
    load_expecting_typed_error_or_valid(path, must_fail=True)


TAMPERED_CODE = [
    "import os\ndef act(self, x):\n    return x",                 # a statement outside the function
    "def act(self, x, y):\n    return x",                         # another signature
    "def other(self, x):\n    return x",                          # another name
    "def act(self, x):\n    return x\nprint('side effect')",      # code at definition time
    "def act(self, x):\n    ret",                                 # fine syntax -- checked by the validator
    "def act(self, x:\n",                                         # does not parse
    "",
]


@given(code=st.one_of(st.sampled_from(TAMPERED_CODE), st.text(max_size=60)))
def test_tampered_code_values_are_refused_or_valid(saved, tmp_path_factory, code):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    manifest = json.loads(path.read_text())
    manifest["parameters"]["act"]["value"] = code
    path.write_text(json.dumps(manifest))
    load_expecting_typed_error_or_valid(path, must_fail=code in TAMPERED_CODE[:4] + TAMPERED_CODE[5:])


def test_a_file_of_another_model_is_refused(tmp_path):
    path = Other().save(tmp_path / "other.json")
    load_expecting_typed_error_or_valid(path, must_fail=True)


# --- Module.load: the safetensors payload ----------------------------------------------------------
def test_a_missing_payload_is_refused(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    payload_of(path).unlink()
    with pytest.raises(tk.DamagedFileError, match="missing"):
        Agent().load(path)


@given(data=st.data())
def test_a_truncated_or_corrupt_payload_is_refused(saved, tmp_path_factory, data):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    payload = payload_of(path)
    raw = bytearray(payload.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        i = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[i] = (raw[i] + data.draw(st.integers(1, 255), label="delta")) % 256
    payload.write_bytes(bytes(raw))
    load_expecting_typed_error_or_valid(path, must_fail=True)


@given(shape=st.lists(st.integers(0, 4), max_size=3).filter(lambda s: s != [2, 3]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]))
def test_a_payload_tensor_of_another_shape_or_dtype_is_refused(saved, tmp_path_factory, shape, dtype):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    rewrite_payload(path, {W: torch.zeros(shape, dtype=dtype)})
    load_expecting_typed_error_or_valid(path, must_fail=True)


@given(bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]), at=st.integers(0, 5))
def test_non_finite_tensor_entries_in_a_consistent_payload_are_refused(saved, tmp_path_factory, bad, at):
    path = copy_of(saved, fresh_dir(tmp_path_factory))
    w = torch.zeros(2, 3)
    w.view(-1)[at] = bad
    rewrite_payload(path, {W: w})
    load_expecting_typed_error_or_valid(path, must_fail=True)


def test_a_payload_without_the_referenced_tensor_is_refused(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    rewrite_payload(path, {"/something/else": torch.zeros(2, 3)})
    with pytest.raises(tk.StateDictError, match="no tensor"):
        Agent().load(path)


def test_a_payload_name_outside_the_directory_is_refused(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    manifest = json.loads(path.read_text())
    manifest["payload"]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(manifest))
    with pytest.raises(tk.DamagedFileError, match="beside it"):
        Agent().load(path)


def test_first_format_files_are_checked_the_same_way(tmp_path):
    path = save_module_v1(trained_agent(), tmp_path / "old.json")
    model = Agent()
    model.load(path)
    assert same(values(model), values(trained_agent()))
    manifest = json.loads(path.read_text())
    manifest["parameters"]["w"]["value"]["shape"] = [3, 3]
    path.write_text(json.dumps(manifest))
    load_expecting_typed_error_or_valid(path, must_fail=True)
    manifest["parameters"]["w"]["value"].update(shape=[2, 3], dtype="load")  # not a dtype
    path.write_text(json.dumps(manifest))
    load_expecting_typed_error_or_valid(path, must_fail=True)


# --- Module.load_state_dict in memory ------------------------------------------------------------
@given(data=st.data())
def test_load_state_dict_of_a_mutated_state(data):
    state = json.loads(json.dumps(Agent().state_dict(), default=lambda t: t.tolist()))
    where = data.draw(st.sampled_from(paths(state)[1:]), label="path")
    state = replaced(state, where, data.draw(json_values, label="value"), data.draw(st.booleans(), label="delete"))
    model = Agent()
    before = values(model)
    try:
        model.load_state_dict(state)
    except tk.StateDictError:
        assert same(values(model), before)
        return
    assert all_valid(model)


# --- the optimizer's state ------------------------------------------------------------------------
def adam_optimizer() -> tuple[tk.ParameterNode, tk.Optimizer]:
    w = tk.param(torch.tensor([1.0, -2.0, 3.0]), name="w")
    opt = tk.Optimizer([w], numeric="adam", lr=0.1)
    for _ in range(2):
        opt.zero_feedback()
        loss = (w * w).sum()
        opt.backward(loss, loss)
        opt.step()
    return w, opt


def optimizer_tensors(opt: tk.Optimizer) -> list[torch.Tensor]:
    state = opt.state_dict()["solvers"]["0:gradient"]["optimizer"]["torch"]["state"]
    return [t.clone() for s in state.values() for t in s.values() if isinstance(t, torch.Tensor)]


@given(data=st.data())
def test_a_damaged_optimizer_state_is_all_or_nothing(tmp_path_factory, data):
    _, opt = adam_optimizer()
    path = storage.save(fresh_dir(tmp_path_factory) / "opt.json", {"format": "test", "state": opt.state_dict()})
    manifest = json.loads(path.read_text())
    where = data.draw(st.sampled_from([p for p in paths(manifest["state"])[1:]]), label="path")
    manifest["state"] = replaced(manifest["state"], where, data.draw(json_values, label="value"))
    path.write_text(json.dumps(manifest))
    _, target = adam_optimizer()
    before, steps = optimizer_tensors(target), target.state_dict()["steps"]
    try:
        target.load_state_dict(storage.load(path, "optimizer state", ["test"])["state"])
    except tk.StateDictError:
        after = optimizer_tensors(target)
        assert len(after) == len(before) and all(torch.equal(a, b) for a, b in zip(after, before))
        assert target.state_dict()["steps"] == steps


def test_an_optimizer_state_round_trips_through_safetensors(tmp_path):
    _, opt = adam_optimizer()
    path = storage.save(tmp_path / "opt.json", {"format": "test", "state": opt.state_dict()})
    _, other = adam_optimizer()
    for t in optimizer_tensors(other):
        t.zero_()
    other.load_state_dict(storage.load(path, "optimizer state", ["test"])["state"])
    assert all(torch.equal(a, b) for a, b in zip(optimizer_tensors(other), optimizer_tensors(opt)))


# --- Trainer resume -------------------------------------------------------------------------------
DATA = [("good day", "pos"), ("bad day", "neg"), ("nice view", "pos"), ("cold soup", "neg")]


def metric(prediction, example):
    return float(str(prediction).strip().lower().endswith(example[0].split()[-1]))


@pytest.fixture(scope="module")
def scripted_solvers():
    saved_factories = dict(seam._factories)
    seam._factories["text"] = lambda params, **o: ListSolver(params, plan={"prompt": ["Be terse.", "Be kind."]})
    seam._factories["bayesian"] = lambda params, **o: ListSolver(params, plan={"temperature": [0.5, 0.9]})
    yield
    seam._factories.clear()
    seam._factories.update(saved_factories)


def make_trainer(run_dir: Path, model: tk.Module | None = None) -> Trainer:
    model = model or Agent()
    return Trainer(model, tk.Optimizer(model.parameters()), metric, train=DATA, batch_size=2, max_steps=2,
                   run_dir=run_dir, resume=True, progress=False, executor="serial", seed=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory, scripted_solvers) -> Path:
    """A run directory with a checkpoint after two steps."""
    run_dir = tmp_path_factory.mktemp("run")
    make_trainer(run_dir).fit()
    return run_dir


def copy_run(run: Path, tmp_path_factory) -> Path:
    target = fresh_dir(tmp_path_factory) / "run"
    shutil.copytree(run, target)
    return target


def resume_expecting_typed_error_or_valid(run_dir: Path, must_fail: bool = False) -> None:
    model = Agent()
    trainer = make_trainer(run_dir, model)
    before, rng = values(model), random.getstate()
    try:
        trainer.fit()
    except tk.StateDictError as exc:
        assert str(exc)
        assert same(values(model), before), "a refused checkpoint changed the model"
        assert random.getstate() == rng, "a refused checkpoint changed the global RNG"
        return
    assert not must_fail, "a damaged checkpoint resumed without an error"
    assert all_valid(model)


def test_a_checkpoint_resumes(run, tmp_path_factory, scripted_solvers):
    run_dir = copy_run(run, tmp_path_factory)
    assert any(f.suffix == ".safetensors" for f in run_dir.iterdir())
    model = Agent()
    result = make_trainer(run_dir, model).fit()
    assert result.steps == 2 and model.prompt.raw in ("Answer briefly.", "Be terse.", "Be kind.")


@given(data=st.data())
def test_a_truncated_checkpoint_is_refused(run, tmp_path_factory, scripted_solvers, data):
    run_dir = copy_run(run, tmp_path_factory)
    path = run_dir / "checkpoint.json"
    text = path.read_bytes()
    path.write_bytes(text[: data.draw(st.integers(0, len(text) - 1), label="cut")])
    resume_expecting_typed_error_or_valid(run_dir, must_fail=True)


@given(data=st.data())
def test_any_entry_of_a_checkpoint_replaced_or_deleted(run, tmp_path_factory, scripted_solvers, data):
    run_dir = copy_run(run, tmp_path_factory)
    path = run_dir / "checkpoint.json"
    manifest = json.loads(path.read_text())
    where = data.draw(st.sampled_from([p for p in paths(manifest)[1:] if p[0] != "payload"]), label="path")
    path.write_text(json.dumps(replaced(manifest, where, data.draw(json_values, label="value"),
                                        data.draw(st.booleans(), label="delete"))))
    resume_expecting_typed_error_or_valid(run_dir)


@given(data=st.data())
def test_a_corrupt_checkpoint_payload_is_refused(run, tmp_path_factory, scripted_solvers, data):
    run_dir = copy_run(run, tmp_path_factory)
    payload = payload_of(run_dir / "checkpoint.json")
    raw = bytearray(payload.read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1), label="at")
    raw[i] ^= data.draw(st.integers(1, 255), label="xor")
    payload.write_bytes(bytes(raw))
    resume_expecting_typed_error_or_valid(run_dir, must_fail=True)


def test_a_checkpoint_from_another_run_is_refused(run, tmp_path_factory, scripted_solvers):
    other = fresh_dir(tmp_path_factory) / "other"
    model = Other()
    Trainer(model, tk.Optimizer(model.parameters()), metric, train=DATA, batch_size=2, max_steps=1,
            run_dir=other, progress=False, executor="serial").fit()
    with pytest.raises(tk.StateDictError, match="another run"):
        make_trainer(other).fit()
    resume_expecting_typed_error_or_valid(other, must_fail=True)


def test_a_first_format_checkpoint_still_resumes(run, tmp_path_factory, scripted_solvers):
    from tracekit.training import checkpoint as ckpt

    run_dir = copy_run(run, tmp_path_factory)
    saved = ckpt.load_checkpoint(run_dir)
    saved.pop("kinds")
    saved["format"] = "tracekit.checkpoint/1"
    payload = payload_of(run_dir / "checkpoint.json")
    # what the first format wrote: one JSON file, tensors as nested lists (the log encoder is that one)
    (run_dir / "checkpoint.json").write_text(json.dumps(ckpt.jsonable(saved)))
    payload.unlink()
    assert "__tensor__" in (run_dir / "checkpoint.json").read_text()
    model = Agent()
    result = make_trainer(run_dir, model).fit()
    assert result.steps == 2 and model.w.raw.shape == (2, 3)


def test_a_crash_between_the_payload_and_the_manifest_keeps_the_old_pair(tmp_path, monkeypatch):
    path = trained_agent().save(tmp_path / "agent.json")
    changed = trained_agent()
    changed.w.data = torch.full((2, 3), -1.0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the payload was written")

    monkeypatch.setattr(storage, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        changed.save(path)
    monkeypatch.undo()
    assert len(list(tmp_path.glob("*.safetensors"))) == 2  # the new payload is written, not yet named
    model = Agent()
    model.load(path)
    assert same(values(model), values(trained_agent()))  # the old manifest and its payload
