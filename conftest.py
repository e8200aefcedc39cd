"""Settings for the whole test run (the tests under tests/ and the doctests)."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    """Run every test with one BLAS/OpenMP thread and one torch thread.

    Small problems gain nothing from threads, and on a loaded machine BLAS and torch
    each starting one thread per core oversubscribe it many times over; this makes
    ``python -m pytest`` fast without any environment variable, and its numbers
    independent of the machine's core count.
    """
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(torch_threads)
