"""Lesson 09 exercises: the references pass, templates are not attempted, slips are named."""

import math

import pytest
import torch

from flowkit.exercises import lesson09 as ex


def _template(*args):
    # your code here
    raise NotImplementedError


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_reference_passes_and_template_is_not_attempted(exercise):
    assert exercise.check(exercise.reference, show=False).passed
    result = exercise.check(_template, show=False)
    assert result.status == "not attempted"
    assert "Not attempted yet" in result.message


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_wrong_type_and_learner_errors_are_reported(exercise):
    result = exercise.check(lambda *args: "a string", show=False)
    assert not result.passed and "got str" in result.message
    result = exercise.check(lambda *args: 1 / 0, show=False)
    assert not result.passed and "ZeroDivisionError" in result.message
    result = exercise.check(42, show=False)
    assert not result.passed and "expected a function" in result.message
    assert exercise.hint().startswith("Hint 1")


def test_elbo_slips():
    def flipped(x, log_q, log_target):
        return (log_q(x) - log_target(x)).mean()

    def summed(x, log_q, log_target):
        return (log_target(x) - log_q(x)).sum()

    def log_mean_weight(x, log_q, log_target):
        return torch.logsumexp(log_target(x) - log_q(x), 0) - math.log(len(x))

    def no_entropy(x, log_q, log_target):
        return log_target(x).mean()

    def per_sample(x, log_q, log_target):
        return log_target(x) - log_q(x)

    def as_float(x, log_q, log_target):
        return float((log_target(x) - log_q(x)).mean())

    expected = {flipped: "sign is flipped", summed: "summed", log_mean_weight: "estimate of log Z",
                no_entropy: "- log q(x) term is missing", per_sample: "one number"}
    for fn, phrase in expected.items():
        result = ex.elbo_from_samples.check(fn, show=False)
        assert not result.passed and phrase in result.message, (fn.__name__, result.message)
    assert ex.elbo_from_samples.check(as_float, show=False).passed


def test_ess_slips():
    def naive(log_w):
        w = log_w.exp()
        return w.sum() ** 2 / (w ** 2).sum()

    def fraction(log_w):
        return ex._ess_reference(log_w) / len(log_w)

    def upside_down(log_w):
        w = log_w.exp()
        return (w ** 2).sum() / w.sum() ** 2

    def log_weights_as_weights(log_w):
        return log_w.sum() ** 2 / (log_w ** 2).sum()

    def unsquared(log_w):
        w = log_w.exp()
        return w.sum() / (w ** 2).sum()

    def stable(log_w):
        w = (log_w - log_w.max()).exp()
        return float(w.sum() ** 2 / (w ** 2).sum())

    expected = {naive: "overflows or underflows", fraction: "fraction of n",
                upside_down: "upside down", log_weights_as_weights: "exponentiate",
                unsquared: "numerator must be squared"}
    for fn, phrase in expected.items():
        result = ex.effective_sample_size.check(fn, show=False)
        assert not result.passed and phrase in result.message, (fn.__name__, result.message)
    assert ex.effective_sample_size.check(stable, show=False).passed


def test_reverse_kl_loss_slips():
    def plus_log_det(flow, log_target, z):
        x, log_det = flow.inverse(z)
        return (flow.base.log_prob(z) + log_det - log_target(x)).mean()

    def no_log_det(flow, log_target, z):
        x, _ = flow.inverse(z)
        return (flow.base.log_prob(z) - log_target(x)).mean()

    def elbo_instead(flow, log_target, z):
        x, log_det = flow.inverse(z)
        return (log_target(x) - flow.base.log_prob(z) + log_det).mean()

    def wrong_direction(flow, log_target, z):
        x, log_det = flow(z)
        return (flow.base.log_prob(z) - log_det - log_target(x)).mean()

    def detached(flow, log_target, z):
        x, log_det = flow.inverse(z)
        return (flow.base.log_prob(z) - log_det - log_target(x)).mean().detach()

    def detached_sample(flow, log_target, z):
        x, log_det = flow.inverse(z)
        return (flow.base.log_prob(z) - log_det - log_target(x.detach())).mean()

    def via_log_prob(flow, log_target, z):
        x, _ = flow.inverse(z)
        return (flow.log_prob(x) - log_target(x)).mean()

    expected = {plus_log_det: "wrong sign", no_log_det: "log-det term is missing",
                elbo_instead: "overall sign is flipped", wrong_direction: "flow.forward",
                detached: "no gradient", detached_sample: "wrong gradient"}
    for fn, phrase in expected.items():
        result = ex.reverse_kl_loss.check(fn, show=False)
        assert not result.passed and phrase in result.message, (fn.__name__, result.message)
    assert ex.reverse_kl_loss.check(via_log_prob, show=False).passed  # correct, if slower


