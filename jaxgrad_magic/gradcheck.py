"""Check a computed derivative against finite differences at the point.

The derivative is contracted with probe directions (every unit vector of an argument when it
is small, else random unit vectors) and compared with finite differences of ``g``, where ``g``
is the function itself for ``grad`` and ``jac``, its JAX first derivative (``jax.jacrev``) for
``hess`` (a Hessian is the Jacobian of the Jacobian), and its ``order - 1``-th JAX derivative
for ``grad`` with ``order > 1``. So a second-order check trusts JAX's first derivative: check
that one too.

How the differences are taken, so that a correct derivative is not called wrong:

- The step is relative: each element moves by at most ``eps**(1/3) * |x|`` (by ``eps**(1/3)``
  where it is 0), so ``1/x`` at 0.01 and ``log`` at 1e-3 are differenced on their own scale
  and a step never crosses zero.
- Central differences at the step and at half of it are combined (Richardson extrapolation),
  which cancels the ``h²`` error term: high curvature (``sin(100 x)``) stays accurate.
- Near a domain edge (a value that is not finite on one side), the step shrinks (by 16 and
  256) and, if one side stays non-finite, a one-sided second-order difference is used.
- Where the differences disagree with the derivative, they are taken again at a quarter and a
  sixteenth of the step. A wrong derivative disagrees at every step; a kink of ``f`` (``relu``,
  ``abs``, ``max``) a little way from the point, which a step crosses, makes a disagreement that
  shrinks with the step. When a finer step agrees and has halved the error, it is trusted, and
  the report says so (``refined``): float32 ReLU networks are checked, not called wrong.
- Half-precision points (float16, bfloat16) are differenced in float32: the check is of the
  derivative rule, not of half-precision rounding. The derivative itself is compared as JAX
  computed it, with the tolerance of its dtype.
- Tolerances follow ``jax.test_util.check_grads``: ``atol = rtol`` = 1e-2 (float16), 1e-1
  (bfloat16), 2e-3 (float32), 1e-5 (float64), plus the rounding noise of the differences.

The probes and the comparison run as one vmapped, jitted call, cached like the transforms;
a few numbers per argument come back. With ``jit=False`` the points are evaluated one by one
without tracing, so Python control flow on values (``if x > 0:``) works as in the function.
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

from .argnums import Argnums, param_name
from .cache import CACHE, function_key
from .formatting import number, scientific
from .host import fetch
from .transforms import TAYLOR, Kind, order_derivative

MAX_EXHAUSTIVE = 64  # arguments up to this many elements are probed along every axis
RANDOM_DIRECTIONS = 16
SHRINK = (1.0, 1 / 16, 1 / 256)  # step factors tried in turn while a difference is not finite
FINER = (1 / 4, 1 / 16)  # step factors tried in turn when the differences disagree (a kink)

# jax.test_util.check_grads' default gradient tolerances (atol = rtol), by dtype.
_TOLERANCE = {"float16": 1e-2, "bfloat16": 1e-1, "float32": 2e-3, "float64": 1e-5}


class ArgCheck(NamedTuple):
    """The check of one differentiated argument.

    Attributes:
      name: the parameter name.
      max_abs_error: the largest ``|AD - FD|`` over all probed outputs and directions, in
        derivative units (each direction scaled to length one).
      max_rel_error: the same divided by ``max(|FD|, |AD|)``, for entries above ``atol``.
      atol: the absolute tolerance used.
      rtol: the relative tolerance used.
      passed: every entry within ``atol + rtol * |FD| + noise``, and the derivative finite.
      directions: how many directions were probed.
      exhaustive: True when every element of the argument was probed.
      noise: the largest allowance for rounding in the finite differences themselves,
        about ``eps * |g(x ± h v)| / h``; it matters when the function's value is large next
        to its change (a big constant offset, a long sum).
      one_sided: how many directions were differenced on one side only, because the function
        is not finite on the other (a domain edge).
      refined: the step had to be made finer: at the usual step the differences disagreed with
        the derivative, at a finer one they agree and the error at least halved (a kink of the
        function within the usual step of the point).
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
    one_sided: int = 0
    refined: bool = False


