"""Numerical correctness of the compiled kernels against independent oracles.

Nothing here checks a kernel against itself.  The oracles are

* central finite differences in float64 (every ``_with_grad`` option);
* mathematical identities between different code paths (class indices vs
  one-hot probabilities, 2-class softmax vs sigmoid, label smoothing vs
  smoothed probabilities, shift invariance);
* ``scipy.special`` (or mpmath when SciPy is missing) for the primitives;
* closed forms for the special values (-inf masks, NaN, infinite and huge
  logits, tiny losses, empty reductions), pinned exactly;
* ``math.fsum`` for the reductions, which are accumulated in float64.
"""

import math
import warnings

import numpy as np
import pytest

import xent

try:
    from scipy import special as scipy_special
except ImportError:  # pragma: no cover - SciPy is optional; mpmath is the fallback
    scipy_special = None

mpmath = pytest.importorskip("mpmath", reason="mpmath is the arbitrary-precision oracle")

REDUCTIONS = ["none", "sum", "mean"]
DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def total(loss):
    """The scalar whose gradient ``_with_grad`` returns: for "none", the sum
    of the per-sample losses (summed exactly, so FD noise is only the kernel's)."""
    if np.ndim(loss) == 0:
        return float(loss)
    return math.fsum(np.asarray(loss, dtype=np.float64).ravel())


def finite_difference(f, x, h=1e-6):
    """Central differences of the scalar function ``f`` at the float64 array ``x``."""
    x = np.array(x, dtype=np.float64)          # private, contiguous copy we perturb
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        up = f(x)
        flat[k] = old - h
        down = f(x)
        flat[k] = old
        gflat[k] = (up - down) / (2 * h)
    return g


def ulps(actual, expected):
    """Elementwise distance in units of the last place of ``expected`` (its dtype),
    floored at the smallest normal number; equal values (infs too) are 0 apart."""
    expected = np.asarray(expected)
    dt = expected.dtype
    a = np.asarray(actual, dtype=np.float64)
    e = expected.astype(np.float64)
    unit = np.maximum(np.spacing(np.abs(expected)).astype(np.float64), np.finfo(dt).tiny)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - e) / unit
    return np.where(a == e, 0.0, d)


def assert_ulps(actual, expected, k):
    d = ulps(actual, expected)
    assert np.all(d <= k), f"max {np.nanmax(d)} ulp > {k}: {actual!r} vs {expected!r}"


def bitwise_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


def close(actual, expected, dtype):
    """Agreement of two differently computed results: a few ulps of the dtype,
    relative to each array's scale (entries near 0 are compared absolutely)."""
    tol = 1e-13 if np.dtype(dtype) == np.float64 else 2e-6
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=tol, atol=tol * scale)


def one_hot(y, c, dtype):
    return np.eye(c, dtype=dtype)[y]


# --------------------------------------------------------------------------
# 1. gradients against central finite differences (float64)
# --------------------------------------------------------------------------

def _ce_case(name, rng):
    """(logits, target, kwargs) for one softmax cross-entropy option set."""
    n, c = 6, 5
    x = rng.normal(scale=1.5, size=(n, c))
    y = rng.integers(0, c, size=n)
    w = rng.uniform(0.3, 2.5, size=c)
    s = rng.uniform(0.2, 2.0, size=n)
    soft = rng.uniform(0, 1, size=(n, c))          # rows deliberately not normalised
    if name == "index":
        return x, y, {}
    if name == "index-weight":
        return x, y, {"weight": w}
    if name == "index-sample_weight":
        return x, y, {"sample_weight": s}
    if name == "index-ignore-outside":
        y[[1, 4]] = -100
        return x, y, {"ignore_index": -100}
    if name == "index-ignore-inside":
        y[[0, 3]] = 2                             # ignore_index may be a real class
        return x, y, {"ignore_index": 2}
    if name == "index-smoothing":
        return x, y, {"label_smoothing": 0.2}
    if name == "index-all":
        y[2] = -1
        return x, y, {"weight": w, "sample_weight": s, "ignore_index": -1, "label_smoothing": 0.3}
    if name == "prob":
        return x, soft, {}
    if name == "prob-weight":
        return x, soft, {"weight": w}
    if name == "prob-sample_weight":
        return x, soft, {"sample_weight": s}
    if name == "prob-smoothing":
        return x, soft, {"label_smoothing": 0.25}
    if name == "prob-all":
        return x, soft, {"weight": w, "sample_weight": s, "label_smoothing": 0.1}
    if name == "index-axis1-3d":
        x3 = rng.normal(size=(2, 4, 3))           # (N, C, H), classes on axis 1
        y3 = rng.integers(0, 4, size=(2, 3))
        return x3, y3, {"axis": 1, "weight": rng.uniform(0.5, 2, size=4),
                        "sample_weight": rng.uniform(0.5, 2, size=(2, 3)), "label_smoothing": 0.1}
    if name == "prob-axis1-3d":
        x3 = rng.normal(size=(2, 4, 3))
        t3 = rng.uniform(size=(2, 4, 3))
        return x3, t3, {"axis": 1, "weight": rng.uniform(0.5, 2, size=4), "label_smoothing": 0.1}
    raise AssertionError(name)


CE_CASES = ["index", "index-weight", "index-sample_weight", "index-ignore-outside",
            "index-ignore-inside", "index-smoothing", "index-all", "prob", "prob-weight",
            "prob-sample_weight", "prob-smoothing", "prob-all", "index-axis1-3d",
            "prob-axis1-3d"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CE_CASES)
