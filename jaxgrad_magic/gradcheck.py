"""Check a computed derivative against central finite differences at the point.

The derivative is contracted with probe directions ``v`` (every unit vector of an argument
when it is small, else random unit vectors) and compared with
``(g(x + h v) - g(x - h v)) / 2h``, where ``g`` is the function itself for ``grad`` and
``jac``, its JAX first derivative (``jax.jacrev``) for ``hess`` (a Hessian is the Jacobian
of the Jacobian), and its ``order - 1``-th JAX derivative for ``grad`` with ``order > 1``.
So a second-order check trusts JAX's first derivative: check that one too.
The probes and the comparison run as one vmapped, jitted call, cached like the transforms;
four numbers per argument come back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .cache import CACHE, function_key

MAX_EXHAUSTIVE = 64  # arguments up to this many elements are probed along every axis
RANDOM_DIRECTIONS = 16


class ArgCheck(NamedTuple):
    """The check of one differentiated argument.

    Attributes:
      name: the parameter name.
      max_abs_error: the largest ``|AD - FD|`` over all probed outputs and directions.
      max_rel_error: the same divided by ``max(|FD|, |AD|)``, for entries above ``atol``.
      atol: the absolute tolerance used.
      rtol: the relative tolerance used.
      passed: every entry within ``atol + rtol * |FD|``.
      directions: how many directions were probed.
      exhaustive: True when every element of the argument was probed.
      noise: the largest allowance for rounding in the finite differences themselves,
        ``eps * (|g(x + h v)| + |g(x - h v)|) / h``; it matters when the function's value is
        large next to its change (a big constant offset, a long sum).
    """

    name: str
    max_abs_error: float
    max_rel_error: float
    atol: float
    rtol: float
    passed: bool
    directions: int
    exhaustive: bool
    noise: float = 0.0


@dataclass(frozen=True)
class GradCheck:
    """A finite-difference check of a derivative, per differentiated argument."""

    args: tuple[ArgCheck, ...]
    dtype: str
    step: float
    passed: bool
    note: str

    def summary(self) -> str:
        """One line per argument: errors, tolerances, pass/fail."""
        lines = [f"{'PASS' if self.passed else 'FAIL'}: central differences, {self.dtype}, step {self.step:.2g}"]
        for a in self.args:
            probe = "every element" if a.exhaustive else f"{a.directions} random directions"
            # Only worth a word when rounding, not atol, sets the bar.
            noisy = f", rounding noise up to {a.noise:.0e}" if a.noise > a.atol else ""
            lines.append(
                f"  {a.name}: {'ok' if a.passed else 'MISMATCH'}  max abs err {a.max_abs_error:.2e}, "
                f"max rel err {a.max_rel_error:.2e} (atol {a.atol:.0e}, rtol {a.rtol:.0e}{noisy}; {probe})"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def tolerances(dtype: np.dtype) -> tuple[float, float, float]:
    """``(relative step, atol, rtol)`` for central differences in ``dtype``.

    The step ``eps**(1/3)`` balances truncation (``h**2``) and rounding (``eps / h``), so the
    expected relative error is about ``eps**(2/3)``: ~2e-5 in float32, ~4e-11 in float64.
    The tolerances leave room for curvature and for cancellation in the function itself.
    """
    eps = float(np.finfo(dtype).eps)
    step = eps ** (1 / 3)
    if eps > 1e-10:  # float32 and narrower
        return step, 1e-3, 2e-2
    return step, 1e-7, 1e-5


def _contract(block: Any, v_tree: Any) -> jax.Array:
    """Sum over the input axes of ``block`` (leaves shaped out + in) against ``v_tree``."""
    total = None
    for b, v in zip(jax.tree_util.tree_leaves(block), jax.tree_util.tree_leaves(v_tree), strict=True):
        term = jnp.tensordot(b, v, axes=v.ndim) if v.ndim else b * v
        total = term if total is None else total + term
    return total


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _make_directions(n: int, dtype: str, seed: int) -> jax.Array:
    if n <= MAX_EXHAUSTIVE:
        return jnp.eye(n, dtype=dtype)
    v = jax.random.normal(jax.random.key(seed), (RANDOM_DIRECTIONS, n), dtype=dtype)
    return v / jnp.linalg.norm(v, axis=1, keepdims=True)


@functools.lru_cache(maxsize=16)
def _cached_directions(n: int, dtype: str, seed: int) -> jax.Array:
    return _make_directions(n, dtype, seed)


def _directions(n: int, dtype: np.dtype, seed: int) -> jax.Array:
    """Every unit vector of a small argument, else random unit vectors: made on the device, and
    kept there for arguments up to ``_CACHED_SIZE`` elements (a re-run check reuses them)."""
    if n <= _CACHED_SIZE:
        return _cached_directions(n, np.dtype(dtype).name, seed)
    return _make_directions(n, np.dtype(dtype).name, seed)


_CACHED_SIZE = 1 << 16  # 16 directions of this many float64s: 8 MB


def _differences(
    evaluate: Callable[[jax.Array], jax.Array], flat: jax.Array, h: jax.Array, v: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Central differences ``(g(x + h v) - g(x - h v)) / 2h`` for each row ``v``, and the rounding
    noise each may carry. ``evaluate`` maps a flat point to the flat output; all ``2k`` points go
    through it as one batch (one matrix product where ``g`` has one)."""
    k = v.shape[0]
    out = jax.vmap(evaluate)(jnp.concatenate([flat + h * v, flat - h * v]))
    plus, minus = out[:k], out[k:]
    eps = jnp.finfo(out.dtype).eps if jnp.issubdtype(out.dtype, jnp.inexact) else 0.0
    # g(x +- h v) are each rounded to about eps of their size, and the subtraction keeps that
    # absolute error: large values (a constant offset, a long sum) make the quotient noisy.
    noise = _ROUNDING * eps * (jnp.abs(plus) + jnp.abs(minus)) / (2 * h)
    return (plus - minus) / (2 * h), noise


