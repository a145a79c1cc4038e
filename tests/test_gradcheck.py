"""``check=True``: the finite-difference check passes on correct derivatives and fails on wrong ones.

Every "correct" case also compares the derivative itself with a closed form written here, so the
check is never the only witness. The wrong derivatives are real JAX programs whose custom rules
lie (``jax.custom_vjp`` / ``jax.custom_jvp``), not doctored results.
"""

from __future__ import annotations

import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Shell, run_json_script
from IPython.utils.capture import capture_output

from jaxgrad_magic import grad, hess, jac
from jaxgrad_magic.api import derive
from jaxgrad_magic.gradcheck import MAX_EXHAUSTIVE, RANDOM_DIRECTIONS, GradCheck, check_derivative, tolerances

X3 = np.array([1.0, 2.0, 3.0])

# Functions whose custom differentiation rules are wrong on purpose.
LIARS = """
@jax.custom_vjp
def doubled(x):
    return jnp.sum(jnp.sin(x))

def doubled_fwd(x):
    return doubled(x), x

def doubled_bwd(x, g):
    return (2 * g * jnp.cos(x),)  # twice the true gradient

doubled.defvjp(doubled_fwd, doubled_bwd)

@jax.custom_vjp
def wrong_sin(x):
    return jnp.sin(x)

def wrong_sin_fwd(x):
    return wrong_sin(x), x

def wrong_sin_bwd(x, g):
    return (2 * g * jnp.cos(x),)

wrong_sin.defvjp(wrong_sin_fwd, wrong_sin_bwd)

# First derivative right, second wrong: the rule of sin uses a cos whose own rule has the wrong sign.
@jax.custom_jvp
def bad_cos(x):
    return jnp.cos(x)

@bad_cos.defjvp
def bad_cos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.cos(x), jnp.sin(x) * t  # the truth is -sin(x) * t

@jax.custom_jvp
def good_sin(x):
    return jnp.sin(x)

@good_sin.defjvp
def good_sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.sin(x), bad_cos(x) * t

def curved(x):
    return jnp.sum(good_sin(x))
"""


def verdicts(check: GradCheck) -> dict[str, bool]:
    """Argument name -> passed."""
    return {a.name: a.passed for a in check.args}


@pytest.fixture
def liars(ip: Shell) -> Shell:
    """The shell with the lying functions defined in the notebook."""
    ip.run_cell(LIARS)
    return ip