@dataclass(frozen=True)
class GradCheck:
    """A finite-difference check of a derivative, per differentiated argument.

    Attributes:
      args: one :class:`ArgCheck` per differentiated argument (one for ``jvp``/``vjp``).
      dtype: the dtype of the point, as JAX computed the derivative.
      step: the relative step: each element moved by at most ``step * |x|`` (``step`` where
        ``x`` is 0).
      passed: the overall verdict: True when every argument's check passed, i.e. the
        derivative agrees with finite differences in every probed direction within the
        tolerances. False means JAX's derivative (or a custom rule behind it) disagrees
        with the function's own values.
      note: what limits the check, when something does (float32 differences, one-sided
        differences near a domain edge).
      differenced_in: the dtype the differences were taken in (float32 for half precision).
    """

    args: tuple[ArgCheck, ...]
    dtype: str
    step: float
    passed: bool
    note: str
    differenced_in: str = ""

    def summary(self) -> str:
        """One line per argument: errors, tolerances, pass/fail."""
        where = f" (differenced in {self.differenced_in})" if self.differenced_in not in ("", self.dtype) else ""
        lines = [
            f"{'PASS' if self.passed else 'FAIL'}: central differences, {self.dtype}{where}, "
            f"step {number(self.step, 2)}·|x|"
        ]
        for a in self.args:
            probe = "every element" if a.exhaustive else f"{a.directions} random directions"
            # Only worth a word when rounding, not atol, sets the bar.
            noisy = f", rounding noise up to {scientific(a.noise, 0)}" if a.noise > a.atol else ""
            edge = f", {a.one_sided} one-sided" if a.one_sided else ""
            edge += ", at a finer step" if a.refined else ""
            lines.append(
                f"  {a.name}: {'ok' if a.passed else 'MISMATCH'}  max abs err {scientific(a.max_abs_error)}, "
                f"max rel err {scientific(a.max_rel_error)} (atol {scientific(a.atol, 0)}, "
                f"rtol {scientific(a.rtol, 0)}{noisy}; {probe}{edge})"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def differencing_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the differences are taken in: float32 for narrower floats, else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def tolerances(dtype: np.dtype) -> tuple[float, float, float]:
    """``(relative step, atol, rtol)`` for a derivative computed in ``dtype``.

    The step ``eps**(1/3)`` of the differencing dtype balances truncation and rounding
    (``eps / h``) of a central difference; Richardson extrapolation then removes most of the
    truncation. The tolerances are those of ``jax.test_util.check_grads`` for ``dtype``.
    """
    dtype = np.dtype(dtype)
    step = float(jnp.finfo(differencing_dtype(dtype)).eps) ** (1 / 3)
    eps = float(jnp.finfo(dtype).eps)
    tol = _TOLERANCE.get(dtype.name, 1e-1 if eps > 1e-3 else 2e-3 if eps > 1e-10 else 1e-5)
    return step, tol, tol


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
_ROUNDING = 2.0  # measured rounding errors in float32 sums stay below ~0.4 of eps * |g| / h


def _scale(flat: jax.Array) -> jax.Array:
    """How far each element may move, per unit of relative step: ``|x|``, or 1 where ``x`` is 0."""
    return jnp.where(flat != 0, jnp.abs(flat), 1.0).astype(flat.dtype)


def _differences(
    batch: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    w: jax.Array,
    tau: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Finite-difference estimates of ``J w`` for each row ``w`` of ``w``, stepping ``tau`` along it.

    Central differences at ``tau`` and ``tau / 2``, combined by Richardson extrapolation
    (``(4 D(τ/2) - D(τ)) / 3`` cancels the ``τ²`` term). Where a value on one side is not
    finite (a domain edge), a one-sided second-order difference on the finite side.

    Args:
      batch: a stack of flat points -> their flat outputs (a ``jax.vmap``, or a loop).
      flat: the point, flat.
      w: directions, one per row.
      tau: the step along each row.

    Returns:
      ``(estimates, noise, one_sided)``: rows of ``J w``, the rounding noise each may carry,
      and per row whether it was differenced on one side.
    """
    k = w.shape[0]
    t = tau[:, None]
    # The point itself rides in the batch: a second traced copy of g would double the compile.
    out = batch(jnp.concatenate([flat[None, :], flat + t * w, flat + t / 2 * w, flat - t / 2 * w, flat - t * w]))
    c, out = out[:1], out[1:]
    p1, p2, m2, m1 = out[:k], out[k : 2 * k], out[2 * k : 3 * k], out[3 * k :]
    a = jnp.abs
    central = (8 * (p2 - m2) - (p1 - m1)) / (6 * t)  # Richardson of (p1 - m1)/2τ and (p2 - m2)/τ
    forward = (4 * p2 - 3 * c - p1) / t  # second order from x, x + τ/2, x + τ
    backward = (3 * c - 4 * m2 + m1) / t
    eps = jnp.finfo(out.dtype).eps if jnp.issubdtype(out.dtype, jnp.inexact) else 0.0
    # Each g(x ± s w) is rounded to about eps of its size; the combinations keep those absolute errors.
    noise_c = _ROUNDING * eps * (8 * (a(p2) + a(m2)) + a(p1) + a(m1)) / (6 * t)
    noise_f = _ROUNDING * eps * (4 * a(p2) + 3 * a(c) + a(p1)) / t
    noise_b = _ROUNDING * eps * (4 * a(m2) + 3 * a(c) + a(m1)) / t

    def finite(*xs: jax.Array) -> jax.Array:
        return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(x), axis=1) for x in xs])[:, None]

    use_c = finite(p1, p2, m2, m1)
    use_f = ~use_c & finite(jnp.broadcast_to(c, p1.shape), p2, p1)
    use_b = ~use_c & ~use_f & finite(jnp.broadcast_to(c, m1.shape), m2, m1)
    estimate = jnp.where(use_f, forward, jnp.where(use_b, backward, central))
    noise = jnp.where(use_f, noise_f, jnp.where(use_b, noise_b, noise_c))
    return estimate, noise, ~use_c[:, 0]


def _verdict(
    fd: jax.Array, noise: jax.Array, ad: jax.Array, atol: float, rtol: float, one_sided: jax.Array
) -> jax.Array:
    """``[max abs error, max rel error, passed, max noise, one-sided rows]``; passed when every
    entry is within ``atol + rtol |FD| + noise`` and the derivative is finite. Only these numbers
    leave the device."""
    err = jnp.abs(ad - fd)
    scale = jnp.maximum(jnp.abs(fd), jnp.abs(ad))
    rel = jnp.where(scale > atol, err / jnp.where(scale > 0, scale, 1), 0.0)
    passed = jnp.all(err <= atol + rtol * jnp.abs(fd) + noise) & jnp.all(jnp.isfinite(ad))
    return jnp.stack(
        [
            jnp.max(err, initial=0.0),
            jnp.max(rel, initial=0.0),
            passed.astype(err.dtype),
            jnp.max(noise, initial=0.0),
            jnp.sum(one_sided).astype(err.dtype),
        ]
    )


def _batcher(evaluate: Callable[[jax.Array], jax.Array], traced: bool) -> Callable[[jax.Array], jax.Array]:
    """All points in one vmapped call, or (without jit) one at a time, so that Python control
    flow in the function sees concrete values."""
    if traced:
        return jax.vmap(evaluate)
    return lambda points: jnp.stack([evaluate(p) for p in points])


def _probe(v: jax.Array, flat: jax.Array, rel_step: float, shrink: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Unit probe rows ``v`` as steps on the point's own scale: ``(w, tau, |w|)`` with
    ``w = |x| ⊙ v`` and ``tau`` such that no element moves by more than ``rel_step |x|``."""
    w = _scale(flat) * v.astype(flat.dtype)
    tau = rel_step * shrink / jnp.max(jnp.abs(v), axis=1).astype(flat.dtype)
    return w, tau, jnp.linalg.norm(w, axis=1)


def _checker(
    g: Callable[..., Any],
    i: int,
    k: int,
    multi: bool,
    out_struct: Any,
    rel_step: float,
    tols: tuple[float, float],
    jit: bool,
) -> Callable[..., jax.Array]:
    """One call: finite differences, their noise and the derivative along every probe
    direction, compared (jitted and vmapped unless ``jit`` is False)."""
    atol, rtol = tols

    def run(args: tuple[Any, ...], derivative: Any, v: jax.Array, shrink: Any) -> jax.Array:
        flat, unravel = ravel_pytree(args[i])
        blocks = [b[k] if multi else b for b in out_struct.flatten_up_to(derivative)]

        def evaluate(point: jax.Array) -> jax.Array:
            return ravel_pytree(g(*args[:i], unravel(point), *args[i + 1 :]))[0]

        def ad_one(d: jax.Array) -> jax.Array:
            v_tree = unravel(d)
            return jnp.concatenate([jnp.ravel(_contract(b, v_tree)) for b in blocks])

        w, tau, length = _probe(v, flat, rel_step, shrink)
        fd, noise, one_sided = _differences(_batcher(evaluate, jit), flat, w, tau)
        # Per unit length of each direction: errors in the derivative's own units.
        per = length[:, None]
        return _verdict(fd / per, noise / per, jax.vmap(ad_one)(w) / per, atol, rtol, one_sided)

    return jax.jit(run) if jit else run


def _arg_check(name: str, verdict: list[float], tols: tuple[float, float], n: int, refined: bool) -> ArgCheck:
    err, rel, passed, noise, one_sided = verdict
    exhaustive = n <= MAX_EXHAUSTIVE
    count = n if exhaustive else RANDOM_DIRECTIONS
    return ArgCheck(name, err, rel, *tols, passed > 0, count, exhaustive, noise, int(one_sided), refined)


def _upcast(tree: Any, dtype: np.dtype) -> Any:
    """Floating leaves narrower than ``dtype`` cast to it (half precision differenced in float32)."""

    def up(leaf: Any) -> Any:
        d = np.dtype(getattr(leaf, "dtype", np.float32))
        return jnp.asarray(leaf, dtype) if jnp.issubdtype(d, jnp.floating) and d.itemsize < dtype.itemsize else leaf

    return jax.tree_util.tree_map(up, tree)


def _shrinking(run: Callable[[float], jax.Array]) -> tuple[list[float], float, bool]:
    """``run(shrink)`` for each step factor in turn until no direction meets a non-finite value;
    else the smallest step's result, one-sided where it had to be. A disagreement is then
    differenced again at :data:`FINER` steps: the first that agrees, with at most half the error,
    is trusted (a kink crossed by the usual step). Returns the verdict, its factor, and whether
    a finer step was trusted.

    The verdict comes to the host once, as numbers: indexing the device array would dispatch
    an operation and transfer again for every value read."""
    for shrink in SHRINK:
        verdict = fetch(run(shrink)).tolist()
        if verdict[4] == 0:
            break
    if verdict[2] > 0 or not math.isfinite(verdict[0]):
        return verdict, shrink, False
    for finer in FINER:
        again = fetch(run(shrink * finer)).tolist()
        if again[2] > 0 and again[0] <= verdict[0] / 2:
            return again, shrink * finer, True
    return verdict, shrink, False


def check_derivative(
    kind: Kind,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: int | tuple[int, ...],
    derivative: Any,
    value: Any,
    *,
    names: Sequence[str] = (),
    aux: bool = False,
    order: int = 1,
    mode: str | None = None,
    jit: bool = True,
    seed: int = 0,
) -> GradCheck:
    """Compare ``derivative`` (as JAX returned it) with finite differences.

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
      mode: the transform's mode; ``"taylor"`` (an ``order=N`` gradient by jet) builds the
        ``order - 1``-th derivative by jet too.
      jit: False evaluates the points one by one without tracing (the function may branch in
        Python on its inputs' values).
      seed: for the random probe directions of large arguments.

    Returns:
      A :class:`GradCheck`; its ``passed`` is the overall verdict.
    """
    idx = Argnums.of(argnums).positions
    primal = (lambda *a: fn(*a)[0]) if aux else fn
    if kind == "hess":
        # The Hessian is the Jacobian of the first derivative; jacrev rather than grad, so a
        # function with a non-scalar output (whose Hessian JAX computes too) is checked as well.
        g = jax.jacrev(primal, argnums=argnums)
        out_struct = jax.tree_util.tree_structure(jax.eval_shape(g, *args) if jit else g(*args))
    else:
        g = primal
        if kind == "grad" and order > 1:  # order > 1 has a single argnum
            g = order_derivative(primal, argnums, order - 1, taylor=mode == TAYLOR)
        out_struct = jax.tree_util.tree_structure(value)

    key, refs = function_key(fn)
    dtype = np.dtype(
        jnp.result_type(*[leaf for i in idx for leaf in jax.tree_util.tree_leaves(args[i])])
    )  # as JAX computes
    work = differencing_dtype(dtype)
    rel_step, atol, rtol = tolerances(dtype)
    fd_args = tuple(_upcast(a, work) if i in idx else a for i, a in enumerate(args))
    checks, used = [], 1.0
    for k, i in enumerate(idx):
        n = sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(args[i]))
        run = CACHE.get_or_build(
            ("gradcheck", key, kind, order, mode, jit, argnums, aux, i, out_struct, dtype.name),
            refs,
            lambda i=i, k=k: _checker(g, i, k, len(idx) > 1, out_struct, rel_step, (atol, rtol), jit),
        )
        directions = _directions(n, work, seed + k)
        verdict, shrink, refined = _shrinking(lambda s, run=run, d=directions: run(fd_args, derivative, d, s))
        used = min(used, shrink)
        name = param_name(names, i)
        checks.append(_arg_check(name, verdict, (atol, rtol), n, refined))
    passed = all(c.passed for c in checks)
    return GradCheck(tuple(checks), dtype.name, rel_step * used, passed, _note(dtype, rel_step, checks), work.name)


def _directional_checker(
    kind: Kind,
    g: Callable[..., Any],
    idx: tuple[int, ...],
    single: bool,
    rel_step: float,
    tols: tuple[float, float],
    jit: bool,
) -> Callable[..., jax.Array]:
    """Finite differences of ``g`` along directions over all differentiated arguments, compared
    with ``J v`` (the direction is the tangent) or, through ``<uᵀ J, d> = <u, J d>``, with ``uᵀ J``."""
    atol, rtol = tols

    def run(args: tuple[Any, ...], vector: Any, derivative: Any, d: jax.Array | None, shrink: Any) -> jax.Array:
        flat, unravel = ravel_pytree(tuple(args[i] for i in idx))

        def evaluate(point: jax.Array) -> jax.Array:
            full = list(args)
            for k, moved in zip(idx, unravel(point), strict=True):
                full[k] = moved
            return ravel_pytree(g(*full))[0]

        batch = _batcher(evaluate, jit)
        if kind == "jvp":
            tangent = ravel_pytree((vector,) if single else tuple(vector))[0].astype(flat.dtype)
            # The largest step along the tangent that moves no element by more than rel_step |x|.
            room = jnp.where(tangent != 0, _scale(flat) / jnp.where(tangent != 0, jnp.abs(tangent), 1), jnp.inf)
            tau = rel_step * shrink * jnp.min(room, initial=jnp.inf)
            tau = jnp.where(jnp.isfinite(tau), tau, rel_step)  # a zero tangent: any step
            fd, noise, one_sided = _differences(batch, flat, tangent[None, :], tau[None])
            ad = ravel_pytree(derivative)[0]
            return _verdict(fd[0], noise[0], ad, atol, rtol, one_sided)
        w, tau, length = _probe(d, flat, rel_step, shrink)
        jw, jw_noise, one_sided = _differences(batch, flat, w, tau)
        u = ravel_pytree(vector)[0]
        v = ravel_pytree((derivative,) if single else tuple(derivative))[0]
        return _verdict(jw @ u / length, jw_noise @ jnp.abs(u) / length, w @ v / length, atol, rtol, one_sided)

    return jax.jit(run) if jit else run


def check_directional(
    kind: Kind,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    argnums: int | tuple[int, ...],
    vector: Any,
    derivative: Any,
    *,
    aux: bool = False,
    jit: bool = True,
    seed: int = 0,
) -> GradCheck:
    """Check ``J v`` (``jvp``) or ``uᵀ J`` (``vjp``) against finite differences.

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
      jit: False evaluates the points one by one without tracing.
      seed: for the random probe directions.

    Returns:
      A :class:`GradCheck` with one entry for all the differentiated arguments together.
    """
    picked = Argnums.of(argnums)
    idx, single = picked.positions, picked.single
    g = (lambda *a: fn(*a)[0]) if aux else fn
    diff = tuple(args[i] for i in idx)
    dtype = np.dtype(jnp.result_type(*jax.tree_util.tree_leaves(diff)))
    work = differencing_dtype(dtype)
    rel_step, atol, rtol = tolerances(dtype)
    fd_args = tuple(_upcast(a, work) if i in idx else a for i, a in enumerate(args))
    n = sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(diff))
    key, refs = function_key(fn)
    run = CACHE.get_or_build(
        ("gradcheck-dir", key, kind, idx, single, aux, jit, dtype.name),
        refs,
        lambda: _directional_checker(kind, g, idx, single, rel_step, (atol, rtol), jit),
    )
    d = None if kind == "jvp" else _directions(n, work, seed)
    verdict, shrink, refined = _shrinking(lambda s: run(fd_args, vector, derivative, d, s))
    # jvp probes one direction, the tangent itself; vjp probes like the other checks.
    label, count = ("J·v", 1) if kind == "jvp" else ("uᵀJ", n)
    check = _arg_check(label, verdict, (atol, rtol), count, refined)
    return GradCheck((check,), dtype.name, rel_step * shrink, check.passed, _note(dtype, rel_step, [check]), work.name)


