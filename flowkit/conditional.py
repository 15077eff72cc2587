r"""Conditional flows: one density :math:`p(x \mid c)` for every context :math:`c`.

A conditional coupling works like its plain twin: the kept half :math:`x_a = m \odot x`
passes unchanged and a conditioner chooses the map applied to the rest. The only change
is what the conditioner sees: the kept half *and the context*,

.. math:: z = x_a + (1-m)\odot\left(x \odot e^{s(x_a, c)} + t(x_a, c)\right),
          \qquad \log|\det| = \sum (1-m)\odot s(x_a, c).

For a fixed context the map is an ordinary coupling, so the change-of-variables formula
holds for each :math:`c` on its own and :math:`\int p(x \mid c)\,dx = 1` for every
:math:`c`. The context is never transformed and never needs an inverse: it can be a
noise level, a class label, a degraded image or a pitch.

The transforms here set ``conditional = True`` and take ``forward(x, context)`` and
``inverse(z, context)``. They receive the context *after* the flow's embedding (an
``nn.Embedding`` for class labels, a small network for images), computed once per call.

Ready-made flows: :func:`ConditionalRealNVP` for vectors and
:class:`ConditionalImageRealNVP` for small images.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ._checks import check_count
from .flow import Flow, StandardNormal
from .couplings import AffineCoupling, SplineCoupling, alternating_mask, channel_mask, checkerboard_mask
from .images import LogitPreprocess, Squeeze, Unsqueeze, VariationalDequantizer, squeeze
from .linear import ActNorm
from .nets import MLP, ResNetConditioner
from .splines import num_spline_params, unit_spline
from .transforms import Transform, sum_event

__all__ = [
    "ConditionalAffineCoupling",
    "ConditionalSplineCoupling",
    "ConditionalRealNVP",
    "ConditionalImageRealNVP",
    "Standardize",
    "LabelEmbedding",
    "ContextMap",
]


def _mask_tensor(mask) -> Tensor:
    mask = torch.as_tensor(mask, dtype=torch.get_default_dtype())
    if mask.dim() not in (1, 3):
        raise ValueError(f"mask must have the shape of one sample, (D,) or (C, H, W); got {tuple(mask.shape)}")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must contain only 0 (transformed) and 1 (kept, conditioned on)")
    return mask


class _ConditionalCoupling(Transform):
    """Mask, conditioner and the context's way into it.

    ``context_features`` is the number of context features the conditioner sees: for
    vectors, the context is ``(batch, context_features)``; for images, it is either a
    vector ``(batch, K)`` (spread over every pixel) or a map ``(batch, K, H', W')`` at the
    image's size or a multiple of it by a power of 2 (squeezed down to the image's size,
    which multiplies its channels by 4 each time); ``context_features`` counts the
    channels after that.
    """

    conditional = True

    def __init__(self, mask, context_features: int, conditioner: nn.Module | None,
                 hidden: int, outputs_per_feature: int, num_hidden_layers: int = 2):
        super().__init__()
        mask = _mask_tensor(mask)
        self.register_buffer("mask", mask)
        self.event_shape = tuple(mask.shape)
        self.context_features = check_count(context_features, "context_features")
        if self.context_features < 1:
            raise ValueError("a conditional coupling needs at least one context feature")
        self._outputs = outputs_per_feature
        if conditioner is None:
            if mask.dim() == 1:
                conditioner = MLP(mask.numel() + self.context_features,
                                  outputs_per_feature * mask.numel(), hidden, num_hidden_layers)
            else:
                c, h, w = mask.shape
                conditioner = ResNetConditioner(c + self.context_features, outputs_per_feature * c, hidden,
                                                num_hidden_layers - 1 or 1, extra=mask[:1], spatial=(h, w))
        if not callable(conditioner):
            raise TypeError("conditioner must be a callable network (an nn.Module)")
        self.conditioner = conditioner

    def _context_input(self, context, batch: int) -> Tensor:
        name = type(self).__name__
        if context is None:
            raise ValueError(f"{name} is conditional: pass context= of shape "
                             f"(batch, {self.context_features}) (the embedded context)")
        if not isinstance(context, Tensor) or not context.dtype.is_floating_point:
            raise TypeError(f"{name} expects the (embedded) context as a floating-point tensor, got "
                            f"{type(context).__name__ if not isinstance(context, Tensor) else context.dtype}")
        if context.dim() == 0 or context.shape[0] not in (1, batch):
            raise ValueError(f"{name}: the context's batch size {tuple(context.shape)[:1]} does not match "
                             f"the input's ({batch})")
        if context.shape[0] == 1 and batch != 1:
            context = context.expand(batch, *context.shape[1:])
        if len(self.event_shape) == 3:
            _, h, w = self.event_shape
            if context.dim() == 2:
                context = context[:, :, None, None].expand(-1, -1, h, w)
            elif context.dim() == 4:
                while context.shape[-1] > w and context.shape[-2] > h:
                    context = squeeze(context)
                if context.shape[-2:] != (h, w):
                    raise ValueError(f"{name}: a context map of shape {tuple(context.shape[1:])} cannot be "
                                     f"brought to the image's {h}x{w} by squeezing")
        if context.dim() != len(self.event_shape) + 1 or context.shape[1] != self.context_features:
            raise ValueError(f"{name} expects {self.context_features} context features, got a context of "
                             f"shape {tuple(context.shape)}")
        return context

    def _conditioner_output(self, kept: Tensor, context) -> Tensor:
        context = self._context_input(context, kept.shape[0])
        out = self.conditioner(torch.cat([kept, context.to(kept.dtype)], dim=1))
        c, *rest = self.event_shape
        expected = (kept.shape[0], self._outputs * c, *rest)
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"{type(self).__name__}: the conditioner returned {got}, expected {expected}")
        return out


class ConditionalAffineCoupling(_ConditionalCoupling):
    r"""Affine coupling whose scale and shift depend on the kept half and the context.

    .. math:: z = x_a + (1-m)\odot\left(x \odot e^{s(x_a, c)} + t(x_a, c)\right)

    The conditioner maps ``[m * x, c]`` (concatenated along dimension 1) to raw
    log-scales then shifts; the log-scale is soft-clamped to ``(-scale_limit, scale_limit)``.
    Its last layer starts at zero, so a new coupling is the identity for every context.
    """

    def __init__(self, mask, context_features: int, conditioner: nn.Module | None = None,
                 hidden: int = 128, num_hidden_layers: int = 2, scale_limit: float = 3.0):
        super().__init__(mask, context_features, conditioner, hidden, 2, num_hidden_layers)
        if not scale_limit > 0:
            raise ValueError(f"scale_limit must be positive, got {scale_limit}")
        self.scale_limit = float(scale_limit)

    def scale_shift(self, kept: Tensor, context) -> tuple[Tensor, Tensor]:
        """Log-scale and shift for the transformed part (zero where the mask keeps)."""
        raw, shift = self._conditioner_output(kept, context).chunk(2, dim=1)
        log_scale = self.scale_limit * torch.tanh(raw / self.scale_limit)
        free = 1.0 - self.mask
        return log_scale * free, shift * free

    def forward(self, x, context=None):
        log_scale, shift = self.scale_shift(x * self.mask, context)
        return x * torch.exp(log_scale) + shift, sum_event(log_scale)

    def inverse(self, z, context=None):
        log_scale, shift = self.scale_shift(z * self.mask, context)
        return (z - shift) * torch.exp(-log_scale), -sum_event(log_scale)


class ConditionalSplineCoupling(_ConditionalCoupling):
    r"""Rational-quadratic spline coupling whose spline depends on the kept half and the context.

    Like :class:`flowkit.SplineCoupling` (``bins`` pieces on ``[-bound, bound]``, the
    identity outside), with ``[m * x, c]`` as the conditioner's input.
    """

    def __init__(self, mask, context_features: int, conditioner: nn.Module | None = None,
                 hidden: int = 128, num_hidden_layers: int = 2, bins: int = 8, bound: float = 4.0):
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        super().__init__(mask, context_features, conditioner, hidden, num_spline_params(bins), num_hidden_layers)
        self.bins, self.bound = bins, float(bound)

    def _spline(self, values: Tensor, context, inverse: bool) -> tuple[Tensor, Tensor]:
        raw = self._conditioner_output(values * self.mask, context)
        params = raw.reshape(values.shape[0], self._outputs, *self.event_shape).movedim(1, -1)
        scaled = (values + self.bound) / (2.0 * self.bound)
        out, log_deriv = unit_spline(scaled, params, inverse=inverse)
        out = torch.where(self.mask.bool(), values, out * (2.0 * self.bound) - self.bound)
        return out, sum_event(log_deriv * (1.0 - self.mask))

    def forward(self, x, context=None):
        return self._spline(x, context, inverse=False)

    def inverse(self, z, context=None):
        return self._spline(z, context, inverse=True)


# ----------------------------------------------------------------------------------
# Embeddings: raw context -> what the couplings see
# ----------------------------------------------------------------------------------


class Standardize(nn.Module):
    """``(c - mean) / std``: brings a context such as a noise level of 0.1 to unit scale.

    A conditioner learns slowly from an input a hundred times smaller than its others.
    """

    def __init__(self, mean, std):
        super().__init__()
        std = torch.as_tensor(std, dtype=torch.get_default_dtype())
        if not (std > 0).all():
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.get_default_dtype()).clone())
        self.register_buffer("std", std.clone())

    def forward(self, context: Tensor) -> Tensor:
        return (context - self.mean) / self.std


class LabelEmbedding(nn.Embedding):
    """Integer class labels ``(batch,)`` to learned vectors ``(batch, dim)``."""


class ContextMap(nn.Module):
    """A small convolutional network: a context image ``(batch, K, H, W)`` to features ``(batch, E, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ELU(),
                                 nn.Conv2d(hidden, out_channels, 3, padding=1))

    def forward(self, context: Tensor) -> Tensor:
        return self.net(context)


