"""Exact oracle (mpmath), input strata and measurement of xent's accuracy harness.

Shared by ``tests/test_accuracy.py`` (which holds the accuracy bounds:
4 ulp in float64, 8 in float32) and
``tools/ulp_report.py`` (which prints the measured ulp table), so both judge
the same inputs against the same oracle.  Only the measurement functions at
the end import xent.

The oracle
----------
Every float input is converted exactly (``from_float(float(v))``) and the
math is done in binary arbitrary precision (mpmath, 128 bits and more).
Plain high precision is not enough: the losses of confident rows are
``log(1 + tiny)`` with ``tiny`` down to ``exp(-1e4)``, far below any fixed
precision's ``2**-prec``, and several gradients are differences of nearly
equal terms.  So the quantities are
written in forms without cancellation, and the few differences that can still
cancel are guarded:

* ``x - max(x)`` is formed exactly (an mpmath subtraction with no rounding),
  and ``exp`` is taken once per distinct value of a row;
* ``log(sum_j exp(x_j - m)) = log(k) + log1p(T / k)`` where ``k`` counts the
  entries tied at the max and ``T`` sums the others, so a tiny ``T`` keeps its
  relative precision (mpmath's exponents are unbounded: ``exp(-1e4)`` is an
  ordinary number to it);
* the softmax gradient ``Q p_j - q_j`` (``Q = sum q``) is computed as
  ``(Q_{-j} E_j - q_j R_j) / S`` with ``Q_{-j} = sum_{i != j} q_i`` from exact
  sums of the float targets and ``R_j = S - E_j`` summed directly at a max, so
  the one-hot target entry ``p_y - 1 = -R_y / S`` never cancels;
* the differences that remain (that numerator, ``sigmoid(x) - t``, and
  ``m + log S`` for ``logsumexp``) measure the bits they lose, and the whole
  row (or element) is recomputed with more precision when fewer than
  ``GUARD_BITS`` bits would survive.

Results are kept as float64 pairs ``hi + lo`` (``hi`` the nearest double,
``lo`` the rest), which measure errors of float32 and float64 results to a
tiny fraction of an ulp with vectorised NumPy; the few values below 2**-1000,
where ``lo`` underflows, are kept as mpf and measured in mpmath.

Errors are in ulps of the exact value, floored at the smallest normal number:
``ulp(v) = 2**(e - p)`` for ``2**(e-1) <= |v| < 2**e`` and ``p`` the
dtype's precision, never less than the ulp of ``finfo.tiny``.
"""

import math
from functools import lru_cache

import mpmath
import numpy as np
from mpmath import libmp

#: Working precision (bits).  The guards below raise it where needed.
PREC = 128
#: Bits a guarded difference must keep; ~60 would do for float64 ulps.
GUARD_BITS = 80
#: Never go beyond this; at it, a difference that still vanishes is taken
#: to be exactly 0 (it happens only for exact inputs, e.g. a uniform row
#: with uniform targets, where every term is rational).
MAX_PREC = 4096


# --------------------------------------------------------------------------
# raw mpmath arithmetic
#
# The hot loops (128k classes) work on mpmath's raw values, tuples
# (sign, mantissa, exponent, bitcount), through mpmath.libmp: the same
# arithmetic as mpf objects without the wrapper's overhead.  Every operation
# names its precision (0: exact) and rounds to nearest.
# --------------------------------------------------------------------------

RN = libmp.round_nearest
ZERO, ONE = libmp.fzero, libmp.fone


def _raw(v):
    """A float (NumPy or Python, any width) as an exact raw mpf."""
    return libmp.from_float(float(v))


def _is_zero(r):
    return not r[1]          # finite values only: a zero mantissa is 0


def _mag(r):
    """e with 2**(e-1) <= |r| < 2**e (r != 0)."""
    return r[2] + r[3]


def _lost_bits(a, b, diff):
    """Bits of a and b cancelled in diff = a - b (inf for a total loss)."""
    if _is_zero(a) and _is_zero(b):
        return 0
    if _is_zero(diff):
        return math.inf
    big = max(_mag(a) if a[1] else -math.inf, _mag(b) if b[1] else -math.inf)
    return big - _mag(diff)


def _mpf(r):
    return mpmath.mp.make_mpf(r)


def _with_guard(compute):
    """Run ``compute(prec) -> (result, lost_bits)`` at rising precision until
    at least GUARD_BITS bits survive every guarded difference."""
    prec = PREC
    while True:
        result, lost = compute(prec)
        if lost <= prec - GUARD_BITS or prec >= MAX_PREC:
            return result
        need = lost + 2 * GUARD_BITS if math.isfinite(lost) else 0
        prec = min(MAX_PREC, max(2 * prec, int(need)))


# --------------------------------------------------------------------------
# exact values, and errors against them
# --------------------------------------------------------------------------

_SMALL = 2.0 ** -1000   # below this, hi + lo loses bits (lo underflows)


class Exact:
    """Exact values as ``hi + lo`` float64 pairs (any shape), plus the raw
    mpf of the entries below 2**-1000 in magnitude, which the pair cannot
    hold to full precision."""

    def __init__(self, raws, shape=None):
        raws = list(raws)
        hi = [libmp.to_float(r, rnd=RN) for r in raws]
        lo = [libmp.to_float(libmp.mpf_sub(r, libmp.from_float(h)), rnd=RN) if h else 0.0
              for r, h in zip(raws, hi)]
        self.hi = np.array(hi, dtype=np.float64)
        self.lo = np.array(lo, dtype=np.float64)
        self.small = {i: r for i, (r, h) in enumerate(zip(raws, hi)) if r[1] and abs(h) < _SMALL}
        if shape is not None:
            self.hi = self.hi.reshape(shape)
            self.lo = self.lo.reshape(shape)

    @property
    def shape(self):
        return self.hi.shape

    def value(self, flat_index):
        """The exact value at a flat index, as an mpf (for reports)."""
        if flat_index in self.small:
            return _mpf(self.small[flat_index])
        return _mpf(libmp.mpf_add(_raw(self.hi.flat[flat_index]), _raw(self.lo.flat[flat_index])))

    def replaced(self, updates):
        """A copy with some flat entries set to new raw values."""
        out = Exact([])
        out.hi, out.lo, out.small = self.hi.copy(), self.lo.copy(), dict(self.small)
        part = Exact([r for _, r in updates])
        for n, (i, _) in enumerate(updates):
            out.hi.flat[i], out.lo.flat[i] = part.hi[n], part.lo[n]
            out.small.pop(i, None)
            if n in part.small:
                out.small[i] = part.small[n]
        return out

    def take(self, index):
        """A 1-D Exact of the entries at the given flat indices."""
        index = np.asarray(index)
        out = Exact([])
        out.hi, out.lo = self.hi.ravel()[index], self.lo.ravel()[index]
        if self.small:
            at = np.nonzero(np.isin(index, list(self.small)))[0]
            out.small = {int(p): self.small[int(index[p])] for p in at}
        return out

    def row(self, i):
        """Row i of a 2-D Exact, as a 1-D Exact."""
        out = Exact([])
        out.hi, out.lo = self.hi[i].copy(), self.lo[i].copy()
        n = self.hi.shape[1]
        out.small = {j - i * n: r for j, r in self.small.items() if i * n <= j < (i + 1) * n}
        return out

    @classmethod
    def concat(cls, parts):
        """Flat concatenation of several Exact objects."""
        out = cls([])
        out.hi = np.concatenate([p.hi.ravel() for p in parts])
        out.lo = np.concatenate([p.lo.ravel() for p in parts])
        out.small, offset = {}, 0
        for p in parts:
            out.small.update({offset + i: v for i, v in p.small.items()})
            offset += p.hi.size
        return out


def _precision(dtype):
    info = np.finfo(dtype)
    return info.nmant + 1, info.minexp   # (24, -126) or (53, -1022)


def ulp_exponent(exact, dtype):
    """log2 of the ulp of each exact value in ``dtype``, floored at the ulp
    of the smallest normal number."""
    p, minexp = _precision(dtype)
    mant, e = np.frexp(np.abs(exact.hi))           # |hi| in [2**(e-1), 2**e)
    # hi a power of two with a lo of the other sign: the value lies below it
    below = (mant == 0.5) & (exact.lo * exact.hi < 0)
    e = e - below.astype(e.dtype)
    return np.maximum(np.where(exact.hi == 0, minexp + 1, e), minexp + 1) - p


