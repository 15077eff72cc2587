"""Explorers for lesson 03: coupling layers.

* :func:`coupling_explorer`: four sliders set the scale and shift of a 2-D affine coupling
  through a tiny parametric conditioner (:class:`ToyConditioner`); a fifth stacks ``K``
  couplings with alternating masks. A latent grid and the standard Gaussian are carried
  into data space, and the marginals show which coordinate a single coupling leaves alone.
* :func:`jacobian_explorer`: the Jacobian of a ``D``-dimensional coupling, entry by entry,
  in the natural order or with the kept coordinates first (then it is block triangular).
* :func:`lesson_figure`: the lesson's static summary figure.
"""

from __future__ import annotations

import functools
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection
from torch import Tensor, nn

from ..flow import Flow, StandardNormal
from ..jacobian import jacobian
from ..plotting import grid
from ..transforms import AffineCoupling, alternating_mask, channel_mask, checkerboard_mask
from ._base import Explorer, float_slider, held_top, int_slider, make_figure
from ._base import single_thread as _single_thread

__all__ = [
    "ToyConditioner",
    "toy_coupling_flow",
    "coupling_explorer",
    "jacobian_explorer",
    "channel_strip",
    "lesson_figure",
]


class ToyConditioner(nn.Module):
    r"""A conditioner for 2-D couplings with four knobs instead of a network.

    It reads the one coordinate the mask keeps, :math:`u`, and returns the raw log-scale
    and the shift for the other coordinate:

    .. math:: s(u) = a \sin(b u), \qquad t(u) = c\,u^2 + d

    The output has the layout :class:`~flowkit.AffineCoupling` expects, ``(batch, 4)``:
    two raw log-scales, then two shifts (the coupling zeroes the kept coordinate's).
    Neither :math:`s` nor :math:`t` is invertible, and the coupling does not need them to be.
    """

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 0.0, d: float = 0.0):
        super().__init__()
        self.a, self.b, self.c, self.d = float(a), float(b), float(c), float(d)

    def forward(self, kept: Tensor) -> Tensor:
        if kept.dim() != 2 or kept.shape[1] != 2:
            raise ValueError(f"ToyConditioner is for 2-D couplings, got input of shape {tuple(kept.shape)}")
        # The mask zeroes the other coordinate, so the sum is the kept one.
        u = kept[:, :1] + kept[:, 1:]
        s = self.a * torch.sin(self.b * u)
        t = self.c * u * u + self.d
        return torch.cat([s, s, t, t], dim=1)

    def extra_repr(self) -> str:
        return f"a={self.a:g}, b={self.b:g}, c={self.c:g}, d={self.d:g}"


def toy_coupling_flow(num_layers: int, conditioner: nn.Module, scale_limit: float = 3.0) -> Flow:
    """``num_layers`` affine couplings sharing one conditioner, masks alternating.

    Layer 1 keeps :math:`x_1` and transforms :math:`x_2`; layer 2 keeps :math:`x_2`, and so on.
    """
    layers = [AffineCoupling(alternating_mask(2, k % 2), conditioner, scale_limit=scale_limit)
              for k in range(num_layers)]
    return Flow(layers, StandardNormal(2))


def _single_threaded(update):
    @functools.wraps(update)
    def wrapper():
        with _single_thread():
            update()
    return wrapper


def _grid_lines(low: float, high: float, num_lines: int, points_per_line: int) -> tuple[Tensor, Tensor]:
    """Vertical (``z1`` fixed) and horizontal (``z2`` fixed) lines, each ``(L * P, 2)``."""
    levels = torch.linspace(low, high, num_lines, dtype=torch.float64)
    along = torch.linspace(low, high, points_per_line, dtype=torch.float64)
    fixed = levels.repeat_interleave(points_per_line)
    moving = along.repeat(num_lines)
    vertical = torch.stack([fixed, moving], dim=1)
    horizontal = torch.stack([moving, fixed], dim=1)
    return vertical, horizontal


def _segments(points: Tensor, num_lines: int) -> np.ndarray:
    return points.reshape(num_lines, -1, 2).numpy()


_VERTICAL_COLOR = "#ffffff"
_HORIZONTAL_COLOR = "#ff9f1c"
_LIMIT = 4.0


