"""xent.dask on a LocalCluster of processes against one in-memory call.

Writes a float32 logits file (default 262144 x 1000: 1 GB) and its labels
into a directory, then times, alternately and `--repeats` times each:

* one in-memory call, ``xent.softmax_cross_entropy`` on a fresh memory map
  of the file with `--threads` threads;
* ``xent.dask.softmax_cross_entropy`` on ``xent.dask.from_npy`` of the same
  file, computed on a ``LocalCluster`` of `--workers` processes with one
  thread each (the workers read the file's pages themselves).

Both read the file through the page cache (the first, untimed round brings
it there).  Prints the medians, their ratio, and checks that both results
are the same bits.

    python benchmarks/dask_scaling.py --dir /tmp/xent-dask   # about a minute on 2 cores
"""

import argparse
import os
import time

import numpy as np


def write(directory, rows, classes):
    path = os.path.join(directory, f"logits-{rows}x{classes}.npy")
    ypath = os.path.join(directory, f"labels-{rows}.npy")
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        m = np.lib.format.open_memmap(path + ".part", mode="w+", dtype=np.float32,
                                      shape=(rows, classes))
        step = max(1, (64 << 20) // (4 * classes))
        for lo in range(0, rows, step):
            hi = min(lo + step, rows)
            m[lo:hi] = rng.standard_normal((hi - lo, classes), dtype=np.float32)
        m.flush()
        del m
        os.replace(path + ".part", path)
        np.save(ypath, rng.integers(0, classes, rows))
    return path, ypath


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp/xent-dask-bench")
    ap.add_argument("--shape", default="262144x1000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the in-memory call")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--chunk-rows", type=int, default=None)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import xent
    import xent.dask

    rows, classes = (int(v) for v in args.shape.split("x"))
    os.makedirs(args.dir, exist_ok=True)
    path, ypath = write(args.dir, rows, classes)
    labels = np.load(ypath)

    def in_memory():
        return xent.softmax_cross_entropy(np.load(path, mmap_mode="r"), labels,
                                          n_threads=args.threads)

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        # both read in the workers: the graph carries the paths
        X = xent.dask.from_npy(path, chunk_rows=args.chunk_rows)
        Y = xent.dask.from_npy(ypath, chunk_rows=args.chunk_rows or X.chunks[0][0])
        on_cluster = lambda: xent.dask.softmax_cross_entropy(X, Y).compute()   # noqa: E731
        first = in_memory()
        assert on_cluster() == first, "the cluster's result differs from the in-memory call"
        times = {"in-memory": [], "LocalCluster": []}
        for _ in range(args.repeats):
            for name, fn in (("in-memory", in_memory), ("LocalCluster", on_cluster)):
                t = time.perf_counter()
                assert fn() == first
                times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    gb = rows * classes * 4 / 1e9
    print(f"{args.shape} float32 ({gb:.2f} GB), {len(X.chunks[0])} chunks of up to "
          f"{max(X.chunks[0])} rows; {args.workers} worker processes x 1 thread; the in-memory "
          f"call on {args.threads} threads")
    for k, v in times.items():
        print(f"  {k:13s} median {med[k] * 1e3:8.1f} ms  (min {min(v) * 1e3:.1f}, "
              f"max {max(v) * 1e3:.1f}; {len(v)} runs)")
    print(f"  LocalCluster / in-memory: {med['LocalCluster'] / med['in-memory']:.2f}")


if __name__ == "__main__":
    main()
