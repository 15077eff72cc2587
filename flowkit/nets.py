"""Networks that compute a layer's parameters (conditioners).

Each one's last layer starts at zero, so a new coupling or autoregressive layer is the
identity map and a new flow starts exactly at its base distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ._checks import check_count

__all__ = ["MLP", "ConvNet", "ResidualBlock", "ResNetConditioner", "autoregressive_mask",
           "MaskedLinear", "MADE"]


class MLP(nn.Sequential):
    """A plain multilayer perceptron whose last layer starts at zero.

    A zero last layer makes a new coupling layer the identity map, so a freshly built
    flow starts exactly at its base distribution.

    Arguments:
        in_features, out_features: the sizes of one input and one output vector.
        hidden: the width of each hidden layer.
        num_hidden_layers: how many hidden layers.
        activation: the nonlinearity class between layers.

    Example:
        >>> import torch, flowkit as fk
        >>> net = fk.MLP(2, 4, hidden=8)
        >>> net(torch.ones(3, 2))  # zero at the start
        tensor([[0., 0., 0., 0.],
                [0., 0., 0., 0.],
                [0., 0., 0., 0.]], grad_fn=<AddmmBackward0>)
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
    """A small 3x3 convolutional network for image couplings; last layer starts at zero.

    Arguments:
        in_channels, out_channels: channels of one input and one output image.
        hidden: channels of each hidden layer.
        num_hidden_layers: how many hidden layers.
        activation: the nonlinearity class between layers.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.ConvNet(1, 2, hidden=4)(torch.ones(1, 1, 4, 4)).shape
        torch.Size([1, 2, 4, 4])
    """

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

    Arguments:
        in_channels, out_channels: channels of the kept image and of the output.
        hidden: channels inside the network.
        num_blocks: how many :class:`ResidualBlock` s.
        extra: fixed ``(k, H, W)`` channels appended to the input.
        spatial: ``(H, W)`` for the learnable per-position bias (``None``: none).
        dropout: dropout rate inside the blocks (training only).

    Example:
        >>> import torch
        >>> from flowkit.nets import ResNetConditioner
        >>> ResNetConditioner(1, 2, hidden=8, spatial=(4, 4))(torch.ones(3, 1, 4, 4)).abs().max()
        tensor(0., grad_fn=<MaxBackward1>)
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


def autoregressive_mask(in_degrees: Tensor, out_degrees: Tensor, strict: bool = False) -> Tensor:
    r"""The MADE connectivity mask between two layers, shape ``(out, in)``.

    Every unit carries a *degree*: input ``j`` has the position of coordinate ``j`` in the
    autoregressive order (1..D), a hidden unit the largest position it may depend on.
    A hidden unit of degree ``d`` may connect to inputs of degree ``<= d``; an output of
    degree ``d`` must see strictly earlier units (``strict=True``: degree ``< d``), so
    output ``i`` never depends on :math:`x_i` or later coordinates.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.autoregressive_mask(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]), strict=True)
        tensor([[0., 0., 0.],
                [1., 0., 0.],
                [1., 1., 0.]])
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

    Example:
        >>> import torch, flowkit as fk
        >>> layer = fk.MaskedLinear(2, 2, mask=[[1, 0], [1, 1]])
        >>> with torch.no_grad():
        ...     _ = layer.weight.fill_(1.0), layer.bias.zero_()
        >>> layer(torch.tensor([[1.0, 2.0]]))  # output 0 cannot see input 1
        tensor([[1., 3.]], grad_fn=<AddmmBackward0>)
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

    Arguments:
        dim: the number of features ``D``.
        outputs_per_feature: how many parameters each conditional needs.
        hidden, num_hidden_layers, activation: the masked MLP.
        order: the generation order of the features (default ``0, 1, ..., D-1``).

    References:
        M. Germain, K. Gregor, I. Murray, H. Larochelle. MADE: Masked Autoencoder for
        Distribution Estimation (2015). https://arxiv.org/abs/1502.03509

    Example:
        >>> import torch, flowkit as fk
        >>> made = fk.MADE(3, outputs_per_feature=2, hidden=8)
        >>> made(torch.randn(5, 3)).shape
        torch.Size([5, 6])
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
