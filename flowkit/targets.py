r"""Densities known only up to a constant, for fitting flows by reverse KL.

Each target is an object with ``log_prob(z)``: a ``(batch, 2)`` tensor in, the
**unnormalised** log-density :math:`\log\tilde p(z)` of shape ``(batch,)`` out. The
normalised density is :math:`p(z) = \tilde p(z) / Z`. Every 2-D target also knows

* ``log_Z``: :math:`\log Z = \log\int \tilde p(z)\,dz`, by quadrature on a fine grid
  (the trapezoid rule in float64 over ``extent``, where the density has decayed to
  nothing), or exactly where the math gives it;
* ``marginals()``: both 1-D marginal densities on grids, by the same quadrature;
* ``density_grid(n)``: the normalised density on an ``n x n`` grid for ``imshow``;
* ``sample(n)``: exact draws from the grid density (a cell by its mass, then a uniform
  point inside it), for the forward-KL fits the lesson compares against.

The four energies are those of Rezende and Mohamed (2015), "Variational inference with
normalizing flows", with :math:`\log\tilde p = -U`. ``U2``-``U4`` do not confine
:math:`z_1` (their mass is infinite), so here they carry a soft wall
:math:`\tfrac12 (z_1/4)^8` that leaves the picture on :math:`[-4, 4]^2` almost unchanged.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ._checks import check_count, check_tensor

__all__ = ["Target2D", "U1", "U2", "U3", "U4", "ENERGIES", "funnel", "Funnel",
           "two_gaussians", "logistic_regression", "LogisticRegressionPosterior",
           "WALL_POWER", "WALL_SCALE"]

WALL_SCALE = 4.0  # the soft wall 0.5 * (z1 / WALL_SCALE) ** WALL_POWER on U2-U4
WALL_POWER = 8


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    return torch.logaddexp(a, b)


class Target2D:
    """A 2-D unnormalised log-density with quadrature for its constant and marginals.

    Arguments:
        name: shown in titles and messages.
        log_prob: ``(batch, 2) -> (batch,)`` unnormalised log-density.
        extent: ``(x_min, x_max, y_min, y_max)`` holding all but a negligible part of the
            mass: the quadrature box.
        view: the box a picture should show (defaults to ``extent``).
        quadrature_points: grid points per axis for the quadrature.
    """

    dim = 2

    def __init__(self, name: str, log_prob: Callable[[Tensor], Tensor],
                 extent: tuple[float, float, float, float],
                 view: tuple[float, float, float, float] | None = None,
                 quadrature_points: int = 1201):
        self.name = name
        self._log_prob = log_prob
        self.extent = tuple(float(v) for v in extent)
        self.view = tuple(float(v) for v in (view or extent))
        self.quadrature_points = int(quadrature_points)

    def __repr__(self) -> str:
        return f"<target {self.name}>"

    def log_prob(self, z: Tensor) -> Tensor:
        """Unnormalised log-density :math:`\\log\\tilde p(z)`, shape ``(batch,)``."""
        check_tensor(z, "z", (2,))
        return self._log_prob(z)

    __call__ = log_prob

    # -- quadrature -------------------------------------------------------------------

    def _axes(self, n: int | None = None) -> tuple[Tensor, Tensor]:
        n = n or self.quadrature_points
        x0, x1, y0, y1 = self.extent
        return (torch.linspace(x0, x1, n, dtype=torch.float64),
                torch.linspace(y0, y1, n, dtype=torch.float64))

    @cached_property
    def _log_grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(xs, ys, log p~)`` on the quadrature grid, rows indexed by y."""
        xs, ys = self._axes()
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], 1)
        with torch.no_grad():  # in chunks: a likelihood over many data points is large
            values = torch.cat([self._log_prob(chunk).double()
                                for chunk in points.split(65_536)])
        return xs, ys, values.reshape(len(ys), len(xs))

    @staticmethod
    def _trapezoid_weights(axis: Tensor) -> Tensor:
        w = torch.full_like(axis, float(axis[1] - axis[0]))
        w[0] = w[-1] = w[0] / 2
        return w

    @cached_property
    def log_Z(self) -> float:
        r""":math:`\log\int\tilde p(z)\,dz` by the trapezoid rule on the quadrature grid."""
        xs, ys, logp = self._log_grid
        log_w = (self._trapezoid_weights(ys).log()[:, None]
                 + self._trapezoid_weights(xs).log()[None, :])
        return float(torch.logsumexp((logp + log_w).flatten(), 0))

    def marginals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(xs, p(x), ys, p(y))``: the two normalised 1-D marginals by quadrature."""
        xs, ys, logp = self._log_grid
        density = torch.exp(logp - self.log_Z)
        p_x = (density * self._trapezoid_weights(ys)[:, None]).sum(0)
        p_y = (density * self._trapezoid_weights(xs)[None, :]).sum(1)
        return xs.numpy(), p_x.numpy(), ys.numpy(), p_y.numpy()

    def density_grid(self, n: int = 120, box: tuple[float, float, float, float] | None = None
                     ) -> np.ndarray:
        """The normalised density on an ``n x n`` grid over ``box`` (default ``view``),
        rows indexed by y, ready for ``imshow(origin="lower", extent=box)``."""
        x0, x1, y0, y1 = box or self.view
        xs = torch.linspace(x0, x1, n, dtype=torch.float64)
        ys = torch.linspace(y0, y1, n, dtype=torch.float64)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        with torch.no_grad():
            logp = self._log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).double()
        return torch.exp(logp - self.log_Z).reshape(n, n).numpy()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the density, exact up to the quadrature grid's resolution."""
        n = check_count(n, "n")
        xs, ys, logp = self._log_grid
        probs = torch.softmax(logp.flatten(), 0)
        cells = torch.multinomial(probs, n, replacement=True, generator=generator)
        row, col = cells // len(xs), cells % len(xs)
        dx, dy = float(xs[1] - xs[0]), float(ys[1] - ys[0])
        jitter = torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5
        points = torch.stack([xs[col] + dx * jitter[:, 0], ys[row] + dy * jitter[:, 1]], 1)
        return points.float()


