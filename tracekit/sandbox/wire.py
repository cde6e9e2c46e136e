"""What crosses the sandbox boundary: plain data, framed on a pipe, never a pickle.

A message is one frame on a pipe: an 8-byte header (two little-endian uint32: the JSON
part's length and the binary part's length), a JSON document, then the raw bytes of the
arrays that did not fit the shared arena. Array bytes travel through an `Arena` (a
shared-memory file both processes map) when they fit, so a 4 MB tensor is copied in and
out of memory instead of pushed through the pipe. An array is described in the JSON by
dtype, shape, place and offset, the way safetensors describes its tensors; the reader
checks the dtype against a fixed list and the bounds before it copies a byte. JSON and
raw numbers are formats whose readers run no code, so a reply from the (untrusted)
worker is only ever parsed.

Plain data is: None, bool, int, float, str, bytes, lists, tuples, dicts and sets of plain
data, numpy arrays of numbers or booleans, numpy scalars, and torch tensors that carry no
autograd history. Anything else raises `NotPlainData`, which names the object and where it
sits in the value.
"""

from __future__ import annotations

import base64
import json
import math
import mmap
import os
import select
import struct
import sys
import time
from typing import Any

_HEADER = struct.Struct("<II")
MAX_FRAME_BYTES = 1 << 30  # a frame announcing more is refused before it is read
MAX_DEPTH = 64
ARENA_BYTES = 64 << 20
# bound once: code in the worker that replaces `json.loads` cannot change how frames parse
_json_dumps = json.JSONEncoder(separators=(",", ":")).encode
_json_loads = json.JSONDecoder().decode
_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
           "uint8", "uint16", "uint32", "uint64", "bool")


class NotPlainData(TypeError):
    """A value that cannot cross the sandbox boundary (it is not plain data)."""


class WireError(ValueError):
    """A frame that is malformed, too large or refers to data it does not carry."""


def _torch() -> Any:
    return sys.modules.get("torch")


def _numpy() -> Any:
    return sys.modules.get("numpy")


