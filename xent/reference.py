"""Plain-NumPy reference implementations of the ``xent`` losses.

These functions have the same names, signatures and semantics as the fast
kernels of :mod:`xent` (the softmax and sigmoid cross-entropies and the
primitives).  They are written to be read: they are the oracle of the
test-suite and the baseline of the benchmarks, so clarity wins over speed,
but the math is still done in the compute dtype (float32 stays float32) and
is numerically careful:

* log-sum-exp uses the max shift, and ``lse - max`` is computed as
  ``log1p(sum of the other exponentials)`` so that tiny losses keep their
  relative precision; likewise the gradient at the max class, where
  ``softmax - 1`` would cancel;
* ``-inf`` logits are masks: a term whose coefficient is exactly 0 contributes
  exactly 0 (``np.where``, never ``0 * inf``);
* a row holding a NaN or a ``+inf``, or only ``-inf``, gives NaN for that row
  only; no ``RuntimeWarning`` is emitted.

Validation is minimal (the public functions of :mod:`xent` validate); every
valid input gets the right answer.

Compute dtype: float16 -> float32, float32 -> float32, float64 -> float64,
integer -> float64.  ``reduction="none"`` returns the compute dtype; ``"sum"``
and ``"mean"`` return a Python ``float`` accumulated in float64; gradients
(and ``softmax`` / ``log_softmax``) have the dtype of the logits (float64 for
integer logits).

Choices where PyTorch offers no guidance (the kernels must make the same):

* ``sample_weight`` multiplies the per-sample losses, so ``reduction="none"``
  returns ``s_i * l_i``; a sample weight of exactly 0 removes the row (loss 0,
  gradient 0, even when the row is NaN or its loss is ``+inf``).  Likewise a
  BCE ``weight`` of exactly 0 removes the element.
* An ignored row has loss 0 and gradient 0 even if its logits are NaN.
* With ``label_smoothing > 0`` every class with a non-zero weight receives
  target mass ``eps / C``, so a ``-inf`` logit there makes the loss ``+inf``
  (the mathematical value, as PyTorch); the gradient stays finite.
"""

import numpy as np

from ._docs import GRAD_OUT, ROWWISE, fill

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_with_grad",
    "logsumexp",
    "log_softmax",
    "softmax",
]

_REDUCTIONS = ("none", "sum", "mean")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _kind(dtype):
    """The dtype's kind, with bfloat16 (ml_dtypes', kind "V") a float."""
    return "f" if dtype.name == "bfloat16" else dtype.kind


def _compute_dtype(dtype):
    """The dtype the math is done in, for logits of ``dtype``: float32 for the
    16-bit floats (float16, bfloat16)."""
    dtype = np.dtype(dtype)
    if _kind(dtype) == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    if dtype.kind == "f":
        return dtype
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    raise TypeError(f"logits: expected a real floating or integer dtype, got {dtype}")


def _grad_dtype(dtype):
    """The dtype of gradients (and softmax outputs) for logits of ``dtype``."""
    dtype = np.dtype(dtype)
    return dtype if _kind(dtype) == "f" else np.dtype(np.float64)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _to_rows(x, axis):
    """Move ``axis`` last and flatten the rest: returns ``(rows (N, C), moved_shape)``."""
    moved = np.moveaxis(x, axis, -1)
    if moved.shape[-1] == 0:
        raise ValueError("logits: the class axis must have C >= 1 classes, got C = 0")
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _from_rows(rows, moved_shape, axis):
    """Inverse of :func:`_to_rows`: a C-contiguous array of the original layout."""
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved_shape), -1, axis))


def _write(result, out):
    """Return ``result``, or copy it into ``out`` and return ``out``."""
    if out is None:
        return result
    np.copyto(out, result)
    return out


