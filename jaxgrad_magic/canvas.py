"""Palette pictures: a rendered figure kept once, lines and dots drawn over copies with Pillow.

A plot's static part (axes, labels, contours) is rendered once by matplotlib and kept here as
a palette ("P") image with a few palette entries reserved for inks (:class:`Background`). A
frame copies it, draws the moving part with :mod:`PIL.ImageDraw` in those inks and saves an
indexed-colour PNG (:class:`Frame`): one byte per pixel, no anti-aliasing, far cheaper than a
matplotlib redraw and an RGB PNG.

Coordinates are matplotlib's display pixels turned over: ``x`` to the right and ``y`` down from
the top-left corner, pixel ``(row r, column c)`` covering ``[c, c + 1) x [r, r + 1)``. Lines are
drawn with a square brush: one-pixel lines side by side, several times faster in Pillow than
its wide lines (a polygon per segment).
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw


class Clip(NamedTuple):
    """A rectangle of pixels: rows ``top <= r < bottom``, columns ``left <= c < right``."""

    left: int
    top: int
    right: int
    bottom: int


class Background:
    """A static picture as a palette image, with palette entries reserved for inks drawn over it.

    Args:
      rgb: the picture, shape ``(height, width, 3)`` or ``(height, width, 4)`` (alpha is ignored), uint8.
      inks: the colours frames draw in, as ``(r, g, b)`` in 0-255; they get the last palette entries.
      area: the rectangle lines and dots are clipped to (the plot area); None for the whole picture.
      busy: a picture of many colour regions (a contour): its PNG is stored, not compressed.
        Deflating it would cost five times the rest of a frame for a third of the bytes (the
        panel redraws a few times a second on a local connection); mostly flat pictures (a
        loss curve) deflate to a few kilobytes quickly, and are deflated.

    Attributes:
      image: the palette image.
      inks: the palette index of each ink, in the order given.
      palette: ``(256, 3)`` uint8, every colour of the picture, the inks, then unused black.
      area: the clipping rectangle.
    """

    def __init__(
        self,
        rgb: np.ndarray,
        inks: Sequence[tuple[int, int, int]],
        *,
        area: Clip | None = None,
        busy: bool = False,
    ) -> None:
        rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
        height, width = rgb.shape[:2]
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
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[: len(picture)] = picture
        palette[count : count + len(inks)] = np.asarray(inks, dtype=np.uint8).reshape(-1, 3)
        quantized.putpalette(palette.tobytes())
        self.image = quantized
        self.palette = palette
        self.inks = tuple(range(count, count + len(inks)))
        self.area = area if area is not None else Clip(0, 0, width, height)
        self.busy = busy

    @property
    def pixels(self) -> np.ndarray:
        """The palette indices, shape ``(height, width)`` (a copy)."""
        return np.asarray(self.image)

    def rgb(self) -> np.ndarray:
        """The picture as the palette maps it, shape ``(height, width, 3)``."""
        return self.palette[self.pixels]

    def frame(self) -> Frame:
        """A fresh copy to draw into."""
        return Frame(self)


class Frame:
    """One picture: a copy of a :class:`Background` with lines and dots drawn into it.

    Drawing clipped to the background's area happens on a copy of that area, pasted back when
    the PNG is written: Pillow has no clipping rectangle, and the copy is a few microseconds.

    Args:
      background: the static picture to start from.
    """

    def __init__(self, background: Background) -> None:
        self.background = background
        self.image = background.image.copy()
        self._area: Image.Image | None = None
        self._area_draw: ImageDraw.ImageDraw | None = None

    def _clipped(self) -> ImageDraw.ImageDraw:
        if self._area_draw is None:
            self._area = self.image.crop(self.background.area)
            self._area_draw = ImageDraw.Draw(self._area)
        return self._area_draw

    def _whole(self) -> ImageDraw.ImageDraw:
        self._flush()  # what was drawn in the area goes under what is drawn now
        return ImageDraw.Draw(self.image)

    def _flush(self) -> None:
        if self._area is not None:
            self.image.paste(self._area, self.background.area[:2])
            self._area = self._area_draw = None

    def polyline(self, x: np.ndarray, y: np.ndarray, width: int, ink: int) -> None:
        """A line through ``(x[i], y[i])``, ``width`` pixels wide, clipped to the area.

        A non-finite point breaks the line (as in matplotlib); points far outside the picture
        are fine (segments are clipped to a margin around the area first, so Pillow never sees
        a huge coordinate).
        """
        x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
        area, draw = self.background.area, self._clipped()
        # In the area's own pixels, at the brush's top-left pixel (Pillow puts a pixel's centre on
        # an integer): a brush of width w covers w pixels from there, centred on the point.
        x, y = x - (area.left + width / 2), y - (area.top + width / 2)
        margin = 2.0 * width
        box = (-margin, -margin, area.right - area.left + margin, area.bottom - area.top + margin)
        finite = np.isfinite(x) & np.isfinite(y)
        with np.errstate(invalid="ignore"):
            inside = finite & (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
        whole = inside[:-1] & inside[1:]  # segments that need no clipping
        if whole.all():
            if len(x) == 1 and inside[0]:
                _line(draw, x, y, width, ink)
            elif len(x) > 1:
                _line(draw, *_drop_repeats(x, y), width, ink)
            return
        # Runs of whole segments are polylines; the segments that cross the margin are clipped one by one.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], whole, [False]]).astype(np.int8)))
        for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            _line(draw, x[start : stop + 1], y[start : stop + 1], width, ink)
        crossing = np.flatnonzero(~whole & finite[:-1] & finite[1:])
        ax, ay, bx, by = _clip_segments(x[crossing], y[crossing], x[crossing + 1], y[crossing + 1], box)
        # A segment between two of the largest floats overflows to nothing drawable.
        kept = np.isfinite(ax) & np.isfinite(ay) & np.isfinite(bx) & np.isfinite(by)
        ax, ay, bx, by = ax[kept], ay[kept], bx[kept], by[kept]
        for segment in zip(ax, ay, bx, by, strict=True):
            _line(draw, np.array(segment[::2]), np.array(segment[1::2]), width, ink)
        # Lone finite points between breaks still show.
        lone = inside & ~np.concatenate([[False], whole]) & ~np.concatenate([whole, [False]])
        lone &= ~np.isin(np.arange(len(x)), np.concatenate([crossing, crossing + 1]))
        for px, py in zip(x[lone].tolist(), y[lone].tolist(), strict=True):
            _line(draw, np.array([px]), np.array([py]), width, ink)

    def marker(
        self, x: float, y: float, radius: float, ink: int, *, ring: tuple[float, int] | None = None, clip: bool = True
    ) -> None:
        """One dot centred on the pixel holding ``(x, y)``, optionally over a larger disc (a ring).

        Args:
          x, y: the centre in pixels; a non-finite one draws nothing.
          radius: the dot's radius in pixels (pixels within it, centre to centre, are set).
          ink: the dot's palette index.
          ring: ``(radius, ink)`` of a larger disc drawn first, or None.
          clip: keep to the area (else the whole picture).
        """
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > 1e6:
            return
        draw, (left, top) = (self._clipped(), self.background.area[:2]) if clip else (self._whole(), (0, 0))
        col, row = math.floor(x) - left, math.floor(y) - top
        for size, colour in (ring, (radius, ink)) if ring is not None else ((radius, ink),):
            reach = math.floor(size)
            draw.ellipse((col - reach, row - reach, col + reach, row + reach), fill=colour)

    def dots(self, x: np.ndarray, y: np.ndarray, radius: float, ink: int) -> None:
        """Discs centred on the pixels holding ``(x[i], y[i])``, clipped to the area; non-finite points are skipped."""
        x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
        area = self.background.area
        reach = math.floor(radius) + 1
        with np.errstate(invalid="ignore"):
            near = (
                (x > area.left - reach) & (x < area.right + reach) & (y > area.top - reach) & (y < area.bottom + reach)
            )
        # Many points share a pixel (a converging path): each pixel once, every disc in one call.
        span = area.right - area.left + 2 * reach
        col = np.floor(x[near]).astype(np.int64) - (area.left - reach)
        row = np.floor(y[near]).astype(np.int64) - (area.top - reach)
        row, col = np.divmod(np.unique(row * span + col), span)
        dr, dc = np.nonzero(_disc(radius))
        shift = _disc(radius).shape[0] // 2 + reach
        cols = (col[:, None] + (dc - shift)).reshape(-1)
        rows = (row[:, None] + (dr - shift)).reshape(-1)
        self._clipped().point(np.column_stack([cols, rows]).astype(np.float32), fill=ink)

    def png(self) -> bytes:
        """The frame as an indexed-colour PNG (one byte per pixel; deflated at the fastest level unless busy)."""
        self._flush()
        return png(self.image, level=0 if self.background.busy else 1)


@functools.lru_cache(maxsize=8)
def _disc(radius: float) -> np.ndarray:
    """A disc of ``radius`` pixels as a square boolean mask, centred on its middle pixel."""
    reach = math.floor(radius)
    d = np.arange(-reach, reach + 1)
    return d[:, None] ** 2 + d[None, :] ** 2 <= radius**2 + 1e-9


def png(image: Image.Image, strategy: int = zlib.Z_DEFAULT_STRATEGY, level: int = 1) -> bytes:
    """``image`` as PNG bytes through Pillow, without its slow palette optimisation.

    Args:
      image: the picture.
      strategy: zlib's compression strategy (``zlib.Z_RLE`` suits many-coloured palette pictures).
      level: zlib's level, 0 (stored) to 9.
    """
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=level, compress_type=strategy)
    return out.getvalue()


def _line(draw: ImageDraw.ImageDraw, x: np.ndarray, y: np.ndarray, width: int, ink: int) -> None:
    """A polyline with a square brush of ``width`` pixels whose top-left pixel follows ``(x, y)``."""
    # Whole pixels, rounded here (ties to even: a brush of even width centred on pixel centres
    # leans left and right in turn, not all one way): Pillow versions round fractions differently.
    col, row = np.rint(x), np.rint(y)
    if len(x) == 1:  # a lone point: the brush itself
        c, r = float(col[0]), float(row[0])
        draw.rectangle((c, r, c + width - 1, r + width - 1), fill=ink)
        return
    # One-pixel lines shifted to every pixel of the brush: together, the line under a square brush.
    # They go there and back in one call, so each turn is a step inside the brush at an end point.
    shifts = np.array(list(itertools.product(range(width), repeat=2)), dtype=np.float32)
    passes = np.empty((len(shifts), len(col), 2), dtype=np.float32)
    passes[:, :, 0], passes[:, :, 1] = col, row
    passes += shifts[:, None, :]
    passes[1::2] = passes[1::2, ::-1]
    # Pillow reads a buffer of float32 pairs as it is: no list of Python floats to build.
    draw.line(passes.reshape(-1, 2), fill=ink, width=1)


def _drop_repeats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points less those in the pixel of the point before them (the first and last kept).

    A long path of small steps shrinks to its pixels: at this resolution they add nothing.
    """
    ix, iy = np.rint(x), np.rint(y)
    keep = np.empty(len(x), dtype=bool)
    keep[0] = keep[-1] = True
    keep[1:-1] = (ix[1:-1] != ix[:-2]) | (iy[1:-1] != iy[:-2])
    return x[keep], y[keep]


def _clip_segments(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The parts of segments ``a -> b`` inside ``box`` (Liang-Barsky); segments outside are dropped."""
    left, top, right, bottom = box
    t0, t1 = np.zeros_like(ax), np.ones_like(ax)
    keep = np.ones(len(ax), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dx, dy = bx - ax, by - ay
        for p, q in ((-dx, ax - left), (dx, right - ax), (-dy, ay - top), (dy, bottom - ay)):
            keep &= (p != 0) | (q >= 0)  # parallel to this edge and outside it: gone
            r = q / p
            t0 = np.where(p < 0, np.maximum(t0, r), t0)
            t1 = np.where(p > 0, np.minimum(t1, r), t1)
        keep &= t0 <= t1
        t0, t1, ax, ay, dx, dy = t0[keep], t1[keep], ax[keep], ay[keep], dx[keep], dy[keep]
        return ax + t0 * dx, ay + t0 * dy, ax + t1 * dx, ay + t1 * dy
