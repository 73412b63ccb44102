#!/usr/bin/env bash
# Build xent with AddressSanitizer and UndefinedBehaviorSanitizer in a private
# copy of the source tree and run the test suite against that build.  Exits
# non-zero on a failing test or on any sanitizer report (from the test
# process, or from a subprocess whose output reaches the terminal; a
# subprocess a sanitizer stops also exits non-zero, which fails its test).
# Takes about 3-5 minutes on 2 cores (build 1.5 min, suite 1.5-3 min).
#
#   tools/sanitize.sh                  the suite without the `slow` tests
#   tools/sanitize.sh PYTEST_ARGS...   these pytest arguments instead
#                                      (e.g. `-m ""` for everything, or a file)
#
# Steps:
#   1. copy the files git knows of (tracked, plus untracked ones that
#      .gitignore does not exclude) to a temporary directory, so that no build
#      product of the working tree leaks in, and nothing there is touched;
#   2. `python setup.py build_ext --inplace` there with
#      CFLAGS/LDFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
#      (and the same flags in CC, which setup.py's OpenMP probe links with;
#      setup.py appends its own -O3 and OpenMP flags);
#   3. check that `import xent` resolves to that copy, that the extension
#      really links the ASan runtime, and that it kept OpenMP;
#   4. run pytest from the copy with the ASan runtime preloaded (Python itself
#      is not instrumented), ASAN_OPTIONS=detect_leaks=0 (CPython keeps its
#      interned objects alive on purpose: leak reports would be noise) and
#      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1.  pytest runs with
#      --capture=sys: a sanitizer writes its report to file descriptor 2 and
#      ends the process at once, and pytest's default fd-level capture would
#      swallow the report with the test's output (the run would just stop).
#      The output is also scanned for reports afterwards, so that one printed
#      by a subprocess whose failure a test tolerates still fails the script.
#
# The `slow` tests are left out by default: tests/test_huge.py needs ~20 GB,
# and ASan's shadow memory and redzones add to that.
#
# Environment: PYTHON (default python3; needs Cython, numpy and the test
# dependencies importable), CC (default gcc), ASAN_OPTIONS / UBSAN_OPTIONS
# (appended to the script's own, so they override them), KEEP=1 keeps the work
# directory (it is always kept on failure).
set -euo pipefail

CC=${CC:-gcc}
TOOL=sanitize
# shellcheck source=tools/_common.sh
. "$(dirname "$0")/_common.sh"

# 2. the instrumented build
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
cd "$WORK"
log "building with $SAN"
# The flags go into CC as well as CFLAGS/LDFLAGS: distutils adds LDFLAGS to
# the shared-library link only, and setup.py's OpenMP probe links a test
# program with CC alone; without the ASan runtime there, the probe fails and
# the build silently turns serial.
CC="$CC $SAN" CFLAGS="$SAN" LDFLAGS="$SAN" "$PYTHON" setup.py build_ext --inplace >build.log 2>&1 || {
    tail -n 40 build.log >&2
    log "build failed (full log: $WORK/build.log)"
    exit 1
}
build_done=$(date +%s)

# 3. the build in use is this one, and it is instrumented
ASAN_LIB=$("$CC" -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || { log "no libasan.so for $CC ($ASAN_LIB)"; exit 1; }
so=$(ls "$WORK"/xent/_kernels*.so)
if ! ldd "$so" | grep libasan >/dev/null; then    # (grep -q would SIGPIPE ldd under pipefail)
    log "$so does not link libasan: the sanitizer flags did not reach the build"
    exit 1
fi

# the ASan runtime first in the process (it must intercept malloc before
# anything allocates; the UBSan runtime comes in as a dependency of the
# extension); PYTHONPATH makes every subprocess import this copy too,
# whatever its working directory
# libstdc++ too: ASan intercepts __cxa_throw and must find the real one when a
# C++ extension that is loaded later (matplotlib's, keras's dependencies)
# throws; without it ASan aborts with "real___cxa_throw != 0"
STDCXX_LIB=$("$CC" -print-file-name=libstdc++.so)
export LD_PRELOAD="$ASAN_LIB${STDCXX_LIB:+ $STDCXX_LIB}"
# (options already in the environment come last, so they win: e.g.
# UBSAN_OPTIONS=halt_on_error=0 lists every undefined-behaviour site in one run)
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
# on a sanitizer abort, Python prints where it was (which test, which call)
export PYTHONFAULTHANDLER=1

where=$("$PYTHON" -c 'import xent, os; print(os.path.dirname(xent.__file__))')
if [ "$where" != "$WORK/xent" ]; then
    log "import xent resolved to $where, not to the instrumented copy $WORK/xent"
    exit 1
fi
# the instrumented build must run the same code paths as the normal one
if [ "${XENT_OPENMP:-1}" != 0 ] && ! "$PYTHON" -c 'import sys, xent; sys.exit(not xent.config()["openmp"])'; then
    log "the instrumented build has no OpenMP (see $WORK/build.log): its parallel paths would go unchecked"
    exit 1
fi

# 4. the suite
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
log "running: pytest -p no:cacheprovider --capture=sys $*"
rc=0
"$PYTHON" -m pytest -p no:cacheprovider --capture=sys "$@" 2>&1 | tee "$WORK/pytest.log" || rc=$?
end=$(date +%s)

if grep -nE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" \
        "$WORK/pytest.log" >&2; then
    log "sanitizer reports found (above; full output in $WORK/pytest.log)"
    [ "$rc" -ne 0 ] || rc=1
fi
log "build $((build_done - start)) s, tests $((end - build_done)) s, pytest exit status $rc"
if [ "$rc" -eq 0 ]; then
    status=0
    log "clean: no sanitizer report, all tests passed"
fi
exit "$rc"
