"""Checkpoints and run logs, written atomically (temporary file, then rename).

A run directory holds:

    checkpoint.json   parameters, best parameters, optimizer (solver) states, RNG states,
                      position in the data, and the full history: enough to resume
                      (a `tracekit.storage` manifest: tensors live in the safetensors
                      payload beside it, checkpoint.json.<hash>.safetensors)
    log.jsonl         one JSON record per step (scores, parameter values, tokens, cost, time)
    best.json         the best parameters found so far, {name: value}
    summary.json      the run's summary, written when training ends
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from tracekit import storage
from tracekit.errors import StateDictError
from tracekit.fileio import atomic_write_json, atomic_write_text
from tracekit.module import copy_value, validated
from tracekit.nodes import ParameterNode, _is_tensor

CHECKPOINT_FORMAT = "tracekit.checkpoint/2"
#: Checkpoints of the first format (tensors as nested JSON lists) still resume.
CHECKPOINT_FORMATS = (CHECKPOINT_FORMAT, "tracekit.checkpoint/1")
CHECKPOINT_FILE = "checkpoint.json"
LOG_FILE = "log.jsonl"
BEST_FILE = "best.json"
SUMMARY_FILE = "summary.json"


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of `value` for the run log and summaries (read by people and
    plotting tools, not loaded back): tensors as tagged lists, tuples and sets as lists,
    dataclasses as dicts, non-finite floats as strings, anything else as its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _is_tensor(value):
        t = value.detach().cpu()
        return {"__tensor__": t.tolist(), "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if type(value).__module__ == "numpy":
        tolist = getattr(value, "tolist", None)
        if tolist is not None:
            return jsonable(tolist())
    return repr(value)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """`atomic_write_json` of a JSON-ready copy of `payload`."""

    return atomic_write_json(path, jsonable(payload))


# --- parameters ---------------------------------------------------------------------------
def snapshot(params: Iterable[tuple[str, ParameterNode]]) -> dict[str, Any]:
    """{name: value} of parameters (tensors detached and copied)."""
    return {name: copy_value(p.raw) for name, p in params}


def stage(params: Iterable[tuple[str, ParameterNode]], values: Any, what: str = "snapshot",
          strict: bool = False) -> list[tuple[ParameterNode, Any]]:
    """(parameter, validated value) pairs for a snapshot, checked by each parameter's own
    validation; nothing is written. strict: the names must match exactly."""
    params = list(params)
    if not isinstance(values, dict):
        raise StateDictError(f"{what} must be a dict of parameter values, got {type(values).__name__}")
    if strict:
        names = {name for name, _ in params}
        if set(values) != names:
            raise StateDictError(f"{what} is for parameters {sorted(values)}, this run trains {sorted(names)}; "
                                 f"it was written by another run (use another run_dir, or resume=False)")
    return [(p, validated(p, name, storage.decode(values[name], what=f"{what} entry {name!r}")))
            for name, p in params if name in values]


def restore(params: Iterable[tuple[str, ParameterNode]], values: dict[str, Any]) -> None:
    """Write a snapshot back; every value is validated before any is written."""
    for p, value in stage(params, values):
        p.write(value)  # validated by stage()


class HasRaw(Protocol):
    """What `plain_values` reads of a parameter: its value, `.raw` (a `ParameterNode`, or a
    stand-in holding a candidate's value)."""

    @property
    def raw(self) -> Any: ...


def plain_values(params: Iterable[tuple[str, HasRaw]], max_tensor: int = 64) -> dict[str, Any]:
    """Parameter values for a log record: small tensors as lists, large ones summarized."""
    out: dict[str, Any] = {}
    for name, p in params:
        value = p.raw
        if _is_tensor(value):
            out[name] = value.detach().cpu().tolist() if value.numel() <= max_tensor else \
                f"tensor(shape={tuple(value.shape)}, norm={float(value.detach().float().norm()):.6g})"
        else:
            out[name] = jsonable(value)
    return out


# --- random number generators -------------------------------------------------------------
def rng_state(rng: random.Random) -> dict[str, Any]:
    """States of the trainer's RNG and of the global Python, NumPy and torch RNGs in use."""
    state: dict[str, Any] = {"trainer": _py_state(rng.getstate()), "python": _py_state(random.getstate())}
    np = sys.modules.get("numpy")
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = [kind, keys.copy(), int(pos), int(has_gauss), float(gauss)]
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
    return state


def set_rng_state(rng: random.Random, state: dict[str, Any]) -> None:
    """Set every RNG from `rng_state`'s output; all states are checked before any is set."""
    for setter in stage_rng_state(rng, state):
        setter()


def stage_rng_state(rng: random.Random, state: Any) -> list[Any]:
    """Check RNG states on scratch generators and return the calls that set the real ones;
    a malformed state raises StateDictError and sets nothing."""
    if not isinstance(state, dict) or "trainer" not in state:
        raise StateDictError("checkpoint 'rng' entry is malformed: expected a dict with a 'trainer' state")
    setters: list[Callable[[], object]] = []
    try:
        for key, target in (("trainer", rng), ("python", random)):
            if key in state:
                py_state = _py_tuple(state[key])
                random.Random().setstate(py_state)
                setters.append(functools.partial(target.setstate, py_state))
        if "numpy" in state:
            import numpy as np

            kind, keys, pos, has_gauss, gauss = state["numpy"]
            np_state = (kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(gauss))
            np.random.RandomState().set_state(np_state)
            setters.append(functools.partial(np.random.set_state, np_state))
        if "torch" in state:
            import torch

            torch_state = torch.as_tensor(state["torch"], dtype=torch.uint8)
            torch.Generator().set_state(torch_state)
            setters.append(functools.partial(torch.set_rng_state, torch_state))
    except StateDictError:
        raise
    except Exception as exc:
        raise StateDictError(f"checkpoint 'rng' entry is malformed: {type(exc).__name__}: {exc}") from None
    return setters


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, and NumPy and torch when they are imported."""
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_tuple(state: Any) -> tuple:
    version, internal, gauss = state
    return (version, tuple(int(x) for x in internal), gauss)


# --- files --------------------------------------------------------------------------------
def save_checkpoint(run_dir: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write the checkpoint (manifest + tensor payload) atomically; a crash leaves the
    previous one intact."""
    return storage.save(Path(run_dir) / CHECKPOINT_FILE, {"format": CHECKPOINT_FORMAT, **payload})


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint in `run_dir` (tensors restored), or None when there is none; a damaged
    one raises DamagedFileError (a StateDictError) naming the problem."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return storage.load(path, "checkpoint", CHECKPOINT_FORMATS)


#: The checkpoint entries a resume reads, with the type each must have.
_CHECKPOINT_TYPES: dict[str, Any] = {
    "step": int, "epoch": int, "position": int, "order": list, "stop_reason": (str, type(None)),
    "best_score": (int, float, type(None)), "best_step": int, "bad_steps": int, "best_params": dict,
    "elapsed": (int, float), "params": dict, "rng": dict, "history": list,
    "optimizer": (dict, type(None)),
}


def check_checkpoint(saved: dict[str, Any], where: str = "checkpoint") -> None:
    """Raise StateDictError when an entry a resume needs is missing or of the wrong type."""
    for key, types in _CHECKPOINT_TYPES.items():
        if key == "optimizer" and key not in saved:
            continue
        if key not in saved:
            raise StateDictError(f"{where} has no {key!r} entry; it is damaged or not a tracekit checkpoint")
        value = saved[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise StateDictError(f"{where} entry {key!r} is a {type(value).__name__}; it is damaged")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in saved["order"]):
        raise StateDictError(f"{where} entry 'order' must be a list of example indices; it is damaged")
    for i, record in enumerate(saved["history"]):
        _check_record(record, f"{where} history record {i}")
    if min(saved["step"], saved["epoch"], saved["position"], saved["best_step"], saved["bad_steps"]) < 0:
        raise StateDictError(f"{where} has a negative step, epoch or position; it is damaged")


#: Fields of a history record the trainer computes with, and the types they must have.
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "val_score": (int, float, type(None)), "best_score": (int, float, type(None)),
    "train_score": (int, float, type(None)), "llm_calls": (int,), "prompt_tokens": (int,),
    "completion_tokens": (int,), "cost": (int, float), "seconds": (int, float),
    "val_scores": (dict,),  # objectives=: the per-objective means of a full validation
}
_RECORD_REQUIRED = ("val_score", "best_score")


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise StateDictError(f"{where} is a {type(record).__name__}, not a record; the checkpoint is damaged")
    for key in _RECORD_REQUIRED:
        if key not in record:
            raise StateDictError(f"{where} has no {key!r}; the checkpoint is damaged")
    for key, types in _RECORD_TYPES.items():
        if key.endswith("score") and record.get(key) in ("nan", "inf", "-inf"):
            continue  # a non-finite score, as `jsonable` writes it
        if key in record and (isinstance(record[key], bool) or not isinstance(record[key], types)):
            raise StateDictError(f"{where} field {key!r} is a {type(record[key]).__name__}; the checkpoint is damaged")


def write_log(run_dir: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Rewrite the whole JSONL run log atomically (used when resuming)."""
    text = "".join(json.dumps(jsonable(r)) + "\n" for r in records)
    return atomic_write_text(Path(run_dir) / LOG_FILE, text)


def append_log(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record to the JSONL run log (flushed and synced)."""
    path = Path(run_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run log (a run directory or a .jsonl file); a torn or damaged line
    is skipped (see `tracekit.storage.read_jsonl`)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    return storage.read_jsonl(path, "run log")
