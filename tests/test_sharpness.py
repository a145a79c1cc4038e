"""The stability meter: ``Stepper.sharpness()``, ``lr_limit``, tracking during runs, and what the bounds mean.

λmax is compared with ``jnp.linalg.eigh`` of the dense Hessian at the stepper's point; the
bounds are checked by what they claim, running the optimizers just below and just above them.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import png_pixels
from jax.flatten_util import ravel_pytree

from jaxgrad_magic import Stepper, plots, sharpness_plot
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.optimizers import MOMENTUM
from jaxgrad_magic.sharpness import bound


def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
    """Hessian diag(10, 2): λmax = 10, so plain gradient descent is stable below 0.2."""
    return 5.0 * x**2 + (y - 1.0) ** 2


def wiggly(p: dict[str, jax.Array]) -> jax.Array:
    """Curvature that changes from point to point, over a dict of two arrays."""
    return jnp.sum(jnp.cos(p["a"]) * jnp.arange(1.0, 4.0)) + jnp.sum(p["b"] ** 4) + p["a"][0] * p["b"][1]


WIGGLY_AT = {"a": jnp.array([0.3, -0.2, 1.1]), "b": jnp.array([0.5, -1.0])}


def dense_lambda_max(fn: Any, params: Any) -> float:
    flat, unravel = ravel_pytree(params)
    return float(jnp.linalg.eigh(jax.hessian(lambda v: fn(unravel(v)))(flat))[0][-1])


def test_sharpness_is_the_top_eigenvalue_of_the_dense_hessian_where_the_stepper_is() -> None:
    s = Stepper(wiggly, WIGGLY_AT, lr=0.05)
    assert s.sharpness() == pytest.approx(dense_lambda_max(wiggly, WIGGLY_AT), rel=1e-4)
    s.run(20)
    here = s.sharpness()
    assert here == pytest.approx(dense_lambda_max(wiggly, s.params), rel=1e-4)
    assert s.lr_limit == pytest.approx(2 / here, rel=1e-12)


def test_a_point_is_measured_once(compiles: Any) -> None:
    s = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.1)
    first = s.sharpness()
    compiles.reset()
    assert s.sharpness() == first and s.lr_limit == pytest.approx(0.2, rel=1e-5)
    assert compiles.count == 0
    assert s._meter.measure(s.params) is s._meter.measure(s.params)


@pytest.mark.parametrize(
    ("optimizer", "limit"),
    [
        ("sgd", 2 / 10),
        ("momentum", (2 + 2 * MOMENTUM) / 10),
        ("nesterov", (2 + 2 * MOMENTUM) / ((1 + 2 * MOMENTUM) * 10)),
    ],
)
def test_the_bound_is_where_descent_turns_unstable(optimizer: str, limit: float) -> None:
    s = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.1, optimizer=optimizer)
    b = bound(s.sharpness(), optimizer)
    assert b.exact and b.value == pytest.approx(limit, rel=1e-4)
    below = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.97 * b.value, optimizer=optimizer)
    below.run(3000)
    assert below.loss < 1e-6  # converges
    above = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=1.03 * b.value, optimizer=optimizer)
    above.run(3000)
    assert above.diverged or above.loss > 1e6  # blows up along x


def test_adaptive_methods_get_a_guide_not_a_bound() -> None:
    b = bound(10.0, "adam")
    assert not b.exact and b.formula == "2/λmax" and b.value == pytest.approx(0.2)
    assert bound(-1.0, "sgd").value == math.inf  # nothing curves up: no rate overshoots
    assert Stepper(lambda x: -jnp.sum(x**2), jnp.ones(3)).lr_limit == math.inf


def test_a_diverged_run_cites_the_bound_at_the_start() -> None:
    s = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.5)
    s.run(1000)
    assert s.diverged
    assert "lr 0.5 > 2/λmax = 0.2 at the start" in s.message
    assert s.divergence == s.message
    m = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.5, optimizer="momentum")
    m.run(1000)
    assert "lr 0.5 > (2+2β)/λmax = 0.38 at the start" in m.message


def test_a_divergence_below_the_bound_at_the_start_says_nothing_of_it() -> None:
    def double_well(x: jax.Array) -> jax.Array:
        return jnp.sum((x**2 - 1.0) ** 2)  # curves down at 0 (no bound there), up by 8 at the minima

    s = Stepper(double_well, jnp.array([0.05]), lr=1.0)
    assert s.lr_limit == math.inf
    s.run(200)
    assert s.diverged and "λmax" not in s.message


@jax.custom_vjp
def reverse_only(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


reverse_only.defvjp(lambda x: (reverse_only(x), x), lambda x, g: (2 * g * x,))


def test_without_forward_mode_the_divergence_message_stands_alone() -> None:
    s = Stepper(reverse_only, jnp.ones(2), lr=3.0)
    s.run(500)
    assert s.diverged and "lower the learning rate (now 3)" in s.message and "λmax" not in s.message
    with pytest.raises(JaxGradUsageError, match=r"reverse_only .* is a jax.custom_vjp.*forward over reverse"):
        s.sharpness()


def test_sharpness_is_tracked_every_k_steps_of_a_run() -> None:
    def valley(x: jax.Array, y: jax.Array) -> jax.Array:
        return (1.0 - x) ** 2 + 4.0 * (y - x**2) ** 2

    s = Stepper(valley, (-1.0, 1.5), argnums=(0, 1), lr=0.02)
    s.sharpness_every = 25
    s.run(110)
    h = s.sharpness_history
    np.testing.assert_array_equal(h.steps, [25, 50, 75, 100])
    np.testing.assert_array_equal(h.lrs, [0.02] * 4)
    path, steps = s.trajectory, list(s.history_steps)
    for step, value in zip(h.steps, h.values, strict=True):
        x, y = path[steps.index(step)]
        dense = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: valley(v[0], v[1]))(jnp.array([x, y]))))
        assert value == pytest.approx(dense[-1], rel=1e-3)
    assert not h.values.flags.writeable
    s.lr = 0.01
    s.run(50)
    assert s.sharpness_history.lrs[-1] == 0.01 and s.sharpness_history.steps[-1] == 150
    s.reset()
    assert len(s.sharpness_history.steps) == 0


def test_tracking_is_off_by_default_and_takes_a_step_count() -> None:
    s = Stepper(bowl, (1.0, 2.0), argnums=(0, 1), lr=0.05)
    s.run(50)
    assert s.sharpness_every == 0 and len(s.sharpness_history.values) == 0
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(JaxGradUsageError, match=r"sharpness_every=.* must be a whole number of steps"):
            s.sharpness_every = bad


def test_aux_and_several_arguments() -> None:
    def f(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return 3.0 * jnp.sum(x**2) + x[0] * y + y**2, y

    s = Stepper(f, (jnp.array([1.0, 2.0]), 0.5), argnums=(0, 1), has_aux=True)
    h = np.array([[6.0, 0.0, 1.0], [0.0, 6.0, 0.0], [1.0, 0.0, 2.0]])
    assert s.sharpness() == pytest.approx(np.linalg.eigvalsh(h)[-1], rel=1e-5)


def test_where_the_loss_is_not_finite_neither_is_the_limit() -> None:
    s = Stepper(lambda x: jnp.sum(jnp.sqrt(x)), jnp.array([-1.0, 2.0]))
    assert math.isnan(s.sharpness()) and math.isnan(s.lr_limit)


def test_a_measurement_where_f_is_not_finite_does_not_spoil_the_next() -> None:
    s = Stepper(lambda x: jnp.sum(jnp.cos(x)), jnp.array([math.pi, 0.5]))  # Hessian diag(-cos x)
    assert math.isnan(s._meter.measure(jnp.array([jnp.nan, 0.5])).value)
    assert s._meter.measure(jnp.array([math.pi, 0.5])).value == pytest.approx(1.0, rel=1e-5)


def _rows_of(pixels: np.ndarray, hex_colour: str, tolerance: int = 40) -> np.ndarray:
    """The rows of an RGB picture where a pixel is within ``tolerance`` of ``hex_colour``."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    near = np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance
    return np.flatnonzero(near.any(axis=1))


