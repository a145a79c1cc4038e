"""A function and a point as a loss of the optimized arguments: what travels, what is baked in, the key."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.objective import as_param, make_objective


def weighted(w: Any, data: Any, scale: float, power: int) -> Any:
    return scale * jnp.sum((w - data) ** power)


def test_the_picked_argument_is_optimized_arrays_and_floats_travel_ints_are_baked_in() -> None:
    data = jnp.array([1.0, 2.0])
    point = (np.array([0.5, 0.5]), data, 3.0, 2)
    o = make_objective(weighted, point, 0, "weighted", False)
    assert o.argnums == 0 and o.idx == (0,) and o.labels == ["w", "data", "scale", "power"]
    assert isinstance(o.params0, jax.Array) and o.params0.dtype == jnp.float32 and not o.params0.weak_type
    assert len(o.dynamic) == 2 and o.dynamic[0] is data and o.dynamic[1] == 3.0  # power=2 is baked in
    # 3 * ((0.5 - 1)² + (0.5 - 2)²) = 7.5
    assert float(o.loss_fn(o.params0, o.dynamic)) == pytest.approx(7.5)
    assert float(jax.jit(o.loss_fn)(o.params0, o.dynamic)) == pytest.approx(7.5)


def test_several_argnums_make_a_tuple_of_params() -> None:
    o = make_objective(weighted, (1.0, 2.0, 0.5, 2), (1, 0), "weighted", False)
    assert o.idx == (1, 0) and isinstance(o.params0, tuple)
    assert [float(v) for v in o.params0] == [2.0, 1.0]  # in argnums order
    # the params follow argnums, (data, w) = (4, 1), and reach their positions: 0.5 * (1 - 4)²
    assert float(o.loss_fn((jnp.float32(4.0), jnp.float32(1.0)), o.dynamic)) == pytest.approx(0.5 * 9.0)


def test_the_key_is_the_same_for_a_re_defined_function_and_differs_for_a_different_program() -> None:
    source = "def cell_fn(x, n):\n    return jnp.sum(x ** n)\n"
    ns: dict[str, Any] = {"jnp": jnp}
    exec(source, ns)
    first = make_objective(ns["cell_fn"], (jnp.ones(3), 2), 0, "cell_fn", False)
    exec(source, ns)  # the cell runs again
    again = make_objective(ns["cell_fn"], (jnp.ones(3), 2), 0, "cell_fn", False)
    assert again.key == first.key
    assert make_objective(ns["cell_fn"], (jnp.ones(3), 3), 0, "cell_fn", False).key != first.key  # n baked in
    assert make_objective(ns["cell_fn"], (jnp.ones(4), 2), 0, "cell_fn", False).key != first.key  # shape
    assert make_objective(ns["cell_fn"], (jnp.ones(3), 2), 0, "cell_fn", True).key != first.key  # has_aux
    half = jnp.ones(3, dtype=jnp.bfloat16)
    assert make_objective(ns["cell_fn"], (half, 2), 0, "cell_fn", False).key != first.key  # dtype


def test_an_object_argument_changed_in_place_is_a_new_key() -> None:
    class Config:
        def __init__(self) -> None:
            self.scale = 1.0

    def scaled(x: Any, config: Config) -> Any:
        return config.scale * x**2

    config = Config()
    first = make_objective(scaled, (1.0, config), 0, "scaled", False)
    assert make_objective(scaled, (1.0, config), 0, "scaled", False).key == first.key
    config.scale = 10.0  # baked into the program: a different program now
    again = make_objective(scaled, (1.0, config), 0, "scaled", False)
    assert again.key != first.key
    assert float(jax.grad(again.loss_fn)(jnp.float32(1.0), again.dynamic)) == 20.0  # d/dx 10 x² at 1


def test_params_are_strongly_typed_floats_where_they_were() -> None:
    weak = jnp.asarray(5.0)
    assert weak.weak_type
    strong = as_param(weak, "x", "f")
    assert float(strong) == 5.0 and not strong.weak_type and strong.dtype == jnp.float32
    assert strong.devices() == weak.devices()
    kept = jnp.ones(2, dtype=jnp.bfloat16)
    assert as_param(kept, "x", "f") is kept
    assert as_param(np.float64(0.25), "x", "f").dtype == jax.dtypes.canonicalize_dtype(np.float64)
    with pytest.raises(JaxGradUsageError, match=r"x of f: it is int32 .* floats \(`5.0`, not `5`\)"):
        as_param(jnp.arange(3), "x", "f")


@pytest.mark.parametrize(
    ("argnums", "ok"),
    [
        (0, 0),
        (np.int64(2), 2),
        ((2, 0), (2, 0)),
        ([1], (1,)),
        (3, None),
        (-1, None),
        (True, None),
        ((0, 0), None),
        ((), None),
    ],
)
def test_argnums_pick_distinct_positions(argnums: Any, ok: Any) -> None:
    def f(a: Any, b: Any, c: Any) -> Any:
        return a + b + c

    point = (1.0, 2.0, 3.0)
    if ok is not None:
        assert make_objective(f, point, argnums, "f", False).argnums == ok
        return
    with pytest.raises(JaxGradUsageError, match=r"has 3 arguments \(positions 0 to 2\)"):
        make_objective(f, point, argnums, "f", False)
