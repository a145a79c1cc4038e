"""Numbers as text, in one place: a scalar to so many digits, an array in full or in brief.

Everything that writes a number for a reader (a result, the descent panel, a stepper's
``repr``, a gradient check) formats it here, so the same value reads the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["compact", "format_array", "number", "scientific"]


def number(value: Any, digits: int = 6) -> str:
    """``value`` in at most ``digits`` significant digits: ``26``, ``0.123457``, ``5e+19``, ``inf``.

    Args:
      value: a real number (a Python, NumPy or 0-d JAX scalar).
      digits: significant digits to keep.
    """
    return f"{float(value):.{digits}g}"


def scientific(value: Any, digits: int = 2) -> str:
    """``value`` as ``1.23e-05``: for errors and tolerances, whose size is the point.

    Args:
      value: a real number.
      digits: digits after the point of the mantissa.
    """
    return f"{float(value):.{digits}e}"


def compact(value: Any, max_items: int = 6, digits: int = 4) -> str:
    """A parameter value, short and rounded: ``4``, ``[2.6, -1.4]``, ``[0, 1, ..., 998, 999] (1000,)``.

    Arrays show their first and last two numbers (flattened) once they have more than
    ``max_items``, followed by their shape; only those numbers leave the device.

    Args:
      value: a real scalar or array.
      max_items: arrays with more elements are abbreviated.
      digits: significant digits per number.
    """
    shape = tuple(np.shape(value))
    if not shape:
        return number(np.asarray(value), digits)
    size = math.prod(shape)
    if size > max_items:
        flat = value.reshape(-1) if hasattr(value, "reshape") else np.reshape(value, -1)
        head, tail = np.asarray(flat[:2]), np.asarray(flat[-2:])
        items = [number(v, digits) for v in head] + ["..."] + [number(v, digits) for v in tail]
    else:
        items = [number(v, digits) for v in np.asarray(value).reshape(-1)]
    text = f"[{', '.join(items)}]"
    return text + (f" {shape}" if size > max_items or len(shape) > 1 else "")


@jax.jit
def _summary(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    flat = jnp.ravel(x)
    stats = jnp.stack([jnp.min(flat), jnp.max(flat), jnp.linalg.norm(flat.astype(jnp.float32))])
    return flat[:3], flat[-3:], stats


def format_array(x: Any, max_items: int = 24) -> str:
    """A value in full for a result: NumPy's layout, 6 digits; big arrays summarised on the device.

    Args:
      x: an array, a Python or NumPy number, or any other value (shown by its ``repr``, cut short).
      max_items: arrays with more elements show their first and last three along each axis.
    """
    size = math.prod(np.shape(x))
    big = size > max(1000, max_items)
    real = isinstance(x, jax.Array) and (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating))
    if big and real:  # complex values have no min or max, and the float32 norm would drop their imaginary parts
        # Only a few corner values and three statistics travel to the host.
        head, tail, stats = (np.asarray(a) for a in _summary(x))
        return (
            f"[{', '.join(number(v, 4) for v in head)}, ..., {', '.join(number(v, 4) for v in tail)}]"
            f"  ({size} values: min {number(stats[0], 4)}, max {number(stats[1], 4)}, norm {number(stats[2], 4)})"
        )
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.extended):
        x = jax.random.key_data(x)  # a PRNG key: show its raw key data
    elif not isinstance(x, bool | int | float | complex | np.ndarray | np.generic | jax.Array):
        text = repr(x)  # not an array: its repr, cut short
        return text if len(text) <= 80 else text[:77] + "..."
    arr = np.asarray(x)
    if arr.ndim == 0:
        return number(arr.item()) if np.issubdtype(arr.dtype, np.floating) else str(arr.item())
    with np.printoptions(precision=6, threshold=max_items, edgeitems=3, suppress=True, linewidth=100):
        return np.array2string(arr, separator=", ")
