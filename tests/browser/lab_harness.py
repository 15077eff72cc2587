"""Drive the course in a real JupyterLab through headless Chromium (Playwright).

The harness starts JupyterLab on 127.0.0.1 (random free port, random token) over a
temporary copy of ``notebooks/``, so the committed notebooks are never modified, and
gives a small API a test can read like a learner's session:

    lab = LabServer(root_dir).start()
    page = LessonPage.open(browser, lab, "01_change_of_variables.ipynb")
    page.run_all()                      # "Run All Cells", then wait for an idle kernel
    page.problems()                     # tracebacks, error outputs, widget errors, JS errors
    slider = page.first_slider()        # the first slider that sits beside an ipympl figure
    page.sliders(visible_only=True)     # every slider a learner can reach now
    slider.press("ArrowRight")          # keyboard; returns the canvas signature after
    slider.drag(40)                     # mouse drag of the handle by 40 px
    measure_latency({"a": s1, "b": s2}) # ms from key press to the changed figure, interleaved
    page.figure_widths()                # every figure's width against the notebook column

Pages open at 1,280 x 800 (a laptop) with the file browser open, as a learner sees them.

Playwright is imported lazily, so collecting the test files needs no browser.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = os.environ.get("FLOWKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# Measurements the tests collect; conftest prints them at the end of the session.
LATENCY: list[dict] = []
RUN_SECONDS: dict[str, float] = {}


def lesson_notebooks() -> list[Path]:
    """Every lesson notebook that exists right now."""
    return sorted(NOTEBOOKS.glob(LESSON_GLOB))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- notebooks

def _write_notebook(path: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, path)
    return path


def write_trivial_slider_notebook(folder: Path) -> Path:
    """The baseline: one ipympl line whose frequency a slider sets (the one-line update)."""
    return _write_notebook(folder / "zz_trivial_slider.ipynb", [
        "%matplotlib widget\n"
        "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nimport numpy as np",
        "with plt.ioff():\n    fig, ax = plt.subplots(figsize=(8, 3.5))\n"
        "x = np.linspace(0, 2 * np.pi, 200)\nline, = ax.plot(x, np.sin(x))\n"
        "slider = widgets.FloatSlider(value=1.0, min=0.5, max=5.0, step=0.1, description='freq')\n"
        "slider.observe(lambda change: (line.set_ydata(np.sin(change.new * x)), fig.canvas.draw_idle()),"
        " names='value')\n"
        "widgets.VBox([slider, fig.canvas])",
    ])


def write_explorer_probe_notebook(folder: Path) -> Path:
    """A lesson-shaped probe: an IntSlider driving an ipympl figure via flowkit's Explorer."""
    return _write_notebook(folder / "zz_explorer_probe.ipynb", [
        "%matplotlib widget\nimport numpy as np\nimport flowkit as fk\n"
        "from flowkit.widgets import Explorer, int_slider, make_figure\nimport ipywidgets as widgets",
        "def wave_explorer():\n"
        "    fig, ax = make_figure()\n"
        "    x = np.linspace(0, 1, 400)\n"
        "    line, = ax.plot(x, np.sin(2 * np.pi * x))\n"
        "    ax.set_ylim(-1.1, 1.1)\n"
        "    waves = int_slider('waves', 1, 1, 8)\n"
        "    def update():\n"
        "        line.set_ydata(np.sin(2 * np.pi * waves.value * x))\n"
        "        fig.canvas.draw_idle()\n"
        "    return Explorer(widgets.VBox([waves, fig.canvas]), fig, {'waves': waves}, update,\n"
        "                    {'line': line})\n"
        "explorer = wave_explorer()\nexplorer",
    ])


def write_broken_notebook(folder: Path) -> Path:
    """A notebook whose second cell raises: the harness must report it."""
    return _write_notebook(folder / "zz_broken.ipynb", [
        "x = 1",
        "def inner():\n    raise ValueError('deliberate failure for the harness self-test')\ninner()",
        "y = 2",
    ])


