"""The reference's extras (``xent.reference``) against independent oracles.

No xent kernel is called here: this file holds the NumPy reference of the
extras -- ``temperature`` / ``softcap`` / ``z_loss`` of the softmax
cross-entropy, ``token_stats``, the sigmoid and softmax focal losses and
SciPy's options of ``logsumexp`` -- to the semantics the user guide
states (docs/guide/semantics.rst), through

* mpmath at 40 digits: losses, statistics and (by ``mp.diff``) gradients,
  including rows where a naive formula cancels (near-one-hot rows, large
  logits), so the reference's relative precision is checked too;
* PyTorch: torchvision's ``sigmoid_focal_loss`` (its formula, written out in
  torch ops, since torchvision is not a dependency) and the cross-entropy
  with temperature / softcap / z-loss in torch ops, with autograd gradients;
* Keras 3: ``keras.losses.categorical_focal_crossentropy(from_logits=True)``
  where its clipping of the probabilities to ``[1e-7, 1 - 1e-7]`` does not bind;
* SciPy: ``scipy.special.logsumexp`` over ``b``, axes, ``keepdims``,
  ``return_sign`` and special values;
* central finite differences in float64 for every gradient;
* identities: ``gamma = 0`` focal == (alpha times) BCE / CE, a temperature is
  bitwise the plain loss on ``logits * (1/T)``, a huge softcap is the plain loss,
  ``logprob == -CE``, ``rank == 0`` iff the target is a row max.
"""

import importlib.util
import os
import warnings

# Keras picks its backend once, at import: the same choice as test_keras.py
# (torch when installed, else jax with float64), so that the two files can
# share a process.
os.environ.setdefault("KERAS_BACKEND", "torch" if importlib.util.find_spec("torch") else "jax")
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.special  # noqa: E402

import xent  # noqa: E402
from xent import reference as ref  # noqa: E402
from xent._types import TokenStats  # noqa: E402

mpmath = pytest.importorskip("mpmath", reason="mpmath is the high-precision oracle here")
mp = mpmath.mp

# the reference must never warn (it computes under np.errstate)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

INF = np.inf
NAN = np.nan
DPS = 40


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is the autograd oracle of this test")


def close(actual, expected, rtol, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), (a, b)


def finite_diff(f, x, h=1e-6):
    """Central differences of the scalar ``f`` at every entry of the float64 ``x``."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def mp_grad(f, row):
    """``d f / d row_j`` of an mpmath function of a list of mpf, by ``mp.diff``."""
    row = [mp.mpf(float(v)) for v in row]
    out = []
    for j in range(len(row)):
        def fj(v, j=j):
            r = list(row)
            r[j] = v
            return f(r)
        out.append(mp.diff(fj, row[j]))
    return out


# --------------------------------------------------------------------------
# mpmath oracles (inputs converted exactly: mpf(float(v)))
# --------------------------------------------------------------------------

def mp_row(row):
    return [mp.mpf(float(v)) for v in row]


def mp_lse(z):
    return mp.log(mp.fsum(mp.exp(v) for v in z))


def mp_transform(row, temperature=1.0, softcap=None, dtype=np.float64):
    """The logits after temperature (rounded in ``dtype``, as xent documents)
    and softcap (exact here; the reference rounds it once)."""
    z = np.asarray(row, dtype=dtype) / np.dtype(dtype).type(temperature)
    z = mp_row(z)
    if softcap is not None:
        c = mp.mpf(softcap)
        z = [c * mp.tanh(v / c) for v in z]
    return z


def mp_ce_row(z, target, w, eps, z_loss):
    """One row's cross-entropy (+ z-loss) on the transformed logits ``z``."""
    c = len(z)
    lse = mp_lse(z)
    nll = [lse - v for v in z]
    if isinstance(target, (int, np.integer)):
        q = [mp.mpf(eps) / c * w[k] for k in range(c)]
        q[target] += (1 - mp.mpf(eps)) * w[target]
    else:
        q = [w[k] * ((1 - mp.mpf(eps)) * mp.mpf(float(target[k])) + mp.mpf(eps) / c)
             for k in range(c)]
    return mp.fsum(qk * nk for qk, nk in zip(q, nll)) + z_loss * lse ** 2


def mp_sigmoid_focal(x, t, alpha, gamma):
    x, t = mp.mpf(x), mp.mpf(float(t))
    # p, q = 1 - p and -log p, -log q, each without cancellation
    p, q = 1 / (1 + mp.exp(-x)), 1 / (1 + mp.exp(x))
    nlp, nlq = mp.log1p(mp.exp(-x)), mp.log1p(mp.exp(x))
    ce = t * nlp + (1 - t) * nlq if 0 < t < 1 else (nlp if t == 1 else nlq)
    one_minus_p_t = q * t + p * (1 - t)                  # 1 - (p t + (1 - p)(1 - t))
    loss = ce * one_minus_p_t ** gamma
    if alpha is not None and alpha >= 0:
        loss *= alpha * t + (1 - alpha) * (1 - t)
    return loss


def mp_softmax_focal_row(z, target, alpha, gamma, w):
    """``-a sum_c w_c t_c (1 - p_c)^gamma log p_c`` (class index: one-hot t)."""
    a = 1 if alpha is None else mp.mpf(alpha)
    lse = mp_lse(z)
    c = len(z)
    t = ([mp.mpf(int(k == target)) for k in range(c)] if isinstance(target, (int, np.integer))
         else mp_row(target))
    total = mp.mpf(0)
    for k in range(c):
        if t[k] != 0 and w[k] != 0:
            logp = z[k] - lse
            total += -a * w[k] * t[k] * (1 - mp.exp(logp)) ** gamma * logp
    return total


