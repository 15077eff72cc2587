"""Checkers for lesson 01: the change-of-variables formula in one dimension.

In every exercise ``x ~ N(0, 1)`` and ``y = f(x)``; the learner writes ``log p_Y(y)`` or a
log-derivative. Each checker compares against the exact answer in float64 and, when the
answer is wrong, tries the usual slips (a missing log-derivative term, a flipped sign,
the map applied in the wrong direction) to say which one it was.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..flow import Flow
from ._base import LegacyCheckResult as CheckResult, compare

__all__ = [
    "check_affine_log_prob",
    "check_log_abs_derivative",
    "check_sinh_affine_log_prob",
    "check_tanh_flow",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _log_normal(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * x * x - _HALF_LOG_2PI


def _log_cosh(u: torch.Tensor) -> torch.Tensor:
    a = u.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def _call(fn: Callable, *args):
    """``(result, None)`` or ``(None, problem)`` if the learner's function raised."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, (f"{name} still raises NotImplementedError: replace the "
                      "`raise NotImplementedError` line with your code")
    except Exception as err:  # noqa: BLE001 - any error is reported to the learner
        return None, f"{name} raised {type(err).__name__}: {err}"


def _matches(got, target: torch.Tensor) -> bool:
    if not isinstance(got, torch.Tensor) or got.shape != target.shape:
        return False
    return bool(torch.isclose(got.detach().double(), target, atol=1e-5, rtol=1e-5,
                              equal_nan=True).all())


def _diagnose(got, expected: torch.Tensor, slips: list[tuple[torch.Tensor, str]],
              what: str, inputs: torch.Tensor, hint: str) -> list[str]:
    """Problems with ``got``: empty if right, else the recognised slip or the first wrong value."""
    if _matches(got, expected) and torch.isfinite(got).all():
        return []
    for wrong, message in slips:
        if _matches(got, wrong):
            return [message]
    problems = compare(what, got, expected, atol=1e-5, rtol=1e-5, inputs=inputs)
    return problems + [hint] if problems else []


# ----------------------------------------------------------------------------------
# Exercise 1: y = a x + b
# ----------------------------------------------------------------------------------

_AFFINE_CASES = [(2.0, 1.0), (-0.5, 0.3), (1.0, 0.0), (3.0, -2.0)]


def check_affine_log_prob(log_prob_affine: Callable) -> CheckResult:
    """``log_prob_affine(y, a, b)`` must return ``log p_Y(y)`` for ``y = a x + b``, ``x ~ N(0, 1)``.

    Exact answer: ``log N((y - b) / a; 0, 1) - log|a|``. ``y`` is a float64 tensor of shape
    ``(n,)``; ``a`` and ``b`` are Python floats (``a`` may be negative).
    """
    result = CheckResult("log-density of y = a·x + b")
    y = torch.linspace(-4.0, 4.0, 9, dtype=torch.float64)
    for a, b in _AFFINE_CASES:
        got, problem = _call(log_prob_affine, y.clone(), a, b)
        if problem:
            result.problems.append(problem)
            return result
        x = (y - b) / a
        log_abs_a = math.log(abs(a))
        where = f"(a = {a}, b = {b})"
        if a < 0 and isinstance(got, torch.Tensor) and torch.isnan(got).any():
            result.problems.append(
                f"NaN for a negative scale {where}: the formula uses |a| (a decreasing map "
                "still spreads mass by a factor |a|); use math.log(abs(a))")
            return result
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
            (_log_normal(x) - 2 * log_abs_a,
             f"the log|a| term appears twice {where}"),
        ]
        problems = _diagnose(got, _log_normal(x) - log_abs_a, slips,
                             f"log p_Y(y) {where}", y,
                             "expected log N(x; 0, 1) - log|a| with x = (y - b) / a")
        if problems:
            result.problems.extend(problems)
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 2: the log-derivative of y = sinh(x)
# ----------------------------------------------------------------------------------


def check_log_abs_derivative(log_abs_dsinh: Callable) -> CheckResult:
    """``log_abs_dsinh(x)`` must return ``log|d sinh(x)/dx| = log cosh(x)``, elementwise."""
    result = CheckResult("log-derivative of y = sinh(x)")
    x = torch.tensor([-20.0, -6.0, -2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0, 8.0, 20.0],
                     dtype=torch.float64)
    got, problem = _call(log_abs_dsinh, x.clone())
    if problem:
        result.problems.append(problem)
        return result
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
    result.problems.extend(_diagnose(got, expected, slips, "log|f'(x)|", x,
                                     "hint: d/dx sinh(x) = cosh(x), so log|f'(x)| = log cosh(x)"))
    return result


