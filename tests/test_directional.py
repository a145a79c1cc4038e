"""``%jvp`` and ``%vjp``: directional derivatives against closed forms, options, checks and errors.

``.value`` is the primal output; ``.derivative`` is ``J v`` for ``%jvp`` (shaped like the output)
and ``uᵀ J`` for ``%vjp`` (shaped like the differentiated inputs, a tuple for several argnums).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from conftest import Shell
from conftest import close as shared_close
from IPython.core.error import UsageError

X = np.array([0.5, 1.0, 2.0])
V = np.array([1.0, -2.0, 0.5])
U1, U2 = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, -1.0])

SETUP = """
def pair(x):
    return jnp.sin(x), jnp.cos(x)

def bowl(x, y):
    return x ** 2 + (y - 1) ** 2

x = jnp.array([0.5, 1.0, 2.0])
v = jnp.array([1.0, -2.0, 0.5])
u = (jnp.array([1.0, 0.0, 2.0]), jnp.array([0.5, 1.0, -1.0]))
"""


@pytest.fixture
def nb(ip: Shell) -> Shell:
    ip.run_cell(SETUP)
    return ip


# Tight: an absolute 1e-6, and NumPy's default relative tolerance.
close = partial(shared_close, tol=1e-6, rtol=1e-7)


class TestJvp:
    def test_pair_is_cos_and_minus_sin_times_v(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp pair at=x tangent=v")
        close(r.value[0], np.sin(X))
        close(r.value[1], np.cos(X))
        close(r.derivative[0], np.cos(X) * V)
        close(r.derivative[1], -np.sin(X) * V)
        close(r.direction, V)
        assert r.kind == "jvp" and r.composition == "jax.jit(jax.jvp(pair, primals, (tangent,)))"

    def test_several_argnums_take_one_tangent_each(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp bowl at=(3.0, 5.0) argnums=0,1 tangent=(0.5, 2.0)")
        assert float(r.value) == pytest.approx(9.0 + 16.0)
        assert float(r.derivative) == pytest.approx(2 * 3.0 * 0.5 + 2 * (5.0 - 1) * 2.0)

    def test_one_later_argument(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp bowl at=(3.0, 5.0) wrt=y tangent=1.0")
        assert r.argnums == 1
        assert float(r.derivative) == pytest.approx(2 * (5.0 - 1))

    def test_integer_tangent_is_a_direction_too(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp bowl at=(3.0, 5.0) argnums=0,1 tangent=(1, 0)")
        assert float(r.derivative) == pytest.approx(6.0)

    def test_pytree_tangent(self, nb: Shell) -> None:
        nb.run_cell(
            "def model(p):\n    return jnp.tanh(p['w'] * p['x']).sum()\n"
            "p = {'w': jnp.array([0.5, -1.0]), 'x': jnp.array([2.0, 1.0])}\n"
            "dp = {'w': jnp.array([1.0, 0.0]), 'x': jnp.array([0.0, 3.0])}"
        )
        r = nb.run_cell("%jvp model at=p tangent=dp")
        w, x = np.array([0.5, -1.0]), np.array([2.0, 1.0])
        sech2 = 1 - np.tanh(w * x) ** 2
        want = np.sum(sech2 * (x * np.array([1.0, 0.0]) + w * np.array([0.0, 3.0])))
        assert float(r.derivative) == pytest.approx(want, rel=1e-5)

    def test_aux_is_returned_apart(self, nb: Shell) -> None:
        nb.run_cell("def traced(x):\n    y = jnp.sin(x)\n    return y, {'peak': jnp.max(y)}")
        r = nb.run_cell("%jvp traced at=x tangent=v aux=True")
        close(r.value, np.sin(X))
        close(r.derivative, np.cos(X) * V)
        assert float(r.aux["peak"]) == pytest.approx(np.sin(X).max(), rel=1e-6)

    def test_bound_function_computes_the_same(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp pair at=x tangent=v")
        assert r.bound_name == "pair_jvp"
        again = nb.run_cell("pair_jvp(jnp.array([0.1, 0.2, 0.3]), jnp.ones(3))")
        close(again[0], np.cos([0.1, 0.2, 0.3]))

    def test_cell_magic_and_no_jit(self, nb: Shell) -> None:
        r = nb.cell("jvp", "at=x tangent=v jit=False", "def cube(x):\n    return x ** 3\n")
        close(r.derivative, 3 * X**2 * V)
        assert not r.composition.startswith("jax.jit(")

    def test_display(self, nb: Shell) -> None:
        r = nb.run_cell("%jvp pair at=x tangent=v")
        text = str(r)
        assert text.startswith("Jacobian-vector product of pair")
        assert "tangent v" in text and "∂pair[0]·v" in text and "∂pair[1]·v" in text
        assert "bound   pair_jvp(x, v)" in text
        assert "∂pair[0]·v" in r._repr_html_()


class TestVjp:
    def test_pair_is_u_transpose_j(self, nb: Shell) -> None:
        r = nb.run_cell("%vjp pair at=x cotangent=u")
        close(r.value[0], np.sin(X))
        close(r.derivative, U1 * np.cos(X) - U2 * np.sin(X))
        assert r.kind == "vjp"

    def test_several_argnums_give_one_cotangent_each(self, nb: Shell) -> None:
        r = nb.run_cell("%vjp bowl at=(3.0, 5.0) argnums=0,1 cotangent=2.0")
        assert isinstance(r.derivative, tuple) and len(r.derivative) == 2
        assert float(r.derivative[0]) == pytest.approx(2.0 * 2 * 3.0)
        assert float(r.derivative[1]) == pytest.approx(2.0 * 2 * (5.0 - 1))

    def test_pytree_input(self, nb: Shell) -> None:
        nb.run_cell(
            "def spread(p):\n    return p['a'] * jnp.arange(1.0, 4.0) + p['b'] ** 2\n"
            "p = {'a': jnp.array(2.0), 'b': jnp.array([1.0, -1.0, 3.0])}"
        )
        r = nb.run_cell("%vjp spread at=p cotangent=jnp.array([1.0, 1.0, 2.0])")
        u = np.array([1.0, 1.0, 2.0])
        assert float(r.derivative["a"]) == pytest.approx(u @ np.arange(1.0, 4.0))
        close(r.derivative["b"], u * 2 * np.array([1.0, -1.0, 3.0]))

    def test_aux(self, nb: Shell) -> None:
        nb.run_cell("def traced(x):\n    return jnp.sin(x), jnp.sum(x)")
        r = nb.run_cell("%vjp traced at=x cotangent=v aux=True")
        close(r.derivative, V * np.cos(X))
        assert float(r.aux) == pytest.approx(X.sum())

    def test_display(self, nb: Shell) -> None:
        r = nb.run_cell("%vjp bowl at=(3.0, 5.0) argnums=0,1 cotangent=1.0")
        text = str(r)
        assert "cotangent u" in text and "uᵀ∂bowl/∂x" in text and "uᵀ∂bowl/∂y" in text
        assert "bound   bowl_vjp(x, y, u)" in text


class TestCheck:
    def test_jvp_and_vjp_pass(self, nb: Shell) -> None:
        for line in (
            "%jvp pair at=x tangent=v check=True",
            "%vjp pair at=x cotangent=u check=True",
            "%jvp bowl at=(3.0, 5.0) argnums=0,1 tangent=(0.5, 2.0) check=True",
            "%vjp bowl at=(3.0, 5.0) argnums=0,1 cotangent=2.0 check=True",
        ):
            r = nb.run_cell(line)
            assert r.check is not None and r.check.passed, (line, r.check.summary())
            assert "PASS" in str(r)

    def test_vjp_of_a_large_input_uses_random_directions(self, nb: Shell) -> None:
        nb.run_cell("def soft(x):\n    return jnp.tanh(x) * 2.0\nbig = jnp.linspace(-1.0, 1.0, 300)")
        r = nb.run_cell("%vjp soft at=big cotangent=jnp.ones(300) check=True")
        close(r.derivative, 2 * (1 - np.tanh(np.linspace(-1.0, 1.0, 300)) ** 2))
        assert r.check.passed and not r.check.args[0].exhaustive

    def test_wrong_rules_fail(self, nb: Shell) -> None:
        nb.run_cell(
            "@jax.custom_jvp\n"
            "def lying_sin(x):\n    return jnp.sin(x)\n"
            "@lying_sin.defjvp\n"
            "def lying_sin_jvp(primals, tangents):\n"
            "    (x,), (t,) = primals, tangents\n"
            "    return jnp.sin(x), 3.0 * jnp.cos(x) * t\n"
        )
        r = nb.run_cell("%jvp lying_sin at=x tangent=v check=True")
        close(r.derivative, 3 * np.cos(X) * V)  # what the lie computes
        assert not r.check.passed and "FAIL" in str(r)
        r = nb.run_cell("%vjp lying_sin at=x cotangent=v check=True")  # reverse mode transposes the lie
        assert not r.check.passed


class TestErrors:
    def test_missing_tangent(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = nb.usage_error("%jvp pair at=x", capsys)
        assert "tangent=" in message and "jnp.ones_like(x)" in message

    def test_missing_cotangent(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        assert "cotangent=" in nb.usage_error("%vjp pair at=x", capsys)

    def test_tangent_of_the_wrong_shape(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = nb.usage_error("%jvp pair at=x tangent=jnp.ones(4)", capsys)
        assert "f32[3]" in message and "f32[4]" in message and "jnp.ones_like(x)" in message

    def test_one_tangent_for_two_arguments(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = nb.usage_error("%jvp bowl at=(3.0, 5.0) argnums=0,1 tangent=1.0", capsys)
        assert "one tangent each" in message and "(jnp.ones_like(x), jnp.ones_like(y))" in message

    def test_cotangent_of_the_wrong_structure(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = nb.usage_error("%vjp pair at=x cotangent=v", capsys)
        assert "(f32[3], f32[3])" in message and "output of pair" in message

    def test_cotangent_of_the_wrong_shape(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = nb.usage_error("%vjp pair at=x cotangent=(jnp.ones(2), jnp.ones(2))", capsys)
        assert "(f32[2], f32[2])" in message

    def test_bad_input_binds_nothing_and_keeps_what_the_cell_defined(self, nb: Shell) -> None:
        before = dict(nb.ns)
        with pytest.raises(UsageError):
            nb.cell("jvp", "at=x tangent=jnp.ones(7)", "def fresh(x):\n    return jnp.sin(x)\n")
        assert "fresh_jvp" not in nb.ns  # what the magic would bind is withheld
        assert set(nb.ns) == set(before) | {"fresh"}  # the cell ran, like any cell
        close(nb.run_cell("%jvp fresh at=x tangent=v").derivative, V * np.cos(X))

    def test_forward_mode_of_a_custom_vjp_is_explained(self, nb: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        nb.run_cell(
            "@jax.custom_vjp\ndef rev_only(x):\n    return jnp.sin(x)\n"
            "rev_only.defvjp(lambda x: (rev_only(x), x), lambda x, g: (g * jnp.cos(x),))"
        )
        message = nb.usage_error("%jvp rev_only at=x tangent=v", capsys)
        assert "custom_vjp" in message and "%vjp" in message
        r = nb.run_cell("%vjp rev_only at=x cotangent=v")  # reverse mode is fine
        close(r.derivative, V * np.cos(X))
        assert "mode=rev" in nb.usage_error("%jac rev_only at=x mode=fwd", capsys)
        assert "jax.jacrev(jax.jacrev(f))" in nb.usage_error("%hess rev_only at=1.0", capsys)

    def test_user_errors_stay_the_users(self, nb: Shell) -> None:
        nb.run_cell("def broken(x):\n    raise ZeroDivisionError('mine')")
        error = nb.user_error("%jvp broken at=x tangent=v")
        assert isinstance(error, ZeroDivisionError) and str(error) == "mine"