def _raw_errors(got, exact):
    got = np.asarray(got, dtype=np.float64).reshape(exact.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((got - exact.hi) - exact.lo)
    return got, np.where(np.isnan(err) | ~np.isfinite(got), np.inf, err)


def ulp_errors(got, exact, dtype):
    """|got - exact| in ulps of the exact value, per entry."""
    got, err = _raw_errors(got, exact)
    with np.errstate(over="ignore"):
        out = np.ldexp(err, -ulp_exponent(exact, dtype))
    p, minexp = _precision(dtype)
    for i, r in exact.small.items():                # values hi + lo cannot hold
        g = got.flat[i]
        if np.isfinite(g):
            e = max(_mag(r), minexp + 1) - p
            diff = libmp.mpf_sub(_raw(g), r)
            out.flat[i] = abs(libmp.to_float(libmp.mpf_shift(diff, -e), rnd=RN))
    return out


def abs_errors_eps(got, exact, dtype):
    """|got - exact| in units of the dtype's machine epsilon."""
    _, err = _raw_errors(got, exact)
    return err / np.finfo(dtype).eps


# --------------------------------------------------------------------------
# softmax family: one row of logits
# --------------------------------------------------------------------------

class ExactRow:
    """Exact softmax quantities of one row of finite float logits.

    The exponentials (the costly part for C = 128k) are computed once per
    distinct value of the row and shared by every kernel's oracle; so is the
    softmax.  ``inv`` maps each entry to its distinct value.
    """

    def __init__(self, x, prec=PREC):
        self.x = np.asarray(x)
        self.prec = prec
        values, self.inv = np.unique(self.x.astype(np.float64), return_inverse=True)
        self.inv = self.inv.ravel()
        counts = np.bincount(self.inv).tolist()
        self.values = self._raw_values(values.tolist(), prec)
        m = self.values[-1]
        self.m = m
        self.du = [libmp.mpf_sub(v, m) for v in self.values]             # x - max(x), exact
        self.Eu = [libmp.mpf_exp(v, prec, RN) if v[1] else ONE for v in self.du]
        self.k = counts[-1]                                               # ties at the max
        self.T = libmp.mpf_sum([libmp.mpf_mul(e, libmp.from_int(c))
                                for e, c in zip(self.Eu[:-1], counts[:-1])], prec, RN)
        self.S = libmp.mpf_add(libmp.from_int(self.k), self.T, prec, RN)
        self.inv_S = libmp.mpf_div(ONE, self.S, prec, RN)
        with mpmath.workprec(prec):
            # log S = log k + log1p(T / k): a tiny T keeps its relative precision
            log_S = mpmath.log(self.k) + mpmath.log1p(_mpf(self.T) / self.k)
        self.log_S = log_S._mpf_
        self._higher = {}
        self._softmax = None

    def _raw_values(self, values, prec):
        """The row's distinct values, exactly (MappedRow: their images)."""
        return [_raw(v) for v in values]

    @property
    def C(self):
        return self.inv.size

    def d(self, j):
        """x_j - max(x), exact (raw)."""
        return self.du[self.inv[j]]

    def E(self, j):
        """exp(x_j - max(x)) (raw)."""
        return self.Eu[self.inv[j]]

    def at(self, prec):
        """This row at a higher precision (cached per precision)."""
        if prec <= self.prec:
            return self
        if prec not in self._higher:
            self._higher[prec] = ExactRow(self.x, prec)
        return self._higher[prec]

    def R(self, j):
        """sum_{i != j} exp(x_i - m), without cancellation (raw)."""
        if not self.d(j)[1]:
            return libmp.mpf_add(libmp.from_int(self.k - 1), self.T, self.prec, RN)
        return libmp.mpf_sub(self.S, self.E(j), self.prec, RN)   # S >= 2 E_j: <= 1 bit lost

    # ---- primitives -----------------------------------------------------
    def logsumexp(self):
        """Exact ``logsumexp`` of the row (a 1-element Exact)."""
        def compute(prec):
            r = self.at(prec)
            v = libmp.mpf_add(r.m, r.log_S, prec, RN)     # cancels when m < 0
            return v, _lost_bits(r.m, libmp.mpf_neg(r.log_S), v)
        return Exact([_with_guard(compute)])

    def log_softmax(self):
        # (x_j - m) - log S: both terms <= 0, no cancellation
        return Exact([libmp.mpf_sub(v, self.log_S, self.prec, RN) for v in self.du]).take(self.inv)

    def softmax(self):
        if self._softmax is None:
            p = [libmp.mpf_mul(e, self.inv_S, self.prec, RN) for e in self.Eu]
            self._softmax = Exact(p).take(self.inv)
        return self._softmax

    # ---- cross-entropy --------------------------------------------------
    def ce_index(self, y):
        """Exact (loss, grad) for class index ``y``, no smoothing, no weights."""
        loss = libmp.mpf_sub(self.log_S, self.d(y), self.prec, RN)      # both >= 0
        # p_y - 1 = -(sum of the others) / S, without cancellation
        gy = libmp.mpf_neg(libmp.mpf_mul(self.R(y), self.inv_S, self.prec, RN))
        return Exact([loss]), self.softmax().replaced([(y, gy)])

    def ce_prob(self, t, eps=0.0):
        """Exact (loss, grad) for float targets ``t`` (any non-negative values)
        with label smoothing ``eps``: ``q = (1 - eps) t + eps / C`` (PyTorch;
        class indices with smoothing are the one-hot ``t``).  The gradient is
        ``Q p - q`` with ``Q = sum q``, computed as
        ``(Q_{-j} E_j - q_j R_j) / S``.  Entries are computed once per
        distinct (logit, target) pair."""
        t64 = np.asarray(t, dtype=np.float64).ravel()
        C = t64.size
        t_sum = libmp.mpf_sum([_raw(v) for v in t64.tolist()])            # exact
        keys = np.stack([self.inv, t64.view(np.int64)], axis=1)
        _, first, pair_of, count = np.unique(keys, axis=0, return_index=True,
                                             return_inverse=True, return_counts=True)
        pair_of = pair_of.ravel()
        reps = first.tolist()                     # an entry of each distinct pair
        tr = [_raw(t64[j]) for j in reps]
        eps_r = _raw(eps)

        def compute(prec):
            r = self.at(prec)
            if eps:
                keep = libmp.mpf_sub(ONE, eps_r)          # exact
                spread = libmp.mpf_div(eps_r, libmp.from_int(C), prec, RN)
                rest = libmp.mpf_div(libmp.mpf_mul(eps_r, libmp.from_int(C - 1)),
                                     libmp.from_int(C), prec, RN)
                q = [libmp.mpf_add(libmp.mpf_mul(keep, v), spread, prec, RN) for v in tr]
            else:
                q = tr
            # loss = sum_c q_c (log S - d_c): every term >= 0
            loss = libmp.mpf_sum([libmp.mpf_mul(libmp.mpf_mul(qp, libmp.from_int(n)),
                                                libmp.mpf_sub(r.log_S, r.d(j)), prec, RN)
                                  for qp, n, j in zip(q, count.tolist(), reps) if qp[1]], prec, RN)
            grad, lost = [], 0
            for qp, tp, j in zip(q, tr, reps):
                # Q - q_j from the exact sum of the float targets
                q_minus = libmp.mpf_sub(t_sum, tp)
                if eps:
                    q_minus = libmp.mpf_add(libmp.mpf_mul(keep, q_minus), rest, prec, RN)
                a = libmp.mpf_mul(q_minus, r.E(j), prec, RN)
                b = libmp.mpf_mul(qp, r.R(j), prec, RN) if qp[1] else ZERO
                num = libmp.mpf_sub(a, b, prec, RN)
                lost = max(lost, _lost_bits(a, b, num))
                grad.append(libmp.mpf_mul(num, r.inv_S, prec, RN))
            return (loss, grad), lost

        loss, grad = _with_guard(compute)
        return Exact([loss]), Exact(grad).take(pair_of)


@lru_cache(maxsize=64)
def _row_cached(key):
    return ExactRow(np.frombuffer(key, dtype=np.float64))


def exact_row(x):
    """ExactRow of a 1-D array, cached by its values (the rows are shared by
    several kernels' tests, and by both dtypes where the values agree)."""
    return _row_cached(np.ascontiguousarray(x, dtype=np.float64).tobytes())


# --------------------------------------------------------------------------
# sigmoid binary cross-entropy, elementwise
# --------------------------------------------------------------------------

def bce(x, t):
    """Exact (loss, grad) of sigmoid BCE for float arrays ``x``, ``t`` (same
    shape): ``(1-t) softplus(x) + t softplus(-x)`` and ``sigmoid(x) - t``."""
    x = np.asarray(x)
    t = np.asarray(t)
    losses, grads = [], []
    for xv, tv in zip(x.ravel().tolist(), t.ravel().tolist()):
        xm, tm = _mpf(_raw(xv)), _mpf(_raw(tv))

        def compute(prec):
            with mpmath.workprec(prec):
                a = mpmath.fsub(1, tm, exact=True)        # 1 - t, exact
                e = mpmath.exp(-abs(xm))
                lg = mpmath.log1p(e)
                # softplus(x) = max(x, 0) + log1p(exp(-|x|)); all terms >= 0
                loss = a * (max(xm, 0) + lg) + tm * (max(-xm, 0) + lg)
                big, small = 1 / (1 + e), e / (1 + e)     # sigmoid(|x|), sigmoid(-|x|)
                sig_pos, sig_neg = (big, small) if xm >= 0 else (small, big)
                ga, gb = a * sig_pos, tm * sig_neg
                g = ga - gb
            return (loss._mpf_, g._mpf_), _lost_bits(ga._mpf_, gb._mpf_, g._mpf_)

        loss, g = _with_guard(compute)
        losses.append(loss)
        grads.append(g)
    return Exact(losses, x.shape), Exact(grads, x.shape)


# --------------------------------------------------------------------------
# strata: the inputs the harness runs on
# --------------------------------------------------------------------------

DTYPES = (np.float32, np.float64)
#: C of the softmax strata (128256: a Llama-3 vocabulary).
CLASS_COUNTS = (1, 2, 3, 10, 1000, 128256)
BIG_C = 128256
#: Gaps between the max and the rest of a row.
GAPS = (0.0, 2.0 ** -10, 1.0, 10.0, 30.0, 100.0, 700.0, 1e4)
ROW_KINDS = ("uniform", "ties", "confident-right", "confident-wrong", "random")
TARGET_KINDS = ("one-hot", "smoothed", "unnormalised")
#: BCE: |x| on a log grid over [1e-10, 1e20], both signs, and 0; three targets.
BCE_TARGETS = (0.0, 0.3, 1.0)


def dyadic(values, dtype):
    """``values`` rounded to multiples of one power of two ``q`` with every
    ``|v| <= 2**(p-1) q``, so each is exact in ``dtype`` and so is every
    difference of two of them: ``x - max(x)`` is exact, so the measured error is
    xent's own and not that of a rounded shift."""
    v = np.asarray(values, dtype=np.float64)
    big = float(np.max(np.abs(v))) if v.size else 0.0
    if big == 0.0:
        return v.astype(dtype)
    p, _ = _precision(dtype)
    q = 2.0 ** (math.ceil(math.log2(big)) - (p - 1))
    out = np.round(v / q) * q + 0.0            # + 0.0: no -0.0
    assert np.all(out.astype(dtype).astype(np.float64) == out)
    return out.astype(dtype)


class Row:
    """One test row: logits, a class index and its kind."""

    def __init__(self, kind, gap, x, y, origin=""):
        self.kind, self.gap, self.x, self.y = kind, gap, x, y
        self.origin = origin      # how to rebuild it, e.g. "softmax_rows(float64, 10)[3]"

    @property
    def C(self):
        return self.x.shape[0]

    def describe(self):
        x = self.x
        m = int(np.argmax(x))
        return (f"{self.kind} row, C={self.C}, gap={self.gap:g}, y={self.y}, "
                f"x[y]={x[self.y]!r}, max x[{m}]={x[m]!r}, min={x.min()!r}, "
                f"ties at max={int(np.sum(x == x[m]))}"
                + (f", x={x.tolist()!r}" if self.C <= 10 else "")
                + (f" [tests/_exact.py: {self.origin}]" if self.origin else ""))


def _make_row(rng, kind, gap, C, dtype, offset, max_at_end=False):
    """Logits of one row of the given kind (values before the dyadic rounding)."""
    if kind == "uniform":
        v = np.zeros(C)
        y = int(rng.integers(C))
    elif kind == "ties":
        k = C if gap == 0.0 else max(2, min(C, int(rng.integers(2, 6))))
        v = -gap * rng.uniform(0.5, 1.0, C)
        top = rng.choice(C, size=k, replace=False)
        v[top] = 0.0
        # the target at a tied max, or elsewhere
        y = int(top[0]) if rng.random() < 0.5 or k == C else int(rng.choice(np.setdiff1d(np.arange(C), top)))
    elif kind == "confident-right":
        # the target is the max, every other class at least `gap` below it
        v = -gap - rng.uniform(0.0, 1.0, C)
        y = C - 1 if max_at_end else int(rng.integers(C))
        v[y] = 0.0
    elif kind == "confident-wrong":
        # the target `gap` below a max; the rest in between
        v = -rng.uniform(0.0, 1.0, C)
        y = int(rng.integers(C))
        v[y] = -gap
        if C > 1:
            v[(y + 1) % C] = 0.0
    elif kind == "random":
        v = -gap * rng.uniform(0.0, 1.0, C)
        if max_at_end:
            # a max that keeps growing along the row: every block of a
            # streaming (online) max/sum has to rescale what came before
            v = -gap * np.linspace(1.0, 0.0, C) * rng.uniform(0.9, 1.0, C)
        y = int(rng.integers(C))
    else:
        raise ValueError(kind)
    return dyadic(v + offset, dtype), y


def _offsets(rng):
    # shifts that must not matter: 0, a negative and a positive one (the
    # dyadic rounding keeps x - max(x) exact at any of them)
    return float(rng.choice([0.0, -1000.5, 37.25, 3000.0]))


def softmax_rows(dtype, C, seed=0):
    """The rows of every kind and gap for one class count (small C: several
    draws per kind and gap)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, C, dtype.itemsize])
    draws = 6 if C <= 10 else 1
    rows = []
    for kind in ROW_KINDS:
        gaps = (0.0,) if kind == "uniform" else GAPS[1:]
        if C == 1 and kind != "uniform":
            continue                      # one class: only one kind of row
        for gap in gaps:
            for _ in range(draws):
                x, y = _make_row(rng, kind, gap, C, dtype, _offsets(rng))
                origin = f"softmax_rows(np.{dtype.name}, {C}, seed={seed})[{len(rows)}]"
                rows.append(Row(kind, gap, x, y, origin))
    return rows


def big_rows(dtype, full=False, seed=0):
    """Rows with C = 128256.

    The quick set is one row with the max moving to the end (every block of a
    streaming max/sum merge rescales what came before), values in [-20, 0] on
    a grid of 2**-8: exact in both dtypes (the same row for each, so one
    oracle) and about 5000 distinct values, which keeps the pure-Python
    oracle to a fraction of a second.  The full set adds one row of each kind
    with values at the dtype's full precision."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, BIG_C])
    v = -20.0 * np.linspace(1.0, 0.0, BIG_C) * rng.uniform(0.9, 1.0, BIG_C)
    x = (np.round(v * 256) / 256 + 0.0).astype(dtype)
    rows = [Row("random", 20.0, x, int(rng.integers(BIG_C)), f"big_rows(np.{dtype.name})[0]")]
    if full:
        rng = np.random.default_rng([seed, BIG_C, dtype.itemsize])
        for kind, gap in (("uniform", 0.0), ("ties", 10.0), ("confident-right", 30.0),
                          ("confident-wrong", 1e4), ("random", 1e4)):
            x, y = _make_row(rng, kind, gap, BIG_C, dtype, _offsets(rng), max_at_end=True)
            rows.append(Row(kind, gap, x, y, f"big_rows(np.{dtype.name}, full=True)[{len(rows)}]"))
    return rows


def targets(kind, row, dtype, rng):
    """Probability targets of a kind for a row: one-hot at its label,
    label-smoothed (0.9 one-hot + 0.1 / C, rounded to dtype), or positive
    values that do not sum to 1 (dyadic, summing to about 0.3 or 2.5)."""
    C = row.C
    if kind == "one-hot":
        t = np.zeros(C)
        t[row.y] = 1.0
    elif kind == "smoothed":
        t = np.full(C, 0.1 / C)
        t[row.y] += 0.9
    elif kind == "unnormalised":
        t = rng.uniform(0.0, 1.0, C)
        t *= rng.choice([0.3, 2.5]) / t.sum()
        t = dyadic(t, dtype).astype(np.float64)
    else:
        raise ValueError(kind)
    return t.astype(dtype)


def bce_grid(dtype):
    """(x, t) of the BCE stratum: x in 0, +-logspace(-10, 20) (4 points per
    decade), each against the targets 0, 0.3, 1 (as ``dtype`` values)."""
    mags = np.logspace(-10, 20, 121)
    x = np.concatenate([-mags[::-1], [0.0], mags]).astype(dtype)
    t = np.array(BCE_TARGETS, dtype=dtype)
    return np.repeat(x[None, :], t.size, axis=0), np.repeat(t[:, None], x.size, axis=1)


# --------------------------------------------------------------------------
# measurement: run a kernel of xent on the strata, compare with the oracle
# --------------------------------------------------------------------------

#: The accuracy bounds: ulps of the exact value (loss, gradient, outputs)...
ULP_BOUND = {np.dtype(np.float32): 8.0, np.dtype(np.float64): 4.0}
#: ... and, for BCE gradients (which cancel near sigmoid(x) = t), machine
#: epsilons, absolute.
EPS_BOUND = ULP_BOUND
LABEL_SMOOTHING = 0.1

#: Kernels whose gradient is Q softmax - q with a target spread over many
#: classes (soft or smoothed): it cancels where the softmax meets the target,
#: as BCE's sigmoid(x) - t does, so -- like BCE's -- it is held to
#: an absolute bound: eps times the row's target mass Q = sum_c q_c (the
#: gradient's own scale; Q = 1 for normalised targets).  Documented in the
#: README's accuracy section.
SOFT_GRAD_KERNELS = ("ce-index-smoothing", "ce-prob-smoothed", "ce-prob-unnormalised")

#: Kernels of the softmax family, each measured on the softmax strata.
SOFTMAX_KERNELS = (
    "ce-index",               # softmax_cross_entropy, class indices
    "ce-index-smoothing",     # ... with label_smoothing=0.1
    "ce-prob-one-hot",        # ... with probabilities: one-hot targets
    "ce-prob-smoothed",       # ... 0.9 one-hot + 0.1 / C
    "ce-prob-unnormalised",   # ... positive, not summing to 1
    "logsumexp",
    "log_softmax",
    "softmax",
)


def _prob_targets(kernel, row, dtype):
    kind = kernel[len("ce-prob-"):]
    rng = np.random.default_rng([row.C, row.y, int(row.gap * 1024) % 2**31])
    return targets(kind, row, dtype, rng)


def run_softmax_kernel(kernel, dtype, rows):
    """xent's results for a batch of rows of one C: (values, grad or None).

    Per-row losses come from ``reduction="none"``, gradients from
    ``_with_grad(..., reduction="sum")`` (the unscaled per-row gradient)."""
    import xent

    X = np.stack([r.x for r in rows]).astype(dtype)
    y = np.array([r.y for r in rows], dtype=np.int64)
    if kernel in ("logsumexp", "log_softmax", "softmax"):
        return getattr(xent, kernel)(X), None
    kw = {}
    if kernel == "ce-index":
        target = y
    elif kernel == "ce-index-smoothing":
        target, kw = y, {"label_smoothing": LABEL_SMOOTHING}
    else:
        target = np.stack([_prob_targets(kernel, r, dtype) for r in rows])
    loss = xent.softmax_cross_entropy(X, target, reduction="none", **kw)
    _, grad = xent.softmax_cross_entropy_with_grad(X, target, reduction="sum", **kw)
    return loss, grad


def exact_softmax_kernel(kernel, row):
    """The oracle's (values, grad or None) for one row (cached on the row)."""
    cache = row.__dict__.setdefault("_exact", {})
    if kernel not in cache:
        er = exact_row(row.x)
        if kernel == "logsumexp":
            res = er.logsumexp(), None
        elif kernel == "log_softmax":
            res = er.log_softmax(), None
        elif kernel == "softmax":
            res = er.softmax(), None
        elif kernel == "ce-index":
            res = er.ce_index(row.y)
        elif kernel == "ce-index-smoothing":
            onehot = np.zeros(row.C)
            onehot[row.y] = 1.0
            res = er.ce_prob(onehot, LABEL_SMOOTHING)
        else:
            res = er.ce_prob(_prob_targets(kernel, row, row.x.dtype))
        cache[kernel] = res
    return cache[kernel]


class Measured:
    """Errors of one kernel's quantity (loss, value or grad) over some rows."""

    def __init__(self, kernel, dtype, quantity, unit):
        self.kernel, self.dtype, self.quantity, self.unit = kernel, np.dtype(dtype), quantity, unit
        self.items = []     # (row, errors, got, exact)

    @property
    def bound(self):
        return (EPS_BOUND if self.unit == "eps" else ULP_BOUND)[self.dtype]

    def add(self, row, errors, got, exact):
        self.items.append((row, np.asarray(errors), np.asarray(got), exact))

    def errors(self, select=None):
        errs = [e.ravel() for r, e, _, _ in self.items if select is None or select(r)]
        return np.concatenate(errs) if errs else np.empty(0)

    def worst(self):
        """(error, row, flat index, got, exact) of the worst entry."""
        best = None
        for row, err, got, exact in self.items:
            if err.size:
                i = int(np.argmax(err))
                if best is None or err.flat[i] > best[0]:
                    best = (float(err.flat[i]), row, i, got.flat[i], exact)
        return best

    def failures(self):
        return int(np.sum(self.errors() > self.bound))

    def report(self):
        """A precise account of the worst case, for assertion messages."""
        w = self.worst()
        if w is None:
            return f"{self.kernel} {self.dtype}: nothing measured"
        err, row, i, got, exact = w
        where = f"entry {i} of the row" if exact.hi.size > 1 else "the row's value"
        with mpmath.workdps(25):
            ex_s = mpmath.nstr(exact.value(i), 20)
        n_bad, n_all = self.failures(), self.errors().size
        target = ""
        if self.kernel.startswith("ce-prob-") and isinstance(row, Row):
            t = _prob_targets(self.kernel, row, row.x.dtype)
            target = f"; target {t.tolist()!r}" if row.C <= 10 else f"; target t[{i}]={t[i]!r}"
        return (f"{self.kernel} {self.dtype} {self.quantity}: {n_bad} of {n_all} entries over "
                f"{self.bound:g} {self.unit}; worst {err:.4g} {self.unit} at {where}: got "
                f"{got!r}, exact {ex_s}; input: {row.describe()}{target}")


def measure_softmax(kernel, dtype, rows):
    """Measure one softmax-family kernel of xent on rows of one C against the
    oracle: a dict quantity -> Measured (ulps)."""
    dtype = np.dtype(dtype)
    values, grad = run_softmax_kernel(kernel, dtype, rows)
    first = "loss" if kernel.startswith("ce-") else "value"
    out = {first: Measured(kernel, dtype, first, "ulp")}
    soft = kernel in SOFT_GRAD_KERNELS
    if grad is not None:
        out["grad"] = Measured(kernel, dtype, "grad (absolute, per unit of target mass)" if soft
                               else "grad", "eps" if soft else "ulp")
    for i, row in enumerate(rows):
        ex_val, ex_grad = exact_softmax_kernel(kernel, row)
        got = values[i]
        out[first].add(row, ulp_errors(got, ex_val, dtype), got, ex_val)
        if grad is not None and soft:
            mass = 1.0 if kernel == "ce-index-smoothing" else float(
                np.sum(_prob_targets(kernel, row, dtype), dtype=np.float64))
            out["grad"].add(row, abs_errors_eps(grad[i], ex_grad, dtype) / mass, grad[i], ex_grad)
        elif grad is not None:
            out["grad"].add(row, ulp_errors(grad[i], ex_grad, dtype), grad[i], ex_grad)
    return out


class BceRow:
    """A row of the BCE grid: one target value against every x."""

    def __init__(self, x, t):
        self.x, self.t = x, t
        self.kind = f"t={float(t[0]):.3g}"

    def describe(self):
        return f"BCE, target {float(self.t[0])!r}, x from the grid {self.x[:1]!r}...{self.x[-1:]!r}"


def measure_bce(dtype):
    """Sigmoid BCE on the grid: loss in ulps, gradient in eps (absolute, the
    bound) and in ulps (informative; for the hard targets t in {0, 1} the
    gradient has no cancellation)."""
    import xent

    dtype = np.dtype(dtype)
    x, t = bce_grid(dtype)
    loss = xent.sigmoid_binary_cross_entropy(x, t, reduction="none")
    _, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="sum")
    ex_loss, ex_grad = _bce_exact(x.tobytes(), t.tobytes(), dtype.str, x.shape)
    out = {"loss": Measured("sigmoid-bce", dtype, "loss", "ulp"),
           "grad": Measured("sigmoid-bce", dtype, "grad", "eps"),
           "grad-ulp": Measured("sigmoid-bce", dtype, "grad", "ulp")}
    for i in range(x.shape[0]):
        row = BceRow(x[i], t[i])
        el, eg = ex_loss.row(i), ex_grad.row(i)
        out["loss"].add(row, ulp_errors(loss[i], el, dtype), loss[i], el)
        out["grad"].add(row, abs_errors_eps(grad[i], eg, dtype), grad[i], eg)
        out["grad-ulp"].add(row, ulp_errors(grad[i], eg, dtype), grad[i], eg)
    return out


