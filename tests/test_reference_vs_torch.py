"""The NumPy reference (``xent.reference``) against PyTorch's CPU losses.

The reference is the oracle of the rest of the test-suite, so it is held to
PyTorch here: losses and autograd gradients in float64 to ~1e-12 relative,
plus a float32 check.  ``sample_weight`` and the ``-inf`` mask rules, which
PyTorch lacks or gets NaN for, are checked against PyTorch's ``"none"``
output or finite stand-ins.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is needed to compare against it")
F = torch.nn.functional

from xent import reference as ref  # noqa: E402

RTOL = 1e-12
ATOL = 1e-15
REDUCTIONS = ["none", "sum", "mean"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def _torch_reduced(loss):
    """Value of a torch loss as the reference returns it, and backward()."""
    (loss.sum() if loss.dim() else loss).backward()
    value = loss.detach().numpy()
    return value if loss.dim() else float(value)


def torch_ce(x, target, *, axis=-1, weight=None, ignore_index=None,
             label_smoothing=0.0, reduction="mean"):
    """``F.cross_entropy`` with the class axis at ``axis``: (loss, grad)."""
    tx = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(target)
    if x.ndim > 1:
        moved = torch.movedim(tx, axis, 1)
        if tt.is_floating_point():
            tt = torch.movedim(tt, axis, 1)
    else:
        moved = tx
    kwargs = {}
    if weight is not None:
        kwargs["weight"] = torch.tensor(weight, dtype=tx.dtype)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    loss = F.cross_entropy(moved, tt, label_smoothing=label_smoothing,
                           reduction=reduction, **kwargs)
    return _torch_reduced(loss), tx.grad.numpy()


def torch_bce(x, target, *, weight=None, pos_weight=None, reduction="mean"):
    """``F.binary_cross_entropy_with_logits``: (loss, grad)."""
    tx = torch.tensor(x, requires_grad=True)
    kwargs = {}
    if weight is not None:
        kwargs["weight"] = torch.tensor(weight, dtype=tx.dtype)
    if pos_weight is not None:
        kwargs["pos_weight"] = torch.tensor(pos_weight, dtype=tx.dtype)
    loss = F.binary_cross_entropy_with_logits(
        tx, torch.tensor(target, dtype=tx.dtype), reduction=reduction, **kwargs)
    return _torch_reduced(loss), tx.grad.numpy()


def check_ce(x, target, *, rtol=RTOL, atol=ATOL, **kwargs):
    """Reference (loss-only and with-grad) equals torch's loss and gradient."""
    expected_loss, expected_grad = torch_ce(x, target, **kwargs)
    loss, grad = ref.softmax_cross_entropy_with_grad(x, target, **kwargs)
    assert_close(loss, expected_loss, rtol, atol)
    assert_close(grad, expected_grad, rtol, atol)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    if kwargs.get("reduction", "mean") == "none":
        assert loss.shape == np.shape(expected_loss)
    else:
        assert isinstance(loss, float)
    assert_close(ref.softmax_cross_entropy(x, target, **kwargs), loss, 0, 0)
    return loss, grad


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------
# softmax cross-entropy: class indices
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_class_indices(rng, reduction, weighted, eps):
    x = rng.normal(scale=3, size=(13, 7))
    y = rng.integers(0, 7, size=13)
    w = rng.uniform(0.2, 3, size=7) if weighted else None
    check_ce(x, y, weight=w, label_smoothing=eps, reduction=reduction)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint64])
def test_class_indices_any_integer_dtype(rng, dtype):
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    expected = ref.softmax_cross_entropy_with_grad(x, y, reduction="none")
    actual = ref.softmax_cross_entropy_with_grad(x, y.astype(dtype), reduction="none")
    assert_close(actual[0], expected[0], 0, 0)
    assert_close(actual[1], expected[1], 0, 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [2, -100, 11])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_ignore_index(rng, reduction, ignore_index, eps):
    x = rng.normal(size=(12, 5))
    y = rng.integers(0, 5, size=12)
    y[[0, 3, 4, 9]] = ignore_index
    w = rng.uniform(0.5, 2, size=5)
    loss, grad = check_ce(x, y, weight=w, ignore_index=ignore_index,
                          label_smoothing=eps, reduction=reduction)
    ignored = y == ignore_index
    assert np.all(grad[ignored] == 0)
    if reduction == "none":
        assert np.all(loss[ignored] == 0)


