#!/usr/bin/env bash
# Build xent with Cython's run-time checks on (XENT_CYTHON_CHECKED=1: setup.py
# turns boundscheck, wraparound and initializedcheck back on) in a private copy
# of the source tree, and run the test suite against that build.  Exits
# non-zero on a failing test, and on any exception a check raised where it
# could not propagate ("Exception ignored in ..." from a noexcept/nogil
# function: pytest turns those into failures here).
#
#   tools/checked_build.sh                  the suite without the `slow` tests
#   tools/checked_build.sh PYTEST_ARGS...   these pytest arguments instead
#
# Steps:
#   1. copy the files git knows of (tracked, plus untracked ones that
#      .gitignore does not exclude) to a temporary directory;
#   2. `XENT_CYTHON_CHECKED=1 python setup.py build_ext --inplace` there, and
#      check that the generated C really carries the bounds checks;
#   3. run pytest from the copy (PYTHONPATH points every subprocess at it too)
#      with unraisable-exception warnings as errors, and scan the output for
#      "Exception ignored" all the same.
#
# Environment: PYTHON (default python3; needs Cython, numpy and the test
# dependencies importable), KEEP=1 keeps the work directory (it is always kept
# on failure).
set -euo pipefail

TOOL=checked_build
# shellcheck source=tools/_common.sh
. "$(dirname "$0")/_common.sh"

# 2. the checked build
cd "$WORK"
rm -f xent/_kernels.c               # never reuse C generated without the checks
log "building with XENT_CYTHON_CHECKED=1"
XENT_CYTHON_CHECKED=1 "$PYTHON" setup.py build_ext --inplace >build.log 2>&1 || {
    tail -n 40 build.log >&2
    log "build failed (full log: $WORK/build.log)"
    exit 1
}
build_done=$(date +%s)
# Cython writes the directives it compiled with into the C file's header and
# raises "Out of bounds on buffer access" only where boundscheck is on
if ! grep -q "Out of bounds on buffer access" xent/_kernels.c; then
    log "xent/_kernels.c has no bounds checks: XENT_CYTHON_CHECKED=1 did not reach cythonize"
    exit 1
fi

export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1
where=$("$PYTHON" -c 'import xent, os; print(os.path.dirname(xent.__file__))')
if [ "$where" != "$WORK/xent" ]; then
    log "import xent resolved to $where, not to the checked copy $WORK/xent"
    exit 1
fi

# 3. the suite
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
log "running: pytest -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning $*"
rc=0
"$PYTHON" -m pytest -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning "$@" \
    2>&1 | tee "$WORK/pytest.log" || rc=$?
# tee hides pytest's status unless pipefail is on (it is: set -o pipefail)
end=$(date +%s)
if grep -n "Exception ignored" "$WORK/pytest.log" >&2; then
    log "exceptions were raised where they could not propagate (above)"
    [ "$rc" -ne 0 ] || rc=1
fi
log "build $((build_done - start)) s, tests $((end - build_done)) s, pytest exit status $rc"
if [ "$rc" -eq 0 ]; then
    status=0
    log "clean: all tests passed with Cython's checks on"
fi
exit "$rc"
