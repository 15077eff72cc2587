"""Ready-made flows."""

from __future__ import annotations

from torch import nn

from ._checks import check_count
from .flow import Flow, StandardNormal
from .transforms import ActNorm, AffineCoupling, MLP, alternating_mask

__all__ = ["RealNVP"]


def RealNVP(dim: int, num_couplings: int = 8, hidden: int = 128, num_hidden_layers: int = 2,
            actnorm: bool = False, scale_limit: float = 3.0,
            activation: type[nn.Module] = nn.ReLU) -> Flow:
    """A RealNVP for vectors of size ``dim``: affine couplings with alternating masks.

    Each coupling keeps every other coordinate and transforms the rest; the next one
    swaps the roles, so after two couplings every coordinate has been transformed. Every
    conditioner's last layer starts at zero, so a new flow is the identity and its
    density is the base Gaussian. ``actnorm=True`` adds an ActNorm before each coupling.
    """
    dim = check_count(dim, "dim")
    num_couplings = check_count(num_couplings, "num_couplings")
    if dim < 2:
        raise ValueError(f"RealNVP needs dim >= 2 (a coupling splits the coordinates), got {dim}")
    if num_couplings < 1:
        raise ValueError("RealNVP needs at least one coupling")
    layers = []
    for i in range(num_couplings):
        if actnorm:
            layers.append(ActNorm(dim))
        conditioner = MLP(dim, 2 * dim, hidden, num_hidden_layers, activation)
        layers.append(AffineCoupling(alternating_mask(dim, i % 2), conditioner,
                                     scale_limit=scale_limit))
    return Flow(layers, StandardNormal(dim))
