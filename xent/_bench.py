"""Throughput benchmark of every xent kernel (``python -m xent bench``).

One table of comparisons, ``CASES``, serves the command line, the test that
checks the table (tests/test_bench_cases.py) and pytest-benchmark
(benchmarks/test_bench.py).  For each case and shape the inputs are built
once, outside the timed calls; each implementation is timed on the same
arrays (median of repeats, with the fastest and slowest call kept): xent, the
NumPy reference, and PyTorch's CPU kernels when torch is installed.

Throughput is reported in logical GB/s (the bytes a perfect kernel must move,
e.g. 4 bytes per float32 logit for a class-index forward pass) and as
efficiency against the memory bandwidth measured in the same run at the same
thread count: read bandwidth for forward kernels, copy bandwidth (bytes read +
bytes written) for kernels that write an array.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _api, _probe, reference


@dataclass(frozen=True)
class Case:
    """One kernel compared across implementations.

    ``arrays_per_elem`` counts the logical arrays moved per logits element,
    read (``reads``) and written (``writes``), each of the logits' itemsize.
    """

    name: str
    func: str            # name in xent, xent.reference
    target: str          # "index", "prob", "binary", "logits" (a second array) or "none"
    reads: int
    writes: int
    kwargs: dict = field(default_factory=dict)
    grad: bool = False

    @property
    def writes_memory(self):
        return self.writes > 0

    def bytes_per_elem(self, itemsize):
        return (self.reads + self.writes) * itemsize


# The extras' options, as the cases pass them (a temperature that is not a
# power of two, a Gemma-2-like cap, PaLM's z-loss weight).
TEMPERATURE, SOFTCAP, Z_LOSS = 0.7, 30.0, 1e-4

CASES = (
    Case("ce_index", "softmax_cross_entropy", "index", 1, 0),
    Case("ce_prob", "softmax_cross_entropy", "prob", 2, 0),
    Case("bce", "sigmoid_binary_cross_entropy", "binary", 2, 0),
    Case("ce_index+grad", "softmax_cross_entropy_with_grad", "index", 1, 1, grad=True),
    Case("ce_prob+grad", "softmax_cross_entropy_with_grad", "prob", 2, 1, grad=True),
    Case("bce+grad", "sigmoid_binary_cross_entropy_with_grad", "binary", 2, 1, grad=True),
    Case("logsumexp", "logsumexp", "none", 1, 0),
    Case("softmax", "softmax", "none", 1, 1),
    Case("token_stats", "token_stats", "index", 1, 0),
    Case("ce_temperature", "softmax_cross_entropy", "index", 1, 0, {"temperature": TEMPERATURE}),
    Case("ce_z_loss", "softmax_cross_entropy", "index", 1, 0, {"z_loss": Z_LOSS}),
    Case("ce_softcap", "softmax_cross_entropy", "index", 1, 0, {"softcap": SOFTCAP}),
    Case("ce_temperature+grad", "softmax_cross_entropy_with_grad", "index", 1, 1,
         {"temperature": TEMPERATURE}, grad=True),
    Case("ce_z_loss+grad", "softmax_cross_entropy_with_grad", "index", 1, 1, {"z_loss": Z_LOSS},
         grad=True),
    Case("ce_softcap+grad", "softmax_cross_entropy_with_grad", "index", 1, 1,
         {"softcap": SOFTCAP}, grad=True),
    Case("softmax_focal", "softmax_focal_loss", "index", 1, 0),
    Case("softmax_focal+grad", "softmax_focal_loss_with_grad", "index", 1, 1, grad=True),
    Case("sigmoid_focal", "sigmoid_focal_loss", "binary", 2, 0),
    Case("sigmoid_focal+grad", "sigmoid_focal_loss_with_grad", "binary", 2, 1, grad=True),
    Case("kl", "kl_divergence", "logits", 2, 0),
    Case("kl+grad", "kl_divergence_with_grad", "logits", 2, 1, grad=True),
    Case("kl_reverse", "kl_divergence", "logits", 2, 0, {"reverse": True}),
    Case("js", "js_divergence", "logits", 2, 0),
    Case("js+grad", "js_divergence_with_grad", "logits", 2, 1, grad=True),
)

# (rows, classes): ~64 MB of float32 logits each for --quick; the full run
# adds arrays over 1 GB (C = 1000 and 32000, and an LLM vocabulary,
# C = 128256) beside C = 10 x 262144 rows and a 16 MB 4096 x 1000.
QUICK_SHAPES = ((262144, 10), (16384, 1000), (512, 32000), (128, 128256))
FULL_SHAPES = ((262144, 10), (4096, 1000), (268435, 1000), (8389, 32000), (2093, 128256))


def _draw_logits(rng, n_rows, n_classes, dtype):
    return rng.standard_normal((n_rows, n_classes), dtype=np.float64).astype(dtype) * 3


def _draw_target(target, rng, n_rows, n_classes, dtype):
    if target == "index":
        return rng.integers(0, n_classes, n_rows)
    if target == "prob":
        t = rng.random((n_rows, n_classes), dtype=np.float64).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
        return t
    if target == "binary":
        return (rng.random((n_rows, n_classes)) < 0.3).astype(dtype)
    if target == "logits":                     # a second model's logits, drawn alike
        return _draw_logits(rng, n_rows, n_classes, dtype)
    return None


def make_inputs(case, n_rows, n_classes, dtype=np.float32, seed=0):
    """Logits, target and keyword arguments for one case (built once, outside timing)."""
    rng = np.random.default_rng(seed)
    x = _draw_logits(rng, n_rows, n_classes, dtype)
    return x, _draw_target(case.target, rng, n_rows, n_classes, dtype)


class _ShapeInputs:
    """``make_inputs`` for every case of one shape, drawing the logits once.

    The same arrays as ``make_inputs`` (the generator's state after the logits
    is kept, and each kind of target is drawn from it once), without drawing a
    1 GB array eight times: that would take longer than the timed calls.
    """

    def __init__(self, n_rows, n_classes, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.shape = (n_rows, n_classes)
        self.dtype = dtype
        self.x = _draw_logits(rng, n_rows, n_classes, dtype)
        self._state = rng.bit_generator.state
        self._targets = {}

    def __call__(self, case):
        if case.target not in self._targets:
            rng = np.random.default_rng()
            rng.bit_generator.state = self._state
            self._targets[case.target] = _draw_target(case.target, rng, *self.shape, self.dtype)
        return self.x, self._targets[case.target]


def _xent_call(case, x, t, n_threads, out):
    fn = getattr(_api, case.func)
    if case.target == "none":
        kw = {"out": out} if case.func != "logsumexp" else {}
        return lambda: fn(x, **kw)
    kw = dict(case.kwargs, n_threads=n_threads)
    if case.grad:
        kw["grad_out"] = out
    return lambda: fn(x, t, **kw)


def _ref_call(case, x, t):
    fn = getattr(reference, case.func)
    if case.target == "none":
        return lambda: fn(x)
    return lambda: fn(x, t, **case.kwargs)


def _torch_loss(case, torch, F):
    """The case's loss written in PyTorch ops, as its users write it."""
    kw = case.kwargs
    func = case.func.replace("_with_grad", "")
    if func == "sigmoid_binary_cross_entropy":
        return F.binary_cross_entropy_with_logits
    if func == "sigmoid_focal_loss":           # torchvision.ops.sigmoid_focal_loss, alpha 0.25
        def sigmoid_focal(x, t):
            p = torch.sigmoid(x)
            ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
            loss = ce * (1 - (p * t + (1 - p) * (1 - t))) ** 2
            return ((0.25 * t + 0.75 * (1 - t)) * loss).mean()
        return sigmoid_focal
    if func == "softmax_focal_loss":           # gamma 2, alpha 1
        def softmax_focal(x, y):
            logp = F.log_softmax(x, dim=-1).gather(1, y[:, None])[:, 0]
            return (-(1 - logp.exp()) ** 2 * logp).mean()
        return softmax_focal

    def cross_entropy(x, y):
        if "temperature" in kw:
            x = x / kw["temperature"]
        if "softcap" in kw:
            x = kw["softcap"] * torch.tanh(x / kw["softcap"])
        loss = F.cross_entropy(x, y)
        if "z_loss" in kw:
            loss = loss + kw["z_loss"] * (torch.logsumexp(x, dim=-1) ** 2).mean()
        return loss
    return cross_entropy


