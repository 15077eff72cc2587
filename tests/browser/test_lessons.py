"""Every lesson, as a learner meets it: JupyterLab, Run All Cells, then drag a slider.

For each notebook ``notebooks/NN_*.ipynb`` present when the tests are collected:

* Run All Cells finishes with no error output, no traceback and no JavaScript error;
* the first slider that sits beside an ipympl figure, moved with the keyboard
  (ArrowRight) and then dragged with the mouse, changes that figure's pixels;
* the key-press-to-figure latency of that slider, interleaved with a trivial one-line
  ipympl slider, is recorded (printed at the end of the run; no timed assertion).

The module-scoped ``lesson`` fixture groups the three tests by lesson, so each lesson
runs once. ``-k latency`` runs only the benchmark (it still runs each lesson first).
"""

import pytest

import lab_harness as harness
from lab_harness import LATENCY, RUN_SECONDS

pytestmark = pytest.mark.browser

LESSONS = [path.name for path in harness.lesson_notebooks()]
PRESSES = 10


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


def test_slider_latency(lesson, trivial_slider):
    slider = lesson.first_slider()
    times = harness.measure_latency({"lesson": slider, "trivial": trivial_slider}, PRESSES)
    LATENCY.append({"lesson": lesson.name, "slider": slider.label, "canvas": slider.canvas_size(),
                    "lesson_ms": times["lesson"], "trivial_ms": times["trivial"]})
    assert len(times["lesson"]) == PRESSES
