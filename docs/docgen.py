"""Generated parts of the documentation: the accuracy table, the performance tables and plots.

``docs/conf.py`` runs :func:`generate` when a build starts; it writes into
``docs/_generated/`` (not committed), which the guide's pages include:

- ``accuracy.inc`` from ``docs/data/accuracy.json``, written by
  ``python docs/measure_accuracy.py`` (errors against an exact oracle);
- ``performance.inc`` and one ``perf-*.png`` per machine from every
  ``benchmarks/results/*.json``, written by
  ``python -m xent bench --json FILE`` (one file per machine).

Run ``python docs/docgen.py`` to write them without building the docs.
Set ``XENT_DOCS_RESULTS`` to a glob to render other results files.
"""

import glob
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_GLOB = os.path.join(ROOT, "benchmarks", "results", "*.json")

#: the kernels of ``python -m xent bench``, in its order, and what each times
CASES = {
    "ce_index": "``softmax_cross_entropy``, class indices",
    "ce_prob": "``softmax_cross_entropy``, probabilities",
    "bce": "``sigmoid_binary_cross_entropy``",
    "ce_index+grad": "``softmax_cross_entropy_with_grad``, class indices",
    "ce_prob+grad": "``softmax_cross_entropy_with_grad``, probabilities",
    "bce+grad": "``sigmoid_binary_cross_entropy_with_grad``",
    "logsumexp": "``logsumexp``",
    "softmax": "``softmax``",
}

#: an efficiency above this means the bandwidth probe failed, not that xent beat memory
EFFICIENCY_LIMIT = 1.05

#: the peers a results file may hold: key of the ratio, key of the time, column title
PEERS = (
    ("vs_torch", "torch_s", "vs PyTorch"),
    ("vs_jax", "jax_s", "vs JAX"),
    ("vs_reference", "reference_s", "vs NumPy reference"),
)


# --------------------------------------------------------------------------
# reST helpers
# --------------------------------------------------------------------------

def list_table(header, rows, widths=None, title=None):
    """A ``list-table`` directive."""
    out = [f".. list-table::{' ' + title if title else ''}", "   :header-rows: 1"]
    if widths:
        out.append("   :widths: " + " ".join(str(w) for w in widths))
    out.append("")
    for row in [header] + rows:
        out.append(f"   * - {row[0]}")
        out += [f"     - {cell}" for cell in row[1:]]
    out.append("")
    return out


def note(text, kind="note"):
    return [f".. {kind}::", "", "   " + text, ""]


def heading(text, char):
    return [text, char * len(text), ""]


# --------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------

def _err(q):
    """'max (p99.9) unit' of one measured quantity."""
    def f(v):
        if v == 0:
            return "0"
        return f"{v:.2f}" if v >= 0.01 else f"{v:.1e}"
    return f"{f(q['max'])} ({f(q['p999'])}) {q['unit']}"


