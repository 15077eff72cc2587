"""Explorers for lesson 08: one flow, many contexts.

Every explorer precomputes what its sliders reach (densities on a grid for every context
on the slider, base samples drawn once), so a slider move swaps data in place.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from ._base import Explorer, float_slider, int_slider, make_figure
from .lesson05 import LEVELS, mosaic, show_digits

__all__ = [
    "moons_context_explorer",
    "kl_gap_figure",
    "digit_class_explorer",
    "confusion_figure",
    "completion_explorer",
    "disagreeing_completions",
    "completion_votes_figure",
    "tone_explorer",
    "as_images",
    "lesson_figure",
]


def as_images(x: torch.Tensor) -> np.ndarray:
    """Digits from a flow over ``(N, 64)`` vectors or ``(N, 1, 8, 8)`` images: ``(N, 8, 8)`` levels."""
    x = x.detach().reshape(x.shape[0], 8, 8).clamp(0, LEVELS - 1e-3)
    return x.numpy()


# ----------------------------------------------------------------------------------
# Conditional moons
# ----------------------------------------------------------------------------------


@torch.no_grad()
def moons_context_explorer(flow, noise_values, kl_gaps, trained_levels, grid_n: int = 56,
                           extent=(-1.5, 2.5, -1.0, 1.5)) -> Explorer:
    """A noise slider: the flow's density at that noise beside the exact one, and the KL gap.

    ``noise_values`` are the contexts the slider can reach (precomputed here, one batch
    each); ``kl_gaps`` their KL gaps (nats), drawn as a curve with a marker at the slider;
    ``trained_levels`` the noise levels the flow was trained on (shaded band).
    """
    from ..data import two_moons_log_prob

    noise_values = [float(v) for v in noise_values]
    x0, x1, y0, y1 = extent
    xs, ys = np.linspace(x0, x1, grid_n), np.linspace(y0, y1, int(grid_n * (y1 - y0) / (x1 - x0)))
    gx, gy = np.meshgrid(xs, ys)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    learned, exact = [], []
    flow.eval()
    for c in noise_values:
        context = torch.full((len(points), 1), c)
        learned.append(flow.log_prob(points, context=context).exp().reshape(gx.shape).numpy())
        exact.append(two_moons_log_prob(points.double(), noise=c, panels=64).exp().reshape(gx.shape).numpy())

    fig, axes = make_figure(1, 3, figsize=(8.2, 2.7), gridspec_kw={"width_ratios": [1, 1, 1.15]})
    images = []
    for ax, title in zip(axes[:2], ["flow  q(x | c)", "exact  p(x | c)"]):
        images.append(ax.imshow(learned[0], origin="lower", extent=extent, cmap="magma", aspect="auto"))
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[2]
    ax.axvspan(min(trained_levels), max(trained_levels), color="#dbe9f6", label="trained range")
    ax.plot(noise_values, kl_gaps, "-", color="#1f5fa0", lw=1.5)
    ax.plot(trained_levels, np.interp(trained_levels, noise_values, kl_gaps), "o", ms=3, color="#1f5fa0",
            label="trained levels")
    marker, = ax.plot([noise_values[0]], [kl_gaps[0]], "o", ms=8, mfc="none", mec="#c0392b", mew=2)
    ax.set_yscale("log")
    ax.set_xlabel("noise level c")
    ax.set_ylabel("KL gap (nats)")
    ax.legend(fontsize=7, loc="upper center")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    slider = widgets.SelectionSlider(options=[(f"{v:.2f}", i) for i, v in enumerate(noise_values)],
                                     value=int(np.argmin(np.abs(np.array(noise_values) - 0.12))),
                                     description="noise level c", continuous_update=True,
                                     style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))

    @torch.no_grad()
    def update():
        i = slider.value
        vmax = exact[i].max()
        for image, values in zip(images, (learned[i], exact[i])):
            image.set_data(values)
            image.set_clim(0, vmax)
        marker.set_data([noise_values[i]], [kl_gaps[i]])
        axes[0].set_title(f"flow  q(x | c = {noise_values[i]:.2f})", fontsize=10)
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([slider, fig.canvas]), fig, {"noise": slider}, update,
                    artists={"learned": images[0], "exact": images[1], "marker": marker})


def kl_gap_figure(noise_values, kl_gaps, trained_levels, between_levels=(), title: str = ""):
    """KL gap per context: trained levels, levels between them, and levels outside the range."""
    with plt.ioff():
        fig, ax = plt.subplots(figsize=(8.2, 3.0))
    lo, hi = min(trained_levels), max(trained_levels)
    ax.axvspan(lo, hi, color="#dbe9f6", label="training range")
    ax.plot(noise_values, kl_gaps, "-", color="#7f8c8d", lw=1)
    gaps = dict(zip([round(v, 4) for v in noise_values], kl_gaps))
    groups = [("trained levels", [v for v in noise_values if round(v, 4) in {round(t, 4) for t in trained_levels}],
               "o", "#1f5fa0"),
              ("between trained levels", [v for v in noise_values if round(v, 4) in {round(t, 4) for t in between_levels}],
               "s", "#27ae60"),
              ("outside the range", [v for v in noise_values if v < lo - 1e-9 or v > hi + 1e-9], "^", "#c0392b")]
    for label, values, marker, colour in groups:
        if values:
            ax.plot(values, [gaps[round(v, 4)] for v in values], marker, color=colour, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("noise level c (the context)")
    ax.set_ylabel("KL(p_c || q_c), nats")
    ax.set_title(title or "One flow, every noise level: how far from the truth", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------
# Class-conditional digits
# ----------------------------------------------------------------------------------


@torch.no_grad()
def digit_class_explorer(flow, count: int = 24, seed: int = 0) -> Explorer:
    """Pick a digit and a temperature: ``count`` samples of ``p(x | digit)`` from fixed base draws."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((count, *flow.latent_shape), generator=g)
    fig, ax = make_figure(figsize=(8.2, 2.9))
    artist = show_digits(ax, np.zeros((count, 8, 8)), cols=12)
    digit = widgets.ToggleButtons(options=list(range(10)), value=3, description="digit",
                                  style={"button_width": "32px", "description_width": "initial"})
    temperature = float_slider("temperature T", 0.8, 0.0, 1.2, 0.05)

    cache: dict = {}  # a setting seen once redraws without running the flow again

    @torch.no_grad()
    def update():
        key = (int(digit.value), round(temperature.value, 4))
        if key not in cache:
            labels = torch.full((count,), key[0], dtype=torch.long)
            cache[key] = mosaic(as_images(flow.inverse(z * temperature.value, context=labels)[0]), cols=12)
        artist.set_data(cache[key])
        ax.set_title(f"samples of p(x | y = {digit.value}) at T = {temperature.value:.2f}", fontsize=10)
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([digit, temperature, fig.canvas]), fig,
                    {"digit": digit, "temperature": temperature}, update, artists={"samples": artist})


