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
from ._types import ReductionState, TokenStats
from ._validate import (LabelError, check_alpha, check_beta, check_ignore_index, check_nonnegative,
                        check_out,
                        check_positive, check_reduction, check_smoothing, compute_dtype, grad_dtype,
                        resolve_n_threads)

# reduction -> the small-call path's code ("state": the general path only)
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
    if call.reduction == "state":
        call.state = np.empty(_kernels.RS_WORDS, dtype=np.int64)
    total = 0.0 if call.empty else _dispatch.run(call)
    if call.reduction == "none":
        loss = call.loss.reshape(call.loss_shape)
    elif call.reduction == "state":
        loss = ReductionState._from_kernel(call.state, call.den_exact)
    else:
        loss = _reduce(total, call.den, call.reduction)
    return (loss, _shaped_grad(call)) if want_grad else loss


@_quiet
def _general_ce(logits, target, axis, weight, sample_weight, ignore_index, eps, reduction, nt,
                want_grad, grad_out, **options):
    return _loss_and_grad(_validate.softmax_ce(logits, target, axis, weight, sample_weight,
                                               ignore_index, eps, reduction, nt, want_grad,
                                               grad_out, **options), want_grad)


def _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index, label_smoothing,
                reduction, n_threads, want_grad, grad_out, temperature=1.0, softcap=None,
                z_loss=0.0):
    reduction = check_reduction(reduction)
    eps = check_smoothing(label_smoothing)
    nt = resolve_n_threads(n_threads)
    if not (type(temperature) is float and temperature == 1.0 and softcap is None
            and type(z_loss) is float and z_loss == 0.0):
        temp = check_positive(temperature, "temperature")
        cap = check_positive(softcap, "softcap", allow_none=True)
        zl = check_nonnegative(z_loss, "z_loss")
        if temp != 1.0 or cap != 0.0 or zl != 0.0:
            return _general_ce(logits, target, axis, weight, sample_weight, ignore_index, eps,
                               reduction, nt, want_grad, grad_out, temperature=temp,
                               softcap=cap, z_loss=zl)
    if (_dispatch.small_call(logits) and reduction != "state" and type(axis) is int
            and (axis == -1 or axis == 1)):
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
    if _dispatch.small_call(logits) and reduction != "state":
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
                          ignore_index=None, label_smoothing=0.0, temperature=1.0, softcap=None,
                          z_loss=0.0, reduction="mean", n_threads=None):
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
    temperature : float > 0, default 1
        The logits are scaled by it first: multiplied by ``1 / temperature``
        rounded to the compute dtype (exactly ``logits / temperature`` for a
        power of two, else within an ulp of it).
    softcap : float > 0, optional
        Then soft-capped: ``softcap * tanh(logits / softcap)`` (Gemma 2);
        ``-inf`` logits stay masks.
    z_loss : float >= 0, default 0
        Adds ``z_loss * lse_i**2`` to each row's loss (PaLM's auxiliary
        loss), times its sample weight but not its class weight; ignored rows
        get none.
    reduction : {"mean", "sum", "none", "state"}, default "mean"
        "sum" is the exact sum of the per-sample losses that "none" returns,
        rounded once to float64 (``math.fsum`` of them); "mean" divides it
        by the denominator's exact sum, rounded once.  "state" returns both
        exact sums as an :class:`xent.ReductionState`, to merge with the
        states of other chunks of rows (its gradient is the sum's).
    n_threads : int, optional
        None: OpenMP's default (``OMP_NUM_THREADS``, threadpoolctl); -1: all
        cores; or a count >= 1.  The result does not depend on it, bit for bit.

    Returns
    -------
    loss : float, ndarray (per-sample loss shape) or ReductionState
        A Python float for "mean" and "sum"; the per-sample losses
        ``s_i * l_i`` in the compute dtype for "none"; the exact state for
        "state".

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

    With `temperature`, `softcap` and `z_loss`, in that order:
    ``z = x * fl(1 / T)`` (the reciprocal rounded to the compute dtype),
    ``z' = c tanh(z / c)`` (rounded once; ``-inf`` stays ``-inf``, ``+inf``
    gives ``c``), the loss above on ``z'``, plus ``s_i z_loss lse(z'_i)^2`` per
    kept row.  So ``temperature=T`` gives exactly the loss of
    ``logits * fl(1 / T)``, which is ``logits / T`` for a power of two.

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
                       label_smoothing, reduction, n_threads, False, None, temperature, softcap,
                       z_loss)


