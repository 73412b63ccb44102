"""Rows of up to one block have their statistics computed a few at a time
(``xent_stats_rows``: each row's max is found while the row before it is
summed; few classes as SIMD lanes).  A row's results must not depend on the
rows computed with it: every row of a call is checked bitwise against the same
row passed alone, for groups that end early, longer rows (one at a time), and
rows with special values beside ordinary ones.  Values against the reference
are tests/test_against_reference.py's job.
"""

import numpy as np
import pytest

import xent

# (C, dtype): few classes, short rows, rows of a float64 block and beyond it,
# rows of a float32 block and beyond it (taken one at a time)
SHAPES = [(7, np.float32), (33, np.float32), (100, np.float64), (1000, np.float32),
          (1024, np.float64), (1025, np.float64), (4096, np.float32), (4097, np.float32)]
N_ROWS = [1, 3, 4, 5, 9]


def _logits(n, c, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    specials = [np.nan, np.inf, -np.inf]
    for i in range(1, n, 2):                   # odd rows: masks, a NaN, +inf
        kind = (i // 2) % 4
        if kind == 0:
            x[i, ::3] = -np.inf
        elif kind == 1:
            x[i, c // 2] = specials[0]
        elif kind == 2:
            x[i, 0] = specials[1]
        else:
            x[i, :] = -np.inf
    if n > 2:
        x[2] = x[2, 0]                         # a row of ties
    return x


def _bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _per_row(fn, x):
    """fn on the whole array, and fn on each row alone, stacked."""
    whole = fn(x)
    alone = [fn(x[i:i + 1]) for i in range(x.shape[0])]
    if isinstance(whole, tuple):
        return whole, tuple(np.concatenate([a[k] for a in alone]) for k in range(len(whole)))
    return whole, np.concatenate(alone)


def _assert_same(whole, alone):
    if isinstance(whole, tuple):
        for w, a in zip(whole, alone):
            np.testing.assert_array_equal(_bits(w), _bits(a))
    else:
        np.testing.assert_array_equal(_bits(whole), _bits(alone))


@pytest.mark.parametrize("c,dtype", SHAPES)
@pytest.mark.parametrize("n", N_ROWS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_class_index_rows_do_not_depend_on_their_group(c, dtype, n, n_threads):
    x = _logits(n, c, dtype, seed=c + n)
    y = np.random.default_rng(n).integers(0, c, n)
    for opts in ({}, {"label_smoothing": 0.1}):
        def loss(xs, opts=opts):
            rows = _row_index(xs, x)
            return xent.softmax_cross_entropy(xs, y[rows], reduction="none",
                                              n_threads=n_threads, **opts)

        def fused(xs, opts=opts):
            rows = _row_index(xs, x)
            return xent.softmax_cross_entropy_with_grad(xs, y[rows], reduction="none",
                                                        n_threads=n_threads, **opts)

        _assert_same(*_per_row(loss, x))
        _assert_same(*_per_row(fused, x))


@pytest.mark.parametrize("c,dtype", SHAPES)
@pytest.mark.parametrize("n", N_ROWS)
def test_probability_rows_do_not_depend_on_their_group(c, dtype, n):
    x = _logits(n, c, dtype, seed=2 * c + n)
    t = np.random.default_rng(n).dirichlet(np.ones(c), n).astype(dtype)

    def fused(xs):
        rows = _row_index(xs, x)
        return xent.softmax_cross_entropy_with_grad(xs, t[rows], reduction="none")

    _assert_same(*_per_row(
        lambda xs: xent.softmax_cross_entropy(xs, t[_row_index(xs, x)], reduction="none"), x))
    _assert_same(*_per_row(fused, x))


@pytest.mark.parametrize("c,dtype", SHAPES)
@pytest.mark.parametrize("n", N_ROWS)
@pytest.mark.parametrize("fn", [xent.logsumexp, xent.log_softmax, xent.softmax])
def test_softmax_family_rows_do_not_depend_on_their_group(c, dtype, n, fn):
    x = _logits(n, c, dtype, seed=3 * c + n)
    _assert_same(*_per_row(fn, x))


def _row_index(xs, x):
    """The rows of x that xs is: all of them, or the one row it was cut from."""
    if xs.shape[0] == x.shape[0]:
        return np.arange(x.shape[0])
    offset = (xs.__array_interface__["data"][0] - x.__array_interface__["data"][0])
    return np.array([offset // x.strides[0]])


def test_groups_are_exercised():
    """The shapes above take each grouping: few classes (lanes), one-block rows
    in groups, longer rows alone (the thresholds of xent_stats_rows)."""
    from xent import _dispatch

    def group(c, dtype):
        return _dispatch.path("index", (64, c), dtype)["group"]
    assert group(7, np.float32) > 1
    assert group(1000, np.float32) > 1
    assert group(4096, np.float32) > 1
    assert group(4097, np.float32) == 1
    assert group(1024, np.float64) > 1
    assert group(1025, np.float64) == 1
