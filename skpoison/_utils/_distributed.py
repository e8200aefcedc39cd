"""Data parallelism over ``torch.distributed``: which rows a rank owns, and the sums.

When a ``torch.distributed`` process group is initialised (by ``torchrun`` and the
command line, or by the caller), the clean-gradient pass and Gradient Canceling split
their rows into one contiguous block per rank, compute on their block and combine
the blocks with the collectives below.  When none is initialised every helper is the
identity of one process (the rank is 0 of 1, the block is every row, sums and
gathers return their input), so single-process code runs exactly as before.

Every rank must call the collectives in the same order: the whole computation runs
on every rank, only the rows differ.
"""

from collections import namedtuple

import torch
import torch.distributed as dist

__all__ = [
    "World",
    "all_gather_rows",
    "all_reduce_sum",
    "any_rank",
    "shard_counts",
    "shard_slice",
    "world",
]

World = namedtuple("World", ["rank", "size"])


def world():
    """``(rank, size)`` of the initialised process group; ``(0, 1)`` without one.

    Examples
    --------
    >>> from skpoison._utils._distributed import world
    >>> world()  # no process group in the doctests
    World(rank=0, size=1)
    """
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World(0, 1)


def shard_counts(n, size=None):
    """Rows of each rank's block when ``n`` rows are split over ``size`` ranks.

    The first ``n % size`` ranks hold one row more than the others (a rank may hold
    none when ``n < size``).

    Examples
    --------
    >>> from skpoison._utils._distributed import shard_counts
    >>> shard_counts(7, 3)
    [3, 2, 2]
    """
    size = world().size if size is None else int(size)
    base, extra = divmod(int(n), size)
    return [base + (r < extra) for r in range(size)]


def shard_slice(n, rank=None, size=None):
    """The contiguous block of ``range(n)`` this rank (or ``rank``) owns.

    Examples
    --------
    >>> from skpoison._utils._distributed import shard_slice
    >>> shard_slice(7, rank=1, size=3), shard_slice(5)
    (slice(3, 5, None), slice(0, 5, None))
    """
    here = world()
    size = here.size if size is None else int(size)
    rank = here.rank if rank is None else int(rank)
    counts = shard_counts(n, size)
    start = sum(counts[:rank])
    return slice(start, start + counts[rank])


def _carrier(tensor):
    """``tensor`` on a device the group's backend can communicate from."""
    backend = dist.get_backend()
    if backend == "nccl" and tensor.device.type != "cuda":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    if backend == "gloo" and tensor.device.type != "cpu":
        return tensor.cpu()
    return tensor


def all_reduce_sum(tensor):
    """The sum of ``tensor`` over all ranks (a new tensor on ``tensor``'s device).

    Without a process group, ``tensor`` itself is returned.
    """
    if world().size == 1:
        return tensor
    carried = _carrier(tensor).clone()
    dist.all_reduce(carried, op=dist.ReduceOp.SUM)
    return carried.to(tensor.device)


def any_rank(flag):
    """Whether ``flag`` is true on at least one rank (``bool(flag)`` alone)."""
    if world().size == 1:
        return bool(flag)
    return bool(all_reduce_sum(torch.tensor([float(bool(flag))])).item() > 0)


def all_gather_rows(tensor, counts):
    """Every rank's block of rows, concatenated in rank order (blocks may differ in size).

    Parameters
    ----------
    tensor : torch.Tensor of shape (counts[rank], ...)
        This rank's rows.
    counts : list of int
        Rows of every rank's block, as :func:`shard_counts` gives them.

    Returns
    -------
    rows : torch.Tensor of shape (sum(counts), ...)
        On ``tensor``'s device; ``tensor`` itself without a process group.
    """
    if world().size == 1:
        return tensor
    longest = max(counts)
    carried = _carrier(tensor)
    padded = carried.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = carried
    blocks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(blocks, padded.contiguous())
    return torch.cat([b[:c] for b, c in zip(blocks, counts)]).to(tensor.device)