def _torch_divergence(case, torch, F):
    """KL (forward or reverse) and Jensen-Shannon as PyTorch users write them:
    kl_div of two log_softmaxes, reduction="batchmean" (its "mean" divides by
    elements)."""
    def kl(x, t):
        lp, lq = F.log_softmax(x, dim=-1), F.log_softmax(t, dim=-1)
        if case.kwargs.get("reverse"):
            return F.kl_div(lq, lp, log_target=True, reduction="batchmean")
        return F.kl_div(lp, lq, log_target=True, reduction="batchmean")

    def js(x, t):                              # beta = 0.5
        lp, lq = F.log_softmax(x, dim=-1), F.log_softmax(t, dim=-1)
        lm = torch.logsumexp(torch.stack([lp, lq]), dim=0) - math.log(2.0)
        return 0.5 * (F.kl_div(lm, lq, log_target=True, reduction="batchmean")
                      + F.kl_div(lm, lp, log_target=True, reduction="batchmean"))
    return kl if case.func.startswith("kl") else js


def _torch_token_stats(tx, ty):
    """Per-token statistics as PyTorch users compute them: lse, entropy from
    log_softmax, argmax, the target's log-probability and rank."""
    import torch
    lse = torch.logsumexp(tx, dim=-1)
    logp = tx - lse[:, None]
    entropy = -(logp.exp() * logp).sum(dim=-1)
    target = tx.gather(1, ty[:, None])
    return lse, entropy, tx.argmax(dim=-1), logp.gather(1, ty[:, None])[:, 0], (tx > target).sum(-1)


