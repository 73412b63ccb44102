"""Compare two models' logits for the same tokens: :func:`xent.compare` and
``python -m xent compare``.

The logits are read a chunk of rows at a time (memory-mapped ``.npy`` files,
NumPy arrays or Dask arrays), so files larger than memory are compared in
bounded memory.  Per chunk, three kernel calls read the rows:
:func:`xent.kl_divergence` (``reduction="none"``) and :func:`xent.token_stats`
of each model; what is kept of a chunk is its per-token KL divergences and
``|p_test(target) - p_base(target)|`` (for the exact percentiles) and the
exact sums of its per-token values (for the means).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from . import _api, _kernels
from ._validate import LabelError, as_array, kind, resolve_n_threads

# The bytes a chunk of both inputs (in their dtypes) and xent's per-row
# outputs come to, by default: large enough that a chunk's kernel calls run
# at full speed on every thread, small enough to stay far below the 1 GB the
# whole comparison may hold.
CHUNK_BYTES = 64 << 20

# Per row and chunk, what the three kernel calls and the float64 vectors of
# the target's probabilities hold: KL (<= 8 bytes), two token_stats (lse,
# entropy, logprob <= 8 bytes each; argmax, rank 8 bytes each) and the
# float64 p_base, p_test, dp.
_ROW_OUTPUT_BYTES = 8 + 2 * (3 * 8 + 2 * 8) + 3 * 8

# The report's keys, in the order they are returned and printed, with what
# each one is; the label-dependent ones only when there is a target.
KEYS = {
    "n_tokens": "tokens compared",
    "ppl_base": "perplexity of BASE: exp(mean cross-entropy)",
    "ppl_test": "perplexity of TEST",
    "ppl_ratio": "ppl_test / ppl_base",
    "kl_mean": "mean KL(base || test) per token, nats",
    "kl_median": "median KL (p50)",
    "kl_p90": "90th percentile of KL",
    "kl_p99": "99th percentile of KL",
    "kl_max": "largest KL",
    "same_argmax": "fraction of tokens whose argmaxes agree",
    "dp_mean": "mean of p_test(target) - p_base(target)",
    "dp_p99": "99th percentile of |p_test(target) - p_base(target)|",
}

# Token labels are checked ahead of the comparison this many at a time.
_LABEL_BLOCK = 1 << 20


def _dask_array_type():
    """dask.array.Array, where dask.array has been imported: a dask array
    cannot exist before, so xent never imports dask itself just to check."""
    module = sys.modules.get("dask.array")
    return getattr(module, "Array", None) if module is not None else None


def _is_dask(x):
    cls = _dask_array_type()
    return cls is not None and isinstance(x, cls)


def _load(x, name):
    """A path as its memory-mapped .npy array; other inputs as they are."""
    if not isinstance(x, (str, os.PathLike)):
        return x
    path = os.fspath(x)
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as exc:
        # np.load falls back to unpickling anything that is not .npy/.npz
        raise ValueError(f"`{name}` must be a .npy file; {path!r} is not one ({exc}).") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise ValueError(f"`{name}` must be a .npy file holding one array; {path!r} is a .npz "
                         "archive.")
    return arr


def _bfloat16_view(a, name):
    """NumPy saves ml_dtypes' bfloat16 arrays as 2-byte void ('<V2'): such
    an input is read as bfloat16, the only 2-byte dtype that is stored so."""
    if a.dtype.kind == "V" and a.dtype.itemsize == 2 and a.dtype.names is None \
            and a.dtype.name != "bfloat16":
        try:
            from ml_dtypes import bfloat16
        except ImportError:
            raise TypeError(f"`{name}` has dtype {a.dtype}, as NumPy saves bfloat16 arrays; "
                            "reading them as bfloat16 needs ml_dtypes (pip install ml_dtypes)."
                            ) from None
        return a.view(bfloat16)
    return a


def _logits(x, name):
    x = _load(x, name)
    if not _is_dask(x):
        x = as_array(x, name)
    x = _bfloat16_view(x, name)
    if kind(x.dtype) != "f":
        raise TypeError(f"`{name}` must hold floating-point logits (float16, bfloat16, float32 "
                        f"or float64); got dtype {x.dtype}.")
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D logits of shape (N, C), one row per token; got "
                         f"shape {x.shape}.")
    if any(isinstance(s, float) and math.isnan(s) for s in x.shape):
        raise ValueError(f"`{name}` is a dask array of unknown chunk sizes, shape {x.shape}; call "
                         f"its compute_chunk_sizes() first.")
    return x


def _labels(y, n_tokens):
    y = _load(y, "target")
    if not _is_dask(y):
        y = as_array(y, "target")
    if y.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices; got dtype {y.dtype}.")
    if y.shape != (n_tokens,):
        raise ValueError(f"`target` must have shape ({n_tokens},), one class index per row of "
                         f"`base`; got shape {y.shape}.")
    return y


def _check_labels(y, n_classes, offset):
    """The first label outside [0, n_classes) as xent.LabelError, its
    position counted from the first token, not the chunk's."""
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise LabelError(f"`target` class indices must be in [0, {n_classes}); got "
                         f"{y[bad[0]]} at position {offset + int(bad[0])}.")


