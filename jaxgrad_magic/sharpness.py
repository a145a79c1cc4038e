"""The stability meter: λmax of a descent's loss where it stands, and the learning rate that allows.

Plain gradient descent on a quadratic with Hessian ``H`` multiplies the error along each
eigenvector by ``1 - lr·λ``, so it converges only while ``lr < 2/λmax`` and blows up along the
sharpest direction past it. Near a minimum a loss is close to its quadratic, which makes
``2/λmax`` the learning rate at which descent turns unstable there. With heavy-ball momentum
``β`` the bound is ``(2 + 2β)/λmax``, with Nesterov's ``(2 + 2β)/((1 + 2β)λmax)``; adaptive
methods (adam and the others) rescale every coordinate's step, so for them ``2/λmax`` is a guide
to the scale of the rate, not a bound.

:class:`Meter` keeps one stepper's measurements: λmax by Lanczos on Hessian-vector products
(:func:`jaxgrad_magic.curvature.sharpness`), warm-started from the last top eigenvector so a
measurement after a few steps costs a handful of products; at most one per parameter state;
λmax at the start, for a diverged run's message; and, when asked for, a measurement every ``K``
steps of a run (:attr:`Meter.every`) in a bounded history. No widgets here.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any, NamedTuple

import numpy as np

from . import curvature
from .errors import JaxGradUsageError
from .objective import Objective
from .optimizers import MOMENTUM

HISTORY_LIMIT = 100_000
"""Measurements :attr:`Meter.history` keeps (the most recent)."""
TRACK_TOL = 1e-2
"""The tolerance of the measurements during runs: λmax to about 1%, plenty beside ``2/lr``, in half the products."""


class Bound(NamedTuple):
    """The largest learning rate an optimizer keeps stable at a given λmax, as far as one is known.

    Attributes:
      value: the rate (inf when λmax <= 0: no upward curvature to overshoot).
      formula: how it is made from λmax, e.g. ``2/λmax`` or ``(2+2β)/λmax``.
      exact: True for a bound on the quadratic model (sgd, momentum, nesterov); False for a
        guide (adaptive methods and optimizers given as objects, whose steps scale otherwise).
    """

    value: float
    formula: str
    exact: bool


def bound(lambda_max: float, optimizer: str) -> Bound:
    """The stable learning rate of ``optimizer`` (a name, as the stepper labels it) at ``lambda_max``.

    Args:
      lambda_max: the largest eigenvalue of the loss's Hessian.
      optimizer: the optimizer's label (``sgd``, ``momentum``, ``nesterov``, ``adam``, ``custom``...).

    Returns:
      The :class:`Bound`: for ``momentum`` and ``nesterov`` (β = 0.9) their own bound, for every
      other optimizer ``2/λmax`` (a bound for ``sgd``, a guide for the rest).
    """
    b = MOMENTUM
    factor, formula = {
        "momentum": (2 + 2 * b, "(2+2β)/λmax"),
        "nesterov": ((2 + 2 * b) / (1 + 2 * b), "(2+2β)/((1+2β)λmax)"),
    }.get(optimizer, (2.0, "2/λmax"))
    value = factor / lambda_max if lambda_max > 0 else math.inf
    return Bound(value, formula, optimizer in ("sgd", "momentum", "nesterov"))


class SharpnessHistory(NamedTuple):
    """The measurements of λmax during runs, one row per measurement (read-only arrays).

    Shown in a notebook as a picture: λmax over the steps against the curvature the optimizer
    stays stable below at its rate then (``limits``), the view of the "edge of stability".

    Attributes:
      steps: the step each was taken at.
      values: λmax there.
      lrs: the learning rate then, so ``2 / lrs`` is what λmax was measured against.
      limits: the λmax the optimizer stayed stable below at that rate, from :func:`bound`:
        ``2/lr`` for sgd (a guide for adaptive methods), ``(2+2β)/lr`` with momentum,
        ``(2+2β)/((1+2β) lr)`` with Nesterov.
      optimizer: the optimizer's label at the last measurement (empty before any).
    """

    steps: np.ndarray
    values: np.ndarray
    lrs: np.ndarray
    limits: np.ndarray
    optimizer: str = ""

    def picture(self) -> bytes:
        """λmax over the steps against :attr:`limits`, as PNG bytes (see :mod:`jaxgrad_magic.sharpness_plot`)."""
        from .sharpness_plot import sharpness_png  # lazy: matplotlib loads when a picture is asked for

        exact = bound(1.0, self.optimizer).exact if self.optimizer else True
        return sharpness_png(self.steps, self.values, self.limits, optimizer=self.optimizer, exact=exact)

    def _repr_png_(self) -> bytes | None:
        return self.picture() if len(self.steps) else None


def _read_only(values: list[float], dtype: Any) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    array.flags.writeable = False
    return array


class Meter:
    """λmax of one descent's loss: measured on request, at the start, and every ``every`` steps of a run.

    Args:
      objective: the stepper's function and point (its programs are cached by its key).
      has_aux: the loss returns ``(loss, aux)``.
      tol: the residual, relative to λmax, that ends a measurement.
      fn_name: the function's name, for messages.
    """

    def __init__(
        self, objective: Objective, has_aux: bool, tol: float = curvature.DEFAULT_TOL, fn_name: str = "f"
    ) -> None:
        self._objective = objective
        self._has_aux = has_aux
        self._fn_name = fn_name
        self._tol = tol
        self._lock = threading.Lock()
        self._last: tuple[Any, float, curvature.Sharpness] | None = None  # (parameters, tolerance, what was found)
        self._start: curvature.Sharpness | None = None
        self._every = 0
        self._history: collections.deque[tuple[int, float, float, float, str]] = collections.deque(maxlen=HISTORY_LIMIT)

    def measure(self, params: Any, tol: float | None = None) -> curvature.Sharpness:
        """λmax at ``params``: measured once per parameter state (the stepper replaces them at every step).

        Args:
          params: the parameters, in the objective's structure.
          tol: the residual, relative to λmax, that ends the measurement (default the meter's).

        Returns:
          The :class:`~jaxgrad_magic.curvature.Sharpness` there.
        """
        tol = self._tol if tol is None else tol
        with self._lock:
            last = self._last
        if last is not None and last[0] is params and last[1] <= tol:
            return last[2]
        # The last top direction: a few steps find the new one (unless it came from a point where f was not finite).
        start = None if last is None or not math.isfinite(last[2].value) else last[2].vector
        found = curvature.sharpness(
            self._objective, params, has_aux=self._has_aux, tol=tol, start=start, fn_name=self._fn_name
        )
        with self._lock:
            self._last = (params, tol, found)
        return found

    def at_start(self) -> curvature.Sharpness:
        """λmax at the starting parameters (measured once)."""
        if self._start is None:
            self._start = self.measure(self._objective.params0)
        return self._start

    def known_at_start(self) -> curvature.Sharpness | None:
        """λmax at the start if it was measured already, else None (nothing is computed)."""
        return self._start

    # ------------------------------------------------------------------ during runs

    @property
    def every(self) -> int:
        """Steps between two measurements during a run; 0 measures none."""
        return self._every

    @every.setter
    def every(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise JaxGradUsageError(
                f"sharpness_every={value!r} must be a whole number of steps, 0 or more: λmax is measured every "
                "that many steps of a run (0, the default, measures none). Each measurement costs a few "
                "Hessian-vector products (about two gradients each); every 100 steps is a few percent of a run."
            )
        self._every = int(value)

    def steps_until_due(self, step: int, remaining: int) -> int:
        """How many of ``remaining`` steps to take from ``step`` before the next measurement is due."""
        if not self._every:
            return remaining
        return min(remaining, self._every - step % self._every)

    def track(self, step: int, params: Any, lr: float, optimizer: str) -> None:
        """Measure and record λmax at ``step`` when a measurement falls due there.

        Args:
          step: the stepper's step.
          params: its parameters there.
          lr: its learning rate.
          optimizer: its optimizer's label, for the stability limit at ``lr`` (see :func:`bound`).
        """
        if self._every and step % self._every == 0:
            found = self.measure(params, TRACK_TOL)
            limit = bound(1.0, optimizer).value / lr if lr > 0 else math.inf  # bound(λ) = c/λ, so λ* = c/lr
            with self._lock:
                self._history.append((step, found.value, lr, limit, optimizer))

    def history(self) -> SharpnessHistory:
        """The measurements so far (see :class:`SharpnessHistory`)."""
        with self._lock:
            rows = list(self._history)
        steps, values, lrs, limits, optimizers = zip(*rows, strict=True) if rows else ((), (), (), (), ("",))
        return SharpnessHistory(
            _read_only(list(steps), np.int64),
            _read_only(list(values), np.float64),
            _read_only(list(lrs), np.float64),
            _read_only(list(limits), np.float64),
            optimizers[-1],
        )

    def clear_history(self) -> None:
        """Forget the measurements taken during runs (a reset starts them over)."""
        with self._lock:
            self._history.clear()

    # ------------------------------------------------------------------ messages

    def divergence_note(self, lr: float, optimizer: str) -> str:
        """Why a run at ``lr`` diverged, as far as λmax at the start tells: ``lr 0.5 > 2/λmax = 0.2 at the start``.

        Empty when the rate was below the bound at the start, or when λmax cannot be measured
        (a function forward mode cannot differentiate, say): the message then stands without it.
        """
        try:
            found = self.at_start()
        except Exception:  # the note is a help; never let it hide the divergence itself
            return ""
        b = bound(found.value, optimizer)
        if not lr > b.value:
            return ""
        guide = "" if b.exact else f" (the plain-gradient-descent bound, a guide for {optimizer})"
        return f"lr {lr:g} > {b.formula} = {b.value:.3g} at the start{guide}"
