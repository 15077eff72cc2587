"""Exercises for lesson 02: determinants, linearly transformed Gaussians, Jacobians.

Each checker calls the learner's function on fixed inputs, compares with an independent
reference (``torch.linalg``, ``torch.distributions``, autograd) and, when the answer is
wrong, tests it against the usual mistakes to say which one it looks like. Where the lesson
rules out a shortcut (``torch.linalg`` for a 2 x 2 determinant, autograd for a Jacobian
asked for by hand), the checker enforces it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..jacobian import jacobian
from . import _base
from ._base import Exercise, call, compare, diagnose, forbid, matches

__all__ = [
    "det_2x2",
    "linear_gaussian",
    "residual_jacobian",
    "triangular_log_det",
    "residual_map",
    "triangular_map",
    "EXERCISES",
    "summary",
]

_LOG_2PI = math.log(2.0 * math.pi)
_NO_AUTOGRAD = ["jacobian", "log_abs_det_jacobian", "jacrev", "jacfwd", "autograd", "backward",
                "grad", "vmap"]


def _returned_none(got, described: str) -> list[str]:
    if got is None:
        return [f"your function returned None (input: {described}): did you forget `return`?"]
    return []


# ----------------------------------------------------------------------------------
# The maps of exercises 3 and 4 (the learner may call them)
# ----------------------------------------------------------------------------------


def residual_map(x: Tensor) -> Tensor:
    r"""``f(x) = x + 0.5 (sin x_2, tanh x_1)``: the identity plus a small nonlinear push.

    The push changes by at most 0.5 per unit step, so the map is invertible (the idea
    behind invertible residual networks). Input and output have shape ``(batch, 2)``.
    """
    push = torch.stack([torch.sin(x[:, 1]), torch.tanh(x[:, 0])], dim=1)
    return x + 0.5 * push


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


# ----------------------------------------------------------------------------------
# Reference solutions (shown by solution(); a notebook never runs them)
# ----------------------------------------------------------------------------------


def log_abs_det_2x2(A):
    determinant = A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
    return torch.log(torch.abs(determinant))


def linear_gaussian_log_prob(x, A, b):
    z = torch.linalg.solve(A, (x - b).T).T                      # z = A^-1 (x - b), row by row
    log_p_z = -0.5 * (z * z).sum(dim=1) - math.log(2 * math.pi)  # 2-D standard normal
    return log_p_z - torch.linalg.slogdet(A).logabsdet


def residual_map_jacobian(x):
    x1, x2 = x[:, 0], x[:, 1]
    J = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
    J[:, 0, 0] = 1.0
    J[:, 0, 1] = 0.5 * torch.cos(x2)                 # d f_1 / d x_2
    J[:, 1, 0] = 0.5 * (1 - torch.tanh(x1) ** 2)     # d f_2 / d x_1
    J[:, 1, 1] = 1.0
    return J


def triangular_log_abs_det(x):
    x1, x3 = x[:, 0], x[:, 2]
    # Only the diagonal matters: d z1/d x1 = cosh x1, d z2/d x2 = e^{x1/2}, d z3/d x3 = 3 x3^2 + 1.
    return torch.log(torch.cosh(x1)) + 0.5 * x1 + torch.log(1 + 3 * x3**2)


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


def _check_det_2x2(fn: Callable) -> list[str]:
    shortcut = forbid(fn, ["linalg", "slogdet", "logdet"],
                      "compute ad - bc from the four entries yourself")
    if shortcut:
        return shortcut
    for entries in _MATRICES_2X2:
        A = torch.tensor(entries, dtype=torch.float64)
        got = call(fn, A.clone())
        if got is None:
            return _returned_none(got, f"A = {entries}")
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got), dtype=torch.float64)
        if not isinstance(got, Tensor):
            return [f"for A = {entries} you returned a {type(got).__name__}; return a number "
                    "(a 0-d tensor or a float)"]
        if got.numel() != 1:
            return [f"for A = {entries} you returned shape {tuple(got.shape)}; log|det A| is a "
                    "single number"]
        got = got.detach().double().reshape(())
        (a, b), (c, d) = entries
        det = a * d - b * c
        expected = torch.linalg.slogdet(A).logabsdet
        if torch.isnan(got):
            return [f"for A = {entries} (det A = ad - bc = {det:.4g}) you returned NaN: that "
                    "usually means the log of a negative number. Take the absolute value of the "
                    "determinant before the log (a negative det only means the map flips "
                    "orientation; the volume factor is |det A|)"]
        nan = torch.tensor(math.nan, dtype=torch.float64)
        slips = [
            (torch.tensor(abs(det), dtype=torch.float64),
             f"for A = {entries} you returned |det A| instead of log|det A|: take its log"),
            (torch.tensor(det, dtype=torch.float64),
             f"for A = {entries} you returned det A itself: take the log of its absolute value"),
            (torch.tensor(math.log(abs(a * d + b * c)), dtype=torch.float64) if a * d + b * c else nan,
             f"for A = {entries}: the 2 x 2 determinant is ad - bc, with a minus sign"),
            (torch.tensor(math.log(abs(a * d)), dtype=torch.float64) if a * d else nan,
             f"for A = {entries} you used only the diagonal (log|ad|): that is the determinant "
             "of a triangular matrix; here the off-diagonal term bc counts too"),
            (-expected, f"for A = {entries} you returned -log|det A|, the log-determinant of "
                        "the inverse matrix"),
        ]
        problems = diagnose(got, expected, slips, f"log|det A| for A = {entries} "
                                                   f"(det A = ad - bc = {det:.4g})")
        if problems:
            return problems
    return []


det_2x2 = Exercise(
    "det_2x2", "log|det A| of a 2 x 2 matrix", _check_det_2x2, log_abs_det_2x2,
    hints=["For A = [[a, b], [c, d]], det A = ad - bc. Index the entries as A[0, 0], A[0, 1], ...",
           "A negative determinant only means the map flips orientation: take torch.abs before "
           "torch.log."])


# ----------------------------------------------------------------------------------
# Exercise 2: the density of a linearly transformed Gaussian
# ----------------------------------------------------------------------------------

_LINEAR_CASES = [
    ([[2.0, 0.0], [0.0, 0.5]], [0.0, 0.0]),
    ([[1.5, 0.7], [-0.4, 0.9]], [1.0, -2.0]),
    ([[0.3, 1.2], [1.1, -0.2]], [-0.5, 0.5]),     # det < 0
]


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z * z).sum(dim=1) - _LOG_2PI


def _check_linear_gaussian(fn: Callable) -> list[str]:
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.5
    for matrix, shift in _LINEAR_CASES:
        A = torch.tensor(matrix, dtype=torch.float64)
        b = torch.tensor(shift, dtype=torch.float64)
        described = f"A = {matrix}, b = {shift}"
        got = call(fn, x.clone(), A.clone(), b.clone())
        if got is None:
            return _returned_none(got, described)
        # Independent reference: X is Gaussian with mean b and covariance A A^T.
        expected = torch.distributions.MultivariateNormal(b, covariance_matrix=A @ A.T).log_prob(x)
        if isinstance(got, Tensor) and got.shape == (x.shape[0], 1):
            return [f"log p(x) for {described} has shape {tuple(got.shape)}: return one number "
                    "per sample, shape (batch,)"]
        if isinstance(got, Tensor) and got.shape == x.shape:
            return [f"log p(x) for {described} has shape {tuple(got.shape)}: sum over the two "
                    "coordinates, one number per sample, shape (batch,)"]
        log_det = torch.linalg.slogdet(A).logabsdet
        A_inv = torch.linalg.inv(A)
        z = (x - b) @ A_inv.T
        base = _standard_normal_log_prob(z)
        slips = [
            (base + log_det, "the sign of the log-det term: stretching space by |det A| spreads "
                             "the same mass over more area, so the density goes DOWN: subtract "
                             "log|det A|"),
            (base, "did you forget the log-det term? log p(x) = log p_Z(A^-1 (x - b)) - log|det A|"),
            (_standard_normal_log_prob((x - b) @ A.T) - log_det,
             "direction: to evaluate p_X at x you map x back to z = A^-1 (x - b), not forward "
             "with A"),
            (_standard_normal_log_prob((x - b) @ A.T) + log_det,
             "direction: to evaluate p_X at x you map x back to z = A^-1 (x - b), not forward "
             "with A (and the log-det then has the wrong sign too)"),
            (_standard_normal_log_prob(x @ A_inv.T) - log_det,
             "did you forget to subtract the shift b before mapping back?"),
            (_standard_normal_log_prob(x @ A_inv.T - b) - log_det,
             "did you apply the shift after A^-1? Undo the steps in reverse order: z = A^-1 (x - b)"),
            (_standard_normal_log_prob((x - b) @ A_inv) - log_det,
             "rows vs columns: with x stored as rows, z = (x - b) @ A^-1.T (you used A^-1 "
             "without the transpose)"),
            (base - log_det + _LOG_2PI,
             "the normalising constant: a 2-D standard normal has log density -|z|^2 / 2 - "
             "log(2 pi) (you are off by log 2 pi)"),
            (base - log_det + 0.5 * _LOG_2PI,
             "the normalising constant of a 2-D standard normal is log(2 pi), not 0.5 log(2 pi) "
             "(that is the 1-D one)"),
        ]
        problems = diagnose(got, expected, slips, f"log p(x) for {described}", inputs=x,
                            atol=1e-4, rtol=1e-4)
        if problems:
            return problems
    return []


linear_gaussian = Exercise(
    "linear_gaussian", "log-density of a linearly transformed Gaussian", _check_linear_gaussian,
    linear_gaussian_log_prob,
    hints=["Undo the map: z = A^-1 (x - b). With x stored as rows, "
           "torch.linalg.solve(A, (x - b).T).T does it without forming A^-1.",
           "log p_X(x) = log N(z; 0, I) - log|det A|, and the 2-D standard normal's log density "
           "is -|z|^2 / 2 - log(2 pi)."])


# ----------------------------------------------------------------------------------
# Exercise 3: the Jacobian of a nonlinear map
# ----------------------------------------------------------------------------------


def _check_residual_jacobian(fn: Callable) -> list[str]:
    shortcut = forbid(fn, _NO_AUTOGRAD, "write the four partial derivatives by hand")
    if shortcut:
        return shortcut
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.3
    got = call(fn, x.clone())
    if got is None:
        return _returned_none(got, f"x of shape {tuple(x.shape)}")
    expected = jacobian(residual_map, x)
    if isinstance(got, Tensor) and got.shape == (2, 2):
        return [f"you returned one 2 x 2 matrix for a batch of {x.shape[0]} points: return one "
                f"Jacobian per row of x, shape ({x.shape[0]}, 2, 2) (torch.stack helps)"]
    eye = torch.eye(2, dtype=torch.float64)
    sech_not_squared = expected.clone()
    sech_not_squared[:, 1, 0] = 0.5 / torch.cosh(x[:, 0])
    slips = [
        (expected.transpose(1, 2),
         "rows are outputs and columns are inputs, J[n, i, j] = d f_i / d x_j; you returned "
         "the transpose"),
        (expected - eye, "did you forget the derivative of the x term? f(x) = x + ..., so "
                         "J = I + ..."),
        (2.0 * expected - eye, "the factor 0.5 multiplies the derivatives too"),
        (sech_not_squared, "d/du tanh(u) = 1 - tanh(u)^2 = 1 / cosh(u)^2 (squared)"),
    ]
    return diagnose(got, expected, slips, "J")


residual_jacobian = Exercise(
    "residual_jacobian", "Jacobian of the residual map", _check_residual_jacobian,
    residual_map_jacobian,
    hints=["Row i is output f_i, column j is input x_j. f_1 = x_1 + 0.5 sin x_2 does not "
           "depend on x_2 only: d f_1 / d x_1 = 1.",
           "Start from J = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype) and fill J[:, i, j]; "
           "d f_1/d x_2 = 0.5 cos x_2 and d f_2/d x_1 = 0.5 (1 - tanh(x_1)^2)."])


# ----------------------------------------------------------------------------------
# Exercise 4: the log-determinant of a triangular (autoregressive) map
# ----------------------------------------------------------------------------------


def _check_triangular(fn: Callable) -> list[str]:
    shortcut = forbid(fn, _NO_AUTOGRAD + ["linalg", "slogdet", "logdet"],
                      "a triangular Jacobian's log-determinant needs only its diagonal, "
                      "which you can write down without building J")
    if shortcut:
        return shortcut
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 1.5
    got = call(fn, x.clone())
    if got is None:
        return _returned_none(got, f"x of shape {tuple(x.shape)}")
    expected = torch.linalg.slogdet(jacobian(triangular_map, x)).logabsdet
    if isinstance(got, Tensor) and got.shape == (x.shape[0], 3):
        return [f"you returned shape {tuple(got.shape)}: one term per coordinate. The log-det "
                "of a triangular Jacobian is the SUM of the log-diagonal terms, shape "
                f"({x.shape[0]},)"]
    x1, x3 = x[:, 0], x[:, 2]
    terms = {1: torch.log(torch.cosh(x1)), 2: 0.5 * x1, 3: torch.log1p(3.0 * x3 * x3)}
    derivative = {1: "cosh(x1)", 2: "exp(x1 / 2)", 3: "3 x3^2 + 1"}
    slips = [(expected.exp(), "you returned det J, not log|det J|")]
    for i, term in terms.items():
        slips.append((expected - term, f"you are missing the term of z{i}: d z{i} / d x{i} = "
                                       f"{derivative[i]}, so add log({derivative[i]})"))
    return diagnose(got, expected, slips, "log|det J|", inputs=x)


triangular_log_det = Exercise(
    "triangular_log_det", "log|det J| of a triangular map", _check_triangular,
    triangular_log_abs_det,
    hints=["The Jacobian is lower triangular, so log|det J| = sum_i log|d z_i / d x_i|: only "
           "the three diagonal entries matter.",
           "d z1/d x1 = cosh x1, d z2/d x2 = exp(x1 / 2), d z3/d x3 = 3 x3^2 + 1."])


EXERCISES = [det_2x2, linear_gaussian, residual_jacobian, triangular_log_det]


def summary():
    """Print which of this lesson's exercises passed in this kernel."""
    return _base.summary(EXERCISES)
