"""Checkers for lesson 02: determinants, linearly transformed Gaussians, Jacobians.

Each checker calls the learner's function on fixed inputs, compares with an independent
reference (``torch.linalg``, ``torch.distributions``, autograd) and, when the answer is
wrong, tests it against the usual mistakes to say which one it looks like.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..jacobian import jacobian
from ._base import LegacyCheckResult as CheckResult, compare

__all__ = [
    "check_log_abs_det_2x2",
    "check_linear_gaussian_log_prob",
    "residual_map",
    "check_residual_map_jacobian",
    "triangular_map",
    "check_triangular_log_abs_det",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _call(fn: Callable, args: tuple, exercise: str, described: str):
    """Run the learner's function; a raised exception becomes a readable problem."""
    try:
        result = fn(*args)
        if result is None:
            return None, CheckResult(exercise, [
                f"your function returned None (input: {described}): did you forget `return`?"])
        return result, None
    except NotImplementedError:
        return None, CheckResult(exercise, [
            "not implemented yet: replace `raise NotImplementedError` with your code"])
    except Exception as err:  # noqa: BLE001 - any error is the learner's to see
        return None, CheckResult(exercise, [
            f"your function raised {type(err).__name__}: {err} (input: {described})"])


def _close(got, expected: Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        return False
    got = got.detach().double()
    return bool(torch.isclose(got, expected.double(), atol=atol, rtol=rtol).all())


def _diagnose(got, mistakes: dict[str, Tensor], atol: float = 1e-5) -> str | None:
    """The hint of the first known mistake the answer matches, if any."""
    for hint, wrong in mistakes.items():
        if _close(got, wrong, atol=atol):
            return hint
    return None


# ----------------------------------------------------------------------------------
# Exercise 1: log|det| of a 2 x 2 matrix
# ----------------------------------------------------------------------------------

_MATRICES_2X2 = [
    [[2.0, 0.5], [0.3, 1.5]],
    [[0.5, 2.0], [1.0, 0.4]],     # det < 0: the map flips orientation
    [[-1.2, 0.7], [0.2, 0.1]],    # det < 0 again
    [[0.1, 0.0], [0.0, 0.2]],     # small volume: log|det| < 0
    [[3.0, -1.0], [2.0, 4.0]],
]


def check_log_abs_det_2x2(fn: Callable[[Tensor], Tensor]) -> CheckResult:
    """``fn(A)`` for a ``(2, 2)`` tensor must return ``log|ad - bc|`` (a 0-d tensor or a float)."""
    exercise = "log|det A| of a 2 x 2 matrix"
    for entries in _MATRICES_2X2:
        A = torch.tensor(entries, dtype=torch.float64)
        got, failed = _call(fn, (A.clone(),), exercise, f"A = {entries}")
        if failed is not None:
            return failed
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got), dtype=torch.float64)
        if not isinstance(got, Tensor):
            return CheckResult(exercise, [
                f"for A = {entries} you returned a {type(got).__name__}; return a number "
                "(a 0-d tensor or a float)"])
        if got.numel() != 1:
            return CheckResult(exercise, [
                f"for A = {entries} you returned shape {tuple(got.shape)}; log|det A| is a "
                "single number"])
        got = got.detach().double().reshape(())
        (a, b), (c, d) = entries
        det = a * d - b * c
        expected = torch.linalg.slogdet(A).logabsdet
        if _close(got, expected):
            continue
        problem = (f"for A = {entries} (det A = ad - bc = {det:.4g}) you returned "
                   f"{got.item():.6g}, expected log|det A| = {expected.item():.6g}")
        if torch.isnan(got):
            hint = ("a NaN usually means the log of a negative number: take the absolute "
                    "value of the determinant before the log (a negative det only means the "
                    "map flips orientation; the volume factor is |det A|)")
        else:
            hint = _diagnose(got, {
                "you returned |det A| instead of log|det A|: take its log": torch.tensor(abs(det)),
                "you returned det A itself: take the log of its absolute value": torch.tensor(det),
                "the 2 x 2 determinant is ad - bc, with a minus sign":
                    torch.tensor(math.log(abs(a * d + b * c))) if a * d + b * c else torch.tensor(math.nan),
                "you used only the diagonal (log|ad|): that is the determinant of a "
                "triangular matrix; here the off-diagonal term bc counts too":
                    torch.tensor(math.log(abs(a * d))) if a * d else torch.tensor(math.nan),
                "that is -log|det A|, the log-determinant of the inverse matrix":
                    -expected,
            })
        return CheckResult(exercise, [problem + (f"; hint: {hint}" if hint else "")])
    return CheckResult(exercise)


