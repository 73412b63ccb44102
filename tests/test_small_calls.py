"""The small-call fast path (a 32 x 10 call in a few microseconds).

Calls of one tile (N * C <= 32768, any C) skip the Python-level validation
and run the tile at once, for every reduction: ``_kernels.fast_index_ce`` for
class indices of any integer dtype but uint64, also with a class weight, a
sample weight, an int ignore_index or label smoothing; ``fast_dense`` for
probability targets (also with a class weight or smoothing) and BCE (also
with a weight or pos_weight of the logits' shape or (C,), or smoothing), a
bool BCE target converted first; ``fast_softmax`` for logsumexp /
log_softmax / softmax.  Checked:
the path is taken for those shapes and refused for the others, and its results
are bitwise those of the general path (forced here by passing ``axis`` as a
NumPy integer, which the fast path does not recognise), with the general
path's errors for bad labels.  Values are checked against the reference by
tests/test_against_reference.py for both paths' shapes.
"""

import numpy as np
import pytest

import xent
from xent import _kernels

SHAPES = [(32, 10), (1, 1000), (32, 1000), (3, 10000), (1, 32768), (5, 33)]


def _inputs(n, c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    x[0, 0] = -np.inf
    y = rng.integers(0, c, n)
    return x, y


def _bits(a):
    a = np.asarray(a, dtype=np.float64 if np.ndim(a) == 0 else None)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_path_is_bitwise_the_general_path(n, c, dtype, reduction):
    x, y = _inputs(n, c, dtype)
    assert _kernels.fast_index_ce(x, y, reduction, False) is not NotImplemented
    general = np.int64(-1)                     # not an int: the fast path declines
    fast = xent.softmax_cross_entropy(x, y, reduction=reduction)
    slow = xent.softmax_cross_entropy(x, y, reduction=reduction, axis=general)
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    fl, fg = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction)
    sl, sg = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction, axis=general)
    np.testing.assert_array_equal(_bits(fl), _bits(slow))
    np.testing.assert_array_equal(_bits(sl), _bits(slow))
    assert fg.dtype == sg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))


OPTIONS = [{"weight": "w"}, {"ignore_index": -100}, {"ignore_index": 1}, {"label_smoothing": 0.1},
           {"weight": "w", "ignore_index": 2, "label_smoothing": 0.25}, {"label_smoothing": 1},
           {"sample_weight": "s"}, {"sample_weight": "s", "weight": "w", "ignore_index": 0},
           {"labels": np.int32}, {"labels": np.uint8, "weight": "w"}, {"labels": np.int16},
           {"labels": np.uint32, "ignore_index": 3}, {"labels": np.int8, "sample_weight": "s"},
           {"labels": np.int8, "ignore_index": -100}, {"labels": np.uint16, "label_smoothing": 0.5}]


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o))
def test_fast_path_with_options_is_bitwise_the_general_path(n, c, dtype, reduction, opts,
                                                            monkeypatch):
    x, y = _inputs(n, c, dtype)
    rng = np.random.default_rng(1)
    kw = dict(opts)
    if kw.get("weight") == "w":
        kw["weight"] = rng.uniform(0.25, 2.0, c).astype(dtype)
    if kw.get("sample_weight") == "s":         # a zero among them (not the only one)
        kw["sample_weight"] = rng.uniform(0.5, 3.0, n).astype(dtype)
        kw["sample_weight"][1::2] = 0
    if "ignore_index" in kw:                   # some rows ignored, the last one kept
        ig = kw["ignore_index"]
        y[:-1:3] = ig
        if y[-1] == ig:
            y[-1] = (ig + 1) % c
    labels = kw.pop("labels", np.int64)
    if np.iinfo(labels).max < c - 1:
        pytest.skip(f"{c} classes do not fit {np.dtype(labels)}")
    y = y.astype(labels)
    general = np.int64(-1)                     # not an int: the fast paths decline
    slow = xent.softmax_cross_entropy(x, y, reduction=reduction, axis=general, **kw)
    sl, sg = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction, axis=general, **kw)
    from xent import _api

    def no_general_path(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_softmax_ce", no_general_path)
    fast = xent.softmax_cross_entropy(x, y, reduction=reduction, **kw)
    fl, fg = xent.softmax_cross_entropy_with_grad(x, y, reduction=reduction, **kw)
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    np.testing.assert_array_equal(_bits(fl), _bits(sl))
    assert fg.dtype == sg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))


