"""Gradient descent on a function, one step or many: the core behind the descent panel.

:class:`Stepper` minimises ``f(*point)`` over the arguments picked by ``argnums`` with an
optax optimizer, and keeps what a picture of the run needs: the loss history, the path of
one or two parameters, and a status message. No widgets here; ``Stepper.widget`` builds the
panel lazily.

How it stays fast and compiles once:

* Parameters and optimizer state get fixed, strongly typed dtypes up front, and the learning
  rate is a traced argument (the optimizer is built inside the trace), so changing it or
  stepping again reuses the compiled code.
* ``run(n)`` works in chunks of a fixed compiled capacity (:data:`CHUNK` steps, a
  ``fori_loop`` with a dynamic trip count writing losses into a buffer), so any ``n`` reuses
  one compile. Nothing in the loop checks for NaN: finiteness is checked once per chunk, and
  only a chunk that went bad is replayed, step-guarded, to its last finite step.
* Small states travel between calls packed into one flat array per dtype, so a single
  ``step()`` pays for two or three arrays crossing the jit boundary, not one per leaf; and
  ``step()`` starts the next step before it waits for the current one's loss, kept only if
  the learning rate, optimizer and state are still the same when the next ``step()`` comes
  (never for functions with side effects such as ``jax.debug.print``).
* The compiled programs are cached by :func:`jaxgrad_magic.cache.function_key`, so a cell
  that re-defines the same function, and a new stepper on it, compile nothing.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .cache import CACHE, function_key
from .errors import JaxGradUsageError, did_you_mean, explain_jax_error

HISTORY_LIMIT = 100_000
"""Recent history entries kept; ``history`` holds these plus the initial loss (100,001 in all)."""
CHUNK = 16_384
"""Steps one compiled chunk of ``run(n)`` can take; longer runs take several chunks."""
CHUNK_SECONDS = 0.1
"""Aim for a chunk of about this long, so progress and Stop are seen a few times a second."""
PACK_LIMIT = 1 << 14
"""States with at most this many elements are packed into one array per dtype between calls."""
_FIRST_CHUNK = 64  # steps in the first chunk of a function whose step time is not known yet

OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
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
``momentum`` and ``nesterov`` are ``optax.sgd`` with ``momentum=0.9``)."""


class StepperState(NamedTuple):
    """Everything one descent step reads and writes.

    Attributes:
      params: the optimized arguments (one argument, or a tuple for several ``argnums``).
      opt_state: the optimizer's state.
      grad: the gradient of the loss at ``params``.
      loss: the loss at ``params``.
      aux: the function's auxiliary output at ``params`` (``has_aux=True``), else None.
    """

    params: Any
    opt_state: Any
    grad: Any
    loss: jax.Array
    aux: Any


class StepInfo(NamedTuple):
    """What one :meth:`Stepper.step` did.

    Attributes:
      steps: steps taken by this call (0 when the step diverged and was not kept).
      step: the step count afterwards.
      loss: the loss at the current parameters.
      grad_norm: the global norm of the gradient at the current parameters.
      diverged: True when the step produced a non-finite value and was not kept.
      message: a human-readable status.
    """

    steps: int
    step: int
    loss: float
    grad_norm: float
    diverged: bool
    message: str


class RunInfo(NamedTuple):
    """What one :meth:`Stepper.run` did.

    Attributes:
      steps: steps taken by this call.
      step: the step count afterwards.
      loss: the loss at the current parameters.
      grad_norm: the global norm of the gradient at the current parameters.
      diverged: True when the run stopped on a non-finite value (the last finite state is kept).
      stopped: True when ``should_stop`` (or a ``reset()``) ended the run early.
      seconds: wall time of the call.
      message: a human-readable status.
    """

    steps: int
    step: int
    loss: float
    grad_norm: float
    diverged: bool
    stopped: bool
    seconds: float
    message: str


class _Optimizer(NamedTuple):
    """An optimizer as given, and how to build it from a (traced) learning rate."""

    given: Any  # the normalised name, or the object the user passed
    label: str
    make: Callable[[Any], optax.GradientTransformation]
    adjustable: bool  # False for a fixed transformation, which carries its own learning rate
    key: Hashable
    refs: list[Any]


