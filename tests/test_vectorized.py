"""The hot loops are vectorised: compile xent's SIMD header the way
setup.py does and inspect the machine code of every ISA variant.

A regression here is silent otherwise -- the results stay right, only 10-20x
slower (it happened: a helper that gcc stopped inlining turned every BCE loop
scalar).  Checked: in the AVX2 and AVX-512 variants each hot function uses
256-/512-bit registers and calls nothing but libm's scalar exp (the per-block
merge of row_stats), row_stats' per-block helpers and the few-classes lane
helpers -- any other call means a per-element helper was not inlined.
"""

import ast
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADER = ROOT / "xent" / "csrc" / "_xent_simd.h"
HOT = ("row_stats", "rsum_chunk", "block_sum", "range_max", "exp_map", "exp_map_sub", "prob_row", "prob_grad", "index_small", "bce_chunk",
       "lanes_range", "lanes_wide", "lanes_expsum", "lanes_lse", "lanes_softmax", "softmax_small", "lanes_prob_col", "lanes_prob_top", "lanes_log_total", "lanes_prob_finish", "lanes_prob_grad", "prob_small", "lanes_finish", "lanes_grad",
       "kl_sums", "div_delta", "kl_grad", "js_sums", "js_grad")

# row_stats is a driver (its vector loops are block_sum and range_max,
# checked themselves): only its calls are checked; range_max is one short loop
MIN_WIDE = {"row_stats": 0, "range_max": 4}

pytestmark = pytest.mark.skipif(
    not (HEADER.exists() and (ROOT / "setup.py").exists() and shutil.which("gcc") and shutil.which("objdump")),
    reason="needs the source tree (setup.py, xent/csrc/_xent_simd.h), gcc and objdump")


def _setup_flags():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "UNIX_FLAGS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines UNIX_FLAGS")


def build_harness(directory, source):
    """Compile the C program `source`, which includes xent's SIMD header, the
    way setup.py compiles the kernels; the executable's path."""
    src = directory / "harness.c"
    src.write_text(source)
    exe = directory / "harness"
    subprocess.run(["gcc", *_setup_flags(), "-I", str(HEADER.parent), str(src), "-o", str(exe), "-lm"],
                   check=True, capture_output=True)
    return exe


@pytest.fixture(scope="module")
def disassembly(tmp_path_factory):
    d = tmp_path_factory.mktemp("vec")
    src = d / "probe.c"
    src.write_text('#include "_xent_simd.h"\n'
                   "const void* xent_probe[] = {&xent_ops_base, &xent_ops_avx2, &xent_ops_avx512};\n")
    obj = d / "probe.o"
    subprocess.run(["gcc", *_setup_flags(), "-I", str(HEADER.parent), "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    # -r: an external call's target is the relocation on the following line
    out = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    funcs, name = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <([\w.]+)>:$", line)
        if m:
            name = m.group(1)
            funcs[name] = []
        elif name and "R_X86_64" in line and funcs[name]:
            funcs[name][-1] += " <" + line.split()[-1].split("-")[0].split("+")[0] + ">"
        elif name and line.strip():
            funcs[name].append(line)
    return funcs


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("isa,reg", [("avx2", "ymm"), ("avx512", "zmm")])
@pytest.mark.parametrize("func", HOT)
def test_hot_function_is_vectorised(disassembly, func, dtype, isa, reg):
    name = f"{func}_{dtype}_{isa}"
    # gcc may clone a function with constants propagated: name.constprop.0
    body = next((b for n, b in disassembly.items() if n == name or n.startswith(name + ".")), None)
    if body is None and func.startswith("lanes_"):
        pytest.skip(f"{name} was inlined into index_small, which is checked")
    assert body, f"{name} not found in the probe object"
    wide = sum(reg in line for line in body)
    if func == "rsum_chunk":
        # the sweeps are rsum_chunk's own code or its rsum_ helpers' (gcc
        # inlines them into it for float and calls them for double)
        callees = {m.group(1) for line in body for m in [re.search(r"<(rsum_\w+)>$", line)] if m}
        wide += sum(reg in line for n in callees for line in disassembly.get(n, ()))
    assert wide >= MIN_WIDE.get(func, 8), f"{name} uses {reg} only {wide} times: its loops are not vectorised"
    calls = [line for line in body if "call" in line.split("\t")[-1]]
    # allowed: libm's scalar exp (row_stats' per-block merge), the
    # few-classes lane helpers (called once per column of 16 rows),
    # row_stats' block sum, max and merge (once per block of 4096 / 1024,
    # shared with row_blocks and row_merge), all themselves checked here, and
    # the reproducible sum's chunk (once per 256 losses), and the stack
    # protector's failure exit (distributions' gcc enables
    # -fstack-protector-strong by default; the call is off the hot path)
    bad = [c for c in calls
           if not re.search(r"<((exp|log1p)(@plt)?|lanes_[\w.]+|(block_sum|range_max|merge_block|rsum_\w+)_f(32|64)_[\w.]+"
                            r"|__stack_chk_fail(@plt)?)>$", c)]
    assert not bad, f"{name} calls helpers it should inline: {bad[:3]}"


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_block_merge_is_one_copy(disassembly, dtype, isa):
    """row_stats (a row on one thread) and row_merge (a row split into column
    chunks over threads) must round their block merges alike.  Under
    -ffp-contract=fast each inlined copy of the merge may fuse a * b + c
    differently (gcc 13 did: a float64 row of 140000 classes came out one ulp
    apart; tests/test_paths.py checks the split), so both call the one compiled
    merge_block."""
    merge = f"merge_block_{dtype}_{isa}"
    assert merge in disassembly, f"{merge} was inlined: each caller may round it differently"
    assert not [n for n in disassembly if n.startswith(merge + ".")], f"{merge} was cloned"
    for caller in ("row_stats", "row_merge"):
        name = f"{caller}_{dtype}_{isa}"
        body = next((b for n, b in disassembly.items() if n == name or n.startswith(name + ".")), None)
        assert body, f"{name} not found in the probe object"
        assert any(line.rstrip().endswith(f"<{merge}>") for line in body), f"{name} does not call {merge}"
