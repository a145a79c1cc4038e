"""A slice of the loss on a plane through the current parameters, for any number of them.

``Stepper.landscape(directions, grid, span)`` evaluates the loss at ``θ + α u + β v`` for
``α, β`` in ``[-span, span]`` on a ``grid × grid`` lattice, where ``θ`` are the current
parameters and ``u, v`` two directions of one of three kinds:

* ``"random"``: two Gaussian directions, filter-normalised per leaf as in Li et al. 2018
  ("Visualizing the loss landscape of neural nets"): each filter (a slice along a leaf's first
  axis, one output unit of PyTorch's ``(out, in)`` layout) is scaled to the norm of the same
  filter of ``θ``, and leaves of at most one dimension (biases, normalisation scales) are left
  out (zero), as the reference code's ``--xnorm filter --ignore biasbn``. When no leaf has two
  dimensions (a vector of parameters, a few scalars), the whole direction is scaled to the norm
  of ``θ`` instead.
* ``"pca"``: the top two principal directions of the recorded path (its snapshots, relative to
  ``θ``; see :mod:`jaxgrad_magic.trail`), each scaled so ``span=1`` reaches the path's farthest
  point along it. They depend on the path: another run gives another plane.
* ``"hessian"``: the two Hessian eigenvectors of largest magnitude at ``θ`` (what power
  iteration finds; at a saddle that may be a negative one), by the Lanczos of
  :mod:`jaxgrad_magic.curvature` on Hessian-vector products (forward over reverse; the Hessian
  is never formed), scaled to the norm of ``θ``. Lanczos rather than power iteration with deflation:
  it resolves two eigenvalues of nearly equal magnitude, which power iteration mixes.

The directions are computed on the device in one program; the grid and the path projected on
the plane (a least-squares fit of each snapshot by ``u`` and ``v``) in another, compiled once
per function and grid, vmapped over chunks of points so memory stays bounded
(:data:`GRID_BYTES`). Only the grid and the path come back to the host. Pure: no IPython, no
widgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .cache import CACHE
from .curvature import hvp_of, ritz_pairs
from .errors import JaxGradUsageError
from .formatting import number
from .host import fetch
from .objective import Objective
from .trail import snapshot_dtype

KINDS = ("random", "pca", "hessian")
"""The kinds of plane :meth:`Stepper.landscape` draws through the parameters."""
GRID_MAX = 201
"""The most points per side of a grid (40,401 evaluations)."""
GRID_BYTES = 256 << 20
"""About the memory one vmapped chunk of grid evaluations may take (estimated from the
parameters and the data: four times their bytes per point)."""
LANCZOS_STEPS = 48
"""Lanczos steps (Hessian-vector products) for the Hessian plane: its two extreme pairs converge
long before, in practice."""
BASIS_FLOATS = 1 << 25
"""Numbers the Lanczos basis may hold (128 MB in float32) before fewer steps are taken."""
PCA_NOTE = "the PCA plane follows the recorded path: another run gives another plane"


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class Slice:
    """The loss on a plane through the parameters, and the descent's path on it.

    ``values[i, j]`` is the loss at ``θ + alphas[j] u + betas[i] v``: rows follow ``betas``,
    as a contour plot takes them. With an odd ``grid`` the centre is ``θ`` itself, so
    ``values[grid // 2, grid // 2]`` is the current loss.

    Attributes:
      alphas: the grid's coordinates along ``u``, ``grid`` of them from ``-span`` to ``span``.
      betas: the same along ``v``.
      values: the loss on the grid, shape ``(grid, grid)`` (float64; NaN and inf kept).
      path: the recorded path in plane coordinates, shape ``(m, 2)``: each snapshot's
        least-squares position ``(α, β)``, oldest first, the current point last at ``(0, 0)``.
      path_steps: the step of each row of ``path``.
      directions: the kind of plane: ``"random"``, ``"pca"`` or ``"hessian"``.
      u: the first direction, shaped like the optimized parameters (on the device).
      v: the second direction.
      step: the stepper's step when the slice was taken.
      loss: the stepper's loss there.
      note: what to know when reading it (the PCA plane depends on the path; a fallback).
      eigenvalues: for ``"hessian"``, the eigenvalues of ``u`` and ``v``; else None.
      explained: for ``"pca"``, the share of the path's spread along ``u`` and along ``v``; else None.
    """

    alphas: np.ndarray
    betas: np.ndarray
    values: np.ndarray
    path: np.ndarray
    path_steps: np.ndarray
    directions: str
    u: Any = field(repr=False)
    v: Any = field(repr=False)
    step: int = 0
    loss: float = math.nan
    note: str = ""
    eigenvalues: tuple[float, float] | None = None
    explained: tuple[float, float] | None = None

    @property
    def span(self) -> float:
        """How far the grid reaches from the centre along each direction."""
        return float(self.alphas[-1])

    def __str__(self) -> str:
        grid = len(self.alphas)
        finite = self.values[np.isfinite(self.values)]
        low = number(finite.min(), 4) if finite.size else "nan"
        high = number(finite.max(), 4) if finite.size else "nan"
        extra = ""
        if self.eigenvalues is not None:
            extra = f", eigenvalues {number(self.eigenvalues[0], 4)} and {number(self.eigenvalues[1], 4)}"
        if self.explained is not None:
            extra = f", {100 * self.explained[0]:.0f}% and {100 * self.explained[1]:.0f}% of the path's spread"
        note = f"; {self.note}" if self.note else ""
        return (
            f"{self.directions} slice at step {self.step}: {grid}x{grid} grid over ±{number(self.span, 3)}, "
            f"loss {low} to {high} (centre {number(self.loss, 6)}), path of {len(self.path)} points{extra}{note}"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("Slice(...)" if cycle else str(self))

    def picture(self) -> bytes:
        """The slice as a contour plot of the loss over ``(α, β)`` with the path and the current
        point (the descent panel's picture), as PNG bytes."""
        from .plots import ContourPlot  # lazy: matplotlib loads when a picture is asked for

        return ContourPlot(self.alphas, self.betas, self.values, labels=("α", "β")).render(self.path, (0.0, 0.0))

    def _repr_png_(self) -> bytes:
        return self.picture()


def check_request(directions: Any, grid: Any, span: Any) -> tuple[str, int, float]:
    """``(directions, grid, span)`` checked, or the teaching error.

    Raises:
      JaxGradUsageError: an unknown kind, a grid that is not an odd whole number from 3 to
        :data:`GRID_MAX`, or a span that is not a positive finite number.
    """
    if directions not in KINDS:
        raise JaxGradUsageError(
            f"directions={directions!r} is not a kind of plane: use 'random' (filter-normalised Gaussian "
            "directions), 'pca' (the top two principal directions of the path so far) or 'hessian' (the top "
            "two Hessian eigenvectors)."
        )
    if isinstance(grid, bool) or not isinstance(grid, int | np.integer) or not 3 <= grid <= GRID_MAX or grid % 2 == 0:
        raise JaxGradUsageError(
            f"grid={grid!r} must be an odd whole number from 3 to {GRID_MAX} (points per side; odd, so the "
            "current parameters sit at the centre), e.g. grid=41."
        )
    try:
        reach = float(span)
    except (TypeError, ValueError):
        reach = math.nan
    if isinstance(span, bool) or not math.isfinite(reach) or reach <= 0:
        raise JaxGradUsageError(
            f"span={span!r} must be a positive number: how far the grid reaches along each direction "
            "(1.0 is one direction's length), e.g. span=1.0."
        )
    return str(directions), int(grid), reach


# ---------------------------------------------------------------------------- flat vectors


def _flat(tree: Any, dtype: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves]) if leaves else jnp.zeros(0, dtype)


def _unflat(flat: jax.Array, like: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, at = [], 0
    for x in leaves:
        size = math.prod(x.shape)
        out.append(flat[at : at + size].reshape(x.shape))
        at += size
    return jax.tree_util.tree_unflatten(treedef, out)


def _norm(x: jax.Array) -> jax.Array:
    # Scaled first, so a float32 vector of big entries does not overflow when squared.
    top = jnp.max(jnp.abs(x), initial=0)
    scale = jnp.where(top > 0, top, 1)
    return scale * jnp.sqrt(jnp.sum(jnp.square(x / scale)))


def _to_norm(d: jax.Array, length: jax.Array) -> jax.Array:
    """``d`` scaled to ``length``, or to unit length when ``length`` is 0."""
    size = _norm(d)
    target = jnp.where(length > 0, length, 1)
    return jnp.where(size > 0, d * (target / jnp.where(size > 0, size, 1)), d)


# ---------------------------------------------------------------------------- directions


def _random_direction(key: jax.Array, params: Any, dtype: Any) -> jax.Array:
    """One filter-normalised Gaussian direction (see the module docstring), flat."""
    leaves = jax.tree_util.tree_leaves(params)
    keys = jax.random.split(key, max(1, len(leaves)))
    filters = any(x.ndim >= 2 for x in leaves)
    parts = []
    for k, x in zip(keys, leaves, strict=False):
        d = jax.random.normal(k, x.shape, dtype)
        if filters and x.ndim <= 1:
            d = jnp.zeros(x.shape, dtype)  # biases and normalisation scales: left out
        elif filters:
            w = x.astype(dtype).reshape(x.shape[0], -1)
            rows = d.reshape(x.shape[0], -1)
            scale = jnp.linalg.norm(w, axis=1) / (jnp.linalg.norm(rows, axis=1) + 1e-10)
            d = (rows * scale[:, None]).reshape(x.shape)
        parts.append(jnp.ravel(d))
    flat = jnp.concatenate(parts)
    if filters:
        return flat
    return _to_norm(flat, _norm(_flat(params, dtype)))  # no filters: the whole vector is one


def _random_program(params: Any) -> Callable[..., Any]:
    dtype = snapshot_dtype(params)

    def program(p: Any, seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k1, k2 = jax.random.split(jax.random.key(seed))
        return _random_direction(k1, p, dtype), _random_direction(k2, p, dtype), jnp.zeros(4, dtype)

    return jax.jit(program)


def _orthogonal(key: jax.Array, u: jax.Array) -> jax.Array:
    """A random unit vector orthogonal to the unit vector ``u``."""
    r = jax.random.normal(key, u.shape, u.dtype)
    r = r - jnp.dot(r, u) * u
    return r / jnp.maximum(_norm(r), jnp.finfo(u.dtype).tiny)


def _pca_program(params: Any) -> Callable[..., Any]:
    dtype = snapshot_dtype(params)

    def program(p: Any, snaps: jax.Array, mask: jax.Array, seed: jax.Array) -> tuple[jax.Array, ...]:
        d = (snaps - _flat(p, dtype)[None]) * mask[:, None]
        gram = d @ d.T  # small: one row and column per snapshot
        w, a = jnp.linalg.eigh(gram)  # ascending
        w = jnp.maximum(w[::-1], 0)
        a = a[:, ::-1]
        sigma = jnp.sqrt(w[:2])
        tiny = jnp.finfo(dtype).eps * jnp.maximum(sigma[0], jnp.finfo(dtype).tiny) * snaps.shape[0]
        u = d.T @ a[:, 0] / jnp.where(sigma[0] > 0, sigma[0], 1)
        u = jnp.where(sigma[0] > 0, u, _orthogonal(jax.random.key(seed), jnp.zeros_like(u).at[0].set(1)))
        flat_v = d.T @ a[:, 1] / jnp.where(sigma[1] > tiny, sigma[1], 1)
        # A straight path spreads along one direction only: the second is random, orthogonal to it.
        v = jnp.where(sigma[1] > tiny, flat_v, _orthogonal(jax.random.key(seed + 1), u))
        # Scaled so span=1 reaches the path's farthest point along each.
        reach_u = jnp.max(jnp.abs(d @ u))
        reach_v = jnp.max(jnp.abs(d @ v))
        reach_v = jnp.where(reach_v > tiny, reach_v, reach_u)
        u = u * jnp.where(reach_u > 0, reach_u, 1)
        v = v * jnp.where(reach_v > 0, reach_v, 1)
        total = jnp.sum(w)
        share = jnp.where(total > 0, w[:2] / jnp.where(total > 0, total, 1), 0)
        info = jnp.stack([share[0], share[1], (sigma[0] > 0).astype(dtype), (sigma[1] > tiny).astype(dtype)])
        return u, v, info.astype(dtype)

    return jax.jit(program)


def lanczos_steps(size: int) -> int:
    """Lanczos steps for the Hessian plane: :data:`LANCZOS_STEPS`, fewer for few parameters or when
    the basis (one vector like the parameters per step) would pass :data:`BASIS_FLOATS`."""
    return max(1, min(size, LANCZOS_STEPS, BASIS_FLOATS // max(size, 1)))


def _hessian_program(objective: Objective, has_aux: bool) -> Callable[..., Any]:
    dtype = snapshot_dtype(objective.params0)
    size = sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(objective.params0))
    steps = lanczos_steps(size)

    def program(p: Any, dynamic: Any, seed: jax.Array) -> tuple[jax.Array, ...]:
        hvp = hvp_of(objective.loss_fn, has_aux, p, dynamic)
        start = _unflat(jax.random.normal(jax.random.key(seed), (size,), dtype), p)
        theta, vectors = ritz_pairs(hvp, start, steps, seed)
        order = jnp.argsort(-jnp.abs(theta))  # the two of largest magnitude
        u = _flat(jax.tree_util.tree_map(lambda x: x[order[0]], vectors), dtype)
        v = _flat(jax.tree_util.tree_map(lambda x: x[order[min(1, steps - 1)]], vectors), dtype)
        length = _norm(_flat(p, dtype))
        return _to_norm(u, length), _to_norm(v, length), jnp.stack([theta[order[0]], theta[order[min(1, steps - 1)]]])

    return jax.jit(program)


# ---------------------------------------------------------------------------- the grid


def _batch(params: Any, dynamic: Any, points: int) -> int:
    """Points evaluated at once: within :data:`GRID_BYTES`, estimated from the parameters and the data."""
    arrays = [x for x in jax.tree_util.tree_leaves((params, dynamic)) if hasattr(x, "dtype")]
    per_point = 4 * sum(math.prod(np.shape(x)) * np.dtype(x.dtype).itemsize for x in arrays)
    return max(1, min(points, GRID_BYTES // max(per_point, 1)))


def _grid_program(objective: Objective, has_aux: bool, batch: int) -> Callable[..., Any]:
    loss_fn = objective.loss_fn

    def program(
        p: Any, u: jax.Array, v: jax.Array, coords: jax.Array, snaps: jax.Array, dynamic: Any
    ) -> tuple[jax.Array, jax.Array]:
        du, dv = _unflat(u, p), _unflat(v, p)

        def at(ab: jax.Array) -> jax.Array:
            q = jax.tree_util.tree_map(
                lambda c, x, y: (c + ab[0].astype(x.dtype) * x + ab[1].astype(y.dtype) * y).astype(c.dtype), p, du, dv
            )
            out = loss_fn(q, dynamic)
            return jnp.reshape(out[0] if has_aux else out, ())

        values = jax.lax.map(at, coords, batch_size=batch)
        # Each snapshot's position on the plane: the least-squares (α, β) of θ_t - θ ≈ α u + β v.
        basis = jnp.stack([u, v], axis=1)
        d = snaps - _flat(p, snaps.dtype)[None]
        path = d @ basis @ jnp.linalg.pinv(basis.T @ basis)
        return values, path

    return jax.jit(program)


@jax.jit
def _put_row(matrix: jax.Array, j: jax.Array, row: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_index_in_dim(matrix, row.astype(matrix.dtype), j, 0)


@jax.jit
def _put_tree(matrix: jax.Array, j: jax.Array, tree: Any) -> jax.Array:
    return jax.lax.dynamic_update_index_in_dim(matrix, _flat(tree, matrix.dtype), j, 0)


def _stack(values: Sequence[Any], rows: int, size: int, dtype: Any) -> jax.Array:
    """The snapshots as a ``(rows, size)`` matrix on the device (zeros past them): one shape for any count.

    NumPy rows (a small path the history kept) are put together on the host; device rows and
    parameter pytrees on the device, one small program call each.
    """
    host = np.zeros((rows, size), dtype=np.dtype(dtype))
    on_device = []
    for j, value in enumerate(values):
        if isinstance(value, np.ndarray):
            host[j] = value.reshape(-1)
        else:
            on_device.append((j, value))
    matrix = jnp.asarray(host)
    for j, value in on_device:
        put = _put_row if isinstance(value, jax.Array) and value.ndim == 1 and value.shape[0] == size else _put_tree
        matrix = put(matrix, np.int32(j), value)
    return matrix


def landscape(
    objective: Objective,
    params: Any,
    loss: float,
    step: int,
    snapshots: tuple[Sequence[int], Sequence[Any]],
    capacity: int,
    *,
    directions: str = "random",
    grid: int = 41,
    span: float = 1.0,
    seed: int = 0,
    has_aux: bool = False,
) -> Slice:
    """The loss on a plane through ``params`` (see the module docstring).

    Args:
      objective: the function and point, split (its ``params0`` fixes the structure).
      params: the current parameters, structured like ``objective.params0``.
      loss: the loss at ``params``.
      step: the step of ``params``.
      snapshots: ``(steps, values)`` of the recorded path (parameter pytrees or flat rows),
        oldest first; the current point is added last if it is not the last snapshot.
      capacity: the most snapshots there can be (sizes the compiled programs).
      directions: ``"random"``, ``"pca"`` or ``"hessian"``.
      grid: points per side, odd.
      span: how far the grid reaches along each direction.
      seed: the random directions (and the random start of the Lanczos run).
      has_aux: the loss returns ``(loss, aux)``.

    Returns:
      The :class:`Slice`.

    Raises:
      JaxGradUsageError: a bad request, or ``"pca"`` with no path yet.
    """
    kind, grid, span = check_request(directions, grid, span)
    dtype = snapshot_dtype(objective.params0)
    size = sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(objective.params0))
    steps, values = list(snapshots[0]), list(snapshots[1])
    if not steps or steps[-1] != step:
        steps.append(step)
        values.append(params)
    rows = max(capacity + 1, len(values))
    matrix = _stack(values, rows, size, dtype)
    o, key = objective, objective.key
    seed_array = np.uint32(seed % 2**32)
    note, eigenvalues, explained = "", None, None
    if kind == "random":
        program = CACHE.get_or_build(("slice-random", key), o.refs, lambda: _random_program(o.params0))
        u, v, _ = program(params, seed_array)
    elif kind == "pca":
        if len(steps) < 2:
            raise JaxGradUsageError(
                "directions='pca' takes the principal directions of the path so far, and there is no path yet "
                "(step 0). Take some steps first (step() or run(n)), or use directions='random' or 'hessian'."
            )
        mask = np.zeros(rows, dtype=np.dtype(dtype))
        mask[: len(values)] = 1
        program = CACHE.get_or_build(("slice-pca", key, rows), o.refs, lambda: _pca_program(o.params0))
        u, v, info = program(params, matrix, mask, seed_array)
        share_u, share_v, moved, spread = fetch(info).tolist()
        if not moved:
            raise JaxGradUsageError(
                "directions='pca' takes the principal directions of the path so far, but the parameters have not "
                "moved from where they started. Take steps that move them, or use directions='random' or 'hessian'."
            )
        explained = (float(share_u), float(share_v))
        note = PCA_NOTE
        if not spread:
            note += "; the path is straight, so the second direction is random (orthogonal to the first)"
    else:
        program = CACHE.get_or_build(("slice-hessian", key, has_aux), o.refs, lambda: _hessian_program(o, has_aux))
        u, v, info = program(params, o.dynamic, seed_array)
        lam_u, lam_v = fetch(info).tolist()
        eigenvalues = (float(lam_u), float(lam_v))
    coords_1d = np.linspace(-span, span, grid)
    beta, alpha = np.meshgrid(coords_1d, coords_1d, indexing="ij")
    coords = np.stack([alpha.ravel(), beta.ravel()], axis=1).astype(np.dtype(dtype))
    batch = _batch(params, o.dynamic, grid * grid)
    program = CACHE.get_or_build(
        ("slice-grid", key, has_aux, grid, batch, rows), o.refs, lambda: _grid_program(o, has_aux, batch)
    )
    grid_values, path = program(params, u, v, coords, matrix, o.dynamic)
    grid_values = np.asarray(fetch(grid_values), dtype=np.float64).reshape(grid, grid)
    path = np.asarray(fetch(path), dtype=np.float64)[: len(values)]
    path[-1] = 0.0  # the current point is the centre (the fit gives it up to rounding)
    return Slice(
        alphas=coords_1d,
        betas=coords_1d.copy(),
        values=grid_values,
        path=path,
        path_steps=np.asarray(steps, dtype=np.int64),
        directions=kind,
        u=_unflat(u, objective.params0),
        v=_unflat(v, objective.params0),
        step=step,
        loss=float(loss),
        note=note,
        eigenvalues=eigenvalues,
        explained=explained,
    )
