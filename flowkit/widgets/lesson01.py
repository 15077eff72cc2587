"""Lesson 01 explorers: the change-of-variables formula in one dimension.

* :func:`density_explorer`: pick a map ``y = f(x)`` and drag its parameters; the
  histogram of pushed samples and the formula density stay on top of each other, and
  the numerically integrated mass stays at 1.000.
* :func:`rectangles_explorer`: a strip ``[x, x + dx]`` and its image ``[y, y + dy]``
  hold the same probability, so the density is divided by ``|dy/dx|``.
* :func:`composition_explorer`: ``K`` maps in a row; the log-density is the base
  log-density plus one log-derivative term per map.
* :func:`lesson_figure`: the lesson's static summary figure.

Throughout, ``x ~ N(0, 1)`` is the Gaussian (latent) variable and ``y = f(x)`` the data.
A flowkit :class:`~flowkit.Flow` runs data -> latent in its ``forward``, so the Flow
whose samples are ``y`` holds ``f^{-1}``: for ``y = exp(x)`` that is ``fk.Log()``.
"""

from __future__ import annotations

import functools
import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.patches import Polygon, Rectangle
from scipy.integrate import simpson

from ..flow import Flow, StandardNormal
from ..transforms import Affine, Log, SinhArcsinh, Tanh
from ._base import Explorer, float_slider, held_range, held_top, int_slider, make_figure, single_thread

__all__ = [
    "MAPS",
    "map_flow",
    "density_explorer",
    "rectangles_explorer",
    "composition_explorer",
    "composition_layers",
    "composition_flow",
    "log_prob_terms",
    "strip_masses",
    "lesson_figure",
]

# Below this a scale counts as zero: a slider stepping through 0 can land on 1e-17.
_ZERO = 1e-9
_SAMPLE_COLOR = "#9ecae1"
_FORMULA_COLOR = "#d62728"
_BASE_COLOR = "#3182bd"
_SAS_COLOR = "#fd8d3c"
_AFFINE_COLOR = "#74c476"

# Each map: its formula, its domain for y, and its two parameters as
# (control name, label, default, min, max, step).
MAPS: dict[str, dict] = {
    "affine": {
        "formula": "y = a·x + b",
        "live": "y = {p:.2f}·x + {q:.2f}",
        "domain": (-math.inf, math.inf),
        "params": [("affine_a", "a (scale)", 1.5, -3.0, 3.0, 0.05),
                   ("affine_b", "b (shift)", 0.5, -2.0, 2.0, 0.05)],
    },
    "exp": {
        "formula": "y = exp(σ·x + μ)",
        "live": "y = exp({p:.2f}·x + {q:.2f})",
        "domain": (0.0, math.inf),
        "params": [("exp_sigma", "σ (scale)", 0.5, -1.5, 1.5, 0.05),
                   ("exp_mu", "μ (shift)", 0.0, -1.0, 1.0, 0.05)],
    },
    "tanh": {
        "formula": "y = tanh(g·x + c)",
        "live": "y = tanh({p:.2f}·x + {q:.2f})",
        "domain": (-1.0, 1.0),
        "params": [("tanh_gain", "g (gain)", 1.0, -3.0, 3.0, 0.05),
                   ("tanh_shift", "c (shift)", 0.0, -2.0, 2.0, 0.05)],
    },
    "sinh-arcsinh": {
        "formula": "y = sinh(b·asinh(x) − a)",
        "live": "y = sinh({q:.2f}·asinh(x) − {p:.2f})",
        "domain": (-math.inf, math.inf),
        "params": [("sas_skew", "a (skew)", 0.5, -2.0, 2.0, 0.05),
                   ("sas_tailweight", "b (tailweight)", 0.8, 0.0, 2.5, 0.05)],
    },
}


