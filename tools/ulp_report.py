#!/usr/bin/env python
"""Measured accuracy of xent's kernels, in ulps of the exact result.

Runs every kernel on the strata of the accuracy tests (``tests/_exact.py``:
the same inputs, the same mpmath oracle) and prints, per kernel, dtype and
stratum, the maximum and the 99.9th percentile of the error of the loss (or
output) and of the gradient entries, next to the accuracy bound (4 ulp in
float64, 8 in float32).

    python tools/ulp_report.py                       # all strata (~1.5 min of CPU)
    python tools/ulp_report.py --quick               # C = 128256 as one row (~15 s)
    python tools/ulp_report.py --markdown --summary  # one line per kernel, for the README
    python tools/ulp_report.py --isa all             # every SIMD variant this CPU runs
    python tools/ulp_report.py --worst               # and the worst inputs over the bound

Errors are in ulps of the exact value, floored at the ulp of the smallest
normal number; BCE gradients, which are bounded absolutely (they cancel
near sigmoid(x) = t), in machine epsilons.  Strata are the row kinds (uniform,
ties at the max, confident-right, confident-wrong, random), over all C in
{1, 2, 3, 10, 1000, 128256} and gaps up to 1e4; for BCE, the target value
over x = 0, +-[1e-10, 1e20].
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import _exact as ex  # noqa: E402  (the oracle and strata shared with the tests)

SMALL_C = (1, 2, 3, 10, 1000)
# names in the table: what each kernel of the harness calls
TITLES = {
    "ce-index": "softmax_cross_entropy (class indices)",
    "ce-index-smoothing": f"softmax_cross_entropy (class indices, label_smoothing={ex.LABEL_SMOOTHING})",
    "ce-prob-one-hot": "softmax_cross_entropy (probabilities: one-hot)",
    "ce-prob-smoothed": "softmax_cross_entropy (probabilities: smoothed)",
    "ce-prob-unnormalised": "softmax_cross_entropy (probabilities: not summing to 1)",
    "logsumexp": "logsumexp",
    "log_softmax": "log_softmax",
    "softmax": "softmax",
    "sigmoid-bce": "sigmoid_binary_cross_entropy",
}


def variants(choice):
    from xent import _config
    if choice == "active":
        return [_config.simd_variant()]
    if choice == "all":
        return list(_config.variants_supported())
    return [choice]


def rows_by_c(dtype, quick):
    """{C label: rows} for one dtype."""
    out = {c: ex.softmax_rows(dtype, c) for c in SMALL_C}
    out[ex.BIG_C] = ex.big_rows(dtype, full=not quick)
    return out


def collect(dtypes, quick, progress):
    """([(kernel, dtype, stratum, {quantity: errors})], [Measured]) for the
    variant in use."""
    results, measured = [], []
    for dtype in dtypes:
        strata = rows_by_c(dtype, quick)
        for kernel in ex.SOFTMAX_KERNELS:
            progress(f"{kernel} {np.dtype(dtype).name}")
            merged = {}
            for rows in strata.values():
                for quantity, m in ex.measure_softmax(kernel, dtype, rows).items():
                    merged.setdefault(quantity, []).append(m)
                    measured.append(m)
            for kind in ex.ROW_KINDS + ("all",):
                sel = None if kind == "all" else (lambda k: lambda r: r.kind == k)(kind)
                errs = {q: np.concatenate([m.errors(sel) for m in ms]) for q, ms in merged.items()}
                results.append((kernel, dtype, kind, errs))
        progress(f"sigmoid-bce {np.dtype(dtype).name}")
        bce = ex.measure_bce(dtype)
        measured += [bce["loss"], bce["grad"]]
        for t in ex.BCE_TARGETS + (None,):
            kind = "all" if t is None else f"t={float(np.dtype(dtype).type(t)):.3g}"
            sel = None if t is None else (lambda k: lambda r: r.kind == k)(kind)
            errs = {"loss": bce["loss"].errors(sel), "grad": bce["grad"].errors(sel),
                    "grad-ulp": bce["grad-ulp"].errors(sel),
                    "hard": np.concatenate([np.full(r.x.size, float(r.t[0]) in (0.0, 1.0))
                                            for r, _, _, _ in bce["grad"].items
                                            if sel is None or sel(r)])}
            results.append(("sigmoid-bce", dtype, kind, errs))
    return results, measured


def fmt(v):
    if v is None:
        return "-"
    if not np.isfinite(v):
        return "inf"
    if v == 0:
        return "0"
    if v < 0.01:
        return f"{v:.1e}"
    if v < 100:
        return f"{v:.2f}"
    return f"{v:.3g}"


def summarise(errors):
    if errors is None or errors.size == 0:
        return None, None
    return float(errors.max()), float(np.percentile(errors, 99.9))


def table(results, isa, markdown, summary):
    head = ["kernel", "dtype", "stratum", "entries", "loss max", "loss p99.9",
            "grad max", "grad p99.9", "bound", "within"]
    if isa is not None:
        head.insert(2, "SIMD")
    lines = []
    for kernel, dtype, kind, errs in results:
        if (kind == "all") != summary:
            continue
        dt = np.dtype(dtype)
        first = errs.get("loss", errs.get("value"))
        grad = errs.get("grad")
        lmax, lp = summarise(first)
        gmax, gp = summarise(grad)
        bound = ex.ULP_BOUND[dt]
        bound_s = f"{bound:g} ulp"
        ok = (lmax is None or lmax <= bound) and (gmax is None or gmax <= bound)
        if kernel == "sigmoid-bce":
            bound_s = f"{bound:g} ulp / {bound:g} eps"
            gmax_s, gp_s = (f"{fmt(gmax)} eps", f"{fmt(gp)} eps")
            hard = kind in ("t=0", "t=1")
            if kind == "all":   # the hard targets' ulps, as the tests hold them
                sel = np.concatenate([errs["grad-ulp"][errs["hard"]]])
                umax, up = summarise(sel)
                hard = True
            else:
                umax, up = summarise(errs["grad-ulp"])
            if hard:   # t in {0, 1}: no cancellation; the tests hold it in ulps too
                gmax_s += f" ({fmt(umax)} ulp)"
                gp_s += f" ({fmt(up)} ulp)"
                ok = ok and umax <= bound
        else:
            gmax_s, gp_s = fmt(gmax), fmt(gp)
        n = first.size + (grad.size if grad is not None else 0)
        row = [TITLES[kernel], dt.name, kind, str(n), fmt(lmax), fmt(lp), gmax_s, gp_s,
               bound_s, "yes" if ok else "**NO**" if markdown else "NO"]
        if isa is not None:
            row.insert(2, isa)
        lines.append(row)
    return head, lines


def render(head, lines, markdown):
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in lines]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="C = 128256 as one row (the full set adds one row of each kind)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    ap.add_argument("--summary", action="store_true",
                    help="one line per kernel and dtype (all strata together)")
    ap.add_argument("--isa", default="active",
                    help="SIMD variant: active (default), all, baseline, avx2 or avx512")
    ap.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    ap.add_argument("--worst", action="store_true",
                    help="after the table, the worst case (inputs, exact, got) of each "
                         "kernel, dtype and C over the bound")
    args = ap.parse_args(argv)

    import mpmath
    import xent
    from xent import _config

    dtypes = [np.float32, np.float64] if args.dtype == "both" else [np.dtype(args.dtype).type]
    isas = variants(args.isa)
    before = _config.simd_variant()
    start = time.time()

    def progress(what):
        print(f"\r  measuring {what} ...".ljust(60), end="", file=sys.stderr, flush=True)

    all_lines, head, over = [], None, []
    try:
        for isa in isas:
            _config.select_isa(isa)
            results, measured = collect(dtypes, args.quick, progress)
            head, lines = table(results, isa if len(isas) > 1 else None, args.markdown, args.summary)
            all_lines += lines
            over += [(isa, m.report()) for m in measured if m.failures()]
    finally:
        _config.select_isa(before)
    print("\r".ljust(60) + "\r", end="", file=sys.stderr)

    n_bad = sum(1 for r in all_lines if r[-1] != "yes")
    title = (f"xent {xent.__version__}: error against an exact (mpmath {mpmath.__version__}) "
             f"oracle; SIMD {', '.join(isas)}; {'quick' if args.quick else 'full'} strata; "
             f"{time.time() - start:.0f} s")
    if args.markdown:
        flags = " --markdown" + " --quick" * args.quick + " --summary" * args.summary
        print(f"<!-- generated by `python tools/ulp_report.py{flags}` -->")
        print(f"_{title}._\n")
        print(render(head, all_lines, True))
        print("\nErrors in ulps of the exact value (floored at the ulp of the smallest normal "
              "number), on dyadic logits where `x - max(x)` is exact; BCE gradients in machine "
              "epsilons, absolute, with ulps for the hard targets 0 and 1.")
    else:
        print(title)
        print(render(head, all_lines, False))
    if n_bad:
        print(f"\n{n_bad} of {len(all_lines)} lines exceed the accuracy bound.")
    if args.worst and over:
        print("\nWorst cases over the bound (per kernel, dtype and C):")
        for isa, text in over:
            print(f"- [{isa}] {text}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
