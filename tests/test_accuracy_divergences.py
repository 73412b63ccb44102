"""Accuracy of the divergences against the exact (mpmath) oracle.

The same harness as ``tests/test_accuracy.py`` and
``tests/test_accuracy_extras.py`` (``tests/_exact.py``: its oracle, its
measure), on ``xent.kl_divergence(_with_grad)`` (forward ``KL(q || p)`` and
``reverse=True``, ``KL(p || q)``) and ``xent.js_divergence(_with_grad)``
(``beta`` 0.5 and 0.25), ``p = softmax(x / T)`` the student's
(``logits``), ``q = softmax(z / T)`` the teacher's (``target_logits``):
per-row values (``reduction="none"``) and per-row gradients with respect to
``x`` (``_with_grad(..., reduction="sum")``: no sample weight, no mean), in
float32 and float64, at temperatures 1, 0.5 and 2, on every SIMD variant
this CPU runs.

The oracle (``_exact.exact_divergences``) works from the exact shifts
``x - max(x)`` and ``z - max(z)`` and the log-ratios ``r = log q - log p``
(the one difference of the normalisers guarded) and writes each divergence
as a sum of terms that are never negative, so a tiny divergence keeps its
relative precision; it agrees with the definitions evaluated at 2500 bits
(``test_divergence_oracle_against_definitions``).

Strata (``_exact.divergence_pairs``), every row dyadic so that ``x - max(x)``
is exact (and ``x / T`` for the powers of two T):

* ``near``: ``z`` = ``x`` identical, shifted by a constant, up to 3 grid
  steps of ``x`` per class, ``2**-40`` (float64), ``2**-20`` and ``2**-10``
  of ``1 + |x_c - max(x)|``: divergences down to ~1e-30 that must keep
  their relative precision;
* ``random``: unrelated rows (gaps 1 to 90, spread over [-90, 90]), a
  confident teacher or student, a correlated teacher, ties at the max;
* ``masked``: ``-inf`` in x only (forward KL +inf), in z only (reverse KL
  +inf, its gradient NaN), at the same classes in both (also near-identical),
  at different classes, z masking more than x; the Jensen-Shannon divergence
  always finite;
* ``extreme``: rows spanning 700 and 1000 (float64) or 80 (float32) between
  their max and min, unrelated, reversed, near-identical, ties at the max.

C in {1, 2, 3, 10, 1000} (C = 1000 in the slow tier, ``-m slow``, but for a
few pairs of each stratum at T = 1, ``test_divergences_1000_classes_quick``).

The bounds (``/work/notes/div_semantics.md``, the contract):

* values: 8 ulp (float32), 4 ulp (float64) of the exact value, ulps floored
  at the smallest normal number; float64 values below 1e-6 held to 64 ulp;
  +inf exactly where the contract says so (forward KL: a class that only x
  masks; reverse KL: one that only z masks);
* gradients: 8 / 4 machine epsilons absolute per unit of the gradient's
  scale -- the row's mass (1) times 1 / T (the gradient's chain factor: the
  error of ``(p - q) / T`` is that of ``p - q`` times 1 / T, exactly, for a
  power of two) -- or, for entries larger than that scale (only the reverse
  KL's ``p (log p / q - KL) / T`` has them, up to hundreds), 8 / 4 ulp of the
  entry: ``|got - exact| <= bound * max(eps / T, ulp(exact))``; finite where
  the forward KL is +inf, NaN where the reverse KL is.

A miss is reported with the kind, dtype, temperature, stratum, the worst entry
(got, exact, error) and the input pair (its values for C <= 10, and how
to rebuild it from ``tests/_exact.py``).
"""

import math
import os
import sys
from functools import lru_cache

import numpy as np
import pytest

