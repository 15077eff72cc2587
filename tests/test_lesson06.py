"""Lesson 06: the explorers update in place; every exercise passes its reference, says "not
attempted" for the template, and names the typical slips."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson06 as ex  # noqa: E402
from flowkit.widgets import lesson06 as w  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------
# Explorers and figures
# ----------------------------------------------------------------------------------


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


def test_sampling_explorer_fits_a_laptop_with_four_samples_on_two_rows():
    e = w.sampling_explorer(_digits_like_flow(), num_samples=4, seed=0)
    width, _ = e.figure.get_size_inches() * e.figure.dpi
    assert width <= 820
    visible = [ax for ax in e.figure.axes if ax.get_visible()]
    assert len(visible) == 4
    assert len({round(ax.get_position().y0, 3) for ax in visible}) == 2  # two rows


def test_sampling_explorer_refuses_flows_without_a_maf_layer():
    with pytest.raises(ValueError, match="MaskedAutoregressive"):
        w.sampling_explorer(fk.RealNVP(4, 2, 8), image_shape=(2, 2))
    with pytest.raises(ValueError, match="image_shape"):
        w.sampling_explorer(fk.MAF(4, 1, 8), image_shape=(3, 3))


def test_static_figures():
    fig = w.chain_rule_figure(n=80)
    assert len(fig.axes) == 3
    assert fig.get_size_inches()[0] * fig.dpi <= 820
    # Each conditional slice is a density in x2: it integrates to about one.
    for line in fig.axes[2].get_lines():
        y, p = line.get_xdata(), line.get_ydata()
        assert np.trapezoid(p, y) == pytest.approx(1.0, abs=0.02)
    fig = w.lesson_figure(steps=30)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3
    assert fig.get_size_inches()[0] * fig.dpi <= 820


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def test_every_exercise_is_listed_and_passes_its_reference():
    assert [e.name for e in ex.EXERCISES] == ["made_mask", "maf_sample"]
    for exercise in ex.EXERCISES:
        result = exercise.check(exercise.reference, show=False)
        assert result.passed, result.message
        assert str(result).startswith("PASS")


def test_templates_are_not_attempted():
    def template(*args):
        raise NotImplementedError

    for exercise in ex.EXERCISES:
        result = exercise.check(template, show=False)
        assert result.status == "not attempted" and str(result).startswith("Not attempted yet")


def test_made_mask_names_its_slips():
    check = lambda fn: str(ex.made_mask.check(fn, show=False))  # noqa: E731
    never_strict = lambda i, o, s: (o[:, None] >= i[None, :]).float()  # noqa: E731
    message = check(never_strict)
    assert "strict=True" in message and "never sees x_i itself" in message
    always_strict = lambda i, o, s: (o[:, None] > i[None, :]).float()  # noqa: E731
    assert "hidden layers (strict=False) use out_degree >=" in check(always_strict)
    transposed = lambda i, o, s: ex.made_mask.reference(i, o, s).T  # noqa: E731
    assert "transpose" in check(transposed)
    backwards = lambda i, o, s: (o[:, None] <= i[None, :]).float()  # noqa: E731
    assert "wrong way" in check(backwards)
    # Booleans are accepted (the mask's meaning is the same); a list is not a tensor.
    assert ex.made_mask.check(lambda i, o, s: o[:, None] >= i[None, :] if not s
                              else o[:, None] > i[None, :], show=False).passed
    assert "should be a torch.Tensor, got list" in check(lambda i, o, s: [[1.0]])


def test_made_mask_reports_a_learner_exception():
    def broken(in_degrees, out_degrees, strict):
        return in_degrees[:, None] @ out_degrees  # shapes do not match

    result = ex.made_mask.check(broken, show=False)
    assert not result.passed and result.status == "fail"
    assert "raised RuntimeError" in str(result) and "in broken" in str(result)


def test_maf_sample_names_its_slips():
    check = lambda fn: str(ex.maf_sample.check(fn, show=False))  # noqa: E731

    def one_pass(conditioner, z):
        mu, alpha = conditioner(torch.zeros_like(z))
        return mu + torch.exp(alpha) * z

    assert "ONE pass" in check(one_pass)

    def loop(update, passes=lambda d: d):
        def sample(conditioner, z):
            x = torch.zeros_like(z)
            for _ in range(passes(z.shape[1])):
                mu, alpha = conditioner(x)
                x = update(mu, alpha, z)
            return x
        return sample

    assert "exp(alpha), not exp(-alpha)" in check(loop(lambda mu, a, z: mu + torch.exp(-a) * z))
    assert "forward (density) formula" in check(loop(lambda mu, a, z: (z - mu) * torch.exp(-a)))
    assert "alpha is its log" in check(loop(lambda mu, a, z: mu + a * z))
    wasteful = loop(lambda mu, a, z: mu + torch.exp(a) * z, passes=lambda d: 2 * d)
    assert "D passes are enough" in check(wasteful)

    def in_place(conditioner, z):
        z.add_(1.0)
        return ex.maf_sample.reference(conditioner, z - 1.0)

    assert "in place" in check(in_place)
    assert "should be a torch.Tensor, got float" in check(lambda conditioner, z: 0.0)
    assert "expected a function" in check(3)
