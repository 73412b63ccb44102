"""Accuracy of every kernel in ulps against an exact (mpmath) oracle.

Each kernel's per-row loss (``reduction="none"``), every gradient entry
(``_with_grad(..., reduction="sum")``, the unscaled per-row gradient) and the
outputs of ``logsumexp`` / ``log_softmax`` / ``softmax`` are compared with
values computed exactly from the same float inputs (``tests/_exact.py``), and
must lie within 4 ulp (float64) / 8 ulp (float32) of them, ulps floored at
the smallest normal number.  BCE gradients, which cancel near
``sigmoid(x) = t``, are held to 4 / 8 machine epsilons absolute; for
hard targets (0 or 1), where the gradient has no cancellation, to the ulp
bound as well.

Strata (``tests/_exact.py``): C in {1, 2, 3, 10, 1000, 128256}; rows that are
uniform, have ties at the max, are confidently right or wrong, or random,
with gaps between the max and the rest from 2**-10 to 1e4; probability
targets that are one-hot, smoothed or do not sum to 1; label smoothing; BCE on
a log grid of x = 0, +-[1e-10, 1e20] against targets 0, 0.3, 1.  Logits are
dyadic, so ``x - max(x)`` is exact: its rounding is the one error the bound
leaves out, and these inputs do not have it.

Every SIMD variant this CPU runs is measured (the variant is switched at run
time), since each has its own exponential.  The oracle is computed once per
row and shared by the kernels and variants.  ``tools/ulp_report.py`` prints
the same measurements as a table.

On failure the message gives the worst entry: kernel, dtype, how many
entries are over the bound, the error, got, the exact value and the row.
"""

import os
import sys
from functools import lru_cache

import numpy as np
import pytest

pytest.importorskip("mpmath", reason="the exact oracle needs mpmath (the `test` extra)")

# the oracle lives beside this file (shared with tools/ulp_report.py); make
# it importable whatever pytest's import mode
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _exact as ex  # noqa: E402


# Every test that takes the `isa` fixture (conftest.py) runs on each SIMD
# variant this CPU runs.


# --------------------------------------------------------------------------
# strata (built once; the oracle caches on the rows)
# --------------------------------------------------------------------------

DTYPES = [np.float32, np.float64]
# "128256" is one row: values in [-20, 0] with the max moving to the end of
# the row (a streaming max/sum merge rescales at every block), exact in both
# dtypes; "128256-full" adds one row of every kind at full precision.
CLASSES = [1, 2, 3, 10, 1000, "128256", pytest.param("128256-full", marks=pytest.mark.slow)]
# The oracle works once per distinct (logit, target) pair of a row; with
# targets that differ on every one of 128k classes that is ~3 s of pure
# Python, so that case runs in the slow set only.
HEAVY_AT_BIG_C = {"ce-prob-unnormalised"}


@lru_cache(maxsize=None)
def rows_for(dtype, classes):
    if classes == "128256":
        return tuple(ex.big_rows(dtype))
    if classes == "128256-full":
        return tuple(ex.big_rows(dtype, full=True)[1:])
    return tuple(ex.softmax_rows(dtype, classes))


def _softmax_cases():
    for kernel in ex.SOFTMAX_KERNELS:
        for classes in CLASSES:
            c = classes.values[0] if hasattr(classes, "values") else classes
            marks = list(getattr(classes, "marks", ()))
            if kernel in HEAVY_AT_BIG_C and c == "128256":
                marks.append(pytest.mark.slow)
            yield pytest.param(kernel, c, marks=marks, id=f"{kernel}-C{c}")


def assert_within_bound(measured):
    """Every measured quantity within its bound; else report the worst cases."""
    bad = [m.report() for m in measured if m.failures()]
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------
# softmax cross-entropy and the softmax primitives
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel, classes", list(_softmax_cases()))
def test_softmax_family_within_bound_ulps(kernel, classes, dtype, isa):
    rows = rows_for(dtype, classes)
    measured = ex.measure_softmax(kernel, dtype, list(rows))
    assert_within_bound(measured.values())


