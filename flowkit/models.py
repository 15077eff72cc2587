"""Ready-made flows: RealNVP for vectors and a multi-scale RealNVP for small images."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ._checks import check_count, check_tensor
from .couplings import AffineCoupling, SplineCoupling, alternating_mask, channel_mask, checkerboard_mask
from .flow import Chain, Flow, StandardNormal
from .images import LogitPreprocess, Reshape, Split, Squeeze, VariationalDequantizer
from .linear import ActNorm
from .metrics import nats_to_bits
from .nets import MLP, ResNetConditioner
from .splines import num_spline_params
from .transforms import Transform

__all__ = ["RealNVP", "ImageRealNVP", "dequantized_bits_per_dim"]


class RealNVP(Flow):
    """A RealNVP for vectors of size ``dim``: affine couplings with alternating masks.

    Each coupling keeps every other coordinate and transforms the rest; the next one
    swaps the roles, so after two couplings every coordinate has been transformed. Every
    conditioner's last layer starts at zero, so a new flow is the identity and its
    density is the base Gaussian.

    Arguments:
        dim: the size ``D >= 2`` of one sample; data has shape ``(batch, D)``.
        num_couplings: the number of :class:`~flowkit.AffineCoupling` layers.
        hidden, num_hidden_layers, activation: each conditioner :class:`~flowkit.MLP`.
        actnorm: add an :class:`~flowkit.ActNorm` before each coupling.
        scale_limit: passed to every coupling (the bound of its soft-clamped log-scales).

    References:
        Dinh, Sohl-Dickstein and Bengio, "Density estimation using Real NVP", ICLR 2017,
        https://arxiv.org/abs/1605.08803 (the coupling layer, section 3).

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.RealNVP(2, num_couplings=4, hidden=32)
        >>> flow.log_prob(torch.zeros(1, 2))  # a new RealNVP is N(0, I)
        tensor([-1.8379], grad_fn=<AddBackward0>)
        >>> flow.sample(5).shape
        torch.Size([5, 2])
    """

    def __init__(self, dim: int, num_couplings: int = 8, hidden: int = 128, num_hidden_layers: int = 2,
                 actnorm: bool = False, scale_limit: float = 3.0,
                 activation: type[nn.Module] = nn.ReLU):
        dim = check_count(dim, "dim")
        num_couplings = check_count(num_couplings, "num_couplings")
        if dim < 2:
            raise ValueError(f"RealNVP needs dim >= 2 (a coupling splits the coordinates), got {dim}")
        if num_couplings < 1:
            raise ValueError("RealNVP needs at least one coupling")
        layers: list[Transform] = []
        for i in range(num_couplings):
            if actnorm:
                layers.append(ActNorm(dim))
            conditioner = MLP(dim, 2 * dim, hidden, num_hidden_layers, activation)
            layers.append(AffineCoupling(alternating_mask(dim, i % 2), conditioner,
                                         scale_limit=scale_limit))
        super().__init__(layers, StandardNormal(dim))


def _coupling(mask: Tensor, hidden: int, num_blocks: int, scale_limit: float, dropout: float,
              spline_bins: int = 0) -> Transform:
    c, h, w = mask.shape
    per_feature = num_spline_params(spline_bins) if spline_bins else 2
    conditioner = ResNetConditioner(c, per_feature * c, hidden, num_blocks, extra=mask[:1], spatial=(h, w),
                                    dropout=dropout)
    if spline_bins:
        return SplineCoupling(mask, conditioner, bins=spline_bins, bound=4.0)
    return AffineCoupling(mask, conditioner, scale_limit=scale_limit)


def _step(mask: Tensor, hidden: int, num_blocks: int, scale_limit: float, dropout: float,
          spline_bins: int = 0) -> list[Transform]:
    """ActNorm then a coupling (affine, or spline when ``spline_bins > 0``): one step of flow."""
    return [ActNorm(mask.shape[0]), _coupling(mask, hidden, num_blocks, scale_limit, dropout, spline_bins)]


class ImageRealNVP(Flow):
    """A multi-scale RealNVP (Dinh et al., 2017) for small images in level units.

    Structure, from data to latent (``forward``):

    1. :class:`LogitPreprocess`: level units ``[0, levels)`` to the real line.
    2. For each of the ``num_scales - 1`` first scales: ``couplings`` steps with
       checkerboard masks, a :class:`Squeeze`, ``couplings`` steps with channel masks,
       then a :class:`Split` that factors out half the channels.
    3. The last scale: ``final_couplings`` checkerboard steps on what is left.

    With ``dequantizer_bins > 0`` a :class:`VariationalDequantizer` comes first (learned
    noise inside each level's cell; bits/dim are still measured with uniform noise).

    Each step is an :class:`ActNorm` and a coupling whose conditioner is a
    :class:`ResNetConditioner`: an :class:`AffineCoupling`, or with ``spline_bins > 0`` a
    :class:`SplineCoupling` (the shipped ``digits-realnvp`` uses splines). The latent is reshaped to the image shape so that
    ``sample`` and ``inverse`` work with the plain :class:`StandardNormal` base; its flat
    index runs over the scales in order: :attr:`scale_slices` says which entries belong
    to which scale (the first are the finest details).

    ``log_prob(x)`` takes images in level units, so ``-log_prob / (D ln 2)`` is bits per
    dimension. ``config`` holds the constructor arguments (used by checkpoints).

    Arguments:
        shape: ``(C, H, W)`` of one image; ``H`` and ``W`` divisible by ``2^(num_scales-1)``.
        levels: the grey levels; ``log_prob`` takes values in ``[0, levels)``.
        num_scales, couplings, final_couplings: the architecture above.
        hidden, num_blocks, dropout: each :class:`ResNetConditioner`.
        alpha: the :class:`LogitPreprocess` margin.
        scale_limit: the soft bound on the affine couplings' log-scales.
        dequantizer_bins, dequantizer_hidden: the :class:`VariationalDequantizer` (0: none).
        spline_bins: spline couplings with this many bins (0: affine couplings).

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. Density estimation using Real NVP (2017).
        https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.ImageRealNVP((1, 4, 4), couplings=1, final_couplings=1, hidden=8, num_blocks=1)
        >>> x = fk.data.dequantize(torch.randint(0, 17, (3, 1, 4, 4)))
        >>> flow.bits_per_dim(x).shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 4, 4]))
    """

    def __init__(self, shape: Sequence[int] = (1, 8, 8), levels: int = 17, num_scales: int = 2,
                 couplings: int = 3, final_couplings: int = 4, hidden: int = 64,
                 num_blocks: int = 2, alpha: float = 0.05, scale_limit: float = 3.0,
                 dropout: float = 0.0, dequantizer_bins: int = 0, dequantizer_hidden: int = 32,
                 spline_bins: int = 0):
        c, h, w = (check_count(s, "shape") for s in shape)
        num_scales = check_count(num_scales, "num_scales")
        couplings = check_count(couplings, "couplings")
        final_couplings = check_count(final_couplings, "final_couplings")
        hidden = check_count(hidden, "hidden")
        num_blocks = check_count(num_blocks, "num_blocks")
        if num_scales < 1:
            raise ValueError("num_scales must be at least 1")
        if h % 2 ** (num_scales - 1) or w % 2 ** (num_scales - 1):
            raise ValueError(f"{h}x{w} images cannot be squeezed {num_scales - 1} times")
        if final_couplings < 1 or (num_scales > 1 and couplings < 1):
            raise ValueError("every scale needs at least one coupling")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.config = dict(shape=(c, h, w), levels=int(levels), num_scales=num_scales,
                           couplings=couplings, final_couplings=final_couplings, hidden=hidden,
                           num_blocks=num_blocks, alpha=float(alpha), scale_limit=float(scale_limit),
                           dropout=dropout)
        dequantizer_bins = check_count(dequantizer_bins, "dequantizer_bins")
        if dequantizer_bins:  # stored only when used, so older checkpoints keep their config
            self.config.update(dequantizer_bins=dequantizer_bins,
                               dequantizer_hidden=check_count(dequantizer_hidden, "dequantizer_hidden"))
        spline_bins = check_count(spline_bins, "spline_bins")
        if spline_bins:
            self.config.update(spline_bins=spline_bins)
        args = (hidden, num_blocks, scale_limit, dropout, spline_bins)

        # Build from the innermost (coarsest) scale outwards.
        shapes = []
        cc, hh, ww = c, h, w
        for _ in range(num_scales - 1):
            shapes.append((cc, hh, ww))
            cc, hh, ww = 4 * cc // 2, hh // 2, ww // 2  # squeeze, then factor out half
        last = (cc, hh, ww)
        inner: list[Transform] = []
        for i in range(final_couplings):
            inner += _step(checkerboard_mask(hh, ww, i % 2, cc), *args)
        inner.append(Reshape(last, (math.prod(last),)))
        sizes = [math.prod(last)]
        for cc, hh, ww in reversed(shapes):
            layers: list[Transform] = []
            for i in range(couplings):
                layers += _step(checkerboard_mask(hh, ww, i % 2, cc), *args)
            layers.append(Squeeze())
            sq = (4 * cc, hh // 2, ww // 2)
            for i in range(couplings):
                layers += _step(channel_mask(*sq, parity=i % 2), *args)
            split = Split(sq, sq[0] // 2, Chain(inner))
            sizes.insert(0, split.num_factored)
            inner = layers + [split]
        # inner ends with a flat latent vector; the final Reshape gives it the image's shape.
        transforms = [LogitPreprocess(levels, alpha), *inner, Reshape((math.prod((c, h, w)),), (c, h, w))]
        if dequantizer_bins:
            transforms.insert(0, VariationalDequantizer((c, h, w), levels, dequantizer_bins, dequantizer_hidden))
        super().__init__(transforms, StandardNormal((c, h, w)), event_shape=(c, h, w))
        edges = [0]
        for s in sizes:
            edges.append(edges[-1] + s)
        self.scale_slices = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]

    @property
    def levels(self) -> int:
        return self.config["levels"]

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Bits per dimension of each image in ``x`` (level units): ``(batch,)``."""
        return nats_to_bits(-self.log_prob(x) / self.num_dims)

    def latent(self, x: Tensor) -> Tensor:
        """The latent of each image, flattened: ``(batch, D)``, scales in :attr:`scale_slices` order."""
        z, _ = self.forward(x)
        return z.reshape(z.shape[0], -1)

    def decode(self, z_flat: Tensor) -> Tensor:
        """Images (level units) from flat latents ``(batch, D)``."""
        check_tensor(z_flat, "z_flat", (self.num_dims,))
        x, _ = self.inverse(z_flat.reshape(z_flat.shape[0], *self.event_shape))
        return x


