#!/usr/bin/env python
"""Measure xent's accuracy against an exact oracle and write ``docs/data/accuracy.json``.

The documentation's accuracy table (``docs/guide/accuracy.rst``) is rendered
from that file when the docs are built.  This script produces it from a
source checkout, with the inputs and the arbitrary-precision (mpmath) oracle
of the accuracy tests (``tests/_exact.py``)::

    python -m pip install -e ".[test]"
    python docs/measure_accuracy.py                # full strata, every SIMD variant (a few minutes)
    python docs/measure_accuracy.py --quick        # C = 128256 as one row (~15 s per variant)
    python docs/measure_accuracy.py --isa active   # only the variant chosen on this CPU

Every kernel runs on every stratum: class counts C in {1, 2, 3, 10, 1000,
128256}; rows that are uniform, tied at the max, confidently right or wrong,
or random, with gaps from 2**-10 to 1e4 between the max and the rest;
probability targets that are one-hot, smoothed or do not sum to 1; and, for
sigmoid BCE, x in 0 and +-[1e-10, 1e20] against targets 0, 0.3 and 1.  Logits
are dyadic, so that ``x - max(x)`` is exact.  Errors are in ulps of the
exact value (floored at the smallest normal number), except the gradients
that cancel (soft or smoothed targets, BCE), which are in machine epsilons
per unit of target mass.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "data", "accuracy.json")

TITLES = {
    "ce-index": "softmax_cross_entropy, class indices",
    "ce-index-smoothing": "softmax_cross_entropy, class indices, label_smoothing=0.1",
    "ce-prob-one-hot": "softmax_cross_entropy, one-hot probabilities",
    "ce-prob-smoothed": "softmax_cross_entropy, smoothed probabilities",
    "ce-prob-unnormalised": "softmax_cross_entropy, probabilities not summing to 1",
    "logsumexp": "logsumexp",
    "log_softmax": "log_softmax",
    "softmax": "softmax",
    "sigmoid-bce": "sigmoid_binary_cross_entropy",
}


def cpu_name():
    """The CPU's model name, as the operating system reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stats(errors):
    """Max and 99.9th percentile of an array of errors (None when empty)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return None
    return {"n": int(errors.size), "max": float(errors.max()),
            "p999": float(np.percentile(errors, 99.9))}


def strata(ex, dtype, quick):
    """The rows of every class count.  Built once per dtype: the oracle's
    values are cached on the rows, so the other SIMD variants reuse them."""
    rows = [ex.softmax_rows(dtype, c) for c in (1, 2, 3, 10, 1000)]
    rows.append(ex.big_rows(dtype, full=not quick))
    return rows


def measure(ex, dtype, strata, progress):
    """[{kernel, dtype, quantity: {unit, bound, n, max, p999}}] for the variant in use."""
    name = np.dtype(dtype).name
    bound = float(ex.ULP_BOUND[np.dtype(dtype)])
    out = []
    for kernel in ex.SOFTMAX_KERNELS:
        progress(f"{kernel} {name}")
        merged = {}
        for rows in strata:
            for quantity, m in ex.measure_softmax(kernel, dtype, rows).items():
                merged.setdefault(quantity.split()[0], []).append(m)
        entry = {"kernel": kernel, "title": TITLES[kernel], "dtype": name}
        for quantity, ms in merged.items():
            key = "loss" if quantity in ("loss", "value") else "grad"
            entry[key] = dict(stats(np.concatenate([m.errors() for m in ms])),
                              unit=ms[0].unit, bound=bound)
        out.append(entry)
    progress(f"sigmoid-bce {name}")
    bce = ex.measure_bce(dtype)
    hard = lambda r: float(r.t[0]) in (0.0, 1.0)  # noqa: E731
    out.append({
        "kernel": "sigmoid-bce", "title": TITLES["sigmoid-bce"], "dtype": name,
        "loss": dict(stats(bce["loss"].errors()), unit="ulp", bound=bound),
        "grad": dict(stats(bce["grad"].errors()), unit="eps", bound=bound),
        # targets 0 and 1: no cancellation, so held to ulps as well
        "grad_hard": dict(stats(bce["grad-ulp"].errors(hard)), unit="ulp", bound=bound),
    })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="C = 128256 as one row instead of six")
    ap.add_argument("--isa", default="all",
                    help="SIMD variants: all (default: every one this CPU runs), active, "
                         "or one of baseline, avx2, avx512")
    ap.add_argument("-o", "--output", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = ap.parse_args(argv)

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import _exact as ex   # the oracle and strata of tests/test_accuracy.py
    except ImportError as exc:
        sys.exit(f"needs a source checkout with tests/_exact.py and mpmath (the `test` extra): {exc}")
    import mpmath
    import xent
    from xent import _config

    if args.isa == "all":
        isas = list(_config.variants_supported())
    elif args.isa == "active":
        isas = [_config.simd_variant()]
    else:
        isas = [args.isa]

    def progress(what):
        print(f"  {what}", file=sys.stderr, flush=True)

    start = time.time()
    before = _config.simd_variant()
    results = []
    try:
        for dtype in (np.float32, np.float64):
            rows = strata(ex, dtype, args.quick)
            for isa in isas:
                if _config.select_isa(isa) != isa:
                    sys.exit(f"the SIMD variant {isa!r} does not run on this CPU")
                print(f"SIMD variant {isa}:", file=sys.stderr)
                for entry in measure(ex, dtype, rows, progress):
                    results.append(dict(entry, simd=isa))
        order = {v: i for i, v in enumerate(isas)}
        results.sort(key=lambda r: (order[r["simd"]], r["dtype"]))   # stable: kernels stay in order
    finally:
        _config.select_isa(before)

    data = {
        "xent": xent.__version__,
        "numpy": np.__version__,
        "mpmath": mpmath.__version__,
        "cpu": cpu_name(),
        "date": datetime.date.today().isoformat(),
        "strata": "quick" if args.quick else "full",
        "simd_variants": isas,
        "seconds": round(time.time() - start, 1),
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    worst = [r for r in results
             if any(q in r and r[q]["max"] > r[q]["bound"] for q in ("loss", "grad", "grad_hard"))]
    print(f"wrote {args.output} ({len(results)} lines, {data['seconds']:.0f} s); "
          f"{len(worst)} over the bound", file=sys.stderr)
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
