"""The descent panel's stability meter: a line under the learning-rate slider, and λmax in the readout.

ipywidgets sliders carry no marks, so the mark at the stable learning rate is a line of HTML
right under the slider, ``stable below 2/λmax = 0.2``, which turns to the warning colour once the
rate passes it; the readout shows λmax beside ``2/lr``. For momentum and Nesterov the line gives
their own bound, for adaptive methods ``2/λmax`` as a guide (see :mod:`jaxgrad_magic.sharpness`).

λmax is measured where the descent stands, on a background thread that coalesces requests, so
neither the panel's first display nor a click waits for it: once when the panel is built (the
line says "measuring λmax…" meanwhile; that first measurement compiles its program, about half
a second), then after every step, run and reset. A change of learning rate or optimizer only
redraws. Both widgets carry a ``jgm-*`` CSS class
(``jgm-stability`` and ``jgm-sharpness``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as widgets

from .background import SETTLE, Redo
from .formatting import number
from .optimizers import MOMENTUM
from .sharpness import bound

if TYPE_CHECKING:
    from .stepper import Stepper

WARNING_STYLE = "color: var(--jp-warn-color0, #bf360c); font-weight: 600"
MUTED_STYLE = "color: var(--jp-ui-font-color2, #5f6368)"
_LINE_STYLE = "font-size: 12px; line-height: 16px; padding: 0 0 4px 74px; overflow-wrap: anywhere"


def _short(exc: BaseException) -> str:
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {first}"
    return text if len(text) <= 160 else text[:159] + "…"


class StabilityMeter:
    """λmax of a stepper's loss where it stands, and what it says of the learning rate, as two widgets.

    Args:
      stepper: the descent to measure; only read.
      on_first: called (on the background thread) once the first measurement is shown.

    Attributes:
      line: the HTML line under the learning-rate slider.
      readout: the HTML value of the readout's λmax row (``10 · 2/lr = 20``).
      lambda_max: the last λmax measured, or None before the first (or when it cannot be measured).
      measured_at: the step of that measurement.
      exceeded: True when the learning rate is past the bound (or guide) shown.
      error: why λmax cannot be measured (a function forward mode cannot differentiate), else None.
      text: the line under the slider, as plain text (for the panel's still picture).
    """

    def __init__(self, stepper: Stepper, on_first: Callable[[], None] | None = None) -> None:
        self.stepper = stepper
        self._on_first = on_first
        self.lambda_max: float | None = None
        self.measured_at: int | None = None
        self.exceeded = False
        self.error: str | None = None
        self.text = ""
        self._redo = Redo(self._measure, "jaxgrad-sharpness", settle=SETTLE)
        self.line = widgets.HTML("")
        self.line.add_class("jgm-stability")
        self.readout = widgets.HTML("")
        self.readout.add_class("jgm-sharpness")
        self.render()  # "measuring λmax…" until start()

    def start(self) -> None:
        """Take the first measurement, on the background thread (the panel calls this once built)."""
        self._redo.request()

    def update(self, what: str) -> None:
        """The stepper changed (``what`` as :meth:`Stepper.observe` says): redraw, or measure again."""
        if self._redo.closed:
            return
        if what in ("lr", "optimizer"):
            self.render()  # the point is the same: λmax is too
        else:
            self.request()

    def request(self) -> None:
        """Measure λmax at the stepper's point on the background thread (one run for a burst of requests)."""
        self._redo.request()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no measurement is due or going; True when the meter shows the stepper's point."""
        return self._redo.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop measuring (after the measurement going on, if any) and close the two widgets."""
        self._redo.close(timeout)
        for widget in (self.line, self.readout):
            widget.close()

    def _measure(self) -> None:
        first = self.lambda_max is None and self.error is None
        step = int(self.stepper.steps)
        try:
            value = self.stepper.sharpness()
        except Exception as exc:  # e.g. a jax.custom_vjp: no forward mode, no Hessian-vector product
            self.lambda_max, self.measured_at, self.error = None, step, _short(exc)
        else:
            self.lambda_max, self.measured_at, self.error = value, step, None
        if not self._redo.closed:
            self.render()
            if first and self._on_first is not None:
                self._on_first()  # the panel's still picture said "measuring λmax…"

    def render(self) -> None:
        """Show the last λmax against the stepper's learning rate and optimizer."""
        s, lam = self.stepper, self.lambda_max
        self.exceeded = False
        if lam is None:
            why = f"λmax cannot be measured here ({self.error})" if self.error else "measuring λmax…"
            self._show(why, MUTED_STYLE, "")
            return
        if not s.lr_adjustable:
            text = f"λmax = {number(lam, 4)} (the optax transformation carries its own learning rate)"
            self._show(text, MUTED_STYLE, html.escape(number(lam, 4)))
            return
        lr, label = float(s.lr), s.optimizer_label
        plain = f"{number(lam, 4)} · 2/lr = {number(2 / lr, 4)}"
        if not math.isfinite(lam):
            self._show(f"λmax = {lam}: the loss or its curvature is not finite here", MUTED_STYLE, "–")
            return
        if lam <= 0:
            text = f"λmax = {number(lam, 4)} ≤ 0: nothing curves up here, so no learning rate overshoots"
            self._show(text, MUTED_STYLE, html.escape(plain))
            return
        b = bound(lam, label)
        shown = f"{b.formula} = {number(b.value, 3)}"
        beta = f" (β = {MOMENTUM:g})" if label in ("momentum", "nesterov") else ""
        guide = "" if b.exact else f": a guide for {label}, not a bound"
        self.exceeded = lr > b.value
        if self.exceeded:
            why = ": unstable along the sharpest direction" if b.exact else f" (a guide for {label}, not a bound)"
            text = f"⚠ lr {lr:g} > {shown}{beta}{why}"
            self._show(text, WARNING_STYLE, f"<span style='{WARNING_STYLE}'>{html.escape(plain)}</span>")
        else:
            text = f"stable below {shown}{beta}" if b.exact else f"{shown}{guide}"
            self._show(text, MUTED_STYLE, html.escape(plain))

    def _show(self, line: str, style: str, readout: str) -> None:
        self.text = line
        self.line.value = f"<div style='{_LINE_STYLE}'><span style='{style}'>{html.escape(line)}</span></div>"
        self.readout.value = readout or "–"
