"""Flows for images: logit preprocessing, squeeze, multi-scale splitting, and an image RealNVP.

Shapes follow PyTorch: a batch of images is ``(batch, channels, height, width)``. Pixels
arrive in *level units*: integer grey levels ``k`` in ``0 .. levels-1`` plus uniform noise
(:func:`flowkit.data.dequantize`), so values lie in ``[0, levels)``. Every transform here
keeps the change-of-variables bookkeeping exact, so

    bits/dim = -log p(x) / (D ln 2)

with ``D`` the number of pixels, and a model that puts the same density on every cube
scores exactly ``log2(levels)``.

Direction convention as everywhere in flowkit: ``forward`` is data -> latent.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ._checks import check_count, check_positive, check_tensor
from .flow import Chain, Flow, StandardNormal
from .splines import num_spline_params, unit_spline
from .transforms import (
    ActNorm,
    AffineCoupling,
    SplineCoupling,
    Transform,
    channel_mask,
    checkerboard_mask,
    sum_event,
)

__all__ = [
    "LogitPreprocess",
    "Squeeze",
    "Unsqueeze",
    "squeeze",
    "unsqueeze",
    "Chain",
    "Reshape",
    "Split",
    "ResidualBlock",
    "ResNetConditioner",
    "VariationalDequantizer",
    "ImageRealNVP",
    "dequantized_bits_per_dim",
]


def _log_sigmoid_derivative(x: Tensor) -> Tensor:
    # d sigmoid/dx = sigmoid(x) sigmoid(-x), computed in log space so it never underflows.
    return F.logsigmoid(x) + F.logsigmoid(-x)


# ----------------------------------------------------------------------------------
# Logit preprocessing
# ----------------------------------------------------------------------------------


class LogitPreprocess(Transform):
    r"""Level units ``[0, levels)`` to the real line, with the log-det counted.

    .. math:: y = \alpha + (1 - 2\alpha)\,\frac{x}{L}, \qquad z = \log\frac{y}{1-y}

    The margin :math:`\alpha` keeps ``y`` away from 0 and 1, where the logit blows up.

    .. math:: \log\left|\frac{dz}{dx}\right| = \log\frac{1-2\alpha}{L} - \log y - \log(1-y)

    summed over pixels. Because this log-det is part of the flow, ``log_prob`` is a
    density in level units and bits per dimension stay honest.
    """

    def __init__(self, levels: int = 17, alpha: float = 0.05):
        super().__init__()
        levels = check_count(levels, "levels")
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        alpha = float(alpha)
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must lie strictly between 0 and 0.5, got {alpha}")
        self.levels = levels
        self.alpha = alpha

    @property
    def _log_slope(self) -> float:
        return math.log((1.0 - 2.0 * self.alpha) / self.levels)

    def forward(self, x):
        if x.numel() and (x.min() < 0 or x.max() > self.levels):
            raise ValueError(
                f"LogitPreprocess expects pixels in level units [0, {self.levels}) "
                f"(integer levels plus uniform noise, see flowkit.data.dequantize); got values in "
                f"[{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        y = self.alpha + (1.0 - 2.0 * self.alpha) * x / self.levels
        z = torch.log(y) - torch.log1p(-y)
        log_abs_det = self._log_slope - torch.log(y) - torch.log1p(-y)
        return z, sum_event(log_abs_det)

    def inverse(self, z):
        y = torch.sigmoid(z)
        x = (y - self.alpha) * self.levels / (1.0 - 2.0 * self.alpha)
        log_abs_det = _log_sigmoid_derivative(z) - self._log_slope
        return x, sum_event(log_abs_det)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, alpha={self.alpha}"


# ----------------------------------------------------------------------------------
# Squeeze
# ----------------------------------------------------------------------------------


def _check_image(t: Tensor, who: str) -> None:
    if t.dim() != 4:
        raise ValueError(f"{who} expects a batch of images (batch, channels, height, width), "
                         f"got shape {tuple(t.shape)}")


def squeeze(x: Tensor) -> Tensor:
    """Space to depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Each 2x2 block of pixels becomes 4 channels: output channel ``4c + 2i + j`` at
    ``(h, w)`` holds input channel ``c`` at pixel ``(2h + i, 2w + j)``.
    """
    _check_image(x, "squeeze")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs an even height and width, got {h}x{w}")
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)        # (b, c, h', i, w', j)
    x = x.permute(0, 1, 3, 5, 2, 4)                  # (b, c, i, j, h', w')
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(z: Tensor) -> Tensor:
    """Depth to space, the inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    _check_image(z, "unsqueeze")
    b, c4, h, w = z.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze needs a number of channels divisible by 4, got {c4}")
    c = c4 // 4
    z = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # (b, c, h, i, w, j)
    return z.reshape(b, c, 2 * h, 2 * w)