def accuracy_rst(path):
    """The accuracy tables, from ``docs/data/accuracy.json``."""
    if not os.path.exists(path):
        return note("No accuracy measurements are committed yet: run "
                    "``python docs/measure_accuracy.py`` to write ``docs/data/accuracy.json``.",
                    "warning")
    with open(path) as f:
        data = json.load(f)
    res = data["results"]
    variants = data["simd_variants"]
    out = [
        f"Measured with xent {data['xent']} (NumPy {data['numpy']}, mpmath {data['mpmath']}) "
        f"on {data['cpu']}, {data['date']}, {data['strata']} strata, "
        f"SIMD variant{'s' if len(variants) > 1 else ''} {', '.join(variants)}. "
        "Each cell is the largest error over every input (and every variant), with the "
        "99.9th percentile in parentheses.",
        "",
    ]
    # worst over the variants, per kernel and dtype
    keys = []
    worst = {}
    for r in res:
        k = (r["kernel"], r["dtype"])
        if k not in worst:
            keys.append(k)
            worst[k] = dict(r)
            continue
        w = worst[k]
        for q in ("loss", "grad", "grad_hard"):
            if q in r and (r[q]["max"], r[q]["p999"]) > (w[q]["max"], w[q]["p999"]):
                w[q] = r[q]
    rows = []
    ok_all = True
    for k in keys:
        r = worst[k]
        grad = _err(r["grad"]) if "grad" in r else "--"
        if "grad_hard" in r:
            grad += f"; targets 0 and 1: {_err(r['grad_hard'])}"
        bound = f"{r['loss']['bound']:g} ulp"
        if "grad" in r and r["grad"]["unit"] != "ulp":
            bound += f"; gradient {r['grad']['bound']:g} {r['grad']['unit']}"
        within = all(r[q]["max"] <= r[q]["bound"] for q in ("loss", "grad", "grad_hard") if q in r)
        ok_all &= within
        rows.append([r["title"], r["dtype"], _err(r["loss"]), grad, bound,
                     "yes" if within else "**no**"])
    out += list_table(["kernel", "dtype", "loss or output: max (p99.9)",
                       "gradient: max (p99.9)", "bound", "within"],
                      rows, widths=[30, 8, 18, 26, 12, 6])
    if not ok_all:
        out += note("Some measured errors exceed the bound.", "warning")
    if len(variants) > 1:
        out += heading("By SIMD variant", "~")
        out += ["The largest error of the loss (or output) and of the gradient, per variant:", ""]
        by = {}
        for r in res:
            cell = f"{r['loss']['max']:.2f}"
            if "grad" in r:
                cell += f" / {r['grad']['max']:.2f}"
            by.setdefault((r["kernel"], r["dtype"]), {})[r["simd"]] = cell
        vrows = [[worst[k]["title"], k[1]] + [by[k].get(v, "--") for v in variants] for k in keys]
        out += list_table(["kernel", "dtype"] + variants, vrows)
    return out


# --------------------------------------------------------------------------
# performance
# --------------------------------------------------------------------------

def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"


def _name(data, path):
    """The machine a results file was measured on: its CPU and core count."""
    m = data.get("machine") or {}
    if not m.get("cpu"):
        return os.path.basename(path)
    cores = m.get("cores") or m.get("logical_cores")
    return f"{m['cpu']}, {cores} cores" if cores else str(m["cpu"])


def _shape(r):
    return f"{r['rows']} x {r['classes']}"


def _probe_failed(r):
    return r.get("probe_failed", (r.get("efficiency") or 0) > EFFICIENCY_LIMIT)


def _eff_cell(r):
    if r.get("efficiency") is None:
        return "--"
    return "†" if _probe_failed(r) else f"{r['efficiency']:.0%}"


def _peers(results):
    """The peers measured in a run: at least one row has their ratio."""
    return [p for p in PEERS if any(r.get(p[0]) for r in results)]


def _span(values):
    values = sorted(v for v in values if v)
    if not values:
        return "--"
    lo, hi = f"{values[0]:.1f}x", f"{values[-1]:.1f}x"
    return lo if lo == hi else f"{lo} -- {hi}"


def _cases(res):
    cases = [c for c in CASES if any(r["case"] == c for r in res)]
    return cases + sorted({r["case"] for r in res} - set(cases))


def _shapes(res):
    shapes = []
    for r in res:
        if (r["rows"], r["classes"]) not in shapes:
            shapes.append((r["rows"], r["classes"]))
    return shapes


