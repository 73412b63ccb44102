"""Keras-compatible cross-entropy losses (``xent.keras``).

Drop-in replacements for ``keras.losses.categorical_crossentropy``,
``keras.losses.sparse_categorical_crossentropy`` and
``keras.losses.binary_crossentropy`` (Keras 3): the same argument order,
the same per-sample results (no reduction), the same ``epsilon = 1e-7``
clipping of probabilities, for NumPy arrays.

- ``from_logits=True`` runs xent's stable kernels
  (:func:`xent.softmax_cross_entropy`, :func:`xent.sigmoid_binary_cross_entropy`
  with ``reduction="none"``).
- ``from_logits=False`` (the Keras default) reproduces Keras's probability
  formulas: categorical rows are divided by their sum and clipped to
  ``[eps, 1 - eps]``; binary values are clipped to ``[eps, 1 - eps]``.  These
  paths run in the kernels too (the ``keras`` row operation).

This module never imports Keras: it only shares its names.
"""

from __future__ import annotations

import numbers

import numpy as np

from xent import _dispatch
from xent._api import _quiet, sigmoid_binary_cross_entropy, softmax_cross_entropy
from xent._validate import rows as _as_rows
from xent._validate import (LabelError, as_array, c_array, check_axis, check_smoothing, compute_dtype,
                            position, resolve_n_threads)

#: Keras's ``keras.config.epsilon()``: probabilities are clipped to ``[EPSILON, 1 - EPSILON]``.
EPSILON = 1e-7

__all__ = ["EPSILON", "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]


# ---------------------------------------------------------------------------
# argument checks (messages use Keras's argument names: y_true, y_pred, ...)
# ---------------------------------------------------------------------------

def _check_pred(y_pred):
    """`y_pred` as an array and its compute dtype (float16 -> float32, integers -> float64)."""
    x = as_array(y_pred, "y_pred")
    cdt = compute_dtype(x, "y_pred")
    if x.ndim == 0:
        raise ValueError("`y_pred` must have at least one dimension; got a 0-d array.")
    return x, cdt


def _check_axis(axis, ndim):
    try:
        return check_axis(axis, ndim)
    except ValueError:
        raise ValueError(
            f"`axis` must be an integer in [{-ndim}, {ndim}) for `y_pred` with {ndim} "
            f"dimension(s); got {axis!r}."
        ) from None


def _check_from_logits(from_logits):
    # Strict on purpose: categorical_crossentropy(y_true, y_pred, 0.1) meant as
    # label_smoothing would otherwise silently switch to the logits path.
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"`from_logits` must be True or False; got {from_logits!r}.")
    return bool(from_logits)


def _check_n_classes(x, ax):
    if x.shape[ax] == 0:
        raise ValueError(
            f"`y_pred` must have at least one class; axis {ax} of shape {x.shape} has length 0."
        )


def _float_targets(y_true, shape, cdt):
    """`y_true` for categorical/binary: cast to the compute dtype, as Keras casts it to y_pred's."""
    t = as_array(y_true, "y_true")
    if t.dtype.kind not in "biuf":
        raise TypeError(f"`y_true` must hold real numbers (float, integer or bool); got dtype {t.dtype}.")
    if t.shape != shape:
        raise ValueError(f"`y_true` must have the shape of `y_pred`, {shape}; got shape {t.shape}.")
    return t.astype(cdt, copy=False)


_SWAPPED = " (`y_true` and `y_pred` look swapped: Keras's order is (y_true, y_pred)"


def _check_not_swapped(t, x):
    """Refuse targets that are logits and predictions that are targets: a
    negative `y_true` (no target probability is negative) with every `y_pred`
    in [0, 1] is the two arguments in PyTorch's order, (input, target)."""
    if not t.size or t.dtype.kind == "b":
        return
    lo = t.min()
    if not lo < 0:
        return
    if x.dtype.kind == "b" or (x.size and x.min() >= 0 and x.max() <= 1):
        flat = int(np.argmin(t.reshape(-1)))
        raise ValueError(
            f"`y_true` must hold target probabilities in [0, 1]; got {lo} at position "
            f"{position(flat, t.shape)}, and every `y_pred` is in [0, 1]{_SWAPPED})."
        )


def _dense_inputs(y_true, y_pred, from_logits, label_smoothing, axis):
    """The checked arguments of the losses with float targets of the
    predictions' shape: (x, compute dtype, axis, from_logits, smoothing, t)."""
    x, cdt = _check_pred(y_pred)
    ax = _check_axis(axis, x.ndim)
    logits = _check_from_logits(from_logits)
    eps = check_smoothing(label_smoothing)
    t = _float_targets(y_true, x.shape, cdt)
    _check_not_swapped(t, x)
    return x, cdt, ax, logits, eps, t


