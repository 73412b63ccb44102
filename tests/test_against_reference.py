"""xent against its NumPy oracle ``xent.reference``: the main correctness matrix.

Every public loss and primitive is run on the same values as the reference,
which always gets a plain C-contiguous, native-endian copy, so xent's own
layout handling (Fortran order, strides, negative strides, big-endian,
read-only, lists) is checked against an independent path.

A full product of all factors would be exponential, so the matrix is a
covering design:

* every class count C x batch size N, default layout, float32 and float64;
* every layout x dtype x n_threads, on two geometries that span several
  kernel tiles (a tile is 32768 elements), so that threads really split work;
* big-endian / read-only / list inputs, float16 and integer logits in a few
  cases each;
* class axes: last, 1 on 3-D / 4-D arrays, other and negative axes;
* every option of the softmax and sigmoid cross-entropies at least once, alone and combined, with
  all three reductions and both floating dtypes;
* every kind of ``grad_out`` / ``out``.

Each check also asserts the result types (Python ``float`` for sum/mean, an
ndarray of the compute dtype for "none", a gradient of the logits' dtype)
and shapes, and that no input was modified.

Tolerances (relative to the reference, which computes in the same dtype):
float64 1e-12, float32 1e-5, float16 results 2e-3 (one float16 ulp is
~1e-3: two correct float32 results may round to neighbouring float16s); the
absolute floor is a tiny fraction of the largest expected magnitude, for
entries that come out of a cancellation (label-smoothing gradients,
log-softmax near 0).
"""

import contextlib
import copy

import numpy as np
import pytest

import xent
from xent import reference as ref

from conftest import EXTRA_LAYOUTS, LAYOUTS, layout_variant

# counts above this machine's CPUs (3, 4, 8) reach the kernels: see conftest.oversubscribe
pytestmark = pytest.mark.usefixtures("oversubscribe")

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # an optional test dependency (pyproject [test] extra)
    threadpool_limits = None

REDUCTIONS = ("none", "sum", "mean")
THREADS = (1, 2, 3, 8)
FLOATS = (np.float32, np.float64)
KINDS = ("ce_index", "ce_prob", "bce", "primitives")

# (rtol, atol as a fraction of the largest |expected|) per result dtype.
TOLERANCES = {
    np.dtype(np.float64): (1e-12, 1e-13),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (2e-3, 1e-5),
}


# --------------------------------------------------------------------------
# helpers: dtypes, comparisons, snapshots
# --------------------------------------------------------------------------

def compute_dtype(dtype):
    """float16 is computed in float32, integers in float64."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    if dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def grad_dtype(dtype):
    """Gradients (and softmax / log_softmax) keep a floating logits dtype,
    float16 included, in native byte order; integer logits give float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def assert_close(actual, expected, dtype, err_msg=""):
    """``actual`` matches ``expected`` to the tolerance of ``dtype``."""
    dtype = np.dtype(dtype).newbyteorder("=")
    rtol, atol_rel = TOLERANCES[dtype]
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{err_msg}: shape {a.shape} != {e.shape}"
    finite = np.abs(e[np.isfinite(e)])
    scale = float(finite.max()) if finite.size else 0.0
    atol = atol_rel * scale + float(np.finfo(dtype).tiny)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=err_msg)


def plain(a):
    """A private C-contiguous, native-endian ndarray copy of ``a`` (for the
    reference, so that it never sees the layout under test)."""
    if a is None:
        return None
    arr = np.asarray(a)
    return np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C", copy=True)


def snapshot(args):
    """Deep copies of the inputs, to check afterwards that none was modified."""
    return [copy.deepcopy(a) for a in args]


def assert_unchanged(before, args):
    for b, a in zip(before, args):
        if a is None or np.isscalar(a):
            continue
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg="an input was modified")


def sample_shape(shape, axis):
    ax = axis % len(shape)
    return tuple(shape[:ax]) + tuple(shape[ax + 1:])


def check_loss(loss, expected, reduction, cdt, shape, what):
    """Type, dtype and shape of a loss, then its value."""
    if reduction == "none":
        assert isinstance(loss, np.ndarray), f"{what}: {type(loss)}"
        assert loss.dtype == cdt, f"{what}: loss dtype {loss.dtype}, expected {cdt}"
        assert loss.shape == tuple(shape), f"{what}: loss shape {loss.shape}"
    else:
        assert type(loss) is float, f"{what}: {reduction} gave {type(loss)}, not float"
    assert_close(loss, expected, cdt, err_msg=what)


