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

The extras (``temperature`` / ``softcap`` / ``z_loss``, :func:`token_stats`,
the focal losses, SciPy's options of :func:`logsumexp`) follow the semantics
page of the user guide; each docstring's Notes give the formula.
"""

import math

import numpy as np

from ._docs import GRAD_OUT, ROWWISE, fill
from ._types import TokenStats

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_with_grad",
    "token_stats",
    "kl_divergence",
    "kl_divergence_with_grad",
    "js_divergence",
    "js_divergence_with_grad",
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


def _check_labels(labels, c, ignore_index):
    """``(y, ignored)`` for class indices ``labels`` (N,) over ``c`` classes.

    ``ignored`` marks the rows whose label is ``ignore_index``; ``y`` is the
    label as an index, with 0 (any valid index) on ignored rows.  A label
    outside ``[0, c)`` that is not ``ignore_index`` raises ``xent.LabelError``
    (a ``ValueError`` and an ``IndexError``).
    """
    n = labels.shape[0]
    ignored = np.zeros(n, bool) if ignore_index is None else labels == ignore_index
    out_of_range = ~ignored & ((labels < 0) | (labels >= c))
    if out_of_range.any():
        from ._validate import LabelError  # here: the reference itself needs no kernel
        i = int(np.flatnonzero(out_of_range)[0])
        raise LabelError(f"target: label {labels[i]} at flat position {i} is outside "
                         f"[0, {c}) and is not ignore_index")
    y = np.where(ignored, 0, labels).astype(np.intp)
    return y, ignored


def _check_index_shape(target, batch_shape):
    if target.shape != batch_shape:
        raise ValueError(f"target: expected shape {batch_shape} (logits without "
                         f"axis) for class indices, got {target.shape}")


def _probability_target(target, logits, batch_shape, ignore_index, axis, cdt):
    """Probability targets checked (shape, no ignore_index) as (N, C) rows of ``cdt``."""
    if ignore_index is not None:
        raise ValueError("ignore_index: only valid with class-index targets")
    if target.shape != logits.shape:
        if target.shape == batch_shape:
            raise TypeError("target: class indices must be integers; use "
                            "target.astype(np.int64)")
        raise ValueError(f"target: expected shape {logits.shape}, got {target.shape}")
    return _to_rows(target.astype(cdt), axis)[0]


def _check_extras(temperature, softcap, z_loss):
    """The cross-entropy extras as floats: ``(T, c or None, z_loss)``."""
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature: expected a finite value > 0, got {temperature!r}")
    c = None
    if softcap is not None:
        c = float(softcap)
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"softcap: expected None or a finite value > 0, got {softcap!r}")
    zl = float(z_loss)
    if not (math.isfinite(zl) and zl >= 0):
        raise ValueError(f"z_loss: expected a finite value >= 0, got {z_loss!r}")
    return t, c, zl


def _check_gamma(gamma):
    g = float(gamma)
    if not (math.isfinite(g) and g >= 0):
        raise ValueError(f"gamma: expected a finite value >= 0, got {gamma!r}")
    return g


def _temperature(x, t):
    """``x`` times the reciprocal of ``T`` rounded to the dtype of ``x`` (the
    compute dtype), ``x * dtype(1 / T)``: exactly ``x / T`` when ``T`` is a
    power of two, else within an ulp of it.  ``T == 1`` returns ``x`` itself."""
    return x if t == 1 else x * x.dtype.type(1.0 / t)


def _softcap(z, c):
    """``(c * tanh(z / c), u = z / c)``: the capped logits, computed in float64
    and rounded once to the dtype of ``z``, and ``u`` (float64) for the
    gradient.  ``-inf`` stays ``-inf`` (a mask), ``+inf`` gives ``+c``, NaN
    stays NaN."""
    u = z.astype(np.float64) / c
    capped = np.where(z == -np.inf, -np.inf, c * np.tanh(u))
    return capped.astype(z.dtype), u


def _sech2(u):
    """``1 - tanh(u)^2 = sech(u)^2`` without the cancellation of ``1 - tanh^2``
    near ``|u| = inf`` and without overflow: ``(2 e^-|u| / (1 + e^-2|u|))^2``;
    0 at ``u = +-inf``."""
    e = np.exp(-np.abs(u))
    return (2 * e / (1 + e * e)) ** 2


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
    y, ignored = _check_labels(labels, c, ignore_index)  # y: any valid index on ignored rows
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
                label_smoothing, temperature, softcap, z_loss, reduction, want_grad):
    """Shared body of the two softmax cross-entropy functions."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    target = np.asarray(target)
    cdt = _compute_dtype(logits.dtype)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing!r}")
    temp, cap, zl = _check_extras(temperature, softcap, z_loss)

    x, moved_shape = _to_rows(logits.astype(cdt), axis)
    n, c = x.shape
    batch_shape = moved_shape[:-1]
    w = np.ones(c, cdt) if weight is None else np.asarray(weight, dtype=cdt).reshape(c)
    if sample_weight is None:
        s = np.ones(n, cdt)
    else:
        s = np.broadcast_to(np.asarray(sample_weight, dtype=cdt), batch_shape).reshape(n)

    with np.errstate(all="ignore"):
        # z = x * (1/T), then z' = c tanh(z / c); the loss is the plain one on z'.
        x = _temperature(x, temp)
        if cap is not None:
            x, u = _softcap(x, cap)
        shifted, e, r, top, bad = _softmax_parts(x)

        if target.dtype.kind in "iu":
            _check_index_shape(target, batch_shape)
            loss, grad, ignored, w_y = _class_index_rows(
                shifted, e, r, top, target.reshape(n), w, eps, ignore_index, want_grad)
            counted = np.where(ignored, 0, w_y)        # mean: divide by sum s_i w_{y_i}
        elif _kind(target.dtype) == "f":
            t = _probability_target(target, logits, batch_shape, ignore_index, axis, cdt)
            loss, grad = _probability_rows(shifted, e, r, top, t, w, eps, want_grad)
            ignored = np.zeros(n, bool)
            counted = np.ones(n, cdt)                  # mean: divide by sum s_i
        else:
            raise TypeError(f"target: expected an integer (class indices) or floating "
                            f"(probabilities) dtype, got {target.dtype}")

        if zl > 0:
            # z-loss: z_loss * lse^2 per row (no class weight); its gradient
            # 2 z_loss lse softmax.  (s_i and the mean's denominator below.)
            lse = x.max(axis=1) + np.log1p(r)
            loss = loss + zl * lse ** 2
            if want_grad:
                grad = grad + (2 * zl * lse)[:, None] * (e / (1 + r)[:, None])

        # Bad rows are NaN, ignored rows 0 (whatever their sample weight, NaN
        # included); rows of sample weight 0 are removed.
        s = np.where(ignored, 0, s)
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
        # chain rule: d z'/dz = 1 - tanh(z/c)^2 = sech(z/c)^2, dz/dx = 1/T
        if cap is not None:
            dcap = np.where(np.isnan(u), 0, _sech2(u))  # NaN rows: grad is NaN or 0 already
            grad = (grad.astype(np.float64) * dcap * float(cdt.type(1.0 / temp))).astype(cdt)
        elif temp != 1:
            grad = (grad.astype(np.float64) * float(cdt.type(1.0 / temp))).astype(cdt)
    grad = _from_rows(grad.astype(_grad_dtype(logits.dtype)), moved_shape, axis)
    return value, grad


