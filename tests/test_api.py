"""The plain Python API (``grad``, ``jac``, ``hess``, ``derive``): derivatives against closed forms
and central differences, result structure, options, and bad input, without a shell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import close

from jaxgrad_magic import DerivativeResult, derive, grad, hess, jac, jvp, vjp
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.point import resolve_point

X3 = np.array([1.0, 2.0, 3.0], dtype=np.float32)


def pipeline(x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.sin(x) ** 2)


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1) ** 2


def pair(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.sin(x), jnp.cos(x)


class TestGrad:
    def test_gradient_of_the_pipeline_is_sin_2x(self) -> None:
        r = grad(pipeline, at=jnp.asarray(X3))
        close(r.derivative, np.sin(2 * X3.astype(np.float64)))
        close(r.value, np.sum(np.sin(X3.astype(np.float64)) ** 2))
        assert r.kind == "grad" and r.mode is None

    def test_matches_central_differences(self, fd: Callable[..., np.ndarray]) -> None:
        def f(x: Any) -> Any:
            return jnp.sum(jnp.tanh(x) * x**2)

        x = np.array([0.3, -1.2, 2.0, 0.7])
        r = grad(f, at=jnp.asarray(x))
        close(r.derivative, fd(lambda a: np.sum(np.tanh(a) * a**2), (x,)), tol=1e-3)

    @pytest.mark.parametrize(
        ("order", "closed_form"),
        [
            (1, lambda x: np.sin(2 * x)),
            (2, lambda x: 2 * np.cos(2 * x)),
            (3, lambda x: -4 * np.sin(2 * x)),
        ],
    )
    def test_higher_orders_of_a_scalar_input(self, order: int, closed_form: Callable[[float], float]) -> None:
        r = grad(lambda x: jnp.sin(x) ** 2, at=0.7, order=order)
        close(r.derivative, closed_form(0.7))
        assert r.order == order
        assert r.composition.count("jax.grad(") == order

    @pytest.mark.parametrize(
        ("argnums", "expected"),
        [(0, 10.0), (1, 2.0), ((0, 1), (10.0, 2.0)), ((1, 0), (2.0, 10.0))],
    )
    def test_argnums(self, argnums: Any, expected: Any) -> None:
        r = grad(bowl, at=(5.0, 2.0), argnums=argnums)
        assert r.argnums == argnums
        if isinstance(argnums, tuple):
            assert isinstance(r.derivative, tuple) and len(r.derivative) == len(argnums)
        close(r.derivative, expected)
        close(r.value, 26.0)

    def test_wrt_names_the_parameters(self) -> None:
        r = grad(bowl, at=(5.0, 2.0), wrt=("y",))
        assert r.argnums == 1 and r.wrt == ("y",)
        close(r.derivative, 2.0)
        assert grad(bowl, at=(5.0, 2.0), wrt=("x", "y")).argnums == (0, 1)

    def test_a_descent_step(self) -> None:
        x = jnp.asarray(X3)
        r = grad(pipeline, at=x)
        stepped = x - 0.1 * r.derivative
        close(stepped, X3 - 0.1 * np.sin(2 * X3.astype(np.float64)))
        assert pipeline(stepped) < pipeline(x)

    def test_pytree_input_has_the_same_structure(self, fd: Callable[..., np.ndarray]) -> None:
        def loss(p: dict[str, Any]) -> Any:
            return jnp.sum((p["w"] * 2.0 + p["b"][0]) ** 2)

        params = {"w": jnp.array([1.0, -1.0]), "b": [jnp.asarray(0.5)]}
        r = grad(loss, at=params)
        assert jax.tree_util.tree_structure(r.derivative) == jax.tree_util.tree_structure(params)
        w, b = np.array([1.0, -1.0]), 0.5
        close(r.derivative["w"], 4.0 * (2 * w + b))
        close(r.derivative["b"][0], np.sum(2.0 * (2 * w + b)))

    def test_has_aux(self) -> None:
        def loss(x: Any) -> Any:
            return jnp.sum(x**2), {"norm": jnp.linalg.norm(x)}

        r = grad(loss, at=jnp.array([3.0, 4.0]), aux=True)
        close(r.derivative, [6.0, 8.0])
        close(r.value, 25.0)
        close(r.aux["norm"], 5.0)
        assert r.has_aux and "has_aux=True" in r.composition

    def test_jit_false_gives_the_same_numbers(self) -> None:
        compiled = grad(pipeline, at=jnp.asarray(X3))
        eager = grad(pipeline, at=jnp.asarray(X3), jit=False)
        close(eager.derivative, compiled.derivative)
        assert compiled.composition == "jax.jit(jax.grad(pipeline))"
        assert eager.composition == "jax.grad(pipeline)"

    def test_transformed_is_the_derivative_function(self) -> None:
        r = grad(bowl, at=(5.0, 2.0), argnums=(0, 1))
        close(r.transformed(1.0, 3.0), (2.0, 4.0))

    def test_without_a_point_nothing_is_evaluated(self) -> None:
        r = grad(bowl)
        assert r.point is None and r.value is None and r.derivative is None
        assert not r.evaluated
        assert r.point_source == "none" and r.missing == ("x", "y")
        close(r.transformed(5.0, 2.0), 10.0)

    def test_defaults_are_the_point(self) -> None:
        def f(x: Any = 2.0, y: Any = 3.0) -> Any:
            return x * y

        r = grad(f)
        assert r.point == (2.0, 3.0) and r.point_source == "defaults"
        close(r.derivative, 3.0)

    def test_a_point_resolved_from_notebook_variables(self) -> None:
        # The notebook layer resolves the point (here from variables named like the parameters);
        # the core takes it as it is.
        point = resolve_point(bowl, "bowl", namespace={"x": 5.0, "y": 2.0})
        r = derive("grad", bowl, at=point)
        assert r.point_source == "notebook variables" and r.point_names == ("x", "y")
        close(r.derivative, 10.0)

    def test_the_core_reads_no_notebook(self) -> None:
        # Without at= and without defaults nothing is evaluated: the core never looks for variables.
        r = grad(bowl)
        assert r.point is None and not r.evaluated

    def test_default_values_stay_python_constants(self) -> None:
        # A string flag and a loop count as defaults: traced, they would fail under jax.jit.
        def f(x: Any, mode: str = "sin", steps: int = 3) -> Any:
            for _ in range(steps):
                x = jnp.sin(x) if mode == "sin" else x
            return x

        r = grad(f, at=0.5)
        assert r.point == (0.5, "sin", 3)
        s1 = np.sin(0.5)
        s2 = np.sin(s1)
        close(r.derivative, np.cos(s2) * np.cos(s1) * np.cos(0.5))
        assert "mode = str 'sin'" in str(r)

    def test_repeated_calls_with_an_array_default(self) -> None:
        weights = jnp.array([1.0, 2.0])

        def f(x: Any, w: Any = weights) -> Any:
            return jnp.sum(w * x**2)

        class Model:
            def __call__(self, x: Any, w: Any = weights) -> Any:
                return jnp.sum(w * x**2)

        model = Model()
        for _ in range(2):  # the second call is a repeat, of the same function and point structure
            close(grad(f, at=jnp.ones(2)).derivative, [2.0, 4.0])
            close(grad(model, at=jnp.ones(2)).derivative, [2.0, 4.0])
        f.__defaults__ = (jnp.array([3.0, 1.0]),)
        close(grad(f, at=jnp.ones(2)).derivative, [6.0, 2.0])

    def test_result_is_a_frozen_dataclass(self) -> None:
        r = grad(bowl, at=(5.0, 2.0))
        assert isinstance(r, DerivativeResult)
        with pytest.raises(AttributeError):
            r.value = 1.0  # type: ignore[misc]


class TestJac:
    def test_jacobian_of_a_tuple_output(self) -> None:
        x = jnp.asarray(X3)
        for mode in ("rev", "fwd", "auto"):
            r = jac(pair, at=x, mode=mode)
            d_sin, d_cos = r.derivative
            close(d_sin, np.diag(np.cos(X3.astype(np.float64))))
            close(d_cos, np.diag(-np.sin(X3.astype(np.float64))))
            assert r.mode in ("rev", "fwd")
            assert r.composition.startswith(f"jax.jit(jax.jac{r.mode}(pair")

    def test_modes_agree_with_central_differences(self, fd: Callable[..., np.ndarray]) -> None:
        a = np.random.default_rng(0).normal(size=(4, 3))

        def f(x: Any) -> Any:
            return jnp.tanh(jnp.asarray(a, dtype=jnp.float32) @ x)

        x = np.array([0.1, -0.4, 0.3])
        expected = fd(lambda v: np.tanh(a @ v), (x,))
        for mode in ("rev", "fwd"):
            close(jac(f, at=jnp.asarray(x, dtype=jnp.float32), mode=mode).derivative, expected, tol=1e-3)

    def test_auto_picks_forward_for_tall_and_reverse_for_wide(self) -> None:
        tall = jac(lambda x: jnp.outer(x, jnp.arange(10.0)).ravel(), at=jnp.ones(2))
        assert tall.mode == "fwd"
        assert "jacfwd" in tall.mode_reason and "20 outputs, 2 inputs" in tall.mode_reason
        wide = jac(lambda x: jnp.sum(x) * jnp.ones(2), at=jnp.ones(10))
        assert wide.mode == "rev"
        assert "jacrev" in wide.mode_reason and "2 outputs, 10 inputs" in wide.mode_reason
        asked = jac(pair, at=jnp.ones(3), mode="fwd")
        assert asked.mode == "fwd" and "as asked" in asked.mode_reason

    @pytest.mark.parametrize(("argnums", "expected"), [(0, 10.0), (1, 2.0), ((0, 1), (10.0, 2.0))])
    def test_argnums(self, argnums: Any, expected: Any) -> None:
        r = jac(bowl, at=(5.0, 2.0), argnums=argnums)
        close(r.derivative, expected)
        assert isinstance(r.derivative, tuple) == isinstance(argnums, tuple)

    def test_pytree_output_and_input(self) -> None:
        def f(p: dict[str, Any]) -> dict[str, Any]:
            return {"s": jnp.sum(p["a"] ** 2), "v": p["a"] * p["b"]}

        p = {"a": jnp.array([1.0, 2.0]), "b": jnp.asarray(3.0)}
        r = jac(f, at=p)
        expected = jax.jacrev(f)(p)  # the structure JAX gives
        assert jax.tree_util.tree_structure(r.derivative) == jax.tree_util.tree_structure(expected)
        close(r.derivative["s"]["a"], [2.0, 4.0])
        close(r.derivative["v"]["a"], np.diag([3.0, 3.0]))
        close(r.derivative["v"]["b"], [1.0, 2.0])

    def test_has_aux(self) -> None:
        r = jac(lambda x: (jnp.sin(x), x.sum()), at=jnp.zeros(2), aux=True)
        close(r.derivative, np.eye(2))
        close(r.aux, 0.0)


class TestHess:
    def test_hessian_of_the_bowl(self) -> None:
        r = hess(bowl, at=(5.0, 2.0), argnums=(0, 1))
        close(r.derivative, ((2.0, 0.0), (0.0, 2.0)))
        assert "jax.jacfwd(jax.jacrev(bowl, argnums=(0, 1)), argnums=(0, 1))" in r.composition

    def test_hessian_matches_differences_of_the_gradient(self, fd: Callable[..., np.ndarray]) -> None:
        def f(x: Any) -> Any:
            return jnp.sum(jnp.sin(x) * x[::-1])

        x = np.array([0.5, 1.0, -0.3])
        r = hess(f, at=jnp.asarray(x))
        # The gradient in closed form, d/dx_i = cos(x_i) x_(n-1-i) + sin(x_(n-1-i)), differenced in float64.
        expected = fd(lambda v: np.cos(v) * v[::-1] + np.sin(v[::-1]), (x,))
        close(r.derivative, expected, tol=1e-4)
        close(r.derivative, np.asarray(r.derivative).T)

    def test_closed_form_cubic(self) -> None:
        x = jnp.array([1.0, -2.0, 0.5])
        close(hess(lambda v: jnp.sum(v**3), at=x).derivative, np.diag(6 * np.asarray(x)))

    def test_pytree_input(self) -> None:
        p = {"a": jnp.asarray(1.5), "b": jnp.array([1.0, 2.0])}
        r = hess(lambda q: q["a"] ** 2 * jnp.sum(q["b"]), at=p)
        close(r.derivative["a"]["a"], 2 * 3.0)
        close(r.derivative["a"]["b"], [3.0, 3.0])
        close(r.derivative["b"]["b"], np.zeros((2, 2)))

    def test_has_aux(self) -> None:
        r = hess(lambda x: (jnp.sum(x**2), {"first": x[0]}), at=jnp.array([3.0, 1.0]), aux=True)
        close(r.derivative, 2 * np.eye(2))
        close(r.aux["first"], 3.0)


class TestDirectional:
    def test_jvp_is_the_jacobian_times_the_tangent(self) -> None:
        x, v = np.array([0.5, 1.0, 2.0]), np.array([1.0, -1.0, 0.5])
        r = jvp(pair, at=jnp.asarray(x), tangent=jnp.asarray(v))
        assert r.kind == "jvp"
        close(r.derivative, (np.cos(x) * v, -np.sin(x) * v))  # J is diagonal for an elementwise map

    def test_vjp_is_the_cotangent_times_the_jacobian(self) -> None:
        r = vjp(bowl, at=(5.0, 2.0), cotangent=3.0, argnums=(0, 1))
        close(r.derivative, (3.0 * 10.0, 3.0 * 2.0))


class TestBadInput:
    def _message(self, call: Callable[[], Any]) -> str:
        with pytest.raises(JaxGradUsageError) as info:
            call()
        return str(info.value)

    def test_not_a_function(self) -> None:
        assert "needs a function" in self._message(lambda: grad(3.0))  # type: ignore[arg-type]

    def test_argnums_out_of_range(self) -> None:
        message = self._message(lambda: grad(bowl, at=(5.0, 2.0), argnums=2))
        assert "out of range" in message and "bowl(x, y)" in message and "numbered 0 to 1" in message
        assert "out of range" in self._message(lambda: grad(bowl, at=(5.0, 2.0), argnums=-1))

    def test_argnums_repeated(self) -> None:
        assert "repeats" in self._message(lambda: grad(bowl, at=(5.0, 2.0), argnums=(0, 0)))
        assert "repeats" in self._message(lambda: grad(bowl, at=(5.0, 2.0), wrt=("x", "x")))

    def test_wrt_unknown_suggests_a_parameter(self) -> None:
        def f(alpha: Any, beta: Any) -> Any:
            return alpha * beta

        message = self._message(lambda: grad(f, at=(1.0, 2.0), wrt=("alpah",)))
        assert "no parameter 'alpah'" in message and "Did you mean 'alpha'?" in message

    def test_a_function_without_parameters(self) -> None:
        message = self._message(lambda: grad(lambda: 1.0))
        assert "no positional parameters" in message

    def test_varargs_beyond_the_point(self) -> None:
        def f(*xs: Any) -> Any:
            return xs[0] * 2.0

        close(grad(f, at=1.5).derivative, 2.0)
        assert "argnums=1" in self._message(lambda: grad(f, at=1.5, argnums=1))

    def test_star_args_take_the_tuple_as_their_arguments(self) -> None:
        def f(*xs: Any) -> Any:
            return xs[0] * xs[1] ** 2

        r = grad(f, at=(2.0, 3.0), argnums=(0, 1))
        assert r.point == (2.0, 3.0)
        close(r.derivative, (9.0, 12.0))  # (x1^2, 2 x0 x1)

    def test_star_args_are_named_like_everywhere_else(self) -> None:
        def f(*xs: Any) -> Any:
            return xs[0] * xs[1]

        assert grad(f, at=(2.0, 3.0), argnums=1).wrt == ("arg1",)
        message = self._message(lambda: grad(f, at=(2.0, 3), argnums=1))
        assert "with respect to arg1 = 3" in message and "jnp.asarray(arg1, dtype=jnp.float32)" in message

    def test_integer_input_suggests_a_float(self) -> None:
        message = self._message(lambda: grad(bowl, at=(5, 2.0)))
        assert "`5.0` instead of `5`" in message and "floating-point" in message
        assert "integer" in self._message(lambda: grad(pipeline, at=jnp.arange(3)))
        assert "True.0" not in self._message(lambda: grad(pipeline, at=True))

    def test_a_point_that_is_not_a_pytree(self) -> None:
        message = self._message(lambda: grad(lambda d: d["w"], at={"w": 1.0, 1: 2.0}))
        assert "pytree" in message and "keys of one type" in message

    @pytest.mark.parametrize("at", ["abc", None, (), {}])
    def test_inputs_that_are_not_numbers(self, at: Any) -> None:
        message = self._message(lambda: grad(pipeline, at=at))
        assert "pipeline" in message and "x" in message

    def test_an_array_of_strings_is_not_numbers(self) -> None:
        message = self._message(lambda: grad(pipeline, at=np.array(["a", "b"])))
        assert "with respect to x: it is a ndarray" in message and "derivatives need numbers" in message

    def test_order_needs_a_scalar_input(self) -> None:
        message = self._message(lambda: grad(pipeline, at=jnp.ones(3), order=2))
        # Plain Python is told about the Python API (the magics' own messages name %hess).
        assert "scalar" in message and "jaxgrad_magic.hess(pipeline)" in message and "%" not in message

    def test_order_is_only_for_grad(self) -> None:
        assert "order=" in self._message(lambda: derive("jac", pipeline, at=jnp.ones(3), order=2))
        with pytest.raises(TypeError, match="order"):  # jac's signature has no order: Python says so
            jac(pipeline, at=jnp.ones(3), order=2)  # type: ignore[call-arg]

    def test_unknown_mode(self) -> None:
        assert "mode=" in self._message(lambda: jac(pair, at=jnp.ones(3), mode="sideways"))

    def test_non_scalar_output(self) -> None:
        message = self._message(lambda: grad(lambda x: x * 2.0, at=jnp.ones(3)))
        assert "jaxgrad_magic.jac" in message and ".sum()" in message and "(3,)" in message and "%" not in message

    @pytest.mark.parametrize("kind", ["grad", "jac", "hess"])
    @pytest.mark.parametrize("mode", ["rev", "fwd"])
    def test_aux_on_a_function_without_aux(self, kind: str, mode: str) -> None:
        options = {"mode": mode} if kind == "jac" else {}
        message = self._message(lambda: derive(kind, pipeline, at=jnp.ones(3), aux=True, **options))
        assert "aux=True" in message and "(output, aux)" in message

    def test_aux_on_a_triple(self) -> None:
        message = self._message(lambda: grad(lambda x: (x**2, x, x), at=1.0, aux=True))
        assert "tuple of 3" in message

    def test_a_tuple_output_without_aux(self) -> None:
        message = self._message(lambda: grad(lambda x: (jnp.sum(x**2), x), at=jnp.ones(2)))
        assert "aux=True" in message

    def test_python_control_flow_on_a_traced_value(self) -> None:
        def relu(x: Any) -> Any:
            if x > 0:
                return x
            return 0.0 * x

        message = self._message(lambda: grad(relu, at=1.0))
        assert "jnp.where" in message and "jax.lax.cond" in message and "relu" in message
        close(grad(relu, at=1.0, jit=False).derivative, 1.0)  # concrete values branch fine

    def test_numpy_on_a_traced_value(self) -> None:
        message = self._message(lambda: grad(lambda x: np.sin(x), at=1.0))
        assert "jnp.sin" in message

    def test_a_non_array_argument_under_jit(self) -> None:
        def f(x: Any, mode: str) -> Any:
            return jnp.sin(x) if mode == "sin" else x

        close(grad(f, at=(0.5, "sin")).derivative, np.cos(0.5))  # a plain string is static under jit

        def g(x: Any, opts: dict[str, str]) -> Any:
            return jnp.sin(x) if opts["mode"] == "sin" else x

        message = self._message(lambda: grad(g, at=(0.5, {"mode": "sin"})))  # a dict is traced
        assert "str" in message and "jit=False" in message and "default" in message
        close(grad(g, at=(0.5, {"mode": "sin"}), jit=False).derivative, np.cos(0.5))

    def test_the_users_own_error_passes_through(self) -> None:
        def f(x: Any) -> Any:
            raise ValueError("mine")

        with pytest.raises(ValueError, match="mine"):
            grad(f, at=1.0)