# --------------------------------------------------------------------------
# softmax cross-entropy: temperature, softcap, z_loss
# --------------------------------------------------------------------------

EXTRAS = [
    dict(temperature=0.7),
    dict(temperature=3.0),
    dict(softcap=2.5),
    dict(z_loss=1e-2),
    dict(temperature=1.7, softcap=4.0, z_loss=0.3),
    dict(temperature=0.5, softcap=1.5, z_loss=0.05, label_smoothing=0.2),
]


def _ce_case(rng, n=4, c=5, probs=False):
    x = rng.normal(0, 3, size=(n, c))
    target = rng.dirichlet(np.ones(c), n) if probs else rng.integers(0, c, n)
    return x, target


@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("extras", EXTRAS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_ce_extras_vs_mpmath(rng, extras, probs):
    """Per-row losses (float64 and float32) and float64 gradients to mpmath."""
    x, target = _ce_case(rng, probs=probs)
    w = rng.uniform(0.5, 2.0, x.shape[1])
    T = extras.get("temperature", 1.0)
    cap = extras.get("softcap")
    zl = extras.get("z_loss", 0.0)
    eps = extras.get("label_smoothing", 0.0)
    wmp = mp_row(w)
    for dtype, rtol in ((np.float64, 2e-14), (np.float32, 2e-6)):
        xd = x.astype(dtype)
        td = target.astype(dtype) if probs else target
        got = ref.softmax_cross_entropy(xd, td, weight=w.astype(dtype), reduction="none",
                                        **extras)
        assert got.dtype == dtype
        with mp.workdps(DPS):
            want = [mp_ce_row(mp_transform(xd[i], T, cap, dtype), td[i], wmp, eps, zl)
                    for i in range(x.shape[0])]
        close(got, [float(v) for v in want], rtol=rtol)

    _, grad = ref.softmax_cross_entropy_with_grad(x, target, weight=w, reduction="sum",
                                                  **extras)
    with mp.workdps(DPS):
        for i in range(x.shape[0]):
            def f(row, i=i):
                z = [v / mp.mpf(T) for v in row]
                if cap is not None:
                    z = [mp.mpf(cap) * mp.tanh(v / mp.mpf(cap)) for v in z]
                return mp_ce_row(z, target[i], wmp, eps, zl)
            close(grad[i], [float(v) for v in mp_grad(f, x[i])], rtol=1e-12, atol=1e-15)


def torch_ce_extras(x, target, *, weight=None, sample_weight=None, ignore_index=None,
                    label_smoothing=0.0, temperature=1.0, softcap=None, z_loss=0.0,
                    reduction="mean"):
    """The documented loss in torch ops (float64): (value, autograd gradient)."""
    torch = torch_or_skip()
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    z = tx / temperature
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    tt = torch.tensor(target)
    n, c = x.shape
    w = torch.ones(c, dtype=tx.dtype) if weight is None else torch.tensor(weight)
    s = torch.ones(n, dtype=tx.dtype) if sample_weight is None else torch.tensor(sample_weight)
    ce = F.cross_entropy(z, tt, weight=w, label_smoothing=label_smoothing, reduction="none",
                         ignore_index=-100 if ignore_index is None else ignore_index)
    if tt.is_floating_point():
        kept = torch.ones(n, dtype=tx.dtype)
        counted = kept
    else:
        kept = (tt != (-100 if ignore_index is None else ignore_index)).to(tx.dtype)
        counted = kept * w[torch.where(kept > 0, tt, 0)]
    lse = torch.logsumexp(z, dim=1)
    per_row = s * (ce + z_loss * lse ** 2 * kept)
    if reduction == "none":
        value = per_row
    elif reduction == "sum":
        value = per_row.sum()
    else:
        value = per_row.sum() / (s * counted).sum()
    value.sum().backward()
    return value.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("extras", EXTRAS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_ce_extras_vs_torch(rng, extras, probs, reduction):
    """Loss and autograd gradient of the documented formula written in torch, with class and
    sample weights, ignore_index (and a sample weight of 0)."""
    x, target = _ce_case(rng, n=6, probs=probs)
    kw = dict(extras, weight=rng.uniform(0.5, 2.0, 5),
              sample_weight=np.array([1.0, 0.5, 2.0, 0.0, 1.5, 0.7]), reduction=reduction)
    if not probs:
        target[1] = -100
        kw["ignore_index"] = -100
    want_loss, want_grad = torch_ce_extras(x, target, **kw)
    loss, grad = ref.softmax_cross_entropy_with_grad(x, target, **kw)
    close(loss, want_loss, rtol=1e-12, atol=1e-15)
    close(grad, want_grad, rtol=1e-11, atol=1e-14)
    close(ref.softmax_cross_entropy(x, target, **kw), loss, rtol=0)


@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_ce_extras_grad_finite_differences(rng, probs, reduction):
    x, target = _ce_case(rng, n=3, c=4, probs=probs)
    kw = dict(temperature=1.3, softcap=2.0, z_loss=0.2, label_smoothing=0.1,
              weight=np.array([1.0, 2.0, 0.5, 1.5]), sample_weight=np.array([1.0, 0.3, 2.0]),
              reduction=reduction)

    def total(z):
        return np.sum(ref.softmax_cross_entropy(z, target, **kw))
    _, grad = ref.softmax_cross_entropy_with_grad(x, target, **kw)
    close(grad, finite_diff(total, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
def test_temperature_is_plain_loss_on_scaled_logits_bitwise(rng, dtype, probs):
    """temperature=T is bitwise the plain loss on z = logits * (1/T), the
    reciprocal rounded to the compute dtype (float32 for float16)."""
    x, target = _ce_case(rng, n=7, c=6, probs=probs)
    x = (x * 4).astype(dtype)
    cdt = np.float64 if dtype in (np.float64, np.int32) else np.float32
    for T in (0.3, 0.7, 2.5, 1e3):
        z = x.astype(cdt) * np.dtype(cdt).type(1.0 / T)
        for reduction in ("none", "sum", "mean"):
            for kw in (dict(), dict(label_smoothing=0.1, weight=np.arange(1.0, 7.0))):
                got = ref.softmax_cross_entropy(x, target, temperature=T, reduction=reduction,
                                                **kw)
                want = ref.softmax_cross_entropy(z, target, reduction=reduction, **kw)
                if reduction == "none":
                    same_bits(got, want)
                else:
                    assert got == want
        stats, want = ref.token_stats(x, temperature=T), ref.token_stats(z)
        same_bits(stats.lse, want.lse)
        same_bits(stats.entropy, want.entropy)


def test_defaults_are_the_plain_function_bitwise(rng):
    x, y = _ce_case(rng, n=5, c=7)
    x = x.astype(np.float32)
    kw = dict(temperature=1.0, softcap=None, z_loss=0.0)
    for reduction in ("none", "sum", "mean"):
        a = ref.softmax_cross_entropy_with_grad(x, y, reduction=reduction)
        b = ref.softmax_cross_entropy_with_grad(x, y, reduction=reduction, **kw)
        same_bits(a[0], b[0])
        same_bits(a[1], b[1])


@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
def test_huge_softcap_is_plain(rng, probs):
    x, target = _ce_case(rng, probs=probs)
    for reduction in ("none", "mean"):
        plain = ref.softmax_cross_entropy_with_grad(x, target, reduction=reduction)
        capped = ref.softmax_cross_entropy_with_grad(x, target, softcap=1e30,
                                                     reduction=reduction)
        close(capped[0], plain[0], rtol=1e-14)
        close(capped[1], plain[1], rtol=1e-14, atol=1e-16)


def test_softcap_special_values():
    """+inf is capped to c (finite loss, gradient 0 there), -inf stays a mask,
    NaN stays NaN."""
    c = 3.0
    x = np.array([[INF, 1.0, -INF, 0.5], [NAN, 1.0, 2.0, 3.0], [-INF, 2.0, 0.0, -1.0]])
    y = np.array([1, 2, 1])
    loss, grad = ref.softmax_cross_entropy_with_grad(x, y, softcap=c, z_loss=0.1,
                                                     reduction="none")
    with mp.workdps(DPS):
        z = [mp.mpf(c), c * mp.tanh(mp.mpf(1) / c), c * mp.tanh(mp.mpf(0.5) / c)]
        lse = mp_lse(z)
        want0 = lse - z[1] + mp.mpf(0.1) * lse ** 2
    close(loss[0], float(want0), rtol=1e-14)
    assert np.isnan(loss[1]) and np.isnan(grad[1]).all()
    assert np.isfinite(loss[2])
    assert grad[0, 0] == 0 and grad[0, 2] == 0 and grad[2, 0] == 0
    assert np.isfinite(grad[[0, 2]]).all()


def test_z_loss_weights_and_ignored_rows():
    """z_loss * lse^2 per row, times the sample weight but not the class weight;
    an ignored row and a row of sample weight 0 get none; mean divides by the
    usual sum s_i w_{y_i}."""
    x = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [5.0, 1.0, 0.0]])
    y = np.array([0, 2, -1, 1])
    w = np.array([2.0, 0.5, 3.0])
    s = np.array([1.5, 0.25, 1.0, 0.0])
    zl = 0.3
    kw = dict(weight=w, sample_weight=s, ignore_index=-1)
    base = ref.softmax_cross_entropy(x, y, reduction="none", **kw)
    got = ref.softmax_cross_entropy(x, y, z_loss=zl, reduction="none", **kw)
    lse = scipy.special.logsumexp(x, axis=1)
    kept = np.array([1.0, 1.0, 0.0, 0.0])
    close(got, base + s * zl * lse ** 2 * kept, rtol=1e-14)
    assert got[2] == 0 and got[3] == 0
    mean = ref.softmax_cross_entropy(x, y, z_loss=zl, reduction="mean", **kw)
    close(mean, got.sum() / (1.5 * 2.0 + 0.25 * 3.0), rtol=1e-14)
    # a NaN row stays NaN
    x[1, 1] = NAN
    assert np.isnan(ref.softmax_cross_entropy(x, y, z_loss=zl, reduction="none", **kw)[1])


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=INF), "temperature"),
    (dict(temperature=NAN), "temperature"),
    (dict(softcap=0.0), "softcap"),
    (dict(softcap=INF), "softcap"),
    (dict(z_loss=-0.1), "z_loss"),
    (dict(z_loss=NAN), "z_loss"),
])
def test_ce_extras_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ref.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **kw)
    with pytest.raises(ValueError, match=match):
        ref.softmax_cross_entropy_with_grad(np.zeros((2, 3)), np.array([0, 1]), **kw)


