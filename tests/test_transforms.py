"""Every transform: invertible, log-det equal to autograd's, inverse log-det the negative.

Parameters come from hypothesis, including extreme but valid values.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import flowkit as fk
from transform_helpers import assert_transform_ok, randn, randomise



pytestmark = pytest.mark.usefixtures("float64")

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scales = st.floats(min_value=1e-3, max_value=1e3).flatmap(
    lambda m: st.sampled_from([m, -m]))
shifts = st.floats(min_value=-1e3, max_value=1e3)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@SETTINGS
@given(scale=scales, shift=shifts, seed=seeds)
def test_affine_scalar(scale, shift, seed):
    assert_transform_ok(fk.Affine(scale, shift), randn(seed, 5, 3), atol=1e-6 * max(1, abs(scale), abs(shift)))


@SETTINGS
@given(seed=seeds, log_scale=st.floats(-5, 5))
def test_affine_per_dimension(seed, log_scale):
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(3, generator=g) + log_scale) * torch.sign(torch.randn(3, generator=g))
    assert_transform_ok(fk.Affine(scale, torch.randn(3, generator=g), learnable=True),
                        randn(seed, 6, 3), atol=1e-5 * math.exp(abs(log_scale) + 3))


@SETTINGS
@given(seed=seeds, spread=st.floats(0.01, 5.0))
def test_exp_and_log(seed, spread):
    x = randn(seed, 7, 2, scale=spread)
    assert_transform_ok(fk.Exp(), x, atol=1e-5 * math.exp(3 * spread))
    assert_transform_ok(fk.Log(), torch.exp(x), atol=1e-5 * math.exp(3 * spread))


@SETTINGS
@given(seed=seeds, spread=st.floats(0.01, 6.0))
def test_sigmoid_logit_tanh(seed, spread):
    x = randn(seed, 7, 2, scale=spread).clamp(-12, 12)
    assert_transform_ok(fk.Sigmoid(), x, atol=1e-4)
    assert_transform_ok(fk.Tanh(), x.clamp(-6, 6), atol=1e-4)
    assert_transform_ok(fk.Logit(), torch.sigmoid(x), atol=1e-4)


@SETTINGS
@given(seed=seeds, skew=st.floats(-3, 3), tailweight=st.floats(0.2, 5.0))
def test_sinh_arcsinh(seed, skew, tailweight):
    assert_transform_ok(fk.SinhArcsinh(skew, tailweight), randn(seed, 6, 2, scale=2.0), atol=1e-5)


def test_sinh_arcsinh_identity_at_defaults():
    x = torch.randn(10, 3)
    z, ld = fk.SinhArcsinh()(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ld, torch.zeros(10))


@SETTINGS
@given(seed=seeds, dim=st.integers(1, 6), spread=st.floats(0.05, 20.0))
def test_linear(seed, dim, spread):
    g = torch.Generator().manual_seed(seed)
    # A random well-conditioned matrix: orthogonal times positive diagonal.
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    matrix = q @ torch.diag(torch.rand(dim, generator=g) * spread + 0.05)
    t = fk.Linear(matrix, bias=torch.randn(dim, generator=g))
    assert_transform_ok(t, randn(seed, 5, dim), atol=1e-6 * (1 + spread) ** 2)


def test_linear_determinant_is_exact():
    t = fk.Linear([[2.0, 1.0], [0.0, 3.0]])
    _, ld = t(torch.randn(4, 2))
    torch.testing.assert_close(ld, torch.full((4,), math.log(6.0)))


@SETTINGS
@given(seed=seeds, n=st.integers(1, 8))
def test_permutation_and_reverse(seed, n):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert_transform_ok(fk.Permutation(perm), randn(seed, 4, n))
    assert_transform_ok(fk.Reverse(n), randn(seed, 4, n))
    z, _ = fk.Reverse(n)(torch.arange(float(n)).unsqueeze(0))
    assert z[0].tolist() == list(reversed(range(n)))


@SETTINGS
@given(seed=seeds, spread=st.floats(1e-3, 1e3))
def test_actnorm_vectors_and_images(seed, spread):
    t = fk.ActNorm(3)
    x = randn(seed, 16, 3, scale=spread) + 5.0
    z, _ = t(x)  # first call initialises
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3), atol=1e-6, rtol=0)
    assert_transform_ok(t, randn(seed + 1, 5, 3, scale=spread), atol=1e-6 * (1 + spread))
    image_t = fk.ActNorm(2)
    image_t(randn(seed, 8, 2, 3, 3))
    assert_transform_ok(image_t, randn(seed + 2, 3, 2, 3, 3))


@SETTINGS
@given(seed=seeds, dim=st.integers(2, 6), std=st.floats(0.0, 3.0), parity=st.integers(0, 1))
def test_affine_coupling_vectors(seed, dim, std, parity):
    t = fk.AffineCoupling(fk.alternating_mask(dim, parity), hidden=16)
    randomise(t, seed, std)
    assert_transform_ok(t, randn(seed, 5, dim), atol=1e-5)


@SETTINGS
@given(seed=seeds, std=st.floats(0.0, 1.0), parity=st.integers(0, 1), kind=st.sampled_from(["checker", "channel"]))
def test_couplings_images(seed, std, parity, kind):
    mask = fk.checkerboard_mask(4, 4, parity, channels=2) if kind == "checker" else fk.channel_mask(2, 4, 4, parity)
    for cls in (fk.AffineCoupling, fk.AdditiveCoupling, fk.SplineCoupling):
        t = cls(mask, hidden=8)
        randomise(t, seed, std)
        assert_transform_ok(t, randn(seed, 3, 2, 4, 4), atol=1e-5)


@SETTINGS
@given(seed=seeds, dim=st.integers(2, 6), std=st.floats(0.0, 2.0), bins=st.integers(1, 12),
       spread=st.floats(0.1, 8.0))
def test_spline_coupling_vectors(seed, dim, std, bins, spread):
    """Inside and outside the spline's interval [-4, 4] (the identity there)."""
    t = fk.SplineCoupling(fk.alternating_mask(dim), hidden=16, bins=bins, bound=4.0)
    randomise(t, seed, std)
    assert_transform_ok(t, randn(seed, 5, dim, scale=spread), atol=1e-5)


