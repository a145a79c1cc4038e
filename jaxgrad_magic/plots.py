"""Pure plots for the descent panel: arrays in, PNG bytes out; and ``f`` on a grid.

Matplotlib is used through its object API on the Agg canvas (``Figure`` +
``FigureCanvasAgg``), never pyplot's global state, so plots render in any thread and
show in any frontend as plain images. Each renderer keeps its figure and draws the axes
only when the limits change; between such changes only the moving artists (the loss line,
the path, the current point) are drawn over a saved background, so a redraw costs a few
milliseconds instead of tens. The loss axis limits move in whole decades (and the step
axis in 1-2-5 steps), so a falling loss rarely forces a full redraw.

Figures have a light face with dark ink on purpose: they stay readable on light and dark
notebook themes alike (a transparent figure would put dark text on a dark page).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure

WIDTH, HEIGHT = 360, 260  # pixels: small, so a redraw is cheap
FACE = "#fafafa"  # light neutral face, dark ink: readable on light and dark themes
INK = "#262626"
GRID = "#dddddd"
LOSS_COLOR = "#1f77b4"
PATH_COLOR = "#d62728"
MAX_LINE_POINTS = 1200  # longer series are reduced to a min/max envelope per bucket
MAX_PATH_POINTS = 3000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DPI = 100


# --------------------------------------------------------------------------- helpers


def _figure(width: int, height: int) -> tuple[Figure, FigureCanvasAgg, Any]:
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor=FACE)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Fixed margins: tight_layout would cost a whole extra draw on every redraw.
    fig.subplots_adjust(left=0.17, right=0.94, bottom=0.16, top=0.88)
    ax.set_facecolor("white")
    for spine in ax.spines.values():
        spine.set_color(INK)
        spine.set_linewidth(0.8)
    # Explicit colours: a dark pyplot style set by the user must not make our ink white.
    ax.tick_params(colors=INK, labelcolor=INK, labelsize=7.5, length=3, width=0.6)
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    return fig, canvas, ax


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(canvas: FigureCanvasAgg) -> bytes:
    """The canvas as an RGB PNG (the face is opaque, so alpha carries nothing).

    Written directly: rows without a filter, deflated at level 1. On these flat plot images
    that is both faster and smaller than a general encoder's adaptive filtering.
    """
    width, height = canvas.get_width_height()
    rgba = np.asarray(canvas.buffer_rgba())
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    rows[:, 0] = 0  # each row starts with its filter type: 0, none
    rows[:, 1:].reshape(height, width, 3)[...] = rgba[:, :, :3]  # one copy, dropping alpha
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _chunk(b"IEND", b"")
    )


def _title(ax: Any, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=8.5, color=INK, pad=4)


def short(value: float) -> str:
    """A number in at most 4 significant digits (``inf`` and ``nan`` spelled out)."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long series to the min and max of ``y`` per bucket of consecutive points.

    A bucket is narrower than a pixel, so the drawn envelope looks like the full series
    (spikes included) while the line has at most ``max_points`` vertices. NaN is ignored
    inside a bucket; a bucket of only NaN stays NaN, which breaks the drawn line.

    Args:
      x: the positions, increasing.
      y: the values, same length.
      max_points: the most vertices to return.

    Returns:
      ``(x, y)``, unchanged when already short enough.
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]
    ends = np.append(starts[1:], n) - 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets are meant to stay NaN
        lows = np.fmin.reduceat(y, starts)
        highs = np.fmax.reduceat(y, starts)
    xs = np.stack([x[starts], x[ends]], axis=1).reshape(-1)
    ys = np.stack([lows, highs], axis=1).reshape(-1)
    return xs, ys


def _thin(path: np.ndarray, max_points: int) -> np.ndarray:
    """Every k-th row of ``path`` (first and last always kept)."""
    n = len(path)
    if n <= max_points:
        return path
    idx = np.unique(np.append(np.linspace(0, n - 1, max_points).astype(np.int64), n - 1))
    return path[idx]


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


def _decade_label(value: float, _: Any) -> str:
    # Plain "1e-6" instead of mathtext's 10^-6, which costs several ms per draw.
    return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


class _LossLayout(NamedTuple):
    scale: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    linthresh: float
    floor: float
    diverged_at: int | None


