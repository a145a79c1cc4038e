"""The panel's pure plots: PNG bytes from arrays, scales and limits, and f on a grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from conftest import png_pixels

from jaxgrad_magic import plots


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a whole, decodable PNG."""
    height, width = png_pixels(data).shape[:2]
    return width, height


def pixels(data: bytes) -> np.ndarray:
    return png_pixels(data, "RGB").astype(np.int16)


def loss_curve_png(steps: Any, losses: Any, **options: Any) -> bytes:
    """One frame of a fresh :class:`plots.LossCurve`, as the panel's first picture is drawn."""
    return plots.LossCurve().render(steps, losses, **options)


def contour_png(zs: np.ndarray, path: np.ndarray, current: Sequence[float]) -> bytes:
    xs, ys, _ = _bowl()
    return plots.ContourPlot(xs, ys, zs).render(path, current)


# --------------------------------------------------------------------------- loss curve


def test_loss_curve_is_a_png_of_the_asked_size() -> None:
    steps = np.arange(200)
    data = loss_curve_png(steps, 10.0 * 0.95**steps)
    assert png_size(data) == (plots.WIDTH, plots.HEIGHT)
    assert png_size(plots.LossCurve(200, 150).render(steps, 0.9**steps)) == (200, 150)
    # Palette indices, deflated: a few kilobytes where an RGB picture is a quarter megabyte.
    assert png_pixels(data).ndim == 2 and len(data) < 12_000


def test_positive_losses_get_a_log_axis_in_whole_decades() -> None:
    curve = plots.LossCurve()
    steps = np.arange(101)
    curve.render(steps, 50.0 * 0.8**steps)  # 50 down to ~1e-8
    assert curve.yscale == "log"
    (x0, x1), (y0, y1) = curve.limits
    assert (x0, x1) == (0.0, 100.0)
    last = 50.0 * 0.8**100
    assert y0 <= last < y0 * 10 and y1 == 100.0


@pytest.mark.parametrize(
    ("losses", "scale"),
    [
        ([3.0, 1.0, 1e-3], "log"),
        ([3.0, 1.0, 0.0, 0.0], "log"),  # zeros sit on the bottom edge
        ([5.0, -1.0, -2.0, 0.5], "linear"),
        ([1e6, 10.0, -1.0, -2.0, 0.5], "symlog"),
        ([-1.0, -2.0, -3.0], "linear"),
        ([np.nan, np.inf], "linear"),
        ([np.inf, 2.0, 1.0, np.nan], "log"),
    ],
)
def test_loss_scale(losses: list[float], scale: str) -> None:
    assert plots.loss_scale(losses) == scale


@pytest.mark.parametrize(
    "losses",
    [
        [4.0, 2.0, np.nan, np.inf, -np.inf, 1.0],
        [np.nan, np.nan],
        [np.inf],
        [1.0],
        [],
        [0.0, 0.0],
        [-1e300, 1e300, 0.0],
        [1e-320, 1e308],
    ],
)
def test_loss_curve_draws_any_values(losses: list[float]) -> None:
    data = loss_curve_png(np.arange(len(losses)), losses)
    assert png_size(data) == (plots.WIDTH, plots.HEIGHT)


def test_loss_curve_marks_divergence() -> None:
    steps = np.arange(40)
    losses = np.where(steps < 30, 2.0**steps, np.inf)
    plain = pixels(loss_curve_png(steps, losses))
    marked = pixels(loss_curve_png(steps, losses, diverged_at=30))
    red = (marked[..., 0] > 180) & (marked[..., 1] < 90) & (marked[..., 2] < 90)
    red_before = (plain[..., 0] > 180) & (plain[..., 1] < 90) & (plain[..., 2] < 90)
    assert red.sum() > red_before.sum() + 50


def test_steps_and_losses_must_match() -> None:
    with pytest.raises(ValueError, match="one step per loss"):
        loss_curve_png([0, 1, 2], [1.0, 2.0])


