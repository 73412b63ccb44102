"""xent._logsumexp.logsumexp: SciPy's options (tuple/None axis, b, keepdims,
return_sign) on xent's row kernel, against scipy.special.logsumexp.

The function is called directly with the kernel callable built here, so this
file does not depend on how ``xent.logsumexp`` is wired; one test at the end
goes through the public function once it takes these keywords.

Tolerances: float64 results within rtol 1e-14 of SciPy, with an absolute
floor of 1e-14 times the size of the terms (a result near 0 is a difference
of terms of that size); float32 results (float16, float32 inputs) within
rtol 1e-6 of SciPy evaluated in float64 on the same values.

Where xent deliberately differs from SciPy 1.17 (see the module docstring),
the tests say so and check xent's value: the compute dtype (float16 ->
float32), sign 0 for an empty sum (SciPy: -1), -inf for a row whose weights
are all 0 even at +inf/NaN entries (SciPy: NaN).
"""

import inspect

import numpy as np
import pytest

import xent
from conftest import EXTRA_LAYOUTS, LAYOUTS, layout_variant
from xent._api import _softmax_family
from xent._logsumexp import logsumexp as _lse

sp = pytest.importorskip("scipy.special")


def lse_last(a):
    return _softmax_family(a, -1, None, 0)


def ours(x, axis=-1, b=None, keepdims=False, return_sign=False, kernel=lse_last):
    return _lse(x, axis, b, keepdims, return_sign, kernel)


def scipy_lse(x, axis=-1, b=None, keepdims=False, return_sign=False):
    with np.errstate(all="ignore"):
        return sp.logsumexp(x, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)


def _result_dtype(x):
    x = np.asarray(x)
    if x.dtype.kind == "f" and x.dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check(got, x, axis=-1, b=None, keepdims=False, return_sign=False):
    """`got` against SciPy on the float64 values of x: type (NumPy scalar for
    a 0-d result, else ndarray), shape, xent's dtype, values, and the sign."""
    x64 = np.asarray(x).astype(np.float64)
    exp = scipy_lse(x64, axis, b, keepdims, return_sign)
    dtype = _result_dtype(x)
    pairs = list(zip(got, exp)) if return_sign else [(got, exp)]
    if return_sign:
        assert isinstance(got, tuple) and len(got) == 2
    finite = x64[np.isfinite(x64)]
    scale = 1.0 + (np.max(np.abs(finite)) if finite.size else 0.0)
    if b is not None:
        bf = np.abs(np.asarray(b, dtype=np.float64))
        bf = bf[np.isfinite(bf) & (bf > 0)]
        if bf.size:
            scale += np.max(np.abs(np.log(bf)))
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    for g, e in pairs:
        if np.ndim(e) == 0:
            assert isinstance(g, np.generic) and not isinstance(g, np.ndarray), type(g)
        else:
            assert isinstance(g, np.ndarray), type(g)
        assert np.shape(g) == np.shape(e)
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64), e, rtol=rtol,
                                   atol=rtol * scale, equal_nan=True)


# --------------------------------------------------------------------------
# axes, keepdims, dtypes
# --------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int64]
AXES = [-1, 0, 1, -2, (0, 2), (2, 0), (-1, 0), (1,), (), (0, 1, 2), None]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_match_scipy(rng, dtype, axis, keepdims):
    x = rng.normal(size=(3, 4, 5)) * 4
    x = np.round(x).astype(dtype) if dtype == np.int64 else x.astype(dtype)
    check(ours(x, axis, keepdims=keepdims), x, axis, keepdims=keepdims)
    check(ours(x, axis, keepdims=keepdims, return_sign=True), x, axis, keepdims=keepdims,
          return_sign=True)


@pytest.mark.parametrize("axis", [-1, 0, (0,), (-1,), None])
@pytest.mark.parametrize("keepdims", [False, True])
def test_1d_gives_numpy_scalar(rng, axis, keepdims):
    x = rng.normal(size=7)
    got = ours(x, axis, keepdims=keepdims)
    check(got, x, axis, keepdims=keepdims)
    if not keepdims:
        assert type(got) is np.float64                 # as SciPy: out[()]
    val, sgn = ours(x, axis, keepdims=keepdims, return_sign=True)
    assert type(sgn) is (np.float64 if not keepdims else np.ndarray)
    check((val, sgn), x, axis, keepdims=keepdims, return_sign=True)


