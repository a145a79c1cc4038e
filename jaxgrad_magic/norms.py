"""The gradient's norm per leaf (per layer): where gradients vanish or explode.

:func:`grad_norms` maps each differentiated leaf's path (``layers[0].weight``,
``['dense']['kernel']``) to the norm of its gradient. The norms are computed on the device in
one compiled program and only they come back to the host. :func:`shown` picks the rows a
bounded display shows (the first and last few, and the largest and smallest wherever they
are), and :func:`html_list` writes them as a small HTML list for the descent panel.

Pure: numbers and strings out; no IPython, no widgets.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .argnums import Argnums
from .formatting import number
from .host import fetch
from .modules import leaf_path

LARGEST, SMALLEST = "largest", "smallest"


def leaf_labels(tree: Any, picked: Argnums, names: Sequence[str]) -> list[str]:
    """A label for every leaf of ``tree`` (a derivative in JAX's structure for ``picked``), in tree order.

    For one argument, the path inside it (``layers[0].weight``, ``['dense']['kernel']``), or
    the argument's name for a bare array; for several, the name and then the path (``p['w']``).

    Args:
      tree: the gradient, or anything shaped like it.
      picked: the differentiated arguments.
      names: the function's positional parameter names.
    """
    labels = []
    for name, value in zip(picked.names(names), picked.split(tree), strict=True):
        for path, _ in jax.tree_util.tree_flatten_with_path(value)[0]:
            inner = leaf_path(path)
            if not inner:
                labels.append(name)
            elif picked.single:
                labels.append(inner)
            else:
                labels.append(name + ("" if inner.startswith("[") else ".") + inner)
    return labels


def _norm(x: jax.Array, dtype: Any) -> jax.Array:
    # Scaled by the largest entry first: squaring overflows float32 from about 1.8e19 on.
    a = jnp.abs(x).astype(dtype)
    top = jnp.max(a, initial=0)
    scale = jnp.where((top > 0) & jnp.isfinite(top), top, jnp.ones((), dtype))
    norm = scale * jnp.sqrt(jnp.sum(jnp.square(a / scale)))
    return jnp.where(jnp.isinf(top), top, norm)


@jax.jit
def _norms(leaves: list[jax.Array]) -> jax.Array:
    dtype = jnp.result_type(jnp.float32, *(jnp.real(x).dtype for x in leaves))
    return jnp.stack([_norm(x, dtype) for x in leaves])


def leaf_norms(tree: Any) -> np.ndarray:
    """The norm of every leaf of ``tree``, in tree order (float64), from one compiled program.

    Args:
      tree: a pytree of arrays (on any device).

    Returns:
      One norm per leaf; only these numbers leave the device.
    """
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    if not leaves:
        return np.zeros(0)
    return np.asarray(fetch(_norms(leaves)), dtype=np.float64)


def grad_norms(grad: Any, picked: Argnums, names: Sequence[str]) -> dict[str, float]:
    """Each leaf of ``grad`` by its label (:func:`leaf_labels`) and its norm, in tree order.

    Args:
      grad: the gradient, in JAX's structure for ``picked``.
      picked: the differentiated arguments.
      names: the function's positional parameter names.
    """
    return dict(zip(leaf_labels(grad, picked, names), leaf_norms(grad).tolist(), strict=True))


class NormRow(NamedTuple):
    """One leaf's norm as a display shows it.

    Attributes:
      label: the leaf's path.
      norm: its gradient's norm.
      mark: ``"largest"``, ``"smallest"`` or empty.
    """

    label: str
    norm: float
    mark: str = ""

    @property
    def text(self) -> str:
        """The norm, and its mark: ``0.0123 ◀ largest``."""
        return number(self.norm, 4) + (f"  ◀ {self.mark}" if self.mark else "")


def shown(norms: Mapping[str, float], max_rows: int, edge: int) -> list[NormRow | int]:
    """The rows a bounded display shows, in tree order, with gaps as counts of the rows left out.

    Every row shows when there are at most ``max_rows``; else the first and last ``edge``, and
    the largest and smallest norms wherever they are, so a vanishing or exploding layer is
    never left out.

    Args:
      norms: label -> norm, in tree order.
      max_rows: the most rows shown in full.
      edge: rows shown at each end of a longer list.

    Returns:
      :class:`NormRow` records, with an int (how many rows were left out) at each gap.
    """
    labels, values = list(norms), np.asarray(list(norms.values()), dtype=np.float64)
    n = len(labels)
    if n == 0:
        return []
    finite = np.where(np.isnan(values), -np.inf, values)
    top = int(np.argmax(finite))
    bottom = int(np.argmin(np.where(np.isnan(values), np.inf, values)))
    marks = {top: LARGEST, bottom: SMALLEST} if n > 1 and values[top] != values[bottom] else {}
    edge = max(1, edge)
    keep = set(range(n)) if n <= max(max_rows, 2 * edge + 1) else {*range(edge), *range(n - edge, n), top, bottom}
    out: list[NormRow | int] = []
    last = -1
    for k in sorted(keep):
        if k > last + 1:
            out.append(k - last - 1)
        out.append(NormRow(labels[k], float(values[k]), marks.get(k, "")))
        last = k
    if last < n - 1:
        out.append(n - 1 - last)
    return out


def html_list(norms: Mapping[str, float], max_rows: int = 8, edge: int = 3) -> str:
    """The norms as a small HTML list (the descent panel's), bounded like :func:`shown`; empty for one leaf."""
    if len(norms) <= 1:
        return ""
    items = []
    for row in shown(norms, max_rows, edge):
        if isinstance(row, int):
            items.append(f"<div style='opacity:.6'>… {row:,} more …</div>")
            continue
        weight = "font-weight:600;" if row.mark else ""
        items.append(
            f"<div style='{weight}white-space:nowrap;overflow:hidden;text-overflow:ellipsis'>"
            f"<code>{html.escape(row.label)}</code> {html.escape(row.text)}</div>"
        )
    return "<div style='font-size:12px;line-height:16px'><b>‖∇‖ per leaf</b>" + "".join(items) + "</div>"
