"""Lesson 07: the threshold explorer updates in place; every exercise passes its reference,
says "not attempted" for the template, and names the typical slips."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import flowkit as fk  # noqa: E402

from flowkit.exercises import lesson07 as ex  # noqa: E402
from flowkit.widgets import lesson07 as w  # noqa: E402


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


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def test_every_exercise_is_listed_and_passes_its_reference():
    assert [e.name for e in ex.EXERCISES] == ["auc", "ratio_score", "bits_per_dim_levels"]
    for exercise in ex.EXERCISES:
        result = exercise.check(exercise.reference, show=False)
        assert result.passed, result.message


def test_templates_are_not_attempted_and_learner_errors_are_reported():
    def template(*args):
        raise NotImplementedError

    def broken(*args):
        return 1 / 0

    for exercise in ex.EXERCISES:
        assert exercise.check(template, show=False).status == "not attempted"
        result = exercise.check(broken, show=False)
        assert result.status == "fail" and "ZeroDivisionError" in str(result)


def test_auc_names_its_slips():
    check = lambda fn: str(ex.auc.check(fn, show=False))  # noqa: E731
    reference = ex.auc.reference
    assert "1 - AUC" in check(lambda n, a: 1.0 - reference(n, a))
    assert "ties" in check(lambda n, a: (a[:, None] > n[None, :]).double().mean().item())
    assert "should return one number, got str" in check(lambda n, a: "0.5")
    assert "should return one number, got Tensor of shape (2,)" in check(lambda n, a: torch.zeros(2))


def test_ratio_score_matches_the_lessons_pixel_model_and_names_its_slips():
    # The reference, on a table built like the lesson's, equals flow bits/dim - pixel bits/dim.
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 17, (5, 1, 8, 8), generator=g)
    table = torch.log_softmax(torch.randn(64, 17, generator=g), dim=1)
    flow_log_prob = -100.0 - 50.0 * torch.rand(5, generator=g)
    pixel_log_prob = sum(table[i, images.reshape(5, 64)[:, i]] for i in range(64))
    expected = (-flow_log_prob + pixel_log_prob) / (64 * math.log(2))
    torch.testing.assert_close(ex.ratio_score.reference(flow_log_prob, images, table), expected)

    check = lambda fn: str(ex.ratio_score.check(fn, show=False))  # noqa: E731
    reference = ex.ratio_score.reference
    assert "sign is flipped" in check(lambda lp, x, t: -reference(lp, x, t))
    bits = lambda lp, x, t: -lp / (t.shape[0] * math.log(2))  # noqa: E731
    assert "you added the pixel model's score" in check(
        lambda lp, x, t: 2 * bits(lp, x, t) - reference(lp, x, t))
    assert "nats per image" in check(lambda lp, x, t: reference(lp, x, t) * t.shape[0] * math.log(2))
    assert "nats per dimension" in check(lambda lp, x, t: reference(lp, x, t) * math.log(2))
    assert "each image's own" in check(
        lambda lp, x, t: bits(lp, x, t) - (bits(lp, x, t) - reference(lp, x, t)).mean())
    assert "should be a torch.Tensor" in check(lambda lp, x, t: reference(lp, x, t).tolist())


def test_bits_per_dim_levels_names_its_slips():
    check = lambda fn: str(ex.bits_per_dim_levels.check(fn, show=False))  # noqa: E731
    assert "forgot the Jacobian" in check(lambda lp, d, L: (-lp.mean() / (d * math.log(2))).item())
    assert "wrong sign" in check(lambda lp, d, L: (-(lp.mean() + d * math.log(L)) / (d * math.log(2))).item())
    assert "divide by ln 2" in check(lambda lp, d, L: (-(lp.mean() - d * math.log(L)) / d).item())
    assert "bits per image" in check(lambda lp, d, L: (-(lp.mean() - d * math.log(L)) / math.log(2)).item())
    assert "one number" in check(lambda lp, d, L: -(lp - d * math.log(L)) / (d * math.log(2)))


def test_threshold_explorer_fits_a_laptop():
    normal, scores, normal_imgs, images = _kinds()
    e = w.threshold_explorer(normal, scores, normal_imgs, images)
    assert e.figure.get_size_inches()[0] * e.figure.dpi <= 820
    assert len(e.figure.axes) == 3


def test_digit_scores_are_bits_per_dim_of_the_flow():
    flow = fk.Flow([fk.Affine(1 / 17.0)], fk.StandardNormal((1, 8, 8)))
    images = torch.randint(0, 17, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    scores = w.digit_scores(flow, images, draws=2, seed=1)
    generator = torch.Generator().manual_seed(1)
    log_p = torch.stack([flow.log_prob(fk.data.dequantize(images, generator=generator))
                         for _ in range(2)]).mean(0)
    torch.testing.assert_close(scores, -log_p / (64 * math.log(2)))