def confusion_figure(matrices: dict, accuracies: dict):
    """Confusion matrices (rows: true digit, columns: predicted), one panel per classifier."""
    with plt.ioff():
        fig, axes = plt.subplots(1, len(matrices), figsize=(8.2, 3.6))
    for ax, (name, matrix) in zip(np.atleast_1d(axes), matrices.items()):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, cmap="Blues")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if matrix[i, j] > matrix.max() / 2 else "black")
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("true digit", fontsize=9)
        ax.set_title(f"{name}: accuracy {accuracies[name]:.3f}", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------
# Completion
# ----------------------------------------------------------------------------------


@torch.no_grad()
def completion_explorer(flow, images: torch.Tensor, count: int = 10, seed: int = 0) -> Explorer:
    """Choose a test digit, what is kept of it, and a temperature: ``count`` completions.

    ``images`` are integer digits ``(N, 1, 8, 8)``; ``flow`` is conditioned on
    :func:`flowkit.conditional_data.degrade` contexts.
    """
    from ..conditional_data import degrade, visible_part

    g = torch.Generator().manual_seed(seed)
    z = torch.randn((count, *flow.latent_shape), generator=g)
    fig, axes = make_figure(1, 3, figsize=(8.2, 2.4), gridspec_kw={"width_ratios": [1, 1, 5.2]})
    truth = show_digits(axes[0], np.zeros((1, 8, 8)), cols=1, title="the digit")
    seen = show_digits(axes[1], np.zeros((1, 8, 8)), cols=1, title="what is seen")
    completions = show_digits(axes[2], np.zeros((count, 8, 8)), cols=5, title="completions")
    index = int_slider("test digit", 0, 0, len(images) - 1)
    kind = widgets.ToggleButtons(options=[("top half", "top"), ("4x4 copy", "lowres")], value="top",
                                 description="keep", style={"description_width": "initial"})
    temperature = float_slider("temperature T", 0.8, 0.0, 1.2, 0.05)

    cache: dict = {}  # a setting seen once redraws without running the flow again

    @torch.no_grad()
    def update():
        image = images[index.value:index.value + 1]
        context = degrade(image, kind.value)
        key = (index.value, kind.value, round(temperature.value, 4))
        if key not in cache:
            x, _ = flow.inverse(z * temperature.value, context=context.expand(count, -1, -1, -1))
            cache[key] = mosaic(as_images(x), cols=5)
        truth.set_data(mosaic(image[:, 0].float()))
        seen.set_data(mosaic(visible_part(context)))
        completions.set_data(cache[key])
        axes[2].set_title(f"{count} completions at T = {temperature.value:.2f}", fontsize=10)
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([index, kind, temperature, fig.canvas]), fig,
                    {"index": index, "kind": kind, "temperature": temperature}, update,
                    artists={"completions": completions})


