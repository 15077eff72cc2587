"""Lesson 04: checkers, explorers and the static figure."""

import math

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson04 as ex  # noqa: E402
from flowkit.widgets import lesson04 as w  # noqa: E402

LOG_2PI = math.log(2 * math.pi)


@pytest.fixture(scope="module")
def trained():
    flow, history, x = w.train_moons_flow(steps=60, num_couplings=4, hidden=16, n=2000,
                                          snapshot_every=20)
    return flow, history, x


# ----------------------------------------------------------------------------------
# Exercise 1: NLL
# ----------------------------------------------------------------------------------


def nll_reference(flow, x):
    z, log_abs_det = flow.forward(x)
    log_base = -0.5 * (z ** 2).sum(dim=1) - LOG_2PI
    return -(log_base + log_abs_det).mean()


def test_nll_reference_passes():
    result = ex.nll.check(nll_reference, show=False)
    assert result.passed, str(result)
    assert str(result).startswith("PASS")


@pytest.mark.parametrize("wrong, message", [
    (lambda flow, x: -(-0.5 * (flow.forward(x)[0] ** 2).sum(1) - LOG_2PI).mean(),
     "forget the log-determinant"),
    (lambda flow, x: -(-0.5 * (flow.forward(x)[0] ** 2).sum(1) - LOG_2PI - flow.forward(x)[1]).mean(),
     "wrong sign"),
    (lambda flow, x: -(-0.5 * (flow.forward(x)[0] ** 2).sum(1) + flow.forward(x)[1]).mean(),
     "normalising constant is missing"),
    (lambda flow, x: -nll_reference(flow, x), "NEGATIVE log-likelihood"),
    (lambda flow, x: nll_reference(flow, x) * x.shape[0], "summed over the batch"),
    (lambda flow, x: -(-0.5 * (flow.inverse(x)[0] ** 2).sum(1) - LOG_2PI + flow.inverse(x)[1]).mean(),
     "flow.inverse"),
    (lambda flow, x: nll_reference(flow, x).item(), "did you call .item()"),
    (lambda flow, x: nll_reference(flow, x).detach(), "carries no gradient"),
    (lambda flow, x: -(-0.5 * (flow.forward(x)[0] ** 2).sum(1) - LOG_2PI + flow.forward(x)[1]),
     "forget .mean()"),
    (lambda flow, x: -flow.log_prob(x).mean(), "write the standard normal log-density yourself"),
    (lambda flow, x: "loss", "should return a torch.Tensor"),
])
def test_nll_checker_names_the_mistake(wrong, message):
    result = ex.nll.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


def test_nll_checker_reports_template_and_crashes():
    def template(flow, x):
        raise NotImplementedError

    assert "Not attempted yet" in str(ex.nll.check(template, show=False))
    assert "raised ZeroDivisionError" in str(ex.nll.check(lambda flow, x: 1 / 0, show=False))


# ----------------------------------------------------------------------------------
# Exercise 2: KL gap
# ----------------------------------------------------------------------------------


def kl_reference(flow, x, noise):
    return (fk.data.two_moons_log_prob(x, noise=noise) - flow.log_prob(x)).mean().item()


def test_kl_reference_passes():
    result = ex.kl.check(kl_reference, show=False)
    assert result.passed, str(result)


@pytest.mark.parametrize("wrong, message", [
    (lambda flow, x, noise: -kl_reference(flow, x, noise), "sign is flipped"),
    (lambda flow, x, noise: -flow.log_prob(x).mean(), "subtract the entropy"),
    (lambda flow, x, noise: -fk.data.two_moons_log_prob(x, noise=noise).mean(), "entropy of the data alone"),
    (lambda flow, x, noise: (fk.data.two_moons_log_prob(x, noise=noise) - flow.log_prob(x)).sum(), "summed"),
    (lambda flow, x, noise: (fk.data.two_moons_log_prob(x) - flow.log_prob(x)).mean(), "noise"),
    (lambda flow, x, noise: fk.data.two_moons_log_prob(x) - flow.log_prob(x), "single number"),
])
def test_kl_checker_names_the_mistake(wrong, message):
    result = ex.kl.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


# ----------------------------------------------------------------------------------
# Exercise 3: a RealNVP from parts
# ----------------------------------------------------------------------------------


def make_reference(num_couplings, hidden):
    layers = [fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, hidden))
              for i in range(num_couplings)]
    return fk.Flow(layers, fk.StandardNormal(2))


def test_make_realnvp_reference_passes():
    result = ex.realnvp.check(make_reference, show=False)
    assert result.passed, str(result)
    # fk.RealNVP itself is a valid answer too
    assert ex.realnvp.check(lambda k, h: fk.RealNVP(2, num_couplings=k, hidden=h), show=False).passed


