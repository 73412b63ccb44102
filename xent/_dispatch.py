"""Dispatch: a validated call, described once, handed to the kernels.

The public functions validate their arguments and bring the arrays to the
layout the kernels read (``xent._validate``); what they hand on is a
:class:`Call`.  The kernels' plan (``xent_plan``, csrc/_xent_tiles.h)
decides the path from the call's kernel, shape, storage and thread count;
:func:`path` shows that decision, and the small-call limit, without running
anything.
"""

import numpy as np

from . import _kernels

_STORAGE = _kernels.STORAGE      # by dtype name
_F64 = _STORAGE["float64"]
_STORAGE_OF = {np.dtype(name): code for name, code in _STORAGE.items() if name != "bfloat16"}


def storage_code(dtype):
    """The kernels' code of the logits' storage dtype (bfloat16 by its name)."""
    code = _STORAGE_OF.get(dtype)
    return code if code is not None else _STORAGE[np.dtype(dtype).name]


# The small-call path (``_kernels.small_*``) takes one tile of logits at most:
# one tile is what it runs on the calling thread without the team.
SMALL_CALL_ELEMS = _kernels.TILE_ELEMS
_SMALL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def small_call(x):
    """Whether `x` may take the small-call path: a plain ndarray of one tile
    at most (the kernels' small_* functions then recognise the rest of the
    call: native float32 / float64, the layouts they read; or decline it)."""
    return type(x) is np.ndarray and 0 < x.size <= SMALL_CALL_ELEMS


def is_16_bit(dtype):
    """float16, or bfloat16 (``ml_dtypes.bfloat16``, recognised by its name,
    so that xent needs ml_dtypes only where the caller has it)."""
    return dtype.itemsize == 2 and (dtype.kind == "f" or (dtype.kind == "V"
                                                          and dtype.name == "bfloat16"))


def storage(x, cdt):
    """What the kernels read: 16-bit logits as they are (widened a tile at a
    time, in cache), in native byte order; everything else converted to the
    compute dtype."""
    if not is_16_bit(x.dtype):
        return cdt
    return np.dtype(np.float16) if x.dtype.kind == "f" else x.dtype


class Call:
    """One call to a kernel, validated: the arrays in their final layout
    (C-contiguous, aligned, native-endian; logits of the storage dtype,
    everything else of the compute dtype) and the options resolved.

    ``kernel`` names the row operation (``"index"``, ``"prob"``, ``"bce"``,
    ``"softmax"``, ``"keras"``, ``"labels"``, ``"stats"``, ``"focal"``,
    ``"sfocal"``, ``"div"``); ``x`` is the ``(n, C)`` logits
    (BCE: the flat logits, rows of the last axis, ``C`` long), ``second``
    the divergences' target logits, of ``x``'s shape and storage; ``loss`` and
    ``out`` are the outputs the kernel writes (per row and per entry).  The
    options a kernel does not use keep the class defaults below.  The
    caller may add what it needs to shape the results (xent._validate)."""

    x = second = target = labels = weight = sample_weight = weight2 = pos_weight2 = None
    loss = out = entropy = logprob = argmax = rank = None
    state = None        # an int64 array of _kernels.RS_WORDS: the sum's exact state goes there
    has_ignore = False
    ignore = mode = 0
    eps = lo = hi = softcap = z_loss = alpha = gamma = 0.0
    beta = 0.5
    scale = temperature = 1.0

    def __init__(self, kernel, n, C, dtype, n_threads, **options):
        self.op = _kernels.OPS[kernel]
        self.storage = storage_code(dtype)
        # the weights' element size: float32 for 16-bit logits
        self.itemsize = 8 if self.storage == _F64 else 4
        self.n = n
        self.C = C
        self.n_threads = n_threads
        self.__dict__.update(options)


def run(call):
    """Run `call`: the sum of its losses (the label check: (first bad
    position or -1, the "mean" denominator))."""
    return _kernels.run(call)


def path(kernel, shape, dtype, n_threads=1, label_smoothing=0.0):
    """The path a call of `kernel` on logits of `shape` (class axis last) and
    `dtype` takes with `n_threads` threads.

    Returns a dict: ``small`` (a small call: the fast path's one tile on the
    calling thread), ``sixteen_bit`` (widened a tile at a time),
    ``units_per_tile`` and ``tiles``, ``lanes`` (few classes as SIMD lanes),
    ``group`` (rows whose statistics are computed together), ``split``
    (rows split into column chunks over the threads).
    """
    dt = np.dtype(dtype)
    shape = tuple(shape)
    C = shape[-1] if shape else 1
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    n = size if kernel == "bce" else (size // C if C else 0)
    p = _kernels.plan(_kernels.OPS[kernel], storage_code(dt), n, C, float(label_smoothing), n_threads)
    p["small"] = dt in _SMALL_DTYPES and 0 < size <= SMALL_CALL_ELEMS
    p["sixteen_bit"] = is_16_bit(dt)
    return p
