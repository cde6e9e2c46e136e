"""Fused CPU optimizer kernels (SGD, Adam/AdamW, Lion), compiled once with the system C
compiler and loaded by ctypes.

Why: torch runs an optimizer step as several passes over memory (or, fused, one kernel
launch per dtype and device with Python work per tensor); these kernels read the
gradient, parameter and state once per element and write the parameter and state once,
for all tensors of one dtype in one call, split evenly over OpenMP threads (static, no
dynamic scheduling), so 1000 small tensors cost one call. With `check`, the same pass
first reduces each gradient to a sum of squares in double (the NaN/inf guard and the
gradient norms), then updates only the tensors whose sum is finite, while their gradient
is still in cache.

No torch headers are needed (the kernels see only pointers and sizes), so the build takes
well under a second. It is never started by a training step: `build()` (or
`python -m solvers.gradient.prebuild`, or `backend="ckernel"`) compiles it ahead of time into
`$TRACEKIT_KERNEL_DIR` (default `~/.cache/tracekit/kernels`), keyed by the source, the
compiler flags and the CPU; `load()` only opens what is there. Until then, without a C
compiler, or with `TRACEKIT_NO_CKERNEL=1`, the callers run torch's own kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from array import array
from pathlib import Path
from typing import Any

# Tensors of at most this many elements are checked then updated whole by one thread
# (their gradient is re-read from cache); larger ones are split over the threads.
SMALL = 1 << 20

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- the driver ----

   The nt tensors are laid end to end (offsets off[t]). Without check, thread k of T gets
   the elements [total*k/T, total*(k+1)/T), split points rounded down to 16 elements inside
   their tensor (no cache line shared by two threads); one OpenMP region per call, no other
   synchronization.

   With check, each gradient is reduced to a sum of squares (in double) before any of it
   is used, and a tensor whose sum is not finite is not updated (sumsq[t] gets the sums).
   "Small" tensors (at most `small` elements, and at most a quarter of a thread's share)
   are dealt whole to the threads in balanced runs: each thread sums then updates one
   tensor at a time, its gradient still in cache, with no synchronization. Larger tensors
   are shared: every thread sums its slice, one barrier, then every thread updates its
   slice. Partial sums are added in thread order, so every thread sees the same total and
   the result is deterministic for a given thread count. */

typedef void (*upd_fn)(const void* ctx, int64_t t, int64_t lo, int64_t hi);
typedef double (*sq_fn)(const void* g, int64_t lo, int64_t hi);

static int64_t find_tensor(const int64_t* off, int64_t nt, int64_t x) {
    int64_t lo = 0, hi = nt;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (off[mid] <= x) lo = mid; else hi = mid;
    }
    return lo;
}

/* the k-th of T split points of [lo, hi), rounded down to 16 elements inside its tensor */
static int64_t cut(const int64_t* off, int64_t nt, int64_t lo, int64_t hi, int k, int T) {
    if (k <= 0) return lo;
    if (k >= T) return hi;
    int64_t x = lo + (int64_t)((double)(hi - lo) * k / T);
    if (x >= hi) return hi;
    int64_t t = find_tensor(off, nt, x);
    x = off[t] + ((x - off[t]) & ~(int64_t)15);
    return x < lo ? lo : x;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static int run(int64_t nt, const int64_t* n, int threads, int check, int64_t small,
               const void* ctx, upd_fn upd, sq_fn sq, const void* const* g, double* sumsq) {
    int64_t* off = (int64_t*)malloc(sizeof(int64_t) * (nt + 1));
    if (!off) return -1;
    off[0] = 0;
    for (int64_t t = 0; t < nt; t++) off[t + 1] = off[t] + n[t];
    const int64_t total = off[nt];
    if (threads < 1) threads = 1;
    if (total < (int64_t)threads * 16384) threads = 1;
    if (!check) {
        _Pragma("omp parallel num_threads(threads) if(threads > 1)")
        {
            int k = thread_id(), T = thread_count();
            int64_t lo = cut(off, nt, 0, total, k, T), hi = cut(off, nt, 0, total, k + 1, T);
            if (lo < hi) {
                for (int64_t t = find_tensor(off, nt, lo); lo < hi; t++) {
                    int64_t end = off[t + 1] < hi ? off[t + 1] : hi;
                    if (end > lo) upd(ctx, t, lo - off[t], end - off[t]);
                    lo = end;
                }
            }
        }
        free(off);
        return 0;
    }
    if (threads > 1 && small > total / (4 * threads)) small = total / (4 * threads);
    /* small tensors, end to end: soff (prefix sums) and sidx (their indices) */
    int64_t* soff = (int64_t*)malloc(sizeof(int64_t) * (nt + 1));
    int64_t* sidx = (int64_t*)malloc(sizeof(int64_t) * (nt + 1));
    double* part = (double*)calloc((size_t)threads * (size_t)(nt > 0 ? nt : 1), sizeof(double));
    if (!soff || !sidx || !part) { free(off); free(soff); free(sidx); free(part); return -1; }
    int64_t ns = 0;
    soff[0] = 0;
    for (int64_t t = 0; t < nt; t++)
        if (n[t] <= small) { sidx[ns] = t; soff[ns + 1] = soff[ns] + n[t]; ns++; }
    _Pragma("omp parallel num_threads(threads) if(threads > 1)")
    {
        int k = thread_id(), T = thread_count();
        double* mine = part + (size_t)k * nt;
        for (int64_t t = 0; t < nt; t++) {  /* shared (large) tensors, in order */
            if (n[t] <= small) continue;
            int64_t lo = cut(off, nt, off[t], off[t + 1], k, T) - off[t];
            int64_t hi = cut(off, nt, off[t], off[t + 1], k + 1, T) - off[t];
            if (hi > lo) mine[t] = sq(g[t], lo, hi);
            if (T > 1) {
                _Pragma("omp barrier")
            }
            double s = 0.0;
            for (int j = 0; j < T; j++) s += part[(size_t)j * nt + t];
            if (hi > lo && isfinite(s)) upd(ctx, t, lo, hi);
        }
        /* small tensors: thread k takes those starting in its share of the run */
        int64_t a = (int64_t)((double)soff[ns] * k / T), b = (int64_t)((double)soff[ns] * (k + 1) / T);
        int64_t i0 = k == 0 ? 0 : find_tensor(soff, ns, a), i1 = k + 1 >= T ? ns : find_tensor(soff, ns, b);
        if (k > 0 && i0 < ns && soff[i0] < a) i0++;
        if (k + 1 < T && i1 < ns && soff[i1] < b) i1++;
        for (int64_t i = i0; i < i1; i++) {
            int64_t t = sidx[i];
            double s = sq(g[t], 0, n[t]);
            mine[t] = s;
            if (isfinite(s)) upd(ctx, t, 0, n[t]);
        }
    }
    int skipped = 0;
    for (int64_t t = 0; t < nt; t++) {
        double s = 0.0;
        for (int j = 0; j < threads; j++) s += part[(size_t)j * nt + t];
        sumsq[t] = s;
        skipped += !isfinite(s);
    }
    free(part); free(soff); free(sidx); free(off);
    return skipped;
}

/* ---- sums of squares (double accumulators: 32 lanes, so that the vectorized adds are not
   bound by their latency) ---- */
#define SUMSQ(NAME, T)                                                                      \
static double NAME(const void* gv, int64_t lo, int64_t hi) {                                \
    const T* restrict g = (const T*)gv;                                                     \
    double a[32] = {0};                                                                     \
    int64_t i = lo;                                                                         \
    for (; i + 32 <= hi; i += 32)                                                           \
        for (int j = 0; j < 32; j++) a[j] += (double)g[i + j] * (double)g[i + j];           \
    for (; i < hi; i++) a[0] += (double)g[i] * (double)g[i];                                \
    for (int w = 16; w > 0; w /= 2)                                                         \
        for (int j = 0; j < w; j++) a[j] += a[j + w];                                       \
    return a[0];                                                                            \
}
SUMSQ(sumsq_f32, float)
SUMSQ(sumsq_f64, double)

#define INLINE static inline __attribute__((always_inline))

/* ---- entry points: f(const int64_t* ia, const double* da, double* sumsq) ----
   ia: [0] nt, [1] sizes (int64[nt]), [2] threads, [3] check, [4] small, [5] params,
       [6] grads (T*[nt] each); then sgd: [7] momentum buffers, [8] first-step flags
       (uint8[nt]), [9] nesterov, [10] maximize; adam: [7] exp_avg, [8] exp_avg_sq,
       [9] steps (float*[nt]), [10] maximize; lion: [7] exp_avg.
   da: sgd: lr, momentum, dampening, weight_decay, decay; adam: lr, beta1, beta2, eps,
       weight_decay, decay; lion: lr, decay, beta1, beta2.
   Returns the number of tensors skipped by the check (-1: out of memory, nothing done). */

/* ---- SGD (torch.optim.SGD semantics), with an optional decoupled decay factor on p ----
     g' = gs * g [+ wd * p']                 (p' = p * decay; gs = -1 when maximizing)
     buf = g' (first step) | momentum * buf + (1 - dampening) * g'
     d = nesterov ? g' + momentum * buf : buf   (d = g' without momentum)
     p = p' - lr * d                                                                        */
#define SGD(NAME, T)                                                                        \
typedef struct { T** p; T** g; T** b; const unsigned char* first; T lr, mom, dampw, wd,     \
                 decay, gs; int nesterov; } NAME##_ctx;                                    \
INLINE void NAME##_loop(T* restrict p, const T* restrict g, T* restrict b, int64_t lo,     \
                        int64_t hi, T lr, T mom, T dampw, T wd, T decay, T gs,             \
                        const int WD, const int MOM, const int FIRST, const int NEST) {    \
    for (int64_t i = lo; i < hi; i++) {                                                     \
        T pi = p[i] * decay;                                                                \
        T gi = gs * g[i];                                                                   \
        if (WD) gi = gi + wd * pi;                                                          \
        T d = gi;                                                                           \
        if (MOM) {                                                                          \
            T bi = FIRST ? gi : mom * b[i] + dampw * gi;                                    \
            b[i] = bi;                                                                      \
            d = NEST ? gi + mom * bi : bi;                                                  \
        }                                                                                   \
        p[i] = pi - lr * d;                                                                 \
    }                                                                                       \
}                                                                                           \
static void NAME##_upd(const void* cv, int64_t t, int64_t lo, int64_t hi) {                 \
    const NAME##_ctx* c = (const NAME##_ctx*)cv;                                            \
    T* p = c->p[t]; const T* g = c->g[t];                                                   \
    int wd = c->wd != 0, mom = c->b != 0, nest = c->nesterov, first = mom && c->first[t];   \
    int code = wd | (mom << 1) | (first << 2) | (nest << 3);                                \
    T* b = mom ? c->b[t] : 0;                                                               \
    switch (code) {                                                                         \
    case 0: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 0, 0, 0, 0); break; \
    case 1: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 1, 0, 0, 0); break; \
    case 2: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 0, 1, 0, 0); break; \
    case 3: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 1, 1, 0, 0); break; \
    case 6: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 0, 1, 1, 0); break; \
    case 7: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 1, 1, 1, 0); break; \
    case 10: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 0, 1, 0, 1); break; \
    case 11: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 1, 1, 0, 1); break; \
    case 14: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 0, 1, 1, 1); break; \
    case 15: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, 1, 1, 1, 1); break; \
    default: NAME##_loop(p, g, b, lo, hi, c->lr, c->mom, c->dampw, c->wd, c->decay, c->gs, wd, 0, 0, 0); break; \
    }                                                                                       \
}                                                                                           \
int NAME(const int64_t* ia, const double* da, double* sumsq) {                           \
    T** b = (T**)(intptr_t)ia[7];                                                           \
    NAME##_ctx c = {(T**)(intptr_t)ia[5], (T**)(intptr_t)ia[6], da[1] != 0.0 ? b : 0,        \
                    (const unsigned char*)(intptr_t)ia[8], (T)da[0], (T)da[1],              \
                    (T)(1.0 - da[2]), (T)da[3], (T)da[4], ia[10] ? (T)-1 : (T)1, (int)ia[9]}; \
    return run(ia[0], (const int64_t*)(intptr_t)ia[1], (int)ia[2], (int)ia[3], ia[4], &c,     \
               NAME##_upd, sumsq_##T, (const void* const*)(intptr_t)ia[6], sumsq);            \
}

#define sumsq_float sumsq_f32
#define sumsq_double sumsq_f64
SGD(sgd_f32, float)
SGD(sgd_f64, double)

/* ---- Adam / AdamW (torch.optim.Adam semantics; amsgrad is left to torch) ----
     p' = p * decay                                  (AdamW: decay = 1 - lr * wd)
     g' = gs * g [+ wd * p']                         (Adam's L2 term)
     m = m + (1 - b1) * (g' - m);  v = b2 * v + (1 - b2) * g' * g'
     p = p' - step_size * m / (sqrt(v) / bc2_sqrt + eps)
   with step_size = lr / (1 - b1^s), bc2_sqrt = sqrt(1 - b2^s), s the tensor's step + 1
   (its step counter, a float32 scalar, is incremented here when the tensor is updated). */
#define ADAM(NAME, T)                                                                       \
typedef struct { T** p; T** g; T** m; T** v; const double* coef; T b1w, b2, b2w, eps, wd,   \
                 decay, gs; } NAME##_ctx;                                                   \
INLINE void NAME##_loop(T* restrict p, const T* restrict g, T* restrict m, T* restrict v,   \
                        int64_t lo, int64_t hi, T ss, T bc2s, T b1w, T b2, T b2w, T eps,    \
                        T wd, T decay, T gs, const int WD) {                                \
    for (int64_t i = lo; i < hi; i++) {                                                     \
        T pi = p[i] * decay;                                                                \
        T gi = gs * g[i];                                                                   \
        if (WD) gi = gi + wd * pi;                                                          \
        T mi = m[i], vi = v[i];                                                             \
        mi = mi + b1w * (gi - mi);                                                          \
        vi = b2 * vi + b2w * (gi * gi);                                                     \
        m[i] = mi;                                                                          \
        v[i] = vi;                                                                          \
        p[i] = pi - ss * mi / (SQRT_##T(vi) / bc2s + eps);                                  \
    }                                                                                       \
}                                                                                           \
static void NAME##_upd(const void* cv, int64_t t, int64_t lo, int64_t hi) {                 \
    const NAME##_ctx* c = (const NAME##_ctx*)cv;                                            \
    T ss = (T)c->coef[2 * t], bc2s = (T)c->coef[2 * t + 1];                                 \
    if (c->wd != 0)                                                                         \
        NAME##_loop(c->p[t], c->g[t], c->m[t], c->v[t], lo, hi, ss, bc2s, c->b1w, c->b2,    \
                    c->b2w, c->eps, c->wd, c->decay, c->gs, 1);                             \
    else                                                                                    \
        NAME##_loop(c->p[t], c->g[t], c->m[t], c->v[t], lo, hi, ss, bc2s, c->b1w, c->b2,    \
                    c->b2w, c->eps, c->wd, c->decay, c->gs, 0);                             \
}                                                                                           \
int NAME(const int64_t* ia, const double* da, double* sumsq) {                           \
    const int64_t nt = ia[0];                                                               \
    float** step = (float**)(intptr_t)ia[9];                                                \
    const int check = (int)ia[3];                                                           \
    const double lr = da[0], b1 = da[1], b2 = da[2];                                        \
    double* coef = (double*)malloc(sizeof(double) * 2 * (nt > 0 ? nt : 1));                 \
    if (!coef) return -1;                                                                   \
    double last = -1.0, ss = 0.0, bc2s = 1.0;                                               \
    for (int64_t t = 0; t < nt; t++) {                                                      \
        double s = (double)*step[t] + 1.0;                                                  \
        if (s != last) {                                                                    \
            ss = lr / (1.0 - pow(b1, s));                                                   \
            bc2s = sqrt(1.0 - pow(b2, s));                                                  \
            last = s;                                                                       \
        }                                                                                   \
        coef[2 * t] = ss;                                                                   \
        coef[2 * t + 1] = bc2s;                                                             \
    }                                                                                       \
    NAME##_ctx c = {(T**)(intptr_t)ia[5], (T**)(intptr_t)ia[6], (T**)(intptr_t)ia[7],        \
                    (T**)(intptr_t)ia[8], coef, (T)(1.0 - b1), (T)b2, (T)(1.0 - b2), (T)da[3], \
                    (T)da[4], (T)da[5], ia[10] ? (T)-1 : (T)1};                             \
    int r = run(nt, (const int64_t*)(intptr_t)ia[1], (int)ia[2], check, ia[4], &c, NAME##_upd, \
                sumsq_##T, (const void* const*)(intptr_t)ia[6], sumsq);                     \
    if (r >= 0)                                                                             \
        for (int64_t t = 0; t < nt; t++)                                                    \
            if (!check || isfinite(sumsq[t])) *step[t] += 1.0f;                             \
    free(coef);                                                                             \
    return r;                                                                               \
}

#define SQRT_float sqrtf
#define SQRT_double sqrt
ADAM(adam_f32, float)
ADAM(adam_f64, double)

/* ---- Lion (Chen et al., 2023) with decoupled decay ----
     u = m + (1 - b1) * (g - m);  p = p * decay - lr * sign(u);  m = m + (1 - b2) * (g - m) */
#define LION(NAME, T)                                                                       \
typedef struct { T** p; T** g; T** m; T w1, w2, lr, decay; } NAME##_ctx;                    \
static void NAME##_upd(const void* cv, int64_t t, int64_t lo, int64_t hi) {                 \
    const NAME##_ctx* c = (const NAME##_ctx*)cv;                                            \
    T* restrict p = c->p[t]; const T* restrict g = c->g[t]; T* restrict m = c->m[t];        \
    const T w1 = c->w1, w2 = c->w2, lr = c->lr, decay = c->decay;                           \
    for (int64_t i = lo; i < hi; i++) {                                                     \
        T gi = g[i], mi = m[i];                                                             \
        T u = mi + w1 * (gi - mi);                                                          \
        T s = (T)((u > 0) - (u < 0));                                                       \
        p[i] = p[i] * decay - lr * s;                                                       \
        m[i] = mi + w2 * (gi - mi);                                                         \
    }                                                                                       \
}                                                                                           \
int NAME(const int64_t* ia, const double* da, double* sumsq) {                           \
    NAME##_ctx c = {(T**)(intptr_t)ia[5], (T**)(intptr_t)ia[6], (T**)(intptr_t)ia[7],        \
                    (T)(1.0 - da[2]), (T)(1.0 - da[3]), (T)da[0], (T)da[1]};                \
    return run(ia[0], (const int64_t*)(intptr_t)ia[1], (int)ia[2], (int)ia[3], ia[4], &c,     \
               NAME##_upd, sumsq_##T, (const void* const*)(intptr_t)ia[6], sumsq);            \
}

LION(lion_f32, float)
LION(lion_f64, double)
"""

