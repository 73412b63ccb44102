"""xent: fast, numerically exact cross-entropy losses and gradients for NumPy.

Softmax cross-entropy (class indices or probabilities) and sigmoid binary
cross-entropy, from logits, with PyTorch's semantics; their fused gradients;
temperature, soft-capping and z-loss; focal losses; per-token statistics
(log-sum-exp, entropy, argmax, target log-probability and rank); KL and
Jensen-Shannon divergences between two sets of logits; and the softmax
primitives.  The kernels are Cython + OpenMP; results are
bitwise identical for any number of threads, and sums are exact before their
one rounding, so that any split of the rows into chunks gives the same bits
(``reduction="state"``, :class:`ReductionState`; ``xent.dask``).  See ``xent.show_config()``.
"""

from ._api import (
    LabelError,
    js_divergence,
    js_divergence_with_grad,
    kl_divergence,
    kl_divergence_with_grad,
    log_softmax,
    logsumexp,
    sigmoid_binary_cross_entropy,
    sigmoid_binary_cross_entropy_with_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_with_grad,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_with_grad,
    softmax_focal_loss,
    softmax_focal_loss_with_grad,
    token_stats,
)
from ._types import ReductionState, TokenStats
from ._compare import compare
from ._config import config, show_config
from . import keras, reference

__version__ = "0.1.0"

__all__ = [
    "LabelError",
    "ReductionState",
    "TokenStats",
    "compare",
    "config",
    "js_divergence",
    "js_divergence_with_grad",
    "keras",
    "kl_divergence",
    "kl_divergence_with_grad",
    "log_softmax",
    "logsumexp",
    "reference",
    "show_config",
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
