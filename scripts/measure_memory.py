#!/usr/bin/env python
"""Peak resident memory of each lesson's kernel: ``python scripts/measure_memory.py [NOTEBOOK...]``.

Runs each lesson top to bottom with nbclient (in a scratch copy of ``notebooks/``, so the
committed notebooks are untouched) while a thread samples the kernel process's resident
set size (RSS, the kernel and any processes it started) every 50 ms with psutil. Prints
one row per lesson: peak RSS, RSS after the imports (the first code cell), and run time.

The budget is Binder's floor: a lesson's kernel stays under 1 GB (``--limit-mb``); the
script exits 1 when a lesson goes over it or fails to run. Timings on a busy machine are
inflated; memory is not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MB = 1024 * 1024


class RssSampler(threading.Thread):
    """Samples the RSS of a process and its children until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.latest = 0
        self._stop_event = threading.Event()

    def sample(self) -> int:
        try:
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return self.latest
        self.latest = total
        self.peak = max(self.peak, total)
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self.sample()
        self._stop_event.set()
        self.join()
        return self.peak


def measure(notebook: Path, workdir: Path, timeout: int = 900) -> dict:
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    row = {"lesson": notebook.name, "error": ""}
    start = time.perf_counter()
    with client.setup_kernel():
        sampler = RssSampler(client.km.provisioner.process.pid)
        sampler.start()
        first_code_done = False
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
                if cell.cell_type == "code" and not first_code_done:
                    first_code_done = True
                    row["after_imports_mb"] = sampler.sample() / MB
        except CellExecutionError as error:
            row["error"] = str(error).strip().splitlines()[-1][:200]
        finally:
            row["peak_mb"] = sampler.stop() / MB
    row["seconds"] = time.perf_counter() - start
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="lessons to measure (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--limit-mb", type=float, default=1024.0,
                        help="the memory budget per lesson (default: 1024 MB)")
    args = parser.parse_args(argv)

    lessons = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not lessons:
        print("no lesson notebooks found in notebooks/")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="flowkit-memory-"))
    try:
        shutil.copytree(NOTEBOOKS, scratch, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        rows = []
        for lesson in lessons:
            print(f"running {lesson.name} ...", flush=True)
            rows.append(measure(scratch / lesson.name if (scratch / lesson.name).exists() else lesson,
                                scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nPeak kernel memory (RSS of the kernel and its children), budget {args.limit_mb:.0f} MB:")
    print(f"  {'lesson':<34} {'peak MB':>8} {'imports MB':>10} {'run s':>7}  status")
    failed = False
    for row in rows:
        over = row["peak_mb"] > args.limit_mb
        status = "ERROR " + row["error"] if row["error"] else ("OVER BUDGET" if over else "ok")
        failed |= bool(row["error"]) or over
        print(f"  {row['lesson']:<34} {row['peak_mb']:8.0f} {row.get('after_imports_mb', 0):10.0f} "
              f"{row['seconds']:7.1f}  {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
