"""Atomic file writes: a reader never sees a half-written file."""

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and a rename.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skpoison.utils import atomic_write
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "table.md"
    ...     atomic_write(path, "| a |")
    ...     path.read_text()
    '| a |'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w" if isinstance(data, str) else "wb"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
