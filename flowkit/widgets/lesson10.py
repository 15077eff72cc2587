"""Lesson 10 explorers: from K residual layers to an ODE, and flow matching on moons.

* :func:`residual_stack_explorer` -- K residual steps ``x + h v(x)`` against the ODE they
  approximate, and the log-det as a sum of per-layer terms against the integral of the
  divergence;
* :func:`hutchinson_explorer` -- Hutchinson's estimate of a divergence in 64 dimensions:
  its spread shrinks like ``1/sqrt(probes)``, Rademacher probes beating Gaussian ones;
* :func:`time_explorer` -- samples of ``p_t`` and the velocity field as ``t`` runs from 0 to 1;
* :func:`euler_steps_explorer` -- samples drawn with 1 to 100 Euler steps.

The explorers precompute what a slider shows; moving one only swaps arrays.
"""

from __future__ import annotations

import functools

import ipywidgets as widgets
import numpy as np
import torch

from .. import data
from ..continuous import ContinuousFlow, odeint
from ._base import Explorer, float_slider, int_slider, make_figure, single_thread

__all__ = ["SpiralField", "residual_stack", "residual_stack_explorer", "hutchinson_estimates",
           "hutchinson_explorer", "demo_jacobian", "time_explorer", "euler_samples",
           "energy_distance", "euler_steps_explorer", "lesson_figure", "XLIM", "YLIM"]