# ----------------------------------------------------------------------------------
# Rezende and Mohamed (2015) energies
# ----------------------------------------------------------------------------------


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _wall(z: Tensor) -> Tensor:
    return 0.5 * (z[:, 0] / WALL_SCALE) ** WALL_POWER


def _log_u1(z: Tensor) -> Tensor:
    radius = z.norm(dim=1)
    ring = -0.5 * ((radius - 2) / 0.4) ** 2
    bumps = _logaddexp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)
    return ring + bumps


def _log_u2(z: Tensor) -> Tensor:
    return -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2 - _wall(z)


def _log_u3(z: Tensor) -> Tensor:
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return _logaddexp(a, b) - _wall(z)


def _log_u4(z: Tensor) -> Tensor:
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return _logaddexp(a, b) - _wall(z)


_VIEW = (-4.0, 4.0, -4.0, 4.0)
U1 = Target2D("U1 (ring split by two bumps)", _log_u1, (-6, 6, -6, 6), _VIEW)
U2 = Target2D("U2 (sine wave)", _log_u2, (-7, 7, -4, 4), _VIEW)
U3 = Target2D("U3 (sine wave and a branch)", _log_u3, (-7, 7, -6, 4), _VIEW)
U4 = Target2D("U4 (sine wave and a step)", _log_u4, (-7, 7, -6, 4), _VIEW)
ENERGIES = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}


def two_gaussians(separation: float, scale: float = 0.5) -> Target2D:
    """An equal mixture of two round Gaussians at ``(+-separation/2, 0)``, unnormalised.

    Its exact ``log Z`` is ``log(2 * 2 pi scale^2)``; the quadrature must agree.
    """
    if not (isinstance(separation, (int, float)) and separation >= 0):
        raise ValueError(f"separation must be a non-negative number, got {separation!r}")
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    half, s = float(separation) / 2, float(scale)

    def log_prob(z: Tensor) -> Tensor:
        y_part = -0.5 * (z[:, 1] / s) ** 2
        return y_part + _logaddexp(-0.5 * ((z[:, 0] - half) / s) ** 2,
                                   -0.5 * ((z[:, 0] + half) / s) ** 2)

    reach = half + 8 * s
    return Target2D(f"two Gaussians {separation:g} apart", log_prob,
                    (-reach, reach, -8 * s, 8 * s), (-max(reach - 4 * s, 3), max(reach - 4 * s, 3),
                                                     -3, 3), quadrature_points=801)


