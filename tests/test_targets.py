"""Targets: log Z and marginals by quadrature, checked against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

import flowkit as fk
from flowkit import targets as T


def _np_log_u1(x, y):
    r = math.hypot(x, y)
    return (-0.5 * ((r - 2) / 0.4) ** 2
            + np.logaddexp(-0.5 * ((x - 2) / 0.6) ** 2, -0.5 * ((x + 2) / 0.6) ** 2))


def test_u1_log_Z_matches_polar_integration_and_published_value():
    def integrand(r, theta):
        return math.exp(_np_log_u1(r * math.cos(theta), r * math.sin(theta))) * r

    value, _ = integrate.dblquad(integrand, 0, 2 * math.pi, 0, 8, epsabs=1e-11, epsrel=1e-11)
    assert T.U1.log_Z == pytest.approx(math.log(value), abs=1e-4)
    assert T.U1.log_Z == pytest.approx(1.8775, abs=1e-4)  # 2001^2 grid over [-6, 6]^2


@pytest.mark.parametrize("name, widths", [("U2", [0.4]), ("U3", [0.35, 0.35]),
                                           ("U4", [0.4, 0.35])])
def test_wavy_energies_log_Z_is_analytic(name, widths):
    # Integrating z2 first, each Gaussian term gives width * sqrt(2 pi) whatever z1 is;
    # the wall integrates to 2 Gamma(1 + 1/p) a^(-1/p) with a = 0.5 / 4^p.
    p = T.WALL_POWER
    a = 0.5 / T.WALL_SCALE ** p
    log_wall = math.log(2 * special.gamma(1 + 1 / p)) - math.log(a) / p
    exact = math.log(sum(w * math.sqrt(2 * math.pi) for w in widths)) + log_wall
    assert T.ENERGIES[name].log_Z == pytest.approx(exact, abs=1e-4)


def test_u2_marginal_of_z1_is_the_wall_and_u1_marginal_matches_1d_quadrature():
    xs, px, ys, py = T.U2.marginals()
    wall = np.exp(-0.5 * (xs / T.WALL_SCALE) ** T.WALL_POWER)
    wall /= integrate.quad(lambda t: math.exp(-0.5 * (t / 4) ** 8), -10, 10)[0]
    assert np.abs(px - wall).max() < 1e-4
    xs, px, ys, py = T.U1.marginals()
    for i in (300, 500, 600, 777, 900):
        expected = integrate.quad(lambda y: math.exp(_np_log_u1(xs[i], y)), -8, 8,
                                  epsabs=1e-12, points=[-2, 0, 2], limit=200)[0]
        assert px[i] == pytest.approx(expected / math.exp(T.U1.log_Z), abs=1e-4)
    for marginal, axis in ((px, xs), (py, ys)):
        assert np.trapezoid(marginal, axis) == pytest.approx(1.0, abs=1e-6)


def test_two_gaussians_quadrature_is_exact():
    for separation in (0.0, 3.0, 7.0):
        target = T.two_gaussians(separation, scale=0.5)
        assert target.log_Z == pytest.approx(math.log(2 * 2 * math.pi * 0.25), abs=1e-6)
    with pytest.raises(ValueError, match="separation"):
        T.two_gaussians(-1.0)


def test_grid_sampling_follows_the_density():
    target = T.two_gaussians(4.0, scale=0.5)
    x = target.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 2)
    assert x[:, 0].abs().mean().item() == pytest.approx(2.0, abs=0.03)
    assert x[:, 1].std().item() == pytest.approx(0.5, abs=0.02)
    assert (x[:, 0] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_density_grid_is_normalised():
    n = 200
    box = T.U1.extent
    dens = T.U1.density_grid(n, box=box)
    cell = (box[1] - box[0]) / (n - 1) * (box[3] - box[2]) / (n - 1)
    assert dens.sum() * cell == pytest.approx(1.0, abs=1e-3)


def test_funnel_is_normalised_and_its_x_marginal_matches_quadrature():
    f = T.funnel
    assert f.log_Z == 0.0

    def np_log_funnel(x, v):
        return -v * v / 18 - 0.5 * x * x * math.exp(-v) - v / 2 - math.log(3 * 2 * math.pi)

    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 3.0])
    expected = torch.tensor([np_log_funnel(x, v) for x, v in z.tolist()], dtype=torch.float64)
    assert torch.allclose(f.log_prob(z), expected, atol=1e-10)

    # Substituting x = exp(v/2) u makes the neck a plain Gaussian: the integral must be 1.
    value, _ = integrate.dblquad(
        lambda u, v: math.exp(np_log_funnel(math.exp(v / 2) * u, v) + v / 2),
        -30, 30, -10, 10, epsabs=1e-9)
    assert value == pytest.approx(1.0, abs=1e-4)
    xs, px, vs, pv = f.marginals()
    for x in (0.05, 0.5, 2.0, 10.0):
        i = int(np.argmin(np.abs(xs - x)))
        expected = integrate.quad(
            lambda v: math.exp(np_log_funnel(xs[i], v)), -40, 40, limit=400, epsabs=1e-12)[0]
        assert px[i] == pytest.approx(expected, abs=1e-4, rel=1e-4)
    assert np.trapezoid(pv, vs) == pytest.approx(1.0, abs=1e-3)
    samples = f.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert samples[:, 1].std().item() == pytest.approx(3.0, abs=0.05)


def _np_log_joint(post, a, b):
    x, y = post.x.numpy(), post.y.numpy()
    logits = a + b * x
    log_lik = np.sum(-np.logaddexp(0, -logits) * y - np.logaddexp(0, logits) * (1 - y))
    s = post.prior_scale
    return log_lik - 0.5 * (a * a + b * b) / s ** 2 - math.log(2 * math.pi * s * s)


def test_logistic_regression_evidence_and_marginal_match_scipy():
    post = T.logistic_regression()
    assert len(post.x) == 30 and post.y.sum() == 15
    x0, x1, y0, y1 = post.extent
    value, _ = integrate.dblquad(lambda b, a: math.exp(_np_log_joint(post, a, b)),
                                 x0, x1, y0, y1, epsabs=1e-10, epsrel=1e-7)
    assert post.log_Z == pytest.approx(math.log(value), abs=1e-4)
    xs, px, ys, py = post.marginals()
    for i in (200, 300, 380):
        expected = integrate.quad(lambda b: math.exp(_np_log_joint(post, xs[i], b)), y0, y1,
                                  epsabs=1e-14, limit=200)[0] / value
        assert px[i] == pytest.approx(expected, abs=1e-4)


def test_laplace_mode_and_covariance_agree_with_autograd():
    post = T.logistic_regression()
    mode, cov = post.laplace()
    log_joint = lambda t: post.log_prob(t[None])[0]  # noqa: E731
    grad = torch.func.grad(log_joint)(mode)
    assert grad.abs().max() < 1e-8
    hessian = torch.func.hessian(log_joint)(mode)
    assert torch.allclose(cov, torch.linalg.inv(-hessian), atol=1e-8)
    # The posterior is skewed: the mean slope lies above the mode, so Laplace is off.
    xs, px, ys, py = post.marginals()
    assert np.trapezoid(ys * py, ys) > mode[1].item() + 0.2
    assert abs(post.laplace_log_evidence() - post.log_Z) < 0.2


def test_targets_refuse_bad_input():
    with pytest.raises(ValueError, match="batch dimension"):
        T.U1.log_prob(torch.zeros(2))
    with pytest.raises(TypeError, match="NumPy"):
        T.U1.log_prob(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected"):
        T.U3.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="feature"):
        T.LogisticRegressionPosterior(feature="colour")
    assert fk.targets.U4.log_prob(torch.zeros(5, 2)).shape == (5,)


def test_funnel_in_ten_dimensions():
    f = T.Funnel(dim=10)
    assert f.log_Z == 0.0
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20, 10, generator=g, dtype=torch.float64) * 2
    v, x = z[:, -1], z[:, :-1]
    normal = torch.distributions.Normal
    expected = (normal(0.0, 3.0).log_prob(v)
                + normal(torch.zeros(()), torch.exp(v / 2)[:, None]).log_prob(x).sum(1))
    assert torch.allclose(f.log_prob(z), expected, atol=1e-10)
    samples = f.sample(40_000, generator=g)
    assert samples.shape == (40_000, 10)
    assert samples[:, -1].std().item() == pytest.approx(3.0, abs=0.05)
    with pytest.raises(ValueError, match="2-D funnel"):
        f.marginals()
    with pytest.raises(ValueError, match="expected"):
        f.log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="dim >= 2"):
        T.Funnel(dim=1)
