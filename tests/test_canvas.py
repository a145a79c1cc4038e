"""Palette pictures drawn with Pillow: PNGs decoded by conftest.png_pixels, lines checked against a dense reference.

The references here are deliberately naive: a polyline sampled every 1/50 of a pixel, a disc
tested pixel by pixel. They share no code with the drawing.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import png_pixels

from jaxgrad_magic import canvas

INK = (220, 30, 30)


def blank(height: int = 40, width: int = 60, inks: int = 1, area: canvas.Clip | None = None) -> canvas.Background:
    rgb = np.full((height, width, 3), 245, dtype=np.uint8)
    return canvas.Background(rgb, [INK] * inks, area=area)


def drawn(frame: canvas.Frame, ink: int) -> np.ndarray:
    """Where the frame's PNG holds ``ink``."""
    return png_pixels(frame.png()) == ink


def reference_line(x: np.ndarray, y: np.ndarray, width: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is within half the width of a point of the polyline on both axes."""
    mask = np.zeros(shape, dtype=bool)
    half = width / 2
    rows = np.arange(shape[0]) + 0.5
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:], strict=True):
        if not np.isfinite([x0, y0, x1, y1]).all():
            continue
        t = np.linspace(0.0, 1.0, int(50 * max(abs(x1 - x0), abs(y1 - y0), 1)) + 1)
        sx, sy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        for c in range(shape[1]):
            near = np.abs(c + 0.5 - sx) <= half
            if near.any():
                mask[:, c] |= (np.abs(rows[:, None] - sy[near]) <= half).any(axis=1)
    return mask


def assert_a_line(got: np.ndarray, x: np.ndarray, y: np.ndarray, width: int) -> None:
    """No hole along the line, and nothing beyond the brush around it (half a pixel of rounding allowed)."""
    centre = reference_line(x, y, 0.99, got.shape)  # the pixels the line itself crosses (not just touches)
    hull = reference_line(x, y, width + 1.0, got.shape)
    assert got[centre].all(), f"{(~got & centre).sum()} pixels on the line were left out"
    assert not (got & ~hull).any(), f"{(got & ~hull).sum()} pixels drawn beyond the brush"
    assert got.sum() <= 1.6 * reference_line(x, y, width, got.shape).sum()  # about as thick as asked


# --------------------------------------------------------------------------- palette and PNG


def test_background_keeps_few_colours_exactly() -> None:
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    rgb = colours[rng.integers(0, 7, (30, 50))]
    bg = canvas.Background(rgb, [INK, (0, 0, 255)])
    assert np.array_equal(bg.rgb(), rgb)
    assert tuple(bg.palette[bg.inks[0]]) == INK and tuple(bg.palette[bg.inks[1]]) == (0, 0, 255)
    png = bg.frame().png()
    assert np.array_equal(png_pixels(png), bg.pixels)  # nothing drawn: the background itself
    assert np.array_equal(png_pixels(png, "RGB"), rgb)


def test_background_of_many_colours_stays_close() -> None:
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)  # thousands of colours
    bg = canvas.Background(rgb, [INK])
    assert len(np.unique(bg.pixels)) > 200
    assert np.abs(bg.rgb().astype(int) - rgb).mean() < 4


def test_too_many_inks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at most 254"):
        canvas.Background(np.zeros((2, 2, 3), np.uint8), [INK] * 255)


def test_a_palette_png_is_a_byte_a_pixel_at_most() -> None:
    rng = np.random.default_rng(1)
    rgb = (rng.integers(0, 4, (70, 45, 1)) * 60).repeat(3, axis=2).astype(np.uint8)
    for busy in (False, True):
        png = canvas.Background(rgb, [INK], busy=busy).frame().png()
        assert len(png) < 70 * 45 + 3 * 256 + 200  # a third of RGB, whatever the compression
    flat = canvas.Background(np.full((260, 360, 3), 200, np.uint8), [INK]).frame().png()
    assert len(flat) < 2_000  # flat pictures are deflated


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
def test_polyline_sets_the_pixels_under_its_brush(x: list[float], y: list[float]) -> None:
    bg = blank()
    frame = bg.frame()
    frame.polyline(np.array(x), np.array(y), 2, bg.inks[0])
    assert_a_line(drawn(frame, bg.inks[0]), np.array(x), np.array(y), 2)


def test_nan_leaves_a_gap() -> None:
    bg = blank()
    frame = bg.frame()
    frame.polyline(np.array([5.0, 15.0, np.nan, 40.0, 55.0]), np.array([20.0, 20.0, 20.0, 20.0, 20.0]), 2, bg.inks[0])
    got = drawn(frame, bg.inks[0])
    assert got[:, 6:15].any() and got[:, 41:55].any()
    assert not got[:, 18:38].any()  # nothing across the gap


def test_polyline_stays_in_its_area_and_survives_huge_coordinates() -> None:
    bg = blank(area=canvas.Clip(10, 5, 50, 30))
    frame = bg.frame()
    frame.polyline(np.array([-1e30, 25.0, 1e300]), np.array([1e30, 15.0, -1e300]), 2, bg.inks[0])
    frame.polyline(np.array([-1.7e308, 1.7e308]), np.array([1.7e308, -1.7e308]), 2, bg.inks[0])
    points = np.argwhere(drawn(frame, bg.inks[0]))
    assert len(points)
    assert points[:, 0].min() >= 5 and points[:, 0].max() < 30 and points[:, 1].min() >= 10 and points[:, 1].max() < 50


def test_a_long_path_of_tiny_steps_draws_like_its_pixels() -> None:
    t = np.linspace(0, 2 * np.pi, 20_000)
    x, y = 30 + 20 * np.cos(t), 20 + 15 * np.sin(t)
    bg = blank()
    frame = bg.frame()
    frame.polyline(x, y, 2, bg.inks[0])
    assert_a_line(drawn(frame, bg.inks[0]), x[::25], y[::25], 2)


def test_marker_is_a_disc_with_a_ring() -> None:
    bg = canvas.Background(np.full((40, 60, 3), 245, np.uint8), [INK, (255, 255, 255)])
    frame = bg.frame()
    red, white = bg.inks
    frame.marker(30.5, 20.5, 3.0, red, ring=(5.0, white))
    got = png_pixels(frame.png())
    rows, cols = np.mgrid[0:40, 0:60]
    distance = np.hypot(rows - 20, cols - 30)  # from the centre of the pixel holding the point
    # A disc as Pillow rasterises it: every pixel well inside, none well outside.
    assert (got[distance <= 2.4] == red).all() and not (got[distance > 3.6] == red).any()
    assert (got[(distance > 3.6) & (distance <= 4.4)] == white).all() and not (got[distance > 5.6] == white).any()


def test_markers_and_dots_are_clipped_and_skip_non_finite_points() -> None:
    bg = blank(area=canvas.Clip(10, 10, 50, 30))
    frame = bg.frame()
    frame.marker(9.0, 9.0, 4.0, bg.inks[0])  # mostly outside: only a corner shows
    frame.marker(float("nan"), 20.0, 4.0, bg.inks[0])
    frame.dots(np.array([30.0, np.inf, 200.0, np.nan]), np.array([20.0, 5.0, 20.0, 1.0]), 2.0, bg.inks[0])
    got = drawn(frame, bg.inks[0])
    points = np.argwhere(got)
    assert points[:, 0].min() >= 10 and points[:, 1].min() >= 10 and points[:, 0].max() < 30 and points[:, 1].max() < 50
    assert got[10:13, 10:13].any()  # the corner of the clipped marker
    assert got[19:22, 29:32].all()  # the dot at (30, 20)


def test_an_unclipped_marker_shows_over_the_clipped_lines() -> None:
    bg = blank(inks=2, area=canvas.Clip(10, 10, 50, 30))
    frame = bg.frame()
    frame.polyline(np.array([10.0, 50.0]), np.array([29.0, 29.0]), 2, bg.inks[0])
    frame.marker(30.5, 29.5, 3.0, bg.inks[1], clip=False)  # on the bottom edge: shown whole
    got = png_pixels(frame.png())
    assert (got == bg.inks[1])[31:33, 29:32].any()  # below the area
    assert (got == bg.inks[0])[28:30, 12:20].all()  # the line is kept


def test_many_dots_equal_one_by_one() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-5, 65, 300), rng.uniform(-5, 45, 300)
    bg = blank()
    many, single = bg.frame(), bg.frame()
    many.dots(x, y, 1.6, bg.inks[0])
    for a, b in zip(x, y, strict=True):
        single.dots(np.array([a]), np.array([b]), 1.6, bg.inks[0])
    np.testing.assert_array_equal(png_pixels(many.png()), png_pixels(single.png()))
    assert (png_pixels(many.png()) == bg.inks[0]).sum() > 300
