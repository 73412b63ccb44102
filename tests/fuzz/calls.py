"""Calls of xent's public functions generated from bytes, and the oracle they must satisfy.

``make_call(data)`` turns any byte string into one call: a public function
and its arguments, drawn from every kind of input a user can pass (every
dtype kind, 0-d and empty shapes, zero and negative strides, unaligned,
read-only and memory-mapped buffers, lists, memoryviews, objects whose
``__array__`` raises, NaN and inf, labels out of range or past int64, odd
option types and values, and output buffers that alias the inputs fully or
in part).  Every decision reads the next byte or bytes, so a coverage-guided
fuzzer (atheris) or hypothesis can steer it, and ``encode(**choices)`` writes
the bytes of a chosen call (the seed corpus is made that way).

``check_call(call)`` runs it and checks the oracle:

* the call returns a result of the documented type, shape and dtype, equal
  to ``xent.reference`` where the reference takes the same arguments; or it
  raises ``TypeError``, ``ValueError`` (``xent.LabelError`` included),
  ``OverflowError`` or ``MemoryError`` with a message that names one of the
  function's arguments in backquotes; an exception raised by the caller's
  own object (an ``__array__`` that raises) may also pass through unchanged;
* no warning escapes;
* no input is modified, and when an error is raised no output is written;
* a call that succeeds had valid options (`reduction`, `n_threads`,
  `label_smoothing`, `temperature`, `softcap`, `z_loss`, `gamma`, `alpha`,
  `keepdims`, `return_sign`, `axis`) and no output overlapping an input but
  the logits exactly;
* ``token_stats`` returns a ``TokenStats`` whose fields are compared one by
  one (``argmax`` and ``rank`` exactly) and whose ``logprob`` is bitwise
  ``-softmax_cross_entropy(..., reduction="none")``; ``logsumexp`` returns a
  NumPy scalar for a 0-d result, and ``(lse, sign)`` with `return_sign`.

A violation raises ``Finding``.  Nothing here depends on atheris or
hypothesis; ``tests/fuzz/fuzz.py`` runs campaigns, ``test_fuzz.py`` replays
the corpus in the ordinary test run.
"""

import fractions
import inspect
import math
import numbers
import os
import re
import struct
import tempfile
import warnings

import numpy as np

import xent
import xent.keras
import xent.reference


class Finding(AssertionError):
    """The oracle does not hold for a generated call."""


# ---------------------------------------------------------------------------
# bytes -> decisions
# ---------------------------------------------------------------------------

class Draw:
    """Decisions read from a byte string, in order; past its end every
    decision is its first option (or 0), so any input makes a call.

    With ``record`` (a dict of label -> wanted value) it writes bytes
    instead: each decision whose label is in `record` takes the wanted value
    and the others their first option, and ``bytes()`` is the input that
    makes that call (labels are plain names, the same at every occurrence).
    """

    def __init__(self, data=b"", record=None):
        self.data = bytes(data)
        self.pos = 0
        self.record = record
        self.out = bytearray()

    def _take(self, n):
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk + bytes(n - len(chunk))

    def choice(self, label, options):
        if self.record is not None:
            i = 0
            if label in self.record:
                want = self.record[label]
                i = next(k for k, o in enumerate(options) if _same_option(o, want))
            self.out.append(i)
            return options[i]
        return options[self._take(1)[0] % len(options)]

    def integer(self, label, lo, hi):
        """An integer in [lo, hi] from 4 bytes."""
        if self.record is not None:
            v = self.record.get(label, lo)
            self.out += struct.pack("<I", v - lo)
            return v
        (u,) = struct.unpack("<I", self._take(4))
        return lo + u % (hi - lo + 1)

    def flag(self, label):
        return self.choice(label, (False, True))

    def bytes(self):
        return bytes(self.out)


def _same_option(option, want):
    if isinstance(option, (np.ndarray, list)) or isinstance(want, (np.ndarray, list)):
        return False
    try:
        if type(option) is float and type(want) is float:
            return repr(option) == repr(want)           # nan is nan, -0.0 is not 0.0
        return type(option) is type(want) and bool(option == want)
    except Exception:
        return False


def encode(**choices):
    """The bytes that make the call with these decisions (see `Draw`)."""
    d = Draw(record=choices)
    make_call(d)
    return d.bytes()


# ---------------------------------------------------------------------------
# arrays and the buffers they live in
# ---------------------------------------------------------------------------

class Buffers:
    """Every array of a call is a view of a base buffer made here, so the
    oracle can compare all of them, bytes for bytes, before and after."""

    def __init__(self, tmpdir):
        self.bases = []
        self.tmpdir = tmpdir

    def base(self, nbytes, memmap=False):
        nbytes = max(int(nbytes), 1) + 16        # slack: room for a view shifted by an element
        if memmap:
            fd, path = tempfile.mkstemp(dir=self.tmpdir, suffix=".bin")
            os.close(fd)
            b = np.memmap(path, dtype=np.uint8, mode="w+", shape=(nbytes,))
        else:
            b = np.zeros(nbytes, dtype=np.uint8)
        self.bases.append(b)
        return b

    def snapshot(self):
        return [bytes(b) for b in self.bases]


def _view(base, offset, dtype, shape, strides):
    return np.ndarray(shape, dtype=dtype, buffer=base, offset=offset, strides=strides)


LAYOUTS = ("C", "F", "negative", "strided", "zero-stride", "unaligned", "readonly",
           "memmap", "bigendian")


def place(bufs, draw, label, values, layout=None):
    """`values` (an ndarray) copied into a new base buffer in a drawn layout."""
    layout = layout or draw.choice(label + ".layout", LAYOUTS)
    dt = values.dtype
    if layout == "bigendian" and dt.itemsize > 1 and dt.kind in "iufc":
        dt = dt.newbyteorder(">")
    shape = values.shape
    isz = dt.itemsize
    n = max(values.size, 1)
    if layout == "zero-stride" and values.ndim and values.size:
        # a broadcast view: every row is the first one (NumPy makes it read-only)
        row = values.reshape(-1, shape[-1])[:1].reshape(shape[-1:])
        b = bufs.base(row.nbytes)
        r = _view(b, 0, dt, row.shape, (isz,))
        r[...] = row
        return np.broadcast_to(r, shape)
    if layout == "strided":
        b = bufs.base(2 * n * isz)
        strides = _c_strides(shape, 2 * isz)
        a = _view(b, 0, dt, shape, strides)
    elif layout == "negative":
        b = bufs.base(n * isz)
        strides = tuple(-s for s in _c_strides(shape, isz))
        a = _view(b, (n - 1) * isz if values.size else 0, dt, shape, strides)
    elif layout == "F":
        b = bufs.base(n * isz)
        a = _view(b, 0, dt, shape, _c_strides(shape[::-1], isz)[::-1])
    elif layout == "unaligned":
        b = bufs.base(n * isz + 1)
        a = _view(b, 1, dt, shape, _c_strides(shape, isz))
    else:
        b = bufs.base(n * isz, memmap=layout == "memmap")
        a = _view(b, 0, dt, shape, _c_strides(shape, isz))
    a[...] = values
    if layout == "readonly":
        a.flags.writeable = False
    return a


def _c_strides(shape, isz):
    strides, step = [], isz
    for s in reversed(shape):
        strides.append(step)
        step *= max(s, 1)
    return tuple(reversed(strides))


def _base_of(bufs, arr):
    for b in bufs.bases:
        if np.may_share_memory(b, arr):
            return b
    return None