# --------------------------------------------------------------------------
# token_stats
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-14), (np.float32, 3e-6)])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.0])
def test_token_stats_vs_mpmath(rng, dtype, rtol, temperature):
    x = (rng.normal(0, 4, size=(5, 7))).astype(dtype)
    x[2, 3] = -INF                                   # a masked class
    y = np.array([0, 6, 3, 2, 5])
    st = ref.token_stats(x, y, temperature=temperature)
    assert isinstance(st, TokenStats)
    for name in ("lse", "entropy", "logprob"):
        assert getattr(st, name).dtype == dtype and getattr(st, name).shape == (5,)
    assert st.argmax.dtype == np.int64 and st.rank.dtype == np.int64
    with mp.workdps(DPS):
        for i in range(5):
            z = mp_transform(x[i], temperature, None, dtype)
            lse = mp_lse(z)
            p = [mp.exp(v - lse) if v != -mp.inf else mp.mpf(0) for v in z]
            ent = mp.fsum(pk * (lse - v) for pk, v in zip(p, z) if pk != 0)
            close(st.lse[i], float(lse), rtol=rtol)
            close(st.entropy[i], float(ent), rtol=rtol)
            if y[i] == 3 and i == 2:
                assert st.logprob[i] == -INF
            else:
                close(st.logprob[i], float(z[y[i]] - lse), rtol=rtol)
            assert st.argmax[i] == int(np.argmax(x[i]))
            assert st.rank[i] == int((x[i] > x[i, y[i]]).sum())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-14), (np.float32, 3e-6)])