def test_the_history_keeps_each_optimizers_limit_and_shows_lambda_against_it() -> None:
    # 2x² + 4y²: the Hessian is diag(4, 8), λmax = 8 everywhere.
    def quad(x: jax.Array, y: jax.Array) -> jax.Array:
        return 2.0 * x**2 + 4.0 * y**2

    s = Stepper(quad, (1.0, 1.0), argnums=(0, 1), lr=0.05)
    assert s.sharpness_history._repr_png_() is None  # nothing measured yet: no picture
    s.sharpness_every = 10
    s.run(30)
    s.optimizer = "momentum"
    s.lr = 0.04
    s.run(20)
    h = s.sharpness_history
    np.testing.assert_array_equal(h.steps, [10, 20, 30, 40, 50])
    np.testing.assert_allclose(h.values, 8.0, rtol=1e-2)
    # sgd: stable below λ = 2/lr; heavy-ball momentum β = 0.9: (2 + 2β)/lr.
    np.testing.assert_allclose(h.limits, [2 / 0.05] * 3 + [3.8 / 0.04] * 2, rtol=1e-12)
    assert h.optimizer == "momentum" and not h.limits.flags.writeable
    pixels = png_pixels(h._repr_png_(), "RGB")
    assert pixels.shape[:2] == (sharpness_plot.HEIGHT, sharpness_plot.WIDTH)
    line = _rows_of(pixels, plots.LOSS_COLOR)
    assert line.size and line.max() - line.min() < 12  # λmax holds still: a flat line, its dots
    # The limit (40, then 95) sits above λmax = 8 on the axis: λmax is in the lower part of the plot.
    assert line.min() > sharpness_plot.HEIGHT * 0.55


def test_the_limit_is_named_a_guide_for_adaptive_methods() -> None:
    assert sharpness_plot.limit_label("sgd", True) == "2/lr"
    assert sharpness_plot.limit_label("nesterov", True) == "(2+2β)/((1+2β)lr)"
    assert sharpness_plot.limit_label("adam", False) == "2/lr (a guide for adam)"
