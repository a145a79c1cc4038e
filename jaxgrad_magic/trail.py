"""The path of a descent of any size, kept bounded: full snapshots at evenly spaced steps.

A descent over more than two numbers keeps no per-step path (:mod:`jaxgrad_magic.history`
keeps one only for one or two). What a loss landscape needs instead (its PCA plane, and the
path drawn on any plane) is kept here: the full parameters at step 0 and at every ``every``-th
step, at most :attr:`Trail.capacity` of them, fewer the bigger the model (a budget of
:data:`TRAIL_BYTES`). When the trail is full, every other snapshot is dropped and ``every``
doubles, so the snapshots stay evenly spaced over the whole descent, however long: a run of
10^5 steps of a million parameters keeps 8 copies of them, not 10^5.

The snapshots stay on the device. During ``run(n)`` the compiled loop writes them into
``capacity + 1`` rows of the buffer it records into (see :mod:`jaxgrad_magic.descent`), at the
spacing the trail will have when the chunk ends, so a chunk never takes more than the trail keeps; a single
``step()`` keeps its parameters as they are (no copy). Pure: no IPython, no widgets.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

TRAIL_BYTES = 32 << 20
"""Bytes the snapshots may hold (on the device) before fewer are kept."""
MAX_SNAPSHOTS = 64
"""The most snapshots kept, however small the parameters."""
MIN_SNAPSHOTS = 4
"""The fewest snapshots kept, however big the parameters."""


def capacity(size: int, itemsize: int) -> int:
    """How many snapshots of ``size`` numbers of ``itemsize`` bytes a trail keeps."""
    return max(MIN_SNAPSHOTS, min(MAX_SNAPSHOTS, TRAIL_BYTES // max(1, size * itemsize)))


def snapshot_dtype(params: Any) -> Any:
    """The dtype snapshots are kept in: float32, or the parameters' own when wider (float64)."""
    dtypes = [x.dtype for x in jax.tree_util.tree_leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.result_type(jnp.float32, *dtypes)


class Rows(NamedTuple):
    """Where a run's chunk left its snapshots in the buffer it records into: ``count`` rows of
    ``size`` numbers from ``offset``, to be read in ``dtype`` (see :class:`jaxgrad_magic.descent.Record`).

    The trail reads them from that buffer in the one call that keeps them: sliced out by the
    chunk, they would be copied once more (for a million parameters, 36 MB per chunk).
    """

    offset: int
    count: int
    size: int
    dtype: str

    def of(self, buffer: jax.Array) -> jax.Array:
        """The snapshots in ``buffer``: ``(count, size)``, row ``j`` the ``j``-th due step's."""
        flat = jax.lax.slice_in_dim(buffer, self.offset, self.offset + self.count * self.size)
        return flat.reshape(self.count, self.size).astype(self.dtype)


@functools.partial(jax.jit, static_argnums=3)
def _gather(kept: jax.Array | None, buffer: jax.Array, rows: jax.Array, where: Rows) -> jax.Array:
    # One matrix of the rows still kept and a chunk's new ones: one call and one array per chunk.
    written = where.of(buffer)
    return (written if kept is None else jnp.concatenate([kept, written]))[rows]


@jax.jit
def _row(matrix: jax.Array, j: jax.Array) -> jax.Array:
    return jax.lax.dynamic_index_in_dim(matrix, j, keepdims=False)


class Trail:
    """Snapshots of the parameters at every multiple of ``every`` up to the current step, at most
    :attr:`capacity` of them (step 0 always among them).

    Args:
      size: the number of parameter entries.
      itemsize: bytes per entry of a snapshot.

    Attributes:
      capacity: the most snapshots kept.
      every: the steps between two snapshots (a power of two; doubles as the trail fills).
    """

    def __init__(self, size: int, itemsize: int) -> None:
        self.capacity = capacity(size, itemsize)
        self.every = 1
        self._steps: list[int] = []
        # Per snapshot: the parameter pytree a step left (kept as it is), or the row of _matrix
        # that holds what a run wrote.
        self._values: list[Any] = []
        self._matrix: jax.Array | None = None  # (capacity + 1, size), on the device

    def start(self, params: Any) -> None:
        """Start over at step 0 with these parameters."""
        self.every, self._steps, self._values, self._matrix = 1, [0], [params], None

    def due(self, step: int) -> bool:
        """True when the parameters at ``step`` are to be kept."""
        return step % self.every == 0

    def spacing(self, step: int) -> int:
        """The spacing once the descent reaches ``step``: the smallest power of two, at least
        ``every``, whose multiples up to ``step`` number at most ``capacity``.

        It depends on ``step`` alone, so a run (which writes every multiple of it in one go) and
        a loop of steps keep the same snapshots.
        """
        every = self.every
        while step // every + 1 > self.capacity:
            every *= 2
        return every

    def add(self, step: int, params: Any) -> None:
        """Keep the parameters of ``step`` (a step that is :meth:`due`)."""
        self._steps.append(step)
        self._values.append(params)
        if len(self._steps) > self.capacity:
            self._space(self.spacing(step))

    def add_rows(self, first: int, taken: int, every: int, buffer: Any, where: Rows) -> None:
        """Keep what a chunk of a run wrote: the multiples of ``every`` in ``(first, first + taken]``.

        Args:
          first: the step the chunk started from.
          taken: the steps it kept.
          every: the spacing the chunk wrote its snapshots at (:meth:`spacing` of where it was to end).
          buffer: what the chunk recorded; its snapshot row ``j`` is the ``j``-th multiple of
            ``every`` after ``first``.
          where: where in ``buffer`` the snapshots are.
        """
        if buffer is None or every % self.every or taken <= 0:
            return
        self._space(every)
        count = (first + taken) // every - first // every
        if not count:
            return
        # The rows still kept first, then the new ones: one matrix again, in one call.
        kept = self._matrix
        rows = np.zeros(where.count, np.int32)
        at = 0
        for k, value in enumerate(self._values):
            if isinstance(value, int):
                rows[at], self._values[k] = value, at
                at += 1
        for j in range(count):
            rows[at] = (0 if kept is None else kept.shape[0]) + j
            self._steps.append((first // every + j + 1) * every)
            self._values.append(at)
            at += 1
        self._matrix = _gather(kept, buffer, rows, where)
        if len(self._steps) > self.capacity:  # never, for a chunk that wrote at its spacing
            self._space(self.spacing(self._steps[-1]))

    def _space(self, every: int) -> None:
        """Keep the multiples of ``every`` (a multiple of the spacing now) alone."""
        if every != self.every:
            kept = [(s, v) for s, v in zip(self._steps, self._values, strict=True) if s % every == 0]
            self._steps, self._values = [s for s, _ in kept], [v for _, v in kept]
            self.every = every

    def snapshots(self) -> tuple[list[int], list[Any]]:
        """The steps kept and their parameters (each a pytree like the parameters, or a flat row)."""
        values = [_row(self._matrix, np.int32(v)) if isinstance(v, int) else v for v in self._values]
        return list(self._steps), values

    def __len__(self) -> int:
        return len(self._steps)
