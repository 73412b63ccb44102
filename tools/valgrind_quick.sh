#!/usr/bin/env bash
# Valgrind memcheck over a quick workload: a small Python script that calls
# every public kernel of xent on small arrays (N = 0, C = 1, ragged sizes, a
# row longer than the kernels' 2048-value row block, ignored rows, -inf masks,
# NaN rows, strided and float16 inputs, in-place gradients and outputs, one and
# two OpenMP threads, rows split into column chunks, the Keras functions, and a
# bad label).  Exits non-zero on
# any invalid read, write or free anywhere in the process, and on any use of
# uninitialised memory inside xent's extension.
#
#   tools/valgrind_quick.sh              build a copy of the tree (with -g) and
#                                        check it, once per SIMD variant that
#                                        valgrind's virtual CPU offers
#   tools/valgrind_quick.sh --no-build   check the xent that `python -c
#                                        "import xent"` finds (e.g. an in-place
#                                        build of the working tree)
#
# PYTHONMALLOC=malloc makes every Python allocation a malloc that valgrind
# tracks (CPython's small-object allocator would hide overruns and produce
# noise); numpy's data buffers are malloc'ed anyway.  Valgrind has no AVX-512:
# its virtual CPU reports AVX2 at most, so xent's run-time dispatch picks the
# AVX2 variant, and XENT_FORCE_ISA=baseline covers the portable one.
#
# Environment: PYTHON (default python3), VALGRIND (default valgrind), KEEP=1
# keeps the work directory (it is always kept on failure).
set -euo pipefail

