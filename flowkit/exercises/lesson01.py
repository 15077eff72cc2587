"""Exercises for lesson 01: the change-of-variables formula in one dimension.

In every exercise ``x ~ N(0, 1)`` and ``y = f(x)``; the learner writes ``log p_Y(y)``, a
log-derivative, or a Flow. Each checker compares against the exact answer in float64 and,
when the answer is wrong, tries the usual slips (a missing log-derivative term, a flipped
sign, the map applied in the wrong direction) to say which one it was.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

import flowkit as fk  # the reference solutions are written as a learner writes them

from ..flow import Flow
from . import _base
from ._base import Exercise, call, diagnose

__all__ = ["affine_density", "sinh_log_derivative", "sinh_affine_density", "tanh_flow",
           "EXERCISES", "summary"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _log_normal(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * x * x - _HALF_LOG_2PI


def _log_cosh(u: torch.Tensor) -> torch.Tensor:
    a = u.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


# ----------------------------------------------------------------------------------
# Reference solutions (shown by solution(); a notebook never runs them)
# ----------------------------------------------------------------------------------


def log_prob_affine(y, a, b):
    x = (y - b) / a                                    # undo the map
    log_p_x = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    return log_p_x - math.log(abs(a))                  # d f^{-1}/dy = 1/a


def log_abs_dsinh(x):
    # d sinh / dx = cosh(x) > 0. Written this way it never overflows for large |x|.
    return x.abs() + torch.log1p(torch.exp(-2 * x.abs())) - math.log(2.0)


def log_prob_sinh_affine(y, a, b):
    u = torch.asinh(y)                                  # undo sinh: u = a x + b
    x = (u - b) / a                                     # undo the affine map
    log_p_x = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    return log_p_x - math.log(abs(a)) - log_abs_dsinh(u)


def make_tanh_flow():
    # forward must take data y to the latent x = atanh(y): the inverse of tanh
    return fk.Flow([fk.Tanh().inv], fk.StandardNormal(1))


# ----------------------------------------------------------------------------------
# Exercise 1: y = a x + b
# ----------------------------------------------------------------------------------

_AFFINE_CASES = [(2.0, 1.0), (-0.5, 0.3), (1.0, 0.0), (3.0, -2.0)]


def _check_affine(fn: Callable) -> list[str]:
    y = torch.linspace(-4.0, 4.0, 9, dtype=torch.float64)
    for a, b in _AFFINE_CASES:
        got = call(fn, y.clone(), a, b)
        x = (y - b) / a
        log_abs_a = math.log(abs(a))
        where = f"(a = {a}, b = {b})"
        if a < 0 and isinstance(got, torch.Tensor) and torch.isnan(got).any():
            return [f"NaN for a negative scale {where}: the formula uses |a| (a decreasing map "
                    "still spreads mass by a factor |a|); use math.log(abs(a))"]
        slips = [
            (_log_normal(x),
             f"the density is not divided by |a| {where}: you left out the "
             "log-derivative term -log|a|. Stretching by |a| spreads the same mass over a "
             "|a| times wider range"),
            (_log_normal(x) + log_abs_a,
             f"the sign of the log|a| term is flipped {where}: stretching by |a| must lower "
             "the density, so subtract log|a|"),
            (_log_normal(y) - log_abs_a,
             f"you evaluated p_X at y itself {where}: first undo the map, x = (y - b) / a"),
            (_log_normal(a * y + b) - log_abs_a,
             f"you applied the map instead of its inverse {where}: p_X must be evaluated at "
             "x = f^{-1}(y) = (y - b) / a"),
            (_log_normal((y - b) * a) - log_abs_a,
             f"x is computed as (y - b)·a {where}: undoing y = a·x + b means dividing, "
             "x = (y - b) / a"),
            (_log_normal(x) - 2 * log_abs_a, f"the log|a| term appears twice {where}"),
        ]
        problems = diagnose(got, _log_normal(x) - log_abs_a, slips, f"log p_Y(y) {where}",
                            inputs=y, hint="expected log N(x; 0, 1) - log|a| with x = (y - b) / a")
        if problems:
            return problems
    return []


affine_density = Exercise(
    "affine_density", "log-density of y = a·x + b", _check_affine, log_prob_affine,
    hints=["Three steps: undo the map (x = (y - b) / a), evaluate log N(x; 0, 1) there, "
           "then correct by the log-derivative of the map.",
           "y = a·x + b stretches the line by |a| everywhere, so subtract math.log(abs(a)); "
           "the absolute value matters when a < 0."])


# ----------------------------------------------------------------------------------
# Exercise 2: the log-derivative of y = sinh(x)
# ----------------------------------------------------------------------------------


def _check_log_abs_dsinh(fn: Callable) -> list[str]:
    x = torch.tensor([-20.0, -6.0, -2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0, 8.0, 20.0],
                     dtype=torch.float64)
    got = call(fn, x.clone())
    expected = _log_cosh(x)
    slips = [
        (torch.cosh(x), "you returned the derivative cosh(x) itself: flows work with its "
                        "log, log cosh(x)"),
        (torch.log(torch.sinh(x).abs()), "that is log|sinh(x)|, the log of the map, not of "
                                         "its derivative: differentiate sinh first"),
        (-expected, "the sign is flipped: -log cosh(x) is the log-derivative of the inverse "
                    "map asinh at y = sinh(x); the map sinh itself has +log cosh(x)"),
        (torch.log(torch.sinh(x)), "that is log sinh(x) (NaN for x < 0): you need the log "
                                   "of the derivative, and the derivative of sinh is cosh"),
        (torch.sinh(x), "you returned sinh(x): that is the map, not the log of its derivative"),
    ]
    return diagnose(got, expected, slips, "log|f'(x)|", inputs=x,
                    hint="hint: d/dx sinh(x) = cosh(x), so log|f'(x)| = log cosh(x)")


sinh_log_derivative = Exercise(
    "sinh_log_derivative", "log-derivative of y = sinh(x)", _check_log_abs_dsinh, log_abs_dsinh,
    hints=["d/dx sinh(x) = cosh(x), which is always positive, so the answer is log cosh(x).",
           "torch.log(torch.cosh(x)) overflows for |x| above about 710 in float64 (89 in "
           "float32); cosh(x) = e^|x| (1 + e^(-2|x|)) / 2 gives a form that never does."])


# ----------------------------------------------------------------------------------
# Exercise 3: a composition, y = sinh(a x + b)
# ----------------------------------------------------------------------------------

_SINH_CASES = [(1.5, 0.5), (-0.7, -1.0), (2.0, 0.0)]


def _check_sinh_affine(fn: Callable) -> list[str]:
    y = torch.linspace(-5.0, 5.0, 11, dtype=torch.float64)
    for a, b in _SINH_CASES:
        got = call(fn, y.clone(), a, b)
        u = torch.asinh(y)
        x = (u - b) / a
        log_abs_a = math.log(abs(a))
        base = _log_normal(x)
        sinh_term = _log_cosh(u)  # = 0.5 * log(1 + y^2)
        where = f"(a = {a}, b = {b})"
        wrong_order = (y - b) / a
        slips = [
            (base - sinh_term,
             f"the affine step's term is missing {where}: subtract log|a| as well"),
            (base - log_abs_a,
             f"the sinh step's term is missing {where}: subtract log cosh(u) with u = asinh(y)"),
            (base,
             f"both log-derivative terms are missing {where}: each map in the chain "
             "contributes -log|its derivative|"),
            (base + log_abs_a + sinh_term,
             f"the signs are flipped {where}: each map divides the density by its "
             "derivative, so its log-derivative is subtracted"),
            (base - log_abs_a - _log_cosh(x),
             f"the sinh derivative is taken at the wrong point {where}: sinh is applied to "
             "u = a·x + b, so its term is log cosh(u) = log cosh(asinh(y)), not log cosh(x)"),
            (_log_normal(torch.asinh(wrong_order)) - log_abs_a - 0.5 * torch.log1p(wrong_order ** 2),
             f"the maps are undone in the wrong order {where}: y = sinh(a·x + b) applies the "
             "affine map first, so undo sinh first: u = asinh(y), then x = (u - b) / a"),
        ]
        problems = diagnose(got, base - log_abs_a - sinh_term, slips, f"log p_Y(y) {where}",
                            inputs=y, hint="expected log N(x; 0, 1) - log|a| - log cosh(u), "
                                           "u = asinh(y), x = (u - b) / a")
        if problems:
            return problems
    return []


sinh_affine_density = Exercise(
    "sinh_affine_density", "log-density of y = sinh(a·x + b)", _check_sinh_affine,
    log_prob_sinh_affine,
    hints=["The last map applied is undone first: u = asinh(y), then x = (u - b) / a.",
           "Subtract one log-derivative per map, each at its own input: log|a| for the affine "
           "map and log cosh(u) for sinh (your log_abs_dsinh(u))."])


# ----------------------------------------------------------------------------------
# Exercise 4: a Flow whose samples are tanh(x)
# ----------------------------------------------------------------------------------


def _check_tanh_flow(make_flow: Callable) -> list[str]:
    flow = call(make_flow)
    if not isinstance(flow, Flow):
        return [f"make_tanh_flow should return a fk.Flow, got {type(flow).__name__}"]
    if tuple(flow.event_shape) != (1,):
        return [f"the flow's samples should have event shape (1,), got "
                f"{tuple(flow.event_shape)}: use fk.StandardNormal(1) as the base"]
    y = torch.linspace(-0.95, 0.95, 21, dtype=torch.float64)[:, None]
    dtype = next((t.dtype for t in list(flow.parameters()) + list(flow.buffers())
                  if t.is_floating_point()), torch.get_default_dtype())
    with torch.no_grad():
        got = call(flow.log_prob, y.to(dtype), name="flow.log_prob(y)")
    x = torch.atanh(y[:, 0])
    expected = _log_normal(x) - torch.log1p(-y[:, 0] ** 2)
    t = torch.tanh(y[:, 0])
    slips = [
        (_log_normal(t) + torch.log1p(-t ** 2),
         "the flow runs in the wrong direction: a Flow's forward maps data y to the latent "
         "x = atanh(y), so it needs the inverse of tanh. Use fk.Tanh().inv, not fk.Tanh()"),
    ]
    problems = diagnose(got.double() if isinstance(got, torch.Tensor) else got, expected,
                        slips, "flow.log_prob(y)", inputs=y[:, 0],
                        hint="expected log N(atanh y; 0, 1) - log(1 - y²)")
    if problems:
        return problems
    with torch.no_grad():
        samples = call(flow.sample, 500, generator=torch.Generator().manual_seed(0),
                       name="flow.sample(500)")
    if tuple(samples.shape) != (500, 1):
        return [f"flow.sample(500) has shape {tuple(samples.shape)}, expected (500, 1)"]
    if not ((samples > -1) & (samples < 1)).all():
        return ["some samples lie outside (-1, 1): samples of tanh(x) never do"]
    return []


tanh_flow = Exercise(
    "tanh_flow", "a Flow whose samples are y = tanh(x)", _check_tanh_flow, make_tanh_flow,
    hints=["A Flow's forward goes from data to the Gaussian: here from y to x = atanh(y).",
           "fk.Tanh() maps x to tanh(x); `.inv` swaps its two directions. The flow is "
           "fk.Flow([...], fk.StandardNormal(1))."])


EXERCISES = [affine_density, sinh_log_derivative, sinh_affine_density, tanh_flow]


def summary():
    """Print which of this lesson's exercises passed in this kernel."""
    return _base.summary(EXERCISES)