class _LossFrame:
    """One figure with its axes drawn for one layout, and the moving artists to draw over it."""

    def __init__(self, layout: _LossLayout, width: int, height: int) -> None:
        self.fig, self.canvas, ax = _figure(width, height)
        self.ax = ax
        ax.set_title("loss", loc="left", fontsize=8.5, color=INK, pad=4)
        ax.set_xlabel("step", fontsize=8)
        (self.line,) = ax.plot([], [], color=LOSS_COLOR, lw=1.3, animated=True)
        (self.dot,) = ax.plot([], [], "o", color=LOSS_COLOR, ms=4, animated=True)
        if layout.scale == "symlog":
            ax.set_yscale("symlog", linthresh=layout.linthresh)
        else:
            ax.set_yscale(layout.scale)
        if layout.scale == "log":
            ax.yaxis.set_major_locator(ticker.LogLocator(numticks=6))
            ax.yaxis.set_minor_locator(ticker.NullLocator())  # minor ticks cost draw time, say little
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(_decade_label))
        ax.set_xlim(*layout.xlim)
        ax.set_ylim(*layout.ylim)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=True))
        ax.grid(True, color=GRID, lw=0.6)
        ax.set_axisbelow(True)
        if layout.diverged_at is not None:
            ax.axvline(layout.diverged_at, color=PATH_COLOR, ls="--", lw=1)
            label = ax.text(layout.diverged_at, 0.5, " diverged", transform=ax.get_xaxis_transform(), fontsize=8)
            label.set_color(PATH_COLOR)
        with np.errstate(over="ignore"):  # the log locator probes decades past 1e308 on extreme ranges
            self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)