def check_grad(grad, expected, gdt, shape, what):
    assert isinstance(grad, np.ndarray), f"{what}: {type(grad)}"
    assert grad.dtype == gdt, f"{what}: grad dtype {grad.dtype}, expected {gdt}"
    assert grad.shape == tuple(shape), f"{what}: grad shape {grad.shape}"
    assert_close(grad, expected, gdt, err_msg=what)


@contextlib.contextmanager
def openmp_threads(n_threads):
    """The primitives take no ``n_threads`` argument: their team size is
    OpenMP's default, which threadpoolctl sets."""
    if n_threads is None:
        yield
        return
    if threadpool_limits is None:
        pytest.skip("threadpoolctl is not installed; the primitives take no n_threads "
                    "argument, so their thread count can only be set through it")
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        yield


# --------------------------------------------------------------------------
# runners: one public function family against the reference
# --------------------------------------------------------------------------

def check_softmax_ce(logits, target, *, axis=-1, n_threads=None, reductions=REDUCTIONS,
                     **opts):
    """``softmax_cross_entropy`` and ``..._with_grad`` for each reduction (class
    indices or probabilities, by the target's dtype) against the reference."""
    x = np.asarray(logits)
    cdt, gdt = compute_dtype(x.dtype), grad_dtype(x.dtype)
    s_shape = sample_shape(x.shape, axis)
    inputs = [logits, target] + list(opts.values())
    before = snapshot(inputs)
    ref_opts = {k: (plain(v) if k in ("weight", "sample_weight") else v) for k, v in opts.items()}
    for reduction in reductions:
        what = f"softmax_cross_entropy reduction={reduction} n_threads={n_threads}"
        exp_loss, exp_grad = ref.softmax_cross_entropy_with_grad(
            plain(logits), plain(target), axis=axis, reduction=reduction, **ref_opts)
        loss = xent.softmax_cross_entropy(logits, target, axis=axis, reduction=reduction,
                                          n_threads=n_threads, **opts)
        check_loss(loss, exp_loss, reduction, cdt, s_shape, what)
        loss, grad = xent.softmax_cross_entropy_with_grad(
            logits, target, axis=axis, reduction=reduction, n_threads=n_threads, **opts)
        check_loss(loss, exp_loss, reduction, cdt, s_shape, what + " (with_grad)")
        check_grad(grad, exp_grad, gdt, x.shape, what + " (grad)")
    assert_unchanged(before, inputs)


def check_bce(logits, target, *, n_threads=None, reductions=REDUCTIONS, **opts):
    """``sigmoid_binary_cross_entropy`` and ``..._with_grad`` against the reference."""
    x = np.asarray(logits)
    cdt, gdt = compute_dtype(x.dtype), grad_dtype(x.dtype)
    inputs = [logits, target] + list(opts.values())
    before = snapshot(inputs)
    ref_opts = {k: (plain(v) if k in ("weight", "pos_weight") else v) for k, v in opts.items()}
    for reduction in reductions:
        what = f"sigmoid_binary_cross_entropy reduction={reduction} n_threads={n_threads}"
        exp_loss, exp_grad = ref.sigmoid_binary_cross_entropy_with_grad(
            plain(logits), plain(target), reduction=reduction, **ref_opts)
        loss = xent.sigmoid_binary_cross_entropy(logits, target, reduction=reduction,
                                                 n_threads=n_threads, **opts)
        check_loss(loss, exp_loss, reduction, cdt, x.shape, what)
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(
            logits, target, reduction=reduction, n_threads=n_threads, **opts)
        check_loss(loss, exp_loss, reduction, cdt, x.shape, what + " (with_grad)")
        check_grad(grad, exp_grad, gdt, x.shape, what + " (grad)")
    assert_unchanged(before, inputs)


def check_primitives(x, *, axis=-1, n_threads=None):
    """``logsumexp`` (compute dtype), ``log_softmax`` and ``softmax`` (dtype of
    x) against the reference."""
    a = np.asarray(x)
    cdt, gdt = compute_dtype(a.dtype), grad_dtype(a.dtype)
    before = snapshot([x])
    px = plain(x)
    with openmp_threads(n_threads):
        lse = xent.logsumexp(x, axis=axis)
        lsm = xent.log_softmax(x, axis=axis)
        sm = xent.softmax(x, axis=axis)
    # a NumPy scalar where every axis is reduced, as scipy.special.logsumexp
    assert isinstance(lse, (np.ndarray, np.generic)) and lse.dtype == cdt, (type(lse), getattr(lse, "dtype", None))
    assert np.shape(lse) == sample_shape(a.shape, axis)
    assert_close(lse, ref.logsumexp(px, axis=axis), cdt, err_msg="logsumexp")
    check_grad(lsm, ref.log_softmax(px, axis=axis), gdt, a.shape, "log_softmax")
    check_grad(sm, ref.softmax(px, axis=axis), gdt, a.shape, "softmax")
    assert_unchanged(before, [x])


