"""Every lesson, as a learner meets it: JupyterLab, Run All Cells, then drag a slider.

For each notebook ``notebooks/NN_*.ipynb`` present when the tests are collected:

* Run All Cells finishes with no error output, no traceback and no JavaScript error;
* the first slider that sits beside an ipympl figure, moved with the keyboard
  (ArrowRight) and then dragged with the mouse, changes that figure's pixels;
* in a 1,280 x 800 window with the file browser open, no figure is wider than the
  notebook's output column (a canvas would be cut off, an image shrunk); a screenshot of
  each explorer goes to ``test-output/browser/``;
* the key-press-to-figure latency of every slider a learner can reach, interleaved with
  a trivial one-line ipympl slider, is recorded (per lesson: the worst slider and the
  median; printed at the end of the run and written to measurements.txt; no timed
  assertion: the machine's load decides the absolute numbers).

The module-scoped ``lesson`` fixture groups the three tests by lesson, so each lesson
runs once. ``-k latency`` runs only the benchmark (it still runs each lesson first).
"""

import pytest

import lab_harness as harness
from lab_harness import LATENCY, RUN_SECONDS

pytestmark = pytest.mark.browser

LESSONS = [path.name for path in harness.lesson_notebooks()]
PRESSES = 6  # per slider; every slider of every lesson is measured, so keep CI's time in check


@pytest.fixture(scope="module", params=LESSONS, ids=[name[:-6] for name in LESSONS])
def lesson(request, browser_context, lab):
    page = harness.LessonPage.open(browser_context, lab, request.param)
    page.run_all()
    RUN_SECONDS[request.param] = page.run_seconds
    yield page
    page.close()


def test_run_all_cells_without_errors(lesson):
    problems = lesson.problems()
    assert not problems, f"{lesson.name}:\n" + "\n".join(problems)


def test_slider_moves_the_figure_by_keyboard_and_mouse(lesson):
    known_problems = set(lesson.problems())  # test_run_all_cells_without_errors reports these
    slider = lesson.first_slider()
    shot = harness.OUTPUT / f"{lesson.name[:-6]}.png"
    slider.scroll_to_explorer()
    lesson.screenshot(shot)

    start = slider.value()
    key = "ArrowLeft" if slider.is_at_max() else "ArrowRight"
    before, after = slider.press(key)
    assert after != before, f"{lesson.name}: {key} on slider {slider.label!r} left the figure unchanged"
    assert slider.value() != start, f"{lesson.name}: {key} did not move slider {slider.label!r}"

    start = slider.value()
    before, after = slider.drag()
    assert after != before, f"{lesson.name}: dragging slider {slider.label!r} left the figure unchanged"
    assert slider.value() != start, f"{lesson.name}: the mouse did not move slider {slider.label!r}"
    lesson.wait_idle(timeout_s=120)  # let the kernel catch up with the drag
    slider.settle()
    slider.scroll_to_explorer()
    lesson.screenshot(shot)
    new_problems = [p for p in lesson.problems() if p not in known_problems]
    assert not new_problems, f"{lesson.name}: moving {slider.label!r} gave:\n" + "\n".join(new_problems)


def test_figures_fit_the_notebook_column(lesson):
    """At 1,280 x 800 with the file browser open, every figure fits the output column."""
    figures = lesson.figure_widths()
    assert figures, f"{lesson.name}: no figure found in the outputs"
    stem = lesson.name[:-6]
    seen = set()
    for number, slider in enumerate(lesson.sliders(visible_only=True)):
        if slider.canvas_id in seen:
            continue
        seen.add(slider.canvas_id)
        slider.scroll_to_explorer()
        lesson.screenshot(harness.OUTPUT / f"{stem}-explorer{len(seen)}.png")
    cut = [f"cell {f['cell']}: {f['kind']} {f['width']} px wide in a {f['available']} px column"
           for f in figures if f["cut"]]
    assert not cut, f"{lesson.name}: figures cut off or shrunk at 1,280 x 800:\n" + "\n".join(cut)


def test_slider_latency(lesson, trivial_slider):
    """Every slider a learner can reach, each interleaved with the one-line slider."""
    sliders = lesson.sliders(visible_only=True)
    assert sliders, f"{lesson.name}: no slider beside a figure"
    failures = []
    for slider in sliders:
        try:
            times = harness.measure_latency({"lesson": slider, "trivial": trivial_slider}, PRESSES)
        except TimeoutError as err:
            failures.append(str(err))
            continue
        LATENCY.append({"lesson": lesson.name, "slider": slider.label,
                        "canvas": slider.canvas_size(),
                        "lesson_ms": times["lesson"], "trivial_ms": times["trivial"]})
    assert not failures, f"{lesson.name}:\n" + "\n".join(failures)
