"""What crosses the sandbox boundary: plain data, framed on a pipe, never a pickle.

A message is one frame: an 8-byte header (two little-endian uint32: the JSON part's length
and the binary part's length), a JSON document, then one safetensors buffer holding every
array and tensor the document refers to. JSON and safetensors are both formats whose
readers run no code, so a reply from the (untrusted) worker is only ever parsed.

Plain data is: None, bool, int, float, str, bytes, lists, tuples, dicts and sets of plain
data, numpy arrays of numbers or booleans, numpy scalars, and torch tensors that carry no
autograd history. Anything else raises `NotPlainData`, which names the object and where it
sits in the value.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
from typing import Any

_HEADER = struct.Struct("<II")
MAX_FRAME_BYTES = 1 << 30  # a frame announcing more is refused before it is read
MAX_DEPTH = 64


class NotPlainData(TypeError):
    """A value that cannot cross the sandbox boundary (it is not plain data)."""


class WireError(ValueError):
    """A frame that is malformed, too large or refers to data it does not carry."""


def _torch() -> Any:
    return sys.modules.get("torch")


def _numpy() -> Any:
    return sys.modules.get("numpy")


# --- encoding ------------------------------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}

    def encode(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise NotPlainData(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, (bool, str)):
            return value if not isinstance(value, str) or type(value) is str else str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, (bytes, bytearray)):
            return {"b": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"t": [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
        if isinstance(value, (set, frozenset)):
            return {"s": [self.encode(v, f"{where} item", depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"d": [[self.encode(k, f"{where} key", depth + 1),
                           self.encode(v, f"{where}[{k!r}]", depth + 1)] for k, v in value.items()]}
        torch = _torch()
        if torch is not None and isinstance(value, torch.Tensor):
            return self._tensor(value, where)
        np = _numpy()
        if np is not None and isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise NotPlainData(f"{where} is a numpy array of dtype {value.dtype}; only arrays of "
                                   f"numbers or booleans cross the sandbox boundary")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = np.ascontiguousarray(value)
            return {"a": key}
        if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
            key = f"a{len(self.arrays)}"
            self.arrays[key] = np.asarray(value).reshape(1)
            return {"n": key}
        raise NotPlainData(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; only "
                           f"plain data (numbers, strings, bytes, lists, tuples, dicts, sets, numpy "
                           f"arrays, tensors without autograd history) crosses the sandbox boundary")

    def _tensor(self, value: Any, where: str) -> dict:
        if value.requires_grad or value.grad_fn is not None:
            raise NotPlainData(
                f"{where} is a tensor with autograd history (requires_grad); sandboxed code runs in "
                f"another process, so it cannot sit inside an autograd path. Detach the tensor, or "
                f"run the code in-process with tk.bundle(trainable=True, sandbox=False) (unsafe: see "
                f"docs/code-safety.md)")
        if value.is_sparse or value.layout != _torch().strided:
            raise NotPlainData(f"{where} is a {value.layout} tensor; only dense tensors cross")
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value.detach().to("cpu").contiguous()
        return {"T": key, "dev": str(value.device)}


def encode(message: dict[str, Any], values: dict[str, Any] | None = None) -> bytes:
    """One frame: `message` (JSON-able control fields) plus `values` encoded as plain data."""
    enc = _Encoder()
    body = dict(message)
    if values:
        body["v"] = {name: enc.encode(v, name) for name, v in values.items()}
    blob = b""
    if enc.arrays or enc.tensors:
        blob = _safetensors_bytes(enc)
    text = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(text), len(blob)) + text + blob


def _safetensors_bytes(enc: _Encoder) -> bytes:
    if enc.tensors:
        from safetensors.torch import save

        torch = _torch()
        merged = dict(enc.tensors)
        merged.update({k: torch.from_numpy(v) for k, v in enc.arrays.items()})
        return save(merged)
    from safetensors.numpy import save as save_np

    return save_np(enc.arrays)


# --- decoding ------------------------------------------------------------------------------
class _Decoder:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self._store: dict[str, Any] | None = None

    def store(self) -> dict[str, Any]:
        if self._store is None:
            if not self.blob:
                raise WireError("the frame refers to arrays but carries none")
            try:
                if _torch() is not None:
                    from safetensors.torch import load

                    self._store = load(self.blob)
                else:
                    from safetensors.numpy import load as load_np

                    self._store = load_np(self.blob)
            except Exception as exc:  # safetensors' own parse errors
                raise WireError(f"the frame's array data does not parse: {exc}") from None
        return self._store

    def item(self, key: Any) -> Any:
        if not isinstance(key, str) or key not in self.store():
            raise WireError(f"the frame refers to array {key!r}, which it does not carry")
        return self.store()[key]

    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise WireError("the frame is nested too deeply")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, depth + 1) for v in value]
        if not isinstance(value, dict) or len(value) not in (1, 2):
            raise WireError(f"unexpected item in the frame: {type(value).__name__}")
        (tag, payload), *rest = value.items()
        if tag == "b" and isinstance(payload, str):
            return base64.b64decode(payload.encode("ascii"), validate=True)
        if tag == "t" and isinstance(payload, list):
            return tuple(self.decode(v, depth + 1) for v in payload)
        if tag == "s" and isinstance(payload, list):
            return set(self.decode(v, depth + 1) for v in payload)
        if tag == "d" and isinstance(payload, list):
            out = {}
            for pair in payload:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise WireError("a dict item in the frame is not a key-value pair")
                out[self.decode(pair[0], depth + 1)] = self.decode(pair[1], depth + 1)
            return out
        if tag == "a":
            return self._numpy_array(self.item(payload))
        if tag == "n":
            return self._numpy_array(self.item(payload))[0]
        if tag == "T":
            tensor = self.item(payload)
            device = dict(rest).get("dev", "cpu") if rest else "cpu"
            if _torch() is not None and isinstance(device, str) and device != "cpu":
                try:
                    tensor = tensor.to(device)
                except Exception:  # the device does not exist on this side: keep the CPU copy
                    pass
            return tensor
        raise WireError(f"unknown item {tag!r} in the frame")

    @staticmethod
    def _numpy_array(value: Any) -> Any:
        torch = _torch()
        if torch is not None and isinstance(value, torch.Tensor):
            return value.numpy()
        return value


def decode(frame_body: bytes, json_len: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The control fields and the decoded values of one frame (without its header)."""
    try:
        body = json.loads(frame_body[:json_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"the frame's JSON does not parse: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("the frame's JSON is not an object")
    raw = body.pop("v", None) or {}
    if not isinstance(raw, dict):
        raise WireError("the frame's values are not an object")
    dec = _Decoder(frame_body[json_len:])
    try:
        values = {str(k): dec.decode(v) for k, v in raw.items()}
    except RecursionError:
        raise WireError("the frame is nested too deeply") from None
    except (TypeError, ValueError) as exc:  # e.g. unhashable dict keys, bad base64
        if isinstance(exc, WireError):
            raise
        raise WireError(f"the frame holds a value that cannot be rebuilt: {exc}") from None
    return body, values


# --- framing on file descriptors -------------------------------------------------------------
def write_frame(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> bytes:
    """Exactly `n` bytes from `fd`; EOFError when the other side closed first."""
    if n == 0:
        return b""
    first = os.read(fd, n)
    if len(first) == n:
        return first
    if not first:
        raise EOFError("the other side closed the pipe")
    buf = bytearray(first)
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        buf += chunk
    return bytes(buf)


def read_header(fd: int) -> tuple[int, int]:
    json_len, blob_len = _HEADER.unpack(read_exact(fd, _HEADER.size))
    if json_len + blob_len > MAX_FRAME_BYTES:
        raise WireError(f"a frame of {json_len + blob_len} bytes is over the "
                        f"{MAX_FRAME_BYTES} byte limit")
    return json_len, blob_len


def read_frame(fd: int) -> tuple[dict[str, Any], dict[str, Any]]:
    json_len, blob_len = read_header(fd)
    return decode(read_exact(fd, json_len + blob_len), json_len)