def _check_ignore_class(ignore_class):
    if ignore_class is None:
        return None
    if isinstance(ignore_class, (bool, np.bool_)) or not isinstance(ignore_class, numbers.Integral):
        raise TypeError(f"`ignore_class` must be None or an integer; got {ignore_class!r}.")
    return int(ignore_class)


def _class_indices(y_true, x_shape, ax, ignore_class):
    """`y_true` as int64 class indices of the per-sample shape, ignored entries set to -1.

    Accepts what Keras accepts: integers, or floats holding whole numbers (Keras
    casts to int64), with the per-sample shape or with a length-1 class axis.
    Returns (labels, ignored) where `ignored` is a bool mask or None.
    """
    t = as_array(y_true, "y_true")
    kind = t.dtype.kind
    if kind not in "iuf":
        raise TypeError(f"`y_true` must hold integer class indices; got dtype {t.dtype}.")
    sample_shape = x_shape[:ax] + x_shape[ax + 1:]
    # Keras squeezes a length-1 class axis: labels of shape (N, 1) for y_pred (N, C).
    if t.ndim == len(x_shape) and t.shape[ax] == 1:
        t = t.reshape(t.shape[:ax] + t.shape[ax + 1:])
    if t.shape != sample_shape:
        swapped = t.ndim == len(x_shape) + 1 and any(
            t.shape[:k] + t.shape[k + 1:] == tuple(x_shape) for k in range(t.ndim))
        raise ValueError(
            f"`y_true` class indices must have the shape of `y_pred` without axis {ax}, "
            f"{sample_shape} (or with length 1 there); got shape {t.shape}"
            + (f"{_SWAPPED}, the class indices first)." if swapped else ".")
        )
    if kind == "f":
        whole = np.isfinite(t) & (t == np.trunc(t))
        if not whole.all():
            flat = int(np.argmin(whole.reshape(-1)))
            raise ValueError(
                f"`y_true` class indices must be whole numbers; got {t.reshape(-1)[flat]} at "
                f"position {position(flat, t.shape)}."
            )
    n_classes = x_shape[ax]
    ignored = None
    if ignore_class is not None:
        # Compare in a type that holds both the labels and ignore_class exactly
        # (an ignore_class no label can hold matches nothing).
        if kind == "f":
            ignored = t == float(ignore_class)
        else:
            info = np.iinfo(t.dtype)
            ignored = (t == ignore_class) if info.min <= ignore_class <= info.max else np.zeros(t.shape, bool)
    bad = (t < 0) | (t >= n_classes)
    if ignored is not None:
        bad &= ~ignored
    if bad.any():
        flat = int(np.argmax(bad.reshape(-1)))
        allowed = f"[0, {n_classes})" + (f" or equal ignore_class={ignore_class}" if ignore_class is not None else "")
        raise LabelError(
            f"`y_true` class indices must be in {allowed}; got {t.reshape(-1)[flat]} at "
            f"position {position(flat, t.shape)}."
        )
    # Every remaining value is in [0, C), so the cast is exact.
    labels = t.astype(np.int64)
    if ignored is not None:
        labels[ignored] = -1
    return labels, ignored


# ---------------------------------------------------------------------------
# probability paths (from_logits=False): Keras's formulas, one row at a time,
# in the kernels' ``keras`` row operation (threaded, float64 inside,
# results in the compute dtype).  The clip bounds are Keras's epsilon rounded
# to the compute dtype, as Keras does: in float32 the upper bound is
# 1 - 2**-23, not 1 - 1e-7.
# ---------------------------------------------------------------------------

def _clip_bounds(cdt):
    return float(cdt.type(EPSILON)), float(cdt.type(1.0 - EPSILON))


def _prob_rows(p, t, labels, ax, mode, eps, has_ignore=False):
    """Run the kernel on rows with the class axis last; returns the per-row
    values shaped like `p` without `ax`."""
    cdt = p.dtype
    lo, hi = _clip_bounds(cdt)
    rows, _ = _as_rows(p, ax, cdt)
    trows = _as_rows(t, ax, cdt)[0] if t is not None else None
    y = c_array(labels, np.int64).reshape(-1) if labels is not None else None
    sample_shape = p.shape[:ax] + p.shape[ax + 1:]
    out = np.empty(sample_shape, dtype=cdt).reshape(-1)
    if p.shape[ax] == 0:
        out.fill(np.nan)  # the mean over an empty axis (binary); no classes is refused earlier
    else:
        _dispatch.run(_dispatch.Call("keras", rows.shape[0], rows.shape[1], cdt,
                                     resolve_n_threads(None), x=rows, target=trows, labels=y,
                                     mode=mode, eps=eps, lo=lo, hi=hi, has_ignore=has_ignore,
                                     ignore=-1, loss=out))
    return out.reshape(sample_shape)


