"""ContinuousFlow: solvers, the instantaneous change of variables, flow matching."""

import math

import pytest
import torch
from torch import nn

import flowkit as fk
from flowkit.continuous import exact_divergence, flow_matching_loss, hutchinson_divergence, odeint

torchdiffeq = pytest.importorskip("torchdiffeq")


@pytest.fixture(autouse=True)
def one_thread():
    # These models are tiny: a second thread only adds waiting, badly so on a shared CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class LinearField(nn.Module):
    """v(x, t) = A x + b: a Gaussian stays Gaussian, with a closed form at every time."""

    def __init__(self, A, b=None):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float64))
        self.register_buffer("b", torch.zeros(self.A.shape[0], dtype=torch.float64)
                             if b is None else torch.as_tensor(b, dtype=torch.float64))

    def forward(self, x, t):
        return x @ self.A.T.to(x.dtype) + self.b.to(x.dtype)


def small_random_field(dim=2, seed=0, hidden=32, scale=0.5):
    """A nonlinear, time-dependent field of moderate size (nothing trained)."""
    torch.manual_seed(seed)
    net = fk.VelocityMLP(dim, hidden=hidden, num_layers=2)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net.double()


A_2D = [[0.3, -0.8], [0.5, -0.2]]


# ---------------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------------


def scaling_field(t, x):
    """dx/dt = cos(t) x, whose solution is x(t) = x(0) exp(sin t)."""
    return torch.cos(t) * x


def test_solvers_converge_at_their_order_to_the_closed_form():
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    exact = x0 * math.exp(math.sin(1.0))  # x(1) for dx/dt = cos(t) x

    def f(t, x):
        return scaling_field(torch.tensor(t, dtype=torch.float64), x)

    for solver, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        errors = [(odeint(f, x0, 0.0, 1.0, n, solver) - exact).abs().max().item() for n in (16, 32)]
        rate = math.log2(errors[0] / errors[1])
        assert abs(rate - order) < 0.3, (solver, errors, rate)


def test_rk4_matches_torchdiffeq_adaptive_solver():
    field = small_random_field(seed=3).requires_grad_(False)
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(t, x):
        return field(x, torch.full((x.shape[0], 1), float(t), dtype=x.dtype))

    reference = torchdiffeq.odeint(f, x0, torch.tensor([0.0, 1.0], dtype=torch.float64),
                                   method="dopri5", rtol=1e-10, atol=1e-10)[-1]
    for solver, steps, tol in (("rk4", 50, 1e-7), ("midpoint", 200, 1e-4), ("euler", 500, 1e-2)):
        ours = odeint(f, x0, 0.0, 1.0, steps, solver)
        assert (ours - reference).abs().max() < tol, solver
    # and the flow's own sampling path integrates the same ODE
    flow = fk.ContinuousFlow(field, 2, steps=50).double()
    x1, _ = flow.inverse(x0)
    assert (x1 - reference).abs().max() < 1e-7


def test_backward_integration_undoes_forward():
    x0 = torch.randn(8, 2, dtype=torch.float64)
    f = lambda t, x: torch.sin(x) * (1 + t)  # noqa: E731
    x1 = odeint(f, x0, 0.0, 1.0, 200, "rk4")
    back = odeint(f, x1, 1.0, 0.0, 200, "rk4")
    assert (back - x0).abs().max() < 1e-8


def test_odeint_path_has_steps_plus_one_states():
    path = odeint(lambda t, x: -x, torch.ones(3, 2), 0.0, 1.0, 7, "euler", return_path=True)
    assert len(path) == 8
    assert torch.allclose(path[-1], torch.full((3, 2), (1 - 1 / 7) ** 7))


# ---------------------------------------------------------------------------------
# The change of variables
# ---------------------------------------------------------------------------------


