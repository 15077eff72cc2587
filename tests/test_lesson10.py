"""Lesson 10 exercises: the references pass, templates are not attempted, slips are named."""

import torch

from flowkit.continuous import exact_divergence
from flowkit.exercises import lesson10 as ex


def template(*args):
    # your code here
    raise NotImplementedError


def status(exercise, answer):
    return exercise.check(answer, show=False)


def test_references_pass():
    for exercise in ex.EXERCISES:
        result = status(exercise, exercise.reference)
        assert result.passed, result.message


def test_templates_are_not_attempted():
    for exercise in ex.EXERCISES:
        result = status(exercise, template)
        assert result.status == "not attempted", result.message
        assert "Not attempted yet" in result.message


def test_euler_step_slips():
    def backwards(field, x, t, h):
        v, div = exact_divergence(field, x, t)
        return x - h * v, h * div

    def flipped_log_det(field, x, t, h):
        v, div = exact_divergence(field, x, t)
        return x + h * v, -h * div

    def unscaled_log_det(field, x, t, h):
        v, div = exact_divergence(field, x, t)
        return x + h * v, div

    def single_value(field, x, t, h):
        v, div = exact_divergence(field, x, t)
        return x + h * v

    assert "wrong way" in status(ex.euler_step, backwards).message
    assert "sign is flipped" in status(ex.euler_step, flipped_log_det).message
    assert "step size h" in status(ex.euler_step, unscaled_log_det).message
    assert "pair" in status(ex.euler_step, single_value).message


def test_divergence_slips():
    def no_sum(field, x, t):
        x = x.detach().requires_grad_(True)
        v = field(x, t)
        cols = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2)]
        return torch.stack(cols, dim=1)

    def whole_jacobian(field, x, t):
        x = x.detach().requires_grad_(True)
        v = field(x, t)
        rows = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0] for i in range(2)]
        return sum(r.sum(dim=1) for r in rows)

    def trace_only(field, x, t):  # right for the linear field, wrong for the nonlinear one
        return torch.full((x.shape[0],), -1.0, dtype=x.dtype)

    assert "diagonal entries" in status(ex.divergence, no_sum).message
    assert "every entry" in status(ex.divergence, whole_jacobian).message
    message = status(ex.divergence, trace_only).message
    assert "nonlinear" in message and not status(ex.divergence, trace_only).passed


def test_fm_target_slips():
    assert "wrong way" in status(ex.fm_target, lambda x, z, t: ((1 - t) * z + t * x, z - x)).message
    assert "swapped" in status(ex.fm_target, lambda x, z, t: ((1 - t) * x + t * z, x - z)).message
    assert "-z term" in status(ex.fm_target, lambda x, z, t: ((1 - t) * z + t * x, x)).message
    # the same velocity written through x_t is right
    assert status(ex.fm_target, lambda x, z, t: ((1 - t) * z + t * x,
                                                 (x - ((1 - t) * z + t * x)) / (1 - t))).passed


def test_wrong_types_get_clear_messages():
    message = status(ex.fm_target, lambda x, z, t: [1, 2]).message
    assert "pair" in message
    message = status(ex.divergence, lambda field, x, t: 3.0).message
    assert "torch.Tensor" in message
    message = status(ex.euler_step, "not a function").message
    assert "expected a function" in message


def test_learner_exceptions_are_reported_not_raised():
    def broken(x, z, t):
        return x @ z  # shape error

    result = status(ex.fm_target, broken)
    assert not result.passed
    assert "RuntimeError" in result.message and "x @ z" in result.message


def test_summary_lists_every_exercise(capsys):
    for exercise in ex.EXERCISES:
        exercise.last_result = None
    status(ex.fm_target, ex.fm_target.reference)
    rows = ex.summary()
    assert [name for name, _ in rows] == ["euler_step", "divergence", "fm_target"]
    assert dict(rows)["fm_target"] == "pass"
    assert "1 of 3" in capsys.readouterr().out
