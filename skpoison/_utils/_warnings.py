"""Warnings that point at the user's line, however deep inside skpoison they start."""

import contextlib
import functools
import importlib.util
import os
import sys

__all__ = ["user_stacklevel"]


def _folder(package):
    spec = importlib.util.find_spec(package)  # finds the folder without importing
    locations = spec.submodule_search_locations if spec is not None else None
    return os.path.abspath(locations[0]) + os.sep if locations else None


# skpoison, and the libraries whose frames stand between a user's call and our code:
# scikit-learn (its fit context, Pipeline, GridSearchCV), imbalanced-learn's
# Pipeline, joblib's workers, skorch's training loop, and the standard library's
# dispatch and context-manager decorators
_FOLDERS = tuple(
    folder
    for folder in map(_folder, ("skpoison", "sklearn", "imblearn", "joblib", "skorch"))
    if folder is not None
)
_FILES = {os.path.abspath(module.__file__) for module in (functools, contextlib)}


def _library_frame(filename):
    filename = os.path.abspath(filename)
    return filename.startswith(_FOLDERS) or filename in _FILES


def _import_machinery(filename):
    # the frames warnings.warn itself skips, and does not count, for stacklevel
    return "importlib" in filename and "_bootstrap" in filename


def user_stacklevel():
    """``stacklevel`` for ``warnings.warn`` that names the first frame outside skpoison.

    Counted from the function that calls ``warnings.warn``.  Frames of skpoison and
    of the libraries that call into it (scikit-learn, imbalanced-learn, joblib,
    skorch) are passed over, so a warning raised deep inside a ``fit``, behind
    decorators, a ``Pipeline`` or a ``GridSearchCV``, is reported at the line of
    the user's script or notebook that started it.  (The command line prints its
    warnings on one line each, without a location.)

    Examples
    --------
    >>> import warnings
    >>> from skpoison._utils import user_stacklevel
    >>> def deep_inside_skpoison():  # a doctest's frames are the user's
    ...     warnings.warn("from here", UserWarning, stacklevel=user_stacklevel())
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     deep_inside_skpoison()
    >>> caught[0].lineno  # deep_inside_skpoison's line: the caller is not a library
    2
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (
        _library_frame(frame.f_code.co_filename)
        or _import_machinery(frame.f_code.co_filename)
    ):
        frame = frame.f_back
        level += not _import_machinery(frame.f_code.co_filename)
    return level
