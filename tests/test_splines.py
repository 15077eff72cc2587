"""Rational-quadratic splines on [0, 1]: monotone, exact inverse, log-derivative = autograd."""

import pytest
import torch

from flowkit.splines import num_spline_params, unit_spline


def random_case(n=2000, bins=6, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, generator=g, dtype=torch.float64)
    params = scale * torch.randn(n, num_spline_params(bins), generator=g, dtype=torch.float64)
    return values, params


@pytest.mark.parametrize("bins,scale", [(1, 1.0), (4, 0.5), (8, 2.0), (16, 3.0)])
def test_inverse_undoes_forward_and_log_derivatives_cancel(bins, scale):
    u, p = random_case(bins=bins, scale=scale)
    y, ld = unit_spline(u, p)
    u_back, ld_inv = unit_spline(y, p, inverse=True)
    torch.testing.assert_close(u_back, u, atol=1e-9, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-8, rtol=0)
    assert ((y >= 0) & (y <= 1)).all()


def test_log_derivative_matches_autograd():
    u, p = random_case(bins=8, scale=2.0, seed=1)
    u = u.requires_grad_()
    y, ld = unit_spline(u, p)
    (grad,) = torch.autograd.grad(y.sum(), u)
    torch.testing.assert_close(ld, grad.log(), atol=1e-10, rtol=0)


def test_monotone_with_fixed_ends_and_identity_at_zero_parameters():
    grid = torch.linspace(0, 1, 501, dtype=torch.float64)
    p = 2.0 * torch.randn(num_spline_params(5), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y, _ = unit_spline(grid, p.expand(501, -1))
    assert (y.diff() > 0).all()
    assert y[0] == 0 and y[-1] == 1
    same, ld = unit_spline(grid, torch.zeros(501, num_spline_params(5), dtype=torch.float64))
    torch.testing.assert_close(same, grid, atol=1e-12, rtol=0)
    assert ld.abs().max() < 1e-12


def test_outside_the_unit_interval_is_the_identity():
    u = torch.tensor([-2.0, -1e-3, 1.0 + 1e-3, 5.0], dtype=torch.float64)
    p = torch.randn(4, num_spline_params(4), dtype=torch.float64)
    for inverse in (False, True):
        y, ld = unit_spline(u, p, inverse=inverse)
        assert torch.equal(y, u) and (ld == 0).all()


def test_bad_parameter_shapes_say_what_was_expected():
    with pytest.raises(ValueError, match=r"3K\+1"):
        unit_spline(torch.rand(3), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="do not match"):
        unit_spline(torch.rand(3), torch.zeros(4, 7))
