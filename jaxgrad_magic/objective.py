"""What the stepper minimises: a function and a point, as a loss of the optimized arguments.

:func:`make_objective` picks the arguments at ``argnums`` as the parameters (strongly typed
floats), lets the other arrays and floats travel as jit arguments, bakes in everything else
(ints, strings, objects), and keys the result for the compile cache.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .argnums import Argnums, JaxArgnums, param_name
from .cache import function_key
from .errors import JaxGradUsageError
from .modules import Lifted, lift
from .point import dtype_of, parameters


class Objective(NamedTuple):
    """A function at a point, split into what is optimized, what travels, and what is baked in.

    Attributes:
      picked: the optimized positions (:attr:`argnums` as JAX takes them, :attr:`idx` as a tuple).
      labels: a name for every positional argument, for messages.
      params0: the starting parameters: one argument, or a tuple for several ``argnums``.
      dynamic: the other arrays and floats, passed to the compiled programs as arguments.
      loss_fn: ``(params, dynamic) -> fn(*point)`` with the parameters and arguments in place.
      key: identifies the function, the baked-in values and the signature, for the compile cache.
      refs: objects the cache keeps alive while ``key`` refers to them by identity.
      lifted: how modules (Equinox, Flax NNX) among the optimized arguments were split into what
        is optimized and the rest (see :mod:`jaxgrad_magic.modules`), else None.
    """

    picked: Argnums
    labels: list[str]
    params0: Any
    dynamic: tuple[Any, ...]
    loss_fn: Callable[[Any, Any], Any]
    key: Hashable
    refs: list[Any]
    lifted: Lifted | None = None

    @property
    def argnums(self) -> JaxArgnums:
        """The optimized positions as given: an int, or a tuple of ints."""
        return self.picked.jax

    @property
    def idx(self) -> tuple[int, ...]:
        """The optimized positions as a tuple."""
        return self.picked.positions

    def as_given(self, params: Any) -> Any:
        """``params`` (optimized values, structured like :attr:`params0`) in the kinds given: a module
        given as an argument comes back as a module of its type, holding these values."""
        if self.lifted is None:
            return params
        lifted = self.lifted
        return self.picked.join(
            [lifted.modules(i, v) for i, v in zip(self.idx, self.picked.split(params), strict=True)]
        )


def make_objective(
    fn: Callable[..., Any], point: tuple[Any, ...], argnums: Any, fn_name: str, has_aux: bool
) -> Objective:
    """Split ``fn(*point)`` into a loss of the arguments at ``argnums``.

    Args:
      fn: the loss function.
      point: all positional arguments.
      argnums: which arguments to optimize: an int, or a tuple of distinct ints.
      fn_name: the name used in messages.
      has_aux: ``fn`` returns ``(loss, aux)`` (part of the cache key).

    Returns:
      The :class:`Objective`. A module (Equinox, Flax NNX) among the optimized arguments is
      optimized over what its framework differentiates; the rest of it travels or is baked in.

    Raises:
      JaxGradUsageError: ``argnums`` does not pick arguments, or a picked argument is not floating point.
    """
    picked = _picked(argnums, len(point), fn_name)
    idx = picked.positions
    labels = arg_labels(fn, len(point))
    lifted = lift(fn, point, idx)
    if lifted is not None:  # the modules' rest is one more argument, after the others
        fn, point = lifted.fn, lifted.args
        labels.append("the modules' other state")
    params0 = picked.join(
        [jax.tree_util.tree_map(lambda leaf, i=i: as_param(leaf, labels[i], fn_name), point[i]) for i in idx]
    )
    rest = tuple(point[i] for i in range(len(point)) if i not in idx)
    rest_leaves, rest_def = jax.tree_util.tree_flatten(rest)
    mask = tuple(is_dynamic(x) for x in rest_leaves)
    dynamic = tuple(x for x, d in zip(rest_leaves, mask, strict=True) if d)
    static = [x for x, d in zip(rest_leaves, mask, strict=True) if not d]
    loss_fn = _loss_fn(fn, len(point), picked, rest_def, mask, static)
    fn_key, fn_refs = function_key(fn)
    # The baked-in values are keyed as the function's own globals and closures are: by what they
    # hold (an object by its attributes), so a value changed in place is a new program, not a stale one.
    static_key, static_refs = function_key(tuple(static))
    key = ("stepper", fn_key, picked.jax, has_aux, rest_def, mask, static_key, signature((params0, dynamic)))
    return Objective(picked, labels, params0, dynamic, loss_fn, key, fn_refs + static_refs, lifted)


def _picked(argnums: Any, n: int, fn_name: str) -> Argnums:
    """``argnums`` read and checked against ``n`` arguments, else a teaching error."""
    picked = Argnums.read(argnums)
    if picked is not None and picked.outside(n) is None and not picked.repeats:
        return picked
    raise JaxGradUsageError(
        f"argnums={argnums!r} does not pick arguments of {fn_name} at the given point, which has {n} "
        f"argument{'s' * (n != 1)} (positions 0 to {n - 1}). Use an int such as `argnums=0`, or distinct "
        "positions such as `argnums=(0, 1)`."
    )


def arg_labels(fn: Callable[..., Any], n: int) -> list[str]:
    """The names of ``fn``'s first ``n`` positional parameters (``argK`` past its signature)."""
    names = [p.name for p in parameters(fn)]
    return [param_name(names, i) for i in range(n)]


