"""PyTorch's cross-entropy losses on xent's kernels: drop-in, with autograd.

``xent.torch.cross_entropy``, ``binary_cross_entropy_with_logits``,
``CrossEntropyLoss`` and ``BCEWithLogitsLoss`` take the arguments of their
``torch.nn.functional`` / ``torch.nn`` namesakes, in the same order
(PyTorch's deprecated ``size_average`` and ``reduce`` included), and give the
same results.  The modules are subclasses of PyTorch's, so their state
(``weight``, ``pos_weight`` buffers, ``state_dict``) is PyTorch's.

How a call runs: CPU tensors of float32, float64, float16 and bfloat16 reach
the NumPy kernels as zero-copy views (the 16-bit ones by their bit patterns).
Where autograd needs the gradient, the forward computes the loss and the
gradient with respect to ``input`` in one sweep, into a new array that
becomes a tensor without a copy (``torch.from_numpy``); the backward only
scales that gradient by the incoming one (per row for ``reduction="none"``)
into the tensor autograd hands on.  16-bit inputs are computed in float32; a "mean" or
"sum" is rounded once to the input dtype, and ``reduction="none"`` returns
float32 for them, as the NumPy API does.

PyTorch's own function runs instead for what xent does not compute: tensors
on another device, other dtypes (PyTorch then raises its own error), and
calls of fewer than ``SMALL`` elements (cross-entropy over at most
``FEW_CLASSES`` classes: fewer than ``SMALL_FEW_ROWS`` rows), where the
adapter's fixed cost
exceeds PyTorch's kernel.  A second derivative (``create_graph=True``
through the loss) raises a RuntimeError.

The operators are ``torch.library.custom_op``\\ s (``xent::cross_entropy``,
``xent::binary_cross_entropy_with_logits`` and their ``_with_grad`` twins)
with ``register_fake`` and ``register_autograd``, so ``torch.compile``
traces models that use them.  Exposing another xent loss is one call of
:func:`register_loss`.

``import xent`` does not import this module or torch.
"""

from __future__ import annotations

import weakref
from typing import Callable, Optional

import numpy as np
import torch
from torch.nn import _reduction as _legacy

import xent

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "binary_cross_entropy_with_logits",
           "cross_entropy", "register_loss"]

# Below this many input elements PyTorch's own kernel is faster than the
# adapter's fixed cost (the autograd glue, the tensor <-> array views, the
# validation): the break-even size of `python -m xent bench --torch-adapter`
# (forward + backward, float32, 2 threads; benchmarks/RESULTS.md).
SMALL = 1 << 18
# With few classes PyTorch's cross-entropy costs up to 0.1 us per row (it
# depends on C: 1024 x 10 2.4x, 1024 x 8 2.0x, 1024 x 16 0.90x, 2048 x 16
# 1.02x, 2048 x 2 1.12x, 256 x 16 0.69x, forward + backward, 2 threads), so
# the adapter takes cross-entropy over at most FEW_CLASSES classes from
# SMALL_FEW_ROWS rows on.
FEW_CLASSES = 16
SMALL_FEW_ROWS = 2048

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_SIXTEEN = (torch.float16, torch.bfloat16)


def _array(t: Optional[torch.Tensor]):
    """A CPU tensor as a NumPy array on its memory (bfloat16 as
    ``ml_dtypes.bfloat16``); None stays None."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype == torch.bfloat16:
        try:
            from ml_dtypes import bfloat16
        except ImportError:
            raise TypeError("bfloat16 tensors need ml_dtypes (pip install ml_dtypes, or "
                            '"xent[torch]").') from None
        return t.view(torch.int16).numpy().view(bfloat16)
    return t.numpy()


class _GradientBuffers:
    """Memory for large gradients, recycled: a gradient tensor's memory goes
    back to a small free list when the last tensor on it is gone (a
    finalizer on the array torch holds), and the next gradient of that size
    takes it.  Fresh memory is zeroed by the operating system page by page
    on first write; a 2048 x 32000 float32 gradient (262 MB) spent as long
    there as in the loss and gradient themselves."""

    MIN_BYTES = 1 << 20     # smaller ones come from malloc's heap, already mapped
    KEEP = 2                # buffers kept per size
    MAX_HELD = 1 << 30      # bytes kept in all (varying sizes must not pile up)

    def __init__(self):
        self.free = {}
        self.held = 0

    def array(self, shape, dtype):
        """An uninitialised C-contiguous array, on recycled memory when large."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < self.MIN_BYTES:
            return np.empty(shape, dtype)
        kept = self.free.setdefault(nbytes, [])
        try:
            raw = kept.pop()
            self.held -= nbytes
        except IndexError:
            raw = np.empty(nbytes, np.uint8)
        arr = raw.view(dtype).reshape(shape)
        weakref.finalize(arr, self._release, kept, raw)
        return arr

    def _release(self, kept, raw):
        if len(kept) < self.KEEP and self.held + raw.nbytes <= self.MAX_HELD:
            kept.append(raw)
            self.held += raw.nbytes


