"""Image transforms and the image RealNVP: invertible, log-dets equal to autograd's."""

import math

import pytest
import torch

import flowkit as fk
from flowkit.images import (
    Chain,
    ImageRealNVP,
    LogitPreprocess,
    Reshape,
    ResNetConditioner,
    Split,
    Squeeze,
    Unsqueeze,
    dequantized_bits_per_dim,
    squeeze,
    unsqueeze,
)
from transform_helpers import assert_transform_ok


pytestmark = pytest.mark.usefixtures("float64")


def levels_batch(n, shape=(1, 4, 4), levels=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, *shape), generator=g).double() + torch.rand(n, *shape, generator=g)


def perturb(module, std=0.05, seed=0):
    """Move every parameter away from its (identity) initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return module


def assert_exact(t, x, atol=1e-8):
    assert_transform_ok(t, x, atol=atol, rtol=1e-7, tolerance=1e-7)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.3])
def test_logit_preprocess_is_exact(alpha):
    assert_exact(LogitPreprocess(17, alpha), levels_batch(5))
    # the edges of [0, 17] stay finite thanks to the margin
    edges = torch.tensor([[0.0, 17.0, 8.5, 1e-9]])
    z, ld = LogitPreprocess(17, alpha).forward(edges)
    assert torch.isfinite(z).all() and torch.isfinite(ld).all()


def test_logit_preprocess_log_det_formula():
    t = LogitPreprocess(17, 0.05)
    x = torch.tensor([[3.25]])
    y = 0.05 + 0.9 * 3.25 / 17
    _, ld = t.forward(x)
    assert ld.item() == pytest.approx(math.log(0.9 / 17) - math.log(y) - math.log(1 - y), abs=1e-12)


def test_logit_preprocess_refuses_values_outside_level_units():
    with pytest.raises(ValueError, match=r"level units \[0, 17\)"):
        LogitPreprocess(17).forward(torch.tensor([[18.0]]))
    with pytest.raises(ValueError, match="alpha"):
        LogitPreprocess(17, alpha=0.5)
    with pytest.raises(ValueError, match="levels"):
        LogitPreprocess(1)


def test_squeeze_layout_and_inverse():
    x = torch.arange(2 * 4 * 6).double().reshape(1, 2, 4, 6)
    y = squeeze(x)
    assert y.shape == (1, 8, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(y[0, 4 * c + 2 * i + j], x[0, c, i::2, j::2])
    torch.testing.assert_close(unsqueeze(y), x)
    assert_exact(Squeeze(), levels_batch(3, (2, 4, 4)))
    assert_exact(Unsqueeze(), levels_batch(3, (4, 2, 2)))
    with pytest.raises(ValueError, match="even height and width"):
        squeeze(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        unsqueeze(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="batch of images"):
        squeeze(torch.zeros(4, 4))


def test_split_passes_factored_channels_through():
    rest = Chain([Reshape((2, 2, 2), (8,))])
    split = Split((4, 2, 2), 2, rest)
    x = levels_batch(3, (4, 2, 2))
    z, ld = split.forward(x)
    assert z.shape == (3, 16)
    torch.testing.assert_close(z[:, :8], x[:, :2].reshape(3, 8))
    torch.testing.assert_close(ld, torch.zeros(3))
    assert split.num_factored == 8
    with pytest.raises(ValueError, match="factor_out"):
        Split((4, 2, 2), 4, rest)


def test_conditioner_starts_at_zero():
    net = ResNetConditioner(2, 4, hidden=8, num_blocks=1, extra=torch.ones(1, 4, 4), spatial=(4, 4))
    out = net(torch.randn(3, 2, 4, 4))
    assert out.shape == (3, 4, 4, 4) and (out == 0).all()


@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_image_realnvp_is_exact(num_scales):
    torch.manual_seed(0)
    flow = ImageRealNVP(shape=(1, 8, 8), num_scales=num_scales, couplings=2, final_couplings=2,
                        hidden=8, num_blocks=1)
    x = levels_batch(8, (1, 8, 8))
    flow(x)  # initialise ActNorm from a batch
    perturb(flow, 0.05)
    assert_exact(flow, x[:2], atol=1e-7)
    sizes = [s.stop - s.start for s in flow.scale_slices]
    assert sum(sizes) == 64 and flow.scale_slices[0].start == 0
    assert sizes == {1: [64], 2: [32, 32], 3: [32, 16, 16]}[num_scales]


def test_new_image_flow_starts_at_its_preprocessing():
    """Zero-initialised conditioners: before training only the logit and ActNorm act."""
    flow = ImageRealNVP(hidden=8, num_blocks=1)
    x = levels_batch(4, (1, 8, 8))
    for t in flow.modules():
        if isinstance(t, fk.AffineCoupling):
            kept = x.new_zeros(4, *t.event_shape)
            log_scale, shift = t.scale_shift(kept)
            assert (log_scale == 0).all() and (shift == 0).all()


def test_log_prob_is_a_density_in_level_units_and_bits_per_dim():
    torch.manual_seed(0)
    flow = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1)
    x = levels_batch(6, (1, 8, 8))
    lp = flow.log_prob(x)
    assert lp.shape == (6,)
    torch.testing.assert_close(flow.bits_per_dim(x), -lp / (64 * math.log(2)))
    # bits/dim from integer images: average over noise draws, in level units
    images = torch.randint(0, 17, (10, 1, 8, 8))
    bpd = dequantized_bits_per_dim(flow, images, draws=2)
    assert math.isfinite(bpd)
    with pytest.raises(TypeError, match="integer tensor"):
        dequantized_bits_per_dim(flow, images.double())


def test_samples_latents_and_decode():
    torch.manual_seed(0)
    flow = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1).eval()
    x = flow.sample(5, temperature=0.7)
    assert x.shape == (5, 1, 8, 8)
    z = flow.latent(x)
    assert z.shape == (5, 64)
    torch.testing.assert_close(flow.decode(z), x, atol=1e-8, rtol=1e-6)
    with pytest.raises(ValueError, match="batch"):
        flow.log_prob(torch.rand(1, 8, 8))


def test_dropout_only_acts_in_training_mode():
    torch.manual_seed(0)
    flow = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1, dropout=0.5)
    x = levels_batch(4, (1, 8, 8))
    flow(x)
    perturb(flow, 0.05)
    flow.eval()
    assert_exact(flow, x[:2], atol=1e-7)
    torch.testing.assert_close(flow.log_prob(x), flow.log_prob(x))
    with pytest.raises(ValueError, match="dropout"):
        ImageRealNVP(dropout=1.0)


def test_image_realnvp_argument_errors():
    with pytest.raises(ValueError, match="squeezed"):
        ImageRealNVP(shape=(1, 6, 6), num_scales=3)
    with pytest.raises(ValueError, match="num_scales"):
        ImageRealNVP(num_scales=0)
    with pytest.raises(TypeError):
        ImageRealNVP(hidden=2.5)


def test_training_a_small_image_flow_lowers_bits_per_dim():
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)
        flow = ImageRealNVP(hidden=16, num_blocks=1, couplings=1, final_couplings=2)
        train = fk.data.digits("train")
        before = dequantized_bits_per_dim(flow, fk.data.digits("val"), draws=1)
        fk.fit(flow, train, steps=60, batch_size=64, lr=3e-3, preprocess=fk.data.dequantize, progress=False)
        after = dequantized_bits_per_dim(flow, fk.data.digits("val"), draws=1)
        assert after < before - 0.5 and after < 3.5
    finally:
        torch.set_default_dtype(torch.float64)


def test_variational_dequantizer_is_exact_and_keeps_every_cell():
    from flowkit.images import VariationalDequantizer

    torch.manual_seed(0)
    deq = perturb(VariationalDequantizer((1, 4, 4), levels=17, bins=6, hidden=8), 0.3)
    x = levels_batch(4, (1, 4, 4))
    assert_exact(deq, x, atol=1e-7)
    z, _ = deq.forward(x)
    assert torch.equal(z.floor(), x.floor())  # each level's cell maps onto itself
    # a fresh one is plain uniform dequantization: the identity
    fresh = VariationalDequantizer((1, 4, 4), levels=17, bins=6, hidden=8)
    z, ld = fresh.forward(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ld, torch.zeros(4))


def test_variational_dequantizer_keeps_the_mass_of_each_level():
    """r(k+u) = p(k+g(u)) g'(u): integrating over a cell gives the flow's mass of that cell."""
    from flowkit.images import VariationalDequantizer

    torch.manual_seed(1)
    levels = 5
    deq = perturb(VariationalDequantizer((1, 1, 1), levels=levels, bins=8, hidden=8), 0.2)
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(8)  # composite Gauss-Legendre: 500 panels x 8 nodes
    panels = np.arange(500)[:, None]
    u = torch.tensor(((panels + (t + 1) / 2) / 500).ravel())
    w = torch.tensor(np.broadcast_to(w / 2 / 500, (500, 8)).ravel())

    def base_density(y):  # a smooth density on [0, levels): Gaussian bump, unnormalised is fine
        return torch.exp(-0.5 * ((y - 2.2) / 0.9) ** 2)

    for k in range(levels):
        y = (k + u).reshape(-1, 1, 1, 1)
        z, ld = deq.forward(y)
        r = base_density(z.flatten()) * ld.exp()
        cell_mass_r = (r * w).sum()
        cell_mass_p = (base_density(k + u) * w).sum()
        assert (r / base_density(k + u) - 1).abs().max() > 0.1  # the noise really is reshaped        torch.testing.assert_close(cell_mass_r, cell_mass_p, rtol=1e-6, atol=0)


def test_image_realnvp_with_a_dequantizer_is_exact_and_reloads(tmp_path):
    from flowkit.pretrained import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    flow = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1, dequantizer_bins=4,
                        dequantizer_hidden=8)
    x = levels_batch(6, (1, 8, 8))
    flow(x)
    perturb(flow, 0.05)
    flow.eval()
    assert_exact(flow, x[:2], atol=1e-7)
    assert flow.config["dequantizer_bins"] == 4
    digest = save_checkpoint(flow, tmp_path / "vd.pt", {})
    again = load_checkpoint(tmp_path / "vd.pt", expected_sha256=digest)
    torch.testing.assert_close(again.double().log_prob(x), flow.log_prob(x))
    assert "dequantizer_bins" not in ImageRealNVP(hidden=8, num_blocks=1).config
