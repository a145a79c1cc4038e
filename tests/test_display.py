"""How results render: HTML for notebooks, text for terminals, and the pieces they are made of."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from IPython.utils.capture import capture_output

from jaxgrad_magic import grad, hess, jac, jvp
from jaxgrad_magic.display import DisplayLimits, derivative_rows, layout, render_html, render_text, type_tag
from jaxgrad_magic.formatting import compact, format_array, number, scientific

if TYPE_CHECKING:
    from conftest import Shell

BOWL = "def f(x, y):\n    return x**2 + (y - 1) ** 2\n"


def both(result: Any) -> list[str]:
    """The HTML (unescaped, so both renderings can be searched alike) and the text."""
    return [html.unescape(result._repr_html_()), str(result)]


class TestEvaluated:
    def test_function_point_source_value_derivatives_and_binding(self, ip: Shell) -> None:
        ip.run_cell(BOWL + "x = 5.0; y = 2.0")
        r = ip.run_cell("%jgrad f argnums=0,1")
        for text in both(r):
            assert "gradient" in text and "f" in text
            assert "notebook variables" in text
            assert "∂f/∂x" in text and "∂f/∂y" in text
            assert "f32[]" in text
            assert "f_grad(x, y)" in text
            assert "jax.jit(jax.grad(f, argnums=(0, 1)))" in text
            assert "26" in text and "10" in text

    @pytest.mark.parametrize(("line", "source"), [("at=(5.0, 2.0)", "at="), ("", "defaults")])
    def test_the_point_says_where_it_came_from(self, ip: Shell, line: str, source: str) -> None:
        ip.run_cell("def g(x=5.0, y=2.0):\n    return x * y\n")
        r = ip.run_cell(f"%jgrad g {line}")
        for text in both(r):
            assert source in text

    def test_shapes_and_dtypes_of_arrays(self, ip: Shell) -> None:
        ip.run_cell("def pipeline(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n")
        r = ip.run_cell("%jgrad pipeline at=jnp.array([1.0, 2.0, 3.0])")
        for text in both(r):
            assert "f32[3]" in text and "f32[]" in text
            assert "0.909297" in text  # sin(2): the first gradient entry

    def test_jacobian_labels_per_output_and_the_mode(self) -> None:
        r = jac(lambda x: (jnp.sin(x), jnp.cos(x)), at=jnp.ones(3), mode="fwd", fn_name="pair")
        for text in both(r):
            assert "∂pair[0]/∂x" in text and "∂pair[1]/∂x" in text
            assert "f32[3,3]" in text
            assert "mode=fwd" in text

    def test_hessian_labels_per_pair_of_arguments(self) -> None:
        r = hess(lambda x, y: x**2 * y, at=(1.0, 2.0), argnums=(0, 1), fn_name="h")
        labels = [label for label, _ in derivative_rows(r)]
        assert labels == ["∂²h/∂x∂x", "∂²h/∂x∂y", "∂²h/∂y∂x", "∂²h/∂y∂y"]

    def test_pytree_labels(self) -> None:
        p = {"a": jnp.asarray(1.5), "b": jnp.array([1.0, 2.0])}
        g = grad(lambda q: q["a"] ** 2 * jnp.sum(q["b"]), at=p, fn_name="loss")
        assert [label for label, _ in derivative_rows(g)] == ["∂loss/∂q['a']", "∂loss/∂q['b']"]
        h = hess(lambda q: q["a"] ** 2 * jnp.sum(q["b"]), at=p, fn_name="loss")
        assert [label for label, _ in derivative_rows(h)] == [
            "∂²loss/∂q['a']∂q['a']",
            "∂²loss/∂q['a']∂q['b']",
            "∂²loss/∂q['b']∂q['a']",
            "∂²loss/∂q['b']∂q['b']",
        ]
        for text in both(g):
            assert "q['a']" in text and "f32[2]" in text

    def test_hessian_of_a_vector_output_lists_each_output(self) -> None:
        r = hess(lambda x: (jnp.sum(x**2), x), at=jnp.ones(2), fn_name="h")
        assert [label for label, _ in derivative_rows(r)] == ["∂²h[0]/∂x∂x", "∂²h[1]/∂x∂x"]
        big = hess(lambda x: x**2, at=jnp.ones(12), fn_name="sq")
        assert "∂²sq/∂x∂x" in str(big) and "f32[12,12,12]" in str(big)
        assert "f32[12,12,12]" in html.unescape(big._repr_html_())

    def test_higher_order_labels(self) -> None:
        r = grad(lambda x: x**3, at=2.0, order=2, fn_name="cube")
        assert [label for label, _ in derivative_rows(r)] == ["∂²cube/∂x²"]
        assert "order 2" in str(r)

    def test_values_for_star_args_are_shown(self) -> None:
        r = grad(lambda x, *rest: x * rest[0], at=(2.0, 3.0), argnums=(0, 1), fn_name="f")
        assert "arg1 = float 3" in str(r) and "∂f/∂arg1 = f32[] 2" in str(r)
        assert "<td class='jgm-k'>arg1</td>" in r._repr_html_()

    def test_aux_is_shown(self) -> None:
        r = grad(lambda x: (x**2, {"half": x / 2}), at=3.0, aux=True, fn_name="loss")
        for text in both(r):
            assert "aux['half']" in text and "1.5" in text

    def test_names_are_escaped_in_html(self) -> None:
        r = grad(lambda x: x**2, at=1.0)
        assert "&lt;lambda&gt;" in r._repr_html_()
        assert "<lambda>" not in r._repr_html_().replace("&lt;lambda&gt;", "")

    def test_the_python_api_binds_nothing_and_says_so(self) -> None:
        r = grad(lambda x: x**2, fn_name="sq")
        assert r.bound_name is None
        assert "bound" not in str(r)
        assert ".transformed(x)" in str(r)


class TestOneLayout:
    """Text and HTML are two renderings of the same sections: same things, same order."""

    def full(self) -> Any:
        return jvp(
            lambda x: (jnp.sin(x), {"half": x / 2}),
            at=jnp.array([0.5, 1.0]),
            tangent=jnp.ones(2),
            aux=True,
            check=True,
            show="jaxpr",
            fn_name="wave",
        )

    def test_sections_in_text_order(self) -> None:
        r = self.full()
        titles = [s.title for s in layout(r).sections]
        assert titles == ["point", "tangent v", "value", "aux", "derivative", "check", "jaxpr"]
        text = render_text(r)
        page = html.unescape(render_html(r))
        heads = re.findall(r"<tr class='jgm-h'><td class='jgm-k'>(.*?)</td>", page)
        assert heads == titles
        at = [text.index(f"\n  {t}") for t in titles]
        assert at == sorted(at)

    def test_each_rendering_shows_every_entry_in_the_same_order(self) -> None:
        r = grad(lambda x, y: x * y, at=(2.0, 3.0), argnums=(0, 1), fn_name="mul")
        labels = [e.label for s in layout(r).sections for e in s.entries]
        assert labels == ["x", "y", "mul", "∂mul/∂x", "∂mul/∂y"]
        text, page = render_text(r), render_html(r)
        at = [text.index(f"    {label} = ") for label in labels]
        assert at == sorted(at)
        cells = re.findall(r"<tr class='jgm-e'><td class='jgm-k'>(.*?)</td>", page)
        assert cells == labels

    def test_the_point_source_comes_before_the_point_in_both(self) -> None:
        r = grad(lambda x: x**2, at=3.0, fn_name="sq")
        text, page = render_text(r), render_html(r)
        assert text.index("given by at=") < text.index("x = float 3")
        assert page.index("given by at=") < page.index("<td class='jgm-k'>x</td>")

    def test_the_heading_names_the_composition_in_both(self) -> None:
        r = grad(lambda x: x**2, at=3.0, fn_name="sq")
        assert layout(r).composition == "jax.jit(jax.grad(sq))"
        assert render_text(r).splitlines()[0] == "gradient of sq: jax.jit(jax.grad(sq))"
        assert "<b>gradient</b> of <code>sq</code>: <code>jax.jit(jax.grad(sq))</code>" in render_html(r)

    def test_the_check_says_the_same_in_both(self) -> None:
        r = grad(lambda x: jnp.sum(x**2), at=jnp.arange(100.0), check=True, fn_name="s")
        text, page = render_text(r), html.unescape(render_html(r))
        assert "random directions" in text and "random directions" in page
        assert "step " in text and "·|x|" in text and "·|x|" in page


class TestNotEvaluated:
    def test_says_how_to_evaluate(self, ip: Shell) -> None:
        r = ip.run_cell("%%jac\n" + BOWL)
        for text in both(r):
            assert "not evaluated" in text
            assert "x, y" in text
            assert "f_jac(x, y)" in text and "at=" in text

    def test_names_only_what_is_missing(self, ip: Shell) -> None:
        ip.run_cell("x = 5.0")
        r = ip.run_cell("%%jgrad\n" + BOWL)
        assert "no value for y " in str(r)


class TestInTheShell:
    def test_the_shell_shows_html_and_text(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        with capture_output() as captured:
            ip.run_cell("%jgrad f at=(5.0, 2.0)")
        bundles = [o.data for o in captured.outputs]
        assert any("text/html" in b and "∂f/∂x" in html.unescape(b["text/html"]) for b in bundles)
        assert any("gradient of f" in b.get("text/plain", "") for b in bundles)

    def test_a_silenced_line_shows_nothing(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        with capture_output() as captured:
            ip.run_cell("%jgrad f at=(5.0, 2.0);")
        assert captured.outputs == [] and captured.stdout == ""

    def test_max_items_is_configurable(self, ip: Shell) -> None:
        ip.run_cell("def s(x):\n    return jnp.sum(x ** 2)\n")
        full = ip.run_cell("%jgrad s at=jnp.arange(30.0);\n_ = None")  # silenced: nothing to print
        assert full is None
        try:
            ip.run_cell("%config JaxGradMagics.max_items = 5")
            short = ip.run_cell("%jgrad s at=jnp.arange(30.0)")
            assert "..." in str(short)
        finally:
            ip.run_cell("%config JaxGradMagics.max_items = 24")
        assert "..." not in str(ip.run_cell("%jgrad s at=jnp.arange(20.0)"))

    def test_terminal_text_is_plain(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        text = str(ip.run_cell("%jgrad f at=(5.0, 2.0)"))
        assert "<" not in text and "style" not in text
        assert text.splitlines()[0] == "gradient of f: jax.jit(jax.grad(f))"


class TestPieces:
    @pytest.mark.parametrize(
        ("value", "tag"),
        [
            (np.float32(1.0), "f32[]"),
            (np.zeros((2, 3), dtype=np.float64), "f64[2,3]"),
            (jnp.ones(3, dtype=jnp.int32), "i32[3]"),
            (jnp.ones(2, dtype=jnp.bfloat16), "bf16[2]"),
            (jnp.ones(2, dtype=jnp.float8_e4m3fn), "float8_e4m3fn[2]"),
            (jnp.ones(2, dtype=jnp.int4), "int4[2]"),
            (np.array([True]), "bool[1]"),
            (1.0, "float"),
            (2, "int"),
            (True, "bool"),
            ("fast", "str"),
        ],
    )
    def test_type_tags(self, value: Any, tag: str) -> None:
        assert type_tag(value) == tag

    def test_a_prng_key_shows_its_key_data(self) -> None:
        key = jax.random.key(0)
        assert type_tag(key).startswith("key<") and format_array(key) == "[0, 0]"

    def test_small_arrays_in_full_and_big_ones_abbreviated(self) -> None:
        assert format_array(jnp.array([1.0, 2.5])) == "[1. , 2.5]"
        assert format_array(np.float64(0.1234567891)) == "0.123457"
        assert "..." in format_array(np.arange(100.0), max_items=24)
        big = format_array(jnp.arange(5000.0))
        assert "..." in big and "5000 values" in big and "max 4999" in big
        assert format_array("x" * 200).endswith("...") and len(format_array("x" * 200)) <= 80
        imaginary = format_array(jnp.full(5000, 3j, dtype=jnp.complex64))
        assert "..." in imaginary and "3.j" in imaginary and "norm 0" not in imaginary and "max" not in imaginary

    def test_numbers(self) -> None:
        assert [number(v) for v in (26.0, 0.1234567891, 5e19, float("inf"), np.float32(1.5))] == [
            "26",
            "0.123457",
            "5e+19",
            "inf",
            "1.5",
        ]
        assert number(1.23456, 4) == "1.235" and number(float("nan"), 4) == "nan"
        assert scientific(7.0612e-5) == "7.06e-05" and scientific(0.002, 0) == "2e-03"

    def test_compact_parameters(self) -> None:
        assert compact(4.0) == "4" and compact(jnp.float32(1.8)) == "1.8"
        assert compact(jnp.array([2.6, -1.4])) == "[2.6, -1.4]"
        assert compact(jnp.arange(1000.0)) == "[0, 1, ..., 998, 999] (1000,)"
        assert compact(np.ones((2, 2))) == "[1, 1, 1, 1] (2, 2)"
        assert compact(jnp.arange(5.0), max_items=4) == "[0, 1, ..., 3, 4] (5,)"

    def test_render_text_takes_its_limits(self) -> None:
        r = grad(lambda x: jnp.sum(x**2), at=jnp.arange(30.0), fn_name="s")
        assert "..." in render_text(r, DisplayLimits(max_items=5))
        assert "..." not in render_text(r, DisplayLimits(max_items=100))