def map_flow(name: str, p: float, q: float) -> Flow:
    """The Flow (float64) whose samples are ``y = f(x)``, ``x ~ N(0, 1)``, for one of :data:`MAPS`.

    Its forward runs ``f^{-1}`` (data -> latent), so the generative maps appear inverted
    (``.inv``) and in reverse order. A parameter that makes ``f`` non-invertible raises a
    ``ValueError`` that explains what went wrong, in this lesson's symbols.
    """
    if name == "affine":
        if abs(p) < _ZERO:
            raise ValueError(f"a = 0 sends every x to the single point y = {q:.2f}: "
                             "the map has no inverse, so y has no density")
        transforms = [Affine(p, q).inv]
    elif name == "exp":
        if abs(p) < _ZERO:
            raise ValueError(f"σ = 0 sends every x to the single point y = {math.exp(q):.2f}: "
                             "the map has no inverse, so y has no density")
        transforms = [Log(), Affine(p, q).inv]
    elif name == "tanh":
        if abs(p) < _ZERO:
            raise ValueError(f"g = 0 sends every x to the single point y = {math.tanh(q):.2f}: "
                             "the map has no inverse, so y has no density")
        transforms = [Tanh().inv, Affine(p, q).inv]
    elif name == "sinh-arcsinh":
        if q < _ZERO:
            raise ValueError("b = 0 sends every x to the single point y = sinh(−a): "
                             "the map has no inverse, so y has no density")
        transforms = [SinhArcsinh(p, q, learnable=False).inv]
    else:
        raise ValueError(f"unknown map {name!r}; choose one of {sorted(MAPS)}")
    return Flow(transforms, StandardNormal(1)).double()


def _generate(flow: Flow, x: torch.Tensor) -> np.ndarray:
    """``y = f(x)`` for a column of latents: the flow's generative direction."""
    with torch.no_grad():
        return flow.inverse(x)[0][:, 0].numpy()


def _density(flow: Flow, y: np.ndarray, domain=(-math.inf, math.inf)) -> np.ndarray:
    """``p_Y(y)`` by the flow's formula; zero outside the open domain."""
    out = np.zeros_like(y)
    inside = (y > domain[0]) & (y < domain[1])
    if inside.any():
        with torch.no_grad():
            out[inside] = flow.log_prob(torch.from_numpy(y[inside])[:, None]).exp().numpy()
    return out