def test_ignored_rows_are_zero_even_when_nan():
    x = np.array([[np.nan, 1.0, 2.0], [0.5, 1.0, -1.0]])
    y = np.array([-100, 1])
    loss, grad = ref.softmax_cross_entropy_with_grad(x, y, ignore_index=-100,
                                                     reduction="none")
    assert loss[0] == 0 and np.all(grad[0] == 0)
    expected_loss, expected_grad = torch_ce(x[1:], y[1:], reduction="none")
    assert_close(loss[1:], expected_loss)
    assert_close(grad[1:], expected_grad)


@pytest.mark.parametrize("weighted", [False, True])
def test_all_ignored_mean_is_nan_and_grad_zero(rng, weighted):
    x = rng.normal(size=(4, 3))
    y = np.full(4, -1)
    w = np.array([1.0, 2.0, 3.0]) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = ref.softmax_cross_entropy_with_grad(x, y, weight=w, ignore_index=-1)
    assert np.isnan(loss)
    assert grad.shape == x.shape and np.all(grad == 0)
    assert ref.softmax_cross_entropy(x, y, ignore_index=-1, reduction="sum") == 0.0


def test_zero_class_weight_denominator(rng):
    # Every counted row has a class of weight 0: denominator 0 -> nan, grad 0.
    x = rng.normal(size=(3, 3))
    y = np.array([1, 1, 1])
    loss, grad = ref.softmax_cross_entropy_with_grad(x, y, weight=[1.0, 0.0, 1.0])
    assert np.isnan(loss) and np.all(grad == 0)


def test_empty_batch():
    x = np.zeros((0, 5))
    y = np.zeros(0, dtype=np.int64)
    assert np.isnan(ref.softmax_cross_entropy(x, y))
    assert ref.softmax_cross_entropy(x, y, reduction="sum") == 0.0
    loss, grad = ref.softmax_cross_entropy_with_grad(x, y, reduction="none")
    assert loss.shape == (0,) and grad.shape == (0, 5)
    assert np.isnan(torch_ce(x, y)[0])


def test_single_row_1d(rng):
    x = rng.normal(size=6)
    check_ce(x, np.int64(4), reduction="none")
    check_ce(x, np.int64(4), label_smoothing=0.3, weight=np.arange(1.0, 7.0))


# --------------------------------------------------------------------------
# softmax cross-entropy: probabilities
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_probabilities(rng, reduction, weighted, eps):
    x = rng.normal(scale=3, size=(11, 6))
    t = rng.dirichlet(np.ones(6), size=11)
    t[0] *= 2.5                 # rows need not sum to 1
    t[1] = 0
    t[1, 3] = 1                 # one-hot row
    w = rng.uniform(0.2, 3, size=6) if weighted else None
    check_ce(x, t, weight=w, label_smoothing=eps, reduction=reduction)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_one_hot_probabilities_equal_class_indices(rng, eps):
    x = rng.normal(size=(9, 4))
    y = rng.integers(0, 4, size=9)
    w = rng.uniform(0.5, 2, size=4)
    kw = dict(weight=w, label_smoothing=eps, reduction="none")
    loss_i, grad_i = ref.softmax_cross_entropy_with_grad(x, y, **kw)
    loss_p, grad_p = ref.softmax_cross_entropy_with_grad(x, np.eye(4)[y], **kw)
    assert_close(loss_p, loss_i, 1e-14)
    assert_close(grad_p, grad_i, 1e-14, 1e-16)


# --------------------------------------------------------------------------
# softmax cross-entropy: axis
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_axis1_nchw(rng, reduction):
    x = rng.normal(size=(2, 5, 3, 4))
    y = rng.integers(0, 5, size=(2, 3, 4))
    y[0, 1, 2] = -100
    w = rng.uniform(0.5, 2, size=5)
    check_ce(x, y, axis=1, weight=w, ignore_index=-100, label_smoothing=0.1,
             reduction=reduction)
    t = rng.dirichlet(np.ones(5), size=(2, 3, 4)).transpose(0, 3, 1, 2).copy()
    check_ce(x, t, axis=1, weight=w, label_smoothing=0.1, reduction=reduction)


