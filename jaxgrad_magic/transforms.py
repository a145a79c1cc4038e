"""Build the transformed function (grad, jac, hess) and a fused evaluator for a point."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Argnums = int | tuple[int, ...]


class Transform(NamedTuple):
    """What to build: the kind and every option that changes the traced program."""

    kind: str  # "grad" | "jac" | "hess"
    argnums: Argnums
    order: int = 1
    mode: str | None = None  # "rev" | "fwd" for jac, else None
    aux: bool = False
    jit: bool = True


class Built(NamedTuple):
    """The derivative function (bound in the notebook) and the fused evaluator."""

    transformed: Callable[..., Any]
    evaluate: Callable[..., tuple[Any, Any, Any]]


def _argnums_text(argnums: Argnums) -> str:
    return "" if argnums == 0 else f", argnums={argnums}"


def composition(t: Transform, fn_name: str = "f") -> str:
    """The JAX expression that was built, e.g. ``jax.jit(jax.grad(jax.grad(f)))``."""
    opts = _argnums_text(t.argnums) + (", has_aux=True" if t.aux else "")
    if t.kind == "grad":
        inner = fn_name
        for _ in range(t.order):
            inner = f"jax.grad({inner}{opts})"
        text = inner
    elif t.kind == "jac":
        text = f"jax.jac{t.mode}({fn_name}{opts})"
    else:
        text = f"jax.hessian({fn_name}{opts})"  # = jax.jacfwd(jax.jacrev(f)), forward-over-reverse
    return f"jax.jit({text})" if t.jit else text


def _derivative(fn: Callable[..., Any], t: Transform) -> Callable[..., Any]:
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
    through ``jax.value_and_grad``, so the forward pass is shared).
    """
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
        return Built(jax.jit(derivative), jax.jit(evaluate))
    return Built(derivative, evaluate)


def _size(tree: Any) -> int:
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree_util.tree_leaves(tree))


def choose_mode(fn: Callable[..., Any], args: tuple[Any, ...], argnums: Argnums, aux: bool) -> tuple[str, str]:
    """Pick ``jacfwd`` for tall and ``jacrev`` for wide Jacobians from the sizes.

    Forward mode pushes one tangent per input, reverse mode pulls one cotangent per
    output, so the cheaper one is the one with fewer passes.

    Returns:
      ``(mode, reason)``, mode ``"fwd"`` or ``"rev"``.
    """
    out = jax.eval_shape(fn, *args)
    if aux:
        out = out[0]
    idx = (argnums,) if isinstance(argnums, int) else argnums
    n_in = sum(_size(jax.eval_shape(lambda a: a, args[i])) for i in idx)
    n_out = _size(out)
    sizes = f"{n_out} output{'s' * (n_out != 1)}, {n_in} input{'s' * (n_in != 1)}"
    if n_out > n_in:
        return "fwd", f"auto: jacfwd ({sizes}: one forward pass per input is cheaper)"
    return "rev", f"auto: jacrev ({sizes}: one reverse pass per output is cheaper)"