# --------------------------------------------------------------------------
# sigmoid binary cross-entropy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_bce_loss_within_bound_ulps(dtype, isa):
    assert_within_bound([ex.measure_bce(dtype)["loss"]])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_bce_grad_within_bound_eps(dtype, isa):
    # sigmoid(x) - t cancels near sigmoid(x) = t, so the bound is
    # absolute: 4 eps (float64), 8 eps (float32)
    assert_within_bound([ex.measure_bce(dtype)["grad"]])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_bce_grad_hard_targets_within_bound_ulps(dtype, isa):
    # t in {0, 1}: the gradient is sigmoid(-|x|)-like, one term, no
    # cancellation, so it keeps relative precision down to
    # sigmoid(-1e20) ~ 0: hold it to the ulp bound
    grad = ex.measure_bce(dtype)["grad-ulp"]
    hard = ex.Measured(grad.kernel, grad.dtype, "grad (t in {0, 1})", "ulp")
    hard.items = [item for item in grad.items if float(item[0].t[0]) in (0.0, 1.0)]
    assert len(hard.items) == 2
    assert_within_bound([hard])


# --------------------------------------------------------------------------
# the harness itself: the strata are what they claim, the oracle and the
# ulp measure are right on cases known in closed form
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_strata_have_exact_shifts_and_cover_the_documented_ranges(dtype):
    rows = list(rows_for(dtype, 10)) + list(rows_for(dtype, "128256"))
    for row in rows:
        assert row.x.dtype == dtype
        d = row.x.astype(np.float64) - np.max(row.x)
        # x - max(x) is exact in the dtype itself (dyadic logits)
        assert np.array_equal(d.astype(dtype).astype(np.float64), d)
        assert np.array_equal((row.x - np.max(row.x)).astype(np.float64), d)
    kinds = {r.kind for r in rows_for(dtype, 10)}
    assert kinds == set(ex.ROW_KINDS)
    gaps = {r.gap for r in rows_for(dtype, 1000)}
    assert max(gaps) == 1e4 and min(gaps) == 0.0
    assert any(np.sum(r.x == r.x.max()) > 1 for r in rows_for(dtype, 3))   # ties
    assert rows_for(dtype, "128256")[0].C == 128256
    x, t = ex.bce_grid(dtype)
    assert np.abs(x).max() == np.float64(dtype(1e20)) and np.abs(x[x != 0]).min() == dtype(1e-10)
    assert sorted(set(t.ravel().tolist())) == sorted({float(dtype(v)) for v in (0.0, 0.3, 1.0)})


