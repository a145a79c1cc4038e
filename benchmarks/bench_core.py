"""Core speed benchmark: recompiles on re-run, the cost of a cache hit, and Jacobian mode choice.

Everything runs through a real IPython shell with the extension loaded, so the magic and the
plain-JAX cell it is compared with pay the same ``run_cell`` overhead. Timings are medians of
rounds that alternate the compared cells (after warming each), quoted as ratios measured side
by side in this one run.

Targets checked:

* Re-running an unchanged ``%%jgrad`` cell (or ``%jgrad`` line) compiles nothing; changing a
  global the function reads, or the argument's shape, recompiles and gives the new correct result.
* A cache-hit ``r = %jgrad f at=x`` costs at most 3x the plain cell ``r = g(x)`` with an
  already-jitted ``g = jax.jit(jax.grad(f))``.
* ``%jac`` with ``mode=auto`` is within 1.15x of the faster of ``mode=fwd`` and ``mode=rev``
  for f(x) = tanh(A @ x) over several input/output sizes.

Run with ``.venv/bin/python benchmarks/bench_core.py`` (``--quick`` for fewer rounds,
``--strict`` to exit with status 1 when a target is missed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from harness import FEWER_ROUNDS, Check, CompileCounter, alternate, arguments, new_shell, run, table, us
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import no_var_expand

CACHE_HIT_TARGET = 3.0  # simplicity beats microseconds nobody feels
AUTO_MODE_TARGET = 1.15
JAC_SHAPES = ((10, 1000), (1000, 10), (2000, 1), (300, 300))  # (n inputs, m outputs)


def make_shell() -> InteractiveShell:
    """A fresh shell with history off and the extension loaded."""
    return new_shell("import jax\nimport jax.numpy as jnp\nimport numpy as np")


def bench_recompile(shell: InteractiveShell, counter: CompileCounter) -> list[Check]:
    """Compiles when an unchanged ``%%jgrad`` cell or line is re-run, and when a global or shape changes."""
    cell = "%%jgrad at=x\ndef wave(x):\n    return scale * jnp.sum(jnp.sin(x) ** 2)\n"
    line = "%jgrad wave at=x"  # the same function object every time: what a cached line reuses

    def expected(scale: float, x: np.ndarray) -> tuple[float, np.ndarray]:
        # d/dx scale * sin(x)^2 = scale * sin(2x)
        return float(scale * np.sum(np.sin(x) ** 2)), scale * np.sin(2 * x)

    def step(
        label: str, setup: str | None, scale: float, x: np.ndarray, expect_compiles: bool, source: str = cell
    ) -> Check:
        if setup:
            run(shell, setup)  # outside the count: building x compiles its own small programs
        with counter.counting() as n:
            result = run(shell, source)
        value, grad = expected(scale, x)
        correct = np.allclose(result.value, value, rtol=1e-5) and np.allclose(
            np.asarray(result.derivative), grad, rtol=1e-5, atol=1e-6
        )
        met = correct and (n[0] > 0 if expect_compiles else n[0] == 0)
        want = "recompile (>= 1), new correct value" if expect_compiles else "0 compiles, correct value"
        got = f"{n[0]} compile{'s' * (n[0] != 1)}, value {'correct' if correct else 'WRONG'}"
        return Check(label, got, want, met)

    x4 = np.linspace(0.1, 1.0, 4, dtype=np.float32)
    x7 = np.linspace(0.1, 1.0, 7, dtype=np.float32)
    run(shell, "scale = 2.0\nx = jnp.linspace(0.1, 1.0, 4)")
    checks = [step("first run of the cell", None, 2.0, x4, expect_compiles=True)]
    checks.append(step("re-run, unchanged", None, 2.0, x4, expect_compiles=False))
    checks.append(step("re-run, unchanged (again)", None, 2.0, x4, expect_compiles=False))
    checks.append(step("global changed (scale = 3.0)", "scale = 3.0", 3.0, x4, expect_compiles=True))
    checks.append(step("re-run after the change", None, 3.0, x4, expect_compiles=False))
    checks.append(step("shape changed (x of size 7)", "x = jnp.linspace(0.1, 1.0, 7)", 3.0, x7, True))
    checks.append(step("re-run after the shape change", None, 3.0, x7, expect_compiles=False))
    back = "scale = 2.0\nx = jnp.linspace(0.1, 1.0, 4)"
    checks.append(step("back to scale = 2.0, x of size 4", back, 2.0, x4, expect_compiles=False))
    checks.append(step("line magic, re-run", None, 2.0, x4, False, line))
    checks.append(step("line magic, re-run (again)", None, 2.0, x4, False, line))
    checks.append(step("line magic, global changed (scale = 5.0)", "scale = 5.0", 5.0, x4, True, line))
    checks.append(step("line magic, shape changed (x of size 7)", "x = jnp.linspace(0.1, 1.0, 7)", 5.0, x7, True, line))
    checks.append(step("line magic, re-run after the changes", None, 5.0, x7, False, line))
    return checks


def _nothing(line: str) -> None:
    """A line magic that does nothing: what IPython alone costs for ``r = %magic ...``."""


def bench_cache_hit(shell: InteractiveShell, rounds: int, calls: int) -> tuple[list[list[str]], list[Check]]:
    """A cache-hit ``%jgrad`` line against a plain cell calling an already-jitted gradient."""
    run(
        shell,
        "x = jnp.linspace(0.1, 1.0, 3)\n"
        "def f(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n"
        "g = jax.jit(jax.grad(f))\n"
        "h = jax.jit(jax.hessian(f))\n",
    )
    # IPython's own share: a line magic, declared like ours, that does nothing.
    shell.register_magic_function(no_var_expand(_nothing), "line", "nothing")
    cells = {
        "magic": "r = %jgrad f at=x",
        "plain": "r = g(x)",
        "hess magic": "r = %hess f at=x",
        "hess plain": "r = h(x)",
        "no-op magic": "r = %nothing f at=x",
        "empty cell": "pass",
    }
    t = alternate(shell, cells, rounds, calls)
    ratio = t.ratio("magic", "plain")
    hess_ratio = t.ratio("hess magic", "hess plain")
    rows = [
        ["r = %jgrad f at=x", us(t["magic"]), f"{ratio:.2f}x of r = g(x)"],
        ["r = g(x)   (g = jax.jit(jax.grad(f)))", us(t["plain"]), "1.00x"],
        ["r = %hess f at=x", us(t["hess magic"]), f"{hess_ratio:.2f}x of r = h(x)"],
        ["r = h(x)   (h = jax.jit(jax.hessian(f)))", us(t["hess plain"]), "1.00x"],
        [
            "r = %nothing f at=x   (a line magic doing nothing)",
            us(t["no-op magic"]),
            f"{t.ratio('no-op magic', 'plain'):.2f}x of r = g(x)",
        ],
        ["pass   (run_cell alone)", us(t["empty cell"]), ""],
    ]
    check = Check(
        "cache-hit %jgrad vs jitted g", f"{ratio:.2f}x", f"<= {CACHE_HIT_TARGET:.2f}x", ratio <= CACHE_HIT_TARGET
    )
    return rows, [check]


def bench_modes(shell: InteractiveShell, rounds: int, calls: int) -> tuple[list[list[str]], list[Check]]:
    """``%jac`` with mode=auto against mode=fwd and mode=rev, and plain jitted jacfwd / jacrev."""
    rows: list[list[str]] = []
    checks: list[Check] = []
    for n, m in JAC_SHAPES:
        run(
            shell,
            f"A = jax.random.normal(jax.random.key(0), ({m}, {n})) / {n} ** 0.5\n"
            f"x = jnp.linspace(-1.0, 1.0, {n})\n"
            "@jax.jit\n"
            "def f(x):\n    return jnp.tanh(A @ x)\n"
            "jf = jax.jit(jax.jacfwd(f))\n"
            "jr = jax.jit(jax.jacrev(f))\n",
        )
        # JAX dispatches asynchronously: wait for the Jacobian, as a reader of the result would.
        wait, wait_result = "\n_ = jax.block_until_ready(r)", "\n_ = jax.block_until_ready(r.derivative)"
        cells = {
            "auto": "r = %jac f at=x" + wait_result,
            "fwd": "r = %jac f at=x mode=fwd" + wait_result,
            "rev": "r = %jac f at=x mode=rev" + wait_result,
            "jacfwd": "r = jf(x)" + wait,
            "jacrev": "r = jr(x)" + wait,
        }
        t = alternate(shell, cells, rounds, calls, warm=20)
        chosen = run(shell, "%jac f at=x").mode
        ratio = t.ratio("auto", ("fwd", "rev"))
        slower = max(t["fwd"], t["rev"]) / min(t["fwd"], t["rev"])
        rows.append(
            [
                f"{n:>4} -> {m:<4}",
                chosen,
                us(t["auto"]),
                us(t["fwd"]),
                us(t["rev"]),
                us(t["jacfwd"]),
                us(t["jacrev"]),
                f"{ratio:.2f}x",
                f"{slower:.1f}x",
                f"{t.ratio('auto', ('jacfwd', 'jacrev')):.2f}x",
            ]
        )
        checks.append(
            Check(
                f"mode=auto, n={n}, m={m}",
                f"{ratio:.2f}x of the faster mode",
                f"<= {AUTO_MODE_TARGET:.2f}x",
                ratio <= AUTO_MODE_TARGET,
            )
        )
    return rows, checks


def main(argv: Sequence[str] | None = None) -> int:
    """Run every part, print the tables and the targets.

    Returns:
      The exit status: 1 when ``--strict`` and a target was missed, else 0.
    """
    args = arguments(__doc__, FEWER_ROUNDS).parse_args(argv)
    rounds, calls = (8, 20) if args.quick else (30, 50)
    jac_rounds, jac_calls = (6, 10) if args.quick else (20, 20)

    started = time.perf_counter()
    shell = make_shell()
    counter = CompileCounter()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; medians of {rounds} alternating rounds\n")

    checks = bench_recompile(shell, counter)
    print("Compiles when a %%jgrad cell or a %jgrad line is re-run")
    print(table([[c.name, c.measured, c.expected] for c in checks], ["step", "measured", "expected"]))

    timed: list[tuple[str, Callable[[], tuple[list[list[str]], list[Check]]]]] = [
        ("Cache hit: per-cell time", lambda: bench_cache_hit(shell, rounds, calls)),
        (
            "Jacobian mode: per-cell time of f(x) = tanh(A @ x), A of shape (m, n)",
            lambda: bench_modes(shell, jac_rounds, jac_calls),
        ),
    ]
    headers = {
        0: ["cell", "time", "ratio"],
        1: ["n -> m", "auto", "%jac auto", "%jac fwd", "%jac rev", "jit(jacfwd)", "jit(jacrev)", "auto/best",
            "worst/best", "auto/plain"],
    }  # fmt: skip
    for i, (title, bench) in enumerate(timed):
        rows, more = bench()
        checks += more
        print(f"\n{title}")
        print(table(rows, headers[i]))
    counter.close()

    print("\nTargets")
    print(
        table(
            [[c.name, c.measured, c.expected, "met" if c.met else "MISSED"] for c in checks],
            ["target", "measured", "expected", ""],
        )
    )
    missed = [c for c in checks if not c.met]
    print(f"\n{len(checks) - len(missed)}/{len(checks)} met in {time.perf_counter() - started:.0f} s")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
