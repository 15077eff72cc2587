"""Explorers for lesson 05: dequantization, temperature, latent interpolation, scales.

Every explorer precomputes what its sliders can reach (model decodes are done once, in
one batch), so moving a slider only swaps image data and text in place.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from ._base import Explorer, float_slider, int_slider, make_figure

__all__ = [
    "mosaic",
    "show_digits",
    "dequantization_explorer",
    "temperature_explorer",
    "interpolation_explorer",
    "scale_explorer",
    "lesson_figure",
]

LEVELS = 17
_CMAP = plt.get_cmap("gray_r").with_extremes(bad="#d8e2ee")  # gaps between tiles


def _numpy_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().double().numpy()
    images = np.asarray(images, dtype=float)
    if images.ndim == 4:
        images = images[:, 0]
    if images.ndim == 2:
        images = images[None]
    return images


def mosaic(images, cols: int | None = None, gap: int = 1) -> np.ndarray:
    """Tile ``(N, [1,] H, W)`` images into one array, NaN in the gaps (drawn as a light blue)."""
    images = np.clip(_numpy_images(images), 0.0, LEVELS - 1)
    n, h, w = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    return out


def show_digits(ax, images, cols: int | None = None, title: str | None = None):
    """Draw a mosaic of digits (level units, 0 = white) on ``ax``; returns the image artist."""
    artist = ax.imshow(mosaic(images, cols), cmap=_CMAP, vmin=0, vmax=LEVELS - 1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return artist


@torch.no_grad()
def _decode(flow, z_flat: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    out = [flow.decode(chunk) for chunk in z_flat.split(batch_size)]
    return torch.cat(out).clamp(0, LEVELS - 1e-3).numpy()[:, 0]


@torch.no_grad()
def _bits_per_dim(flow, x: np.ndarray | torch.Tensor) -> np.ndarray:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.dim() == 3:
        x = x[:, None]
    x = x.clamp(0, LEVELS - 1e-3)
    return flow.bits_per_dim(x).numpy()


def _nearest(grid: np.ndarray, value: float) -> int:
    return int(np.abs(grid - value).argmin())


# ----------------------------------------------------------------------------------
# Why dequantize: spikes on the integers
# ----------------------------------------------------------------------------------


def dequantization_explorer(pixels: torch.Tensor | None = None, seed: int = 0) -> Explorer:
    """A continuous model of one pixel: Gaussian bumps of width sigma on each level.

    ``pixels`` are integer grey levels (default: every pixel of the training digits),
    giving the level frequencies ``pi_k``. The model is
    ``p(x) = sum_k pi_k N(x; k, sigma^2)``. On the integer data its log-likelihood grows
    without bound as ``sigma -> 0``; on dequantized data ``k + u`` it collapses instead,
    and it can never beat the histogram bound ``sum_k pi_k log pi_k``.
    """
    if pixels is None:
        from ..data import digits

        pixels = digits("train")
    levels = np.asarray(pixels).astype(np.int64).ravel()
    counts = np.bincount(levels, minlength=LEVELS).astype(float)
    freqs = counts / counts.sum()
    rng = np.random.default_rng(seed)
    sample = rng.choice(levels, size=2000)
    integer_points = sample.astype(float)
    dequantized_points = integer_points + rng.random(sample.shape)
    nonzero = freqs > 0
    bound = float(np.sum(freqs[nonzero] * np.log(freqs[nonzero])))  # mean log-lik of the histogram density
    xs = np.linspace(0, LEVELS, LEVELS * 80 + 1)  # includes every integer, where the spikes are
    centres = np.arange(LEVELS, dtype=float)
    log_freqs = np.log(np.where(nonzero, freqs, 1e-300))

    def log_density(x: np.ndarray, sigma: float) -> np.ndarray:
        d = (x[:, None] - centres[None, :]) / sigma
        terms = log_freqs[None, :] - 0.5 * d * d - math.log(sigma * math.sqrt(2 * math.pi))
        m = terms.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(terms - m).sum(axis=1, keepdims=True)))[:, 0]

    log_sigma = float_slider("log10 sigma", -0.5, -3.0, 0.5, step=0.05)
    fig, (ax_density, ax_ll) = make_figure(1, 2, figsize=(8.2, 3.3), gridspec_kw={"width_ratios": [1.5, 1]})
    ax_density.bar(centres, freqs, width=1.0, align="edge", color="#c6dbef", edgecolor="#6baed6",
                   label="dequantized data (histogram)")
    curve, = ax_density.plot(xs, np.zeros_like(xs), color="#d62728", lw=1.2, label="model p(x)")
    ax_density.set_xlim(0, LEVELS)
    ax_density.set_ylim(0, 1.0)
    ax_density.set_xlabel("pixel value (level units)")
    ax_density.set_ylabel("density")
    ax_density.legend(loc="upper center", fontsize=8)
    peak_text = ax_density.text(0.98, 0.72, "", transform=ax_density.transAxes, ha="right", fontsize=8)

    # Everything the slider can reach is computed once; a move only swaps data and text.
    log_sigmas = np.round(np.arange(-3.0, 0.5001, 0.05), 2)
    sigmas = 10 ** log_sigmas
    curves = np.exp(np.stack([log_density(xs, s) for s in sigmas]))
    peaks = np.exp(np.stack([log_density(centres, s) for s in sigmas])).max(axis=1)
    ll_integer = np.array([log_density(integer_points, s).mean() for s in sigmas])
    ll_dequant = np.array([log_density(dequantized_points, s).mean() for s in sigmas])
    ax_ll.plot(log_sigmas, ll_integer, color="#d62728", label="on integers k")
    ax_ll.plot(log_sigmas, ll_dequant, color="#1f77b4", label="on dequantized k + u")
    ax_ll.axhline(bound, color="k", ls=":", lw=1, label="histogram bound")
    ax_ll.set_ylim(-6, 6)
    ax_ll.set_xlabel("log10 sigma")
    ax_ll.set_ylabel("mean log-likelihood (nats/pixel)")
    ax_ll.legend(fontsize=7, loc="lower left")
    marker = ax_ll.axvline(0.0, color="0.4", lw=1)
    # A placeholder of the readout's shape, so the layout leaves room for it.
    readout = ax_ll.set_title("integers: +0.00   dequantized: +0.00\nbound: +0.00", fontsize=8)
    fig.tight_layout()

    def update():
        i = _nearest(log_sigmas, log_sigma.value)
        density = curves[i]
        curve.set_ydata(np.minimum(density, 0.99))
        peak = max(peaks[i], density.max())
        peak_text.set_text(f"sigma = {sigmas[i]:.3g}\npeak density {peak:.3g}"
                           + (" (clipped)" if peak > 0.99 else ""))
        marker.set_xdata([log_sigmas[i], log_sigmas[i]])
        readout.set_text(f"integers: {ll_integer[i]:+.2f}   dequantized: {ll_dequant[i]:+.2f}\n"
                         f"bound: {bound:+.2f}")
        fig.canvas.draw_idle()

    box = widgets.VBox([log_sigma, fig.canvas])
    return Explorer(box, fig, {"log_sigma": log_sigma}, update,
                    artists={"curve": curve, "readout": readout, "marker": marker},
                    moving=[curve, peak_text, marker, readout])


# ----------------------------------------------------------------------------------
# Samples at a temperature
# ----------------------------------------------------------------------------------


def temperature_explorer(flow, n: int = 16, seed: int = 0,
                         temperatures=np.round(np.arange(0.0, 1.501, 0.05), 2)) -> Explorer:
    """Samples ``x = f^{-1}(T z)`` for fixed base noise ``z``; drag the temperature ``T``.

    ``T = 0`` decodes the single most likely latent (the origin); ``T = 1`` samples the
    model; ``T < 1`` trades variety for cleaner, more typical digits.
    """
    temperatures = np.asarray(temperatures, dtype=float)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, flow.num_dims, generator=g)
    with torch.no_grad():
        stacked = torch.cat([float(t) * z for t in temperatures])
        decoded = _decode(flow, stacked).reshape(len(temperatures), n, 8, 8)
        bpd = _bits_per_dim(flow, decoded.reshape(-1, 8, 8)).reshape(len(temperatures), n)
    tiles = [mosaic(d) for d in decoded]

    temperature = float_slider("temperature T", 0.8, float(temperatures.min()), float(temperatures.max()), 0.05)
    fig, ax = make_figure(figsize=(4.2, 4.4))
    image = show_digits(ax, decoded[0])
    title = ax.set_title("", fontsize=10)
    fig.tight_layout()

    def update():
        i = _nearest(temperatures, temperature.value)
        image.set_data(tiles[i])
        title.set_text(f"T = {temperatures[i]:.2f}: model's bits/dim of these {n}: {bpd[i].mean():.2f}")
        fig.canvas.draw_idle()

    box = widgets.VBox([temperature, fig.canvas])
    return Explorer(box, fig, {"temperature": temperature}, update, artists={"image": image, "title": title},
                    moving=[image, title])


# ----------------------------------------------------------------------------------
# Interpolation through latent space
# ----------------------------------------------------------------------------------


def interpolation_explorer(flow, images: torch.Tensor, pairs=((0, 1), (2, 3), (4, 5), (6, 7)),
                           steps: int = 21) -> Explorer:
    """Walk from digit A to digit B along a straight line in latent space (top) or in
    pixel space (bottom). ``images`` are integer levels; each is encoded at the centre of
    its cube (``k + 0.5``)."""
    pairs = [tuple(int(i) for i in p) for p in pairs]
    ts = np.linspace(0.0, 1.0, steps)
    x = images.float() + 0.5
    with torch.no_grad():
        z = flow.latent(x)
    latent_paths, pixel_paths = [], []
    for a, b in pairs:
        t = torch.as_tensor(ts, dtype=torch.float32).view(-1, 1)
        latent_paths.append((1 - t) * z[a] + t * z[b])
        tt = t.view(-1, 1, 1, 1)
        pixel_paths.append(((1 - tt) * x[a] + tt * x[b])[:, 0].numpy())
    latent_images = _decode(flow, torch.cat(latent_paths)).reshape(len(pairs), steps, 8, 8)
    pixel_images = np.stack(pixel_paths)
    latent_bpd = _bits_per_dim(flow, latent_images.reshape(-1, 8, 8)).reshape(len(pairs), steps)
    pixel_bpd = _bits_per_dim(flow, pixel_images.reshape(-1, 8, 8)).reshape(len(pairs), steps)
    ends = x[:, 0].numpy()

    t_slider = float_slider("t (A -> B)", 0.5, 0.0, 1.0, step=float(ts[1] - ts[0]))
    pair = int_slider("pair", 0, 0, len(pairs) - 1)
    # One row on purpose: A, the two mixes, B read left to right; 820 px wide.
    fig, axes = make_figure(1, 4, figsize=(8.2, 2.7))
    artists = {}
    for ax, key, label in zip(axes, ["a", "latent", "pixel", "b"],
                              ["digit A", "latent mix\n", "pixel mix\n", "digit B"]):
        artists[key] = show_digits(ax, np.zeros((8, 8)), cols=1, title=label)
    latent_title, pixel_title = axes[1].title, axes[2].title
    fig.tight_layout()

    def update():
        p = pair.value
        i = _nearest(ts, t_slider.value)
        a, b = pairs[p]
        artists["a"].set_data(np.clip(ends[a], 0, LEVELS - 1))
        artists["b"].set_data(np.clip(ends[b], 0, LEVELS - 1))
        artists["latent"].set_data(np.clip(latent_images[p, i], 0, LEVELS - 1))
        artists["pixel"].set_data(np.clip(pixel_images[p, i], 0, LEVELS - 1))
        latent_title.set_text(f"latent mix, t={ts[i]:.2f}\n{latent_bpd[p, i]:.2f} bits/dim")
        pixel_title.set_text(f"pixel mix, t={ts[i]:.2f}\n{pixel_bpd[p, i]:.2f} bits/dim")
        fig.canvas.draw_idle()

    box = widgets.VBox([t_slider, pair, fig.canvas])
    return Explorer(box, fig, {"t": t_slider, "pair": pair}, update, artists=artists,
                    moving=[*artists.values(), latent_title, pixel_title])


# ----------------------------------------------------------------------------------
# The scales of the latent
# ----------------------------------------------------------------------------------


def scale_explorer(flow, images: torch.Tensor, variants: int = 7, seed: int = 0,
                   temperatures=np.round(np.arange(0.0, 1.501, 0.1), 1)) -> Explorer:
    """Keep one part of a digit's latent and resample the other at temperature ``T``.

    The first slice of the latent (``flow.scale_slices[0]``) was factored out after the
    first scale: it holds fine detail. The rest went through more layers: coarse
    structure. Resampling only the fine part keeps the digit and changes its strokes.
    """
    temperatures = np.asarray(temperatures, dtype=float)
    fine = flow.scale_slices[0]
    mask_fine = torch.zeros(flow.num_dims, dtype=torch.bool)
    mask_fine[fine] = True
    masks = {"fine details": mask_fine, "coarse structure": ~mask_fine}
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(variants, flow.num_dims, generator=g)
    x = images.float() + 0.5
    with torch.no_grad():
        z = flow.latent(x)
    batches = []
    for k in range(len(images)):
        for mask in masks.values():
            for t in temperatures:
                batches.append(torch.where(mask, float(t) * noise, z[k].expand_as(noise)))
    decoded = _decode(flow, torch.cat(batches)).reshape(len(images), len(masks), len(temperatures), variants, 8, 8)
    originals = x[:, 0].numpy()

    digit = int_slider("digit", 0, 0, len(images) - 1)
    which = widgets.ToggleButtons(options=list(masks), value="fine details", description="resample")
    temperature = float_slider("temperature T", 1.0, float(temperatures.min()), float(temperatures.max()), 0.1)
    fig, (ax_orig, ax_var) = make_figure(1, 2, figsize=(8.2, 2.2), gridspec_kw={"width_ratios": [1, variants]})
    original = show_digits(ax_orig, originals[0], cols=1, title="original")
    variant_image = show_digits(ax_var, decoded[0, 0, 0], cols=variants)
    title = ax_var.title
    fig.tight_layout()
    names = list(masks)

    def update():
        k, m = digit.value, names.index(which.value)
        i = _nearest(temperatures, temperature.value)
        original.set_data(originals[k])
        variant_image.set_data(mosaic(decoded[k, m, i], cols=variants))
        kept = "coarse" if m == 0 else "fine"
        count = int(masks[which.value].sum())
        title.set_text(f"kept the {kept} latents, resampled {count} {which.value} latents at T = {temperatures[i]:.1f}")
        fig.canvas.draw_idle()

    box = widgets.VBox([digit, which, temperature, fig.canvas])
    return Explorer(box, fig, {"digit": digit, "resample": which, "temperature": temperature}, update,
                    artists={"original": original, "variants": variant_image, "title": title},
                    moving=[original, variant_image, title])


# ----------------------------------------------------------------------------------
# The lesson's static figure
# ----------------------------------------------------------------------------------


def lesson_figure():
    """Real test digits, samples of the pretrained model, and fine-detail resampling."""
    from ..data import digits
    from ..pretrained import load_pretrained

    flow = load_pretrained("digits-realnvp")
    test = digits("test")
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        samples = _decode(flow, 0.8 * torch.randn(16, flow.num_dims, generator=g))
        z = flow.latent(test[:4].float() + 0.5)
        noise = torch.randn(4, flow.num_dims, generator=g)
        fine = flow.scale_slices[0]
        rows = []
        for k in range(4):
            zk = z[k].repeat(4, 1)
            zk[:, fine] = noise[:, fine]
            rows.append(np.concatenate([test[k:k + 1, 0].float().numpy() + 0.5, _decode(flow, zk)]))
    with plt.ioff():
        fig, axes = plt.subplots(1, 3, figsize=(8.2, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.25]})
    show_digits(axes[0], test[:16], cols=4, title="test digits")
    show_digits(axes[1], samples, cols=4, title="samples, T = 0.8")
    show_digits(axes[2], np.concatenate(rows), cols=5, title="original | fine latents resampled")
    fig.suptitle("An image RealNVP on 8x8 digits (17 grey levels)", fontsize=11)
    fig.tight_layout()
    return fig
