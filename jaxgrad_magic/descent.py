"""The compiled descent programs: a fused step, chunked runs, and a replay that stops at a NaN.

Everything here is pure and jitted: a :class:`StepperState` goes in with the other arguments
and the learning rate, and the next state comes out with a few numbers to report. The
programs for one function, argument signature and optimizer are built once by
:class:`Programs` (and cached by the caller).

* The learning rate is a traced argument and the optimizer is built inside the trace, so
  changing the rate recompiles nothing.
* ``run`` takes up to :data:`CHUNK` steps in one ``fori_loop`` with a dynamic trip count,
  writing losses into a buffer, so any number of steps reuses one compile. Nothing in the loop
  checks for NaN; the caller checks once per chunk and replays only a chunk that went bad with
  ``guarded``, which stops before the first non-finite state.
* Small states cross the jit boundary packed into one flat array per dtype (:class:`Layout`),
  so a single step pays for two or three arrays, not one per leaf.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import JaxGradUsageError, explain_jax_error

CHUNK = 16_384
"""Steps one compiled chunk of ``run(n)`` can take; longer runs take several chunks."""

PACK_LIMIT = 1 << 14
"""States with at most this many elements are packed into one array per dtype between calls."""


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


class Layout:
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


class Programs:
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
        jaxpr, shapes = guard(
            lambda: jax.make_jaxpr(init, return_shape=True)(params, dynamic, lr_shape), fn_name, has_aux
        )
        size = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
        layout = Layout(shapes, packed=size <= PACK_LIMIT)
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


def guard(call: Callable[[], Any], fn_name: str, has_aux: bool) -> Any:
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
    out = guard(lambda: jax.eval_shape(loss_fn, params, dynamic), fn_name, has_aux)
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
