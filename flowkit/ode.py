r"""Fixed-step ODE solvers and divergences for continuous flows.

:func:`odeint` integrates :math:`dy/dt = f(t, y)` from ``t0`` to ``t1`` in ``steps`` equal
steps of Euler (order 1), midpoint (order 2) or classical Runge-Kutta (order 4); the state
may be a tuple of tensors, so a density's log-det integral rides along with the points.
:func:`exact_divergence` and :func:`hutchinson_divergence` give
:math:`\operatorname{div} v = \operatorname{tr}(\partial v / \partial x)` exactly or as
Hutchinson's unbiased estimate.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_count

__all__ = ["SOLVERS", "DIVERGENCES", "odeint", "exact_divergence", "hutchinson_divergence"]

SOLVERS = ("euler", "midpoint", "rk4")
DIVERGENCES = ("exact", "hutchinson")


# ----------------------------------------------------------------------------------
# Fixed-step solvers. ``f(t, y)`` returns dy/dt; ``y`` is a tuple of tensors so the
# log-det can ride along with the state.
# ----------------------------------------------------------------------------------


def _add(y: tuple, k: tuple, h: float) -> tuple:
    """``y + h * k`` for tuples of tensors."""
    return tuple(a + h * b for a, b in zip(y, k))


def _euler_step(f, t: float, y: tuple, h: float) -> tuple:
    return _add(y, f(t, y), h)


def _midpoint_step(f, t: float, y: tuple, h: float) -> tuple:
    k1 = f(t, y)
    return _add(y, f(t + h / 2, _add(y, k1, h / 2)), h)


def _rk4_step(f, t: float, y: tuple, h: float) -> tuple:
    k1 = f(t, y)
    k2 = f(t + h / 2, _add(y, k1, h / 2))
    k3 = f(t + h / 2, _add(y, k2, h / 2))
    k4 = f(t + h, _add(y, k3, h))
    slope = tuple((a + 2 * b + 2 * c + d) / 6 for a, b, c, d in zip(k1, k2, k3, k4))
    return _add(y, slope, h)


_STEPPERS = {"euler": _euler_step, "midpoint": _midpoint_step, "rk4": _rk4_step}


def _check_solver(solver) -> str:
    if solver not in _STEPPERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, got {solver!r}")
    return solver


def _check_steps(steps) -> int:
    steps = check_count(steps, "steps")
    if steps == 0:
        raise ValueError("steps must be at least 1 (the number of solver steps from t=0 to t=1)")
    return steps


def odeint(f: Callable, y0, t0: float, t1: float, steps: int, solver: str = "rk4",
           return_path: bool = False):
    """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` in ``steps`` equal steps.

    ``y0`` is a tensor or a tuple of tensors (then ``f`` takes and returns tuples).
    ``t1 < t0`` integrates backwards in time. Returns the state at ``t1``, or with
    ``return_path=True`` the list of states at every step (``steps + 1`` of them).
    """
    steps, stepper = _check_steps(steps), _STEPPERS[_check_solver(solver)]
    single = isinstance(y0, Tensor)
    fn = (lambda t, y: (f(t, y[0]),)) if single else f
    y = (y0,) if single else tuple(y0)
    h = (t1 - t0) / steps
    path = [y]
    for i in range(steps):
        y = stepper(fn, t0 + i * h, y, h)
        if return_path:
            path.append(y)
    if return_path:
        return [p[0] for p in path] if single else path
    return y[0] if single else y


# ----------------------------------------------------------------------------------
# Divergence of a velocity field
# ----------------------------------------------------------------------------------


def _time_column(t: float, like: Tensor) -> Tensor:
    return torch.full((like.shape[0], 1), float(t), dtype=like.dtype, device=like.device)


def _grad_or_zero(outputs: Tensor, inputs: Tensor, grad_outputs: Tensor, create_graph: bool) -> Tensor:
    if not outputs.requires_grad:  # a field that ignores x has zero divergence
        return torch.zeros_like(inputs)
    (grad,) = torch.autograd.grad(outputs, inputs, grad_outputs, create_graph=create_graph,
                                  allow_unused=True)
    return torch.zeros_like(inputs) if grad is None else grad


def exact_divergence(field: Callable, x: Tensor, t: Tensor,
                     create_graph: bool = False) -> tuple[Tensor, Tensor]:
    r"""``(v, div v)`` at each sample, the divergence exactly: :math:`\sum_i \partial v_i/\partial x_i`.

    The batch is repeated once per coordinate and one backward pass takes, for copy
    ``i``, the derivative of ``v_i``: ``D`` forward rows per sample, one backward pass.
    """
    batch, dims = x.shape[0], math.prod(x.shape[1:])
    with torch.enable_grad():
        x_rep = x.repeat(dims, *([1] * (x.dim() - 1)))
        if not x_rep.requires_grad:
            x_rep.requires_grad_(True)
        v_rep = _check_field_output(field(x_rep, t.repeat(dims, 1)), x_rep)
        # copy i (rows i*batch .. (i+1)*batch) picks out coordinate i
        picks = torch.eye(dims, dtype=x.dtype, device=x.device).repeat_interleave(batch, dim=0)
        picks = picks.reshape(v_rep.shape)
        grad = _grad_or_zero(v_rep, x_rep, picks, create_graph)
    div = (grad * picks).reshape(dims * batch, -1).sum(dim=1).reshape(dims, batch).sum(dim=0)
    return v_rep[:batch], div


def hutchinson_divergence(field: Callable, x: Tensor, t: Tensor, noise: Tensor,
                          create_graph: bool = False) -> tuple[Tensor, Tensor]:
    r"""``(v, estimate)``: Hutchinson's unbiased :math:`\epsilon^\top (\partial v/\partial x)\,\epsilon`.

    With :math:`\mathbb E[\epsilon\epsilon^\top] = I` its mean is the trace of the Jacobian,
    the divergence; one backward pass, whatever the dimension.
    """
    with torch.enable_grad():
        x_in = x if x.requires_grad else x.detach().requires_grad_(True)
        v = _check_field_output(field(x_in, t), x_in)
        grad = _grad_or_zero(v, x_in, noise, create_graph)
    return v, (grad * noise).reshape(x.shape[0], -1).sum(dim=1)


def _check_field_output(v, x: Tensor) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"the field must return a tensor dx/dt, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"the field returned shape {tuple(v.shape)} for x of shape "
                         f"{tuple(x.shape)}; dx/dt must have the shape of x")
    return v
