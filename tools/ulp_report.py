#!/usr/bin/env python
"""Measured accuracy of xent's kernels, in ulps of the exact result.

Runs every kernel on the strata of the accuracy tests (``tests/_exact.py``:
the same inputs, the same mpmath oracle) and prints, per kernel, dtype and
stratum, the maximum and the 99.9th percentile of the error of the loss (or
output) and of the gradient entries, next to the accuracy bound (4 ulp in
float64, 8 in float32).

    python tools/ulp_report.py                       # all strata (~2.5 min of CPU)
    python tools/ulp_report.py --quick               # C = 128256 as one row (~35 s)
    python tools/ulp_report.py --markdown --summary  # one line per kernel, for the README
    python tools/ulp_report.py --isa all             # every SIMD variant this CPU runs
    python tools/ulp_report.py --worst               # and the worst inputs over the bound

Errors are in ulps of the exact value, floored at the ulp of the smallest
normal number; BCE gradients, which are bounded absolutely (they cancel
near sigmoid(x) = t), in machine epsilons.  Strata are the row kinds (uniform,
ties at the max, confident-right, confident-wrong, random), over all C in
{1, 2, 3, 10, 1000, 128256} and gaps up to 1e4; for BCE, the target value
over x = 0, +-[1e-10, 1e20].

The newer row operations follow (``tests/test_accuracy_extras.py`` holds
them): ``token_stats`` (lse, entropy, logprob; also on near-one-hot rows and
rows with -inf masks), ``softmax_cross_entropy`` with ``temperature`` (0.5, 2,
0.25), ``z_loss`` (1e-4, 0.25), ``softcap`` (30, 50) and all three, the capped
logits themselves, and the sigmoid and softmax focal losses (gamma 0, 0.5, 2,
3), on the same kinds of rows plus rows spread over [-90, 90] and
near-one-hot rows; the sigmoid focal loss over x = 0, +-[1e-10, 1e3] against
targets 0, 0.3, 1.  Focal losses in float64 are held to 64 ulp.  Softcap
errors are counted beyond the first-order effect of rounding the capped
logits (3.5 ulp each, the bound the capped logits are held to), their
differences with the max (half an ulp) and the argument z / c of sech^2
(1 ulp); gradients that are differences (soft
targets, z-loss parts of opposite signs) in eps per unit of the gradient's
mass.  The quick set runs the extras at C <= 10 (token statistics at every
C); the full set adds C = 1000.
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
    # the newer row operations
    "stats-lse": "token_stats: lse",
    "stats-entropy": "token_stats: entropy",
    "stats-logprob": "token_stats: logprob",
    "capped-logits": "softcap: the capped logits c tanh(z / c)",
    "sigmoid-focal": "sigmoid_focal_loss",
    "softmax-focal-index": "softmax_focal_loss (class indices)",
    "softmax-focal-one-hot": "softmax_focal_loss (probabilities: one-hot)",
    "softmax-focal-unnormalised": "softmax_focal_loss (probabilities: not summing to 1)",
}
#: softmax_cross_entropy's extras: (key, options of each run, title)
CE_EXTRAS = (
    ("temperature", [dict(temperature=T) for T in ex.TEMPERATURES],
     "temperature " + "/".join(f"{T:g}" for T in ex.TEMPERATURES)),
    ("z_loss", [dict(z_loss=z) for z in ex.Z_LOSSES],
     "z_loss " + "/".join(f"{z:.2g}" for z in ex.Z_LOSSES)),
    ("softcap", [dict(softcap=c) for c in ex.SOFTCAPS],
     "softcap " + "/".join(f"{c:g}" for c in ex.SOFTCAPS) + "*"),
    ("all", [dict(temperature=0.5, softcap=30.0, z_loss=ex.Z_LOSSES[0])],
     f"temperature 0.5 + softcap 30 + z_loss {ex.Z_LOSSES[0]:.2g}*"),
)
_TARGET_TITLES = {"index": "class indices", "one-hot": "one-hot probabilities",
                  "unnormalised": "probabilities not summing to 1"}
for _key, _, _what in CE_EXTRAS:
    for _kind in ex.CE_TARGETS:
        TITLES[f"ce-{_key}-{_kind}"] = f"softmax_cross_entropy, {_what} ({_TARGET_TITLES[_kind]})"
#: the strata of the extras (row kinds)
EXTRA_KINDS = ex.ROW_KINDS + ("spread", "near-one-hot")
#: extras at C = 1000 only in the full set
EXTRA_SMALL_C = (1, 2, 3, 10)


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
        collect_extras(dtype, quick, progress, results, measured)
    return results, measured


SUBNORMAL = "subnormal terms"


def _lines(results, kernel, dtype, merged, kinds, apart=None, **extra):
    """Table lines of a kernel: one per row kind that has entries, and "all";
    with ``apart`` (a predicate on the cases), those cases in a line of
    their own (stratum ``SUBNORMAL``), left out of the others."""
    def keep(kind):
        if kind == SUBNORMAL:
            return apart
        if apart is None:
            return None if kind == "all" else (lambda r: r.kind == kind)
        return (lambda r: not apart(r)) if kind == "all" else (
            lambda r: r.kind == kind and not apart(r))

    for kind in kinds + ("all",) + ((SUBNORMAL,) if apart else ()):
        sel = keep(kind)
        errs = {q: np.concatenate([m.errors(sel) for m in ms]) for q, ms in merged.items()}
        if all(e.size == 0 for e in errs.values()):
            continue
        errs.update(extra)
        results.append((kernel, dtype, kind, errs))


def collect_extras(dtype, quick, progress, results, measured):
    """The newer row operations, on ``tests/test_accuracy_extras.py``'s strata."""
    name = np.dtype(dtype).name
    focal_bound = ex.FOCAL_BOUND[np.dtype(dtype)]
    small = {C: ex.softmax_rows(dtype, C) for C in SMALL_C}
    big = ex.big_rows(dtype)
    ce_cs = EXTRA_SMALL_C if quick else SMALL_C
    extras = {C: small[C] + (ex.spread_rows(dtype, C) + ex.near_one_hot_rows(dtype, C)
                             if C > 1 else []) for C in ce_cs}

    progress(f"token_stats {name}")
    stats_strata = list(small.values()) + [big]
    stats_strata += [ex.near_one_hot_rows(dtype, C) for C in (2, 3, 10, 1000)]
    stats_strata += [ex.masked_rows(dtype, C) for C in (3, 10, 1000)]
    merged = {}
    for rows in stats_strata:
        for T in (1.0, 0.25):
            for q, m in ex.measure_token_stats(dtype, rows, T).items():
                merged.setdefault(q, []).append(m)
                measured.append(m)
    for q in ("lse", "entropy", "logprob"):
        _lines(results, f"stats-{q}", dtype, {"value": merged[q]}, EXTRA_KINDS,
               apart=None if q == "lse" else ex.subnormal_terms_case)

    for key, configs, _ in CE_EXTRAS:
        progress(f"softmax_cross_entropy {key} {name}")
        for kind in ex.CE_TARGETS:
            merged = {}
            for cfg in configs:
                u = 1.0 if cfg.get("softcap") else 0.0
                for rows in extras.values():
                    for q, m in ex.measure_ce_extras(dtype, rows, kind, u_ulps=u, **cfg).items():
                        merged.setdefault(q, []).append(m)
                        measured.append(m)
            _lines(results, f"ce-{key}-{kind}", dtype, merged, EXTRA_KINDS,
                   apart=ex.subnormal_terms_case,
                   _gunit="eps" if kind == "unnormalised" else
                   ("ulp/eps" if key in ("z_loss", "all") else "ulp"))

    progress(f"capped logits {name}")
    caps = [ex.measure_capped_logits(dtype, c) for c in (30.0, 50.0, 64.0, 1000.0)]
    for m in caps:
        m._bound = ex.SOFTCAP_ZP_ULPS
    measured += caps
    _lines(results, "capped-logits", dtype, {"value": caps}, (), _bound=ex.SOFTCAP_ZP_ULPS)

    progress(f"sigmoid_focal_loss {name}")
    parts = {"loss": [], "grad": [], "grad-ulp": []}
    for gamma in ex.FOCAL_GAMMAS:
        for alpha in (0.25, None):
            m = ex.measure_sigmoid_focal(dtype, gamma, alpha)
            for q in parts:
                parts[q].append(m[q])
            measured += [m["loss"], m["grad"]]
    for t in ex.FOCAL_TARGETS + (None,):
        kind = "all" if t is None else f"t={float(np.dtype(dtype).type(t)):.3g}"
        sel = None if t is None else (lambda k: lambda r: r.kind == k)(kind)
        errs = {q: np.concatenate([m.errors(sel) for m in ms]) for q, ms in parts.items()}
        errs["hard"] = np.concatenate([np.full(r.x.size, float(r.t[0]) in (0.0, 1.0))
                                       for m in parts["grad"] for r, _, _, _ in m.items
                                       if sel is None or sel(r)])
        errs["_bound"] = focal_bound
        results.append(("sigmoid-focal", dtype, kind, errs))

    progress(f"softmax_focal_loss {name}")
    for kind in ex.CE_TARGETS:
        merged = {}
        for gamma in ex.FOCAL_GAMMAS:
            alpha = 0.25 if gamma == 2.0 else None
            for C in ce_cs:
                for q, m in ex.measure_softmax_focal(dtype, small[C], kind, gamma, alpha).items():
                    merged.setdefault(q, []).append(m)
                    measured.append(m)
        _lines(results, f"softmax-focal-{kind}", dtype, merged, ex.ROW_KINDS,
               _bound=focal_bound, _gunit="eps" if kind == "unnormalised" else "ulp")


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
        if (kind in ("all", SUBNORMAL)) != summary and kind != SUBNORMAL:
            continue
        dt = np.dtype(dtype)
        first = errs.get("loss", errs.get("value"))
        grad = errs.get("grad")
        lmax, lp = summarise(first)
        gmax, gp = summarise(grad)
        bound = errs.get("_bound", ex.ULP_BOUND[dt])
        gunit = errs.get("_gunit", "ulp")
        bound_s = f"{bound:g} ulp" if gunit == "ulp" else f"{bound:g} ulp / {bound:g} eps"
        ok = (lmax is None or lmax <= bound) and (gmax is None or gmax <= bound)
        if kernel in ("sigmoid-bce", "sigmoid-focal"):
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
        elif gunit != "ulp" and grad is not None:
            gmax_s, gp_s = f"{fmt(gmax)} {gunit}", f"{fmt(gp)} {gunit}"
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
        print("\nRows whose terms `exp(x_c - max(x))` fall below the smallest normal number "
              f"(stratum `{SUBNORMAL}`: where such terms are scaled up or many are summed) are "
              "shown apart from the others.")
        print("\nErrors in ulps of the exact value (floored at the ulp of the smallest normal "
              "number), on dyadic logits where `x - max(x)` is exact; BCE gradients in machine "
              "epsilons, absolute, with ulps for the hard targets 0 and 1.  Gradients that are "
              "differences (soft targets; z-loss parts of opposite signs: `ulp/eps`) in eps per "
              "unit of the gradient's mass; softcap (*) errors beyond the first-order effect of "
              "rounding the capped logits; focal losses in float64 against 64 ulp.")
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