def test_frames_with_the_same_limits_reuse_the_axes(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[object] = []  # layouts matplotlib had to render (the real renderer, counted)
    real = plots._loss_picture
    monkeypatch.setattr(plots, "_loss_picture", lambda layout, *a: rendered.append(layout) or real(layout, *a))
    curve = plots.LossCurve()
    steps = np.arange(1000)
    losses = 5.0 + np.sin(steps / 50.0)  # stays within one decade
    frames = [curve.render(steps[:k], losses[:k], xmax=1000) for k in (100, 400, 700, 1000)]
    assert len(rendered) == 1
    assert len({bytes(f) for f in frames}) == 4  # the line moved in every frame
    # A cheap frame equals the same frame drawn from scratch.
    assert np.array_equal(pixels(frames[-1]), pixels(loss_curve_png(steps, losses, xmax=1000)))


def test_step_axis_grows_in_nice_steps() -> None:
    curve = plots.LossCurve()
    for last, right in [(0, 1.0), (1, 1.0), (3, 5.0), (7, 10.0), (11, 20.0), (140, 200.0), (100_001, 200_000.0)]:
        curve.render(np.arange(last + 1), np.ones(last + 1))
        assert curve.limits[0] == (0.0, right)
    curve.render([0, 1], [1.0, 0.5], xmax=5000)
    assert curve.limits[0] == (0.0, 5000.0)


# --------------------------------------------------------------------------- contour and curve


def _bowl() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.linspace(-2, 2, 30)
    ys = np.linspace(-1, 3, 25)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, gx**2 + (gy - 1) ** 2


def test_contour_png() -> None:
    xs, ys, zs = _bowl()
    path = np.array([[1.5, 2.5], [0.7, 1.6], [0.1, 1.1]])
    data = plots.ContourPlot(xs, ys, zs, labels=("x", "y")).render(path, path[-1])
    assert png_size(data) == (plots.WIDTH, plots.HEIGHT)
    # Palette indices: a byte a pixel at most, a third of an RGB picture.
    assert png_pixels(data).ndim == 2 and len(data) < plots.WIDTH * plots.HEIGHT + 2_000


def test_contour_draws_the_path_and_its_ends_where_they_are() -> None:
    xs, ys, zs = _bowl()
    plot = plots.ContourPlot(xs, ys, zs)
    path = np.array([[-1.5, 2.5], [-1.5, 0.0], [1.0, 0.0]])  # down, then right
    picture = pixels(plot.render(path, path[-1]))
    where = plot.pixel_map
    red = np.abs(picture - rgb_of(plots.PATH_COLOR)).sum(axis=2) <= 40
    white = (picture >= 250).all(axis=2)

    def at(x: float, y: float) -> tuple[int, int]:
        return int(np.floor(where.y([y])[0])), int(np.floor(where.x([x])[0]))

    # The start is white ringed in red; the current point red ringed in white.
    r, c = at(-1.5, 2.5)
    assert white[r, c] and red[r - 4 : r + 5, c - 4 : c + 5].any()
    r, c = at(1.0, 0.0)
    assert red[r, c] and white[r - 5 : r + 6, c - 5 : c + 6].any()
    # The path: red along both legs, and nowhere far from them.
    for x, y in [(-1.5, 1.8), (-1.5, 0.7), (-0.8, 0.0), (0.3, 0.0)]:
        r, c = at(x, y)
        assert red[r - 1 : r + 2, c - 1 : c + 2].any(), (x, y)
    rows, cols = np.nonzero(red)
    top, left = at(-1.5, 2.5)
    bottom, right = at(1.0, 0.0)
    assert rows.min() >= top - 6 and rows.max() <= bottom + 6 and cols.min() >= left - 6 and cols.max() <= right + 6


def test_contour_draws_the_current_point_where_it_is() -> None:
    xs, ys, zs = _bowl()
    plot = plots.ContourPlot(xs, ys, zs)
    left = pixels(plot.render(np.array([[-1.5, 1.0]]), [-1.5, 1.0]))
    right = pixels(plot.render(np.array([[1.5, 1.0]]), [1.5, 1.0]))
    changed = np.abs(left - right).sum(axis=2) > 60
    cols = np.nonzero(changed.any(axis=0))[0]
    # The point moved from the left part of the picture to the right part, nothing else changed.
    assert cols.min() < plots.WIDTH * 0.4 and cols.max() > plots.WIDTH * 0.6
    assert changed.sum() < 0.05 * changed.size


@pytest.mark.parametrize(
    "path",
    [np.empty((0, 2)), np.array([[0.5, 0.5]]), np.array([[0.0, 0.0], [np.nan, np.inf], [1e30, -1e30]])],
)
def test_contour_handles_odd_paths(path: np.ndarray) -> None:
    _, _, zs = _bowl()
    assert png_size(contour_png(zs, path, [0.0, 0.0])) == (plots.WIDTH, plots.HEIGHT)


def test_a_diverging_path_stays_inside_the_plot_area() -> None:
    xs, ys, zs = _bowl()
    plot = plots.ContourPlot(xs, ys, zs)
    path = np.array([[0.0, 1.0], [0.5, 1.5], [-3e30, 1e30], [1e300, -1e300]])
    changed = (pixels(plot.render(path, path[1])) != pixels(plot.render(path[:1], path[0]))).any(axis=2)
    clip = plot.pixel_map.clip
    rows, cols = np.nonzero(changed)
    assert len(rows) and rows.min() >= clip.top and rows.max() < clip.bottom
    assert cols.min() >= clip.left and cols.max() < clip.right


def test_contour_handles_non_finite_and_flat_functions() -> None:
    xs, ys, zs = _bowl()
    holes = zs.copy()
    holes[:5, :] = np.nan
    holes[-3:, :] = np.inf
    for z in (holes, np.zeros_like(zs), np.full_like(zs, np.nan)):
        assert png_size(contour_png(z, np.zeros((1, 2)), [0.0, 0.0])) == (plots.WIDTH, plots.HEIGHT)
    with pytest.raises(ValueError, match="shape"):
        plots.ContourPlot(xs, ys, zs.T)


def test_curve_png() -> None:
    xs = np.linspace(-3, 3, 100)
    ys = xs**2
    data = plots.CurvePlot(xs, ys, label="w").render((1.0, 1.0), np.array([2.0, 1.5, 1.0]))
    assert png_size(data) == (plots.WIDTH, plots.HEIGHT)
    ys_holes = np.where(np.abs(xs) < 0.5, np.nan, np.where(xs > 2, np.inf, ys))
    assert png_size(plots.CurvePlot(xs, ys_holes).render((0.0, np.nan))) == (plots.WIDTH, plots.HEIGHT)
    with pytest.raises(ValueError, match="length"):
        plots.CurvePlot(xs, ys[:-1])


def test_curve_draws_the_visited_points_and_the_current_one_on_the_curve() -> None:
    xs = np.linspace(-3, 3, 100)
    plot = plots.CurvePlot(xs, xs**2)
    plain = pixels(plot.render((1.0, 1.0)))
    visited = pixels(plot.render((1.0, 1.0), np.array([-2.0, 2.5, 1.0])))
    where = plot.pixel_map
    for x in (-2.0, 2.5):
        r, c = int(where.y([x**2])[0]), int(where.x([x])[0])
        near = np.abs(visited[r - 2 : r + 3, c - 2 : c + 3] - rgb_of(plots.VISITED_COLOR)).sum(axis=2) <= 30
        assert near.any(), x
    r, c = int(where.y([1.0])[0]), int(where.x([1.0])[0])
    assert np.abs(plain[r, c] - rgb_of(plots.PATH_COLOR)).sum() <= 30
    # Nothing but the visited points changed.
    changed = (plain != visited).any(axis=2)
    assert 0 < changed.sum() < 100


# --------------------------------------------------------------------------- f on a grid


def test_boxes_hold_the_start_the_origin_and_the_path() -> None:
    first = plots.start_box(np.array([5.0, -0.2]))
    assert first.contains(np.array([[0.0, 0.0], [5.0, -0.2]]))
    path = np.array([[5.0, -0.2], [12.0, 3.0], [np.nan, 1.0]])
    assert not first.contains(path)
    grown = plots.box_around(first, path)
    assert grown.contains(path) and grown.contains(np.array([[0.0, 0.0]]))
    # A diverging path leaves the picture; the start and its surroundings stay in view.
    far = plots.box_around(first, np.array([[5.0, -0.2], [-3e30, 1e30]]))
    first_span = np.subtract(first.hi, first.lo)
    assert far.contains(np.array([first.lo, first.hi]))
    assert np.all(np.subtract(far.hi, far.lo) <= 21 * first_span * 1.4 + 1e-9)
    assert not far.contains(np.array([[-3e30, 1e30]]))


# --------------------------------------------------------------------------- pixels


def rgb_of(colour: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.round(np.array(to_rgb(colour)) * 255).astype(np.int16)


def ink_rows(picture: np.ndarray, colour: str, cols: slice, tolerance: int = 40) -> np.ndarray:
    """The rows (top down) where ``colour`` shows in the given columns."""
    close = (np.abs(picture[:, cols] - rgb_of(colour)).sum(axis=2) <= tolerance).any(axis=1)
    return np.flatnonzero(close)


def blue_rows(picture: np.ndarray, col: int) -> np.ndarray:
    """Rows where column ``col`` is clearly blue (the loss line, anti-aliased or not)."""
    r, b = picture[:, col, 0], picture[:, col, 2]
    return np.flatnonzero(b - r > 60)


def groups(rows: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive row numbers."""
    return np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if len(rows) else []


@pytest.mark.parametrize("scale", ["linear", "log", "symlog"])
def test_pixel_map_is_matplotlibs_transform(scale: str) -> None:
    _, canvas, ax = plots.figure(plots.WIDTH, plots.HEIGHT)
    if scale == "symlog":
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(-1e3, 1e4)
    else:
        ax.set_yscale(scale)
        ax.set_ylim(1e-3, 1e2)
    ax.set_xlim(-5.0, 120.0)
    canvas.draw()
    pixels = plots.PixelMap.from_axes(ax, plots.HEIGHT)
    x = np.linspace(-5.0, 120.0, 7)
    y = np.array([-500.0, -0.005, 0.0, 0.003, 2.0, 40.0, 9e3]) if scale == "symlog" else np.geomspace(1e-3, 1e2, 7)
    display = ax.transData.transform(np.column_stack([x, y]))
    np.testing.assert_allclose(pixels.x(x), display[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(pixels.y(y), plots.HEIGHT - display[:, 1], rtol=0, atol=1e-9)
    # Known before drawing: the plot area sits at fixed fractions of the figure.
    x_scale, x_offset, clip = plots.PixelMap.x_geometry((-5.0, 120.0), plots.WIDTH, plots.HEIGHT)
    assert (x_scale, x_offset) == pytest.approx((pixels.x_scale, pixels.x_offset)) and clip == pixels.clip


def test_the_loss_line_lies_where_matplotlib_draws_it() -> None:
    steps = np.arange(5001)  # the step axis ends at 5000: the line spans the plot
    losses = 40.0 * np.exp(-steps / 600.0) + 0.5 + 0.3 * np.sin(steps / 150.0)
    curve = plots.LossCurve()
    ours = pixels(curve.render(steps, losses))
    _, canvas, ax = plots.figure(plots.WIDTH, plots.HEIGHT)
    (xlim, ylim) = curve.limits
    ax.set_yscale(curve.yscale)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.plot(steps, losses, color=plots.LOSS_COLOR, lw=1.44)  # 2 px at 100 dpi
    canvas.draw()
    theirs = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.int16)
    clip = curve.pixel_map.clip
    offsets = []
    for col in range(clip.left + 4, clip.right - 8):
        a, b = blue_rows(ours, col), blue_rows(theirs, col)
        if len(a) and len(b):
            offsets.append(abs(a.mean() - b.mean()))
            # An even brush cannot centre on a pixel: where the line is steep a column may take
            # one row more from its neighbour than matplotlib's anti-aliased line shows.
            assert offsets[-1] <= 1.5, f"column {col}: rows {a} here, {b} in matplotlib"
    assert len(offsets) > 0.9 * (clip.right - clip.left - 12)
    assert np.mean(np.array(offsets) <= 1.0) >= 0.97 and np.median(offsets) <= 0.5


def test_one_decade_gets_labels_at_2x_and_5x() -> None:
    curve = plots.LossCurve()
    near = pixels(curve.render(np.arange(50), 30.0 + np.linspace(0, 8, 50)))  # 10 to 100
    assert curve.limits[1] == (10.0, 100.0)
    clip, where = curve.pixel_map.clip, curve.pixel_map
    labels = groups(ink_rows(near, plots.INK, slice(0, clip.left - 5), tolerance=150))
    centres = [float(g.mean()) for g in labels]
    for value in (10, 20, 50, 100):
        assert any(abs(c - float(where.y([value])[0])) <= 3 for c in centres), f"no label at {value}: {centres}"
    wide = plots.LossCurve()
    far = pixels(wide.render(np.arange(50), np.geomspace(1e4, 1e-4, 50)))
    wide_labels = groups(ink_rows(far, plots.INK, slice(0, wide.pixel_map.clip.left - 5), tolerance=150))
    decades = np.log10(wide.limits[1][1] / wide.limits[1][0])
    assert len(wide_labels) <= decades + 1  # many decades: decades only


def test_tick_labels_are_short() -> None:
    assert [plots.tick_label(v) for v in (10.0, 20.0, 0.005, 1e-6, 3e8, 1.0, 0.1)] == [
        "10",
        "20",
        "0.005",
        "1e-6",
        "3e8",
        "1",
        "0.1",
    ]


def test_the_first_picture_says_what_to_do() -> None:
    plain = pixels(loss_curve_png([0], [26.0]))
    noted = pixels(loss_curve_png([0], [26.0], note="press Step or Run N"))
    middle = slice(plots.WIDTH // 3, 2 * plots.WIDTH // 3)
    inside = slice(plots.HEIGHT // 4, 3 * plots.HEIGHT // 4)  # the middle of the plot area, no axis labels
    assert len(ink_rows(noted[inside], plots.MUTED, middle, tolerance=30)) >= 5
    assert not len(ink_rows(plain[inside], plots.MUTED, middle, tolerance=30))


def test_pictures_sit_on_a_soft_card() -> None:
    curve = plots.LossCurve()
    picture = pixels(curve.render(np.arange(10), np.linspace(5.0, 1.0, 10)))
    clip = curve.pixel_map.clip
    np.testing.assert_array_equal(picture[2, 2], rgb_of(plots.FACE))
    np.testing.assert_array_equal(picture[clip.top + 3, (clip.left + clip.right) // 2 + 7], rgb_of(plots.AXES_FACE))
    assert picture[2, 2].sum() < 3 * 240  # not paper white


def test_zeros_on_a_log_axis_lie_on_its_bottom_edge() -> None:
    curve = plots.LossCurve()
    picture = pixels(curve.render(np.arange(40), np.where(np.arange(40) < 20, np.geomspace(10, 0.01, 40), 0.0)))
    assert curve.yscale == "log"
    clip, where = curve.pixel_map.clip, curve.pixel_map
    cols = slice(int(where.x([28])[0]), int(where.x([36])[0]))  # steps of loss 0
    rows = ink_rows(picture, plots.LOSS_COLOR, cols)
    assert len(rows) and rows.min() >= clip.bottom - 3


def test_a_range_of_steps_draws_like_the_array() -> None:
    losses = np.geomspace(100.0, 0.1, 5000)
    assert loss_curve_png(range(5000), losses) == loss_curve_png(np.arange(5000), losses)
    assert loss_curve_png(range(5000), losses) == loss_curve_png(np.arange(5000.0), losses)
    x_scale, x_offset, clip = plots.PixelMap.x_geometry((0.0, 5000.0), plots.WIDTH, plots.HEIGHT)
    ys = np.random.default_rng(3).normal(size=5000)
    from_range = plots.line_vertices(range(5000), ys, x_scale, x_offset, clip)
    for steps in (np.arange(5000), np.arange(5000.0)):
        for a, b in zip(from_range, plots.line_vertices(steps, ys, x_scale, x_offset, clip), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_long_series_keeps_every_columns_extremes() -> None:
    x_scale, x_offset, clip = plots.PixelMap.x_geometry((0.0, 100_000.0), plots.WIDTH, plots.HEIGHT)
    ys = np.random.default_rng(5).normal(size=100_001)
    ys[77_777] = 9.0  # one spike inside a column
    vx, vy = plots.line_vertices(range(100_001), ys, x_scale, x_offset, clip)
    assert len(vx) <= 4 * (clip.right - clip.left)  # bounded by the picture, not the series
    assert vy.max() == 9.0 and vy.min() == ys.min()
    assert abs(vx[np.argmax(vy)] - (x_scale * 77_777 + x_offset)) <= 1.0  # in its own column
    assert np.all(np.diff(vx[1::4]) > 0)  # columns left to right
    # A short series is drawn point by point.
    np.testing.assert_array_equal(plots.line_vertices(range(10), ys[:10], x_scale, x_offset, clip)[1], ys[:10])


def test_the_loss_line_breaks_where_losses_are_not_finite() -> None:
    curve = plots.LossCurve()
    losses = np.concatenate([np.linspace(10.0, 5.0, 30), np.full(30, np.nan), np.linspace(4.0, 2.0, 40)])
    picture = pixels(curve.render(np.arange(100), losses))
    where = curve.pixel_map
    gap = slice(int(where.x([33])[0]), int(where.x([57])[0]))
    inside = slice(where.clip.top + 2, where.clip.bottom - 2)
    assert not len(ink_rows(picture[inside], plots.LOSS_COLOR, gap))
    for step in (10, 80):
        col = int(where.x([step])[0])
        assert len(ink_rows(picture, plots.LOSS_COLOR, slice(col, col + 1)))


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Each point's distance to the polyline through ``line``'s rows."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("pkd,kd->pk", points[:, None, :] - a[None], ab) / np.maximum((ab**2).sum(1), 1e-300), 0, 1)
    nearest = a[None] + t[..., None] * ab[None]
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1)


def test_a_thinned_path_keeps_the_early_moves_of_a_long_descent() -> None:
    # A spiral in the first 50 steps, then 10^5 steps that crawl along x: thinned for the panel.
    t = np.arange(50)
    early = np.stack([np.cos(t / 4) * (1 - t / 50), np.sin(t / 4) * (1 - t / 50)], axis=1)
    late = early[-1] + np.outer(np.arange(1, 100_001), [1e-5, 0.0])
    path = np.concatenate([early, late])
    most = plots.MAX_PATH_POINTS
    thinned = plots.thin(path)
    assert len(thinned) <= most
    np.testing.assert_array_equal(thinned[0], path[0])
    np.testing.assert_array_equal(thinned[-1], path[-1])
    rows = [int(np.flatnonzero((path == row).all(axis=1))[0]) for row in thinned]
    assert rows == sorted(rows)  # in order
    # Every point of the path lies near the drawn polyline: the spiral is not cut short.
    span = np.ptp(path, axis=0).max()
    sample = path[np.r_[0:50, 50:100_050:997]]
    assert _distance_to_polyline(sample, thinned).max() < 0.02 * span
    # Evenly spaced by step alone, the spiral would collapse to a segment or two.
    by_step = path[np.arange(most) * (len(path) - 1) // (most - 1)]
    assert _distance_to_polyline(sample, by_step).max() > 0.2 * span


def test_a_short_path_is_drawn_whole() -> None:
    path = np.random.default_rng(0).normal(size=(100, 2))
    assert plots.thin(path, max_points=200) is path
