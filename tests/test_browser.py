"""demo.ipynb in a real JupyterLab 4 and Notebook 7, driven in headless Chromium the way a person would use it.

Every test runs once per frontend (the ``server`` fixture's parameters, ``[lab]`` and
``[notebook]`` in the test ids). Each starts its own server on a free loopback port (no
token, a temporary root, settings and runtime folder), opens a copy of ``demo.ipynb``, runs
all cells from the Run menu and then reads and clicks what is on the page: the rendered
results, and the descent panel's buttons, readout, progress bar and plots, in the light and
the dark theme. Screenshots land in ``test-artifacts/``; with ``JGM_PICTURES=1`` the
JupyterLab run also writes the README's pictures into ``docs/`` (``docs/make_pictures.sh``).

Needs Chromium (``/usr/bin/chromium``, or ``JGM_CHROMIUM``), ``playwright``, ``jupyterlab``
and ``notebook`` (the ``browser`` extra). Without them the tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEMO,
    FRONTENDS,
    STDERR_MIME,
    VIEWPORT,
    LabServer,
    NotebookPage,
    lab_server,
    missing_reason,
    notebook_cells,
    numbers,
    wait_until,
)

from jaxgrad_magic.panel import PUBLISH_DELAY

try:
    from playwright.sync_api import expect
except ImportError:  # the `server` fixture says so: a skip, or a failure under CI=true
    expect: Any = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator

pytestmark = pytest.mark.browser

WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
# A display-producing magic: the first line is the magic itself, not `name = %magic ...`.
MAGIC_CELL = re.compile(r"^\s*%%?(jgrad|jac|hess|jvp|vjp)\b")
LONG_RUN = 1_000_000_000  # far more steps than any timeout here allows: only Stop can end it
BUSY_RUN = 1_000_000
# 10^6 entries: one step costs milliseconds, so a run of BUSY_RUN steps keeps the kernel busy for hours.
HEAVY_CELLS = (
    "w = jnp.linspace(-3.0, 3.0, 1_000_000)",
    "%%jgrad\ndef heavy(w):\n    return jnp.sum(jnp.sin(w) ** 2 + 0.1 * w ** 2)",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module", params=list(FRONTENDS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A JupyterLab or a Notebook 7 server: every test that uses the page runs in both."""
    frontend = FRONTENDS[request.param]
    reason = missing_reason(frontend)
    if reason is not None:
        if _in_ci():
            pytest.fail(f"browser tests cannot run under CI=true: {reason}")
        pytest.skip(reason)
    with lab_server(tmp_path_factory.mktemp(frontend.module), frontend) as running:
        yield running


@pytest.fixture(scope="module")
def browser(server: LabServer) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def notebook(server: LabServer, browser: Browser) -> Iterator[NotebookPage]:
    """demo.ipynb opened in the server's frontend, all cells run from the Run menu."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(30_000)
    nb = NotebookPage(page, server)
    try:
        nb.open(DEMO.name)
        nb.run_all()
        nb.wait_executed()
        yield nb
    finally:
        page.close()


@pytest.fixture(autouse=True)
def _screenshot_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test, a picture of the page as it was left (the first thing to look at on a failure)."""
    yield
    if "notebook" in request.fixturenames:
        nb: NotebookPage = request.getfixturevalue("notebook")
        # The file name carries the frontend; the rest of the test id says which test and theme.
        callspec = getattr(request.node, "callspec", None)
        others = [str(v) for k, v in (callspec.params.items() if callspec else ()) if k != "server"]
        nb.screenshot(None, f"end-of-{request.node.originalname}" + (f"[{'-'.join(others)}]" if others else ""))


# --------------------------------------------------------------------------- reading the page


def panels(nb: NotebookPage) -> Locator:
    """Every descent panel on the page (its title starts with "Gradient descent")."""
    title = nb.page.locator(":scope > .widget-html", has_text=re.compile(r"^\s*Gradient descent"))
    return nb.page.locator(".jp-OutputArea-output > .widget-vbox").filter(has=title)


def readout(panel: Locator, key: str) -> Locator:
    """The value shown next to ``key`` (``step``, ``loss``, ``‖∇f‖``, ``params``) in a panel."""
    label = panel.locator(".widget-gridbox > .widget-label", has_text=re.compile(f"^{re.escape(key)}$"))
    return label.locator("xpath=following-sibling::*[1]")


