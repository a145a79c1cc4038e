"""``Stepper.landscape``: the loss on a plane through the parameters, and the bounded trail behind it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import png_pixels

import jaxgrad_magic as jgm
from jaxgrad_magic import trail
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.slices import PCA_NOTE, Slice

EIGENVALUES = np.arange(1.0, 11.0)
A = np.diag(EIGENVALUES)
B = np.linspace(-1.0, 1.0, 10)


def quadratic(x: jax.Array) -> jax.Array:
    return 0.5 * x @ jnp.asarray(A) @ x + jnp.asarray(B) @ x


def closed_form(center: np.ndarray, s: Slice) -> np.ndarray:
    """The quadratic on the slice's grid, in float64."""
    u, v = np.asarray(s.u, np.float64), np.asarray(s.v, np.float64)
    out = np.empty((len(s.betas), len(s.alphas)))
    for i, beta in enumerate(s.betas):
        for j, alpha in enumerate(s.alphas):
            x = center + alpha * u + beta * v
            out[i, j] = 0.5 * x @ A @ x + B @ x
    return out


@pytest.fixture(scope="module")
def descended() -> jgm.Stepper:
    s = jgm.Stepper(quadratic, jnp.ones(10), lr=0.05)
    s.run(40)
    return s


@pytest.mark.parametrize("kind", ["random", "pca", "hessian"])
def test_a_quadratics_slice_is_its_closed_form(descended: jgm.Stepper, kind: str) -> None:
    s = descended.landscape(kind, grid=9, span=0.5)
    center = np.asarray(descended.trainable, np.float64)
    np.testing.assert_allclose(s.values, closed_form(center, s), rtol=1e-5, atol=1e-5)
    assert s.values.shape == (9, 9) and s.directions == kind and s.step == 40
    assert s.values[4, 4] == pytest.approx(descended.loss, rel=1e-6)
    np.testing.assert_array_equal(s.alphas, np.linspace(-0.5, 0.5, 9))


def test_the_hessian_plane_is_spanned_by_the_top_eigenvectors(descended: jgm.Stepper) -> None:
    s = descended.landscape("hessian", grid=3)
    assert s.eigenvalues == pytest.approx((10.0, 9.0), rel=1e-4)
    u, v = np.asarray(s.u), np.asarray(s.v)
    assert abs(u[9]) / np.linalg.norm(u) == pytest.approx(1.0, abs=1e-4)
    assert abs(v[8]) / np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)
    # Scaled to the parameters' norm.
    assert np.linalg.norm(u) == pytest.approx(np.linalg.norm(np.asarray(descended.trainable)), rel=1e-5)


def test_the_pca_plane_holds_the_path_and_says_it_depends_on_it(descended: jgm.Stepper) -> None:
    s = descended.landscape("pca", grid=5)
    assert PCA_NOTE in s.note and "path" in str(s)
    assert s.explained is not None and s.explained[0] > 0.5 and sum(s.explained) <= 1.0 + 1e-6
    # Every step of a 40-step run is kept (the trail holds up to 64); the current point is the centre.
    np.testing.assert_array_equal(s.path_steps, np.arange(41))
    np.testing.assert_array_equal(s.path[-1], [0.0, 0.0])
    # span=1 reaches the farthest point of the path along each direction.
    assert np.max(np.abs(s.path[:, 0])) == pytest.approx(1.0, rel=1e-4)
    # The start's position on the plane reproduces its projection: u and v span the path's spread.
    u, v = np.asarray(s.u, np.float64), np.asarray(s.v, np.float64)
    start = np.ones(10) - np.asarray(descended.trainable, np.float64)
    fitted = s.path[0, 0] * u + s.path[0, 1] * v
    assert np.linalg.norm(fitted - start) <= 0.1 * np.linalg.norm(start)