@lru_cache(maxsize=8)
def _bce_exact(xb, tb, dtype_str, shape):
    x = np.frombuffer(xb, dtype=dtype_str).reshape(shape)
    t = np.frombuffer(tb, dtype=dtype_str).reshape(shape)
    return bce(x, t)


# ==========================================================================
# the newer row operations: token statistics, temperature / softcap / z-loss
# on softmax cross-entropy, sigmoid and softmax focal losses
# ==========================================================================
#
# The same oracle, extended.  What is new:
#
# * ``ExactRow.entropy()``: ``sum_c p_c (log S - d_c)``, every term >= 0, so
#   a near-one-hot row's tiny entropy keeps its relative precision;
# * ``MappedRow``: a row of logits that are a function of the float inputs
#   (the capped logits ``c tanh(z / c)``), computed at the row's precision
#   (and again at any higher one the guards ask for);
# * ``ExactRow.ce_general(t, zeta)``: loss and gradient of cross-entropy
#   plus a z-loss ``zeta lse^2``, on the distinct (logit, target) pairs as
#   ``ce_prob``; the gradient ``(Q_{-j} + 2 zeta lse) E_j - q_j R_j`` over
#   ``S`` is guarded, and its two parts (cross-entropy and z-loss) are
#   returned too: where they have opposite signs the entry is a difference;
# * ``ExactRow.focal(t, gamma)``: Keras's categorical focal loss
#   ``-sum_c t_c (1 - p_c)^gamma log p_c`` and its gradient
#   ``sum_c t_c K_c (softmax - onehot_c)``, ``K_c = (1 - p_c)^gamma
#   (1 + gamma p_c rho_c)``, ``rho_c = -log p_c / (1 - p_c)``;
# * ``sigmoid_focal(x, t, alpha, gammas)``: torchvision's focal loss,
#   elementwise.

#: The bounds of the focal losses: float64 is held to 64 ulp (and 64 eps for
#: the gradients bounded absolutely), because the function itself amplifies
#: the rounding of working-precision intermediates: ``(1 - p)^gamma`` carries
#: ``gamma`` times the relative error of ``1 - p``.  float32 (computed in
#: double) stays at 8.
FOCAL_BOUND = {np.dtype(np.float32): 8.0, np.dtype(np.float64): 64.0}
#: The propagated rounding of the capped logits ``z' = c tanh(z / c)``: each
#: counted as this many ulps of the exact ``z'_c``: the bound that
#: ``test_capped_logits_within_bound`` holds xent's capped logits to (a
#: correctly rounded tanh would need 0.5; xent's, from exp, measures up to
#: 3.3 ulp in float32 and 3.2 in float64).
SOFTCAP_ZP_ULPS = 3.5
#: ... and the allowance of a capped logit rounded in working precision with
#: a tanh of about 2 ulp (``test_softcap_grad_within_two_ulp_capped_logits``)
SOFTCAP_ZP_ULPS_TIGHT = 2.0

TEMPERATURES = (0.5, 2.0, 0.25)       # powers of two: x / T = x * (1 / T) is exact
SOFTCAPS = (30.0, 50.0)               # Gemma 2's final-logit and attention caps
#: z-loss coefficients, exact in float32 (1e-4: PaLM's)
Z_LOSSES = (float(np.float32(1e-4)), 0.25)
FOCAL_GAMMAS = (0.0, 0.5, 2.0, 3.0)
#: the sigmoid focal loss's targets (its logits: ``focal_grid``)
FOCAL_TARGETS = (0.0, 0.3, 1.0)


class MappedRow(ExactRow):
    """ExactRow of the logits ``f(x)`` for float ``x`` and a strictly
    increasing ``f`` (``f(x, prec)`` -> raw): ``f`` keeps the order and the
    ties of ``x``, so the distinct values are those of ``x``.  ``f`` is
    evaluated at the row's precision (plus a margin) and again at any higher
    precision the guards ask for."""

    def __init__(self, x, f, prec=PREC):
        self.f = f
        super().__init__(x, prec)

    def _raw_values(self, values, prec):
        return [self.f(_raw(v), prec + 32) for v in values]

    def at(self, prec):
        if prec <= self.prec:
            return self
        if prec not in self._higher:
            self._higher[prec] = MappedRow(self.x, self.f, prec)
        return self._higher[prec]


