"""Row batches: the one batching rule of skpoison."""

from sklearn.utils import gen_batches

__all__ = ["batch_slices"]


def batch_slices(n, batch_size):
    """Slices of ``range(n)`` in batches of ``batch_size`` (one slice when ``None``).

    Examples
    --------
    >>> from skpoison.utils import batch_slices
    >>> list(batch_slices(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    >>> list(batch_slices(5, None))
    [slice(0, 5, None)]
    """
    return gen_batches(n, n if batch_size is None else max(1, min(int(batch_size), n)))
