"""Real models: a 3-layer MLP of about 10^4 parameters, against hand-written JAX, side by side.

Each comparison warms every side, then alternates them in rounds and quotes median times and
the median of the per-round ratios, measured in this one run (the machine is shared and noisy;
ratios are what carry over). The MLP is a dict pytree 8 -> 96 -> 96 -> 1 with tanh (10,273
parameters) on a batch of 256, its loss the mean squared error.

Targets checked:

* ``run(n)`` per step, reading its loss (adam): at most 1.5x a hand-written ``jax.jit`` +
  ``jax.lax.scan`` loop over the same optax optimizer, its loss history brought to the host.
* A 41x41 ``Stepper.landscape`` (random directions, programs compiled): at most 3x 1,681 loss
  evaluations in one hand-vmapped, jitted program (the same two directions, the grid brought
  to the host).
* Module handling: a step of a ``Stepper`` on an ``equinox.nn.MLP`` (and on a Flax NNX model
  with the same layers) at most 1.2x a step of one on the hand-partitioned equivalent (the
  differentiated arrays as a pytree, the rest baked into the function, as ``eqx.partition`` /
  ``nnx.split`` by hand). Skipped when the framework is not installed.

Run with ``.venv/bin/python benchmarks/bench_models.py`` (``--quick`` for a smaller time budget,
``--strict`` to exit with status 1 when a target is missed).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import Check, Targets, alternate_calls, arguments

from jaxgrad_magic.stepper import Stepper

RUN_TARGET = 1.5
SLICE_TARGET = 3.0
MODULE_TARGET = 1.2
LR = 1e-3
SIZES = (8, 96, 96, 1)
BATCH = 256


def mlp_params(key: jax.Array) -> dict[str, dict[str, jax.Array]]:
    """The MLP's parameters: ``{"l0": {"w", "b"}, "l1": ..., "l2": ...}`` (10,273 numbers)."""
    keys = jax.random.split(key, len(SIZES) - 1)
    return {
        f"l{i}": {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
        for i, (k, a, b) in enumerate(zip(keys, SIZES[:-1], SIZES[1:], strict=True))
    }


def mlp_loss(p: dict[str, dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    h = x
    for i in range(len(SIZES) - 1):
        h = h @ p[f"l{i}"]["w"] + p[f"l{i}"]["b"]
        if i < len(SIZES) - 2:
            h = jnp.tanh(h)
    return jnp.mean((h[:, 0] - y) ** 2)


def data() -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, SIZES[0]))
    return x, jnp.sin(x[:, 0]) * jnp.cos(x[:, 1])


def bench_run(n: int, budget: float) -> Check:
    p0, (x, y) = mlp_params(jax.random.PRNGKey(0)), data()
    opt = optax.adam(LR)
    s0 = opt.init(p0)

    @functools.partial(jax.jit, static_argnums=4)
    def scan(p: Any, s: Any, x: jax.Array, y: jax.Array, n: int) -> tuple[Any, Any, jax.Array]:
        def body(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], jax.Array]:
            p, s = carry
            loss, g = jax.value_and_grad(mlp_loss)(p, x, y)
            updates, s = opt.update(g, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, s), losses = jax.lax.scan(body, (p, s), None, length=n)
        return p, s, losses

    stepper = Stepper(mlp_loss, (p0, x, y), lr=LR, optimizer="adam")

    def hand() -> None:
        _, _, losses = scan(p0, s0, x, y, n)
        float(np.asarray(losses)[-1])

    def ours() -> None:
        stepper.run(n).loss  # noqa: B018

    timing = alternate_calls({"scan": hand, "stepper": ours}, budget, prepare={"stepper": stepper.reset})
    ratio = timing.ratio("stepper", "scan")
    per = {k: timing[k] / n * 1e6 for k in ("scan", "stepper")}
    return Check.at_most(
        f"run(n={n}) MLP 10^4 parameters, batch {BATCH}, adam",
        f"{per['stepper']:7.1f} us/step vs scan {per['scan']:7.1f} us/step",
        ratio,
        RUN_TARGET,
    )


