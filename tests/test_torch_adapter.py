"""``xent.torch`` (the PyTorch adapter) against PyTorch itself.

Oracles, all independent of the adapter:

* ``torch.nn.functional.cross_entropy`` / ``binary_cross_entropy_with_logits``
  and the ``torch.nn`` modules: loss and ``input.grad`` for every reduction,
  weight, ignore_index, label_smoothing, probability targets, K-dimensional,
  unbatched and empty inputs, in float32 / float64 (tight tolerances) and
  float16 / bfloat16 (against PyTorch on ``input.float()``);
* xent's float32 NumPy route (``xent.softmax_cross_entropy`` on
  ``x.float().numpy()``): 16-bit results are that route rounded once, bit for
  bit;
* finite differences (``torch.autograd.gradcheck``) and
  ``torch.library.opcheck`` for the custom operators;
* a float64 closed form for BCE at extreme logits.

Below ``xent.torch.SMALL`` input elements the adapter calls PyTorch's own
function; tests that exercise xent's kernels set ``SMALL = 0`` (fixture
``xent_kernels``) and check through a spy (fixture ``kernel_calls``) that an
xent kernel did run.  Other tests check the calls that go to PyTorch.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import xent

torch = pytest.importorskip("torch", reason="xent.torch adapts PyTorch, an optional extra "
                                            "(`pip install xent[torch]`)")
import xent.torch as xt  # noqa: E402

try:
    import ml_dtypes  # noqa: F401
    HAVE_ML_DTYPES = True
except ImportError:
    HAVE_ML_DTYPES = False

F = torch.nn.functional
# PyTorch's functions, kept before any test replaces the module attributes
# with spies: the oracles always call these.
TORCH_CE = F.cross_entropy
TORCH_BCE = F.binary_cross_entropy_with_logits

BF16 = pytest.param(torch.bfloat16, id="bfloat16", marks=pytest.mark.skipif(
    not HAVE_ML_DTYPES, reason="bfloat16 tensors reach the kernels as ml_dtypes.bfloat16"))
F16 = pytest.param(torch.float16, id="float16")
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64"),
          F16, BF16]
SIXTEEN = (torch.float16, torch.bfloat16)
REDUCTIONS = ["mean", "sum", "none"]

# Tolerances against PyTorch.  float32 / float64: both compute in the input
# dtype.  16-bit: the oracle is PyTorch on input.float(); xent rounds each
# 16-bit output once from float32 (<= half an ulp), and the backward's
# scaling by the incoming gradient rounds once more (<= one ulp in all).
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-7),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),
}
LOSS_TOL_16 = {torch.float16: dict(rtol=1e-3, atol=1e-5),
               torch.bfloat16: dict(rtol=8e-3, atol=1e-5)}


@pytest.fixture
def xent_kernels(monkeypatch):
    """Every call, however small, goes to xent's kernels."""
    monkeypatch.setattr(xt, "SMALL", 0)


@pytest.fixture
def kernel_calls(monkeypatch):
    """The calls of xent's NumPy losses, as (name, args, kwargs, result),
    recorded by spies around the real functions."""
    calls = []
    for name in ("softmax_cross_entropy", "softmax_cross_entropy_with_grad",
                 "sigmoid_binary_cross_entropy", "sigmoid_binary_cross_entropy_with_grad"):
        def spy(*args, _real=getattr(xent, name), _name=name, **kwargs):
            result = _real(*args, **kwargs)
            calls.append((_name, args, kwargs, result))
            return result
        monkeypatch.setattr(xent, name, spy)
    return calls


def tensor(a, dtype=None):
    # np.array(copy=True) keeps a 0-d array 0-d (np.ascontiguousarray would not)
    t = torch.from_numpy(np.array(a, order="C", copy=True))
    return t if dtype is None else t.to(dtype)


def bits(t):
    """The bit patterns of a 16-bit tensor."""
    return t.contiguous().view(torch.int16)


def run(fn, x, target, upstream, **kwargs):
    """fn(x, target, **kwargs) and the gradient of its dot product with
    `upstream` (a float; an array of per-sample factors for "none")."""
    x = x.detach().clone().requires_grad_()
    loss = fn(x, target, **kwargs)
    g = torch.as_tensor(upstream).to(loss.dtype).expand_as(loss) if np.isscalar(upstream) \
        else tensor(upstream, loss.dtype)
    loss.backward(g)
    return loss.detach(), x.grad


def expected_dtypes(x_dtype, reduction):
    loss = torch.float32 if (reduction == "none" and x_dtype in SIXTEEN) else x_dtype
    return loss, x_dtype