def test_entropy_of_near_one_hot_row_keeps_relative_precision(dtype, rtol):
    """Entropy ~ C * d * exp(-d): sum_c p_c (lse - z_c) with no cancellation
    (``lse - sum_c p_c z_c`` would cancel when the max is not 0)."""
    for d in (5.0, 20.0, 60.0) if dtype == np.float64 else (5.0, 15.0, 40.0):
        x = np.full((1, 9), -d)
        x[0, 4] = 0
        x[0, 7] = -d - 3
        x = (x + 7.5).astype(dtype)                   # exact shift
        st = ref.token_stats(x)
        with mp.workdps(DPS):
            z = mp_row(x[0])
            lse = mp_lse(z)
            ent = mp.fsum(mp.exp(v - lse) * (lse - v) for v in z)
        assert st.entropy[0] > 0
        close(st.entropy[0], float(ent), rtol=rtol)
        close(st.lse[0], float(lse), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 2.5])
def test_token_stats_logprob_is_minus_ce_bitwise(rng, dtype, temperature):
    x = rng.normal(0, 3, size=(4, 6, 5)).astype(dtype)         # class axis 1
    y = rng.integers(0, 6, size=(4, 5))
    y[0, 0] = y[3, 2] = -7
    x[1, :, 1] = NAN
    x[2, 3, 4] = INF
    st = ref.token_stats(x, y, axis=1, temperature=temperature, ignore_index=-7)
    ce = ref.softmax_cross_entropy(x, y, axis=1, temperature=temperature, ignore_index=-7,
                                   reduction="none")
    kept = y != -7
    same_bits(st.logprob[kept], -ce[kept])
    assert (st.logprob[~kept] == 0).all() and (st.rank[~kept] == -1).all()
    assert np.isnan(st.logprob[1, 1]) and st.rank[1, 1] == -1 and st.argmax[1, 1] == -1
    assert st.lse[2, 4] == INF and np.isnan(st.entropy[2, 4]) and st.argmax[2, 4] == 3


def test_token_stats_rank_zero_iff_target_is_a_row_max(rng):
    x = rng.integers(-3, 4, size=(200, 6)).astype(np.float64)   # many ties
    y = rng.integers(0, 6, 200)
    st = ref.token_stats(x, y)
    is_max = x[np.arange(200), y] == x.max(axis=1)
    assert ((st.rank == 0) == is_max).all()
    np.testing.assert_array_equal(st.rank, (x > x[np.arange(200), y][:, None]).sum(axis=1))
    np.testing.assert_array_equal(st.argmax, x.argmax(axis=1))   # first max


def test_token_stats_special_rows():
    x = np.array([[-INF, -INF, -INF],
                  [1.0, NAN, 2.0],
                  [1.0, INF, INF],
                  [-INF, 0.0, -INF],
                  [0.0, 1.0, 2.0]])
    y = np.array([0, 2, 2, 0, 9])
    st = ref.token_stats(x, y, ignore_index=9)
    np.testing.assert_array_equal(st.lse, [NAN, NAN, INF, 0.0, st.lse[4]])
    np.testing.assert_array_equal(st.entropy, [NAN, NAN, NAN, 0.0, st.entropy[4]])
    np.testing.assert_array_equal(st.argmax, [-1, -1, 1, 1, 2])
    np.testing.assert_array_equal(st.logprob, [NAN, NAN, NAN, -INF, 0.0])
    np.testing.assert_array_equal(st.rank, [-1, -1, 0, 1, -1])
    # without a target
    st = ref.token_stats(x)
    assert st.logprob is None and st.rank is None


def test_token_stats_order_statistics_use_the_logits_as_given():
    """A small temperature overflows both logits to +inf; argmax and rank still
    see the logits as given.  Integer logits are compared as the float64
    values every function computes with (2**60 + 1 and 2**60 tie)."""
    x = np.array([[1e308, 1.5e308, 0.0]])
    st = ref.token_stats(x, np.array([0]), temperature=0.5)
    assert st.lse[0] == INF and st.argmax[0] == 1 and st.rank[0] == 1
    big = np.array([[2**60 + 1, 2**60, 3]], dtype=np.int64)    # equal as float64
    st = ref.token_stats(big, np.array([1]))
    assert st.argmax[0] == 0 and st.rank[0] == 0