def _softmax_parts(x):
    """Max-shifted pieces of the softmax of every row of ``x`` (N, C).

    Returns ``shifted, e, r, top, bad`` where ``shifted = x - max(x)``,
    ``e = exp(shifted)``, ``top`` is the index of a maximal entry, ``r`` is the
    sum of ``e`` over all entries but ``top`` (so ``lse(x) - max(x) = log1p(r)``
    and the softmax is ``e / (1 + r)``), and ``bad`` marks the
    rows whose max is not finite (a NaN, a ``+inf``, or only ``-inf``); the
    values of bad rows are meaningless and must be overwritten with NaN.
    """
    rows = np.arange(x.shape[0])
    m = x.max(axis=1)                      # NaN if the row holds a NaN
    bad = ~np.isfinite(m)
    m = np.where(bad, 0, m).astype(x.dtype)
    shifted = x - m[:, None]               # <= 0; -inf logits stay -inf
    e = np.exp(shifted)                    # masked classes give exactly 0
    # lse - max = log(1 + r), where r sums the exponentials of all entries but
    # one maximal one (whose exp(0) = 1 is exact).  log1p(r) keeps full
    # relative precision when r is tiny, i.e. when the loss is tiny.
    top = x.argmax(axis=1)
    e[rows, top] = 0
    r = e.sum(axis=1)
    e[rows, top] = 1
    return shifted, e, r, top, bad


# --------------------------------------------------------------------------
# softmax cross-entropy
# --------------------------------------------------------------------------

def _class_index_rows(shifted, e, r, top, labels, w, eps, ignore_index, want_grad):
    """Per-row loss (and gradient) for class-index targets.

    Returns ``loss (N,), grad (N, C) or None, ignored (N,), w_y (N,)``.
    ``l_i = sum_c q_c (lse - x_c)`` with ``q_c = (1-eps) w_y [c == y] + (eps/C) w_c``;
    the gradient is ``(sum_c q_c) * softmax - q``.
    """
    n, c = shifted.shape
    rows = np.arange(n)
    ignored = np.zeros(n, bool) if ignore_index is None else labels == ignore_index
    out_of_range = ~ignored & ((labels < 0) | (labels >= c))
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(f"target: label {labels[i]} at flat position {i} is outside "
                         f"[0, {c}) and is not ignore_index")
    y = np.where(ignored, 0, labels).astype(np.intp)   # any valid index for ignored rows
    w_y = w[y]
    log_norm = np.log1p(r)                             # lse - max

    coef_y = (1 - eps) * w_y                           # the true class's share of q
    nll_y = log_norm - shifted[rows, y]                # lse - x_y
    loss = np.where(coef_y != 0, coef_y * nll_y, 0)
    if eps > 0:
        nll = log_norm[:, None] - shifted              # lse - x_c, every class
        loss = loss + (eps / c) * np.where(w != 0, w * nll, 0).sum(axis=1)

    grad = None
    if want_grad:
        # coef_y * (softmax - onehot(y)) + (eps/C) * (sum(w) * softmax - w)
        p = e / (1 + r)[:, None]
        grad = coef_y[:, None] * p
        # softmax_y - 1 cancels when y is the max class: there it equals
        # -r / (1 + r) exactly; otherwise softmax_y <= 1/2 and no bits are lost.
        p_y_minus_1 = np.where(y == top, -r / (1 + r), p[rows, y] - 1)
        grad[rows, y] = coef_y * p_y_minus_1
        if eps > 0:
            grad += (eps / c) * (w.sum() * p - w)
    return loss, grad, ignored, w_y


def _probability_rows(shifted, e, r, top, t, w, eps, want_grad):
    """Per-row loss (and gradient) for probability targets ``t`` (N, C).

    ``t' = (1-eps) t + eps/C``, ``q = w t'``, ``l_i = sum_c q_c (lse - x_c)``;
    the gradient is ``(sum_c q_c) * softmax - q``.
    """
    c = shifted.shape[1]
    if eps > 0:
        t = t * (1 - eps) + eps / c
    q = w * t
    nll = np.log1p(r)[:, None] - shifted               # lse - x_c = -log_softmax
    loss = np.where(q != 0, q * nll, 0).sum(axis=1)
    grad = None
    if want_grad:
        n = q.shape[0]
        rows = np.arange(n)
        grad = q.sum(axis=1)[:, None] * (e / (1 + r)[:, None]) - q
        # At the max class the softmax is close to 1 and Q p - q can cancel
        # (one-hot target there); (Q - q_top - q_top r) / (1 + r) is the same
        # value with Q - q_top summed directly.
        q_top = q[rows, top]
        q_rest = np.where(np.arange(c) == top[:, None], 0, q).sum(axis=1)
        grad[rows, top] = (q_rest - q_top * r) / (1 + r)
    return loss, grad


