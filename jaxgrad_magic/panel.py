"""The descent panel: core ipywidgets driving a :class:`~jaxgrad_magic.stepper.Stepper`.

Controls on the left (Step, Run N, Stop, Reset, Apply, a log-scale learning-rate slider,
the optimizer), the state at a glance under them, and the pictures on the right (the loss
curve, and for one or two parameters ``f`` with the path). Plots are PNG bytes in
``ipywidgets.Image`` widgets, so the panel works in any frontend that renders core widgets
and can be checked without one.

A widget callback blocks the kernel's message loop, so Run N does its work on a background
thread: the kernel keeps answering, a Stop click is seen between two chunks of the run, and
the thread refreshes the progress bar and the plots at a bounded rate. A run the panel
expects to finish within :data:`INLINE_SECONDS` (from the speed of its earlier runs) is done
in the click itself: sooner than a Stop could be clicked, and without the thread's start and
the buttons' disable/enable round trip. Every callback catches its errors and shows them on
the status line, where they are not lost in a log.

Every widget carries a ``jgm-*`` CSS class (``jgm-panel`` on the top-level box, ``jgm-step``,
``jgm-loss``, ``jgm-grad-norm``, ``jgm-params``, ``jgm-mark`` and ``jgm-status`` on the
readout), so tests and notebook themes can find them without relying on their order.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np

from . import plots, snapshot
from .argnums import Argnums
from .errors import JaxGradUsageError
from .formatting import compact, number
from .landscape import Landscape
from .model_view import GradNorms, PlaneView
from .point import parameters
from .race_control import RaceControl
from .stability_view import StabilityMeter
from .stepper import Stepper, set_view

REDRAW_INTERVAL = 0.25  # seconds between plot redraws during a run: at most four a second
PROGRESS_INTERVAL = 0.05  # seconds between progress-bar updates during a run
CONVERGED_GRAD_NORM = 1e-6  # a gradient norm below this counts as converged
DEFAULT_RUN_STEPS = 1000
INLINE_SECONDS = 0.05  # a run expected to take less than this is done in the click, without a thread
MAX_PARAM_ITEMS = 6  # arrays with more elements are abbreviated in the readout
MAX_DISPLAYS = 8  # displays of one panel whose picture is kept up to date (the latest ones)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PUBLISH_DELAY = 0.5  # seconds after a run ends (by a click) before the still picture is sent
_ERROR_STYLE = "color: var(--jp-error-color1, #d32f2f)"  # theme colours, with a fallback
_SUCCESS_STYLE = "color: var(--jp-success-color1, #388e3c)"
# Wrapped lines in an HTML widget: the widget's own line height is a control's (28px), too loose
# for a paragraph; the padding keeps a single line level with the labels beside it.
_WRAP_STYLE = "line-height: 18px; padding: 5px 0; overflow-wrap: anywhere"
FIRST_NOTE = "press Step or Run N"  # inside the empty loss plot at step 0


def _one_paragraph(message: str, limit: int = 600) -> str:
    """A message short enough for a status line: an embedded traceback shrinks to its first and last lines."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 2:
        lines = [lines[0], "…", lines[-1]]
    text = " ".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wider(box: plots.Box, than: plots.Box, factor: float) -> bool:
    span = np.subtract(box.hi, box.lo)
    return bool((span > factor * np.subtract(than.hi, than.lo)).any())


def _close_all(widget: widgets.Widget, seen: set[int] | None = None) -> None:
    """Close ``widget`` and every widget it holds: children, and its layout and style models."""
    seen = set() if seen is None else seen
    if id(widget) in seen:
        return
    seen.add(id(widget))
    for name in widget.keys:
        value = getattr(widget, name, None)
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, widgets.Widget):
                _close_all(item, seen)
    widget.close()


def _wrapping(text: str) -> str:
    return f"<div style='{_WRAP_STYLE}'>{text}</div>"


class PanelWidget(widgets.VBox):
    """The panel's top-level box; ``.panel`` is the :class:`StepperPanel` that drives it.

    Displayed in IPython, it makes two outputs: the widget, and its still picture (see
    :meth:`StepperPanel.still`). A frontend with a kernel draws the widget, and in the second
    output an empty, hidden widget; a renderer without one (GitHub, nbviewer, ``nbconvert``)
    draws nothing for the first and the picture for the second. The picture is kept up to
    date through its own display id, so updating it never redraws the live panel.
    """

    def __init__(self, panel: StepperPanel, children: list[widgets.Widget]) -> None:
        super().__init__(children=children, layout=widgets.Layout(width="100%"))
        self.panel = panel

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """One bundle, the widget view with the still picture (where the panel is not shown by IPython)."""
        bundle = super()._repr_mimebundle_(**kwargs)  # the widget view
        if bundle is None:  # a closed widget: nothing to draw
            return {"text/plain": "(closed descent panel)"}
        bundle.update(self.panel.still())
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        view = super()._repr_mimebundle_()
        if view is None:
            display({"text/plain": "(closed descent panel)"}, raw=True)
            return
        # No text of its own where no widget is drawn: the still picture below says it all.
        display({WIDGET_VIEW: view[WIDGET_VIEW], "text/plain": ""}, raw=True)
        handle = display(self.panel.still_bundle(), raw=True, display_id=True)
        if handle is not None:
            self.panel.shown_at(handle)


