"""Invertible transforms.

One direction convention everywhere in flowkit:

* ``forward(x) -> (z, log|det dz/dx|)`` is the *normalizing* direction, data to latent;
* ``inverse(z) -> (x, log|det dx/dz|)`` is the *generative* direction, latent to data.

The two log-determinants of one transform at matching points are negatives of each
other, because the Jacobian of the inverse is the inverse of the Jacobian.
Every ``log_abs_det`` is summed over the event dimensions, so it has shape ``(batch,)``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ._checks import check_context, check_tensor
from .errors import DomainError, NonFiniteError
from .splines import num_spline_params, unit_spline

__all__ = [
    "Transform",
    "Inverse",
    "Affine",
    "Exp",
    "Log",
    "Sigmoid",
    "Logit",
    "Tanh",
    "SinhArcsinh",
    "Linear",
    "Permutation",
    "Reverse",
    "ActNorm",
    "AffineCoupling",
    "AdditiveCoupling",
    "SplineCoupling",
    "MLP",
    "ConvNet",
    "alternating_mask",
    "checkerboard_mask",
    "channel_mask",
    "sum_event",
]


def sum_event(t: Tensor) -> Tensor:
    """Sum over every dimension but the batch one: ``(batch, ...) -> (batch,)``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _check_output(transform: "Transform", out, inputs: Tensor, direction: str) -> None:
    """Check what a forward/inverse returned: a pair of tensors, one finite log-det per sample."""
    name = type(transform).__name__
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"{name}.{direction} must return a pair (output, log_abs_det), "
            f"got {type(out).__name__}"
        )
    y, log_abs_det = out
    if not isinstance(y, Tensor) or not isinstance(log_abs_det, Tensor):
        raise TypeError(f"{name}.{direction} must return two tensors (output, log_abs_det)")
    if log_abs_det.shape != (inputs.shape[0],):
        raise ValueError(
            f"{name}.{direction} returned log_abs_det of shape {tuple(log_abs_det.shape)}, "
            f"expected ({inputs.shape[0]},): one value per sample, summed over the event "
            "dimensions (flowkit.transforms.sum_event does that)"
        )
    if y.numel() and not (torch.isfinite(y).all() and torch.isfinite(log_abs_det).all()):
        locate = getattr(transform, "_locate_non_finite", None)
        if locate is not None:  # a chain names the layer that failed, if it can
            locate(direction, inputs)
        raise NonFiniteError(
            f"{name}.{direction} produced NaN or infinite values from finite inputs "
            f"(input range [{inputs.min().item():.3g}, {inputs.max().item():.3g}]); "
            "the input may be outside the transform's domain or the parameters have diverged"
        )


def _checked(method: Callable, direction: str) -> Callable:
    """Wrap a subclass's forward/inverse with input, context and output checks."""
    arg = "x" if direction == "forward" else "z"

    @functools.wraps(method)
    def wrapper(self, inputs, context=None):
        name = type(self).__name__
        # forward takes data (event_shape); inverse takes latents, whose shape can differ (a Flow
        # whose transforms reshape says so through latent_shape).
        shape = self.event_shape if direction == "forward" else self.latent_shape
        check_tensor(inputs, f"{name}.{direction} input {arg}", shape)
        if self.conditional:
            context = self._check_context(context, inputs.shape[0])
            out = method(self, inputs, context)
        else:
            if context is not None:
                raise TypeError(
                    f"{name} is not conditional: it takes no context, but context= was given"
                )
            out = method(self, inputs)
        _check_output(self, out, inputs, direction)
        return out

    wrapper._flowkit_checked = True
    wrapper._unchecked = method
    return wrapper


