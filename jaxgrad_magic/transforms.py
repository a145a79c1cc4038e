"""Build the transformed function (grad, jac, hess) and a fused evaluator for a point."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax

from .argnums import Argnums, JaxArgnums
from .point import is_number, parameters

Kind = Literal["grad", "jac", "hess", "jvp", "vjp"]
"""The derivatives one can ask for, one per magic (``grad`` is ``%jgrad``)."""


class Transform(NamedTuple):
    """What to build: the kind and every option that changes the traced program."""

    kind: Kind
    argnums: JaxArgnums
    order: int = 1
    mode: str | None = None  # "rev" | "fwd" for jac, else None
    aux: bool = False
    jit: bool = True
    # Positions of non-differentiated plain-Python arguments (a loop count, a size, a mode
    # string): static under jax.jit, so `range(n)` sees an int, as in the user's own code.
    static: tuple[int, ...] = ()


class Built(NamedTuple):
    """The derivative function (bound in the notebook) and the fused evaluator."""

    transformed: Callable[..., Any]
    evaluate: Callable[..., tuple[Any, Any, Any]]


def _argnums_text(argnums: JaxArgnums) -> str:
    return "" if argnums == 0 else f", argnums={argnums}"


def composition(t: Transform, fn_name: str = "f") -> str:
    """The JAX expression that was built, e.g. ``jax.jit(jax.grad(jax.grad(f)))``."""
    opts = _argnums_text(t.argnums) + (", has_aux=True" if t.aux else "")
    if t.kind == "grad" and t.mode == TAYLOR:
        text = f"jet({fn_name}{_argnums_text(t.argnums)}, order={t.order})"
    elif t.kind == "grad":
        inner = fn_name
        for _ in range(t.order):
            inner = f"jax.grad({inner}{opts})"
        text = inner
    elif t.kind == "jac":
        text = f"jax.jac{t.mode}({fn_name}{opts})"
    elif t.kind == "hess":
        # What jax.hessian builds: forward over reverse, both over the same argnums.
        text = f"jax.jacfwd(jax.jacrev({fn_name}{opts}){opts})"
    elif t.kind == "jvp":
        text = f"jax.jvp({fn_name}, primals, (tangent,)){_wrt_text(t.argnums)}"
    else:
        text = f"jax.vjp({fn_name}, *primals)[1](cotangent){_wrt_text(t.argnums)}"
    if not t.jit:
        return text
    static = "" if not t.static else f", static_argnums={t.static[0] if len(t.static) == 1 else t.static}"
    return f"jax.jit({text}{static})"


def _wrt_text(argnums: JaxArgnums) -> str:
    return f" w.r.t. argnums={argnums}" if argnums != 0 else ""


def _describe(tree: Any) -> str:
    """``f32[2]``, ``(f32[2], f32[])`` or ``{'w': f32[3]}``: the shapes JAX sees in ``tree``."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    short = [_Shown(jax.typeof(leaf).str_short(short_dtypes=True)) for leaf in leaves]
    return repr(jax.tree_util.tree_unflatten(treedef, short))


class _Shown(str):
    """A string whose repr is itself, so a container of them prints without quotes."""

    def __repr__(self) -> str:
        return str(self)


def not_a_direction(vector: Any) -> str | None:
    """What in ``vector`` cannot be a tangent or cotangent (``"a str ('abc')"``), else None.

    A direction is numbers: Python numbers, NumPy or JAX arrays, in a pytree. Anything else
    would fail inside ``jax.jit`` or ``jax.jvp`` with an error about JAX types, not about the
    direction, so it is found here first.
    """
    try:
        leaves = jax.tree_util.tree_leaves(vector)
    except (TypeError, ValueError):  # e.g. a dict whose keys do not sort
        return f"a {type(vector).__name__} that JAX cannot flatten"
    bad = next((leaf for leaf in leaves if not is_number(leaf)), None)
    return None if bad is None else f"a {type(bad).__name__} ({bad!r:.40})"


def direction_error(word: str, what: str, bad: str, example: str) -> Exception:
    """The teaching error for a ``tangent=`` / ``cotangent=`` that is not numbers (see :func:`not_a_direction`)."""
    from .errors import JaxGradUsageError

    return JaxGradUsageError(
        f"{word}= must be numbers: a float, an array, or a tuple, list or dict of them, shaped like "
        f"{what}; but it holds {bad}. For example `{word}={example}`."
    )