class TestPasses:
    def test_sum_of_squared_sines(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)\nx = jnp.array([1.0, 2.0, 3.0])")
        r = ip.run_cell("%jgrad wave at=x check=True")
        np.testing.assert_allclose(r.derivative, np.sin(2 * X3), rtol=1e-5, atol=1e-6)  # d sin²x = sin 2x
        assert r.check.passed and verdicts(r.check) == {"x": True}
        a = r.check.args[0]
        assert a.exhaustive and a.directions == 3
        assert a.max_abs_error <= a.atol + a.rtol * 2  # the errors are real numbers, and small

    def test_two_arguments_are_checked_one_by_one(self, ip: Shell) -> None:
        ip.run_cell("def mix(x, y):\n    return x ** 2 * y + jnp.sin(y)")
        r = ip.run_cell("%jgrad mix at=(1.5, 0.5) argnums=0,1 check=True")
        np.testing.assert_allclose(r.derivative, (2 * 1.5 * 0.5, 1.5**2 + np.cos(0.5)), rtol=1e-6)
        assert verdicts(r.check) == {"x": True, "y": True}
        assert r.check.passed

    def test_a_pytree_argument(self, ip: Shell) -> None:
        ip.run_cell(
            "def loss(params, X, y):\n"
            "    return jnp.mean((X @ params['w'] + params['b'] - y) ** 2)\n"
            "X = jnp.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])\n"
            "y = jnp.array([1.0, 0.0, -1.0])\n"
            "params = {'w': jnp.array([0.3, -0.2]), 'b': jnp.array(0.1)}"
        )
        r = ip.run_cell("%jgrad loss check=True")
        X, y = np.asarray(ip.ns["X"], np.float64), np.asarray(ip.ns["y"], np.float64)
        w, b = np.array([0.3, -0.2]), 0.1
        residual = X @ w + b - y
        np.testing.assert_allclose(r.derivative["w"], 2 * X.T @ residual / 3, rtol=1e-5)
        np.testing.assert_allclose(r.derivative["b"], 2 * residual.mean(), rtol=1e-5)
        assert verdicts(r.check) == {"params": True}
        assert r.check.args[0].directions == 3  # all three numbers of the pytree, flattened

    def test_jacobian_of_two_outputs(self, ip: Shell) -> None:
        ip.run_cell("def pair(x):\n    return jnp.sin(x), jnp.cos(x)\nx = jnp.array([1.0, 2.0, 3.0])")
        for mode in ("fwd", "rev"):
            r = ip.run_cell(f"%jac pair at=x mode={mode} check=True")
            np.testing.assert_allclose(r.derivative[0], np.diag(np.cos(X3)), atol=1e-6)
            np.testing.assert_allclose(r.derivative[1], np.diag(-np.sin(X3)), atol=1e-6)
            assert r.check.passed, r.check.summary()

    def test_hessian(self, ip: Shell) -> None:
        ip.run_cell("def cubic(x, y):\n    return x ** 3 * y + jnp.exp(y)")
        r = ip.run_cell("%hess cubic at=(1.0, 0.5) argnums=0,1 check=True")
        want = ((6 * 1.0 * 0.5, 3 * 1.0**2), (3 * 1.0**2, np.exp(0.5)))
        np.testing.assert_allclose(np.asarray(r.derivative), want, rtol=1e-6)
        assert verdicts(r.check) == {"x": True, "y": True}

    def test_hessian_of_an_array_argument(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%hess wave at=jnp.array([1.0, 2.0, 3.0]) check=True")
        np.testing.assert_allclose(r.derivative, np.diag(2 * np.cos(2 * X3)), atol=1e-5)
        assert r.check.passed

    def test_hessian_of_a_vector_output(self, ip: Shell) -> None:
        # jax.hessian of a non-scalar output is the Jacobian of its Jacobian: a 3-index array.
        ip.run_cell("def waves(x):\n    return 2.0 * jnp.sin(x)")
        r = ip.run_cell("%hess waves at=jnp.array([0.5, 1.0, 1.5]) check=True")
        x = np.array([0.5, 1.0, 1.5])
        want = np.zeros((3, 3, 3))
        want[np.arange(3), np.arange(3), np.arange(3)] = -2 * np.sin(x)
        np.testing.assert_allclose(r.derivative, want, atol=1e-6)
        assert r.check.passed, r.check.summary()

    def test_second_derivative_with_order(self, ip: Shell) -> None:
        ip.run_cell("def sq_sin(x):\n    return jnp.sin(x) ** 2")
        r = ip.run_cell("%jgrad sq_sin at=0.7 order=2 check=True stepper=False")
        assert float(r.derivative) == pytest.approx(2 * np.cos(1.4), rel=1e-5)
        assert r.check.passed, r.check.summary()  # against differences of the first derivative, not of f
        r3 = ip.run_cell("%jgrad sq_sin at=0.7 order=3 check=True stepper=False")
        assert float(r3.derivative) == pytest.approx(-4 * np.sin(1.4), rel=1e-5)
        assert r3.check.passed

    def test_aux_output_is_left_out(self, ip: Shell) -> None:
        ip.run_cell("def with_aux(x):\n    return jnp.sum(x ** 2), {'norm': jnp.linalg.norm(x)}")
        r = ip.run_cell("%jgrad with_aux at=jnp.array([1.0, -2.0]) aux=True check=True stepper=False")
        np.testing.assert_allclose(r.derivative, [2.0, -4.0])
        assert r.check.passed

    def test_large_value_next_to_a_small_change(self, ip: Shell) -> None:
        # The values are ~1000 while the gradient is ~1: float32 rounding of f(x +- h v) is far
        # above atol + rtol |FD|, and must not turn a correct gradient into a failure.
        ip.run_cell("def offset(x):\n    return jnp.sum(jnp.sin(x)) + 1000.0")
        r = ip.run_cell("%jgrad offset at=jnp.linspace(0.0, 1.0, 100) check=True stepper=False")
        np.testing.assert_allclose(r.derivative, np.cos(np.linspace(0.0, 1.0, 100)), rtol=1e-5)
        assert r.check.passed, r.check.summary()
        assert r.check.args[0].noise > r.check.args[0].atol
        assert "rounding noise" in r.check.summary()


class TestFails:
    def test_wrong_custom_vjp_fails_for_grad(self, liars: Shell) -> None:
        r = liars.run_cell("%jgrad doubled at=jnp.array([1.0, 2.0]) check=True stepper=False")
        np.testing.assert_allclose(r.derivative, 2 * np.cos([1.0, 2.0]), rtol=1e-6)  # the lie, as JAX computed it
        assert not r.check.passed and verdicts(r.check) == {"x": False}
        # The error is the size of the lie (cos x): nowhere near the tolerance.
        assert r.check.args[0].max_abs_error == pytest.approx(np.cos(1.0), rel=1e-2)

    def test_wrong_custom_vjp_fails_for_jac(self, liars: Shell) -> None:
        r = liars.run_cell("%jac wrong_sin at=jnp.array([0.5, 1.0, 1.5]) mode=rev check=True")
        np.testing.assert_allclose(r.derivative, np.diag(2 * np.cos([0.5, 1.0, 1.5])), atol=1e-6)
        assert not r.check.passed

    def test_wrong_second_derivative_fails_for_hess_but_not_for_grad(self, liars: Shell) -> None:
        g = liars.run_cell("%jgrad curved at=jnp.array([0.5, 1.0]) check=True stepper=False")
        np.testing.assert_allclose(g.derivative, np.cos([0.5, 1.0]), rtol=1e-6)
        assert g.check.passed  # the first derivative is right
        h = liars.run_cell("%hess curved at=jnp.array([0.5, 1.0]) check=True")
        np.testing.assert_allclose(h.derivative, np.diag(np.sin([0.5, 1.0])), atol=1e-6)  # true: -sin
        assert not h.check.passed

    def test_wrong_second_derivative_of_a_vector_output_fails(self, liars: Shell) -> None:
        liars.run_cell("def curved_vec(x):\n    return good_sin(x) * 2.0")
        r = liars.run_cell("%hess curved_vec at=jnp.array([0.5, 1.0]) check=True")
        assert r.derivative.shape == (2, 2, 2)
        assert not r.check.passed

    def test_wrong_rule_fails_along_random_directions(self, liars: Shell) -> None:
        n = 4 * MAX_EXHAUSTIVE
        r = liars.run_cell(f"%jgrad doubled at=jnp.linspace(0.0, 1.0, {n}) check=True stepper=False")
        a = r.check.args[0]
        assert not a.exhaustive and a.directions == RANDOM_DIRECTIONS
        assert not r.check.passed
        assert f"{RANDOM_DIRECTIONS} random directions" in str(r)

    def test_correct_large_argument_passes_along_random_directions(self, ip: Shell) -> None:
        n = 4 * MAX_EXHAUSTIVE
        ip.run_cell("def smooth(x):\n    return jnp.sum(jnp.sin(x))")
        r = ip.run_cell(f"%jgrad smooth at=jnp.linspace(0.0, 1.0, {n}) check=True stepper=False")
        np.testing.assert_allclose(r.derivative, np.cos(np.linspace(0.0, 1.0, n)), rtol=1e-5)
        assert not r.check.args[0].exhaustive and r.check.passed


class TestReport:
    def test_text_and_html_say_pass(self, ip: Shell) -> None:
        ip.run_cell("def mix(x, y):\n    return x ** 2 * y")
        r = ip.run_cell("%jgrad mix at=(1.5, 0.5) argnums=0,1 check=True stepper=False")
        text, page = str(r), r._repr_html_()
        assert "PASS: central differences, float32" in text
        assert "x: ok" in text and "y: ok" in text and "MISMATCH" not in text
        assert "class='jgm-pass'" in page and "matches finite differences" in page and "class='jgm-fail'" not in page
        assert "<td>x</td>" in page and "<td>y</td>" in page

    def test_text_and_html_say_fail(self, liars: Shell) -> None:
        r = liars.run_cell("%jgrad doubled at=jnp.array([1.0, 2.0]) check=True stepper=False")
        text, page = str(r), r._repr_html_()
        assert "FAIL: central differences" in text and "x: MISMATCH" in text
        assert "class='jgm-fail'" in page and "does NOT match finite differences" in page

    def test_shown_through_the_display_system(self, liars: Shell) -> None:
        with capture_output() as shown:
            liars.run_cell("%jgrad doubled at=jnp.array([1.0, 2.0]) check=True stepper=False")
        (bundle,) = [o.data for o in shown.outputs]
        assert "FAIL" in bundle["text/plain"] and "class='jgm-fail'" in bundle["text/html"]

    def test_float32_says_how_to_get_a_sharper_check(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%jgrad wave at=jnp.array([1.0, 2.0]) check=True stepper=False")
        assert r.check.dtype == "float32"
        assert 'jax.config.update("jax_enable_x64", True)' in r.check.note
        assert 'jax.config.update("jax_enable_x64", True)' in str(r)
        assert "jax_enable_x64" in r._repr_html_()

    def test_check_needs_a_point(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def lonely(q):\n    return q ** 2")
        message = ip.usage_error("%jgrad lonely check=True", capsys)
        assert "at=" in message and "check=True" in message

    def test_check_is_only_a_boolean(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        message = ip.usage_error("%jgrad wave at=1.0 check=maybe", capsys)
        assert "check" in message


@jax.custom_vjp
def lying_sum_sin(x: Any) -> Any:
    """sum(sin x) whose reverse rule doubles the gradient."""
    return jnp.sum(jnp.sin(x))


lying_sum_sin.defvjp(lambda x: (lying_sum_sin(x), x), lambda x, g: (2 * g * jnp.cos(x),))


@jax.custom_vjp
def lying_half_line(x: Any) -> Any:
    """sin on x >= 0, NaN left of 0 (a domain edge at 0), with a doubled reverse rule."""
    return jnp.where(x >= 0, jnp.sin(x), jnp.nan)


lying_half_line.defvjp(lambda x: (lying_half_line(x), x), lambda x, g: (2 * g * jnp.cos(x),))


KINK = 0.501  # relu(x - KINK) at x = 0.5: a kink 1e-3 away, inside the usual float32 step (2.5e-3)


@jax.custom_vjp
def lying_relu(x: Any) -> Any:
    """relu(x - KINK) with a reverse rule that says 0.5 on the flat side, where the truth is 0."""
    return jax.nn.relu(x - KINK)


lying_relu.defvjp(lambda x: (lying_relu(x), x), lambda x, g: (g * jnp.where(x > KINK, 1.0, 0.5),))


def branchy(x: Any) -> Any:
    """Python control flow on the input's value: only runs untraced (jit=False)."""
    if x > 0:
        return x**3
    return -x


class TestHonest:
    """Correct derivatives where a fixed absolute step used to fail the check, and lies that still fail."""

    @pytest.mark.parametrize(
        ("fn", "x", "closed_form"),
        [
            (lambda x: 1 / x, 0.01, lambda x: -1 / x**2),  # the step must be small next to x
            (jnp.log, 1e-3, lambda x: 1 / x),  # a fixed step of 5e-3 crossed zero: NaN
            (lambda x: jnp.sin(100 * x), 0.3, lambda x: 100 * np.cos(100 * x)),  # high curvature
            (jnp.sqrt, 1e-6, lambda x: 0.5 / np.sqrt(x)),
            (lambda x: jnp.exp(-x) * 1e3, 20.0, lambda x: -1e3 * np.exp(-x)),
        ],
        ids=["reciprocal", "log", "sin100x", "sqrt", "exp_decay"],
    )
    def test_correct_derivatives_pass(self, fn: Any, x: float, closed_form: Any) -> None:
        r = grad(fn, at=x, check=True)
        # float32 rounding of the point (and of 100 x) moves the exact value by up to ~1e-5
        assert float(r.derivative) == pytest.approx(closed_form(x), rel=1e-4)
        assert r.check.passed, r.check.summary()
        a = r.check.args[0]
        assert np.isfinite(a.max_abs_error) and a.max_rel_error < a.rtol

    def test_elements_of_very_different_sizes(self) -> None:
        x = np.array([0.01, 1.0, 100.0])
        r = grad(lambda v: jnp.sum(1 / v), at=jnp.asarray(x, jnp.float32), check=True)
        np.testing.assert_allclose(r.derivative, -1 / x**2, rtol=1e-5)
        assert r.check.passed, r.check.summary()

    @pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
    @pytest.mark.parametrize(
        ("fn", "x", "closed_form"),
        [
            (jnp.sin, 0.5, np.cos),
            (jnp.exp, 3.0, np.exp),
            (jnp.log, 0.01, lambda x: 1 / x),
            (lambda x: x**3 - 2 * x, 7.5, lambda x: 3 * x**2 - 2),
            (jnp.tanh, 1.0, lambda x: 1 / np.cosh(x) ** 2),
        ],
        ids=["sin", "exp", "log", "cubic", "tanh"],
    )
    def test_half_precision_points(self, dtype: Any, fn: Any, x: float, closed_form: Any) -> None:
        at = jnp.asarray(x, dtype)
        r = grad(fn, at=at, check=True)
        exact = closed_form(float(at))  # at the point as rounded to half precision
        assert float(r.derivative) == pytest.approx(exact, rel=2 * float(jnp.finfo(dtype).eps) + 1e-2)
        assert r.check.passed, r.check.summary()
        assert r.check.dtype == jnp.dtype(dtype).name and r.check.differenced_in == "float32"
        assert "(differenced in float32)" in r.check.summary()
        tol = {jnp.float16: 1e-2, jnp.bfloat16: 1e-1}[dtype]
        assert r.check.args[0].atol == tol and r.check.args[0].rtol == tol

    def test_half_precision_vector_jacobian_and_hessian(self) -> None:
        x = np.linspace(0.1, 3.0, 5)
        at = jnp.asarray(x, jnp.bfloat16)
        r = jac(lambda z: jnp.sin(z) * z, at=at, check=True)
        xs = np.asarray(at, np.float64)
        np.testing.assert_allclose(
            np.asarray(r.derivative, np.float64), np.diag(np.cos(xs) * xs + np.sin(xs)), atol=0.05
        )
        assert r.check.passed, r.check.summary()
        h = hess(lambda z: jnp.sum(jnp.sin(z) * z), at=jnp.asarray(x, jnp.float16), check=True)
        assert h.check.passed, h.check.summary()

    @pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
    def test_a_wrong_rule_still_fails_in_every_dtype(self, dtype: Any) -> None:
        r = grad(lying_sum_sin, at=jnp.asarray([0.5, 1.0], dtype), check=True)
        np.testing.assert_allclose(np.asarray(r.derivative, np.float64), 2 * np.cos([0.5, 1.0]), rtol=2e-2)
        assert not r.check.passed
        assert r.check.args[0].max_abs_error == pytest.approx(np.cos(0.5), rel=5e-2)  # the size of the lie

    def test_a_wrong_rule_fails_at_small_points(self) -> None:
        r = grad(lying_sum_sin, at=jnp.array([1e-3, 0.01]), check=True)
        assert not r.check.passed

    def test_one_sided_at_a_domain_edge(self) -> None:
        # x**2.5 is NaN left of 0 and flat at 0: central differences are NaN there.
        r = grad(lambda x: x**2.5, at=0.0, check=True)
        assert float(r.derivative) == 0.0
        assert r.check.passed, r.check.summary()
        assert r.check.args[0].one_sided == 1
        assert "one-sided" in r.check.summary() and "domain edge" in r.check.note

    def test_one_sided_still_catches_a_wrong_rule(self) -> None:
        r = grad(lying_half_line, at=0.0, check=True)
        assert float(r.derivative) == pytest.approx(2.0)  # the lie; the truth is cos(0) = 1
        assert not r.check.passed
        assert r.check.args[0].one_sided == 1
        assert r.check.args[0].max_abs_error == pytest.approx(1.0, rel=1e-3)

    def test_the_step_shrinks_near_an_edge_it_would_cross(self) -> None:
        # arccos is NaN past 1: the relative step at 0.999 (5e-3) crosses the edge 1e-3 away.
        x = 0.999
        r = grad(jnp.arccos, at=x, check=True)
        assert float(r.derivative) == pytest.approx(-1 / np.sqrt(1 - np.float32(x) ** 2), rel=1e-4)
        assert r.check.passed, r.check.summary()
        assert r.check.step < tolerances(np.dtype(np.float32))[0] / 2
        assert r.check.args[0].one_sided == 0  # a smaller central difference was enough

    def test_a_kink_inside_the_step_is_stepped_past(self) -> None:
        # Flat at 0.5, with the kink 1e-3 away: the usual step crosses it, a quarter of it does not.
        r = grad(lambda x: jnp.sum(jax.nn.relu(x - KINK)), at=jnp.array([0.5, 0.8]), check=True)
        np.testing.assert_array_equal(np.asarray(r.derivative), [0.0, 1.0])  # d relu(x - c) = [x > c]
        assert r.check.passed, r.check.summary()
        assert r.check.args[0].refined and r.check.step < tolerances(np.dtype(np.float32))[0]
        assert "at a finer step" in r.check.summary() and "kink" in r.check.note

    def test_a_kink_does_not_excuse_a_wrong_rule(self) -> None:
        r = grad(lambda x: jnp.sum(lying_relu(x)), at=jnp.array([0.5, 0.8]), check=True)
        np.testing.assert_array_equal(np.asarray(r.derivative), [0.5, 1.0])  # the lie on the flat side
        assert not r.check.passed and not r.check.args[0].refined
        assert r.check.args[0].max_abs_error == pytest.approx(0.5, rel=0.2)

    def test_a_float32_relu_network_passes(self) -> None:
        # A correct network whose many kinks lie within the usual float32 step of the point.
        k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(k1, (64, 4))
        params = {"w1": jax.random.normal(k2, (4, 16)) * 0.5, "w2": jax.random.normal(k3, (16, 1)) * 0.3}

        def loss(p: Any) -> Any:
            return jnp.mean((jax.nn.relu(x @ p["w1"]) @ p["w2"] - jnp.sum(x, axis=1, keepdims=True)) ** 2)

        r = grad(loss, at=params, check=True)
        assert r.check.passed, r.check.summary()

    def test_an_overflow_fails_and_says_why(self) -> None:
        r = grad(jnp.exp, at=100.0, check=True)  # exp(100) is inf in float32
        assert not np.isfinite(float(r.derivative))
        assert not r.check.passed and "not finite" in r.check.note

    def test_higher_order_check_uses_taylor_mode_below(self) -> None:
        r = grad(jnp.sin, at=0.7, order=9, check=True)
        assert float(r.derivative) == pytest.approx(np.cos(0.7), rel=1e-4)  # sin⁽⁹⁾ = cos
        assert r.check.passed, r.check.summary()


class TestUntraced:
    """``check=True`` with ``jit=False`` on a function that branches in Python on its input."""

    def test_grad_and_order_two(self) -> None:
        r = grad(branchy, at=2.0, jit=False, check=True)
        assert float(r.derivative) == pytest.approx(12.0)  # 3 x²
        assert r.check.passed, r.check.summary()
        r2 = grad(branchy, at=2.0, order=2, jit=False, check=True)
        assert float(r2.derivative) == pytest.approx(12.0)  # 6 x
        assert r2.check.passed
        left = grad(branchy, at=-1.5, jit=False, check=True)
        assert float(left.derivative) == -1.0 and left.check.passed

    @pytest.mark.slow  # four untraced checks, every difference a Python call: about 6 s
    def test_jacobian_hessian_and_directional(self) -> None:
        def vec(x: Any) -> Any:
            return (jnp.sum(x**3) if x[0] > 0 else jnp.sum(x)) * x

        x = np.array([1.0, 2.0])
        r = jac(vec, at=jnp.asarray(x), mode="rev", jit=False, check=True)
        np.testing.assert_allclose(r.derivative, np.outer(x, 3 * x**2) + np.sum(x**3) * np.eye(2), rtol=1e-5)
        assert r.check.passed, r.check.summary()
        h = hess(lambda z: jnp.sum(branchy(z[0]) * z), at=jnp.asarray(x), jit=False, check=True)
        assert h.check.passed, h.check.summary()
        for kind, vector in (("jvp", {"tangent": jnp.ones(2)}), ("vjp", {"cotangent": jnp.ones(2)})):
            d = derive(kind, vec, at=jnp.asarray(x), jit=False, check=True, **vector)
            assert d.check.passed, (kind, d.check.summary())

    def test_a_wrong_rule_fails_untraced(self) -> None:
        r = grad(lying_sum_sin, at=jnp.array([0.5, 1.0]), jit=False, check=True)
        assert not r.check.passed

    def test_in_the_shell(self, ip: Shell) -> None:
        ip.run_cell("def steer(x):\n    if x > 0:\n        return jnp.sin(x)\n    return x")
        r = ip.run_cell("%jgrad steer at=0.5 jit=False check=True stepper=False")
        assert float(r.derivative) == pytest.approx(np.cos(0.5), rel=1e-6)
        assert r.check.passed and "PASS" in str(r)


class TestTolerances:
    def test_the_tolerances_of_jax_check_grads(self) -> None:
        eps32 = float(np.finfo(np.float32).eps)
        for dtype, tol in ((np.float16, 1e-2), (jnp.bfloat16, 1e-1), (np.float32, 2e-3), (np.float64, 1e-5)):
            step, atol, rtol = tolerances(np.dtype(dtype))
            assert atol == rtol == tol
            if np.dtype(dtype).itemsize < 4:
                assert step == pytest.approx(eps32 ** (1 / 3))  # differenced in float32

    def test_step_and_tolerances_fit_the_dtype(self) -> None:
        step32, atol32, rtol32 = tolerances(np.dtype(np.float32))
        step64, atol64, rtol64 = tolerances(np.dtype(np.float64))
        assert step32 == pytest.approx(np.finfo(np.float32).eps ** (1 / 3))
        assert step64 == pytest.approx(np.finfo(np.float64).eps ** (1 / 3))
        assert atol64 < atol32 and rtol64 < rtol32

    def test_pure_function_without_a_shell(self) -> None:
        def f(x: Any) -> Any:
            return jnp.sum(x**3)

        x = jnp.array([0.5, -1.0, 2.0])
        value, g = jax.value_and_grad(f)(x)
        good = check_derivative("grad", f, (x,), 0, g, value, names=("x",))
        bad = check_derivative("grad", f, (x,), 0, g + 0.1, value, names=("x",))
        assert good.passed and not bad.passed
        # The shift by 0.1 is seen as an error of 0.1 along each unit direction.
        assert bad.args[0].max_abs_error == pytest.approx(0.1, rel=1e-2)


FLOAT64_SCRIPT = textwrap.dedent(
    """
    import json
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jaxgrad_magic")

    def run(cell):
        result = shell.run_cell(cell, store_history=False)
        result.raise_error()
        return result.result

    run("import jax, jax.numpy as jnp\\n" + LIARS)
    good = run("%jgrad doubled at=jnp.array([1.0, 2.0]) check=True stepper=False")
    run("def wave(x):\\n    return jnp.sum(jnp.sin(x) ** 2)")
    fine = run("%jgrad wave at=jnp.array([1.0, 2.0, 3.0]) check=True stepper=False")
    out = {
        "dtype": fine.check.dtype,
        "passed": fine.check.passed,
        "note": fine.check.note,
        "text": str(fine),
        "atol": fine.check.args[0].atol,
        "error": fine.check.args[0].max_abs_error,
        "derivative": [float(v) for v in fine.derivative],
        "lie_passed": good.check.passed,
    }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.slow  # a fresh JAX process with x64 enabled
def test_float64_has_no_note_and_tighter_tolerances() -> None:
    # Enabling x64 in this process would change every other test's dtypes: use a fresh one.
    script = f"LIARS = {LIARS!r}\n" + FLOAT64_SCRIPT
    out = run_json_script(["-c", script], env={"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert out["dtype"] == "float64"
    assert out["passed"] and out["note"] == ""
    assert "jax_enable_x64" not in out["text"] and "PASS: central differences, float64" in out["text"]
    assert out["atol"] == 1e-5  # jax.test_util.check_grads' float64 tolerance (float32: 2e-3)
    assert out["error"] < 1e-8  # Richardson-extrapolated differences in float64 are far inside it
    np.testing.assert_allclose(out["derivative"], np.sin(2 * X3), rtol=1e-12)
    assert not out["lie_passed"]
