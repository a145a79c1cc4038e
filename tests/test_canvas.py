"""Indexed-colour frames: PNG bytes decoded by Pillow and zlib, lines checked against a dense reference.

The references here are deliberately naive: a polyline sampled every 1/50 of a pixel with the
same square brush, a disc tested pixel by pixel. They share no code with the rasterizer.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxgrad_magic import raster

INK = (220, 30, 30)


def blank(height: int = 40, width: int = 60, inks: int = 1) -> raster.Background:
    rgb = np.full((height, width, 3), 245, dtype=np.uint8)
    return raster.Background(rgb, [INK] * inks)


def extents(xs: np.ndarray, ys: np.ndarray, start: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """How far a line through ``(xs, ys)`` (pixels) reaches in each half column; NaN breaks it."""
    return raster.column_extents(raster.reduce_columns(xs, ys, 1.0, 0.0, start, count, skip_nan=True), lambda v: v)


def decoded(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    return np.asarray(image)


def idat(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG."""
    out, at = b"", 8
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        kind = png[at + 4 : at + 8]
        if kind == b"IDAT":
            out += png[at + 8 : at + 8 + length]
        at += 12 + length
    return out


def reference_line(
    x: np.ndarray, y: np.ndarray, width: float, shape: tuple[int, int], closed: bool = False
) -> np.ndarray:
    """Pixels whose centre is within half the width of a point of the polyline on both axes.

    "Within" is ``[point - half, point + half)``, as a brush of an even width covers whole
    pixels; ``closed`` takes both ends.
    """
    mask = np.zeros(shape, dtype=bool)
    half = width / 2
    rows = np.arange(shape[0]) + 0.5
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:], strict=True):
        if not np.isfinite([x0, y0, x1, y1]).all():
            continue
        t = np.linspace(0.0, 1.0, int(50 * max(abs(x1 - x0), abs(y1 - y0), 1)) + 1)
        sx, sy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        for c in range(shape[1]):
            near = np.abs(c + 0.5 - sx) <= half if closed else (c + 0.5 >= sx - half) & (c + 0.5 < sx + half)
            if near.any():
                ys = sy[near]
                gap = rows[:, None] - ys
                inside = np.abs(gap) <= half if closed else (gap >= -half) & (gap < half)
                mask[:, c] |= inside.any(axis=1)
    return mask


def assert_a_line(got: np.ndarray, x: np.ndarray, y: np.ndarray, width: int) -> None:
    """No hole along the line, and nothing beyond the square brush around it."""
    centre = reference_line(x, y, 1.0, got.shape, closed=True)  # the pixels the line itself crosses
    hull = reference_line(x, y, width, got.shape, closed=True)
    assert got[centre].all(), f"{(~got & centre).sum()} pixels on the line were left out"
    assert not (got & ~hull).any(), f"{(got & ~hull).sum()} pixels drawn beyond the brush"


# --------------------------------------------------------------------------- PNG


def test_background_keeps_few_colours_exactly() -> None:
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    rgb = colours[rng.integers(0, 7, (30, 50))]
    bg = raster.Background(rgb, [INK, (0, 0, 255)])
    assert np.array_equal(bg.rgb(), rgb)
    assert tuple(bg.palette[bg.inks[0]]) == INK and tuple(bg.palette[bg.inks[1]]) == (0, 0, 255)
    frame = bg.frame()
    assert np.array_equal(decoded(frame.png()), bg.pixels)  # nothing drawn: the background itself


def test_background_of_many_colours_stays_close() -> None:
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)  # thousands of colours
    bg = raster.Background(rgb, [INK])
    assert len(bg.palette) == 256
    assert np.abs(bg.rgb().astype(int) - rgb).mean() < 4


def test_too_many_inks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at most 254"):
        raster.Background(np.zeros((2, 2, 3), np.uint8), [INK] * 255)


