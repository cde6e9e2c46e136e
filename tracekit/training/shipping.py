"""How values reach out-of-process workers: shared blobs and the parameters' state.

A blob (the pickled workflow, the state of non-tensor parameters) travels as a handle
whose `get()` returns its bytes: inside the task (`Shared`), in a file (`FileShared`, a
process pool) or in Ray's object store (`RayShared`). The trained parameters' values
travel each call as a state handle whose `load()` returns `{name: value}`:

- `PickledState`: everything pickled into one blob (any executor: the default);
- `SharedMemoryState` (a process pool): each tensor in a shared-memory block of its own,
  written in place by the driver each call (one memcpy, no pickling, no file) and read in
  place by every worker; only the other values are pickled;
- `RayState` (Ray): the tensors as numpy arrays in Ray's object store, which workers on
  the same node read without a copy.

Tensors returned by `load()` may be views of shared memory: the loader copies them into
its parameters and keeps no reference (`tracekit.training.portable.load`).
"""

from __future__ import annotations

import math
import pickle
import warnings
from multiprocessing import shared_memory
from typing import Any

from tracekit.nodes import _is_tensor


class Shared:
    """Bytes shipped inside the task itself (see `Executor.share`)."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def get(self) -> bytes:
        return self.blob

    def alive(self) -> bool:
        """Whether workers can still read it (a closed pool removes its files)."""
        return True


class FileShared(Shared):
    """Bytes in a file on this machine (a process pool): read by the workers that need them."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def alive(self) -> bool:
        import os

        return os.path.exists(self.path)


class RayShared(Shared):
    """Bytes in Ray's object store, put once and read by each worker that needs them."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def get(self) -> bytes:
        import ray

        return ray.get(self.ref)


# --- the parameters' state ----------------------------------------------------------------------
class PickledState:
    """The whole state pickled into one shared blob."""

    def __init__(self, blob: Shared) -> None:
        self.blob = blob

    def load(self) -> dict[str, Any]:
        return pickle.loads(self.blob.get())


def _block_tensor(shm: shared_memory.SharedMemory, dtype: Any, shape: tuple[int, ...]) -> Any:
    import torch

    return torch.frombuffer(shm.buf, dtype=dtype, count=math.prod(shape)).view(shape)


_attached: dict[str, shared_memory.SharedMemory] = {}  # a worker's open blocks, by name


class SharedMemoryState:
    """Tensors in named shared-memory blocks (name -> (block, dtype, shape)), the rest pickled."""

    def __init__(self, blocks: dict[str, tuple[str, Any, tuple[int, ...]]], rest: Shared) -> None:
        self.blocks = blocks
        self.rest = rest

    def load(self) -> dict[str, Any]:
        values = pickle.loads(self.rest.get())
        current = {block for block, _, _ in self.blocks.values()}
        for stale in [k for k in _attached if k not in current]:
            _attached.pop(stale).close()  # blocks the driver replaced (a size changed)
        for name, (block, dtype, shape) in self.blocks.items():
            shm = _attached.get(block)
            if shm is None:
                shm = _attached[block] = shared_memory.SharedMemory(name=block)
            values[name] = _block_tensor(shm, dtype, shape)
        return values


class SharedBlocks:
    """The driver's shared-memory blocks, one per tensor parameter, reused across calls
    while the size holds (a process pool's `share_state`); `close` unlinks them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.blocks: dict[str, shared_memory.SharedMemory] = {}
        self._serial = 0

    def ensure(self, name: str, dtype: Any, shape: tuple[int, ...]) -> tuple[str, Any, tuple[int, ...]]:
        """The block of `name`, made (or replaced) to hold a tensor of `dtype` and `shape`:
        its (block, dtype, shape)."""
        import torch

        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        shm = self.blocks.get(name)
        if shm is None or shm.size < nbytes:
            if shm is not None:
                shm.close()
                shm.unlink()
            self._serial += 1
            shm = shared_memory.SharedMemory(create=True, size=max(nbytes, 1), name=f"{self.prefix}{self._serial}")
            self.blocks[name] = shm
        return shm.name, dtype, tuple(shape)

    def write(self, name: str, tensor: Any) -> tuple[str, Any, tuple[int, ...]]:
        """Copy `tensor` (CPU) into the block of `name`; its (block, dtype, shape)."""
        t = tensor.detach()
        spec = self.ensure(name, t.dtype, tuple(t.shape))
        self.view(name, spec).copy_(t)
        return spec

    def view(self, name: str, spec: tuple[str, Any, tuple[int, ...]]) -> Any:
        """The tensor in the block of `name` (shared memory: copy what must outlive the next call)."""
        return _block_tensor(self.blocks[name], spec[1], spec[2])

    def close(self) -> None:
        for shm in self.blocks.values():
            shm.close()
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
        self.blocks = {}


def in_blocks(value: Any) -> bool:
    """Whether a state value travels in a shared-memory block: a non-empty CPU tensor."""
    return _is_tensor(value) and value.device.type == "cpu" and value.numel() > 0 and not value.is_sparse


class RayState:
    """The state in Ray's object store: tensors as numpy arrays (read without a copy on the
    same node), tensors numpy cannot hold (bfloat16, ...) as they are."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    @staticmethod
    def pack(state: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in state.items():
            if in_blocks(value):
                try:
                    out[name] = ("numpy", value.detach().numpy())
                    continue
                except TypeError:  # no numpy dtype
                    pass
            out[name] = ("value", value)
        return out

    def load(self) -> dict[str, Any]:
        import ray
        import torch

        values = {}
        for name, (how, value) in ray.get(self.ref).items():
            if how == "numpy":
                with warnings.catch_warnings():  # a read-only view: the loader copies it
                    warnings.simplefilter("ignore", UserWarning)
                    value = torch.from_numpy(value)
            values[name] = value
        return values


# --- tensors coming back (gradients) --------------------------------------------------------------
def pack_tensor(t: Any, as_numpy: bool) -> Any:
    """A CPU tensor as it travels back: a numpy array when the executor moves those without
    copies (Ray's object store; `Executor.numpy_transport`), else the tensor itself (a
    process pool moves tensors through shared memory)."""
    if as_numpy and in_blocks(t):
        try:
            return t.numpy()
        except TypeError:  # no numpy dtype (bfloat16, ...)
            return t
    return t


def unpack_tensor(value: Any) -> Any:
    """The tensor of `pack_tensor`'s value (a read-only array is wrapped, not copied: the
    driver only reads it)."""
    if _is_tensor(value) or type(value).__module__ != "numpy":
        return value
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(value)


class InBlock:
    """A result value a worker wrote into the driver's block `key` (`Executor.result_blocks`)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


_result_blocks: dict[str, shared_memory.SharedMemory] = {}  # a worker's open result blocks


def write_result(spec: tuple[str, Any, tuple[int, ...]], tensor: Any) -> bool:
    """Copy `tensor` into a result block on a worker; False when it does not fit the block's
    dtype and shape (the value then travels in the result)."""
    block, dtype, shape = spec
    if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
        return False
    shm = _result_blocks.get(block)
    if shm is None:
        shm = _result_blocks[block] = shared_memory.SharedMemory(name=block)
    _block_tensor(shm, dtype, shape).copy_(tensor)
    return True