@pytest.mark.parametrize("axis", [-1, 0, None, ()])
def test_0d_x_is_1d(axis):
    # SciPy takes a 0-d input as 1-d: axis 0, -1, None and () are all valid
    for x in (np.array(2.5), np.float32(-1.0), 3):
        check(ours(x, axis), x, axis)
        check(ours(x, axis, keepdims=True), x, axis, keepdims=True)
        check(ours(x, axis, b=-2.0, return_sign=True), x, axis, b=-2.0, return_sign=True)


@pytest.mark.parametrize("layout", LAYOUTS + EXTRA_LAYOUTS)
def test_layouts(rng, layout):
    x = rng.normal(size=(6, 5, 4))
    v = layout_variant(x, layout)
    for axis in (1, (0, 2), None):
        check(ours(v, axis), x, axis)
        check(ours(v, axis, b=np.arange(4.0) - 1.5, return_sign=True), x, axis,
              b=np.arange(4.0) - 1.5, return_sign=True)


def test_bfloat16(rng):
    ml = pytest.importorskip("ml_dtypes")
    x = (rng.normal(size=(3, 8)) * 3).astype(ml.bfloat16)
    for axis in (-1, 0, None):
        got = ours(x, axis, b=np.linspace(0.5, 2, 8))
        exp = scipy_lse(x.astype(np.float64), axis, b=np.linspace(0.5, 2, 8))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, exp, rtol=1e-6)


def test_large_values_and_accuracy(rng):
    # shifted far from 0: no overflow, relative accuracy kept
    x = rng.normal(size=(20, 50)) + 1e4
    check(ours(x, (0, 1)), x, (0, 1))
    check(ours(x.astype(np.float32), None), x.astype(np.float32), None)
    x = rng.normal(size=(20, 50)) - 1e4
    check(ours(x, 0, keepdims=True), x, 0, keepdims=True)


# --------------------------------------------------------------------------
# b
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("bkind", ["scalar", "row", "column", "full", "zeros", "negative",
                                   "negative-scalar", "bool", "int"])
@pytest.mark.parametrize("axis", [-1, (0, 2), None, 1, ()], ids=repr)
def test_b_matches_scipy(rng, dtype, bkind, axis):
    x = rng.normal(size=(3, 4, 5)) * 2
    x = np.round(x).astype(dtype) if dtype == np.int64 else x.astype(dtype)
    b = {
        "scalar": lambda: 2.5,
        "row": lambda: rng.uniform(0.1, 3, size=5),
        "column": lambda: rng.uniform(0.1, 3, size=(4, 1)),
        "full": lambda: rng.uniform(0, 3, size=(3, 4, 5)),
        "zeros": lambda: np.where(rng.random((3, 4, 5)) < 0.4, 0.0, rng.uniform(0.5, 2, (3, 4, 5))),
        # well-conditioned differences: the negative terms are small
        "negative": lambda: np.where(rng.random((4, 5)) < 0.3, -rng.uniform(0.01, 0.2, (4, 5)),
                                     rng.uniform(1, 2, (4, 5))),
        "negative-scalar": lambda: -1.5,
        "bool": lambda: rng.random(5) < 0.6,
        "int": lambda: rng.integers(0, 4, size=(4, 1)),
    }[bkind]()
    for keepdims in (False, True):
        for return_sign in (False, True):
            check(ours(x, axis, b, keepdims, return_sign), x, axis, b, keepdims, return_sign)


def test_b_broadcasts_against_x(rng):
    # as SciPy, x and b broadcast against each other: b may add dimensions
    x = rng.normal(size=5)
    b = rng.uniform(0.5, 2, size=(3, 1))
    for axis in (-1, 0, None, (0, 1)):
        check(ours(x, axis, b), x, axis, b)


def test_negative_sums(rng):
    x = np.array([[1.0, 2.0], [2.0, 1.0], [0.0, 0.0], [3.0, -np.inf]])
    b = np.array([1.0, -1.0])
    val, sgn = ours(x, -1, b, return_sign=True)
    np.testing.assert_array_equal(sgn, [-1.0, 1.0, 0.0, 1.0])
    assert sgn.dtype == np.float64
    np.testing.assert_allclose(val[:2], np.log(np.e ** 2 - np.e), rtol=1e-15)
    assert val[2] == -np.inf and val[3] == 3.0
    plain = ours(x, -1, b)
    assert np.isnan(plain[0]) and plain[1] == val[1] and plain[2] == -np.inf
    check((val, sgn), x, -1, b, return_sign=True)
    check(plain, x, -1, b)
    # SciPy's docstring example
    v, s = ours([1, 2], -1, [1, -1], return_sign=True)
    assert type(v) is np.float64 and type(s) is np.float64
    assert s == -1.0 and abs(v - 1.5413248546129181) < 1e-15


