"""Path equivalence: every path a call can take gives the bits of another
way to compute the same call.

A call takes one path, chosen from its kernel, shape, dtype and thread count
(``xent_plan`` in xent/csrc/_xent_tiles.h; ``xent._dispatch.path`` shows the
choice without running anything).  ``PATHS`` below declares each path with
the oracle its results are checked against:

==============  =============================================  ==========================
path            which calls                                    oracle (bitwise)
==============  =============================================  ==========================
small call      plain native float32/float64 ndarray of one    the same call on the
                tile at most (``_dispatch.SMALL_CALL_ELEMS``), general path
                run by ``_kernels.small_*`` on the calling     (``SMALL_CALL_ELEMS = 0``)
                thread
lanes           C <= 32: rows as SIMD lanes                    each row computed alone;
                                                               the same rows beside other
                                                               neighbours
row groups      C up to a block (4096 float32, 1024 float64):  as for lanes
                rows' statistics computed a few at a time
one row         longer rows, one at a time                     as for lanes
column split    class indices and the softmax primitives,      the one-thread call, and
                n_threads > 1, fewer rows than threads,        ``xent.reference`` values
                C >= 65536 (not float16)                       (rtol)
16-bit          float16 logits, widened a tile at a time       the float32 call on
                                                               ``x.astype(float32)``: the
                                                               same losses, the gradient /
                                                               softmax rounded to float16
==============  =============================================  ==========================

"Bitwise": same dtype and shape, the same bits (``.view(uint16/32/64)``), NaN
where NaN; a Python float is compared as a float64.  On the 16-bit path NaN
payloads are not compared (numpy's float16 rounding of a NaN is the oracle
there).

Sections:

1. the paths and the shapes that take each path: every geometry of the
   matrix is checked with ``_dispatch.path``, so the matrix cannot test the
   general path twice;
2. the matrix: for each path, each kernel that has it (class-index CE with
   and without weight, sample_weight, ignore_index, label_smoothing and label
   dtypes; probability CE with a weight / smoothing; BCE with weight and
   pos_weight of shape (C,) or the logits'; logsumexp, log_softmax, softmax),
   every reduction, float32 and float64 (16-bit: float16): the call against
   its oracle.  The row paths run batches of 1 to 17 rows with special rows
   (``-inf`` masks, a NaN, a ``+inf``, all ``-inf``, ties) on 1 and 2 threads:
   each row alone for the "none" losses and the "none" / "sum" gradients,
   and for every reduction the same rows beside other neighbours (the "mean"
   denominator does not depend on the logits).  The split runs 1 and 3 rows
   on 2 and 4 threads (3 rows on 2 threads: the tile loop), 16-bit 1 to 3
   threads;
3. the small-call path: what ``_api`` decides first (``_validate``'s rules),
   what ``_kernels.small_index`` / ``small_dense`` / ``small_softmax``
   decline (NotImplemented, the general path's result or error follows),
   ``grad_out`` / ``out`` (in place too), bool BCE targets;
4. the column split: special rows (``-inf`` masks, a NaN row, ties), in place,
   ignored rows, the public functions' default threads;
5. 16-bit: the softmax primitives along axis 0, in place and strided
   buffers, no float32 copy of the logits (the widening and narrowing
   themselves, on every SIMD variant: tests/test_half_bits.py).

Values against the reference on every path's shapes are also
tests/test_against_reference.py's job; the split is checked here against it
because a split that is bitwise stable across thread counts could still be
wrong in the same way on all of them.
"""

import tracemalloc

import numpy as np
import pytest

import xent
from xent import _api, _dispatch, _kernels, reference

F16, F32, F64 = np.float16, np.float32, np.float64
try:
    from ml_dtypes import bfloat16 as BF16
except ImportError:                  # bfloat16 exists only with ml_dtypes installed
    BF16 = None
# the 16-bit storages: float16, and bfloat16 where ml_dtypes is installed
SIXTEEN_BIT = (F16,) if BF16 is None else (F16, BF16)
DTYPES = (F32, F64)
REDUCTIONS = ("mean", "sum", "none")
OPENMP = xent.config()["openmp"]
needs_openmp = pytest.mark.skipif(not OPENMP, reason="the split runs only with OpenMP threads")
SOFTMAX_FNS = {0: xent.logsumexp, 1: xent.log_softmax, 2: xent.softmax}


# --------------------------------------------------------------------------
# comparing results
# --------------------------------------------------------------------------

def bits(a):
    """The bits of an array (a Python float as a float64) as unsigned integers."""
    a = np.ascontiguousarray(np.asarray(a))
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same(a, b, what="", nan_payloads=True):
    """Bitwise equal: same dtype and shape, NaN where NaN, the same bits (of
    the NaNs too unless `nan_payloads` is False)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    na, nb = np.isnan(a), np.isnan(b)
    np.testing.assert_array_equal(na, nb, err_msg=f"{what}: NaN positions differ")
    keep = ~na if not nan_payloads else np.ones(a.shape, bool)
    ba, bb = bits(a)[keep], bits(b)[keep]
    if not np.array_equal(ba, bb):
        diff = np.flatnonzero(ba != bb)
        raise AssertionError(f"{what}: {diff.size} of {ba.size} values differ, first at flat "
                             f"{diff[:5]}: {a[keep][diff[:3]]} != {b[keep][diff[:3]]}")


def assert_all_same(got, want, what="", nan_payloads=True):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert_same(a, b, f"{what} result {k}", nan_payloads)


# --------------------------------------------------------------------------
# calls
# --------------------------------------------------------------------------

LOSS = {"index": xent.softmax_cross_entropy, "prob": xent.softmax_cross_entropy,
        "bce": xent.sigmoid_binary_cross_entropy}
FUSED = {"index": xent.softmax_cross_entropy_with_grad,
         "prob": xent.softmax_cross_entropy_with_grad,
         "bce": xent.sigmoid_binary_cross_entropy_with_grad}


def reductions(kernel):
    return (None,) if kernel == "softmax" else REDUCTIONS


def outputs(kernel, x, target, reduction, n_threads, kw):
    """Every result of a call: (loss, the fused call's loss, its gradient),
    or the softmax primitive's one result (``kw["mode"]``: 0 logsumexp, 1
    log_softmax, 2 softmax; with `n_threads`, through the public functions'
    own entry, which takes a thread count)."""
    if kernel == "softmax":
        if n_threads is None:
            return (SOFTMAX_FNS[kw["mode"]](x),)
        return (_api._softmax_family(x, -1, None, kw["mode"], n_threads),)
    loss = LOSS[kernel](x, target, reduction=reduction, n_threads=n_threads, **kw)
    fl, fg = FUSED[kernel](x, target, reduction=reduction, n_threads=n_threads, **kw)
    return loss, fl, fg


def row_results(kernel, x, target, reduction, n_threads, kw):
    """The results of a call that belong to its rows: the per-row losses
    ("none") and the gradient, or the softmax primitive's result."""
    res = outputs(kernel, x, target, reduction, n_threads, kw)
    return res if kernel == "softmax" or reduction == "none" else res[2:]


def eps_of(kw):
    return float(kw.get("label_smoothing", 0.0))


# --------------------------------------------------------------------------
# targets and options
# --------------------------------------------------------------------------
# Options are written as ids ("w": a class weight; "s": a sample weight;
# "c" / "full": a BCE weight of shape (C,) / of the logits' shape; "labels":
# the class indices' dtype) and made into arrays for each call.