def button(panel: Locator, name: str) -> Locator:
    """A panel button by its text (its icon is a font glyph, part of the accessible name)."""
    return panel.locator("button.widget-button", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def status(panel: Locator) -> Locator:
    """The panel's status line (by its class: more HTML lines, e.g. the GIF's link, may follow it)."""
    return panel.locator(".jgm-status .widget-html-content")


def progress_text(panel: Locator) -> Locator:
    """The ``done / n`` label beside the progress bar."""
    return panel.locator(".widget-hprogress + .widget-label")


def progress_percent(panel: Locator) -> float:
    """How full the progress bar is drawn, in percent."""
    style = panel.locator(".widget-hprogress .progress-bar").get_attribute("style") or ""
    found = re.search(r"width:\s*([\d.]+)%", style)
    return float(found.group(1)) if found else 0.0


def params(panel: Locator) -> dict[str, list[float]]:
    """The parameters in the readout, e.g. ``{"x": [4.0], "y": [1.8]}`` for ``x = 4, y = 1.8``."""
    text = readout(panel, "params").inner_text()
    return {name: numbers(value) for name, value in re.findall(r"(\w+) = (\[[^\]]*\]|\S+?)(?:,\s|$)", text)}


def settled_params(panel: Locator, timeout: float = 10.0) -> dict[str, list[float]]:
    """The parameters once the readout has stopped changing: its labels update one by one."""
    deadline = time.monotonic() + timeout
    last = params(panel)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = params(panel)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the parameters readout kept changing: {last}")


def loss_image(panel: Locator) -> Locator:
    return panel.locator("img.widget-image").first


def image_digest(image: Locator) -> str | None:
    """SHA-256 of the PNG the page shows in ``image`` (a new picture, not just a new URL).

    None when the picture was replaced while it was read (its old URL is revoked then).
    """
    return image.evaluate(
        """async img => {
            try {
                const bytes = await (await fetch(img.src)).arrayBuffer();
                const digest = await crypto.subtle.digest('SHA-256', bytes);
                return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
            } catch (e) {
                return null;
            }
        }"""
    )


def loss_picture(panel: Locator) -> str:
    """The digest of the loss plot the panel shows now."""
    return wait_until(lambda: image_digest(loss_image(panel)), 10, "the loss plot to read")


def image_shown(image: Locator) -> bool:
    """True when the browser decoded the image and draws it at a non-zero size."""
    return image.evaluate("img => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0")


def set_steps(panel: Locator, n: int) -> None:
    """Type ``n`` into the panel's N box and commit it (Enter), as a person would."""
    box = panel.locator(".jgm-steps-input input")  # the panel's own N (the Race box has a steps field too)
    box.fill(str(n))
    box.press("Enter")
    box.blur()


def reset(panel: Locator) -> None:
    button(panel, "Reset").click()
    expect(readout(panel, "step")).to_have_text("0")


def wait_idle(panel: Locator, timeout: float = 60) -> None:
    """Wait until no run is going: Stop disabled, Step enabled."""
    expect(button(panel, "Stop")).to_be_disabled(timeout=timeout * 1000)
    expect(button(panel, "Step")).to_be_enabled(timeout=timeout * 1000)


def cell_index(starts: str) -> int:
    """The index of the first cell of demo.ipynb whose source starts with ``starts``."""
    for i, cell in enumerate(notebook_cells(DEMO)):
        if cell["source"].startswith(starts):
            return i
    raise AssertionError(f"demo.ipynb has no cell starting with {starts!r}")


DESCENT_CELL = "descent = %jgrad"  # the demo cell whose panel the story drives


def descent_panel(nb: NotebookPage) -> Locator:
    """The panel under the demo's descent cell."""
    found = panels(nb).and_(nb.cell(cell_index(DESCENT_CELL)).locator(".widget-vbox"))
    expect(found).to_have_count(1, timeout=60_000)
    return found


def demo_function(name: str) -> Any:
    """The demo's function ``name`` run with NumPy in float64: the reference the page is checked against."""
    for cell in notebook_cells(DEMO):
        if re.search(rf"^def {name}\(", cell["source"], re.M):
            source = "\n".join(line for line in cell["source"].splitlines() if not line.lstrip().startswith("%"))
            namespace: dict[str, Any] = {"jnp": np, "np": np}
            exec(source, namespace)
            return namespace[name]
    raise AssertionError(f"demo.ipynb defines no function {name}")


def numeric_gradient(f: Any, point: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of ``f(*point)``."""
    grad = np.zeros_like(point)
    for i in range(len(point)):
        step = np.zeros_like(point)
        step[i] = h
        grad[i] = (f(*(point + step)) - f(*(point - step))) / (2 * h)
    return grad


def sgd(f: Any, start: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Plain gradient descent, ``p <- p - lr * grad f(p)``, with differences for the gradient."""
    point = np.array(start, dtype=np.float64)
    for _ in range(steps):
        point = point - lr * numeric_gradient(f, point)
    return point


def choose_sgd(panel: Locator) -> float:
    """Pick plain SGD in the optimizer menu; return the learning rate the slider shows."""
    panel.locator(".jgm-optimizer select").select_option("sgd")  # the panel's own menu, by its class
    return float(panel.locator(".jgm-lr .widget-readout").inner_text())


def flat_params(panel: Locator) -> np.ndarray:
    return np.array([v for values in params(panel).values() for v in values])


def assert_shown(panel: Locator, want: np.ndarray, f: Any) -> None:
    """The readout shows ``want`` (to its 4 significant digits) and the loss ``f(*want)``."""
    np.testing.assert_allclose(flat_params(panel), want, rtol=1e-3, atol=1e-6)
    assert float(readout(panel, "loss").inner_text()) == pytest.approx(f(*want), rel=1e-3, abs=1e-6)


# --------------------------------------------------------------------------- the results


def test_every_cell_runs_and_every_result_renders(notebook: NotebookPage) -> None:
    nb = notebook
    cells = notebook_cells(DEMO)
    prompts = nb.page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    assert len(prompts) == sum(c["cell_type"] == "code" for c in cells)
    assert all(re.search(r"\[\d+\]", p) for p in prompts), f"cells that did not run: {prompts}"

    errors = []
    for i, cell in enumerate(cells):
        if nb.cell(i).locator(f".jp-OutputArea-output[data-mime-type='{STDERR_MIME}']").count():
            errors.append(f"cell {i}:\n{cell['source']}\n-> {nb.cell(i).locator('.jp-OutputArea').inner_text()}")
    assert not errors, "error output on the page:\n\n" + "\n\n".join(errors)

    magic_cells = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and MAGIC_CELL.match(c["source"])]
    assert len(magic_cells) >= 5
    for i in magic_cells:
        if cells[i]["source"].splitlines()[0].rstrip().endswith(";"):
            continue  # silenced on purpose
        result = nb.cell(i).locator(".jgm-result")
        assert result.count() >= 1, f"no rendered result under cell {i}:\n{cells[i]['source']}"
        assert result.first.is_visible()

    # What a reader checks: the gradient of sum(sin(x)^2) at x = (1, 2, 3) is sin(2x).
    grad_cell = cell_index("%%jgrad\ndef pipeline(")
    row = nb.cell(grad_cell).locator(".jgm-result tr", has_text="∂pipeline/∂x")
    np.testing.assert_allclose(numbers(row.inner_text())[-3:], np.sin(2 * np.array([1.0, 2.0, 3.0])), rtol=1e-4)
    printed = nb.cell(cell_index("x_new =")).locator(".jp-OutputArea").inner_text()
    assert "Updated x: 4.0" in printed and "Updated y: 1.8" in printed

    assert not nb.unexpected_page_errors(), f"uncaught errors in the page: {nb.unexpected_page_errors()}"
    nb.screenshot(nb.cell(grad_cell), "result-light")


def test_a_big_jacobian_is_drawn_as_a_heatmap(notebook: NotebookPage) -> None:
    """The demo's 40 x 30 Jacobian is a picture with a colour bar and its summary, not a table of numbers."""
    nb = notebook
    output = nb.cell(cell_index("A = jax.random.normal")).locator(".jp-OutputArea")
    heat = output.locator(".jgm-result .jgm-heat")
    expect(heat).to_be_visible()
    for alt in ("heatmap", "colour scale"):
        assert image_shown(heat.locator(f"img[alt='{alt}']")), f"the {alt} is not drawn"
    assert re.search(r"40x30 matrix: min -?[\d.]+, max -?[\d.]+, norm [\d.]+", heat.inner_text())
    nb.screenshot(output, "heatmap")
    nb.picture(output, "heatmap")  # the README's heatmap (JGM_PICTURES=1 only)


def test_no_news_pop_up(notebook: NotebookPage) -> None:
    # The settings written for the server stop the news and update check before they ask.
    toasts = notebook.page.locator(".Toastify__toast")
    assert toasts.count() == 0, toasts.all_inner_texts()


# --------------------------------------------------------------------------- the panel


def test_the_widgets_extension_renders_the_panel(notebook: NotebookPage) -> None:
    nb = notebook
    extensions = nb.page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent).federated_extensions"
    )
    loaded = any(e.get("name") == WIDGETS_EXTENSION for e in extensions)
    assert loaded, f"{nb.server.frontend.title} did not load the widgets extension"
    text = nb.page.locator(".jp-Notebook").inner_text()
    for fallback in ("Error displaying widget", "Loading widget", "PanelWidget(", "VBox(children"):
        assert fallback not in text, f"a widget did not render: {fallback!r} on the page"

    panel = descent_panel(nb)
    for name in ("Step", "Run N", "Stop", "Reset", "Apply"):
        expect(button(panel, name)).to_be_visible()
    wait_idle(panel)
    for key in ("step", "loss", "‖∇f‖", "params"):
        assert readout(panel, key).inner_text().strip(), f"the readout shows no {key}"
    assert re.fullmatch(r"\d+", readout(panel, "step").inner_text().strip())
    assert image_shown(loss_image(panel)), "the loss plot is not drawn"
    for image in panel.locator("img.widget-image").all():
        if image.is_visible():
            assert image_shown(image)
    nb.screenshot(panel, "panel-light")