def _torch_call(case, x, t):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    tx = torch.from_numpy(x)
    tt = None if t is None else torch.from_numpy(t)
    if case.target == "index":
        tt = tt.to(torch.int64)
    if case.func == "logsumexp":
        return lambda: torch.logsumexp(tx, dim=-1)
    if case.func == "softmax":
        return lambda: torch.softmax(tx, dim=-1)
    if case.func == "token_stats":
        def stats():
            with torch.no_grad():
                return _torch_token_stats(tx, tt)
        return stats
    loss_fn = (_torch_divergence(case, torch, F) if case.target == "logits"
               else _torch_loss(case, torch, F))

    if not case.grad:
        def run():
            with torch.no_grad():
                return loss_fn(tx, tt).item()
        return run

    def run_grad():
        leaf = tx.detach().requires_grad_(True)
        loss = loss_fn(leaf, tt)
        loss.backward()
        return leaf.grad
    return run_grad


def _time_runs(fn, repeats, min_time=0.0):
    """Seconds per call of `fn`: at least `repeats` calls and `min_time` seconds (at most 1000 calls)."""
    fn()  # warm up (page faults, thread pool start)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _record(row, prefix, times):
    """Store the median of `times` under `prefix` + "_s", with its min, max and count."""
    row[prefix + "_s"] = statistics.median(times)
    row[prefix + "_s_min"] = min(times)
    row[prefix + "_s_max"] = max(times)
    row[prefix + "_runs"] = len(times)


# A kernel cannot move data faster than memory delivers it; a measured
# efficiency above this means the bandwidth probe read low (another process
# took a core during the probe) or the kernel's arrays were served from cache,
# not that the kernel beat memory.
PROBE_LIMIT = 1.05
MIN_PROBE_RUNS = 5


