"""Throughput benchmark of every xent kernel (``python -m xent bench``).

One table of comparisons, ``CASES``, serves the command line, the test that
checks the table (tests/test_bench_cases.py) and pytest-benchmark
(benchmarks/test_bench.py).  For each case and shape the inputs are built
once, outside the timed calls; each implementation is timed on the same
arrays (median of repeats): xent, the NumPy reference, and PyTorch's CPU
kernels when torch is installed.

Throughput is reported in logical GB/s (SPEC 4: bytes a perfect kernel must
move, e.g. 4 bytes per float32 logit for a class-index forward pass) and as
efficiency against the memory bandwidth measured in the same run at the same
thread count: read bandwidth for forward kernels, copy bandwidth (bytes read +
bytes written) for kernels that write an array.
"""

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _api, _kernels, reference


@dataclass(frozen=True)
class Case:
    """One kernel compared across implementations.

    ``arrays_per_elem`` counts the logical arrays moved per logits element,
    read (``reads``) and written (``writes``), each of the logits' itemsize.
    """

    name: str
    func: str            # name in xent, xent.reference
    target: str          # "index", "prob", "binary" or "none"
    reads: int
    writes: int
    kwargs: dict = field(default_factory=dict)
    grad: bool = False

    @property
    def writes_memory(self):
        return self.writes > 0

    def bytes_per_elem(self, itemsize):
        return (self.reads + self.writes) * itemsize


CASES = (
    Case("ce_index", "softmax_cross_entropy", "index", 1, 0),
    Case("ce_prob", "softmax_cross_entropy", "prob", 2, 0),
    Case("bce", "sigmoid_binary_cross_entropy", "binary", 2, 0),
    Case("ce_index+grad", "softmax_cross_entropy_with_grad", "index", 1, 1, grad=True),
    Case("ce_prob+grad", "softmax_cross_entropy_with_grad", "prob", 2, 1, grad=True),
    Case("bce+grad", "sigmoid_binary_cross_entropy_with_grad", "binary", 2, 1, grad=True),
    Case("logsumexp", "logsumexp", "none", 1, 0),
    Case("softmax", "softmax", "none", 1, 1),
)

# (rows, classes): ~64 MB of float32 logits each for --quick; the full run
# adds the SPEC 4 sizes (1 GB+ at C = 1000 and 32000, C = 10 x 262144 rows,
# and LLM vocabularies, C = 128256).
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
    1 GB array eight times: that took longer than the timed calls.
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
    loss_fn = F.binary_cross_entropy_with_logits if case.target == "binary" else F.cross_entropy

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


