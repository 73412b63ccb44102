"""Edge cases of the fuzz harness's seed corpus, one group per kind of input.

The fuzz harness (``tests/fuzz/``) replays the same reproducers from its
seed corpus; these tests state the behaviour expected of each, with the
exact error messages, so that a regression reads as what it breaks.
"""

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import xent
import xent.keras
from xent import _validate
from xent import reference as ref


def _child(code):
    """Run `code` in a fresh interpreter (a crash must not end the test run);
    it prints one JSON line, returned."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# 1. n_threads past the CPUs: clamped, never handed to OpenMP
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 1000, 100_000, 2**31 - 1, 2**40, 2**80, np.int64(2**62)])
def test_n_threads_above_the_cpus_is_clamped(n):
    assert _validate.resolve_n_threads(n) == min(int(n), _validate.thread_limit())
    if xent.config()["openmp"]:
        assert _validate.thread_limit() == xent.config()["cores"]


def test_huge_n_threads_runs_like_the_default_in_a_child():
    # Each of these ended the process (SIGSEGV, libgomp's "out of memory", or
    # "Thread creation failed" under a 6 GiB address-space limit) or raised
    # an OverflowError that named no argument.
    r = _child("""
        import json, os, resource
        import numpy as np, xent
        # the address-space limit under which n_threads=1000 ended the process;
        # not under AddressSanitizer, whose shadow memory reserves terabytes
        if "libasan" not in os.environ.get("LD_PRELOAD", ""):
            resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        x = np.random.default_rng(0).standard_normal((1000, 100)); y = np.zeros(1000, int)
        base = xent.softmax_cross_entropy(x, y, n_threads=1)
        out = {}
        for n in (1000, 100000, 2**31 - 1, 2**40, 2**80):
            out[str(n)] = [xent.softmax_cross_entropy(x, y, n_threads=n) == base,
                           xent.softmax_cross_entropy(x[:2, :5], y[:2], n_threads=n)
                           == xent.softmax_cross_entropy(x[:2, :5], y[:2]),
                           xent.sigmoid_binary_cross_entropy(x, np.zeros_like(x), n_threads=n)
                           == xent.sigmoid_binary_cross_entropy(x, np.zeros_like(x), n_threads=1)]
        print(json.dumps(out))
    """)
    assert all(all(v) for v in r.values()), r


@pytest.mark.parametrize("n", [np.array(2), 2.0, 1e20, "100000", object(), [2]])
def test_n_threads_that_is_not_an_int_is_a_value_error(n):
    x = np.zeros((40, 1000))
    y = np.zeros(40, int)
    with pytest.raises(ValueError, match=r"^`n_threads` must be None, an integer >= 1, or -1"):
        xent.softmax_cross_entropy(x, y, n_threads=n)


# --------------------------------------------------------------------------
# 2. weights that are not ndarrays but share grad_out's memory: refused
# --------------------------------------------------------------------------

def _weight_in_grad_out(n_weights, shape):
    """A buffer whose first `n_weights` float64 are the weights and which is
    also the (N, C) gradient output."""
    buf = np.zeros(max(int(np.prod(shape)), n_weights))
    w = buf[:n_weights]
    w[:] = np.arange(1, n_weights + 1)
    return buf[:int(np.prod(shape))].reshape(shape), w


class _Interface:
    """Not an ndarray: NumPy reads it through ``__array_interface__``."""

    def __init__(self, a):
        self.a = a
        self.__array_interface__ = a.__array_interface__


@pytest.mark.parametrize("wrap", [memoryview, _Interface], ids=["memoryview", "array_interface"])
def test_class_weight_aliasing_grad_out_is_refused(wrap):
    x = np.random.default_rng(0).standard_normal((4, 5))
    y = np.array([0, 1, 2, 3])
    g, w = _weight_in_grad_out(5, x.shape)
    # (accepted, the kernel overwrote the weights while it read them: 0.4075
    # for an expected 5.0859 on the reported case)
    with pytest.raises(ValueError, match=r"^`grad_out` overlaps `weight` in memory; pass a separate "
                                         r"array \(or exactly `logits`, to work in place\)\.$"):
        xent.softmax_cross_entropy_with_grad(x, y, weight=wrap(w), grad_out=g)
    assert np.array_equal(w, np.arange(1, 6)) and not g[1:].any()


def test_sample_weight_aliasing_grad_out_is_refused():
    x = np.random.default_rng(0).standard_normal((4, 5))
    g, sw = _weight_in_grad_out(4, x.shape)
    with pytest.raises(ValueError, match=r"^`grad_out` overlaps `sample_weight` in memory"):
        xent.softmax_cross_entropy_with_grad(x, np.array([0, 1, 2, 3]), sample_weight=memoryview(sw),
                                             grad_out=g)


@pytest.mark.parametrize("name", ["weight", "pos_weight"])
def test_bce_weights_aliasing_grad_out_are_refused(name):
    x = np.random.default_rng(0).standard_normal((4, 5))
    g, w = _weight_in_grad_out(5, x.shape)
    with pytest.raises(ValueError, match=rf"^`grad_out` overlaps `{name}` in memory"):
        xent.sigmoid_binary_cross_entropy_with_grad(x, np.zeros_like(x), grad_out=g,
                                                    **{name: memoryview(w)})


def test_a_separate_memoryview_weight_still_works():
    x = np.random.default_rng(0).standard_normal((4, 5))
    y = np.array([0, 1, 2, 3])
    w = np.arange(1.0, 6.0)
    loss, grad = xent.softmax_cross_entropy_with_grad(x, y, weight=memoryview(w),
                                                      grad_out=np.empty_like(x))
    want_loss, want_grad = ref.softmax_cross_entropy_with_grad(x, y, weight=w)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# 3. grad_out=logits is the only overlap allowed
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fn, extra", [
    (xent.softmax_cross_entropy_with_grad, "target"),
    (xent.sigmoid_binary_cross_entropy_with_grad, "target"),
    (xent.sigmoid_binary_cross_entropy_with_grad, "weight"),
    (xent.sigmoid_binary_cross_entropy_with_grad, "pos_weight"),
], ids=["ce-target", "bce-target", "bce-weight", "bce-pos_weight"])
@pytest.mark.parametrize("shape", [(4, 5), (40, 1000)], ids=["small", "large"])
def test_logits_passed_again_with_grad_out_logits_is_refused(fn, extra, shape):
    x = np.random.default_rng(0).uniform(0.1, 0.9, shape)
    before = x.copy()
    args = {"target": (x, x), "weight": (x, np.zeros_like(x)), "pos_weight": (x, np.zeros_like(x))}[extra]
    kwargs = {} if extra == "target" else {extra: x}
    with pytest.raises(ValueError, match=rf"^`grad_out` overlaps `{extra}` in memory"):
        fn(*args, grad_out=x, **kwargs)
    assert np.array_equal(x, before)


def test_grad_out_logits_alone_is_in_place():
    x = np.random.default_rng(0).standard_normal((4, 5))
    want = ref.softmax_cross_entropy_with_grad(x, np.arange(4))
    loss, grad = xent.softmax_cross_entropy_with_grad(x, np.arange(4), grad_out=x)
    assert grad is x
    np.testing.assert_allclose(grad, want[1], rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# 4. one validation of `reduction` on every path
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", [np.array("mean"), np.array(["mean", "sum"]), ["mean"], b"mean"],
                         ids=["0d-array", "two", "list", "bytes"])
@pytest.mark.parametrize("shape", [(4, 5), (40, 1000)], ids=["small", "large"])
@pytest.mark.parametrize("fn", [xent.softmax_cross_entropy, xent.sigmoid_binary_cross_entropy,
                                xent.softmax_cross_entropy_with_grad])
def test_reduction_that_is_not_a_string_is_refused_on_every_path(fn, shape, reduction):
    x = np.zeros(shape)
    t = np.zeros(shape[0], int) if "softmax" in fn.__name__ else np.zeros(shape)
    with pytest.raises(ValueError, match=r"^`reduction` must be one of 'none', 'sum', 'mean', 'state'; got "):
        fn(x, t, reduction=reduction)


@pytest.mark.parametrize("shape", [(4, 5), (40, 1000)], ids=["small", "large"])
def test_a_str_subclass_reduction_is_accepted(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    y = np.zeros(shape[0], int)
    assert xent.softmax_cross_entropy(x, y, reduction=np.str_("sum")) == \
        xent.softmax_cross_entropy(x, y, reduction="sum")


# --------------------------------------------------------------------------
# 5. no NumPy warning escapes a call
# --------------------------------------------------------------------------

def _no_warning(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def test_weight_beyond_float32_gives_inf_or_nan_without_a_warning():
    x = np.zeros((4, 5), np.float32)
    y = np.arange(4)
    assert _no_warning(xent.softmax_cross_entropy, x, y, weight=np.full(5, 1e300)) != \
        _no_warning(xent.softmax_cross_entropy, x, y)        # NaN: inf / inf in the mean
    assert _no_warning(xent.softmax_cross_entropy, x, y, weight=np.full(5, 1e300),
                       reduction="sum") == np.inf


def test_probability_target_beyond_float32_gives_inf_without_a_warning():
    x = np.zeros((4, 5), np.float32)
    x[1, 0] = 1.0
    t = np.full((4, 5), 0.1)
    t[1, 2] = 1e300             # inf in float32, at a logit below the row's max
    losses = _no_warning(xent.softmax_cross_entropy, x, t, reduction="none")
    assert losses[1] == np.inf and np.isfinite(losses[[0, 2, 3]]).all()


def test_keras_binary_mean_that_overflows_is_inf_without_a_warning():
    y_pred = np.full((2, 3), 1.7e308)
    got = _no_warning(xent.keras.binary_crossentropy, np.zeros((2, 3)), y_pred, from_logits=True)
    assert np.array_equal(got, [np.inf, np.inf])


@pytest.mark.parametrize("fn", [xent.softmax_cross_entropy, xent.sigmoid_binary_cross_entropy,
                                xent.logsumexp, xent.softmax])
def test_long_double_beyond_float64_without_a_warning(fn):
    x = np.full((2, 3), np.longdouble("1e4000"))
    x[0, 0] = np.longdouble("nan")
    args = (x, np.array([0, 1])) if fn is xent.softmax_cross_entropy else \
        (x, np.zeros((2, 3))) if fn is xent.sigmoid_binary_cross_entropy else (x,)
    _no_warning(fn, *args)


def test_keras_sparse_long_double_labels_without_a_warning():
    y_true = np.array([np.longdouble("nan"), 1])
    with pytest.raises(ValueError, match=r"^`y_true` class indices must be whole numbers"):
        _no_warning(xent.keras.sparse_categorical_crossentropy, y_true, np.zeros((2, 3)))


# --------------------------------------------------------------------------
# 6. a NaN class weight of a class no label uses: the gradient stays finite
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n, c", [(4, 5), (40, 40), (3, 1000), (2, 70000)])
def test_nan_weight_of_an_unused_class_leaves_the_gradient_finite(n, c, dtype):
    # The gradient is w_y (softmax - onehot(y)) per row; the label-smoothing
    # terms (eps / C) sum_c w_c multiplied a NaN by 0 on every path but the
    # few-classes one (as PyTorch, only w_y matters without smoothing).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c)).astype(dtype)
    y = rng.integers(1, c, n)
    w = np.ones(c)
    w[0] = np.nan
    loss, grad = xent.softmax_cross_entropy_with_grad(x, y, weight=w)
    want_loss, want_grad = ref.softmax_cross_entropy_with_grad(x, y, weight=np.where(np.isnan(w), 1.0, w))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    tol = {np.float16: 2e-3, np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(loss, want_loss, rtol=tol)
    np.testing.assert_allclose(grad.astype(np.float64), want_grad.astype(np.float64), rtol=tol, atol=tol / c)
    # with smoothing every class weight enters: NaN, as the formula says
    assert np.isnan(xent.softmax_cross_entropy(x, y, weight=w, label_smoothing=0.1))


# --------------------------------------------------------------------------
# 7. a small call with grad_out and an input that is not an array yet: the
#    error names the input (the overlap is checked on the arrays made of it)
# --------------------------------------------------------------------------

class _Unconvertible:
    """An array-like whose conversion fails with the caller's own error."""

    def __init__(self, exc):
        self.exc = exc

    def __array__(self, dtype=None, copy=None):
        raise self.exc