def _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                label_smoothing, reduction, want_grad):
    """Shared body of the two softmax cross-entropy functions."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    target = np.asarray(target)
    cdt = _compute_dtype(logits.dtype)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing!r}")

    x, moved_shape = _to_rows(logits.astype(cdt), axis)
    n, c = x.shape
    batch_shape = moved_shape[:-1]
    w = np.ones(c, cdt) if weight is None else np.asarray(weight, dtype=cdt).reshape(c)
    if sample_weight is None:
        s = np.ones(n, cdt)
    else:
        s = np.broadcast_to(np.asarray(sample_weight, dtype=cdt), batch_shape).reshape(n)

    with np.errstate(all="ignore"):
        shifted, e, r, top, bad = _softmax_parts(x)

        if target.dtype.kind in "iu":
            if target.shape != batch_shape:
                raise ValueError(f"target: expected shape {batch_shape} (logits without "
                                 f"axis) for class indices, got {target.shape}")
            loss, grad, ignored, w_y = _class_index_rows(
                shifted, e, r, top, target.reshape(n), w, eps, ignore_index, want_grad)
            counted = np.where(ignored, 0, w_y)        # mean: divide by sum s_i w_{y_i}
        elif _kind(target.dtype) == "f":
            if ignore_index is not None:
                raise ValueError("ignore_index: only valid with class-index targets")
            if target.shape != logits.shape:
                if target.shape == batch_shape:
                    raise TypeError("target: class indices must be integers; use "
                                    "target.astype(np.int64)")
                raise ValueError(f"target: expected shape {logits.shape}, got {target.shape}")
            t, _ = _to_rows(target.astype(cdt), axis)
            loss, grad = _probability_rows(shifted, e, r, top, t, w, eps, want_grad)
            ignored = np.zeros(n, bool)
            counted = np.ones(n, cdt)                  # mean: divide by sum s_i
        else:
            raise TypeError(f"target: expected an integer (class indices) or floating "
                            f"(probabilities) dtype, got {target.dtype}")

        # Bad rows are NaN, ignored rows 0; rows of sample weight 0 are removed.
        loss = np.where(bad, np.nan, loss)
        loss = np.where(ignored, 0, loss)
        per_sample = np.where(s != 0, s * loss, 0).astype(cdt)

        # d(reduced loss)/d(per-row loss): s_i, divided by the mean's denominator.
        if reduction == "none":
            value = per_sample.reshape(batch_shape)
            row_scale = s
        elif reduction == "sum":
            value = float(np.sum(per_sample, dtype=np.float64))
            row_scale = s
        else:
            denom = np.sum(s.astype(np.float64) * counted.astype(np.float64))
            if denom == 0:
                value = float("nan")
                row_scale = np.zeros(n, cdt)
            else:
                value = float(np.sum(per_sample, dtype=np.float64) / denom)
                row_scale = (s.astype(np.float64) / denom).astype(cdt)

        if not want_grad:
            return value
        grad = np.where(bad[:, None], np.nan, grad)
        zero_rows = ignored | (row_scale == 0)
        grad = np.where(zero_rows[:, None], 0, grad * row_scale[:, None]).astype(cdt)
    grad = _from_rows(grad.astype(_grad_dtype(logits.dtype)), moved_shape, axis)
    return value, grad


def softmax_cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                          ignore_index=None, label_smoothing=0.0, reduction="mean",
                          n_threads=None):
    """Softmax cross-entropy from logits (PyTorch semantics), NumPy reference.

    Parameters
    ----------
    logits : array_like, (..., C, ...)
        Unnormalised scores; the class axis is ``axis``.
    target : array_like, int (logits.shape without axis) or float (logits.shape)
        Class indices (integer dtype) or probabilities (floating dtype).
    axis : int
        The class axis.
    weight : array_like, (C,), optional
        Per-class weights ``w``.
    sample_weight : array_like, (logits.shape without axis), optional
        Per-sample weights ``s``.
    ignore_index : int, optional
        Class-index targets only: rows with this label are skipped.
    label_smoothing : float in [0, 1]
        ``eps``, spread as ``eps / C`` over all classes.
    reduction : {"none", "sum", "mean"}
    n_threads : ignored

    Returns
    -------
    loss : float, or ndarray (logits.shape without axis) for ``"none"``

    Notes
    -----
    Class indices: ``l_i = sum_c q_c (lse(x_i) - x_ic)`` with
    ``q_c = (1-eps) w_y [c == y_i] + (eps/C) w_c``;
    mean = ``sum_i s_i l_i / sum_i s_i w_{y_i}`` over non-ignored rows.
    Probabilities: ``t' = (1-eps) t + eps/C``, ``l_i = sum_c w_c t'_c (lse(x_i) - x_ic)``;
    mean = ``sum_i s_i l_i / sum_i s_i``.  A zero denominator gives ``nan``.
    """
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, reduction, want_grad=False)


@fill(grad_out=GRAD_OUT)
def softmax_cross_entropy_with_grad(logits, target, *, axis=-1, weight=None,
                                    sample_weight=None, ignore_index=None,
                                    label_smoothing=0.0, reduction="mean",
                                    n_threads=None, grad_out=None):
    """Softmax cross-entropy and its gradient with respect to the logits.

    Parameters are those of :func:`softmax_cross_entropy`, plus

    {grad_out}
    loss : float, or ndarray (logits.shape without axis) for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)
        ``d loss / d logits``; for ``"none"``, of the sum of the per-sample losses.

    Notes
    -----
    Per row, ``grad_i = s_i / D * ((sum_c q_c) softmax(x_i) - q)`` with ``q`` the
    effective target weights (``q = w t'`` for probabilities) and ``D`` the mean's
    denominator (1 for ``"sum"`` and ``"none"``).  Ignored rows, and all rows when
    ``D == 0``, get 0.
    """
    loss, grad = _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                             label_smoothing, reduction, want_grad=True)
    return loss, _write(grad, grad_out)


# --------------------------------------------------------------------------
# sigmoid binary cross-entropy
# --------------------------------------------------------------------------

def _softplus(z):
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))``."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid_pair(x):
    """``(sigmoid(x), sigmoid(-x))``, each computed without cancellation."""
    e = np.exp(-np.abs(x))                 # in (0, 1]; 0 for x = +-inf
    big = 1 / (1 + e)                      # sigmoid(|x|)
    small = e / (1 + e)                    # sigmoid(-|x|)
    positive = x >= 0
    return np.where(positive, big, small), np.where(positive, small, big)


def _bce(logits, target, weight, pos_weight, label_smoothing, reduction, want_grad):
    """Shared body of the two sigmoid binary cross-entropy functions."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    cdt = _compute_dtype(logits.dtype)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing!r}")
    x = logits.astype(cdt)
    t = np.broadcast_to(np.asarray(target).astype(cdt), x.shape)
    if eps > 0:
        t = t * (1 - eps) + eps / 2

    with np.errstate(all="ignore"):
        # loss = p t' softplus(-x) + (1 - t') softplus(x): a sum of non-negative
        # terms (no cancellation); a zero coefficient contributes exactly 0.
        pos = t if pos_weight is None else np.asarray(pos_weight, dtype=cdt) * t
        neg = 1 - t
        pos = np.broadcast_to(pos, x.shape)
        loss = (np.where(pos != 0, pos * _softplus(-x), 0)
                + np.where(neg != 0, neg * _softplus(x), 0)).astype(cdt)
        if weight is not None:
            wt = np.broadcast_to(np.asarray(weight, dtype=cdt), x.shape)
            loss = np.where(wt != 0, wt * loss, 0).astype(cdt)

        n = x.size
        if reduction == "none":
            value = loss
        else:
            total = np.sum(loss, dtype=np.float64)
            if reduction == "sum":
                value = float(total)
            else:
                value = float(total / n) if n else float("nan")

        if not want_grad:
            return value
        # d loss / dx = (1 - t') sigmoid(x) - p t' sigmoid(-x)
        sig, sig_neg = _sigmoid_pair(x)
        grad = (neg * sig - pos * sig_neg).astype(cdt)
        if weight is not None:
            grad = np.where(wt != 0, wt * grad, 0).astype(cdt)
        if reduction == "mean" and n:
            grad = (grad / cdt.type(n)).astype(cdt)
    # (astype, not np.ascontiguousarray, which makes a 0-d gradient 1-d)
    grad = grad.astype(_grad_dtype(logits.dtype), order="C")
    return value, grad


