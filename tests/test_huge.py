"""Huge arrays: more than 2**31 elements (64-bit indexing everywhere).

A kernel that indexes with a 32-bit int (``i * C`` in an ``int``, a tile
offset, a flat element index) reads or writes the wrong place once the array
holds more than 2**31 elements: these tests build such arrays in float32
(about 8.6 GB each) and check

* rows (or elements) at the start, in the middle, *across* the 2**31 boundary
  and at the very end against the NumPy reference computed on those rows only;
* ``reduction="sum"`` against a float64 sum, block by block, of the reference
  per-row losses over the whole array (every row is right, not just the
  sampled ones), and against the kernel's own ``reduction="none"`` output;
* the in-place gradient (``grad_out=logits``): sampled rows against the
  reference, and an invariant on every row (a softmax gradient row sums to 0;
  a softmax row sums to 1).

They are marked ``slow`` and skip themselves, with the reason, when
``/proc/meminfo``'s MemAvailable is too small (about 11 GB and 19 GB are
needed).  A lock file serialises them across processes, so that two test
runs on one machine do not both allocate.  Timings are printed (run with
``-s`` to see them), never asserted.
"""

import os
import tempfile
import time

import numpy as np
import pytest

import xent
from xent import reference as ref

pytestmark = pytest.mark.slow

GB = 1e9
N_CLASSES = 1000
# 2_147_490 rows x 1000 classes = 2**31 + 6352 elements: the last six rows lie
# wholly beyond element 2**31, and row 2_147_483 straddles it.
N_ROWS = 2**31 // N_CLASSES + 7
BLOCK_ROWS = 1 << 14          # rows per block of the reference pass (64 MB of float32)


def mem_available():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


LOCK_WAIT_S = 900


@pytest.fixture
def machine_lock():
    """One huge-array test at a time on this machine, across processes: two
    suites run at once (a wheel check beside a developer's run) would each
    see enough free memory, then both allocate it.  Waits for the lock (up to
    LOCK_WAIT_S), then skips."""
    fcntl = pytest.importorskip("fcntl", reason="the cross-process lock needs fcntl (POSIX)")
    path = os.path.join(tempfile.gettempdir(), "xent-test-huge.lock")
    with open(path, "a") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another process held {path} (a huge-array test) for "
                                f"{LOCK_WAIT_S} s")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def require_memory(nbytes):
    avail = mem_available()
    need = nbytes + 2 * GB            # the reference's block temporaries and headroom
    if avail is None:
        pytest.skip("cannot tell the available memory (no /proc/meminfo)")
    if avail < need:
        pytest.skip(f"needs about {need / GB:.1f} GB of available memory; "
                    f"MemAvailable is {avail / GB:.1f} GB")


def fill_uniform(a, lo, hi, seed):
    """Fill float32 `a` with uniform values in [lo, hi), in blocks (no
    full-size temporaries)."""
    rng = np.random.default_rng(seed)
    flat = a.reshape(-1)
    step = 1 << 26
    for s in range(0, flat.size, step):
        blk = flat[s:s + step]
        rng.random(out=blk, dtype=np.float32)
        blk *= np.float32(hi - lo)
        blk += np.float32(lo)


