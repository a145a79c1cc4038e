"""The optimizer race as one still picture: the best paths on a contour of ``f``, the loss curves overlaid.

For two parameters, each optimizer's best run is a coloured path on the contour plot the panel
draws (:class:`~jaxgrad_magic.plots.ContourPlot`, ``f`` on a grid from
:class:`~jaxgrad_magic.landscape.Landscape`); for one, or more than two, the picture is the loss
curves alone. The loss plot overlays every run of every optimizer on one log axis: the best
rate of each bold and named in the legend, the other rates faint in the same colour. A run that
diverged is drawn to its last finite point and marked with a cross there (at the top edge when
that point is above the plot). A heading and one line per optimizer sit above the plots
(:func:`jaxgrad_magic.snapshot.compose`), so the PNG says everything on its own, in a saved
notebook, on GitHub or nbviewer.

Colours: the Okabe–Ito palette, which colour-blind readers can tell apart, without its yellow
(too faint on the light plot area); on the contour every path has a white casing, so it reads
over the dark and the light ends of the colour map alike. Pure: matplotlib, Pillow and JAX (for
``f`` on the grid); no IPython.
"""

from __future__ import annotations

import base64
import html as html_text
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from PIL import Image

from . import canvas, plots, snapshot
from .formatting import number
from .landscape import Landscape

