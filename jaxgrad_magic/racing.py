"""The optimizer race: every optimizer at its best learning rate, from one start, in one program each.

:func:`race` runs each optimizer over a grid of learning rates from the same point. The rates
of one optimizer are ``jax.vmap``-ped through one compiled program: the optimizer is built
inside the trace from the (traced, here batched) learning rate, as the stepper builds it
(:mod:`jaxgrad_magic.descent`), so an 8-rate sweep costs about one run, and other rates on a
grid of the same size compile nothing.

* Every member steps exactly as a :class:`~jaxgrad_magic.stepper.Stepper` at that rate would:
  the same :func:`~jaxgrad_magic.descent.init` and :func:`~jaxgrad_magic.descent.advance`.
* A member whose loss, gradient or parameters go non-finite is reported (``diverged_at``) and its
  history ends at its last finite step, as the stepper's does. Members share nothing in the
  vmapped program, so it poisons no other; only what is recorded is masked, which costs
  nothing per step (freezing its state would cost a pass over every member's state).
* Histories are kept whole (bounded by :data:`MAX_STEPS`); the path is the parameters
  themselves for one or two of them, else a fixed random 2-D projection of how far they moved.

Pure: no IPython, no widgets; the picture is drawn by :mod:`jaxgrad_magic.race_plot` on first
display.
"""

from __future__ import annotations

import functools
import math
import operator
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .argnums import JaxArgnums
from .cache import CACHE
from .descent import CHUNK, Descent, Programs, StepperState, advance, evaluator, guard, init
from .errors import JaxGradUsageError
from .formatting import number
from .objective import Objective, make_objective
from .optimizers import OPTIMIZERS, Optimizer, check_lr, resolve_optimizer

__all__ = [
    "DEFAULT_LRS",
    "GRID_SIZE",
    "MAX_STEPS",
    "RaceBest",
    "RaceResult",
    "RaceRun",
    "default_grid",
    "race",
]

DEFAULT_LRS: dict[str, float] = {
    "sgd": 1e-2,
    "momentum": 1e-2,
    "nesterov": 1e-2,
    "adam": 1e-3,
    "adamw": 1e-3,
    "nadam": 1e-3,
    "adamax": 2e-3,
    "amsgrad": 1e-3,
    "adabelief": 1e-3,
    "radam": 1e-3,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "yogi": 1e-2,
    "lion": 1e-4,
    "lamb": 1e-3,
}
"""The usual learning rate of each named optimizer (the Keras and PyTorch defaults); 1e-3 for others."""

GRID_SIZE = 8
"""Rates in a default grid."""

GRID_DECADES = (-2.0, 1.5)
"""A default grid spans these decades around the usual rate, in half-decade steps (the usual rate is on it)."""

MAX_STEPS = 1_000_000
"""The most steps a race takes: the whole loss history of every member is kept."""

SETTLE = 0.01
"""A run has settled at the first step whose loss is within this fraction of its final loss."""

_MIN_ROWS = 64  # the smallest history buffer one compiled chunk writes


# --------------------------------------------------------------------------- results


class RaceRun(NamedTuple):
    """One member of a race: an optimizer at one learning rate.

    Attributes:
      optimizer: the optimizer's label (its name, or the factory's name).
      lr: the learning rate.
      losses: the loss at step 0 (the start) and after each step kept, read-only; a member that
        diverged ends at its last finite step, like :attr:`Stepper.history
        <jaxgrad_magic.stepper.Stepper.history>`.
      path: the parameters at each of those steps, shape ``(len(losses), width)``: the flattened
        parameters for one or two of them, else their displacement from the start projected on
        a fixed random 2-D basis (see :attr:`RaceResult.projected`); read-only.
      diverged_at: the step that produced a non-finite loss, gradient or parameter, or None.
    """

    optimizer: str
    lr: float
    losses: np.ndarray
    path: np.ndarray
    diverged_at: int | None

    @property
    def diverged(self) -> bool:
        """True when the member stopped on a non-finite value."""
        return self.diverged_at is not None

    @property
    def final_loss(self) -> float:
        """The loss at the last step kept (the last finite one for a member that diverged)."""
        return float(self.losses[-1])

    @property
    def settled_at(self) -> int:
        """The first step whose loss is within 1% (:data:`SETTLE`) of the final loss."""
        losses = np.asarray(self.losses, dtype=np.float64)
        final = losses[-1]
        return int(np.argmax(np.abs(losses - final) <= SETTLE * abs(final)))


