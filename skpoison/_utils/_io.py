"""Atomic file writes: a reader never sees a half-written file."""

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def _umask():
    """The process's file-mode creation mask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and a rename.

    The file gets the permissions of an ordinary new file (``0o666`` less the umask,
    e.g. ``0o644`` under umask ``022``), not the private ``0o600`` of a temporary file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skpoison._utils import atomic_write
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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
