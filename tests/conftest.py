"""Shared fixtures and helpers of the xent test-suite.

Kept deliberately small; other test files import from here, so the names
below are stable:

* ``rng`` -- a seeded ``numpy.random.Generator`` (fixture), so every test is
  reproducible;
* ``LAYOUTS`` / ``EXTRA_LAYOUTS`` and ``layout_variant(a, layout)`` -- the same
  values as ``a`` in another memory layout (Fortran order, strided, negative
  strides, big-endian, read-only, a nested list).
"""

import numpy as np
import pytest

# --------------------------------------------------------------------------
# test tiers
# --------------------------------------------------------------------------
# A plain `python -m pytest` runs the everyday tier: everything but the tests
# marked `slow` (exhaustive float32 math, arrays of several GB, mpmath on
# 128k-class rows), which take most of the time and all of the memory of a
# full run.  Select them with a marker expression: `-m slow` for that tier
# alone, `-m "slow or not slow"` for everything (what .ci/run does).  Every
# SIMD variant and the sanitizers are further tiers that .ci/run runs.


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr"):
        return                           # the caller chose the tests
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config._xent_slow_deselected = len(slow)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_xent_slow_deselected", 0)
    if n:
        terminalreporter.write_line(f"{n} slow tests not run (the heavy tier): run them with "
                                    "`python -m pytest -m slow`")

#: Layouts every kernel must handle, used in full products with dtypes/threads.
LAYOUTS = ("C", "F", "strided", "reversed")
#: Further input kinds, exercised in a few cases only.
EXTRA_LAYOUTS = ("bigendian", "readonly", "list")


@pytest.fixture
def rng():
    """A fresh, seeded random generator for each test."""
    return np.random.default_rng(20240531)


def layout_variant(a, layout):
    """Return the values of ``a`` (an ndarray) in the memory layout ``layout``.

    ``"C"``         C-contiguous copy.
    ``"F"``         Fortran-ordered copy.
    ``"strided"``   a view taking every other element along every axis of a
                    twice-as-large buffer (no axis is contiguous).
    ``"reversed"``  a view with negative strides on every axis (``[::-1]``).
    ``"bigendian"`` a copy with non-native (big-endian) byte order.
    ``"readonly"``  a C-contiguous copy whose ``writeable`` flag is False.
    ``"list"``      ``a.tolist()`` (NumPy re-infers the dtype from it).

    ``np.asarray(layout_variant(a, L))`` always equals ``a`` element for
    element (up to the dtype change that ``tolist`` implies).
    """
    a = np.asarray(a)
    # np.array(..., copy=True) rather than np.ascontiguousarray, which turns a
    # 0-d array into a 1-d one.
    if layout == "C":
        return np.array(a, order="C", copy=True)
    if layout == "F":
        return np.array(a, order="F", copy=True)
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        sl = tuple(slice(None, None, 2) for _ in a.shape)
        big[sl] = a
        return big[sl]
    if layout == "reversed":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return np.array(a[flip], order="C", copy=True)[flip]
    if layout == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    if layout == "readonly":
        out = np.array(a, order="C", copy=True)
        out.flags.writeable = False
        return out
    if layout == "list":
        return a.tolist()
    raise ValueError(f"unknown layout {layout!r}")


@pytest.fixture
def oversubscribe(monkeypatch):
    """Let `n_threads` go past the CPUs this process may use.

    xent clamps an explicit thread count to the CPUs (``_validate.thread_limit``);
    the determinism tests ask for 3, 4 or 8 threads on a 2-core machine to
    exercise tile assignments that only those counts produce, so they raise
    the limit for their duration.
    """
    import xent._validate

    monkeypatch.setattr(xent._validate, "thread_limit", lambda: 64)


def simd_variants():
    """The SIMD variants this CPU runs in this build ([None] without run-time
    dispatch)."""
    try:
        from xent import _config
        return list(_config.variants_supported())
    except (ImportError, AttributeError):      # a build without run-time dispatch
        return [None]


@pytest.fixture(params=simd_variants(), ids=lambda v: v or "default")
def isa(request):
    """Run the test on one SIMD variant, then restore the one in use (the
    accuracy tests measure each)."""
    if request.param is None:
        yield None
        return
    from xent import _config
    before = _config.simd_variant()
    _config.select_isa(request.param)
    assert _config.simd_variant() == request.param
    try:
        yield request.param
    finally:
        _config.select_isa(before)
