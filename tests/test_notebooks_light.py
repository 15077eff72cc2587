"""The committed notebooks stay light: they open fast in JupyterLab and on Binder.

Every lesson ``notebooks/NN_*.ipynb`` as committed (outputs included):

* weighs at most 600 kB, and all of them together at most 5 MB;
* holds no saved widget state (the live widgets are rebuilt when a cell runs);
* never stores the same picture twice: not as ``image/png`` and again as a data-URL
  PNG inside ``text/html`` (what an ipympl canvas left to Jupyter stores), and not the
  same PNG bytes in two outputs;
* has no PNG wider than 820 px, so every figure fits the notebook column of a
  1,280 x 800 window with JupyterLab's file browser open.

A notebook that fails here needs re-executing with ``scripts/execute_notebooks.py``
after its static figures go through ``flowkit.widgets.show_static``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_NOTEBOOK_BYTES = 600 * 1024
MAX_TOTAL_BYTES = 5 * 1024 * 1024
MAX_PNG_WIDTH = 820
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URL_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)")


def _ids(paths):
    return [p.stem for p in paths]


def _pictures(nb: dict):
    """``(cell index, output index, where, png bytes)`` for every PNG in the outputs."""
    for i, cell in enumerate(nb.get("cells", [])):
        for j, output in enumerate(cell.get("outputs", []) or []):
            data = output.get("data", {}) or {}
            png = data.get("image/png")
            if png:
                text = "".join(png) if isinstance(png, list) else png
                yield i, j, "image/png", base64.b64decode(text)
            html = data.get("text/html")
            if html:
                text = "".join(html) if isinstance(html, list) else html
                for match in DATA_URL_PNG.finditer(text):
                    try:
                        yield i, j, "text/html data URL", base64.b64decode(
                            re.sub(r"\s", "", match.group(1)))
                    except binascii.Error:
                        continue


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first 24 bytes)."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def test_there_are_lessons_to_check():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_at_most_600_kB(path):
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, f"{path.name} weighs {size / 1024:.0f} kB (budget 600 kB)"


def test_all_notebooks_together_are_at_most_5_MB():
    sizes = {p.name: p.stat().st_size for p in NOTEBOOKS}
    total = sum(sizes.values())
    assert total <= MAX_TOTAL_BYTES, (
        f"the notebooks weigh {total / 2**20:.2f} MB together (budget 5 MB): "
        + ", ".join(f"{name} {size / 1024:.0f} kB" for name, size in sizes.items()))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_saved_widget_state(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb.get("metadata", {}), (
        f"{path.name} stores widget state in its metadata; re-execute it with "
        "scripts/execute_notebooks.py (which saves none)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_picture_is_stored_twice(path):
    nb = json.loads(path.read_text())
    seen: dict[str, tuple[int, int, str]] = {}
    repeats = []
    for cell, output, where, data in _pictures(nb):
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            first = seen[digest]
            place = ("the same output" if first[:2] == (cell, output)
                     else f"cell {first[0]} output {first[1]}")
            repeats.append(f"cell {cell} output {output} ({where}) repeats the picture of "
                           f"{place} ({first[2]})")
        else:
            seen[digest] = (cell, output, where)
    for i, cell in enumerate(nb.get("cells", [])):
        for j, output in enumerate(cell.get("outputs", []) or []):
            data = output.get("data", {}) or {}
            html = data.get("text/html")
            html = "".join(html) if isinstance(html, list) else (html or "")
            if "image/png" in data and DATA_URL_PNG.search(html):
                repeats.append(f"cell {i} output {j} holds a PNG and a data-URL picture in its "
                               "HTML (a figure canvas left to Jupyter: use show_static)")
    assert not repeats, f"{path.name}:\n" + "\n".join(sorted(set(repeats)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_picture_fits_820_px(path):
    nb = json.loads(path.read_text())
    too_wide = []
    for cell, output, where, data in _pictures(nb):
        width, height = png_size(data)
        if width > MAX_PNG_WIDTH:
            too_wide.append(f"cell {cell} output {output} ({where}): {width} x {height} px")
    assert not too_wide, (f"{path.name}: pictures wider than {MAX_PNG_WIDTH} px:\n"
                          + "\n".join(too_wide))


def test_png_size_reads_the_header():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (821, 7)).save(buf, format="PNG")
    assert png_size(buf.getvalue()) == (821, 7)
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))