# --------------------------------------------------------------------------- server

class LabServer:
    """JupyterLab on 127.0.0.1 with a random port and token, over ``root_dir``."""

    def __init__(self, root_dir: Path, log_path: Path | None = None):
        self.root_dir = Path(root_dir)
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.home = Path(tempfile.mkdtemp(prefix="flowkit-lab-home-"))
        self.log_path = log_path or (self.home / "jupyterlab.log")
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path}{sep}token={self.token}"

    def _write_settings(self) -> tuple[Path, Path]:
        """Isolated config: no news or update checks (no network here), fresh workspaces."""
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "jupyter_server_config.json").write_text(json.dumps({
            "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
        }))
        settings = self.home / "user-settings"
        notify = settings / "@jupyterlab" / "apputils-extension"
        notify.mkdir(parents=True, exist_ok=True)
        (notify / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        return config, settings

    def start(self, timeout: float = 90.0) -> "LabServer":
        config, settings = self._write_settings()
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("MPLBACKEND", None)
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
            f"--IdentityProvider.token={self.token}",  # the current name of ServerApp.token
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.root_dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # The server's own process group: the server and the kernels it started.
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def copy_notebooks(target: Path) -> Path:
    """A scratch copy of ``notebooks/`` (lessons and anything they read beside them)."""
    shutil.copytree(NOTEBOOKS, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return target


def launch_chromium(playwright, headless: bool = True):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium "
                           "(apt-get install -y chromium) or set FLOWKIT_CHROMIUM")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=headless)


# --------------------------------------------------------------------------- page

# Installed before JupyterLab loads: timestamps every draw onto a watched canvas and the
# signature (a hash of its pixels) right after it, and the time of the latest key press.
INIT_SCRIPT = r"""
(() => {
  window.__fk = {lastKey: null};
  window.__fkSignature = (canvas) => {
    if (!canvas.width || !canvas.height) return 'empty';
    const ctx = canvas.getContext('2d');
    const data = new Uint32Array(ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
    let h = 2166136261 >>> 0;
    for (let i = 0; i < data.length; i++) { h = Math.imul(h ^ data[i], 16777619) >>> 0; }
    return canvas.width + 'x' + canvas.height + ':' + h.toString(16);
  };
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const result = drawImage.apply(this, args);
    const canvas = this.canvas;
    if (canvas && canvas.__fkDraws) {
      const t = performance.now();
      canvas.__fkDraws.push({t, signature: window.__fkSignature(canvas)});
    }
    return result;
  };
  document.addEventListener('keydown', () => { window.__fk.lastKey = performance.now(); }, true);
})();
"""

# Finds the notebook widget for a path; waits for its context, session and kernel.
FIND_PANEL_JS = r"""
async (path) => {
  const deadline = Date.now() + 60000;
  while (!(window.jupyterapp && window.jupyterapp.shell)) {
    if (Date.now() > deadline) throw new Error('window.jupyterapp never appeared');
    await new Promise(r => setTimeout(r, 100));
  }
  const app = window.jupyterapp;
  await app.started; await app.restored;
  let panel = null;
  while (!panel) {
    for (const w of app.shell.widgets('main')) {
      if (w.context && w.context.path === path && w.content && w.sessionContext) panel = w;
    }
    if (!panel) {
      if (Date.now() > deadline) throw new Error('notebook ' + path + ' did not open');
      await new Promise(r => setTimeout(r, 100));
    }
  }
  await panel.context.ready;
  await panel.sessionContext.ready;
  while (!(panel.sessionContext.session && panel.sessionContext.session.kernel)) {
    if (Date.now() > deadline) throw new Error('no kernel for ' + path);
    await new Promise(r => setTimeout(r, 100));
  }
  window.__fkPanel = panel;
  // Errors raised outside a cell (a widget callback) reach the page only as kernel
  // messages (JupyterLab shows them in its log console): collect them.
  window.__fkKernelErrors = [];
  const watch = (kernel) => kernel && kernel.iopubMessage.connect((_, msg) => {
    const type = msg.header.msg_type;
    const parent = msg.parent_header && msg.parent_header.msg_type;
    if (parent === 'execute_request') return;  // cell outputs are checked in the notebook
    if (type === 'error') {
      // The last frames say where it was raised (ANSI colours stripped).
      const where = (msg.content.traceback || []).join('\n').replace(/\x1b\[[0-9;]*m/g, '').slice(-6000);
      window.__fkKernelErrors.push(`${msg.content.ename}: ${msg.content.evalue} (in a ${parent})\n${where}`);
    } else if (type === 'stream' && msg.content.name === 'stderr' &&
               String(msg.content.text).includes('Traceback')) {
      window.__fkKernelErrors.push(`traceback on stderr (in a ${parent}): ` +
                                  String(msg.content.text).slice(-500));
    }
  });
  watch(panel.sessionContext.session.kernel);
  panel.sessionContext.kernelChanged.connect((_, change) => watch(change.newValue));
  return panel.sessionContext.session.kernel.name;
}
"""