def _single_threaded(fn):
    """Build on one torch thread: small arrays, where threads cost more than they save."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_thread():
            return fn(*args, **kwargs)
    return wrapper


def _normal_pdf(x):
    return np.exp(-0.5 * np.asarray(x) ** 2) / math.sqrt(2 * math.pi)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _base_samples(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------------
# 1. Pick a map, drag its parameters
# ----------------------------------------------------------------------------------


@_single_threaded
def density_explorer(map_name: str = "exp", num_samples: int = 20_000, seed: int = 0,
                     bins: int = 60) -> Explorer:
    """Push N(0, 1) samples through ``y = f(x)``; compare the histogram with the formula.

    Controls: ``map`` (toggle) and two sliders per map (only the chosen map's are shown).
    The readout integrates the formula density numerically: it stays at 1.000.
    """
    if map_name not in MAPS:
        raise ValueError(f"unknown map {map_name!r}; choose one of {sorted(MAPS)}")
    # The base samples are fixed, so sort them once. Because f is monotone, the number of
    # samples f(x_i) in a bin [e_j, e_{j+1}] is the number of x_i between f^{-1}(e_j) and
    # f^{-1}(e_{j+1}): the histogram of all pushed samples costs one f^{-1} per bin edge.
    # (That is P(Y <= y) = P(X <= f^{-1}(y)), the change of variables for probabilities.)
    x_sorted = np.sort(_base_samples(num_samples, seed)[:, 0].numpy())
    x_quantiles = torch.tensor(np.quantile(x_sorted, [0.003, 0.997]))[:, None]
    x_curve = torch.linspace(-4.0, 4.0, 301, dtype=torch.float64)[:, None]
    x_fine = torch.linspace(-8.5, 8.5, 1201, dtype=torch.float64)[:, None]
    x_stack = torch.cat([x_quantiles, x_curve, x_fine])

    chooser = widgets.ToggleButtons(options=list(MAPS), value=map_name, description="map",
                                    style={"button_width": "100px"})
    sliders: dict[str, widgets.FloatSlider] = {}
    groups: dict[str, widgets.Widget] = {}
    for name, spec in MAPS.items():
        row = []
        for key, label, value, lo, hi, step in spec["params"]:
            sliders[key] = float_slider(label, value, lo, hi, step)
            row.append(sliders[key])
        groups[name] = widgets.HBox(row)
    readout = widgets.HTML()

    fig, (ax_map, ax_den) = make_figure(1, 2, figsize=(8.2, 3.4))
    map_line, = ax_map.plot([], [], color="k", lw=2)
    ax_map.set_xlim(-4, 4)
    ax_map.set_xlabel("x  (Gaussian)")
    ax_map.set_ylabel("y = f(x)")
    ax_map.grid(alpha=0.3)
    map_title = ax_map.set_title(MAPS[map_name]["formula"])  # set now so the layout leaves room
    hist = ax_den.stairs(np.zeros(bins), np.linspace(0, 1, bins + 1), fill=True,
                         color=_SAMPLE_COLOR, label=f"{num_samples:,} samples of f(x)")
    curve, = ax_den.plot([], [], color=_FORMULA_COLOR, lw=2,
                         label=r"formula $p_X(f^{-1}(y))\,|df^{-1}/dy|$")
    ax_den.set_xlabel("y")
    ax_den.set_ylabel(r"$p_Y(y)$")
    ax_den.legend(loc="upper left", fontsize=7.5, frameon=False)
    # Below the legend: the density's peak stays under 1/1.25 of the height (held_top).
    mass_text = ax_den.text(0.98, 0.83, "", transform=ax_den.transAxes, ha="right", va="top",
                            fontsize=8.5, family="monospace")
    message = ax_den.text(0.5, 0.5, "", transform=ax_den.transAxes, ha="center", va="center",
                          wrap=True, fontsize=10, color="darkred",
                          bbox=dict(facecolor="white", edgecolor="darkred", boxstyle="round"))
    fig.tight_layout()
    # The axis limits, held while the curves fit (see held_range); a new map starts afresh.
    view = {"map": None, "x": None, "top": None}

    def update():  # Explorer runs it on one torch thread
        name = chooser.value
        if view["map"] != name:
            view.update(map=name, x=None, top=None)
        for group_name, box in groups.items():
            box.layout.display = None if group_name == name else "none"
        p, q = (sliders[key].value for key, *_ in MAPS[name]["params"])
        domain = MAPS[name]["domain"]
        map_title.set_text(MAPS[name]["live"].format(p=p, q=q))
        try:
            flow = map_flow(name, p, q)
        except ValueError as err:
            # Draw the collapsed map: every x lands on one y.
            level = _collapsed_value(name, p, q)
            map_line.set_data([-4.0, 4.0], [level, level])
            ax_map.set_ylim(level - 2.0, level + 2.0)
            view.update(x=None, top=None)
            curve.set_data([], [])
            hist.set_data(np.zeros(bins))
            mass_text.set_text("")
            message.set_text("\n".join(_wrap(str(err), 38)))
            readout.value = "<b>total mass:</b> undefined here: the map is not invertible"
            fig.canvas.draw_idle()
            return
        message.set_text("")
        # One pass latent -> data for everything the update needs ...
        y_all = _generate(flow, x_stack)
        y_ends, y_curve, y_fine = np.split(y_all, [2, 2 + len(x_curve)])
        lo, hi = y_ends.min(), y_ends.max()  # quantiles of y are f(quantiles of x)
        pad = 0.08 * (hi - lo)
        lo, hi = max(lo - pad, domain[0]), min(hi + pad, domain[1])
        view["x"] = held_range(view["x"], lo, hi, domain)
        edges = np.linspace(lo, hi, bins + 1)
        y_grid = np.linspace(lo, hi, 400)
        y_fine = np.sort(y_fine[(y_fine > domain[0]) & (y_fine < domain[1])])
        # ... and one pass data -> latent: f^{-1} and log p_Y by the formula.
        x_edges, log_p = _latent_and_log_prob(flow, np.concatenate([edges, y_grid, y_fine]), domain)
        x_edges = x_edges[:bins + 1]
        increasing = y_ends[1] > y_ends[0]
        # An edge on the domain's boundary (y = 0 for exp) corresponds to x = -inf or +inf.
        x_edges[edges <= domain[0]] = -np.inf if increasing else np.inf
        x_edges[edges >= domain[1]] = np.inf if increasing else -np.inf
        counts = np.abs(np.diff(np.searchsorted(x_sorted, x_edges)))
        heights = counts / (num_samples * np.diff(edges))
        hist.set_data(heights, edges)
        density = np.exp(log_p[bins + 1:bins + 1 + len(y_grid)])
        curve.set_data(y_grid, density)
        view["top"] = held_top(view["top"], 1.25 * max(heights.max(), density.max()))
        ax_den.set_xlim(*view["x"])
        ax_den.set_ylim(0, view["top"])
        map_line.set_data(x_curve[:, 0].numpy(), y_curve)
        ax_map.set_ylim(*view["x"])
        # Total mass: Simpson's rule over y on the image of a fine x grid (dense where the
        # mass is); the integrand is the formula density.
        mass = float(simpson(np.exp(log_p[bins + 1 + len(y_grid):]), x=y_fine))
        mass_text.set_text(f"∫ p_Y(y) dy = {mass:.3f}")
        readout.value = (f"<b>total mass</b> ∫ p<sub>Y</sub>(y) dy = <b>{mass:.3f}</b> "
                         "(formula density, Simpson's rule)")
        fig.canvas.draw_idle()

    controls = {"map": chooser, **sliders}
    box = widgets.VBox([chooser, *groups.values(), readout, fig.canvas])
    return Explorer(box, fig, controls, update,
                    artists={"map": map_line, "curve": curve, "hist": hist,
                             "mass": mass_text, "message": message}, readout=readout,
                    moving=[map_line, map_title, hist, curve, mass_text, message])


def _latent_and_log_prob(flow: Flow, y: np.ndarray, domain) -> tuple[np.ndarray, np.ndarray]:
    """``x = f^{-1}(y)`` and ``log p_Y(y) = log p_X(x) + log|dx/dy|`` (what ``flow.log_prob``
    computes) in one forward pass; ``nan`` and ``-inf`` outside the open domain."""
    x = np.full_like(y, np.nan)
    log_p = np.full_like(y, -np.inf)
    inside = (y > domain[0]) & (y < domain[1])
    if inside.any():
        with torch.no_grad():
            z, log_abs_det = flow.forward(torch.from_numpy(y[inside])[:, None])
            x[inside] = z[:, 0].numpy()
            log_p[inside] = (flow.base.log_prob(z) + log_abs_det).numpy()
    return x, log_p


def _collapsed_value(name: str, p: float, q: float) -> float:
    """The single y that a zero-scale map sends every x to."""
    return {"affine": q, "exp": math.exp(q), "tanh": math.tanh(q),
            "sinh-arcsinh": math.sinh(-p)}[name]


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines


# ----------------------------------------------------------------------------------
# 2. Stretched rectangles
# ----------------------------------------------------------------------------------


def _exp_flow(a: float) -> Flow:
    """Samples ``y = exp(a x)``: the forward (data -> latent) is ``x = log(y) / a``."""
    return Flow([Log(), Affine(a, 0.0).inv], StandardNormal(1)).double()


@_single_threaded
def strip_masses(x0: float, dx: float, a: float, num_points: int = 201) -> dict[str, float]:
    """The numbers the rectangles explorer prints, for ``y = exp(a x)``.

    ``mass_x`` is the exact Gaussian probability of ``[x0, x0 + dx]``; ``mass_y`` integrates
    the formula density ``p_Y`` over the image strip with Simpson's rule.
    """
    if abs(a) < _ZERO:
        raise ValueError("a = 0 sends every x to y = 1: the strip collapses to a point, "
                         "so y has no density")
    y0, y1 = math.exp(a * x0), math.exp(a * (x0 + dx))
    lo, hi = min(y0, y1), max(y0, y1)
    ys = np.linspace(lo, hi, num_points)
    mass_y = float(simpson(_density(_exp_flow(a), ys, (0.0, math.inf)), x=ys))
    mass_x = _normal_cdf(x0 + dx) - _normal_cdf(x0)
    return {"y0": y0, "y1": y1, "mass_x": mass_x, "mass_y": mass_y, "dy": hi - lo,
            "stretch": (hi - lo) / dx, "derivative": abs(a) * math.exp(a * x0)}


@_single_threaded
def rectangles_explorer(x0: float = 0.3, dx: float = 0.5, a: float = 0.8) -> Explorer:
    """A strip ``[x, x+dx]`` under ``p_X`` and its image under ``y = exp(a x)``.

    Both shaded areas hold the same probability; the image strip is ``|dy|/dx`` times
    wider, so on average its density is that many times lower. Controls: ``x``, ``dx``, ``a``.
    """
    x_slider = float_slider("x (strip start)", x0, -3.0, 2.5, 0.05)
    dx_slider = float_slider("dx (strip width)", dx, 0.05, 1.0, 0.05)
    a_slider = float_slider("a  in  y = exp(a·x)", a, -1.5, 1.5, 0.05)
    xs = np.linspace(-3.6, 3.6, 400)
    px = _normal_pdf(xs)

    fig, (ax_x, ax_map, ax_y) = make_figure(1, 3, figsize=(8.2, 3.5),
                                            gridspec_kw={"width_ratios": [1, 1, 1.2]})
    ax_x.plot(xs, px, color=_BASE_COLOR, lw=2)
    ax_x.set_xlim(xs[0], xs[-1])
    ax_x.set_ylim(0, 0.6)  # room for the readout above the curve
    ax_x.set_title(r"$p_X(x)$, standard normal")
    ax_x.set_xlabel("x")
    strip_x = Polygon(np.zeros((3, 2)), closed=True, color=_BASE_COLOR, alpha=0.35)
    ax_x.add_patch(strip_x)
    text_x = ax_x.text(0.03, 0.97, "", transform=ax_x.transAxes, va="top", fontsize=7.5,
                       family="monospace")

    map_line, = ax_map.plot([], [], color="k", lw=2)
    ax_map.set_xlim(xs[0], xs[-1])
    ax_map.set_xlabel("x")
    ax_map.set_ylabel("y")
    map_title = ax_map.set_title("")
    band_x = Rectangle((0, 0), 0, 1, transform=ax_map.get_xaxis_transform(),
                       color=_BASE_COLOR, alpha=0.3)
    band_y = Rectangle((0, 0), 1, 0, transform=ax_map.get_yaxis_transform(),
                       color=_FORMULA_COLOR, alpha=0.3)
    ax_map.add_patch(band_x)
    ax_map.add_patch(band_y)

    y_line, = ax_y.plot([], [], color=_FORMULA_COLOR, lw=2)
    ax_y.set_title(r"$p_Y(y)$")
    ax_y.set_xlabel("y")
    strip_y = Polygon(np.zeros((3, 2)), closed=True, color=_FORMULA_COLOR, alpha=0.35)
    ax_y.add_patch(strip_y)
    text_y = ax_y.text(0.97, 0.97, "", transform=ax_y.transAxes, va="top", ha="right",
                       fontsize=7.5, family="monospace")
    summary = fig.text(0.5, 0.01, "", ha="center", va="bottom", fontsize=9)
    message = ax_y.text(0.5, 0.5, "", transform=ax_y.transAxes, ha="center", va="center",
                        fontsize=10, color="darkred",
                        bbox=dict(facecolor="white", edgecolor="darkred", boxstyle="round"))
    fig.tight_layout(rect=(0, 0.12, 1, 1))

    held = {"map": None, "density": None}  # the y limits of the map and of p_Y

    def under_curve(grid, values, lo, hi):
        inside = (grid >= lo) & (grid <= hi)
        g = np.concatenate([[lo], grid[inside], [hi]])
        v = np.interp(g, grid, values)
        return np.column_stack([np.concatenate([g, g[::-1]]),
                                np.concatenate([v, np.zeros_like(v)])])

    def update():  # Explorer runs it on one torch thread
        x0_, dx_, a_ = x_slider.value, dx_slider.value, a_slider.value
        x1_ = x0_ + dx_
        strip_x.set_xy(under_curve(xs, px, x0_, x1_))
        band_x.set_x(x0_)
        band_x.set_width(dx_)
        mass_x = _normal_cdf(x1_) - _normal_cdf(x0_)
        text_x.set_text(f"mass       = {mass_x:.4f}\nwidth      = {dx_:.4f}\n"
                        f"mass/width = {mass_x / dx_:.4f}")
        map_title.set_text(f"y = exp({a_:.2f}·x)")
        try:
            m = strip_masses(x0_, dx_, a_)
        except ValueError as err:
            map_line.set_data(xs, np.ones_like(xs))
            ax_map.set_ylim(0, 2)
            held.update(map=None, density=None)
            band_y.set_y(1.0)
            band_y.set_height(0.0)
            y_line.set_data([], [])
            strip_y.set_xy(np.zeros((3, 2)))
            text_y.set_text("")
            message.set_text("\n".join(_wrap(str(err), 30)))
            summary.set_text("no strip on the y side: a = 0 is not invertible")
            fig.canvas.draw_idle()
            return
        message.set_text("")
        ys_map = np.exp(a_ * xs)
        map_line.set_data(xs, ys_map)
        lo, hi = min(m["y0"], m["y1"]), max(m["y0"], m["y1"])
        # Held limits (see held_range): a new limit redraws the whole figure.
        y_top = held["map"] = held_top(held["map"], max(math.exp(abs(a_) * 2.3), 1.1 * hi), 1.6)
        ax_map.set_ylim(0, y_top)
        band_y.set_y(lo)
        band_y.set_height(hi - lo)
        y_grid = np.linspace(1e-9, y_top, 600)
        py = _density(_exp_flow(a_), y_grid, (0.0, math.inf))
        y_line.set_data(y_grid, py)
        strip_y.set_xy(under_curve(y_grid, py, lo, hi))
        ax_y.set_xlim(0, y_top)
        held["density"] = held_top(held["density"], 1.15 * py.max(), 1.6)
        ax_y.set_ylim(0, held["density"])
        text_y.set_text(f"mass       = {m['mass_y']:.4f}\nwidth      = {m['dy']:.4f}\n"
                        f"mass/width = {m['mass_y'] / m['dy']:.4f}")
        summary.set_text(
            f"same mass {m['mass_x']:.4f} on both sides;  |dy|/dx = {m['stretch']:.3f}, so the "
            f"density is divided by {m['stretch']:.3f}\n(and |dy|/dx → |f′(x)| = "
            f"{m['derivative']:.3f} as dx → 0)")
        fig.canvas.draw_idle()

    controls = {"x": x_slider, "dx": dx_slider, "a": a_slider}
    box = widgets.VBox([x_slider, dx_slider, a_slider, fig.canvas])
    # The Gaussian on the left never changes; x and dx keep every axis limit.
    moving = [strip_x, text_x, map_line, map_title, band_x, band_y, y_line, strip_y, text_y,
              summary, message]
    return Explorer(box, fig, controls, update,
                    artists={"strip_x": strip_x, "strip_y": strip_y, "curve_y": y_line,
                             "map": map_line, "text_x": text_x, "text_y": text_y,
                             "summary": summary, "message": message}, moving=moving)


# ----------------------------------------------------------------------------------
# 3. Composition of K maps
# ----------------------------------------------------------------------------------


def composition_layers() -> list:
    """Eight generative maps ``f_1, ..., f_8`` (x -> y), alternating sinh-arcsinh and affine."""
    return [
        SinhArcsinh(0.5, 0.8, learnable=False), Affine(1.4, 0.3),
        SinhArcsinh(-0.7, 0.7, learnable=False), Affine(0.8, -0.5),
        SinhArcsinh(0.4, 1.4, learnable=False), Affine(1.5, 0.4),
        SinhArcsinh(-0.5, 0.6, learnable=False), Affine(1.2, -0.2),
    ]


def composition_flow(k: int) -> Flow:
    """The Flow whose samples are ``f_k(...f_1(x))``: forward runs ``f_k^{-1}`` first."""
    layers = composition_layers()[:k]
    return Flow([f.inv for f in reversed(layers)], StandardNormal(1)).double()


def log_prob_terms(flow: Flow, y: float) -> tuple[float, list[float]]:
    """``log p_X(x)`` and the per-map terms ``log|d f_k^{-1}/dh|``, in generative order."""
    h = torch.tensor([[float(y)]], dtype=torch.float64)
    terms = []
    with torch.no_grad():
        for t in flow.transforms:  # f_K^{-1} first
            h, log_abs_det = t(h)
            terms.append(float(log_abs_det))
        base = float(flow.base.log_prob(h))
    return base, terms[::-1]


@_single_threaded
def composition_explorer(k: int = 3, probe: float = 0.5, num_samples: int = 20_000,
                         seed: int = 0) -> Explorer:
    """Compose ``K`` monotone maps; the log-density adds one log-derivative per map.

    Controls: ``K`` (number of maps, 0 to 8) and ``y`` (where the log-density is split into
    its terms). Histograms and curves for every K are precomputed, so a move is instant.
    """
    layers = composition_layers()
    max_k = len(layers)
    edges = np.linspace(-5.0, 5.0, 81)
    y_grid = np.linspace(-5.0, 5.0, 500)
    flows = [composition_flow(j) for j in range(max_k + 1)]
    stages = flows[-1].inverse_stages(_base_samples(num_samples, seed))  # x, f1(x), f2(f1(x)), ...
    hists, curves = [], []
    for j in range(max_k + 1):
        counts, _ = np.histogram(stages[j][:, 0].detach().numpy(), edges)
        hists.append(counts / (num_samples * np.diff(edges)))
        curves.append(_density(flows[j], y_grid))

    k_slider = int_slider("K (number of maps)", k, 0, max_k)
    y_slider = float_slider("y (probe point)", probe, -4.0, 4.0, 0.05)
    fig, (ax_den, ax_bar) = make_figure(1, 2, figsize=(8.2, 3.6),
                                        gridspec_kw={"width_ratios": [1, 1]})
    hist = ax_den.stairs(hists[0], edges, fill=True, color=_SAMPLE_COLOR, label="samples")
    curve, = ax_den.plot(y_grid, curves[0], color=_FORMULA_COLOR, lw=2, label="formula")
    probe_line = ax_den.axvline(probe, color="k", lw=1, ls="--")
    probe_dot, = ax_den.plot([], [], "ko", ms=5)
    ax_den.set_xlim(edges[0], edges[-1])
    ax_den.set_ylim(0, 1.12 * max(max(h.max(), c.max()) for h, c in zip(hists, curves)))
    ax_den.set_xlabel("y")
    ax_den.legend(loc="upper left", fontsize=8, frameon=False)
    den_title = ax_den.set_title("")

    labels = ["log p_X(x)"] + [f"f{j + 1}" for j in range(max_k)]
    colors = [_BASE_COLOR] + [_SAS_COLOR if isinstance(t, SinhArcsinh) else _AFFINE_COLOR for t in layers]
    bars = ax_bar.bar(range(max_k + 1), np.zeros(max_k + 1), color=colors)
    ax_bar.set_xticks(range(max_k + 1), labels, fontsize=7.5, rotation=40)
    ax_bar.axhline(0, color="k", lw=0.8)
    total_line = ax_bar.axhline(0, color=_FORMULA_COLOR, lw=1.5, ls="--", label="log p(y): the sum")
    kinds = [Rectangle((0, 0), 1, 1, color=_SAS_COLOR, label="sinh-arcsinh map"),
             Rectangle((0, 0), 1, 1, color=_AFFINE_COLOR, label="affine map")]
    ax_bar.legend(handles=[total_line, *kinds], loc="upper left", fontsize=7, frameon=False, ncol=2)
    ax_bar.set_title(r"log p(y) = log $p_X$(x) + $\sum_k$ log|d$f_k^{-1}$/dh|", fontsize=9)
    bar_text = ax_bar.text(0.98, 0.03, "", transform=ax_bar.transAxes, ha="right", va="bottom",
                           fontsize=7.5, family="monospace",
                           bbox=dict(facecolor="white", edgecolor="0.7", alpha=0.9))
    fig.tight_layout()
    bar_view = {"y": None}

    def update():  # Explorer runs it on one torch thread
        kk, y = k_slider.value, y_slider.value
        hist.set_data(hists[kk])
        curve.set_ydata(curves[kk])
        den_title.set_text("p(y) of y = x" if kk == 0 else
                           f"p(y) of y = f{kk}(…f1(x))" if kk > 1 else "p(y) of y = f1(x)")
        base, terms = log_prob_terms(flows[kk], y)
        total = base + sum(terms)
        with torch.no_grad():
            by_flow = float(flows[kk].log_prob(torch.tensor([[y]], dtype=torch.float64)))
        heights = [base] + terms + [0.0] * (max_k - kk)
        for j, (bar, height) in enumerate(zip(bars, heights)):
            bar.set_height(height)
            alpha = 1.0 if j <= kk else 0.25
            if bar.get_alpha() != alpha:  # recolouring is the slow part of a bar update
                bar.set_alpha(alpha)
        total_line.set_ydata([total, total])
        low, high = min(heights + [total, 0.0]), max(heights + [total, 0.0])
        # Limits in steps of 0.5, held while the bars fit (see held_range): most moves
        # keep the axis, so only the bars and the texts are redrawn (Explorer's moving).
        need = (0.5 * math.floor((low - 0.25 * (high - low) - 0.6) / 0.5),
                0.5 * math.ceil((high + 0.3 * (high - low) + 0.3) / 0.5))
        bar_view["y"] = held_range(bar_view["y"], *need)
        ax_bar.set_ylim(*bar_view["y"])
        probe_line.set_xdata([y, y])
        probe_dot.set_data([y], [math.exp(by_flow)])
        bar_text.set_text(f"log p_X(x)    = {base:8.4f}\n"
                          f"Σ log-derivs  = {sum(terms):8.4f}\n"
                          f"sum           = {total:8.4f}\n"
                          f"flow.log_prob = {by_flow:8.4f}")
        fig.canvas.draw_idle()

    controls = {"K": k_slider, "y": y_slider}
    box = widgets.VBox([k_slider, y_slider, fig.canvas])
    moving = [hist, curve, den_title, probe_line, probe_dot, bars, total_line, bar_text]
    return Explorer(box, fig, controls, update,
                    artists={"hist": hist, "curve": curve, "bars": bars, "total": total_line,
                             "text": bar_text, "probe": probe_dot}, moving=moving)


# ----------------------------------------------------------------------------------
# The static summary figure
# ----------------------------------------------------------------------------------


@_single_threaded
def lesson_figure():
    """Samples vs formula, the stretched strip, and the fold of a non-invertible map."""
    # Two rows, so it fits a laptop's notebook column: the four maps on top, wide.
    fig, axes = make_figure(2, 2, figsize=(8.2, 6.4))
    grid_spec = axes[0, 0].get_gridspec()
    for ax in axes[0]:
        ax.remove()
    ax_a = fig.add_subplot(grid_spec[0, :])
    ax_b, ax_c = axes[1]

    # (a) four maps, samples and formula
    x = _base_samples(20_000, 0)
    for name, p, q, color in (("affine", 0.6, -2.0, "#3182bd"), ("sinh-arcsinh", -1.0, 0.8, "#31a354"),
                              ("tanh", 0.7, 0.2, "#756bb1"), ("exp", 0.5, 0.0, "#e6550d")):
        flow = map_flow(name, p, q)
        y = _generate(flow, x)
        edges = np.linspace(-4, 5, 91)
        counts, _ = np.histogram(y, edges)
        ax_a.stairs(counts / (len(y) * np.diff(edges)), edges, fill=True, alpha=0.25, color=color)
        grid = np.linspace(-4, 5, 900)
        ax_a.plot(grid, _density(flow, grid, MAPS[name]["domain"]), color=color, lw=1.8,
                  label=name)
    ax_a.set_xlim(-4, 5)
    ax_a.set_title("samples (shaded) = formula (line)", fontsize=10)
    ax_a.set_xlabel("y = f(x),  x ~ N(0, 1)")
    ax_a.legend(fontsize=8, frameon=False)

    # (b) the stretched strip under y = exp(0.8 x)
    a, x0, dx = 0.8, 0.6, 0.6
    m = strip_masses(x0, dx, a)
    xs = np.linspace(-3, 3, 300)
    ax_b.plot(xs, np.exp(a * xs), color="k", lw=2)
    ax_b.axvspan(x0, x0 + dx, color=_BASE_COLOR, alpha=0.3)
    ax_b.axhspan(m["y0"], m["y1"], color=_FORMULA_COLOR, alpha=0.3)
    ax_b.set_xlim(-3, 3)
    ax_b.set_ylim(0, 8)
    ax_b.set_xlabel("x")
    ax_b.set_ylabel("y = exp(0.8 x)")
    ax_b.set_title(f"same mass {m['mass_x']:.3f} in both strips;\n"
                   f"|dy|/dx = {m['stretch']:.2f}, so density ÷ {m['stretch']:.2f}", fontsize=10)

    # (c) y = x^2 folds two branches onto one y
    ys = np.linspace(1e-3, 4, 400)
    naive = _normal_pdf(np.sqrt(ys)) / (2 * np.sqrt(ys))
    y2 = x[:, 0].numpy() ** 2
    edges = np.linspace(0, 4, 41)
    counts, _ = np.histogram(y2, edges)
    ax_c.stairs(counts / (len(y2) * np.diff(edges)), edges, fill=True, color=_SAMPLE_COLOR,
                label="samples of x²")
    ax_c.plot(ys, 2 * naive, color=_FORMULA_COLOR, lw=2, label="both branches (mass 1)")
    ax_c.plot(ys, naive, color="k", lw=1.5, ls="--", label="one branch only (mass 1/2)")
    ax_c.set_ylim(0, 1.5)
    ax_c.set_xlim(0, 4)
    ax_c.set_xlabel("y = x²")
    ax_c.set_title("not invertible: y = x² folds the mass", fontsize=10)
    ax_c.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