def test_log_prob_of_a_linear_field_matches_the_gaussian_closed_form():
    # x_1 = expm(A) z + c with c = int_0^1 expm(A s) ds b, so p_1 = N(c, M M^T), M = expm(A).
    A = torch.tensor(A_2D, dtype=torch.float64)
    b = torch.tensor([0.4, -0.3], dtype=torch.float64)
    M = torch.linalg.matrix_exp(A)
    c = torch.linalg.solve(A, (M - torch.eye(2, dtype=torch.float64)) @ b)
    target = torch.distributions.MultivariateNormal(c, covariance_matrix=M @ M.T)
    x = torch.randn(50, 2, dtype=torch.float64) * 2
    for solver, tol in (("rk4", 1e-8), ("midpoint", 1e-4), ("euler", 1e-1)):
        flow = fk.ContinuousFlow(LinearField(A, b), 2, steps=100, solver=solver).double()
        with torch.no_grad():
            got = flow.log_prob(x)
        assert (got - target.log_prob(x)).abs().max() < tol, solver
    # the log-det of a linear field is the trace, exactly, at any step count
    flow = fk.ContinuousFlow(LinearField(A, b), 2, steps=3).double()
    _, log_det = flow.forward(x)
    assert torch.allclose(log_det, torch.full((50,), -A.trace().item(), dtype=torch.float64))


def test_samples_of_a_linear_field_have_the_gaussian_covariance():
    A = torch.tensor(A_2D, dtype=torch.float64)
    M = torch.linalg.matrix_exp(A)
    flow = fk.ContinuousFlow(LinearField(A), 2, steps=40).double()
    x = flow.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(torch.cov(x.T), M @ M.T, atol=0.05)


def test_density_integrates_to_one_on_a_grid():
    flow = fk.ContinuousFlow(small_random_field(seed=1, scale=1.5), 2, steps=8).double()
    edge = torch.linspace(-7, 7, 141, dtype=torch.float64)
    gx, gy = torch.meshgrid(edge, edge, indexing="xy")
    grid = torch.stack([gx.ravel(), gy.ravel()], dim=1)
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    cell = (edge[1] - edge[0]) ** 2
    assert abs(density.sum().item() * cell - 1.0) < 2e-3
    # and the field really bends the Gaussian, so the test is not about N(0, I)
    gauss = fk.StandardNormal(2).log_prob(grid).exp()
    assert (density - gauss).abs().max() > 0.01


def test_forward_log_det_agrees_with_autograd_and_round_trip_holds():
    flow = fk.ContinuousFlow(small_random_field(seed=2, scale=0.8), 2, steps=20)
    x = torch.randn(4, 2)
    report = fk.check_transform(flow, x, tolerance=1e-6)
    assert report.passed, str(report)
    # the round trip error shrinks like the solver's order
    flow64 = fk.ContinuousFlow(small_random_field(seed=2, scale=0.8), 2).double()
    x64 = x.double()
    errors = []
    for steps in (4, 8):
        with torch.no_grad():
            z, _ = flow64.forward(x64, steps=steps)
            back, _ = flow64.inverse(z, steps=steps)
        errors.append((back - x64).abs().max().item())
    assert errors[1] < errors[0] / 8


def test_stages_run_along_the_solver_steps():
    loc, scale = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5])
    flow = fk.ContinuousFlow(small_random_field(seed=6).float(), 2, steps=5, loc=loc, scale=scale)
    x = torch.randn(7, 2)
    stages = flow.forward_stages(x)
    assert len(stages) == 5 + 2 and stages[0] is x
    with torch.no_grad():
        z, _ = flow.forward(x)
        back, _ = flow.inverse(z)
    assert torch.allclose(stages[1], (x - loc) / scale)
    assert torch.allclose(stages[-1], z, atol=1e-6)
    inverse_stages = flow.inverse_stages(z)
    assert torch.allclose(inverse_stages[0], z) and torch.allclose(inverse_stages[-1], back, atol=1e-6)
    assert flow.trajectory(z).shape == (6, 7, 2)
    assert torch.allclose(flow.trajectory(z)[-1], back, atol=1e-6)


def test_image_shaped_events():
    torch.manual_seed(0)
    flow = fk.ContinuousFlow(fk.VelocityMLP((1, 3, 3), hidden=16), (1, 3, 3), steps=4).double()
    x = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    report = fk.check_transform(flow, x, tolerance=1e-5)
    assert report.passed, str(report)
    assert flow.sample(4).shape == (4, 1, 3, 3)


