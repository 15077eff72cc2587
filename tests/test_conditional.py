"""Conditional couplings and flows: exact for every context, and clear about bad contexts."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import flowkit as fk
from flowkit import conditional_data as cd
from flowkit.conditional import (
    ConditionalAffineCoupling,
    ConditionalImageRealNVP,
    ConditionalRealNVP,
    ConditionalSplineCoupling,
    Standardize,
)
from flowkit.transforms import alternating_mask, checkerboard_mask



def _randomize(module, scale=0.3, seed=0):
    """Non-zero weights everywhere, so every coupling really depends on x and the context."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def _autograd_log_det(fn, x):
    """log|det J| of ``fn`` at each row of ``x`` (one sample at a time), by autograd."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0].reshape(-1), row)
        out.append(torch.linalg.slogdet(jac.reshape(row.numel(), row.numel()))[1])
    return torch.stack(out)


def _coupling(kind, dim, context_dim, parity, seed):
    mask = alternating_mask(dim, parity)
    if kind == "affine":
        t = ConditionalAffineCoupling(mask, context_dim, hidden=16)
    else:
        t = ConditionalSplineCoupling(mask, context_dim, hidden=16, bins=5, bound=3.0)
    return _randomize(t.double(), seed=seed)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["affine", "spline"]), dim=st.integers(2, 5), context_dim=st.integers(1, 3),
       parity=st.integers(0, 1), seed=st.integers(0, 10_000))
def test_conditional_couplings_invert_and_log_det_matches_autograd(kind, dim, context_dim, parity, seed):
    t = _coupling(kind, dim, context_dim, parity, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, dim, generator=g, dtype=torch.float64) * 1.5
    context = torch.randn(4, context_dim, generator=g, dtype=torch.float64) * 2
    z, log_det = t(x, context)
    x_back, log_det_inv = t.inverse(z, context)
    assert torch.allclose(x_back, x, atol=1e-8)
    assert torch.allclose(log_det_inv, -log_det, atol=1e-8)
    for i in range(len(x)):  # the context is fixed while differentiating: one Jacobian per context
        expected = _autograd_log_det(lambda v: t(v, context[i:i + 1]), x[i:i + 1])
        assert torch.allclose(log_det[i:i + 1], expected, atol=1e-7)


@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_check_transform_passes_per_context(kind):
    t = _coupling(kind, 4, 2, 1, seed=5).float()
    x, context = torch.randn(6, 4), torch.randn(6, 2) * 3
    result = fk.check_transform(t, x, context=context)
    assert result.passed, str(result)


def test_context_changes_the_map_but_not_the_kept_half():
    t = _coupling("affine", 4, 2, 0, seed=3)
    x = torch.randn(5, 4, dtype=torch.float64)
    z1, _ = t(x, torch.zeros(5, 2, dtype=torch.float64))
    z2, _ = t(x, torch.ones(5, 2, dtype=torch.float64))
    kept = t.mask.bool()
    assert torch.equal(z1[:, kept], x[:, kept]) and torch.equal(z2[:, kept], x[:, kept])
    assert not torch.allclose(z1[:, ~kept], z2[:, ~kept])


@pytest.mark.parametrize("context_shape", [(3,), (3, 4, 4), (3, 8, 8)])
def test_image_coupling_with_vector_or_map_context(context_shape):
    mask = checkerboard_mask(4, 4, 0, channels=1)
    features = 3 if len(context_shape) < 3 or context_shape[1] == 4 else 12  # a squeeze makes 4x the channels
    t = _randomize(ConditionalAffineCoupling(mask, features, hidden=8).double(), seed=1)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    context = torch.randn(2, *context_shape, dtype=torch.float64)
    z, log_det = t(x, context)
    assert torch.allclose(t.inverse(z, context)[0], x, atol=1e-8)
    for i in range(2):
        expected = _autograd_log_det(lambda v: t(v, context[i:i + 1]), x[i:i + 1])
        assert torch.allclose(log_det[i:i + 1], expected, atol=1e-7)


def _density_mass(flow, context, extent=12.0, n=700):
    xs = torch.linspace(-extent, extent, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    points = torch.stack([gx.ravel(), gy.ravel()], 1)
    with torch.no_grad():
        log_p = flow.log_prob(points, context=context.expand(len(points), *context.shape[1:]))
    cell = (xs[1] - xs[0]) ** 2
    return float(log_p.exp().sum() * cell)


@pytest.mark.parametrize("value", [-1.0, 0.0, 2.5])
def test_density_integrates_to_one_for_each_fixed_context(value):
    flow = _randomize(ConditionalRealNVP(2, 1, num_couplings=4, hidden=16), scale=0.15, seed=7).double()
    mass = _density_mass(flow, torch.tensor([[value]], dtype=torch.float64))
    assert abs(mass - 1.0) < 1e-2


@pytest.mark.parametrize("label", [0, 1, 2])
def test_label_flow_density_integrates_to_one_for_each_class(label):
    flow = _randomize(ConditionalRealNVP(2, 4, num_couplings=4, hidden=16, classes=3), scale=0.15, seed=8).double()
    assert abs(_density_mass(flow, torch.tensor([label])) - 1.0) < 1e-2


def test_label_flow_gives_each_class_its_own_density():
    flow = _randomize(ConditionalRealNVP(2, 4, num_couplings=4, hidden=16, classes=3), scale=0.5, seed=9)
    x = torch.randn(6, 2)
    a = flow.log_prob(x, context=torch.zeros(6, dtype=torch.long))
    b = flow.log_prob(x, context=torch.full((6,), 2, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_sampling_with_one_context_or_one_per_sample():
    flow = _randomize(ConditionalRealNVP(2, 4, num_couplings=2, hidden=8, classes=3), seed=1)
    assert flow.sample(5, context=torch.tensor(1)).shape == (5, 2)
    assert flow.sample(5, context=torch.tensor([2])).shape == (5, 2)
    labels = torch.tensor([0, 1, 2, 0, 1])
    x = flow.sample(5, context=labels)
    z, _ = flow.forward(x, context=labels)
    assert torch.allclose(flow.inverse(z, context=labels)[0], x, atol=1e-5)


def test_image_flows_invert_for_labels_and_context_images():
    images = fk.data.digits("test")[:3]
    x = fk.data.dequantize(images, generator=torch.Generator().manual_seed(0))
    for flow, context in [
        (ConditionalImageRealNVP(classes=10, hidden=8, couplings=2), torch.tensor([3, 1, 4])),
        (ConditionalImageRealNVP(context_channels=3, hidden=8, couplings=2, spline_bins=4), cd.degrade(images, "top")),
    ]:
        _randomize(flow, scale=0.05, seed=2)
        z, log_det = flow.forward(x, context=context)
        x_back, log_det_inv = flow.inverse(z, context=context)
        assert torch.allclose(x_back, x, atol=1e-3)
        assert torch.allclose(log_det, -log_det_inv, atol=1e-3)
        assert flow.log_prob(x, context=context).shape == (3,)


def test_unconditional_twin_has_the_same_architecture():
    twin = ConditionalImageRealNVP(hidden=8, couplings=3)
    labelled = ConditionalImageRealNVP(classes=10, hidden=8, couplings=3)
    x = fk.data.dequantize(fk.data.digits("test")[:2])
    assert twin.log_prob(x).shape == (2,)
    extra = sum(p.numel() for p in labelled.parameters()) - sum(p.numel() for p in twin.parameters())
    # Only the label embedding (10 x 8) and 8 input channels more in each of the 6 couplings'
    # first 3x3 convolution (8 hidden channels).
    assert extra == 10 * 8 + 6 * (8 * 8 * 3 * 3)


def test_checkpoint_round_trip(tmp_path):
    from flowkit.pretrained import load_checkpoint, save_checkpoint

    flow = _randomize(ConditionalImageRealNVP(classes=10, hidden=8, couplings=2), scale=0.05, seed=4).eval()
    path = tmp_path / "c.pt"
    digest = save_checkpoint(flow, path)
    loaded = load_checkpoint(path, expected_sha256=digest)
    x = fk.data.dequantize(fk.data.digits("test")[:4])
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(loaded.log_prob(x, context=labels), flow.log_prob(x, context=labels))


# ----------------------------------------------------------------------------------
# Bad contexts
# ----------------------------------------------------------------------------------


def test_coupling_without_context_says_it_is_conditional():
    t = ConditionalAffineCoupling(alternating_mask(4), 2, hidden=8)
    with pytest.raises(TypeError, match="conditional"):
        t(torch.randn(3, 4))
    with pytest.raises(ValueError, match="context features"):
        t(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="batch size"):
        t(torch.randn(3, 4), torch.randn(2, 2))


def test_flow_refuses_bad_contexts():
    flow = ConditionalRealNVP(2, 1, num_couplings=2, hidden=8)
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match="context"):
        flow.log_prob(x)                                   # missing
    with pytest.raises(ValueError):
        flow.log_prob(x, context=torch.randn(4, 3))        # wrong shape
    with pytest.raises(ValueError):
        flow.log_prob(x, context=torch.randn(3, 1))        # wrong batch
    with pytest.raises(ValueError):
        flow.log_prob(x, context=torch.full((4, 1), float("nan")))
    with pytest.raises(TypeError):
        flow.log_prob(x, context=torch.randn(4, 1).numpy())
    with pytest.raises((TypeError, ValueError), match="context"):
        fk.RealNVP(2, 2, 8).log_prob(x, context=torch.randn(4, 1))  # given where none is taken


def test_label_flow_refuses_bad_labels():
    flow = ConditionalRealNVP(2, 4, num_couplings=2, hidden=8, classes=3)
    x = torch.randn(4, 2)
    with pytest.raises(TypeError):
        flow.log_prob(x, context=torch.zeros(4))           # float where labels are expected
    with pytest.raises(ValueError):
        flow.log_prob(x, context=torch.tensor([0, 1, 3, 0]))   # out of range


def test_constructor_errors():
    with pytest.raises(ValueError):
        ConditionalRealNVP(1, 2)
    with pytest.raises(ValueError):
        ConditionalRealNVP(2, 0)
    with pytest.raises(ValueError):
        ConditionalRealNVP(2, 2, classes=1)
    with pytest.raises(ValueError):
        ConditionalImageRealNVP(classes=10, context_channels=3)
    with pytest.raises(ValueError):
        Standardize(0.0, 0.0)


# ----------------------------------------------------------------------------------
# Data for conditional flows
# ----------------------------------------------------------------------------------


def test_moons_at_noise_levels_share_points_evenly():
    x, c = cd.moons_at_noise_levels(700, [0.1, 0.2])
    assert x.shape == (700, 2) and c.shape == (700, 1)
    assert (c == 0.1).sum() == 350 and (c == 0.2).sum() == 350
    with pytest.raises(ValueError):
        cd.moons_at_noise_levels(10, [0.1, -1.0])


def test_tone_spectrum_peaks_at_the_pitch():
    x, context = cd.tone_windows(200, pitch=500.0, brightness=0.0, window=64)
    assert x.shape == (200, 64) and torch.allclose(context[:, 0], torch.full((200,), 500.0))
    freqs, magnitude = cd.magnitude_spectrum(x)
    assert freqs[magnitude.argmax()] == 500.0           # bin spacing 8000 / 64 = 125 Hz
    bright, _ = cd.tone_windows(200, pitch=500.0, brightness=1.0, window=64)
    _, bright_mag = cd.magnitude_spectrum(bright)
    assert bright_mag[8] > 5 * magnitude[8]              # the second harmonic, 1000 Hz, appears
    with pytest.raises(ValueError):
        cd.tone_windows(3, pitch=2000.0)


def test_degrade_keeps_exactly_what_it_says():
    images = fk.data.digits("test")[:5]
    top = cd.degrade(images, "top")
    assert torch.allclose(top[:, 0, :4] * 16, images[:, 0, :4].float())
    assert (top[:, 0, 4:] == 0).all() and (top[:, 1, :4] == 1).all() and (top[:, 1:, 4:] == 0).all()
    low = cd.degrade(images, "lowres")
    assert torch.allclose(low[:, 0, ::2, ::2] * 16, torch.nn.functional.avg_pool2d(images.float(), 2)[:, 0])
    shown = cd.visible_part(top)
    assert torch.isnan(shown[:, 4:]).all() and not torch.isnan(shown[:, :4]).any()
    with pytest.raises(TypeError):
        cd.degrade(images.float(), "top")
    with pytest.raises(ValueError):
        cd.degrade(images, "left")


# ----------------------------------------------------------------------------------
# Shipped conditional checkpoints
# ----------------------------------------------------------------------------------

SHIPPED = ["digits-conditional-realnvp", "digits-same-budget-realnvp", "digits-completion-realnvp"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_conditional_checkpoints_are_small_and_match_their_hash(name):
    from flowkit.pretrained import CHECKPOINT_DIR, PRETRAINED, file_sha256

    path = CHECKPOINT_DIR / PRETRAINED[name]["file"]
    assert path.stat().st_size <= 5_000_000
    assert file_sha256(path) == PRETRAINED[name]["sha256"]
    flow = fk.load_pretrained(name)
    assert not flow.training and isinstance(flow, ConditionalImageRealNVP)


def test_pretrained_labels_matter_and_take_level_units():
    flow = fk.load_pretrained("digits-conditional-realnvp")
    images, labels = fk.data.digits("test", return_labels=True)
    x = fk.data.dequantize(images[:40], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        right = flow.log_prob(x, context=labels[:40]).mean()
        wrong = flow.log_prob(x, context=(labels[:40] + 1) % 10).mean()
    assert right > wrong + 10   # nats per image: the right label explains the digit far better
    with pytest.raises(ValueError):
        flow.log_prob(x, context=torch.full((40,), 10))
