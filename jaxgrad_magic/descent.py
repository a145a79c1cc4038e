"""The compiled descent programs: a fused step, chunked runs, and a replay that stops at a NaN.

Everything here is pure and jitted: a :class:`StepperState` goes in with the other arguments
and the learning rate, and the next state comes out with a few numbers to report. The
programs for one function, argument signature and optimizer are built once by
:class:`Programs` (and cached by the caller).

* The learning rate is a traced argument and the optimizer is built inside the trace, so
  changing the rate recompiles nothing.
* A step is one call that returns the new state as it is (the parameters are ready to read,
  on their devices and with their shardings) and its report in one small array, which also
  carries the loss.
* ``run`` takes up to :data:`CHUNK` steps in one ``fori_loop`` with a dynamic trip count,
  writing losses into a buffer, so any number of steps reuses one compile. Nothing in the loop
  checks for NaN; the caller checks once per chunk and replays only a chunk that went bad with
  ``guarded``, which stops before the first non-finite state.
* Over more than two parameters, the loop also writes the full parameters of every
  ``every``-th step: the snapshots :mod:`jaxgrad_magic.trail` keeps. Losses, path and
  snapshots share one buffer (:class:`Record` says why).
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
from .host import fetch
from .trail import Rows, capacity, snapshot_dtype

CHUNK = 16_384
"""Steps one compiled chunk of ``run(n)`` can take; longer runs take several chunks."""


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


def lr_dtype(params: Any) -> Any:
    """The dtype the learning rate travels in: float32, or the parameters' own when wider (float64).

    Args:
      params: the parameters (arrays or shape/dtype structs).

    Returns:
      The widest of float32 and the parameters' floating-point dtypes.
    """
    dtypes = [x.dtype for x in jax.tree_util.tree_leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.result_type(jnp.float32, *dtypes)


class Descent(NamedTuple):
    """What a descent steps with: the loss and its gradient, and the optimizer.

    Attributes:
      evaluate: ``(params, dynamic) -> (loss, grad, aux)``; see :func:`evaluator`.
      make: learning rate -> ``optax.GradientTransformation`` (called inside the trace).
    """

    evaluate: Callable[[Any, Any], tuple[jax.Array, Any, Any]]
    make: Callable[[Any], optax.GradientTransformation]


def evaluator(loss_fn: Callable[[Any, Any], Any], has_aux: bool) -> Callable[[Any, Any], tuple[jax.Array, Any, Any]]:
    """The loss, its gradient and the aux output in one pass.

    Args:
      loss_fn: ``(params, dynamic) -> loss``, or ``-> (loss, aux)`` with ``has_aux``.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      ``(params, dynamic) -> (loss, grad, aux)``, aux None without ``has_aux``.
    """
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def evaluate(params: Any, dynamic: Any) -> tuple[jax.Array, Any, Any]:
        if has_aux:
            (loss, aux), grad = value_and_grad(params, dynamic)
            return loss, grad, aux
        loss, grad = value_and_grad(params, dynamic)
        return loss, grad, None

    return evaluate


def init(d: Descent, params: Any, dynamic: Any, lr: jax.Array) -> StepperState:
    """The state at ``params``: a fresh optimizer state, and the loss and gradient there.

    Args:
      d: the loss and the optimizer.
      params: the parameters.
      dynamic: the other arguments of the loss.
      lr: the learning rate (a scalar in :func:`lr_dtype`, traced).

    Returns:
      A :class:`StepperState`, strongly typed throughout.
    """
    loss, grad, aux = d.evaluate(params, dynamic)
    return _strong(StepperState(params, d.make(lr).init(params), grad, loss, aux))


def advance(d: Descent, state: StepperState, dynamic: Any, lr: jax.Array) -> StepperState:
    """One optimizer step from ``state``, with the loss and gradient at the new parameters.

    Args:
      d: the loss and the optimizer.
      state: the state to step from (its gradient drives the update).
      dynamic: the other arguments of the loss.
      lr: the learning rate (a scalar in :func:`lr_dtype`, traced).

    Returns:
      The next :class:`StepperState`.
    """
    updates, opt_state = d.make(lr).update(state.grad, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    loss, grad, aux = d.evaluate(params, dynamic)
    return _strong(StepperState(params, opt_state, grad, loss, aux))


def stats(state: StepperState) -> jax.Array:
    """What a report needs, in one small array (one transfer to the host); :meth:`Report.read` reads it.

    Args:
      state: the state to report on.

    Returns:
      ``[loss, gradient norm, 1.0 if everything is finite else 0.0]``, followed by the
      flattened parameters when :func:`path_width` keeps a path; in the loss's dtype, at
      least float32.
    """
    dtype = _report_dtype(state)
    grad_norm, finite = _norm_and_check(state.grad, state.params, dtype)
    loss = state.loss.astype(dtype)
    ok = jnp.isfinite(loss) & finite
    head = jnp.stack([loss, grad_norm, ok.astype(dtype)])
    return head if path_width(state.params) is None else jnp.concatenate([head, _flat_params(state)])


_new_tuple = tuple.__new__


class Report(NamedTuple):
    """A state's :func:`stats` on the host, read by name.

    Attributes:
      loss: the loss.
      grad_norm: the gradient's global norm.
      finite: the loss, the gradient and the parameters are all finite.
      point: the flattened parameters when :func:`path_width` keeps a path, else empty.
    """

    loss: float
    grad_norm: float
    finite: bool
    point: list[float]

    @classmethod
    def read(cls, stats: jax.Array) -> Report:
        """The report in ``stats`` (from :func:`stats`): one transfer, which waits for the program.

        Args:
          stats: the array a descent program returned.

        Returns:
          The report, in Python floats and a bool.
        """
        values = fetch(stats).tolist()
        # tuple.__new__ skips the generated __new__'s argument handling: a step reads one report.
        return _new_tuple(cls, (values[0], values[1], values[2] > 0, values[3:]))


def path_width(params: Any) -> int | None:
    """How many numbers the path records per step.

    Args:
      params: the parameters (arrays or shape/dtype structs).

    Returns:
      Their number of entries when there are at most two, all floating point (a path that a
      curve or contour plot can show), else None.
    """
    leaves = jax.tree_util.tree_leaves(params)
    width = sum(math.prod(x.shape) for x in leaves)
    return width if width <= 2 and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves) else None


class Every(NamedTuple):
    """Which steps of a chunk leave a snapshot, worked out on the host (:meth:`at`).

    Traced, so any spacing reuses one compile. The host does the arithmetic: any operation on
    these inputs at the top of the program would be one more ready to run at its start (see
    :class:`Record`).

    Attributes:
      first: the steps into the chunk of its first due step (1 to ``every``).
      every: the spacing: the steps that are multiples of it leave one.
      due: how many of the chunk's steps are due.
    """

    first: Any
    every: Any
    due: Any

    @classmethod
    def at(cls, step: int, every: int, n: int) -> Every:
        """The due steps of a chunk of ``n`` steps from ``step``, at multiples of ``every``."""
        first = every - step % every
        return cls(np.int32(first), np.int32(every), np.int32((n - first) // every + 1))


def snapshot_slots(params: Any) -> int | None:
    """How many snapshots one chunk over ``params`` may write: as many as the trail keeps (see
    :func:`jaxgrad_magic.trail.capacity`); None when :func:`path_width` keeps the whole path instead."""
    if path_width(params) is not None:
        return None
    size = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))
    return capacity(size, jnp.dtype(snapshot_dtype(params)).itemsize)


class Record:
    """Where a chunk writes what it records: the losses, the path and the snapshots, in one buffer.

    One buffer, not three, because of how XLA:CPU runs a program: when more than eight
    operations are ready at once it hands half of them to another thread, and waking that thread
    costs about 25 µs on a small machine, more than a 1,000-step chunk of a small function. Each
    buffer is one more operation ready at the start (beside a copy of every array of the state),
    so a second and third buffer cost a small descent a third of its run.

    Args:
      state: the descent state (for the shapes and dtypes).
      slots: the snapshots a chunk writes (:func:`snapshot_slots`), or None.
    """

    def __init__(self, state: StepperState, slots: int | None) -> None:
        self.report = _report_dtype(state)
        self.width = path_width(state.params)
        self.size = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params))
        self.snapshot = snapshot_dtype(state.params)
        self.rows = None if slots is None else slots + 1  # the last row takes the writes nobody reads
        self.dtype = jnp.promote_types(self.report, self.snapshot) if self.rows else self.report
        self._path = CHUNK  # where the path starts
        self._snaps = CHUNK * (1 + (self.width or 0))  # where the snapshots start

    def empty(self) -> jax.Array:
        """The buffer, zeros."""
        return jnp.zeros(self._snaps + (self.rows or 0) * self.size, self.dtype)

    def step(self, buffer: jax.Array, i: jax.Array, state: StepperState) -> jax.Array:
        """Write the loss (and the point, when a path is kept) of the chunk's ``i``-th step."""
        buffer = jax.lax.dynamic_update_slice(buffer, state.loss.astype(self.dtype)[None], (i,))
        if self.width is not None:
            buffer = jax.lax.dynamic_update_slice(buffer, self._flat(state), (self._path + i * self.width,))
        return buffer

    def snap(self, buffer: jax.Array, row: jax.Array, state: StepperState) -> jax.Array:
        """Write the parameters of ``state`` as snapshot ``row``."""
        return jax.lax.dynamic_update_slice(buffer, self._flat(state), (self._snaps + row * self.size,))

    @property
    def where(self) -> Rows | None:
        """Where the snapshots are in the buffer, or None when none are kept."""
        return None if self.rows is None else Rows(self._snaps, self.rows, self.size, jnp.dtype(self.snapshot).name)

    def split(self, buffer: jax.Array) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
        """The losses (:data:`CHUNK`) and the path (``(CHUNK, width)``, or None) in ``buffer``,
        and ``buffer`` itself when it holds snapshots (read them with :attr:`where`), else None.

        The snapshots are not sliced out here: that would copy them once more than the trail
        does when it keeps them (:class:`~jaxgrad_magic.trail.Rows`)."""
        losses = buffer[:CHUNK].astype(self.report)
        path = None if self.width is None else buffer[CHUNK : self._snaps].reshape(CHUNK, self.width)
        return losses, None if path is None else path.astype(self.report), None if self.rows is None else buffer

    def _flat(self, state: StepperState) -> jax.Array:
        return jnp.concatenate([jnp.ravel(x).astype(self.dtype) for x in jax.tree_util.tree_leaves(state.params)])


