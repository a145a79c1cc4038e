"""Small results brought to the host without the cost of a sleeping wait."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

SPIN_SECONDS = 5e-4
"""How long :func:`fetch` polls before it blocks; longer programs block at once after that."""


def fetch(x: Any) -> np.ndarray:
    """``np.asarray(x)``, polling briefly for ``x`` to be ready before the blocking wait.

    A blocking wait sleeps and is woken when the program ends; on small machines that wake-up
    costs tens of microseconds, more than a small program takes (measured in
    ``benchmarks/bench_stepper.py``: a step of 1,000 parameters read back in about half the
    time). Polling for at most :data:`SPIN_SECONDS` bounds the time spent on longer programs.

    Args:
      x: a JAX array (any other value goes straight to ``np.asarray``).

    Returns:
      Its value on the host.
    """
    ready = getattr(x, "is_ready", None)  # jaxlib's arrays have it; a NumPy value needs no wait
    if ready is not None and not ready():
        deadline = time.perf_counter() + SPIN_SECONDS
        while not ready() and time.perf_counter() < deadline:
            pass
    return np.asarray(x)