def test_negative_b_float32_accuracy(rng):
    # float32 x with signed weights: computed in float64, rounded once
    x = (rng.normal(size=(50, 30)) * 5).astype(np.float32)
    b = np.where(rng.random(30) < 0.5, -1.0, 1.0)
    val, sgn = ours(x, -1, b, return_sign=True)
    exp_val, exp_sgn = scipy_lse(x.astype(np.float64), -1, b, return_sign=True)
    np.testing.assert_array_equal(sgn, exp_sgn)
    cond = np.exp(scipy_lse(x.astype(np.float64), -1, np.abs(b)) - exp_val)  # (S+ + S-) / |S|
    assert np.all(np.abs(val - exp_val) <= 1e-6 * np.maximum(np.abs(exp_val), 1) + 1e-15 * cond)


# --------------------------------------------------------------------------
# special values
# --------------------------------------------------------------------------

inf, nan = np.inf, np.nan


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_special_rows(dtype):
    x = np.array([[-inf, -inf, -inf], [inf, 0.0, 1.0], [nan, 0.0, 1.0], [inf, nan, 1.0],
                  [-inf, 2.0, -inf], [inf, inf, -inf], [1e30, 1.0, 2.0]], dtype=dtype)
    for axis in (-1, (1,)):
        val, sgn = ours(x, axis, return_sign=True)
        np.testing.assert_array_equal(val[:6], np.array([-inf, inf, nan, nan, 2.0, inf], dtype))
        np.testing.assert_array_equal(sgn[:6], np.array([0, 1, nan, nan, 1, 1], dtype))
        check((val, sgn), x, axis, return_sign=True)
        check(ours(x, axis), x, axis)
    check(ours(x, 0, keepdims=True), x, 0, keepdims=True)
    check(ours(x, None, return_sign=True), x, None, return_sign=True)


def test_b_zero_drops_inf_and_nan():
    # SciPy's rule: an entry with b == 0 adds nothing, even at +inf or NaN
    x = np.array([[inf, 1.0, 2.0], [nan, 1.0, 2.0], [inf, nan, 0.0], [-inf, 1.0, inf]])
    b = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 2.0], [1.0, -1.0, 0.0]])
    val, sgn = ours(x, -1, b, return_sign=True)
    np.testing.assert_allclose(val, [np.logaddexp(1, 2), np.logaddexp(1, 2), np.log(2), 1.0],
                               rtol=1e-15)
    np.testing.assert_array_equal(sgn, [1, 1, 1, -1])
    check((val, sgn), x, -1, b, return_sign=True)
    check(ours(x, -1, b), x, -1, b)


def test_weighted_special_values():
    x = np.array([[inf, inf, 0.0], [inf, 1.0, 0.0], [2.0, inf, 0.0], [nan, 1.0, 0.0],
                  [1.0, 1.0, -inf]])
    b = np.array([1.0, -1.0, 0.5])
    val, sgn = ours(x, -1, b, return_sign=True)
    # inf - inf is NaN; e - e + 0 cancels exactly: -inf, sign 0
    np.testing.assert_array_equal(val, [nan, inf, inf, nan, -inf])
    np.testing.assert_array_equal(sgn, [nan, 1, -1, nan, 0])
    check((val, sgn), x, -1, b, return_sign=True)
    check(ours(x, -1, b), x, -1, b)
    # b = NaN or +inf
    x2 = np.array([[0.0, 1.0], [0.0, 1.0]])
    b2 = np.array([[nan, 1.0], [inf, 1.0]])
    np.testing.assert_array_equal(ours(x2, -1, b2), [nan, inf])
    check(ours(x2, -1, b2), x2, -1, b2)


def test_all_weights_zero_is_minus_inf():
    # Deliberately not SciPy: SciPy 1.17 gives NaN where every weight of the
    # row is 0 and x holds +inf/NaN there (its fallback computes 0 * exp(inf));
    # xent applies SciPy's own rule, b == 0 adds nothing: the sum is 0.
    x = np.array([[inf, 1.0], [nan, -2.0], [1.0, 2.0]])
    val, sgn = ours(x, -1, 0.0, return_sign=True)
    np.testing.assert_array_equal(val, [-inf, -inf, -inf])
    np.testing.assert_array_equal(sgn, [0, 0, 0])
    np.testing.assert_array_equal(ours(x, -1, np.zeros(2)), [-inf, -inf, -inf])
    assert scipy_lse(x[2], -1, 0.0) == -inf               # agrees where x is finite


