"""f on a grid for the panel's pictures: values against closed forms, and compiles counted."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad_magic import plots
from jaxgrad_magic.landscape import GRID_1D, Landscape, coordinate_labels


def test_landscape_of_two_scalars_matches_the_closed_form() -> None:
    def f(x: jax.Array, y: jax.Array) -> jax.Array:
        return x**2 + (y - 1.0) ** 2

    land = Landscape(f, (5.0, 2.0), (0, 1), param_names=["x", "y"])
    assert land.drawable and land.size == 2 and land.labels == ["x", "y"]
    box = plots.start_box(land.start)
    assert box == plots.Box((0.0, 0.0), (10.0, 4.0))
    xs, ys, zs = land.grid(box)
    gx, gy = np.meshgrid(xs, ys)
    np.testing.assert_allclose(zs, gx**2 + (gy - 1.0) ** 2, rtol=1e-5, atol=1e-5)


def test_landscape_of_a_2_vector_and_fixed_arguments() -> None:
    def f(scale: float, v: jax.Array, n: int) -> jax.Array:
        out = 0.0
        for k in range(n):  # a Python int drives a loop: it must stay a constant
            out = out + scale * v[0] ** 2 + k * v[1]
        return out

    land = Landscape(f, (3.0, jnp.array([1.0, -2.0]), 2), 1, param_names=["scale", "v", "n"])
    assert land.labels == ["v[0]", "v[1]"]
    xs, ys, zs = land.grid(plots.Box((-1.0, -1.0), (1.0, 2.0)))
    gx, gy = np.meshgrid(xs, ys)
    np.testing.assert_allclose(zs, 2 * 3.0 * gx**2 + gy, rtol=1e-5, atol=1e-5)


def test_landscape_of_one_scalar_with_aux() -> None:
    def f(w: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.sin(w) + w**2, w * 10

    land = Landscape(f, (0.5,), 0, has_aux=True, param_names=["w"])
    xs, ys, zs = land.grid(plots.start_box(land.start))
    assert ys is None and zs.shape == (GRID_1D,)
    np.testing.assert_allclose(zs, np.sin(xs) + xs**2, rtol=1e-5, atol=1e-5)


def test_more_than_two_parameters_are_not_drawable() -> None:
    land = Landscape(lambda x: jnp.sum(x**2), (jnp.ones(3),), 0, param_names=["x"])
    assert not land.drawable
    with pytest.raises(ValueError, match="one or two"):
        land.grid(plots.Box((0.0,), (1.0,)))


def test_a_rerun_cell_does_not_compile_the_grid_again(compiles: Any) -> None:
    source = "def f(x, y):\n    return (1 - x) ** 2 + 100 * (y - x**2) ** 2\n"
    results, counts = [], []
    ns: dict[str, object] = {}  # the notebook's namespace, as in IPython: one for every cell
    for run in range(2):
        exec(compile(source, f"<cell-{run}>", "exec"), ns)  # a cell run twice: two function objects
        compiles.reset()
        land = Landscape(ns["f"], (-1.5, 2.0), (0, 1), param_names=["x", "y"])
        results.append(land.grid(plots.Box((-2.0, -1.0), (2.0, 3.0)))[2])
        counts.append(compiles.count)
    assert counts[0] >= 1 and counts[1] == 0  # the first grid compiled, the re-run cell's did not
    np.testing.assert_array_equal(results[0], results[1])
    gx, gy = np.meshgrid(np.linspace(-2.0, 2.0, results[0].shape[1]), np.linspace(-1.0, 3.0, results[0].shape[0]))
    np.testing.assert_allclose(results[0], (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2, rtol=1e-4, atol=1e-3)


def test_data_arguments_travel_so_new_data_compiles_nothing(compiles: Any) -> None:
    ns: dict[str, Any] = {"jnp": jnp}
    source = "def fit(w, b, data):\n    return jnp.mean((w * data + b - 2.0 * data) ** 2)\n"
    box = plots.Box((0.0, -1.0), (1.0, 1.0))
    for top in (1.0, 3.0):  # the cell runs again with other data of the same shape
        exec(source, ns)
        data = np.linspace(0.0, top, 500)
        if top == 3.0:
            compiles.reset()
        xs, ys, zs = Landscape(ns["fit"], (0.5, 0.1, jnp.asarray(data)), (0, 1)).grid(box)
        gx, gy = np.meshgrid(xs, ys)
        want = np.mean(((gx - 2.0)[..., None] * data + gy[..., None]) ** 2, axis=-1)
        np.testing.assert_allclose(zs, want, rtol=1e-5, atol=1e-5)
    assert compiles.count == 0


def test_a_changed_global_is_a_different_grid(compiles: Any) -> None:
    ns: dict[str, object] = {"jnp": jnp, "c": 1.0}
    exec("def f(x):\n    return c * x**2\n", ns)
    box = plots.Box((-1.0,), (1.0,))
    xs, _, a = Landscape(ns["f"], (1.0,), 0).grid(box)
    ns["c"] = 3.0
    compiles.reset()
    b = Landscape(ns["f"], (1.0,), 0).grid(box)[2]
    assert compiles.count >= 1  # a new program for the new constant, not the old one reused
    np.testing.assert_allclose(a, xs**2, rtol=1e-6)
    np.testing.assert_allclose(b, 3.0 * xs**2, rtol=1e-6)


def test_coordinate_labels() -> None:
    params = (jnp.ones(2), {"b": 1.0, "w": jnp.ones((1, 2))})
    assert coordinate_labels(params, (0, 2), ["x", "y", "p"]) == [
        "x[0]",
        "x[1]",
        "p['b']",
        "p['w'][0, 0]",
        "p['w'][0, 1]",
    ]
