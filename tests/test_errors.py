"""Bad input in a real shell: one clear paragraph as a UsageError, no traceback, nothing bound.

The user's own errors (in their function, or in the cell) come out as themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrad_magic
from jaxgrad_magic.errors import JaxGradUsageError

if TYPE_CHECKING:
    from conftest import Shell

BOWL = "def f(x, y):\n    return x**2 + (y - 1) ** 2\n"
DERIVED = ("f_grad", "f_jac", "f_hess", "g_grad", "g_jac", "g_hess")


def expect(
    ip: Shell, capsys: pytest.CaptureFixture[str], source: str, *fragments: str, cell_defines: tuple[str, ...] = ()
) -> str:
    """Run ``source``; it must fail with a one-paragraph UsageError containing ``fragments``,
    bind nothing and leave the namespace as it was, but for ``cell_defines``: what a cell
    magic's own cell defined (it ran, like any cell) stays."""
    before = dict(ip.ns)
    message = ip.usage_error(source, capsys)
    assert "\n" not in message.strip(), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    ignored = {"_", "__", "___", *cell_defines}
    assert set(ip.ns) - ignored == set(before) - ignored, "the namespace changed"
    assert all(name in ip.ns for name in cell_defines), "what the cell defined was taken back"
    for key, value in before.items():
        if key not in ignored:
            assert ip.ns[key] is value, f"{key} was rebound"
    assert not any(name in ip.ns for name in DERIVED if name not in before)
    return message


@pytest.fixture
def bowl(ip: Shell) -> Shell:
    ip.run_cell(BOWL)
    return ip