def memory_bandwidth(n_bytes, n_threads, repeats=7):
    """Measure the read and copy bandwidth of this machine at a thread count.

    Read and copy runs alternate, so that a burst of load from another process
    lowers both rather than one of them.

    Parameters
    ----------
    n_bytes : int
        Size of the array read (and of the one written by the copy).
    n_threads : int
        Threads of the probe (those of the kernels it is compared with).
    repeats : int, default 7
        Timed runs of each probe; at least 5.

    Returns
    -------
    dict
        ``read_GBps`` and ``copy_GBps``: the median over the runs, in GB/s (the
        copy counts bytes read + bytes written); ``read_GBps_spread`` and
        ``copy_GBps_spread``: ``[min, max]`` over the runs; ``read_GBps_runs``
        and ``copy_GBps_runs``: every run's figure; ``probe_runs`` and
        ``probe_bytes``.

    Raises
    ------
    ValueError
        If `repeats` is below 5.
    """
    if repeats < MIN_PROBE_RUNS:
        raise ValueError(f"`repeats` must be at least {MIN_PROBE_RUNS} (a median needs several runs); "
                         f"got {repeats!r}.")
    words = max(int(n_bytes) // 8, 1)
    src = np.ones(words, dtype=np.uint64)
    dst = np.zeros(words, dtype=np.uint64)
    nbytes = 8 * words

    def read():
        _probe.read_probe(src, n_threads)

    def copy():
        _probe.copy_probe(src, dst, n_threads)

    read()  # warm up: page faults of both arrays, the thread pool
    copy()
    t_read, t_copy = [], []
    for _ in range(repeats):
        for fn, times in ((read, t_read), (copy, t_copy)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    out = {"probe_runs": repeats, "probe_bytes": nbytes}
    for name, times, moved in (("read", t_read, nbytes), ("copy", t_copy, 2 * nbytes)):
        runs = [moved / t / 1e9 for t in times]
        out[f"{name}_GBps"] = statistics.median(runs)
        out[f"{name}_GBps_spread"] = [min(runs), max(runs)]
        out[f"{name}_GBps_runs"] = runs
    return out


def _cpu_model():
    """The CPU's model name: /proc/cpuinfo on Linux, sysctl on macOS, else the platform module."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
            if name:
                return name
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _dist_version(name):
    # the installed distribution's version, without importing it (PyTorch takes seconds)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(n_threads):
    """Describe the machine and software a benchmark ran on (stored in its JSON).

    Parameters
    ----------
    n_threads : int
        OpenMP threads the benchmark used.

    Returns
    -------
    dict
        ``cpu`` (model name), ``logical_cores``, ``usable_cores`` (those this
        process may run on), ``simd_variant``, ``openmp``, ``openmp_threads``,
        ``platform`` and the versions of ``xent``, ``numpy``, ``python`` and
        ``torch`` (None when PyTorch is not installed).
    """
    from ._config import config

    c = config()
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": c["cores"],
        "simd_variant": c["simd_variant"],
        "openmp": c["openmp"],
        "openmp_threads": n_threads,
        "platform": c["platform"],
        "xent": c["version"],
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch": _dist_version("torch"),
    }


def _progress(msg):
    if sys.stderr.isatty() or os.environ.get("XENT_BENCH_PROGRESS"):
        sys.stderr.write("\r\033[K" + msg)
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run(shapes=QUICK_SHAPES, cases=CASES, n_threads=None, dtype=np.float32, repeats=5,
        with_reference=True, with_torch=True, progress=_progress, min_time=0.2, probe_repeats=7):
    """Run the benchmark.

    Parameters
    ----------
    shapes : sequence of (int, int)
        ``(rows, classes)`` of the logits, one set of inputs per shape.
    cases : sequence of Case
        Kernels to time (default: every one).
    n_threads : int or None
        Threads of xent, the bandwidth probe and PyTorch (None: OpenMP's default).
    dtype : dtype
        float32 or float64 logits.
    repeats : int
        Least number of timed calls of xent per case.
    with_reference, with_torch : bool
        Time the NumPy reference / PyTorch too (PyTorch only where installed).
    progress : callable
        Receives one line of progress per step (default: standard error).
    min_time : float
        Least total seconds of timed xent calls per case, so that calls of a
        few microseconds are timed often enough for a stable median.
    probe_repeats : int
        Runs of the bandwidth probe (at least 5).

    Returns
    -------
    dict
        What ``--json`` writes: ``threads``, ``dtype``, ``machine``
        (:func:`machine_info`), the probe's figures (:func:`memory_bandwidth`),
        ``not_measured`` (column -> why it is empty) and ``results``, one dict
        per case and shape with the median time of each implementation
        (``xent_s``, ``reference_s``, ``torch_s``), its min, max and number of
        runs (``xent_s_min``, ...), ``xent_GBps``, ``efficiency`` against the
        ``bound`` bandwidth (``read`` or ``copy``), ``probe_failed`` and the
        ratios ``vs_reference`` and ``vs_torch``.
    """
    nt = _api.resolve_n_threads(n_threads)
    itemsize = np.dtype(dtype).itemsize
    largest = max(r * c for r, c in shapes) * itemsize
    probe_bytes = max(largest, 1 << 26)
    progress(f"measuring memory bandwidth ({probe_bytes / 1e6:.0f} MB, {nt} threads, "
             f"{probe_repeats} runs) ...")
    bw = memory_bandwidth(probe_bytes, nt, probe_repeats)
    not_measured = {}
    if not with_reference:
        not_measured["reference"] = "skipped (--no-reference)"
    torch_threads = None
    if with_torch:
        try:
            import torch
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(nt)
        except ImportError:
            with_torch = False
            not_measured["torch"] = "PyTorch not installed"
    else:
        not_measured["torch"] = "skipped (--no-torch)"
    rows = []
    total = len(shapes) * len(cases)
    k = 0
    try:
        for n_rows, n_classes in shapes:
            inputs = _ShapeInputs(n_rows, n_classes, dtype)
            for case in cases:
                k += 1
                progress(f"[{k}/{total}] {case.name} {n_rows}x{n_classes} ...")
                x, t = inputs(case)
                out = np.empty_like(x) if case.writes_memory else None
                nbytes = x.size * case.bytes_per_elem(itemsize)
                row = {"case": case.name, "rows": n_rows, "classes": n_classes,
                       "dtype": np.dtype(dtype).name, "threads": nt, "bytes": nbytes}
                # big arrays: fewer repeats of the slow baselines
                slow_reps = 1 if x.nbytes > 256e6 else 3
                _record(row, "xent", _time_runs(_xent_call(case, x, t, nt, out), repeats, min_time))
                if with_reference:
                    _record(row, "reference", _time_runs(_ref_call(case, x, t), slow_reps))
                if with_torch:
                    fn = _torch_call(case, x, t)
                    if fn is None:
                        row["torch_s"] = None
                    else:
                        _record(row, "torch", _time_runs(fn, slow_reps + 2))
                row["bound"] = "copy" if case.writes_memory else "read"
                row["xent_GBps"] = nbytes / row["xent_s"] / 1e9
                row["efficiency"] = row["xent_GBps"] / bw[row["bound"] + "_GBps"]
                row["probe_failed"] = row["efficiency"] > PROBE_LIMIT
                if row.get("reference_s"):
                    row["vs_reference"] = row["reference_s"] / row["xent_s"]
                if row.get("torch_s"):
                    row["vs_torch"] = row["torch_s"] / row["xent_s"]
                rows.append(row)
                del x, t, out
            del inputs
    finally:
        if torch_threads is not None:
            import torch
            torch.set_num_threads(torch_threads)
    progress("done.\n" if sys.stderr.isatty() else "done.")
    res = {"threads": nt, "dtype": np.dtype(dtype).name, "machine": machine_info(nt)}
    res.update(bw)
    res["not_measured"] = not_measured
    res["results"] = rows
    return res


def _probe_failed(row):
    # files written before the flag existed carry only the efficiency
    return row.get("probe_failed", row["efficiency"] > PROBE_LIMIT)


def _spread_text(res, name):
    spread = res.get(f"{name}_GBps_spread")
    return f" [{spread[0]:.1f}-{spread[1]:.1f}]" if spread else ""


def format_table(res):
    """The benchmark's results as a text table, with a header and footnotes.

    Parameters
    ----------
    res : dict
        What :func:`run` returns or ``--json`` wrote (files without the
        machine, the spreads or ``not_measured`` are accepted).

    Returns
    -------
    str
    """
    lines = []
    m = res.get("machine") or {}
    if m.get("cpu"):
        # every key but the CPU is optional: results files may describe their machine by hand
        facts = [str(m["cpu"])]
        cores = m.get("logical_cores") or m.get("cores")
        if cores:
            facts.append(f"{cores} logical cores")
        if m.get("simd_variant"):
            facts.append(f"SIMD {m['simd_variant']}")
        if m.get("openmp") is False:
            facts.append("serial build (no OpenMP)")
        elif m.get("openmp_threads"):
            facts.append(f"{m['openmp_threads']} OpenMP threads")
        lines.append("machine: " + ", ".join(facts))
        versions = [f"{label} {m[key]}" for key, label in
                    (("xent", "xent"), ("numpy", "NumPy"), ("python", "Python"), ("torch", "PyTorch"))
                    if m.get(key)]
        if versions:
            lines.append(", ".join(versions))
    runs = f"; median of {res['probe_runs']} runs, [min-max]" if "probe_runs" in res else ""
    lines.append(f"memory bandwidth ({res['threads']} threads{runs}): "
                 f"read {res['read_GBps']:.1f} GB/s{_spread_text(res, 'read')}, "
                 f"copy {res['copy_GBps']:.1f} GB/s{_spread_text(res, 'copy')} (read + write)")
    for name in ("read", "copy"):
        spread = res.get(f"{name}_GBps_spread")
        if spread and spread[1] > 1.25 * spread[0]:
            lines.append(f"note: the {name} bandwidth varied by more than 25% between runs (a busy "
                         "machine?); the efficiencies are uncertain.")
            break
    lines += ["", f"{'kernel':<15}{'shape':>16}  {'xent GB/s':>9}  {'effic.':>12}  {'vs ref':>7}  "
                  f"{'vs torch':>8}"]
    failed = False
    dashes = set()
    for r in res["results"]:
        shape = f"{r['rows']}x{r['classes']}"
        if _probe_failed(r):
            failed = True
            eff = "probe failed"
        else:
            eff = f"{r['efficiency']:.0%}"
        ref = f"{r['vs_reference']:6.1f}x" if r.get("vs_reference") else "      -"
        tor = f"{r['vs_torch']:7.1f}x" if r.get("vs_torch") else "       -"
        if not r.get("vs_reference"):
            dashes.add("reference")
        if not r.get("vs_torch"):
            dashes.add("torch")
        lines.append(f"{r['case']:<15}{shape:>16}  {r['xent_GBps']:9.2f}  {eff:>12}  {ref}  {tor}")
    lines += ["", "xent GB/s: logical bytes (logits, targets, gradient) per second, median of the "
                  "timed calls.",
              "effic.: xent GB/s over the read bandwidth (forward kernels) or the copy bandwidth "
              "(kernels that write an array: gradient, softmax).",
              "vs ref / vs torch: the NumPy reference's / PyTorch's time over xent's time."]
    why = res.get("not_measured", {})
    for key, column in (("reference", "vs ref"), ("torch", "vs torch")):
        if key in dashes:
            lines.append(f"- in {column}: {why.get(key, 'not measured in this run')}")
    if failed:
        lines.append(f"probe failed: xent measured above {PROBE_LIMIT:.0%} of the bandwidth, which "
                     "memory cannot deliver: the probe under-measured this machine's bandwidth "
                     "(another process was busy?), or the arrays fit in the CPU's caches; rerun on "
                     "an idle machine, with arrays larger than the caches, for an efficiency.")
    return "\n".join(lines)


def _gbps_with_spread(rows, impl):
    """GB/s at the median time, and how far below / above it the slowest / fastest runs were."""
    mid = [r["bytes"] / r[impl + "_s"] / 1e9 for r in rows]
    if not all(impl + "_s_min" in r for r in rows):
        return mid, None
    lo = [m - r["bytes"] / r[impl + "_s_max"] / 1e9 for m, r in zip(mid, rows)]
    hi = [r["bytes"] / r[impl + "_s_min"] / 1e9 - m for m, r in zip(mid, rows)]
    return mid, [lo, hi]


def check_plotting():
    """Import matplotlib with its non-interactive backend; ImportError if it cannot be."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (its own dependencies can be missing too)


def plot(res, path):
    """Draw each kernel's throughput per shape, with the memory bandwidth, into `path`.

    One panel per kernel: xent, the NumPy reference and PyTorch (those
    measured) in GB/s, with error bars from the fastest to the slowest timed
    call, and the bandwidth it is held to (read or copy) as a line over the
    band of the probe's runs.  Needs matplotlib.

    Parameters
    ----------
    res : dict
        What :func:`run` returns or ``--json`` wrote.
    path : str or path-like
        The file to write; its extension picks the format (png, svg, pdf ...).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn (already written and closed).
    """
    check_plotting()
    import matplotlib.pyplot as plt

    order = [c.name for c in CASES]
    names = sorted({r["case"] for r in res["results"]},
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    bounds = {c.name: "copy" if c.writes_memory else "read" for c in CASES}
    ncols = (len(names) + 1) // 2
    fig, axes = plt.subplots(2, ncols, figsize=(4 * ncols, 7.5), squeeze=False)
    impls = (("xent", "xent", "o-"), ("reference", "NumPy reference", "s--"), ("torch", "PyTorch", "^:"))
    for ax, name in zip(axes.flat, names):
        rows = [r for r in res["results"] if r["case"] == name]
        bound = rows[0].get("bound", bounds.get(name, "read"))
        xs = list(range(len(rows)))
        for impl, label, style in impls:
            if not all(r.get(impl + "_s") for r in rows):
                continue
            mid, err = _gbps_with_spread(rows, impl)
            ax.errorbar(xs, mid, yerr=err, fmt=style, capsize=3, label=label)
        bw = res[bound + "_GBps"]
        ax.axhline(bw, color="0.3", lw=1.5, label="memory bandwidth (read, or copy for kernels that write)")
        spread = res.get(bound + "_GBps_spread")
        if spread:
            ax.axhspan(spread[0], spread[1], color="0.3", alpha=0.15, lw=0,
                       label="bandwidth probe, min-max of its runs")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r['rows']}x{r['classes']}" for r in rows], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{name} ({bound} bandwidth)")
        ax.set_ylabel("GB/s")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    # one legend for the figure: the same entries recur in every panel
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    labels = [lab for _, lab, _ in impls if lab in handles]
    labels += [lab for lab in handles if lab not in labels]
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               ncol=min(len(labels), 5), frameon=False)
    title = f"xent throughput, {res['dtype']}, {res['threads']} threads"
    m = res.get("machine") or {}
    if m.get("cpu"):
        title += f", {m['cpu']}" + (f" ({m['simd_variant']})" if m.get("simd_variant") else "")
    if any(_probe_failed(r) for r in res["results"]):
        title += ("\npoints above the bandwidth line: the probe under-measured (a busy machine?) "
                  "or the arrays fit in cache")
    if any("xent_s_min" in r for r in res["results"]):
        title += "\nerror bars: fastest to slowest timed call"
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


DESCRIPTION = """\
Measure the throughput of every xent kernel (forward losses, fused loss and
gradient, logsumexp, softmax) against the NumPy reference and PyTorch's CPU
kernels, and against the memory bandwidth measured in the same run."""

EPILOG = """\
output:
  The header names the machine (CPU, cores, SIMD variant, threads, versions)
  and the memory bandwidth measured at the same thread count: the median of 7
  runs of a read probe and of a copy probe, with their range.  Then one line
  per kernel and shape:
    xent GB/s  logical bytes a perfect kernel moves (logits, targets,
               gradient) per second, at xent's median time
    effic.     xent GB/s over the read bandwidth (forward kernels) or the
               copy bandwidth (kernels that write an array); "probe failed"
               where it is above 105%, which memory cannot deliver: the
               probe under-measured the bandwidth (a busy machine), or the
               arrays fit in the CPU's caches
    vs ref     the NumPy reference's time over xent's time
    vs torch   PyTorch's time over xent's time
    -          not measured; a line under the table says why

examples:
  python -m xent bench --quick
  python -m xent bench --quick --threads 1 --json one-thread.json
  python -m xent bench --shapes 65536x10,1024x1000 --no-torch --plot bench.png
"""


def add_arguments(p):
    """Add the options of ``python -m xent bench`` to the argparse parser `p`."""
    quick = ", ".join(f"{r}x{c}" for r, c in QUICK_SHAPES)
    full = ", ".join(f"{r}x{c}" for r, c in FULL_SHAPES)
    p.add_argument("--quick", action="store_true",
                   help=f"arrays of about 64 MB ({quick}), a few minutes, instead of the full "
                        f"sizes ({full}: up to 1 GB of logits, several minutes and about 4 GB "
                        "of memory)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads of xent, the bandwidth probe and PyTorch: an integer >= 1, or -1 "
                        "for every core (default: OpenMP's default, which honours "
                        "OMP_NUM_THREADS); the NumPy reference runs on one thread")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="dtype of the logits and targets (default: float32)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the results to FILE as JSON: the machine, the bandwidth "
                        "probe's runs, and each case's median, fastest and slowest times")
    p.add_argument("--plot", metavar="FILE",
                   help="also draw GB/s per kernel and shape, with the memory bandwidth as a line "
                        "and the spread of the timed calls as error bars, into FILE (format from "
                        "the extension: png, svg, pdf); needs matplotlib: "
                        'pip install "xent[bench]"')
    p.add_argument("--no-torch", action="store_true",
                   help="do not time PyTorch even if it is installed (it takes seconds to import)")
    p.add_argument("--no-reference", action="store_true",
                   help="do not time the NumPy reference (it runs on one thread and is slow on "
                        "large arrays; e.g. for a sweep over --threads)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="least number of timed calls of xent per case, of which the median is "
                        "reported (default: 5 with --quick, else 7); small cases are called for "
                        "at least 0.2 s")
    p.add_argument("--torch-adapter", action="store_true",
                   help="instead of the kernels, time xent.torch against PyTorch's own losses: "
                        "forward + backward at the shapes, at small sizes (the break-even size "
                        "below which xent.torch hands calls to PyTorch), and a training step of "
                        "a classifier with a 32000-class head; needs torch")
    p.add_argument("--shapes", metavar="RxC,...",
                   help="the shapes (rows x classes) of the logits instead of the default ones, "
                        "e.g. 262144x10,512x32000")
    return p


