"""Validation: every rule about the arguments of xent's functions, once.

Each rule either returns a value ready for the kernels or raises the error
the rules ask for: ``TypeError`` for a wrong kind of dtype, ``ValueError``
for shapes and values, ``xent.LabelError`` for class indices.  Messages name
the argument, what was expected and what was received.

The public functions check their options here first, so that the small-call
path and the general one apply the same rules.  The general path then
validates the arrays and hands the dispatch one record of the call
(:func:`softmax_ce`, :func:`bce`, :func:`softmax_rows` return an
``xent._dispatch.Call``): the arrays in their final layout, the options
resolved, and what the caller needs to shape the result.
"""

import contextvars
import math
import numbers
import operator
import sys

import numpy as np

from . import _dispatch, _kernels
from ._dispatch import Call
from ._types import _UNIT_BITS, _from_words

REDUCTIONS = ("none", "sum", "mean", "state")
_REDUCTION = {r: r for r in REDUCTIONS}


class LabelError(IndexError, ValueError):
    """A class index outside ``[0, C)`` (and not ``ignore_index``).

    Subclasses both ``IndexError`` (it is an out-of-range index) and
    ``ValueError`` (it is a bad value), so either ``except`` catches it.
    """


# shown (and pickled) under its public name, xent.LabelError
LabelError.__module__ = "xent"


# DLPack's device types whose memory the CPU reads (kDLCPU, kDLCUDAHost,
# kDLROCMHost, kDLCUDAManaged); the names of the others, for the error
_HOST_DEVICES = (1, 3, 11, 13)
_DEVICE_NAMES = {2: "CUDA", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                 12: "ExtDev", 14: "oneAPI", 15: "WebGPU", 16: "Hexagon"}


def as_array(x, name):
    """The argument as an ndarray, with an error that names it.

    Arrays of other CPU libraries are read without a copy where their
    layout allows: through DLPack (torch tensors, JAX arrays), else through
    ``__array__``.  A torch bfloat16 tensor is read by its 16-bit patterns as
    ``ml_dtypes.bfloat16``.  An array on another device (a GPU) and a torch
    tensor that requires grad are refused with a TypeError saying what to do.
    """
    if isinstance(x, np.ndarray):
        return x
    device = getattr(x, "__dlpack_device__", None)
    if device is not None:
        kind_, index = device()
        if int(kind_) not in _HOST_DEVICES:
            where = _DEVICE_NAMES.get(int(kind_), f"DLPack device type {int(kind_)}")
            raise TypeError(f"`{name}` is on a {where} device ({index}); xent computes on the CPU: "
                            "move it to host memory first (e.g. tensor.cpu(), jax.device_get).")
    if getattr(x, "requires_grad", False) is True:
        raise TypeError(f"`{name}` is a tensor that requires grad; for losses that autograd "
                        "differentiates use xent.torch (e.g. xent.torch.cross_entropy), or pass "
                        f"{name}.detach() for values only.")
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError):
            pass                   # a dtype NumPy's DLPack does not take (bfloat16): below
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            return _torch_bfloat16(x, name)
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"`{name}` must be an array-like of numbers; got {type(x).__name__} ({exc}).") from None


def _torch_bfloat16(t, name):
    """A CPU torch bfloat16 tensor as an ml_dtypes.bfloat16 array on its memory."""
    try:
        from ml_dtypes import bfloat16
    except ImportError:
        raise TypeError(f"`{name}` is a bfloat16 tensor: NumPy needs ml_dtypes for bfloat16 "
                        "(pip install ml_dtypes), or use xent.torch.") from None
    torch = sys.modules["torch"]
    return np.from_dlpack(t.view(torch.int16)).view(bfloat16)


def kind(dtype):
    """NumPy's dtype kind, with bfloat16 (``ml_dtypes.bfloat16``, kind "V")
    a float: "f"."""
    k = dtype.kind
    return "f" if k == "V" and dtype.name == "bfloat16" else k


