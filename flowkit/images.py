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
from torch import Tensor

from ._checks import check_count, check_tensor
from .elementwise import _log_sigmoid_derivative
from .errors import DomainError
from .nets import ResNetConditioner
from .splines import num_spline_params, unit_spline
from .transforms import Transform, sum_event

__all__ = [
    "LogitPreprocess",
    "Squeeze",
    "Unsqueeze",
    "squeeze",
    "unsqueeze",
    "Reshape",
    "Split",
    "VariationalDequantizer",
]


class LogitPreprocess(Transform):
    r"""Level units ``[0, levels)`` to the real line, with the log-det counted.

    .. math:: y = \alpha + (1 - 2\alpha)\,\frac{x}{L}, \qquad z = \log\frac{y}{1-y}

    The margin :math:`\alpha` keeps ``y`` away from 0 and 1, where the logit blows up.

    .. math:: \log\left|\frac{dz}{dx}\right| = \log\frac{1-2\alpha}{L} - \log y - \log(1-y)

    summed over pixels. Because this log-det is part of the flow, ``log_prob`` is a
    density in level units and bits per dimension stay honest.

    Arguments:
        levels: the number of grey levels ``L``; pixels lie in ``[0, L)``.
        alpha: the margin :math:`\alpha \in (0, 0.5)`.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. Density estimation using Real NVP (2017),
        section 4.1. https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch, flowkit as fk
        >>> z, _ = fk.LogitPreprocess(17)(torch.full((1, 1, 2, 2), 8.5))
        >>> z.flatten()  # the middle of the level range maps to 0
        tensor([0., 0., 0., 0.])
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.numel() and (x.min() < 0 or x.max() > self.levels):
            raise DomainError(
                f"LogitPreprocess expects pixels in level units [0, {self.levels}) "
                f"(integer levels plus uniform noise, see flowkit.data.dequantize); got values in "
                f"[{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        y = self.alpha + (1.0 - 2.0 * self.alpha) * x / self.levels
        z = torch.log(y) - torch.log1p(-y)
        log_abs_det = self._log_slope - torch.log(y) - torch.log1p(-y)
        return z, sum_event(log_abs_det)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.sigmoid(z)
        x = (y - self.alpha) * self.levels / (1.0 - 2.0 * self.alpha)
        log_abs_det = _log_sigmoid_derivative(z) - self._log_slope
        return x, sum_event(log_abs_det)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, alpha={self.alpha}"


def _check_image(t: Tensor, who: str) -> None:
    if t.dim() != 4:
        raise ValueError(f"{who} expects a batch of images (batch, channels, height, width), "
                         f"got shape {tuple(t.shape)}")


def squeeze(x: Tensor) -> Tensor:
    """Space to depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Each 2x2 block of pixels becomes 4 channels: output channel ``4c + 2i + j`` at
    ``(h, w)`` holds input channel ``c`` at pixel ``(2h + i, 2w + j)``.

    Example:
        >>> import torch
        >>> from flowkit.images import squeeze
        >>> squeeze(torch.arange(16.0).reshape(1, 1, 4, 4))[0, :, 0, 0]
        tensor([0., 1., 4., 5.])
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

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Squeeze()(torch.zeros(2, 1, 8, 8))[0].shape
        torch.Size([2, 4, 4, 4])
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return unsqueeze(z), z.new_zeros(z.shape[0])


class Unsqueeze(Transform):
    """The inverse of :class:`Squeeze`: ``(4C, H, W) -> (C, 2H, 2W)``; log|det| = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return unsqueeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(z), z.new_zeros(z.shape[0])


class Reshape(Transform):
    """Reshape each sample from ``in_shape`` to ``out_shape`` (same size); log|det| = 0.

    Example:
        >>> import torch
        >>> from flowkit.images import Reshape
        >>> Reshape((1, 2, 2), (4,))(torch.zeros(3, 1, 2, 2))[0].shape
        torch.Size([3, 4])
    """

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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._move(x, self.in_shape, self.out_shape, "Reshape.forward"), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
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

    Arguments:
        in_shape: ``(C, H, W)`` of one input image.
        factor_out: how many channels go straight to the latent.
        rest: the transform for the other channels, ending with a flat vector.

    References:
        L. Dinh, J. Sohl-Dickstein, S. Bengio. Density estimation using Real NVP (2017),
        section 3.6. https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch, flowkit as fk
        >>> from flowkit.images import Reshape
        >>> split = fk.Split((2, 2, 2), 1, fk.Chain([Reshape((1, 2, 2), (4,))]))
        >>> split(torch.zeros(3, 2, 2, 2))[0].shape
        torch.Size([3, 8])
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"Split expects images of shape {self.in_shape}, got a batch of shape {tuple(x.shape)}")
        done, todo = x[:, :self.factor_out], x[:, self.factor_out:]
        z_rest, log_abs_det = self.rest(todo)
        if z_rest.dim() != 2:
            raise ValueError("Split's rest must end with a flat vector per sample (add a Reshape)")
        return torch.cat([done.reshape(x.shape[0], -1), z_rest], dim=1), log_abs_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _, h, w = self.in_shape
        if z.dim() != 2:
            raise ValueError(f"Split.inverse expects flat latents (batch, D), got shape {tuple(z.shape)}")
        k = self.num_factored
        done = z[:, :k].reshape(z.shape[0], self.factor_out, h, w)
        todo, log_abs_det = self.rest.inverse(z[:, k:])
        return torch.cat([done, todo], dim=1), log_abs_det

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, factor_out={self.factor_out}"


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

    Arguments:
        shape: ``(C, H, W)`` of one image.
        levels: the number of grey levels.
        bins: the spline pieces of each cell's map ``g``.
        hidden, num_blocks: the :class:`~flowkit.nets.ResNetConditioner` choosing ``g``.

    References:
        J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. Flow++: Improving Flow-Based
        Generative Models with Variational Dequantization and Architecture Design (2019).
        https://arxiv.org/abs/1902.00275

    Example:
        >>> import torch, flowkit as fk
        >>> dq = fk.VariationalDequantizer((1, 2, 2), levels=17, bins=4, hidden=8)
        >>> x = torch.tensor([[[[0.25, 3.5], [16.9, 8.0]]]])
        >>> torch.equal(dq(x)[0], x)  # a new one is the identity (uniform dequantization)
        True
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # input already checked by the Transform wrapper
        z, log_deriv = self._bend(x)
        return z, sum_event(log_deriv)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        k, v, params = self._cells(z)
        u, log_deriv = unit_spline(v, params, inverse=True)
        return k + u, sum_event(log_deriv)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, bins={self.bins}"


# Kept importable from here: the one chain, the image conditioner and the image model.
from .flow import Chain  # noqa: E402
from .nets import ResidualBlock  # noqa: E402


def __getattr__(name: str):
    # The image model lives in flowkit.models (which builds on this module): loaded on demand.
    if name in ("ImageRealNVP", "dequantized_bits_per_dim"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