def _output_dir_error(option, path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"{option} must name a file in an existing folder; got {path!r} ({folder} does not exist)"
    return None


def run_args(args, parser):
    """Run ``python -m xent bench`` from parsed `args`; return the exit status."""
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.shapes:
        try:
            shapes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(","))
            if not all(len(s) == 2 and min(s) > 0 for s in shapes):
                raise ValueError
        except ValueError:
            parser.error(f"--shapes must be positive ROWSxCLASSES pairs separated by commas, "
                         f"e.g. 262144x10,512x32000; got {args.shapes!r}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    try:
        _api.resolve_n_threads(args.threads)
    except ValueError:
        parser.error(f"--threads must be an integer >= 1, or -1 for every core; got {args.threads}")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        msg = path and _output_dir_error(option, path)
        if msg:
            print(f"{parser.prog}: error: {msg}", file=sys.stderr)
            return 2
    if args.plot:
        # before any timing: finding out after minutes of benchmark is too late
        try:
            check_plotting()
        except ImportError as e:
            print(f'{parser.prog}: error: --plot needs matplotlib, which cannot be imported ({e}); '
                  f'install it with: pip install "xent[bench]"', file=sys.stderr)
            return 2
    if args.torch_adapter:
        return _run_adapter(shapes, args, parser)
    repeats = args.repeats or (5 if args.quick else 7)
    res = run(shapes, n_threads=args.threads, dtype=np.dtype(args.dtype), repeats=repeats,
              with_reference=not args.no_reference, with_torch=not args.no_torch)
    print(format_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        plot(res, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _run_adapter(shapes, args, parser):
    """``--torch-adapter``: the xent.torch section (xent._bench_torch)."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        print(f'{parser.prog}: error: --torch-adapter needs torch, which cannot be imported ({e}); '
              f'install it with: pip install "xent[torch]"', file=sys.stderr)
        return 2
    from . import _bench_torch
    res = _bench_torch.run(shapes, _api.resolve_n_threads(args.threads))
    print(_bench_torch.format_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"results written to {args.json}")
    return 0


def build_parser(prog="python -m xent bench"):
    """The argparse parser of ``python -m xent bench``."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(p)


def main(argv=None):
    """Run ``python -m xent bench`` with the arguments `argv` (default: ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
        The options, e.g. ``["--quick", "--json", "out.json"]``.

    Returns
    -------
    int
        The exit status: 0, or 2 for a usage error found before any timing.
    """
    p = build_parser()
    return run_args(p.parse_args(argv), p)