def _matched(vector: Any, like: Any, word: str, what: str, example: str) -> Any:
    """``vector`` in the structure, shapes and dtypes of ``like``, or a teaching error.

    A direction only needs the right shape: its dtype is cast to the one JAX expects, so
    ``tangent=(1, 0)`` works for float arguments and float32 directions for float64 points.
    """
    from .errors import JaxGradUsageError

    bad = not_a_direction(vector)
    if bad is not None:
        raise direction_error(word, f"{what} ({_describe(like)})", bad, example)
    want_leaves, want_def = jax.tree_util.tree_flatten(like)
    got_leaves, got_def = jax.tree_util.tree_flatten(vector)
    same = got_def == want_def and all(
        jax.numpy.shape(g) == jax.numpy.shape(w) for g, w in zip(got_leaves, want_leaves, strict=True)
    )
    if not same:
        raise JaxGradUsageError(
            f"{word}= must be shaped like {what}: {_describe(like)}, but it is {_describe(vector)}. "
            f"Give one value per element in the same structure, e.g. `{word}={example}`."
        )
    cast = [jax.numpy.asarray(g, dtype=jax.numpy.result_type(w)) for g, w in zip(got_leaves, want_leaves, strict=True)]
    return jax.tree_util.tree_unflatten(want_def, cast)


def _directional(fn: Callable[..., Any], t: Transform) -> Callable[..., tuple[Any, Any, Any]]:
    """``(*args, vector) -> (output, J v or uᵀ J, aux)`` for ``jvp`` / ``vjp`` on the argnums."""
    picked = Argnums.of(t.argnums)
    idx, single = picked.positions, picked.single
    fn_name = getattr(fn, "__name__", "f")
    names = [p.name for p in parameters(fn)]

    def evaluate(*call: Any) -> tuple[Any, Any, Any]:
        *args, vector = call

        def partial(*diff: Any) -> Any:
            full = list(args)
            for k, i in enumerate(idx):
                full[i] = diff[k]
            return fn(*full)

        primals = tuple(args[i] for i in idx)
        if t.kind == "jvp":
            what = "the differentiated argument" + ("" if single else f"s (argnums={t.argnums}), one tangent each")
            ones = [f"jnp.ones_like({name})" for name in picked.names(names)]
            example = ones[0] if single else f"({', '.join(ones)})"
            like = picked.join(primals)
            tangent = _matched(vector if single else _as_tuple(vector), like, "tangent", what, example)
            tangents = picked.split(tangent)
            if t.aux:
                return jax.jvp(partial, primals, tangents, has_aux=True)
            out, tangent_out = jax.jvp(partial, primals, tangents)
            return out, tangent_out, None
        if t.aux:
            out, pull, aux = jax.vjp(partial, *primals, has_aux=True)
        else:
            (out, pull), aux = jax.vjp(partial, *primals), None
        cotangent = _matched(
            vector,
            out,
            "cotangent",
            f"the output of {fn_name}",
            f"jax.tree.map(jnp.ones_like, {fn_name}({', '.join(names)}))",
        )
        cotangents = pull(cotangent)
        return out, picked.join(cotangents), aux

    return evaluate


def _as_tuple(vector: Any) -> Any:
    """Several tangents may be given as a list too; anything else is left for the shape check."""
    return tuple(vector) if isinstance(vector, list) else vector


# order=N: nested jax.grad grows 2-3x in program size per order (measured on a three-term
# function: order 6 compiles in 0.7 s, 7 in 1.7 s, 8 in 7.5 s; order 16 of sin in ~30 s), while
# Taylor mode (jax.experimental.jet) grows with N²: order 32 of sin in 0.3 s, 100 in 4 s; of that
# three-term function order 16 in 1.1 s, 20 in 1.9 s, 32 in 3.5 s (and a check as much again).
NESTED_MAX = 4  # up to here nested grad: as cheap as jet, and it handles every JAX feature
NESTED_FALLBACK_MAX = 6  # nested grad for functions jet cannot trace: still about a second
TAYLOR_MAX = 20  # a few seconds of compiling; past 34 jet's N! coefficients overflow float32 anyway
TAYLOR = "taylor"  # Transform.mode of an order=N gradient computed by jet


