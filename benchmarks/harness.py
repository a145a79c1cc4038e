"""What the benchmark scripts share: a quiet shell, side-by-side timing, compile counts, tables.

Timings alternate the compared cells in rounds (after warming each), so load that comes and
goes on a shared machine falls on every side alike; ratios are medians of per-round ratios.
The scripts also share their command line (:func:`arguments`) and the printed report of their
targets (:class:`Targets`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jax
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
FEWER_ROUNDS = "fewer rounds (a rough look, not a measurement)"  # ``--quick`` of the scripts that count rounds


@dataclass(frozen=True)
class Check:
    """One target: what was measured, what was expected, and whether it was met."""

    name: str
    measured: str
    expected: str
    met: bool

    @classmethod
    def at_most(cls, name: str, measured: str, ratio: float, target: float) -> Check:
        """A ratio against its ceiling: ``measured`` (what the two sides took) ends with the ratio."""
        return cls(name, f"{measured}: {ratio:.2f}x" if measured else f"{ratio:.2f}x", f"<= {target}x", ratio <= target)


class Targets:
    """The targets of one benchmark run: each printed as it is checked, all counted at the end."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def show(self, check: Check) -> None:
        """Keep ``check`` and print it as ``  [met|MISSED] name: measured (target expected)``."""
        self.checks.append(check)
        print(f"  [{'met' if check.met else 'MISSED'}] {check.name}: {check.measured} (target {check.expected})")
        sys.stdout.flush()

    def skip(self, name: str, why: str = "not installed") -> None:
        """Print that the target ``name`` was not checked, and why; it is not counted."""
        print(f"  [skipped] {name}: {why}")
        sys.stdout.flush()

    @property
    def missed(self) -> list[Check]:
        """The checks whose target was missed, in the order they were shown."""
        return [c for c in self.checks if not c.met]

    def finish(self, strict: bool) -> int:
        """Print how many targets were met (and how many missed, if any).

        Args:
          strict: whether a missed target fails the run.

        Returns:
          The exit status: 1 when ``strict`` and a target was missed, else 0.
        """
        missed = self.missed
        met = len(self.checks) - len(missed)
        print(f"{met} of {len(self.checks)} targets met" + (f"; missed: {len(missed)}" if missed else ""))
        return 1 if (missed and strict) else 0