def test_standardisation_enters_the_log_det():
    A = torch.tensor(A_2D, dtype=torch.float64)
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    flow = fk.ContinuousFlow(LinearField(A), 2, steps=50, loc=loc, scale=scale).double()
    plain = fk.ContinuousFlow(LinearField(A), 2, steps=50).double()
    x = torch.randn(10, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = plain.log_prob((x - loc.double()) / scale.double()) - scale.log().sum().double()
        assert torch.allclose(flow.log_prob(x), expected, atol=1e-10)
    assert fk.check_transform(flow, x.float()).passed


# ---------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------


def test_exact_divergence_is_the_jacobian_trace():
    field = small_random_field(dim=3, seed=4)
    x = torch.randn(7, 3, dtype=torch.float64)
    t = torch.rand(7, 1, dtype=torch.float64)
    v, div = exact_divergence(field, x, t)
    assert torch.allclose(v, field(x, t))
    jac = fk.jacobian(lambda inputs: field(inputs, t), x)
    assert torch.allclose(div, jac.diagonal(dim1=1, dim2=2).sum(dim=1), atol=1e-12)


def test_hutchinson_estimate_is_unbiased():
    field = small_random_field(dim=3, seed=5, scale=1.0)
    point = torch.randn(1, 3, dtype=torch.float64)
    draws = 20_000
    x = point.expand(draws, 3).clone()
    t = torch.full((draws, 1), 0.3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 2, x.shape, generator=g).double() * 2 - 1
    _, estimates = hutchinson_divergence(field, x, t, noise)
    _, exact = exact_divergence(field, point, t[:1])
    stderr = estimates.std() / math.sqrt(draws)
    assert estimates.std() > 0.01  # the estimator really is random here
    assert abs(estimates.mean() - exact.item()) < 4 * stderr
    # and through the whole ODE: the mean log-likelihood over draws matches the exact one
    flow = fk.ContinuousFlow(field, 3, steps=8).double()
    torch.manual_seed(1)
    with torch.no_grad():
        exact_lp = flow.log_prob(point)
        hutch = flow.log_prob(point.expand(4000, 3).clone(), divergence="hutchinson")
    assert hutch.std() > 0.01
    assert abs(hutch.mean() - exact_lp.item()) < 4 * hutch.std() / math.sqrt(4000)


def test_log_prob_is_differentiable_for_maximum_likelihood():
    flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=16), 2, steps=4)
    x = fk.data.two_moons(64)
    for divergence in ("exact", "hutchinson"):
        flow.zero_grad()
        (-flow.log_prob(x, divergence=divergence).mean()).backward()
        grads = [p.grad for p in flow.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


# ---------------------------------------------------------------------------------
# Flow matching
# ---------------------------------------------------------------------------------


def test_flow_matching_loss_is_zero_for_the_exact_velocity_of_a_point_mass():
    # data at one point m: the linear path's velocity is m - z, and x_t = (1-t) z + t m, so
    # v(x, t) = (m - x) / (1 - t) is exact and the loss vanishes.
    m = torch.tensor([1.5, -0.5])
    field = lambda x, t: (m - x) / (1 - t)  # noqa: E731
    flow = fk.ContinuousFlow(field, 2)
    loss = flow_matching_loss(flow, m.expand(128, 2), torch.Generator().manual_seed(0))
    assert loss.item() < 1e-10
    wrong = fk.ContinuousFlow(lambda x, t: (x - m) / (1 - t), 2)
    assert flow_matching_loss(wrong, m.expand(128, 2), torch.Generator().manual_seed(0)) > 0.5


def test_fit_flow_matching_is_seeded_and_learns_a_shifted_gaussian():
    data = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + torch.tensor([2.0, -1.0])

    def trained(seed):
        torch.manual_seed(123)
        flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=32, num_layers=2), 2, steps=10)
        history = fk.fit_flow_matching(flow, data, steps=300, lr=3e-3, seed=seed, progress=False)
        return flow, history

    flow, history = trained(0)
    again, history_again = trained(0)
    assert history.loss == history_again.loss
    assert isinstance(history, fk.History) and history.steps == 300 and history.seconds > 0
    assert sum(history.loss[-20:]) < sum(history.loss[:20]) / 2
    samples = flow.sample(2000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(samples.mean(0), torch.tensor([2.0, -1.0]), atol=0.15)
    true = torch.distributions.Normal(torch.tensor([2.0, -1.0]), 0.5)
    test = data[:500]
    with torch.no_grad():
        gap = (true.log_prob(test).sum(1) - flow.log_prob(test)).mean()
    assert gap < 0.15


def test_fit_flow_matching_accepts_a_sampler_and_preprocess():
    flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=8), 2, steps=2)
    history = fk.fit_flow_matching(flow, lambda n, g: torch.randn(n, 2, generator=g), steps=3,
                                   progress=False)
    assert history.steps == 3
    images = fk.ContinuousFlow(fk.VelocityMLP((1, 8, 8), hidden=8), (1, 8, 8), steps=2)
    history = fk.fit_flow_matching(images, fk.data.digits("val"), steps=2, batch_size=16,
                                   preprocess=fk.data.dequantize, progress=False)
    assert history.steps == 2


