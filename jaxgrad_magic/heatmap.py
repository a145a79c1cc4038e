"""Big Jacobians and Hessians as pictures: a flattened matrix view, pooled on the device.

A matrix larger than ``MAX_SIDE`` per side never leaves the device whole: one compiled call
assembles, summarises, pools and colours it, and only the pooled image (at most ``MAX_SIDE``
squared palette indices) and five numbers travel to the host. A matrix that fits the picture
is its own image, and numpy colours that few values faster than a device round trip. Pillow
writes the palette indices as an indexed-colour PNG (no plotting library in the hot path).
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

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


def _assemble(blocks: Sequence[Sequence[Any]], rsz: Sequence[int], csz: Sequence[int]) -> jax.Array:
    rows = [
        jnp.concatenate([jnp.reshape(b, (rsz[r], csz[c])) for c, b in enumerate(row)], axis=1)
        if len(row) > 1
        else jnp.reshape(row[0], (rsz[r], csz[0]))
        for r, row in enumerate(blocks)
    ]
    return jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]


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
    return _assemble(blocks, rsz, csz), _blocks(row_labels, rsz), _blocks(col_labels, csz)


def _stats(m: jax.Array) -> jax.Array:
    m = m.astype(jnp.float32)
    return jnp.stack([jnp.min(m), jnp.max(m), jnp.linalg.norm(m), jnp.mean(m == 0)])


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
    """Encode an ``(h, w)`` uint8 image of palette indices as an indexed-colour PNG.

    Noise-like pictures (a dense random Jacobian) are stored: deflating them saves ~15% for
    ~10x the time. The rest are deflated with runs of one colour only, as small as the default
    strategy on such pictures, and faster.
    """
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), "P")
    image.putpalette(np.asarray(colors, dtype=np.uint8).tobytes())
    repeats = np.count_nonzero(indices[:, 1:] == indices[:, :-1]) if indices.shape[1] > 1 else 0
    level = 0 if repeats < 0.25 * indices.size else 1
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=level, compress_type=zlib.Z_RLE)
    return out.getvalue()


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
    """Palette indices for values in ``[-vmax, vmax]`` (NaN and inf get their own grey)."""
    scale = vmax if vmax > 0 else 1.0
    values = np.asarray(values)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    level = (values if all_finite else np.where(finite, values, 0)) * np.float32(_LEVELS / 2 / scale)
    level += _LEVELS / 2  # in place: a picture is up to MAX_SIDE² values, so passes count
    np.clip(level, 0, _LEVELS - 1, out=level)
    idx = level.astype(np.uint8)
    if not all_finite:
        idx[~finite] = _NAN
    return idx


def _colorize(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`colorize` on the device, scaled to the largest finite magnitude: ``(indices, vmax)``."""
    finite = jnp.isfinite(values)
    vmax = jnp.max(jnp.where(finite, jnp.abs(values), 0.0), initial=0.0)
    scale = jnp.where(vmax > 0, vmax, 1.0)
    level = jnp.clip(jnp.where(finite, values, 0.0) * (_LEVELS / 2 / scale) + _LEVELS / 2, 0, _LEVELS - 1)
    return jnp.where(finite, level.astype(jnp.uint8), jnp.uint8(_NAN)), vmax


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _picture(
    blocks: Sequence[Sequence[Any]], rsz: tuple[int, ...], csz: tuple[int, ...], max_side: int
) -> tuple[jax.Array, jax.Array]:
    """One compiled call: assemble, summarise, pool and colour. Only the uint8 indices and five
    numbers (min, max, norm, fraction of zeros, colour scale) leave it."""
    m = _assemble(blocks, rsz, csz)
    if not jnp.issubdtype(m.dtype, jnp.floating):
        m = m.astype(jnp.float32)
    indices, vmax = _colorize(_pool(m, max_side).astype(jnp.float32))
    return jnp.append(_stats(m), vmax), indices


def render_blocks(
    blocks: Sequence[Sequence[Any]],
    row_labels: Sequence[str],
    row_shapes: Sequence[tuple[int, ...]],
    col_labels: Sequence[str],
    col_shapes: Sequence[tuple[int, ...]],
    max_side: int = MAX_SIDE,
) -> Heatmap:
    """The flattened matrix as a heatmap with block separators, in one compiled call (the flat matrix stays on device).

    Args:
      blocks: per output (row) leaf, per input (column) leaf, an array of shape
        ``row_shapes[r] + col_shapes[c]``.
      row_labels: a label per row block.
      row_shapes: the shape of each output leaf.
      col_labels: a label per column block.
      col_shapes: the shape of each input leaf.
      max_side: the most cells per axis moved to the host.

    Returns:
      A :class:`Heatmap`.
    """
    rsz = tuple(math.prod(s) for s in row_shapes)
    csz = tuple(math.prod(s) for s in col_shapes)
    return _render(blocks, rsz, csz, _blocks(row_labels, rsz), _blocks(col_labels, csz), max_side)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _summary_stats(blocks: Sequence[Sequence[Any]], rsz: tuple[int, ...], csz: tuple[int, ...]) -> jax.Array:
    return _stats(_assemble(blocks, rsz, csz))


