"""Cheaper frames for ipympl canvases: what a slider move costs after ``update()``.

Every ``draw_idle`` in the browser ends in ``canvas.draw()`` in the kernel: Agg draws the
whole figure, then ipympl encodes the changed pixels as a PNG and sends it. Measured on
the lessons' explorers, those two steps take far longer than the update itself: text
(tick labels, titles, legends) and static panels are re-rasterised on every move, and
the PNG is compressed at zlib level 6. Two remedies, both local to one canvas:

* :func:`fast_frames`: encode frames at zlib level 1 (faster, for ~25% more bytes; the
  frame goes to a browser on the same machine or a nearby server), and draw without
  echoes: in interactive mode every artist that turns stale while the figure is drawn
  (tick labels, texts) asks for another ``draw_idle``, and ipympl sends each request to
  the browser as a message, some 240 of them per frame of a three-panel figure. The
  browser ignores them (it is waiting for the frame), so they are pure cost; drawing
  inside matplotlib's idle-draw context (what ``draw_idle`` does in other backends)
  suppresses them.
* :class:`FrameCache`: draw the static part of the figure once, keep it as a background,
  and per frame restore it and draw only the artists that move (plus the few static
  ones stacked above them in the same axes, so the stacking order is unchanged). A
  change of axis limits, axes position or figure size redraws everything.

Every draw here holds :data:`DRAW_LOCK`. JupyterLab may deliver widget messages on a
kernel subshell, a second thread, so a canvas can be asked to draw while a cell is still
saving another figure; matplotlib's text rendering is not thread-safe (its mathtext
cache shares FreeType font objects between threads), and two concurrent draws then fail
with FreeType errors such as "raster overflow" or "invalid outline".
"""

from __future__ import annotations

import contextlib
import io
import threading
import types
from typing import Iterable

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from PIL import Image

__all__ = ["fast_frames", "quiet", "FrameCache", "flatten_artists", "DRAW_LOCK"]

FRAME_COMPRESS_LEVEL = 1
# One figure drawn at a time across threads (see the module's docstring).
DRAW_LOCK = threading.RLock()


def _one_thread_at_a_time(method):
    def locked(*args, **kwargs):
        with DRAW_LOCK:
            return method(*args, **kwargs)
    locked.__wrapped__ = method
    return locked


def _lock_text_rendering() -> None:
    """Make Agg's text methods take :data:`DRAW_LOCK`: a cell that lays out a figure
    (measuring its texts) also uses the shared fonts, not only one that saves it."""
    for name in ("draw_text", "draw_mathtext", "get_text_width_height_descent"):
        method = getattr(RendererAgg, name)
        if not hasattr(method, "__wrapped__"):
            setattr(RendererAgg, name, _one_thread_at_a_time(method))


_lock_text_rendering()


def _fast_diff_image(canvas) -> bytes | None:
    """``FigureCanvasWebAggCore.get_diff_image`` with a faster PNG compression level."""
    if not canvas._png_is_old:
        return None
    pixels = np.asarray(canvas.get_renderer().buffer_rgba())
    buff = pixels.view(np.uint32).squeeze(2)
    if (canvas._force_full or buff.shape != canvas._last_buff.shape
            or (pixels[:, :, 3] != 255).any()):
        canvas.set_image_mode("full")
        output = buff
    else:
        canvas.set_image_mode("diff")
        output = np.where(buff != canvas._last_buff, buff, 0)
    canvas._last_buff = buff.copy()
    canvas._force_full = False
    canvas._png_is_old = False
    data = output.view(dtype=np.uint8).reshape((*output.shape, 4))
    with io.BytesIO() as png:
        Image.fromarray(data).save(png, format="png", compress_level=FRAME_COMPRESS_LEVEL)
        return png.getvalue()


def quiet(canvas):
    """A context in which artists turning stale do not request more draws."""
    context = getattr(canvas, "_idle_draw_cntx", None)
    return context() if context is not None else contextlib.nullcontext()


def _quiet_web_draw(canvas) -> None:
    with DRAW_LOCK, quiet(canvas):
        type(canvas).draw(canvas)


def fast_frames(canvas) -> None:
    """Encode this canvas's frames quickly and draw them without echoes (only a web
    canvas, such as ipympl's, has frames)."""
    if hasattr(canvas, "get_diff_image") and hasattr(canvas, "_last_buff"):
        canvas.get_diff_image = types.MethodType(_fast_diff_image, canvas)
        canvas.draw = types.MethodType(_quiet_web_draw, canvas)


def flatten_artists(items: Iterable) -> list[Artist]:
    """Artists from a mix of artists, containers (``ax.bar``'s) and lists of them."""
    found: list[Artist] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, Artist):
            found.append(item)
        elif isinstance(item, (list, tuple)) or hasattr(item, "__iter__"):
            found.extend(flatten_artists(item))
        else:
            raise TypeError(f"moving artists must be matplotlib artists, got {type(item).__name__}")
    return found


