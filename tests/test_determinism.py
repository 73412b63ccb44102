"""Bitwise reproducibility.

* Every result, loss and gradient, is bitwise identical for any ``n_threads``
  and any run: the kernels split rows into tiles that depend on the shape only
  and combine the per-tile float64 sums in a fixed order.  Shapes are chosen to
  give many tiles (``(20000, 10)``, ``(300, 1000)``), one long row per tile
  (``(3, 40000)``, longer than the 2048-value row block), and a single tile.
* Results on a strided, Fortran-ordered, negatively strided, big-endian,
  misaligned or read-only input are bitwise equal to those on the contiguous,
  native copy.

"Bitwise" is checked on the bytes (``.view(np.uint8)``) of native-order copies
for arrays, and with ``==`` for Python floats (no NaN arises in these inputs).
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import xent

# counts above this machine's CPUs (3, 8) reach the kernels: see conftest.oversubscribe
pytestmark = pytest.mark.usefixtures("oversubscribe")

THREADS = [1, 2, 3, 8]
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]
BIG_SHAPES = [(20000, 10), (300, 1000), (3, 40000)]
SHAPES = BIG_SHAPES + [(37, 5)]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def native_bytes(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=False)).view(np.uint8)


def assert_bitwise(a, b, what=""):
    """Same type of result and the same bits (arrays), or the same float (scalars)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for k, (u, v) in enumerate(zip(a, b)):
            assert_bitwise(u, v, f"{what}[{k}]")
        return
    if isinstance(a, float):
        assert isinstance(b, float), what
        assert a == b or (a != a and b != b), f"{what}: {a!r} != {b!r}"   # NaN is NaN
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("="), f"{what}: {a.dtype} != {b.dtype}"
    if not np.array_equal(native_bytes(a), native_bytes(b)):
        diff = np.flatnonzero(a.ravel() != b.ravel())
        raise AssertionError(f"{what}: {diff.size} elements differ, first at flat {diff[:5]}")


def make_case(case, shape, dtype, seed=0):
    """(function name, logits, target, kwargs) for one kernel and option set."""
    rng = np.random.default_rng(seed)
    n, c = shape
    x = (rng.normal(scale=4, size=shape)).astype(dtype)
    x[::7, 0] = x[::7, -1]                        # ties at various places
    if case.startswith("index"):
        y = rng.integers(0, c, size=n)
        if case == "index":
            # -inf masks off the target: they must contribute exactly 0 everywhere
            mask = rng.random(shape) < 0.05
            mask[np.arange(n), y] = False
            x[mask] = -np.inf
            return "softmax", x, y, {}
        y[::5] = -100
        return "softmax", x, y, {"weight": rng.uniform(0.1, 3, size=c).astype(dtype),
                                 "sample_weight": rng.uniform(0, 2, size=n).astype(dtype),
                                 "ignore_index": -100, "label_smoothing": 0.1}
    if case.startswith("prob"):
        t = rng.uniform(size=shape).astype(dtype)
        if case == "prob":
            mask = rng.random(shape) < 0.05
            x[mask] = -np.inf
            t[mask] = 0                           # soft target 0 at a mask
            return "softmax", x, t, {}
        return "softmax", x, t, {"weight": rng.uniform(0.1, 3, size=c).astype(dtype),
                                 "sample_weight": rng.uniform(0, 2, size=n).astype(dtype),
                                 "label_smoothing": 0.2}
    t = rng.uniform(size=shape).astype(dtype)
    if case == "bce":
        t[::3] = np.round(t[::3])                 # hard and soft targets
        return "bce", x, t, {}
    return "bce", x, t, {"weight": rng.uniform(0, 2, size=(n, 1)).astype(dtype),
                         "pos_weight": rng.uniform(0.5, 4, size=c).astype(dtype),
                         "label_smoothing": 0.1}


CASES = ["index", "index-options", "prob", "prob-options", "bce", "bce-options"]