def softcap_map(cap, temperature=1.0):
    """``f`` of a MappedRow: ``x -> cap tanh((x / T) / cap)``, with ``x / T``
    exact (a power-of-two temperature)."""
    def f(r, prec):
        with mpmath.workprec(prec):
            z = _mpf(r) / mpmath.mpf(temperature)
            return (mpmath.mpf(cap) * mpmath.tanh(z / mpmath.mpf(cap)))._mpf_
    return f


def _ordered_sum(parts, prec):
    return libmp.mpf_sum(parts, prec, RN) if parts else ZERO


def _entropy(self):
    """Exact entropy of the row's softmax (a 1-element Exact):
    ``sum_c p_c (log S - d_c)``, every term >= 0."""
    counts = np.bincount(self.inv).tolist()
    terms = [libmp.mpf_mul(libmp.mpf_mul(e, libmp.from_int(n)),
                           libmp.mpf_sub(self.log_S, d), self.prec, RN)
             for e, n, d in zip(self.Eu, counts, self.du)]
    return Exact([libmp.mpf_mul(_ordered_sum(terms, self.prec), self.inv_S, self.prec, RN)])


def _log_softmax_at(self, y):
    """Exact ``log_softmax`` at ``y`` (a 1-element Exact)."""
    return Exact([libmp.mpf_sub(self.d(y), self.log_S, self.prec, RN)])


def _pairs(self, t64):
    """The distinct (logit, target) pairs of a row: (representative entries,
    each entry's pair, the pairs' counts)."""
    keys = np.stack([self.inv, t64.view(np.int64)], axis=1)
    _, first, pair_of, count = np.unique(keys, axis=0, return_index=True,
                                         return_inverse=True, return_counts=True)
    return first.tolist(), pair_of.ravel(), count.tolist()


def _ce_general(self, t, zeta=0.0):
    """Exact cross-entropy plus z-loss for float targets ``t`` (no
    smoothing): ``sum_c t_c (log S - d_c) + zeta lse^2`` and its gradient
    ``Q p - t + 2 zeta lse p``, each entry computed as
    ``((Q_{-j} + 2 zeta lse) E_j - t_j R_j) / S`` (guarded).  Returns
    (loss, grad, parts) with ``parts`` a float64 array (2, C) of the
    gradient's cross-entropy and z-loss parts (for judging cancellation)."""
    t64 = np.asarray(t, dtype=np.float64).ravel()
    t_sum = libmp.mpf_sum([_raw(v) for v in t64.tolist()])              # exact
    reps, pair_of, count = _pairs(self, t64)
    tr = [_raw(t64[j]) for j in reps]
    z_r = _raw(zeta)

    def compute(prec):
        r = self.at(prec)
        lse = libmp.mpf_add(r.m, r.log_S, prec, RN)
        lost = _lost_bits(r.m, libmp.mpf_neg(r.log_S), lse) if zeta else 0
        loss = _ordered_sum([libmp.mpf_mul(libmp.mpf_mul(q, libmp.from_int(n)),
                                           libmp.mpf_sub(r.log_S, r.d(j)), prec, RN)
                             for q, n, j in zip(tr, count, reps) if q[1]], prec)
        zg = ZERO
        if zeta:
            loss = libmp.mpf_add(loss, libmp.mpf_mul(z_r, libmp.mpf_mul(lse, lse), prec, RN),
                                 prec, RN)
            zg = libmp.mpf_mul(libmp.mpf_shift(z_r, 1), lse, prec, RN)    # 2 zeta lse
        grad, ce_part, z_part = [], [], []
        for q, j in zip(tr, reps):
            q_minus = libmp.mpf_sub(t_sum, q)                               # exact
            coef = libmp.mpf_add(q_minus, zg, prec, RN)
            lost = max(lost, _lost_bits(q_minus, libmp.mpf_neg(zg), coef))
            a = libmp.mpf_mul(coef, r.E(j), prec, RN)
            b = libmp.mpf_mul(q, r.R(j), prec, RN) if q[1] else ZERO
            num = libmp.mpf_sub(a, b, prec, RN)
            lost = max(lost, _lost_bits(a, b, num))
            grad.append(libmp.mpf_mul(num, r.inv_S, prec, RN))
            if zeta:
                ce = libmp.mpf_mul(libmp.mpf_sub(libmp.mpf_mul(q_minus, r.E(j), prec, RN), b,
                                                 prec, RN), r.inv_S, prec, RN)
                ce_part.append(libmp.to_float(ce, rnd=RN))
                z_part.append(libmp.to_float(libmp.mpf_mul(zg, libmp.mpf_mul(r.E(j), r.inv_S,
                                                                            prec, RN), prec, RN),
                                             rnd=RN))
        return (loss, grad, ce_part, z_part), lost

    loss, grad, ce_part, z_part = _with_guard(compute)
    parts = None
    if zeta:
        parts = np.array([ce_part, z_part], dtype=np.float64)[:, pair_of]
    return Exact([loss]), Exact(grad).take(pair_of), parts


def _focal(self, t, gamma):
    """Exact softmax focal loss ``-sum_c t_c (1 - p_c)^gamma log p_c`` for
    float targets ``t`` (one-hot for class indices) and its gradient
    ``M p_j - t_j K_j`` (``M = sum_c t_c K_c``), each entry as
    ``((M - t_j K_j) E_j - t_j K_j R_j) / S`` (guarded).  Returns (loss, grad,
    M as a float)."""
    t64 = np.asarray(t, dtype=np.float64).ravel()
    reps, pair_of, count = _pairs(self, t64)
    tr = [_raw(t64[j]) for j in reps]
    g = mpmath.mpf(gamma)

    def K_and_term(r, j, prec):
        """(K_j, (1 - p_j)^gamma (-log p_j)) of entry j, raw."""
        R, L = r.R(j), libmp.mpf_sub(r.log_S, r.d(j))     # 1 - p = R / S; -log p = L >= 0
        with mpmath.workprec(prec):
            if gamma == 0:
                mod = mpmath.mpf(1)
            elif _is_zero(R):
                mod = mpmath.mpf(0)
            else:
                mod = mpmath.power(_mpf(R) * _mpf(r.inv_S), g)
            if gamma == 0:
                K = mod
            elif _is_zero(R):
                K = mpmath.mpf(0)
            else:   # 1 + gamma p rho = 1 + gamma E_j L / R
                K = mod * (1 + g * _mpf(r.E(j)) * _mpf(L) / _mpf(R))
            term = mod * _mpf(L)
        return K._mpf_, term._mpf_

    def compute(prec):
        r = self.at(prec)
        Ks, loss_terms = [], []
        for q, n, j in zip(tr, count, reps):
            if q[1]:
                K, term = K_and_term(r, j, prec)
                Ks.append(libmp.mpf_mul(q, K, prec, RN))
                loss_terms.append(libmp.mpf_mul(libmp.mpf_mul(q, libmp.from_int(n)), term,
                                                prec, RN))
            else:
                Ks.append(ZERO)
        nK = [libmp.mpf_mul(k, libmp.from_int(n)) for k, n in zip(Ks, count)]
        M = _ordered_sum(nK, prec)
        half = libmp.mpf_shift(M, -1)
        loss = _ordered_sum(loss_terms, prec)
        grad, lost = [], 0
        for i, (tk, j) in enumerate(zip(Ks, reps)):
            # M_{-j} = sum of the others' t K: M - t_j K_j loses at most a bit
            # unless t_j K_j > M / 2 (one entry at most): there, summed directly
            if libmp.mpf_cmp(tk, half) > 0:
                m_minus = _ordered_sum(nK[:i] + nK[i + 1:] + [libmp.mpf_mul(
                    tk, libmp.from_int(count[i] - 1))], prec)
            else:
                m_minus = libmp.mpf_sub(M, tk, prec, RN)
            a = libmp.mpf_mul(m_minus, r.E(j), prec, RN)
            b = libmp.mpf_mul(tk, r.R(j), prec, RN) if tk[1] else ZERO
            num = libmp.mpf_sub(a, b, prec, RN)
            lost = max(lost, _lost_bits(a, b, num))
            grad.append(libmp.mpf_mul(num, r.inv_S, prec, RN))
        return (loss, grad, M), lost

    loss, grad, M = _with_guard(compute)
    return Exact([loss]), Exact(grad).take(pair_of), libmp.to_float(M, rnd=RN)


ExactRow.entropy = _entropy
ExactRow.log_softmax_at = _log_softmax_at
ExactRow.ce_general = _ce_general
ExactRow.focal = _focal


def shift_exact(e, k):
    """``e * 2**k`` (an exact scaling), as a new Exact."""
    out = Exact([])
    out.hi, out.lo = np.ldexp(e.hi, k), np.ldexp(e.lo, k)
    out.small = {i: libmp.mpf_shift(r, k) for i, r in e.small.items()}
    if k < 0:               # entries that fall below 2**-1000: keep them raw
        fell = np.nonzero((np.abs(out.hi) < _SMALL) & (out.hi != 0))[0]
        for i in fell.tolist():
            if i not in out.small:
                raw = libmp.mpf_add(_raw(e.hi.flat[i]), _raw(e.lo.flat[i]))
                out.small[i] = libmp.mpf_shift(raw, k)
    for i, r in out.small.items():
        out.hi.flat[i] = libmp.to_float(r, rnd=RN)
        out.lo.flat[i] = libmp.to_float(libmp.mpf_sub(r, _raw(out.hi.flat[i])), rnd=RN) \
            if out.hi.flat[i] else 0.0
    return out


def scale_exact(e, factors, prec=PREC):
    """``e * factors`` entrywise, factors raw mpf (no cancellation: a
    relative error of 2**-100 or so)."""
    vals = [libmp.mpf_mul(libmp.mpf_add(_raw(h), _raw(lo)) if i not in e.small else e.small[i],
                          f, prec, RN)
            for i, (h, lo, f) in enumerate(zip(e.hi.ravel().tolist(), e.lo.ravel().tolist(),
                                                factors))]
    return Exact(vals, e.shape)


def ulp_of(values, dtype):
    """The ulp of float64 ``values`` in ``dtype`` (floored at the ulp of the
    smallest normal number)."""
    p, minexp = _precision(dtype)
    _, e = np.frexp(np.abs(np.asarray(values, dtype=np.float64)))
    e = np.maximum(np.where(values == 0, minexp + 1, e), minexp + 1)
    return np.ldexp(1.0, e - p)


# --------------------------------------------------------------------------
# sigmoid focal loss, elementwise
# --------------------------------------------------------------------------

def sigmoid_focal(x, t, alpha, gammas):
    """Exact (loss, grad, scale) of torchvision's sigmoid focal loss for each
    gamma in ``gammas``: dicts gamma -> Exact (the shape of ``x``), and the
    gradient's scale ``a_t (1 - p_t)^gamma (|p - t| + gamma ce r |1 - 2t|)``
    (float64; the sum of the magnitudes of its parts).

    ``p = sigmoid(x)``, ``ce = t softplus(-x) + (1 - t) softplus(x)``,
    ``1 - p_t = p (1 - t) + (1 - p) t``, ``a_t = alpha t + (1 - alpha)(1 - t)``
    (1 when alpha is None); loss ``a_t ce (1 - p_t)^gamma``, gradient
    ``a_t (1 - p_t)^gamma [(p - t) + gamma ce r (1 - 2t)]`` with
    ``r = p (1 - p) / (1 - p_t)``.  The bracket (a difference for soft
    targets) is guarded."""
    x, t = np.asarray(x), np.asarray(t)
    out = {g: ([], [], []) for g in gammas}
    for xv, tv in zip(x.ravel().tolist(), t.ravel().tolist()):
        xm, tm = _mpf(_raw(xv)), _mpf(_raw(tv))

        def compute(prec):
            with mpmath.workprec(prec):
                a = mpmath.fsub(1, tm, exact=True)
                e = mpmath.exp(-abs(xm))
                lg = mpmath.log1p(e)
                sp, sn = max(xm, 0) + lg, max(-xm, 0) + lg     # softplus(x), softplus(-x)
                big, small = 1 / (1 + e), e / (1 + e)
                p, pn = (big, small) if xm >= 0 else (small, big)   # p, 1 - p
                ce = a * sp + tm * sn
                q = p * a + pn * tm                              # 1 - p_t > 0
                r = p * pn / q
                at = 1 if alpha is None else (alpha * tm + (1 - mpmath.mpf(alpha)) * a)
                # p - t: -(1 - p) and p for the hard targets, no cancellation
                d = -pn if tv == 1.0 else (p if tv == 0.0 else p - tm)
                lost = _lost_bits(p._mpf_, tm._mpf_, d._mpf_) if tv not in (0.0, 1.0) else 0
                res = {}
                for g in gammas:
                    mod = mpmath.mpf(1) if g == 0 else mpmath.power(q, g)
                    second = g * ce * r * (1 - 2 * tm)
                    br = d + second
                    lost = max(lost, _lost_bits(d._mpf_, (second * -1)._mpf_, br._mpf_))
                    res[g] = ((at * ce * mod)._mpf_, (at * mod * br)._mpf_,
                              float(abs(at * mod) * (abs(d) + abs(second))))
            return res, lost

        res = _with_guard(compute)
        for g in gammas:
            out[g][0].append(res[g][0])
            out[g][1].append(res[g][1])
            out[g][2].append(res[g][2])
    return ({g: Exact(v[0], x.shape) for g, v in out.items()},
            {g: Exact(v[1], x.shape) for g, v in out.items()},
            {g: np.array(v[2]).reshape(x.shape) for g, v in out.items()})


