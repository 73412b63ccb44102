"""Threads: OpenMP runtime, ``n_threads``, ``OMP_NUM_THREADS`` and threadpoolctl.

What is checked, and against what:

* threadpoolctl sees exactly one OpenMP runtime that importing xent brings in,
  and it is the library ``xent.config()`` reports; ``threadpool_limits`` moves
  ``xent.config()["default_threads"]`` and really stops the kernels from
  starting worker threads.
* ``OMP_NUM_THREADS`` sets the default team (``n_threads=None``), ``n_threads=-1``
  uses every core whatever ``OMP_NUM_THREADS`` says, and an explicit
  ``n_threads`` wins over both.
* The number of threads a call actually used is read from the operating system
  (``/proc/self/task``: libgomp keeps its workers alive after a parallel
  region, so a team of ``n`` leaves ``n - 1`` new threads behind), not from
  xent's own report.  Those checks run in a fresh interpreter each, so nothing
  started by another test (or by a BLAS) is counted.
* Results are bitwise identical for any thread count, under threadpoolctl and
  with ``OMP_NUM_THREADS``; and calls from a Python thread pool with
  ``n_threads=1`` start no OpenMP threads at all (the advice the README gives
  against oversubscription).
* A serial build (``XENT_OPENMP=0``) says so in ``config()``/``show_config()``,
  loads no OpenMP runtime, and accepts every ``n_threads``.
"""

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import xent

OPENMP = xent.config()["openmp"]
needs_openmp = pytest.mark.skipif(
    not OPENMP, reason="xent was built without OpenMP (XENT_OPENMP=0 or no OpenMP in the compiler)"
)
serial_only = pytest.mark.skipif(OPENMP, reason="checks of the serial build; this xent has OpenMP")
# Counting threads through /proc is Linux-only; the rest of the file is portable.
needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="thread counting reads /proc/self/task (Linux only)"
)


def _cores():
    """Cores this process may run on (what OpenMP's omp_get_num_procs sees)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


# --------------------------------------------------------------------------
# running code in a fresh interpreter
# --------------------------------------------------------------------------

# Prepended to every child script: helpers to count the process's OS threads.
_CHILD_PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np

    def n_os_threads():
        return len(os.listdir("/proc/self/task"))

    def big_inputs():
        # 6000 x 37 float32 = 222k elements: several of xent's 32768-element
        # tiles, so a multi-threaded call really opens a parallel region.
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6000, 37)).astype(np.float32)
        y = rng.integers(0, 37, size=6000)
        return x, y
    """
)


