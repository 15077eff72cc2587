"""Lesson 02 explorers: how a matrix changes area, and the Jacobian as a local matrix.

* :func:`linear_map_explorer`: sliders for the four entries of a 2 x 2 matrix ``A``; the
  standard Gaussian, a grid and the unit square are pushed through ``x = A z`` and the
  square's image (a parallelogram) has area ``|det A|``.
* :func:`jacobian_explorer`: a nonlinear map ``z = f(x)``; a small circle around a point
  you drag, its true image and its image under the best linear map ``J_f(x0)``, on a
  heat map of ``log|det J_f|``.
* :func:`lesson_figure`: the static summary figure of the lesson.

The example maps (:func:`radial_map`, :func:`coupling_map`, :func:`swirl_map`) are plain
functions of a batch ``(n, 2) -> (n, 2)``, so ``fk.jacobian`` works on them directly.
"""

from __future__ import annotations

import math
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, Polygon
from torch import Tensor

from ..flow import Flow, StandardNormal
from ..jacobian import jacobian, log_abs_det_jacobian
from ..transforms import Linear
from ._base import Explorer, float_slider, make_figure

__all__ = [
    "linear_map_explorer",
    "jacobian_explorer",
    "pushforward_flow",
    "radial_map",
    "radial_map_jacobian",
    "coupling_map",
    "swirl_map",
    "EXAMPLE_MAPS",
    "lesson_figure",
]

_LATENT_PEAK = 1.0 / (2.0 * math.pi)  # the largest value of the 2-D standard normal density
_UNIT_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
_DENSITY_CMAP = "viridis"
_SINGULAR_MESSAGE = (
    "det A = 0: A squashes the plane onto a line (or a point).\n"
    "It has no inverse, and all the probability would sit on a set\n"
    "of zero area: the density would be infinite there.\n"
    "fk.Linear refuses such a matrix with a ValueError."
)


# ----------------------------------------------------------------------------------
# Linear maps
# ----------------------------------------------------------------------------------


def _invertible_linear(matrix: np.ndarray) -> Linear:
    """``fk.Linear(A)``, or ``ValueError`` if ``A`` is singular (up to round-off)."""
    # Slider entries are multiples of 0.05, so a genuinely non-zero determinant is at least
    # 0.0025; anything this small is round-off of an exact zero. (fk.Linear checks too,
    # but in float32 round-off can leave a singular matrix with |det| ~ 1e-9.)
    det = matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]
    scale = max(np.abs(matrix).max(), 1e-12)
    if abs(det) < 1e-6 * scale**2:
        raise ValueError(f"matrix is singular (det A = {det:.2g}): it has no inverse")
    return Linear(torch.as_tensor(matrix, dtype=torch.float32), learnable=False)


def pushforward_flow(matrix) -> Flow:
    """The flow whose generative direction is ``x = A z`` with ``z ~ N(0, I)``.

    Its forward (normalizing) direction is ``z = A^{-1} x``, which is ``fk.Linear(A).inv``,
    so ``flow.log_prob(x) = log N(A^{-1} x; 0, I) - log|det A|``. A singular ``A`` raises
    ``ValueError``.
    """
    linear = _invertible_linear(np.asarray(matrix, dtype=np.float64))
    return Flow([linear.inv], StandardNormal(2))


def _grid_lines(low: float, high: float, step: float, points_per_line: int) -> np.ndarray:
    """Horizontal and vertical grid lines sampled as polylines: ``(n_lines, points, 2)``."""
    ticks = np.arange(low, high + step / 2, step)
    along = np.linspace(low, high, points_per_line)
    lines = []
    for t in ticks:
        lines.append(np.stack([along, np.full_like(along, t)], axis=1))  # horizontal
        lines.append(np.stack([np.full_like(along, t), along], axis=1))  # vertical
    return np.array(lines)