class RaceBest(NamedTuple):
    """An optimizer's best member: the rate whose final loss is lowest.

    Members that diverged are passed over while another did not; when all diverged, the best is
    the one whose last finite loss is lowest, and ``diverged_at`` says so.

    Attributes:
      optimizer: the optimizer's label.
      lr: the best learning rate.
      loss: its final loss.
      settled_at: the first step whose loss came within 1% of the final loss.
      diverged_at: None, unless every member of this optimizer diverged.
      params: the parameters it ended at (NumPy, in the structure of ``jax.grad``'s result for
        the race's ``argnums``), or None when it diverged (its path ends at its last finite point).
      run: the member itself.
    """

    optimizer: str
    lr: float
    loss: float
    settled_at: int
    diverged_at: int | None
    params: Any
    run: RaceRun

    def __repr__(self) -> str:
        mark = f", diverged at step {self.diverged_at}" if self.diverged_at is not None else ""
        return (
            f"RaceBest({self.optimizer}, lr={self.lr:.3g}: loss {number(self.loss, 4)}, "
            f"settled by step {self.settled_at}{mark})"
        )


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class RaceResult:
    """What :func:`race` found: every member's history, each optimizer's best rate, the winner.

    Displayed in a notebook as one picture (the best runs' paths on a contour of ``f`` for two
    parameters, and the loss curves overlaid), which stays in the saved notebook.

    Attributes:
      fn_name: the function's name.
      fn: the function.
      point: all positional arguments at the start.
      argnums: the optimized positions (JAX's ``argnums``).
      has_aux: ``fn`` returns ``(loss, aux)``.
      steps: steps each member was asked to take.
      optimizers: the optimizers' labels, in the order given.
      lrs: each optimizer's grid of rates.
      runs: every member, keyed by ``(optimizer, lr)``, in the order raced.
      best: each optimizer's best member (:class:`RaceBest`).
      winner: the best of the bests (lowest final loss, earlier settling on a tie), or None when
        every member of every optimizer diverged.
      size: how many numbers are optimized (the entries of every optimized argument).
      projected: True when the paths are a 2-D projection (more than two parameters).
      seconds: wall time of the race, compiling included.
    """

    fn_name: str
    fn: Callable[..., Any] = field(repr=False)
    point: tuple[Any, ...] = field(repr=False)
    argnums: JaxArgnums
    has_aux: bool
    steps: int
    optimizers: tuple[str, ...]
    lrs: Mapping[str, tuple[float, ...]]
    runs: Mapping[tuple[str, float], RaceRun] = field(repr=False)
    best: Mapping[str, RaceBest]
    winner: RaceBest | None
    size: int
    projected: bool
    seconds: float

    @property
    def diverged(self) -> list[RaceRun]:
        """The members that diverged."""
        return [run for run in self.runs.values() if run.diverged]

    @property
    def summary(self) -> str:
        """One line: the winner, its rate and loss, and how many members diverged."""
        size = sum(len(v) for v in self.lrs.values())
        head = f"race on {self.fn_name}, {len(self.optimizers)} optimizer{'s' * (len(self.optimizers) != 1)}"
        head += f" × {size // len(self.optimizers)} rates" if size % len(self.optimizers) == 0 else f", {size} runs"
        head += f", {self.steps} steps: "
        w = self.winner
        if w is None:
            return head + "every run diverged; lower the learning rates"
        gone = len(self.diverged)
        tail = f"; {gone} of {size} diverged" if gone else ""
        won = f"{w.optimizer} wins at lr {w.lr:.3g} (loss {number(w.loss, 4)}, settled by step {w.settled_at})"
        return head + won + tail

    @functools.cached_property
    def png(self) -> bytes:
        """The race as one PNG: the best paths on a contour (two parameters) and the loss curves."""
        from .race_plot import draw  # lazy: matplotlib loads when a race is drawn

        return draw(self)

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_html_(self) -> str:
        from .race_plot import html

        return html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # A static picture: it stays in the saved notebook, and shows where no kernel runs.
        return {"image/png": self.png, "text/html": self._repr_html_(), "text/plain": self.summary}

    def __repr__(self) -> str:
        return f"RaceResult({self.summary})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("RaceResult(...)" if cycle else repr(self))


