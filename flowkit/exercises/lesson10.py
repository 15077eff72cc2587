"""Exercises for lesson 10: continuous flows and flow matching.

1. ``euler_step`` -- one Euler step of ``dx/dt = v(x, t)`` and its log-det to first order;
2. ``divergence`` -- the divergence of a field by autograd (a linear field first);
3. ``fm_target`` -- the point on the straight path and the velocity flow matching regresses on.
"""

from __future__ import annotations

import torch
from torch import nn

from ..continuous import exact_divergence
from ..jacobian import jacobian
from . import _base
from ._base import Exercise, call, diagnose

__all__ = ["euler_step", "divergence", "fm_target", "EXERCISES", "summary"]


class _LinearField(nn.Module):
    """v(x, t) = A x + b (t is ignored): its divergence is trace(A) everywhere."""

    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)

    def forward(self, x, t):
        return x @ self.A.T + self.b


class _SwirlField(nn.Module):
    """A nonlinear, time-dependent field whose Jacobian differs from point to point."""

    def forward(self, x, t):
        a, b = x[:, :1], x[:, 1:]
        return torch.cat([torch.sin(b) * (1 + t) - 0.5 * a ** 3, a * b * t + torch.tanh(b)], dim=1)


def _points(n: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _is_pair(got, what: str) -> list[str]:
    if not isinstance(got, tuple) or len(got) != 2:
        return [f"{what} should return a pair of tensors (two values separated by a comma), "
                f"got {type(got).__name__}"]
    return []


# ----------------------------------------------------------------------------------
# 1. One Euler step and its log-det
# ----------------------------------------------------------------------------------


def _reference_euler_step(field, x, t, h):
    v, div = exact_divergence(field, x, t)
    return x + h * v, h * div


def _check_euler_step(fn) -> list[str]:
    problems = []
    field = _SwirlField()
    for h, seed in ((0.1, 1), (0.25, 2)):
        x = _points(seed=seed)
        t = torch.full((x.shape[0], 1), 0.3, dtype=torch.float64)
        got = call(fn, field, x.clone(), t, h, name="euler_step")
        problems += _is_pair(got, "euler_step")
        if problems:
            return problems
        x_next, log_det = got
        v, div = exact_divergence(field, x, t)
        problems += diagnose(x_next, x + h * v, [
            (x - h * v, "the step goes the wrong way: x moves along +v, so x + h * v"),
            (h * v, "that is the change h * v; the new point is x + h * v"),
            (x + v, "the velocity must be scaled by the step size: x + h * v"),
        ], "the new point", hint="the Euler step is x + h * v(x, t)")
        exact = torch.linalg.slogdet(torch.eye(2, dtype=torch.float64) + h * jacobian(
            lambda inputs: field(inputs, t), x)).logabsdet
        problems += diagnose(log_det, h * div, [
            (-h * div, "the sign is flipped: moving along a field that spreads out (div > 0) "
                       "increases volume, so log|det| = +h * div v"),
            (div, "multiply the divergence by the step size h"),
            (exact, "that is the exact log|det(I + h dv/dx)|, good work; the exercise asks for "
                    "its first-order form h * div v, the term that becomes the integral"),
        ], "the log-det", hint="the log-det of x + h v(x) is h * div v(x) to first order in h")
        if problems:
            return problems
    return problems


euler_step = Exercise(
    "euler_step", "one Euler step and its log-det", _check_euler_step, _reference_euler_step,
    hints=[
        "exact_divergence(field, x, t) returns the pair (v, div): the velocity and its divergence.",
        "The new point is x + h * v; the log-det of that map is log|det(I + h dv/dx)|, which is "
        "h * trace(dv/dx) = h * div v plus terms of order h^2.",
        "v, div = exact_divergence(field, x, t); return x + h * v, h * div",
    ])


# ----------------------------------------------------------------------------------
# 2. The divergence by autograd
# ----------------------------------------------------------------------------------


def _reference_divergence(field, x, t):
    x = x.detach().requires_grad_(True)
    v = field(x, t)
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        (grad,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)
        total = total + grad[:, i]
    return total


def _check_divergence(fn) -> list[str]:
    A = torch.tensor([[0.5, -1.2], [2.0, -1.5]], dtype=torch.float64)
    cases = [("the linear field v = A x + b", _LinearField(A, [0.3, -0.7])),
             ("a nonlinear field", _SwirlField())]
    for what, field in cases:
        x = _points(seed=3)
        t = torch.full((x.shape[0], 1), 0.6, dtype=torch.float64)
        got = call(fn, field, x.clone(), t, name="divergence")
        if isinstance(got, torch.Tensor):
            got = got.detach()
        jac = jacobian(lambda inputs: field(inputs, t), x)
        expected = jac.diagonal(dim1=1, dim2=2).sum(dim=1)
        problems = diagnose(got, expected, [
            (jac.diagonal(dim1=1, dim2=2), "sum the diagonal entries dv_i/dx_i over i: one "
                                           "number per sample, shape (batch,)"),
            (jac.sum(dim=(1, 2)), "that sums every entry of the Jacobian; the divergence uses only "
                                  "the diagonal ones, dv_i/dx_i"),
            (expected.sum().reshape(()), "keep one value per sample: shape (batch,), not a sum "
                                         "over the batch"),
            (-expected, "the sign is flipped: div v = + sum_i dv_i/dx_i"),
        ], f"the divergence of {what}",
            hint="for the linear field every sample's divergence is trace(A)" if "linear" in what else "")
        if problems:
            return problems
    return []


divergence = Exercise(
    "divergence", "the divergence of a field (a linear one first)", _check_divergence,
    _reference_divergence,
    hints=[
        "div v = sum_i dv_i/dx_i. For v = A x + b that is trace(A), the same at every point.",
        "Make x require grad, compute v = field(x, t), and for each coordinate i take "
        "torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i]: summing over the batch "
        "is fine because sample b's output depends only on sample b's input.",
        "Add those columns up: a tensor of shape (batch,).",
    ])


# ----------------------------------------------------------------------------------
# 3. The flow-matching target
# ----------------------------------------------------------------------------------


def _reference_fm_target(x, z, t):
    x_t = (1 - t) * z + t * x
    return x_t, x - z


def _check_fm_target(fn) -> list[str]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64) + 2
    z = torch.randn(12, 2, generator=g, dtype=torch.float64)
    t = torch.rand(12, 1, generator=g, dtype=torch.float64)
    got = call(fn, x.clone(), z.clone(), t.clone(), name="fm_target")
    problems = _is_pair(got, "fm_target")
    if problems:
        return problems
    x_t, target = got
    problems += diagnose(x_t, (1 - t) * z + t * x, [
        ((1 - t) * x + t * z, "the endpoints are swapped: at t = 0 the path is at the noise z, "
                              "at t = 1 at the data x"),
        (z + t * x, "the noise must fade as t grows: (1 - t) * z + t * x"),
    ], "x_t", hint="x_t = (1 - t) z + t x")
    problems += diagnose(target, x - z, [
        (z - x, "the velocity points the wrong way: the path moves from z (t = 0) to x (t = 1), "
                "so dx_t/dt = x - z"),
        (x, "the derivative of (1 - t) z + t x in t also has a -z term"),
        (x - (1 - t) * z - t * x, "that is x - x_t; the path's velocity is its derivative in t, x - z"),
    ], "the target velocity", hint="differentiate x_t = (1 - t) z + t x with respect to t")
    return problems


fm_target = Exercise(
    "fm_target", "the flow-matching target for the straight path", _check_fm_target,
    _reference_fm_target,
    hints=[
        "The path starts at the noise z at t = 0 and ends at the data x at t = 1, in a straight line.",
        "x_t = (1 - t) z + t x; its velocity is d x_t / dt.",
        "return (1 - t) * z + t * x, x - z",
    ])


EXERCISES = [euler_step, divergence, fm_target]


def summary():
    """Which of this lesson's exercises passed in this session."""
    return _base.summary(EXERCISES)
