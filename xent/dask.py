"""xent's functions on Dask arrays, with the bits of the in-memory call.

Each function here has the name and the arguments of the top-level one and
takes Dask arrays (NumPy arrays are wrapped): the logits chunked along their
rows, with the class axis in one chunk (for BCE and the sigmoid focal loss:
the last axis, and 1-D logits chunked any way; other chunkings are
rechunked, with a :class:`XentChunkWarning`).  The per-sample arrays (class indices,
``sample_weight``, ``target`` of the divergences) and the arrays of the
logits' shape (probability targets, ``target_logits``, BCE's targets and
weights) are rechunked to match the logits.  Each chunk runs the in-memory
function on its worker.

* ``reduction="none"``, the gradients, the token statistics and the
  primitives return Dask arrays of the logits' chunks.
* ``"sum"`` and ``"mean"`` return a lazy 0-d Dask array (float64), and
  ``"state"`` a :class:`dask.delayed.Delayed` of an :class:`xent.ReductionState`:
  each chunk's exact state, merged along a tree.  The states are exact sums,
  so the result is bitwise the in-memory call's for any chunking of the rows
  and on any scheduler (synchronous, threaded, ``distributed`` with processes).
* The gradient of a ``"mean"`` uses the whole array's denominator: it is
  known from the shapes unless the call has a ``sample_weight``, a class
  ``weight`` or an ``ignore_index`` with class indices, where a first pass
  over the chunks sums it (a forward pass of the loss).
* ``n_threads=None`` gives each chunk one thread on the threaded and
  ``distributed`` schedulers (their workers already run one chunk per
  thread: a worker with k threads keeps k cores busy) and xent's default,
  every core, when the chunk runs on the main thread (the synchronous
  scheduler).  An explicit ``n_threads`` is passed on.  The thread count
  never changes the bits.

``grad_out`` and ``out`` (in-memory outputs) are not taken.  Needs ``dask``
(the ``dask`` extra: ``pip install xent[dask]``; ``distributed`` for
clusters).
"""

import sys
import threading
import warnings

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:          # pragma: no cover - exercised without dask
    raise ImportError("xent.dask needs dask: pip install 'xent[dask]' "
                      "(or pip install 'dask[array]')") from exc

import xent

from . import _validate
from ._types import ReductionState

__all__ = [
    "XentChunkWarning",
    "from_npy",
    "js_divergence",
    "js_divergence_with_grad",
    "kl_divergence",
    "kl_divergence_with_grad",
    "log_softmax",
    "logsumexp",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_with_grad",
    "token_stats",
]


class XentChunkWarning(UserWarning):
    """The logits' class axis spanned several chunks and was rechunked."""


# ---------------------------------------------------------------------------
# Reading a .npy file in the workers
# ---------------------------------------------------------------------------
class _NpyRows:
    """Rows [lo, hi) of a .npy file, as a chunk's task reads them: memory-
    mapped where the task runs, the pages read when the kernel reads them.
    A reference to them is what the graph carries; the call on the chunk
    loads them in the same task (one task per chunk, not a read and then a
    call)."""

    __slots__ = ("path", "lo", "hi")

    def __init__(self, path, lo, hi):
        self.path, self.lo, self.hi = path, lo, hi

    def __reduce__(self):
        return (_NpyRows, (self.path, self.lo, self.hi))

    def load(self):
        return np.load(self.path, mmap_mode="r")[self.lo:self.hi]


def _npy_rows(path, lo, hi):
    return _NpyRows(path, lo, hi).load()


def _loaded(v):
    return v.load() if isinstance(v, _NpyRows) else v


