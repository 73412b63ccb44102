"""Binary classification two ways: one logit + sigmoid BCE, or two logits + softmax CE.

What it shows
-------------
A logistic-regression classifier is trained in plain NumPy with xent's fused
loss-and-gradient kernels, twice on the same data:

* model A: one logit per sample, ``u = X w + b``, with
  ``xent.sigmoid_binary_cross_entropy_with_grad``;
* model B: two logits per sample, ``Z = X W + c``, with
  ``xent.softmax_cross_entropy_with_grad`` (class indices 0/1).

Both give the same probabilities at every step, and the two logits of model B
end up negatives of each other.

Why
---
With two classes the softmax only sees the difference of the logits:
``softmax(z0, z1)[1] = 1 / (1 + exp(-(z1 - z0))) = sigmoid(z1 - z0)``, so
model B is model A in the variable ``d = z1 - z0``, with the same loss.
Its gradient with respect to the logits is ``(p0 - [y=0], p1 - [y=1]) =
(-g, g)`` where ``g = sigmoid(d) - y`` is model A's gradient: the two columns
of W move by opposite amounts, so from a zero start ``z0 = -z1`` for ever,
and ``d`` moves twice as far per step as ``u``.  Hence model B is trained
with half the learning rate, which makes the two trajectories identical
(with the same rate both would still reach the same optimum, by different
paths).

Why the one-logit form is the cheaper choice: it has half the output
parameters and produces, reads and back-propagates one number per sample
instead of two (half the memory traffic in the loss, which is memory-bound);
it needs no max or sum over classes; and it has no redundant direction (in
model B adding the same amount to both logits changes nothing, a flat
direction that an optimiser and a weight decay must handle).  Use softmax CE
when there are three or more classes.

Run it: ``python examples/binary_one_vs_two_logits.py`` (a few seconds).
"""

import time

import numpy as np

import xent


def make_data(rng, n=2000):
    """Two overlapping Gaussian clouds in 2-D (not separable, so the optimum is finite)."""
    y = rng.integers(0, 2, n)
    centres = np.array([[-1.0, -0.5], [1.0, 0.5]])
    X = centres[y] + rng.normal(scale=1.2, size=(n, 2))
    return X, y


def sigmoid(u):
    return np.exp(-np.logaddexp(0.0, -u))


def train(X, y, lr=0.5, steps=300):
    n_features = X.shape[1]
    t = y.astype(np.float64)  # BCE targets as floats in {0, 1}

    # Model A: one logit per sample.
    w, b = np.zeros(n_features), 0.0
    # Model B: two logits per sample; zero start.
    W, c = np.zeros((n_features, 2)), np.zeros(2)

    history = []
    for step in range(steps + 1):
        u = X @ w + b
        Z = X @ W + c
        # reduction="mean": both gradients are already divided by N.
        loss_a, g = xent.sigmoid_binary_cross_entropy_with_grad(u, t)
        loss_b, G = xent.softmax_cross_entropy_with_grad(Z, y)
        if step % 100 == 0 or step == steps:
            p_a = sigmoid(u)
            p_b = xent.softmax(Z)[:, 1]
            history.append((step, loss_a, loss_b, np.max(np.abs(p_a - p_b))))
        if step == steps:
            break
        # Chain rule through the linear layers (plain gradient descent).
        w -= lr * (X.T @ g)
        b -= lr * g.sum()
        W -= (lr / 2) * (X.T @ G)  # half the rate: d = z1 - z0 moves twice as fast
        c -= (lr / 2) * G.sum(axis=0)
    return (w, b), (W, c), history


def time_call(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    rng = np.random.default_rng(0)
    X, y = make_data(rng)
    (w, b), (W, c), history = train(X, y)

    print("Binary classification: one logit + sigmoid BCE (A) vs two logits + softmax CE (B)")
    print(f"{'step':>5} {'loss A':>12} {'loss B':>12} {'max |p_A - p_B|':>16}")
    for step, loss_a, loss_b, gap in history:
        print(f"{step:>5} {loss_a:>12.8f} {loss_b:>12.8f} {gap:>16.2e}")

    Z = X @ W + c
    p_a = sigmoid(X @ w + b)
    p_b = xent.softmax(Z)[:, 1]
    accuracy = np.mean((p_a > 0.5) == (y == 1))
    print()
    print(f"accuracy of both models: {accuracy:.4f}")
    print(f"max |p_one - p_two| over all samples: {np.max(np.abs(p_a - p_b)):.3e}")
    print(f"max |z0 + z1| (the two logits are negatives): {np.max(np.abs(Z[:, 0] + Z[:, 1])):.3e}")
    print(f"max |z0| for scale: {np.max(np.abs(Z[:, 0])):.3e}")
    print(f"model A weights w, b:            {w.round(6).tolist()}, {b:.6f}")
    print(f"model B difference W1-W0, c1-c0: {(W[:, 1] - W[:, 0]).round(6).tolist()}, {c[1] - c[0]:.6f}")

    # Cost of one fused forward+backward call, one logit vs two, on 10^6 samples.
    n = 1_000_000
    u = rng.normal(size=n)
    t = (rng.random(n) < sigmoid(u)).astype(np.float64)
    Z2 = np.stack([-u / 2, u / 2], axis=1)  # same probabilities, two logits
    labels = t.astype(np.int64)
    t_one = time_call(lambda: xent.sigmoid_binary_cross_entropy_with_grad(u, t))
    t_two = time_call(lambda: xent.softmax_cross_entropy_with_grad(Z2, labels))
    same = abs(xent.sigmoid_binary_cross_entropy(u, t) - xent.softmax_cross_entropy(Z2, labels))
    print()
    print(f"loss + gradient on {n:,} samples (indicative timings, best of 3):")
    print(f"  one logit,  sigmoid BCE: {t_one * 1e3:7.2f} ms, gradient {u.nbytes / 1e6:.0f} MB")
    print(f"  two logits, softmax CE:  {t_two * 1e3:7.2f} ms, gradient {Z2.nbytes / 1e6:.0f} MB")
    print(f"  |loss difference| on the same probabilities: {same:.3e}")


if __name__ == "__main__":
    main()
