"""float16 logits (issue 3): widened a tile at a time, float32 math, float16 out.

The float16 kernels must give exactly what the float32 kernels give on
``x.astype(float32)``: the same float32 losses, and gradients / softmax
outputs that are those float32 results rounded to float16 as numpy rounds
them.  The oracle is numpy's own float16 conversion (bitwise, every float16
and every rounding case) and the float32 path, itself tested against the
reference and mpmath elsewhere.  The last test checks the point of the
design: no float32 copy of the whole array is made.
"""

import tracemalloc

import numpy as np
import pytest

import xent
from xent import _kernels

# counts above this machine's CPUs (3, 4, 8) reach the kernels: see conftest.oversubscribe
pytestmark = pytest.mark.usefixtures("oversubscribe")

F16 = np.float16


def same(a, b):
    """Bitwise equal, NaN matching NaN (payloads aside)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb)
    bits = a.view(np.uint16 if a.dtype == F16 else np.uint32 if a.dtype == np.float32 else np.uint64)
    ref = b.view(bits.dtype)
    assert np.array_equal(bits[~na], ref[~na])


def test_widening_is_exact_for_every_float16():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = np.empty(h.size, np.float32)
    _kernels.from_half(h, got)
    same(got, h.view(F16).astype(np.float32))


def test_narrowing_rounds_like_numpy():
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16).astype(np.float32)
    fin = np.unique(every[np.isfinite(every)])
    mid = ((fin[:-1].astype(np.float64) + fin[1:]) / 2).astype(np.float32)   # exact ties
    rng = np.random.default_rng(0)
    cases = np.concatenate([
        fin, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
        rng.integers(0, 1 << 32, 2_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.float32([np.inf, -np.inf, np.nan, 65504, 65519.996, 65520, 65536, 1e30,
                    2.0**-25, 2.0**-24, 3 * 2.0**-26, 2.0**-14, 0.0, -0.0, 1e-30]),
    ])
    got = np.empty(cases.size, np.uint16)
    _kernels.to_half(cases, got)
    with np.errstate(all="ignore"):
        same(got.view(F16), cases.astype(F16))


def _logits(rng, shape):
    x = (rng.standard_normal(shape) * 4).astype(F16)
    flat = x.reshape(-1)
    flat[:: 97] = -np.inf                      # masks
    flat[5 :: 1013] = 65504                    # float16's largest
    return x


SHAPES = [(3000, 10), (70, 1000), (3, 40000), (50, 33), (2000, 1), (9000, 4)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_softmax_ce_matches_float32(shape, n_threads):
    rng = np.random.default_rng(1)
    x = _logits(rng, shape)
    n, c = shape
    y = rng.integers(0, c, n)
    p = rng.random(shape).astype(F16)
    x32 = x.astype(np.float32)
    for target, opts in [(y, {}), (y, {"label_smoothing": 0.1, "weight": rng.random(c)}),
                         (y, {"ignore_index": 0, "sample_weight": rng.random(n)}),
                         (p, {}), (p, {"label_smoothing": 0.2})]:
        for red in ("none", "mean"):
            l16, g16 = xent.softmax_cross_entropy_with_grad(x, target, reduction=red,
                                                            n_threads=n_threads, **opts)
            l32, g32 = xent.softmax_cross_entropy_with_grad(x32, target, reduction=red,
                                                            n_threads=n_threads, **opts)
            assert g16.dtype == F16
            same(np.float64(l16), np.float64(l32)) if red == "mean" else same(l16, l32)
            same(g16, g32.astype(F16))
            same(np.float64(xent.softmax_cross_entropy(x, target, reduction=red, n_threads=n_threads, **opts)),
                 np.float64(xent.softmax_cross_entropy(x32, target, reduction=red, n_threads=n_threads, **opts)))


@pytest.mark.parametrize("shape", [(3000, 10), (7, 20000), (1, 1), (33333,)], ids=str)
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_bce_matches_float32(shape, n_threads):
    rng = np.random.default_rng(2)
    x = _logits(rng, shape)
    x.reshape(-1)[7::501] = np.inf
    t = rng.random(shape).astype(F16)
    x32 = x.astype(np.float32)
    k = shape[-1]
    for opts in [{}, {"weight": rng.random(k), "pos_weight": rng.random(k) * 3},
                 {"label_smoothing": 0.1}]:
        for red in ("none", "sum"):
            l16, g16 = xent.sigmoid_binary_cross_entropy_with_grad(x, t, reduction=red,
                                                                   n_threads=n_threads, **opts)
            l32, g32 = xent.sigmoid_binary_cross_entropy_with_grad(x32, t, reduction=red,
                                                                   n_threads=n_threads, **opts)
            same(np.asarray(l16, np.float64), np.asarray(l32, np.float64))
            same(g16, g32.astype(F16))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax_family_matches_float32(shape):
    x = _logits(np.random.default_rng(3), shape)
    x32 = x.astype(np.float32)
    same(xent.logsumexp(x), xent.logsumexp(x32))
    with np.errstate(over="ignore"):          # log_softmax below -65504 is -inf in float16
        for fn in (xent.softmax, xent.log_softmax):
            same(fn(x), fn(x32).astype(F16))
            same(fn(x, axis=0), fn(x32, axis=0).astype(F16))


def test_in_place_and_strided():
    rng = np.random.default_rng(4)
    x = _logits(rng, (500, 300))
    y = rng.integers(0, 300, 500)
    want = xent.softmax_cross_entropy_with_grad(x.astype(np.float32), y)[1].astype(F16)
    buf = x.copy()
    _, g = xent.softmax_cross_entropy_with_grad(buf, y, grad_out=buf)
    assert g is buf
    same(buf, want)
    big = np.zeros((500, 600), F16)
    big[:, ::2] = x
    same(xent.softmax_cross_entropy_with_grad(big[:, ::2], y)[1], want)
    out = np.empty((300, 500), F16).T                 # Fortran-ordered output
    xent.softmax(x, out=out)
    same(out, xent.softmax(x.astype(np.float32)).astype(F16))
    x0 = x.copy()
    xent.softmax_cross_entropy_with_grad(x, y, n_threads=2)
    same(x, x0)                                       # input untouched


def test_no_float32_copy_of_the_logits():
    """Peak memory of a float16 call stays far below a float32 copy of x
    (numpy reports its allocations to tracemalloc): only tile buffers, one
    of ~128 KiB per thread.  logsumexp and softmax take no n_threads and run
    on OpenMP's default (16 buffers, 2 MiB, on a 16-core machine), so the
    allowance grows with it, and so does x, to keep a copy far above it."""
    nt = max(2, _kernels.max_threads())            # the calls below: 2 threads or the default
    n, c = 4096 * (1 + nt // 16), 1024
    x = np.zeros((n, c), F16)
    y = np.zeros(n, np.int64)
    f32_copy = n * c * 4
    small = f32_copy // 8 + nt * (256 << 10)
    assert small < f32_copy // 2
    cases = [
        (lambda: xent.softmax_cross_entropy(x, y, n_threads=2), small),
        (lambda: xent.softmax_cross_entropy_with_grad(x, y, n_threads=2), n * c * 2 + small),
        (lambda: xent.logsumexp(x), small),
        (lambda: xent.softmax(x), n * c * 2 + small),
        # BCE's targets are read as float32: that copy (of t, not x) is allowed
        (lambda: xent.sigmoid_binary_cross_entropy(x, x, n_threads=2), f32_copy + small),
    ]
    for call, limit in cases:
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < limit
