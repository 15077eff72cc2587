"""Lesson 07 explorers and figures: flows in practice, anomaly detection.

* :func:`roc_curve` / :func:`roc_auc` -- the ROC bookkeeping the explorer uses;
* :func:`threshold_explorer` -- move a likelihood threshold and see which digits get
  flagged, with the score histograms and the ROC curve;
* :func:`lesson_figure` -- the summary figure: damaged digits caught by their likelihood,
  and simple inputs that look more normal than any real digit.

Everything a slider shows is computed once, up front; moving a slider only swaps arrays.
"""

from __future__ import annotations

import math
from typing import Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from .. import data
from ._base import Explorer, float_slider, make_figure

__all__ = ["roc_curve", "roc_auc", "threshold_explorer", "digit_scores", "lesson_figure"]

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

    # Histogram and ROC side by side, the images on a second row: 820 px wide at most.
    fig, axes = make_figure(2, 2, figsize=(8.2, 5.8),
                            gridspec_kw={"height_ratios": [1.25, 1.0], "width_ratios": [1.25, 1.0]})
    ax_h, ax_r = axes[0]
    for ax in axes[1]:
        ax.remove()
    ax_i = fig.add_subplot(axes[0, 0].get_gridspec()[1, :])
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
    roc_title = ax_r.set_title(f"ROC: normal vs {kinds[0]}\n(AUC = 0.000)", fontsize=9)

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
    readout = fig.text(0.01, 0.01, "", fontsize=8.5, family="monospace")
    fig.tight_layout(rect=(0, 0.05, 1, 1))

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
        roc_title.set_text(f"ROC: normal vs {k}\n(AUC = {pk['auc']:.3f})")
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
        readout.set_text(f"threshold {t:.2f} {unit}: flags {fpr:.1%} of normal digits (false alarms), "
                         f"{tpr:.1%} of '{k}'")
        fig.canvas.draw_idle()

    controls = {"threshold": threshold, "kind": kind}
    return Explorer(widgets.VBox([widgets.HBox([threshold, kind]), fig.canvas]), fig, controls,
                    update, {"threshold_line": threshold_line, "roc_point": roc_point,
                             "roc_line": roc_line, "frames": frames, "readout": readout,
                             "montage": montage_image, "anomaly_bars": anomaly_bars},
                    # The threshold moves only these; histograms, ROC curve and digits are a
                    # background drawn once (a new anomaly kind redraws everything).
                    moving=[threshold_line, roc_point, frames, readout])




# ----------------------------------------------------------------------------------
# Summary figure
# ----------------------------------------------------------------------------------


def digit_scores(flow, images, draws: int = 4, seed: int = 0) -> torch.Tensor:
    """Bits per dimension of each 8x8 digit under ``flow``, in level units, averaged over
    ``draws`` uniform dequantizations (one draw is noisy); higher means less likely."""
    generator = torch.Generator().manual_seed(seed)
    images = images.reshape(len(images), *flow.event_shape)
    with torch.no_grad():
        log_p = torch.stack([flow.log_prob(data.dequantize(images, generator=generator))
                             for _ in range(draws)]).mean(dim=0)
    return -log_p / (images[0].numel() * math.log(2))


def lesson_figure():
    """The pretrained digits RealNVP as an anomaly detector: ROC curves for damaged digits,
    and where a blank page and a flat grey image fall among real digits' scores."""
    from ..pretrained import load_pretrained

    flow = load_pretrained("digits-realnvp")
    normal = data.digits("test")
    noise = torch.randn(normal.shape, generator=torch.Generator().manual_seed(1))
    damaged = {
        "Gaussian noise": (normal + 3.0 * noise).round().clamp(0, 16).long(),
        "inverted": 16 - normal,
        "faint (half contrast)": (normal / 2).round().long(),
    }
    normal_scores = digit_scores(flow, normal).numpy()
    blank = float(digit_scores(flow, torch.zeros(1, 1, 8, 8, dtype=torch.long))[0])

    with plt.ioff():
        fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(8.2, 3.3))
    for name, images in damaged.items():
        scores = digit_scores(flow, images).numpy()
        fpr, tpr, _ = roc_curve(normal_scores, scores)
        ax_r.plot(fpr, tpr, lw=2, label=f"{name}: AUC {roc_auc(normal_scores, scores):.2f}")
    ax_r.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1)
    ax_r.set_xlabel("false alarms", fontsize=9)
    ax_r.set_ylabel("detections", fontsize=9)
    ax_r.set_title("damaged digits are caught", fontsize=10)
    ax_r.legend(fontsize=7, loc="lower right")
    ax_h.hist(normal_scores, bins=30, color="C0", alpha=0.7, label="real test digits")
    ax_h.axvline(blank, color=_FLAG_COLOR, lw=2, label="a blank page")
    ax_h.set_xlabel("score $-\\log p(x)$ [bits/dim]", fontsize=9)
    ax_h.set_ylabel("digits", fontsize=9)
    more_likely = float((normal_scores > blank).mean())
    ax_h.set_title(f"a blank page scores as more normal\nthan {more_likely:.0%} of real digits",
                   fontsize=10)
    ax_h.legend(fontsize=7)
    fig.tight_layout()
    return fig
