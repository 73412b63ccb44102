"""Two builds of xent timed side by side: ``python -m xent bench``, alternated.

    python tools/ab_bench.py OLD_CHECKOUT NEW_CHECKOUT [--rounds N] [-- BENCH OPTIONS]

Both checkouts must be built in place (``python setup.py build_ext
--inplace``).  Each round runs the bench once per checkout
(``PYTHONPATH=<checkout> python -m xent bench --no-torch --no-reference
--json ...`` plus BENCH OPTIONS, default ``--quick``), the order alternating
from round to round, so that a burst of load from another process or a
change of clock hits both.  The table gives, per case and shape, the median
over the rounds of each run's median time, and new / old: above 1 the new
build is slower.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def _bench(checkout, options, path):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    cmd = [sys.executable, "-m", "xent", "bench", "--no-torch", "--no-reference",
           "--json", path] + options
    subprocess.run(cmd, env=env, cwd=os.path.abspath(checkout), check=True,
                   stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)["results"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("bench", nargs="*", help="options of python -m xent bench (after --)")
    args = p.parse_args(argv)
    options = args.bench or ["--quick"]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [("old", args.old), ("new", args.new)]
            for name, checkout in order if r % 2 == 0 else order[::-1]:
                print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                for row in _bench(checkout, options, os.path.join(tmp, f"{name}.json")):
                    key = (row["case"], f"{row['rows']}x{row['classes']}")
                    times.setdefault(key, {}).setdefault(name, []).append(row["xent_s"])
    print("| case | shape | old ms | new ms | new / old |")
    print("| --- | --- | ---: | ---: | ---: |")
    worst = 0.0
    for (case, shape), t in times.items():
        old, new = statistics.median(t["old"]), statistics.median(t["new"])
        worst = max(worst, new / old)
        print(f"| {case} | {shape} | {old * 1e3:.3f} | {new * 1e3:.3f} | {new / old:.3f} |")
    print(f"\nslowest new / old: {worst:.3f} ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
