"""Lesson 06: explorers update in place; checkers pass the reference and name typical slips."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson06 as ex  # noqa: E402
from flowkit.widgets import lesson06 as w  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------
# ROC helpers
# ----------------------------------------------------------------------------------


def test_roc_auc_matches_sklearn_including_ties():
    g = torch.Generator().manual_seed(0)
    normal = torch.randint(0, 6, (40,), generator=g).float()
    anomalous = torch.randint(2, 9, (25,), generator=g).float()
    labels = np.r_[np.zeros(40), np.ones(25)]
    expected = roc_auc_score(labels, np.r_[normal.numpy(), anomalous.numpy()])
    assert w.roc_auc(normal, anomalous) == pytest.approx(expected, abs=1e-12)
    assert ex.reference_auc(normal.numpy(), anomalous.numpy()) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, thresholds = w.roc_curve(normal, anomalous)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        w.roc_auc([0.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="empty"):
        w.roc_curve([], [1.0])


# ----------------------------------------------------------------------------------
# Explorers
# ----------------------------------------------------------------------------------


def _kinds():
    g = torch.Generator().manual_seed(1)
    normal_imgs = torch.randint(0, 17, (20, 1, 8, 8), generator=g)
    normal = torch.randn(20, generator=g) + 2.0
    scores = {"noise": torch.randn(12, generator=g) + 4.0,
              "inverted": torch.randn(9, generator=g) * 0.5 + 9.0}
    images = {"noise": torch.randint(0, 17, (12, 1, 8, 8), generator=g),
              "inverted": 16 - torch.randint(0, 17, (9, 8, 8), generator=g)}
    return normal, scores, normal_imgs, images


def test_threshold_explorer_moves_threshold_and_kind_in_place():
    normal, scores, normal_imgs, images = _kinds()
    e = w.threshold_explorer(normal, scores, normal_imgs, images)
    fig = e.figure
    n_axes = len(fig.axes)
    line = e.artists["threshold_line"]
    point = e.artists["roc_point"]
    lowest = e.controls["threshold"].min
    assert lowest < float(normal.min())
    e.controls["threshold"].value = lowest  # below every score: everything flagged
    assert line.get_xdata()[0] == pytest.approx(lowest)
    assert point.get_xdata()[0] == 1.0 and point.get_ydata()[0] == 1.0
    assert all(f.get_edgecolor()[:3] == matplotlib.colors.to_rgb("#d62728") for f in e.artists["frames"])
    assert "100.0% of normal digits" in e.artists["readout"].get_text()
    e.controls["threshold"].value = 3.0
    fpr = float((normal > 3.0).float().mean())
    tpr = float((scores["noise"] > 3.0).float().mean())
    assert point.get_xdata()[0] == pytest.approx(fpr) and point.get_ydata()[0] == pytest.approx(tpr)
    heights_before = [p.get_height() for p in e.artists["anomaly_bars"].patches]
    roc_before = e.artists["roc_line"].get_xdata().copy()
    montage_before = np.array(e.artists["montage"].get_array()).copy()
    e.controls["kind"].value = "inverted"
    assert [p.get_height() for p in e.artists["anomaly_bars"].patches] != heights_before
    assert not np.array_equal(e.artists["roc_line"].get_xdata(), roc_before)
    assert not np.array_equal(np.array(e.artists["montage"].get_array()), montage_before)
    assert "'inverted'" in e.artists["readout"].get_text()
    # Histograms are densities: each integrates to 1.
    bars = e.artists["anomaly_bars"].patches
    assert sum(p.get_height() * p.get_width() for p in bars) == pytest.approx(1.0)
    e.controls["threshold"].value = e.controls["threshold"].max  # nothing flagged
    assert point.get_xdata()[0] == 0.0 and point.get_ydata()[0] == 0.0
    assert len(fig.axes) == n_axes  # never rebuilt
    assert "image/png" in e._repr_mimebundle_()


def test_threshold_explorer_piles_far_off_scores_into_the_last_bin():
    normal, scores, normal_imgs, images = _kinds()
    scores = dict(scores, inverted=scores["inverted"] + 1e4)  # an inverted digit can score 10^4
    e = w.threshold_explorer(normal, scores, normal_imgs, images)
    e.controls["kind"].value = "inverted"
    bars = e.artists["anomaly_bars"].patches
    assert sum(p.get_height() * p.get_width() for p in bars) == pytest.approx(1.0)
    assert "9 scores beyond" in e.figure.axes[0].texts[0].get_text()
    assert e.controls["threshold"].max < 100  # the slider stays usable
    e.controls["kind"].value = "noise"
    assert e.figure.axes[0].texts[0].get_text() == ""


def test_threshold_explorer_refuses_bad_input():
    normal, scores, normal_imgs, images = _kinds()
    with pytest.raises(ValueError, match="same keys"):
        w.threshold_explorer(normal, scores, normal_imgs, {"noise": images["noise"]})
    with pytest.raises(ValueError, match="12 scores but 9 images"):
        w.threshold_explorer(normal, scores, normal_imgs, {"noise": images["inverted"],
                                                           "inverted": images["inverted"]})
    bad = dict(scores, noise=torch.full((12,), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        w.threshold_explorer(normal, bad, normal_imgs, images)


def _digits_like_flow(seed=0):
    maf = fk.MAF(64, num_layers=2, hidden=64)
    flow = fk.Flow([fk.Affine(0.9 / 17, 0.05), fk.Logit(), *maf.transforms], fk.StandardNormal(64))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return flow


def test_sampling_explorer_fills_one_pixel_per_pass_and_ends_at_a_real_sample():
    flow = _digits_like_flow()
    e = w.sampling_explorer(flow, num_samples=3, seed=2)
    passes = e.controls["passes"]
    assert passes.value == 40  # starts half-written
    passes.value = 64
    final = np.array(e.artists["images"][0].get_array())
    assert not np.ma.is_masked(e.artists["images"][0].get_array())
    # The last pass is the flow's own sample, same seed.
    with torch.no_grad():
        z = flow.base.sample(3, generator=torch.Generator().manual_seed(2))
        x, _ = flow.inverse(z)
    np.testing.assert_allclose(final, x[0].reshape(8, 8).numpy(), rtol=1e-5, atol=1e-5)
    for k in (0, 1, 10, 63):
        passes.value = k
        shown = e.artists["images"][1].get_array()
        assert int((~np.ma.getmaskarray(shown)).sum()) == k
        assert e.artists["cursors"][1].get_visible()
        assert f"pass {k} of 64" in e.artists["title"].get_text()
    passes.value = 64
    assert not e.artists["cursors"][0].get_visible()
    assert "1 x 64 in earlier layers" in e.artists["title"].get_text()


def test_sampling_explorer_refuses_flows_without_a_maf_layer():
    with pytest.raises(ValueError, match="MaskedAutoregressive"):
        w.sampling_explorer(fk.RealNVP(4, 2, 8), image_shape=(2, 2))
    with pytest.raises(ValueError, match="image_shape"):
        w.sampling_explorer(fk.MAF(4, 1, 8), image_shape=(3, 3))


def test_static_figures():
    fig = w.chain_rule_figure(n=80)
    assert len(fig.axes) == 3
    # Each conditional slice is a density in x2: it integrates to about one.
    for line in fig.axes[2].get_lines():
        y, p = line.get_xdata(), line.get_ydata()
        assert np.trapezoid(p, y) == pytest.approx(1.0, abs=0.02)
    fig = w.lesson_figure(steps=30)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3


# ----------------------------------------------------------------------------------
# Checkers
# ----------------------------------------------------------------------------------


def made_mask_ref(in_degrees, out_degrees, strict):
    if strict:
        return (out_degrees[:, None] > in_degrees[None, :]).float()
    return (out_degrees[:, None] >= in_degrees[None, :]).float()


def test_check_autoregressive_mask():
    assert ex.check_autoregressive_mask(made_mask_ref).passed
    assert str(ex.check_autoregressive_mask(made_mask_ref)).startswith("PASS")
    never_strict = lambda i, o, s: (o[:, None] >= i[None, :]).float()  # noqa: E731
    r = ex.check_autoregressive_mask(never_strict)
    assert not r and "strict=True" in str(r) and "never sees x_i itself" in str(r)
    always_strict = lambda i, o, s: (o[:, None] > i[None, :]).float()  # noqa: E731
    assert "hidden layers (strict=False) use out_degree >=" in str(ex.check_autoregressive_mask(always_strict))
    transposed = lambda i, o, s: made_mask_ref(i, o, s).T  # noqa: E731
    assert "transpose" in str(ex.check_autoregressive_mask(transposed))
    backwards = lambda i, o, s: (o[:, None] <= i[None, :]).float()  # noqa: E731
    assert "wrong way" in str(ex.check_autoregressive_mask(backwards))

    def todo(i, o, s):
        raise NotImplementedError

    assert "not written yet" in str(ex.check_autoregressive_mask(todo))


def maf_sample_ref(conditioner, z):
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = conditioner(x)
        x = mu + torch.exp(alpha) * z
    return x


def test_check_maf_sample():
    assert ex.check_maf_sample(maf_sample_ref).passed

    def one_pass(conditioner, z):
        mu, alpha = conditioner(torch.zeros_like(z))
        return mu + torch.exp(alpha) * z

    assert "ONE pass" in str(ex.check_maf_sample(one_pass))

    def wrong_sign(conditioner, z):
        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = conditioner(x)
            x = mu + torch.exp(-alpha) * z
        return x

    assert "exp(alpha), not exp(-alpha)" in str(ex.check_maf_sample(wrong_sign))

    def forward_formula(conditioner, z):
        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = conditioner(x)
            x = (z - mu) * torch.exp(-alpha)
        return x

    assert "forward (density) formula" in str(ex.check_maf_sample(forward_formula))

    def wasteful(conditioner, z):
        x = torch.zeros_like(z)
        for _ in range(2 * z.shape[1]):
            mu, alpha = conditioner(x)
            x = mu + torch.exp(alpha) * z
        return x

    assert "D passes are enough" in str(ex.check_maf_sample(wasteful))

    def in_place(conditioner, z):
        z.mul_(1.0)
        z.add_(1.0)
        return maf_sample_ref(conditioner, z - 1.0)

    assert "in place" in str(ex.check_maf_sample(in_place))


def auc_ref(normal, anomalous):
    a, n = anomalous[:, None], normal[None, :]
    return ((a > n).double() + 0.5 * (a == n).double()).mean().item()


def test_check_auc():
    assert ex.check_auc(auc_ref).passed
    flipped = lambda n, a: 1.0 - auc_ref(n, a)  # noqa: E731
    assert "1 - AUC" in str(ex.check_auc(flipped))
    no_ties = lambda n, a: (a[:, None] > n[None, :]).double().mean().item()  # noqa: E731
    assert "ties" in str(ex.check_auc(no_ties))
    assert "should return a number" in str(ex.check_auc(lambda n, a: "0.5"))


def bpd_ref(log_prob_unit, num_dims, levels):
    return (-(log_prob_unit.mean() - num_dims * math.log(levels)) / (num_dims * math.log(2))).item()


def test_check_bits_per_dim():
    assert ex.check_bits_per_dim(bpd_ref).passed
    no_jacobian = lambda lp, d, L: (-lp.mean() / (d * math.log(2))).item()  # noqa: E731
    assert "forgot the Jacobian" in str(ex.check_bits_per_dim(no_jacobian))
    wrong_sign = lambda lp, d, L: (-(lp.mean() + d * math.log(L)) / (d * math.log(2))).item()  # noqa: E731
    assert "wrong sign" in str(ex.check_bits_per_dim(wrong_sign))
    nats = lambda lp, d, L: (-(lp.mean() - d * math.log(L)) / d).item()  # noqa: E731
    assert "divide by ln 2" in str(ex.check_bits_per_dim(nats))
    per_image = lambda lp, d, L: (-(lp.mean() - d * math.log(L)) / math.log(2)).item()  # noqa: E731
    assert "bits per image" in str(ex.check_bits_per_dim(per_image))
    no_mean = lambda lp, d, L: -(lp - d * math.log(L)) / (d * math.log(2))  # noqa: E731
    assert "one number" in str(ex.check_bits_per_dim(no_mean))