def compare(fn_xent, fn_torch, x, target, reduction, kwargs, rng, calls, loss_tol=TOL):
    """xent.torch against PyTorch: loss values, NaN positions, shapes, dtypes
    and input.grad.  16-bit inputs are compared with PyTorch on float32
    copies of the same values (and of 16-bit weights / targets).  `loss_tol`:
    the float32 / float64 tolerances of the loss."""
    x_dtype = x.dtype
    kwargs = dict(kwargs, reduction=reduction)
    ref_kwargs = {k: (v.float() if isinstance(v, torch.Tensor) and x_dtype in SIXTEEN else v)
                  for k, v in kwargs.items()}
    ref_target = target.float() if (x_dtype in SIXTEEN and target.is_floating_point()) else target
    ref_x = x.float() if x_dtype in SIXTEEN else x

    ref_shape = TORCH_CE(ref_x.detach(), ref_target, **ref_kwargs).shape \
        if fn_torch is TORCH_CE else TORCH_BCE(ref_x.detach(), ref_target, **ref_kwargs).shape
    upstream = 0.75 if reduction != "none" else rng.uniform(0.5, 1.5, size=tuple(ref_shape))

    loss, grad = run(fn_xent, x, target, upstream, **kwargs)
    assert calls, "xent's kernel did not run"
    ref_loss, ref_grad = run(fn_torch, ref_x, ref_target, upstream, **ref_kwargs)

    loss_dtype, grad_dtype = expected_dtypes(x_dtype, reduction)
    assert loss.dtype == loss_dtype and grad.dtype == grad_dtype
    assert loss.shape == ref_loss.shape and grad.shape == x.shape
    if x_dtype in SIXTEEN:
        # "none" is float32 math, not rounded: float32 tolerance
        tol = loss_tol[torch.float32] if reduction == "none" else LOSS_TOL_16[x_dtype]
    else:
        tol = loss_tol[x_dtype]
    torch.testing.assert_close(loss.to(ref_loss.dtype), ref_loss, equal_nan=True, **tol)
    torch.testing.assert_close(grad.to(ref_grad.dtype), ref_grad, equal_nan=True, **TOL[x_dtype])


# ---------------------------------------------------------------------------
# 1. cross_entropy against torch.nn.functional.cross_entropy
# ---------------------------------------------------------------------------

N, C = 12, 7


def _labels(rng, shape, ignore=None, frac=0.3, classes=C):
    t = rng.integers(0, classes, size=shape)
    if ignore is not None:
        t[rng.random(shape) < frac] = ignore
    return torch.from_numpy(t.astype(np.int64))


def _probs(rng, shape, axis=1):
    p = rng.random(shape) ** 3
    return p / p.sum(axis=axis, keepdims=True)


def ce_case(name, rng, dtype):
    """(x, target, kwargs) of a named cross-entropy case; 16-bit weights and
    probability targets in the input's dtype, as PyTorch requires."""
    w = tensor(rng.uniform(0.2, 2.0, C), dtype)
    x = tensor(3 * rng.standard_normal((N, C)), dtype)
    if name == "plain":
        return x, _labels(rng, N), {}
    if name == "weight":
        return x, _labels(rng, N), dict(weight=w)
    if name == "ignore_default":
        t = _labels(rng, N, ignore=-100)
        assert (t == -100).any() and (t != -100).any()
        return x, t, {}
    if name == "ignore_custom":
        t = _labels(rng, N)
        t[:3] = 3
        return x, t, dict(ignore_index=3)
    if name == "ignore_weight":
        return x, _labels(rng, N, ignore=-100), dict(weight=w)
    if name == "smoothing":
        return x, _labels(rng, N), dict(label_smoothing=0.1)
    if name == "smoothing_weight":
        return x, _labels(rng, N), dict(label_smoothing=0.1, weight=w)
    if name == "smoothing_weight_ignore":
        return x, _labels(rng, N, ignore=-100), dict(label_smoothing=0.1, weight=w)
    if name == "no_smoothing_explicit":
        return x, _labels(rng, N), dict(label_smoothing=0.0)
    if name == "probs":
        return x, tensor(_probs(rng, (N, C)), dtype), {}
    if name == "probs_weight_smoothing":
        return x, tensor(_probs(rng, (N, C)), dtype), dict(weight=w, label_smoothing=0.1)
    if name == "kdim":
        x = tensor(3 * rng.standard_normal((3, C, 4, 5)), dtype)
        return x, _labels(rng, (3, 4, 5), ignore=-100), dict(weight=w)
    if name == "kdim_smoothing":
        x = tensor(3 * rng.standard_normal((3, C, 4, 5)), dtype)
        return x, _labels(rng, (3, 4, 5)), dict(label_smoothing=0.1)
    if name == "kdim_probs":
        x = tensor(3 * rng.standard_normal((3, C, 4, 5)), dtype)
        return x, tensor(_probs(rng, (3, C, 4, 5)), dtype), dict(weight=w)
    if name == "unbatched":
        x = tensor(3 * rng.standard_normal(C), dtype)
        return x, torch.tensor(4), dict(weight=w, label_smoothing=0.1)
    if name == "unbatched_probs":
        x = tensor(3 * rng.standard_normal(C), dtype)
        return x, tensor(_probs(rng, C, axis=0), dtype), {}
    if name == "transposed":               # a non-contiguous input
        x = tensor(3 * rng.standard_normal((C, N)), dtype).t()
        assert not x.is_contiguous()
        return x, _labels(rng, N), dict(weight=w)
    if name == "empty":
        return x[:0], _labels(rng, 0), {}
    if name == "all_ignored":              # "mean" is 0 / 0 = nan in PyTorch
        return x, torch.full((N,), -100), {}
    if name == "all_ignored_smoothing_weight":
        return x, torch.full((N,), -100), dict(weight=w, label_smoothing=0.1)
    raise ValueError(name)


CE_CASES = ["plain", "weight", "ignore_default", "ignore_custom", "ignore_weight", "smoothing",
            "smoothing_weight", "smoothing_weight_ignore", "no_smoothing_explicit", "probs",
            "probs_weight_smoothing", "kdim", "kdim_smoothing", "kdim_probs", "unbatched",
            "unbatched_probs", "transposed", "empty", "all_ignored",
            "all_ignored_smoothing_weight"]


def _matrix(cases):
    """(case, reduction) params."""
    return [pytest.param(case, reduction, id=f"{case}-{reduction}")
            for case in cases for reduction in REDUCTIONS]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, reduction", _matrix(CE_CASES))
