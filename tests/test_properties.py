"""Property-based tests: identities every xent kernel must satisfy.

Each property is checked on many generated problems, against the kernel
itself under a transformation that the mathematics says is harmless (a shift,
a permutation, a relabelling, a symmetry, a change of memory layout), never
against a copy of the same computation:

* shift invariance: adding a constant to every logit of a row changes no loss,
  gradient, softmax or log_softmax (logsumexp moves by the constant);
* class-permutation equivariance;
* class indices give the same loss and gradient as their one-hot probabilities;
* BCE(x, t) == BCE(-x, 1 - t), with the gradient negated;
* the 2-class identity: softmax CE on ``[0, z]`` is BCE on ``z``;
* row independence: a NaN (or +inf, or all -inf) row leaves the others
  bitwise unchanged;
* inputs are never modified;
* strided / reversed / Fortran / moved-axis / big-endian / misaligned inputs
  give results bitwise equal to the contiguous copy.

Hypothesis draws the problem's *parameters* (dtype, shape, options, a seed)
from bounded strategies and NumPy builds the arrays from the seed: this keeps
every example small and fast whatever hypothesis picks, while still covering
tile boundaries (rows per tile = 32768 // C).  Runs are derandomised and use
no example database, so CI sees the same examples every time.

Hand-picked corner problems (no rows, one class, every option at once) are
always tried as explicit examples on top of the drawn ones.

Logits are dyadic (integers times a power of two) wherever a property is
meant to hold *bitwise*: then ``x + c`` and ``x - max(x)`` are exact and the
kernel has no excuse for a different bit.  Properties that change the order
of floating-point operations (permutation, one-hot, 2-class, the BCE
symmetry) are held to a few units of roundoff instead: relative for losses,
which are sums of non-negative terms, and relative to the gradient's scale
for gradient entries that cancel (``sum(q) softmax - q``, ``sigmoid(x) - t``).
"""

import struct

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xent

# Derandomised, database-free and without deadlines: stable in CI whatever
# the machine's speed.  Modest example counts keep the file well under 30 s.
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FLOATS = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def eps_of(dtype):
    return float(np.finfo(np.dtype(dtype)).eps)


