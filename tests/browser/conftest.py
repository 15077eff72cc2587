"""Fixtures for the browser tests: one JupyterLab and one headless Chromium per session.

Run with ``python -m pytest -m browser tests/browser`` (the plain ``python -m pytest``
deselects them). Needs Debian's Chromium at /usr/bin/chromium (or FLOWKIT_CHROMIUM) and
the ``playwright`` Python package; Playwright's own browser download is not used.
Screenshots, the JupyterLab log and the latency table go to ``test-output/browser/``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from statistics import median

import pytest

import lab_harness as harness

LATENCY, RUN_SECONDS = harness.LATENCY, harness.RUN_SECONDS  # filled by the tests


@pytest.fixture(scope="session")
def lab_root():
    """A scratch copy of notebooks/ plus the harness's own small notebooks."""
    root = Path(tempfile.mkdtemp(prefix="flowkit-browser-"))
    harness.copy_notebooks(root)
    harness.write_trivial_slider_notebook(root)
    harness.write_explorer_probe_notebook(root)
    harness.write_broken_notebook(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(lab_root):
    server = harness.LabServer(lab_root, log_path=harness.OUTPUT / "jupyterlab.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_context():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright)
        context = browser.new_context()
        yield context
        context.close()
        browser.close()


@pytest.fixture(scope="session")
def trivial_slider(browser_context, lab):
    """The baseline for latency: a one-line ipympl slider, kept open all session."""
    page = harness.LessonPage.open(browser_context, lab, "zz_trivial_slider.ipynb")
    page.run_all()
    problems = page.problems()
    assert not problems, problems
    yield page.first_slider()
    page.close()


def pytest_terminal_summary(terminalreporter):
    if not (LATENCY or RUN_SECONDS):
        return
    lines = []
    if RUN_SECONDS:
        lines.append("Run All Cells in JupyterLab (wall time, s):")
        lines += [f"  {name:<34} {seconds:6.1f}" for name, seconds in RUN_SECONDS.items()]
    if LATENCY:
        lines += ["", "Slider latency, key press -> changed figure, median ms of each slider "
                      "(interleaved with the trivial one-line ipympl slider):",
                  f"  {'lesson':<30} {'slider':<22} {'figure px':>10} {'lesson':>8} {'trivial':>8}"
                  f" {'ratio':>6}"]
        ratios: dict[str, list[tuple[float, str]]] = {}
        for row in LATENCY:
            lesson, trivial = median(row["lesson_ms"]), median(row["trivial_ms"])
            ratio = lesson / trivial
            ratios.setdefault(row["lesson"], []).append((ratio, row["slider"]))
            flag = "" if ratio <= 1.5 else "  > 1.5x"
            lines.append(f"  {row['lesson'][:30]:<30} {row['slider'][:22]:<22} {row['canvas']:>10} "
                         f"{lesson:8.1f} {trivial:8.1f} {ratio:6.2f}{flag}")
        lines += ["", "Per lesson, ratio to the one-line slider (target: at most 1.5):",
                  f"  {'lesson':<30} {'sliders':>7} {'median':>7} {'worst':>6}  worst slider"]
        for lesson, values in ratios.items():
            worst = max(values)
            lines.append(f"  {lesson[:30]:<30} {len(values):7d} {median(r for r, _ in values):7.2f} "
                         f"{worst[0]:6.2f}  {worst[1]}" + ("" if worst[0] <= 1.5 else "  > 1.5x"))
    terminalreporter.write_sep("-", "flowkit browser measurements")
    for line in lines:
        terminalreporter.write_line(line)
    harness.OUTPUT.mkdir(parents=True, exist_ok=True)
    (harness.OUTPUT / "measurements.txt").write_text("\n".join(lines) + "\n")
