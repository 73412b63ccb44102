"""Public API of xent: the functions users call.

Each function checks its options (``xent._validate``, the one place of every
rule), then offers the call to the small-call path: a plain NumPy call of
one tile, already in the layout the kernels read, runs at once on the
calling thread (``xent._kernels.small_*``; what it does not recognise it
declines).  Otherwise ``xent._validate`` validates the arrays and builds the
record of the call, ``xent._dispatch`` runs it, and the result is shaped
here.  API, validation, dispatch, kernels: no step calls back.
"""

import functools
import math

import numpy as np

from . import _dispatch, _kernels, _validate
from ._docs import ROWWISE, fill
from ._validate import (LabelError, check_ignore_index, check_out, check_reduction, check_smoothing,
                        compute_dtype, grad_dtype, resolve_n_threads)

# reduction -> the small-call path's code
_MODE = {"mean": 0, "sum": 1, "none": 2}


def _quiet(fn):
    """Run `fn` with NumPy's floating-point warnings off: a cast that
    overflows (a float64 weight of 1e300 for float32 logits) or a long double
    out of float64's range gives the inf or NaN that the inputs imply, and the
    caller gets that value without a warning.  Only the general paths need
    it; the small-call path does no NumPy arithmetic."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _reduce(total, den, reduction):
    if reduction == "sum":
        return float(total)
    return float(total) / den if den != 0 else math.nan


def _shaped_grad(call):
    """The (N, C) gradient (softmax) of a general call shaped like the
    logits: grad_out, or a new array of the gradient's dtype."""
    g = call.out.reshape(call.moved_shape)
    if call.axis != -1 and call.axis != len(call.moved_shape) - 1:
        g = np.moveaxis(g, -1, call.axis)
    if call.grad_out is not None:
        if not call.direct:
            np.copyto(call.grad_out, g, casting="unsafe")
        return call.grad_out
    if g.dtype != call.grad_dtype:
        g = g.astype(call.grad_dtype)
    return g


def _check_small_out(out, name, inputs):
    """A small call's `out` / `grad_out` checked by the general path's rule,
    for the output dtype the general path would give; inputs[0] is the
    array it has the shape of and may be (in place).  Only the inputs that
    are ndarrays already: the small-call path takes no other (it declines
    the call, and the general path checks the arrays it makes of them, with
    the errors that name them)."""
    x_name, x = inputs[0]
    arrays = [(n, a) for n, a in inputs if type(a) is np.ndarray]
    check_out(out, name, x.shape, grad_dtype(x, compute_dtype(x, x_name)), arrays,
              alias_name=x_name)


def _loss_and_grad(call, want_grad):
    total = 0.0 if call.empty else _dispatch.run(call)
    if call.reduction == "none":
        loss = call.loss.reshape(call.loss_shape)
    else:
        loss = _reduce(total, call.den, call.reduction)
    return (loss, _shaped_grad(call)) if want_grad else loss


@_quiet
def _general_ce(logits, target, axis, weight, sample_weight, ignore_index, eps, reduction, nt,
                want_grad, grad_out):
    return _loss_and_grad(_validate.softmax_ce(logits, target, axis, weight, sample_weight,
                                               ignore_index, eps, reduction, nt, want_grad,
                                               grad_out), want_grad)


def _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index, label_smoothing,
                reduction, n_threads, want_grad, grad_out):
    reduction = check_reduction(reduction)
    eps = check_smoothing(label_smoothing)
    nt = resolve_n_threads(n_threads)
    if _dispatch.small_call(logits) and type(axis) is int and (axis == -1 or axis == 1):
        has_ignore, ignore = check_ignore_index(ignore_index)
        if grad_out is not None:
            _check_small_out(grad_out, "grad_out", [("logits", logits), ("target", target),
                                                    ("weight", weight),
                                                    ("sample_weight", sample_weight)])
        res = _kernels.small_index(logits, target, _MODE[reduction], want_grad, grad_out, weight,
                                   sample_weight, has_ignore, ignore, eps)
        if res is NotImplemented and sample_weight is None and ignore_index is None:
            res = _kernels.small_dense(logits, target, _MODE[reduction], want_grad, False,
                                       grad_out, weight, None, eps)
        if res is not NotImplemented:
            return res
    return _general_ce(logits, target, axis, weight, sample_weight, ignore_index, eps, reduction,
                       nt, want_grad, grad_out)


@_quiet
def _general_bce(logits, target, weight, pos_weight, eps, reduction, nt, want_grad, grad_out):
    return _loss_and_grad(_validate.bce(logits, target, weight, pos_weight, eps, reduction, nt,
                                        want_grad, grad_out), want_grad)


def _bce(logits, target, weight, pos_weight, label_smoothing, reduction, n_threads, want_grad,
         grad_out):
    reduction = check_reduction(reduction)
    eps = check_smoothing(label_smoothing)
    nt = resolve_n_threads(n_threads)
    if _dispatch.small_call(logits):
        if grad_out is not None:
            _check_small_out(grad_out, "grad_out", [("logits", logits), ("target", target),
                                                    ("weight", weight), ("pos_weight", pos_weight)])
        # a bool target (a multi-label mask) as the logits' dtype: 0 and 1
        # exactly, what the general path makes of it (32 x 10: ~11 -> ~2 us)
        small_target = target
        if type(target) is np.ndarray and target.dtype == np.bool_ and logits.dtype.char in "fd":
            small_target = target.astype(logits.dtype)
        res = _kernels.small_dense(logits, small_target, _MODE[reduction], want_grad, True,
                                   grad_out, weight, pos_weight, eps)
        if res is not NotImplemented:
            return res
    return _general_bce(logits, target, weight, pos_weight, eps, reduction, nt, want_grad,
                        grad_out)


_MODES = {"logsumexp": 0, "log_softmax": 1, "softmax": 2}


@_quiet
def _general_softmax(x, axis, out, mode, nt):
    call = _validate.softmax_rows(x, axis, out, mode, nt)
    _dispatch.run(call)
    return call.loss.reshape(call.loss_shape) if mode == 0 else _shaped_grad(call)


def _softmax_family(x, axis, out, mode, n_threads=None):
    nt = resolve_n_threads(n_threads)
    if _dispatch.small_call(x) and type(axis) is int and (axis == -1 or axis == 1):
        if out is not None:
            _check_small_out(out, "out", [("x", x)])
        res = _kernels.small_softmax(x, mode, out)
        if res is not NotImplemented:
            return res
    return _general_softmax(x, axis, out, mode, nt)


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
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, reduction, n_threads, True, grad_out)


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
    return _bce(logits, target, weight, pos_weight, label_smoothing, reduction, n_threads,
                True, grad_out)



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


@fill(rowwise=ROWWISE)
def log_softmax(x, axis=-1, out=None):
    """``x - logsumexp(x, axis)``, stably.

    {rowwise}

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


@fill(rowwise=ROWWISE)
def softmax(x, axis=-1, out=None):
    """``exp(x) / sum(exp(x), axis)``, stably.

    {rowwise}

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

