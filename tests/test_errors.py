"""Bad input: the validation rules and the input kinds each function accepts.

Every rejected input is checked for the exact exception type and for a
message that names the argument, what was expected and what was received.
Every call that raises is also checked to have touched nothing: the inputs
keep their bytes, and for the ``_with_grad`` functions a sentinel-filled
``grad_out`` (passed to every failing call, see :func:`expect_error`) is left
as it was.  The last part checks the inputs that must be *accepted*
(lists, read-only, memory-maps, big-endian, misaligned, float16, integer
logits, N = 0, in-place ``grad_out``), against ``xent.reference`` and against
xent on a contiguous native copy (bitwise equal).
"""

import re

import numpy as np
import pytest

import xent
from xent import reference as ref

N, C = 4, 3
SENTINEL = 12345.0

CE = [xent.softmax_cross_entropy, xent.softmax_cross_entropy_with_grad]
BCE = [xent.sigmoid_binary_cross_entropy, xent.sigmoid_binary_cross_entropy_with_grad]
LOSSES = CE + BCE
PRIMS = [xent.logsumexp, xent.log_softmax, xent.softmax]
OUT_PRIMS = [xent.log_softmax, xent.softmax]
WITH_GRAD = (xent.softmax_cross_entropy_with_grad, xent.sigmoid_binary_cross_entropy_with_grad)


def _name(fn):
    return fn.__name__


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def logits_f64(shape=(N, C)):
    # Distinct, non-trivial values, so an accidental write is visible.
    return np.linspace(-2.0, 3.0, int(np.prod(shape))).reshape(shape)


def labels(n=N, dtype=np.int64):
    return (np.arange(n) % C).astype(dtype)


def probs(shape=(N, C)):
    t = np.random.default_rng(0).random(shape)
    return t / t.sum(axis=-1, keepdims=True)


def bce_target(shape=(N, C)):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 2).astype(np.float64)


def target_for(fn, shape=(N, C)):
    """A valid target for `fn` and logits of `shape` (class axis last)."""
    return labels(int(np.prod(shape[:-1]))).reshape(shape[:-1]) if fn in CE else bce_target(shape)


def _grad_dtype(logits):
    a = np.asarray(logits)
    if a.dtype.kind == "f":
        return a.dtype.newbyteorder("=")
    return np.dtype(np.float64)


def sentinel_like(logits):
    """A valid grad_out for `logits` (when its shape can be known), full of SENTINEL."""
    try:
        a = np.asarray(logits)
    except (ValueError, TypeError):
        return None
    return np.full(a.shape, SENTINEL, dtype=_grad_dtype(a))


def expect_error(fn, args, kwargs, exc, match):
    """Call fn(*args, **kwargs) expecting `exc` with `match`; check nothing was touched.

    For the ``_with_grad`` functions a sentinel ``grad_out`` is added (when the
    test gives none), so every error is also checked to be raised before the
    gradient buffer is written.
    """
    kwargs = dict(kwargs)
    if fn in WITH_GRAD and "grad_out" not in kwargs:
        g = sentinel_like(args[0])
        if g is not None:
            kwargs["grad_out"] = g
    watched = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
    before = [(a.dtype, a.shape, a.tobytes()) for a in watched]
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc, f"raised {type(info.value).__name__}, wanted exactly {exc.__name__}"
    for a, (dt, shape, data) in zip(watched, before):
        assert a.dtype == dt and a.shape == shape
        assert a.tobytes() == data, "an input or output buffer was modified by a call that raised"
    return info