@pytest.mark.parametrize("shape, axis", [((0,), -1), ((0,), None), ((2, 0), 1), ((2, 0), -1),
                                         ((0, 3), 0), ((2, 0, 3), 1), ((2, 0, 3), (1, 2)),
                                         ((2, 0, 3), None), ((0, 3), 1), ((0, 3), ())])
@pytest.mark.parametrize("keepdims", [False, True])
def test_empty(shape, axis, keepdims):
    x = np.zeros(shape, dtype=np.float32)
    shape_ = np.array(shape)
    red = range(len(shape)) if axis is None else np.atleast_1d(np.array(axis, dtype=int)) % len(shape)
    out_shape = tuple(1 if i in red else s for i, s in enumerate(shape)) if keepdims else \
        tuple(s for i, s in enumerate(shape_) if i not in red)
    for b in (None, -1.0):
        val, sgn = ours(x, axis, b, keepdims, True)
        assert np.shape(val) == out_shape == np.shape(sgn)
        assert val.dtype == sgn.dtype == np.float32
        assert np.all(val == -inf)
        assert np.all(sgn == 0)                # the sum is 0 (SciPy 1.17 says -1)
        assert np.array_equal(ours(x, axis, b, keepdims), val)
    # SciPy agrees on the value where it runs (it raises for some empty
    # multi-dimensional inputs and mis-shapes axis=() on empty input)
    try:
        exp = scipy_lse(x, axis, keepdims=keepdims)
    except IndexError:
        return
    if axis != ():
        assert np.shape(exp) == out_shape and np.all(exp == -inf)


# --------------------------------------------------------------------------
# how the kernel is called
# --------------------------------------------------------------------------

class Spy:
    def __init__(self):
        self.calls = []

    def __call__(self, a):
        self.calls.append(a)
        return lse_last(a)


def test_fast_path_one_call_no_copy(rng):
    x = rng.normal(size=(6, 7, 8))
    for axis in (-1, 2, 0, -2):
        spy = Spy()
        check(ours(x, axis, kernel=spy), x, axis)
        (a,) = spy.calls
        assert np.shares_memory(a, x)                   # a view: the kernel's copy only
    spy = Spy()
    ours(x, -1, kernel=spy)
    assert spy.calls[0] is x


def test_one_kernel_call_per_part(rng):
    x = rng.normal(size=(6, 7, 8))
    for axis, b, n_calls, rows in [((0, 2), None, 1, (7, 48)), (None, None, 1, (336,)),
                                   (-1, 2.0, 1, (6, 7, 8)), ((0, 1), -1.0, 2, (8, 42)),
                                   (1, np.array([1.0, -1.0] * 4), 2, (6, 8, 7))]:
        spy = Spy()
        check(ours(x, axis, b, return_sign=True, kernel=spy), x, axis, b, return_sign=True)
        assert len(spy.calls) == n_calls
        assert all(a.shape == rows and a.flags.c_contiguous for a in spy.calls)
    spy = Spy()
    ours(x, None, kernel=spy)
    assert np.shares_memory(spy.calls[0], x) and spy.calls[0].shape == (x.size,)


def test_inputs_unchanged(rng):
    x = rng.normal(size=(4, 5))
    x[0, 0] = inf
    b = rng.normal(size=5)
    b[0] = 0.0
    x0, b0 = x.copy(), b.copy()
    ours(x, (0, 1), b, True, True)
    ours(x, 0, b)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(b, b0)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

X = np.zeros((2, 3))


@pytest.mark.parametrize("axis, match", [
    (2, r"^`axis` must be in \[-2, 2\) for `x` with 2 dimension\(s\); got 2\.$"),
    (-3, r"^`axis` must be in \[-2, 2\) for `x` with 2 dimension\(s\); got -3\.$"),
    (np.int64(5), r"^`axis` must be in \[-2, 2\) .* got 5\.$"),
    ((0, 2), r"^`axis` must be in \[-2, 2\) .* got 2 in axis=\(0, 2\)\.$"),
    ((0, -2), r"^`axis` must not repeat an axis; got axis=\(0, -2\) \(0 and -2 are both axis 0\)\.$"),
    ((1, 1), r"must not repeat an axis"),
    (1.0, r"^`axis` must be None, an integer or a tuple of integers; got 1\.0\.$"),
    (True, r"^`axis` must be None, an integer or a tuple of integers; got True\.$"),
    ((0, True), r"`axis` must be None, an integer or a tuple of integers"),
    ([0, 1], r"`axis` must be None, an integer or a tuple of integers; got \[0, 1\]"),
    ("0", r"`axis` must be None, an integer or a tuple of integers"),
])
def test_bad_axis(axis, match):
    for b, rs in ((None, False), (None, True), (1.0, False)):
        with pytest.raises(ValueError, match=match):
            ours(X, axis, b, False, rs)


