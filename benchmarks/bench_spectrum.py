"""What the Hessian's spectrum and the stability meter cost, measured side by side.

Four comparisons, in one process, each side warmed first and the sides alternated in rounds:

* **One Hessian-vector product against one gradient**, both ``jax.jit``-compiled and waited
  for, on an MLP of 25,225 parameters (batch 256) and one of 101,770 (batch 256). Forward over
  reverse, ``jax.jvp`` of ``jax.grad``: target at most 3x.
* **Lanczos's top eigenvalue against the number of products**, on problems of about 10^5
  parameters: a rotated diagonal quadratic whose 100,000 eigenvalues fill [0, 1] evenly (no gap
  at the top: the hardest case for Lanczos, with a closed form), the same with eigenvalues
  ``1/i`` (a gap, as in trained networks), and the 101,770-parameter MLP (its reference λmax
  from 300 steps). The relative error of the largest Ritz value after each step of the Lanczos
  run ``spectrum=True`` makes; target: below 1e-3 within 100 products. Also what the default
  stopping rule (``tol=1e-3``) used on each.
* **``%hess f at=p spectrum=True`` against ``%hess f at=p``** (the dense Hessian, 2.4 GB) on a
  tanh MLP 100-200-25 of 25,225 parameters and batch 16 (a batch that keeps the dense Hessian's
  work within 5 GB), in a real IPython shell, both compiled already; target: the spectrum at most
  1/20 of the dense Hessian. The first call of each (with compiling) is shown too.
* **``Stepper.run`` with ``sharpness_every=100`` against without**, sgd on the 25,225-parameter
  MLP at batch 256: what tracking λmax during a run costs (shown, with a 1.25x bar).

Run with ``.venv/bin/python benchmarks/bench_spectrum.py`` (``--quick`` for fewer rounds,
``--strict`` to exit with status 1 when a target is missed). It needs about 6 GB of memory for
the dense Hessian.
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from harness import FEWER_ROUNDS, alternate, alternate_calls, arguments, new_shell, run, table

from jaxgrad_magic import Stepper, curvature
from jaxgrad_magic.objective import make_objective

TARGETS = {"hvp / grad": 3.0, "products to 1e-3": 100, "spectrum / dense": 1 / 20, "tracking": 1.25}


def mlp(sizes: Sequence[int], batch: int, seed: int = 0) -> tuple[Callable[[Any], jax.Array], dict[str, jax.Array]]:
    """A tanh MLP's mean squared error on random data, and its parameters (a dict of weights and biases)."""
    keys = jax.random.split(jax.random.key(seed), len(sizes) + 1)
    params: dict[str, jax.Array] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params[f"w{i}"] = jax.random.normal(keys[i], (a, b)) / np.sqrt(a)
        params[f"b{i}"] = jnp.zeros(b)
    x = jax.random.normal(keys[-1], (batch, sizes[0]))
    y = jnp.sin(x[:, : sizes[-1]] * 2.0)
    layers = len(sizes) - 1

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        h = x
        for i in range(layers):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            if i < layers - 1:
                h = jnp.tanh(h)
        return jnp.mean((h - y) ** 2)

    return loss, params


def rotated(lam: np.ndarray, seed: int = 0) -> Callable[[jax.Array], jax.Array]:
    """``½ Σ λᵢ (U x)ᵢ²``, ``U`` the orthonormal DCT after random signs: its Hessian's eigenvalues are ``lam``."""
    signs = jnp.asarray(np.random.default_rng(seed).choice([-1.0, 1.0], len(lam)).astype(np.float32))
    lam_j = jnp.asarray(lam.astype(np.float32))

    def f(x: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum(lam_j * jax.scipy.fft.dct(signs * x, norm="ortho") ** 2)

    return f


def size(params: Any) -> int:
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))


# ------------------------------------------------------------------ 1. a product against a gradient


def _grad_and_hvp(sizes: Sequence[int]) -> tuple[int, dict[str, Callable[[], object]]]:
    """The parameter count, and one jitted gradient and one jitted product, each waited for."""
    loss, params = mlp(sizes, 256)
    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda p, v: jax.jvp(jax.grad(loss), (p,), (v,))[1])
    v = jax.tree_util.tree_map(jnp.ones_like, params)
    return size(params), {
        "grad": lambda: jax.block_until_ready(grad(params)),
        "hvp": lambda: jax.block_until_ready(hvp(params, v)),
    }


def product_against_gradient(budget: float) -> list[list[str]]:
    rows = []
    for sizes in ((100, 200, 25), (784, 128, 10)):
        n, sides = _grad_and_hvp(sizes)
        t = alternate_calls(sides, budget)
        rows.append([f"MLP {'-'.join(map(str, sizes))}", f"{n:,}", f"{t['grad'] * 1e3:.3f} ms",
                     f"{t['hvp'] * 1e3:.3f} ms", f"{t.ratio('hvp', 'grad'):.2f}x"])  # fmt: skip
    return rows


# ------------------------------------------------------------------ 2. products to converge