def focal_grid(dtype):
    """(x, t) of the sigmoid focal stratum: x in 0, +-logspace(-10, 3) (4
    points a decade) and +-100, 150, ..., 1000, each against the targets 0,
    0.3, 1."""
    mags = np.union1d(np.logspace(-10, 3, 53), np.arange(100.0, 1001.0, 50.0))
    x = np.concatenate([-mags[::-1], [0.0], mags]).astype(dtype)
    t = np.array(FOCAL_TARGETS, dtype=dtype)
    return np.repeat(x[None, :], t.size, axis=0), np.repeat(t[:, None], x.size, axis=1)


# --------------------------------------------------------------------------
# strata of the new row operations
# --------------------------------------------------------------------------

def near_one_hot_rows(dtype, C, seed=0):
    """Confidently right rows whose entropy is tiny: every other class
    ``gap`` below the max, gaps from 16 to 740 (the entropy from ~1e-6 down
    to below the smallest normal number), the target at the max."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, C, dtype.itemsize, 7])
    rows = []
    for gap in np.geomspace(16.0, 740.0, 12).tolist():
        v = -gap - rng.uniform(0.0, 1.0, C)
        y = int(rng.integers(C))
        v[y] = 0.0
        x = dyadic(v + _offsets(rng), dtype)
        rows.append(Row("near-one-hot", gap, x, y,
                        f"near_one_hot_rows(np.{dtype.name}, {C}, seed={seed})[{len(rows)}]"))
    return rows


def masked_rows(dtype, C, seed=0):
    """The softmax rows of ``C`` classes with about a third of the entries
    (never the target, never all of the row) set to ``-inf``, a mask."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, C, dtype.itemsize, 11])
    rows = []
    for row in softmax_rows(dtype, C, seed):
        x = row.x.copy()
        mask = rng.random(C) < 1 / 3
        mask[row.y] = False
        x[mask] = -np.inf
        r = Row(row.kind, row.gap, x, row.y, f"masked_rows(np.{dtype.name}, {C}, seed={seed})"
                                             f"[{len(rows)}]")
        rows.append(r)
    return rows


