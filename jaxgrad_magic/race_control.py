"""The descent panel's Race control: optimizer checkboxes, a steps field and a Race button.

Race runs :func:`jaxgrad_magic.race` on the panel's function from the point the descent is at
now (the start, after Reset), with the checked optimizers at their default grids of 8 rates, and
shows the race's picture under the panel. It works on a background thread, like Run N: a first
race compiles one program per optimizer, and the kernel keeps answering meanwhile. The stepper
itself is only read, never changed.

Every widget carries a ``jgm-race*`` CSS class (``jgm-race`` on the box, ``jgm-race-button``,
``jgm-race-steps``, ``jgm-race-status``, ``jgm-race-plot``, ``jgm-race-<optimizer>`` on each
checkbox), so tests and themes find them without relying on their order.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING

import ipywidgets as widgets

from .errors import JaxGradUsageError
from .racing import GRID_SIZE, RaceResult, race

if TYPE_CHECKING:
    from .stepper import Stepper

CHOICES = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion")
"""The optimizers offered as checkboxes (any of :data:`jaxgrad_magic.racing.DEFAULT_LRS` works in code)."""

CHECKED = ("sgd", "momentum", "adam")
DEFAULT_STEPS = 500
_ERROR_STYLE = "color: var(--jp-error-color1, #d32f2f)"


class RaceControl:
    """A box of widgets that races optimizers on a stepper's function and shows the picture.

    Args:
      stepper: whose function, current point, ``argnums`` and ``has_aux`` are raced.

    Attributes:
      widget: the box to place in the panel.
      checkboxes: one per optimizer in :data:`CHOICES`, by name.
      steps_input: the steps each rate runs.
      race_button: starts the race.
      status: what the race found (its one-line summary), or what went wrong.
      image: the race's picture (hidden until the first race).
      result: the last :class:`~jaxgrad_magic.racing.RaceResult`, or None.
    """

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self.result: RaceResult | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.checkboxes = {
            name: widgets.Checkbox(
                value=name in CHECKED, description=name, indent=False, layout=widgets.Layout(width="auto")
            )
            for name in CHOICES
        }
        self.steps_input = widgets.IntText(
            value=DEFAULT_STEPS,
            description="steps",
            style={"description_width": "40px"},
            layout=widgets.Layout(width="150px"),
        )
        self.race_button = widgets.Button(
            description="Race",
            icon="flag-checkered",
            tooltip=f"Race the checked optimizers from the current point, each at {GRID_SIZE} learning rates",
            layout=widgets.Layout(width="auto", min_width="68px"),
        )
        self.status = widgets.HTML("")
        self.image = widgets.Image(format="png", layout=widgets.Layout(display="none", max_width="100%"))
        for name, box in self.checkboxes.items():
            box.add_class(f"jgm-race-{name}")
        for widget, name in (
            (self.race_button, "race-button"),
            (self.steps_input, "race-steps"),
            (self.status, "race-status"),
            (self.image, "race-plot"),
        ):
            widget.add_class(f"jgm-{name}")
        self.race_button.on_click(lambda _: self.start())
        title = widgets.HTML(f"<b>Optimizer race</b>: each checked optimizer at {GRID_SIZE} learning rates")
        self.widget = widgets.VBox(
            [
                title,
                widgets.HBox(list(self.checkboxes.values()), layout=widgets.Layout(flex_flow="row wrap")),
                widgets.HBox([self.steps_input, self.race_button]),
                self.status,
                self.image,
            ]
        )
        self.widget.add_class("jgm-race")

    @property
    def chosen(self) -> tuple[str, ...]:
        """The checked optimizers, in the order offered."""
        return tuple(name for name, box in self.checkboxes.items() if box.value)

    @property
    def running(self) -> bool:
        """True while a race is going on its background thread."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start a race on a background thread (the Race button's click)."""
        if self.running:
            return
        self.race_button.disabled = True
        size = len(self.chosen) * GRID_SIZE
        self.status.value = html.escape(
            f"racing {len(self.chosen)} optimizers, {size} runs of {self.steps_input.value} steps…"
        )
        self._thread = threading.Thread(target=self._race, name="jaxgrad-race", daemon=True)
        self._thread.start()

    def run(self) -> RaceResult:
        """Race now, in this thread, and show the result.

        Returns:
          The :class:`~jaxgrad_magic.racing.RaceResult`.

        Raises:
          JaxGradUsageError: no optimizer checked, a bad step count, or a function that cannot be raced.
        """
        s = self.stepper
        if not self.chosen:
            raise JaxGradUsageError("Check at least one optimizer to race (sgd, momentum and adam are a good start).")
        result = race(
            s.fn, s.point, self.chosen, None, self.steps_input.value, s.argnums, has_aux=s.has_aux, fn_name=s.fn_name
        )
        png = result.png
        if not self._closed:
            self.result = result
            self.image.value = png
            self.image.layout.display = None
            self.status.value = html.escape(result.summary)
        return result

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the race going on (if any); True when none is going any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def close(self, timeout: float = 5.0) -> None:
        """Let a race going on finish without showing anything; the panel closes the widgets."""
        self._closed = True
        self.wait(timeout)

    def _race(self) -> None:
        try:
            self.run()
        except Exception as exc:
            if not self._closed:
                what = "" if isinstance(exc, JaxGradUsageError) else f"<b>{html.escape(type(exc).__name__)}</b>: "
                self.status.value = f"<span style='{_ERROR_STYLE}'>⚠ {what}{html.escape(str(exc))}</span>"
        finally:
            if not self._closed:
                self.race_button.disabled = False
