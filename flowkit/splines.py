"""Monotone rational-quadratic splines on the unit interval (Durkan et al., 2019).

A spline with ``K`` bins is described by ``K`` bin widths and ``K`` bin heights (each set
positive and summing to 1) and ``K + 1`` positive slopes at the knots. Within bin ``k``
the map is a ratio of two quadratics in the position ``t`` inside the bin, which is
monotone whenever the slopes are positive, has a closed-form derivative, and can be
inverted exactly by solving a quadratic. The map fixes both ends: ``g(0) = 0`` and
``g(1) = 1``; outside ``[0, 1]`` it is the identity, so it is a bijection of the real line.

The parameters come unnormalised (straight out of a network) in one tensor whose last
axis holds ``K`` widths, ``K`` heights and ``K + 1`` slopes; all zeros is the identity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
import torch.nn.functional as F

__all__ = ["num_spline_params", "unit_spline"]

MIN_BIN = 1e-3
MIN_SLOPE = 1e-3
# softplus(raw + _SLOPE_SHIFT) + MIN_SLOPE == 1 when raw == 0, so zero parameters give slope 1.
_SLOPE_SHIFT = math.log(math.expm1(1.0 - MIN_SLOPE))


def num_spline_params(bins: int) -> int:
    """Unnormalised parameters per spline: ``K`` widths, ``K`` heights, ``K + 1`` slopes."""
    return 3 * bins + 1


def _knots(raw: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Bin sizes (each >= MIN_BIN, summing to 1) and the knot positions (0 ... 1)."""
    sizes = MIN_BIN + (1.0 - MIN_BIN * bins) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = torch.cat([knots[..., :-1], torch.ones_like(knots[..., -1:])], dim=-1)  # exact 1 at the end
    return knots.diff(dim=-1), knots  # sizes as knot gaps, so the last bin ends exactly at 1


def unit_spline(values: Tensor, params: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """Apply the spline (or its inverse) elementwise: returns ``(out, log|d out / d in|)``.

    ``params`` has the shape of ``values`` plus a last axis of ``3K + 1`` entries (see
    :func:`num_spline_params`). Both returned tensors have the shape of ``values``.
    """
    if params.shape[:-1] != values.shape:
        raise ValueError(
            f"spline parameters of shape {tuple(params.shape)} do not match values of shape "
            f"{tuple(values.shape)}: expected {tuple(values.shape)} + (3K+1,)"
        )
    n = params.shape[-1]
    if (n - 1) % 3 or n < 4:
        raise ValueError(f"the last axis of the spline parameters must hold 3K+1 numbers (K >= 1), got {n}")
    bins = (n - 1) // 3
    widths, xknots = _knots(params[..., :bins], bins)
    heights, yknots = _knots(params[..., bins:2 * bins], bins)
    slopes = MIN_SLOPE + F.softplus(params[..., 2 * bins:] + _SLOPE_SHIFT)

    inside = (values >= 0.0) & (values <= 1.0)
    v = values.clamp(0.0, 1.0)
    edges = yknots if inverse else xknots
    # Which bin each value falls in: the count of interior knots at or below it.
    k = (v.unsqueeze(-1) >= edges[..., 1:-1]).sum(dim=-1, keepdim=True)

    def pick(t: Tensor) -> Tensor:
        return t.gather(-1, k).squeeze(-1)

    x0, y0, w, h = pick(xknots), pick(yknots), pick(widths), pick(heights)
    d0 = pick(slopes)
    d1 = slopes[..., 1:].gather(-1, k).squeeze(-1)
    s = h / w
    if inverse:
        dy = v - y0
        c2 = d1 + d0 - 2.0 * s
        a = h * (s - d0) + dy * c2
        b = h * d0 - dy * c2
        c = -s * dy
        disc = (b * b - 4.0 * a * c).clamp_min(0.0)
        t = (2.0 * c) / (-b - torch.sqrt(disc))
        t = t.clamp(0.0, 1.0)
        out = x0 + t * w
    else:
        t = (v - x0) / w
    tt = t * (1.0 - t)
    denom = s + (d1 + d0 - 2.0 * s) * tt
    if not inverse:
        out = y0 + h * (s * t * t + d0 * tt) / denom
    log_deriv = 2.0 * torch.log(s) + torch.log(d1 * t * t + 2.0 * s * tt + d0 * (1.0 - t) ** 2) - 2.0 * torch.log(denom)
    if inverse:
        log_deriv = -log_deriv
    out = torch.where(inside, out, values)
    log_deriv = torch.where(inside, log_deriv, torch.zeros_like(log_deriv))
    return out, log_deriv