# ----------------------------------------------------------------------------------
# Neal's funnel
# ----------------------------------------------------------------------------------


class Funnel(Target2D):
    r"""Neal's funnel, ``z = (x_1, ..., x_{dim-1}, v)``: :math:`v\sim\mathcal N(0, 3^2)`,
    and each :math:`x_i \mid v \sim \mathcal N(0, e^{v})` independently.

    It is normalised, so ``log_Z`` is exactly 0 in any dimension, and the ``v`` marginal
    is exactly :math:`\mathcal N(0, 9)`. Neal's original has ``dim = 10``. In 2-D the neck
    is far too narrow for a 2-D grid; ``marginals()`` integrates over ``v`` in 1-D instead.
    """

    def __init__(self, dim: int = 2, v_scale: float = 3.0):
        dim = check_count(dim, "dim")
        if dim < 2:
            raise ValueError(f"the funnel needs dim >= 2 (at least one x and v), got {dim}")
        self.dim = dim
        self.v_scale = float(v_scale)
        name = "Neal's funnel" + ("" if dim == 2 else f" in {dim}-D")
        super().__init__(name, self._funnel_log_prob, (-30, 30, -12, 12), (-8, 8, -7, 7))

    def log_prob(self, z: Tensor) -> Tensor:
        check_tensor(z, "z", (self.dim,))
        return self._funnel_log_prob(z)

    __call__ = log_prob

    def _need_2d(self, what: str) -> None:
        if self.dim != 2:
            raise ValueError(f"{what} is only available for the 2-D funnel (this one has "
                             f"dim = {self.dim}); the v marginal is N(0, {self.v_scale ** 2:g})")

    def _funnel_log_prob(self, z: Tensor) -> Tensor:
        x, v = z[:, :-1], z[:, -1]
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        log_p_v = -0.5 * (v / self.v_scale) ** 2 - math.log(self.v_scale) - half_log_2pi
        log_p_x = (-0.5 * (x * x).sum(1) * torch.exp(-v)
                   - x.shape[1] * (0.5 * v + half_log_2pi))
        return log_p_v + log_p_x

    @property
    def log_Z(self) -> float:  # type: ignore[override]
        return 0.0

    def density_grid(self, n: int = 120, box=None) -> np.ndarray:
        self._need_2d("density_grid")
        return super().density_grid(n, box)

    def marginals(self, n: int = 801):
        self._need_2d("marginals")
        v = torch.linspace(-6 * self.v_scale, 6 * self.v_scale, 4001, dtype=torch.float64)
        x = torch.linspace(-self.extent[1], self.extent[1], n, dtype=torch.float64)
        vv, xx = torch.meshgrid(v, x, indexing="ij")
        logp = self._funnel_log_prob(torch.stack([xx.flatten(), vv.flatten()], 1)).reshape(vv.shape)
        log_w = self._trapezoid_weights(v).log()[:, None]
        p_x = torch.logsumexp(logp + log_w, 0).exp()
        ys = torch.linspace(self.extent[2], self.extent[3], n, dtype=torch.float64)
        p_v = torch.exp(-0.5 * (ys / self.v_scale) ** 2) / (self.v_scale * math.sqrt(2 * math.pi))
        return x.numpy(), p_x.numpy(), ys.numpy(), p_v.numpy()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        n = check_count(n, "n")
        v = self.v_scale * torch.randn(n, 1, generator=generator)
        x = torch.exp(v / 2) * torch.randn(n, self.dim - 1, generator=generator)
        return torch.cat([x, v], 1)


funnel = Funnel()


# ----------------------------------------------------------------------------------
# A real posterior: Bayesian logistic regression with two parameters
# ----------------------------------------------------------------------------------


