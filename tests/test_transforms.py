"""``transforms``: the JAX expression each request names, the functions it builds, and the
Jacobian mode it picks, without a shell.

Every derivative is checked against a closed form written out in NumPy, never against JAX's own
transforms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import close

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.transforms import (
    TAYLOR,
    Transform,
    build,
    choose_mode,
    choose_order_method,
    composition,
    order_derivative,
)

X3 = np.array([0.5, 1.0, 2.0], dtype=np.float32)
V3 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
A = np.array([[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.5, 0.0, 2.0]], dtype=np.float32)  # not symmetric


def wave(x: jax.Array) -> jax.Array:
    """``Σ sin²x``: gradient ``sin 2x``."""
    return jnp.sum(jnp.sin(x) ** 2)


def bowl(x: Any, y: Any) -> Any:
    """``x² + (y - 1)²``: gradient ``(2x, 2(y - 1))``, Hessian ``2 I``."""
    return x**2 + (y - 1) ** 2


def pair(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sin x, x²)``: Jacobians ``diag(cos x)`` and ``diag(2x)``."""
    return jnp.sin(x), x**2


def quadratic(x: jax.Array) -> jax.Array:
    """``x·Ax / 2``: Hessian ``(A + Aᵀ) / 2``."""
    return x @ (jnp.asarray(A) @ x) / 2


def wide(x: jax.Array) -> jax.Array:
    """R³ → R²: ``(x₀x₁, sin x₂)``."""
    return jnp.stack([x[0] * x[1], jnp.sin(x[2])])


def wide_jacobian(x: np.ndarray) -> np.ndarray:
    """The closed-form Jacobian of :func:`wide`."""
    return np.array([[x[1], x[0], 0.0], [0.0, 0.0, np.cos(x[2])]])


def nested_sin(x: Any, n: int) -> Any:
    """``sin`` applied ``n`` times: ``range(n)`` needs a Python int."""
    for _ in range(n):
        x = jnp.sin(x)
    return x


def nested_sin_slope(x: float, n: int) -> float:
    """The derivative of :func:`nested_sin` by the chain rule, in float64."""
    value, slope = x, 1.0
    for _ in range(n):
        value, slope = np.sin(value), slope * np.cos(value)
    return slope


class TestComposition:
    @pytest.mark.parametrize(
        ("t", "text"),
        [
            (Transform("grad", 0), "jax.jit(jax.grad(f))"),
            (Transform("grad", 1), "jax.jit(jax.grad(f, argnums=1))"),
            (Transform("grad", (0, 1)), "jax.jit(jax.grad(f, argnums=(0, 1)))"),
            (Transform("grad", 0, order=2), "jax.jit(jax.grad(jax.grad(f)))"),
            (Transform("grad", 0, order=3, jit=False), "jax.grad(jax.grad(jax.grad(f)))"),
            (Transform("grad", 0, aux=True), "jax.jit(jax.grad(f, has_aux=True))"),
            (Transform("grad", 0, order=6, mode=TAYLOR), "jax.jit(jet(f, order=6))"),
            (Transform("jac", 0, mode="rev"), "jax.jit(jax.jacrev(f))"),
            (Transform("jac", 0, mode="fwd"), "jax.jit(jax.jacfwd(f))"),
            (Transform("jac", (0, 1), mode="fwd", jit=False), "jax.jacfwd(f, argnums=(0, 1))"),
            (Transform("hess", 0), "jax.jit(jax.jacfwd(jax.jacrev(f)))"),
            (Transform("hess", 1), "jax.jit(jax.jacfwd(jax.jacrev(f, argnums=1), argnums=1))"),
            (Transform("jvp", 0), "jax.jit(jax.jvp(f, primals, (tangent,)))"),
            (Transform("jvp", 1, jit=False), "jax.jvp(f, primals, (tangent,)) w.r.t. argnums=1"),
            (Transform("vjp", 0), "jax.jit(jax.vjp(f, *primals)[1](cotangent))"),
            (Transform("vjp", (0, 1)), "jax.jit(jax.vjp(f, *primals)[1](cotangent) w.r.t. argnums=(0, 1))"),
        ],
    )
    def test_names_the_jax_expression(self, t: Transform, text: str) -> None:
        assert composition(t) == text

    def test_uses_the_function_name(self) -> None:
        assert composition(Transform("jac", 0, mode="rev"), "pipeline") == "jax.jit(jax.jacrev(pipeline))"

    def test_static_arguments_show_as_static_argnums(self) -> None:
        assert composition(Transform("grad", 0, static=(1,))) == "jax.jit(jax.grad(f), static_argnums=1)"
        assert composition(Transform("grad", 0, static=(1, 2))) == "jax.jit(jax.grad(f), static_argnums=(1, 2))"
        # Without jit nothing is static: the expression has no jax.jit to carry it.
        assert composition(Transform("grad", 0, jit=False, static=(1,))) == "jax.grad(f)"