def index_call(n, C, opts, rng, wdtype):
    """Class indices and keyword arguments: a class weight in [0.25, 2), a
    sample weight with zeros on odd rows, ignored rows every third (the last
    row kept, so "mean" has a denominator)."""
    y = rng.integers(0, C, n)
    kw = {}
    for k, v in opts.items():
        if k == "weight":
            kw[k] = rng.uniform(0.25, 2.0, C).astype(wdtype)
        elif k == "sample_weight":
            kw[k] = rng.uniform(0.5, 3.0, n).astype(wdtype)
            kw[k][1::2] = 0
        elif k == "ignore_index":
            y[:-1:3] = v
            if y[-1] == v:
                y[-1] = (v + 1) % C
            kw[k] = v
        elif k != "labels":
            kw[k] = v
    return y.astype(opts.get("labels", np.int64)), kw


def weights(opts, shape, wdtype, rng):
    """The weight / pos_weight ids made arrays ("c": one per class, the last
    axis; "full": the logits' shape), with zeros and negative entries."""
    kw = dict(opts)
    for k in ("weight", "pos_weight"):
        if k in kw:
            w = rng.uniform(0.0, 3.0, shape[-1:] if kw[k] == "c" else shape).astype(wdtype)
            w.reshape(-1)[::7] = 0
            w.reshape(-1)[3::11] = -0.5
            kw[k] = w
    return kw


def prob_call(shape, opts, rng, tdtype, wdtype):
    """Probability targets (rows summing to 1) and keyword arguments."""
    p = rng.random(shape).astype(tdtype)
    return (p / p.sum(axis=-1, keepdims=True)).astype(tdtype), weights(opts, shape, wdtype, rng)


def bce_call(shape, opts, rng, tdtype, wdtype):
    """Soft targets, every fifth 1, and keyword arguments."""
    t = rng.random(shape).astype(tdtype)
    t.reshape(-1)[::5] = 1
    return t, weights(opts, shape, wdtype, rng)


def make_call(kernel, opts, x, rng, tdtype=None, wdtype=None):
    """(target, kwargs) of a call of `kernel` with the option ids `opts` on `x`."""
    tdtype = tdtype or x.dtype
    wdtype = wdtype or x.dtype
    if kernel == "index":
        return index_call(x.shape[0], x.shape[-1], opts, rng, wdtype)
    if kernel == "prob":
        return prob_call(x.shape, opts, rng, tdtype, wdtype)
    if kernel == "bce":
        return bce_call(x.shape, opts, rng, tdtype, wdtype)
    return None, dict(opts)


def take_rows(target, kw, rows):
    """The target and the per-row keyword arguments of some rows of a call."""
    kw = dict(kw)
    if "sample_weight" in kw:
        kw["sample_weight"] = kw["sample_weight"][rows]
    return (None if target is None else target[rows]), kw


def case_id(kernel, opts):
    if kernel == "softmax":
        return ("logsumexp", "log_softmax", "softmax")[opts["mode"]]
    parts = [kernel]
    for k, v in opts.items():
        if k == "labels":
            parts.append(np.dtype(v).name)
        elif k in ("weight", "sample_weight"):
            parts.append(k if v in ("w", "s") else f"{k}={v}")
        else:
            parts.append(f"{k}={v}")
    return "-".join(parts)


def fits(opts, C):
    labels = opts.get("labels")
    return labels is None or np.iinfo(labels).max >= C - 1


INDEX_CASES = [{}, {"weight": "w"}, {"ignore_index": -100}, {"ignore_index": 1},
               {"label_smoothing": 0.1},
               {"weight": "w", "ignore_index": 2, "label_smoothing": 0.25},
               {"label_smoothing": 1.0}, {"sample_weight": "s"},
               {"sample_weight": "s", "weight": "w", "ignore_index": 0},
               {"labels": np.int32}, {"labels": np.uint8, "weight": "w"}, {"labels": np.int16},
               {"labels": np.uint32, "ignore_index": 3}, {"labels": np.int8, "sample_weight": "s"},
               {"labels": np.int8, "ignore_index": -100},
               {"labels": np.uint16, "label_smoothing": 0.5}]
PROB_CASES = [{}, {"weight": "c"}, {"label_smoothing": 0.2},
              {"weight": "c", "label_smoothing": 1.0}]
BCE_CASES = [{}, {"weight": "c"}, {"weight": "full"}, {"pos_weight": "c"},
             {"pos_weight": "full"}, {"label_smoothing": 0.1},
             {"weight": "full", "pos_weight": "c", "label_smoothing": 0.3},
             {"weight": "c", "pos_weight": "full"}]
SOFTMAX_CASES = [{"mode": 0}, {"mode": 1}, {"mode": 2}]


# --------------------------------------------------------------------------
# 1. the paths, and the shapes that take them
# --------------------------------------------------------------------------

def _group(kernel, C, dtype):
    return _dispatch.path(kernel, (64, C), dtype)["group"]


LANE_GROUP = _group("softmax", 1, F32)           # rows per lane group
ROW_GROUP = _group("softmax", 1000, F32)         # rows per row group
BLOCK = {F32: 4096, F64: 1024}                   # the longest row of a row group


def takes_small(p, kernel, shape, dtype, nt, eps):
    return p["small"]


def takes_lanes(p, kernel, shape, dtype, nt, eps):
    # class indices with label smoothing: the lanes' row statistics, then the
    # row formulas (lanes False, the lane group kept)
    lanes = kernel in ("prob", "softmax") or (kernel == "index" and eps == 0.0)
    return p["group"] == LANE_GROUP and p["lanes"] == lanes and not p["split"]


def takes_row_groups(p, kernel, shape, dtype, nt, eps):
    return not p["lanes"] and p["group"] == ROW_GROUP and not p["split"]


def takes_one_row(p, kernel, shape, dtype, nt, eps):
    return not p["lanes"] and p["group"] == 1 and not p["split"]


def takes_split(p, kernel, shape, dtype, nt, eps):
    # split exactly when there are fewer rows than threads
    return p["split"] == (shape[0] < nt) and not p["small"]


def takes_16_bit(p, kernel, shape, dtype, nt, eps):
    return p["sixteen_bit"] and not p["small"] and not p["split"]


PATHS = {
    "small call": takes_small,
    "lanes": takes_lanes,
    "row groups": takes_row_groups,
    "one row": takes_one_row,
    "column split": takes_split,
    "16-bit": takes_16_bit,
}


def test_the_paths_have_distinct_groups():
    assert LANE_GROUP > 1 and ROW_GROUP > 1 and LANE_GROUP != ROW_GROUP
    for dtype, block in BLOCK.items():
        assert _group("index", block, dtype) == ROW_GROUP
        assert _group("index", block + 1, dtype) == 1
        assert _group("index", 32, dtype) == LANE_GROUP
        assert _group("index", 33, dtype) == ROW_GROUP


# --- the matrix's geometries, per path -------------------------------------

SMALL_SHAPES = [(32, 10), (1, 1000), (32, 1000), (3, 10000), (1, 32768), (5, 33)]
SMALL_BCE_SHAPES = SMALL_SHAPES + [(7,), (320,), (32768,)]

# (C, dtype) of the row paths, and the batches they are run in
ROW_SHAPES = {
    "lanes": [(7, F32), (7, F64), (32, F32), (32, F64)],
    "row groups": [(33, F32), (33, F64), (100, F32), (100, F64), (1000, F32), (1000, F64),
                   (1024, F64), (1025, F32), (4096, F32)],
    "one row": [(1025, F64), (4096, F64), (4097, F32), (4097, F64)],
}
N_ROWS = [1, 3, 4, 5, 9, 17]
ROW_THREADS = [1, 2]
ROW_CASES = [("index", {}), ("index", {"label_smoothing": 0.1}),
             ("index", {"weight": "w", "sample_weight": "s", "ignore_index": 1}),
             ("prob", {}), ("prob", {"weight": "c", "label_smoothing": 0.2})] \
    + [("softmax", o) for o in SOFTMAX_CASES]

