"""Checkpoints and run logs: JSON files written atomically (temporary file, then rename).

A run directory holds:

    checkpoint.json   parameters, best parameters, optimizer (solver) states, RNG states,
                      position in the data, and the full history: enough to resume
    log.jsonl         one JSON record per step (scores, parameter values, tokens, cost, time)
    best.json         the best parameters found so far, {name: value}
    summary.json      the run's summary, written when training ends
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tracekit.fileio import atomic_write_json, atomic_write_text
from tracekit.nodes import ParameterNode, _is_tensor

CHECKPOINT_FORMAT = "tracekit.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.json"
LOG_FILE = "log.jsonl"
BEST_FILE = "best.json"
SUMMARY_FILE = "summary.json"


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of `value`: tensors and arrays as tagged lists, tuples and sets as
    lists, dataclasses as dicts, non-finite floats as strings, anything else as its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _is_tensor(value):
        from tracekit.module import encode_value

        return encode_value(value)
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
    """{name: JSON-ready value} of parameters (tensors copied)."""
    from tracekit.module import encode_value

    return {name: encode_value(p.raw) for name, p in params}


def restore(params: Iterable[tuple[str, ParameterNode]], values: dict[str, Any]) -> None:
    """Write a snapshot back; every value is validated before any is written."""
    from tracekit.module import decode_value

    staged = []
    for name, p in params:
        if name in values:
            staged.append((p, p.validate(decode_value(values[name], p.raw))))
    for p, value in staged:
        p.set(value)


def plain_values(params: Iterable[tuple[str, ParameterNode]], max_tensor: int = 64) -> dict[str, Any]:
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
        state["numpy"] = [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state().tolist()
    return state


def set_rng_state(rng: random.Random, state: dict[str, Any]) -> None:
    rng.setstate(_py_tuple(state["trainer"]))
    if "python" in state:
        random.setstate(_py_tuple(state["python"]))
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        import torch

        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


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


def _py_tuple(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# --- files --------------------------------------------------------------------------------
def save_checkpoint(run_dir: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; a crash leaves the previous one intact."""
    return write_json(Path(run_dir) / CHECKPOINT_FILE, {"format": CHECKPOINT_FORMAT, **payload})


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint in `run_dir`, or None when there is none."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a valid checkpoint (invalid JSON: {exc})") from None
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tracekit checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return payload


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
    """The records of a run log (a run directory or a .jsonl file); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return records
