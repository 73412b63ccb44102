"""Why cross-entropy is a better training signal than classification error or MSE.

What it shows
-------------
Two predictors on the same three samples (three classes, true classes 0, 1
and 2) both get one sample wrong, so both have classification error 1/3:

* predictor A is barely right twice (0.4 on the true class) and badly wrong
  once (0.1 on the true class);
* predictor B is confidently right twice (0.8) and narrowly wrong once (0.3).

B is clearly the better model, and cross-entropy says so by a wide margin
(computed with xent), while classification error cannot tell them apart.
Mean squared error between the probabilities and the one-hot targets also
prefers B; but the second table shows why it is still a poor training signal
for a softmax classifier: when a prediction is confidently wrong, the MSE
gradient with respect to the logits vanishes, while the cross-entropy
gradient stays near its maximum.

Why
---
* Classification error only looks at the arg-max: it is piecewise constant
  in the model's parameters, so its gradient is zero almost everywhere and
  it ignores how right or wrong each prediction is.
* Cross-entropy ``-log p_true`` grows without bound as the probability of
  the true class goes to 0, and its gradient with respect to the logits is
  simply ``softmax(x) - onehot(y)``: the more wrong, the stronger the push.
* MSE on softmax outputs is bounded (at most 2 per sample) and its gradient
  goes through the softmax Jacobian ``diag(p) - p p^T``, which is ~0 when
  ``p`` is nearly one-hot, right or wrong: a confidently wrong model barely
  learns.

Run it: ``python examples/why_cross_entropy.py`` (about a second).
"""

import numpy as np

import xent
import xent.keras as xk


def classification_error(probabilities, labels):
    return float(np.mean(np.argmax(probabilities, axis=1) != labels))


def mean_squared_error(probabilities, targets):
    """Per sample: the squared distance between the predicted and the one-hot distribution."""
    return float(np.mean(np.sum((probabilities - targets) ** 2, axis=1)))


def mse_gradient_wrt_logits(logits, targets):
    """d/dx of sum_c (softmax(x)_c - t_c)^2, through the softmax Jacobian diag(p) - p p^T."""
    p = xent.softmax(logits)
    r = 2.0 * (p - targets)
    return p * (r - np.sum(p * r, axis=-1, keepdims=True))


def main():
    labels = np.array([0, 1, 2])
    targets = np.eye(3)[labels]
    predictors = {
        "A": np.array([[0.4, 0.3, 0.3],    # right, barely
                       [0.3, 0.4, 0.3],    # right, barely
                       [0.1, 0.8, 0.1]]),  # wrong, badly (0.1 on class 2)
        "B": np.array([[0.8, 0.1, 0.1],    # right, confidently
                       [0.1, 0.8, 0.1],    # right, confidently
                       [0.3, 0.4, 0.3]]),  # wrong, narrowly (0.3 on class 2)
    }

    print("Two predictors with the same classification error")
    print(f"{'predictor':<10} {'error':>8} {'cross-entropy':>14} {'MSE':>8}")
    for name, p in predictors.items():
        # Keras-style categorical cross-entropy on probabilities...
        ce = float(np.mean(xk.categorical_crossentropy(targets, p)))
        # ...is the softmax cross-entropy of the logits log(p), since softmax(log p) = p.
        ce_from_logits = xent.softmax_cross_entropy(np.log(p), labels)
        assert abs(ce - ce_from_logits) < 1e-6  # (up to Keras's 1e-7 clipping)
        print(f"{name:<10} {classification_error(p, labels):>8.4f} {ce:>14.4f} "
              f"{mean_squared_error(p, targets):>8.4f}")

    print()
    print("Gradient on the true class's logit for a confidently wrong prediction")
    print("(logits [k, 0, 0], true class 2; classification error's gradient is 0 throughout)")
    print(f"{'k':>4} {'p(true)':>10} {'CE loss':>9} {'CE grad':>10} {'MSE loss':>9} {'MSE grad':>10}")
    for k in (0.0, 2.0, 4.0, 8.0, 16.0):
        logits = np.array([[k, 0.0, 0.0]])
        ce, ce_grad = xent.softmax_cross_entropy_with_grad(logits, np.array([2]))
        p = xent.softmax(logits)
        mse = float(np.sum((p - targets[2]) ** 2))
        mse_grad = mse_gradient_wrt_logits(logits, targets[2:3])
        print(f"{k:>4.0f} {p[0, 2]:>10.2e} {ce:>9.4f} {ce_grad[0, 2]:>10.2e} {mse:>9.4f} {mse_grad[0, 2]:>10.2e}")


if __name__ == "__main__":
    main()