def test_step_changes_the_step_count_loss_and_parameters(notebook: NotebookPage) -> None:
    panel = descent_panel(notebook)
    f = demo_function("pipeline_multi_input")
    wait_idle(panel)
    reset(panel)
    lr = choose_sgd(panel)
    start, loss0 = flat_params(panel), readout(panel, "loss").inner_text()
    params0 = readout(panel, "params").inner_text()
    assert_shown(panel, start, f)
    picture0 = loss_picture(panel)

    button(panel, "Step").click()
    expect(readout(panel, "step")).to_have_text("1")
    expect(readout(panel, "loss")).not_to_have_text(loss0)
    # The labels arrive one message each: wait for the parameters' own before reading them.
    expect(readout(panel, "params")).not_to_have_text(params0)
    assert_shown(panel, sgd(f, start, lr, 1), f)
    assert loss_picture(panel) != picture0, "the loss plot was not redrawn after Step"
    expect(status(panel)).to_contain_text("step 1")


def test_run_n_fills_the_progress_bar_and_redraws_the_loss_plot(notebook: NotebookPage) -> None:
    panel = descent_panel(notebook)
    f = demo_function("pipeline_multi_input")
    wait_idle(panel)
    reset(panel)
    lr = choose_sgd(panel)
    start = flat_params(panel)
    params0 = readout(panel, "params").inner_text()
    picture0 = loss_picture(panel)

    n = 20
    set_steps(panel, n)
    element = panel.element_handle()
    button(panel, "Run N").click()
    expect(progress_text(panel)).to_have_text(f"{n} / {n}", timeout=60_000)
    wait_idle(panel)
    # The still picture follows half a second after the run, through an output of its own: the
    # live panel is not drawn again (no flicker, the focus stays where it was).
    time.sleep(PUBLISH_DELAY + 1.0)
    assert element.evaluate("e => e.isConnected"), "the panel was drawn anew after the run"
    expect(readout(panel, "step")).to_have_text(str(n))
    expect(readout(panel, "params")).not_to_have_text(params0)  # its own message, maybe after the step's
    assert progress_percent(panel) == pytest.approx(100.0)
    assert_shown(panel, sgd(f, start, lr, n), f)
    assert loss_picture(panel) != picture0, "the loss plot was not redrawn after Run N"
    notebook.screenshot(panel, "panel-after-run")
    # The README's first picture: the result and its panel after the run (JGM_PICTURES=1 only).
    notebook.picture(notebook.cell(cell_index(DESCENT_CELL)).locator(".jp-OutputArea"), "panel")