def test_cross_entropy_matches_torch(case, reduction, dtype, rng, xent_kernels, kernel_calls):
    x, target, kwargs = ce_case(case, rng, dtype)
    compare(xt.cross_entropy, TORCH_CE, x, target, reduction, kwargs, rng, kernel_calls)


def test_all_ignored_mean_is_nan_with_zero_gradient(xent_kernels, kernel_calls):
    x = torch.randn(4, 5, requires_grad=True)
    loss = xt.cross_entropy(x, torch.full((4,), -100))
    loss.backward()
    assert kernel_calls and torch.isnan(loss)
    assert torch.equal(x.grad, torch.zeros(4, 5))


def test_above_small_without_patch(rng, kernel_calls):
    """The default SMALL: a call of at least SMALL elements goes to xent."""
    n = -(-xt.SMALL // C) + 1
    x = tensor(rng.standard_normal((n, C)), torch.float32)
    t = _labels(rng, n, ignore=-100)
    compare(xt.cross_entropy, TORCH_CE, x, t, "mean", dict(label_smoothing=0.05), rng,
            kernel_calls)


# ---------------------------------------------------------------------------
# 2. binary_cross_entropy_with_logits against PyTorch
# ---------------------------------------------------------------------------

def bce_case(name, rng, dtype):
    x = tensor(3 * rng.standard_normal((N, C)), dtype)
    y = rng.random((N, C))
    y[:, :2] = np.round(y[:, :2])          # some hard 0/1 targets
    y = tensor(y, dtype)
    if name == "plain":
        return x, y, {}
    if name == "weight_C":
        return x, y, dict(weight=tensor(rng.uniform(0.2, 2, C), dtype))
    if name == "weight_N1":
        return x, y, dict(weight=tensor(rng.uniform(0.2, 2, (N, 1)), dtype))
    if name == "weight_full":
        return x, y, dict(weight=tensor(rng.uniform(0.2, 2, (N, C)), dtype))
    if name == "pos_weight":
        return x, y, dict(pos_weight=tensor(rng.uniform(0.2, 3, C), dtype))
    if name == "pos_weight_weight_N1":
        return x, y, dict(pos_weight=tensor(rng.uniform(0.2, 3, C), dtype),
                          weight=tensor(rng.uniform(0.2, 2, (N, 1)), dtype))
    if name == "vector":
        return x.reshape(-1), y.reshape(-1), {}
    if name == "3d_pos_weight":
        return (x.reshape(2, 6, C), y.reshape(2, 6, C),
                dict(pos_weight=tensor(rng.uniform(0.2, 3, C), dtype)))
    if name == "transposed":
        return x.t(), y.t(), dict(weight=tensor(rng.uniform(0.2, 2, N), dtype))
    if name == "empty":
        return x[:0], y[:0], {}
    if name == "scalar":                   # a 0-d input
        return x[0, 0], y[0, 0], dict(pos_weight=tensor(2.0, dtype))
    raise ValueError(name)


BCE_CASES = ["plain", "weight_C", "weight_N1", "weight_full", "pos_weight",
             "pos_weight_weight_N1", "vector", "3d_pos_weight", "transposed", "empty", "scalar"]


# PyTorch's BCE is accurate to a few ulps of |x| (absolute), not relative to
# a small loss: e.g. a loss of 0.014 off by 2e-5 relative in float32.  The
# loss is compared with an absolute tolerance of that size, and xent's
# relative accuracy with PyTorch in float64 (test_bce_relative_accuracy).
BCE_LOSS_TOL = {torch.float32: dict(rtol=1e-5, atol=2e-6),
                torch.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, reduction", _matrix(BCE_CASES))
def test_bce_matches_torch(case, reduction, dtype, rng, xent_kernels, kernel_calls):
    x, y, kwargs = bce_case(case, rng, dtype)
    compare(xt.binary_cross_entropy_with_logits, TORCH_BCE, x, y, reduction, kwargs, rng,
            kernel_calls, loss_tol=BCE_LOSS_TOL)


@pytest.mark.parametrize("case", [c for c in BCE_CASES if c != "scalar"])
def test_bce_relative_accuracy(case, rng, xent_kernels):
    """float32 elementwise losses within 1e-6 relative of PyTorch's float64
    on the same values."""
    x, y, kwargs = bce_case(case, rng, torch.float32)
    got = xt.binary_cross_entropy_with_logits(x, y, reduction="none", **kwargs)
    want = TORCH_BCE(x.double(), y.double(), reduction="none",
                     **{k: v.double() for k, v in kwargs.items()})
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0)


def _bce_exact(x, t):
    """Loss and gradient of BCE with logits at hard targets t in {0, 1}, in
    float64 without cancellation: softplus(-x) (t = 1) or softplus(x) (t = 0),
    gradient sigmoid(x) - t written as -sigmoid(-x) for t = 1."""
    x = np.asarray(x, dtype=np.float64)
    z = np.where(t == 1, -x, x)            # loss = softplus(z), d loss/dx = +-sigmoid(z)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = np.where(np.isinf(z) & (z < 0), 0.0,
                        np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))))
        sig = np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
        sig = np.where(np.isinf(z) & (z < 0), 0.0, sig)
    return loss, np.where(t == 1, -sig, sig)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_extreme_logits(dtype, xent_kernels, kernel_calls):
    x = torch.tensor([100, -100, 100, -100, 30, -30, np.inf, -np.inf], dtype=dtype)
    t = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=dtype)
    loss, grad = run(xt.binary_cross_entropy_with_logits, x, t, np.ones(8), reduction="none")
    assert kernel_calls
    want_loss, want_grad = _bce_exact(x.numpy(), t.numpy())
    # exp(-100) = 3.7e-44 is subnormal in float32: allow a few subnormal ulps
    atol = 4 * 2.0 ** -149 if dtype == torch.float32 else 0.0
    tol = dict(rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=atol)
    torch.testing.assert_close(loss, tensor(want_loss, dtype), **tol)
    torch.testing.assert_close(grad, tensor(want_grad, dtype), **tol)
    # the finite logits against PyTorch (which returns nan at +-inf logits,
    # where the exact loss and gradient are 0), to PyTorch's absolute accuracy
    # of a few ulps of |x| (it returns 0 for softplus(-30) = 9.4e-14 in float32)
    ref_loss, ref_grad = run(TORCH_BCE, x[:6], t[:6], np.ones(6), reduction="none")
    atol = 128 * torch.finfo(dtype).eps
    torch.testing.assert_close(loss[:6], ref_loss, rtol=tol["rtol"], atol=atol)
    torch.testing.assert_close(grad[:6], ref_grad, rtol=tol["rtol"], atol=atol)
    # every reduction stays finite with infinite logits
    for reduction in ("mean", "sum"):
        loss, grad = run(xt.binary_cross_entropy_with_logits, x, t, 1.0, reduction=reduction)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------