# --------------------------------------------------------------------------- the compiled race


def _point(state: StepperState, basis: jax.Array | None, origin: jax.Array, dtype: Any) -> jax.Array:
    """The path's point at ``state``: non-finite whenever the stepper would call the state diverged.

    The point is the flat parameters, or for more than two their projection on ``basis`` (shape
    ``(2, size)``) less ``origin`` (the start's projection). Every gradient entry is added times
    0 (0 when finite, NaN for inf or NaN), and so is every parameter, through the projection or
    as itself, so with the loss this is the stepper's check, in the same pass that projects.
    """
    params, grads = jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.grad)
    if basis is None:
        check = sum((jnp.sum(g.astype(dtype) * 0) for g in grads), jnp.zeros((), dtype))
        return jnp.concatenate([jnp.ravel(x).astype(dtype) for x in params]) + check
    out, offset = -origin, 0
    for x, g in zip(params, grads, strict=True):
        size = math.prod(x.shape)
        rows = basis[:, offset : offset + size]
        # One fused reduction reads the parameters and the gradient once: no dot call, no copies.
        out = out + jnp.sum(jnp.ravel(x).astype(dtype) * rows + jnp.ravel(g).astype(dtype) * 0, axis=1)
        offset += size
    return out


def _projection(params: Any, basis: jax.Array, dtype: Any) -> jax.Array:
    """``params`` flattened and projected on ``basis`` (shape ``(2, size)``)."""
    out, offset = jnp.zeros(2, dtype), 0
    for x in jax.tree_util.tree_leaves(params):
        size = math.prod(x.shape)
        out = out + jnp.sum(jnp.ravel(x).astype(dtype) * basis[:, offset : offset + size], axis=1)
        offset += size
    return out


class _Chunk(NamedTuple):
    """One compiled chunk's outputs, batched over the members (leading axis)."""

    state: StepperState
    alive: jax.Array
    kept: jax.Array
    losses: jax.Array
    path: jax.Array