def _overlaps(artist: Artist, ax: Axes, renderer) -> bool:
    """Whether a static artist reaches into the axes' area (where moving artists draw)."""
    if not artist.get_visible():
        return False
    try:
        box = artist.get_window_extent(renderer)
    except Exception:  # noqa: BLE001 - an artist without an extent: assume it overlaps
        return True
    return bool(box.width >= 0 and box.overlaps(ax.bbox.expanded(1.0, 1.0).padded(2)))


class FrameCache:
    """Draw ``moving`` artists over a cached background of everything else."""

    def __init__(self, figure, moving: Iterable):
        self.figure = figure
        self.moving = flatten_artists(moving)
        if not self.moving:
            raise ValueError("a FrameCache needs at least one moving artist")
        self.background = None
        self.key = None
        self.layout_key = None
        self.each_frame = self._each_frame_artists()
        for artist in self.each_frame:
            artist.set_animated(True)  # left out of the figure's own draw: the background
        canvas = figure.canvas
        if hasattr(canvas, "get_diff_image") and hasattr(canvas, "manager"):
            canvas.draw = types.MethodType(self._web_draw, canvas)

    def _each_frame_artists(self, renderer=None) -> list[Artist]:
        """The moving artists, plus the static ones above them in the same axes that
        reach into the axes' area (a legend, the spines; not the title), in the order
        the figure would draw them."""
        moving = set(map(id, self.moving))
        renderer = renderer or self.figure.canvas.get_renderer()
        lowest: dict[int, float] = {}
        for artist in self.moving:
            if artist.axes is not None:
                key = id(artist.axes)
                lowest[key] = min(lowest.get(key, np.inf), artist.get_zorder())
        ordered: list[Artist] = []
        for child in sorted(self.figure.get_children(), key=lambda a: a.get_zorder()):
            if isinstance(child, Axes):
                if id(child) not in lowest:
                    continue
                children = [a for a in child.get_children()
                            if a is not child.patch and not isinstance(a, Axis)]
                children = sorted(children, key=lambda a: a.get_zorder())
                ordered += [a for a in children
                            if id(a) in moving or (a.get_zorder() > lowest[id(child)]
                                                   and _overlaps(a, child, renderer))]
            elif id(child) in moving:
                ordered.append(child)
        missing = [a for a in self.moving if a not in ordered]
        if missing:
            raise ValueError(f"moving artists not found in the figure: {missing}")
        return ordered

    def _key(self):
        """Figure size, dpi, axes positions (the layout), then axis limits."""
        fig = self.figure
        return ((tuple(fig.bbox.bounds), fig.dpi),
                tuple(tuple(ax.get_position().bounds) for ax in fig.axes),
                tuple(tuple(ax.viewLim.bounds) for ax in fig.axes))

    def invalidate(self) -> None:
        """Redraw everything next frame (after changing a static artist)."""
        self.background = None

    def render(self, canvas) -> None:
        """One frame into the canvas's Agg buffer."""
        key = self._key()
        if self.background is None or key != self.key:
            if key[:2] != self.layout_key:
                self._find_each_frame_artists(canvas)
            FigureCanvasAgg.draw(canvas)  # the static part: moving artists are animated
            self.background = canvas.copy_from_bbox(self.figure.bbox)
            self.key = self._key()  # after the draw: it may apply aspect ratios
            self.layout_key = self.key[:2]
        else:
            canvas.restore_region(self.background)
        renderer = canvas.get_renderer()
        for artist in self.each_frame:
            if artist.get_visible():
                artist.draw(renderer)
        self.figure.stale = False  # drawn: as the figure's own draw would leave it

    def _find_each_frame_artists(self, canvas) -> None:
        """Which static artists sit above the moving ones, for the current layout."""
        with self.all_drawn(keep_background=True):
            # Lay everything out as the full figure would, to see what overlaps what.
            self.figure.draw_without_rendering()
            each_frame = self._each_frame_artists(canvas.get_renderer())
        for artist in self.each_frame:
            artist.set_animated(False)
        self.each_frame = each_frame
        for artist in self.each_frame:
            artist.set_animated(True)

    def _web_draw(self, canvas) -> None:
        """Replaces ``canvas.draw`` of a web canvas: a frame, then send it."""
        canvas._png_is_old = True
        try:
            with DRAW_LOCK, quiet(canvas):
                self.render(canvas)
        finally:
            canvas.manager.refresh_all()

    @contextlib.contextmanager
    def all_drawn(self, keep_background: bool = False):
        """Inside, the figure draws every artist itself (``savefig``, a full redraw)."""
        for artist in self.each_frame:
            artist.set_animated(False)
        try:
            yield
        finally:
            for artist in self.each_frame:
                artist.set_animated(True)
            if not keep_background:
                self.background = None

    def full_frame(self, canvas) -> np.ndarray:
        """The figure drawn the ordinary way, every artist included (for comparisons)."""
        with self.all_drawn():
            FigureCanvasAgg.draw(canvas)
            return np.asarray(canvas.get_renderer().buffer_rgba()).copy()

    def cached_frame(self, canvas) -> np.ndarray:
        """The figure drawn the fast way: background plus moving artists."""
        self.render(canvas)
        return np.asarray(canvas.get_renderer().buffer_rgba()).copy()