def _broken_line(lines: np.ndarray) -> np.ndarray:
    """Polylines ``(n_lines, points, 2)`` as one array with NaN rows between them.

    A single Line2D drawn from it updates with one ``set_data`` call, far cheaper than
    a collection that rebuilds one path object per line.
    """
    gaps = np.full((lines.shape[0], 1, 2), np.nan)
    return np.concatenate([lines, gaps], axis=1).reshape(-1, 2)


def _density_grid(extent: float, n: int) -> Tensor:
    xs = torch.linspace(-extent, extent, n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


class _LinearPanel:
    """The artists of one ``x = A z`` picture, so the explorer and the static figure share them."""

    def __init__(self, ax, extent: float = 4.0, resolution: int = 140, show_text: bool = True):
        self.ax = ax
        self.resolution = resolution
        self.points = _density_grid(extent, resolution).double().numpy()
        # Straight lines stay straight under a linear map: two points per line suffice.
        self.grid = _broken_line(_grid_lines(-30.0, 30.0, 1.0, 2))  # wide: strong contractions
        box = (-extent, extent, -extent, extent)
        self.image = ax.imshow(np.zeros((resolution, resolution)), origin="lower", extent=box,
                               cmap=_DENSITY_CMAP, vmin=0.0, vmax=_LATENT_PEAK,
                               interpolation="bilinear")
        self.grid_lines, = ax.plot(*self.grid.T, color="white", lw=0.6, alpha=0.35)
        self.parallelogram = Polygon(_UNIT_SQUARE, closed=True, facecolor=(1.0, 0.55, 0.0, 0.35),
                                     edgecolor="orange", linewidth=2.0)
        ax.add_patch(self.parallelogram)
        self.arrows = []
        for color in ("#ff5a5a", "#ffffff"):
            arrow = FancyArrowPatch((0, 0), (1, 0), arrowstyle="-|>", mutation_scale=12,
                                    color=color, linewidth=1.8, shrinkA=0, shrinkB=0)
            ax.add_patch(arrow)
            self.arrows.append(arrow)
        self.area_label = ax.text(0.5, 0.5, "", color="white", fontsize=9, ha="center",
                                  va="center", fontweight="bold")
        self.info = None
        if show_text:
            self.info = ax.text(0.02, 0.98, "", transform=ax.transAxes, va="top", ha="left",
                                fontsize=8, family="monospace",
                                bbox=dict(facecolor="white", alpha=0.85, edgecolor="none"))
        self.message = ax.text(0.5, 0.5, _SINGULAR_MESSAGE, transform=ax.transAxes, ha="center",
                               va="center", fontsize=8.5, color="#b00020", wrap=True,
                               bbox=dict(facecolor="white", alpha=0.95, edgecolor="#b00020"),
                               visible=False, zorder=10)
        # Where the density image is hidden (singular A) the background reads as "zero".
        ax.set_facecolor(plt.get_cmap(_DENSITY_CMAP)(0.0))
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")

    def draw(self, matrix: np.ndarray) -> None:
        a, b, c, d = matrix.ravel()
        det = a * d - b * c
        corners = _UNIT_SQUARE @ matrix.T
        self.parallelogram.set_xy(corners)
        self.grid_lines.set_data(*(self.grid @ matrix.T).T)
        for arrow, column in zip(self.arrows, matrix.T):
            arrow.set_positions((0.0, 0.0), tuple(column))
        centre = corners.mean(axis=0)
        try:
            # fk.Linear refuses a singular A with a ValueError. pushforward_flow(A).log_prob
            # is p_Z(A^-1 x) / |det A|; on a fixed grid the same formula in NumPy is several
            # times faster than going through the flow's input checks (a test checks they agree).
            _invertible_linear(matrix)
            z = self.points @ np.linalg.inv(matrix).T
            density = np.exp(-0.5 * (z * z).sum(axis=1)) * (_LATENT_PEAK / abs(det))
            if not np.isfinite(density).all():  # defensive: never draw NaN
                raise ValueError("density is not finite")
        except (ValueError, np.linalg.LinAlgError):
            singular = True
            self.image.set_visible(False)
            self.message.set_visible(True)
            self.area_label.set_text("area 0")
        else:
            singular = False
            self.image.set_data(density.reshape(self.resolution, self.resolution))
            self.image.set_visible(True)
            self.message.set_visible(False)
            self.area_label.set_text(f"{abs(det):.3g}")
        self.area_label.set_position(tuple(centre))
        if self.info is not None:
            if singular:
                orientation, peak = "lost (det = 0)", "infinite"
            else:
                orientation = "flipped (det < 0)" if det < 0 else "kept"
                peak = f"{_LATENT_PEAK:.3f} / {abs(det):.4g} = {_LATENT_PEAK / abs(det):.3f}"
            self.info.set_text(
                f"A = [[{a:5.2f} {b:5.2f}]\n     [{c:5.2f} {d:5.2f}]]\n"
                f"det A = ad - bc = {det:.4f}\n"
                f"area of the orange image = |det A| = {abs(det):.4f}\n"
                f"orientation {orientation}\n"
                f"peak density {peak}"
            )


def linear_map_explorer(matrix=((1.2, 0.5), (0.3, 0.9)), resolution: int = 140) -> Explorer:
    """Push ``N(0, I)``, a grid and the unit square through ``x = A z``.

    Controls ``a, b, c, d`` are the entries of ``A = [[a, b], [c, d]]``. The right panel is
    ``p_X``, the density of :func:`pushforward_flow` (``fk.Flow([fk.Linear(A).inv], ...)``)
    evaluated in closed form for speed, on the same colour scale as ``p_Z`` on the left.
    The orange parallelogram is the image of the unit square and its area is ``|det A|``.
    A singular ``A`` shows a message instead of a density.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 2):
        raise ValueError(f"matrix must be 2 x 2, got shape {matrix.shape}")
    names = ("a", "b", "c", "d")
    labels = ("a = A[0, 0]", "b = A[0, 1]", "c = A[1, 0]", "d = A[1, 1]")
    controls = {name: float_slider(label, float(v), -2.0, 2.0, 0.05)
                for name, label, v in zip(names, labels, matrix.ravel())}

    fig, (ax_z, ax_x) = make_figure(1, 2, figsize=(8.2, 4.2))
    latent = _LinearPanel(ax_z, resolution=resolution, show_text=False)
    latent.draw(np.eye(2))
    latent.area_label.set_text("1")
    ax_z.set_title("latent z ~ N(0, I): grid, unit square, e1 (red), e2 (white)", fontsize=9)
    data = _LinearPanel(ax_x, resolution=resolution)
    ax_x.set_title("data x = A z: density p_X(x) = p_Z(A^-1 x) / |det A|", fontsize=9)
    fig.tight_layout()

    def update():
        A = np.array([[controls[n].value for n in names[:2]],
                      [controls[n].value for n in names[2:]]], dtype=np.float64)
        data.draw(A)
        fig.canvas.draw_idle()

    artists = {"density": data.image, "parallelogram": data.parallelogram,
               "grid": data.grid_lines, "info": data.info, "message": data.message,
               "area_label": data.area_label, "arrows": data.arrows}
    widget = widgets.VBox([widgets.HBox([controls["a"], controls["b"]]),
                           widgets.HBox([controls["c"], controls["d"]]), fig.canvas])
    # The latent panel never changes: only the data panel's artists are drawn per frame.
    moving = [data.image, data.grid_lines, data.parallelogram, data.arrows, data.area_label,
              data.info, data.message]
    return Explorer(widget, fig, controls, update, artists, moving=moving)


# ----------------------------------------------------------------------------------
# Nonlinear maps
# ----------------------------------------------------------------------------------


def radial_map(x: Tensor, strength: float = 1.0) -> Tensor:
    r"""``z = x (1 + a e^{-|x|^2})``: pushes points near the origin outwards.

    Invertible for ``0 <= a < 2.2`` (the radius grows monotonically). Near the origin it
    stretches area (``det J = (1 + a)^2`` at 0); on a ring around radius 1 it compresses.
    """
    gain = 1.0 + strength * torch.exp(-(x * x).sum(dim=1, keepdim=True))
    return x * gain


def radial_map_jacobian(x: Tensor, strength: float = 1.0) -> Tensor:
    r"""Analytic Jacobian of :func:`radial_map`: :math:`J = g I - 2 a e^{-|x|^2} x x^T`,
    with :math:`g = 1 + a e^{-|x|^2}`. Shape ``(batch, 2, 2)``."""
    bump = strength * torch.exp(-(x * x).sum(dim=1))
    eye = torch.eye(2, dtype=x.dtype)
    outer = x[:, :, None] * x[:, None, :]
    return (1.0 + bump)[:, None, None] * eye - 2.0 * bump[:, None, None] * outer


def coupling_map(x: Tensor) -> Tensor:
    r"""``z1 = x1``, ``z2 = x2 e^{s(x1)} + t(x1)``: an affine coupling with hand-picked
    ``s(x1) = 0.5 sin(1.5 x1)`` and ``t(x1) = 0.25 x1^2 - 0.5``. Triangular Jacobian,
    :math:`\log|\det J| = s(x_1)`."""
    x1, x2 = x[:, 0], x[:, 1]
    log_scale = 0.5 * torch.sin(1.5 * x1)
    shift = 0.25 * x1 * x1 - 0.5
    return torch.stack([x1, x2 * torch.exp(log_scale) + shift], dim=1)


def swirl_map(x: Tensor, twist: float = 1.8) -> Tensor:
    r"""Rotate each point by an angle ``twist * e^{-|x|^2/2}`` that depends on its radius.

    Shapes change a lot, yet :math:`\det J = 1` everywhere: a swirl preserves area."""
    angle = twist * torch.exp(-0.5 * (x * x).sum(dim=1))
    cos, sin = torch.cos(angle), torch.sin(angle)
    x1, x2 = x[:, 0], x[:, 1]
    return torch.stack([cos * x1 - sin * x2, sin * x1 + cos * x2], dim=1)


EXAMPLE_MAPS: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "radial": (radial_map, "radial: z = x (1 + exp(-|x|^2))"),
    "coupling": (coupling_map, "coupling: z2 = x2 exp(s(x1)) + t(x1)"),
    "swirl": (swirl_map, "swirl: rotate by an angle that depends on |x|"),
}


def _shoelace_area(points: np.ndarray) -> float:
    """Area enclosed by a closed polygon (the last vertex joins the first)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


class _MapCache:
    """Per-map precomputation: the mapped grid, the log|det J| heat map, plot limits."""

    def __init__(self, fn, extent: float, resolution: int, grid: np.ndarray):
        self.fn = fn
        points = _density_grid(extent, resolution)
        self.log_det = log_abs_det_jacobian(fn, points).reshape(resolution, resolution).numpy()
        with torch.no_grad():
            flat = torch.as_tensor(grid.reshape(-1, 2), dtype=torch.float32)
            mapped = fn(flat).numpy().reshape(grid.shape)
        self.grid = _broken_line(mapped)
        low, high = mapped.reshape(-1, 2).min(axis=0), mapped.reshape(-1, 2).max(axis=0)
        pad = 0.05 * (high - low)
        self.zlim = (low - pad, high + pad)
        self.clim = max(0.5, float(np.abs(self.log_det).max()))


def jacobian_explorer(map_name: str = "radial", point=(0.8, 0.4), radius: float = 0.4,
                      extent: float = 2.5, resolution: int = 120) -> Explorer:
    """A small circle around ``x0``, its image under ``f``, and its image under ``J_f(x0)``.

    Controls: ``map`` (one of :data:`EXAMPLE_MAPS`), ``x0``, ``y0`` (the point; you can also
    click or drag on the left panel) and ``radius``. The right panel zooms in: both images
    minus ``f(x0)``, divided by the radius. As the radius shrinks the true image becomes
    the ellipse ``J u`` (``u`` on the unit circle), and the area ratio becomes ``|det J|``.
    """
    if map_name not in EXAMPLE_MAPS:
        raise ValueError(f"map_name must be one of {sorted(EXAMPLE_MAPS)}, got {map_name!r}")
    controls = {
        "map": widgets.Dropdown(options=[(label, name) for name, (_, label) in EXAMPLE_MAPS.items()],
                                value=map_name, description="map",
                                layout=widgets.Layout(width="420px")),
        "x0": float_slider("x0 (or drag the point)", float(point[0]), -2.0, 2.0, 0.05),
        "y0": float_slider("y0", float(point[1]), -2.0, 2.0, 0.05),
        "radius": float_slider("circle radius r", float(radius), 0.05, 1.0, 0.05),
    }
    grid = _grid_lines(-extent, extent, 0.5, 80)
    caches = {name: _MapCache(fn, extent, resolution, grid) for name, (fn, _) in EXAMPLE_MAPS.items()}
    angles = np.linspace(0.0, 2.0 * np.pi, 241)[:-1]
    unit_circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def closed(points):  # repeat the first vertex so the curve is drawn closed
        return np.vstack([points, points[:1]])

    fig, (ax_x, ax_z, ax_zoom) = make_figure(1, 3, figsize=(8.2, 3.3))
    box = (-extent, extent, -extent, extent)
    heat = ax_x.imshow(np.zeros((resolution, resolution)), origin="lower", extent=box,
                       cmap="RdBu_r", vmin=-1, vmax=1, interpolation="bilinear")
    colorbar = fig.colorbar(heat, ax=ax_x, fraction=0.046, pad=0.03)
    colorbar.set_label("log|det J_f(x)|", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    _ = ax_x.plot(*_broken_line(grid).T, color="0.4", lw=0.5, alpha=0.5)
    circle_line, = ax_x.plot([], [], color="black", lw=1.8)
    point_marker, = ax_x.plot([], [], "o", color="black", ms=6)
    ax_x.set_xlim(-extent, extent)
    ax_x.set_ylim(-extent, extent)
    ax_x.set_aspect("equal")
    ax_x.set_title("x: circle of radius r around x0\n(red stretches, blue squeezes)", fontsize=8.5)

    mapped_grid, = ax_z.plot([], [], color="0.4", lw=0.5, alpha=0.5)
    image_line, = ax_z.plot([], [], color="black", lw=1.8, label="f(circle)")
    linear_line, = ax_z.plot([], [], color="#d95f02", lw=1.6, ls="--", label="linearised")
    image_point, = ax_z.plot([], [], "o", color="black", ms=5)
    ax_z.set_aspect("equal")
    ax_z.legend(loc="lower right", fontsize=7)
    ax_z.set_title("z = f(x): image vs\nlinearised image", fontsize=8.5)

    zoom_ref, = ax_zoom.plot(*closed(unit_circle).T, color="0.7", lw=1.0, label="unit circle")
    zoom_image, = ax_zoom.plot([], [], color="black", lw=1.8, label="(f(circle) - f(x0)) / r")
    zoom_linear, = ax_zoom.plot([], [], color="#d95f02", lw=1.6, ls="--", label="J u")
    ax_zoom.set_aspect("equal")
    ax_zoom.legend(loc="lower right", fontsize=7)
    ax_zoom.set_title("zoom:\n(image - f(x0)) / r", fontsize=8.5)
    readout = fig.text(0.5, 0.015, "", ha="center", va="bottom", family="monospace", fontsize=7.5)
    for ax in (ax_x, ax_z, ax_zoom):
        ax.tick_params(labelsize=8)
    fig.tight_layout(rect=(0, 0.11, 1, 1))

    state = {"map": None, "hold": False, "dragging": False}

    def show_map(name):
        cache = caches[name]
        heat.set_data(cache.log_det)
        heat.set_clim(-cache.clim, cache.clim)
        mapped_grid.set_data(*cache.grid.T)
        ax_z.set_xlim(cache.zlim[0][0], cache.zlim[1][0])
        ax_z.set_ylim(cache.zlim[0][1], cache.zlim[1][1])
        state["map"] = name

    def update():
        if state["hold"]:
            return
        name = controls["map"].value
        if name != state["map"]:
            show_map(name)
        fn = caches[name].fn
        x0 = np.array([controls["x0"].value, controls["y0"].value])
        r = controls["radius"].value
        circle = x0 + r * unit_circle
        x0_t = torch.tensor(x0[None], dtype=torch.float32)
        with torch.no_grad():
            image = fn(torch.as_tensor(circle, dtype=torch.float32)).numpy()
            fx0 = fn(x0_t)[0].numpy()
        jac = jacobian(fn, x0_t)[0].double().numpy()
        linear = fx0 + (circle - x0) @ jac.T
        circle_line.set_data(*closed(circle).T)
        point_marker.set_data([x0[0]], [x0[1]])
        image_line.set_data(*closed(image).T)
        linear_line.set_data(*closed(linear).T)
        image_point.set_data([fx0[0]], [fx0[1]])
        zoom_true = (image - fx0) / r
        zoom_lin = unit_circle @ jac.T
        zoom_image.set_data(*closed(zoom_true).T)
        zoom_linear.set_data(*closed(zoom_lin).T)
        reach = 1.15 * max(1.0, np.abs(zoom_true).max(), np.abs(zoom_lin).max())
        # In steps of 0.5: the zoom's limits (and so its ticks) change only now and then,
        # and between those changes a frame redraws only the curves.
        reach = 0.5 * math.ceil(reach / 0.5)
        ax_zoom.set_xlim(-reach, reach)
        ax_zoom.set_ylim(-reach, reach)
        det = float(np.linalg.det(jac))
        ratio = _shoelace_area(image) / _shoelace_area(circle)
        readout.set_text(
            f"x0 = ({x0[0]:.2f}, {x0[1]:.2f})   J_f(x0) = [[{jac[0, 0]:.3f}, {jac[0, 1]:.3f}], "
            f"[{jac[1, 0]:.3f}, {jac[1, 1]:.3f}]]   det J = {det:.3f}   "
            f"log|det J| = {math.log(abs(det)):.3f}\n"
            f"area(f(circle)) / area(circle) = {ratio:.3f} at r = {r:.2f}   "
            f"(tends to |det J| = {abs(det):.3f} as r -> 0)"
        )
        state["area_ratio"], state["det"] = ratio, det
        fig.canvas.draw_idle()

    def move_point(event):
        if event.inaxes is not ax_x or event.xdata is None:
            return
        state["hold"] = True  # one redraw for the pair of slider moves, not two
        try:
            controls["x0"].value = float(np.clip(round(event.xdata / 0.05) * 0.05, -2.0, 2.0))
            controls["y0"].value = float(np.clip(round(event.ydata / 0.05) * 0.05, -2.0, 2.0))
        finally:
            state["hold"] = False
        update()

    def on_press(event):
        if event.inaxes is ax_x and event.button == 1:
            state["dragging"] = True
            move_point(event)

    def on_motion(event):
        if state["dragging"]:
            move_point(event)

    def on_release(event):
        state["dragging"] = False

    fig.canvas.mpl_connect("button_press_event", on_press)
    fig.canvas.mpl_connect("motion_notify_event", on_motion)
    fig.canvas.mpl_connect("button_release_event", on_release)

    artists = {"heat": heat, "circle": circle_line, "point": point_marker, "image": image_line,
               "linear": linear_line, "zoom_image": zoom_image, "zoom_linear": zoom_linear,
               "mapped_grid": mapped_grid, "readout": readout, "state": state}
    widget = widgets.VBox([controls["map"],
                           widgets.HBox([controls["x0"], controls["y0"]]),
                           controls["radius"], fig.canvas])
    # The heat map, the grids and every axis stay put while a slider moves.
    moving = [circle_line, point_marker, image_line, linear_line, image_point, zoom_image,
              zoom_linear, readout]
    return Explorer(widget, fig, controls, update, artists, moving=moving)


# ----------------------------------------------------------------------------------
# The lesson's static figure
# ----------------------------------------------------------------------------------


def _small_autoregressive_jacobian(dim: int = 6) -> np.ndarray:
    """Jacobian of a tiny autoregressive map (shift and log-scale from x_<i only)."""
    gen = torch.Generator().manual_seed(2)
    w_shift = torch.randn(dim, dim, generator=gen).tril(-1) * 0.6
    w_scale = torch.randn(dim, dim, generator=gen).tril(-1) * 0.4

    def autoregressive(x):
        shift, log_scale = torch.tanh(x @ w_shift.T), torch.tanh(x @ w_scale.T)
        return (x - shift) * torch.exp(-log_scale)

    x = torch.randn(1, dim, generator=gen)
    return jacobian(autoregressive, x)[0].numpy()


def lesson_figure() -> plt.Figure:
    """Four panels: a linear map's area, the log-det of a nonlinear map, its local
    linearisation, and the triangular Jacobian of an autoregressive map."""
    fig, axes = make_figure(2, 2, figsize=(8.2, 7.6))
    axes = axes.ravel()

    panel = _LinearPanel(axes[0], resolution=120, show_text=False)
    panel.draw(np.array([[1.6, 0.7], [0.4, 1.3]]))
    axes[0].set_title("x = A z: the unit square becomes a\nparallelogram of area |det A|", fontsize=9)

    extent, x0, r = 2.5, np.array([0.7, 0.5]), 0.45
    cache = _MapCache(radial_map, extent, 120, _grid_lines(-extent, extent, 0.5, 80))
    lim = cache.clim
    im = axes[1].imshow(cache.log_det, origin="lower", extent=(-extent, extent, -extent, extent),
                        cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.03)
    angles = np.linspace(0, 2 * np.pi, 200)
    circle = x0 + r * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    axes[1].plot(*circle.T, color="black", lw=1.6)
    axes[1].plot(*x0, "o", color="black", ms=4)
    axes[1].set_title("log|det J| of the radial map\n(red stretches, blue squeezes)", fontsize=9)
    axes[1].set_aspect("equal")

    axes[2].plot(*cache.grid.T, color="0.6", lw=0.5)
    x0_t = torch.tensor(x0[None], dtype=torch.float32)
    with torch.no_grad():
        image = radial_map(torch.as_tensor(circle, dtype=torch.float32)).numpy()
        fx0 = radial_map(x0_t)[0].numpy()
    jac = jacobian(radial_map, x0_t)[0].numpy()
    axes[2].plot(*image.T, color="black", lw=1.6, label="f(circle)")
    axes[2].plot(*(fx0 + (circle - x0) @ jac.T).T, color="#d95f02", ls="--", lw=1.6,
                 label="f(x0) + J (x - x0)")
    axes[2].set_xlim(cache.zlim[0][0], cache.zlim[1][0])
    axes[2].set_ylim(cache.zlim[0][1], cache.zlim[1][1])
    axes[2].set_aspect("equal")
    axes[2].legend(loc="lower right", fontsize=7)
    axes[2].set_title("the Jacobian is the best linear\napproximation near x0", fontsize=9)

    ar = _small_autoregressive_jacobian()
    m = np.abs(ar).max()
    axes[3].imshow(ar, cmap="RdBu_r", vmin=-m, vmax=m)
    for (i, j), value in np.ndenumerate(ar):
        axes[3].text(j, i, f"{value:.2f}" if value != 0 else "0", ha="center", va="center",
                     fontsize=7.5, color="0.5" if value == 0 else "black")
    axes[3].set_xticks(range(ar.shape[0]))
    axes[3].set_yticks(range(ar.shape[0]))
    axes[3].set_xlabel("input x_j")
    axes[3].set_ylabel("output z_i")
    axes[3].set_title("autoregressive map: triangular J,\nlog|det J| = sum of log|diagonal|",
                      fontsize=9)
    fig.tight_layout()
    return fig
