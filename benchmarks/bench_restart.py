"""What the persistent compilation cache saves when a kernel restarts: demo.ipynb, fresh kernel, run all.

Each run executes demo.ipynb with nbclient in a new kernel, from kernel start to shutdown, with
one cell put in front in memory (demo.ipynb itself is not changed)::

    %load_ext jaxgrad_magic
    %config JaxGradMagics.compile_cache = "<a new private directory>"   # "" on the side without

and a last cell that reports how many programs went to the XLA backend and how many of those
were loaded from the cache (``jax.monitoring``). Both sides run once untimed first: with the
cache that run fills it; without, it warms the same files as the other side's first run did.
Then rounds alternate a timed fresh-kernel run of each side, rotating which goes first, and the
ratio is the median of the rounds' ratios (cache / no cache).

Target: a restart with the cache takes at most 0.8x the time of one without, and every program
of the run with the cache comes from the cache. The kernel's start, the imports of JAX and
IPython and the shutdown are the same on both sides and are in both times: the ratio is that
of the whole restart a person waits for.

Run with ``.venv/bin/python benchmarks/bench_restart.py`` (about a minute; ``--quick``: one
round, ``--strict``: exit with status 1 when a target is missed).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import nbformat
from harness import arguments, table
from nbclient import NotebookClient

DEMO = Path(__file__).resolve().parent.parent / "demo.ipynb"
TARGET = 0.8
MARK = "BENCH_RESTART "
PRELUDE = """\
%load_ext jaxgrad_magic
%config JaxGradMagics.compile_cache = {directory!r}
import time as _bench_time
import jax as _bench_jax

_bench_started = _bench_time.perf_counter()
_bench_seen = {{"programs": 0, "loaded": 0}}


def _bench_on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        _bench_seen["loaded"] += 1


def _bench_on_duration(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":  # compiled or loaded, both pass here
        _bench_seen["programs"] += 1


_bench_jax.monitoring.register_event_listener(_bench_on_event)
_bench_jax.monitoring.register_event_duration_secs_listener(_bench_on_duration)
"""
EPILOGUE = f"""\
import json as _bench_json

print({MARK!r} + _bench_json.dumps({{**_bench_seen, "cells": _bench_time.perf_counter() - _bench_started}}))
"""


def restart(directory: str) -> dict[str, float]:
    """Execute demo.ipynb in a fresh kernel with the cache in ``directory`` ("" for none).

    Returns:
      ``seconds`` from kernel start to shutdown, ``cells`` (the notebook's cells inside the
      kernel), ``programs`` sent to the backend and how many were ``loaded`` from the cache.
    """
    nb = nbformat.read(DEMO, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PRELUDE.format(directory=directory)))
    nb.cells.append(nbformat.v4.new_code_cell(EPILOGUE))
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(DEMO.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(f"demo.ipynb failed: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    report = next(line for o in outputs for line in o.get("text", "").splitlines() if line.startswith(MARK))
    return {"seconds": seconds, **json.loads(report.removeprefix(MARK))}


def main(argv: Sequence[str] | None = None) -> int:
    """Time fresh-kernel runs of the demo with and without the cache, print the ratio and the target.

    Returns:
      1 when ``--strict`` and a target was missed, else 0.
    """
    args = arguments(__doc__, "one round (a rough look, not a measurement)").parse_args(argv)
    rounds = 1 if args.quick else 5
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # the side without must really be without
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    cache = tempfile.mkdtemp(prefix="jaxgrad-bench-xla-")  # 0700: the package accepts it
    sides = {"with cache": cache, "without": ""}
    try:
        print(
            f"jax {jax.__version__}; demo.ipynb in a fresh kernel; {rounds} timed round(s) after one untimed run each"
        )
        filled = {label: restart(directory) for label, directory in sides.items()}
        stored = len(os.listdir(cache))
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in sides}
        labels = list(sides)
        for r in range(rounds):
            for label in labels[r % 2 :] + labels[: r % 2]:
                runs[label].append(restart(sides[label]))
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    ratio = statistics.median(
        on["seconds"] / off["seconds"] for on, off in zip(runs["with cache"], runs["without"], strict=True)
    )
    cells_ratio = statistics.median(
        on["cells"] / off["cells"] for on, off in zip(runs["with cache"], runs["without"], strict=True)
    )
    rows = [
        [
            "first run, filling the cache",
            f"{filled['with cache']['seconds']:.2f} s",
            f"{filled['with cache']['cells']:.2f} s",
            str(filled["with cache"]["programs"]),
            str(filled["with cache"]["loaded"]),
        ],
        *(
            [
                f"restart {label}",
                f"{statistics.median(x['seconds'] for x in runs[label]):.2f} s",
                f"{statistics.median(x['cells'] for x in runs[label]):.2f} s",
                str(runs[label][-1]["programs"]),
                str(runs[label][-1]["loaded"]),
            ]
            for label in sides
        ),
    ]
    print(table(rows, ["run", "kernel start to shutdown", "cells", "programs", "loaded from cache"]))
    print(f"\n{stored} programs stored in the cache")
    print(f"restart with the cache / without: {ratio:.2f}x (the notebook's cells alone: {cells_ratio:.2f}x)")
    all_loaded = all(x["loaded"] == x["programs"] > 0 for x in runs["with cache"])
    missed = [
        name
        for name, ok in [(f"restart <= {TARGET}x", ratio <= TARGET), ("every program loaded", all_loaded)]
        if not ok
    ]
    verdict = "met" if not missed else f"MISSED ({', '.join(missed)})"
    print(f"restart <= {TARGET}x without the cache, every program from the cache: {verdict}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
