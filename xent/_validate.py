"""Argument checking shared by every public function of xent.

Each helper either returns a value ready for the kernels or raises the error
that the validation rules ask for: ``TypeError`` for a wrong kind of dtype, ``ValueError``
for shapes and values, ``xent.LabelError`` for class indices.  Messages name
the argument, what was expected and what was received.
"""

import numbers
import operator

import numpy as np

from . import _kernels

REDUCTIONS = ("none", "sum", "mean")


class LabelError(IndexError, ValueError):
    """A class index outside ``[0, C)`` (and not ``ignore_index``).

    Subclasses both ``IndexError`` (it is an out-of-range index) and
    ``ValueError`` (it is a bad value), so either ``except`` catches it.
    """


# shown (and pickled) under its public name, xent.LabelError
LabelError.__module__ = "xent"


def as_array(x, name):
    """``np.asarray`` with an error that names the argument."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"`{name}` must be an array-like of numbers; got {type(x).__name__} ({exc}).") from None


def compute_dtype(arr, name):
    """float32 for float16/float32, float64 for float64 and integers."""
    kind = arr.dtype.kind
    if kind == "f":
        return np.dtype(np.float32) if arr.dtype.itemsize <= 4 else np.dtype(np.float64)
    if kind in "iu":
        return np.dtype(np.float64)
    raise TypeError(
        f"`{name}` must be a real floating-point (or integer) array; got dtype {arr.dtype}."
    )


def grad_dtype(arr, cdt):
    """The gradient keeps a floating logits dtype (float16 too); integers give float64."""
    if arr.dtype.kind == "f" and arr.dtype.itemsize <= 8:
        return arr.dtype.newbyteorder("=")
    return cdt


def check_axis(axis, ndim, name="axis", array_name="logits"):
    if isinstance(axis, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be an integer; got {axis!r}.")
    try:
        ax = operator.index(axis)
    except TypeError:
        raise ValueError(f"`{name}` must be an integer; got {axis!r}.") from None
    if not -ndim <= ax < ndim:
        raise ValueError(
            f"`{name}` must be in [{-ndim}, {ndim}) for `{array_name}` with {ndim} dimension(s); got {ax}."
        )
    return ax % ndim


def check_reduction(reduction):
    """The one check of `reduction`, on every path: a plain ``str`` out of
    REDUCTIONS (a ``str`` subclass such as ``np.str_`` is accepted and
    returned as the plain string; a 0-d string array is not a string)."""
    if isinstance(reduction, str):
        for r in REDUCTIONS:
            if reduction == r:
                return r
    raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean'; got {reduction!r}.")


def check_smoothing(label_smoothing):
    ok = isinstance(label_smoothing, numbers.Real) and not isinstance(label_smoothing, (bool, np.bool_))
    eps = float(label_smoothing) if ok else None
    if not ok or not 0.0 <= eps <= 1.0:
        raise ValueError(f"`label_smoothing` must be a number in [0, 1]; got {label_smoothing!r}.")
    return eps


def thread_limit():
    """The most threads a call may use: the CPUs this process may run on
    (OpenMP's ``omp_get_num_procs``, which honours the affinity mask)."""
    return _kernels.num_procs()


def resolve_n_threads(n_threads):
    """None -> OpenMP's default; -1 -> every core; an integer >= 1, clamped to
    `thread_limit()`: a count beyond the CPUs only adds threads that wait, and
    a huge one makes OpenMP's runtime abort or crash allocating their stacks."""
    if n_threads is None:
        return _kernels.max_threads()
    if isinstance(n_threads, (numbers.Integral, np.integer)) and not isinstance(n_threads, (bool, np.bool_)):
        n = int(n_threads)
        if n == -1:
            return _kernels.num_procs()
        if n >= 1:
            return min(n, thread_limit())
    raise ValueError(f"`n_threads` must be None, an integer >= 1, or -1 (all cores); got {n_threads!r}.")


def real_array(x, name, cdt):
    """A weight-like argument converted to the compute dtype (no copy when it already is)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be a real floating-point or integer array; got dtype {arr.dtype}.")
    return arr.astype(cdt, copy=False)


def class_weight(weight, n_classes, cdt):
    if weight is None:
        return None
    w = real_array(weight, "weight", cdt)
    if w.shape != (n_classes,):
        raise ValueError(f"`weight` must have shape ({n_classes},) (one per class); got shape {w.shape}.")
    return c_array(w)


def per_sample_weight(sample_weight, sample_shape, cdt):
    if sample_weight is None:
        return None
    s = real_array(sample_weight, "sample_weight", cdt)
    if s.shape != tuple(sample_shape):
        raise ValueError(
            f"`sample_weight` must have the per-sample loss shape {tuple(sample_shape)}; got shape {s.shape}."
        )
    return c_array(s).reshape(-1)


def check_ignore_index(ignore_index):
    """Return (has_ignore, value as int64); an index no int64 label can equal is dropped."""
    if ignore_index is None:
        return False, 0
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (numbers.Integral, np.integer)):
        raise TypeError(f"`ignore_index` must be None or an integer; got {ignore_index!r}.")
    v = int(ignore_index)
    info = np.iinfo(np.int64)
    if not info.min <= v <= info.max:
        return False, 0
    return True, v


def c_array(a, dtype=None):
    """C-contiguous, aligned, native-endian, of `dtype`: what the kernels
    read through raw pointers.  At most one copy (none when `a` already is);
    np.ascontiguousarray alone would pass a misaligned array through."""
    f = a.flags if type(a) is np.ndarray else None
    if f is not None and f.c_contiguous and f.aligned and (dtype is None or a.dtype == dtype) \
            and a.dtype.isnative:
        return a                              # what np.require returns, without its cost
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def position(flat_index, shape):
    """A flat C-order index as the position a user reads: 7, or (3, 1)."""
    if len(shape) <= 1:
        return str(flat_index)
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def check_out(out, name, shape, dtype, inputs, alias_name=None):
    """Validate a user buffer before anything is written to it.

    ``inputs`` are (name, array) pairs of what the kernels read, as arrays:
    an argument given as a list, a memoryview or any other buffer is checked
    through the array made from it (``None`` entries are skipped).  `out` may
    be exactly the input named `alias_name` (same memory, shape and strides:
    in place); any other overlap with any input raises, including with that
    same array passed again as another argument.
    """
    if not isinstance(out, np.ndarray):
        raise ValueError(f"`{name}` must be a NumPy array; got {type(out).__name__}.")
    if out.shape != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got shape {out.shape}.")
    if out.dtype.kind != "f" or out.dtype.itemsize != np.dtype(dtype).itemsize:
        raise ValueError(f"`{name}` must have dtype {np.dtype(dtype)}; got {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError(f"`{name}` must be writeable; got a read-only array.")
    for in_name, arr in inputs:
        if arr is None or not np.may_share_memory(out, arr):
            continue
        if in_name == alias_name and _same_view(out, arr):
            continue
        if np.shares_memory(out, arr):
            hint = f" (or exactly `{alias_name}`, to work in place)" if alias_name is not None else ""
            raise ValueError(f"`{name}` overlaps `{in_name}` in memory; pass a separate array{hint}.")
    return out


def _same_view(a, b):
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype.itemsize == b.dtype.itemsize
    )