# ----------------------------------------------------------------------------------
# Exercise 3: a composition, y = sinh(a x + b)
# ----------------------------------------------------------------------------------

_SINH_CASES = [(1.5, 0.5), (-0.7, -1.0), (2.0, 0.0)]


def check_sinh_affine_log_prob(log_prob_sinh_affine: Callable) -> CheckResult:
    """``log_prob_sinh_affine(y, a, b)``: ``log p_Y(y)`` for ``y = sinh(a x + b)``, ``x ~ N(0, 1)``.

    Exact answer: with ``u = asinh(y)`` and ``x = (u - b) / a``,
    ``log N(x; 0, 1) - log|a| - log cosh(u)``.
    """
    result = CheckResult("log-density of y = sinh(a·x + b)")
    y = torch.linspace(-5.0, 5.0, 11, dtype=torch.float64)
    for a, b in _SINH_CASES:
        got, problem = _call(log_prob_sinh_affine, y.clone(), a, b)
        if problem:
            result.problems.append(problem)
            return result
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
        problems = _diagnose(got, base - log_abs_a - sinh_term, slips,
                             f"log p_Y(y) {where}", y,
                             "expected log N(x; 0, 1) - log|a| - log cosh(u), u = asinh(y), "
                             "x = (u - b) / a")
        if problems:
            result.problems.extend(problems)
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 4: a Flow whose samples are tanh(x)
# ----------------------------------------------------------------------------------


def check_tanh_flow(make_flow: Callable) -> CheckResult:
    """``make_flow()`` must return a 1-D ``fk.Flow`` whose samples are ``y = tanh(x)``.

    Its ``log_prob(y)`` must be ``log N(atanh y; 0, 1) - log(1 - y^2)`` and its samples
    must lie in ``(-1, 1)``.
    """
    result = CheckResult("a Flow whose samples are y = tanh(x)")
    flow, problem = _call(make_flow)
    if problem:
        result.problems.append(problem)
        return result
    if not isinstance(flow, Flow):
        result.problems.append(f"make_flow should return a fk.Flow, got {type(flow).__name__}")
        return result
    if tuple(flow.event_shape) != (1,):
        result.problems.append(
            f"the flow's samples should have event shape (1,), got {tuple(flow.event_shape)}: "
            "use fk.StandardNormal(1) as the base")
        return result
    y = torch.linspace(-0.95, 0.95, 21, dtype=torch.float64)[:, None]
    dtype = next((t.dtype for t in list(flow.parameters()) + list(flow.buffers())
                  if t.is_floating_point()), torch.get_default_dtype())
    try:
        with torch.no_grad():
            got = flow.log_prob(y.to(dtype))
    except Exception as err:  # noqa: BLE001
        result.problems.append(f"flow.log_prob(y) raised {type(err).__name__}: {err}")
        return result
    x = torch.atanh(y[:, 0])
    expected = _log_normal(x) - torch.log1p(-y[:, 0] ** 2)
    t = torch.tanh(y[:, 0])
    wrong_direction = _log_normal(t) + torch.log1p(-t ** 2)
    slips = [
        (wrong_direction,
         "the flow runs in the wrong direction: a Flow's forward maps data y to the latent "
         "x = atanh(y), so it needs the inverse of tanh. Use fk.Tanh().inv, not fk.Tanh()"),
    ]
    problems = _diagnose(got.double() if isinstance(got, torch.Tensor) else got, expected,
                         slips, "flow.log_prob(y)", y[:, 0],
                         "expected log N(atanh y; 0, 1) - log(1 - y²)")
    if problems:
        result.problems.extend(problems)
        return result
    try:
        with torch.no_grad():
            samples = flow.sample(500, generator=torch.Generator().manual_seed(0))
    except Exception as err:  # noqa: BLE001
        result.problems.append(f"flow.sample(500) raised {type(err).__name__}: {err}")
        return result
    if tuple(samples.shape) != (500, 1):
        result.problems.append(f"flow.sample(500) has shape {tuple(samples.shape)}, expected (500, 1)")
    elif not ((samples > -1) & (samples < 1)).all():
        result.problems.append("some samples lie outside (-1, 1): samples of tanh(x) never do")
    return result