# "Run All Cells" for the notebook in front; resolves when every cell has run.
RUN_ALL_JS = r"""
async () => {
  const app = window.jupyterapp, panel = window.__fkPanel;
  app.shell.activateById(panel.id);
  const ok = await app.commands.execute('notebook:run-all-cells');
  return ok;
}
"""

KERNEL_IDLE_JS = r"""
() => {
  const panel = window.__fkPanel;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type === 'code' && cell.executionState === 'running') return false;
  }
  return !document.querySelector('.jp-InputPrompt') ||
         ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
}
"""

# Problems in the notebook's outputs, read from the model and from the rendered page.
PROBLEMS_JS = r"""
() => {
  const panel = window.__fkPanel, problems = [];
  const cells = panel.content.model.cells;
  let unexecuted = 0;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    const source = cell.sharedModel.getSource();
    if (source.trim() && cell.executionCount === null) unexecuted += 1;
    const outputs = cell.outputs;
    for (let j = 0; j < outputs.length; j++) {
      const out = outputs.get(j).toJSON();
      if (out.output_type === 'error') {
        problems.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      } else if (out.output_type === 'stream' && out.name === 'stderr' &&
                 String(out.text).includes('Traceback')) {
        problems.push(`cell ${i}: traceback on stderr: ${String(out.text).slice(0, 500)}`);
      }
    }
  }
  if (unexecuted) problems.push(`${unexecuted} code cell(s) never ran`);
  const node = panel.content.node;
  for (const el of node.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    if (el.textContent.includes('Traceback'))
      problems.push('rendered stderr/error output: ' + el.textContent.slice(0, 500));
  }
  for (const el of node.querySelectorAll('.jp-OutputArea-output')) {
    const text = el.textContent || '';
    if (text.includes('Error displaying widget') || text.includes('Error rendering'))
      problems.push('widget failed to display: ' + text.slice(0, 300));
  }
  for (const error of (window.__fkKernelErrors || [])) problems.push('kernel error: ' + error);
  return [...new Set(problems)];
}
"""