@torch.no_grad()
def dequantized_bits_per_dim(flow: Flow, images: Tensor, draws: int = 4, seed: int = 0,
                             batch_size: int = 512) -> float:
    """Mean bits/dim of integer ``images`` under ``flow``, averaged over ``draws`` noise draws.

    Each draw adds fresh uniform noise (:func:`flowkit.data.dequantize`); the average of
    ``-log p(x + u)`` is an upper bound on the discrete code length in bits per pixel.

    Example:
        >>> import flowkit as fk
        >>> flow = fk.load_pretrained("digits-realnvp")
        >>> round(dequantized_bits_per_dim(flow, fk.data.digits("test")[:40], draws=1), 1)
        1.8
    """
    from .data import dequantize

    if not isinstance(images, Tensor) or images.dtype.is_floating_point:
        raise TypeError("images must be an integer tensor of levels, e.g. flowkit.data.digits('test')")
    draws = check_count(draws, "draws")
    if draws < 1:
        raise ValueError("draws must be at least 1")
    levels = getattr(flow, "levels", 17)
    generator = torch.Generator().manual_seed(int(seed))
    was_training = flow.training
    flow.eval()
    total, count = 0.0, 0
    dims = math.prod(images.shape[1:])
    for _ in range(draws):
        for batch in images.split(batch_size):
            x = dequantize(batch, levels, generator=generator)
            total += -flow.log_prob(x).sum().item()
            count += batch.shape[0]
    flow.train(was_training)
    return nats_to_bits(total / count / dims)