@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_other_axes(rng, axis):
    x = rng.normal(size=(3, 4, 5))
    batch = tuple(s for i, s in enumerate(x.shape) if i != axis % 3)
    y = rng.integers(0, x.shape[axis], size=batch)
    check_ce(x, y, axis=axis, reduction="none")
    t = np.moveaxis(rng.dirichlet(np.ones(x.shape[axis]), size=batch), -1, axis)
    check_ce(x, t, axis=axis, reduction="mean")


# --------------------------------------------------------------------------
# sample_weight (no torch equivalent: torch's "none" times s)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sample_weight(rng, kind, reduction):
    n, c = 10, 4
    x = rng.normal(size=(n, c))
    w = rng.uniform(0.5, 2, size=c)
    s = rng.uniform(0, 3, size=n)
    s[2] = 0
    if kind == "indices":
        target = rng.integers(0, c, size=n)
        target[5] = -100
        kw = dict(weight=w, ignore_index=-100, label_smoothing=0.1)
        counted = np.where(target == -100, 0, w[np.where(target == -100, 0, target)])
    else:
        target = rng.dirichlet(np.ones(c), size=n)
        kw = dict(weight=w, label_smoothing=0.1)
        counted = np.ones(n)
    denom = {"none": None, "sum": 1.0, "mean": np.sum(s * counted)}[reduction]

    # torch: per-sample losses times s, reduced by xent's "mean" denominator
    # (the sum over counted rows of sample weight times class weight).
    tx = torch.tensor(x, requires_grad=True)
    per = F.cross_entropy(tx, torch.tensor(target), reduction="none",
                          weight=torch.tensor(w), label_smoothing=0.1,
                          **({"ignore_index": -100} if kind == "indices" else {}))
    weighted = per * torch.tensor(s)
    total = weighted if denom is None else weighted.sum() / denom
    expected = _torch_reduced(total)

    loss, grad = ref.softmax_cross_entropy_with_grad(
        x, target, sample_weight=s, reduction=reduction, **kw)
    assert_close(loss, expected)
    assert_close(grad, tx.grad.numpy())
    assert np.all(grad[2] == 0)


def test_sample_weight_zero_removes_row():
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 0.0], [1.0, 2.0, 3.0]])
    y = np.array([1, 0, 2])
    loss, grad = ref.softmax_cross_entropy_with_grad(
        x, y, sample_weight=[0.0, 0.0, 2.0], reduction="none")
    assert np.all(loss[:2] == 0) and np.all(grad[:2] == 0)
    expected_loss, expected_grad = torch_ce(x[2:], y[2:], reduction="none")
    assert_close(loss[2:], 2 * expected_loss)
    assert_close(grad[2:], 2 * expected_grad)


# --------------------------------------------------------------------------
# numerics: -inf masks, bad rows
# --------------------------------------------------------------------------

@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_neg_inf_non_target_is_masked(rng, reduction):
    x = rng.normal(size=(6, 5))
    x[:, 3] = -np.inf
    x[0, :4] = -np.inf          # only class 4 left in row 0
    y = np.array([4, 0, 1, 2, 4, 0])
    loss, grad = check_ce(x, y, weight=rng.uniform(0.5, 2, 5), reduction=reduction)
    assert np.all(np.isfinite(loss)) and np.all(grad[:, 3] == 0)
    if reduction == "none":
        assert loss[0] == 0


@pytest.mark.filterwarnings("error")
def test_neg_inf_target_gives_inf_loss_and_finite_grad(rng):
    x = rng.normal(size=(3, 4))
    x[1, 2] = -np.inf
    y = np.array([0, 2, 3])
    for reduction in REDUCTIONS:
        loss, grad = check_ce(x, y, reduction=reduction)
        assert np.all(np.isfinite(grad))
        assert np.isinf(np.asarray(loss)[1] if reduction == "none" else loss)


