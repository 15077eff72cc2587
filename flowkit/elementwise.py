"""Elementwise transforms: each coordinate through the same monotone map of the real line.

The Jacobian is diagonal, so its log-determinant is the sum of the log-derivatives.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .errors import DomainError, NonFiniteError
from .transforms import Transform, sum_event

__all__ = ["Affine", "Exp", "Log", "Sigmoid", "Logit", "Tanh", "SinhArcsinh"]


def _as_param(value, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{name} must be finite, got {value!r}")
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


class Affine(Transform):
    r"""Elementwise ``z = scale * x + shift``; :math:`\log|\det| = \sum \log|scale|`.

    ``scale`` and ``shift`` are numbers or tensors that broadcast against one sample.
    A zero scale squashes all the mass onto one point: it has no inverse and is refused.

    Arguments:
        scale: non-zero factor(s), a number or a tensor broadcasting against one sample.
        shift: offset(s), likewise.
        learnable: make ``scale`` and ``shift`` parameters (else fixed buffers).

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Affine(2.0, 1.0)(torch.tensor([[0.0, 1.0]]))  # z = 2x + 1, log|det| = 2 log 2
        (tensor([[1., 3.]]), tensor([1.3863]))
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_scale(self.scale)
        return self.scale * x + self.shift, self._log_abs_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check_scale(self.scale)
        return (z - self.shift) / self.scale, -self._log_abs_det(z)


class Exp(Transform):
    r"""``z = exp(x)``; :math:`\log|dz/dx| = x`. Inverse needs ``z > 0``.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Exp()(torch.tensor([[0.0, 1.0]]))
        (tensor([[1.0000, 2.7183]]), tensor([1.]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(x), sum_event(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _require_open_interval(z, 0.0, math.inf, "Exp.inverse (log)")
        log_z = torch.log(z)
        return log_z, -sum_event(log_z)


class Log(Transform):
    r"""``z = log(x)`` for ``x > 0``; :math:`\log|dz/dx| = -\log x`.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Log()(torch.tensor([[1.0, 4.0]]))
        (tensor([[0.0000, 1.3863]]), tensor([-1.3863]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _require_open_interval(x, 0.0, math.inf, "Log.forward")
        log_x = torch.log(x)
        return log_x, -sum_event(log_x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(z), sum_event(z)


def _log_sigmoid_derivative(x: Tensor) -> Tensor:
    # d sigmoid/dx = sigmoid(x) sigmoid(-x); in log space this never underflows.
    return F.logsigmoid(x) + F.logsigmoid(-x)


def _logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)


class Sigmoid(Transform):
    r"""``z = 1 / (1 + e^{-x})``; :math:`\log|dz/dx| = \log\sigma(x) + \log\sigma(-x)`.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Sigmoid()(torch.tensor([[0.0]]))  # slope 1/4 at 0
        (tensor([[0.5000]]), tensor([-1.3863]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(x), sum_event(_log_sigmoid_derivative(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _require_open_interval(z, 0.0, 1.0, "Sigmoid.inverse (logit)")
        x = _logit(z)
        return x, -sum_event(_log_sigmoid_derivative(x))


class Logit(Transform):
    r"""``z = log(x / (1 - x))`` for ``0 < x < 1``; the inverse of :class:`Sigmoid`.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Logit()(torch.tensor([[0.5]]))
        (tensor([[0.]]), tensor([1.3863]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _require_open_interval(x, 0.0, 1.0, "Logit.forward")
        z = _logit(x)
        return z, -sum_event(_log_sigmoid_derivative(z))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(z), sum_event(_log_sigmoid_derivative(z))


def _log_tanh_derivative(x: Tensor) -> Tensor:
    # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
    return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))


class Tanh(Transform):
    r"""``z = tanh(x)``; :math:`\log|dz/dx| = \log(1 - \tanh^2 x)`. Inverse needs ``|z| < 1``.

    Example:
        >>> import torch, flowkit as fk
        >>> z, log_abs_det = fk.Tanh()(torch.tensor([[0.0, 1.0]]))
        >>> z, log_abs_det
        (tensor([[0.0000, 0.7616]]), tensor([-0.8676]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(x), sum_event(_log_tanh_derivative(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
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

    Arguments:
        skew: :math:`a`, a number or a tensor broadcasting against one sample.
        tailweight: :math:`b > 0`, likewise.
        learnable: make both parameters (the default).

    References:
        M. C. Jones, A. Pewsey. Sinh-arcsinh distributions (2009).
        https://doi.org/10.1093/biomet/asp053

    Example:
        >>> import torch, flowkit as fk
        >>> fk.SinhArcsinh()(torch.tensor([[0.3]]))[0]  # the identity at a = 0, b = 1
        tensor([[0.3000]], grad_fn=<SinhBackward0>)
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.sinh(self.tailweight * torch.asinh(x) - self.skew)
        return z, sum_event(self._log_derivative(x).expand_as(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.sinh((torch.asinh(z) + self.skew) / self.tailweight)
        return x, -sum_event(self._log_derivative(x).expand_as(x))
