"""The descent panel's parts for real models: the gradient's norm per leaf, and a loss plane.

* :class:`GradNorms`: a small HTML list under the readout, the norm of the gradient of each
  differentiated leaf where the descent stands (the first and last few, and the largest and
  smallest always), redrawn with the panel's frames. Shown for more than one leaf.
* :class:`PlaneView`: for more than two parameters, where the panel draws the contour of ``f``
  for two: :meth:`Stepper.landscape` on a plane through the current parameters, with the path
  and the current point, and a dropdown for the kind of plane (random, PCA, Hessian). A slice
  costs ``grid²`` evaluations of the loss, so it is taken on a background thread (requests
  coalesce, a click never waits), first once the panel is built, then after each step, run and
  reset once they settle; during a run the last one stays up. A caption says which plane it
  is, at which step, and that a PCA plane follows the path.

Each widget carries a ``jgm-*`` CSS class (``jgm-grad-norms``, ``jgm-plane``, ``jgm-plane-note``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import jax

from . import norms
from .argnums import Argnums
from .background import SETTLE, Redo
from .point import parameters
from .slices import KINDS

if TYPE_CHECKING:
    from .slices import Slice
    from .stepper import Stepper

PANEL_GRID = 31
"""Points per side of the panel's plane (961 evaluations of the loss)."""
NORM_ROWS = 8
"""Leaves the panel lists in full; more show their first and last three and the extremes."""
_NOTE_STYLE = "font-size: 12px; line-height: 16px; padding: 0 0 4px 74px; color: var(--jp-ui-font-color2, #5f6368)"


def _size(tree: Any) -> int:
    return sum(math.prod(getattr(x, "shape", ())) for x in jax.tree_util.tree_leaves(tree))


class GradNorms:
    """The gradient's norm per differentiated leaf, as an HTML list (none for one leaf, or for scalars alone).

    Args:
      stepper: the descent; only read.

    Attributes:
      widget: the HTML list.
    """

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self._picked = Argnums.of(stepper.argnums)
        self._names = [p.name for p in parameters(stepper.fn)]
        leaves = jax.tree_util.tree_leaves(stepper.trainable)
        # Scalars alone: their norms are the readout's own numbers.
        self.shown = len(leaves) > 1 and any(math.prod(getattr(x, "shape", ())) > 1 for x in leaves)
        self.widget = widgets.HTML("")
        self.widget.add_class("jgm-grad-norms")
        if not self.shown:
            self.widget.layout.display = "none"

    def render(self) -> None:
        """Show the norms of the stepper's gradient now (one small program; the norms alone come back)."""
        if self.shown:
            values = norms.grad_norms(self.stepper.grad, self._picked, self._names)
            self.widget.value = norms.html_list(values, NORM_ROWS, 3)


class PlaneView:
    """A loss plane through the parameters, drawn into the panel's landscape picture.

    Args:
      stepper: the descent; only read.
      image: the picture to draw into (the panel's ``landscape_image``).

    Attributes:
      shown: True for more than two parameters (else the panel draws ``f`` itself).
      dropdown: the kind of plane.
      note: the caption: which plane (θ + α u + β v), at which step; that a PCA plane follows the path.
      controls: the dropdown and the caption, for the panel's controls.
      slice: the last :class:`~jaxgrad_magic.slices.Slice` drawn, or None.
      error: why the last one could not be taken, else None.
    """

    def __init__(self, stepper: Stepper, image: widgets.Image, on_first: Callable[[], None] | None = None) -> None:
        self.stepper = stepper
        self.image = image
        self._on_first = on_first
        self.shown = _size(stepper.trainable) > 2
        self.slice: Slice | None = None
        self.error: str | None = None
        self._redo = Redo(self._draw, "jaxgrad-plane", settle=SETTLE)
        self.dropdown = widgets.Dropdown(
            options=list(KINDS),
            value="random",
            description="plane",
            style={"description_width": "70px"},
            layout=widgets.Layout(width="240px"),
        )
        self.dropdown.add_class("jgm-plane")
        self.note = widgets.HTML("")
        self.note.add_class("jgm-plane-note")
        self.controls = widgets.VBox([self.dropdown, self.note])
        if not self.shown:
            self.controls.layout.display = "none"
            return
        # The picture stays hidden until the first slice is drawn (the panel hides it for more
        # than two parameters).
        self.note.value = f"<div style='{_NOTE_STYLE}'>taking a slice of the loss through the parameters…</div>"
        self.dropdown.observe(lambda change: self.request(), names="value")

    def start(self) -> None:
        """Take the first slice, on the background thread (the panel calls this once built): its
        programs take most of a second to compile, and the panel shows meanwhile."""
        if self.shown:
            self._redo.request()

    def update(self, what: str) -> None:
        """The stepper changed (``what`` as :meth:`Stepper.observe` says): a new slice after a move."""
        if self.shown and not self._redo.closed and what in ("step", "run", "reset"):
            self.request()

    def request(self) -> None:
        """Take a slice at the stepper's point on the background thread (one for a burst of requests)."""
        self._redo.request()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no slice is due or being taken; True when the picture shows the stepper's point."""
        return self._redo.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop (after the slice being taken, if any) and close the dropdown and the caption."""
        self._redo.close(timeout)
        for widget in (self.dropdown, self.note, self.controls):
            widget.close()

    def _draw(self) -> None:
        kind, s = self.dropdown.value, self.stepper
        if s.running:
            return  # the run's end asks again
        try:
            plane = s.landscape(kind, grid=PANEL_GRID)
        except Exception as exc:  # e.g. PCA before any step: say so, keep the last picture
            self.error = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            if not self._redo.closed:
                self.note.value = f"<div style='{_NOTE_STYLE}'>{html.escape(self.error)}</div>"
                if self.slice is None:  # nothing drawn yet (f cannot be vmapped, say): no empty picture
                    self.image.layout.display = "none"
            return
        png = plane.picture()
        if self._redo.closed:
            return
        first = self.slice is None
        self.slice, self.error = plane, None
        self.image.value = png
        self.image.layout.display = None
        self.note.value = f"<div style='{_NOTE_STYLE}'>{html.escape(caption(plane))}</div>"
        if first and self._on_first is not None:
            self._on_first()  # the panel's still picture had no plane


def caption(plane: Slice) -> str:
    """What the panel says under its plane: the kind, the step, and what to know."""
    text = f"{plane.directions} plane θ + α·u + β·v through step {plane.step}"
    if plane.eigenvalues is not None:
        text += f" (eigenvalues {plane.eigenvalues[0]:.3g}, {plane.eigenvalues[1]:.3g})"
    if plane.note:  # for PCA: the plane follows the path
        text += f"; {plane.note}"
    return text