if TYPE_CHECKING:
    from .racing import RaceBest, RaceResult, RaceRun

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe–Ito without yellow: blue, vermillion, bluish green, reddish purple, orange, sky blue, black.
On the plot area the first three stand at 4.5, 3.4 and 3.0 to 1 (the default race's optimizers);
an eighth optimizer takes the first colour again."""

CASING = "white"  # under every path on the contour
BEST_WIDTH, OTHER_WIDTH = 1.8, 0.7  # points: the best rate's loss line, and the other rates'
OTHER_ALPHA = 0.35


def colours(count: int) -> list[str]:
    """The colour of each of ``count`` optimizers, in order."""
    return [PALETTE[i % len(PALETTE)] for i in range(count)]


def draw(result: RaceResult) -> bytes:
    """The race as one PNG: heading and one line per optimizer, above the contour (two parameters) and the losses.

    Args:
      result: the race to draw.

    Returns:
      The PNG's bytes.
    """
    inks = colours(len(result.optimizers))
    pictures = [_contour(result, inks), _losses(result, inks)]
    composed = Image.open(io.BytesIO(snapshot.compose(_heading(result), _lines(result), [p for p in pictures if p])))
    # A palette of 255 colours keeps the text, the flat areas and the lines exactly, and is a third
    # of the RGB PNG's bytes: it travels twice in a notebook (as image/png and inside the HTML).
    return canvas.png(composed.convert("RGB").quantize(255, method=Image.Quantize.MEDIANCUT), level=6)


def html(result: RaceResult) -> str:
    """The race's picture as an HTML ``<img>``, its one-line summary as the alternative text."""
    src = "data:image/png;base64," + base64.b64encode(result.png).decode("ascii")
    alt = html_text.escape(result.summary, quote=True)
    return f'<img class="jgm-race" src="{src}" alt="{alt}" title="{alt}" style="max-width:100%">'


# --------------------------------------------------------------------------- text


def _heading(result: RaceResult) -> str:
    w = result.winner
    if w is None:
        return f"Optimizer race on {result.fn_name}: every run diverged"
    return f"Optimizer race on {result.fn_name}: {w.optimizer} wins at lr {w.lr:.3g}"


def _lines(result: RaceResult) -> list[str]:
    lines = []
    for label in result.optimizers:
        best, grid = result.best[label], result.lrs[label]
        gone = sum(result.runs[label, lr].diverged for lr in grid)
        span = f"of {len(grid)} from {min(grid):.3g} to {max(grid):.3g}" if len(grid) > 1 else "(the only one)"
        if best.diverged_at is not None:
            what = f"every rate {span} diverged; lowest loss {number(best.loss, 4)} at lr {best.lr:.3g}"
        else:
            what = f"best lr {best.lr:.3g} {span}: loss {number(best.loss, 4)}, settled by step {best.settled_at}"
            what += f"; {gone} diverged" if gone else ""
        lines.append(f"{label}: {what}")
    where = "paths on f" if _drawable(result) else f"loss curves only ({result.size} parameters)"
    lines.append(f"{result.steps} steps from one start; {where}; faint: the other rates, ×: diverged")
    return lines


# --------------------------------------------------------------------------- the contour


def _drawable(result: RaceResult) -> bool:
    return result.size == 2


def _ranked(result: RaceResult) -> list[tuple[int, RaceBest]]:
    """The optimizers' bests with their colour index, worst first: the winner is drawn last, on top."""
    bests = [(i, result.best[label]) for i, label in enumerate(result.optimizers)]
    return sorted(bests, key=lambda ib: (ib[1].diverged_at is None, -ib[1].loss))


def _contour(result: RaceResult, inks: Sequence[str]) -> bytes | None:
    """The best paths on a contour of ``f``; None for other than two parameters, or an ``f`` the grid cannot take."""
    if not _drawable(result):
        return None
    ranked = _ranked(result)
    paths = [np.asarray(best.run.path, dtype=np.float64) for _, best in ranked]
    try:
        landscape = Landscape(result.fn, result.point, result.argnums, has_aux=result.has_aux)
        # The box the panel would grow to around every best path; one that diverged leaves it.
        box = plots.box_around(plots.start_box(paths[0][0]), np.concatenate(paths))
        xs, ys, zs = landscape.grid(box)
    except Exception:  # f cannot be evaluated on a grid (e.g. not vmappable): the loss curves alone
        return None
    contour = plots.ContourPlot(xs, ys, zs, labels=(landscape.labels[0], landscape.labels[1]), inks=[*inks, plots.INK])
    frame, (_, white, *mine) = contour.frame()
    *path_inks, ink = mine
    pixels = contour.pixel_map
    drawn = [(pixels.x(p[:, 0]), pixels.y(p[:, 1])) for p in (plots.thin(p) for p in paths)]
    for px, py in drawn:  # every casing first, so no casing covers another path
        frame.polyline(px, py, plots.LINE_WIDTH + 2, white)
    for (i, _), (px, py) in zip(ranked, drawn, strict=True):
        frame.polyline(px, py, plots.LINE_WIDTH, path_inks[i])
    # The common start: a white dot ringed in ink.
    frame.marker(float(drawn[0][0][0]), float(drawn[0][1][0]), 2.8, white, ring=(4.2, ink))
    for (i, best), (px, py) in zip(ranked, drawn, strict=True):
        x, y = float(px[-1]), float(py[-1])
        if best.diverged_at is not None:
            _cross(frame, x, y, path_inks[i], white)
        else:
            frame.marker(x, y, 3.2, path_inks[i], ring=(4.6, white))
    return frame.png()


def _cross(frame: canvas.Frame, x: float, y: float, ink: int, casing: int) -> None:
    """A cross centred on ``(x, y)`` in ``ink`` over a ``casing``: where a path diverged."""
    arm = 4.0
    for width, colour in ((plots.LINE_WIDTH + 2, casing), (plots.LINE_WIDTH, ink)):
        frame.polyline(np.array([x - arm, x + arm]), np.array([y - arm, y + arm]), width, colour)
        frame.polyline(np.array([x - arm, x + arm]), np.array([y + arm, y - arm]), width, colour)


# --------------------------------------------------------------------------- the losses


def _series(run: RaceRun, floor: float | None, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's losses as ``(steps, losses)`` that draw like the whole history at ``columns`` pixels wide."""
    y = np.asarray(run.losses, dtype=np.float64)
    if floor is not None:
        y = np.where(y <= 0, floor, y)  # zeros on a log axis sit on its bottom edge, as in the panel
    n = len(y)
    x_scale = columns / max(n, 1)
    px, ys = plots.line_vertices(range(n), y, x_scale, 0.0, canvas.Clip(0, 0, columns, 1))
    return px / x_scale, ys


def _losses(result: RaceResult, inks: Sequence[str], width: int = plots.WIDTH, height: int = plots.HEIGHT) -> bytes:
    """Every run's loss curve on one axis (log where the losses allow), the best rates bold and in the legend."""
    _, agg, ax = plots.figure(width, height)
    left, _, right, _ = plots.AXES_BOX
    ax.set_title("loss", loc="left", fontsize=8.5, color=plots.INK, pad=4)
    ax.set_xlabel("step", fontsize=8, color=plots.INK)

    runs = list(result.runs.values())
    everything = np.concatenate([np.asarray(r.losses, dtype=np.float64) for r in runs])
    scale = plots.loss_scale(everything)
    # The axis holds the best runs and every start; a diverged run climbs off the top, marked there.
    shown = np.concatenate([np.asarray(b.run.losses, dtype=np.float64) for b in result.best.values()])
    shown = np.concatenate([shown, [float(r.losses[0]) for r in runs]])
    floor = None
    if scale == "log":
        positive = shown[shown > 0]
        lo = 10.0 ** math.floor(math.log10(positive.min())) if positive.size else 1e-3
        if (everything[np.isfinite(everything)] <= 0).any():
            lo /= 10.0  # a decade below the smallest loss stands for zero
            floor = lo
        hi = 10.0 ** math.ceil(math.log10(max(shown.max(), lo * 10)))
        ax.set_yscale("log")
        ax.set_ylim(max(lo, 1e-300), min(hi, 1e300))
        ax.yaxis.set_major_locator(ticker.LogLocator(numticks=6))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plots.tick_label))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    elif scale == "symlog":
        mags = np.abs(everything[np.isfinite(everything) & (everything != 0)])
        ax.set_yscale("symlog", linthresh=max(float(np.median(mags)) / 10, 1e-300))
    ax.set_xlim(0, max(result.steps, 1))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=True))
    ax.grid(True, color=plots.GRID, lw=0.6)
    ax.set_axisbelow(True)

    columns = max(1, round((right - left) * width))
    ymax = ax.get_ylim()[1] if scale == "log" else math.inf
    handles = []
    for i, label in enumerate(result.optimizers):  # the other rates first: the bests go over them
        for lr in result.lrs[label]:
            run = result.runs[label, lr]
            if lr != result.best[label].lr:
                x, y = _series(run, floor, columns)
                ax.plot(x, y, color=inks[i], lw=OTHER_WIDTH, alpha=OTHER_ALPHA, solid_capstyle="butt")
                if run.diverged:
                    _mark(ax, run, inks[i], ymax, alpha=0.7)
    for i, best in _ranked(result):
        x, y = _series(best.run, floor, columns)
        ax.plot(x, y, color=inks[i], lw=BEST_WIDTH, solid_capstyle="butt")
        if best.run.diverged:
            _mark(ax, best.run, inks[i], ymax)
    for i, label in enumerate(result.optimizers):
        best = result.best[label]
        handles.append(Line2D([], [], color=inks[i], lw=BEST_WIDTH, label=f"{label}  lr {best.lr:.3g}"))
    if any(r.diverged for r in runs):
        handles.append(Line2D([], [], color=plots.INK, marker="x", ls="none", ms=5, label="diverged"))
    legend = ax.legend(
        handles=handles, loc="best", fontsize=7, frameon=True, framealpha=0.9, borderpad=0.4, handlelength=1.6
    )
    legend.get_frame().set_facecolor(plots.AXES_FACE)
    legend.get_frame().set_edgecolor(plots.GRID)
    for text in legend.get_texts():
        text.set_color(plots.INK)
    with np.errstate(over="ignore"):  # the log locator probes decades past 1e308 on extreme ranges
        agg.draw()
    # Stored, not compressed: compose reads it straight back.
    return canvas.png(Image.fromarray(np.asarray(agg.buffer_rgba())[..., :3]), level=0)


def _mark(ax: Axes, run: RaceRun, ink: str, ymax: float, alpha: float = 1.0) -> None:
    """A cross at a diverged run's last finite point (on the top edge when that point is above the axis)."""
    y = min(float(run.losses[-1]), ymax)
    ax.plot([len(run.losses) - 1], [y], marker="x", ms=5, mew=1.4, color=ink, alpha=alpha, clip_on=False)
