"""Optimizer race benchmark: an 8-rate race of one optimizer against the eight ``Stepper.run``s it replaces.

Each comparison warms both sides, then alternates them in rounds and quotes median times and
the median of the per-round ratios, measured side by side in this one run (the machine is shared
and noisy; ratios are what carry over). Functions: Rosenbrock 2-D and ``sum(sin(x)**2)`` with
``x`` of size 10^3 and 10^4; optimizers sgd and adam, each at its default grid of 8 rates
(``jaxgrad_magic.racing.default_grid``: on Rosenbrock the highest sgd rates diverge, which the
steppers replay step by step and the race masks), 500 steps (the default).

Targets checked:

* ``race(f, x, optimizers=(opt,), lrs=grid, steps=500)``, the whole call (result on the host,
  every history and path, the best rate chosen), at most 1.5x eight steppers at those rates each
  running ``s.run(500)`` (each reset, untimed, before its run).
* Zero compilations when the race runs again with other rates on grids of the same sizes, and
  with another step count in the same power of two.

And without a target, the time from calling ``race`` to the drawn picture for a function seen
for the first time (three optimizers, default grids): compile (the first race less a warm one),
run (a warm race), and draw (``r.png``: for two parameters ``f`` on the contour's grid, compiled
once per function, the contour, the loss curves and the composed PNG); each printed apart.

Run with ``.venv/bin/python benchmarks/bench_race.py`` (``--quick`` for a smaller time budget,
``--strict`` to exit with status 1 when a target is missed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import SOURCE, Check, CompileCounter, Targets, alternate_calls, arguments, table

from jaxgrad_magic.racing import default_grid, race
from jaxgrad_magic.stepper import Stepper

TARGET = 1.5
STEPS = 500

COUNTER = CompileCounter()


def problems(namespace: dict[str, Any]) -> list[tuple[str, Callable[..., Any], jax.Array]]:
    """(label, f, start point) for the three benchmark functions, defined in ``namespace``."""
    exec(SOURCE, namespace)
    return [
        ("Rosenbrock 2-D", namespace["rosenbrock"], jnp.array([-1.0, 1.0])),
        ("sin^2, x[1000]", namespace["sin_sq"], jnp.linspace(0.1, 1.0, 1000)),
        ("sin^2, x[10000]", namespace["sin_sq"], jnp.linspace(0.1, 1.0, 10_000)),
    ]


def bench_ratio(label: str, f: Callable[..., Any], x0: jax.Array, opt: str, budget: float) -> tuple[Check, list[str]]:
    """An 8-rate race of ``opt`` against eight steppers, one per rate, each running ``STEPS`` steps."""
    grid = default_grid(opt)
    steppers = [Stepper(f, x0, lr=lr, optimizer=opt) for lr in grid]

    def eight() -> None:
        for s in steppers:
            s.run(STEPS)

    def resets() -> None:
        for s in steppers:
            s.reset()

    def one() -> None:
        race(f, x0, optimizers=(opt,), lrs=grid, steps=STEPS)

    timing = alternate_calls({"8 steppers": eight, "race": one}, budget, prepare={"8 steppers": resets})
    ratio = timing.ratio("race", "8 steppers")
    diverged = sum(s.diverged for s in steppers)
    row = [label, opt, f"{timing['8 steppers'] * 1e3:.2f} ms", f"{timing['race'] * 1e3:.2f} ms", f"{ratio:.2f}x"]
    check = Check.at_most(f"race / 8 runs, {label}, {opt}", "", ratio, TARGET)
    return check, [*row, str(diverged)]


def bench_compiles(f: Callable[..., Any], x0: jax.Array) -> list[Check]:
    """Other rates on grids of the same sizes, and another step count in the same power of two."""
    race(f, x0, optimizers=("sgd", "adam"), steps=STEPS)
    with COUNTER.counting() as rates:
        race(f, x0, optimizers=("sgd", "adam"), lrs=[np.geomspace(1e-5, 1e-3, 8), np.geomspace(1e-3, 0.3, 8)])
    with COUNTER.counting() as steps:
        race(f, x0, optimizers=("sgd", "adam"), steps=300)
    return [
        Check("compiles: other rates, same grid sizes", str(rates[0]), "0", rates[0] == 0),
        Check("compiles: 300 steps after 500", str(steps[0]), "0", steps[0] == 0),
    ]


def time_to_picture(label: str, f: Callable[..., Any], x0: jax.Array) -> list[str]:
    """Compile, run and draw, for a function seen for the first time (three optimizers, default grids)."""
    seconds_before = COUNTER.seconds
    start = time.perf_counter()
    with COUNTER.counting() as compiled:
        first = race(f, x0)
    first_seconds = time.perf_counter() - start
    xla = COUNTER.seconds - seconds_before
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        again = race(f, x0)
        warm.append(time.perf_counter() - start)
    run = min(warm)
    start = time.perf_counter()
    with COUNTER.counting() as drawing:
        png = first.png
    draw = time.perf_counter() - start
    start = time.perf_counter()
    again.png  # noqa: B018 - a second picture of the same function: the grid program is compiled
    redraw = time.perf_counter() - start
    total = first_seconds + draw
    return [
        label,
        f"{first_seconds - run:.2f} s ({compiled[0]} programs, XLA {xla:.2f} s)",
        f"{run * 1e3:.1f} ms",
        f"{draw * 1e3:.0f} ms ({drawing[0]} compiled)",
        f"{redraw * 1e3:.0f} ms",
        f"{total:.2f} s",
        f"{len(png) / 1024:.0f} KB",
    ]


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    budget = 0.5 if args.quick else 4.0
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, {budget:g} s per comparison")

    targets = Targets()

    print(f"an 8-rate race against eight Stepper.run({STEPS}), one per rate:")
    rows = []
    for label, f, x0 in problems({"jnp": jnp}):
        for opt in ("sgd", "adam"):
            check, row = bench_ratio(label, f, x0, opt, budget)
            targets.show(check)
            rows.append(row)
    print(table(rows, ["function", "optimizer", "8 steppers", "race", "race / 8", "rates diverged"]))
    print("compilations:")
    label, f, x0 = problems({"jnp": jnp})[0]
    for check in bench_compiles(f, x0):
        targets.show(check)
    print("from calling race to the drawn picture, a function seen for the first time (sgd, momentum, adam; 8 rates):")
    rows = [time_to_picture(label, f, x0) for label, f, x0 in problems({"jnp": jnp})]
    header = ["function", "compile", "run", "draw (first)", "draw (again)", "total", "picture"]
    print(table(rows, header))

    return targets.finish(args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
