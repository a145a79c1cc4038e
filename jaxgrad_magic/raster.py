"""Indexed-colour frames: a static picture rendered once, lines and dots drawn over it with NumPy.

The descent panel's pictures have a static part (axes, ticks, labels, contours) that changes
only with the layout, and a moving part (the loss line, the path, the current point) that
changes every frame. Matplotlib renders the static part once; this module keeps it as palette
indices (:class:`Background`) and draws the moving part into a copy of it (:class:`Frame`) in
colours reserved in the palette, without anti-aliasing. A frame is then a memcpy, a few
vectorised NumPy passes, and a PNG of one byte per pixel in which only the rows drawn into
are deflated again: the rows above and below them are the background's, deflated once.

Coordinates are pixels: ``x`` to the right and ``y`` down from the top-left corner of the
image; pixel ``(row r, column c)`` covers ``[c, c + 1) x [r, r + 1)``. Lines are drawn with a
square brush: a pixel is set when its centre is within half the width of the line on both
axes.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SAMPLES = 200_000  # a polyline longer than this many pixels is sampled more sparsely
_FANCY_LIMIT = 20_000  # up to this many brush pixels are set one by one; beyond, through a mask


class Clip(NamedTuple):
    """A rectangle of pixels: rows ``top <= r < bottom``, columns ``left <= c < right``."""

    left: int
    top: int
    right: int
    bottom: int


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


class Background:
    """A static picture as palette indices, with palette entries reserved for inks drawn over it.

    Args:
      rgb: the picture, shape ``(height, width, 3)`` or ``(height, width, 4)`` (alpha is ignored), uint8.
      inks: the colours frames draw in, as ``(r, g, b)`` in 0-255; they get the last palette entries.
      busy: a picture of many colour regions (a contour). Its rows compress little and slowly:
        twice as fast for runs of one colour only (zlib's ``Z_RLE``), and the rows a frame draws
        into are stored as they are, which costs a copy instead of a compression. Mostly flat
        pictures (a loss curve) compress well with the default search, and are compressed.

    Attributes:
      height, width: the size in pixels.
      inks: the palette index of each ink, in the order given.
      palette: ``(n, 3)`` uint8, every colour of the picture and the inks.
    """

    def __init__(self, rgb: np.ndarray, inks: Sequence[tuple[int, int, int]], *, busy: bool = False) -> None:
        from PIL import Image

        rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
        self.height, self.width = rgb.shape[:2]
        room = 256 - len(inks)
        if room < 2:
            raise ValueError(f"{len(inks)} inks leave no room for the picture's colours; pass at most 254.")
        image = Image.fromarray(rgb)
        colours = image.getcolors(room)  # None when the picture has more colours than there is room for
        count = len(colours) if colours else room
        # Median cut keeps a plot's flat colours exactly and merges only rare anti-aliasing shades;
        # with few enough colours it is an exact mapping.
        quantized = image.quantize(count, method=Image.Quantize.MEDIANCUT)
        picture = np.asarray(quantized.getpalette()[: 3 * count], dtype=np.uint8).reshape(-1, 3)
        picture = np.concatenate([picture, np.zeros((count - len(picture), 3), np.uint8)])
        self.palette = np.concatenate([picture, np.asarray(inks, dtype=np.uint8).reshape(-1, 3)])
        self.inks = tuple(range(count, count + len(inks)))
        # Each row starts with its PNG filter type (0: none), so a frame's buffer is the PNG's scanlines.
        self.rows = np.zeros((self.height, 1 + self.width), dtype=np.uint8)
        self.rows[:, 1:] = np.asarray(quantized, dtype=np.uint8)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 3, 0, 0, 0)  # 8-bit palette indices
        self.head = PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"PLTE", self.palette.tobytes())
        self.deflater = _Deflater(self.rows, zlib.Z_RLE if busy else zlib.Z_DEFAULT_STRATEGY, store_drawn=busy)

    @property
    def pixels(self) -> np.ndarray:
        """The palette indices, shape ``(height, width)`` (a view)."""
        return self.rows[:, 1:]

    def rgb(self) -> np.ndarray:
        """The picture as the palette maps it, shape ``(height, width, 3)``."""
        return self.palette[self.pixels]

    def frame(self) -> Frame:
        """A fresh copy to draw into."""
        return Frame(self)


class Frame:
    """One picture: a copy of a :class:`Background` with lines and dots drawn into it.

    Args:
      background: the static picture to start from.
    """

    def __init__(self, background: Background) -> None:
        self.background = background
        self.rows = background.rows.copy()
        self.pixels = self.rows[:, 1:]
        self.drawn: tuple[int, int] | None = None  # the first and last row drawn into, if any

    def _touch(self, first: int, last: int) -> None:
        drawn = self.drawn
        self.drawn = (first, last) if drawn is None else (min(first, drawn[0]), max(last, drawn[1]))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.background.height, self.background.width

    def paint(self, rows: np.ndarray, cols: np.ndarray, ink: int) -> None:
        """Set the pixels at ``(rows[i], cols[i])`` (inside the picture) to palette index ``ink``."""
        if len(rows):
            self.pixels[rows, cols] = ink
            self._touch(int(rows.min()), int(rows.max()))

    def paint_mask(self, mask: np.ndarray, top: int, left: int, ink: int) -> None:
        """Set the pixels where ``mask`` is True, ``mask[0, 0]`` being pixel ``(top, left)``."""
        h, w = mask.shape
        if h and w:
            np.copyto(self.pixels[top : top + h, left : left + w], np.uint8(ink), where=mask)
            self._touch(top, top + h - 1)

    def png(self) -> bytes:
        """The frame as an indexed-colour PNG (one byte per pixel, deflated at the fastest level)."""
        data = self.background.deflater.deflate(self.rows, self.drawn)
        return self.background.head + chunk(b"IDAT", data) + _IEND


_IEND = chunk(b"IEND", b"")
_ADLER_BASE = 65521


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from their own (as zlib's ``adler32_combine``)."""
    rem = second_length % _ADLER_BASE
    low = first & 0xFFFF
    high = (rem * low) % _ADLER_BASE
    low = (low + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    high = (high + (first >> 16) + (second >> 16) + _ADLER_BASE - rem) % _ADLER_BASE
    return (high << 16) | low


class _Deflater:
    """Deflates frames of one background, reusing the work on the rows they share with it.

    A frame differs from its background only between the first and the last row drawn into.
    The background's rows above and below those are deflated once (per band edge) and kept;
    a frame deflates only its drawn rows, from a fresh state, and the three parts are joined
    on byte boundaries (each part but the last ends with a sync flush, and none refers back
    into another). The Adler-32 checksum is joined from the parts' own. So a frame costs the
    compression of the rows it drew into, and copies no compressor state.

    Args:
      rows: the background's scanlines (filter byte first), never changed afterwards.
      strategy: the zlib strategy.
      store_drawn: store the drawn rows without compressing them (deflate's stored blocks).
    """

    BAND = 8  # rows; the kept parts start and end on a band edge
    KEEP = 4  # kept heads and tails (frames of one picture mostly start and end on the same bands)
    HEADER = b"\x78\x01"  # zlib: deflate with a 32 KiB window, fastest level

    def __init__(self, rows: np.ndarray, strategy: int, *, store_drawn: bool = False) -> None:
        self.rows, self.strategy, self.store_drawn = rows, strategy, store_drawn
        self._heads: OrderedDict[int, tuple[bytes, int]] = OrderedDict()  # row -> (deflated rows[:row], adler32)
        self._tails: OrderedDict[int, tuple[bytes, int]] = OrderedDict()  # row -> (deflated rows[row:], adler32)
        self._whole: bytes | None = None

    def _compressor(self, level: int = 1) -> Any:
        # Raw deflate (negative window bits): the header and the checksum are written here. The
        # default search is fastest here with a small hash (memory level 6), run-length with a large one.
        memory = 8 if self.strategy == zlib.Z_RLE else 6
        return zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, memory, self.strategy)

    def _kept(self, kept: OrderedDict[int, tuple[bytes, int]], row: int, head: bool) -> tuple[bytes, int]:
        part = kept.get(row)
        if part is None:
            data = self.rows[:row].data if head else self.rows[row:].data
            packer = self._compressor()
            deflated = packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH if head else zlib.Z_FINISH)
            part = kept[row] = (deflated, zlib.adler32(data))
            if len(kept) > self.KEEP:
                kept.popitem(last=False)
        else:
            kept.move_to_end(row)
        return part

    def deflate(self, rows: np.ndarray, drawn: tuple[int, int] | None) -> bytes:
        """The zlib stream of ``rows``, which equal the background's outside the ``drawn`` rows."""
        if drawn is None:
            if self._whole is None:
                self._whole = zlib.compress(self.rows.data, 1)
            return self._whole
        height, band = len(rows), self.BAND
        top = drawn[0] // band * band
        bottom = min(height, -(-(drawn[1] + 1) // band) * band)
        head, adler = self._kept(self._heads, top, head=True)
        middle = rows[top:bottom].data
        adler = zlib.adler32(middle, adler)
        packer = self._compressor(0 if self.store_drawn else 1)
        if bottom >= height:
            body = packer.compress(middle) + packer.flush()
        else:
            tail, tail_adler = self._kept(self._tails, bottom, head=False)
            body = packer.compress(middle) + packer.flush(zlib.Z_SYNC_FLUSH) + tail
            adler = adler32_combine(adler, tail_adler, (height - bottom) * rows.shape[1])
        return b"".join((self.HEADER, head, body, struct.pack(">I", adler)))


# --------------------------------------------------------------------------- shapes


@functools.lru_cache(maxsize=32)
def disc(radius: float) -> np.ndarray:
    """A disc of ``radius`` pixels as a square boolean mask, centred on its middle pixel's centre."""
    reach = math.ceil(radius)
    d = np.arange(-reach, reach + 1)
    return d[:, None] ** 2 + d[None, :] ** 2 <= radius**2 + 1e-9


def dots(frame: Frame, x: np.ndarray, y: np.ndarray, radius: float, ink: int, clip: Clip | None = None) -> None:
    """Discs of ``radius`` pixels centred on the pixels holding ``(x[i], y[i])``; non-finite points are skipped.

    Args:
      frame: where to draw.
      x, y: the centres in pixels.
      radius: the disc radius in pixels.
      ink: the palette index.
      clip: draw only inside this rectangle (default: the whole picture).
    """
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    h, w = frame.shape
    left, top, right, bottom = clip if clip is not None else (0, 0, w, h)
    shape = disc(radius)
    reach = shape.shape[0] // 2
    with np.errstate(invalid="ignore"):
        near = (x > left - reach - 1) & (x < right + reach + 1) & (y > top - reach - 1) & (y < bottom + reach + 1)
    cols, rows = np.floor(x[near]).astype(np.int64), np.floor(y[near]).astype(np.int64)
    if len(rows) <= 8:
        # A few markers: each is one masked copy into a slice of the picture.
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            r0, r1 = max(r - reach, top), min(r + reach + 1, bottom)
            c0, c1 = max(c - reach, left), min(c + reach + 1, right)
            if r0 < r1 and c0 < c1:
                part = shape[r0 - r + reach : r1 - r + reach, c0 - c + reach : c1 - c + reach]
                frame.paint_mask(part, r0, c0, ink)
        return
    dr, dc = np.nonzero(shape)
    rr = (rows[:, None] + (dr - reach)[None, :]).reshape(-1)
    cc = (cols[:, None] + (dc - reach)[None, :]).reshape(-1)
    inside = (rr >= top) & (rr < bottom) & (cc >= left) & (cc < right)
    frame.paint(rr[inside], cc[inside], ink)


def marker(
    frame: Frame,
    x: float,
    y: float,
    radius: float,
    ink: int,
    *,
    ring: tuple[float, int] | None = None,
    clip: Clip | None = None,
) -> None:
    """One dot at ``(x, y)``, optionally ringed: a disc of ``ring[0]`` pixels in ``ring[1]`` under it.

    Args:
      frame: where to draw.
      x, y: the centre in pixels; a non-finite one draws nothing.
      radius: the dot's radius in pixels.
      ink: the dot's palette index.
      ring: ``(radius, ink)`` of a larger disc drawn first, or None.
      clip: draw only inside this rectangle (default: the whole picture).
    """
    if not (math.isfinite(x) and math.isfinite(y)):
        return
    h, w = frame.shape
    left, top, right, bottom = clip if clip is not None else (0, 0, w, h)
    r, c = math.floor(y), math.floor(x)
    for size, colour in (ring, (radius, ink)) if ring is not None else ((radius, ink),):
        shape = disc(size)
        reach = shape.shape[0] // 2
        r0, r1 = max(r - reach, top), min(r + reach + 1, bottom)
        c0, c1 = max(c - reach, left), min(c + reach + 1, right)
        if r0 < r1 and c0 < c1:
            frame.paint_mask(shape[r0 - r + reach : r1 - r + reach, c0 - c + reach : c1 - c + reach], r0, c0, colour)


def _clip_segments(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The parts of segments ``a -> b`` inside ``box`` (Liang-Barsky); segments outside are dropped."""
    left, top, right, bottom = box
    dx, dy = bx - ax, by - ay
    t0, t1 = np.zeros_like(ax), np.ones_like(ax)
    keep = np.ones(len(ax), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in ((-dx, ax - left), (dx, right - ax), (-dy, ay - top), (dy, bottom - ay)):
            keep &= (p != 0) | (q >= 0)  # parallel to this edge and outside it: gone
            r = q / p
            entering, leaving = p < 0, p > 0
            t0 = np.where(entering, np.maximum(t0, r), t0)
            t1 = np.where(leaving, np.minimum(t1, r), t1)
    keep &= t0 <= t1
    t0, t1, ax, ay, dx, dy = t0[keep], t1[keep], ax[keep], ay[keep], dx[keep], dy[keep]
    return ax + t0 * dx, ay + t0 * dy, ax + t1 * dx, ay + t1 * dy


def polyline(frame: Frame, x: np.ndarray, y: np.ndarray, width: int, ink: int, clip: Clip) -> None:
    """A polyline through ``(x[i], y[i])``, ``width`` pixels wide, inside ``clip``.

    Each segment is sampled about once per pixel of its length and a square brush of
    ``width`` pixels is set around every sample. A non-finite point breaks the line (as in
    matplotlib); points far outside the picture are fine (segments are clipped first).

    Args:
      frame: where to draw.
      x, y: the vertices in pixels.
      width: the line width in pixels (1 or more).
      ink: the palette index.
      clip: the rectangle to draw in.
    """
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if len(x) < 2:
        return
    half = width / 2
    box = (clip.left - half, clip.top - half, clip.right + half, clip.bottom + half)
    with np.errstate(invalid="ignore", over="ignore"):
        inside = math.isfinite(float(x.sum()) + float(y.sum())) and (
            x.min() >= box[0] and x.max() <= box[2] and y.min() >= box[1] and y.max() <= box[3]
        )
    if inside:
        # The common case, a path in view. Points in the pixel of the point before them add
        # nothing at this resolution: a long path of small steps shrinks to its pixels.
        ix, iy = np.floor(x), np.floor(y)
        keep = np.empty(len(x), dtype=bool)
        keep[0] = keep[-1] = True
        keep[1:-1] = (ix[1:-1] != ix[:-2]) | (iy[1:-1] != iy[:-2])
        x, y = x[keep], y[keep]
        # One connected line: samples every pixel of its length (in the larger of the two
        # directions), so every point of it is within half a pixel of one.
        along = np.empty(len(x))
        along[0] = 0.0
        np.cumsum(np.maximum(np.abs(np.diff(x)), np.abs(np.diff(y))), out=along[1:])
        at = np.linspace(0.0, along[-1], int(along[-1] / max(1.0, along[-1] / MAX_SAMPLES)) + 2)
        _brush(frame, np.interp(at, along, x), np.interp(at, along, y), width, ink, clip)
        return
    # Breaks or points far out: each segment on its own, clipped first.
    finite = np.isfinite(x) & np.isfinite(y)
    ok = finite[:-1] & finite[1:]
    ax, ay, bx, by = _clip_segments(x[:-1][ok], y[:-1][ok], x[1:][ok], y[1:][ok], box)
    if not len(ax):
        return
    dx, dy = bx - ax, by - ay
    length = np.maximum(np.abs(dx), np.abs(dy))
    spacing = max(1.0, float(length.sum()) / MAX_SAMPLES)  # a scribble of a path stays bounded in cost
    counts = np.ceil(length / spacing).astype(np.int64) + 1  # both ends of each segment
    segment = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    t = step / np.maximum(counts - 1, 1)[segment]
    _brush(frame, ax[segment] + t * dx[segment], ay[segment] + t * dy[segment], width, ink, clip)


@functools.lru_cache(maxsize=8)
def _brush_offsets(width: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.arange(width * width), width)
    return rows[None, :], cols[None, :]


def _brush(frame: Frame, sx: np.ndarray, sy: np.ndarray, width: int, ink: int, clip: Clip) -> None:
    """Set a square brush of ``width`` pixels at every sample ``(sx[i], sy[i])``, inside ``clip``."""
    half = width / 2
    # The brush's first row and column are the first whose centre is within half the width of the sample.
    r0 = np.ceil(sy - (half + 0.5)).astype(np.int64)
    c0 = np.ceil(sx - (half + 0.5)).astype(np.int64)
    if len(r0) * width * width <= _FANCY_LIMIT:
        dr, dc = _brush_offsets(width)
        rows = (r0[:, None] + dr).reshape(-1)
        cols = (c0[:, None] + dc).reshape(-1)
        keep = (rows >= clip.top) & (rows < clip.bottom) & (cols >= clip.left) & (cols < clip.right)
        frame.paint(rows[keep], cols[keep], ink)
        return
    # Many samples: mark the brush corners in a mask with a margin, then grow them by shifts.
    h, w = clip.bottom - clip.top, clip.right - clip.left
    r0, c0 = r0 - clip.top, c0 - clip.left
    mask = np.zeros((h + width, w + width), dtype=bool)
    corner = (r0 > -width) & (r0 < h) & (c0 > -width) & (c0 < w)
    mask[r0[corner] + width, c0[corner] + width] = True
    tall = mask.copy()
    for k in range(1, width):
        tall[k:, :] |= mask[:-k, :]
    grown = tall.copy()
    for k in range(1, width):
        grown[:, k:] |= tall[:, :-k]
    frame.paint_mask(grown[width:, width:], clip.top, clip.left, ink)


class Columns(NamedTuple):
    """A line that is a function of ``x``, reduced to half-pixel columns (still in data units for ``y``).

    Attributes:
      count: how many half columns.
      present: which columns hold points of the line.
      low, high: the least and greatest ``y`` of the points in each present column.
      crossed: which column edges a segment of the line crosses (``count + 1`` edges).
      before, after: ``y`` of the segment's ends at each crossed edge.
      at: where each crossed edge lies between the segment's ends (0 to 1).
    """

    count: int
    present: np.ndarray
    low: np.ndarray
    high: np.ndarray
    crossed: np.ndarray
    before: np.ndarray
    after: np.ndarray
    at: np.ndarray

    def finite(self) -> bool:
        """True when every value that reached a column is finite (they are all the line has)."""
        return bool(np.isfinite(self.values()).all())

    def values(self) -> np.ndarray:
        """Every value the columns hold: their extremes, then the ends of the crossing segments."""
        return np.concatenate([self.low, self.high, self.before, self.after])

    def least_positive(self) -> float:
        """The least positive ``y`` among the columns' values (inf when none is positive)."""
        values = self.values()
        return float(np.min(values, where=values > 0, initial=math.inf))

    def value_range(self) -> tuple[float, float]:
        """The least and greatest ``y`` of the line (NaN when it has no point, or holds NaN)."""
        values = self.values()
        if not len(values):
            return math.nan, math.nan
        return float(values.min()), float(values.max())


def reduce_columns(
    xs: np.ndarray | range,
    ys: np.ndarray,
    x_scale: float,
    x_offset: float,
    start: float,
    count: int,
    *,
    skip_nan: bool = False,
) -> Columns:
    """Reduce a line through ``(x_scale * xs[i] + x_offset, ys[i])`` to half-pixel columns.

    Half column ``j`` covers pixel ``x`` in ``[start + j / 2, start + (j + 1) / 2)``. A line
    of 10^5 points costs a search (none for a ``range``) and two reductions over ``ys``; the
    rest is per column. Only the columns' values are ever mapped to pixels (see
    :func:`column_extents`), so ``y`` may be in any monotonic scale.

    Args:
      xs: the points' positions in data units, non-decreasing: an array (integers are searched
        as they are), or a ``range`` with a positive step (searched by arithmetic).
      ys: the values.
      x_scale, x_offset: pixel ``x`` of data ``x`` is ``x_scale * x + x_offset`` (``x_scale > 0``).
      start: the pixel ``x`` where half column 0 begins.
      count: how many half columns.
      skip_nan: ignore NaN inside a column (NaN points break the line); by default a NaN or
        inf makes its column's extremes NaN or inf, which :meth:`Columns.finite` reports.

    Returns:
      The :class:`Columns`.
    """
    n = len(xs)
    empty = np.zeros(0)
    if not n or count <= 0:
        none = np.zeros(max(count, 0), dtype=bool)
        return Columns(max(count, 0), none, empty, empty, np.zeros(max(count, 0) + 1, dtype=bool), empty, empty, empty)
    edges_px = start + 0.5 * np.arange(count + 1)
    if isinstance(xs, range):
        if xs.step <= 0:
            raise ValueError(f"positions must increase, but the range {xs} does not.")
        # Evenly spaced: point i is at pixel a * i + b, and no array of positions is needed.
        a, b = x_scale * xs.step, x_scale * xs.start + x_offset
        idx = np.minimum(np.maximum(np.ceil((edges_px - b) / a), 0), n).astype(np.int64)
    else:
        idx = _first_at_or_after(xs, (edges_px - x_offset) / x_scale)
    present = idx[1:] > idx[:-1]
    # Between two columns with points there are only empty ones, so each reduction ends where
    # the next column with points starts, and the last at the last edge.
    firsts = idx[:-1][present]
    end = int(idx[-1])
    low, high = (np.fmin, np.fmax) if skip_nan else (np.minimum, np.maximum)
    lows = low.reduceat(ys[:end], firsts) if len(firsts) else empty
    highs = high.reduceat(ys[:end], firsts) if len(firsts) else empty
    # Where a segment crosses an edge, the line's y there belongs to the columns on both sides.
    crossed = (idx > 0) & (idx < n)
    right = idx[crossed]
    # How far along its segment each edge lies (1 where the segment has no width).
    if isinstance(xs, range):
        at = (edges_px[crossed] - b) / a - (right - 1)
    else:
        xa = x_scale * xs[right - 1].astype(np.float64) + x_offset
        span = x_scale * xs[right].astype(np.float64) + x_offset - xa
        at = np.divide(edges_px[crossed] - xa, span, out=np.ones_like(span), where=span > 0)
    return Columns(count, present, lows, highs, crossed, ys[right - 1], ys[right], at)


def column_extents(columns: Columns, y_to_px: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The least and greatest pixel ``y`` of a reduced line in each half column (NaN: none).

    Args:
      columns: the line, from :func:`reduce_columns`.
      y_to_px: pixel ``y`` of data ``y``, monotonic (either way); called once, on the columns' values.

    Returns:
      ``(lo, hi)``, each ``columns.count`` long.
    """
    count, k, m = columns.count, len(columns.low), len(columns.before)
    lo, hi = np.full(count, np.nan), np.full(count, np.nan)
    pixels = y_to_px(columns.values())
    a, b = pixels[:k], pixels[k : 2 * k]
    lo[columns.present], hi[columns.present] = np.fmin(a, b), np.fmax(a, b)
    ya, yb = pixels[2 * k : 2 * k + m], pixels[2 * k + m :]
    edge = np.full(count + 1, np.nan)
    with np.errstate(invalid="ignore"):  # an infinite pixel value (a value off any scale) gives NaN here
        edge[columns.crossed] = ya + columns.at * (yb - ya)
    lo = np.fmin(lo, np.fmin(edge[:-1], edge[1:]))
    hi = np.fmax(hi, np.fmax(edge[:-1], edge[1:]))
    return lo, hi


def _first_at_or_after(xs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """For each edge, the index of the first position at or right of it (``len(xs)`` if none)."""
    if np.issubdtype(xs.dtype, np.integer):
        # Searching with integers keeps numpy from casting the whole of xs to float.
        info = np.iinfo(xs.dtype)
        return np.searchsorted(xs, np.clip(np.ceil(edges), info.min, info.max).astype(xs.dtype))
    return np.searchsorted(xs, edges)


def column_spans(frame: Frame, lo: np.ndarray, hi: np.ndarray, width: int, ink: int, clip: Clip) -> None:
    """Draw a line that is a function of ``x`` from its extent in half-pixel columns.

    Half column ``j`` spans pixel ``x`` in ``[s + j / 2, s + (j + 1) / 2)`` with
    ``s = clip.left + 0.5 - width / 2`` (see :func:`span_start`); ``lo[j]`` and ``hi[j]`` are
    the least and greatest ``y`` of the line there (NaN: none). With a square brush of
    ``width`` pixels, pixel column ``c`` is covered from the least to the greatest ``y`` over
    the ``2 * width`` half columns under the brush, widened by half the width up and down:
    one pass over the columns, however many points the line has.

    Args:
      frame: where to draw.
      lo, hi: the extent per half column, :func:`span_count` long.
      width: the line width in pixels.
      ink: the palette index.
      clip: the rectangle to draw in.
    """
    cols = clip.right - clip.left
    if cols <= 0 or clip.bottom <= clip.top:
        return
    low, high = lo[0 : 2 * cols : 2], hi[0 : 2 * cols : 2]
    for k in range(1, 2 * width):
        low = np.fmin(low, lo[k : k + 2 * cols : 2])
        high = np.fmax(high, hi[k : k + 2 * cols : 2])
    half = width / 2
    # Rows whose centre is within half the width of the column's extent.
    first = np.maximum(np.ceil(low - (half + 0.5)), clip.top)
    last = np.minimum(np.ceil(high + (half - 0.5)) - 1, clip.bottom - 1)
    drawn = last >= first  # False for NaN: columns the line does not reach
    first, counts = first[drawn].astype(np.int64), (last[drawn] - first[drawn]).astype(np.int64) + 1
    if not len(counts):
        return
    # One (row, column) per pixel of every column's run, in a handful of vectorised calls.
    offsets = np.cumsum(counts) - counts
    rows = np.arange(int(counts.sum())) + np.repeat(first - offsets, counts)
    frame.paint(rows, np.repeat(clip.left + np.flatnonzero(drawn), counts), ink)


def span_start(clip: Clip, width: int) -> float:
    """The pixel ``x`` where half column 0 of :func:`column_spans` begins."""
    return clip.left + 0.5 - width / 2


def span_count(clip: Clip, width: int) -> int:
    """How many half columns :func:`column_spans` reads."""
    return 2 * (clip.right - clip.left) + 2 * width - 2
