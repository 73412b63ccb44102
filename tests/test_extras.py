"""The token statistics and the cross-entropy extras against their oracles.

* ``xent.reference`` (plain NumPy) over dtypes x shapes (every path of the
  plan: few classes as lanes, row groups, rows one at a time, two-pass and
  online long rows) x layouts x thread counts;
* central finite differences of the gradients in float64;
* identities: ``logprob == -loss`` bitwise, ``temperature`` as the loss of
  the scaled logits, ``gamma = 0`` focal as BCE / CE, a huge ``softcap`` as
  the plain loss, ``rank == 0`` exactly at the row's maximum;
* special values (``-inf`` masks, all ``-inf`` rows, NaN and ``+inf`` rows,
  ``ignore_index``), 16-bit logits (the bits of the float32 kernels on the
  widened logits), results independent of the thread count, and errors.

The accuracy against mpmath is in tests/test_accuracy_extras.py.
"""

import re

import numpy as np
import pytest

import xent
from xent import _dispatch
from xent import reference as ref

from conftest import layout_variant

try:
    from ml_dtypes import bfloat16 as BF16
except ImportError:                  # bfloat16 exists only with ml_dtypes installed
    BF16 = None
SIXTEEN_BIT = (np.float16,) if BF16 is None else (np.float16, BF16)

# (N, C): C <= 32 lanes; <= 4096 row groups; longer rows one at a time
# (two-pass up to 1 MiB of row, online merges beyond: 300000 float32)
SHAPES = [(37, 1), (33, 7), (40, 32), (19, 33), (9, 1000), (3, 5000)]
LONG = [(2, 70000), (1, 300000)]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def logits_for(rng, shape, dtype, spread=3.0):
    return (rng.normal(size=shape) * spread).astype(dtype)


def labels_for(rng, shape):
    return rng.integers(0, shape[-1], size=shape[:-1])


def probs_for(rng, shape, dtype):
    p = rng.random(shape)
    p[p < 0.4] = 0.0
    return (p / np.maximum(p.sum(-1, keepdims=True), 1e-300)).astype(dtype)


def close(got, want, dtype, what=""):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               err_msg=what, **TOL[dtype])


def test_the_shapes_cover_every_path():
    lanes, groups, rows = set(), set(), set()
    for shape in SHAPES + LONG:
        for kernel in ("stats", "focal", "index"):
            p = _dispatch.path(kernel, shape, np.float32, 2)
            (lanes if p["lanes"] else groups if p["group"] > 1 else rows).add(shape)
    assert {(33, 7), (40, 32)} <= lanes
    assert {(19, 33), (9, 1000)} <= groups
    assert {(3, 5000), (2, 70000), (1, 300000)} <= rows
    assert not _dispatch.path("stats", (4, 300000), np.float32, 8)["split"]


# ---------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + LONG)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.7])
def test_token_stats_against_reference(rng, shape, dtype, temperature):
    x = logits_for(rng, shape, dtype)
    y = labels_for(rng, shape)
    got = xent.token_stats(x, y, temperature=temperature)
    want = ref.token_stats(x, y, temperature=temperature)
    for name in ("lse", "entropy", "logprob"):
        assert getattr(got, name).dtype == dtype
        close(getattr(got, name), getattr(want, name), dtype, name)
    for name in ("argmax", "rank"):
        assert getattr(got, name).dtype == np.int64
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    alone = xent.token_stats(x, temperature=temperature)
    assert alone.logprob is None and alone.rank is None
    for name in ("lse", "entropy", "argmax"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(got, name))


@pytest.mark.parametrize("layout", ["F", "strided", "reversed", "bigendian", "readonly", "list"])
def test_token_stats_any_layout_and_axis(rng, layout):
    x = logits_for(rng, (4, 30, 6), np.float64)
    y = rng.integers(0, 30, size=(4, 6))
    want = xent.token_stats(np.moveaxis(x, 1, -1), y)
    got = xent.token_stats(layout_variant(x, layout), layout_variant(y, "C"), axis=1)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + LONG[:1])
