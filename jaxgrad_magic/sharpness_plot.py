"""λmax over a descent against the curvature its optimizer stays stable below, as a small PNG.

The picture of the "edge of stability" (Cohen et al. 2021): plain gradient descent at rate
``lr`` is stable only while λmax stays below ``2/lr``, and full-batch training often drives λmax
up to that line and holds it there. λmax is the line with a dot per measurement, the limit a
dashed line (it steps where the learning rate changed), and the band above it, where the
optimizer overshoots, is tinted. Drawn like :mod:`jaxgrad_magic.spectrum_plot`: matplotlib's
object API on the Agg canvas (any thread), stored as an indexed-colour PNG by
:mod:`jaxgrad_magic.canvas`.
"""

from __future__ import annotations

import numpy as np
from matplotlib import ticker

from . import canvas, plots

WIDTH, HEIGHT = 360, 190  # pixels
BOX = (0.15, 0.2, 0.96, 0.86)  # the plot area: left, bottom, right, top
LIMIT_COLOR = plots.INK
UNSTABLE_COLOR = plots.PATH_COLOR
_FORMULAS = {"momentum": "(2+2β)/lr", "nesterov": "(2+2β)/((1+2β)lr)"}


def limit_label(optimizer: str, exact: bool) -> str:
    """How the limit line is named: ``2/lr``, or the momentum methods' own; a guide when not ``exact``."""
    formula = _FORMULAS.get(optimizer, "2/lr")
    return formula if exact else f"{formula} (a guide for {optimizer or 'this optimizer'})"


def sharpness_png(
    steps: np.ndarray,
    values: np.ndarray,
    limits: np.ndarray,
    *,
    optimizer: str = "",
    exact: bool = True,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """λmax at ``steps`` against ``limits``, as PNG bytes.

    Args:
      steps: the steps of the measurements, increasing.
      values: λmax at each.
      limits: the λmax the optimizer was stable below at each (``2/lr`` for sgd).
      optimizer: the optimizer's label, to name the limit.
      exact: False when the limit is only a guide (adaptive methods).
      width: picture width in pixels.
      height: picture height in pixels.

    Returns:
      An indexed-colour PNG.
    """
    x = np.asarray(steps, dtype=np.float64)
    lam = np.asarray(values, dtype=np.float64)
    lim = np.asarray(limits, dtype=np.float64)
    _, agg, ax = plots.figure(width, height, BOX)
    ax.set_title(f"λmax (line) against {limit_label(optimizer, exact)} (dashed)", loc="left", fontsize=8.5,
                 color=plots.INK, pad=4)  # fmt: skip
    ax.set_xlabel("step", fontsize=8, color=plots.INK)
    shown = np.concatenate([lam[np.isfinite(lam)], lim[np.isfinite(lim)]])
    positive = shown.size > 0 and bool((shown > 0).all())
    if positive and shown.max() / shown.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(numticks=4))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    else:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plots.tick_label))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=True))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plots.tick_label))
    ax.grid(True, color=plots.GRID, lw=0.6)
    ax.set_axisbelow(True)
    if x.size:
        lo, hi = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
        pad = (hi / lo) ** 0.08 if ax.get_yscale() == "log" else None
        bottom, top = (lo / pad, hi * pad) if pad else (lo - 0.08 * (hi - lo or 1), hi + 0.08 * (hi - lo or 1))
        ax.set_ylim(bottom, top)
        ax.set_xlim(float(x[0]) - 0.5, float(x[-1]) + 0.5) if x.size == 1 else ax.set_xlim(float(x[0]), float(x[-1]))
        finite = np.isfinite(lim)
        # Above the limit the optimizer overshoots along the sharpest direction: a tinted band.
        ax.fill_between(x, np.where(finite, lim, top), top, step="post", color=UNSTABLE_COLOR, alpha=0.08, lw=0)
        ax.step(x[finite], lim[finite], where="post", color=LIMIT_COLOR, lw=1.1, ls=(0, (4, 2)))
        ax.plot(x, lam, color=plots.LOSS_COLOR, lw=1.4, marker="o", ms=2.5)
    agg.draw()
    return canvas.Background(np.asarray(agg.buffer_rgba()), []).frame().png()
