"""Attacks: samplers that add poison to the training data."""

from ._gradient_canceling import GradientCanceling

__all__ = ["GradientCanceling"]
