#!/usr/bin/env python
"""Execute lessons in place, as they are committed: ``python scripts/execute_notebooks.py NB...``.

Runs each notebook top to bottom in a fresh kernel (working directory ``notebooks/``),
stores the outputs without any widget state (the live widgets are rebuilt when a learner
runs the cell; saved state only adds weight), and prints the run time and the file size.
Exits 1 if a cell raises or a notebook ends up over the 600 kB budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
BUDGET_BYTES = 600 * 1024


def execute(path: Path, timeout: int) -> tuple[float, int]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=False)
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return seconds, path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        path = path.resolve()
        try:
            seconds, size = execute(path, args.timeout)
        except CellExecutionError as err:
            print(f"{path.name}: a cell raised\n{err}", file=sys.stderr)
            failed = True
            continue
        over = size > BUDGET_BYTES
        failed |= over
        print(f"{path.name}: {seconds:.1f} s, {size / 1024:.0f} kB"
              + ("  OVER THE 600 kB BUDGET" if over else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
