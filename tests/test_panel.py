"""The descent panel with real widgets and a real Stepper, driven by clicks and ``.value =``.

Expected parameters come from the update rules in closed form (SGD on a quadratic bowl,
Adam's first step), not from the stepper's own code path.
"""

from __future__ import annotations

import html
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import png_pixels
from ipywidgets.widgets import widget as widget_module

from jaxgrad_magic import panel as panel_module
from jaxgrad_magic.panel import PanelWidget, StepperPanel
from jaxgrad_magic.plots import HEIGHT, WIDTH
from jaxgrad_magic.stepper import Stepper

RUN_TIMEOUT = 120.0


def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
    return x**2 + (y - 1.0) ** 2


def make_panel(
    fn: Callable[..., Any] = bowl, point: tuple[Any, ...] = (5.0, 2.0), argnums: Any = (0, 1), **options: Any
) -> StepperPanel:
    stepper = Stepper(fn, point, argnums, **options)
    box = stepper.widget
    assert isinstance(box, PanelWidget) and isinstance(box, widgets.Widget)
    return box.panel


def assert_image(image: widgets.Image) -> None:
    assert image.format == "png"
    assert png_pixels(image.value).shape == (HEIGHT, WIDTH)  # a complete, decodable PNG of palette indices


def shown(widget: widgets.Widget) -> str:
    """What a Label or HTML widget reads as on the page: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def finish(panel: StepperPanel) -> None:
    assert panel.wait(timeout=RUN_TIMEOUT), "the run did not finish"


@pytest.fixture
def bowl_panel() -> StepperPanel:
    return make_panel(lr=0.1)


def test_panel_shows_the_start(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    assert p.steps_label.value == "0"
    assert shown(p.params_label) == "x = 5, y = 2"
    assert p.loss_label.value == "26"  # 25 + 1
    assert float(p.grad_label.value) == pytest.approx(math.hypot(10.0, 2.0), rel=1e-3)
    assert_image(p.loss_image)
    assert_image(p.landscape_image)
    assert p.landscape_kind == "contour" and p.landscape_image.layout.display != "none"
    assert not p.step_button.disabled and p.stop_button.disabled
    assert p.lr_slider.value == pytest.approx(0.1) and p.lr_slider.readout
    assert isinstance(p.lr_slider, widgets.FloatLogSlider)
    assert p.optimizer_dropdown.value == "sgd" and "adam" in p.optimizer_dropdown.options


def test_step_moves_the_point_at_once(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    loss_png, landscape_png = p.loss_image.value, p.landscape_image.value
    p.step_button.click()
    # SGD on the bowl: x <- x - lr * 2x, y <- y - lr * 2(y - 1).
    assert p.steps_label.value == "1"
    assert shown(p.params_label) == "x = 4, y = 1.8"
    assert float(p.loss_label.value) == pytest.approx(16.0 + 0.8**2, rel=1e-3)
    assert float(p.grad_label.value) == pytest.approx(math.hypot(8.0, 1.6), rel=1e-3)
    assert p.loss_image.value != loss_png
    assert p.landscape_image.value != landscape_png
    assert_image(p.loss_image)
    assert "⚠" not in shown(p.status)


def test_run_n_runs_in_the_background_and_fills_the_progress_bar(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    p.step_button.click()
    p.steps_input.value = 500
    p.run_button.click()
    finish(p)
    assert p.progress.max == 500 and p.progress.value == 500
    assert p.progress.bar_style == "success"
    assert p.steps_label.value == "501"
    assert p.stepper.steps == 501
    x, y = (float(v) for v in p.stepper.params)
    assert x == pytest.approx(5.0 * 0.8**501, abs=1e-6) and y == pytest.approx(1.0, abs=1e-6)
    assert "✓ converged" in shown(p.mark)
    assert not p.step_button.disabled and not p.run_button.disabled and p.stop_button.disabled
    assert_image(p.loss_image)


def test_stop_ends_a_long_run_and_the_panel_stays_usable() -> None:
    # Big enough that a million steps take far longer than the test waits before Stop.
    p = make_panel(lambda x: jnp.sum(jnp.sin(x) ** 2), (jnp.linspace(0.0, 3.0, 20_000),), 0, lr=0.01)
    p.steps_input.value = 10**6
    p.run_button.click()
    assert p.running
    assert p.step_button.disabled and p.run_button.disabled and p.reset_button.disabled and p.apply_button.disabled
    assert not p.stop_button.disabled
    # Clicks during a run are turned away with a message, not run concurrently.
    p.step_button.click()
    assert "while a run is going" in shown(p.status)
    deadline = time.monotonic() + RUN_TIMEOUT
    while p.stepper.steps == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # let the run get going
    # The learning rate can be changed while the run goes (the next chunk uses it).
    p.lr_slider.value = 0.005
    assert p.stepper.lr == pytest.approx(0.005) and "⚠" not in shown(p.status)
    p.stop_button.click()
    finish(p)
    done = p.stepper.steps
    assert 0 < done < 10**6
    assert p.progress.bar_style == "warning" and p.progress.value == done
    status = shown(p.status)
    assert f"stopped after {done} of 1000000 steps, at step {done}:" in status
    assert status.count("stopped") == 1  # said once, not the stepper's own "stopped early" after it
    assert not p.step_button.disabled and p.stop_button.disabled
    p.step_button.click()
    assert p.stepper.steps == done + 1 and p.steps_label.value == str(done + 1)
    assert p.plane.wait(RUN_TIMEOUT)
    assert p.landscape_kind == "plane" and p.landscape_image.layout.display != "none"  # 20,000 numbers: a plane


def test_run_n_can_be_clicked_again_as_soon_as_it_is_enabled(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    p.steps_input.value = 10
    again: list[str] = []

    def click_when_enabled(change: dict[str, Any]) -> None:
        if not change["new"] and not again:  # enabled at the end of the first run, on its thread
            p.run_button.click()
            again.append(shown(p.status))

    p.run_button.observe(click_when_enabled, names="disabled")
    p.run_button.click()
    p.wait(RUN_TIMEOUT)
    finish(p)  # the second run, on a thread of its own unless it was done in the click
    assert again and "while a run is going" not in again[0]
    assert p.stepper.steps == 20 and p.steps_label.value == "20"
    assert not p.run_button.disabled and not p.step_button.disabled and p.stop_button.disabled


def test_a_long_run_redraws_at_a_bounded_rate() -> None:
    p = make_panel(lambda x: jnp.sum(jnp.sin(x) ** 2), (jnp.linspace(0.0, 3.0, 2_000),), 0, lr=0.01)
    frames: list[bytes] = []  # the loss pictures the frontend is sent
    p.loss_image.observe(lambda change: frames.append(change["new"]), names="value")
    p.steps_input.value = 20_000
    started = time.perf_counter()
    p.run_button.click()
    finish(p)
    elapsed = time.perf_counter() - started
    redraws = len(frames)
    assert redraws >= 1  # the final picture
    assert redraws <= 1 + elapsed / panel_module.REDRAW_INTERVAL + 1


def test_steps_from_code_draw_at_a_bounded_rate_and_end_drawn(bowl_panel: StepperPanel) -> None:
    # A loop of steps in a cell: the panel draws the first at once, then at most every
    # REDRAW_INTERVAL, and the last steps once the loop ends; a click on Step draws at once.
    p = bowl_panel
    frames: list[bytes] = []
    p.loss_image.observe(lambda change: frames.append(change["new"]), names="value")
    started = time.perf_counter()
    for _ in range(300):
        p.stepper.step()
    elapsed = time.perf_counter() - started
    assert 1 <= len(frames) <= 1 + elapsed / panel_module.REDRAW_INTERVAL + 1
    deadline = time.monotonic() + 10
    while p.steps_label.value != "300" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.steps_label.value == "300"
    p.step_button.click()
    assert p.steps_label.value == "301"
    p.step_button.click()  # within the interval of the last draw: a click still draws at once
    assert p.steps_label.value == "302"
    for _ in range(20):
        p.stepper.step()
    p.still()  # the still picture draws what the steps left for later before it is taken
    assert p.steps_label.value == "322"


def test_learning_rate_change_continues_without_recompiling(bowl_panel: StepperPanel, compiles: Any) -> None:
    p = bowl_panel
    p.step_button.click()  # compiles the step once
    compiles.reset()
    p.lr_slider.value = 0.02
    assert p.stepper.lr == pytest.approx(0.02)
    assert "continu" in shown(p.status).lower()
    p.step_button.click()
    assert compiles.count == 0
    x, y = (float(v) for v in p.stepper.params)
    assert x == pytest.approx(4.0 - 0.02 * 8.0, rel=1e-5)  # continued from (4, 1.8), not from the start
    assert y == pytest.approx(1.8 - 0.02 * 1.6, rel=1e-5)
    assert p.steps_label.value == "2"


def test_controls_show_changes_made_from_code_and_keep_the_users_choice(bowl_panel: StepperPanel) -> None:
    p, s = bowl_panel, bowl_panel.stepper
    s.lr, s.optimizer = 0.02, "adam"  # set from code: the next frame shows them
    p.step_button.click()
    assert p.lr_slider.value == pytest.approx(0.02) and p.optimizer_dropdown.value == "adam"
    # A frame drawn while the controls hold a choice the stepper has not taken yet (as when a run's
    # thread draws while the choice waits for its handler) leaves the choice alone, and it is taken.
    with p.lr_slider.hold_trait_notifications(), p.optimizer_dropdown.hold_trait_notifications():
        p.lr_slider.value, p.optimizer_dropdown.value = 0.005, "momentum"
        p.step_button.click()
        assert s.lr == pytest.approx(0.02) and s.optimizer == "adam"  # not taken yet
    assert p.lr_slider.value == pytest.approx(0.005) and s.lr == pytest.approx(0.005)
    assert p.optimizer_dropdown.value == "momentum" and s.optimizer == "momentum"


def test_optimizer_dropdown_switches_to_adam(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    p.optimizer_dropdown.value = "adam"
    assert p.stepper.optimizer == "adam"
    assert shown(p.status)
    p.step_button.click()
    # Adam's first step is lr * g / (|g| + eps): lr against the sign of each gradient.
    x, y = (float(v) for v in p.stepper.params)
    assert x == pytest.approx(5.0 - 0.1, abs=1e-5) and y == pytest.approx(2.0 - 0.1, abs=1e-5)


def test_reset_goes_back_to_the_start(bowl_panel: StepperPanel) -> None:
    p = bowl_panel
    start_png = p.loss_image.value
    p.steps_input.value = 30
    p.run_button.click()
    finish(p)
    p.reset_button.click()
    assert p.steps_label.value == "0"
    assert shown(p.params_label) == "x = 5, y = 2"
    assert p.progress.value == 0
    assert p.loss_image.value == start_png  # the same picture as before any step


def test_apply_writes_the_parameters_into_the_namespace() -> None:
    ns: dict[str, Any] = {"x": 5.0, "y": 2.0}
    p = make_panel(lr=0.1, names=("x", "y"), namespace=ns)
    p.step_button.click()
    p.apply_button.click()
    assert float(ns["x"]) == pytest.approx(4.0) and float(ns["y"]) == pytest.approx(1.8)
    assert "x = 4" in shown(p.status) and "y = 1.8" in shown(p.status)


def _check_at_least_one(x: np.ndarray) -> np.ndarray:
    if x < 1.0:
        raise ValueError("x went below 1")
    return np.asarray(x, dtype=x.dtype)


@jax.custom_jvp
def at_least_one(x: jax.Array) -> jax.Array:
    """The identity, checked on the host: raises inside compiled code once x drops below 1."""
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return jax.pure_callback(_check_at_least_one, shape, x, vmap_method="sequential")


@at_least_one.defjvp
def _at_least_one_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    return at_least_one(primals[0]), tangents[0]


def guarded_squares(x: jax.Array) -> jax.Array:
    # Three parameters: no landscape is evaluated, only the descent itself meets the check.
    return at_least_one(jnp.min(x)) ** 2 + jnp.sum(x**2)


def test_errors_in_callbacks_show_in_the_status_line() -> None:
    # min(x) = x[0] shrinks by 0.96 per step (gradient 4 x[0]): 1.02 -> 0.979, below 1 at once.
    p = make_panel(guarded_squares, (jnp.array([1.02, 2.0, 3.0]),), 0, lr=0.01)
    p.steps_input.value = 0
    p.run_button.click()
    assert "⚠" in shown(p.status) and "at least 1" in shown(p.status)
    assert not p.running
    p.step_button.click()
    assert "⚠" in shown(p.status) and "x went below 1" in shown(p.status)
    assert p.stepper.steps == 0 and p.steps_label.value == "0"
    assert not p.step_button.disabled and not p.run_button.disabled
    p.lr_slider.value = 0.001  # still usable: a smaller step stays above 1
    p.step_button.click()
    assert p.steps_label.value == "1" and "⚠" not in shown(p.status)
    x0 = float(p.stepper.params[0])
    assert x0 == pytest.approx(1.02 * (1 - 0.001 * 4), rel=1e-6)


def test_an_error_inside_the_run_shows_in_the_status_line() -> None:
    p = make_panel(guarded_squares, (jnp.array([5.0, 6.0, 7.0]),), 0, lr=0.1)
    p.steps_input.value = 50
    p.run_button.click()
    finish(p)
    assert "⚠" in shown(p.status) and "x went below 1" in shown(p.status)
    assert p.progress.bar_style == "danger"
    assert not p.run_button.disabled and p.stop_button.disabled


def _identity_on_host(x: np.ndarray) -> np.ndarray:
    return np.asarray(x)


def no_vmap(x: jax.Array) -> jax.Array:
    """A function jax.grad can step but jax.vmap cannot batch (a host callback without a vmap rule)."""

    @jax.custom_jvp
    def host(v: jax.Array) -> jax.Array:
        return jax.pure_callback(_identity_on_host, jax.ShapeDtypeStruct(v.shape, v.dtype), v)

    host.defjvp(lambda p, t: (host(p[0]), t[0]))
    return host(x) ** 2


def test_a_function_that_cannot_be_gridded_still_steps_without_a_landscape() -> None:
    p = make_panel(no_vmap, (3.0,), 0, lr=0.1)
    assert p.landscape_kind is None and p.landscape_image.layout.display == "none"
    assert "no landscape plot" in shown(p.status)
    p.step_button.click()
    assert shown(p.params_label) == "x = 2.4" and "⚠" not in shown(p.status)
    assert_image(p.loss_image)


def test_one_parameter_shows_the_curve() -> None:
    p = make_panel(lambda w: (w - 2.0) ** 2 + jnp.sin(w), (0.5,), 0, lr=0.1)
    assert p.landscape_kind == "curve"
    before = p.landscape_image.value
    p.step_button.click()
    assert_image(p.landscape_image)
    assert p.landscape_image.value != before


def test_one_2_vector_shows_the_contour() -> None:
    p = make_panel(lambda v: jnp.sum((v - 1.0) ** 2), (jnp.array([3.0, -2.0]),), 0, lr=0.1)
    assert p.landscape_kind == "contour" and p.landscape_image.layout.display != "none"
    assert_image(p.landscape_image)
    p.step_button.click()
    assert shown(p.params_label) == "v = [2.6, -1.4]"  # v - 0.1 * 2 (v - 1)


def test_more_than_two_parameters_draw_a_loss_plane() -> None:
    p = make_panel(lambda x, y, z: x**2 + y**2 + z**2, (1.0, 2.0, 3.0), (0, 1, 2), lr=0.1)
    assert p.plane.wait(RUN_TIMEOUT)  # the first plane is taken in the background
    assert p.landscape_kind == "plane" and p.landscape_image.layout.display != "none"
    p.step_button.click()
    assert shown(p.params_label) == "x = 0.8, y = 1.6, z = 2.4"
    assert_image(p.loss_image)
    assert p.plane.wait(RUN_TIMEOUT) and p.plane.slice.step == 1
    assert_image(p.landscape_image)


def test_a_diverging_learning_rate_is_marked() -> None:
    p = make_panel(lambda x: x**2, (3.0,), 0, lr=1.5)  # x <- -2x: |x| doubles every step
    p.steps_input.value = 500
    p.run_button.click()
    finish(p)
    assert p.stepper.diverged
    # float32 overflows after 63 doublings of 3 (squared: 9 * 4^63 > 3.4e38): the loss is the cause.
    assert "✗ diverged at step 63: the loss became inf" in shown(p.mark)
    assert "the run ended after 62 of 500 steps" in shown(p.status)
    assert "diverged" not in shown(p.status)  # the mark says why; the status line says how far
    assert p.progress.bar_style == "danger"
    assert_image(p.loss_image)
    assert_image(p.landscape_image)


def test_big_arrays_are_abbreviated() -> None:
    p = make_panel(lambda x: jnp.sum(x**2), (jnp.arange(1000.0),), 0, lr=0.1)
    text = shown(p.params_label)
    assert text.startswith("x = [0, 1, ..., 998, 999]") and "(1000,)" in text
    assert len(text) < 60


def test_panel_from_a_real_shell(ip: Any) -> None:
    ip.run_cell("x = 5.0\ny = 2.0")
    result = ip.cell("jgrad", "argnums=0,1", "def f(x, y):\n    return x**2 + (y - 1.0) ** 2\n")
    p = result.stepper.widget.panel
    assert shown(p.params_label) == "x = 5, y = 2"
    p.step_button.click()
    assert p.steps_label.value == "1"
    assert shown(p.params_label) == "x = 4, y = 1.8"
    p.apply_button.click()
    assert float(ip.ns["x"]) == pytest.approx(4.0) and float(ip.ns["y"]) == pytest.approx(1.8)


def test_an_optax_transformation_is_listed_and_can_be_picked_again() -> None:
    fixed = optax.sgd(0.05)
    p = make_panel(lr=0.1, optimizer=fixed)
    label = p.optimizer_dropdown.value
    assert label not in Stepper.optimizer_names and label in p.optimizer_dropdown.options
    assert p.lr_slider.disabled  # the transformation carries its own learning rate
    p.step_button.click()
    x, _ = (float(v) for v in p.stepper.params)
    assert x == pytest.approx(5.0 - 0.05 * 10.0, rel=1e-5)
    p.optimizer_dropdown.value = "adam"
    assert p.stepper.optimizer == "adam" and not p.lr_slider.disabled
    p.optimizer_dropdown.value = label
    assert p.stepper.optimizer is fixed and p.lr_slider.disabled


def test_close_stops_the_run_and_closes_the_widgets() -> None:
    p = make_panel(lambda x: jnp.sum(jnp.sin(x) ** 2), (jnp.linspace(0.0, 3.0, 20_000),), 0, lr=0.01)
    p.steps_input.value = 10**6
    p.run_button.click()
    assert p.running
    p.close()
    assert not p.running and p.stepper.steps < 10**6
    assert p.widget.comm is None and p.step_button.comm is None and p.loss_image.comm is None


def test_many_parameters_are_abbreviated() -> None:
    params = {f"w{i:02d}": jnp.float32(i) for i in range(20)}
    p = make_panel(lambda d: sum(v**2 for v in d.values()), (params,), 0, lr=0.1)
    text = shown(p.params_label)
    assert text.startswith("d['w00'] = 0, d['w01'] = 1,") and text.endswith("… (14 more)")


def nan_gradient_below(x: jax.Array) -> jax.Array:
    """(x - 2)^2, plus a branch that jnp.where leaves out of the value but not out of the gradient.

    Below 2.5 the value stays finite, but the unused branch's derivative 1 / (2 sqrt(x - 2.5))
    is NaN there, and 0 * NaN is NaN: descending from 4 towards 2 crosses 2.5 within a few steps.
    """
    return (x - 2.0) ** 2 + jnp.where(x < 2.5, 0.0, jnp.sqrt(x - 2.5))


def test_the_diverged_mark_names_the_gradient_when_the_gradient_is_the_cause() -> None:
    p = make_panel(nan_gradient_below, (4.0,), 0, lr=0.1)
    p.steps_input.value = 100
    p.run_button.click()
    finish(p)
    mark = shown(p.mark)
    assert "the gradient became nan" in mark and "the loss is not finite" not in mark
    assert math.isfinite(float(p.loss_label.value))  # the loss itself never left the finite
    # A change of learning rate says so on the status line; the mark keeps the cause.
    p.lr_slider.value = 0.01
    assert "learning rate" in shown(p.status) and "the gradient became nan" in shown(p.mark)
    p.reset_button.click()
    assert shown(p.mark) == ""


def test_a_step_that_diverges_is_explained_once() -> None:
    p = make_panel(lambda x: x**2, (1e19,), 0, lr=1.5)  # x <- -2x: the loss goes from 1e38 to 4e38, past float32
    p.step_button.click()
    assert p.stepper.diverged and p.stepper.steps == 0
    assert "✗ diverged" in shown(p.mark)
    assert shown(p.status) == "the step was not taken"


def test_every_part_carries_a_css_class() -> None:
    p = make_panel(lr=0.1)
    assert "jgm-panel" in p.widget._dom_classes
    for widget, name in [
        (p.steps_label, "jgm-step"),
        (p.loss_label, "jgm-loss"),
        (p.grad_label, "jgm-grad-norm"),
        (p.params_label, "jgm-params"),
        (p.mark, "jgm-mark"),
        (p.status, "jgm-status"),
        (p.progress, "jgm-progress"),
        (p.loss_image, "jgm-loss-plot"),
        (p.landscape_image, "jgm-landscape-plot"),
        (p.step_button, "jgm-step-button"),
        (p.run_button, "jgm-run-button"),
        (p.stop_button, "jgm-stop-button"),
    ]:
        assert name in widget._dom_classes, name


def test_long_parameters_wrap_instead_of_being_cut() -> None:
    p = make_panel(lambda w: jnp.sum(w**2), (jnp.linspace(-2.84, 2.84, 10_000),), 0, lr=0.1)
    assert isinstance(p.params_label, widgets.HTML)
    assert p.params_label.layout.max_width is None
    assert shown(p.params_label) == "w = [-2.84, -2.839, ..., 2.839, 2.84] (10000,)"  # the shape is there
    assert "overflow-wrap" in p.params_label.value  # and long text breaks onto a new line


def test_the_first_loss_picture_says_what_to_do() -> None:
    from jaxgrad_magic import plots

    p = make_panel(lr=0.1)
    want = plots.LossCurve().render([0], [26.0], note=panel_module.FIRST_NOTE)
    assert np.array_equal(png_pixels(p.loss_image.value, "RGB"), png_pixels(want, "RGB"))
    p.step_button.click()
    without = plots.LossCurve().render([0, 1], [26.0, 16.64])
    assert np.array_equal(png_pixels(p.loss_image.value, "RGB"), png_pixels(without, "RGB"))


def test_short_runs_are_done_in_the_click() -> None:
    p = make_panel(lr=0.1)
    p.stepper.run(1)  # compiled here, so the first run's time is the run's, not the compiler's
    p.stepper.reset()
    p.steps_input.value = 10
    threads: list[str] = []  # where each run ended: the stepper tells its observers from there
    p.stepper.observe(lambda what: threads.append(threading.current_thread().name) if what == "run" else None)
    p.run_button.click()  # the first run: its speed is not known, so it goes on the thread
    finish(p)
    assert threads == ["jaxgrad-descent-run"]
    p.steps_input.value = 20
    p.run_button.click()  # known to take far less than INLINE_SECONDS: done before click() returns
    assert threads[1:] == [threading.current_thread().name] and not p.running
    assert p.stepper.steps == 30 and p.steps_label.value == "30"
    x, y = (float(v) for v in p.stepper.params)
    assert x == pytest.approx(5.0 * 0.8**30, rel=1e-5) and y == pytest.approx(1.0 + 0.8**30, rel=1e-5)
    assert p.progress.value == 20 and p.progress.max == 20 and p.progress.bar_style == "success"
    assert p.progress_label.value == "20 / 20"
    assert not p.run_button.disabled and p.stop_button.disabled
    assert_image(p.loss_image)
    p.optimizer_dropdown.value = "adam"  # another optimizer: its speed is unknown again
    p.run_button.click()
    finish(p)
    assert threads[2:] == ["jaxgrad-descent-run"]


def test_close_releases_every_widget_and_leaves_the_stepper_usable() -> None:
    stepper = Stepper(lambda x: jnp.sum(jnp.sin(x) ** 2), (jnp.linspace(0.0, 3.0, 20_000),), 0, lr=0.01)
    before = len(widget_module._instances)
    p = StepperPanel(stepper)
    assert len(widget_module._instances) > before + 20  # buttons, labels, images, and their layouts and styles
    p.steps_input.value = 10**6
    p.run_button.click()
    assert p.running
    p.close()
    assert not p.running and not stepper.running
    assert len(widget_module._instances) == before
    done = stepper.steps
    assert 0 < done < 10**6
    stepper.run(5)
    assert stepper.steps == done + 5
    p.close()  # closing again is harmless
    assert len(widget_module._instances) == before


def test_a_closed_panel_in_a_landscape_leaves_nothing_behind() -> None:
    before = len(widget_module._instances)
    p = make_panel(lr=0.1)
    p.step_button.click()
    p.close()
    assert len(widget_module._instances) == before
    assert p.stepper.step().step == 2  # the stepper goes on


def test_the_panel_follows_steps_taken_from_code(bowl_panel: StepperPanel) -> None:
    p, s = bowl_panel, bowl_panel.stepper
    s.step()  # a cell calling the API, not the panel's button
    assert p.steps_label.value == "1"
    assert shown(p.params_label) == "x = 4, y = 1.8"  # (5, 2) - 0.1 * (10, 2)
    s.run(9)
    assert p.steps_label.value == "10"
    s.reset()
    assert p.steps_label.value == "0" and shown(p.params_label) == "x = 5, y = 2"


def test_a_closed_panel_no_longer_follows_the_stepper(bowl_panel: StepperPanel) -> None:
    p, s = bowl_panel, bowl_panel.stepper
    p.close()
    s.step()
    assert p.steps_label.value == "0"  # closed: it stopped observing


def test_stepper_observers_hear_every_change_until_stopped() -> None:
    s = make_panel(lr=0.1).stepper
    heard: list[str] = []
    stop = s.observe(heard.append)
    s.step()
    s.lr = 0.05
    s.optimizer = "momentum"
    s.run(3)
    s.reset()
    stop()
    s.step()
    assert heard == ["step", "lr", "optimizer", "run", "reset"]


def test_the_gif_button_offers_the_descent_for_download(bowl_panel: StepperPanel) -> None:
    import base64
    import io
    import re

    from PIL import Image

    p = bowl_panel
    p.gif_button.click()  # step 0: nothing to animate yet, said on the status line
    assert p.gif_link.value == "" and "⚠" in p.status.value
    p.stepper.run(40)
    p.gif_button.click()
    link = re.search(r"<a download='(?P<name>[^']+)' href='data:image/gif;base64,(?P<data>[^']+)'>", p.gif_link.value)
    assert link is not None and link["name"] == "bowl_descent.gif"
    gif = Image.open(io.BytesIO(base64.b64decode(link["data"])))
    assert gif.format == "GIF" and gif.n_frames > 2
    assert f"{gif.n_frames} frames to step 40" in p.gif_link.value
    assert "ready to download" in p.status.value