def test_token_stats_errors():
    x = np.zeros((3, 4))
    with pytest.raises(xent.LabelError, match="label 4 at flat position 1"):
        ref.token_stats(x, np.array([0, 4, 1]))
    with pytest.raises(xent.LabelError, match="label -1 at flat position 2"):
        ref.token_stats(x, np.array([0, 1, -1]), ignore_index=-100)
    with pytest.raises(TypeError, match="class indices"):
        ref.token_stats(x, np.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        ref.token_stats(x, temperature=0.0)


# --------------------------------------------------------------------------
# sigmoid focal loss
# --------------------------------------------------------------------------

FOCAL_ARGS = [dict(), dict(alpha=None), dict(alpha=0.8, gamma=0.5), dict(alpha=-1.0, gamma=3.0),
              dict(alpha=0.25, gamma=1.0), dict(gamma=0.0)]


def _ids(d):
    return ",".join(f"{k}={v}" for k, v in d.items()) or "defaults"


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("kw", FOCAL_ARGS, ids=_ids)
def test_sigmoid_focal_vs_mpmath(rng, kw, dtype, rtol):
    """Elementwise losses to mpmath, with logits far into the tails (tiny losses
    keep their relative precision) and soft targets."""
    x = np.concatenate([rng.normal(0, 3, 12), [30.0, -30.0, 80.0, -80.0, 0.0, 8.0]])
    t = np.concatenate([rng.integers(0, 2, 12), [1, 0, 1, 0, 1, 1]]).astype(np.float64)
    t[:3] = [0.3, 0.9, 0.5]                                       # soft targets
    x = x.astype(dtype)
    alpha, gamma = kw.get("alpha", 0.25), kw.get("gamma", 2.0)
    got = ref.sigmoid_focal_loss(x, t.astype(dtype), reduction="none", **kw)
    assert got.dtype == dtype
    with mp.workdps(DPS):
        want = [float(mp_sigmoid_focal(float(a), b, alpha, gamma)) for a, b in zip(x, t)]
    close(got, want, rtol=rtol, atol=float(np.finfo(dtype).smallest_subnormal))


def torch_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="mean"):
    """torchvision.ops.sigmoid_focal_loss, written out in torch ops; with
    autograd.  (torchvision's default reduction is "none".)"""
    torch = torch_or_skip()
    F = torch.nn.functional
    inputs = torch.tensor(x, requires_grad=True)
    targets = torch.tensor(t)
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    loss.sum().backward()
    return loss.detach().numpy(), inputs.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("kw", [k for k in FOCAL_ARGS if k.get("alpha", 0) is not None], ids=_ids)
def test_sigmoid_focal_vs_torchvision_formula(rng, kw, reduction):
    x = rng.normal(0, 2, size=(6, 5))
    t = (rng.random((6, 5)) < 0.4).astype(np.float64)
    t[0] = rng.random(5)                                          # soft targets
    want_loss, want_grad = torch_sigmoid_focal(x, t, reduction=reduction, **kw)
    loss, grad = ref.sigmoid_focal_loss_with_grad(x, t, reduction=reduction, **kw)
    close(loss, want_loss, rtol=1e-11, atol=1e-15)
    close(grad, want_grad, rtol=1e-10, atol=1e-14)
    close(ref.sigmoid_focal_loss(x, t, reduction=reduction, **kw), loss, rtol=0)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("kw", FOCAL_ARGS, ids=_ids)
def test_sigmoid_focal_grad_finite_differences(rng, kw, reduction):
    x = rng.normal(0, 2, size=(3, 4))
    t = (rng.random((3, 4)) < 0.5).astype(np.float64)
    t[1] = [0.2, 0.7, 0.5, 1.0]

    def total(z):
        return np.sum(ref.sigmoid_focal_loss(z, t, reduction=reduction, **kw))
    _, grad = ref.sigmoid_focal_loss_with_grad(x, t, reduction=reduction, **kw)
    close(grad, finite_diff(total, x), rtol=1e-6, atol=1e-9)


def test_sigmoid_focal_grad_vs_mpmath_in_the_tails():
    """The analytic gradient keeps its relative precision where p - t and the
    focal term are tiny (no cancellation)."""
    x = np.array([25.0, -25.0, 6.0, -6.0, 0.3, 40.0, 2.0])
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.35])
    for gamma in (0.5, 2.0, 3.0):
        _, grad = ref.sigmoid_focal_loss_with_grad(x, t, alpha=0.3, gamma=gamma,
                                                   reduction="sum")
        with mp.workdps(DPS):
            want = [float(mp.diff(lambda v, b=b: mp_sigmoid_focal(v, b, 0.3, gamma),
                                  mp.mpf(a))) for a, b in zip(x, t)]
        close(grad, want, rtol=1e-13)


