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

from ._checks import check_count
from .flow import Flow, StandardNormal
from .linear import ActNorm, Permutation, Reverse
from .nets import MADE, MaskedLinear, autoregressive_mask
from .transforms import Transform, sum_event

__all__ = ["autoregressive_mask", "MaskedLinear", "MADE", "MaskedAutoregressive", "MAF"]


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

    Arguments:
        dim: the number of features ``D``.
        hidden, num_hidden_layers, activation: the :class:`~flowkit.nets.MADE` conditioner.
        order: the generation order (default ``0, 1, ..., D-1``).
        scale_limit: the soft bound on each log-scale.

    References:
        G. Papamakarios, T. Pavlakou, I. Murray. Masked Autoregressive Flow for Density
        Estimation (2017). https://arxiv.org/abs/1705.07057

    Example:
        >>> import torch, flowkit as fk
        >>> layer = fk.MaskedAutoregressive(3, hidden=8)
        >>> fk.check_transform(layer, torch.randn(4, 3)).passed
        True
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, alpha = self.mean_log_scale(x)
        return (x - mu) * torch.exp(-alpha), -sum_event(alpha)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
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


class MAF(Flow):
    """A masked autoregressive flow for vectors of size ``dim`` (Papamakarios et al., 2017).

    ``num_layers`` :class:`MaskedAutoregressive` layers with a reordering between
    consecutive ones (``permutation="reverse"``, or ``"random"`` for fixed random
    permutations drawn from ``seed``), so a coordinate that came first in one layer's
    order comes last in the next. ``actnorm=True`` adds an ActNorm before each layer.
    A new MAF is the identity map: its density is the base Gaussian.

    Density evaluation costs one conditioner pass per layer; sampling costs ``dim``
    passes per layer. Mirror of :class:`flowkit.RealNVP`, which pays one pass both ways.

    Arguments:
        dim: the size ``D`` of one sample; data has shape ``(batch, D)``.
        num_layers: the number of autoregressive layers.
        hidden, num_hidden_layers, activation: each layer's :class:`~flowkit.nets.MADE`.
        permutation: ``"reverse"`` or ``"random"``, the reordering between layers.
        actnorm: add an :class:`~flowkit.ActNorm` before each layer.
        scale_limit: the soft bound on each log-scale.
        seed: seeds the random permutations.

    References:
        G. Papamakarios, T. Pavlakou, I. Murray. Masked Autoregressive Flow for Density
        Estimation (2017). https://arxiv.org/abs/1705.07057

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.MAF(3, num_layers=2, hidden=16)
        >>> flow.log_prob(torch.zeros(1, 3))  # a new MAF is N(0, I)
        tensor([-2.7568], grad_fn=<AddBackward0>)
    """

    def __init__(self, dim: int, num_layers: int = 5, hidden: int = 128, num_hidden_layers: int = 2,
                 permutation: str = "reverse", actnorm: bool = False, scale_limit: float = 3.0,
                 activation: type[nn.Module] = nn.ReLU, seed: int = 0):
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
        super().__init__(layers, StandardNormal(dim))