class _RandomLastLayer(torch.nn.Sequential):
    def __init__(self, hidden):
        super().__init__(torch.nn.Linear(2, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4))


@pytest.mark.parametrize("wrong, message", [
    (lambda k, h: [fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, h)) for i in range(k)],
     "should return an fk.Flow"),
    (lambda k, h: fk.Flow([fk.AffineCoupling(fk.alternating_mask(2, 0), fk.MLP(2, 4, h))
                           for _ in range(k)], fk.StandardNormal(2)), "alternate the masks"),
    (lambda k, h: fk.Flow([fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, h))
                           for i in range(k + 1)], fk.StandardNormal(2)), "transforms, expected"),
    (lambda k, h: fk.Flow([fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, 8))
                           for i in range(k)], fk.StandardNormal(2)), "units, expected"),
    (lambda k, h: fk.Flow([fk.AffineCoupling(fk.alternating_mask(2, i % 2), _RandomLastLayer(h))
                           for i in range(k)], fk.StandardNormal(2)), "should be the identity"),
    (lambda k, h: fk.Flow([fk.AdditiveCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 2, h))
                           for i in range(k)], fk.StandardNormal(2)), "expected fk.AffineCoupling"),
])
def test_make_realnvp_checker_names_the_mistake(wrong, message):
    result = ex.realnvp.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


def _template(*args):
    raise NotImplementedError


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_every_reference_passes_and_the_template_is_not_attempted(exercise):
    result = exercise.check(exercise.reference, show=False)
    assert result.passed and str(result).startswith("PASS"), str(result)
    untouched = exercise.check(_template, show=False)
    assert untouched.status == "not attempted" and str(untouched).startswith("Not attempted yet")
    assert "def " in exercise.solution_code() and exercise.hints


def test_wrong_types_get_a_clear_message():
    assert "should be a number" in str(ex.kl.check(lambda flow, x, noise: "0.1", show=False))
    assert "should return an fk.Flow" in str(ex.realnvp.check(lambda k, h: None, show=False))


def test_summary_lists_every_exercise(capsys):
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert "exercises passed" in capsys.readouterr().out


# ----------------------------------------------------------------------------------
# Explorers
# ----------------------------------------------------------------------------------


def test_moon_labels_split_the_arcs():
    labels = w.moon_labels(torch.tensor([[0.0, 1.0], [1.0, -0.5], [-1.0, 0.0], [2.0, 0.5]]))
    assert labels.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_training_scrubber_moves_with_the_step(trained):
    flow, history, x = trained
    test = fk.data.two_moons(300, seed=9)
    explorer = w.training_scrubber(flow, history, x, test=test, entropy=1.0, grid_n=30,
                                   num_samples=100)
    steps = [s for s, _ in history.snapshots]
    assert steps == [0, 20, 40, 60]
    slider = explorer.controls["step"]
    assert slider.value == 60
    density_end = explorer.artists["density"].get_array().copy()
    samples_end = explorer.artists["samples"].get_offsets().copy()
    slider.value = 0
    density_start = explorer.artists["density"].get_array()
    assert not np.allclose(density_start, density_end)
    assert not np.allclose(explorer.artists["samples"].get_offsets(), samples_end)
    assert list(explorer.artists["marker"].get_xdata()) == [0, 0]
    # step 0 is the untrained flow: exactly the standard normal density
    grid_points = fk.plotting.grid(w.XLIM, w.YLIM, 30)[2]
    gaussian = torch.exp(-0.5 * (grid_points ** 2).sum(1)) / (2 * math.pi)
    assert np.allclose(density_start, gaussian.reshape(30, 30).numpy(), atol=1e-6)
    assert "step 0 of 60" in explorer.artists["caption"].get_text()
    assert "KL gap" in explorer.artists["caption"].get_text()
    slider.value = 40
    assert "step 40" in explorer.artists["caption"].get_text()
    # the flow passed in is untouched by loading snapshots
    final = history.snapshots[-1][1]
    assert all(torch.equal(p, final[name]) for name, p in flow.named_parameters())


def test_training_scrubber_needs_snapshots():
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    history = fk.fit(flow, fk.data.two_moons(500), 3, progress=False)
    with pytest.raises(ValueError, match="snapshot_every"):
        w.training_scrubber(flow, history)


def test_layer_explorer_moves_points_along_the_chain(trained):
    flow, _, x = trained
    explorer = w.layer_explorer(flow, x, num_points=200)
    slider = explorer.controls["k"]
    assert slider.max == len(flow)
    data0 = explorer.artists["forward"].get_offsets().copy()
    samples0 = explorer.artists["inverse"].get_offsets().copy()
    assert np.allclose(data0, x[:200].numpy())
    seen = [data0]
    for k in range(1, len(flow) + 1):
        slider.value = k
        current = explorer.artists["forward"].get_offsets().copy()
        assert not np.allclose(current, seen[-1])
        seen.append(current)
    with torch.no_grad():
        z, _ = flow.forward(x[:200])
    assert np.allclose(seen[-1], z.numpy(), atol=1e-5)
    assert not np.allclose(explorer.artists["inverse"].get_offsets(), samples0)
    assert "latent space" in explorer.artists["caption"].get_text()