def _resolve_optimizer(value: Any) -> _Optimizer:
    """A name, an ``optax.GradientTransformation``, or a function ``lr -> transformation``."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name not in OPTIMIZERS:
            raise JaxGradUsageError(
                f"Unknown optimizer {value!r}.{did_you_mean(name, OPTIMIZERS)} Use one of "
                f"{', '.join(OPTIMIZERS)}, an optax.GradientTransformation (e.g. "
                "`optax.adam(1e-3)`), or a function of the learning rate (e.g. `optax.adam`)."
            )
        return _Optimizer(name, name, OPTIMIZERS[name], True, ("name", name), [])
    if isinstance(value, optax.GradientTransformation):
        init_key, init_refs = function_key(value.init)
        update_key, update_refs = function_key(value.update)
        return _Optimizer(
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
            return _Optimizer(value, label if label.isidentifier() else "custom", value, True, ("factory", key), refs)
    raise JaxGradUsageError(
        f"optimizer={value!r} is not an optimizer. Pass a name ({', '.join(OPTIMIZERS)}), an "
        "optax.GradientTransformation such as `optax.adam(1e-3)`, or a function of the learning "
        "rate that returns one, such as `optax.adam`."
    )


def _check_lr(value: Any) -> float:
    try:
        lr = float(value) if not isinstance(value, bool | str) else math.nan
    except (TypeError, ValueError):
        lr = math.nan
    if not (math.isfinite(lr) and lr > 0):
        raise JaxGradUsageError(f"The learning rate must be a positive number, e.g. 0.1 or 1e-3; got {value!r}.")
    return lr


def _as_param(leaf: Any, label: str, fn_name: str) -> jax.Array:
    """A strongly typed float array, so the second call does not retrace on a weak type."""
    dtype = _dtype_of(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):  # jnp knows bfloat16 is a float
        raise JaxGradUsageError(
            f"Cannot descend on {label} of {fn_name}: it is {dtype} ({leaf!r}), and gradient descent "
            f"needs real floating-point parameters. Pass floats (`5.0`, not `5`), or convert with "
            f"`jnp.asarray({label}, dtype=jnp.float32)`."
        )
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if isinstance(leaf, jax.Array) and leaf.dtype == dtype and not leaf.weak_type:
        return leaf
    return jax.device_put(np.asarray(leaf, dtype=dtype))


def _dtype_of(leaf: Any) -> np.dtype:
    if isinstance(leaf, bool):
        return np.dtype(bool)
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.result_type(leaf)


def _is_dynamic(leaf: Any) -> bool:
    """Arrays and floats travel as jit arguments; ints, strings and objects are baked in."""
    if isinstance(leaf, bool | int):
        return False
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | float | complex)


def _signature(tree: Any) -> Hashable:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (
        treedef,
        tuple((type(x).__name__, np.shape(x), str(_dtype_of(x)), bool(getattr(x, "weak_type", False))) for x in leaves),
    )


def _static_key(values: list[Any]) -> tuple[Hashable, list[Any]]:
    key: list[Hashable] = []
    refs: list[Any] = []
    for v in values:
        try:
            hash(v)
            key.append(("value", type(v).__name__, v))
        except TypeError:
            key.append(("id", id(v)))
            refs.append(v)
    return tuple(key), refs


def _like(original: Any, value: Any) -> Any:
    """``value`` in the kind of ``original``: a Python float stays a float, NumPy stays NumPy."""

    def convert(o: Any, v: Any) -> Any:
        if isinstance(o, float):
            return float(v)
        if isinstance(o, np.ndarray):
            return np.array(v, dtype=o.dtype)  # a writable copy, like the original
        if isinstance(o, np.generic):
            return o.dtype.type(np.asarray(v))
        return v

    return jax.tree_util.tree_map(convert, original, value)


def _short(value: Any, max_items: int = 4) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return f"{arr.item():.6g}"
    with np.printoptions(precision=4, threshold=max_items, edgeitems=2):
        text = " ".join(np.array2string(arr, separator=", ").split())
    return text + (f" {arr.shape}" if arr.size > max_items else "")


class _Layout:
    """How a state crosses the jit boundary: packed into one flat array per dtype, or as is."""

    def __init__(self, shapes: StepperState, packed: bool) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten(shapes)
        self.packed = packed
        self.leaves = [(tuple(x.shape), np.dtype(x.dtype)) for x in leaves]
        groups: dict[np.dtype, list[int]] = {}
        for i, (_, dtype) in enumerate(self.leaves):
            groups.setdefault(dtype, []).append(i)
        self.groups = [groups[d] for d in sorted(groups, key=str)]

    def pack(self, state: StepperState) -> Any:
        if not self.packed:
            return state
        leaves = jax.tree_util.tree_leaves(state)
        return tuple(jnp.concatenate([jnp.ravel(leaves[i]) for i in group]) for group in self.groups)

    def unpack(self, carrier: Any) -> StepperState:
        if not self.packed:
            return carrier
        leaves: list[Any] = [None] * len(self.leaves)
        for group, flat in zip(self.groups, carrier, strict=True):
            offset = 0
            for i in group:
                shape = self.leaves[i][0]
                size = math.prod(shape)
                leaves[i] = flat[offset : offset + size].reshape(shape)
                offset += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def unpack_on_host(self, carrier: Any) -> StepperState:
        """:meth:`unpack` outside jit: NumPy slices put back as arrays, so it compiles nothing."""
        if not self.packed:
            return carrier
        leaves: list[Any] = [None] * len(self.leaves)
        for group, flat in zip(self.groups, carrier, strict=True):
            host = np.asarray(flat)
            offset = 0
            for i in group:
                shape = self.leaves[i][0]
                size = math.prod(shape)
                leaves[i] = jax.device_put(host[offset : offset + size].reshape(shape))
                offset += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _strong(tree: Any) -> Any:
    # Same dtype, strong type: a weakly typed loss or aux must not change the loop carry's type.
    def strong(x: Any) -> jax.Array:
        x = jnp.asarray(x)  # an aux may hold Python numbers
        return jax.lax.convert_element_type(x, x.dtype)

    return jax.tree_util.tree_map(strong, tree)


def _norm_and_check(grad: Any, params: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The gradient's global norm, and whether every gradient and parameter entry is finite.

    One reduction does both: ``x * 0`` is 0 for a finite ``x`` and NaN for inf or NaN, so the
    sum of ``g**2 + g*0 + p*0`` is NaN exactly when an entry is not finite (and only +inf when
    the norm of a finite gradient overflows). Each extra reduction would be another kernel,
    which on a CPU costs about as much as the arithmetic of a small step.
    """
    total = jnp.zeros((), dtype)
    for g, p in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(params), strict=True):
        g, p = g.astype(dtype), p.astype(dtype)
        total = total + jnp.sum(jnp.square(g) + g * 0 + p * 0)
    return jnp.sqrt(total), ~jnp.isnan(total)