def _single_threaded(build):
    """Build an explorer on one thread: its precomputation is many tiny tensor operations."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with single_thread():
            return build(*args, **kwargs)
    return wrapper


XLIM = (-2.0, 3.0)
YLIM = (-1.6, 2.1)


class SpiralField(torch.nn.Module):
    r"""``v(x) = A x + \beta \tanh(x)``: a spiral whose Jacobian has a closed form.

    ``A`` rotates and shrinks; ``tanh`` pushes points apart near the origin. The
    divergence is :math:`\operatorname{tr} A + \beta \sum_i (1 - \tanh^2 x_i)`.
    """

    def __init__(self, rotation: float = 2.0, decay: float = -0.3, beta: float = 0.6):
        super().__init__()
        self.register_buffer("A", torch.tensor([[decay, -rotation], [rotation, decay]]))
        self.beta = beta

    def forward(self, x, t=None):
        return x @ self.A.T.to(x.dtype) + self.beta * torch.tanh(x)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        diag = self.beta * (1 - torch.tanh(x) ** 2)
        return self.A.to(x.dtype) + torch.diag_embed(diag)

    def divergence(self, x: torch.Tensor) -> torch.Tensor:
        return self.A.diagonal().sum().to(x.dtype) + (self.beta * (1 - torch.tanh(x) ** 2)).sum(dim=1)


def residual_stack(field: SpiralField, x: torch.Tensor, layers: int):
    """Push ``x`` through ``layers`` residual steps ``x + h v(x)``, ``h = 1/layers``.

    Returns the path ``(layers + 1, n, 2)`` and the running log-det ``(layers + 1, n)``,
    each step adding its exact ``log|det(I + h J)|`` (a 2 x 2 determinant, in closed form).
    """
    h = 1.0 / layers
    path, log_det = [x], [torch.zeros(x.shape[0], dtype=x.dtype)]
    for _ in range(layers):
        step = torch.eye(2, dtype=x.dtype) + h * field.jacobian(path[-1])
        det = step[:, 0, 0] * step[:, 1, 1] - step[:, 0, 1] * step[:, 1, 0]
        log_det.append(log_det[-1] + det.abs().log())
        path.append(path[-1] + h * field(path[-1]))
    return torch.stack(path), torch.stack(log_det)


def _ode_reference(field: SpiralField, x: torch.Tensor, steps: int = 200):
    """The ODE solution (RK4) and the running integral of the divergence, on a fine grid."""
    def dynamics(t, state):
        return field(state[0]), field.divergence(state[0])
    path = odeint(dynamics, (x, torch.zeros(x.shape[0], dtype=x.dtype)), 0.0, 1.0, steps, "rk4",
                  return_path=True)
    return torch.stack([p[0] for p in path]), torch.stack([p[1] for p in path])


def _start_points(num_points: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0 = 0.35 * torch.randn(num_points, 2, generator=g, dtype=torch.float64)
    return x0 + torch.tensor([1.3, 0.0], dtype=torch.float64)


@_single_threaded
def residual_stack_explorer(num_points: int = 200, max_layers: int = 64, seed: int = 0) -> Explorer:
    """Slider K: K residual layers against the ODE, and the log-det sum against the integral."""
    field = SpiralField().double()
    x0 = _start_points(num_points, seed)
    tracked = int(x0.norm(dim=1).argmax())  # the point whose path and log-det are drawn
    ode_path, ode_logdet = _ode_reference(field, x0)
    ode_end = ode_path[-1].numpy()
    times = np.linspace(0, 1, ode_path.shape[0])

    fig, (ax_x, ax_l) = make_figure(1, 2, figsize=(8.2, 3.6))
    ax_x.scatter(x0[:, 0], x0[:, 1], s=4, color="C0", alpha=0.3, label="t = 0")
    ax_x.scatter(ode_end[:, 0], ode_end[:, 1], s=8, color="0.6", label="ODE, t = 1")
    ax_x.plot(ode_path[:, tracked, 0], ode_path[:, tracked, 1], color="k", lw=1, label="ODE path")
    stack_points = ax_x.scatter(ode_end[:, 0], ode_end[:, 1], s=6, color="C1", label="K layers")
    (stack_line,) = ax_x.plot([], [], "o-", color="C1", ms=3, lw=1)
    ax_x.set_aspect("equal")
    ax_x.set_xlim(-2.4, 2.8)
    ax_x.set_ylim(-1.3, 3.4)
    ax_x.legend(fontsize=7, loc="lower left")
    ax_x.set_title("points after the stack", fontsize=10)
    ax_l.plot(times, ode_logdet[:, tracked].numpy(), color="k", lw=1.2,
              label=r"$\int_0^t \mathrm{div}\, v\, ds$")
    (stack_logdet,) = ax_l.step([], [], where="post", color="C1", lw=1.2,
                                label=r"$\sum_k \log|\det(I + hJ_k)|$")
    ax_l.set_xlabel("t  (layer k at t = k/K)")
    ax_l.set_ylabel("log|det| so far")
    ax_l.set_title("log-det of one point", fontsize=10)
    ax_l.legend(fontsize=7, loc="lower left")
    fig.tight_layout()

    stacks = {}
    for k in range(1, max_layers + 1):
        path, log_det = residual_stack(field, x0, k)
        stacks[k] = (path[-1].numpy(), path[:, tracked].numpy(), log_det[:, tracked].numpy(),
                     float((path[-1] - ode_path[-1]).norm(dim=1).max()),
                     float((log_det[-1] - ode_logdet[-1]).abs().max()))
    values = np.concatenate([ode_logdet[:, tracked].numpy()] + [v[2] for v in stacks.values()])
    ax_l.set_ylim(values.min() - 0.1, values.max() + 0.1)
    layers = int_slider("layers K", 4, 1, max_layers)
    readout = {}

    def update():
        k = layers.value
        end, line, log_det, position_error, logdet_error = stacks[k]
        stack_points.set_offsets(end)
        stack_line.set_data(line[:, 0], line[:, 1])
        stack_logdet.set_data(np.linspace(0, 1, k + 1), log_det)
        readout["position_error"] = position_error
        readout["logdet_error"] = logdet_error
        ax_x.set_title(f"K = {k}: worst distance to the ODE {readout['position_error']:.3f}", fontsize=10)
        ax_l.set_title(f"worst log-det error {readout['logdet_error']:.3f}", fontsize=10)
        fig.canvas.draw_idle()

    explorer = Explorer(widgets.VBox([layers, fig.canvas]), fig, {"layers": layers}, update)
    explorer.artists["readout"] = readout
    return explorer


# ----------------------------------------------------------------------------------
# Hutchinson's estimator
# ----------------------------------------------------------------------------------


def hutchinson_estimates(jacobian: torch.Tensor, draws: int, probes: int, kind: str = "rademacher",
                         seed: int = 0) -> torch.Tensor:
    r"""``draws`` estimates of ``trace(J)``, each the mean of ``probes`` values :math:`\epsilon^\top J\epsilon`."""
    g = torch.Generator().manual_seed(seed)
    dims = jacobian.shape[0]
    if kind == "rademacher":
        eps = torch.randint(0, 2, (draws * probes, dims), generator=g).to(jacobian.dtype) * 2 - 1
    elif kind == "gaussian":
        eps = torch.randn(draws * probes, dims, generator=g, dtype=jacobian.dtype)
    else:
        raise ValueError(f"kind must be 'rademacher' or 'gaussian', got {kind!r}")
    single = ((eps @ jacobian.T) * eps).sum(dim=1)  # eps^T J eps, one probe each
    return single.reshape(draws, probes).mean(dim=1)


def demo_jacobian(dims: int = 64, seed: int = 0) -> torch.Tensor:
    """A 64 x 64 Jacobian like a field near the data's end of the path: every pixel pulled
    towards its value (a strong negative diagonal) and weakly coupled to the others."""
    g = torch.Generator().manual_seed(seed)
    diagonal = -(0.5 + torch.rand(dims, generator=g, dtype=torch.float64))
    coupling = 0.15 * torch.randn(dims, dims, generator=g, dtype=torch.float64)
    return torch.diag(diagonal) + coupling


@_single_threaded
def hutchinson_explorer(jacobian: torch.Tensor | None = None, draws: int = 1000, max_probes: int = 64) -> Explorer:
    """Slider: probes per estimate. Histograms of the estimates, and the spread against probes."""
    jac = demo_jacobian() if jacobian is None else jacobian.detach().double()
    exact = jac.trace().item()
    probe_counts = list(range(1, max_probes + 1))
    estimates = {}
    for kind in ("rademacher", "gaussian"):
        single = hutchinson_estimates(jac, draws * max_probes, 1, kind, seed=1).reshape(draws, max_probes)
        # the estimate with p probes averages the first p single-probe values of each draw
        running = single.cumsum(dim=1) / torch.arange(1, max_probes + 1, dtype=single.dtype)
        estimates[kind] = {p: running[:, p - 1].numpy() for p in probe_counts}
    spread = {kind: np.array([estimates[kind][p].std() for p in probe_counts]) for kind in estimates}
    width = 3 * spread["gaussian"][0]
    edges = np.linspace(exact - width, exact + width, 61)
    centers = (edges[:-1] + edges[1:]) / 2

    fig, (ax_h, ax_s) = make_figure(1, 2, figsize=(8.2, 3.3))
    bars = {}
    for kind, color in (("gaussian", "C0"), ("rademacher", "C1")):
        (bars[kind],) = ax_h.step(centers, np.zeros_like(centers), where="mid", color=color, label=kind)
    ax_h.axvline(exact, color="k", ls="--", lw=1, label="exact divergence")
    ax_h.set_xlabel("estimate of div v")
    ax_h.set_yticks([])
    ax_h.legend(fontsize=7, loc="upper right")
    for kind, color in (("gaussian", "C0"), ("rademacher", "C1")):
        ax_s.loglog(probe_counts, spread[kind], "o-", ms=3, color=color, label=kind)
    ax_s.loglog(probe_counts, spread["rademacher"][0] / np.sqrt(probe_counts), "k:", lw=1,
                label=r"$\propto 1/\sqrt{\mathrm{probes}}$")
    marker = ax_s.axvline(1, color="0.5", lw=1)
    ax_s.set_xlabel("probes per estimate")
    ax_s.set_ylabel("standard deviation")
    ax_s.legend(fontsize=7)
    ax_s.set_title(f"{jac.shape[0]} dimensions; exact divergence {exact:.2f}", fontsize=10)
    fig.tight_layout()

    probes = int_slider("probes", 1, 1, max_probes)
    readout = {}

    def update():
        p = probes.value
        top = 0
        for kind, line in bars.items():
            counts, _ = np.histogram(estimates[kind][p], bins=edges)
            line.set_ydata(counts)
            top = max(top, counts.max())
            readout[kind] = float(estimates[kind][p].std())
        ax_h.set_ylim(0, top * 1.1 + 1)
        ax_h.set_title(f"{p} probe{'s' if p > 1 else ''}: std {readout['rademacher']:.2f} (Rademacher), "
                       f"{readout['gaussian']:.2f} (Gaussian)", fontsize=9)
        marker.set_xdata([p, p])
        fig.canvas.draw_idle()

    explorer = Explorer(widgets.VBox([probes, fig.canvas]), fig, {"probes": probes}, update)
    explorer.artists["readout"] = readout
    explorer.artists["exact"] = exact
    return explorer


# ----------------------------------------------------------------------------------
# A trained flow-matching model on moons
# ----------------------------------------------------------------------------------


def _style(ax, title=None):
    ax.set_xlim(*XLIM)
    ax.set_ylim(*YLIM)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


@torch.no_grad()
def _velocity_in_data_units(flow: ContinuousFlow, points: torch.Tensor, t: float) -> torch.Tensor:
    y = (points - flow.loc) / flow.scale
    v = flow.field(y, torch.full((points.shape[0], 1), t))
    return v * flow.scale


@_single_threaded
def time_explorer(flow: ContinuousFlow, num_points: int = 800, num_times: int = 41, seed: int = 0) -> Explorer:
    """Slider t: samples of p_t (noise at 0, moons at 1) with the velocity field at that time."""
    z = flow.base.sample(num_points, generator=torch.Generator().manual_seed(seed))
    path = flow.trajectory(z, steps=num_times - 1).numpy()
    times = np.linspace(0, 1, num_times)
    gx, gy = np.meshgrid(np.linspace(*XLIM, 19), np.linspace(*YLIM, 14))
    grid_points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    arrows = [_velocity_in_data_units(flow, grid_points, float(t)).numpy() for t in times]
    moons = data.two_moons(num_points, seed=seed + 1).numpy()

    fig, (ax_t, ax_d) = make_figure(1, 2, figsize=(8.2, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    points = ax_t.scatter(path[0, :, 0], path[0, :, 1], s=2, color="C0")
    quiver = ax_t.quiver(gx, gy, arrows[0][:, 0], arrows[0][:, 1], color="C3", alpha=0.7,
                         angles="xy", scale_units="xy", scale=6, width=0.004)
    _style(ax_t)
    ax_d.scatter(moons[:, 0], moons[:, 1], s=2, color="0.4")
    _style(ax_d, "the data (t = 1)")
    ax_t.set_title("samples of $p_t$", fontsize=10)  # a placeholder, so the layout leaves room
    fig.tight_layout()

    slider = float_slider("time t", 0.6, 0.0, 1.0, step=1 / (num_times - 1))

    def update():
        i = int(round(slider.value * (num_times - 1)))
        points.set_offsets(path[i])
        quiver.set_UVC(arrows[i][:, 0], arrows[i][:, 1])
        ax_t.set_title(f"samples of $p_t$ and the velocity $v(x, t)$ at t = {times[i]:.2f}", fontsize=10)
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([slider, fig.canvas]), fig, {"t": slider}, update)


@torch.no_grad()
def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    r"""Energy distance :math:`2\mathbb E\lVert X - Y\rVert - \mathbb E\lVert X - X'\rVert - \mathbb E\lVert Y - Y'\rVert`.

    Zero only when the two distributions are equal; estimated from the samples ``a`` and ``b``
    (the within-set terms leave out each point's distance to itself).
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)

    def within(x):
        n = x.shape[0]
        return torch.cdist(x, x).sum() / (n * (n - 1))

    return float(2 * torch.cdist(a, b).mean() - within(a) - within(b))


