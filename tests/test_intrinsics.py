"""The AVX-512 and AVX2 float row statistics written with intrinsics
(block_lanes in xent/csrc/_xent_row_stats.h, lanes_stats_x and the gathers
of lanes_load in xent/csrc/_xent_small.h) are bitwise the portable C loops
they replace.

tools/row_stats_bench.c is built twice with setup.py's flags: as shipped, and
with -DXENT_NO_INTRINSICS, which makes the AVX-512 and AVX2 variants compile
block_sum's and lanes_stats' C loops instead.  Its `bits` mode prints every row's (max, sum, ties) as hex
floats, computed both ways the kernels do (stats_rows, row_stats), for random
rows and rows with -inf masks, a NaN, +inf, ties and terms far below the max;
for few classes it also prints the softmax and the class-index and
probability-target gradients,
which the AVX2 variant makes from lanes_stats_x's exponentials; the two
builds must print the same text.  The suite's other tests hold the
statistics to the mpmath oracle on every variant; this one pins the bits.
"""

import pathlib
import shutil
import subprocess

import pytest

from test_vectorized import _setup_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "row_stats_bench.c"

pytestmark = pytest.mark.skipif(
    not (TOOL.exists() and (ROOT / "setup.py").exists() and shutil.which("gcc")),
    reason="needs the source tree (tools/row_stats_bench.c, setup.py) and gcc")

# few classes (rows as lanes, lanes_stats_x: 40 rows give a block with a wide
# row, one with a NaN and ties, and one with -inf entries, tool's rows 16-35;
# 61-64 rows add plain blocks, whose softmax and gradients AVX2 takes from
# lanes_stats_x's exponentials),
# one-block rows (C <= 4096) with and without a padded tail, two-pass rows,
# and rows over 1 MiB whose blocks merge online
SHAPES = [(40, 1), (38, 5), (8, 10), (40, 10), (40, 17), (40, 32), (64, 3), (64, 10), (61, 32),
          (8, 63), (8, 64), (8, 100), (16, 1000), (8, 4096), (8, 5000),
          (8, 40000), (7, 300000)]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    d = tmp_path_factory.mktemp("intrinsics")
    out = {}
    for name, extra in (("intrinsics", []), ("c_loop", ["-DXENT_NO_INTRINSICS"])):
        exe = d / name
        subprocess.run(["gcc", *_setup_flags(), *extra, "-I", str(ROOT / "xent" / "csrc"), str(TOOL),
                        "-o", str(exe), "-lm"], check=True, capture_output=True)
        out[name] = exe
    return out


def _bits(exe, rows, cols, isa):
    res = subprocess.run([str(exe), isa, str(cols), str(rows), "bits"],
                         capture_output=True, text=True)
    if res.returncode == 2:
        pytest.skip(f"this CPU has no {isa} (or the build has no x86 variants)")
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_block_lanes_bitwise_the_c_loop(builds, rows, cols, isa):
    a = _bits(builds["intrinsics"], rows, cols, isa)
    b = _bits(builds["c_loop"], rows, cols, isa)
    # few classes: + the softmax and the two CE gradients, a line per row
    assert len(a.splitlines()) == (5 if cols <= 32 else 2) * rows
    assert a == b
