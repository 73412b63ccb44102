"""``xent.keras`` against Keras 3 itself, SciPy formulas, and identities.

* Keras: the real ``keras.losses`` functions on the torch backend when torch
  is installed, else on the jax backend (the ``test`` extra installs jax, with
  float64 enabled), in float32 (Keras's default; compared with a float32
  tolerance) and float64 (Keras keeps float64 NumPy inputs in float64, so
  the comparison is tight; except the mean in ``binary_crossentropy``, see
  ``assert_binary_matches_keras``), on random and extreme inputs, every axis,
  ``label_smoothing`` and ``ignore_class``.  Skipped when Keras (or its
  backend) is not installed.
* SciPy / plain NumPy: an independent float64 formula for every path
  (``scipy.special.log_softmax``, ``log_expit``), and for the cases where
  xent deliberately differs from Keras (-inf masks, smoothing with a
  non-last class axis).
* Identities that need no oracle: one-hot vs class indices, rows scaled by
  any positive factor (``[8, 2]`` == ``[0.8, 0.2]``), probabilities vs logits.
* Validation: errors name Keras's arguments (``y_true``, ``y_pred``, ...).
"""

import doctest
import os
import subprocess
import sys
import warnings

import importlib.util  # noqa: E402

# Keras picks its backend at import: torch (CPU) when it is installed, else
# jax (the test extra's), unless the caller chose one.  JAX computes in
# float32 unless float64 is enabled before it is imported.
os.environ.setdefault("KERAS_BACKEND", "torch" if importlib.util.find_spec("torch") else "jax")
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import xent  # noqa: E402
import xent.keras as xk  # noqa: E402
from conftest import layout_variant  # noqa: E402

EPS = 1e-7
DTYPES = [np.float32, np.float64]
FUNCS = ["categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"]


# --------------------------------------------------------------------------
# oracles
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    """The real Keras 3, or a skip."""
    backend = os.environ["KERAS_BACKEND"]
    if backend in ("torch", "jax"):
        pytest.importorskip(backend, reason=f"Keras is compared on its {backend} backend, which is not installed")
    mod = pytest.importorskip("keras", reason="Keras 3 is the oracle of these tests (test extra `keras`)")
    if int(mod.__version__.split(".")[0]) < 3:
        pytest.skip(f"Keras 3 semantics are tested; Keras {mod.__version__} is installed")
    return mod