_ROUNDING = 2.0  # measured rounding errors in float32 sums stay below ~0.4 of eps * |g| / h


def _verdict(fd: jax.Array, noise: jax.Array, ad: jax.Array, atol: float, rtol: float) -> jax.Array:
    """Traced: ``[max abs error, max rel error, passed, max noise]``; passed when every entry is
    within ``atol + rtol |FD| + noise`` and the derivative is finite. Only these four numbers
    leave the device."""
    err = jnp.abs(ad - fd)
    scale = jnp.maximum(jnp.abs(fd), jnp.abs(ad))
    rel = jnp.where(scale > atol, err / jnp.where(scale > 0, scale, 1), 0.0)
    passed = jnp.all(err <= atol + rtol * jnp.abs(fd) + noise) & jnp.all(jnp.isfinite(ad))
    return jnp.stack(
        [jnp.max(err, initial=0.0), jnp.max(rel, initial=0.0), passed.astype(err.dtype), jnp.max(noise, initial=0.0)]
    )


def _step(flat: jax.Array, rel_step: float) -> jax.Array:
    return rel_step * jnp.maximum(1.0, jnp.max(jnp.abs(flat), initial=0.0))


def _checker(
    g: Callable[..., Any],
    i: int,
    k: int,
    multi: bool,
    out_struct: Any,
    dtype: np.dtype,
) -> Callable[..., jax.Array]:
    """One jitted call: finite differences, their noise and the derivative along every probe
    direction, compared on the device."""
    rel_step, atol, rtol = tolerances(dtype)

    def run(args: tuple[Any, ...], derivative: Any, v: jax.Array) -> jax.Array:
        flat, unravel = ravel_pytree(args[i])
        h = _step(flat, rel_step)
        blocks = [b[k] if multi else b for b in out_struct.flatten_up_to(derivative)]

        def evaluate(point: jax.Array) -> jax.Array:
            return ravel_pytree(g(*args[:i], unravel(point), *args[i + 1 :]))[0]

        def ad_one(d: jax.Array) -> jax.Array:
            v_tree = unravel(d)
            return jnp.concatenate([jnp.ravel(_contract(b, v_tree)) for b in blocks])

        fd, noise = _differences(evaluate, flat, h, v)
        return _verdict(fd, noise, jax.vmap(ad_one)(v), atol, rtol)

    return jax.jit(run)


