"""The race's picture: one static PNG with the best paths on f and the loss curves, and ``r.race()``."""

from __future__ import annotations

import base64
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Shell, png_pixels

import jaxgrad_magic
from jaxgrad_magic import plots, race_plot
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.racing import RaceResult, race


def rosenbrock(x: Any, y: Any) -> Any:
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1.0) ** 2


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def has_colour(picture: np.ndarray, colour: str, tol: int = 6) -> bool:
    """Whether some pixel of an RGB picture is ``colour``, within ``tol`` per channel (palette rounding)."""
    return bool((np.abs(picture.astype(np.int16) - rgb(colour)).max(axis=-1) <= tol).any())


@pytest.fixture(scope="module")
def raced() -> RaceResult:
    return race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), steps=300)


def test_a_race_displays_as_one_static_picture(raced: RaceResult) -> None:
    bundle = raced._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/html", "text/plain"}
    assert bundle["text/plain"] == raced.summary and "\n" not in bundle["text/plain"]
    # The HTML is the same picture (for frontends that prefer HTML), its summary as the alternative text.
    assert base64.b64encode(bundle["image/png"]).decode("ascii") in bundle["text/html"]
    assert f'alt="{raced.summary}"' in bundle["text/html"]
    assert raced._repr_png_() is raced.png  # drawn once
    picture = png_pixels(raced.png, "RGB")
    height, width = picture.shape[:2]
    assert width >= 2 * plots.WIDTH and height > plots.HEIGHT  # the contour and the losses, under the text
    assert len(raced.png) < 60_000  # a palette PNG: it travels twice in a saved notebook


def test_two_parameters_draw_every_best_path_in_its_own_colour(raced: RaceResult) -> None:
    picture = png_pixels(raced.png, "RGB")
    contour = picture[:, : plots.WIDTH + 8]  # the left picture (compose puts 8 pixels of margin first)
    for colour in race_plot.colours(3):
        assert has_colour(contour, colour), colour


def test_more_parameters_draw_the_loss_curves_only() -> None:
    r = race(lambda x: jnp.sum(jnp.sin(x) ** 2), jnp.linspace(0.1, 1.0, 7), optimizers=("sgd", "adam"), steps=50)
    width = png_pixels(r.png).shape[1]
    assert plots.WIDTH <= width < 2 * plots.WIDTH
    assert any("loss curves only (7 parameters)" in line for line in race_plot._lines(r))
    # One parameter: no contour either.
    one = race(lambda x: (x - 3.0) ** 2, 0.0, optimizers="sgd", lrs=[0.1, 0.5], steps=20)
    assert png_pixels(one.png).shape[1] < 2 * plots.WIDTH


def test_diverged_runs_end_at_their_last_point_with_a_cross(monkeypatch: pytest.MonkeyPatch) -> None:
    crosses: list[tuple[float, float]] = []
    marks: list[tuple[int, float]] = []
    real_cross, real_mark = race_plot._cross, race_plot._mark

    def cross(frame: Any, x: float, y: float, ink: int, casing: int) -> None:
        crosses.append((x, y))
        real_cross(frame, x, y, ink, casing)

    def mark(ax: Any, run: Any, ink: str, ymax: float, alpha: float = 1.0) -> None:
        marks.append((len(run.losses) - 1, min(float(run.losses[-1]), ymax)))
        real_mark(ax, run, ink, ymax, alpha)

    monkeypatch.setattr(race_plot, "_cross", cross)
    monkeypatch.setattr(race_plot, "_mark", mark)
    # sgd on Rosenbrock: 1e-3 converges, 0.05 and 0.1 overflow within a few steps.
    lrs = [[1e-3, 0.05, 0.1], [0.01]]
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=lrs, steps=80)
    png_pixels(r.png)
    diverged = [run for run in r.runs.values() if run.diverged]
    assert len(diverged) == 2
    # Every diverged run is marked on the loss plot at its last finite step, on the top edge at most.
    assert sorted(step for step, _ in marks) == sorted(len(run.losses) - 1 for run in diverged)
    assert crosses == []  # the best paths drawn on f did not diverge
    every = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers="sgd", lrs=[0.05, 0.1], steps=40)
    png_pixels(every.png)
    assert len(crosses) == 1  # the best of an optimizer whose every rate diverged: crossed on f
    assert "every rate of 2 from 0.05 to 0.1 diverged" in race_plot._lines(every)[0]
    assert race_plot._heading(every).endswith("every run diverged")


def test_losses_of_zero_or_of_either_sign_still_draw() -> None:
    reaches_zero = race(lambda x: (x - 3.0) ** 2, 0.0, optimizers="sgd", lrs=[0.5, 0.1], steps=30)
    assert reaches_zero.best["sgd"].loss == 0.0  # one step of lr 0.5 lands on the minimum
    png_pixels(reaches_zero.png)
    negative = race(lambda x, y: -jnp.exp(-(x**2) - y**2), (0.5, -0.4), argnums=(0, 1), optimizers="adam", steps=30)
    png_pixels(negative.png)


def test_colours_are_okabe_ito_and_the_first_ones_read_on_the_plot_area() -> None:
    assert len(set(race_plot.PALETTE)) == len(race_plot.PALETTE) == 7
    assert "#F0E442" not in race_plot.PALETTE  # Okabe–Ito's yellow: too faint on a light ground
    assert race_plot.colours(9)[7] == race_plot.PALETTE[0]

    def luminance(colour: str) -> float:
        c = rgb(colour) / 255.0
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])

    # The default race's three colours reach WCAG's 3:1 for graphics on the plot area, to two digits
    # (bluish green is 2.996:1); the later ones are fainter, which the contour's white casing makes up for.
    ground = luminance(plots.AXES_FACE)
    for colour in race_plot.PALETTE[:3]:
        assert (ground + 0.05) / (luminance(colour) + 0.05) >= 2.995, colour


def test_r_race_races_the_results_function_from_its_point() -> None:
    r = jaxgrad_magic.grad(bowl, at=(5.0, 2.0), argnums=(0, 1))
    mine = r.race(optimizers=("sgd", "adam"), lrs=[0.01, 0.1], steps=40)
    theirs = race(bowl, (5.0, 2.0), ("sgd", "adam"), [0.01, 0.1], 40, (0, 1))
    assert mine.fn_name == "bowl" and mine.argnums == (0, 1)
    for key, run in theirs.runs.items():
        np.testing.assert_array_equal(mine.runs[key].losses, run.losses)
    unevaluated = jaxgrad_magic.grad(bowl)
    with pytest.raises(JaxGradUsageError, match="not evaluated at a point"):
        unevaluated.race()


def test_in_a_notebook_r_race_shows_its_picture(ip: Shell) -> None:
    ip.run_cell("def bowl(x, y):\n    return x ** 2 + (y - 1.0) ** 2\nx = 5.0\ny = 2.0")
    r = ip.line("jgrad", "bowl argnums=0,1 stepper=False")
    raced = r.race(optimizers=("sgd", "momentum"), steps=60)
    data, _ = ip.shell.display_formatter.format(raced)
    assert {"image/png", "text/html", "text/plain"} <= set(data)
    assert data["text/plain"].startswith("race on bowl, 2 optimizers × 8 rates, 60 steps: ")
