"""Lesson 04 explorers: a RealNVP learns two moons by maximum likelihood.

* :func:`training_scrubber` -- slide through the snapshots :func:`flowkit.fit` saved and
  watch the learned density morph from a Gaussian into two moons;
* :func:`layer_explorer` -- slide along the chain of couplings: data points travel to the
  Gaussian (``forward_stages``) and Gaussian samples travel back (``inverse_stages``);
* :func:`true_vs_learned` -- the exact two-moons density beside the learned one, with a
  map of where the KL gap comes from.

Everything a slider shows is computed once, up front; moving a slider only swaps arrays.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from .. import data
from ..flow import Flow
from ..models import RealNVP
from ..plotting import grid
from ..train import History, fit, mean_nll
from ..transforms import ActNorm, AffineCoupling
from ._base import Explorer, int_slider, make_figure

__all__ = [
    "XLIM",
    "YLIM",
    "moon_labels",
    "train_moons_flow",
    "SnapshotTable",
    "snapshot_table",
    "training_scrubber",
    "layer_explorer",
    "true_vs_learned",
    "lesson_figure",
]

XLIM = (-1.5, 2.5)
YLIM = (-1.0, 1.5)
EXTENT = (*XLIM, *YLIM)
MOON_COLORS = ("#1f77b4", "#d62728")  # upper moon blue, lower moon red
_MOON_CMAP = ListedColormap(MOON_COLORS)
_LOG_FLOOR = -12.0  # log-density shown as "empty" below this


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------


def moon_labels(x: torch.Tensor) -> np.ndarray:
    """0 for points nearer the upper arc, 1 for the lower arc (colours points by moon)."""
    t = torch.linspace(0.0, math.pi, 200, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    x64 = x.detach().double()
    d_upper = torch.cdist(x64, upper).min(dim=1).values
    d_lower = torch.cdist(x64, lower).min(dim=1).values
    return (d_lower < d_upper).numpy().astype(float)


def train_moons_flow(steps: int = 1200, num_couplings: int = 8, hidden: int = 64,
                     noise: float = 0.1, n: int = 20_000, lr: float = 2e-3,
                     snapshot_every: int | None = 50, seed: int = 0,
                     progress: bool = False) -> tuple[Flow, History, torch.Tensor]:
    """Train a small RealNVP on two moons, the way lesson 04 does: ``(flow, history, x)``."""
    torch.manual_seed(seed)
    x = data.two_moons(n, noise=noise, seed=seed)
    flow = RealNVP(2, num_couplings=num_couplings, hidden=hidden)
    # One thread: as fast for a model this small, and immune to stalls on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = fit(flow, x, steps, batch_size=256, lr=lr, cosine_schedule=True, seed=seed,
                      progress=progress, snapshot_every=snapshot_every)
    finally:
        torch.set_num_threads(threads)
    return flow, history, x


def _grid_points(grid_n: int) -> torch.Tensor:
    return grid(XLIM, YLIM, grid_n)[2]


def _log_prob_grid(flow: Flow, grid_n: int) -> np.ndarray:
    """log q on the lesson's grid, shape ``(grid_n, grid_n)``; NaN where it failed."""
    points = _grid_points(grid_n)
    try:
        with torch.no_grad():
            values = flow.log_prob(points).double().numpy()
    except ValueError:  # a diverged snapshot: the transform refuses non-finite values
        values = np.full(points.shape[0], np.nan)
    return values.reshape(grid_n, grid_n)


def _prepare(flow: Flow) -> Flow:
    """A private copy to load snapshots into, so the learner's flow keeps its weights."""
    return copy.deepcopy(flow).eval()


def _mark_actnorm_initialized(flow: Flow) -> None:
    # Step 0 is saved before any data was seen; evaluating it on a grid must not trigger
    # ActNorm's data-dependent initialisation (it would fit the grid, not the data).
    for module in flow.modules():
        if isinstance(module, ActNorm) and not bool(module.initialized):
            module.initialized.fill_(True)


@dataclass
class SnapshotTable:
    """What the training explorers show, computed once per snapshot."""

    steps: list[int]
    log_q: list[np.ndarray]          # (grid_n, grid_n) per snapshot
    samples: list[np.ndarray]        # (num_samples, 2) per snapshot, from the same latents
    test_nll: list[float] | None     # mean NLL on the test points, per snapshot
    grid_n: int


