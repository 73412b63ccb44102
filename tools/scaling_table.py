"""Markdown tables of a thread-scaling sweep (tools/scaling.sh): one column
per thread count, from the JSON files of `python -m xent bench --json`.

usage: python tools/scaling_table.py bench-1.json bench-2.json ...
"""

import json
import sys


def tables(results):
    results = sorted(results, key=lambda r: r["threads"])
    counts = [r["threads"] for r in results]
    head = "| | " + " | ".join(f"{t} thr" for t in counts) + " |"
    rule = "|---" * (len(counts) + 1) + "|"
    out = ["Memory bandwidth measured in each run (GB/s):", "", head, rule,
           "| read | " + " | ".join(f"{r['read_GBps']:.1f}" for r in results) + " |",
           "| copy (read + write) | " + " | ".join(f"{r['copy_GBps']:.1f}" for r in results) + " |"]
    keys = []
    for r in results:
        for row in r["results"]:
            key = (row["case"], row["rows"], row["classes"])
            if key not in keys:
                keys.append(key)
    by = [{(row["case"], row["rows"], row["classes"]): row for row in r["results"]} for r in results]

    def cell(row, fmt):
        return "-" if row is None else fmt(row)

    out += ["", "xent GB/s (efficiency against that run's read or copy bandwidth):", "", head, rule]
    for key in keys:
        cells = [cell(b.get(key), lambda w: f"{w['xent_GBps']:.1f} ({w['efficiency']:.0%})") for b in by]
        out.append(f"| {key[0]} {key[1]}x{key[2]} | " + " | ".join(cells) + " |")
    if any(row.get("vs_torch") for b in by for row in b.values()):
        out += ["", "PyTorch's time / xent's time (PyTorch at the same thread count):", "", head, rule]
        for key in keys:
            cells = [cell(b.get(key), lambda w: f"{w['vs_torch']:.1f}x" if w.get("vs_torch") else "-")
                     for b in by]
            out.append(f"| {key[0]} {key[1]}x{key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(paths):
    if not paths:
        sys.exit(__doc__.strip())
    results = []
    for p in paths:
        with open(p) as f:
            results.append(json.load(f))
    print(tables(results))


if __name__ == "__main__":
    main(sys.argv[1:])