def _median_time(fn, repeats, min_time=0.0):
    fn()  # warm up (page faults, thread pool start)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory_bandwidth(n_bytes, n_threads, repeats=5):
    """Read and copy bandwidth in GB/s (bytes read; bytes read + written)."""
    words = max(n_bytes // 8, 1)
    src = np.ones(words, dtype=np.uint64)
    dst = np.zeros(words, dtype=np.uint64)
    t_read = _median_time(lambda: _kernels.read_probe(src, n_threads), repeats)
    t_copy = _median_time(lambda: _kernels.copy_probe(src, dst, n_threads), repeats)
    return 8 * words / t_read / 1e9, 2 * 8 * words / t_copy / 1e9


def _progress(msg):
    if sys.stderr.isatty() or os.environ.get("XENT_BENCH_PROGRESS"):
        sys.stderr.write("\r\033[K" + msg)
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run(shapes=QUICK_SHAPES, cases=CASES, n_threads=None, dtype=np.float32, repeats=5,
        with_reference=True, with_torch=True, progress=_progress):
    """Run the benchmark; returns a dict (what ``--json`` writes)."""
    nt = _api.resolve_n_threads(n_threads)
    itemsize = np.dtype(dtype).itemsize
    largest = max(r * c for r, c in shapes) * itemsize
    progress(f"measuring memory bandwidth ({largest / 1e6:.0f} MB, {nt} threads) ...")
    bw_read, bw_copy = memory_bandwidth(max(largest, 1 << 26), nt)
    torch_threads = None
    if with_torch:
        try:
            import torch
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(nt)
        except ImportError:
            with_torch = False
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
                row["xent_s"] = _median_time(_xent_call(case, x, t, nt, out), repeats, min_time=0.2)
                if with_reference:
                    row["reference_s"] = _median_time(_ref_call(case, x, t), slow_reps)
                if with_torch:
                    fn = _torch_call(case, x, t)
                    row["torch_s"] = _median_time(fn, slow_reps + 2) if fn else None
                bw = bw_copy if case.writes_memory else bw_read
                row["xent_GBps"] = nbytes / row["xent_s"] / 1e9
                row["efficiency"] = row["xent_GBps"] / bw
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
    return {"threads": nt, "dtype": np.dtype(dtype).name, "read_GBps": bw_read,
            "copy_GBps": bw_copy, "results": rows}


def format_table(res):
    lines = [
        f"memory bandwidth ({res['threads']} threads): read {res['read_GBps']:.1f} GB/s, "
        f"copy {res['copy_GBps']:.1f} GB/s (read + write)",
        "",
        f"{'kernel':<15}{'shape':>16}  {'xent GB/s':>9}  {'effic.':>6}  {'vs ref':>7}  {'vs torch':>8}",
    ]
    for r in res["results"]:
        shape = f"{r['rows']}x{r['classes']}"
        ref = f"{r['vs_reference']:6.1f}x" if "vs_reference" in r else "      -"
        tor = f"{r['vs_torch']:7.1f}x" if r.get("vs_torch") else "       -"
        lines.append(f"{r['case']:<15}{shape:>16}  {r['xent_GBps']:9.2f}  {r['efficiency']:6.0%}  {ref}  {tor}")
    lines.append("")
    lines.append("GB/s: logical bytes (logits, targets, gradient) per second; effic.: against the "
                 "read (forward) or copy (gradient, softmax) bandwidth above; vs ref / vs torch: "
                 "their time / xent's time.")
    return "\n".join(lines)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["case"] for r in res["results"]}, key=[c.name for c in CASES].index)
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4 * ((len(names) + 1) // 2), 7),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        rs = sorted((r for r in res["results"] if r["case"] == name), key=lambda r: r["classes"])
        cs = [r["classes"] for r in rs]
        ax.plot(cs, [r["xent_GBps"] for r in rs], "o-", label="xent")
        if all("reference_s" in r for r in rs):
            ax.plot(cs, [r["bytes"] / r["reference_s"] / 1e9 for r in rs], "s--", label="NumPy reference")
        if all(r.get("torch_s") for r in rs):
            ax.plot(cs, [r["bytes"] / r["torch_s"] / 1e9 for r in rs], "^:", label="PyTorch")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("classes C")
        ax.set_ylabel("GB/s")
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle(f"xent throughput, {res['dtype']}, {res['threads']} threads "
                 f"(read bandwidth {res['read_GBps']:.0f} GB/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m xent bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="~64 MB arrays instead of the 1 GB+ SPEC sizes")
    p.add_argument("--threads", type=int, default=None, help="n_threads (default: OpenMP's default)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE", help="draw GB/s against C (needs matplotlib)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the NumPy reference (it runs on one thread; e.g. for a thread-scaling sweep)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed calls of xent per case (median; default 5 with --quick, else 7)")
    p.add_argument("--shapes", metavar="RxC,...", help="override the shapes, e.g. 262144x10,512x32000")
    args = p.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.shapes:
        try:
            shapes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(","))
            assert all(len(s) == 2 and min(s) > 0 for s in shapes)
        except (ValueError, AssertionError):
            p.error(f"--shapes must look like 262144x10,512x32000; got {args.shapes!r}")
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be at least 1; got {args.repeats}")
    repeats = args.repeats or (5 if args.quick else 7)
    res = run(shapes, n_threads=args.threads, dtype=np.dtype(args.dtype), repeats=repeats,
              with_reference=not args.no_reference, with_torch=not args.no_torch)
    print(format_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.plot:
        plot(res, args.plot)
    return 0
