#!/usr/bin/env python
"""Time every explorer of lessons 01-05: ``python scripts/time_explorers.py [--lessons 01 02]``.

For each explorer and each of its sliders, moves the slider back and forth and reports
two medians (ms), the two costs of a slider move that happen in the kernel:

* ``update``: the explorer's Python update (new data into the artists), what
  ``Explorer.update`` runs on every slider change;
* ``frame``: what ipympl then does to send a picture: the figure drawn by Agg and the
  changed pixels encoded as a PNG (``canvas.draw()`` + ``canvas.get_diff_image()``).

Times are CPU time of this process (``time.process_time``), not wall time, so that other
work on a shared machine inflates them far less. It also prints the canvas size in
pixels (at 100 dpi, a device pixel ratio of 1) and the size of the fallback PNG a
notebook stores for the explorer. Lesson 04 trains a small
flow first (a few seconds); lesson 05 loads the pretrained digits model.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import ipywidgets as widgets  # noqa: E402
import torch  # noqa: E402


def _explorers(lessons: list[str]):
    """(lesson, name, factory) for every explorer of the chosen lessons."""
    from flowkit.widgets import lesson01, lesson02, lesson03, lesson04, lesson05

    if "01" in lessons:
        yield "01", "density_explorer", lesson01.density_explorer
        yield "01", "rectangles_explorer", lesson01.rectangles_explorer
        yield "01", "composition_explorer", lesson01.composition_explorer
    if "02" in lessons:
        yield "02", "linear_map_explorer", lesson02.linear_map_explorer
        yield "02", "jacobian_explorer", lesson02.jacobian_explorer
    if "03" in lessons:
        yield "03", "coupling_explorer", lesson03.coupling_explorer
        yield "03", "jacobian_explorer", lesson03.jacobian_explorer
    if "04" in lessons:
        import flowkit as fk

        flow, history, x = lesson04.train_moons_flow(steps=300, snapshot_every=25)
        test = fk.data.two_moons(4000, noise=0.1, seed=12345)
        yield "04", "training_scrubber", lambda: lesson04.training_scrubber(
            flow, history, x, test=test, entropy=1.0056)
        yield "04", "layer_explorer", lambda: lesson04.layer_explorer(flow, x, num_points=1000)
        yield "04", "true_vs_learned", lambda: lesson04.true_vs_learned(
            flow, history, noise=0.1, test=test, entropy=1.0056)
    if "05" in lessons:
        import flowkit as fk

        pretrained = fk.load_pretrained("digits-realnvp")
        test = fk.data.digits("test")
        yield "05", "dequantization_explorer", lesson05.dequantization_explorer
        yield "05", "temperature_explorer", lambda: lesson05.temperature_explorer(pretrained, n=16)
        yield "05", "interpolation_explorer", lambda: lesson05.interpolation_explorer(
            pretrained, test, steps=21)
        yield "05", "scale_explorer", lambda: lesson05.scale_explorer(pretrained, test[:10],
                                                                      variants=7)


def _two_values(control):
    """Two neighbouring values of a control, so every move changes something."""
    if isinstance(control, widgets.SelectionSlider) or hasattr(control, "options") and not hasattr(control, "step"):
        options = [o[1] if isinstance(o, tuple) else o for o in control.options]
        i = options.index(control.value)
        return control.value, options[i + 1 if i + 1 < len(options) else i - 1]
    step = control.step
    if control.value + step <= control.max:
        return control.value, control.value + step
    return control.value, control.value - step


def _frame(canvas) -> int:
    canvas.draw()
    png = canvas.get_diff_image()
    return len(png or b"")


def time_explorer(explorer, repeats: int = 50) -> dict[str, dict[str, float]]:
    canvas = explorer.figure.canvas
    _frame(canvas)
    rows = {}
    for name, control in explorer.controls.items():
        if not hasattr(control, "value") or isinstance(control, (widgets.ToggleButtons, widgets.Dropdown,
                                                                 widgets.Checkbox)):
            continue
        first, second = _two_values(control)
        updates, frames = [], []
        for i in range(repeats):
            control.value = second if i % 2 == 0 else first  # fires update() once
            start = time.process_time()
            explorer.update()
            updates.append(time.process_time() - start)
            start = time.process_time()
            _frame(canvas)
            frames.append(time.process_time() - start)
        rows[name] = {"update": 1e3 * statistics.median(updates),
                      "frame": 1e3 * statistics.median(frames)}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", nargs="+", default=["01", "02", "03", "04", "05"])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"{'lesson':<6} {'explorer':<24} {'slider':<10} {'canvas px':>10} {'png kB':>7} "
          f"{'update ms':>9} {'frame ms':>9}")
    for lesson, name, factory in _explorers(args.lessons):
        explorer = factory()
        width, height = (round(v) for v in explorer.figure.bbox.size)
        png_kb = len(base64.b64decode(explorer._repr_mimebundle_()["image/png"])) / 1024
        for slider, t in time_explorer(explorer, args.repeats).items():
            print(f"{lesson:<6} {name:<24} {slider[:10]:<10} {f'{width}x{height}':>10} {png_kb:7.0f} "
                  f"{t['update']:9.2f} {t['frame']:9.2f}", flush=True)
        matplotlib.pyplot.close(explorer.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