# Every slider handle that has an ipympl canvas inside the same widget tree, in page order.
SLIDERS_JS = r"""
() => {
  const panel = window.__fkPanel, found = [];
  const handles = panel.content.node.querySelectorAll('.widget-slider .noUi-handle');
  handles.forEach((handle, index) => {
    let node = handle.parentElement, canvas = null;
    while (node && node !== panel.content.node && !node.classList.contains('jp-OutputArea-output')) {
      canvas = node.querySelector('.jupyter-matplotlib-canvas-div canvas');
      if (canvas) break;
      node = node.parentElement;
    }
    if (!canvas) {  // the explorer's own output area, as a last resort
      const area = handle.closest('.jp-OutputArea-output');
      canvas = area && area.querySelector('.jupyter-matplotlib-canvas-div canvas');
    }
    if (!canvas) return;
    const visible = handle.offsetParent !== null;  // a hidden group (another map chosen)
    handle.dataset.fkSlider = String(index);
    if (canvas.dataset.fkCanvas === undefined) {  // one figure may serve several sliders
      window.__fkCanvasCount = (window.__fkCanvasCount || 0) + 1;
      canvas.dataset.fkCanvas = String(window.__fkCanvasCount);
    }
    const slider = handle.closest('.widget-slider');
    const label = slider && slider.querySelector('.widget-label');
    found.push({index, canvas: canvas.dataset.fkCanvas, visible,
                label: label ? label.textContent.trim() : ''});
  });
  return found;
}
"""


# Every figure in the notebook's outputs (ipympl canvases and images), with the width
# the output column offers it. A canvas wider than that is cut off (it scrolls); an image
# wider than that is shrunk by JupyterLab, labels and all.
FIGURE_WIDTHS_JS = r"""
() => {
  const panel = window.__fkPanel, found = [];
  const notebook = panel.content.node.getBoundingClientRect();
  const cells = [...panel.content.node.querySelectorAll('.jp-Cell')];
  cells.forEach((cell, index) => {
    for (const area of cell.querySelectorAll('.jp-OutputArea-output')) {
      const available = area.clientWidth;
      const areaRight = area.getBoundingClientRect().left + available;
      const right = Math.min(areaRight, notebook.right);
      for (const canvas of area.querySelectorAll('.jupyter-matplotlib-canvas-div canvas')) {
        const r = canvas.getBoundingClientRect();
        if (!r.width) continue;
        found.push({kind: 'canvas', cell: index, width: Math.round(r.width),
                    available: Math.round(Math.min(available, notebook.width)),
                    cut: r.right > right + 1});
        break;  // ipympl stacks a second canvas (the rubber band) on top of the first
      }
      for (const img of area.querySelectorAll('img')) {
        if (!img.naturalWidth) continue;
        const r = img.getBoundingClientRect();
        found.push({kind: 'image', cell: index, width: img.naturalWidth,
                    available: Math.round(Math.min(available, notebook.width)),
                    cut: img.naturalWidth > available + 1 || r.right > right + 1});
      }
    }
  });
  return found;
}
"""

OPEN_FILE_BROWSER_JS = r"""
async () => {
  const app = window.jupyterapp;
  await app.commands.execute('filebrowser:activate');
  if (app.shell.leftCollapsed) app.shell.expandLeft();
  return !app.shell.leftCollapsed;
}
"""