class RaisingArray:
    """An array-like whose conversion fails, as a user's object may."""

    def __init__(self, exc):
        self.exc = exc

    def __array__(self, dtype=None, copy=None):
        raise self.exc

    def __len__(self):
        return 3


def wrap(bufs, draw, label, arr):
    """The array, or the same data handed over as another kind of object."""
    kind = draw.choice(label + ".wrap", ("array", "array", "list", "memoryview", "raises",
                                         "tuple-of-arrays", "scalar"))
    if kind == "list":
        return arr.tolist()
    if kind == "memoryview":
        try:
            return memoryview(arr)
        except (ValueError, TypeError, BufferError):
            return arr
    if kind == "raises":
        exc = draw.choice(label + ".exc", ("ValueError", "TypeError", "RuntimeError"))
        return RaisingArray({"ValueError": ValueError, "TypeError": TypeError,
                             "RuntimeError": RuntimeError}[exc](f"cannot convert {label}"))
    if kind == "tuple-of-arrays" and arr.ndim:
        return tuple(arr)
    if kind == "scalar" and arr.size:
        return arr.reshape(-1)[0].item() if arr.dtype.kind in "biuf" else arr.reshape(-1)[0]
    return arr


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------

EXTREMES = (0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1e300, -1e300, 1.7e308, 1e-310, 5e4,
            -5e4, 88.7, -745.2, 0.5, "1e4000")

LOGIT_DTYPES = ("float64", "float32", "float16", "longdouble", "int64", "int8", "uint64",
                "bool", "complex128", "object", "str", "datetime64")


def values(draw, label, shape, dtype):
    """Normal draws from a drawn seed, scaled, with drawn special values
    (or filled with one); "1e4000" is past float64's range (long double)."""
    rng = np.random.default_rng(draw.integer(label + ".seed", 0, 2**16))
    scale = draw.choice(label + ".scale", (1.0, 10.0, 0.01, 1e4, 1e30))
    v = np.asarray(np.asarray(rng.standard_normal(shape)) * scale)
    beyond = []
    n = draw.choice(label + ".n_specials", (0, 0, 1, 2, 4, "fill"))
    for k in range(v.size if n == "fill" else n):
        if not v.size:
            break
        at = k if n == "fill" else draw.integer(f"{label}.special_at", 0, v.size - 1)
        sp = draw.choice(f"{label}.special", EXTREMES) if n != "fill" or k == 0 else sp
        if sp == "1e4000":
            beyond.append(at)
        else:
            v.reshape(-1)[at] = sp
    out = _as_dtype(v, dtype, rng)
    if beyond and out.dtype.kind == "f":
        with np.errstate(all="ignore"):
            out.reshape(-1)[beyond] = np.array("1e4000", dtype=np.longdouble)
    return out


def _as_dtype(v, dtype, rng):
    if dtype in ("float64", "float32", "float16", "longdouble"):
        with np.errstate(all="ignore"):
            return v.astype(dtype)
    if dtype in ("int64", "int8", "uint64"):
        with np.errstate(all="ignore"):
            return np.nan_to_num(v, posinf=0, neginf=0).clip(-100, 100).astype(dtype)
    if dtype == "bool":
        return v > 0
    if dtype == "complex128":
        return v + 1j
    if dtype == "object":
        return v.astype(object)
    if dtype == "str":
        return v.astype(str)
    return np.zeros(v.shape, dtype="datetime64[s]")


LABELS = ("valid", "valid", "valid", "-100", "C", "negative", "huge-uint64", "ignore-value")


def labels(draw, label, shape, n_classes, ignore_index):
    """Class indices in [0, C), with one drawn bad or special value, in a drawn dtype."""
    dt = draw.choice(label + ".dtype", ("int64", "int64", "int32", "uint8", "int8", "uint64",
                                        "uint16", "float64", "bool", "object"))
    rng = np.random.default_rng(draw.integer(label + ".seed", 0, 2**16))
    y = [int(v) for v in rng.integers(0, max(n_classes, 1), size=shape).reshape(-1)]
    kind = draw.choice(label + ".bad", LABELS)
    if y and kind != "valid":
        special = {"-100": -100, "C": n_classes, "negative": -1, "huge-uint64": 2**64 - 1,
                   "ignore-value": ignore_index if type(ignore_index) is int else 0}[kind]
        y[draw.integer(label + ".bad_at", 0, len(y) - 1)] = special
    if dt == "object":
        return np.array(y + [0], dtype=object)[:-1].reshape(shape)
    if dt in ("float64", "bool"):
        return np.array(y, dtype=np.float64).astype(dt).reshape(shape)
    info = np.iinfo(dt)
    # out of the dtype's range: wrapped for unsigned types (-100 becomes a
    # huge label), clipped for signed ones
    fit = [v % (info.max + 1) if info.min == 0 else min(max(v, info.min), info.max) for v in y]
    return np.array(fit, dtype=object).astype(dt).reshape(shape) if fit else np.zeros(shape, dt)


# ---------------------------------------------------------------------------
# calls
# ---------------------------------------------------------------------------

FUNCTIONS = ("softmax_cross_entropy", "softmax_cross_entropy_with_grad",
             "sigmoid_binary_cross_entropy", "sigmoid_binary_cross_entropy_with_grad",
             "logsumexp", "log_softmax", "softmax", "keras.categorical_crossentropy",
             "keras.sparse_categorical_crossentropy", "keras.binary_crossentropy",
             # the extras (appended: the committed seeds keep their indices)
             "token_stats", "sigmoid_focal_loss", "sigmoid_focal_loss_with_grad",
             "softmax_focal_loss", "softmax_focal_loss_with_grad",
             # the divergences
             "kl_divergence", "kl_divergence_with_grad", "js_divergence", "js_divergence_with_grad")

SHAPES = ((4, 5), (1, 1), (3, 1), (2, 3, 4), (7,), (0, 5), (5, 0), (), (32, 10), (1, 1000),
          (40, 1000), (2, 70000), (0,), (2, 1, 3))

REDUCTIONS = ("mean", "sum", "none", "state", "MEAN", "avg", None, "0d-array", "np.str_", "list",
              "two-array", 1)

N_THREADS = (None, 1, 2, -1, 0, -2, 3, 1000, 100000, 2**31 - 1, 2**40, 2**80, 1.5, True, "2",
             "int64", "int8-0", "0d-array")

SMOOTHING = (0.0, 0.0, 0.1, 1.0, 1, -0.1, 1.5, math.nan, math.inf, "0.1", True, "float32",
             None, "array")

IGNORE = (None, None, -100, 0, 1, 2**70, -2**70, 1.5, True, "1", "int64", "uint64-big")

AXES = (-1, -1, 0, 1, 2, -2, 5, -5, 1.0, True, "1", None, "int64")