@torch.no_grad()
def disagreeing_completions(completion_flow, classifier_flow, images: torch.Tensor, count: int = 12,
                            kind: str = "top", temperature: float = 0.8, seed: int = 0,
                            between: tuple[int, int] | None = None):
    """The image among ``images`` whose ``count`` completions the classifier splits most evenly.

    Each completion of each image (given its ``kind`` degradation) is classified by Bayes'
    rule with equal priors under the class-conditional ``classifier_flow``. Returns
    ``(index, completions (count, 8, 8), votes (count,))`` for the image whose votes have
    the highest entropy, or, with ``between=(a, b)``, the most votes for the rarer of
    ``a`` and ``b`` (ties: the most votes for ``a`` and ``b`` together).
    """
    from ..conditional_data import class_log_likelihoods, degrade

    g = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, None, None)
    for i in range(len(images)):
        context = degrade(images[i:i + 1], kind).expand(count, -1, -1, -1)
        z = temperature * torch.randn((count, *completion_flow.latent_shape), generator=g)
        x, _ = completion_flow.inverse(z, context=context)
        levels = x.clamp(0, LEVELS - 1).round().long().reshape(count, 1, 8, 8)
        votes = class_log_likelihoods(classifier_flow, levels, draws=1, seed=seed).argmax(dim=1).numpy()
        shares = np.bincount(votes, minlength=10) / count
        if between is not None:
            a, b = (int((votes == k).sum()) for k in between)
            entropy = min(a, b) + (a + b) / (2 * count + 1)
        else:
            entropy = float(-(shares[shares > 0] * np.log(shares[shares > 0])).sum())
        if entropy > best[0]:
            best = (entropy, i, as_images(x), votes)
    return best[1], best[2], best[3]