def _arg_check(name: str, verdict: jax.Array, dtype: np.dtype, n: int) -> ArgCheck:
    err, rel, passed, noise = (float(x) for x in np.asarray(verdict))
    _, atol, rtol = tolerances(dtype)
    exhaustive = n <= MAX_EXHAUSTIVE
    return ArgCheck(name, err, rel, atol, rtol, passed > 0, n if exhaustive else RANDOM_DIRECTIONS, exhaustive, noise)


def check_derivative(
    kind: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: int | tuple[int, ...],
    derivative: Any,
    value: Any,
    *,
    names: Sequence[str] = (),
    aux: bool = False,
    order: int = 1,
    seed: int = 0,
) -> GradCheck:
    """Compare ``derivative`` (as JAX returned it) with central finite differences.

    Args:
      kind: ``"grad"``, ``"jac"`` or ``"hess"``.
      fn: the differentiated function.
      args: all positional arguments (the point).
      argnums: the differentiated positions.
      derivative: the derivative to check, in JAX's structure.
      value: ``fn``'s main output at the point (its structure indexes Jacobian blocks).
      names: parameter names for the report.
      aux: ``fn`` returns ``(output, aux)``.
      order: for ``grad``, the derivative order: the ``order``-th derivative is checked
        against differences of the ``order - 1``-th (JAX's, like a Hessian against the gradient).
      seed: for the random probe directions of large arguments.

    Returns:
      A :class:`GradCheck`.
    """
    idx = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    primal = (lambda *a: fn(*a)[0]) if aux else fn
    if kind == "hess":
        # The Hessian is the Jacobian of the first derivative; jacrev rather than grad, so a
        # function with a non-scalar output (whose Hessian JAX computes too) is checked as well.
        g = jax.jacrev(primal, argnums=argnums)
        out_struct = jax.tree_util.tree_structure(jax.eval_shape(g, *args))
    else:
        g = primal
        for _ in range(order - 1 if kind == "grad" else 0):
            g = jax.grad(g, argnums=argnums)
        out_struct = jax.tree_util.tree_structure(value)

    key, refs = function_key(fn)
    dtype = np.dtype(
        jnp.result_type(*[leaf for i in idx for leaf in jax.tree_util.tree_leaves(args[i])])
    )  # as JAX computes
    checks = []
    for k, i in enumerate(idx):
        n = sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(args[i]))
        run = CACHE.get_or_build(
            ("gradcheck", key, kind, order, argnums, aux, i, out_struct, dtype.name),
            refs,
            lambda i=i, k=k: _checker(g, i, k, len(idx) > 1, out_struct, dtype),
        )
        name = names[i] if i < len(names) else f"arg{i}"
        checks.append(_arg_check(name, run(tuple(args), derivative, _directions(n, dtype, seed + k)), dtype, n))
    passed = all(c.passed for c in checks)
    rel_step = tolerances(dtype)[0]
    return GradCheck(tuple(checks), dtype.name, float(rel_step), passed, _note(dtype, rel_step))