class RaceProgram:
    """The compiled race of one function, argument signature and optimizer (cached like the stepper's programs).

    Args:
      objective: the function as a loss of the optimized arguments.
      opt: the optimizer (adjustable: built from the learning rate).
      has_aux: the function returns ``(loss, aux)``.
      fn_name: the name used in messages.

    Attributes:
      first: jitted ``(params0, dynamic, lrs, n, basis, rows=) -> (chunk, loss0, start_ok)``: every
        member from the start, ``n`` steps (at most ``rows``, static: the history buffer's length).
      more: jitted ``(state, alive, kept, params0, dynamic, lrs, n, basis, rows=) -> chunk``: ``n``
        more steps, for races longer than one chunk (compiled only then).
      width: the numbers a path point holds (1 or 2; 2 when projected).
      projected: the path is a projection (more than two parameters).
      dtype: the dtype of the recorded losses and paths (the loss's, at least float32).

    Raises:
      JaxGradUsageError: the function does not return a real scalar, or misuses a traced value.
    """

    def __init__(self, objective: Objective, opt: Optimizer, has_aux: bool, fn_name: str) -> None:
        o = objective
        # The stepper's programs check the loss and trace init and a step once, with teaching
        # errors; cached under the stepper's key, so a Stepper on this function finds them built.
        programs: Programs = CACHE.get_or_build(
            (*o.key, opt.key),
            o.refs + opt.refs,
            lambda: Programs(o.loss_fn, opt.make, has_aux, o.params0, o.dynamic, fn_name),
        )
        d = Descent(evaluator(o.loss_fn, has_aux), opt.make)
        width = programs.path_width
        self.projected = width is None
        self.width = 2 if width is None else width
        dtype = self.dtype = jnp.promote_types(programs.loss_dtype, jnp.float32)

        def loop(
            state: StepperState, alive: jax.Array, kept: jax.Array, origin: jax.Array, dyn: Any, lr: jax.Array,
            n: jax.Array, basis: jax.Array | None, rows: int,
        ) -> _Chunk:  # fmt: skip
            def body(i: jax.Array, carry: _Chunk) -> _Chunk:
                state = advance(d, carry.state, dyn, lr)
                point = _point(state, basis, origin, dtype)
                ok = carry.alive & jnp.isfinite(state.loss) & jnp.all(jnp.isfinite(point))
                # Only what is recorded is masked: a member that went non-finite steps on in NaN,
                # which no other member reads, and its history ends at its last finite step.
                nan = jnp.asarray(jnp.nan, dtype)
                losses = carry.losses.at[i].set(jnp.where(ok, state.loss.astype(dtype), nan))
                path = carry.path.at[i].set(jnp.where(ok, point, nan))
                return _Chunk(state, ok, carry.kept + ok.astype(jnp.int32), losses, path)

            start = _Chunk(state, alive, kept, jnp.zeros(rows, dtype), jnp.zeros((rows, self.width), dtype))
            return jax.lax.fori_loop(0, n, body, start)

        def origin_of(params0: Any, basis: jax.Array | None) -> jax.Array:
            return jnp.zeros(2, dtype) if basis is None else _projection(params0, basis, dtype)

        def first(
            params0: Any, dyn: Any, lrs: jax.Array, n: jax.Array, basis: jax.Array | None, rows: int
        ) -> tuple[_Chunk, jax.Array, jax.Array]:
            origin = origin_of(params0, basis)

            def member(lr: jax.Array) -> tuple[_Chunk, jax.Array, jax.Array]:
                state = init(d, params0, dyn, lr)
                ok = jnp.isfinite(state.loss) & jnp.all(jnp.isfinite(_point(state, basis, origin, dtype)))
                chunk = loop(state, ok, jnp.zeros((), jnp.int32), origin, dyn, lr, n, basis, rows)
                return chunk, state.loss.astype(dtype), ok

            return jax.vmap(member)(lrs)

        def more(
            state: StepperState, alive: jax.Array, kept: jax.Array, params0: Any, dyn: Any, lrs: jax.Array,
            n: jax.Array, basis: jax.Array | None, rows: int,
        ) -> _Chunk:  # fmt: skip
            origin = origin_of(params0, basis)

            def member(s: StepperState, a: jax.Array, k: jax.Array, lr: jax.Array) -> _Chunk:
                return loop(s, a, k, origin, dyn, lr, n, basis, rows)

            return jax.vmap(member)(state, alive, kept, lrs)

        self.first = jax.jit(first, static_argnames="rows")
        self.more = jax.jit(more, static_argnames="rows")


