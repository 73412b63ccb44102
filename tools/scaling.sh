#!/usr/bin/env bash
# Thread-scaling sweep of `python -m xent bench` (the scaling table of
# benchmarks/RESULTS.md).  One process per thread count, so
# that each measures the memory bandwidth at its own thread count and OpenMP's
# default (used by logsumexp and softmax, which take no n_threads) is that count.
# The NumPy reference is left out: it runs on one thread whatever the count.
#
# usage: tools/scaling.sh OUTDIR [THREADS ...]      (default: 1 2 4 8 16)
# env:   SHAPES        bench --shapes (default: C = 10, and 1 GB at C = 1000 and 32000)
#        BENCH_ARGS    more bench options (e.g. --no-torch, --repeats 3)
#        STEP_TIMEOUT  seconds allowed per thread count (default 900)
# Writes OUTDIR/bench-T.json and .txt per count and OUTDIR/table.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/scaling.sh OUTDIR [THREADS ...]}
shift
threads=${*:-1 2 4 8 16}
shapes=${SHAPES:-262144x10,268435x1000,8389x32000}
PYTHON=${PYTHON:-python}
mkdir -p "$out"
failed=0
for t in $threads; do
    echo "scaling: $t thread(s), shapes $shapes"
    # BENCH_ARGS is split into words on purpose
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$t timeout "${STEP_TIMEOUT:-900}" "$PYTHON" -m xent bench --threads "$t" \
        --shapes "$shapes" --no-reference ${BENCH_ARGS:-} --json "$out/bench-$t.json" \
        > "$out/bench-$t.txt" 2> "$out/bench-$t.err"
    rc=$?
    cat "$out/bench-$t.txt"
    if [ $rc -ne 0 ]; then
        echo "scaling: $t thread(s) failed (rc $rc); last lines of its stderr:"
        tail -5 "$out/bench-$t.err"
        failed=1
    fi
done
"$PYTHON" tools/scaling_table.py "$out"/bench-*.json | tee "$out/table.md"
exit $failed