def run_child(code, **env_overrides):
    """Run ``code`` in a fresh Python; it prints one JSON line, which is returned.

    The child imports the very xent this process imported (its parent directory
    goes first on PYTHONPATH) and checks that it did.  BLAS pools are pinned to
    one thread so that they add no threads of their own to the counts.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OMP_DYNAMIC"):
        env.pop(var, None)
    env.update(OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    xent_parent = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (xent_parent, env.get("PYTHONPATH")) if p)
    env.update(env_overrides)
    script = _CHILD_PRELUDE + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop("xent_file") == os.path.abspath(xent.__file__), "child imported another xent"
    return result


# --------------------------------------------------------------------------
# threadpoolctl
# --------------------------------------------------------------------------

@needs_openmp
def test_threadpoolctl_sees_exactly_one_openmp_runtime_for_xent():
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is needed to inspect thread pools")
    r = run_child(
        """
        import threadpoolctl
        before = {d["filepath"] for d in threadpoolctl.threadpool_info()}
        import xent
        # Only the libraries that importing xent loaded: xent's own runtime.
        new = [d for d in threadpoolctl.threadpool_info() if d["filepath"] not in before]
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__), "new": new,
                          "config": xent.config()}))
        """
    )
    omp = [d for d in r["new"] if d["user_api"] == "openmp"]
    assert len(omp) == 1, f"expected one OpenMP runtime loaded by xent, got {r['new']}"
    lib = omp[0]
    # It is the runtime xent reports, and its pool size is xent's default.
    assert lib["filepath"] in r["config"]["openmp_runtime"]
    assert lib["num_threads"] == r["config"]["default_threads"]
    assert os.path.basename(lib["filepath"]).startswith(("libgomp", "libomp", "libiomp", "vcomp"))


@needs_openmp
def test_threadpool_limits_changes_default_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is needed to limit thread pools")
    default = xent.config()["default_threads"]
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert xent.config()["default_threads"] == 1
    assert xent.config()["default_threads"] == default
    # Raising the limit is honoured too (OpenMP allows more threads than cores).
    with threadpoolctl.threadpool_limits(limits=default + 2, user_api="openmp"):
        assert xent.config()["default_threads"] == default + 2
    assert xent.config()["default_threads"] == default


@needs_openmp
@needs_proc
@pytest.mark.skipif(_cores() < 2, reason="needs 2+ cores to see a limit take effect")
def test_threadpool_limits_stops_kernels_from_starting_threads():
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is needed to limit thread pools")
    r = run_child(
        """
        import threadpoolctl, xent
        x, y = big_inputs()
        t0 = n_os_threads()
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            limited = xent.softmax_cross_entropy(x, y, reduction="sum")
        t1 = n_os_threads()
        free = xent.softmax_cross_entropy(x, y, reduction="sum")
        t2 = n_os_threads()
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__), "limited_new": t1 - t0,
                          "free_new": t2 - t1, "same": limited == free,
                          "default": xent.config()["default_threads"]}))
        """
    )
    assert r["limited_new"] == 0, "a call under threadpool_limits(1) started OpenMP threads"
    assert r["free_new"] == r["default"] - 1, "without a limit the default team should run"
    assert r["same"]


# --------------------------------------------------------------------------
# OMP_NUM_THREADS and n_threads
# --------------------------------------------------------------------------

@needs_openmp
@pytest.mark.parametrize("omp_num_threads", [1, 3])
def test_omp_num_threads_sets_default_threads(omp_num_threads):
    r = run_child(
        """
        import xent
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__),
                          "default": xent.config()["default_threads"]}))
        """,
        OMP_NUM_THREADS=str(omp_num_threads),
    )
    assert r["default"] == omp_num_threads


@needs_openmp
@needs_proc
@pytest.mark.skipif(_cores() < 2, reason="needs 2+ cores to tell one thread from all cores")
def test_threads_actually_used_follow_n_threads_and_omp_num_threads():
    # OMP_NUM_THREADS=1: the default is serial, -1 still means every core, and
    # an explicit count wins, clamped to the cores.  Thread counts come from
    # the OS; each step can only add workers to libgomp's pool, so the steps
    # go from small to large.
    cores = _cores()
    r = run_child(
        f"""
        import xent
        x, y = big_inputs()
        counts = {{}}
        t = n_os_threads()
        for label, nt in [("default", None), ("one", 1), ("all", -1), ("more", {cores} + 2)]:
            xent.softmax_cross_entropy(x, y, n_threads=nt)
            now = n_os_threads()
            counts[label] = now - t
            t = now
        print(json.dumps({{"xent_file": os.path.abspath(xent.__file__), "counts": counts,
                          "cores": xent.config()["cores"]}}))
        """,
        OMP_NUM_THREADS="1",
    )
    assert r["cores"] == cores
    # Pool sizes after each step: 1 (default), 1 (n_threads=1), cores, and
    # still cores: a count above them is clamped, not handed to OpenMP.
    assert r["counts"] == {"default": 0, "one": 0, "all": cores - 1, "more": 0}


def test_n_threads_minus_one_means_every_core():
    from xent._validate import resolve_n_threads

    expected = _cores() if OPENMP else 1  # a serial build has one thread to give
    assert resolve_n_threads(-1) == expected
    assert xent.config()["cores"] == (_cores() if OPENMP else os.cpu_count())


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_n_threads_raise(bad):
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="n_threads"):
        xent.softmax_cross_entropy(x, np.zeros(2, dtype=np.int64), n_threads=bad)


# --------------------------------------------------------------------------
# bitwise equality for any thread count
# --------------------------------------------------------------------------

def _all_results(n_threads):
    """Every kernel family on inputs spanning several tiles, as raw bytes."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((3001, 29)) * 8
    x32 = x.astype(np.float32)
    y = rng.integers(0, 29, size=3001)
    p = rng.random((3001, 29))
    b = (rng.random((501, 130)) < 0.3).astype(np.float64)
    xb = rng.standard_normal((501, 130)) * 5
    out = []
    for xx in (x, x32):
        for red in ("none", "sum", "mean"):
            loss, grad = xent.softmax_cross_entropy_with_grad(xx, y, reduction=red, n_threads=n_threads)
            out += [np.asarray(loss).tobytes(), grad.tobytes()]
            loss, grad = xent.softmax_cross_entropy_with_grad(
                xx, p.astype(xx.dtype), reduction=red, label_smoothing=0.1, n_threads=n_threads
            )
            out += [np.asarray(loss).tobytes(), grad.tobytes()]
    for red in ("none", "sum", "mean"):
        loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(xb, b, reduction=red, n_threads=n_threads)
        out += [np.asarray(loss).tobytes(), grad.tobytes()]
    # The primitives take no n_threads: they run the default team,
    # which the threadpoolctl / OMP_NUM_THREADS tests below vary.
    out.append(xent.softmax(x32).tobytes())
    out.append(xent.log_softmax(x).tobytes())
    out.append(xent.logsumexp(x32).tobytes())
    return out