# --------------------------------------------------------------------------
# input generators
# --------------------------------------------------------------------------

def make_logits(rng, shape, dtype):
    """Logits of spread ~3 (losses from ~0 to ~20); small integers for int dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        low = 0 if dtype.kind == "u" else -20
        return np.asarray(rng.integers(low, 20, size=shape), dtype=dtype)
    return np.asarray(3.0 * rng.standard_normal(shape), dtype=dtype)


def make_labels(rng, shape, n_classes, dtype=np.int64):
    return np.asarray(rng.integers(0, n_classes, size=shape), dtype=dtype)


def make_probs(rng, shape, axis, dtype):
    """Soft targets summing to 1 along ``axis``, with exact zeros among them."""
    p = rng.random(shape) ** 3
    p[rng.random(shape) < 0.2] = 0.0
    total = p.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, p / total, 1.0 / shape[axis])
    return p.astype(dtype)


def target_dtype(logits_dtype):
    """Float targets come in the logits' dtype (float64 for integer logits)."""
    dtype = np.dtype(logits_dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def make_target(kind, rng, shape, axis, logits_dtype):
    if kind == "ce_index":
        return make_labels(rng, sample_shape(shape, axis), shape[axis])
    if kind == "ce_prob":
        return make_probs(rng, shape, axis, target_dtype(logits_dtype))
    if kind == "bce":
        return rng.random(shape).astype(target_dtype(logits_dtype))
    return None


def check_kind(kind, logits, target, *, axis=-1, n_threads=None, reductions=REDUCTIONS):
    """Dispatch to the runner of one function family (BCE is elementwise: no axis)."""
    if kind in ("ce_index", "ce_prob"):
        check_softmax_ce(logits, target, axis=axis, n_threads=n_threads, reductions=reductions)
    elif kind == "bce":
        check_bce(logits, target, n_threads=n_threads, reductions=reductions)
    else:
        check_primitives(logits, axis=axis, n_threads=n_threads)


# --------------------------------------------------------------------------
# 1. every class count x batch size (default layout)
# --------------------------------------------------------------------------

CLASS_COUNTS = (1, 2, 10, 1000, 32768)


def batch_sizes(n_classes):
    # 1001 rows of 32768 classes is 33M elements: the NumPy reference alone
    # takes seconds per call on it.  37 rows still give 37 kernel tiles (one
    # row of >= 32768 classes per tile) with a ragged share per thread, and
    # stay ~1M elements like the other large cases.
    return (0, 1, 37) if n_classes == 32768 else (0, 1, 1001)


SHAPE_CASES = [pytest.param(n_classes, n, id=f"C{n_classes}-N{n}")
               for n_classes in CLASS_COUNTS for n in batch_sizes(n_classes)]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n_classes, n", SHAPE_CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_class_count_and_batch_size(kind, n_classes, n, dtype, rng):
    shape = (n, n_classes)
    logits = make_logits(rng, shape, dtype)
    check_kind(kind, logits, make_target(kind, rng, shape, -1, dtype))


# --------------------------------------------------------------------------
# 2. every layout x dtype x n_threads, on two multi-tile geometries
# --------------------------------------------------------------------------

GEOMETRIES = {
    # 301 rows of 257 classes: 127 rows per 32768-element tile -> 3 tiles,
    # the last one partial; C is odd, so no SIMD width divides it.
    "rows301x257": ((301, 257), -1),
    # NCHW with the classes on axis 1: 6000 rows of 7 classes -> 2 tiles.
    # In Fortran order (and reversed, strided) the class axis is not the
    # fastest one, so xent must transpose; BCE treats the shape elementwise.
    "nchw5x7x40x30-axis1": ((5, 7, 40, 30), 1),
}


@pytest.mark.parametrize("n_threads", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("kind", KINDS)
def test_layout_dtype_threads(kind, geometry, layout, dtype, n_threads, rng):
    shape, axis = GEOMETRIES[geometry]
    logits = make_logits(rng, shape, dtype)
    target = make_target(kind, rng, shape, axis, dtype)
    target = None if target is None else layout_variant(target, layout)
    check_kind(kind, layout_variant(logits, layout), target, axis=axis, n_threads=n_threads)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", EXTRA_LAYOUTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("kind", KINDS)
def test_big_endian_read_only_and_list_inputs(kind, geometry, layout, dtype, rng):
    """Logits and targets both big-endian, read-only or nested lists (a list of
    float32 values becomes float64: the expected dtypes follow np.asarray)."""
    shape, axis = GEOMETRIES[geometry]
    logits = make_logits(rng, shape, dtype)
    target = make_target(kind, rng, shape, axis, dtype)
    target = None if target is None else layout_variant(target, layout)
    check_kind(kind, layout_variant(logits, layout), target, axis=axis, n_threads=3)


# --------------------------------------------------------------------------
# 3. class axes
# --------------------------------------------------------------------------

AXIS_CASES = {
    "1d": ((13,), -1),               # one sample: the per-sample loss is 0-d
    "2d-axis0": ((10, 53), 0),       # classes first
    "3d-axis1": ((4, 10, 33), 1),    # (N, C, L)
    "3d-axis-2": ((4, 10, 33), -2),  # the same, negative
    "4d-axis1": ((3, 5, 8, 9), 1),   # (N, C, H, W)
    "4d-axis-3": ((3, 5, 8, 9), -3),
    "4d-axis2": ((3, 5, 8, 9), 2),
    "4d-axis-1": ((3, 5, 8, 9), -1),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", AXIS_CASES)
@pytest.mark.parametrize("kind", ["ce_index", "ce_prob", "primitives"])
def test_class_axis(kind, case, dtype, rng):
    shape, axis = AXIS_CASES[case]
    logits = make_logits(rng, shape, dtype)
    check_kind(kind, logits, make_target(kind, rng, shape, axis, dtype), axis=axis)


@pytest.mark.parametrize("case", ["1d", "3d-axis1", "4d-axis-3"])
def test_class_axis_with_fortran_and_reversed_layouts(case, rng):
    """A non-last class axis combined with a non-C layout, with options on."""
    shape, axis = AXIS_CASES[case]
    n_classes = shape[axis]
    logits = make_logits(rng, shape, np.float64)
    labels = make_labels(rng, sample_shape(shape, axis), n_classes)
    labels[(0,) * labels.ndim] = -100
    sw = rng.uniform(0.5, 2.0, labels.shape)
    check_softmax_ce(layout_variant(logits, "F"), layout_variant(labels, "reversed"),
                     axis=axis, n_threads=2, weight=rng.uniform(0.5, 2.0, n_classes),
                     sample_weight=layout_variant(sw, "strided"), ignore_index=-100,
                     label_smoothing=0.05)
    probs = make_probs(rng, shape, axis, np.float64)
    check_softmax_ce(layout_variant(logits, "reversed"), layout_variant(probs, "F"),
                     axis=axis, n_threads=3, weight=rng.uniform(0.5, 2.0, n_classes),
                     label_smoothing=0.05)


# --------------------------------------------------------------------------
# 4. softmax cross-entropy options: class-index targets
# --------------------------------------------------------------------------

def _set_some(rng, labels, value, fraction=0.3):
    """Labels with about ``fraction`` of them (at least one) set to ``value``."""
    labels = labels.copy()
    mask = rng.random(labels.shape) < fraction
    mask.flat[0] = True
    labels[mask] = value
    return labels


def _weight(rng, c):
    return rng.uniform(0.2, 3.0, c)


def _sample_weight(rng, shape, zeros=False):
    s = rng.uniform(0.0, 2.0, shape)
    if zeros:
        s[rng.random(shape) < 0.3] = 0.0
    return s


# Each case: (rng, labels, C) -> (labels, options).
INDEX_OPTIONS = {
    "weight": lambda rng, y, c: (y, dict(weight=_weight(rng, c))),
    "weight-with-zeros": lambda rng, y, c: (
        y, dict(weight=np.where(np.arange(c) % 3 == 0, 0.0, _weight(rng, c)))),
    "weight-int-list": lambda rng, y, c: (y, dict(weight=[int(v) for v in rng.integers(0, 4, c)])),
    "sample_weight": lambda rng, y, c: (y, dict(sample_weight=_sample_weight(rng, y.shape))),
    "sample_weight-zeros": lambda rng, y, c: (
        y, dict(sample_weight=_sample_weight(rng, y.shape, zeros=True))),
    "weight+sample_weight": lambda rng, y, c: (
        y, dict(weight=_weight(rng, c), sample_weight=_sample_weight(rng, y.shape))),
    "ignore_index-inside": lambda rng, y, c: (_set_some(rng, y, 2), dict(ignore_index=2)),
    "ignore_index-outside": lambda rng, y, c: (_set_some(rng, y, c + 3), dict(ignore_index=c + 3)),
    "ignore_index-minus100": lambda rng, y, c: (_set_some(rng, y, -100), dict(ignore_index=-100)),
    "ignore_index-unused": lambda rng, y, c: (y, dict(ignore_index=-100)),
    # every row ignored: the mean is nan, the gradient all zeros
    "ignore_index-all": lambda rng, y, c: (np.full_like(y, -100), dict(ignore_index=-100)),
    "smoothing0.1": lambda rng, y, c: (y, dict(label_smoothing=0.1)),
    "smoothing1.0": lambda rng, y, c: (y, dict(label_smoothing=1.0)),
    "smoothing+weight": lambda rng, y, c: (
        y, dict(label_smoothing=0.2, weight=_weight(rng, c))),
    "smoothing+ignore_index": lambda rng, y, c: (
        _set_some(rng, y, -100), dict(label_smoothing=0.3, ignore_index=-100)),
    "all-options": lambda rng, y, c: (
        _set_some(rng, y, 1),
        dict(weight=_weight(rng, c), sample_weight=_sample_weight(rng, y.shape, zeros=True),
             ignore_index=1, label_smoothing=0.15)),
    # weights in other layouts: big-endian class weights, strided sample weights
    "weights-bigendian+strided": lambda rng, y, c: (
        y, dict(weight=layout_variant(_weight(rng, c), "bigendian"),
                sample_weight=layout_variant(_sample_weight(rng, y.shape), "strided"))),
    # class indices of any integer width, signed or unsigned
    "labels-int8": lambda rng, y, c: (y.astype(np.int8), {}),
    "labels-uint8": lambda rng, y, c: (y.astype(np.uint8), {}),
    "labels-int16+ignore": lambda rng, y, c: (
        _set_some(rng, y, -100).astype(np.int16), dict(ignore_index=-100)),
    "labels-uint16": lambda rng, y, c: (y.astype(np.uint16), dict(weight=_weight(rng, c))),
    "labels-int32": lambda rng, y, c: (y.astype(np.int32), {}),
    "labels-uint64": lambda rng, y, c: (y.astype(np.uint64), dict(label_smoothing=0.1)),
}

OPTION_GEOMETRIES = {
    "rows200x10": ((200, 10), -1),
    "nchw4x6x5x7-axis1": ((4, 6, 5, 7), 1),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("geometry", OPTION_GEOMETRIES)
@pytest.mark.parametrize("case", INDEX_OPTIONS)
def test_softmax_ce_index_options(case, geometry, dtype, rng):
    shape, axis = OPTION_GEOMETRIES[geometry]
    n_classes = shape[axis]
    logits = make_logits(rng, shape, dtype)
    labels, opts = INDEX_OPTIONS[case](rng, make_labels(rng, sample_shape(shape, axis), n_classes),
                                       n_classes)
    check_softmax_ce(logits, labels, axis=axis, n_threads=2, **opts)


def test_all_ignored_mean_is_nan_and_grad_zero(rng):
    """Spelled out, because the matrix above only compares with the reference."""
    logits = make_logits(rng, (6, 4), np.float64)
    labels = np.full(6, -100)
    loss, grad = xent.softmax_cross_entropy_with_grad(logits, labels, ignore_index=-100)
    assert type(loss) is float and np.isnan(loss)
    assert grad.dtype == np.float64 and not grad.any()
    loss, grad = xent.softmax_cross_entropy_with_grad(logits, labels, ignore_index=-100,
                                                      reduction="sum")
    assert loss == 0.0 and not grad.any()


# --------------------------------------------------------------------------
# 5. softmax cross-entropy options: probability targets
# --------------------------------------------------------------------------

def _unnormalised(rng, p, axis):
    """Rows scaled by factors in [0, 3], one row all zero: rows need not sum to 1."""
    scale = rng.uniform(0.0, 3.0, sample_shape(p.shape, axis))
    scale.flat[0] = 0.0
    return (p * np.expand_dims(scale, axis)).astype(p.dtype)


def _one_hot(rng, p, axis):
    c = p.shape[axis]
    labels = rng.integers(0, c, sample_shape(p.shape, axis))
    return np.moveaxis(np.eye(c, dtype=p.dtype)[labels], -1, axis)


# Each case: (rng, probs, axis) -> (target, options).
PROB_OPTIONS = {
    "soft": lambda rng, p, ax: (p, {}),
    "one-hot": lambda rng, p, ax: (_one_hot(rng, p, ax), {}),
    "unnormalised": lambda rng, p, ax: (_unnormalised(rng, p, ax), {}),
    "weight": lambda rng, p, ax: (p, dict(weight=_weight(rng, p.shape[ax]))),
    "sample_weight": lambda rng, p, ax: (
        p, dict(sample_weight=_sample_weight(rng, sample_shape(p.shape, ax)))),
    "sample_weight-zeros": lambda rng, p, ax: (
        p, dict(sample_weight=_sample_weight(rng, sample_shape(p.shape, ax), zeros=True))),
    "smoothing0.2": lambda rng, p, ax: (p, dict(label_smoothing=0.2)),
    "smoothing1.0": lambda rng, p, ax: (p, dict(label_smoothing=1.0)),
    "smoothing+weight": lambda rng, p, ax: (
        _one_hot(rng, p, ax), dict(label_smoothing=0.1, weight=_weight(rng, p.shape[ax]))),
    "all-options": lambda rng, p, ax: (
        _unnormalised(rng, p, ax),
        dict(weight=_weight(rng, p.shape[ax]), label_smoothing=0.25,
             sample_weight=_sample_weight(rng, sample_shape(p.shape, ax), zeros=True))),
    # targets of another floating dtype than the logits
    "target-float16": lambda rng, p, ax: (p.astype(np.float16), {}),
    "target-float64": lambda rng, p, ax: (p.astype(np.float64), dict(weight=_weight(rng, p.shape[ax]))),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("geometry", OPTION_GEOMETRIES)
@pytest.mark.parametrize("case", PROB_OPTIONS)
def test_softmax_ce_probability_options(case, geometry, dtype, rng):
    shape, axis = OPTION_GEOMETRIES[geometry]
    logits = make_logits(rng, shape, dtype)
    target, opts = PROB_OPTIONS[case](rng, make_probs(rng, shape, axis, dtype), axis)
    check_softmax_ce(logits, target, axis=axis, n_threads=3, **opts)


# --------------------------------------------------------------------------
# 6. sigmoid binary cross-entropy options
# --------------------------------------------------------------------------

def _hard(rng, shape):
    return (rng.random(shape) < 0.4).astype(np.int64)


# Each case: (rng, shape, soft float targets) -> (target, options).
BCE_OPTIONS = {
    "soft": lambda rng, s, t: (t, {}),
    "hard-float": lambda rng, s, t: (_hard(rng, s).astype(t.dtype), {}),
    "targets-int64": lambda rng, s, t: (_hard(rng, s), {}),
    "targets-uint8": lambda rng, s, t: (_hard(rng, s).astype(np.uint8), {}),
    "targets-bool": lambda rng, s, t: (_hard(rng, s).astype(bool), {}),
    "targets-float16": lambda rng, s, t: (t.astype(np.float16), {}),
    "weight-full": lambda rng, s, t: (t, dict(weight=rng.uniform(0, 2, s))),
    "weight-full-zeros": lambda rng, s, t: (
        t, dict(weight=np.where(rng.random(s) < 0.3, 0.0, rng.uniform(0, 2, s)))),
    "weight-(N,1)": lambda rng, s, t: (t, dict(weight=rng.uniform(0, 2, s[:-1] + (1,)))),
    "weight-(C,)": lambda rng, s, t: (t, dict(weight=rng.uniform(0, 2, s[-1:]))),
    "weight-scalar": lambda rng, s, t: (t, dict(weight=0.7)),
    "weight-0d-array": lambda rng, s, t: (t, dict(weight=np.array(1.5))),
    "pos_weight-(C,)": lambda rng, s, t: (t, dict(pos_weight=rng.uniform(0.5, 4, s[-1:]))),
    "pos_weight-(C,)-hard": lambda rng, s, t: (
        _hard(rng, s).astype(bool), dict(pos_weight=rng.uniform(0.5, 4, s[-1:]))),
    "pos_weight-scalar": lambda rng, s, t: (t, dict(pos_weight=3.0)),
    "pos_weight+weight": lambda rng, s, t: (
        t, dict(pos_weight=rng.uniform(0.5, 4, s[-1:]), weight=rng.uniform(0, 2, s[:-1] + (1,)))),
    "weights-bigendian+reversed": lambda rng, s, t: (
        t, dict(pos_weight=layout_variant(rng.uniform(0.5, 4, s[-1:]), "bigendian"),
                weight=layout_variant(rng.uniform(0, 2, s), "reversed"))),
    "smoothing0.1": lambda rng, s, t: (_hard(rng, s), dict(label_smoothing=0.1)),
    "smoothing1.0": lambda rng, s, t: (t, dict(label_smoothing=1.0)),
    "all-options": lambda rng, s, t: (
        _hard(rng, s).astype(np.int32),
        dict(label_smoothing=0.2, pos_weight=rng.uniform(0.5, 4, s[-1:]),
             weight=rng.uniform(0, 2, s))),
}

BCE_GEOMETRIES = {
    "rows200x10": (200, 10),
    # wider than the kernel's 1024-element weight stretch (and its repeating buffer)
    "rows30x1500": (30, 1500),
    "3d4x6x5": (4, 6, 5),
    "1d37": (37,),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("geometry", BCE_GEOMETRIES)
@pytest.mark.parametrize("case", BCE_OPTIONS)
def test_bce_options(case, geometry, dtype, rng):
    shape = BCE_GEOMETRIES[geometry]
    logits = make_logits(rng, shape, dtype)
    target, opts = BCE_OPTIONS[case](rng, shape, rng.random(shape).astype(dtype))
    check_bce(logits, target, n_threads=2, **opts)


# --------------------------------------------------------------------------
# 7. float16 and integer logits
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("kind", KINDS)
def test_float16_logits(kind, geometry, layout, rng):
    """Computed in float32; the gradient, softmax and log_softmax stay float16,
    the "none" losses and logsumexp are float32."""
    shape, axis = GEOMETRIES[geometry]
    logits = make_logits(rng, shape, np.float16)
    target = make_target(kind, rng, shape, axis, np.float16)
    target = None if target is None else layout_variant(target, layout)
    check_kind(kind, layout_variant(logits, layout), target, axis=axis, n_threads=3)


def test_float16_with_options(rng):
    logits = make_logits(rng, (300, 12), np.float16)
    labels = _set_some(rng, make_labels(rng, 300, 12), -100)
    check_softmax_ce(logits, labels, weight=_weight(rng, 12), label_smoothing=0.1,
                     sample_weight=_sample_weight(rng, 300), ignore_index=-100)
    check_bce(logits, _hard(rng, logits.shape), pos_weight=rng.uniform(0.5, 4, 12),
              weight=rng.uniform(0, 2, (300, 1)), label_smoothing=0.05)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", KINDS)
def test_integer_logits(kind, dtype, rng):
    """Integer logits are computed in float64 and give float64 results."""
    shape = (150, 11)
    logits = make_logits(rng, shape, dtype)
    check_kind(kind, logits, make_target(kind, rng, shape, -1, dtype), n_threads=2)


def test_integer_logits_on_class_axis_1(rng):
    shape, axis = (3, 5, 8, 9), 1
    logits = make_logits(rng, shape, np.int16)
    labels = make_labels(rng, sample_shape(shape, axis), shape[axis])
    check_softmax_ce(layout_variant(logits, "F"), labels, axis=axis,
                     weight=_weight(rng, shape[axis]), label_smoothing=0.1)
    check_primitives(layout_variant(logits, "reversed"), axis=axis)


# --------------------------------------------------------------------------
# 8. grad_out (and out= of the primitives)
# --------------------------------------------------------------------------

def _grad_out(kind, logits):
    """The gradient buffer for a grad_out case: ``logits`` itself or a new one."""
    if kind == "inplace":
        return logits
    if kind == "fresh":
        return np.empty_like(logits, order="C")
    if kind == "fortran":
        return np.empty(logits.shape, dtype=logits.dtype, order="F")
    if kind == "strided":  # a non-contiguous view into a larger buffer
        big = np.empty(tuple(2 * s for s in logits.shape), dtype=logits.dtype)
        return big[tuple(slice(None, None, 2) for _ in logits.shape)]
    if kind == "reversed":
        return np.empty_like(logits)[tuple(slice(None, None, -1) for _ in logits.shape)]
    raise ValueError(kind)


GRAD_OUT_CASES = [
    # (grad_out kind, logits dtype, logits layout)
    pytest.param("fresh", np.float64, "C", id="fresh-float64"),
    pytest.param("fresh", np.float32, "C", id="fresh-float32"),
    pytest.param("fortran", np.float64, "C", id="fortran-float64"),
    pytest.param("fortran", np.float32, "F", id="fortran-float32-Flogits"),
    pytest.param("strided", np.float64, "C", id="strided-float64"),
    pytest.param("reversed", np.float32, "C", id="reversed-float32"),
    pytest.param("inplace", np.float64, "C", id="inplace-float64"),
    pytest.param("inplace", np.float32, "C", id="inplace-float32"),
    pytest.param("inplace", np.float64, "F", id="inplace-float64-Flogits"),
    pytest.param("inplace", np.float32, "strided", id="inplace-float32-strided-logits"),
    pytest.param("fresh", np.float16, "C", id="fresh-float16"),
    pytest.param("fortran", np.float16, "C", id="fortran-float16"),
    pytest.param("inplace", np.float16, "C", id="inplace-float16"),
]

GRAD_OUT_GEOMETRIES = {
    "rows301x257": ((301, 257), -1),
    "nchw4x6x5x7-axis1": ((4, 6, 5, 7), 1),
}


@pytest.mark.parametrize("geometry", GRAD_OUT_GEOMETRIES)
@pytest.mark.parametrize("out_kind, dtype, layout", GRAD_OUT_CASES)
@pytest.mark.parametrize("kind", ["ce_index", "ce_prob", "bce"])
def test_grad_out(kind, out_kind, dtype, layout, geometry, rng):
    shape, axis = GRAD_OUT_GEOMETRIES[geometry]
    base = make_logits(rng, shape, dtype)
    target = make_target(kind, rng, shape, axis, dtype)
    opts = {}
    if kind == "ce_index":
        opts = dict(weight=_weight(rng, shape[axis]), label_smoothing=0.1, axis=axis)
    elif kind == "ce_prob":
        opts = dict(sample_weight=_sample_weight(rng, sample_shape(shape, axis)), axis=axis)
    else:
        opts = dict(pos_weight=rng.uniform(0.5, 4, shape[-1:]))
    ref_fn = (ref.sigmoid_binary_cross_entropy_with_grad if kind == "bce"
              else ref.softmax_cross_entropy_with_grad)
    fn = (xent.sigmoid_binary_cross_entropy_with_grad if kind == "bce"
          else xent.softmax_cross_entropy_with_grad)
    cdt, gdt = compute_dtype(dtype), grad_dtype(dtype)
    loss_shape = shape if kind == "bce" else sample_shape(shape, axis)
    target_before = target.copy()
    for reduction in REDUCTIONS:
        what = f"grad_out={out_kind} reduction={reduction}"
        # a fresh logits array per call: in place, the previous call overwrote it
        logits = layout_variant(base, layout)
        exp_loss, exp_grad = ref_fn(plain(logits), target, reduction=reduction, **opts)
        grad_out = _grad_out(out_kind, logits)
        loss, grad = fn(logits, target, reduction=reduction, grad_out=grad_out, n_threads=3,
                        **opts)
        assert grad is grad_out, f"{what}: the gradient was not returned in grad_out"
        check_loss(loss, exp_loss, reduction, cdt, loss_shape, what)
        check_grad(grad, exp_grad, gdt, shape, what)
        if out_kind != "inplace":
            np.testing.assert_array_equal(logits, base, err_msg=f"{what}: logits modified")
    np.testing.assert_array_equal(target, target_before, err_msg="target modified")


@pytest.mark.parametrize("geometry", GRAD_OUT_GEOMETRIES)
@pytest.mark.parametrize("out_kind, dtype, layout", GRAD_OUT_CASES)
@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_primitive_out(name, out_kind, dtype, layout, geometry, rng):
    shape, axis = GRAD_OUT_GEOMETRIES[geometry]
    base = make_logits(rng, shape, dtype)
    x = layout_variant(base, layout)
    expected = getattr(ref, name)(plain(x), axis=axis)
    out = _grad_out(out_kind, x)
    result = getattr(xent, name)(x, axis=axis, out=out)
    assert result is out, "the result was not returned in out"
    check_grad(result, expected, grad_dtype(dtype), shape, f"{name} out={out_kind}")
    if out_kind != "inplace":
        np.testing.assert_array_equal(x, base, err_msg="x modified")
