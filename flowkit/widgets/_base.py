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
import io
from dataclasses import dataclass, field
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt

__all__ = ["Explorer", "make_figure", "float_slider", "int_slider", "figure_png"]


def figure_png(fig) -> str:
    """The figure as a base64 PNG string (the static picture GitHub shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.get_dpi())
    return base64.b64encode(buf.getvalue()).decode("ascii")


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
