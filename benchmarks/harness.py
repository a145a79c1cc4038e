"""What the benchmark scripts share: a quiet shell, side-by-side timing, compile counts, tables.

Timings alternate the compared cells in rounds (after warming each), so load that comes and
goes on a shared machine falls on every side alike; ratios are medians of per-round ratios.
"""

from __future__ import annotations

import math
import statistics
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


@dataclass(frozen=True)
class Check:
    """One target: what was measured, what was expected, and whether it was met."""

    name: str
    measured: str
    expected: str
    met: bool


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


class CompileCounter:
    """Counts XLA backend compilations, through JAX's public monitoring events."""

    def __init__(self) -> None:
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT:
            self.count += 1

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