class Transform(nn.Module):
    """Base class of every invertible map.

    Subclasses implement ``forward(x) -> (z, log_abs_det)`` and
    ``inverse(z) -> (x, log_abs_det)``. Both are wrapped automatically so that bad
    input (NumPy arrays, integer tensors, a missing batch dimension, NaN) and bad output
    (a log-det of the wrong shape, NaN) raise a clear error.

    A *conditional* transform sets ``conditional = True`` and implements
    ``forward(x, context)`` and ``inverse(z, context)``: ``context`` holds one row per
    sample (``(batch, ...)``), the same rows in both directions. A plain transform keeps
    its one-argument signature and works unchanged inside a conditional :class:`~flowkit.Flow`,
    which passes the context only to transforms whose ``conditional`` is True.

    ``event_shape`` is the shape of one sample, or ``None`` when the transform works
    on any shape (elementwise transforms). A conditional transform may set
    ``context_shape`` (the shape of one context row) to have it checked.
    """

    event_shape: tuple[int, ...] | None = None
    conditional: bool = False
    context_shape: tuple[int, ...] | None = None

    @property
    def latent_shape(self) -> tuple[int, ...] | None:
        """Shape of one output of ``forward`` (input of ``inverse``); the event shape by default."""
        return self.event_shape

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for direction in ("forward", "inverse"):
            method = cls.__dict__.get(direction)
            if method is not None and not getattr(method, "_flowkit_checked", False):
                setattr(cls, direction, _checked(method, direction))

    def _check_context(self, context, batch: int) -> Tensor:
        """The context one call of this transform receives, checked: ``(batch, *context_shape)``."""
        return check_context(context, batch, self.context_shape, who=type(self).__name__)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement inverse")

    @property
    def inv(self) -> "Transform":
        """The same map run backwards: its forward is this transform's inverse."""
        return Inverse(self)


class Inverse(Transform):
    """Swap the directions of a transform."""

    def __init__(self, transform: Transform):
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"Inverse expects a flowkit Transform, got {type(transform).__name__}")
        self.transform = transform
        self.event_shape = transform.latent_shape
        self.conditional = transform.conditional
        self.context_shape = transform.context_shape

    @property
    def latent_shape(self):
        return self.transform.event_shape

    def _check_context(self, context, batch):
        return self.transform._check_context(context, batch)

    def forward(self, x, context=None):
        if self.conditional:
            return self.transform.inverse(x, context)
        return self.transform.inverse(x)

    def inverse(self, z, context=None):
        if self.conditional:
            return self.transform.forward(z, context)
        return self.transform.forward(z)


def _as_param(value, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t.clone()


def _store(module: nn.Module, name: str, value: Tensor, learnable: bool) -> None:
    if learnable:
        setattr(module, name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def _require_open_interval(t: Tensor, low: float, high: float, who: str) -> None:
    if not ((t > low) & (t < high)).all():
        raise DomainError(
            f"{who} expects values strictly inside ({low:g}, {high:g}); got values in "
            f"[{t.min().item():.4g}, {t.max().item():.4g}]"
        )


# ----------------------------------------------------------------------------------
# Elementwise transforms
# ----------------------------------------------------------------------------------


class Affine(Transform):
    r"""Elementwise ``z = scale * x + shift``; :math:`\log|\det| = \sum \log|scale|`.

    ``scale`` and ``shift`` are numbers or tensors that broadcast against one sample.
    A zero scale squashes all the mass onto one point: it has no inverse and is refused.
    """

    def __init__(self, scale=1.0, shift=0.0, learnable: bool = False):
        super().__init__()
        scale, shift = _as_param(scale, "scale"), _as_param(shift, "shift")
        self._check_scale(scale)
        _store(self, "scale", scale, learnable)
        _store(self, "shift", shift, learnable)

    @staticmethod
    def _check_scale(scale: Tensor) -> None:
        if (scale == 0).any():
            raise ValueError(
                "Affine scale must be non-zero: a zero scale maps every x to the same z, "
                "so the map has no inverse and the density would be infinite"
            )

    def _log_abs_det(self, x: Tensor) -> Tensor:
        return sum_event(torch.log(self.scale.abs()).expand_as(x))

    def forward(self, x):
        self._check_scale(self.scale)
        return self.scale * x + self.shift, self._log_abs_det(x)

    def inverse(self, z):
        self._check_scale(self.scale)
        return (z - self.shift) / self.scale, -self._log_abs_det(z)


class Exp(Transform):
    r"""``z = exp(x)``; :math:`\log|dz/dx| = x`. Inverse needs ``z > 0``."""

    def forward(self, x):
        return torch.exp(x), sum_event(x)

    def inverse(self, z):
        _require_open_interval(z, 0.0, math.inf, "Exp.inverse (log)")
        log_z = torch.log(z)
        return log_z, -sum_event(log_z)


class Log(Transform):
    r"""``z = log(x)`` for ``x > 0``; :math:`\log|dz/dx| = -\log x`."""

    def forward(self, x):
        _require_open_interval(x, 0.0, math.inf, "Log.forward")
        log_x = torch.log(x)
        return log_x, -sum_event(log_x)

    def inverse(self, z):
        return torch.exp(z), sum_event(z)


def _log_sigmoid_derivative(x: Tensor) -> Tensor:
    # d sigmoid/dx = sigmoid(x) sigmoid(-x); in log space this never underflows.
    return F.logsigmoid(x) + F.logsigmoid(-x)


def _logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)


class Sigmoid(Transform):
    r"""``z = 1 / (1 + e^{-x})``; :math:`\log|dz/dx| = \log\sigma(x) + \log\sigma(-x)`."""

    def forward(self, x):
        return torch.sigmoid(x), sum_event(_log_sigmoid_derivative(x))

    def inverse(self, z):
        _require_open_interval(z, 0.0, 1.0, "Sigmoid.inverse (logit)")
        x = _logit(z)
        return x, -sum_event(_log_sigmoid_derivative(x))


class Logit(Transform):
    r"""``z = log(x / (1 - x))`` for ``0 < x < 1``; the inverse of :class:`Sigmoid`."""

    def forward(self, x):
        _require_open_interval(x, 0.0, 1.0, "Logit.forward")
        z = _logit(x)
        return z, -sum_event(_log_sigmoid_derivative(z))

    def inverse(self, z):
        return torch.sigmoid(z), sum_event(_log_sigmoid_derivative(z))


def _log_tanh_derivative(x: Tensor) -> Tensor:
    # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
    return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))