@pytest.mark.parametrize("options", [dict(temperature=0.7), dict(softcap=4.0),
                                     dict(z_loss=1e-2), dict(temperature=2.0, softcap=3.0,
                                                             z_loss=1e-3)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_ce_extras_against_reference(rng, kind, dtype, shape, options, reduction):
    x = logits_for(rng, shape, dtype)
    t = labels_for(rng, shape) if kind == "index" else probs_for(rng, shape, dtype)
    kw = dict(weight=rng.random(shape[-1]) + 0.5, sample_weight=rng.random(shape[:-1]),
              label_smoothing=0.1, reduction=reduction, **options)
    if kind == "index":
        kw["ignore_index"] = 0
    loss, grad = xent.softmax_cross_entropy_with_grad(x, t, **kw)
    rloss, rgrad = ref.softmax_cross_entropy_with_grad(x, t, **kw)
    close(loss, rloss, dtype, "loss")
    close(grad, rgrad, dtype, "grad")
    assert grad.dtype == dtype
    close(xent.softmax_cross_entropy(x, t, **kw), rloss, dtype, "loss only")


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + LONG[:1])
@pytest.mark.parametrize("alpha, gamma", [(None, 2.0), (0.25, 0.5), (1.5, 3.0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_focal_against_reference(rng, kind, dtype, shape, alpha, gamma, reduction):
    x = logits_for(rng, shape, dtype)
    t = labels_for(rng, shape) if kind == "index" else probs_for(rng, shape, dtype)
    kw = dict(alpha=alpha, gamma=gamma, weight=rng.random(shape[-1]) + 0.5, reduction=reduction)
    if kind == "index":
        kw["ignore_index"] = 1
    loss, grad = xent.softmax_focal_loss_with_grad(x, t, **kw)
    rloss, rgrad = ref.softmax_focal_loss_with_grad(x, t, **kw)
    close(loss, rloss, dtype, "loss")
    close(grad, rgrad, dtype, "grad")
    close(xent.softmax_focal_loss(x, t, **kw), rloss, dtype, "loss only")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (40000,), (2, 3, 4)])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.5), (-1.0, 1.0), (0.9, 0.0)])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_against_reference(rng, dtype, shape, alpha, gamma, soft):
    x = logits_for(rng, shape, dtype, spread=5.0)
    t = rng.random(shape) if soft else (rng.random(shape) < 0.3)
    for reduction in ("mean", "sum", "none"):
        kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
        loss, grad = xent.sigmoid_focal_loss_with_grad(x, t, **kw)
        rloss, rgrad = ref.sigmoid_focal_loss_with_grad(x, t, **kw)
        close(loss, rloss, dtype, reduction)
        close(grad, rgrad, dtype, reduction)


# ---------------------------------------------------------------------------
# 16-bit logits, threads, in place
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("half", SIXTEEN_BIT, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(33, 7), (9, 1000), (3, 40000)])
def test_16_bit_logits_are_the_float32_kernels_on_the_widened_logits(rng, half, shape):
    x = logits_for(rng, shape, np.float32).astype(half)
    wide = x.astype(np.float32)
    y = labels_for(rng, shape)
    for kw in (dict(temperature=0.7, softcap=5.0, z_loss=1e-3), dict(temperature=0.5), {}):
        loss, grad = xent.softmax_cross_entropy_with_grad(x, y, reduction="none", **kw)
        wloss, wgrad = xent.softmax_cross_entropy_with_grad(wide, y, reduction="none", **kw)
        np.testing.assert_array_equal(loss, wloss)
        assert grad.dtype == x.dtype
        np.testing.assert_array_equal(grad.view(np.uint16), wgrad.astype(half).view(np.uint16))
    for a, b in zip(xent.token_stats(x, y, temperature=0.7), xent.token_stats(wide, y, temperature=0.7)):
        np.testing.assert_array_equal(a, b)
    fl, fg = xent.softmax_focal_loss_with_grad(x, y, reduction="none")
    wl, wg = xent.softmax_focal_loss_with_grad(wide, y, reduction="none")
    np.testing.assert_array_equal(fl, wl)
    np.testing.assert_array_equal(fg.view(np.uint16), wg.astype(half).view(np.uint16))


