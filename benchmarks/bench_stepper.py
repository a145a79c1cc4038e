"""Descent stepper benchmark: the loops people write with ``Stepper``, against hand-written JAX loops.

Each comparison warms every side, then alternates them in rounds and quotes median times and
the median of the per-round ratios, measured side by side in this one run (the machine is
shared and noisy; ratios are what carry over). Functions: ``sum(sin(x)**2)`` with ``x`` of
size 3 and 1000, and Rosenbrock 2-D; optimizers sgd and adam.

Every side reads the result of each step, as a notebook loop does; none is timed on a path
that leaves its result unread (JAX would then overlap the calls, and that is not how the
stepper is used).

Targets checked:

* Step, then read: ``s.step(); s.params``, ``info = s.step(); info.loss`` and
  ``s.step(); np.asarray(s.params)``, each at most 2x a hand-written fused step
  (``value_and_grad`` and the optax update in one ``jax.jit``) whose result is read back each
  step, by the fastest of ``float(loss)``, ``np.asarray(loss)`` and ``np.asarray(p)`` in that
  round.
* ``run(n)`` per step, n = 10^4 and 10^5, reading its loss: at most 1.5x a hand-written
  ``jax.jit`` + ``jax.lax.scan`` loop with the loss history (same optimizer), the history
  brought to the host.
* Zero compilations when only the learning rate changes, when the same stepper runs again,
  and for a new stepper on a re-defined identical function (a re-run cell).
* The history stays bounded: 100,001 entries after a 10^6-step run.

Run with ``.venv/bin/python benchmarks/bench_stepper.py`` (``--quick`` for a smaller time budget,
``--strict`` to exit with status 1 when a target is missed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import SOURCE, Check, CompileCounter, Targets, alternate_calls, arguments

from jaxgrad_magic.stepper import Stepper

RUN_TARGET = 1.5
STEP_TARGET = 2.0
LR = 1e-3


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


def bench_run(label: str, f: Callable[..., Any], x0: jax.Array, opt_name: str, n: int, budget: float) -> Check:
    opt = make_optimizer(opt_name)
    baseline = scan_baseline(f, opt)
    s0 = opt.init(x0)
    stepper = Stepper(f, (x0,), lr=LR, optimizer=opt_name)

    def hand() -> None:
        _, _, losses = baseline(x0, s0, n)
        float(np.asarray(losses)[-1])  # the loss history on the host, and the last loss read

    def ours() -> None:
        info = stepper.run(n)
        info.loss  # noqa: B018

    timing = alternate_calls({"scan": hand, "stepper": ours}, budget, prepare={"stepper": stepper.reset})
    ratio = timing.ratio("stepper", "scan")
    per = {k: timing[k] / n * 1e9 for k in ("scan", "stepper")}
    return Check.at_most(
        f"run(n={n:.0e}) {label}, {opt_name}",
        f"{per['stepper']:9.1f} ns/step vs scan {per['scan']:9.1f} ns/step",
        ratio,
        RUN_TARGET,
    )


def bench_step(
    label: str, f: Callable[..., Any], x0: jax.Array, opt_name: str, calls: int, budget: float
) -> list[Check]:
    """Step, then read, ``calls`` times per timed call, against the fused step read back.

    The baseline of each round is the fastest of three ways to read the hand-written step's
    result (``float(loss)``, ``np.asarray(loss)``, ``np.asarray(p)``): the strictest honest one.
    """
    opt = make_optimizer(opt_name)
    step = fused_step(f, opt)
    s0 = opt.init(x0)
    stepper = Stepper(f, (x0,), lr=LR, optimizer=opt_name)

    def fused(read: Callable[[jax.Array, jax.Array], object]) -> Callable[[], None]:
        def loop() -> None:
            p, s = x0, s0
            for _ in range(calls):
                p, s, loss = step(p, s)
                read(p, loss)

        return loop

    def stepping(read: Callable[[Stepper, Any], object]) -> Callable[[], None]:
        def loop() -> None:
            for _ in range(calls):
                read(stepper, stepper.step())

        return loop

    hand = {
        "fused, float(loss)": fused(lambda p, loss: float(loss)),
        "fused, np.asarray(loss)": fused(lambda p, loss: np.asarray(loss)),
        "fused, np.asarray(p)": fused(lambda p, loss: np.asarray(p)),
    }
    ours = {
        "s.step(); s.params": stepping(lambda s, info: s.params),
        "info = s.step(); info.loss": stepping(lambda s, info: info.loss),
        "s.step(); np.asarray(s.params)": stepping(lambda s, info: np.asarray(s.params)),
    }
    timing = alternate_calls({**hand, **ours}, budget, prepare=dict.fromkeys(ours, stepper.reset))
    fastest = min(hand, key=lambda k: timing[k])
    checks = []
    for side in ours:
        ratio = timing.ratio(side, list(hand))  # per round, against the fastest hand-written read
        checks.append(
            Check.at_most(
                f"{side} {label}, {opt_name}",
                f"{timing[side] / calls * 1e6:6.2f} us vs fused step read back {timing[fastest] / calls * 1e6:6.2f} us "
                f"({fastest})",
                ratio,
                STEP_TARGET,
            )
        )
    return checks


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
    args = arguments(__doc__).parse_args(argv)
    budget = 0.5 if args.quick else 3.0
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, {budget:g} s per comparison")

    targets = Targets()

    print("run(n) against a jitted lax.scan with loss history:")
    for label, f, x0 in problems({"jnp": jnp}):
        for opt_name in ("sgd", "adam"):
            for n in (10**4, 10**5):
                targets.show(bench_run(label, f, x0, opt_name, n, budget))
    print("step, then read, against a jitted fused step read back, in a Python loop:")
    for label, f, x0 in problems({"jnp": jnp}):
        for opt_name in ("sgd", "adam"):
            for check in bench_step(label, f, x0, opt_name, calls=500, budget=budget):
                targets.show(check)
    print("compilations and memory:")
    for check in bench_compiles():
        targets.show(check)
    targets.show(bench_memory())

    return targets.finish(args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