def same(a, b):
    """Bitwise-equal results: floats or arrays (dtype, shape, values incl. NaN)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
        return
    if isinstance(a, float):
        assert isinstance(b, float)
        assert a == b or (np.isnan(a) and np.isnan(b))
        return
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def close(a, b, rtol=1e-12, atol=1e-15):
    """Close to the reference (an independent NumPy implementation)."""
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            close(x, y, rtol, atol)
        return
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def misaligned(a):
    """A copy of `a` that lives at an odd byte offset of a bytes buffer (unaligned)."""
    a = np.asarray(a)
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    m = np.ndarray(a.shape, dtype=a.dtype, buffer=raw, offset=1)
    m[...] = a
    assert not m.flags.aligned or a.dtype.itemsize == 1
    return m


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


REF = {
    xent.softmax_cross_entropy: ref.softmax_cross_entropy,
    xent.softmax_cross_entropy_with_grad: ref.softmax_cross_entropy_with_grad,
    xent.sigmoid_binary_cross_entropy: ref.sigmoid_binary_cross_entropy,
    xent.sigmoid_binary_cross_entropy_with_grad: ref.sigmoid_binary_cross_entropy_with_grad,
    xent.logsumexp: ref.logsumexp,
    xent.log_softmax: ref.log_softmax,
    xent.softmax: ref.softmax,
}


# ==========================================================================
# xent.LabelError: class index outside [0, C) and not ignore_index
# ==========================================================================

def test_label_error_is_index_error_and_value_error():
    assert issubclass(xent.LabelError, IndexError)
    assert issubclass(xent.LabelError, ValueError)
    # ... and either `except` catches it in practice.
    for base in (IndexError, ValueError):
        with pytest.raises(base):
            xent.softmax_cross_entropy(logits_f64(), np.array([0, 1, 2, 3]))


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.uint32, np.int64, np.uint64])
def test_label_too_large(fn, dtype):
    target = np.array([0, 1, 3, 2], dtype=dtype)
    expect_error(fn, (logits_f64(), target), {}, xent.LabelError,
                 r"^`target` class indices must be in \[0, 3\); got 3 at position 2\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_negative_label(fn):
    target = np.array([0, 1, 2, -1])
    expect_error(fn, (logits_f64(), target), {}, xent.LabelError,
                 r"^`target` class indices must be in \[0, 3\); got -1 at position 3\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("bad", [3, -1, -101, 7])
def test_label_neither_in_range_nor_ignore_index(fn, bad):
    # -100 (PyTorch's default) is ignored; `bad` is neither a class nor -100.
    target = np.array([0, -100, bad, 1])
    expect_error(fn, (logits_f64(), target), {"ignore_index": -100}, xent.LabelError,
                 rf"^`target` class indices must be in \[0, 3\) or equal ignore_index=-100; "
                 rf"got {bad} at position 2\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_error_position_in_2d_target(fn):
    # (N, C, H) logits with the class axis 1: the target is (N, H) and the
    # position is reported as a tuple into it.
    logits = logits_f64((2, C, 3))
    target = np.zeros((2, 3), dtype=np.int64)
    target[1, 2] = 7
    expect_error(fn, (logits, target), {"axis": 1}, xent.LabelError,
                 r"^`target` class indices must be in \[0, 3\); got 7 at position \(1, 2\)\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_error_position_in_4d_layout(fn):
    logits = logits_f64((2, C, 2, 2))          # (N, C, H, W)
    target = np.zeros((2, 2, 2), dtype=np.int32)
    target[1, 0, 1] = -5
    target[1, 1, 1] = 9                        # later in C order: not the first
    expect_error(fn, (logits, target), {"axis": 1}, xent.LabelError,
                 r"got -5 at position \(1, 0, 1\)\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_error_position_of_non_contiguous_target(fn):
    # The position is the target's own logical index, whatever its memory order.
    base = np.zeros((3, 2), dtype=np.int64)
    base[2, 0] = 4                             # target = base.T -> position (0, 2)
    target = base.T
    logits = logits_f64((2, 3, C))
    expect_error(fn, (logits, target), {}, xent.LabelError, r"got 4 at position \(0, 2\)\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_error_names_the_first_bad_label(fn):
    target = np.array([0, 5, -1, 9])
    expect_error(fn, (logits_f64(), target), {}, xent.LabelError, r"got 5 at position 1\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_error_first_bad_label_with_threads(fn):
    # Enough rows for several label-check tiles, so the threads see different
    # bad labels; the reported one must still be the first in order.
    n = 300_000
    target = labels(n)
    target[100_000] = 3
    target[100_005] = -1
    target[250_000] = 7
    logits = np.zeros((n, C), dtype=np.float32)
    for nt in (1, 2):
        expect_error(fn, (logits, target), {"n_threads": nt}, xent.LabelError,
                     r"got 3 at position 100000\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("big", [2**63, 2**64 - 1])
def test_uint64_label_above_int64_range(fn, big):
    # Must not wrap around to a negative (or, with ignore_index, a matching) int64.
    target = np.array([0, big, 1, 2], dtype=np.uint64)
    expect_error(fn, (logits_f64(), target), {}, xent.LabelError,
                 rf"^`target` class indices must be in \[0, 3\); got {big} at position 1\.$")
    # 2**64 - 1 wraps to -1 as int64: it must not be taken for ignore_index=-1.
    expect_error(fn, (logits_f64(), target), {"ignore_index": -1}, xent.LabelError,
                 rf"got {big} at position 1\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_uint64_label_error_names_the_first_bad_label(fn):
    # An in-range-of-int64 bad label (5, position 0) comes before the huge one.
    target = np.array([5, 2**63, 0, 1], dtype=np.uint64)
    expect_error(fn, (logits_f64(), target), {}, xent.LabelError, r"got 5 at position 0\.$")


# ==========================================================================
# TypeError: wrong kinds of dtype
# ==========================================================================

@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_class_indices(fn, dtype):
    target = labels().astype(dtype)
    expect_error(fn, (logits_f64(), target), {}, TypeError,
                 rf"^`target` has the class-index shape \(4,\) but dtype {np.dtype(dtype)}: class "
                 r"indices must be integers; use target\.astype\(np\.int64\)")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("target", [
    np.array([True, False, True, False]),
    np.ones((N, C), dtype=bool),                      # one-hot as bool: still not allowed
    labels().astype(np.complex128),
    np.array([0, 1, 2, 0], dtype=object),
    np.array(["0", "1", "2", "0"]),
], ids=["bool", "bool-onehot", "complex", "object", "str"])
def test_bad_target_kind_softmax(fn, target):
    expect_error(fn, (logits_f64(), target), {}, TypeError,
                 r"^`target` must be integer class indices or floating-point probabilities; "
                 rf"got dtype {re.escape(str(target.dtype))}\.$")


@pytest.mark.parametrize("fn", BCE, ids=_name)
@pytest.mark.parametrize("target", [
    bce_target().astype(np.complex64),
    bce_target().astype(object),
    bce_target().astype(int).astype(str),
], ids=["complex", "object", "str"])
def test_bad_target_kind_bce(fn, target):
    expect_error(fn, (logits_f64(), target), {}, TypeError,
                 r"^`target` must be floating-point in \[0, 1\], or bool/integer 0/1; "
                 rf"got dtype {re.escape(str(target.dtype))}\.$")


BAD_LOGITS = [
    logits_f64().astype(np.complex128),
    logits_f64() > 0,
    logits_f64().astype(object),
    logits_f64().astype(str),
]
BAD_LOGITS_IDS = ["complex", "bool", "object", "str"]


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("logits", BAD_LOGITS, ids=BAD_LOGITS_IDS)
def test_bad_logits_kind_losses(fn, logits):
    expect_error(fn, (logits, target_for(fn)), {}, TypeError,
                 r"^`logits` must be a real floating-point \(or integer\) array; "
                 rf"got dtype {re.escape(str(logits.dtype))}\.$")


@pytest.mark.parametrize("fn", PRIMS, ids=_name)
@pytest.mark.parametrize("x", BAD_LOGITS, ids=BAD_LOGITS_IDS)
def test_bad_x_kind_primitives(fn, x):
    expect_error(fn, (x,), {}, TypeError,
                 r"^`x` must be a real floating-point \(or integer\) array; "
                 rf"got dtype {re.escape(str(x.dtype))}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("ignore_index", [1.5, -100.0, np.float64(1.0), "1", True, np.bool_(False)],
                         ids=["1.5", "-100.0", "np.float64", "str", "True", "np.bool_"])
def test_non_integer_ignore_index(fn, ignore_index):
    expect_error(fn, (logits_f64(), labels()), {"ignore_index": ignore_index}, TypeError,
                 rf"^`ignore_index` must be None or an integer; got {re.escape(repr(ignore_index))}\.$")


@pytest.mark.parametrize("fn, arg, value", [
    *[(f, "weight", ["a", "b", "c"]) for f in CE],
    *[(f, "weight", np.ones(C, dtype=np.complex128)) for f in CE],
    *[(f, "sample_weight", ["a", "b", "c", "d"]) for f in CE],
    *[(f, "weight", ["a", "b", "c"]) for f in BCE],
    *[(f, "pos_weight", "abc") for f in BCE],
    *[(f, "pos_weight", np.ones(C, dtype=bool)) for f in BCE],
], ids=lambda v: v.__name__ if callable(v) else (v if isinstance(v, str) else None))
def test_non_numeric_weights(fn, arg, value):
    dt = np.asarray(value).dtype
    expect_error(fn, (logits_f64(), target_for(fn)), {arg: value}, TypeError,
                 rf"^`{arg}` must be a real floating-point or integer array; "
                 rf"got dtype {re.escape(str(dt))}\.$")


# ==========================================================================
# ValueError: shapes
# ==========================================================================

@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("shape", [(N + 1,), (N, 1), (), (C,)])
def test_class_index_target_wrong_shape(fn, shape):
    target = np.zeros(shape, dtype=np.int64)
    # (C,): as many labels as classes, the logits may be transposed
    hint = r" \(`logits` looks transposed: .*\)" if shape == (C,) else ""
    expect_error(fn, (logits_f64(), target), {}, ValueError,
                 r"^`target` class indices must have the shape of `logits` without axis 1, "
                 rf"\(4,\); got shape {re.escape(str(shape))}{hint}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_integer_target_with_logits_shape(fn):
    # An integer one-hot matrix: the hint says to pass it as floats.
    target = np.eye(C, dtype=np.int64)[labels()]
    expect_error(fn, (logits_f64(), target), {}, ValueError,
                 r"got shape \(4, 3\) \(integer targets are class indices; "
                 r"pass one-hot probabilities as floats\)\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("shape", [(N, C + 1), (C, N), (N, C, 1), (1, C)])
def test_probability_target_wrong_shape(fn, shape):
    target = np.full(shape, 1.0 / C)
    expect_error(fn, (logits_f64(), target), {}, ValueError,
                 r"^`target` must be class indices of shape \(4,\) or probabilities of shape "
                 rf"\(4, 3\); got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("shape", [(C + 1,), (C - 1,), (1, C), (), (N, C)])
def test_class_weight_wrong_shape(fn, shape):
    expect_error(fn, (logits_f64(), labels()), {"weight": np.ones(shape)}, ValueError,
                 rf"^`weight` must have shape \(3,\) \(one per class\); got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("shape", [(N + 1,), (N, 1), (1,), ()])
def test_sample_weight_wrong_shape(fn, shape):
    for target in (labels(), probs()):
        expect_error(fn, (logits_f64(), target), {"sample_weight": np.ones(shape)}, ValueError,
                     r"^`sample_weight` must have the per-sample loss shape \(4,\); "
                     rf"got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn", BCE, ids=_name)
@pytest.mark.parametrize("shape", [(C,), (N,), (N, C + 1), (1, N, C), ()])
def test_bce_target_wrong_shape(fn, shape):
    # The target has the shape of the logits (as PyTorch, no broadcasting).
    target = np.zeros(shape)
    expect_error(fn, (logits_f64(), target), {}, ValueError,
                 rf"^`target` must have the shape of `logits`, \(4, 3\); got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn", BCE, ids=_name)
@pytest.mark.parametrize("arg", ["weight", "pos_weight"])
@pytest.mark.parametrize("shape", [(C + 1,), (N,), (N + 1, 1), (2, N, C)])
def test_bce_weights_not_broadcastable(fn, arg, shape):
    expect_error(fn, (logits_f64(), bce_target()), {arg: np.ones(shape)}, ValueError,
                 rf"^`{arg}` must broadcast to the shape of `logits`, \(4, 3\); "
                 rf"got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("shape, axis, target_shape", [
    ((N, 0), -1, (N,)),
    ((0, 0), -1, (0,)),
    ((2, 0, 3), 1, (2, 3)),
])
def test_zero_classes(fn, shape, axis, target_shape):
    ax = axis % len(shape)
    expect_error(fn, (np.zeros(shape), np.zeros(target_shape, dtype=np.int64)), {"axis": axis},
                 ValueError,
                 rf"^`logits` must have at least one class; axis {ax} of shape "
                 rf"{re.escape(str(shape))} has length 0\.$")


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
@pytest.mark.parametrize("shape, axis", [((N, 0), -1), ((0, N), 0)])
def test_zero_classes_primitives(fn, shape, axis):
    # C == 0 is a ValueError (the reference agrees); the message must
    # name `x` and the empty axis, not be a NumPy reshape error.
    expect_error(fn, (np.zeros(shape),), {"axis": axis}, ValueError,
                 rf"`x`.*{re.escape(str(shape))}")


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_zero_dim_logits(fn):
    expect_error(fn, (np.array(1.0), np.array(0)), {}, ValueError,
                 r"^`logits` must have at least one dimension \(the classes\); got a 0-d array\.$")


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
def test_zero_dim_x(fn):
    expect_error(fn, (np.array(1.0),), {}, ValueError,
                 r"^`x` must have at least one dimension; got a 0-d array\.$")


def test_logsumexp_takes_scipys_empty_and_zero_dim_inputs():
    # scipy.special.logsumexp: an empty reduction is -inf, a 0-d x is one term.
    assert np.all(xent.logsumexp(np.zeros((N, 0))) == -np.inf)
    assert xent.logsumexp(np.array(1.5)) == 1.5


# ==========================================================================
# ValueError: axis, reduction, label_smoothing, n_threads, ignore_index
# ==========================================================================

@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("axis", [2, -3, 100])
def test_axis_out_of_range(fn, axis):
    expect_error(fn, (logits_f64(), labels()), {"axis": axis}, ValueError,
                 rf"^`axis` must be in \[-2, 2\) for `logits` with 2 dimension\(s\); got {axis}\.$")


@pytest.mark.parametrize("fn", PRIMS, ids=_name)
@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range_primitives(fn, axis):
    # The primitives' array argument is `x`: the message must not speak of `logits`.
    expect_error(fn, (logits_f64(),), {"axis": axis}, ValueError,
                 rf"^`axis` must be in \[-2, 2\) for `x` with 2 dimension\(s\); got {axis}\.$")


@pytest.mark.parametrize("fn", CE + OUT_PRIMS, ids=_name)
@pytest.mark.parametrize("axis", [1.0, -1.0, True, False, np.bool_(True), "1", None])
def test_axis_not_an_integer(fn, axis):
    args = (logits_f64(), labels()) if fn in CE else (logits_f64(),)
    expect_error(fn, args, {"axis": axis}, ValueError,
                 rf"^`axis` must be an integer; got {re.escape(repr(axis))}\.$")


@pytest.mark.parametrize("axis", [1.0, -1.0, True, False, np.bool_(True), "1"])
def test_logsumexp_axis_not_an_integer_or_tuple(axis):
    # logsumexp takes SciPy's axes: an integer, a tuple of them, or None.
    expect_error(xent.logsumexp, (logits_f64(),), {"axis": axis}, ValueError,
                 rf"^`axis` must be None, an integer or a tuple of integers; "
                 rf"got {re.escape(repr(axis))}\.$")


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 1, ("mean",)])
def test_bad_reduction(fn, reduction):
    expect_error(fn, (logits_f64(), target_for(fn)), {"reduction": reduction}, ValueError,
                 r"^`reduction` must be one of 'none', 'sum', 'mean', 'state'; "
                 rf"got {re.escape(repr(reduction))}\.$")


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("eps", [-0.1, 1.5, -1e-300, float("nan"), float("inf"), "0.1", None,
                                 True, [0.1]])
def test_bad_label_smoothing(fn, eps):
    expect_error(fn, (logits_f64(), target_for(fn)), {"label_smoothing": eps}, ValueError,
                 rf"^`label_smoothing` must be a number in \[0, 1\]; got {re.escape(repr(eps))}\.$")


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("n_threads", [0, -2, 1.5, True, "2", np.float64(2.0)])
def test_bad_n_threads(fn, n_threads):
    expect_error(fn, (logits_f64(), target_for(fn)), {"n_threads": n_threads}, ValueError,
                 r"^`n_threads` must be None, an integer >= 1, or -1 \(all cores\); "
                 rf"got {re.escape(repr(n_threads))}\.$")


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("ignore_index", [-100, 0, 2**70])
def test_ignore_index_with_probability_targets(fn, ignore_index):
    expect_error(fn, (logits_f64(), probs()), {"ignore_index": ignore_index}, ValueError,
                 r"^`ignore_index` applies to class-index targets only; got probability targets\.$")


@pytest.mark.parametrize("fn", BCE, ids=_name)
@pytest.mark.parametrize("dtype, bad", [(np.int64, 2), (np.int64, -1), (np.uint8, 255), (np.int8, -1)])
def test_bce_integer_target_not_0_or_1(fn, dtype, bad):
    target = bce_target().astype(dtype)
    target[1, 2] = bad
    target[3, 0] = bad                          # a later one: the first is reported
    expect_error(fn, (logits_f64(), target), {}, ValueError,
                 rf"^`target` of integer dtype must hold 0 or 1; got {bad} at position \(1, 2\)")


# ==========================================================================
# ValueError: grad_out (the _with_grad functions) and out (log_softmax, softmax)
# ==========================================================================

GRAD_FNS = [
    (xent.softmax_cross_entropy_with_grad, labels),
    (xent.sigmoid_binary_cross_entropy_with_grad, bce_target),
]


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("shape", [(N, C + 1), (C, N), (N * C,), (1, N, C), (N, C, 1)])
def test_grad_out_wrong_shape(fn, make_target, shape):
    expect_error(fn, (logits_f64(), make_target()), {"grad_out": np.full(shape, SENTINEL)},
                 ValueError, rf"^`grad_out` must have shape \(4, 3\); got shape {re.escape(str(shape))}\.$")


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("logits_dtype, out_dtype, expected", [
    (np.float64, np.float32, "float64"),
    (np.float64, np.int64, "float64"),
    (np.float64, np.complex128, "float64"),
    (np.float32, np.float64, "float32"),
    (np.float16, np.float32, "float16"),
    (np.int32, np.int32, "float64"),           # integer logits: the gradient is float64
])
def test_grad_out_wrong_dtype(fn, make_target, logits_dtype, out_dtype, expected):
    logits = logits_f64().astype(logits_dtype)
    grad_out = np.full((N, C), SENTINEL).astype(out_dtype)
    expect_error(fn, (logits, make_target()), {"grad_out": grad_out}, ValueError,
                 rf"^`grad_out` must have dtype {expected}; got {np.dtype(out_dtype)}\.$")


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
def test_grad_out_read_only(fn, make_target):
    grad_out = readonly(np.full((N, C), SENTINEL))
    expect_error(fn, (logits_f64(), make_target()), {"grad_out": grad_out}, ValueError,
                 r"^`grad_out` must be writeable; got a read-only array\.$")


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("grad_out", [np.full((N, C), SENTINEL).tolist(), 1.0,
                                      memoryview(np.full((N, C), SENTINEL))],
                         ids=["list", "float", "memoryview"])
def test_grad_out_not_an_ndarray(fn, make_target, grad_out):
    expect_error(fn, (logits_f64(), make_target()), {"grad_out": grad_out}, ValueError,
                 rf"^`grad_out` must be a NumPy array; got {type(grad_out).__name__}\.$")


@pytest.mark.parametrize("fn", [xent.softmax_cross_entropy_with_grad,
                                xent.sigmoid_binary_cross_entropy_with_grad], ids=_name)
def test_grad_out_is_the_target(fn):
    # Probability / BCE targets have the logits' shape and dtype: passing the
    # target as grad_out must be refused (it would be read while written).
    target = probs() if fn is xent.softmax_cross_entropy_with_grad else bce_target()
    expect_error(fn, (logits_f64(), target), {"grad_out": target}, ValueError,
                 r"^`grad_out` overlaps `target` in memory; pass a separate array "
                 r"\(or exactly `logits`, to work in place\)\.$")


def test_grad_out_holds_the_class_index_target():
    # The int64 labels live inside grad_out's memory.
    buf = np.full(N * C, SENTINEL)
    target = buf[:N].view(np.int64)
    target[:] = labels()
    grad_out = buf.reshape(N, C)
    expect_error(xent.softmax_cross_entropy_with_grad, (logits_f64(), target), {"grad_out": grad_out},
                 ValueError, r"^`grad_out` overlaps `target` in memory")


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("shift", [1, -1, C])
def test_grad_out_shifted_view_of_logits(fn, make_target, shift):
    # logits and grad_out are views of one buffer, `shift` elements apart.
    buf = np.full(N * C + abs(shift), SENTINEL)
    lo, go = (0, shift) if shift > 0 else (-shift, 0)
    logits = buf[lo:lo + N * C].reshape(N, C)
    logits[...] = logits_f64()
    grad_out = buf[go:go + N * C].reshape(N, C)
    expect_error(fn, (logits, make_target()), {"grad_out": grad_out}, ValueError,
                 r"^`grad_out` overlaps `logits` in memory; pass a separate array "
                 r"\(or exactly `logits`, to work in place\)\.$")


@pytest.mark.parametrize("fn, make_target", GRAD_FNS, ids=lambda v: getattr(v, "__name__", None))
def test_grad_out_other_view_of_logits(fn, make_target):
    # Same memory and shape as the logits but another element order: not "in place".
    logits = logits_f64((C, C))
    target = make_target(C) if make_target is labels else bce_target((C, C))
    for view in (logits[::-1], logits.T, logits[:, ::-1]):
        expect_error(fn, (logits, target), {"grad_out": view}, ValueError,
                     r"^`grad_out` overlaps `logits` in memory")


@pytest.mark.parametrize("fn, arg", [
    (xent.softmax_cross_entropy_with_grad, "weight"),
    (xent.softmax_cross_entropy_with_grad, "sample_weight"),
    (xent.sigmoid_binary_cross_entropy_with_grad, "weight"),
    (xent.sigmoid_binary_cross_entropy_with_grad, "pos_weight"),
], ids=lambda v: getattr(v, "__name__", v))
def test_grad_out_overlaps_a_weight(fn, arg):
    # The weight's first element is grad_out's last one.
    n_w = N if arg == "sample_weight" else C
    buf = np.full(N * C + n_w - 1, SENTINEL)
    grad_out = buf[:N * C].reshape(N, C)
    weight = buf[N * C - 1:]
    weight[1:] = 1.0
    target = labels() if fn is xent.softmax_cross_entropy_with_grad else bce_target()
    expect_error(fn, (logits_f64(), target), {arg: weight, "grad_out": grad_out}, ValueError,
                 rf"^`grad_out` overlaps `{arg}` in memory")


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
def test_out_wrong(fn):
    x = logits_f64()
    cases = [
        (np.full((N, C + 1), SENTINEL), r"^`out` must have shape \(4, 3\); got shape \(4, 4\)\.$"),
        (np.full((C, N), SENTINEL), r"^`out` must have shape \(4, 3\); got shape \(3, 4\)\.$"),
        (np.full((N, C), SENTINEL, dtype=np.float32), r"^`out` must have dtype float64; got float32\.$"),
        (np.full((N, C), 7, dtype=np.int64), r"^`out` must have dtype float64; got int64\.$"),
        (readonly(np.full((N, C), SENTINEL)), r"^`out` must be writeable; got a read-only array\.$"),
        (np.full((N, C), SENTINEL).tolist(), r"^`out` must be a NumPy array; got list\.$"),
        (x[::-1], r"^`out` overlaps `x` in memory"),
    ]
    for out, match in cases:
        expect_error(fn, (x,), {"out": out}, ValueError, match)


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
def test_out_wrong_dtype_for_float16_and_integer_x(fn):
    expect_error(fn, (logits_f64().astype(np.float16),), {"out": np.full((N, C), SENTINEL, np.float32)},
                 ValueError, r"^`out` must have dtype float16; got float32\.$")
    expect_error(fn, (np.arange(N * C).reshape(N, C),), {"out": np.full((N, C), SENTINEL, np.float32)},
                 ValueError, r"^`out` must have dtype float64; got float32\.$")


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
@pytest.mark.parametrize("shift", [1, -1])
def test_out_shifted_view_of_x(fn, shift):
    buf = np.full(N * C + 1, SENTINEL)
    lo, go = (0, 1) if shift > 0 else (1, 0)
    x = buf[lo:lo + N * C].reshape(N, C)
    x[...] = logits_f64()
    out = buf[go:go + N * C].reshape(N, C)
    expect_error(fn, (x,), {"out": out}, ValueError, r"^`out` overlaps `x` in memory")


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
def test_out_overlap_hint_names_x(fn):
    # The in-place hint must name the primitives' own argument, `x`, not `logits`.
    x = logits_f64()
    expect_error(fn, (x,), {"out": x[::-1]}, ValueError,
                 r"^`out` overlaps `x` in memory; pass a separate array "
                 r"\(or exactly `x`, to work in place\)\.$")


# ==========================================================================
# Accepted: no error, and the same result as the plain contiguous input
# ==========================================================================

def _both(fn, logits, target=None, **kw):
    """xent's result on these inputs, and on contiguous native copies of them."""
    args = (logits,) if target is None else (logits, target)
    plain = tuple(np.array(np.asarray(a), dtype=np.asarray(a).dtype.newbyteorder("="), order="C")
                  for a in args)
    return fn(*args, **kw), fn(*plain, **kw), plain


