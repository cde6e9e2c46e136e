"""Capture a torch objective and its constraints as one CasADi expression graph.

Most objectives and constraints written for ``tk.minimize`` are arithmetic, indexing,
slicing, reductions and elementwise functions of one vector ``x``. Called once with a
symbolic stand-in for ``x`` (``Sym``, which speaks torch through ``__torch_function__``,
torch's public extension point for tensor-like types), such a function returns a CasADi
``SX`` expression; IPOPT then gets exact, sparse first and second derivatives evaluated
in compiled code, as if the user had written the problem in CasADi. This is what makes
``method="ipopt"`` as fast as IPOPT used directly: a torch round trip per derivative
costs more than IPOPT's whole iteration on a small problem.

Nothing here is trusted blindly. A function that does anything ``Sym`` does not model
(data-dependent ``if``, ``.item()``, numpy, in-place writes, an op not in the table)
raises, and the caller falls back to torch callbacks. A capture whose values differ from
the torch functions at ``x0`` and at a second point is discarded the same way, and every
returned point is graded by the torch functions themselves, never by the capture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Unsupported", "Sym", "capture"]


class Unsupported(TypeError):
    """The function does something the symbolic stand-in does not model."""


def _ca():
    import casadi

    return casadi


def _const(v: Any) -> tuple[Any, tuple[int, ...]]:
    """A numeric constant as a CasADi DM with its torch shape."""
    if torch.is_tensor(v):
        if v.requires_grad or v.dtype in (torch.complex64, torch.complex128):
            raise Unsupported("tensor constant that needs a gradient or is complex")
        arr = v.detach().cpu().numpy().astype(np.float64)
    elif isinstance(v, (int, float, bool, np.ndarray, np.number)):
        arr = np.asarray(v, dtype=np.float64)
    else:
        raise Unsupported(f"operand of type {type(v).__name__}")
    if arr.ndim > 2:
        raise Unsupported("constant with more than two dimensions")
    shape = tuple(arr.shape)
    mat = arr.reshape(-1, 1) if arr.ndim <= 1 else arr
    return _ca().DM(mat), shape


def _lift(v: Any) -> Sym:
    return v if isinstance(v, Sym) else Sym(*_const(v))


def _broadcast(a: Sym, b: Sym) -> tuple[Any, Any, tuple[int, ...]]:
    """Operands with torch broadcasting for the shapes modeled: equal, or one a scalar."""
    if a.shape == b.shape:
        return a.e, b.e, a.shape
    if a.count == 1 and len(a.shape) <= len(b.shape):
        return a.e, b.e, b.shape
    if b.count == 1 and len(b.shape) <= len(a.shape):
        return a.e, b.e, a.shape
    raise Unsupported(f"broadcasting shapes {a.shape} and {b.shape}")


def _binary(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Sym]:
    def apply(a: Any, b: Any) -> Sym:
        # fast paths: a Python number needs no conversion (CasADi takes floats directly)
        if isinstance(a, Sym) and type(b) in (int, float):
            return Sym(op(a.e, b), a.shape)
        if isinstance(b, Sym) and type(a) in (int, float):
            return Sym(op(a, b.e), b.shape)
        x, y = _lift(a), _lift(b)
        ex, ey, shape = _broadcast(x, y)
        return Sym(op(ex, ey), shape)
    return apply


#: A constant matrix with more entries than this is not captured: a scalar expression
#: graph of a dense matrix-vector product grows with its size (and CasADi's symbolic
#: Hessian with it), while torch's BLAS handles it in one call.
DENSE_CONSTANT_MAX = 2_500


def _matmul(a: Any, b: Any) -> Sym:
    for v in (a, b):
        if not isinstance(v, Sym) and int(np.prod(np.shape(v))) > DENSE_CONSTANT_MAX and np.ndim(v) == 2:
            raise Unsupported("a large dense constant matrix (torch is faster there)")
    x, y = _lift(a), _lift(b)
    ca = _ca()
    sa, sb = x.shape, y.shape
    if len(sa) == 1 and len(sb) == 1 and sa == sb:
        return Sym(ca.dot(x.e, y.e), ())
    if len(sa) == 2 and len(sb) == 1 and sa[1] == sb[0]:
        return Sym(ca.mtimes(x.e, y.e), (sa[0],))
    if len(sa) == 1 and len(sb) == 2 and sa[0] == sb[0]:
        return Sym(ca.mtimes(x.e.T, y.e).T, (sb[1],))
    if len(sa) == 2 and len(sb) == 2 and sa[1] == sb[0]:
        return Sym(ca.mtimes(x.e, y.e), (sa[0], sb[1]))
    raise Unsupported(f"matmul of shapes {sa} and {sb}")


def _unary(name: str) -> Callable[..., Sym]:
    def apply(a: Any) -> Sym:
        x = _lift(a)
        return Sym(getattr(_ca(), name)(x.e), x.shape)
    return apply


def _reduce(kind: str) -> Callable[..., Sym]:
    def apply(a: Any, dim: Any = None, keepdim: bool = False, **kw: Any) -> Sym:
        if kw.get("dtype") is not None or keepdim:
            raise Unsupported(f"{kind} with dtype or keepdim")
        x = _lift(a)
        ca = _ca()
        if dim is not None and not (len(x.shape) == 1 and dim in (0, -1)):
            raise Unsupported(f"{kind} over dim {dim} of shape {x.shape}")
        if kind == "sum":
            return Sym(ca.sum1(ca.sum2(x.e)), ())
        if kind == "mean":
            return Sym(ca.sum1(ca.sum2(x.e)) / max(x.count, 1), ())
        if kind == "prod":
            out = 1
            for i in range(x.e.shape[0]):
                for j in range(x.e.shape[1]):
                    out = out * x.e[i, j]
            return Sym(ca.SX(out), ())
        raise Unsupported(kind)
    return apply


def _norm(a: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False, **kw: Any) -> Sym:
    if dim is not None or keepdim or kw.get("dtype") is not None or p not in (2, "fro", None):
        raise Unsupported("norm other than the 2-norm of everything")
    x = _lift(a)
    return Sym(_ca().norm_fro(x.e), ())


def _stack(items: Sequence[Any], dim: int = 0) -> Sym:
    parts = [_lift(v) for v in items]
    if dim not in (0, -1) or not parts or any(p.shape != () for p in parts):
        raise Unsupported("stack other than of scalars")
    return Sym(_ca().vertcat(*[p.e for p in parts]), (len(parts),))


def _cat(items: Sequence[Any], dim: int = 0) -> Sym:
    parts = [_lift(v) for v in items]
    if dim not in (0, -1) or not parts or any(len(p.shape) != 1 for p in parts):
        raise Unsupported("cat other than of vectors")
    return Sym(_ca().vertcat(*[p.e for p in parts]), (sum(p.shape[0] for p in parts),))


def _clamp(a: Any, min: Any = None, max: Any = None) -> Sym:  # noqa: A002 - torch's names
    x = _lift(a)
    e = x.e
    ca = _ca()
    if min is not None:
        e = ca.fmax(e, _lift(min).e)
    if max is not None:
        e = ca.fmin(e, _lift(max).e)
    return Sym(e, x.shape)


def _where_unsupported(*a: Any, **k: Any) -> Sym:
    raise Unsupported("data-dependent selection")


def _pow(a: Any, b: Any) -> Sym:
    if isinstance(a, Sym) and type(b) in (int, float):
        return Sym(_ca().power(a.e, b), a.shape)
    x, y = _lift(a), _lift(b)
    ex, ey, shape = _broadcast(x, y)
    return Sym(_ca().power(ex, ey), shape)


_add = _binary(lambda u, v: u + v)
_sub = _binary(lambda u, v: u - v)
_mul = _binary(lambda u, v: u * v)
_div = _binary(lambda u, v: u / v)


def _neg(a):
    x = _lift(a)
    return Sym(-x.e, x.shape)


def _square(a):
    return _pow(a, 2)


def _sigmoid(a):
    x = _lift(a)
    return Sym(1 / (1 + _ca().exp(-x.e)), x.shape)


_maximum = _binary(lambda u, v: _ca().fmax(u, v))
_minimum = _binary(lambda u, v: _ca().fmin(u, v))


T = torch.Tensor
#: torch callables modeled, by the function object torch hands to ``__torch_function__``.
TABLE: dict[Any, Callable[..., Any]] = {
    torch.add: _add, T.add: _add, T.__add__: _add, T.__radd__: lambda a, b: _add(b, a),
    torch.sub: _sub, T.sub: _sub, T.__sub__: _sub, T.__rsub__: lambda a, b: _sub(b, a),
    torch.mul: _mul, T.mul: _mul, T.__mul__: _mul, T.__rmul__: lambda a, b: _mul(b, a),
    torch.div: _div, T.div: _div, T.__truediv__: _div, T.__rtruediv__: lambda a, b: _div(b, a),
    torch.pow: _pow, T.pow: _pow, T.__pow__: _pow, T.__rpow__: lambda a, b: _pow(b, a),
    torch.matmul: _matmul, T.matmul: _matmul, T.__matmul__: _matmul,
    T.__rmatmul__: lambda a, b: _matmul(b, a), torch.mv: _matmul, torch.mm: _matmul,
    torch.dot: _matmul, T.dot: _matmul, torch.inner: _matmul,
    torch.neg: _neg, T.neg: _neg, T.__neg__: _neg,
    torch.square: _square, T.square: _square,
    torch.sum: _reduce("sum"), T.sum: _reduce("sum"), torch.mean: _reduce("mean"),
    T.mean: _reduce("mean"), torch.prod: _reduce("prod"), T.prod: _reduce("prod"),
    torch.norm: _norm, T.norm: _norm, torch.linalg.norm: _norm, torch.linalg.vector_norm: _norm,
    torch.stack: _stack, torch.cat: _cat, torch.concat: _cat, torch.hstack: _cat,
    torch.clamp: _clamp, T.clamp: _clamp, torch.clip: _clamp, T.clip: _clamp,
    torch.maximum: _maximum, torch.minimum: _minimum, torch.sigmoid: _sigmoid, T.sigmoid: _sigmoid,
    torch.where: _where_unsupported,
}
for _name, _ca_name in (("sin", "sin"), ("cos", "cos"), ("tan", "tan"), ("exp", "exp"), ("log", "log"),
                        ("sqrt", "sqrt"), ("tanh", "tanh"), ("sinh", "sinh"), ("cosh", "cosh"),
                        ("abs", "fabs"), ("atan", "atan"), ("asin", "asin"), ("acos", "acos"),
                        ("log1p", "log1p"), ("expm1", "expm1"), ("arctan", "atan")):
    for _owner in (torch, T):
        if hasattr(_owner, _name):
            TABLE[getattr(_owner, _name)] = _unary(_ca_name)
TABLE[T.__abs__] = _unary("fabs")


class Sym:
    """A symbolic tensor: a CasADi ``SX`` matrix with the torch shape it stands for."""

    __slots__ = ("e", "shape", "items")

    def __init__(self, e: Any, shape: tuple[int, ...], items: list | None = None) -> None:
        self.e = e if not isinstance(e, (int, float)) else _ca().SX(e)
        self.shape = shape
        self.items = items  # the entries, split once (the variable itself is indexed most)

    # ---- torch's extension point ----------------------------------------------------
    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        impl = TABLE.get(func)
        if impl is None:
            raise Unsupported(f"torch function {getattr(func, '__name__', func)}")
        return impl(*args, **(kwargs or {}))

    # ---- shape ---------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of entries (``numel()`` in torch's spelling)."""
        return math.prod(self.shape)

    def numel(self) -> int:
        return self.count

    def dim(self) -> int:
        return len(self.shape)

    ndim = property(dim)
    dtype = torch.float64
    device = torch.device("cpu")
    requires_grad = False

    def size(self, d: int | None = None) -> Any:
        return torch.Size(self.shape) if d is None else self.shape[d]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def reshape(self, *shape: Any) -> Sym:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        if shape in ((-1,), (self.count,)) and len(self.shape) <= 1:
            return Sym(self.e, (self.count,))
        if shape == () and self.count == 1:
            return Sym(self.e, ())
        raise Unsupported(f"reshape {self.shape} -> {shape}")

    view = reshape

    def flatten(self) -> Sym:
        return self.reshape(-1)

    def squeeze(self) -> Sym:
        return Sym(self.e, ()) if self.count == 1 else self

    # ---- indexing ------------------------------------------------------------------
    def __getitem__(self, idx: Any) -> Sym:
        if isinstance(idx, tuple) and len(idx) == 2 and idx[0] is Ellipsis:
            idx = idx[1]  # x[..., i]: the batch-ready spelling, on one instance
        if len(self.shape) != 1:
            if len(self.shape) == 2 and isinstance(idx, int):
                i = idx + self.shape[0] if idx < 0 else idx
                return Sym(self.e[i, :].T, (self.shape[1],))
            raise Unsupported(f"indexing a tensor of shape {self.shape}")
        n = self.shape[0]
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension 0 with size {n}")
            return Sym(self.items[i] if self.items is not None else self.e[i % n], ())
        if isinstance(idx, slice):
            rng = range(n)[idx]
            return Sym(self.e[list(rng)] if rng.step != 1 else self.e[rng.start:rng.stop], (len(rng),))
        if torch.is_tensor(idx) or isinstance(idx, (list, np.ndarray)):
            arr = np.asarray(idx.cpu().numpy() if torch.is_tensor(idx) else idx)
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise Unsupported("indexing with a mask or a multi-dimensional index")
            pos = [int(i) % n for i in arr]
            return Sym(self.e[pos], (len(pos),))
        raise Unsupported(f"index {idx!r}")

    def __setitem__(self, idx: Any, value: Any) -> None:
        raise Unsupported("in-place assignment")

    # ---- arithmetic ----------------------------------------------------------------
    __add__ = _add
    __sub__ = _sub
    __mul__ = _mul
    __truediv__ = _div
    __pow__ = _pow
    __matmul__ = _matmul

    def __radd__(self, o):
        return _add(o, self)

    def __rsub__(self, o):
        return _sub(o, self)

    def __rmul__(self, o):
        return _mul(o, self)

    def __rtruediv__(self, o):
        return _div(o, self)

    def __rpow__(self, o):
        return _pow(o, self)

    def __rmatmul__(self, o):
        return _matmul(o, self)

    def __neg__(self):
        return _neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _unary("fabs")(self)

    @property
    def T(self) -> Sym:  # noqa: N802 - torch's name
        if len(self.shape) <= 1:
            return self
        return Sym(self.e.T, (self.shape[1], self.shape[0]))

    def __bool__(self) -> bool:
        raise Unsupported("a Python branch on a value of x")

    def __float__(self) -> float:
        raise Unsupported("float() of a value of x")

    def __index__(self) -> int:
        raise Unsupported("a value of x used as an index")

    def __array__(self, *a: Any, **k: Any) -> Any:
        raise Unsupported("numpy conversion of x")

    def _compare(self, other: Any) -> Any:
        raise Unsupported("a comparison of values of x")

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def __getattr__(self, name: str) -> Any:
        # torch.Tensor methods with a table entry (x.sin(), x.sum(), x.dot(y), ...)
        meth = getattr(torch.Tensor, name, None)
        if meth is not None and meth in TABLE:
            impl = TABLE[meth]
            return lambda *a, **k: impl(self, *a, **k)
        raise Unsupported(f"tensor attribute {name}")


def capture(fns: Sequence[Callable[..., Any]], shape: tuple[int, ...]) -> tuple[Any, list[Any]] | None:
    """``(x, [expr per function])`` with ``x`` an ``SX`` column of ``prod(shape)`` symbols and
    each function's output flattened to a column, or ``None`` if any function cannot be
    captured (the caller then uses torch)."""
    if len(shape) > 1:
        return None
    try:
        ca = _ca()
    except ImportError:
        return None
    n = math.prod(shape)
    x = ca.SX.sym("x", n)
    X = Sym(x, shape, ca.vertsplit(x) if len(shape) == 1 else None)
    outs = []
    try:
        for fn in fns:
            out = fn(X)
            if not isinstance(out, Sym):
                out = _lift(out)
            e = out.e
            outs.append(ca.reshape(e.T if len(out.shape) == 2 else e, out.count, 1) if out.count else ca.SX(0, 1))
    except Exception:  # noqa: BLE001 - anything the stand-in does not model means: use torch
        return None
    return x, outs