@dataclass
class Slider:
    page: "LessonPage"
    index: int
    canvas_id: str
    label: str
    visible: bool = True

    @property
    def handle(self):
        return self.page.page.locator(f'[data-fk-slider="{self.index}"]')

    @property
    def canvas(self):
        return self.page.page.locator(f'canvas[data-fk-canvas="{self.canvas_id}"]')

    def value(self) -> str:
        """The slider's readout, as the learner sees it (aria-valuenow is rounded)."""
        return self.handle.evaluate(
            "h => { const s = h.closest('.widget-slider');"
            " const r = s && s.querySelector('.widget-readout');"
            " return r ? r.textContent.trim() : h.getAttribute('aria-valuetext'); }")

    def is_at_max(self) -> bool:
        # aria-valuenow is a number for every slider (a SelectionSlider's is its index);
        # aria-valuetext may be a label.
        top = self.handle.get_attribute("aria-valuemax")
        for attribute in ("aria-valuenow", "aria-valuetext"):
            try:
                return float(self.handle.get_attribute(attribute)) >= float(top) - 1e-9
            except (TypeError, ValueError):
                continue
        return False

    def scroll_to_explorer(self) -> None:
        """Scroll so the widget holding this slider starts at the top of the notebook view."""
        self.handle.evaluate(
            "h => (h.closest('.jp-OutputArea-output') || h).scrollIntoView({block: 'start'})")
        self.page.page.wait_for_timeout(300)

    def canvas_size(self) -> str:
        """The figure's size in device pixels, as ipympl draws it."""
        return self.canvas.evaluate("c => c.width + 'x' + c.height")

    def signature(self) -> str:
        return self.canvas.evaluate("c => window.__fkSignature(c)")

    def _wait_for_change(self, before: str, timeout_ms: float) -> str:
        self.page.page.wait_for_function(
            "([c, before]) => window.__fkSignature(c) !== before",
            arg=[self.canvas.element_handle(), before], timeout=timeout_ms)
        return self.signature()

    def settle(self, quiet_ms: float = 300, timeout_ms: float = 10000) -> None:
        """Wait until the canvas has not been redrawn for ``quiet_ms``."""
        self.canvas.evaluate("c => { c.__fkDraws = c.__fkDraws || []; }")
        deadline = time.monotonic() + timeout_ms / 1000
        last = -1
        while time.monotonic() < deadline:
            count = self.canvas.evaluate("c => c.__fkDraws.length")
            if count == last:
                return
            last = count
            self.page.page.wait_for_timeout(quiet_ms)

    def press(self, key: str = "ArrowRight", timeout_ms: float = 30000) -> tuple[str, str]:
        """Focus the handle, press ``key``; returns the canvas signature before and after."""
        self.handle.scroll_into_view_if_needed()
        self.settle()
        before = self.signature()
        self.handle.focus()
        self.page.page.keyboard.press(key)
        return before, self._wait_for_change(before, timeout_ms)

    def drag(self, dx: float | None = None, timeout_ms: float = 30000) -> tuple[str, str]:
        """Drag the handle with the mouse by ``dx`` pixels (default: half the way to the
        farther end of the track)."""
        page = self.page.page
        self.handle.scroll_into_view_if_needed()
        self.settle()
        box = self.handle.bounding_box()
        track = self.handle.evaluate(
            "h => { const r = h.closest('.noUi-target').getBoundingClientRect();"
            " return {left: r.left, right: r.right}; }")
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        if dx is None:
            room_right, room_left = track["right"] - x, x - track["left"]
            dx = room_right / 2 if room_right >= room_left else -room_left / 2
        before = self.signature()
        page.mouse.move(x, y)
        page.mouse.down()
        steps = 8
        for i in range(1, steps + 1):
            page.mouse.move(x + dx * i / steps, y)
            page.wait_for_timeout(30)
        page.mouse.up()
        return before, self._wait_for_change(before, timeout_ms)

    def timed_press(self, key: str, timeout_ms: float = 20000) -> float | None:
        """Press ``key`` on the focused handle; ms from the key press to the first draw
        that changed the figure (read from the draw log, so polling costs nothing)."""
        page = self.page.page
        self.settle(quiet_ms=150)
        before = self.signature()
        canvas = self.canvas.element_handle()
        canvas.evaluate("c => { c.__fkDraws = []; }")
        self.handle.focus()
        page.keyboard.press(key)
        page.wait_for_function(
            "([c, before]) => c.__fkDraws.some(d => d.signature !== before)",
            arg=[canvas, before], timeout=timeout_ms)
        elapsed = page.evaluate(
            "([c, before]) => { const d = c.__fkDraws.find(d => d.signature !== before);"
            " return d.t - window.__fk.lastKey; }", [canvas, before])
        return float(elapsed)

    def latency_keys(self) -> list[str]:
        """Alternate right and left (left first at the maximum): every press changes the
        value, and the slider ends where it started."""
        self.handle.scroll_into_view_if_needed()
        return ["ArrowLeft", "ArrowRight"] if self.is_at_max() else ["ArrowRight", "ArrowLeft"]