def bench_slice(budget: float) -> Check:
    p0, (x, y) = mlp_params(jax.random.PRNGKey(0)), data()
    stepper = Stepper(mlp_loss, (p0, x, y), lr=LR, optimizer="adam")
    stepper.run(200)
    grid = 41
    first = stepper.landscape("random", grid=grid)
    center, u, v = stepper.trainable, first.u, first.v
    coords = np.linspace(-1.0, 1.0, grid)
    beta, alpha = np.meshgrid(coords, coords, indexing="ij")
    ab = jnp.asarray(np.stack([alpha.ravel(), beta.ravel()], axis=1), jnp.float32)

    @jax.jit
    def by_hand(c: Any, u: Any, v: Any, ab: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        def at(point: jax.Array) -> jax.Array:
            q = jax.tree_util.tree_map(lambda c, du, dv: c + point[0] * du + point[1] * dv, c, u, v)
            return mlp_loss(q, x, y)

        return jax.vmap(at)(ab)

    def hand() -> None:
        np.asarray(by_hand(center, u, v, ab, x, y))

    def ours() -> None:
        stepper.landscape("random", grid=grid)

    timing = alternate_calls({"vmap": hand, "landscape": ours}, budget, rounds=(5, 21))
    ratio = timing.ratio("landscape", "vmap")
    return Check.at_most(
        f"landscape {grid}x{grid} MLP, random directions",
        f"{timing['landscape'] * 1e3:7.1f} ms vs {grid * grid} evaluations vmapped {timing['vmap'] * 1e3:7.1f} ms",
        ratio,
        SLICE_TARGET,
    )


def _step_pair(
    label: str, module: Any, loss: Callable[..., Any], partitioned: tuple[Any, Callable[..., Any]], budget: float
) -> Check:
    (x, y), (diff, by_hand) = data(), partitioned
    ours = Stepper(loss, (module, x, y), lr=LR, optimizer="adam")
    hand = Stepper(by_hand, (diff, x, y), lr=LR, optimizer="adam")
    calls = 50

    def stepping(s: Stepper) -> Callable[[], None]:
        def loop() -> None:
            for _ in range(calls):
                s.step()

        return loop

    timing = alternate_calls(
        {"module": stepping(ours), "by hand": stepping(hand)},
        budget,
        prepare={"module": ours.reset, "by hand": hand.reset},
    )
    ratio = timing.ratio("module", "by hand")
    return Check.at_most(
        f"step on {label}",
        f"{timing['module'] / calls * 1e6:7.1f} us vs hand-partitioned {timing['by hand'] / calls * 1e6:7.1f} us",
        ratio,
        MODULE_TARGET,
    )


def bench_equinox(budget: float) -> Check | None:
    if importlib.util.find_spec("equinox") is None:
        return None
    import equinox as eqx

    mlp = eqx.nn.MLP(SIZES[0], SIZES[-1], SIZES[1], len(SIZES) - 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))

    def loss(m: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((jax.vmap(m)(x)[:, 0] - y) ** 2)

    diff, rest = eqx.partition(mlp, eqx.is_inexact_array)

    def by_hand(d: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return loss(eqx.combine(d, rest), x, y)

    return _step_pair("an equinox.nn.MLP", mlp, loss, (diff, by_hand), budget)


def bench_nnx(budget: float) -> Check | None:
    if importlib.util.find_spec("flax") is None:
        return None
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(SIZES)])

        def __call__(self, x: jax.Array) -> jax.Array:
            for layer in self.layers[:-1]:
                x = jnp.tanh(layer(x))
            return self.layers[-1](x)

    model = MLP(nnx.Rngs(0))

    def loss(m: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((m(x)[:, 0] - y) ** 2)

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def by_hand(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return loss(nnx.merge(graphdef, p, rest), x, y)

    return _step_pair("a Flax NNX MLP", model, loss, (params, by_hand), budget)


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    budget = 1.0 if args.quick else 5.0
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, {budget:g} s per comparison")

    targets = Targets()

    print("run(n) against a jitted lax.scan with loss history:")
    targets.show(bench_run(200, budget))
    print("a 41x41 landscape against the same evaluations, hand-vmapped:")
    targets.show(bench_slice(budget))
    print("a step on a module against a step on its hand-partitioned arrays:")
    for framework, bench in (("equinox", bench_equinox), ("flax", bench_nnx)):
        check = bench(budget)
        if check is None:
            targets.skip(framework)
        else:
            targets.show(check)

    return targets.finish(args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