@pytest.mark.parametrize("shape", [(33, 7), (700, 100), (3, 40000), (40000,)])
def test_results_do_not_depend_on_the_thread_count(rng, shape, oversubscribe):
    x = logits_for(rng, shape, np.float32)
    if len(shape) == 1:
        t = rng.random(shape) < 0.5
        runs = [xent.sigmoid_focal_loss_with_grad(x, t, n_threads=n) for n in (1, 2, 3)]
    else:
        y = labels_for(rng, shape)
        runs = [(xent.token_stats(x, y, temperature=0.7, n_threads=n),
                 xent.softmax_cross_entropy_with_grad(x, y, softcap=3.0, z_loss=1e-3, n_threads=n),
                 xent.softmax_focal_loss_with_grad(x, y, n_threads=n)) for n in (1, 2, 3)]
    for run in runs[1:]:
        np.testing.assert_equal(run, runs[0])


def test_in_place_gradient_with_a_transform(rng):
    x = logits_for(rng, (50, 300), np.float64)
    y = labels_for(rng, (50, 300))
    want = xent.softmax_cross_entropy_with_grad(x, y, temperature=0.3, softcap=2.0)
    buf = x.copy()
    got = xent.softmax_cross_entropy_with_grad(buf, y, temperature=0.3, softcap=2.0, grad_out=buf)
    assert got[1] is buf
    assert got[0] == want[0]
    np.testing.assert_array_equal(buf, want[1])


# ---------------------------------------------------------------------------
# finite differences (float64)
# ---------------------------------------------------------------------------

def finite_difference(f, x, h=1e-6):
    g = np.empty_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + h
        up = f(x)
        flat[k] = keep - h
        down = f(x)
        flat[k] = keep
        gf[k] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("fn, target, kw", [
    (xent.softmax_cross_entropy_with_grad, "index", dict(temperature=0.6, softcap=2.5, z_loss=0.05)),
    (xent.softmax_cross_entropy_with_grad, "prob", dict(temperature=1.7, softcap=4.0, z_loss=0.02,
                                                        label_smoothing=0.2)),
    (xent.softmax_focal_loss_with_grad, "index", dict(alpha=0.4, gamma=1.5)),
    (xent.softmax_focal_loss_with_grad, "prob", dict(gamma=0.7, weight=np.array([1.0, 2, 0.5, 1, 3]))),
    (xent.sigmoid_focal_loss_with_grad, "soft", dict(alpha=0.3, gamma=2.5)),
    (xent.sigmoid_focal_loss_with_grad, "hard", dict(alpha=None, gamma=0.5)),
])
def test_gradients_match_finite_differences(rng, fn, target, kw):
    x = logits_for(rng, (6, 5), np.float64, spread=2.0)
    t = {"index": labels_for(rng, (6, 5)), "prob": probs_for(rng, (6, 5), np.float64),
         "soft": rng.random((6, 5)), "hard": (rng.random((6, 5)) < 0.5).astype(float)}[target]
    loss, grad = fn(x, t, reduction="sum", **kw)
    fd = finite_difference(lambda z: fn(z, t, reduction="sum", **kw)[0], x.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + LONG[:1])