def _note(dtype: np.dtype, rel_step: float, checks: Sequence[ArgCheck]) -> str:
    notes = []
    if not all(math.isfinite(c.max_abs_error) for c in checks):
        notes.append(
            "The derivative or the function is not finite at or around the point (an overflow, or a "
            "singularity), so the two cannot be compared there."
        )
    if sum(c.one_sided for c in checks):
        notes.append(
            "The function is not finite on one side of the point (a domain edge), so some directions were "
            "differenced on the other side only."
        )
    if any(c.refined for c in checks):
        notes.append(
            "At the usual step the differences disagreed with the derivative; at a finer step they agree, "
            "with the error at least halved: the function has a kink (relu, abs, max...) within the usual "
            "step of the point, which a wrong derivative would not explain. The finer step was trusted."
        )
    dtype = np.dtype(dtype)
    if dtype.itemsize < 4:
        notes.append(
            f"Differences taken in float32 (the check is of the derivative rule, not of {dtype.name} "
            f"rounding); the derivative is compared as computed, with {dtype.name}'s tolerance."
        )
    elif dtype.itemsize == 4:
        notes.append(
            f"{dtype.name} limits finite differences to ~{scientific(rel_step**2, 0)} relative accuracy, so the "
            'tolerances are loose; for a sharper check run `jax.config.update("jax_enable_x64", True)` '
            "first and evaluate at float64 inputs."
        )
    return " ".join(notes)


def _size(x: Any) -> int:
    return math.prod(np.shape(x))