def taylor_derivative(fn: Callable[..., Any], argnums: int, order: int) -> Callable[..., Any]:
    """The ``order``-th derivative of ``fn`` in its scalar argument ``argnums``, by Taylor mode.

    ``jet`` pushes the series ``x + t`` through ``fn``; the ``order``-th term of the output
    series is the ``order``-th derivative (jet's terms are derivatives, not coefficients).

    Args:
      fn: a scalar function.
      argnums: the position of the scalar argument.
      order: the derivative order, at least 1.

    Returns:
      A function of the same arguments as ``fn`` returning the derivative.
    """
    from jax.experimental.jet import jet

    def derivative(*args: Any) -> Any:
        x = jax.numpy.asarray(args[argnums])

        def along(z: Any) -> Any:
            return fn(*args[:argnums], z, *args[argnums + 1 :])

        series = (jax.numpy.ones_like(x), *(jax.numpy.zeros_like(x) for _ in range(order - 1)))
        _, terms = jet(along, (x,), (series,))
        return terms[-1]

    return derivative


def order_derivative(fn: Callable[..., Any], argnums: int, order: int, taylor: bool) -> Callable[..., Any]:
    """The ``order``-th derivative of a scalar function: nested ``jax.grad``, or jet when ``taylor``.

    ``order=0`` is ``fn`` itself.
    """
    if taylor and order > 1:
        return taylor_derivative(fn, argnums, order)
    d = fn
    for _ in range(order):
        d = jax.grad(d, argnums=argnums)
    return d


def choose_order_method(
    fn: Callable[..., Any], args: tuple[Any, ...] | None, argnums: int, order: int, jit: bool, fn_name: str = "f"
) -> tuple[str | None, str | None]:
    """How to build ``order=N``: ``(None, None)`` for nested grad at small orders, else
    ``(TAYLOR, reason)`` or ``("nested", reason)``.

    Taylor mode has no rule for some primitives (``atan``, loops, ``cond``) and fails on
    ``custom_jvp`` functions such as ``jax.nn.relu``; it is tried at the point with a
    two-term series (the rules it needs do not depend on the order). When it fails and
    ``f`` itself runs, nested grad is used up to :data:`NESTED_FALLBACK_MAX`, and higher
    orders are refused.

    Raises:
      JaxGradUsageError: ``order`` is above :data:`TAYLOR_MAX`, or jet cannot trace ``fn``
        and ``order`` is above :data:`NESTED_FALLBACK_MAX`.
    """
    from .errors import JaxGradUsageError, first_line

    if order > TAYLOR_MAX:
        raise JaxGradUsageError(
            f"order={order} is above {TAYLOR_MAX}, the highest order computed here, to keep compiling to a few "
            f"seconds. Nested jax.grad grows 2-3x per order (order 16 of sin takes ~30 s to compile); Taylor mode "
            f"(jax.experimental.jet), used from order {NESTED_MAX + 1}, grows with the square of the order (a "
            f"three-term function: ~2 s at order 20, ~4 s at 32), and past order 34 its N! coefficients overflow "
            f"float32. Ask for order={TAYLOR_MAX} or less."
        )
    if order <= NESTED_MAX:
        return None, None
    reason = "Taylor mode (jax.experimental.jet): nested jax.grad grows 2-3x per order, jet with order²"
    if args is None:
        return TAYLOR, reason + " (not tried: no point)"
    x = args[argnums]

    def along(z: Any) -> Any:
        return fn(*args[:argnums], z, *args[argnums + 1 :])

    def attempt(g: Callable[..., Any]) -> None:
        # Other arguments stay Python values (closed over), as the user's own call has them.
        jax.eval_shape(g, x) if jit else g(x)

    try:
        attempt(taylor_derivative(along, 0, 2))
    except Exception as exc:  # which primitive jet lacks shows in many exception types
        try:
            attempt(along)
        except Exception:
            return TAYLOR, reason  # fn fails by itself: its own error shows when evaluated
        why = f"{type(exc).__name__}: {first_line(exc)}"
        if order <= NESTED_FALLBACK_MAX:
            return "nested", f"nested jax.grad: Taylor mode cannot trace {fn_name} ({why[:120]})"
        raise JaxGradUsageError(
            f"order={order} of {fn_name} needs Taylor mode (jax.experimental.jet), which cannot trace it "
            f"({why[:160]}): jet has no rule for some operations (arctan, loops, lax.cond) and for "
            f"custom_jvp functions such as jax.nn.relu. Nested jax.grad handles them but grows 2-3x per "
            f"order, so it is used only up to order={NESTED_FALLBACK_MAX}. Ask for a lower order, or write "
            f"{fn_name} with jnp operations jet supports."
        ) from None
    return TAYLOR, reason