def completion_votes_figure(image: torch.Tensor, completions: np.ndarray, votes: np.ndarray, kind: str = "top"):
    """The digit, what is seen of it, and its completions titled with the classifier's vote."""
    from ..conditional_data import degrade, visible_part

    count = len(completions)
    image = image.reshape(1, 1, 8, 8)
    with plt.ioff():
        fig, axes = plt.subplots(2, count // 2 + 1, figsize=(8.2, 3.4))
    show_digits(axes[0, 0], image[:, 0].float(), cols=1, title="the digit")
    show_digits(axes[1, 0], visible_part(degrade(image, kind)), cols=1, title="what is seen")
    for ax, completion, vote in zip(axes[:, 1:].ravel(), completions, votes):
        show_digits(ax, completion[None], cols=1)
        ax.set_title(f"reads {vote}", fontsize=9)
    fig.suptitle("one top half, many completions, several digits", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------
# Sound
# ----------------------------------------------------------------------------------


@torch.no_grad()
def tone_explorer(flow, count: int = 64, seed: int = 0) -> Explorer:
    """Pitch and brightness sliders: sampled windows and their mean spectrum beside the truth's."""
    from ..conditional_data import PITCH_RANGE, TONE_RATE, magnitude_spectrum, tone_context, tone_windows

    g = torch.Generator().manual_seed(seed)
    z = torch.randn((count, *flow.latent_shape), generator=g)
    window = flow.latent_shape[-1]
    t_ms = np.arange(window) / TONE_RATE * 1000
    fig, axes = make_figure(1, 2, figsize=(8.2, 2.7))
    waves = [axes[0].plot(t_ms, np.zeros(window), lw=1, color=colour)[0]
             for colour in ("#1f5fa0", "#5dade2", "#aed6f1")]
    axes[0].set_ylim(-1.6, 1.6)
    axes[0].set_xlabel("time (ms)", fontsize=9)
    axes[0].set_title("three sampled windows", fontsize=10)
    freqs = np.fft.rfftfreq(window, 1.0 / TONE_RATE)
    true_line, = axes[1].plot(freqs, np.zeros_like(freqs), color="#7f8c8d", lw=2, label="data")
    flow_line, = axes[1].plot(freqs, np.zeros_like(freqs), color="#c0392b", lw=1.2, label="flow samples")
    axes[1].set_xlabel("frequency (Hz)", fontsize=9)
    axes[1].set_title("mean magnitude spectrum", fontsize=10)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    pitch = float_slider("pitch (Hz)", 440.0, PITCH_RANGE[0], PITCH_RANGE[1], 10.0, ".0f")
    brightness = float_slider("brightness", 0.3, 0.0, 1.0, 0.05)

    @torch.no_grad()
    def update():
        context = tone_context(pitch.value, brightness.value)
        x, _ = flow.inverse(z, context=context.expand(count, -1))
        for line, row in zip(waves, x[:3]):
            line.set_ydata(row.numpy())
        truth, _ = tone_windows(count, pitch.value, brightness.value, window=window, seed=seed + 1)
        _, flow_mag = magnitude_spectrum(x)
        _, true_mag = magnitude_spectrum(truth)
        true_line.set_ydata(true_mag)
        flow_line.set_ydata(flow_mag)
        axes[1].set_ylim(0, 1.15 * max(true_mag.max(), flow_mag.max()))
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([pitch, brightness, fig.canvas]), fig,
                    {"pitch": pitch, "brightness": brightness}, update,
                    artists={"flow_spectrum": flow_line, "data_spectrum": true_line})


# ----------------------------------------------------------------------------------
# Summary figure
# ----------------------------------------------------------------------------------


def lesson_figure():
    """Samples of the class-conditional digits model for every digit, and completions of top halves."""
    from ..conditional_data import degrade, visible_part
    from ..data import digits
    from ..pretrained import load_pretrained

    labels_flow = load_pretrained("digits-conditional-realnvp")
    completion_flow = load_pretrained("digits-completion-realnvp")
    test = digits("test")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = 0.8 * torch.randn((40, *labels_flow.latent_shape), generator=g)
        per_class = as_images(labels_flow.inverse(z, context=torch.arange(10).repeat_interleave(4))[0])
        per_class = per_class.reshape(10, 4, 8, 8).transpose(1, 0, 2, 3).reshape(40, 8, 8)
        rows = []
        for k in range(4):
            context = degrade(test[k:k + 1], "top")
            zk = 0.8 * torch.randn((4, *completion_flow.latent_shape), generator=g)
            done = as_images(completion_flow.inverse(zk, context=context.expand(4, -1, -1, -1))[0])
            rows.append(np.concatenate([visible_part(context).numpy(), done]))
    with plt.ioff():
        fig, axes = plt.subplots(1, 2, figsize=(8.2, 3.0), gridspec_kw={"width_ratios": [2, 1.1]})
    show_digits(axes[0], per_class, cols=10, title="samples of p(x | digit), digits 0-9, T = 0.8")
    show_digits(axes[1], np.concatenate(rows), cols=5, title="top half | four completions")
    fig.suptitle("Conditional flows on 8x8 digits", fontsize=11)
    fig.tight_layout()
    return fig
