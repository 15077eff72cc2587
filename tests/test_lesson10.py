"""Lesson 10: exercises (references pass, templates not attempted, slips named) and explorers."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.widgets import lesson10 as w  # noqa: E402

from flowkit.continuous import exact_divergence  # noqa: E402
from flowkit.exercises import lesson10 as ex  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


# ---------------------------------------------------------------------------------
# Explorers
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_flow():
    torch.manual_seed(0)
    x = fk.data.two_moons(2000)
    flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=16, num_layers=2), 2, loc=x.mean(0), scale=x.std(0))
    fk.fit_flow_matching(flow, x, steps=20, lr=1e-2, progress=False)
    return flow


def test_residual_stack_converges_to_the_ode():
    explorer = w.residual_stack_explorer(num_points=50)
    errors = []
    for k in (2, 8, 32):
        explorer.set(layers=k)
        errors.append(dict(explorer.artists["readout"]))
    # Euler is first order: four times the layers, about a quarter of the error
    for coarse, fine in zip(errors, errors[1:]):
        assert fine["position_error"] < coarse["position_error"] / 2.5
        assert fine["logdet_error"] < coarse["logdet_error"] / 2.5


def test_residual_stack_log_det_matches_autograd():
    field = w.SpiralField().double()
    x = torch.randn(6, 2, dtype=torch.float64)
    path, log_det = w.residual_stack(field, x, 3)

    def stack(inputs):
        for _ in range(3):
            inputs = inputs + field(inputs) / 3
        return inputs

    assert torch.allclose(path[-1], stack(x))
    assert torch.allclose(log_det[-1], fk.log_abs_det_jacobian(stack, x), atol=1e-10)
    jac = fk.jacobian(lambda inputs: field(inputs), x)
    assert torch.allclose(field.jacobian(x), jac)
    assert torch.allclose(field.divergence(x), jac.diagonal(dim1=1, dim2=2).sum(1))


def test_hutchinson_explorer_spread_shrinks_and_rademacher_wins():
    explorer = w.hutchinson_explorer(draws=400, max_probes=16)
    explorer.set(probes=1)
    one = dict(explorer.artists["readout"])
    explorer.set(probes=16)
    sixteen = dict(explorer.artists["readout"])
    for kind in ("rademacher", "gaussian"):
        assert 2.5 < one[kind] / sixteen[kind] < 6  # about sqrt(16) = 4
    assert one["rademacher"] < one["gaussian"]
    jac = w.demo_jacobian()
    estimates = w.hutchinson_estimates(jac, 4000, 4)
    assert abs(estimates.mean().item() - jac.trace().item()) < 4 * estimates.std().item() / 4000 ** 0.5


def test_time_and_euler_explorers_move_the_points(small_flow):
    explorer = w.time_explorer(small_flow, num_points=200, num_times=11)
    points = explorer.figure.axes[0].collections[0]
    explorer.set(t=0.0)
    start = np.array(points.get_offsets())
    explorer.set(t=1.0)
    end = np.array(points.get_offsets())
    assert not np.allclose(start, end)
    assert "t = 1.00" in explorer.figure.axes[0].get_title()

    euler = w.euler_steps_explorer(small_flow, num_points=100, step_counts=(1, 5, 50))
    euler.set(steps=50)
    assert "50 steps" in euler.figure.axes[0].get_title()
    shown = np.array(euler.figure.axes[0].collections[0].get_offsets())
    z = small_flow.base.sample(100, generator=torch.Generator().manual_seed(0))
    assert np.allclose(shown, w.euler_samples(small_flow, z, 50).numpy(), atol=1e-5)


def test_energy_distance_separates_distributions():
    a = fk.data.two_moons(500, seed=1)
    b = fk.data.two_moons(500, seed=2)
    same = w.energy_distance(a, b)
    shifted = w.energy_distance(a, b + torch.tensor([0.5, 0.0]))
    assert abs(same) < 0.02
    assert shifted > 10 * abs(same) and shifted > 0.05


def test_lesson_figure_fits_the_page():
    fig = w.lesson_figure()
    assert fig.get_figwidth() * fig.dpi <= 820