@pytest.mark.parametrize("temperature", [1.0, 0.25, 0.7, 3.0])
def test_logprob_is_minus_the_loss_bitwise(rng, dtype, shape, temperature):
    x = logits_for(rng, shape, dtype)
    y = labels_for(rng, shape)
    y.reshape(-1)[::5] = 2 % shape[-1]
    x.reshape(-1, shape[-1])[1::7, 0] = -np.inf
    st = xent.token_stats(x, y, temperature=temperature, ignore_index=2 % shape[-1])
    loss = xent.softmax_cross_entropy(x, y, temperature=temperature, reduction="none",
                                      ignore_index=2 % shape[-1])
    np.testing.assert_array_equal(st.logprob, -loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.25, 0.5, 2.0, 4.0, 0.7, 3.0])
def test_temperature_is_the_loss_of_the_logits_times_its_reciprocal(rng, dtype, temperature):
    x = logits_for(rng, (30, 200), dtype)
    y = labels_for(rng, (30, 200))
    # the reciprocal rounded to the logits' dtype: x / T exactly for a power of two
    k = dtype(1.0 / temperature)
    got = xent.softmax_cross_entropy_with_grad(x, y, temperature=temperature, reduction="none")
    plain = xent.softmax_cross_entropy_with_grad(x * k, y, reduction="none")
    np.testing.assert_array_equal(got[0], plain[0])
    np.testing.assert_array_equal(got[1], (plain[1].astype(np.float64) * float(k)).astype(dtype))
    if temperature in (0.25, 0.5, 2.0, 4.0):
        np.testing.assert_array_equal(x * k, x / dtype(temperature))


def test_any_temperature_is_within_an_ulp_of_the_scaled_logits(rng):
    x = logits_for(rng, (30, 200), np.float64)
    y = labels_for(rng, (30, 200))
    for t in (0.3, 0.7, 1.3, 10.0):
        close(xent.softmax_cross_entropy(x, y, temperature=t, reduction="none"),
              xent.softmax_cross_entropy(x / t, y, reduction="none"), np.float64)


def test_neutral_options_give_the_plain_bits(rng):
    for shape in ((8, 10), (300, 100)):
        x = logits_for(rng, shape, np.float32)
        y = labels_for(rng, shape)
        plain = xent.softmax_cross_entropy_with_grad(x, y, reduction="none")
        neutral = xent.softmax_cross_entropy_with_grad(x, y, temperature=1, softcap=None,
                                                       z_loss=0, reduction="none")
        np.testing.assert_equal(neutral, plain)


