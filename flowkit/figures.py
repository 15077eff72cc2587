"""Regenerate every figure of the repository: ``python -m flowkit.figures [OUTDIR]``.

Writes into ``OUTDIR`` (default ``figures/``):

* ``hero.png``: a standard Gaussian carried, coupling layer by coupling layer, into a
  curved density (the README's picture);
* ``flow_deforming.gif``: the same deformation as an animation;
* ``lessonNN.png``: each lesson's summary figure, from
  ``flowkit.widgets.lessonNN.lesson_figure()``; lessons whose module is not there yet
  are listed and skipped.

Nothing is trained: the coupling layers of the hero flow have hand-written conditioners
(smooth closed-form scale and shift functions), so the script takes seconds and gives
the same pictures every time. Every density drawn is exact, ``Flow.log_prob`` on a grid.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .flow import Flow, StandardNormal
from .transforms import AffineCoupling

__all__ = ["hero_flow", "set_progress", "hero_figure", "save_animation", "write_lesson_figures",
           "main"]

EXPECTED_LESSONS = range(1, 8)  # the course's lesson map; more modules are picked up too
LIMIT = 3.2                    # plotted square: [-LIMIT, LIMIT]^2
GRID_N = 140                   # density grid resolution
PNG_METADATA = {"Software": None}  # no version string: reruns give identical files

Curve = Callable[[Tensor], Tensor]


class ClosedFormConditioner(nn.Module):
    """A coupling conditioner given by formulas instead of a network.

    The kept coordinate ``u`` sets the raw log-scale ``log_scale(u)`` and shift
    ``shift(u)`` of the other coordinate. ``strength`` in [0, 1] scales both, so 0 is the
    identity map and 1 the full layer: every value in between is still an invertible
    coupling with an exact log-determinant, which is what the animation plays through.
    """

    def __init__(self, kept: int, log_scale: Curve, shift: Curve):
        super().__init__()
        self.kept, self.other = kept, 1 - kept
        self.log_scale, self.shift = log_scale, shift
        self.register_buffer("strength", torch.tensor(1.0))

    def forward(self, masked: Tensor) -> Tensor:
        u = masked[:, self.kept]
        out = masked.new_zeros(masked.shape[0], 4)  # raw log-scales (2), then shifts (2)
        out[:, self.other] = self.strength * self.log_scale(u)
        out[:, 2 + self.other] = self.strength * self.shift(u)
        return out


def _coupling(kept: int, log_scale: Curve, shift: Curve) -> AffineCoupling:
    mask = torch.zeros(2)
    mask[kept] = 1.0
    return AffineCoupling(mask, ClosedFormConditioner(kept, log_scale, shift))


def hero_flow() -> Flow:
    """Three affine couplings with closed-form conditioners over a 2-D standard normal.

    Listed in the normalizing direction (data -> latent); sampling runs them backwards,
    so the last one is the first to act on a Gaussian sample.
    """
    layers = [
        _coupling(0, lambda u: 0.25 * torch.tanh(u), lambda u: 0.9 * torch.sin(1.4 * u)),
        _coupling(1, lambda u: 0.2 * torch.tanh(u), lambda u: -0.4 * u ** 2 + 0.5),
        _coupling(0, lambda u: -0.2 + 0.0 * u, lambda u: 0.35 * u),
    ]
    return Flow(layers, StandardNormal(2)).eval()


def _generative_order(flow: Flow) -> list[AffineCoupling]:
    return list(reversed(list(flow.transforms)))


def set_progress(flow: Flow, progress: float) -> None:
    """Play the generative steps one after another: ``progress`` runs from 0 (the
    Gaussian) to the number of layers (the full flow); layer ``k`` (in sampling order)
    deforms while ``progress`` goes from ``k`` to ``k + 1``."""
    for k, layer in enumerate(_generative_order(flow)):
        amount = min(max(progress - k, 0.0), 1.0)
        layer.conditioner.strength.fill_(0.5 - 0.5 * math.cos(math.pi * amount))  # eased


def _grid_points(n: int = GRID_N) -> Tensor:
    line = torch.linspace(-LIMIT, LIMIT, n)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


def _latent_grid_lines(count: int = 9, points: int = 120, extent: float = 2.4) -> list[Tensor]:
    """Horizontal and vertical lines of the latent plane, to carry through the flow."""
    ticks = torch.linspace(-extent, extent, count)
    along = torch.linspace(-extent, extent, points)
    lines = [torch.stack([along, torch.full_like(along, c)], 1) for c in ticks]
    lines += [torch.stack([torch.full_like(along, c), along], 1) for c in ticks]
    return lines


class _Scene:
    """What one panel shows: the exact density, the carried latent grid, and samples."""

    def __init__(self, n_samples: int = 1500, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.z = torch.randn(n_samples, 2, generator=generator)
        self.colors = np.arctan2(self.z[:, 1].numpy(), self.z[:, 0].numpy())
        self.points = _grid_points()
        self.lines = _latent_grid_lines()

    @torch.no_grad()
    def compute(self, flow: Flow) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        density = flow.log_prob(self.points).exp().reshape(GRID_N, GRID_N).numpy()
        samples = flow.inverse(self.z)[0].numpy() if len(self.z) else np.zeros((0, 2))
        lines = [flow.inverse(line)[0].numpy() for line in self.lines]
        return density, samples, lines

    def draw(self, ax, flow: Flow, vmax: float, title: str = "", levels: int | None = None):
        """``levels`` bands the colour scale (flat colours keep a GIF small)."""
        import matplotlib

        density, samples, lines = self.compute(flow)
        cmap = matplotlib.colormaps["magma"]
        if levels:
            cmap = cmap.resampled(levels)
        image = ax.imshow(density, origin="lower", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT),
                          cmap=cmap, vmin=0.0, vmax=vmax, interpolation="bilinear")
        line_artists = [ax.plot(*line.T, color="white", lw=0.6, alpha=0.45)[0] for line in lines]
        scatter = None
        if len(samples):
            scatter = ax.scatter(samples[:, 0], samples[:, 1], s=2.5, c=self.colors, cmap="hsv",
                                 alpha=0.8, linewidths=0)
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=11)
        return image, line_artists, scatter

    def update(self, artists, flow: Flow) -> None:
        image, line_artists, scatter = artists
        density, samples, lines = self.compute(flow)
        image.set_data(density)
        for artist, line in zip(line_artists, lines):
            artist.set_data(line[:, 0], line[:, 1])
        if scatter is not None:
            scatter.set_offsets(samples)


def _vmax(scene: _Scene, flow: Flow) -> float:
    """One colour scale for every panel: a little above the Gaussian's peak density."""
    set_progress(flow, 0.0)
    peak = scene.compute(flow)[0].max()
    set_progress(flow, len(flow))
    return float(max(peak, scene.compute(flow)[0].max()) * 0.9)


