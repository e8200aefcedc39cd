"""Row batches: the one batching rule of skpoison."""

__all__ = ["batch_slices", "clean_batch_rows", "rows_within"]

# Input elements (rows x features) per batch of a pass over clean rows when no batch
# size is given: 8 MiB of float32 rows, so a pass never holds all clean rows at once.
_CLEAN_BATCH_ELEMENTS = 2**21
# and layer outputs (rows x activation elements) per batch: 64 MiB of float32 outputs,
# so that a net's backward pass over a batch holds some hundred MiB (217 rows of the
# paper's MNIST CNN, whose leaf modules output 77194 elements per row)
_CLEAN_BATCH_ACTIVATIONS = 2**24


def batch_slices(n, batch_size, *, even=False):
    """Slices of ``range(n)`` in batches of ``batch_size`` rows (one slice when ``None``).

    By default every batch but the last holds ``batch_size`` rows, as a minibatch
    schedule wants.  Where batches only bound memory, ``even=True`` makes the same
    number of batches, ``ceil(n / batch_size)``, differ in size by at most one row,
    so that no batch is a small remainder, whose rows cost several times more each
    than a full batch's (fixed per-call costs, and matrix products on a few rows run
    well below the machine's speed: 8 rows of 784 features take about 4 times longer
    per row than 225 on one CPU thread).

    Examples
    --------
    >>> from skpoison._utils import batch_slices
    >>> list(batch_slices(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    >>> [s.stop - s.start for s in batch_slices(1800, 256)]
    [256, 256, 256, 256, 256, 256, 256, 8]
    >>> [s.stop - s.start for s in batch_slices(1800, 256, even=True)]
    [225, 225, 225, 225, 225, 225, 225, 225]
    >>> list(batch_slices(5, None))
    [slice(0, 5, None)]
    """
    # no argument validation on every call, unlike sklearn.utils.gen_batches (~50 us,
    # which adds up in per-batch and per-step loops)
    step = max(1, n if batch_size is None else min(int(batch_size), n))
    if not even or n <= step:
        return (slice(start, min(start + step, n)) for start in range(0, n, step))
    count = -(-n // step)
    size, larger = divmod(n, count)
    stops = [size * (i + 1) + min(i + 1, larger) for i in range(count)]
    return (slice(start, stop) for start, stop in zip([0, *stops[:-1]], stops))


def rows_within(n_rows, row_elements, max_elements, batch_size=None):
    """Rows per batch: ``batch_size``, or as many as keep a batch within ``max_elements``.

    ``row_elements`` is what one row costs (its features, or its per-sample gradient
    entries); the result is at least 1 and at most ``n_rows``.

    Examples
    --------
    >>> from skpoison._utils import rows_within
    >>> rows_within(60000, 784, 2**21), rows_within(100, 784, 2**21), rows_within(5, 1, 8, 2)
    (2674, 100, 2)
    """
    if batch_size is not None:
        return int(batch_size)
    return int(max(1, min(n_rows, max_elements // max(1, int(row_elements)))))


def clean_batch_rows(n_rows, n_features, batch_size=None, activations=0):
    """Rows per batch of a pass over clean rows: ``batch_size``, or a bounded default.

    The default keeps a batch within 2**21 input elements and, for a net whose layers
    output ``activations`` elements per row (:meth:`Objective.activation_elements`),
    within 2**24 layer outputs.

    Examples
    --------
    >>> from skpoison._utils import clean_batch_rows
    >>> clean_batch_rows(60000, 784) < 60000, clean_batch_rows(60000, 784, batch_size=32)
    (True, 32)
    >>> clean_batch_rows(60000, 784), clean_batch_rows(60000, 784, activations=77194)
    (2674, 217)
    """
    rows = rows_within(n_rows, n_features, _CLEAN_BATCH_ELEMENTS, batch_size)
    if batch_size is None and activations:
        rows = min(rows, rows_within(n_rows, activations, _CLEAN_BATCH_ACTIVATIONS))
    return rows
