"""Lesson 05: explorers respond to every control; checkers pass the reference, catch mistakes."""

import math

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson05 as ex  # noqa: E402
from flowkit.images import ImageRealNVP  # noqa: E402
from flowkit.widgets import lesson05 as w  # noqa: E402


@pytest.fixture(scope="module")
def flow():
    """A small image flow, moved away from the identity (fast to build)."""
    torch.manual_seed(0)
    model = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1)
    model(fk.data.dequantize(fk.data.digits("train")[:64]))  # initialise ActNorm
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def test_digits():
    return fk.data.digits("test")[:8]


def snapshot(artist):
    return np.array(artist.get_array(), dtype=float, copy=True)


def test_dequantization_explorer(tmp_path):
    e = w.dequantization_explorer()
    curve, readout = e.artists["curve"], e.artists["readout"]
    before_curve, before_text = curve.get_ydata().copy(), readout.get_text()
    e.set(log_sigma=-2.5)
    assert not np.allclose(curve.get_ydata(), before_curve)
    assert readout.get_text() != before_text
    # as sigma shrinks, the integer log-likelihood grows and the dequantized one falls
    vals = {}
    for s in (-1.0, -2.5):
        e.set(log_sigma=s)
        text = readout.get_text()
        vals[s] = [float(t) for t in text.replace("integers:", "").replace("dequantized:", "|")
                   .replace("bound:", "|").split("|")]
    assert vals[-2.5][0] > vals[-1.0][0] and vals[-2.5][0] > 0
    assert vals[-2.5][1] < vals[-1.0][1]
    assert all(v[1] <= v[2] + 0.05 for v in vals.values())  # never beats the histogram bound
    e.set(log_sigma=-3.0)  # the extreme of the slider is still finite
    assert np.isfinite(curve.get_ydata()).all() and "clipped" in e.figure.axes[0].texts[0].get_text()


def test_temperature_explorer(flow):
    e = w.temperature_explorer(flow, n=4)
    image, title = e.artists["image"], e.artists["title"]
    before = snapshot(image)
    e.set(temperature=0.0)
    at_zero = snapshot(image)
    assert not np.allclose(np.nan_to_num(at_zero), np.nan_to_num(before))
    tiles = at_zero[~np.isnan(at_zero)].reshape(-1)
    # T = 0 decodes the origin: the four samples are identical
    grid = w.mosaic(np.zeros((4, 8, 8)))
    assert np.isnan(at_zero).sum() == np.isnan(grid).sum()
    first = at_zero[:8, :8]
    assert np.allclose(at_zero[:8, 9:17], first) and tiles.min() >= 0 and tiles.max() <= 16
    e.set(temperature=1.5)
    assert "T = 1.50" in title.get_text()


def test_interpolation_explorer(flow, test_digits):
    e = w.interpolation_explorer(flow, test_digits, pairs=[(0, 1), (2, 3)], steps=11)
    latent, pixel = e.artists["latent"], e.artists["pixel"]
    before = snapshot(latent), snapshot(pixel)
    e.set(t=0.9)
    assert not np.allclose(snapshot(latent), before[0]) and not np.allclose(snapshot(pixel), before[1])
    # at t = 0 both paths start at digit A (reconstructed through the flow)
    e.set(t=0.0)
    np.testing.assert_allclose(snapshot(pixel), snapshot(e.artists["a"]), atol=1e-6)
    np.testing.assert_allclose(snapshot(latent), snapshot(e.artists["a"]), atol=1e-3)
    a_before = snapshot(e.artists["a"])
    e.set(pair=1)
    assert not np.allclose(snapshot(e.artists["a"]), a_before)


def test_scale_explorer(flow, test_digits):
    e = w.scale_explorer(flow, test_digits[:3], variants=3)
    variants, original, title = e.artists["variants"], e.artists["original"], e.artists["title"]
    before = snapshot(variants)
    e.set(temperature=0.3)
    after_t = snapshot(variants)
    assert not np.allclose(np.nan_to_num(after_t), np.nan_to_num(before))
    e.set(resample="coarse structure")
    assert not np.allclose(np.nan_to_num(snapshot(variants)), np.nan_to_num(after_t))
    assert "coarse structure" in title.get_text()
    o = snapshot(original)
    e.set(digit=2)
    assert not np.allclose(snapshot(original), o)
    # T = 0 and nothing resampled away from the origin: every variant is the same image
    e.set(temperature=0.0)
    v = snapshot(variants)
    np.testing.assert_allclose(v[:, :8], v[:, 9:17])


