"""Every explorer of lessons 01-05 (and 07's threshold): fits a laptop, and its fast frames are exact.

An explorer that names its ``moving`` artists draws the rest of its figure once and, per
slider move, only those artists over it. Here each slider of each explorer is moved and
the fast frame is compared, pixel for pixel, with the figure drawn the ordinary way: an
artist that changes but was not listed would leave a stale picture and fail this test.
"""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.images import ImageRealNVP  # noqa: E402
from flowkit.widgets import (MAX_WIDTH_PX, lesson01, lesson02, lesson03, lesson04,  # noqa: E402
                             lesson05, lesson07, make_figure)
from flowkit.widgets._frames import FrameCache  # noqa: E402


@pytest.fixture(scope="module")
def moons():
    flow, history, x = lesson04.train_moons_flow(steps=40, num_couplings=4, hidden=16, n=2000,
                                                 snapshot_every=20)
    return flow, history, x


@pytest.fixture(scope="module")
def digits_flow():
    torch.manual_seed(0)
    model = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1)
    model(fk.data.dequantize(fk.data.digits("train")[:64]))  # initialise ActNorm
    return model.eval()


def _builders(moons, digits_flow):
    flow, history, x = moons
    test_moons = fk.data.two_moons(500, noise=0.1, seed=1)
    test_digits = fk.data.digits("test")[:8]
    return {
        "01 density": lesson01.density_explorer,
        "01 rectangles": lesson01.rectangles_explorer,
        "01 composition": lesson01.composition_explorer,
        "02 linear map": lesson02.linear_map_explorer,
        "02 jacobian": lesson02.jacobian_explorer,
        "03 coupling": lesson03.coupling_explorer,
        "03 jacobian": lesson03.jacobian_explorer,
        "04 scrubber": lambda: lesson04.training_scrubber(flow, history, x, test=test_moons,
                                                          entropy=1.0),
        "04 layers": lambda: lesson04.layer_explorer(flow, x, num_points=300),
        "04 true vs learned": lambda: lesson04.true_vs_learned(flow, history, test=test_moons,
                                                               entropy=1.0),
        "05 dequantization": lesson05.dequantization_explorer,
        "05 temperature": lambda: lesson05.temperature_explorer(digits_flow, n=4),
        "05 interpolation": lambda: lesson05.interpolation_explorer(digits_flow, test_digits,
                                                                    pairs=((0, 1), (2, 3)), steps=5),
        "05 scales": lambda: lesson05.scale_explorer(digits_flow, test_digits[:3], variants=3),
        "07 threshold": _threshold_explorer,
    }


def _threshold_explorer():
    g = torch.Generator().manual_seed(1)
    normal = torch.randn(20, generator=g) + 2.0
    scores = {"noise": torch.randn(12, generator=g) + 4.0,
              "inverted": torch.randn(9, generator=g) * 0.5 + 9.0}
    images = {"noise": torch.randint(0, 17, (12, 1, 8, 8), generator=g),
              "inverted": 16 - torch.randint(0, 17, (9, 8, 8), generator=g)}
    return lesson07.threshold_explorer(normal, scores, torch.randint(0, 17, (20, 1, 8, 8), generator=g),
                                       images)


NAMES = ["01 density", "01 rectangles", "01 composition", "02 linear map", "02 jacobian",
         "03 coupling", "03 jacobian", "04 scrubber", "04 layers", "04 true vs learned",
         "05 dequantization", "05 temperature", "05 interpolation", "05 scales", "07 threshold"]


def _moves(control):
    """A few values each control can take, away from where it starts."""
    if isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):
        span = control.max - control.min
        return [control.min + f * span for f in (0.8, 0.35, 0.36)] + [control.value]
    options = [o[1] if isinstance(o, tuple) else o for o in control.options]
    return options[1:] + options[:1]


@pytest.mark.parametrize("name", NAMES)
def test_explorer_fits_and_its_fast_frames_match_a_full_redraw(name, moons, digits_flow):
    explorer = _builders(moons, digits_flow)[name]()
    fig = explorer.figure
    try:
        width = fig.get_figwidth() * 100
        assert width <= MAX_WIDTH_PX, f"{name}: {width:.0f} px wide at 100 dpi"
        if explorer.frames is None:
            return
        canvas = fig.canvas
        assert isinstance(explorer.frames, FrameCache)
        for control_name, control in explorer.controls.items():
            for value in _moves(control):
                control.value = value
                explorer.frames.cached_frame(canvas)  # may rebuild the background
                fast = explorer.frames.cached_frame(canvas)  # certainly from the background
                full = explorer.frames.full_frame(canvas)
                differ = int((fast != full).any(axis=2).sum())
                assert differ == 0, (f"{name}: after {control_name} = {value!r}, {differ} pixels "
                                     "of the fast frame differ from a full redraw")
        # The static fallback shows the moving artists too.
        png = explorer._repr_mimebundle_()
        assert set(png) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
    finally:
        plt.close(fig)


def test_moving_artists_must_belong_to_the_figure():
    fig, ax = make_figure()
    other, other_ax = make_figure()
    line, = other_ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="not found in the figure"):
        FrameCache(fig, [line])
    with pytest.raises(TypeError, match="matplotlib artists"):
        FrameCache(fig, [3.0])
    plt.close(fig)
    plt.close(other)


@pytest.mark.parametrize("module", [lesson01, lesson02, lesson03, lesson05])
def test_lesson_figure_fits_a_laptop(module):
    fig = module.lesson_figure()
    assert fig.get_figwidth() * 100 <= MAX_WIDTH_PX
    plt.close(fig)


@pytest.mark.parametrize("moving", [False, True])
def test_a_canvas_draws_only_when_no_other_thread_is_drawing(moving):
    # JupyterLab may deliver widget messages on a second kernel thread (a subshell): a
    # canvas then draws while a cell saves another figure, and two concurrent text
    # renderings corrupt FreeType's shared fonts ("raster overflow"). Draws take turns.
    import threading

    from flowkit.widgets._base import Explorer, png_bytes
    from flowkit.widgets._frames import DRAW_LOCK

    fig, ax = make_figure(figsize=(3, 2))
    line, = ax.plot([0, 1], [0, 1])
    ax.set_title("$p(x_1)$")
    slider = widgets.FloatSlider(value=0.5, min=0, max=1)
    explorer = Explorer(widgets.VBox([fig.canvas]), fig, {"s": slider},
                        lambda: line.set_ydata([0, slider.value]),
                        moving=[line] if moving else None)
    for draw in (explorer.figure.canvas.draw, lambda: png_bytes(fig)):
        done = threading.Event()
        worker = threading.Thread(target=lambda: (draw(), done.set()))
        with DRAW_LOCK:
            worker.start()
            assert not done.wait(0.5), "drew while another thread held the draw lock"
        assert done.wait(30), "never drew after the lock was released"
        worker.join()
    plt.close(fig)