# Scalar options of the extras: (valid values, invalid ones), the first
# valid value the default ("default": the keyword left out).  Which list is
# drawn from is a decision of its own ("<label>.bad", valid two times in
# three), so that most calls get past the options to the kernels; `encode`
# sets it from the value asked for.  A string names a value that is not a
# plain Python number (see SCALARS): ``encode(temperature="float32")``.
SCALAR_OPTIONS = {
    "temperature": ((1.0, 2.0, 0.5, 0.7, 3, 1e-3, 1e3, 1e-300, 1e300, "float32", "fraction", "int64",
                     1e-310, 1e-39, 1e308),
                    (0.0, 0, -0.0, -1.0, math.nan, math.inf, -math.inf, "str", True, False, None,
                     "0d-array", "array", "complex")),
    "softcap": ((None, 30.0, 1.0, 0.1, 5, 1e-300, 1e300, "float32"),
                (0.0, 0, -1.0, math.nan, math.inf, -math.inf, "str", True, "0d-array")),
    "z_loss": ((0.0, 1e-4, 1.0, 1, 0, 1e300, -0.0, "float32"),
               (-1e-4, math.nan, math.inf, -math.inf, "str", True, None, "0d-array")),
    "gamma": ((2.0, 0.0, 0.5, 1, 0, 5.0, 100.0, 1e-300, -0.0, "float32"),
              (-1.0, math.nan, math.inf, "str", True, None, "0d-array")),
    # "default": 0.25 for the sigmoid focal loss, None for the softmax one
    "alpha": (("default", None, 0.25, 0.0, 1.0, 0.5, -1.0, -0.0, 2.0, 1, "float32"),
              (math.nan, math.inf, -math.inf, "str", True, "0d-array", "complex")),
    "beta": ((0.5, 0.1, 0.9, 0.25, 1e-300, 1 - 2**-53, "float32"),
             (0.0, 1.0, 0, 1, -0.1, 1.5, math.nan, math.inf, "str", True, None, "0d-array")),
}

SCALARS = {
    "temperature": {"float32": np.float32(0.3), "fraction": fractions.Fraction(1, 3),
                    "int64": np.int64(2), "str": "2.0", "0d-array": np.array(2.0),
                    "array": np.array([2.0]), "complex": 2 + 0j},
    "softcap": {"float32": np.float32(5.0), "str": "30", "0d-array": np.array(30.0)},
    "z_loss": {"float32": np.float32(1e-3), "str": "1e-4", "0d-array": np.array(1e-4)},
    "gamma": {"float32": np.float32(1.5), "str": "2", "0d-array": np.array(2.0)},
    "alpha": {"float32": np.float32(0.75), "str": "0.25", "0d-array": np.array(0.25),
              "complex": 0.25 + 0j},
    "beta": {"float32": np.float32(0.3), "str": "0.5", "0d-array": np.array(0.5)},
}

# logsumexp: the form of `axis` (drawn after AXES), `b`, and the two flags
LSE_AXES = ("as-drawn", "as-drawn", "as-drawn", "omit", "None", "tuple", "tuple-2", "all-tuple",
            "empty-tuple", "tuple-np", "tuple-dup", "tuple-neg-dup", "tuple-out-of-range",
            "tuple-bool", "tuple-float", "list", "nested")

B_SHAPES = ("same", "same", "last", "col", "first", "scalar", "bigger", "bad", "empty")

B_KINDS = ("positive", "positive", "signed", "signed", "zeros", "all-zero", "bool", "int",
           "float32", "nan", "inf", "cancel", "logits", "complex", "str", "longdouble")

FLAGS = (False, True, 0, 1, "bool_", "int64-1", 2, -1, 1.0, "True", None, "array")

GRAD_OUT = ("none", "none", "fresh", "logits", "logits-view", "partial-logits", "target",
            "weight", "pos-weight", "sample-weight", "wrong-dtype", "wrong-shape", "readonly",
            "strided", "list", "float16", "int")


class Call:
    """One call: ``fn(*args, **kwargs)``, plus what the oracle needs."""

    def __init__(self, name, fn, args, kwargs, bufs, outputs, notes):
        self.name, self.fn, self.args, self.kwargs = name, fn, args, kwargs
        self.bufs, self.outputs, self.notes = bufs, outputs, notes

    def __repr__(self):
        def short(v):
            if isinstance(v, np.ndarray):
                return f"ndarray(shape={v.shape}, dtype={v.dtype}, strides={v.strides})"
            if isinstance(v, list):
                return f"list(len={len(v)})"
            return repr(v)[:80]
        kw = ", ".join(f"{k}={short(v)}" for k, v in self.kwargs.items())
        return f"{self.name}({', '.join(short(a) for a in self.args)}, {kw}) [{'; '.join(self.notes)}]"


def _option(draw, label, options, specials):
    v = draw.choice(label, options)
    return specials(v) if callable(specials) else v


def make_call(data, tmpdir=None):
    """A `Call` from `data` (bytes or a `Draw`)."""
    draw = data if isinstance(data, Draw) else Draw(data)
    bufs = Buffers(tmpdir or tempfile.gettempdir())
    name = draw.choice("fn", FUNCTIONS)
    shape = draw.choice("shape", SHAPES)
    xdt = draw.choice("logits.dtype", LOGIT_DTYPES[:4] if draw.flag("logits.float") is False
                      else LOGIT_DTYPES)
    xv = values(draw, "logits", shape, xdt)
    x = place(bufs, draw, "logits", xv) if xv.dtype.kind in "biufc" else xv
    notes = [f"logits {xdt} {shape}"]
    kwargs, outputs = {}, []
    ndim = len(shape)
    axis = draw.choice("axis", AXES)
    if axis == "int64":
        axis = np.int64(-1)
    ax_ok = isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and -ndim <= axis < ndim
    n_classes = shape[axis] if ax_ok else (shape[-1] if ndim else 1)
    sample_shape = (shape[:axis % ndim] + shape[axis % ndim + 1:]) if ax_ok else shape[:-1]

    if name == "token_stats":
        ignore = _ignore(draw)
        t = _softmax_target(bufs, draw, shape, sample_shape, n_classes, ignore, TS_TARGETS)
        kwargs["axis"] = axis
        _scalar_option(draw, kwargs, "temperature")
        if ignore is not None or draw.flag("ignore_index.given"):
            kwargs["ignore_index"] = ignore
        _common(draw, kwargs, smoothing=False, reduction=False)
        args = [wrap(bufs, draw, "logits", x)]
        if isinstance(t, str):                          # "none": no target; "explicit-none": target=None
            if t == "explicit-none":
                kwargs["target"] = None
        elif draw.flag("target.keyword"):
            kwargs["target"] = wrap(bufs, draw, "target", t)
        else:
            args.append(wrap(bufs, draw, "target", t))
    elif name.startswith("sigmoid_focal"):
        t = _sigmoid_target(bufs, draw, shape)
        _scalar_option(draw, kwargs, "alpha")
        _scalar_option(draw, kwargs, "gamma")
        _common(draw, kwargs, smoothing=False)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", t)]
    elif name.startswith("softmax_focal"):
        ignore = _ignore(draw)
        t = _softmax_target(bufs, draw, shape, sample_shape, n_classes, ignore)
        kwargs["axis"] = axis
        if draw.flag("weight.given"):
            kwargs["weight"] = _weight(bufs, draw, "weight", (n_classes,))
        if ignore is not None or draw.flag("ignore_index.given"):
            kwargs["ignore_index"] = ignore
        _scalar_option(draw, kwargs, "alpha")
        _scalar_option(draw, kwargs, "gamma")
        _common(draw, kwargs, smoothing=False)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", t)]
    elif name.startswith("softmax_cross_entropy"):
        ignore = _ignore(draw)
        t = _softmax_target(bufs, draw, shape, sample_shape, n_classes, ignore)
        kwargs["axis"] = axis
        if draw.flag("weight.given"):
            kwargs["weight"] = _weight(bufs, draw, "weight", (n_classes,))
        if draw.flag("sample_weight.given"):
            kwargs["sample_weight"] = _weight(bufs, draw, "sample_weight", sample_shape)
        if ignore is not None or draw.flag("ignore_index.given"):
            kwargs["ignore_index"] = ignore
        _common(draw, kwargs)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", t)]
    elif name.startswith("sigmoid"):
        t = _sigmoid_target(bufs, draw, shape)
        for wname in ("weight", "pos_weight"):
            if draw.flag(wname + ".given"):
                wshape = draw.choice(wname + ".shape", ("logits", "last", "scalar", "bad", "col"))
                ws = {"logits": shape, "last": shape[-1:], "scalar": (), "bad": (n_classes + 1,),
                      "col": shape[:-1] + (1,) if ndim else ()}[wshape]
                kwargs[wname] = _weight(bufs, draw, wname, ws)
        _common(draw, kwargs)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", t)]
    elif name.startswith(("kl_divergence", "js_divergence")):
        z = _second_logits(bufs, draw, shape, xdt, xv)
        kwargs["axis"] = axis
        if draw.flag("sample_weight.given"):
            kwargs["sample_weight"] = _weight(bufs, draw, "sample_weight", sample_shape)
        if name.startswith("kl"):
            ignore = _ignore(draw)
            if draw.flag("target.given"):
                kwargs["target"] = wrap(bufs, draw, "target",
                                        labels(draw, "target", sample_shape, n_classes, ignore))
            if ignore is not None or draw.flag("ignore_index.given"):
                kwargs["ignore_index"] = ignore
            if draw.flag("reverse"):
                kwargs["reverse"] = True
        else:
            _scalar_option(draw, kwargs, "beta")
        _scalar_option(draw, kwargs, "temperature")
        _common(draw, kwargs, smoothing=False)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target_logits", z)]
    elif name in ("logsumexp", "log_softmax", "softmax"):
        kwargs["axis"] = axis
        args = [wrap(bufs, draw, "logits", x)]
    else:
        return _keras_call(draw, bufs, name, shape, x, n_classes, sample_shape, notes)

    again = draw.choice("logits_again", ("no", "no", "target", "weight", "pos_weight", "sample_weight"))
    if again != "no" and isinstance(args[0], np.ndarray) and (again != "target" or len(args) > 1):
        # the logits array passed a second time, as another argument
        if again == "target":
            args[1] = args[0]
        elif again in kwargs or name.startswith("sigmoid_binary") and again != "sample_weight":
            kwargs[again] = args[0]
        notes.append(f"logits also as {again}")
    fn = getattr(xent, name)
    grad_name = "grad_out" if name.endswith("_with_grad") else ("out" if name in ("log_softmax", "softmax") else None)
    if grad_name:
        g = _grad_out(bufs, draw, shape, args, kwargs)
        if g is not None:
            kwargs[grad_name] = g
            outputs.append(g)
            if isinstance(g, np.ndarray) and g is args[0] and isinstance(args[0], np.ndarray):
                notes.append("in place")
    # Options added later are drawn last, so that the committed seeds of the
    # older functions (whose bytes end before them) make the same calls.
    if name.startswith("softmax_cross_entropy"):
        _scalar_option(draw, kwargs, "temperature")
        _scalar_option(draw, kwargs, "softcap")
        _scalar_option(draw, kwargs, "z_loss")
    elif name == "logsumexp":
        _logsumexp_options(bufs, draw, shape, args, kwargs)
    return Call(name, fn, args, kwargs, bufs, outputs, notes)