class _CouplingScene:
    """Everything the coupling explorer and the lesson figure draw, precomputed once."""

    def __init__(self, n: int = 81, num_lines: int = 11, points_per_line: int = 121):
        self.n = n
        xs, ys, points = grid((-_LIMIT, _LIMIT), (-_LIMIT, _LIMIT), n)
        self.xs = xs.double().numpy()
        self.points = points.double()
        self.cell = (2 * _LIMIT / (n - 1)) ** 2
        self.num_lines = num_lines
        self.vertical, self.horizontal = _grid_lines(-2.5, 2.5, num_lines, points_per_line)
        self.lines = torch.cat([self.vertical, self.horizontal])
        self.normal_1d = np.exp(-0.5 * self.xs ** 2) / math.sqrt(2 * math.pi)
        self.u = torch.linspace(-_LIMIT, _LIMIT, 201, dtype=torch.float64).unsqueeze(1)

    def compute(self, flow: Flow) -> dict:
        """Density on the grid, the carried lines and the marginals, all finite or an error."""
        with torch.no_grad():
            log_p = flow.log_prob(self.points)
            density = log_p.exp().reshape(self.n, self.n).numpy()
            # One inverse pass for all lines: half the per-call overhead.
            carried = flow.inverse(self.lines)[0]
            vertical, horizontal = carried.chunk(2, dim=0)
        step = 2 * _LIMIT / (self.n - 1)
        return {
            "density": density,
            "vertical": _segments(vertical, self.num_lines),
            "horizontal": _segments(horizontal, self.num_lines),
            "marginal_1": density.sum(axis=0) * step,  # rows are x2, columns x1
            "marginal_2": density.sum(axis=1) * step,
            "mass": float(density.sum() * self.cell),
        }

    def draw_density(self, ax, title: str):
        image = ax.imshow(np.zeros((self.n, self.n)), origin="lower", cmap="viridis",
                          extent=(-_LIMIT, _LIMIT, -_LIMIT, _LIMIT), interpolation="bilinear")
        vertical = LineCollection([], colors=_VERTICAL_COLOR, linewidths=0.8, alpha=0.8)
        horizontal = LineCollection([], colors=_HORIZONTAL_COLOR, linewidths=0.8, alpha=0.9)
        ax.add_collection(vertical)
        ax.add_collection(horizontal)
        ax.set_xlim(-_LIMIT, _LIMIT)
        ax.set_ylim(-_LIMIT, _LIMIT)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        return image, vertical, horizontal

    @staticmethod
    def fill_density(artists, result: dict) -> None:
        image, vertical, horizontal = artists
        image.set_data(result["density"])
        image.set_clim(0.0, max(float(result["density"].max()), 1e-12))
        vertical.set_segments(result["vertical"])
        horizontal.set_segments(result["horizontal"])


def _scale_summary(scene: _CouplingScene, conditioner: ToyConditioner, scale_limit: float) -> str:
    raw = conditioner.a * torch.sin(conditioner.b * scene.u)
    log_scale = scale_limit * torch.tanh(raw / scale_limit)
    low, high = float(log_scale.min()), float(log_scale.max())
    text = (f"for kept values in the window: log-scale $s$ in [{low:.2f}, {high:.2f}], "
            f"scale $e^s$ in [{math.exp(low):.2f}, {math.exp(high):.2f}]")
    raw_max = float(raw.abs().max())
    if raw_max > 0.5 * scale_limit:
        text += (f"; raw $|s|$ up to {raw_max:.2f} is soft-clamped "
                 f"to {max(abs(low), abs(high)):.2f} (limit {scale_limit:g})")
    return text