def test_huge_softcap_tends_to_the_plain_loss(rng):
    x = logits_for(rng, (20, 50), np.float64)
    y = labels_for(rng, (20, 50))
    l, g = xent.softmax_cross_entropy_with_grad(x, y, softcap=1e8, reduction="none")
    pl, pg = xent.softmax_cross_entropy_with_grad(x, y, reduction="none")
    np.testing.assert_allclose(l, pl, rtol=1e-12)
    np.testing.assert_allclose(g, pg, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_zero_gamma_focal_is_alpha_times_cross_entropy(rng, kind):
    x = logits_for(rng, (40, 12), np.float64)
    t = labels_for(rng, (40, 12)) if kind == "index" else probs_for(rng, (40, 12), np.float64)
    w = rng.random(12) + 0.5
    fl, fg = xent.softmax_focal_loss_with_grad(x, t, alpha=0.3, gamma=0.0, weight=w)
    cl, cg = xent.softmax_cross_entropy_with_grad(x, t, weight=w)
    np.testing.assert_allclose(fl, 0.3 * cl, rtol=1e-13)
    np.testing.assert_allclose(fg, 0.3 * cg, rtol=1e-12, atol=1e-16)


def test_zero_gamma_sigmoid_focal_is_bce(rng):
    x = logits_for(rng, (500,), np.float64, spread=8.0)
    t = rng.random(500)
    fl, fg = xent.sigmoid_focal_loss_with_grad(x, t, alpha=None, gamma=0.0, reduction="none")
    bl, bg = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
    np.testing.assert_allclose(fl, bl, rtol=1e-14)
    np.testing.assert_allclose(fg, bg, rtol=1e-12, atol=1e-16)


def test_rank_is_zero_exactly_at_the_row_maximum(rng):
    x = np.round(rng.normal(size=(500, 20)) * 2) / 2        # many ties
    y = labels_for(rng, (500, 20))
    st = xent.token_stats(x, y)
    at_max = x[np.arange(500), y] == x.max(axis=1)
    np.testing.assert_array_equal(st.rank == 0, at_max)
    np.testing.assert_array_equal(st.rank, (x > x[np.arange(500), y][:, None]).sum(axis=1))
    np.testing.assert_array_equal(st.argmax, x.argmax(axis=1))


def test_argmax_and_rank_are_taken_on_the_logits_as_given():
    # 1 and nextafter(1, 2) are one float apart: times a temperature's reciprocal
    # they may round together; the order of the logits as given decides
    x = np.array([[1.0, np.nextafter(1.0, 2.0), 0.0]])
    st = xent.token_stats(x, np.array([0]), temperature=3.0)
    assert st.argmax[0] == 1 and st.rank[0] == 1


def test_near_one_hot_entropy_keeps_its_relative_precision():
    x = np.array([[0.0, -40.0, -41.0]])
    e1, e2 = np.exp(-40.0), np.exp(-41.0)
    exact = (40 * e1 + 41 * e2) + (e1 + e2)      # to first order; second order is 1e-34
    st = xent.token_stats(x)
    assert abs(st.entropy[0] - exact) <= 4e-16 * exact


# ---------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------

def test_token_stats_special_rows():
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, -inf, 1.0], [-inf, -inf, -inf], [nan, 0.0, 1.0], [inf, 0.0, 1.0],
                  [2.0, 2.0, -inf]])
    y = np.array([1, 0, 1, 2, 1])
    st = xent.token_stats(x, y)
    e1 = np.exp(-1.0)
    lse = 1 + np.log1p(e1)
    np.testing.assert_allclose(st.lse, [lse, nan, nan, inf, 2 + np.log(2)], rtol=1e-15)
    np.testing.assert_allclose(st.entropy, [lse - (1 / (1 + e1)), nan, nan, nan, np.log(2)],
                               rtol=1e-15)
    np.testing.assert_array_equal(st.argmax, [2, -1, -1, 0, 0])
    np.testing.assert_array_equal(st.rank, [2, -1, -1, 1, 0])
    np.testing.assert_array_equal(st.logprob, [-inf, nan, nan, nan, -np.log(2)])
    ign = xent.token_stats(x, np.array([1, 5, 5, 5, 1]), ignore_index=5)
    np.testing.assert_array_equal(ign.logprob[1:4], 0.0)
    np.testing.assert_array_equal(ign.rank[1:4], -1)
    np.testing.assert_array_equal(ign.argmax, st.argmax)


def test_masks_stay_masks_under_softcap_and_temperature():
    x = np.array([[3.0, -np.inf, 1.0, -np.inf]])
    y = np.array([0])
    l, g = xent.softmax_cross_entropy_with_grad(x, y, softcap=2.0, temperature=0.5, z_loss=0.1)
    z = 2.0 * np.tanh(np.array([6.0, 2.0]) / 2.0)
    lse = np.logaddexp(z[0], z[1])
    assert np.isclose(l, lse - z[0] + 0.1 * lse**2, rtol=1e-14)
    assert g[0, 1] == 0.0 and g[0, 3] == 0.0 and np.all(np.isfinite(g))
    big = xent.softmax_cross_entropy(np.array([[np.inf, 0.0]]), np.array([0]), softcap=3.0)
    assert np.isclose(big, np.log1p(np.exp(-3.0)), rtol=1e-14)      # +inf caps to 3