ALL = LOSSES + PRIMS


def _args_for(fn, shape=(N, C)):
    return (logits_f64(shape), target_for(fn, shape)) if fn in LOSSES else (logits_f64(shape),)


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_lists(fn):
    args = _args_for(fn)
    got = fn(*(a.tolist() for a in args))
    same(got, fn(*args))
    close(got, REF[fn](*args))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_read_only_inputs(fn):
    args = tuple(readonly(a) for a in _args_for(fn))
    kw = {}
    if fn in CE:
        kw = {"weight": readonly([1.0, 2.0, 0.5]), "sample_weight": readonly([1.0, 0.0, 2.0, 3.0])}
    elif fn in BCE:
        kw = {"weight": readonly([1.0, 2.0, 0.5]), "pos_weight": readonly([[3.0]] * N)}
    got = fn(*args, **kw)
    close(got, REF[fn](*args, **kw))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_memmap(fn, tmp_path):
    args = _args_for(fn)
    maps = []
    for i, a in enumerate(args):
        m = np.memmap(tmp_path / f"a{i}.bin", dtype=a.dtype, mode="w+", shape=a.shape)
        m[...] = a
        m.flush()
        del m
        maps.append(np.memmap(tmp_path / f"a{i}.bin", dtype=a.dtype, mode="r", shape=a.shape))
    same(fn(*maps), fn(*args))