@pytest.mark.parametrize("busy", [False, True])
def test_frames_decode_to_what_was_drawn(busy: bool) -> None:
    """Any rows drawn into, with the kept head and tail of the background: the PNG is exact."""
    rng = np.random.default_rng(1)
    rgb = (rng.integers(0, 4, (70, 45, 1)) * 60).repeat(3, axis=2).astype(np.uint8)
    bg = raster.Background(rgb, [INK], busy=busy)
    for _ in range(60):
        frame = bg.frame()
        n = int(rng.integers(0, 6))
        rows, cols = rng.integers(0, 70, n), rng.integers(0, 45, n)
        frame.paint(rows, cols, bg.inks[0])
        png = frame.png()
        assert np.array_equal(decoded(png), frame.pixels)
        # zlib checks the Adler-32 that was joined from the parts
        assert zlib.decompress(idat(png)) == frame.rows.tobytes()


def test_adler32_combine_matches_zlib() -> None:
    rng = np.random.default_rng(2)
    for size_a, size_b in [(0, 0), (0, 10), (10, 0), (1, 1), (70_000, 5), (123, 200_000)]:
        a, b = rng.bytes(size_a), rng.bytes(size_b)
        assert raster.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


# --------------------------------------------------------------------------- lines and dots


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([5.2, 50.7], [10.0, 10.0]),  # horizontal
        ([20.5, 20.5], [3.0, 35.0]),  # vertical
        ([3.0, 55.0], [2.0, 37.0]),  # diagonal
        ([10.0, 30.0, 12.0, 48.0, 47.0], [30.0, 5.0, 20.0, 33.0, 2.0]),  # a zigzag
        ([-40.0, 100.0], [-10.0, 60.0]),  # from outside to outside, through the picture
        ([5.0, 30.0, np.nan, 40.0, 55.0], [5.0, 30.0, 20.0, 5.0, 30.0]),  # NaN breaks the line
    ],
)
def test_polyline_sets_the_pixels_under_a_square_brush(x: list[float], y: list[float]) -> None:
    bg = blank()
    frame = bg.frame()
    clip = raster.Clip(0, 0, 60, 40)
    raster.polyline(frame, np.array(x), np.array(y), 2, bg.inks[0], clip)
    assert_a_line(frame.pixels == bg.inks[0], np.array(x), np.array(y), 2)


def test_polyline_stays_in_its_clip_and_survives_huge_coordinates() -> None:
    bg = blank()
    frame = bg.frame()
    clip = raster.Clip(10, 5, 50, 30)
    raster.polyline(frame, np.array([-1e30, 25.0, 1e300]), np.array([1e30, 15.0, -1e300]), 2, bg.inks[0], clip)
    drawn = np.argwhere(frame.pixels == bg.inks[0])
    assert len(drawn)
    assert drawn[:, 0].min() >= 5 and drawn[:, 0].max() < 30 and drawn[:, 1].min() >= 10 and drawn[:, 1].max() < 50


def test_a_long_path_of_tiny_steps_draws_like_its_pixels() -> None:
    t = np.linspace(0, 2 * np.pi, 20_000)
    x, y = 30 + 20 * np.cos(t), 20 + 15 * np.sin(t)
    bg = blank()
    frame = bg.frame()
    raster.polyline(frame, x, y, 2, bg.inks[0], raster.Clip(0, 0, 60, 40))
    assert_a_line(frame.pixels == bg.inks[0], x[::25], y[::25], 2)


@pytest.mark.parametrize(
    ("xs", "ys"),
    [
        (np.arange(5) * 10.0 + 3, np.array([2.0, 30.0, 8.0, 8.0, 25.0])),  # sparse: interpolated between points
        (np.linspace(1, 58, 5000), 20 + 15 * np.sin(np.linspace(0, 30, 5000))),  # dense: many points a column
        (np.array([4.0, 20.0, 20.0, 50.0]), np.array([5.0, 5.0, 35.0, 35.0])),  # a vertical step
    ],
)
def test_column_spans_are_exactly_the_square_brush(xs: np.ndarray, ys: np.ndarray) -> None:
    bg = blank()
    frame = bg.frame()
    clip = raster.Clip(0, 0, 60, 40)
    start, count = raster.span_start(clip, 2), raster.span_count(clip, 2)
    lo, hi = extents(xs, ys, start, count)
    raster.column_spans(frame, lo, hi, 2, bg.inks[0], clip)
    got = frame.pixels == bg.inks[0]
    want = reference_line(xs, ys, 2, (40, 60))
    # Exact up to where the reference's dense sampling just misses a pixel centre.
    assert (got != want).sum() <= 2