@functools.lru_cache(maxsize=16)
def _basis(size: int, dtype: str) -> jax.Array:
    """A fixed random orthonormal basis of two directions, shape ``(2, size)``: the same for every race of this size."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((size, 2)))
    return jax.device_put(np.ascontiguousarray(q.T, dtype=dtype))  # (2, size): rows read in one pass


def _rows(steps: int) -> int:
    """The history buffer of a chunk: a power of two, so nearby step counts share one compile."""
    return min(CHUNK, max(_MIN_ROWS, 1 << (steps - 1).bit_length()))


class _Raced(NamedTuple):
    """One optimizer's race on the device, before it is read."""

    chunks: list[_Chunk]
    loss0: jax.Array
    start_ok: jax.Array


def _run(program: RaceProgram, o: Objective, lrs: np.ndarray, steps: int, fn_name: str, has_aux: bool) -> _Raced:
    """Dispatch every chunk of one optimizer's race (nothing waits for the device here).

    The rates go as a NumPy array, moved to the device with the call: a ``device_put`` first
    costs a quarter of a small race.
    """
    rows = _rows(steps)
    basis = None
    if program.projected:
        size = sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(o.params0))
        basis = _basis(size, np.dtype(program.dtype).name)
    n = min(steps, rows)
    chunk, loss0, start_ok = guard(
        lambda: program.first(o.params0, o.dynamic, lrs, np.int32(n), basis, rows=rows), fn_name, has_aux
    )
    chunks, done = [chunk], n
    while done < steps:
        n = min(steps - done, rows)
        c = chunks[-1]
        chunks.append(
            guard(
                lambda c=c, n=n: program.more(
                    c.state, c.alive, c.kept, o.params0, o.dynamic, lrs, np.int32(n), basis, rows=rows
                ),
                fn_name,
                has_aux,
            )
        )
        done += n
    return _Raced(chunks, loss0, start_ok)


# --------------------------------------------------------------------------- the race


def default_grid(optimizer: Any) -> tuple[float, ...]:
    """The default learning-rate grid of an optimizer: :data:`GRID_SIZE` rates, log-spaced around its usual rate.

    Args:
      optimizer: a name from :data:`~jaxgrad_magic.optimizers.OPTIMIZERS`, or a function of the
        learning rate (its ``__name__`` picks the usual rate, e.g. ``optax.adam``; else 1e-3).

    Returns:
      The rates, increasing: the usual rate times ``10 ** (k / 2)`` for ``k`` from -4 to 3.
    """
    label = resolve_optimizer(optimizer).label
    usual = DEFAULT_LRS.get(label, 1e-3)
    lo, hi = GRID_DECADES
    return tuple(float(f"{usual * 10.0**e:.3g}") for e in np.linspace(lo, hi, GRID_SIZE))


