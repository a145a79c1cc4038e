"""Equinox and Flax NNX modules as parameters: only what the frameworks differentiate.

A model passed as a differentiated argument (``%jgrad loss at=(model, X, Y)``) is split the
way its framework splits it for training:

* **Equinox**: the inexact arrays, as ``eqx.partition(m, eqx.is_inexact_array)`` picks them;
  non-array leaves (an activation function) and integer arrays ride along unchanged. The
  derivative is the module with ``None`` elsewhere, as ``eqx.filter_grad`` returns it.
* **Flax NNX**: the ``nnx.Param`` variables, ``nnx.split(m, nnx.Param, ...)``; batch statistics
  and RNG state are kept as they are, not differentiated. The derivative is the ``State`` of
  the parameters, as ``nnx.grad`` returns it.

:func:`lift` turns ``fn`` and its point into a function of the differentiated parts alone:
every module in a differentiated argument is replaced by its differentiated part, and the
rest of it travels as one extra, last argument (its arrays; PRNG keys as their raw data) or is
baked into the function (everything else). Inside, the modules are put back together before
``fn`` sees them, so ``fn`` is called with a real module, freshly built in the current trace
(NNX lets a module change its batch statistics or RNG counter only in the trace that made it).

Nothing here imports either framework: a value is one of theirs only if its class is, and then
the framework is already in ``sys.modules``. No IPython, no widgets.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

EQUINOX = "equinox"
NNX = "flax.nnx"
_FRAMEWORKS = (EQUINOX, NNX)
_ARRAY, _STATIC = "array", "static"
_KEY = "key:"  # a PRNG key array, travelling as its raw data: "key:<impl>"


def framework(value: Any) -> str | None:
    """``"equinox"`` or ``"flax.nnx"`` when ``value`` is a module of that framework, else None.

    Neither framework is imported here: a value can only be one of their modules when the
    framework is already loaded.
    """
    for name in _FRAMEWORKS:
        mod = sys.modules.get(name)
        if mod is not None and isinstance(value, mod.Module):
            return name
    return None


def is_module(value: Any) -> bool:
    """True for an ``equinox.Module`` or a ``flax.nnx.Module``."""
    return framework(value) is not None


def holds_module(tree: Any) -> bool:
    """True when ``tree`` is a module or a pytree with a module in it."""
    if not any(name in sys.modules for name in _FRAMEWORKS):
        return False  # the common case: neither framework loaded, so no module anywhere
    try:
        leaves = jax.tree_util.tree_leaves(tree, is_leaf=is_module)
    except (TypeError, ValueError):  # not a pytree JAX can flatten: the caller's checks explain it
        return False
    return any(is_module(leaf) for leaf in leaves)


class Piece(NamedTuple):
    """How one module was split, so it can be put back together (hashable: it keys compiles).

    Attributes:
      framework: ``"equinox"`` or ``"flax.nnx"``.
      graphdef: NNX's ``GraphDef`` of the module; None for Equinox.
      rest_def: the tree structure of what is not differentiated.
      kinds: per leaf of the rest: ``"array"`` (travels as an argument), ``"key:<impl>"`` (a PRNG
        key, travelling as its raw data) or ``"static"`` (baked into the function).
    """

    framework: str
    graphdef: Any
    rest_def: Any
    kinds: tuple[str, ...]


@jax.tree_util.register_pytree_node_class
class Layout:
    """Where the modules sit in the differentiated arguments, and how to rebuild each.

    A pytree whose leaves are the baked-in values (activation functions, Python numbers) and
    whose structure holds the rest (positions, tree structures, NNX graph definitions), so the
    compile cache keys a function holding it by what it holds.

    Args:
      positions: the differentiated positions that hold modules.
      outer: per position, the argument's structure with each module as one leaf.
      slots: per position, which of those leaves are modules.
      pieces: per module, in order, how it was split.
      static: the baked-in leaves of all the modules, in order.
    """

    def __init__(
        self,
        positions: tuple[int, ...],
        outer: tuple[Any, ...],
        slots: tuple[tuple[int, ...], ...],
        pieces: tuple[Piece, ...],
        static: tuple[Any, ...],
    ) -> None:
        self.positions, self.outer, self.slots, self.pieces, self.static = positions, outer, slots, pieces, static

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return self.static, (self.positions, self.outer, self.slots, self.pieces)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: Sequence[Any]) -> Layout:
        return cls(*aux, tuple(children))

    def frameworks(self) -> tuple[str, ...]:
        """The framework of each module, in order."""
        return tuple(p.framework for p in self.pieces)

    def rebuild(self, args: Sequence[Any], travel: Sequence[Any]) -> list[Any]:
        """``args`` (differentiated parts in place of the modules) with the modules put back together.

        Args:
          args: all positional arguments, each module replaced by its differentiated part.
          travel: the rest's travelling leaves (arrays, and PRNG keys as raw data), in order.

        Returns:
          The arguments, as a new list, with modules freshly built (never sharing a variable
          with an earlier module).
        """
        out = list(args)
        moving, fixed, k = iter(travel), iter(self.static), 0
        for position, outer, slots in zip(self.positions, self.outer, self.slots, strict=True):
            parts = outer.flatten_up_to(out[position])
            for slot in slots:
                piece = self.pieces[k]
                k += 1
                rest = [_arrive(kind, moving) if kind != _STATIC else next(fixed) for kind in piece.kinds]
                parts[slot] = _combine(piece, parts[slot], jax.tree_util.tree_unflatten(piece.rest_def, rest))
            out[position] = jax.tree_util.tree_unflatten(outer, parts)
        return out


def _arrive(kind: str, moving: Any) -> Any:
    value = next(moving)
    if kind.startswith(_KEY):
        return jax.random.wrap_key_data(value, impl=kind[len(_KEY) :])
    return value


def _combine(piece: Piece, diff: Any, rest: Any) -> Any:
    if piece.framework == EQUINOX:
        return sys.modules[EQUINOX].combine(diff, rest)
    # Fresh variables: NNX's merge reuses the State's variable objects, which must never be shared.
    diff = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(diff), jax.tree_util.tree_leaves(diff))
    return sys.modules[NNX].merge(piece.graphdef, diff, rest)


def _split(module: Any) -> tuple[Any, Piece, list[Any], list[Any]]:
    """``(differentiated part, piece, travelling leaves, baked-in leaves)`` of one module."""
    name = framework(module)
    if name == EQUINOX:
        eqx = sys.modules[EQUINOX]
        diff, rest = eqx.partition(module, eqx.is_inexact_array)
        graphdef = None
    else:
        nnx = sys.modules[NNX]
        graphdef, diff, rest = nnx.split(module, nnx.Param, ...)
        # nnx.split's State holds the module's own variable objects: rebuilt here so nothing
        # done to the module later (a training step elsewhere, nnx.update) reaches this copy.
        diff = jax.tree_util.tree_map(_detached, diff)
    leaves, rest_def = jax.tree_util.tree_flatten(rest)
    kinds, moving, fixed = [], [], []
    for leaf in leaves:
        kind = _kind(leaf)
        kinds.append(kind)
        if kind == _STATIC:
            fixed.append(leaf)
        else:
            moving.append(jax.random.key_data(leaf) if kind.startswith(_KEY) else _detached(leaf))
    assert name is not None
    return diff, Piece(name, graphdef, rest_def, tuple(kinds)), moving, fixed


def _kind(leaf: Any) -> str:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return _KEY + str(jax.random.key_impl(leaf))
    if isinstance(leaf, jax.Array | np.ndarray | np.generic):
        return _ARRAY
    return _STATIC


def _detached(leaf: Any) -> Any:
    """A value nothing else can change: JAX arrays are immutable; NumPy arrays and mutable refs are copied."""
    if isinstance(leaf, np.ndarray):
        return leaf.copy()
    if isinstance(leaf, jax.Array) or not hasattr(leaf, "shape"):
        return leaf
    return jax.numpy.array(leaf)  # e.g. a jax Ref, which can change in place


def _call(fn: Callable[..., Any], layout: Layout, *call: Any) -> Any:
    """``fn`` on the arguments with the modules rebuilt; the last argument carries the rests."""
    *args, travel = call
    return fn(*layout.rebuild(args, travel))


class Lifted(NamedTuple):
    """A function of modules as a function of their differentiated parts.

    Attributes:
      fn: ``fn(*args, travel)``: the user's function with the modules rebuilt inside; a partial
        of a module-level function, so the compile cache keys it by the function and the layout.
      args: the point with each module replaced by its differentiated part, and the travelling
        rest as one more, last argument (a tuple).
      layout: where the modules are and how to rebuild them.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    layout: Layout

    @property
    def travel(self) -> list[Any]:
        """The rest's travelling leaves (the last argument)."""
        return self.args[-1]

    def modules(self, position: int, value: Any) -> Any:
        """The argument at ``position`` with its modules rebuilt around ``value``, its differentiated part(s)."""
        args = list(self.args[:-1])
        args[position] = value
        return self.layout.rebuild(args, self.travel)[position]


