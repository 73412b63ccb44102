"""Reproducible reductions: every "sum" is the exact sum of the per-sample
losses that "none" returns, rounded once (math.fsum is the oracle), so any
split of the rows into chunks, merged through ``reduction="state"`` in any
order, gives the bits of one call.  The accumulator itself
(csrc/_xent_rsum.h) against math.fsum and fractions.Fraction."""

import fractions
import math
import pickle
import random

import numpy as np
import pytest

import xent
from xent import _kernels

RNG = np.random.default_rng(20261205)


def fsum_or_inf(values):
    """math.fsum, with the rounding's overflow as an infinity (fsum raises)."""
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).any() or (np.isposinf(v).any() and np.isneginf(v).any()):
        return math.nan
    if np.isinf(v).any():
        return math.inf if np.isposinf(v).any() else -math.inf
    exact = sum((fractions.Fraction(float(a)) for a in v), fractions.Fraction(0))
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


# ---------------------------------------------------------------------------
# The accumulator
# ---------------------------------------------------------------------------
def _values(rng, n, spread, dtype):
    """n values of random signs over 2^spread of magnitudes, some zeros."""
    v = rng.standard_normal(n) * np.exp2(rng.uniform(-spread, spread, n))
    v[rng.integers(0, n, max(1, n // 50))] = 0.0
    return v.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,spread", [(1, 10), (255, 2), (256, 40), (257, 80), (3000, 120),
                                      (5000, 1)])
def test_rsum_is_the_correctly_rounded_sum(dtype, n, spread):
    v = _values(np.random.default_rng(n + spread), n, spread, dtype)
    assert _kernels.rsum_value(_kernels.rsum(v)) == math.fsum(v.astype(np.float64).tolist())


@pytest.mark.parametrize("values", [
    [1e308, 1e308],                    # the exact sum is finite in the accumulator, rounds to inf
    [1e308, 1e308, -1e308],            # fsum overflows on the way; the exact sum is 1e308
    [-1.7976931348623157e308, -1.7976931348623157e308],
    [5e-324, 5e-324, 5e-324],          # subnormals: exact
    [2.0 ** -1022, -5e-324],           # crosses into the subnormals
    [1.0, 2.0 ** -60, 2.0 ** -60],     # the ties-to-even rounding needs the sticky bits
    [1.0, 2.0 ** -53],                 # a tie: stays at 1.0 (even)
    [1.0 + 2.0 ** -52, 2.0 ** -53],    # a tie: rounds up to even
    [1.0, 2.0 ** -53, 2.0 ** -1074],   # just above the tie: rounds up
    [3.0, -3.0],
    [-0.0], [0.0, -0.0],
    [math.inf, 1.0], [-math.inf, -1.0], [math.inf, -math.inf], [math.nan, 1.0],
])
def test_rsum_edge_values(values):
    v = np.array(values, dtype=np.float64)
    assert same(_kernels.rsum_value(_kernels.rsum(v)), fsum_or_inf(v))


def test_rsum_of_values_spread_over_the_whole_double_range():
    rng = np.random.default_rng(7)
    v = rng.standard_normal(20000) * np.exp2(rng.uniform(-1070, 1000, 20000))
    assert _kernels.rsum_value(_kernels.rsum(v)) == fsum_or_inf(v)


def test_rsum_merges_states_exactly():
    """Split at random points, summed per part and merged in a random tree:
    the state of the whole, word for word."""
    rng = np.random.default_rng(11)
    v = _values(rng, 4000, 60, np.float64)
    whole = _kernels.rsum(v)
    cuts = np.sort(rng.choice(np.arange(1, 4000), 40, replace=False))
    states = [_kernels.rsum(p) for p in np.split(v, cuts)]
    order = random.Random(3)
    while len(states) > 1:
        i, j = sorted(order.sample(range(len(states)), 2))
        merged = _kernels.rsum_merge(states[i], states[j])
        del states[j]
        states[i] = merged
    assert np.array_equal(states[0], whole)


# ---------------------------------------------------------------------------
# Every loss: "sum" is fsum of "none", "mean" is it over the exact denominator
# ---------------------------------------------------------------------------
N, C = 600, 13


def _cases(dtype):
    x = RNG.standard_normal((N, C)).astype(dtype) * 3
    z = RNG.standard_normal((N, C)).astype(dtype) * 3
    y = RNG.integers(0, C, N)
    y[::17] = -100
    p = RNG.random((N, C)).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    t = (RNG.random((N, C)) < 0.3).astype(dtype)
    sw = RNG.random(N).astype(dtype)
    w = RNG.random(C).astype(dtype) + 0.5
    return [
        ("ce index", xent.softmax_cross_entropy, (x, y), dict(ignore_index=-100), ("target",)),
        ("ce index weighted", xent.softmax_cross_entropy, (x, y),
         dict(ignore_index=-100, weight=w, sample_weight=sw), ("target", "sample_weight")),
        ("ce index z-loss", xent.softmax_cross_entropy, (x, np.abs(y) % C),
         dict(z_loss=1e-3, temperature=0.7, label_smoothing=0.1), ("target",)),
        ("ce prob", xent.softmax_cross_entropy, (x, p), dict(sample_weight=sw),
         ("target", "sample_weight")),
        ("focal", xent.softmax_focal_loss, (x, y), dict(ignore_index=-100, gamma=2.0),
         ("target",)),
        ("bce", xent.sigmoid_binary_cross_entropy, (x, t), dict(pos_weight=w), ("target",)),
        ("sigmoid focal", xent.sigmoid_focal_loss, (x, t), {}, ("target",)),
        ("kl", xent.kl_divergence, (x, z), dict(sample_weight=sw),
         ("target_logits", "sample_weight")),
        ("kl reverse ignore", xent.kl_divergence, (x, z),
         dict(reverse=True, target=y, ignore_index=-100), ("target_logits", "target")),
        ("js", xent.js_divergence, (x, z), dict(beta=0.3), ("target_logits",)),
    ]


def _rows(case, lo, hi):
    """The case's call on rows [lo, hi): every array with the rows cut."""
    _, fn, args, kw, _ = case
    cut = lambda a: a[lo:hi] if isinstance(a, np.ndarray) and a.shape[:1] == (N,) else a  # noqa: E731
    return fn, tuple(cut(a) for a in args), {k: cut(v) for k, v in kw.items()}


def _denominator(case, dtype):
    name, fn, args, kw, _ = case
    x = args[0]
    if fn in (xent.sigmoid_binary_cross_entropy, xent.sigmoid_focal_loss):
        return float(x.size)
    labels = kw.get("target", args[1] if args[1].dtype.kind == "i" else None)
    keep = np.ones(N, bool) if labels is None else labels != -100
    d = np.ones(N) if "weight" not in kw else np.asarray(kw["weight"], np.float64)[
        np.where(keep, labels, 0)]
    if "sample_weight" in kw:
        d = d * kw["sample_weight"].astype(np.float64)
    return math.fsum(d[keep].tolist())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_is_fsum_of_none_and_mean_divides_by_the_exact_denominator(dtype):
    for case in _cases(dtype):
        fn, args, kw = _rows(case, 0, N)
        none = fn(*args, **kw, reduction="none")
        total = math.fsum(none.astype(np.float64).ravel().tolist())
        assert fn(*args, **kw, reduction="sum") == total, case[0]
        assert fn(*args, **kw, reduction="mean") == total / _denominator(case, dtype), case[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("cuts", ["rows", "ragged", "random"])
def test_chunk_states_merged_give_the_bits_of_one_call(dtype, cuts):
    if cuts == "rows":
        bounds = list(range(N + 1))
    elif cuts == "ragged":
        bounds = [0, 1, 2, 39, 40, 41, 300, 599, N]
    else:
        bounds = [0] + sorted(RNG.choice(np.arange(1, N), 25, replace=False).tolist()) + [N]
    for case in _cases(dtype):
        states = [(lambda f, a, k: f(*a, **k, reduction="state"))(*_rows(case, lo, hi))
                  for lo, hi in zip(bounds[:-1], bounds[1:])]
        random.Random(len(states)).shuffle(states)
        merged = sum(states)
        fn, args, kw = _rows(case, 0, N)
        assert merged == fn(*args, **kw, reduction="state"), case[0]
        assert same(merged.mean(), fn(*args, **kw)), case[0]
        assert same(merged.sum(), fn(*args, **kw, reduction="sum")), case[0]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_state_and_sum_do_not_depend_on_the_threads(n_threads):
    x = RNG.standard_normal((40000, 10)).astype(np.float32)
    y = RNG.integers(0, 10, 40000)
    t = RNG.random((40000, 10)).astype(np.float32)
    one = xent.softmax_cross_entropy(x, y, reduction="state", n_threads=1)
    assert xent.softmax_cross_entropy(x, y, reduction="state", n_threads=n_threads) == one
    assert (xent.sigmoid_binary_cross_entropy(x, t, reduction="sum", n_threads=n_threads)
            == xent.sigmoid_binary_cross_entropy(x, t, reduction="sum", n_threads=1))


def test_mean_of_ten_million_float32_losses_is_fsum_over_n():
    """The contract asks 1e-12 of math.fsum; the exact sum gives fsum's bits."""
    n = 10 ** 7
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    t = (rng.random(n) < 0.5).astype(np.float32)
    per = xent.sigmoid_binary_cross_entropy(x, t, reduction="none")
    exact = math.fsum(per.astype(np.float64).tolist())
    assert xent.sigmoid_binary_cross_entropy(x, t, reduction="sum") == exact
    mean = xent.sigmoid_binary_cross_entropy(x, t)
    assert mean == exact / n
    assert abs(mean - exact / n) <= 1e-12 * abs(exact / n)


def test_sample_weights_are_summed_exactly():
    """A denominator that float64 summation in any order loses: 1e16 + 1 -
    1e16 (np.sum gives 0 or 2 by its pairing)."""
    x = np.zeros((3, 2))
    t = np.full((3, 2), 0.5)
    sw = np.array([1e16, 1.0, -1e16])
    state = xent.softmax_cross_entropy(x, t, sample_weight=sw, reduction="state")
    assert state.count == 1.0
    assert state.sum() == math.fsum(
        xent.softmax_cross_entropy(x, t, sample_weight=sw, reduction="none").tolist())


def test_the_gradient_of_state_is_the_gradient_of_the_sum():
    x = RNG.standard_normal((50, 7))
    y = RNG.integers(0, 7, 50)
    st, g = xent.softmax_cross_entropy_with_grad(x, y, reduction="state")
    total, g_sum = xent.softmax_cross_entropy_with_grad(x, y, reduction="sum")
    assert st.sum() == total
    assert np.array_equal(g, g_sum)


# ---------------------------------------------------------------------------
# ReductionState
# ---------------------------------------------------------------------------
def _state():
    x = RNG.standard_normal((20, 4))
    return xent.softmax_cross_entropy(x, RNG.integers(0, 4, 20), reduction="state")


def test_state_pickles_and_compares():
    s = _state()
    back = pickle.loads(pickle.dumps(s))
    assert back == s and hash(back) == hash(s)
    assert back.mean() == s.mean() and back.count == 20.0
    assert repr(s).startswith("ReductionState(sum=")


def test_state_is_immutable_and_merges_only_states():
    s = _state()
    with pytest.raises(AttributeError, match="immutable"):
        s.count = 3
    with pytest.raises(TypeError, match=r"^`other` must be a ReductionState; got int\.$"):
        s.merge(3)
    assert sum([s]) == s
    assert (s + s).count == 40.0


def test_empty_state_means_nan():
    empty = xent.ReductionState()
    assert empty.sum() == 0.0 and empty.count == 0.0 and math.isnan(empty.mean())
    x = np.zeros((3, 4))
    y = np.full(3, -100)
    st = xent.softmax_cross_entropy(x, y, ignore_index=-100, reduction="state")
    assert st.count == 0.0 and math.isnan(st.mean())
    assert math.isnan(xent.softmax_cross_entropy(x, y, ignore_index=-100))


def test_state_keeps_infinities_and_nans():
    x = np.array([[0.0, -np.inf], [0.0, 1.0]])
    inf = xent.softmax_cross_entropy(x[:1], np.array([1]), reduction="state")
    assert inf.sum() == math.inf
    nan = xent.softmax_cross_entropy(np.array([[np.nan, 0.0]]), np.array([0]), reduction="state")
    assert math.isnan(inf.merge(nan).mean())
    assert (inf + _state()).sum() == math.inf


@pytest.mark.parametrize("c", [1, 10, 127, 128, 1000, 5000])
@pytest.mark.parametrize("data", ["unit", "scale-3", "wide", "neg-weight", "zeros", "subnormal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_sum_is_fsum_of_every_element(c, data, dtype):
    """Every BCE element is a term, whatever the row length: the sum is fsum
    of the "none" values and any split of the rows gives the same bits.  The
    data reach each way a chunk of losses is added: its double sum (positive
    losses of a few binades, logits of scale 1 or 3), the windowed split (a
    wide range), terms one by one (negative weights, zeros, subnormal
    losses)."""
    rng = np.random.default_rng(c)
    n = 70
    x = rng.standard_normal((n, c)) * {"scale-3": 3, "wide": 40, "subnormal": 110}.get(data, 1)
    t = (rng.random((n, c)) < 0.3).astype(np.float64)
    kw = {}
    if data == "neg-weight":
        kw["weight"] = rng.uniform(-1.0, 1.0, c).astype(dtype)
    if data == "zeros":
        x[:, ::3] = np.inf
        t[:, ::3] = 1.0
    x, t = x.astype(dtype), t.astype(dtype)
    with np.errstate(over="ignore"):
        total = xent.sigmoid_binary_cross_entropy(x, t, reduction="sum", **kw)
        none = xent.sigmoid_binary_cross_entropy(x, t, reduction="none", **kw)
        assert total == math.fsum(none.ravel().tolist())
        parts = [xent.sigmoid_binary_cross_entropy(x[a:b], t[a:b], reduction="state", **kw)
                 for a, b in [(0, 1), (1, 30), (30, 31), (31, n)]]
        assert sum(parts).sum() == total
        # 1-D logits: rows of one element; any split of the elements
        flat = [xent.sigmoid_binary_cross_entropy(x.ravel()[a:b], t.ravel()[a:b], reduction="state")
                for a, b in [(0, 7), (7, 1000), (1000, n * c)] if a < n * c]
        assert sum(flat).sum() == math.fsum(
            xent.sigmoid_binary_cross_entropy(x.ravel(), t.ravel(), reduction="none").tolist())


@pytest.mark.parametrize("scale", [0.5, 3, 30])
@pytest.mark.parametrize("alpha", [None, 0.25, -0.5])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_sigmoid_focal_sum_is_fsum_of_every_element(scale, alpha, gamma):
    """The sigmoid focal loss adds every element: chunk after chunk in two
    bands split below the last chunk's sum when both are exact, else through
    the split (the first chunk, wide chunks, negative losses of alpha < 0)."""
    rng = np.random.default_rng(abs(int(scale * 10 + (alpha or 0) * 100)))
    x = (rng.standard_normal((300, 1000)) * scale).astype(np.float32)
    t = (rng.random(x.shape) < 0.3).astype(np.float32)
    kw = dict(alpha=alpha, gamma=gamma)
    none = xent.sigmoid_focal_loss(x, t, reduction="none", **kw)
    total = xent.sigmoid_focal_loss(x, t, reduction="sum", **kw)
    assert total == math.fsum(none.ravel().tolist())
    assert xent.sigmoid_focal_loss(x, t, reduction="sum", n_threads=1, **kw) == total
    parts = [xent.sigmoid_focal_loss(x[a:b], t[a:b], reduction="state", **kw)
             for a, b in [(0, 3), (3, 150), (150, 300)]]
    assert sum(parts).sum() == total