def test_fast_path_with_options_leaves_the_rest_to_the_general_path(monkeypatch):
    from xent import _api

    calls = []
    real = _api._softmax_ce
    monkeypatch.setattr(_api, "_softmax_ce", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, y = _inputs(4, 10, np.float32)
    w = np.ones(10, np.float32)
    # a "mean" over no kept row: nan, from the general path
    assert np.isnan(xent.softmax_cross_entropy(x, np.full(4, -100), ignore_index=-100))
    # a grad_out with a weight (check_out tests its overlap with the weight)
    xent.softmax_cross_entropy_with_grad(x, y, weight=w, grad_out=np.empty_like(x))
    # a weight of another dtype, an ignore_index that is not an int, a
    # sample_weight with a grad_out, uint64 labels
    xent.softmax_cross_entropy(x, y, weight=w.astype(np.float64))
    xent.softmax_cross_entropy(x, y, ignore_index=np.int64(3))
    xent.softmax_cross_entropy_with_grad(x, y, sample_weight=np.ones(4, np.float32),
                                         grad_out=np.empty_like(x))
    xent.softmax_cross_entropy(x, y.astype(np.uint64), sample_weight=np.ones(4, np.float32))
    assert len(calls) == 6
    with pytest.raises(xent.LabelError, match="got 10 at position 2"):
        xent.softmax_cross_entropy(x, np.array([0, 1, 10, 2], np.int32), reduction="none")
    with pytest.raises(xent.LabelError, match="got 255 at position 1"):
        xent.softmax_cross_entropy(x, np.array([0, 255, 1, 2], np.uint8))
    with pytest.raises(ValueError, match="`sample_weight` must have the per-sample loss shape"):
        xent.softmax_cross_entropy(x, y, sample_weight=np.ones(3, np.float32))
    with pytest.raises(xent.LabelError, match="got 10 at position 2"):
        xent.softmax_cross_entropy(x, np.array([0, 1, 10, 2]), weight=w)
    with pytest.raises(ValueError, match="`weight` must have shape \\(10,\\)"):
        xent.softmax_cross_entropy(x, y, weight=w[:5])
    with pytest.raises(ValueError, match="`label_smoothing` must be a number in \\[0, 1\\]"):
        xent.softmax_cross_entropy(x, y, label_smoothing=1.5)


def test_fast_path_declines_what_it_does_not_handle():
    x, y = _inputs(2, 20000, np.float32)       # two tiles
    assert _kernels.fast_index_ce(x, y, "mean", False) is NotImplemented
    x, y = _inputs(4, 10, np.float32)
    assert _kernels.fast_index_ce(x, y, "avg", False) is NotImplemented
    assert _kernels.fast_index_ce(x[:, ::2], y, "mean", False) is NotImplemented
    assert _kernels.fast_index_ce(x, y.astype(np.uint64), "mean", False) is NotImplemented
    assert _kernels.fast_index_ce(x, y.astype(">i4"), "mean", False) is NotImplemented
    assert _kernels.fast_index_ce(x, y.astype(np.int32)[::1], "none", False) is not NotImplemented
    assert _kernels.fast_index_ce(x, np.repeat(y.astype(np.int32), 2)[::2], "sum",
                                  False) is NotImplemented
    assert _kernels.fast_index_ce(x, y.astype(bool), "mean", False) is NotImplemented
    assert _kernels.fast_index_ce(x, y.astype(np.float32), "mean", False) is NotImplemented
    for sw in (np.ones(4, np.float64), np.ones(5, np.float32), np.ones((4, 1), np.float32),
               [1.0, 1.0, 1.0, 1.0], np.ones(8, np.float32)[::2]):
        assert _kernels.fast_index_ce(x, y, "mean", False, None, None, None, 0.0,
                                      sw) is NotImplemented
    bad = y.copy()
    bad[2] = 10
    assert _kernels.fast_index_ce(x, bad, "mean", False) is NotImplemented


@pytest.mark.parametrize("c", [10, 1000])
def test_bad_label_still_raises_the_general_error(c):
    x, y = _inputs(4, c, np.float32)
    y[3] = c + 2
    with pytest.raises(xent.LabelError, match=rf"must be in \[0, {c}\); got {c + 2} at position 3"):
        xent.softmax_cross_entropy(x, y)
    with pytest.raises(xent.LabelError, match=rf"got {c + 2} at position 3"):
        xent.softmax_cross_entropy_with_grad(x, y)


def test_nan_row_through_the_fast_path():
    x, y = _inputs(3, 1000, np.float32)
    x[1, 7] = np.nan
    assert np.isnan(xent.softmax_cross_entropy(x, y))
    _, g = xent.softmax_cross_entropy_with_grad(x, y)
    assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all()


# --------------------------------------------------------------------------
# probability targets, BCE and the softmax primitives (fast_dense, fast_softmax)
# --------------------------------------------------------------------------

def _dense(n, c, dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    x[0, 0] = -np.inf
    p = rng.random((n, c)).astype(dtype)
    return x, p / p.sum(axis=1, keepdims=True)


GENERAL = {"axis": np.int64(-1)}              # not an int: the fast paths decline


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dense_fast_paths_are_bitwise_the_general_path(n, c, dtype, reduction):
    x, p = _dense(n, c, dtype)
    assert _kernels.fast_dense(x, p, reduction, False, False) is not NotImplemented
    assert _kernels.fast_dense(x, p, reduction, True, True) is not NotImplemented
    fast = xent.softmax_cross_entropy(x, p, reduction=reduction)
    slow = xent.softmax_cross_entropy(x, p, reduction=reduction, **GENERAL)
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    fl, fg = xent.softmax_cross_entropy_with_grad(x, p, reduction=reduction)
    sl, sg = xent.softmax_cross_entropy_with_grad(x, p, reduction=reduction, **GENERAL)
    np.testing.assert_array_equal(_bits(fl), _bits(sl))
    assert fg.dtype == sg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))
    # BCE: the general path forced by an n_threads that is not an int
    xb = np.where(np.isfinite(x), x, -30).astype(dtype)
    for arr, tgt in ((xb, p), (xb.reshape(-1), p.reshape(-1))):
        fast = xent.sigmoid_binary_cross_entropy(arr, tgt, reduction=reduction)
        slow = xent.sigmoid_binary_cross_entropy(arr, tgt, reduction=reduction,
                                                 n_threads=np.int64(1))
        np.testing.assert_array_equal(_bits(fast), _bits(slow))
        fl, fg = xent.sigmoid_binary_cross_entropy_with_grad(arr, tgt, reduction=reduction)
        sl, sg = xent.sigmoid_binary_cross_entropy_with_grad(arr, tgt, reduction=reduction,
                                                             n_threads=np.int64(1))
        np.testing.assert_array_equal(_bits(fl), _bits(sl))
        assert fg.shape == arr.shape and fg.dtype == sg.dtype == dtype
        np.testing.assert_array_equal(_bits(fg), _bits(sg))


