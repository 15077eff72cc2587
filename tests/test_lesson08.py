"""Lesson 08 exercises: references pass, templates are not attempted, slips are named."""

import math

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")  # explorers put the figure's canvas in a widget

import torch  # noqa: E402

from flowkit.exercises import lesson08 as ex  # noqa: E402


def template(*args):
    # your code here
    raise NotImplementedError


def test_references_pass():
    for exercise in ex.EXERCISES:
        result = exercise.check(exercise.reference, show=False)
        assert result.passed, result.message


def test_templates_are_not_attempted():
    for exercise in ex.EXERCISES:
        result = exercise.check(template, show=False)
        assert result.status == "not attempted", result.message
        assert "Not attempted yet" in result.message


def test_coupling_inverse_slips():
    def wrong_sign(z, context, mask, scale_shift):
        s, t = scale_shift(z * mask, context)
        return (z + t) * torch.exp(-s), -s.sum(dim=1)

    def unmasked(z, context, mask, scale_shift):
        s, t = scale_shift(z, context)
        return (z - t) * torch.exp(-s), -s.sum(dim=1)

    def forward_log_det(z, context, mask, scale_shift):
        s, t = scale_shift(z * mask, context)
        return (z - t) * torch.exp(-s), s.sum(dim=1)

    def unsummed(z, context, mask, scale_shift):
        s, t = scale_shift(z * mask, context)
        return (z - t) * torch.exp(-s), -s

    assert "wrong sign" in ex.coupling_inverse.check(wrong_sign, show=False).message
    assert "only the kept half" in ex.coupling_inverse.check(unmasked, show=False).message
    assert "log_abs_det has the wrong sign" in ex.coupling_inverse.check(forward_log_det, show=False).message
    assert "one value per sample" in ex.coupling_inverse.check(unsummed, show=False).message


def test_bayes_posterior_slips():
    no_prior = lambda ll, prior: torch.softmax(ll, dim=1)
    naive = lambda ll, prior: torch.exp(ll) * prior / (torch.exp(ll) * prior).sum(dim=1, keepdim=True)
    wrong_dim = lambda ll, prior: torch.softmax(ll + torch.log(prior), dim=0)
    assert "prior is missing" in ex.bayes_posterior.check(no_prior, show=False).message
    assert "log space" in ex.bayes_posterior.check(naive, show=False).message
    assert "dim=1" in ex.bayes_posterior.check(wrong_dim, show=False).message


def test_label_bits_slips():
    nats = lambda p, d: float(-(p[p > 0] * torch.log(p[p > 0])).sum()) / d
    per_image = lambda p, d: float(-(p[p > 0] * torch.log2(p[p > 0])).sum())
    uniform = lambda p, d: math.log2(len(p)) / d
    naive = lambda p, d: float(-(p * torch.log2(p)).sum()) / d
    assert "nats" in ex.label_bits.check(nats, show=False).message
    assert "bits per image" in ex.label_bits.check(per_image, show=False).message
    assert "uniform prior" in ex.label_bits.check(uniform, show=False).message
    assert "probability 0" in ex.label_bits.check(naive, show=False).message


def test_wrong_types_get_messages():
    assert "pair" in ex.coupling_inverse.check(lambda z, c, m, f: z, show=False).message
    assert "one number" in ex.label_bits.check(lambda p, d: "3 bits", show=False).message
    result = ex.bayes_posterior.check(lambda ll, prior: ll.tolist(), show=False)
    assert not result.passed and "torch.Tensor" in result.message
    assert "without calling it" in ex.bayes_posterior.check(42, show=False).message


def test_learner_exceptions_are_reported_not_raised():
    def broken(z, context, mask, scale_shift):
        return z @ torch.ones(3, 3), None

    result = ex.coupling_inverse.check(broken, show=False)
    assert result.status == "fail" and "RuntimeError" in result.message and "broken" in result.message


def test_exact_value_uniform_labels():
    assert math.isclose(ex.reference_label_bits(torch.full((10,), 0.1), 64), math.log2(10) / 64, rel_tol=1e-6)


# ----------------------------------------------------------------------------------
# Explorers: sliders move headlessly and the picture follows
# ----------------------------------------------------------------------------------

import numpy as np  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit import conditional_data as cd  # noqa: E402
from flowkit.conditional import ConditionalImageRealNVP, ConditionalRealNVP, Standardize  # noqa: E402
from flowkit.widgets import lesson08 as w  # noqa: E402


def _nudge(flow, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return flow.eval()


def test_moons_explorer_follows_the_noise_slider():
    flow = _nudge(ConditionalRealNVP(2, 1, num_couplings=2, hidden=8, embedding=Standardize(0.14, 0.04)), scale=0.3)
    levels = [0.05, 0.1, 0.2]
    explorer = w.moons_context_explorer(flow, levels, [0.3, 0.02, 0.05], [0.1], grid_n=20)
    explorer.set(noise=0)
    low = np.array(explorer.artists["exact"].get_array())
    explorer.set(noise=2)
    high = np.array(explorer.artists["exact"].get_array())
    assert low.max() > high.max()          # less noise: a sharper, higher exact density
    assert explorer.artists["marker"].get_xdata()[0] == 0.2


def test_digit_and_completion_explorers_redraw():
    labels_flow = _nudge(ConditionalImageRealNVP(classes=10, hidden=8, couplings=1))
    explorer = w.digit_class_explorer(labels_flow, count=6)
    before = np.array(explorer.artists["samples"].get_array())
    explorer.set(digit=7, temperature=0.3)
    assert not np.allclose(before, np.array(explorer.artists["samples"].get_array()), equal_nan=True)

    completion_flow = _nudge(ConditionalImageRealNVP(context_channels=3, hidden=8, couplings=1))
    explorer = w.completion_explorer(completion_flow, fk.data.digits("test")[:5], count=4)
    before = np.array(explorer.artists["completions"].get_array())
    explorer.set(index=3, kind="lowres")
    assert not np.allclose(before, np.array(explorer.artists["completions"].get_array()), equal_nan=True)


def test_tone_explorer_spectrum_follows_the_pitch():
    flow = _nudge(ConditionalRealNVP(64, 2, num_couplings=2, hidden=8,
                                     embedding=Standardize([625.0, 0.5], [217.0, 0.29])))
    explorer = w.tone_explorer(flow, count=8)
    explorer.set(pitch=250.0, brightness=0.0)
    freqs = explorer.artists["data_spectrum"].get_xdata()
    assert freqs[np.argmax(explorer.artists["data_spectrum"].get_ydata())] == 250.0
    explorer.set(pitch=750.0)
    assert freqs[np.argmax(explorer.artists["data_spectrum"].get_ydata())] == 750.0