@pytest.mark.parametrize("fn", WITH_GRAD, ids=_name)
def test_accepts_memmap_grad_out(fn, tmp_path):
    args = _args_for(fn)
    g = np.memmap(tmp_path / "g.bin", dtype=np.float64, mode="w+", shape=(N, C))
    loss, grad = fn(*args, grad_out=g)
    assert grad is g
    same((loss, np.array(grad)), fn(*args))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_big_endian(fn):
    args = tuple(a.astype(a.dtype.newbyteorder(">")) for a in _args_for(fn))
    got, expected, plain = _both(fn, *args)
    same(got, expected)
    close(got, REF[fn](*plain))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_misaligned(fn):
    args = tuple(misaligned(a) for a in _args_for(fn))
    got, expected, plain = _both(fn, *args)
    same(got, expected)
    close(got, REF[fn](*plain))


@pytest.mark.parametrize("fn", WITH_GRAD, ids=_name)
def test_accepts_misaligned_grad_out(fn):
    args = _args_for(fn)
    g = misaligned(np.full((N, C), SENTINEL))
    loss, grad = fn(*args, grad_out=g)
    assert grad is g
    same((loss, np.array(grad)), fn(*args))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepts_float16(fn):
    args = _args_for(fn)
    args16 = (args[0].astype(np.float16),) + args[1:]
    got = fn(*args16)
    # Computed in float32; gradients / softmax outputs in float16.
    for r in (got if isinstance(got, tuple) else (got,)):
        if isinstance(r, np.ndarray) and r.shape == (N, C):
            assert r.dtype == np.float16
    close(got, REF[fn](*args16), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fn", ALL, ids=_name)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_accepts_integer_logits(fn, dtype):
    # Computed as float64; outputs float64.
    x = (np.arange(N * C).reshape(N, C) % 5).astype(dtype)
    args = (x, target_for(fn)) if fn in LOSSES else (x,)
    got = fn(*args)
    same(got, fn(x.astype(np.float64), *args[1:]))
    for r in (got if isinstance(got, tuple) else (got,)):
        if isinstance(r, np.ndarray):
            assert r.dtype == np.float64


@pytest.mark.parametrize("fn", CE, ids=_name)
@pytest.mark.parametrize("prob", [False, True])
def test_accepts_zero_rows_softmax(fn, prob):
    logits = np.zeros((0, C))
    target = np.zeros((0, C)) if prob else np.zeros(0, dtype=np.int64)
    for reduction, expected in (("mean", np.nan), ("sum", 0.0), ("none", np.zeros(0))):
        got = fn(logits, target, reduction=reduction)
        same(got[0] if fn in WITH_GRAD else got, expected)
        if fn in WITH_GRAD:
            same(got[1], np.zeros((0, C)))


@pytest.mark.parametrize("fn", BCE, ids=_name)
def test_accepts_zero_elements_bce(fn):
    got = fn(np.zeros((0, C)), np.zeros((0, C)), reduction="sum")
    same(got[0] if fn in WITH_GRAD else got, 0.0)
    got = fn(np.zeros((0, C)), np.zeros((0, C)), reduction="none")
    same(got[0] if fn in WITH_GRAD else got, np.zeros((0, C)))


@pytest.mark.parametrize("fn", PRIMS, ids=_name)
def test_accepts_zero_rows_primitives(fn):
    got = fn(np.zeros((0, C)))
    same(got, np.zeros((0,)) if fn is xent.logsumexp else np.zeros((0, C)))


@pytest.mark.parametrize("fn", BCE, ids=_name)
def test_bce_accepts_zero_dim(fn):
    # BCE is elementwise over any shape, a scalar included.
    got = fn(np.float64(0.5), 1.0)
    close(got, REF[fn](np.float64(0.5), 1.0))


@pytest.mark.parametrize("fn", BCE, ids=_name)
@pytest.mark.parametrize("dtype", [bool, np.int8, np.uint64])
def test_bce_accepts_bool_and_integer_01_targets(fn, dtype):
    t = bce_target()
    same(fn(logits_f64(), t.astype(dtype)), fn(logits_f64(), t))


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_label_equal_to_out_of_range_ignore_index_is_accepted(fn):
    target = np.array([0, -100, 2, 1])
    got = fn(logits_f64(), target, ignore_index=-100)
    close(got, REF[fn](logits_f64(), target, ignore_index=-100))


@pytest.mark.parametrize("fn", CE, ids=_name)
def test_uint64_label_equal_to_huge_ignore_index_is_ignored(fn):
    # ignore_index may be any integer; a uint64 label can equal one
    # above the int64 range, and that row is then ignored, not an error.
    big = 2**64 - 1
    target = np.array([0, big, 2, 1], dtype=np.uint64)
    got = fn(logits_f64(), target, ignore_index=big)
    # Same as the -100 spelling of "this row is ignored".
    close(got, REF[fn](logits_f64(), np.array([0, -100, 2, 1]), ignore_index=-100))


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("n_threads", [None, 1, 2, -1, np.int32(2)])
def test_accepts_valid_n_threads(fn, n_threads):
    args = _args_for(fn)
    same(fn(*args, n_threads=n_threads), fn(*args))


@pytest.mark.parametrize("fn", LOSSES, ids=_name)
@pytest.mark.parametrize("eps", [0, 1, 0.0, 1.0, np.float32(0.25), np.float64(0.1)])
def test_accepts_valid_label_smoothing(fn, eps):
    args = _args_for(fn)
    close(fn(*args, label_smoothing=eps), REF[fn](*args, label_smoothing=float(eps)))


# --------------------------------------------------------------------------
# grad_out / out being the logits themselves (in place)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fn, make_target", [
    (xent.softmax_cross_entropy_with_grad, lambda: labels()),
    (xent.softmax_cross_entropy_with_grad, probs),
    (xent.sigmoid_binary_cross_entropy_with_grad, bce_target),
], ids=["ce-index", "ce-prob", "bce"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_grad_out_is_logits_in_place(fn, make_target, dtype, reduction):
    target = make_target()
    expected = fn(logits_f64().astype(dtype), target, reduction=reduction)
    x = logits_f64().astype(dtype)
    loss, grad = fn(x, target, reduction=reduction, grad_out=x)
    assert grad is x
    same((loss, grad), expected)


@pytest.mark.parametrize("layout", ["strided", "fortran", "big-endian", "misaligned"])
def test_grad_out_is_logits_in_place_other_layouts(layout):
    base = logits_f64()
    if layout == "strided":
        x = np.full((N, 2 * C), SENTINEL)[:, ::2]
        x[...] = base
    elif layout == "fortran":
        x = np.asfortranarray(base)
    elif layout == "big-endian":
        x = base.astype(">f8")
    else:
        x = misaligned(base)
    expected = xent.softmax_cross_entropy_with_grad(base, labels())
    loss, grad = xent.softmax_cross_entropy_with_grad(x, labels(), grad_out=x)
    assert grad is x
    same((loss, np.ascontiguousarray(grad, dtype=np.float64)), expected)
    if layout == "strided":
        # The gaps between the strided elements are not written.
        assert np.all(x.base[:, 1::2] == SENTINEL)


def test_grad_out_is_logits_in_place_class_axis_first():
    x = logits_f64((C, N))                     # axis=0: classes first
    expected = xent.softmax_cross_entropy_with_grad(x.copy(), labels(), axis=0)
    loss, grad = xent.softmax_cross_entropy_with_grad(x, labels(), axis=0, grad_out=x)
    assert grad is x
    same((loss, grad), expected)


@pytest.mark.parametrize("fn", OUT_PRIMS, ids=_name)
@pytest.mark.parametrize("axis", [-1, 0])
def test_out_is_x_in_place(fn, axis):
    expected = fn(logits_f64(), axis=axis)
    x = logits_f64()
    got = fn(x, axis=axis, out=x)
    assert got is x
    same(got, expected)
    close(got, REF[fn](logits_f64(), axis=axis))


@pytest.mark.parametrize("fn", ALL, ids=_name)
def test_accepted_calls_do_not_modify_inputs(fn):
    args = tuple(a.copy() for a in _args_for(fn))
    kw = {}
    if fn in CE:
        kw = {"weight": np.array([1.0, 2.0, 0.5]), "sample_weight": np.array([1.0, 0.0, 2.0, 3.0])}
    elif fn in BCE:
        kw = {"weight": np.array([1.0, 2.0, 0.5]), "pos_weight": np.array([3.0, 1.0, 0.5])}
    before = [a.copy() for a in (*args, *kw.values())]
    fn(*args, **kw)
    for a, b in zip((*args, *kw.values()), before):
        same(a, b)


# --------------------------------------------------------------------------
# messages that say what the likely mistake is
# --------------------------------------------------------------------------

def test_label_error_has_its_public_name():
    assert xent.LabelError.__module__ == "xent"
    assert repr(xent.LabelError("x")) == "LabelError('x')"
    with pytest.raises(xent.LabelError) as info:
        xent.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 7]))
    assert info.type.__module__ + "." + info.type.__qualname__ == "xent.LabelError"
    import pickle
    assert type(pickle.loads(pickle.dumps(info.value))) is xent.LabelError