def test_spline_coupling_starts_at_identity_and_bends_only_the_free_part():
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    t = fk.SplineCoupling(mask, hidden=8, bins=5)
    x = torch.randn(6, 4)
    z, ld = t(x)
    torch.testing.assert_close(z, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, torch.zeros(6), atol=1e-12, rtol=0)
    randomise(t, 0, 1.0)
    z, _ = t(x)
    assert torch.equal(z[:, mask.bool()], x[:, mask.bool()])
    assert not torch.allclose(z[:, ~mask.bool()], x[:, ~mask.bool()])
    far = torch.tensor([[0.0, 9.0, 0.0, -7.5]])
    assert torch.equal(t(far)[0], far)  # beyond +-bound: the identity
    with pytest.raises(ValueError, match="bins"):
        fk.SplineCoupling(mask, bins=0)
    with pytest.raises(ValueError, match="bound"):
        fk.SplineCoupling(mask, bound=0.0)


@SETTINGS
@given(seed=seeds, dim=st.integers(2, 5), std=st.floats(0.0, 3.0))
def test_additive_coupling_is_volume_preserving(seed, dim, std):
    t = fk.AdditiveCoupling(fk.alternating_mask(dim), hidden=16)
    randomise(t, seed, std)
    x = randn(seed, 5, dim)
    assert_transform_ok(t, x, atol=1e-5)
    assert torch.equal(t(x)[1], torch.zeros(5))


def test_coupling_keeps_masked_coordinates_and_starts_at_identity():
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    t = fk.AffineCoupling(mask, hidden=8)
    x = torch.randn(6, 4)
    z, ld = t(x)
    torch.testing.assert_close(z, x)  # zero-initialised last layer: the identity
    torch.testing.assert_close(ld, torch.zeros(6))
    randomise(t, 0, 1.0)
    z, _ = t(x)
    torch.testing.assert_close(z[:, mask.bool()], x[:, mask.bool()])
    assert not torch.allclose(z[:, ~mask.bool()], x[:, ~mask.bool()])


def test_coupling_log_scale_is_soft_clamped():
    t = fk.AffineCoupling(fk.alternating_mask(2), hidden=4, scale_limit=2.0)
    with torch.no_grad():
        t.conditioner[-1].bias.fill_(1e4)
    log_scale, _ = t.scale_shift(torch.randn(3, 2) * fk.alternating_mask(2))
    assert log_scale.abs().max() <= 2.0


@SETTINGS
@given(seed=seeds, std=st.floats(0.0, 0.5), num_couplings=st.integers(1, 6))
def test_realnvp_and_nested_flow(seed, std, num_couplings):
    flow = fk.RealNVP(3, num_couplings=num_couplings, hidden=16)
    randomise(flow, seed, std)
    assert_transform_ok(flow, randn(seed, 4, 3), atol=1e-5)
    chain = fk.Flow([fk.Affine(2.0, 1.0), fk.Tanh(), fk.Logit().inv], fk.StandardNormal(3))
    assert_transform_ok(chain, randn(seed, 4, 3), atol=1e-5)


def test_inverse_wrapper_swaps_directions():
    x = torch.rand(5, 2) + 0.1
    t = fk.Exp()
    z, ld = t.inv(x)
    torch.testing.assert_close(z, t.inverse(x)[0])
    torch.testing.assert_close(ld, t.inverse(x)[1])


def test_check_transform_reports_a_wrong_log_det():
    class BadScale(fk.Transform):
        def forward(self, x):
            return 2 * x, torch.zeros(x.shape[0])  # forgot log 2 per dimension

        def inverse(self, z):
            return z / 2, torch.zeros(z.shape[0])

    report = fk.check_transform(BadScale(), torch.randn(4, 3))
    assert not report.passed
    assert "forward's log|det| is wrong" in str(report)
    assert f"{3 * math.log(2):.6g}" in str(report)


def test_check_transform_reports_a_wrong_inverse():
    class BadInverse(fk.Transform):
        def forward(self, x):
            return x + 1, torch.zeros(x.shape[0])

        def inverse(self, z):
            return z + 1, torch.zeros(z.shape[0])

    report = fk.check_transform(BadInverse(), torch.zeros(2, 2))
    assert not report.passed and "does not give back x" in str(report)


def test_actnorm_waits_for_a_batch_with_spread():
    """A single sample has no spread: ActNorm stays the identity until a larger batch comes."""
    t = fk.ActNorm(2)
    x = torch.tensor([[3.0, -1.0]])
    z, log_abs_det = t(x)
    assert torch.equal(z, x) and torch.equal(log_abs_det, torch.zeros(1)) and not t.initialized
    z, _ = t(torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
    assert t.initialized
    torch.testing.assert_close(z, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2.0))