def snapshot_table(flow: Flow, history: History, grid_n: int = 90, num_samples: int = 600,
                   test: torch.Tensor | None = None, seed: int = 0) -> SnapshotTable:
    """Density grid, samples and test NLL for every snapshot in ``history`` (cached on it).

    The samples come from the *same* latent points at every snapshot, so a slider shows
    each point drifting as training goes on instead of a new random cloud.
    """
    if not isinstance(history, History):
        raise TypeError(f"history must be the History returned by fk.fit, got {type(history).__name__}")
    if not history.snapshots:
        raise ValueError("the history has no snapshots: train with fk.fit(..., snapshot_every=50)")
    key = (grid_n, num_samples, None if test is None else id(test), seed, len(history.snapshots))
    cache = history.__dict__.setdefault("_lesson04_tables", {})
    if key in cache:
        return cache[key]
    work = _prepare(flow)
    z = work.base.sample(num_samples, generator=torch.Generator().manual_seed(seed))
    steps, log_q, samples, test_nll = [], [], [], []
    for step, state in history.snapshots:
        work.load_state_dict(state)
        work.eval()
        _mark_actnorm_initialized(work)
        steps.append(int(step))
        log_q.append(_log_prob_grid(work, grid_n))
        try:
            with torch.no_grad():
                samples.append(work.inverse(z)[0].numpy())
        except ValueError:
            samples.append(np.full((num_samples, 2), np.nan))
        if test is not None:
            try:
                test_nll.append(mean_nll(work, test))
            except ValueError:
                test_nll.append(float("nan"))
    table = SnapshotTable(steps, log_q, samples, test_nll if test is not None else None, grid_n)
    cache[key] = table
    return table


def _smooth(values: list[float], window: int = 25) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    window = max(1, min(window, v.size))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, v[0]), v])
    return np.convolve(padded, kernel, mode="valid")


def _step_slider(steps: list[int], description: str = "training step") -> widgets.SelectionSlider:
    return widgets.SelectionSlider(options=steps, value=steps[-1], description=description,
                                   continuous_update=True, style={"description_width": "initial"},
                                   layout=widgets.Layout(width="420px"))


def _style_moons_axis(ax, title: str) -> None:
    ax.set_xlim(*XLIM)
    ax.set_ylim(*YLIM)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------
# (a) training-progress scrubber
# ----------------------------------------------------------------------------------


def training_scrubber(flow: Flow, history: History, x: torch.Tensor | None = None,
                      test: torch.Tensor | None = None, entropy: float | None = None,
                      grid_n: int = 90, num_samples: int = 600, seed: int = 0) -> Explorer:
    """Slide through the training snapshots: learned density, samples, and the loss curve.

    ``x`` (training data, drawn faintly behind the samples), ``test`` (held-out points, for
    the test NLL at each snapshot) and ``entropy`` (the floor line) are optional.
    """
    table = snapshot_table(flow, history, grid_n, num_samples, test, seed)
    density = [np.exp(lq) for lq in table.log_q]
    vmax = [float(np.nanmax(d)) if np.isfinite(d).any() else 1.0 for d in density]

    fig, (ax_q, ax_s, ax_loss) = make_figure(1, 3, figsize=(8.2, 3.1))
    im = ax_q.imshow(density[-1], origin="lower", extent=EXTENT, cmap="viridis", aspect="auto")
    _style_moons_axis(ax_q, "learned density q(x)")
    if x is not None:
        shown = x[:1500].numpy()
        ax_s.scatter(shown[:, 0], shown[:, 1], s=2, color="0.75", label="data")
    dots = ax_s.scatter(table.samples[-1][:, 0], table.samples[-1][:, 1], s=4, color="C1",
                        label="model samples")
    _style_moons_axis(ax_s, "samples (same latents\nat every step)")
    ax_s.legend(loc="lower left", fontsize=7, markerscale=3)

    steps_axis = np.arange(1, len(history.loss) + 1)
    smooth = _smooth(history.loss)
    if len(history.loss):
        ax_loss.plot(steps_axis, history.loss, color="C0", alpha=0.25, lw=0.8, label="batch NLL")
        ax_loss.plot(steps_axis, smooth, color="C0", lw=1.5, label="running mean")
    if table.test_nll is not None:
        ax_loss.plot(table.steps, table.test_nll, "o-", color="C2", ms=3, lw=1, label="test NLL")
    if entropy is not None:
        ax_loss.axhline(entropy, color="k", ls="--", lw=1, label=f"entropy H = {entropy:.3f}")
    marker = ax_loss.axvline(table.steps[-1], color="C3", lw=1)
    top = float(np.nanmax(smooth)) + 0.1 if smooth.size else 3.0
    bottom = min([float(np.nanmin(smooth))] if smooth.size else [0.0])
    if entropy is not None:
        bottom = min(bottom, entropy)
    ax_loss.set_ylim(bottom - 0.15, top)
    ax_loss.set_xlim(0, max(table.steps[-1], 1))
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("NLL (nats/point)", fontsize=9)
    ax_loss.legend(fontsize=7, loc="upper right")
    ax_loss.set_title("loss", fontsize=10)
    ax_loss.tick_params(labelsize=8)
    caption = fig.suptitle("", fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.93))

    slider = _step_slider(table.steps)
    index = {step: i for i, step in enumerate(table.steps)}

    def update():
        i = index[slider.value]
        step = table.steps[i]
        if not np.isfinite(density[i]).all():
            im.set_data(np.zeros_like(density[i]))
            caption.set_text(f"step {step}: the model produced non-finite values here (training diverged)")
        else:
            im.set_data(density[i])
            im.set_clim(0.0, vmax[i])
            parts = [f"step {step} of {table.steps[-1]}"]
            if table.test_nll is not None:
                parts.append(f"test NLL {table.test_nll[i]:.3f} nats")
                if entropy is not None:
                    parts.append(f"KL gap {table.test_nll[i] - entropy:.3f} nats")
            elif step > 0 and smooth.size:
                parts.append(f"batch NLL ~ {smooth[step - 1]:.3f} nats")
            parts.append(f"peak density {vmax[i]:.2f}")
            caption.set_text("   |   ".join(parts))
        dots.set_offsets(np.nan_to_num(table.samples[i]))
        marker.set_xdata([step, step])
        fig.canvas.draw_idle()

    box = widgets.VBox([slider, fig.canvas])
    # The data behind the samples, the loss curves and the axes stay put.
    return Explorer(box, fig, {"step": slider}, update,
                    {"density": im, "samples": dots, "marker": marker, "caption": caption},
                    moving=[im, dots, marker, caption])