def default_chunk_rows(n_classes, base_itemsize, test_itemsize):
    """Rows per chunk such that a chunk of both inputs, in their dtypes, and
    xent's per-row outputs come to about ``CHUNK_BYTES`` (at least 1 row)."""
    per_row = n_classes * (base_itemsize + test_itemsize) + _ROW_OUTPUT_BYTES
    return max(1, CHUNK_BYTES // per_row)


def _check_chunk_rows(chunk_rows):
    if chunk_rows is None:
        return None
    if isinstance(chunk_rows, (int, np.integer)) and not isinstance(chunk_rows, (bool, np.bool_)) \
            and chunk_rows >= 1:
        return int(chunk_rows)
    raise ValueError(f"`chunk_rows` must be None or an integer >= 1; got {chunk_rows!r}.")


def _kl_dtype(base, test):
    """The dtype of xent's KL values: float64 if either input is float64,
    else float32 (16-bit logits are widened to float32)."""
    wide = base.dtype.itemsize > 4 or test.dtype.itemsize > 4
    return np.dtype(np.float64 if wide else np.float32)


def _exact(a):
    """The exact sum of a float32 / float64 vector: a kernel state that
    merges without rounding."""
    return _kernels.rsum(np.ascontiguousarray(a))


def _chunk_stats(b, t, y, offset, kl_dtype, n_threads):
    """One chunk's per-token KL and |dp| and the exact sums of its per-token
    values.  Dask runs it on the workers, once per block."""
    b, t = np.asarray(b), np.asarray(t)
    if y is not None:
        y = np.asarray(y)
        _check_labels(y, b.shape[1], offset)
    kl = _api.kl_divergence(t, b, reduction="none", n_threads=n_threads)
    sb = _api.token_stats(b, y, n_threads=n_threads)
    st = _api.token_stats(t, y, n_threads=n_threads)
    # argmax -1 (a row that is all -inf or holds a NaN) has no prediction: it
    # never counts as an agreement, not even with another -1
    agree = int(np.count_nonzero((sb.argmax == st.argmax) & (sb.argmax >= 0)))
    # The means come from exact sums of the per-token values, merged across
    # chunks: the state of reduction="state" is the exact sum of what
    # reduction="none" returns, so this gives the same bits while reading each
    # chunk once per statistic (a second loss call would read it again).
    part = {"kl": kl.astype(kl_dtype, copy=False), "kl_sum": _exact(kl), "agree": agree}
    if y is not None:
        # token_stats' logprob is bitwise -softmax_cross_entropy(reduction="none")
        part["ce_base"] = _exact(np.negative(sb.logprob))
        part["ce_test"] = _exact(np.negative(st.logprob))
        dp = np.exp(st.logprob, dtype=np.float64)
        dp -= np.exp(sb.logprob, dtype=np.float64)
        part["dp_sum"] = _exact(dp)
        part["abs_dp"] = np.abs(dp, out=dp)
    return part


class _Totals:
    """What the comparison keeps: the per-token vectors, filled a chunk at a
    time in token order, and the merged exact sums."""

    SUMS = ("kl_sum", "ce_base", "ce_test", "dp_sum")

    def __init__(self, n_tokens, kl_dtype, with_target):
        self.n = n_tokens
        self.kl = np.empty(n_tokens, dtype=kl_dtype)
        self.abs_dp = np.empty(n_tokens, dtype=np.float64) if with_target else None
        self.sums = {}
        self.agree = 0

    def add(self, start, stop, part):
        self.kl[start:stop] = part["kl"]
        if self.abs_dp is not None:
            self.abs_dp[start:stop] = part["abs_dp"]
        self.agree += part["agree"]
        for key in self.SUMS:
            if key in part:
                prev = self.sums.get(key)
                self.sums[key] = part[key] if prev is None else _kernels.rsum_merge(prev, part[key])

    def mean(self, key):
        return _kernels.rsum_value(self.sums[key]) / self.n

    def report(self):
        """The report; the vectors are partitioned in place by the percentiles."""
        r = {"n_tokens": self.n}
        if self.abs_dp is not None:
            ppl_base, ppl_test = _exp(self.mean("ce_base")), _exp(self.mean("ce_test"))
            with np.errstate(all="ignore"):
                ratio = float(np.float64(ppl_test) / np.float64(ppl_base))
            r.update(ppl_base=ppl_base, ppl_test=ppl_test, ppl_ratio=ratio)
        kl = self.kl
        r["kl_mean"] = self.mean("kl_sum")
        kl_max = float(np.max(kl))
        # one percentile per call (a scalar q keeps NumPy's interpolation in
        # the vector's dtype, as np.percentile(kl, q) gives it); in place: the
        # order statistics do not depend on the order the calls leave
        for key, q in (("kl_median", 50), ("kl_p90", 90), ("kl_p99", 99)):
            r[key] = float(np.percentile(kl, q, overwrite_input=True))
        r["kl_max"] = kl_max
        r["same_argmax"] = self.agree / self.n
        if self.abs_dp is not None:
            r["dp_mean"] = self.mean("dp_sum")
            r["dp_p99"] = float(np.percentile(self.abs_dp, 99, overwrite_input=True))
        return r


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


class _Progress:
    """A progress bar on standard error: redrawn in place on a terminal (at
    most 10 times a second), else one line per tenth of the tokens."""

    def __init__(self, n_tokens, bytes_per_token, enabled):
        self.n = n_tokens
        self.bytes_per_token = bytes_per_token
        self.enabled = enabled
        self.stream = sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last = -1.0
        self.tenth = -1

    def update(self, done):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self.last < 0.1 and done < self.n:
                return
            self.last = now
        else:
            tenth = 10 * done // self.n
            if tenth == self.tenth:
                return
            self.tenth = tenth
        elapsed = now - self.t0
        frac = done / self.n
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        msg = f"compare [{bar}] {100 * frac:3.0f}% {done}/{self.n} tokens"
        if elapsed > 0 and done:
            msg += f", {done * self.bytes_per_token / elapsed / 1e9:.2f} GB/s"
            if done < self.n:
                msg += f", {(self.n - done) * elapsed / done:.0f} s left"
        if self.tty:
            self.stream.write("\r\033[K" + msg + ("\n" if done >= self.n else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _numpy_parts(base, test, target, rows, kl_dtype, n_threads):
    """(start, stop, chunk results) of NumPy inputs, in token order."""
    n = base.shape[0]
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        y = None if target is None else target[start:stop]
        yield start, stop, _chunk_stats(base[start:stop], test[start:stop], y, start, kl_dtype,
                                        n_threads)


def _dask_parts(base, test, target, rows, kl_dtype, n_threads):
    """(start, stop, block results) of inputs of which one at least is a
    dask array: one task per block of rows, computed on the scheduler's
    workers a few at a time; only the results come back."""
    import dask
    import dask.array as da

    lead = next((x for x in (base, test) if _is_dask(x)), None)
    if lead is None:                           # only the target is a dask array
        lead = da.from_array(base, chunks=(rows, -1))
    # the class axis in one chunk: a task sees whole rows
    lead = lead.rechunk({0: rows, 1: -1} if rows is not None else {1: -1})
    row_chunks = lead.chunks[0]

    def aligned(x):
        if _is_dask(x):
            return x.rechunk((row_chunks,) + ((-1,) if x.ndim == 2 else ()))
        return da.from_array(x, chunks=(row_chunks,) + ((-1,) if x.ndim == 2 else ()))

    base_blocks = aligned(base).to_delayed().ravel()
    test_blocks = aligned(test).to_delayed().ravel()
    if target is None:
        target_blocks = [None] * len(row_chunks)
    elif _is_dask(target):
        target_blocks = target.rechunk((row_chunks,)).to_delayed().ravel()
    else:
        target_blocks = None                   # sliced below, on the client
    bounds = np.concatenate(([0], np.cumsum(row_chunks))).tolist()
    task = dask.delayed(_chunk_stats, pure=True)
    tasks = []
    for k, (b, t) in enumerate(zip(base_blocks, test_blocks)):
        start, stop = bounds[k], bounds[k + 1]
        y = target_blocks[k] if target_blocks is not None else np.asarray(target[start:stop])
        tasks.append((start, stop, task(b, t, y, start, kl_dtype, n_threads)))
    # a batch of blocks per compute: the workers stay busy, and results come
    # back (and the progress bar moves) as batches finish
    batch = max(1, os.cpu_count() or 1)
    for i in range(0, len(tasks), batch):
        group = tasks[i:i + batch]
        for (start, stop, _), part in zip(group, dask.compute(*[t for _, _, t in group])):
            yield start, stop, part


def compare(base, test, target=None, *, chunk_rows=None, progress=True, n_threads=None):
    """Compare two models' logits for the same tokens, a chunk at a time.

    Parameters
    ----------
    base : str, os.PathLike, array_like or dask array, shape (N, C)
        The reference model's logits, one row per token: a path to a
        ``.npy`` file (memory-mapped, so it may be larger than memory), a
        NumPy array (memory-maps included) or a dask array.  float16,
        bfloat16 (``ml_dtypes``; a ``.npy`` file of 2-byte void dtype, as
        NumPy saves bfloat16, is read as bfloat16), float32 or float64.
    test : same kinds as `base`, shape (N, C)
        The compared model's logits for the same tokens and classes.
    target : str, os.PathLike, array_like of int or dask array, shape (N,), optional
        The tokens' class indices; they add the perplexities and the shifts
        of the target's probability.
    chunk_rows : int >= 1, optional
        Tokens per chunk.  Default: about 64 MB of both inputs (in their
        dtypes) and xent's per-row outputs, at least 1 row.  A dask input
        keeps its own row chunks unless `chunk_rows` is given.
    progress : bool, default True
        Draw a progress bar on standard error.
    n_threads : int, optional
        Threads of xent's kernels, as in :func:`softmax_cross_entropy`; the
        report does not depend on it.

    Returns
    -------
    dict
        ``n_tokens``; ``ppl_base``, ``ppl_test`` (``exp`` of the mean
        class-index cross-entropy) and ``ppl_ratio`` (``ppl_test / ppl_base``);
        ``kl_mean``, ``kl_median``, ``kl_p90``, ``kl_p99`` and ``kl_max`` of
        the per-token ``KL(base || test)``; ``same_argmax``, the fraction of
        tokens whose argmaxes agree; ``dp_mean``, the mean of
        ``p_test(target) - p_base(target)``, and ``dp_p99``, the 99th
        percentile of its absolute value.  Without `target` the keys
        ``ppl_base``, ``ppl_test``, ``ppl_ratio``, ``dp_mean`` and ``dp_p99``
        are absent (not None), so a JSON report holds only what was measured.
        Values are Python floats (``n_tokens`` an int).

    Raises
    ------
    TypeError
        Logits that are not floating-point; a `target` that is not integer.
    ValueError
        `base` or `test` not 2-D, their shapes unequal, no tokens or no
        classes, a `target` not of shape (N,), a file that is not ``.npy``,
        `chunk_rows`, `n_threads`.
    xent.LabelError
        A class index outside ``[0, C)`` (its position counted from the
        first token).
    OSError
        A file that cannot be read (FileNotFoundError for a missing one).

    Notes
    -----
    The per-token KL is ``xent.kl_divergence(test, base, reduction="none")``:
    ``KL(softmax(base) || softmax(test))``, the base model as the teacher.
    16-bit logits are read as they are (xent widens them to float32 a tile
    at a time) and give float32 values, as float32 logits do; float64 gives
    float64.  The target's probabilities are ``exp`` of
    :func:`token_stats`'s ``logprob``, in float64, and ``dp`` their
    difference in float64.  An argmax is the first index of the largest
    logit; a row that is all ``-inf`` or holds a NaN has none and never
    counts as agreeing.

    Reproducible means: ``kl_mean``, the mean cross-entropies behind the
    perplexities and ``dp_mean`` are exact sums of the per-token values
    (``xent.ReductionState``'s accumulator, merged across chunks without
    rounding) rounded once and divided by N, so the whole report is bitwise
    the same for any `chunk_rows`, any dask chunking or scheduler, and any
    `n_threads`: ``kl_mean`` is ``xent.kl_divergence(test, base)`` and
    ``ppl_base`` is ``math.exp(xent.softmax_cross_entropy(base, target))``.

    Exact percentiles: the per-token KL (4 bytes a token, 8 for float64
    logits) and ``|dp|`` (8 bytes) are kept, and ``np.percentile`` with its
    default linear interpolation gives the percentiles of those values (the
    median is the 50th percentile by the same rule).  So memory is O(N), 12
    bytes a token with a target (16 for float64 logits), beside O(chunk)
    for the logits, whose mapped file pages are the operating system's page
    cache, not the process's memory: the process stays within 1 GB for N up
    to about 60 million tokens, whatever C and the files' size.

    Dask inputs are rechunked so that the class axis is one chunk; each
    block of rows is one task run on the scheduler's workers, and only its
    per-token vectors and exact sums come back to the client.

    Examples
    --------
    >>> import numpy as np, xent
    >>> base = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0]], dtype=np.float32)
    >>> test = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 3.0]], dtype=np.float32)
    >>> r = xent.compare(base, test, target=np.array([0, 1, 2]), progress=False)
    >>> r["n_tokens"], round(r["same_argmax"], 4)
    (3, 0.6667)
    >>> round(r["ppl_base"], 4), round(r["ppl_test"], 4), round(r["ppl_ratio"], 4)
    (1.3775, 2.081, 1.5107)
    >>> kl = xent.kl_divergence(test, base, reduction="none")
    >>> r["kl_mean"] == xent.kl_divergence(test, base), r["kl_max"] == float(kl.max())
    (True, True)
    >>> r["kl_median"] == float(np.percentile(kl, 50))
    True
    >>> "ppl_base" in xent.compare(base, test, progress=False)
    False
    """
    base = _logits(base, "base")
    test = _logits(test, "test")
    if base.shape != test.shape:
        raise ValueError(f"`base` and `test` must have the same shape (N, C): the same tokens and "
                         f"classes; got {base.shape} and {test.shape}.")
    n_tokens, n_classes = base.shape
    if n_tokens == 0 or n_classes == 0:
        raise ValueError(f"`base` and `test` must hold at least one token and one class; got "
                         f"shape {base.shape}.")
    if target is not None:
        target = _labels(target, n_tokens)
    rows = _check_chunk_rows(chunk_rows)
    resolve_n_threads(n_threads)
    use_dask = any(_is_dask(x) for x in (base, test, target))
    if target is not None and not _is_dask(target):
        # before any work: a bad label found after hours of reading is late
        for start in range(0, n_tokens, _LABEL_BLOCK):
            _check_labels(np.asarray(target[start:start + _LABEL_BLOCK]), n_classes, start)
    if rows is None and not (_is_dask(base) or _is_dask(test)):
        rows = default_chunk_rows(n_classes, base.dtype.itemsize, test.dtype.itemsize)
    kl_dtype = _kl_dtype(base, test)
    totals = _Totals(n_tokens, kl_dtype, target is not None)
    bar = _Progress(n_tokens, n_classes * (base.dtype.itemsize + test.dtype.itemsize),
                    bool(progress))
    parts = (_dask_parts if use_dask else _numpy_parts)(base, test, target, rows, kl_dtype,
                                                        n_threads)
    bar.update(0)
    for start, stop, part in parts:
        totals.add(start, stop, part)
        bar.update(stop)
    return totals.report()


# --- python -m xent compare ------------------------------------------------------------

DESCRIPTION = """\
Compare two models' logits for the same tokens: BASE and TEST are .npy files
of shape (N, C) (float16, bfloat16 or float32; memory-mapped, so they may be
larger than memory), read a chunk of tokens at a time.  Prints the mean and
percentiles of the per-token KL(base || test), how often the argmaxes agree,
and with --target the perplexities and the shift of the target's probability.
What xent.compare() returns, as aligned text or JSON."""

EPILOG = """\
report:
""" + "\n".join(f"  {key:<12} {what}" for key, what in KEYS.items()) + """
  (ppl_* and dp_* only with --target)

The means are exact sums rounded once, the percentiles exact (NumPy's linear
interpolation): the report is bitwise the same for any --chunk-rows and
--threads.  Memory: about 64 MB for a chunk plus 12 bytes per token.

examples:
  python -m xent compare base.npy test.npy
  python -m xent compare base.npy test.npy --target labels.npy --json report.json
  python -m xent compare base.npy test.npy --target labels.npy --json - --no-progress
"""


def add_arguments(p):
    """Add the arguments of ``python -m xent compare`` to the argparse parser `p`."""
    p.add_argument("base", metavar="BASE",
                   help="the reference model's logits: a .npy file of shape (N, C)")
    p.add_argument("test", metavar="TEST",
                   help="the compared model's logits for the same tokens: a .npy file of shape "
                        "(N, C)")
    p.add_argument("--target", metavar="LABELS",
                   help="the tokens' class indices: a .npy file of integers of shape (N,); adds "
                        "the perplexities and the shift of the target's probability")
    p.add_argument("--json", metavar="FILE",
                   help="also write the report to FILE as JSON; '-' writes it to standard "
                        "output instead of the text report")
    p.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="tokens per chunk (default: about 64 MB of both files); the report does "
                        "not depend on it")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads of xent: an integer >= 1, or -1 for every core (default: "
                        "OpenMP's default, which honours OMP_NUM_THREADS)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on standard error")
    return p


def format_report(res):
    """The report as aligned text: key, value and what the value is."""
    lines = []
    for key, what in KEYS.items():
        if key not in res:
            continue
        v = res[key]
        text = str(v) if isinstance(v, int) else f"{v:.6g}"
        lines.append(f"{key:<12} {text:>12}  {what}")
    return "\n".join(lines)


def run_args(args, parser):
    """Run ``python -m xent compare`` from parsed `args`; return the exit status."""
    if args.chunk_rows is not None and args.chunk_rows < 1:
        parser.error(f"--chunk-rows must be at least 1; got {args.chunk_rows}")
    try:
        resolve_n_threads(args.threads)
    except ValueError:
        parser.error(f"--threads must be an integer >= 1, or -1 for every core; got {args.threads}")
    if args.json and args.json != "-":
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            print(f"{parser.prog}: error: --json must name a file in an existing folder; got "
                  f"{args.json!r} ({folder} does not exist)", file=sys.stderr)
            return 2
    try:
        res = compare(args.base, args.test, args.target, chunk_rows=args.chunk_rows,
                      progress=not args.no_progress, n_threads=args.threads)
    except (OSError, TypeError, ValueError) as exc:
        # the inputs' fault (a missing file, a shape, a dtype, a label): the
        # message says which, a traceback would not help
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    # strict JSON: a NaN (no token kept, say) is written as null
    res = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in res.items()}
    if args.json == "-":
        json.dump(res, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        print(f"report written to {args.json}")
    return 0