def keras_loss(keras, name, *args, **kwargs):
    """A ``keras.losses`` function's result as a NumPy array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. its SyntaxWarning for C == 1
        out = getattr(keras.losses, name)(*args, **kwargs)
        return np.asarray(keras.ops.convert_to_numpy(out))  # (a NumPy 2 DeprecationWarning, silenced)


@pytest.fixture(scope="module")
def special():
    return pytest.importorskip("scipy.special", reason="scipy.special is the float64 formula oracle")


def tolerances(dtype, scale=1.0):
    """(rtol, atol) for comparing two float `dtype` computations of the same loss.

    `scale` is the largest |logit|: a log-softmax computed as x - lse(x) has an
    absolute rounding error of a few ulps of that.
    """
    eps = np.finfo(dtype).eps
    if dtype == np.float32:
        return 2e-5, max(1e-6, 16 * eps * scale)
    return 1e-12, max(1e-14, 16 * eps * scale)


def assert_close(ours, theirs, dtype, scale=1.0):
    rtol, atol = tolerances(dtype, scale)
    np.testing.assert_allclose(np.asarray(ours, np.float64), np.asarray(theirs, np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def scipy_categorical(special, t, x, from_logits, smoothing=0.0, axis=-1):
    """Float64 formula, with C the class count along `axis` (not Keras's last axis)."""
    t = np.asarray(t, np.float64)
    x = np.asarray(x, np.float64)
    if smoothing:
        t = t * (1 - smoothing) + smoothing / x.shape[axis]
    if from_logits:
        logq = special.log_softmax(x, axis=axis)
    else:
        logq = np.log(np.clip(x / x.sum(axis=axis, keepdims=True), EPS, 1 - EPS))
    return -np.sum(t * logq, axis=axis)


def scipy_binary(special, t, x, from_logits, smoothing=0.0, axis=-1):
    t = np.asarray(t, np.float64)
    x = np.asarray(x, np.float64)
    if smoothing:
        t = t * (1 - smoothing) + smoothing / 2
    if from_logits:
        elementwise = -(t * special.log_expit(x) + (1 - t) * special.log_expit(-x))
    else:
        q = np.clip(x, EPS, 1 - EPS)
        elementwise = -(t * np.log(q) + (1 - t) * np.log1p(-q))
    return elementwise.mean(axis=axis)


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def one_hot(labels, n_classes, axis, dtype=np.float64):
    oh = np.eye(n_classes, dtype=dtype)[labels]
    return np.moveaxis(oh, -1, axis)


def random_probabilities(rng, shape, axis, dtype, normalised=True):
    """Positive rows along `axis`; unnormalised ones carry a random scale."""
    p = rng.gamma(0.7, size=shape) + 1e-3
    if normalised:
        p /= p.sum(axis=axis, keepdims=True)
    else:
        p *= 10.0 ** rng.uniform(-3, 3, size=p.shape[:axis % len(shape)] + (1,) + p.shape[axis % len(shape) + 1:])
    return p.astype(dtype)


def soft_targets(rng, shape, axis):
    t = rng.random(shape)
    return t / t.sum(axis=axis, keepdims=True)


#: Extreme probability rows for categorical losses (C = 5), each with a reason.
EXTREME_PROBABILITY_ROWS = [
    [1.0, 0.0, 0.0, 0.0, 0.0],  # a certain row: log 0 is clipped to log eps
    [0.0, 0.0, 0.0, 0.0, 1.0],
    [1e-9, 1e-8, 1e-7, 0.5, 0.5 - 1.11e-7],  # values around eps
    [8.0, 2.0, 0.0, 0.0, 0.0],  # unnormalised
    [8e30, 2e30, 1e30, 0.0, 1e25],  # huge scale
    [1e-30, 3e-30, 1e-30, 1e-30, 0.0],  # tiny scale
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.0, 0.0, 0.0, 0.0, 0.0],  # 0 / 0: NaN, as Keras
    [1.0 - 1e-7, 1e-7, 0.0, 0.0, 0.0],  # right at the clip bounds
]

#: Extreme logit rows (C = 5) and their largest magnitude.
EXTREME_LOGIT_ROWS = [
    [1e4, 0.0, -1e4, 5.0, -5.0],  # gaps up to 1e4
    [-1e4, -1e4, -1e4, -1e4, -1e4],  # ties at a large offset
    [1e4, 1e4, 0.0, 0.0, 0.0],
    [30.0, 0.0, 0.0, 0.0, 0.0],  # a confident row: tiny loss for class 0
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [88.0, -88.0, 20.0, -20.0, 1.0],
]


# --------------------------------------------------------------------------
# against Keras: categorical
# --------------------------------------------------------------------------