def test_oracle_closed_forms():
    import mpmath

    # two classes: the loss of the max class is log1p(exp(-gap)), however tiny
    for gap in (1.0, 40.0, 700.0, 1e4):
        r = ex.ExactRow(np.array([0.0, -gap]))
        loss, grad = r.ce_index(0)
        with mpmath.workprec(200):
            e = mpmath.exp(-mpmath.mpf(gap))
            want_loss, want_g0 = mpmath.log1p(e), -e / (1 + e)
        assert abs(loss.value(0) - want_loss) <= abs(want_loss) * mpmath.mpf(2) ** -100
        assert abs(grad.value(0) - want_g0) <= abs(want_g0) * mpmath.mpf(2) ** -100
        assert grad.value(0) < 0 < grad.value(1)
    # uniform row: log C, softmax 1/C, one-hot gradient 1/C - 1 exactly
    r = ex.ExactRow(np.full(4, 3.5))
    assert r.logsumexp().value(0) == pytest.approx(3.5 + np.log(4), rel=1e-15)
    loss, grad = r.ce_index(2)
    assert loss.hi[0] == np.log(4) and grad.hi.tolist() == [0.25, 0.25, -0.75, 0.25]
    # probabilities that equal the softmax: the gradient is exactly 0
    # (the guard raises the precision until it is sure of it)
    loss, grad = r.ce_prob(np.full(4, 0.25))
    assert grad.hi.tolist() == [0.0] * 4 and loss.hi[0] == np.log(4)
    # the cancellation guard: logsumexp of [-fl(log 2)] * 2 is log 2 - fl(log 2)
    # ~ 2e-17, 55 bits below its terms, more than 128-bit arithmetic keeps
    # with GUARD_BITS to spare: the oracle must raise its precision
    m = -float(np.log(2.0))
    with mpmath.workprec(1000):
        want = mpmath.log(2) + mpmath.mpf(m)
    got = ex.ExactRow(np.array([m, m])).logsumexp().value(0)
    assert abs(got - want) <= abs(want) * mpmath.mpf(2) ** -70
    # ... and sigmoid(x) - t where sigmoid(x) rounds to t
    x0 = float(np.log(0.3 / 0.7))
    with mpmath.workprec(1000):
        want = 1 / (1 + mpmath.exp(-mpmath.mpf(x0))) - mpmath.mpf(0.3)
    _, g = ex.bce(np.array([x0]), np.array([0.3]))
    assert abs(g.value(0) - want) <= abs(want) * mpmath.mpf(2) ** -70
    # C = 1: loss 0, gradient 0
    loss, grad = ex.ExactRow(np.array([-7.25])).ce_index(0)
    assert loss.hi[0] == 0.0 and grad.hi[0] == 0.0
    # smoothing: the one-hot with eps equals the explicit smoothed target
    x = np.array([0.5, -1.25, 2.0])
    a = ex.ExactRow(x).ce_prob(np.array([0.0, 1.0, 0.0]), 0.25)
    b = ex.ExactRow(x).ce_prob(np.array([0.25 / 3, 0.75 + 0.25 / 3, 0.25 / 3]))
    assert np.allclose(a[1].hi, b[1].hi, rtol=1e-15, atol=0) and a[0].hi == pytest.approx(b[0].hi, rel=1e-15)
    # BCE: log(2) and -1/2 at x = 0, t = 1; the limits at |x| = 1e20
    loss, grad = ex.bce(np.array([0.0, 1e20, -1e20]), np.array([1.0, 1.0, 0.0]))
    assert loss.hi.tolist() == [np.log(2), 0.0, 0.0] and grad.hi.tolist()[0] == -0.5
    assert 0 < loss.value(1) < mpmath.mpf(10) ** -(10 ** 19)


def test_ulp_measure():
    import mpmath

    f64, f32 = np.float64, np.float32
    one = ex.Exact([ex._raw(1.0)])
    # ulps of the exact value: 1's ulp is 2**-52 (float64) / 2**-23 (float32),
    # on both sides of it
    assert ex.ulp_errors(np.array([1 + 2.0 ** -52]), one, f64)[0] == 1.0
    assert ex.ulp_errors(np.array([1 - 2.0 ** -53]), one, f64)[0] == 0.5
    assert ex.ulp_errors(np.array([np.float32(1) + np.float32(2.0 ** -23)]), one, f32)[0] == 1.0
    # an exact value just below a power of two has the lower binade's ulp
    with mpmath.workprec(200):
        below = ex.Exact([(1 - mpmath.mpf(2) ** -80)._mpf_])
    assert ex.ulp_errors(np.array([1.0]), below, f64)[0] == pytest.approx(2.0 ** -27, rel=1e-6)
    # the floor: below the smallest normal, errors count in its ulp
    tiny64 = np.finfo(f64).tiny
    z = ex.Exact([ex.ZERO])
    assert ex.ulp_errors(np.array([np.spacing(tiny64)]), z, f64)[0] == 1.0
    assert ex.ulp_errors(np.array([np.float32(np.spacing(np.finfo(f32).tiny))]), z, f32)[0] == 1.0
    with mpmath.workprec(200):
        sub = ex.Exact([(mpmath.mpf(2) ** -1070 * 3 + mpmath.mpf(2) ** -1080)._mpf_])
    got = np.array([3 * 2.0 ** -1070])
    assert ex.ulp_errors(got, sub, f64)[0] == pytest.approx(2.0 ** -6, rel=1e-9)
    # NaN and inf are infinitely wrong
    assert np.isinf(ex.ulp_errors(np.array([np.nan]), one, f64)[0])
    assert np.isinf(ex.ulp_errors(np.array([np.inf]), one, f64)[0])
    # absolute errors in eps
    assert ex.abs_errors_eps(np.array([2.0 ** -60]), z, f64)[0] == pytest.approx(2.0 ** -8)