@pytest.mark.parametrize("shape", [(4, 5), (40, 1000)], ids=["small", "large"])
def test_label_minus_100_suggests_ignore_index(shape):
    y = np.zeros(shape[0], int)
    y[1] = -100
    with pytest.raises(xent.LabelError, match=r"^`target` class indices must be in \[0, \d+\); got -100 at "
                                              r"position 1 \(-100 is PyTorch's default ignore_index: pass "
                                              r"ignore_index=-100 to leave those rows out\)\.$"):
        xent.softmax_cross_entropy(np.zeros(shape), y)
    # with an ignore_index set, -100 is just a bad label: no hint
    with pytest.raises(xent.LabelError, match=r"or equal ignore_index=-1; got -100 at position 1\.$"):
        xent.softmax_cross_entropy(np.zeros(shape), y, ignore_index=-1)


def test_transposed_logits_say_so():
    x = np.zeros((10, 1000))                 # (C, N) where (N, C) was meant
    with pytest.raises(ValueError, match=r"^`target` class indices must have the shape of `logits` without "
                                         r"axis 1, \(10,\); got shape \(1000,\) \(`logits` looks transposed: "
                                         r"its class axis 1 has the length of `target`; pass logits.T, or "
                                         r"axis=0\)\.$"):
        xent.softmax_cross_entropy(x, np.zeros(1000, int))
    with pytest.raises(ValueError, match=r"or axis=1\)\.$"):
        xent.softmax_cross_entropy(x, np.zeros(10, int), axis=0)


def test_keras_sparse_with_swapped_arguments_says_so():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"\(`y_true` and `y_pred` look swapped: Keras's order is "
                                         r"\(y_true, y_pred\), the class indices first\)\.$"):
        xent.keras.sparse_categorical_crossentropy(probs, np.array([0, 1, 2, 0]))


@pytest.mark.parametrize("fn", [xent.keras.categorical_crossentropy, xent.keras.binary_crossentropy])
@pytest.mark.parametrize("from_logits", [False, True])
def test_keras_dense_with_swapped_arguments_says_so(fn, from_logits):
    logits = np.array([[-1.5, 2.0, 0.5]])
    onehot = np.array([[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"^`y_true` must hold target probabilities in \[0, 1\]; got -1.5 at "
                                         r"position \(0, 0\), and every `y_pred` is in \[0, 1\] \(`y_true` "
                                         r"and `y_pred` look swapped: Keras's order is \(y_true, y_pred\)\)\.$"):
        fn(logits, onehot, from_logits=from_logits)
    # the right order, and a negative target with logits that leave [0, 1]: as Keras
    assert np.isfinite(fn(onehot, logits, from_logits=from_logits)).all()
    fn(np.array([[-0.5, 1.5, 0.0]]), logits, from_logits=True)