_FLAGS: tuple[list[str], ...] = (["-march=native", "-fopenmp"], ["-fopenmp"], [])
_BASE = ["-O3", "-fno-math-errno", "-shared", "-fPIC", "-std=c99"]

_lock = threading.Lock()
_lib: Any = None
_tried = False

# every entry point: f(const int64_t* ia, const double* da, double* sumsq); see the source
ALGORITHMS = ("sgd", "adam", "lion")
IA_SIZE = 11


def cache_dir() -> Path:
    """Where compiled libraries are kept: `$TRACEKIT_KERNEL_DIR`, else ~/.cache/tracekit/kernels."""
    root = os.environ.get("TRACEKIT_KERNEL_DIR")
    return Path(root) if root else Path.home() / ".cache" / "tracekit" / "kernels"


def _cpu_signature() -> str:
    """-march=native code must not be shared between different CPUs (a shared home)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def build_library(source: str, source_name: str, target: Path, commands: list[list[str]],
                  timeout: float = 120) -> bool:
    """Compile `source` (written as `source_name`) into `target` with the first of `commands`
    that succeeds; each is an argv whose "{src}" and "{out}" items are filled in. The file
    appears atomically, so concurrent builders never see half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / source_name
        src.write_text(source)
        out = Path(tmp) / target.name
        for command in commands:
            argv = [{"{src}": str(src), "{out}": str(out)}.get(a, a) for a in command]
            try:
                result = subprocess.run(argv, capture_output=True, timeout=timeout)
            except (OSError, subprocess.SubprocessError):
                return False
            if result.returncode == 0:
                os.replace(out, target)
                return True
    return False