def test_sigmoid_focal_gamma_zero_is_bce(rng):
    x = rng.normal(0, 3, size=(5, 4)).astype(np.float32)
    x[0, :3] = [INF, -INF, 90.0]
    t = (rng.random((5, 4)) < 0.5).astype(np.float32)
    t[1] = [0.1, 0.6, 0.5, 0.9]
    for reduction in ("none", "sum", "mean"):
        bce = ref.sigmoid_binary_cross_entropy_with_grad(x, t, reduction=reduction)
        foc = ref.sigmoid_focal_loss_with_grad(x, t, alpha=None, gamma=0.0, reduction=reduction)
        same_bits(foc[0], bce[0])
        same_bits(foc[1], bce[1])
        for alpha in (0.25, 0.9):
            alpha_t = (alpha * t + (1 - alpha) * (1 - t)).astype(np.float64)
            foc = ref.sigmoid_focal_loss_with_grad(x, t, alpha=alpha, gamma=0.0,
                                                   reduction="none")
            bce = ref.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
            close(foc[0], alpha_t * bce[0], rtol=3e-7, atol=1e-44)   # x = 90: subnormal
            close(foc[1], alpha_t * bce[1], rtol=3e-7, atol=1e-44)


def test_sigmoid_focal_special_values():
    x = np.array([INF, INF, -INF, -INF, NAN, INF])
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.5])
    loss, grad = ref.sigmoid_focal_loss_with_grad(x, t, alpha=None, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, INF, INF, 0.0, NAN, INF])
    # the limits: 0 where the loss is flat, +-1 where it is linear; for t = 1/2,
    # (1/2)^2 * d ce/dx = 1/4 * 1/2
    np.testing.assert_array_equal(grad, [0.0, 1.0, -1.0, 0.0, NAN, 0.125])
    with pytest.raises(ValueError, match="gamma"):
        ref.sigmoid_focal_loss(x, t, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        ref.sigmoid_focal_loss_with_grad(x, t, gamma=NAN)


# --------------------------------------------------------------------------
# softmax focal loss
# --------------------------------------------------------------------------

SOFTMAX_FOCAL_ARGS = [dict(), dict(alpha=0.25), dict(alpha=0.6, gamma=0.5),
                      dict(gamma=3.0, weight=np.array([1.0, 2.0, 0.5, 0.0, 1.5])),
                      dict(gamma=0.0, alpha=2.0)]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 3e-6)])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("kw", SOFTMAX_FOCAL_ARGS, ids=_ids)
def test_softmax_focal_vs_mpmath(rng, kw, probs, dtype, rtol):
    """Per-row losses to mpmath, near-one-hot rows included (a tiny loss keeps
    its relative precision)."""
    x = rng.normal(0, 2, size=(6, 5))
    x[4] = [30.0, 0.0, -2.0, 1.0, 0.5] if dtype == np.float64 else [12.0, 0, -2.0, 1.0, 0.5]
    x[5, 2] = -INF
    x = x.astype(dtype)
    if probs:
        target = rng.dirichlet(np.ones(5), 6)
        target[4] = [1.0, 0, 0, 0, 0]
        target[5] = [0.5, 0.5, 0, 0, 0]
        target = target.astype(dtype)
    else:
        target = np.array([0, 1, 2, 3, 0, 4])
    w = kw.get("weight", np.ones(5))
    got = ref.softmax_focal_loss(x, target, reduction="none", **kw)
    assert got.dtype == dtype
    with mp.workdps(DPS):
        want = [float(mp_softmax_focal_row(mp_row(x[i]), target[i], kw.get("alpha"),
                                           kw.get("gamma", 2.0), mp_row(w)))
                for i in range(6)]
    close(got, want, rtol=rtol)


@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("kw", SOFTMAX_FOCAL_ARGS, ids=_ids)
def test_softmax_focal_grad_vs_mpmath(rng, kw, probs):
    """Float64 gradients to mpmath's derivative, on a near-one-hot row too
    (where softmax - 1 would cancel)."""
    x = rng.normal(0, 2, size=(4, 5))
    x[3] = [14.0, 0.0, -2.0, 1.0, 0.5]
    if probs:
        target = rng.dirichlet(np.ones(5), 4)
        target[3] = [1.0, 0, 0, 0, 0]
    else:
        target = np.array([0, 4, 2, 0])
    w = kw.get("weight", np.ones(5))
    _, grad = ref.softmax_focal_loss_with_grad(x, target, reduction="sum", **kw)
    with mp.workdps(DPS):
        for i in range(4):
            def f(row, i=i):
                return mp_softmax_focal_row(row, target[i], kw.get("alpha"),
                                            kw.get("gamma", 2.0), mp_row(w))
            close(grad[i], [float(v) for v in mp_grad(f, x[i])], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("kw", SOFTMAX_FOCAL_ARGS, ids=_ids)
def test_softmax_focal_grad_finite_differences(rng, kw, probs, reduction):
    x = rng.normal(0, 2, size=(4, 5))
    if probs:
        target = rng.dirichlet(np.ones(5), 4)
    else:
        target = np.array([0, -1, 3, 1])
        kw = dict(kw, ignore_index=-1)

    def total(z):
        return np.sum(ref.softmax_focal_loss(z, target, reduction=reduction, **kw))
    loss, grad = ref.softmax_focal_loss_with_grad(x, target, reduction=reduction, **kw)
    close(grad, finite_diff(total, x), rtol=1e-6, atol=1e-9)
    close(ref.softmax_focal_loss(x, target, reduction=reduction, **kw), loss, rtol=0)


@pytest.mark.parametrize("probs", [False, True], ids=["indices", "probs"])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 4.0])
def test_softmax_focal_vs_keras(rng, probs, gamma):
    """keras.losses.categorical_focal_crossentropy(from_logits=True) per sample,
    on rows whose probabilities stay inside Keras's clip [1e-7, 1 - 1e-7]."""
    keras = pytest.importorskip("keras", reason="Keras 3 is an oracle of this test")
    try:
        kfocal = keras.losses.categorical_focal_crossentropy
    except AttributeError:
        pytest.skip("this Keras has no categorical_focal_crossentropy")
    x = rng.normal(0, 1.5, size=(8, 5))
    p = scipy.special.softmax(x, axis=1)
    assert ((p > 1e-6) & (p < 1 - 1e-6)).all()                  # the clip does not bind
    if probs:
        target = rng.dirichlet(np.ones(5), 8)
        y_true = target
    else:
        target = rng.integers(0, 5, 8)
        y_true = np.eye(5)[target]
    # alphas exact in float32: Keras casts alpha to float32 (its default is 0.25)
    for alpha in (0.25, 1.0, 0.75):
        with warnings.catch_warnings():          # Keras's own NumPy 2 DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            want = np.asarray(keras.ops.convert_to_numpy(
                kfocal(y_true, x, alpha=alpha, gamma=gamma, from_logits=True)))
        got = ref.softmax_focal_loss(x, target, alpha=alpha, gamma=gamma, reduction="none")
        rtol = 1e-12 if want.dtype == np.float64 else 2e-5
        close(got, want, rtol=rtol)