class Arena:
    """A shared-memory buffer for array bytes, reused by every message in turn (requests
    and replies strictly alternate, so one message's bytes are read before the next is
    written)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size)
        self.used = 0

    @classmethod
    def create(cls, size: int = ARENA_BYTES) -> Arena:
        import fcntl

        fd = os.memfd_create("tracekit-sandbox", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        # sealed: the worker cannot shrink the file under this process's mapping (SIGBUS)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        return cls(fd, size)

    def reserve(self, nbytes: int) -> int | None:
        """An offset for `nbytes` in this message, or None when it does not fit."""
        offset = -(-self.used // 64) * 64
        if offset + nbytes > self.size:
            return None
        self.used = offset + nbytes
        return offset

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


# --- encoding ------------------------------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.arrays: list[tuple[str, Any]] = []  # (numpy dtype name, flat uint8 view)

    def encode(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise NotPlainData(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value if type(value) is str else str(value)
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
            return self._array("a", value, where)
        if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return self._array("n", np.asarray(value), where)
        raise NotPlainData(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; only "
                           f"plain data (numbers, strings, bytes, lists, tuples, dicts, sets, numpy "
                           f"arrays, tensors without autograd history) crosses the sandbox boundary")

    def _array(self, tag: str, value: Any, where: str, dtype: str | None = None) -> dict:
        dtype = dtype or str(value.dtype)
        if dtype not in _DTYPES:
            raise NotPlainData(f"{where} is an array of dtype {dtype}; only arrays of numbers or "
                               f"booleans cross the sandbox boundary")
        np = _numpy()
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8) if value.size else np.zeros(0, np.uint8)
        self.arrays.append((dtype, flat))
        return {tag: len(self.arrays) - 1, "sh": list(value.shape), "dt": dtype}

    def _tensor(self, value: Any, where: str) -> dict:
        torch = _torch()
        if value.requires_grad or value.grad_fn is not None:
            raise NotPlainData(
                f"{where} is a tensor with autograd history (requires_grad); sandboxed code runs in "
                f"another process, so it cannot sit inside an autograd path. Detach the tensor, or "
                f"run the code in-process with tk.bundle(trainable=True, sandbox=False) (unsafe: see "
                f"docs/code-safety.md)")
        if value.layout != torch.strided:
            raise NotPlainData(f"{where} is a {value.layout} tensor; only dense tensors cross")
        dtype = str(value.dtype).replace("torch.", "")
        cpu = value.detach().to("cpu").contiguous()
        if cpu.dtype == torch.bfloat16:
            cpu = cpu.view(torch.int16)
        if dtype not in _DTYPES:
            raise NotPlainData(f"{where} is a tensor of dtype {dtype}; only tensors of real numbers "
                               f"or booleans cross the sandbox boundary")
        out = self._array("T", cpu.numpy(), where, dtype)
        if value.device.type != "cpu":
            out["dev"] = str(value.device)
        return out


def is_plain(value: Any) -> bool:
    """Whether `value` can cross the boundary (the one test, shared by every caller)."""
    try:
        _Encoder().encode(value, "value")
    except (NotPlainData, TypeError, ValueError):
        return False
    return True


def encode(message: dict[str, Any], values: dict[str, Any] | None = None) -> bytes:
    """One frame as bytes (arrays inline): `message` plus `values` encoded as plain data."""
    return b"".join(bytes(p) for p in encode_parts(message, values))


def encode_parts(message: dict[str, Any], values: dict[str, Any] | None = None,
                 arena: Arena | None = None) -> list[Any]:
    """The frame as a list of buffers for `os.writev`; array bytes go into `arena` when
    given and there is room, else after the JSON (not copied)."""
    enc = _Encoder()
    body = dict(message)
    if values:
        body["v"] = {name: enc.encode(v, name) for name, v in values.items()}
    inline: list[Any] = []
    if enc.arrays:
        places, offset = [], 0
        if arena is not None:
            arena.used = 0
        for _, flat in enc.arrays:
            at = arena.reserve(flat.nbytes) if arena is not None and flat.nbytes > 4096 else None
            if at is not None:
                arena.map[at: at + flat.nbytes] = flat.data  # type: ignore[union-attr]
                places.append([1, at, flat.nbytes])
            else:
                places.append([0, offset, flat.nbytes])
                inline.append(flat.data)
                offset += flat.nbytes
        body["arrays"] = places
    text = _json_dumps(body).encode("utf-8")
    size = sum(memoryview(p).nbytes for p in inline)
    return [_HEADER.pack(len(text), size) + text, *inline]


# --- decoding ------------------------------------------------------------------------------
class _Decoder:
    def __init__(self, blob: memoryview, places: Any, arena: Arena | None) -> None:
        self.blob = blob
        self.places = places if isinstance(places, list) else []
        self.arena = arena

    def raw(self, index: Any, nbytes: int) -> Any:
        """A copy of array `index`'s bytes, after checking where they lie."""
        if not isinstance(index, int) or not 0 <= index < len(self.places):
            raise WireError(f"the frame refers to array {index!r}, which it does not carry")
        place = self.places[index]
        if (not isinstance(place, list) or len(place) != 3
                or not all(isinstance(x, int) and x >= 0 for x in place)):
            raise WireError("an array's place in the frame is malformed")
        shared, offset, length = place
        if length != nbytes:
            raise WireError(f"array {index} holds {length} bytes, its shape needs {nbytes}")
        np = _numpy()
        if shared:
            if self.arena is None or offset + length > self.arena.size:
                raise WireError("an array lies outside the shared arena")
            return np.frombuffer(self.arena.map, np.uint8, length, offset).copy()
        if offset + length > self.blob.nbytes:
            raise WireError("an array lies outside the frame")
        return np.frombuffer(self.blob[offset: offset + length], np.uint8).copy()

    def array(self, value: dict) -> Any:
        import numpy as np  # arrays need numpy on both sides

        dtype, shape = value.get("dt"), value.get("sh")
        if dtype not in _DTYPES:
            raise WireError(f"unknown array dtype {dtype!r} in the frame")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) \
                or len(shape) > 32:
            raise WireError("an array's shape in the frame is malformed")
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        count = math.prod(shape)
        raw = self.raw(value.get("a", value.get("n", value.get("T"))), count * item)
        if "T" in value:
            torch = _torch() or __import__("torch")
            if dtype == "bfloat16":
                return torch.from_numpy(raw.view(np.int16).reshape(shape)).view(torch.bfloat16)
            tensor = torch.from_numpy(raw.view(np.dtype(dtype)).reshape(shape))
            device = value.get("dev")
            if isinstance(device, str):
                try:
                    tensor = tensor.to(device)
                except Exception:  # that device does not exist on this side: keep the CPU copy
                    pass
            return tensor
        if dtype == "bfloat16":
            raise WireError("numpy has no bfloat16 arrays")
        arr = raw.view(np.dtype(dtype)).reshape(shape)
        return arr[()] if "n" in value else arr

    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise WireError("the frame is nested too deeply")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, depth + 1) for v in value]
        if not isinstance(value, dict) or not value:
            raise WireError(f"unexpected item in the frame: {type(value).__name__}")
        if "a" in value or "n" in value or "T" in value:
            return self.array(value)
        if len(value) != 1:
            raise WireError("unexpected item in the frame")
        ((tag, payload),) = value.items()
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
        raise WireError(f"unknown item {tag!r} in the frame")