def coupling_explorer(num_layers: int = 1, a: float = 0.6, b: float = 1.5, c: float = 0.15,
                      d: float = 0.0, max_layers: int = 6, scale_limit: float = 3.0) -> Explorer:
    """Drag the scale and shift of a 2-D affine coupling; stack ``K`` with alternating masks.

    Left: the latent space, :math:`z \\sim \\mathcal N(0, I)` with a regular grid. Middle:
    the data space, the density :math:`p_X(x) = p_Z(f(x))\\,|\\det \\partial f/\\partial x|`
    and the grid carried there by the generative direction :math:`x = f^{-1}(z)`.
    Right: both marginals of :math:`p_X` against :math:`\\mathcal N(0, 1)`.
    """
    scene = _CouplingScene()
    conditioner = ToyConditioner(a, b, c, d)
    flows = {k: toy_coupling_flow(k, conditioner, scale_limit).double()
             for k in range(1, max_layers + 1)}
    identity = StandardNormal(2).double()

    controls = {
        "a": float_slider("scale size a", a, -3.0, 3.0, 0.05),
        "b": float_slider("scale frequency b", b, 0.0, 3.0, 0.05),
        "c": float_slider("shift curvature c", c, -1.0, 1.0, 0.05),
        "d": float_slider("shift offset d", d, -2.0, 2.0, 0.05),
        "layers": int_slider("couplings K", num_layers, 1, max_layers),
    }

    fig, axes = make_figure(1, 3, figsize=(8.2, 3.7), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    latent_artists = scene.draw_density(axes[0], "latent $z \\sim \\mathcal{N}(0, I)$")
    base = {
        "density": identity.log_prob(scene.points).exp().reshape(scene.n, scene.n).numpy(),
        "vertical": _segments(scene.vertical, scene.num_lines),
        "horizontal": _segments(scene.horizontal, scene.num_lines),
    }
    scene.fill_density(latent_artists, base)
    axes[0].set_xlabel("$z_1$")
    axes[0].set_ylabel("$z_2$")
    data_artists = scene.draw_density(axes[1], "data $x = f^{-1}(z)$, density $p_X(x)$")
    axes[1].set_xlabel("$x_1$")
    axes[1].set_ylabel("$x_2$")

    ax_m = axes[2]
    ax_m.plot(scene.xs, scene.normal_1d, "k--", lw=1.2, label="$\\mathcal{N}(0, 1)$")
    marginal_1, = ax_m.plot(scene.xs, scene.normal_1d, color="C0", lw=2.2, label="$p(x_1)$")
    marginal_2, = ax_m.plot(scene.xs, scene.normal_1d, color="C1", lw=1.6, label="$p(x_2)$")
    ax_m.set_xlim(-_LIMIT, _LIMIT)
    ax_m.set_title("marginals of $p_X$", fontsize=10)
    ax_m.legend(loc="upper right", fontsize=8, frameon=False)
    status = fig.text(0.01, 0.015, "", fontsize=7.5, va="bottom", ha="left", family="sans-serif")
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.92, bottom=0.27, wspace=0.3)

    held = {"top": None}

    @_single_threaded
    def update():
        conditioner.a = controls["a"].value
        conditioner.b = controls["b"].value
        conditioner.c = controls["c"].value
        conditioner.d = controls["d"].value
        k = controls["layers"].value
        try:
            result = scene.compute(flows[k])
            if not np.isfinite(result["density"]).all():
                raise ValueError("the density is not finite on the grid")
        except ValueError as err:
            data_artists[0].set_data(np.zeros((scene.n, scene.n)))
            data_artists[1].set_segments([])
            data_artists[2].set_segments([])
            status.set_text(f"Cannot draw these settings: {err}. Reduce c, d or K.")
            status.set_color("crimson")
            fig.canvas.draw_idle()
            return
        scene.fill_density(data_artists, result)
        marginal_1.set_ydata(result["marginal_1"])
        marginal_2.set_ydata(result["marginal_2"])
        need = 1.1 * max(float(result["marginal_1"].max()), float(result["marginal_2"].max()), 0.4)
        # Held while the marginals fit (see held_top): a new limit redraws the whole figure.
        held["top"] = held_top(held["top"], need, 1.6)
        ax_m.set_ylim(0.0, held["top"])
        if k == 1:
            first = ("K = 1: the coupling keeps $x_1 = z_1$ (vertical lines stay put), so $p(x_1)$ "
                     "is still $\\mathcal{N}(0,1)$: one coupling cannot touch $x_1$.")
        else:
            first = (f"K = {k}: the masks alternate (keep $x_1$, keep $x_2$, ...), "
                     "so both coordinates are transformed.")
        mass = result["mass"]
        mass_text = f"mass inside the window: {mass:.3f}"
        color = "black"
        if mass < 0.95:
            mass_text += " (the rest has been pushed outside the window: the density still integrates to 1)"
            color = "darkorange"
        status.set_text("\n".join([first, _scale_summary(scene, conditioner, scale_limit), mass_text]))
        status.set_color(color)
        fig.canvas.draw_idle()

    box = widgets.VBox([widgets.HBox([widgets.VBox([controls["a"], controls["b"]]),
                                      widgets.VBox([controls["c"], controls["d"]])]),
                        controls["layers"], fig.canvas])
    artists = {"latent": latent_artists, "density": data_artists[0],
               "vertical": data_artists[1], "horizontal": data_artists[2],
               "marginal_1": marginal_1, "marginal_2": marginal_2, "status": status}
    # The latent panel never changes; the marginals' y-limit changes now and then.
    moving = [*data_artists, marginal_1, marginal_2, status]
    explorer = Explorer(box, fig, controls, update, artists, moving=moving)
    explorer.conditioner = conditioner
    explorer.flows = flows
    return explorer


