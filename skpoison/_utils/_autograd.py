"""Autograd on, whatever grad mode the caller is in."""

import functools

import torch

__all__ = ["with_autograd"]


def _ordinary(value):
    # a tensor made inside torch.inference_mode() cannot join a graph; a copy made
    # outside it can (only inference tensors are copied, and only at the top level)
    if isinstance(value, torch.Tensor) and value.is_inference():
        return value.clone()
    return value


def with_autograd(function):
    """Run ``function`` with gradients recorded, even inside ``torch.no_grad()``.

    Attacks, targets and analyzers differentiate the training loss; a caller who
    evaluates models inside ``torch.no_grad()`` or ``torch.inference_mode()`` would
    otherwise get torch's "element 0 of tensors does not require grad" error from
    deep inside the attack.  Tensor arguments made inside ``torch.inference_mode()``
    are copied first, since torch cannot differentiate through them.  The caller's
    mode holds again when the function returns.

    Examples
    --------
    >>> import torch
    >>> from skpoison._utils import with_autograd
    >>> @with_autograd
    ... def derivative(x):
    ...     x = x.detach().requires_grad_(True)
    ...     return torch.autograd.grad(x**3, x)[0].item()
    >>> with torch.inference_mode():
    ...     derivative(torch.tensor(2.0))
    12.0
    """

    @functools.wraps(function)
    def recording(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            args = [_ordinary(a) for a in args]
            kwargs = {k: _ordinary(v) for k, v in kwargs.items()}
            return function(*args, **kwargs)

    return recording
