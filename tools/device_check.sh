#!/usr/bin/env bash
# One run on a many-core machine that has no access to a package registry:
# build in place, the thread-scaling sweep (tools/scaling.sh), the not-slow
# test suite on the best SIMD variant at the machine's thread count, and
# PyTorch at all cores.  Everything lands under $OUT (one tarball of the
# sweep, because the tool returns a limited number of files).
#
#   OUT=/path/to/results bash tools/device_check.sh   (with .v/ copied along, for the wheels below)
#
# Test dependencies: pure-Python wheels in .v/wh (an ignored folder), made here with
#   pip download --no-deps -d .v/wh pytest pluggy iniconfig packaging pytest-benchmark \
#       py-cpuinfo mpmath attrs sortedcontainers threadpoolctl
#   pip download --no-deps -d .v/wh --python-version 3.12 --only-binary=:all: \
#       --platform manylinux2014_x86_64 hypothesis         (that machine's Python)
# and unpacked onto PYTHONPATH there.  A run takes ~5 minutes on 16 cores
# (sweep 140 s, suite 80 s).
# env: SHAPES, THREADS (sweep), TEST_TIMEOUT, STEP_TIMEOUT, TEST_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
PY=${PY:-python3}
export CUDA_VISIBLE_DEVICES=""
el "machine"
lscpu | grep -E "^(Model name|Thread|Core|Socket|NUMA node\(s\)|L1d|L2|L3|CPU\(s\))"
grep -o -w -E "avx512f|avx2|fma" /proc/cpuinfo | sort | uniq -c
gcc --version | head -1
$PY -c "import sys, numpy, Cython; print(sys.version.split()[0], 'numpy', numpy.__version__, 'Cython', Cython.__version__)"
deps=$(mktemp -d)
if ls .v/wh/*.whl > /dev/null 2>&1; then
    $PY -c "import sys, zipfile, glob; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sorted(glob.glob('.v/wh/*.whl'))]" "$deps"
fi
export PYTHONPATH=$deps
HYP=""
if ! $PY -c "import hypothesis" 2> /dev/null; then
    echo "hypothesis does not import here: tests/test_properties.py left out"
    rm -rf "$deps"/hypothesis* "$deps"/_hypothesis*
    HYP="--ignore=tests/test_properties.py"
fi
el "build"
$PY setup.py -q build_ext --inplace > "$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 3; }
$PY -m xent info
el "sweep"
SHAPES=${SHAPES:-262144x10,268435x1000,8389x32000} BENCH_ARGS="--no-torch --repeats 5" \
    STEP_TIMEOUT=${STEP_TIMEOUT:-100} PYTHON=$PY \
    bash tools/scaling.sh "$OUT/scaling" ${THREADS:-1 2 4 8 16} > "$OUT/sweep.txt" 2>&1
echo "sweep rc=$?"
cat "$OUT/scaling/table.md"
tar -C "$OUT" -czf "$OUT/scaling.tgz" scaling && rm -rf "$OUT/scaling"
el "tests (not slow, best variant)"
timeout "${TEST_TIMEOUT:-160}" $PY -m pytest -q -m "not slow" -p no:cacheprovider --maxfail=20 \
    $HYP ${TEST_ARGS:-} > "$OUT/tests.txt" 2>&1
echo "pytest rc=$?"
tail -25 "$OUT/tests.txt"
el "PyTorch at all cores"
NT=$(nproc)
OMP_NUM_THREADS=$NT timeout 90 $PY -m xent bench --threads "$NT" \
    --shapes "${SHAPES:-262144x10,268435x1000,8389x32000}" --no-reference --repeats 5 \
    --json "$OUT/torch-$NT.json" > "$OUT/torch.txt" 2> "$OUT/torch.err"
echo "torch rc=$?"
cat "$OUT/torch.txt"
el "end"
