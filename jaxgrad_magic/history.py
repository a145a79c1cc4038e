"""The bounded record of a descent: the losses, and the path of one or two parameters.

A run of millions of steps keeps the first entry and the most recent :data:`HISTORY_LIMIT`
entries in a ring, so memory stays fixed however long the descent goes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HISTORY_LIMIT = 100_000
"""Recent history entries kept; ``history`` holds these plus the initial loss (100,001 in all)."""


class Recent:
    """The first entry of a growing series plus its most recent ``limit`` entries (a ring)."""

    def __init__(self, limit: int, width: int | None = None) -> None:
        self.limit = limit
        self.ring = np.empty((limit,) if width is None else (limit, width), dtype=np.float64)
        self.first: np.ndarray | float = 0.0
        self.pos = 0  # where the next entry goes
        self.count = 0  # entries in the ring

    def clear(self, first: Any) -> None:
        self.first = first
        self.pos = self.count = 0

    def append(self, value: Any) -> None:
        pos = self.pos
        self.ring[pos] = value
        self.pos = pos + 1 if pos + 1 < self.limit else 0
        if self.count < self.limit:
            self.count += 1

    def extend(self, values: np.ndarray) -> None:
        m = len(values)
        if m >= self.limit:
            self.ring[:] = values[m - self.limit :]
            self.pos, self.count = 0, self.limit
            return
        head = min(m, self.limit - self.pos)
        self.ring[self.pos : self.pos + head] = values[:head]
        self.ring[: m - head] = values[head:]
        self.pos = (self.pos + m) % self.limit
        self.count = min(self.count + m, self.limit)

    def array(self) -> np.ndarray:
        start = (self.pos - self.count) % self.limit
        if start + self.count <= self.limit:
            recent = self.ring[start : start + self.count]
        else:
            recent = np.concatenate([self.ring[start:], self.ring[: self.pos]])
        return np.concatenate([np.asarray(self.first, dtype=np.float64)[None], recent])
