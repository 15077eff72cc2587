"""Lesson 06 explorers and figures: autoregressive flows.

* :func:`chain_rule_figure` -- the exact two-moons density split into a marginal and
  conditionals: the factorisation an autoregressive flow learns;
* :func:`sampling_explorer` -- slide through the ``D`` sequential passes of a MAF layer's
  inverse and watch a digit appear one pixel per pass;
* :func:`lesson_figure` -- the summary figure: a triangular Jacobian, the cost of
  sampling, and a MAF fitted to two moons.

Everything a slider shows is computed once, up front; moving a slider only swaps arrays.
"""

from __future__ import annotations

import math
from typing import Sequence

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
from ._base import Explorer, int_slider, make_figure

__all__ = ["chain_rule_figure", "sampling_explorer", "lesson_figure"]

XLIM = (-1.5, 2.5)
YLIM = (-1.0, 1.5)
_FLAG_COLOR = "#d62728"


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
        fig, (ax_j, ax_m, ax_c) = plt.subplots(1, 3, figsize=(8.2, 2.9))
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
    ax_c.legend(fontsize=7)
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

    # Two samples a row: four panels go on two rows, and the figure stays narrow.
    columns = min(num_samples, 2)
    rows_of_panels = math.ceil(num_samples / columns)
    fig, axes = make_figure(rows_of_panels, columns,
                            figsize=(4.6, 2.1 * rows_of_panels + 0.8), squeeze=False)
    axes = axes.flatten()
    for spare in axes[num_samples:]:
        spare.set_visible(False)
    axes = axes[:num_samples]
    cmap = plt.get_cmap("gray_r").with_extremes(bad="#f6d7a7")  # bad = not generated yet
    images, cursors = [], []
    for ax in axes:
        images.append(ax.imshow(np.ma.masked_all(image_shape), cmap=cmap, vmin=0.0, vmax=vmax))
        cursor = Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor=_FLAG_COLOR, lw=2)
        ax.add_patch(cursor)
        cursors.append(cursor)
        ax.set_xticks([])
        ax.set_yticks([])
    title = fig.suptitle("", fontsize=9)
    fig.tight_layout()
    fig.subplots_adjust(top=1.0 - 0.75 / (2.1 * rows_of_panels + 0.8))

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
        title.set_text(f"pass {k} of {dim}: {k} pixels final\n{nxt}\n"
                       f"conditioner calls so far: {layers_before} x {dim} in earlier layers "
                       f"+ {k} in this one")
        fig.canvas.draw_idle()

    return Explorer(widgets.VBox([passes, fig.canvas]), fig, {"passes": passes}, update,
                    {"images": images, "cursors": cursors, "title": title})


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
        fig, (ax_j, ax_c, ax_d) = plt.subplots(1, 3, figsize=(8.2, 3.0))
    above = np.triu(np.ones_like(jac, dtype=bool), k=1)
    ax_j.imshow(np.where(above, np.nan, jac), cmap="viridis")  # blank = structurally zero
    ax_j.set_title(r"MAF layer: $|\partial z_i / \partial x_j|$" + "\nis triangular", fontsize=9)
    ax_j.set_xlabel("input $j$")
    ax_j.set_ylabel("output $i$")
    dims = np.array([2, 8, 16, 32, 64, 128])
    layers = 5
    ax_c.plot(dims, layers * dims, "s-", color="C1", label="MAF sample: D per layer")
    ax_c.plot(dims, np.full(dims.shape, layers), "o-", color="C0",
              label="MAF density, RealNVP:\n1 per layer")
    ax_c.set_xscale("log", base=2)
    ax_c.set_yscale("log")
    ax_c.set_xlabel("dimension D")
    ax_c.set_ylabel("network passes (5 layers)")
    ax_c.set_title("the price of\nautoregressive sampling", fontsize=9)
    ax_c.legend(fontsize=7, loc="upper left")
    ax_d.imshow(density.numpy(), origin="lower", extent=(*XLIM, *YLIM), aspect="auto", cmap="viridis")
    ax_d.set_title(f"MAF (8 layers) fitted to\ntwo moons, {steps} steps", fontsize=9)
    ax_d.set_xticks([])
    ax_d.set_yticks([])
    fig.tight_layout()
    return fig