@pytest.mark.parametrize("exc", [ValueError("cannot convert"), TypeError("cannot convert")])
@pytest.mark.parametrize("call", ["ce-target", "ce-weight", "bce-target", "bce-pos_weight", "softmax-x"])
def test_small_call_with_grad_out_names_an_unconvertible_input(call, exc):
    x = np.zeros((4, 5))
    bad = _Unconvertible(exc)
    g = np.empty_like(x)
    fn, args, kwargs, name = {
        "ce-target": (xent.softmax_cross_entropy_with_grad, (x, bad), {}, "target"),
        "ce-weight": (xent.softmax_cross_entropy_with_grad, (x, np.zeros(4, np.int64)),
                      {"weight": bad}, "weight"),
        "bce-target": (xent.sigmoid_binary_cross_entropy_with_grad, (x, bad), {}, "target"),
        "bce-pos_weight": (xent.sigmoid_binary_cross_entropy_with_grad, (x, np.zeros_like(x)),
                           {"pos_weight": bad}, "pos_weight"),
        "softmax-x": (xent.softmax, (bad,), {}, "x"),
    }[call]
    if call == "softmax-x":
        kwargs["out"] = g
    else:
        kwargs["grad_out"] = g
    with pytest.raises(ValueError, match=f"`{name}` must be an array-like"):
        fn(*args, **kwargs)