def _derivative(fn: Callable[..., Any], t: Transform) -> Callable[..., Any]:
    if t.kind == "grad" and t.mode == TAYLOR:
        return taylor_derivative(fn, t.argnums, t.order)  # order > 1 needs one argnum and no aux
    if t.kind == "grad":
        d = jax.grad(fn, argnums=t.argnums, has_aux=t.aux)
        for _ in range(t.order - 1):
            d = jax.grad(d, argnums=t.argnums)
        return d
    if t.kind == "jac":
        jac = jax.jacfwd if t.mode == "fwd" else jax.jacrev
        return jac(fn, argnums=t.argnums, has_aux=t.aux)
    if t.kind == "hess":
        return jax.hessian(fn, argnums=t.argnums, has_aux=t.aux)
    raise ValueError(f"unknown transform kind {t.kind!r}")


def build(fn: Callable[..., Any], t: Transform) -> Built:
    """Build the derivative of ``fn`` and an evaluator returning ``(value, derivative, aux)``.

    The evaluator computes the value and the derivative in one compiled call (for ``grad``
    through ``jax.value_and_grad``, so the forward pass is shared). For ``jvp`` and ``vjp``
    both take the tangent or cotangent as a last extra argument, and the derivative
    function returns ``J v`` or ``uᵀ J`` alone.
    """
    if t.kind in ("jvp", "vjp"):
        directional = _directional(fn, t)

        def derivative(*call: Any) -> Any:
            return directional(*call)[1]

        if not t.jit:
            return Built(derivative, directional)
        return Built(jax.jit(derivative, static_argnums=t.static), jax.jit(directional, static_argnums=t.static))

    derivative = _derivative(fn, t)

    if t.kind == "grad" and t.order == 1:
        value_and_grad = jax.value_and_grad(fn, argnums=t.argnums, has_aux=t.aux)

        def evaluate(*args: Any) -> tuple[Any, Any, Any]:
            out, grads = value_and_grad(*args)
            return (out[0], grads, out[1]) if t.aux else (out, grads, None)

    elif t.aux:

        def evaluate(*args: Any) -> tuple[Any, Any, Any]:
            value, _ = fn(*args)
            deriv, aux = derivative(*args)
            return value, deriv, aux

    else:

        def evaluate(*args: Any) -> tuple[Any, Any, Any]:
            return fn(*args), derivative(*args), None

    if t.jit:
        return Built(jax.jit(derivative, static_argnums=t.static), jax.jit(evaluate, static_argnums=t.static))
    return Built(derivative, evaluate)


def _size(tree: Any) -> int:
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree_util.tree_leaves(tree))


def choose_mode(fn: Callable[..., Any], args: tuple[Any, ...], argnums: JaxArgnums, aux: bool) -> tuple[str, str]:
    """Pick ``jacfwd`` for tall and ``jacrev`` for wide Jacobians from the sizes.

    Forward mode pushes one tangent per input, reverse mode pulls one cotangent per
    output, so the cheaper one is the one with fewer passes.

    Args:
      fn: the function.
      args: the point, every positional argument.
      argnums: the differentiated positions.
      aux: ``fn`` returns ``(output, aux)``; only the output counts.

    Returns:
      ``(mode, reason)``, mode ``"fwd"`` or ``"rev"``.
    """
    out = jax.eval_shape(fn, *args)  # shapes only: nothing runs or compiles
    if aux:
        out = out[0]
    n_in = sum(_size(args[i]) for i in Argnums.of(argnums).positions)  # a Python number has no shape: one element
    n_out = _size(out)
    sizes = f"{n_out} output{'s' * (n_out != 1)}, {n_in} input{'s' * (n_in != 1)}"
    if n_out > n_in:
        return "fwd", f"auto: jacfwd ({sizes}: one forward pass per input is cheaper)"
    return "rev", f"auto: jacrev ({sizes}: one reverse pass per output is cheaper)"