# (dtype, C): two-pass rows with a partial last block / chunk, and one-pass
# rows (over 1 MiB), for both dtypes
SPLIT_SHAPES = [(F32, 65536), (F32, 100000), (F32, 128256), (F32, 300001),
                (F64, 65536), (F64, 70001), (F64, 140000)]
SPLIT_ROWS = [1, 3]
SPLIT_THREADS = [2, 4]                         # n = 3: 4 threads split, 2 do not
SPLIT_CASES = [("index", {}), ("index", {"label_smoothing": 0.1}), ("index", {"weight": "w"}),
               ("index", {"sample_weight": "s", "ignore_index": 0})] \
    + [("softmax", o) for o in SOFTMAX_CASES]

F16_SHAPES = [(3000, 10), (70, 1000), (3, 40000), (50, 33), (2000, 1), (9000, 4)]
F16_BCE_SHAPES = [(3000, 10), (7, 20000), (1, 1), (33333,)]
F16_THREADS = [1, 2, 3]
F16_CASES = [("index", {}), ("index", {"label_smoothing": 0.1, "weight": "w"}),
             ("index", {"ignore_index": 0, "sample_weight": "s"}),
             ("prob", {}), ("prob", {"label_smoothing": 0.2}),
             ("bce", {}), ("bce", {"weight": "c", "pos_weight": "c"}),
             ("bce", {"label_smoothing": 0.1})] + [("softmax", o) for o in SOFTMAX_CASES]


def _small_matrix():
    cases = [("index", o) for o in INDEX_CASES] + [("prob", o) for o in PROB_CASES] \
        + [("bce", o) for o in BCE_CASES] + [("softmax", o) for o in SOFTMAX_CASES]
    for kernel, opts in cases:
        for shape in SMALL_BCE_SHAPES if kernel == "bce" else SMALL_SHAPES:
            if fits(opts, shape[-1]):
                for dtype in DTYPES:
                    yield pytest.param(kernel, opts, shape, dtype, id=f"{case_id(kernel, opts)}-"
                                       f"{'x'.join(map(str, shape))}-{np.dtype(dtype).name}")


def _row_matrix():
    for path, shapes in ROW_SHAPES.items():
        for C, dtype in shapes:
            for kernel, opts in ROW_CASES:
                yield pytest.param(path, kernel, opts, C, dtype,
                                   id=f"{path}-{case_id(kernel, opts)}-{C}-{np.dtype(dtype).name}")


def _split_matrix():
    for dtype, C in SPLIT_SHAPES:
        for n in SPLIT_ROWS:
            for kernel, opts in SPLIT_CASES:
                yield pytest.param(kernel, opts, n, C, dtype,
                                   id=f"{case_id(kernel, opts)}-{n}x{C}-{np.dtype(dtype).name}")


def _f16_matrix():
    for dtype in SIXTEEN_BIT:
        for kernel, opts in F16_CASES:
            for shape in F16_BCE_SHAPES if kernel == "bce" else F16_SHAPES:
                for nt in F16_THREADS:
                    yield pytest.param(kernel, opts, shape, nt, dtype,
                                       id=f"{case_id(kernel, opts)}-{'x'.join(map(str, shape))}-"
                                       f"{nt}t-{np.dtype(dtype).name}")


SMALL_MATRIX = list(_small_matrix())
ROW_MATRIX = list(_row_matrix())
SPLIT_MATRIX = list(_split_matrix())
F16_MATRIX = list(_f16_matrix())


def geometries(path):
    """Every (kernel, shape, dtype, n_threads, eps) that the matrix runs on `path`."""
    if path == "small call":
        for p in SMALL_MATRIX:
            kernel, opts, shape, dtype = p.values
            yield kernel, shape, dtype, 1, eps_of(opts)
    elif path in ROW_SHAPES:
        for p in ROW_MATRIX:
            name, kernel, opts, C, dtype = p.values
            if name == path:
                for n in N_ROWS:
                    for nt in ROW_THREADS:
                        yield kernel, (n, C), dtype, nt, eps_of(opts)
    elif path == "column split":
        for p in SPLIT_MATRIX:
            kernel, opts, n, C, dtype = p.values
            for nt in SPLIT_THREADS:
                yield kernel, (n, C), dtype, nt, eps_of(opts)
    else:
        for p in F16_MATRIX:
            kernel, opts, shape, nt, dtype = p.values
            yield kernel, shape, dtype, nt, eps_of(opts)


@pytest.mark.parametrize("path", PATHS)
def test_the_matrix_takes_each_path(path):
    """Each geometry that the matrix runs on a path takes that path."""
    takes = PATHS[path]
    seen = 0
    for kernel, shape, dtype, nt, eps in geometries(path):
        p = _dispatch.path(kernel, shape, dtype, nt, eps)
        assert takes(p, kernel, shape, dtype, nt, eps), (path, kernel, shape, dtype, nt, eps, p)
        seen += 1
    assert seen


def test_the_forced_general_path_is_not_a_small_call(monkeypatch):
    for kernel, shape, dtype, nt, eps in geometries("small call"):
        assert _dispatch.path(kernel, shape, dtype)["small"]
    monkeypatch.setattr(_dispatch, "SMALL_CALL_ELEMS", 0)
    for kernel, shape, dtype, nt, eps in geometries("small call"):
        assert not _dispatch.path(kernel, shape, dtype)["small"]
        assert not _dispatch.small_call(np.zeros(shape, dtype))


@pytest.mark.parametrize("dtype,C", SPLIT_SHAPES)
def test_split_needs_fewer_rows_than_threads(dtype, C):
    def split(n, nt, kernel="index"):
        return _dispatch.path(kernel, (n, C), dtype, nt)["split"]
    assert split(3, 4) and split(1, 2) and split(1, 2, "softmax")
    assert not split(3, 1) and not split(4, 4)
    assert not split(1, 4, "prob") and not split(1, 4, "bce")


def test_split_is_not_for_16_bit_nor_short_rows():
    assert not _dispatch.path("index", (1, 65536), F16, 4)["split"]
    assert not _dispatch.path("softmax", (1, 65536), F16, 4)["split"]
    assert not _dispatch.path("index", (1, 65535), F32, 4)["split"]


# --------------------------------------------------------------------------
# 2. the matrix
# --------------------------------------------------------------------------

# --- small call: the general path -------------------------------------------

def small_logits(kernel, shape, dtype, rng):
    if kernel == "bce":
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        x.reshape(-1)[::13] = np.inf
        return x
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x[0, 0] = -np.inf
    return x


def force_general_path(m):
    """Small calls off; returns the list that records each general-path call."""
    m.setattr(_dispatch, "SMALL_CALL_ELEMS", 0)
    ran = []
    for name in ("_general_ce", "_general_bce", "_general_softmax"):
        real = getattr(_api, name)

        def general(*args, _real=real, _name=name, **kwargs):
            ran.append(_name)
            return _real(*args, **kwargs)
        m.setattr(_api, name, general)
    return ran


def forbid_general_path(m):
    def general_path(*args, **kwargs):
        raise AssertionError("the small call was declined: the general path ran")
    for name in ("_general_ce", "_general_bce", "_general_softmax"):
        m.setattr(_api, name, general_path)


