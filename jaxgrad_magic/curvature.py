"""The Hessian's spectrum from Hessian-vector products alone: Lanczos, Hutchinson and SLQ.

Nothing here forms the Hessian. Every product ``H v`` is forward over reverse,
``jax.jvp(jax.grad(loss), (params,), (v,))``, which costs a few gradients and no more memory
than one, so the spectrum of a million parameters fits in a few hundred MB: what grows with
the size is the Lanczos basis, ``iterations`` vectors like the parameters.

* **Extreme eigenvalues.** Lanczos with full reorthogonalisation from a random start, in one
  ``lax.while_loop`` that checks every few steps whether the ``k`` largest and ``k`` smallest
  Ritz values have converged (residual at most ``tol`` times the largest magnitude). A
  breakdown (the Krylov space is invariant, e.g. a repeated eigenvalue) restarts from a fresh
  random vector orthogonal to the basis, so repeated eigenvalues are found as often as they
  occur.
* **Trace and density.** Stochastic Lanczos quadrature: a few Rademacher probes ``z``, a short
  Lanczos run from each. Its first coefficient is ``zᵀ H z / n``, so the probes give
  Hutchinson's trace estimate and its standard error at no extra cost; the Ritz values,
  weighted by the squared first components of their eigenvectors and broadened by a Gaussian,
  give the spectral density.

The work runs as one compiled program per function, argument signature and configuration
(cached like every other program in the package); the tolerance and the seed are traced, so
changing them compiles nothing. Only a few hundred numbers come back to the host.

Accuracy: eigenvalues are correct to about ``tol`` times the largest magnitude, usually much
better (a Ritz value's error is bounded by its residual, and in practice by its square over
the gap). In float32 the floor is about 1e-5 of the largest magnitude, set by the rounding of
the products themselves; with ``jax_enable_x64`` and float64 parameters it is about 1e-12 (a
smaller ``tol`` gets there).

No IPython, no widgets, no plots: :mod:`jaxgrad_magic.display` shows a :class:`Spectrum`, and
:mod:`jaxgrad_magic.spectrum_plot` draws its density.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .cache import CACHE
from .errors import JaxGradUsageError
from .host import fetch
from .objective import Objective

DEFAULT_K = 3
"""Eigenvalues at each end, unless asked for more (fewer when there are fewer parameters)."""
DEFAULT_TOL = 1e-3
"""Residual of the extreme Ritz values, relative to the largest magnitude, that counts as converged."""
DEFAULT_PROBES = 8
"""Rademacher probes of the trace and density (the trace's standard error falls as 1/sqrt(probes))."""
PROBE_STEPS = 32
"""Lanczos steps of each density probe: the number of Ritz values each contributes."""
MAX_ITERATIONS = 100
"""The most Lanczos steps of the extreme run, unless memory bounds it lower (see :func:`iterations_for`)."""
BASIS_FLOATS = 1 << 26
"""Numbers the Lanczos basis may hold (256 MB in float32) before the run is shortened to fit."""
GRID = 160
"""Points of the density's grid."""
CHECK_EVERY = 8
"""Lanczos steps between two convergence checks of the extreme run."""


class Density(NamedTuple):
    """The spectral density from stochastic Lanczos quadrature, on a grid.

    Attributes:
      grid: eigenvalue positions, evenly spaced over the spectrum with a margin.
      values: the density there; it integrates to about 1 over the grid (a density of
        eigenvalues per unit, divided by their number).
      sigma: the width of the Gaussian each Ritz value was broadened by.
    """

    grid: np.ndarray
    values: np.ndarray
    sigma: float


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class Spectrum:
    """What Lanczos and stochastic quadrature found out about a Hessian, never formed.

    Attributes:
      top: the ``k`` largest eigenvalues, descending.
      bottom: the ``k`` smallest eigenvalues, ascending.
      top_error, bottom_error: each one's residual norm: an eigenvalue of the Hessian lies
        within it (the error is usually far smaller).
      trace: Hutchinson's estimate of the trace, from Rademacher probes.
      trace_error: its standard error (the spread of the probes over the square root of their number).
      density: the spectral density (see :class:`Density`).
      hvps: how many Hessian-vector products were computed.
      k: eigenvalues at each end.
      tol: the convergence tolerance of the extreme Ritz values.
      converged: whether they reached ``tol`` (else the run stopped at ``iterations``).
      iterations: Lanczos steps of the extreme run.
      probes: Rademacher probes of the trace and density.
      size: the number of parameters (the Hessian is ``size`` x ``size``).
      dtype: the dtype the Lanczos vectors were kept in.
      fn_name: the function whose Hessian this is.
    """

    top: np.ndarray
    bottom: np.ndarray
    top_error: np.ndarray
    bottom_error: np.ndarray
    trace: float
    trace_error: float
    density: Density
    hvps: int
    k: int
    tol: float
    converged: bool
    iterations: int
    probes: int
    size: int
    dtype: str
    fn_name: str = "f"

    @property
    def noise(self) -> float:
        """How far from zero an eigenvalue must be to count as nonzero: rounding, not curvature, below."""
        scale = max(float(np.max(np.abs(self.top))), float(np.max(np.abs(self.bottom))))
        return 64 * float(np.finfo(self.dtype).eps) * scale

    @property
    def saddle(self) -> bool:
        """True when the smallest eigenvalue is negative: a direction in which ``f`` curves down.

        The smallest Ritz value is never below the smallest eigenvalue, so a negative one
        proves a saddle (or a maximum), up to rounding.
        """
        return float(self.bottom[0]) < -self.noise

    @property
    def condition(self) -> float | None:
        """``top[0] / bottom[0]`` when both ends are surely positive, else None."""
        low = float(self.bottom[0])
        if low - float(self.bottom_error[0]) <= self.noise or float(self.top[0]) <= 0:
            return None
        return float(self.top[0]) / low

    def __str__(self) -> str:
        from .display import render_spectrum_text

        return render_spectrum_text(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("Spectrum(...)" if cycle else str(self))

    def _repr_html_(self) -> str:
        from .display import render_spectrum_html

        return render_spectrum_html(self)

    def __repr__(self) -> str:
        return (
            f"Spectrum(top={_numbers(self.top)}, bottom={_numbers(self.bottom)}, trace={self.trace:.6g}, "
            f"trace_error={self.trace_error:.3g}, hvps={self.hvps}, converged={self.converged})"
        )


def _numbers(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in np.asarray(values, dtype=np.float64)) + "]"


class Plan(NamedTuple):
    """What shapes a spectrum program: everything static under ``jax.jit``.

    Attributes:
      k: eigenvalues at each end.
      iterations: the most Lanczos steps of the extreme run.
      probes: Rademacher probes (0: no trace, no density).
      probe_steps: Lanczos steps per probe.
      grid: points of the density's grid.
      both_ends: check the smallest eigenvalues for convergence too (the sharpness needs only the top).
    """

    k: int
    iterations: int
    probes: int
    probe_steps: int
    grid: int = GRID
    both_ends: bool = True


# ---------------------------------------------------------------------------- checks


def check_request(k: Any, tol: Any, size: int, probes: Any = DEFAULT_PROBES, iterations: Any = None) -> Plan:
    """``k``, ``tol``, ``probes`` and ``iterations`` checked against ``size`` parameters, as a :class:`Plan`.

    Args:
      k: eigenvalues at each end, or None for :data:`DEFAULT_K` (fewer when ``size`` is smaller).
      tol: the convergence tolerance, between 0 and 1.
      size: the number of parameters.
      probes: Rademacher probes for the trace and density, at least 2.
      iterations: the most Lanczos steps, or None for :func:`iterations_for`.

    Raises:
      JaxGradUsageError: a value out of range, said with what to use instead.
    """
    if k is None:
        k = min(DEFAULT_K, size)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise JaxGradUsageError(
            f"k={k!r} must be a whole number of at least 1: how many eigenvalues to find at each end of the "
            "spectrum (k=3 gives the three largest and the three smallest)."
        )
    if k > size:
        raise JaxGradUsageError(
            f"k={k} asks for more eigenvalues than the Hessian has: it is {size}x{size} (one row per parameter). "
            f"Use k={size} or less; for all of them, the dense Hessian (without spectrum=True) is cheap at this size."
        )
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating) or not 0 < tol < 1:
        raise JaxGradUsageError(
            f"tol={tol!r} must be a number between 0 and 1: the residual of the extreme eigenvalues, relative to "
            "the largest, at which Lanczos stops (tol=1e-3 is the default; smaller costs more products)."
        )
    if isinstance(probes, bool) or not isinstance(probes, int | np.integer) or probes < 2:
        raise JaxGradUsageError(
            f"probes={probes!r} must be a whole number of at least 2: the Rademacher vectors the trace and the "
            "density are averaged over (their spread gives the trace's standard error). The default is 8."
        )
    if iterations is None:
        steps = iterations_for(size, int(k))
    elif isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < k:
        raise JaxGradUsageError(
            f"iterations={iterations!r} must be a whole number of at least k={k}: the most Lanczos steps "
            "(Hessian-vector products) of the extreme run."
        )
    else:
        steps = min(int(iterations), size)
    return Plan(int(k), steps, int(probes), min(PROBE_STEPS, size))


def iterations_for(size: int, k: int) -> int:
    """The most Lanczos steps for ``size`` parameters: :data:`MAX_ITERATIONS`, fewer when the basis would
    hold more than :data:`BASIS_FLOATS` numbers, never fewer than ``2k + 24``, and never more than ``size``."""
    return min(size, max(2 * k + 24, min(MAX_ITERATIONS, BASIS_FLOATS // max(size, 1))))


def check_scalar(objective: Objective, has_aux: bool, fn_name: str, what: str) -> None:
    """Refuse a function that does not return one real number: it has no Hessian matrix.

    Raises:
      JaxGradUsageError: the output is not a real scalar.
    """
    out = jax.eval_shape(objective.loss_fn, objective.params0, objective.dynamic)
    if has_aux and isinstance(out, tuple | list) and len(out) == 2:
        out = out[0]
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape == () and dtype is not None and jnp.issubdtype(dtype, jnp.floating):
        return
    got = f"shape {shape} and dtype {dtype}" if shape is not None else f"a {type(out).__name__}"
    raise JaxGradUsageError(
        f"{what} needs {fn_name} to return one real number (a loss), but it returns {got}. The spectrum is that "
        "of the Hessian of a scalar: reduce the output first (e.g. `return jnp.sum(out ** 2)`), or return "
        "`(loss, extra)` with aux=True."
    )


def _explained(call: Callable[[], Any], fn_name: str) -> Any:
    """Run ``call``; the two ways a function can fail the spectrum's program become teaching errors.

    Other errors, the function's own included, pass through unchanged.
    """
    try:
        return call()
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as exc:
        first = next(iter(str(exc).splitlines()), "")
        raise JaxGradUsageError(
            f"{fn_name} uses Python control flow on a traced value (an `if`, `while`, `bool()`, `float()` or "
            "`int()` on an input-dependent value). The spectrum is one compiled program whose Lanczos iterations "
            f"are lax loops, so {fn_name} must trace, with or without jit=False: write the branch with "
            f"`jnp.where(cond, a, b)` or `jax.lax.cond(cond, f_true, f_false, x)`. JAX said: {first}"
        ) from None
    except TypeError as exc:
        if "custom_vjp" not in str(exc):
            raise
        raise JaxGradUsageError(
            f"{fn_name} (or a function it calls) is a jax.custom_vjp, which defines only a reverse-mode rule, and "
            "the Hessian-vector products are forward over reverse (jax.jvp of jax.grad). Define the rule with "
            "jax.custom_jvp instead (JAX derives reverse mode from it, so both modes work), or form the dense "
            "Hessian by reverse over reverse, `jax.jacrev(jax.jacrev(f))(x)`, where it fits in memory."
        ) from None


# ---------------------------------------------------------------------------- vectors as pytrees


def _acc_dtype(params: Any) -> Any:
    """The dtype the Lanczos vectors are kept in: float32, or the parameters' own when wider."""
    return jnp.result_type(jnp.float32, *(x.dtype for x in jax.tree_util.tree_leaves(params)))


def _dot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _scale(tree: Any, c: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda x: x * c.astype(x.dtype), tree)


def _axpy(c: jax.Array, x: Any, y: Any) -> Any:
    """``c * x + y``."""
    return jax.tree_util.tree_map(lambda a, b: c.astype(a.dtype) * a + b, x, y)


def _coefficients(basis: Any, w: Any) -> jax.Array:
    """``Qᵀ w`` for a basis whose leaves carry the vectors along a leading axis."""
    return sum(
        jnp.tensordot(q.reshape(q.shape[0], -1), x.reshape(-1), axes=1)
        for q, x in zip(jax.tree_util.tree_leaves(basis), jax.tree_util.tree_leaves(w), strict=True)
    )


def _orthogonalise(basis: Any, w: Any) -> Any:
    """``w - Q Qᵀ w``: one pass of classical Gram-Schmidt against every stored vector (unused rows are 0)."""
    c = _coefficients(basis, w)
    return jax.tree_util.tree_map(lambda q, x: x - jnp.tensordot(c.astype(q.dtype), q, axes=1), basis, w)


BLOCK = 16
"""Basis vectors a reorthogonalisation takes at a time: it reads only the blocks in use."""


def _orthogonalise_used(basis: Any, w: Any, used: jax.Array) -> Any:
    """``w`` made orthogonal to the first ``used`` basis vectors, a block of :data:`BLOCK` at a time.

    Reading only the blocks in use halves the work of a run against reading the whole basis at
    every step, and block by block (modified Gram-Schmidt between blocks) is at least as exact.
    """
    rows = jax.tree_util.tree_leaves(basis)[0].shape[0]
    size = min(BLOCK, rows)

    def block(i: jax.Array, x: Any) -> Any:
        start = jnp.minimum(i * size, rows - size)  # the last block overlaps the one before: no harm
        part = jax.tree_util.tree_map(lambda q: jax.lax.dynamic_slice_in_dim(q, start, size, 0), basis)
        return _orthogonalise(part, x)

    return jax.lax.fori_loop(0, (used + size - 1) // size, block, w)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _stream(seed: jax.Array, number: Any) -> jax.Array:
    """A seed of its own for stream ``number`` of ``seed`` (a restart at step ``j``, probe ``p``)."""
    return _mix(jnp.asarray(seed, jnp.uint32) + jnp.asarray(number).astype(jnp.uint32) * np.uint32(0x9E3779B9))


def _signs(seed: jax.Array, like: Any, dtype: Any) -> Any:
    """A Rademacher vector (independent ±1 entries) shaped like ``like``, a function of ``seed`` alone.

    Counter-based hashing of each entry's index rather than ``jax.random``: the vectors are drawn
    inside nested loops, where every ``jax.random`` draw adds about half a second of XLA compile
    time on a CPU (3.4 s of a 5.6 s program), while this is a few integer operations per entry.
    """
    seed = _mix(jnp.asarray(seed, jnp.uint32) * np.uint32(0x9E3779B9) + np.uint32(0x7F4A7C15))
    out = []
    for i, x in enumerate(jax.tree_util.tree_leaves(like)):
        index = jax.lax.iota(jnp.uint32, max(math.prod(x.shape), 1))[: math.prod(x.shape)].reshape(x.shape)
        bits = _mix(_mix(index * np.uint32(0x9E3779B9) + seed) ^ np.uint32(i * 0x632BE5AB % 2**32))
        out.append(jnp.where(bits >> 31 == 0, 1, -1).astype(dtype))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)


def _constrain(tree: Any, shardings: Any) -> Any:
    """Pin each leaf to its sharding where one is known (None: leave it to the compiler)."""
    if shardings is None:
        return tree
    return jax.tree_util.tree_map(
        lambda x, s: x if s is None else jax.lax.with_sharding_constraint(x, s),
        tree,
        shardings,
        is_leaf=lambda s: s is None,
    )


def _basis_shardings(params: Any) -> Any:
    """For each parameter sharded by name, the sharding of its stack of Lanczos vectors (the stack axis whole).

    Without it the compiler may keep the whole basis on every device.
    """

    def stacked(x: Any) -> Any:
        s = getattr(x, "sharding", None)
        if isinstance(s, NamedSharding) and not s.is_fully_replicated:
            return NamedSharding(s.mesh, PartitionSpec(None, *s.spec))
        return None

    return jax.tree_util.tree_map(stacked, params)


# ---------------------------------------------------------------------------- Lanczos


class _Krylov(NamedTuple):
    """A Lanczos run in progress: vector ``j`` of the basis is the one step ``j`` multiplies."""

    basis: Any  # leaves (steps + 1, *shape): the orthonormal vectors, unused rows 0
    alpha: jax.Array  # (steps,): the tridiagonal's diagonal
    beta: jax.Array  # (steps,): beta[j] couples vectors j and j + 1 (0 after a restart)
    scale: jax.Array  # the largest |alpha| + beta so far: the size of H seen
    count: jax.Array  # steps done


def _start(v0: Any, steps: int, dtype: Any, basis_shardings: Any) -> _Krylov:
    """A run of at most ``steps`` steps from ``v0`` (normalised here)."""
    v0 = _scale(v0, 1 / jnp.sqrt(_dot(v0, v0)))
    basis = jax.tree_util.tree_map(lambda x: jnp.zeros((steps + 1, *x.shape), dtype).at[0].set(x), v0)
    basis = _constrain(basis, basis_shardings)
    zeros = jnp.zeros(steps, dtype)
    return _Krylov(basis, zeros, zeros, jnp.zeros((), dtype), jnp.zeros((), jnp.int32))


def _step(hvp: Callable[[Any], Any], seed: jax.Array, like: Any, state: _Krylov) -> _Krylov:
    """One Lanczos step: multiply, three-term recurrence, then one full reorthogonalisation.

    The full pass keeps the basis orthogonal in float32 over a hundred steps, where the
    three-term recurrence alone would find converged eigenvalues again as ghosts.
    """
    j = state.count
    dtype = state.alpha.dtype
    row = functools.partial(jax.lax.dynamic_index_in_dim, keepdims=False)
    q = jax.tree_util.tree_map(lambda b: row(b, j), state.basis)
    w = jax.tree_util.tree_map(lambda x: x.astype(dtype), hvp(q))
    a = _dot(q, w)
    previous = state.beta[jnp.maximum(j - 1, 0)] * (j > 0)
    q_prev = jax.tree_util.tree_map(lambda b: row(b, jnp.maximum(j - 1, 0)), state.basis)
    w = _axpy(-a, q, _axpy(-previous, q_prev, w))
    w = _orthogonalise_used(state.basis, w, j + 1)
    b = jnp.sqrt(_dot(w, w))
    scale = jnp.maximum(state.scale, jnp.abs(a) + b)
    # Below this the next direction is rounding noise: the Krylov space is invariant.
    tiny = jnp.finfo(dtype).eps ** (2 / 3) * scale

    def restart(_: Any) -> tuple[Any, jax.Array]:
        # A fresh random direction, orthogonal to the basis: H may have more eigenvalues than
        # the start vector reaches (a repeated one is reached once).
        r = _signs(_stream(seed, j), like, dtype)
        r = _orthogonalise(state.basis, _orthogonalise(state.basis, r))
        norm = jnp.sqrt(_dot(r, r))
        return _scale(r, 1 / jnp.where(norm > 0, norm, 1)), jnp.zeros((), dtype)

    def carry_on(_: Any) -> tuple[Any, jax.Array]:
        return _scale(w, 1 / b), b

    q_next, b = jax.lax.cond(b <= tiny, restart, carry_on, None)
    basis = jax.tree_util.tree_map(
        lambda stack, v: jax.lax.dynamic_update_index_in_dim(stack, v.astype(stack.dtype), j + 1, 0),
        state.basis,
        q_next,
    )
    return _Krylov(basis, state.alpha.at[j].set(a), state.beta.at[j].set(b), scale, j + 1)


def _ritz(state: _Krylov) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The Ritz values (ascending, the first ``count`` real), their eigenvectors, and the residual norms.

    The tridiagonal is kept at its full size: rows not reached yet get a diagonal entry
    above any real Ritz value (Gershgorin: ``|theta| <= 3 max(|alpha|, beta)``) and no coupling,
    so they sort last and the first ``count`` eigenvalues are the real ones.
    """
    steps = state.alpha.shape[0]
    idx = jnp.arange(steps)
    used = idx < state.count
    big = 4 * jnp.max(jnp.where(used, jnp.maximum(jnp.abs(state.alpha), state.beta), 0)) + 1
    diag = jnp.where(used, state.alpha, big)
    off = jnp.where(idx[:-1] < state.count - 1, state.beta[:-1], 0)
    t = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
    theta, vectors = jnp.linalg.eigh(t)
    last = jnp.maximum(state.count - 1, 0)
    residual = state.beta[last] * jnp.abs(vectors[last])
    return theta, vectors, residual


def ritz_pairs(hvp: Callable[[Any], Any], v0: Any, steps: int, seed: jax.Array) -> tuple[jax.Array, Any]:
    """``steps`` Lanczos steps from ``v0`` (no convergence test) and all their Ritz pairs.

    For a fixed small number of extreme eigenvectors, such as the Hessian plane of
    :mod:`jaxgrad_magic.slices`. A breakdown restarts from a fresh random direction (``seed``),
    so all ``steps`` values are real.

    Returns:
      The Ritz values, ascending, and their vectors: a pytree like ``v0`` whose leaves have a
      leading axis of ``steps`` (vector ``i`` for value ``i``).
    """
    state = _start(v0, steps, _acc_dtype(v0), None)
    state = jax.lax.fori_loop(0, steps, lambda _, s: _step(hvp, seed, v0, s), state)
    theta, vectors, _ = _ritz(state)
    return theta, jax.tree_util.tree_map(lambda b: jnp.tensordot(vectors.T, b[:-1], axes=1), state.basis)


def _ends(theta: jax.Array, residual: jax.Array, count: jax.Array, k: int) -> tuple[jax.Array, ...]:
    """The ``k`` largest Ritz values (descending) and the ``k`` smallest (ascending), with residuals."""
    top_idx = jnp.maximum(count - 1 - jnp.arange(k), 0)
    bottom_idx = jnp.minimum(jnp.arange(k), jnp.maximum(count - 1, 0))
    return theta[top_idx], residual[top_idx], theta[bottom_idx], residual[bottom_idx]


def _converged(state: _Krylov, k: int, tol: jax.Array, both_ends: bool) -> jax.Array:
    theta, _, residual = _ritz(state)
    top, top_res, bottom, bottom_res = _ends(theta, residual, state.count, k)
    size = jnp.maximum(jnp.max(jnp.abs(top)), jnp.max(jnp.abs(bottom)))
    ok = jnp.all(top_res <= tol * size)
    if both_ends:
        ok &= jnp.all(bottom_res <= tol * size)
    return ok & (state.count >= k)


def extreme(
    hvp: Callable[[Any], Any],
    v0: Any,
    seed: jax.Array,
    tol: jax.Array,
    plan: Plan,
    basis_shardings: Any,
) -> tuple[_Krylov, jax.Array]:
    """Lanczos from ``v0`` until the extreme Ritz values converge, or ``plan.iterations`` steps.

    Returns:
      The run, and whether it converged.
    """
    dtype = _acc_dtype(v0)
    state = _start(v0, plan.iterations, dtype, basis_shardings)
    step = functools.partial(_step, hvp, seed, v0)

    def cond(carry: tuple[_Krylov, jax.Array]) -> jax.Array:
        state, done = carry
        return (state.count < plan.iterations) & ~done

    def body(carry: tuple[_Krylov, jax.Array]) -> tuple[_Krylov, jax.Array]:
        state, _ = carry
        stop = jnp.minimum(state.count + CHECK_EVERY, plan.iterations)
        state = jax.lax.fori_loop(state.count, stop, lambda _, s: step(s), state)
        return state, _converged(state, plan.k, tol, plan.both_ends)

    state, done = jax.lax.while_loop(cond, body, (state, jnp.zeros((), bool)))
    return state, done


def quadrature(
    hvp: Callable[[Any], Any], like: Any, seed: jax.Array, plan: Plan
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Stochastic Lanczos quadrature: ``plan.probes`` Rademacher probes, ``plan.probe_steps`` steps each.

    The three-term recurrence alone, without a basis: in finite precision Lanczos loses
    orthogonality and finds converged Ritz values again, but the copies split their weight, so
    the quadrature, and the density made from it, stay right (Ubaru, Chen and Saad 2017). A
    breakdown (the Krylov space is invariant) makes the quadrature exact; the steps after it add
    Ritz values of weight zero.

    Returns:
      Per probe: the Ritz values ``(probes, steps)``, their weights (squared first components of
      their eigenvectors, summing to 1 per probe) and ``zᵀ H z`` (Hutchinson's sample of the trace).
    """
    dtype = _acc_dtype(like)
    n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(like))
    steps = plan.probe_steps

    def lanczos(j: jax.Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        q_prev, q, b_prev, scale, alpha, beta = carry
        w = jax.tree_util.tree_map(lambda x: x.astype(dtype), hvp(q))
        a = _dot(q, w)
        w = _axpy(-a, q, _axpy(-b_prev, q_prev, w))
        b = jnp.sqrt(_dot(w, w))
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        ended = b <= jnp.finfo(dtype).eps ** (2 / 3) * scale
        b = jnp.where(ended, 0, b)
        q_next = _scale(w, jnp.where(ended, 0, 1 / jnp.where(ended, 1, b)))
        return q, q_next, b, scale, alpha.at[j].set(a), beta.at[j].set(b)

    def probe(_: None, number: jax.Array) -> tuple[None, tuple[jax.Array, jax.Array, jax.Array]]:
        z = _signs(_stream(seed, number), like, dtype)
        q = _scale(z, 1 / jnp.sqrt(jnp.asarray(n, dtype)))
        zeros = jnp.zeros(steps, dtype)
        start = (jax.tree_util.tree_map(jnp.zeros_like, q), q, jnp.zeros((), dtype), jnp.zeros((), dtype), zeros, zeros)
        *_, alpha, beta = jax.lax.fori_loop(0, steps, lanczos, start)
        t = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
        theta, vectors = jnp.linalg.eigh(t)
        # q1 = z / sqrt(n) with |z_i| = 1, so alpha_0 = zᵀ H z / n.
        return None, (theta, vectors[0] ** 2, alpha[0] * n)

    _, (theta, weights, samples) = jax.lax.scan(probe, None, jnp.arange(plan.probes, dtype=jnp.uint32))
    return theta, weights, samples


def density(theta: jax.Array, weights: jax.Array, lo: jax.Array, hi: jax.Array, points: int) -> tuple[jax.Array, ...]:
    """Every probe's Ritz values as Gaussians of their weights, averaged, on a grid over ``[lo, hi]``.

    Returns:
      The grid, the density on it, and the Gaussians' width.
    """
    span = jnp.maximum(hi - lo, jnp.maximum(jnp.abs(hi), jnp.abs(lo)) * 1e-3 + jnp.finfo(theta.dtype).tiny ** 0.25)
    sigma = span / 100
    grid = jnp.linspace(lo - 6 * sigma, hi + 6 * sigma, points)
    z = (grid[:, None, None] - theta[None]) / sigma
    gauss = jnp.exp(-0.5 * z**2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return grid, jnp.einsum("gpj,pj->g", gauss, weights) / theta.shape[0], sigma


# ---------------------------------------------------------------------------- programs


def hvp_of(loss_fn: Callable[[Any, Any], Any], has_aux: bool, params: Any, dynamic: Any) -> Callable[[Any], Any]:
    """``v -> H v`` at ``params``, forward over reverse: ``jax.jvp`` of ``jax.grad``.

    Args:
      loss_fn: ``(params, dynamic) -> loss`` (or ``(loss, aux)`` with ``has_aux``).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      params: where the Hessian is taken.
      dynamic: the loss's other arguments.

    Returns:
      The product, in the structure and dtypes of ``params``; ``v`` may be in a wider dtype.
    """
    grad = jax.grad(loss_fn, has_aux=has_aux)

    def gradient(p: Any) -> Any:
        g = grad(p, dynamic)
        return g[0] if has_aux else g

    def product(v: Any) -> Any:
        tangent = jax.tree_util.tree_map(lambda t, p: t.astype(p.dtype), v, params)
        return jax.jvp(gradient, (params,), (tangent,))[1]

    return product


def _packed_length(plan: Plan) -> int:
    return 4 * plan.k + 5 + 2 * plan.grid


def _spectrum_program(
    loss_fn: Callable[[Any, Any], Any], has_aux: bool, plan: Plan, basis_shardings: Any
) -> Callable[..., tuple[Any, Any, jax.Array]]:
    """``(params, dynamic, seed, tol) -> (loss, aux, packed numbers)``, to be jitted."""

    def program(params: Any, dynamic: Any, seed: jax.Array, tol: jax.Array) -> tuple[Any, Any, jax.Array]:
        out = loss_fn(params, dynamic)
        loss, aux = out if has_aux else (out, None)
        hvp = hvp_of(loss_fn, has_aux, params, dynamic)
        dtype = _acc_dtype(params)
        v0 = _signs(_stream(seed, -1), params, dtype)
        state, done = extreme(hvp, v0, _stream(seed, -2), tol.astype(dtype), plan, basis_shardings)
        theta, _, residual = _ritz(state)
        top, top_res, bottom, bottom_res = _ends(theta, residual, state.count, plan.k)
        ritz, weights, samples = quadrature(hvp, params, _stream(seed, -3), plan)
        trace = jnp.mean(samples)
        trace_error = jnp.std(samples, ddof=1) / jnp.sqrt(plan.probes)
        weighty = weights > jnp.finfo(dtype).eps  # the steps after a breakdown weigh nothing
        lo = jnp.minimum(bottom[0], jnp.min(jnp.where(weighty, ritz, jnp.inf)))
        hi = jnp.maximum(top[0], jnp.max(jnp.where(weighty, ritz, -jnp.inf)))
        grid, values, sigma = density(ritz, weights, lo, hi, plan.grid)
        hvps = state.count + plan.probes * plan.probe_steps
        packed = jnp.concatenate(
            [
                top,
                top_res,
                bottom,
                bottom_res,
                jnp.stack([trace, trace_error, sigma]).astype(dtype),
                jnp.stack([hvps, state.count]).astype(dtype),
                grid.astype(dtype),
                values.astype(dtype),
            ]
        )
        return loss, aux, jnp.concatenate([packed, done.astype(dtype)[None]])

    return program


def _program(objective: Objective, has_aux: bool, plan: Plan, tag: str, make: Callable[..., Any]) -> Any:
    o = objective
    return CACHE.get_or_build(
        ("curvature", tag, o.key, plan),
        o.refs,
        lambda: jax.jit(make(o.loss_fn, has_aux, plan, _basis_shardings(o.params0))),
    )


class Request(NamedTuple):
    """What a spectrum is asked for with (``spectrum=True`` on ``%hess``, or :func:`jaxgrad_magic.spectrum`).

    Attributes:
      k: eigenvalues at each end (None: :data:`DEFAULT_K`, fewer when there are fewer parameters).
      tol: the extreme Ritz values' residual, relative to the largest magnitude, that ends the run.
      probes: Rademacher probes for the trace and the density.
      iterations: the most Lanczos steps of the extreme run (None: :func:`iterations_for`).
      seed: the random start and probes (the same seed gives the same numbers).
    """

    k: int | None = None
    tol: float = DEFAULT_TOL
    probes: int = DEFAULT_PROBES
    iterations: int | None = None
    seed: int = 0


class Evaluated(NamedTuple):
    """A spectrum and the function's own output at the point."""

    value: Any
    aux: Any
    spectrum: Spectrum


def size_of(params: Any) -> int:
    """The number of parameters: the Hessian is this many rows square."""
    return sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params))


def spectrum(objective: Objective, request: Request, *, has_aux: bool = False, fn_name: str = "f") -> Evaluated:
    """The spectrum of the Hessian of ``objective``'s loss at its starting parameters.

    Args:
      objective: the function and point, split into parameters and the rest (see
        :func:`jaxgrad_magic.objective.make_objective`).
      request: ``k``, the tolerance, the probes, the most iterations and the seed.
      has_aux: the loss returns ``(loss, aux)``.
      fn_name: the name to show.

    Returns:
      The loss and aux at the point, and the :class:`Spectrum`.

    Raises:
      JaxGradUsageError: a bad ``k``, ``tol``, ``probes`` or ``iterations``, or a loss that is not a scalar.
    """
    size = size_of(objective.params0)
    plan = check_request(request.k, request.tol, size, request.probes, request.iterations)
    _explained(lambda: check_scalar(objective, has_aux, fn_name, "The spectrum"), fn_name)
    seed = _check_seed(request.seed)
    program = _program(objective, has_aux, plan, "spectrum", _spectrum_program)
    loss, aux, packed = _explained(
        lambda: program(objective.params0, objective.dynamic, seed, float(request.tol)), fn_name
    )
    numbers = fetch(packed).astype(np.float64)
    k, g = plan.k, plan.grid
    parts = np.split(numbers, np.cumsum([k, k, k, k, 3, 2, g, g]))
    top, top_res, bottom, bottom_res, (trace, trace_error, sigma), (hvps, steps), grid, values, (done,) = parts
    result = Spectrum(
        top=top,
        bottom=bottom,
        top_error=top_res,
        bottom_error=bottom_res,
        trace=float(trace),
        trace_error=float(trace_error),
        density=Density(grid, values, float(sigma)),
        hvps=int(hvps),
        k=k,
        tol=float(request.tol),
        converged=bool(done) or int(steps) >= size,  # a run over every direction is exact
        iterations=int(steps),
        probes=plan.probes,
        size=size,
        dtype=np.dtype(_acc_dtype(objective.params0)).name,
        fn_name=fn_name,
    )
    return Evaluated(loss, aux, result)


def _check_seed(seed: Any) -> np.uint32:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise JaxGradUsageError(f"seed={seed!r} must be a whole number (the same seed gives the same numbers).")
    return np.uint32(int(seed) % 2**32)


# ---------------------------------------------------------------------------- sharpness


@dataclass(frozen=True)
class Sharpness:
    """The largest eigenvalue of a Hessian, found by Lanczos.

    Attributes:
      value: λmax (a lower bound, within ``error`` of an eigenvalue).
      error: its residual norm.
      hvps: Hessian-vector products used.
      converged: whether the residual reached the tolerance.
      vector: the Ritz vector (on the device, like the parameters): a warm start next time.
    """

    value: float
    error: float
    hvps: int
    converged: bool
    vector: Any = field(repr=False)


SHARPNESS_ITERATIONS = 40
"""The most Lanczos steps of one sharpness measurement (a warm start needs far fewer)."""


def top_eigenpair(
    hvp: Callable[[Any], Any], v0: Any, steps: int, tol: jax.Array, basis_shardings: Any
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, Any]:
    """λmax by Lanczos from ``v0``: at most ``steps`` steps, until its residual is below ``tol·|λmax|``.

    Leaner than :func:`extreme`, for the stepper's meter: the three-term recurrence alone, since
    the largest Ritz value converges without reorthogonalisation (lost orthogonality only adds
    copies of it), one loop with a check after every step, and no restarts: a breakdown means
    the Krylov space is invariant, and its largest Ritz value is then exact. The basis is kept
    only to form the Ritz vector, the next measurement's start. It compiles in a fraction of
    the time of the full run.

    Returns:
      λmax, its residual, the steps taken, whether it converged, and the Ritz vector.
    """
    dtype = _acc_dtype(v0)
    state = _start(v0, steps, dtype, basis_shardings)
    row = functools.partial(jax.lax.dynamic_index_in_dim, keepdims=False)

    def body(carry: tuple[_Krylov, jax.Array, jax.Array]) -> tuple[_Krylov, jax.Array, jax.Array]:
        s = carry[0]
        j = s.count
        q = jax.tree_util.tree_map(lambda b: row(b, j), s.basis)
        q_prev = jax.tree_util.tree_map(lambda b: row(b, jnp.maximum(j - 1, 0)), s.basis)
        w = jax.tree_util.tree_map(lambda x: x.astype(dtype), hvp(q))
        a = _dot(q, w)
        w = _axpy(-a, q, _axpy(-s.beta[jnp.maximum(j - 1, 0)] * (j > 0), q_prev, w))
        b = jnp.sqrt(_dot(w, w))
        scale = jnp.maximum(s.scale, jnp.abs(a) + b)
        ended = b <= jnp.finfo(dtype).eps ** (2 / 3) * scale  # invariant: what was found is exact
        b = jnp.where(ended, 0, b)
        q_next = _scale(w, jnp.where(ended, 0, 1 / jnp.where(ended, 1, b)))
        basis = jax.tree_util.tree_map(
            lambda stack, v: jax.lax.dynamic_update_index_in_dim(stack, v.astype(stack.dtype), j + 1, 0),
            s.basis,
            q_next,
        )
        s = _Krylov(basis, s.alpha.at[j].set(a), s.beta.at[j].set(b), scale, j + 1)
        # One eigendecomposition per step, kept for after the loop: each one in the program costs
        # a quarter of a second of compile time on a CPU, and the tridiagonal is tiny.
        theta, vectors, residual = _ritz(s)
        top = s.count - 1
        found = jnp.concatenate([jnp.stack([theta[top], residual[top]]), vectors[:, top]])
        return s, ended | (residual[top] <= tol * jnp.abs(theta[top])), found

    def cond(carry: tuple[_Krylov, jax.Array, jax.Array]) -> jax.Array:
        s, done, _ = carry
        return (s.count < steps) & ~done

    found = jnp.zeros(steps + 2, dtype)
    state, done, found = jax.lax.while_loop(cond, body, (state, jnp.zeros((), bool), found))
    vector = jax.tree_util.tree_map(lambda b: jnp.tensordot(found[2:], b[:-1], axes=1), state.basis)
    return found[0], found[1], state.count, done, vector


def _sharpness_program(
    loss_fn: Callable[[Any, Any], Any], has_aux: bool, plan: Plan, shardings: Any
) -> Callable[..., tuple[jax.Array, Any]]:
    """``(params, dynamic, start, warm, seed, tol) -> (numbers, Ritz vector)``, to be jitted."""

    def program(
        params: Any, dynamic: Any, start: Any, warm: jax.Array, seed: jax.Array, tol: jax.Array
    ) -> tuple[jax.Array, Any]:
        hvp = hvp_of(loss_fn, has_aux, params, dynamic)
        dtype = _acc_dtype(params)
        fresh = _signs(_stream(seed, -1), params, dtype)
        # A warm start: last time's top vector, nudged so it is never exactly an eigenvector of H.
        v0 = jax.tree_util.tree_map(lambda s, f: jnp.where(warm, s.astype(dtype) + 1e-3 * f, f), start, fresh)
        value, residual, count, done, vector = top_eigenpair(hvp, v0, plan.iterations, tol.astype(dtype), shardings)
        vector = jax.tree_util.tree_map(lambda v, p: v.astype(p.dtype), vector, params)
        return jnp.stack([value, residual, count.astype(dtype), done.astype(dtype)]), vector

    return program


def sharpness(
    objective: Objective,
    params: Any,
    *,
    has_aux: bool = False,
    tol: float = DEFAULT_TOL,
    start: Any = None,
    seed: int = 0,
    fn_name: str = "f",
) -> Sharpness:
    """λmax of the Hessian of ``objective``'s loss at ``params``, by Lanczos on Hessian-vector products.

    Args:
      objective: the function and point (its ``params0`` fixes the structure and the program).
      params: where to measure, shaped like ``objective.params0``.
      has_aux: the loss returns ``(loss, aux)``.
      tol: the residual, relative to λmax, that ends the run.
      start: a vector to start from (the last measurement's), or None for a random one.
      seed: the random start.
      fn_name: the function's name, for messages.

    Returns:
      The :class:`Sharpness`.

    Raises:
      JaxGradUsageError: the function cannot be differentiated forward over reverse, or does not trace.
    """
    size = size_of(objective.params0)
    steps = min(size, SHARPNESS_ITERATIONS)
    plan = Plan(1, steps, 0, 0, 0, both_ends=False)
    program = _program(objective, has_aux, plan, "sharpness", _sharpness_program)
    warm = start is not None
    seed_ = _check_seed(seed)
    numbers, vector = _explained(
        lambda: program(params, objective.dynamic, start if warm else params, np.bool_(warm), seed_, float(tol)),
        fn_name,
    )
    value, error, count, done = fetch(numbers).astype(np.float64).tolist()
    return Sharpness(value, error, int(count), bool(done) or int(count) >= size, vector)
