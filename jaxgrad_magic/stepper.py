"""Gradient descent on a function, one step or many: the core behind the descent panel.

:class:`Stepper` minimises ``f(*point)`` over the arguments picked by ``argnums`` with an
optax optimizer, and keeps what a picture of the run needs: the loss history, the path of
one or two parameters, and a status message. No widgets here; ``Stepper.widget`` builds the
panel lazily.

The work is split by job: :mod:`.objective` turns the function and point into a loss of the
parameters, :mod:`.optimizers` resolves the optimizer and the learning rate, :mod:`.descent`
holds the compiled programs, and :mod:`.history` the bounded record. This module keeps the
state between calls, and reports.

* ``run(n)`` works in compiled chunks sized to last about :data:`CHUNK_SECONDS`, so a run in a
  thread reports progress and sees a Stop a few times a second.
* ``step()`` is one call of a fused compiled step that returns the new state and its report;
  nothing is started ahead, so reading ``params`` or ``loss`` after a step waits for that step
  alone, and the parameters are read as the step left them, with no copy.
* The compiled programs are cached by :func:`jaxgrad_magic.cache.function_key`, so a cell
  that re-defines the same function, and a new stepper on it, compile nothing.
"""

from __future__ import annotations

import contextlib
import math
import operator
import re
import threading
import time
import warnings
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .cache import CACHE
from .descent import CHUNK, Every, Programs, Report, StepperState, guard, lr_dtype
from .errors import JaxGradUsageError
from .formatting import compact
from .history import HISTORY_LIMIT, History
from .host import fetch
from .modules import is_module
from .objective import make_objective
from .optimizers import OPTIMIZERS, Optimizer, check_lr, resolve_optimizer
from .sharpness import Meter, SharpnessHistory
from .trail import Rows, Trail, snapshot_dtype

if TYPE_CHECKING:
    from .animation import Animation, GifTarget
    from .slices import Slice

__all__ = [
    "CHUNK",
    "CHUNK_SECONDS",
    "HISTORY_LIMIT",
    "OPTIMIZERS",
    "RunInfo",
    "StepInfo",
    "Stepper",
    "StepperState",
]

CHUNK_SECONDS = 0.1
"""Aim for a chunk of about this long, so progress and Stop are seen a few times a second."""

_FIRST_CHUNK = 64  # steps in the first chunk of a function whose step time is not known yet
_SLICE_PATH = 1024  # the most points of a one- or two-number path that a landscape projects


def _step_message(step: int, loss: float, grad_norm: float) -> str:
    return f"step {step}: loss {loss:.6g}, ‖∇f‖ {grad_norm:.3g}"


class StepInfo(NamedTuple):
    """What one :meth:`Stepper.step` did.

    Attributes:
      steps: steps taken by this call (0 when the step diverged and was not kept).
      step: the step count afterwards.
      loss: the loss at the current parameters.
      grad_norm: the global norm of the gradient at the current parameters.
      diverged: True when the step produced a non-finite value and was not kept.
      note: why the step was not taken (what :attr:`message` says then), else None.
    """

    steps: int
    step: int
    loss: float
    grad_norm: float
    diverged: bool
    note: str | None = None

    @property
    def message(self) -> str:
        """A human-readable status: ``step 3: loss 0.25, ‖∇f‖ 1``, or why the step was not taken."""
        # Formatted when read: a loop of steps that never reads it does not pay for it.
        return self.note if self.note is not None else _step_message(self.step, self.loss, self.grad_norm)


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


_VIEW: Callable[[Stepper], Any] | None = None  # builds a view with ``.widget`` and ``.close()``


