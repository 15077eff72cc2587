"""The harness itself: it sees a figure change, and it reports a failing cell."""

import pytest

import lab_harness as harness

pytestmark = pytest.mark.browser


def test_explorer_probe_slider_moves_the_figure_by_key_and_by_mouse(browser_context, lab,
                                                                     trivial_slider):
    page = harness.LessonPage.open(browser_context, lab, "zz_explorer_probe.ipynb")
    try:
        page.run_all()
        assert page.problems() == []
        slider = page.first_slider()
        assert slider.label == "waves"
        start = slider.value()
        before, after = slider.press("ArrowRight")
        assert after != before and slider.value() != start
        before, after = slider.drag()
        assert after != before
        # The Explorer pattern itself, next to the raw one-line slider.
        times = harness.measure_latency({"probe": slider, "trivial": trivial_slider}, presses=5)
        harness.LATENCY.append({"lesson": "(probe: flowkit Explorer)", "slider": slider.label,
                                "canvas": slider.canvas_size(),
                                "lesson_ms": times["probe"], "trivial_ms": times["trivial"]})
    finally:
        page.close()


def test_a_raising_cell_is_reported(browser_context, lab):
    page = harness.LessonPage.open(browser_context, lab, "zz_broken.ipynb")
    try:
        page.run_all()
        problems = "\n".join(page.problems())
        assert "ValueError: deliberate failure" in problems
        assert "Traceback" in problems
    finally:
        page.close()