def hero_figure():
    """Four panels: a Gaussian, then the density after one, two and three couplings."""
    import matplotlib.pyplot as plt

    flow, scene = hero_flow(), _Scene()
    vmax = _vmax(scene, flow)
    with plt.ioff():
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.9))
    titles = ["$z \\sim \\mathcal{N}(0, I)$", "after 1 coupling layer", "after 2 coupling layers",
              "after 3: $x = f^{-1}(z)$"]
    for k, (ax, title) in enumerate(zip(axes, titles)):
        set_progress(flow, k)
        scene.draw(ax, flow, vmax, title)
    fig.suptitle("A normalizing flow: exact density (colour), carried grid (white), samples (dots)",
                 fontsize=11, y=0.99)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.16)
    for k in range(3):
        left, right = axes[k].get_position(), axes[k + 1].get_position()
        fig.text((left.x1 + right.x0) / 2, (left.y0 + left.y1) / 2, "\u2192", ha="center",
                 va="center", fontsize=20)
    set_progress(flow, len(flow))
    return fig


def save_animation(path: Path, frames_per_layer: int = 8, hold: int = 12, dpi: int = 72) -> Path:
    """A GIF of the Gaussian deforming layer by layer, then relaxing back (it loops)."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    # No samples here: a GIF's 256 colours turn a rainbow of dots into noise.
    flow, scene = hero_flow(), _Scene(n_samples=0)
    vmax = _vmax(scene, flow)
    layers = len(flow)
    forward = list(np.linspace(0.0, layers, layers * frames_per_layer + 1))
    schedule = [0.0] * hold + forward + [float(layers)] * hold + forward[::-1][1:]
    with plt.ioff():
        fig, ax = plt.subplots(figsize=(4.0, 4.2))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
    set_progress(flow, 0.0)
    artists = scene.draw(ax, flow, vmax, levels=12)
    title = ax.set_title("", fontsize=11)

    def frame(progress: float):
        set_progress(flow, progress)
        scene.update(artists, flow)
        done = int(progress + 1e-6)
        if progress < 1e-6:
            title.set_text("a Gaussian, $z \\sim \\mathcal{N}(0, I)$")
        elif done >= layers:
            title.set_text(f"after {layers} coupling layers")
        else:
            title.set_text(f"coupling layer {done + 1} of {layers} acting")
        return []

    animation = FuncAnimation(fig, frame, frames=schedule, blit=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    animation.save(str(path), writer=PillowWriter(fps=12), dpi=dpi)
    plt.close(fig)
    return path


def _lesson_numbers() -> list[int]:
    from . import widgets

    found = {int(m.name[6:]) for m in pkgutil.iter_modules(widgets.__path__)
             if m.name.startswith("lesson") and m.name[6:].isdigit()}
    return sorted(found | set(EXPECTED_LESSONS))


def write_lesson_figures(outdir: Path) -> tuple[list[Path], list[str], list[str]]:
    """``lessonNN.png`` for every lesson module with a ``lesson_figure``; returns the files
    written, a note for each lesson skipped (no module or no ``lesson_figure`` yet) and one
    for each lesson whose ``lesson_figure`` raised."""
    import matplotlib.pyplot as plt

    written, skipped, failed = [], [], []
    for number in _lesson_numbers():
        name = f"flowkit.widgets.lesson{number:02d}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            skipped.append(f"lesson {number:02d}: no module {name} yet")
            continue
        if not hasattr(module, "lesson_figure"):
            skipped.append(f"lesson {number:02d}: {name} has no lesson_figure()")
            continue
        try:
            fig = module.lesson_figure()
            path = outdir / f"lesson{number:02d}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_METADATA)
        except Exception as error:  # noqa: BLE001 - report every lesson, then fail
            failed.append(f"lesson {number:02d}: {name}.lesson_figure() raised "
                          f"{type(error).__name__}: {error}")
            continue
        finally:
            plt.close("all")
        written.append(path)
    return written, skipped, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkit.figures", description=__doc__.split("\n")[0])
    parser.add_argument("outdir", nargs="?", default="figures", help="output folder (default: figures/)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only, whatever backend the environment prefers
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    # Small tensors: one thread is as fast, and far faster on a busy machine, where
    # threads spin waiting for each other.
    torch.set_num_threads(1)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    fig = hero_figure()
    hero = outdir / "hero.png"
    fig.savefig(hero, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)
    written = [hero, save_animation(outdir / "flow_deforming.gif")]
    lessons, skipped, failed = write_lesson_figures(outdir)
    written += lessons

    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    for note in skipped:
        print(f"skipped {note}")
    for note in failed:
        print(f"FAILED {note}", file=sys.stderr)
    print(f"{len(written)} figures in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