@torch.no_grad()
def euler_samples(flow: ContinuousFlow, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Samples from latents ``z`` with ``steps`` Euler steps (in data units)."""
    y = odeint(lambda t, x: flow.field(x, torch.full((x.shape[0], 1), t)), z, 0.0, 1.0, steps, "euler")
    return y * flow.scale + flow.loc


EULER_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100)


@_single_threaded
def euler_steps_explorer(flow: ContinuousFlow, num_points: int = 800, seed: int = 0,
                         step_counts=EULER_STEPS) -> Explorer:
    """Slider: Euler steps from 1 to 100; samples beside RK4's with many steps."""
    z = flow.base.sample(num_points, generator=torch.Generator().manual_seed(seed))
    samples = {k: euler_samples(flow, z, k).numpy() for k in step_counts}
    with torch.no_grad():
        fine = flow.sample(num_points, generator=torch.Generator().manual_seed(seed), steps=50,
                           solver="rk4").numpy()

    fig, (ax_e, ax_r) = make_figure(1, 2, figsize=(8.2, 3.0))
    points = ax_e.scatter(samples[1][:, 0], samples[1][:, 1], s=2, color="C1")
    _style(ax_e)
    ax_r.scatter(fine[:, 0], fine[:, 1], s=2, color="C2")
    _style(ax_r, "RK4, 50 steps (200 field calls)")
    fig.tight_layout()
    ax_e.set_title("Euler", fontsize=10)
    fig.tight_layout()
    start = 4 if 4 in step_counts else step_counts[0]
    slider = widgets.SelectionSlider(options=list(step_counts), value=start,
                                     description="Euler steps", continuous_update=True,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))

    def update():
        k = slider.value
        points.set_offsets(samples[k])
        ax_e.set_title(f"Euler, {k} step{'s' if k > 1 else ''} ({k} field call{'s' if k > 1 else ''})",
                       fontsize=10)
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([slider, fig.canvas]), fig, {"steps": slider}, update)