def test_softmax_ce_gradient_matches_finite_differences(rng, case, reduction):
    x, target, kw = _ce_case(case, rng)
    loss, grad = xent.softmax_cross_entropy_with_grad(x, target, reduction=reduction, **kw)
    assert grad.shape == x.shape and grad.dtype == np.float64

    def f(z):
        return total(xent.softmax_cross_entropy(z, target, reduction=reduction, **kw))

    # the fused and loss-only paths agree (to rounding: they may sum in another order)
    assert total(loss) == pytest.approx(f(x), rel=float(8 * np.finfo(np.float64).eps))
    np.testing.assert_allclose(grad, finite_difference(f, x), rtol=1e-6, atol=1e-8)
    if "ignore_index" in kw:
        ignored = target == kw["ignore_index"]
        assert np.all(np.moveaxis(grad, kw.get("axis", -1), -1)[ignored] == 0)


def _bce_case(name, rng):
    shape = (4, 3)
    x = rng.normal(scale=2.0, size=shape)
    soft = rng.uniform(size=shape)
    if name == "soft":
        return x, soft, {}
    if name == "binary-int":
        return x, rng.integers(0, 2, size=shape), {}
    if name == "binary-bool":
        return x, rng.integers(0, 2, size=shape).astype(bool), {}
    if name == "weight-full":
        return x, soft, {"weight": rng.uniform(0.2, 2, size=shape)}
    if name == "weight-row":
        return x, soft, {"weight": rng.uniform(0.2, 2, size=(4, 1))}
    if name == "pos_weight":
        return x, soft, {"pos_weight": rng.uniform(0.5, 4, size=3)}
    if name == "smoothing":
        return x, rng.integers(0, 2, size=shape).astype(np.float64), {"label_smoothing": 0.2}
    if name == "all-3d":
        x3 = rng.normal(scale=2.0, size=(2, 3, 4))
        return x3, rng.uniform(size=(2, 3, 4)), {
            "weight": rng.uniform(0.2, 2, size=(3, 1)), "pos_weight": rng.uniform(0.5, 4, size=4),
            "label_smoothing": 0.1}
    raise AssertionError(name)


