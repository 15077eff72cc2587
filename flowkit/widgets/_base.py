"""The pieces every explorer is built from.

The pattern: build the figure with interactive mode off, show the controls above the
figure's canvas (ipympl, via ``%matplotlib widget``), and on every slider change update
the existing artists in place and call ``draw_idle``: no flicker, no full redraw.
Every explorer exposes its ``update`` function and its controls, so tests can move
sliders headlessly (setting ``slider.value`` fires observers synchronously) and the
benchmark can time one update.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ._frames import DRAW_LOCK, FrameCache, fast_frames, quiet

__all__ = ["Explorer", "make_figure", "float_slider", "int_slider", "figure_png", "single_thread",
           "show_static", "MAX_WIDTH_PX", "png_bytes", "held_range", "held_top"]

# The widest figure a lesson shows, in pixels as displayed: it fits JupyterLab's notebook
# column in a 1,280 x 800 window with the file browser open.
MAX_WIDTH_PX = 820


@contextlib.contextmanager
def single_thread():
    """Run small tensor work on one thread.

    For a few thousand numbers, waking torch's worker threads costs far more than the
    arithmetic, and on a shared CPU (Binder, a busy laptop) it can cost tens of
    milliseconds per call. One thread keeps a slider update at a few milliseconds.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _display_dpi(fig, dpi: float | None = None) -> float:
    """The dpi to save at: as asked (or 100, the figures' design dpi), but never wider
    than :data:`MAX_WIDTH_PX`. The figure's own dpi is not used: under ipympl it is
    multiplied by the screen's pixel ratio, which would double a PNG on a HiDPI screen."""
    dpi = 100.0 if dpi is None else float(dpi)
    return min(dpi, MAX_WIDTH_PX / fig.get_figwidth())


def png_bytes(fig, dpi: float | None = None, palette: bool = True) -> bytes:
    """The figure as PNG bytes, at most :data:`MAX_WIDTH_PX` wide.

    With ``palette`` (the default) the picture is stored with 256 colours (median cut, no
    dithering): indistinguishable for plots and heat maps at this size, and about a third
    of the bytes of full RGBA, which keeps a notebook light.
    """
    buf = io.BytesIO()
    with DRAW_LOCK:  # not while a widget message draws a canvas on another thread
        fig.savefig(buf, format="png", dpi=_display_dpi(fig, dpi))
    if not palette:
        return buf.getvalue()
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as image:
        indexed = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    out = io.BytesIO()
    indexed.save(out, format="png", optimize=True)
    return out.getvalue()


def figure_png(fig, dpi: float | None = None) -> str:
    """The figure as a base64 PNG string (the static picture GitHub shows), at most
    :data:`MAX_WIDTH_PX` wide."""
    return base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def show_static(fig, dpi: float | None = None) -> None:
    """Show a finished figure once, as one PNG, and close it.

    Under ``%matplotlib widget`` a figure left to Jupyter is stored as an interactive
    canvas: the same picture as a PNG, again inside HTML and again in the widget state.
    A static figure needs none of that, so it is shown as a single ``image/png``, at
    most :data:`MAX_WIDTH_PX` wide.
    """
    from IPython.display import Image, display

    data = png_bytes(fig, dpi)
    plt.close(fig)
    display(Image(data=data))


def held_range(view: tuple[float, float] | None, lo: float, hi: float,
                bounds=(-math.inf, math.inf)) -> tuple[float, float]:
    """Axis limits that show ``[lo, hi]``, kept from ``view`` while they still fit.

    A change of limits redraws the whole figure (ticks, labels, both panels), several
    times the cost of a frame that redraws only the curves. So the view stays put while
    the data stay inside it and fill at least 40% of it; otherwise it jumps, with a
    margin of a quarter of the data's width on each side (within ``bounds``), so that a
    slider dragged on moves a while before the next jump.
    """
    if view is not None:
        width = view[1] - view[0]
        if view[0] <= lo and hi <= view[1] and hi - lo >= 0.4 * width:
            return view
    margin = 0.25 * (hi - lo)
    return max(lo - margin, bounds[0]), min(hi + margin, bounds[1])


