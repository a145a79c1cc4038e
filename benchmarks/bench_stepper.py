"""Descent stepper benchmark: ``Stepper.run`` and ``Stepper.step`` against hand-written JAX loops.

Each comparison warms both sides, then alternates them in rounds and quotes median times and
the median of the per-round ratios, measured side by side in this one run (the machine is
shared and noisy; ratios are what carry over). Functions: ``sum(sin(x)**2)`` with ``x`` of
size 3 and 1000, and Rosenbrock 2-D; optimizers sgd and adam.

Targets checked:

* ``run(n)`` per step, n = 10^4 and 10^5: at most 1.5x a hand-written ``jax.jit`` +
  ``jax.lax.scan`` loop with the loss history (same optimizer), the history brought to the host.
* ``step()``: at most 2x one hand-written jitted fused step call (grad + update) in a Python
  loop. The strict baseline never reads its loss, so JAX overlaps its calls; ``step()``
  reports the loss (and checks it) every step, so it cannot. The ratio against the same loop
  reading the loss each step is printed alongside, for information.
* Zero compilations when only the learning rate changes, when the same stepper runs again,
  and for a new stepper on a re-defined identical function (a re-run cell).
* The history stays bounded: 100,001 entries after a 10^6-step run.

Run with ``.venv/bin/python benchmarks/bench_stepper.py`` (``--quick`` for a smaller time budget,
``--strict`` to exit with status 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import Check, CompileCounter

from jaxgrad_magic.stepper import Stepper

RUN_TARGET = 1.5
STEP_TARGET = 2.0
LR = 1e-3
SOURCE = """
def rosenbrock(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2

def sin_sq(x):
    return jnp.sum(jnp.sin(x) ** 2)
"""


COUNTER = CompileCounter()


def problems(namespace: dict[str, Any]) -> list[tuple[str, Callable[..., Any], jax.Array]]:
    """(label, f, start point) for the three benchmark functions, defined in ``namespace``."""
    exec(SOURCE, namespace)
    return [
        ("sin^2, x[3]", namespace["sin_sq"], jnp.linspace(0.1, 1.0, 3)),
        ("sin^2, x[1000]", namespace["sin_sq"], jnp.linspace(0.1, 1.0, 1000)),
        ("Rosenbrock 2-D", namespace["rosenbrock"], jnp.array([-1.0, 1.0])),
    ]


def make_optimizer(name: str) -> optax.GradientTransformation:
    return optax.sgd(LR) if name == "sgd" else optax.adam(LR)


def scan_baseline(f: Callable[..., Any], opt: optax.GradientTransformation) -> Callable[..., Any]:
    """The hand-written loop: n fused steps in one ``lax.scan`` that stacks the losses."""

    @functools.partial(jax.jit, static_argnums=2)
    def run(p: jax.Array, s: Any, n: int) -> tuple[jax.Array, Any, jax.Array]:
        def body(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
            p, s = carry
            loss, g = jax.value_and_grad(f)(p)
            updates, s = opt.update(g, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, s), losses = jax.lax.scan(body, (p, s), None, length=n)
        return p, s, losses

    return run


def fused_step(f: Callable[..., Any], opt: optax.GradientTransformation) -> Callable[..., Any]:
    """The hand-written step: grad and update in one jitted call."""

    @jax.jit
    def step(p: jax.Array, s: Any) -> tuple[jax.Array, Any, jax.Array]:
        loss, g = jax.value_and_grad(f)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    return step


class Timing(NamedTuple):
    """Seconds per call of each side, one entry per round."""

    times: dict[str, list[float]]

    def seconds(self, side: str) -> float:
        """The median seconds per call of ``side``."""
        return statistics.median(self.times[side])

    def ratio(self, side: str, base: str) -> float:
        """The median over rounds of ``side / base``, both timed under the same load."""
        return statistics.median(t / b for t, b in zip(self.times[side], self.times[base], strict=True))


def alternate(
    sides: dict[str, Callable[[], None]],
    budget: float,
    prepare: Callable[[], None] | None = None,
    min_seconds: float = 0.02,
    rounds: tuple[int, int] = (7, 41),
) -> Timing:
    """Time the sides in alternating rounds after warming each.

    ``prepare`` runs untimed before every timed call (e.g. a reset to the start point). A
    round times each side enough times in a row to last ``min_seconds``, so short calls are
    not lost in timer noise; the order flips every round. As many rounds as fit in
    ``budget`` seconds are run, within ``rounds`` (at least, at most): cheap comparisons get
    more rounds, because on a shared machine only many rounds give a steady median. Compare
    sides with :meth:`Timing.ratio`: ratios within a round see the same machine load.
    """

    def timed(fn: Callable[[], None]) -> float:
        if prepare is not None:
            prepare()
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    reps: dict[str, int] = {}
    round_seconds = 0.0
    for key, fn in sides.items():
        timed(fn)  # warm
        best = max(min(timed(fn) for _ in range(3)), 1e-9)
        reps[key] = max(1, math.ceil(min_seconds / best))
        round_seconds += reps[key] * best
    count = max(rounds[0], min(rounds[1], int(budget / round_seconds)))
    times: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides)
    for r in range(count):
        for key in order if r % 2 == 0 else reversed(order):
            times[key].append(sum(timed(sides[key]) for _ in range(reps[key])) / reps[key])
    return Timing(times)


def bench_run(label: str, f: Callable[..., Any], x0: jax.Array, opt_name: str, n: int, budget: float) -> Check:
    opt = make_optimizer(opt_name)
    baseline = scan_baseline(f, opt)
    s0 = opt.init(x0)
    stepper = Stepper(f, (x0,), lr=LR, optimizer=opt_name)

    def hand() -> None:
        _, _, losses = baseline(x0, s0, n)
        np.asarray(losses)

    def ours() -> None:
        stepper.run(n)

    timing = alternate({"scan": hand, "stepper": ours}, budget, prepare=stepper.reset)
    ratio = timing.ratio("stepper", "scan")
    per = {k: timing.seconds(k) / n * 1e9 for k in timing.times}
    return Check(
        f"run(n={n:.0e}) {label}, {opt_name}",
        f"{per['stepper']:9.1f} ns/step vs scan {per['scan']:9.1f} ns/step: {ratio:.2f}x",
        f"<= {RUN_TARGET}x",
        ratio <= RUN_TARGET,
    )


def bench_step(
    label: str, f: Callable[..., Any], x0: jax.Array, opt_name: str, calls: int, budget: float
) -> list[Check]:
    opt = make_optimizer(opt_name)
    step = fused_step(f, opt)
    s0 = opt.init(x0)
    stepper = Stepper(f, (x0,), lr=LR, optimizer=opt_name)

    def hand() -> None:
        p, s = x0, s0
        for _ in range(calls):
            p, s, loss = step(p, s)
        loss.block_until_ready()

    def hand_reading_loss() -> None:
        p, s = x0, s0
        for _ in range(calls):
            p, s, loss = step(p, s)
            float(loss)

    def ours() -> None:
        for _ in range(calls):
            stepper.step()

    timing = alternate({"fused": hand, "fused+read": hand_reading_loss, "step": ours}, budget, prepare=stepper.reset)
    per = {k: timing.seconds(k) / calls * 1e6 for k in timing.times}
    ratio = timing.ratio("step", "fused")
    like = timing.ratio("step", "fused+read")
    return [
        Check(
            f"step() {label}, {opt_name}",
            f"{per['step']:6.2f} us vs fused step {per['fused']:6.2f} us: {ratio:.2f}x "
            f"(vs fused step reading its loss {per['fused+read']:6.2f} us: {like:.2f}x)",
            f"<= {STEP_TARGET}x",
            ratio <= STEP_TARGET,
        )
    ]


def bench_compiles() -> list[Check]:
    checks = []
    namespace: dict[str, Any] = {"jnp": jnp}
    _, f, x0 = problems(namespace)[2]
    stepper = Stepper(f, (x0,), lr=LR, optimizer="adam")
    stepper.step()
    stepper.run(1000)
    stepper.params  # noqa: B018
    with COUNTER.counting() as lr_change:
        stepper.lr = 0.02
        stepper.step()
        stepper.run(1000)
        stepper.params  # noqa: B018
    checks.append(Check("compiles: lr change, step + run", str(lr_change[0]), "0", lr_change[0] == 0))
    with COUNTER.counting() as again:
        stepper.reset()
        stepper.run(1234)
        stepper.step()
        stepper.history  # noqa: B018
    checks.append(Check("compiles: same stepper runs again", str(again[0]), "0", again[0] == 0))
    with COUNTER.counting() as rerun:
        _, g, y0 = problems(namespace)[2]  # the cell runs again: a new, identical function
        assert g is not f
        other = Stepper(g, (y0,), lr=LR, optimizer="adam")
        other.step()
        other.run(5000)
        other.params  # noqa: B018
    checks.append(Check("compiles: re-defined identical function", str(rerun[0]), "0", rerun[0] == 0))
    return checks


def bench_memory() -> Check:
    namespace: dict[str, Any] = {"jnp": jnp}
    _, f, x0 = problems(namespace)[0]
    stepper = Stepper(f, (x0,), lr=LR)
    stepper.run(10**6)
    entries = len(stepper.history)
    ok = entries == 100_001 and stepper.history_steps[-1] == 10**6
    return Check("history after run(10**6)", f"{entries} entries", "100001", ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller time budget per comparison (noisier)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    budget = 0.5 if args.quick else 3.0
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, {budget:g} s per comparison")

    checks: list[Check] = []

    def show(check: Check) -> None:
        checks.append(check)
        print(f"  [{'met' if check.met else 'MISSED'}] {check.name}: {check.measured} (target {check.expected})")
        sys.stdout.flush()

    print("run(n) against a jitted lax.scan with loss history:")
    for label, f, x0 in problems({"jnp": jnp}):
        for opt_name in ("sgd", "adam"):
            for n in (10**4, 10**5):
                show(bench_run(label, f, x0, opt_name, n, budget))
    print("step() against a jitted fused step in a Python loop:")
    for label, f, x0 in problems({"jnp": jnp}):
        for opt_name in ("sgd", "adam"):
            for check in bench_step(label, f, x0, opt_name, calls=2000, budget=budget):
                show(check)
    print("compilations and memory:")
    for check in bench_compiles():
        show(check)
    show(bench_memory())

    missed = [c for c in checks if not c.met]
    print(f"{len(checks) - len(missed)} of {len(checks)} targets met" + (f"; missed: {len(missed)}" if missed else ""))
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