_buffers = _GradientBuffers()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A NumPy result as a tensor on its memory (bfloat16 by its bits)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _grad_out(x: np.ndarray):
    """Where a large gradient goes (recycled memory); None: the kernels'
    own new array."""
    if x.nbytes < _GradientBuffers.MIN_BYTES:
        return None
    return _buffers.array(x.shape, x.dtype)


def _loss_dtype(input: torch.Tensor, reduction: str) -> torch.dtype:
    """The loss's dtype: the input's; float32 for a 16-bit "none"."""
    if reduction == "none" and input.dtype in _SIXTEEN:
        return torch.float32
    return input.dtype


def _as_loss(value, input: torch.Tensor, reduction: str) -> torch.Tensor:
    """The NumPy result (a float, or the per-sample array) as a tensor."""
    if reduction == "none":
        return torch.from_numpy(np.asarray(value))
    return torch.tensor(value, dtype=_loss_dtype(input, reduction))


# ---------------------------------------------------------------------------
# The generic mechanism: one registration per loss
# ---------------------------------------------------------------------------

class _Loss:
    """The two operators of one loss and the autograd glue between them."""

    def __init__(self, name: str, schema_args: str, compute: Callable, loss_shape: Callable):
        self.compute = compute
        self.loss_shape = loss_shape
        names = [a.split()[-1] for a in schema_args.split(",")]
        self.reduction_at = names.index("reduction")
        self.n_rest = len(names) - 1                 # the arguments after input
        lib = f"xent::{name}"
        self.forward = torch.library.custom_op(
            lib, mutates_args=(), schema=f"({schema_args}) -> Tensor")(self._loss)
        self.with_grad = torch.library.custom_op(
            lib + "_with_grad", mutates_args=(),
            schema=f"({schema_args}) -> (Tensor, Tensor)")(self._loss_and_grad)
        self.forward.register_fake(self._fake_loss)
        self.with_grad.register_fake(self._fake_both)
        self.with_grad.register_autograd(self._backward, setup_context=self._setup)

    # eager kernels
    def _loss(self, input, target, *args):
        return self.compute(input, target, *args, want_grad=False)

    def _loss_and_grad(self, input, target, *args):
        return self.compute(input, target, *args, want_grad=True)

    # shapes and dtypes only, for tracing
    def _fake_loss(self, input, target, *args):
        reduction = args[self.reduction_at - 2]
        return input.new_empty(self.loss_shape(input, target, reduction),
                               dtype=_loss_dtype(input, reduction))

    def _fake_both(self, input, target, *args):
        return self._fake_loss(input, target, *args), torch.empty_like(input)

    # autograd: the saved gradient scaled by the incoming one
    def _setup(self, ctx, inputs, output):
        ctx.save_for_backward(output[1])

    def _backward(self, ctx, grad_loss, grad_of_grad):
        return (_scaled(ctx, grad_loss),) + (None,) * self.n_rest

    def __call__(self, input, target, *args):
        """Under torch.compile the operators; in eager mode the same
        computation without the dispatcher's round trips (a custom
        operator's fixed cost is several times a small call's)."""
        want_grad = torch.is_grad_enabled() and input.requires_grad
        if torch.compiler.is_compiling():
            if want_grad:
                return self.with_grad(input, target, *args)[0]
            return self.forward(input, target, *args)
        if want_grad:
            return _Eager.apply(self, input, target, *args)
        return self.compute(input, target, *args, want_grad=False)


def _scaled(ctx, grad_loss, eager=False):
    """The backward: the forward's gradient scaled by the incoming one (per
    sample for "none").  In eager mode ``loss.backward()`` scales by 1: the
    forward's gradient itself is handed on, without a copy (autograd takes it
    as the input's .grad).  The saved gradient is never modified, so a second
    backward through a retained graph gets the same."""
    if torch.is_grad_enabled():
        raise RuntimeError("xent.torch losses have a first derivative only; for a second "
                           "(create_graph=True) use torch.nn.functional's loss.")
    (grad,) = ctx.saved_tensors
    if eager and grad_loss.dim() == 0 and grad_loss.item() == 1.0:
        return grad
    if 0 < grad_loss.dim() < grad.dim():
        grad_loss = grad_loss.unsqueeze(1)      # "none": along the class dimension
    return (grad * grad_loss).to(grad.dtype)