def ritz_trace(fn: Callable[[Any], jax.Array], params: Any, steps: int) -> np.ndarray:
    """The largest Ritz value after each step of the Lanczos run ``spectrum=True`` makes (same start)."""
    o = make_objective(fn, (params,), 0, "f", False)

    def program(p: Any, dynamic: Any) -> jax.Array:
        hvp = curvature.hvp_of(o.loss_fn, False, p, dynamic)
        dtype = curvature._acc_dtype(p)
        state = curvature._start(curvature._signs(np.uint32(7), p, dtype), steps, dtype, None)

        def body(i: jax.Array, carry: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
            s, tops = carry
            s = curvature._step(hvp, np.uint32(8), p, s)
            theta = curvature._ritz(s)[0]
            return s, tops.at[i].set(theta[s.count - 1])

        return jax.lax.fori_loop(0, steps, body, (state, jnp.zeros(steps, dtype)))[1]

    return np.asarray(jax.jit(program)(o.params0, o.dynamic), dtype=np.float64)


def products_to_converge() -> tuple[list[list[str]], list[int]]:
    n = 100_000
    loss, params = mlp((784, 128, 10), 256)
    problems = [
        ("quadratic, eigenvalues even in [0, 1]", rotated(np.linspace(0.0, 1.0, n)), jnp.ones(n), 1.0),
        ("quadratic, eigenvalues 1/i", rotated(1.0 / np.arange(1, n + 1), seed=1), jnp.ones(n), 1.0),
        ("MLP 784-128-10", loss, params, None),
    ]
    rows, needed = [], []
    for name, fn, at, exact in problems:
        tops = ritz_trace(fn, at, 100)
        reference = exact if exact is not None else float(ritz_trace(fn, at, 300)[-1])
        error = np.abs(tops - reference) / abs(reference)
        first = int(np.argmax(error <= 1e-3)) + 1 if (error <= 1e-3).any() else -1
        needed.append(first if first > 0 else 10**9)
        stop = curvature.spectrum(make_objective(fn, (at,), 0, "f", False), curvature.Request(k=1)).spectrum
        stop_error = abs(stop.top[0] - reference) / abs(reference)
        rows.append([name, f"{size(at):,}", *(f"{error[k - 1]:.1e}" for k in (10, 25, 50, 100)),
                     str(first) if first > 0 else "> 100", f"{stop.iterations} ({stop_error:.0e})"])  # fmt: skip
    return rows, needed


# ------------------------------------------------------------------ 3. spectrum=True against the dense %hess

SETUP = """
import jax
import jax.numpy as jnp
import numpy as np
from bench_spectrum import mlp
loss, params = mlp((100, 200, 25), 16)
"""
CELLS = {
    "dense": "r = None\nr = %hess loss at=params\n_ = jax.block_until_ready(r.derivative)",
    "spectrum": "r = None\nr = %hess loss at=params spectrum=True",
}


def spectrum_against_dense(rounds: int) -> tuple[dict[str, float], float, dict[str, float]]:
    shell = new_shell(SETUP)
    first = {}
    for label, cell in CELLS.items():
        start = time.perf_counter()
        run(shell, cell)
        first[label] = time.perf_counter() - start
    gc.collect()
    per_round = alternate(shell, CELLS, rounds=rounds, calls=1, warm=1)
    run(shell, "r = None")
    return (
        {label: float(np.median(t)) for label, t in per_round.rounds.items()},
        per_round.ratio("spectrum", "dense"),
        first,
    )


# ------------------------------------------------------------------ 4. tracking during a run


def tracking(budget: float) -> tuple[float, float, float]:
    loss, params = mlp((100, 200, 25), 256)
    plain = Stepper(loss, params, lr=0.05)
    tracked = Stepper(loss, params, lr=0.05)
    tracked.sharpness_every = 100
    t = alternate_calls(
        {"plain": lambda: plain.run(1000), "tracked": lambda: tracked.run(1000)},
        budget,
        prepare={"plain": plain.reset, "tracked": tracked.reset},
        rounds=(5, 15),
    )
    return t["plain"] / 1000, t["tracked"] / 1000, t.ratio("tracked", "plain")


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(__doc__, FEWER_ROUNDS).parse_args(argv)
    budget, rounds = (2.0, 2) if args.quick else (10.0, 5)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; medians of alternating rounds\n")

    products = product_against_gradient(budget)
    print(table(products, ["problem", "parameters", "grad", "hvp", "hvp / grad"]))
    worst_hvp = max(float(row[-1].rstrip("x")) for row in products)

    converge, needed = products_to_converge()
    print()
    print(table(converge, ["problem", "parameters", "err@10", "err@25", "err@50", "err@100",
                           "products to 1e-3", "tol=1e-3 stops at (err)"]))  # fmt: skip

    medians, ratio, first = spectrum_against_dense(rounds)
    print()
    print(table([[label, CELLS[label].splitlines()[1], f"{medians[label]:.3f} s", f"{first[label]:.2f} s"]
                 for label in CELLS], ["side", "cell", "median", "first call (compiling)"]))  # fmt: skip
    print(f"spectrum=True / dense %hess on the 25,225-parameter MLP: {ratio:.4f} (1/{1 / ratio:.0f})")

    plain, tracked, overhead = tracking(budget)
    print(
        f"\nrun(1000) per step: plain {plain * 1e6:.1f} us, sharpness_every=100 {tracked * 1e6:.1f} us: {overhead:.2f}x"
    )

    results = {
        "hvp / grad": (worst_hvp, worst_hvp <= TARGETS["hvp / grad"]),
        "products to 1e-3": (max(needed), max(needed) <= TARGETS["products to 1e-3"]),
        "spectrum / dense": (ratio, ratio <= TARGETS["spectrum / dense"]),
        "tracking": (overhead, overhead <= TARGETS["tracking"]),
    }
    print()
    for name, (value, met) in results.items():
        print(f"{name}: {value:.4g} (target <= {TARGETS[name]:.4g}): {'met' if met else 'MISSED'}")
    return 1 if args.strict and not all(met for _, met in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
