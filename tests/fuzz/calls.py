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
* no input is modified, and when an error is raised no output is written.

A violation raises ``Finding``.  Nothing here depends on atheris or
hypothesis; ``tests/fuzz/fuzz.py`` runs campaigns, ``test_fuzz.py`` replays
the corpus in the ordinary test run.
"""

import inspect
import math
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
             "keras.sparse_categorical_crossentropy", "keras.binary_crossentropy")

SHAPES = ((4, 5), (1, 1), (3, 1), (2, 3, 4), (7,), (0, 5), (5, 0), (), (32, 10), (1, 1000),
          (40, 1000), (2, 70000), (0,), (2, 1, 3))

REDUCTIONS = ("mean", "sum", "none", "MEAN", "avg", None, "0d-array", "np.str_", "list",
              "two-array", 1)

N_THREADS = (None, 1, 2, -1, 0, -2, 3, 1000, 100000, 2**31 - 1, 2**40, 2**80, 1.5, True, "2",
             "int64", "int8-0", "0d-array")

SMOOTHING = (0.0, 0.0, 0.1, 1.0, 1, -0.1, 1.5, math.nan, math.inf, "0.1", True, "float32",
             None, "array")

IGNORE = (None, None, -100, 0, 1, 2**70, -2**70, 1.5, True, "1", "int64", "uint64-big")

AXES = (-1, -1, 0, 1, 2, -2, 5, -5, 1.0, True, "1", None, "int64")

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

    if name.startswith("softmax_cross_entropy"):
        ignore = _ignore(draw)
        kind = draw.choice("target.kind", ("indices", "indices", "probs", "probs-bad-shape",
                                           "float-indices", "bool", "complex", "indices-full-shape"))
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
        t = place(bufs, draw, "target", t) if t.dtype.kind in "biufc" else t
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
        tv = values(draw, "target", shape, draw.choice("target.dtype", ("float64", "float32", "bool",
                                                                         "int64", "complex128")))
        if tv.dtype.kind == "f":
            tv = np.clip(np.abs(tv), 0, draw.choice("target.max", (1.0, 2.0)))
        t = place(bufs, draw, "target", tv)
        for wname in ("weight", "pos_weight"):
            if draw.flag(wname + ".given"):
                wshape = draw.choice(wname + ".shape", ("logits", "last", "scalar", "bad", "col"))
                ws = {"logits": shape, "last": shape[-1:], "scalar": (), "bad": (n_classes + 1,),
                      "col": shape[:-1] + (1,) if ndim else ()}[wshape]
                kwargs[wname] = _weight(bufs, draw, wname, ws)
        _common(draw, kwargs)
        args = [wrap(bufs, draw, "logits", x), wrap(bufs, draw, "target", t)]
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
        elif again in kwargs or name.startswith("sigmoid") and again != "sample_weight":
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
    return Call(name, fn, args, kwargs, bufs, outputs, notes)


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


def _common(draw, kwargs):
    eps = draw.choice("label_smoothing", SMOOTHING)
    if eps == "float32":
        eps = np.float32(0.25)
    elif eps == "array":
        eps = np.array([0.1])
    if eps != 0.0 or draw.flag("label_smoothing.given"):
        kwargs["label_smoothing"] = eps
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
    """A call that succeeded had arguments the contract accepts: an output
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
    if "reduction" in kw and not (isinstance(red, str) and red in ("none", "sum", "mean")):
        raise Finding(f"{call}: accepted reduction={red!r}")
    nt = kw.get("n_threads")
    if nt is not None and not (isinstance(nt, (int, np.integer)) and not isinstance(nt, (bool, np.bool_))
                               and (nt >= 1 or nt == -1)):
        raise Finding(f"{call}: accepted n_threads={nt!r}")
    eps = kw.get("label_smoothing", 0.0)
    if "label_smoothing" in kw and not (isinstance(eps, (int, float, np.floating, np.integer))
                                        and not isinstance(eps, (bool, np.bool_)) and 0 <= eps <= 1):
        raise Finding(f"{call}: accepted label_smoothing={eps!r}")


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
    if not isinstance(x, np.ndarray) or x.dtype != np.float64 or not x.size:
        return None
    kwargs = {k: (np.array(v) if isinstance(v, (np.ndarray, memoryview)) else v)
              for k, v in call.kwargs.items() if k not in ("grad_out", "out", "n_threads")}
    for k in ("weight", "sample_weight", "pos_weight"):
        v = kwargs.get(k)
        if v is not None and (not isinstance(v, np.ndarray) or v.dtype != np.float64):
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


def _check_result(call, result, ref):
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
    if call.name.startswith(("softmax_cross", "sigmoid")) and red in ("mean", "sum") \
            and type(loss) is not float:
        raise Finding(f"{call}: reduction={red!r} returned {type(loss).__name__}, not float")
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
        m = biggest(call.kwargs.get("weight")) * biggest(call.kwargs.get("sample_weight")) \
            * biggest(call.kwargs.get("pos_weight"))
        t = call.args[1] if len(call.args) > 1 else None
        if isinstance(t, np.ndarray) and t.dtype.kind == "f" and t.size:
            rows = np.abs(t.astype(np.float64))
            if rows.ndim and call.name.startswith("softmax_cross_entropy"):
                rows = np.moveaxis(rows, int(call.kwargs.get("axis", -1)), -1).sum(axis=-1)
            m *= max(1.0, float(np.nanmax(rows)))
        return m if np.isfinite(m) else math.inf


def _close(call, what, got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Finding(f"{call}: {what} has shape {got.shape}, the reference {want.shape}")
    mass = _mass(call)
    if mass == math.inf:
        return                     # products of weights and targets overflow: no bound
    finite = np.isfinite(want)
    if not np.array_equal(np.isnan(got), np.isnan(want)) or \
            not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        raise Finding(f"{call}: {what} differs from the reference in its inf/NaN pattern: "
                      f"{got.ravel()[:6]} vs {want.ravel()[:6]}")
    if finite.any():
        scale = max(1.0, mass, float(np.max(np.abs(want[finite]))))
        err = float(np.max(np.abs(got[finite] - want[finite])))
        if not err <= 1e-9 * scale:
            raise Finding(f"{call}: {what} is {err:.3g} from the reference (scale {scale:.3g})")
