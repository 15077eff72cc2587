"""Masks and coupling layers (NICE, RealNVP, neural spline flows).

A coupling keeps the part of a sample its binary mask marks with 1 and transforms the
rest with parameters computed from the kept part, so its Jacobian is triangular.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_count
from .nets import MLP, ConvNet
from .splines import num_spline_params, unit_spline
from .transforms import Transform, sum_event

__all__ = ["alternating_mask", "checkerboard_mask", "channel_mask", "AffineCoupling",
           "AdditiveCoupling", "SplineCoupling"]


def alternating_mask(dim: int, parity: int = 0) -> Tensor:
    """``[1, 0, 1, 0, ...]`` (parity 0) or ``[0, 1, 0, 1, ...]`` (parity 1) for vectors.

    Example:
        >>> import flowkit as fk
        >>> fk.alternating_mask(4), fk.alternating_mask(4, parity=1)
        (tensor([1., 0., 1., 0.]), tensor([0., 1., 0., 1.]))
    """
    return ((torch.arange(dim) + parity) % 2 == 0).float()


def checkerboard_mask(height: int, width: int, parity: int = 0, channels: int = 1) -> Tensor:
    """Image mask of shape ``(channels, height, width)``, 1 on alternate pixels.

    Example:
        >>> import flowkit as fk
        >>> fk.checkerboard_mask(2, 3)
        tensor([[[1., 0., 1.],
                 [0., 1., 0.]]])
    """
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    board = ((rows + cols + parity) % 2 == 0).float()
    return board.expand(channels, height, width).clone()


def channel_mask(channels: int, height: int, width: int, parity: int = 0) -> Tensor:
    """Image mask of shape ``(channels, height, width)``, 1 on the first half of channels.

    Example:
        >>> import flowkit as fk
        >>> fk.channel_mask(4, 1, 1).flatten()
        tensor([1., 1., 0., 0.])
    """
    if channels < 2:
        raise ValueError(f"a channel mask needs at least 2 channels, got {channels}")
    first = (torch.arange(channels) < channels // 2).float()
    if parity:
        first = 1.0 - first
    return first.view(-1, 1, 1).expand(channels, height, width).clone()


def _check_mask(mask) -> Tensor:
    if isinstance(mask, (list, tuple)):
        mask = torch.tensor(mask)
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a tensor or list of 0/1 values, got {type(mask).__name__}")
    if mask.dim() == 0:
        raise ValueError("mask must have the shape of one sample, got a scalar")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must contain only 0 (transformed) and 1 (kept, conditioned on)")
    return mask.float()


class _Coupling(Transform):
    """Shared plumbing: mask, conditioner and its output check."""

    def __init__(self, mask, conditioner: nn.Module | None, hidden: int, outputs_per_feature: int):
        super().__init__()
        mask = _check_mask(mask)
        self.register_buffer("mask", mask)
        self.event_shape = tuple(mask.shape)
        self._outputs = outputs_per_feature
        if conditioner is None:
            if mask.dim() == 1:
                conditioner = MLP(mask.numel(), outputs_per_feature * mask.numel(), hidden)
            elif mask.dim() == 3:
                conditioner = ConvNet(mask.shape[0], outputs_per_feature * mask.shape[0], hidden)
            else:
                raise ValueError(
                    f"no default conditioner for a mask of shape {tuple(mask.shape)}: pass a "
                    "vector mask (D,), an image mask (C, H, W), or your own conditioner"
                )
        if not callable(conditioner):
            raise TypeError("conditioner must be a callable network (an nn.Module)")
        self.conditioner = conditioner

    def _conditioner_output(self, kept: Tensor) -> Tensor:
        out = self.conditioner(kept)
        c, *rest = self.event_shape
        expected = (kept.shape[0], self._outputs * c, *rest)
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{type(self).__name__}: the conditioner returned {got}, expected {expected} "
                f"({self._outputs} value(s) per feature stacked along dimension 1)"
            )
        return out


class AffineCoupling(_Coupling):
    r"""RealNVP affine coupling.

    With a binary ``mask`` (1 = kept), the kept part :math:`x_a = m \odot x` passes
    unchanged and conditions a scale and shift for the rest:

    .. math:: z = x_a + (1-m)\odot\left(x \odot e^{s(x_a)} + t(x_a)\right),
              \qquad \log|\det| = \sum (1-m)\odot s(x_a)

    The Jacobian is triangular (after reordering), so its log-determinant is a sum. The
    raw log-scale is soft-clamped to ``(-scale_limit, scale_limit)`` by a scaled tanh,
    which keeps early training from exploding. The conditioner maps a masked sample to
    ``2 * C`` features along dimension 1: raw log-scales first, then shifts.

    Arguments:
        mask: 0/1 tensor of one sample's shape, ``(D,)`` or ``(C, H, W)``; 1 = kept.
        conditioner: a network from ``(batch, *mask.shape)`` to ``(batch, 2C, ...)``
            (``2D`` features for vectors); default an :class:`~flowkit.MLP` (vectors) or a
            :class:`~flowkit.ConvNet` (images) with ``hidden`` units, last layer at zero.
        hidden: width of the default conditioner.
        scale_limit: the soft bound on each log-scale.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. Density estimation using Real NVP (2017).
        https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch, flowkit as fk
        >>> coupling = fk.AffineCoupling(fk.alternating_mask(2), hidden=8)
        >>> x = torch.tensor([[0.5, -1.0]])
        >>> coupling(x)  # a new coupling is the identity
        (tensor([[ 0.5000, -1.0000]], grad_fn=<AddBackward0>), tensor([0.], grad_fn=<SumBackward1>))
        >>> fk.check_transform(coupling, torch.randn(4, 2)).passed
        True
    """

    def __init__(self, mask, conditioner: nn.Module | None = None, hidden: int = 128,
                 scale_limit: float = 3.0):
        super().__init__(mask, conditioner, hidden, outputs_per_feature=2)
        if scale_limit <= 0:
            raise ValueError(f"scale_limit must be positive, got {scale_limit}")
        self.scale_limit = float(scale_limit)

    def scale_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """Log-scale and shift for the transformed part, zero where the mask keeps."""
        raw, shift = self._conditioner_output(kept).chunk(2, dim=1)
        log_scale = self.scale_limit * torch.tanh(raw / self.scale_limit)
        free = 1.0 - self.mask
        return log_scale * free, shift * free

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self.scale_shift(x * self.mask)
        return x * torch.exp(log_scale) + shift, sum_event(log_scale)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self.scale_shift(z * self.mask)
        return (z - shift) * torch.exp(-log_scale), -sum_event(log_scale)


class AdditiveCoupling(_Coupling):
    r"""NICE additive coupling: :math:`z = x + (1-m)\odot t(m\odot x)`, volume preserving.

    Arguments:
        mask, conditioner, hidden: as for :class:`AffineCoupling`, with ``C`` (not ``2C``)
            conditioner outputs.

    References:
        L. Dinh, D. Krueger, Y. Bengio. NICE: Non-linear Independent Components
        Estimation (2015). https://arxiv.org/abs/1410.8516

    Example:
        >>> import torch, flowkit as fk
        >>> coupling = fk.AdditiveCoupling(fk.alternating_mask(2), hidden=8)
        >>> coupling(torch.tensor([[0.5, -1.0]]))[1]  # volume preserving: log|det| = 0
        tensor([0.])
    """

    def __init__(self, mask, conditioner: nn.Module | None = None, hidden: int = 128):
        super().__init__(mask, conditioner, hidden, outputs_per_feature=1)

    def shift(self, kept: Tensor) -> Tensor:
        return self._conditioner_output(kept) * (1.0 - self.mask)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.shift(x * self.mask), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z - self.shift(z * self.mask), z.new_zeros(z.shape[0])


class SplineCoupling(_Coupling):
    r"""Coupling with a monotone rational-quadratic spline (Durkan et al., 2019).

    Like :class:`AffineCoupling`, the kept part :math:`m \odot x` passes unchanged and
    conditions the map applied to the rest; the map is a monotone spline with ``bins``
    pieces on ``[-bound, bound]`` (the identity outside), far more flexible than a scale
    and a shift: it can bend one value's distribution into two bumps. The conditioner
    maps a masked sample to ``(3 * bins + 1) * C`` features along dimension 1 (all the
    widths, then heights, then knot slopes, ``C`` channels each); zero features give the
    identity. See :func:`flowkit.splines.unit_spline`.

    Arguments:
        mask, conditioner, hidden: as for :class:`AffineCoupling`, with ``(3 bins + 1) C``
            conditioner outputs.
        bins: the number of spline pieces.
        bound: the spline acts on ``[-bound, bound]``, the identity outside.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. Neural Spline Flows (2019).
        https://arxiv.org/abs/1906.04032

    Example:
        >>> import torch, flowkit as fk
        >>> coupling = fk.SplineCoupling(fk.alternating_mask(2), hidden=8, bins=4)
        >>> fk.check_transform(coupling, torch.randn(5, 2)).passed
        True
    """

    def __init__(self, mask, conditioner: nn.Module | None = None, hidden: int = 128,
                 bins: int = 8, bound: float = 4.0):
        bins = check_count(bins, "bins")
        if bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        super().__init__(mask, conditioner, hidden, outputs_per_feature=num_spline_params(bins))
        self.bins, self.bound = bins, float(bound)

    def _spline(self, values: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raw = self._conditioner_output(values * self.mask)
        params = raw.reshape(values.shape[0], self._outputs, *self.event_shape).movedim(1, -1)
        scaled = (values + self.bound) / (2.0 * self.bound)  # [-bound, bound] -> [0, 1]
        out, log_deriv = unit_spline(scaled, params, inverse=inverse)
        out = out * (2.0 * self.bound) - self.bound
        keep = self.mask.bool()
        out = torch.where(keep, values, out)
        return out, sum_event(log_deriv * (1.0 - self.mask))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(x, inverse=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(z, inverse=True)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"