def compute_dtype(arr, name):
    """float32 for float16/bfloat16/float32, float64 for float64 and integers."""
    k = kind(arr.dtype)
    if k == "f":
        return np.dtype(np.float32) if arr.dtype.itemsize <= 4 else np.dtype(np.float64)
    if k in "iu":
        return np.dtype(np.float64)
    raise TypeError(
        f"`{name}` must be a real floating-point (or integer) array; got dtype {arr.dtype}."
    )


def grad_dtype(arr, cdt):
    """The gradient keeps a floating logits dtype (the 16-bit ones too); integers give float64."""
    if kind(arr.dtype) == "f" and arr.dtype.itemsize <= 8:
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
        r = _REDUCTION.get(reduction)
        if r is not None:
            return r
    raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', 'state'; got {reduction!r}.")


def check_smoothing(label_smoothing):
    if type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0:
        return label_smoothing
    ok = isinstance(label_smoothing, numbers.Real) and not isinstance(label_smoothing, (bool, np.bool_))
    eps = float(label_smoothing) if ok else None
    if not ok or not 0.0 <= eps <= 1.0:
        raise ValueError(f"`label_smoothing` must be a number in [0, 1]; got {label_smoothing!r}.")
    return eps


def _real_number(value, name):
    """`value` as a float when it is a real number (not a bool), else None."""
    if type(value) is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return None


def check_positive(value, name, allow_none=False):
    """A finite number > 0 (or None where allowed: returned as 0.0)."""
    if value is None and allow_none:
        return 0.0
    v = _real_number(value, name)
    if v is None or not (0.0 < v < math.inf):
        what = "None or a finite number > 0" if allow_none else "a finite number > 0"
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return v


def check_nonnegative(value, name):
    """A finite number >= 0."""
    v = _real_number(value, name)
    if v is None or not (0.0 <= v < math.inf):
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return v


def check_scale(value, name, cdt):
    """A temperature or soft cap the kernels can take in `cdt`: it and its
    reciprocal finite and nonzero there (the logits are multiplied by the
    reciprocal, rounded to `cdt`)."""
    big = float(np.finfo(cdt).max)
    if not 1.0 / big <= value <= big:
        raise ValueError(f"`{name}` must be between {1.0 / big:.3g} and {big:.3g} for {cdt} "
                         f"logits (it and its reciprocal are taken in {cdt}); got {value!r}.")
    return value


def check_alpha(alpha):
    """None (no alpha term) or a finite number: (on, value)."""
    if alpha is None:
        return False, 1.0
    v = _real_number(alpha, "alpha")
    if v is None or not math.isfinite(v):
        raise ValueError(f"`alpha` must be None or a finite number; got {alpha!r}.")
    return True, v


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
    if kind(arr.dtype) not in "fiu":
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
    if kind(out.dtype) != "f" or out.dtype.itemsize != np.dtype(dtype).itemsize:
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


# ---------------------------------------------------------------------------
# The general path: layout, then one record per call
# ---------------------------------------------------------------------------

def last_axis(a, axis):
    """`a` with `axis` (>= 0 or -1) last: `a` itself when it already is.
    np.moveaxis costs several microseconds, a large part of a small call."""
    return a if axis == -1 or axis == a.ndim - 1 else np.moveaxis(a, axis, -1)