def sigmoid_binary_cross_entropy(logits, target, *, weight=None, pos_weight=None,
                                 label_smoothing=0.0, reduction="mean", n_threads=None):
    """Elementwise sigmoid binary cross-entropy from logits, NumPy reference.

    Parameters
    ----------
    logits : array_like, any shape
    target : array_like, logits.shape
        Floats in [0, 1] (soft targets allowed) or bool/integer 0/1.
    weight : array_like, broadcastable to logits.shape, optional
        Multiplies each element's loss.
    pos_weight : array_like, broadcastable to logits.shape, optional
        ``p``, multiplies the positive term (shape ``(C,)``: one per label).
    label_smoothing : float in [0, 1]
        Targets become ``t' = t (1 - eps) + eps / 2`` (Keras).
    reduction : {"none", "sum", "mean"}
        ``"mean"`` divides by the number of elements.
    n_threads : ignored

    Returns
    -------
    loss : float, or ndarray (logits.shape) for ``"none"``

    Notes
    -----
    ``loss = weight * (p t' softplus(-x) + (1 - t') softplus(x))`` with
    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``; equal to PyTorch's
    ``(1-t)x + (1+(p-1)t)(log1p(exp(-|x|)) + max(-x, 0))``.  A term whose
    coefficient is exactly 0 contributes exactly 0 (``x = +inf, t = 1`` gives 0).
    """
    return _bce(logits, target, weight, pos_weight, label_smoothing, reduction,
                want_grad=False)


