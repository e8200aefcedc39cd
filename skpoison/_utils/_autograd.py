"""Autograd on, whatever grad mode the caller is in."""

import functools

import torch

__all__ = ["with_autograd"]


def with_autograd(function):
    """Run ``function`` with gradients recorded, even inside ``torch.no_grad()``.

    Attacks, targets and analyzers differentiate the training loss; a caller who
    evaluates models inside ``torch.no_grad()`` or ``torch.inference_mode()`` would
    otherwise get torch's "element 0 of tensors does not require grad" error from
    deep inside the attack.  What the function returns is detached or converted
    already, so the caller's mode holds again for everything it does next.

    Examples
    --------
    >>> import torch
    >>> from skpoison._utils import with_autograd
    >>> @with_autograd
    ... def derivative(x):
    ...     x = torch.tensor(x, requires_grad=True)
    ...     return torch.autograd.grad(x**3, x)[0].item()
    >>> with torch.no_grad():
    ...     derivative(2.0)
    12.0
    """

    @functools.wraps(function)
    def recording(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return function(*args, **kwargs)

    return recording