class TestGrad:
    def test_sum_of_sin_squared_has_gradient_sin_2x(self) -> None:
        built = build(wave, Transform("grad", 0))
        close(built.transformed(X3), np.sin(2 * X3.astype(np.float64)))
        value, derivative, aux = built.evaluate(X3)
        close(value, np.sum(np.sin(X3.astype(np.float64)) ** 2))
        close(derivative, np.sin(2 * X3.astype(np.float64)))
        assert aux is None

    def test_several_argnums_give_a_tuple(self) -> None:
        dx, dy = build(bowl, Transform("grad", (0, 1))).transformed(5.0, 2.0)
        close(dx, 10.0)
        close(dy, 2.0)
        dy_only = build(bowl, Transform("grad", 1)).transformed(5.0, 2.0)
        close(dy_only, 2.0)

    @pytest.mark.parametrize(("order", "closed"), [(2, lambda x: -np.sin(x)), (3, lambda x: -np.cos(x))])
    def test_order_n_is_grad_applied_n_times(self, order: int, closed: Any) -> None:
        built = build(jnp.sin, Transform("grad", 0, order=order))
        close(built.transformed(0.7), closed(0.7))
        value, derivative, _ = built.evaluate(0.7)
        close(value, np.sin(0.7))
        close(derivative, closed(0.7))

    @pytest.mark.parametrize("order", [5, 6])
    def test_taylor_mode_gives_the_nth_derivative_of_sin(self, order: int) -> None:
        # dⁿ/dxⁿ sin x = sin(x + nπ/2)
        want = np.sin(0.7 + order * np.pi / 2)
        close(build(jnp.sin, Transform("grad", 0, order=order, mode=TAYLOR)).transformed(0.7), want, 1e-4)
        close(order_derivative(jnp.sin, 0, order, taylor=True)(0.7), want, 1e-4)
        close(order_derivative(jnp.sin, 0, order, taylor=False)(0.7), want, 1e-4)

    def test_order_zero_is_the_function_itself(self) -> None:
        assert order_derivative(jnp.sin, 0, 0, taylor=False) is jnp.sin

    def test_aux_is_returned_beside_the_value(self) -> None:
        def traced(x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            return wave(x), {"peak": jnp.max(x)}

        built = build(traced, Transform("grad", 0, aux=True))
        value, derivative, aux = built.evaluate(X3)
        close(value, np.sum(np.sin(X3.astype(np.float64)) ** 2))
        close(derivative, np.sin(2 * X3.astype(np.float64)))
        close(aux["peak"], X3.max())
        grads, aux_again = built.transformed(X3)
        close(grads, np.sin(2 * X3.astype(np.float64)))
        close(aux_again["peak"], X3.max())

    def test_jit_traces_once_per_shape_and_no_jit_every_call(self) -> None:
        traces = []

        def counted(x: jax.Array) -> jax.Array:
            traces.append(1)
            return wave(x)

        jitted = build(counted, Transform("grad", 0)).transformed
        jitted(X3)
        jitted(X3 + 1)
        assert len(traces) == 1
        traces.clear()
        plain = build(counted, Transform("grad", 0, jit=False)).transformed
        close(plain(X3), np.sin(2 * X3.astype(np.float64)))
        plain(X3 + 1)
        assert len(traces) == 2


class TestJac:
    @pytest.mark.parametrize("mode", ["fwd", "rev"])
    def test_jacobian_of_sin_and_square_is_two_diagonals(self, mode: str) -> None:
        built = build(pair, Transform("jac", 0, mode=mode))
        d_sin, d_square = built.transformed(X3)
        close(d_sin, np.diag(np.cos(X3.astype(np.float64))))
        close(d_square, np.diag(2 * X3.astype(np.float64)))
        value, derivative, aux = built.evaluate(X3)
        close(value[0], np.sin(X3.astype(np.float64)))
        close(value[1], X3.astype(np.float64) ** 2)
        close(derivative[0], np.diag(np.cos(X3.astype(np.float64))))
        assert aux is None

    @pytest.mark.parametrize("mode", ["fwd", "rev"])
    def test_a_wide_jacobian_has_outputs_as_rows(self, mode: str) -> None:
        jacobian = build(wide, Transform("jac", 0, mode=mode)).transformed(X3)
        assert jacobian.shape == (2, 3)
        close(jacobian, wide_jacobian(X3.astype(np.float64)))

    @pytest.mark.parametrize("mode", ["fwd", "rev"])
    def test_several_argnums_give_one_block_per_argument(self, mode: str) -> None:
        def mixed(x: jax.Array, y: jax.Array) -> jax.Array:
            return x * jnp.sum(y)

        x, y = X3, V3
        dx, dy = build(mixed, Transform("jac", (0, 1), mode=mode)).transformed(x, y)
        close(dx, np.eye(3) * y.sum())
        close(dy, np.outer(x, np.ones(3)))


class TestHess:
    def test_hessian_of_a_quadratic_form_is_the_symmetric_part(self) -> None:
        built = build(quadratic, Transform("hess", 0))
        close(built.transformed(X3), (A + A.T) / 2)
        value, derivative, _ = built.evaluate(X3)
        close(value, X3.astype(np.float64) @ A.astype(np.float64) @ X3.astype(np.float64) / 2)
        close(derivative, (A + A.T) / 2)

    def test_hessian_over_two_arguments_is_a_nested_block(self) -> None:
        blocks = build(bowl, Transform("hess", (0, 1))).transformed(5.0, 2.0)
        close(blocks[0][0], 2.0)
        close(blocks[0][1], 0.0)
        close(blocks[1][0], 0.0)
        close(blocks[1][1], 2.0)

    def test_hessian_of_sin_sum_is_a_diagonal(self) -> None:
        close(build(wave, Transform("hess", 0)).transformed(X3), np.diag(2 * np.cos(2 * X3.astype(np.float64))))


class TestDirectional:
    def test_jvp_is_j_times_v(self) -> None:
        built = build(pair, Transform("jvp", 0))
        value, derivative, aux = built.evaluate(X3, V3)
        close(value[0], np.sin(X3))
        close(value[1], X3**2)
        close(derivative[0], np.cos(X3) * V3)
        close(derivative[1], 2 * X3 * V3)
        assert aux is None
        close(built.transformed(X3, V3)[0], np.cos(X3) * V3)

    def test_jvp_over_two_arguments_takes_one_tangent_each(self) -> None:
        def product(x: jax.Array, y: jax.Array) -> jax.Array:
            return x * y

        built = build(product, Transform("jvp", (0, 1)))
        # d(xy) = y dx + x dy
        close(built.transformed(X3, V3, (np.ones(3), np.full(3, 2.0))), V3 + 2 * X3)
        close(built.transformed(X3, V3, [np.ones(3), np.full(3, 2.0)]), V3 + 2 * X3)  # a list works too

    def test_an_integer_tangent_is_cast_to_the_point_dtype(self) -> None:
        derivative = build(jnp.sin, Transform("jvp", 0)).transformed(X3, np.array([1, 0, 2]))
        assert derivative.dtype == jnp.float32
        close(derivative, np.cos(X3) * np.array([1.0, 0.0, 2.0]))

    def test_vjp_is_u_transpose_j(self) -> None:
        built = build(pair, Transform("vjp", 0))
        u1, u2 = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, -1.0])
        value, derivative, _ = built.evaluate(X3, (u1, u2))
        close(value[0], np.sin(X3))
        close(derivative, u1 * np.cos(X3) + u2 * 2 * X3)
        close(built.transformed(X3, (u1, u2)), u1 * np.cos(X3) + u2 * 2 * X3)

    def test_vjp_over_two_arguments_gives_a_tuple(self) -> None:
        dx, dy = build(bowl, Transform("vjp", (0, 1))).transformed(5.0, 2.0, 3.0)
        close(dx, 3.0 * 10.0)
        close(dy, 3.0 * 2.0)

    def test_vjp_with_aux(self) -> None:
        def traced(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            return jnp.sin(x), jnp.sum(x)

        value, derivative, aux = build(traced, Transform("vjp", 0, aux=True)).evaluate(X3, V3)
        close(value, np.sin(X3))
        close(derivative, V3 * np.cos(X3))
        close(aux, X3.sum())

    @pytest.mark.parametrize(("kind", "word"), [("jvp", "tangent="), ("vjp", "cotangent=")])
    def test_a_misshapen_direction_is_a_teaching_error(self, kind: str, word: str) -> None:
        built = build(jnp.sin, Transform(kind, 0))
        with pytest.raises(JaxGradUsageError, match=word) as info:
            built.evaluate(X3, np.ones(4))
        assert "f32[3]" in str(info.value)

    def test_a_direction_that_is_not_numbers_is_a_teaching_error(self) -> None:
        with pytest.raises(JaxGradUsageError, match="must be numbers"):
            build(jnp.sin, Transform("jvp", 0, jit=False)).evaluate(X3, "abc")


class TestStatic:
    def test_a_static_loop_count_is_a_python_int(self) -> None:
        built = build(nested_sin, Transform("grad", 0, static=(1,)))
        close(built.transformed(1.0, 3), nested_sin_slope(1.0, 3))
        close(built.transformed(1.0, 2), nested_sin_slope(1.0, 2))  # another count, another program
        value, derivative, _ = built.evaluate(1.0, 3)
        close(value, np.sin(np.sin(np.sin(1.0))))
        close(derivative, nested_sin_slope(1.0, 3))

    def test_without_static_the_loop_count_is_traced_and_fails(self) -> None:
        with pytest.raises(jax.errors.TracerIntegerConversionError):
            build(nested_sin, Transform("grad", 0)).transformed(1.0, 3)

    @pytest.mark.parametrize(("kind", "mode"), [("jac", "fwd"), ("jac", "rev"), ("hess", None)])
    def test_static_works_for_jacobians_and_hessians(self, kind: str, mode: str | None) -> None:
        slope = build(nested_sin, Transform(kind, 0, mode=mode, static=(1,))).transformed(1.0, 2)
        if kind == "jac":
            close(slope, nested_sin_slope(1.0, 2))
        else:  # d²/dx² sin(sin x) = -sin(sin x) cos²x - cos(sin x) sin x
            x = 1.0
            close(slope, -np.sin(np.sin(x)) * np.cos(x) ** 2 - np.cos(np.sin(x)) * np.sin(x))

    def test_static_works_for_directional_derivatives(self) -> None:
        jvp = build(nested_sin, Transform("jvp", 0, static=(1,))).transformed(1.0, 3, 2.0)
        close(jvp, 2.0 * nested_sin_slope(1.0, 3))
        vjp = build(nested_sin, Transform("vjp", 0, static=(1,))).transformed(1.0, 3, 2.0)
        close(vjp, 2.0 * nested_sin_slope(1.0, 3))


class TestChooseMode:
    def test_tall_picks_forward(self) -> None:
        def tall(x: jax.Array) -> jax.Array:
            return jnp.outer(x, x).ravel()  # 2 inputs, 4 outputs

        mode, reason = choose_mode(tall, (jnp.ones(2),), 0, aux=False)
        assert mode == "fwd"
        assert "4 outputs, 2 inputs" in reason and "jacfwd" in reason

    def test_wide_picks_reverse(self) -> None:
        mode, reason = choose_mode(wide, (jnp.ones(3),), 0, aux=False)
        assert mode == "rev"
        assert "2 outputs, 3 inputs" in reason and "jacrev" in reason

    def test_square_and_scalar_pick_reverse(self) -> None:
        assert choose_mode(jnp.sin, (jnp.ones(3),), 0, aux=False)[0] == "rev"
        mode, reason = choose_mode(jnp.sin, (1.0,), 0, aux=False)  # a Python number is one element
        assert mode == "rev" and "1 output, 1 input" in reason

    def test_inputs_count_over_every_argnum(self) -> None:
        def spread(x: jax.Array, y: jax.Array) -> jax.Array:
            return jnp.concatenate([x, y, x])  # 6 outputs

        args = (jnp.ones(2), jnp.ones(2))
        assert choose_mode(spread, args, 0, aux=False)[0] == "fwd"  # 6 outputs, 2 inputs
        mode, reason = choose_mode(spread, (jnp.ones(4), jnp.ones(4)), (0, 1), aux=False)
        assert "12 outputs, 8 inputs" in reason and mode == "fwd"

    def test_aux_does_not_count_as_output(self) -> None:
        def with_aux(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            return jnp.sum(x), jnp.ones(100)

        mode, reason = choose_mode(with_aux, (jnp.ones(3),), 0, aux=True)
        assert mode == "rev" and "1 output, 3 inputs" in reason


class TestChooseOrderMethod:
    def test_low_orders_nest_grad(self) -> None:
        assert choose_order_method(jnp.sin, (0.5,), 0, 4, jit=True) == (None, None)

    def test_high_orders_use_taylor_mode(self) -> None:
        method, reason = choose_order_method(jnp.sin, (0.5,), 0, 5, jit=True)
        assert method == TAYLOR and "jet" in reason

    def test_above_the_cap_is_refused(self) -> None:
        with pytest.raises(JaxGradUsageError, match="order=21"):
            choose_order_method(jnp.sin, (0.5,), 0, 21, jit=True)
