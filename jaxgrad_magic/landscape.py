"""``f`` on a grid around the descent, for the panel's contour and curve pictures.

The JAX side of the pictures: the function at the stepper's point, as a function of its
flattened parameters, evaluated over a box in one jitted ``jax.vmap`` call. The drawing
itself (:mod:`jaxgrad_magic.plots`) is plain NumPy, matplotlib and Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .argnums import Argnums, JaxArgnums
from .cache import CACHE
from .objective import make_objective
from .plots import Box
from .point import parameters

GRID_2D = 48  # points per side of the contour grid
GRID_1D = 241


class Landscape:
    """``f`` as a function of the flattened differentiated parameters, on a grid.

    Drawable when those parameters have one or two elements in all (two scalars, one
    2-vector, one scalar). The grid is evaluated in one jitted ``jax.vmap`` call, cached
    per function. The arguments are split as the stepper splits them
    (:func:`jaxgrad_magic.objective.make_objective`): arrays and floats travel as arguments,
    so a re-run cell with new data compiles nothing and no data is baked into the program.

    Args:
      fn: the function; its first output is used when ``has_aux``.
      args: all positional arguments at the start point.
      argnums: which arguments are the parameters.
      has_aux: ``fn`` returns ``(value, aux)``.
      param_names: the names to label the parameters with; by default the function's own
        positional parameter names.

    Raises:
      JaxGradUsageError: ``argnums`` does not pick arguments, or a picked one is not floating point.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        argnums: JaxArgnums,
        *,
        has_aux: bool = False,
        param_names: Sequence[str] | None = None,
    ) -> None:
        self.has_aux = has_aux
        self._objective = make_objective(fn, tuple(args), argnums, getattr(fn, "__name__", "f"), has_aux)
        params = self._objective.params0
        flat, self._unravel = ravel_pytree(params)
        self.size = int(flat.size)
        self.dtype = flat.dtype
        self.start = np.asarray(flat, dtype=np.float64)
        if param_names is None:
            param_names = [p.name for p in parameters(fn)]
        self.labels = coordinate_labels(params, self._objective.argnums, param_names)
        self._evaluate: Callable[[Any, Any], Any] | None = None

    @property
    def drawable(self) -> bool:
        """True for one or two parameters in all."""
        return self.size in (1, 2)

    def _grid_function(self) -> Callable[[Any, Any], Any]:
        loss_fn, unravel, has_aux = self._objective.loss_fn, self._unravel, self.has_aux

        def build() -> Callable[[Any, Any], Any]:
            def at(flat: Any, dynamic: Any) -> Any:
                out = loss_fn(unravel(flat), dynamic)
                return jnp.reshape(out[0] if has_aux else out, ())

            return jax.jit(jax.vmap(at, in_axes=(0, None)))

        return CACHE.get_or_build(("landscape", self._objective.key), self._objective.refs, build)

    def grid(self, box: Box) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``f`` on a regular grid over ``box``.

        Returns:
          ``(xs, ys, zs)``: for two parameters ``zs`` has shape ``(len(ys), len(xs))``;
          for one, ``ys`` is None and ``zs`` has shape ``(len(xs),)``.

        Raises:
          ValueError: the parameters are not drawable (more than two numbers).
        """
        if not self.drawable:
            raise ValueError(f"f has {self.size} parameters here; a landscape is drawn for one or two.")
        if self._evaluate is None:
            self._evaluate = self._grid_function()
        if self.size == 1:
            xs = np.linspace(box.lo[0], box.hi[0], GRID_1D)
            zs = np.asarray(self._evaluate(xs.astype(self.dtype)[:, None], self._objective.dynamic), dtype=np.float64)
            return xs, None, zs
        xs = np.linspace(box.lo[0], box.hi[0], GRID_2D)
        ys = np.linspace(box.lo[1], box.hi[1], GRID_2D)
        gx, gy = np.meshgrid(xs, ys)
        flat = np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1).astype(self.dtype)
        zs = np.asarray(self._evaluate(flat, self._objective.dynamic), dtype=np.float64).reshape(GRID_2D, GRID_2D)
        return xs, ys, zs


def coordinate_labels(params: Any, argnums: JaxArgnums, param_names: Sequence[str]) -> list[str]:
    """A label for every number in ``params``, flattened in ``ravel_pytree`` order.

    Args:
      params: the differentiated parameters (a tuple of them for several ``argnums``).
      argnums: which positional arguments they are.
      param_names: the function's positional parameter names.

    Returns:
      Labels such as ``["x", "y"]`` or ``["x[0]", "x[1]"]``.
    """
    picked = Argnums.of(argnums)
    labels: list[str] = []
    for name, arg in zip(picked.names(param_names), picked.split(params), strict=True):
        for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            base = name + (jax.tree_util.keystr(path) if path else "")
            shape = np.shape(leaf)
            if shape == ():
                labels.append(base)
            else:
                labels.extend(f"{base}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*shape))
    return labels
