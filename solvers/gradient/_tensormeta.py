"""Read and check the pointers of many tensors in one C++ call, with prefetching.

Why: a fused step over 1000 small tensors spends about 1 ms in Python reading each
tensor's gradient, data pointers and version counter, because the step itself has just
pushed those objects out of the caches and Python follows each chain of pointers one
miss at a time. This library walks the same chains for all tensors at once, one level
per pass with prefetches, so the misses overlap; it reads nothing torch does not expose
in its public C++ headers.

It is compiled against the installed torch's headers with the system C++ compiler (about
10-20 s, once; cached under `$TRACEKIT_KERNEL_DIR`, default `~/.cache/tracekit/kernels`,
keyed by the source, torch, Python and the flags). `load()` starts the build in a
background thread and returns None until it is ready (callers keep their Python path
meanwhile); `load(wait=True)` waits. Without a C++ compiler, or with
`TRACEKIT_NO_CKERNEL=1`, it stays None.

Entry points (called with the GIL held, through `ctypes.PyDLL`):

    int tk_gather(list params, const uint64* pptr, const int64* numel, int64 itemsize, uint64* gptr)
        0 when every params[i] is a floating CPU tensor of `itemsize` bytes per element
        whose data pointer is pptr[i] with numel[i] elements, and whose gradient is
        defined, dense, contiguous, on the CPU, of the param's dtype and size; then gptr[i]
        gets the gradient's data pointer. Otherwise a positive code (NOT_TENSOR, NO_GRAD,
        MOVED, BAD_GRAD, ERROR) and gptr is garbage.
    int tk_bump(list params)
        Bumps every tensor's autograd version counter (what torch's in-place ops do);
        0, or ERROR (then call torch's `_increment_version` to get its exception).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

from solvers.gradient import _ckernel

OK, NOT_TENSOR, NO_GRAD, MOVED, BAD_GRAD, ERROR = range(6)

_SOURCE = r"""
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/variable.h>
#include <vector>

namespace {
constexpr int kImplLines = (int)((sizeof(c10::TensorImpl) + 63) / 64);
static_assert(sizeof(c10::VariableVersion) == sizeof(void*), "VariableVersion is one pointer");
enum { OK, NOT_TENSOR, NO_GRAD, MOVED, BAD_GRAD, ERROR };

inline void fetch(const void* p, int lines) {
    for (int k = 0; k < lines; k++) __builtin_prefetch(static_cast<const char*>(p) + 64 * k);
}

/* pass 1: the Python objects; pass 2: their TensorImpls */
int impls(PyObject* list, std::vector<c10::TensorImpl*>& out) {
    if (!PyList_CheckExact(list)) return NOT_TENSOR;
    const Py_ssize_t n = PyList_GET_SIZE(list);
    PyObject** items = reinterpret_cast<PyListObject*>(list)->ob_item;
    out.resize((size_t)n);
    for (Py_ssize_t i = 0; i < n; i++) __builtin_prefetch(items[i]);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!THPVariable_Check(items[i])) return NOT_TENSOR;
        c10::TensorImpl* t = THPVariable_Unpack(items[i]).unsafeGetTensorImpl();
        fetch(t, kImplLines);
        out[(size_t)i] = t;
    }
    return OK;
}
}  // namespace

