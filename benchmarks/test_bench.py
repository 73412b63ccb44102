"""pytest-benchmark: every xent kernel against the NumPy reference (and PyTorch).

Run:  python -m pytest benchmarks/ --benchmark-group-by=group --benchmark-sort=name

The cases and shapes are ``xent._bench.CASES`` / ``QUICK_SHAPES``, the same
table that ``python -m xent bench`` and tests/test_bench_cases.py use.  Inputs
are built once per (case, shape) outside the timed call; each group holds one
kernel on one shape, so xent, reference and torch read side by side.
"""

import numpy as np
import pytest

from xent import _bench

SHAPES = _bench.QUICK_SHAPES
IMPLS = ("xent", "reference", "torch")


@pytest.fixture(scope="module")
def inputs():
    cache = {}

    def get(case, shape):
        key = (case.name, shape)
        if key not in cache:
            cache.clear()  # keep one set of ~64 MB arrays alive at a time
            x, t = _bench.make_inputs(case, *shape)
            cache[key] = (x, t, np.empty_like(x) if case.writes_memory else None)
        return cache[key]

    return get


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
@pytest.mark.parametrize("case", _bench.CASES, ids=[c.name for c in _bench.CASES])
def test_kernel(benchmark, inputs, case, shape, impl):
    x, t, out = inputs(case, shape)
    if impl == "xent":
        fn = _bench._xent_call(case, x, t, None, out)
    elif impl == "reference":
        fn = _bench._ref_call(case, x, t)
    else:
        pytest.importorskip("torch", reason="PyTorch is not installed: no torch column")
        fn = _bench._torch_call(case, x, t)
    benchmark.group = f"{case.name} {shape[0]}x{shape[1]}"
    benchmark.extra_info["GB"] = x.size * case.bytes_per_elem(x.itemsize) / 1e9
    benchmark.pedantic(fn, rounds=3 if impl != "xent" else 10, warmup_rounds=1)
