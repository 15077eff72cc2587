#!/usr/bin/env python
"""Write every explorer's fallback PNG and every lesson figure of lessons 01-05 to a folder,
and print their widths: ``python scripts/render_explorers.py OUTDIR [--lessons 01 02]``.

For looking at the layouts (every figure at most 820 px wide, labels legible) without a
browser. The explorers are built as ``scripts/time_explorers.py`` builds them.
"""

from __future__ import annotations

import argparse
import base64
import struct
import sys
from pathlib import Path

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_explorers import _explorers  # noqa: E402

from flowkit.widgets._base import png_bytes  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--lessons", nargs="+", default=["01", "02", "03", "04", "05"])
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    import importlib

    for lesson, name, factory in _explorers(args.lessons):
        explorer = factory()
        data = base64.b64decode(explorer._repr_mimebundle_()["image/png"])
        path = args.outdir / f"{lesson}_{name}.png"
        path.write_bytes(data)
        print(path.name, *struct.unpack(">II", data[16:24]), f"{len(data) // 1024} kB", flush=True)
        matplotlib.pyplot.close(explorer.figure)
    if not args.no_figures:
        for lesson in args.lessons:
            module = importlib.import_module(f"flowkit.widgets.lesson{lesson}")
            fig = module.lesson_figure()
            data = png_bytes(fig)
            path = args.outdir / f"{lesson}_lesson_figure.png"
            path.write_bytes(data)
            print(path.name, *struct.unpack(">II", data[16:24]), f"{len(data) // 1024} kB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
