"""Class indices and one-hot targets give the same cross-entropy.

What it shows
-------------
For the same logits, softmax cross-entropy with integer class indices
(``y = [2, 0, ...]``) and with their one-hot encoding (``[[0, 0, 1], [1, 0, 0],
...]``) gives the same per-sample losses, the same mean and the same
gradient; also with label smoothing, on images (``(N, C, H, W)`` with
``axis=1``), and through the Keras-style functions (``xent.keras``) on
probabilities and on logits.

Why
---
With a one-hot row ``t``, ``-sum_c t_c log softmax(x)_c`` keeps the single
term ``c = y``: ``-log softmax(x)_y = logsumexp(x) - x_y``, which is what the
class-index form computes directly.  Label smoothing mixes in the uniform
distribution the same way in both forms (``(1 - eps) t + eps / C``).

Which to use: class indices read one integer per sample instead of C floats
(less memory and memory traffic, no one-hot array to build), and they allow
``ignore_index``; one-hot (or any probability) targets are needed for soft
labels (distillation, mixup).  One difference to know: with per-class
``weight=`` the per-sample losses still agree, but ``reduction="mean"``
does not: PyTorch (and xent) divide by the summed weights of the targets'
classes for class indices, and by N for probability targets.

Run it: ``python examples/class_indices_vs_one_hot.py`` (about a second).
"""

import numpy as np

import xent
import xent.keras as xk


def one_hot(labels, n_classes, axis=-1):
    return np.moveaxis(np.eye(n_classes)[labels], -1, axis)


def row(name, a, b, summary=np.mean):
    """One table line: a summary of each result (the mean loss) and their largest difference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    print(f"{name:<44} {float(summary(a)):>12.8f} {float(summary(b)):>12.8f} {float(np.max(np.abs(a - b))):>11.2e}")


def main():
    rng = np.random.default_rng(1)
    n, n_classes = 8, 5
    logits = rng.normal(scale=2.0, size=(n, n_classes))
    labels = rng.integers(0, n_classes, n)
    targets = one_hot(labels, n_classes)

    print("Class indices vs one-hot targets (the last column must be ~0, up to rounding)")
    print(f"{'':<44} {'indices':>12} {'one-hot':>12} {'max |diff|':>11}")

    row("softmax_cross_entropy, per-sample",
        xent.softmax_cross_entropy(logits, labels, reduction="none"),
        xent.softmax_cross_entropy(logits, targets, reduction="none"))
    row("softmax_cross_entropy, mean",
        xent.softmax_cross_entropy(logits, labels),
        xent.softmax_cross_entropy(logits, targets))
    _, g_idx = xent.softmax_cross_entropy_with_grad(logits, labels)
    _, g_hot = xent.softmax_cross_entropy_with_grad(logits, targets)
    row("gradient d(mean)/d(logits), sum of |g|", g_idx, g_hot, summary=lambda g: np.abs(g).sum())
    row("label_smoothing=0.1, per-sample",
        xent.softmax_cross_entropy(logits, labels, label_smoothing=0.1, reduction="none"),
        xent.softmax_cross_entropy(logits, targets, label_smoothing=0.1, reduction="none"))

    # Images: classes on axis 1, a label per pixel.
    images = rng.normal(size=(2, n_classes, 4, 3))
    pixel_labels = rng.integers(0, n_classes, (2, 4, 3))
    row("(N, C, H, W) logits, axis=1, per-pixel",
        xent.softmax_cross_entropy(images, pixel_labels, axis=1, reduction="none"),
        xent.softmax_cross_entropy(images, one_hot(pixel_labels, n_classes, axis=1), axis=1, reduction="none"))

    # Keras-style functions: sparse_* takes indices, categorical_* one-hot.
    probabilities = xent.softmax(logits)
    row("keras-style, probabilities",
        xk.sparse_categorical_crossentropy(labels, probabilities),
        xk.categorical_crossentropy(targets, probabilities))
    row("keras-style, from_logits=True",
        xk.sparse_categorical_crossentropy(labels, logits, from_logits=True),
        xk.categorical_crossentropy(targets, logits, from_logits=True))

    # The one place they differ: the mean with class weights.
    weight = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    per_idx = xent.softmax_cross_entropy(logits, labels, weight=weight, reduction="none")
    per_hot = xent.softmax_cross_entropy(logits, targets, weight=weight, reduction="none")
    mean_idx = xent.softmax_cross_entropy(logits, labels, weight=weight)
    mean_hot = xent.softmax_cross_entropy(logits, targets, weight=weight)
    print()
    print("With class weights: per-sample losses agree, the means are normalised differently")
    row("weight=..., per-sample", per_idx, per_hot)
    print(f"weight=..., mean: indices {mean_idx:.8f} = sum / sum(weight[y]) = "
          f"{per_idx.sum() / weight[labels].sum():.8f}")
    print(f"                  one-hot {mean_hot:.8f} = sum / N              = {per_hot.sum() / n:.8f}")


if __name__ == "__main__":
    main()
