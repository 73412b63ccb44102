"""The KL and Jensen-Shannon divergences against independent oracles.

* ``xent.reference`` (plain NumPy, float64 terms) over dtypes x shapes
  (C from 1 to 40000, N from 0) x modes (forward / reverse KL, JS with three
  betas) x temperatures x reductions x sample weights / ignored rows;
  16-bit logits are the float32 kernels' bits on the widened logits;
* the class axis, memory layouts, ``grad_out`` (given, in place, refused when
  it overlaps ``target_logits``) and the thread count change no bit;
* PyTorch (``F.kl_div(..., log_target=True)`` and an autograd JS);
* central finite differences of the gradients in float64;
* identities: ``KL(p || p) = 0``, JS's symmetry, temperature as scaled
  logits, the forward gradient as the soft-target cross-entropy's,
  ``KL(q || p) = CE(p; q) - H(q)``, ``0 <= JS <= log 2``;
* special values (``-inf`` masks, NaN / ``+inf`` / all ``-inf`` rows,
  weights of 0, ignored rows, empty batches) and errors.

The semantics are those of xent/_api.py's docstrings; the accuracy contract
(4 ulp float64, 8 ulp float32 on dyadic logits) is checked against mpmath on
near-identical rows and on rows far apart.
"""

import math
import re

import numpy as np
import pytest

import xent
from xent import reference as ref

from conftest import LAYOUTS, EXTRA_LAYOUTS, layout_variant

try:
    from ml_dtypes import bfloat16 as BF16
except ImportError:                  # bfloat16 exists only with ml_dtypes installed
    BF16 = None
SIXTEEN_BIT = (np.float16,) if BF16 is None else (np.float16, BF16)

# (N, C): empty and single rows, C = 1 (a divergence of 0), few classes, rows
# grouped, long rows one at a time
SHAPES = [(0, 7), (1, 5), (37, 1), (33, 2), (19, 7), (9, 33), (5, 1000), (2, 40000)]
# (name, kl/js function, kl/js with grad, keyword arguments)
MODES = {
    "kl": (xent.kl_divergence, xent.kl_divergence_with_grad, {}),
    "reverse": (xent.kl_divergence, xent.kl_divergence_with_grad, dict(reverse=True)),
    "js": (xent.js_divergence, xent.js_divergence_with_grad, dict(beta=0.5)),
    "js0.1": (xent.js_divergence, xent.js_divergence_with_grad, dict(beta=0.1)),
    "js0.9": (xent.js_divergence, xent.js_divergence_with_grad, dict(beta=0.9)),
}
REF = {
    xent.kl_divergence: ref.kl_divergence, xent.kl_divergence_with_grad: ref.kl_divergence_with_grad,
    xent.js_divergence: ref.js_divergence, xent.js_divergence_with_grad: ref.js_divergence_with_grad,
}
LOSS_TOL = {np.float32: dict(rtol=1e-6, atol=0.0), np.float64: dict(rtol=1e-13, atol=0.0)}
GRAD_TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}


def logits_for(rng, shape, dtype, spread=2.0):
    return (rng.normal(size=shape) * spread).astype(dtype)


def dyadic(v, dtype):
    """``v`` on a grid of 2**-40 (float64) or 2**-18 (float32 and narrower),
    clipped to (-30, 30): every difference of two values is exact, so the
    shift by a row's maximum rounds nothing (the inputs of the contract)."""
    step = 2.0 ** (-40 if np.dtype(dtype) == np.float64 else -18)
    return (np.round(np.clip(v, -30, 30) / step) * step).astype(dtype)


def pair(rng, shape, dtype, spread=2.0):
    """Student and teacher logits (dyadic), the teacher a perturbation of the
    student of a random size per row (divergences from 1e-8 to 1)."""
    x = rng.normal(size=shape) * spread
    noise = rng.normal(size=shape) * rng.choice([1e-3, 0.1, 1.0, 3.0], size=shape[:-1] + (1,))
    return dyadic(x, dtype), dyadic(x + noise, dtype)


def room(x, z, temperature, dtype, sample_weight=None):
    """Per row, what an error of an ulp in the log-probabilities moves a
    divergence by, ``~ eps max|log p| sum|p - q|``: relative to a tiny
    divergence (near-identical rows, ``sum|p - q| ~ sqrt(KL)``) it is large.
    The reference rounds its float64 log-softmaxes (and the scaled logits
    ``x * fl(1/T)`` round when T is no power of two), so it is that far from
    the exact value there; the kernels are held to the exact value near 0 by
    test_near_identical_rows_against_mpmath."""
    if np.dtype(dtype) != np.float64:
        return np.zeros(x.shape[0])
    return sensitivity(x, z, temperature, dtype, sample_weight)


def sensitivity(x, z, temperature, dtype, sample_weight=None):
    """``16 eps max|log p| sum|p - q|`` per row (see `room`)."""
    k = dtype(1.0 / temperature)
    xs, zs = (x * k).astype(np.float64), (z * k).astype(np.float64)
    with np.errstate(all="ignore"):
        lp = xs - xs.max(axis=-1, keepdims=True)
        lq = zs - zs.max(axis=-1, keepdims=True)
        p, q = softmax64(xs), softmax64(zs)
        lp, lq = np.where(np.isfinite(lp), np.abs(lp), 0), np.where(np.isfinite(lq), np.abs(lq), 0)
    big = np.maximum(lp.max(axis=-1, initial=0), lq.max(axis=-1, initial=0)) + np.log(x.shape[-1])
    c = 16 * np.finfo(dtype).eps * big * np.abs(p - q).sum(axis=-1)
    return c if sample_weight is None else c * sample_weight


