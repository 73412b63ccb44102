"""``xent.dask`` against the in-memory functions, bit for bit.

The contract of ``xent.dask`` (its module docstring): each function takes the
arguments of the top-level one, on Dask arrays chunked along the rows (the
class axis in one chunk; otherwise rechunked, with a ``XentChunkWarning``),
and computes exactly what the in-memory function computes on the same data:

* ``"sum"`` / ``"mean"``: a lazy 0-d float64 Dask array; ``"state"``: a
  ``Delayed`` ``ReductionState``; ``"none"``, the gradients, ``token_stats``
  and the primitives: Dask arrays with the logits' row chunks;
* ``.compute()`` equals the in-memory result bitwise (NaN-aware), for any
  chunking of the rows (one chunk, one row per chunk, ragged chunks, empty
  chunks), for per-sample / same-shape arguments chunked differently from the
  logits, on the synchronous, threaded and ``distributed`` (2 processes)
  schedulers;
* the gradient of ``"mean"`` uses the whole array's denominator, also where
  only a pass over the data gives it (``sample_weight``, class ``weight``,
  ``ignore_index``).

The oracle is the in-memory xent function (tested elsewhere against NumPy and
PyTorch).  Independently of it, the means are checked against ``math.fsum``
of the per-sample losses over the denominator, rounded once (xent's sums are
exact sums rounded once).
"""

import math
import os
import warnings

import numpy as np
import pytest

dask = pytest.importorskip(
    "dask", reason="xent.dask needs dask (the `dask` extra: pip install 'xent[dask]')")
da = pytest.importorskip(
    "dask.array", reason="xent.dask needs dask.array (pip install 'dask[array]')")
from dask.delayed import Delayed  # noqa: E402

import xent  # noqa: E402
import xent.dask as xd  # noqa: E402
from xent.dask import XentChunkWarning  # noqa: E402

# ---------------------------------------------------------------------------
# Chunkings, conversions, comparisons
# ---------------------------------------------------------------------------
N = 200          # rows of most cases
N_ONE = 16       # rows where every chunk is one row (one task per row)


def ragged(n, pattern=(5, 1, 37, 20, 13, 2)):
    """Chunks of sizes `pattern` repeated, the last one cut short (ragged)."""
    out, k = [], 0
    while sum(out) < n:
        out.append(min(pattern[k % len(pattern)], n - sum(out)))
        k += 1
    return tuple(out)


def row_chunks(n, kind):
    if kind == "one":
        return (n,)
    if kind == "rows1":
        return (1,) * n
    if kind == "ragged":
        return ragged(n)
    if kind == "empty":                     # zero-length chunks among the others
        return (0, 7, 0) + ragged(n - 7, (30, 0, 11)) + (0,)
    if kind == "random":
        r = np.random.default_rng(n)
        cuts = np.sort(r.integers(0, n + 1, size=6))
        return tuple(int(c) for c in np.diff(np.concatenate([[0], cuts, [n]])))
    raise ValueError(kind)


def other_chunks(n):
    """A chunking of the rows unlike any of row_chunks' (for targets, weights)."""
    return tuple(reversed(ragged(n, (3, 17, 8))))


def n_rows(kind):
    return N_ONE if kind == "rows1" else N


