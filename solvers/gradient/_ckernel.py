"""A fused CPU kernel for Lion, compiled once with the system C compiler and loaded by ctypes.

Why: an unfused Lion step (lerp, sign, mul, add, lerp) streams every tensor several times
and reaches a fraction of the memory bandwidth; this kernel reads p, g, m and writes p, m
once per element, with OpenMP across chunks of all tensors (one call per step, so 1000
small tensors cost one call, not 5000). No torch headers are needed, so the build takes
well under a second; the library is cached under `$TRACEKIT_KERNEL_DIR` (default
`~/.cache/tracekit/kernels`). Set `TRACEKIT_NO_CKERNEL=1` to disable it; without a C
compiler the callers fall back to torch's `_foreach_*` ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#define CHUNK 65536
#define BATCH 131072

/* One Lion step over nt tensors. With check != 0, each tensor's gradient is first reduced
   to a sum of squares (in double, into sumsq[t], zeroed by the caller); a tensor whose sum
   is not finite is left untouched. Tensors are processed in batches of about BATCH
   elements (whole tensors), checking then updating each batch, so that the gradient is
   still in cache when the update reads it again. */
#define LION(NAME, T)                                                                       \
static void NAME##_chunk(T* restrict pp, const T* restrict gg, T* restrict mm, int64_t lo,  \
                         int64_t hi, T w1, T w2, T slr, T sdec) {                           \
    for (int64_t i = lo; i < hi; i++) {                                                     \
        T gi = gg[i], mi = mm[i];                                                           \
        T u = mi + w1 * (gi - mi);                                                          \
        T s = (T)((u > 0) - (u < 0));                                                       \
        pp[i] = pp[i] * sdec - slr * s;                                                     \
        mm[i] = mi + w2 * (gi - mi);                                                        \
    }                                                                                       \
}                                                                                           \
void NAME(int64_t nt, T** p, T** g, T** m, const int64_t* n, double lr, double decay,       \
          double b1, double b2, int threads, int check, double* sumsq) {                    \
    int64_t nchunks = 0;                                                                    \
    for (int64_t t = 0; t < nt; t++) nchunks += (n[t] + CHUNK - 1) / CHUNK;                 \
    int64_t* tid = (int64_t*)malloc(sizeof(int64_t) * (nchunks + 1));                       \
    int64_t* start = (int64_t*)malloc(sizeof(int64_t) * (nchunks + 1));                     \
    double* part = (double*)malloc(sizeof(double) * (nchunks + 1));                         \
    int64_t k = 0;                                                                          \
    for (int64_t t = 0; t < nt; t++)                                                        \
        for (int64_t s = 0; s < n[t]; s += CHUNK) { tid[k] = t; start[k] = s; k++; }        \
    const T w1 = (T)(1.0 - b1), w2 = (T)(1.0 - b2), slr = (T)lr, sdec = (T)decay;           \
    if (!check) {                                                                           \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                   \
        for (int64_t c = 0; c < nchunks; c++) {                                             \
            int64_t t = tid[c], lo = start[c], hi = lo + CHUNK < n[t] ? lo + CHUNK : n[t];  \
            NAME##_chunk(p[t], g[t], m[t], lo, hi, w1, w2, slr, sdec);                      \
        }                                                                                   \
    } else {                                                                                \
        int64_t c0 = 0;                                                                     \
        while (c0 < nchunks) {                                                              \
            int64_t c1 = c0, acc = 0;                                                       \
            while (c1 < nchunks && acc < BATCH) {                                           \
                int64_t t = tid[c1];                                                        \
                acc += (start[c1] + CHUNK < n[t] ? CHUNK : n[t] - start[c1]);               \
                c1++;                                                                       \
            }                                                                               \
            while (c1 < nchunks && tid[c1] == tid[c1 - 1]) c1++; /* end on a tensor edge */ \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")               \
            for (int64_t c = c0; c < c1; c++) {                                             \
                int64_t t = tid[c], lo = start[c];                                          \
                int64_t hi = lo + CHUNK < n[t] ? lo + CHUNK : n[t];                         \
                const T* restrict gg = g[t];                                                \
                double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* 8 lanes: vectorizable */         \
                int64_t i = lo;                                                             \
                for (; i + 8 <= hi; i += 8)                                                 \
                    for (int j = 0; j < 8; j++) a[j] += (double)gg[i + j] * (double)gg[i + j]; \
                for (; i < hi; i++) a[0] += (double)gg[i] * (double)gg[i];                  \
                part[c] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); \
            }                                                                               \
            for (int64_t c = c0; c < c1; c++) sumsq[tid[c]] += part[c];                     \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")               \
            for (int64_t c = c0; c < c1; c++) {                                             \
                int64_t t = tid[c], lo = start[c];                                          \
                int64_t hi = lo + CHUNK < n[t] ? lo + CHUNK : n[t];                         \
                if (isfinite(sumsq[t]))                                                     \
                    NAME##_chunk(p[t], g[t], m[t], lo, hi, w1, w2, slr, sdec);              \
            }                                                                               \
            c0 = c1;                                                                        \
        }                                                                                   \
    }                                                                                       \
    free(tid); free(start); free(part);                                                     \
}

LION(lion_f32, float)
LION(lion_f64, double)
"""

