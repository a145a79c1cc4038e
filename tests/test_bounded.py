"""Bounded: ``order=N`` finishes or refuses at once, and renderings stay small for any point.

High orders are computed by Taylor mode (``jax.experimental.jet``) and checked against closed
forms of the derivatives of sin, exp, polynomials, 1/x and arctan written here. The rendering
tests use a few hundred leaves: enough to exceed the limits many times over, cheap to trace.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad_magic import grad, jac
from jaxgrad_magic.display import DisplayLimits, Elided, elide, elide_lines, short_repr
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.transforms import NESTED_FALLBACK_MAX, NESTED_MAX, TAYLOR_MAX

if TYPE_CHECKING:
    from conftest import Shell


def sin_derivative(n: int) -> Callable[[float], float]:
    """The n-th derivative of sin: sin(x + nπ/2)."""
    return lambda x: math.sin(x + n * math.pi / 2)


def arctan_derivative(n: int, x: float) -> float:
    """d^n/dx^n arctan x = (-1)^(n-1) (n-1)! sin(n θ) / (1 + x²)^(n/2), θ = π/2 - arctan x."""
    theta = math.pi / 2 - math.atan(x)
    return (-1) ** (n - 1) * math.factorial(n - 1) * math.sin(n * theta) / (1 + x * x) ** (n / 2)


class TestHighOrders:
    @pytest.mark.parametrize(
        ("fn", "n", "closed_form", "rtol"),
        [
            (jnp.sin, 5, sin_derivative(5), 1e-5),
            (jnp.sin, 8, sin_derivative(8), 1e-5),
            (jnp.sin, 16, sin_derivative(16), 2e-5),
            (jnp.sin, TAYLOR_MAX, sin_derivative(TAYLOR_MAX), 1e-4),
            (jnp.exp, 10, math.exp, 1e-5),
            (lambda x: x**10, 7, lambda x: math.factorial(10) / math.factorial(3) * x**3, 1e-5),
            (lambda x: x**10, 10, lambda x: float(math.factorial(10)), 1e-5),
            (lambda x: 1 / x, 6, lambda x: math.factorial(6) / x**7, 1e-5),
        ],
        ids=["sin5", "sin8", "sin16", "sin_max", "exp10", "x10_7", "x10_10", "recip6"],
    )
    def test_taylor_mode_against_closed_forms(
        self, fn: Any, n: int, closed_form: Callable[[float], float], rtol: float
    ) -> None:
        r = grad(fn, at=0.7, order=n, fn_name="f")
        assert float(r.derivative) == pytest.approx(closed_form(np.float32(0.7)), rel=rtol, abs=1e-6)
        assert r.mode == "taylor" and f"jet(f, order={n})" in r.composition
        assert "Taylor mode" in r.mode_reason and "Taylor mode" in str(r)
        # The bound function is the same derivative, at any point.
        assert float(r.transformed(0.3)) == pytest.approx(closed_form(np.float32(0.3)), rel=rtol, abs=1e-6)

    def test_a_polynomial_past_its_degree_is_zero(self) -> None:
        r = grad(lambda x: x**10 - 3 * x**4, at=1.3, order=12)
        assert float(r.derivative) == 0.0

    def test_other_arguments_are_carried(self) -> None:
        r = grad(lambda x, a: jnp.sin(a * x), at=(0.7, 2.0), order=6)
        assert float(r.derivative) == pytest.approx(-(2.0**6) * math.sin(1.4), rel=1e-5)
        assert float(r.transformed(0.7, 2.0)) == pytest.approx(-(2.0**6) * math.sin(1.4), rel=1e-5)

    def test_small_orders_stay_nested_grad(self) -> None:
        r = grad(jnp.sin, at=0.7, order=NESTED_MAX, fn_name="f")
        assert r.mode is None and r.composition.count("jax.grad(") == NESTED_MAX
        assert float(r.derivative) == pytest.approx(sin_derivative(NESTED_MAX)(0.7), rel=1e-5)

    def test_without_a_point_it_is_built_for_later(self) -> None:
        r = grad(jnp.exp, order=12, fn_name="e")
        assert not r.evaluated and r.mode == "taylor"
        assert float(r.transformed(1.5)) == pytest.approx(math.exp(1.5), rel=1e-5)

    @pytest.mark.parametrize("n", [TAYLOR_MAX + 1, 100, 10_000])
    def test_beyond_the_bound_is_refused(self, n: int) -> None:
        for at in ({"at": 0.7}, {}):
            with pytest.raises(JaxGradUsageError) as caught:
                grad(jnp.sin, order=n, **at)
            message = str(caught.value)
            assert f"order={n}" in message and f"order={TAYLOR_MAX} or less" in message
            assert "compiling" in message and "grows" in message and "N!" in message  # says why

    def test_what_jet_cannot_trace_falls_back_to_nested_grad(self) -> None:
        # jet has no rule for atan: nested grad still computes orders up to NESTED_FALLBACK_MAX.
        for n in range(NESTED_MAX + 1, NESTED_FALLBACK_MAX + 1):
            r = grad(jnp.arctan, at=0.7, order=n)
            assert r.mode == "nested" and "cannot trace" in r.mode_reason
            assert float(r.derivative) == pytest.approx(arctan_derivative(n, float(np.float32(0.7))), rel=1e-4)
        with pytest.raises(JaxGradUsageError) as caught:
            grad(jnp.arctan, at=0.7, order=NESTED_FALLBACK_MAX + 1)
        message = str(caught.value)
        assert "Taylor mode" in message and f"order={NESTED_FALLBACK_MAX}" in message

    def test_in_the_shell(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sin(x)")
        r = ip.run_cell("%jgrad wave at=0.7 order=16")
        assert float(r.derivative) == pytest.approx(sin_derivative(16)(0.7), rel=2e-5)
        assert float(ip.ns["wave_grad16"](0.3)) == pytest.approx(sin_derivative(16)(0.3), rel=2e-5)
        message = ip.usage_error("%jgrad wave at=0.7 order=100", capsys)
        assert f"order={TAYLOR_MAX} or less" in message


def many_scalars(n: int) -> dict[str, Any]:
    return {f"w{i:04d}": jnp.float32(i / n) for i in range(n)}


def sum_of_squares(q: dict[str, Any]) -> Any:
    return sum(v**2 for v in q.values())


LIMIT = 10_000


@pytest.fixture(scope="module")
def big() -> Any:
    """The gradient of a function of a dict of 300 scalars."""
    return grad(sum_of_squares, at=many_scalars(300), fn_name="f")


class TestBoundedDisplay:
    def test_text_html_and_repr_of_300_leaves(self, big: Any) -> None:
        text, page, shown = str(big), html.unescape(big._repr_html_()), repr(big)
        for out in (text, page, shown):
            assert len(out) < LIMIT
            assert "… 294 more leaves …" in out
            for k in ("w0000", "w0001", "w0002", "w0297", "w0298", "w0299"):  # the first and last three
                assert k in out
            assert "w0150" not in out and "w0003" not in out
        # Both the point and the derivative are cut, each with its own count.
        assert text.count("… 294 more leaves …") == 2 and page.count("… 294 more leaves …") == 2
        assert "∂f/∂q['w0299'] = f32[] 1.99333" in text  # the values shown are the real ones (2 x)
        assert "value=Array(99.50" in shown  # small fields keep their plain repr

    def test_the_limits_are_the_results(self, big: Any) -> None:
        from jaxgrad_magic.display import render_text

        wide = render_text(big, DisplayLimits(max_leaves=1000))
        assert "more leaves" not in wide and "w0150" in wide

    def test_a_small_tree_shows_every_leaf(self) -> None:
        r = grad(sum_of_squares, at=many_scalars(DisplayLimits().max_leaves), fn_name="f")
        assert "more leaves" not in str(r) and "more leaves" not in r._repr_html_() and "more leaves" not in repr(r)

    def test_a_jacobian_heatmap_labels_only_its_ends(self) -> None:
        r = jac(lambda q: jnp.stack([sum(q.values()), sum_of_squares(q)]), at=many_scalars(300), fn_name="g")
        page = html.unescape(r._repr_html_())
        assert "alt='heatmap'" in page  # drawn as a picture
        assert len(page) < LIMIT and "… 294 more leaves …" in page
        assert "q['w0000']" in page and "q['w0299']" in page and "q['w0150']" not in page
        assert len(str(r)) < LIMIT and len(repr(r)) < LIMIT

    def test_a_long_program_is_collapsed(self) -> None:
        def long(x: Any) -> Any:
            for _ in range(300):
                x = jnp.sin(x) * 1.01
            return x

        r = grad(long, at=0.5, show="jaxpr")
        lines = r.jaxpr.splitlines()
        assert len(lines) > 1000 and len(r.jaxpr) > 40_000  # the whole program stays on the result
        hidden = len(lines) - 2 * (DisplayLimits().max_lines // 2)
        for out in (str(r), html.unescape(r._repr_html_())):
            assert len(out) < LIMIT
            assert f"… {hidden:,} more lines …" in out
            assert lines[0].strip() in out and lines[-1].strip() in out
            assert f"{len(lines):,} lines; all of them in the result's .jaxpr" in out
        assert len(repr(r)) < LIMIT


class TestPieces:
    def test_elide(self) -> None:
        limits = DisplayLimits(max_leaves=12, edge_leaves=3)
        assert elide(range(12), limits) == list(range(12))
        assert elide(range(2000), limits) == [0, 1, 2, Elided(1994), 1997, 1998, 1999]
        assert str(Elided(1994)) == "… 1,994 more leaves …"

    def test_elide_lines(self) -> None:
        text = "\n".join(f"line {i}" for i in range(100))
        short = elide_lines(text, DisplayLimits(max_lines=10))
        assert short.splitlines() == [
            *(f"line {i}" for i in range(5)),
            "… 90 more lines …",
            *(f"line {i}" for i in range(95, 100)),
        ]
        assert elide_lines("a\nb", DisplayLimits(max_lines=10)) == "a\nb"

    def test_short_repr(self) -> None:
        assert short_repr("x" * 50) == repr("x" * 50)
        long = short_repr("x" * 50_000)
        assert len(long) < 2100 and "(50,000 characters)" in long
        tree = {f"k{i}": np.float32(i) for i in range(500)}
        text = short_repr(tree)
        assert len(text) < 1000 and text.startswith("<dict of 500 leaves: ['k0']=f32[] 0")
        assert "… 494 more leaves …" in text and "['k99']=f32[] 99" in text
        assert short_repr([1.0, 2.0]) == "[1.0, 2.0]"