SECOND_LOGITS = ("same", "same", "same", "float64", "float32", "float16", "bad-shape", "int", "bool",
                 "near", "near")


def _second_logits(bufs, draw, shape, xdt, xv):
    """The divergences' target logits: of the logits' dtype or another, the
    logits' values nudged by a few parts in a million (near-identical
    distributions), of another shape, or of a wrong kind."""
    kind = draw.choice("target_logits.kind", SECOND_LOGITS)
    if kind == "bad-shape":
        return np.zeros(shape[:-1] + (shape[-1] + 1,) if shape else (2,))
    if kind == "near" and xv.dtype.kind == "f" and xv.dtype.itemsize <= 8:
        nudge = values(draw, "target_logits", shape, "float64")
        with np.errstate(all="ignore"):
            z = (xv + (1e-6 * nudge * np.abs(xv)).astype(xv.dtype)).astype(xv.dtype)
    else:
        dt = {"same": xdt, "near": xdt, "int": "int64", "bool": "bool"}.get(kind, kind)
        z = values(draw, "target_logits", shape, dt)
    return place(bufs, draw, "target_logits", z) if z.dtype.kind in "biufc" else z


TARGET_KINDS = ("indices", "indices", "probs", "probs-bad-shape", "float-indices", "bool", "complex",
                "indices-full-shape")

TS_TARGETS = ("indices", "indices", "none", "none", "explicit-none", "probs", "float-indices", "bool",
              "complex", "indices-full-shape")


def _softmax_target(bufs, draw, shape, sample_shape, n_classes, ignore, kinds=TARGET_KINDS):
    """Class indices (some bad) or probabilities, or a wrong kind of target;
    a string (the kind) where there is none."""
    kind = draw.choice("target.kind", kinds)
    if kind in ("none", "explicit-none"):
        return kind
    if kind in ("indices", "indices-full-shape"):
        tshape = shape if kind == "indices-full-shape" else sample_shape
        t = labels(draw, "target", tshape, n_classes, ignore)
    elif kind == "probs":
        t = np.abs(values(draw, "target", shape, draw.choice("target.dtype", ("float64", "float32", "float16"))))
    elif kind == "probs-bad-shape":
        t = np.full(shape[:-1] + (n_classes + 1,), 0.5)
    elif kind == "float-indices":
        t = np.zeros(sample_shape)
    elif kind == "bool":
        t = np.zeros(sample_shape, bool)
    else:
        t = np.zeros(sample_shape, complex)
    return place(bufs, draw, "target", t) if t.dtype.kind in "biufc" else t


def _sigmoid_target(bufs, draw, shape):
    tv = values(draw, "target", shape, draw.choice("target.dtype", ("float64", "float32", "bool",
                                                                     "int64", "complex128")))
    if tv.dtype.kind == "f":
        tv = np.clip(np.abs(tv), 0, draw.choice("target.max", (1.0, 2.0)))
    return place(bufs, draw, "target", tv)


def _scalar_option(draw, kwargs, label):
    """A scalar option of the extras (see SCALAR_OPTIONS), passed when it
    is not the default (or when drawn so)."""
    valid, invalid = SCALAR_OPTIONS[label]
    if draw.record is not None and label in draw.record:
        want = draw.record[label]
        draw.record.setdefault(label + ".bad", not any(_same_option(o, want) for o in valid))
    bad = draw.choice(label + ".bad", (False, False, True))
    v = draw.choice(label, invalid if bad else valid)
    if not bad and _same_option(v, valid[0]):
        if v == "default" or not draw.flag(label + ".given"):
            return
    if isinstance(v, str) and v != "default":
        v = SCALARS[label][v]
    kwargs[label] = v


def _logsumexp_options(bufs, draw, shape, args, kwargs):
    """SciPy's options of logsumexp: tuple and None axes, `b`, `keepdims`, `return_sign`."""
    form = draw.choice("lse.axis", LSE_AXES)
    nd = max(len(shape), 1)
    ax = kwargs.get("axis", -1)
    forms = {"omit": None, "None": None, "tuple": (ax,), "tuple-2": (0, -1),
             "all-tuple": tuple(range(nd)), "empty-tuple": (), "tuple-dup": (0, 0),
             "tuple-np": (np.int64(-1),) + ((np.int32(0),) if nd > 1 else ()),
             "tuple-neg-dup": (nd - 1, -1), "tuple-out-of-range": (0, nd), "tuple-bool": (True,),
             "tuple-float": (1.0,), "list": [0], "nested": ((0,),)}
    if form == "omit":
        kwargs.pop("axis", None)
    elif form != "as-drawn":
        kwargs["axis"] = forms[form]
    if draw.flag("b.given"):
        b = _lse_weights(bufs, draw, shape, args)
        if b is not None:
            kwargs["b"] = b
    for flag in ("keepdims", "return_sign"):
        v = draw.choice(flag, FLAGS)
        if isinstance(v, str) and v != "True":
            v = {"bool_": np.bool_(True), "int64-1": np.int64(1), "array": np.array([True])}[v]
        if v is not False or draw.flag(flag + ".given"):
            kwargs[flag] = v


