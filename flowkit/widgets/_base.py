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
from dataclasses import dataclass, field
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

__all__ = ["Explorer", "make_figure", "float_slider", "int_slider", "figure_png", "single_thread",
           "show_static"]


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


def figure_png(fig) -> str:
    """The figure as a base64 PNG string (the static picture GitHub shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.get_dpi())
    return base64.b64encode(buf.getvalue()).decode("ascii")


def show_static(fig, dpi: float | None = None) -> None:
    """Show a finished figure once, as one PNG, and close it.

    Under ``%matplotlib widget`` a figure left to Jupyter is stored as an interactive
    canvas: the same picture as a PNG, again inside HTML and again in the widget state.
    A static figure needs none of that, so it is shown as a single ``image/png``.
    """
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.get_dpi())
    plt.close(fig)
    display(Image(data=buf.getvalue()))


def make_figure(*args, figsize=(8, 3.5), **kwargs):
    """``plt.subplots`` with interactive mode off, tidied for use inside a widget."""
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
    a widget manager (GitHub, nbviewer), a PNG of the figure as it stands.
    """

    widget: widgets.Widget
    figure: object
    controls: dict[str, widgets.Widget]
    update: Callable[..., None]
    artists: dict[str, object] = field(default_factory=dict)
    readout: widgets.Widget | None = None

    def __post_init__(self):
        update = self.update

        @functools.wraps(update)
        def single_threaded_update(*args, **kwargs):
            with single_thread():
                return update(*args, **kwargs)

        self.update = single_threaded_update
        for control in self.controls.values():
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["image/png"] = figure_png(self.figure)
        bundle["text/plain"] = f"<interactive explorer: {', '.join(self.controls)}>"
        return bundle

    def set(self, **values) -> None:
        """Move several controls at once (each move redraws, as a learner's drag would)."""
        for name, value in values.items():
            if name not in self.controls:
                raise KeyError(f"no control named {name!r}; controls are {sorted(self.controls)}")
            self.controls[name].value = value