def test_a_race_is_drawn_by_the_demo_and_by_the_panel(notebook: NotebookPage) -> None:
    # The demo's race cell: its result shows as one picture.
    picture = notebook.outputs(cell_index("race = descent.race(")).locator("img").first
    wait_until(lambda: image_shown(picture), 30, "the race's picture in the demo")
    # The panel's Race box races the same function from where the descent is now.
    panel = descent_panel(notebook)
    wait_idle(panel)
    status = panel.locator(".jgm-race-status")
    panel.locator("button.jgm-race-button").click()
    expect(status).to_contain_text("wins at lr", timeout=120_000)
    wait_until(lambda: image_shown(panel.locator(".jgm-race-plot img, img.jgm-race-plot").first), 30, "the race plot")


def test_the_stability_mark_follows_the_learning_rate(notebook: NotebookPage) -> None:
    # The demo's descent: x² + (y - 1)², whose Hessian is 2I, so λmax = 2 and 2/λmax = 1.
    panel = descent_panel(notebook)
    wait_idle(panel)
    choose_sgd(panel)
    mark = panel.locator(".jgm-stability")
    expect(mark).to_contain_text("stable below 2/λmax = 1", timeout=30_000)
    colour = "el => getComputedStyle(el.querySelector('span')).color"
    calm = mark.evaluate(colour)
    # Past the bound, typed into the slider's readout as a person would: the mark turns to a warning.
    readout = panel.locator(".jgm-lr .widget-readout")
    readout.click()
    readout.press("Control+A")
    readout.type("1.5")
    readout.press("Enter")
    wait_until(lambda: mark.evaluate(colour) != calm, 15, "the mark to change colour past 2/λmax")
    readout.click()
    readout.press("Control+A")
    readout.type("0.1")
    readout.press("Enter")
    wait_until(lambda: mark.evaluate(colour) == calm, 15, "the mark to calm down at lr 0.1")