def run(kernel, x, target, kw, *, grad=True, **more):
    if kernel == "softmax":
        fn = xent.softmax_cross_entropy_with_grad if grad else xent.softmax_cross_entropy
    else:
        fn = xent.sigmoid_binary_cross_entropy_with_grad if grad else xent.sigmoid_binary_cross_entropy
    return fn(x, target, **kw, **more)


# --------------------------------------------------------------------------
# across n_threads and runs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_bitwise_identical_across_threads_and_runs(case, dtype, shape):
    kernel, x, target, kw = make_case(case, shape, dtype)
    x_before = x.copy()
    # "sum" differs from "mean" only by the gradient's scale and the final
    # division, so it gets fewer thread counts (the test suite must stay quick).
    plan = {"none": THREADS[1:] + [8, 3], "mean": THREADS[1:], "sum": [8]}
    for reduction, counts in plan.items():
        first = run(kernel, x, target, kw, reduction=reduction, n_threads=1)
        assert np.all(np.isfinite(first[1]))      # the inputs are meant to be regular
        if reduction != "none":
            assert np.isfinite(first[0])
        for nt in counts:                         # each count, and repeated runs
            again = run(kernel, x, target, kw, reduction=reduction, n_threads=nt)
            assert_bitwise(again, first, f"{reduction}, n_threads={nt}")
    # the loss-only path, too
    base = run(kernel, x, target, kw, grad=False, reduction="mean", n_threads=1)
    assert_bitwise(run(kernel, x, target, kw, grad=False, reduction="mean", n_threads=8),
                   base, "loss only, n_threads=8")
    assert_bitwise(x, x_before, "inputs untouched")


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_and_all_cores_match_one_thread(dtype):
    kernel, x, target, kw = make_case("index-options", (20000, 10), dtype)
    first = run(kernel, x, target, kw, n_threads=1)
    assert_bitwise(run(kernel, x, target, kw), first, "n_threads=None")
    assert_bitwise(run(kernel, x, target, kw, n_threads=-1), first, "n_threads=-1")


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_out_in_place_is_bitwise_equal(dtype):
    """Writing the gradient over the logits (any thread count) gives the same bits."""
    for case in ("index-options", "prob-options", "bce-options"):
        kernel, x, target, kw = make_case(case, (300, 1000), dtype)
        loss, grad = run(kernel, x, target, kw, n_threads=1)
        for nt in (1, 3):
            buf = x.copy()
            loss2, grad2 = run(kernel, buf, target, kw, n_threads=nt, grad_out=buf)
            assert grad2 is buf
            assert_bitwise((loss2, grad2), (loss, grad), f"{case} in place, n_threads={nt}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_special_logits_in_place_and_elsewhere_unchanged(dtype, weighted):
    """Without pos_weight a chunk of BCE is computed without guards, and again,
    guarded, where that gives inf or NaN.  In place, the second pass must still
    read the logits; and every other element keeps the bits it has with no
    special value beside it."""
    rng = np.random.default_rng(11)
    x = rng.normal(scale=4, size=(64, 1000)).astype(dtype)
    special = np.zeros(x.shape, bool)
    special[::3, 5] = special[1::3, 700] = special[2::9, 301] = True
    clean = x.copy()
    x[::3, 5], x[1::3, 700], x[2::9, 301] = np.inf, -np.inf, np.nan
    t = rng.uniform(size=x.shape).astype(dtype)
    t[::2, 5] = 1.0                                   # inf - inf without the guard
    kw = {"weight": rng.uniform(0, 2, size=(64, 1)).astype(dtype)} if weighted else {}
    f = xent.sigmoid_binary_cross_entropy_with_grad
    for reduction in ("none", "sum"):
        expected = f(x, t, reduction=reduction, **kw)
        for nt in (1, 2):
            buf = x.copy()
            got = f(buf, t, reduction=reduction, n_threads=nt, grad_out=buf, **kw)
            assert got[1] is buf
            assert_bitwise(got, expected, f"in place, {reduction}, n_threads={nt}")
    loss, grad = f(x, t, reduction="none", **kw)
    loss_c, grad_c = f(clean, t, reduction="none", **kw)
    assert_bitwise((loss[~special], grad[~special]), (loss_c[~special], grad_c[~special]),
                   "elements beside special ones")
    assert np.all(np.isposinf(loss[::3, 5][t[::3, 5] < 1]))
    assert np.all(loss[::6, 5] == 0) and np.all(np.isnan(loss[2::9, 301]))


# The primitives take no n_threads: they use OpenMP's default, set here through
# OMP_NUM_THREADS in a fresh interpreter for each count.
_CHILD = r"""
import hashlib, json, sys
import numpy as np
import xent
out = {}
for dtype in (np.float32, np.float64):
    for shape in [(20000, 10), (300, 1000), (3, 40000), (37, 5)]:
        x = np.random.default_rng(1).normal(scale=4, size=shape).astype(dtype)
        x[::7, 0] = x[::7, -1]
        for name in ("logsumexp", "log_softmax", "softmax"):
            r = np.ascontiguousarray(getattr(xent, name)(x))
            out[f"{name}{shape}{np.dtype(dtype).name}"] = hashlib.sha256(r.view(np.uint8)).hexdigest()
        y = np.random.default_rng(2).integers(0, shape[1], size=shape[0])
        loss, grad = xent.softmax_cross_entropy_with_grad(x, y, label_smoothing=0.1)
        out[f"ce{shape}{np.dtype(dtype).name}"] = [loss.hex(), hashlib.sha256(grad.view(np.uint8)).hexdigest()]
json.dump({"threads": xent.config()["default_threads"], "results": out}, sys.stdout)
"""


@pytest.mark.skipif(not xent.config()["openmp"],
                    reason="serial build: OMP_NUM_THREADS has no effect on xent")
def test_primitives_bitwise_identical_across_omp_num_threads():
    results = {}
    for nt in THREADS:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt))
        proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["threads"] == nt              # the setting did reach OpenMP
        results[nt] = data["results"]
    for nt in THREADS[1:]:
        differ = sorted(k for k in results[1] if results[nt][k] != results[1][k])
        assert not differ, f"OMP_NUM_THREADS={nt} changes {differ}"