PROB_OPTIONS = [{"weight": "c"}, {"label_smoothing": 0.2}, {"weight": "c", "label_smoothing": 1}]
BCE_OPTIONS = [{"weight": "c"}, {"weight": "full"}, {"pos_weight": "c"}, {"pos_weight": "full"},
               {"label_smoothing": 0.1}, {"weight": "full", "pos_weight": "c", "label_smoothing": 0.3},
               {"weight": "c", "pos_weight": "full"}]


def _weights(kw, shape, dtype, rng):
    """'c': one weight per class (the last axis), 'full': the logits' shape;
    zeros among them, and a negative pos_weight."""
    out = dict(kw)
    for k in ("weight", "pos_weight"):
        if k in out:
            w = rng.uniform(0.0, 3.0, shape[-1:] if out[k] == "c" else shape).astype(dtype)
            w.reshape(-1)[::7] = 0
            w.reshape(-1)[3::11] = -0.5
            out[k] = w
    return out


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", PROB_OPTIONS, ids=lambda o: "-".join(o))
def test_prob_fast_path_with_options_is_bitwise_the_general_path(n, c, dtype, reduction, opts,
                                                                 monkeypatch):
    x, p = _dense(n, c, dtype)
    kw = _weights(opts, (n, c), dtype, np.random.default_rng(5))
    slow = xent.softmax_cross_entropy(x, p, reduction=reduction, **GENERAL, **kw)
    sl, sg = xent.softmax_cross_entropy_with_grad(x, p, reduction=reduction, **GENERAL, **kw)
    from xent import _api

    def no_general_path(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_softmax_ce", no_general_path)
    fast = xent.softmax_cross_entropy(x, p, reduction=reduction, **kw)
    fl, fg = xent.softmax_cross_entropy_with_grad(x, p, reduction=reduction, **kw)
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    np.testing.assert_array_equal(_bits(fl), _bits(sl))
    assert fg.dtype == sg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))


