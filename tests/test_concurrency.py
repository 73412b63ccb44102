"""Concurrency: calls from many Python threads at once.

* Eight Python threads call every public kernel at the same time, on the same
  (shared, read-only) input arrays, each with its own output buffers; every
  result is bitwise equal to the same call made serially.  The threads start
  together (a barrier) and walk the kernels in different orders, so different
  kernels and dtypes overlap, and they use different ``n_threads`` so several
  OpenMP teams run at once.
* The GIL is released while a kernel runs: a pure-Python counter thread keeps
  making progress *throughout* long calls (about 1e7 elements each) made in
  another thread.  Progress is judged by how the counter's ticks spread over
  the calls' duration cut into equal slices, which needs no timing threshold:
  with the GIL held, the counter could only tick between calls.  The kernel
  thread uses one OpenMP thread (two where a third core is free), so that the
  counter has a core of its own and the test measures the GIL, not the
  scheduler.
"""

import os
import sys
import threading
import time

import numpy as np
import pytest

import xent

from xent import keras as xkeras

N_PY_THREADS = 8
REPEATS = 2


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _shared_inputs(dtype, n_rows=2000, n_cols=61):
    """Inputs shared by all threads: awkward sizes (several tiles, a ragged
    last tile, C not a multiple of any vector width), specials included."""
    rng = np.random.default_rng(1234 + np.dtype(dtype).itemsize)
    x = (rng.standard_normal((n_rows, n_cols)) * 4).astype(dtype)
    x[::59, 3] = -np.inf                     # masks
    x[5, :] = np.nan                         # a NaN row
    labels = rng.integers(0, n_cols, size=n_rows)
    labels[::11] = -100                      # ignored rows
    probs = rng.random((n_rows, n_cols)).astype(dtype)
    probs /= probs.sum(axis=1, keepdims=True)
    weight = rng.uniform(0.5, 2.0, size=n_cols).astype(dtype)
    sample_weight = rng.uniform(0.0, 2.0, size=n_rows).astype(dtype)
    t01 = (rng.random((n_rows, n_cols)) < 0.3).astype(dtype)
    pos_weight = rng.uniform(0.5, 3.0, size=n_cols).astype(dtype)
    return dict(zip(
        ["x", "labels", "probs", "weight", "sample_weight", "t01", "pos_weight"],
        _readonly(x, labels, probs, weight, sample_weight, t01, pos_weight)))


def _threaded(f, *args, **kw):
    """A call taking the n_threads of the Python thread that makes it."""
    return lambda nt: f(*args, n_threads=nt, **kw)


def _fixed(f, *args, **kw):
    """A call without n_threads (primitives, Keras): OpenMP's default team."""
    return lambda nt: f(*args, **kw)


def _in_place_call(f, x, *args, **kw):
    """f(copy of x, ..., grad_out=that copy): in place on a private copy."""
    def call(nt):
        xc = x.copy()
        loss, grad = f(xc, *args, n_threads=nt, grad_out=xc, **kw)
        assert grad is xc
        return loss, grad
    return call