def race(
    f: Callable[..., Any],
    at: Any,
    optimizers: Any = ("sgd", "momentum", "adam"),
    lrs: Any = None,
    steps: int = 500,
    argnums: int | tuple[int, ...] = 0,
    *,
    has_aux: bool = False,
    fn_name: str | None = None,
) -> RaceResult:
    """Race optimizers from one start, each over a grid of learning rates, and pick each one's best rate.

    Each optimizer's rates run as one compiled, ``jax.vmap``-ped program (an 8-rate sweep costs
    about one run), and every member steps exactly as a :class:`~jaxgrad_magic.stepper.Stepper`
    at that rate and optimizer would. A member that goes non-finite stops at its last finite
    step and is reported; the others carry on. Racing again with other rates on grids of the
    same sizes compiles nothing.

    Args:
      f: the loss: ``f(*at)`` returns a real scalar (or ``(loss, aux)`` with ``has_aux``).
      at: the start: all positional arguments as a tuple (anything else is the only argument).
      optimizers: names (``sgd``, ``momentum``, ``adam``, ... see
        :data:`~jaxgrad_magic.optimizers.OPTIMIZERS`) or functions of the learning rate that return
        an ``optax.GradientTransformation`` (``optax.adam``, ``lambda lr: optax.sgd(lr, momentum=0.5)``);
        one name alone is one optimizer.
      lrs: None for each optimizer's default grid (:func:`default_grid`: 8 rates around its usual
        rate); one list of rates for every optimizer; or one list per optimizer, in order.
      steps: optimizer steps per member, 1 to :data:`MAX_STEPS`.
      argnums: which arguments to optimize: an int, or a tuple of ints; each may be a pytree.
      has_aux: ``f`` returns ``(loss, aux)``.
      fn_name: the name used in messages and pictures (default ``f.__name__``).

    Returns:
      A :class:`RaceResult`: ``.runs`` (every member's losses and path), ``.best`` (each
      optimizer's best rate, its loss and the step it settled by) and ``.winner``.

    Raises:
      JaxGradUsageError: no optimizers, an unknown one or one that carries its own rate, rates
        that are not positive or of the wrong shape, a bad ``steps`` or ``argnums``, or a
        function that does not return a real scalar or is not finite at the start.
    """
    started = time.perf_counter()
    if not callable(f):
        raise JaxGradUsageError(
            f"race needs a function to minimise as its first argument, but got a {type(f).__name__}."
        )
    name = fn_name or getattr(f, "__name__", "f")
    steps = _check_steps(steps)
    opts = _optimizers(optimizers)
    point = at if isinstance(at, tuple) else (at,)
    o = make_objective(f, point, argnums, name, bool(has_aux))
    dtypes = tuple(dict.fromkeys(np.dtype(x.dtype) for x in jax.tree_util.tree_leaves(o.params0)))
    labels = _labels(opts)
    grids = _grids(lrs, opts, labels, dtypes)
    # descent.lr_dtype, on NumPy dtypes (jnp.result_type costs a tenth of a small race): float32, or float64.
    rate_dtype = np.dtype(np.float64 if np.dtype(np.float64) in dtypes else np.float32)

    raced = []
    for opt in opts:
        program: RaceProgram = CACHE.get_or_build(
            ("race", *o.key, opt.key), o.refs + opt.refs, lambda opt=opt: RaceProgram(o, opt, bool(has_aux), name)
        )
        grid = np.asarray(grids[opts.index(opt)], dtype=rate_dtype)
        raced.append((program, _run(program, o, grid, steps, name, bool(has_aux))))
    # Every optimizer's programs are dispatched before any is read: one wait for all of them.
    host = jax.device_get([(r.loss0, r.start_ok, [(c.alive, c.kept, c.losses, c.path) for c in r.chunks],
                            r.chunks[-1].state.params) for _, r in raced])  # fmt: skip
    if not bool(host[0][1][0]):
        loss0 = float(host[0][0][0])
        raise JaxGradUsageError(
            f"{name} is not finite at the starting point (loss {loss0}, or its gradient or a parameter is "
            "inf or nan), so there is nothing to race: start from another point."
        )

    start = _start_point(o.params0, raced[0][0])
    runs: dict[tuple[str, float], RaceRun] = {}
    best: dict[str, RaceBest] = {}
    for label, grid, (program, _), (loss0, _, chunks, params) in zip(labels, grids, raced, host, strict=True):
        members = _members(label, grid, loss0, chunks, start, steps, program.dtype)
        runs.update(((label, m.lr), m) for m in members)
        best[label] = _best(members, params, o)
    winner = _winner(list(best.values()))
    return RaceResult(
        fn_name=name,
        fn=f,
        point=point,
        argnums=o.argnums,
        has_aux=bool(has_aux),
        steps=steps,
        optimizers=tuple(labels),
        lrs=types.MappingProxyType(dict(zip(labels, grids, strict=True))),
        runs=types.MappingProxyType(runs),
        best=types.MappingProxyType(best),
        winner=winner,
        size=sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(o.params0)),
        projected=raced[0][0].projected,
        seconds=time.perf_counter() - started,
    )