class _Programs:
    """The compiled programs for one function, argument signature and optimizer (cached)."""

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Any],
        make: Callable[[Any], optax.GradientTransformation],
        has_aux: bool,
        params: Any,
        dynamic: Any,
        fn_name: str,
    ) -> None:
        value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

        def evaluate(p: Any, dyn: Any) -> tuple[Any, Any, Any]:
            if has_aux:
                (loss, aux), grad = value_and_grad(p, dyn)
                return loss, grad, aux
            loss, grad = value_and_grad(p, dyn)
            return loss, grad, None

        def init(p: Any, dyn: Any, lr: jax.Array) -> StepperState:
            loss, grad, aux = evaluate(p, dyn)
            return _strong(StepperState(p, make(lr).init(p), grad, loss, aux))

        def advance(state: StepperState, dyn: Any, lr: jax.Array) -> StepperState:
            updates, opt_state = make(lr).update(state.grad, state.opt_state, state.params)
            p = optax.apply_updates(state.params, updates)
            loss, grad, aux = evaluate(p, dyn)
            return _strong(StepperState(p, opt_state, grad, loss, aux))

        lr_shape = jax.ShapeDtypeStruct((), jnp.float32)
        _check_loss(loss_fn, params, dynamic, has_aux, fn_name)
        jaxpr, shapes = _guard(
            lambda: jax.make_jaxpr(init, return_shape=True)(params, dynamic, lr_shape), fn_name, has_aux
        )
        size = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
        layout = _Layout(shapes, packed=size <= PACK_LIMIT)
        # step() may start the next step early when that is cheap and invisible: a small state,
        # and no side effects (debug prints, ordered callbacks) that would run for a step not taken.
        self.speculate = layout.packed and not jaxpr.effects
        param_leaves = jax.tree_util.tree_leaves(shapes.params)
        stats_dtype = jnp.promote_types(shapes.loss.dtype, jnp.float32)
        self.width = sum(math.prod(x.shape) for x in param_leaves)
        self.track = self.width <= 2 and all(jnp.issubdtype(x.dtype, jnp.floating) for x in param_leaves)
        track = self.track

        def flat_params(state: StepperState) -> jax.Array:
            return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(state.params)]).astype(stats_dtype)

        def stats(state: StepperState) -> jax.Array:
            # loss, gradient norm, all finite; then the flat parameters when the path is kept.
            grad_norm, finite = _norm_and_check(state.grad, state.params, stats_dtype)
            loss = state.loss.astype(stats_dtype)
            ok = jnp.isfinite(loss) & finite
            head = jnp.stack([loss, grad_norm, ok.astype(stats_dtype)])
            return jnp.concatenate([head, flat_params(state)]) if track else head

        def start(p: Any, dyn: Any, lr: jax.Array) -> tuple[Any, jax.Array]:
            state = init(p, dyn, lr)
            return layout.pack(state), stats(state)

        def step(carrier: Any, dyn: Any, lr: jax.Array) -> tuple[Any, jax.Array]:
            state = advance(layout.unpack(carrier), dyn, lr)
            return layout.pack(state), stats(state)

        def buffers() -> tuple[jax.Array, jax.Array | None]:
            path = jnp.zeros((CHUNK, self.width), stats_dtype) if track else None
            return jnp.zeros(CHUNK, stats_dtype), path

        def record(i: jax.Array, state: StepperState, losses: jax.Array, path: jax.Array | None) -> tuple[Any, Any]:
            losses = losses.at[i].set(state.loss.astype(stats_dtype))
            if path is not None:
                path = path.at[i].set(flat_params(state))
            return losses, path

        def run(carrier: Any, dyn: Any, lr: jax.Array, n: jax.Array) -> tuple[Any, jax.Array, Any, jax.Array]:
            # A dynamic trip count up to a static capacity: one compile serves any n.
            def body(i: jax.Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
                state, losses, path = carry
                state = advance(state, dyn, lr)
                return (state, *record(i, state, losses, path))

            state, losses, path = jax.lax.fori_loop(0, n, body, (layout.unpack(carrier), *buffers()))
            return layout.pack(state), losses, path, stats(state)

        def guarded(carrier: Any, dyn: Any, lr: jax.Array, n: jax.Array) -> tuple[Any, ...]:
            # The replay of a chunk that went bad: stop before the first non-finite state.
            state0 = layout.unpack(carrier)

            def cond(carry: tuple[Any, ...]) -> jax.Array:
                return (carry[0] < n) & carry[1]

            def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
                i, _, state, losses, path, _ = carry
                new = advance(state, dyn, lr)
                new_stats = stats(new)
                ok = new_stats[2] > 0
                state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
                losses, path = record(i, new, losses, path)
                return i + ok.astype(i.dtype), ok, state, losses, path, new_stats

            first = (jnp.asarray(0, jnp.int32), jnp.asarray(True), state0, *buffers(), stats(state0))
            done, _, state, losses, path, last = jax.lax.while_loop(cond, body, first)
            return layout.pack(state), losses, path, stats(state), done, last

        self.layout = layout
        self.start = jax.jit(start)
        self.step = jax.jit(step)
        self.run = jax.jit(run)
        self._guarded = guarded
        self.unpack = layout.unpack_on_host  # small states only are packed, so this is cheap
        self.seconds_per_step: float | None = None  # measured by runs; sizes the next chunk

    @functools.cached_property
    def guarded(self) -> Callable[..., tuple[Any, ...]]:
        """The step-guarded replay, compiled only when a run first diverges."""
        return jax.jit(self._guarded)


def _guard(call: Callable[[], Any], fn_name: str, has_aux: bool) -> Any:
    """Run ``call``; JAX misuse becomes a teaching error, the user's own errors pass through."""
    __tracebackhide__ = True
    try:
        return call()
    except JaxGradUsageError:
        raise
    except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as exc:
        raise JaxGradUsageError(
            f"The descent stepper compiles {fn_name} with jax.jit, and {fn_name} uses a traced value where "
            "Python needs a concrete one (an `if`, `while`, `bool()`, `float()` or `int()` on an "
            "input-dependent value). Use `jnp.where(cond, a, b)` or `jax.lax.cond` for branches and "
            "`jax.lax.while_loop` / `fori_loop` for loops. JAX said: " + str(exc).splitlines()[0]
        ) from None
    except Exception as exc:
        explained = explain_jax_error(exc, kind="grad", fn_name=fn_name, aux=has_aux)
        if explained is None:
            raise
        raise explained from None


def _check_loss(loss_fn: Callable[[Any, Any], Any], params: Any, dynamic: Any, has_aux: bool, fn_name: str) -> None:
    out = _guard(lambda: jax.eval_shape(loss_fn, params, dynamic), fn_name, has_aux)
    if has_aux:
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise JaxGradUsageError(
                f"has_aux=True expects {fn_name} to return a pair `(loss, aux)`, but it returned "
                f"{type(out).__name__}. Drop has_aux (aux=True in the magic), or return `(loss, extra)`."
            )
        out = out[0]
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        what = f"shape {shape} and dtype {dtype}" if shape is not None else type(out).__name__
        raise JaxGradUsageError(
            f"Gradient descent minimises a real scalar loss, but {fn_name} returns {what}. Return one "
            "real number (e.g. `jnp.sum(...)` or `jnp.mean(...)`), or `(loss, extra)` with has_aux=True."
        )


class _Recent:
    """The first entry of a growing series plus its most recent ``limit`` entries (a ring)."""

    def __init__(self, limit: int, width: int | None = None) -> None:
        self.limit = limit
        self.ring = np.empty((limit,) if width is None else (limit, width), dtype=np.float64)
        self.first: np.ndarray | float = 0.0
        self.pos = 0  # where the next entry goes
        self.count = 0  # entries in the ring

    def clear(self, first: Any) -> None:
        self.first = first
        self.pos = self.count = 0

    def append(self, value: Any) -> None:
        pos = self.pos
        self.ring[pos] = value
        self.pos = pos + 1 if pos + 1 < self.limit else 0
        if self.count < self.limit:
            self.count += 1

    def extend(self, values: np.ndarray) -> None:
        m = len(values)
        if m >= self.limit:
            self.ring[:] = values[m - self.limit :]
            self.pos, self.count = 0, self.limit
            return
        head = min(m, self.limit - self.pos)
        self.ring[self.pos : self.pos + head] = values[:head]
        self.ring[: m - head] = values[head:]
        self.pos = (self.pos + m) % self.limit
        self.count = min(self.count + m, self.limit)

    def array(self) -> np.ndarray:
        start = (self.pos - self.count) % self.limit
        if start + self.count <= self.limit:
            recent = self.ring[start : start + self.count]
        else:
            recent = np.concatenate([self.ring[start:], self.ring[: self.pos]])
        return np.concatenate([np.asarray(self.first, dtype=np.float64)[None], recent])


class Stepper:
    """Gradient descent on ``fn`` from ``point`` with an optax optimizer.

    ``fn(*point)`` must return a real scalar loss (or ``(loss, aux)`` with ``has_aux=True``);
    the arguments at ``argnums`` are optimized, the others stay as given. Everything is
    compiled once per function, argument shapes and optimizer: changing the learning rate,
    stepping again, or a new stepper on a re-defined identical function compiles nothing.

    Args:
      fn: the loss function.
      point: all positional arguments, as a tuple (anything else is taken as the only one).
      argnums: which arguments to optimize: an int, or a tuple of ints.
      lr: the learning rate (settable later, without recompiling).
      optimizer: a name from :data:`OPTIMIZERS`, an ``optax.GradientTransformation`` (used
        as is; it carries its own learning rate), or a function of the learning rate that
        returns one (e.g. ``optax.adam`` or ``lambda lr: optax.sgd(lr, momentum=0.5)``).
      names: per argument, the notebook variable it came from (or None), for :meth:`apply`.
      fn_name: the name used in messages and for ``<fn_name>_params``.
      namespace: where :meth:`apply` writes (default: ``__main__``'s namespace).
      has_aux: ``fn`` returns ``(loss, aux)``.

    Attributes:
      fn, fn_name, argnums, names, namespace, has_aux: as given.
      message: the last human-readable status.
      diverged: True when the last step or run stopped on a NaN/inf loss, gradient or
        parameter (the last finite state is kept); cleared by progress or :meth:`reset`.
      diverged_at: the step that produced the non-finite value, or None.
      lr_adjustable: False when the optimizer is a fixed transformation (``lr`` then has no effect).
      optimizer_names: the names :attr:`optimizer` accepts.

    Raises:
      JaxGradUsageError: bad ``argnums``, non-float parameters, an unknown optimizer, a bad
        learning rate, or a function that does not return a real scalar.
    """

    optimizer_names: tuple[str, ...] = tuple(OPTIMIZERS)

    def __init__(
        self,
        fn: Callable[..., Any],
        point: Any,
        argnums: int | tuple[int, ...] = 0,
        *,
        lr: float = 0.1,
        optimizer: Any = "sgd",
        names: tuple[str | None, ...] | None = None,
        fn_name: str | None = None,
        namespace: MutableMapping[str, Any] | None = None,
        has_aux: bool = False,
    ) -> None:
        if not callable(fn):
            raise JaxGradUsageError(f"Stepper needs a function to minimise, but got a {type(fn).__name__}.")
        self.fn = fn
        self.fn_name = fn_name or getattr(fn, "__name__", "f")
        self.has_aux = bool(has_aux)
        self.namespace = namespace
        point = point if isinstance(point, tuple) else (point,)
        self.argnums = _check_argnums(argnums, len(point), self.fn_name)
        idx = self._idx = (self.argnums,) if isinstance(self.argnums, int) else self.argnums
        self.names = tuple(names) if names is not None else (None,) * len(point)
        self._point0 = point

        labels = _arg_labels(fn, len(point))
        picked = [
            jax.tree_util.tree_map(lambda leaf, i=i: _as_param(leaf, labels[i], self.fn_name), point[i]) for i in idx
        ]
        self._params0 = picked[0] if isinstance(self.argnums, int) else tuple(picked)
        rest = tuple(point[i] for i in range(len(point)) if i not in idx)
        rest_leaves, rest_def = jax.tree_util.tree_flatten(rest)
        mask = tuple(_is_dynamic(x) for x in rest_leaves)
        self._dynamic = tuple(x for x, d in zip(rest_leaves, mask, strict=True) if d)
        static = [x for x, d in zip(rest_leaves, mask, strict=True) if not d]
        self._loss_fn = _loss_fn(fn, len(point), idx, isinstance(self.argnums, int), rest_def, mask, static)

        fn_key, fn_refs = function_key(fn)
        static_key, static_refs = _static_key(static)
        self._key = (
            "stepper",
            fn_key,
            self.argnums,
            self.has_aux,
            rest_def,
            mask,
            static_key,
            _signature((self._params0, self._dynamic)),
        )
        self._refs = fn_refs + static_refs

        self._lock = threading.RLock()
        self._generation = 0  # bumped by reset(), so a run going on in a thread stops
        self._running = False
        self._lr = _check_lr(lr)
        self._lr_array = jax.device_put(np.asarray(self._lr, dtype=np.float32))
        self._opt = _resolve_optimizer(optimizer)
        self._programs = self._programs_for(self._opt)
        self._history = _Recent(HISTORY_LIMIT)
        self._path = _Recent(HISTORY_LIMIT, self._programs.width) if self._programs.track else None
        self._view: tuple[Any, StepperState] | None = None
        self._ahead: tuple[Any, ...] | None = None  # (from carrier, lr, programs, its next step)
        self._start(self._params0)
        self.message = f"ready at step 0: loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}"
        if not self._finite:
            self.message = self._bad_start_message()

    # ------------------------------------------------------------------ building

    def _programs_for(self, opt: _Optimizer) -> _Programs:
        return CACHE.get_or_build(
            (*self._key, opt.key),
            self._refs + opt.refs,
            lambda: _Programs(self._loss_fn, opt.make, self.has_aux, self._params0, self._dynamic, self.fn_name),
        )

    def _start(self, params: Any) -> None:
        """Fresh optimizer state at ``params``; the history starts over at step 0."""
        carrier, stats = _guard(
            lambda: self._programs.start(params, self._dynamic, self._lr_array), self.fn_name, self.has_aux
        )
        self._carrier = carrier
        self._read(np.asarray(stats))
        self._steps = 0
        # A start where f or its gradient is not finite cannot descend: marked as diverged at step 0.
        self.diverged, self.diverged_at = (False, None) if self._finite else (True, 0)
        self._history.clear(self._loss)
        if self._path is not None:
            self._path.clear(self._point_now)

    def _read(self, stats: np.ndarray) -> None:
        self._loss, self._grad_norm = float(stats[0]), float(stats[1])
        self._finite = bool(stats[2] > 0)
        if self._path is not None:
            self._point_now = stats[3:]

    # ------------------------------------------------------------------ stepping

    def step(self) -> StepInfo:
        """Take one optimizer step (one compiled call: update, apply, loss and gradient).

        Returns:
          A :class:`StepInfo`; when the new state is not finite it is not kept, ``diverged``
          is set and the message says at which step and what to do.
        """
        with self._lock:
            if not self._finite:
                self.message = self._bad_start_message()
                return StepInfo(0, self._steps, self._loss, self._grad_norm, True, self.message)
            programs, start, lr = self._programs, self._carrier, self._lr_array
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead[0] is start and ahead[1] is lr and ahead[2] is programs:
                carrier, stats = ahead[3]  # started by the previous step() and still valid
            else:
                carrier, stats = programs.step(start, self._dynamic, lr)
            if programs.speculate:
                # Small states: start the next step before waiting for this one, so the device
                # works while Python reports; used only if nothing changes in between.
                try:
                    self._ahead = (carrier, lr, programs, programs.step(carrier, self._dynamic, lr))
                except Exception:  # the user's own error: raised again when that step is taken
                    self._ahead = None
            values = np.asarray(stats).tolist()  # waits for the step; Python floats from here on
            if not values[2]:
                self._diverge(self._steps + 1, values)
                return StepInfo(0, self._steps, self._loss, self._grad_norm, True, self.message)
            self._carrier = carrier
            loss = self._loss = values[0]
            grad_norm = self._grad_norm = values[1]
            steps = self._steps = self._steps + 1
            self._history.append(loss)
            if self._path is not None:
                self._point_now = values[3:]
                self._path.append(self._point_now)
            if self.diverged:
                self.diverged, self.diverged_at = False, None
            message = self.message = f"step {steps}: loss {loss:.6g}, ‖∇f‖ {grad_norm:.3g}"
            return StepInfo(1, steps, loss, grad_norm, False, message)

    def run(
        self,
        n: int,
        *,
        should_stop: Callable[[], bool] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> RunInfo:
        """Take ``n`` optimizer steps, in compiled chunks.

        A chunk takes up to :data:`CHUNK` steps, sized to last about :data:`CHUNK_SECONDS`
        once the step time is known, so a run in a background thread reports progress and
        sees a Stop a few times a second. A change of ``lr`` or ``optimizer`` from another
        thread takes effect at the next chunk; :meth:`reset` ends the run.

        Args:
          n: how many steps (0 or more).
          should_stop: called before each chunk; the run ends when it returns True.
          on_progress: called after each chunk with the steps taken so far in this run.

        Returns:
          A :class:`RunInfo`. On a NaN/inf the run stops at the last finite step.

        Raises:
          JaxGradUsageError: a bad ``n``, or another run is going on this stepper.
        """
        n = _check_count(n)
        started = time.perf_counter()
        with self._lock:
            if self._running:
                raise JaxGradUsageError(
                    "This stepper is already running (in another thread); stop that run first, or wait for it."
                )
            self._running = True
            generation, first = self._generation, self._steps
        taken, stopped, diverged = 0, False, False
        try:
            while taken < n and not diverged:
                if should_stop is not None and should_stop():
                    stopped = True
                    break
                with self._lock:
                    if self._generation != generation:
                        stopped = True
                        break
                    if not self._finite:
                        self.message = self._bad_start_message()
                        diverged = True
                        break
                    done, diverged = self._chunk(n - taken)
                taken += done
                if on_progress is not None:
                    on_progress(taken)
        finally:
            with self._lock:
                self._running = False
        with self._lock:
            if not diverged:
                how = "stopped early at" if stopped else "ran to"
                self.message = (
                    f"{how} step {self._steps} ({taken} step{'s' * (taken != 1)} from {first}): "
                    f"loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}"
                )
            return RunInfo(
                taken,
                self._steps,
                self._loss,
                self._grad_norm,
                diverged,
                stopped,
                time.perf_counter() - started,
                self.message,
            )

    def _chunk(self, remaining: int) -> tuple[int, bool]:
        """Run one chunk; returns (steps kept, diverged). Called with the lock held."""
        programs = self._programs
        per_step = programs.seconds_per_step
        hint = _FIRST_CHUNK if per_step is None else max(1, int(CHUNK_SECONDS / max(per_step, 1e-12)))
        k = min(remaining, CHUNK, hint)
        t0 = time.perf_counter()
        carrier, losses, path, stats = programs.run(self._carrier, self._dynamic, self._lr_array, np.int32(k))
        losses_h = np.asarray(losses)[:k]  # waits for the chunk
        stats_h = np.asarray(stats)
        if stats_h[2] > 0 and np.isfinite(losses_h).all():
            programs.seconds_per_step = (time.perf_counter() - t0) / k
            self._commit(carrier, stats_h, losses_h, path, k)
            return k, False
        # Something went non-finite in this chunk: replay it, stopping before the first bad step.
        carrier, losses, path, stats, done, last = programs.guarded(
            self._carrier, self._dynamic, self._lr_array, np.int32(k)
        )
        done = int(done)
        if done:
            self._commit(carrier, np.asarray(stats), np.asarray(losses)[:done], path, done)
        if done == k:
            return k, False
        self._diverge(self._steps + 1, np.asarray(last))
        return done, True

    def _commit(self, carrier: Any, stats: np.ndarray, losses: np.ndarray, path: Any, k: int) -> None:
        self._carrier = carrier
        self._read(stats)
        self._steps += k
        self._history.extend(losses)
        if self._path is not None and path is not None:
            self._path.extend(np.asarray(path)[:k])
        self.diverged, self.diverged_at = False, None

    def _diverge(self, at: int, stats: Any) -> None:
        loss, grad_norm = float(stats[0]), float(stats[1])
        if not math.isfinite(loss):
            what = f"the loss became {loss}"
        elif not math.isfinite(grad_norm):
            what = f"the gradient became {grad_norm}"
        else:
            what = "the parameters became inf or nan"
        hint = (
            f"lower the learning rate (now {self._lr:g})"
            if self._opt.adjustable
            else "lower the learning rate of the optimizer you passed"
        )
        self.diverged, self.diverged_at = True, at
        self.message = (
            f"diverged at step {at}: {what}; {hint}. Kept the last finite state (step {self._steps}); "
            "reset() starts over."
        )

    def _bad_start_message(self) -> str:
        return (
            f"{self.fn_name} is not finite at the starting point (loss {self._loss}, ‖∇f‖ "
            f"{self._grad_norm}), so there is nothing to descend: start from another point."
        )

    def reset(self) -> None:
        """Back to the starting point: fresh optimizer state, step 0, history cleared.

        The learning rate and optimizer stay as they are now; a run going on stops.
        """
        with self._lock:
            self._generation += 1
            self._start(self._params0)
            self.message = f"reset to step 0: loss {self._loss:.6g}" if self._finite else self._bad_start_message()

    def apply(self) -> dict[str, Any]:
        """Write the current parameters into the notebook.

        When every optimized argument came from a notebook variable (``names``), each is
        written back to its variable, in the kind it had (a Python float stays a float, a
        NumPy array stays NumPy with its dtype); otherwise the parameters (``params``) are
        written to ``<fn_name>_params``. ``message`` says what was written.

        Returns:
          The names written and their values.
        """
        with self._lock:
            namespace = self.namespace
            if namespace is None:
                import __main__

                namespace = __main__.__dict__
            params = self.params
            values = (params,) if isinstance(self.argnums, int) else params
            names = [self.names[i] if i < len(self.names) else None for i in self._idx]
            if all(names):
                written = {
                    name: _like(self._point0[i], value) for name, i, value in zip(names, self._idx, values, strict=True)
                }
            else:
                base = re.sub(r"\W+", "_", self.fn_name.rsplit(".", 1)[-1]).strip("_") or "f"
                original = self._point0[self._idx[0]] if isinstance(self.argnums, int) else self._point0_params()
                written = {f"{base}_params": _like(original, params)}
            namespace.update(written)
            self.message = f"wrote {', '.join(written)} (step {self._steps}) into the notebook"
            return written

    def _point0_params(self) -> tuple[Any, ...]:
        return tuple(self._point0[i] for i in self._idx)

    # ------------------------------------------------------------------ state

    def _state(self) -> StepperState:
        carrier = self._carrier
        view = self._view
        if view is None or view[0] is not carrier:
            view = self._view = (carrier, self._programs.unpack(carrier))
        return view[1]

    @property
    def state(self) -> StepperState:
        """The current :class:`StepperState` (parameters, optimizer state, gradient, loss, aux)."""
        return self._state()

    @property
    def params(self) -> Any:
        """The optimized arguments now, in the structure of ``jax.grad``'s result for ``argnums``."""
        return self._state().params

    @property
    def grad(self) -> Any:
        """The gradient at the current parameters (the structure of :attr:`params`)."""
        return self._state().grad

    @property
    def aux(self) -> Any:
        """The auxiliary output at the current parameters (``has_aux=True``), else None."""
        return self._state().aux

    @property
    def point(self) -> tuple[Any, ...]:
        """All positional arguments, with the optimized ones at their current values."""
        params = self.params
        values = (params,) if isinstance(self.argnums, int) else params
        args = list(self._point0)
        for i, value in zip(self._idx, values, strict=True):
            args[i] = value
        return tuple(args)

    @property
    def loss(self) -> float:
        """The loss at the current parameters."""
        return self._loss

    @property
    def grad_norm(self) -> float:
        """The global norm of the gradient at the current parameters."""
        return self._grad_norm

    @property
    def steps(self) -> int:
        """Steps taken since the start (or the last :meth:`reset`)."""
        return self._steps

    @property
    def running(self) -> bool:
        """True while :meth:`run` is going (e.g. in a background thread)."""
        return self._running

    @property
    def history(self) -> np.ndarray:
        """The loss after each step, first entry the initial loss (float64).

        Bounded: the initial loss plus the most recent :data:`HISTORY_LIMIT` (100,000)
        entries, so at most 100,001; :attr:`history_steps` gives each entry's step number.
        """
        with self._lock:
            return self._history.array()

    @property
    def history_steps(self) -> np.ndarray:
        """The step number of each :attr:`history` entry: 0, then the most recent steps."""
        with self._lock:
            count = self._history.count
            return np.concatenate([[0], np.arange(self._steps - count + 1, self._steps + 1)]).astype(np.int64)

    @property
    def trajectory(self) -> np.ndarray | None:
        """The flattened parameters at each :attr:`history_steps` entry, shape ``(len, size)``.

        Kept when the optimized parameters have at most two elements in all (for drawing the
        path on a curve or contour plot, flattened like ``jax.flatten_util.ravel_pytree``),
        else None. Bounded like :attr:`history`.
        """
        with self._lock:
            return None if self._path is None else self._path.array()

    @property
    def lr(self) -> float:
        """The learning rate; setting it recompiles nothing and continues from the current step."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        lr = _check_lr(value)
        with self._lock:
            self._lr = lr
            self._lr_array = jax.device_put(np.asarray(lr, dtype=np.float32))
            if self._opt.adjustable:
                self.message = f"learning rate changed to {lr:g}; continuing from step {self._steps}"
            else:
                self.message = (
                    f"learning rate set to {lr:g}, but the optimizer is a fixed optax transformation that "
                    "carries its own learning rate, so nothing changes. Pass a name (e.g. 'adam') or a "
                    "function of the learning rate (e.g. `optax.adam`) to steer it."
                )

    @property
    def lr_adjustable(self) -> bool:
        """False when the optimizer is a fixed transformation, so :attr:`lr` has no effect."""
        return self._opt.adjustable

    @property
    def optimizer(self) -> Any:
        """The optimizer: its name, or the transformation or function that was given.

        Setting it starts a fresh optimizer state at the current parameters; the step count,
        history and path continue.
        """
        return self._opt.given

    @optimizer.setter
    def optimizer(self, value: Any) -> None:
        opt = _resolve_optimizer(value)
        with self._lock:
            params = self.params
            programs = self._programs_for(opt)
            carrier, stats = _guard(
                lambda: programs.start(params, self._dynamic, self._lr_array), self.fn_name, self.has_aux
            )
            self._opt, self._programs, self._carrier = opt, programs, carrier
            self._read(np.asarray(stats))
            self.message = (
                f"optimizer changed to {opt.label} (fresh optimizer state); continuing from step {self._steps}"
            )

    @property
    def optimizer_label(self) -> str:
        """The optimizer's name, or ``custom`` for a transformation given as an object."""
        return self._opt.label

    @functools.cached_property
    def widget(self) -> Any:
        """The ipywidgets descent panel for this stepper (built on first access)."""
        from .panel import StepperPanel

        return StepperPanel(self).widget

    # ------------------------------------------------------------------ text

    def __repr__(self) -> str:
        params = self.params
        values = (params,) if isinstance(self.argnums, int) else params
        labels = _arg_labels(self.fn, len(self._point0))
        parts = []
        for i, value in zip(self._idx, values, strict=True):
            for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
                parts.append(f"{labels[i]}{jax.tree_util.keystr(path) if path else ''}={_short(leaf)}")
        shown = ", ".join(parts[:4]) + (f", … ({len(parts) - 4} more)" if len(parts) > 4 else "")
        mark = f", diverged at step {self.diverged_at}" if self.diverged else ""
        return (
            f"Stepper({self.fn_name}, {self._opt.label}, lr={self._lr:g}): step {self._steps}, "
            f"loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}{mark}; {shown}"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("Stepper(...)" if cycle else repr(self))


def _check_argnums(argnums: Any, n: int, fn_name: str) -> int | tuple[int, ...]:
    def ok(a: Any) -> bool:
        return isinstance(a, int | np.integer) and not isinstance(a, bool) and 0 <= a < n

    if ok(argnums):
        return int(argnums)
    if isinstance(argnums, tuple | list) and argnums and all(ok(a) for a in argnums):
        idx = tuple(int(a) for a in argnums)
        if len(set(idx)) == len(idx):
            return idx
    raise JaxGradUsageError(
        f"argnums={argnums!r} does not pick arguments of {fn_name} at the given point, which has {n} "
        f"argument{'s' * (n != 1)} (positions 0 to {n - 1}). Use an int such as `argnums=0`, or distinct "
        "positions such as `argnums=(0, 1)`."
    )


def _check_count(n: Any) -> int:
    try:
        count = operator.index(n) if not isinstance(n, bool) else -1
    except TypeError:
        count = -1
    if count < 0:
        raise JaxGradUsageError(f"run(n) needs a whole number of steps, 0 or more (e.g. run(1000)); got {n!r}.")
    return count


def _arg_labels(fn: Callable[..., Any], n: int) -> list[str]:
    from .point import parameters

    names = [p.name for p in parameters(fn)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(n)]


def _loss_fn(
    fn: Callable[..., Any],
    n: int,
    idx: tuple[int, ...],
    single: bool,
    rest_def: Any,
    mask: tuple[bool, ...],
    static: list[Any],
) -> Callable[[Any, Any], Any]:
    """``fn`` as a function of (optimized params, dynamic other arguments); the rest is baked in."""
    position = {i: k for k, i in enumerate(idx)}

    def loss_fn(params: Any, dynamic: Any) -> Any:
        dyn, stat = iter(dynamic), iter(static)
        rest = iter(jax.tree_util.tree_unflatten(rest_def, [next(dyn) if d else next(stat) for d in mask]))
        picked = (params,) if single else params
        return fn(*(picked[position[i]] if i in position else next(rest) for i in range(n)))

    return loss_fn