class Tanh(Transform):
    r"""``z = tanh(x)``; :math:`\log|dz/dx| = \log(1 - \tanh^2 x)`. Inverse needs ``|z| < 1``."""

    def forward(self, x):
        return torch.tanh(x), sum_event(_log_tanh_derivative(x))

    def inverse(self, z):
        _require_open_interval(z, -1.0, 1.0, "Tanh.inverse (atanh)")
        return torch.atanh(z), -sum_event(torch.log1p(-z * z))


def _log_cosh(u: Tensor) -> Tensor:
    a = u.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


class SinhArcsinh(Transform):
    r"""A learnable monotone map with control over skew and tail weight.

    .. math:: z = \sinh(b \,\operatorname{asinh}(x) - a), \qquad b > 0

    ``skew`` is :math:`a` (shifts mass to one side), ``tailweight`` is :math:`b`
    (``b > 1`` thins the tails of ``x`` when mapped to ``z``; ``b < 1`` fattens them).
    ``b = 1, a = 0`` is the identity.

    .. math:: \log\left|\frac{dz}{dx}\right| = \log b + \log\cosh(b\operatorname{asinh}x - a)
              - \tfrac12 \log(1 + x^2)
    """

    def __init__(self, skew=0.0, tailweight=1.0, learnable: bool = True):
        super().__init__()
        skew, tailweight = _as_param(skew, "skew"), _as_param(tailweight, "tailweight")
        if (tailweight <= 0).any():
            raise ValueError(f"tailweight must be positive, got {tailweight.tolist()}")
        _store(self, "skew", skew, learnable)
        # b = exp(log_tailweight) stays positive whatever the optimiser does.
        _store(self, "log_tailweight", torch.log(tailweight), learnable)

    @property
    def tailweight(self) -> Tensor:
        return torch.exp(self.log_tailweight)

    def _log_derivative(self, x: Tensor) -> Tensor:
        u = self.tailweight * torch.asinh(x) - self.skew
        return self.log_tailweight + _log_cosh(u) - 0.5 * torch.log1p(x * x)

    def forward(self, x):
        z = torch.sinh(self.tailweight * torch.asinh(x) - self.skew)
        return z, sum_event(self._log_derivative(x).expand_as(x))

    def inverse(self, z):
        x = torch.sinh((torch.asinh(z) + self.skew) / self.tailweight)
        return x, -sum_event(self._log_derivative(x).expand_as(x))


