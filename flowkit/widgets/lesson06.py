"""Lesson 06 explorers and figures: autoregressive flows and anomaly detection.

* :func:`chain_rule_figure` -- the exact two-moons density split into a marginal and
  conditionals: the factorisation an autoregressive flow learns;
* :func:`sampling_explorer` -- slide through the ``D`` sequential passes of a MAF layer's
  inverse and watch a digit appear one pixel per pass;
* :func:`threshold_explorer` -- move a likelihood threshold and see which digits get
  flagged, with the score histograms and the ROC curve;
* :func:`roc_curve` / :func:`roc_auc` -- the ROC bookkeeping the explorer uses.

Everything a slider shows is computed once, up front; moving a slider only swaps arrays.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from .. import data
from ..autoregressive import MAF, MaskedAutoregressive
from ..flow import Flow
from ..jacobian import jacobian
from ..train import fit
from ._base import Explorer, float_slider, int_slider, make_figure

__all__ = [
    "roc_curve",
    "roc_auc",
    "chain_rule_figure",
    "sampling_explorer",
    "threshold_explorer",
    "lesson_figure",
]

XLIM = (-1.5, 2.5)
YLIM = (-1.0, 1.5)
_FLAG_COLOR = "#d62728"
_CLEAR_COLOR = "#bbbbbb"


# ----------------------------------------------------------------------------------
# ROC bookkeeping
# ----------------------------------------------------------------------------------


def _as_scores(scores, name: str) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one score")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def roc_curve(normal_scores, anomaly_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false_positive_rate, true_positive_rate, thresholds)``; higher score = more anomalous.

    A sample is flagged when its score is strictly above the threshold. The thresholds
    run from above the largest score (nothing flagged, the point (0, 0)) down to below
    the smallest (everything flagged, (1, 1)).
    """
    normal = _as_scores(normal_scores, "normal_scores")
    anomalous = _as_scores(anomaly_scores, "anomaly_scores")
    values = np.unique(np.concatenate([normal, anomalous]))[::-1]
    thresholds = np.concatenate([[values[0] + 1.0], values[1:], [values[-1] - 1.0]])
    # Strictly-above counts for every threshold at once, from the sorted scores.
    fpr = 1.0 - np.searchsorted(np.sort(normal), thresholds, side="right") / normal.size
    tpr = 1.0 - np.searchsorted(np.sort(anomalous), thresholds, side="right") / anomalous.size
    return fpr, tpr, thresholds


def roc_auc(normal_scores, anomaly_scores) -> float:
    """Area under the ROC curve: P(anomaly scores higher than normal), ties counting 1/2."""
    normal = _as_scores(normal_scores, "normal_scores")
    anomalous = _as_scores(anomaly_scores, "anomaly_scores")
    sorted_normal = np.sort(normal)
    below = np.searchsorted(sorted_normal, anomalous, side="left")
    ties = np.searchsorted(sorted_normal, anomalous, side="right") - below
    return float((below + 0.5 * ties).sum() / (normal.size * anomalous.size))


# ----------------------------------------------------------------------------------
# Chain rule picture
# ----------------------------------------------------------------------------------


def chain_rule_figure(slices: Sequence[float] = (-0.6, 0.5, 1.6), n: int = 200):
    r"""The exact two-moons density as :math:`p(x_1)\,p(x_2 \mid x_1)`.

    Left: the joint density with a few vertical slices; middle: the marginal
    :math:`p(x_1)`; right: the conditional :math:`p(x_2 \mid x_1)` along each slice
    (the slice of the joint, renormalised to area one).
    """
    xs = torch.linspace(-2.0, 3.0, n, dtype=torch.float64)
    ys = torch.linspace(-1.5, 2.0, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    # 32 quadrature panels instead of 256: plenty for a picture, eight times faster.
    joint = data.two_moons_log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), panels=32).exp()
    joint = joint.reshape(n, n).numpy()  # rows: x2, columns: x1
    dy = float(ys[1] - ys[0])
    marginal = joint.sum(axis=0) * dy
    x_np, y_np = xs.numpy(), ys.numpy()
    with plt.ioff():
        fig, (ax_j, ax_m, ax_c) = plt.subplots(1, 3, figsize=(12, 3.4))
    ax_j.imshow(joint, origin="lower", extent=(-2.0, 3.0, -1.5, 2.0), aspect="auto", cmap="viridis")
    ax_m.plot(x_np, marginal, color="k")
    ax_m.fill_between(x_np, marginal, color="0.85")
    for k, c in enumerate(slices):
        color = f"C{k + 1}"
        col = int(np.argmin(np.abs(x_np - c)))
        conditional = joint[:, col] / marginal[col]
        ax_j.axvline(x_np[col], color=color, lw=2)
        ax_m.axvline(x_np[col], color=color, lw=2)
        ax_c.plot(y_np, conditional, color=color, lw=2, label=f"$x_1 = {c:g}$")
    ax_j.set_title("joint $p(x_1, x_2)$", fontsize=10)
    ax_j.set_xlabel("$x_1$")
    ax_j.set_ylabel("$x_2$")
    ax_m.set_title("marginal $p(x_1)$", fontsize=10)
    ax_m.set_xlabel("$x_1$")
    ax_c.set_title(r"conditionals $p(x_2 \mid x_1)$", fontsize=10)
    ax_c.set_xlabel("$x_2$")
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------
# Sampling, one pass at a time
# ----------------------------------------------------------------------------------