def _categorical_from_probabilities(p, t, ax, label_smoothing):
    return _prob_rows(p, t, None, ax, 0, label_smoothing)


def _sparse_from_probabilities(p, labels, ignored, ax):
    # ignored samples carry the label -1 (see _class_indices)
    return _prob_rows(p, None, labels, ax, 1, 0.0, has_ignore=ignored is not None)


def _binary_mean_from_probabilities(p, t, ax, label_smoothing):
    return _prob_rows(p, t, None, ax, 2, label_smoothing)


def _mean(values, ax, cdt):
    """Mean over `ax`, accumulated in float64; an empty axis gives NaN without a warning."""
    n = values.shape[ax]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.sum(values, axis=ax, dtype=np.float64) / n
    return np.asarray(m, dtype=cdt)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

@_quiet
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy per sample, as ``keras.losses.categorical_crossentropy``.

    Parameters
    ----------
    y_true : array_like, shape = y_pred.shape
        Target probabilities (one-hot or soft; integers and bools are cast
        to floats, as Keras does).
    y_pred : array_like, shape (..., C, ...)
        Probabilities (``from_logits=False``; each row is divided by its sum,
        so it need not be normalised) or logits (``from_logits=True``).
        float16 is computed in float32, integers in float64.
    from_logits : bool, default False
        Whether `y_pred` holds logits.
    label_smoothing : float in [0, 1], default 0
        The targets become ``y_true * (1 - label_smoothing) + label_smoothing / C``.
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray, shape = y_pred.shape without `axis`
        The per-sample losses in the compute dtype (a 0-d array for 1-d input).

    Raises
    ------
    TypeError
        A wrong kind of dtype, or a `from_logits` that is not a bool.
    ValueError
        Shapes, `axis`, `label_smoothing`, or no classes.

    See Also
    --------
    xent.softmax_cross_entropy : the logits kernel, with PyTorch's options and reductions.

    Notes
    -----
    With ``eps = 1e-7`` and ``t`` the (smoothed) targets:

    - ``from_logits=False``: ``q = clip(p / sum(p), eps, 1 - eps)`` and
      ``loss = -sum_c t_c log q_c`` (Keras's formula; so ``[8, 2]`` and
      ``[0.8, 0.2]`` give the same loss, and a confident correct row gives
      about ``eps`` rather than 0).  Computed in a Cython kernel.
    - ``from_logits=True``: ``loss = -sum_c t_c log_softmax(x)_c`` by
      :func:`xent.softmax_cross_entropy`: stable for any logits, and a
      target of 0 at a ``-inf`` logit (a mask) contributes 0 where Keras
      gives NaN.

    Differences from Keras: with ``axis`` not the last axis, ``C`` in the
    label smoothing is the number of classes along `axis` (Keras divides by
    the length of the last axis); lists of floats are computed in float64
    (Keras uses float32).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import keras as xk
    >>> y_true = np.array([[0, 1, 0], [0, 0, 1]])
    >>> y_pred = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    >>> xk.categorical_crossentropy(y_true, y_pred).round(4)
    array([0.0513, 2.3026])

    Rows are normalised first, so unnormalised scores give the same loss:

    >>> xk.categorical_crossentropy([[1.0, 0.0]], [[8.0, 2.0]]).round(6)
    array([0.223144])
    >>> xk.categorical_crossentropy([[1.0, 0.0]], [[0.8, 0.2]]).round(6)
    array([0.223144])

    From logits:

    >>> xk.categorical_crossentropy([[1.0, 0.0]], [[2.0, 0.0]], from_logits=True).round(6)
    array([0.126928])
    """
    x, cdt, ax, logits, eps, t = _dense_inputs(y_true, y_pred, from_logits, label_smoothing, axis)
    _check_n_classes(x, ax)
    if logits:
        return softmax_cross_entropy(x, t, axis=ax, label_smoothing=eps, reduction="none")
    return _categorical_from_probabilities(x.astype(cdt, copy=False), t, ax, eps)


@_quiet
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Categorical cross-entropy from class indices, as ``keras.losses.sparse_categorical_crossentropy``.

    Parameters
    ----------
    y_true : array_like of int, shape = y_pred.shape without `axis`
        Class indices in ``[0, C)``.  As in Keras, a length-1 class axis
        (labels of shape ``(N, 1)`` for ``y_pred`` of shape ``(N, C)``) is
        accepted, and so are floats that hold whole numbers.
    y_pred : array_like, shape (..., C, ...)
        Probabilities (``from_logits=False``; rows need not be normalised)
        or logits (``from_logits=True``).  float16 is computed in float32,
        integers in float64.
    from_logits : bool, default False
        Whether `y_pred` holds logits.
    ignore_class : int, optional
        Samples whose label equals it get loss 0 (e.g. a "void" class -1
        or 255 in segmentation).  Any integer, inside ``[0, C)`` or not.
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray, shape = y_pred.shape without `axis`
        The per-sample losses in the compute dtype; 0 at ignored samples.

    Raises
    ------
    xent.LabelError
        A class index outside ``[0, C)`` that is not `ignore_class`
        (a subclass of ``IndexError`` and ``ValueError``).
    TypeError
        A wrong kind of dtype, a non-integer `ignore_class`, or a
        `from_logits` that is not a bool.
    ValueError
        Shapes, `axis`, fractional class indices, or no classes.

    See Also
    --------
    categorical_crossentropy : the same loss from one-hot targets.
    xent.softmax_cross_entropy : the logits kernel (``ignore_index``, weights, reductions).

    Notes
    -----
    ``from_logits=False``: ``loss = -log(clip(p_y / sum(p), eps, 1 - eps))``
    with ``eps = 1e-7`` (Keras's formula; in a Cython kernel).
    ``from_logits=True``: ``loss = logsumexp(x) - x_y`` by
    :func:`xent.softmax_cross_entropy`, stable for any logits.
    It equals :func:`categorical_crossentropy` with the one-hot targets.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import keras as xk
    >>> y_pred = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    >>> xk.sparse_categorical_crossentropy([1, 2], y_pred).round(4)
    array([0.0513, 2.3026])
    >>> xk.sparse_categorical_crossentropy([1, -1], y_pred, ignore_class=-1).round(4)
    array([0.0513, 0.    ])
    >>> xk.sparse_categorical_crossentropy([0], [[2.0, 0.0]], from_logits=True).round(6)
    array([0.126928])
    """
    x, cdt = _check_pred(y_pred)
    ax = _check_axis(axis, x.ndim)
    logits = _check_from_logits(from_logits)
    ignore = _check_ignore_class(ignore_class)
    _check_n_classes(x, ax)
    labels, ignored = _class_indices(y_true, x.shape, ax, ignore)
    if logits:
        # Ignored samples carry the label -1 (see _class_indices).
        return softmax_cross_entropy(x, labels, axis=ax, reduction="none",
                                     ignore_index=-1 if ignored is not None else None)
    return _sparse_from_probabilities(x.astype(cdt, copy=False), labels, ignored, ax)


