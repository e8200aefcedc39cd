"""Device and dtype helpers, shared checks, batching, grad mode and atomic file writes
used across skpoison.

Internal: not part of the public API (it may change without notice).  What a user needs
is reachable from the public subpackages.
"""

from ._autograd import with_autograd
from ._batches import batch_slices, clean_batch_rows, rows_within
from ._device import resolve_device, resolve_dtype, to_tensor
from ._io import atomic_write
from ._labels import flip_labels
from ._validation import (
    NumberInterval,
    all_finite,
    check_feature_names,
    check_range,
    class_indices,
    is_fitted,
    is_torch_net,
    projection_box,
)
from ._warnings import user_stacklevel

__all__ = [
    "NumberInterval",
    "all_finite",
    "atomic_write",
    "batch_slices",
    "check_feature_names",
    "check_range",
    "clean_batch_rows",
    "class_indices",
    "flip_labels",
    "is_fitted",
    "is_torch_net",
    "projection_box",
    "resolve_device",
    "rows_within",
    "resolve_dtype",
    "to_tensor",
    "user_stacklevel",
    "with_autograd",
]
