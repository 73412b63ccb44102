"""logsumexp with SciPy's options, on xent's row kernel.

:func:`logsumexp` gives ``xent.logsumexp`` the signature of
:func:`scipy.special.logsumexp` -- ``axis`` an int, a tuple of ints or None,
``b``, ``keepdims``, ``return_sign`` -- and SciPy's results, while the work
is done by one fast kernel that reduces the last axis of a C-contiguous
array (``lse_last``, supplied by the caller).  xent keeps its own default,
``axis=-1``.

Method
------
* **Layout.**  The reduced axes are moved last (``transpose``) and flattened
  into one, so that one kernel call reduces every row whatever the axes:
  ``(kept..., reduced...) -> (kept..., n)``.  The reshape is free when the
  moved array is already contiguous there (``axis=None`` on a C array, the
  last axes), otherwise it is the one copy the kernel needs anyway.
* **Fast path.**  No `b`, no `return_sign`, one int `axis`: the array (with
  that axis moved last, a view) goes straight to the kernel; `keepdims` is a
  reshape of the result.  Nothing else is computed.
* **Weights** ``b``: ``log(sum(b * exp(x))) = logsumexp(x + log|b|)`` over the
  entries of each sign.  ``z = x + log|b|`` is formed in float64 whatever the
  dtype of `x`, so the shift adds at most half an ulp of float64 (for
  float32 and 16-bit inputs this is far below their own precision, and the
  float32 result is the correctly rounded float64 one up to the kernel's few
  ulps).  Entries with ``b == 0`` are set to ``-inf``: they contribute nothing
  even where `x` is ``+inf`` or NaN, SciPy's long-standing rule.  When some
  ``b < 0`` the positive and negative parts are two kernel calls,
  ``p = lse(z | b > 0)`` and ``q = lse(z | b < 0)``, combined as
  ``max(p, q) + log1p(-exp(-|p - q|))`` with sign ``sign(p - q)``.  That
  combination is as accurate as the problem allows: its error relative to
  ``|sum|`` is that of ``p`` and ``q`` times the condition number
  ``(S+ + S-) / |S+ - S-|`` of the subtraction, which no method avoids.
* **Precision.**  The result has xent's compute dtype, the dtype the kernel
  returns: float32 for float16, bfloat16 and float32 `x`; float64 for float64
  and integer `x`.  `b` never changes it (it is used in float64, see above).

SciPy's behaviour kept
----------------------
Special rows: all ``-inf`` (or an empty reduction) gives ``-inf``, a ``+inf``
gives ``+inf``, a NaN gives NaN; with weights, ``+inf`` in both signed parts
gives NaN.  Without `return_sign` a negative sum gives NaN.  The sign is
``+1``, ``-1``, ``0`` (a sum of zero: ``-inf``) or NaN, in the dtype of the
result.  A 0-d `x` is taken as 1-d (so ``axis`` may be 0, -1, None or ()),
``axis=()`` reduces nothing (``x + log(b)``), `x` and `b` broadcast against
each other (the axes refer to the broadcast shape), and a 0-d result is a
NumPy scalar (``out[()]``), for the sign too.

Where this deliberately differs from SciPy 1.17
-----------------------------------------------
* The result dtype is xent's compute dtype (float16 gives float32; float32
  `x` with float64 `b` stays float32), not NumPy's promotion of `x` and `b`.
* bool `x` is refused (TypeError), as everywhere in xent; bool `b` (a mask)
  is accepted.
* A row whose every weight is 0 gives ``-inf`` (sign 0) even where `x` holds
  ``+inf`` or NaN there: those entries contribute nothing, as SciPy's rule
  says; SciPy returns NaN in that one case (its fallback evaluates
  ``log(sum(0 * exp(inf)))``).
* An empty reduction has sign 0 (the sum is 0), where SciPy returns -1;
  and every empty input works (SciPy 1.17 raises IndexError for some
  multi-dimensional ones, e.g. ``axis=None`` on shape (0, 3), and gives a
  (1, ...) result for ``axis=()``).
* A signed sum that cancels below the rounding of its parts (condition
  number beyond 1/eps) gives whatever the rounding leaves, often ``-inf``
  with sign 0; SciPy, which sums the terms tied at the maximum exactly,
  recovers some such sums (``x=[700, 700, 3.5], b=[-1, 1, 3]``) and returns
  NaN for others (the same with 800).
"""

import operator

import numpy as np

from ._validate import as_array, compute_dtype, kind


