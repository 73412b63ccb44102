"""Rows split into column chunks (issue 3): with fewer rows than threads and
C >= 65536 classes, the kernels spread each row over the threads and merge
its blocks in a fixed order.  The promise is the same as for the tile loop:
the bits do not depend on the thread count.

Oracles: the one-thread call (which never splits: the row path of
``row_stats``) for bitwise equality, and ``xent.reference`` for the values, so
that a split that was bitwise "stable" but wrong would still fail.  Shapes
cover one-pass rows (float64 past 131072 classes, float32 past 262144), a
last chunk and a last block that are partial, and special rows (``-inf``
masks, a NaN, ties at the max, a signed-zero max, huge logits).
"""

import numpy as np
import pytest

import xent
from xent import _dispatch, reference

OPENMP = xent.config()["openmp"]
# counts above this machine's CPUs (4) reach the kernels: see conftest.oversubscribe
pytestmark = [pytest.mark.skipif(not OPENMP, reason="the split runs only with OpenMP threads"),
              pytest.mark.usefixtures("oversubscribe")]

# (dtype, C): two-pass rows with a partial last block / chunk, and one-pass
# rows (over 1 MiB), for both dtypes
SHAPES = [(np.float32, 65536), (np.float32, 100000), (np.float32, 128256),
          (np.float32, 300001), (np.float64, 65536), (np.float64, 70001),
          (np.float64, 140000)]


@pytest.mark.parametrize("dtype,C", SHAPES)
def test_these_shapes_take_the_split(dtype, C):
    def split(n, nt):
        return _dispatch.path("index", (n, C), dtype, nt)["split"]
    assert split(3, 4) and split(1, 2)
    assert not split(3, 1) and not split(4, 4)


def _logits(dtype, n, c, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    if n > 1:
        x[1, ::7] = -np.inf                      # masks
        x[1, c // 2] = 30.0
    if n > 2:
        x[2, :] = 0.0                            # ties everywhere, +0 and -0 max
        x[2, ::3] = -0.0
        x[2, 5] = -5.0
    return x


def _softmax_rows(x, out, mode, n_threads):
    """The kernel itself, on (n, C) rows with `n_threads` threads: lse (mode 0)
    or log_softmax / softmax into `out`."""
    call = _dispatch.Call("softmax", x.shape[0], x.shape[1], x.dtype, n_threads, x=x, mode=mode)
    if mode == 0:
        call.loss = out
    else:
        call.out = out
    _dispatch.run(call)


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _same(a, b):
    if np.isscalar(a) or np.ndim(a) == 0:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("dtype,C", SHAPES)
@pytest.mark.parametrize("n", [1, 3])
def test_class_index_loss_and_grad_bitwise_any_threads(dtype, C, n):
    x = _logits(dtype, n, C)
    y = np.arange(n, dtype=np.int64) * 977 % C
    y[-1] = np.argmax(x[-1])                     # a confident, correct row
    for kw in ({}, {"label_smoothing": 0.1}, {"weight": np.linspace(0.5, 2, C).astype(dtype)}):
        base = xent.softmax_cross_entropy(x, y, reduction="none", n_threads=1, **kw)
        l1, g1 = xent.softmax_cross_entropy_with_grad(x, y, reduction="sum", n_threads=1, **kw)
        for nt in (2, 4):                        # 4 > n: split; n < 2 < 4 for n = 1 too
            _same(xent.softmax_cross_entropy(x, y, reduction="none", n_threads=nt, **kw), base)
            lt, gt = xent.softmax_cross_entropy_with_grad(x, y, reduction="sum", n_threads=nt, **kw)
            _same(lt, l1)
            _same(gt, g1)
        ref = reference.softmax_cross_entropy(x.astype(np.float64), y, reduction="none",
                                              **{k: (np.asarray(v, np.float64) if k == "weight" else v)
                                                 for k, v in kw.items()})
        np.testing.assert_allclose(base, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype,C", SHAPES[:3] + SHAPES[4:6])
def test_grad_in_place_and_ignored_rows_bitwise(dtype, C):
    n = 3
    x = _logits(dtype, n, C, seed=1)
    y = np.array([5, -100, C - 1], dtype=np.int64)
    expect_l, expect_g = xent.softmax_cross_entropy_with_grad(x, y, ignore_index=-100, n_threads=1)
    for nt in (4, 8):
        buf = x.copy()
        loss, g = xent.softmax_cross_entropy_with_grad(buf, y, ignore_index=-100, n_threads=nt,
                                                       grad_out=buf)
        assert g is buf
        _same(loss, expect_l)
        _same(buf, expect_g)
    assert not expect_g[1].any()


def test_nan_row_stays_in_its_row():
    x = _logits(np.float32, 3, 90000)
    x[0, 70001] = np.nan
    y = np.array([1, 2, 3], dtype=np.int64)
    l1 = xent.softmax_cross_entropy(x, y, reduction="none", n_threads=1)
    l4 = xent.softmax_cross_entropy(x, y, reduction="none", n_threads=4)
    assert np.isnan(l4[0]) and np.isfinite(l4[1:]).all()
    _same(l4, l1)
    _, g = xent.softmax_cross_entropy_with_grad(x, y, n_threads=4)
    assert np.isnan(g[0]).all() and np.isfinite(g[1:]).all()


@pytest.mark.parametrize("dtype,C", SHAPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_softmax_family_bitwise_any_threads(dtype, C, mode):
    n = 3
    x = _logits(dtype, n, C, seed=2)

    def run(nt, inplace=False):
        out = x.copy() if inplace else np.empty(n if mode == 0 else n * C, dtype=dtype)
        _softmax_rows(x if not inplace else out, out, mode, nt)
        return out.reshape(-1)

    one = run(1)
    for nt in (2, 4):
        _same(run(nt), one)
    if mode:
        _same(run(4, inplace=True), one)
    ref = {0: reference.logsumexp, 1: reference.log_softmax, 2: reference.softmax}[mode](
        x.astype(np.float64), axis=-1).reshape(-1)
    fin = np.isfinite(ref)
    np.testing.assert_allclose(one[fin], ref[fin], rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-30)
    np.testing.assert_array_equal(np.isfinite(one), fin)


def test_public_softmax_family_with_threads_available():
    """The public functions (default threads) give the one-thread bits."""
    x = _logits(np.float32, 1, 128256, seed=3)
    out = np.empty(128256, dtype=np.float32)
    _softmax_rows(x, out, 2, 1)
    _same(xent.softmax(x).reshape(-1), out)
    lse = np.empty(1, dtype=np.float32)
    _softmax_rows(x, lse, 0, 1)
    _same(xent.logsumexp(x), lse)
