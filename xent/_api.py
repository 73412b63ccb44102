"""Public API of xent: validation, layout, dispatch to the Cython kernels.

This layer owns every user-facing decision: it validates all
arguments before any kernel runs, brings the logits to one C-contiguous,
native-endian ``(N, C)`` layout in the compute dtype with at most one copy,
resolves ``n_threads``, allocates outputs, and shapes the results.  The
kernels in ``xent._kernels`` trust it.
"""

import functools
import math

import numpy as np

from . import _dispatch, _kernels
from ._dispatch import Call
from ._validate import (
    LabelError,
    as_array,
    c_array,
    check_axis,
    check_ignore_index,
    check_out,
    check_reduction,
    check_smoothing,
    class_weight,
    compute_dtype,
    grad_dtype,
    per_sample_weight,
    position,
    real_array,
    resolve_n_threads,
)

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _last_axis(a, axis):
    """`a` with `axis` (>= 0 or -1) last: `a` itself when it already is.
    np.moveaxis costs several microseconds, a large part of a 32 x 10 call."""
    return a if axis == -1 or axis == a.ndim - 1 else np.moveaxis(a, axis, -1)


def _rows(x, axis, cdt):
    """Logits as a C-contiguous (N, C) array of the compute dtype, class axis last.

    Returns (rows, owned): ``owned`` is True when this is a private copy that
    the gradient may overwrite.
    """
    moved = _last_axis(x, axis)
    rows = c_array(moved, cdt)
    owned = rows is not moved and rows.flags.owndata   # a fresh copy, not the caller's memory
    n_classes = x.shape[axis]
    return rows.reshape(x.size // n_classes if n_classes else 0, n_classes), owned


def _finish_grad(gbuf, direct, moved_shape, axis, gdt, grad_out):
    """Shape the (N, C) gradient like the logits; copy into grad_out unless the
    kernel wrote there directly."""
    g = gbuf.reshape(moved_shape)
    if axis != -1 and axis != len(moved_shape) - 1:
        g = np.moveaxis(g, -1, axis)
    if grad_out is not None:
        if not direct:
            np.copyto(grad_out, g, casting="unsafe")
        return grad_out
    if g.dtype != gdt:
        g = g.astype(gdt)
    return g


def _grad_buffer(grad_out, axis, cdt, rows, owned):
    """Where the kernel writes the (N, C) gradient: straight into grad_out when
    its layout allows, else into our private copy of the logits, else new.
    Returns (buffer, direct): direct is True when the buffer is grad_out."""
    if grad_out is not None:
        moved = _last_axis(grad_out, axis)
        if moved.dtype == cdt and moved.flags.c_contiguous and moved.flags.aligned:
            return moved.reshape(rows.shape), True
    if owned:
        return rows, False
    return np.empty_like(rows), False


def _reduce(total, den, reduction):
    if reduction == "sum":
        return float(total)
    return float(total) / den if den != 0 else math.nan


def _quiet(fn):
    """Run `fn` with NumPy's floating-point warnings off: a cast that
    overflows (a float64 weight of 1e300 for float32 logits) or a long double
    out of float64's range gives the inf or NaN that the inputs imply, and the
    caller gets that value without a warning.  Only the general paths need
    it; the small-call fast paths do no NumPy arithmetic."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _plain(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
    """True when no option is set (and the set ones are certainly valid): the
    small-call fast paths (_kernels.fast_index_ce, fast_dense) may try the
    arrays (and a `grad_out`, which they check themselves)."""
    return (weight is None and sample_weight is None and ignore_index is None
            and type(axis) is int and (axis == -1 or axis == 1)
            and type(label_smoothing) in (float, int) and label_smoothing == 0
            and (n_threads is None or (type(n_threads) is int and (n_threads >= 1 or n_threads == -1))))


def _index_options(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
    """True when the options are ones _kernels.fast_index_ce may take (weight
    arrays, an int ignore_index, a smoothing in [0, 1]), the other arguments
    plain: it checks the arrays itself and declines what it cannot take, and
    the general path decides then."""
    return ((weight is None or type(weight) is np.ndarray)
            and (sample_weight is None or type(sample_weight) is np.ndarray)
            and (ignore_index is None or type(ignore_index) is int)
            and type(label_smoothing) in (float, int) and 0 <= label_smoothing <= 1
            and _plain(axis, None, None, None, 0, n_threads))


def _dense_options(weight, pos_weight, label_smoothing, n_threads):
    """True when _kernels.fast_dense may try the call: weight arrays (it
    checks them itself), a smoothing in [0, 1], a plain n_threads."""
    return ((weight is None or type(weight) is np.ndarray)
            and (pos_weight is None or type(pos_weight) is np.ndarray)
            and type(label_smoothing) in (float, int) and 0 <= label_smoothing <= 1
            and _plain(-1, None, None, None, 0, n_threads))


@_quiet
def _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index, label_smoothing,
                reduction, n_threads, want_grad, grad_out):
    x = as_array(logits, "logits")
    cdt = compute_dtype(x, "logits")
    if x.ndim == 0:
        raise ValueError("`logits` must have at least one dimension (the classes); got a 0-d array.")
    ax = check_axis(axis, x.ndim)
    n_classes = x.shape[ax]
    if n_classes == 0:
        raise ValueError(f"`logits` must have at least one class; axis {ax} of shape {x.shape} has length 0.")
    eps = check_smoothing(label_smoothing)
    nt = resolve_n_threads(n_threads)
    sample_shape = x.shape[:ax] + x.shape[ax + 1:]

    t = as_array(target, "target")
    kind = t.dtype.kind
    if kind in "iu":
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
    elif kind == "f":
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
        y = c_array(t, np.int64).reshape(-1)
        if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size:
            has_ignore, ignore = _wide_uint_labels(t, y, has_ignore, ignore, ignore_index)
        bad, den = _dispatch.run(Call("labels", y.shape[0], n_classes, cdt, nt, labels=y, weight=w,
                                      sample_weight=sw, has_ignore=has_ignore, ignore=ignore))
        if bad >= 0:
            _raise_label(t, bad, n_classes, ignore_index)
    else:
        tg, _ = _rows(t, ax, cdt)
        den = float(np.sum(sw, dtype=np.float64)) if sw is not None else float(tg.shape[0])

    kdt = _dispatch.storage(x, cdt)
    rows, owned = _rows(x, ax, kdt)
    loss_out = np.empty(rows.shape[0], dtype=cdt) if reduction == "none" else None
    gbuf, direct = _grad_buffer(grad_out, ax, kdt, rows, owned) if want_grad else (None, False)
    scale = 1.0
    if reduction == "mean":
        scale = 1.0 / den if den != 0 else 0.0
    if reduction == "mean" and den == 0:
        total = 0.0
        if gbuf is not None:
            gbuf.fill(0)
    elif sparse:
        total = _dispatch.run(Call("index", rows.shape[0], n_classes, kdt, nt, x=rows, labels=y,
                                   weight=w, sample_weight=sw, has_ignore=has_ignore,
                                   ignore=ignore, eps=eps, scale=scale, loss=loss_out, out=gbuf))
    else:
        total = _dispatch.run(Call("prob", rows.shape[0], n_classes, kdt, nt, x=rows, target=tg,
                                   weight=w, sample_weight=sw, eps=eps, scale=scale,
                                   loss=loss_out, out=gbuf))

    loss = loss_out.reshape(sample_shape) if reduction == "none" else _reduce(total, den, reduction)
    if not want_grad:
        return loss
    moved_shape = sample_shape + (n_classes,)
    return loss, _finish_grad(gbuf, direct, moved_shape, ax, gdt, grad_out)


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


def softmax_cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                          ignore_index=None, label_smoothing=0.0, reduction="mean",
                          n_threads=None):
    """Softmax cross-entropy from logits, with PyTorch's semantics.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        Unnormalised scores; the classes lie along `axis`.  float16 is
        computed in float32, integers in float64.
    target : array_like of int, shape = logits.shape without `axis`; or array_like of float, shape = logits.shape
        Class indices (any integer dtype) or probabilities (one-hot or soft;
        rows need not sum to 1).
    axis : int, default -1
        The class axis.
    weight : array_like, shape (C,), optional
        Per-class weights.
    sample_weight : array_like, shape = per-sample loss shape, optional
        Per-sample weights ``s_i``; they multiply the per-sample losses.
    ignore_index : int, optional
        Class-index targets only: rows with this label give loss 0 and
        gradient 0 and are left out of the mean.  Any integer.
    label_smoothing : float in [0, 1], default 0
        PyTorch's: ``eps/C`` of the target mass is spread over all classes.
    reduction : {"mean", "sum", "none"}, default "mean"
    n_threads : int, optional
        None: OpenMP's default (``OMP_NUM_THREADS``, threadpoolctl); -1: all
        cores; or a count >= 1.  The result does not depend on it, bit for bit.

    Returns
    -------
    loss : float or ndarray, shape = per-sample loss shape
        A Python float (accumulated in float64) for "mean" and "sum"; the
        per-sample losses ``s_i * l_i`` in the compute dtype for "none".

    Raises
    ------
    xent.LabelError
        A class index outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        A wrong kind of dtype (e.g. float class indices, complex logits).
    ValueError
        Shapes, `axis`, `reduction`, `label_smoothing`, `n_threads`.

    Notes
    -----
    Class indices: ``l_i = (1-eps) w[y_i] (lse(x_i) - x_{i,y_i}) + (eps/C) sum_c w_c (lse(x_i) - x_{i,c})``;
    probabilities: ``l_i = sum_c w_c t'_{ic} (lse(x_i) - x_{ic})`` with ``t' = (1-eps) t + eps/C``.
    "mean" divides ``sum_i s_i l_i`` by ``sum_i s_i w[y_i]`` over the rows not
    ignored (class indices, as PyTorch) or by ``sum_i s_i`` (probabilities);
    with a zero denominator the mean is ``nan``.

    Stability: ``lse(x) = m + log1p(sum_{x_j < m} exp(x_j - m) + ties - 1)``
    with ``m = max(x)``, so no exp overflows and a tiny loss (a confident,
    correct row) keeps full relative precision.  ``-inf`` logits are masks
    that contribute exactly 0; an all ``-inf`` row, a ``+inf`` or a NaN makes
    that row's loss NaN.  Each row is read from memory once.

    Examples
    --------
    >>> import numpy as np, xent
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> round(xent.softmax_cross_entropy(logits, np.array([0, 2])), 6)
    0.634229
    >>> xent.softmax_cross_entropy(logits, np.array([0, 2]), reduction="none").round(6)
    array([0.169846, 1.098612])
    """
    reduction = check_reduction(reduction)
    if _plain(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
        res = _kernels.fast_index_ce(logits, target, reduction, False)
        if res is NotImplemented:
            res = _kernels.fast_dense(logits, target, reduction, False, False)
        if res is not NotImplemented:
            return res
    elif _index_options(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
        res = _kernels.fast_index_ce(logits, target, reduction, False, None, weight, ignore_index,
                                     float(label_smoothing), sample_weight)
        if res is NotImplemented and sample_weight is None and ignore_index is None:
            res = _kernels.fast_dense(logits, target, reduction, False, False, None, weight, None,
                                      float(label_smoothing))
        if res is not NotImplemented:
            return res
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, reduction, n_threads, False, None)


def softmax_cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                                    ignore_index=None, label_smoothing=0.0, reduction="mean",
                                    n_threads=None, grad_out=None):
    """Softmax cross-entropy and its gradient with respect to the logits, in one sweep.

    Parameters
    ----------
    logits, target, axis, weight, sample_weight, ignore_index, label_smoothing, reduction, n_threads
        As in :func:`softmax_cross_entropy`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array of the gradient's dtype to write into.  It may be
        `logits` itself (in place, saving memory); any other overlap with an
        input raises ``ValueError``.

    Returns
    -------
    loss : float or ndarray
        As in :func:`softmax_cross_entropy`.
    grad : ndarray, shape = logits.shape
        ``d loss / d logits`` (for "none": of the sum of the per-sample
        losses), in the logits' dtype (float64 for integer logits).

    Notes
    -----
    Per row, ``grad = s_i (sum_c q_c softmax(x) - q) / D`` with ``q`` the
    row's effective target (``q_c = (1-eps) w_y [c = y] + (eps/C) w_c`` for
    class indices, ``w_c t'_c`` for probabilities; the exact gradient, not
    ``softmax - t``) and ``D`` the mean's denominator (1 for "sum"/"none").
    The target entry ``softmax_y - 1`` is computed as ``-sum_{j != y} e_j / sum_j e_j``,
    without cancellation.  Ignored rows get 0; a zero mean denominator gives
    an all-zero gradient.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.softmax_cross_entropy_with_grad(np.zeros((1, 4)), np.array([1]))
    >>> round(loss, 6), grad.round(3).tolist()
    (1.386294, [[0.25, -0.75, 0.25, 0.25]])
    """
    reduction = check_reduction(reduction)
    if _plain(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
        res = _kernels.fast_index_ce(logits, target, reduction, True, grad_out)
        if res is NotImplemented:
            res = _kernels.fast_dense(logits, target, reduction, True, False, grad_out)
        if res is not NotImplemented:
            return res
    elif _index_options(axis, weight, sample_weight, ignore_index, label_smoothing, n_threads):
        res = _kernels.fast_index_ce(logits, target, reduction, True, grad_out, weight, ignore_index,
                                     float(label_smoothing), sample_weight)
        if res is NotImplemented and sample_weight is None and ignore_index is None:
            res = _kernels.fast_dense(logits, target, reduction, True, False, grad_out, weight, None,
                                      float(label_smoothing))
        if res is not NotImplemented:
            return res
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, reduction, n_threads, True, grad_out)


def _fast_bce_target(logits, target):
    """A small bool target (a multi-label mask) as the logits' float dtype, so
    that the fast path takes it: 0 and 1 exactly, what the general path makes
    of it.  A 32 x 10 call: ~11 -> ~2 us.  Anything else is returned as is."""
    if (type(target) is np.ndarray and target.dtype == np.bool_ and type(logits) is np.ndarray
            and logits.dtype in _FAST_DTYPES and logits.size <= _dispatch.SMALL_CALL_ELEMS):
        return target.astype(logits.dtype)
    return target


@_quiet
def _bce(logits, target, weight, pos_weight, label_smoothing, reduction, n_threads,
         want_grad, grad_out):
    x = as_array(logits, "logits")
    cdt = compute_dtype(x, "logits")
    eps = check_smoothing(label_smoothing)
    nt = resolve_n_threads(n_threads)
    t = as_array(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"`target` must have the shape of `logits`, {x.shape}; got shape {t.shape}.")
    kind = t.dtype.kind
    if kind in "iub":
        if kind != "b" and t.size and not np.all((t == 0) | (t == 1)):
            bad = int(np.argmax((t != 0) & (t != 1)))
            raise ValueError(
                f"`target` of integer dtype must hold 0 or 1; got {t.reshape(-1)[bad]} at "
                f"position {position(bad, t.shape)} (pass floats in [0, 1] for soft targets)."
            )
    elif kind != "f":
        raise TypeError(f"`target` must be floating-point in [0, 1], or bool/integer 0/1; got dtype {t.dtype}.")
    n_cols = x.shape[-1] if x.ndim else 1
    n_rows = x.size // n_cols if n_cols else 0
    weight = None if weight is None else as_array(weight, "weight")
    pos_weight = None if pos_weight is None else as_array(pos_weight, "pos_weight")
    w2 = _broadcast_rows(weight, "weight", x.shape, n_rows, n_cols, cdt)
    pw2 = _broadcast_rows(pos_weight, "pos_weight", x.shape, n_rows, n_cols, cdt)
    gdt = grad_dtype(x, cdt)
    if grad_out is not None:
        check_out(grad_out, "grad_out", x.shape, gdt,
                  [("logits", x), ("target", t), ("weight", weight), ("pos_weight", pos_weight)],
                  alias_name="logits")
    kdt = _dispatch.storage(x, cdt)
    contiguous = c_array(x, kdt)
    owned = contiguous is not x and contiguous.flags.owndata
    flat = contiguous.reshape(-1)
    tf = c_array(t, cdt).reshape(-1)
    n = flat.shape[0]
    loss_out = np.empty(n, dtype=cdt) if reduction == "none" else None
    gbuf, direct = None, False
    if want_grad:
        gbuf, direct = _grad_buffer(grad_out, -1, kdt, flat, owned) if x.ndim else (np.empty_like(flat), False)
    scale = 1.0 / n if (reduction == "mean" and n) else 1.0
    total = _dispatch.run(Call("bce", n, max(n_cols, 1), kdt, nt, x=flat, target=tf, weight2=w2,
                               pos_weight2=pw2, eps=eps, scale=scale, loss=loss_out, out=gbuf))
    loss = loss_out.reshape(x.shape) if reduction == "none" else _reduce(total, n, reduction)
    if not want_grad:
        return loss
    if x.ndim == 0:
        g = gbuf.reshape(()).astype(gdt)
        if grad_out is not None:
            np.copyto(grad_out, g, casting="unsafe")
            return loss, grad_out
        return loss, g
    return loss, _finish_grad(gbuf, direct, x.shape, x.ndim - 1, gdt, grad_out)


def _broadcast_rows(arr, name, shape, n_rows, n_cols, cdt):
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


def sigmoid_binary_cross_entropy(logits, target, *, weight=None, pos_weight=None,
                                 label_smoothing=0.0, reduction="mean", n_threads=None):
    """Sigmoid binary cross-entropy from logits, elementwise, with PyTorch's semantics.

    Parameters
    ----------
    logits : array_like, any shape
        One logit per binary decision (binary or multi-label).
    target : array_like, shape = logits.shape
        Floats in [0, 1] (soft targets allowed), or bool / integer 0 and 1.
    weight : array_like, broadcastable to logits.shape, optional
        Multiplies each element's loss.
    pos_weight : array_like, broadcastable to logits.shape, optional
        Weights the positive term (shape (C,): one per label of the last axis).
    label_smoothing : float in [0, 1], default 0
        Keras's: targets become ``t (1 - eps) + eps / 2``.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the number of elements (weights are not in the
        denominator, as PyTorch).
    n_threads : int, optional
        As in :func:`softmax_cross_entropy`.

    Returns
    -------
    loss : float or ndarray, shape = logits.shape
        Python float for "mean"/"sum" (float64 accumulation); elementwise
        losses in the compute dtype for "none".

    Notes
    -----
    ``l = w [p t softplus(-x) + (1 - t) softplus(x)]`` with
    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``: algebraically PyTorch's
    ``(1-t) x + (1 + (p-1) t)(log1p(exp(-|x|)) + max(-x, 0))``, but a sum of
    non-negative terms, so no ``inf - inf`` at ``x = +-inf`` (which give the
    mathematical limits, 0 or ``+inf``) and no cancellation; a term with a zero
    coefficient contributes exactly 0.  Without ``pos_weight`` the same two
    non-negative terms are computed as ``c x + log1p(exp(-|x|))`` with
    ``c = 1 - t`` for ``x > 0`` and ``-t`` otherwise (exact for hard targets,
    no cancellation for ``t`` near 1); where that gives ``inf``
    or NaN the guarded form above is used instead, so finite values do not
    depend on their neighbours.

    Examples
    --------
    >>> import numpy as np, xent
    >>> round(xent.sigmoid_binary_cross_entropy(np.array([0.0, 2.0]), np.array([1.0, 0.0])), 6)
    1.410038
    """
    reduction = check_reduction(reduction)
    if _dense_options(weight, pos_weight, label_smoothing, n_threads):
        res = _kernels.fast_dense(logits, _fast_bce_target(logits, target), reduction, False, True,
                                  None, weight, pos_weight, float(label_smoothing))
        if res is not NotImplemented:
            return res
    return _bce(logits, target, weight, pos_weight, label_smoothing, reduction, n_threads,
                False, None)


def sigmoid_binary_cross_entropy_with_grad(logits, target, *, weight=None, pos_weight=None,
                                           label_smoothing=0.0, reduction="mean",
                                           n_threads=None, grad_out=None):
    """Sigmoid binary cross-entropy and its gradient with respect to the logits.

    Parameters
    ----------
    logits, target, weight, pos_weight, label_smoothing, reduction, n_threads
        As in :func:`sigmoid_binary_cross_entropy`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array to write the gradient into; may be `logits` itself.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray, shape = logits.shape
        ``w [(1 - t) sigmoid(x) - p t sigmoid(-x)]`` (``sigmoid(x) - t`` when
        ``p = 1``), divided by the element count for "mean".

    Notes
    -----
    Both sigmoids come from one ``e = exp(-|x|)``: ``1/(1+e)`` and
    ``e/(1+e)``; for ``t`` in {0, 1} only one term is present, so there is no
    cancellation, and the gradient at ``x = +-inf`` is finite.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(np.array([0.0]), np.array([1.0]))
    >>> round(loss, 6), grad.tolist()
    (0.693147, [-0.5])
    """
    reduction = check_reduction(reduction)
    if _dense_options(weight, pos_weight, label_smoothing, n_threads):
        # (a grad_out may overlap the bool target: the general path's check_out refuses that)
        tgt = _fast_bce_target(logits, target) if grad_out is None else target
        res = _kernels.fast_dense(logits, tgt, reduction, True, True, grad_out, weight, pos_weight,
                                  float(label_smoothing))
        if res is not NotImplemented:
            return res
    return _bce(logits, target, weight, pos_weight, label_smoothing, reduction, n_threads,
                True, grad_out)


_MODES = {"logsumexp": 0, "log_softmax": 1, "softmax": 2}


def _softmax_family(x, axis, out, mode, n_threads=None):
    if n_threads is None and type(axis) is int and (axis == -1 or axis == 1):
        res = _kernels.fast_softmax(x, mode, out)   # a small plain call (or NotImplemented)
        if res is not NotImplemented:
            return res
    return _softmax_general(x, axis, out, mode, n_threads)


@_quiet
def _softmax_general(x, axis, out, mode, n_threads):
    a = as_array(x, "x")
    cdt = compute_dtype(a, "x")
    if a.ndim == 0:
        raise ValueError("`x` must have at least one dimension; got a 0-d array.")
    ax = check_axis(axis, a.ndim, array_name="x")
    if a.shape[ax] == 0:
        raise ValueError(f"`x` must have at least one element along axis {ax}; got shape {a.shape}.")
    nt = resolve_n_threads(n_threads)
    kdt = _dispatch.storage(a, cdt)
    rows, owned = _rows(a, ax, kdt)
    moved_shape = a.shape[:ax] + a.shape[ax + 1:] + (a.shape[ax],)
    call = Call("softmax", rows.shape[0], rows.shape[1], kdt, nt, x=rows, mode=mode)
    if mode == 0:
        call.loss = np.empty(rows.shape[0], dtype=cdt)
        _dispatch.run(call)
        return call.loss.reshape(moved_shape[:-1])
    odt = grad_dtype(a, cdt)
    if out is not None:
        check_out(out, "out", a.shape, odt, [("x", a)], alias_name="x")
    buf, direct = _grad_buffer(out, ax, kdt, rows, owned)
    call.out = buf
    _dispatch.run(call)
    return _finish_grad(buf, direct, moved_shape, ax, odt, out)


def logsumexp(x, axis=-1):
    """``log(sum(exp(x), axis))``, stably.

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
    axis : int, default -1

    Returns
    -------
    ndarray, shape = x.shape without `axis`

    Notes
    -----
    ``m + log1p(sum_{x_j < m} exp(x_j - m) + ties - 1)``, ``m = max(x)``,
    as :func:`scipy.special.logsumexp` for special rows (all ``-inf`` gives
    ``-inf``, a ``+inf`` gives ``+inf``, a NaN gives NaN).

    Examples
    --------
    >>> import numpy as np, xent
    >>> xent.logsumexp(np.array([[1000.0, 1000.0], [0.0, -np.inf]])).round(6)
    array([1000.693147,    0.      ])
    """
    return _softmax_family(x, axis, None, _MODES["logsumexp"])


def log_softmax(x, axis=-1, out=None):
    """``x - logsumexp(x, axis)``, stably.

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
    axis : int, default -1
    out : ndarray, shape = x.shape, optional
        Where to write; may be `x` itself.

    Returns
    -------
    ndarray, shape = x.shape

    Notes
    -----
    ``(x - m) - log1p(...)`` as in :func:`logsumexp`; a row that is all
    ``-inf``, has a ``+inf`` or a NaN gives NaN.

    Examples
    --------
    >>> import numpy as np, xent
    >>> xent.log_softmax(np.array([0.0, 0.0])).round(6)
    array([-0.693147, -0.693147])
    """
    return _softmax_family(x, axis, out, _MODES["log_softmax"])


def softmax(x, axis=-1, out=None):
    """``exp(x) / sum(exp(x), axis)``, stably.

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
    axis : int, default -1
    out : ndarray, shape = x.shape, optional
        Where to write; may be `x` itself.

    Returns
    -------
    ndarray, shape = x.shape

    Notes
    -----
    ``exp(x - m) / sum_j exp(x_j - m)`` with ``m = max(x)``.

    Examples
    --------
    >>> import numpy as np, xent
    >>> xent.softmax(np.array([0.0, np.log(3.0)])).round(6)
    array([0.25, 0.75])
    """
    return _softmax_family(x, axis, out, _MODES["softmax"])


__all__ = [
    "LabelError",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_with_grad",
    "logsumexp",
    "log_softmax",
    "softmax",
]