def _plot(data, name, path):
    """Two panels: xent's GB/s per kernel and shape, with the measured
    bandwidths as lines; and the speed-up over the fastest peer measured."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    res = data["results"]
    cases, shapes = _cases(res), _shapes(res)
    by = {(r["case"], r["rows"], r["classes"]): r for r in res}
    peers = [p for p in _peers(res) if p[0] != "vs_reference"] or _peers(res)
    fig, axes = plt.subplots(1, 2 if peers else 1, figsize=(13 if peers else 7, 4.8), squeeze=False)
    width = 0.8 / max(len(shapes), 1)
    colours = plt.get_cmap("viridis")([i / max(len(shapes) - 1, 1) * 0.85 for i in range(len(shapes))])

    def offset(i):
        return (i - (len(shapes) - 1) / 2) * width

    ax = axes[0, 0]
    for i, (n, c) in enumerate(shapes):
        pts = [(j + offset(i), by[(k, n, c)]["xent_GBps"]) for j, k in enumerate(cases) if (k, n, c) in by]
        ax.bar([p[0] for p in pts], [p[1] for p in pts], width, color=colours[i], label=f"{n} x {c}")
    top = max([r["xent_GBps"] for r in res] + [data.get("read_GBps") or 0, data.get("copy_GBps") or 0])
    for key, style, label in (("read_GBps", "--", "read"), ("copy_GBps", ":", "copy")):
        if data.get(key):
            ax.axhline(data[key], color="black", linestyle=style, linewidth=1.2,
                       label=f"{label} bandwidth, {data[key]:.1f} GB/s")
    ax.set_ylim(0, top * 1.08)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=30, ha="right")
    ax.set_ylabel("xent, logical GB/s")
    ax.set_title("Throughput and the memory bandwidth of the same run", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)

    if peers:
        ax = axes[0, 1]
        names = [p[2][3:] for p in peers]
        label = names[0] if len(names) == 1 else "the fastest of " + ", ".join(names)
        for i, (n, c) in enumerate(shapes):
            pts = []
            for j, k in enumerate(cases):
                r = by.get((k, n, c))
                vals = [r.get(p[0]) for p in peers if r and r.get(p[0])] if r else []
                if vals:
                    pts.append((j + offset(i), min(vals)))
            ax.bar([p[0] for p in pts], [p[1] for p in pts], width, color=colours[i])
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=30, ha="right")
        ax.set_ylabel("their time / xent's time")
        ax.set_title(f"Speed-up over {label}", fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)

    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title=f"rows x classes ({data.get('dtype', 'float32')} logits)",
               loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(f"{name}: {data.get('threads', '?')} threads")
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_scaling(runs, name, path):
    """xent's GB/s against the thread count, one panel per shape, one line per kernel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(runs, key=lambda r: r["threads"])
    rows = [r for run in runs for r in run["results"]]
    cases, shapes = _cases(rows), _shapes(rows)
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.3 * len(shapes), 4.2), squeeze=False,
                             sharey=True)
    threads = [run["threads"] for run in runs]
    for ax, (n, c) in zip(axes[0], shapes):
        for k in cases:
            pts = [(run["threads"], r["xent_GBps"]) for run in runs for r in run["results"]
                   if (r["case"], r["rows"], r["classes"]) == (k, n, c)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", markersize=3, label=k)
        ax.plot(threads, [run["read_GBps"] for run in runs], "k--", linewidth=1.2, label="read bandwidth")
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads)
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_xlabel("threads")
        ax.set_title(f"{n} x {c}", fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("xent, logical GB/s")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=5, frameon=False)
    fig.suptitle(f"{name}: thread scaling")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _summary(loaded):
    """One line per machine: the range of the speed-ups over each peer."""
    peers = [p for p in PEERS if any(p in _peers(d.get("results") or []) for _, d, _ in loaded)]
    rows = []
    for _, data, name in loaded:
        res = data.get("results") or []
        m = data.get("machine") or {}
        rows.append([name, m.get("simd_variant", "--"), str(data.get("threads", "--"))]
                    + [_span(r.get(p[0]) for r in res) for p in peers])
    out = list_table(["machine", "SIMD variant", "threads"] + [p[2] for p in peers], rows)
    out += ["Each cell is the range over every kernel and shape of the run: the other "
            "implementation's time divided by xent's, on the same arrays and threads. "
            "``--``: not measured on that machine.", ""]
    return out


