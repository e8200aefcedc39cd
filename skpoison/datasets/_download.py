"""Saving a downloaded archive: streamed, size-capped, checksum-verified and atomic."""

import contextlib
import hashlib
import os
import tempfile

__all__ = ["save_verified"]

_CHUNK_BYTES = 1 << 20


def save_verified(response, dest, sha256, *, max_bytes, what):
    """Stream ``response`` into ``dest``, which appears only once it is verified.

    The bytes go to a temporary file beside ``dest``; more than ``max_bytes`` or a
    SHA-256 other than ``sha256`` raises ``ValueError`` (``what`` names the expected
    archive) and removes it.  The saved file has ordinary permissions (0644).

    Examples
    --------
    >>> import hashlib, io, tempfile
    >>> from pathlib import Path
    >>> from skpoison.datasets._download import save_verified
    >>> dest = Path(tempfile.mkdtemp()) / "data.bin"
    >>> save_verified(io.BytesIO(b"abc"), dest, hashlib.sha256(b"abc").hexdigest(),
    ...               max_bytes=10, what="the test file")
    >>> dest.read_bytes()
    b'abc'
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        n_bytes = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                n_bytes += len(chunk)
                if n_bytes > max_bytes:
                    raise ValueError(f"served more than {max_bytes} bytes, which is not {what}")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != sha256:
            raise ValueError(f"downloaded content has SHA-256 {got}, expected {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