# 3. the modules
# ---------------------------------------------------------------------------

def _module_args(kind, variant, rng):
    w = tensor(rng.uniform(0.2, 2, C), torch.float32)
    if kind == "ce":
        return {"default": {}, "weight": dict(weight=w),
                "all": dict(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.1),
                "none": dict(reduction="none", label_smoothing=0.2)}[variant]
    pw = tensor(rng.uniform(0.2, 3, C), torch.float32)
    return {"default": {}, "weight": dict(weight=w),
            "all": dict(weight=w, pos_weight=pw, reduction="sum"),
            "none": dict(reduction="none", pos_weight=pw)}[variant]


@pytest.mark.parametrize("variant", ["default", "weight", "all", "none"])
@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_modules_match_torch(kind, variant, rng, xent_kernels, kernel_calls):
    ours_cls, theirs_cls = ((xt.CrossEntropyLoss, torch.nn.CrossEntropyLoss) if kind == "ce"
                            else (xt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss))
    assert issubclass(ours_cls, theirs_cls)
    kwargs = _module_args(kind, variant, rng)
    ours, theirs = ours_cls(**kwargs), theirs_cls(**kwargs)
    assert isinstance(ours, theirs_cls)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    for (_, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert torch.equal(a, b)
    for attr in ("reduction", "ignore_index", "label_smoothing"):
        assert getattr(ours, attr, None) == getattr(theirs, attr, None)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = tensor(3 * rng.standard_normal((N, C)), torch.float32)
    target = (_labels(rng, N, ignore=kwargs.get("ignore_index", -100)) if kind == "ce"
              else tensor(rng.random((N, C)), torch.float32))
    upstream = rng.uniform(0.5, 1.5, N if kind == "ce" else (N, C)) \
        if kwargs.get("reduction") == "none" else 0.5
    loss, grad = run(lambda a, b: ours(a, b), x, target, upstream)
    assert kernel_calls
    ref_loss, ref_grad = run(lambda a, b: theirs(a, b), x, target, upstream)
    torch.testing.assert_close(loss, ref_loss, **TOL[torch.float32])
    torch.testing.assert_close(grad, ref_grad, **TOL[torch.float32])


def test_positional_arguments(rng, xent_kernels, kernel_calls):
    w = tensor(rng.uniform(0.2, 2, C), torch.float32)
    x = tensor(rng.standard_normal((N, C)), torch.float32)
    # functions: (input, target, weight, size_average, ignore_index, reduce, reduction,
    # label_smoothing) and (input, target, weight, size_average, reduce, reduction, pos_weight)
    t = _labels(rng, N)
    torch.testing.assert_close(xt.cross_entropy(x, t, w, None, 2, None, "sum", 0.1),
                               TORCH_CE(x, t, w, None, 2, None, "sum", 0.1), **TOL[torch.float32])
    y = tensor(rng.random((N, C)), torch.float32)
    torch.testing.assert_close(
        xt.binary_cross_entropy_with_logits(x, y, w, None, None, "sum", 2 * w),
        TORCH_BCE(x, y, w, None, None, "sum", 2 * w), **BCE_LOSS_TOL[torch.float32])
    assert len(kernel_calls) == 2
    # modules: (weight, size_average, ignore_index, reduce, reduction, label_smoothing)
    # and (weight, size_average, reduce, reduction, pos_weight)
    ours, theirs = (cls(w, None, 2, None, "sum", 0.1)
                    for cls in (xt.CrossEntropyLoss, torch.nn.CrossEntropyLoss))
    for attr in ("reduction", "ignore_index", "label_smoothing"):
        assert getattr(ours, attr) == getattr(theirs, attr)
    assert torch.equal(ours.weight, theirs.weight)
    ours, theirs = (cls(w, None, None, "sum", 2 * w)
                    for cls in (xt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss))
    assert ours.reduction == theirs.reduction == "sum"
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.pos_weight, 2 * w)