# ----------------------------------------------------------------------------------
# Jacobian explorer
# ----------------------------------------------------------------------------------

_MASKS = {
    "first half kept": lambda dim: (torch.arange(dim) < dim // 2).double(),
    "alternating": lambda dim: alternating_mask(dim).double(),
}


def _random_coupling(mask: Tensor, seed: int) -> AffineCoupling:
    coupling = AffineCoupling(mask, hidden=16).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in coupling.conditioner.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.4)
    return coupling


def _reorder(mask: Tensor) -> Tensor:
    kept = torch.nonzero(mask > 0).flatten()
    free = torch.nonzero(mask == 0).flatten()
    return torch.cat([kept, free])


def jacobian_explorer(dim: int = 4, max_dim: int = 8, num_points: int = 10) -> Explorer:
    """The Jacobian :math:`\\partial z/\\partial x` of a random ``dim``-D affine coupling.

    Entries are shown as colours and numbers. Kept coordinates are marked ``*``. With the
    kept coordinates listed first the matrix is block lower triangular: an identity block,
    a zero block, anything below, and a diagonal block :math:`\\mathrm{diag}(e^{s})`.
    """
    couplings = {(d, name): _random_coupling(make(d), seed=10 * d + i)
                 for d in range(2, max_dim + 1) for i, (name, make) in enumerate(_MASKS.items())}
    g = torch.Generator().manual_seed(3)
    points = {d: torch.randn(num_points, d, generator=g, dtype=torch.float64)
              for d in range(2, max_dim + 1)}

    controls = {
        "dim": int_slider("dimension D", dim, 2, max_dim),
        "mask": widgets.Dropdown(options=list(_MASKS), value="first half kept", description="mask",
                                 style={"description_width": "initial"}),
        "order": widgets.ToggleButtons(options=["natural order", "kept first"], value="natural order",
                                       description="order", style={"description_width": "initial"}),
        "point": int_slider("point x", 0, 0, num_points - 1),
    }
    fig, ax = make_figure(figsize=(5.6, 5.4))
    image = ax.imshow(np.zeros((dim, dim)), cmap="RdBu_r", vmin=-1, vmax=1)
    texts = [[ax.text(j, i, "", ha="center", va="center", fontsize=8) for j in range(max_dim)]
             for i in range(max_dim)]
    ax.set_xlabel("input $x_j$  (* = kept by the mask)")
    ax.set_ylabel("output $z_i$")
    title = ax.set_title("", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.86, bottom=0.12)

    @_single_threaded
    def update():
        d = controls["dim"].value
        coupling = couplings[(d, controls["mask"].value)]
        x = points[d][controls["point"].value: controls["point"].value + 1]
        jac = jacobian(coupling.forward, x)[0]
        with torch.no_grad():
            _, log_det = coupling(x)
        auto = float(torch.linalg.slogdet(jac).logabsdet)
        order = torch.arange(d)
        if controls["order"].value == "kept first":
            order = _reorder(coupling.mask)
        jac = jac[order][:, order].numpy()
        labels = [f"{i + 1}{'*' if coupling.mask[i] > 0 else ''}" for i in order.tolist()]
        image.set_data(jac)
        bound = max(float(np.abs(jac).max()), 1e-12)
        image.set_clim(-bound, bound)
        image.set_extent((-0.5, d - 0.5, d - 0.5, -0.5))
        ax.set_xticks(range(d), labels)
        ax.set_yticks(range(d), labels)
        size = 9 if d <= 5 else 7
        for i in range(max_dim):
            for j in range(max_dim):
                text = texts[i][j]
                if i < d and j < d:
                    value = jac[i, j]
                    text.set_text("0" if value == 0 else f"{value:.2f}")
                    text.set_fontsize(size)
                    text.set_color("white" if abs(value) > 0.6 * bound else "black")
                    text.set_visible(True)
                else:
                    text.set_visible(False)
        zeros = int((jac == 0).sum())
        title.set_text(f"exact zeros: {zeros} of {d * d} entries\n"
                       f"log|det J|: slogdet {auto:.4f}, sum of log-scales {float(log_det):.4f}")
        fig.canvas.draw_idle()

    box = widgets.VBox([controls["dim"], controls["mask"], controls["order"], controls["point"], fig.canvas])
    # The point slider changes only the matrix, its numbers and the title; a new dimension
    # changes the axes' limits, which redraws everything.
    moving = [image, texts, title]
    return Explorer(box, fig, controls, update, {"image": image, "title": title, "texts": texts},
                    moving=moving)