def as_param(leaf: Any, label: str, fn_name: str) -> jax.Array:
    """A strongly typed float array, so the second call does not retrace on a weak type."""
    dtype = dtype_of(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):  # jnp knows bfloat16 is a float
        raise JaxGradUsageError(
            f"Cannot descend on {label} of {fn_name}: it is {dtype} ({leaf!r}), and gradient descent "
            f"needs real floating-point parameters. Pass floats (`5.0`, not `5`), or convert with "
            f"`jnp.asarray({label}, dtype=jnp.float32)`."
        )
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if not isinstance(leaf, jax.Array):
        return jax.device_put(np.asarray(leaf, dtype=dtype))
    if leaf.dtype == dtype and not leaf.weak_type:
        return leaf
    # A weakly typed array: the same values, strongly typed, where the array was placed.
    return jax.device_put(np.asarray(leaf, dtype=dtype), leaf.sharding if leaf.committed else None)


def is_dynamic(leaf: Any) -> bool:
    """Arrays and floats travel as jit arguments; ints, strings and objects are baked in."""
    if isinstance(leaf, bool | int):
        return False
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | float | complex)


def signature(tree: Any) -> Hashable:
    """What a compile depends on: the structure, and each leaf's type, shape, dtype, weak type and
    sharding."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (
        treedef,
        tuple(
            (
                type(x).__name__,
                np.shape(x),
                str(dtype_of(x)),
                bool(getattr(x, "weak_type", False)),
                x.sharding if isinstance(x, jax.Array) else None,
            )
            for x in leaves
        ),
    )


def _loss_fn(
    fn: Callable[..., Any],
    n: int,
    picked: Argnums,
    rest_def: Any,
    mask: tuple[bool, ...],
    static: list[Any],
) -> Callable[[Any, Any], Any]:
    """``fn`` as a function of (optimized params, dynamic other arguments); the rest is baked in."""
    position = {i: k for k, i in enumerate(picked.positions)}

    def loss_fn(params: Any, dynamic: Any) -> Any:
        dyn, stat = iter(dynamic), iter(static)
        rest = iter(jax.tree_util.tree_unflatten(rest_def, [next(dyn) if d else next(stat) for d in mask]))
        values = picked.split(params)
        return fn(*(values[position[i]] if i in position else next(rest) for i in range(n)))

    return loss_fn