PYTHON=${PYTHON:-python3}
# the interpreter itself, not a wrapper (pyenv's shims are shell scripts)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
VALGRIND=${VALGRIND:-valgrind}
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xent-valgrind.XXXXXX")
status=1
cleanup() {
    if [ "$status" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "valgrind_quick: work directory kept: $WORK" >&2
    fi
}
trap cleanup EXIT
log() { echo "valgrind_quick: $*" >&2; }
command -v "$VALGRIND" >/dev/null || { log "valgrind not found (apt-get install valgrind)"; exit 1; }
start=$(date +%s)

if [ "${1:-}" = "--no-build" ]; then
    SRC=""
else
    # the tree as git sees it, built with debug info (setup.py adds -O3)
    SRC="$WORK/src"
    mkdir -p "$SRC"
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | (cd "$REPO" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$SRC" -xf -
    log "building a copy in $SRC"
    (cd "$SRC" && CFLAGS="-g" "$PYTHON" setup.py build_ext --inplace >build.log 2>&1) || {
        tail -n 40 "$SRC/build.log" >&2
        log "build failed"
        exit 1
    }
    export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
fi
build_done=$(date +%s)

cat >"$WORK/workload.py" <<'EOF'
"""Every public kernel of xent on small arrays (run under valgrind)."""
import os
import sys

import numpy as np

import xent
from xent import keras as K

want = os.environ.get("XENT_VALGRIND_EXPECT_DIR")
if want and os.path.dirname(xent.__file__) != want:
    sys.exit(f"xent imported from {xent.__file__}, not from {want}")
print("xent from", xent.__file__, "| SIMD variant:", xent.config().get("simd_variant"), flush=True)

calls = 0


def call(f, *args, **kw):
    global calls
    calls += 1
    return f(*args, **kw)


SHAPES = [(0, 3), (1, 1), (5, 7), (33, 130), (3, 2100), (17, 1)]
for dtype in (np.float32, np.float64):
    rng = np.random.default_rng(0)
    for n, c in SHAPES:
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        y = rng.integers(0, c, size=n)
        if n > 2:
            y[::3] = -100                              # ignored rows
            x[1, :] = np.nan                           # a NaN row
            if c > 1:
                x[2, (y[2] + 1) % c] = -np.inf         # a mask
        p = rng.random((n, c)).astype(dtype)
        w = rng.uniform(0.5, 2, size=c).astype(dtype)
        sw = rng.uniform(0, 2, size=n).astype(dtype)
        t01 = (p > 0.5).astype(dtype)
        for nt in (1, 2):
            for red in ("none", "sum", "mean"):
                kw = dict(reduction=red, n_threads=nt)
                call(xent.softmax_cross_entropy, x, y, ignore_index=-100, weight=w,
                     sample_weight=sw, label_smoothing=0.1, **kw)
                call(xent.softmax_cross_entropy_with_grad, x, y, ignore_index=-100, **kw)
                call(xent.softmax_cross_entropy_with_grad, x, y, ignore_index=-100, weight=w,
                     label_smoothing=0.2, **kw)
                call(xent.softmax_cross_entropy, x, p, weight=w, **kw)
                call(xent.softmax_cross_entropy_with_grad, x, p, sample_weight=sw,
                     label_smoothing=0.1, **kw)
                call(xent.sigmoid_binary_cross_entropy, x, p, **kw)
                call(xent.sigmoid_binary_cross_entropy_with_grad, x, t01, weight=w,
                     pos_weight=w, label_smoothing=0.1, **kw)
                call(xent.sigmoid_binary_cross_entropy_with_grad, x, p, weight=sw[:, None], **kw)
            # in place, into grad_out, strided and float16 inputs
            xc = x.copy()
            call(xent.softmax_cross_entropy_with_grad, xc, y, ignore_index=-100, grad_out=xc,
                 n_threads=nt)
            xc = x.copy()
            call(xent.softmax_cross_entropy_with_grad, xc, p, grad_out=xc, n_threads=nt)
            xc = x.copy()
            call(xent.sigmoid_binary_cross_entropy_with_grad, xc, p, grad_out=xc, n_threads=nt)
            call(xent.softmax_cross_entropy_with_grad, x, y, ignore_index=-100,
                 grad_out=np.empty_like(x), n_threads=nt)
            call(xent.softmax_cross_entropy_with_grad, x, y, ignore_index=-100,
                 grad_out=np.empty((n, 2 * c), dtype)[:, ::2], n_threads=nt)
            call(xent.softmax_cross_entropy_with_grad, np.asfortranarray(x)[::-1],
                 y[::-1], ignore_index=-100, n_threads=nt)
            call(xent.softmax_cross_entropy_with_grad, x.astype(np.float16), y,
                 ignore_index=-100, n_threads=nt)
        for f in (xent.logsumexp, xent.log_softmax, xent.softmax):
            call(f, x)
            if n:                                      # axis 0 has length n
                call(f, x, axis=0)
        xc = x.copy()
        call(xent.softmax, xc, out=xc)
        xc = x.copy()
        call(xent.log_softmax, xc, out=xc)
        # class axis in the middle of a 3-d array
        x3 = np.array(np.broadcast_to(x[:, :, None], (n, c, 2)))
        y3 = np.stack([np.maximum(y, 0)] * 2, axis=1)
        call(xent.softmax_cross_entropy_with_grad, x3, y3, axis=1)
        # the Keras functions
        call(K.categorical_crossentropy, p, x, from_logits=True, label_smoothing=0.1)
        call(K.categorical_crossentropy, p, p)
        call(K.sparse_categorical_crossentropy, y, x, from_logits=True, ignore_class=-100)
        call(K.sparse_categorical_crossentropy, np.maximum(y, 0), p)
        call(K.binary_crossentropy, t01, x, from_logits=True)
        call(K.binary_crossentropy, t01, p, label_smoothing=0.2)
        # a bad label: the check stops early and raises before any kernel runs
        if n:
            bad = y.copy()
            bad[-1] = c + 5
            try:
                call(xent.softmax_cross_entropy, x, bad)
            except xent.LabelError:
                pass
            else:
                sys.exit("no LabelError for a bad label")
# rows split into column chunks (fewer rows than threads, C >= 65536): one
# two-pass row and one over 1 MiB, a partial last chunk, in place
from xent import _dispatch
for dtype, c in ((np.float32, 70001), (np.float64, 140001)):
    x = np.random.default_rng(1).standard_normal((2, c)).astype(dtype)
    x[1, ::5] = -np.inf
    y = np.array([3, c - 1])
    assert _dispatch.path("index", (2, c), dtype, 3)["split"]
    call(xent.softmax_cross_entropy, x, y, reduction="none", n_threads=3)
    call(xent.softmax_cross_entropy_with_grad, x, y, ignore_index=3, label_smoothing=0.1,
         n_threads=3)
    xc = x.copy()
    call(xent.softmax_cross_entropy_with_grad, xc, y, grad_out=xc, n_threads=3)
    for mode in (0, 1, 2):
        xc = x.copy()
        run = _dispatch.Call("softmax", 2, c, dtype, 3, x=xc, mode=mode)
        if mode == 0:
            run.loss = np.empty(2, dtype)
        else:
            run.out = xc
        call(_dispatch.run, run)
print(f"workload done: {calls} calls", flush=True)
EOF

# classify valgrind's error blocks: invalid accesses anywhere fail; use of
# uninitialised values fails when xent's extension is on the stack
cat >"$WORK/scan.py" <<'EOF'
import re
import sys

text = open(sys.argv[1]).read()
blocks, cur = [], []
for line in text.splitlines():
    body = re.sub(r"^==\d+== ?", "", line)
    if not body.strip():
        if cur:
            blocks.append(cur)
        cur = []
    else:
        cur.append(body)
if cur:
    blocks.append(cur)
INVALID = ("Invalid read", "Invalid write", "Invalid free", "Mismatched free",
           "Source and destination overlap", "points to unaddressable", "Jump to the invalid")
bad = []
for b in blocks:
    head = b[0]
    stack = "\n".join(b)
    if any(k in head for k in INVALID):
        bad.append(b)
    elif "uninitialised" in head and re.search(r"_kernels|xent", stack):
        bad.append(b)
for b in bad:
    print("\n".join(b) + "\n", file=sys.stderr)
summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
print(f"valgrind: {len(bad)} error(s) that count; ERROR SUMMARY says {summary[-1] if summary else '?'}")
sys.exit(1 if bad else 0)
EOF

# glibc's dynamic loader reads whole words past a string's end in strncmp
# (harmless, inside the allocation's granule) while expanding an RPATH; this
# glibc is newer than valgrind's default suppressions know
cat >"$WORK/glibc.supp" <<'EOF'
{
   glibc-ld.so-strncmp-in-is_dst
   Memcheck:Addr8
   fun:strncmp
   fun:is_dst
}
EOF

rc=0
for isa in default baseline; do
    vlog="$WORK/valgrind-$isa.log"
    envs=(PYTHONMALLOC=malloc OMP_NUM_THREADS=2)
    [ "$isa" = default ] || envs+=(XENT_FORCE_ISA="$isa")
    [ -z "$SRC" ] || envs+=(XENT_VALGRIND_EXPECT_DIR="$SRC/xent")
    log "memcheck, SIMD variant: $isa"
    t0=$(date +%s)
    env "${envs[@]}" "$VALGRIND" --tool=memcheck --leak-check=no --track-origins=yes \
        --error-limit=no --num-callers=30 --suppressions="$WORK/glibc.supp" \
        --log-file="$vlog" \
        "$PYTHON" "$WORK/workload.py" || { log "the workload failed under valgrind ($isa)"; rc=1; }
    "$PYTHON" "$WORK/scan.py" "$vlog" || { log "memcheck errors ($isa): see above / $vlog"; rc=1; }
    log "$isa: $(( $(date +%s) - t0 )) s"
done
end=$(date +%s)
log "build $((build_done - start)) s, valgrind runs $((end - build_done)) s"
if [ "$rc" -eq 0 ]; then
    status=0
    log "clean: no invalid read/write/free, no uninitialised use in xent"
fi
exit "$rc"
