"""The Hessian's spectral density as a small PNG, drawn like the panel's plots.

Matplotlib's object API on the Agg canvas renders the picture once (no pyplot state, so any
thread can draw), in the panel's colours (:mod:`jaxgrad_magic.plots`), and Pillow stores it as
an indexed-colour PNG through :mod:`jaxgrad_magic.canvas`. The density is drawn on a log axis,
where the few large eigenvalues of a typical loss stay visible beside the bulk near zero; the
``k`` largest and smallest eigenvalues are ticks along the bottom, negative ones in red.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import ticker

from . import canvas, plots

WIDTH, HEIGHT = 360, 190  # pixels
BOX = (0.15, 0.2, 0.96, 0.86)  # the plot area: left, bottom, right, top
_FLOOR = 1e-6  # the lowest density drawn, relative to the highest: the log axis starts there
NEGATIVE_COLOR = plots.PATH_COLOR


def density_png(
    grid: np.ndarray,
    values: np.ndarray,
    top: Sequence[float] = (),
    bottom: Sequence[float] = (),
    *,
    title: str = "spectral density",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """The density on its grid, with the extreme eigenvalues marked, as PNG bytes.

    Args:
      grid: eigenvalue positions, increasing.
      values: the density at each.
      top: the largest eigenvalues, marked along the bottom edge.
      bottom: the smallest eigenvalues, marked likewise (negative ones in red: saddle directions).
      title: the line above the plot.
      width: picture width in pixels.
      height: picture height in pixels.

    Returns:
      An indexed-colour PNG.
    """
    x = np.asarray(grid, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], np.maximum(y[finite], 0.0)
    _, agg, ax = plots.figure(width, height, BOX)
    ax.set_title(title, loc="left", fontsize=8.5, color=plots.INK, pad=4)
    ax.set_xlabel("eigenvalue", fontsize=8, color=plots.INK)
    peak = float(y.max()) if y.size and y.max() > 0 else 1.0
    floor = peak * _FLOOR
    ax.set_yscale("log")
    ax.set_ylim(floor, peak * 3)
    ax.yaxis.set_major_locator(ticker.LogLocator(numticks=4))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plots.tick_label))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plots.tick_label))
    ax.grid(True, color=plots.GRID, lw=0.6)
    ax.set_axisbelow(True)
    if x.size:
        ax.set_xlim(float(x[0]), float(x[-1]))
        shown = np.maximum(y, floor)
        ax.fill_between(x, floor, shown, color=plots.LOSS_COLOR, alpha=0.25, lw=0)
        ax.plot(x, shown, color=plots.LOSS_COLOR, lw=1.4)
        if x[0] < 0 < x[-1]:
            ax.axvline(0.0, color=plots.MUTED, lw=0.8, ls=":")
    marks = [float(v) for v in (*top, *bottom) if math.isfinite(v)]
    if marks:
        colours = [NEGATIVE_COLOR if v < 0 else plots.INK for v in marks]
        # Ticks standing on the bottom edge, in axes coordinates upwards: a rug of the extremes.
        ax.vlines(marks, 0.0, 0.09, transform=ax.get_xaxis_transform(), colors=colours, lw=1.3)
    agg.draw()
    return canvas.Background(np.asarray(agg.buffer_rgba()), []).frame().png()