# ----------------------------------------------------------------------------------
# Static figure
# ----------------------------------------------------------------------------------


def _annotate_matrix(ax, matrix: np.ndarray, texts=None, fontsize: int = 9) -> None:
    bound = max(float(np.abs(matrix).max()), 1e-12)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            ax.text(j, i, "0" if value == 0 else f"{value:.2f}", ha="center", va="center",
                    fontsize=fontsize, color="white" if abs(value) > 0.6 * bound else "black")


def channel_strip(mask: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` mask as one image: channels side by side, NaN gaps between them."""
    c, h, w = mask.shape
    strip = np.full((h, c * (w + 1) - 1), np.nan)
    for k in range(c):
        strip[:, k * (w + 1): k * (w + 1) + w] = mask[k].numpy()
    return strip


def lesson_figure():
    """One coupling, three couplings, a coupling's triangular Jacobian, and image masks."""
    scene = _CouplingScene()
    conditioner = ToyConditioner(a=0.6, b=1.5, c=0.15, d=0.0)
    fig, axes = make_figure(2, 2, figsize=(8.2, 7.8))
    axes = axes.ravel()
    for ax, k in zip(axes[:2], (1, 3)):
        artists = scene.draw_density(ax, f"{k} coupling{'s' if k > 1 else ''}: "
                                         "$p_X$ and the carried grid")
        scene.fill_density(artists, scene.compute(toy_coupling_flow(k, conditioner).double()))
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    label_box = {"facecolor": "black", "alpha": 0.6, "edgecolor": "none"}
    axes[0].text(0.03, 0.03, "$x_1$ untouched: vertical lines stay put", color="white",
                 transform=axes[0].transAxes, fontsize=8, bbox=label_box)
    axes[1].text(0.03, 0.03, "masks alternate: both coordinates move", color="white",
                 transform=axes[1].transAxes, fontsize=8, bbox=label_box)

    coupling = _random_coupling(_MASKS["first half kept"](4), seed=1)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    jac = jacobian(coupling.forward, x)[0].numpy()
    bound = float(np.abs(jac).max())
    axes[2].imshow(jac, cmap="RdBu_r", vmin=-bound, vmax=bound)
    _annotate_matrix(axes[2], jac)
    labels = ["1*", "2*", "3", "4"]
    axes[2].set_xticks(range(4), labels)
    axes[2].set_yticks(range(4), labels)
    axes[2].set_xlabel("input $x_j$ (* = kept)")
    axes[2].set_ylabel("output $z_i$")
    axes[2].set_title("Jacobian $\\partial z / \\partial x$ is triangular", fontsize=10)

    ax = axes[3]
    ax.set_axis_off()
    ax.set_title("image masks (dark = 1, kept; light = 0)", fontsize=10)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    panels = [(checkerboard_mask(8, 8, 0)[0].numpy(), "checkerboard, parity 0", [0.0, 0.5, 0.47, 0.42]),
              (checkerboard_mask(8, 8, 1)[0].numpy(), "checkerboard, parity 1", [0.53, 0.5, 0.47, 0.42]),
              (channel_strip(channel_mask(4, 4, 4)), "channel mask: 4 channels of 4x4", [0.0, 0.02, 1.0, 0.36])]
    for image, name, box in panels:
        inset = ax.inset_axes(box)
        inset.imshow(image, cmap=cmap, vmin=-0.35, vmax=1.3)
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_frame_on(False)
        inset.set_title(name, fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.07, wspace=0.3, hspace=0.3)
    return fig
