"""Lesson 09 explorers: flows fitted to densities known only up to a constant.

* :func:`training_scrubber` -- pick an energy, slide through the snapshots
  :func:`flowkit.fit_vi` saved, and watch q settle onto the target while the negative
  ELBO falls to its floor, ``-log Z``;
* :func:`mode_explorer` -- a slider moves two Gaussian modes apart and shows the flow
  fitted by reverse KL (from the density) beside the one fitted by forward KL (from
  samples): the first drops a mode once the gap is wide, the second spreads over both.

Everything a slider shows is computed once, up front; moving a slider swaps arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import targets as _targets
from ..flow import Flow
from ..models import RealNVP
from ..train import History, fit
from ..vi import fit_vi, importance
from ._base import Explorer, int_slider, make_figure, single_thread

__all__ = ["flow_density_grid", "ScrubberData", "scrubber_data", "training_scrubber",
           "ModeFits", "fit_two_modes", "mode_explorer", "lesson_figure"]

_GRID = 100


def flow_density_grid(flow: Flow, box, n: int = _GRID) -> np.ndarray:
    """q(x) on an ``n x n`` grid over ``box``, rows indexed by y (for ``imshow``)."""
    x0, x1, y0, y1 = box
    xs, ys = torch.linspace(x0, x1, n), torch.linspace(y0, y1, n)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad(), single_thread():
        logq = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1))
    return logq.exp().reshape(n, n).numpy()


@dataclass
class ScrubberData:
    """What the scrubber shows for one target: q on a grid and the KL at each snapshot."""

    target: _targets.Target2D
    steps: list[int]
    densities: list[np.ndarray]
    kl: list[float]
    loss: np.ndarray


def scrubber_data(target: _targets.Target2D, flow: Flow, history: History,
                  n_kl: int = 4000) -> ScrubberData:
    """Evaluate every snapshot in ``history`` (the flow is left at its last one)."""
    if not history.snapshots:
        raise ValueError("the history has no snapshots: fit with fit_vi(..., snapshot_every=k)")
    steps, densities, kl = [], [], []
    for index in range(len(history.snapshots)):
        steps.append(history.restore(flow, index))
        densities.append(flow_density_grid(flow, target.view))
        with single_thread():
            kl.append(target.log_Z - importance(flow, target.log_prob, n_kl, seed=1).elbo)
    return ScrubberData(target, steps, densities, kl, np.asarray(history.loss))


def _smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[:window - 1]) / np.arange(1, window)
    return np.r_[head, np.convolve(values, kernel, mode="valid")]


def training_scrubber(data: dict[str, ScrubberData]) -> Explorer:
    """Target, q at a snapshot, and the negative ELBO with the ``-log Z`` floor."""
    if not data:
        raise ValueError("training_scrubber needs at least one fitted target")
    names = list(data)
    first = data[names[0]]
    fig, axes = make_figure(1, 3, figsize=(8.2, 2.9),
                            gridspec_kw={"width_ratios": [1, 1, 1.25]})
    ax_p, ax_q, ax_loss = axes
    p_image = ax_p.imshow(first.target.density_grid(_GRID), origin="lower",
                          extent=first.target.view, cmap="viridis", aspect="auto")
    q_image = ax_q.imshow(first.densities[0], origin="lower", extent=first.target.view,
                          cmap="viridis", aspect="auto")
    for ax in (ax_p, ax_q):
        ax.set_xticks([])
        ax.set_yticks([])
    ax_p.set_title("target p (quadrature)", fontsize=9)
    q_title = ax_q.set_title("", fontsize=9)
    (loss_line,) = ax_loss.plot([], [], color="C0", lw=1, label="-ELBO (batch, smoothed)")
    floor = ax_loss.axhline(0.0, color="k", ls="--", lw=1, label="-log Z (quadrature)")
    (marker,) = ax_loss.plot([], [], "o", color="C3", ms=5)
    ax_loss.set_xlabel("step", fontsize=9)
    ax_loss.set_ylabel("nats", fontsize=9)
    ax_loss.tick_params(labelsize=8)
    ax_loss.legend(fontsize=7, loc="upper right")
    fig.tight_layout()

    choice = widgets.ToggleButtons(options=names, value=names[0], description="target",
                                   style={"button_width": "60px"})
    snapshot = int_slider("snapshot", len(first.steps) - 1, 0, len(first.steps) - 1)
    shown = {"name": None}

    def update():
        entry = data[choice.value]
        if shown["name"] != choice.value:  # a new target: swap the fixed pieces once
            shown["name"] = choice.value
            p = entry.target.density_grid(_GRID)
            p_image.set_data(p)
            p_image.set_clim(0, p.max())
            snapshot.max = len(entry.steps) - 1
            smooth = _smooth(entry.loss)
            loss_line.set_data(np.arange(1, len(smooth) + 1), smooth)
            floor.set_ydata([-entry.target.log_Z] * 2)
            low = -entry.target.log_Z - 0.3
            ax_loss.set_xlim(0, len(smooth))
            ax_loss.set_ylim(low, max(float(np.percentile(smooth, 99)), low + 1.0))
        index = min(snapshot.value, len(entry.steps) - 1)
        q = entry.densities[index]
        q_image.set_data(q)
        q_image.set_clim(0, max(float(q.max()), 1e-12))
        step = entry.steps[index]
        q_title.set_text(f"q after {step} steps: KL(q||p) = {entry.kl[index]:.3f}")
        smooth = loss_line.get_ydata()
        marker.set_data([max(step, 1)], [smooth[max(step, 1) - 1]])
        fig.canvas.draw_idle()

    controls = {"target": choice, "snapshot": snapshot}
    box = widgets.VBox([choice, snapshot, fig.canvas])
    return Explorer(box, fig, controls, update,
                    artists={"p_image": p_image, "q_image": q_image, "q_title": q_title,
                             "marker": marker, "floor": floor})


# ----------------------------------------------------------------------------------
# Mode-seeking against mass-covering
# ----------------------------------------------------------------------------------


@dataclass
class ModeFits:
    """Fits of two-mode targets at several separations, by reverse and forward KL."""

    separations: list[float]
    box: tuple[float, float, float, float]
    target_grids: list[np.ndarray]
    reverse_grids: list[np.ndarray]
    forward_grids: list[np.ndarray]
    reverse_right_mass: list[float]   # share of q's samples in the right-hand mode (x > 0)
    forward_right_mass: list[float]
    reverse_kl: list[float]           # KL(q || p) of the reverse-KL fit
    reverse_ess: list[float]          # ESS fraction of the reverse-KL fit


def fit_two_modes(separations=(1.0, 2.5, 4.0, 6.0), steps: int = 400, num_couplings: int = 4,
                  hidden: int = 32, lr: float = 3e-3, seed: int = 0) -> ModeFits:
    """Fit each two-Gaussian target by reverse KL (``fit_vi``) and by forward KL
    (``fit`` on exact samples), with the same small flow and the same number of steps."""
    separations = [float(s) for s in separations]
    reach = max(separations) / 2 + 2.0
    box = (-reach, reach, -2.5, 2.5)
    out = ModeFits(separations, box, [], [], [], [], [], [], [])
    for separation in separations:
        target = _targets.two_gaussians(separation)
        out.target_grids.append(target.density_grid(_GRID, box=box))
        torch.manual_seed(seed)
        reverse = RealNVP(2, num_couplings=num_couplings, hidden=hidden)
        fit_vi(reverse, target.log_prob, steps, lr=lr, seed=seed, progress=False,
               cosine_schedule=True)
        torch.manual_seed(seed)
        forward = RealNVP(2, num_couplings=num_couplings, hidden=hidden)
        samples = target.sample(20_000, generator=torch.Generator().manual_seed(seed))
        fit(forward, samples, steps, lr=lr, seed=seed, progress=False, cosine_schedule=True)
        for flow, grids, mass in ((reverse, out.reverse_grids, out.reverse_right_mass),
                                  (forward, out.forward_grids, out.forward_right_mass)):
            grids.append(flow_density_grid(flow, box))
            with torch.no_grad():
                x = flow.sample(4000, generator=torch.Generator().manual_seed(1))
            mass.append(float((x[:, 0] > 0).float().mean()))
        result = importance(reverse, target.log_prob, 4000, seed=2)
        out.reverse_kl.append(target.log_Z - result.elbo)
        out.reverse_ess.append(result.ess_fraction)
    return out


def mode_explorer(fits: ModeFits) -> Explorer:
    """Slide the modes apart: the reverse-KL fit beside the forward-KL fit."""
    fig, axes = make_figure(1, 2, figsize=(8.2, 3.0), sharey=True)
    images = []
    titles = ("reverse KL: fitted to the density", "forward KL: fitted to samples")
    for ax, title in zip(axes, titles):
        images.append(ax.imshow(fits.reverse_grids[0], origin="lower", extent=fits.box,
                                cmap="magma", aspect="auto"))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("$x_1$", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("$x_2$", fontsize=9)
    readouts = [ax.text(0.02, 0.04, "", transform=ax.transAxes, color="w", fontsize=8)
                for ax in axes]
    # The target's contours for every separation, drawn once; a slider move only
    # switches which set is visible.
    contours = [[ax.contour(grid, levels=4, origin="lower", extent=fits.box, colors="c",
                            linewidths=0.7) for ax in axes] for grid in fits.target_grids]
    fig.tight_layout()
    slider = widgets.SelectionSlider(options=[(f"{s:g}", i) for i, s in
                                              enumerate(fits.separations)],
                                     value=0, description="mode separation",
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))

    def update():
        i = slider.value
        for ax_index, (grids, mass) in enumerate(((fits.reverse_grids, fits.reverse_right_mass),
                                                  (fits.forward_grids, fits.forward_right_mass))):
            images[ax_index].set_data(grids[i])
            images[ax_index].set_clim(0, float(grids[i].max()))
            readouts[ax_index].set_text(f"mass in right mode: {100 * mass[i]:.0f}%")
        for index, pair in enumerate(contours):
            for c in pair:
                c.set_visible(index == i)
        readouts[0].set_text(readouts[0].get_text()
                             + f"\nKL(q||p) = {fits.reverse_kl[i]:.2f}, "
                               f"ESS {100 * fits.reverse_ess[i]:.0f}%")
        fig.canvas.draw_idle()

    box = widgets.VBox([slider, fig.canvas])
    return Explorer(box, fig, {"separation": slider}, update,
                    artists={"images": images, "readouts": readouts, "contours": contours})


# ----------------------------------------------------------------------------------
# Summary figure
# ----------------------------------------------------------------------------------


def lesson_figure(steps: int = 800, num_couplings: int = 8, hidden: int = 64):
    """The four energies (top) and RealNVPs fitted to them by reverse KL (bottom)."""
    with plt.ioff():
        fig, axes = plt.subplots(2, 4, figsize=(8.2, 4.4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for column, (name, target) in enumerate(_targets.ENERGIES.items()):
            torch.manual_seed(0)
            flow = RealNVP(2, num_couplings=num_couplings, hidden=hidden)
            fit_vi(flow, target.log_prob, steps, lr=2e-3, progress=False, cosine_schedule=True)
            kl = target.log_Z - importance(flow, target.log_prob, 4000).elbo
            axes[0, column].imshow(target.density_grid(_GRID), origin="lower",
                                   extent=target.view, cmap="viridis", aspect="auto")
            axes[0, column].set_title(f"{name}: p = exp(-U)/Z", fontsize=9)
            axes[1, column].imshow(flow_density_grid(flow, target.view), origin="lower",
                                   extent=target.view, cmap="viridis", aspect="auto")
            axes[1, column].set_title(f"flow q: KL(q||p) = {kl:.3f}", fontsize=9)
    finally:
        torch.set_num_threads(threads)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Reverse KL: RealNVP({num_couplings} couplings) fitted without samples "
                 f"of p, {steps} steps", fontsize=10)
    fig.tight_layout()
    return fig