class _Eager(torch.autograd.Function):
    """The fused operator's eager twin: the same compute and backward."""

    @staticmethod
    def forward(ctx, loss, input, target, *args):
        value, grad = loss.compute(input, target, *args, want_grad=True)
        ctx.save_for_backward(grad)
        ctx.n_rest = loss.n_rest
        return value

    @staticmethod
    def backward(ctx, grad_loss):
        return (None, _scaled(ctx, grad_loss, eager=True)) + (None,) * ctx.n_rest


def register_loss(name: str, schema_args: str, compute: Callable, loss_shape: Callable) -> _Loss:
    """Expose an xent loss to PyTorch as two custom operators with autograd.

    Parameters
    ----------
    name : str
        The operator's name: ``xent::<name>`` and ``xent::<name>_with_grad``.
    schema_args : str
        Its arguments in ``torch.library`` schema syntax, starting with
        ``Tensor input, Tensor target`` and naming one ``str reduction``.
    compute : callable
        ``compute(input, target, *args, want_grad)`` returns the loss, or the
        loss and the gradient with respect to `input`, as tensors.
    loss_shape : callable
        ``loss_shape(input, target, reduction)``: the loss's shape.

    Returns
    -------
    loss : callable
        ``loss(input, target, *args)``: runs the loss-only operator, or the
        fused one when autograd needs the gradient.

    Examples
    --------
    This module's cross-entropy is registered so, as two operators:

    >>> import torch, xent.torch
    >>> torch.ops.xent.cross_entropy_with_grad
    <OpOverloadPacket(op='xent.cross_entropy_with_grad')>
    """
    return _Loss(name, schema_args, compute, loss_shape)


# ---------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------

def _ce_compute(input, target, weight, ignore_index, reduction, label_smoothing, *, want_grad):
    x = _array(input)
    axis = 1 if input.dim() > 1 else 0
    probabilities = target.is_floating_point()
    opts = dict(axis=axis, weight=_array(weight), label_smoothing=label_smoothing,
                reduction=reduction)
    if not probabilities:
        opts["ignore_index"] = ignore_index
    if not want_grad:
        return _as_loss(xent.softmax_cross_entropy(x, _array(target), **opts), input, reduction)
    loss, grad = xent.softmax_cross_entropy_with_grad(x, _array(target), grad_out=_grad_out(x),
                                                      **opts)
    return _as_loss(loss, input, reduction), _tensor(grad)


def _ce_loss_shape(input, target, reduction):
    if reduction != "none":
        return ()
    if target.is_floating_point():
        return input.shape[:1] + input.shape[2:] if input.dim() > 1 else ()
    return target.shape


_cross_entropy = register_loss(
    "cross_entropy",
    "Tensor input, Tensor target, Tensor? weight, int ignore_index, str reduction, "
    "float label_smoothing",
    _ce_compute, _ce_loss_shape)


def _takes(input: torch.Tensor, target: torch.Tensor, *weights: Optional[torch.Tensor],
           few_rows: Optional[int] = None) -> bool:
    """Whether xent computes this call, else PyTorch's own function: CPU
    tensors of a dtype xent takes, of at least SMALL elements (or
    `few_rows`, the rows of a cross-entropy over few classes, of at least
    SMALL_FEW_ROWS), and a gradient wanted of `input` only (PyTorch
    differentiates a target, and refuses a weight, that requires grad)."""
    large = input.numel() >= SMALL or (few_rows is not None and few_rows >= SMALL_FEW_ROWS)
    return (input.device.type == "cpu" and target.device.type == "cpu"
            and input.dtype in _DTYPES and large
            and not target.requires_grad
            and not any(w is not None and (w.requires_grad or w.device.type != "cpu")
                        for w in weights))


