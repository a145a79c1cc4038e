"""Where a function is evaluated: at=, else defaults, else notebook variables, else nowhere."""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.point import (
    AT,
    DEFAULTS,
    MISSING,
    NONE,
    VARIABLES,
    dtype_of,
    is_number,
    is_numeric_tree,
    parameters,
    resolve_point,
)


def two(x: Any, y: Any) -> Any:
    return x**2 + (y - 1) ** 2


def one(x: Any) -> Any:
    return x


def with_default(x: Any, y: Any = 2.0) -> Any:
    return x * y


def all_defaults(x: Any = 1.0, y: Any = 2.0) -> Any:
    return x * y


def test_parameters_are_the_positional_ones() -> None:
    def f(a: Any, b: Any = 1.0, *rest: Any, c: Any, **kw: Any) -> Any:
        return a

    assert [p.name for p in parameters(f)] == ["a", "b"]
    assert [p.name for p in parameters(functools.partial(two, 1.0))] == ["y"]
    assert parameters(42) == []  # type: ignore[arg-type]


def test_parameters_follow_a_redefined_signature() -> None:
    def f(x: Any) -> Any:
        return x

    assert [p.name for p in parameters(f)] == ["x"]
    f.__defaults__ = (3.0,)
    assert parameters(f)[0].default == 3.0


class TestAt:
    def test_tuple_of_all_arguments(self) -> None:
        point = resolve_point(two, "two", at=(5.0, 2.0), at_names=("a", "b"))
        assert point.args == (5.0, 2.0)
        assert point.source == AT
        assert point.names == ("a", "b")

    def test_one_argument(self) -> None:
        x = jnp.ones(3)
        point = resolve_point(one, "one", at=x, at_names=("x",))
        assert point.args == (x,) and point.names == ("x",)

    def test_a_tuple_is_the_argument_of_a_one_parameter_function(self) -> None:
        assert resolve_point(one, "one", at=(1.0, 2.0)).args == ((1.0, 2.0),)

    def test_a_tuple_is_all_the_arguments_of_a_function_with_star_args(self) -> None:
        def spread(*xs: Any) -> Any:
            return xs

        def first_and_rest(x: Any, *rest: Any) -> Any:
            return x

        assert resolve_point(spread, "spread", at=(1.0, 2.0)).args == (1.0, 2.0)
        assert resolve_point(spread, "spread", at=1.0).args == (1.0,)
        assert resolve_point(first_and_rest, "first_and_rest", at=(1.0, 2.0, 3.0)).args == (1.0, 2.0, 3.0)
        assert resolve_point(first_and_rest, "first_and_rest", at=((1.0, 2.0),)).args == ((1.0, 2.0),)
        with pytest.raises(JaxGradUsageError, match="a tuple of 1 or more"):
            resolve_point(first_and_rest, "first_and_rest", at=())

    def test_missing_trailing_arguments_take_their_defaults(self) -> None:
        assert resolve_point(with_default, "with_default", at=3.0).args == (3.0, 2.0)
        assert resolve_point(with_default, "with_default", at=(3.0, 4.0)).args == (3.0, 4.0)
        assert resolve_point(all_defaults, "all_defaults", at=(5.0,)).args == (5.0, 2.0)

    @pytest.mark.parametrize(
        ("at", "got"), [(5.0, "one value"), ((1.0, 2.0, 3.0), "a tuple of 3"), ((1.0,), "a tuple of 1")]
    )
    def test_wrong_number_of_arguments(self, at: object, got: str) -> None:
        with pytest.raises(JaxGradUsageError) as info:
            resolve_point(two, "two", at=at)
        message = str(info.value)
        assert "two(x, y)" in message and "a tuple of 2" in message and got in message
        assert "at=(x, y)" in message

    def test_wrong_number_with_optional_parameters_gives_the_range(self) -> None:
        with pytest.raises(JaxGradUsageError, match="a tuple of 1 to 2"):
            resolve_point(with_default, "with_default", at=(1.0, 2.0, 3.0))


class TestWithoutAt:
    def test_defaults_come_first(self) -> None:
        point = resolve_point(all_defaults, "all_defaults", namespace={"x": 9.0, "y": 9.0})
        assert point.args == (1.0, 2.0) and point.source == DEFAULTS

    def test_notebook_variables_named_like_the_parameters(self) -> None:
        point = resolve_point(two, "two", namespace={"x": 5.0, "y": 2.0})
        assert point.args == (5.0, 2.0)
        assert point.source == VARIABLES
        assert point.names == ("x", "y")

    def test_defaults_and_variables_together(self) -> None:
        point = resolve_point(with_default, "with_default", namespace={"x": 4.0})
        assert point.args == (4.0, 2.0)
        assert point.source == "defaults and notebook variables"
        assert point.names == ("x", None)

    def test_pytrees_and_arrays_are_points(self) -> None:
        params = {"w": jnp.ones(2), "b": [np.float32(0.5)]}
        assert resolve_point(one, "one", namespace={"x": params}).args == (params,)

    @pytest.mark.parametrize("value", ["text", None, True, [], {"a": "b"}, print])
    def test_variables_that_are_not_numbers_are_ignored(self, value: object) -> None:
        point = resolve_point(one, "one", namespace={"x": value})
        assert point.args is None and point.source == NONE and point.missing == ("x",)

    def test_nothing_found_lists_what_is_missing(self) -> None:
        point = resolve_point(two, "two", namespace={"x": 1.0})
        assert point.args is None
        assert point.source == NONE
        assert point.missing == ("y",)

    def test_at_wins_over_variables(self) -> None:
        assert resolve_point(two, "two", at=(1.0, 1.0), namespace={"x": 5.0, "y": 2.0}).args == (1.0, 1.0)


def test_numeric_trees() -> None:
    assert is_numeric_tree(1.0)
    assert is_numeric_tree({"a": jnp.ones(2), "b": (np.zeros(1), 3)})
    assert not is_numeric_tree(())
    assert not is_numeric_tree(True)
    assert not is_numeric_tree(["a"])
    assert not is_numeric_tree(MISSING)
    assert not is_numeric_tree({"w": 1.0, 1: 2.0})  # keys that do not sort: not a pytree
    assert not is_numeric_tree(np.array(["a", "b"]))


class _ArrayLike:
    def __jax_array__(self) -> Any:
        return jnp.ones(2)


@pytest.mark.parametrize(
    "leaf",
    [
        1.0,
        3,
        True,
        1 + 2j,
        np.float32(1),
        np.int64(2),
        np.zeros(2),
        jnp.ones(2),
        jnp.ones(2, jnp.bfloat16),
        _ArrayLike(),
    ],
)
def test_numbers(leaf: Any) -> None:
    assert is_number(leaf)


@pytest.mark.parametrize("leaf", ["a", None, object(), np.array(["a"]), np.array([None]), np.str_("a")])
def test_not_numbers(leaf: Any) -> None:
    assert not is_number(leaf)


def test_dtype_of_a_leaf() -> None:
    assert dtype_of(True) == np.dtype(bool) and dtype_of(np.float32(1)) == np.float32
    assert dtype_of(2.0) == np.float64 and dtype_of(jnp.ones(2, jnp.bfloat16)) == jnp.bfloat16
