"""The Transform base class and its checks.

One direction convention everywhere in flowkit:

* ``forward(x) -> (z, log|det dz/dx|)`` is the *normalizing* direction, data to latent;
* ``inverse(z) -> (x, log|det dx/dz|)`` is the *generative* direction, latent to data.

The two log-determinants of one transform at matching points are negatives of each
other, because the Jacobian of the inverse is the inverse of the Jacobian.
Every ``log_abs_det`` is summed over the event dimensions, so it has shape ``(batch,)``.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Callable

import torch
from torch import Tensor, nn

from ._checks import check_context, check_tensor
from .errors import NonFiniteError

__all__ = ["Transform", "Inverse", "sum_event", "CHECK_MODE"]


def sum_event(t: Tensor) -> Tensor:
    """Sum over every dimension but the batch one: ``(batch, ...) -> (batch,)``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


# How much a transform called inside a chain checks. "top": a call from outside any chain,
# every check. "fast": inside a chain's loop, whose own call checked its input for NaN and will
# check its output: each layer still checks types and shapes, but skips the finiteness
# reductions (they cost several percent of a training step). "full": a chain re-running
# its layers to name the one that failed: every check in every layer.
CHECK_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("flowkit_check_mode", default="top")


def _check_output(transform: "Transform", out, inputs: Tensor, direction: str, context=None,
                  finite: bool = True) -> None:
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
    if finite and y.numel() and not (torch.isfinite(y).all() and torch.isfinite(log_abs_det).all()):
        locate = getattr(transform, "_locate_failure", None)
        if locate is not None:  # a chain names the layer that failed, if it can
            locate(direction, inputs, context)
        raise NonFiniteError(
            f"{name}.{direction} produced NaN or infinite values from finite inputs "
            f"(input range [{inputs.min().item():.3g}, {inputs.max().item():.3g}]); "
            "the input may be outside the transform's domain or the parameters have diverged"
        )


def _checked(method: Callable, direction: str) -> Callable:
    """Wrap a subclass's forward/inverse with input, context and output checks."""
    arg = "x" if direction == "forward" else "z"

    @functools.wraps(method)
    def wrapper(self, inputs, context=None, **options):
        # options: keyword arguments a subclass adds (a ContinuousFlow's steps=, solver=)
        name = type(self).__name__
        finite = CHECK_MODE.get() != "fast"
        # forward takes data (event_shape); inverse takes latents, whose shape can differ (a Flow
        # whose transforms reshape says so through latent_shape).
        shape = self.event_shape if direction == "forward" else self.latent_shape
        check_tensor(inputs, f"{name}.{direction} input {arg}", shape, finite=finite)
        if self.conditional:
            context = self._check_context(context, inputs.shape[0])
            out = method(self, inputs, context, **options)
        else:
            if context is not None:
                raise TypeError(
                    f"{name} is not conditional: it takes no context, but context= was given"
                )
            out = method(self, inputs, **options)
        _check_output(self, out, inputs, direction, context, finite=finite)
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

    Example:
        A layer of your own, checked against autograd:

        >>> import torch, flowkit as fk
        >>> class Cube(fk.Transform):
        ...     def forward(self, x):  # z = x^3 + x, dz/dx = 3x^2 + 1
        ...         return x ** 3 + x, torch.log(3 * x ** 2 + 1).sum(dim=1)
        ...     def inverse(self, z):  # Newton's method on x^3 + x - z
        ...         x = z.clone()
        ...         for _ in range(50):
        ...             x = x - (x ** 3 + x - z) / (3 * x ** 2 + 1)
        ...         return x, -torch.log(3 * x ** 2 + 1).sum(dim=1)
        >>> fk.check_transform(Cube(), torch.randn(4, 2)).passed
        True

        A conditional one: its shift is the context.

        >>> class Shift(fk.Transform):
        ...     conditional = True
        ...     def forward(self, x, context):
        ...         return x - context, x.new_zeros(x.shape[0])
        ...     def inverse(self, z, context):
        ...         return z + context, z.new_zeros(z.shape[0])
        >>> flow = fk.Flow([Shift()], fk.StandardNormal(1), context_shape=(1,))
        >>> flow.sample(3, context=torch.tensor([100.0])).mean() > 90
        tensor(True)
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

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.conditional:
            return self.transform.inverse(x, context)
        return self.transform.inverse(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.conditional:
            return self.transform.forward(z, context)
        return self.transform.forward(z)


# The families of layers live in their own modules; their names stay importable from here.
from .elementwise import Affine, Exp, Log, Logit, Sigmoid, SinhArcsinh, Tanh  # noqa: E402
from .linear import ActNorm, Linear, Permutation, Reverse  # noqa: E402
from .nets import MLP, ConvNet  # noqa: E402
from .couplings import (  # noqa: E402
    AdditiveCoupling, AffineCoupling, SplineCoupling, alternating_mask, channel_mask, checkerboard_mask,
)