BCE_CASES = ["soft", "binary-int", "binary-bool", "weight-full", "weight-row", "pos_weight",
             "smoothing", "all-3d"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", BCE_CASES)
def test_bce_gradient_matches_finite_differences(rng, case, reduction):
    x, target, kw = _bce_case(case, rng)
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, target, reduction=reduction, **kw)
    assert grad.shape == x.shape and grad.dtype == np.float64

    def f(z):
        return total(xent.sigmoid_binary_cross_entropy(z, target, reduction=reduction, **kw))

    assert total(loss) == pytest.approx(f(x), rel=float(8 * np.finfo(np.float64).eps))
    np.testing.assert_allclose(grad, finite_difference(f, x), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# 2. identities between code paths
# --------------------------------------------------------------------------

INDEX_VS_ONEHOT = {
    "plain": {},
    "weight": {"weight": True},
    "sample_weight": {"sample_weight": True},
    "weight+sample_weight": {"weight": True, "sample_weight": True},
    # PyTorch's smoothing of class indices, q_c = (1-eps) w_y [c=y] + (eps/C) w_c,
    # equals the smoothed one-hot probabilities times w, so it holds with weight too.
    "smoothing": {"label_smoothing": 0.15},
    "weight+smoothing": {"weight": True, "label_smoothing": 0.15},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", list(INDEX_VS_ONEHOT), ids=str)
def test_class_indices_equal_one_hot_probabilities(rng, dtype, opts):
    opt = INDEX_VS_ONEHOT[opts]
    n, c = 40, 7
    x = rng.normal(scale=2, size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    t = one_hot(y, c, dtype)
    w = rng.uniform(0.2, 3, size=c).astype(dtype) if opt.get("weight") else None
    s = rng.uniform(0.1, 2, size=n).astype(dtype) if opt.get("sample_weight") else None
    kw = {"weight": w, "sample_weight": s, "label_smoothing": opt.get("label_smoothing", 0.0)}

    # "none" and "sum": the same numbers, loss and gradient.
    results = {}
    for reduction in ("none", "sum"):
        li, gi = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction, **kw)
        lp, gp = xent.softmax_cross_entropy_with_grad(x, t, reduction=reduction, **kw)
        close(li, lp, dtype)
        close(gi, gp, dtype)
        results[reduction] = (li, gi, lp, gp)

    # "mean": same numerator, different denominators by design (PyTorch):
    # class indices divide by sum_i s_i w_{y_i}, probabilities by sum_i s_i.
    # Each is checked against its own "sum" (the two sums agree only to the
    # rounding of the float32 per-row values, checked above).
    s64 = np.ones(n) if s is None else s.astype(np.float64)
    wy64 = np.ones(n) if w is None else w.astype(np.float64)[y]
    den_index = math.fsum(s64 * wy64)
    den_prob = math.fsum(s64)
    sum_i, gsum_i, sum_p, gsum_p = results["sum"]
    mi, gmi = xent.softmax_cross_entropy_with_grad(x, y, reduction="mean", **kw)
    mp, gmp = xent.softmax_cross_entropy_with_grad(x, t, reduction="mean", **kw)
    np.testing.assert_allclose(mi, sum_i / den_index, rtol=1e-13)
    np.testing.assert_allclose(mp, sum_p / den_prob, rtol=1e-13)
    close(gmi, gsum_i.astype(np.float64) / den_index, dtype)
    close(gmp, gsum_p.astype(np.float64) / den_prob, dtype)
    if w is not None:          # the denominators really differ, so must the means
        assert abs(mi - mp) > 1e-3 * abs(mp)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_two_class_softmax_equals_sigmoid_bce(rng, dtype, reduction):
    """softmax([0, z])_1 = sigmoid(z), so CE on logits [0, z] with class y = t is BCE(z, t):
    loss_CE = log(1 + e^z) - t z = loss_BCE.  The gradients: dCE/dx_1 = p_1 - t =
    sigmoid(z) - t = dBCE/dz and dCE/dx_0 = p_0 - (1 - t) = -(sigmoid(z) - t), so
    grad_BCE = grad_CE[:, 1] = -grad_CE[:, 0] = (grad_CE[:, 1] - grad_CE[:, 0]) / 2.
    It holds for soft t with probability targets [1 - t, t], and "mean" divides by N
    (rows for CE, elements for BCE) on both sides."""
    n = 64
    z = np.concatenate([rng.normal(scale=3, size=n - 8),
                        [30.0, -30.0, 80.0, -80.0, 1e-3, -1e-3, 0.0, 15.0]]).astype(dtype)
    logits = np.stack([np.zeros_like(z), z], axis=1)
    hard = rng.integers(0, 2, size=n)
    soft = rng.uniform(size=n).astype(dtype)
    eps = np.finfo(dtype).eps

    for t_ce, t_bce in [(hard, hard.astype(dtype)),
                        (np.stack([1 - soft, soft], axis=1), soft)]:
        l_ce, g_ce = xent.softmax_cross_entropy_with_grad(logits, t_ce, reduction=reduction)
        l_b, g_b = xent.sigmoid_binary_cross_entropy_with_grad(z, t_bce, reduction=reduction)
        np.testing.assert_allclose(l_ce, l_b, rtol=8 * eps, atol=0)
        # sigmoid(z) - t cancels near sigmoid(z) = t: the accuracy bound holds it
        # to an absolute few eps (scaled by 1/N for "mean").
        atol = 8 * eps / (n if reduction == "mean" else 1)
        np.testing.assert_allclose(g_ce[:, 1], g_b, rtol=8 * eps, atol=atol)
        np.testing.assert_allclose(-g_ce[:, 0], g_b, rtol=8 * eps, atol=atol)

    # Class weights [w0, w1] on hard labels are a per-element BCE weight w_t.
    w = np.array([0.5, 2.0], dtype=dtype)
    if reduction != "mean":   # (CE's mean divides by sum w_y, BCE's by N)
        l_ce, g_ce = xent.softmax_cross_entropy_with_grad(logits, hard, weight=w, reduction=reduction)
        l_b, g_b = xent.sigmoid_binary_cross_entropy_with_grad(z, hard, weight=w[hard], reduction=reduction)
        np.testing.assert_allclose(l_ce, l_b, rtol=8 * eps)
        np.testing.assert_allclose(g_ce[:, 1], g_b, rtol=8 * eps, atol=16 * eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps_ls", [0.1, 0.5, 1.0])
def test_label_smoothing_equals_smoothed_probabilities(rng, dtype, reduction, eps_ls):
    n, c = 30, 6
    x = rng.normal(scale=2, size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    t = ((1 - eps_ls) * one_hot(y, c, np.float64) + eps_ls / c).astype(dtype)
    li, gi = xent.softmax_cross_entropy_with_grad(x, y, label_smoothing=eps_ls, reduction=reduction)
    lp, gp = xent.softmax_cross_entropy_with_grad(x, t, reduction=reduction)
    # t is rounded to the dtype once; in float32 that is a relative 6e-8 of eps/C.
    close(li, lp, dtype)
    close(gi, gp, dtype)


# -- primitives against scipy.special (mpmath when SciPy is absent) --------

def _oracle_primitives(x, axis):
    """(logsumexp, log_softmax, softmax) of float64 ``x``."""
    if scipy_special is not None:
        return (scipy_special.logsumexp(x, axis=axis), scipy_special.log_softmax(x, axis=axis),
                scipy_special.softmax(x, axis=axis))
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    lse = np.empty(rows.shape[0])
    with mpmath.workdps(40):
        for i, r in enumerate(rows):
            lse[i] = float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in r)))
        ls = np.array([[float(mpmath.mpf(float(v)) - mpmath.log(mpmath.fsum(
            mpmath.exp(mpmath.mpf(float(u))) for u in r))) for v in r] for r in rows])
    lse = lse.reshape(moved.shape[:-1])
    log_sm = np.moveaxis(ls.reshape(moved.shape), -1, axis)
    return lse, log_sm, np.exp(log_sm)


PRIMITIVE_SHAPES = [((9, 5), -1), ((9, 5), 0), ((3, 4, 5), 1), ((3, 5000), -1), ((17,), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", PRIMITIVE_SHAPES)
def test_primitives_match_scipy(rng, dtype, shape, axis):
    # Dyadic logits k/256, |x| <= 32, so that x - max(x) is exact in float32 too:
    # the one rounding no working-precision method avoids is not in the way.
    x = (rng.integers(-1500, 1500, size=shape) / 256.0).astype(dtype)
    if shape == (3, 5000):
        x[0, 4000] = 30.0          # the max in a later 2048-wide block of the row
        x[1, :2048] -= 20.0        # the first block far below the max
    lse_e, lsm_e, sm_e = _oracle_primitives(x.astype(np.float64), axis)
    tol = 8 * np.finfo(dtype).eps
    # lse = m + log(sum) and log_softmax = (x - m) - log(sum) are sums of terms
    # as large as |x|: accurate to a few eps relative to that, not to the result.
    atol = tol * np.max(np.abs(x))
    np.testing.assert_allclose(xent.logsumexp(x, axis=axis), lse_e, rtol=tol, atol=atol)
    np.testing.assert_allclose(xent.log_softmax(x, axis=axis), lsm_e, rtol=tol, atol=atol)
    np.testing.assert_allclose(xent.softmax(x, axis=axis), sm_e, rtol=tol, atol=np.finfo(dtype).tiny)
    assert xent.log_softmax(x, axis=axis).dtype == dtype
    assert xent.softmax(x, axis=axis).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_primitive_special_rows(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, -inf, 1.0],       # a mask
                  [-inf, -inf, -inf],     # all masked
                  [2.0, inf, 0.0],        # +inf
                  [0.0, nan, 1.0],        # NaN
                  [1.0, 1.0, 1.0]], dtype=dtype)
    lse = xent.logsumexp(x)
    # logsumexp follows scipy.special.logsumexp on special rows.
    with np.errstate(all="ignore"):
        lse64 = np.log(np.sum(np.exp(x[[0, 4]].astype(np.float64)), axis=1))
    np.testing.assert_allclose(lse[[0, 4]], lse64, rtol=4 * np.finfo(dtype).eps)
    assert np.isneginf(lse[1]) and np.isposinf(lse[2]) and np.isnan(lse[3])
    if scipy_special is not None:
        with np.errstate(all="ignore"):
            expected = scipy_special.logsumexp(x.astype(np.float64), axis=1)
        assert np.array_equal(np.isnan(lse), np.isnan(expected))
        assert np.all(lse[1:3] == expected[1:3])
    lsm, sm = xent.log_softmax(x), xent.softmax(x)
    # the masked class: exactly -inf / 0; bad rows: NaN across the row only
    assert np.isneginf(lsm[0, 1]) and sm[0, 1] == 0
    assert np.all(np.isfinite(lsm[[0, 4]][:, [0, 2]]))
    assert np.all(np.isnan(lsm[1:4])) and np.all(np.isnan(sm[1:4]))
    assert np.all(sm[4] == sm[4, 0])


# -- shift invariance -------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift", [64.0, -1024.0, 3.0])
def test_shift_invariance(rng, dtype, shift):
    """Dyadic logits k/512 with |x| <= 8 plus a dyadic shift stay exact in float32,
    so softmax quantities must not move by more than a couple of ulps."""
    n, c = 50, 9
    x = (rng.integers(-4096, 4097, size=(n, c)) / 512.0).astype(dtype)
    xs = x + dtype(shift)
    assert np.array_equal(xs - dtype(shift), x)       # the shift is exact
    y = rng.integers(0, c, size=n)
    t = rng.uniform(size=(n, c)).astype(dtype)
    w = rng.uniform(0.5, 2, size=c).astype(dtype)
    for target, kw in [(y, {}), (y, {"weight": w, "label_smoothing": 0.1}),
                       (t, {}), (t, {"weight": w, "label_smoothing": 0.1})]:
        l0, g0 = xent.softmax_cross_entropy_with_grad(x, target, reduction="none", **kw)
        l1, g1 = xent.softmax_cross_entropy_with_grad(xs, target, reduction="none", **kw)
        assert_ulps(l1, l0, 2)
        assert_ulps(g1, g0, 2)
    assert_ulps(xent.log_softmax(xs), xent.log_softmax(x), 2)
    assert_ulps(xent.softmax(xs), xent.softmax(x), 2)
    # lse itself moves with the shift: lse(x + a) = lse(x) + a, rounded once more.
    expected = (xent.logsumexp(x).astype(np.float64) + shift).astype(dtype)
    assert_ulps(xent.logsumexp(xs), expected, 2)


# --------------------------------------------------------------------------
# 3. special values, pinned exactly
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["index", "index-weight", "prob", "prob-weight"])
def test_masked_non_target_class_contributes_exactly_zero(rng, dtype, kind):
    """A -inf logit at a class that is not the target (soft target 0 there)
    contributes exactly 0: its gradient entry is exactly 0, and the rest is

    * bitwise what it is when that logit is instead finite but so far below the
      max that exp underflows to exactly 0 (same row length, same positions, so
      the same summation order: any -inf-specific arithmetic would show);
    * what it is for the row with that class removed, to the rounding of a sum
      reordered by the vector lanes (4 ulp for the loss; the gradient
      to a few eps of the row's largest entry, as prob-target entries
      w_c (Q p_c - t_c) may cancel).
    """
    n, c = 12, 37                                       # more than one vector, a tail
    x = rng.normal(scale=2, size=(n, c)).astype(dtype)
    masked = np.array([3, 5, 17, 36])
    keep = np.setdiff1d(np.arange(c), masked)
    y = rng.choice(keep, size=n)
    x[0, keep[:3]] = x[0].max()                         # ties at the max, too
    negligible = x.copy()
    negligible[:, masked] = x.max(axis=1, keepdims=True) - dtype(1e4)   # exp(...) == 0
    x[:, masked] = -np.inf
    w = rng.uniform(0.5, 2, size=c).astype(dtype) if kind.endswith("weight") else None
    if kind.startswith("prob"):
        t = rng.uniform(size=(n, c)).astype(dtype)
        t[:, masked] = 0                                # soft target 0 at the mask
        target, target_kept = t, t[:, keep]
    else:
        target, target_kept = y, np.searchsorted(keep, y)
    w_kept = None if w is None else w[keep]
    eps = np.finfo(dtype).eps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reduction in ("none", "sum"):
            l, g = xent.softmax_cross_entropy_with_grad(x, target, weight=w, reduction=reduction)
            assert np.all(np.isfinite(l)) and np.all(np.isfinite(g))
            assert np.all(g[:, masked] == 0)
            ln, gn = xent.softmax_cross_entropy_with_grad(negligible, target, weight=w,
                                                          reduction=reduction)
            if dtype == np.float64:
                assert bitwise_equal(g, gn) and bitwise_equal(np.asarray(l), np.asarray(ln))
            else:
                # float32 blocks whose finite logits span more than 80 sum
                # their exps in double precision (tiny-loss accuracy); a -inf
                # does not count toward that span, a finite far-below logit
                # does, so the two rows take different (both exact) routes
                np.testing.assert_allclose(g, gn, rtol=4 * eps, atol=4 * eps * np.abs(g).max())
                np.testing.assert_allclose(l, ln, rtol=4 * eps)
            lk, gk = xent.softmax_cross_entropy_with_grad(x[:, keep], target_kept, weight=w_kept,
                                                          reduction=reduction)
            row_scale = np.max(np.abs(gk), axis=1, keepdims=True)
            assert np.all(np.abs(g[:, keep] - gk) <= 8 * eps * row_scale)
            if reduction == "none":
                assert_ulps(l, lk, 4)
            else:
                assert l == pytest.approx(lk, rel=float(4 * eps))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_target_gives_inf_loss_and_finite_gradient(dtype, reduction):
    """A -inf target with finite others: loss +inf, gradient finite, and the target
    entry exactly -1 * scale (softmax_y = 0 exactly; no smoothing, no weight).
    C runs over many row sizes, so sum_j exp(x_j - m) takes many values."""
    cs = list(range(2, 70)) * 2
    c_max = max(cs)
    n = len(cs)
    x = np.full((n, c_max), -np.inf, dtype=dtype)
    for i, c in enumerate(cs):
        x[i, :c] = 0.0                                  # c classes, all ties ...
        if i >= n // 2:
            x[i, c // 2] = 0.5                          # ... or all but one
    y = np.array([c - 1 for c in cs])
    x[np.arange(n), y] = -np.inf                        # the target is masked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction)
    assert np.all(np.isfinite(grad))
    problems = []                       # report the loss and the gradient independently
    if not np.all(np.isposinf(loss)):
        problems.append(f"{reduction} loss of +inf per-sample losses is {loss!r}, not +inf")
    scale = 1.0 / n if reduction == "mean" else 1.0
    expected = dtype(-1.0 * scale)
    got = grad[np.arange(n), y]
    bad = [cs[i] for i in np.flatnonzero(got != expected)]
    if bad:
        problems.append(f"target gradient != {expected!r} for C in {bad}: "
                        f"{got[got != expected].tolist()}")
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ["prob", "weight", "smoothing"])
def test_masked_target_variants(dtype, variant):
    """The same with a one-hot probability target at the mask (exactly -1), class
    weights (exactly -w_y) and label smoothing (finite; eps/C of the mass is on
    the mask, so the loss stays +inf)."""
    x = np.array([[-np.inf, 0.0, 1.0, -2.0], [3.0, -np.inf, 3.0, 0.0]], dtype=dtype)
    y = np.array([0, 1])
    w = np.array([0.5, 2.0, 1.0, 1.0], dtype=dtype)
    if variant == "prob":
        target, kw, expected = one_hot(y, 4, dtype), {}, [-1.0, -1.0]
    elif variant == "weight":
        target, kw, expected = y, {"weight": w}, [-0.5, -2.0]
    else:
        target, kw, expected = y, {"label_smoothing": 0.1}, None
    loss, grad = xent.softmax_cross_entropy_with_grad(x, target, reduction="none", **kw)
    assert np.all(np.isfinite(grad))
    if expected is not None:
        assert grad[[0, 1], [0, 1]].tolist() == expected
    assert np.all(np.isposinf(loss)), f"per-sample losses {loss!r}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", ["all-inf", "pos-inf", "nan-last", "nan-first", "nan-among-masks"])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_bad_row_is_nan_for_that_row_only(rng, dtype, bad, kind):
    n, c = 7, 5
    x = rng.normal(size=(n, c)).astype(dtype)
    k = 3                                               # the bad row
    if bad == "all-inf":
        x[k] = -np.inf
    elif bad == "pos-inf":
        x[k, 2] = np.inf
    elif bad == "nan-last":
        x[k, 4] = np.nan
    elif bad == "nan-first":
        x[k, 0] = np.nan
    else:                                               # NaN and otherwise only masks
        x[k] = -np.inf
        x[k, 2] = np.nan
    y = rng.integers(0, c, size=n)
    target = y if kind == "index" else rng.uniform(size=(n, c)).astype(dtype)
    others = np.arange(n) != k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.softmax_cross_entropy_with_grad(x, target, reduction="none")
        lo, go = xent.softmax_cross_entropy_with_grad(x[others], target[others], reduction="none")
        assert np.isnan(loss[k]) and np.all(np.isnan(grad[k]))
        assert bitwise_equal(loss[others], lo)
        assert bitwise_equal(grad[others], go)
        # "sum" and "mean" are NaN; the other rows' gradients do not change
        # (compared, for "mean", with the same batch where row k is finite).
        finite = x.copy()
        finite[k] = 0.0
        for reduction in ("sum", "mean"):
            value, g = xent.softmax_cross_entropy_with_grad(x, target, reduction=reduction)
            _, gf = xent.softmax_cross_entropy_with_grad(finite, target, reduction=reduction)
            assert np.isnan(value)
            assert bitwise_equal(g[others], gf[others])
            assert np.isnan(xent.softmax_cross_entropy(x, target, reduction=reduction))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_nan_is_that_element_only(rng, dtype):
    x = rng.normal(size=(4, 5)).astype(dtype)
    t = rng.uniform(size=(4, 5)).astype(dtype)
    x[2, 3] = np.nan
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
    assert np.isnan(loss[2, 3])
    mask = ~np.isnan(x)
    assert np.sum(np.isnan(loss)) == 1 and np.all(np.isfinite(grad[mask]))
    lo, go = xent.sigmoid_binary_cross_entropy_with_grad(x[mask], t[mask], reduction="none")
    assert bitwise_equal(loss[mask], lo) and bitwise_equal(grad[mask], go)
    assert np.isnan(xent.sigmoid_binary_cross_entropy(x, t, reduction="sum"))
    assert np.isnan(xent.sigmoid_binary_cross_entropy(x, t, reduction="mean"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_at_infinite_logits(dtype):
    """The mathematical limits: loss exactly 0 or +inf, gradient exactly
    (1 - t) sigmoid(x) - p t sigmoid(-x) at sigmoid = 0 or 1."""
    inf = np.inf
    x = np.array([inf, inf, -inf, -inf, inf, -inf, inf, -inf], dtype=dtype)
    t = np.array([1.0, 0.0, 1.0, 0.0, 0.25, 0.25, 1.0, 1.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
    assert loss[0] == 0 and np.isposinf(loss[1]) and np.isposinf(loss[2]) and loss[3] == 0
    assert np.isposinf(loss[4]) and np.isposinf(loss[5])
    assert grad.tolist() == [0.0, 1.0, -1.0, 0.0, 0.75, -0.25, 0.0, -1.0]
    # pos_weight p multiplies the positive term: at x = -inf, t = 1 the gradient is -p
    lp, gp = xent.sigmoid_binary_cross_entropy_with_grad(x[:4], t[:4], pos_weight=dtype(3.0),
                                                         reduction="none")
    assert lp[0] == 0 and np.isposinf(lp[1]) and np.isposinf(lp[2]) and lp[3] == 0
    assert gp.tolist() == [0.0, 1.0, -3.0, 0.0]
    # reductions of finite limits stay exact; an infinite element makes them +inf
    assert xent.sigmoid_binary_cross_entropy(x[[0, 3]], t[[0, 3]], reduction="sum") == 0.0
    _, gm = xent.sigmoid_binary_cross_entropy_with_grad(x[:4], t[:4], reduction="mean")
    assert gm.tolist() == [0.0, 0.25, -0.25, 0.0]
    for reduction in ("sum", "mean"):
        value = xent.sigmoid_binary_cross_entropy(x[:4], t[:4], reduction=reduction)
        assert np.isposinf(value), f"{reduction} of [0, inf, inf, 0] gave {value!r}"


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_huge_logits_do_not_overflow(kind):
    rows = np.array([[1e300, -1e300], [1e300, -1e300], [1e300, 1e300], [-1e300, 1e300],
                     [1e30, 0.0], [-1e308, 1e308]])
    y = np.array([1, 0, 0, 0, 1, 1])
    target = y if kind == "index" else one_hot(y, 2, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.softmax_cross_entropy_with_grad(rows, target, reduction="none")
    assert loss[0] == 2e300 and loss[1] == 0 and loss[3] == 2e300 and loss[4] == 1e30
    assert loss[2] == pytest.approx(math.log(2), rel=1e-15, abs=0)
    assert loss[5] == 0
    assert grad.tolist() == [[1.0, -1.0], [0.0, 0.0], [-0.5, 0.5], [-1.0, 1.0],
                             [1.0, -1.0], [0.0, 0.0]]
    # float32: gaps of 2e30 and ties at 3e38
    r32 = np.array([[1e30, -1e30], [3e38, 3e38], [-3e38, 0.0]], dtype=np.float32)
    y32 = np.array([1, 1, 1])
    t32 = y32 if kind == "index" else one_hot(y32, 2, np.float32)
    loss, grad = xent.softmax_cross_entropy_with_grad(r32, t32, reduction="none")
    assert loss[0] == np.float32(2e30) and loss[2] == 0
    assert loss[1] == pytest.approx(math.log(2), rel=1e-7)
    assert grad.tolist() == [[1.0, -1.0], [0.5, -0.5], [0.0, 0.0]]
    assert xent.logsumexp(rows[:3]).tolist() == [1e300, 1e300, 1e300]
    assert xent.softmax(rows[:3]).tolist() == [[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]


def test_bce_huge_logits():
    x = np.array([1e300, 1e300, -1e300, -1e300, 1e30, -1e30])
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
    assert loss.tolist() == [1e300, 0.0, 1e300, 0.0, 1e30, 1e30]
    assert grad.tolist() == [1.0, 0.0, -1.0, 0.0, 1.0, -1.0]


def _exact_tiny(gap):
    """log1p(exp(-gap)) and exp(-gap)/(1+exp(-gap)), correctly rounded to float64."""
    with mpmath.workdps(50):
        e = mpmath.exp(-mpmath.mpf(gap))
        return float(mpmath.log1p(e)), float(e / (1 + e))


@pytest.mark.parametrize("dtype,gap", [(np.float64, 50.0), (np.float64, 600.0),
                                       (np.float64, 20.0), (np.float32, 30.0),
                                       (np.float32, 80.0), (np.float32, 10.0)])
@pytest.mark.parametrize("kind", ["index", "prob", "bce"])
def test_tiny_losses_keep_relative_precision(dtype, gap, kind):
    """A confident, correct prediction: loss log1p(exp(-gap)) and gradient entries
    -+exp(-gap)/(1+exp(-gap)), to 1 ulp, where log(1 + ...) or softmax - 1 would give
    0 or lose most digits."""
    lo, g = _exact_tiny(gap)
    if kind == "bce":
        x = np.array([gap, -gap], dtype=dtype)
        t = np.array([1.0, 0.0], dtype=dtype)
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
        assert_ulps(loss, np.array([lo, lo], dtype=dtype), 1)
        assert_ulps(grad, np.array([-g, g], dtype=dtype), 1)
        return
    x = np.array([[0.0, -gap], [-gap, 0.0]], dtype=dtype)
    y = np.array([0, 1])
    target = y if kind == "index" else one_hot(y, 2, dtype)
    loss, grad = xent.softmax_cross_entropy_with_grad(x, target, reduction="none")
    assert_ulps(loss, np.array([lo, lo], dtype=dtype), 1)
    assert_ulps(grad, np.array([[-g, g], [g, -g]], dtype=dtype), 1)
    assert xent.softmax_cross_entropy(x, target, reduction="sum") == pytest.approx(
        2 * float(dtype(lo)), rel=float(2 * np.finfo(dtype).eps))


def test_tiny_loss_float64_pinned():
    # losses far below the float64 / float32 epsilon: log1p(exp(-50)),
    # log1p(exp(-30)) in float32, BCE's log1p(exp(-40))
    assert_ulps(xent.softmax_cross_entropy(np.array([[0.0, -50.0]]), np.array([0]), reduction="none"),
                np.array([math.log1p(math.exp(-50))]), 1)
    assert_ulps(xent.softmax_cross_entropy(np.array([[0.0, -30.0]], np.float32), np.array([0]),
                                           reduction="none"),
                np.array([math.log1p(math.exp(-30))], np.float32), 1)
    assert_ulps(xent.sigmoid_binary_cross_entropy(np.array([40.0]), np.array([1.0]), reduction="none"),
                np.array([math.log1p(math.exp(-40))]), 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_removed_rows_are_zero_even_when_nan(rng, dtype):
    """Ignored rows and rows of sample weight 0 (BCE: elements of weight 0) give
    loss 0 and gradient 0 even when their logits are NaN, and the rest is
    what it is without them (bitwise for "none" and the gradient)."""
    n, c = 9, 4
    x = rng.normal(size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    removed = np.array([1, 4, 8])
    keep = np.setdiff1d(np.arange(n), removed)
    x[1] = np.nan
    x[4, 2] = np.inf
    x[8] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yi = y.copy()
        yi[removed] = -7
        s = np.ones(n, dtype)
        s[removed] = 0
        t = rng.uniform(size=(n, c)).astype(dtype)
        for target, kw in [(yi, {"ignore_index": -7}), (y, {"sample_weight": s}),
                           (t, {"sample_weight": s})]:
            kw_keep = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
            for reduction in ("none", "sum"):
                loss, grad = xent.softmax_cross_entropy_with_grad(x, target, reduction=reduction, **kw)
                lk, gk = xent.softmax_cross_entropy_with_grad(x[keep], target[keep],
                                                              reduction=reduction, **kw_keep)
                assert np.all(grad[removed] == 0) and bitwise_equal(grad[keep], gk)
                if reduction == "none":
                    assert np.all(loss[removed] == 0) and bitwise_equal(loss[keep], lk)
                else:   # the same terms, maybe summed in another order
                    assert loss == pytest.approx(lk, rel=float(4 * np.finfo(np.float64).eps))
            mean = xent.softmax_cross_entropy(x, target, reduction="mean", **kw)
            assert np.isfinite(mean)
            assert mean == pytest.approx(xent.softmax_cross_entropy(x[keep], target[keep],
                                                                     reduction="mean", **kw_keep),
                                         rel=float(4 * np.finfo(np.float64).eps))
        # BCE: an element of weight 0 is removed
        xb = x.copy()
        wb = np.ones_like(xb)
        wb[~np.isfinite(xb)] = 0
        tb = rng.uniform(size=xb.shape).astype(dtype)
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(xb, tb, weight=wb, reduction="none")
        assert np.all(loss[wb == 0] == 0) and np.all(grad[wb == 0] == 0)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert np.isfinite(xent.sigmoid_binary_cross_entropy(xb, tb, weight=wb, reduction="sum"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["all-ignored", "empty", "zero-sample-weights",
                                  "zero-class-weights", "prob-empty", "prob-zero-sample-weights"])
def test_zero_denominator_mean_is_nan_with_zero_gradient_and_no_warning(rng, dtype, case):
    n, c = 5, 3
    x = rng.normal(size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    kw = {}
    if case == "all-ignored":
        y[:] = -100
        kw = {"ignore_index": -100}
    elif case == "empty":
        x, y = x[:0], y[:0]
    elif case == "zero-sample-weights":
        kw = {"sample_weight": np.zeros(n, dtype)}
    elif case == "zero-class-weights":
        y[:] = 1                                  # every row's class has weight 0
        kw = {"weight": np.array([1.0, 0.0, 2.0], dtype)}
    elif case == "prob-empty":
        x, y = x[:0], np.zeros((0, c), dtype)
    else:
        y = rng.uniform(size=(n, c)).astype(dtype)
        kw = {"sample_weight": np.zeros(n, dtype)}
    x[:, 0] = np.nan                              # NaN rows do not leak into the gradient either
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.softmax_cross_entropy_with_grad(x, y, reduction="mean", **kw)
        assert isinstance(loss, float) and math.isnan(loss)
        assert grad.shape == x.shape and grad.dtype == dtype and np.all(grad == 0)
        assert math.isnan(xent.softmax_cross_entropy(x, y, reduction="mean", **kw))
        if case in ("empty", "prob-empty"):
            assert xent.softmax_cross_entropy(x, y, reduction="sum", **kw) == 0.0
            assert xent.softmax_cross_entropy(x, y, reduction="none", **kw).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_empty_mean_is_nan_without_warning(dtype):
    x = np.zeros((0, 3), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, x.copy(), reduction="mean")
        assert math.isnan(loss) and grad.shape == (0, 3)
        assert xent.sigmoid_binary_cross_entropy(x, x.copy(), reduction="sum") == 0.0


# --------------------------------------------------------------------------
# 4. reduction accuracy (float64 accumulation): float32 sum/mean of 10**6 losses
# --------------------------------------------------------------------------

N_BIG = 10 ** 6


@pytest.mark.parametrize("case", ["index", "index-weight", "prob", "bce"])
def test_float32_reductions_match_fsum_of_per_sample_losses(case):
    """``sum`` / ``mean`` of 10**6 float32 per-sample losses within 1e-12 relative of
    ``math.fsum`` of those same losses (the "none" output, in float64)."""
    rng = np.random.default_rng(7)
    if case == "bce":
        x = rng.normal(scale=3, size=N_BIG).astype(np.float32)
        t = rng.uniform(size=N_BIG).astype(np.float32)
        fn, kw, den = xent.sigmoid_binary_cross_entropy, {}, float(N_BIG)
    else:
        c = 4
        x = rng.normal(scale=3, size=(N_BIG, c)).astype(np.float32)
        y = rng.integers(0, c, size=N_BIG)
        fn = xent.softmax_cross_entropy
        if case == "prob":
            t, kw, den = rng.uniform(size=(N_BIG, c)).astype(np.float32), {}, float(N_BIG)
        elif case == "index":
            t, kw, den = y, {}, float(N_BIG)
        else:
            w = rng.uniform(0.5, 2, size=c).astype(np.float32)
            t, kw, den = y, {"weight": w}, math.fsum(w.astype(np.float64)[y])
    per_sample = fn(x, t, reduction="none", **kw)
    assert per_sample.dtype == np.float32
    exact = math.fsum(per_sample.astype(np.float64))
    got_sum = fn(x, t, reduction="sum", **kw)
    got_mean = fn(x, t, reduction="mean", **kw)
    assert abs(got_sum - exact) <= 1e-12 * abs(exact), (got_sum, exact)
    assert abs(got_mean - exact / den) <= 1e-12 * abs(exact / den), (got_mean, exact / den)


@pytest.mark.parametrize("case", ["index", "bce"])
def test_float64_reductions_match_fsum(case):
    rng = np.random.default_rng(8)
    if case == "bce":
        x, t = rng.normal(scale=3, size=N_BIG), rng.uniform(size=N_BIG)
        fn = xent.sigmoid_binary_cross_entropy
    else:
        x, t = rng.normal(scale=3, size=(N_BIG // 4, 4)), rng.integers(0, 4, size=N_BIG // 4)
        fn = xent.softmax_cross_entropy
    exact = math.fsum(fn(x, t, reduction="none"))
    assert abs(fn(x, t, reduction="sum") - exact) <= 1e-14 * abs(exact)
    assert fn(x, t, reduction="mean") == pytest.approx(exact / len(t), rel=1e-14)


def test_float32_prob_gradient_where_the_gap_to_the_max_rounds():
    """float32 x - m rounds when x and the max have unlike exponents (max 48,
    x just below 0: a gap of ~48 known to 2^-19), which would put tens of
    ulps on exp(x - m); the gradient of probability-target CE (one-hot on the
    max) keeps within 2 ulps of a float64 computation on the same inputs."""
    rng = np.random.default_rng(3)
    c = 1000
    x = -rng.uniform(1e-6, 1e-3, size=(4, c)).astype(np.float32)
    x[:, 7] = 48.0
    t = np.zeros_like(x)
    t[:, 7] = 1
    _, g = xent.softmax_cross_entropy_with_grad(x, t, reduction="sum")
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    g64 = e / e.sum(axis=1, keepdims=True) - t
    other = np.arange(c) != 7
    ulp = np.spacing(np.abs(g64[:, other]).astype(np.float32)).astype(np.float64)
    err = np.abs(g[:, other] - g64[:, other]) / ulp
    assert err.max() <= 2, f"{err.max():.1f} ulps"


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_targets_near_one_at_positive_logits(dtype):
    """(1 - t) x for t near 1 and x > 0, not x - t x: without FMA (the SSE2
    build) the latter cancels (5 ulps at x = 11.21875, t = 0.95).  Within 2
    ulps of a float64 / extended computation on the same inputs."""
    x = np.array([11.21875, 3.5, 40.0, 1.0, 7.25], dtype=dtype)
    t = np.array([0.95, 0.99, 0.999, 0.9375, 0.96875], dtype=dtype)
    loss = xent.sigmoid_binary_cross_entropy(x, t, reduction="none")
    xl, tl = x.astype(np.longdouble), t.astype(np.longdouble)
    exact = (1 - tl) * xl + np.log1p(np.exp(-xl))
    ulp = np.spacing(exact.astype(dtype)).astype(np.longdouble)
    err = np.abs(loss.astype(np.longdouble) - exact) / ulp
    assert err.max() <= 2, f"{float(err.max()):.2f} ulps"