# ---------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------


def test_constructor_rejects_bad_arguments():
    field = fk.VelocityMLP(2)
    with pytest.raises(TypeError, match="field"):
        fk.ContinuousFlow("not a field", 2)
    with pytest.raises(ValueError, match="solver"):
        fk.ContinuousFlow(field, 2, solver="dopri5")
    with pytest.raises(ValueError, match="divergence"):
        fk.ContinuousFlow(field, 2, divergence="approximate")
    with pytest.raises(ValueError, match="steps"):
        fk.ContinuousFlow(field, 2, steps=0)
    with pytest.raises(TypeError, match="steps"):
        fk.ContinuousFlow(field, 2, steps=2.5)
    with pytest.raises(ValueError, match="scale"):
        fk.ContinuousFlow(field, 2, scale=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="loc"):
        fk.ContinuousFlow(field, 2, loc=torch.zeros(3))


def test_calls_reject_bad_input():
    flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=8), 2, steps=2)
    with pytest.raises(ValueError, match="batch dimension"):
        flow.log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating"):
        flow.log_prob(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="steps"):
        flow.sample(3, steps=0)
    with pytest.raises(ValueError, match="solver"):
        flow.log_prob(torch.zeros(3, 2), solver="heun")
    with pytest.raises(ValueError, match="non-negative"):
        flow.sample(-1)
    with pytest.raises(ValueError, match="unconditional"):
        flow.log_prob(torch.zeros(3, 2), context=torch.zeros(3, 1))
    assert flow.sample(0).shape == (0, 2)


def test_a_field_of_the_wrong_shape_is_named():
    flow = fk.ContinuousFlow(lambda x, t: x[:, :1], 2, steps=2)
    with pytest.raises(ValueError, match="field returned shape"):
        flow.sample(3)
    with pytest.raises(ValueError, match="field returned shape"):
        flow.log_prob(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="field must return a tensor"):
        fk.ContinuousFlow(lambda x, t: 1.0, 2, steps=2).sample(2)


def test_fit_flow_matching_rejects_bad_arguments():
    flow = fk.ContinuousFlow(fk.VelocityMLP(2, hidden=8), 2, steps=2)
    data = fk.data.two_moons(100)
    with pytest.raises(TypeError, match="ContinuousFlow"):
        fk.fit_flow_matching(fk.RealNVP(2), data, steps=1)
    with pytest.raises(ValueError, match="trainable parameters"):
        fk.fit_flow_matching(fk.ContinuousFlow(lambda x, t: -x, 2), data, steps=1)
    with pytest.raises(ValueError, match="shape"):
        fk.fit_flow_matching(flow, torch.zeros(10, 3), steps=1)
    with pytest.raises(ValueError, match="non-negative"):
        fk.fit_flow_matching(flow, data, steps=-1)
    with pytest.raises(ValueError, match="batch_size"):
        fk.fit_flow_matching(flow, data, steps=1, batch_size=0)
    with pytest.raises(TypeError, match="data"):
        fk.fit_flow_matching(flow, [1, 2], steps=1)