def _directional_checker(
    kind: str, g: Callable[..., Any], idx: tuple[int, ...], single: bool, dtype: np.dtype
) -> Callable[..., jax.Array]:
    """Finite differences of ``g`` along directions ``d`` over all differentiated arguments,
    compared with ``J v`` (``d`` the tangent) or, through ``<uᵀ J, d> = <u, J d>``, with ``uᵀ J``."""
    rel_step, atol, rtol = tolerances(dtype)

    def run(args: tuple[Any, ...], vector: Any, derivative: Any, d: jax.Array | None) -> jax.Array:
        flat, unravel = ravel_pytree(tuple(args[i] for i in idx))
        h = _step(flat, rel_step)

        def evaluate(point: jax.Array) -> jax.Array:
            full = list(args)
            for k, moved in zip(idx, unravel(point), strict=True):
                full[k] = moved
            return ravel_pytree(g(*full))[0]

        if kind == "jvp":
            tangent = ravel_pytree((vector,) if single else tuple(vector))[0].astype(flat.dtype)
            fd, noise = _differences(evaluate, flat, h, tangent[None, :])
            return _verdict(fd[0], noise[0], ravel_pytree(derivative)[0], atol, rtol)
        jd, jd_noise = _differences(evaluate, flat, h, d)
        u = ravel_pytree(vector)[0]
        w = ravel_pytree((derivative,) if single else tuple(derivative))[0]
        return _verdict(jd @ u, jd_noise @ jnp.abs(u), d @ w, atol, rtol)

    return jax.jit(run)


def check_directional(
    kind: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: int | tuple[int, ...],
    vector: Any,
    derivative: Any,
    *,
    aux: bool = False,
    seed: int = 0,
) -> GradCheck:
    """Check ``J v`` (``jvp``) or ``uᵀ J`` (``vjp``) against central differences.

    For ``jvp`` the probe direction is the tangent itself. For ``vjp`` the identity
    ``<uᵀ J, d> = <u, J d>`` is checked along probe directions ``d`` over all differentiated
    arguments: every unit vector when they are small, else random unit vectors.

    Args:
      kind: ``"jvp"`` or ``"vjp"``.
      fn: the differentiated function.
      args: all positional arguments (the point).
      argnums: the differentiated positions.
      vector: the tangent ``v`` or the cotangent ``u``.
      derivative: ``J v`` or ``uᵀ J`` as computed, in JAX's structure.
      aux: ``fn`` returns ``(output, aux)``.
      seed: for the random probe directions.

    Returns:
      A :class:`GradCheck` with one entry for all the differentiated arguments together.
    """
    idx = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    single = isinstance(argnums, int)
    g = (lambda *a: fn(*a)[0]) if aux else fn
    diff = tuple(args[i] for i in idx)
    dtype = np.dtype(jnp.result_type(*jax.tree_util.tree_leaves(diff)))
    n = sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(diff))
    key, refs = function_key(fn)
    run = CACHE.get_or_build(
        ("gradcheck-dir", key, kind, idx, single, aux, dtype.name),
        refs,
        lambda: _directional_checker(kind, g, idx, single, dtype),
    )
    verdict = run(tuple(args), vector, derivative, None if kind == "jvp" else _directions(n, dtype, seed))
    # jvp probes one direction, the tangent itself; vjp probes like the other checks.
    label, count = ("J·v", 1) if kind == "jvp" else ("uᵀJ", n)
    check = _arg_check(label, verdict, dtype, count)
    rel_step = tolerances(dtype)[0]
    return GradCheck((check,), dtype.name, float(rel_step), check.passed, _note(dtype, rel_step))


def _note(dtype: np.dtype, rel_step: float) -> str:
    if np.dtype(dtype).itemsize > 4:
        return ""
    return (
        f"{np.dtype(dtype).name} limits finite differences to ~{rel_step**2:.0e} relative accuracy, so the "
        'tolerances are loose; for a sharper check run `jax.config.update("jax_enable_x64", True)` '
        "first and evaluate at float64 inputs."
    )


def _size(x: Any) -> int:
    return math.prod(np.shape(x))