def _cases_for(dtype):
    s = _shared_inputs(dtype)
    x, labels, probs, t01 = s["x"], s["labels"], s["probs"], s["t01"]
    w, sw, pw = s["weight"], s["sample_weight"], s["pos_weight"]
    cases = {}
    for red in ("none", "sum", "mean"):
        cases[f"sce_index_{red}"] = _threaded(
            xent.softmax_cross_entropy, x, labels, weight=w, sample_weight=sw,
            ignore_index=-100, label_smoothing=0.1, reduction=red)
        cases[f"sce_index_grad_{red}"] = _threaded(
            xent.softmax_cross_entropy_with_grad, x, labels, weight=w, sample_weight=sw,
            ignore_index=-100, reduction=red)
        cases[f"sce_prob_{red}"] = _threaded(xent.softmax_cross_entropy, x, probs, reduction=red)
        cases[f"sce_prob_grad_{red}"] = _threaded(
            xent.softmax_cross_entropy_with_grad, x, probs, weight=w, sample_weight=sw,
            label_smoothing=0.05, reduction=red)
        cases[f"bce_{red}"] = _threaded(xent.sigmoid_binary_cross_entropy, x, t01,
                                        pos_weight=pw, reduction=red)
        cases[f"bce_grad_{red}"] = _threaded(
            xent.sigmoid_binary_cross_entropy_with_grad, x, probs, weight=w,
            label_smoothing=0.1, reduction=red)
    cases["sce_index_grad_out"] = lambda nt: xent.softmax_cross_entropy_with_grad(
        x, labels, ignore_index=-100, n_threads=nt, grad_out=np.empty_like(x))
    cases["sce_index_grad_in_place"] = _in_place_call(
        xent.softmax_cross_entropy_with_grad, x, labels, ignore_index=-100)
    cases["sce_prob_grad_in_place"] = _in_place_call(xent.softmax_cross_entropy_with_grad, x, probs)
    cases["bce_grad_in_place"] = _in_place_call(xent.sigmoid_binary_cross_entropy_with_grad, x, t01)
    # small calls (32 x 10, writeable, contiguous): the small-call fast path
    xs = np.ascontiguousarray(x[:32, :10])
    xs[np.isnan(xs)] = 0.0
    ys = np.ascontiguousarray(np.abs(labels[:32]) % 10)
    for red in ("none", "sum", "mean"):
        cases[f"sce_index_small_{red}"] = _threaded(xent.softmax_cross_entropy, xs, ys, reduction=red)
        cases[f"sce_index_small_grad_{red}"] = _threaded(xent.softmax_cross_entropy_with_grad, xs, ys,
                                                         reduction=red)
    cases["logsumexp"] = _fixed(xent.logsumexp, x)
    cases["logsumexp_axis0"] = _fixed(xent.logsumexp, x, axis=0)
    cases["log_softmax"] = _fixed(xent.log_softmax, x)
    cases["softmax"] = _fixed(xent.softmax, x)
    cases["softmax_out"] = lambda nt: xent.softmax(x, out=np.empty_like(x))
    cases["log_softmax_axis0"] = _fixed(xent.log_softmax, x, axis=0)
    # the Keras-compatible functions, on logits and on probabilities
    cases["keras_categorical_logits"] = _fixed(
        xkeras.categorical_crossentropy, probs, x, from_logits=True, label_smoothing=0.1)
    cases["keras_categorical_probs"] = _fixed(xkeras.categorical_crossentropy, probs, probs[::-1])
    cases["keras_sparse_logits"] = _fixed(
        xkeras.sparse_categorical_crossentropy, labels, x, from_logits=True, ignore_class=-100)
    cases["keras_sparse_probs"] = _fixed(
        xkeras.sparse_categorical_crossentropy, np.maximum(labels, 0), probs)
    cases["keras_binary_logits"] = _fixed(xkeras.binary_crossentropy, t01, x, from_logits=True)
    cases["keras_binary_probs"] = _fixed(xkeras.binary_crossentropy, t01, probs,
                                         label_smoothing=0.2)
    return [(f"{name}[{np.dtype(dtype).name}]", fn) for name, fn in cases.items()]


def _cases():
    """(name, call(n_threads)) for every public kernel, both dtypes, every
    output mode.  Calls that write into a buffer allocate their own, so the
    threads share inputs only; the in-place cases work on a private copy."""
    return _cases_for(np.float32) + _cases_for(np.float64)


def _bits(result):
    """A hashable, bit-exact fingerprint of a result (float, array or tuple)."""
    if isinstance(result, tuple):
        return tuple(_bits(r) for r in result)
    if isinstance(result, float):
        return ("float", np.float64(result).tobytes())
    a = np.asarray(result)
    return (a.dtype.str, a.shape, a.tobytes())


THREAD_COUNTS = [1, 2, None, 3, 1, 2, None, 4]     # n_threads of each Python thread


