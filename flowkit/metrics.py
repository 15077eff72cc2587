"""Likelihood bookkeeping."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_count
from .errors import NonFiniteError

__all__ = ["bits_per_dim", "nats_to_bits"]


def nats_to_bits(nats):
    """Convert nats to bits (divide by ln 2).

    Example:
        >>> import math
        >>> from flowkit.metrics import nats_to_bits
        >>> nats_to_bits(math.log(8))
        3.0
    """
    return nats / math.log(2.0)


def bits_per_dim(log_prob: Tensor, num_dims: int) -> Tensor:
    r"""Bits per dimension from per-sample log-densities (in nats):
    :math:`-\log p(x) / (D \ln 2)`, averaged over the batch.

    ``log_prob`` must be the log-density of the *discrete* data's dequantized version in
    the data's own units (for 8x8 digits: level units ``[0, 17)``), so that it is a lower
    bound on the log-probability of the discrete image; a uniform model then scores
    ``log2(levels)`` bits/dim.

    Example:
        >>> import math, torch, flowkit as fk
        >>> fk.bits_per_dim(torch.full((4,), -64 * math.log(17)), 64)  # uniform over 17 levels
        tensor(4.0875)
    """
    if not isinstance(log_prob, Tensor):
        raise TypeError(f"log_prob must be a torch.Tensor, got {type(log_prob).__name__}")
    if log_prob.dim() != 1:
        raise ValueError(f"log_prob must have shape (batch,), got {tuple(log_prob.shape)}")
    num_dims = check_count(num_dims, "num_dims")
    if num_dims == 0:
        raise ValueError("num_dims must be a positive int, got 0")
    if not torch.isfinite(log_prob).all():
        raise NonFiniteError("log_prob contains NaN or infinite values")
    return nats_to_bits(-log_prob.mean() / num_dims)
