"""Two builds of xent timed call against call: a worker process per build, alternated.

    python tools/ab_pingpong.py OLD_CHECKOUT NEW_CHECKOUT [--reps N] [--threads N]
                                [--cases ce_index,bce,...] [--shapes 262144x10,16384x1000]

Both checkouts must be built in place (``python setup.py build_ext
--inplace``).  Each checkout gets one worker process that builds the bench's
inputs for a case (``xent._bench.make_inputs``, the cases of
``python -m xent bench``) and times the call on request.  For every case and
shape the two workers are asked in turn, ``--reps`` times, each for the
minimum of k calls (k: about 20 ms of calls), the order alternating; the
ratio new / old is taken within each pair, so that a change of clock or a
burst of load from another process hits both sides of it.  Prints, per case,
the minimum times and the median and quartiles of the pair ratios (above 1:
the new build is slower).  ``tools/ab_bench.py`` alternates whole bench runs
instead; on a shared machine its ratios spread several times wider.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

SUMMED = ("ce_index,ce_prob,bce,ce_index+grad,ce_prob+grad,bce+grad,ce_temperature,ce_z_loss,"
          "ce_softcap,ce_temperature+grad,ce_z_loss+grad,ce_softcap+grad,softmax_focal,"
          "softmax_focal+grad,sigmoid_focal,sigmoid_focal+grad,kl,kl+grad,kl_reverse,js,js+grad")


def _worker(n_threads):
    import numpy as np
    from xent import _bench

    cases = {c.name: c for c in _bench.CASES}
    current = (None, None)
    for line in sys.stdin:
        spec, k = line.split()
        if current[0] != spec:
            name, shape = spec.split("@")
            case = cases[name]
            x, t = _bench.make_inputs(case, *(int(s) for s in shape.split("x")))
            out = np.empty_like(x) if case.grad or case.target == "none" else None
            fn = _bench._xent_call(case, x, t, n_threads, out)
            fn()
            current = (spec, fn)
        fn = current[1]
        best = float("inf")
        for _ in range(int(k)):
            s = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - s)
        print(best, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", nargs="?")
    p.add_argument("new", nargs="?")
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=SUMMED, help="comma-separated bench case names "
                   "(default: every case with a reduction)")
    p.add_argument("--shapes", default="262144x10,16384x1000")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a.threads)
    if a.new is None:
        p.error("give the two checkouts, OLD and NEW")

    def start(path):
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                                 "--threads", str(a.threads)],
                                env=dict(os.environ, PYTHONPATH=os.path.abspath(path)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=os.path.abspath(path))

    workers = {"old": start(a.old), "new": start(a.new)}

    def ask(side, spec, k):
        w = workers[side]
        w.stdin.write(f"{spec} {k}\n")
        w.stdin.flush()
        return float(w.stdout.readline())

    print("| case | shape | old ms | new ms | new / old, median of pairs | quartiles |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for shape in a.shapes.split(","):
        for name in a.cases.split(","):
            spec = f"{name}@{shape}"
            k = max(3, min(50, int(0.02 / ask("old", spec, 1))))
            ask("new", spec, 1)
            pairs = []
            for r in range(a.reps):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                pairs.append({side: ask(side, spec, k) for side in order})
            ratios = [q["new"] / q["old"] for q in pairs]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            old = min(q["old"] for q in pairs)
            new = min(q["new"] for q in pairs)
            print(f"| {name} | {shape} | {old * 1e3:.3f} | {new * 1e3:.3f} | "
                  f"{statistics.median(ratios):.3f} | {q1:.3f}-{q3:.3f} |", flush=True)
    for w in workers.values():
        w.stdin.close()
        w.wait()


if __name__ == "__main__":
    sys.exit(main())