def test_bad_axis_0d():
    with pytest.raises(ValueError, match=r"`axis` must be in \[-1, 1\) for `x` with 1 dimension"):
        ours(np.float64(1.0), 1)


@pytest.mark.parametrize("b, shape", [(np.ones(4), r"\(4,\)"), (np.ones((3, 3)), r"\(3, 3\)"),
                                      (np.ones((2, 2, 3)).T, r"\(3, 2, 2\)")])
def test_b_does_not_broadcast(b, shape):
    with pytest.raises(ValueError, match=rf"^`b` must broadcast against `x`; got shapes {shape} "
                                         rf"\(b\) and \(2, 3\) \(x\)\.$"):
        ours(X, -1, b)


@pytest.mark.parametrize("x, dtype", [(np.ones(3, complex), "complex128"), (np.array(["a"]), "<U1"),
                                      (np.ones(3, bool), "bool"), (np.array([None]), "object")])
@pytest.mark.parametrize("axis", [-1, None, (0,)])
def test_bad_x_dtype(x, dtype, axis):
    for b, rs in ((None, False), (None, True), (1.0, False)):
        with pytest.raises(TypeError, match=rf"^`x` must be a real floating-point \(or integer\) "
                                            rf"array; got dtype {dtype}\.$"):
            ours(x, axis, b, False, rs)


@pytest.mark.parametrize("b, dtype", [(1j, "complex128"), (np.ones(3, complex), "complex128"),
                                      ("s", "<U1"), (np.array([None] * 3), "object")])
def test_bad_b_dtype(b, dtype):
    with pytest.raises(TypeError, match=rf"^`b` must be a real floating-point, integer or boolean "
                                        rf"array; got dtype {dtype}\.$"):
        ours(X, -1, b)


def test_bad_x_shape():
    with pytest.raises(ValueError, match=r"^`x` must be an array-like of numbers; got list"):
        ours([[1.0], [2.0, 3.0]], None)


@pytest.mark.parametrize("name", ["keepdims", "return_sign"])
@pytest.mark.parametrize("value", ["yes", None, 2, 0.5])
def test_bad_flags(name, value):
    kw = {"keepdims": False, "return_sign": False, name: value}
    with pytest.raises(ValueError, match=rf"^`{name}` must be True or False; got {value!r}\.$"):
        ours(X, -1, None, kw["keepdims"], kw["return_sign"])


def test_flags_accept_numpy_bool_and_0_1(rng):
    x = rng.normal(size=(3, 4))
    check(ours(x, 0, None, np.True_, 1), x, 0, keepdims=True, return_sign=True)
    check(ours(x, 0, None, 0, np.False_), x, 0)


# --------------------------------------------------------------------------
# the public function, once it takes SciPy's keywords
# --------------------------------------------------------------------------

def test_public_logsumexp(rng):
    params = inspect.signature(xent.logsumexp).parameters
    missing = [k for k in ("b", "keepdims", "return_sign") if k not in params]
    if missing:
        pytest.skip(f"xent.logsumexp does not take {', '.join(missing)} yet "
                    "(xent._logsumexp is not wired into it)")
    assert params["axis"].default == -1
    x = rng.normal(size=(3, 4, 5))
    b = np.where(rng.random(4) < 0.3, -0.1, 1.0)[:, None]
    got = xent.logsumexp(x, axis=(0, 2), b=b, keepdims=True, return_sign=True)
    check(got, x, (0, 2), b, keepdims=True, return_sign=True)
    assert got[0].shape == (1, 4, 1)
    check(xent.logsumexp(x), x, -1)
    check(xent.logsumexp(x.astype(np.float32), axis=None), x.astype(np.float32), None)
    v = xent.logsumexp([1, 2], b=[1, -1], return_sign=True)
    assert abs(v[0] - 1.5413248546129181) < 1e-15 and v[1] == -1.0