LEGACY = [(s, r) for s in (None, True, False) for r in (None, True, False)
          if (s, r) != (None, None)]


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
@pytest.mark.parametrize("size_average, reduce", LEGACY)
def test_legacy_size_average_reduce(size_average, reduce, rng, xent_kernels, kernel_calls):
    x = tensor(rng.standard_normal((N, C)), torch.float32)
    t = _labels(rng, N, ignore=-100)
    y = tensor(rng.random((N, C)), torch.float32)
    # modules: the reduction PyTorch derives
    for ours_cls, theirs_cls in ((xt.CrossEntropyLoss, torch.nn.CrossEntropyLoss),
                                 (xt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss)):
        ours = ours_cls(size_average=size_average, reduce=reduce)
        theirs = theirs_cls(size_average=size_average, reduce=reduce)
        assert ours.reduction == theirs.reduction
    # functions, positionally: (input, target, weight, size_average, ignore_index, reduce)
    # and (input, target, weight, size_average, reduce)
    got = xt.cross_entropy(x, t, None, size_average, -100, reduce)
    want = TORCH_CE(x, t, None, size_average, -100, reduce)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    got = xt.binary_cross_entropy_with_logits(x, y, None, size_average, reduce)
    want = TORCH_BCE(x, y, None, size_average, reduce)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    # the legacy arguments override `reduction`, as in PyTorch
    got = xt.cross_entropy(x, t, size_average=size_average, reduce=reduce, reduction="none")
    want = TORCH_CE(x, t, size_average=size_average, reduce=reduce, reduction="none")
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    assert kernel_calls


# ---------------------------------------------------------------------------
# 4. gradcheck (finite differences, float64)
# ---------------------------------------------------------------------------

def _gc_ce_cases(rng):
    x = tensor(rng.standard_normal((4, 5)))
    w = tensor(rng.uniform(0.2, 2, 5))
    return {
        "plain": (x, torch.tensor([0, 1, 2, 4]), {}),
        "weight_smoothing_ignore": (x, torch.tensor([0, -100, 2, 4]),
                                    dict(weight=w, label_smoothing=0.1)),
        "probs_weight_smoothing": (x, tensor(_probs(rng, (4, 5))),
                                   dict(weight=w, label_smoothing=0.2)),
        "kdim": (tensor(rng.standard_normal((2, 5, 3))), torch.tensor([[0, 4, 1], [2, 3, -100]]),
                 dict(weight=w)),
        "unbatched": (tensor(rng.standard_normal(5)), torch.tensor(3), dict(label_smoothing=0.1)),
    }


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weight_smoothing_ignore", "probs_weight_smoothing",
                                  "kdim", "unbatched"])
def test_gradcheck_cross_entropy(case, reduction, rng, xent_kernels, kernel_calls):
    x, t, kwargs = _gc_ce_cases(rng)[case]
    x = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a: xt.cross_entropy(a, t, reduction=reduction, **kwargs), (x,))
    assert kernel_calls


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weight_pos_weight", "weight_N1"])
def test_gradcheck_bce(case, reduction, rng, xent_kernels, kernel_calls):
    x = tensor(2 * rng.standard_normal((4, 5))).requires_grad_()
    y = tensor(rng.random((4, 5)))
    kwargs = {"plain": {},
              "weight_pos_weight": dict(weight=tensor(rng.uniform(0.2, 2, 5)),
                                        pos_weight=tensor(rng.uniform(0.2, 3, 5))),
              "weight_N1": dict(weight=tensor(rng.uniform(0.2, 2, (4, 1))))}[case]
    assert torch.autograd.gradcheck(
        lambda a: xt.binary_cross_entropy_with_logits(a, y, reduction=reduction, **kwargs), (x,))
    assert kernel_calls


# ---------------------------------------------------------------------------
# 5. torch.library.opcheck on every operator
# ---------------------------------------------------------------------------

def _opcheck_args(op, variant, rng, requires_grad):
    dtype = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16,
             "f16": torch.float16}[variant.split("_")[0]]
    x = tensor(rng.standard_normal((6, 5)), dtype).requires_grad_(requires_grad)
    w = tensor(rng.uniform(0.2, 2, 5), dtype)
    if variant.endswith("unbatched_none"):     # a 0-d loss
        if op.startswith("cross_entropy"):
            return (x[0].detach().requires_grad_(requires_grad), torch.tensor(3), w, -100,
                    "none", 0.1)
        return (x[0, 0].detach().requires_grad_(requires_grad), tensor(0.3, dtype), None, None,
                "none")
    if op.startswith("cross_entropy"):
        if variant.endswith("probs"):
            return (x, tensor(_probs(rng, (6, 5)), dtype), w, -100, "sum", 0.1)
        if variant.endswith("none"):
            return (x, torch.tensor([0, 1, -100, 3, 4, 2]), None, -100, "none", 0.0)
        return (x, torch.tensor([0, 1, 2, 3, 4, 2]), w, 2, "mean", 0.1)
    y = tensor(rng.random((6, 5)), dtype)
    if variant.endswith("none"):
        return (x, y, None, None, "none")
    return (x, y, w, tensor(rng.uniform(0.2, 3, 5), dtype), "mean")


def _opcheck_params():
    variants = ["f32", "f64", "f32_none", "bf16", "bf16_none", "f16_probs", "f64_probs",
                "f32_unbatched_none"]
    params = []
    for op in ("cross_entropy", "cross_entropy_with_grad", "binary_cross_entropy_with_logits",
               "binary_cross_entropy_with_logits_with_grad"):
        for variant in variants:
            if variant.endswith("probs") and op.startswith("binary"):
                continue                    # probability targets: a cross-entropy variant
            marks = BF16.marks if variant.startswith("bf16") else ()
            params.append(pytest.param(op, variant, id=f"{op}-{variant}", marks=marks))
    return params