def test_softmax_focal_gamma_zero_is_alpha_ce(rng):
    x = rng.normal(0, 3, size=(6, 5))
    x[0, 1] = -INF
    y = np.array([0, 1, 2, 3, 4, 2])
    probs = rng.dirichlet(np.ones(5), 6)
    w = np.array([1.0, 0.5, 2.0, 1.5, 0.0])
    for target in (y, probs):
        for reduction in ("none", "sum", "mean"):
            ce = ref.softmax_cross_entropy_with_grad(x, target, weight=w, reduction=reduction)
            foc = ref.softmax_focal_loss_with_grad(x, target, gamma=0.0, weight=w,
                                                   reduction=reduction)
            same_bits(foc[0], ce[0])                             # alpha None: a = 1
            close(foc[1], ce[1], rtol=1e-14, atol=1e-17)
            foc = ref.softmax_focal_loss_with_grad(x, target, alpha=0.3, gamma=0.0,
                                                   weight=w, reduction=reduction)
            close(foc[0], 0.3 * np.asarray(ce[0]), rtol=1e-15)
            close(foc[1], 0.3 * ce[1], rtol=1e-14, atol=1e-17)


def test_softmax_focal_rows_ignored_bad_and_empty_mean():
    x = np.array([[1.0, 2.0, 0.0], [NAN, 0.0, 0.0], [0.0, INF, 1.0], [3.0, NAN, 0.0]])
    y = np.array([0, 1, 2, -100])
    w = np.array([2.0, 1.0, 0.5])
    loss, grad = ref.softmax_focal_loss_with_grad(x, y, weight=w, ignore_index=-100,
                                                  reduction="none")
    assert np.isfinite(loss[0]) and np.isnan(loss[1:3]).all() and loss[3] == 0
    assert np.isnan(grad[1:3]).all() and (grad[3] == 0).all()
    mean = ref.softmax_focal_loss(x[[0]], y[[0]], weight=w, reduction="mean")
    close(mean, loss[0] / 2.0, rtol=1e-15)
    # every row ignored: the mean is nan, the gradient 0
    loss, grad = ref.softmax_focal_loss_with_grad(x, np.full(4, -100), ignore_index=-100)
    assert np.isnan(loss) and (grad == 0).all()
    with pytest.raises(xent.LabelError, match="label 3 at flat position 0"):
        ref.softmax_focal_loss(x, np.array([3, 0, 0, 0]))
    with pytest.raises(ValueError, match="ignore_index"):
        ref.softmax_focal_loss(x, np.full((4, 3), 1 / 3), ignore_index=0)
    with pytest.raises(ValueError, match="gamma"):
        ref.softmax_focal_loss_with_grad(x, y, gamma=-0.5)


def test_softmax_focal_class_axis(rng):
    x = rng.normal(size=(3, 5, 4))
    y = rng.integers(0, 5, size=(3, 4))
    moved = np.moveaxis(x, 1, -1)
    for reduction in ("none", "mean"):
        a = ref.softmax_focal_loss_with_grad(x, y, axis=1, alpha=0.5, reduction=reduction)
        b = ref.softmax_focal_loss_with_grad(moved, y, alpha=0.5, reduction=reduction)
        same_bits(a[0], b[0])
        same_bits(a[1], np.moveaxis(b[1], -1, 1))


# --------------------------------------------------------------------------
# logsumexp: SciPy's options
# --------------------------------------------------------------------------

def _scipy_lse(x, **kw):
    return scipy.special.logsumexp(x, **kw)


def _check_lse(x, rtol=1e-13, **kw):
    got = ref.logsumexp(x, **kw)
    want = _scipy_lse(x, **kw)
    if kw.get("return_sign"):
        close(got[0], want[0], rtol=rtol)
        np.testing.assert_array_equal(got[1], want[1])
        assert np.shape(got[1]) == np.shape(want[1])
        got, want = got[0], want[0]
    assert np.shape(got) == np.shape(want)
    close(got, want, rtol=rtol)


B_KINDS = ["none", "positive", "negative", "zeros", "broadcast", "bool"]


def _b(kind, rng, shape):
    if kind == "none":
        return None
    if kind == "positive":
        return rng.uniform(0.1, 3.0, shape)
    if kind == "negative":
        return rng.normal(size=shape)
    if kind == "zeros":
        return np.where(rng.random(shape) < 0.4, 0.0, rng.uniform(0.1, 2.0, shape))
    if kind == "broadcast":
        return rng.uniform(0.5, 2.0, shape[-1])
    return rng.random(shape) < 0.7


