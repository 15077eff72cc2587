"""Input validation shared by every public entry point.

Errors name what was expected and what arrived, so a learner never meets a bare shape
error from deep inside torch or a silent NaN.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

from .errors import NonFiniteError

__all__ = ["as_event_shape", "check_tensor", "check_count", "check_positive", "check_context"]


def as_event_shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    """Normalise ``3`` or ``(1, 8, 8)`` to a tuple of positive ints."""
    if isinstance(event_shape, bool):
        raise TypeError("event_shape must be an int or a tuple of ints, got a bool")
    if isinstance(event_shape, numbers.Integral):
        event_shape = (int(event_shape),)
    try:
        shape = tuple(int(s) for s in event_shape)
    except TypeError:
        raise TypeError(
            f"event_shape must be an int or a tuple of ints, got {event_shape!r}"
        ) from None
    if any(s <= 0 for s in shape):
        raise ValueError(f"event_shape entries must be positive, got {shape}")
    return shape


def check_tensor(
    x,
    name: str = "x",
    event_shape: tuple[int, ...] | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a batched floating-point tensor with the right event shape.

    Returns ``x`` unchanged, so it can be used inline.
    """
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a torch.Tensor, got a NumPy array; convert it with "
            f"torch.as_tensor({name}, dtype=torch.float32)"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            f"use {name}.float() (integer pixel levels need dequantizing first, "
            "see flowkit.data.dequantize)"
        )
    if x.dim() == 0:
        raise ValueError(
            f"{name} must have a batch dimension: got a scalar, expected shape (batch, ...)"
        )
    if event_shape is not None:
        event_shape = tuple(event_shape)
        if tuple(x.shape) == event_shape and len(event_shape) > 0 and x.dim() == len(event_shape):
            # The most common slip: one sample without its batch dimension.
            raise ValueError(
                f"{name} is missing its batch dimension: got shape {tuple(x.shape)}, "
                f"expected (batch, {', '.join(map(str, event_shape))}); "
                f"use {name}.unsqueeze(0) for a single sample"
            )
        if tuple(x.shape[1:]) != event_shape:
            want = ", ".join(["batch", *map(str, event_shape)])
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, expected ({want}): "
                f"event shape {tuple(x.shape[1:])} does not match {event_shape}"
            )
    if finite and x.numel() > 0 and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise NonFiniteError(f"{name} contains {bad} NaN or infinite value(s); expected finite values")
    return x


def check_count(n, name: str = "n") -> int:
    """A non-negative integer count (sample sizes, steps)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        if isinstance(n, torch.Tensor) and n.dim() == 0 and not n.dtype.is_floating_point:
            n = int(n)
        else:
            raise TypeError(f"{name} must be an int, got {type(n).__name__} ({n!r})")
    if n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n}")
    return int(n)


def check_positive(value, name: str) -> float:
    """A finite, strictly positive real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            value = float(value)
        else:
            raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["batch", *map(str, shape)]) + ")"


def check_context(context, batch: int, context_shape: tuple[int, ...] | None = None,
                  classes: int | None = None, who: str = "this flow") -> torch.Tensor:
    """Check a context and give it one row per sample: ``(batch, *context_shape)``.

    ``context_shape`` is the shape of one context (``None``: any shape, but batched).
    ``classes`` set means integer class labels in ``[0, classes)``, one per sample.
    A context with batch size 1, or a single unbatched one (shape ``context_shape``,
    e.g. a 0-d label), is repeated for all ``batch`` samples.
    """
    if classes is not None:
        context_shape = ()
    wanted = "(batch,) integer class labels" if classes is not None else (
        f"shape {_shape_text(context_shape)}" if context_shape is not None else "shape (batch, ...)")
    if context is None:
        raise TypeError(f"{who} is conditional: pass context= of {wanted}")
    if isinstance(context, np.ndarray):
        dtype = "torch.long" if classes is not None else "torch.float32"
        raise TypeError(
            f"context must be a torch.Tensor, got a NumPy array; convert it with "
            f"torch.as_tensor(context, dtype={dtype})"
        )
    if not isinstance(context, torch.Tensor):
        hint = " (did you mean temperature=...?)" if isinstance(context, float) else ""
        raise TypeError(f"context must be a torch.Tensor of {wanted}, got {type(context).__name__}{hint}")
    if classes is not None:
        if context.dtype.is_floating_point or context.dtype.is_complex or context.dtype == torch.bool:
            raise TypeError(
                f"context must hold integer class labels in [0, {classes}), got dtype {context.dtype}; "
                "use context.long()"
            )
    elif not context.dtype.is_floating_point:
        raise TypeError(f"context must be a floating-point tensor, got dtype {context.dtype}; use context.float()")
    if context_shape is not None:
        context_shape = tuple(context_shape)
        if context.dim() == len(context_shape) and tuple(context.shape) == context_shape:
            context = context.unsqueeze(0)  # one unbatched context: the same for every sample
        elif context.dim() != len(context_shape) + 1 or tuple(context.shape[1:]) != context_shape:
            raise ValueError(
                f"context has shape {tuple(context.shape)}, expected {wanted} "
                "(or one context without the batch dimension)"
            )
    elif context.dim() == 0:
        raise ValueError(f"context must have a batch dimension: got a scalar, expected {wanted}")
    if context.shape[0] != batch:
        if context.shape[0] != 1:
            raise ValueError(
                f"context has batch size {context.shape[0]} but there are {batch} samples: "
                "pass one context per sample, or a single one for all"
            )
        context = context.expand(batch, *context.shape[1:])
    if classes is not None:
        if context.numel() and (context.min() < 0 or context.max() >= classes):
            raise ValueError(
                f"context labels must lie in [0, {classes}), got values in "
                f"[{context.min().item()}, {context.max().item()}]"
            )
    elif context.numel() and not torch.isfinite(context).all():
        bad = (~torch.isfinite(context)).sum().item()
        raise NonFiniteError(f"context contains {bad} NaN or infinite value(s); expected finite values")
    return context