def test_random_directions_are_filter_normalised_and_leave_biases_out() -> None:
    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.sum(p["kernel"] ** 2) + jnp.sum((p["bias"] - 1.0) ** 2)

    kernel = jnp.arange(12.0).reshape(3, 4) + 1.0
    s = jgm.Stepper(loss, {"bias": jnp.zeros(4), "kernel": kernel})
    first = s.landscape("random", grid=5, seed=3)
    u = first.u
    assert not np.asarray(u["bias"]).any()  # 1-D leaves: zeroed
    np.testing.assert_allclose(np.linalg.norm(u["kernel"], axis=1), np.linalg.norm(kernel, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(s.landscape("random", grid=5, seed=3).values, first.values)  # seeded
    assert not np.array_equal(s.landscape("random", grid=5, seed=4).values, first.values)
    assert first.values[2, 2] == pytest.approx(s.loss, rel=1e-6)


def test_a_vector_of_parameters_is_normalised_as_a_whole(descended: jgm.Stepper) -> None:
    s = descended.landscape("random", grid=3)
    norm = np.linalg.norm(np.asarray(descended.trainable))
    assert np.linalg.norm(np.asarray(s.u)) == pytest.approx(norm, rel=1e-5)


def test_two_parameters_use_the_whole_recorded_path() -> None:
    def bowl(x: jax.Array, y: jax.Array) -> jax.Array:
        return x**2 + 3 * (y - 1) ** 2

    s = jgm.Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.05)
    s.run(30)
    plane = s.landscape("hessian", grid=7)
    assert plane.eigenvalues == pytest.approx((6.0, 2.0), rel=1e-4)
    assert len(plane.path) == 31 and plane.values[3, 3] == pytest.approx(s.loss, rel=1e-6)


def test_an_mlp_pytree_centre_is_the_loss() -> None:
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(keys[0], (64, 4))
    y = jnp.sin(x[:, 0])
    p = {
        "l1": {"w": jax.random.normal(keys[1], (4, 16)) * 0.5, "b": jnp.zeros(16)},
        "l2": {"w": jax.random.normal(keys[2], (16, 16)) * 0.25, "b": jnp.zeros(16)},
        "l3": {"w": jax.random.normal(keys[3], (16, 1)) * 0.25, "b": jnp.zeros(1)},
    }

    def loss(p: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
        h = jnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"])
        h = jnp.tanh(h @ p["l2"]["w"] + p["l2"]["b"])
        return jnp.mean(((h @ p["l3"]["w"] + p["l3"]["b"])[:, 0] - y) ** 2)

    s = jgm.Stepper(loss, (p, x, y), optimizer="adam", lr=0.01)
    s.run(100)
    for kind in ("random", "pca", "hessian"):
        plane = s.landscape(kind, grid=11)
        assert plane.values[5, 5] == pytest.approx(s.loss, rel=1e-5), kind
        assert np.isfinite(plane.values).all() and plane.path.shape == (len(plane.path_steps), 2)


def test_bad_requests_say_what_to_do() -> None:
    s = jgm.Stepper(quadratic, jnp.ones(10))
    with pytest.raises(JaxGradUsageError, match="'random'"):
        s.landscape("sideways")
    with pytest.raises(JaxGradUsageError, match="odd"):
        s.landscape(grid=40)
    with pytest.raises(JaxGradUsageError, match="positive"):
        s.landscape(span=-1.0)
    with pytest.raises(JaxGradUsageError, match="no path yet"):
        s.landscape("pca")  # step 0


# ---------------------------------------------------------------------------- the trail


def test_the_trail_stays_bounded_and_evenly_spaced() -> None:
    s = jgm.Stepper(lambda x: jnp.sum(jnp.sin(x) ** 2), jnp.linspace(0.1, 2.0, 1000), lr=0.01)
    s.run(5000)
    steps, _ = s._trail.snapshots()
    every = s._trail.every
    assert len(steps) <= s._trail.capacity == trail.MAX_SNAPSHOTS
    assert steps[0] == 0 and all(step % every == 0 for step in steps)
    assert np.all(np.diff(steps) == every) and steps[-1] > 5000 - 2 * every
    s.reset()
    assert s._trail.snapshots()[0] == [0] and s._trail.every == 1


def test_a_million_parameters_keep_few_snapshots() -> None:
    assert trail.capacity(10**6, 4) == trail.TRAIL_BYTES // (4 * 10**6) == 8
    assert trail.capacity(10**8, 4) == trail.MIN_SNAPSHOTS


def test_snapshots_from_runs_and_steps_are_the_parameters_then() -> None:
    def f(x: jax.Array) -> jax.Array:
        return jnp.sum((x - jnp.arange(5.0)) ** 2)

    run = jgm.Stepper(f, jnp.zeros(5), lr=0.01)
    run.run(150)
    stepped = jgm.Stepper(f, jnp.zeros(5), lr=0.01)
    seen = {0: np.zeros(5)}
    for _ in range(150):
        stepped.step()
        seen[stepped.steps] = np.asarray(stepped.trainable)
    for kept in (run, stepped):
        steps, values = kept._trail.snapshots()
        assert steps == stepped._trail.snapshots()[0]
        for step, value in zip(steps, values, strict=True):
            np.testing.assert_allclose(np.asarray(value).reshape(-1), seen[step], rtol=1e-6)


def test_runs_with_snapshots_compile_nothing_new(compiles: Any) -> None:
    s = jgm.Stepper(lambda x: jnp.sum(jnp.cos(x) ** 2), jnp.linspace(0.0, 1.0, 50), lr=0.01)
    s.run(500)
    s.step()
    compiles.reset()
    s.run(700)
    s.step()
    s.run(3)
    assert compiles.count == 0


def test_a_slice_shows_as_its_picture(descended: jgm.Stepper) -> None:
    s = descended.landscape("pca", grid=7)
    assert png_pixels(s._repr_png_()).shape[:2] == (260, 360)
    assert str(s).startswith("pca slice at step 40: 7x7 grid")