@pytest.mark.parametrize("op, variant", _opcheck_params())
def test_opcheck(op, variant, rng):
    # The loss-only operators run where autograd needs no gradient (the
    # adapter calls the `_with_grad` twin otherwise), so they are checked on
    # inputs that do not require grad; the `_with_grad` operators on both.
    packet = getattr(torch.ops.xent, op)
    grads = (False, True) if op.endswith("_with_grad") else (False,)
    for requires_grad in grads:
        args = _opcheck_args(op, variant, rng, requires_grad)
        result = torch.library.opcheck(packet.default, args)
        assert all(v == "SUCCESS" for v in result.values()), result


# ---------------------------------------------------------------------------
# 6. torch.compile(fullgraph=True) training
# ---------------------------------------------------------------------------

def _train(loss_ce, loss_bce, compiled, steps=4):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 48), torch.nn.Tanh(), torch.nn.Linear(48, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 16, generator=g)
    y = torch.randint(0, 32, (256,), generator=g)
    y[::7] = -100
    multi_hot = (torch.rand(256, 32, generator=g) < 0.1).float()

    def loss_fn(x, y, multi_hot):
        logits = model(x)
        return (loss_ce(logits, y, label_smoothing=0.1)
                + 0.5 * loss_bce(logits, multi_hot, reduction="sum") / 256)

    if compiled:
        # inductor, the default backend (it compiles C++ with the machine's compiler)
        loss_fn = torch.compile(loss_fn, fullgraph=True)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(x, y, multi_hot)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return model, torch.stack(losses)


# inductor imports torch.utils.mkldnn, which uses PyTorch's deprecated torch.jit.script_method
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_training_matches_torch(xent_kernels, kernel_calls):
    torch._dynamo.reset()
    ours, our_losses = _train(xt.cross_entropy, xt.binary_cross_entropy_with_logits, True)
    names = {call[0] for call in kernel_calls}
    assert names == {"softmax_cross_entropy_with_grad", "sigmoid_binary_cross_entropy_with_grad"}
    theirs, their_losses = _train(TORCH_CE, TORCH_BCE, False)
    torch.testing.assert_close(our_losses, their_losses)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(p, q, msg=name)


# ---------------------------------------------------------------------------
# 7. 16-bit results are the float32 route rounded once, bit for bit
# ---------------------------------------------------------------------------

def _bits_case(name, rng, dtype):
    x = tensor(4 * rng.standard_normal((40, 33)), dtype)
    w = tensor(rng.uniform(0.2, 2, 33), dtype)
    if name == "plain":
        return x, _labels(rng, 40, classes=33), {}
    if name == "weight_smoothing_ignore":
        t = _labels(rng, 40, ignore=-100, classes=33)
        return x, t, dict(weight=w, label_smoothing=0.1)
    if name == "probs":
        return x, tensor(_probs(rng, (40, 33)), dtype), dict(weight=w)
    raise ValueError(name)


