"""Result types shared by the kernels' API and ``xent.reference``."""

import math
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


# The exact sums are integers in units of 2^-1074, the smallest double: every
# float32 and float64 value is a whole number of them.
_UNIT_BITS = 1074
_NAN, _PINF, _NINF = 1, 2, 4


def _round(num, special):
    """An exact sum (`num` units and the flags of the infinities and NaNs
    added) rounded once to the nearest double."""
    if special & _NAN or (special & _PINF and special & _NINF):
        return math.nan
    if special:
        return math.inf if special & _PINF else -math.inf
    try:
        return num / (1 << _UNIT_BITS)     # int / int: correctly rounded
    except OverflowError:
        return math.inf if num > 0 else -math.inf


def _from_words(words):
    """(units, flags) of a kernel's exact state (xent._kernels.RS_WORDS
    int64: 32-bit limbs from 2^-1074 up, the last one signed, then flags)."""
    limbs = np.asarray(words[:-1])
    num = int.from_bytes(limbs[:-1].astype("<u4").tobytes(), "little")
    num += int(limbs[-1]) << (32 * (limbs.shape[0] - 1))
    return num, int(words[-1])


class ReductionState:
    """The exact state of a loss's reduction, to merge across chunks.

    Returned by every loss called with ``reduction="state"``.  It holds the
    sum of the per-sample losses (exactly what ``reduction="none"`` returns,
    weighted as there) and the ``"mean"`` denominator (the number of
    samples, or the sum of their weights), both as exact integers in units
    of 2^-1074, so that merging states never rounds: any grouping and any
    order of merges gives the same state, and reading it rounds once.
    A state is picklable and immutable.

    Examples
    --------
    >>> import numpy as np, xent
    >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0]])
    >>> y = np.array([0, 1, 2])
    >>> a = xent.softmax_cross_entropy(x[:2], y[:2], reduction="state")
    >>> b = xent.softmax_cross_entropy(x[2:], y[2:], reduction="state")
    >>> a.merge(b).mean() == xent.softmax_cross_entropy(x, y)
    True
    >>> a.merge(b).count
    3.0
    """

    __slots__ = ("_num", "_den", "_special")

    def __init__(self, num=0, den=0, special=0):
        object.__setattr__(self, "_num", int(num))
        object.__setattr__(self, "_den", int(den))
        object.__setattr__(self, "_special", int(special))

    def __setattr__(self, name, value):
        raise AttributeError("a ReductionState is immutable; merge() returns a new one")

    def __reduce__(self):
        return (ReductionState, (self._num, self._den, self._special))

    @classmethod
    def _from_kernel(cls, words, den):
        """From a kernel's state of the losses' sum and the denominator's
        (units, flags)."""
        num, special = _from_words(words)
        return cls(num, den[0], special | den[1] << 3)

    def merge(self, other):
        """The state of both chunks together (exact: any order of merges
        gives the same state)."""
        if not isinstance(other, ReductionState):
            raise TypeError(f"`other` must be a ReductionState; got {type(other).__name__}.")
        return ReductionState(self._num + other._num, self._den + other._den,
                              self._special | other._special)

    __add__ = merge

    def __radd__(self, other):
        if isinstance(other, int) and other == 0:     # sum() of a list of states
            return self
        return NotImplemented

    def sum(self):
        """The losses' sum, rounded once: ``reduction="sum"``'s value."""
        return _round(self._num, self._special & 7)

    @property
    def count(self):
        """The ``"mean"`` denominator, rounded once: the number of samples
        (ignored ones excluded), or the sum of their weights."""
        return _round(self._den, self._special >> 3)

    def mean(self):
        """``sum() / count``: ``reduction="mean"``'s value (NaN when the
        denominator is 0)."""
        den = self.count
        return self.sum() / den if den != 0 else math.nan

    def __eq__(self, other):
        if not isinstance(other, ReductionState):
            return NotImplemented
        return (self._num, self._den, self._special) == (other._num, other._den, other._special)

    def __hash__(self):
        return hash((self._num, self._den, self._special))

    def __repr__(self):
        return f"ReductionState(sum={self.sum()!r}, count={self.count!r})"


ReductionState.__module__ = "xent"

# doctest's finder skips classes shown under another module's name (xent)
__test__ = {"ReductionState": ReductionState}
