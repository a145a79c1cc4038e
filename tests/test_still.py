"""The panel's still picture: what renderers without a kernel show, kept up to date by display id.

A real shell with the extension loaded displays real panels; IPython's own capturing display
publisher records what would go to the frontend (display data and display updates).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import Shell
from IPython.core.displaypub import CapturingDisplayPublisher
from PIL import Image

from jaxgrad_magic import panel as panel_module
from jaxgrad_magic import snapshot
from jaxgrad_magic.stepper import Stepper

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1) ** 2


@pytest.fixture
def sent(ip: Shell) -> Iterator[CapturingDisplayPublisher]:
    """The shell's display publisher, capturing from now on (IPython's own, as in ``%%capture``)."""
    shell = ip.shell
    original = shell.display_pub
    shell.display_pub = capture = CapturingDisplayPublisher()
    ip.ns["bowl"], ip.ns["Stepper"] = bowl, Stepper
    try:
        yield capture
    finally:
        shell.display_pub = original


# A stepper whose panel has measured its first λmax (in the background) before it is shown.
SETUP = """\
s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
from IPython.display import display
assert s.widget.panel.stability.wait(30)
"""


def published(capture: CapturingDisplayPublisher) -> list[dict[str, Any]]:
    """Widget outputs published so far: ``{"data", "update", "display_id"}`` each."""
    return [
        {"data": o["data"], "update": o["update"], "display_id": (o["transient"] or {}).get("display_id")}
        for o in capture.outputs
        if WIDGET_VIEW in o["data"]
    ]


def panels(capture: CapturingDisplayPublisher) -> list[dict[str, Any]]:
    """The still pictures published so far (first shown, then updated)."""
    return [m for m in published(capture) if "image/png" in m["data"]]


def picture(data: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    image.load()
    return image


def test_a_displayed_panel_carries_its_picture_beside_its_view(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    ip.run_cell(SETUP)
    ip.run_cell("display(s.widget)")
    live, shown = published(sent)
    # The panel itself, with no text where no widget is drawn ...
    assert live["data"] == {WIDGET_VIEW: live["data"][WIDGET_VIEW], "text/plain": ""}
    assert live["data"][WIDGET_VIEW]["model_id"] == ip.ns["s"].widget.model_id
    # ... and its still picture, in an output of its own, over a hidden empty widget.
    data = shown["data"]
    assert set(data) == {WIDGET_VIEW, "image/png", "text/html", "text/plain"}
    holder = ip.ns["s"].widget.panel._still_holder
    assert data[WIDGET_VIEW]["model_id"] == holder.model_id and holder.layout.display == "none"
    assert not holder.children
    assert shown["display_id"] and not shown["update"]
    assert data["text/plain"] == "Gradient descent on bowl (sgd): step 0, loss 26"
    image = picture(data)
    assert image.width > 600 and image.height > 250  # the readout above the two plots
    assert f"base64,{data['image/png']}" in data["text/html"]


def test_the_picture_follows_runs_and_resets_but_not_each_step(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    ip.run_cell(SETUP)
    ip.run_cell("display(s.widget)")
    (shown,) = panels(sent)
    ip.run_cell("s.step()\ns.step()")
    assert len(panels(sent)) == 1  # steps are frames: the picture waits for a run or a reset
    ip.run_cell("for _ in range(20):\n    s.run(1)")
    updates = [m for m in panels(sent) if m["update"]]
    assert len(updates) == 1  # twenty runs in one cell: one picture, when the cell ends
    assert updates[0]["display_id"] == shown["display_id"]
    loss = (5.0**2 + 1.0**2) * 0.8 ** (2 * 22)  # x and y - 1 shrink by 1 - 2 lr each step
    text = updates[0]["data"]["text/plain"]
    assert text.startswith("Gradient descent on bowl (sgd): step 22, loss ")
    assert float(text.rsplit(" ", 1)[1]) == pytest.approx(loss, rel=1e-4)
    ip.run_cell("s.reset()")
    last = panels(sent)[-1]
    assert last["update"] and last["data"]["text/plain"].endswith("step 0, loss 26")


def test_a_run_from_the_button_is_published_once_it_ends(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    ip.run_cell(SETUP)
    ip.run_cell("display(s.widget)")
    p = ip.ns["s"].widget.panel
    p.steps_input.value = 30
    p.run_button.click()  # no cell is running: the picture goes after PUBLISH_DELAY
    assert p.wait(timeout=60)
    deadline = time.monotonic() + panel_module.PUBLISH_DELAY + 10
    while not any(m["update"] for m in panels(sent)) and time.monotonic() < deadline:
        time.sleep(0.05)
    updates = [m for m in panels(sent) if m["update"]]
    assert len(updates) == 1 and "step 30," in updates[0]["data"]["text/plain"]


def test_a_closed_panel_is_no_longer_published(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    ip.run_cell(SETUP)
    ip.run_cell("display(s.widget)")
    ip.run_cell("s.close_widget()\ns.run(5)")
    assert [m["update"] for m in panels(sent)] == [False]


def test_the_first_measurement_brings_the_picture_up_to_date(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    # λmax is measured in the background; the picture the cell left says "measuring λmax…", so
    # the measurement publishes it again when it shows, without a run or a reset.
    ip.run_cell("s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)\nfrom IPython.display import display\n")
    s = ip.ns["s"]
    gate, real = threading.Event(), s.sharpness

    def held(*args: Any, **kwargs: Any) -> float:
        assert gate.wait(30)
        return real(*args, **kwargs)

    s.sharpness = held
    ip.run_cell("display(s.widget)")
    (shown,) = panels(sent)
    gate.set()
    assert s.widget.panel.stability.wait(30)
    deadline = time.monotonic() + 10
    while len(panels(sent)) == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    _, update = panels(sent)
    assert update["update"] and update["display_id"] == shown["display_id"]
    assert update["data"]["text/plain"].endswith("step 0, loss 26")  # the same state, now with λmax


def test_the_first_loss_plane_joins_the_picture_once_taken(ip: Shell, sent: CapturingDisplayPublisher) -> None:
    # Three parameters: the panel draws a loss plane, taken in the background after it shows.
    ip.run_cell(
        "import jax.numpy as jnp\nfrom IPython.display import display\n"
        "t = Stepper(lambda x: jnp.sum((x - 1.0) ** 2), (jnp.array([3.0, 2.0, 0.5]),), lr=0.1)"
    )
    ip.run_cell("display(t.widget)")
    first = panels(sent)[0]
    panel = ip.ns["t"].widget.panel
    assert panel.plane.wait(60) and panel.stability.wait(60)
    deadline = time.monotonic() + panel_module.PUBLISH_DELAY + 10
    while not any(m["update"] for m in panels(sent)) and time.monotonic() < deadline:
        time.sleep(0.05)
    last = panels(sent)[-1]
    assert last["update"] and last["display_id"] == first["display_id"]
    assert picture(last["data"]).width > picture(first["data"]).width  # the plane beside the loss curve now


def test_compose_sets_the_readout_above_the_pictures() -> None:
    red = io.BytesIO()
    Image.new("RGB", (120, 80), (255, 0, 0)).save(red, format="PNG")
    blue = io.BytesIO()
    Image.new("P", (60, 100), 0).save(blue, format="PNG")  # palette index 0 of a default palette: black
    png = snapshot.compose("Gradient descent on f over x", ["step 3 · ‖∇f‖ 0.1"], [red.getvalue(), blue.getvalue()])
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(image)
    assert image.height >= 100 + 2 * snapshot.PAD and image.width >= 120 + 60 + 3 * snapshot.PAD
    top = image.height - 100  # the pictures hang from under the text, side by side
    assert tuple(pixels[top + 10, snapshot.PAD + 10]) == (255, 0, 0)
    assert tuple(pixels[top + 10, snapshot.PAD + 120 + snapshot.PAD + 10]) == (0, 0, 0)
    text = pixels[: top - 2]
    assert (text < 128).any() and (text == 255).mean() > 0.5  # dark text on white


def test_a_stepper_without_a_display_is_never_published() -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    p = s.widget.panel
    s.run(5)
    assert not p._publish_due and p not in panel_module._PENDING
    s.close_widget()


def test_the_picture_says_where_the_rate_stands_against_the_curvature(monkeypatch: pytest.MonkeyPatch) -> None:
    # bowl's Hessian is 2I: λmax = 2, so sgd is stable below 2/λmax = 1. The lines the still
    # picture is composed from are watched on their way to the real compose.
    composed: list[list[str]] = []
    real = snapshot.compose

    def watch(heading: str, lines: Any, pictures: Any) -> bytes:
        composed.append(list(lines))
        return real(heading, lines, pictures)

    monkeypatch.setattr(snapshot, "compose", watch)
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    panel = s.widget.panel
    try:
        assert panel.stability.wait(30)  # the first measurement, taken in the background
        quiet = picture(panel.still())
        assert "stable below 2/λmax = 1" in composed[-1]
        s.lr = 1.5
        assert panel.stability.wait(30)
        warned = picture(panel.still())
        assert "⚠ lr 1.5 > 2/λmax = 1: unstable along the sharpest direction" in composed[-1]
        assert warned.size == quiet.size  # the same layout, the line changed
    finally:
        panel.close()