# --------------------------------------------------------------------------
# 8. a NaN class weight of a used class, the mean's gradient: the denominator
#    is NaN, and the ignored rows' gradient stays 0 (the reference gave them
#    0 / NaN)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("impl", [xent, ref], ids=["xent", "reference"])
@pytest.mark.parametrize("name", ["softmax_cross_entropy_with_grad", "softmax_focal_loss_with_grad"])
@pytest.mark.parametrize("n, c", [(6, 4), (40, 1000)])
def test_nan_weight_of_a_used_class_keeps_ignored_rows_at_zero(impl, name, n, c):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c))
    y = rng.integers(0, c, n)
    y[:3] = [0, 1, 1]                   # class 0 (weight NaN) used; class 1 ignored
    w = rng.uniform(0.5, 2.0, c)
    w[0] = np.nan
    loss, grad = getattr(impl, name)(x, y, weight=w, ignore_index=1)
    assert np.isnan(loss)
    assert (grad[y == 1] == 0).all()
    assert np.isnan(grad[y != 1]).all()
    if name == "softmax_cross_entropy_with_grad":
        torch = pytest.importorskip("torch", reason="PyTorch is the outside oracle of this pattern")
        xt = torch.tensor(x, requires_grad=True)
        torch.nn.functional.cross_entropy(xt, torch.tensor(y), weight=torch.tensor(w),
                                          ignore_index=1).backward()
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(xt.grad.numpy()))