def _lse_weights(bufs, draw, shape, args):
    bshape = {"same": shape, "last": shape[-1:], "col": shape[:-1] + (1,) if shape else (),
              "first": shape[:1] + (1,) * (len(shape) - 1), "scalar": (), "bigger": (2,) + shape,
              "bad": ((shape[-1] + 1) if shape else 2,), "empty": (0,)}[draw.choice("b.shape", B_SHAPES)]
    kind = draw.choice("b.kind", B_KINDS)
    rng = np.random.default_rng(draw.integer("b.seed", 0, 2**16))
    if kind == "logits":
        return args[0] if isinstance(args[0], np.ndarray) else None
    v = rng.uniform(0.5, 2.0, bshape)
    if kind == "signed":
        v = rng.standard_normal(bshape)
    elif kind == "zeros":
        v = np.where(rng.random(bshape) < 0.5, 0.0, v)
    elif kind == "all-zero":
        v = np.zeros(bshape)
    elif kind == "bool":
        v = rng.random(bshape) < 0.7
    elif kind == "int":
        v = rng.integers(-2, 3, bshape)
    elif kind == "float32":
        v = v.astype(np.float32)
    elif kind in ("nan", "inf") and v.size:
        v.reshape(-1)[0] = math.nan if kind == "nan" else math.inf
    elif kind == "cancel":                              # +1, -1, +1, ...: sums that cancel
        v = np.where(np.arange(v.size) % 2, -1.0, 1.0).reshape(bshape)
    elif kind == "complex":
        v = v + 1j
    elif kind == "str":
        v = v.astype(str)
    elif kind == "longdouble":
        v = v.astype(np.longdouble)
    v = place(bufs, draw, "b", v) if v.dtype.kind in "biufc" else v
    return wrap(bufs, draw, "b", v)


def _ignore(draw):
    v = draw.choice("ignore_index", IGNORE)
    if v == "int64":
        return np.int64(-100)
    if v == "uint64-big":
        return np.uint64(2**64 - 1)
    return v


def _weight(bufs, draw, label, shape):
    kind = draw.choice(label + ".kind", ("good", "good", "negative", "huge", "nan", "int",
                                         "float32", "str", "bad-shape", "complex"))
    rng = np.random.default_rng(draw.integer(label + ".seed", 0, 2**16))
    w = rng.uniform(0.5, 2.0, shape)
    if kind == "negative":
        w = -w
    elif kind == "huge":
        w = w * 1e300
    elif kind == "nan" and w.size:
        w.reshape(-1)[0] = math.nan
    elif kind == "int":
        w = (w * 3).astype(np.int64)
    elif kind == "float32":
        w = w.astype(np.float32)
    elif kind == "str":
        return w.astype(str)
    elif kind == "bad-shape":
        w = np.ones(tuple(s + 1 for s in shape) or (2,))
    elif kind == "complex":
        w = w + 0j
    return wrap(bufs, draw, label, place(bufs, draw, label, w))


def _common(draw, kwargs, smoothing=True, reduction=True):
    if smoothing:
        eps = draw.choice("label_smoothing", SMOOTHING)
        if eps == "float32":
            eps = np.float32(0.25)
        elif eps == "array":
            eps = np.array([0.1])
        if eps != 0.0 or draw.flag("label_smoothing.given"):
            kwargs["label_smoothing"] = eps
    if reduction:
        red = draw.choice("reduction", REDUCTIONS)
        red = {"0d-array": np.array("mean"), "np.str_": np.str_("sum"), "list": ["mean"],
               "two-array": np.array(["mean", "sum"])}.get(red, red) if isinstance(red, str) else red
        if not (isinstance(red, str) and red == "mean" and type(red) is str) or draw.flag("reduction.given"):
            kwargs["reduction"] = red
    nt = draw.choice("n_threads", N_THREADS)
    nt = {"int64": np.int64(3), "int8-0": np.int8(0), "0d-array": np.array(2)}.get(nt, nt) \
        if isinstance(nt, str) and nt != "2" else nt
    if nt is not None or draw.flag("n_threads.given"):
        kwargs["n_threads"] = nt


def _grad_out(bufs, draw, shape, args, kwargs):
    kind = draw.choice("grad_out", GRAD_OUT)
    x = args[0]
    xa = x if isinstance(x, np.ndarray) else None
    gdt = np.float64
    if xa is not None and xa.dtype.kind == "f" and xa.dtype.itemsize <= 8:
        gdt = xa.dtype.newbyteorder("=")
    if kind == "none":
        return None
    if kind == "fresh":
        return place(bufs, draw, "grad_out", np.zeros(shape, gdt), layout="C")
    if kind == "strided":
        return place(bufs, draw, "grad_out", np.zeros(shape, gdt), layout="strided")
    if kind == "logits":
        return x
    if kind == "logits-view" and xa is not None:
        return xa[...]
    if kind == "partial-logits" and xa is not None and xa.ndim and xa.size > 1:
        # the logits' shape and strides, one element further on: a partial overlap
        base = _base_of(bufs, xa)
        if base is None:
            return None
        off = xa.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        try:
            return np.ndarray(xa.shape, gdt, buffer=base, offset=off + xa.itemsize,
                              strides=xa.strides)
        except (TypeError, ValueError):
            return None
    if kind == "target":
        t = args[1] if len(args) > 1 else None
        return t if isinstance(t, np.ndarray) else None
    if kind in ("weight", "pos-weight", "sample-weight"):
        # the weight moved into the first bytes of the output's buffer,
        # handed over the same way (a memoryview stays a memoryview)
        key = kind.replace("-", "_")
        w = kwargs.get(key)
        if not isinstance(w, (np.ndarray, memoryview)):
            return None
        wa = np.asarray(w)
        if wa.dtype.kind not in "fiu" or not wa.size:
            return None
        n_out = int(np.prod(shape)) if shape else 1
        b = bufs.base(max(n_out * np.dtype(gdt).itemsize, wa.nbytes))
        wv = np.ndarray(wa.shape, wa.dtype, buffer=b)
        wv[...] = wa
        kwargs[key] = memoryview(wv) if isinstance(w, memoryview) else wv
        return np.ndarray(shape, gdt, buffer=b)
    if kind == "wrong-dtype":
        return np.zeros(shape, np.float32 if gdt == np.float64 else np.float64)
    if kind == "wrong-shape":
        return np.zeros(tuple(s + 1 for s in shape), gdt)
    if kind == "readonly":
        return place(bufs, draw, "grad_out", np.zeros(shape, gdt), layout="readonly")
    if kind == "list":
        return np.zeros(shape, gdt).tolist()
    if kind == "float16":
        return np.zeros(shape, np.float16)
    if kind == "int":
        return np.zeros(shape, np.int64)
    return None