def lift(fn: Callable[..., Any], args: tuple[Any, ...], positions: Sequence[int]) -> Lifted | None:
    """``fn`` and its point with the modules in the arguments at ``positions`` split, or None when none holds one.

    Args:
      fn: the user's function.
      args: all positional arguments.
      positions: the differentiated (or optimized) positions.

    Returns:
      A :class:`Lifted`, whose ``fn(*args)`` equals ``fn`` at the point; None when no
      argument at ``positions`` is or holds a module.
    """
    picked = [i for i in dict.fromkeys(positions) if i < len(args) and holds_module(args[i])]
    if not picked:
        return None
    new_args = list(args)
    outers, all_slots, pieces, moving, fixed = [], [], [], [], []
    for i in picked:
        leaves, outer = jax.tree_util.tree_flatten(args[i], is_leaf=is_module)
        slots = tuple(k for k, leaf in enumerate(leaves) if is_module(leaf))
        for k in slots:
            leaves[k], piece, travel, static = _split(leaves[k])
            pieces.append(piece)
            moving += travel
            fixed += static
        new_args[i] = jax.tree_util.tree_unflatten(outer, leaves)
        outers.append(outer)
        all_slots.append(slots)
    layout = Layout(tuple(picked), tuple(outers), tuple(all_slots), tuple(pieces), tuple(fixed))
    # A list, not a tuple: never taken for a static argument, even when empty.
    return Lifted(functools.partial(_call, fn, layout), (*new_args, moving), layout)