def run_chunk(
    d: Descent,
    state: StepperState,
    dynamic: Any,
    lr: jax.Array,
    n: jax.Array,
    every: Every | None = None,
    slots: int | None = None,
) -> tuple[StepperState, jax.Array, jax.Array | None, jax.Array | None]:
    """``n`` steps (at most :data:`CHUNK`) with no finiteness checks.

    Args:
      d: the loss and the optimizer.
      state: the state to start from.
      dynamic: the other arguments of the loss.
      lr: the learning rate (a scalar in :func:`lr_dtype`, traced).
      n: how many steps (traced, so any ``n`` reuses one compile).
      every: which steps leave a snapshot, when ``slots`` is given.
      slots: the most snapshots the chunk writes (the caller picks a spacing that fits), or None.

    Returns:
      The last state, the loss after each step, the flat parameters after each step when
      a path is kept (else None); the buffers hold :data:`CHUNK` rows, the first ``n`` written;
      and the record holding the snapshots (``slots + 1`` rows, the ``j``-th due step in row ``j``;
      read them with ``Record(state, slots).where``), or None.
    """
    record = Record(state, slots)

    def body(i: jax.Array, carry: tuple[StepperState, jax.Array]) -> tuple[StepperState, jax.Array]:
        state = advance(d, carry[0], dynamic, lr)
        return state, record.step(carry[1], i, state)

    if record.rows is None or every is None:
        state, buffer = jax.lax.fori_loop(0, n, body, (state, record.empty()))
        return (state, *record.split(buffer))

    # Snapshots: window j runs from due step j (row j is written as it starts) to the next; window
    # -1 runs up to the first, and writes the row nobody reads. No branch and no write in the steps
    # themselves: a full row written every step would cost a big model more than its step.
    def window(j: jax.Array, carry: tuple[StepperState, jax.Array]) -> tuple[StepperState, jax.Array]:
        state, buffer = carry
        buffer = record.snap(buffer, jnp.where(j < 0, record.rows - 1, j), state)
        lo = jnp.where(j < 0, 0, every.first + j * every.every)
        return jax.lax.fori_loop(lo, jnp.minimum(every.first + (j + 1) * every.every, n), body, (state, buffer))

    state, buffer = jax.lax.fori_loop(-1, every.due, window, (state, record.empty()))
    return (state, *record.split(buffer))


