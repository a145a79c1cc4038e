"""Arguments that are not differentiated and plain Python (a loop count, a size, a mode) just work.

Users write ``for _ in range(n)`` and ``jnp.zeros(n)``; under ``jax.jit`` a traced ``n`` breaks
both. Non-differentiated Python ints, strings, booleans, None and tuples of them are static, as
users mean them; floats and arrays stay traced. Checked in a real shell against closed forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import close

import jaxgrad_magic
from jaxgrad_magic.errors import JaxGradUsageError

if TYPE_CHECKING:
    from conftest import Shell

LOOP = "def f(x, n):\n    for _ in range(n):\n        x = jnp.sin(x)\n    return x\n"


def nested_sin(x: float, n: int) -> tuple[float, float]:
    """``sin`` applied ``n`` times at ``x``, and its derivative by the chain rule, in float64."""
    value, slope = x, 1.0
    for _ in range(n):
        value, slope = np.sin(value), slope * np.cos(value)
    return value, slope


class TestLoopCount:
    def test_a_loop_count_in_at(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=(1.0, 3)\n" + LOOP)
        value, slope = nested_sin(1.0, 3)
        # d/dx sin(sin(sin(x))) = cos(sin(sin x)) cos(sin x) cos x
        close(slope, np.cos(np.sin(np.sin(1.0))) * np.cos(np.sin(1.0)) * np.cos(1.0), 1e-12)
        close(r.value, value)
        close(r.derivative, slope)
        assert "static_argnums=1" in r.composition

    def test_a_loop_count_from_a_notebook_variable(self, ip: Shell) -> None:
        ip.run_cell(LOOP + "x = 0.5\nn = 3\n")
        r = ip.run_cell("%jgrad f")
        assert r.point_source == "notebook variables"
        close(r.derivative, nested_sin(0.5, 3)[1])

    def test_the_bound_derivative_takes_any_count(self, ip: Shell) -> None:
        ip.run_cell("%%jgrad at=(1.0, 3)\n" + LOOP)
        for n in (1, 2, 5):
            close(ip.ns["f_grad"](0.4, n), nested_sin(0.4, n)[1])

    def test_a_rerun_with_another_count_is_not_stale(self, ip: Shell) -> None:
        ip.run_cell(LOOP)
        for n in (3, 4, 3, 6):
            r = ip.run_cell(f"%jgrad f at=(0.8, {n})")
            close(r.value, nested_sin(0.8, n)[0])
            close(r.derivative, nested_sin(0.8, n)[1])

    def test_a_target_jitted_with_static_argnums(self, ip: Shell) -> None:
        ip.run_cell(LOOP + "g = jax.jit(f, static_argnums=1)\n")
        r = ip.run_cell("%jgrad g at=(1.0, 3)")
        close(r.derivative, nested_sin(1.0, 3)[1])
        jvp = ip.run_cell("%jvp g at=(1.0, 2) tangent=2.0")
        close(jvp.derivative, 2.0 * nested_sin(1.0, 2)[1])

    def test_without_jit_too(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=(1.0, 3) jit=False\n" + LOOP)
        close(r.derivative, nested_sin(1.0, 3)[1])

    def test_through_the_python_api(self) -> None:
        def f(x: Any, n: int) -> Any:
            for _ in range(n):
                x = jnp.sin(x)
            return x

        close(jaxgrad_magic.grad(f, at=(1.0, 3)).derivative, nested_sin(1.0, 3)[1])
        close(jaxgrad_magic.hess(f, at=(1.0, 1)).derivative, -np.sin(1.0))

    def test_a_second_derivative_with_a_loop_count(self, ip: Shell) -> None:
        ip.run_cell(LOOP)
        r = ip.run_cell("%jgrad f at=(0.6, 2) order=2")
        # d²/dx² sin(sin x) = -sin(sin x) cos²x - cos(sin x) sin x
        close(r.derivative, -np.sin(np.sin(0.6)) * np.cos(0.6) ** 2 - np.cos(np.sin(0.6)) * np.sin(0.6))

    def test_directional_products_check_and_jaxpr(self, ip: Shell) -> None:
        ip.run_cell(LOOP)
        slope = nested_sin(0.7, 3)[1]
        close(ip.run_cell("%jvp f at=(0.7, 3) tangent=3.0").derivative, 3.0 * slope)
        close(ip.run_cell("%vjp f at=(0.7, 3) cotangent=2.0").derivative, 2.0 * slope)
        checked = ip.run_cell("%jgrad f at=(0.7, 3) check=True")
        assert checked.check is not None and checked.check.passed
        shown = ip.run_cell("%jgrad f at=(0.7, 3) show=jaxpr")
        assert shown.jaxpr is not None and shown.jaxpr.count("sin") == 3  # the loop, unrolled for n=3


class TestOtherPlainValues:
    def test_a_size_shapes_the_jacobian(self, ip: Shell) -> None:
        ip.run_cell("def rep(x, n):\n    return jnp.ones(n) * x ** 2\n")
        for n in (2, 5):
            r = ip.run_cell(f"%jac rep at=(1.5, {n})")
            close(r.derivative, np.full(n, 3.0))
            assert f"{n} outputs" in r.mode_reason  # the mode is chosen for this size, not the last

    def test_strings_tuples_booleans_and_none(self, ip: Shell) -> None:
        ip.run_cell(
            "def h(x, mode, shape, square, extra):\n"
            "    assert extra is None\n"
            "    y = x ** 2 if square else x\n"
            "    return jnp.sum(jnp.ones(shape) * (y if mode == 'plain' else 3.0 * y))\n"
        )
        r = ip.run_cell("%jgrad h at=(2.0, 'plain', (2, 3), True, None)")
        close(r.derivative, 6 * 2 * 2.0)  # six elements of x**2
        r = ip.run_cell("%jgrad h at=(2.0, 'scaled', (4,), False, None)")
        close(r.derivative, 4 * 3.0)

    def test_floats_stay_traced(self, ip: Shell) -> None:
        ip.run_cell("def scaled(x, a):\n    return a * jnp.sin(x)\n")
        r = ip.run_cell("%jgrad scaled at=(0.3, 2.0)")
        assert "static_argnums" not in r.composition
        close(r.derivative, 2.0 * np.cos(0.3))

    def test_a_long_tuple_of_ints_is_data_not_static(self, ip: Shell) -> None:
        ip.run_cell("def pick(x, idx):\n    return jnp.sum(x[jnp.asarray(idx)] ** 2)\n")
        r = ip.run_cell("%jgrad pick at=(jnp.arange(100.0), tuple(range(0, 100, 2)))")
        assert "static_argnums" not in r.composition  # traced: a new index set does not recompile
        expected = np.zeros(100)
        expected[::2] = 2 * np.arange(0, 100, 2)
        close(r.derivative, expected)
        short = ip.run_cell("%jgrad pick at=(jnp.arange(100.0), (1, 3))")
        assert "static_argnums=1" in short.composition

    def test_the_users_own_error_on_a_plain_value_is_theirs(self, ip: Shell) -> None:
        ip.run_cell("def g(x, n):\n    return x * (1 / (n - 3))\n")
        error = ip.user_error("%jgrad g at=(1.0, 3)")
        assert isinstance(error, ZeroDivisionError)  # Python ints, as in the user's own code
        close(ip.run_cell("%jgrad g at=(1.0, 5)").derivative, 0.5)

    def test_a_count_given_as_an_array_says_to_pass_a_python_int(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ip.run_cell(LOOP)
        message = ip.usage_error("%jgrad f at=(1.0, np.int64(3))", capsys)
        assert "\n" not in message.strip()
        assert "Python int" in message and "range(n)" in message
        assert "f_grad" not in ip.ns


class TestNumpyScalarOptions:
    def test_argnums_and_aux_as_numpy_scalars_through_the_api(self) -> None:
        def f(a: Any, b: Any) -> Any:
            return a * b**2

        close(jaxgrad_magic.grad(f, at=(2.0, 3.0), argnums=np.int64(1)).derivative, 2 * 2.0 * 3.0)
        both = jaxgrad_magic.jac(f, at=(2.0, 3.0), argnums=(np.int32(0), np.int64(1))).derivative
        close(both, (9.0, 12.0))

        def with_aux(x: Any) -> Any:
            return jnp.sin(x), {"x": x}

        r = jaxgrad_magic.grad(with_aux, at=0.5, aux=np.True_)
        assert r.has_aux is True
        close(r.derivative, np.cos(0.5))
        close(r.aux["x"], 0.5)

    def test_argnums_and_aux_as_numpy_scalars_in_a_magic_line(self, ip: Shell) -> None:
        ip.run_cell("def f(a, b):\n    return jnp.sin(a) * b ** 2, a\n")
        r = ip.run_cell("%jgrad f at=(0.5, 3.0) argnums=np.int64(1) aux=np.True_")
        close(r.derivative, 2 * np.sin(0.5) * 3.0)
        close(r.aux, 0.5)
        r = ip.run_cell("%hess f at=(0.5, 3.0) argnums=np.int64(0) aux=np.bool_(True)")
        close(r.derivative, -np.sin(0.5) * 9.0)

    def test_a_numpy_integer_that_is_no_position_is_refused(self) -> None:
        with pytest.raises(JaxGradUsageError, match="argnums="):
            jaxgrad_magic.grad(lambda a, b: a * b, at=(1.0, 2.0), argnums=np.float64(1.0))


class TestUnicodeNames:
    def test_a_greek_function_and_bound_name(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=0.3\ndef φ(x):\n    return jnp.sin(x)\n")
        close(r.derivative, np.cos(0.3))
        assert ip.ns["φ_grad"] is r.transformed
        r = ip.run_cell("%jgrad φ at=0.7 name=δf")
        close(r.derivative, np.cos(0.7))
        assert ip.ns["δf"] is r.transformed
        close(ip.ns["δf"](0.1), np.cos(0.1))

    def test_parameters_named_in_other_scripts(self, ip: Shell) -> None:
        ip.run_cell("def énergie(θ, β):\n    return β * θ ** 2\n")
        r = ip.run_cell("%jac énergie at=(2.0, 5.0) wrt=β")
        close(r.derivative, 4.0)
        assert r.argnums == 1