@pytest.mark.parametrize("shape", [(32, 10), (1, 1000), (5, 33), (7,), (3, 10000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", BCE_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_bce_fast_path_with_options_is_bitwise_the_general_path(shape, dtype, reduction, opts,
                                                                monkeypatch):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.reshape(-1)[::13] = np.inf
    t = rng.random(shape).astype(dtype)
    t.reshape(-1)[::5] = 1
    kw = _weights(opts, shape, dtype, rng)
    general = {"n_threads": np.int64(1)}       # not an int: the fast path declines
    slow = xent.sigmoid_binary_cross_entropy(x, t, reduction=reduction, **general, **kw)
    sl, sg = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction=reduction, **general, **kw)
    from xent import _api

    def no_general_path(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_bce", no_general_path)
    fast = xent.sigmoid_binary_cross_entropy(x, t, reduction=reduction, **kw)
    fl, fg = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction=reduction, **kw)
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    np.testing.assert_array_equal(_bits(fl), _bits(sl))
    assert fg.dtype == sg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))


def test_dense_fast_paths_with_options_leave_the_rest_to_the_general_path(monkeypatch):
    from xent import _api

    calls = []
    for name in ("_softmax_ce", "_bce"):
        real = getattr(_api, name)
        monkeypatch.setattr(_api, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    x, p = _dense(4, 10, np.float32)
    w = np.ones(10, np.float32)
    xent.softmax_cross_entropy(x, p, weight=w.astype(np.float64))       # another dtype
    xent.softmax_cross_entropy(x, p, sample_weight=np.ones(4, np.float32))
    xent.softmax_cross_entropy_with_grad(x, p, weight=w, grad_out=np.empty_like(x))
    xent.sigmoid_binary_cross_entropy(x, p, pos_weight=np.ones((4, 1), np.float32))
    xent.sigmoid_binary_cross_entropy(x, p, weight=np.ones(20, np.float32)[::2])
    xent.sigmoid_binary_cross_entropy(x, p, weight=[1.0] * 10)
    xent.sigmoid_binary_cross_entropy_with_grad(x, p, pos_weight=w, grad_out=np.empty_like(x))
    xent.sigmoid_binary_cross_entropy(x.reshape(-1), p.reshape(-1), weight=w[:1])  # (1,) on 40
    assert len(calls) == 8
    with pytest.raises(ValueError, match="`weight` must have shape \\(10,\\)"):
        xent.softmax_cross_entropy(x, p, weight=w[:5])
    with pytest.raises(ValueError, match="`pos_weight` must broadcast to the shape of `logits`"):
        xent.sigmoid_binary_cross_entropy(x, p, pos_weight=w[:5])
    with pytest.raises(ValueError, match="`ignore_index` applies to class-index targets only"):
        xent.softmax_cross_entropy(x, p, ignore_index=1)
    for fn in (xent.softmax_cross_entropy, xent.sigmoid_binary_cross_entropy):
        with pytest.raises(ValueError, match="`label_smoothing` must be a number in \\[0, 1\\]"):
            fn(x, p, label_smoothing=-0.1)


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn, mode", [(xent.logsumexp, 0), (xent.log_softmax, 1),
                                      (xent.softmax, 2)])
