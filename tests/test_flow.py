"""Flows define proper densities: they integrate to one and match closed forms."""

import math

import pytest
import torch

import flowkit as fk


def test_flow_density_integrates_to_one_in_1d():
    flow = fk.Flow([fk.SinhArcsinh(0.7, 1.6, learnable=False), fk.Affine(1.5, -0.3)],
                   fk.StandardNormal(1))
    x = torch.linspace(-30, 30, 200_001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        p = flow.double().log_prob(x).exp()
    mass = torch.trapezoid(p, x[:, 0]).item()
    assert abs(mass - 1.0) < 1e-6


def test_trained_shape_realnvp_density_integrates_to_one_in_2d():
    torch.manual_seed(0)
    flow = fk.RealNVP(2, num_couplings=4, hidden=16).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    n = 801
    xs = torch.linspace(-12, 12, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        p = flow.log_prob(pts).exp().reshape(n, n)
    mass = torch.trapezoid(torch.trapezoid(p, xs, dim=1), xs).item()
    assert abs(mass - 1.0) < 2e-3


def test_user_written_transform_gives_exact_log_normal():
    class MyLog(fk.Transform):
        """Data x > 0 to latent z = log x: dz/dx = 1/x."""

        def forward(self, x):
            return torch.log(x), -torch.log(x).sum(dim=1)

        def inverse(self, z):
            return torch.exp(z), z.sum(dim=1)

    flow = fk.Flow([MyLog()], fk.StandardNormal(1))
    x = torch.tensor([[0.1], [0.5], [1.0], [2.0], [7.5]], dtype=torch.float64)
    expected = -torch.log(x[:, 0]) - 0.5 * math.log(2 * math.pi) - 0.5 * torch.log(x[:, 0]) ** 2
    torch.testing.assert_close(flow.double().log_prob(x), expected)
    samples = flow.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert (samples > 0).all()
    assert abs(torch.log(samples).std().item() - 1.0) < 0.02


def test_sample_shapes_temperature_and_stages():
    flow = fk.RealNVP(2, num_couplings=3, hidden=8)
    assert flow.sample(0).shape == (0, 2)
    g = torch.Generator().manual_seed(1)
    cold = flow.sample(10_000, temperature=0.5, generator=g)
    # A fresh RealNVP is the identity: temperature scales the base's standard deviation.
    assert abs(cold.std().item() - 0.5) < 0.02
    x = torch.randn(7, 2)
    stages = flow.forward_stages(x)
    assert len(stages) == 4 and torch.equal(stages[0], x)
    back = flow.inverse_stages(stages[-1])
    torch.testing.assert_close(back[-1], x)


def test_base_log_prob_is_the_standard_normal():
    base = fk.StandardNormal((1, 2, 2))
    z = torch.randn(3, 1, 2, 2)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2, 3))
    torch.testing.assert_close(base.log_prob(z), expected)


def test_jacobian_matches_a_linear_map():
    matrix = torch.tensor([[1.0, 2.0], [-0.5, 3.0]])
    t = fk.Linear(matrix)
    jac = fk.jacobian(t, torch.randn(4, 2))
    torch.testing.assert_close(jac, matrix.expand(4, 2, 2))
    torch.testing.assert_close(fk.log_abs_det_jacobian(t, torch.randn(3, 2)),
                               torch.full((3,), math.log(4.0)))


def test_bits_per_dim_of_a_uniform_model_is_log2_levels():
    log_prob = torch.full((5,), -64 * math.log(17.0))  # uniform over [0, 17)^64
    assert abs(fk.bits_per_dim(log_prob, 64).item() - math.log2(17)) < 1e-6


def test_a_flow_whose_latent_has_another_shape_samples_and_inverts():
    """Data (1, 8, 8) squeezed to a (4, 4, 4) latent: inverse takes the base's shape."""
    from flowkit.images import Squeeze

    flow = fk.Flow([Squeeze()], fk.StandardNormal((4, 4, 4)), event_shape=(1, 8, 8))
    assert flow.latent_shape == (4, 4, 4)
    x = flow.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 8, 8)
    z, _ = flow.forward(x)
    assert torch.equal(flow.inverse(z)[0], x)
    with pytest.raises(ValueError, match=r"\(4, 4, 4\)"):
        flow.inverse(x)
    assert flow.inv.event_shape == (4, 4, 4) and flow.inv.latent_shape == (1, 8, 8)


def test_standard_normal_latent_shape_is_its_event_shape():
    assert fk.StandardNormal(3).latent_shape == (3,)
    assert fk.StandardNormal((1, 8, 8)).latent_shape == (1, 8, 8)


def test_ready_made_flows_are_flows_with_one_cascade():
    for flow in (fk.RealNVP(2, num_couplings=2, hidden=4), fk.MAF(3, num_layers=2, hidden=4)):
        assert isinstance(flow, fk.Flow) and isinstance(flow, fk.Chain)
    chain = fk.Chain([fk.Affine(2.0, 1.0), fk.Exp()])
    x = torch.tensor([[0.5], [-1.0]])
    z, log_abs_det = chain(x)
    torch.testing.assert_close(z, torch.exp(2.0 * x + 1.0))
    torch.testing.assert_close(log_abs_det, math.log(2.0) + (2.0 * x + 1.0)[:, 0])
    x_back, inverse_log_abs_det = chain.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_log_abs_det, -log_abs_det)


def test_a_torch_distribution_as_base_is_refused_clearly():
    with pytest.raises(TypeError, match="fk.StandardNormal"):
        fk.Flow([fk.Tanh()], torch.distributions.Normal(torch.zeros(2), torch.ones(2)))
