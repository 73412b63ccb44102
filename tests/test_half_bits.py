"""The 16-bit conversions of every SIMD variant against NumPy, bit for bit.

16-bit logits are widened to float32 a tile at a time and a gradient or
softmax is narrowed back (``from_half`` / ``to_half`` for float16,
``from_bf16`` / ``to_bf16`` for bfloat16, in xent/csrc).  This compiles
those primitives the way setup.py does, in a small harness that converts a
file of values with a chosen variant, and compares (bfloat16: with
``ml_dtypes``, where it is installed):

* widening, every one of the 65536 16-bit patterns, with
  ``astype(np.float32)`` (exact; NaN payloads aside);
* narrowing, every 16-bit value, every midpoint between neighbours (exact
  ties, rounded to even), the floats just above and below each midpoint,
  two million random float32 bit patterns and the edge cases (overflow to
  inf, the largest finite values, subnormals, signed zeros, NaNs whose
  payload would round to inf), with ``astype``.

The public path is checked too: the logsumexp of one-element float16 rows is
the widened value exactly (the row's max plus log1p(0)).
"""

import shutil
import subprocess

import numpy as np
import pytest

import xent
from test_vectorized import HEADER, ROOT, build_harness

F16 = np.float16

HARNESS = r"""
#include "_xent_simd.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* harness ISA widen|narrow|widen_bf16|narrow_bf16 N IN OUT: convert N values
 * of the file IN */
int main(int argc, char** argv)
{
    if (argc != 6 || xent_isa_select(argv[1]) != 1)
        return 2;
    long n = atol(argv[3]);
    int bf16 = strstr(argv[2], "_bf16") != NULL;
    int widen = strncmp(argv[2], "widen", 5) == 0;
    FILE* in = fopen(argv[4], "rb");
    FILE* out = fopen(argv[5], "wb");
    uint16_t* h = malloc(n * sizeof(uint16_t));
    float* f = malloc(n * sizeof(float));
    if (!in || !out || !h || !f)
        return 3;
    if (widen) {
        if (fread(h, sizeof(uint16_t), n, in) != (size_t)n)
            return 4;
        (bf16 ? xent_from_bf16_f32 : xent_from_half_f32)(h, f, n);
        fwrite(f, sizeof(float), n, out);
    } else {
        if (fread(f, sizeof(float), n, in) != (size_t)n)
            return 4;
        (bf16 ? xent_to_bf16_f32 : xent_to_half_f32)(f, h, n);
        fwrite(h, sizeof(uint16_t), n, out);
    }
    fclose(out);
    return 0;
}
"""

needs_source = pytest.mark.skipif(
    not (HEADER.exists() and (ROOT / "setup.py").exists() and shutil.which("gcc")),
    reason="needs the source tree (setup.py, xent/csrc/_xent_simd.h) and gcc")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return build_harness(tmp_path_factory.mktemp("half"), HARNESS)


def _convert(harness, tmp_path, isa, direction, values):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    values.tofile(src)
    subprocess.run([str(harness), isa, direction, str(values.size), str(src), str(dst)], check=True)
    return np.fromfile(dst, dtype=np.float32 if direction.startswith("widen") else np.uint16)


def _same(a, b):
    """Bitwise equal, NaN where NaN (any payload)."""
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb)
    bits = np.uint16 if a.dtype.itemsize == 2 else np.uint32
    assert np.array_equal(a.view(bits)[~na], b.view(bits)[~nb])


def _variants():
    return [("base" if v == "baseline" else v) for v in xent.config()["simd_variants_supported"]]


@needs_source
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_widening_is_exact_for_every_float16(harness, tmp_path, isa):
    if isa not in _variants():
        pytest.skip(f"this CPU (or build) has no {isa} variant")
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    _same(_convert(harness, tmp_path, isa, "widen", h), h.view(F16).astype(np.float32))


@needs_source
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_narrowing_rounds_like_numpy(harness, tmp_path, rng, isa):
    if isa not in _variants():
        pytest.skip(f"this CPU (or build) has no {isa} variant")
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16).astype(np.float32)
    cases = _narrowing_cases(rng, every)
    got = _convert(harness, tmp_path, isa, "narrow", cases).view(F16)
    with np.errstate(all="ignore"):
        _same(got, cases.astype(F16))


def _narrowing_cases(rng, every):
    """The values of every 16-bit pattern (`every`, as float32), the midpoints
    between neighbours (exact ties) and their float32 neighbours, 2M random
    float32 patterns and the edge cases."""
    fin = np.unique(every[np.isfinite(every)])
    mid = ((fin[:-1].astype(np.float64) + fin[1:]) / 2).astype(np.float32)
    return np.concatenate([
        fin, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
        rng.integers(0, 1 << 32, 2_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.float32([np.inf, -np.inf, np.nan, -np.nan, 65504, 65519.996, 65520, 65536, 1e30,
                    3.3895314e38, 3.4028235e38, 2.0**-25, 2.0**-24, 3 * 2.0**-26, 2.0**-14,
                    0.0, -0.0, 1e-30, 1e-45]),
        # NaNs whose payload would round into the exponent (inf) if rounded as numbers
        np.uint32([0x7f80ffff, 0xff80ffff, 0x7f800001, 0x7fffffff]).view(np.float32),
    ])


@needs_source
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_bfloat16_widening_and_narrowing_match_ml_dtypes(harness, tmp_path, rng, isa):
    bf16 = pytest.importorskip("ml_dtypes", reason="bfloat16 is ml_dtypes' dtype").bfloat16
    if isa not in _variants():
        pytest.skip(f"this CPU (or build) has no {isa} variant")
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    every = h.view(bf16).astype(np.float32)
    _same(_convert(harness, tmp_path, isa, "widen_bf16", h), every)
    cases = _narrowing_cases(rng, every)
    got = _convert(harness, tmp_path, isa, "narrow_bf16", cases).view(bf16)
    with np.errstate(all="ignore"):
        _same(got, cases.astype(bf16))


def test_public_widening_is_exact():
    """logsumexp of each float16 as a one-element row: the widened value v,
    as v + log1p(0) (so -0 gives +0)."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)
    with np.errstate(invalid="ignore"):          # signalling NaNs
        expected = h.astype(np.float32) + np.float32(0.0)
    _same(xent.logsumexp(h.reshape(-1, 1)), expected)