# ----------------------------------------------------------------------------------
# (b) layer by layer
# ----------------------------------------------------------------------------------


def _layer_name(t) -> str:
    if isinstance(t, AffineCoupling):
        kept = [i + 1 for i, m in enumerate(t.mask.tolist()) if m == 1]
        return f"a coupling that keeps x{','.join(map(str, kept))}"
    return type(t).__name__


def _box(*clouds: np.ndarray, pad: float = 0.12) -> tuple[float, float, float, float]:
    """A square window around the bulk of the points (so equal aspect needs no tweaking)."""
    pts = np.concatenate([c[np.isfinite(c).all(axis=1)] for c in clouds])
    if pts.size == 0:
        return -3.0, 3.0, -3.0, 3.0
    lo = np.percentile(pts, 0.5, axis=0)
    hi = np.percentile(pts, 99.5, axis=0)
    center = (lo + hi) / 2
    half = max(float(np.max(hi - lo)), 1e-3) * (0.5 + pad)
    return (float(center[0] - half), float(center[0] + half),
            float(center[1] - half), float(center[1] + half))


def layer_explorer(flow: Flow, x: torch.Tensor, num_points: int = 800, seed: int = 0) -> Explorer:
    r"""Slide along the chain :math:`x = h_0 \to h_1 \to \dots \to h_K = z`.

    Left: data points pushed forward to position ``k`` (``flow.forward_stages``). Right:
    Gaussian samples pulled back to the same position (``flow.inverse_stages``). For a
    well-trained flow the two clouds look alike at every ``k``. Colours say which moon a
    point belongs to (for samples: the moon it lands in).
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"layer_explorer expects a flowkit Flow, got {type(flow).__name__}")
    flow = flow.eval()
    x = x[:num_points]
    with torch.no_grad():
        forward = [h.numpy() for h in flow.forward_stages(x)]
        z = flow.base.sample(x.shape[0], generator=torch.Generator().manual_seed(seed))
        backward = [h.numpy() for h in flow.inverse_stages(z)]
        # running mean of log|det dh_k/dx| along the forward chain
        cumulative, h, total = [0.0], x, torch.zeros(x.shape[0])
        for t in flow.transforms:
            h, log_abs_det = t(h)
            total = total + log_abs_det
            cumulative.append(float(total.mean()))
    K = len(flow.transforms)
    names = [_layer_name(t) for t in flow.transforms]
    data_labels = moon_labels(x)
    sample_labels = moon_labels(torch.from_numpy(backward[-1]))
    boxes = [_box(forward[k], backward[K - k]) for k in range(K + 1)]

    fig, (ax_f, ax_b) = make_figure(1, 2, figsize=(8.2, 3.9))
    theta = np.linspace(0, 2 * np.pi, 100)
    for ax in (ax_f, ax_b):
        for r in (1, 2):
            ax.plot(r * np.cos(theta), r * np.sin(theta), color="0.8", lw=0.8, zorder=0)
        ax.set_aspect("equal", adjustable="box")
        ax.tick_params(labelsize=8)
    left = ax_f.scatter(forward[0][:, 0], forward[0][:, 1], s=4, c=data_labels,
                        cmap=_MOON_CMAP, vmin=0, vmax=1)
    right = ax_b.scatter(backward[K][:, 0], backward[K][:, 1], s=4, c=sample_labels,
                         cmap=_MOON_CMAP, vmin=0, vmax=1)
    title_f = ax_f.set_title("", fontsize=10)
    title_b = ax_b.set_title("", fontsize=10)
    caption = fig.suptitle("", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))

    slider = int_slider("position in the chain k", 0, 0, K)

    def update():
        k = int(slider.value)
        left.set_offsets(forward[k])
        right.set_offsets(backward[K - k])
        x0, x1, y0, y1 = boxes[k]
        for ax in (ax_f, ax_b):
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
        if k == 0:
            title_f.set_text("data x (k = 0)")
            title_b.set_text(f"samples: Gaussian after all {K} inverse layers")
            where = "data space"
        elif k == K:
            title_f.set_text(f"data after all {K} layers: latent z")
            title_b.set_text("Gaussian samples z ~ N(0, I)")
            where = "latent space"
        else:
            title_f.set_text(f"data after layers 1..{k}")
            title_b.set_text(f"Gaussian after inverse layers {K}..{k + 1}")
            where = f"after layer {k}, {names[k - 1]}"
        caption.set_text(f"k = {k} of {K} ({where});  mean log|det dh_k/dx| = {cumulative[k]:.3f}")
        fig.canvas.draw_idle()

    box = widgets.VBox([slider, fig.canvas])
    return Explorer(box, fig, {"k": slider}, update,
                    {"forward": left, "inverse": right, "caption": caption})


# ----------------------------------------------------------------------------------
# (c) the true density beside the learned one
# ----------------------------------------------------------------------------------


def true_vs_learned(flow: Flow, history: History | None = None, noise: float = 0.1,
                    test: torch.Tensor | None = None, entropy: float | None = None,
                    grid_n: int = 90) -> Explorer:
    r"""The exact density ``p``, the learned ``q``, and where the KL gap comes from.

    The third panel is :math:`p(x)\,(\log p(x) - \log q(x))`, whose integral is
    :math:`\mathrm{KL}(p\,\|\,q)`: red where the model gives the data too little density,
    blue where it gives more than the truth. With ``history`` (snapshots) a slider picks
    the training step; ``scale`` switches to log-densities, where a model's thin bridges
    between the moons show up.
    """
    if history is not None and history.snapshots:
        table = snapshot_table(flow, history, grid_n, test=test)
        steps, log_q, test_nll = table.steps, table.log_q, table.test_nll
    else:
        steps, log_q = [None], [_log_prob_grid(flow.eval(), grid_n)]
        test_nll = None if test is None else [mean_nll(flow, test)]
    points = _grid_points(grid_n)
    log_p = data.two_moons_log_prob(points.double(), noise=noise).numpy().reshape(grid_n, grid_n)
    p = np.exp(log_p)
    cell = ((XLIM[1] - XLIM[0]) / (grid_n - 1)) * ((YLIM[1] - YLIM[0]) / (grid_n - 1))
    contributions, grid_kl = [], []
    for lq in log_q:
        c = p * (log_p - lq)
        contributions.append(c)
        grid_kl.append(float(np.sum(c) * cell))
    vmax_p = float(p.max())

    fig, (ax_p, ax_q, ax_c) = make_figure(1, 3, figsize=(8.2, 2.7))
    im_p = ax_p.imshow(p, origin="lower", extent=EXTENT, cmap="viridis", aspect="auto")
    im_q = ax_q.imshow(np.exp(log_q[-1]), origin="lower", extent=EXTENT, cmap="viridis", aspect="auto")
    _style_moons_axis(ax_p, "true density p(x)")
    _style_moons_axis(ax_q, "learned density q(x)")
    im_c = ax_c.imshow(contributions[-1], origin="lower", extent=EXTENT, cmap="RdBu_r", aspect="auto")
    _style_moons_axis(ax_c, "p (log p - log q): integrates to KL")
    ax_c.set_title(ax_c.get_title(), fontsize=9)
    caption = fig.suptitle("", fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.93))

    controls: dict[str, widgets.Widget] = {}
    scale = widgets.ToggleButtons(options=["density", "log density"], value="density",
                                  description="scale", style={"button_width": "90px"})
    if len(steps) > 1:
        controls["step"] = _step_slider(steps)
    controls["scale"] = scale
    index = {s: i for i, s in enumerate(steps)}

    def update():
        i = index[controls["step"].value] if "step" in controls else 0
        lq = log_q[i]
        if not np.isfinite(lq).all():
            im_q.set_data(np.zeros_like(lq))
            im_c.set_data(np.zeros_like(lq))
            caption.set_text("this snapshot produced non-finite densities (training diverged)")
            fig.canvas.draw_idle()
            return
        if scale.value == "log density":
            top = max(float(log_p.max()), float(lq.max()))
            im_p.set_data(np.maximum(log_p, _LOG_FLOOR))
            im_q.set_data(np.maximum(lq, _LOG_FLOOR))
            for im in (im_p, im_q):
                im.set_clim(_LOG_FLOOR, top)
            ax_p.set_title("true log p(x)", fontsize=10)
            ax_q.set_title("learned log q(x)", fontsize=10)
        else:
            q = np.exp(lq)
            im_p.set_data(p)
            im_q.set_data(q)
            vmax = max(vmax_p, float(q.max()))
            for im in (im_p, im_q):
                im.set_clim(0.0, vmax)
            ax_p.set_title("true density p(x)", fontsize=10)
            ax_q.set_title("learned density q(x)", fontsize=10)
        c = contributions[i]
        bound = max(float(np.abs(c).max()), 1e-9)
        im_c.set_data(c)
        im_c.set_clim(-bound, bound)
        parts = [] if steps[i] is None else [f"step {steps[i]}"]
        parts.append(f"KL(p || q) ~ {grid_kl[i]:.3f} nats (grid sum)")
        if test_nll is not None and entropy is not None:
            parts.append(f"test NLL - H = {test_nll[i] - entropy:.3f} nats")
        caption.set_text("   |   ".join(parts))
        fig.canvas.draw_idle()

    box = widgets.VBox([*controls.values(), fig.canvas])
    # The step slider changes the images and the caption; the scale toggle redraws all.
    return Explorer(box, fig, controls, update,
                    {"true": im_p, "learned": im_q, "contribution": im_c, "caption": caption},
                    moving=[im_p, im_q, im_c, caption])


# ----------------------------------------------------------------------------------
# Static summary
# ----------------------------------------------------------------------------------


def lesson_figure(steps: int = 1200, hidden: int = 64):
    """Data, learned density, samples and the loss against the entropy floor."""
    flow, history, x = train_moons_flow(steps=steps, hidden=hidden, snapshot_every=None)
    entropy = data.two_moons_entropy_estimate(0.1)[0]
    with plt.ioff():
        fig, axes = plt.subplots(2, 2, figsize=(8.2, 5.6))
    ax_x, ax_q, ax_s, ax_l = axes.ravel()
    shown = x[:2000].numpy()
    ax_x.scatter(shown[:, 0], shown[:, 1], s=2, c=moon_labels(x[:2000]), cmap=_MOON_CMAP)
    _style_moons_axis(ax_x, "two moons (training data)")
    ax_q.imshow(np.exp(_log_prob_grid(flow, 120)), origin="lower", extent=EXTENT,
                cmap="viridis", aspect="auto")
    _style_moons_axis(ax_q, "learned density q(x)")
    with torch.no_grad():
        samples = flow.sample(2000, generator=torch.Generator().manual_seed(1)).numpy()
    ax_s.scatter(samples[:, 0], samples[:, 1], s=2, color="C1")
    _style_moons_axis(ax_s, "samples from the flow")
    ax_l.plot(np.arange(1, len(history.loss) + 1), _smooth(history.loss), color="C0",
              label="training NLL (running mean)")
    ax_l.axhline(entropy, color="k", ls="--", lw=1, label=f"entropy floor H = {entropy:.2f}")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("nats per point")
    ax_l.legend(fontsize=8)
    ax_l.set_title("maximum likelihood training", fontsize=10)
    fig.tight_layout()
    return fig