@_quiet
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over `axis`, as ``keras.losses.binary_crossentropy``.

    Parameters
    ----------
    y_true : array_like, shape = y_pred.shape
        Targets in [0, 1] (soft targets allowed; integers and bools are
        cast to floats, as Keras does).
    y_pred : array_like, shape (..., K, ...)
        Probabilities (``from_logits=False``) or logits (``from_logits=True``),
        one per binary decision.  float16 is computed in float32, integers
        in float64.
    from_logits : bool, default False
        Whether `y_pred` holds logits.
    label_smoothing : float in [0, 1], default 0
        The targets become ``y_true * (1 - label_smoothing) + label_smoothing / 2``.
    axis : int, default -1
        The axis the elementwise losses are averaged over.

    Returns
    -------
    ndarray, shape = y_pred.shape without `axis`
        Mean losses in the compute dtype (a 0-d array for 1-d input, as
        Keras, which averages a vector of predictions to one number).

    Raises
    ------
    TypeError
        A wrong kind of dtype, or a `from_logits` that is not a bool.
    ValueError
        Shapes, `axis`, `label_smoothing`.

    See Also
    --------
    xent.sigmoid_binary_cross_entropy : the logits kernel (weights, pos_weight, reductions).

    Notes
    -----
    Elementwise, with ``eps = 1e-7`` and ``t`` the (smoothed) targets:

    - ``from_logits=False``: ``q = clip(p, eps, 1 - eps)`` and
      ``-(t log q + (1 - t) log(1 - q))`` (Keras's formula, in a Cython kernel).
    - ``from_logits=True``: ``max(x, 0) - x t + log1p(exp(-|x|))`` by
      :func:`xent.sigmoid_binary_cross_entropy`, stable for any logits
      (``x = +-inf`` gives 0 or ``+inf``).

    then the mean over `axis`, accumulated in float64.  An empty `axis`
    gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import keras as xk
    >>> xk.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).round(4)
    array([0.9163, 0.7136])
    >>> loss = xk.binary_crossentropy([1.0, 0.0], [2.0, -1.0], from_logits=True)
    >>> loss.shape, round(float(loss), 6)
    ((), 0.220095)
    """
    x, cdt, ax, logits, eps, t = _dense_inputs(y_true, y_pred, from_logits, label_smoothing, axis)
    if logits:
        elementwise = sigmoid_binary_cross_entropy(x, t, label_smoothing=eps, reduction="none")
        return _mean(elementwise, ax, cdt)
    return _binary_mean_from_probabilities(x.astype(cdt, copy=False), t, ax, eps)