def test_mosaic_layout():
    m = w.mosaic(np.ones((5, 8, 8)) * 20, cols=3)
    assert m.shape == (17, 26) and np.nanmax(m) == 16  # clipped to the top level
    assert np.isnan(m[8]).all()


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def ref_bits_per_dim(log_prob_unit, num_dims, levels):
    return float(-(log_prob_unit - num_dims * math.log(levels)).mean() / (num_dims * math.log(2)))


def test_bits_per_dim_checker():
    assert ex.check_bits_per_dim(ref_bits_per_dim).passed
    tensor_answer = lambda lp, d, L: -(lp - d * math.log(L)).mean() / (d * math.log(2))  # noqa: E731
    assert ex.check_bits_per_dim(tensor_answer).passed
    wrong = {
        "nats to bits": lambda lp, d, L: float(-(lp - d * math.log(L)).mean() / d),
        "change of units": lambda lp, d, L: float(-lp.mean() / (d * math.log(2))),
        "wrong sign": lambda lp, d, L: float(-(lp + d * math.log(L)).mean() / (d * math.log(2))),
        "num_dims": lambda lp, d, L: float(-(lp - d * math.log(L)).mean() / math.log(2)),
        "NEGATIVE": lambda lp, d, L: float((lp - d * math.log(L)).mean() / (d * math.log(2))),
        "one number": lambda lp, d, L: -(lp - d * math.log(L)) / (d * math.log(2)),
        "not implemented": lambda lp, d, L: (_ for _ in ()).throw(NotImplementedError()),
    }
    for needle, fn in wrong.items():
        result = ex.check_bits_per_dim(fn)
        assert not result.passed and needle in str(result), (needle, str(result))


def ref_squeeze(x):
    b, c, h, w_ = x.shape
    return x.reshape(b, c, h // 2, 2, w_ // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w_ // 2)


def ref_unsqueeze(z):
    b, c4, h, w_ = z.shape
    return z.reshape(b, c4 // 4, 2, 2, h, w_).permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w_)


def test_squeeze_checker():
    assert ex.check_squeeze(ref_squeeze, ref_unsqueeze).passed
    assert ex.check_squeeze(fk.images.squeeze, fk.images.unsqueeze).passed
    plain = lambda x: x.reshape(x.shape[0], 4 * x.shape[1], x.shape[2] // 2, x.shape[3] // 2)  # noqa: E731
    r = ex.check_squeeze(plain, ref_unsqueeze)
    assert not r.passed and "plain reshape" in str(r)
    other_order = lambda x: x.reshape(x.shape[0], x.shape[1], x.shape[2] // 2, 2, x.shape[3] // 2, 2).permute(  # noqa: E731
        0, 3, 5, 1, 2, 4).reshape(x.shape[0], 4 * x.shape[1], x.shape[2] // 2, x.shape[3] // 2)
    r = ex.check_squeeze(other_order, ref_unsqueeze)
    assert not r.passed and "another order" in str(r)
    r = ex.check_squeeze(lambda x: x[:, :, ::2, ::2], ref_unsqueeze)
    assert not r.passed and "shape" in str(r)
    r = ex.check_squeeze(ref_squeeze, lambda z: z.reshape(z.shape[0], z.shape[1] // 4, 2 * z.shape[2], 2 * z.shape[3]))
    assert not r.passed and "unsqueeze(squeeze(x)) is not x" in str(r)
    r = ex.check_squeeze(lambda x: (_ for _ in ()).throw(NotImplementedError()), ref_unsqueeze)
    assert not r.passed and "not implemented" in str(r)


def ref_checkerboard(h, w_, parity):
    return ((torch.arange(h).view(-1, 1) + torch.arange(w_).view(1, -1) + parity) % 2 == 0).float()


def test_checkerboard_checker():
    assert ex.check_checkerboard(ref_checkerboard).passed
    assert ex.check_checkerboard(lambda h, w_, p: fk.checkerboard_mask(h, w_, p)[0]).passed
    cases = {
        "complement": lambda h, w_, p: 1 - ref_checkerboard(h, w_, p),
        "horizontal stripes": lambda h, w_, p: ((torch.arange(h).view(-1, 1) + p) % 2 == 0).float().expand(h, w_),
        "vertical stripes": lambda h, w_, p: ((torch.arange(w_).view(1, -1) + p) % 2 == 0).float().expand(h, w_),
        "parity is ignored": lambda h, w_, p: ref_checkerboard(h, w_, 0),
        "float tensor": lambda h, w_, p: ref_checkerboard(h, w_, p).long(),
        "shape": lambda h, w_, p: ref_checkerboard(w_, h, p),
        "only 0 and 1": lambda h, w_, p: 2 * ref_checkerboard(h, w_, p),
    }
    for needle, fn in cases.items():
        r = ex.check_checkerboard(fn)
        assert not r.passed and needle in str(r), (needle, str(r))