def spread_rows(dtype, C, seed=0, scale=90.0):
    """Random rows spread over [-scale, scale] (the range of a soft cap, both
    of its branches: |z / c| below and above 1/4), one a draw of each of 12."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, C, dtype.itemsize, 13])
    rows = []
    for s in np.geomspace(0.25, scale, 12).tolist():
        x = dyadic(rng.uniform(-s, s, C), dtype)
        rows.append(Row("spread", s, x, int(rng.integers(C)),
                        f"spread_rows(np.{dtype.name}, {C}, seed={seed})[{len(rows)}]"))
    return rows


def capped_logit_grid(dtype, cap):
    """Logits whose capped value ``z' = c tanh(x / c)`` is far enough from 0
    that the loss of the row ``[x, 0]`` at the other class,
    ``|z'| + log1p(exp(-|z'|))``, is ``|z'|`` plus less than 1e-7 of it:
    |z'| from 17 up to the cap (x up to 30 c), both signs: 60 points even in
    z', 12 in the saturation, 300 at random in [-3c, 3c] and the worst
    found by denser scans (``CAPPED_WORST``)."""
    dtype = np.dtype(dtype)
    lo = 17.0
    zp = np.linspace(lo, cap * (1 - 1e-3), 60)
    u = np.arctanh(zp / cap)                    # x = c atanh(z' / c)
    mags = np.concatenate([cap * u, cap * np.geomspace(u[-1], 30.0, 12)])
    rng = np.random.default_rng([int(cap * 16), dtype.itemsize, 17])
    x_lo = cap * math.atanh(lo / cap) if lo < cap else 0.0
    rand = rng.uniform(x_lo, 3 * cap, 300) * rng.choice([-1.0, 1.0], 300)
    worst = np.array(CAPPED_WORST.get((dtype.name, cap), []))
    return np.concatenate([-mags[::-1], mags, rand, worst, -worst]).astype(dtype)


#: the worst capped logits that scans of 10^5 random logits found (and their
#: errors): added to the grid
CAPPED_WORST = {("float32", 50.0): [-30.5294],                 # 3.26 ulp
                ("float64", 50.0): [31.718070988139615]}       # 3.24 ulp


# --------------------------------------------------------------------------
# measurement of the new row operations
# --------------------------------------------------------------------------

class Judged(Measured):
    """Measured with its own bound (the focal losses' 64 ulp in float64) and
    a description of the row's parameters for the report."""

    def __init__(self, kernel, dtype, quantity, unit, bound=None):
        super().__init__(kernel, dtype, quantity, unit)
        self._bound = bound

    @property
    def bound(self):
        return self._bound if self._bound is not None else super().bound


class Case:
    """A row (or an element grid's row) with what else it was run with, for
    the reports."""

    def __init__(self, row, extra, params=None):
        self.row, self.extra = row, extra
        self.kind = row.kind
        self.params = params or {}

    def describe(self):
        return f"{self.extra}; {self.row.describe()}"


def judge(got, exact, dtype, unit="ulp", abs_scale=None, tol=None, soft=None):
    """Errors of ``got`` in units of the bound:

    * ``"ulp"``: ulps of the exact value;
    * ``"eps"``: ``|got - exact| / (eps * abs_scale)`` (absolute; the scale
      floored at the smallest normal number, as ulps are);
    * ``"ulp|eps"``: ulps, except at the entries where ``soft`` is true (a
      difference of two parts), where the smaller of the two measures counts.

    ``tol`` (absolute, per entry) is an allowance subtracted from the error
    first: the propagated rounding of an intermediate (the capped logits)."""
    dtype = np.dtype(dtype)
    tol = None if tol is None else np.asarray(tol, dtype=np.float64).reshape(exact.shape)
    e_ulp = None
    if unit in ("ulp", "ulp|eps"):
        e_ulp = ulp_errors(got, exact, dtype)
        if tol is not None:
            e_ulp = np.maximum(0.0, e_ulp - np.ldexp(tol, -ulp_exponent(exact, dtype)))
        if unit == "ulp":
            return e_ulp
    info = np.finfo(dtype)
    scale = np.maximum(np.broadcast_to(np.asarray(abs_scale, dtype=np.float64), exact.shape),
                       float(info.tiny))
    e_abs = abs_errors_eps(got, exact, dtype)
    if tol is not None:
        e_abs = np.maximum(0.0, e_abs - tol / float(info.eps))
    e_abs = e_abs / scale
    if unit == "eps":
        return e_abs
    soft = np.broadcast_to(np.asarray(soft, dtype=bool), exact.shape)
    return np.where(soft, np.minimum(e_ulp, e_abs), e_ulp)


def has_subnormal_terms(row, temperature=1.0, amp=None):
    """Whether a term ``exp(z_c - max(z))`` of the row (``z = x / T``)
    falls below the smallest normal number of the row's dtype (subnormal, or
    0) while the exact term it contributes, ``amp`` times it, does not fall
    below half the smallest subnormal: where a term formed in working
    precision has lost relative precision before it is scaled up.  ``amp``:
    a number (the gradient's coefficient ``Q + 2 z_loss lse``), or None for
    the entropy's terms ``(m - z_c) exp(z_c - m)``."""
    return subnormal_term_count(row, temperature, amp) > 0


def subnormal_term_count(row, temperature=1.0, amp=None):
    """How many terms of the row ``has_subnormal_terms`` describes."""
    x = np.ldexp(row.x.astype(np.float64), -_pow2(temperature))
    x = x[np.isfinite(x)]
    info = np.finfo(row.x.dtype)
    p, minexp = _precision(row.x.dtype)
    d = np.max(x) - x                             # exact (dyadic)
    with np.errstate(divide="ignore"):
        log_amp = np.log(d) if amp is None else math.log(max(abs(amp), 1e-300))
    floor = (minexp - p) * math.log(2.0)          # log of half the smallest subnormal
    return int(np.sum((d > -math.log(float(info.tiny))) & (log_amp - d >= floor)))


def many_subnormal_terms(row, temperature=1.0):
    """Whether a sum over the row (the loss, logprob, the gradient's target
    entry) adds more than twice the bound's count of subnormal terms
    ``exp(z_c - m)``: each rounded by up to half the floor ulp, together
    they may exceed the bound."""
    return subnormal_term_count(row, temperature, 1.0) > 2 * ULP_BOUND[np.dtype(row.x.dtype)]


def zloss_coefficient(row, kind, temperature=1.0, z_loss=0.0):
    """``Q + 2 z_loss lse`` of a row (float), the factor of its softmax terms."""
    z = np.ldexp(row.x.astype(np.float64), -_pow2(temperature))
    m = np.max(z)
    lse = m + math.log(float(np.sum(np.exp(z - m))))
    Q = float(np.sum(extras_targets(kind, row, row.x.dtype), dtype=np.float64))
    return Q + 2 * z_loss * lse


def subnormal_terms_case(case):
    """Whether a measured case (token statistics or cross-entropy extras) is
    a row with terms ``exp(z_c - m)`` below the smallest normal number that
    the tests measure apart: for token statistics any (the entropy scales
    them by the gap), for cross-entropy more than twice the bound's count
    (the sums of the loss and the target entry) or, with a z-loss, any that
    its coefficient scales up (``tests/test_accuracy_extras.py``)."""
    p = case.params
    T = p.get("temperature", 1.0)
    if "kind" not in p:
        return has_subnormal_terms(case.row, T)
    if p.get("softcap"):
        return False
    if many_subnormal_terms(case.row, T):
        return True
    z = p.get("z_loss", 0.0)
    return bool(z) and has_subnormal_terms(case.row, T,
                                           zloss_coefficient(case.row, p["kind"], T, z))


def _row_cache(row):
    return row.__dict__.setdefault("_exact_extras", {})


def _pow2(T):
    k = math.log2(T)
    assert k == int(k), "temperatures must be powers of two (x / T exact)"
    return int(k)


# ---- token statistics ------------------------------------------------------

def exact_stats(row, temperature=1.0):
    """The oracle's (lse, entropy, logprob at the target) of a row, of
    ``x / T``; ``-inf`` entries (masks) left out."""
    key = ("stats", temperature)
    cache = _row_cache(row)
    if key not in cache:
        x = np.ldexp(row.x.astype(np.float64), -_pow2(temperature))
        keep = np.isfinite(x)
        er = exact_row(x[keep])
        y = int(np.sum(keep[:row.y]))
        cache[key] = (er.logsumexp(), er.entropy(), er.log_softmax_at(y))
    return cache[key]


def measure_token_stats(dtype, rows, temperature=1.0):
    """``xent.token_stats`` on rows of one C: {"lse", "entropy", "logprob":
    Judged} (ulps; the float32 / float64 bound)."""
    import xent

    dtype = np.dtype(dtype)
    X = np.stack([r.x for r in rows]).astype(dtype)
    y = np.array([r.y for r in rows], dtype=np.int64)
    st = xent.token_stats(X, y, temperature=temperature)
    extra = f"token_stats, temperature={temperature:g}"
    out = {q: Judged("token_stats", dtype, q, "ulp") for q in ("lse", "entropy", "logprob")}
    for i, row in enumerate(rows):
        case = Case(row, extra, dict(temperature=temperature))
        for q, ex_v in zip(("lse", "entropy", "logprob"), exact_stats(row, temperature)):
            got = getattr(st, q)[i]
            out[q].add(case, ulp_errors(got, ex_v, dtype), got, ex_v)
    return out


# ---- softmax cross-entropy with temperature, softcap, z-loss ---------------

#: target kinds of the extras: class indices, and probabilities
CE_TARGETS = ("index", "one-hot", "unnormalised")


def extras_targets(kind, row, dtype):
    """The float targets of a row (one-hot for class indices)."""
    if kind in ("index", "one-hot"):
        t = np.zeros(row.C, dtype=dtype)
        t[row.y] = 1
        return t
    rng = np.random.default_rng([row.C, row.y, int(row.gap * 1024) % 2**31, 5])
    return targets(kind, row, dtype, rng)


def _sech2_over_T(z, cap, temperature, prec=PREC):
    """sech^2(z / cap) / T for each float z (raw)."""
    out = {}
    with mpmath.workprec(prec):
        for v in np.unique(z).tolist():
            out[v] = (mpmath.sech(mpmath.mpf(v) / mpmath.mpf(cap)) ** 2
                      / mpmath.mpf(temperature))._mpf_
    return [out[v] for v in z.tolist()]


def exact_ce_extras(row, kind, temperature=1.0, softcap=None, z_loss=0.0, u_ulps=0.0,
                    zp_ulps=SOFTCAP_ZP_ULPS):
    """The oracle of ``softmax_cross_entropy(_with_grad)`` with the extras,
    for one row: a dict with ``loss``, ``grad`` (Exact), the gradient's
    judgement (``unit``, ``abs_scale``, ``soft``) and, with a softcap, the
    allowances ``loss_tol`` / ``grad_tol`` for the rounding of the capped
    logits (``SOFTCAP_ZP_ULPS`` ulps of each ``z'_c``, propagated to first
    order)."""
    key = ("ce", kind, temperature, softcap, z_loss, u_ulps, zp_ulps)
    cache = _row_cache(row)
    if key in cache:
        return cache[key]
    dtype = row.x.dtype
    z = np.ldexp(row.x.astype(np.float64), -_pow2(temperature))           # exact
    if softcap is None:
        er = exact_row(z)
    else:
        mkey = ("mapped", temperature, softcap)
        if mkey not in cache:
            cache[mkey] = MappedRow(z, softcap_map(softcap))
        er = cache[mkey]
    t = extras_targets(kind, row, dtype)
    loss, gz, parts = er.ce_general(t, z_loss)
    Q = float(np.sum(t, dtype=np.float64))
    lse = float(er.logsumexp().hi[0]) if (z_loss or softcap) else 0.0
    if softcap is None:
        chain = np.full(row.C, 2.0 ** -_pow2(temperature))
        grad = shift_exact(gz, -_pow2(temperature))
    else:
        factors = _sech2_over_T(z, softcap, temperature)
        chain = np.array([libmp.to_float(f, rnd=RN) for f in factors])
        grad = scale_exact(gz, factors)
    res = {"loss": loss, "grad": grad, "loss_tol": None, "grad_tol": None, "soft": None}
    mass = Q + 2.0 * z_loss * abs(lse)
    if kind in ("index", "one-hot"):
        if z_loss:
            # the cross-entropy and z-loss parts of opposite signs: a difference
            res["unit"] = "ulp|eps"
            res["soft"] = (parts[0] * parts[1]) < 0
            res["abs_scale"] = (np.abs(parts[0]) + np.abs(parts[1])) * chain
        else:
            res["unit"], res["abs_scale"] = "ulp", None
    else:
        res["unit"], res["abs_scale"] = "eps", mass * chain
    if softcap is not None:
        zp = np.array([libmp.to_float(er.values[i], rnd=RN) for i in er.inv.tolist()])
        dp = np.array([libmp.to_float(er.du[i], rnd=RN) for i in er.inv.tolist()])
        # z'_c (SOFTCAP_ZP_ULPS ulps), then z'_c - max(z') rounded (half an ulp)
        u = zp_ulps * ulp_of(zp, dtype) + 0.5 * ulp_of(dp, dtype) * (dp != 0)
        g = gz.hi                                   # d loss / d z'
        p = er.softmax().hi
        res["loss_tol"] = np.array([np.sum(np.abs(g) * u)])
        pu = float(np.sum(p * u))
        # 1 - p_j and sum_{c != j} p_c u_c, without cancellation where p_j > 1/2
        one_minus, others = 1.0 - p, pu - p * u
        for j in np.nonzero(p > 0.5)[0].tolist():
            one_minus[j] = libmp.to_float(libmp.mpf_mul(er.R(j), er.inv_S), rnd=RN)
            others[j] = float(np.sum(np.delete(p * u, j)))
        # d g_j / d z'_c = (Q + 2 zeta lse) p_j (delta_jc - p_c) + 2 zeta p_j p_c
        first = abs(Q + 2.0 * z_loss * lse) * p * (one_minus * u + others)
        res["grad_tol"] = chain * (first + 2.0 * z_loss * p * pu)
        if u_ulps:
            # the argument u = z / c of sech^2 formed in working precision:
            # d sech^2(u) / du = -2 tanh(u) sech^2(u)
            u = z / softcap
            res["grad_tol"] = res["grad_tol"] + (np.abs(g) * chain * 2.0 * np.abs(np.tanh(u))
                                                 * u_ulps * ulp_of(u, dtype))
    cache[key] = res
    return res


def extras_name(temperature=1.0, softcap=None, z_loss=0.0):
    parts = []
    if temperature != 1.0:
        parts.append(f"temperature={temperature:g}")
    if softcap is not None:
        parts.append(f"softcap={softcap:g}")
    if z_loss:
        parts.append(f"z_loss={z_loss:.4g}")
    return ", ".join(parts)


def measure_ce_extras(dtype, rows, kind, temperature=1.0, softcap=None, z_loss=0.0, u_ulps=0.0,
                      zp_ulps=SOFTCAP_ZP_ULPS):
    """``softmax_cross_entropy(_with_grad)`` with the extras on rows of one
    C: {"loss", "grad": Judged}."""
    import xent

    dtype = np.dtype(dtype)
    X = np.stack([r.x for r in rows]).astype(dtype)
    kw = dict(temperature=temperature, softcap=softcap, z_loss=z_loss)
    if kind == "index":
        target = np.array([r.y for r in rows], dtype=np.int64)
    else:
        target = np.stack([extras_targets(kind, r, dtype) for r in rows])
    loss = xent.softmax_cross_entropy(X, target, reduction="none", **kw)
    _, grad = xent.softmax_cross_entropy_with_grad(X, target, reduction="sum", **kw)
    name = f"ce-{kind} ({extras_name(**kw)})"
    tol_note = " beyond z' rounding" if softcap is not None else ""
    out = {"loss": Judged(name, dtype, "loss", "ulp" + tol_note), "grad": None}
    for i, row in enumerate(rows):
        ex_ = exact_ce_extras(row, kind, u_ulps=u_ulps, zp_ulps=zp_ulps, **kw)
        if kind == "index":
            t = f"class {row.y}"
        else:
            t = target[i].tolist() if row.C <= 10 else kind
        case = Case(row, f"softmax_cross_entropy {extras_name(**kw)}, target {t}",
                    dict(kind=kind, **kw))
        if out["grad"] is None:
            unit = {"ulp": "ulp", "eps": "eps per unit of gradient mass",
                    "ulp|eps": "ulp (eps of its parts where they cancel)"}[ex_["unit"]]
            out["grad"] = Judged(name, dtype, "grad", unit + tol_note)
        out["loss"].add(case, judge(loss[i], ex_["loss"], dtype, tol=ex_["loss_tol"]),
                        loss[i], ex_["loss"])
        out["grad"].add(case, judge(grad[i], ex_["grad"], dtype, ex_["unit"], ex_["abs_scale"],
                                    ex_["grad_tol"], ex_["soft"]), grad[i], ex_["grad"])
    return out


def exact_capped(x, cap):
    """The exact loss of the rows ``[x, 0]`` with the target at the other
    class than x: ``|z'| + log1p(exp(-|z'|))``, ``z' = c tanh(x / c)``."""
    vals = []
    for v in np.asarray(x, dtype=np.float64).tolist():
        with mpmath.workprec(PREC):
            zp = abs(mpmath.mpf(cap) * mpmath.tanh(mpmath.mpf(v) / mpmath.mpf(cap)))
            vals.append((zp + mpmath.log1p(mpmath.exp(-zp)))._mpf_)
    return Exact(vals)


@lru_cache(maxsize=16)
def _capped_cached(xb, dtype_str, cap):
    return exact_capped(np.frombuffer(xb, dtype=dtype_str), cap)


def measure_capped_logits(dtype, cap):
    """xent's capped logits, through the loss of the rows ``[x, 0]`` at the
    class other than x: ``|z'| + log1p(exp(-|z'|))`` with the log1p below
    1e-7 of ``|z'|`` (``capped_logit_grid``; below half an ulp from
    ``|z'| = 17`` in float32 and 37 in float64), so that the loss's error is
    that of xent's capped logit, within the half ulp of the loss's own
    rounding: a Judged in ulps."""
    import xent

    dtype = np.dtype(dtype)
    x = capped_logit_grid(dtype, cap)
    X = np.stack([x, np.zeros_like(x)], axis=1)
    y = (x > 0).astype(np.int64)
    loss = xent.softmax_cross_entropy(X, y, softcap=cap, reduction="none")
    exact = _capped_cached(x.tobytes(), dtype.str, cap)
    m = Judged(f"capped logits (softcap={cap:g})", dtype, "|z'|", "ulp")
    grid = BceRow(x, np.zeros_like(x))
    grid.kind = "capped"
    grid.describe = lambda: (f"rows [x, 0] with softcap={cap:g}, x from {x[:1]!r} to {x[-1:]!r}")
    m.add(grid, ulp_errors(loss, exact, dtype), loss, exact)
    return m


# ---- focal losses ------------------------------------------------------------

def exact_softmax_focal(row, kind, gamma, alpha=None):
    """The oracle of ``softmax_focal_loss(_with_grad)`` for one row: (loss,
    grad, gradient mass |alpha| M, M = sum_c t_c K_c)."""
    key = ("focal", kind, gamma)
    cache = _row_cache(row)
    if key not in cache:
        cache[key] = exact_row(row.x).focal(extras_targets(kind, row, row.x.dtype), gamma)
    loss, grad, M = cache[key]
    if alpha is not None:
        k = _pow2(alpha)                         # alpha a power of two: exact scaling
        loss, grad = shift_exact(loss, k), shift_exact(grad, k)
        M = M * alpha
    return loss, grad, M


def measure_softmax_focal(dtype, rows, kind, gamma, alpha=None):
    """``softmax_focal_loss(_with_grad)`` on rows of one C: {"loss", "grad":
    Judged}, held to FOCAL_BOUND; soft targets' gradients absolutely, eps per
    unit of the gradient's mass ``|alpha| sum_c t_c K_c``."""
    import xent

    dtype = np.dtype(dtype)
    X = np.stack([r.x for r in rows]).astype(dtype)
    if kind == "index":
        target = np.array([r.y for r in rows], dtype=np.int64)
    else:
        target = np.stack([extras_targets(kind, r, dtype) for r in rows])
    kw = dict(gamma=gamma, alpha=alpha)
    loss = xent.softmax_focal_loss(X, target, reduction="none", **kw)
    _, grad = xent.softmax_focal_loss_with_grad(X, target, reduction="sum", **kw)
    bound = FOCAL_BOUND[dtype]
    name = f"softmax-focal-{kind} (gamma={gamma:g}" + (f", alpha={alpha:g})" if alpha else ")")
    soft = kind not in ("index", "one-hot")
    out = {"loss": Judged(name, dtype, "loss", "ulp", bound),
           "grad": Judged(name, dtype, "grad", "eps per unit of gradient mass" if soft else "ulp",
                          bound)}
    for i, row in enumerate(rows):
        ex_loss, ex_grad, mass = exact_softmax_focal(row, kind, gamma, alpha)
        case = Case(row, f"softmax_focal_loss gamma={gamma:g}, alpha={alpha}, {kind} target")
        out["loss"].add(case, ulp_errors(loss[i], ex_loss, dtype), loss[i], ex_loss)
        if soft:
            err = judge(grad[i], ex_grad, dtype, "eps", mass)
        else:
            err = ulp_errors(grad[i], ex_grad, dtype)
        out["grad"].add(case, err, grad[i], ex_grad)
    return out


@lru_cache(maxsize=8)
def _sigmoid_focal_cached(dtype_str, alpha):
    x, t = focal_grid(np.dtype(dtype_str))
    return sigmoid_focal(x, t, alpha, FOCAL_GAMMAS)


def measure_sigmoid_focal(dtype, gamma, alpha=0.25):
    """``sigmoid_focal_loss(_with_grad)`` on the focal grid: {"loss" (ulp),
    "grad" (eps, absolute, as BCE's), "grad-ulp" (ulps)}, held to
    FOCAL_BOUND; the tests hold the hard targets' gradients in ulps too."""
    import xent

    dtype = np.dtype(dtype)
    x, t = focal_grid(dtype)
    kw = dict(gamma=gamma, alpha=alpha)
    loss = xent.sigmoid_focal_loss(x, t, reduction="none", **kw)
    _, grad = xent.sigmoid_focal_loss_with_grad(x, t, reduction="sum", **kw)
    ex_loss, ex_grad, _ = _sigmoid_focal_cached(dtype.str, alpha)
    ex_loss, ex_grad = ex_loss[gamma], ex_grad[gamma]
    bound = FOCAL_BOUND[dtype]
    name = f"sigmoid-focal (gamma={gamma:g}, alpha={alpha})"
    out = {"loss": Judged(name, dtype, "loss", "ulp", bound),
           "grad": Judged(name, dtype, "grad", "eps", bound),
           "grad-ulp": Judged(name, dtype, "grad", "ulp", bound)}
    for i in range(x.shape[0]):
        row = BceRow(x[i], t[i])
        el, eg = ex_loss.row(i), ex_grad.row(i)
        out["loss"].add(row, ulp_errors(loss[i], el, dtype), loss[i], el)
        out["grad"].add(row, abs_errors_eps(grad[i], eg, dtype), grad[i], eg)
        out["grad-ulp"].add(row, ulp_errors(grad[i], eg, dtype), grad[i], eg)
    return out


# ==========================================================================
# divergences: KL (forward and reverse) and Jensen-Shannon between two rows
# ==========================================================================
#
# ``xent.kl_divergence`` / ``js_divergence`` (and ``_with_grad``): pairs of
# rows, the student's logits ``x`` (p = softmax(x / T)) and the teacher's
# ``z`` (q = softmax(z / T)), ``-inf`` entries masks.  The oracle
# (``exact_divergences``) works from ``r_c = log q_c - log p_c``, formed as
# ``(d^z_c - d^x_c) - (log S_z - log S_x)`` with the shifts ``d = v - max(v)``
# exact and the one difference of the normalisers guarded, and writes each
# divergence as a sum of terms that are never negative:
#
# * ``KL(q || p) = sum_c q_c psi(-r_c)``, ``psi(s) = exp(s) - 1 - s``, plus
#   ``p_c`` where only q masks c (the terms ``p_c - q_c`` sum to 0); +inf
#   where only p masks a class;
# * ``KL(p || q) = sum_c p_c psi(r_c)`` (symmetrically);
# * ``JS = sum_c (1 - b) p_c chi(u_c) + b q_c chi(y_c)``, ``chi(u) = u -
#   log1p(u)``, ``u = m / p - 1 = b expm1(r)``, ``y = m / q - 1 = (1 - b)
#   expm1(-r)`` (the linear parts cancel class by class), ``-b log(b) q_c``
#   where p masks c, ``-(1 - b) log(1 - b) p_c`` where q does;
#
# ``psi`` and ``chi`` are evaluated with as many more bits as they cancel.
# The gradients: ``(p - q) / T`` (``q expm1(-r)``), ``p (-r - KL(p||q)) / T``
# and ``(1 - b) p (-log1p(u) - KL(p || m)) / T``; the last two differences
# are guarded as well.

#: the divergences measured: forward KL(q || p), reverse KL(p || q), and JS
#: with the weights b of q
DIV_KINDS = ("kl", "kl-reverse", "js-0.5", "js-0.25")
JS_BETAS = (0.5, 0.25)
#: temperatures (powers of two: x / T exact)
DIV_TEMPERATURES = (1.0, 0.5, 2.0)
#: the strata of pairs (``divergence_pairs``)
DIV_STRATA = ("near", "random", "masked", "extreme")
#: float64 divergences below this are held to DIV_SMALL_BOUND ulps
DIV_SMALL = 1e-6
DIV_SMALL_BOUND = 64.0


def _nonzero_mag(r):
    return _mag(r) if r[1] else -math.inf


class _DivSide:
    """One row of a pair, scaled by 1 / T (exact): the ExactRow of its finite
    entries and, per class, whether it is finite and its index there."""

    def __init__(self, v, k):
        a = np.ldexp(np.asarray(v, dtype=np.float64), -k)
        self.fin = np.isfinite(a)
        self.er = exact_row(a[self.fin])
        self.pos = (np.cumsum(self.fin) - 1).tolist()


def _psi_mp(s, prec):
    """``exp(s) - 1 - s`` (mpf), with the bits it cancels added."""
    if not s:
        return mpmath.mpf(0)
    with mpmath.workprec(prec + max(0, -_mag(s._mpf_)) + 16):
        v = mpmath.expm1(s) - s
    return +v


def _chi_mp(u, prec):
    """``u - log1p(u)`` (mpf, u > -1), with the bits it cancels added."""
    if not u:
        return mpmath.mpf(0)
    with mpmath.workprec(prec + max(0, -_mag(u._mpf_)) + 16):
        v = u - mpmath.log1p(u)
    return +v


def exact_divergences(x, z, temperature=1.0, betas=JS_BETAS):
    """The oracle of the divergences of one pair of float rows: a dict kind ->
    (value, grad): ``value`` a 1-element Exact or ``math.inf``; ``grad`` an
    Exact (the gradient with respect to x, the row's own: no sample weight,
    no mean) or None where it is NaN (the reverse KL of a row where it is
    infinite).  Kinds: ``DIV_KINDS`` (``"js-<b>"`` for each b of ``betas``)."""
    k = _pow2(temperature)
    sa, sb = _DivSide(x, k), _DivSide(z, k)
    C = len(sa.fin)

    def compute(prec):
        A, B = sa.er.at(prec), sb.er.at(prec)
        lost = 0.0
        with mpmath.workprec(prec):
            mag_ls = max(_nonzero_mag(A.log_S), _nonzero_mag(B.log_S))
            ls_equal = libmp.mpf_eq(A.log_S, B.log_S)
            cls = []            # per class: (state, p, q, r) as mpf
            for c in range(C):
                fa, fb = bool(sa.fin[c]), bool(sb.fin[c])
                p = _mpf(libmp.mpf_mul(A.E(sa.pos[c]), A.inv_S, prec, RN)) if fa else None
                q = _mpf(libmp.mpf_mul(B.E(sb.pos[c]), B.inv_S, prec, RN)) if fb else None
                r = None
                if fa and fb:
                    dd = libmp.mpf_sub(B.d(sb.pos[c]), A.d(sa.pos[c]))          # exact
                    rr = libmp.mpf_sum([dd, A.log_S, libmp.mpf_neg(B.log_S)], prec, RN)
                    if rr[1]:
                        lost = max(lost, mag_ls - _mag(rr))
                    elif not (not dd[1] and ls_equal):
                        lost = math.inf             # a vanishing difference: more bits
                    r = _mpf(rr)
                state = "both" if fa and fb else ("p" if fa else ("q" if fb else "none"))
                cls.append((state, p, q, r))
            res = {}
            # forward KL(q || p) and its gradient p - q
            if any(s == "q" for s, *_ in cls):
                fwd = math.inf
            else:
                fwd = mpmath.fsum([q * _psi_mp(-r, prec) if s == "both" else p
                                   for s, p, q, r in cls if s in ("both", "p")])
            g_fwd = [(q * mpmath.expm1(-r) if s == "both" else
                      (p if s == "p" else (-q if s == "q" else mpmath.mpf(0))))
                     for s, p, q, r in cls]
            res["kl"] = (fwd, g_fwd)
            # reverse KL(p || q) and its gradient p (-r - KL)
            if any(s == "p" for s, *_ in cls):
                res["kl-reverse"] = (math.inf, None)
            else:
                rev = mpmath.fsum([p * _psi_mp(r, prec) if s == "both" else q
                                   for s, p, q, r in cls if s in ("both", "q")])
                g = []
                for s, p, q, r in cls:
                    if s != "both":
                        g.append(mpmath.mpf(0))
                        continue
                    diff = -r - rev
                    lost = max(lost, _lost_bits((-r)._mpf_, rev._mpf_, diff._mpf_))
                    g.append(p * diff)
                res["kl-reverse"] = (rev, g)
            # Jensen-Shannon
            for b in betas:
                bm = mpmath.mpf(b)
                b1 = 1 - bm                                                    # exact
                terms, kterms, lpm = [], [], []
                for s, p, q, r in cls:
                    if s == "both":
                        u, y = bm * mpmath.expm1(r), b1 * mpmath.expm1(-r)
                        cu = _chi_mp(u, prec)
                        terms.append(b1 * p * cu + bm * q * _chi_mp(y, prec))
                        kterms.append(p * cu)
                        lpm.append(-mpmath.log1p(u))                           # log(p / m)
                    elif s == "p":
                        terms.append(-b1 * mpmath.log(b1) * p)
                        kterms.append(p * (-bm - mpmath.log(b1)))
                        lpm.append(-mpmath.log(b1))
                    elif s == "q":
                        terms.append(-bm * mpmath.log(bm) * q)
                        kterms.append(bm * q)
                        lpm.append(None)
                    else:
                        lpm.append(None)
                js, kpm = mpmath.fsum(terms), mpmath.fsum(kterms)
                g = []
                for (s, p, q, r), lp in zip(cls, lpm):
                    if lp is None:
                        g.append(mpmath.mpf(0))
                        continue
                    diff = lp - kpm
                    lost = max(lost, _lost_bits(lp._mpf_, kpm._mpf_, diff._mpf_))
                    g.append(b1 * p * diff)
                res[f"js-{b:g}"] = (js, g)
        return res, lost

    res = _with_guard(compute)
    out = {}
    for kind, (v, g) in res.items():
        value = v if v is math.inf else Exact([v._mpf_])
        grad = None if g is None else Exact([libmp.mpf_shift(e._mpf_, -k) for e in g])
        out[kind] = (value, grad)
    return out


def naive_divergences(x, z, temperature=1.0, betas=JS_BETAS, prec=4000):
    """The divergences of one pair straight from their definitions at a very
    high precision (no care for cancellation): to check
    ``exact_divergences`` on rows whose values are not below 2**-3000 or so.
    Finite cases only; a dict kind -> (value, [grad]) of mpf."""
    with mpmath.workprec(prec):
        T = mpmath.mpf(temperature)
        a = [mpmath.mpf(float(v)) / T for v in np.asarray(x, dtype=np.float64).tolist()]
        b = [mpmath.mpf(float(v)) / T for v in np.asarray(z, dtype=np.float64).tolist()]

        def softmax(v):
            m = max(e for e in v if e != -mpmath.inf)
            ex_ = [mpmath.exp(e - m) if e != -mpmath.inf else mpmath.mpf(0) for e in v]
            s = mpmath.fsum(ex_)
            return [e / s for e in ex_]

        def xlogy(s, t):
            return mpmath.mpf(0) if s == 0 else s * mpmath.log(s / t)

        p, q = softmax(a), softmax(b)
        out = {}
        fwd = mpmath.fsum(xlogy(qc, pc) for pc, qc in zip(p, q))
        out["kl"] = (fwd, [(pc - qc) / T for pc, qc in zip(p, q)])
        rev = mpmath.fsum(xlogy(pc, qc) for pc, qc in zip(p, q))
        out["kl-reverse"] = (rev, [pc * (mpmath.log(pc / qc) - rev) / T if pc else mpmath.mpf(0)
                                   for pc, qc in zip(p, q)])
        for beta in betas:
            bm = mpmath.mpf(beta)
            m = [bm * qc + (1 - bm) * pc for pc, qc in zip(p, q)]
            kq = mpmath.fsum(xlogy(qc, mc) for qc, mc in zip(q, m))
            kp = mpmath.fsum(xlogy(pc, mc) for pc, mc in zip(p, m))
            out[f"js-{beta:g}"] = (bm * kq + (1 - bm) * kp,
                                   [(1 - bm) * pc * (mpmath.log(pc / mc) - kp) / T if pc
                                    else mpmath.mpf(0) for pc, mc in zip(p, m)])
        return out


class DivPair:
    """A test pair: the student's logits ``x`` and the teacher's ``z``."""

    def __init__(self, stratum, what, x, z, origin=""):
        self.stratum, self.what, self.x, self.z, self.origin = stratum, what, x, z, origin
        self.kind = stratum

    @property
    def C(self):
        return self.x.shape[0]

    def describe(self):
        x, z = self.x, self.z
        if self.C <= 10:
            rows = f"x={x.tolist()!r}, z={z.tolist()!r}"
        else:
            fx, fz = x[np.isfinite(x)], z[np.isfinite(z)]
            rows = (f"x in [{fx.min()!r}, {fx.max()!r}] ({int(np.sum(~np.isfinite(x)))} -inf), "
                    f"z in [{fz.min()!r}, {fz.max()!r}] ({int(np.sum(~np.isfinite(z)))} -inf)")
        return (f"{self.stratum} pair ({self.what}), C={self.C}, {self.x.dtype}: {rows}"
                + (f" [tests/_exact.py: {self.origin}]" if self.origin else ""))


def _quantum(v, dtype):
    """The grid step of ``dyadic(v, dtype)``."""
    big = float(np.max(np.abs(v)))
    p, _ = _precision(dtype)
    return 2.0 ** (math.ceil(math.log2(big)) - (p - 1)) if big else 2.0 ** -(p - 1)


def _dyadic_masked(v, dtype):
    """``dyadic`` of the finite entries of ``v``, its ``-inf`` kept."""
    v = np.asarray(v, dtype=np.float64)
    out = np.full(v.shape, -np.inf, dtype=dtype)
    fin = np.isfinite(v)
    out[fin] = dyadic(v[fin], dtype)
    return out


def _random_row(rng, C, gap, offset=0.0):
    return -gap * rng.uniform(0.0, 1.0, C) + offset


def divergence_pairs(dtype, C, stratum, seed=0):
    """The pairs of a stratum for one class count, every row dyadic
    (``x - max(x)`` and ``z - max(z)`` exact):

    * ``near``: ``z`` the same as ``x`` up to perturbations (identical, shifted
      by a constant, a few grid steps of x per class, 2**-40 (float64),
      2**-20 and 2**-10 of ``1 + |x_c - max(x)|``), on random rows of gaps 1,
      10, 30 and rows with ties at the max: divergences down to ~1e-30;
    * ``random``: unrelated rows, gaps 1 to 90, spread over [-s, s], a
      confident teacher or student, ties at the max, a teacher correlated
      with the student;
    * ``masked`` (C >= 2): ``-inf`` in x only, in z only, at the same classes
      in both (also near-identical), at different classes, and where z
      masks more than x;
    * ``extreme`` (C >= 2): rows spanning 700 and 1000 (float64) or 80
      (float32) between max and min, unrelated, reversed, near-identical, and
      with ties at the max."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([seed, C, dtype.itemsize, 19, DIV_STRATA.index(stratum)])
    pairs = []

    def add(what, x, z):
        pairs.append(DivPair(stratum, what, _dyadic_masked(x, dtype), _dyadic_masked(z, dtype),
                             f"divergence_pairs(np.{dtype.name}, {C}, {stratum!r}, "
                             f"seed={seed})[{len(pairs)}]"))

    draws = 2 if C <= 10 else 1
    if stratum == "near":
        rels = ((2.0 ** -40,) if dtype == np.float64 else ()) + (2.0 ** -20, 2.0 ** -10)
        for base in ("gap 1", "gap 10", "gap 30", "ties"):
            for _ in range(draws):
                off = _offsets(rng)
                if base == "ties":
                    v = _random_row(rng, C, 10.0)
                    v[rng.choice(C, size=min(C, 3), replace=False)] = 0.0
                    v += off
                else:
                    v = _random_row(rng, C, float(base.split()[1]), off)
                x = dyadic(v, dtype)
                xd = x.astype(np.float64)
                add(f"{base}, identical", x, x.copy())
                add(f"{base}, shifted by 0.75", x, xd + 0.75)
                steps = rng.integers(-3, 4, C).astype(np.float64)
                add(f"{base}, z = x + up to 3 grid steps", x, xd + steps * _quantum(xd, dtype))
                for rel in rels:
                    u = rng.uniform(-1.0, 1.0, C)
                    add(f"{base}, z = x + 2**{int(math.log2(rel))} (1 + |x - max x|) u", x,
                        xd + rel * (1.0 + np.abs(xd - xd.max())) * u)
    elif stratum == "random":
        for _ in range(draws):
            for gap in (1.0, 10.0, 30.0, 90.0):
                add(f"unrelated, gap {gap:g}", _random_row(rng, C, gap, _offsets(rng)),
                    _random_row(rng, C, gap * rng.uniform(0.5, 1.0), _offsets(rng)))
            for s in (0.5, 4.0, 30.0, 90.0):
                add(f"spread over [-{s:g}, {s:g}]", rng.uniform(-s, s, C), rng.uniform(-s, s, C))
            for gap in (10.0, 30.0):
                t = _random_row(rng, C, 1.0) - gap
                t[rng.integers(C)] = 0.0
                add(f"confident teacher, gap {gap:g}", _random_row(rng, C, 10.0), t)
                add(f"confident student, gap {gap:g}", t.copy(), _random_row(rng, C, 10.0))
            x = _random_row(rng, C, 10.0)
            add("correlated teacher, noise 1", x, x + rng.normal(0.0, 1.0, C))
            v, w = _random_row(rng, C, 10.0), _random_row(rng, C, 10.0)
            v[rng.choice(C, size=min(C, 2), replace=False)] = 0.0
            w[rng.choice(C, size=min(C, 3), replace=False)] = 0.0
            add("ties at the max in both", v, w)
    elif stratum == "masked":
        if C < 2:
            return pairs

        def masks(n_min=1):
            m = rng.random(C) < 1 / 3
            if m.sum() < n_min:
                m[rng.integers(C)] = True
            if m.all():
                m[rng.integers(C)] = False
            return m

        for _ in range(draws):
            x, z = _random_row(rng, C, 10.0, _offsets(rng)), _random_row(rng, C, 10.0)
            m = masks()
            add("-inf in x only", np.where(m, -np.inf, x), z)
            m = masks()
            add("-inf in z only", x, np.where(m, -np.inf, z))
            m = masks()
            add("-inf at the same classes", np.where(m, -np.inf, x), np.where(m, -np.inf, z))
            xs = dyadic(x, dtype).astype(np.float64)
            m = masks()
            add("-inf at the same classes, z = x + 2**-20 (1 + |x - max x|) u",
                np.where(m, -np.inf, xs),
                np.where(m, -np.inf, xs + 2.0 ** -20 * (1 + np.abs(xs - xs.max()))
                         * rng.uniform(-1, 1, C)))
            # different classes: a class finite in both kept where possible
            mx = masks()
            mz = ~mx & (rng.random(C) < 0.5)
            if mz.all() or not mz.any():
                mz = ~mx
                if C > 2:
                    mz[np.nonzero(~mx)[0][0]] = False
            add("-inf at different classes", np.where(mx, -np.inf, x), np.where(mz, -np.inf, z))
            mx = masks()
            mz = mx.copy()
            free = np.nonzero(~mx)[0]
            if free.size > 1:
                mz[rng.choice(free, size=free.size // 2, replace=False)] = True
            add("-inf in z at x's classes and more", np.where(mx, -np.inf, x),
                np.where(mz, -np.inf, z))
    elif stratum == "extreme":
        if C < 2:
            return pairs
        spans = (700.0, 1000.0) if dtype == np.float64 else (80.0,)
        for span in spans:
            for _ in range(draws):
                def wide():
                    v = -span * rng.uniform(0.0, 1.0, C)
                    i, j = rng.choice(C, size=2, replace=False)
                    v[i], v[j] = 0.0, -span
                    return v + _offsets(rng)

                x, z = wide(), wide()
                add(f"span {span:g}, unrelated", x, z)
                add(f"span {span:g}, z = reversed x", x, -x)
                xs = dyadic(x, dtype).astype(np.float64)
                add(f"span {span:g}, z = x + 2**-20 (1 + |x - max x|) u", xs,
                    xs + 2.0 ** -20 * (1 + np.abs(xs - xs.max())) * rng.uniform(-1, 1, C))
                t = wide()
                t[rng.choice(C, size=min(C, 3), replace=False)] = t.max()
                add(f"span {span:g}, ties at the max of x", t, z)
                add(f"span {span:g}, ties at the max of z", x, t)
                add(f"span {span:g}, the same ties in both", t, t + 0.5)
                w = -span * rng.uniform(0.0, 1.0, C)
                w[:: 2] = 0.0 if C > 2 else w[:: 2]
                add(f"span {span:g}, student two-level", np.where(np.arange(C) % 2 == 0, 0.0,
                                                                   -span), w)
    else:
        raise ValueError(stratum)
    return pairs


def exact_divergence_pair(pair, temperature):
    """``exact_divergences`` of a pair (cached on the pair)."""
    cache = pair.__dict__.setdefault("_exact_div", {})
    if temperature not in cache:
        cache[temperature] = exact_divergences(pair.x, pair.z, temperature)
    return cache[temperature]


def run_divergence(kind, dtype, pairs, temperature):
    """xent's per-row values (``reduction="none"``) and per-row gradients
    (``_with_grad(..., reduction="sum")``) of one kind on a batch of pairs of
    one C."""
    import xent

    X = np.stack([p.x for p in pairs]).astype(dtype)
    Z = np.stack([p.z for p in pairs]).astype(dtype)
    if kind.startswith("kl"):
        f, fg, kw = xent.kl_divergence, xent.kl_divergence_with_grad, dict(
            reverse=kind == "kl-reverse")
    else:
        f, fg, kw = xent.js_divergence, xent.js_divergence_with_grad, dict(
            beta=float(kind.split("-")[1]))
    with np.errstate(all="ignore"):
        values = f(X, Z, temperature=temperature, reduction="none", **kw)
        _, grad = fg(X, Z, temperature=temperature, reduction="sum", **kw)
    return values, grad


def reverse_grad_parts(pair, temperature):
    """The reverse KL gradient's scale per entry, for its absolute bound: the
    magnitude of the parts it is the difference of, ``p_j sum_c p_c |l_j -
    l_c|`` (``l = log p - log q``; ``p_j (l_j - KL)`` is ``p_j sum_c p_c (l_j -
    l_c)``) times 1 / T, and at least 1 / T.  Where p is spread over classes
    whose log-ratios differ by hundreds, an entry is a small difference of
    parts that large, and no working-precision formula keeps it to eps / T
    (a uniform row against log-ratios 0, 1000 and 511: parts of 111 around
    an entry of 2.5).  Computed in float64 (a scale, not an oracle)."""
    with np.errstate(all="ignore"):
        x = pair.x.astype(np.float64) / temperature
        z = pair.z.astype(np.float64) / temperature
        lp = x - x.max() - np.log(np.sum(np.exp(x - x.max())))
        lq = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
        p = np.exp(lp)
        l = np.where(p > 0, lp - lq, 0.0)
        parts = p * np.sum(p[None, :] * np.abs(l[:, None] - l[None, :]), axis=1)
    parts = np.where(np.isfinite(parts), parts, 0.0)
    return np.maximum(parts, 1.0) / temperature


def measure_divergence(kind, dtype, pairs, temperature):
    """One divergence of xent on pairs of one C against the oracle: a dict of
    Judged --

    * ``value``: ulps (float64 values below DIV_SMALL apart, as
      ``value-small``, held to DIV_SMALL_BOUND);
    * ``grad``: the bound's measure, ``|got - exact| / max(eps / T,
      ulp(exact))``: absolute (machine epsilons per unit of the gradient's
      scale, the row's mass 1 times 1 / T) where the entry is below that
      scale, as the forward KL's and JS's always are, ulps of the larger
      entries of the reverse KL's (``p (log p / q - KL)``, up to hundreds);
      the reverse KL's scale is that of the parts it is a difference of
      (reverse_grad_parts);
    * ``grad-abs`` (eps per unit of 1 / T) and ``grad-ulp`` (ulps), for
      information (no bound) --

    and ``special-value`` / ``special-grad``: messages for the rows whose
    value must be +inf or whose gradient NaN and are not."""
    dtype = np.dtype(dtype)
    values, grad = run_divergence(kind, dtype, pairs, temperature)
    name = f"{kind} (temperature={temperature:g})"
    out = {"value": Judged(name, dtype, "value", "ulp"),
           "value-small": Judged(name, dtype, f"value below {DIV_SMALL:g}", "ulp",
                                 DIV_SMALL_BOUND),
           "grad": Judged(name, dtype, "grad", "eps per unit of 1/T (ulp above it)"),
           "grad-abs": Judged(name, dtype, "grad", "eps per unit of 1/T (information)",
                              math.inf),
           "grad-ulp": Judged(name, dtype, "grad", "ulp (information)", math.inf),
           "special-value": [], "special-grad": []}
    scale = 1.0 / temperature
    for i, pair in enumerate(pairs):
        ex_v, ex_g = exact_divergence_pair(pair, temperature)[kind]
        case = Case(pair, name, dict(temperature=temperature, kind=kind))
        got = values[i]
        if ex_v is math.inf:
            if not got == np.inf:
                out["special-value"].append(f"{name} {dtype}: value {got!r}, exact +inf; "
                                            f"input: {pair.describe()}")
        else:
            small = dtype == np.float64 and abs(ex_v.hi[0]) < DIV_SMALL
            out["value-small" if small else "value"].add(case, ulp_errors(got, ex_v, dtype),
                                                         got, ex_v)
        if ex_g is None:
            if not np.all(np.isnan(grad[i])):
                out["special-grad"].append(
                    f"{name} {dtype}: gradient {grad[i].tolist()!r}, exact NaN (an infinite "
                    f"reverse KL); input: {pair.describe()}")
            continue
        gscale = reverse_grad_parts(pair, temperature) if kind == "kl-reverse" else scale
        out["grad"].add(case, judge(grad[i], ex_g, dtype, "ulp|eps", gscale, soft=True),
                        grad[i], ex_g)
        out["grad-abs"].add(case, judge(grad[i], ex_g, dtype, "eps", scale), grad[i], ex_g)
        out["grad-ulp"].add(case, ulp_errors(grad[i], ex_g, dtype), grad[i], ex_g)
    return out