_KNOWN_LAYOUTS = 8  # layouts a bound derivative function keeps compiled (the latest ones)


def calling(
    fn: Callable[..., Any],
    positions: Sequence[int],
    first: Lifted,
    transformed: Callable[..., Any],
    make: Callable[[Lifted], Callable[..., Any]],
) -> Callable[..., Any]:
    """The derivative function a notebook calls with modules, as it calls ``fn``.

    Each call splits the modules it is given; the compiled derivative is reused while they are
    laid out as before (same structure, same baked-in values), and made anew by ``make`` when not.

    Args:
      fn: the user's function.
      positions: the differentiated positions.
      first: the point's split, whose derivative is ``transformed``.
      transformed: the derivative of ``first.fn``.
      make: builds the derivative of another split's ``fn``.

    Returns:
      ``(*args) -> derivative``, taking the arguments ``fn`` takes.
    """
    known: dict[Any, tuple[Layout, Callable[..., Any]]] = {_layout_key(first.layout): (first.layout, transformed)}

    def derivative(*args: Any) -> Any:
        lifted = lift(fn, args, positions)
        if lifted is None:
            from .errors import JaxGradUsageError

            raise JaxGradUsageError(
                f"This derivative of {getattr(fn, '__name__', 'f')} was built for modules (Equinox, Flax NNX) as "
                f"the differentiated arguments {tuple(positions)}; call it with modules there, as at the point."
            )
        key = _layout_key(lifted.layout)
        entry = known.get(key)
        if entry is None:  # the layout keeps its baked-in values alive, so their ids stay theirs
            entry = known[key] = (lifted.layout, make(lifted))
            if len(known) > _KNOWN_LAYOUTS:
                known.pop(next(iter(known)))
        return entry[1](*lifted.args)

    derivative.__name__ = getattr(transformed, "__name__", "derivative")
    derivative.__doc__ = getattr(transformed, "__doc__", None)
    return derivative


def _layout_key(layout: Layout) -> Any:
    return jax.tree_util.tree_structure(layout), tuple(id(x) for x in layout.static)


def leaf_path(path: Sequence[Any]) -> str:
    """A leaf's path as text, without NNX's ``.value`` on a variable: ``layers[0].weight``, ``['dense']['kernel']``."""
    keys = list(path)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys.pop()  # the array inside an nnx.Variable
    return jax.tree_util.keystr(tuple(keys)).removeprefix(".") if keys else ""