def replay(
    d: Descent,
    state: StepperState,
    dynamic: Any,
    lr: jax.Array,
    n: jax.Array,
    every: Every | None = None,
    slots: int | None = None,
) -> tuple[StepperState, jax.Array, jax.Array | None, jax.Array | None, jax.Array, jax.Array]:
    """:func:`run_chunk` checked step by step: stops before the first non-finite state.

    Args:
      d: the loss and the optimizer.
      state: the (finite) state to start from.
      dynamic: the other arguments of the loss.
      lr: the learning rate (a scalar in :func:`lr_dtype`, traced).
      n: the most steps to take.
      every, slots: the snapshots, as for :func:`run_chunk`.

    Returns:
      The last finite state, the loss and path buffers and the record holding the snapshots
      (as for :func:`run_chunk`), the steps kept, and the
      :func:`stats` of the first non-finite state (of the last state when all ``n`` were finite).
    """
    record = Record(state, slots)

    def cond(carry: tuple[Any, ...]) -> jax.Array:
        return (carry[0] < n) & carry[1]

    def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        i, _, state, buffer, _ = carry
        new = advance(d, state, dynamic, lr)
        new_stats = stats(new)
        ok = new_stats[2] > 0  # Report.finite, read on the device
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
        buffer = record.step(buffer, i, new)
        if record.rows is not None and every is not None:
            # Rare (a chunk that went bad), so every step writes a row: a due step its own, the
            # others the last, which nobody reads. No branch, so the buffer is never copied.
            k = i + 1 - every.first  # steps past the first due one; lax.rem keeps a negative k off 0
            due = (k >= 0) & (jax.lax.rem(k, every.every) == 0)
            buffer = record.snap(buffer, jnp.where(due, jax.lax.div(k, every.every), record.rows - 1), new)
        return i + ok.astype(i.dtype), ok, state, buffer, new_stats

    first = (jnp.asarray(0, jnp.int32), jnp.asarray(True), state, record.empty(), stats(state))
    done, _, state, buffer, last = jax.lax.while_loop(cond, body, first)
    return (state, *record.split(buffer), done, last)