def _keras_call(draw, bufs, name, shape, x, n_classes, sample_shape, notes):
    fn = getattr(xent.keras, name.split(".")[1])
    kwargs = {}
    from_logits = draw.choice("from_logits", (False, True, 1, "yes", None, np.bool_(True)))
    if from_logits is not False or draw.flag("from_logits.given"):
        kwargs["from_logits"] = from_logits
    axis = draw.choice("axis", AXES)
    if axis != -1:
        kwargs["axis"] = axis if axis != "int64" else np.int64(-1)
    if name.endswith("sparse_categorical_crossentropy"):
        ic = _ignore(draw)
        if ic is not None:
            kwargs["ignore_class"] = ic
        yt = labels(draw, "target", sample_shape, n_classes, ic)
    else:
        eps = draw.choice("label_smoothing", SMOOTHING)
        if eps != 0.0:
            kwargs["label_smoothing"] = {"float32": np.float32(0.25), "array": np.array([0.1])}.get(eps, eps) \
                if isinstance(eps, str) else eps
        yt = values(draw, "target", shape, draw.choice("target.dtype", ("float64", "float32", "bool",
                                                                         "int64", "str")))
        yt = np.abs(yt) if yt.dtype.kind in "fi" else yt
    yt = place(bufs, draw, "target", yt) if yt.dtype.kind in "biufc" else yt
    if draw.flag("keras.swapped"):
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", yt)]
        notes.append("swapped")
    else:
        args = [wrap(bufs, draw, "target", yt), wrap(bufs, draw, "logits", x)]
    return Call(name, fn, args, kwargs, bufs, [], notes)


# ---------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------

ALLOWED = (TypeError, ValueError, OverflowError, MemoryError)


def _arg_names(fn):
    return set(inspect.signature(fn).parameters)


def _covered(base, out):
    """A byte mask of `base` that `out` (a view of it) covers."""
    mask = np.zeros(base.nbytes, dtype=np.uint8)
    if not isinstance(out, np.ndarray) or not out.size or not np.may_share_memory(out, base):
        return mask
    off = out.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    view = np.lib.stride_tricks.as_strided(mask[off:], shape=out.shape + (out.itemsize,),
                                           strides=out.strides + (1,), writeable=True)
    view[...] = 1
    return mask


def _lists(call):
    return [(i, v, repr(v)) for i, v in enumerate(list(call.args) + list(call.kwargs.values()))
            if isinstance(v, (list, tuple))]


def check_call(call):
    """Run `call` and check the oracle; raise `Finding` when it fails."""
    before = call.bufs.snapshot()
    lists = _lists(call)
    ref = _reference(call)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call.fn(*call.args, **call.kwargs)
            error = None
        except BaseException as exc:  # noqa: B902 - the oracle judges every exception
            result, error = None, exc
    leaked = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
              or "xent" in str(w.filename)]
    if leaked:
        w = leaked[0]
        raise Finding(f"{call}: a warning escaped: {w.category.__name__}: {w.message} "
                      f"({w.filename}:{w.lineno})")
    after = call.bufs.snapshot()
    for i, v, r in lists:
        if repr(v) != r:
            raise Finding(f"{call}: the list argument {i} was modified")
    if error is not None:
        _check_error(call, error)
        for k, (b0, b1) in enumerate(zip(before, after)):
            if b0 != b1:
                raise Finding(f"{call}: raised {type(error).__name__} ({error}) but buffer {k} "
                              "(an input or an output) was written")
        return "error", type(error).__name__
    for k, (base, b0, b1) in enumerate(zip(call.bufs.bases, before, after)):
        if b0 == b1:
            continue
        allowed = np.zeros(base.nbytes, dtype=np.uint8)
        for o in call.outputs:
            allowed |= _covered(base, o)
        diff = np.frombuffer(b0, np.uint8) != np.frombuffer(b1, np.uint8)
        if np.any(diff & (allowed == 0)):
            raise Finding(f"{call}: an input was modified (buffer {k})")
    _check_accepted(call)
    _check_result(call, result, ref)
    return "ok", call.name


def _as_input(v):
    if isinstance(v, memoryview):
        return np.asarray(v)
    return v if isinstance(v, np.ndarray) else None


def _check_accepted(call):
    """A call that succeeded had arguments xent documents as valid: an output
    overlaps no input but the logits exactly (in place), and `reduction`,
    `n_threads` and `label_smoothing` are valid."""
    inputs = [("logits" if i == 0 else f"argument {i}", a) for i, a in enumerate(call.args)]
    inputs += [(k, v) for k, v in call.kwargs.items() if k not in ("grad_out", "out")]
    for o in call.outputs:
        if not isinstance(o, np.ndarray):
            continue
        for name, v in inputs:
            a = _as_input(v)
            if a is None or not np.shares_memory(o, a):
                continue
            same = (name == "logits" and a.__array_interface__["data"][0] == o.__array_interface__["data"][0]
                    and a.strides == o.strides and a.shape == o.shape)
            if not same:
                raise Finding(f"{call}: accepted an output that overlaps `{name}`")
    kw = call.kwargs
    red = kw.get("reduction", "mean")
    if "reduction" in kw and not (isinstance(red, str) and red in ("none", "sum", "mean", "state")):
        raise Finding(f"{call}: accepted reduction={red!r}")
    nt = kw.get("n_threads")
    if nt is not None and not (isinstance(nt, (int, np.integer)) and not isinstance(nt, (bool, np.bool_))
                               and (nt >= 1 or nt == -1)):
        raise Finding(f"{call}: accepted n_threads={nt!r}")
    eps = kw.get("label_smoothing", 0.0)
    if "label_smoothing" in kw and not (isinstance(eps, (int, float, np.floating, np.integer))
                                        and not isinstance(eps, (bool, np.bool_)) and 0 <= eps <= 1):
        raise Finding(f"{call}: accepted label_smoothing={eps!r}")
    for k, ok in _SCALAR_RULES.items():
        if k in kw and not ok(kw[k]):
            raise Finding(f"{call}: accepted {k}={kw[k]!r}")
    for k in ("keepdims", "return_sign"):
        v = kw.get(k, False)
        if k in kw and not (isinstance(v, (bool, np.bool_)) or _integer(v) and v in (0, 1)):
            raise Finding(f"{call}: accepted {k}={v!r}")
    if "axis" in kw and not call.name.startswith("keras"):
        _check_accepted_axis(call, kw["axis"])


def _real(v):
    """A finite real number, not a bool (nor an array, a string, a complex)."""
    return (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(float(v)))


