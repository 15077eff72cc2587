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