@pytest.mark.parametrize("b_kind", B_KINDS)
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), (2, 0), (-1, -2), None, ()],
                         ids=lambda a: f"axis={a}")
def test_logsumexp_vs_scipy(rng, b_kind, axis):
    x = rng.normal(0, 3, size=(3, 4, 5))
    b = _b(b_kind, rng, x.shape)
    for keepdims in (False, True):
        for return_sign in (False, True):
            _check_lse(x, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)


@pytest.mark.parametrize("values, b", [
    ([-INF, -INF, -INF], None),
    ([1.0, INF, 2.0], None),
    ([1.0, NAN, INF], None),
    ([INF, -INF, 0.0], None),
    ([1.0, INF, 2.0], [1.0, -1.0, 1.0]),
    ([INF, INF, 2.0], [1.0, -1.0, 1.0]),
    ([INF, INF, 2.0], [2.0, 3.0, -1.0]),
    ([NAN, 1.0, 2.0], [0.0, 1.0, 1.0]),
    ([INF, 1.0, 2.0], [0.0, 1.0, -1.0]),
    ([1.0, 1.0, 0.0], [1.0, -1.0, 0.0]),
    ([2.0, 1.0, 0.0], [1.0, -1.0, 1.0]),
    ([1.0, 2.0, 0.0], [1.0, -1.0, 0.0]),
    ([0.0, 0.0, 700.0], [1.0, 2.0, -0.5]),
    ([-INF, 3.0, 3.0], [-2.0, 1.0, 1.0]),
    ([1.0, 2.0, 3.0], [1.0, NAN, 1.0]),
    ([1.0, 2.0, -INF], [0.0, 0.0, 1.0]),
], ids=str)
def test_logsumexp_special_values_vs_scipy(values, b):
    x = np.array(values)
    _check_lse(x, b=b)
    _check_lse(x, b=b, return_sign=True)
    _check_lse(np.stack([x, x[::-1]]), b=None if b is None else np.stack([b, b[::-1]]),
               axis=1, return_sign=True)


def test_logsumexp_precision_and_dtypes(rng):
    # tiny sums above the max: log1p keeps them (SciPy's method, exact to 1e-15)
    x = np.array([0.0, -40.0, -45.0])
    _check_lse(x, rtol=1e-15)
    close(ref.logsumexp(x) - 0.0, np.exp(-40.0) + np.exp(-45.0), rtol=1e-14)
    # compute dtype: float16 and float32 give float32, b does not change it
    for dtype in (np.float16, np.float32):
        x = rng.normal(size=(4, 3)).astype(dtype)
        assert ref.logsumexp(x).dtype == np.float32
        out, sign = ref.logsumexp(x, b=rng.normal(size=3), return_sign=True)
        assert out.dtype == np.float32 and sign.dtype == np.float32
    x = rng.normal(size=(4, 3))
    close(ref.logsumexp(x.astype(np.float32), b=np.arange(3.0)),
          _scipy_lse(x.astype(np.float32).astype(np.float64), axis=-1, b=np.arange(3.0)),
          rtol=3e-7)
    # a 0-d result is a NumPy scalar, as SciPy's; a 0-d x is 1-d
    assert isinstance(ref.logsumexp(np.array([1.0, 2.0])), np.float64)
    assert isinstance(ref.logsumexp(np.float64(3.0), axis=None), np.float64)
    _check_lse(np.float64(3.0), axis=None, b=np.float64(2.0), return_sign=True)
    # integer x: float64
    assert ref.logsumexp(np.arange(6).reshape(2, 3)).dtype == np.float64


def test_logsumexp_default_axis_is_last_and_empty_is_minus_inf(rng):
    x = rng.normal(size=(3, 4))
    close(ref.logsumexp(x), _scipy_lse(x, axis=-1), rtol=1e-15)
    out, sign = ref.logsumexp(np.zeros((3, 0)), return_sign=True)
    np.testing.assert_array_equal(out, np.full(3, -INF))
    np.testing.assert_array_equal(sign, np.zeros(3))
    assert ref.logsumexp(np.zeros((0, 4))).shape == (0,)


def test_logsumexp_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="out of range"):
        ref.logsumexp(x, axis=2)
    with pytest.raises(ValueError, match="repeats axis 1"):
        ref.logsumexp(x, axis=(1, -1))
    with pytest.raises(ValueError, match="axis"):
        ref.logsumexp(x, axis=1.0)
    with pytest.raises(ValueError, match="broadcast"):
        ref.logsumexp(x, b=np.ones(4))


def test_new_names_are_exported_with_numpydoc():
    for name in ("token_stats", "sigmoid_focal_loss", "sigmoid_focal_loss_with_grad",
                 "softmax_focal_loss", "softmax_focal_loss_with_grad", "logsumexp"):
        assert name in ref.__all__
        doc = getattr(ref, name).__doc__
        for section in ("Returns", "Notes"):
            assert section in doc, f"{name} lacks {section}"
        assert "Parameters" in doc


def test_logsumexp_infinite_weight_at_an_underflowing_term():
    # b = inf at a logit far below the max: the term is inf, not inf * 0
    # (found by the fuzz campaign; SciPy gives inf)
    sp = pytest.importorskip("scipy.special", reason="SciPy is the oracle here")
    x = np.array([1257.0, 13664.0, -5356.0])
    b = np.array([np.inf, 1.0, 1.0])
    assert ref.logsumexp(x, b=b) == sp.logsumexp(x, b=b) == np.inf