def test_stop_during_a_long_run_stops_it(notebook: NotebookPage) -> None:
    panel = descent_panel(notebook)
    wait_idle(panel)
    first = int(readout(panel, "step").inner_text())
    set_steps(panel, LONG_RUN)
    button(panel, "Run N").click()
    expect(button(panel, "Stop")).to_be_enabled()
    seen = watch_progress(panel, LONG_RUN, readings=3)
    assert seen == sorted(seen) and seen[0] > 0, f"the progress did not advance: {seen}"
    assert progress_percent(panel) < 100.0

    button(panel, "Stop").click()
    wait_idle(panel)
    done = int(progress_text(panel).inner_text().split("/")[0])
    assert seen[-1] <= done < LONG_RUN, f"stopped at {done} of {LONG_RUN}"
    expect(readout(panel, "step")).to_have_text(str(first + done))
    expect(status(panel)).to_contain_text("stopped")


def watch_progress(panel: Locator, n: int, readings: int, timeout: float = 60) -> list[int]:
    """Read the ``done / n`` label until it showed ``readings`` different counts; return them in order."""
    seen: list[int] = []

    def more() -> bool:
        found = re.fullmatch(rf"(\d+) / {n}", progress_text(panel).inner_text().strip())
        if found and int(found.group(1)) > 0 and (not seen or int(found.group(1)) != seen[-1]):
            seen.append(int(found.group(1)))
        return len(seen) >= readings

    wait_until(more, timeout, f"{readings} different progress counts", interval=0.05)
    return seen