def sample_rows(n_rows, n_cols):
    cross = 2**31 // n_cols                      # the row holding element 2**31
    rows = [0, 1, n_rows // 2, cross - 1, cross, cross + 1, n_rows - 2, n_rows - 1]
    return np.unique(np.array(rows))


def timed(label, fn, times):
    t = time.perf_counter()
    out = fn()
    times[label] = time.perf_counter() - t
    return out


def report(name, times):
    print(f"\n[{name}] " + ", ".join(f"{k}: {v:.1f} s" for k, v in times.items()))


def blockwise_f64_sum(n_rows, per_block):
    """sum over row blocks of per_block(r0, r1) (an array), in float64."""
    total = 0.0
    for r0 in range(0, n_rows, BLOCK_ROWS):
        total += float(np.sum(per_block(r0, min(r0 + BLOCK_ROWS, n_rows)), dtype=np.float64))
    return total


def blockwise_max(n_rows, per_block):
    """max over row blocks of per_block(r0, r1) (an array)."""
    return max(float(np.max(per_block(r0, min(r0 + BLOCK_ROWS, n_rows))))
               for r0 in range(0, n_rows, BLOCK_ROWS))


def test_softmax_ce_class_indices_and_primitives_beyond_2_31(machine_lock):
    n, c = N_ROWS, N_CLASSES
    assert n * c > 2**31
    # logits + loss_out + labels + logsumexp output
    require_memory(n * c * 4 + n * (4 + 8 + 4))
    times = {}
    x = np.empty((n, c), dtype=np.float32)
    timed("fill", lambda: fill_uniform(x, -8.0, 8.0, seed=1), times)
    y = np.random.default_rng(2).integers(0, c, size=n)
    rows = sample_rows(n, c)
    saved = x[rows].copy()

    # forward: per-row losses, sum and mean
    loss = timed("sce none", lambda: xent.softmax_cross_entropy(x, y, reduction="none"), times)
    total = timed("sce sum", lambda: xent.softmax_cross_entropy(x, y, reduction="sum"), times)
    mean = xent.softmax_cross_entropy(x, y)
    np.testing.assert_allclose(loss[rows], ref.softmax_cross_entropy(saved, y[rows], reduction="none"),
                               rtol=1e-5, atol=1e-6)
    ref_total = timed("reference pass", lambda: blockwise_f64_sum(
        n, lambda r0, r1: ref.softmax_cross_entropy(x[r0:r1], y[r0:r1], reduction="none")), times)
    assert total == pytest.approx(ref_total, rel=1e-6)
    assert total == pytest.approx(blockwise_f64_sum(n, lambda r0, r1: loss[r0:r1]), rel=1e-9)
    assert mean == pytest.approx(total / n, rel=1e-12)
    del loss

    # logsumexp on the same array
    lse = timed("logsumexp", lambda: xent.logsumexp(x), times)
    np.testing.assert_allclose(lse[rows], ref.logsumexp(saved), rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(lse))

    # in-place gradient of the sum: sampled rows against the reference, and
    # every row of a softmax gradient sums to 0 (sum softmax = 1, one -1)
    _, ref_grad = ref.softmax_cross_entropy_with_grad(saved, y[rows], reduction="sum")
    total_g, g = timed("sce grad in place", lambda: xent.softmax_cross_entropy_with_grad(
        x, y, reduction="sum", grad_out=x), times)
    assert g is x
    assert total_g == pytest.approx(total, rel=1e-12)    # fused and forward-only loops
    np.testing.assert_allclose(g[rows], ref_grad, rtol=1e-5, atol=1e-7)
    assert blockwise_max(n, lambda r0, r1: np.abs(g[r0:r1].sum(axis=1, dtype=np.float64))) < 1e-5

    # the gradient is a fine set of logits too: softmax in place, every row sums to 1
    saved = x[rows].copy()
    sm = timed("softmax in place", lambda: xent.softmax(x, out=x), times)
    assert sm is x
    np.testing.assert_allclose(sm[rows], ref.softmax(saved), rtol=1e-5, atol=1e-9)
    assert blockwise_max(n, lambda r0, r1: np.abs(sm[r0:r1].sum(axis=1, dtype=np.float64) - 1)) < 1e-5
    report("class indices, logsumexp, softmax", times)


def test_softmax_ce_probabilities_and_bce_beyond_2_31(machine_lock):
    n, c = N_ROWS, N_CLASSES
    require_memory(2 * n * c * 4)                 # logits and targets
    times = {}
    x = np.empty((n, c), dtype=np.float32)
    t = np.empty((n, c), dtype=np.float32)
    timed("fill", lambda: (fill_uniform(x, -8.0, 8.0, seed=3), fill_uniform(t, 0.0, 1.0, seed=4)),
          times)
    rows = sample_rows(n, c)

    # dense softmax CE (rows of t need not sum to 1)
    total = timed("dense sce sum", lambda: xent.softmax_cross_entropy(x, t, reduction="sum"), times)
    np.testing.assert_allclose(
        xent.softmax_cross_entropy(x[rows], t[rows], reduction="none"),
        ref.softmax_cross_entropy(x[rows], t[rows], reduction="none"), rtol=1e-5, atol=1e-6)
    ref_total = timed("reference pass (dense)", lambda: blockwise_f64_sum(
        n, lambda r0, r1: ref.softmax_cross_entropy(x[r0:r1], t[r0:r1], reduction="none")), times)
    assert total == pytest.approx(ref_total, rel=1e-6)

    # BCE over the same 2**31 + 6352 elements, with a per-class pos_weight
    pos_weight = np.linspace(0.5, 2.0, c, dtype=np.float32)
    btotal = timed("bce sum", lambda: xent.sigmoid_binary_cross_entropy(
        x, t, pos_weight=pos_weight, reduction="sum"), times)
    ref_btotal = timed("reference pass (bce)", lambda: blockwise_f64_sum(
        n, lambda r0, r1: ref.sigmoid_binary_cross_entropy(x[r0:r1], t[r0:r1], pos_weight=pos_weight,
                                                           reduction="none")), times)
    assert btotal == pytest.approx(ref_btotal, rel=1e-6)

    # in-place gradients, sampled rows against the reference
    saved = x[rows].copy()
    _, ref_grad = ref.softmax_cross_entropy_with_grad(saved, t[rows], reduction="sum")
    total_g, g = timed("dense sce grad in place", lambda: xent.softmax_cross_entropy_with_grad(
        x, t, reduction="sum", grad_out=x), times)
    assert g is x and total_g == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(g[rows], ref_grad, rtol=1e-4, atol=1e-6)

    # the gradient is a fine set of logits too; keep the sampled rows and the
    # last elements (those beyond 2**31) to check the in-place BCE gradient
    saved = x[rows].copy()
    tail = slice(2**31 - 10, None)
    saved_tail = x.reshape(-1)[tail].copy()
    _, g = timed("bce grad in place", lambda: xent.sigmoid_binary_cross_entropy_with_grad(
        x, t, reduction="sum", grad_out=x), times)
    assert g is x
    _, ref_grad = ref.sigmoid_binary_cross_entropy_with_grad(saved, t[rows], reduction="sum")
    np.testing.assert_allclose(g[rows], ref_grad, rtol=1e-5, atol=1e-7)
    _, ref_grad = ref.sigmoid_binary_cross_entropy_with_grad(saved_tail, t.reshape(-1)[tail],
                                                             reduction="sum")
    np.testing.assert_allclose(g.reshape(-1)[tail], ref_grad, rtol=1e-5, atol=1e-7)
    report("probabilities, BCE", times)