# Keras smooths with the length of the last axis whatever `axis` is, xent with
# the class count (test_categorical_smoothing_uses_class_axis): with smoothing,
# compare only shapes where the two agree.
CATEGORICAL_CASES = [
    (shape, axis, smoothing)
    for shape, axis in [((7, 5), -1), ((7, 5), 0), ((3, 6, 6), 1), ((6, 2, 3), 0), ((2, 3, 4), -1)]
    for smoothing in (0.0, 0.1, 1.0)
    if smoothing == 0 or shape[axis] == shape[-1]
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape,axis,smoothing", CATEGORICAL_CASES)
def test_categorical_random_vs_keras(keras, rng, dtype, from_logits, smoothing, shape, axis):
    x = (rng.normal(0, 4, shape) if from_logits else random_probabilities(rng, shape, axis, np.float64)).astype(dtype)
    for t in (one_hot(rng.integers(0, shape[axis], shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]),
                      shape[axis], axis), soft_targets(rng, shape, axis)):
        t = t.astype(dtype)
        ours = xk.categorical_crossentropy(t, x, from_logits=from_logits, label_smoothing=smoothing, axis=axis)
        theirs = keras_loss(keras, "categorical_crossentropy", t, x, from_logits=from_logits,
                            label_smoothing=smoothing, axis=axis)
        assert ours.dtype == dtype and ours.shape == theirs.shape
        assert_close(ours, theirs, dtype, scale=np.abs(x).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalised", [True, False])
def test_categorical_probabilities_extreme_vs_keras(keras, rng, dtype, normalised):
    p = np.array(EXTREME_PROBABILITY_ROWS, dtype=dtype)
    if not normalised:
        p = random_probabilities(rng, (40, 5), -1, dtype, normalised=False)
    n = p.shape[0]
    for t in (one_hot(np.arange(n) % 5, 5, -1), soft_targets(rng, p.shape, -1)):
        t = t.astype(dtype)
        for smoothing in (0.0, 0.2):
            ours = xk.categorical_crossentropy(t, p, label_smoothing=smoothing)
            theirs = keras_loss(keras, "categorical_crossentropy", t, p, label_smoothing=smoothing)
            assert_close(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_logits_extreme_vs_keras(keras, rng, dtype):
    x = np.array(EXTREME_LOGIT_ROWS, dtype=dtype)
    for t in (np.tile(np.eye(5, dtype=dtype), (2, 1))[: len(x)], soft_targets(rng, x.shape, -1).astype(dtype)):
        ours = xk.categorical_crossentropy(t, x, from_logits=True)
        theirs = keras_loss(keras, "categorical_crossentropy", t, x, from_logits=True)
        assert np.all(np.isfinite(ours))
        assert_close(ours, theirs, dtype, scale=1e4)


# --------------------------------------------------------------------------
# against Keras: sparse categorical
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, -1, 255, 0])
@pytest.mark.parametrize("shape,axis", [((9, 5), -1), ((9, 5), 0), ((3, 4, 5), 1), ((4,), 0)])
def test_sparse_random_vs_keras(keras, rng, dtype, from_logits, ignore_class, shape, axis):
    ax = axis % len(shape)
    sample_shape = shape[:ax] + shape[ax + 1:]
    x = (rng.normal(0, 4, shape) if from_logits else random_probabilities(rng, shape, axis, np.float64,
                                                                           normalised=False)).astype(dtype)
    labels = rng.integers(0, shape[axis], sample_shape)
    if ignore_class is not None and labels.size:
        labels.reshape(-1)[:: 3] = ignore_class  # a third of the samples ignored
    ours = xk.sparse_categorical_crossentropy(labels, x, from_logits=from_logits,
                                              ignore_class=ignore_class, axis=axis)
    if os.environ["KERAS_BACKEND"] == "jax" and ax != len(shape) - 1:
        # Keras's jax backend takes the class axis last only: the same rows,
        # moved there (the labels' shape is unchanged)
        theirs = keras_loss(keras, "sparse_categorical_crossentropy", labels, np.moveaxis(x, ax, -1),
                            from_logits=from_logits, ignore_class=ignore_class)
    else:
        theirs = keras_loss(keras, "sparse_categorical_crossentropy", labels, x, from_logits=from_logits,
                            ignore_class=ignore_class, axis=axis)
    assert ours.dtype == dtype and ours.shape == theirs.shape == sample_shape
    assert_close(ours, theirs, dtype, scale=np.abs(x).max())
    if ignore_class is not None:
        assert np.all(ours[labels == ignore_class] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_extreme_vs_keras(keras, dtype):
    p = np.array(EXTREME_PROBABILITY_ROWS[:-1], dtype=dtype)  # Keras's nll_loss on a NaN row: same NaN
    x = np.array(EXTREME_LOGIT_ROWS, dtype=dtype)
    for y in range(5):
        labels = np.full(len(p), y)
        assert_close(xk.sparse_categorical_crossentropy(labels, p),
                     keras_loss(keras, "sparse_categorical_crossentropy", labels, p), dtype)
        labels = np.full(len(x), y)
        ours = xk.sparse_categorical_crossentropy(labels, x, from_logits=True)
        assert_close(ours, keras_loss(keras, "sparse_categorical_crossentropy", labels, x, from_logits=True),
                     dtype, scale=1e4)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_label_forms_vs_keras(keras, rng, from_logits):
    """Keras also takes labels of shape (N, 1) and float labels."""
    x = rng.random((6, 4)) + 0.1
    labels = rng.integers(0, 4, 6)
    expected = keras_loss(keras, "sparse_categorical_crossentropy", labels, x, from_logits=from_logits)
    for form in (labels[:, None], labels.astype(np.float32), labels.astype(np.uint8), labels.tolist()):
        assert_close(xk.sparse_categorical_crossentropy(form, x, from_logits=from_logits), expected, np.float64)
        assert_close(keras_loss(keras, "sparse_categorical_crossentropy", np.asarray(form), x,
                                from_logits=from_logits), expected, np.float64)


# --------------------------------------------------------------------------
# against Keras: binary
# --------------------------------------------------------------------------

def assert_binary_matches_keras(keras, t, x, dtype, scale=1.0, **kwargs):
    """keras.losses.binary_crossentropy == ours.

    Keras 3's torch backend takes ``ops.mean`` in float32 even for float64
    input (its type promotion of float64 with "float32" gives float32), so the
    whole Keras loss is float32-accurate only.  For a tight float64 check,
    the elementwise ``keras.ops.binary_crossentropy`` (float64 throughout) is
    averaged here in float64, with Keras's label smoothing applied as
    ``keras.losses.binary_crossentropy`` applies it.
    """
    ours = xk.binary_crossentropy(t, x, **kwargs)
    theirs = keras_loss(keras, "binary_crossentropy", t, x, **kwargs)
    assert isinstance(ours, np.ndarray) and ours.dtype == dtype and ours.shape == theirs.shape
    assert_close(ours, theirs, np.float32, scale=scale)
    if dtype == np.float64:
        smoothing = kwargs.get("label_smoothing", 0.0)
        ts = t * (1.0 - smoothing) + 0.5 * smoothing if smoothing else t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elementwise = keras.ops.convert_to_numpy(keras.ops.binary_crossentropy(
                ts, x, from_logits=kwargs.get("from_logits", False)))
        assert elementwise.dtype == np.float64
        assert_close(ours, elementwise.mean(axis=kwargs.get("axis", -1)), dtype, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape,axis", [((8, 3), -1), ((8, 3), 0), ((2, 3, 4), 1), ((5,), -1)])
def test_binary_random_vs_keras(keras, rng, dtype, from_logits, smoothing, shape, axis):
    x = (rng.normal(0, 4, shape) if from_logits else rng.random(shape)).astype(dtype)
    for t in (rng.integers(0, 2, shape).astype(dtype), rng.random(shape).astype(dtype)):
        assert_binary_matches_keras(keras, t, x, dtype, scale=np.abs(x).max(), from_logits=from_logits,
                                    label_smoothing=smoothing, axis=axis)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_extreme_vs_keras(keras, dtype):
    p = np.array([0.0, 1e-9, 1e-7, 0.5, 1 - 1e-7, 1 - 1e-12, 1.0, 1.5, -0.5], dtype=dtype)
    x = np.array([-1e4, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 1e4], dtype=dtype)
    for t_value in (0.0, 1.0, 0.3):
        t = np.full((1, p.size), t_value, dtype=dtype)
        for smoothing in (0.0, 0.05):
            assert_binary_matches_keras(keras, t, p[None], dtype, label_smoothing=smoothing, axis=0)
            assert_binary_matches_keras(keras, t, x[None], dtype, scale=1e4, from_logits=True,
                                        label_smoothing=smoothing, axis=0)


# --------------------------------------------------------------------------
# float64 formulas (SciPy), including where xent deliberately differs from Keras
# --------------------------------------------------------------------------

@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape,axis", [((6, 4), -1), ((2, 3, 4), 1), ((3, 4, 2), 0)])
def test_categorical_vs_scipy(special, rng, from_logits, smoothing, shape, axis):
    x = rng.normal(0, 3, shape) if from_logits else random_probabilities(rng, shape, axis, np.float64, False)
    t = soft_targets(rng, shape, axis)
    assert_close(xk.categorical_crossentropy(t, x, from_logits=from_logits, label_smoothing=smoothing, axis=axis),
                 scipy_categorical(special, t, x, from_logits, smoothing, axis), np.float64, scale=np.abs(x).max())
    labels = rng.integers(0, shape[axis], np.delete(np.array(shape), axis % len(shape)))
    assert_close(xk.sparse_categorical_crossentropy(labels, x, from_logits=from_logits, axis=axis),
                 scipy_categorical(special, one_hot(labels, shape[axis], axis), x, from_logits, 0.0, axis),
                 np.float64, scale=np.abs(x).max())


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape,axis", [((6, 4), -1), ((2, 3, 4), 1), ((7,), 0)])
def test_binary_vs_scipy(special, rng, from_logits, smoothing, shape, axis):
    x = rng.normal(0, 10, shape) if from_logits else rng.random(shape) ** 4
    t = rng.random(shape)
    assert_close(xk.binary_crossentropy(t, x, from_logits=from_logits, label_smoothing=smoothing, axis=axis),
                 scipy_binary(special, t, x, from_logits, smoothing, axis), np.float64, scale=np.abs(x).max())


def test_categorical_smoothing_uses_class_axis(special, rng):
    """Smoothing spreads eps over the C classes along `axis` (Keras divides by the last axis's length)."""
    x = rng.normal(size=(2, 3, 4))
    t = one_hot(rng.integers(0, 3, (2, 4)), 3, 1)
    for from_logits in (False, True):
        p = x if from_logits else np.exp(x)
        ours = xk.categorical_crossentropy(t, p, from_logits=from_logits, label_smoothing=0.3, axis=1)
        assert_close(ours, scipy_categorical(special, t, p, from_logits, 0.3, axis=1), np.float64, scale=4)
        # ...the same as smoothing by hand over the class axis, then no smoothing:
        smoothed = t * 0.7 + 0.3 / 3
        assert_close(ours, xk.categorical_crossentropy(smoothed, p, from_logits=from_logits, axis=1), np.float64)


def test_minus_inf_logits_are_masks():
    """A -inf logit with target 0 contributes 0 (Keras gives NaN: 0 * -inf)."""
    x = np.array([[0.0, -np.inf, np.log(3.0)], [-np.inf, 1.0, 1.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(xk.categorical_crossentropy(t, x, from_logits=True), [np.log(4.0), np.log(2.0)],
                               rtol=1e-15)
    np.testing.assert_allclose(xk.sparse_categorical_crossentropy([0, 2], x, from_logits=True),
                               [np.log(4.0), np.log(2.0)], rtol=1e-15)
    # A -inf target logit is an infinite loss, not NaN.
    assert xk.sparse_categorical_crossentropy([1], x[:1], from_logits=True)[0] == np.inf


# --------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape,axis", [((10, 4), -1), ((3, 4, 5), 1), ((4, 3), 0), ((6,), 0)])
def test_one_hot_equals_class_indices(rng, dtype, from_logits, shape, axis):
    ax = axis % len(shape)
    x = (rng.normal(0, 3, shape) if from_logits else random_probabilities(rng, shape, axis, np.float64,
                                                                           False)).astype(dtype)
    labels = rng.integers(0, shape[ax], shape[:ax] + shape[ax + 1:])
    sparse = xk.sparse_categorical_crossentropy(labels, x, from_logits=from_logits, axis=axis)
    dense = xk.categorical_crossentropy(one_hot(labels, shape[ax], axis), x, from_logits=from_logits, axis=axis)
    assert sparse.dtype == dense.dtype == np.result_type(dtype, np.float32)
    assert sparse.shape == dense.shape == labels.shape
    np.testing.assert_allclose(sparse, dense, rtol=4 * np.finfo(sparse.dtype).eps, atol=np.finfo(sparse.dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_are_normalised(rng, dtype):
    """[8, 2] and [0.8, 0.2] give the same loss; so does any positive rescaling."""
    for t in ([[1.0, 0.0]], [[0.0, 1.0]], [[0.25, 0.75]]):
        a = xk.categorical_crossentropy(np.array(t, dtype), np.array([[8.0, 2.0]], dtype))
        b = xk.categorical_crossentropy(np.array(t, dtype), np.array([[0.8, 0.2]], dtype))
        np.testing.assert_allclose(a, b, rtol=2 * np.finfo(dtype).eps)
        np.testing.assert_allclose(a, -np.sum(np.array(t) * np.log([0.8, 0.2])), rtol=4 * np.finfo(dtype).eps)
    for y in (0, 1):
        a = xk.sparse_categorical_crossentropy([y], np.array([[8.0, 2.0]], dtype))
        b = xk.sparse_categorical_crossentropy([y], np.array([[0.8, 0.2]], dtype))
        np.testing.assert_allclose(a, b, rtol=2 * np.finfo(dtype).eps)
        np.testing.assert_allclose(a, -np.log([0.8, 0.2][y]), rtol=4 * np.finfo(dtype).eps)

    p = random_probabilities(rng, (20, 6), -1, dtype)
    t = soft_targets(rng, p.shape, -1).astype(dtype)
    labels = rng.integers(0, 6, 20)
    base = xk.categorical_crossentropy(t, p)
    base_sparse = xk.sparse_categorical_crossentropy(labels, p)
    # A power of two rescales exactly: bit-for-bit the same loss.
    np.testing.assert_array_equal(xk.categorical_crossentropy(t, p * dtype(2.0 ** 40)), base)
    np.testing.assert_array_equal(xk.sparse_categorical_crossentropy(labels, p * dtype(2.0 ** -30)), base_sparse)
    # Any other positive factor per row: equal to rounding.
    factors = (10.0 ** rng.uniform(-5, 5, (20, 1))).astype(dtype)
    np.testing.assert_allclose(xk.categorical_crossentropy(t, p * factors), base, rtol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_agree_with_probabilities(rng, dtype):
    """Away from the clip bounds, loss(logits) == loss(softmax / sigmoid of them)."""
    x = rng.normal(0, 2, (30, 4)).astype(dtype)
    t = soft_targets(rng, x.shape, -1).astype(dtype)
    labels = rng.integers(0, 4, 30)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    p = xent.softmax(x)
    np.testing.assert_allclose(xk.categorical_crossentropy(t, x, from_logits=True),
                               xk.categorical_crossentropy(t, p), rtol=rtol)
    np.testing.assert_allclose(xk.sparse_categorical_crossentropy(labels, x, from_logits=True),
                               xk.sparse_categorical_crossentropy(labels, p), rtol=rtol)
    sig = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(dtype)
    np.testing.assert_allclose(xk.binary_crossentropy(t, x, from_logits=True), xk.binary_crossentropy(t, sig),
                               rtol=10 * rtol)


def test_clipping_bounds():
    """A certain, correct prediction costs -log(1 - eps) (1 - eps rounded to the dtype), not 0."""
    for dtype in DTYPES:
        hi = dtype(1 - EPS)
        expected = -np.log(hi)
        assert xk.categorical_crossentropy(np.array([[1.0, 0.0]], dtype), np.array([[1.0, 0.0]], dtype))[0] == expected
        assert xk.sparse_categorical_crossentropy([0], np.array([[1.0, 0.0]], dtype))[0] == expected
        # ...and a certain, wrong one -log(eps).
        np.testing.assert_allclose(xk.sparse_categorical_crossentropy([1], np.array([[1.0, 0.0]], dtype)),
                                   [-np.log(dtype(EPS))], rtol=np.finfo(dtype).eps)
    assert np.float32(1 - EPS) == np.float32(1 - 2.0 ** -23)  # why float32 differs


# --------------------------------------------------------------------------
# dtypes, shapes, layouts
# --------------------------------------------------------------------------

def test_result_types(rng):
    p16 = np.array([[0.3, 0.7]], np.float16)
    for fn, y in ((xk.categorical_crossentropy, [[0.0, 1.0]]), (xk.sparse_categorical_crossentropy, [1]),
                  (xk.binary_crossentropy, [[0.0, 1.0]])):
        for from_logits in (False, True):
            assert fn(y, p16, from_logits=from_logits).dtype == np.float32
            assert fn(y, [[3, 7]], from_logits=from_logits).dtype == np.float64  # integer y_pred
            assert fn(y, [[0.3, 0.7]], from_logits=from_logits).dtype == np.float64  # lists
    # Integer probabilities are scores like any others: [8, 2] == [0.8, 0.2].
    np.testing.assert_allclose(xk.categorical_crossentropy([[1, 0]], [[8, 2]]), [-np.log(0.8)], rtol=1e-15)


def test_one_dimensional_inputs():
    """One sample: a 0-d result (binary averages a vector to one number, as Keras)."""
    for from_logits in (False, True):
        for out in (xk.categorical_crossentropy([0.0, 1.0], [0.4, 0.6], from_logits=from_logits),
                    xk.sparse_categorical_crossentropy(1, [0.4, 0.6], from_logits=from_logits),
                    xk.binary_crossentropy([0.0, 1.0], [0.4, 0.6], from_logits=from_logits)):
            assert isinstance(out, np.ndarray) and out.shape == ()
    np.testing.assert_allclose(xk.binary_crossentropy([0.0, 1.0], [0.4, 0.6]), -np.log(0.6), rtol=1e-15)


@pytest.mark.parametrize("from_logits", [False, True])
def test_empty_inputs(from_logits):
    x = np.zeros((0, 3))
    assert xk.categorical_crossentropy(np.zeros((0, 3)), x, from_logits=from_logits).shape == (0,)
    assert xk.sparse_categorical_crossentropy(np.zeros(0, int), x, from_logits=from_logits).shape == (0,)
    assert xk.binary_crossentropy(np.zeros((0, 3)), x, from_logits=from_logits).shape == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN for a mean over nothing, silently (as Keras)
        out = xk.binary_crossentropy(np.zeros((2, 0)), np.zeros((2, 0)), from_logits=from_logits)
    assert out.shape == (2,) and np.all(np.isnan(out))


def test_nan_rows_stay_local():
    """A NaN (or a row summing to 0) gives NaN for that sample only, with no warning."""
    p = np.array([[0.5, 0.5], [np.nan, 0.5], [0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cat = xk.categorical_crossentropy([[1.0, 0.0]] * 3, p)
        sparse = xk.sparse_categorical_crossentropy([0, 0, 0], p)
        ignored = xk.sparse_categorical_crossentropy([0, -1, -1], p, ignore_class=-1)
    for out in (cat, sparse):
        assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])
    np.testing.assert_array_equal(ignored, [np.log(2.0), 0.0, 0.0])  # Keras: 0 at ignored samples


@pytest.mark.parametrize("layout", ["F", "strided", "reversed", "bigendian", "readonly", "list"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_layouts_match_contiguous(rng, layout, from_logits):
    x = rng.normal(size=(5, 4)) if from_logits else rng.random((5, 4))
    t = soft_targets(rng, x.shape, -1)
    labels = rng.integers(0, 4, 5)
    for axis in (-1, 0):
        lab = labels[:4] if axis == 0 else labels
        tt = t if axis == -1 else t / t.sum(0)
        np.testing.assert_array_equal(
            xk.categorical_crossentropy(layout_variant(tt, layout), layout_variant(x, layout),
                                        from_logits=from_logits, axis=axis),
            xk.categorical_crossentropy(tt, x, from_logits=from_logits, axis=axis))
        np.testing.assert_array_equal(
            xk.sparse_categorical_crossentropy(layout_variant(lab, layout), layout_variant(x, layout),
                                               from_logits=from_logits, axis=axis),
            xk.sparse_categorical_crossentropy(lab, x, from_logits=from_logits, axis=axis))
        np.testing.assert_array_equal(
            xk.binary_crossentropy(layout_variant(np.round(t), layout), layout_variant(x, layout),
                                   from_logits=from_logits, axis=axis),
            xk.binary_crossentropy(np.round(t), x, from_logits=from_logits, axis=axis))


def test_inputs_not_modified(rng):
    x = rng.random((4, 3))
    t = soft_targets(rng, x.shape, -1)
    labels = np.array([0, -1, 2, 1])
    copies = [a.copy() for a in (x, t, labels)]
    for from_logits in (False, True):
        xk.categorical_crossentropy(t, x, from_logits=from_logits, label_smoothing=0.1)
        xk.sparse_categorical_crossentropy(labels, x, from_logits=from_logits, ignore_class=-1)
        xk.binary_crossentropy(t, x, from_logits=from_logits, label_smoothing=0.1)
    for a, b in zip((x, t, labels), copies):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# bad input: clear errors naming Keras's arguments
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCS)
def test_common_errors(name):
    fn = getattr(xk, name)
    y = [0, 1] if name.startswith("sparse") else [[0.0, 1.0], [1.0, 0.0]]
    p = [[0.4, 0.6], [0.5, 0.5]]
    with pytest.raises(ValueError, match=r"`y_pred` must have at least one dimension"):
        fn(y, 0.5)
    with pytest.raises(TypeError, match=r"`y_pred` must be a real floating-point.*bool"):
        fn(y, np.array(p) > 0.5)
    with pytest.raises(TypeError, match=r"`y_pred` must be a real floating-point.*complex"):
        fn(y, np.array(p, complex))
    with pytest.raises(ValueError, match=r"`axis` must be an integer in \[-2, 2\).*got 2"):
        fn(y, p, axis=2)
    with pytest.raises(ValueError, match=r"`axis` must be an integer.*got True"):
        fn(y, p, axis=True)
    with pytest.raises(TypeError, match=r"`from_logits` must be True or False; got 0.1"):
        fn(y, p, 0.1)
    with pytest.raises(TypeError, match=r"`y_true` must hold"):
        fn(np.array(y, dtype=object), p)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "binary_crossentropy"])
def test_dense_target_errors(name):
    fn = getattr(xk, name)
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"`y_true` must have the shape of `y_pred`, \(2, 3\); got shape \(2,\)"):
        fn([0.0, 1.0], p)
    with pytest.raises(TypeError, match=r"`y_true` must hold real numbers.*complex"):
        fn(np.ones((2, 3), complex), p)
    for bad in (-0.1, 1.5, "0.1", None, True):
        with pytest.raises(ValueError, match=r"`label_smoothing` must be a number in \[0, 1\]"):
            fn(np.ones((2, 3)), p, label_smoothing=bad)


def test_categorical_no_classes():
    with pytest.raises(ValueError, match=r"`y_pred` must have at least one class; axis 1 of shape \(2, 0\)"):
        xk.categorical_crossentropy(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"`y_pred` must have at least one class"):
        xk.sparse_categorical_crossentropy([0, 0], np.zeros((2, 0)), from_logits=True)


def test_sparse_label_errors():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(xent.LabelError, match=r"`y_true` class indices must be in \[0, 3\); got 3 at position 1"):
        xk.sparse_categorical_crossentropy([0, 3], p)
    with pytest.raises(IndexError, match=r"in \[0, 3\) or equal ignore_class=255; got -1 at position 0"):
        xk.sparse_categorical_crossentropy([-1, 255], p, ignore_class=255)
    with pytest.raises(ValueError, match=r"got 7 at position \(1, 0\)"):
        xk.sparse_categorical_crossentropy([[0], [7]], p[:, :, None] * np.ones((1, 1, 1)), axis=1)
    with pytest.raises(xent.LabelError, match=r"got 18446744073709551615 at position 1"):
        xk.sparse_categorical_crossentropy(np.array([0, 2**64 - 1], np.uint64), p, from_logits=True,
                                           ignore_class=-1)
    with pytest.raises(ValueError, match=r"`y_true` class indices must be whole numbers; got 1.5 at position 1"):
        xk.sparse_categorical_crossentropy([0.0, 1.5], p)
    with pytest.raises(ValueError, match=r"whole numbers; got nan at position 0"):
        xk.sparse_categorical_crossentropy([np.nan, 1.0], p)
    with pytest.raises(ValueError, match=r"`y_true` class indices must have the shape of `y_pred` without axis 1, "
                                         r"\(2,\) \(or with length 1 there\); got shape \(3,\)"):
        xk.sparse_categorical_crossentropy([0, 1, 2], p)
    with pytest.raises(TypeError, match=r"`y_true` must hold integer class indices; got dtype bool"):
        xk.sparse_categorical_crossentropy([True, False], p)
    with pytest.raises(TypeError, match=r"`ignore_class` must be None or an integer; got 1.0"):
        xk.sparse_categorical_crossentropy([0, 1], p, ignore_class=1.0)
    # An ignore_class no label dtype can hold is simply never matched.
    np.testing.assert_allclose(
        xk.sparse_categorical_crossentropy(np.array([0, 1], np.uint8), p, ignore_class=-1), [np.log(3)] * 2)


# --------------------------------------------------------------------------
# the module itself
# --------------------------------------------------------------------------

def test_docstring_examples_run():
    results = doctest.testmod(xk, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 8 and results.failed == 0


def test_does_not_import_keras():
    """xent.keras only shares Keras's names: importing it must not import Keras (or torch)."""
    code = "import sys, xent.keras; assert 'keras' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(xent.__file__)))