def _bool_option(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False; got {value!r}.")


def _show(axis):
    """A tuple of axes as the user reads it: (0, -1), not (np.int64(0), -1)."""
    try:
        return str(tuple(operator.index(a) for a in axis))
    except TypeError:
        return repr(axis)


def _axes(axis, ndim):
    """`axis` (None, an int or a tuple of ints) as a sorted tuple of axes >= 0."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    seen = {}
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            item = None                        # True is not axis 1
        try:
            ax = operator.index(item)
        except TypeError:
            raise ValueError(f"`axis` must be None, an integer or a tuple of integers; "
                             f"got {axis!r}.") from None
        if not -ndim <= ax < ndim:
            where = f" in axis={_show(axis)}" if isinstance(axis, tuple) else ""
            raise ValueError(f"`axis` must be in [{-ndim}, {ndim}) for `x` with {ndim} "
                             f"dimension(s); got {ax}{where}.")
        pos = ax % ndim
        if pos in seen:
            raise ValueError(f"`axis` must not repeat an axis; got axis={_show(axis)} "
                             f"({seen[pos]} and {ax} are both axis {pos}).")
        seen[pos] = ax
    return tuple(sorted(seen))


def _scalar(a):
    """A 0-d array as a NumPy scalar, as SciPy returns it."""
    return a[()] if a.ndim == 0 else a


def _sign_of(out):
    """+1, 0 for -inf, NaN for NaN: the sign of a sum of positive terms."""
    sgn = np.where(out == -np.inf, 0, 1).astype(out.dtype)
    sgn[np.isnan(out)] = np.nan
    return sgn


def logsumexp(x, axis, b, keepdims, return_sign, lse_last):
    """``log(sum(b * exp(x), axis))`` with the options of scipy.special.logsumexp.

    `lse_last(a)` returns the log-sum-exp of an ndarray over its last axis
    (at least one dimension, a last axis of length >= 1), in the compute
    dtype.  See the module docstring for the method.
    """
    keepdims = _bool_option(keepdims, "keepdims")
    return_sign = _bool_option(return_sign, "return_sign")

    # fast path: the row kernel alone
    if b is None and not return_sign and type(axis) is int:
        a = as_array(x, "x")
        nd = a.ndim
        if nd and -nd <= axis < nd and a.shape[axis]:
            ax = axis % nd
            out = lse_last(a if ax == nd - 1 else np.moveaxis(a, ax, -1))
            if keepdims:
                out = np.expand_dims(out, ax)
            return _scalar(out)

    a = as_array(x, "x")
    cdt = compute_dtype(a, "x")                        # TypeError for complex, bool, strings
    shape = a.shape
    if b is not None:
        bb = as_array(b, "b")
        if kind(bb.dtype) not in "fiub":
            raise TypeError(f"`b` must be a real floating-point, integer or boolean array; "
                            f"got dtype {bb.dtype}.")
        try:
            shape = np.broadcast_shapes(a.shape, bb.shape)
        except ValueError:
            raise ValueError(f"`b` must broadcast against `x`; got shapes {bb.shape} (b) and "
                             f"{a.shape} (x).") from None
    if not shape:
        shape = (1,)                                   # SciPy: a 0-d x is 1-d
    ndim = len(shape)
    red = _axes(axis, ndim)
    kept = tuple(i for i in range(ndim) if i not in red)
    kept_shape = tuple(shape[i] for i in kept)
    out_shape = tuple(1 if i in red else shape[i] for i in range(ndim)) if keepdims else kept_shape
    n = 1
    for i in red:
        n *= shape[i]

    if n == 0 or 0 in kept_shape:                      # an empty sum is 0: -inf
        out = np.full(out_shape, -np.inf, dtype=cdt)
        if return_sign:
            return _scalar(out), _scalar(np.zeros(out_shape, dtype=cdt))
        return _scalar(out)

    perm = kept + red
    rows_shape = kept_shape + (n,)
    if a.shape != shape:
        a = np.broadcast_to(a.reshape(a.shape if a.ndim else (1,)), shape)

    if b is None:
        out = lse_last(a.transpose(perm).reshape(rows_shape))
        out = out.reshape(out_shape)
        if return_sign:
            return _scalar(out), _scalar(_sign_of(out))
        return _scalar(out)

    # weights: z = x + log|b| in float64, laid out (kept..., reduced...) C order
    bt = np.broadcast_to(bb, shape).transpose(perm)
    z = np.empty(bt.shape, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.abs(bt, out=z, casting="unsafe")
        np.log(z, out=z)
        np.add(z, a.transpose(perm), out=z, casting="unsafe")
    if (bb == 0).any():
        np.copyto(z, -np.inf, where=bt == 0)           # b == 0 adds nothing, even at inf / NaN
    negative = bool((bb < 0).any())
    if negative:
        neg = bt < 0
        zn = np.where(neg, z, -np.inf)
        np.copyto(z, -np.inf, where=neg)
    p = lse_last(z.reshape(rows_shape))
    if not negative:
        out = p.reshape(out_shape).astype(cdt, copy=False)
        if return_sign:
            return _scalar(out), _scalar(_sign_of(out))
        return _scalar(out)

    q = lse_last(zn.reshape(rows_shape)).reshape(-1)   # 1-d: ufuncs give arrays, not scalars
    p = p.reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hi = np.maximum(p, q)                          # NaN propagates
        d = np.minimum(p, q) - hi                      # <= 0; NaN for inf - inf
        out = hi + np.log1p(-np.exp(d))
        sgn = np.sign(p - q)
    zero = hi == -np.inf                               # nothing but -inf: -inf, sign 0
    out[zero] = -np.inf
    sgn[zero] = 0
    out = out.reshape(out_shape).astype(cdt, copy=False)
    sgn = sgn.reshape(out_shape).astype(cdt, copy=False)
    if return_sign:
        return _scalar(out), _scalar(sgn)
    out[sgn < 0] = np.nan                              # SciPy: a negative sum is NaN
    return _scalar(out)