def from_npy(path, chunk_rows=None):
    """A Dask array of a ``.npy`` file's rows, each chunk read (memory-mapped)
    by the worker that computes on it.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file of a C-ordered array, at least 1-D (float16, bfloat16
        with ml_dtypes imported, float32, float64, or integer labels).
    chunk_rows : int, optional
        Rows (first-axis entries) per chunk; default: about 512 MiB a chunk.
        A chunk's pages are the operating system's file cache, not the
        worker's memory, and each chunk costs a task of a few milliseconds
        of scheduling: large chunks suit losses and statistics.  A gradient
        or ``reduction="none"`` makes an output the size of the chunk (the
        gradient) in the worker: choose chunk_rows for that.

    Returns
    -------
    dask.array.Array
        The file's shape and dtype, chunked along the first axis only.  The
        graph holds the path, not the data: nothing is read on the client,
        and a cluster's workers must see the same file.  Given as it is to
        this module's functions (not rechunked), each chunk is read by the
        task that computes on it.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xent.dask
    >>> path = os.path.join(tempfile.mkdtemp(), "logits.npy")
    >>> np.save(path, np.zeros((10, 4), np.float32))
    >>> xent.dask.from_npy(path, chunk_rows=4).chunks
    ((4, 4, 2), (4,))
    """
    import os
    path = os.fspath(path)
    head = np.load(path, mmap_mode="r")
    if head.ndim == 0 or not head.flags.c_contiguous:
        raise ValueError(f"`path` must hold a C-ordered array of at least one dimension; got "
                         f"shape {head.shape}{', Fortran order' if head.ndim > 1 else ''}.")
    n = head.shape[0]
    row_bytes = max(1, head.itemsize * (head.size // n if n else 1))
    if chunk_rows is None:
        chunk_rows = max(1, (512 << 20) // row_bytes)
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"`chunk_rows` must be at least 1; got {chunk_rows}.")
    dtype, rest = head.dtype, head.shape[1:]
    del head
    load = dask.delayed(_npy_rows, pure=True)
    parts = [da.from_delayed(load(path, lo, min(lo + chunk_rows, n)),
                             shape=(min(lo + chunk_rows, n) - lo,) + rest, dtype=dtype)
             for lo in range(0, n, chunk_rows)]
    if not parts:
        return da.zeros((0,) + rest, dtype=dtype)
    out = da.concatenate(parts, axis=0)
    out._xent_rows = (path, list(range(0, n, chunk_rows)) + [n])
    return out


# ---------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------
def _as_dask(a):
    return a if isinstance(a, da.Array) else da.asarray(a)


def _caller_level():
    """The warnings' stacklevel of the first frame outside this module (the
    user's call), seen from the function that calls this one."""
    f, level = sys._getframe(1), 1
    while f is not None and f.f_globals.get("__name__") == __name__:
        f, level = f.f_back, level + 1
    return level


def _class_axis_whole(x, axis, name):
    """`x` with its class axis in one chunk (rechunked, with a warning)."""
    if len(x.chunks[axis]) > 1:
        warnings.warn(f"`{name}` has its class axis {axis} in {len(x.chunks[axis])} chunks; "
                      "rechunked to one chunk along it (xent reduces a row in one call).",
                      XentChunkWarning, stacklevel=_caller_level())
        x = x.rechunk({axis: -1})
    return x


def _like(a, x, name, broadcast=False):
    """`a` (an array of the logits' shape, or with `broadcast` one that
    broadcasts to it) with the logits' chunks."""
    a = _as_dask(a)
    if a.shape != x.shape and not broadcast:
        raise ValueError(f"`{name}` must have the shape of `logits`, {x.shape}; got shape "
                         f"{a.shape}.")
    if a.shape != x.shape:
        try:
            a = da.broadcast_to(a, x.shape)
        except ValueError:
            raise ValueError(f"`{name}` must have the shape of `logits`, {x.shape}, or broadcast "
                             f"to it; got shape {a.shape}.") from None
    return a.rechunk(x.chunks)


def _per_sample(a, x, axis, name):
    """`a` (an array of the logits' shape without the class axis) with the
    logits' row chunks."""
    a = _as_dask(a)
    shape = x.shape[:axis] + x.shape[axis + 1:]
    if a.shape != shape:
        raise ValueError(f"`{name}` must have the shape of `logits` without axis {axis}, "
                         f"{shape}; got shape {a.shape}.")
    return a.rechunk(x.chunks[:axis] + x.chunks[axis + 1:])


def _blocks(a, drop=None):
    """The blocks of `a` by the index of the logits' block (the class axis
    `drop` absent from `a`: index 0 there): Delayed blocks, or for an array
    of from_npy chunked as it made it, references to the file's rows that
    the call's task reads itself."""
    rows = getattr(a, "_xent_rows", None)
    if rows is not None and all(len(c) == 1 for c in a.chunks[1:]):
        path, bounds = rows
        d = np.empty(a.numblocks, dtype=object)
        for k in range(a.numblocks[0]):
            d[(k,) + (0,) * (a.ndim - 1)] = _NpyRows(path, bounds[k], bounds[k + 1])
    else:
        d = a.to_delayed()
    if drop is not None:
        d = np.expand_dims(d, drop)
    return d


def _threads(n_threads):
    if n_threads is not None:
        return n_threads
    return None if threading.current_thread() is threading.main_thread() else 1


def _assemble(parts, grid, block_shape, dtype):
    """A Dask array from one Delayed ndarray per block of `grid` (a
    dict index -> Delayed), each of shape block_shape(index)."""
    def nest(prefix):
        if len(prefix) == len(grid):
            idx = tuple(prefix)
            return da.from_delayed(parts[idx], shape=block_shape(idx), dtype=dtype)
        return [nest(prefix + [k]) for k in range(grid[len(prefix)])]
    return da.block(nest([]))


def _merge_tree(states):
    """The merge of a list of Delayed ReductionStates, pairwise along a tree
    (exact: any tree gives the same state)."""
    merge = dask.delayed(ReductionState.merge, pure=True)
    while len(states) > 1:
        states = [merge(states[k], states[k + 1]) if k + 1 < len(states) else states[k]
                  for k in range(0, len(states), 2)]
    return states[0]


def _read(state, reduction):
    return state.sum() if reduction == "sum" else state.mean()


# ---------------------------------------------------------------------------
# The engine: one call of the in-memory function per block of the logits
# ---------------------------------------------------------------------------
class _Plan:
    """The blocks of one call: the logits (class axis `axis`; None for BCE,
    whose every element is its own term) and the other arrays, aligned with
    them, by block index."""

    def __init__(self, x, axis):
        self.x = x
        self.axis = axis
        self.grid = x.numblocks
        self.xb = _blocks(x)             # the logits' blocks
        self.arrays = {}                 # argument name -> its blocks (_blocks)

    def add_like(self, name, a, broadcast=False):
        """An argument of the logits' shape (with `broadcast`, or one that
        broadcasts to it)."""
        if a is not None:
            self.arrays[name] = _blocks(_like(a, self.x, name, broadcast))

    def add_sample(self, name, a):
        """An argument of the per-sample shape (the logits' without the class axis)."""
        if a is not None:
            self.arrays[name] = _blocks(_per_sample(a, self.x, self.axis, name), self.axis)

    def indices(self):
        return list(np.ndindex(*self.grid))

    def block_args(self, idx):
        return {name: blocks[idx] for name, blocks in self.arrays.items()}

    def row_shape(self, idx):
        shape = [c[k] for c, k in zip(self.x.chunks, idx)]
        if self.axis is not None:
            del shape[self.axis]
        return tuple(shape)

    def logits_shape(self, idx):
        return tuple(c[k] for c, k in zip(self.x.chunks, idx))

    def per_sample(self, parts, dtype):
        """A Dask array of the per-sample shape from one Delayed per block."""
        ax = self.axis
        if ax is None:
            return _assemble(parts, self.grid, self.logits_shape, dtype)
        return _assemble({i[:ax] + i[ax + 1:]: p for i, p in parts.items()},
                         self.grid[:ax] + self.grid[ax + 1:],
                         lambda i: self.row_shape(i[:ax] + (0,) + i[ax:]), dtype)

    def like_logits(self, parts, dtype):
        """A Dask array of the logits' shape from one Delayed per block."""
        return _assemble(parts, self.grid, self.logits_shape, dtype)


def _block_call(fn, x, arrays, kwargs, n_threads):
    arrays = {k: _loaded(v) for k, v in arrays.items()}
    return fn(_loaded(x), **arrays, **kwargs, n_threads=_threads(n_threads))


def _block_state_grad(fn, x, arrays, kwargs, n_threads, den):
    """(state, gradient) of one block: the gradient of the sum, or with
    `den` that of the mean over the whole array."""
    token = _validate.GRAD_DEN.set(den)
    try:
        return _block_call(fn, x, arrays, dict(kwargs, reduction="state"), n_threads)
    finally:
        _validate.GRAD_DEN.reset(token)


def _count(state):
    return state.count


def _run(name, plan, kwargs, reduction, n_threads, dtypes, grad=False, den_known=None):
    """Run the in-memory function `name` (its ``_with_grad`` twin with
    `grad`) on every block; `dtypes`: (per-sample losses, gradient)."""
    fn = getattr(xent, name + ("_with_grad" if grad else ""))
    idx = plan.indices()
    xb = plan.xb

    def call(f, i, nout=None, **extra):
        return dask.delayed(_block_call, pure=True, nout=nout)(
            f, xb[i], plan.block_args(i), dict(kwargs, **extra), n_threads)

    def scalar(total):
        if reduction == "state":
            return total
        return da.from_delayed(dask.delayed(_read, pure=True)(total, reduction), shape=(),
                               dtype=np.float64)

    if not grad:
        if reduction == "none":
            return plan.per_sample({i: call(fn, i, reduction="none") for i in idx}, dtypes[0])
        return scalar(_merge_tree([call(fn, i, reduction="state") for i in idx]))
    if reduction == "none":
        outs = {i: call(fn, i, nout=2, reduction="none") for i in idx}
    else:
        den = None
        if reduction == "mean":
            den = den_known
            if den is None:            # a first pass: the denominator's exact sum
                forward = getattr(xent, name)
                den = dask.delayed(_count, pure=True)(
                    _merge_tree([call(forward, i, reduction="state") for i in idx]))
        outs = {i: dask.delayed(_block_state_grad, pure=True, nout=2)(
                    fn, xb[i], plan.block_args(i), kwargs, n_threads, den) for i in idx}
    g = plan.like_logits({i: outs[i][1] for i in idx}, dtypes[1])
    if reduction == "none":
        return plan.per_sample({i: outs[i][0] for i in idx}, dtypes[0]), g
    return scalar(_merge_tree([outs[i][0] for i in idx])), g


def _dtypes(x, *others):
    """(per-sample losses, gradient) dtypes of the in-memory call: the compute
    dtype (both logits' promoted for the divergences), the logits' own for the
    gradient when floating."""
    cdt = _validate.compute_dtype(np.empty(0, x.dtype), "logits")
    for o in others:
        if o is not None:
            cdt = np.promote_types(cdt, _validate.compute_dtype(np.empty(0, o.dtype), "target_logits"))
    return cdt, _validate.grad_dtype(np.empty(0, x.dtype), cdt)


def _prepare(logits, axis, name="logits"):
    """The logits as a Dask array with the class axis in one chunk, and the
    axis (the in-memory function's checks and messages)."""
    x = _as_dask(logits)
    if x.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension (the classes); got a 0-d "
                         "array.")
    ax = _validate.check_axis(axis, x.ndim, array_name=name)
    if x.shape[ax] == 0:
        if name == "x":
            raise ValueError(f"`x` must have at least one element along axis {ax}; got shape "
                             f"{x.shape}.")
        raise ValueError(f"`logits` must have at least one class; axis {ax} of shape {x.shape} "
                         "has length 0.")
    return _class_axis_whole(x, ax, "logits"), ax


def _whole(a):
    """A small argument passed whole to every block (a class weight)."""
    if a is None:
        return None
    return np.asarray(a.compute() if isinstance(a, da.Array) else a)


# The examples of the docstrings: the arrays each family takes, then the call
_SETUP = {
    "labels": "y = np.array([0, 3, 1, 2, 2, 0])",
    "binary": "t = (x > 0).astype(float)",
    "logits": "z = rng.standard_normal((6, 4))",
    "none": "",
}
_FAMILY = {
    "softmax_cross_entropy": "labels", "softmax_focal_loss": "labels", "token_stats": "labels",
    "sigmoid_binary_cross_entropy": "binary", "sigmoid_focal_loss": "binary",
    "kl_divergence": "logits", "js_divergence": "logits",
    "logsumexp": "none", "softmax": "none", "log_softmax": "none",
}
_RETURNS = {
    "loss": """loss : dask.array.Array (0-d), dask.array.Array, or Delayed
        "sum" / "mean": a lazy float64 scalar; "none": the per-sample losses
        in the logits' row chunks; "state": a Delayed ReductionState.""",
    "grad": """loss : dask.array.Array (0-d), dask.array.Array, or Delayed
        As the function without the gradient returns it.
    grad : dask.array.Array, shape = logits.shape
        In the logits' chunks (the gradient of a "mean" over the whole array).""",
    "token_stats": """xent.TokenStats
        Its fields are Dask arrays of the per-sample shape, in the logits' row
        chunks.""",
    "rows": """dask.array.Array
        In the logits' chunks (per-row results: without the class axis).""",
}


def _mirror(name, grad=False):
    """A numpydoc docstring for xent.dask.<name>: the in-memory function it
    runs, what it returns here, and an example that checks the bits."""
    full = name + ("_with_grad" if grad else "")
    family = _FAMILY[name]
    arg = {"labels": ", y", "binary": ", t", "logits": ", z", "none": ""}[family]
    setup = _SETUP[family]
    if grad:
        ret, check = _RETURNS["grad"], (
            f">>> loss, grad = xent.dask.{full}(X{arg})\n"
            f"    >>> bool(np.array_equal(grad.compute(), xent.{full}(x{arg})[1]))\n    True")
    elif name == "token_stats":
        ret, check = _RETURNS["token_stats"], (
            f">>> stats = xent.dask.token_stats(X{arg})\n"
            f"    >>> bool(np.array_equal(stats.lse.compute(), xent.token_stats(x{arg}).lse))\n"
            "    True")
    elif family == "none":
        ret, check = _RETURNS["rows"], (
            f">>> bool(np.array_equal(xent.dask.{full}(X).compute(), xent.{full}(x)))\n    True")
    else:
        ret, check = _RETURNS["loss"], (
            f">>> xent.dask.{full}(X{arg}).compute() == xent.{full}(x{arg})\n    True")
    first = "x" if family == "none" else "logits"

    def wrap(f):
        f.__name__ = full
        f.__qualname__ = full
        f.__doc__ = f""":func:`xent.{full}` on Dask arrays, chunk by chunk, with its bits.

    Parameters
    ----------
    {first} : dask.array.Array or array_like, shape (..., C, ...)
        Chunked along the rows; a class axis in several chunks is rechunked
        (with an :class:`XentChunkWarning`).
    *args, **kwargs
        Those of :func:`xent.{full}`, arrays as Dask or NumPy arrays (rechunked
        to the logits' chunks); ``grad_out`` and ``out`` are not taken.

    Returns
    -------
    {ret}

    See Also
    --------
    xent.{full} : the in-memory function each chunk runs.

    Notes
    -----
    Each chunk runs :func:`xent.{full}` where the scheduler puts it; sums are
    the merge of the chunks' exact states (:class:`xent.ReductionState`), so
    the result is the in-memory call's, bit for bit, for any chunking and on
    any scheduler.  :mod:`xent.dask` has the rules on chunks and threads.

    Examples
    --------
    >>> import numpy as np, dask.array as da, xent, xent.dask
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 4))
    >>> X = da.from_array(x, chunks=(4, 4))
    {(">>> " + setup + chr(10) + "    ") if setup else ""}{check}
    """
        return f
    return wrap


# ---------------------------------------------------------------------------
# Softmax cross-entropy and the softmax focal loss
# ---------------------------------------------------------------------------
def _softmax_family(name, grad, logits, target, axis, weight, sample_weight, ignore_index,
                    reduction, n_threads, **options):
    reduction = _validate.check_reduction(reduction)
    x, ax = _prepare(logits, axis)
    plan = _Plan(x, ax)
    t = _as_dask(target)
    sparse = _validate.kind(t.dtype) in "iub"
    if sparse:
        plan.add_sample("target", t)
    else:
        plan.add_like("target", t)
    plan.add_sample("sample_weight", sample_weight)
    kwargs = dict(axis=ax, ignore_index=ignore_index, weight=_whole(weight), **options)
    known = None
    if sample_weight is None and (not sparse or (weight is None and ignore_index is None)):
        known = float(x.size // x.shape[ax])
    return _run(name, plan, kwargs, reduction, n_threads, _dtypes(x), grad, known)


def _ce(grad):
    @_mirror("softmax_cross_entropy", grad)
    def f(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=None,
          label_smoothing=0.0, temperature=1.0, softcap=None, z_loss=0.0, reduction="mean",
          n_threads=None):
        return _softmax_family("softmax_cross_entropy", grad, logits, target, axis, weight,
                               sample_weight, ignore_index, reduction, n_threads,
                               label_smoothing=label_smoothing, temperature=temperature,
                               softcap=softcap, z_loss=z_loss)
    return f


def _sfl(grad):
    @_mirror("softmax_focal_loss", grad)
    def f(logits, target, *, alpha=None, gamma=2.0, axis=-1, weight=None, ignore_index=None,
          reduction="mean", n_threads=None):
        return _softmax_family("softmax_focal_loss", grad, logits, target, axis, weight, None,
                               ignore_index, reduction, n_threads, alpha=alpha, gamma=gamma)
    return f


softmax_cross_entropy = _ce(False)
softmax_cross_entropy_with_grad = _ce(True)
softmax_focal_loss = _sfl(False)
softmax_focal_loss_with_grad = _sfl(True)


# ---------------------------------------------------------------------------
# Sigmoid binary cross-entropy and the sigmoid focal loss: a row is the last
# axis (BCE sums a long row into one term), so that axis is one chunk; 1-D
# logits are rows of one element, chunked any way
# ---------------------------------------------------------------------------
def _binary_family(name, grad, logits, target, reduction, n_threads, weights, **options):
    reduction = _validate.check_reduction(reduction)
    x = _as_dask(logits)
    if x.ndim >= 2:
        x = _class_axis_whole(x, x.ndim - 1, "logits")
    plan = _Plan(x, None)
    plan.add_like("target", target)
    for k, v in weights.items():
        plan.add_like(k, v, broadcast=True)
    cdt, gdt = _dtypes(x)
    return _run(name, plan, options, reduction, n_threads, (cdt, gdt), grad, float(x.size))


def _bce(grad):
    @_mirror("sigmoid_binary_cross_entropy", grad)
    def f(logits, target, *, weight=None, pos_weight=None, label_smoothing=0.0,
          reduction="mean", n_threads=None):
        return _binary_family("sigmoid_binary_cross_entropy", grad, logits, target, reduction,
                              n_threads, dict(weight=weight, pos_weight=pos_weight),
                              label_smoothing=label_smoothing)
    return f


def _sigfl(grad):
    @_mirror("sigmoid_focal_loss", grad)
    def f(logits, target, *, alpha=0.25, gamma=2.0, reduction="mean", n_threads=None):
        return _binary_family("sigmoid_focal_loss", grad, logits, target, reduction, n_threads,
                              {}, alpha=alpha, gamma=gamma)
    return f


sigmoid_binary_cross_entropy = _bce(False)
sigmoid_binary_cross_entropy_with_grad = _bce(True)
sigmoid_focal_loss = _sigfl(False)
sigmoid_focal_loss_with_grad = _sigfl(True)


# ---------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------
def _div_family(name, grad, logits, target_logits, axis, sample_weight, reduction, n_threads,
                target=None, ignore_index=None, **options):
    reduction = _validate.check_reduction(reduction)
    x, ax = _prepare(logits, axis)
    z = _as_dask(target_logits)
    plan = _Plan(x, ax)
    plan.add_like("target_logits", z)
    plan.add_sample("sample_weight", sample_weight)
    plan.add_sample("target", target)
    kwargs = dict(axis=ax, **options)
    if name == "kl_divergence":
        kwargs["ignore_index"] = ignore_index
    known = None
    if sample_weight is None and ignore_index is None:
        known = float(x.size // x.shape[ax])
    return _run(name, plan, kwargs, reduction, n_threads, _dtypes(x, z), grad, known)


def _kl(grad):
    @_mirror("kl_divergence", grad)
    def f(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False, sample_weight=None,
          ignore_index=None, target=None, reduction="mean", n_threads=None):
        return _div_family("kl_divergence", grad, logits, target_logits, axis, sample_weight,
                           reduction, n_threads, target=target, ignore_index=ignore_index,
                           temperature=temperature, reverse=reverse)
    return f


def _js(grad):
    @_mirror("js_divergence", grad)
    def f(logits, target_logits, *, beta=0.5, axis=-1, temperature=1.0, sample_weight=None,
          reduction="mean", n_threads=None):
        return _div_family("js_divergence", grad, logits, target_logits, axis, sample_weight,
                           reduction, n_threads, beta=beta, temperature=temperature)
    return f


kl_divergence = _kl(False)
kl_divergence_with_grad = _kl(True)
js_divergence = _js(False)
js_divergence_with_grad = _js(True)


# ---------------------------------------------------------------------------
# Per-row functions: token statistics and the softmax primitives
# ---------------------------------------------------------------------------
@_mirror("token_stats")
def token_stats(logits, target=None, *, axis=-1, temperature=1.0, ignore_index=None,
                n_threads=None):
    x, ax = _prepare(logits, axis)
    plan = _Plan(x, ax)
    plan.add_sample("target", target)
    cdt = _dtypes(x)[0]
    kwargs = dict(axis=ax, temperature=temperature, ignore_index=ignore_index)
    parts = {i: dask.delayed(_block_call, pure=True)(xent.token_stats, plan.xb[i],
                                                    plan.block_args(i), kwargs, n_threads)
             for i in plan.indices()}
    fields = [("lse", cdt), ("entropy", cdt), ("argmax", np.int64)]
    if target is not None:
        fields += [("logprob", cdt), ("rank", np.int64)]
    out = {f: plan.per_sample({i: dask.delayed(getattr, pure=True)(p, f)
                               for i, p in parts.items()}, dt) for f, dt in fields}
    return xent.TokenStats(**out)


def _lse_block(x, b, kwargs):
    return xent.logsumexp(_loaded(x), **({} if b is None else {"b": _loaded(b)}), **kwargs)


def _item(r, k):
    return r[k]


@_mirror("logsumexp")
def logsumexp(x, axis=-1, b=None, keepdims=False, return_sign=False):
    a, ax = _prepare(x, axis, "x")
    plan = _Plan(a, ax)
    plan.add_like("b", b, broadcast=True)
    kwargs = dict(axis=ax, keepdims=keepdims, return_sign=return_sign)
    parts = {i: dask.delayed(_lse_block, pure=True)(plan.xb[i], plan.block_args(i).get("b"),
                                                   kwargs)
             for i in plan.indices()}
    cdt = _dtypes(a)[0]

    def shaped(ps):
        if keepdims:                    # the class axis kept, of length 1
            return _assemble(ps, plan.grid,
                             lambda i: plan.row_shape(i)[:ax] + (1,) + plan.row_shape(i)[ax:], cdt)
        return plan.per_sample(ps, cdt)
    if not return_sign:
        return shaped(parts)
    return tuple(shaped({i: dask.delayed(_item, pure=True)(p, k) for i, p in parts.items()})
                 for k in (0, 1))


def _rowwise_block(fn, x, axis):
    return fn(_loaded(x), axis=axis)


def _softmax_like(fn, x, axis):
    a, ax = _prepare(x, axis, "x")
    plan = _Plan(a, ax)
    return plan.like_logits({i: dask.delayed(_rowwise_block, pure=True)(fn, plan.xb[i], ax)
                             for i in plan.indices()}, _dtypes(a)[1])


@_mirror("softmax")
def softmax(x, axis=-1):
    return _softmax_like(xent.softmax, x, axis)


@_mirror("log_softmax")
def log_softmax(x, axis=-1):
    return _softmax_like(xent.log_softmax, x, axis)
