"""Docstring text shared by several functions (xent's and xent.reference's)."""


def fill(**parts):
    """Replace each ``{name}`` of a function's docstring by ``parts[name]``."""
    def fill_doc(fn):
        for name, text in parts.items():
            fn.__doc__ = fn.__doc__.replace("{" + name + "}", text)
        return fn
    return fill_doc


# the softmax primitives that return an array of x's shape
ROWWISE = """Parameters
    ----------
    x : array_like, shape (..., C, ...)
    axis : int, default -1
    out : ndarray, shape = x.shape, optional
        Where to write; may be `x` itself.

    Returns
    -------
    ndarray, shape = x.shape
        The dtype of `x` (float16 stays float16; integers give float64)."""

# the reference's _with_grad functions
GRAD_OUT = """grad_out : ndarray (logits.shape), optional
        Written with the gradient and returned.

    Returns
    -------"""