@fill(grad_out=GRAD_OUT)
def sigmoid_binary_cross_entropy_with_grad(logits, target, *, weight=None, pos_weight=None,
                                           label_smoothing=0.0, reduction="mean",
                                           n_threads=None, grad_out=None):
    """Sigmoid binary cross-entropy and its gradient with respect to the logits.

    Parameters are those of :func:`sigmoid_binary_cross_entropy`, plus

    {grad_out}
    loss : float, or ndarray (logits.shape) for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)

    Notes
    -----
    ``grad = weight * ((1 - t') sigmoid(x) - p t' sigmoid(-x))``, divided by the
    number of elements for ``"mean"``; sigmoids via ``exp(-|x|)``, finite for
    ``x = +-inf``.
    """
    loss, grad = _bce(logits, target, weight, pos_weight, label_smoothing, reduction,
                      want_grad=True)
    return loss, _write(grad, grad_out)


# --------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------

def logsumexp(x, axis=-1):
    """``log(sum(exp(x)))`` along ``axis``, max-shifted.

    Parameters
    ----------
    x : array_like, (..., C, ...)
    axis : int

    Returns
    -------
    lse : ndarray (x.shape without axis), compute dtype (float32 for float16)

    Notes
    -----
    ``lse = m + log1p(sum_{c != argmax} exp(x_c - m))`` with ``m = max(x)``.
    As ``scipy.special.logsumexp``: a row of only ``-inf`` gives ``-inf``, a row
    with ``+inf`` (and no NaN) gives ``+inf``, a row with NaN gives NaN.
    """
    x = np.asarray(x)
    rows, moved_shape = _to_rows(x.astype(_compute_dtype(x.dtype)), axis)
    with np.errstate(all="ignore"):
        _, _, r, _, bad = _softmax_parts(rows)
        m = rows.max(axis=1)
        lse = np.where(bad, m, m + np.log1p(r)).astype(rows.dtype)
    return lse.reshape(moved_shape[:-1])


@fill(rowwise=ROWWISE)
def log_softmax(x, axis=-1, out=None):
    """``x - logsumexp(x)`` along ``axis``, max-shifted.

    {rowwise}

    Notes
    -----
    ``(x - m) - log1p(sum_{c != argmax} exp(x_c - m))``.  A row of only ``-inf``,
    or with ``+inf`` or NaN, is all NaN.
    """
    x = np.asarray(x)
    rows, moved_shape = _to_rows(x.astype(_compute_dtype(x.dtype)), axis)
    with np.errstate(all="ignore"):
        shifted, _, r, _, bad = _softmax_parts(rows)
        result = np.where(bad[:, None], np.nan, shifted - np.log1p(r)[:, None])
    result = _from_rows(result.astype(_grad_dtype(x.dtype)), moved_shape, axis)
    return _write(result, out)


@fill(rowwise=ROWWISE)
def softmax(x, axis=-1, out=None):
    """``exp(x) / sum(exp(x))`` along ``axis``, max-shifted.

    {rowwise}

    Notes
    -----
    ``exp(x - m) / sum(exp(x - m))``.  A row of only ``-inf``, or with ``+inf``
    or NaN, is all NaN.
    """
    x = np.asarray(x)
    rows, moved_shape = _to_rows(x.astype(_compute_dtype(x.dtype)), axis)
    with np.errstate(all="ignore"):
        _, e, r, _, bad = _softmax_parts(rows)
        result = np.where(bad[:, None], np.nan, e / (1 + r)[:, None])
    result = _from_rows(result.astype(_grad_dtype(x.dtype)), moved_shape, axis)
    return _write(result, out)