def _start_point(params0: Any, program: RaceProgram) -> np.ndarray:
    """The path's first point: the flat starting parameters, or the origin of a projection."""
    if program.projected:
        return np.zeros(2, dtype=program.dtype)
    leaves = jax.tree_util.tree_leaves(params0)
    return np.concatenate([np.ravel(np.asarray(x)) for x in leaves]).astype(program.dtype)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _members(
    label: str,
    grid: tuple[float, ...],
    loss0: np.ndarray,
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    start: np.ndarray,
    steps: int,
    dtype: Any,
) -> list[RaceRun]:
    """Every member of one optimizer's race, from its chunks on the host."""
    alive, kept = chunks[-1][0], chunks[-1][1]
    rows = chunks[0][2].shape[1]
    # Chunk i wrote steps i * rows + 1 onwards, at most rows of them; the rest of its buffer is unused.
    taken = [min(rows, steps - i * rows) for i in range(len(chunks))]
    losses = np.concatenate([c[2][:, :t] for c, t in zip(chunks, taken, strict=True)], axis=1)
    path = np.concatenate([c[3][:, :t] for c, t in zip(chunks, taken, strict=True)], axis=1)
    members = []
    for k, lr in enumerate(grid):
        n = int(kept[k])
        member_losses = np.concatenate([np.asarray(loss0[k : k + 1], dtype), losses[k, :n]])
        member_path = np.concatenate([start[None, :], path[k, :n]])
        diverged_at = None if bool(alive[k]) else n + 1
        members.append(RaceRun(label, lr, _read_only(member_losses), _read_only(member_path), diverged_at))
    return members


def _best(members: list[RaceRun], params: Any, o: Objective) -> RaceBest:
    """The member of lowest final loss (one that did not diverge, while there is one)."""
    pool = [m for m in members if not m.diverged] or members
    lowest = min(m.final_loss for m in pool)
    chosen = min((m for m in pool if m.final_loss == lowest), key=lambda m: m.settled_at)  # a tie: the faster
    k = members.index(chosen)
    # A module comes back as a module of its type, as the stepper's params do.
    mine = None if chosen.diverged else o.as_given(jax.tree_util.tree_map(lambda x: np.array(x[k]), params))
    return RaceBest(chosen.optimizer, chosen.lr, chosen.final_loss, chosen.settled_at, chosen.diverged_at, mine, chosen)


def _winner(bests: list[RaceBest]) -> RaceBest | None:
    finished = [b for b in bests if b.diverged_at is None]
    return min(finished, key=lambda b: (b.loss, b.settled_at)) if finished else None


# --------------------------------------------------------------------------- checks


def _check_steps(steps: Any) -> int:
    try:
        count = operator.index(steps) if not isinstance(steps, bool) else 0
    except TypeError:
        count = 0
    if not 1 <= count <= MAX_STEPS:
        raise JaxGradUsageError(
            f"race needs steps to be a whole number from 1 to {MAX_STEPS:,} (each member keeps its whole "
            f"loss history), but got {steps!r}. Leave it at 500, or pass e.g. steps=2000; for longer "
            "descents, race first, then continue the winner with a Stepper at its rate."
        )
    return count


def _optimizers(value: Any) -> list[Optimizer]:
    """The optimizers to race, resolved and checked: adjustable, and each given once."""
    given = [value] if isinstance(value, str) or callable(value) else value
    try:
        given = list(given)
    except TypeError:
        given = None
    if not given:
        raise JaxGradUsageError(
            f"race needs at least one optimizer to race, but got {value!r}. Pass names such as "
            "optimizers=('sgd', 'momentum', 'adam') (any of " + ", ".join(OPTIMIZERS) + "), or functions of "
            "the learning rate such as optax.adam."
        )
    opts = []
    for item in given:
        try:
            opt = resolve_optimizer(item)
        except JaxGradUsageError as exc:
            raise JaxGradUsageError(f"race: {exc}") from None
        if not opt.adjustable:
            raise JaxGradUsageError(
                "race sweeps each optimizer's learning rate, but an optax.GradientTransformation such as "
                "`optax.adam(1e-3)` carries its own fixed rate. Pass the function that builds it instead "
                "(`optax.adam`, or `lambda lr: optax.sgd(lr, momentum=0.5)`), or a name such as 'adam'."
            )
        if any(opt.key == other.key for other in opts):
            raise JaxGradUsageError(
                f"race was given the optimizer {opt.label!r} twice. Give each optimizer once; to try more "
                "rates of it, pass them in lrs= (e.g. lrs=[1e-3, 3e-3, 1e-2])."
            )
        opts.append(opt)
    return opts


