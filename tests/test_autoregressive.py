"""MADE masks, the masked autoregressive transform and MAF.

Same properties as every transform (invertible, log-det equal to autograd's, inverse
log-det the negative), plus what makes them autoregressive: a triangular Jacobian in the
generation order, one conditioner pass for the density and ``dim`` passes for sampling.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import flowkit as fk
from transform_helpers import assert_transform_ok, randn, randomise


pytestmark = pytest.mark.usefixtures("float64")


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def random_order(seed, dim):
    return torch.randperm(dim, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------
# The transform: exact inverse and log-determinant
# ----------------------------------------------------------------------------------


@SETTINGS
@given(seed=seeds, dim=st.integers(1, 7), std=st.floats(0.0, 2.0), shuffled=st.booleans(),
       layers=st.integers(0, 2))
def test_masked_autoregressive_is_an_exact_transform(seed, dim, std, shuffled, layers):
    order = random_order(seed, dim) if shuffled else None
    t = fk.MaskedAutoregressive(dim, hidden=max(dim, 6), num_hidden_layers=layers, order=order)
    randomise(t, seed, std)
    assert_transform_ok(t, randn(seed, 5, dim, scale=2.0), atol=1e-5)


@SETTINGS
@given(seed=seeds, std=st.floats(0.0, 0.5), num_layers=st.integers(1, 4),
       permutation=st.sampled_from(["reverse", "random"]), actnorm=st.booleans())
def test_maf_is_an_exact_transform(seed, std, num_layers, permutation, actnorm):
    flow = fk.MAF(4, num_layers=num_layers, hidden=12, permutation=permutation,
                  actnorm=actnorm, seed=seed)
    flow(randn(seed + 1, 32, 4))  # initialise any ActNorm from a batch
    randomise(flow, seed, std)
    assert_transform_ok(flow, randn(seed, 5, 4), atol=1e-5)


def test_new_maf_is_the_identity_and_its_density_is_the_base():
    flow = fk.MAF(3, num_layers=3, hidden=8)
    x = torch.randn(10, 3)
    z, ld = flow(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ld, torch.zeros(10))
    torch.testing.assert_close(flow.log_prob(x), fk.StandardNormal(3).log_prob(x))


def test_log_scale_is_soft_clamped():
    t = fk.MaskedAutoregressive(3, hidden=4, scale_limit=2.0)
    with torch.no_grad():
        t.conditioner.net[-1].bias.fill_(1e4)
    mu, alpha = t.mean_log_scale(torch.randn(5, 3))
    assert alpha.abs().max() <= 2.0
    z, ld = t(torch.randn(5, 3))
    assert torch.isfinite(z).all() and torch.isfinite(ld).all()


def test_conditionals_are_gaussians_with_the_conditioner_mean_and_scale():
    """p(x_i | x_<i) = N(mu_i, exp(alpha_i)^2): the product-of-conditionals reading."""
    flow = fk.MAF(3, num_layers=1, hidden=8)
    layer = flow.transforms[0]
    randomise(layer, 3, 0.7)
    x = torch.randn(6, 3)
    mu, alpha = layer.mean_log_scale(x)
    conditionals = torch.distributions.Normal(mu, alpha.exp()).log_prob(x).sum(dim=1)
    torch.testing.assert_close(flow.log_prob(x), conditionals)


# ----------------------------------------------------------------------------------
# Autoregressive structure
# ----------------------------------------------------------------------------------


@SETTINGS
@given(seed=seeds, dim=st.integers(2, 7), shuffled=st.booleans(), layers=st.integers(1, 3))
def test_jacobian_is_triangular_in_the_generation_order(seed, dim, shuffled, layers):
    order = random_order(seed, dim) if shuffled else torch.arange(dim)
    t = fk.MaskedAutoregressive(dim, hidden=2 * dim, num_hidden_layers=layers, order=order)
    randomise(t, seed, 1.0)
    jac = fk.jacobian(t.forward, randn(seed, 3, dim))
    position = torch.empty(dim, dtype=torch.long)
    position[order] = torch.arange(dim)
    later = position[None, :] > position[:, None]  # [i, j]: j generated after i
    assert (jac[:, later] == 0).all()
    # Reordered by generation order, the Jacobian is lower triangular with a non-zero diagonal.
    reordered = jac[:, order][:, :, order]
    torch.testing.assert_close(reordered, torch.tril(reordered))
    assert (torch.diagonal(reordered, dim1=1, dim2=2).abs() > 0).all()
    # The inverse's Jacobian has the same pattern.
    z, _ = t(randn(seed, 3, dim))
    assert (fk.jacobian(t.inverse, z)[:, later].abs() < 1e-12).all()


def test_made_outputs_depend_only_on_earlier_features():
    made = fk.MADE(5, outputs_per_feature=3, hidden=10, order=[2, 0, 4, 1, 3])
    randomise(made, 0, 1.0)
    jac = fk.jacobian(made, randn(0, 16, 5))  # (16, 15, 5)
    position = torch.empty(5, dtype=torch.long)
    position[made.order] = torch.arange(5)
    for block in range(3):
        for i in range(5):
            row = jac[:, block * 5 + i]
            allowed = position < position[i]
            assert (row[:, ~allowed] == 0).all()
            if allowed.any():
                assert (row[:, allowed] != 0).any()  # hidden degrees cover every earlier feature
    first = made.order[0]
    assert (jac[:, first::5] == 0).all()  # the first feature's conditional is unconditional


def test_autoregressive_mask_rules():
    ins = torch.tensor([1, 2, 3])
    hidden = torch.tensor([1, 2])
    torch.testing.assert_close(fk.autoregressive_mask(ins, hidden),
                               torch.tensor([[1.0, 0, 0], [1, 1, 0]]))
    torch.testing.assert_close(fk.autoregressive_mask(hidden, ins, strict=True),
                               torch.tensor([[0.0, 0], [1, 0], [1, 1]]))


def test_density_is_one_conditioner_pass_and_sampling_is_dim_passes():
    dim = 6
    t = fk.MaskedAutoregressive(dim, hidden=12)
    randomise(t, 1, 0.5)
    calls = []
    handle = t.conditioner.register_forward_hook(lambda *args: calls.append(1))
    try:
        x = torch.randn(4, dim)
        z, _ = t(x)
        assert len(calls) == 1
        calls.clear()
        t.inverse(z)
        assert len(calls) == dim
    finally:
        handle.remove()
    # A whole MAF: one pass per layer for the density, dim per layer for samples.
    flow = fk.MAF(dim, num_layers=3, hidden=12)
    counts = []
    handles = [layer.conditioner.register_forward_hook(lambda *a: counts.append(1))
               for layer in flow.transforms if isinstance(layer, fk.MaskedAutoregressive)]
    try:
        flow.log_prob(torch.randn(5, dim))
        assert len(counts) == 3
        counts.clear()
        flow.sample(5)
        assert len(counts) == 3 * dim
    finally:
        for h in handles:
            h.remove()


def test_masked_weights_get_no_gradient():
    made = fk.MADE(4, hidden=8)
    randomise(made, 0, 1.0)
    made(torch.randn(3, 4)).sum().backward()
    for layer in made.net:
        if isinstance(layer, fk.MaskedLinear):
            assert (layer.weight.grad[layer.mask == 0] == 0).all()


def test_maf_density_integrates_to_one_in_2d():
    flow = fk.MAF(2, num_layers=4, hidden=16)
    randomise(flow, 0, 0.2)
    n = 501
    xs = torch.linspace(-10, 10, n)
    xx, yy = torch.meshgrid(xs, xs, indexing="ij")
    with torch.no_grad():
        p = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp().reshape(n, n)
    mass = torch.trapezoid(torch.trapezoid(p, xs, dim=1), xs).item()
    assert abs(mass - 1.0) < 2e-3


def test_samples_follow_the_model_density():
    """Samples from the D-pass inverse land where log_prob says the mass is."""
    flow = fk.MAF(2, num_layers=4, hidden=16)
    randomise(flow, 1, 0.25)
    with torch.no_grad():
        x = flow.sample(10_000, generator=torch.Generator().manual_seed(0))
        # E_p[-log p] from samples vs the same integral on a grid.
        nll_samples = -flow.log_prob(x).mean().item()
        n = 401
        xs = torch.linspace(-10, 10, n)
        xx, yy = torch.meshgrid(xs, xs, indexing="ij")
        logp = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).reshape(n, n)
        integrand = -(logp.exp() * logp)
        entropy = torch.trapezoid(torch.trapezoid(integrand, xs, dim=1), xs).item()
    assert abs(nll_samples - entropy) < 0.05


# ----------------------------------------------------------------------------------
# Training and bad input
# ----------------------------------------------------------------------------------


def test_maf_learns_two_moons_quickly():
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)  # the initial weights; fit seeds the batches itself
        flow = fk.MAF(2, num_layers=4, hidden=32)
        data = fk.data.two_moons(2000, seed=1)
        before = fk.mean_nll(flow, data)
        fk.fit(flow, data, steps=200, batch_size=128, lr=3e-3, progress=False)
        after = fk.mean_nll(flow, data)
    finally:
        torch.set_default_dtype(torch.float64)
    # A new MAF is the standard normal (about 2.50 nats here); the floor is about 1.01.
    assert before == pytest.approx(2.504, abs=0.01)
    assert after < 1.6


def test_bad_input_is_refused_clearly():
    t = fk.MaskedAutoregressive(3, hidden=4)
    flow = fk.MAF(3, hidden=4)
    with pytest.raises(ValueError, match=r"expected \(batch, 3\)"):
        t(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"missing its batch dimension"):
        flow.log_prob(torch.zeros(3))
    with pytest.raises(TypeError, match="NumPy"):
        flow.log_prob(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        t.inverse(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow.log_prob(torch.tensor([[0.0, math.nan, 1.0]]))
    with pytest.raises(ValueError, match="hidden=2 is too small for dim=5"):
        fk.MAF(5, hidden=2)
    with pytest.raises(ValueError, match="each feature 0..2 exactly once"):
        fk.MaskedAutoregressive(3, order=[0, 0, 1])
    with pytest.raises(TypeError, match="order must be"):
        fk.MADE(3, order=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="permutation must be"):
        fk.MAF(3, permutation="shuffle")
    with pytest.raises(ValueError, match="at least one layer"):
        fk.MAF(3, num_layers=0)
    with pytest.raises(ValueError, match="non-negative"):
        fk.MAF(-2)
    with pytest.raises(TypeError, match="must be an int"):
        fk.MAF(2.5)
    with pytest.raises(ValueError, match="scale_limit must be positive"):
        fk.MaskedAutoregressive(3, scale_limit=0.0)
    with pytest.raises(ValueError, match=r"mask must have shape \(out_features, in_features\)"):
        fk.MaskedLinear(3, 2, torch.ones(3, 2))
    with pytest.raises(ValueError, match="only 0"):
        fk.MaskedLinear(2, 2, torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        flow.sample(-1)
