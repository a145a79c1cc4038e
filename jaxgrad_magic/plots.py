"""Pure plots for the descent panel: arrays in, PNG bytes out; and ``f`` on a grid.

Each picture has a static part and a moving part. Matplotlib renders the static part (the
axes, ticks, labels, grid, contours) once per layout through its object API on the Agg canvas
(``Figure`` + ``FigureCanvasAgg``, never pyplot's global state, so any thread can render);
:mod:`jaxgrad_magic.canvas` keeps it as a palette image, and :class:`PixelMap` says where data
coordinates land in its pixels. A frame draws the moving part (the loss line, the path, the
current point) into a copy with ``PIL.ImageDraw`` and Pillow writes an indexed-colour PNG:
well under a millisecond, where a matplotlib redraw and an RGB PNG cost several. A long loss
series is first reduced to a few points per pixel column that draw like the whole of it.
The loss axis limits move in whole decades (and the step axis in 1-2-5 steps), so a falling
loss rarely needs a new layout; the last few layouts stay rendered.

Colours: one neutral look for light and dark notebook themes, since a kernel cannot tell which
one the page uses. The pictures sit on a soft grey card (``FACE``) with a lighter plot area and
dark ink: readable on both, and far less glaring on a dark page than a white box. (A
transparent picture would put dark text on a dark page.)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.scale import SymmetricalLogTransform

from . import canvas

WIDTH, HEIGHT = 360, 260  # pixels
FACE = "#dadee3"  # the card around the plot: soft grey, neither white nor dark
AXES_FACE = "#eef0f3"  # the plot area: lighter than the card, not paper white
INK = "#222426"  # text, ticks and spines
MUTED = "#555b62"  # secondary text (the hint in an empty loss plot); 5.9:1 on AXES_FACE
GRID = "#cfd3d8"
LOSS_COLOR = "#1f77b4"
PATH_COLOR = "#d62728"
VISITED_COLOR = "#e57f80"  # PATH_COLOR at 60% over white: the visited points on a curve
LINE_WIDTH = 2  # pixels, for the loss line and the path
MAX_PATH_POINTS = 3000  # a longer path is thinned to this many points (see thin)
_DPI = 100


# --------------------------------------------------------------------------- helpers


AXES_BOX = (0.17, 0.16, 0.94, 0.88)  # left, bottom, right, top of the plot area, in figure fractions


def _plot_area(width: int, height: int) -> tuple[float, float, float, float]:
    """The plot area in display pixels (``x0, y0, x1, y1``, y up), as matplotlib places it."""
    left, bottom, right, top = AXES_BOX
    return left * width, bottom * height, right * width, top * height


def figure(
    width: int, height: int, box: tuple[float, float, float, float] = AXES_BOX
) -> tuple[Figure, FigureCanvasAgg, Any]:
    """A figure of ``width x height`` pixels with one axes in the panel's colours (every picture's frame).

    Matplotlib's object API on its own Agg canvas, no pyplot state, so any thread can draw.

    Args:
      width: pixels.
      height: pixels.
      box: the plot area: left, bottom, right, top in figure fractions.

    Returns:
      The figure, its canvas and the axes.
    """
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor=FACE)
    agg = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Fixed margins: tight_layout would cost a whole extra draw per layout.
    left, bottom, right, top = box
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top)
    ax.set_facecolor(AXES_FACE)
    for spine in ax.spines.values():
        spine.set_color(INK)
        spine.set_linewidth(0.8)
    # Explicit colours: a dark pyplot style set by the user must not make our ink white.
    ax.tick_params(which="both", colors=INK, labelcolor=INK, labelsize=7.5, length=3, width=0.6)
    ax.tick_params(which="minor", length=2)
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    return fig, agg, ax


def _rgb(colour: str) -> tuple[int, int, int]:
    r, g, b = to_rgb(colour)
    return round(r * 255), round(g * 255), round(b * 255)


def _title(ax: Any, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=8.5, color=INK, pad=4)


class PixelMap(NamedTuple):
    """Where data coordinates land in a picture's pixels, captured from drawn matplotlib axes.

    Pixel ``x`` is ``x_scale * x + x_offset``; pixel ``y`` (down from the top) is
    ``y_scale * g(y) + y_offset``, where ``g`` is the y axis's scale function (identity, log10
    or matplotlib's symlog). The same numbers as ``ax.transData``, cheap on plain arrays.
    """

    x_scale: float
    x_offset: float
    y_scale: float
    y_offset: float
    y_kind: str  # "linear", "log" or "symlog"
    linthresh: float
    clip: canvas.Clip  # the plot area, where lines are drawn
    scale: Callable[[np.ndarray], np.ndarray]  # g above

    @classmethod
    def from_axes(cls, ax: Any, height: int) -> PixelMap:
        """The map of drawn axes ``ax`` in a picture ``height`` pixels tall."""
        kind = ax.get_yscale()
        linthresh = float(ax.yaxis.get_transform().linthresh) if kind == "symlog" else 1.0
        x0, y0, x1, y1 = (float(v) for v in ax.bbox.extents)
        (xl0, xl1), (yl0, yl1) = ax.get_xlim(), ax.get_ylim()
        scale = _scale_function(kind, linthresh)
        g0, g1 = (float(v) for v in scale(np.array([yl0, yl1], dtype=np.float64)))
        x_scale = (x1 - x0) / (xl1 - xl0)
        y_scale = -(y1 - y0) / (g1 - g0)  # rows grow downwards
        clip = canvas.Clip(round(x0), round(height - y1), round(x1), round(height - y0))
        return cls(x_scale, x0 - xl0 * x_scale, y_scale, height - y0 - g0 * y_scale, kind, linthresh, clip, scale)

    @staticmethod
    def x_geometry(xlim: tuple[float, float], width: int, height: int) -> tuple[float, float, canvas.Clip]:
        """``(x_scale, x_offset, clip)`` of a picture with these x limits, known before it is drawn.

        The plot area sits at fixed fractions of the figure (:data:`AXES_BOX`), so this equals
        what :meth:`from_axes` reads from the drawn axes.
        """
        x0, y0, x1, y1 = _plot_area(width, height)
        x_scale = (x1 - x0) / (xlim[1] - xlim[0])
        return (
            x_scale,
            x0 - xlim[0] * x_scale,
            canvas.Clip(round(x0), round(height - y1), round(x1), round(height - y0)),
        )

    def x(self, values: np.ndarray | Sequence[float]) -> np.ndarray:
        """Pixel ``x`` of data ``x``."""
        return self.x_scale * np.asarray(values, dtype=np.float64) + self.x_offset

    def y(self, values: np.ndarray | Sequence[float]) -> np.ndarray:
        """Pixel ``y`` (down from the top) of data ``y``; NaN for values the scale cannot show."""
        return self.y_scale * self.scale(np.asarray(values, dtype=np.float64)) + self.y_offset


def _scale_function(kind: str, linthresh: float) -> Callable[[np.ndarray], np.ndarray]:
    if kind == "log":

        def log(v: np.ndarray) -> np.ndarray:
            return np.log10(v, out=np.full_like(v, np.nan), where=v > 0)

        return log
    if kind == "symlog":
        return SymmetricalLogTransform(10, linthresh, 1.0).transform_non_affine
    return lambda v: v


class _Picture(NamedTuple):
    """A rendered static part and its pixel map."""

    background: canvas.Background
    map: PixelMap


def _capture(fig: Figure, agg: FigureCanvasAgg, ax: Any, inks: Sequence[str], *, busy: bool = False) -> _Picture:
    """Render the figure once and keep its pixels (as a palette image) and its pixel map.

    Args:
      fig, agg, ax: the figure, its Agg canvas and its one axes, ready to draw.
      inks: the colours frames draw in.
      busy: a picture of many colour regions, such as contours (see :class:`canvas.Background`).
    """
    with np.errstate(over="ignore"):  # the log locator probes decades past 1e308 on extreme ranges
        agg.draw()
    pixels = PixelMap.from_axes(ax, agg.get_width_height()[1])
    rgba = np.asarray(agg.buffer_rgba())
    return _Picture(canvas.Background(rgba, [_rgb(c) for c in inks], area=pixels.clip, busy=busy), pixels)


def thin(path: np.ndarray, max_points: int = MAX_PATH_POINTS) -> np.ndarray:
    """At most ``max_points`` rows of ``path``, the first and last always among them.

    Half are evenly spaced in steps, half spaced geometrically (steps 1, 2, 3, ... then ever
    wider apart), because a descent moves most in its first steps: evenly spaced alone, a run
    that moves far in its first fifty steps and then crawls for 10^5 would lose those moves to
    one straight segment. Only indices are computed, so it costs the same for any length (the
    panel thins at every frame).

    Args:
      path: the points, shape ``(k, d)``.
      max_points: the most rows to keep (at least 2).

    Returns:
      ``path`` itself when short enough, else a copy of the chosen rows, in order.
    """
    n = len(path)
    if n <= max_points:
        return path
    half = max(2, max_points // 2)
    # Row i * (n - 1) // (half - 1): the first and the last, evenly spaced, distinct since n > half.
    by_step = np.arange(half) * (n - 1) // (half - 1)
    early = np.geomspace(1, n - 1, max(1, max_points - half - 1)).astype(np.int64)
    early = early[np.diff(early, prepend=0) > 0]  # distinct (they never decrease)
    # The geometric rows are the denser ones up to where their spacing, e (ratio - 1), reaches
    # the even spacing: those before that point, the evenly spaced ones after it. Both are in
    # order and apart, so no sort is needed.
    ratio = (n - 1) ** (1 / max(1, max_points - half - 2))
    switch = ((n - 1) / (half - 1)) / max(ratio - 1, 1e-12)
    return path[np.concatenate([by_step[:1], early[early < switch], by_step[by_step >= max(switch, 1)]])]


def _nice_up(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is at least ``value`` (and at least 1)."""
    if value <= 1:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if m * exp >= value:
            return float(m * exp)
    return float(10 * exp)


