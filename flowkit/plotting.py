"""Static plotting helpers shared by lessons and the figures script."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grid", "density_on_grid"]


def grid(xlim=(-1.5, 2.5), ylim=(-1.0, 1.5), n: int = 120) -> tuple[Tensor, Tensor, Tensor]:
    """A square grid: returns ``(xs, ys, points)`` with ``points`` of shape ``(n*n, 2)``.

    ``points`` runs over x fastest, so ``values.reshape(n, n)`` is ready for ``imshow``
    with ``origin="lower"`` and ``extent=(*xlim, *ylim)``.
    """
    xs = torch.linspace(*xlim, n)
    ys = torch.linspace(*ylim, n)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([xx.flatten(), yy.flatten()], dim=1)


def density_on_grid(log_prob, xlim=(-1.5, 2.5), ylim=(-1.0, 1.5), n: int = 120) -> Tensor:
    """``exp(log_prob)`` on a grid, shaped ``(n, n)`` for ``imshow(origin="lower")``."""
    _, _, points = grid(xlim, ylim, n)
    with torch.no_grad():
        values = log_prob(points).exp()
    return values.reshape(n, n)