def rows(x, axis, dtype):
    """`x` as a C-contiguous (N, C) array of `dtype`, class axis last.

    Returns (rows, owned): ``owned`` is True when this is a private copy that
    the gradient may overwrite.
    """
    moved = last_axis(x, axis)
    r = c_array(moved, dtype)
    owned = r is not moved and r.flags.owndata   # a fresh copy, not the caller's memory
    n_classes = x.shape[axis]
    return r.reshape(x.size // n_classes if n_classes else 0, n_classes), owned


def grad_buffer(grad_out, axis, dtype, r, owned):
    """Where the kernel writes the (N, C) gradient: straight into grad_out when
    its layout allows, else into our private copy of the logits, else new.
    Returns (buffer, direct): direct is True when the buffer is grad_out."""
    if grad_out is not None:
        moved = last_axis(grad_out, axis)
        if moved.dtype == dtype and moved.flags.c_contiguous and moved.flags.aligned:
            return moved.reshape(r.shape), True
    if owned:
        return r, False
    return np.empty_like(r), False


# xent.dask's chunks of a "mean" take the gradient of the whole array's mean:
# a chunk's call with reduction="state" then scales its gradient by 1 / this
# denominator (None: the gradient of the sum, as "state" gives otherwise).
GRAD_DEN = contextvars.ContextVar("xent_grad_den", default=None)


def outputs(r, owned, ax, kdt, cdt, reduction, den, want_grad, grad_out):
    """What a loss kernel writes, and its gradient's factor: (per-row losses
    for "none" or None, the gradient buffer and whether it is grad_out
    (grad_buffer), 1 / den for "mean" (0 when den is 0), else 1)."""
    loss = np.empty(r.shape[0], dtype=cdt) if reduction == "none" else None
    gbuf, direct = grad_buffer(grad_out, ax, kdt, r, owned) if want_grad else (None, False)
    return loss, gbuf, direct, grad_scale(reduction, den)


def grad_scale(reduction, den):
    """The gradient's factor: 1 / den for "mean" (0 when den is 0; for
    "state", 1 / GRAD_DEN when set), else 1."""
    if reduction == "state":
        den = GRAD_DEN.get()
        if den is None:
            return 1.0
    elif reduction != "mean":
        return 1.0
    return 1.0 / den if den != 0 else 0.0


def denominator(sw, n):
    """The "mean" denominator: the sum of the sample weights `sw` (None: the
    count `n`), exactly (a reproducible sum): (its value, rounded once; its
    exact units of 2^-1074 and the flags of its infinities and NaNs)."""
    if sw is None:
        return float(n), (n << _UNIT_BITS, 0)
    words = _kernels.rsum(sw)
    return _kernels.rsum_value(words), _from_words(words)


def _result(call, reduction, den, loss_shape, moved_shape, axis, gdt, grad_out, direct):
    """What the caller needs to shape the results, on the record; `den` is
    the pair of :func:`denominator`."""
    call.reduction = reduction
    call.den, call.den_exact = den
    call.loss_shape = loss_shape
    call.moved_shape = moved_shape
    call.axis = axis
    call.grad_dtype = gdt
    call.grad_out = grad_out
    call.direct = direct
    return call


def class_logits(logits, axis):
    """Logits with a class axis: (array, compute dtype, axis >= 0, C, the
    per-sample shape)."""
    x = as_array(logits, "logits")
    cdt = compute_dtype(x, "logits")
    if x.ndim == 0:
        raise ValueError("`logits` must have at least one dimension (the classes); got a 0-d array.")
    ax = check_axis(axis, x.ndim)
    n_classes = x.shape[ax]
    if n_classes == 0:
        raise ValueError(f"`logits` must have at least one class; axis {ax} of shape {x.shape} has length 0.")
    return x, cdt, ax, n_classes, x.shape[:ax] + x.shape[ax + 1:]


def softmax_ce(logits, target, axis, weight, sample_weight, ignore_index, eps, reduction, nt,
               want_grad, grad_out, temperature=1.0, softcap=0.0, z_loss=0.0, focal=None):
    """The record of a softmax cross-entropy call (`eps`, `reduction`, `nt`
    and the options after them already checked), its labels checked.
    ``focal=(alpha, gamma)`` makes it the softmax focal loss's."""
    x, cdt, ax, n_classes, sample_shape = class_logits(logits, axis)

    t = as_array(target, "target")
    tk = kind(t.dtype)
    if tk in "iu":
        if t.shape != sample_shape:
            hint = ""
            if t.shape == x.shape:
                hint = " (integer targets are class indices; pass one-hot probabilities as floats)"
            elif x.ndim == 2 and t.shape == (n_classes,):
                hint = (f" (`logits` looks transposed: its class axis {ax} has the length of `target`; "
                        f"pass logits.T, or axis={1 - ax})")
            raise ValueError(
                f"`target` class indices must have the shape of `logits` without axis {ax}, "
                f"{sample_shape}; got shape {t.shape}{hint}."
            )
        sparse = True
    elif tk == "f":
        if t.shape == x.shape:
            sparse = False
        elif t.shape == sample_shape:
            raise TypeError(
                f"`target` has the class-index shape {sample_shape} but dtype {t.dtype}: class "
                "indices must be integers; use target.astype(np.int64) (or pass probabilities "
                f"with the shape of `logits`, {x.shape})."
            )
        else:
            raise ValueError(
                f"`target` must be class indices of shape {sample_shape} or probabilities of "
                f"shape {x.shape}; got shape {t.shape}."
            )
    else:
        raise TypeError(
            f"`target` must be integer class indices or floating-point probabilities; got dtype {t.dtype}."
        )
    has_ignore, ignore = check_ignore_index(ignore_index)
    if not sparse and ignore_index is not None:
        raise ValueError("`ignore_index` applies to class-index targets only; got probability targets.")
    weight = None if weight is None else as_array(weight, "weight")
    sample_weight = None if sample_weight is None else as_array(sample_weight, "sample_weight")
    w = class_weight(weight, n_classes, cdt)
    sw = per_sample_weight(sample_weight, sample_shape, cdt)
    gdt = grad_dtype(x, cdt)
    if grad_out is not None:
        check_out(grad_out, "grad_out", x.shape, gdt,
                  [("logits", x), ("target", t), ("weight", weight), ("sample_weight", sample_weight)],
                  alias_name="logits")

    if sparse:
        y, has_ignore, ignore, den = class_indices(t, n_classes, ignore_index, cdt, nt, w, sw)
    else:
        tg, _ = rows(t, ax, cdt)
        den = denominator(sw, tg.shape[0])

    kdt = _dispatch.storage(x, cdt)
    r, owned = rows(x, ax, kdt)
    loss, gbuf, direct, scale = outputs(r, owned, ax, kdt, cdt, reduction, den[0], want_grad,
                                        grad_out)
    options = dict(temperature=check_scale(temperature, "temperature", cdt),
                   softcap=check_scale(softcap, "softcap", cdt) if softcap else 0.0, z_loss=z_loss)
    kernels = ("index", "prob")
    if focal is not None:
        options = dict(alpha=focal[0], gamma=focal[1])
        kernels = ("focal", "focal")
    if sparse:
        call = Call(kernels[0], r.shape[0], n_classes, kdt, nt, x=r, labels=y, weight=w,
                    sample_weight=sw, has_ignore=has_ignore, ignore=ignore, eps=eps, scale=scale,
                    loss=loss, out=gbuf, **options)
    else:
        call = Call(kernels[1], r.shape[0], n_classes, kdt, nt, x=r, target=tg, weight=w,
                    sample_weight=sw, eps=eps, scale=scale, loss=loss, out=gbuf, **options)
    call.empty = reduction == "mean" and den[0] == 0   # nothing to average: no kernel runs
    if call.empty and gbuf is not None:
        gbuf.fill(0)
    return _result(call, reduction, den, sample_shape, sample_shape + (n_classes,), ax, gdt,
                   grad_out, direct)


def class_indices(t, n_classes, ignore_index, cdt, nt, w=None, sw=None):
    """Integer class indices `t` as flat int64 labels, checked (a label
    outside [0, C) that is not `ignore_index` raises LabelError).  Returns
    (labels, has_ignore, ignore, the "mean" denominator sum_i s_i w_{y_i}
    over the kept rows as :func:`denominator` gives it)."""
    has_ignore, ignore = check_ignore_index(ignore_index)
    y = c_array(t, np.int64).reshape(-1)
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size:
        has_ignore, ignore = _wide_uint_labels(t, y, has_ignore, ignore, ignore_index)
    call = Call("labels", y.shape[0], n_classes, cdt, nt, labels=y, weight=w, sample_weight=sw,
                has_ignore=has_ignore, ignore=ignore)
    call.state = np.empty(_kernels.RS_WORDS, dtype=np.int64)
    bad, den = _dispatch.run(call)
    if bad >= 0:
        _raise_label(t, bad, n_classes, ignore_index)
    return y, has_ignore, ignore, (den, _from_words(call.state))


def token_stats(logits, target, axis, temperature, ignore_index, nt):
    """The record of a token_stats call (`temperature`, `nt` already
    checked) with its output arrays, its labels checked."""
    x, cdt, ax, n_classes, sample_shape = class_logits(logits, axis)
    check_scale(temperature, "temperature", cdt)
    y = None
    has_ignore, ignore = check_ignore_index(ignore_index)
    if target is not None:
        y, has_ignore, ignore, _ = _index_target(target, n_classes, sample_shape, ax,
                                                 ignore_index, cdt, nt)
    elif ignore_index is not None:
        raise ValueError("`ignore_index` needs a `target`; got target=None.")
    r, _ = rows(x, ax, _dispatch.storage(x, cdt))
    n = r.shape[0]
    call = Call("stats", n, n_classes, _dispatch.storage(x, cdt), nt, x=r, labels=y,
                has_ignore=has_ignore, ignore=ignore, temperature=temperature,
                loss=np.empty(n, cdt), entropy=np.empty(n, cdt), argmax=np.empty(n, np.int64))
    if y is not None:
        call.logprob = np.empty(n, cdt)
        call.rank = np.empty(n, np.int64)
    call.loss_shape = sample_shape
    return call


def check_beta(beta):
    """Jensen-Shannon's weight: a number strictly between 0 and 1."""
    v = _real_number(beta, "beta")
    if v is None or not 0.0 < v < 1.0:
        raise ValueError(f"`beta` must be a number in (0, 1) (at 0 and 1 the divergence is "
                         f"identically 0); got {beta!r}.")
    return v


def _index_target(target, n_classes, sample_shape, ax, ignore_index, cdt, nt, sw=None):
    """Class indices `target` for the rows it names (token statistics, the
    divergences' ignore_index): checked; (labels, has_ignore, ignore, the
    sum of the sample weights of the rows kept)."""
    t = as_array(target, "target")
    if kind(t.dtype) not in "iu":
        hint = ""
        if kind(t.dtype) == "f" and t.shape == sample_shape:
            hint = "; use target.astype(np.int64)"
        raise TypeError(f"`target` must be integer class indices; got dtype {t.dtype}{hint}.")
    if t.shape != sample_shape:
        raise ValueError(f"`target` class indices must have the shape of `logits` without "
                         f"axis {ax}, {sample_shape}; got shape {t.shape}.")
    return class_indices(t, n_classes, ignore_index, cdt, nt, None, sw)


def divergence(logits, target_logits, axis, temperature, sample_weight, ignore_index, target,
               reduction, nt, want_grad, grad_out, mode, beta=0.5):
    """The record of a KL (mode 0, 1: reverse) or Jensen-Shannon (mode 2)
    call (`temperature`, `reduction`, `nt`, `beta` already checked), its
    labels checked.  The compute dtype is both logits' promoted; 16-bit
    logits stay 16-bit (widened a tile at a time) when both have that dtype."""
    x, xdt, ax, n_classes, sample_shape = class_logits(logits, axis)
    z = as_array(target_logits, "target_logits")
    cdt = np.promote_types(xdt, compute_dtype(z, "target_logits"))
    if z.shape != x.shape:
        raise ValueError(f"`target_logits` must have the shape of `logits`, {x.shape}; "
                         f"got shape {z.shape}.")
    check_scale(temperature, "temperature", cdt)
    sample_weight = None if sample_weight is None else as_array(sample_weight, "sample_weight")
    sw = per_sample_weight(sample_weight, sample_shape, cdt)
    t = None if target is None else as_array(target, "target")
    gdt = grad_dtype(x, cdt)
    if grad_out is not None:
        check_out(grad_out, "grad_out", x.shape, gdt,
                  [("logits", x), ("target_logits", z), ("target", t),
                   ("sample_weight", sample_weight)], alias_name="logits")
    y, has_ignore, ignore = None, False, 0
    if t is not None:
        y, has_ignore, ignore, den = _index_target(t, n_classes, sample_shape, ax, ignore_index,
                                                   cdt, nt, sw)
    elif ignore_index is not None:
        check_ignore_index(ignore_index)
        raise ValueError("`ignore_index` needs a `target` (the class indices it is compared "
                         "with); got target=None.")
    else:
        den = denominator(sw, x.size // n_classes)
    same = x.dtype.newbyteorder("=") == z.dtype.newbyteorder("=")
    kdt = _dispatch.storage(x, cdt) if same else cdt
    r, owned = rows(x, ax, kdt)
    zr, _ = rows(z, ax, kdt)
    loss, gbuf, direct, scale = outputs(r, owned, ax, kdt, cdt, reduction, den[0], want_grad,
                                        grad_out)
    call = Call("div", r.shape[0], n_classes, kdt, nt, x=r, second=zr, labels=y,
                sample_weight=sw, has_ignore=has_ignore, ignore=ignore, mode=mode, beta=beta,
                temperature=temperature, scale=scale, loss=loss, out=gbuf)
    call.empty = reduction == "mean" and den[0] == 0
    if call.empty and gbuf is not None:
        gbuf.fill(0)
    return _result(call, reduction, den, sample_shape, sample_shape + (n_classes,), ax, gdt,
                   grad_out, direct)


def _wide_uint_labels(t, y, has_ignore, ignore, ignore_index):
    """uint64 labels above the int64 range wrap negative in `y`: mark them as
    ignored (when they equal ignore_index) or as bad, with negative sentinels
    that no uint64 label can produce otherwise.  Returns (has_ignore, ignore)."""
    big = (t > np.iinfo(np.int64).max).reshape(-1)
    if not big.any():
        return has_ignore, ignore
    ignored = np.zeros_like(big)
    if ignore_index is not None and not has_ignore and 0 <= int(ignore_index) < 2**64:
        ignored = big & (t.reshape(-1) == np.uint64(int(ignore_index)))
        has_ignore, ignore = True, -1
    y[ignored] = -1
    y[big & ~ignored] = -2 if ignore == -1 else -1
    return has_ignore, ignore


def _raise_label(t, flat, n_classes, ignore_index):
    value = t.reshape(-1)[flat]
    allowed = f"[0, {n_classes})" + (f" or equal ignore_index={ignore_index}" if ignore_index is not None else "")
    hint = ""
    if value == -100 and ignore_index is None:
        hint = " (-100 is PyTorch's default ignore_index: pass ignore_index=-100 to leave those rows out)"
    raise LabelError(f"`target` class indices must be in {allowed}; got {value} at position "
                     f"{position(flat, t.shape)}{hint}.")


def bce(logits, target, weight, pos_weight, eps, reduction, nt, want_grad, grad_out, focal=None):
    """The record of a sigmoid BCE call (`eps`, `reduction`, `nt` already
    checked); ``focal=(alpha on, alpha, gamma)`` makes it the sigmoid focal
    loss's."""
    x = as_array(logits, "logits")
    cdt = compute_dtype(x, "logits")
    t = as_array(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"`target` must have the shape of `logits`, {x.shape}; got shape {t.shape}.")
    tk = kind(t.dtype)
    if tk in "iub":
        if tk != "b" and t.size and not np.all((t == 0) | (t == 1)):
            bad = int(np.argmax((t != 0) & (t != 1)))
            raise ValueError(
                f"`target` of integer dtype must hold 0 or 1; got {t.reshape(-1)[bad]} at "
                f"position {position(bad, t.shape)} (pass floats in [0, 1] for soft targets)."
            )
    elif tk != "f":
        raise TypeError(f"`target` must be floating-point in [0, 1], or bool/integer 0/1; got dtype {t.dtype}.")
    elif focal is not None and t.size:
        # the focal factor (1 - p_t)^gamma is defined for targets in [0, 1]
        # (binary cross-entropy takes any target, as PyTorch)
        outside = (t < 0) | (t > 1)
        if outside.any():
            bad = int(np.argmax(outside.reshape(-1)))
            raise ValueError(f"`target` of a focal loss must hold values in [0, 1]; got "
                             f"{t.reshape(-1)[bad]} at position {position(bad, t.shape)}.")
    # rows: the last axis; 1-D logits are rows of one element (each its own
    # term of the reproducible sum, so that any split of them gives its bits)
    n_cols = x.shape[-1] if x.ndim >= 2 else 1
    n_rows = x.size // n_cols if n_cols else 0
    weight = None if weight is None else as_array(weight, "weight")
    pos_weight = None if pos_weight is None else as_array(pos_weight, "pos_weight")
    w2 = broadcast_rows(weight, "weight", x.shape, n_rows, n_cols, cdt)
    pw2 = broadcast_rows(pos_weight, "pos_weight", x.shape, n_rows, n_cols, cdt)
    gdt = grad_dtype(x, cdt)
    if grad_out is not None:
        check_out(grad_out, "grad_out", x.shape, gdt,
                  [("logits", x), ("target", t), ("weight", weight), ("pos_weight", pos_weight)],
                  alias_name="logits")
    kdt = _dispatch.storage(x, cdt)
    contiguous = c_array(x, kdt)
    owned = contiguous is not x and contiguous.flags.owndata
    flat = contiguous.reshape(-1)
    n = flat.shape[0]
    loss = np.empty(n, dtype=cdt) if reduction == "none" else None
    gbuf, direct = None, False
    if want_grad:
        gbuf, direct = grad_buffer(grad_out, -1, kdt, flat, owned) if x.ndim else (np.empty_like(flat), False)
    scale = grad_scale(reduction, n) if n else 1.0
    options = {}
    if focal is not None:
        options = dict(mode=int(focal[0]), alpha=focal[1], gamma=focal[2])
    call = Call("bce" if focal is None else "sfocal", n, max(n_cols, 1), kdt, nt, x=flat,
                target=c_array(t, cdt).reshape(-1), weight2=w2, pos_weight2=pw2, eps=eps,
                scale=scale, loss=loss, out=gbuf, **options)
    call.empty = False
    return _result(call, reduction, denominator(None, n), x.shape, x.shape, -1, gdt, grad_out,
                   direct)


def broadcast_rows(arr, name, shape, n_rows, n_cols, cdt):
    """`arr` broadcast to `shape`, as an (n_rows, n_cols) view (strides may be 0)."""
    if arr is None:
        return None
    a = real_array(arr, name, cdt)
    try:
        b = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"`{name}` must broadcast to the shape of `logits`, {shape}; got shape {a.shape}.") from None
    if not a.dtype.isnative:
        b = b.astype(cdt.newbyteorder("="))
    # A reshape of a broadcast view stays a view when the broadcast dimensions
    # allow it ((C,), scalars, (N, 1), full arrays); otherwise it copies.
    b2 = b.reshape(n_rows, n_cols) if b.size else np.zeros((n_rows, n_cols), cdt)
    if not b2.flags.aligned or b2.strides[0] % b2.itemsize or b2.strides[1] % b2.itemsize:
        b2 = c_array(b2)
    return b2


def softmax_rows(x, axis, out, mode, nt):
    """The record of a logsumexp (mode 0), log_softmax (1) or softmax (2) call."""
    a = as_array(x, "x")
    cdt = compute_dtype(a, "x")
    if a.ndim == 0:
        raise ValueError("`x` must have at least one dimension; got a 0-d array.")
    ax = check_axis(axis, a.ndim, array_name="x")
    if a.shape[ax] == 0:
        raise ValueError(f"`x` must have at least one element along axis {ax}; got shape {a.shape}.")
    kdt = _dispatch.storage(a, cdt)
    r, owned = rows(a, ax, kdt)
    moved_shape = a.shape[:ax] + a.shape[ax + 1:] + (a.shape[ax],)
    call = Call("softmax", r.shape[0], r.shape[1], kdt, nt, x=r, mode=mode)
    call.empty = False
    if mode == 0:
        call.loss = np.empty(r.shape[0], dtype=cdt)
        return _result(call, "none", (0.0, None), moved_shape[:-1], moved_shape, ax, cdt, None, False)
    odt = grad_dtype(a, cdt)
    if out is not None:
        check_out(out, "out", a.shape, odt, [("x", a)], alias_name="x")
    call.out, direct = grad_buffer(out, ax, kdt, r, owned)
    return _result(call, "none", (0.0, None), moved_shape[:-1], moved_shape, ax, odt, out, direct)
