"""The bounded record of a descent: the loss after each step, and the path of one or two parameters.

A run of millions of steps keeps the starting entry and the most recent :data:`HISTORY_LIMIT`
entries in a ring, so memory stays fixed however long the descent goes.

Reads are cheap, because the panel reads the whole record for every frame it draws: until a
series outgrows its limit it is returned as a read-only view of the buffer (new entries go
past the end of every view handed out, and a write over an entry a view shows goes to a fresh
buffer), and after that as one copy per change. Either way, an array once returned never
changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HISTORY_LIMIT = 100_000
"""Recent history entries kept; ``history`` holds these plus the initial loss (100,001 in all)."""


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class Ring:
    """The first entry of a growing series plus its most recent ``limit`` entries (float64).

    Slot 0 of the buffer holds the first entry and slots ``1..limit`` the recent ones, oldest at
    slot ``1 + start``. Only a full ring has ``start > 0``, so until the series outgrows the ring
    the entries are in order and :meth:`array` is a view.

    Args:
      limit: how many recent entries to keep.
      width: the length of each entry, or None for scalar entries.
    """

    def __init__(self, limit: int, width: int | None = None) -> None:
        self.limit = limit
        self.count = 0  # recent entries held
        self._buffer = np.zeros((limit + 1,) if width is None else (limit + 1, width), dtype=np.float64)
        self._start = 0  # where the oldest recent entry sits, counted from slot 1
        self._shared = False  # a view of the buffer was handed out
        self._copy: np.ndarray | None = None  # array() of a wrapped ring, until the next change

    def _before_overwrite(self, keep: bool) -> None:
        # Entries a view may show are about to change: leave that buffer to the views.
        if self._shared:
            self._buffer = self._buffer.copy() if keep else np.empty_like(self._buffer)
            self._shared = False
        self._copy = None

    def clear(self, first: Any) -> None:
        """Start over with ``first`` as the only entry."""
        self._before_overwrite(keep=False)
        self._buffer[0] = first
        self.count = self._start = 0

    def append(self, value: Any) -> None:
        """Add one entry, dropping the oldest recent one when full."""
        count = self.count
        if count < self.limit:  # not full, so in order: past the end of every view
            self._buffer[1 + count] = value
            self.count = count + 1
            return
        self._before_overwrite(keep=True)
        start = self._start
        self._buffer[1 + start] = value
        self._start = start + 1 if start + 1 < self.limit else 0

    def extend(self, values: np.ndarray) -> None:
        """Add entries in order (only the last ``limit`` matter when there are more)."""
        m, count, limit = len(values), self.count, self.limit
        if count + m <= limit:
            self._buffer[1 + count : 1 + count + m] = values
            self.count = count + m
            return
        self._before_overwrite(keep=True)  # slot 0, the first entry, stays
        if m >= limit:
            self._buffer[1:] = values[m - limit :]
            self.count, self._start = limit, 0
            return
        at = (self._start + count) % limit  # where the next entry goes
        head = min(m, limit - at)
        self._buffer[1 + at : 1 + at + head] = values[:head]
        self._buffer[1 : 1 + m - head] = values[head:]
        self.count = min(count + m, limit)
        self._start = (self._start + count + m - self.count) % limit

    def array(self) -> np.ndarray:
        """The first entry, then the recent ones oldest first (read-only; never changed afterwards)."""
        if self._start == 0:
            self._shared = True
            return _read_only(self._buffer[: 1 + self.count])
        if self._copy is None:
            start, buffer = self._start, self._buffer
            out = np.empty_like(buffer)
            out[0] = buffer[0]
            out[1 : self.limit - start + 1] = buffer[1 + start :]
            out[self.limit - start + 1 :] = buffer[1 : 1 + start]
            self._copy = _read_only(out)
        return self._copy


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
        self._numbers: np.ndarray | None = None  # 0, 1, ..., limit: the steps while every one is kept
        self._steps: np.ndarray | None = None  # steps() once the ring is full, until the next step

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
        """The starting loss, then the loss after each of the most recent steps (read-only)."""
        return self._losses.array()

    def steps(self) -> np.ndarray:
        """The step number of each entry of :meth:`losses`: 0, then the most recent steps (read-only)."""
        step, count = self.step, self._losses.count
        if count == step:  # every step is kept
            if self._numbers is None:
                self._numbers = _read_only(np.arange(self._losses.limit + 1, dtype=np.int64))
            return self._numbers[: step + 1]
        if self._steps is None or self._steps[-1] != step or len(self._steps) != count + 1:
            steps = np.arange(step - count, step + 1, dtype=np.int64)
            steps[0] = 0
            self._steps = _read_only(steps)
        return self._steps

    def path(self) -> np.ndarray | None:
        """The flat parameters at each entry of :meth:`steps` (read-only), or None when no path is kept."""
        return None if self._path is None else self._path.array()