def to_dask(a, rows, split_last=False):
    """`a` as a Dask array: `rows` along axis 0, the other axes whole, or
    the last one in two chunks with `split_last` (for the arrays of the
    logits' shape, which xent.dask rechunks to the logits')."""
    a = np.asarray(a)
    chunks = [rows] + [s for s in a.shape[1:]]
    if split_last and a.ndim >= 2 and a.shape[-1] >= 2:
        c = a.shape[-1]
        chunks[-1] = (c // 2, c - c // 2)
    return da.from_array(a, chunks=tuple(chunks))


def dask_kwargs(kw, n, rows):
    """The keyword arguments with every row-aligned array (first axis of
    length n) made a Dask array chunked by `rows`; the others (class weights,
    scalars) as they are."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n:
            out[k] = to_dask(v, rows, split_last=True)
        else:
            out[k] = v
    return out


def _compute(objs, scheduler):
    if isinstance(scheduler, str):
        with dask.config.set(scheduler=scheduler):
            return dask.compute(*objs)
    return dask.compute(*objs, scheduler=scheduler)


def compute(obj, scheduler="sync"):
    """`obj` (a Dask collection, a Delayed or a tuple of them) computed on
    `scheduler`: "sync", "threads", or a distributed Client.

    The Dask arrays and the other objects (Delayed) of a tuple are computed
    in two calls, each of one kind: dask 2026.8's ``dask.compute`` returns
    the results of a mix of arrays and Delayed objects out of order when
    they are not grouped by kind (``dask.compute(array1, delayed, array2)``
    gives ``(result1, result2, delayed's)``: it merges the graphs by their
    optimizer), whatever xent does."""
    if not isinstance(obj, tuple):
        return _compute((obj,), scheduler)[0]
    kinds = [isinstance(o, da.Array) for o in obj]
    out = [None] * len(obj)
    for kind in (True, False):
        idx = [i for i, k in enumerate(kinds) if k is kind]
        if idx:
            for i, r in zip(idx, _compute([obj[i] for i in idx], scheduler)):
                out[i] = r
    return tuple(out)


def same_float(got, want):
    g, w = np.float64(got), np.float64(want)
    if math.isnan(w):
        return math.isnan(g)
    return g.tobytes() == w.tobytes()


def assert_same(got, want, what="result"):
    """Bitwise equality (NaN-aware: any NaN matches any NaN; -0.0 != 0.0)."""
    if isinstance(want, xent.ReductionState):
        assert isinstance(got, xent.ReductionState), f"{what}: {type(got)}"
        assert got == want, f"{what}: {got!r} != {want!r}"
        assert same_float(got.sum(), want.sum()) and same_float(got.mean(), want.mean())
        assert same_float(got.count, want.count)
        return
    if isinstance(want, float):
        assert np.asarray(got).shape == (), f"{what}: shape {np.asarray(got).shape}"
        assert same_float(got, want), f"{what}: {float(got)!r} != {want!r}"
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != {w.dtype}"
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    if w.dtype.kind == "f":
        gn, wn = np.isnan(g), np.isnan(w)
        assert np.array_equal(gn, wn), f"{what}: NaNs at different places"
        g, w = np.where(gn, 0, g), np.where(wn, 0, w)
    if g.tobytes() != w.tobytes():
        bad = np.flatnonzero(g.reshape(-1) != w.reshape(-1))
        raise AssertionError(f"{what}: {bad.size} of {w.size} elements differ, first at flat "
                             f"index {bad[:5]}: got {g.reshape(-1)[bad[:5]]}, "
                             f"want {w.reshape(-1)[bad[:5]]}")


def lazy(fn, *args, **kwargs):
    """fn(*args, **kwargs) where no XentChunkWarning is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", XentChunkWarning)
        return fn(*args, **kwargs)


def check_lazy_kind(res, reduction, want, chunks=None, what="loss"):
    """What a reduction returns before computing: a 0-d float64 Dask array,
    a Delayed, or a Dask array of the in-memory result's shape and dtype
    (and of the expected chunks)."""
    if reduction in ("sum", "mean"):
        assert isinstance(res, da.Array), f"{what}: {type(res)}"
        assert res.shape == () and res.dtype == np.float64, f"{what}: {res.shape} {res.dtype}"
    elif reduction == "state":
        assert isinstance(res, Delayed), f"{what}: {type(res)}"
    else:
        check_array(res, want, chunks, what)


def check_array(res, want, chunks=None, what="array"):
    assert isinstance(res, da.Array), f"{what}: {type(res)}"
    want = np.asarray(want)
    assert res.shape == want.shape, f"{what}: shape {res.shape} != {want.shape}"
    assert res.dtype == want.dtype, f"{what}: declared dtype {res.dtype} != {want.dtype}"
    if chunks is not None:       # (zero-length chunks may be left out)
        nonzero = tuple(tuple(k for k in c if k) or (0,) for c in chunks)
        got = tuple(tuple(k for k in c if k) or (0,) for c in res.chunks)
        assert got == nonzero, f"{what}: chunks {res.chunks} != {chunks}"


def without(chunks, axis):
    return chunks[:axis] + chunks[axis + 1:]


def check_loss(name, x_np, X, args_np, args_dask, kw_np, kw_dask, reductions=None,
               scheduler="sync", loss_chunks=None, grad=True):
    """The Dask function `name` (and its _with_grad twin) against xent's, for
    each reduction: what each returns before computing, then everything
    computed in one call on `scheduler`, bit for bit."""
    reductions = REDUCTIONS if reductions is None else reductions
    mem, dsk = getattr(xent, name), getattr(xd, name)
    mem_g, dsk_g = getattr(xent, name + "_with_grad"), getattr(xd, name + "_with_grad")
    wants, results, whats = [], [], []
    for red in reductions:
        want = mem(x_np, *args_np, reduction=red, **kw_np)
        res = lazy(dsk, X, *args_dask, reduction=red, **kw_dask)
        check_lazy_kind(res, red, want, loss_chunks, f"{name} {red}")
        wants.append(want)
        results.append(res)
        whats.append(f"{name} {red}")
        if red == "state":   # the state reads as the in-memory sum and mean
            for read in ("sum", "mean"):
                wants.append(mem(x_np, *args_np, reduction=read, **kw_np))
                results.append(dask.delayed(getattr(xent.ReductionState, read))(res))
                whats.append(f"{name} state.{read}()")
        if grad:
            want_l, want_g = mem_g(x_np, *args_np, reduction=red, **kw_np)
            res_l, res_g = lazy(dsk_g, X, *args_dask, reduction=red, **kw_dask)
            check_lazy_kind(res_l, red, want_l, loss_chunks, f"{name}_with_grad {red} loss")
            check_array(res_g, want_g, X.chunks, f"{name}_with_grad {red} grad")
            wants += [want_l, want_g]
            results += [res_l, res_g]
            whats += [f"{name}_with_grad {red} loss", f"{name}_with_grad {red} grad"]
    check_all(results, wants, whats, scheduler)


REDUCTIONS = ["none", "sum", "mean", "state"]
# (row chunking of the logits, scheduler): every chunking on the synchronous
# scheduler, the threaded one on the ragged and empty-chunk ones
CHUNKINGS = [("one", "sync"), ("rows1", "sync"), ("ragged", "sync"), ("empty", "sync"),
             ("random", "sync"), ("ragged", "threads"), ("empty", "threads")]


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def logits(rng, shape, dtype, spread=2.0):
    return (rng.normal(size=shape) * spread).astype(dtype)


def probs(rng, shape, dtype):
    p = rng.random(size=shape) ** 3
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)


def labels(rng, n, c, ignored=0.0, ignore=-100):
    y = rng.integers(0, c, size=n)
    if ignored:
        y[rng.random(n) < ignored] = ignore
        y[0] = ignore                         # at least one ignored row
    return y


C_CE = 11

# softmax cross-entropy cases: (target kind, keyword arguments builder)
CE_CASES = {
    "plain": ("index", lambda r, n, dt: {}),
    "sample_weight": ("index", lambda r, n, dt: dict(sample_weight=r.random(n).astype(dt))),
    "ignore+weight": ("index_ignored", lambda r, n, dt: dict(
        ignore_index=-100, weight=r.uniform(0.2, 3.0, C_CE).astype(dt))),
    "ignore+sw+weight+smoothing": ("index_ignored", lambda r, n, dt: dict(
        ignore_index=-100, weight=r.uniform(0.2, 3.0, C_CE).astype(dt),
        sample_weight=r.random(n).astype(dt), label_smoothing=0.1)),
    "smoothing": ("index", lambda r, n, dt: dict(label_smoothing=0.2)),
    "temperature+z_loss+softcap": ("index", lambda r, n, dt: dict(
        temperature=0.7, z_loss=1e-3, softcap=5.0)),
    "probs+weight": ("probs", lambda r, n, dt: dict(weight=r.uniform(0.2, 3.0, C_CE).astype(dt))),
    "probs+sw+smoothing": ("probs", lambda r, n, dt: dict(
        sample_weight=r.random(n).astype(dt), label_smoothing=0.05)),
}


def ce_data(rng, n, dtype, case):
    kind, kw = CE_CASES[case]
    x = logits(rng, (n, C_CE), dtype)
    if kind == "probs":
        t = probs(rng, (n, C_CE), dtype)
    else:
        t = labels(rng, n, C_CE, ignored=0.15 if kind == "index_ignored" else 0.0)
    return x, t, kw(rng, n, dtype)


# ---------------------------------------------------------------------------
# Softmax cross-entropy
# ---------------------------------------------------------------------------
DTYPES = (np.float32, np.float64)


def matrix(cases, others, chunkings):
    """Every case in both dtypes on ragged chunks (synchronous scheduler),
    and the cases `others` on every other (chunking, scheduler), the dtypes
    taken in turn."""
    m = [("ragged", "sync", case, dt) for case in cases for dt in DTYPES]
    k = 0
    for c, s in chunkings:
        if (c, s) == ("ragged", "sync"):
            continue
        for case in others:
            m.append((c, s, case, DTYPES[k % 2]))
            k += 1
    return m


def ids(m):
    return [f"{c}-{s}-{k}-{np.dtype(d).name}" for c, s, k, d in m]


CE_MATRIX = matrix(CE_CASES, ("ignore+sw+weight+smoothing", "probs+sw+smoothing",
                              "temperature+z_loss+softcap"), CHUNKINGS)


@pytest.mark.parametrize("chunking,scheduler,case,dtype", CE_MATRIX, ids=ids(CE_MATRIX))
def test_softmax_cross_entropy(rng, chunking, scheduler, dtype, case):
    n = n_rows(chunking)
    x, t, kw = ce_data(rng, n, dtype, case)
    rows = row_chunks(n, chunking)
    X = to_dask(x, rows)
    T = to_dask(t, other_chunks(n), split_last=True)     # not the logits' chunks
    check_loss("softmax_cross_entropy", x, X, (t,), (T,), kw, dask_kwargs(kw, n, other_chunks(n)),
               scheduler=scheduler, loss_chunks=(rows,))


def test_softmax_cross_entropy_float16(rng):
    n = N
    x = logits(rng, (n, 17), np.float16)
    y = labels(rng, n, 17, ignored=0.1)
    sw = rng.random(n).astype(np.float16)
    kw = dict(ignore_index=-100, sample_weight=sw, label_smoothing=0.1)
    rows = ragged(n)
    check_loss("softmax_cross_entropy", x, to_dask(x, rows), (y,), (to_dask(y, 64),), kw,
               dask_kwargs(kw, n, 50), loss_chunks=(rows,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_cross_entropy_numpy_inputs(rng, reduction):
    """NumPy arrays are wrapped (one chunk or dask's default chunks)."""
    x, y = logits(rng, (N, 7), np.float64), labels(rng, N, 7)
    want = xent.softmax_cross_entropy(x, y, reduction=reduction)
    res = xd.softmax_cross_entropy(x, y, reduction=reduction)
    check_lazy_kind(res, reduction, want)
    assert_same(compute(res), want)


def test_softmax_cross_entropy_dask_class_weight_and_n_threads(rng):
    """A class weight given as a (chunked) Dask array; an explicit n_threads
    is passed on and changes no bit."""
    x, y = logits(rng, (N, 12), np.float32), labels(rng, N, 12, ignored=0.2)
    w = rng.uniform(0.5, 2.0, 12).astype(np.float32)
    X, Y, W = to_dask(x, ragged(N)), to_dask(y, 33), da.from_array(w, chunks=5)
    for n_threads in (None, 1, 2):
        for red in ("mean", "sum", "none"):
            want = xent.softmax_cross_entropy_with_grad(x, y, weight=w, ignore_index=-100,
                                                        reduction=red)
            got = compute(xd.softmax_cross_entropy_with_grad(
                X, Y, weight=W, ignore_index=-100, reduction=red, n_threads=n_threads), "threads")
            assert_same(got[0], want[0])
            assert_same(got[1], want[1])


def test_softmax_cross_entropy_all_ignored(rng):
    """Every row ignored: mean NaN, gradient of the mean all zero (a zero
    denominator found by the first pass)."""
    x = logits(rng, (60, 5), np.float64)
    y = np.full(60, 3)
    X = to_dask(x, ragged(60))
    for red in REDUCTIONS:
        want = xent.softmax_cross_entropy_with_grad(x, y, ignore_index=3, reduction=red)
        got = compute(xd.softmax_cross_entropy_with_grad(X, y, ignore_index=3, reduction=red))
        assert_same(got[0], want[0])
        assert_same(got[1], want[1])
    assert math.isnan(compute(xd.softmax_cross_entropy(X, y, ignore_index=3)))


def test_softmax_cross_entropy_special_values(rng):
    """-inf masks, a NaN row, an all -inf row, +inf: NaN-aware equality."""
    x = logits(rng, (50, 6), np.float64)
    x[:, 4] = -np.inf                        # a masked class
    x[7] = np.nan
    x[20] = -np.inf
    x[33, 1] = np.inf
    y = labels(rng, 50, 4)
    X = to_dask(x, ragged(50))
    check_loss("softmax_cross_entropy", x, X, (y,), (to_dask(y, 9),), {}, {})
    # the finite rows alone give finite, equal results
    keep = np.setdiff1d(np.arange(50), [7, 20, 33])
    check_loss("softmax_cross_entropy", x[keep], to_dask(x[keep], 10), (y[keep],), (y[keep],),
               {}, {}, ["mean"])


# ---------------------------------------------------------------------------
# Softmax focal loss
# ---------------------------------------------------------------------------
FOCAL_CASES = {
    "plain": lambda r, n, c, dt: ("index", {}),
    "alpha+gamma+ignore+weight": lambda r, n, c, dt: ("index_ignored", dict(
        alpha=0.25, gamma=1.5, ignore_index=-100, weight=r.uniform(0.2, 3.0, c).astype(dt))),
    "probs+weight": lambda r, n, c, dt: ("probs", dict(
        gamma=3.0, weight=r.uniform(0.2, 3.0, c).astype(dt))),
}


FOCAL_MATRIX = matrix(FOCAL_CASES, ("alpha+gamma+ignore+weight", "probs+weight"),
                      [("one", "sync"), ("rows1", "sync"), ("ragged", "threads"),
                       ("empty", "sync")])


@pytest.mark.parametrize("chunking,scheduler,case,dtype", FOCAL_MATRIX, ids=ids(FOCAL_MATRIX))
def test_softmax_focal_loss(rng, chunking, scheduler, dtype, case):
    n, c = n_rows(chunking), 9
    kind, kw = FOCAL_CASES[case](rng, n, c, dtype)
    x = logits(rng, (n, c), dtype)
    t = (probs(rng, (n, c), dtype) if kind == "probs"
         else labels(rng, n, c, ignored=0.2 if kind == "index_ignored" else 0.0))
    rows = row_chunks(n, chunking)
    check_loss("softmax_focal_loss", x, to_dask(x, rows), (t,),
               (to_dask(t, other_chunks(n), split_last=True),), kw, kw, scheduler=scheduler,
               loss_chunks=(rows,))


# ---------------------------------------------------------------------------
# Sigmoid binary cross-entropy and the sigmoid focal loss (elementwise: any
# chunking of any axis is kept)
# ---------------------------------------------------------------------------
C_BCE = 6

BCE_CASES = {
    "plain": lambda r, n, dt: {},
    "pos_weight(C,)+weight(C,)": lambda r, n, dt: dict(
        pos_weight=r.uniform(0.5, 4.0, C_BCE).astype(dt),
        weight=r.uniform(0.1, 2.0, C_BCE).astype(dt)),
    "weight(N,C)+smoothing": lambda r, n, dt: dict(
        weight=r.random((n, C_BCE)).astype(dt), label_smoothing=0.1),
    "pos_weight(N,C)": lambda r, n, dt: dict(pos_weight=r.uniform(0.5, 4.0, (n, C_BCE)).astype(dt)),
}


BCE_MATRIX = matrix(BCE_CASES, ("pos_weight(C,)+weight(C,)",),
                    [("one", "sync"), ("rows1", "sync"), ("empty", "threads"),
                     ("ragged", "threads")])


@pytest.mark.parametrize("chunking,scheduler,case,dtype", BCE_MATRIX, ids=ids(BCE_MATRIX))
def test_sigmoid_binary_cross_entropy(rng, chunking, scheduler, dtype, case):
    n = n_rows(chunking)
    x = logits(rng, (n, C_BCE), dtype)
    t = rng.random((n, C_BCE)).astype(dtype)
    t[: n // 2] = np.round(t[: n // 2])           # hard and soft targets
    kw = BCE_CASES[case](rng, n, dtype)
    rows = row_chunks(n, chunking)
    # the logits chunked along the rows (a row, the last axis, is one chunk);
    # the others not alike
    X = da.from_array(x, chunks=(rows, C_BCE))
    check_loss("sigmoid_binary_cross_entropy", x, X, (t,),
               (to_dask(t, other_chunks(n), split_last=True),), kw,
               {k: (da.from_array(v, chunks=4) if v.ndim == 1 else
                    to_dask(v, other_chunks(n), split_last=True)) if isinstance(v, np.ndarray)
                else v for k, v in kw.items()},
               scheduler=scheduler, loss_chunks=(rows, (C_BCE,)))


@pytest.mark.parametrize("c", [C_BCE, 300])
def test_bce_last_axis_split_is_rechunked(rng, c):
    """BCE's rows are the last axis (from 128 elements a row's partial sum is
    one term): a split last axis is rechunked, with the warning."""
    x = logits(rng, (40, c), np.float32)
    t = rng.random((40, c)).astype(np.float32)
    X = da.from_array(x, chunks=(7, (c // 2, c - c // 2)))
    with pytest.warns(xd.XentChunkWarning, match=r"^`logits` has its class axis 1 in 2 chunks"):
        got = xd.sigmoid_binary_cross_entropy(X, t)
    assert got.compute() == xent.sigmoid_binary_cross_entropy(x, t)


def test_bce_1d_is_rows_of_one_element(rng):
    """1-D logits: every element is a term, so any chunking serves as it is."""
    x = logits(rng, (1001,), np.float32)
    t = rng.random(1001).astype(np.float32)
    X = da.from_array(x, chunks=((1, 500, 3, 497),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = xd.sigmoid_binary_cross_entropy(X, t, reduction="state").compute()
    assert st == xent.sigmoid_binary_cross_entropy(x, t, reduction="state")
    per = xent.sigmoid_binary_cross_entropy(x, t, reduction="none")
    assert st.sum() == math.fsum(per.astype(np.float64).tolist())


def test_sigmoid_binary_cross_entropy_bool_target_3d(rng):
    x = logits(rng, (20, 7, 5), np.float32)
    t = rng.random((20, 7, 5)) < 0.3
    X = da.from_array(x, chunks=((5, 1, 14), (3, 4), 5))
    check_loss("sigmoid_binary_cross_entropy", x, X, (t,), (da.from_array(t, chunks=6),), {}, {},
               loss_chunks=X.chunks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunking", ["one", "rows1", "ragged"])
def test_sigmoid_focal_loss(rng, chunking, dtype):
    n = n_rows(chunking)
    x = logits(rng, (n, 5), dtype)
    t = (rng.random((n, 5)) < 0.4).astype(dtype)
    rows = row_chunks(n, chunking)
    X = to_dask(x, rows)
    for kw in ({}, dict(alpha=0.6, gamma=1.0)):
        check_loss("sigmoid_focal_loss", x, X, (t,), (to_dask(t, other_chunks(n), True),), kw, kw,
                   scheduler="threads" if chunking == "ragged" else "sync", loss_chunks=X.chunks)


# ---------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------
C_DIV = 7


def div_pair(rng, n, dtype, c=C_DIV):
    x = logits(rng, (n, c), dtype)
    z = (x + rng.normal(size=(n, c)) * rng.choice([1e-3, 0.1, 1.0], size=(n, 1))).astype(dtype)
    return x, z


DIV_CASES = {
    "kl": ("kl_divergence", lambda r, n, dt: {}),
    "kl-reverse+temperature": ("kl_divergence", lambda r, n, dt: dict(reverse=True,
                                                                     temperature=2.5)),
    "kl-sample_weight": ("kl_divergence", lambda r, n, dt: dict(
        sample_weight=r.random(n).astype(dt))),
    "kl-target+ignore_index": ("kl_divergence", lambda r, n, dt: dict(
        target=labels(r, n, C_DIV, ignored=0.2, ignore=-1), ignore_index=-1)),
    "kl-reverse+ignore+sw": ("kl_divergence", lambda r, n, dt: dict(
        reverse=True, target=labels(r, n, C_DIV, ignored=0.2, ignore=-1), ignore_index=-1,
        sample_weight=r.random(n).astype(dt))),
    "js": ("js_divergence", lambda r, n, dt: {}),
    "js-beta0.2+temperature": ("js_divergence", lambda r, n, dt: dict(beta=0.2,
                                                                     temperature=0.5)),
    "js-beta0.9+sample_weight": ("js_divergence", lambda r, n, dt: dict(
        beta=0.9, sample_weight=r.random(n).astype(dt))),
}


DIV_MATRIX = matrix(DIV_CASES, ("kl-reverse+ignore+sw", "js-beta0.9+sample_weight"),
                    [("one", "sync"), ("rows1", "sync"), ("empty", "threads"),
                     ("random", "threads"), ("ragged", "threads")])


@pytest.mark.parametrize("chunking,scheduler,case,dtype", DIV_MATRIX, ids=ids(DIV_MATRIX))
def test_divergences(rng, chunking, scheduler, dtype, case):
    name, kwf = DIV_CASES[case]
    n = n_rows(chunking)
    x, z = div_pair(rng, n, dtype)
    kw = kwf(rng, n, dtype)
    rows = row_chunks(n, chunking)
    check_loss(name, x, to_dask(x, rows), (z,), (to_dask(z, other_chunks(n), split_last=True),),
               kw, dask_kwargs(kw, n, other_chunks(n)), scheduler=scheduler,
               loss_chunks=(rows,))


def test_kl_divergence_mixed_dtypes(rng):
    """float32 student, float64 teacher: the float64 compute dtype, a float32
    gradient."""
    x, z = div_pair(rng, N, np.float64)
    x = x.astype(np.float32)
    check_loss("kl_divergence", x, to_dask(x, ragged(N)), (z,), (to_dask(z, 50),), {}, {},
               loss_chunks=(ragged(N),))


# ---------------------------------------------------------------------------
# Three dimensions: the class axis in the middle, chunks along two other axes
# ---------------------------------------------------------------------------
SHAPE3 = (24, 7, 10)          # (batch, classes, positions), axis=1
CHUNKS3 = ((5, 1, 10, 8), 7, (3, 7))


@pytest.mark.parametrize("case", ["ce-index", "ce-ignore+sw", "ce-probs", "focal", "kl", "js"])
def test_three_dimensional_axis1(rng, case):
    x = logits(rng, SHAPE3, np.float64)
    X = da.from_array(x, chunks=CHUNKS3)
    per_sample = (24, 10)
    y = labels(rng, 24 * 10, 7, ignored=0.2).reshape(per_sample)
    Yd = da.from_array(y, chunks=(12, 5))
    kw = dict(axis=1)
    if case == "ce-index":
        name, args, dargs = "softmax_cross_entropy", (y % 7,), (Yd % 7,)
    elif case == "ce-ignore+sw":
        sw = rng.random(per_sample)
        name, args, dargs = "softmax_cross_entropy", (y,), (Yd,)
        kw_d = dict(kw, ignore_index=-100, sample_weight=da.from_array(sw, chunks=(7, 4)))
        kw = dict(kw, ignore_index=-100, sample_weight=sw)
    elif case == "ce-probs":
        p = np.moveaxis(probs(rng, (24, 10, 7), np.float64), -1, 1)
        name, args, dargs = "softmax_cross_entropy", (p,), (da.from_array(p, chunks=(6, 3, 5)),)
    elif case == "focal":
        name, args, dargs = "softmax_focal_loss", (y % 7,), (Yd % 7,)
    else:
        z = x + rng.normal(size=SHAPE3) * 0.3
        name = "kl_divergence" if case == "kl" else "js_divergence"
        args, dargs = (z,), (da.from_array(z, chunks=(6, 3, 5)),)
    if case != "ce-ignore+sw":
        kw_d = kw
    check_loss(name, x, X, args, dargs, kw, kw_d, loss_chunks=without(CHUNKS3_NORM, 1))


CHUNKS3_NORM = ((5, 1, 10, 8), (7,), (3, 7))


def test_three_dimensional_last_axis(rng):
    """(batch, positions, classes) chunked along both leading axes."""
    x = logits(rng, (16, 12, 9), np.float32)
    X = da.from_array(x, chunks=((3, 13), (5, 1, 6), 9))
    y = labels(rng, 16 * 12, 9, ignored=0.1).reshape(16, 12)
    kw = dict(ignore_index=-100)
    check_loss("softmax_cross_entropy", x, X, (y,), (da.from_array(y, chunks=(8, 4)),), kw, kw,
               loss_chunks=((3, 13), (5, 1, 6)))


def test_three_dimensional_axis1_stats_and_primitives(rng):
    x = logits(rng, SHAPE3, np.float64)
    X = da.from_array(x, chunks=CHUNKS3)
    y = labels(rng, 240, 7, ignored=0.2).reshape(24, 10)
    st = lazy(xd.token_stats, X, da.from_array(y, chunks=(5, 5)), axis=1, ignore_index=-100,
              temperature=1.5)
    want = xent.token_stats(x, y, axis=1, ignore_index=-100, temperature=1.5)
    for f, w, g in zip(want._fields, want, compute(tuple(st))):
        assert_same(g, w, f)
    for fn in ("softmax", "log_softmax"):
        res = lazy(getattr(xd, fn), X, axis=1)
        check_array(res, getattr(xent, fn)(x, axis=1), CHUNKS3_NORM, fn)
        assert_same(compute(res), getattr(xent, fn)(x, axis=1), fn)
    for keepdims in (False, True):
        res = lazy(xd.logsumexp, X, axis=1, keepdims=keepdims)
        want = xent.logsumexp(x, axis=1, keepdims=keepdims)
        check_array(res, want)
        assert_same(compute(res), want)


# ---------------------------------------------------------------------------
# Means against math.fsum of the per-sample losses (independent of the
# in-memory "mean": an exact sum rounded once, divided once)
# ---------------------------------------------------------------------------
def fsum_case(rng, family, dtype):
    """(name, logits, positional args, kwargs, denominator as an exact float)."""
    n = N
    if family == "ce":
        x, y = logits(rng, (n, C_CE), dtype), labels(rng, n, C_CE)
        return "softmax_cross_entropy", x, (y,), {}, float(n)
    if family == "ce-ignore":
        x, y = logits(rng, (n, C_CE), dtype), labels(rng, n, C_CE, ignored=0.3)
        return "softmax_cross_entropy", x, (y,), dict(ignore_index=-100), float((y != -100).sum())
    if family == "ce-sample_weight":
        x, y = logits(rng, (n, C_CE), dtype), labels(rng, n, C_CE)
        sw = rng.random(n).astype(dtype)
        return ("softmax_cross_entropy", x, (y,), dict(sample_weight=sw),
                math.fsum(sw.astype(float)))
    if family == "ce-probs":
        x, p = logits(rng, (n, C_CE), dtype), probs(rng, (n, C_CE), dtype)
        return "softmax_cross_entropy", x, (p,), dict(label_smoothing=0.1), float(n)
    if family == "focal":
        x, y = logits(rng, (n, 9), dtype), labels(rng, n, 9)
        return "softmax_focal_loss", x, (y,), dict(gamma=2.0), float(n)
    if family == "bce":
        x, t = logits(rng, (n, C_BCE), dtype), rng.random((n, C_BCE)).astype(dtype)
        return ("sigmoid_binary_cross_entropy", x, (t,),
                dict(pos_weight=np.linspace(0.5, 3, C_BCE).astype(dtype)), float(x.size))
    if family == "sigmoid_focal":
        x, t = logits(rng, (n, 5), dtype), (rng.random((n, 5)) < 0.5).astype(dtype)
        return "sigmoid_focal_loss", x, (t,), {}, float(x.size)
    if family == "kl":
        x, z = div_pair(rng, n, dtype)
        return "kl_divergence", x, (z,), {}, float(n)
    if family == "kl-ignore":
        x, z = div_pair(rng, n, dtype)
        y = labels(rng, n, C_DIV, ignored=0.25, ignore=-1)
        return ("kl_divergence", x, (z,), dict(target=y, ignore_index=-1),
                float((y != -1).sum()))
    if family == "kl-sample_weight":
        x, z = div_pair(rng, n, dtype)
        sw = rng.random(n).astype(dtype)
        return ("kl_divergence", x, (z,), dict(sample_weight=sw, reverse=True),
                math.fsum(sw.astype(float)))
    if family == "js":
        x, z = div_pair(rng, n, dtype)
        return "js_divergence", x, (z,), dict(beta=0.3), float(n)
    raise ValueError(family)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", ["ce", "ce-ignore", "ce-sample_weight", "ce-probs", "focal",
                                    "bce", "sigmoid_focal", "kl", "kl-ignore",
                                    "kl-sample_weight", "js"])
def test_mean_is_fsum_over_denominator(rng, family, dtype):
    name, x, args, kw, den = fsum_case(rng, family, dtype)
    fn = getattr(xd, name)
    X = to_dask(x, ragged(x.shape[0]))
    dargs = tuple(to_dask(a, other_chunks(x.shape[0]), True) for a in args)
    dkw = dask_kwargs(kw, x.shape[0], 31)
    none = compute(fn(X, *dargs, reduction="none", **dkw))
    total = math.fsum(np.asarray(none).astype(float).ravel())
    got_sum = compute(fn(X, *dargs, reduction="sum", **dkw))
    got_mean = compute(fn(X, *dargs, reduction="mean", **dkw))
    got_state = compute(fn(X, *dargs, reduction="state", **dkw))
    assert same_float(got_sum, total), (float(got_sum), total)
    assert same_float(got_mean, total / den), (float(got_mean), total / den)
    assert same_float(got_state.count, den)
    assert same_float(got_state.mean(), total / den)
    # and the in-memory function agrees (the contract's oracle)
    assert same_float(getattr(xent, name)(x, *args, reduction="sum", **kw), total)


# ---------------------------------------------------------------------------
# Token statistics and the primitives
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("options", ["no-target", "target", "target+ignore+temperature"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunking,scheduler", [("one", "sync"), ("rows1", "sync"),
                                                ("ragged", "threads"), ("empty", "sync")],
                         ids=["one-sync", "rows1-sync", "ragged-threads", "empty-sync"])
def test_token_stats(rng, chunking, scheduler, dtype, options):
    n = n_rows(chunking)
    x = logits(rng, (n, 13), dtype)
    x[3, 5] = x[3, 2]                        # a tie
    x[min(9, n - 1)] = -np.inf               # an all -inf row: argmax -1
    rows = row_chunks(n, chunking)
    X = to_dask(x, rows)
    kw = {}
    y = labels(rng, n, 13, ignored=0.2 if "ignore" in options else 0.0)
    if options == "target+ignore+temperature":
        kw = dict(ignore_index=-100, temperature=0.8)
    if options == "no-target":
        want, st = xent.token_stats(x), lazy(xd.token_stats, X)
    else:
        want = xent.token_stats(x, y, **kw)
        st = lazy(xd.token_stats, X, to_dask(y, other_chunks(n)), **kw)
    assert isinstance(st, xent.TokenStats)
    for f, w, s in zip(want._fields, want, st):
        if w is None:
            assert s is None, f
        else:
            check_array(s, w, (rows,), f)
    for f, w, g in zip(want._fields, want, compute(tuple(st), scheduler)):
        if w is not None:
            assert_same(g, w, f)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("chunking", ["one", "rows1", "ragged", "empty"])
def test_softmax_log_softmax(rng, chunking, dtype, fn):
    n = n_rows(chunking)
    x = logits(rng, (n, 21), dtype)
    x[1, :4] = -np.inf
    rows = row_chunks(n, chunking)
    X = to_dask(x, rows)
    want = getattr(xent, fn)(x)
    res = lazy(getattr(xd, fn), X)
    check_array(res, want, (rows, (21,)), fn)
    assert_same(compute(res, "threads" if chunking == "ragged" else "sync"), want, fn)


@pytest.mark.parametrize("return_sign", [False, True])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("b", [None, "full", "classes"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp(rng, dtype, b, keepdims, return_sign):
    n = N
    x = logits(rng, (n, 15), dtype)
    x[4] = -np.inf
    rows = ragged(n)
    X = to_dask(x, rows)
    kw = dict(keepdims=keepdims, return_sign=return_sign)
    if b == "full":
        bb = rng.normal(size=(n, 15))          # signed weights: signs +1, -1
        bb[11] = 0.0                           # a zero sum: sign 0
        kw_np, kw_d = dict(kw, b=bb), dict(kw, b=to_dask(bb, other_chunks(n), True))
    elif b == "classes":
        bb = np.linspace(-0.5, 2.0, 15)        # (C,), broadcast
        kw_np, kw_d = dict(kw, b=bb), dict(kw, b=da.from_array(bb, chunks=4))
    else:
        kw_np = kw_d = kw
    want = xent.logsumexp(x, **kw_np)
    res = lazy(xd.logsumexp, X, **kw_d)
    if return_sign:
        assert isinstance(res, tuple) and len(res) == 2
        for r, w in zip(res, want):
            check_array(r, w)
        got = compute(res)
        assert_same(got[0], want[0], "logsumexp")
        assert_same(got[1], want[1], "sign")
    else:
        check_array(res, want, (rows, (1,)) if keepdims else (rows,))
        assert_same(compute(res), want)


def test_one_dimensional_logits(rng):
    """A single row (1-d logits): 0-d per-sample results."""
    x = logits(rng, (9,), np.float64)
    z = x + rng.normal(size=9) * 0.1
    X = da.from_array(x)
    assert_same(compute(lazy(xd.logsumexp, X)), np.asarray(xent.logsumexp(x)))
    y = np.int64(4)
    check_loss("softmax_cross_entropy", x, X, (y,), (y,), {}, {})
    check_loss("kl_divergence", x, X, (z,), (z,), {}, {})
    assert_same(compute(lazy(xd.softmax, X)), xent.softmax(x))


# ---------------------------------------------------------------------------
# The class axis split across chunks: rechunked, with a warning, same bits
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_axis_split_losses(rng, reduction):
    n = 90
    rows = ragged(n)
    x, y = logits(rng, (n, 16), np.float32), labels(rng, n, 16, ignored=0.2)
    X = da.from_array(x, chunks=(rows, (5, 11)))
    kw = dict(ignore_index=-100, label_smoothing=0.1)
    for fn in ("softmax_cross_entropy", "softmax_focal_loss"):
        kw_f = kw if fn == "softmax_cross_entropy" else dict(ignore_index=-100)
        want = getattr(xent, fn)(x, y, reduction=reduction, **kw_f)
        with pytest.warns(XentChunkWarning, match=r"class axis 1 in 2 chunks"):
            res = getattr(xd, fn)(X, to_dask(y, 17), reduction=reduction, **kw_f)
        assert_same(compute(res), want, fn)
        want_l, want_g = getattr(xent, fn + "_with_grad")(x, y, reduction=reduction, **kw_f)
        with pytest.warns(XentChunkWarning, match="rechunked"):
            res_l, res_g = getattr(xd, fn + "_with_grad")(X, y, reduction=reduction, **kw_f)
        assert res_g.chunks == (rows, (16,))
        got_l, got_g = compute((res_l, res_g), "threads")
        assert_same(got_l, want_l, fn)
        assert_same(got_g, want_g, fn + " grad")
    z = x + rng.normal(size=x.shape).astype(np.float32)
    for fn in ("kl_divergence", "js_divergence"):
        want_l, want_g = getattr(xent, fn + "_with_grad")(x, z, reduction=reduction)
        with pytest.warns(XentChunkWarning, match="class axis"):
            res_l, res_g = getattr(xd, fn + "_with_grad")(
                X, da.from_array(z, chunks=(30, 3)), reduction=reduction)
        got_l, got_g = compute((res_l, res_g))
        assert_same(got_l, want_l, fn)
        assert_same(got_g, want_g, fn + " grad")


def test_class_axis_split_rowwise(rng):
    x = logits(rng, (24, 9, 10), np.float64)       # class axis 1, split in three
    X = da.from_array(x, chunks=(5, 3, 4))
    y = rng.integers(0, 9, (24, 10))
    with pytest.warns(XentChunkWarning, match=r"class axis 1 in 3 chunks"):
        st = xd.token_stats(X, y, axis=1)
    for f, w, g in zip(st._fields, xent.token_stats(x, y, axis=1), compute(tuple(st))):
        assert_same(g, w, f)
    for fn in ("softmax", "log_softmax"):
        with pytest.warns(XentChunkWarning, match=r"class axis 1 in 3 chunks"):
            res = getattr(xd, fn)(X, axis=1)
        assert_same(compute(res), getattr(xent, fn)(x, axis=1), fn)
    with pytest.warns(XentChunkWarning, match=r"class axis 1 in 3 chunks"):
        res = xd.logsumexp(X, axis=1, keepdims=True)
    assert_same(compute(res), xent.logsumexp(x, axis=1, keepdims=True))


@pytest.mark.parametrize("fn", ["softmax_cross_entropy", "kl_divergence", "token_stats",
                                "softmax", "logsumexp"])
def test_chunk_warning_points_at_the_caller(rng, fn):
    """The warning's stacklevel names the line that called xent.dask (as
    XentChunkWarning's stacklevel=4 intends), not a line inside xent.dask."""
    x = logits(rng, (20, 6), np.float64)
    X = da.from_array(x, chunks=(10, 3))
    args = {"softmax_cross_entropy": (np.zeros(20, int),), "kl_divergence": (x,),
            "token_stats": (), "softmax": (), "logsumexp": ()}[fn]
    with pytest.warns(XentChunkWarning) as record:
        getattr(xd, fn)(X, *args)
    assert [w.filename for w in record] == [__file__], [(w.filename, w.lineno) for w in record]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def raises_eagerly_or_on_compute(exc, match, build):
    """`build()` raises `exc`, or computing its result does."""
    with pytest.raises(exc, match=match):
        compute(build())


def test_wrong_shapes_raise(rng):
    x = logits(rng, (30, 5), np.float64)
    X = to_dask(x, (10, 20))
    y = labels(rng, 30, 5)
    with pytest.raises(ValueError, match="`target`"):
        xd.softmax_cross_entropy(X, y[:29])                        # class indices, short
    with pytest.raises(ValueError, match="`target`"):
        xd.softmax_cross_entropy(X, np.zeros((30, 6)))             # probabilities, wide
    with pytest.raises(ValueError, match="`target`"):
        xd.softmax_focal_loss_with_grad(X, da.from_array(y[:, None]))
    with pytest.raises(ValueError, match="`sample_weight`"):
        xd.softmax_cross_entropy(X, y, sample_weight=np.ones(31))
    with pytest.raises(ValueError, match="`target_logits`"):
        xd.kl_divergence(X, np.zeros((30, 4)))
    with pytest.raises(ValueError, match="`target`"):
        xd.kl_divergence(X, x, target=np.zeros(29, int), ignore_index=-1)
    with pytest.raises(ValueError, match="`sample_weight`"):
        xd.js_divergence_with_grad(X, x, sample_weight=np.ones((30, 5)))
    with pytest.raises(ValueError, match="`target`"):
        xd.sigmoid_binary_cross_entropy(X, np.zeros((30, 6)))
    with pytest.raises(ValueError, match="`target`"):
        xd.token_stats(X, y[:10])
    with pytest.raises(ValueError, match="`reduction`"):
        xd.softmax_cross_entropy(X, y, reduction="avg")
    # errors of the in-memory function reach the caller on compute
    with pytest.raises(xent.LabelError):
        compute(xd.softmax_cross_entropy(X, y + 5))
    with pytest.raises(ValueError, match="`temperature`"):
        compute(xd.softmax_cross_entropy(X, y, temperature=0.0))
    with pytest.raises(TypeError):
        xd.softmax_cross_entropy_with_grad(X, y, grad_out=np.empty_like(x))


@pytest.mark.parametrize("fn,target", [
    ("softmax_cross_entropy", "target"),
    ("kl_divergence", "target_logits"),
    ("js_divergence", "target_logits"),
    ("sigmoid_binary_cross_entropy", "target"),
])
def test_broadcastable_but_wrong_shape_target_raises(rng, fn, target):
    """A target of shape (C,) is refused by the in-memory function (it must
    have the logits' shape); xent.dask must not return a value for it."""
    x = logits(rng, (30, 5), np.float64)
    t = np.full(5, 0.2)
    with pytest.raises(ValueError, match=f"`{target}`"):
        getattr(xent, fn)(x, t)
    raises_eagerly_or_on_compute(ValueError, f"`{target}`",
                                 lambda: getattr(xd, fn)(to_dask(x, 10), t))


@pytest.mark.parametrize("fn", ["softmax_cross_entropy", "softmax_focal_loss", "kl_divergence",
                                "js_divergence"])
def test_no_classes_raises_value_error(rng, fn):
    """Logits with an empty class axis: the in-memory ValueError, not a
    ZeroDivisionError while building the graph."""
    x = np.zeros((30, 0))
    arg = np.zeros(30, int) if fn.startswith("softmax") else x
    with pytest.raises(ValueError, match="at least one class"):
        getattr(xent, fn)(x, arg)
    raises_eagerly_or_on_compute(ValueError, "at least one class",
                                 lambda: getattr(xd, fn)(to_dask(x, 10), arg))


# ---------------------------------------------------------------------------
# distributed: a 2-process LocalCluster, started once for the module
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip(
        "distributed", reason="the distributed scheduler tests need `distributed` "
                              "(pip install distributed)")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        c = distributed.Client(cluster, set_as_default=False)
        try:
            yield c
        finally:
            c.close()
    finally:
        cluster.close()


def check_all(results, wants, whats, scheduler):
    """Compute `results` in one call and compare each with its `want`."""
    got = compute(tuple(results), scheduler)
    failures = []
    for g, w, what in zip(got, wants, whats):
        try:
            assert_same(g, w, what)
        except AssertionError as e:
            failures.append(str(e).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_distributed_softmax_cross_entropy(client, rng):
    n = 400
    x, y = logits(rng, (n, 23), np.float32), labels(rng, n, 23, ignored=0.1)
    sw = rng.random(n).astype(np.float32)
    rows = ragged(n)
    X, Y, SW = to_dask(x, rows), to_dask(y, 64), to_dask(sw, 50)
    kw = dict(ignore_index=-100, label_smoothing=0.1)
    results, wants, whats = [], [], []
    for red in REDUCTIONS:
        want = xent.softmax_cross_entropy(x, y, reduction=red, **kw)
        res = xd.softmax_cross_entropy(X, Y, reduction=red, **kw)
        check_lazy_kind(res, red, want, (rows,))
        results.append(res)
        wants.append(want)
        whats.append(f"distributed {red}")
    for red in ("mean", "none"):           # the mean's gradient: a first pass for the denominator
        want = xent.softmax_cross_entropy_with_grad(x, y, sample_weight=sw, reduction=red, **kw)
        res = xd.softmax_cross_entropy_with_grad(X, Y, sample_weight=SW, reduction=red, **kw)
        results += res
        wants += want
        whats += [f"distributed grad {red} loss", f"distributed grad {red} grad"]
    check_all(results, wants, whats, client)
    # the workers really are two other processes
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


def test_distributed_bce_kl_token_stats(client, rng):
    n = 300
    rows = ragged(n)
    x = logits(rng, (n, 8), np.float64)
    t = rng.random((n, 8))
    pw = np.linspace(0.5, 2.0, 8)
    results, wants, whats = [], [], []
    X = da.from_array(x, chunks=(rows, 8))       # a BCE row (the last axis) in one chunk
    for red in ("mean", "sum", "state"):
        wants += xent.sigmoid_binary_cross_entropy_with_grad(x, t, pos_weight=pw, reduction=red)
        results += xd.sigmoid_binary_cross_entropy_with_grad(
            X, to_dask(t, 70, True), pos_weight=pw, reduction=red)
        whats += [f"bce {red}", f"bce grad {red}"]
    X = to_dask(x, rows)
    z = x + rng.normal(size=x.shape) * 0.2
    y = labels(rng, n, 8, ignored=0.2, ignore=-1)
    for red in REDUCTIONS:
        wants += xent.kl_divergence_with_grad(x, z, target=y, ignore_index=-1, reduction=red)
        results += xd.kl_divergence_with_grad(X, to_dask(z, 45, True), target=to_dask(y, 80),
                                              ignore_index=-1, reduction=red)
        whats += [f"kl {red}", f"kl grad {red}"]
    want = xent.token_stats(x, y, ignore_index=-1)
    wants += list(want)
    results += list(xd.token_stats(X, to_dask(y, 80), ignore_index=-1))
    whats += [f"token_stats.{f}" for f in want._fields]
    check_all(results, wants, whats, client)


# ---------------------------------------------------------------------------
# from_npy: chunks read by the tasks that compute on them
# ---------------------------------------------------------------------------
def _npy_files(tmp_path, rng, n=500, c=37):
    x = logits(rng, (n, c), np.float32)
    y = labels(rng, n, c, ignored=0.1)
    z = (x + rng.normal(size=(n, c))).astype(np.float32)
    paths = {}
    for name, a in (("x", x), ("y", y), ("z", z)):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], a)
    return x, y, z, paths


def test_from_npy_chunks_and_errors(tmp_path, rng):
    x, y, z, p = _npy_files(tmp_path, rng)
    X = xd.from_npy(p["x"], chunk_rows=120)
    assert X.chunks == ((120, 120, 120, 120, 20), (37,)) and X.dtype == np.float32
    assert np.array_equal(X.compute(scheduler="sync"), x)
    assert xd.from_npy(p["x"]).chunks == ((500,), (37,))
    with pytest.raises(ValueError, match=r"^`chunk_rows` must be at least 1; got 0\.$"):
        xd.from_npy(p["x"], chunk_rows=0)


@pytest.mark.parametrize("chunk_rows", [1000, 120, 7])
def test_from_npy_is_read_in_the_call_and_bitwise(tmp_path, rng, chunk_rows):
    x, y, z, p = _npy_files(tmp_path, rng)
    X, Y, Z = (xd.from_npy(p[k], chunk_rows=chunk_rows) for k in ("x", "y", "z"))
    loss = xd.softmax_cross_entropy(X, Y, ignore_index=-100)
    # one task per chunk: the call reads its rows (none of from_npy's own
    # read-and-concatenate tasks is in the graph)
    keys = [str(k) for k in dict(loss.__dask_graph__())]
    assert not any("concatenate" in k for k in keys)
    assert sum(k.startswith("_block_call") for k in keys) == len(X.chunks[0])
    if len(X.chunks[0]) > 1:            # rechunked, the file's own tasks come back
        rechunked = xd.softmax_cross_entropy(X.rechunk(50), Y, ignore_index=-100)
        assert any("concatenate" in str(k) for k in dict(rechunked.__dask_graph__()))
    assert loss.compute(scheduler="sync") == xent.softmax_cross_entropy(x, y, ignore_index=-100)
    kl, g = xd.kl_divergence_with_grad(X, Z, target=Y, ignore_index=-100)
    want_kl, want_g = xent.kl_divergence_with_grad(x, z, target=y, ignore_index=-100)
    assert kl.compute(scheduler="threads") == want_kl
    assert np.array_equal(g.compute(scheduler="threads"), want_g)
    ts = xd.token_stats(X, Y, ignore_index=-100)
    assert np.array_equal(ts.logprob.compute(scheduler="sync"),
                          xent.token_stats(x, y, ignore_index=-100).logprob)


def test_distributed_from_npy(client, tmp_path, rng):
    x, y, z, p = _npy_files(tmp_path, rng)
    X, Y = xd.from_npy(p["x"], chunk_rows=64), xd.from_npy(p["y"], chunk_rows=64)
    got = client.compute(xd.softmax_cross_entropy(X, Y, ignore_index=-100)).result()
    assert got == xent.softmax_cross_entropy(x, y, ignore_index=-100)
    st = client.compute(xd.softmax_cross_entropy(X, Y, ignore_index=-100,
                                                 reduction="state")).result()
    assert st == xent.softmax_cross_entropy(x, y, ignore_index=-100, reduction="state")