def softmax_cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                                    ignore_index=None, label_smoothing=0.0, temperature=1.0,
                                    softcap=None, z_loss=0.0, reduction="mean", n_threads=None,
                                    grad_out=None):
    """Softmax cross-entropy and its gradient with respect to the logits, in one sweep.

    Parameters
    ----------
    logits, target, axis, weight, sample_weight, ignore_index, label_smoothing, temperature, softcap, z_loss, reduction, n_threads
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
    an all-zero gradient.  `z_loss` adds ``2 s_i z_loss lse_i softmax`` to a
    row's gradient; `softcap` multiplies it by ``1 - tanh(z / c)^2``
    (computed as ``4 e / (1 + e)^2``, ``e = exp(-2|z / c|)``, no cancellation)
    and `temperature` divides it by ``T``.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.softmax_cross_entropy_with_grad(np.zeros((1, 4)), np.array([1]))
    >>> round(loss, 6), grad.round(3).tolist()
    (1.386294, [[0.25, -0.75, 0.25, 0.25]])
    """
    return _softmax_ce(logits, target, axis, weight, sample_weight, ignore_index,
                       label_smoothing, reduction, n_threads, True, grad_out, temperature,
                       softcap, z_loss)


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
    reduction : {"mean", "sum", "none", "state"}, default "mean"
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



def _lse_last(a):
    """The kernel's log-sum-exp over the last axis of `a`."""
    return _softmax_family(a, -1, None, _MODES["logsumexp"])