def performance_rst(paths, outdir):
    """The performance section of every results file; writes the plots to `outdir`."""
    if not paths:
        return note("No benchmark results are committed yet (``benchmarks/results/*.json``). "
                    "Run ``python -m xent bench --json FILE`` to measure this machine; "
                    "the tables and plots of this page are drawn from those files.", "warning")
    try:
        import matplotlib  # noqa: F401
        have_mpl = True
    except ImportError:
        have_mpl = False
    loaded = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        loaded.append((path, data, _name(data, path)))
    loaded.sort(key=lambda e: ((e[1].get("machine") or {}).get("cores", 0), e[0]))

    # the peers of any run; PyTorch and the reference are always named when missing
    known = [p for p in PEERS if p[0] in ("vs_torch", "vs_reference")
             or any(p in _peers(d.get("results") or []) for _, d, _ in loaded)]
    out = heading("Summary", "~") + _summary(loaded)
    if not have_mpl:
        out += note("The plots are missing: matplotlib is not installed "
                    "(``pip install matplotlib``, part of the ``docs`` extra).", "warning")
    seen = set()
    for path, data, name in loaded:
        res = data.get("results") or []
        m = data.get("machine") or {}
        slug = _slug(name)
        while slug in seen:
            slug += "-1"
        seen.add(slug)
        out += heading(name, "~")
        facts = [f"``{os.path.relpath(path, ROOT)}``"]
        if m.get("simd_variant"):
            facts.append(f"the ``{m['simd_variant']}`` variant")
        facts.append(f"{data.get('threads', '?')} threads, {data.get('dtype', 'float32')} logits")
        out += ["; ".join(facts) + ". Memory bandwidth measured in the same run: read "
                f"{data['read_GBps']:.1f} GB/s, copy {data['copy_GBps']:.1f} GB/s (read + write).", ""]
        versions = [f"{label} {m[key]}" for key, label in
                    (("xent", "xent"), ("numpy", "NumPy"), ("python", "Python"), ("torch", "PyTorch"))
                    if m.get(key)]
        if versions:
            out += [", ".join(versions) + ".", ""]
        if m.get("note"):
            out += [str(m["note"]), ""]
        if not res:
            out += note("This file holds no results.")
            continue
        peers = _peers(res)
        if have_mpl:
            png = f"perf-{slug}.png"
            _plot(data, name, os.path.join(outdir, png))
            out += [f".. image:: /_generated/{png}", f"   :alt: xent's throughput and speed-up on {name}", ""]
        cases, shapes = _cases(res), _shapes(res)
        by = {(r["case"], r["rows"], r["classes"]): r for r in res}
        cols = [f"{n} x {c}" for n, c in shapes]

        def pivot(cell):
            return [[f"``{k}``"] + [cell(by[(k, n, c)]) if (k, n, c) in by else "--" for n, c in shapes]
                    for k in cases]

        out += list_table(["xent GB/s (efficiency)"] + cols,
                          pivot(lambda r: f"{r['xent_GBps']:.1f} ({_eff_cell(r)})"))
        if peers:
            head = peers[0][2][3:] + "".join(f" ({p[2][3:]})" for p in peers[1:])

            def ratios(r):
                vals = [f"{r[p[0]]:.1f}x" if r.get(p[0]) else "--" for p in peers]
                return vals[0] + "".join(f" ({v})" for v in vals[1:])
            out += list_table([f"speed-up over {head}"] + cols, pivot(ratios))
        why = data.get("not_measured") or {}
        notes = [f"{label[3:]}: {why.get(key, 'not measured in this run')}."
                 for ratio, _, label in known if all(p[0] != ratio for p in peers)
                 for key in [ratio[3:]]]
        if any(_probe_failed(r) for r in res):
            notes.append(f"†: above {EFFICIENCY_LIMIT:.0%} of the bandwidth probe, which therefore "
                         "read less than the kernel did on this machine: no efficiency is given.")
        if any(r.get(p[0]) is None for r in res for p in peers):
            notes.append("``--`` in a ratio column: that implementation has no such call.")
        if notes:
            out += [" ".join(notes), ""]
        if data.get("scaling") and have_mpl:
            png = f"scaling-{slug}.png"
            _plot_scaling(data["scaling"], name, os.path.join(outdir, png))
            out += ["Thread scaling (one process per thread count, ``OMP_NUM_THREADS`` set to it):", "",
                    f".. image:: /_generated/{png}", f"   :alt: xent's thread scaling on {name}", ""]
    return out


# --------------------------------------------------------------------------

def _write(path, lines):
    text = "\n".join(lines).rstrip() + "\n"
    old = None
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if old != text:          # unchanged files keep their time: no needless rebuilds
        with open(path, "w") as f:
            f.write(text)


def generate(docs_dir=HERE):
    outdir = os.path.join(docs_dir, "_generated")
    os.makedirs(outdir, exist_ok=True)
    _write(os.path.join(outdir, "accuracy.inc"),
           accuracy_rst(os.path.join(docs_dir, "data", "accuracy.json")))
    paths = sorted(glob.glob(os.environ.get("XENT_DOCS_RESULTS") or RESULTS_GLOB))
    _write(os.path.join(outdir, "performance.inc"), performance_rst(paths, outdir))


if __name__ == "__main__":
    generate()
    print(f"wrote {os.path.join(HERE, '_generated')}", file=sys.stderr)