def arguments(
    doc: str, quick: str = "a smaller time budget per comparison (noisier)", *, strict: bool = True
) -> argparse.ArgumentParser:
    """The command line every benchmark script starts from: ``--quick`` and (with ``strict``) ``--strict``.

    Scripts add their own flags to the parser and call ``parse_args`` themselves.

    Args:
      doc: the script's docstring; its first paragraph becomes the description.
      quick: the help text of ``--quick`` (what it makes smaller).
      strict: whether to add ``--strict`` (a script without targets has no use for it).

    Returns:
      The parser.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    if strict:
        parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    return parser


def new_shell(*setup: str) -> InteractiveShell:
    """A shell with history off and the extension loaded, after running ``setup`` cells."""
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    for cell in ("%load_ext jaxgrad_magic", *setup):
        run(shell, cell)
    return shell


def run(shell: InteractiveShell, cell: str) -> Any:
    """Run ``cell`` like a notebook cell, quietly; raise its error if it fails.

    Returns:
      The value of the cell's last expression (None for an assignment).
    """
    with capture_output():  # displayed results would only clutter the tables
        result = shell.run_cell(cell, store_history=False)
    result.raise_error()
    return result.result


# The benchmark functions, defined from source in a namespace of the caller's, as a cell would.
SOURCE = """
def rosenbrock(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2

def sin_sq(x):
    return jnp.sum(jnp.sin(x) ** 2)
"""


class CompileCounter:
    """Counts XLA backend compilations and the seconds they took, through JAX's public monitoring events."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT:
            self.count += 1
            self.seconds += duration

    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Yield a one-element list that holds the number of compiles inside the block."""
        box = [0]
        start = self.count
        try:
            yield box
        finally:
            box[0] = self.count - start

    def close(self) -> None:
        """Stop listening."""
        jax.monitoring.unregister_event_duration_listener(self._listen)


@dataclass(frozen=True)
class Timings:
    """Seconds per run of each cell, one number per alternating round."""

    rounds: dict[str, list[float]]

    def __getitem__(self, label: str) -> float:
        """The median seconds per run of ``label``."""
        return statistics.median(self.rounds[label])

    def ratio(self, a: str, b: str | Sequence[str]) -> float:
        """Median over rounds of ``a``'s time over ``b``'s (over the fastest of several ``b``)."""
        bs = [b] if isinstance(b, str) else list(b)
        per_round = zip(self.rounds[a], *(self.rounds[x] for x in bs), strict=True)
        return statistics.median(t[0] / min(t[1:]) for t in per_round)


def alternate(shell: InteractiveShell, cells: dict[str, str], rounds: int, calls: int, warm: int = 100) -> Timings:
    """Time each cell's ``run_cell`` in alternating rounds.

    Each cell is run ``warm`` times first (compiles, caches, allocator). Then every round
    times ``calls`` runs of each cell in turn, rotating which goes first.

    Args:
      shell: the shell the cells run in.
      cells: label -> cell source.
      rounds: number of alternating rounds.
      calls: runs of one cell per round.
      warm: untimed runs of each cell before timing.

    Returns:
      The per-round seconds per run of every cell.
    """
    for cell in cells.values():
        run(shell, cell)  # fail loudly once, rather than time an error
        for _ in range(warm):
            shell.run_cell(cell, store_history=False)
    labels = list(cells)
    times: dict[str, list[float]] = {label: [] for label in labels}
    run_cell = shell.run_cell
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            cell = cells[label]
            start = time.perf_counter()
            for _ in range(calls):
                run_cell(cell, store_history=False)
            times[label].append((time.perf_counter() - start) / calls)
    return Timings(times)


def alternate_calls(
    sides: Mapping[str, Callable[[], object]],
    budget: float,
    prepare: Mapping[str, Callable[[], object]] | None = None,
    min_seconds: float = 0.02,
    rounds: tuple[int, int] = (7, 41),
) -> Timings:
    """Time Python callables in alternating rounds, after warming each (the same scheme as :func:`alternate`).

    ``prepare[label]`` runs untimed before every timed call of that side (e.g. a reset to the
    start point). A round times each side enough times in a row to last ``min_seconds``, so
    short calls are not lost in timer noise; the order rotates every round. As many rounds as
    fit in ``budget`` seconds are run, within ``rounds`` (at least, at most).

    Args:
      sides: label -> the call to time.
      budget: seconds to spend, roughly, on the timed rounds.
      prepare: label -> what to run, untimed, before each call of that side.
      min_seconds: the least time one side takes in one round.
      rounds: the fewest and the most rounds.

    Returns:
      The per-round seconds per call of every side; compare them with :meth:`Timings.ratio`.
    """
    prepare = prepare or {}

    def timed(label: str) -> float:
        if label in prepare:
            prepare[label]()
        call = sides[label]
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    reps: dict[str, int] = {}
    round_seconds = 0.0
    for label in sides:
        timed(label)  # warm: compiles, caches, the allocator
        best = max(min(timed(label) for _ in range(3)), 1e-9)
        reps[label] = max(1, math.ceil(min_seconds / best))
        round_seconds += reps[label] * best
    count = max(rounds[0], min(rounds[1], int(budget / round_seconds)))
    labels = list(sides)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(count):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            times[label].append(sum(timed(label) for _ in range(reps[label])) / reps[label])
    return Timings(times)


def us(seconds: float) -> str:
    """Seconds as microseconds, for the tables."""
    return f"{seconds * 1e6:9.1f} us"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