extern "C" int tk_gather(PyObject* list, const uint64_t* pptr, const int64_t* numel, int64_t itemsize,
                         uint64_t* gptr) {
    try {
        std::vector<c10::TensorImpl*> p, g;
        int r = impls(list, p);
        if (r != OK) return r;
        const size_t n = p.size();
        g.resize(n);
        for (size_t i = 0; i < n; i++) {  /* pass 3: autograd meta and storage */
            c10::AutogradMetaInterface* meta = p[i]->autograd_meta();
            if (!meta) return NO_GRAD;
            __builtin_prefetch(meta);
            __builtin_prefetch(static_cast<char*>(static_cast<void*>(meta)) + 64);
            if (!p[i]->has_storage()) return MOVED;
            __builtin_prefetch(p[i]->storage().unsafeGetStorageImpl());
        }
        for (size_t i = 0; i < n; i++) {  /* pass 4: the gradients' impls; the params' data */
            const at::Tensor& grad = p[i]->grad();
            if (!grad.defined()) return NO_GRAD;
            g[i] = grad.unsafeGetTensorImpl();
            fetch(g[i], kImplLines);
            c10::TensorImpl* t = p[i];
            if (t->device_type() != c10::DeviceType::CPU || t->numel() != numel[i]
                || (int64_t)t->dtype().itemsize() != itemsize
                || !c10::isFloatingType(t->dtype().toScalarType())
                || reinterpret_cast<uint64_t>(t->mutable_data()) != pptr[i])
                return MOVED;
        }
        for (size_t i = 0; i < n; i++) {  /* pass 5: check the gradients, fetch their storage */
            c10::TensorImpl* t = g[i];
            if (t->layout() != c10::kStrided || t->device_type() != c10::DeviceType::CPU
                || t->dtype() != p[i]->dtype() || t->numel() != numel[i] || !t->is_contiguous()
                || !t->has_storage())
                return BAD_GRAD;
            __builtin_prefetch(t->storage().unsafeGetStorageImpl());
        }
        for (size_t i = 0; i < n; i++)  /* pass 6: the gradients' data */
            gptr[i] = reinterpret_cast<uint64_t>(g[i]->mutable_data());
        return OK;
    } catch (...) {
        return ERROR;
    }
}

extern "C" int tk_bump(PyObject* list) {
    try {
        std::vector<c10::TensorImpl*> p;
        int r = impls(list, p);
        if (r != OK) return r;
        for (c10::TensorImpl* t : p)  /* the counters live behind one pointer each */
            __builtin_prefetch(*reinterpret_cast<void* const*>(&t->version_counter()));
        for (c10::TensorImpl* t : p) t->bump_version();
        return OK;
    } catch (...) {
        return ERROR;
    }
}
"""

_STANDARDS = ("-std=c++20", "-std=c++17")
_lock = threading.Lock()
_lib: Any = None
_state = "idle"  # idle | building | ready | failed
_done = threading.Event()


def _torch_paths() -> tuple[Path, Path]:
    import torch

    root = Path(torch.__file__).resolve().parent
    return root / "include", root / "lib"


def _key() -> str:
    import torch

    parts = [_SOURCE, torch.__version__, str(getattr(torch.version, "git_version", "")),
             sys.version, repr(_STANDARDS), str(_torch_paths()[0])]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _target() -> Path:
    return _ckernel.cache_dir() / f"tensormeta_{_key()}.so"


def _build(target: Path) -> bool:
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if compiler is None:
        return False
    import torch

    include, lib = _torch_paths()
    abi = int(bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)))
    common = ["-O2", "-shared", "-fPIC", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{include}",
              f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
              f"-I{sysconfig.get_paths()['include']}", "{src}", "-o", "{out}", f"-L{lib}",
              "-ltorch_python", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{lib}"]
    return _ckernel.build_library(_SOURCE, "tensormeta.cpp", target,
                                  [[compiler, std, *common] for std in _STANDARDS], timeout=300)


def _open(target: Path) -> Any:
    lib = ctypes.PyDLL(str(target))  # PyDLL: the GIL stays held (these read Python objects)
    for name, args in (("tk_gather", [ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_void_p]),
                       ("tk_bump", [ctypes.py_object])):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = args
    return lib


def _build_and_open() -> None:
    global _lib, _state
    try:
        target = _target()
        if target.exists() or _build(target):
            _lib = _open(target)
            _state = "ready"
        else:
            _state = "failed"
    except Exception:  # a broken toolchain or torch install: the Python path stays
        _state = "failed"
    finally:
        _done.set()


def load(wait: bool = False) -> Any:
    """The loaded library, or None (not built yet, or it cannot be built). The first call
    starts the build (in the background unless `wait`, or the file is already cached)."""
    global _state
    if _state == "ready":
        return _lib
    if _state == "failed":
        return None
    with _lock:
        if _state == "idle":
            if os.environ.get("TRACEKIT_NO_CKERNEL"):
                _state = "failed"
                _done.set()
                return None
            _state = "building"
            if _target().exists():
                _build_and_open()
            else:
                threading.Thread(target=_build_and_open, name="tracekit-tensormeta-build",
                                 daemon=True).start()
    if wait:
        _done.wait()
    return _lib if _state == "ready" else None
