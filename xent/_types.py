"""Result types shared by the kernels' API and ``xent.reference``."""

from typing import NamedTuple, Optional

import numpy as np


class TokenStats(NamedTuple):
    """Per-sample statistics of softmax rows, from :func:`xent.token_stats`.

    Every field has the per-sample shape (the logits' shape without the
    class axis).

    Attributes
    ----------
    lse : ndarray
        ``logsumexp(logits / temperature)`` over the classes.
    entropy : ndarray
        Entropy of ``softmax(logits / temperature)``, in nats.
    argmax : ndarray of int64
        First index of the largest logit; -1 for a row that is all ``-inf``
        or holds a NaN.
    logprob : ndarray or None
        ``log_softmax(logits / temperature)`` at the target; 0 for ignored
        rows; ``None`` without a target.
    rank : ndarray of int64 or None
        How many classes have a logit strictly greater than the target's
        (0: a top-1 hit; ``rank < k``: a top-k hit); -1 for ignored rows
        and rows whose argmax is -1; ``None`` without a target.
    """

    lse: np.ndarray
    entropy: np.ndarray
    argmax: np.ndarray
    logprob: Optional[np.ndarray] = None
    rank: Optional[np.ndarray] = None


TokenStats.__module__ = "xent"
