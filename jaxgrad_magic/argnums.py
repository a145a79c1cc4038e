"""Which positional arguments are differentiated or optimized: ``argnums``, read once.

JAX takes ``argnums`` as one int or a tuple of ints, and the two forms shape its results
differently (one gradient, or a tuple of them). :class:`Argnums` keeps both facts, the
positions and whether one int was given, so code downstream neither re-derives them nor
guesses at the result's structure. The checks every caller shares (integers, in range, each
once) live here too; each caller words the error for its own context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import JaxGradUsageError

JaxArgnums = int | tuple[int, ...]
"""``argnums`` as JAX takes it: one position, or a tuple of positions."""


def param_name(names: Sequence[str], i: int) -> str:
    """The name of positional argument ``i``: its parameter's, or ``arg{i}`` past the signature (``*args``)."""
    return names[i] if i < len(names) else f"arg{i}"


def position(value: Any) -> int | None:
    """``value`` as a Python int when it is an integer (NumPy's too), else None; booleans are not positions."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        return None
    return int(value)


# Not a NamedTuple: a tuple could be handed to JAX as argnums by mistake, and read as positions.
@dataclass(frozen=True, slots=True)
class Argnums:
    """The differentiated (or optimized) positions, and the form JAX's results take for them.

    Attributes:
      positions: the positions, in the order given.
      single: one int was given, so JAX returns one derivative, not a tuple of them.
    """

    positions: tuple[int, ...]
    single: bool

    @classmethod
    def of(cls, argnums: JaxArgnums) -> Argnums:
        """JAX's ``argnums`` (an int or a tuple of ints, already checked) as :class:`Argnums`."""
        if isinstance(argnums, int):
            return cls((argnums,), True)
        return cls(tuple(argnums), False)

    @classmethod
    def read(cls, value: Any) -> Argnums | None:
        """``value`` as :class:`Argnums` when it is an integer or a non-empty list of them, else None.

        NumPy integers (``np.int64(1)``, what array code hands around) count as ints, and a
        list or a 1-d integer array as a tuple. Nothing is checked against a function: see
        :meth:`outside` and :attr:`repeats`.
        """
        one = position(value)
        if one is not None:
            return cls((one,), True)
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, tuple | list) or not value:
            return None
        positions = tuple(position(v) for v in value)
        if None in positions:
            return None
        return cls(tuple(p for p in positions if p is not None), False)

    @property
    def jax(self) -> JaxArgnums:
        """The form ``jax.grad`` takes and results report: an int, or a tuple of ints."""
        return self.positions[0] if self.single else self.positions

    @property
    def repeats(self) -> bool:
        """True when a position is given twice."""
        return len(set(self.positions)) != len(self.positions)

    def outside(self, n: int | None) -> int | None:
        """The first position not in ``range(n)``, else None; ``n=None`` sets no upper bound (``*args``)."""
        return next((i for i in self.positions if i < 0 or (n is not None and i >= n)), None)

    def names(self, param_names: Sequence[str]) -> tuple[str, ...]:
        """The names of the picked arguments (see :func:`param_name`)."""
        return tuple(param_name(param_names, i) for i in self.positions)

    def split(self, values: Any) -> tuple[Any, ...]:
        """Values in JAX's structure for these argnums (one, or a tuple) as one per position."""
        return (values,) if self.single else tuple(values)

    def join(self, values: Sequence[Any]) -> Any:
        """One value per position in JAX's structure: the value itself for one int, else a tuple."""
        return values[0] if self.single else tuple(values)


def as_argnums(value: Any, src: str | None = None) -> Argnums:
    """``value`` as :class:`Argnums`, or the teaching error for ``argnums=`` that is not integers.

    Args:
      value: the given argnums.
      src: how the user wrote it, for the message (default: its repr).

    Raises:
      JaxGradUsageError: ``value`` is not an integer or a non-empty sequence of integers.
    """
    picked = Argnums.read(value)
    if picked is not None:
        return picked
    shown = repr(value) if src is None else src
    listed = value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value
    if isinstance(listed, tuple | list):
        raise JaxGradUsageError(f"argnums={shown} must list integer positions, e.g. `argnums=0,1`; got {listed!r}.")
    raise JaxGradUsageError(
        f"argnums={shown} must be an integer or integers: `argnums=0`, `argnums=0,1` or "
        "`argnums=(0, 1)`; or name the parameters with `wrt=x,y`."
    )