@pytest.mark.filterwarnings("error")
def test_label_smoothing_with_neg_inf(rng):
    # Target mass eps/C lands on the masked class: +inf loss (as torch),
    # finite gradient; with a class weight of 0 there it contributes 0.
    x = rng.normal(size=(4, 5))
    x[:, 1] = -np.inf
    y = np.array([0, 2, 3, 4])
    loss, grad = check_ce(x, y, label_smoothing=0.1, reduction="none")
    assert np.all(np.isinf(loss)) and np.all(np.isfinite(grad))

    w = np.array([1.0, 0.0, 2.0, 0.5, 1.5])
    stand_in = np.where(np.isinf(x), -1e4, x)   # exp(-1e4 - max) == 0 exactly
    for reduction in REDUCTIONS:
        expected_loss, expected_grad = torch_ce(stand_in, y, weight=w,
                                                label_smoothing=0.1, reduction=reduction)
        loss, grad = ref.softmax_cross_entropy_with_grad(
            x, y, weight=w, label_smoothing=0.1, reduction=reduction)
        assert_close(loss, expected_loss)
        assert_close(grad, expected_grad)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_soft_target_at_neg_inf(rng, reduction):
    # torch gives NaN (0 * -inf); the reference gives the limit, which equals
    # torch on a finite stand-in.
    x = rng.normal(size=(5, 4))
    t = rng.dirichlet(np.ones(4), size=5)
    x[[0, 2, 3], [1, 0, 3]] = -np.inf
    t[[0, 2, 3], [1, 0, 3]] = 0
    stand_in = np.where(np.isinf(x), -1e4, x)
    w = rng.uniform(0.5, 2, 4)
    expected_loss, expected_grad = torch_ce(stand_in, t, weight=w, reduction=reduction)
    loss, grad = ref.softmax_cross_entropy_with_grad(x, t, weight=w, reduction=reduction)
    assert_close(loss, expected_loss)
    assert_close(grad, expected_grad)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("kind", ["indices", "probabilities"])
def test_bad_rows_are_nan_only_there(rng, kind):
    x = rng.normal(size=(6, 4))
    x[1] = -np.inf              # all -inf
    x[2, 1] = np.inf            # +inf
    x[4, 3] = np.nan            # NaN
    good = [0, 3, 5]
    target = (rng.integers(0, 4, size=6) if kind == "indices"
              else rng.dirichlet(np.ones(4), size=6))
    loss, grad = ref.softmax_cross_entropy_with_grad(x, target, label_smoothing=0.1,
                                                     reduction="none")
    assert np.all(np.isnan(loss[[1, 2, 4]])) and np.all(np.isnan(grad[[1, 2, 4]]))
    expected_loss, expected_grad = torch_ce(x[good], target[good], label_smoothing=0.1,
                                            reduction="none")
    assert_close(loss[good], expected_loss)
    assert_close(grad[good], expected_grad)
    assert np.isnan(ref.softmax_cross_entropy(x, target))


def test_extreme_gaps(rng):
    x = rng.normal(size=(5, 8)) * 1e4
    x[0, 0] = x[0, 1] = 50.0    # tie at the max
    x[0, 2:] = -1e4
    y = rng.integers(0, 8, size=5)
    y[0] = 0
    check_ce(x, y, reduction="none", atol=0)

    # Tiny loss and gradient at a dominant true class keep full precision
    # (log1p; softmax_y - 1 = -r / (1 + r)), where torch rounds them to 0.
    x = np.array([[0.0, -60.0, -70.0]])
    r = np.exp(-60.0) + np.exp(-70.0)
    exact_grad = [-r / (1 + r), np.exp(-60.0) / (1 + r), np.exp(-70.0) / (1 + r)]
    for target in (np.array([0]), np.array([[1.0, 0.0, 0.0]])):
        loss, grad = ref.softmax_cross_entropy_with_grad(x, target, reduction="none")
        assert_close(loss, [np.log1p(r)], 1e-15, 0)
        assert_close(grad, [exact_grad], 1e-15, 0)