pytest.importorskip("mpmath", reason="the exact oracle needs mpmath (the `test` extra)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _exact as ex  # noqa: E402


# Every test that takes the `isa` fixture (conftest.py) runs on each SIMD
# variant this CPU runs.

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
SLOW = pytest.mark.slow


def assert_within_bound(measured, special=()):
    bad = [m.report() for m in measured if m.failures()] + list(special)
    assert not bad, "\n".join(bad)


@lru_cache(maxsize=None)
def pairs_for(dtype, C, stratum):
    """The pairs of a stratum (built once; the oracle caches on them)."""
    return tuple(ex.divergence_pairs(dtype, C, stratum))


def _cases():
    for stratum in ex.DIV_STRATA:
        for C in (1, 2, 3, 10, 1000):
            if C == 1 and stratum in ("masked", "extreme"):
                continue                    # a mask or a span needs two classes
            marks = [SLOW] if C == 1000 else []
            yield pytest.param(stratum, C, marks=marks, id=f"{stratum}-C{C}")


CASES = list(_cases())


def _measure(kind, dtype, pairs, temperatures=ex.DIV_TEMPERATURES):
    return [ex.measure_divergence(kind, dtype, list(pairs), T) for T in temperatures]


# --------------------------------------------------------------------------
# values and gradients on the strata
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stratum, C", CASES)
@pytest.mark.parametrize("kind", ex.DIV_KINDS)
def test_divergence_values_within_bound(kind, stratum, C, dtype, isa):
    """Per-row values in ulps of the exact value (float64 below 1e-6: 64
    ulp), at T = 1, 0.5 and 2; +inf where the contract says so."""
    ms = _measure(kind, dtype, pairs_for(dtype, C, stratum))
    assert sum(len(m["value"].items) + len(m["value-small"].items) for m in ms) > 0
    assert_within_bound([m[q] for m in ms for q in ("value", "value-small")],
                        [s for m in ms for s in m["special-value"]])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stratum, C", CASES)
@pytest.mark.parametrize("kind", ex.DIV_KINDS)
def test_divergence_grads_within_bound(kind, stratum, C, dtype, isa):
    """Per-row gradients: ``|got - exact| <= bound * max(eps / T,
    ulp(exact))`` (absolute for the forward KL and JS, whose entries are
    below 1 / T), at T = 1, 0.5 and 2; NaN rows where the reverse KL is
    infinite, finite ones where the forward KL is."""
    ms = _measure(kind, dtype, pairs_for(dtype, C, stratum))
    assert sum(len(m["grad"].items) for m in ms) > 0
    assert_within_bound([m["grad"] for m in ms], [s for m in ms for s in m["special-grad"]])


#: a few pairs of each stratum at C = 1000 (the default tier; all of them
#: are in the slow one): (stratum, index in divergence_pairs)
QUICK_1000 = (("near", 3), ("near", 9), ("random", 2), ("random", 8), ("masked", 2),
              ("masked", 4), ("extreme", 0), ("extreme", 1))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ex.DIV_KINDS)
def test_divergences_1000_classes_quick(kind, dtype, isa):
    """C = 1000 (full SIMD blocks and their sums) in the default tier: a
    few pairs of each stratum, T = 1, values and gradients."""
    pairs = [pairs_for(dtype, 1000, s)[i] for s, i in QUICK_1000]
    m = ex.measure_divergence(kind, dtype, pairs, 1.0)
    assert_within_bound([m["value"], m["value-small"], m["grad"]],
                        m["special-value"] + m["special-grad"])


# --------------------------------------------------------------------------
# the harness: strata and oracle
# --------------------------------------------------------------------------

