"""The result objects (results.py, notebook.py): what a result knows, its stepper, its bounded repr.

Values are checked against closed forms: for ``bowl(x, y) = x**2 + (y - 1)**2`` at ``(5, 2)``
the value is 26, the gradient ``(2x, 2(y - 1)) = (10, 2)``, and one plain gradient step of
size ``lr`` lands on ``(5 - 10 lr, 2 - 2 lr)``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import close

from jaxgrad_magic import grad, jac
from jaxgrad_magic.display import DisplayLimits, render_html, render_text
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.notebook import NotebookResult
from jaxgrad_magic.results import DerivativeResult
from jaxgrad_magic.stepper import Stepper

if TYPE_CHECKING:
    from conftest import Shell


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1) ** 2


@pytest.fixture(scope="module")
def both() -> DerivativeResult:
    """The gradient of the bowl in x and y at (5, 2)."""
    return grad(bowl, at=(5.0, 2.0), argnums=(0, 1))


def notebook_result(
    result: DerivativeResult, namespace: dict[str, Any], names: tuple[str | None, ...], **extra: Any
) -> NotebookResult:
    """``result`` as a magic would return it: bound to ``names`` in ``namespace``."""
    core = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return NotebookResult(**{**core, "point_names": names}, namespace=namespace, **extra)


class TestWhatAResultKnows:
    def test_value_and_gradient_are_the_closed_forms(self, both: DerivativeResult) -> None:
        assert float(both.value) == pytest.approx(26.0)
        close(both.derivative, (10.0, 2.0))
        assert both.kind == "grad" and both.fn_name == "bowl" and both.param_names == ("x", "y")

    def test_evaluated(self, both: DerivativeResult) -> None:
        assert both.evaluated and both.point == (5.0, 2.0)
        built = grad(bowl)  # no point: built, not evaluated
        assert not built.evaluated and built.point is None and built.value is None
        assert built.missing == ("x", "y")
        close(built.transformed(5.0, 2.0), 10.0)  # the derivative function still works

    @pytest.mark.parametrize(
        ("argnums", "wrt", "want"), [(0, ("x",), 10.0), (1, ("y",), 2.0), ((1, 0), ("y", "x"), (2.0, 10.0))]
    )
    def test_wrt_names_the_differentiated_parameters(self, argnums: Any, wrt: tuple[str, ...], want: Any) -> None:
        r = grad(bowl, at=(5.0, 2.0), argnums=argnums)
        assert r.wrt == wrt
        close(r.derivative, want)

    def test_wrt_past_the_named_parameters(self) -> None:
        r = grad(lambda x, *rest: x * rest[0], at=(2.0, 3.0), argnums=(0, 1), fn_name="f")
        assert r.wrt == ("x", "arg1")
        close(r.derivative, (3.0, 2.0))  # d(x r)/dx = r, d(x r)/dr = x

    def test_a_jacobian_is_the_closed_form(self) -> None:
        x = jnp.array([0.5, 1.0, 1.5])
        r = jac(jnp.sin, at=x, fn_name="sin")
        close(r.derivative, np.diag(np.cos(np.asarray(x))))
        assert r.wrt == ("x",) and r.mode in ("fwd", "rev")

    def test_a_result_is_frozen(self, both: DerivativeResult) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            both.value = 0.0  # type: ignore[misc]

    def test_text_and_html_are_the_renderers(self, both: DerivativeResult) -> None:
        assert str(both) == render_text(both)
        assert both._repr_html_() == render_html(both)


class TestStepper:
    def test_built_on_first_access_and_kept(self) -> None:
        r = grad(bowl, at=(5.0, 2.0), argnums=(0, 1))
        assert "stepper" not in vars(r)  # nothing built until asked
        s = r.stepper
        assert isinstance(s, Stepper) and r.stepper is s and vars(r)["stepper"] is s
        close(s.params, (5.0, 2.0))
        s.step()
        close(r.stepper.params, (5.0 - 0.1 * 10.0, 2.0 - 0.1 * 2.0))  # sgd at its default lr 0.1

    def test_make_stepper_gives_a_new_stepper_with_its_options(self, both: DerivativeResult) -> None:
        s = both.make_stepper(lr=0.25)
        assert s is not both.make_stepper(lr=0.25) and s.lr == pytest.approx(0.25)
        s.step()
        close(s.params, (5.0 - 0.25 * 10.0, 2.0 - 0.25 * 2.0))
        adam = both.make_stepper(optimizer="adam", lr=0.5)
        assert adam.optimizer == "adam"
        adam.step()  # adam's first step is lr * sign(g) (bias-corrected moments)
        close(adam.params, (5.0 - 0.5, 2.0 - 0.5), tol=1e-4)

    def test_the_stepper_steps_only_the_differentiated_argument(self) -> None:
        r = grad(bowl, at=(5.0, 2.0), argnums=1)
        s = r.make_stepper(lr=0.5)
        s.step()
        close(s.params, 2.0 - 0.5 * 2.0)  # y alone: x stays 5
        assert s.argnums == 1

    def test_no_point_no_stepper(self) -> None:
        built = grad(bowl)
        with pytest.raises(JaxGradUsageError, match="at="):
            built.make_stepper()
        with pytest.raises(JaxGradUsageError, match="not evaluated"):
            _ = built.stepper

    def test_a_plain_result_writes_nowhere_it_was_not_told(self, both: DerivativeResult) -> None:
        ns: dict[str, Any] = {}
        s = both.make_stepper(namespace=ns)
        s.step()
        written = s.apply()  # no notebook variables behind the point: one <fn_name>_params
        assert list(written) == ["bowl_params"] and list(ns) == ["bowl_params"]
        close(ns["bowl_params"], (4.0, 1.8))


class TestNotebookResult:
    def test_the_stepper_writes_back_to_the_notebook(self, both: DerivativeResult) -> None:
        ns: dict[str, Any] = {"x": 5.0, "y": 2.0}
        r = notebook_result(both, ns, ("x", "y"), stepper_options={"lr": 0.1, "optimizer": "sgd"})
        assert r.stepper is r.stepper and r.stepper.namespace is ns
        r.stepper.step()
        written = r.stepper.apply()
        assert set(written) == {"x", "y"}
        assert ns["x"] == pytest.approx(4.0) and ns["y"] == pytest.approx(1.8)
        assert isinstance(ns["x"], float)  # a Python float stays a float

    def test_the_panel_defaults_reach_the_stepper(self, both: DerivativeResult) -> None:
        r = notebook_result(both, {}, ("x", "y"), stepper_options={"lr": 0.05, "optimizer": "momentum"})
        assert r.stepper.lr == pytest.approx(0.05) and r.stepper.optimizer == "momentum"

    def test_it_is_still_a_derivative_result(self, both: DerivativeResult) -> None:
        r = notebook_result(both, {}, ("x", "y"))
        assert isinstance(r, DerivativeResult) and r.evaluated and r.wrt == ("x", "y")
        close(r.derivative, (10.0, 2.0))
        assert not r.show_stepper and r.display_limits == DisplayLimits()

    def test_the_shell_returns_one(self, ip: Shell) -> None:
        ip.run_cell("def bowl(x, y):\n    return x**2 + (y - 1) ** 2\nx = 5.0\ny = 2.0")
        r = ip.run_cell("%jgrad bowl argnums=0,1 stepper=False")
        assert isinstance(r, NotebookResult) and r.namespace is ip.ns
        assert r.point_names == ("x", "y") and r.bound_name == "bowl_grad"
        close(r.derivative, (10.0, 2.0))
        r.stepper.step()
        r.stepper.apply()
        assert ip.ns["x"] == pytest.approx(4.0) and ip.ns["y"] == pytest.approx(1.8)


def many_scalars(n: int) -> dict[str, Any]:
    return {f"w{i:04d}": jnp.float32(i) for i in range(n)}


def sum_of_squares(q: dict[str, Any]) -> Any:
    return sum(v**2 for v in q.values())


class TestRepr:
    def test_small_fields_keep_their_repr(self, both: DerivativeResult) -> None:
        shown = repr(both)
        assert shown.startswith("DerivativeResult(kind='grad', fn_name='bowl'")
        assert "value=Array(26" in shown and "point=(5.0, 2.0)" in shown
        assert "fn=" not in shown and "transformed=" not in shown  # functions are left out

    def test_a_big_point_is_bounded(self) -> None:
        r = grad(sum_of_squares, at=many_scalars(2000), fn_name="f")
        shown = repr(r)
        assert len(shown) < 10_000
        assert "… 1,994 more leaves …" in shown and "w0000" in shown and "w1999" in shown
        assert "w1000" not in shown

    def test_a_notebook_result_hides_the_namespace_and_uses_its_limits(self) -> None:
        core = grad(sum_of_squares, at=many_scalars(30), fn_name="f")
        ns = {"huge": "x" * 100_000}
        r = notebook_result(core, ns, (None,), display_limits=DisplayLimits(max_leaves=1000))
        shown = repr(r)
        assert "namespace" not in shown and "xxxx" not in shown
        assert "more leaves" not in shown and "w0015" in shown  # 30 leaves within its limit of 1000
        assert "… 24 more leaves …" in repr(core)  # the default limit shows 3 + 3 of them
