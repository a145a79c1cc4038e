"""The bounded record of a descent: the loss after each step, and the path of one or two parameters.

A run of millions of steps keeps the starting entry and the most recent :data:`HISTORY_LIMIT`
entries in a ring, so memory stays fixed however long the descent goes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HISTORY_LIMIT = 100_000
"""Recent history entries kept; ``history`` holds these plus the initial loss (100,001 in all)."""


class Ring:
    """The first entry of a growing series plus its most recent ``limit`` entries (float64).

    Args:
      limit: how many recent entries to keep.
      width: the length of each entry, or None for scalar entries.
    """

    def __init__(self, limit: int, width: int | None = None) -> None:
        self.limit = limit
        self.ring = np.empty((limit,) if width is None else (limit, width), dtype=np.float64)
        self.first: Any = 0.0
        self.pos = 0  # where the next entry goes
        self.count = 0  # entries in the ring

    def clear(self, first: Any) -> None:
        """Start over with ``first`` as the only entry."""
        self.first = first
        self.pos = self.count = 0

    def append(self, value: Any) -> None:
        """Add one entry, dropping the oldest recent one when full."""
        pos = self.pos
        self.ring[pos] = value
        self.pos = pos + 1 if pos + 1 < self.limit else 0
        if self.count < self.limit:
            self.count += 1

    def extend(self, values: np.ndarray) -> None:
        """Add entries in order (only the last ``limit`` matter when there are more)."""
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
        """The first entry, then the recent ones oldest first."""
        start = (self.pos - self.count) % self.limit
        if start + self.count <= self.limit:
            recent = self.ring[start : start + self.count]
        else:
            recent = np.concatenate([self.ring[start:], self.ring[: self.pos]])
        return np.concatenate([np.asarray(self.first, dtype=np.float64)[None], recent])


class History:
    """The losses of a descent, its step count, and (when ``width`` is given) its path.

    Args:
      width: the number of parameter entries recorded per step, or None to record no path.
      limit: recent entries kept, besides the start.
    """

    def __init__(self, width: int | None, limit: int = HISTORY_LIMIT) -> None:
        self.step = 0
        self._losses = Ring(limit)
        self._path = Ring(limit, width) if width is not None else None

    def start(self, loss: float, point: Any) -> None:
        """Start over at step 0 with this loss and (when a path is kept) these flat parameters."""
        self.step = 0
        self._losses.clear(loss)
        if self._path is not None:
            self._path.clear(point)

    def append(self, loss: float, point: Any) -> None:
        """Record one step."""
        self.step += 1
        self._losses.append(loss)
        if self._path is not None:
            self._path.append(point)

    def extend(self, losses: np.ndarray, path: np.ndarray | None) -> None:
        """Record ``len(losses)`` steps; ``path`` has a row per step (ignored when no path is kept)."""
        self.step += len(losses)
        self._losses.extend(losses)
        if self._path is not None and path is not None:
            self._path.extend(path)

    def losses(self) -> np.ndarray:
        """The starting loss, then the loss after each of the most recent steps."""
        return self._losses.array()

    def steps(self) -> np.ndarray:
        """The step number of each entry of :meth:`losses`: 0, then the most recent steps."""
        first = self.step - self._losses.count + 1
        return np.concatenate([[0], np.arange(first, self.step + 1)]).astype(np.int64)

    def path(self) -> np.ndarray | None:
        """The flat parameters at each entry of :meth:`steps`, or None when no path is kept."""
        return None if self._path is None else self._path.array()
