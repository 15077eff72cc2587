"""The explorer pattern: sliders fire updates that change artists in place."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import ipywidgets as widgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from flowkit.widgets import Explorer, float_slider, make_figure  # noqa: E402


def test_explorer_updates_in_place_and_renders_a_static_png():
    fig, ax = make_figure()
    line, = ax.plot(np.linspace(0, 1, 5), np.zeros(5))
    slope = float_slider("slope", 1.0, 0.0, 2.0)

    def update():
        line.set_ydata(slope.value * np.linspace(0, 1, 5))
        fig.canvas.draw_idle()

    explorer = Explorer(widgets.VBox([slope, fig.canvas]), fig, {"slope": slope}, update)
    assert line.get_ydata()[-1] == 1.0  # update ran once on construction
    slope.value = 1.5
    assert line.get_ydata()[-1] == 1.5
    explorer.set(slope=0.25)
    assert line.get_ydata()[-1] == 0.25
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    with pytest.raises(KeyError, match="controls are"):
        explorer.set(slop=1.0)