def summarize_blocks(
    blocks: Sequence[Sequence[Any]], row_shapes: Sequence[tuple[int, ...]], col_shapes: Sequence[tuple[int, ...]]
) -> MatrixSummary:
    """The :class:`MatrixSummary` of the matrix :func:`render_blocks` would draw: four numbers
    computed on the device, no picture.

    Args:
      blocks: per output (row) leaf, per input (column) leaf, an array of shape
        ``row_shapes[r] + col_shapes[c]``.
      row_shapes: the shape of each output leaf.
      col_shapes: the shape of each input leaf.

    Returns:
      The summary: shape, min, max, norm and the fraction of zeros.
    """
    rsz = tuple(math.prod(s) for s in row_shapes)
    csz = tuple(math.prod(s) for s in col_shapes)
    stats = np.asarray(_summary_stats(blocks, rsz, csz))
    return MatrixSummary((sum(rsz), sum(csz)), float(stats[0]), float(stats[1]), float(stats[2]), float(stats[3]))


def _host_picture(
    blocks: Sequence[Sequence[Any]], rsz: tuple[int, ...], csz: tuple[int, ...]
) -> tuple[np.ndarray, float, np.ndarray]:
    """``(min, max, norm, zero fraction)``, the colour scale and the palette indices, in numpy."""
    rows = [np.concatenate([np.reshape(np.asarray(b), (r, c)) for b, c in zip(row, csz, strict=True)], axis=1)
            for row, r in zip(blocks, rsz, strict=True)]  # fmt: skip
    m = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float32)
    # As the device computes them (float32; np.linalg.norm would go through BLAS threads).
    stats = np.array([m.min(), m.max(), np.sqrt(np.sum(np.square(m))), np.count_nonzero(m == 0) / m.size])
    magnitude = np.abs(m)
    finite = np.isfinite(magnitude)
    vmax = float(magnitude.max() if finite.all() else magnitude[finite].max(initial=0.0))
    return stats, vmax, colorize(m, vmax)


def _render(
    blocks: Sequence[Sequence[Any]],
    rsz: tuple[int, ...],
    csz: tuple[int, ...],
    rows: tuple[Block, ...],
    cols: tuple[Block, ...],
    max_side: int,
) -> Heatmap:
    n_rows, n_cols = sum(rsz), sum(csz)
    if n_rows <= max_side and n_cols <= max_side:
        # The matrix is its own picture (at most max_side² values move either way), and numpy
        # summarises and colours that few values faster than a round trip through the device.
        stats, vmax, img = _host_picture(blocks, rsz, csz)
    else:
        numbers, indices = jax.device_get(_picture(blocks, rsz, csz, max_side))
        stats, vmax, img = numbers[:4], float(numbers[4]), np.array(indices)  # a writable copy
    was_pooled = img.shape != (n_rows, n_cols)
    vmax = vmax if vmax > 0 else 1.0
    up = max(1, TARGET_PX // max(img.shape))
    if up > 1:
        img = np.repeat(np.repeat(img, up, axis=0), up, axis=1)
    # One-pixel separators between blocks, so pytree and multi-output structure is visible.
    r_scale = img.shape[0] / n_rows
    c_scale = img.shape[1] / n_cols
    for b in rows[1:]:
        img[min(round(b.start * r_scale), img.shape[0] - 1), :] = _SEPARATOR
    for b in cols[1:]:
        img[:, min(round(b.start * c_scale), img.shape[1] - 1)] = _SEPARATOR
    summary = MatrixSummary((n_rows, n_cols), float(stats[0]), float(stats[1]), float(stats[2]), float(stats[3]))
    return Heatmap(encode_png(img, palette()), img.shape[1], img.shape[0], rows, cols, summary, vmax, was_pooled)


@functools.cache
def colorbar_png(width: int = 160, height: int = 10) -> bytes:
    """The colour table as a horizontal bar, for a legend."""
    ramp = np.linspace(-1.0, 1.0, width)[None, :].repeat(height, axis=0)
    return encode_png(colorize(ramp, 1.0), palette())
