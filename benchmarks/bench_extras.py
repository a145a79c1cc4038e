"""What the gradient check and the heatmap cost on top of a cached ``%jac`` of a 300x300 Jacobian.

f(x) = tanh(A @ x) with A of shape (300, 300), x of size 300, in a real IPython shell with the
extension loaded. Four cells are timed side by side, in alternating rounds after warming each:

* ``r = %jac f at=x`` (cached: nothing compiles), waiting for the Jacobian;
* ``r = %jac f at=x check=True``, the same with the finite-difference check;
* ``h = r._repr_html_()`` of a result drawn as a heatmap (the default above 8 rows or columns);
* ``h = rp._repr_html_()`` of the same result with ``heatmap_above`` huge (abbreviated numbers).

Targets, as ratios measured in this one run (within each round, then the median over rounds):

* the check adds at most 2x: ``%jac check=True`` / ``%jac`` <= 2;
* the heatmap adds at most 1.5x: (``%jac`` + heatmap HTML) / (``%jac`` + plain HTML) <= 1.5;
* both together: (``%jac check=True`` + heatmap HTML) / (``%jac`` + plain HTML) <= 2.

The check's bar was 1.5x while it took two points per direction, and that check called correct
derivatives wrong (a fixed step across a pole, truncation error taken for a bug). The honest
check differences at four points per direction and extrapolates (Richardson), with a rounding
bound and one-sided differences at domain edges: f at 65 points for 16 directions. On this
300x300 Jacobian that is about half a millisecond more than the cached ``%jac`` (1.5-1.6x), far
below what a person notices in a cell, so the bar is 2x rather than a weaker check.

Run with ``.venv/bin/python benchmarks/bench_extras.py`` (``--quick`` for fewer rounds,
``--strict`` to exit with status 1 when a target is missed, ``--profile`` to print where the
time of the check and of the heatmap goes).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
from collections.abc import Sequence

import jax
from harness import FEWER_ROUNDS, alternate, arguments, new_shell, run, table
from IPython.core.interactiveshell import InteractiveShell

TARGETS = {"check": 2.0, "heatmap": 1.5, "check + heatmap": 2.0}
SETUP = """
import jax
import jax.numpy as jnp
import numpy as np
A = jax.random.normal(jax.random.key(0), (300, 300)) / 300 ** 0.5
def f(x):
    return jnp.tanh(A @ x)
x = jnp.linspace(-1.0, 1.0, 300)
"""
WAIT = "\n_ = jax.block_until_ready(r.derivative)"  # JAX is asynchronous: wait, as a reader would
CELLS = {
    "jac": "r = %jac f at=x" + WAIT,
    "jac check": "r = %jac f at=x check=True" + WAIT,
    "html heatmap": "h = r._repr_html_()",
    "html plain": "h = rp._repr_html_()",
}


def make_shell() -> InteractiveShell:
    """A shell with history off, the extension loaded and the function and point defined."""
    return new_shell(
        SETUP,
        "r = %jac f at=x",
        "%config JaxGradMagics.heatmap_above = 1_000_000_000",
        "rp = %jac f at=x",
        "%config JaxGradMagics.heatmap_above = 8",
    )


def profile(shell: InteractiveShell, cell: str, calls: int = 200, top: int = 18) -> str:
    """cProfile of ``calls`` runs of ``cell``, by internal time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        shell.run_cell(cell, store_history=False)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Time the cells, print the medians, the ratios and the targets.

    Returns:
      1 when ``--strict`` and a target was missed, else 0.
    """
    parser = arguments(__doc__, FEWER_ROUNDS)
    parser.add_argument("--profile", action="store_true", help="print cProfile tables of the check and the heatmap")
    args = parser.parse_args(argv)
    rounds, calls, warm = (6, 10, 10) if args.quick else (30, 20, 50)

    shell = make_shell()
    check = run(shell, "%jac f at=x check=True").check
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; medians of {rounds} alternating rounds")
    print(f"check: {'PASS' if check.passed else 'FAIL'}, {check.args[0].directions} random directions\n")
    per_round = alternate(shell, CELLS, rounds, calls, warm).rounds
    t = {label: statistics.median(times) for label, times in per_round.items()}

    # Ratios are taken within each round, then the median: load that drifts between rounds
    # (a shared machine) cancels out of A/B measured seconds apart.
    def ratio(top: list[str], bottom: list[str]) -> float:
        return statistics.median(
            sum(per_round[a][r] for a in top) / sum(per_round[b][r] for b in bottom) for r in range(rounds)
        )

    base = t["jac"] + t["html plain"]
    ratios = {
        "check": ratio(["jac check"], ["jac"]),
        "heatmap": ratio(["jac", "html heatmap"], ["jac", "html plain"]),
        "check + heatmap": ratio(["jac check", "html heatmap"], ["jac", "html plain"]),
    }
    print(
        table(
            [[label, cell.replace("\n", "; "), f"{t[label] * 1e6:8.1f} us"] for label, cell in CELLS.items()],
            ["cell", "source", "median"],
        )
    )
    print()
    rows = [
        [
            "check",
            "%jac check=True / %jac",
            f"{ratios['check']:.2f}x",
            f"+{(t['jac check'] - t['jac']) * 1e6:.0f} us",
        ],
        [
            "heatmap",
            "(%jac + heatmap HTML) / (%jac + plain HTML)",
            f"{ratios['heatmap']:.2f}x",
            f"+{(t['html heatmap'] - t['html plain']) * 1e6:.0f} us",
        ],
        [
            "check + heatmap",
            "(%jac check=True + heatmap HTML) / (%jac + plain HTML)",
            f"{ratios['check + heatmap']:.2f}x",
            f"+{(t['jac check'] + t['html heatmap'] - base) * 1e6:.0f} us",
        ],
    ]
    print(table(rows, ["added", "ratio", "measured", "added time"]))
    missed = [name for name, ratio in ratios.items() if ratio > TARGETS[name]]
    verdict = "met" if not missed else f"MISSED ({', '.join(missed)})"
    bars = ", ".join(f"{name} <= {bar}x" for name, bar in TARGETS.items())
    print(f"\nwhat the check and the heatmap add to a cached %jac of a 300x300 Jacobian ({bars}): {verdict}")

    if args.profile:
        print("\nWhere r = %jac f at=x check=True spends its time\n" + profile(shell, CELLS["jac check"]))
        print("\nWhere the heatmap HTML spends its time\n" + profile(shell, CELLS["html heatmap"]))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
