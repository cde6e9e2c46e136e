"""Serialization benchmark: save/load of a 1M-entry tensor parameter, the replaced JSON-list
encoder (format tracekit.state/1) vs `tracekit.storage` (JSON manifest + safetensors), in one run.

For each encoder: file size on disk; "cold" = the first save and the first load in a fresh
process (imports and first-use costs included); "steady" = the median of repeated saves and
loads in one process after a warm-up. Loads are complete: read, check, validate, write into
the parameter. Prints JSON with both sides and the ratios.

    .venv/bin/python benchmarks/serialization.py [--entries 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --- the replaced encoder (tracekit.state/1), kept here verbatim in spirit for comparison ---
def old_save(model, path: Path) -> None:
    from tracekit.fileio import atomic_write_json
    from tracekit.module import _class_id

    def encode_value(value):
        if not hasattr(value, "detach"):
            return value
        return {"__tensor__": value.detach().cpu().tolist(), "dtype": str(value.dtype).replace("torch.", ""),
                "shape": list(value.shape)}

    params = {n: {"kind": p.kind, "value": encode_value(p.raw)} for n, p in model.named_parameters()}
    atomic_write_json(path, {"format": "tracekit.state/1", "model": _class_id(model), "parameters": params})


def old_load(model, path: Path) -> None:
    import torch

    payload = json.loads(path.read_text())
    params = dict(model.named_parameters())
    staged = []
    for name, entry in payload["parameters"].items():
        enc = entry["value"]
        if isinstance(enc, dict) and "__tensor__" in enc:
            enc = torch.tensor(enc["__tensor__"], dtype=getattr(torch, enc["dtype"])).reshape(enc["shape"])
        staged.append((params[name], params[name].validate(enc)))
    for p, value in staged:
        p.set(value)


def new_save(model, path: Path) -> None:
    model.save(path)


def new_load(model, path: Path) -> None:
    model.load(path, strict=False)


ENCODERS = {"json_lists": (old_save, old_load), "storage": (new_save, new_load)}


def make_model(entries: int):
    import torch

    import tracekit as tk

    class Big(tk.Module):
        def __init__(self) -> None:
            self.w = tk.param(torch.randn(entries, generator=torch.Generator().manual_seed(0)), name="w")
            self.prompt = tk.param("Answer briefly.", name="prompt")

    return Big()


def size_on_disk(path: Path) -> int:
    """The manifest plus its payload files."""
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name))


# --- worker: one encoder, one process -------------------------------------------------------
def worker(encoder: str, entries: int, repeats: int) -> dict:
    t0 = time.perf_counter()
    model = make_model(entries)
    setup = time.perf_counter() - t0
    save, load = ENCODERS[encoder]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.json"
        t = time.perf_counter()
        save(model, path)
        cold_save = time.perf_counter() - t
        target = make_model(entries)
        target.w.raw.detach().zero_()
        t = time.perf_counter()
        load(target, path)
        cold_load = time.perf_counter() - t
        import torch

        assert torch.equal(target.w.raw, model.w.raw), "the loaded tensor differs"
        saves, loads = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            save(model, path)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load(target, path)
            loads.append(time.perf_counter() - t)
        size = size_on_disk(path)
    return {"bytes": size, "cold_save_s": cold_save, "cold_load_s": cold_load,
            "steady_save_s": statistics.median(saves), "steady_load_s": statistics.median(loads),
            "model_setup_s": setup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=sorted(ENCODERS))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.entries, args.repeats)))
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = {}
    for encoder in ENCODERS:  # each in a fresh process, so "cold" is really the first use
        out = subprocess.run([sys.executable, __file__, "--worker", encoder, "--entries", str(args.entries),
                              "--repeats", str(args.repeats)], env=env, capture_output=True, text=True, check=True)
        results[encoder] = json.loads(out.stdout.strip().splitlines()[-1])
    old, new = results["json_lists"], results["storage"]
    ratios = {k: round(old[k] / new[k], 2) for k in ("bytes", "cold_save_s", "cold_load_s", "steady_save_s",
                                                      "steady_load_s")}
    print(json.dumps({"entries": args.entries, "dtype": "float32", "repeats": args.repeats,
                      "json_lists (tracekit.state/1)": old, "storage (manifest + safetensors)": new,
                      "old / new": ratios}, indent=1))


if __name__ == "__main__":
    main()