@pytest.mark.parametrize("dtype", [F16, BF16])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", ["plain", "weight_smoothing_ignore", "probs"])
def test_sixteen_bit_is_float32_route_rounded(case, reduction, dtype, rng, xent_kernels,
                                              kernel_calls):
    x, t, kwargs = _bits_case(case, rng, dtype)
    kw32 = {k: (v.float().numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in kwargs.items()}
    t32 = t.float().numpy() if t.is_floating_point() else t.numpy()
    if not t.is_floating_point():
        kw32["ignore_index"] = -100         # PyTorch's default; the NumPy API has none
    loss32, grad32 = xent.softmax_cross_entropy_with_grad(x.float().numpy(), t32,
                                                          reduction=reduction, axis=1, **kw32)
    kernel_calls.clear()
    x = x.clone().requires_grad_()
    loss = xt.cross_entropy(x, t, reduction=reduction, **kwargs)
    loss.backward()
    assert kernel_calls and kernel_calls[0][1][0].dtype != np.float32
    assert loss.dtype == dtype and x.grad.dtype == dtype
    assert torch.equal(bits(loss.detach()), bits(torch.tensor(loss32, dtype=dtype)))
    assert torch.equal(bits(x.grad), bits(torch.from_numpy(grad32).to(dtype)))


@pytest.mark.parametrize("dtype", [F16, BF16])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sixteen_bit_bce_is_float32_route_rounded(reduction, dtype, rng, xent_kernels,
                                                  kernel_calls):
    x = tensor(4 * rng.standard_normal((40, 33)), dtype)
    y = tensor(rng.random((40, 33)), dtype)
    w, pw = tensor(rng.uniform(0.2, 2, 33), dtype), tensor(rng.uniform(0.2, 3, 33), dtype)
    loss32, grad32 = xent.sigmoid_binary_cross_entropy_with_grad(
        x.float().numpy(), y.float().numpy(), weight=w.float().numpy(),
        pos_weight=pw.float().numpy(), reduction=reduction)
    x = x.clone().requires_grad_()
    kernel_calls.clear()
    loss = xt.binary_cross_entropy_with_logits(x, y, w, reduction=reduction, pos_weight=pw)
    loss.backward()
    assert kernel_calls and loss.dtype == dtype and x.grad.dtype == dtype
    assert torch.equal(bits(loss.detach()), bits(torch.tensor(loss32, dtype=dtype)))
    assert torch.equal(bits(x.grad), bits(torch.from_numpy(grad32).to(dtype)))


# ---------------------------------------------------------------------------
# 8. what goes to PyTorch, and errors
# ---------------------------------------------------------------------------

def _outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome compared
        return e


@pytest.mark.parametrize("kind", ["ce", "bce_input", "bce_target"])
def test_integer_tensors_go_to_torch(kind, kernel_calls):
    n = xt.SMALL                            # large enough for xent if the dtype were one
    if kind == "ce":
        args = (torch.ones(n, 3, dtype=torch.int64), torch.zeros(n, dtype=torch.int64))
        ours, theirs = xt.cross_entropy, TORCH_CE
    else:
        x, y = torch.zeros(n, 3), torch.ones(n, 3)
        args = (x.long(), y) if kind == "bce_input" else (x, y.long())
        ours, theirs = xt.binary_cross_entropy_with_logits, TORCH_BCE
    got, want = _outcome(ours, *args), _outcome(theirs, *args)
    assert isinstance(want, Exception)
    assert type(got) is type(want) and str(got) == str(want)
    assert not kernel_calls


@pytest.fixture
def torch_calls(monkeypatch):
    """Calls of torch.nn.functional's two losses (spies)."""
    calls = []
    for name, real in (("cross_entropy", TORCH_CE),
                       ("binary_cross_entropy_with_logits", TORCH_BCE)):
        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(F, name, spy)
    return calls


def test_small_bound():
    """A measured break-even (python -m xent bench --torch-adapter), at most 2**18."""
    assert 0 < xt.SMALL <= 2 ** 18


@pytest.mark.parametrize("C", [2, 10, 16, 17])
def test_few_classes_take_xent_from_small_few_rows(C, rng, kernel_calls, torch_calls):
    """Cross-entropy over at most FEW_CLASSES classes runs xent's kernel from
    SMALL_FEW_ROWS rows on; more classes wait for SMALL elements."""
    rows = xt.SMALL_FEW_ROWS
    for n, by_xent in ((rows - 1, False), (rows, C <= xt.FEW_CLASSES)):
        kernel_calls.clear()
        torch_calls.clear()
        x = tensor(rng.standard_normal((n, C)), torch.float32).requires_grad_()
        y = torch.from_numpy(rng.integers(0, C, n))
        loss = xt.cross_entropy(x, y)
        loss.backward()
        assert bool(kernel_calls) == by_xent and bool(torch_calls) == (not by_xent)
        torch.testing.assert_close(loss, TORCH_CE(x.detach(), y), **TOL[torch.float32])


@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_small_calls_run_torch_kernel(kind, rng, kernel_calls, torch_calls):
    ours = xt.cross_entropy if kind == "ce" else xt.binary_cross_entropy_with_logits
    theirs = TORCH_CE if kind == "ce" else TORCH_BCE
    for numel, by_xent in ((xt.SMALL - 1, False), (xt.SMALL, True)):
        kernel_calls.clear()
        torch_calls.clear()
        x = tensor(rng.standard_normal((1, numel)), torch.float32).requires_grad_()
        t = torch.tensor([numel // 2]) if kind == "ce" else tensor(rng.random((1, numel)),
                                                                    torch.float32)
        loss = ours(x, t, reduction="sum")
        loss.backward()
        assert bool(kernel_calls) == by_xent and bool(torch_calls) == (not by_xent)
        torch.testing.assert_close(loss, theirs(x.detach(), t, reduction="sum"),
                                   **TOL[torch.float32])
    # a small call's autograd node is PyTorch's
    x = torch.randn(4, 5, requires_grad=True)
    loss = ours(x, torch.tensor([0, 1, 2, 3]) if kind == "ce" else torch.rand(4, 5))
    assert "xent" not in type(loss.grad_fn).__name__


@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_double_backward_raises(kind, rng, xent_kernels):
    x = tensor(rng.standard_normal((4, 5)), torch.float64).requires_grad_()
    loss = (xt.cross_entropy(x, torch.tensor([0, 1, 2, 3])) if kind == "ce"
            else xt.binary_cross_entropy_with_logits(x, torch.rand(4, 5, dtype=torch.float64)))
    with pytest.raises(RuntimeError, match="first derivative"):
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        torch.autograd.grad(g.sum(), x)


def test_import_xent_does_not_import_torch():
    code = ("import sys, numpy as np, xent\n"
            "xent.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1]))\n"
            "xent.sigmoid_binary_cross_entropy(np.zeros(3), np.ones(3))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, timeout=60)


@pytest.mark.parametrize("fn", ["softmax_cross_entropy", "softmax_cross_entropy_with_grad",
                                "sigmoid_binary_cross_entropy",
                                "sigmoid_binary_cross_entropy_with_grad"])
def test_numpy_api_refuses_tensor_requiring_grad(fn):
    x = torch.zeros(3, 4, requires_grad=True)
    target = np.array([0, 1, 2]) if fn.startswith("softmax") else np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="xent.torch"):
        getattr(xent, fn)(x, target)


# PyTorch's error for invalid arguments, and whether xent raises the same type
ERROR_CASES = {
    "label_out_of_range": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2, 7])), {}),
    "negative_label": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2, -3])), {}),
    "bad_reduction": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2, 3])),
                      dict(reduction="avg")),
    "batch_mismatch": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2])), {}),
    "label_smoothing_out_of_range": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2, 3])),
                                     dict(label_smoothing=1.5)),
    "weight_shape": (lambda: (torch.zeros(4, 5), torch.tensor([0, 1, 2, 3])),
                     dict(weight=torch.ones(4))),
    "probability_shape": (lambda: (torch.zeros(4, 5), torch.full((4, 4), 0.25)), {}),
}
@pytest.mark.parametrize("case", [
    "label_out_of_range", "negative_label", "bad_reduction", "batch_mismatch",
    "label_smoothing_out_of_range", "weight_shape", "probability_shape"])