def _labels(opts: list[Optimizer]) -> list[str]:
    """A distinct label per optimizer: its name, numbered when two share one (two lambdas: custom, custom 2)."""
    labels: list[str] = []
    for opt in opts:
        label, k = opt.label, 2
        while label in labels:
            label, k = f"{opt.label} {k}", k + 1
        labels.append(label)
    return labels


def _is_list(value: Any) -> bool:
    """A list of rates (a list, tuple, range or array of at least one dimension), not one rate."""
    if isinstance(value, np.ndarray | jax.Array):
        return value.ndim > 0
    return isinstance(value, list | tuple | range)


def _grids(value: Any, opts: list[Optimizer], labels: list[str], dtypes: Sequence[Any]) -> list[tuple[float, ...]]:
    """Each optimizer's rates: the default grids, one grid for all, or one per optimizer; checked."""
    if value is None:
        return [default_grid(opt.given) for opt in opts]
    hint = (
        "Pass lrs=None for each optimizer's default grid of 8 rates, one list of rates for every optimizer "
        "(lrs=[1e-3, 1e-2, 1e-1]), or one list per optimizer in the order given "
        f"(for {len(opts)}: lrs=[{', '.join(['[...]'] * len(opts))}])."
    )
    if isinstance(value, Mapping):
        raise JaxGradUsageError(f"race reads lrs= as rates or lists of rates, not as a mapping. {hint}")
    if not _is_list(value):
        nested: list[Any] = [[value]] * len(opts)  # one rate for every optimizer
    else:
        items = list(value)
        lists = [_is_list(v) for v in items]
        if not items:
            raise JaxGradUsageError(f"race got no learning rates (lrs={value!r}). {hint}")
        if all(lists) and len(items) != len(opts):
            raise JaxGradUsageError(
                f"race got {len(items)} lists of learning rates for {len(opts)} optimizer"
                f"{'s' * (len(opts) != 1)} ({', '.join(labels)}). {hint}"
            )
        if any(lists) and not all(lists):
            raise JaxGradUsageError(f"race cannot read lrs={value!r}: it mixes rates and lists of rates. {hint}")
        nested = items if all(lists) else [items] * len(opts)
    grids = []
    for label, given in zip(labels, nested, strict=True):
        rates = list(given)
        if any(_is_list(r) for r in rates):
            raise JaxGradUsageError(f"race cannot read lrs={value!r}: lists of rates nest one deep at most. {hint}")
        if not rates:
            raise JaxGradUsageError(f"race got an empty list of learning rates for {label}. {hint}")
        checked = []
        for rate in rates:
            try:
                checked.append(check_lr(rate, dtypes))
            except JaxGradUsageError as exc:
                raise JaxGradUsageError(
                    f"race, rates for {label}: {exc} Pass rates such as lrs=[1e-3, 1e-2, 1e-1], or lrs=None for "
                    "each optimizer's default grid."
                ) from None
        twice = [r for r in checked if checked.count(r) > 1]
        if twice:
            raise JaxGradUsageError(
                f"race got the learning rate {twice[0]:g} twice for {label}. Give each rate once "
                "(e.g. lrs=np.geomspace(1e-4, 1e-1, 8))."
            )
        grids.append(tuple(checked))
    return grids
