"""Sphinx configuration of xent's documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    sphinx-build -W -b html docs docs/_build/html        # the site, warnings as errors
    sphinx-build -b doctest docs docs/_build/doctest     # every example, as a doctest

The accuracy table and the performance tables and plots are generated when
the build starts (``docs/docgen.py``) from committed measurements:
``docs/data/accuracy.json`` and ``benchmarks/results/*.json``.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import docgen  # noqa: E402
import xent  # noqa: E402

# -- project ------------------------------------------------------------------

project = "xent"
author = "the xent developers"
copyright = "the xent developers"
version = release = xent.__version__

# -- general ------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "data", "Thumbs.db", ".DS_Store"]
default_role = "code"
root_doc = "index"

# autosummary: one generated page per function (docs/api/*.rst, not committed)
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": False}
autodoc_typehints = "none"

# numpydoc: the docstrings follow its format
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# doctest: every `>>>` example of the guide and of the docstrings runs
doctest_global_setup = """
import importlib.util
import numpy as np
import xent
np.set_printoptions(legacy=False)
# optional peers: their examples are skipped (``:skipif:``) where they are not installed
HAVE_SCIPY = importlib.util.find_spec("scipy") is not None
HAVE_THREADPOOLCTL = importlib.util.find_spec("threadpoolctl") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS
    | __import__("doctest").IGNORE_EXCEPTION_DETAIL
    | __import__("doctest").NORMALIZE_WHITESPACE
    | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)
doctest_test_doctest_blocks = "default"

# -- HTML ---------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"xent {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": []}
html_show_sourcelink = False


def setup(app):
    # the generated tables and plots, before any page is read
    app.connect("builder-inited", lambda app: docgen.generate(HERE))