def test_true_vs_learned_slider_and_scale(trained):
    flow, history, _ = trained
    test = fk.data.two_moons(300, seed=9)
    explorer = w.true_vs_learned(flow, history, test=test, entropy=1.0, grid_n=30)
    learned_end = explorer.artists["learned"].get_array().copy()
    contribution_end = explorer.artists["contribution"].get_array().copy()
    explorer.controls["step"].value = 0
    assert not np.allclose(explorer.artists["learned"].get_array(), learned_end)
    assert not np.allclose(explorer.artists["contribution"].get_array(), contribution_end)
    caption = explorer.artists["caption"].get_text()
    assert "KL(p || q)" in caption and "test NLL - H" in caption
    true_linear = explorer.artists["true"].get_array().copy()
    explorer.controls["scale"].value = "log density"
    true_log = explorer.artists["true"].get_array()
    assert not np.allclose(true_log, true_linear)
    assert true_log.min() >= -12.0
    # the true density integrates to about one over the window
    cell = (4.0 / 29) * (2.5 / 29)
    assert true_linear.sum() * cell == pytest.approx(1.0, abs=0.03)


def test_true_vs_learned_without_history_has_a_scale_control():
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    explorer = w.true_vs_learned(flow, grid_n=20)
    assert list(explorer.controls) == ["scale"]
    before = explorer.artists["learned"].get_array().copy()
    explorer.controls["scale"].value = "log density"
    assert not np.allclose(explorer.artists["learned"].get_array(), before)


def test_diverged_snapshot_shows_a_message(trained):
    flow, history, _ = trained
    broken = fk.History(loss=list(history.loss), snapshots=list(history.snapshots))
    state = {k: v.clone() for k, v in history.snapshots[-1][1].items()}
    first_weight = next(k for k in state if k.endswith("weight"))
    state[first_weight].fill_(float("nan"))
    broken.snapshots.append((61, state))
    explorer = w.training_scrubber(flow, broken, grid_n=20, num_samples=50)
    explorer.controls["step"].value = 61
    assert "non-finite" in explorer.artists["caption"].get_text()
    explorer = w.true_vs_learned(flow, broken, grid_n=20)
    explorer.controls["step"].value = 61
    assert "non-finite" in explorer.artists["caption"].get_text()


def test_lesson_figure_builds():
    import matplotlib.figure

    fig = w.lesson_figure(steps=20, hidden=8)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 4


# ----------------------------------------------------------------------------------
# The one entropy value every lesson prints
# ----------------------------------------------------------------------------------


def test_stored_entropy_estimate_is_what_the_function_computes():
    # Every lesson prints the stored value at noise 0.1; recompute it exactly.
    x = fk.data.two_moons(100_000, noise=0.1, seed=12345)
    neg_log_p = -fk.data.two_moons_log_prob(x.double(), noise=0.1)
    stored = fk.data._ENTROPY_ESTIMATES[0.1]
    assert stored[0] == pytest.approx(neg_log_p.mean().item(), abs=1e-12)
    assert stored[1] == pytest.approx(neg_log_p.std().item() / 100_000 ** 0.5, rel=1e-9)
    assert fk.data.two_moons_entropy(0.1) == stored[0]


@pytest.mark.parametrize("noise", sorted(fk.data._ENTROPY_ESTIMATES))
def test_every_stored_entropy_estimate_agrees_with_a_fresh_one(noise):
    # A cheap independent estimate lies within a few combined standard errors of each one.
    stored, stored_se = fk.data._ENTROPY_ESTIMATES[noise]
    fresh, fresh_se = fk.data.two_moons_entropy_estimate(noise, n=3000, seed=7)
    assert abs(fresh - stored) < 4 * math.hypot(fresh_se, stored_se)


def test_entropy_estimate_computes_what_is_not_stored():
    h, se = fk.data.two_moons_entropy_estimate(0.1, n=4000, seed=3)
    x = fk.data.two_moons(4000, noise=0.1, seed=3)
    neg_log_p = -fk.data.two_moons_log_prob(x.double(), noise=0.1)
    assert h == pytest.approx(neg_log_p.mean().item(), abs=1e-12)
    assert se == pytest.approx(neg_log_p.std().item() / 4000 ** 0.5, rel=1e-9)
    # the stored value at noise 0.1 lies within a few standard errors of this small estimate
    assert abs(h - fk.data.two_moons_entropy_estimate(0.1)[0]) < 4 * se
