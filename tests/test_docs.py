"""Every public function has a numpydoc docstring whose Example runs."""

import doctest

import numpy as np
import pytest

import xent
import xent._api
import xent._config
import xent._types

try:
    import xent.dask as xent_dask
except ImportError:          # dask is an extra: its module's examples need it
    xent_dask = None

PUBLIC = [
    "softmax_cross_entropy", "softmax_cross_entropy_with_grad",
    "sigmoid_binary_cross_entropy", "sigmoid_binary_cross_entropy_with_grad",
    "logsumexp", "log_softmax", "softmax", "show_config",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_sections(name):
    doc = getattr(xent, name).__doc__
    for section in ("Examples", ">>>"):
        assert section in doc, f"{name} lacks {section}"
    if name != "show_config":
        for section in ("Parameters", "Returns", "Notes"):
            assert section in doc, f"{name} lacks {section}"


@pytest.mark.parametrize("module", [xent._api, xent._config, xent._types, xent_dask],
                         ids=["xent._api", "xent._config", "xent._types", "xent.dask"])
def test_examples_run(module):
    if module is None:
        pytest.skip("xent.dask needs dask (the dask extra), which is not installed")
    np.set_printoptions(legacy=False)
    res = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