class Squeeze(Transform):
    """Trade space for channels: ``(C, H, W) -> (4C, H/2, W/2)``; a permutation, log|det| = 0.

    After a squeeze, pixels that were neighbours sit in the same position as different
    channels, so a *channel* mask can split them and a 3x3 convolution sees a wider area.
    """

    def forward(self, x):
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return unsqueeze(z), z.new_zeros(z.shape[0])


class Unsqueeze(Transform):
    """The inverse of :class:`Squeeze`: ``(4C, H, W) -> (C, 2H, 2W)``; log|det| = 0."""

    def forward(self, x):
        return unsqueeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return squeeze(z), z.new_zeros(z.shape[0])


# ----------------------------------------------------------------------------------
# Plumbing: chains, reshapes and the multi-scale split
# ----------------------------------------------------------------------------------


class Reshape(Transform):
    """Reshape each sample from ``in_shape`` to ``out_shape`` (same size); log|det| = 0."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ValueError(f"cannot reshape {self.in_shape} to {self.out_shape}: sizes differ")

    @staticmethod
    def _move(t: Tensor, src: tuple, dst: tuple, who: str) -> Tensor:
        if tuple(t.shape[1:]) != src:
            raise ValueError(f"{who} expects samples of shape {src}, got a batch of shape {tuple(t.shape)}")
        return t.reshape(t.shape[0], *dst)

    def forward(self, x):
        return self._move(x, self.in_shape, self.out_shape, "Reshape.forward"), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return self._move(z, self.out_shape, self.in_shape, "Reshape.inverse"), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"{self.in_shape} -> {self.out_shape}"


class Split(Transform):
    r"""Multi-scale architecture: factor out channels early, transform the rest further.

    Input images of shape ``(C, H, W)``. The first ``factor_out`` channels are *done*:
    they go straight to the latent (the base Gaussian models them). The other
    ``C - factor_out`` channels go through ``rest``, which must return one flat vector per
    sample. The output is the flat vector ``[factored-out channels, rest's output]``:

    .. math:: z = \big(x_{1:k},\; f_{\text{rest}}(x_{k+1:C})\big), \qquad
              \log|\det| = \log|\det f_{\text{rest}}|

    Later layers thus work on fewer dimensions (cheaper), and the latent splits into
    scales: fine detail first, coarse structure last.
    """

    def __init__(self, in_shape: Sequence[int], factor_out: int, rest: Transform):
        super().__init__()
        c, h, w = (int(s) for s in in_shape)
        factor_out = check_count(factor_out, "factor_out")
        if not 0 < factor_out < c:
            raise ValueError(f"factor_out must be between 1 and {c - 1} for {c} channels, got {factor_out}")
        if not isinstance(rest, Transform):
            raise TypeError(f"rest must be a flowkit Transform, got {type(rest).__name__}")
        self.in_shape = (c, h, w)
        self.factor_out = factor_out
        self.rest = rest

    @property
    def num_factored(self) -> int:
        """How many latent entries this split sends straight to the base."""
        return self.factor_out * self.in_shape[1] * self.in_shape[2]

    def forward(self, x):
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"Split expects images of shape {self.in_shape}, got a batch of shape {tuple(x.shape)}")
        done, todo = x[:, :self.factor_out], x[:, self.factor_out:]
        z_rest, log_abs_det = self.rest(todo)
        if z_rest.dim() != 2:
            raise ValueError("Split's rest must end with a flat vector per sample (add a Reshape)")
        return torch.cat([done.reshape(x.shape[0], -1), z_rest], dim=1), log_abs_det

    def inverse(self, z):
        _, h, w = self.in_shape
        if z.dim() != 2:
            raise ValueError(f"Split.inverse expects flat latents (batch, D), got shape {tuple(z.shape)}")
        k = self.num_factored
        done = z[:, :k].reshape(z.shape[0], self.factor_out, h, w)
        todo, log_abs_det = self.rest.inverse(z[:, k:])
        return torch.cat([done, todo], dim=1), log_abs_det

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, factor_out={self.factor_out}"


# ----------------------------------------------------------------------------------
# Convolutional conditioners
# ----------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """``h + conv(act(conv(act(h))))``: the skip path keeps deep conditioners trainable."""

    def __init__(self, channels: int, activation: type[nn.Module] = nn.ELU, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            activation(), nn.Conv2d(channels, channels, 3, padding=1),
            activation(), nn.Conv2d(channels, channels, 1),
            nn.Dropout(dropout),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class ResNetConditioner(nn.Module):
    """A small ResNet mapping the kept pixels to a log-scale and shift per pixel.

    ``extra`` is a fixed ``(k, H, W)`` tensor appended as input channels (the coupling's
    mask, so the network can tell a masked-out pixel from a pixel whose value is 0). A
    learnable per-position bias lets the network know where in the image it is (the
    border of a digit image is almost always blank). The output layer starts at zero, so
    a new coupling is the identity. ``dropout`` (training only) regularises small data sets;
    in eval mode the network is deterministic, so the coupling is exactly invertible.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, num_blocks: int = 2,
                 extra: Tensor | None = None, spatial: tuple[int, int] | None = None,
                 dropout: float = 0.0):
        super().__init__()
        num_extra = 0 if extra is None else extra.shape[0]
        if extra is not None:
            self.register_buffer("extra", extra.float().clone())
        else:
            self.extra = None
        self.input = nn.Conv2d(in_channels + num_extra, hidden, 3, padding=1)
        self.position = nn.Parameter(torch.zeros(1, hidden, *spatial)) if spatial else None
        self.blocks = nn.Sequential(*[ResidualBlock(hidden, dropout=dropout) for _ in range(num_blocks)])
        self.output = nn.Sequential(nn.ELU(), nn.Conv2d(hidden, out_channels, 3, padding=1))
        nn.init.zeros_(self.output[1].weight)
        nn.init.zeros_(self.output[1].bias)

    def forward(self, kept: Tensor) -> Tensor:
        if self.extra is not None:
            kept = torch.cat([kept, self.extra.expand(kept.shape[0], -1, -1, -1)], dim=1)
        h = self.input(kept)
        if self.position is not None:
            h = h + self.position
        return self.output(self.blocks(h))