def _last_generative_layer(flow: Flow) -> int:
    for i, t in enumerate(flow.transforms):
        if isinstance(t, MaskedAutoregressive):
            return i
    raise ValueError("sampling_explorer needs a Flow that contains a MaskedAutoregressive layer "
                     "(for example one built from flowkit.MAF)")


def sampling_explorer(flow: Flow, image_shape: tuple[int, int] = (8, 8), num_samples: int = 4,
                      seed: int = 0, temperature: float = 1.0, vmax: float = 17.0,
                      start: int | None = None) -> Explorer:
    """Watch the last MAF layer of a sampling run fill in the sample one coordinate per pass.

    ``flow`` is a Flow whose first :class:`MaskedAutoregressive` layer (the last one run
    when sampling) is preceded only by elementwise transforms (such as an Affine and a
    Logit), so a finished coordinate of that layer is a finished pixel. Every pass of the
    layer's inverse is computed once up front; the slider picks a pass (``start``, by
    default five eighths of the way, so the static picture shows a half-written sample).
    """
    idx = _last_generative_layer(flow)
    layer = flow.transforms[idx]
    dim = layer.dim
    if math.prod(image_shape) != dim:
        raise ValueError(f"image_shape {image_shape} has {math.prod(image_shape)} pixels, "
                         f"but the MAF layer has {dim} coordinates")
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        z = flow.base.sample(num_samples, temperature=temperature, generator=generator)
        h = z
        for t in reversed(flow.transforms[idx + 1:]):
            h, _ = t.inverse(h)
        x = torch.zeros_like(h)
        for _ in range(dim):  # the layer's own inverse, written out to keep every pass
            mu, alpha = layer.mean_log_scale(x)
            x = mu + torch.exp(alpha) * h
        for t in reversed(flow.transforms[:idx]):
            x, _ = t.inverse(x)
    final = x.reshape(num_samples, *image_shape).numpy()
    order = layer.order.numpy()
    rows, cols = np.unravel_index(order, image_shape)
    layers_before = sum(isinstance(t, MaskedAutoregressive) for t in flow.transforms[idx + 1:])

    fig, axes = make_figure(1, num_samples, figsize=(2.1 * num_samples + 0.6, 2.9))
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="#f6d7a7")  # bad = not generated yet
    images, cursors = [], []
    for ax in axes:
        images.append(ax.imshow(np.ma.masked_all(image_shape), cmap=cmap, vmin=0.0, vmax=vmax))
        cursor = Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor=_FLAG_COLOR, lw=2)
        ax.add_patch(cursor)
        cursors.append(cursor)
        ax.set_xticks([])
        ax.set_yticks([])
    title = fig.suptitle("", fontsize=10)
    fig.tight_layout()
    fig.subplots_adjust(top=0.78)

    start = dim * 5 // 8 if start is None else min(max(int(start), 0), dim)
    passes = int_slider("passes of the last MAF layer", start, 0, dim)

    def update():
        k = int(passes.value)
        done = np.zeros(image_shape, dtype=bool)
        done[rows[:k], cols[:k]] = True
        for i, (image, cursor) in enumerate(zip(images, cursors)):
            image.set_data(np.ma.masked_array(final[i], mask=~done))
            if k < dim:
                cursor.set_xy((cols[k] - 0.5, rows[k] - 0.5))
                cursor.set_visible(True)
            else:
                cursor.set_visible(False)
        nxt = "all pixels done" if k == dim else f"next: pixel (row {rows[k]}, col {cols[k]}), red box"
        title.set_text(f"pass {k} of {dim}: {k} pixels final; {nxt}\n"
                       f"conditioner calls so far: {layers_before} x {dim} in earlier layers "
                       f"+ {k} in this one")
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([passes, fig.canvas]), fig, {"passes": passes}, update,
                    {"images": images, "cursors": cursors, "title": title})


