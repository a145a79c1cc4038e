"""The panel's stability meter, driven by real widgets: the slider, the dropdown and the buttons.

The expected bounds are closed forms: ``bowl`` has the Hessian diag(10, 2), so plain gradient
descent is stable below 2/10 = 0.2, heavy-ball momentum (β = 0.9) below 3.8/10 = 0.38.
"""

from __future__ import annotations

import html
import re
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad_magic.panel import StepperPanel
from jaxgrad_magic.stability_view import MUTED_STYLE, WARNING_STYLE
from jaxgrad_magic.stepper import Stepper

TIMEOUT = 120.0


def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
    return 5.0 * x**2 + (y - 1.0) ** 2


def make_panel(fn: Any = bowl, point: Any = (1.0, 2.0), argnums: Any = (0, 1), **options: Any) -> StepperPanel:
    """A panel, once its first measurement (taken in the background) shows."""
    panel = Stepper(fn, point, argnums, **options).widget.panel
    assert panel.stability.wait(timeout=TIMEOUT), "the first measurement did not finish"
    return panel


def shown(widget: Any) -> str:
    """What an HTML widget reads as on the page: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def settle(panel: StepperPanel) -> None:
    assert panel.wait(timeout=TIMEOUT), "the run did not finish"
    assert panel.stability.wait(timeout=TIMEOUT), "the measurement did not finish"


@pytest.fixture
def panel() -> Any:
    p = make_panel(lr=0.1)
    yield p
    p.close()


def test_the_panel_is_built_before_lambda_max_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first measurement compiles its program (about half a second): it is taken in the
    # background, held here until the panel is checked, so the panel shows without waiting for it.
    s = Stepper(bowl, (1.0, 2.0), (0, 1), lr=0.1)
    gate, real = threading.Event(), s.sharpness

    def held(*args: Any, **kwargs: Any) -> float:
        assert gate.wait(TIMEOUT)
        return real(*args, **kwargs)

    monkeypatch.setattr(s, "sharpness", held)
    p = s.widget.panel
    try:
        assert shown(p.stability.line) == "measuring λmax…" and p.stability.lambda_max is None
        assert shown(p.stability.readout) == "–"
        gate.set()
        assert p.stability.wait(timeout=TIMEOUT)
        assert shown(p.stability.line) == "stable below 2/λmax = 0.2" and p.stability.measured_at == 0
    finally:
        gate.set()
        p.close()


def test_the_mark_sits_under_the_slider_and_reads_the_bound(panel: StepperPanel) -> None:
    controls = panel.widget.children[1].children[0].children
    assert controls[controls.index(panel.lr_slider) + 1] is panel.stability.line
    assert "jgm-stability" in panel.stability.line._dom_classes
    assert shown(panel.stability.line) == "stable below 2/λmax = 0.2"
    assert MUTED_STYLE in panel.stability.line.value and not panel.stability.exceeded
    # The readout: λmax beside 2/lr.
    assert shown(panel.stability.readout) == "10 · 2/lr = 20"


def test_dragging_the_rate_past_the_bound_turns_the_mark_to_a_warning(panel: StepperPanel) -> None:
    panel.lr_slider.value = 0.5
    lr = panel.stepper.lr
    assert lr > 0.2
    assert shown(panel.stability.line) == f"⚠ lr {lr:g} > 2/λmax = 0.2: unstable along the sharpest direction"
    assert WARNING_STYLE in panel.stability.line.value and panel.stability.exceeded
    assert WARNING_STYLE in panel.stability.readout.value
    assert shown(panel.stability.readout) == f"10 · 2/lr = {2 / lr:.4g}"
    panel.lr_slider.value = 0.1
    assert not panel.stability.exceeded and MUTED_STYLE in panel.stability.line.value


def test_the_bound_follows_the_optimizer(panel: StepperPanel) -> None:
    panel.optimizer_dropdown.value = "momentum"
    assert shown(panel.stability.line) == "stable below (2+2β)/λmax = 0.38 (β = 0.9)"
    panel.lr_slider.value = 0.3  # past 2/λmax, still below momentum's bound
    assert not panel.stability.exceeded
    panel.lr_slider.value = 0.5
    assert panel.stability.exceeded and "> (2+2β)/λmax = 0.38" in shown(panel.stability.line)
    panel.optimizer_dropdown.value = "adam"
    assert shown(panel.stability.line).endswith("> 2/λmax = 0.2 (a guide for adam, not a bound)")
    panel.lr_slider.value = 0.01
    assert shown(panel.stability.line) == "2/λmax = 0.2: a guide for adam, not a bound"


def test_a_step_measures_where_the_descent_now_stands() -> None:
    def valley(x: jax.Array, y: jax.Array) -> jax.Array:
        return (1.0 - x) ** 2 + 4.0 * (y - x**2) ** 2

    p = make_panel(valley, (-1.0, 1.5), lr=0.02)
    try:
        p.steps_input.value = 40
        p.run_button.click()
        settle(p)
        assert p.stability.measured_at == p.stepper.steps == 40
        x, y = (float(v) for v in p.stepper.params)
        dense = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: valley(v[0], v[1]))(jnp.array([x, y]))))[-1]
        assert p.stability.lambda_max == pytest.approx(dense, rel=1e-3)
        assert shown(p.stability.readout).startswith(f"{dense:.4g} · 2/lr")
        p.step_button.click()
        settle(p)
        assert p.stability.measured_at == 41
        p.reset_button.click()
        settle(p)
        assert p.stability.measured_at == 0
    finally:
        p.close()


def test_a_diverged_run_cites_the_bound_in_its_mark(panel: StepperPanel) -> None:
    panel.lr_slider.value = 0.5
    lr = panel.stepper.lr
    panel.steps_input.value = 1000
    panel.run_button.click()
    settle(panel)
    assert panel.stepper.diverged
    assert f"lr {lr:g} > 2/λmax = 0.2 at the start" in shown(panel.mark)


@jax.custom_vjp
def reverse_only(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


reverse_only.defvjp(lambda x: (reverse_only(x), x), lambda x, g: (2 * g * x,))


def test_without_forward_mode_the_mark_says_why_and_the_panel_works() -> None:
    p = make_panel(reverse_only, (jnp.array([1.0, 2.0]),), 0)
    try:
        assert shown(p.stability.line).startswith("λmax cannot be measured here (JaxGradUsageError: reverse_only")
        assert p.stability.lambda_max is None and shown(p.stability.readout) == "–"
        p.step_button.click()
        settle(p)
        assert p.stepper.steps == 1
    finally:
        p.close()


def test_a_fixed_transformation_carries_its_own_rate() -> None:
    p = make_panel(optimizer=optax.sgd(0.05))
    try:
        assert shown(p.stability.line) == "λmax = 10 (the optax transformation carries its own learning rate)"
    finally:
        p.close()


def test_closing_the_panel_stops_the_meter() -> None:
    p = make_panel(lr=0.1)
    p.step_button.click()
    p.close()
    assert p.stability.wait(timeout=TIMEOUT)
    assert p.stability.line.comm is None and p.stability.readout.comm is None


def test_a_start_where_the_loss_is_not_finite_says_so() -> None:
    p = make_panel(lambda x: jnp.sum(jnp.sqrt(x)), (jnp.array([-1.0, 2.0]),), 0)
    try:
        assert shown(p.stability.line) == "λmax = nan: the loss or its curvature is not finite here"
        assert not p.stability.exceeded
    finally:
        p.close()
