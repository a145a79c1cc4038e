"""Optimizers by name, as objects or as functions of the learning rate; the learning-rate check."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.optimizers import OPTIMIZERS, check_lr, resolve_optimizer


def first_update(opt: optax.GradientTransformation, grad: Any, params: Any) -> np.ndarray:
    updates, _ = opt.update(grad, opt.init(params), params)
    return np.asarray(updates)


def test_a_name_in_any_case_resolves_to_the_same_adjustable_optimizer() -> None:
    a, b = resolve_optimizer("adam"), resolve_optimizer("  ADAM ")
    assert a.given == b.given == a.label == "adam" and a.adjustable
    assert a.key == b.key and a.refs == []
    assert resolve_optimizer("sgd").key != a.key
    # sgd's first update is -lr * grad, whatever the learning rate the optimizer is built with.
    grad, params = jnp.array([1.0, -2.0]), jnp.zeros(2)
    np.testing.assert_allclose(first_update(resolve_optimizer("sgd").make(0.25), grad, params), [-0.25, 0.5])


def test_every_name_builds_a_transformation() -> None:
    for name, make in OPTIMIZERS.items():
        assert isinstance(make(0.1), optax.GradientTransformation), name
        assert resolve_optimizer(name).label == name


def test_a_transformation_object_is_used_as_is_and_carries_its_own_learning_rate() -> None:
    chained = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.05))
    opt = resolve_optimizer(chained)
    assert opt.given is chained and opt.label == "custom" and not opt.adjustable
    assert opt.make(0.5) is chained and opt.make(1e-9) is chained
    assert resolve_optimizer(chained).key == opt.key  # the same object: the same compiled programs


def test_a_function_of_the_learning_rate_is_called_with_it() -> None:
    opt = resolve_optimizer(optax.adam)
    assert opt.given is optax.adam and opt.label == "adam" and opt.adjustable
    assert resolve_optimizer(optax.adam).key == opt.key
    # adam's first update is -lr * sign(grad) (up to eps): the rate reaches the transformation.
    update = first_update(opt.make(0.01), jnp.array([3.0, -0.5]), jnp.zeros(2))
    np.testing.assert_allclose(update, [-0.01, 0.01], rtol=1e-5)  # float32 bias correction
    assert resolve_optimizer(lambda lr: optax.sgd(lr, momentum=0.5)).label == "custom"  # '<lambda>'


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("adamm", "Did you mean 'adam'"),
        ("nope", "Unknown optimizer 'nope'"),
        (42, "is not an optimizer"),
        (lambda lr: lr * 2, "is not an optimizer"),
        (lambda: optax.sgd(0.1), r"was called with a learning rate and raised TypeError"),
    ],
)
def test_what_is_not_an_optimizer_says_what_to_pass(value: Any, match: str) -> None:
    with pytest.raises(JaxGradUsageError, match=match) as info:
        resolve_optimizer(value)
    assert "optax" in str(info.value)


@pytest.mark.parametrize("value", [0.1, 1, np.float32(0.5), np.float64(1e-3), jnp.asarray(0.2)])
def test_a_positive_number_is_a_learning_rate(value: Any) -> None:
    lr = check_lr(value)
    assert isinstance(lr, float) and lr == pytest.approx(float(value))


@pytest.mark.parametrize("value", [0, -0.1, math.nan, math.inf, True, "0.1", None, [0.1]])
def test_anything_else_is_not_a_learning_rate(value: Any) -> None:
    with pytest.raises(JaxGradUsageError, match=r"positive number, e\.g\. 0\.1"):
        check_lr(value)


@pytest.mark.parametrize(
    ("value", "dtype", "smallest"),
    [(1e-300, np.float32, "1.4e-45"), (1e-8, np.float16, "5.96e-08"), (1e-42, jnp.bfloat16, "9.18e-41")],
)
def test_a_rate_that_is_zero_in_the_parameters_dtype_is_refused(value: float, dtype: Any, smallest: str) -> None:
    name = np.dtype(dtype).name
    with pytest.raises(JaxGradUsageError, match=rf"is 0 in {name}.*as with lr=0.*at least {smallest}") as caught:
        check_lr(value, [np.dtype(np.float64), np.dtype(dtype)])
    assert "\n" not in str(caught.value)
    tiny = float(smallest) * 1.01  # the smallest number the dtype holds is a rate it can step with
    assert check_lr(tiny, [np.dtype(dtype)]) == tiny
    assert check_lr(value, [np.dtype(np.float64)]) == value  # float64 holds it
