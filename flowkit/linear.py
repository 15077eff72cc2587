"""Linear maps of the features: a full matrix, permutations, and ActNorm."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .elementwise import _as_param, _store
from .transforms import Transform

__all__ = ["Linear", "Permutation", "Reverse", "ActNorm"]


class Linear(Transform):
    r"""``z = x A^T + b`` for vectors ``x`` of size ``D``; :math:`\log|\det| = \log|\det A|`.

    Give either ``matrix`` (a D x D matrix) or ``dim`` (starts at the identity).
    A (numerically) singular matrix folds space onto a lower-dimensional set and is
    refused with a ``ValueError``.

    Arguments:
        matrix: an invertible ``(D, D)`` matrix :math:`A`.
        bias: a ``(D,)`` offset :math:`b` (default zero).
        dim: instead of ``matrix``, start at the ``D x D`` identity.
        learnable: make ``matrix`` and ``bias`` parameters (the default).

    Example:
        >>> import torch, flowkit as fk
        >>> t = fk.Linear([[2.0, 0.0], [1.0, 1.0]], learnable=False)
        >>> t(torch.tensor([[1.0, 1.0]]))  # log|det A| = log 2
        (tensor([[2., 2.]]), tensor([0.6931]))
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_abs_det = self._log_abs_det_checked(self.matrix)
        z = x @ self.matrix.T + self.bias
        return z, log_abs_det.expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_abs_det = self._log_abs_det_checked(self.matrix)
        x = torch.linalg.solve(self.matrix, (z - self.bias).T).T
        return x, -log_abs_det.expand(z.shape[0])


class Permutation(Transform):
    """Reorder features (dimension 1: vector entries or image channels); log|det| = 0.

    Arguments:
        permutation: output feature ``i`` is input feature ``permutation[i]``.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Permutation([2, 0, 1])(torch.tensor([[10.0, 20.0, 30.0]]))
        (tensor([[30., 10., 20.]]), tensor([0.]))
    """

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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_features(x)
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check_features(z)
        return z[:, self.inverse_permutation], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """Reverse the order of ``num_features`` features.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.Reverse(3)(torch.tensor([[1.0, 2.0, 3.0]]))[0]
        tensor([[3., 2., 1.]])
    """

    def __init__(self, num_features: int):
        super().__init__(torch.arange(num_features - 1, -1, -1))


class ActNorm(Transform):
    r"""Per-feature affine normalisation with data-dependent initialisation (Glow).

    ``z = (x - loc) * exp(-log_scale)``, per feature along dimension 1. On the first
    forward call with at least two samples, ``loc`` and ``log_scale`` are set from that
    batch so its output has zero mean and unit variance per feature: training starts well
    conditioned. A batch of one sample has no spread to measure, so it leaves the layer
    uninitialised (the identity) and the next larger batch initialises it.

    Arguments:
        num_features: the size of dimension 1 (vector entries or image channels).

    References:
        D. P. Kingma, P. Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions
        (2018). https://arxiv.org/abs/1807.03039

    Example:
        >>> import torch, flowkit as fk
        >>> norm = fk.ActNorm(2)
        >>> z, _ = norm(torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
        >>> z
        tensor([[-0.7071, -0.7071],
                [ 0.7071,  0.7071]], grad_fn=<MulBackward0>)
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc = self._view(self.loc, x)
        if not self.initialized and x.shape[0] > 1:
            self._initialize(x)
        z = (x - loc) * torch.exp(-self._view(self.log_scale, x))
        return z, self._log_abs_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * torch.exp(self._view(self.log_scale, z)) + self._view(self.loc, z)
        return x, -self._log_abs_det(z)