def _integer(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


_SCALAR_RULES = {
    "temperature": lambda v: _real(v) and v > 0,
    "softcap": lambda v: v is None or _real(v) and v > 0,
    "z_loss": lambda v: _real(v) and v >= 0,
    "gamma": lambda v: _real(v) and v >= 0,
    "alpha": lambda v: v is None or _real(v),
    "beta": lambda v: _real(v) and 0 < v < 1,
}


def _check_accepted_axis(call, axis):
    """An integer axis; for logsumexp also None or a tuple of integers that
    names each axis of the (broadcast) shape at most once."""
    if call.name != "logsumexp":
        if not _integer(axis):
            raise Finding(f"{call}: accepted axis={axis!r}")
        return
    if axis is None:
        return
    items = axis if isinstance(axis, tuple) else (axis,) if _integer(axis) else None
    if items is None or not all(_integer(a) for a in items):
        raise Finding(f"{call}: accepted axis={axis!r}")
    try:
        shape = np.shape(call.args[0])
        if call.kwargs.get("b") is not None:
            shape = np.broadcast_shapes(shape, np.shape(call.kwargs["b"]))
    except Exception:
        return
    nd = max(len(shape), 1)
    if any(not -nd <= a < nd for a in items) or len({int(a) % nd for a in items}) != len(items):
        raise Finding(f"{call}: accepted axis={axis!r} for {nd} dimension(s)")


def _check_error(call, error):
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        raise error
    if isinstance(error, RuntimeError) and any(
            isinstance(a, RaisingArray) and a.exc is error
            for a in list(call.args) + list(call.kwargs.values())):
        return                                      # the caller's own exception, unchanged
    if not isinstance(error, ALLOWED) or isinstance(error, (ZeroDivisionError, FloatingPointError)):
        raise Finding(f"{call}: raised {type(error).__name__}: {error}")
    names = _arg_names(call.fn)
    quoted = set(re.findall(r"`([A-Za-z_]+)`", str(error)))
    if not quoted & names:
        raise Finding(f"{call}: {type(error).__name__} does not name an argument: {error}")


def _reference(call):
    """The reference's result on copies of the arguments, or None when it
    does not apply (it refuses the call, or the call is not float64)."""
    ref_fn = getattr(xent.reference, call.name, None)
    if ref_fn is None:
        return None
    args = list(call.args)
    x = args[0]
    if not isinstance(x, np.ndarray) or not x.size:
        return None
    # float64 logits; token_stats also others, for its integer fields (argmax, rank)
    if x.dtype != np.float64 and not (call.name == "token_stats" and x.dtype.kind in "iuf"
                                      and x.dtype.itemsize <= 8):
        return None
    kwargs = {k: (np.array(v) if isinstance(v, (np.ndarray, memoryview)) else v)
              for k, v in call.kwargs.items() if k not in ("grad_out", "out", "n_threads")}
    if isinstance(kwargs.get("reduction"), str) and kwargs["reduction"] == "state":
        kwargs["reduction"] = "sum"          # the state's sum() is judged against it
    for k in ("weight", "sample_weight", "pos_weight"):
        v = kwargs.get(k)
        if v is not None and (not isinstance(v, np.ndarray) or v.dtype != np.float64):
            return None
    if kwargs.get("b") is not None:
        try:
            b = np.asarray(kwargs["b"])
        except Exception:
            return None
        if b.dtype.kind not in "biuf" or b.dtype.itemsize > 8:
            return None
        kwargs["b"] = b
    if kwargs.get("target") is not None:
        if not isinstance(kwargs["target"], np.ndarray) or kwargs["target"].dtype.kind not in "iu":
            return None
    if len(args) > 1:
        if not isinstance(args[1], np.ndarray) or args[1].dtype.kind not in "fiu":
            return None
        args[1] = np.array(args[1])
    args[0] = np.array(x)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ref_fn(*args, **kwargs)
    except Exception:
        return None


def _compute_dtype(x):
    """xent's compute dtype for logits `x` (None when it is not an array of
    a kind it computes in)."""
    try:
        a = x if isinstance(x, np.ndarray) else np.asarray(x)
    except Exception:
        return None
    if a.dtype.kind == "f":
        return np.dtype(np.float32) if a.dtype.itemsize <= 4 else np.dtype(np.float64)
    return np.dtype(np.float64) if a.dtype.kind in "iu" else None


def _check_result(call, result, ref):
    if call.name == "token_stats":
        return _check_stats(call, result, ref)
    if call.name == "logsumexp":
        return _check_logsumexp(call, result, ref)
    want_pair = call.name.endswith("_with_grad")
    if want_pair:
        if not (isinstance(result, tuple) and len(result) == 2):
            raise Finding(f"{call}: returned {type(result).__name__}, not (loss, grad)")
        loss, grad = result
        g = call.kwargs.get("grad_out")
        if g is not None and grad is not g:
            raise Finding(f"{call}: the gradient is not the grad_out array")
        if not isinstance(grad, np.ndarray):
            raise Finding(f"{call}: the gradient is a {type(grad).__name__}")
    else:
        loss, grad = result, None
    red = call.kwargs.get("reduction", "mean")
    if isinstance(red, str) and red == "state":
        if not isinstance(loss, xent.ReductionState):
            raise Finding(f"{call}: reduction='state' returned {type(loss).__name__}")
        loss, red = loss.sum(), "sum"
    if call.name.startswith(("softmax_cross", "sigmoid", "softmax_focal", "kl_", "js_")) \
            and red in ("mean", "sum") \
            and type(loss) is not float:
        raise Finding(f"{call}: reduction={red!r} returned {type(loss).__name__}, not float")
    if "focal" in call.name and red == "none":
        cdt = _compute_dtype(call.args[0])
        if not isinstance(loss, np.ndarray) or cdt is not None and loss.dtype != cdt:
            raise Finding(f"{call}: reduction='none' returned {type(loss).__name__} "
                          f"{getattr(loss, 'dtype', '')}, not an ndarray of {cdt}")
    if ref is None:
        return
    rl, rg = ref if want_pair else (ref, None)
    _close(call, "loss", loss, rl)
    if rg is not None:
        _close(call, "grad", grad, rg)


def _mass(call):
    """A bound on the weighted target mass of a row: the documented accuracy
    of a gradient that cancels (``Q softmax - q``, ``sigmoid(x) - t``) is
    absolute, in units of that mass; inf when it overflows float64, where
    intermediate products may be inf or NaN (``inf * 0``) although the exact
    result is finite."""
    def biggest(v):
        if v is None:
            return 1.0
        a = np.abs(np.asarray(v, dtype=np.float64))
        return float(np.nanmax(a)) if a.size else 1.0

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # nanmax of all-NaN
        kw = call.kwargs
        m = biggest(kw.get("weight")) * biggest(kw.get("sample_weight")) \
            * biggest(kw.get("pos_weight"))
        # the gradient is divided by the temperature; a focal term's factor
        # is up to |alpha_t| (1 + gamma)
        if _real(kw.get("temperature")) and kw["temperature"] > 0:
            m *= max(1.0, 1.0 / float(kw["temperature"]))
        if _real(kw.get("gamma")):
            m *= 1.0 + abs(float(kw["gamma"]))
        if _real(kw.get("alpha")):
            m *= max(1.0, abs(float(kw["alpha"])), abs(1.0 - float(kw["alpha"])))
        t = call.args[1] if len(call.args) > 1 else None
        if isinstance(t, np.ndarray) and t.dtype.kind == "f" and t.size:
            rows = np.abs(t.astype(np.float64))
            if rows.ndim and call.name.startswith(("softmax_cross_entropy", "softmax_focal")):
                rows = np.moveaxis(rows, int(call.kwargs.get("axis", -1)), -1).sum(axis=-1)
            m *= max(1.0, float(np.nanmax(rows)))
        return m if np.isfinite(m) else math.inf


def _close(call, what, got, want, skip=None, factor=None):
    """`got` equal to `want` within the documented bounds; `skip` masks
    entries not compared, `factor` widens the bound entry by entry."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Finding(f"{call}: {what} has shape {got.shape}, the reference {want.shape}")
    mass = _mass(call)
    if mass == math.inf:
        return                     # products of weights and targets overflow: no bound
    if skip is not None:
        keep = ~np.broadcast_to(skip, got.shape)
        got, want = got[keep], want[keep]
        factor = None if factor is None else np.broadcast_to(factor, keep.shape)[keep]
    finite = np.isfinite(want)
    if not np.array_equal(np.isnan(got), np.isnan(want)) or \
            not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        raise Finding(f"{call}: {what} differs from the reference in its inf/NaN pattern: "
                      f"{got.ravel()[:6]} vs {want.ravel()[:6]}")
    if finite.any():
        scale = max(1.0, mass, float(np.max(np.abs(want[finite]))))
        diff = np.abs(got[finite] - want[finite])
        if factor is not None:
            diff = diff / factor[finite]
        err = float(np.max(diff))
        if not err <= 1e-9 * scale:
            raise Finding(f"{call}: {what} is {err:.3g} from the reference (scale {scale:.3g})")


def _check_stats(call, result, ref):
    """token_stats: a TokenStats of per-sample arrays, its integer fields
    equal to the reference's, its float fields close (float64 logits), and
    its logprob bitwise -softmax_cross_entropy(..., reduction="none")."""
    if type(result) is not xent.TokenStats:
        raise Finding(f"{call}: returned {type(result).__name__}, not xent.TokenStats")
    has_target = len(call.args) > 1 or call.kwargs.get("target") is not None
    for f in ("logprob", "rank"):
        if (getattr(result, f) is None) == has_target:
            raise Finding(f"{call}: {f} is {'None' if has_target else 'given'} "
                          f"{'with' if has_target else 'without'} a target")
    cdt = _compute_dtype(call.args[0])
    fields = [(f, v) for f, v in zip(result._fields, result) if v is not None]
    shape = result.lse.shape if isinstance(result.lse, np.ndarray) else None
    for f, v in fields:
        want_dt = np.dtype(np.int64) if f in ("argmax", "rank") else cdt
        if not isinstance(v, np.ndarray) or v.shape != shape or want_dt is not None and v.dtype != want_dt:
            raise Finding(f"{call}: field {f} is {type(v).__name__} {getattr(v, 'dtype', '')} "
                          f"{getattr(v, 'shape', '')}, not an ndarray of {want_dt} {shape}")
    x = np.asarray(call.args[0])
    ax = call.kwargs.get("axis", -1)
    n_classes = x.shape[ax] if x.ndim else 1
    for f in ("argmax", "rank"):
        v = getattr(result, f)
        if v is not None and v.size and not (v.min() >= -1 and v.max() < n_classes):
            raise Finding(f"{call}: {f} outside [-1, {n_classes}): {v.ravel()[:6]}")
    if has_target:
        _check_logprob_is_ce(call, result.logprob)
    if ref is None:
        return
    for f in ("argmax", "rank"):
        v, w = getattr(result, f), getattr(ref, f)
        if (v is None) != (w is None) or v is not None and not np.array_equal(v, w):
            raise Finding(f"{call}: {f} differs from the reference: {np.ravel(v)[:8]} vs "
                          f"{np.ravel(w)[:8]}")
    if x.dtype == np.float64:
        for f in ("lse", "entropy", "logprob"):
            if getattr(ref, f) is not None:
                _close(call, f, getattr(result, f), getattr(ref, f))


def _check_logprob_is_ce(call, logprob):
    kw = {k: v for k, v in call.kwargs.items() if k in ("axis", "temperature", "ignore_index", "n_threads")}
    args = list(call.args)
    if len(args) == 1:
        args.append(call.kwargs["target"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ce = xent.softmax_cross_entropy(*args, reduction="none", **kw)
    except Exception as exc:
        raise Finding(f"{call}: token_stats accepted the call, softmax_cross_entropy with its "
                      f"arguments raised {type(exc).__name__}: {exc}") from None
    with np.errstate(all="ignore"):
        neg = -np.asarray(ce)
    if neg.dtype != logprob.dtype or not np.array_equal(logprob, neg, equal_nan=True):
        bad = np.flatnonzero(~((logprob == neg) | np.isnan(logprob) & np.isnan(neg)))[:4]
        raise Finding(f"{call}: logprob is not -softmax_cross_entropy(reduction='none') bitwise: "
                      f"{logprob.ravel()[bad]} vs {neg.ravel()[bad]} ({logprob.dtype}, {neg.dtype})")


def _check_logsumexp(call, result, ref):
    """logsumexp: a NumPy scalar for a 0-d result, an ndarray otherwise, in
    the compute dtype; with return_sign a pair (lse, sign) of one shape,
    sign in {+1, -1, 0, NaN}; close to the reference where the signed sum
    is not too ill-conditioned."""
    rs = call.kwargs.get("return_sign", False)
    if rs:
        if not (isinstance(result, tuple) and len(result) == 2):
            raise Finding(f"{call}: return_sign={rs!r} returned {type(result).__name__}, not (lse, sign)")
        parts = list(zip(("lse", "sign"), result))
    else:
        parts = [("lse", result)]
    cdt = _compute_dtype(call.args[0])
    for what, v in parts:
        if isinstance(v, np.ndarray):
            if v.ndim == 0:
                raise Finding(f"{call}: {what} is a 0-d array, not a NumPy scalar")
        elif not isinstance(v, np.floating):
            raise Finding(f"{call}: {what} is a {type(v).__name__}")
        if cdt is not None and v.dtype != cdt:
            raise Finding(f"{call}: {what} has dtype {v.dtype}, not {cdt}")
    if rs:
        lse, sign = result
        if np.shape(lse) != np.shape(sign):
            raise Finding(f"{call}: lse has shape {np.shape(lse)}, sign {np.shape(sign)}")
        s = np.asarray(sign, dtype=np.float64)
        if not np.all(np.isin(s, (1.0, -1.0, 0.0)) | np.isnan(s)):
            raise Finding(f"{call}: sign holds {np.unique(s)[:6]}")
    if ref is None:
        return
    skip, big = _lse_condition(call)
    if rs:
        _close(call, "lse", result[0], ref[0], skip, big)
        got, want = np.asarray(result[1], np.float64), np.asarray(ref[1], np.float64)
        if got.shape != want.shape:
            raise Finding(f"{call}: sign has shape {got.shape}, the reference {want.shape}")
        keep = np.ones(got.shape, bool) if skip is None else ~skip
        if not np.array_equal(got[keep], want[keep], equal_nan=True):
            raise Finding(f"{call}: sign differs from the reference: {got.ravel()[:6]} vs {want.ravel()[:6]}")
    else:
        _close(call, "lse", result, ref, skip, big)


def _lse_condition(call):
    """Where the reference's logsumexp with `b` is no bound: `(skip, factor)`.

    * A `b` with negative entries: the signed sum's condition number
      ``cond = (S+ + S-) / |S+ - S-|`` multiplies the error (the kernel's is
      a few ulps of each log-sum); the bound is widened by
      ``cond * max(1, |log S+|, |log S-|)`` and entries with cond > 1e6
      (where even the sign may be rounding) are skipped.

    (None, None) without negative weights."""
    b = call.kwargs.get("b")
    try:
        b = np.asarray(b, dtype=np.float64)
    except Exception:
        return None, None
    negative = bool((b < 0).any())
    if not negative:
        return None, None
    kw = {k: v for k, v in call.kwargs.items() if k in ("axis", "keepdims")}
    x = np.array(call.args[0])
    lse = xent.reference.logsumexp
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lp = np.asarray(lse(x, b=np.where(b > 0, b, 0.0), **kw), np.float64)
        lq = np.asarray(lse(x, b=np.where(b < 0, -b, 0.0), **kw), np.float64)
        d = np.abs(lp - lq)
        cond = np.where(np.isneginf(lp) & np.isneginf(lq), 1.0, (1 + np.exp(-d)) / -np.expm1(-d))
        cond = np.where(np.isnan(cond), 1.0, cond)      # inf - inf: a NaN sum either way
        big = cond * np.maximum(1.0, np.nan_to_num(np.maximum(np.abs(lp), np.abs(lq)), posinf=1.0))
    return np.asarray(cond > 1e6), big