def close_loss(got, want, dtype, what=""):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               err_msg=what, **LOSS_TOL[dtype])


def within(got, want, rtol, slack, what=""):
    """``|got - want| <= rtol |want| + slack`` elementwise, NaN where ``want`` is."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    with np.errstate(invalid="ignore"):
        ok = np.isnan(want) | (got == want) | (np.abs(got - want) <= rtol * np.abs(want) + slack)
    assert np.all(ok), (what, got[~ok], want[~ok], np.broadcast_to(slack, ok.shape)[~ok])


def close_grad(got, want, dtype, what=""):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               err_msg=what, **GRAD_TOL[dtype])


def softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def bits(a):
    a = np.asarray(a)
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a


# ---------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------

# every shape at every temperature but the long rows (slow in the reference)
SHAPE_TEMPERATURES = [(shape, t) for shape in SHAPES[:-1] for t in (1.0, 2.0, 0.7)] \
    + [(SHAPES[-1], 0.7)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, temperature", SHAPE_TEMPERATURES,
                         ids=[f"{s[0]}x{s[1]}-T{t}" for s, t in SHAPE_TEMPERATURES])
@pytest.mark.parametrize("mode", list(MODES))
def test_against_reference(rng, dtype, shape, mode, temperature):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, shape, dtype)
    n = shape[0]
    options = [{}, dict(sample_weight=rng.random(n) + 0.25)]
    if not mode.startswith("js"):
        y = rng.integers(0, shape[1], size=n)
        y[::3] = -100
        sw = rng.random(n)
        sw[1::4] = 0.0
        options[1:] = [dict(target=y, ignore_index=-100),
                       dict(target=y, ignore_index=-100, sample_weight=sw)]
    unit = room(x, z, temperature, dtype)
    for extra in options:
        for reduction in ("none", "sum", "mean"):
            kw = dict(base, temperature=temperature, reduction=reduction, **extra)
            what = f"{mode} {reduction} {sorted(extra)}"
            loss, grad = fn_grad(x, z, **kw)
            rloss, rgrad = REF[fn_grad](x, z, **kw)
            if reduction == "none":
                assert loss.dtype == dtype and loss.shape == (n,)
            else:
                assert isinstance(loss, float)
            assert grad.dtype == dtype and grad.shape == shape
            slack = unit * extra.get("sample_weight", 1.0)
            if reduction == "none":
                slack = np.where(extra.get("target", np.zeros(n)) == -100, 0.0, slack)
            else:
                slack = np.sum(slack) / (1 if reduction == "sum" else max(n, 1))
            within(loss, rloss, LOSS_TOL[dtype]["rtol"], slack, what)
            close_grad(grad, rgrad, dtype, what)
            only = fn(x, z, **kw)
            np.testing.assert_array_equal(only, loss, err_msg=what)


@pytest.mark.parametrize("half", SIXTEEN_BIT, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (33, 7), (9, 1000), (2, 40000)])
@pytest.mark.parametrize("mode", list(MODES))
def test_16_bit_logits_are_the_float32_kernels_on_the_widened_logits(rng, half, shape, mode):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, shape, np.float32, spread=3.0)
    x, z = x.astype(half), z.astype(half)
    wx, wz = x.astype(np.float32), z.astype(np.float32)
    sw = rng.random(shape[0])
    for kw in (dict(temperature=0.7, reduction="none"), dict(reduction="mean", sample_weight=sw),
               dict(temperature=2.0, reduction="sum")):
        kw = dict(base, **kw)
        loss, grad = fn_grad(x, z, **kw)
        wloss, wgrad = fn_grad(wx, wz, **kw)
        np.testing.assert_array_equal(loss, wloss)
        if kw["reduction"] == "none":
            assert loss.dtype == np.float32
        assert grad.dtype == x.dtype
        np.testing.assert_array_equal(bits(grad), bits(wgrad.astype(half)))
        np.testing.assert_array_equal(fn(x, z, **kw), wloss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_simd_variant_against_reference(rng, isa, dtype):
    for shape in ((19, 7), (9, 33), (4, 1000), (1, 5000)):
        x, z = pair(rng, shape, dtype)
        x[::3, 1] = -np.inf
        z[::4, 1] = -np.inf
        sw = rng.random(shape[0])
        for mode, (fn, fn_grad, base) in MODES.items():
            kw = dict(base, temperature=0.5, sample_weight=sw, reduction="none")
            loss, grad = fn_grad(x, z, **kw)
            rloss, rgrad = REF[fn_grad](x, z, **kw)
            within(loss, rloss, LOSS_TOL[dtype]["rtol"], room(x, z, 0.5, dtype, sw), f"{isa} {mode}")
            close_grad(grad, rgrad, dtype, f"{isa} {mode}")


@pytest.mark.parametrize("mode", list(MODES))
def test_mixed_and_integer_dtypes_promote(rng, mode):
    fn, fn_grad, base = MODES[mode]
    x32, z64 = logits_for(rng, (6, 9), np.float32), logits_for(rng, (6, 9), np.float64)
    loss, grad = fn_grad(x32, z64, reduction="none", **base)
    rloss, rgrad = REF[fn_grad](x32, z64, reduction="none", **base)
    assert loss.dtype == np.float64 and grad.dtype == np.float32
    close_loss(loss, rloss, np.float64)
    close_grad(grad, rgrad, np.float32)
    xi, zi = rng.integers(-3, 4, size=(6, 9)), rng.integers(-3, 4, size=(6, 9)).astype(np.int32)
    loss, grad = fn_grad(xi, zi, reduction="none", **base)
    assert loss.dtype == np.float64 and grad.dtype == np.float64
    want = fn_grad(xi.astype(np.float64), zi.astype(np.float64), reduction="none", **base)
    np.testing.assert_array_equal(loss, want[0])
    np.testing.assert_array_equal(grad, want[1])
    # two different 16-bit dtypes: float32 math on the widened logits
    if BF16 is not None:
        xh, zb = x32.astype(np.float16), x32[::-1].astype(BF16)
        loss, grad = fn_grad(xh, zb, reduction="none", temperature=0.7, **base)
        wloss, wgrad = fn_grad(xh.astype(np.float32), zb.astype(np.float32), reduction="none",
                               temperature=0.7, **base)
        assert loss.dtype == np.float32 and grad.dtype == np.float16
        np.testing.assert_array_equal(loss, wloss)
        np.testing.assert_array_equal(bits(grad), bits(wgrad.astype(np.float16)))


# ---------------------------------------------------------------------------
# axis, layouts, grad_out, threads
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_any_axis_is_the_moved_axis(rng, mode, axis):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (5, 30, 6), np.float64)
    sw_shape = tuple(s for i, s in enumerate(x.shape) if i != axis % 3)
    sw = rng.random(sw_shape)
    for reduction in ("none", "mean"):
        kw = dict(base, reduction=reduction, sample_weight=sw, temperature=0.7)
        loss, grad = fn_grad(x, z, axis=axis, **kw)
        wl, wg = fn_grad(np.ascontiguousarray(np.moveaxis(x, axis, -1)),
                         np.ascontiguousarray(np.moveaxis(z, axis, -1)), **kw)
        np.testing.assert_array_equal(loss, wl)
        np.testing.assert_array_equal(grad, np.moveaxis(wg, -1, axis))
        np.testing.assert_array_equal(fn(x, z, axis=axis, **kw), wl)


@pytest.mark.parametrize("mode", ["kl", "reverse", "js0.1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS + EXTRA_LAYOUTS)
@pytest.mark.parametrize("shape", [(4, 30, 6), (3, 2000, 2)])
def test_any_layout_gives_the_contiguous_bits(rng, mode, dtype, layout, shape):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, shape, dtype)
    if layout == "list":                      # a nested list re-infers float64
        x, z = x.astype(np.float64), z.astype(np.float64)
    sw = rng.random((shape[0], shape[2]))
    kw = dict(base, axis=1, sample_weight=sw, reduction="none", temperature=2.0)
    want = fn_grad(x, z, **kw)
    got = fn_grad(layout_variant(x, layout), layout_variant(z, layout),
                  **dict(kw, sample_weight=layout_variant(sw, layout)))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # one array in another layout, the other contiguous
    got = fn_grad(x, layout_variant(z, layout), **kw)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(fn(layout_variant(x, layout), z, **kw), want[0])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_out_given_and_in_place(rng, mode, dtype):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (50, 300), dtype)
    for reduction in ("mean", "none"):
        kw = dict(base, temperature=0.7, reduction=reduction)
        want = fn_grad(x, z, **kw)
        for order in ("C", "F"):
            out = np.full(x.shape, np.nan, dtype, order=order)
            got = fn_grad(x, z, grad_out=out, **kw)
            assert got[1] is out
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(out, want[1])
        strided = np.full((100, 600), np.nan, dtype)[::2, ::2]
        got = fn_grad(x, z, grad_out=strided, **kw)
        assert got[1] is strided
        np.testing.assert_array_equal(strided, want[1])
        buf = x.copy()
        got = fn_grad(buf, z, grad_out=buf, **kw)
        assert got[1] is buf
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(buf, want[1])


@pytest.mark.parametrize("mode", list(MODES))
def test_grad_out_overlapping_target_logits_is_refused(rng, mode):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (4, 6), np.float64)
    zc = z.copy()
    big = np.concatenate([z, z])
    for out, target_logits in ((z, z), (z[:, :], z), (z.T.T, z), (big[:4], big[2:6]),
                               (big[1:5], big[:4])):
        with pytest.raises(ValueError, match=r"^`grad_out` overlaps `target_logits` in memory"):
            fn_grad(x, target_logits, grad_out=out, **base)
    np.testing.assert_array_equal(z, zc)
    # half of a buffer whose other half is target_logits: no overlap, accepted
    both = np.concatenate([x, z])
    got = fn_grad(x, both[4:], grad_out=both[:4], **base)
    np.testing.assert_array_equal(got[1], fn_grad(x, z, **base)[1])


@pytest.mark.parametrize("shape", [(33, 7), (700, 100), (3, 40000), (5000, 3), (1, 100000)])
def test_results_do_not_depend_on_the_thread_count(rng, shape, oversubscribe):
    x, z = pair(rng, shape, np.float32)
    x[::7, 0] = -np.inf
    z[::5, -1] = -np.inf
    sw = rng.random(shape[0])
    for mode, (fn, fn_grad, base) in MODES.items():
        for reduction in ("none", "sum", "mean"):
            kw = dict(base, reduction=reduction, sample_weight=sw, temperature=0.7)
            runs = [fn_grad(x, z, n_threads=n, **kw) for n in (1, 2, 3, 4)]
            for run in runs[1:]:
                np.testing.assert_equal(run, runs[0], err_msg=f"{mode} {reduction}")
            for n in (1, 3):
                np.testing.assert_equal(fn(x, z, n_threads=n, **kw), runs[0][0])


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: no parity check")


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("shape", [(7, 5), (3, 1000)])
def test_kl_matches_torch_kl_div(rng, temperature, shape):
    torch = _torch()
    F = torch.nn.functional
    x, z = pair(rng, shape, np.float64)
    for torch_reduction, reduction in (("batchmean", "mean"), ("sum", "sum")):
        s = torch.tensor(x, requires_grad=True)
        t = torch.tensor(z)
        want = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                        log_target=True, reduction=torch_reduction)
        want.backward()
        loss, grad = xent.kl_divergence_with_grad(x, z, temperature=temperature,
                                                  reduction=reduction)
        np.testing.assert_allclose(loss, want.item(), rtol=1e-13)
        np.testing.assert_allclose(grad, s.grad.numpy(), rtol=1e-12, atol=1e-16)
        assert xent.kl_divergence(x, z, temperature=temperature, reduction=reduction) == loss
        # reverse: the roles swapped in kl_div, the gradient still w.r.t. s
        s = torch.tensor(x, requires_grad=True)
        want = F.kl_div(F.log_softmax(t / temperature, -1), F.log_softmax(s / temperature, -1),
                        log_target=True, reduction=torch_reduction)
        want.backward()
        loss, grad = xent.kl_divergence_with_grad(x, z, temperature=temperature, reverse=True,
                                                  reduction=reduction)
        np.testing.assert_allclose(loss, want.item(), rtol=1e-13)
        np.testing.assert_allclose(grad, s.grad.numpy(), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("beta", [0.5, 0.1, 0.9])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_js_matches_a_torch_autograd_formula(rng, beta, temperature):
    torch = _torch()
    F = torch.nn.functional
    x, z = pair(rng, (9, 40), np.float64)
    sw = rng.random(9) + 0.1
    for reduction in ("mean", "sum", "none"):
        s = torch.tensor(x, requires_grad=True)
        lp = F.log_softmax(s / temperature, -1)
        lq = F.log_softmax(torch.tensor(z) / temperature, -1)
        lm = torch.logsumexp(torch.stack([lq + math.log(beta), lp + math.log1p(-beta)]), 0)
        rows = (beta * (lq.exp() * (lq - lm)).sum(-1)
                + (1 - beta) * (lp.exp() * (lp - lm)).sum(-1)) * torch.tensor(sw)
        total = rows.sum() / (float(sw.sum()) if reduction == "mean" else 1.0)
        total.backward()
        loss, grad = xent.js_divergence_with_grad(x, z, beta=beta, temperature=temperature,
                                                  sample_weight=sw, reduction=reduction)
        want = rows.detach().numpy() if reduction == "none" else total.item()
        # the formula's log q - log m cancels for near-identical rows: it
        # is good to ~1e-16 absolute there, not relative
        np.testing.assert_allclose(loss, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad, s.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_weighted_kl_matches_torch(rng):
    torch = _torch()
    F = torch.nn.functional
    x, z = pair(rng, (12, 20), np.float64)
    sw = rng.random(12)
    s = torch.tensor(x, requires_grad=True)
    rows = F.kl_div(F.log_softmax(s, -1), F.log_softmax(torch.tensor(z), -1), log_target=True,
                    reduction="none").sum(-1)
    total = (rows * torch.tensor(sw)).sum() / float(sw.sum())
    total.backward()
    loss, grad = xent.kl_divergence_with_grad(x, z, sample_weight=sw)
    np.testing.assert_allclose(loss, total.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, s.grad.numpy(), rtol=1e-12, atol=1e-16)


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


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_gradients_match_finite_differences(rng, mode, reduction, temperature):
    fn, fn_grad, base = MODES[mode]
    x = logits_for(rng, (4, 6), np.float64)
    z = logits_for(rng, (4, 6), np.float64)
    kw = dict(base, temperature=temperature, reduction=reduction,
              sample_weight=rng.random(4) + 0.5)
    loss, grad = fn_grad(x, z, **kw)
    fd = finite_difference(lambda v: fn(v, z, **kw), x.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # "none": the gradient of the sum of the rows
    none = dict(kw, reduction="none")
    fd = finite_difference(lambda v: float(np.sum(fn(v, z, **none))), x.copy())
    np.testing.assert_allclose(fn_grad(x, z, **none)[1], fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64] + list(SIXTEEN_BIT),
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(33, 7), (9, 1000), (2, 40000)])
def test_divergence_of_a_distribution_from_itself_is_exactly_zero(rng, dtype, shape):
    x = logits_for(rng, shape, np.float32, spread=5.0).astype(dtype)
    x[::4, 0] = -np.inf
    for temperature in (1.0, 0.7):
        for reverse in (False, True):
            loss, grad = xent.kl_divergence_with_grad(x, x, reverse=reverse, reduction="none",
                                                      temperature=temperature)
            assert np.all(loss == 0.0), (reverse, temperature)
            assert not np.any(grad), (reverse, temperature)
            assert xent.kl_divergence(x, x, reverse=reverse, temperature=temperature) == 0.0
        for beta in (0.5, 0.1):
            loss, grad = xent.js_divergence_with_grad(x, x, beta=beta, reduction="none",
                                                      temperature=temperature)
            assert np.all(loss == 0.0) and not np.any(grad), (beta, temperature)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(40, 7), (9, 1000), (2, 40000)])
def test_js_symmetry(rng, dtype, shape):
    x, z = pair(rng, shape, dtype)
    rtol = 1e-14 if dtype == np.float64 else 2e-7
    np.testing.assert_allclose(xent.js_divergence(x, z, reduction="none"),
                               xent.js_divergence(z, x, reduction="none"), rtol=rtol)
    for beta in (0.1, 0.25, 0.9):
        np.testing.assert_allclose(xent.js_divergence(x, z, beta=beta, reduction="none"),
                                   xent.js_divergence(z, x, beta=1 - beta, reduction="none"),
                                   rtol=10 * rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("temperature", [0.25, 0.5, 2.0, 4.0, 0.7, 3.0])
def test_temperature_is_the_divergence_of_the_scaled_logits(rng, dtype, mode, temperature):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (30, 200), dtype)
    k = dtype(1.0 / temperature)
    got = fn_grad(x, z, temperature=temperature, reduction="none", **base)
    plain = fn_grad(x * k, z * k, reduction="none", **base)
    if temperature in (0.25, 0.5, 2.0, 4.0):
        np.testing.assert_array_equal(got[0], plain[0])
        np.testing.assert_array_equal(got[1], plain[1] * k)
    else:
        close_loss(got[0], plain[0], dtype)
        close_grad(got[1], plain[1].astype(np.float64) / temperature, dtype)
        # x / T is within an ulp of x * fl(1/T): the divergence moves by what
        # an ulp of the logits moves it
        divided = fn(x / dtype(temperature), z / dtype(temperature), reduction="none", **base)
        within(got[0], divided, 4 * LOSS_TOL[dtype]["rtol"],
               sensitivity(x, z, temperature, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(40, 7), (9, 1000), (2, 40000)])
def test_forward_gradient_is_the_soft_target_cross_entropy_gradient(rng, dtype, shape):
    x, z = pair(rng, shape, dtype)
    q = softmax64(z).astype(dtype)
    sw = rng.random(shape[0])
    for kw in (dict(reduction="mean"), dict(reduction="sum", sample_weight=sw),
               dict(reduction="none", sample_weight=sw)):
        _, grad = xent.kl_divergence_with_grad(x, z, **kw)
        _, ce_grad = xent.softmax_cross_entropy_with_grad(x, q, **kw)
        # q rounded to the dtype: an error of an ulp of q per entry
        tol = dict(rtol=0, atol=1e-14) if dtype == np.float64 else dict(rtol=0, atol=4e-7)
        np.testing.assert_allclose(grad, ce_grad, **tol, err_msg=str(kw))


@pytest.mark.parametrize("shape", [(40, 7), (9, 1000)])
def test_kl_is_cross_entropy_minus_entropy(rng, shape):
    x, z = pair(rng, shape, np.float64)
    q = softmax64(z)
    kl = xent.kl_divergence(x, z, reduction="none")
    ce = xent.softmax_cross_entropy(x, q, reduction="none")
    h = -np.sum(q * np.log(q), axis=-1)
    np.testing.assert_allclose(kl, ce - h, rtol=1e-12, atol=1e-14)
    # the reverse: CE(q; p) - H(p)
    p = softmax64(x)
    rkl = xent.kl_divergence(x, z, reverse=True, reduction="none")
    rce = xent.softmax_cross_entropy(z, p, reduction="none")
    np.testing.assert_allclose(rkl, rce + np.sum(p * np.log(p), axis=-1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_js_lies_between_zero_and_log_two(rng, dtype):
    x = logits_for(rng, (500, 9), dtype, spread=30.0)
    z = logits_for(rng, (500, 9), dtype, spread=30.0)
    x[:50, :4], z[:50, 4:] = -np.inf, -np.inf            # disjoint supports: log 2
    js = xent.js_divergence(x, z, reduction="none")
    assert np.all(js >= 0)
    # log 2 rounded, and the contract's ulps (8 float32, 4 float64) above it
    top = dtype(math.log(2))
    for _ in range(8 if dtype == np.float32 else 4):
        top = np.nextafter(top, dtype(1))
    assert np.all(js <= top), (np.nonzero(js > top)[0], js[js > top])
    np.testing.assert_allclose(js[:50], math.log(2), rtol=1e-15 if dtype == np.float64 else 1e-7)
    kl = xent.kl_divergence(x[50:], z[50:], reduction="none")
    assert np.all(kl >= 0)


def _exact(x, z, mode, beta=0.5):
    """KL(q || p), KL(p || q) or JS(beta) of one row pair, in mpmath (the
    float inputs converted exactly)."""
    mpmath = pytest.importorskip("mpmath", reason="mpmath is not installed: no exact oracle")
    with mpmath.workprec(300):
        a = [mpmath.mpf(float(v)) for v in x]
        b = [mpmath.mpf(float(v)) for v in z]
        la = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
        lb = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
        lp, lq = [v - la for v in a], [v - lb for v in b]
        if mode == "kl":
            return float(mpmath.fsum(mpmath.exp(v) * (v - u) for u, v in zip(lp, lq)))
        if mode == "reverse":
            return float(mpmath.fsum(mpmath.exp(u) * (u - v) for u, v in zip(lp, lq)))
        bb = mpmath.mpf(beta)
        total = 0
        for u, v in zip(lp, lq):
            p, q = mpmath.exp(u), mpmath.exp(v)
            m = bb * q + (1 - bb) * p
            total += bb * q * mpmath.log(q / m) + (1 - bb) * p * mpmath.log(p / m)
        return float(total)


def _ulps(got, exact, dtype):
    """|got - exact| in ulps of the exact value (floored at the smallest normal)."""
    spacing = np.spacing(np.maximum(np.abs(dtype(exact)), np.finfo(dtype).tiny))
    return float(abs(float(got) - exact) / float(spacing))


@pytest.mark.parametrize("mode", ["kl", "reverse", "js", "js0.1"])
def test_near_identical_rows_against_mpmath(rng, mode):
    # the divergences keep full relative precision near 0 (the contract: 4
    # ulp, 64 below 1e-6 in float64), where the float64 reference does not
    fn, _, base = MODES[mode]
    for c in (2, 5, 33):
        x = dyadic(rng.normal(size=(12, c)) * 2, np.float64)
        z = dyadic(x + rng.normal(size=(12, c)) * (10.0 ** -rng.integers(2, 7, size=(12, 1))),
                   np.float64)
        got = fn(x, z, reduction="none", **base)
        for i in range(12):
            exact = _exact(x[i], z[i], mode[:2] if mode.startswith("js") else mode,
                           base.get("beta", 0.5))
            bound = 64 if exact < 1e-6 else 4
            assert _ulps(got[i], exact, np.float64) <= bound, (mode, x[i], z[i], got[i], exact)
    d = 1e-5                                  # analytically: KL(u || softmax([0, d]))
    want = d * d / 8 - d ** 4 / 192
    assert abs(xent.kl_divergence(np.array([[0.0, d]]), np.zeros((1, 2))) - want) \
        <= 64 * np.spacing(want)


@pytest.mark.parametrize("far", [20.0, 25.0, 29.5, 30.0, 30.5, 35.0, 40.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_js_of_rows_far_apart_against_mpmath(far, dtype):
    # q's mass at the second class is e^-far, p's e^-5: r = log q - log p is
    # about 5 - far, where m/q - 1 = (1 - b) expm1(-r) is large
    x = np.array([[0.0, -5.0], [-5.0, 0.0], [0.0, -far], [1.0, -far]], dtype)
    z = np.array([[0.0, -far], [-far, 0.0], [0.0, -5.0], [0.0, 2.0 - far]], dtype)
    for beta in (0.5, 0.1, 0.9):
        got = xent.js_divergence(x, z, beta=beta, reduction="none")
        for i in range(4):
            exact = _exact(x[i], z[i], "js", beta)
            # float64 divergences below 1e-6 are held to 64 ulp
            bound = 8 if dtype == np.float32 else (64 if exact < 1e-6 else 4)
            assert _ulps(got[i], exact, dtype) <= bound, \
                (beta, x[i].tolist(), z[i].tolist(), float(got[i]), exact)


def test_docstring_examples():
    student = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    teacher = np.array([[3.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    p, q = softmax64(student[0]), softmax64(teacher[0])
    np.testing.assert_allclose(xent.kl_divergence(student, teacher, reduction="none"),
                               [np.sum(q * np.log(q / p)), 0.0], rtol=1e-14)
    loss, grad = xent.kl_divergence_with_grad(np.zeros((1, 2)), np.array([[1.0, 0.0]]))
    q = softmax64(np.array([1.0, 0.0]))
    np.testing.assert_allclose(loss, np.sum(q * np.log(2 * q)), rtol=1e-14)
    np.testing.assert_allclose(grad[0], 0.5 - q, rtol=1e-14)


# ---------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [7, 1000])
def test_a_class_masked_in_both_is_a_class_removed(rng, mode, dtype, c):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (6, c), dtype)
    x[:, 2] = z[:, 2] = -np.inf
    x[1, 4] = z[1, 4] = -np.inf
    keep = np.ones(c, bool)
    keep[2] = False
    loss, grad = fn_grad(x, z, reduction="none", temperature=0.7, **base)
    want, wgrad = fn_grad(x[:, keep], z[:, keep], reduction="none", temperature=0.7, **base)
    close_loss(loss, want, dtype)
    close_grad(grad[:, keep], wgrad, dtype)
    assert np.all(grad[:, 2] == 0.0) and grad[1, 4] == 0.0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_support_mismatch(rng, dtype):
    x, z = pair(rng, (5, 8), dtype)
    x[0, 3] = -np.inf            # p_c = 0 where q_c > 0
    z[1, 5] = -np.inf            # q_c = 0 where p_c > 0
    # forward KL(q || p): row 0 infinite, finite gradient; row 1 finite
    loss, grad = xent.kl_divergence_with_grad(x, z, reduction="none")
    rloss, rgrad = ref.kl_divergence_with_grad(x, z, reduction="none")
    assert loss[0] == np.inf and np.all(np.isfinite(loss[1:]))
    assert np.all(np.isfinite(grad))
    close_loss(loss[1:], rloss[1:], dtype)
    close_grad(grad, rgrad, dtype)
    np.testing.assert_allclose(grad[0], softmax64(x[0]) - softmax64(z[0]),
                               **GRAD_TOL[dtype])
    assert xent.kl_divergence(x, z) == np.inf
    # reverse KL(p || q): row 1 infinite with a NaN gradient row; row 0 finite
    loss, grad = xent.kl_divergence_with_grad(x, z, reverse=True, reduction="none")
    rloss, rgrad = ref.kl_divergence_with_grad(x, z, reverse=True, reduction="none")
    assert loss[1] == np.inf and np.isfinite(loss[0])
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(np.delete(grad, 1, axis=0)))
    close_loss(np.delete(loss, 1), np.delete(rloss, 1), dtype)
    close_grad(np.delete(grad, 1, axis=0), np.delete(rgrad, 1, axis=0), dtype)
    # JS stays finite
    for beta in (0.5, 0.1):
        loss, grad = xent.js_divergence_with_grad(x, z, beta=beta, reduction="none")
        rloss, rgrad = ref.js_divergence_with_grad(x, z, beta=beta, reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        close_loss(loss, rloss, dtype)
        close_grad(grad, rgrad, dtype)
    # disjoint supports: JS = log 2 exactly as the docstring shows
    p_logits = np.array([[0.0, -np.inf], [1.0, 2.0]], dtype)
    q_logits = np.array([[-np.inf, 0.0], [1.0, 2.0]], dtype)
    js = xent.js_divergence(p_logits, q_logits, reduction="none")
    np.testing.assert_allclose(js, [math.log(2), 0.0], **LOSS_TOL[dtype])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("c", [5, 1000])
def test_bad_rows_are_nan_only_in_that_row(rng, mode, c):
    fn, fn_grad, base = MODES[mode]
    inf, nan = np.inf, np.nan
    x, z = pair(rng, (10, c), np.float64)
    x[1, 2] = nan
    z[2, 0] = nan
    x[3, 1] = inf
    z[4, 3] = inf
    x[5] = -inf
    z[6] = -inf
    bad = np.zeros(10, bool)
    bad[1:7] = True
    loss, grad = fn_grad(x, z, reduction="none", **base)
    assert np.all(np.isnan(loss[bad])) and np.all(np.isfinite(loss[~bad]))
    assert np.all(np.isnan(grad[bad])) and np.all(np.isfinite(grad[~bad]))
    good, ggrad = fn_grad(x[~bad], z[~bad], reduction="none", **base)
    np.testing.assert_array_equal(loss[~bad], good)
    np.testing.assert_array_equal(grad[~bad], ggrad)
    rloss, rgrad = REF[fn_grad](x, z, reduction="none", **base)
    np.testing.assert_array_equal(np.isnan(rloss), bad)
    assert np.isnan(fn(x, z, **base)) and np.isnan(fn(x, z, reduction="sum", **base))
    # a sample weight of 0 removes the bad rows: 0, gradient 0, not counted
    sw = np.where(bad, 0.0, 1.0)
    loss, grad = fn_grad(x, z, reduction="none", sample_weight=sw, **base)
    assert np.all(loss[bad] == 0.0) and not np.any(grad[bad])
    np.testing.assert_array_equal(loss[~bad], good)
    mean, mgrad = fn_grad(x, z, sample_weight=sw, **base)
    wmean, wgrad = fn_grad(x[~bad], z[~bad], **base)
    np.testing.assert_allclose(mean, wmean, rtol=1e-15)
    np.testing.assert_allclose(mgrad[~bad], wgrad, rtol=1e-15, atol=0)
    assert not np.any(mgrad[bad])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ignore_index_drops_rows(rng, reverse, dtype):
    x, z = pair(rng, (12, 30), dtype)
    x[3, :] = np.nan                                  # ignored, so never NaN
    y = rng.integers(0, 30, size=12)
    y[[0, 3, 7]] = 5
    kept = y != 5
    sw = rng.random(12) + 0.1
    for extra in ({}, dict(sample_weight=sw)):
        kw = dict(reverse=reverse, target=y, ignore_index=5, **extra)
        plain = dict(reverse=reverse)
        if extra:
            plain["sample_weight"] = sw[kept]
        loss, grad = xent.kl_divergence_with_grad(x, z, reduction="none", **kw)
        assert np.all(loss[~kept] == 0.0) and not np.any(grad[~kept])
        want = xent.kl_divergence_with_grad(x[kept], z[kept], reduction="none", **plain)
        np.testing.assert_array_equal(loss[kept], want[0])
        np.testing.assert_array_equal(grad[kept], want[1])
        mean, mgrad = xent.kl_divergence_with_grad(x, z, **kw)
        wmean, wgrad = xent.kl_divergence_with_grad(x[kept], z[kept], **plain)
        close_loss(mean, wmean, dtype)
        close_grad(mgrad[kept], wgrad, dtype)
        assert not np.any(mgrad[~kept])
        # a label in range is just read, never used
        other = xent.kl_divergence(x[kept], z[kept], target=y[kept] * 0 + 1, ignore_index=5,
                                   reduction="none", **plain)
        np.testing.assert_array_equal(other, want[0])


@pytest.mark.parametrize("mode", list(MODES))
def test_zero_denominator_gives_nan_and_a_zero_gradient(rng, mode):
    fn, fn_grad, base = MODES[mode]
    x, z = pair(rng, (4, 6), np.float64)
    cases = [dict(sample_weight=np.zeros(4))]
    if not mode.startswith("js"):
        cases.append(dict(target=np.full(4, -1), ignore_index=-1))
    for kw in cases:
        loss, grad = fn_grad(x, z, **base, **kw)
        assert np.isnan(loss) and grad.shape == x.shape and not np.any(grad)
        assert np.isnan(fn(x, z, **base, **kw))
        s, sgrad = fn_grad(x, z, reduction="sum", **base, **kw)
        assert s == 0.0 and not np.any(sgrad)
        out = np.full(x.shape, np.nan)
        fn_grad(x, z, grad_out=out, **base, **kw)
        assert not np.any(out)


@pytest.mark.parametrize("mode", list(MODES))
def test_empty_batches(mode):
    fn, fn_grad, base = MODES[mode]
    for shape, axis in (((0, 5), -1), ((2, 4, 0), 1), ((0, 3, 4), 1)):
        x = np.zeros(shape)
        loss, grad = fn_grad(x, x.copy(), axis=axis, reduction="none", **base)
        batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        assert loss.shape == batch and grad.shape == shape
        assert np.isnan(fn(x, x.copy(), axis=axis, **base))
        assert fn(x, x.copy(), axis=axis, reduction="sum", **base) == 0.0
        mean, mgrad = fn_grad(x, x.copy(), axis=axis, **base)
        assert np.isnan(mean) and mgrad.shape == shape
    with pytest.raises(ValueError, match=r"^`logits` must have at least one class"):
        fn(np.zeros((3, 0, 4)), np.zeros((3, 0, 4)), axis=1, **base)


def test_a_single_class_has_divergence_zero(rng):
    x, z = pair(rng, (8, 1), np.float64)
    for mode, (fn, fn_grad, base) in MODES.items():
        loss, grad = fn_grad(x, z, reduction="none", **base)
        assert np.all(loss == 0.0) and not np.any(grad), mode


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

X, Z = np.zeros((3, 4)), np.ones((3, 4))
ALL = [xent.kl_divergence, xent.kl_divergence_with_grad, xent.js_divergence,
       xent.js_divergence_with_grad]
KL = ALL[:2]
JS = ALL[2:]


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"^`target_logits` must have the shape of `logits`, "
                                         r"\(3, 4\); got shape \(3, 5\)\.$"):
        fn(X, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"^`target_logits` must have the shape of `logits`"):
        fn(X, np.zeros((4, 3)))


@pytest.mark.parametrize("fn", JS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("beta", [0, 1, 1.5, -0.1, np.nan, 0.0, 1.0])
def test_bad_beta(fn, beta):
    with pytest.raises(ValueError, match=r"^`beta` must be a number in \(0, 1\)"):
        fn(X, Z, beta=beta)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("temperature", [0, 0.0, -1, -1.0, np.inf, np.nan])
def test_bad_temperature(fn, temperature):
    with pytest.raises(ValueError, match=r"^`temperature` must be a finite number > 0; got "):
        fn(X, Z, temperature=temperature)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_bad_reduction_and_dtypes(fn):
    with pytest.raises(ValueError, match=r"^`reduction` must be one of 'none', 'sum', 'mean', 'state'; "
                                         r"got 'avg'"):
        fn(X, Z, reduction="avg")
    with pytest.raises(ValueError, match=r"^`reduction` must be one of"):
        fn(X, Z, reduction="batchmean")
    for name, args in (("logits", (X.astype(bool), Z)), ("logits", (X.astype(complex), Z)),
                       ("target_logits", (X, Z.astype(bool))),
                       ("target_logits", (X, Z.astype(np.complex64)))):
        with pytest.raises(TypeError, match=rf"^`{name}` must be a real floating-point "):
            fn(*args)


@pytest.mark.parametrize("fn", KL, ids=lambda f: f.__name__)
def test_target_and_ignore_index_errors(fn):
    with pytest.raises(TypeError, match=r"^`target` must be integer class indices; got dtype "
                                        r"float64; use target\.astype\(np\.int64\)\.$"):
        fn(X, Z, target=np.zeros(3), ignore_index=0)
    with pytest.raises(ValueError, match=r"^`ignore_index` needs a `target`"):
        fn(X, Z, ignore_index=0)
    with pytest.raises(xent.LabelError, match=r"^`target` class indices must be in \[0, 4\) or "
                                              r"equal ignore_index=-100; got 4 at position 1"):
        fn(X, Z, target=np.array([0, 4, 1]), ignore_index=-100)
    with pytest.raises(xent.LabelError, match=r"^`target` class indices must be in \[0, 4\)"):
        fn(X, Z, target=np.array([0, -1, 1]))


@pytest.mark.parametrize("fn", [xent.kl_divergence_with_grad, xent.js_divergence_with_grad],
                         ids=lambda f: f.__name__)
def test_bad_grad_out(fn):
    with pytest.raises(ValueError, match=r"^`grad_out` must have shape \(3, 4\); got shape "
                                         r"\(3, 5\)"):
        fn(X, Z, grad_out=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"^`grad_out` must have dtype float64; got float32"):
        fn(X, Z, grad_out=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"^`grad_out` must have dtype float32; got float64"):
        fn(X.astype(np.float32), Z, grad_out=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"^`grad_out` overlaps `target_logits` in memory"):
        fn(X, Z, grad_out=Z)


def test_logit_gaps_of_1e4_and_near_the_largest_double():
    # found by the fuzz campaign: at gaps of 1e4 the reference took an
    # underflowed exp(log p) for a mask (+inf where the divergence is about
    # 1e4); with a logit of 1.7e308 the kernels' unnormalised sum of terms
    # overflowed (+inf where the divergence is 1.36e308)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5)) * 1e4
    z = rng.standard_normal((3, 5))
    x[2] = [-7322.7, 1.7e308, -3163.0, 4116.3, 0.0]
    for reverse in (False, True):
        got, g = xent.kl_divergence_with_grad(x, z, reverse=reverse, reduction="none")
        want, wg = xent.reference.kl_divergence_with_grad(x, z, reverse=reverse, reduction="none")
        assert np.all(np.isfinite(got)) and np.all(np.isfinite(g))
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(g, wg, rtol=1e-12, atol=1e-15)
    # the row near the largest double: KL(q || p) = (1 - q_1) 1.7e308 + O(1e4)
    q = np.exp(z[2] - z[2].max()) / np.exp(z[2] - z[2].max()).sum()
    np.testing.assert_allclose(xent.kl_divergence(x[2:], z[2:], reduction="none")[0],
                               (1 - q[1]) * 1.7e308, rtol=1e-12)