def same_bits(a, b):
    """True when `a` and `b` are the same value bit for bit (NaN payloads too)."""
    if isinstance(a, float) or isinstance(b, float):
        return struct.pack("<d", float(a)) == struct.pack("<d", float(b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_bits(a, b, what=""):
    if not same_bits(a, b):
        a64 = np.asarray(a, dtype=np.float64)
        b64 = np.asarray(b, dtype=np.float64)
        diff = np.flatnonzero(~((a64 == b64) | (np.isnan(a64) & np.isnan(b64))).reshape(-1))
        raise AssertionError(
            f"{what}: not bitwise equal ({np.asarray(a).dtype} vs {np.asarray(b).dtype}); "
            f"{diff.size} value(s) differ, first at {diff[:5].tolist()}: "
            f"{a64.reshape(-1)[diff[:3]].tolist()} vs {b64.reshape(-1)[diff[:3]].tolist()}"
        )


def assert_close(actual, expected, dtype, ulps=32, unit=0.0, what=""):
    """Equal up to `ulps` units of roundoff of `dtype` relative to each value,
    or absolutely relative to `unit`.  Losses are sums of non-negative terms
    and are judged relatively (unit 0); gradient entries that cancel
    (``sum(q) softmax - q``) are judged against the size of the row's
    gradient, `unit`."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    tol = ulps * eps_of(dtype)
    tiny = float(np.finfo(np.dtype(dtype)).tiny)
    np.testing.assert_allclose(a, e, rtol=tol, atol=max(tol * unit, tiny),
                               equal_nan=True, err_msg=what)


def grad_unit(p, reduction, labels=None, ignore=None, probs=None):
    """An upper bound of |gradient| entries: s_i * sum_c q_ic / D over rows,
    with D the mean's denominator (1 for "sum" and "none")."""
    x = p["x"]
    n_rows, n_cols = x.shape
    if n_rows == 0:
        return 0.0
    s = np.ones(n_rows) if p["sample_weight"] is None else p["sample_weight"].astype(np.float64)
    w = np.ones(n_cols) if p["weight"] is None else p["weight"].astype(np.float64)
    mass = 1.0 if probs is None else max(1.0, float(probs.astype(np.float64).sum(axis=1).max()))
    den = 1.0
    if reduction == "mean":
        if probs is not None:
            den = s.sum()
        else:
            kept = (labels != ignore) if ignore is not None else np.ones(n_rows, bool)
            den = float((s[kept] * w[labels[kept]]).sum())
        den = den if den != 0 else 1.0
    return float(s.max()) * max(float(w.max()), 1.0) * mass / den


def dyadic(rng, shape, dtype, exp2):
    """Integers in [-2**10, 2**10) times 2**(exp2 - 6): exactly representable in
    float32, and so are their differences and any shift by a multiple of
    2**(exp2 - 6) below 2**(exp2 + 6)."""
    return (rng.integers(-2**10, 2**10, size=shape) * 2.0 ** (exp2 - 6)).astype(dtype)


class Problem(dict):
    """The arrays of a generated problem; printed briefly in failure reports."""

    def __repr__(self):
        x = self["x"]
        opts = {k: v for k, v in self.items() if k in ("smoothing", "ignore_index", "exp2")}
        return (f"Problem(x={x.dtype}{x.shape}, weight={self['weight'] is not None}, "
                f"sample_weight={self['sample_weight'] is not None}, seed={self['seed']}, {opts})")


def build_problem(dtype, n_rows, n_cols, seed, exp2=0, ties=False, masks=False, weighted=False,
                  sample_weighted=False, smoothing=0.0, ignore_index=None):
    """The arrays of a softmax cross-entropy problem, from its parameters."""
    rng = np.random.default_rng(seed)
    x = dyadic(rng, (n_rows, n_cols), dtype, exp2)
    labels = rng.integers(0, n_cols, size=n_rows)
    if n_rows and n_cols > 1:
        # ties at the max, and -inf masks on classes that are not the label
        if ties:
            r = rng.integers(0, n_rows, size=max(1, n_rows // 4))
            x[r, (labels[r] + 1) % n_cols] = x[r].max(axis=1)
        if masks:
            r = rng.integers(0, n_rows, size=max(1, n_rows // 4))
            x[r, (labels[r] + 1) % n_cols] = -np.inf
    weight = (rng.integers(0, 9, size=n_cols) / 4.0).astype(dtype) if weighted else None
    sample_weight = (rng.integers(0, 9, size=n_rows) / 4.0).astype(dtype) if sample_weighted else None
    if ignore_index == -100 and n_rows:
        labels[rng.random(n_rows) < 0.25] = -100      # PyTorch's default ignore value
    probs = rng.random((n_rows, n_cols)).astype(dtype)
    probs[rng.random((n_rows, n_cols)) < 0.3] = 0          # exact zeros (at -inf masks too)
    return Problem(dtype=dtype, x=x, labels=labels, probs=probs, weight=weight,
                   sample_weight=sample_weight, smoothing=smoothing,
                   ignore_index=ignore_index, rng=rng, exp2=exp2, seed=seed)


@st.composite
def problems(draw, min_rows=0, max_classes=12):
    """A softmax cross-entropy problem with drawn parameters (bounded sizes)."""
    dtype = draw(st.sampled_from(FLOATS))
    # Mostly small C; sometimes enough rows to span several tiles.
    n_cols = draw(st.one_of(st.integers(1, max_classes), st.sampled_from([1, 2, 3, 17])))
    # rows: mostly a handful (N = 0 included); about one example in six spans two tiles
    n_rows = draw(st.one_of(st.integers(min_rows, 9), st.integers(min_rows, 9),
                            st.sampled_from([max(min_rows, r) for r in (64, 33000 // n_cols + 5)])))
    return build_problem(
        dtype, n_rows, n_cols,
        seed=draw(st.integers(0, 2**32 - 1)),
        exp2=draw(st.sampled_from([0, 4, 8])),         # logit gaps up to ~2**14
        ties=draw(st.booleans()), masks=draw(st.booleans()),
        weighted=draw(st.booleans()), sample_weighted=draw(st.booleans()),
        smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 0.25, 1.0])),
        ignore_index=draw(st.sampled_from([None, None, 0, -100])))


# Always-tried corner cases: no rows, one class, all options at once.
CORNERS = [
    dict(dtype=np.float32, n_rows=0, n_cols=3, seed=0),
    dict(dtype=np.float64, n_rows=0, n_cols=1, seed=0, weighted=True, sample_weighted=True),
    dict(dtype=np.float32, n_rows=5, n_cols=1, seed=1, smoothing=0.1),
    dict(dtype=np.float64, n_rows=9, n_cols=7, seed=2, exp2=8, ties=True, masks=True,
         weighted=True, sample_weighted=True, smoothing=0.25, ignore_index=-100),
]


def with_corners(**other):
    """@example decorators for the CORNERS, with fixed values of the other arguments."""
    def deco(test):
        for corner in reversed(CORNERS):
            test = example(p=build_problem(**corner), **other)(test)
        return test
    return deco


def valid_labels(p):
    """The labels with ignored (-100) ones replaced by class 0: for calls
    without ignore_index."""
    return np.where(p["labels"] < 0, 0, p["labels"])


def ce_index(p, x, labels=None, reduction="none", **kw):
    opts = dict(weight=p["weight"], sample_weight=p["sample_weight"],
                ignore_index=p["ignore_index"], label_smoothing=p["smoothing"],
                reduction=reduction)
    opts.update(kw)
    return xent.softmax_cross_entropy_with_grad(x, p["labels"] if labels is None else labels, **opts)


def ce_prob(p, x, probs=None, reduction="none", **kw):
    opts = dict(weight=p["weight"], sample_weight=p["sample_weight"],
                label_smoothing=p["smoothing"], reduction=reduction)
    opts.update(kw)
    return xent.softmax_cross_entropy_with_grad(x, p["probs"] if probs is None else probs, **opts)


# --------------------------------------------------------------------------
# shift invariance
# --------------------------------------------------------------------------

@SETTINGS
@given(p=problems(), k=st.integers(-2**11, 2**11), reduction=st.sampled_from(REDUCTIONS))
@with_corners(k=-3, reduction="mean")
def test_shift_invariance(p, k, reduction):
    """softmax(x + c) == softmax(x).  With an exact shift, x - max(x) is the
    same array, and every quantity the kernels compute from it
    (lse - x_y, softmax, the gradient) is bitwise the same."""
    x = p["x"]
    c = x.dtype.type(k * 2.0 ** (p["exp2"] - 6))
    xs = x + c
    # the premise: the shift is exact (it is undone exactly)
    assert same_bits(xs - c, x)

    for fn in (ce_index, ce_prob):
        loss, grad = fn(p, x, reduction=reduction)
        loss_s, grad_s = fn(p, xs, reduction=reduction)
        assert_same_bits(loss_s, loss, f"{fn.__name__} loss")
        assert_same_bits(grad_s, grad, f"{fn.__name__} grad")
    if x.size:
        assert_same_bits(xent.log_softmax(xs), xent.log_softmax(x), "log_softmax")
        assert_same_bits(xent.softmax(xs), xent.softmax(x), "softmax")
        # logsumexp moves by c: lse(x) + c, up to one rounding of each side
        # (relative to the terms' size: lse(x) + c may cancel)
        lse = xent.logsumexp(x).astype(np.float64)
        err = np.abs(xent.logsumexp(xs).astype(np.float64) - (lse + float(c)))
        assert np.all(err <= 2 * eps_of(x.dtype) * (np.abs(lse) + abs(float(c)))), "logsumexp"


# --------------------------------------------------------------------------
# class-permutation equivariance
# --------------------------------------------------------------------------

@SETTINGS
@given(p=problems(), reduction=st.sampled_from(REDUCTIONS))
@with_corners(reduction="mean")
def test_class_permutation_equivariance(p, reduction):
    """Renaming the classes (logits, weights, targets together) permutes the
    gradient and leaves the loss unchanged, up to the order of summation."""
    x, dt = p["x"], p["dtype"]
    n_cols = x.shape[1]
    perm = p["rng"].permutation(n_cols)
    inv = np.argsort(perm)                   # new position of old class c
    xp = x[:, perm]
    wp = None if p["weight"] is None else p["weight"][perm]
    labels, ignore = p["labels"], p["ignore_index"]
    if ignore is not None:
        # ignored rows stay ignored under the renaming: give them a label
        # outside [0, C) (ignore_index=0 would otherwise follow class 0)
        labels = np.where(labels == ignore, -7, labels)
        ignore = -7
    labels_p = np.where(labels == -7, -7, inv[labels % n_cols])

    loss, grad = ce_index(p, x, labels, reduction, ignore_index=ignore)
    loss_p, grad_p = ce_index(p, xp, labels_p, reduction, ignore_index=ignore, weight=wp)
    unit = grad_unit(p, reduction, labels, ignore)
    assert_close(loss_p, loss, dt, what="class indices: loss")
    assert_close(grad_p, grad[:, perm], dt, unit=unit, what="class indices: grad")

    probs = p["probs"]
    loss, grad = ce_prob(p, x, reduction=reduction)
    loss_p, grad_p = ce_prob(p, xp, probs[:, perm], reduction, weight=wp)
    unit = grad_unit(p, reduction, probs=(1 - p["smoothing"]) * probs + p["smoothing"])
    assert_close(loss_p, loss, dt, what="probabilities: loss")
    assert_close(grad_p, grad[:, perm], dt, unit=unit, what="probabilities: grad")

    if x.size:
        assert_close(xent.logsumexp(xp), xent.logsumexp(x), dt, unit=1.0, what="logsumexp")
        assert_close(xent.log_softmax(xp), xent.log_softmax(x)[:, perm], dt, unit=1.0,
                     what="log_softmax")
        assert_close(xent.softmax(xp), xent.softmax(x)[:, perm], dt, what="softmax")


# --------------------------------------------------------------------------
# class indices == one-hot probabilities
# --------------------------------------------------------------------------

@SETTINGS
@given(p=problems(), reduction=st.sampled_from(REDUCTIONS))
@with_corners(reduction="mean")
def test_class_indices_equal_one_hot(p, reduction):
    """Class index y and the one-hot row e_y are the same target (PyTorch's
    weight and smoothing formulas agree), except for the mean's denominator:
    class indices divide by sum s_i w_{y_i}, probabilities by sum s_i, so the
    mean is compared only without class weights."""
    x, dt = p["x"], p["dtype"]
    if reduction == "mean" and p["weight"] is not None:
        reduction = "sum"
    labels = valid_labels(p)
    one_hot = np.eye(x.shape[1], dtype=dt)[labels]
    loss_i, grad_i = ce_index(p, x, labels, reduction=reduction, ignore_index=None)
    loss_p, grad_p = ce_prob(p, x, one_hot, reduction)
    assert_close(loss_p, loss_i, dt, what="loss")
    assert_close(grad_p, grad_i, dt, unit=grad_unit(p, reduction, labels), what="grad")
    # the forward-only entry point agrees with the fused one (to the last bit
    # or so: the two loops may be compiled into different FMA contractions)
    fwd = xent.softmax_cross_entropy(x, one_hot, weight=p["weight"],
                                     sample_weight=p["sample_weight"],
                                     label_smoothing=p["smoothing"], reduction=reduction)
    assert_close(fwd, loss_p, dt, ulps=4, what="forward vs fused loss")


@SETTINGS
@given(p=problems(), reduction=st.sampled_from(REDUCTIONS))
@with_corners(reduction="mean")
def test_one_hot_gradient_keeps_relative_precision(p, reduction):
    """Without smoothing no gradient entry of either kind of target needs to
    cancel (softmax_y - 1 = -sum_{j != y} e_j / sum_j e_j), so the one-hot
    gradient equals the class-index one entry by entry to a few ulps, also
    where it is tiny (a confident, correct row).  The accuracy bound holds every
    gradient entry to 4 / 8 ulps; this is the same promise seen through the
    identity."""
    x, dt = p["x"], p["dtype"]
    if reduction == "mean" and p["weight"] is not None:
        reduction = "sum"
    labels = valid_labels(p)
    one_hot = np.eye(x.shape[1], dtype=dt)[labels]
    _, grad_i = ce_index(p, x, labels, reduction=reduction, ignore_index=None, label_smoothing=0.0)
    _, grad_p = ce_prob(p, x, one_hot, reduction, label_smoothing=0.0)
    assert_close(grad_p, grad_i, dt, ulps=16, what="one-hot gradient, entry by entry")


# --------------------------------------------------------------------------
# BCE symmetry
# --------------------------------------------------------------------------

@st.composite
def bce_problems(draw):
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(st.sampled_from([(0,), (1,), (7,), (5, 3), (2, 3, 4), (40000,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = dyadic(rng, shape, dtype, draw(st.sampled_from([0, 4, 8])))
    if x.size and draw(st.booleans()):
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 8))] = np.inf
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 8))] = -np.inf
    # dyadic targets k/64: 1 - t is exact, so the symmetry can hold bitwise
    t = (rng.integers(0, 65, size=shape) / 64.0).astype(dtype)
    kind = draw(st.sampled_from(["soft", "hard"]))
    if kind == "hard":
        t = np.round(t)
    weight = None
    wkind = draw(st.sampled_from(["none", "full", "last"]))
    if wkind == "full":
        weight = (rng.integers(0, 9, size=shape) / 4.0).astype(dtype)
    elif wkind == "last" and len(shape):
        weight = (rng.integers(0, 9, size=shape[-1:]) / 4.0).astype(dtype)
    return dict(dtype=dtype, x=x, t=t, weight=weight)


@SETTINGS
@given(p=bce_problems(), reduction=st.sampled_from(REDUCTIONS),
       smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.5]))
def test_bce_symmetry(p, reduction, smoothing):
    """BCE(x, t) == BCE(-x, 1 - t) with the gradient negated (targets k/64, so
    1 - t is exact).  The two calls add the same terms in another order (and
    may contract them into FMAs differently), so the loss is held to a few
    ulps; the gradient too for hard targets, where only one term is present,
    and to a few ulps of its scale for soft ones, where sigmoid(x) - t'
    cancels."""
    x, t, dt = p["x"], p["t"], p["dtype"]
    kw = dict(weight=p["weight"], label_smoothing=smoothing, reduction=reduction)
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, **kw)
    loss_m, grad_m = xent.sigmoid_binary_cross_entropy_with_grad(-x, 1 - t, **kw)
    w = p["weight"]
    unit = 0.0
    if smoothing != 0.0 or np.any((t != 0) & (t != 1)):
        # |grad| <= w (/ n for the mean)
        unit = 1.0 if w is None or w.size == 0 else max(float(w.max()), 1.0)
        unit /= max(x.size, 1) if reduction == "mean" else 1
    assert_close(loss_m, loss, dt, ulps=4, what="loss")
    assert_close(-grad_m, grad, dt, ulps=4, unit=unit, what="grad")


# --------------------------------------------------------------------------
# 2-class identity
# --------------------------------------------------------------------------

@SETTINGS
@given(dtype=st.sampled_from(FLOATS), n=st.integers(0, 50), seed=st.integers(0, 2**32 - 1),
       span=st.sampled_from([4.0, 40.0, 400.0]), soft=st.booleans(),
       weighted=st.booleans(), reduction=st.sampled_from(REDUCTIONS))
def test_two_class_softmax_is_bce(dtype, n, seed, span, soft, weighted, reduction):
    """softmax([0, z])_1 = sigmoid(z): softmax CE on rows [0, z] with target
    class 1 (or probabilities [1 - t, t]) is BCE on z with target t, and the
    CE gradient is (-g, g) with g the BCE gradient.  A sample weight is a BCE
    element weight (the means differ in denominator: compared without)."""
    rng = np.random.default_rng(seed)
    z = (rng.uniform(-span, span, size=n)).astype(dtype)
    t = (rng.integers(0, 65, size=n) / 64.0) if soft else rng.integers(0, 2, size=n).astype(float)
    t = t.astype(dtype)
    sw = (rng.integers(0, 9, size=n) / 4.0).astype(dtype) if weighted else None
    if reduction == "mean" and weighted:
        reduction = "sum"
    rows = np.stack([np.zeros_like(z), z], axis=1)
    if soft:
        target = np.stack([1 - t, t], axis=1)
    else:
        target = t.astype(np.int64)
    loss_ce, grad_ce = xent.softmax_cross_entropy_with_grad(rows, target, sample_weight=sw,
                                                            reduction=reduction)
    loss_b, grad_b = xent.sigmoid_binary_cross_entropy_with_grad(z, t, weight=sw,
                                                                 reduction=reduction)
    # hard labels: neither side cancels, so entry by entry; soft targets:
    # sigmoid(z) - t cancels on both sides, judged against the gradient's scale
    unit = 0.0
    if soft:
        unit = 1.0 if sw is None or n == 0 else max(float(sw.max()), 1.0)
        unit /= max(n, 1) if reduction == "mean" else 1
    assert_close(loss_ce, loss_b, dtype, ulps=16, what="loss")
    assert_close(grad_ce[:, 1], grad_b, dtype, ulps=16, unit=unit, what="grad of z")
    assert_close(grad_ce[:, 0], -grad_b, dtype, ulps=16, unit=unit, what="grad of the 0 logit")


# --------------------------------------------------------------------------
# row independence
# --------------------------------------------------------------------------

POISONS = ["nan", "+inf", "all -inf"]


def poison_row(x, r, kind, rng):
    y = x.copy()
    if kind == "nan":
        y[r, rng.integers(0, x.shape[1])] = np.nan
    elif kind == "+inf":
        y[r, rng.integers(0, x.shape[1])] = np.inf
    else:
        y[r, :] = -np.inf
    return y


@SETTINGS
@given(p=problems(min_rows=2), kind=st.sampled_from(POISONS), reduction=st.sampled_from(REDUCTIONS))
def test_row_independence(p, kind, reduction):
    """A NaN, a +inf or an all -inf row gives NaN for that row only: every
    other row's loss and gradient is bitwise what it was (the mean's
    denominator does not depend on the logits)."""
    x, rng = p["x"], p["rng"]
    r = int(rng.integers(0, x.shape[0]))
    y = poison_row(x, r, kind, rng)
    others = np.arange(x.shape[0]) != r
    sw = p["sample_weight"]
    removed_sw = sw is not None and sw[r] == 0

    for fn in (ce_index, ce_prob):
        loss, grad = fn(p, x, reduction="none")
        loss_y, grad_y = fn(p, y, reduction="none")
        assert_same_bits(loss_y[others], loss[others], f"{fn.__name__}: other rows' losses")
        removed = removed_sw or (fn is ce_index and p["ignore_index"] == p["labels"][r])
        if removed:
            assert loss_y[r] == 0 and np.all(grad_y[r] == 0)
        else:
            assert np.isnan(loss_y[r]) and np.all(np.isnan(grad_y[r]))
        # the gradient of the reduced loss too (mean: same denominator)
        _, grad = fn(p, x, reduction=reduction)
        _, grad_y = fn(p, y, reduction=reduction)
        assert_same_bits(grad_y[others], grad[others], f"{fn.__name__}: other rows' gradients")

    assert_same_bits(xent.logsumexp(y)[others], xent.logsumexp(x)[others], "logsumexp")
    assert_same_bits(xent.log_softmax(y)[others], xent.log_softmax(x)[others], "log_softmax")
    assert_same_bits(xent.softmax(y)[others], xent.softmax(x)[others], "softmax")
    assert np.all(np.isnan(xent.softmax(y)[r]))
    lse = xent.logsumexp(y)[r]
    assert np.isnan(lse) if kind == "nan" else lse == (np.inf if kind == "+inf" else -np.inf)


@SETTINGS
@given(p=bce_problems(), reduction=st.sampled_from(REDUCTIONS))
def test_bce_element_independence(p, reduction):
    """A NaN logit makes that element's BCE NaN and leaves the others bitwise unchanged."""
    x, t = p["x"], p["t"]
    if x.size == 0:
        return
    rng = np.random.default_rng(x.size)
    i = int(rng.integers(0, x.size))
    y = x.copy()
    y.reshape(-1)[i] = np.nan
    kw = dict(weight=p["weight"], reduction="none")
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, **kw)
    loss_y, grad_y = xent.sigmoid_binary_cross_entropy_with_grad(y, t, **kw)
    others = np.arange(x.size) != i
    assert_same_bits(loss_y.reshape(-1)[others], loss.reshape(-1)[others], "losses")
    assert_same_bits(grad_y.reshape(-1)[others], grad.reshape(-1)[others], "gradients")
    w = None if p["weight"] is None else np.broadcast_to(p["weight"], x.shape).reshape(-1)[i]
    if w == 0:                            # a zero weight removes the element, even a NaN
        assert loss_y.reshape(-1)[i] == 0
    else:
        assert np.isnan(loss_y.reshape(-1)[i])
    _, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, weight=p["weight"], reduction=reduction)
    _, grad_y = xent.sigmoid_binary_cross_entropy_with_grad(y, t, weight=p["weight"], reduction=reduction)
    assert_same_bits(grad_y.reshape(-1)[others], grad.reshape(-1)[others], "reduced gradients")


# --------------------------------------------------------------------------
# inputs are not modified
# --------------------------------------------------------------------------

def _all_calls(p, bce_w, pos_w, n_threads):
    """Every public entry point on the problem's arrays (no in-place grad_out)."""
    x, labels, probs = p["x"], p["labels"], p["probs"]
    kw = dict(weight=p["weight"], sample_weight=p["sample_weight"],
              label_smoothing=p["smoothing"], n_threads=n_threads)
    t01 = probs.round()
    bkw = dict(weight=bce_w, pos_weight=pos_w, label_smoothing=p["smoothing"], n_threads=n_threads)
    for reduction in REDUCTIONS:
        yield lambda: xent.softmax_cross_entropy(x, labels, ignore_index=p["ignore_index"],
                                                 reduction=reduction, **kw)
        yield lambda: xent.softmax_cross_entropy_with_grad(x, labels, ignore_index=p["ignore_index"],
                                                           reduction=reduction, **kw)
        yield lambda: xent.softmax_cross_entropy(x, probs, reduction=reduction, **kw)
        yield lambda: xent.softmax_cross_entropy_with_grad(x, probs, reduction=reduction, **kw)
        yield lambda: xent.sigmoid_binary_cross_entropy(x, probs, reduction=reduction, **bkw)
        yield lambda: xent.sigmoid_binary_cross_entropy_with_grad(x, t01, reduction=reduction, **bkw)
    if x.size:
        yield lambda: xent.logsumexp(x)
        yield lambda: xent.log_softmax(x)
        yield lambda: xent.softmax(x)


@SETTINGS
@given(p=problems(), readonly=st.booleans(), n_threads=st.sampled_from([None, 1, 3]))
@with_corners(readonly=True, n_threads=None)
def test_inputs_not_modified(p, readonly, n_threads):
    """No kernel writes to its inputs (logits, targets, weights), writeable or not."""
    rng = p["rng"]
    x = p["x"]
    bce_w = (rng.integers(0, 9, size=x.shape[-1:]) / 4.0).astype(x.dtype)
    pos_w = (rng.integers(1, 9, size=x.shape[-1:]) / 4.0).astype(x.dtype)
    arrays = [a for a in (x, p["labels"], p["probs"], p["weight"], p["sample_weight"], bce_w, pos_w)
              if a is not None]
    if readonly:
        for a in arrays:
            a.flags.writeable = False
    before = [(a.tobytes(), a.flags.writeable) for a in arrays]
    for call in _all_calls(p, bce_w, pos_w, n_threads):
        call()
        after = [(a.tobytes(), a.flags.writeable) for a in arrays]
        assert after == before


# --------------------------------------------------------------------------
# strided == contiguous, bitwise
# --------------------------------------------------------------------------

LAYOUTS = ["step", "reversed", "fortran", "big-endian", "misaligned"]


def relayout(a, layout):
    """`a`'s values in another memory layout (never C-contiguous, native and aligned)."""
    a = np.asarray(a)
    if layout == "step":
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        rev = tuple(slice(None, None, -1) for _ in a.shape)
        return np.ascontiguousarray(a[rev])[rev]
    if layout == "fortran":
        return np.asfortranarray(a) if a.ndim > 1 else relayout(a, "step")
    if layout == "big-endian":
        return a.astype(a.dtype.newbyteorder(">"))
    if layout == "misaligned":
        buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = buf[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    raise AssertionError(layout)


@SETTINGS
@given(p=problems(), layout=st.sampled_from(LAYOUTS),
       which=st.sampled_from(["logits", "all"]), reduction=st.sampled_from(REDUCTIONS),
       label_dtype=st.sampled_from([np.int64, np.int32, np.uint16, np.int8]),
       half=st.booleans())
@with_corners(layout="reversed", which="all", reduction="mean", label_dtype=np.int32, half=False)
def test_strided_equals_contiguous(p, layout, which, reduction, label_dtype, half):
    """Any layout of any input gives the contiguous copy's results, bit for bit
    (losses, gradients, and gradients written into a strided grad_out)."""
    x = p["x"].astype(np.float16) if half else p["x"]
    n_cols = x.shape[1]
    labels, ignore = p["labels"], p["ignore_index"]
    if labels.size and labels.min() < 0 and np.dtype(label_dtype).kind == "u":
        label_dtype = np.int64            # -100 labels need a signed dtype
    labels = labels.astype(label_dtype)

    def lay(a, is_logits=False):
        if a is None or (which == "logits" and not is_logits):
            return a
        return relayout(a, layout)

    common = dict(weight=p["weight"], label_smoothing=p["smoothing"], reduction=reduction)
    # class indices
    kw = dict(common, sample_weight=p["sample_weight"], ignore_index=ignore)
    ref = xent.softmax_cross_entropy_with_grad(x, labels, **kw)
    got = xent.softmax_cross_entropy_with_grad(
        lay(x, True), lay(labels), **dict(kw, weight=lay(p["weight"]),
                                          sample_weight=lay(p["sample_weight"])))
    assert_same_bits(got[0], ref[0], "class indices: loss")
    assert_same_bits(got[1], ref[1], "class indices: grad")
    # ... into a strided grad_out
    gout = relayout(np.zeros_like(ref[1]), "step")
    loss, g = xent.softmax_cross_entropy_with_grad(lay(x, True), labels, grad_out=gout, **kw)
    assert g is gout
    assert_same_bits(loss, ref[0], "grad_out: loss")
    assert_same_bits(np.ascontiguousarray(g), ref[1], "grad_out: grad")
    # probabilities
    probs = p["probs"]
    kw = dict(common, sample_weight=p["sample_weight"])
    ref = xent.softmax_cross_entropy_with_grad(x, probs, **kw)
    got = xent.softmax_cross_entropy_with_grad(lay(x, True), lay(probs), **kw)
    assert_same_bits(got[0], ref[0], "probabilities: loss")
    assert_same_bits(got[1], ref[1], "probabilities: grad")
    # BCE, weights broadcast along the last axis
    bw = None if p["weight"] is None else p["weight"]
    ref = xent.sigmoid_binary_cross_entropy_with_grad(x, probs, weight=bw, pos_weight=bw,
                                                      label_smoothing=p["smoothing"],
                                                      reduction=reduction)
    got = xent.sigmoid_binary_cross_entropy_with_grad(lay(x, True), lay(probs), weight=lay(bw),
                                                      pos_weight=lay(bw),
                                                      label_smoothing=p["smoothing"],
                                                      reduction=reduction)
    assert_same_bits(got[0], ref[0], "BCE: loss")
    assert_same_bits(got[1], ref[1], "BCE: grad")
    # primitives
    if x.size:
        for fn in (xent.logsumexp, xent.log_softmax, xent.softmax):
            assert_same_bits(fn(lay(x, True)), fn(x), fn.__name__)


@SETTINGS
@given(p=problems(), reduction=st.sampled_from(REDUCTIONS), extra=st.integers(1, 3))
@with_corners(reduction="none", extra=1)
def test_class_axis_anywhere_equals_last(p, reduction, extra):
    """Classes on axis 1 of an (N, C, H) array give the bitwise results of the
    contiguous (N*H, C) rows with the class axis last; likewise axis 0 of a
    transposed (C, N) array."""
    x, labels, probs = p["x"], p["labels"], p["probs"]
    n_rows, n_cols = x.shape
    if n_rows % extra:
        extra = 1
    kw = dict(weight=p["weight"], sample_weight=p["sample_weight"],
              label_smoothing=p["smoothing"], reduction=reduction)
    ikw = dict(kw, ignore_index=p["ignore_index"])
    loss, grad = xent.softmax_cross_entropy_with_grad(x, labels, **ikw)

    # (C, N) with axis=0: a transposed (Fortran) view
    got_loss, got_grad = xent.softmax_cross_entropy_with_grad(x.T, labels, axis=0, **ikw)
    assert_same_bits(got_loss, loss, "axis=0: loss")
    assert_same_bits(np.ascontiguousarray(got_grad.T), grad, "axis=0: grad")

    # (B, C, H) with axis=1, where row (b, h) of the moved array is row b*H + h
    b, h = n_rows // extra, extra
    x3 = np.ascontiguousarray(x.reshape(b, h, n_cols).transpose(0, 2, 1))
    sw3 = None if p["sample_weight"] is None else p["sample_weight"].reshape(b, h)
    kw3 = dict(ikw, sample_weight=sw3)
    got_loss, got_grad = xent.softmax_cross_entropy_with_grad(x3, labels.reshape(b, h), axis=1, **kw3)
    if reduction == "none":
        got_loss = got_loss.reshape(-1)
    assert_same_bits(got_loss, loss, "axis=1: loss")
    assert_same_bits(np.ascontiguousarray(got_grad.transpose(0, 2, 1)).reshape(n_rows, n_cols),
                     grad, "axis=1: grad")

    # probabilities on axis=1 as well
    loss, grad = xent.softmax_cross_entropy_with_grad(x, probs, **kw)
    p3 = np.ascontiguousarray(probs.reshape(b, h, n_cols).transpose(0, 2, 1))
    got_loss, got_grad = xent.softmax_cross_entropy_with_grad(x3, p3, axis=1, **dict(kw, sample_weight=sw3))
    if reduction == "none":
        got_loss = got_loss.reshape(-1)
    assert_same_bits(got_loss, loss, "probabilities axis=1: loss")
    assert_same_bits(np.ascontiguousarray(got_grad.transpose(0, 2, 1)).reshape(n_rows, n_cols),
                     grad, "probabilities axis=1: grad")
    if x.size:
        assert_same_bits(xent.softmax(x3, axis=1).transpose(0, 2, 1).reshape(n_rows, n_cols),
                         xent.softmax(x), "softmax axis=1")