def _exact_shift(v, dtype):
    """Whether ``v - max(v)`` (finite entries) is exact in ``dtype``."""
    f = v[np.isfinite(v)].astype(dtype)
    d = (f - f.max()).astype(np.float64)
    return np.array_equal(d, f.astype(np.float64) - float(f.max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_divergence_strata(dtype):
    for C in (1, 2, 3, 10, 1000):
        for stratum in ex.DIV_STRATA:
            for pair in pairs_for(dtype, C, stratum):
                assert pair.x.dtype == dtype and pair.z.dtype == dtype
                assert np.isfinite(pair.x).any() and np.isfinite(pair.z).any()
                assert not np.isnan(pair.x).any() and not (pair.x == np.inf).any()
                for v in (pair.x, pair.z):
                    assert _exact_shift(v, dtype)
                    for T in ex.DIV_TEMPERATURES:     # x / T exact, and its shift
                        assert _exact_shift(v * dtype(1 / T), dtype)
    # near-identical pairs: divergences from 0 down to tiny ones
    kl = [ex.exact_divergence_pair(p, 1.0)["kl"][0] for p in pairs_for(dtype, 10, "near")]
    vals = [float(v.hi[0]) for v in kl]
    assert min(vals) == 0.0
    tiny = 1e-25 if dtype == np.float64 else 1e-9
    assert min(v for v in vals if v > 0) < tiny and max(vals) < 1e-2
    assert sum(0 < v < 1e-6 for v in vals) >= 8
    # masks: +inf forward and reverse KLs both present, and finite ones
    for C in (2, 3, 10):
        ex_ = [ex.exact_divergence_pair(p, 1.0) for p in pairs_for(dtype, C, "masked")]
        for kind in ("kl", "kl-reverse"):
            inf = [e[kind][0] is math.inf for e in ex_]
            assert any(inf) and not all(inf), (C, kind)
        assert all(e["js-0.5"][0] is not math.inf for e in ex_)
        assert any(e["kl-reverse"][1] is None for e in ex_)
    # extreme pairs: their spans, and ties at the max
    span = 1000.0 if dtype == np.float64 else 80.0
    for C in (2, 10, 1000):
        pairs = pairs_for(dtype, C, "extreme")
        spans = [float(np.ptp(p.x.astype(np.float64))) for p in pairs]
        assert max(spans) >= span * 0.999
        assert any(np.sum(p.x == p.x.max()) >= 2 for p in pairs) or C == 2
        assert any(np.sum(p.z == p.z.max()) >= 2 for p in pairs) or C == 2
    # random pairs: gaps up to 90
    assert max(float(np.ptp(p.x.astype(np.float64)))
               for p in pairs_for(dtype, 10, "random")) > 80


def test_divergence_oracle_against_definitions():
    """``exact_divergences`` against the definitions evaluated at 2500 bits
    (no care for cancellation): values to 2**-70 relative (0 exactly), the
    gradients to 2**-100 absolute (relative above 1), on finite pairs of each stratum,
    near-identical float64 ones included."""
    import mpmath

    checked = 0
    for dtype in DTYPES:
        for stratum in ex.DIV_STRATA:
            for C in (2, 3):
                pairs = [p for p in pairs_for(dtype, C, stratum)
                         if np.isfinite(p.x).all() and np.isfinite(p.z).all()][::3]
                for n, p in enumerate(pairs):
                    for T in ((1.0, 0.5) if C == 2 else (2.0 if n % 2 else 1.0,)):
                        got = ex.exact_divergences(p.x, p.z, T)
                        want = ex.naive_divergences(p.x, p.z, T, prec=2500)
                        with mpmath.workprec(2500):
                            for kind, (v, g) in got.items():
                                V, G = want[kind]
                                if V == 0:
                                    assert v.value(0) == 0, (kind, p.describe())
                                else:
                                    assert abs(v.value(0) / V - 1) < mpmath.mpf(2) ** -70, (
                                        kind, T, p.describe())
                                for i in range(C):
                                    # (Exact keeps 106 bits: relative above 1)
                                    tol = mpmath.mpf(2) ** -100 * max(1, abs(G[i]))
                                    assert abs(g.value(i) - G[i]) < tol, (
                                        kind, T, i, p.describe())
                        checked += 1
    assert checked >= 40


def test_divergence_oracle_closed_forms():
    import mpmath

    b = 0.25
    # identical rows (and rows shifted by a constant): 0, gradients 0
    x = np.array([0.5, -1.25, 2.0])
    for z in (x, x + 3.0):
        for kind, (v, g) in ex.exact_divergences(x, z).items():
            assert v.hi[0] == 0.0 and not g.hi.any(), kind
    # two classes: KL(q || p) of Bernoulli distributions, and p - q
    x, z = np.array([0.0, -1.0]), np.array([0.0, 2.0])
    with mpmath.workprec(200):
        p1 = 1 / (1 + mpmath.e)                     # p = [1 - p1, p1]
        q1 = 1 / (1 + mpmath.exp(-2))
        fwd = (1 - q1) * mpmath.log((1 - q1) / (1 - p1)) + q1 * mpmath.log(q1 / p1)
        rev = (1 - p1) * mpmath.log((1 - p1) / (1 - q1)) + p1 * mpmath.log(p1 / q1)
        d1 = p1 - q1
    e = ex.exact_divergences(x, z)
    assert abs(e["kl"][0].value(0) - fwd) < fwd * mpmath.mpf(2) ** -100
    assert abs(e["kl"][1].value(1) - d1) < mpmath.mpf(2) ** -100
    assert abs(e["kl-reverse"][0].value(0) - rev) < rev * mpmath.mpf(2) ** -100
    assert e["kl"][1].hi[0] == pytest.approx(-e["kl"][1].hi[1], rel=1e-15)
    # the temperature: x / T, gradient / T
    e2 = ex.exact_divergences(2 * x, 2 * z, 2.0)
    assert e2["kl"][0].hi[0] == e["kl"][0].hi[0]
    assert np.array_equal(e2["kl"][1].hi, e["kl"][1].hi / 2)
    # disjoint supports: JS = the entropy of (beta, 1 - beta); KL both ways +inf;
    # the forward gradient p - q, the reverse one NaN, JS's 0 (p one-hot)
    x, z = np.array([0.0, -np.inf]), np.array([-np.inf, 0.0])
    e = ex.exact_divergences(x, z)
    assert e["kl"][0] is math.inf and e["kl"][1].hi.tolist() == [1.0, -1.0]
    assert e["kl-reverse"] == (math.inf, None)
    for beta in ex.JS_BETAS:
        want = -beta * math.log(beta) - (1 - beta) * math.log1p(-beta)
        v, g = e[f"js-{beta:g}"]
        assert v.hi[0] == pytest.approx(want, rel=1e-15) and not g.hi.any()
    # a class masked by the teacher only: the forward KL is finite,
    # -log(1 - q-mass that p puts outside z's support)... = -log p(z's support)
    x, z = np.array([0.0, 0.0, 0.0]), np.array([0.0, -np.inf, 0.0])
    e = ex.exact_divergences(x, z)
    assert e["kl"][0].hi[0] == pytest.approx(math.log(1.5), rel=1e-15)
    assert e["kl"][1].hi == pytest.approx([1 / 3 - 0.5, 1 / 3, 1 / 3 - 0.5], rel=1e-15)
    assert e["kl-reverse"][0] is math.inf
    # ... and JS there, b = 0.25: m = (b q + (1-b) p)
    p, q = np.array([1 / 3] * 3), np.array([0.5, 0.0, 0.5])
    m = b * q + (1 - b) * p
    want = (b * np.sum(q[q > 0] * np.log(q[q > 0] / m[q > 0]))
            + (1 - b) * np.sum(p * np.log(p / m)))
    assert ex.exact_divergences(x, z)["js-0.25"][0].hi[0] == pytest.approx(want, rel=1e-14)
    # one class: every divergence 0
    for kind, (v, g) in ex.exact_divergences(np.array([3.0]), np.array([-7.0])).items():
        assert v.hi[0] == 0.0 and g.hi.tolist() == [0.0], kind