# ----------------------------------------------------------------------------------
# Variational dequantization
# ----------------------------------------------------------------------------------


class VariationalDequantizer(Transform):
    r"""Learned noise inside each level's unit cell (Ho et al., 2019, "Flow++").

    Uniform dequantization asks the flow for a density that is flat across each cell
    ``[k, k+1)`` and jumps at the cell edges; a smooth flow cannot draw those jumps and
    spills probability over the edges, which costs bits. This layer bends each cell
    instead: a pixel ``k + u`` becomes ``k + g(u)``, where ``g`` is a monotone spline of
    ``[0, 1]`` onto itself (:func:`flowkit.splines.unit_spline`) whose shape a small ResNet
    chooses from the whole integer image ``k``. Each cell maps onto itself, so the model
    ``r(k + u) = p(k + g(u)) |g'(u)|`` keeps exactly the probability ``p`` gives the cell,
    and ``E_u[-log r(k + u)]`` with uniform ``u`` is the variational-dequantization bound
    on the discrete code length: bits/dim are measured exactly as before.

    With zero-initialised outputs ``g`` starts as the identity (plain uniform
    dequantization). Values outside ``[0, levels]`` (flow samples can stray there) pass
    through unchanged.
    """

    def __init__(self, shape: Sequence[int], levels: int = 17, bins: int = 8, hidden: int = 32,
                 num_blocks: int = 1):
        super().__init__()
        c, h, w = (check_count(s, "shape") for s in shape)
        self.levels = check_count(levels, "levels")
        self.bins = check_count(bins, "bins")
        if self.levels < 2 or self.bins < 1:
            raise ValueError(f"need levels >= 2 and bins >= 1, got levels={levels}, bins={bins}")
        self.event_shape = (c, h, w)
        self.net = ResNetConditioner(c, c * num_spline_params(self.bins), check_count(hidden, "hidden"),
                                     check_count(num_blocks, "num_blocks"), spatial=(h, w))

    def _cells(self, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = torch.floor(values).clamp(0, self.levels - 1)
        raw = self.net(k / (self.levels - 1) - 0.5)
        b, c, h, w = values.shape
        params = raw.reshape(b, c, -1, h, w).movedim(2, -1)
        return k, values - k, params

    def pixelwise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``forward`` without the sum: ``(k + g(u), log g'(u))``, both shaped like ``x``.

        ``exp(-log g'(u))`` is the learned noise density at ``v = g(u)`` of each pixel.
        """
        check_tensor(x, "x", self.event_shape)
        return self._bend(x)

    def _bend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, u, params = self._cells(x)
        v, log_deriv = unit_spline(u, params)
        return k + v, log_deriv

    def forward(self, x):  # input already checked by the Transform wrapper
        z, log_deriv = self._bend(x)
        return z, sum_event(log_deriv)

    def inverse(self, z):
        k, v, params = self._cells(z)
        u, log_deriv = unit_spline(v, params, inverse=True)
        return k + u, sum_event(log_deriv)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, bins={self.bins}"


# ----------------------------------------------------------------------------------
# The image RealNVP
# ----------------------------------------------------------------------------------


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

    Each step is an :class:`ActNorm` and an :class:`AffineCoupling` whose conditioner is a
    :class:`ResNetConditioner`. The latent is reshaped to the image shape so that
    ``sample`` and ``inverse`` work with the plain :class:`StandardNormal` base; its flat
    index runs over the scales in order: :attr:`scale_slices` says which entries belong
    to which scale (the first are the finest details).

    ``log_prob(x)`` takes images in level units, so ``-log_prob / (D ln 2)`` is bits per
    dimension. ``config`` holds the constructor arguments (used by checkpoints).
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
        return -self.log_prob(x) / (self.num_dims * math.log(2.0))

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
    return total / count / (dims * math.log(2.0))