def _report_dtype(state: StepperState) -> Any:
    return jnp.promote_types(state.loss.dtype, jnp.float32)


def _flat_params(state: StepperState) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(state.params)
    return jnp.concatenate([jnp.ravel(x) for x in leaves]).astype(_report_dtype(state))


def _strong(tree: Any) -> Any:
    # Same dtype, strong type: a weakly typed loss or aux must not change the loop carry's type.
    def strong(x: Any) -> jax.Array:
        x = jnp.asarray(x)  # an aux may hold Python numbers
        return jax.lax.convert_element_type(x, x.dtype)

    return jax.tree_util.tree_map(strong, tree)


def _norm_and_check(grad: Any, params: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The gradient's global norm, and whether every gradient and parameter entry is finite.

    The norm is taken of the gradient divided by its largest entry, so a finite gradient has a
    finite norm up to the dtype's largest number (squaring first overflows float32 from 1.8e19
    on); an inf entry makes the norm inf, a NaN makes it NaN. The check adds ``x * 0`` over the
    gradient and the parameters: 0 for a finite ``x``, NaN for inf or NaN. Both sums read the
    same entries in one pass, and the norm does not depend on the parameters, so a report can
    tell a bad gradient from bad parameters.
    """
    grads = [g.astype(dtype) for g in jax.tree_util.tree_leaves(grad)]
    top = jnp.zeros((), dtype)
    for g in grads:
        top = jnp.maximum(top, jnp.max(jnp.abs(g), initial=0))
    scale = jnp.where(top > 0, top, jnp.ones((), dtype))  # an all-zero gradient: 0, not 0 / 0
    squares = checks = jnp.zeros((), dtype)
    for g, p in zip(grads, jax.tree_util.tree_leaves(params), strict=True):
        squares = squares + jnp.sum(jnp.square(g / scale))
        checks = checks + jnp.sum(g * 0 + p.astype(dtype) * 0)
    norm = jnp.where(jnp.isinf(top), top, scale * jnp.sqrt(squares))  # inf / inf would say NaN
    return norm, ~jnp.isnan(checks)


class Programs:
    """The compiled programs for one function, argument signature and optimizer (cached by the caller).

    Args:
      loss_fn: ``(params, dynamic) -> loss`` (or ``(loss, aux)`` with ``has_aux``).
      make: learning rate -> ``optax.GradientTransformation``.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      params: the starting parameters (their shapes and dtypes are checked here).
      dynamic: the other arguments passed to the programs.
      fn_name: the name used in messages.

    The state crosses the jit boundary as a flat list of arrays (the *carry*, see :meth:`pack`)
    and without its loss, which travels in the report. A small step costs about as much as the
    Python around it, and building the state's nested tuples on every call was a tenth of that.
    ``run`` and ``guarded`` take the starting loss as a number.

    Attributes:
      start: jitted ``(params, dynamic, lr) -> (carry, stats)``: the state at ``params``.
      step: jitted ``(carry, dynamic, lr) -> (carry, stats)``: one fused step.
      run: jitted ``(carry, loss, dynamic, lr, n, every) -> (carry, losses, path, snaps, stats)``:
        :func:`run_chunk`.
      guarded: jitted ``(carry, loss, dynamic, lr, n, every) -> (carry, losses, path, snaps, stats, done,
        last)``: :func:`replay`, compiled on first use.
      loss_dtype: the dtype of the loss.
      path_width: the parameter entries that ``stats`` and ``path`` carry (:func:`path_width`),
        or None when no path is kept.
      snapshot_slots: the snapshots one chunk writes (:func:`snapshot_slots`), or None when a
        path is kept instead.
      snapshot_rows: where they are in what ``run`` and ``guarded`` return as ``snaps``
        (:class:`~jaxgrad_magic.trail.Rows`), or None.
      seconds_per_step: measured by the caller's runs, to size the next chunk.

    Raises:
      JaxGradUsageError: ``loss_fn`` does not return a real scalar, or misuses a traced value.
    """

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Any],
        make: Callable[[Any], optax.GradientTransformation],
        has_aux: bool,
        params: Any,
        dynamic: Any,
        fn_name: str,
    ) -> None:
        _check_loss(loss_fn, params, dynamic, has_aux, fn_name)
        d = Descent(evaluator(loss_fn, has_aux), make)
        lr = jax.ShapeDtypeStruct((), lr_dtype(params))
        shapes = guard(lambda: jax.eval_shape(functools.partial(init, d), params, dynamic, lr), fn_name, has_aux)
        # Traced once here, so a misuse in the optimizer's update is reported now, as a teaching error.
        guard(lambda: jax.eval_shape(functools.partial(advance, d), shapes, dynamic, lr), fn_name, has_aux)
        self.path_width = path_width(shapes.params)
        self.snapshot_slots = slots = snapshot_slots(shapes.params)
        self.snapshot_rows = Record(shapes, slots).where
        self.loss_dtype = shapes.loss.dtype
        self._treedef = jax.tree_util.tree_structure(shapes._replace(loss=None))
        self._params_treedef = jax.tree_util.tree_structure(shapes.params)

        def with_loss(carry: list[jax.Array], loss: jax.Array) -> StepperState:
            return self.unpack(carry)._replace(loss=jnp.asarray(loss).astype(self.loss_dtype))

        def start(p: Any, dyn: Any, lr: jax.Array) -> tuple[list[jax.Array], jax.Array]:
            state = init(d, p, dyn, lr)
            return self.pack(state), stats(state)

        def step(carry: list[jax.Array], dyn: Any, lr: jax.Array) -> tuple[list[jax.Array], jax.Array]:
            state = advance(d, self.unpack(carry), dyn, lr)
            return self.pack(state), stats(state)

        def run(
            carry: list[jax.Array], loss: jax.Array, dyn: Any, lr: jax.Array, n: jax.Array, every: Every
        ) -> tuple[Any, ...]:
            state, losses, path, snaps = run_chunk(d, with_loss(carry, loss), dyn, lr, n, every, slots)
            return self.pack(state), losses, path, snaps, stats(state)

        def guarded(
            carry: list[jax.Array], loss: jax.Array, dyn: Any, lr: jax.Array, n: jax.Array, every: Every
        ) -> tuple[Any, ...]:
            state, losses, path, snaps, done, last = replay(d, with_loss(carry, loss), dyn, lr, n, every, slots)
            return self.pack(state), losses, path, snaps, stats(state), done, last

        self.start = jax.jit(start)
        self.step = jax.jit(step)
        self.run = jax.jit(run)
        self._guarded = guarded
        self.seconds_per_step: float | None = None

    @staticmethod
    def pack(state: StepperState) -> list[jax.Array]:
        """The carry of ``state``: its arrays in a flat list, without the loss."""
        return jax.tree_util.tree_leaves(state._replace(loss=None))

    def unpack(self, carry: list[jax.Array]) -> StepperState:
        """The :class:`StepperState` a carry holds, with ``loss=None``."""
        return jax.tree_util.tree_unflatten(self._treedef, carry)

    def params(self, carry: list[jax.Array]) -> Any:
        """The parameters a carry holds (its first leaves), in their structure."""
        return jax.tree_util.tree_unflatten(self._params_treedef, carry[: self._params_treedef.num_leaves])

    @functools.cached_property
    def guarded(self) -> Callable[..., tuple[Any, ...]]:
        """The step-guarded replay, compiled only when a run first diverges."""
        return jax.jit(self._guarded)


def guard(call: Callable[[], Any], fn_name: str, has_aux: bool) -> Any:
    """Run ``call``; JAX misuse becomes a teaching error, the user's own errors pass through.

    Args:
      call: what to run (a trace, a compile, or a compiled call).
      fn_name: the user's function, for the message.
      has_aux: whether ``aux=True`` was given, for the message.

    Returns:
      What ``call`` returned.

    Raises:
      JaxGradUsageError: a traced value used as a concrete one, or a known JAX misuse.
    """
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
    # Before differentiating: value_and_grad's own message for a non-scalar is about jax.grad, not descent.
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