def test_results_bitwise_equal_for_any_n_threads():
    ref = _all_results(1)
    for nt in (2, 3, 7, -1, None):
        assert _all_results(nt) == ref, f"n_threads={nt} differs from n_threads=1"


@needs_openmp
def test_results_bitwise_equal_under_threadpool_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is needed to limit thread pools")
    ref = _all_results(None)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _all_results(None) == ref


@needs_openmp
def test_results_bitwise_equal_with_omp_num_threads():
    code = """
        import hashlib, xent
        rng = np.random.default_rng(7)
        x = rng.standard_normal((4099, 23)).astype(np.float32)
        y = rng.integers(0, 23, size=4099)
        loss, grad = xent.softmax_cross_entropy_with_grad(x, y, reduction="sum")
        sm = xent.softmax(x)  # the primitives take no n_threads: default team only
        digest = hashlib.sha256(np.float64(loss).tobytes() + grad.tobytes() + sm.tobytes()).hexdigest()
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__), "digest": digest}))
        """
    digests = {run_child(code, OMP_NUM_THREADS=str(n))["digest"] for n in (1, 2, 5)}
    assert len(digests) == 1


# --------------------------------------------------------------------------
# calling from a thread pool (oversubscription advice)
# --------------------------------------------------------------------------

def test_concurrent_calls_from_a_thread_pool_match_serial_results():
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((1500, 41)) for _ in range(8)]
    labels = [rng.integers(0, 41, size=1500) for _ in range(8)]
    serial = [xent.softmax_cross_entropy_with_grad(x, y, n_threads=1) for x, y in zip(batches, labels)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pooled = list(pool.map(lambda xy: xent.softmax_cross_entropy_with_grad(*xy, n_threads=1),
                               zip(batches, labels)))
    for (l1, g1), (l2, g2) in zip(serial, pooled):
        assert l1 == l2 and g1.tobytes() == g2.tobytes()


@needs_proc
def test_thread_pool_with_n_threads_1_starts_no_openmp_threads():
    # The README's advice: inside a thread pool, pass n_threads=1 so that the
    # pool's workers are the only threads (no pool x team oversubscription).
    r = run_child(
        """
        import threading, xent
        from concurrent.futures import ThreadPoolExecutor
        x, y = big_inputs()
        t0 = n_os_threads()
        ready = threading.Barrier(4, timeout=60)  # never hang the suite
        peak = []
        def work(_):
            ready.wait()  # all 4 workers exist before anyone counts
            for _ in range(5):
                xent.softmax_cross_entropy_with_grad(x, y, n_threads=1)
            peak.append(n_os_threads())
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, range(4)))
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__),
                          "extra": max(peak) - t0}))
        """
    )
    assert r["extra"] == 4, "only the 4 pool workers should exist; n_threads=1 must not start a team"


# --------------------------------------------------------------------------
# the serial build
# --------------------------------------------------------------------------

@serial_only
def test_serial_build_reports_itself(capsys):
    c = xent.config()
    assert c["openmp"] is False
    assert c["openmp_runtime"] is None
    assert c["default_threads"] == 1
    xent.show_config()
    assert "OpenMP:          OFF" in capsys.readouterr().out


@serial_only
def test_serial_build_loads_no_openmp_runtime_and_ignores_omp_num_threads():
    tp = pytest.importorskip("threadpoolctl", reason="threadpoolctl is needed to inspect thread pools")
    del tp
    r = run_child(
        """
        import threadpoolctl
        before = {d["filepath"] for d in threadpoolctl.threadpool_info()}
        import xent
        new = [d for d in threadpoolctl.threadpool_info() if d["filepath"] not in before]
        print(json.dumps({"xent_file": os.path.abspath(xent.__file__), "new": new,
                          "default": xent.config()["default_threads"]}))
        """,
        OMP_NUM_THREADS="3",
    )
    assert [d for d in r["new"] if d["user_api"] == "openmp"] == []
    assert r["default"] == 1


def test_openmp_flag_is_consistent_with_the_runtime_report():
    # Holds for both builds: OpenMP on <=> a runtime is reported.
    c = xent.config()
    assert isinstance(c["openmp"], bool)
    assert (c["openmp_runtime"] is not None) == c["openmp"]
    assert c["default_threads"] >= 1
