"""The panel's parts for real models: the gradient's norm per leaf, and a loss plane for many parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from conftest import png_pixels

import jaxgrad_magic as jgm
from jaxgrad_magic.panel import StepperPanel


def _mlp() -> tuple[dict[str, Any], jax.Array, jax.Array]:
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (32, 3))
    p = {
        "hidden": {"w": jax.random.normal(keys[1], (3, 8)) * 0.5, "b": jnp.zeros(8)},
        "out": {"w": jax.random.normal(keys[2], (8, 1)) * 1e-3, "b": jnp.zeros(1)},
    }
    return p, x, jnp.sin(x[:, 0])


def _loss(p: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])
    return jnp.mean(((h @ p["out"]["w"] + p["out"]["b"])[:, 0] - y) ** 2)


def test_many_parameters_get_a_plane_and_the_norms_per_leaf() -> None:
    panel = StepperPanel(jgm.Stepper(_loss, _mlp(), optimizer="adam", lr=0.01))
    try:
        # The first slice is taken in the background: the panel shows meanwhile and says so.
        assert "taking a slice" in panel.plane.note.value or panel.plane.slice is not None
        assert panel.plane.wait(60)
        assert panel.plane.shown and panel.landscape_image.layout.display != "none"
        assert panel.plane.slice is not None and panel.plane.slice.step == 0
        assert png_pixels(panel.landscape_image.value).shape[:2] == (260, 360)
        assert "random plane" in panel.plane.note.value
        listing = panel.grad_norms.widget.value
        assert "‖∇‖ per leaf" in listing and "◀ largest" in listing and "◀ smallest" in listing
        assert "[&#x27;out&#x27;][&#x27;w&#x27;]" in listing
        panel.steps_input.value = 50
        panel.run_button.click()
        panel.wait(60)
        assert panel.plane.wait(60)
        assert panel.plane.slice.step == 50 and panel.plane.slice.path_steps[-1] == 50
        assert listing != panel.grad_norms.widget.value  # redrawn with the frames
        panel.plane.dropdown.value = "pca"
        assert panel.plane.wait(60)
        assert panel.plane.slice.directions == "pca" and "follows the recorded path" in panel.plane.note.value
        panel.reset_button.click()
        panel.plane.dropdown.value = "hessian"
        assert panel.plane.wait(60)
        assert panel.plane.slice.directions == "hessian" and panel.plane.slice.step == 0
        panel.plane.dropdown.value = "pca"  # at step 0 there is no path: said, the last picture kept
        assert panel.plane.wait(60)
        assert "no path yet" in panel.plane.note.value and panel.plane.slice.directions == "hessian"
    finally:
        panel.close()


def test_two_parameters_keep_their_contour_and_one_leaf_no_list() -> None:
    def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
        return x**2 + (y - 1) ** 2

    panel = StepperPanel(jgm.Stepper(bowl, (5.0, 2.0), argnums=(0, 1)))
    try:
        assert not panel.plane.shown and panel.plane.controls.layout.display == "none"
        assert panel.landscape_kind == "contour"
        assert not panel.grad_norms.shown  # two scalars: the readout shows them already
    finally:
        panel.close()
    single = StepperPanel(jgm.Stepper(lambda v: jnp.sum(v**2), jnp.ones(5)))
    try:
        assert not single.grad_norms.shown and single.grad_norms.widget.value == ""
        assert single.plane.shown  # five numbers: a plane
    finally:
        single.close()
