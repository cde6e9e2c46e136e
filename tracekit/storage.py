"""The one serializer and the one guarded JSON reader for every file tracekit writes or reads.

On disk, a saved value is a **JSON manifest** (small values: text, numbers, choices, code,
step counts, history) plus, when it holds tensors, **one safetensors payload** beside it:

    state.json                              the manifest (the path you gave)
    state.json.<sha256[:16]>.safetensors    every tensor, keyed by its place in the manifest

The manifest names its payload file and the payload's SHA-256. The payload's name carries
its content hash, so saving writes the payload first (atomically), then the manifest
(atomically), then removes the previous payload: a crash at any point leaves a complete old
or a complete new pair, never a mix. No pickle anywhere; safetensors files are
memory-mapped when read and readable by other tools (`safetensors.safe_open`).

Values in the manifest: JSON's own types, plus tagged dicts for what JSON lacks --
`{"__tensor_ref__": key, "dtype", "shape"}` (a tensor in the payload; `"numpy": true` for a
NumPy array), `{"__tuple__": [...]}`, `{"__items__": [[key, value], ...]}` (a dict whose
keys are not all strings, or that uses a tag as a key), `{"__float__": "nan" | "inf" |
"-inf"}` and `{"__dtype__": "float32"}`. Files of the first format (tensors as nested
lists, `{"__tensor__": [...], "dtype", "shape"}`) still load.

A payload left by a crash between the two writes is not referenced by any manifest and
may be deleted by hand. Every read goes through `read_json` / `parse_json`: a missing, empty, truncated, oversized,
non-UTF-8, malformed or too deeply nested file, or one of the wrong top-level type, raises
`DamagedFileError` (a `StateDictError`) naming the file and the problem -- never a
`RecursionError` or a `KeyError` from deep inside.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracekit.errors import DamagedFileError, StateDictError
from tracekit.fileio import atomic_write_bytes, atomic_write_json

#: The largest JSON file (or cache entry) tracekit reads; override with TRACEKIT_MAX_JSON_BYTES.
MAX_JSON_BYTES = int(os.environ.get("TRACEKIT_MAX_JSON_BYTES", str(512 * 2**20)))
#: The deepest nesting of lists and dicts accepted in a file tracekit reads.
MAX_DEPTH = 100

_TENSOR_REF = "__tensor_ref__"
_LEGACY_TENSOR = "__tensor__"
_TAGS = frozenset({_TENSOR_REF, _LEGACY_TENSOR, "__tuple__", "__items__", "__float__", "__dtype__"})
_PAYLOAD_NAME = re.compile(r"\.[0-9a-f]{16}\.safetensors")


# --- guarded reading ------------------------------------------------------------------------
def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Raise DamagedFileError when lists/dicts in `value` nest deeper than `limit`
    (checked without recursion, so no RecursionError can escape)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > limit:
                raise DamagedFileError(f"{what} is nested deeper than {limit} levels; it is damaged "
                                       f"or not a tracekit file")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def parse_json(text: str | bytes, what: str, expect: type | tuple[type, ...] | None = dict,
               max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text read from `what` (named in every error), or raise DamagedFileError."""
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    if len(text) > max_bytes:
        raise DamagedFileError(f"{what} is {len(text)} bytes, more than the {max_bytes} tracekit reads; "
                               f"it is not a tracekit file (or raise TRACEKIT_MAX_JSON_BYTES)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DamagedFileError(f"{what} is not UTF-8 text ({exc}); it is damaged") from None
    if not text.strip():
        raise DamagedFileError(f"{what} is empty; it was cut off before anything was written")
    try:
        value = json.loads(text)
    except RecursionError:
        raise DamagedFileError(f"{what} is nested too deeply to read; it is damaged or not a tracekit file") \
            from None
    except ValueError as exc:  # JSONDecodeError, and ints too long to convert
        raise DamagedFileError(f"{what} is invalid JSON ({exc}); it is damaged or truncated") from None
    check_depth(value, what, max_depth)
    if expect is not None and not isinstance(value, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise DamagedFileError(f"{what} holds a JSON {type(value).__name__}, not a {names}; "
                               f"it is not a tracekit file")
    return value


def read_json(path: str | os.PathLike, what: str = "file", expect: type | tuple[type, ...] | None = dict,
              max_bytes: int | None = None) -> Any:
    """Read and parse a JSON file through every guard of `parse_json`."""
    path = Path(path)
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    label = f"{what} {path}"
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DamagedFileError(f"{label} is {size} bytes, more than the {max_bytes} tracekit reads; "
                                   f"it is not a tracekit file (or raise TRACEKIT_MAX_JSON_BYTES)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedFileError(f"no {what} at {path}") from None
    except IsADirectoryError:
        raise DamagedFileError(f"{path} is a directory, not a {what}") from None
    except OSError as exc:
        raise DamagedFileError(f"cannot read {label}: {exc}") from None
    return parse_json(data, label, expect=expect, max_bytes=max_bytes)


def read_jsonl(path: str | os.PathLike, what: str = "run log") -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line; a line that is torn (a live run's last
    line), malformed, too deep or not an object is skipped. A missing file raises."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise DamagedFileError(f"{what} {path} is larger than the {MAX_JSON_BYTES} bytes tracekit reads")
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise DamagedFileError(f"no {what} at {path}") from None
    except OSError as exc:
        raise DamagedFileError(f"cannot read {what} {path}: {exc}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_json(line, f"{what} {path} line {number}"))
        except DamagedFileError:
            continue
    return records


# --- values <-> manifest + tensors --------------------------------------------------------------
def encode(value: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """(JSON-ready manifest value, {key: CPU tensor}) for `value`; tensors and NumPy arrays go
    to the payload under the key of their place (`prefix/a/0/b`). Unknown types: TypeError."""
    try:
        check_depth(value, "the value")
    except DamagedFileError:
        raise ValueError(f"cannot save a value nested deeper than {MAX_DEPTH} levels: it could not be "
                         f"loaded back") from None
    tensors = _Tensors()
    return _encode(value, prefix, tensors), dict(tensors)


class _Tensors(dict):
    """{key: tensor} being collected, with the storages already used (safetensors refuses
    two entries that share memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: set[int] = set()


def _encode(value: Any, where: str, tensors: _Tensors) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    kind = _array_kind(value)
    if kind is not None:
        return _encode_tensor(value, kind, where, tensors)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not _TAGS.intersection(value):
            return {k: _encode(v, f"{where}/{k}", tensors) for k, v in value.items()}
        return {"__items__": [[_encode(k, f"{where}/#key{i}", tensors), _encode(v, f"{where}/{k}#{i}", tensors)]
                              for i, (k, v) in enumerate(value.items())]}
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a NumPy scalar
        return _encode(value.item(), where, tensors)
    if type(value).__name__ == "dtype" and type(value).__module__ == "torch":
        return {"__dtype__": str(value).replace("torch.", "")}
    raise TypeError(f"cannot save a value of type {type(value).__name__} at {where or '/'}: tracekit saves "
                    f"strings, numbers, bools, None, lists, tuples, dicts, tensors and NumPy arrays")


def _array_kind(value: Any) -> str | None:
    module = type(value).__module__
    if module.startswith("torch") and type(value).__name__ in ("Tensor", "Parameter"):
        return "torch"
    if module == "numpy" and type(value).__name__ == "ndarray":
        return "numpy"
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return "torch"
    return None


def _encode_tensor(value: Any, kind: str, where: str, tensors: _Tensors) -> dict[str, Any]:
    import torch

    if kind == "numpy":
        import numpy as np

        t = torch.from_numpy(np.ascontiguousarray(value))
    else:
        t = value.detach().cpu()
    shared = t.numel() > 0 and t.untyped_storage().data_ptr() in tensors.storages
    if shared or not t.is_contiguous() or t.storage_offset() or \
            t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.contiguous().clone()  # safetensors stores whole, unshared buffers
    key = where or "/"
    while key in tensors:
        key += "'"
    tensors[key] = t
    if t.numel():
        tensors.storages.add(t.untyped_storage().data_ptr())
    ref: dict[str, Any] = {_TENSOR_REF: key, "dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
    if kind == "numpy":
        ref["numpy"] = True
    return ref


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def decode(value: Any, tensors: Mapping[str, Any] | None = None, what: str = "state") -> Any:
    """Undo `encode` (and the first format's tensors-as-lists); a dangling or mismatched
    tensor reference or a malformed tag raises StateDictError naming its place."""
    check_depth(value, what)
    return _decode(value, tensors, what)


def _decode(value: Any, tensors: Mapping[str, Any] | None, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR_REF in value:
        return _decode_ref(value, tensors, where)
    if _LEGACY_TENSOR in value:
        return _decode_legacy_tensor(value, where)
    if "__tuple__" in value and len(value) == 1 and isinstance(value["__tuple__"], list):
        return tuple(_decode(v, tensors, where) for v in value["__tuple__"])
    if "__items__" in value and len(value) == 1 and isinstance(value["__items__"], list):
        items = value["__items__"]
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in items):
            raise StateDictError(f"{where}: malformed __items__ entry (expected [key, value] pairs)")
        try:
            return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in items}
        except TypeError as exc:  # an unhashable key
            raise StateDictError(f"{where}: malformed __items__ key: {exc}") from None
    if "__float__" in value and len(value) == 1:
        if value["__float__"] not in ("nan", "inf", "-inf"):
            raise StateDictError(f"{where}: __float__ must be 'nan', 'inf' or '-inf', got {value['__float__']!r}")
        return float(value["__float__"])
    if "__dtype__" in value and len(value) == 1:
        return _torch_dtype(value["__dtype__"], where)
    return {k: _decode(v, tensors, where) for k, v in value.items()}


def _torch_dtype(name: Any, where: str) -> Any:
    import torch

    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise StateDictError(f"{where}: {name!r} is not a torch dtype")
    return dtype


def _decode_ref(ref: dict[str, Any], tensors: Mapping[str, Any] | None, where: str) -> Any:
    key = ref[_TENSOR_REF]
    if not isinstance(key, str):
        raise StateDictError(f"{where}: malformed tensor reference {key!r} (expected a payload key)")
    if tensors is None:
        raise StateDictError(f"{where}: tensor {key!r} lives in a safetensors payload; load the state "
                             f"with load()/storage.load(), not from the JSON manifest alone")
    if key not in tensors:
        raise StateDictError(f"{where}: the safetensors payload has no tensor {key!r}; the payload does not "
                             f"belong to this manifest")
    t = tensors[key]
    if list(t.shape) != ref.get("shape") or _dtype_name(t.dtype) != ref.get("dtype"):
        raise StateDictError(f"{where}: payload tensor {key!r} is {_dtype_name(t.dtype)}{list(t.shape)}, the "
                             f"manifest says {ref.get('dtype')}{ref.get('shape')}; the files do not belong together")
    return t.numpy() if ref.get("numpy") else t


def _decode_legacy_tensor(value: dict[str, Any], where: str) -> Any:
    import torch

    dtype = _torch_dtype(value.get("dtype", "float32"), where)
    try:
        tensor = torch.tensor(value[_LEGACY_TENSOR], dtype=dtype)
        if "shape" in value:
            tensor = tensor.reshape(value["shape"])
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise StateDictError(f"{where}: malformed tensor ({exc})") from None
    return tensor


# --- files ------------------------------------------------------------------------------------
def payload_path(path: str | os.PathLike, sha256: str) -> Path:
    """Where the tensors of the manifest at `path` go: `<name>.<sha256[:16]>.safetensors`."""
    path = Path(path)
    return path.with_name(f"{path.name}.{sha256[:16]}.safetensors")


def save(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write `payload` (a dict, with a "format" entry) as a JSON manifest at `path` and its
    tensors as one safetensors file beside it, both atomically (see the module docstring)."""
    from safetensors.torch import save as st_save

    path = Path(path)
    if "payload" in payload:
        raise ValueError("'payload' is the manifest's own entry (the tensor file); use another key")
    previous = _referenced_payload(path)
    manifest, tensors = encode(dict(payload))
    keep = None
    if tensors:
        data = st_save(tensors)
        digest = hashlib.sha256(data).hexdigest()
        keep = payload_path(path, digest)
        atomic_write_bytes(keep, data)
        # first in the file, so the next save finds it without parsing the whole manifest
        manifest = {"payload": {"file": keep.name, "sha256": digest, "tensors": len(tensors)}, **manifest}
    atomic_write_json(path, manifest)
    if previous is not None and previous != keep:
        try:  # only the payload the replaced manifest named: a concurrent writer's stays
            previous.unlink()
        except OSError:
            pass
    return path


def _referenced_payload(path: Path) -> Path | None:
    """The payload file named at the head of the manifest now at `path`, if it is one of ours."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024).decode("utf-8", "replace")
    except OSError:
        return None
    found = re.match(r'\{\s*"payload":\s*\{\s*"file":\s*"([^"\\/]+)"', head)
    name = found.group(1) if found else ""
    if name.startswith(path.name) and _PAYLOAD_NAME.fullmatch(name[len(path.name):]):
        return path.with_name(name)
    return None


def load(path: str | os.PathLike, what: str, formats: Iterable[str]) -> dict[str, Any]:
    """Read a manifest written by `save` (or a first-format JSON file) and its payload;
    the format must be one of `formats`. Everything is checked; nothing is written."""
    path = Path(path)
    manifest = read_json(path, what)
    formats = tuple(formats)
    if manifest.get("format") not in formats:
        raise DamagedFileError(f"{path} is not a tracekit {what} (format {manifest.get('format')!r}; expected "
                               f"{' or '.join(map(repr, formats))})")
    tensors = _read_payload(path, manifest.get("payload"), what) if "payload" in manifest else None
    body = {k: v for k, v in manifest.items() if k != "payload"}
    return decode(body, tensors, f"{what} {path}")


def _read_payload(path: Path, entry: Any, what: str) -> dict[str, Any]:
    """The payload's tensors, memory-mapped by safetensors, after its SHA-256 is checked."""
    from safetensors import SafetensorError, safe_open

    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)):
        raise DamagedFileError(f"{what} {path}: malformed payload entry {entry!r}")
    name = entry["file"]
    if Path(name).name != name or not name.endswith(".safetensors"):
        raise DamagedFileError(f"{what} {path}: payload file {name!r} must be a .safetensors file beside it")
    file = path.with_name(name)
    try:
        with open(file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != entry["sha256"]:
            raise DamagedFileError(f"{what} {path}: tensor payload {file} is corrupt or was replaced (its "
                                   f"SHA-256 does not match the manifest)")
        with safe_open(file, framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except DamagedFileError:
        raise
    except FileNotFoundError:
        raise DamagedFileError(f"{what} {path}: its tensor payload {file} is missing; copy it along with "
                               f"the manifest") from None
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise DamagedFileError(f"{what} {path}: cannot read tensor payload {file} ({exc})") from None