class StepperPanel:
    """An ipywidgets panel that steps, runs, stops, resets and applies a Stepper.

    Args:
      stepper: the descent core to drive; the panel only calls its public API.

    Attributes:
      widget: the top-level container to display.
      step_button, run_button, stop_button, reset_button, apply_button: the actions.
      steps_input: how many steps Run N takes.
      lr_slider: the learning rate, on a log scale.
      optimizer_dropdown: the optimizer's name.
      progress: the progress of the current or last run.
      steps_label, loss_label, grad_label: the state at a glance.
      params_label: the current parameters (HTML, wraps when long).
      mark: "converged" or "diverged" (with the stepper's reason) when either holds, else empty.
      status: the last message, or the last error (type and message).
      loss_image: the loss curve (PNG).
      landscape_image: ``f`` with the path (PNG); for more than two parameters, a loss plane (``plane``).
      race_control: the optimizer race under the panel (:class:`~jaxgrad_magic.race_control.RaceControl`).
      grad_norms: the gradient's norm per leaf under the readout (:class:`~jaxgrad_magic.model_view.GradNorms`).
      plane: for more than two parameters, the loss on a plane through them in ``landscape_image``
        (:class:`~jaxgrad_magic.model_view.PlaneView`).
      stability: the stability meter: the line under the slider, λmax in the readout
        (:class:`~jaxgrad_magic.stability_view.StabilityMeter`).
    """

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self._lock = threading.RLock()  # one redraw at a time (the run thread or a click)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._notice = ""  # a problem worth one mention with the next message
        self._run_target: int | None = None
        self._landscape: Landscape | None = None
        self._first_box: plots.Box | None = None
        self._box: plots.Box | None = None
        self._pictures: OrderedDict[plots.Box, plots.ContourPlot | plots.CurvePlot] = OrderedDict()
        self._loss_plot = plots.LossCurve()
        self._seconds_per_step: tuple[Any, float] | None = None  # (optimizer, seconds) of the last run
        self._displays: list[Any] = []  # the display handles the panel was shown with
        self._publish_due = False  # the still picture is behind the panel (see _publish_soon)
        self._next_draw = 0.0  # when a step may draw again (see _draw_soon)
        self._clicked = False  # the Step button's step is being taken
        self._draw_timer: threading.Timer | None = None  # the draw a burst of steps left for later
        self._still_holder = widgets.Box(layout=widgets.Layout(display="none"))  # see PanelWidget

        names = [p.name for p in parameters(stepper.fn)]
        self._wrt = self._wrt_names(names)
        self._leaf_layout = self._flat_layout()
        self._build_controls(stepper)
        self.race_control = RaceControl(stepper)
        self._still_lacks: set[str] = set()  # what the last still picture was drawn without ("λmax", "plane")
        self.stability = StabilityMeter(stepper, on_first=lambda: self._arrived("λmax"))  # measures once started
        self._setup_landscape(stepper)
        self.grad_norms = GradNorms(stepper)  # per leaf, under the readout
        self.plane = PlaneView(stepper, self.landscape_image, on_first=lambda: self._arrived("plane"))  # > 2 numbers
        self.widget = self._layout(stepper, names)
        self._show_controls()
        try:
            self._refresh()
        except Exception as exc:
            self._show_error(exc, "drawing the panel")
        else:
            self._say(stepper.message)
        # The panel follows the stepper one way: whoever changed it (a button here, or code in a
        # cell), the change shows.
        self._unobserve = stepper.observe(self._on_stepper_change)
        self.stability.start()  # λmax off the display's path: its first program takes half a second to compile
        self.plane.start()  # the same for the loss plane: most of a second

    # ------------------------------------------------------------------ construction

    def _build_controls(self, stepper: Stepper) -> None:
        def button(description: str, style: str, icon: str, tooltip: str, name: str) -> widgets.Button:
            made = widgets.Button(
                description=description,
                button_style=style,
                icon=icon,
                tooltip=tooltip,
                layout=widgets.Layout(width="auto", min_width="68px"),
            )
            made.add_class(f"jgm-{name}-button")
            return made

        self.step_button = button("Step", "primary", "step-forward", "Take one optimizer step", "step")
        self.run_button = button("Run N", "success", "play", "Run N steps in the background", "run")
        self.stop_button = button("Stop", "danger", "stop", "Stop the run after the current chunk", "stop")
        self.stop_button.disabled = True
        self.reset_button = button("Reset", "warning", "undo", "Back to the start point, history cleared", "reset")
        self.apply_button = button("Apply", "info", "check", "Write the current parameters into the notebook", "apply")
        self.gif_button = button("GIF", "", "film", "Make a GIF of the descent so far, to download", "gif")
        self.steps_input = widgets.IntText(
            value=DEFAULT_RUN_STEPS,
            description="N",
            style={"description_width": "16px"},
            layout=widgets.Layout(width="130px"),
        )
        lr = float(stepper.lr)
        exponent = math.log10(lr) if lr > 0 else -2.0
        self.lr_slider = widgets.FloatLogSlider(
            value=lr,
            base=10,
            min=min(-6.0, math.floor(exponent)),
            max=max(1.0, math.ceil(exponent)),
            step=0.05,
            description="lr",
            readout_format=".3g",
            continuous_update=False,  # one change on release, not one per pixel dragged
            style={"description_width": "70px"},
            layout=widgets.Layout(width="320px"),
        )
        options = list(stepper.optimizer_names)
        # An optimizer given as an object (an optax transformation, or a function of the
        # learning rate) is listed under its label, so it can be picked again after a switch.
        self._given_optimizers: dict[str, Any] = {}
        current = self._optimizer_label(stepper)
        if current not in options:
            options.append(current)
        self.optimizer_dropdown = widgets.Dropdown(
            options=options,
            value=current,
            description="optimizer",
            style={"description_width": "70px"},
            layout=widgets.Layout(width="240px"),
        )
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="150px"))
        self.progress_label = widgets.Label("")
        self.steps_label = widgets.Label("")
        self.loss_label = widgets.Label("")
        self.grad_label = widgets.Label("")
        self.params_label = widgets.HTML("")  # HTML, not a Label: long parameters wrap instead of being cut
        self.mark = widgets.HTML("")
        self.status = widgets.HTML("")
        self.gif_link = widgets.HTML("")  # the GIF's download link, once made
        size = {"width": f"{plots.WIDTH}px", "height": f"{plots.HEIGHT}px"}
        self.loss_image = widgets.Image(format="png", layout=widgets.Layout(**size))
        self.landscape_image = widgets.Image(format="png", layout=widgets.Layout(**size))
        for widget, name in (
            (self.steps_input, "steps-input"),
            (self.lr_slider, "lr"),
            (self.optimizer_dropdown, "optimizer"),
            (self.progress, "progress"),
            (self.progress_label, "progress-text"),
            (self.steps_label, "step"),
            (self.loss_label, "loss"),
            (self.grad_label, "grad-norm"),
            (self.params_label, "params"),
            (self.mark, "mark"),
            (self.status, "status"),
            (self.gif_link, "gif-link"),
            (self.loss_image, "loss-plot"),
            (self.landscape_image, "landscape-plot"),
        ):
            widget.add_class(f"jgm-{name}")

        self.step_button.on_click(lambda _: self._guarded(self._on_step, "Step"))
        self.run_button.on_click(lambda _: self._guarded(self._on_run, "Run N"))
        self.stop_button.on_click(lambda _: self._guarded(self._on_stop, "Stop"))
        self.reset_button.on_click(lambda _: self._guarded(self._on_reset, "Reset"))
        self.apply_button.on_click(lambda _: self._guarded(self._on_apply, "Apply"))
        self.gif_button.on_click(lambda _: self._guarded(self._on_gif, "GIF"))
        self.lr_slider.observe(lambda change: self._guarded(lambda: self._on_lr(change["new"]), "lr"), names="value")
        self.optimizer_dropdown.observe(
            lambda change: self._guarded(lambda: self._on_optimizer(change["new"]), "optimizer"), names="value"
        )

    def _setup_landscape(self, stepper: Stepper) -> None:
        try:
            landscape = Landscape(stepper.fn, tuple(stepper.point), stepper.argnums, has_aux=stepper.has_aux)
        except Exception:  # an argument JAX cannot flatten: no picture, the rest still works
            landscape = None
        if landscape is not None and landscape.drawable:
            self._landscape = landscape
            self._first_box = plots.start_box(landscape.start)
        else:
            self.landscape_image.layout.display = "none"

    def _layout(self, stepper: Stepper, names: list[str]) -> PanelWidget:
        wrt = self._landscape.labels if self._landscape is not None else self._wrt_names(names)
        self._fn_name = str(stepper.fn_name or getattr(stepper.fn, "__name__", "f"))
        self._title_names = list(wrt)
        title = widgets.HTML(
            f"<b>Gradient descent</b> on <code>{html.escape(self._fn_name)}</code> over {html.escape(', '.join(wrt))}",
        )
        title.add_class("jgm-title")

        def key(text: str) -> widgets.Label:
            label = widgets.Label(text, layout=widgets.Layout(width="64px"))
            label.add_class("jgm-key")
            return label

        readout = widgets.GridBox(
            [
                key("step"),
                self.steps_label,
                key("loss"),
                self.loss_label,
                key("‖∇f‖"),
                self.grad_label,
                key("params"),
                self.params_label,
                key("λmax"),
                self.stability.readout,
            ],
            # minmax(0, 1fr): the values' column fits the controls' width, so long parameters wrap.
            layout=widgets.Layout(grid_template_columns="64px minmax(0, 1fr)", grid_gap="0px 6px"),
        )
        readout.add_class("jgm-readout")
        controls = widgets.VBox(
            [
                widgets.HBox([self.step_button, self.run_button, self.steps_input]),
                widgets.HBox([self.stop_button, self.reset_button, self.apply_button, self.gif_button]),
                self.lr_slider,
                self.stability.line,
                self.optimizer_dropdown,
                widgets.HBox([self.progress, self.progress_label]),
                readout,
                self.grad_norms.widget,
                self.plane.controls,
                self.mark,
                self.status,
                self.gif_link,
            ],
            layout=widgets.Layout(width="340px", min_width="320px"),
        )
        controls.add_class("jgm-controls")
        # The pictures take the room beside the controls: side by side when it is wide enough,
        # one above the other when not; below the controls only on a narrow page.
        pictures = widgets.HBox(
            [self.loss_image, self.landscape_image],
            layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start", flex=f"1 1 {plots.WIDTH}px"),
        )
        pictures.add_class("jgm-plots")
        body = widgets.HBox([controls, pictures], layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        top = PanelWidget(self, [title, body, self.race_control.widget])
        top.add_class("jgm-panel")
        return top

    def _wrt_names(self, names: list[str]) -> list[str]:
        return list(Argnums.of(self.stepper.argnums).names(names))

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """True while a Run N is going on its background thread."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def landscape_kind(self) -> str | None:
        """``"contour"`` for two parameters, ``"curve"`` for one, ``"plane"`` for more, None when not drawn."""
        if self._landscape is None:
            return "plane" if self.plane.shown and self.plane.slice is not None else None
        return "curve" if self._landscape.size == 1 else "contour"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run (if any) to finish.

        Args:
          timeout: the most seconds to wait; None waits for the end.

        Returns:
          True when no run is going any more.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def close(self, timeout: float = 5.0) -> None:
        """Stop a run and close every widget the panel made; the stepper stays usable.

        The run (if any) ends after its current chunk; its thread draws nothing more. The
        widgets' layout and style models are closed too, so nothing of the panel stays in
        the kernel's widget registry. Closing twice does nothing more.

        Args:
          timeout: the most seconds to wait for a running chunk to end.
        """
        self._closed = True
        self._unobserve()
        self._cancel_draw()
        self._stop.set()
        self.wait(timeout)
        self.race_control.close(timeout)
        self.plane.close(timeout)
        self.stability.close(timeout)
        _close_all(self.widget)
        _close_all(self._still_holder)
        with self._lock:  # the rendered pictures go with the widgets
            self._pictures.clear()
            self._loss_plot = plots.LossCurve()

    # ------------------------------------------------------------------ the still picture

    def still(self) -> dict[str, Any]:
        """The panel for renderers without a kernel: a PNG, HTML that shows it, a line of text.

        Returns:
          ``{"image/png": ..., "text/html": ..., "text/plain": ...}``: the readout (with the
          stability line) above the plots (see :mod:`jaxgrad_magic.snapshot`), and the one-line summary (function,
          optimizer, step, loss) as plain text and as the picture's ``alt`` text.
        """
        with self._lock:
            if self._draw_timer is not None:  # steps left their draw for later: the picture shows them now
                self._cancel_draw()
                self._refresh()
            s = self.stepper
            summary = self.summary()
            lines = [
                f"{self._optimizer_label(s)}, learning rate {s.lr:g} · step {s.steps} · loss {number(s.loss, 6)}"
                f" · ‖∇f‖ {number(s.grad_norm, 4)}",
                self._params_text(),
            ]
            if self.stability.text:  # the line under the slider: where the rate stands against 2/λmax
                lines.append(self.stability.text)
            self._still_lacks = {
                *(["λmax"] if self.stability.lambda_max is None and self.stability.error is None else []),
                *(["plane"] if self.plane.shown and self.plane.slice is None else []),
            }
            if s.diverged:
                lines.append(s.divergence or f"diverged at step {s.diverged_at}")
            title = f"Gradient descent on {self._fn_name} over {', '.join(self._title_names)}"
            shown = [self.loss_image.value]
            if self.landscape_image.layout.display != "none":
                shown.append(self.landscape_image.value)
            png = snapshot.compose(title, lines, shown)
        encoded = base64.b64encode(png).decode("ascii")
        picture = f"<img src='data:image/png;base64,{encoded}' alt='{html.escape(summary, quote=True)}'>"
        return {"image/png": encoded, "text/html": f"<div class='jgm-still'>{picture}</div>", "text/plain": summary}

    def summary(self) -> str:
        """One line: the function, the optimizer, the step and the loss."""
        s = self.stepper
        return f"Gradient descent on {self._fn_name} ({self._optimizer_label(s)}): step {s.steps}, loss {s.loss:.6g}"

    def still_bundle(self) -> dict[str, Any]:
        """The output that carries the still picture: :meth:`still`, and the view of an empty,
        hidden widget, so a frontend with a kernel draws nothing there."""
        holder = self._still_holder._repr_mimebundle_()
        return {WIDGET_VIEW: holder[WIDGET_VIEW], **self.still()}

    def shown_at(self, handle: Any) -> None:
        """Remember a display of the panel, so :meth:`publish` brings its picture up to date."""
        self._displays = [*self._displays[-(MAX_DISPLAYS - 1) :], handle]

    def publish(self) -> None:
        """Bring the still picture up to date wherever the panel was displayed (now).

        A notebook saved afterwards shows the panel as it was last left.
        """
        with self._lock:
            self._publish_due = False
            if self._closed or not self._displays:
                return
            bundle = self.still_bundle()
        for handle in self._displays:
            handle.update(bundle, raw=True)

    def _publish_soon(self) -> None:
        """Publish after the end of a run, Stop or Reset, once things settle (not for every frame).

        Drawing and sending the picture takes a few milliseconds: a loop of short runs in a
        cell publishes once when the cell ends (:func:`publish_pending`, on IPython's
        ``post_run_cell``), and a click once :data:`PUBLISH_DELAY` seconds after the last run.
        """
        with self._lock:
            if self._closed or not self._displays or self._publish_due:
                return
            self._publish_due = True
        _PENDING.add(self)
        if _IN_CELL.is_set():
            return  # published when the cell ends
        timer = threading.Timer(PUBLISH_DELAY, self._publish_if_due)
        timer.daemon = True
        timer.start()

    def _arrived(self, what: str) -> None:
        """The first λmax or loss plane shows: a still picture drawn without it is sent again."""
        if what in self._still_lacks:
            self._publish_soon()

    def _publish_if_due(self) -> None:
        if self._publish_due and not _IN_CELL.is_set():  # else the cell's end publishes it
            self._guarded(self.publish, "updating the panel's picture")

    def _guarded(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except Exception as exc:
            self._show_error(exc, what)

    def _show_error(self, exc: BaseException, what: str) -> None:
        message = _one_paragraph(str(exc))
        if isinstance(exc, JaxGradUsageError):
            text = html.escape(message)
        else:
            text = f"<b>{html.escape(type(exc).__name__)}</b> in {html.escape(what)}: {html.escape(message)}"
        self.status.value = _wrapping(f"<span style='{_ERROR_STYLE}'>⚠ {text}</span>")

    def _say(self, message: str) -> None:
        notice, self._notice = self._notice, ""
        text = html.escape(message)
        if notice:  # shown once, with the message that follows it
            text += f"<br><span style='{_ERROR_STYLE}'>⚠ {html.escape(notice)}</span>"
        self.status.value = _wrapping(text)

    def _check_idle(self, action: str) -> None:
        if self.running:
            raise JaxGradUsageError(f"{action} is not possible while a run is going: press Stop, or wait for the run.")

    def _set_running(self, running: bool) -> None:
        self.stop_button.disabled = not running
        # Run N last: once it can be clicked again, every other control is in place for the next run.
        controls = (self.step_button, self.reset_button, self.apply_button, self.gif_button, self.steps_input)
        for control in (*controls, self.run_button):
            control.disabled = running

    # ------------------------------------------------------------------ actions

    def _on_step(self) -> None:
        self._check_idle("Step")
        self._clicked = True  # a click's step draws at once (see _draw_soon)
        try:
            info = self.stepper.step()  # the panel redraws on the stepper's change
        finally:
            self._clicked = False
        # A step that diverged is explained by the mark; the status line says only what happened.
        self._say("the step was not taken" if info.diverged else self.stepper.message)

    def _on_run(self) -> None:
        self._check_idle("Run N")
        n = self.steps_input.value
        if n < 1:
            raise JaxGradUsageError(
                f"Run N needs N of at least 1, but N is {n}. Set N to the number of steps to run (e.g. 1000)."
            )
        self._stop.clear()
        self._run_target = int(self.stepper.steps) + n
        self.progress.max = n
        if self._expected_seconds(n) < INLINE_SECONDS:
            self._run(n, inline=True)
            return
        self.progress.bar_style = "info"
        self.progress.value = 0
        self.progress_label.value = f"0 / {n}"
        self._set_running(True)
        self._say(f"running {n} steps…")
        self._thread = threading.Thread(target=self._run, args=(n,), name="jaxgrad-descent-run", daemon=True)
        self._thread.start()

    def _expected_seconds(self, n: int) -> float:
        """How long ``n`` steps should take, from the last run with this optimizer (inf when unknown)."""
        timed, now = self._seconds_per_step, self.stepper.optimizer
        if timed is None or not (timed[0] is now or (isinstance(now, str) and timed[0] == now)):
            return math.inf
        return n * timed[1]

    def _run(self, n: int, inline: bool = False) -> None:
        """Run, report progress at a bounded rate, and draw the last frame.

        Args:
          n: the steps to run.
          inline: the run is done in the click (short, so nothing to report or stop on the way).
        """
        first = int(self.stepper.steps)
        now = time.perf_counter()
        next_progress = [now + PROGRESS_INTERVAL]
        next_redraw = [now + REDRAW_INTERVAL]
        plot_error: list[BaseException] = []

        def on_progress(done: int) -> None:
            if self._closed:
                return
            now = time.perf_counter()
            if now >= next_progress[0]:
                self.progress.value = min(done, n)
                self.progress_label.value = f"{done} / {n}"
                next_progress[0] = now + PROGRESS_INTERVAL
            if now >= next_redraw[0] and not plot_error:
                try:
                    self._refresh(xmax=self._run_target)
                except Exception as exc:  # a broken plot must not end the run
                    plot_error.append(exc)
                # Timed from the end of the redraw, so redraws take a bounded share of the run.
                next_redraw[0] = time.perf_counter() + REDRAW_INTERVAL

        error: BaseException | None = None
        optimizer = self.stepper.optimizer
        try:
            if inline:
                info = self.stepper.run(n)
            else:
                info = self.stepper.run(n, should_stop=self._stop.is_set, on_progress=on_progress)
        except Exception as exc:
            error = exc
        else:
            if info.steps and not info.diverged:
                self._seconds_per_step = (optimizer, info.seconds / info.steps)
        if self._closed:
            return  # the widgets are gone: nothing to show
        try:
            self._finish_run(n, int(self.stepper.steps) - first, error, plot_error, drawn=inline)
            if not inline:  # an inline run is published on the stepper's "run" change
                self._publish_soon()
        finally:
            self._run_target = None
            if self._thread is not None and threading.current_thread() is self._thread:
                self._thread = None  # over for the controls: a click from now on starts the next run
                self._set_running(False)  # whatever happened, the panel stays usable

    def _finish_run(
        self, n: int, done: int, error: BaseException | None, plot_error: list[BaseException], drawn: bool
    ) -> None:
        """The last frame of a run and its verdict on the progress bar and the status line.

        ``drawn``: the run went in the click, so the stepper's change drew the last frame already
        (a run on the panel's thread draws its own).
        """
        try:
            self.progress.value = min(done, n)
            self.progress_label.value = f"{done} / {n}"
            if not drawn:
                self._refresh()
        except Exception as exc:
            plot_error.append(exc)
        s = self.stepper
        if error is not None:
            self.progress.bar_style = "danger"
            self._show_error(error, "Run N")
        elif plot_error:
            self._show_error(plot_error[0], "drawing the plots")
        elif s.diverged:
            self.progress.bar_style = "danger"
            # The mark says why and what to do; the status line says how far the run got.
            self._say(f"the run ended after {done} of {n} steps, at step {s.steps}")
        elif done < n:
            self.progress.bar_style = "warning"
            self._say(
                f"stopped after {done} of {n} steps, at step {s.steps}: loss {s.loss:.6g}, ‖∇f‖ {s.grad_norm:.3g}"
            )
        else:
            self.progress.bar_style = "success"
            self._say(s.message)

    def _on_stop(self) -> None:
        if self.running:
            self._stop.set()
            self._say("stopping…")

    def _on_reset(self) -> None:
        self._check_idle("Reset")
        if self._box is not None and self._first_box is not None and _wider(self._box, self._first_box, 10.0):
            self._box = None  # a diverged path blew the box up: back to the one around the start
        self.progress.value = 0
        self.progress.bar_style = ""
        self.progress_label.value = ""
        self.stepper.reset()  # the panel redraws on the stepper's change
        self._say(self.stepper.message)

    def _on_apply(self) -> None:
        self._check_idle("Apply")
        with warnings.catch_warnings(record=True) as caught:  # said on the status line instead
            warnings.simplefilter("always")
            written = self.stepper.apply()
        values = ", ".join(f"{name} = {compact(value, MAX_PARAM_ITEMS)}" for name, value in written.items())
        if caught:  # e.g. two arguments from one variable: why that variable was not written
            self._notice = str(caught[0].message)
        self._say(f"wrote {values} into the notebook")

    def _on_gif(self) -> None:
        """Make a GIF of the descent so far and offer it as a download link under the status."""
        self._check_idle("GIF")
        out = io.BytesIO()
        made = self.stepper.animate(out)
        name = re.sub(r"[^\w.-]+", "_", self._fn_name) + "_descent.gif"
        data = base64.b64encode(out.getvalue()).decode("ascii")
        self.gif_link.value = (
            f"<a download='{name}' href='data:image/gif;base64,{data}'>⬇ {html.escape(name)}</a>"
            f" ({made.frames} frames to step {made.steps[-1]}, {made.size / 1024:.0f} KB)"
        )
        self._say(f"a GIF of {made.frames} frames is ready to download")

    def _on_lr(self, value: float) -> None:
        if math.isclose(value, self.stepper.lr, rel_tol=1e-9):
            return  # the slider showing the stepper's own rate
        self.stepper.lr = float(value)
        self._say(self.stepper.message)

    def _on_optimizer(self, name: str) -> None:
        if name == self._optimizer_label(self.stepper):
            return  # the dropdown showing the stepper's own optimizer
        self._seconds_per_step = None  # another optimizer: its speed is not known yet
        self.stepper.optimizer = self._given_optimizers.get(name, name)  # redrawn on the stepper's change
        self._say(self.stepper.message)

    # ------------------------------------------------------------------ drawing

    def _labelled_leaves(self, params: Any) -> list[tuple[str, Any]]:
        """Each differentiated leaf with its label (``x``, ``d['w']``), in ``ravel_pytree`` order."""
        import jax

        values = Argnums.of(self.stepper.argnums).split(params)
        return [
            (f"{name}{jax.tree_util.keystr(path) if path else ''}", leaf)
            for name, value in zip(self._wrt, values, strict=False)
            for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]
        ]

    def _flat_layout(self) -> list[tuple[str, int, tuple[int, ...]]] | None:
        """Where each leaf sits in the flattened parameters, when the stepper records them (two numbers at most)."""
        if self.stepper.trajectory is None:
            return None
        layout, offset = [], 0
        for label, leaf in self._labelled_leaves(self.stepper.trainable):
            shape = tuple(np.shape(leaf))
            layout.append((label, offset, shape))
            offset += math.prod(shape)
        return layout

    def _params_text(self, flat: np.ndarray | None = None) -> str:
        """The parameters, short: ``x = 4, y = 1.8``.

        Args:
          flat: the current parameters flattened (the last row of the stepper's trajectory);
            read from it when given, which spares copying the parameters from the device.
        """
        if flat is not None and self._leaf_layout is not None:
            leaves = [(name, flat[at : at + math.prod(shape)].reshape(shape)) for name, at, shape in self._leaf_layout]
        else:
            leaves = self._labelled_leaves(self.stepper.trainable)
        # Only the leaves shown are formatted (and copied from the device).
        parts = [f"{label} = {compact(leaf, MAX_PARAM_ITEMS)}" for label, leaf in leaves[:MAX_PARAM_ITEMS]]
        if len(leaves) > MAX_PARAM_ITEMS:
            parts.append(f"… ({len(leaves) - MAX_PARAM_ITEMS} more)")
        return ", ".join(parts)

    def _mark_html(self) -> str:
        s = self.stepper
        if s.diverged:
            why = s.divergence or f"diverged at step {s.diverged_at}"
            return _wrapping(f"<span style='{_ERROR_STYLE}'><b>✗</b> {html.escape(why)}</span>")
        if math.isfinite(s.grad_norm) and s.grad_norm < CONVERGED_GRAD_NORM:
            return f"<span style='{_SUCCESS_STYLE}'><b>✓ converged</b>: ‖∇f‖ < {CONVERGED_GRAD_NORM:g}</span>"
        return ""

    def _refresh(self, xmax: int | None = None) -> None:
        """Show the stepper's state: the readout, the loss curve, and the landscape."""
        with self._lock:
            s = self.stepper
            steps = int(s.steps)
            # The loss plot first, then the path: one large copy from the stepper at a time.
            history = s.history
            # A history that holds every step from 0 needs no array of step numbers.
            numbers = range(len(history)) if len(history) == steps + 1 else s.history_steps
            self.loss_image.value = self._loss_plot.render(
                numbers,
                history,
                xmax=xmax,
                diverged_at=s.diverged_at,
                note=FIRST_NOTE if steps == 0 and xmax is None and not s.diverged else None,
            )
            del history, numbers
            trajectory = s.trajectory  # one row per history entry, the last the current point; or None
            if trajectory is not None and len(trajectory):
                trajectory = np.asarray(trajectory, dtype=np.float64).reshape(len(trajectory), -1)
            else:
                trajectory = None
            if self._landscape is not None:
                try:
                    self._draw_landscape(trajectory)
                except Exception as exc:
                    # f cannot be drawn on a grid (e.g. it cannot be vmapped): drop the picture, keep stepping.
                    self._landscape = None
                    self.landscape_image.layout.display = "none"
                    self._notice = f"no landscape plot: {type(exc).__name__}: {_one_paragraph(str(exc), 300)}"
                    self.status.value = _wrapping(f"<span style='{_ERROR_STYLE}'>⚠ {html.escape(self._notice)}</span>")
            self.steps_label.value = str(steps)
            self.loss_label.value = number(s.loss, 4)
            self.grad_label.value = number(s.grad_norm, 4)
            flat = trajectory[-1] if trajectory is not None else None
            self.params_label.value = _wrapping(html.escape(self._params_text(flat), quote=False))
            self.grad_norms.render()
            self.mark.value = self._mark_html()

    def _optimizer_label(self, stepper: Stepper) -> str:
        given = stepper.optimizer
        if isinstance(given, str):
            return given
        label = stepper.optimizer_label
        if label not in stepper.optimizer_names:
            self._given_optimizers[label] = given
        return label

    def _on_stepper_change(self, what: str) -> None:
        """The stepper changed (from this panel or from code): show it."""
        if self._closed:
            return
        if what == "lr":
            self._show_lr()
        elif what == "optimizer":
            self._show_optimizer()
        if what == "step" and not self.running and not self._clicked:
            self._draw_soon()
        elif what != "lr" and not self.running:  # a run's thread draws its own frames
            self._cancel_draw()
            self._guarded(self._refresh, "drawing the plots")
            if what in ("run", "reset"):
                self._publish_soon()
        # Then the slow views, on their threads: started first, their Python would hold the GIL
        # (in 5 ms turns) while this thread draws the frame the click is waiting for.
        self.stability.update(what)  # λmax against the rate: redrawn, or measured again
        self.plane.update(what)  # a new plane through the point

    def _draw_soon(self) -> None:
        """Draw after a step: now, unless a step drew less than :data:`REDRAW_INTERVAL` ago; then
        once at the end of that interval, for all the steps taken meanwhile.

        A click on Step always draws at once; a loop of steps in a cell
        (``for _ in range(1000): s.step()``) draws four times a second, not a thousand times at a
        few milliseconds each, and the still picture draws what is left before it is taken.
        """
        now = time.monotonic()
        with self._lock:
            if self._draw_timer is not None:
                return  # the draw that is due covers this step too
            if now < self._next_draw:
                self._draw_timer = threading.Timer(self._next_draw - now, self._draw_due)
                self._draw_timer.daemon = True
                self._draw_timer.start()
                return
            self._next_draw = now + REDRAW_INTERVAL
        self._guarded(self._refresh, "drawing the plots")

    def _draw_due(self) -> None:
        with self._lock:
            if self._draw_timer is None or self._closed:
                return  # drawn meanwhile (a run, a reset, the still picture)
            self._draw_timer = None
            self._next_draw = time.monotonic() + REDRAW_INTERVAL
            if self.running:
                return  # the run's thread draws
            self._guarded(self._refresh, "drawing the plots")

    def _cancel_draw(self) -> None:
        """A full draw is about to happen: the one left for later is not needed."""
        with self._lock:
            if self._draw_timer is not None:
                self._draw_timer.cancel()
                self._draw_timer = None

    def _show_controls(self) -> None:
        self._show_lr()
        self._show_optimizer()

    # Each change shows in its own control only, and only after the stepper took it: a choice
    # made in another control that the stepper has yet to take is never written over.

    def _show_lr(self) -> None:
        """Put the stepper's learning rate into the slider (unless it shows it already)."""
        lr, slider = float(self.stepper.lr), self.lr_slider
        if not math.isclose(slider.value, lr, rel_tol=1e-9):
            exponent = math.log10(lr)
            slider.min, slider.max = min(slider.min, math.floor(exponent)), max(slider.max, math.ceil(exponent))
            slider.value = lr

    def _show_optimizer(self) -> None:
        """Put the stepper's optimizer into the dropdown; a fixed optax transformation disables the slider."""
        s, dropdown, slider = self.stepper, self.optimizer_dropdown, self.lr_slider
        name = self._optimizer_label(s)
        if dropdown.value != name:
            if name not in dropdown.options:
                dropdown.options = [*dropdown.options, name]
            dropdown.value = name
        slider.disabled = not s.lr_adjustable  # a fixed optax transformation carries its own rate
        slider.tooltip = None if s.lr_adjustable else "fixed by the optax transformation"

    def _draw_landscape(self, trajectory: np.ndarray | None) -> None:
        landscape, s = self._landscape, self.stepper
        assert landscape is not None and self._first_box is not None
        if trajectory is not None:
            # The points drawn: the box is grown to hold them, so the thinned path decides it too.
            path = plots.thin(trajectory.reshape(-1, landscape.size))
        else:
            from jax.flatten_util import ravel_pytree

            path = np.asarray(ravel_pytree(s.trainable)[0], dtype=np.float64).reshape(1, -1)
        current = path[-1]
        if self._box is None or not self._box.contains(path):
            # The path left the box (or there is none yet): grow it, and f is evaluated anew.
            self._box = plots.box_around(self._first_box, path)
        picture = self._pictures.get(self._box)
        if picture is None:
            xs, ys, zs = landscape.grid(self._box)
            if ys is None:
                picture = plots.CurvePlot(xs, zs, label=landscape.labels[0])
            else:
                picture = plots.ContourPlot(xs, ys, zs, labels=(landscape.labels[0], landscape.labels[1]))
            self._pictures[self._box] = picture
            if len(self._pictures) > 3:  # a few boxes stay drawn: Reset and run again costs no contouring
                self._pictures.popitem(last=False)
        else:
            self._pictures.move_to_end(self._box)
        if isinstance(picture, plots.CurvePlot):
            png = picture.render((current[0], float(s.loss)), path[:, 0])
        else:
            png = picture.render(path, current)
        self.landscape_image.value = png


_PENDING: weakref.WeakSet[StepperPanel] = weakref.WeakSet()  # panels whose still picture is due
_IN_CELL = threading.Event()  # a cell is running (between IPython's pre_run_cell and post_run_cell)


def cell_started() -> None:
    """A cell starts: pictures that fall due wait for its end (the extension calls this)."""
    _IN_CELL.set()


def publish_pending() -> None:
    """A cell ended: send every still picture that is due (the extension calls this).

    So the picture a notebook saves after a cell is that of the panel as the cell left it,
    however many runs the cell made, and it is sent once.
    """
    _IN_CELL.clear()
    for panel in list(_PENDING):
        _PENDING.discard(panel)
        if panel._publish_due:
            panel._guarded(panel.publish, "updating the panel's picture")


set_view(StepperPanel)  # Stepper.widget builds this panel: the model imports no view