def _build(target: Path) -> bool:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return False
    return build_library(_SOURCE, "kernels.c", target,
                         [[compiler, *flags, *_BASE, "{src}", "-o", "{out}", "-lm"] for flags in _FLAGS])


def _target() -> Path:
    key = "\0".join([_SOURCE, repr(_FLAGS), repr(_BASE), _cpu_signature()])
    return cache_dir() / f"optim_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def load() -> Any:
    """The kernel library when it has been built (see `build`), else None: callers then run
    torch's kernels. Never compiles: nothing is built while a model trains."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get("TRACEKIT_NO_CKERNEL"):
            return None
        target = _target()
        if not target.exists():
            return None
        _lib = _open(target)
        return _lib


def build() -> Any:
    """Compile the kernels into the cache now, if they are not there, and load them; None
    without a C compiler or with `TRACEKIT_NO_CKERNEL=1`. Run it ahead of training
    (`python -m solvers.gradient.prebuild`); `backend="ckernel"` calls it at construction."""
    global _lib, _tried
    if os.environ.get("TRACEKIT_NO_CKERNEL"):
        return None
    with _lock:
        if _lib is not None:
            return _lib
        target = _target()
        try:
            if not target.exists() and not _build(target):
                return None
        except (OSError, subprocess.SubprocessError):
            return None
        _lib, _tried = _open(target), True
        return _lib


def _open(target: Path) -> Any:
    try:
        lib = ctypes.CDLL(str(target))
    except OSError:
        return None
    for algo in ALGORITHMS:
        for suffix in ("f32", "f64"):
            fn = getattr(lib, f"{algo}_{suffix}")
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def addresses(tensors: Any) -> array:
    """The tensors' data pointers as a C array of uint64 (keep it alive during the call)."""
    return array("Q", [t.data_ptr() for t in tensors])


def address(buf: array) -> int:
    return buf.buffer_info()[0]


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
    p, g, m = addresses(params), addresses(grads), addresses(exp_avgs)
    n = array("q", [t.numel() for t in params])
    ia = array("q", [nt, address(n), int(threads), 1 if check else 0, SMALL, address(p), address(g),
                     address(m), 0, 0, 0])
    da = array("d", [float(lr), 1.0 - float(lr) * float(weight_decay), float(beta1), float(beta2)])
    sums = array("d", bytes(8 * max(nt, 1)))
    fn = lib.lion_f32 if params[0].element_size() == 4 else lib.lion_f64
    if fn(address(ia), address(da), address(sums)) < 0:
        raise MemoryError("the fused Lion kernel could not allocate its work arrays")
    return list(sums)[:nt] if check else None

