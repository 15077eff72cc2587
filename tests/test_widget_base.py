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


def test_fallback_png_is_stored_once_and_fits_820_px():
    import base64
    import struct

    from flowkit.widgets import MAX_WIDTH_PX
    from flowkit.widgets._base import png_bytes

    fig, ax = make_figure(figsize=(12, 3))  # wider than a laptop's column on purpose
    line, = ax.plot(np.linspace(0, 1, 5), np.zeros(5))
    ax.set_ylim(-0.1, 2.1)
    slope = float_slider("slope", 1.0, 0.0, 2.0)
    fig.set_dpi(200)  # what ipympl does on a HiDPI screen: the fallback must not double

    def update():
        line.set_ydata(slope.value * np.linspace(0, 1, 5))
        fig.canvas.draw_idle()

    explorer = Explorer(widgets.VBox([slope, fig.canvas]), fig, {"slope": slope}, update,
                        moving=[line])
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
    png = base64.b64decode(bundle["image/png"])
    width, height = struct.unpack(">II", png[16:24])
    assert width == MAX_WIDTH_PX and height == round(3 * MAX_WIDTH_PX / 12)
    # Palette PNGs are a fraction of the RGBA bytes of the same picture.
    assert len(png_bytes(fig)) < len(png_bytes(fig, palette=False))
    # The moving line (matplotlib's first colour) is in the fallback, although the
    # figure's own draw leaves it out: frames draw it over a cached background.
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    blue = np.abs(pixels - np.array([31, 119, 180])).sum(axis=2) < 40
    assert blue.sum() > 200  # a diagonal across the axes; none if the line were left out