def test_column_spans_break_at_nan() -> None:
    xs = np.arange(8) * 8.0
    ys = np.array([5.0, 10.0, np.nan, 20.0, 25.0, np.nan, np.nan, 35.0])
    bg = blank()
    frame = bg.frame()
    clip = raster.Clip(0, 0, 60, 40)
    lo, hi = extents(xs, ys, raster.span_start(clip, 2), raster.span_count(clip, 2))
    raster.column_spans(frame, lo, hi, 2, bg.inks[0], clip)
    got = frame.pixels == bg.inks[0]
    assert got[reference_line(xs, ys, 2, (40, 60))].all()  # the segments between finite points
    assert not got[:, 10:23].any() and not got[:, 34:55].any()  # nothing across the gaps
    assert got[34:37, 55:58].any()  # a lone point after a gap still shows


def test_columns_of_a_range_equal_those_of_its_array() -> None:
    ys = np.random.default_rng(3).normal(size=1000)
    args = (0.05, 3.0, raster.span_start(raster.Clip(0, 0, 60, 40), 2), raster.span_count(raster.Clip(0, 0, 60, 40), 2))
    from_range = raster.reduce_columns(range(1000), ys, *args)
    from_array = raster.reduce_columns(np.arange(1000), ys, *args)
    from_floats = raster.reduce_columns(np.arange(1000.0), ys, *args)
    for other in (from_array, from_floats):
        for a, b in zip(from_range, other, strict=True):
            np.testing.assert_array_equal(a, b)
    assert from_range.value_range() == (ys.min(), ys.max())


def test_columns_report_values_that_are_not_finite() -> None:
    clip = raster.Clip(0, 0, 60, 40)
    args = (1.0, 0.0, raster.span_start(clip, 2), raster.span_count(clip, 2))
    assert raster.reduce_columns(range(50), np.ones(50), *args).finite()
    for bad in (np.nan, np.inf, -np.inf):
        ys = np.ones(50)
        ys[17] = bad
        assert not raster.reduce_columns(range(50), ys, *args).finite()


def test_marker_is_a_disc_with_a_ring() -> None:
    bg = raster.Background(np.full((40, 60, 3), 245, np.uint8), [INK, (255, 255, 255)])
    frame = bg.frame()
    red, white = bg.inks
    raster.marker(frame, 30.5, 20.5, 3.0, red, ring=(5.0, white))
    rows, cols = np.mgrid[0:40, 0:60]
    distance = np.hypot(rows - 20, cols - 30)  # from the centre of the pixel holding the point
    np.testing.assert_array_equal(frame.pixels == red, distance <= 3.0)
    np.testing.assert_array_equal(frame.pixels == white, (distance > 3.0) & (distance <= 5.0))


def test_markers_and_dots_are_clipped_and_skip_non_finite_points() -> None:
    bg = blank()
    frame = bg.frame()
    clip = raster.Clip(10, 10, 50, 30)
    raster.marker(frame, 9.0, 9.0, 4.0, bg.inks[0], clip=clip)  # mostly outside: only a corner shows
    raster.marker(frame, float("nan"), 20.0, 4.0, bg.inks[0], clip=clip)
    raster.dots(frame, np.array([30.0, np.inf, 200.0]), np.array([20.0, 5.0, 20.0]), 2.0, bg.inks[0], clip)
    drawn = np.argwhere(frame.pixels == bg.inks[0])
    assert drawn[:, 0].min() >= 10 and drawn[:, 1].min() >= 10 and drawn[:, 0].max() < 30 and drawn[:, 1].max() < 50
    assert (frame.pixels[10:13, 10:13] == bg.inks[0]).any()  # the corner of the clipped marker
    assert (frame.pixels[19:22, 29:32] == bg.inks[0]).all()  # the dot at (30, 20)


def test_many_dots_equal_one_by_one() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-5, 65, 300), rng.uniform(-5, 45, 300)
    bg = blank()
    many, single = bg.frame(), bg.frame()
    raster.dots(many, x, y, 1.6, bg.inks[0])
    for a, b in zip(x, y, strict=True):
        raster.marker(single, float(a), float(b), 1.6, bg.inks[0])
    np.testing.assert_array_equal(many.pixels, single.pixels)
