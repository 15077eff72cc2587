r"""Autoregressive flows: MADE masks, the masked autoregressive transform, and MAF.

Any density factorises into a product of one-dimensional conditionals,

.. math:: p(x) = \prod_{i=1}^{D} p(x_i \mid x_{<i}).

A masked autoregressive flow (MAF, Papamakarios et al. 2017) makes each conditional a
Gaussian whose mean :math:`\mu_i` and log-scale :math:`\alpha_i` are computed from the
earlier coordinates :math:`x_{<i}` only:

.. math:: x_i = \mu_i(x_{<i}) + e^{\alpha_i(x_{<i})} z_i
          \quad\Longleftrightarrow\quad
          z_i = \bigl(x_i - \mu_i(x_{<i})\bigr)\, e^{-\alpha_i(x_{<i})}.

All the :math:`\mu_i, \alpha_i` come out of *one* network pass, a MADE (Germain et al.
2015): an MLP whose weight matrices are masked so that output ``i`` cannot see inputs
``i, i+1, ...``. Hence the two directions cost very different amounts:

* ``forward`` (density, data -> latent): every :math:`x_{<i}` is known, so one pass;
* ``inverse`` (sampling, latent -> data): :math:`x_i` needs :math:`x_{<i}` first, so
  ``D`` passes, one coordinate at a time.

:math:`\partial z_i / \partial x_j = 0` for ``j`` later than ``i`` in the order, so the
Jacobian is triangular and :math:`\log|\det| = -\sum_i \alpha_i`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ._checks import check_count
from .flow import Flow, StandardNormal
from .transforms import ActNorm, Permutation, Reverse, Transform, sum_event

__all__ = [
    "autoregressive_mask",
    "MaskedLinear",
    "MADE",
    "MaskedAutoregressive",
    "MAF",
]


def autoregressive_mask(in_degrees: Tensor, out_degrees: Tensor, strict: bool = False) -> Tensor:
    r"""The MADE connectivity mask between two layers, shape ``(out, in)``.

    Every unit carries a *degree*: input ``j`` has the position of coordinate ``j`` in the
    autoregressive order (1..D), a hidden unit the largest position it may depend on.
    A hidden unit of degree ``d`` may connect to inputs of degree ``<= d``; an output of
    degree ``d`` must see strictly earlier units (``strict=True``: degree ``< d``), so
    output ``i`` never depends on :math:`x_i` or later coordinates.
    """
    in_degrees = torch.as_tensor(in_degrees)
    out_degrees = torch.as_tensor(out_degrees)
    if in_degrees.dim() != 1 or out_degrees.dim() != 1:
        raise ValueError("degrees must be 1-D tensors of integers, one per unit")
    dtype = torch.get_default_dtype()
    if strict:
        return (out_degrees[:, None] > in_degrees[None, :]).to(dtype)
    return (out_degrees[:, None] >= in_degrees[None, :]).to(dtype)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` of shape ``(out, in)``.

    A zero in the mask cuts a connection for good: the weight there never influences the
    output, so its gradient is zero too.
    """

    def __init__(self, in_features: int, out_features: int, mask, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(
                f"mask must have shape (out_features, in_features) = ({out_features}, "
                f"{in_features}), got {tuple(mask.shape)}"
            )
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must contain only 0 (cut) and 1 (connected)")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def _check_order(order, dim: int) -> Tensor:
    if order is None:
        return torch.arange(dim)
    order = torch.as_tensor(order)
    if order.dim() != 1 or order.dtype.is_floating_point:
        raise TypeError("order must be a 1-D sequence of integer feature indices")
    if sorted(order.tolist()) != list(range(dim)):
        raise ValueError(
            f"order must list each feature 0..{dim - 1} exactly once (the order in which they "
            f"are generated), got {order.tolist()}"
        )
    return order.long()


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation: an autoregressive MLP.

    Maps ``(batch, dim)`` to ``(batch, outputs_per_feature * dim)``: block ``k`` (columns
    ``k*dim`` to ``(k+1)*dim``) holds the ``k``-th parameter of every conditional, and the
    column for feature ``i`` depends only on the features generated before ``i`` in
    ``order`` (default ``0, 1, ..., dim-1``). Hidden degrees cycle through ``1..dim-1``
    so each conditional can see all earlier features. The last layer starts at zero.
    """

    def __init__(self, dim: int, outputs_per_feature: int = 2, hidden: int = 128,
                 num_hidden_layers: int = 2, order=None,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        dim = check_count(dim, "dim")
        outputs_per_feature = check_count(outputs_per_feature, "outputs_per_feature")
        hidden = check_count(hidden, "hidden")
        num_hidden_layers = check_count(num_hidden_layers, "num_hidden_layers")
        if dim < 1 or outputs_per_feature < 1:
            raise ValueError("MADE needs dim >= 1 and outputs_per_feature >= 1")
        if num_hidden_layers > 0 and hidden < dim - 1:
            raise ValueError(
                f"hidden={hidden} is too small for dim={dim}: a MADE needs at least dim - 1 = "
                f"{dim - 1} hidden units so every conditional can see all earlier features"
            )
        self.dim = dim
        self.outputs_per_feature = outputs_per_feature
        self.register_buffer("order", _check_order(order, dim))
        in_degrees = torch.empty(dim, dtype=torch.long)
        in_degrees[self.order] = torch.arange(1, dim + 1)
        self.register_buffer("in_degrees", in_degrees)
        hidden_degrees = torch.arange(hidden) % max(dim - 1, 1) + 1

        layers: list[nn.Module] = []
        previous = in_degrees
        for _ in range(num_hidden_layers):
            layers += [MaskedLinear(previous.numel(), hidden,
                                    autoregressive_mask(previous, hidden_degrees)),
                       activation()]
            previous = hidden_degrees
        out_degrees = in_degrees.repeat(outputs_per_feature)
        last = MaskedLinear(previous.numel(), out_degrees.numel(),
                            autoregressive_mask(previous, out_degrees, strict=True))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, outputs_per_feature={self.outputs_per_feature}"


class MaskedAutoregressive(Transform):
    r"""One MAF layer: an affine autoregressive transform with a MADE conditioner.

    .. math:: z_i = \bigl(x_i - \mu_i(x_{<i})\bigr) e^{-\alpha_i(x_{<i})}, \qquad
              \log\left|\det\frac{\partial z}{\partial x}\right| = -\sum_i \alpha_i

    ``forward`` (density) is one pass of ``self.conditioner``; ``inverse`` (sampling)
    runs it ``dim`` times, fixing one more coordinate per pass. The raw log-scale is
    soft-clamped to ``(-scale_limit, scale_limit)`` as in
    :class:`~flowkit.transforms.AffineCoupling`, and the zero-initialised last layer makes
    a new layer the identity. ``.inv`` turns it into an inverse autoregressive flow (IAF)
    layer: fast sampling, slow density.
    """

    def __init__(self, dim: int, hidden: int = 128, num_hidden_layers: int = 2, order=None,
                 scale_limit: float = 3.0, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        if not scale_limit > 0:
            raise ValueError(f"scale_limit must be positive, got {scale_limit}")
        self.conditioner = MADE(dim, 2, hidden, num_hidden_layers, order, activation)
        self.event_shape = (self.conditioner.dim,)
        self.scale_limit = float(scale_limit)

    @property
    def dim(self) -> int:
        return self.conditioner.dim

    @property
    def order(self) -> Tensor:
        return self.conditioner.order

    def mean_log_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, alpha)`` of every conditional, from one conditioner pass over ``x``."""
        mu, raw = self.conditioner(x).chunk(2, dim=1)
        alpha = self.scale_limit * torch.tanh(raw / self.scale_limit)
        return mu, alpha

    def forward(self, x):
        mu, alpha = self.mean_log_scale(x)
        return (x - mu) * torch.exp(-alpha), -sum_event(alpha)

    def inverse(self, z):
        # Pass k computes mu, alpha from a vector whose first k coordinates (in the order)
        # are already final, which is all that coordinate k needs: after dim passes every
        # coordinate is final, and the last pass's alpha is exactly the one at x.
        x = torch.zeros_like(z)
        for _ in range(self.dim):
            mu, alpha = self.mean_log_scale(x)
            x = mu + torch.exp(alpha) * z
        return x, sum_event(alpha)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale_limit={self.scale_limit}"


def MAF(dim: int, num_layers: int = 5, hidden: int = 128, num_hidden_layers: int = 2,
        permutation: str = "reverse", actnorm: bool = False, scale_limit: float = 3.0,
        activation: type[nn.Module] = nn.ReLU, seed: int = 0) -> Flow:
    """A masked autoregressive flow for vectors of size ``dim``.

    ``num_layers`` :class:`MaskedAutoregressive` layers with a reordering between
    consecutive ones (``permutation="reverse"``, or ``"random"`` for fixed random
    permutations drawn from ``seed``), so a coordinate that came first in one layer's
    order comes last in the next. ``actnorm=True`` adds an ActNorm before each layer.
    A new MAF is the identity map: its density is the base Gaussian.

    Density evaluation costs one conditioner pass per layer; sampling costs ``dim``
    passes per layer. Mirror of :func:`flowkit.RealNVP`, which pays one pass both ways.
    """
    dim = check_count(dim, "dim")
    num_layers = check_count(num_layers, "num_layers")
    if dim < 1:
        raise ValueError("MAF needs dim >= 1")
    if num_layers < 1:
        raise ValueError("MAF needs at least one layer")
    if permutation not in ("reverse", "random"):
        raise ValueError(f"permutation must be 'reverse' or 'random', got {permutation!r}")
    generator = torch.Generator().manual_seed(int(seed))
    layers: list[Transform] = []
    for i in range(num_layers):
        if i > 0:
            if permutation == "reverse":
                layers.append(Reverse(dim))
            else:
                layers.append(Permutation(torch.randperm(dim, generator=generator)))
        if actnorm:
            layers.append(ActNorm(dim))
        layers.append(MaskedAutoregressive(dim, hidden, num_hidden_layers,
                                           scale_limit=scale_limit, activation=activation))
    return Flow(layers, StandardNormal(dim))