def test_a_busy_kernel_leaves_the_page_responsive(notebook: NotebookPage) -> None:
    """A 10^6-step run on a 10^6-entry function: progress and redraws arrive, Stop is answered at once."""
    from jaxgrad_magic.stepper import CHUNK, CHUNK_SECONDS

    nb = notebook
    for source in HEAVY_CELLS:
        nb.add_cell_and_run(source)
    panel = panels(nb).last
    expect(panel).to_contain_text("heavy")
    wait_idle(panel)

    set_steps(panel, BUSY_RUN)
    picture0 = loss_picture(panel)
    button(panel, "Run N").click()
    expect(button(panel, "Stop")).to_be_enabled()
    seen = watch_progress(panel, BUSY_RUN, readings=3)
    assert seen == sorted(seen) and seen[-1] < BUSY_RUN

    # The page keeps up while the kernel computes: the loss plot is redrawn during the run.
    wait_until(lambda: image_digest(loss_image(panel)) not in (None, picture0), 30, "a redraw during the run")

    # A chunk lasts about CHUNK_SECONDS and one progress update covers a chunk or two, so "Stop answered
    # within a second" is, in steps rather than seconds: at most 1 / CHUNK_SECONDS updates after the click.
    update = max(b - a for a, b in itertools.pairwise(seen))
    at_click = int(progress_text(panel).inner_text().split("/")[0])
    clicked = time.perf_counter()
    button(panel, "Stop").click()
    wait_idle(panel, timeout=60)
    answered = time.perf_counter() - clicked
    done = int(progress_text(panel).inner_text().split("/")[0])
    print(f"Stop answered after {answered:.2f} s, {done - at_click} steps after the click (one update: {update})")
    assert done < BUSY_RUN, "the run went on to the end: Stop was not answered"
    within = math.ceil(1 / CHUNK_SECONDS) * update
    assert done - at_click <= min(within, 4 * CHUNK), f"{done - at_click} steps after the click, allowed {within}"
    expect(status(panel)).to_contain_text("stopped")


def test_apply_then_print_shows_the_applied_values(notebook: NotebookPage) -> None:
    nb = notebook
    panel = descent_panel(nb)
    wait_idle(panel)
    reset(panel)
    set_steps(panel, 5)
    button(panel, "Run N").click()
    wait_idle(panel)
    expect(readout(panel, "step")).to_have_text("5")
    expect(status(panel)).to_contain_text("step 5")
    shown = settled_params(panel)

    button(panel, "Apply").click()
    expect(status(panel)).to_contain_text("into the notebook")
    names = list(shown)
    index = nb.add_cell_and_run(f"print({', '.join(names)})")
    printed = numbers(nb.cell(index).locator(".jp-OutputArea").inner_text())
    expected = [v for name in names for v in shown[name]]
    assert len(printed) == len(expected), f"printed {printed}, the panel shows {shown}"
    # The readout rounds to 4 significant digits; the notebook holds the full values.
    for got, want in zip(printed, expected, strict=True):
        assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6), f"printed {printed}, the panel shows {shown}"
    nb.screenshot(nb.cell(index), "apply-print")


# --------------------------------------------------------------------------- the dark theme


def luminance(css_colour: str) -> float:
    """WCAG relative luminance of an ``rgb(...)`` / ``rgba(...)`` colour."""
    r, g, b = (v / 255 for v in numbers(css_colour)[:3])
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(element: Locator) -> float:
    """Contrast ratio of an element's text against the first opaque background behind it."""
    colours: dict[str, Any] = element.evaluate(
        """el => {
            let bg = null;
            for (let e = el; e && !bg; e = e.parentElement) {
                const c = getComputedStyle(e).backgroundColor;
                if (c && c !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(c)) bg = c;
            }
            return {fg: getComputedStyle(el).color, bg: bg || 'rgb(255, 255, 255)'};
        }"""
    )
    a, b = luminance(colours["fg"]), luminance(colours["bg"])
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


@pytest.mark.parametrize("theme", ["JupyterLab Dark", "JupyterLab Light"])
def test_result_and_panel_are_readable_in_both_themes(notebook: NotebookPage, theme: str) -> None:
    nb = notebook
    nb.set_theme(theme)
    tag = "dark" if "Dark" in theme else "light"
    panel = descent_panel(nb)
    grad_cell = nb.cell(cell_index("%%jgrad\ndef pipeline("))
    texts = {
        "result label": grad_cell.locator(".jgm-result td.jgm-k").first,
        "result value": grad_cell.locator(".jgm-result pre").first,
        "panel title": panel.locator(".widget-html-content").first,
        "readout key": panel.locator(".widget-gridbox > .widget-label").first,
        "readout value": readout(panel, "loss"),
        "status line": status(panel),
    }
    low = {name: round(contrast(el), 2) for name, el in texts.items() if contrast(el) < 4.5}
    nb.screenshot(grad_cell, f"result-{tag}")
    nb.screenshot(panel, f"panel-{tag}")
    assert not low, f"text below WCAG AA contrast (4.5) in {theme}: {low}"