_lock = threading.Lock()
_lib: Any = None
_tried = False


def _cache_dir() -> Path:
    root = os.environ.get("TRACEKIT_KERNEL_DIR")
    return Path(root) if root else Path.home() / ".cache" / "tracekit" / "kernels"


def _build(target: Path) -> bool:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "lion.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / target.name
        base = [compiler, "-O3", "-shared", "-fPIC", "-std=c99", str(src), "-o", str(out), "-lm"]
        for flags in (["-march=native", "-fopenmp"], ["-fopenmp"], []):
            cmd = base[:1] + flags + base[1:]
            result = subprocess.run(cmd, capture_output=True, timeout=120)
            if result.returncode == 0:
                os.replace(out, target)  # atomic: concurrent builders never see half a file
                return True
    return False


def load() -> Any:
    """The loaded kernel library, or None when it cannot be built (callers fall back)."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get("TRACEKIT_NO_CKERNEL"):
            return None
        digest = hashlib.sha256(_SOURCE.encode()).hexdigest()[:16]
        target = _cache_dir() / f"lion_{digest}.so"
        try:
            if not target.exists() and not _build(target):
                return None
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError):
            return None
        for name in ("lion_f32", "lion_f64"):
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                           ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        _lib = lib
        return _lib


def lion_step(params: list, grads: list, exp_avgs: list, lr: float, weight_decay: float,
              beta1: float, beta2: float, threads: int, check: bool = False) -> list[float] | None:
    """One fused Lion step over contiguous CPU tensors of one dtype (float32 or float64),
    updated in place through their data pointers (no autograd involvement).

    With `check`, returns each gradient's sum of squares; tensors whose sum is not finite
    (NaN/inf gradient) are not updated. Without, returns None.
    """
    lib = load()
    if lib is None:
        raise RuntimeError("the fused Lion kernel is not available")
    nt = len(params)
    ptrs = ctypes.c_void_p * nt
    sums = (ctypes.c_double * nt)() if check else None
    fn = lib.lion_f32 if params[0].element_size() == 4 else lib.lion_f64
    fn(nt, ptrs(*[t.data_ptr() for t in params]), ptrs(*[t.data_ptr() for t in grads]),
       ptrs(*[t.data_ptr() for t in exp_avgs]), (ctypes.c_int64 * nt)(*[t.numel() for t in params]),
       float(lr), 1.0 - float(lr) * float(weight_decay), float(beta1), float(beta2), int(threads),
       1 if check else 0, sums)
    return list(sums) if check else None