def test_eight_threads_every_kernel_bitwise_equal_to_serial():
    cases = _cases()
    # serial results, one per n_threads value (thread-count determinism is
    # test_determinism's business; here only concurrency may differ)
    expected = {nt: {name: _bits(fn(nt)) for name, fn in cases} for nt in set(THREAD_COUNTS)}

    barrier = threading.Barrier(N_PY_THREADS)
    mismatches, errors = [], []

    def worker(k):
        nt = THREAD_COUNTS[k]
        order = cases[k * 7 % len(cases):] + cases[:k * 7 % len(cases)]   # staggered start
        if k % 2:
            order = order[::-1]
        try:
            barrier.wait(timeout=60)
            for _ in range(REPEATS):
                for name, fn in order:
                    if _bits(fn(nt)) != expected[nt][name]:
                        mismatches.append((k, nt, name))
        except Exception as exc:  # reported below; a thread must not die silently
            errors.append((k, repr(exc)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(N_PY_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    assert not mismatches, f"{len(mismatches)} concurrent results differ from serial: {mismatches[:10]}"


def test_shared_inputs_untouched_by_concurrent_calls():
    """The read-only flag stops writes through NumPy, not from C: compare
    the shared buffers' bytes after a concurrent run."""
    s = _shared_inputs(np.float32, 500, 13)
    before = {k: v.tobytes() for k, v in s.items()}
    threads = [threading.Thread(target=lambda: xent.softmax_cross_entropy_with_grad(
        s["x"], s["labels"], ignore_index=-100, weight=s["weight"])) for _ in range(N_PY_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: v.tobytes() for k, v in s.items()} == before


# --------------------------------------------------------------------------
# the GIL is released during the kernels
# --------------------------------------------------------------------------

N_BIG = 12_000_000        # elements of a long call: ~0.05-0.3 s on one core
REPEAT_LONG = 3           # the long call is made this many times back to back


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(7)
    n_cols = 10
    x = (rng.random(N_BIG, dtype=np.float32) * 8 - 4).reshape(-1, n_cols)
    labels = rng.integers(0, n_cols, size=x.shape[0])
    probs = np.full_like(x, 1.0 / n_cols)
    flat = x.reshape(-1)
    t = (flat > 0).astype(np.float32)
    # C = 1 and every row ignored: the label check is the whole call, and
    # 4e7 labels take it tens of milliseconds (the logits are never read)
    x1 = np.zeros((40_000_000, 1), dtype=np.float32)
    ignored = np.full(x1.shape[0], -1, dtype=np.int64)
    return dict(x=x, labels=labels, probs=probs, flat=flat, t=t, x1=x1, ignored=ignored)


def _limited(f, *args):
    """A primitive (no n_threads argument) under threadpoolctl's OpenMP limit,
    set in the calling thread (OpenMP's thread count is per thread)."""
    threadpoolctl = pytest.importorskip(
        "threadpoolctl", reason="threadpoolctl sets the primitives' OpenMP team size")

    def call(b, nt):
        with threadpoolctl.threadpool_limits(limits=nt, user_api="openmp"):
            return f(b[args[0]])
    return call


LONG_CALLS = {
    "sce_index": lambda b, nt: xent.softmax_cross_entropy(b["x"], b["labels"], n_threads=nt),
    "sce_index_grad": lambda b, nt: xent.softmax_cross_entropy_with_grad(b["x"], b["labels"],
                                                                         n_threads=nt),
    "sce_prob": lambda b, nt: xent.softmax_cross_entropy(b["x"], b["probs"], n_threads=nt),
    "sce_prob_grad": lambda b, nt: xent.softmax_cross_entropy_with_grad(b["x"], b["probs"],
                                                                        n_threads=nt),
    "bce": lambda b, nt: xent.sigmoid_binary_cross_entropy(b["flat"], b["t"], n_threads=nt),
    "bce_grad": lambda b, nt: xent.sigmoid_binary_cross_entropy_with_grad(b["flat"], b["t"],
                                                                          n_threads=nt),
    # the label check is this call's whole work: every row is ignored, so the
    # loss kernel has nothing to do (the "mean" of no rows is nan)
    "sce_index_label_check": lambda b, nt: xent.softmax_cross_entropy(
        b["x1"], b["ignored"], ignore_index=-1, n_threads=nt),
    "logsumexp": _limited(xent.logsumexp, "x"),
    "log_softmax": _limited(xent.log_softmax, "x"),
    "softmax": _limited(xent.softmax, "x"),
}

BINS = 20           # the calls' duration is cut into this many equal slices ...
MIN_BINS_TICKED = 12  # ... and the counter must have ticked in at least this many


def _progress_during(call):
    """Run `call` REPEAT_LONG times in a worker thread while this thread counts
    in pure Python.

    Returns (number of time slices of the calls in which the counter ticked,
    total ticks).  Only relative positions of timestamps are used: a kernel
    that held the GIL would let the counter tick only between calls, in a few
    slices."""
    window = {}
    stamps = []
    done = threading.Event()

    def worker():
        window["t0"] = time.perf_counter()
        try:
            for _ in range(REPEAT_LONG):
                call()
        finally:
            window["t1"] = time.perf_counter()
            done.set()

    th = threading.Thread(target=worker)
    counter = 0
    th.start()
    while not done.is_set():
        counter += 1
        if counter % 64 == 0:
            stamps.append(time.perf_counter())
    th.join()
    t0, t1 = window["t0"], window["t1"]
    s = np.asarray(stamps)
    s = s[(s >= t0) & (s <= t1)]
    bins = np.unique(np.minimum(((s - t0) / (t1 - t0) * BINS).astype(int), BINS - 1))
    return bins.size, counter


def _team_sizes():
    # With as many OpenMP threads as cores the counter thread has no core of
    # its own and its progress would measure the scheduler, not the GIL.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [pytest.param(1, id="1thread"),
            pytest.param(2, id="2threads", marks=pytest.mark.skipif(
                (cores or 1) < 3, reason="needs a core free for the counter thread beside a "
                                         "team of 2 OpenMP threads"))]


# the label-check call is one short pass over the labels, too short for the
# time-slice measure; test_gil_released_early_in_call covers it
SPREAD_CALLS = [name for name in LONG_CALLS if name != "sce_index_label_check"]


@pytest.mark.parametrize("n_threads", _team_sizes())
@pytest.mark.parametrize("name", SPREAD_CALLS)
def test_python_thread_progresses_during_long_call(big, name, n_threads):
    call = LONG_CALLS[name]
    # a short switch interval: a thread waiting for the GIL gets it within
    # 1 ms of a release, so ticks follow the kernel's GIL state closely
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        ticked, counter = _progress_during(lambda: call(big, n_threads))
    finally:
        sys.setswitchinterval(old)
    assert ticked >= MIN_BINS_TICKED, (
        f"{name} (n_threads={n_threads}): the Python counter thread ticked in only {ticked} of "
        f"{BINS} time slices of {REPEAT_LONG} calls ({counter} ticks in all): the GIL is held "
        "during the kernel"
    )


def _first_release(call, attempts=5):
    """How far into `call`, made in a worker thread, another Python thread
    first gets to run: a fraction of the call's duration (1.0: not before it
    returned).

    The switch interval is made huge, so the GIL changes hands only when its
    holder lets go of it (a ``nogil`` section, a blocking wait), never on a
    timer.  This thread waits for the GIL while the worker makes the call, and
    gets it at the call's first release.  A kernel that releases the GIL lets
    it in right away (a fraction near 0); one that holds it lets it in only at
    some later release (numpy's own, say) or at the end.  The wake-up can be
    late on a loaded machine, so the best of a few attempts counts."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    best = 1.0
    try:
        for _ in range(attempts):
            times = {}
            go, finished = threading.Event(), threading.Event()

            def worker():
                times["start"] = time.perf_counter()
                go.set()               # this thread wakes, then waits for the GIL ...
                try:
                    call()             # ... which it gets at the call's first release
                finally:
                    times["end"] = time.perf_counter()
                    finished.set()

            th = threading.Thread(target=worker)
            th.start()
            go.wait()
            woke = time.perf_counter()
            finished.wait()            # lets the worker finish
            th.join()
            span = times["end"] - times["start"]
            best = min(best, min(1.0, (woke - times["start"]) / span) if span > 0 else 1.0)
            if best < 0.1:
                break
        return best
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", list(LONG_CALLS))
def test_gil_released_early_in_call(big, name, n_threads):
    """Another Python thread gets to run within the first half of the call
    (the kernels release the GIL as soon as the arguments are checked).  With
    every row ignored, the label check is the whole call."""
    frac = _first_release(lambda: LONG_CALLS[name](big, n_threads))
    assert frac < 0.5, (
        f"{name} (n_threads={n_threads}): another Python thread could first run only after "
        f"{frac:.0%} of the call had passed: the GIL is held for most of it"
    )
