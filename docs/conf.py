"""Sphinx configuration for the skpoison documentation.

Build (offline, warnings as errors, gallery executed)::

    python -m sphinx -W -b html docs docs/_build/html
"""

import os
import re
import sys
from datetime import date

# Make the package importable when building from a source checkout without
# installing it (an editable install points at the same directory anyway).
DOCS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(DOCS_DIR)
sys.path.insert(0, REPO_ROOT)

# The gallery must never try to open a window.
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import skpoison  # noqa: E402

# -- Project information ------------------------------------------------------

project = "skpoison"
author = "The skpoison developers"
copyright = f"{date.today().year}, {author}"
release = skpoison.__version__
version = ".".join(release.split(".")[:2])

# -- General configuration ----------------------------------------------------

# Everything here works offline: no intersphinx, no remote images, no
# extension that fetches anything at build time.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = []
default_role = "literal"

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autodoc_typehints = "none"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- sphinx-gallery -----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "image_scrapers": ("matplotlib",),
    "plot_gallery": "True",
    "doc_module": ("skpoison",),
    "backreferences_dir": os.path.join("gen_modules", "backreferences"),
    "reference_url": {"skpoison": None},
    "remove_config_comments": True,
    "show_memory": False,
}

# -- HTML output ----------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skpoison {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_show_sourcelink = False


# -- Local hooks ----------------------------------------------------------------

# numpydoc renders parameter types as reST, where a bare word ending in an
# underscore is a hyperlink reference: ``ndarray of shape (n_iter_,)`` would
# fail the -W build with "Unknown target name". Escape such words inside shape
# descriptions before numpydoc and docutils see them.
_SHAPE = re.compile(r"shape \(([^()]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\\\w])([A-Za-z]\w*?)_(?=[,)\s]|$)")


def _escape_shape(match):
    inner = _TRAILING_UNDERSCORE.sub(r"\1\\_", match.group(1))
    return f"shape ({inner})"


def _escape_trailing_underscores(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if "shape (" in line:
            lines[i] = _SHAPE.sub(_escape_shape, line)


def setup(app):
    # Run before numpydoc's own docstring processing (default priority 500).
    app.connect(
        "autodoc-process-docstring", _escape_trailing_underscores, priority=400
    )