def softmax_cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                          ignore_index=None, label_smoothing=0.0, temperature=1.0,
                          softcap=None, z_loss=0.0, reduction="mean", n_threads=None):
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
    temperature : float, finite > 0, default 1
        ``T``: the logits are scaled by it first, ``z = x * dtype(1 / T)``
        (the reciprocal rounded to the compute dtype: ``x / T`` exactly for
        a power of two).
    softcap : float, finite > 0, optional
        ``c``: then ``z' = c tanh(z / c)`` (in float64, rounded once); ``-inf``
        stays ``-inf``, ``+inf`` gives ``c``.
    z_loss : float, finite >= 0, default 0
        Adds ``z_loss * lse(z'_i)^2`` to each row, times ``s_i`` but not the
        class weight; ignored rows get none.
    reduction : {"none", "sum", "mean"}
    n_threads : ignored

    Returns
    -------
    loss : float, or ndarray (logits.shape without axis) for ``"none"``

    Notes
    -----
    With ``z'`` the logits after temperature and softcap (``z' = x`` at the
    defaults), class indices:
    ``l_i = sum_c q_c (lse(z'_i) - z'_ic) + z_loss lse(z'_i)^2`` with
    ``q_c = (1-eps) w_y [c == y_i] + (eps/C) w_c``;
    mean = ``sum_i s_i l_i / sum_i s_i w_{y_i}`` over non-ignored rows.
    Probabilities: ``t' = (1-eps) t + eps/C``,
    ``l_i = sum_c w_c t'_c (lse(z'_i) - z'_ic) + z_loss lse(z'_i)^2``;
    mean = ``sum_i s_i l_i / sum_i s_i``.  A zero denominator gives ``nan``.
    ``temperature=T`` gives bitwise the loss of the plain function on
    ``x * dtype(1 / T)``.
    """
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, temperature, softcap, z_loss, reduction,
                       want_grad=False)


@fill(grad_out=GRAD_OUT)
def softmax_cross_entropy_with_grad(logits, target, *, axis=-1, weight=None,
                                    sample_weight=None, ignore_index=None,
                                    label_smoothing=0.0, temperature=1.0, softcap=None,
                                    z_loss=0.0, reduction="mean", n_threads=None,
                                    grad_out=None):
    """Softmax cross-entropy and its gradient with respect to the logits.

    Parameters are those of :func:`softmax_cross_entropy`, plus

    {grad_out}
    loss : float, or ndarray (logits.shape without axis) for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)
        ``d loss / d logits``; for ``"none"``, of the sum of the per-sample losses.

    Notes
    -----
    Per row, ``g_i = s_i / D * ((sum_c q_c) softmax(z'_i) - q
    + 2 z_loss lse(z'_i) softmax(z'_i))`` with ``q`` the effective target
    weights (``q = w t'`` for probabilities) and ``D`` the mean's denominator
    (1 for ``"sum"`` and ``"none"``); then the chain rule through softcap and
    temperature, ``grad_i = g_i * (1 - tanh(z_i / c)^2) * dtype(1 / T)``, with
    ``1 - tanh^2`` computed as ``sech^2`` (no cancellation).  Ignored rows, and
    all rows when ``D == 0``, get 0.
    """
    loss, grad = _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                             label_smoothing, temperature, softcap, z_loss, reduction,
                             want_grad=True)
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
# focal losses
# --------------------------------------------------------------------------

def _reduce_rows(loss, reduction, counted):
    """``(value, scale)`` of per-row (or per-element) losses ``loss``: the
    reduced value, and ``d value / d loss_i`` for the gradient (``None`` for
    "none" and "sum", where it is 1; 0 everywhere when the mean's denominator
    ``sum(counted)`` is 0, with value NaN)."""
    if reduction == "none":
        return loss, None
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return float(total), None
    denom = np.sum(counted, dtype=np.float64)
    if denom == 0:
        return float("nan"), 0.0
    return float(total / denom), denom


def _sigmoid_focal(logits, target, alpha, gamma, reduction, want_grad):
    """Shared body of the two sigmoid focal loss functions."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    cdt = _compute_dtype(logits.dtype)
    g = _check_gamma(gamma)
    x = logits.astype(cdt)
    t = np.broadcast_to(np.asarray(target).astype(cdt), x.shape)

    with np.errstate(all="ignore"):
        p, p_neg = _sigmoid_pair(x)        # sigmoid(x), 1 - sigmoid(x)
        neg = 1 - t
        # ce: the BCE of sigmoid_binary_cross_entropy, a term with a zero
        # coefficient exactly 0
        ce = (np.where(t != 0, t * _softplus(-x), 0)
              + np.where(neg != 0, neg * _softplus(x), 0)).astype(cdt)
        # 1 - p_t = p (1 - t) + (1 - p) t: non-negative terms, no cancellation
        # (it is 1 - p for t = 1 and p for t = 0 exactly); u ** 0 == 1.
        u = p * neg + p_neg * t
        coef = u ** g
        if alpha is not None and alpha >= 0:
            # an alpha_t of exactly 0 removes the element, as a BCE weight of
            # 0 does (even at a NaN logit)
            a_t = alpha * t + (1 - alpha) * neg
            coef = np.where(a_t != 0, a_t * coef, 0)
        loss = np.where(coef != 0, coef * ce, 0).astype(cdt)
        value, _ = _reduce_rows(loss, reduction, np.ones(loss.size))
        if not want_grad:
            return value

        # d/dx [u^gamma ce] = u^gamma ((p - t) + gamma (du/dx / u) ce) with
        # du/dx / u = p (1 - p) (1 - 2t) / u: -p for t = 1, 1 - p for t = 0
        # (exactly, also where u = 0).  Each sum has terms of one sign for a
        # 0/1 target.
        dce = neg * p - t * p_neg                        # p - t, as the BCE gradient
        dlogu = np.where(t == 1, -p, np.where(t == 0, p_neg, p * p_neg * (neg - t) / u))
        dlogu_ce = np.where(dlogu != 0, dlogu * ce, 0)  # x = +-inf: 0, not 0 * inf
        grad = np.where(coef != 0, coef * (dce + g * dlogu_ce), 0).astype(cdt)
        if reduction == "mean" and x.size:
            grad = (grad / cdt.type(x.size)).astype(cdt)
    grad = grad.astype(_grad_dtype(logits.dtype), order="C")
    return value, grad


def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, reduction="mean",
                       n_threads=None):
    """Elementwise sigmoid focal loss from logits (torchvision's), NumPy reference.

    Parameters
    ----------
    logits : array_like, any shape
    target : array_like, logits.shape
        Floats in [0, 1] (soft targets allowed) or bool/integer 0/1.
    alpha : float, optional
        Weight of the positives, ``alpha_t = alpha t + (1 - alpha)(1 - t)``;
        ``None`` or a negative value leaves the term out (torchvision).
    gamma : float, finite >= 0
        Focusing parameter; 0 gives the factor 1 exactly.
    reduction : {"none", "sum", "mean"}
        ``"mean"`` divides by the number of elements (torchvision's default
        is ``"none"``).
    n_threads : ignored

    Returns
    -------
    loss : float, or ndarray (logits.shape) for ``"none"``

    Notes
    -----
    ``p = sigmoid(x)``, ``ce = t softplus(-x) + (1 - t) softplus(x)`` (the BCE),
    ``p_t = p t + (1 - p)(1 - t)``,
    ``loss = alpha_t (1 - p_t)^gamma ce``.  ``1 - p_t`` is computed as
    ``p (1 - t) + (1 - p) t`` with ``p`` and ``1 - p`` each from ``exp(-|x|)``,
    so it is exact to a few ulps (``sigmoid(-x)`` for ``t = 1``) and
    ``(1 - p_t)^gamma`` is a power of it.  A zero factor gives exactly 0, so
    ``gamma = 0`` gives ``alpha_t`` times the BCE.
    """
    return _sigmoid_focal(logits, target, alpha, gamma, reduction, want_grad=False)


@fill(grad_out=GRAD_OUT)
def sigmoid_focal_loss_with_grad(logits, target, *, alpha=0.25, gamma=2.0,
                                 reduction="mean", n_threads=None, grad_out=None):
    """Sigmoid focal loss and its gradient with respect to the logits.

    Parameters are those of :func:`sigmoid_focal_loss`, plus

    {grad_out}
    loss : float, or ndarray (logits.shape) for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)

    Notes
    -----
    With ``u = 1 - p_t``,
    ``grad = alpha_t u^gamma ((p - t) + gamma (p (1 - p)(1 - 2t) / u) ce)``,
    where ``p (1 - p)(1 - 2t) / u`` is ``-p`` for ``t = 1`` and ``1 - p`` for
    ``t = 0``, and ``p - t = (1 - t) sigmoid(x) - t sigmoid(-x)``: for 0/1
    targets both terms have one sign, so nothing cancels.  Where that ratio is
    0 (``x = +-inf``) its product with ``ce`` is 0.  Divided by the number of
    elements for ``"mean"``.
    """
    loss, grad = _sigmoid_focal(logits, target, alpha, gamma, reduction, want_grad=True)
    return loss, _write(grad, grad_out)


def _focal_terms(beta, p, q, nll, g):
    """Loss terms ``beta q^gamma nll`` and gradient factors ``K`` of the softmax
    focal loss, elementwise (rows or rows x classes).

    ``p`` the softmax, ``q = 1 - p`` (accurate), ``nll = -log p >= 0``.
    ``d/dx_j [beta q^gamma nll] = K (p_j - [j == c])`` with
    ``K = beta q^gamma (1 + gamma p rho)``, ``rho = nll / q`` (-> 1 as q -> 0).
    """
    coef = beta * q ** g                                # q ** 0 == 1 exactly
    loss = np.where(coef != 0, coef * nll, 0)
    rho = np.where(q != 0, nll / q, 1)
    p_rho = np.where(p != 0, p * rho, 0)                # a -inf logit: p = 0, nll = inf
    k = np.where(coef != 0, coef * (1 + g * p_rho), 0)
    return loss, k


def _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index, reduction,
                   want_grad):
    """Shared body of the two softmax focal loss functions."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    target = np.asarray(target)
    cdt = _compute_dtype(logits.dtype)
    g = _check_gamma(gamma)
    a = 1.0 if alpha is None else float(alpha)

    x, moved_shape = _to_rows(logits.astype(cdt), axis)
    n, c = x.shape
    rows = np.arange(n)
    batch_shape = moved_shape[:-1]
    w = np.ones(c, cdt) if weight is None else np.asarray(weight, dtype=cdt).reshape(c)

    with np.errstate(all="ignore"):
        shifted, e, r, top, bad = _softmax_parts(x)
        norm = (1 + r)[:, None]                          # sum exp(x - m)
        p = e / norm
        # 1 - p_c = (sum_{j != c} e_j) / (1 + r): r at the max class; elsewhere
        # 1 + r - e_c, where e_c <= (1 + r) / 2 (p_c <= 1/2), so no bits are lost.
        is_top = np.arange(c) == top[:, None]
        q = np.where(is_top, r[:, None], norm - e) / norm
        nll = np.log1p(r)[:, None] - shifted             # -log p = lse - x >= 0

        if target.dtype.kind in "iu":
            _check_index_shape(target, batch_shape)
            y, ignored = _check_labels(target.reshape(n), c, ignore_index)
            w_y = w[y]
            loss, k = _focal_terms(a * w_y, p[rows, y], q[rows, y], nll[rows, y], g)
            if want_grad:
                grad = k[:, None] * p                    # K (softmax - onehot(y))
                grad[rows, y] = -k * q[rows, y]          # K (p_y - 1), without cancellation
            counted = np.where(ignored, 0, w_y)          # mean: sum of w_{y_i}, kept rows
        elif _kind(target.dtype) == "f":
            t = _probability_target(target, logits, batch_shape, ignore_index, axis, cdt)
            terms, k = _focal_terms(a * (w * t), p, q, nll, g)
            loss = terms.sum(axis=1)
            if want_grad:
                # grad_j = (sum_c K_c) p_j - K_j; at the max class, where p ~ 1,
                # (sum_{c != top} K_c) p_top - K_top q_top with the sum direct.
                grad = k.sum(axis=1)[:, None] * p - k
                k_rest = np.where(is_top, 0, k).sum(axis=1)
                grad[rows, top] = k_rest * p[rows, top] - k[rows, top] * q[rows, top]
            ignored = np.zeros(n, bool)
            counted = np.ones(n)                         # mean: divide by N
        else:
            raise TypeError(f"target: expected an integer (class indices) or floating "
                            f"(probabilities) dtype, got {target.dtype}")

        loss = np.where(bad, np.nan, loss)
        loss = np.where(ignored, 0, loss).astype(cdt)
        value, denom = _reduce_rows(loss, reduction, counted)
        if reduction == "none":
            value = value.reshape(batch_shape)
        if not want_grad:
            return value
        grad = np.where(bad[:, None], np.nan, grad)
        if denom is not None:                            # mean: / denominator, 0 if none
            grad = np.zeros_like(grad) if denom == 0 else grad.astype(np.float64) / denom
        # ignored rows are 0 even when the denominator is NaN (a NaN class weight)
        grad = np.where(ignored[:, None], 0, grad).astype(cdt)
    grad = _from_rows(grad.astype(_grad_dtype(logits.dtype)), moved_shape, axis)
    return value, grad


def softmax_focal_loss(logits, target, *, alpha=None, gamma=2.0, axis=-1, weight=None,
                       ignore_index=None, reduction="mean", n_threads=None):
    """Softmax (categorical) focal loss from logits (Keras 3's), NumPy reference.

    Parameters
    ----------
    logits : array_like, (..., C, ...)
        Unnormalised scores; the class axis is ``axis``.
    target : array_like, int (logits.shape without axis) or float (logits.shape)
        Class indices (integer dtype) or probabilities (floating dtype).
    alpha : float, optional
        ``a``, a scalar factor of every loss; ``None`` means 1 (Keras's
        default is 0.25).
    gamma : float, finite >= 0
        Focusing parameter; 0 gives ``a`` times the cross-entropy.
    axis : int
        The class axis.
    weight : array_like, (C,), optional
        Per-class weights ``w``.
    ignore_index : int, optional
        Class-index targets only: rows with this label are skipped.
    reduction : {"none", "sum", "mean"}
    n_threads : ignored

    Returns
    -------
    loss : float, or ndarray (logits.shape without axis) for ``"none"``

    Notes
    -----
    ``p = softmax(x_i)``.  Class indices:
    ``l_i = -a w_{y_i} (1 - p_{y_i})^gamma log p_{y_i}``;
    mean = ``sum_i l_i / sum_i w_{y_i}`` over non-ignored rows.
    Probabilities: ``l_i = -a sum_c w_c t_ic (1 - p_ic)^gamma log p_ic`` (a term
    with ``w_c t_ic == 0`` is 0); mean = ``sum_i l_i / N``.  A zero
    denominator gives ``nan``.  Keras's clipping of ``p`` to
    ``[1e-7, 1 - 1e-7]`` is not done.  In log space:
    ``-log p_c = log1p(r) - (x_c - m)`` and
    ``1 - p_c = (sum_{j != c} e_j) / (sum_j e_j)``, ``e_j = exp(x_j - m)``.
    """
    return _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index,
                          reduction, want_grad=False)


@fill(grad_out=GRAD_OUT)
def softmax_focal_loss_with_grad(logits, target, *, alpha=None, gamma=2.0, axis=-1,
                                 weight=None, ignore_index=None, reduction="mean",
                                 n_threads=None, grad_out=None):
    """Softmax focal loss and its gradient with respect to the logits.

    Parameters are those of :func:`softmax_focal_loss`, plus

    {grad_out}
    loss : float, or ndarray (logits.shape without axis) for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)
        ``d loss / d logits``; for ``"none"``, of the sum of the per-sample losses.

    Notes
    -----
    Class indices: ``grad_i = K (softmax(x_i) - onehot(y_i)) / D`` with
    ``K = a w_y q^gamma (1 + gamma p_y rho)``, ``q = 1 - p_y``,
    ``rho = -log(p_y) / q`` (1 when ``q = 0``); the target entry is ``-K q``.
    Probabilities: ``grad_ij = ((sum_c K_c) p_j - K_j) / D`` with ``K_c`` the
    same factor per class (``a w_c t_c`` for ``a w_y``).  ``D`` is the mean's
    denominator (1 for ``"sum"`` and ``"none"``); ignored rows, and all rows
    when ``D == 0``, get 0.
    """
    loss, grad = _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index,
                                reduction, want_grad=True)
    return loss, _write(grad, grad_out)


# --------------------------------------------------------------------------
# token statistics
# --------------------------------------------------------------------------

def token_stats(logits, target=None, *, axis=-1, temperature=1.0, ignore_index=None,
                n_threads=None):
    """Per-sample statistics of softmax rows, NumPy reference.

    Parameters
    ----------
    logits : array_like, (..., C, ...)
        Unnormalised scores; the class axis is ``axis``.
    target : array_like of int (logits.shape without axis), optional
        Class indices; gives ``logprob`` and ``rank``.
    axis : int
        The class axis.
    temperature : float, finite > 0, default 1
        ``T``: the statistics of ``z = x * dtype(1 / T)`` (the reciprocal
        rounded to the compute dtype); ``argmax`` and ``rank`` use the logits
        as given.
    ignore_index : int, optional
        Rows with this label get ``logprob`` 0 and ``rank`` -1.
    n_threads : ignored

    Returns
    -------
    TokenStats
        ``(lse, entropy, argmax, logprob, rank)``, each of shape
        ``logits.shape`` without ``axis``: ``lse``, ``entropy``, ``logprob`` in
        the compute dtype, ``argmax`` and ``rank`` int64; ``logprob`` and
        ``rank`` are ``None`` without a target.

    Notes
    -----
    ``lse = m + log1p(r)`` (``m = max z``, ``r = sum_{c != argmax} exp(z_c - m)``);
    ``entropy = sum_c p_c (lse - z_c)``, every term ``>= 0`` and a ``-inf``
    logit's term exactly 0; ``argmax`` the first index of the largest logit;
    ``logprob = log_softmax(z)_y``, bitwise
    ``-softmax_cross_entropy(logits, y, temperature=T, reduction="none")``;
    ``rank = #{c : x_c > x_y}``.  A row all ``-inf`` or with a NaN: ``lse``,
    ``entropy``, ``logprob`` NaN, ``argmax`` and ``rank`` -1; a row with
    ``+inf`` (no NaN): ``lse = +inf``, ``entropy`` and ``logprob`` NaN.
    Ignored rows: ``logprob`` 0, ``rank`` -1.  A label outside ``[0, C)`` (not
    ``ignore_index``) raises ``xent.LabelError``.
    """
    logits = np.asarray(logits)
    cdt = _compute_dtype(logits.dtype)
    temp, _, _ = _check_extras(temperature, None, 0.0)
    x, moved_shape = _to_rows(logits.astype(cdt), axis)
    n, c = x.shape
    rows = np.arange(n)
    batch_shape = moved_shape[:-1]
    # order statistics on the logits as given (before the temperature), in
    # the compute dtype: 16-bit floats widen exactly; integer logits are
    # compared as the float64 values every function computes with
    order = x

    with np.errstate(all="ignore"):
        z = _temperature(x, temp)
        shifted, e, r, top, bad = _softmax_parts(z)
        m = z.max(axis=1)
        log_norm = np.log1p(r)                            # lse - m
        lse = np.where(bad, m, m + log_norm)              # +inf stays, NaN stays
        lse = np.where(m == -np.inf, np.nan, lse).astype(cdt)
        p = e / (1 + r)[:, None]
        nll = log_norm[:, None] - shifted                 # lse - z_c >= 0
        entropy = np.where(p != 0, p * nll, 0).sum(axis=1)
        entropy = np.where(bad, np.nan, entropy).astype(cdt)

        no_max = np.isnan(order).any(axis=1) | (order == -np.inf).all(axis=1)
        argmax = np.where(no_max, -1, order.argmax(axis=1)).astype(np.int64)

    if target is None:
        return TokenStats(lse.reshape(batch_shape), entropy.reshape(batch_shape),
                          argmax.reshape(batch_shape))

    target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target: token_stats takes class indices (an integer dtype), "
                        f"got {target.dtype}")
    if target.shape != batch_shape:
        raise ValueError(f"target: expected shape {batch_shape} (logits without axis), "
                         f"got {target.shape}")
    y, ignored = _check_labels(target.reshape(n), c, ignore_index)
    rank = (order > order[rows, y][:, None]).sum(axis=1)
    rank = np.where(ignored | (argmax == -1), -1, rank).astype(np.int64)
    ce = _softmax_ce(logits, target, axis, None, None, ignore_index, 0.0, temp, None, 0.0,
                     "none", want_grad=False)
    logprob = np.where(ignored.reshape(batch_shape), 0, -ce).astype(cdt)
    return TokenStats(lse.reshape(batch_shape), entropy.reshape(batch_shape),
                      argmax.reshape(batch_shape), logprob, rank.reshape(batch_shape))


# --------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------

def _psi(s):
    """``exp(s) - 1 - s >= 0`` (float64), by its series where that would cancel."""
    with np.errstate(all="ignore"):
        small = np.abs(s) < 0.5
        t = np.where(small, s, 0.0)
        series, term = np.zeros_like(t), t * t / 2
        for k in range(3, 24):
            series, term = series + term, term * t / k
        return np.where(small, series, np.expm1(s) - s)


def _chi(u):
    """``u - log1p(u) >= 0`` for ``u > -1`` (float64), by its series near 0."""
    with np.errstate(all="ignore"):
        small = np.abs(u) < 0.25
        t = np.where(small, u, 0.0)
        series = np.zeros_like(t)
        for k in range(40, 1, -1):
            series = series * -t + 1.0 / k
        return np.where(small, t * t * series, u - np.log1p(u))


def _log_softmax64(x):
    """``(log_softmax(x), bad rows)`` of rows ``x``, in float64."""
    shifted, _, r, _, bad = _softmax_parts(x.astype(np.float64))
    return shifted - np.log1p(r)[:, None], bad


def _kl_rows(la, lb):
    """``KL(A || B)`` per row from float64 log-probabilities, as a sum of terms
    ``A psi(log B - log A) >= 0``, written ``B - A (1 + s)`` where ``s > 1``
    (no overflow where A underflows); a class that A masks adds B's mass
    there, one that only B masks makes it ``+inf``.  Corrected for the
    rounding of the log-probabilities' normalisers: with ``e = log(sum_c A_c
    exp(s_c))`` (0 in exact arithmetic), ``KL = sum_c A_c psi(s_c) - psi(e)``."""
    with np.errstate(all="ignore"):
        a, b = np.exp(la), np.exp(lb)
        s = lb - la
        amask, bmask = la == -np.inf, lb == -np.inf
        term = np.where(s > 1, b - a * (1 + s), a * _psi(s))
        term = np.where(amask, b, np.where(bmask, np.inf, term))
        em = np.where(s > 1, b - a, a * np.expm1(s))
        e = np.log1p(np.sum(np.where(amask, b, np.where(bmask, -a, em)), axis=1))
        kl = np.sum(term, axis=1)
        return np.where(np.isfinite(kl), np.maximum(kl - _psi(e), 0.0), kl)


def _divergence(logits, target_logits, axis, temperature, reverse, beta, sample_weight,
                ignore_index, target, reduction, want_grad):
    """Per-row divergences (and their gradient w.r.t. ``logits``), reduced."""
    logits, target_logits = np.asarray(logits), np.asarray(target_logits)
    if logits.shape != target_logits.shape:
        raise ValueError(f"target_logits: expected shape {logits.shape}, got {target_logits.shape}")
    cdt = np.promote_types(_compute_dtype(logits.dtype), _compute_dtype(target_logits.dtype))
    temp, _, _ = _check_extras(temperature, None, 0.0)
    _check_reduction(reduction)
    x, moved_shape = _to_rows(logits.astype(cdt), axis)
    z, _ = _to_rows(target_logits.astype(cdt), axis)
    n = x.shape[0]
    batch_shape = moved_shape[:-1]
    removed = np.zeros(n, bool)
    if target is not None:
        target = np.asarray(target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"target: expected class indices (an integer dtype), got {target.dtype}")
        _check_index_shape(target, batch_shape)
        _, removed = _check_labels(target.reshape(n), x.shape[1], ignore_index)
    elif ignore_index is not None:
        raise ValueError("ignore_index: needs a target")
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight).astype(cdt).reshape(n)
        removed = removed | (sw == 0)

    with np.errstate(all="ignore"):
        lp, bad_p = _log_softmax64(_temperature(x, temp))
        lq, bad_q = _log_softmax64(_temperature(z, temp))
        bad = bad_p | bad_q
        p, q = np.exp(lp), np.exp(lq)
        if beta is None:
            d = _kl_rows(lp, lq) if reverse else _kl_rows(lq, lp)
            if want_grad:
                if reverse:        # p (log p - log q - KL); NaN where KL is infinite
                    g = np.where(lp == -np.inf, 0.0, p * ((lp - lq) - d[:, None]))
                    g = np.where(np.isinf(d)[:, None], np.nan, g)
                else:              # p - q = q expm1(log p - log q) near p = q
                    s = lp - lq
                    g = np.where(np.abs(s) <= 1, q * np.expm1(s), p - q)
                    g = np.where(lq == -np.inf, p, np.where(lp == -np.inf, -q, g))
        else:
            r = lq - lp                                   # log q - log p
            near = np.abs(r) <= 30
            rn = np.where(near, r, 0.0)
            u, y = beta * np.expm1(rn), (1 - beta) * np.expm1(-rn)
            # log(p/m), log(q/m): log1p near r = 0, from the log-probabilities beyond
            lm = np.logaddexp(math.log(beta) + lq, math.log1p(-beta) + lp)
            lpm = np.where(near, -np.log1p(u), lp - lm)
            lqm = np.where(near, -np.log1p(y), lq - lm)
            term = np.where(near, (1 - beta) * p * _chi(u) + beta * q * _chi(y),
                            (1 - beta) * p * lpm + beta * q * lqm)
            kterm = np.where(near, p * _chi(u), beta * (q - p) + p * lpm)
            pmask, qmask = lp == -np.inf, lq == -np.inf
            term = np.where(pmask, -beta * math.log(beta) * q,
                            np.where(qmask, -(1 - beta) * math.log1p(-beta) * p, term))
            kterm = np.where(pmask, beta * q, np.where(qmask, p * (-beta - math.log1p(-beta)), kterm))
            d = np.sum(term, axis=1)
            if want_grad:
                k = np.sum(kterm, axis=1)
                lpm = np.where(qmask, -math.log1p(-beta), lpm)
                g = np.where(pmask, 0.0, (1 - beta) * p * (lpm - k[:, None]))
        d = np.where(bad, np.nan, d)
        s = np.ones(n) if sw is None else sw.astype(np.float64)
        loss = np.where(removed, 0.0, (s * d).astype(cdt)).astype(cdt)
        value, denom = _reduce_rows(loss, reduction, np.where(removed, 0.0, s))
        if reduction == "none":
            value = value.reshape(batch_shape)
        if not want_grad:
            return value
        scale = 1.0 if denom is None else (0.0 if denom == 0 else 1.0 / denom)
        g = np.where(bad[:, None], np.nan, g) * (s * scale / temp)[:, None]
        g = np.where(removed[:, None], 0.0, g)
        gdt = _grad_dtype(logits.dtype)
        return value, _from_rows(g.astype(gdt), moved_shape, axis)


def kl_divergence(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                  sample_weight=None, ignore_index=None, target=None, reduction="mean",
                  n_threads=None):
    """Kullback-Leibler divergence between the softmaxes of two sets of logits,
    NumPy reference.

    Parameters
    ----------
    logits : array_like, (..., C, ...)
        The first distribution's logits, ``p = softmax(logits / T)`` (the
        student's; the gradient is with respect to them).
    target_logits : array_like, logits.shape
        The second's, ``q = softmax(target_logits / T)`` (the teacher's).
    axis : int
        The class axis.
    temperature : float, finite > 0, default 1
        Both sets of logits are multiplied by ``dtype(1 / T)``; no ``T^2``.
    reverse : bool, default False
        False: ``KL(q || p) = sum_c q_c (log q_c - log p_c)``; True: ``KL(p || q)``.
    sample_weight : array_like (logits.shape without axis), optional
    ignore_index : int, optional
        Rows whose ``target`` equals it are dropped (needs ``target``).
    target : array_like of int (logits.shape without axis), optional
        Class indices, read only for ``ignore_index``; checked as labels.
    reduction : {"none", "sum", "mean"}
        ``"mean"`` divides by the sum of the sample weights of the rows kept
        (PyTorch's ``"batchmean"``).
    n_threads : ignored

    Returns
    -------
    float, or ndarray (logits.shape without axis) for ``"none"``
        ``s_i d_i`` per row for ``"none"`` (compute dtype).

    Notes
    -----
    The compute dtype is that of the two logits' compute dtypes promoted
    (float32 for 16-bit floats, float64 for integers); the logits are
    scaled by the temperature in it, then the log-softmaxes and the terms are
    taken in float64 and each row's divergence rounded to it once.  With
    ``s_c = log B_c - log A_c`` for ``KL(A || B)``, the terms
    ``A_c (exp(s_c) - 1 - s_c)`` are never negative (a class that A masks adds
    ``B_c``; one that only B masks gives ``+inf``), corrected for the rounding
    of the normalisers.  A row of either that is all ``-inf``, holds a
    ``+inf`` or a NaN gives NaN; removed rows (ignored, or a sample weight of
    0) give 0.
    """
    return _divergence(logits, target_logits, axis, temperature, bool(reverse), None,
                       sample_weight, ignore_index, target, reduction, want_grad=False)


@fill(grad_out=GRAD_OUT)
def kl_divergence_with_grad(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                            sample_weight=None, ignore_index=None, target=None,
                            reduction="mean", n_threads=None, grad_out=None):
    """Kullback-Leibler divergence and its gradient with respect to ``logits``.

    Parameters are those of :func:`kl_divergence`, plus

    {grad_out}
    loss : float, or ndarray for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)

    Notes
    -----
    ``grad = (p - q) / T`` (forward) or ``p (log p - log q - KL) / T``
    (``reverse``, NaN where ``KL`` is infinite), times ``s_i`` and divided by
    the mean's denominator; removed rows get 0.
    """
    loss, grad = _divergence(logits, target_logits, axis, temperature, bool(reverse), None,
                             sample_weight, ignore_index, target, reduction, want_grad=True)
    return loss, _write(grad, grad_out)


def _check_beta(beta):
    b = float(beta)
    if not 0 < b < 1:
        raise ValueError(f"beta: expected a value in (0, 1), got {beta!r}")
    return b


def js_divergence(logits, target_logits, *, beta=0.5, axis=-1, temperature=1.0,
                  sample_weight=None, reduction="mean", n_threads=None):
    """Generalised Jensen-Shannon divergence between the softmaxes of two sets
    of logits, NumPy reference.

    Parameters
    ----------
    logits, target_logits, axis, temperature, sample_weight, reduction, n_threads
        As in :func:`kl_divergence`.
    beta : float in (0, 1), default 0.5
        The weight of ``q``: ``JS = beta KL(q || m) + (1 - beta) KL(p || m)``,
        ``m = beta q + (1 - beta) p``.

    Returns
    -------
    float, or ndarray (logits.shape without axis) for ``"none"``

    Notes
    -----
    Per class, ``(1 - beta) p chi(u) + beta q chi(y)`` with
    ``u = m / p - 1 = beta expm1(r)``, ``y = m / q - 1``, ``r = log q - log p``
    and ``chi(u) = u - log1p(u) >= 0``; ``-beta log(beta) q`` where ``p = 0``,
    ``-(1 - beta) log(1 - beta) p`` where ``q = 0``.
    """
    return _divergence(logits, target_logits, axis, temperature, False, _check_beta(beta),
                       sample_weight, None, None, reduction, want_grad=False)


@fill(grad_out=GRAD_OUT)
def js_divergence_with_grad(logits, target_logits, *, beta=0.5, axis=-1, temperature=1.0,
                            sample_weight=None, reduction="mean", n_threads=None,
                            grad_out=None):
    """Jensen-Shannon divergence and its gradient with respect to ``logits``.

    Parameters are those of :func:`js_divergence`, plus

    {grad_out}
    loss : float, or ndarray for ``"none"``
    grad : ndarray (logits.shape), dtype of logits (float64 for integers)

    Notes
    -----
    ``grad = (1 - beta) p (log(p / m) - KL(p || m)) / T``, times ``s_i`` and
    divided by the mean's denominator.
    """
    loss, grad = _divergence(logits, target_logits, axis, temperature, False, _check_beta(beta),
                             sample_weight, None, None, reduction, want_grad=True)
    return loss, _write(grad, grad_out)


# --------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------

def _reduced_axes(axis, ndim):
    """``axis`` (None, an int or a tuple of ints) as a sorted tuple of axes >= 0."""
    if axis is None:
        return tuple(range(ndim))
    axes = []
    for ax in (axis if isinstance(axis, tuple) else (axis,)):
        if isinstance(ax, (bool, np.bool_)) or not isinstance(ax, (int, np.integer)):
            raise ValueError(f"axis: expected None, an int or a tuple of ints, got {axis!r}")
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis: {ax} is out of range for {ndim} dimension(s)")
        if ax % ndim in axes:
            raise ValueError(f"axis: repeats axis {ax % ndim} in {axis!r}")
        axes.append(int(ax) % ndim)
    return tuple(sorted(axes))


def _weighted_lse_rows(z, w):
    """``(log|S|, sign(S))`` of ``S = sum_c w_c exp(z_c)`` for every row of ``z`` (N, n).

    Entries with ``w == 0`` contribute nothing (even where ``z`` is ``+inf``
    or NaN).  With ``m`` the max of the other entries, ``M`` the sum of ``w``
    over the entries equal to ``m`` and ``R`` the sum of ``w exp(z - m)``
    over the rest: ``log|S| = m + log|M| + log|1 + R/M|`` (``log1p`` near
    ``R/M = 0``; SciPy's method), or ``m + log|R|`` when ``M == 0``.
    """
    include = w != 0                                       # NaN weights included
    z = np.where(include, z, -np.inf)
    m = z.max(axis=1)
    finite = np.isfinite(m)
    m0 = np.where(finite, m, 0)
    at_max = (z == m0[:, None]) & finite[:, None]
    big_m = np.where(at_max, w, 0).sum(axis=1)
    # an infinite weight keeps its term infinite where exp(z - m) underflows
    terms = np.where(np.isinf(w) & (z > -np.inf), w, w * np.exp(z - m0[:, None]))
    rest = np.where(at_max | ~include, 0, terms).sum(axis=1)
    # infinite parts (weights of +-inf): their sum, not inf / inf
    inf_part = np.isinf(big_m) | np.isinf(rest)
    s = np.where(inf_part, 0, rest / np.where(inf_part, 1, big_m))
    # log|1 + s|: log1p(s) for s >= -1, log1p(-s - 2) = log(-(1 + s)) below
    log_1ps = np.where(s >= -1, np.log1p(s), np.log1p(-s - 2))
    out = np.where(big_m != 0, m + np.log(np.abs(big_m)) + log_1ps,
                   m + np.log(np.abs(rest)))
    sign = np.where(big_m != 0, np.sign(big_m) * np.sign(1 + s), np.sign(rest))
    out = np.where(sign == 0, -np.inf, out)               # the sum is exactly 0
    total = big_m + rest                                  # inf, -inf or NaN (inf - inf)
    out = np.where(inf_part, np.where(np.isnan(total), np.nan, np.inf), out)
    sign = np.where(inf_part, np.sign(total), sign)

    # Rows without a finite max: all excluded or -inf (S = 0), or a +inf
    # (S = +inf, -inf, or NaN when +inf has weights of both signs).
    pos_inf = ((z == np.inf) & (w > 0)).any(axis=1)
    neg_inf = ((z == np.inf) & (w < 0)).any(axis=1)
    out = np.where(m == -np.inf, -np.inf, out)
    sign = np.where(m == -np.inf, 0, sign)
    out = np.where(m == np.inf, np.where(pos_inf & neg_inf, np.nan, np.inf), out)
    sign = np.where(m == np.inf, np.where(pos_inf & neg_inf, np.nan,
                                          np.where(pos_inf, 1, -1)), sign)
    nan = np.isnan(m) | np.isnan(w).any(axis=1)
    return np.where(nan, np.nan, out), np.where(nan, np.nan, sign)


def logsumexp(x, axis=-1, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(x)))`` over ``axis``, max-shifted (SciPy's options).

    Parameters
    ----------
    x : array_like, real floating or integer
    axis : int, tuple of ints or None, default -1
        The axes reduced (None: all).  xent's default is the last axis
        (SciPy's is None).
    b : array_like, broadcastable against ``x``, optional
        Weights, may be negative or 0 (an entry with ``b == 0`` contributes
        nothing, even where ``x`` is ``+inf`` or NaN); bool is a mask.
    keepdims : bool
        Keep the reduced axes, with length 1.
    return_sign : bool
        Also return the sign of the sum; without it a negative sum is NaN.

    Returns
    -------
    lse : ndarray (the broadcast shape without the reduced axes), compute dtype
        (float32 for float16, bfloat16 and float32, float64 otherwise; ``b``
        does not change it); a NumPy scalar when 0-d, as SciPy's.
    sign : same, only with ``return_sign``
        ``+1``, ``-1``, ``0`` (the sum is 0: ``lse = -inf``) or NaN.

    Notes
    -----
    Without ``b``: ``lse = m + log1p(sum_{c != argmax} exp(x_c - m))`` with
    ``m = max(x)``; a row of only ``-inf`` gives ``-inf``, a row with ``+inf``
    (and no NaN) ``+inf``, a row with NaN NaN.  With ``b`` (computed in the
    wider of the compute dtypes of ``x`` and ``b``, then rounded):
    ``m + log|M| + log|1 + R/M|`` with ``M`` the sum of ``b`` over the entries
    equal to ``m`` and ``R = sum b exp(x - m)`` over the others; ``+inf`` with
    weights of both signs gives NaN.  As ``scipy.special.logsumexp``: a 0-d
    ``x`` is 1-d, ``axis=()`` reduces nothing, ``x`` and ``b`` broadcast
    against each other.  An empty reduction gives ``-inf`` with sign 0 (SciPy
    gives sign -1 there).
    """
    x = np.asarray(x)
    cdt = _compute_dtype(x.dtype)
    shape = x.shape
    if b is not None:
        b = np.asarray(b)
        shape = np.broadcast_shapes(shape, b.shape)
    shape = shape or (1,)                                  # SciPy: a 0-d x is 1-d
    red = _reduced_axes(axis, len(shape))
    kept = tuple(i for i in range(len(shape)) if i not in red)
    n = math.prod(shape[i] for i in red)
    out_shape = (tuple(1 if i in red else shape[i] for i in range(len(shape))) if keepdims
                 else tuple(shape[i] for i in kept))

    def rows(a, dtype):
        """``a`` broadcast to ``shape``, reduced axes last and flattened: (N, n)."""
        a = np.broadcast_to(a.astype(dtype).reshape(a.shape or (1,)), shape)
        return a.transpose(kept + red).reshape(-1, n)

    if n == 0:                                             # an empty sum is 0
        out = np.full(out_shape, -np.inf, cdt)
        sign = np.zeros(out_shape, cdt)
    elif b is None:
        xr = rows(x, cdt)
        with np.errstate(all="ignore"):
            _, _, r, _, bad = _softmax_parts(xr)
            m = xr.max(axis=1)
            out = np.where(bad, m, m + np.log1p(r)).astype(cdt)
        sign = np.where(np.isnan(out), np.nan, np.where(out == -np.inf, 0, 1)).astype(cdt)
    else:
        wdt = cdt if b.dtype.kind == "b" else np.promote_types(cdt, _compute_dtype(b.dtype))
        with np.errstate(all="ignore"):
            out, sign = _weighted_lse_rows(rows(x, wdt), rows(b, wdt))
        out, sign = out.astype(cdt), sign.astype(cdt)
        if not return_sign:
            out = np.where(sign < 0, np.nan, out).astype(cdt)
    out = out.reshape(out_shape)
    out = out[()] if out.ndim == 0 else out
    if not return_sign:
        return out
    sign = sign.reshape(out_shape)
    return out, (sign[()] if sign.ndim == 0 else sign)


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