# ----------------------------------------------------------------------------------
# Linear maps and permutations
# ----------------------------------------------------------------------------------


class Linear(Transform):
    r"""``z = x A^T + b`` for vectors ``x`` of size ``D``; :math:`\log|\det| = \log|\det A|`.

    Give either ``matrix`` (a D x D matrix) or ``dim`` (starts at the identity).
    A (numerically) singular matrix folds space onto a lower-dimensional set and is
    refused with a ``ValueError``.
    """

    def __init__(self, matrix=None, bias=None, dim: int | None = None, learnable: bool = True):
        super().__init__()
        if matrix is None:
            if dim is None:
                raise ValueError("Linear needs a matrix or a dimension: Linear(dim=2)")
            matrix = torch.eye(dim)
        matrix = _as_param(matrix, "matrix")
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"Linear expects a square D x D matrix, got shape {tuple(matrix.shape)}")
        d = matrix.shape[0]
        bias = torch.zeros(d) if bias is None else _as_param(bias, "bias")
        if bias.shape != (d,):
            raise ValueError(f"bias must have shape ({d},), got {tuple(bias.shape)}")
        self.event_shape = (d,)
        self._log_abs_det_checked(matrix)
        _store(self, "matrix", matrix, learnable)
        _store(self, "bias", bias, learnable)

    @staticmethod
    def _log_abs_det_checked(matrix: Tensor) -> Tensor:
        sign, log_abs_det = torch.linalg.slogdet(matrix)
        # Numerically singular: the smallest singular value is lost in the round-off of
        # the largest (a determinant test alone lets float32 near-singular matrices through).
        singular_values = torch.linalg.svdvals(matrix.detach())
        round_off = 10 * matrix.shape[0] * torch.finfo(matrix.dtype).eps
        if sign == 0 or singular_values[-1] <= singular_values[0] * round_off:
            raise ValueError(
                f"matrix is singular or nearly so (|det A| = {log_abs_det.exp().item():.3g}): "
                "it folds space onto a lower-dimensional set, so it has no inverse and the "
                "transformed density would be infinite"
            )
        return log_abs_det

    def forward(self, x):
        log_abs_det = self._log_abs_det_checked(self.matrix)
        z = x @ self.matrix.T + self.bias
        return z, log_abs_det.expand(x.shape[0])

    def inverse(self, z):
        log_abs_det = self._log_abs_det_checked(self.matrix)
        x = torch.linalg.solve(self.matrix, (z - self.bias).T).T
        return x, -log_abs_det.expand(z.shape[0])


class Permutation(Transform):
    """Reorder features (dimension 1: vector entries or image channels); log|det| = 0."""

    def __init__(self, permutation: Sequence[int] | Tensor):
        super().__init__()
        perm = torch.as_tensor(permutation)
        if perm.dim() != 1 or perm.dtype.is_floating_point:
            raise TypeError("permutation must be a 1-D sequence of integer indices")
        n = perm.numel()
        if not torch.equal(torch.sort(perm).values, torch.arange(n)):
            raise ValueError(f"permutation must contain each of 0..{n - 1} exactly once, got {perm.tolist()}")
        self.register_buffer("permutation", perm.long())
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    def _check_features(self, t: Tensor) -> None:
        n = self.permutation.numel()
        if t.dim() < 2 or t.shape[1] != n:
            raise ValueError(
                f"{type(self).__name__} permutes {n} features along dimension 1, "
                f"got input of shape {tuple(t.shape)}"
            )

    def forward(self, x):
        self._check_features(x)
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z):
        self._check_features(z)
        return z[:, self.inverse_permutation], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """Reverse the order of ``num_features`` features."""

    def __init__(self, num_features: int):
        super().__init__(torch.arange(num_features - 1, -1, -1))