def _label_flow(flow: Flow, classes: int | None) -> Flow:
    # Integer labels: the flow checks them against the number of classes once per call.
    if classes is not None and getattr(flow, "context_classes", None) != classes:
        flow.context_classes = classes
    return flow


# ----------------------------------------------------------------------------------
# Ready-made conditional flows
# ----------------------------------------------------------------------------------


class ConditionalRealNVP(Flow):
    """A RealNVP for vectors of size ``dim`` whose every coupling also sees a context.

    Float contexts have shape ``(batch, context_dim)``. With ``classes=K`` the context is
    instead an integer label of shape ``(batch,)`` in ``0..K-1``, embedded by the flow
    into a learned vector of size ``context_dim``. ``embedding`` (an ``nn.Module``, e.g.
    :class:`Standardize`) is applied to a float context once per call, before the couplings.
    Masks alternate as in :class:`flowkit.RealNVP`; a new flow is the base Gaussian for
    every context.

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.ConditionalRealNVP(2, context_dim=1, num_couplings=4, hidden=16)
        >>> flow.sample(3, context=torch.tensor([0.5])).shape  # one context for all three
        torch.Size([3, 2])
        >>> labelled = fk.ConditionalRealNVP(2, context_dim=4, classes=3, hidden=16)
        >>> labelled.log_prob(torch.zeros(2, 2), context=torch.tensor([0, 2])).shape
        torch.Size([2])
    """

    def __init__(self, dim: int, context_dim: int, num_couplings: int = 8, hidden: int = 128,
                 num_hidden_layers: int = 2, classes: int | None = None,
                 embedding: nn.Module | None = None, scale_limit: float = 3.0):
        dim = check_count(dim, "dim")
        context_dim = check_count(context_dim, "context_dim")
        num_couplings = check_count(num_couplings, "num_couplings")
        if dim < 2:
            raise ValueError(f"ConditionalRealNVP needs dim >= 2 (a coupling splits the coordinates), got {dim}")
        if context_dim < 1:
            raise ValueError("context_dim must be at least 1")
        if num_couplings < 1:
            raise ValueError("ConditionalRealNVP needs at least one coupling")
        if classes is not None:
            classes = check_count(classes, "classes")
            if classes < 2:
                raise ValueError(f"classes must be at least 2, got {classes}")
            if embedding is not None:
                raise ValueError("pass either classes= (labels, embedded by the flow) or embedding=, not both")
            embedding = LabelEmbedding(classes, context_dim)
        layers = [ConditionalAffineCoupling(alternating_mask(dim, i % 2), context_dim, hidden=hidden,
                                            num_hidden_layers=num_hidden_layers, scale_limit=scale_limit)
                  for i in range(num_couplings)]
        super().__init__(layers, StandardNormal(dim),
                         context_shape=() if classes is not None else (context_dim,),
                         embedding=embedding)
        _label_flow(self, classes)