class LogisticRegressionPosterior(Target2D):
    r"""The posterior of :math:`(\alpha, \beta)` in
    :math:`P(y=1\mid x) = \sigma(\alpha + \beta x)`, up to its constant.

    Data: scikit-learn's iris flowers (shipped with the package, no download), versicolor
    (``y = 0``) against virginica (``y = 1``), ``x`` the petal width standardised, and only
    the first ``n_per_class`` flowers of each: the classes nearly separate, so the
    posterior is wide, skewed towards large slopes, and not Gaussian. Prior: :math:`\alpha, \beta \sim \mathcal N(0,
    \text{prior\_scale}^2)` independently. ``log_prob`` is the log joint
    :math:`\log p(y\mid x,\theta) + \log p(\theta)`, so ``log_Z`` is the log evidence
    :math:`\log p(y\mid x)`.
    """

    def __init__(self, n_per_class: int = 15, feature: str = "petal width (cm)",
                 prior_scale: float = 2.5):
        from sklearn.datasets import load_iris

        iris = load_iris()
        if feature not in iris.feature_names:
            raise ValueError(f"feature must be one of {iris.feature_names}, got {feature!r}")
        column = iris.feature_names.index(feature)
        keep = np.r_[np.flatnonzero(iris.target == 1)[:n_per_class],
                     np.flatnonzero(iris.target == 2)[:n_per_class]]
        raw = iris.data[keep, column]
        self.feature = feature
        self.feature_mean, self.feature_std = float(raw.mean()), float(raw.std())
        self.x = torch.tensor((raw - raw.mean()) / raw.std(), dtype=torch.float64)
        self.y = torch.tensor(iris.target[keep] == 2, dtype=torch.float64)
        self.prior_scale = float(prior_scale)
        mode, cov = self.laplace()
        spread = 9 * cov.diagonal().sqrt()
        extent = (float(mode[0] - spread[0]), float(mode[0] + spread[0]),
                  float(mode[1] - spread[1]), float(mode[1] + spread[1]))
        view = (float(mode[0] - 4.5 * spread[0] / 9), float(mode[0] + 4.5 * spread[0] / 9),
                float(mode[1] - 4.5 * spread[1] / 9), float(mode[1] + 4.5 * spread[1] / 9))
        super().__init__("logistic regression posterior", self._log_joint, extent, view,
                         quadrature_points=601)

    def _log_joint(self, theta: Tensor) -> Tensor:
        x, y = self.x.to(theta.dtype), self.y.to(theta.dtype)
        logits = theta[:, :1] + theta[:, 1:2] * x[None, :]  # (batch, n)
        log_lik = (y * torch.nn.functional.logsigmoid(logits)
                   + (1 - y) * torch.nn.functional.logsigmoid(-logits)).sum(1)
        log_prior = (-0.5 * (theta / self.prior_scale) ** 2).sum(1) \
            - 2 * math.log(self.prior_scale) - math.log(2 * math.pi)
        return log_lik + log_prior

    def predictive(self, theta: Tensor, x_new: Tensor) -> Tensor:
        r""":math:`\sigma(\alpha + \beta x)` for each ``theta`` row and each ``x_new``:
        shape ``(len(theta), len(x_new))``; ``x_new`` in standardised units."""
        return torch.sigmoid(theta[:, :1] + theta[:, 1:2] * x_new[None, :].to(theta.dtype))

    def _design(self) -> Tensor:
        return torch.stack([torch.ones_like(self.x), self.x], 1)

    def _negative_hessian(self, theta: Tensor) -> Tensor:
        design = self._design()
        p = torch.sigmoid(design @ theta)
        weighted = design * (p * (1 - p))[:, None]
        return design.T @ weighted + torch.eye(2, dtype=torch.float64) / self.prior_scale ** 2

    def laplace(self, iterations: int = 100) -> tuple[Tensor, Tensor]:
        """The Laplace approximation: the mode and the inverse Hessian there (float64)."""
        design = self._design()
        theta = torch.zeros(2, dtype=torch.float64)
        for _ in range(iterations):  # Newton's method: the log joint is concave
            grad = design.T @ (self.y - torch.sigmoid(design @ theta)) - theta / self.prior_scale ** 2
            step = torch.linalg.solve(self._negative_hessian(theta), grad)
            theta = theta + step
            if step.abs().max() < 1e-12:
                break
        return theta, torch.linalg.inv(self._negative_hessian(theta))

    def laplace_log_evidence(self) -> float:
        """The Laplace approximation to the log evidence."""
        mode, cov = self.laplace()
        return float(self._log_joint(mode[None])[0] + math.log(2 * math.pi)
                     + 0.5 * torch.logdet(cov))


def logistic_regression(n_per_class: int = 15, prior_scale: float = 2.5
                        ) -> LogisticRegressionPosterior:
    """The lesson's Bayesian logistic regression on iris (see the class)."""
    return LogisticRegressionPosterior(n_per_class=n_per_class, prior_scale=prior_scale)