class ActNorm(Transform):
    r"""Per-feature affine normalisation with data-dependent initialisation (Glow).

    ``z = (x - loc) * exp(-log_scale)``, per feature along dimension 1. On the first
    forward call, ``loc`` and ``log_scale`` are set from that batch so its output has zero
    mean and unit variance per feature: training starts well conditioned.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(num_features))
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p: Tensor, t: Tensor) -> Tensor:
        if t.dim() < 2 or t.shape[1] != p.numel():
            raise ValueError(
                f"ActNorm has {p.numel()} features along dimension 1, got input of shape {tuple(t.shape)}"
            )
        return p.view(1, -1, *([1] * (t.dim() - 2)))

    def _log_abs_det(self, t: Tensor) -> Tensor:
        per_position = t[0, 0].numel()  # spatial positions per feature (1 for vectors)
        return (-self.log_scale.sum() * per_position).expand(t.shape[0])

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [0] + list(range(2, x.dim()))
        self.loc.copy_(x.mean(dim=dims))
        self.log_scale.copy_(torch.log(x.std(dim=dims).clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x):
        loc = self._view(self.loc, x)
        if not self.initialized and x.shape[0] > 1:
            self._initialize(x)
        z = (x - loc) * torch.exp(-self._view(self.log_scale, x))
        return z, self._log_abs_det(x)

    def inverse(self, z):
        x = z * torch.exp(self._view(self.log_scale, z)) + self._view(self.loc, z)
        return x, -self._log_abs_det(z)


# ----------------------------------------------------------------------------------
# Coupling layers
# ----------------------------------------------------------------------------------


class MLP(nn.Sequential):
    """A plain multilayer perceptron whose last layer starts at zero.

    A zero last layer makes a new coupling layer the identity map, so a freshly built
    flow starts exactly at its base distribution.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 128,
                 num_hidden_layers: int = 2, activation: type[nn.Module] = nn.ReLU):
        sizes = [in_features] + [hidden] * num_hidden_layers
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(sizes[-1], out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


class ConvNet(nn.Sequential):
    """A small 3x3 convolutional network for image couplings; last layer starts at zero."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64,
                 num_hidden_layers: int = 2, activation: type[nn.Module] = nn.ReLU):
        chans = [in_channels] + [hidden] * num_hidden_layers
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), activation()]
        last = nn.Conv2d(chans[-1], out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


def alternating_mask(dim: int, parity: int = 0) -> Tensor:
    """``[1, 0, 1, 0, ...]`` (parity 0) or ``[0, 1, 0, 1, ...]`` (parity 1) for vectors."""
    return ((torch.arange(dim) + parity) % 2 == 0).float()


def checkerboard_mask(height: int, width: int, parity: int = 0, channels: int = 1) -> Tensor:
    """Image mask of shape ``(channels, height, width)``, 1 on alternate pixels."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    board = ((rows + cols + parity) % 2 == 0).float()
    return board.expand(channels, height, width).clone()


def channel_mask(channels: int, height: int, width: int, parity: int = 0) -> Tensor:
    """Image mask of shape ``(channels, height, width)``, 1 on the first half of channels."""
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

    def forward(self, x):
        log_scale, shift = self.scale_shift(x * self.mask)
        return x * torch.exp(log_scale) + shift, sum_event(log_scale)

    def inverse(self, z):
        log_scale, shift = self.scale_shift(z * self.mask)
        return (z - shift) * torch.exp(-log_scale), -sum_event(log_scale)


class AdditiveCoupling(_Coupling):
    r"""NICE additive coupling: :math:`z = x + (1-m)\odot t(m\odot x)`, volume preserving."""

    def __init__(self, mask, conditioner: nn.Module | None = None, hidden: int = 128):
        super().__init__(mask, conditioner, hidden, outputs_per_feature=1)

    def shift(self, kept: Tensor) -> Tensor:
        return self._conditioner_output(kept) * (1.0 - self.mask)

    def forward(self, x):
        return x + self.shift(x * self.mask), x.new_zeros(x.shape[0])

    def inverse(self, z):
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
    """

    def __init__(self, mask, conditioner: nn.Module | None = None, hidden: int = 128,
                 bins: int = 8, bound: float = 4.0):
        if not isinstance(bins, int) or bins < 1:
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

    def forward(self, x):
        return self._spline(x, inverse=False)

    def inverse(self, z):
        return self._spline(z, inverse=True)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"