def test_focal_losses_are_nan_free_at_confident_logits():
    x = np.array([[800.0, -800.0, 0.0], [-800.0, 800.0, 0.0]])
    y = np.array([0, 0])
    l, g = xent.softmax_focal_loss_with_grad(x, y, reduction="none")
    assert l[0] == 0.0 and l[1] == 1600.0 and np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[1], [-1.0, 1.0, 0.0])
    xs = np.array([-800.0, 800.0, 800.0, -800.0, np.inf, -np.inf])
    ts = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    sl, sg = xent.sigmoid_focal_loss_with_grad(xs, ts, reduction="none")
    np.testing.assert_allclose(sl[:2], [0.25 * 800, 0.75 * 800])
    assert np.all(sl[2:] == 0.0) and np.all(np.isfinite(sg))
    np.testing.assert_allclose(sg, [-0.25, 0.75, 0, 0, 0, 0])


def test_focal_ignore_index_and_all_ignored(rng):
    x = logits_for(rng, (4, 6), np.float64)
    y = np.array([1, -100, 3, -100])
    l, g = xent.softmax_focal_loss_with_grad(x, y, ignore_index=-100, reduction="none")
    assert l[1] == 0.0 and l[3] == 0.0 and not g[1].any() and not g[3].any()
    mean, gm = xent.softmax_focal_loss_with_grad(x, np.full(4, -100), ignore_index=-100)
    assert np.isnan(mean) and not gm.any()


