"""What the stepper descends with: optimizers by name or as given, and the learning rate.

An optimizer is built from the learning rate inside the compiled step (the rate is a traced
argument), so changing the rate recompiles nothing; :class:`Optimizer` records how to build
it and the cache key of what was given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from .cache import function_key
from .errors import JaxGradUsageError, did_you_mean

MOMENTUM = 0.9
"""The momentum coefficient β of ``momentum`` and ``nesterov`` (it sets their stable learning rate)."""

OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=MOMENTUM),
    "nesterov": lambda lr: optax.sgd(lr, momentum=MOMENTUM, nesterov=True),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr),
    "nadam": lambda lr: optax.nadam(lr),
    "adamax": lambda lr: optax.adamax(lr),
    "amsgrad": lambda lr: optax.amsgrad(lr),
    "adabelief": lambda lr: optax.adabelief(lr),
    "radam": lambda lr: optax.radam(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adagrad": lambda lr: optax.adagrad(lr),
    "yogi": lambda lr: optax.yogi(lr),
    "lion": lambda lr: optax.lion(lr),
    "lamb": lambda lr: optax.lamb(lr),
}
"""Optimizers by name, each a function of the learning rate (optax's defaults otherwise;
``momentum`` and ``nesterov`` are ``optax.sgd`` with ``momentum=MOMENTUM``, 0.9)."""


class Optimizer(NamedTuple):
    """An optimizer as given, and how to build it from a (traced) learning rate.

    Attributes:
      given: the normalised name, or the object that was passed.
      label: a short name for messages (``custom`` for a transformation object).
      make: learning rate -> ``optax.GradientTransformation``.
      adjustable: False for a fixed transformation, which carries its own learning rate.
      key: what identifies the optimizer in the compile cache.
      refs: objects the cache keeps alive while the key refers to them by identity.
    """

    given: Any
    label: str
    make: Callable[[Any], optax.GradientTransformation]
    adjustable: bool
    key: Hashable
    refs: list[Any]


def resolve_optimizer(value: Any) -> Optimizer:
    """Turn what the user passed into an :class:`Optimizer`.

    Args:
      value: a name from :data:`OPTIMIZERS` (any case), an ``optax.GradientTransformation``,
        or a function of the learning rate that returns one (e.g. ``optax.adam``).

    Returns:
      The resolved :class:`Optimizer`.

    Raises:
      JaxGradUsageError: an unknown name, or something that is not an optimizer.
    """
    if isinstance(value, str):
        name = value.strip().lower()
        if name not in OPTIMIZERS:
            raise JaxGradUsageError(
                f"Unknown optimizer {value!r}.{did_you_mean(name, OPTIMIZERS)} Use one of "
                f"{', '.join(OPTIMIZERS)}, an optax.GradientTransformation (e.g. "
                "`optax.adam(1e-3)`), or a function of the learning rate (e.g. `optax.adam`)."
            )
        return Optimizer(name, name, OPTIMIZERS[name], True, ("name", name), [])
    if isinstance(value, optax.GradientTransformation):
        init_key, init_refs = function_key(value.init)
        update_key, update_refs = function_key(value.update)
        return Optimizer(
            value, "custom", lambda lr: value, False, ("transform", init_key, update_key), init_refs + update_refs
        )
    if callable(value):
        try:
            probe = value(0.1)
        except Exception as exc:
            raise JaxGradUsageError(
                f"optimizer={getattr(value, '__name__', value)!r} was called with a learning rate and "
                f"raised {type(exc).__name__}: {exc}. Pass a name such as 'adam', an optax "
                "transformation, or a function of the learning rate such as `optax.adam`."
            ) from None
        if isinstance(probe, optax.GradientTransformation):
            key, refs = function_key(value)
            label = getattr(value, "__name__", "custom")
            return Optimizer(value, label if label.isidentifier() else "custom", value, True, ("factory", key), refs)
    raise JaxGradUsageError(
        f"optimizer={value!r} is not an optimizer. Pass a name ({', '.join(OPTIMIZERS)}), an "
        "optax.GradientTransformation such as `optax.adam(1e-3)`, or a function of the learning "
        "rate that returns one, such as `optax.adam`."
    )


def check_lr(value: Any, dtypes: Sequence[Any] = ()) -> float:
    """The learning rate as a positive finite float, and not 0 in any of ``dtypes``.

    Args:
      value: what the user passed.
      dtypes: the floating-point dtypes the rate is used in (the parameters'): a rate that
        rounds to 0 in one of them (``1e-300`` in float32) would move nothing, like ``lr=0``.

    Returns:
      ``value`` as a float.

    Raises:
      JaxGradUsageError: not a number, not positive and finite, or 0 in one of ``dtypes``.
    """
    try:
        lr = float(value) if not isinstance(value, bool | str) else math.nan
    except (TypeError, ValueError):
        lr = math.nan
    if not (math.isfinite(lr) and lr > 0):
        raise JaxGradUsageError(f"The learning rate must be a positive number, e.g. 0.1 or 1e-3; got {value!r}.")
    for dtype in dtypes:
        if jnp.issubdtype(dtype, jnp.floating) and np.asarray(lr, dtype=dtype) == 0:
            tiny = float(jnp.finfo(dtype).smallest_subnormal)
            raise JaxGradUsageError(
                f"The learning rate {value!r} is 0 in {np.dtype(dtype).name}, the precision the parameters are "
                f"stepped in, so no step would move them (as with lr=0). Use a rate that {np.dtype(dtype).name} "
                f"can hold, at least {tiny:.3g} and in practice something like 1e-3; for smaller rates, give "
                "parameters of a wider dtype (float64, with jax_enable_x64 on)."
            )
    return lr
