"""Jacobians by autograd, and a checker for any transform (including a learner's own)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_tensor
from .transforms import Transform

__all__ = ["jacobian", "log_abs_det_jacobian", "check_transform", "TransformCheck"]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def jacobian(fn: Callable, x: Tensor) -> Tensor:
    """Per-sample Jacobians of ``fn`` at each row of ``x``: shape ``(batch, D_out, D_in)``.

    ``fn`` maps a batch to a batch (a Transform's ``forward`` or ``inverse``, or any
    function; a returned ``(output, log_det)`` pair is reduced to its output). Image
    samples are flattened. Samples must not interact (no batch statistics), which holds
    for every flowkit transform once ActNorm is initialised.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.jacobian(fk.Affine(torch.tensor([2.0, 3.0])), torch.zeros(1, 2))
        tensor([[[2., 0.],
                 [0., 3.]]])
    """
    check_tensor(x, "x")
    batch = x.shape[0]
    x = x.detach()

    def summed(inputs: Tensor) -> Tensor:
        # Row b of the output depends only on row b of the input, so the Jacobian of the
        # batch sum holds every per-sample Jacobian at once.
        return _first(fn(inputs)).reshape(batch, -1).sum(dim=0)

    with torch.enable_grad():
        full = torch.autograd.functional.jacobian(summed, x)
    d_out = full.shape[0]
    return full.reshape(d_out, batch, -1).permute(1, 0, 2)


def log_abs_det_jacobian(fn: Callable, x: Tensor) -> Tensor:
    """``log|det J|`` of ``fn`` at each sample, by autograd and ``slogdet``: ``(batch,)``.

    Example:
        >>> import torch, flowkit as fk
        >>> fk.log_abs_det_jacobian(fk.Affine(torch.tensor([2.0, 3.0])), torch.zeros(1, 2))  # log 6
        tensor([1.7918])
    """
    jac = jacobian(fn, x)
    if jac.shape[1] != jac.shape[2]:
        raise ValueError(
            f"the Jacobian is {jac.shape[1]} x {jac.shape[2]}, not square: the map changes "
            "the number of dimensions, so it is not a bijection"
        )
    return torch.linalg.slogdet(jac).logabsdet


@dataclass
class TransformCheck:
    """What :func:`check_transform` found. Truthy when every check passed."""

    name: str
    inverse_error: float
    logdet_error: float
    inverse_logdet_error: float
    logdet_sum_error: float
    tolerance: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = (f"{self.name}: inverse error {self.inverse_error:.1e}, "
                f"log-det error {self.logdet_error:.1e} (forward) / "
                f"{self.inverse_logdet_error:.1e} (inverse)")
        if self.passed:
            return f"PASS  {head}"
        return "FAIL  " + head + "\n" + "\n".join(f"  - {p}" for p in self.problems)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def check_transform(transform: Transform, x: Tensor, tolerance: float = 1e-5,
                    context: Tensor | None = None) -> TransformCheck:
    """Check a transform against the definition of a flow layer, in float64.

    * ``inverse(forward(x))`` gives back ``x``;
    * ``forward``'s log-det equals autograd's ``log|det dz/dx|``;
    * ``inverse``'s log-det equals autograd's ``log|det dx/dz|``;
    * the two log-dets are negatives of each other.

    For a conditional transform or flow, ``context`` gives each sample its context (one
    row per sample, or one for all); every check then holds per context, the Jacobian
    being taken with respect to ``x`` at fixed context. Works on a deep copy, so the
    transform itself is untouched.

    Arguments:
        transform: any flowkit Transform or Flow, a learner's own included.
        x: sample inputs ``(batch, *event_shape)`` in the transform's domain.
        tolerance: the largest error allowed in each check.
        context: for a conditional transform, ``(batch, *context_shape)`` or one for all.

    Example:
        >>> import torch, flowkit as fk
        >>> print(fk.check_transform(fk.Tanh(), torch.zeros(3, 2)))
        PASS  Tanh: inverse error 0.0e+00, log-det error 0.0e+00 (forward) / 0.0e+00 (inverse)
    """
    if not isinstance(transform, Transform):
        raise TypeError(f"check_transform expects a flowkit Transform, got {type(transform).__name__}")
    check_tensor(x, "x", transform.event_shape)
    if transform.conditional:
        context = transform._check_context(context, x.shape[0])
    elif context is not None:
        raise TypeError(f"{type(transform).__name__} is not conditional: it takes no context")
    t = copy.deepcopy(transform).double()
    x64 = x.detach().double()
    name = type(transform).__name__
    if context is not None:
        context = context.detach()
        if context.dtype.is_floating_point:
            context = context.double()
        forward = lambda v: t.forward(v, context)  # noqa: E731
        inverse = lambda v: t.inverse(v, context)  # noqa: E731
    else:
        forward, inverse = t.forward, t.inverse
    with torch.no_grad():
        z, logdet_forward = forward(x64)
        x_back, logdet_inverse = inverse(z)
    auto_forward = log_abs_det_jacobian(forward, x64)
    auto_inverse = log_abs_det_jacobian(inverse, z)

    def worst(a: Tensor, b: Tensor) -> tuple[float, int]:
        diff = (a - b).abs().reshape(a.shape[0], -1).amax(dim=1)
        i = int(diff.argmax())
        return float(diff[i]), i

    inv_err, i_inv = worst(x_back, x64)
    fwd_err, i_fwd = worst(logdet_forward, auto_forward)
    back_err, i_back = worst(logdet_inverse, auto_inverse)
    sum_err, i_sum = worst(logdet_forward, -logdet_inverse)
    problems = []
    if inv_err > tolerance:
        problems.append(
            f"inverse(forward(x)) does not give back x: off by {inv_err:.3g} at sample {i_inv} "
            f"(x = {x64[i_inv].flatten()[:4].tolist()}, got {x_back[i_inv].flatten()[:4].tolist()})"
        )
    if fwd_err > tolerance:
        problems.append(
            f"forward's log|det| is wrong: sample {i_fwd} returned "
            f"{logdet_forward[i_fwd].item():.6g}, autograd's slogdet gives {auto_forward[i_fwd].item():.6g}"
        )
    if back_err > tolerance:
        problems.append(
            f"inverse's log|det| is wrong: sample {i_back} returned "
            f"{logdet_inverse[i_back].item():.6g}, autograd's slogdet gives {auto_inverse[i_back].item():.6g}"
        )
    if sum_err > tolerance:
        problems.append(
            f"forward and inverse log-dets should be negatives of each other; at sample {i_sum} "
            f"they are {logdet_forward[i_sum].item():.6g} and {logdet_inverse[i_sum].item():.6g}"
        )
    return TransformCheck(name, inv_err, fwd_err, back_err, sum_err, tolerance, problems)