def set_view(factory: Callable[[Stepper], Any]) -> None:
    """Register how :attr:`Stepper.widget` builds a panel (the widget layer calls this)."""
    global _VIEW
    _VIEW = factory


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
      divergence: why it diverged (which value went non-finite, at which step, what to do), or
        None; kept while ``diverged`` holds, whatever later messages say.
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
        self._objective = make_objective(fn, point, argnums, self.fn_name, self.has_aux)
        self.argnums = self._objective.argnums
        self.names = tuple(names) if names is not None else (None,) * len(point)
        self._point0 = point
        self._dynamic = self._objective.dynamic
        self._meter = Meter(self._objective, self.has_aux, fn_name=self.fn_name)  # λmax here, asked and during runs

        self._lock = threading.RLock()
        self._observers: list[Callable[[str], None]] = []
        self._view: Any = None  # the panel, once built through .widget
        self._generation = 0  # bumped by reset(), so a run going on in a thread stops
        self._run_end = 0  # the step the current run is to reach
        self._running = False
        dtypes = [np.dtype(x.dtype) for x in jax.tree_util.tree_leaves(self._objective.params0)]
        # A learning rate must not round to 0 in the parameters' dtypes (it travels in the widest, or float32).
        self._lr_dtypes = tuple(dict.fromkeys(dtypes))
        self._lr_dtype = np.dtype(lr_dtype(self._objective.params0))
        # 64-bit values exist only while jax_enable_x64 is on: such a stepper checks the flag before it computes.
        dynamic = [np.dtype(getattr(x, "dtype", np.float32)) for x in jax.tree_util.tree_leaves(self._dynamic)]
        self._x64 = bool(jax.config.jax_enable_x64) and any(d in _WIDE for d in (*dtypes, *dynamic))
        self._lr = check_lr(lr, self._lr_dtypes)
        self._lr_array = jax.device_put(np.asarray(self._lr, dtype=self._lr_dtype))
        self._opt = resolve_optimizer(optimizer)
        self._programs = self._programs_for(self._opt)
        self._history = History(self._programs.path_width)
        self._trail = self._new_trail()
        self._start(self._objective.params0)
        self.message = f"ready at step 0: loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}"
        if not self._finite:
            self.message = self._bad_start_message()

    # ------------------------------------------------------------------ building

    def _programs_for(self, opt: Optimizer) -> Programs:
        o = self._objective
        return CACHE.get_or_build(
            (*o.key, opt.key),
            o.refs + opt.refs,
            lambda: Programs(o.loss_fn, opt.make, self.has_aux, o.params0, o.dynamic, self.fn_name),
        )

    def _new_trail(self) -> Trail | None:
        """The bounded snapshots of the descent over more than two parameters (see :mod:`jaxgrad_magic.trail`)."""
        if self._programs.snapshot_slots is None:
            return None  # one or two numbers: the history keeps every step's
        params = self._objective.params0
        size = sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params))
        return Trail(size, np.dtype(snapshot_dtype(params)).itemsize)

    def _check_x64(self) -> None:
        """Refuse to compute with 64-bit values once ``jax_enable_x64`` is off (JAX cannot run them then)."""
        if self._x64 and not jax.config.jax_enable_x64:
            raise JaxGradUsageError(
                f"This stepper on {self.fn_name} was made while jax_enable_x64 was on, so its values are "
                "64-bit (float64), but jax_enable_x64 is now off and JAX cannot compute with them. Switch it "
                'back on with `jax.config.update("jax_enable_x64", True)` to go on from here (what it holds '
                "can still be read), or make a new stepper (re-run the cell) to descend in float32."
            )

    def _start(self, params: Any) -> None:
        """Fresh optimizer state at ``params``; the history starts over at step 0."""
        state, stats = guard(
            lambda: self._programs.start(params, self._dynamic, self._lr_array), self.fn_name, self.has_aux
        )
        self._keep(state)
        self._read(Report.read(stats))
        self._history.start(self._loss, self._point)
        if self._trail is not None:
            self._trail.start(params)
        # A start where f or its gradient is not finite cannot descend: marked as diverged at step 0.
        self._set_diverged(None if self._finite else 0, None if self._finite else self._bad_start_message())

    def _keep(self, carry: list[jax.Array]) -> None:
        """Hold ``carry`` (see :meth:`Programs.pack`) as the current state."""
        self._carry, self._params = carry, self._programs.params(carry)

    def _read(self, report: Report) -> None:
        """Take in a state's report (see :class:`jaxgrad_magic.descent.Report`)."""
        self._loss, self._grad_norm = report.loss, report.grad_norm
        self._finite, self._point = report.finite, report.point

    # ------------------------------------------------------------------ stepping

    def step(self) -> StepInfo:
        """Take one optimizer step (one compiled call: update, apply, loss and gradient).

        The call waits for the step, so what it returns and what the stepper holds afterwards
        (``params``, ``loss``) are ready to read.

        Returns:
          A :class:`StepInfo`; when the new state is not finite it is not kept, ``diverged``
          is set and the message says at which step and what to do.

        Raises:
          JaxGradUsageError: the stepper holds 64-bit values and ``jax_enable_x64`` was switched off.
        """
        info = self._step()
        if self._observers:
            self._notify("step")  # outside the lock: an observer may read the stepper
        return info

    def _step(self) -> StepInfo:
        with self._lock:
            if not self._finite:
                self.message = self._bad_start_message()
                return StepInfo(0, self._history.step, self._loss, self._grad_norm, True, self.message)
            if self._x64:
                self._check_x64()
            carry, stats = self._programs.step(self._carry, self._dynamic, self._lr_array)
            report = Report.read(stats)  # waits for the step
            loss, grad_norm = report.loss, report.grad_norm
            if not report.finite:
                self._diverge(self._history.step + 1, report)
                return StepInfo(0, self._history.step, self._loss, self._grad_norm, True, self.message)
            self._keep(carry)
            self._loss, self._grad_norm = loss, grad_norm
            self._history.append(loss, report.point)
            if self._trail is not None and self._trail.due(self._history.step):
                self._trail.add(self._history.step, self._params)  # the parameters as they are: no copy
            if self.diverged:
                self._set_diverged(None, None)
            steps = self._history.step
            self._last_step, self._message = (steps, loss, grad_norm), None  # message formatted when read
            return StepInfo(1, steps, loss, grad_norm, False)

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
        sees a Stop a few times a second. A chunk computes without holding the stepper, so
        other threads never wait for one: a new ``lr`` takes effect at the next chunk, a new
        ``optimizer`` (or a :meth:`step`) drops the chunk in flight and the run goes on from
        there, and :meth:`reset` ends the run.

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
            generation, first = self._generation, self._history.step
            self._run_end = first + n  # the trail's snapshots are spaced for the run's end
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
                    self._check_x64()
                    span = self._meter.steps_until_due(self._history.step, n - taken)
                    start = (self._programs, self._carry, self._loss, self._lr_array, self._history.step)
                done, diverged = self._chunk(*start, span)
                taken += done
                self._track_sharpness(diverged)
                if on_progress is not None:
                    on_progress(taken)
        finally:
            with self._lock:
                self._running = False
        with self._lock:
            steps = self._history.step
            if not diverged:
                how = "stopped early at" if stopped else "ran to"
                self.message = (
                    f"{how} step {steps} ({taken} step{'s' * (taken != 1)} from {first}): "
                    f"loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}"
                )
            seconds = time.perf_counter() - started
            info = RunInfo(taken, steps, self._loss, self._grad_norm, diverged, stopped, seconds, self.message)
        self._notify("run")
        return info

    def _chunk(
        self,
        programs: Programs,
        start: list[jax.Array],
        loss: float,
        lr: jax.Array,
        step: int,
        remaining: int,
    ) -> tuple[int, bool]:
        """Run one chunk from ``start`` (whose loss is ``loss``, at ``step``); returns (steps kept, diverged).

        The device works without the lock, so setting ``lr``, reading the state or stopping from
        another thread never waits for a chunk. The chunk is kept only if the state is still
        ``start`` when it ends; after a step, an optimizer change or a reset meanwhile it is
        dropped, and the run goes on from the new state. Over more than two parameters the chunk
        also writes the snapshots the trail keeps, at the spacing the trail will have when the run
        ends (fewer writes; a run stopped early keeps fewer, still evenly spaced).
        """
        per_step = programs.seconds_per_step
        hint = _FIRST_CHUNK if per_step is None else max(1, int(CHUNK_SECONDS / max(per_step, 1e-12)))
        k = min(remaining, CHUNK, hint)
        # Spaced for where the run ends: snapshots it would drop by then are never written.
        every = 1 if self._trail is None else self._trail.spacing(max(step + k, self._run_end))
        due = Every.at(step, every, k)
        t0 = time.perf_counter()
        new, losses, path, snaps, stats = programs.run(start, loss, self._dynamic, lr, np.int32(k), due)
        losses = fetch(losses)[:k]  # waits for the chunk
        report = Report.read(stats)
        if report.finite and np.isfinite(losses).all():
            programs.seconds_per_step = (time.perf_counter() - t0) / k
            kept = self._commit(start, new, report, losses, path, (step, every, snaps, programs.snapshot_rows))
            return (k, False) if kept else (0, False)
        # Something went non-finite in this chunk: replay it, stopping before the first bad step.
        new, losses, path, snaps, stats, done, last = programs.guarded(start, loss, self._dynamic, lr, np.int32(k), due)
        done = int(done)
        with self._lock:
            if self._carry is not start:
                return 0, False  # the state moved on meanwhile
            if done:
                taken = np.asarray(losses)[:done]
                self._commit(start, new, Report.read(stats), taken, path, (step, every, snaps, programs.snapshot_rows))
            if done == k:
                return k, False
            self._diverge(self._history.step + 1, Report.read(last))
            return done, True

    def _commit(
        self,
        start: list[jax.Array],
        carry: list[jax.Array],
        report: Report,
        losses: np.ndarray,
        path: Any,
        snapshots: tuple[int, int, Any, Rows | None],
    ) -> bool:
        """Keep a chunk's steps from ``start`` to ``state``, unless the stepper has moved on from ``start``.

        ``snapshots`` is ``(step, every, buffer, where)``: the chunk's first step, its snapshot
        spacing, what it recorded (None when no trail is kept) and where the snapshots are in it.
        """
        path = None if path is None else np.asarray(path)[: len(losses)]
        with self._lock:
            if self._carry is not start:
                return False
            self._keep(carry)
            self._read(report)
            self._history.extend(losses, path)
            if self._trail is not None:
                step, every, buffer, where = snapshots
                if where is not None:
                    self._trail.add_rows(step, len(losses), every, buffer, where)
            self._set_diverged(None, None)
            return True

    def _set_diverged(self, at: int | None, why: str | None) -> None:
        self.diverged, self.diverged_at, self.divergence = at is not None, at, why

    def _diverge(self, at: int, report: Report) -> None:
        loss, grad_norm = report.loss, report.grad_norm
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
        if self._opt.adjustable and (note := self._meter.divergence_note(self._lr, self._opt.label)):
            hint += f": {note}"  # λmax at the start says whether the rate was ever stable
        self.message = (
            f"diverged at step {at}: {what}; {hint}. Kept the last finite state (step {self._history.step}); "
            "reset() starts over."
        )
        self._set_diverged(at, self.message)

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
            self._check_x64()
            self._start(self._objective.params0)
            self._meter.clear_history()
            self.message = f"reset to step 0: loss {self._loss:.6g}" if self._finite else self._bad_start_message()
        self._notify("reset")

    def apply(self) -> dict[str, Any]:
        """Write the current parameters into the notebook.

        When every optimized argument came from its own notebook variable (``names``), each is
        written back to its variable, in the kind it had (a Python float stays a float, a
        NumPy array stays NumPy with its dtype). Otherwise the parameters (``params``) are
        written to ``<fn_name>_params``, and no variable is touched: that is when an optimized
        argument came from no variable, and when two came from the same one (``at=(xa, xa)``
        with ``argnums=(0, 1)``), whose values have parted ways, so writing both to ``xa``
        would keep only the last; this case also warns. ``message`` says what was written.

        Returns:
          The names written and their values.
        """
        with self._lock:
            namespace = self.namespace
            if namespace is None:
                import __main__

                namespace = __main__.__dict__
            params, idx = self.params, self._objective.idx
            names = [self.names[i] if i < len(self.names) else None for i in idx]
            shared = [name for name in dict.fromkeys(names) if name and names.count(name) > 1]
            if all(names) and not shared:
                values = self._per_argument(params)
                written = {name: _like(self._point0[i], v) for name, i, v in zip(names, idx, values, strict=True)}
            else:
                base = re.sub(r"\W+", "_", self.fn_name.rsplit(".", 1)[-1]).strip("_") or "f"
                originals = tuple(self._point0[i] for i in idx)
                original = self._objective.picked.join(originals)
                written = {f"{base}_params": _like(original, params)}
            namespace.update(written)
            self.message = f"wrote {', '.join(written)} (step {self._history.step}) into the notebook"
            if shared:
                labels, step = self._objective.labels, self._history.step
                why = "; ".join(
                    " and ".join(labels[i] for i, n in zip(idx, names, strict=True) if n == name)
                    + f" both came from `{name}`"
                    for name in shared
                )
                self.message = (
                    f"{why}, and were optimized separately; one variable cannot hold both, so "
                    f"{', '.join(f'`{n}`' for n in shared)} stayed as before. Wrote all the optimized arguments, in "
                    f"argument order, to `{next(iter(written))}` (step {step}) instead: assign from it what you keep."
                )
        if shared:
            warnings.warn(self.message, UserWarning, stacklevel=2)
        return written

    def _per_argument(self, params: Any) -> tuple[Any, ...]:
        """``params`` as one value per optimized argument."""
        return self._objective.picked.split(params)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> StepperState:
        """The current :class:`StepperState` (parameters, optimizer state, gradient, loss, aux)."""
        with self._lock:  # the loss travels apart from the state (see Programs): put back together
            state, loss = self._programs.unpack(self._carry), self._loss
            return state._replace(loss=jnp.asarray(loss, dtype=self._programs.loss_dtype))

    @property
    def params(self) -> Any:
        """The optimized arguments now, in the structure of ``jax.grad``'s result for ``argnums``.

        A module given as an argument (Equinox, Flax NNX) comes back as a new module of its type,
        holding the current parameters and its other state as given.
        """
        return self._objective.as_given(self._params)

    @property
    def trainable(self) -> Any:
        """What is optimized now: :attr:`params`, with each module reduced to what its framework
        differentiates (the structure of :attr:`grad`)."""
        return self._params

    @property
    def grad(self) -> Any:
        """The gradient at the current parameters (the structure of :attr:`params`)."""
        with self._lock:
            return self._programs.unpack(self._carry).grad

    @property
    def aux(self) -> Any:
        """The auxiliary output at the current parameters (``has_aux=True``), else None."""
        with self._lock:
            return self._programs.unpack(self._carry).aux

    @property
    def point(self) -> tuple[Any, ...]:
        """All positional arguments, with the optimized ones at their current values."""
        args = list(self._point0)
        for i, value in zip(self._objective.idx, self._per_argument(self.params), strict=True):
            args[i] = value
        return tuple(args)

    @property
    def message(self) -> str:
        """The last human-readable status."""
        message = self._message
        if message is None:  # the status of the last step, formatted on the first read
            message = self._message = _step_message(*self._last_step)
        return message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value

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
        return self._history.step

    @property
    def running(self) -> bool:
        """True while :meth:`run` is going (e.g. in a background thread)."""
        return self._running

    @property
    def history(self) -> np.ndarray:
        """The loss after each step, first entry the initial loss (float64).

        Bounded: the initial loss plus the most recent :data:`HISTORY_LIMIT` (100,000)
        entries, so at most 100,001; :attr:`history_steps` gives each entry's step number.
        A read-only snapshot that later steps do not change (``.copy()`` it to write into it);
        reading it costs no copy while the descent has taken at most 100,000 steps.
        """
        with self._lock:
            return self._history.losses()

    @property
    def history_steps(self) -> np.ndarray:
        """The step number of each :attr:`history` entry: 0, then the most recent steps (read-only)."""
        with self._lock:
            return self._history.steps()

    @property
    def trajectory(self) -> np.ndarray | None:
        """The flattened parameters at each :attr:`history_steps` entry, shape ``(len, size)``.

        Kept when the optimized parameters have at most two elements in all (for drawing the
        path on a curve or contour plot, flattened like ``jax.flatten_util.ravel_pytree``),
        else None. Bounded and read-only like :attr:`history`.
        """
        with self._lock:
            return self._history.path()

    @property
    def lr(self) -> float:
        """The learning rate; setting it recompiles nothing and continues from the current step."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        lr = check_lr(value, self._lr_dtypes)
        self._check_x64()  # the rate is put on the device in the parameters' dtype
        with self._lock:
            self._lr = lr
            self._lr_array = jax.device_put(np.asarray(lr, dtype=self._lr_dtype))
            if self._opt.adjustable:
                self.message = f"learning rate changed to {lr:g}; continuing from step {self._history.step}"
            else:
                self.message = (
                    f"learning rate set to {lr:g}, but the optimizer is a fixed optax transformation that "
                    "carries its own learning rate, so nothing changes. Pass a name (e.g. 'adam') or a "
                    "function of the learning rate (e.g. `optax.adam`) to steer it."
                )
        self._notify("lr")

    @property
    def lr_adjustable(self) -> bool:
        """False when the optimizer is a fixed transformation, so :attr:`lr` has no effect."""
        return self._opt.adjustable

    # ------------------------------------------------------------------ curvature

    def sharpness(self) -> float:
        """λmax: the largest eigenvalue of the loss's Hessian over the optimized arguments, at the current point.

        Lanczos on Hessian-vector products (forward over reverse); the Hessian is never formed.
        Measured once per point, each time starting from the last top eigenvector, so after a
        few steps it takes a handful of products (about two gradients each). See :attr:`lr_limit`.

        Raises:
          JaxGradUsageError: the stepper holds 64-bit values and ``jax_enable_x64`` was switched off, or the
            function cannot be differentiated forward over reverse (a ``jax.custom_vjp``).
        """
        self._check_x64()
        return self._meter.measure(self._params).value

    @property
    def lr_limit(self) -> float:
        """``2 / λmax`` at the current point: the largest learning rate plain gradient descent keeps stable.

        A step of plain gradient descent on a quadratic multiplies the error along the eigenvector
        of each eigenvalue λ by ``1 - lr·λ``: past ``2/λmax`` it grows along the sharpest direction.
        Near a minimum the loss is close to its quadratic, so this is where descent turns unstable
        there. For heavy-ball momentum with coefficient β (``optimizer="momentum"``, β = 0.9) the
        bound is ``(2 + 2β)/λmax`` (here 3.8/λmax), for Nesterov's ``(2 + 2β)/((1 + 2β)λmax)``
        (1.36/λmax). Adam and the other adaptive methods rescale every coordinate's step, so for
        them it is a guide to the scale of the rate, not a bound. ``inf`` when λmax <= 0 (nothing
        curves up to overshoot). Measured by :meth:`sharpness`.
        """
        lam = self.sharpness()
        return 2 / lam if lam > 0 else math.inf if lam <= 0 else math.nan  # nan where f is not finite

    @property
    def sharpness_every(self) -> int:
        """Measure λmax every this many steps of :meth:`run` into :attr:`sharpness_history` (0: never).

        A run then works in chunks that end at those steps. Each measurement starts from the last
        top eigenvector and stops at 1% (a handful of Hessian-vector products, about two gradients
        each), so it costs as much as a few steps: see ``benchmarks/bench_spectrum.py``.
        """
        return self._meter.every

    @sharpness_every.setter
    def sharpness_every(self, value: int) -> None:
        self._meter.every = value

    @property
    def sharpness_history(self) -> SharpnessHistory:
        """λmax measured during runs (to about 1%): ``steps``, ``values``, the learning rate then
        (``lrs``) and the λmax the optimizer was stable below at that rate (``limits``).

        Filled every :attr:`sharpness_every` steps (the most recent 100,000 measurements kept);
        :meth:`reset` empties it. Above ``limits`` (``2 / lrs`` for plain gradient descent) the
        descent is past its stable rate. The arrays are read-only; in a notebook it shows as a
        picture of λmax against the limit over the steps.
        """
        return self._meter.history()

    def _track_sharpness(self, diverged: bool) -> None:
        """After a chunk of a run: measure λmax when a measurement falls due at this step."""
        if self._meter.every and not diverged:
            with self._lock:
                step, params, lr, label = self._history.step, self._params, self._lr, self._opt.label
            self._meter.track(step, params, lr, label)

    @property
    def optimizer(self) -> Any:
        """The optimizer: its name, or the transformation or function that was given.

        Setting it starts a fresh optimizer state at the current parameters; the step count,
        history and path continue.
        """
        return self._opt.given

    @optimizer.setter
    def optimizer(self, value: Any) -> None:
        opt = resolve_optimizer(value)
        with self._lock:
            self._check_x64()
            params = self.params
            programs = self._programs_for(opt)
            state, stats = guard(
                lambda: programs.start(params, self._dynamic, self._lr_array), self.fn_name, self.has_aux
            )
            self._opt, self._programs = opt, programs
            self._keep(state)
            self._read(Report.read(stats))
            self.message = (
                f"optimizer changed to {opt.label} (fresh optimizer state); continuing from step {self._history.step}"
            )
        self._notify("optimizer")

    @property
    def optimizer_label(self) -> str:
        """The optimizer's name, or ``custom`` for a transformation given as an object."""
        return self._opt.label

    def observe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(what)`` after every change, from the thread that made it.

        ``what`` is ``"step"``, ``"run"`` (at the end of a run), ``"reset"``, ``"lr"`` or
        ``"optimizer"``. A view follows the stepper this way, whoever changed it: its own
        buttons or code in the notebook.

        Args:
          callback: called with what changed; it may read the stepper.

        Returns:
          A function that stops the calls.
        """
        self._observers.append(callback)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(callback)

        return stop

    def _notify(self, what: str) -> None:
        for callback in list(self._observers):
            callback(what)

    @property
    def widget(self) -> Any:
        """The ipywidgets descent panel for this stepper (built on first access).

        The widget layer provides it (:mod:`jaxgrad_magic.panel`, which ``%load_ext
        jaxgrad_magic`` imports, registers itself with :func:`set_view`); this module imports
        no widgets. A stepper of a magic's result has its panel closed when a re-run of the cell
        (or a cell binding the same name) replaces the result, whether the panel was displayed
        or not; reading ``widget`` again then builds a fresh one.

        Raises:
          JaxGradUsageError: no widget layer was registered.
        """
        with self._lock:
            if self._view is None:
                if _VIEW is None:
                    raise JaxGradUsageError(
                        "No descent panel is available: the panel comes from `jaxgrad_magic.panel` (ipywidgets). "
                        "Run `%load_ext jaxgrad_magic`, or `import jaxgrad_magic.panel` first."
                    )
                self._view = _VIEW(self)
            return self._view.widget

    def close_widget(self) -> None:
        """Close the panel if one was built (stopping its run); the next ``.widget`` builds a fresh one."""
        with self._lock:
            view, self._view = self._view, None
        if view is not None:
            view.close()

    def landscape(self, directions: str = "random", grid: int = 41, span: float = 1.0, *, seed: int = 0) -> Slice:
        """The loss on a plane through the current parameters, with the path so far projected on it.

        Works for any number of parameters: the plane is spanned by two directions of the kind
        asked for, and the grid is evaluated on the device in one compiled, vmapped program.
        See :mod:`jaxgrad_magic.slices`.

        Args:
          directions: ``"random"`` (filter-normalised Gaussian directions, Li et al. 2018),
            ``"pca"`` (the top two principal directions of the recorded path: they depend on
            the path) or ``"hessian"`` (the two Hessian eigenvectors of largest magnitude).
          grid: points per side, odd (the current parameters are the centre).
          span: how far the grid reaches along each direction.
          seed: the random directions (the same seed gives the same plane).

        Returns:
          A :class:`~jaxgrad_magic.slices.Slice`: ``alphas``, ``betas``, ``values`` (grid ×
          grid, the centre the current loss), ``path`` (plane coordinates), ``directions``.

        Raises:
          JaxGradUsageError: a bad request, or ``"pca"`` before the parameters moved.
        """
        from .slices import landscape  # lazy: the slicing programs are built when first asked for

        with self._lock:
            self._check_x64()
            params, loss, step = self._params, self._loss, self._history.step
            if self._trail is not None:
                snapshots, capacity = self._trail.snapshots(), self._trail.capacity
            else:  # one or two numbers: every step is in the history; a thinned path is plenty
                path, steps = self._history.path(), self._history.steps()
                keep = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), _SLICE_PATH)).astype(np.int64))
                snapshots, capacity = (steps[keep].tolist(), list(path[keep])), _SLICE_PATH
        return landscape(
            self._objective,
            params,
            loss,
            step,
            snapshots,
            capacity,
            directions=directions,
            grid=grid,
            span=span,
            seed=seed,
            has_aux=self.has_aux,
        )

    def animate(self, path: GifTarget, frames: int = 60, *, duration: int = 100) -> Animation:
        """Write a GIF of the descent so far: the panel's pictures, frame by frame.

        For two parameters the contour plot of ``f`` with the path growing, for one the curve of
        ``f`` with the point moving, else the loss curve growing; each frame is captioned with its
        step. The frames sample the bounded history (:attr:`history`), so the GIF of a long run
        is no bigger than that of a short one. See :func:`jaxgrad_magic.animation.write_gif`.

        Args:
          path: a file name ending in ``.gif`` (``str`` or ``os.PathLike``), or a binary file object.
          frames: how many frames, 2 to 1000 (fewer when the history holds fewer entries).
          duration: milliseconds per frame (at least 20); the last frame stays at least 1.5 s.

        Returns:
          An :class:`~jaxgrad_magic.animation.Animation`: the path, the frame count, what the
          frames show, the size in bytes, and the step of each frame.

        Raises:
          JaxGradUsageError: bad ``path``, ``frames`` or ``duration``, no step taken yet, or a run going on.
        """
        from .animation import write_gif  # lazy: matplotlib loads when a GIF is made, not with the stepper

        return write_gif(self, path, frames, duration=duration)

    # ------------------------------------------------------------------ text

    def __repr__(self) -> str:
        labels = self._objective.labels
        parts = []
        for i, value in zip(self._objective.idx, self._per_argument(self._params), strict=True):
            for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
                parts.append(f"{labels[i]}{jax.tree_util.keystr(path) if path else ''}={compact(leaf, max_items=4)}")
        shown = ", ".join(parts[:4]) + (f", … ({len(parts) - 4} more)" if len(parts) > 4 else "")
        mark = f", diverged at step {self.diverged_at}" if self.diverged else ""
        return (
            f"Stepper({self.fn_name}, {self._opt.label}, lr={self._lr:g}): step {self._history.step}, "
            f"loss {self._loss:.6g}, ‖∇f‖ {self._grad_norm:.3g}{mark}; {shown}"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("Stepper(...)" if cycle else repr(self))


_WIDE = frozenset(np.dtype(t) for t in (np.float64, np.int64, np.uint64, np.complex128))


def _check_count(n: Any) -> int:
    try:
        count = operator.index(n) if not isinstance(n, bool) else -1
    except TypeError:
        count = -1
    if count < 0:
        raise JaxGradUsageError(f"run(n) needs a whole number of steps, 0 or more (e.g. run(1000)); got {n!r}.")
    return count


def _like(original: Any, value: Any) -> Any:
    """``value`` in the kind of ``original``: a Python float stays a float, NumPy stays NumPy."""

    def convert(o: Any, v: Any) -> Any:
        if is_module(o):  # a module built anew, of the type given
            return v
        if isinstance(o, float):
            return float(v)
        if isinstance(o, np.ndarray):
            return np.array(v, dtype=o.dtype)  # a writable copy, like the original
        if isinstance(o, np.generic):
            return o.dtype.type(np.asarray(v))
        return v

    return jax.tree_util.tree_map(convert, original, value, is_leaf=is_module)