def test_summary_lists_every_exercise(capsys):
    for exercise in ex.EXERCISES:
        exercise.last_result = None
    ex.elbo_from_samples.check(ex.elbo_from_samples.reference)
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert rows[0][1] == "pass" and rows[1][1] == "not checked"
    assert "1 of 3 exercises passed" in capsys.readouterr().out


# ----------------------------------------------------------------------------------
# Explorers
# ----------------------------------------------------------------------------------

import statistics  # noqa: E402
import time  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("module://ipympl.backend_nbagg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.widgets import lesson09 as w  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _scrubber_entries():
    entries = {}
    for name in ("U1", "U2"):
        target = fk.targets.ENERGIES[name]
        torch.manual_seed(0)
        flow = fk.RealNVP(2, num_couplings=2, hidden=8)
        history = fk.fit_vi(flow, target.log_prob, 20, progress=False, snapshot_every=10,
                            lr=5e-3)
        entries[name] = w.scrubber_data(target, flow, history, n_kl=500)
    return entries


def test_scrubber_data_and_explorer_update_in_place():
    entries = _scrubber_entries()
    u1 = entries["U1"]
    assert u1.steps == [0, 10, 20]
    # Snapshot 0 is the untrained flow, q = N(0, I): its grid is the standard normal.
    xs = np.linspace(u1.target.view[0], u1.target.view[1], 100)
    ys = np.linspace(u1.target.view[2], u1.target.view[3], 100)
    normal = np.exp(-0.5 * (xs[None, :] ** 2 + ys[:, None] ** 2)) / (2 * math.pi)
    assert np.allclose(u1.densities[0], normal, atol=1e-6)
    assert all(k > 0 for k in u1.kl)
    e = w.training_scrubber(entries)
    n_axes = len(e.figure.axes)
    e.set(snapshot=0)
    assert np.allclose(e.artists["q_image"].get_array(), u1.densities[0])
    assert "after 0 steps" in e.artists["q_title"].get_text()
    e.set(snapshot=2)
    assert f"KL(q||p) = {u1.kl[2]:.3f}" in e.artists["q_title"].get_text()
    e.set(target="U2")
    assert e.artists["floor"].get_ydata()[0] == pytest.approx(-fk.targets.U2.log_Z)
    assert np.allclose(e.artists["q_image"].get_array(), entries["U2"].densities[2])
    assert len(e.figure.axes) == n_axes
    assert "image/png" in e._repr_mimebundle_()
    times = []
    for i in range(50):
        start = time.perf_counter()
        e.set(snapshot=i % 3)
        times.append(time.perf_counter() - start)
    print(f"scrubber update median {1000 * statistics.median(times):.2f} ms")
    with pytest.raises(ValueError, match="snapshots"):
        w.scrubber_data(fk.targets.U1, fk.RealNVP(2, 2, 8), fk.History())


def test_mode_fits_and_explorer():
    fits = w.fit_two_modes(separations=(1.0, 5.0), steps=30, num_couplings=2, hidden=8)
    assert len(fits.reverse_grids) == len(fits.forward_grids) == 2
    assert all(0.0 <= m <= 1.0 for m in fits.reverse_right_mass + fits.forward_right_mass)
    cell = ((fits.box[1] - fits.box[0]) / 99) * ((fits.box[3] - fits.box[2]) / 99)
    for grid in fits.target_grids:
        assert grid.sum() * cell == pytest.approx(1.0, abs=0.02)  # normalised target
    e = w.mode_explorer(fits)
    e.set(separation=1)
    assert np.allclose(e.artists["images"][0].get_array(), fits.reverse_grids[1])
    assert np.allclose(e.artists["images"][1].get_array(), fits.forward_grids[1])
    assert f"{100 * fits.forward_right_mass[1]:.0f}%" in e.artists["readouts"][1].get_text()
    assert f"ESS {100 * fits.reverse_ess[1]:.0f}%" in e.artists["readouts"][0].get_text()
    visible = [[c.get_visible() for c in pair] for pair in e.artists["contours"]]
    assert visible == [[False, False], [True, True]]
    times = []
    for i in range(50):
        start = time.perf_counter()
        e.set(separation=i % 2)
        times.append(time.perf_counter() - start)
    print(f"mode explorer update median {1000 * statistics.median(times):.2f} ms")