def test_softmax_fast_path_is_bitwise_the_general_path(n, c, dtype, fn, mode):
    x, _ = _dense(n, c, dtype)
    fast = _kernels.fast_softmax(x, mode)
    assert fast is not NotImplemented
    slow = fn(x, **GENERAL)
    assert fast.shape == slow.shape and fast.dtype == slow.dtype == dtype
    np.testing.assert_array_equal(_bits(fast), _bits(slow))
    np.testing.assert_array_equal(_bits(fn(x)), _bits(slow))


@pytest.mark.parametrize("shape", [(32, 10), (7,), (1, 32768)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bool_bce_target_takes_the_fast_path(shape, dtype, monkeypatch):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.random(shape) < 0.3
    general = {"n_threads": np.int64(1)}       # not an int: the fast path declines
    slow = xent.sigmoid_binary_cross_entropy(x, t, **general)
    sl, sg = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="sum", **general)
    from xent import _api

    def no_general_path(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_bce", no_general_path)
    np.testing.assert_array_equal(_bits(xent.sigmoid_binary_cross_entropy(x, t)), _bits(slow))
    fl, fg = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="sum")
    np.testing.assert_array_equal(_bits(fl), _bits(sl))
    assert fg.dtype == dtype
    np.testing.assert_array_equal(_bits(fg), _bits(sg))
    assert t.dtype == np.bool_                 # the target itself is not converted


def test_bool_bce_target_beyond_a_tile_or_with_grad_out_takes_the_general_path(monkeypatch):
    from xent import _api

    calls = []
    real = _api._bce
    monkeypatch.setattr(_api, "_bce", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.zeros((2, 20000), np.float32)       # two tiles
    xent.sigmoid_binary_cross_entropy(x, x > 0)
    x = np.zeros((4, 10), np.float32)
    xent.sigmoid_binary_cross_entropy_with_grad(x, x > 0, grad_out=np.empty_like(x))
    assert len(calls) == 2


def test_dense_fast_paths_decline_what_they_do_not_handle():
    x, p = _dense(4, 10, np.float32)
    assert _kernels.fast_dense(x, p, "avg", False, False) is NotImplemented
    assert _kernels.fast_dense(x, p.astype(np.float64), "mean", False, False) is NotImplemented
    assert _kernels.fast_dense(x[:, ::2], p[:, ::2], "mean", False, False) is NotImplemented
    assert _kernels.fast_dense(x, p[:, :5], "mean", False, False) is NotImplemented
    assert _kernels.fast_dense(x.reshape(-1), p.reshape(-1), "mean", False, False) is NotImplemented
    assert _kernels.fast_dense(x, p.astype(np.float16), "mean", False, True) is NotImplemented
    assert _kernels.fast_dense(x.reshape(2, 2, 10), p.reshape(2, 2, 10), "sum", False,
                               True) is NotImplemented
    big, bp = _dense(2, 20000, np.float32)     # two tiles
    assert _kernels.fast_dense(big, bp, "mean", False, False) is NotImplemented
    assert _kernels.fast_softmax(big, 0) is NotImplemented
    assert _kernels.fast_softmax(x.reshape(-1), 0) is NotImplemented
    assert _kernels.fast_softmax(x.astype(np.float16), 2) is NotImplemented
    assert _kernels.fast_softmax(x.T, 1) is NotImplemented
    assert _kernels.fast_softmax(np.zeros((3, 0), np.float32), 0) is NotImplemented


def test_dense_errors_still_come_from_the_general_path():
    x, p = _dense(4, 10, np.float32)
    with pytest.raises(ValueError, match="`target` must be class indices of shape"):
        xent.softmax_cross_entropy(x, p[:, :5])
    with pytest.raises(ValueError, match="`target` must have the shape of `logits`"):
        xent.sigmoid_binary_cross_entropy(x, p[:, :5])
    with pytest.raises(ValueError, match="`target` of integer dtype must hold 0 or 1"):
        xent.sigmoid_binary_cross_entropy(x, np.full((4, 10), 2))
    with pytest.raises(ValueError, match="must have at least one element along axis"):
        xent.softmax(np.zeros((3, 0), np.float32))


def test_fast_paths_take_a_grad_out_and_out():
    x, p = _dense(32, 10, np.float32)
    y = np.random.default_rng(3).integers(0, 10, 32)
    g = np.empty_like(x)
    for target in (y, p):
        assert _kernels.fast_index_ce(x, y, "sum", True, g) is not NotImplemented
        assert _kernels.fast_dense(x, p, "sum", True, False, g) is not NotImplemented
        loss, out = xent.softmax_cross_entropy_with_grad(x, target, grad_out=g)
        assert out is g
        sl, sg = xent.softmax_cross_entropy_with_grad(x, target, **GENERAL)
        np.testing.assert_array_equal(_bits(loss), _bits(sl))
        np.testing.assert_array_equal(_bits(g), _bits(sg))
        inplace = x.copy()                     # in place over the logits
        _, out = xent.softmax_cross_entropy_with_grad(inplace, target, grad_out=inplace)
        assert out is inplace
        np.testing.assert_array_equal(_bits(inplace), _bits(sg))
    xb = np.clip(x, -30, 30)
    _, out = xent.sigmoid_binary_cross_entropy_with_grad(xb, p, grad_out=g)
    _, sg = xent.sigmoid_binary_cross_entropy_with_grad(xb, p, n_threads=np.int64(1))
    assert out is g
    np.testing.assert_array_equal(_bits(g), _bits(sg))
    for fn, mode in ((xent.log_softmax, 1), (xent.softmax, 2)):
        o = np.empty_like(x)
        assert fn(x, out=o) is o
        np.testing.assert_array_equal(_bits(o), _bits(fn(x, **GENERAL)))
        inplace = x.copy()
        assert fn(inplace, out=inplace) is inplace
        np.testing.assert_array_equal(_bits(inplace), _bits(o))


def test_fast_paths_decline_an_out_they_cannot_take():
    x, p = _dense(32, 10, np.float32)
    y = np.random.default_rng(3).integers(0, 10, 32)
    ro = np.empty_like(x)
    ro.setflags(write=False)
    for bad in (np.empty((32, 10), np.float64),      # dtype
                np.empty((10, 32), np.float32),      # shape
                np.empty((32, 20), np.float32)[:, ::2],  # layout
                ro,                                  # read-only
                p):                                  # the target's memory
        assert _kernels.fast_dense(x, p, "sum", True, False, bad) is NotImplemented
        if bad is not p:
            assert _kernels.fast_index_ce(x, y, "sum", True, bad) is NotImplemented
    flat = np.empty(325, np.float32)                 # overlapping the logits, not them
    xo, go = flat[:320].reshape(32, 10), flat[5:].reshape(32, 10)
    xo[...] = x
    assert _kernels.fast_dense(xo, p, "sum", True, False, go) is NotImplemented
    assert _kernels.fast_index_ce(xo, y, "sum", True, go) is NotImplemented
    assert _kernels.fast_softmax(xo, 2, go) is NotImplemented
    assert _kernels.fast_softmax(x, 0, np.empty(32, np.float32)) is NotImplemented
    assert _kernels.fast_softmax(x, 2, ro) is NotImplemented
    # the general path then gives its own error
    with pytest.raises(ValueError, match="`grad_out`"):
        xent.softmax_cross_entropy_with_grad(x, p, grad_out=np.empty((10, 32), np.float32))
    with pytest.raises(ValueError, match="`grad_out`"):
        xent.softmax_cross_entropy_with_grad(x, p, grad_out=p)
