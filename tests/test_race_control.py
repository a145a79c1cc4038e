"""The panel's Race control with real widgets: checkboxes, the steps field and a Race click."""

from __future__ import annotations

import html
import re
import threading
from typing import Any

import ipywidgets as widgets
import jax
import numpy as np
import pytest
from conftest import png_pixels

from jaxgrad_magic import race_control
from jaxgrad_magic.panel import PanelWidget, StepperPanel
from jaxgrad_magic.racing import DEFAULT_LRS, race
from jaxgrad_magic.stepper import Stepper

TIMEOUT = 120.0


def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
    return x**2 + (y - 1.0) ** 2


def make_panel() -> StepperPanel:
    box = Stepper(bowl, (5.0, 2.0), (0, 1), lr=0.1).widget
    assert isinstance(box, PanelWidget)
    return box.panel


def shown(widget: widgets.Widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def descendants(widget: widgets.Widget) -> list[widgets.Widget]:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(descendants(child))
    return found


def test_the_panel_carries_a_race_control_under_it() -> None:
    p = make_panel()
    control = p.race_control
    assert control.widget in descendants(p.widget)
    assert set(race_control.CHOICES) <= set(DEFAULT_LRS)
    assert control.chosen == ("sgd", "momentum", "adam")
    assert control.steps_input.value == 500
    assert control.image.layout.display == "none"  # nothing to show before a race
    assert "jgm-race-button" in control.race_button._dom_classes
    p.close()


def test_a_race_click_races_the_checked_optimizers_from_the_current_point() -> None:
    p = make_panel()
    p.stepper.run(3)  # the race starts where the descent is now
    control = p.race_control
    control.checkboxes["momentum"].value = False
    control.checkboxes["lion"].value = True
    control.steps_input.value = 80
    control.race_button.click()
    assert control.wait(TIMEOUT), "the race did not finish"
    r = control.result
    assert r is not None and r.optimizers == ("sgd", "adam", "lion") and r.steps == 80
    expected = race(bowl, p.stepper.point, ("sgd", "adam", "lion"), None, 80, (0, 1))
    for key, run in expected.runs.items():
        np.testing.assert_array_equal(r.runs[key].losses, run.losses)
    assert png_pixels(control.image.value).ndim >= 2 and control.image.layout.display != "none"
    assert shown(control.status) == r.summary
    assert not control.race_button.disabled
    assert p.stepper.steps == 3  # the stepper was only read
    p.close()


def test_a_race_that_cannot_run_says_why_on_its_status_line() -> None:
    p = make_panel()
    control = p.race_control
    for box in control.checkboxes.values():
        box.value = False
    control.race_button.click()
    assert control.wait(TIMEOUT)
    assert "Check at least one optimizer" in shown(control.status)
    control.checkboxes["sgd"].value = True
    control.steps_input.value = 0
    control.race_button.click()
    assert control.wait(TIMEOUT)
    assert "steps to be a whole number" in shown(control.status)
    assert control.result is None and not control.race_button.disabled
    p.close()


def test_closing_the_panel_lets_a_race_finish_unseen(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        gate.wait(TIMEOUT)  # the race is still going when the panel closes
        return race(*args, **kwargs)

    monkeypatch.setattr(race_control, "race", held)
    p = make_panel()
    control = p.race_control
    control.steps_input.value = 40
    control.race_button.click()
    p.close(timeout=0.1)
    assert control.running
    gate.set()
    assert control.wait(TIMEOUT)
    assert control.result is None and control.image.layout.display == "none"