@pytest.mark.parametrize("kernel,opts,shape,dtype", SMALL_MATRIX)
def test_small_call_is_the_general_path(kernel, opts, shape, dtype, monkeypatch, rng):
    x = small_logits(kernel, shape, dtype, rng)
    target, kw = make_call(kernel, opts, x, rng)
    for reduction in reductions(kernel):
        with monkeypatch.context() as m:
            ran = force_general_path(m)
            general = outputs(kernel, x, target, reduction, None, kw)
            assert len(ran) == (1 if kernel == "softmax" else 2)
        with monkeypatch.context() as m:
            forbid_general_path(m)
            small = outputs(kernel, x, target, reduction, None, kw)
        assert_all_same(small, general, f"{reduction}")
        if kernel != "softmax":
            assert_same(small[0], small[1], f"{reduction}: the fused call's loss")
            assert small[2].dtype == dtype and small[2].shape == x.shape
        else:
            assert small[0].dtype == dtype


# --- lanes, row groups, one row: a row's bits do not depend on its neighbours

def row_logits(n, C, dtype, rng):
    """Rows with special values beside ordinary ones: odd rows -inf masks, a
    NaN, a +inf, all -inf in turn; row 2 ties everywhere."""
    x = (rng.standard_normal((n, C)) * 4).astype(dtype)
    for i in range(1, n, 2):
        kind = (i // 2) % 4
        if kind == 0:
            x[i, ::3] = -np.inf
        elif kind == 1:
            x[i, C // 2] = np.nan
        elif kind == 2:
            x[i, 0] = np.inf
        else:
            x[i, :] = -np.inf
    if n > 2:
        x[2] = x[2, 0]
    return x


def _stack(results):
    return tuple(np.concatenate([r[k] for r in results]) for k in range(len(results[0])))


@pytest.mark.parametrize("path,kernel,opts,C,dtype", ROW_MATRIX)
def test_a_row_does_not_depend_on_its_neighbours(path, kernel, opts, C, dtype, rng):
    """Every row of a batch against the row computed alone ("none" losses,
    "none" and "sum" gradients), and, for every reduction, against the same
    row in a batch whose other rows differ (the "mean" denominator does not
    depend on the logits)."""
    for n in N_ROWS:
        x = row_logits(n, C, dtype, rng)
        target, kw = make_call(kernel, opts, x, rng)
        for nt in ROW_THREADS:
            for reduction in ("none", "sum") if kernel != "softmax" else (None,):
                whole = row_results(kernel, x, target, reduction, nt, kw)
                alone = _stack([row_results(kernel, x[i:i + 1], t_i, reduction, nt, kw_i)
                                for i in range(n)
                                for t_i, kw_i in [take_rows(target, kw, slice(i, i + 1))]])
                assert_all_same(whole, alone, f"n={n} threads={nt} {reduction}: alone")
            for parity in (0, 1):                # change the even rows, then the odd ones
                kept = np.arange(1 - parity, n, 2)
                if n < 2:
                    continue
                x2 = x.copy()
                x2[parity::2] = (rng.standard_normal(x2[parity::2].shape) * 4).astype(dtype)
                for reduction in reductions(kernel):
                    a = row_results(kernel, x, target, reduction, nt, kw)
                    b = row_results(kernel, x2, target, reduction, nt, kw)
                    assert_all_same([r[kept] for r in a], [r[kept] for r in b],
                                    f"n={n} threads={nt} {reduction}: other neighbours")


# --- column split: the one-thread call, and the reference -------------------

def split_logits(dtype, n, C, rng):
    x = (rng.standard_normal((n, C)) * 4).astype(dtype)
    if n > 1:
        x[1, ::7] = -np.inf                      # masks
        x[1, C // 2] = 30.0
    if n > 2:
        x[2, :] = 0.0                            # ties everywhere, +0 and -0 max
        x[2, ::3] = -0.0
        x[2, 5] = -5.0
    return x


def _reference(kernel, x, target, kw):
    """xent.reference's per-row result, in float64."""
    x64 = x.astype(F64)
    if kernel == "softmax":
        fn = (reference.logsumexp, reference.log_softmax, reference.softmax)[kw["mode"]]
        return fn(x64, axis=-1)
    kw64 = {k: (np.asarray(v, F64) if k in ("weight", "sample_weight") else v)
            for k, v in kw.items()}
    return reference.softmax_cross_entropy(x64, target, reduction="none", **kw64)


@needs_openmp
@pytest.mark.usefixtures("oversubscribe")
@pytest.mark.parametrize("kernel,opts,n,C,dtype", SPLIT_MATRIX)
def test_split_is_the_one_thread_call(kernel, opts, n, C, dtype, rng):
    x = split_logits(dtype, n, C, rng)
    target, kw = make_call(kernel, opts, x, rng)
    if kernel == "index":
        target[-1] = np.argmax(x[-1])            # a confident, correct row
    for reduction in reductions(kernel):
        one = outputs(kernel, x, target, reduction, 1, kw)
        for nt in SPLIT_THREADS:
            assert_all_same(outputs(kernel, x, target, reduction, nt, kw), one,
                            f"{reduction}, {nt} threads")
        if reduction in ("none", None):
            got = one[0].astype(F64)
            ref = np.asarray(_reference(kernel, x, target, kw))
            fin = np.isfinite(ref)
            np.testing.assert_array_equal(np.isfinite(got), fin)
            np.testing.assert_allclose(got[fin], ref[fin], atol=1e-30,
                                       rtol=1e-5 if dtype == F32 else 1e-12)


# --- 16-bit: the float32 call on x.astype(float32) ---------------------------

def f16_logits(kernel, shape, rng, dtype=F16):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    flat = x.reshape(-1)
    flat[::97] = -np.inf                         # masks
    flat[5::1013] = 65504 if dtype == F16 else 3.0e38   # near the largest finite value
    if kernel == "bce":
        flat[7::501] = np.inf
    return x


@pytest.mark.usefixtures("oversubscribe")
@pytest.mark.parametrize("kernel,opts,shape,n_threads,dtype", F16_MATRIX)
def test_16_bit_is_the_float32_call(kernel, opts, shape, n_threads, dtype, rng):
    x = f16_logits(kernel, shape, rng, dtype)
    x32 = x.astype(F32)
    target, kw = make_call(kernel, opts, x, rng, tdtype=dtype, wdtype=F64)
    for reduction in reductions(kernel):
        with np.errstate(over="ignore"):         # log_softmax below -65504 is -inf in float16
            r16 = outputs(kernel, x, target, reduction, n_threads, kw)
            r32 = outputs(kernel, x32, target, reduction, n_threads, kw)
            if kernel == "softmax":
                want = r32 if kw["mode"] == 0 else (r32[0].astype(dtype),)
            else:
                want = (r32[0], r32[1], r32[2].astype(dtype))
        if kernel != "softmax":
            assert r16[2].dtype == dtype
        assert_all_same(r16, want, f"{reduction}", nan_payloads=False)


# --------------------------------------------------------------------------
# 3. the small-call path
# --------------------------------------------------------------------------

def unaligned(a):
    """A copy of `a` at an address that is not a multiple of its itemsize."""
    buf = np.empty(a.nbytes + 1, np.uint8)[1:]
    u = buf.view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


def _ci(x, y, mode=0, want_grad=False, grad_out=None, weight=None, sample_weight=None,
        has_ignore=False, ignore=0, eps=0.0):
    return _kernels.small_index(x, y, mode, want_grad, grad_out, weight, sample_weight,
                                has_ignore, ignore, eps)


def _dense(x, t, mode=0, want_grad=False, binary=False, grad_out=None, weight=None,
           pos_weight=None, eps=0.0):
    return _kernels.small_dense(x, t, mode, want_grad, binary, grad_out, weight, pos_weight, eps)


def _sm(x, mode, out=None):
    return _kernels.small_softmax(x, mode, out)


def test_small_call_is_offered_plain_arrays_of_a_tile():
    x = np.zeros((4, 10), F32)

    class Sub(np.ndarray):
        pass

    assert _dispatch.small_call(x) and _dispatch.small_call(x.astype(F64))
    assert _dispatch.small_call(np.zeros((1, _dispatch.SMALL_CALL_ELEMS), F32))
    # the kernels decide on the layout and the dtype
    for yes in (x[:, ::2], x.astype(F16), x.astype(np.int64), x.astype(">f4")):
        assert _dispatch.small_call(yes)
    for no in (np.zeros((2, 20000), F32),          # two tiles
               np.zeros((3, 0), F32),              # empty
               x.view(Sub), x.tolist()):
        assert not _dispatch.small_call(no)
    for dtype in (F16, np.int64, ">f4"):           # ... and decline these
        xd = x.astype(dtype)
        assert _kernels.small_index(xd, np.zeros(4, np.int64), 0, False, None, None, None,
                                    False, 0, 0.0) is NotImplemented
        assert _kernels.small_softmax(xd, 0, None) is NotImplemented


def test_small_kernels_decline_what_they_do_not_recognise(rng):
    x = (rng.standard_normal((4, 10)) * 3).astype(F32)
    y = rng.integers(0, 10, 4)
    p = rng.random((4, 10)).astype(F32)
    bad = y.copy()
    bad[2] = 10
    ro = np.empty_like(x)
    ro.flags.writeable = False
    declined = {
        # small_index
        "index: non-contiguous logits": lambda: _ci(x[:, ::2], y),
        "index: unaligned logits": lambda: _ci(unaligned(x), y),
        "index: byte-swapped logits": lambda: _ci(x.astype(">f4"), y),
        "index: float16 logits": lambda: _ci(x.astype(F16), y),
        "index: 1-D logits": lambda: _ci(x.reshape(-1), y),
        "index: 3-D logits": lambda: _ci(x.reshape(2, 2, 10), y.reshape(2, 2)),
        "index: list logits": lambda: _ci(x.tolist(), y),
        "index: uint64 labels": lambda: _ci(x, y.astype(np.uint64)),
        "index: byte-swapped labels": lambda: _ci(x, y.astype(">i4")),
        "index: byte-swapped int64 labels": lambda: _ci(x, y.astype(">i8")),
        "index: non-contiguous labels": lambda: _ci(x, np.repeat(y.astype(np.int32), 2)[::2]),
        "index: bool labels": lambda: _ci(x, y.astype(bool)),
        "index: float labels": lambda: _ci(x, y.astype(F32)),
        "index: list labels": lambda: _ci(x, y.tolist()),
        "index: labels (4, 1)": lambda: _ci(x, y.reshape(4, 1)),
        "index: 3 labels for 4 rows": lambda: _ci(x, y[:3]),
        "index: a label >= C": lambda: _ci(x, bad),
        "index: a negative label": lambda: _ci(x, np.array([0, -1, 2, 3])),
        "index: mean over no kept row": lambda: _ci(x, np.full(4, -100), 0, has_ignore=True,
                                                    ignore=-100),
        "index: float64 weight": lambda: _ci(x, y, weight=np.ones(10)),
        "index: weight of 5": lambda: _ci(x, y, weight=np.ones(5, F32)),
        "index: list weight": lambda: _ci(x, y, weight=[1.0] * 10),
        "index: strided weight": lambda: _ci(x, y, weight=np.ones(20, F32)[::2]),
    }
    for i, sw in enumerate((np.ones(4, F64), np.ones(5, F32), np.ones((4, 1), F32),
                            [1.0, 1.0, 1.0, 1.0], np.ones(8, F32)[::2])):
        declined[f"index: sample_weight {i}"] = lambda sw=sw: _ci(x, y, sample_weight=sw)
    for name, g in (("float64", np.empty((4, 10), F64)), ("F-order", np.empty((4, 10), F32, "F")),
                    ("strided", np.empty((4, 20), F32)[:, ::2]), ("read-only", ro),
                    ("unaligned", unaligned(x)), ("list", x.tolist())):
        declined[f"index: {name} grad_out"] = lambda g=g: _ci(x, y, 1, True, g)
        declined[f"prob: {name} grad_out"] = lambda g=g: _dense(x, p, 1, True, False, g)
        declined[f"bce: {name} grad_out"] = lambda g=g: _dense(x, p, 1, True, True, g)
        declined[f"softmax: {name} out"] = lambda g=g: _sm(x, 2, g)
    declined.update({
        # small_dense
        "prob: float64 target": lambda: _dense(x, p.astype(F64)),
        "prob: float16 target": lambda: _dense(x, p.astype(F16)),
        "bce: float16 target": lambda: _dense(x, p.astype(F16), binary=True),
        "bce: int target": lambda: _dense(x, (p > 0.5).astype(np.int64), binary=True),
        "bce: bool target": lambda: _dense(x, p > 0.5, binary=True),
        "prob: non-contiguous": lambda: _dense(x[:, ::2], p[:, ::2]),
        "prob: target (4, 5)": lambda: _dense(x, p[:, :5]),
        "prob: target (10, 4)": lambda: _dense(x, np.ascontiguousarray(p.T)),
        "prob: 1-D": lambda: _dense(x.reshape(-1), p.reshape(-1)),
        "bce: 3-D": lambda: _dense(x.reshape(2, 2, 10), p.reshape(2, 2, 10), binary=True),
        "bce: 2-D target of 1-D logits": lambda: _dense(x.reshape(-1), p, binary=True),
        "prob: a pos_weight": lambda: _dense(x, p, pos_weight=np.ones(10, F32)),
        "prob: float64 weight": lambda: _dense(x, p, weight=np.ones(10)),
        "bce: pos_weight (4, 1)": lambda: _dense(x, p, binary=True,
                                                 pos_weight=np.ones((4, 1), F32)),
        "bce: weight (10, 4)": lambda: _dense(x, p, binary=True, weight=np.ones((10, 4), F32)),
        "bce: strided weight": lambda: _dense(x, p, binary=True, weight=np.ones(20, F32)[::2]),
        "bce: list weight": lambda: _dense(x, p, binary=True, weight=[1.0] * 10),
        "bce: weight (1,) of 1-D logits": lambda: _dense(x.reshape(-1), p.reshape(-1), binary=True,
                                                         weight=np.ones(1, F32)),
        # small_softmax
        "softmax: 1-D": lambda: _sm(x.reshape(-1), 0),
        "softmax: float16": lambda: _sm(x.astype(F16), 2),
        "softmax: transposed": lambda: _sm(x.T, 1),
        "softmax: empty rows": lambda: _sm(np.zeros((3, 0), F32), 0),
        "softmax: unaligned": lambda: _sm(unaligned(x), 1),
        "softmax: an out for logsumexp": lambda: _sm(x, 0, np.empty(4, F32)),
    })
    taken = {
        "index: int64 labels": lambda: _ci(x, y),
        "index: int32 labels": lambda: _ci(x, y.astype(np.int32)[::1], 2),
        "index: grad_out": lambda: _ci(x, y, 1, True, np.empty_like(x)),
        "index: weight and sample_weight": lambda: _ci(x, y, 0, False, None, np.ones(10, F32),
                                                       np.ones(4, F32)),
        "index: sum over no kept row": lambda: _ci(x, np.full(4, -100), 1, has_ignore=True,
                                                   ignore=-100),
        "prob": lambda: _dense(x, p),
        "prob: grad_out": lambda: _dense(x, p, 1, True, False, np.empty_like(x)),
        "bce: 2-D": lambda: _dense(x, p, binary=True),
        "bce: 1-D": lambda: _dense(x.reshape(-1), p.reshape(-1), binary=True),
        "bce: weight (40,) of 1-D logits": lambda: _dense(x.reshape(-1), p.reshape(-1), binary=True,
                                                          weight=np.ones(40, F32)),
        "bce: weight (C,), pos_weight full": lambda: _dense(x, p, binary=True,
                                                            weight=np.ones(10, F32),
                                                            pos_weight=np.ones((4, 10), F32)),
        "softmax": lambda: _sm(x, 0),
        "softmax: out": lambda: _sm(x, 2, np.empty_like(x)),
    }
    for labels in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64):
        taken[f"index: {np.dtype(labels).name} labels"] = lambda t=labels: _ci(x, y.astype(t))
    wrong = [name for name, call in declined.items() if call() is not NotImplemented]
    assert not wrong, f"taken, not declined: {wrong}"
    wrong = [name for name, call in taken.items() if call() is NotImplemented]
    assert not wrong, f"declined, not taken: {wrong}"


@pytest.fixture
def route(monkeypatch):
    """Records the way of each public call: ("index" / "dense" / "softmax",
    declined) for each small kernel offered the call, "general" for the
    general path."""
    seen = []
    for name in ("_general_ce", "_general_bce", "_general_softmax"):
        real = getattr(_api, name)

        def general(*args, _real=real, **kwargs):
            seen.append("general")
            return _real(*args, **kwargs)
        monkeypatch.setattr(_api, name, general)
    for name in ("small_index", "small_dense", "small_softmax"):
        real = getattr(_kernels, name)

        def small(*args, _real=real, _name=name[6:], **kwargs):
            res = _real(*args, **kwargs)
            seen.append((_name, res is NotImplemented))
            return res
        monkeypatch.setattr(_kernels, name, small)
    return seen


def _general(monkeypatch, call):
    """`call` with small calls off: the general path's result."""
    with monkeypatch.context() as m:
        ran = force_general_path(m)
        res = call()
        assert ran
        return res


def _result_tuple(res):
    return res if isinstance(res, tuple) else (res,)


def test_declined_small_calls_give_the_general_result(route, monkeypatch, rng):
    """A small call that the kernels decline runs on the general path, with
    the general path's result."""
    x = (rng.standard_normal((4, 10)) * 3).astype(F32)
    y = rng.integers(0, 10, 4)
    p = rng.random((4, 10)).astype(F32)
    w = np.ones(10, F32)
    sce, sceg = xent.softmax_cross_entropy, xent.softmax_cross_entropy_with_grad
    bce, bceg = xent.sigmoid_binary_cross_entropy, xent.sigmoid_binary_cross_entropy_with_grad
    cases = {
        "mean over no kept row": lambda: sce(x, np.full(4, -100), ignore_index=-100),
        "float64 weight": lambda: sce(x, y, weight=w.astype(F64)),
        "list weight": lambda: sce(x, y, weight=w.tolist()),
        "uint64 labels with a sample weight": lambda: sce(x, y.astype(np.uint64),
                                                          sample_weight=np.ones(4, F32)),
        "byte-swapped labels": lambda: sce(x, y.astype(">i8")),
        "non-contiguous logits": lambda: sceg(np.repeat(x, 2, axis=1)[:, ::2], y),
        "unaligned logits": lambda: sceg(unaligned(x), y),
        "F-order grad_out": lambda: sceg(x, y, grad_out=np.empty((4, 10), F32, "F")),
        "unaligned grad_out": lambda: sceg(x, y, grad_out=unaligned(x)),
        "prob: float64 weight": lambda: sce(x, p, weight=w.astype(F64)),
        "prob: sample weight": lambda: sceg(x, p, sample_weight=np.ones(4, F32)),
        "prob: float64 target": lambda: sceg(x, p.astype(F64)),
        "bce: pos_weight (4, 1)": lambda: bce(x, p, pos_weight=np.ones((4, 1), F32)),
        "bce: strided weight": lambda: bce(x, p, weight=np.ones(20, F32)[::2]),
        "bce: list weight": lambda: bce(x, p, weight=[1.0] * 10),
        "bce: weight (1,) on 40": lambda: bceg(x.reshape(-1), p.reshape(-1), weight=w[:1]),
        "bce: int targets": lambda: bceg(x, (p > 0.5).astype(np.int64)),
        "softmax: transposed": lambda: xent.softmax(x.T),
        "log_softmax: F-order out": lambda: xent.log_softmax(x, out=np.empty((4, 10), F32, "F")),
    }
    for name, call in cases.items():
        route.clear()
        got = _result_tuple(call())
        assert route and route[-1] == "general" and all(r[1] for r in route[:-1]), (name, route)
        assert_all_same(got, _result_tuple(_general(monkeypatch, call)), name)
    assert np.isnan(cases["mean over no kept row"]())


def test_small_calls_take_options_grad_out_and_labels(route, monkeypatch, rng):
    """Calls the small kernels take (no general path), bitwise the general path."""
    x = (rng.standard_normal((4, 10)) * 3).astype(F32)
    y = rng.integers(0, 10, 4)
    p = rng.random((4, 10)).astype(F32)
    w = np.ones(10, F32)
    cases = {
        "a weight and a grad_out": lambda: xent.softmax_cross_entropy_with_grad(
            x, y, weight=w, grad_out=np.empty_like(x)),
        "an ignore_index of a NumPy integer": lambda: xent.softmax_cross_entropy(
            x, y, ignore_index=np.int64(3)),
        "a sample weight and a grad_out": lambda: xent.softmax_cross_entropy_with_grad(
            x, y, sample_weight=np.ones(4, F32), grad_out=np.empty_like(x)),
        "sum over no kept row": lambda: xent.softmax_cross_entropy_with_grad(
            x, np.full(4, -100), ignore_index=-100, reduction="sum"),
        "prob: a weight and a grad_out": lambda: xent.softmax_cross_entropy_with_grad(
            x, p, weight=w, grad_out=np.empty_like(x)),
        "bce: a pos_weight and a grad_out": lambda: xent.sigmoid_binary_cross_entropy_with_grad(
            x, p, pos_weight=w, grad_out=np.empty_like(x)),
        "bce: a bool target and a grad_out": lambda: xent.sigmoid_binary_cross_entropy_with_grad(
            x, p > 0.5, grad_out=np.empty_like(x)),
        "axis=1": lambda: xent.log_softmax(x, axis=1),
    }
    for name, call in cases.items():
        route.clear()
        got = _result_tuple(call())
        assert "general" not in route and route[-1][1] is False, (name, route)
        assert_all_same(got, _result_tuple(_general(monkeypatch, call)), name)


def test_small_calls_check_options_with_the_general_rules(route, rng):
    """_api checks options and outputs by _validate's rules before any small
    kernel sees the call; array errors come from the general path."""
    x = (rng.standard_normal((4, 10)) * 3).astype(F32)
    y = rng.integers(0, 10, 4)
    p = rng.random((4, 10)).astype(F32)
    w = np.ones(10, F32)
    g = np.empty_like(x)
    before = [  # options and outputs: no small kernel is offered the call
        (ValueError, "`reduction` must be one of",
         lambda: xent.softmax_cross_entropy(x, y, reduction="avg")),
        (ValueError, "`reduction` must be one of",
         lambda: xent.sigmoid_binary_cross_entropy(x, p, reduction="avg")),
        (ValueError, "`label_smoothing` must be a number in \\[0, 1\\]",
         lambda: xent.softmax_cross_entropy(x, y, label_smoothing=1.5)),
        (ValueError, "`label_smoothing` must be a number in \\[0, 1\\]",
         lambda: xent.softmax_cross_entropy(x, p, label_smoothing=-0.1)),
        (ValueError, "`label_smoothing` must be a number in \\[0, 1\\]",
         lambda: xent.sigmoid_binary_cross_entropy(x, p, label_smoothing=-0.1)),
        (TypeError, "`ignore_index` must be None or an integer",
         lambda: xent.softmax_cross_entropy(x, y, ignore_index=1.0)),
        (ValueError, "`n_threads` must be None",
         lambda: xent.softmax_cross_entropy(x, y, n_threads=0)),
        (ValueError, "`grad_out` must have shape",
         lambda: xent.softmax_cross_entropy_with_grad(x, p, grad_out=np.empty((10, 4), F32))),
        (ValueError, "`grad_out` must have dtype float32",
         lambda: xent.softmax_cross_entropy_with_grad(x, y, grad_out=np.empty((4, 10), F64))),
        (ValueError, "`grad_out` must be writeable",
         lambda: xent.sigmoid_binary_cross_entropy_with_grad(x, p, grad_out=_read_only(g))),
        (ValueError, "`grad_out` overlaps `target`",
         lambda: xent.softmax_cross_entropy_with_grad(x, p, grad_out=p)),
        (ValueError, "`grad_out` overlaps `weight`",
         lambda: xent.sigmoid_binary_cross_entropy_with_grad(x, p, weight=g, grad_out=g)),
        (ValueError, "`grad_out` overlaps `logits`", lambda: _overlapping(x, "index", y)),
        (ValueError, "`grad_out` overlaps `logits`", lambda: _overlapping(x, "prob", p)),
        (ValueError, "`out` overlaps `x`", lambda: _overlapping(x, "softmax", None)),
        (ValueError, "`out` must have shape", lambda: xent.softmax(x, out=np.empty(4, F32))),
    ]
    for exc, match, call in before:
        route.clear()
        with pytest.raises(exc, match=match):
            call()
        assert not route, (match, route)
    after = [  # arrays: the small kernels decline, the general path raises
        (xent.LabelError, "got 10 at position 2",
         lambda: xent.softmax_cross_entropy(x, np.array([0, 1, 10, 2], np.int32),
                                            reduction="none")),
        (xent.LabelError, "got 255 at position 1",
         lambda: xent.softmax_cross_entropy(x, np.array([0, 255, 1, 2], np.uint8))),
        (xent.LabelError, "got 10 at position 2",
         lambda: xent.softmax_cross_entropy(x, np.array([0, 1, 10, 2]), weight=w)),
        (xent.LabelError, "got -1 at position 0",
         lambda: xent.softmax_cross_entropy_with_grad(x, np.array([-1, 1, 2, 3]))),
        (ValueError, "`sample_weight` must have the per-sample loss shape",
         lambda: xent.softmax_cross_entropy(x, y, sample_weight=np.ones(3, F32))),
        (ValueError, "`weight` must have shape \\(10,\\)",
         lambda: xent.softmax_cross_entropy(x, y, weight=w[:5])),
        (ValueError, "`weight` must have shape \\(10,\\)",
         lambda: xent.softmax_cross_entropy(x, p, weight=w[:5])),
        (ValueError, "`pos_weight` must broadcast to the shape of `logits`",
         lambda: xent.sigmoid_binary_cross_entropy(x, p, pos_weight=w[:5])),
        (ValueError, "`ignore_index` applies to class-index targets only",
         lambda: xent.softmax_cross_entropy(x, p, ignore_index=1)),
        (ValueError, "`target` must be class indices of shape",
         lambda: xent.softmax_cross_entropy(x, p[:, :5])),
        (ValueError, "`target` must have the shape of `logits`",
         lambda: xent.sigmoid_binary_cross_entropy(x, p[:, :5])),
        (ValueError, "`target` of integer dtype must hold 0 or 1",
         lambda: xent.sigmoid_binary_cross_entropy(x, np.full((4, 10), 2))),
        (TypeError, "`target` must be integer class indices or floating-point probabilities",
         lambda: xent.softmax_cross_entropy(x, y.astype(bool))),
        (TypeError, "class indices must be integers",
         lambda: xent.softmax_cross_entropy(x, y.astype(F32))),
    ]
    for exc, match, call in after:
        route.clear()
        with pytest.raises(exc, match=match):
            call()
        assert route and route[-1] == "general" and all(r[1] for r in route[:-1]), (match, route)
    with pytest.raises(ValueError, match="must have at least one element along axis"):
        xent.softmax(np.zeros((3, 0), F32))


def _read_only(a):
    a = a.view()
    a.flags.writeable = False
    return a


def _overlapping(x, kernel, target):
    """A grad_out / out overlapping the logits without being them."""
    flat = np.empty(x.size + 5, x.dtype)
    xo, go = flat[:x.size].reshape(x.shape), flat[5:].reshape(x.shape)
    xo[...] = x
    if kernel == "softmax":
        return xent.softmax(xo, out=go)
    return xent.softmax_cross_entropy_with_grad(xo, target, grad_out=go)


@pytest.mark.parametrize("c", [10, 1000])
def test_a_bad_label_raises_the_general_error(c, rng):
    x = (rng.standard_normal((4, c)) * 3).astype(F32)
    y = rng.integers(0, c, 4)
    y[3] = c + 2
    with pytest.raises(xent.LabelError, match=rf"must be in \[0, {c}\); got {c + 2} at position 3"):
        xent.softmax_cross_entropy(x, y)
    with pytest.raises(xent.LabelError, match=rf"got {c + 2} at position 3"):
        xent.softmax_cross_entropy_with_grad(x, y)


def test_a_nan_row_stays_in_its_row_on_the_small_path(route, rng):
    x = (rng.standard_normal((3, 1000)) * 3).astype(F32)
    y = rng.integers(0, 1000, 3)
    x[1, 7] = np.nan
    assert np.isnan(xent.softmax_cross_entropy(x, y))
    loss, g = xent.softmax_cross_entropy_with_grad(x, y, reduction="none")
    assert "general" not in route
    assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all()
    assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all()


def test_small_calls_write_into_grad_out_and_out(route, monkeypatch, rng):
    """A grad_out / out of the small path's layout is written, and returned;
    the logits themselves as grad_out / out work in place."""
    x = (rng.standard_normal((32, 10)) * 3).astype(F32)
    y = rng.integers(0, 10, 32)
    p = rng.random((32, 10)).astype(F32)
    p /= p.sum(axis=1, keepdims=True)
    xb = np.clip(x, -30, 30)
    g = np.empty_like(x)
    for fn, arr, target in ((xent.softmax_cross_entropy_with_grad, x, y),
                            (xent.softmax_cross_entropy_with_grad, x, p),
                            (xent.sigmoid_binary_cross_entropy_with_grad, xb, p)):
        want_l, want_g = _general(monkeypatch, lambda: fn(arr, target))
        route.clear()
        loss, out = fn(arr, target, grad_out=g)
        assert out is g
        assert_same(loss, want_l)
        assert_same(g, want_g)
        inplace = arr.copy()
        loss, out = fn(inplace, target, grad_out=inplace)
        assert out is inplace
        assert_same(loss, want_l)
        assert_same(inplace, want_g)
        assert "general" not in route, route
    for fn in (xent.log_softmax, xent.softmax):
        want = _general(monkeypatch, lambda: fn(x))
        route.clear()
        o = np.empty_like(x)
        assert fn(x, out=o) is o
        assert_same(o, want)
        inplace = x.copy()
        assert fn(inplace, out=inplace) is inplace
        assert_same(inplace, want)
        assert "general" not in route, route


@pytest.mark.parametrize("shape", [(32, 10), (7,), (1, 32768)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bool_bce_targets_take_the_small_path(shape, dtype, monkeypatch, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.random(shape) < 0.3
    general = _general(monkeypatch, lambda: (
        xent.sigmoid_binary_cross_entropy(x, t),
        *xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="sum")))
    with monkeypatch.context() as m:
        forbid_general_path(m)
        small = (xent.sigmoid_binary_cross_entropy(x, t),
                 *xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="sum"))
    assert_all_same(small, general)
    assert small[2].dtype == dtype
    assert t.dtype == np.bool_                   # the target itself is not converted


def test_bool_bce_targets_beyond_a_tile_take_the_general_path(route):
    x = np.zeros((2, 20000), F32)                # two tiles
    xent.sigmoid_binary_cross_entropy(x, x > 0)
    assert route == ["general"]


# --------------------------------------------------------------------------
# 4. the column split: special rows, in place, ignored rows, default threads
# --------------------------------------------------------------------------

@needs_openmp
@pytest.mark.usefixtures("oversubscribe")
@pytest.mark.parametrize("dtype,C", SPLIT_SHAPES[:3] + SPLIT_SHAPES[4:6])
def test_split_grad_in_place_and_ignored_rows(dtype, C):
    n = 3
    x = split_logits(dtype, n, C, np.random.default_rng(1))
    y = np.array([5, -100, C - 1], dtype=np.int64)
    want_l, want_g = xent.softmax_cross_entropy_with_grad(x, y, ignore_index=-100, n_threads=1)
    for nt in (4, 8):
        assert _dispatch.path("index", x.shape, dtype, nt)["split"]
        buf = x.copy()
        loss, g = xent.softmax_cross_entropy_with_grad(buf, y, ignore_index=-100, n_threads=nt,
                                                       grad_out=buf)
        assert g is buf
        assert_same(loss, want_l)
        assert_same(buf, want_g)
    assert not want_g[1].any()


@needs_openmp
@pytest.mark.usefixtures("oversubscribe")
@pytest.mark.parametrize("dtype,C", SPLIT_SHAPES)
@pytest.mark.parametrize("mode", [1, 2])
def test_split_softmax_in_place(dtype, C, mode):
    x = split_logits(dtype, 3, C, np.random.default_rng(2))
    want = _api._softmax_family(x, -1, None, mode, 1)
    buf = x.copy()
    assert _api._softmax_family(buf, -1, buf, mode, 4) is buf
    assert_same(buf, want)


@needs_openmp
@pytest.mark.usefixtures("oversubscribe")
def test_split_nan_row_stays_in_its_row(rng):
    x = split_logits(F32, 3, 90000, rng)
    x[0, 70001] = np.nan
    y = np.array([1, 2, 3], dtype=np.int64)
    assert _dispatch.path("index", x.shape, F32, 4)["split"]
    l1 = xent.softmax_cross_entropy(x, y, reduction="none", n_threads=1)
    l4 = xent.softmax_cross_entropy(x, y, reduction="none", n_threads=4)
    assert np.isnan(l4[0]) and np.isfinite(l4[1:]).all()
    assert_same(l4, l1)
    _, g = xent.softmax_cross_entropy_with_grad(x, y, n_threads=4)
    assert np.isnan(g[0]).all() and np.isfinite(g[1:]).all()
    lse = _api._softmax_family(x, -1, None, 0, 4)
    assert np.isnan(lse[0]) and np.isfinite(lse[1:]).all()
    assert_same(lse, _api._softmax_family(x, -1, None, 0, 1))


@needs_openmp
def test_split_public_softmax_family_default_threads_is_one_thread(rng):
    """The public functions, on OpenMP's default threads (a split on a
    machine with several cores), give the one-thread bits."""
    x = split_logits(F32, 1, 128256, rng)
    for mode, fn in SOFTMAX_FNS.items():
        assert_same(fn(x), _api._softmax_family(x, -1, None, mode, 1), fn.__name__)


# --------------------------------------------------------------------------
# 5. 16-bit: axis 0, in place and strided, no copy (the conversions
#    themselves, every variant: tests/test_half_bits.py)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", F16_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_16_bit_softmax_family_along_axis_0(shape, rng):
    x = f16_logits("softmax", shape, rng)
    x32 = x.astype(F32)
    assert_same(xent.logsumexp(x, axis=0), xent.logsumexp(x32, axis=0), nan_payloads=False)
    with np.errstate(over="ignore"):             # log_softmax below -65504 is -inf in float16
        for fn in (xent.softmax, xent.log_softmax):
            assert_same(fn(x, axis=0), fn(x32, axis=0).astype(F16), fn.__name__,
                        nan_payloads=False)


@pytest.mark.usefixtures("oversubscribe")
def test_16_bit_in_place_and_strided(rng):
    x = f16_logits("index", (500, 300), rng)
    y = rng.integers(0, 300, 500)
    want = xent.softmax_cross_entropy_with_grad(x.astype(F32), y)[1].astype(F16)
    buf = x.copy()
    _, g = xent.softmax_cross_entropy_with_grad(buf, y, grad_out=buf)
    assert g is buf
    assert_same(buf, want, nan_payloads=False)
    big = np.zeros((500, 600), F16)
    big[:, ::2] = x
    assert_same(xent.softmax_cross_entropy_with_grad(big[:, ::2], y)[1], want, nan_payloads=False)
    out = np.empty((300, 500), F16).T            # Fortran-ordered output
    xent.softmax(x, out=out)
    assert_same(out, xent.softmax(x.astype(F32)).astype(F16), nan_payloads=False)
    x0 = x.copy()
    xent.softmax_cross_entropy_with_grad(x, y, n_threads=2)
    assert_same(x, x0)                           # input untouched


def test_16_bit_makes_no_float32_copy_of_the_logits():
    """Peak memory of a float16 call stays far below a float32 copy of x
    (numpy reports its allocations to tracemalloc): only tile buffers, one
    of ~128 KiB per thread.  logsumexp and softmax take no n_threads and run
    on OpenMP's default (16 buffers, 2 MiB, on a 16-core machine), so the
    allowance grows with it, and so does x, to keep a copy far above it."""
    nt = max(2, _kernels.max_threads())          # the calls below: 2 threads or the default
    n, c = 4096 * (1 + nt // 16), 1024
    x = np.zeros((n, c), F16)
    y = np.zeros(n, np.int64)
    f32_copy = n * c * 4
    small = f32_copy // 8 + nt * (256 << 10)
    assert small < f32_copy // 2
    cases = [
        (lambda: xent.softmax_cross_entropy(x, y, n_threads=2), small),
        (lambda: xent.softmax_cross_entropy_with_grad(x, y, n_threads=2), n * c * 2 + small),
        (lambda: xent.logsumexp(x), small),
        (lambda: xent.softmax(x), n * c * 2 + small),
        # BCE's targets are read as float32: that copy (of t, not x) is allowed
        (lambda: xent.sigmoid_binary_cross_entropy(x, x, n_threads=2), f32_copy + small),
    ]
    for call, limit in cases:
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < limit