class ConditionalImageRealNVP(Flow):
    """A RealNVP for small images in level units, conditioned on a label or a context image.

    From data to latent: an optional :class:`~flowkit.images.VariationalDequantizer`,
    :class:`~flowkit.images.LogitPreprocess`, ``couplings`` steps (ActNorm and a coupling)
    with checkerboard masks, a :class:`~flowkit.images.Squeeze`, ``couplings`` steps with
    channel masks, and an :class:`~flowkit.images.Unsqueeze` back to the image's shape.

    The context is one of:

    * ``classes=K``: integer labels ``(batch,)``, embedded into ``embedding_dim`` features
      that every conditioner sees at every pixel;
    * ``context_channels=K``: a float context image ``(batch, K, H, W)`` (a degraded copy
      of the image, say), mapped by a small network (:class:`ContextMap`) to
      ``embedding_dim`` feature maps, squeezed with the image;
    * neither: the same architecture without a context (plain couplings), to compare
      against with the same training budget.

    ``log_prob(x, context=c)`` takes images in level units ``[0, levels)``, so
    ``-log_prob / (D ln 2)`` is bits per dimension. ``config`` holds the constructor
    arguments (used by checkpoints).
    """

    def __init__(self, shape: Sequence[int] = (1, 8, 8), levels: int = 17, classes: int = 0,
                 context_channels: int = 0, embedding_dim: int = 8, couplings: int = 4,
                 hidden: int = 48, num_blocks: int = 1, alpha: float = 0.05, scale_limit: float = 3.0,
                 spline_bins: int = 0, dequantizer_bins: int = 0, dequantizer_hidden: int = 32):
        c, h, w = (check_count(s, "shape") for s in shape)
        classes, context_channels = check_count(classes, "classes"), check_count(context_channels, "context_channels")
        embedding_dim, couplings = check_count(embedding_dim, "embedding_dim"), check_count(couplings, "couplings")
        hidden, num_blocks = check_count(hidden, "hidden"), check_count(num_blocks, "num_blocks")
        spline_bins = check_count(spline_bins, "spline_bins")
        dequantizer_bins = check_count(dequantizer_bins, "dequantizer_bins")
        if classes and context_channels:
            raise ValueError("condition on labels (classes=) or on a context image (context_channels=), not both")
        if classes == 1:
            raise ValueError("classes must be at least 2 (or 0 for no labels)")
        if h % 2 or w % 2:
            raise ValueError(f"the squeeze needs an even height and width, got {h}x{w}")
        if couplings < 1 or embedding_dim < 1:
            raise ValueError("couplings and embedding_dim must be at least 1")
        self.config = dict(shape=(c, h, w), levels=int(levels), classes=classes,
                           context_channels=context_channels, embedding_dim=embedding_dim,
                           couplings=couplings, hidden=hidden, num_blocks=num_blocks, alpha=float(alpha),
                           scale_limit=float(scale_limit), spline_bins=spline_bins,
                           dequantizer_bins=dequantizer_bins, dequantizer_hidden=int(dequantizer_hidden))
        conditional = bool(classes or context_channels)
        if classes:
            embedding, context_shape = LabelEmbedding(classes, embedding_dim), ()
        elif context_channels:
            embedding, context_shape = ContextMap(context_channels, embedding_dim), (context_channels, h, w)
        else:
            embedding, context_shape = None, None

        def step(mask: Tensor, context_features: int) -> list[Transform]:
            cc, hh, ww = mask.shape
            per_feature = num_spline_params(spline_bins) if spline_bins else 2
            extra = context_features if conditional else 0
            net = ResNetConditioner(cc + extra, per_feature * cc, hidden, num_blocks, extra=mask[:1],
                                    spatial=(hh, ww))
            if conditional and spline_bins:
                coupling = ConditionalSplineCoupling(mask, context_features, net, bins=spline_bins)
            elif conditional:
                coupling = ConditionalAffineCoupling(mask, context_features, net, scale_limit=scale_limit)
            elif spline_bins:
                coupling = SplineCoupling(mask, net, bins=spline_bins)
            else:
                coupling = AffineCoupling(mask, net, scale_limit=scale_limit)
            return [ActNorm(cc), coupling]

        # Label features are spread over every pixel; a context map is squeezed with the image.
        squeezed_features = embedding_dim if classes else 4 * embedding_dim
        transforms: list[Transform] = []
        if dequantizer_bins:
            transforms.append(VariationalDequantizer((c, h, w), levels, dequantizer_bins, dequantizer_hidden))
        transforms.append(LogitPreprocess(levels, alpha))
        for i in range(couplings):
            transforms += step(checkerboard_mask(h, w, i % 2, c), embedding_dim)
        transforms.append(Squeeze())
        for i in range(couplings):
            transforms += step(channel_mask(4 * c, h // 2, w // 2, parity=i % 2), squeezed_features)
        transforms.append(Unsqueeze())
        super().__init__(transforms, StandardNormal((c, h, w)), event_shape=(c, h, w),
                         context_shape=context_shape, embedding=embedding)
        _label_flow(self, classes or None)

    @property
    def levels(self) -> int:
        return self.config["levels"]

    def bits_per_dim(self, x: Tensor, context=None) -> Tensor:
        """Bits per dimension of each image in ``x`` (level units) given ``context``: ``(batch,)``."""
        return -self.log_prob(x, context=context) / (self.num_dims * math.log(2.0))