def lesson_figure():
    """From layers to time: K residual layers against the ODE, and the log-det integral."""
    import matplotlib.pyplot as plt

    field = SpiralField().double()
    x0 = _start_points(300, 0)
    with single_thread():
        ode_path, ode_logdet = _ode_reference(field, x0)
    tracked = int(x0.norm(dim=1).argmax())
    with plt.ioff():
        fig, axes = plt.subplots(1, 3, figsize=(8.2, 3.0))
    ax_start, ax_end, ax_l = axes
    ax_start.scatter(x0[:, 0], x0[:, 1], s=3, color="C0")
    ax_start.set_title("points at t = 0", fontsize=10)
    ode_end = ode_path[-1].numpy()
    ax_end.scatter(ode_end[:, 0], ode_end[:, 1], s=3, color="0.6", label="ODE")
    times = np.linspace(0, 1, ode_path.shape[0])
    ax_l.plot(times, ode_logdet[:, tracked].numpy(), color="k", lw=1.2, label="integral of div v")
    for k, color in ((3, "C3"), (12, "C1")):
        with single_thread():
            path, log_det = residual_stack(field, x0, k)
        end = path[-1].numpy()
        ax_end.scatter(end[:, 0], end[:, 1], s=3, color=color, label=f"K = {k} layers")
        ax_end.plot(path[:, tracked, 0], path[:, tracked, 1], "o-", color=color, ms=2, lw=0.8)
        ax_l.step(np.linspace(0, 1, k + 1), log_det[:, tracked].numpy(), where="post", color=color,
                  label=f"K = {k}: sum of log-dets")
    ax_end.plot(ode_path[:, tracked, 0], ode_path[:, tracked, 1], color="k", lw=1)
    ax_end.set_title("t = 1: layers vs ODE", fontsize=10)
    ax_end.legend(fontsize=6, loc="lower left")
    for ax in (ax_start, ax_end):
        ax.set_xlim(-2.4, 2.8)
        ax.set_ylim(-1.3, 3.4)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    ax_l.set_xlabel("t")
    ax_l.set_title("log|det| of one point", fontsize=10)
    ax_l.legend(fontsize=6)
    fig.tight_layout()
    return fig
