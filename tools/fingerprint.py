"""A fingerprint of xent's results: SHA-256 of every loss and gradient over a
fixed matrix of calls, so that two builds can be compared bit for bit.

    python tools/fingerprint.py > a.json                 # one build
    PYTHONPATH=/other/checkout python tools/fingerprint.py > b.json
    python tools/fingerprint.py --compare a.json b.json

The matrix covers every public kernel, float16/32/64, class counts on each
path (few classes, row groups, long rows, a split row), the options, every
reduction and 1 and 2 threads, on inputs with ties, -inf masks and extreme
gaps.  Run it under each SIMD variant with XENT_FORCE_ISA.
"""

import hashlib
import json
import sys

import numpy as np


def _digest(value):
    if isinstance(value, tuple):
        return [_digest(v) for v in value]
    if isinstance(value, float):
        return value.hex()
    a = np.ascontiguousarray(value)
    return hashlib.sha256(a.view(np.uint8).tobytes() + str(a.dtype).encode()).hexdigest()[:20]


def _logits(rng, n, c, dtype):
    x = rng.normal(scale=3.0, size=(n, c))
    x[::5, 0] = x[::5, -1]                       # ties at the max
    if c > 2:
        x[1::7, 1] = -np.inf                     # masks
        x[2::11, 2] = 40.0                       # a large gap
    return x.astype(dtype)


def fingerprint():
    import xent

    rng = np.random.default_rng(12345)
    out = {"isa": xent.config()["simd_variant"]}
    shapes = [(257, 1), (300, 5), (1000, 10), (97, 32), (64, 33), (40, 1000), (5, 9000), (2, 300000)]
    for dtype in (np.float16, np.float32, np.float64):
        for n, c in shapes:
            if dtype == np.float16 and c > 10000:
                continue
            x = _logits(rng, n, c, dtype)
            y = rng.integers(0, c, size=n)
            p = rng.random((n, c)).astype(dtype if dtype != np.float16 else np.float32)
            w = rng.uniform(0.5, 2.0, c)
            sw = rng.uniform(0.0, 2.0, n)
            key = f"{np.dtype(dtype).name}-{n}x{c}"
            for nt in (1, 2):
                for red in ("mean", "sum", "none"):
                    out[f"idx-{key}-{red}-{nt}"] = _digest(
                        xent.softmax_cross_entropy_with_grad(x, y, reduction=red, n_threads=nt))
                    out[f"prob-{key}-{red}-{nt}"] = _digest(
                        xent.softmax_cross_entropy_with_grad(x, p.astype(x.dtype) if dtype != np.float16 else p,
                                                             reduction=red, n_threads=nt))
                    out[f"bce-{key}-{red}-{nt}"] = _digest(xent.sigmoid_binary_cross_entropy_with_grad(
                        x, (p > 0.5).astype(np.float32) if dtype == np.float16 else (p > 0.5).astype(dtype),
                        reduction=red, n_threads=nt))
                out[f"idx-opts-{key}-{nt}"] = _digest(xent.softmax_cross_entropy_with_grad(
                    x, y, weight=w, sample_weight=sw, label_smoothing=0.1, ignore_index=int(y[0]),
                    n_threads=nt))
                out[f"idx-fwd-{key}-{nt}"] = _digest(xent.softmax_cross_entropy(x, y, n_threads=nt))
                out[f"prob-opts-{key}-{nt}"] = _digest(xent.softmax_cross_entropy_with_grad(
                    x, p if dtype == np.float16 else p.astype(dtype), weight=w, sample_weight=sw,
                    label_smoothing=0.2, n_threads=nt))
                out[f"bce-opts-{key}-{nt}"] = _digest(xent.sigmoid_binary_cross_entropy_with_grad(
                    x, p if dtype == np.float16 else p.astype(dtype), weight=w, pos_weight=w[::-1].copy(),
                    label_smoothing=0.1, n_threads=nt))
            for name in ("logsumexp", "log_softmax", "softmax"):
                out[f"{name}-{key}"] = _digest(getattr(xent, name)(x))
    return out


def main(argv):
    if argv[:1] == ["--compare"]:
        a, b = (json.load(open(f)) for f in argv[1:3])
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        print(f"{len(a)} results; {len(differ)} differ" + (": " + ", ".join(differ[:20]) if differ else ""))
        return 1 if differ else 0
    json.dump(fingerprint(), sys.stdout, indent=0, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