# Each SIMD variant is its own code path: thread-count invariance must hold in
# every one the CPU runs (XENT_FORCE_ISA picks it at import, hence a subprocess).
_ISA_CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import xent
import xent._validate
from test_determinism import make_case, run, native_bytes
xent._validate.thread_limit = lambda: 64     # 3 and 8 threads on any machine (conftest.oversubscribe)
bad = []
for case in ("index", "index-options", "prob", "prob-options", "bce", "bce-options"):
    for dtype in (np.float32, np.float64):
        for shape in ((20000, 10), (3, 40000)):
            kernel, x, target, kw = make_case(case, shape, dtype)
            for reduction in ("none", "mean"):
                ref = run(kernel, x, target, kw, reduction=reduction, n_threads=1)
                for nt in (2, 3, 8):
                    got = run(kernel, x, target, kw, reduction=reduction, n_threads=nt)
                    same = (np.array_equal(native_bytes(got[0]), native_bytes(ref[0]))
                            and np.array_equal(native_bytes(got[1]), native_bytes(ref[1])))
                    if not same:
                        bad.append(f"{case} {np.dtype(dtype).name} {shape} {reduction} n_threads={nt}")
json.dump({"isa": xent.config()["simd_variant"], "bad": bad}, sys.stdout)
"""


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_every_simd_variant_is_thread_count_invariant(isa):
    if isa not in xent.config().get("simd_variants_supported", ["baseline"]):
        pytest.skip(f"this CPU or build cannot run the {isa} variant")
    env = dict(os.environ, XENT_FORCE_ISA=isa)
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", _ISA_CHILD, here], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["isa"] == isa
    assert not data["bad"], f"{isa}: results depend on n_threads: {data['bad']}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_primitives_bitwise_identical_across_runs(dtype, shape):
    x = np.random.default_rng(3).normal(scale=4, size=shape).astype(dtype)
    for fn in (xent.logsumexp, xent.log_softmax, xent.softmax):
        first = fn(x)
        for _ in range(2):
            assert_bitwise(fn(x), first, fn.__name__)


# --------------------------------------------------------------------------
# layouts: strided / Fortran / big-endian / misaligned inputs
# --------------------------------------------------------------------------

def relayout(a, variant):
    """The same values as ``a`` in another memory layout (or byte order)."""
    a = np.asarray(a)
    if variant == "contiguous":
        return np.ascontiguousarray(a)
    if variant == "fortran":
        return np.asfortranarray(a)
    if variant == "strided":
        steps = (2,) + (3,) * (a.ndim - 1)
        base = np.zeros([s * k for s, k in zip(a.shape, steps)], dtype=a.dtype)
        view = base[tuple(slice(None, None, k) for k in steps)]
        view[...] = a
        return view
    if variant == "negative-strides":
        return np.flip(np.flip(a).copy())
    if variant == "big-endian":
        swapped = a.dtype.newbyteorder(">" if sys.byteorder == "little" else "<")
        return a.astype(swapped)
    if variant == "big-endian-fortran":
        return np.asfortranarray(relayout(a, "big-endian"))
    if variant == "misaligned":
        buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = buf[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        assert a.dtype.itemsize == 1 or not view.flags.aligned
        return view
    if variant == "read-only":
        c = a.copy()
        c.flags.writeable = False
        return c
    raise AssertionError(variant)


LAYOUTS = ["fortran", "strided", "negative-strides", "big-endian", "big-endian-fortran",
           "misaligned", "read-only"]


def _relayout_all(x, target, kw, variant):
    kw2 = {k: (relayout(v, variant) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    return relayout(x, variant), relayout(target, variant), kw2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("variant", LAYOUTS)
def test_layout_bitwise_equal_to_contiguous_copy(variant, case, dtype):
    """Every array argument (logits, targets, weights) in the layout at once; the
    shape gives several tiles.  The result equals the contiguous native one."""
    kernel, x, target, kw = make_case(case, (2000, 33), dtype, seed=5)
    xv, tv, kwv = _relayout_all(x, target, kw, variant)
    assert np.array_equal(xv, x, equal_nan=True)   # the same values, really
    for reduction in REDUCTIONS:
        expected = _contiguous_result(case, dtype, reduction)
        got = run(kernel, xv, tv, kwv, reduction=reduction, n_threads=2)
        assert_bitwise(got, expected, f"{variant}, {reduction}")
        assert got[1].dtype.isnative
    got_loss = run(kernel, xv, tv, kwv, grad=False, reduction="none", n_threads=2)
    assert_bitwise(got_loss, _contiguous_result(case, dtype, "none", grad=False),
                   f"{variant}, loss only")


_CONTIGUOUS = {}


def _contiguous_result(case, dtype, reduction, grad=True):
    """The result on the contiguous native inputs, computed once per case."""
    key = (case, np.dtype(dtype).name, reduction, grad)
    if key not in _CONTIGUOUS:
        kernel, x, target, kw = make_case(case, (2000, 33), dtype, seed=5)
        _CONTIGUOUS[key] = run(kernel, x, target, kw, grad=grad, reduction=reduction, n_threads=2)
    return _CONTIGUOUS[key]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["weight", "pos_weight"])
@pytest.mark.parametrize("shape", [(2000, 33), (300, 1500)], ids=str)
def test_bce_broadcast_weights_equal_materialised_copy(dtype, which, shape):
    """A broadcast view (zero strides) of ``weight`` / ``pos_weight`` is one more
    layout of the same values: bitwise the result of its contiguous copy and of
    a strided copy.  The kernel reads (C,) weights through a repeating buffer
    when C <= 1024 (stretches of 1024 elements) and gathers them otherwise, so
    both sides of that threshold are here."""
    kernel, x, target, kw = make_case("bce-options", shape, dtype, seed=7)
    for reduction in REDUCTIONS:
        expected = run(kernel, x, target, kw, reduction=reduction, n_threads=2)
        full = dict(kw)
        full[which] = np.ascontiguousarray(np.broadcast_to(kw[which], x.shape))
        assert_bitwise(run(kernel, x, target, full, reduction=reduction, n_threads=2), expected,
                       f"{which} materialised, {reduction}")
        strided = dict(kw)
        spread = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype)
        spread[..., ::2] = np.broadcast_to(kw[which], x.shape)
        strided[which] = spread[..., ::2]
        assert_bitwise(run(kernel, x, target, strided, reduction=reduction, n_threads=3),
                       expected, f"{which} strided, {reduction}")


@pytest.mark.parametrize("label_dtype", [np.int8, np.int16, np.uint16, np.int32, np.uint32,
                                         np.dtype(">i8"), np.dtype(">u4")])
def test_label_dtypes_bitwise_equal(label_dtype):
    kernel, x, y, kw = make_case("index", (2000, 33), np.float32, seed=6)
    expected = run(kernel, x, y, kw, reduction="none")
    assert_bitwise(run(kernel, x, y.astype(label_dtype), kw, reduction="none"), expected,
                   str(np.dtype(label_dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", LAYOUTS)
def test_primitives_layout_bitwise_equal(variant, dtype):
    x = np.random.default_rng(4).normal(scale=4, size=(2000, 33)).astype(dtype)
    xv = relayout(x, variant)
    for fn in (xent.logsumexp, xent.log_softmax, xent.softmax):
        assert_bitwise(fn(xv), fn(x), f"{fn.__name__}, {variant}")
        assert_bitwise(fn(xv, axis=0), fn(x, axis=0), f"{fn.__name__}, {variant}, axis=0")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_class_axis_anywhere_equals_moved_contiguous_copy(dtype, kind):
    """(N, C, H) with axis=1, and a transposed (C, N) view with axis=0, give the
    bits of the contiguous array with the classes last."""
    rng = np.random.default_rng(9)
    x = rng.normal(scale=3, size=(40, 7, 130)).astype(dtype)
    if kind == "index":
        target = rng.integers(0, 7, size=(40, 130))
        moved_target = target
    else:
        target = rng.uniform(size=x.shape).astype(dtype)
        moved_target = np.ascontiguousarray(np.moveaxis(target, 1, -1))
    moved = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = rng.uniform(0.5, 2, size=7).astype(dtype)
    for reduction in REDUCTIONS:
        loss, grad = xent.softmax_cross_entropy_with_grad(x, target, axis=1, weight=w,
                                                          label_smoothing=0.1, reduction=reduction)
        loss_m, grad_m = xent.softmax_cross_entropy_with_grad(moved, moved_target, weight=w,
                                                              label_smoothing=0.1, reduction=reduction)
        assert_bitwise(loss, loss_m, reduction)
        assert_bitwise(grad, np.moveaxis(grad_m, -1, 1), reduction)
    # 2-D: classes on axis 0 of a transposed view
    x2 = moved.reshape(-1, 7)
    t2 = moved_target.reshape(-1) if kind == "index" else moved_target.reshape(-1, 7)
    t2_view = t2 if kind == "index" else t2.T
    loss, grad = xent.softmax_cross_entropy_with_grad(x2.T, t2_view, axis=0, reduction="none")
    loss_m, grad_m = xent.softmax_cross_entropy_with_grad(x2, t2, reduction="none")
    assert_bitwise(loss, loss_m, "axis=0")
    assert_bitwise(grad, grad_m.T, "axis=0")