class LossCurve:
    """A loss-curve renderer that keeps its figures between frames.

    The axes of a few recent layouts (scale and limits) stay drawn, so a frame whose layout
    was seen before only draws the line over a saved background.

    Args:
      width: image width in pixels.
      height: image height in pixels.
    """

    KEEP = 4  # layouts kept drawn

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self.full_draws = 0  # frames that needed the axes drawn (the rest were cheap)
        self._frames: OrderedDict[_LossLayout, _LossFrame] = OrderedDict()
        self._layout: _LossLayout | None = None

    @property
    def yscale(self) -> str | None:
        """The y scale of the last frame (``"log"``, ``"symlog"``, ``"linear"``), None before one."""
        return self._layout.scale if self._layout is not None else None

    @property
    def limits(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """``(xlim, ylim)`` of the last frame, None before one."""
        return (self._layout.xlim, self._layout.ylim) if self._layout is not None else None

    @staticmethod
    def _layout_for(steps: np.ndarray, finite: np.ndarray, xmax: float | None, diverged_at: int | None) -> _LossLayout:
        smallest = float(finite.min()) if finite.size else math.nan
        # Positive losses (the common case) need only their min and max; the rest the full rule.
        scale = "log" if smallest > 0 else loss_scale(finite)
        first = float(steps[0]) if len(steps) else 0.0
        last = float(steps[-1]) if len(steps) else 1.0
        right = _nice_up(max(last, xmax or 0.0, first + 1))
        xlim = (min(0.0, first), right)
        linthresh, floor = 1.0, 0.0
        if finite.size == 0:
            ylim = (0.0, 1.0)
        elif smallest > 0:
            lo, hi, floor = _decade_limits(smallest, float(finite.max()), zeros=False)
            ylim = (lo, hi)
        elif scale == "log":
            lo, hi, floor = _decade_limits(float(finite[finite > 0].min()), float(finite.max()), zeros=True)
            ylim = (lo, hi)
        elif scale == "symlog":
            lo, hi, linthresh = _symlog_limits(finite)
            ylim = (lo, hi)
        else:
            ylim = _linear_limits(finite)
        return _LossLayout(scale, xlim, ylim, linthresh, floor, diverged_at)

    def _frame(self, layout: _LossLayout) -> _LossFrame:
        frame = self._frames.get(layout)
        if frame is None:
            frame = self._frames[layout] = _LossFrame(layout, self.width, self.height)
            self.full_draws += 1
            if len(self._frames) > self.KEEP:
                self._frames.popitem(last=False)
        else:
            self._frames.move_to_end(layout)
        return frame

    def render(
        self,
        steps: Sequence[float] | np.ndarray,
        losses: Sequence[float] | np.ndarray,
        *,
        xmax: float | None = None,
        diverged_at: int | None = None,
    ) -> bytes:
        """Draw the losses against their step numbers.

        Args:
          steps: the step number of each loss.
          losses: the losses; NaN and inf are left out of the line.
          xmax: keep the step axis at least this long (the end of a run in progress).
          diverged_at: the step where the loss stopped being finite, marked on the plot.

        Returns:
          PNG bytes.
        """
        steps = np.asarray(steps, dtype=np.float64).reshape(-1)
        y = np.asarray(losses, dtype=np.float64).reshape(-1)
        if len(steps) != len(y):
            raise ValueError(f"steps and losses differ in length ({len(steps)} vs {len(y)}); pass one step per loss.")
        ok = np.isfinite(y)
        all_finite = bool(ok.all())
        finite = y if all_finite else y[ok]
        layout = self._layout_for(steps, finite, xmax, diverged_at)
        self._layout = layout
        frame = self._frame(layout)
        shown = y if all_finite else np.where(ok, y, np.nan)
        if layout.scale == "log" and not (finite > 0).all():
            shown = np.where(shown > 0, shown, np.where(shown == 0, layout.floor, np.nan))
        xs, ys = decimate(steps, shown)
        frame.canvas.restore_region(frame.background)
        frame.line.set_data(xs, ys)
        last = len(shown) - 1
        if last >= 0 and not math.isfinite(shown[last]):
            finite_at = np.flatnonzero(np.isfinite(shown))
            last = int(finite_at[-1]) if len(finite_at) else -1
        frame.dot.set_data(steps[last:][:1] if last >= 0 else [], shown[last:][:1] if last >= 0 else [])
        frame.ax.draw_artist(frame.line)
        frame.ax.draw_artist(frame.dot)
        return _png(frame.canvas)


def loss_curve_png(
    steps: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    xmax: float | None = None,
    diverged_at: int | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """A loss curve as PNG bytes (log y when the losses are positive).

    Args:
      steps: the step number of each loss.
      losses: the losses; NaN and inf are left out of the line.
      xmax: draw the step axis to at least this step.
      diverged_at: the step where the loss stopped being finite, marked on the plot.
      width: image width in pixels.
      height: image height in pixels.

    Returns:
      PNG bytes.
    """
    return LossCurve(width, height).render(steps, losses, xmax=xmax, diverged_at=diverged_at)


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
    ) -> None:
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        zs = np.asarray(zs, dtype=np.float64)
        if zs.shape != (len(ys), len(xs)):
            raise ValueError(f"zs must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {zs.shape}.")
        self._fig, self._canvas, ax = _figure(width, height)
        self._ax = ax
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
        (self._path,) = ax.plot([], [], "-", color=PATH_COLOR, lw=1.2, animated=True)
        (self._start,) = ax.plot([], [], "o", mfc="white", mec=PATH_COLOR, ms=5, animated=True)
        (self._current,) = ax.plot([], [], "o", color=PATH_COLOR, mec="white", ms=7, animated=True)
        _title(ax, f"f({labels[0]}, {labels[1]})")
        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(self._fig.bbox)

    def render(self, path: np.ndarray, current: Sequence[float] | np.ndarray) -> bytes:
        """Draw the path (rows of ``(x, y)``) and the current point over the contours.

        Args:
          path: the visited points, shape ``(k, 2)``; non-finite rows are skipped.
          current: the current point ``(x, y)``.

        Returns:
          PNG bytes.
        """
        drawn = _finite_rows(_thin(np.asarray(path, dtype=np.float64).reshape(-1, 2), MAX_PATH_POINTS), 2)
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        self._canvas.restore_region(self._background)
        self._path.set_data(drawn[:, 0], drawn[:, 1])
        self._start.set_data(drawn[:1, 0], drawn[:1, 1])
        self._current.set_data(current[:1], current[1:2])
        for artist in (self._path, self._start, self._current):
            self._ax.draw_artist(artist)
        return _png(self._canvas)


def _finite_rows(path: np.ndarray | Sequence[Any], width: int) -> np.ndarray:
    path = np.asarray(path, dtype=np.float64).reshape(-1, width)
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(path.sum()):  # the common case, without building a mask
            return path
    return path[np.isfinite(path).all(axis=1)]


def contour_png(
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    path: np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    labels: tuple[str, str] = ("x", "y"),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """A contour plot of ``zs`` with the descent path and the current point, as PNG bytes.

    Args:
      xs: grid positions along the first parameter, shape ``(nx,)``.
      ys: grid positions along the second parameter, shape ``(ny,)``.
      zs: ``f`` on the grid, shape ``(ny, nx)``; NaN and inf are left blank.
      path: the visited points, shape ``(k, 2)``.
      current: the current point ``(x, y)``.
      labels: the parameters' names.
      width: image width in pixels.
      height: image height in pixels.

    Returns:
      PNG bytes.
    """
    return ContourPlot(xs, ys, zs, labels=labels, width=width, height=height).render(path, current)


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
        self._fig, self._canvas, ax = _figure(width, height)
        self._ax = ax
        ax.set_xlabel(label, fontsize=8)
        ax.plot(self._xs, self._ys, color=LOSS_COLOR, lw=1.4)
        ax.set_xlim(self._xs[0], self._xs[-1])
        finite = self._ys[np.isfinite(self._ys)]
        if finite.size:
            ax.set_ylim(*_linear_limits(finite))
        ax.grid(True, color=GRID, lw=0.6)
        ax.set_axisbelow(True)
        (self._path,) = ax.plot([], [], ".", color=PATH_COLOR, ms=3, alpha=0.6, animated=True)
        (self._current,) = ax.plot([], [], "o", color=PATH_COLOR, mec="white", ms=7, animated=True)
        _title(ax, f"f({label})")
        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(self._fig.bbox)

    def render(self, point: Sequence[float] | np.ndarray, path: np.ndarray | None = None) -> bytes:
        """Draw the visited points (on the curve) and the current point ``(x, f(x))``.

        Args:
          point: the current ``(x, f(x))``.
          path: the visited positions, shape ``(k,)``, or None.

        Returns:
          PNG bytes.
        """
        point = np.asarray(point, dtype=np.float64).reshape(-1)
        self._canvas.restore_region(self._background)
        if path is not None:
            px = _finite_rows(_thin(np.asarray(path, dtype=np.float64).reshape(-1, 1), MAX_PATH_POINTS), 1)[:, 0]
            # Visited points sit on the drawn curve (interpolated on the grid).
            self._path.set_data(px, np.interp(px, self._xs, self._ys, left=np.nan, right=np.nan))
        else:
            self._path.set_data([], [])
        self._current.set_data(point[:1], point[1:2])
        for artist in (self._path, self._current):
            self._ax.draw_artist(artist)
        return _png(self._canvas)


def curve_png(
    xs: np.ndarray,
    ys: np.ndarray,
    point: Sequence[float] | np.ndarray,
    *,
    path: np.ndarray | None = None,
    label: str = "x",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """``f`` of one parameter with the current point ``(x, f(x))``, as PNG bytes.

    Args:
      xs: grid positions, shape ``(n,)``.
      ys: ``f`` on the grid.
      point: the current ``(x, f(x))``.
      path: the visited positions, or None.
      label: the parameter's name.
      width: image width in pixels.
      height: image height in pixels.

    Returns:
      PNG bytes.
    """
    return CurvePlot(xs, ys, label=label, width=width, height=height).render(point, path)


# --------------------------------------------------------------------------- f on a grid

GRID_2D = 48  # points per side of the contour grid
GRID_1D = 241


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
        lo, hi = _bounds(pts)
        return bool((lo >= np.array(self.lo)).all() and (hi <= np.array(self.hi)).all())


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


def _arg_signature(tree: Any) -> Hashable:
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves))


class Landscape:
    """``f`` as a function of the flattened differentiated parameters, on a grid.

    Drawable when those parameters have one or two elements in all (two scalars, one
    2-vector, one scalar). The grid is evaluated in one jitted ``jax.vmap`` call, cached
    per function (so a re-run cell does not compile again).

    Args:
      fn: the function; its first output is used when ``has_aux``.
      args: all positional arguments at the start point.
      argnums: which arguments are the parameters.
      has_aux: ``fn`` returns ``(value, aux)``.
      param_names: the function's positional parameter names, for labels.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        argnums: int | tuple[int, ...],
        *,
        has_aux: bool = False,
        param_names: Sequence[str] = (),
    ) -> None:
        from jax.flatten_util import ravel_pytree

        self.fn, self.args, self.argnums, self.has_aux = fn, tuple(args), argnums, has_aux
        params = self._select(self.args)
        flat, self._unravel = ravel_pytree(params)
        self.size = int(flat.size)
        self.dtype = flat.dtype
        self.start = np.asarray(flat, dtype=np.float64)
        self.labels = coordinate_labels(params, argnums, param_names)
        self._evaluate: Callable[[Any], Any] | None = None

    @property
    def drawable(self) -> bool:
        """True for one or two parameters in all."""
        return self.size in (1, 2)

    def _select(self, args: tuple[Any, ...]) -> Any:
        if isinstance(self.argnums, int):
            return args[self.argnums]
        return tuple(args[i] for i in self.argnums)

    def _grid_function(self) -> Callable[[Any], Any]:
        import jax
        import jax.numpy as jnp

        from .cache import CACHE, function_key

        wrt = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        fixed = tuple((i, a) for i, a in enumerate(self.args) if i not in wrt)
        # The fixed arguments are baked in as constants (a Python int may drive a loop),
        # so they are part of the key; the parameters only by shape and dtype.
        key, refs = function_key((self.fn, fixed))
        fn, argnums, unravel, has_aux, n_args = self.fn, self.argnums, self._unravel, self.has_aux, len(self.args)

        def build() -> Callable[[Any], Any]:
            def at(flat: Any) -> Any:
                params = unravel(flat)
                full: list[Any] = [None] * n_args
                for i, a in fixed:
                    full[i] = a
                for i, p in zip(wrt, (params,) if isinstance(argnums, int) else params, strict=True):
                    full[i] = p
                out = fn(*full)
                return jnp.reshape(out[0] if has_aux else out, ())

            return jax.jit(jax.vmap(at))

        sig = ("landscape", key, argnums, has_aux, _arg_signature(self._select(self.args)))
        return CACHE.get_or_build(sig, refs, build)

    def grid(self, box: Box) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``f`` on a regular grid over ``box``.

        Returns:
          ``(xs, ys, zs)``: for two parameters ``zs`` has shape ``(len(ys), len(xs))``;
          for one, ``ys`` is None and ``zs`` has shape ``(len(xs),)``.

        Raises:
          ValueError: the parameters are not drawable (more than two numbers).
        """
        if not self.drawable:
            raise ValueError(f"f has {self.size} parameters here; a landscape is drawn for one or two.")
        if self._evaluate is None:
            self._evaluate = self._grid_function()
        if self.size == 1:
            xs = np.linspace(box.lo[0], box.hi[0], GRID_1D)
            zs = np.asarray(self._evaluate(xs.astype(self.dtype)[:, None]), dtype=np.float64)
            return xs, None, zs
        xs = np.linspace(box.lo[0], box.hi[0], GRID_2D)
        ys = np.linspace(box.lo[1], box.hi[1], GRID_2D)
        gx, gy = np.meshgrid(xs, ys)
        flat = np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1).astype(self.dtype)
        zs = np.asarray(self._evaluate(flat), dtype=np.float64).reshape(GRID_2D, GRID_2D)
        return xs, ys, zs


def coordinate_labels(params: Any, argnums: int | tuple[int, ...], param_names: Sequence[str]) -> list[str]:
    """A label for every number in ``params``, flattened in ``ravel_pytree`` order.

    Args:
      params: the differentiated parameters (a tuple of them for several ``argnums``).
      argnums: which positional arguments they are.
      param_names: the function's positional parameter names.

    Returns:
      Labels such as ``["x", "y"]`` or ``["x[0]", "x[1]"]``.
    """
    import jax

    wrt = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    per_arg = (params,) if isinstance(argnums, int) else params
    labels: list[str] = []
    for i, arg in zip(wrt, per_arg, strict=True):
        name = param_names[i] if i < len(param_names) else f"arg{i}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            base = name + (jax.tree_util.keystr(path) if path else "")
            shape = np.shape(leaf)
            if shape == ():
                labels.append(base)
            else:
                labels.extend(f"{base}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*shape))
    return labels