# --------------------------------------------------------------------------- loss curve


def loss_scale(losses: Sequence[float] | np.ndarray) -> str:
    """The y scale that keeps a loss curve readable as it falls by orders of magnitude.

    ``"log"`` when no finite loss is negative and one is positive (zeros are drawn on the
    bottom edge); ``"symlog"`` when the losses change sign and span more than three
    decades; else ``"linear"``.
    """
    y = np.asarray(losses, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.size == 0 or not (y > 0).any():
        return "linear"
    if (y >= 0).all():
        return "log"
    mags = np.abs(y[y != 0])
    return "symlog" if mags.max() > 1e3 * np.median(mags) else "linear"


def _decade_limits(smallest: float, largest: float, zeros: bool) -> tuple[float, float, float]:
    """Whole-decade limits around the positive values, and the floor that zeros are drawn at.

    Args:
      smallest: the smallest positive value.
      largest: the largest value.
      zeros: whether there are zeros to draw (a decade below ``smallest`` stands for zero).
    """
    lo = math.floor(math.log10(smallest)) - (1 if zeros else 0)
    hi = math.ceil(math.log10(largest))
    # Keep the limits (and the tick locator's decades around them) representable.
    lo = min(max(lo, -300), 299)
    hi = min(max(hi, lo + 1), 300)
    return 10.0**lo, 10.0**hi, 10.0**lo


def _linear_limits(y: np.ndarray) -> tuple[float, float]:
    lo, hi = float(y.min()), float(y.max())
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    ticks = ticker.MaxNLocator(5).tick_values(lo, hi)
    return float(min(ticks[0], lo)), float(max(ticks[-1], hi))


def _symlog_limits(y: np.ndarray) -> tuple[float, float, float]:
    mags = np.abs(y[y != 0])
    top = 10.0 ** math.ceil(math.log10(mags.max()))
    linthresh = max(10.0 ** math.floor(math.log10(np.median(mags))) / 10, top * 1e-12)
    lo = -top if y.min() < 0 else 0.0
    hi = top if y.max() > 0 else 0.0
    return lo, hi, linthresh


def tick_label(value: float, _: Any = None) -> str:
    """A tick value, short: ``20``, ``0.005``, ``1e-6``, ``3e8``.

    Plain text rather than mathtext's 10^-6, which costs several milliseconds per draw.
    """
    text = f"{value:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


class _LossLayout(NamedTuple):
    scale: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    linthresh: float
    floor: float
    diverged_at: int | None
    note: str | None


def _loss_picture(layout: _LossLayout, width: int, height: int) -> _Picture:
    """The static part of a loss plot for one layout."""
    fig, agg, ax = figure(width, height)
    _title(ax, "loss")
    ax.set_xlabel("step", fontsize=8)
    if layout.scale == "symlog":
        ax.set_yscale("symlog", linthresh=layout.linthresh)
    else:
        ax.set_yscale(layout.scale)
    if layout.scale == "log":
        ax.yaxis.set_major_locator(ticker.LogLocator(numticks=6))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(tick_label))
        if layout.ylim[1] <= 100 * layout.ylim[0] * (1 + 1e-9):
            # One or two decades: label 2x and 5x too, so a value can be read off the axis.
            ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0), numticks=12))
            ax.yaxis.set_minor_formatter(ticker.FuncFormatter(tick_label))
        else:
            ax.yaxis.set_minor_locator(ticker.NullLocator())  # minor ticks cost draw time, say little
    ax.set_xlim(*layout.xlim)
    ax.set_ylim(*layout.ylim)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=True))
    ax.grid(True, color=GRID, lw=0.6)
    ax.set_axisbelow(True)
    if layout.diverged_at is not None:
        ax.axvline(layout.diverged_at, color=PATH_COLOR, ls="--", lw=1)
        label = ax.text(layout.diverged_at, 0.5, " diverged", transform=ax.get_xaxis_transform(), fontsize=8)
        label.set_color(PATH_COLOR)
    if layout.note:
        ax.text(0.5, 0.5, layout.note, transform=ax.transAxes, ha="center", va="center", fontsize=8.5, color=MUTED)
    return _capture(fig, agg, ax, [LOSS_COLOR])