def _ce_shapes_ok(input, target, weight, label_smoothing, reduction) -> bool:
    """The arguments PyTorch's cross_entropy accepts (others go to it, for
    its own error): class-index or probability targets of matching shape, a
    weight of (C,), a smoothing in [0, 1], a known reduction."""
    C = input.shape[1] if input.dim() > 1 else input.shape[0]
    if target.is_floating_point():
        shape_ok = target.shape == input.shape
    else:
        shape_ok = target.dtype == torch.int64 and target.shape == (
            input.shape[:1] + input.shape[2:] if input.dim() > 1 else ())
    return (shape_ok and (weight is None or weight.shape == (C,))
            and 0.0 <= label_smoothing <= 1.0 and reduction in ("mean", "sum", "none"))


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  size_average: Optional[bool] = None, ignore_index: int = -100,
                  reduce: Optional[bool] = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` on xent's kernels.

    Parameters
    ----------
    input : Tensor, shape (N, C), (C,) or (N, C, d1, ..., dK)
        Logits; the classes along dimension 1 (0 for an unbatched input).
    target : Tensor, shape (N,), () or (N, d1, ..., dK) of int64; or input's shape, float
        Class indices, or probabilities.
    weight : Tensor, shape (C,), optional
    size_average, reduce : deprecated
        PyTorch's; they map to `reduction` as PyTorch maps them.
    ignore_index : int, default -100
        Class indices only.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0

    Returns
    -------
    Tensor
        A 0-d tensor for "mean" and "sum"; per-sample losses for "none".

    Notes
    -----
    The formulas and the stable evaluation are :func:`xent.softmax_cross_entropy`'s
    (``lse(x) - x_y`` with ``lse = m + log1p(...)``, ``m`` the row's max).

    Examples
    --------
    >>> import torch, xent.torch as xt
    >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = xt.cross_entropy(logits, torch.tensor([0, 2]))
    >>> round(loss.item(), 6)
    0.634229
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy.legacy_get_string(size_average, reduce)
    C = input.shape[1] if input.dim() > 1 else (input.shape[0] if input.dim() else 0)
    few_rows = input.numel() // C if 0 < C <= FEW_CLASSES else None
    if not (_takes(input, target, weight, few_rows=few_rows) and input.dim() > 0
            and _ce_shapes_ok(input, target, weight, label_smoothing, reduction)):
        return torch.nn.functional.cross_entropy(input, target, weight, None, ignore_index, None,
                                                 reduction, label_smoothing)
    return _cross_entropy(input, target, weight, ignore_index, reduction, float(label_smoothing))


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computing with :func:`xent.torch.cross_entropy`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As ``torch.nn.CrossEntropyLoss`` (the module's state is its).

    Examples
    --------
    >>> import torch, xent.torch as xt
    >>> loss = xt.CrossEntropyLoss()(torch.zeros(2, 4), torch.tensor([1, 3]))
    >>> round(loss.item(), 6)
    1.386294
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


# ---------------------------------------------------------------------------
# Binary cross-entropy with logits
# ---------------------------------------------------------------------------

def _bce_compute(input, target, weight, pos_weight, reduction, *, want_grad):
    opts = dict(weight=_array(weight), pos_weight=_array(pos_weight), reduction=reduction)
    x, t = _array(input), _array(target)
    if not want_grad:
        return _as_loss(xent.sigmoid_binary_cross_entropy(x, t, **opts), input, reduction)
    loss, grad = xent.sigmoid_binary_cross_entropy_with_grad(x, t, grad_out=_grad_out(x), **opts)
    return _as_loss(loss, input, reduction), _tensor(grad)


def _bce_loss_shape(input, target, reduction):
    return input.shape if reduction == "none" else ()


_bce = register_loss(
    "binary_cross_entropy_with_logits",
    "Tensor input, Tensor target, Tensor? weight, Tensor? pos_weight, str reduction",
    _bce_compute, _bce_loss_shape)


def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor,
                                     weight: Optional[torch.Tensor] = None,
                                     size_average: Optional[bool] = None,
                                     reduce: Optional[bool] = None, reduction: str = "mean",
                                     pos_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` on xent's kernels.

    Parameters
    ----------
    input : Tensor, any shape
        Logits.
    target : Tensor, input's shape
        Targets in [0, 1].
    weight : Tensor, broadcastable to input's shape, optional
    size_average, reduce : deprecated
        PyTorch's; they map to `reduction` as PyTorch maps them.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : Tensor, broadcastable to input's shape (e.g. (C,)), optional

    Returns
    -------
    Tensor
        A 0-d tensor for "mean" and "sum"; elementwise losses for "none".

    Notes
    -----
    :func:`xent.sigmoid_binary_cross_entropy`'s formulas: a sum of
    non-negative softplus terms, finite gradients at infinite logits.

    Examples
    --------
    >>> import torch, xent.torch as xt
    >>> loss = xt.binary_cross_entropy_with_logits(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
    >>> round(loss.item(), 6)
    1.410038
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy.legacy_get_string(size_average, reduce)
    if not (_takes(input, target, weight, pos_weight) and target.dtype in _DTYPES
            and target.shape == input.shape and reduction in ("mean", "sum", "none")):
        return torch.nn.functional.binary_cross_entropy_with_logits(
            input, target, weight, None, None, reduction, pos_weight)
    return _bce(input, target, weight, pos_weight, reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computing with
    :func:`xent.torch.binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight, size_average, reduce, reduction, pos_weight
        As ``torch.nn.BCEWithLogitsLoss`` (the module's state is its).

    Examples
    --------
    >>> import torch, xent.torch as xt
    >>> loss = xt.BCEWithLogitsLoss()(torch.zeros(4), torch.ones(4))
    >>> round(loss.item(), 6)
    0.693147
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)