class TestOptions:
    def test_unknown_option_suggests_the_closest(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f argnum=1 at=(5.0, 2.0)", "no option 'argnum'", "Did you mean 'argnums'?")
        expect(bowl, capsys, "%jac f mdoe=fwd at=(5.0, 2.0)", "Did you mean 'mode'?")
        expect(bowl, capsys, "%hess f ordr=2 at=(5.0, 2.0)", "no option 'ordr'")

    def test_unknown_option_in_a_cell_magic_does_not_run_the_cell(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ip.run_cell("calls = []")
        expect(
            ip, capsys, "%%jgrad at=1.0 jti=False\ncalls.append(1)\ndef g(x):\n    return x\n", "Did you mean 'jit'?"
        )
        assert ip.ns["calls"] == []

    @pytest.mark.parametrize(
        ("line", "fragment"),
        [
            ("f at=(5.0, 2.0", "Unclosed bracket"),
            ("f at=(5.0, 2.0) +", "not a valid Python expression"),
            ("f at=(5.0, 2.0) argnums=x", "argnums="),
            ("f at=(5.0, 2.0) argnums=1.5", "argnums="),
            ("f at=(5.0, 2.0) jit=maybe", "maybe"),
            ("f at=(5.0, 2.0) aux=2", "True or False"),
            ("f at=(5.0, 2.0) order=0", "order="),
            ("f at=(5.0, 2.0) name=1x", "Python name"),
            ("f at=(5.0, 2.0) name=__builtins__", "reserves"),
            ("f at=missing_variable", "missing_variable"),
            ("f at =1.0", "no spaces"),
        ],
    )
    def test_malformed_values(self, bowl: Shell, capsys: pytest.CaptureFixture[str], line: str, fragment: str) -> None:
        bowl.ns["x"] = "not a number"  # so argnums=x evaluates, to something that is not an index
        expect(bowl, capsys, f"%jgrad {line}", fragment)

    def test_mode_only_for_jac(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f mode=fwd at=(5.0, 2.0)", "no option 'mode'")
        expect(bowl, capsys, "%jac f mode=sideways at=(5.0, 2.0)", "not a Jacobian mode")


class TestTarget:
    def test_a_line_magic_without_a_function(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(ip, capsys, "%jgrad at=1.0", "needs a function", "%jgrad f at=x")

    def test_a_cell_that_defines_no_function_says_what_it_defined(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        expect(
            ip, capsys, "%%jgrad\nx = 5.0\nimport math\n", "defines only x, math", "fn=NAME", cell_defines=("x", "math")
        )
        assert ip.ns["x"] == 5.0  # the cell ran, like any cell: what it defined stays

    def test_fn_not_found(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def pipeline(x):\n    return x\n")
        expect(ip, capsys, "%jgrad pipelin at=1.0", "no function named 'pipelin'", "Did you mean 'pipeline'?")
        expect(
            ip,
            capsys,
            "%%jac fn=nothere at=1.0\ndef g(x):\n    return x\n",
            "no function named 'nothere'",
            cell_defines=("g",),
        )
        assert "g_jac" not in ip.ns

    def test_a_dotted_name_says_which_part_is_missing(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("import types\nmodel = types.SimpleNamespace(head=types.SimpleNamespace())")
        expect(ip, capsys, "%jgrad model.head.loss at=1.0", "model.head has no attribute 'loss'")

    def test_not_a_function(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("value = 3.0")
        expect(ip, capsys, "%jgrad value at=1.0", "needs a function", "float")

    def test_a_function_without_parameters(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(ip, capsys, "%%jgrad\ndef g():\n    return 1.0\n", "no positional parameters", cell_defines=("g",))


class TestArguments:
    def test_argnums_out_of_range(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f at=(5.0, 2.0) argnums=2", "out of range", "f(x, y)", "numbered 0 to 1")
        expect(bowl, capsys, "%jac f at=(5.0, 2.0) argnums=0,3", "out of range")

    def test_wrt_unknown(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f at=(5.0, 2.0) wrt=z", "no parameter 'z'", "(x, y)")
        expect(bowl, capsys, "%jgrad f at=(5.0, 2.0) argnums=0 wrt=x", "both argnums= and wrt=")

    def test_at_with_the_wrong_number_of_arguments(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f at=(5.0, 2.0, 1.0)", "a tuple of 2", "got a tuple of 3", "at=(x, y)")
        expect(bowl, capsys, "%hess f at=5.0", "a tuple of 2", "one value")

    def test_integer_inputs_suggest_a_float(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f at=(5, 2.0)", "`5.0` instead of `5`")
        expect(bowl, capsys, "%jac f at=(5.0, jnp.arange(3)) argnums=1", "integer", "float32")

    def test_integer_notebook_variables(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        bowl.run_cell("x = 5; y = 2")
        expect(bowl, capsys, "%jgrad f", "`5.0` instead of `5`")

    def test_inputs_that_are_not_numbers(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(bowl, capsys, "%jgrad f at=('five', 2.0)", "Cannot differentiate f with respect to x")
        expect(bowl, capsys, "%jgrad f at=(None, 2.0)", "Cannot differentiate f with respect to x")


class TestJaxMisuse:
    def test_grad_of_a_vector_output(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        message = expect(
            ip, capsys, "%%jgrad at=jnp.ones(3)\ndef g(x):\n    return 2.0 * x\n", "%jac", ".sum()", cell_defines=("g",)
        )
        assert "(3,)" in message
        assert "g_grad" not in ip.ns

    def test_aux_on_a_function_that_returns_one_value(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        for magic in ("jgrad", "jac", "hess"):
            expect(bowl, capsys, f"%{magic} f at=(5.0, 2.0) aux=True", "aux=True", "(output, aux)")

    def test_a_pair_without_aux(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        expect(
            ip, capsys, "%%jgrad at=1.0\ndef g(x):\n    return x ** 2, {'note': x}\n", "aux=True", cell_defines=("g",)
        )

    def test_python_control_flow_on_a_traced_value(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        cell = "%%jgrad at=1.0\ndef g(x):\n    if x > 0:\n        return x ** 2\n    return -x\n"
        message = expect(ip, capsys, cell, "jnp.where", "jax.lax.cond", cell_defines=("g",))
        assert "g uses a traced value" in message
        # Without jit the value is concrete: the same cell works.
        ip.run_cell(cell.replace("at=1.0", "at=1.0 jit=False"))
        assert "g_grad" in ip.ns

    def test_order_on_an_array_input(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def g(x):\n    return jnp.sum(x ** 3)\n")
        expect(ip, capsys, "%jgrad g at=jnp.ones(3) order=2", "scalar", "%hess")


class TestOutputsThatAreNotRealNumbers:
    """A function whose output JAX cannot differentiate: one paragraph that says what to return."""

    @pytest.mark.parametrize(
        ("body", "fragments"),
        [
            ("x > 0", ("bool", "jnp.where(x > 0, x, 0.0)")),
            ("3", ("int", "`3.0` rather than `3`")),
            ("jnp.floor(x).astype(jnp.int32)", ("int32", "astype")),
            ("None", ("returned None", "`return <value>`")),
        ],
    )
    @pytest.mark.parametrize("line", ["%jgrad g at=1.0", "%jac g at=1.0", "%jac g at=1.0 mode=fwd", "%hess g at=1.0"])
    def test_bool_int_or_none(
        self, ip: Shell, capsys: pytest.CaptureFixture[str], body: str, fragments: tuple[str, ...], line: str
    ) -> None:
        ip.run_cell(f"def g(x):\n    return {body}\n")
        if line.endswith("mode=fwd") and body != "x > 0":
            # jacfwd of a constant int or None is JAX's zero or None: no error to explain.
            r = ip.run_cell(line)
            assert r.derivative is None or not np.any(np.asarray(r.derivative))
            return
        expect(ip, capsys, line, f"%{line.split()[0][1:]} needs g to return", *fragments)

    def test_a_function_without_return_under_the_cell_magic(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        cell = "%%jac at=jnp.ones(2)\ndef g(x):\n    y = jnp.sin(x)\n"
        expect(ip, capsys, cell, "returned None", cell_defines=("g",))

    def test_a_complex_output_at_a_complex_point(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def g(z):\n    return z ** 2\n")
        for magic in ("jgrad", "jac"):
            expect(ip, capsys, f"%{magic} g at=1+2j", "complex", "real point", "%jvp")
        # ... and the directional magics carry complex values: d(z^2) = 2z dz.
        r = ip.run_cell("%jvp g at=1+2j tangent=1.0")
        close = np.testing.assert_allclose
        close(np.asarray(r.derivative), 2 * (1 + 2j), rtol=1e-6)

    def test_forward_mode_at_a_complex_point(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def g(z):\n    return jnp.abs(z) ** 2\n")
        expect(ip, capsys, "%jac g at=1+2j mode=fwd", "forward mode", "complex", "mode=rev")
        expect(ip, capsys, "%hess g at=1+2j", "forward mode", "real point")

    def test_a_real_output_at_a_complex_point_works(self, ip: Shell) -> None:
        ip.run_cell("def g(z):\n    return jnp.abs(z) ** 2\n")
        r = ip.run_cell("%jgrad g at=1+2j")
        # |z|^2 = z conj(z); JAX's gradient of a real function of z is 2 conj(z) (its convention).
        np.testing.assert_allclose(np.asarray(r.derivative), 2 * np.conj(1 + 2j), rtol=1e-6)
        np.testing.assert_allclose(float(r.value), 5.0, rtol=1e-6)


class TestTargetsAndShows:
    def test_a_generator_function(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        cell = "%%jgrad at=1.0\ndef g(x):\n    yield x ** 2\n"
        expect(ip, capsys, cell, "generator function", "`yield`", "sum(g(x))", cell_defines=("g",))
        for magic in ("jac", "hess", "jvp"):
            expect(ip, capsys, f"%{magic} g at=1.0 tangent=1.0" if magic == "jvp" else f"%{magic} g at=1.0", "yield")

    def test_a_decorator_that_consumes_a_generator_is_a_function(self, ip: Shell) -> None:
        ip.run_cell(
            "import functools\n"
            "def summed(gen):\n"
            "    @functools.wraps(gen)\n"
            "    def total(x):\n"
            "        return sum(gen(x))\n"
            "    return total\n"
            "@summed\n"
            "def terms(x):\n"
            "    yield x ** 2\n"
            "    yield jnp.sin(x)\n"
        )
        r = ip.run_cell("%jgrad terms at=0.5")
        np.testing.assert_allclose(float(r.derivative), 2 * 0.5 + np.cos(0.5), rtol=1e-6)

    def test_an_async_function(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("async def g(x):\n    return x\n")
        expect(ip, capsys, "%jgrad g at=1.0", "async def", "plain `def`")

    def test_show_jaxpr_without_jit_on_python_control_flow(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        cell = "%%jgrad at=1.0 jit=False show=jaxpr\ndef g(x):\n    if x > 0:\n        return x ** 2\n    return -x\n"
        message = expect(ip, capsys, cell, "show=jaxpr", "even with jit=False", "jnp.where", cell_defines=("g",))
        assert "drop show=jaxpr" in message
        r = ip.run_cell("%jgrad g at=1.5 jit=False")  # what the message says: without show=, it works
        np.testing.assert_allclose(float(r.derivative), 3.0)


class TestDirections:
    """A tangent or cotangent of the wrong kind says what a direction must be."""

    @pytest.mark.parametrize("jit", ["", " jit=False"])
    @pytest.mark.parametrize(
        ("value", "fragments"),
        [
            ("'abc'", ("must be numbers", "a str ('abc')", "tangent=jnp.ones_like(x)")),
            ("(1.0, 'a')", ("must be numbers", "a str")),
            ("object()", ("must be numbers", "a object")),
            ("{'a': 1.0}", ("shaped like the differentiated argument", "f32[3]", "{'a'")),
            ("jnp.ones(2)", ("shaped like the differentiated argument", "f32[3]", "f32[2]")),
            ("None", ("shaped like the differentiated argument", "None")),
        ],
    )
    def test_a_tangent_of_the_wrong_kind(
        self, ip: Shell, capsys: pytest.CaptureFixture[str], jit: str, value: str, fragments: tuple[str, ...]
    ) -> None:
        ip.run_cell("def g(x):\n    return jnp.sin(x)\n")
        expect(ip, capsys, f"%jvp g at=jnp.ones(3) tangent={value}{jit}", *fragments)

    def test_a_cotangent_of_the_wrong_kind(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def g(x):\n    return jnp.sin(x)\n")
        expect(ip, capsys, "%vjp g at=jnp.ones(3) cotangent='x'", "cotangent= must be numbers", "output of g")
        expect(ip, capsys, "%vjp g at=jnp.ones(3) cotangent=jnp.ones(4)", "shaped like the output of g", "f32[3]")

    def test_a_right_tangent_still_works(self, ip: Shell) -> None:
        ip.run_cell("def g(x):\n    return jnp.sin(x)\n")
        x = np.array([0.1, 0.2, 0.3])
        r = ip.run_cell("%jvp g at=jnp.array([0.1, 0.2, 0.3]) tangent=np.array([1, 2, 3])")  # ints are cast
        np.testing.assert_allclose(np.asarray(r.derivative), np.cos(x) * [1, 2, 3], rtol=1e-6)


class TestNamespace:
    def test_a_failed_cell_magic_keeps_what_the_cell_defined_and_binds_nothing(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ip.run_cell("x = 1.0\ndef g(x):\n    return x\ng_grad = 'mine'\n")
        cell = "%%jgrad at=(1.0, 2.0, 3.0)\nx = 99.0\nnew = 1\ndef g(x, y):\n    return x * y\n"
        expect(ip, capsys, cell, "at=", cell_defines=("x", "new", "g"))
        assert ip.ns["x"] == 99.0 and ip.ns["new"] == 1 and ip.ns["g"](2.0, 3.0) == 6.0
        assert ip.ns["g_grad"] == "mine"  # what the magic would have bound there stays as it was

    def test_after_the_jgrad_error_for_a_vector_output_jac_works_on_the_same_function(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ip.run_cell("vec_grad = 'earlier'")
        message = expect(
            ip,
            capsys,
            "%%jgrad at=jnp.ones(3)\ndef vec(x):\n    return jnp.sin(x)\n",
            "Use `%jac`",
            cell_defines=("vec",),
        )
        assert "(3,)" in message
        assert ip.ns["vec_grad"] == "earlier"
        r = ip.run_cell("%jac vec at=jnp.array([0.5, 1.0, 2.0])")
        np.testing.assert_allclose(r.derivative, np.diag(np.cos([0.5, 1.0, 2.0])), rtol=1e-6)
        assert ip.ns["vec_jac"] is r.transformed and ip.ns["vec_grad"] == "earlier"

    def test_a_failure_keeps_an_earlier_binding(self, bowl: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        first = bowl.run_cell("%jgrad f at=(5.0, 2.0)")
        expect(bowl, capsys, "%jgrad f at=(5.0, 2.0) argnums=7", "out of range")
        assert bowl.ns["f_grad"] is first.transformed


class TestUsersOwnErrors:
    def test_an_exception_in_the_function(self, ip: Shell) -> None:
        error = ip.user_error("%%jgrad at=1.0\ndef g(x):\n    raise ValueError('mine')\n")
        assert isinstance(error, ValueError) and str(error) == "mine"
        assert "g_grad" not in ip.ns

    def test_an_exception_in_the_function_under_the_line_magic(self, ip: Shell) -> None:
        ip.run_cell("def g(x):\n    return undefined_helper(x)\n")
        for magic in ("jgrad", "jac", "hess"):
            error = ip.user_error(f"%{magic} g at=1.0")
            assert isinstance(error, NameError) and "undefined_helper" in str(error)

    @pytest.mark.parametrize(("body", "error_type"), [("jnp.sin(x)", TypeError), ("x.sum()", AttributeError)])
    def test_a_tuple_given_whole_to_a_one_parameter_function_gets_a_hint(
        self, ip: Shell, body: str, error_type: type[Exception]
    ) -> None:
        ip.run_cell(f"def g(x):\n    return jnp.sum({body})\n")
        for magic in ("jgrad", "jac"):
            error = ip.user_error(f"%{magic} g at=(1.0, 2.0)")
            assert isinstance(error, error_type)  # still the user's own error
            notes = " ".join(getattr(error, "__notes__", ()))
            assert "whole tuple" in notes and "jnp.array" in notes, notes
        ip.run_cell("def h(x):\n    return undefined_helper(x)\n")
        assert not getattr(ip.user_error("%jgrad h at=(1.0, 2.0)"), "__notes__", None)  # a NameError: no hint

    def test_an_exception_in_the_cell(self, ip: Shell) -> None:
        ip.run_cell("calls = []")
        error = ip.user_error("%%jgrad at=1.0\ncalls.append(1)\nnot_defined + 1\ndef g(x):\n    return x\n")
        assert isinstance(error, NameError) and "not_defined" in str(error)
        assert ip.ns["calls"] == [1]  # ran once, stopped where the user's code failed
        assert "g" not in ip.ns

    def test_a_shape_error_of_the_users_own(self, ip: Shell) -> None:
        ip.run_cell("def g(x):\n    return jnp.sum(x @ jnp.ones((4, 4)))\n")
        error = ip.user_error("%jgrad g at=jnp.ones(3)")
        assert isinstance(error, TypeError)
        assert isinstance(error, Exception) and not isinstance(error, jax.errors.TracerBoolConversionError)

    def test_a_syntax_error_in_the_cell(self, ip: Shell) -> None:
        error: Any = ip.user_error("%%jgrad at=1.0\ndef g(x)\n    return x\n")
        assert isinstance(error, SyntaxError)


class TestMessagesNameWhatWasCalled:
    """One core serves the magics and plain Python: each is told about its own entry point."""

    def test_plain_python_is_told_about_the_python_api(self) -> None:
        with pytest.raises(JaxGradUsageError) as caught:
            jaxgrad_magic.grad(lambda x: x * 2.0, at=jnp.ones(3))
        assert "jaxgrad_magic.jac" in str(caught.value) and "%" not in str(caught.value)
        with pytest.raises(JaxGradUsageError) as caught:
            jaxgrad_magic.jvp(lambda x: x, at=jnp.ones(2))
        assert "jaxgrad_magic.jvp(<lambda>, at=x, tangent=" in str(caught.value)

    def test_a_magic_is_told_about_the_magics(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def vec(x):\n    return x * 2.0\nx3 = jnp.ones(3)")
        message = ip.usage_error("%jgrad vec at=x3", capsys)
        assert "%jac" in message and "jaxgrad_magic" not in message
        message = ip.usage_error("%jvp vec at=x3", capsys)
        assert "%jvp vec at=x tangent=" in message