def logsumexp(x, axis=-1, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(x), axis))``, stably, with :func:`scipy.special.logsumexp`'s options.

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
    axis : int, tuple of ints or None, default -1
        The axes to reduce (None: all).  SciPy's default is None; xent's is
        the last axis.
    b : array_like, broadcastable with `x`, optional
        Weights of the exponentials; entries with ``b == 0`` contribute
        nothing, negative ones are subtracted.
    keepdims : bool, default False
        Keep the reduced axes, with length 1.
    return_sign : bool, default False
        Also return the sign of the sum (for a negative `b`); without it a
        negative sum gives NaN.

    Returns
    -------
    lse : ndarray or scalar, shape = x.shape without `axis`
        In the compute dtype (float32 for 16-bit and float32 `x`); a NumPy
        scalar when every axis is reduced, as SciPy.
    sign : ndarray or scalar
        With `return_sign`: +1, -1, or 0 where the sum is 0.

    Notes
    -----
    ``m + log1p(sum_{x_j < m} exp(x_j - m) + ties - 1)``, ``m = max(x)``,
    as :func:`scipy.special.logsumexp` for special rows (all ``-inf`` gives
    ``-inf``, a ``+inf`` gives ``+inf``, a NaN gives NaN).  The reduced axes
    are moved last and flattened, so one kernel call reduces them.  With
    `b`: ``x + log|b|`` in float64, the positive and negative parts each
    reduced by the kernel and combined as ``max(p, q) + log1p(-exp(-|p - q|))``.

    Examples
    --------
    >>> import numpy as np, xent
    >>> xent.logsumexp(np.array([[1000.0, 1000.0], [0.0, -np.inf]])).round(6)
    array([1000.693147,    0.      ])
    >>> value, sign = xent.logsumexp(np.array([1.0, 2.0]), b=np.array([-1.0, 1.0]),
    ...                              return_sign=True)
    >>> round(float(value), 6), float(sign)
    (1.541325, 1.0)
    """
    if (type(axis) is int and b is None and keepdims is False and return_sign is False
            and type(x) is np.ndarray and x.ndim > 1 and -x.ndim <= axis < x.ndim
            and x.shape[axis]):
        return _softmax_family(x, axis, None, _MODES["logsumexp"])
    from ._logsumexp import logsumexp as general
    return general(x, axis, b, keepdims, return_sign, _lse_last)


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



@_quiet
def _general_stats(logits, target, axis, temp, ignore_index, nt):
    call = _validate.token_stats(logits, target, axis, temp, ignore_index, nt)
    _dispatch.run(call)
    shape = call.loss_shape

    def shaped(a):
        return None if a is None else a.reshape(shape)

    return TokenStats(shaped(call.loss), shaped(call.entropy), shaped(call.argmax),
                      shaped(call.logprob), shaped(call.rank))


def token_stats(logits, target=None, *, axis=-1, temperature=1.0, ignore_index=None,
                n_threads=None):
    """Per-token statistics of softmax rows in one read of the logits.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        Unnormalised scores; the classes lie along `axis`.
    target : array_like of int, shape = logits.shape without `axis`, optional
        Class indices; with them, `logprob` and `rank` are computed.
    axis : int, default -1
        The class axis.
    temperature : float > 0, default 1
        ``lse``, ``entropy`` and ``logprob`` are those of the scaled logits
        (one rounding, as in :func:`softmax_cross_entropy`).
    ignore_index : int, optional
        Rows whose target equals it get ``logprob`` 0 and ``rank`` -1 (their
        ``lse``, ``entropy`` and ``argmax`` are still computed).
    n_threads : int, optional
        As in :func:`softmax_cross_entropy`; the results do not depend on it.

    Returns
    -------
    TokenStats
        Named tuple of per-sample arrays: ``lse``, ``entropy`` (nats) and
        ``logprob`` in the compute dtype, ``argmax`` and ``rank`` int64;
        ``logprob`` and ``rank`` are None without a target.

    Raises
    ------
    xent.LabelError
        A class index outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        Float (or other non-integer) targets, a wrong kind of logits dtype.
    ValueError
        Shapes, `axis`, `temperature`, `n_threads`.

    Notes
    -----
    With ``z = logits / T``, ``m = max(z)`` and ``S = sum_c exp(z_c - m)``:
    ``lse = m + log(S)``; ``entropy = log(S) + sum_c p_c (m - z_c)``, a sum
    of terms that are never negative, so a near-one-hot row keeps its tiny
    entropy to full relative precision; ``logprob = z_y - lse``, bitwise
    ``-softmax_cross_entropy(logits, target, temperature=T, reduction="none")``.
    ``argmax`` (first index of the largest logit) and ``rank`` (the number of
    logits strictly greater than the target's: 0 is a top-1 hit, ``rank < k``
    a top-k hit) are taken on the logits as given.  ``-inf`` logits are masks
    (they add 0 to the entropy); a row that is all ``-inf`` or holds a NaN
    gives NaN floats, ``argmax`` and ``rank`` -1; a row with ``+inf`` gives
    ``lse = +inf`` and NaN entropy and log-probability.

    Examples
    --------
    >>> import numpy as np, xent
    >>> logits = np.array([[2.0, 1.0, -np.inf], [0.0, 0.0, 0.0]])
    >>> st = xent.token_stats(logits, np.array([1, 2]))
    >>> st.lse.round(6), st.entropy.round(6)
    (array([2.313262, 1.098612]), array([0.582203, 1.098612]))
    >>> st.argmax, st.rank, st.logprob.round(6)
    (array([0, 0]), array([1, 0]), array([-1.313262, -1.098612]))
    """
    nt = resolve_n_threads(n_threads)
    temp = check_positive(temperature, "temperature")
    return _general_stats(logits, target, axis, temp, ignore_index, nt)


def _focal_options(alpha, gamma, reduction, n_threads):
    return (check_reduction(reduction), check_alpha(alpha), check_nonnegative(gamma, "gamma"),
            resolve_n_threads(n_threads))


@_quiet
def _sigmoid_focal(logits, target, alpha, gamma, reduction, n_threads, want_grad, grad_out):
    reduction, (on, a), g, nt = _focal_options(alpha, gamma, reduction, n_threads)
    call = _validate.bce(logits, target, None, None, 0.0, reduction, nt, want_grad, grad_out,
                         focal=(on and a >= 0, a, g))
    return _loss_and_grad(call, want_grad)


def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, reduction="mean",
                       n_threads=None):
    """Sigmoid focal loss from logits (torchvision's ``sigmoid_focal_loss``), elementwise.

    Parameters
    ----------
    logits : array_like, any shape
        One logit per binary decision (detection, multi-label).
    target : array_like, shape = logits.shape
        Floats in [0, 1], or bool / integer 0 and 1.
    alpha : float, optional, default 0.25
        Weight of the positives, ``alpha_t = alpha t + (1 - alpha)(1 - t)``;
        None (or, as torchvision, a negative value) leaves the term out.
    gamma : float >= 0, default 2
        The focusing exponent; 0 gives the binary cross-entropy (times
        ``alpha_t``).
    reduction : {"mean", "sum", "none", "state"}, default "mean"
        "mean" divides by the number of elements.  torchvision's default is
        "none".
    n_threads : int, optional
        As in :func:`softmax_cross_entropy`.

    Returns
    -------
    loss : float or ndarray, shape = logits.shape
        Python float for "mean"/"sum" (float64 accumulation); elementwise
        losses in the compute dtype for "none".

    Notes
    -----
    ``l = alpha_t ce (1 - p_t)^gamma`` with ``p = sigmoid(x)``,
    ``ce = t softplus(-x) + (1 - t) softplus(x)`` and
    ``1 - p_t = p (1 - t) + (1 - p) t``.  In log space:
    ``(1 - p_t)^gamma = exp(gamma log(1 - p_t))`` with ``log(1 - p_t) =
    -softplus(x)`` for ``t = 1`` and ``-softplus(-x)`` for ``t = 0``, so a
    confident logit (``|x|`` in the hundreds) gives a finite loss and
    gradient, never NaN; terms with a zero coefficient contribute 0.

    Examples
    --------
    >>> import numpy as np, xent
    >>> x, t = np.array([3.0, -1.0, 0.5]), np.array([1.0, 0.0, 0.0])
    >>> round(xent.sigmoid_focal_loss(x, t, reduction="sum"), 6)
    0.30008
    """
    return _sigmoid_focal(logits, target, alpha, gamma, reduction, n_threads, False, None)


def sigmoid_focal_loss_with_grad(logits, target, *, alpha=0.25, gamma=2.0, reduction="mean",
                                 n_threads=None, grad_out=None):
    """Sigmoid focal loss and its gradient with respect to the logits.

    Parameters
    ----------
    logits, target, alpha, gamma, reduction, n_threads
        As in :func:`sigmoid_focal_loss`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array to write the gradient into; may be `logits` itself.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray, shape = logits.shape

    Notes
    -----
    ``dl/dx = alpha_t (1 - p_t)^gamma [(p - t) + gamma ce r (1 - 2t)]`` with
    ``r = p (1 - p) / (1 - p_t)`` (``p`` for ``t = 1``, ``1 - p`` for
    ``t = 0``); for hard targets ``p - t`` is ``-sigmoid(-x)`` or
    ``sigmoid(x)``, without cancellation.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.sigmoid_focal_loss_with_grad(np.array([0.0]), np.array([1.0]),
    ...                                                 reduction="sum")
    >>> round(loss, 6), grad.round(6).tolist()
    (0.043322, [-0.074572])
    """
    return _sigmoid_focal(logits, target, alpha, gamma, reduction, n_threads, True, grad_out)


@_quiet
def _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index, reduction,
                   n_threads, want_grad, grad_out):
    reduction, (_, a), g, nt = _focal_options(alpha, gamma, reduction, n_threads)
    call = _validate.softmax_ce(logits, target, axis, weight, None, ignore_index, 0.0, reduction,
                                nt, want_grad, grad_out, focal=(a, g))
    return _loss_and_grad(call, want_grad)


def softmax_focal_loss(logits, target, *, alpha=None, gamma=2.0, axis=-1, weight=None,
                       ignore_index=None, reduction="mean", n_threads=None):
    """Softmax (categorical) focal loss from logits, as Keras 3's ``CategoricalFocalCrossentropy``.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        Unnormalised scores; the classes lie along `axis`.
    target : array_like of int, shape = logits.shape without `axis`; or array_like of float, shape = logits.shape
        Class indices, or probabilities (one-hot or soft).
    alpha : float, optional
        A scalar factor (Keras's ``alpha``; its default is 0.25); None means 1.
    gamma : float >= 0, default 2
        The focusing exponent; 0 gives ``alpha`` times the cross-entropy.
    axis : int, default -1
    weight : array_like, shape (C,), optional
        Per-class weights: ``w_y`` multiplies a class-index row, ``w_c`` a
        probability term.
    ignore_index : int, optional
        Class-index targets only, as in :func:`softmax_cross_entropy`.
    reduction : {"mean", "sum", "none", "state"}, default "mean"
        "mean" divides by ``sum_i w_{y_i}`` over the rows not ignored (class
        indices, as cross-entropy) or by the row count (probabilities).
    n_threads : int, optional

    Returns
    -------
    loss : float or ndarray, shape = per-sample loss shape

    Notes
    -----
    Class indices: ``l_i = -alpha w_y (1 - p_y)^gamma log p_y``; probabilities:
    ``l_i = -alpha sum_c w_c t_c (1 - p_c)^gamma log p_c``, ``p = softmax(x)``.
    Keras clips ``p`` to ``[1e-7, 1 - 1e-7]``, which bounds its loss near
    16.1 per unit of target mass; xent does not clip.  In log space:
    ``log p_y = (x_y - m) - log(sum_c exp(x_c - m))`` and ``1 - p_y`` is the
    other classes' share of the sum, without cancellation, so confident rows
    (either way) give finite values, never NaN.

    Examples
    --------
    >>> import numpy as np, xent
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> xent.softmax_focal_loss(logits, np.array([0, 2]), reduction="none").round(6)
    array([0.004144, 0.488272])
    """
    return _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index, reduction,
                          n_threads, False, None)


def softmax_focal_loss_with_grad(logits, target, *, alpha=None, gamma=2.0, axis=-1, weight=None,
                                 ignore_index=None, reduction="mean", n_threads=None,
                                 grad_out=None):
    """Softmax focal loss and its gradient with respect to the logits.

    Parameters
    ----------
    logits, target, alpha, gamma, axis, weight, ignore_index, reduction, n_threads
        As in :func:`softmax_focal_loss`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array to write the gradient into; may be `logits` itself.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray, shape = logits.shape

    Notes
    -----
    One term ``-(1 - p_c)^gamma log p_c`` has the gradient
    ``K_c (softmax - onehot_c)`` with ``K_c = (1 - p_c)^gamma (1 + gamma p_c rho_c)``
    and ``rho_c = -log p_c / (1 - p_c) >= 1``: every part non-negative, and
    the target entry ``-K_c (1 - p_c)`` has no cancellation.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.softmax_focal_loss_with_grad(np.zeros((1, 2)), np.array([0]))
    >>> round(loss, 6), grad.round(6).tolist()
    (0.173287, [[-0.298287, 0.298287]])
    """
    return _softmax_focal(logits, target, alpha, gamma, axis, weight, ignore_index, reduction,
                          n_threads, True, grad_out)


@_quiet
def _divergence(logits, target_logits, axis, temperature, sample_weight, ignore_index, target,
                reduction, n_threads, want_grad, grad_out, mode, beta=0.5):
    reduction = check_reduction(reduction)
    nt = resolve_n_threads(n_threads)
    temp = check_positive(temperature, "temperature")
    call = _validate.divergence(logits, target_logits, axis, temp, sample_weight, ignore_index,
                                target, reduction, nt, want_grad, grad_out, mode, beta)
    return _loss_and_grad(call, want_grad)


def kl_divergence(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                  sample_weight=None, ignore_index=None, target=None, reduction="mean",
                  n_threads=None):
    """Kullback-Leibler divergence between the softmaxes of two sets of logits.

    With ``p = softmax(logits / T)`` and ``q = softmax(target_logits / T)``,
    per row ``KL(q || p) = sum_c q_c (log q_c - log p_c)``: the distillation
    loss of a student (`logits`) against a teacher (`target_logits`).  Both
    arrays are read once; no log-probabilities are formed.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        The student's unnormalised scores; the classes lie along `axis`.
    target_logits : array_like, shape = logits.shape
        The teacher's (constants: the gradient is with respect to `logits`).
    axis : int, default -1
        The class axis.
    temperature : float > 0, default 1
        Both sets of logits are divided by it (as ``x * (1 / T)``, the
        reciprocal rounded to the compute dtype).  No ``T**2`` factor: scale
        the result yourself if you want one.
    reverse : bool, default False
        True gives ``KL(p || q) = sum_c p_c (log p_c - log q_c)``.
    sample_weight : array_like, shape = logits.shape without `axis`, optional
        Multiplies each row's divergence.
    ignore_index : int, optional
        Rows whose `target` equals it are dropped (padded positions of a
        sequence): divergence 0, gradient 0, not counted in the mean.
    target : array_like of int, shape = logits.shape without `axis`, optional
        Class indices, read only to compare with `ignore_index` (and checked
        as labels: each in ``[0, C)`` or `ignore_index`).
    reduction : {"mean", "sum", "none", "state"}, default "mean"
        "none" returns ``s_i d_i`` per row; "sum" their sum; "mean" divides
        it by the number of rows kept (the sum of their sample weights):
        PyTorch's ``reduction="batchmean"``, not its ``"mean"``, which divides
        by the number of elements.
    n_threads : int, optional
        As in :func:`softmax_cross_entropy`; the results do not depend on it.

    Returns
    -------
    loss : float or ndarray, shape = logits.shape without `axis`
        A float for "mean" and "sum"; for "none", an array of the compute
        dtype (both logits' promoted; float32 for 16-bit floats).

    Raises
    ------
    xent.LabelError
        A `target` label outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        A wrong kind of dtype (logits, target_logits, non-integer target).
    ValueError
        Shapes, `axis`, `temperature`, `reduction`, `n_threads`, or
        `ignore_index` without `target`.

    Notes
    -----
    A sum of terms that are never negative, so near-identical rows keep
    their tiny divergence to full relative precision: with
    ``s_c = log p_c - log q_c``, ``q_c (log q_c - log p_c) = q_c (exp(s_c) -
    1 - s_c) - (p_c - q_c)``, and the last parts sum to 0 over the row.  The
    terms come from each row's maximum and log-sum-exp, computed in one
    sweep of each array (in double precision), and ``exp(s) - 1 - s`` by its
    series where it would cancel.

    Masks: a class that is ``-inf`` in both contributes 0; ``q_c = 0``
    contributes 0; ``p_c = 0`` where ``q_c > 0`` gives ``+inf`` (with a
    finite gradient).  A row of either array that is all ``-inf``, holds a
    ``+inf`` or a NaN gives NaN.

    Examples
    --------
    >>> import numpy as np, xent
    >>> student = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    >>> teacher = np.array([[3.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    >>> xent.kl_divergence(student, teacher, reduction="none").round(6)
    array([0.115611, 0.      ])
    >>> round(xent.kl_divergence(student, teacher), 6)
    0.057806
    """
    return _divergence(logits, target_logits, axis, temperature, sample_weight, ignore_index,
                       target, reduction, n_threads, False, None, 1 if reverse else 0)


def kl_divergence_with_grad(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                            sample_weight=None, ignore_index=None, target=None,
                            reduction="mean", n_threads=None, grad_out=None):
    """KL divergence and its gradient with respect to `logits` (the student).

    Parameters
    ----------
    logits, target_logits, axis, temperature, reverse, sample_weight, ignore_index, target, reduction, n_threads
        As in :func:`kl_divergence`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array to write the gradient into; may be `logits` itself.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray, shape = logits.shape
        The dtype of `logits` (float64 for integers); for "none", the
        gradient of the sum of the per-row values.

    Notes
    -----
    Forward: ``(p - q) / T``, computed as ``q (exp(s) - 1) / T`` with
    ``s = log p - log q`` (its series near 0), so entries where the two
    distributions agree are not a difference of near-equal numbers: it is
    the soft-target cross-entropy's gradient ``p - q`` (the teacher's
    entropy, the other part of the divergence, is constant in the student).
    Reverse: ``p (log p - log q - KL(p || q)) / T``; NaN where the reverse
    divergence is infinite.  Each row's gradient is times its sample weight,
    divided by the mean's denominator for "mean"; dropped rows get 0.

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.kl_divergence_with_grad(np.zeros((1, 2)), np.array([[1.0, 0.0]]))
    >>> round(loss, 6), grad.round(6).tolist()
    (0.110944, [[-0.231059, 0.231059]])
    """
    return _divergence(logits, target_logits, axis, temperature, sample_weight, ignore_index,
                       target, reduction, n_threads, True, grad_out, 1 if reverse else 0)


def js_divergence(logits, target_logits, *, beta=0.5, axis=-1, temperature=1.0,
                  sample_weight=None, reduction="mean", n_threads=None):
    """Generalised Jensen-Shannon divergence between the softmaxes of two sets of logits.

    ``JS = beta KL(q || m) + (1 - beta) KL(p || m)`` per row, with
    ``m = beta q + (1 - beta) p``, ``p = softmax(logits / T)`` and
    ``q = softmax(target_logits / T)``; ``beta = 0.5`` is the symmetric
    Jensen-Shannon divergence, at most ``log 2``.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        Unnormalised scores of ``p``; the gradient is with respect to them.
    target_logits : array_like, shape = logits.shape
        Those of ``q``.
    beta : float, default 0.5
        The weight of ``q`` in ``m``, strictly between 0 and 1.
    axis, temperature, sample_weight, reduction, n_threads
        As in :func:`kl_divergence` ("mean" divides by the number of rows,
        or the sum of their sample weights).

    Returns
    -------
    loss : float or ndarray, shape = logits.shape without `axis`

    Raises
    ------
    TypeError
        A wrong kind of dtype.
    ValueError
        Shapes, `axis`, `beta` outside (0, 1), `temperature`, `reduction`,
        `n_threads`.

    Notes
    -----
    Per class, ``(1 - beta) p log(p / m) + beta q log(q / m) >= 0``,
    computed as ``(1 - beta) p chi(m/p - 1) + beta q chi(m/q - 1)`` with
    ``chi(u) = u - log1p(u)`` (its series near 0) and ``m/p - 1 =
    beta expm1(log q - log p)``: no term cancels.  ``log q - log p`` uses the
    difference of the rows' log-sum-exps refined by one sweep over the
    terms ``p (exp(r) - 1)``, whose rounding scales with the divergence.  A
    class that only ``p`` masks adds ``-beta log(beta) q``; one that only
    ``q`` masks, ``-(1 - beta) log(1 - beta) p``.

    Examples
    --------
    >>> import numpy as np, xent
    >>> p_logits = np.array([[0.0, -np.inf], [1.0, 2.0]])
    >>> q_logits = np.array([[-np.inf, 0.0], [1.0, 2.0]])
    >>> xent.js_divergence(p_logits, q_logits, reduction="none").round(6)
    array([0.693147, 0.      ])
    """
    return _divergence(logits, target_logits, axis, temperature, sample_weight, None, None,
                       reduction, n_threads, False, None, 2, check_beta(beta))


def js_divergence_with_grad(logits, target_logits, *, beta=0.5, axis=-1, temperature=1.0,
                            sample_weight=None, reduction="mean", n_threads=None,
                            grad_out=None):
    """Jensen-Shannon divergence and its gradient with respect to `logits`.

    Parameters
    ----------
    logits, target_logits, beta, axis, temperature, sample_weight, reduction, n_threads
        As in :func:`js_divergence`.
    grad_out : ndarray, shape = logits.shape, optional
        Writeable array to write the gradient into; may be `logits` itself.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray, shape = logits.shape

    Notes
    -----
    ``(1 - beta) p (log(p / m) - KL(p || m)) / T`` per row, times its sample
    weight and divided by the mean's denominator for "mean".

    Examples
    --------
    >>> import numpy as np, xent
    >>> loss, grad = xent.js_divergence_with_grad(np.zeros((1, 2)), np.array([[1.0, 0.0]]))
    >>> round(loss, 6), grad.round(6).tolist()
    (0.028535, [[-0.058827, 0.058827]])
    """
    return _divergence(logits, target_logits, axis, temperature, sample_weight, None, None,
                       reduction, n_threads, True, grad_out, 2, check_beta(beta))
