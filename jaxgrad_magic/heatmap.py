"""Big Jacobians and Hessians as pictures: a flattened matrix view, pooled on the device.

Only the pooled image (at most ``MAX_SIDE`` squared values) and four statistics travel to
the host; the PNG is written with numpy and zlib (no plotting library in the hot path),
so a 300x300 heatmap costs about a millisecond.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MAX_SIDE = 320  # pooled image side, in matrix cells
TARGET_PX = 240  # small matrices are scaled up to about this many pixels


class Block(NamedTuple):
    """A labelled range of rows or columns of the flattened matrix."""

    label: str
    start: int
    size: int


class MatrixSummary(NamedTuple):
    """What a heatmap shows besides the picture."""

    shape: tuple[int, int]
    min: float
    max: float
    norm: float
    zero_fraction: float


class Heatmap(NamedTuple):
    """A rendered heatmap: PNG bytes, its pixel size, the blocks and the summary."""

    png: bytes
    width: int
    height: int
    rows: tuple[Block, ...]
    cols: tuple[Block, ...]
    summary: MatrixSummary
    vmax: float
    pooled: bool


def _blocks(labels: Sequence[str], sizes: Sequence[int]) -> tuple[Block, ...]:
    out, start = [], 0
    for label, size in zip(labels, sizes, strict=True):
        out.append(Block(label, start, size))
        start += size
    return tuple(out)


def flatten_matrix(
    blocks: Sequence[Sequence[Any]],
    row_labels: Sequence[str],
    row_shapes: Sequence[tuple[int, ...]],
    col_labels: Sequence[str],
    col_shapes: Sequence[tuple[int, ...]],
) -> tuple[jax.Array, tuple[Block, ...], tuple[Block, ...]]:
    """Assemble derivative blocks ``blocks[r][c]`` (shaped row + col) into one matrix, on device.

    Args:
      blocks: per output (row) leaf, per input (column) leaf, an array of shape
        ``row_shapes[r] + col_shapes[c]``.
      row_labels: a label per row block (e.g. ``f[0]``).
      row_shapes: the shape of each output leaf.
      col_labels: a label per column block (e.g. ``x['w']``).
      col_shapes: the shape of each input leaf.

    Returns:
      ``(matrix, row_blocks, col_blocks)``.
    """
    rsz = [math.prod(s) for s in row_shapes]
    csz = [math.prod(s) for s in col_shapes]
    rows = [
        jnp.concatenate([jnp.reshape(b, (rsz[r], csz[c])) for c, b in enumerate(row)], axis=1)
        for r, row in enumerate(blocks)
    ]
    matrix = jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    return matrix, _blocks(row_labels, rsz), _blocks(col_labels, csz)


@jax.jit
def _stats(m: jax.Array) -> jax.Array:
    m = m.astype(jnp.float32)
    return jnp.stack([jnp.min(m), jnp.max(m), jnp.linalg.norm(m), jnp.mean(m == 0)])


@functools.partial(jax.jit, static_argnums=1)
def _pool(m: jax.Array, max_side: int) -> jax.Array:
    """Shrink to at most ``max_side`` per axis, keeping the largest-magnitude entry per block."""
    rows, cols = m.shape
    br, bc = math.ceil(rows / max_side), math.ceil(cols / max_side)
    if br == 1 and bc == 1:
        return m
    pr, pc = -rows % br, -cols % bc
    padded = jnp.pad(m, ((0, pr), (0, pc)))
    tiles = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(tiles.shape[0], tiles.shape[1], br * bc)
    pick = jnp.argmax(jnp.abs(tiles), axis=-1)[..., None]
    return jnp.take_along_axis(tiles, pick, axis=-1)[..., 0]


_LEVELS = 254  # palette entries for values; two more for separators and NaN
_SEPARATOR, _NAN = 254, 255


@functools.cache
def palette() -> np.ndarray:
    """A diverging colour table (blue - white - red), then separator and NaN greys: 256 x RGB."""
    from matplotlib import colormaps

    ramp = (colormaps["RdBu_r"](np.linspace(0.0, 1.0, _LEVELS))[:, :3] * 255).astype(np.uint8)
    return np.concatenate([ramp, np.array([[96, 96, 96], [160, 160, 160]], dtype=np.uint8)])


def encode_png(indices: np.ndarray, colors: np.ndarray) -> bytes:
    """Encode an ``(h, w)`` uint8 image of palette indices as an indexed-colour PNG."""
    h, w = indices.shape
    raw = np.empty((h, 1 + w), dtype=np.uint8)
    raw[:, 0] = 0  # filter type: none
    raw[:, 1:] = indices

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", colors.astype(np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))  # level 1: 5x faster, a few % larger
        + chunk(b"IEND", b"")
    )


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
    """Palette indices for values in ``[-vmax, vmax]`` (NaN and inf get their own grey)."""
    scale = vmax if vmax > 0 else 1.0
    finite = np.isfinite(values)
    idx = np.clip((np.where(finite, values, 0.0) / scale + 1) * (_LEVELS / 2), 0, _LEVELS - 1).astype(np.uint8)
    idx[~finite] = _NAN
    return idx


def render(matrix: jax.Array, rows: tuple[Block, ...], cols: tuple[Block, ...], max_side: int = MAX_SIDE) -> Heatmap:
    """Render a (possibly huge) matrix as a heatmap with block separators.

    Args:
      matrix: the flattened derivative, on device.
      rows: labelled row blocks.
      cols: labelled column blocks.
      max_side: the most cells per axis moved to the host.

    Returns:
      A :class:`Heatmap`.
    """
    matrix = jnp.asarray(matrix)
    if not jnp.issubdtype(matrix.dtype, jnp.floating):
        matrix = matrix.astype(jnp.float32)
    stats = np.asarray(_stats(matrix))
    pooled = _pool(matrix, max_side)
    was_pooled = pooled.shape != matrix.shape
    values = np.asarray(pooled, dtype=np.float64)
    vmax = float(np.nanmax(np.abs(values))) if values.size and np.isfinite(values).any() else 1.0
    img = colorize(values, vmax)
    up = max(1, TARGET_PX // max(values.shape))
    if up > 1:
        img = np.repeat(np.repeat(img, up, axis=0), up, axis=1)
    # One-pixel separators between blocks, so pytree and multi-output structure is visible.
    r_scale = img.shape[0] / matrix.shape[0]
    c_scale = img.shape[1] / matrix.shape[1]
    for b in rows[1:]:
        img[min(round(b.start * r_scale), img.shape[0] - 1), :] = _SEPARATOR
    for b in cols[1:]:
        img[:, min(round(b.start * c_scale), img.shape[1] - 1)] = _SEPARATOR
    summary = MatrixSummary(
        (int(matrix.shape[0]), int(matrix.shape[1])), float(stats[0]), float(stats[1]), float(stats[2]), float(stats[3])
    )
    return Heatmap(encode_png(img, palette()), img.shape[1], img.shape[0], rows, cols, summary, vmax, was_pooled)


def colorbar_png(width: int = 160, height: int = 10) -> bytes:
    """The colour table as a horizontal bar, for a legend."""
    ramp = np.linspace(-1.0, 1.0, width)[None, :].repeat(height, axis=0)
    return encode_png(colorize(ramp, 1.0), palette())