# ----------------------------------------------------------------------------------
# Threshold explorer
# ----------------------------------------------------------------------------------


def _images_array(images, name: str) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images, dtype=float)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a batch of images (N, H, W) or (N, 1, H, W), got shape {arr.shape}")
    return arr


def _spread_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` samples at evenly spaced ranks: low to high score."""
    order = np.argsort(scores, kind="stable")
    picks = np.linspace(0, scores.size - 1, min(count, scores.size)).round().astype(int)
    return order[picks]


def threshold_explorer(normal_scores, anomaly_scores: Mapping[str, object], normal_images,
                       anomaly_images: Mapping[str, object], unit: str = "bits/dim",
                       num_shown: int = 6, bins: int = 30) -> Explorer:
    """A likelihood-threshold anomaly detector you can tune by hand.

    Scores are ``-log p(x)`` (higher = less likely = more anomalous); a sample is flagged
    when its score is above the threshold. ``anomaly_scores`` and ``anomaly_images`` map
    the name of each kind of anomaly to its scores and images (same order). The figure
    shows both score histograms with the threshold, the ROC curve with the operating
    point, and a few normal and anomalous images with a red frame when flagged.
    """
    normal = _as_scores(normal_scores, "normal_scores")
    normal_imgs = _images_array(normal_images, "normal_images")
    if normal_imgs.shape[0] != normal.size:
        raise ValueError(f"{normal.size} normal scores but {normal_imgs.shape[0]} normal images")
    if not anomaly_scores or set(anomaly_scores) != set(anomaly_images):
        raise ValueError("anomaly_scores and anomaly_images must be non-empty and have the same keys")
    kinds = list(anomaly_scores)
    scores = {k: _as_scores(anomaly_scores[k], f"anomaly_scores[{k!r}]") for k in kinds}
    imgs = {k: _images_array(anomaly_images[k], f"anomaly_images[{k!r}]") for k in kinds}
    for k in kinds:
        if imgs[k].shape[0] != scores[k].size:
            raise ValueError(f"{scores[k].size} scores but {imgs[k].shape[0]} images for {k!r}")

    # Precompute, per kind: histogram bars, ROC curve, AUC and the images shown.
    shown_normal = _spread_indices(normal, num_shown)
    vmax = max(normal_imgs.max(), *(a.max() for a in imgs.values()), 1.0)
    per_kind = {}
    # Far-off scores (an inverted digit can score thousands of bits/dim) would squash the
    # normal histogram into one bar: the axis stops at a cap and the rest pile into the last bin.
    spread = float(normal.max() - normal.min()) + 1e-6
    cap = float(normal.max()) + 3.0 * spread
    for k in kinds:
        both = np.concatenate([normal, scores[k]])
        lo, hi = float(both.min()), min(float(both.max()), cap)
        pad = 0.03 * (hi - lo) + 1e-6
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
        fpr, tpr, _ = roc_curve(normal, scores[k])
        clipped = np.clip(scores[k], edges[0], edges[-1] - 1e-9 * spread)
        per_kind[k] = {
            "edges": edges,
            "beyond": int((scores[k] > edges[-1]).sum()),
            "normal_hist": np.histogram(normal, edges)[0] / (normal.size * np.diff(edges)),
            "anomaly_hist": np.histogram(clipped, edges)[0] / (clipped.size * np.diff(edges)),
            "fpr": fpr, "tpr": tpr, "auc": roc_auc(normal, scores[k]),
            "shown": _spread_indices(scores[k], num_shown),
        }
    sorted_normal = np.sort(normal)
    sorted_scores = {k: np.sort(v) for k, v in scores.items()}

    fig, (ax_h, ax_r, ax_i) = make_figure(1, 3, figsize=(13, 3.9),
                                          gridspec_kw={"width_ratios": [1.3, 1.0, 1.5]})
    first = per_kind[kinds[0]]
    width = np.diff(first["edges"])
    normal_bars = ax_h.bar(first["edges"][:-1], first["normal_hist"], width, align="edge",
                           color="C0", alpha=0.55, label="normal test digits")
    anomaly_bars = ax_h.bar(first["edges"][:-1], first["anomaly_hist"], width, align="edge",
                            color="C1", alpha=0.55, label=kinds[0])
    threshold_line = ax_h.axvline(0.0, color=_FLAG_COLOR, lw=2)
    beyond_text = ax_h.text(0.98, 0.62, "", transform=ax_h.transAxes, ha="right", fontsize=8, color="C1")
    ax_h.set_xlabel(f"anomaly score  $-\\log p(x)$  [{unit}]")
    ax_h.set_ylabel("density")
    legend = ax_h.legend(fontsize=8, loc="upper right")

    ax_r.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1)
    roc_line, = ax_r.plot(first["fpr"], first["tpr"], color="C1", lw=2)
    roc_point, = ax_r.plot([0.0], [0.0], "o", color=_FLAG_COLOR, ms=8)
    ax_r.set_xlim(-0.02, 1.02)
    ax_r.set_ylim(-0.02, 1.02)
    ax_r.set_xlabel("false alarms (normal flagged)")
    ax_r.set_ylabel("detections (anomalies flagged)")
    # Real text before tight_layout, so the layout leaves room for the title.
    roc_title = ax_r.set_title(f"ROC: normal vs {kinds[0]}   (AUC = 0.000)", fontsize=10)

    # A montage: normal digits on top, anomalies below, one pixel of gap between tiles.
    h, w = normal_imgs.shape[1:]
    count = len(shown_normal)
    tile_w, tile_h = w + 1, h + 1
    montage = np.full((2 * tile_h - 1, count * tile_w - 1), np.nan)
    montage_image = ax_i.imshow(montage, cmap="gray_r", vmin=0.0, vmax=vmax)
    frames = []
    for row in range(2):
        for col in range(count):
            frame = Rectangle((col * tile_w - 0.5, row * tile_h - 0.5), w, h, fill=False,
                              lw=2.5, edgecolor=_CLEAR_COLOR)
            ax_i.add_patch(frame)
            frames.append(frame)
    ax_i.set_xticks([])
    ax_i.set_yticks([h / 2 - 0.5, tile_h + h / 2 - 0.5])
    ax_i.set_yticklabels(["normal", "anomaly"])
    ax_i.set_title("red frame = flagged (score above threshold)", fontsize=10)
    readout = fig.text(0.01, 0.01, "", fontsize=10, family="monospace")
    fig.tight_layout(rect=(0, 0.07, 1, 1))

    lo = min(normal.min(), *(v.min() for v in scores.values()))
    hi = max(pk["edges"][-1] for pk in per_kind.values())
    start = float(np.quantile(normal, 0.95))
    # The range reaches below every score ("flag everything") and past the shown histograms.
    threshold = float_slider(f"threshold [{unit}]", round(start, 2), math.floor(lo * 10) / 10 - 0.1,
                             math.ceil(hi * 10) / 10 + 0.1, step=0.01)
    kind = widgets.Dropdown(options=kinds, value=kinds[0], description="anomaly",
                            layout=widgets.Layout(width="320px"))
    state = {"kind": None}

    def show_kind(k: str) -> None:
        pk = per_kind[k]
        edges = pk["edges"]
        for bars, heights in ((normal_bars, pk["normal_hist"]), (anomaly_bars, pk["anomaly_hist"])):
            for patch, left, right, height in zip(bars.patches, edges[:-1], edges[1:], heights):
                patch.set_x(left)
                patch.set_width(right - left)
                patch.set_height(height)
        ax_h.set_xlim(edges[0], edges[-1])
        ax_h.set_ylim(0, 1.1 * max(pk["normal_hist"].max(), pk["anomaly_hist"].max()))
        legend.get_texts()[1].set_text(k)
        beyond_text.set_text(f"{pk['beyond']} scores beyond {edges[-1]:.1f}\nare counted in the last bin"
                             if pk["beyond"] else "")
        roc_line.set_data(pk["fpr"], pk["tpr"])
        roc_title.set_text(f"ROC: normal vs {k}   (AUC = {pk['auc']:.3f})")
        for col, i in enumerate(shown_normal):
            montage[0:h, col * tile_w:col * tile_w + w] = normal_imgs[i]
        for col, i in enumerate(pk["shown"]):
            montage[tile_h:tile_h + h, col * tile_w:col * tile_w + w] = imgs[k][i]
        montage_image.set_data(montage)
        state["kind"] = k

    def update():
        k = kind.value
        if state["kind"] != k:
            show_kind(k)
        t = float(threshold.value)
        fpr = 1.0 - np.searchsorted(sorted_normal, t, side="right") / normal.size
        tpr = 1.0 - np.searchsorted(sorted_scores[k], t, side="right") / scores[k].size
        threshold_line.set_xdata([t, t])
        roc_point.set_data([fpr], [tpr])
        flagged = [normal[i] > t for i in shown_normal] + [scores[k][i] > t for i in per_kind[k]["shown"]]
        flagged += [False] * (len(frames) - len(flagged))
        for frame, is_flagged in zip(frames, flagged):
            frame.set_edgecolor(_FLAG_COLOR if is_flagged else _CLEAR_COLOR)
        readout.set_text(f"threshold {t:.2f} {unit}:  flags {fpr:6.1%} of normal digits (false alarms)"
                         f"  and {tpr:6.1%} of '{k}' (detections)")
        fig.canvas.draw_idle()

    controls = {"threshold": threshold, "kind": kind}
    return Explorer(widgets.VBox([widgets.HBox([threshold, kind]), fig.canvas]), fig, controls,
                    update, {"threshold_line": threshold_line, "roc_point": roc_point,
                             "roc_line": roc_line, "frames": frames, "readout": readout,
                             "montage": montage_image, "anomaly_bars": anomaly_bars})


# ----------------------------------------------------------------------------------
# Summary figure
# ----------------------------------------------------------------------------------


def lesson_figure(steps: int = 800, seed: int = 0):
    """Triangular Jacobian, cost of density vs sampling, and a MAF fitted to two moons."""
    torch.manual_seed(seed)
    layer = MaskedAutoregressive(8, hidden=16)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    jac = jacobian(layer.forward, torch.randn(1, 8))[0].abs().numpy()
    x = data.two_moons(20_000, seed=seed)
    flow = MAF(2, num_layers=8, hidden=64)
    fit(flow, x, steps, batch_size=256, lr=3e-3, cosine_schedule=True, seed=seed, progress=False)
    n = 120
    xs = torch.linspace(*XLIM, n)
    ys = torch.linspace(*YLIM, n)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        density = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp().reshape(n, n)

    with plt.ioff():
        fig, (ax_j, ax_c, ax_d) = plt.subplots(1, 3, figsize=(13, 3.7))
    above = np.triu(np.ones_like(jac, dtype=bool), k=1)
    ax_j.imshow(np.where(above, np.nan, jac), cmap="viridis")  # blank = structurally zero
    ax_j.set_title(r"$|\partial z_i / \partial x_j|$ of a MAF layer: triangular", fontsize=10)
    ax_j.set_xlabel("input $j$")
    ax_j.set_ylabel("output $i$")
    dims = np.array([2, 8, 16, 32, 64, 128])
    layers = 5
    ax_c.plot(dims, layers * dims, "s-", color="C1", label="MAF sampling: D passes per layer")
    ax_c.plot(dims, np.full(dims.shape, layers), "o-", color="C0",
              label="MAF density, RealNVP both ways: 1 pass per layer")
    ax_c.set_xscale("log", base=2)
    ax_c.set_yscale("log")
    ax_c.set_xlabel("dimension D")
    ax_c.set_ylabel("network passes (5 layers)")
    ax_c.set_title("the price of autoregressive sampling", fontsize=10)
    ax_c.legend(fontsize=8, loc="upper left")
    ax_d.imshow(density.numpy(), origin="lower", extent=(*XLIM, *YLIM), aspect="auto", cmap="viridis")
    ax_d.set_title(f"MAF (8 layers) fitted to two moons, {steps} steps", fontsize=10)
    ax_d.set_xticks([])
    ax_d.set_yticks([])
    fig.tight_layout()
    return fig
