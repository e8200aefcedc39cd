"""Warnings that point at the user's line, however deep inside skpoison they start."""

import contextlib
import functools
import os
import sys

import sklearn.base

__all__ = ["user_stacklevel"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# the wrappers between a user's call and our code: scikit-learn's fit context, the
# standard library's dispatch and context-manager decorators (and skorch's training
# loop, matched by its folder below)
_WRAPPERS = {
    os.path.abspath(module.__file__) for module in (sklearn.base, functools, contextlib)
}


def _library_frame(filename):
    filename = os.path.abspath(filename)
    return (
        filename.startswith(_PACKAGE)
        or filename in _WRAPPERS
        or f"{os.sep}skorch{os.sep}" in filename
    )


def user_stacklevel():
    """``stacklevel`` for ``warnings.warn`` that names the first frame outside skpoison.

    Counted from the function that calls ``warnings.warn``, so a warning raised
    deep inside a ``fit`` (behind decorators and private helpers) is reported at
    the line of the user's script or notebook that called it.

    Examples
    --------
    >>> import warnings
    >>> from skpoison._utils import user_stacklevel
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("outside skpoison already", UserWarning, stacklevel=user_stacklevel())
    >>> caught[0].filename.endswith("_warnings.py")
    False
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _library_frame(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level
