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

# The default build works offline: no remote images and no extension that
# fetches anything at build time. Intersphinx is the one exception and is opt-in
# (see below).
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
# _templates/autosummary/class.rst documents every public method of a class
# (its summary table, then each method's full docstring).
templates_path = ["_templates"]
default_role = "literal"

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autodoc_typehints = "none"

# The class template lists and documents the methods; numpydoc would add a
# second, text-less member table.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- intersphinx ------------------------------------------------------------------

# Links to the documentation of the libraries skpoison builds on. Sphinx has to
# download their objects.inv inventories for that, and when a download fails
# it emits a warning that cannot be suppressed (it has no warning type), which
# the -W build turns into an error. The build machines and CI have no
# internet, so the mapping is empty unless SKPOISON_DOCS_INTERSPHINX=1 is set:
#
#     SKPOISON_DOCS_INTERSPHINX=1 python -m sphinx -W -b html docs docs/_build/html
#
# Offline, references to these libraries render as plain code (the nitpicky
# build, ``-n``, lists them as unresolved); online they become links.
INTERSPHINX_URLS = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "sklearn": "https://scikit-learn.org/stable/",
    "imblearn": "https://imbalanced-learn.org/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "skorch": "https://skorch.readthedocs.io/en/stable/",
    "matplotlib": "https://matplotlib.org/stable/",
}
if os.environ.get("SKPOISON_DOCS_INTERSPHINX", "0").lower() in ("1", "true", "yes"):
    intersphinx_mapping = {name: (url, None) for name, url in INTERSPHINX_URLS.items()}
else:
    intersphinx_mapping = {}
intersphinx_timeout = 10

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


# The class pages document the methods a class defines in skpoison, plus
# scikit-learn's get_params/set_params that every estimator offers. Methods
# inherited from torch.nn.Module, skorch or scikit-learn mixins are documented
# by those projects; their docstrings also refer to labels of those projects'
# documentation, which would be errors in the -W build.
_FOREIGN_METHODS_KEPT = frozenset({"get_params", "set_params"})


def _skip_foreign_methods(app, what, name, obj, skip, options):
    # autosummary asks once per member of a class page, with the member's type
    if what != "method" or name in _FOREIGN_METHODS_KEPT:
        return None
    module = getattr(obj, "__module__", None) or ""
    if module == "skpoison" or module.startswith("skpoison."):
        return None
    return True


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_methods)
    # Run before numpydoc's own docstring processing (default priority 500).
    app.connect(
        "autodoc-process-docstring", _escape_trailing_underscores, priority=400
    )