def measure_latency(sliders: dict[str, Slider], presses: int = 10) -> dict[str, list[float]]:
    """Key-press-to-figure latency of several sliders, interleaved press by press so that
    load on the machine hits them all alike. Returns ms per press for each name; a press
    that never changed the figure raises ``TimeoutError`` naming the slider."""
    keys = {name: slider.latency_keys() for name, slider in sliders.items()}
    times: dict[str, list[float]] = {name: [] for name in sliders}
    for i in range(presses):
        for name, slider in sliders.items():
            try:
                times[name].append(slider.timed_press(keys[name][i % 2]))
            except Exception as err:  # noqa: BLE001 - Playwright's timeout, reported by name
                raise TimeoutError(f"slider {slider.label!r}: {keys[name][i % 2]} did not change "
                                   f"the figure ({type(err).__name__})") from err
    return times


@dataclass
class LessonPage:
    page: object
    name: str
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    run_seconds: float = 0.0

    @classmethod
    def open(cls, context, lab: LabServer, name: str, viewport=(1280, 800),
             file_browser: bool = True) -> "LessonPage":
        page = context.new_page()
        page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        self = cls(page, name)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", lambda msg: self.console_errors.append(msg.text)
                if msg.type == "error" else None)
        page.add_init_script(INIT_SCRIPT)
        # One workspace per page: a second tab on the default workspace would be
        # redirected by JupyterLab to a new one mid-load.
        workspace = "fk-" + secrets.token_hex(4)
        page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{name}"),
                  wait_until="domcontentloaded", timeout=90000)
        page.evaluate(FIND_PANEL_JS, name)
        if file_browser:
            page.evaluate(OPEN_FILE_BROWSER_JS)
        self.wait_idle(timeout_s=120)
        return self

    def wait_idle(self, timeout_s: float = 300) -> None:
        """Wait for an idle kernel with no cell running, stable for a moment."""
        deadline = time.monotonic() + timeout_s
        stable = 0
        while stable < 3:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: kernel still busy after {timeout_s:.0f} s")
            stable = stable + 1 if self.page.evaluate(KERNEL_IDLE_JS) else 0
            self.page.wait_for_timeout(200)

    def run_all(self, timeout_s: float = 420) -> float:
        """Run All Cells as a learner would; returns the wall time in seconds."""
        start = time.monotonic()
        self.page.evaluate(RUN_ALL_JS)
        self.wait_idle(timeout_s=timeout_s)
        self.page.wait_for_timeout(500)  # let the last widget messages land
        self.run_seconds = time.monotonic() - start
        return self.run_seconds

    def problems(self) -> list[str]:
        found = list(self.page.evaluate(PROBLEMS_JS))
        found += [f"JavaScript error: {e}" for e in self.page_errors]
        return found

    def sliders(self, visible_only: bool = False) -> list[Slider]:
        # Rendering of widgets is asynchronous: give them a moment to appear.
        for _ in range(50):
            found = self.page.evaluate(SLIDERS_JS)
            if found:
                break
            self.page.wait_for_timeout(200)
        sliders = [Slider(self, s["index"], s["canvas"], s["label"], s["visible"]) for s in found]
        return [s for s in sliders if s.visible] if visible_only else sliders

    def figure_widths(self) -> list[dict]:
        """Every figure in the outputs: kind, cell, width, the column's width, cut off?"""
        return list(self.page.evaluate(FIGURE_WIDTHS_JS))

    def first_slider(self) -> Slider:
        sliders = self.sliders(visible_only=True)
        if not sliders:
            raise AssertionError(f"{self.name}: no slider beside an ipympl figure was found")
        return sliders[0]

    def screenshot(self, path: Path, element=None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        (element or self.page).screenshot(path=str(path))
        return path

    def close(self) -> None:
        try:
            self.page.evaluate(
                "() => window.__fkPanel && window.__fkPanel.sessionContext.shutdown()")
        except Exception:  # noqa: BLE001 - the page may already be gone
            pass
        self.page.close()
