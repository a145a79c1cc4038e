"""Panel speed benchmark: the panel's Run N end to end against the stepper's own ``run(n)``.

For n = 10^5 steps on ``sum(sin(x)**2)`` (x of size 3) and the 2-D Rosenbrock function, each
round times

* A: ``stepper.run(n)`` on a stepper of its own, and
* B: the panel's Run N on another stepper: ``run_button.click()`` then ``wait()``, with the
  progress bar, the redraws during the run and the final redraw of the readout, the loss
  curve and the contour plot,

both from the same start point (each is reset before every run, outside the timing), and
each reading its result as a user would (the loss of the ``RunInfo``; the panel's own readout).
A and B alternate in rounds after warming both (``harness.alternate_calls``); medians and the
median of the per-round ratios are printed against the target: B at most 2x A.

Once the panel has timed a run, Run N does a run it expects to last less than
``INLINE_SECONDS`` in the click itself, without a thread; the warm-up rounds teach it that
here. ``--threaded`` sets ``INLINE_SECONDS`` to 0, so every run goes on the background thread
(the first run of a panel, and any long one, always does).

Run with ``.venv/bin/python benchmarks/bench_panel.py`` (``--quick`` for fewer rounds,
``--strict`` to exit with status 1 when the target is missed).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from harness import alternate_calls, arguments

from jaxgrad_magic import background
from jaxgrad_magic import panel as panel_module
from jaxgrad_magic.panel import REDRAW_INTERVAL, StepperPanel
from jaxgrad_magic.stepper import Stepper

TARGET = 2.0
N = 100_000


def sin_squares(x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.sin(x) ** 2)


def rosenbrock(x: jax.Array, y: jax.Array) -> jax.Array:
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


@dataclass(frozen=True)
class Problem:
    """One function, its start point and the optimizer settings."""

    name: str
    fn: Callable[..., Any]
    point: tuple[Any, ...]
    argnums: int | tuple[int, ...]
    lr: float
    optimizer: str = "sgd"


PROBLEMS = (
    Problem("sum(sin(x)**2), x of size 3", sin_squares, (jnp.array([1.0, 2.0, 3.0]),), 0, 0.1),
    Problem("Rosenbrock 2-D, sgd", rosenbrock, (-1.5, 2.0), (0, 1), 1e-3),
    Problem("Rosenbrock 2-D, adam", rosenbrock, (-1.5, 2.0), (0, 1), 1e-2, "adam"),
)
# A run long enough (a few tenths of a second) to redraw while it goes: the redraw rate bound at work.
LONG = Problem("sum(sin(x)**2), x of size 1000", sin_squares, (jnp.linspace(0.0, 3.0, 1000),), 0, 0.01)


@dataclass(frozen=True)
class Measured:
    """Medians of both sides for one problem, and the median of the per-round ratios."""

    problem: str
    run_s: float
    panel_s: float
    ratio: float
    panel_redraws: float


def measure(problem: Problem, n: int, rounds: int) -> Measured:
    def make() -> Stepper:
        return Stepper(problem.fn, problem.point, problem.argnums, lr=problem.lr, optimizer=problem.optimizer)

    direct = make()
    panel = StepperPanel(make())
    redraws: list[int] = []
    frames: list[int] = []  # loss pictures sent to the frontend
    panel.loss_image.observe(lambda change: frames.append(1), names="value")

    def run() -> None:
        info = direct.run(n)
        info.loss  # noqa: B018

    def panel_reset() -> None:
        panel.reset_button.click()
        panel.steps_input.value = n
        # The λmax measurement that follows a run or a reset runs on a second thread: let it end
        # here, untimed, so it does not compete with the next timed call (either side's).
        background.wait_all()

    def panel_run() -> None:
        before = len(frames)
        panel.run_button.click()
        panel.wait()
        redraws.append(len(frames) - before)
        if panel.stepper.steps != n:
            raise RuntimeError(f"the panel ran {panel.stepper.steps} steps instead of {n}: {panel.status.value}")

    for _ in range(2):  # warm both twice: compiles, the grid, the figures, the panel's speed estimate
        panel_reset()
        panel_run()

    def direct_reset() -> None:
        direct.reset()
        background.wait_all()

    timing = alternate_calls(
        {"run(n)": run, "panel": panel_run},
        budget=0.0,
        prepare={"run(n)": direct_reset, "panel": panel_reset},
        min_seconds=0.0,
        rounds=(rounds, rounds),
    )
    panel.close()
    return Measured(
        problem.name, timing["run(n)"], timing["panel"], timing.ratio("panel", "run(n)"), statistics.median(redraws)
    )


STEPS = 2_000  # a loop of steps in a cell, with the panel shown
LOOP_TARGET = 1.5


def measure_loop(problem: Problem, rounds: int) -> tuple[float, float, float]:
    """``for _ in range(STEPS): s.step(); s.params`` with the stepper's panel built, against the
    same loop on a stepper without one: ``(seconds without, seconds with, ratio)``, medians.

    Between rounds, untimed, the panel's draw left for after the loop and its background
    measurements end (``REDRAW_INTERVAL`` plus ``background.wait_all``)."""
    plain = Stepper(problem.fn, problem.point, problem.argnums, lr=problem.lr, optimizer=problem.optimizer)
    shown = Stepper(problem.fn, problem.point, problem.argnums, lr=problem.lr, optimizer=problem.optimizer)
    panel = StepperPanel(shown)

    def loop(s: Stepper) -> Callable[[], None]:
        def steps() -> None:
            for _ in range(STEPS):
                s.step()
                s.params  # noqa: B018

        return steps

    def settle(s: Stepper) -> Callable[[], None]:
        def prepare() -> None:
            s.reset()
            time.sleep(REDRAW_INTERVAL)
            background.wait_all()

        return prepare

    for side in (plain, shown):
        loop(side)()
    timing = alternate_calls(
        {"plain": loop(plain), "panel": loop(shown)},
        budget=0.0,
        prepare={"plain": settle(plain), "panel": settle(shown)},
        min_seconds=0.0,
        rounds=(rounds, rounds),
    )
    panel.close()
    return timing["plain"], timing["panel"], timing.ratio("panel", "plain")


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, "fewer rounds")
    parser.add_argument("-n", type=int, default=N, help="steps per run (default 10^5)")
    parser.add_argument("--threaded", action="store_true", help="every run on the background thread, none inline")
    args = parser.parse_args(argv)
    if args.threaded:
        panel_module.INLINE_SECONDS = 0.0
    rounds = 5 if args.quick else 15
    how = "every run on the thread" if args.threaded else f"runs under {panel_module.INLINE_SECONDS:g} s inline"
    print(f"panel Run N vs stepper.run(n), n = {args.n}, {rounds} rounds, {how} (medians; target panel <= {TARGET}x)")
    print(f"{'problem':34} {'run(n)':>10} {'panel':>10} {'extra':>9} {'ratio':>7} {'redraws':>8}  met")
    missed = False
    for problem in (*PROBLEMS, LONG):
        m = measure(problem, args.n, max(3, rounds // 3) if problem is LONG else rounds)
        met = m.ratio <= TARGET
        missed |= not met and problem is not LONG
        print(
            f"{m.problem:34} {m.run_s * 1e3:8.2f}ms {m.panel_s * 1e3:8.2f}ms {(m.panel_s - m.run_s) * 1e3:7.2f}ms "
            f"{m.ratio:6.2f}x {m.panel_redraws:8.0f}  {'yes' if met else 'NO'}"
        )
    print(
        "extra = the panel's cost beyond run(n): the controls and one final frame (the readout and two PNG "
        "images), plus, for a run on the background thread, starting it and any redraws during the run (at "
        f"most one per {REDRAW_INTERVAL:g} s). The last row is informational (no target)."
    )
    print(f"\n{STEPS} steps `s.step(); s.params` in a cell, panel shown vs none (target <= {LOOP_TARGET}x)")
    for problem in PROBLEMS:
        plain, shown, ratio = measure_loop(problem, max(3, rounds // 3))
        met = ratio <= LOOP_TARGET
        missed |= not met
        print(
            f"{problem.name:34} {plain / STEPS * 1e6:7.1f}us {shown / STEPS * 1e6:7.1f}us per step "
            f"{ratio:6.2f}x  {'yes' if met else 'NO'}"
        )
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