class LossCurve:
    """A loss-curve renderer that keeps the static part of its recent layouts.

    A layout is the y scale, both axes' limits, the divergence mark and the note; a frame
    whose layout was seen before only draws the line and the last point over a copy of it.

    Args:
      width: image width in pixels.
      height: image height in pixels.
    """

    KEEP = 4  # layouts kept rendered

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self._pictures: OrderedDict[_LossLayout, _Picture] = OrderedDict()
        self._layout: _LossLayout | None = None

    @property
    def yscale(self) -> str | None:
        """The y scale of the last frame (``"log"``, ``"symlog"``, ``"linear"``), None before one."""
        return self._layout.scale if self._layout is not None else None

    @property
    def limits(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """``(xlim, ylim)`` of the last frame, None before one."""
        return (self._layout.xlim, self._layout.ylim) if self._layout is not None else None

    @property
    def pixel_map(self) -> PixelMap | None:
        """Where the last frame put data coordinates, None before one."""
        return self._pictures[self._layout].map if self._layout in self._pictures else None

    @staticmethod
    def _xlim(steps: np.ndarray | range, xmax: float | None) -> tuple[float, float]:
        first = float(steps[0]) if len(steps) else 0.0
        last = float(steps[-1]) if len(steps) else 1.0
        return min(0.0, first), _nice_up(max(last, xmax or 0.0, first + 1))

    @staticmethod
    def _layout_for(
        steps: np.ndarray | range,
        finite: np.ndarray,
        smallest: float,
        largest: float,
        xmax: float | None,
        diverged_at: int | None,
        note: str | None,
    ) -> _LossLayout:
        # Losses of no sign change (the common case) need only their min and max; the rest the full rule.
        scale = "log" if smallest >= 0 and largest > 0 else loss_scale(finite)
        xlim = LossCurve._xlim(steps, xmax)
        linthresh, floor = 1.0, 0.0
        if finite.size == 0:
            ylim = (0.0, 1.0)
        elif smallest > 0:
            lo, hi, floor = _decade_limits(smallest, largest, zeros=False)
            ylim = (lo, hi)
        elif scale == "log":
            least_positive = float(np.min(finite, where=finite > 0, initial=math.inf))
            lo, hi, floor = _decade_limits(least_positive, largest, zeros=True)
            ylim = (lo, hi)
        elif scale == "symlog":
            lo, hi, linthresh = _symlog_limits(finite)
            ylim = (lo, hi)
        else:
            ylim = _linear_limits(finite)
        return _LossLayout(scale, xlim, ylim, linthresh, floor, diverged_at, note or None)

    def _picture(self, layout: _LossLayout) -> _Picture:
        picture = self._pictures.get(layout)
        if picture is None:
            picture = self._pictures[layout] = _loss_picture(layout, self.width, self.height)
            if len(self._pictures) > self.KEEP:
                self._pictures.popitem(last=False)
        else:
            self._pictures.move_to_end(layout)
        return picture

    def render(
        self,
        steps: Sequence[float] | np.ndarray | range,
        losses: Sequence[float] | np.ndarray,
        *,
        xmax: float | None = None,
        diverged_at: int | None = None,
        note: str | None = None,
    ) -> bytes:
        """Draw the losses against their step numbers.

        Args:
          steps: the step number of each loss, increasing; a ``range`` is never made into an array.
          losses: the losses; NaN and inf are left out of the line.
          xmax: keep the step axis at least this long (the end of a run in progress).
          diverged_at: the step where the loss stopped being finite, marked on the plot.
          note: a line of text in the middle of the plot (e.g. what to do first), or None.

        Returns:
          PNG bytes.
        """
        if not isinstance(steps, range) or steps.step <= 0:
            steps = np.asarray(steps).reshape(-1)
            if not (np.issubdtype(steps.dtype, np.integer) or np.issubdtype(steps.dtype, np.floating)):
                steps = steps.astype(np.float64)
        y = np.asarray(losses, dtype=np.float64).reshape(-1)
        if len(steps) != len(y):
            raise ValueError(f"steps and losses differ in length ({len(steps)} vs {len(y)}); pass one step per loss.")
        n = len(y)
        # The line is reduced to pixel columns first: the step axis alone decides them, and the
        # reduced points hold every column's extremes, so they give the loss range (and say
        # whether any loss is NaN or inf) without another pass over the series.
        xlim = self._xlim(steps, xmax)
        x_scale, x_offset, clip = PixelMap.x_geometry(xlim, self.width, self.height)
        vx, vy = line_vertices(steps, y, x_scale, x_offset, clip)
        ok, finite = None, y
        if n and np.isfinite(vy).all():
            smallest, largest = float(vy.min()), float(vy.max())
        else:  # NaN and inf break the line and stay out of the limits
            ok = np.isfinite(y)
            finite = y[ok]
            y = np.where(ok, y, np.nan)
            vx, vy = line_vertices(steps, y, x_scale, x_offset, clip, skip_nan=True)
            smallest, largest = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
        layout = self._layout_for(steps, finite, smallest, largest, xmax, diverged_at, note)
        self._layout = layout
        picture = self._picture(layout)
        pixels = picture.map
        if pixels.clip != clip or not math.isclose(pixels.x_offset, x_offset, rel_tol=1e-9, abs_tol=1e-9):
            # Not expected (the plot area is fixed), but the line must match the drawn axes.
            vx, vy = line_vertices(steps, y, pixels.x_scale, pixels.x_offset, pixels.clip, skip_nan=True)
        frame = picture.background.frame()
        last = n - 1 if ok is None else (int(np.flatnonzero(ok)[-1]) if finite.size else -1)
        if last >= 0:
            self._draw(frame, picture, layout, vx, vy, (float(steps[last]), float(y[last])))
        return frame.png()

    @staticmethod
    def _draw(
        frame: canvas.Frame,
        picture: _Picture,
        layout: _LossLayout,
        vx: np.ndarray,
        vy: np.ndarray,
        last: tuple[float, float],
    ) -> None:
        pixels, (ink, *_) = picture.map, picture.background.inks
        to_pixels = pixels.y
        if layout.scale == "log" and layout.floor > 0:
            # Zeros on a log axis are drawn on its bottom edge.
            def to_pixels(v: np.ndarray) -> np.ndarray:
                return pixels.y(np.where(v == 0, layout.floor, v))

        frame.polyline(vx, to_pixels(vy), LINE_WIDTH, ink)
        # The newest finite loss, as a dot (not clipped: on the bottom edge it shows whole).
        x = pixels.x_scale * last[0] + pixels.x_offset
        frame.marker(x, float(to_pixels(np.array([last[1]]))[0]), 3.2, ink, clip=False)


def line_vertices(
    steps: np.ndarray | range,
    y: np.ndarray,
    x_scale: float,
    x_offset: float,
    clip: canvas.Clip,
    *,
    skip_nan: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Points (pixel ``x``, data ``y``) whose polyline draws like the whole series at this width.

    A series of more points than twice the pixel columns keeps four per column: its first and
    last point there (at their own ``x``, so the line between two columns is the series' own)
    and its least and greatest value (at the column's centre). A line through them covers what
    the series covers in every column. Shorter series are kept whole.

    Args:
      steps: the points' positions in data units, non-decreasing: an array (integers are
        searched as they are), or a ``range`` with a positive step (searched by arithmetic).
      y: the values; NaN breaks the line.
      x_scale, x_offset: pixel ``x`` of data ``x`` is ``x_scale * x + x_offset`` (``x_scale > 0``).
      clip: the plot area, whose columns are the pixel columns.
      skip_nan: pass over NaN inside a column (it still breaks the line at a column's first or
        last point); by default a NaN or inf makes its column's extremes NaN or inf, so a
        caller sees from the vertices alone whether the series is finite.

    Returns:
      ``(x, y)``: pixel ``x`` and data ``y`` of the vertices.
    """
    n, count = len(y), clip.right - clip.left
    if n <= 2 * count:
        return x_scale * np.asarray(steps, dtype=np.float64) + x_offset, y
    edges = clip.left + np.arange(count + 1, dtype=np.float64)  # pixel x of the columns' edges
    if isinstance(steps, range):
        # Evenly spaced: point i is at pixel a * i + b, and no array of positions is needed.
        a, b = x_scale * steps.step, x_scale * steps.start + x_offset
        idx = np.minimum(np.maximum(np.ceil((edges - b) / a), 0), n).astype(np.int64)
    else:
        idx = _first_at_or_after(steps, (edges - x_offset) / x_scale)
    idx[0], idx[-1] = 0, n  # points beyond the edges (none, with the usual limits) join the end columns
    present = idx[1:] > idx[:-1]
    firsts, lasts = idx[:-1][present], idx[1:][present] - 1
    low, high = (np.fmin, np.fmax) if skip_nan else (np.minimum, np.maximum)
    with np.errstate(invalid="ignore"):  # a column of NaN only stays NaN
        low, high = low.reduceat(y, firsts), high.reduceat(y, firsts)
    if isinstance(steps, range):
        at_first, at_last = firsts * steps.step + steps.start, lasts * steps.step + steps.start
    else:
        at_first, at_last = steps[firsts], steps[lasts]
    centre = edges[:-1][present] + 0.5
    x = np.column_stack([x_scale * np.asarray(at_first, np.float64) + x_offset, centre, centre,
                         x_scale * np.asarray(at_last, np.float64) + x_offset])  # fmt: skip
    return x.reshape(-1), np.column_stack([y[firsts], low, high, y[lasts]]).reshape(-1)


def _first_at_or_after(xs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """For each edge, the index of the first position at or right of it (``len(xs)`` if none)."""
    if np.issubdtype(xs.dtype, np.integer):
        # Searching with integers keeps numpy from casting the whole of xs to float.
        info = np.iinfo(xs.dtype)
        return np.searchsorted(xs, np.clip(np.ceil(edges), info.min, info.max).astype(xs.dtype))
    return np.searchsorted(xs, edges)


# --------------------------------------------------------------------------- landscapes


def _finite_levels(z: np.ndarray, count: int = 14) -> np.ndarray | None:
    finite = z[np.isfinite(z)]
    if finite.size < 2:
        return None
    # Quantile levels: contours where the points are, whatever the function's range.
    levels = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, count + 1)))
    return levels if len(levels) >= 2 else None


class ContourPlot:
    """A contour plot of ``f`` over a fixed box, with the descent path drawn on top per frame.

    Args:
      xs: grid positions along the first parameter, shape ``(nx,)``.
      ys: grid positions along the second parameter, shape ``(ny,)``.
      zs: ``f`` on the grid, shape ``(ny, nx)``; NaN and inf are left blank.
      labels: the two parameters' names, for the axes.
      width: image width in pixels.
      height: image height in pixels.
      inks: more colours to draw in, after the path's red and white (see :meth:`frame`).
    """

    def __init__(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        zs: np.ndarray,
        *,
        labels: tuple[str, str] = ("x", "y"),
        width: int = WIDTH,
        height: int = HEIGHT,
        inks: Sequence[str] = (),
    ) -> None:
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        zs = np.asarray(zs, dtype=np.float64)
        if zs.shape != (len(ys), len(xs)):
            raise ValueError(f"zs must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {zs.shape}.")
        fig, agg, ax = figure(width, height)
        ax.set_xlabel(labels[0], fontsize=8)
        ax.set_ylabel(labels[1], fontsize=8, rotation=0, labelpad=8)
        levels = _finite_levels(zs)
        if levels is not None:
            masked = np.ma.masked_invalid(zs)
            cmap = colormaps["viridis"]
            norm = BoundaryNorm(levels, cmap.N)
            ax.contourf(xs, ys, masked, levels=levels, cmap=cmap, norm=norm, alpha=0.85)
            ax.contour(xs, ys, masked, levels=levels, colors="white", linewidths=0.4, alpha=0.7)
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        _title(ax, f"f({labels[0]}, {labels[1]})")
        # Contours: a frame stores its drawn rows rather than compress them (twice the bytes there,
        # a tenth of the time); the picture stays smaller than an RGB PNG of it.
        self._picture = _capture(fig, agg, ax, [PATH_COLOR, "white", *inks], busy=True)

    @property
    def pixel_map(self) -> PixelMap:
        """Where data coordinates land in the picture."""
        return self._picture.map

    def frame(self) -> tuple[canvas.Frame, tuple[int, ...]]:
        """A fresh copy of the contours to draw on, and the palette index of each ink (red, white, then ``inks``)."""
        return self._picture.background.frame(), self._picture.background.inks

    def render(self, path: np.ndarray, current: Sequence[float] | np.ndarray) -> bytes:
        """Draw the path (rows of ``(x, y)``), its start, and the current point over the contours.

        Args:
          path: the visited points, shape ``(k, 2)``; non-finite rows are skipped.
          current: the current point ``(x, y)``.

        Returns:
          PNG bytes.
        """
        drawn = _finite_rows(thin(np.asarray(path, dtype=np.float64).reshape(-1, 2)), 2)
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        pixels, (red, white) = self._picture.map, self._picture.background.inks
        frame = self._picture.background.frame()
        if len(drawn):
            px, py = pixels.x(drawn[:, 0]), pixels.y(drawn[:, 1])
            frame.polyline(px, py, LINE_WIDTH, red)
            # The start: a white dot ringed in red (as matplotlib draws a 5 pt marker with an edge).
            frame.marker(float(px[0]), float(py[0]), 2.8, white, ring=(4.2, red))
        # The current point: red, ringed in white, so it stands out on any contour colour.
        cx, cy = pixels.x(current[:1]), pixels.y(current[1:2])
        frame.marker(float(cx[0]), float(cy[0]), 4.2, red, ring=(5.5, white))
        return frame.png()


def _finite_rows(path: np.ndarray | Sequence[Any], width: int) -> np.ndarray:
    path = np.asarray(path, dtype=np.float64).reshape(-1, width)
    finite = np.isfinite(path)
    return path if finite.all() else path[finite.all(axis=1)]


class CurvePlot:
    """``f`` of one parameter as a curve, with the visited points and the current one per frame.

    Args:
      xs: grid positions, shape ``(n,)``.
      ys: ``f`` on the grid; NaN and inf break the curve.
      label: the parameter's name.
      width: image width in pixels.
      height: image height in pixels.
    """

    def __init__(
        self, xs: np.ndarray, ys: np.ndarray, *, label: str = "x", width: int = WIDTH, height: int = HEIGHT
    ) -> None:
        self._xs = np.asarray(xs, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys, dtype=np.float64).reshape(-1)
        if ys.shape != self._xs.shape:
            raise ValueError(f"xs and ys differ in length ({len(self._xs)} vs {len(ys)}); pass f at every x.")
        self._ys = np.where(np.isfinite(ys), ys, np.nan)
        fig, agg, ax = figure(width, height)
        ax.set_xlabel(label, fontsize=8)
        ax.plot(self._xs, self._ys, color=LOSS_COLOR, lw=1.4)
        ax.set_xlim(self._xs[0], self._xs[-1])
        finite = self._ys[np.isfinite(self._ys)]
        if finite.size:
            ax.set_ylim(*_linear_limits(finite))
        ax.grid(True, color=GRID, lw=0.6)
        ax.set_axisbelow(True)
        _title(ax, f"f({label})")
        self._picture = _capture(fig, agg, ax, [PATH_COLOR, VISITED_COLOR, "white"])

    @property
    def pixel_map(self) -> PixelMap:
        """Where data coordinates land in the picture."""
        return self._picture.map

    def render(self, point: Sequence[float] | np.ndarray, path: np.ndarray | None = None) -> bytes:
        """Draw the visited points (on the curve) and the current point ``(x, f(x))``.

        Args:
          point: the current ``(x, f(x))``.
          path: the visited positions, shape ``(k,)``, or None.

        Returns:
          PNG bytes.
        """
        point = np.asarray(point, dtype=np.float64).reshape(-1)
        pixels, (red, visited, white) = self._picture.map, self._picture.background.inks
        frame = self._picture.background.frame()
        if path is not None:
            px = _finite_rows(thin(np.asarray(path, dtype=np.float64).reshape(-1, 1)), 1)[:, 0]
            # Visited points sit on the drawn curve (interpolated on the grid).
            py = np.interp(px, self._xs, self._ys, left=np.nan, right=np.nan)
            frame.dots(pixels.x(px), pixels.y(py), 2.0, visited)
        cx, cy = pixels.x(point[:1]), pixels.y(point[1:2])
        frame.marker(float(cx[0]), float(cy[0]), 4.2, red, ring=(5.5, white))
        return frame.png()


# --------------------------------------------------------------------------- the box a picture shows


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Column by column: a reduction over axis 0 of a (n, 2) array is tens of times slower.
    cols = range(points.shape[1])
    return np.array([points[:, i].min() for i in cols]), np.array([points[:, i].max() for i in cols])


class Box(NamedTuple):
    """An axis-aligned box in parameter space: ``lo[i] <= p[i] <= hi[i]``."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def contains(self, points: np.ndarray) -> bool:
        """True when every finite row of ``points`` lies in the box."""
        pts = _finite_rows(points, len(self.lo))
        if not len(pts):
            return True
        # Column by column, stopping at the first one out: a reduction over axis 0 is far slower.
        return all(
            pts[:, i].min() >= lo and pts[:, i].max() <= hi
            for i, (lo, hi) in enumerate(zip(self.lo, self.hi, strict=True))
        )


def start_box(start: np.ndarray) -> Box:
    """The first box around a start point: ``start[i] ± max(1, |start[i]|)``.

    The half-width is at least ``|start[i]|``, so the origin (often near a minimum) is in
    view from the first frame.
    """
    start = np.asarray(start, dtype=np.float64).reshape(-1)
    half = np.maximum(1.0, np.abs(start))
    return Box(tuple(start - half), tuple(start + half))


def box_around(first: Box, path: np.ndarray, max_growth: float = 10.0) -> Box:
    """The first box grown to hold the path, with a margin.

    The growth is capped around the first box, so a diverging path leaves the picture
    (showing where it went) while the start and the region around it stay in view.

    Args:
      first: the box around the start point.
      path: the visited points, shape ``(k, d)``; non-finite rows are ignored.
      max_growth: the box reaches at most this many first-box widths beyond the first box.

    Returns:
      The new box.
    """
    first_lo, first_hi = np.array(first.lo), np.array(first.hi)
    first_span = first_hi - first_lo
    lo, hi = first_lo, first_hi
    pts = _finite_rows(path, len(lo))
    if len(pts):
        pts_lo, pts_hi = _bounds(pts)
        lo = np.maximum(np.minimum(lo, pts_lo), first_lo - max_growth * first_span)
        hi = np.minimum(np.maximum(hi, pts_hi), first_hi + max_growth * first_span)
    span = hi - lo
    lo, hi = lo - 0.2 * span, hi + 0.2 * span  # room to move before the box must grow again
    return Box(tuple(float(v) for v in lo), tuple(float(v) for v in hi))
