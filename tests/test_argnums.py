"""argnums read once: JAX's two forms, the shared checks, the parameter-name fallback."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from jaxgrad_magic.argnums import Argnums, as_argnums, param_name
from jaxgrad_magic.errors import JaxGradUsageError


@pytest.mark.parametrize(
    ("given", "positions", "single"), [(1, (1,), True), ((0, 2), (0, 2), False), ((1,), (1,), False)]
)
def test_of_keeps_the_form_jax_was_given(given: Any, positions: tuple[int, ...], single: bool) -> None:
    picked = Argnums.of(given)
    assert (picked.positions, picked.single) == (positions, single)
    assert picked.jax == given and type(picked.jax) is type(given)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(np.int64(2), 2), ([1, 0], (1, 0)), ((np.int32(0),), (0,)), (np.array([0, 1]), (0, 1))],
)
def test_read_takes_numpy_integers_and_lists(value: Any, expected: Any) -> None:
    picked = Argnums.read(value)
    assert picked is not None and picked.jax == expected and type(picked.jax) is type(expected)
    assert all(type(p) is int for p in picked.positions)


@pytest.mark.parametrize("value", [True, np.True_, 1.0, "0", (), [], (0, "a"), (0, None), None, np.zeros((2, 2), int)])
def test_read_refuses_what_is_not_positions(value: Any) -> None:
    assert Argnums.read(value) is None


def test_range_and_repeats() -> None:
    assert Argnums.of((0, 2)).outside(3) is None
    assert Argnums.of((0, 3)).outside(3) == 3
    assert Argnums.of(-1).outside(3) == -1
    assert Argnums.of(7).outside(None) is None  # *args: no upper bound
    assert Argnums.of((0, 0)).repeats and not Argnums.of((0, 1)).repeats


def test_names_split_and_join() -> None:
    assert param_name(("x", "y"), 1) == "y" and param_name(("x", "y"), 3) == "arg3"
    assert Argnums.of((1, 2)).names(("x", "y")) == ("y", "arg2")
    one, two = Argnums.of(0), Argnums.of((0, 1))
    assert one.split(5.0) == (5.0,) and one.join([5.0]) == 5.0
    assert two.split([5.0, 2.0]) == (5.0, 2.0) and two.join([5.0, 2.0]) == (5.0, 2.0)


def test_as_argnums_messages() -> None:
    with pytest.raises(JaxGradUsageError, match=r"argnums=1\.0 must be an integer or integers"):
        as_argnums(1.0)
    with pytest.raises(JaxGradUsageError, match=r"argnums=\(0, 'a'\) must list integer positions.*got \(0, 'a'\)"):
        as_argnums((0, "a"))
    with pytest.raises(JaxGradUsageError, match=r"argnums=which must list integer positions.*got \[0\.5\]"):
        as_argnums(np.array([0.5]), "which")