def test_invalid_arguments_raise_torch_error_type(case, xent_kernels):
    make, kwargs = ERROR_CASES[case]
    want = _outcome(TORCH_CE, *make(), **kwargs)
    got = _outcome(xt.cross_entropy, *make(), **kwargs)
    assert isinstance(want, Exception) and isinstance(got, Exception)
    assert isinstance(got, type(want)), (got, want)


@pytest.mark.parametrize("kind", ["ce_probs", "bce"])
def test_target_gradient(kind, rng, xent_kernels):
    """A target that requires grad gets PyTorch's gradient (the call goes to PyTorch)."""
    x = tensor(rng.standard_normal((4, 5))).requires_grad_()
    t = tensor(_probs(rng, (4, 5)) if kind == "ce_probs" else rng.random((4, 5)))
    ours = xt.cross_entropy if kind == "ce_probs" else xt.binary_cross_entropy_with_logits
    theirs = TORCH_CE if kind == "ce_probs" else TORCH_BCE
    grads = []
    for fn in (ours, theirs):
        tt = t.clone().requires_grad_()
        fn(x, tt).backward()
        grads.append(tt.grad)
    assert grads[0] is not None
    torch.testing.assert_close(grads[0], grads[1], **TOL[torch.float64])


def test_target_gradient_input_without_grad(rng, xent_kernels):
    """A target that requires grad with an input that does not: PyTorch's gradient."""
    x = tensor(rng.standard_normal((4, 5)))
    t = tensor(_probs(rng, (4, 5))).requires_grad_()
    xt.cross_entropy(x, t).backward()
    t2 = t.detach().clone().requires_grad_()
    TORCH_CE(x, t2).backward()
    torch.testing.assert_close(t.grad, t2.grad, **TOL[torch.float64])


@pytest.mark.parametrize("kind", ["ce_weight", "bce_weight", "bce_pos_weight"])
def test_weight_requiring_grad_raises(kind, xent_kernels):
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.rand(5, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        if kind == "ce_weight":
            xt.cross_entropy(x, torch.tensor([0, 1, 2, 3]), w).backward()
        elif kind == "bce_weight":
            xt.binary_cross_entropy_with_logits(x, torch.rand(4, 5), w).backward()
        else:
            xt.binary_cross_entropy_with_logits(x, torch.rand(4, 5), pos_weight=w).backward()


# ---------------------------------------------------------------------------
# 9. no copy of the logits on the way in
# ---------------------------------------------------------------------------

def _memory(t):
    """A NumPy array on t's memory (bfloat16 by its int16 bit patterns)."""
    t = t.detach()
    return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_is_a_view(dtype):
    base = torch.randn(6, 8).to(dtype)
    for t in (base, base.t(), base[:, ::2]):
        a = xt._array(t)
        assert np.shares_memory(a, _memory(t))
        assert a.shape == tuple(t.shape)
        assert np.array_equal(np.asarray(a, np.float64), t.double().numpy())
    if dtype == torch.bfloat16:
        assert xt._array(base).dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_kernels_see_the_tensor_memory(kind, dtype, rng, xent_kernels, kernel_calls):
    x = tensor(rng.standard_normal((8, 6)), dtype).requires_grad_()
    if kind == "ce":
        t = _labels(rng, 8) % 6
        loss, grad = torch.ops.xent.cross_entropy_with_grad(x, t, None, -100, "sum", 0.0)
    else:
        t = tensor(rng.random((8, 6)), dtype)
        loss, grad = torch.ops.xent.binary_cross_entropy_with_logits_with_grad(
            x, t, None, None, "sum")
    ((_, args, kwargs, (_, kernel_grad)),) = kernel_calls
    assert np.shares_memory(args[0], _memory(x))            # the logits
    # the gradient tensor is the memory the kernel wrote it to (an array
    # passed as grad_out, or the one it returned)
    if kwargs.get("grad_out") is not None:
        kernel_grad = kwargs["grad_out"]
    assert np.shares_memory(kernel_grad, _memory(grad))
    assert np.array_equal(np.asarray(kernel_grad, np.float64), grad.detach().double().numpy())
    # the loss-only operator too
    kernel_calls.clear()
    with torch.no_grad():
        (xt.cross_entropy if kind == "ce" else xt.binary_cross_entropy_with_logits)(x, t)
    ((name, args, _, _),) = kernel_calls
    assert not name.endswith("_with_grad") and np.shares_memory(args[0], _memory(x))


def test_large_gradients_reuse_memory_only_once_it_is_free(xent_kernels):
    """A gradient of 1 MiB or more is written into recycled memory: never
    into a gradient that is still alive, and into a freed one again."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8192, generator=g, requires_grad=True)      # 2 MiB of float32
    y = torch.randint(0, 8192, (64,), generator=g)
    xt.cross_entropy(x, y).backward()
    first = x.grad
    kept = first.clone()
    x.grad = None
    xt.cross_entropy(x, y, reduction="sum").backward()
    assert x.grad.data_ptr() != first.data_ptr()                    # `first` is alive
    torch.testing.assert_close(first, kept, rtol=0, atol=0)         # and untouched
    freed = {first.data_ptr(), x.grad.data_ptr()}
    del first
    x.grad = None
    xt.cross_entropy(x, y).backward()
    assert x.grad.data_ptr() in freed                                # freed: taken again
    torch.testing.assert_close(x.grad, kept, rtol=0, atol=0)