def held_top(top: float | None, need: float, slack: float = 2.0) -> float:
    """An upper axis limit of at least ``need``, kept (as :func:`held_range` keeps a
    view) while it is no more than ``slack`` times ``need``; else a new one, 30% above."""
    need = max(need, 1e-12)
    if top is not None and need <= top <= slack * need:
        return top
    return 1.3 * need


def make_figure(*args, figsize=(8, 3.5), **kwargs):
    """``plt.subplots`` with interactive mode off, tidied for use inside a widget.

    ``figsize`` is in inches at 100 dpi: at most 8.2 wide, so the canvas fits a laptop's
    notebook column (:data:`MAX_WIDTH_PX`).
    """
    with plt.ioff():
        fig, axes = plt.subplots(*args, figsize=figsize, **kwargs)
    canvas = fig.canvas
    for name, value in (("header_visible", False), ("toolbar_visible", False),
                        ("footer_visible", False), ("resizable", False)):
        if hasattr(canvas, name):
            setattr(canvas, name, value)
    return fig, axes


def float_slider(description: str, value: float, min: float, max: float, step: float = 0.01,
                 readout_format: str = ".2f") -> widgets.FloatSlider:
    return widgets.FloatSlider(value=value, min=min, max=max, step=step,
                               description=description, readout_format=readout_format,
                               continuous_update=True, style={"description_width": "initial"},
                               layout=widgets.Layout(width="420px"))


def int_slider(description: str, value: int, min: int, max: int, step: int = 1) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=min, max=max, step=step, description=description,
                             continuous_update=True, style={"description_width": "initial"},
                             layout=widgets.Layout(width="420px"))


@dataclass
class Explorer:
    """An interactive figure: ``widget`` to display, ``controls`` by name, ``update()``.

    Displaying an Explorer shows the live widget in Jupyter and, for renderers without
    a widget manager (GitHub, nbviewer), one PNG of the figure as it stands: the output
    holds the widget view and that PNG, nothing else.

    ``moving`` lists the artists a slider update changes (lines, images, texts, patches,
    containers of them). When given, the rest of the figure is drawn once and kept as a
    background, and each frame draws only these artists over it (see ``_frames``): the
    ticks, labels and static panels are not redrawn on every slider move. A change of
    axis limits, or of a control that is not a slider (a map chooser), redraws
    everything; any other artist a slider changes must be listed. Tests compare the fast
    frame with a full redraw pixel for pixel.
    """

    widget: widgets.Widget
    figure: object
    controls: dict[str, widgets.Widget]
    update: Callable[..., None]
    artists: dict[str, object] = field(default_factory=dict)
    readout: widgets.Widget | None = None
    moving: Iterable | None = None

    def __post_init__(self):
        fast_frames(self.figure.canvas)
        self.frames = FrameCache(self.figure, self.moving) if self.moving is not None else None
        update = self.update

        canvas = self.figure.canvas

        @functools.wraps(update)
        def single_threaded_update(*args, **kwargs):
            # Quiet: each artist changed would otherwise ask for its own draw (a message
            # to the browser each); one request at the end is enough.
            with single_thread(), quiet(canvas):
                result = update(*args, **kwargs)
            canvas.draw_idle()
            return result

        self.update = single_threaded_update
        sliders = (widgets.FloatSlider, widgets.IntSlider, widgets.SelectionSlider)
        for control in self.controls.values():
            if self.frames is not None and not isinstance(control, sliders):
                # A chooser may restyle anything (colour limits, titles): draw it all again.
                control.observe(lambda change: self.frames.invalidate(), names="value")
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        # The widget view plus one PNG fallback. Not the canvas's own bundle: that would
        # add the same picture again as a data URL in text/html.
        bundle = {key: value for key, value in (self.widget._repr_mimebundle_(**kwargs) or {}).items()
                  if key == "application/vnd.jupyter.widget-view+json"}
        with self.frames.all_drawn() if self.frames is not None else contextlib.nullcontext():
            bundle["image/png"] = figure_png(self.figure)
        bundle["text/plain"] = f"<interactive explorer: {', '.join(self.controls)}>"
        return bundle

    def set(self, **values) -> None:
        """Move several controls at once (each move redraws, as a learner's drag would)."""
        for name, value in values.items():
            if name not in self.controls:
                raise KeyError(f"no control named {name!r}; controls are {sorted(self.controls)}")
            self.controls[name].value = value