def decode(frame_body: bytes | bytearray, json_len: int,
           arena: Arena | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The control fields and the decoded values of one frame (without its header)."""
    view = memoryview(frame_body)
    try:
        body = _json_loads(bytes(view[:json_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"the frame's JSON does not parse: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("the frame's JSON is not an object")
    raw = body.pop("v", None) or {}
    if not isinstance(raw, dict):
        raise WireError("the frame's values are not an object")
    dec = _Decoder(view[json_len:], body.pop("arrays", None), arena)
    try:
        values = {str(k): dec.decode(v) for k, v in raw.items()}
    except RecursionError:
        raise WireError("the frame is nested too deeply") from None
    except WireError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. unhashable dict keys, bad base64
        raise WireError(f"the frame holds a value that cannot be rebuilt: {exc}") from None
    return body, values


# --- framing on file descriptors -------------------------------------------------------------
def write_frame(fd: int, frame: bytes | list[Any]) -> None:
    """Write a frame (bytes, or the buffers of `encode_parts`) whole."""
    parts = [memoryview(p).cast("B") for p in ([frame] if isinstance(frame, (bytes, bytearray)) else frame)]
    parts = [p for p in parts if p.nbytes]
    while parts:
        n = os.writev(fd, parts[:64])
        while n and parts:
            if n >= parts[0].nbytes:
                n -= parts[0].nbytes
                parts.pop(0)
            else:
                parts[0] = parts[0][n:]
                n = 0


def read_into(fd: int, view: memoryview, deadline: float | None = None, spin_s: float = 0.0) -> None:
    """Fill `view` from `fd`; EOFError when the other side closed first, TimeoutError when
    `deadline` (a `time.monotonic()` instant) passes first."""
    while view.nbytes:
        if deadline is not None and not wait_readable(fd, spin_s, deadline - time.monotonic()):
            raise TimeoutError("no data before the deadline")
        got = os.readv(fd, [view])
        if not got:
            raise EOFError("the other side closed the pipe")
        view = view[got:]


def wait_readable(fd: int, spin_s: float, timeout_s: float | None) -> bool:
    """Whether `fd` became readable within `timeout_s` (None: wait forever). The first
    `spin_s` poll without sleeping: a reply that comes within microseconds is picked up
    without the scheduler's wake-up latency; after that the wait blocks in `select`."""
    start = time.perf_counter()
    while time.perf_counter() - start < spin_s:
        if select.select([fd], [], [], 0)[0]:
            return True
    if timeout_s is None:
        return bool(select.select([fd], [], [])[0])
    left = timeout_s - (time.perf_counter() - start)
    return left > 0 and bool(select.select([fd], [], [], left)[0])


def set_pipe_size(fd: int, size: int = 1 << 20) -> None:
    """Grow a pipe's kernel buffer (fewer switches for large frames); best effort."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, size)  # F_SETPIPE_SZ
    except (OSError, ImportError):
        pass


def read_frame(fd: int, arena: Arena | None = None, timeout_s: float | None = None,
               spin_s: float = 0.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """One whole frame from `fd`, decoded; EOFError, TimeoutError (after `timeout_s`) or
    WireError (too large, malformed)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    head = bytearray(_HEADER.size)
    read_into(fd, memoryview(head), deadline, spin_s)
    json_len, blob_len = _HEADER.unpack(bytes(head))
    if json_len + blob_len > MAX_FRAME_BYTES:
        raise WireError(f"a frame of {json_len + blob_len} bytes is over the "
                        f"{MAX_FRAME_BYTES} byte limit")
    body = bytearray(json_len + blob_len)
    read_into(fd, memoryview(body), deadline, spin_s)
    return decode(body, json_len, arena)