# ----------------------------------------------------------------------------------
# Exercise 2: the density of a linearly transformed Gaussian
# ----------------------------------------------------------------------------------

_LINEAR_CASES = [
    ([[2.0, 0.0], [0.0, 0.5]], [0.0, 0.0]),
    ([[1.5, 0.7], [-0.4, 0.9]], [1.0, -2.0]),
    ([[0.3, 1.2], [1.1, -0.2]], [-0.5, 0.5]),     # det < 0
]


def _points() -> Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(16, 2, generator=gen, dtype=torch.float64) * 1.5


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z * z).sum(dim=1) - _LOG_2PI


def check_linear_gaussian_log_prob(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> CheckResult:
    """``fn(x, A, b)``: log-density at each row of ``x`` of ``X = A Z + b``, ``Z ~ N(0, I_2)``."""
    exercise = "log-density of a linearly transformed Gaussian"
    x = _points()
    for matrix, shift in _LINEAR_CASES:
        A = torch.tensor(matrix, dtype=torch.float64)
        b = torch.tensor(shift, dtype=torch.float64)
        described = f"A = {matrix}, b = {shift}"
        got, failed = _call(fn, (x.clone(), A.clone(), b.clone()), exercise, described)
        if failed is not None:
            return failed
        # Independent reference: X is Gaussian with mean b and covariance A A^T.
        reference = torch.distributions.MultivariateNormal(b, covariance_matrix=A @ A.T)
        expected = reference.log_prob(x)
        problems = compare(f"log p(x) for {described}", got, expected, atol=1e-4, rtol=1e-4,
                           inputs=x)
        if not problems:
            continue
        if isinstance(got, Tensor) and got.shape == (x.shape[0], 1):
            problems.append("return one number per sample, shape (batch,): sum over the two "
                            "coordinates")
        elif isinstance(got, Tensor) and got.shape == expected.shape:
            log_det = torch.linalg.slogdet(A).logabsdet
            A_inv = torch.linalg.inv(A)
            z = (x - b) @ A_inv.T
            base = _standard_normal_log_prob(z)
            hint = _diagnose(got, {
                "the sign of the log-det term: stretching space by |det A| spreads the same "
                "mass over more area, so the density goes DOWN: subtract log|det A|":
                    base + log_det,
                "did you forget the log-det term? log p(x) = log p_Z(A^-1 (x - b)) - log|det A|":
                    base,
                "direction: to evaluate p_X at x you map x back to z = A^-1 (x - b), not forward "
                "with A": _standard_normal_log_prob((x - b) @ A.T) - log_det,
                "direction: to evaluate p_X at x you map x back to z = A^-1 (x - b), not forward "
                "with A (and the log-det then has the wrong sign too)":
                    _standard_normal_log_prob((x - b) @ A.T) + log_det,
                "did you forget to subtract the shift b before mapping back?":
                    _standard_normal_log_prob(x @ A_inv.T) - log_det,
                "did you apply the shift after A^-1? Undo the steps in reverse order: "
                "z = A^-1 (x - b)": _standard_normal_log_prob(x @ A_inv.T - b) - log_det,
                "rows vs columns: with x stored as rows, z = (x - b) @ A^-1.T (you used A^-1 "
                "without the transpose)": _standard_normal_log_prob((x - b) @ A_inv) - log_det,
                "the normalising constant: a 2-D standard normal has log density "
                "-|z|^2 / 2 - log(2 pi) (you are off by log 2 pi)": base - log_det + _LOG_2PI,
                "the normalising constant of a 2-D standard normal is log(2 pi), not "
                "0.5 log(2 pi) (that is the 1-D one)": base - log_det + 0.5 * _LOG_2PI,
            }, atol=1e-4)
            if hint:
                problems.append(f"hint: {hint}")
        return CheckResult(exercise, problems)
    return CheckResult(exercise)


# ----------------------------------------------------------------------------------
# Exercise 3: the Jacobian of a nonlinear map
# ----------------------------------------------------------------------------------


def residual_map(x: Tensor) -> Tensor:
    r"""``f(x) = x + 0.5 (sin x_2, tanh x_1)``: the identity plus a small nonlinear push.

    The push changes by at most 0.5 per unit step, so the map is invertible (the idea
    behind invertible residual networks). Input and output have shape ``(batch, 2)``.
    """
    push = torch.stack([torch.sin(x[:, 1]), torch.tanh(x[:, 0])], dim=1)
    return x + 0.5 * push


def _jacobian_points() -> Tensor:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(8, 2, generator=gen, dtype=torch.float64) * 1.3


def check_residual_map_jacobian(fn: Callable[[Tensor], Tensor]) -> CheckResult:
    """``fn(x)`` must return the Jacobians of :func:`residual_map`, shape ``(batch, 2, 2)``,
    with ``J[n, i, j] = d f_i / d x_j`` at sample ``n``."""
    exercise = "Jacobian of the residual map"
    x = _jacobian_points()
    got, failed = _call(fn, (x.clone(),), exercise, f"x of shape {tuple(x.shape)}")
    if failed is not None:
        return failed
    expected = jacobian(residual_map, x)
    if isinstance(got, Tensor) and got.shape == (2, 2):
        return CheckResult(exercise, [
            f"you returned one 2 x 2 matrix for a batch of {x.shape[0]} points: return one "
            f"Jacobian per row of x, shape ({x.shape[0]}, 2, 2) (torch.stack helps)"])
    problems = compare("J", got, expected)
    if problems:
        eye = torch.eye(2, dtype=torch.float64)
        hint = _diagnose(got, {
            "rows are outputs and columns are inputs, J[n, i, j] = d f_i / d x_j; you "
            "returned the transpose": expected.transpose(1, 2),
            "did you forget the derivative of the x term? f(x) = x + ..., so J = I + ...":
                expected - eye,
            "the factor 0.5 multiplies the derivatives too": 2.0 * expected - eye,
        })
        if hint is None and isinstance(got, Tensor) and got.shape == expected.shape:
            x1 = x[:, 0]
            wrong_tanh = expected.clone()
            wrong_tanh[:, 1, 0] = 0.5 * (1.0 / torch.cosh(x1))  # sech, not sech^2
            if _close(got, wrong_tanh):
                hint = "d/du tanh(u) = 1 - tanh(u)^2 = 1 / cosh(u)^2 (squared)"
        if hint:
            problems.append(f"hint: {hint}")
        return CheckResult(exercise, problems)
    return CheckResult(exercise)


# ----------------------------------------------------------------------------------
# Exercise 4: the log-determinant of a triangular (autoregressive) map
# ----------------------------------------------------------------------------------


def triangular_map(x: Tensor) -> Tensor:
    r"""A 3-D map where output ``i`` depends on inputs ``1..i`` only (autoregressive):

    .. math:: z_1 = \sinh x_1, \quad z_2 = x_2 e^{x_1 / 2} + x_1^2, \quad
              z_3 = x_3^3 + x_3 + x_1 x_2

    Each ``z_i`` is increasing in ``x_i``, so the map is invertible, one coordinate at a
    time. Input and output have shape ``(batch, 3)``.
    """
    x1, x2, x3 = x.unbind(dim=1)
    z1 = torch.sinh(x1)
    z2 = x2 * torch.exp(0.5 * x1) + x1 * x1
    z3 = x3**3 + x3 + x1 * x2
    return torch.stack([z1, z2, z3], dim=1)


def check_triangular_log_abs_det(fn: Callable[[Tensor], Tensor]) -> CheckResult:
    """``fn(x)`` must return ``log|det J|`` of :func:`triangular_map` at each row: ``(batch,)``."""
    exercise = "log|det J| of a triangular map"
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64) * 1.5
    got, failed = _call(fn, (x.clone(),), exercise, f"x of shape {tuple(x.shape)}")
    if failed is not None:
        return failed
    expected = torch.linalg.slogdet(jacobian(triangular_map, x)).logabsdet
    if isinstance(got, Tensor) and got.shape == (x.shape[0], 3):
        return CheckResult(exercise, [
            f"you returned shape {tuple(got.shape)}: one term per coordinate. The log-det of "
            "a triangular Jacobian is the SUM of the log-diagonal terms, shape "
            f"({x.shape[0]},)"])
    problems = compare("log|det J|", got, expected, atol=1e-5, rtol=1e-5, inputs=x)
    if problems:
        x1, x3 = x[:, 0], x[:, 2]
        terms = {1: torch.log(torch.cosh(x1)), 2: 0.5 * x1, 3: torch.log1p(3.0 * x3 * x3)}
        derivative = {1: "cosh(x1)", 2: "exp(x1 / 2)", 3: "3 x3^2 + 1"}
        mistakes = {"you returned det J, not log|det J|": expected.exp()}
        for i, term in terms.items():
            mistakes[f"you are missing the term of z{i}: d z{i} / d x{i} = {derivative[i]}, "
                      f"so add log({derivative[i]})"] = expected - term
        hint = _diagnose(got, mistakes)
        if hint:
            problems.append(f"hint: {hint}")
        return CheckResult(exercise, problems)
    return CheckResult(exercise)