# --------------------------------------------------------------------------
# float32 / float16 / integer logits
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32(rng, reduction):
    x = rng.normal(scale=4, size=(32, 10)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    w = rng.uniform(0.5, 2, size=10).astype(np.float32)
    loss, grad = check_ce(x, y, weight=w, label_smoothing=0.1, reduction=reduction,
                          rtol=2e-6, atol=1e-6)
    if reduction == "none":
        assert loss.dtype == np.float32
    assert grad.dtype == np.float32
    t = rng.dirichlet(np.ones(10), size=32).astype(np.float32)
    check_ce(x, t, weight=w, reduction=reduction, rtol=2e-6, atol=1e-6)


def test_float16_and_integer_logits(rng):
    x16 = rng.normal(size=(5, 3)).astype(np.float16)
    y = rng.integers(0, 3, size=5)
    loss, grad = ref.softmax_cross_entropy_with_grad(x16, y, reduction="none")
    assert loss.dtype == np.float32 and grad.dtype == np.float16
    expected_loss, expected_grad = torch_ce(x16.astype(np.float32), y, reduction="none")
    assert_close(loss, expected_loss, 1e-6)
    assert_close(grad, expected_grad.astype(np.float16), 0, 0)

    xi = rng.integers(-5, 5, size=(5, 3))
    loss, grad = ref.softmax_cross_entropy_with_grad(xi, y, reduction="none")
    assert loss.dtype == np.float64 and grad.dtype == np.float64
    expected_loss, expected_grad = torch_ce(xi.astype(np.float64), y, reduction="none")
    assert_close(loss, expected_loss)
    assert_close(grad, expected_grad)


# --------------------------------------------------------------------------
# sigmoid binary cross-entropy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (6,), (9, 1), (9, 6)])
@pytest.mark.parametrize("pos_weight_shape", [None, (6,)])
def test_bce(rng, reduction, weight_shape, pos_weight_shape):
    x = rng.normal(scale=4, size=(9, 6))
    x[0, :3] = [40.0, -40.0, 800.0]
    t = rng.uniform(size=(9, 6))
    t[1] = rng.integers(0, 2, size=6)
    w = None if weight_shape is None else rng.uniform(0, 2, size=weight_shape)
    p = None if pos_weight_shape is None else rng.uniform(0.2, 5, size=pos_weight_shape)
    expected_loss, expected_grad = torch_bce(x, t, weight=w, pos_weight=p,
                                             reduction=reduction)
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(
        x, t, weight=w, pos_weight=p, reduction=reduction)
    # torch's (1-t)x + ... cancels for t = 0, x << 0, hence the small atol
    assert_close(loss, expected_loss, RTOL, 1e-13)
    assert_close(grad, expected_grad, RTOL, 1e-15)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert_close(ref.sigmoid_binary_cross_entropy(x, t, weight=w, pos_weight=p,
                                                  reduction=reduction), loss, 0, 0)


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_bce_label_smoothing(rng, eps):
    x = rng.normal(size=(4, 5))
    t = rng.integers(0, 2, size=(4, 5))
    p = rng.uniform(0.5, 3, size=5)
    smoothed = t * (1 - eps) + eps / 2
    expected_loss, expected_grad = torch_bce(x, smoothed, pos_weight=p, reduction="sum")
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(
        x, t, pos_weight=p, label_smoothing=eps, reduction="sum")
    assert_close(loss, expected_loss)
    assert_close(grad, expected_grad, RTOL, 1e-15)


@pytest.mark.parametrize("dtype", [bool, np.int64, np.uint8])
def test_bce_integer_targets(rng, dtype):
    x = rng.normal(size=(3, 4))
    t = rng.integers(0, 2, size=(3, 4))
    expected = ref.sigmoid_binary_cross_entropy_with_grad(x, t.astype(np.float64))
    actual = ref.sigmoid_binary_cross_entropy_with_grad(x, t.astype(dtype))
    assert actual[0] == expected[0]
    assert_close(actual[1], expected[1], 0, 0)


@pytest.mark.filterwarnings("error")
def test_bce_infinite_logits():
    x = np.array([np.inf, np.inf, -np.inf, -np.inf, np.inf])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(x, t, reduction="none")
    assert np.array_equal(loss, [0.0, np.inf, 0.0, np.inf, np.inf])
    assert np.array_equal(grad, [0.0, 1.0, 0.0, -1.0, 0.5])
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(
        x, t, pos_weight=np.full(5, 3.0), reduction="none")
    assert np.array_equal(loss, [0.0, np.inf, 0.0, np.inf, np.inf])
    assert np.array_equal(grad, [0.0, 1.0, 0.0, -3.0, 0.5])
    # finite logits next to them are unaffected, and match torch
    x2 = np.array([np.inf, 0.3, -2.0])
    t2 = np.array([1.0, 0.25, 1.0])
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(x2, t2, reduction="none")
    expected_loss, expected_grad = torch_bce(x2[1:], t2[1:], reduction="none")
    assert_close(loss[1:], expected_loss)
    assert_close(grad[1:], expected_grad)
    assert loss[0] == 0 and grad[0] == 0


def test_bce_empty():
    x = np.zeros((0, 3))
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(x, x)
    assert np.isnan(loss) and grad.shape == (0, 3)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_float32(rng, reduction):
    x = rng.normal(scale=4, size=(16, 8)).astype(np.float32)
    t = rng.uniform(size=(16, 8)).astype(np.float32)
    w = rng.uniform(0, 2, size=8).astype(np.float32)
    p = rng.uniform(0.5, 3, size=8).astype(np.float32)
    expected_loss, expected_grad = torch_bce(x, t, weight=w, pos_weight=p,
                                             reduction=reduction)
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(
        x, t, weight=w, pos_weight=p, reduction=reduction)
    assert grad.dtype == np.float32
    if reduction == "none":
        assert loss.dtype == np.float32
    assert_close(loss, expected_loss, 2e-6, 1e-6)
    assert_close(grad, expected_grad, 2e-6, 1e-7)


# --------------------------------------------------------------------------
# primitives and out= / grad_out=
# --------------------------------------------------------------------------

@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_primitives(rng, axis):
    x = rng.normal(scale=5, size=(4, 6, 5))
    x[0, 0, :] = -np.inf            # a row that is all -inf whatever the axis
    x[:, 0, 0] = -np.inf
    x[1, 1, 1] = np.inf
    x[2, 2, 2] = np.nan
    tx = torch.tensor(x)
    assert_close(ref.logsumexp(x, axis=axis), torch.logsumexp(tx, dim=axis).numpy())
    # torch agrees wherever the row is finite-max; elsewhere the reference is NaN.
    expected_ls = torch.log_softmax(tx, dim=axis).numpy()
    expected_sm = torch.softmax(tx, dim=axis).numpy()
    m = np.max(x, axis=axis, keepdims=True)
    bad = np.broadcast_to(~np.isfinite(m), x.shape)
    ls, sm = ref.log_softmax(x, axis=axis), ref.softmax(x, axis=axis)
    assert np.all(np.isnan(ls[bad])) and np.all(np.isnan(sm[bad]))
    assert_close(ls[~bad], expected_ls[~bad])
    assert_close(sm[~bad], expected_sm[~bad])


def test_out_arguments(rng):
    x = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, size=5)
    buf = np.empty_like(x)
    loss, grad = ref.softmax_cross_entropy_with_grad(x, y, grad_out=buf)
    assert grad is buf and np.array_equal(buf, ref.softmax_cross_entropy_with_grad(x, y)[1])
    buf = np.empty_like(x)
    loss, grad = ref.sigmoid_binary_cross_entropy_with_grad(x, x > 0, grad_out=buf)
    assert grad is buf
    for fn in (ref.softmax, ref.log_softmax):
        buf = np.empty_like(x)
        assert fn(x, axis=0, out=buf) is buf
        assert np.array_equal(buf, fn(x, axis=0))
    # in place on the logits
    x2 = x.copy()
    expected = ref.softmax_cross_entropy_with_grad(x, y)[1]
    ref.softmax_cross_entropy_with_grad(x2, y, grad_out=x2)
    assert np.array_equal(x2, expected)
