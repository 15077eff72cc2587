"""A flow: a chain of transforms plus a base distribution."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ._checks import as_event_shape, check_count, check_positive, check_tensor
from .transforms import Transform, sum_event

__all__ = ["StandardNormal", "Flow"]


class StandardNormal(nn.Module):
    r"""The standard Gaussian :math:`\mathcal N(0, I)` over samples of ``event_shape``.

    ``log_prob(z) = -\tfrac12 \lVert z\rVert^2 - \tfrac D2 \log 2\pi`` with ``D`` the number
    of entries in one sample.
    """

    def __init__(self, event_shape: int | Sequence[int]):
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        # A buffer so .to(device) / .double() move sampling along with the flow.
        self.register_buffer("_anchor", torch.zeros(()))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: the base density's event shape."""
        return as_event_shape(self.base.event_shape)

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        check_tensor(z, "z", self.event_shape)
        return -0.5 * sum_event(z * z) - 0.5 * self.num_dims * math.log(2 * math.pi)

    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of ``N(0, temperature^2 I)``."""
        n = check_count(n, "n")
        temperature = check_positive(temperature, "temperature")
        z = torch.randn((n, *self.event_shape), generator=generator,
                        dtype=self._anchor.dtype, device=self._anchor.device)
        return z * temperature

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"


class Flow(Transform):
    r"""A normalizing flow: transforms :math:`f_1, \dots, f_K` and a base density.

    ``forward`` runs data through :math:`f_1` first (normalizing direction) and returns
    the latent and the summed log-determinant, so

    .. math:: \log p(x) = \log p_Z(f_K \circ\dots\circ f_1(x))
              + \sum_k \log\left|\det \frac{\partial f_k}{\partial h_{k-1}}\right|

    ``event_shape`` is the shape of one data sample; it defaults to the base's (pass it
    when transforms change the shape, as a squeeze does).
    """

    def __init__(self, transforms: Iterable[Transform], base: nn.Module,
                 event_shape: int | Sequence[int] | None = None):
        super().__init__()
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(
                    f"Flow expects flowkit Transforms; item {i} is a {type(t).__name__}"
                )
        if not (hasattr(base, "log_prob") and hasattr(base, "sample")):
            raise TypeError("base must be a distribution with log_prob and sample, e.g. StandardNormal(2)")
        self.transforms = nn.ModuleList(transforms)
        self.base = base
        self.event_shape = as_event_shape(
            event_shape if event_shape is not None else base.event_shape
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: the base density's event shape."""
        return as_event_shape(self.base.event_shape)

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def forward(self, x):
        z = x
        total = x.new_zeros(x.shape[0])
        for t in self.transforms:
            z, log_abs_det = t(z)
            total = total + log_abs_det
        return z, total

    def inverse(self, z):
        x = z
        total = z.new_zeros(z.shape[0])
        for t in reversed(self.transforms):
            x, log_abs_det = t.inverse(x)
            total = total + log_abs_det
        return x, total

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of each sample in ``x``: shape ``(batch,)``."""
        z, log_abs_det = self.forward(x)
        return self.base.log_prob(z) + log_abs_det

    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples: base samples (scaled by ``temperature``) through the inverse."""
        n = check_count(n, "n")
        z = self.base.sample(n, temperature=temperature, generator=generator)
        if n == 0:
            return z.new_zeros((0, *self.event_shape))
        x, _ = self.inverse(z)
        return x

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """``[x, f_1(x), f_2(f_1(x)), ..., z]``: the data after each transform."""
        check_tensor(x, "x", self.event_shape)
        stages = [x]
        for t in self.transforms:
            stages.append(t(stages[-1])[0])
        return stages

    def inverse_stages(self, z: Tensor) -> list[Tensor]:
        """``[z, ..., x]``: a latent sample after each inverse transform, last to first."""
        stages = [z]
        for t in reversed(self.transforms):
            stages.append(t.inverse(stages[-1])[0])
        return stages

    def __len__(self) -> int:
        return len(self.transforms)