def test_z_loss_is_per_row_sample_weighted_not_class_weighted(rng):
    x = logits_for(rng, (5, 4), np.float64)
    y = np.array([0, 1, 2, 3, 0])
    w = np.array([2.0, 1.0, 3.0, 0.5])
    s = np.array([1.0, 0.0, 2.0, 1.0, 0.5])
    with_z = xent.softmax_cross_entropy(x, y, weight=w, sample_weight=s, z_loss=0.1,
                                        ignore_index=3, reduction="none")
    without = xent.softmax_cross_entropy(x, y, weight=w, sample_weight=s, ignore_index=3,
                                         reduction="none")
    lse = ref.logsumexp(x)
    want = np.where((s != 0) & (y != 3), s * 0.1 * lse**2, 0.0)
    np.testing.assert_allclose(with_z - without, want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

X, Y = np.zeros((3, 4)), np.array([0, 1, 2])


@pytest.mark.parametrize("name, value, expect", [
    ("temperature", 0.0, "a finite number > 0"), ("temperature", -1.0, "a finite number > 0"),
    ("temperature", np.inf, "a finite number > 0"), ("temperature", "2", "a finite number > 0"),
    ("temperature", None, "a finite number > 0"), ("softcap", 0.0, "None or a finite number > 0"),
    ("softcap", np.nan, "None or a finite number > 0"), ("z_loss", -1e-3, "a finite number >= 0"),
    ("z_loss", np.inf, "a finite number >= 0"), ("z_loss", True, "a finite number >= 0"),
])
def test_bad_ce_extra_options(name, value, expect):
    for fn in (xent.softmax_cross_entropy, xent.softmax_cross_entropy_with_grad):
        with pytest.raises(ValueError, match=rf"^`{name}` must be {re.escape(expect)}; got "):
            fn(X, Y, **{name: value})


@pytest.mark.parametrize("name, value", [("gamma", -0.5), ("gamma", np.nan), ("alpha", np.inf),
                                         ("alpha", "0.25"), ("reduction", "avg")])
def test_bad_focal_options(name, value):
    for fn, t in ((xent.softmax_focal_loss, Y), (xent.sigmoid_focal_loss_with_grad, np.zeros((3, 4)))):
        with pytest.raises(ValueError, match=rf"^`{name}` must be "):
            fn(X, t, **{name: value})


def test_token_stats_errors():
    with pytest.raises(TypeError, match=r"^`target` must be integer class indices; got dtype "
                                        r"float64; use target\.astype\(np\.int64\)\.$"):
        xent.token_stats(X, Y.astype(float))
    with pytest.raises(ValueError, match=r"^`target` class indices must have the shape"):
        xent.token_stats(X, np.array([0, 1]))
    with pytest.raises(xent.LabelError, match=r"^`target` class indices must be in \[0, 4\); "
                                              r"got 7 at position 2\."):
        xent.token_stats(X, np.array([0, 1, 7]))
    with pytest.raises(ValueError, match=r"^`ignore_index` needs a `target`"):
        xent.token_stats(X, ignore_index=0)
    with pytest.raises(ValueError, match=r"^`temperature` must be a finite number > 0; got 0"):
        xent.token_stats(X, temperature=0)
    with pytest.raises(ValueError, match=r"^`logits` must have at least one class"):
        xent.token_stats(np.zeros((3, 0)))


@pytest.mark.parametrize("dtype, name, value", [
    (np.float32, "temperature", 1e-300), (np.float32, "temperature", 1e300),
    (np.float32, "softcap", 1e39), (np.float64, "softcap", 1e-309), (np.float16, "temperature", 1e-39),
])
def test_temperature_and_softcap_must_fit_the_compute_dtype(dtype, name, value):
    # the logits are multiplied by the reciprocal rounded to the compute dtype:
    # it, and the value itself, must be finite and nonzero there
    x = np.zeros((3, 4), dtype)
    cdt = "float64" if dtype == np.float64 else "float32"
    with pytest.raises(ValueError, match=rf"^`{name}` must be between .* for {cdt} logits .*; got "):
        xent.softmax_cross_entropy(x, Y, **{name: value})
    if name == "temperature":
        with pytest.raises(ValueError, match=rf"^`{name}` must be between "):
            xent.token_stats(x, temperature=value)


def test_focal_target_errors():
    with pytest.raises(xent.LabelError, match=r"^`target` class indices must be in \[0, 4\)"):
        xent.softmax_focal_loss(X, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"^`target` of integer dtype must hold 0 or 1"):
        xent.sigmoid_focal_loss(X, np.full((3, 4), 2))
    with pytest.raises(ValueError, match=r"^`ignore_index` applies to class-index targets only"):
        xent.softmax_focal_loss(X, np.full((3, 4), 0.25), ignore_index=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_focal_targets_outside_0_1_are_refused(dtype):
    # (1 - p_t)^gamma has no real value for them; binary cross-entropy takes them
    x = np.zeros((2, 3), dtype)
    t = np.array([[0.0, 1.0, 0.5], [1.0, 2.0, 0.0]], dtype)
    with pytest.raises(ValueError, match=r"^`target` of a focal loss must hold values in \[0, 1\]; "
                                         r"got 2\.0 at position \(1, 1\)\.$"):
        xent.sigmoid_focal_loss_with_grad(x, t)
    xent.sigmoid_binary_cross_entropy(x, t)


def test_zero_alpha_t_removes_the_element_even_at_a_nan_logit():
    # alpha = 0 with a target of 1: alpha_t = 0, the element contributes
    # nothing (found by the fuzz campaign: the reference gave NaN)
    x = np.array([np.nan, 0.5, -1.0])
    t = np.array([1.0, 0.0, 1.0])
    for fn in (xent.sigmoid_focal_loss_with_grad, ref.sigmoid_focal_loss_with_grad):
        loss, grad = fn(x, t, alpha=0.0, reduction="none")
        assert loss[0] == 0.0 and grad[0] == 0.0 and loss[2] == 0.0
        assert loss[1] > 0.0


def test_empty_batches(rng):
    st = xent.token_stats(np.zeros((0, 5)), np.zeros(0, np.int64))
    assert all(a.shape == (0,) for a in st)
    assert np.isnan(xent.softmax_focal_loss(np.zeros((0, 5)), np.zeros(0, np.int64)))
    assert xent.sigmoid_focal_loss(np.zeros((0,)), np.zeros((0,)), reduction="sum") == 0.0
