"""%jgrad, %jac and %hess in a real IPython shell: the story, every option, binding, results, re-runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pytest
from conftest import close
from IPython.core.interactiveshell import InteractiveShell

from jaxgrad_magic import DerivativeResult
from jaxgrad_magic.cache import CACHE

if TYPE_CHECKING:
    from conftest import Compiles, Shell

X3 = np.array([1.0, 2.0, 3.0])

PIPELINE = "def pipeline(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n"
BOWL = "def f(x, y):\n    return x**2 + (y - 1) ** 2\n"
PAIR = "def pair(x):\n    return jnp.sin(x), jnp.cos(x)\n"


def test_the_extension_registers_three_line_and_cell_magics(shell: InteractiveShell) -> None:
    magics = shell.magics_manager.magics
    for name in ("jgrad", "jac", "hess"):
        assert name in magics["line"], name
        assert name in magics["cell"], name


class TestStory:
    """The examples of the notebook the magics grew from, each one magic line."""

    def test_gradient_of_sum_of_squared_sines(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=jnp.array([1.0, 2.0, 3.0])\n" + PIPELINE)
        assert isinstance(r, DerivativeResult)
        close(r.derivative, np.sin(2 * X3))  # d/dx sin(x)^2 = 2 sin x cos x = sin 2x
        close(r.value, np.sum(np.sin(X3) ** 2))
        close(ip.ns["pipeline_grad"](jax.numpy.asarray(X3)), np.sin(2 * X3))

    def test_second_derivative_at_a_scalar(self, ip: Shell) -> None:
        ip.run_cell("def g(x):\n    return jnp.sin(x) ** 2\n")
        r = ip.run_cell("%jgrad g at=0.7 order=2")
        close(r.derivative, 2 * np.cos(2 * 0.7))
        assert r.order == 2
        close(ip.ns[r.bound_name](0.3), 2 * np.cos(0.6))

    def test_jacrev_of_a_pair_of_outputs(self, ip: Shell) -> None:
        ip.run_cell("x = jnp.array([1.0, 2.0, 3.0])\n" + PAIR)
        r = ip.run_cell("%jac pair at=x mode=rev")
        d_sin, d_cos = r.derivative
        close(d_sin, np.diag(np.cos(X3)))
        close(d_cos, np.diag(-np.sin(X3)))
        assert r.mode == "rev" and "jacrev" in r.composition

    @pytest.mark.parametrize("magic", ["jgrad", "jac"])
    @pytest.mark.parametrize(
        ("argnums", "expected"), [("0", 10.0), ("1", 2.0), ("(0, 1)", (10.0, 2.0)), ("0,1", (10.0, 2.0))]
    )
    def test_argnums_of_the_bowl(self, ip: Shell, magic: str, argnums: str, expected: Any) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell(f"%{magic} f at=(5., 2.) argnums={argnums}")
        close(r.derivative, expected)
        assert isinstance(r.derivative, tuple) == isinstance(expected, tuple)

    def test_a_descent_step(self, ip: Shell) -> None:
        ip.run_cell("x = jnp.array([1.0, 2.0, 3.0])\n" + PIPELINE)
        r = ip.run_cell("r = %jgrad pipeline at=x\nx_next = x - 0.1 * r.derivative\nr")
        close(ip.ns["x_next"], X3 - 0.1 * np.sin(2 * X3))
        ip.run_cell("x = x - 0.1 * pipeline_grad(x)")  # the bound gradient steps too
        close(ip.ns["x"], X3 - 0.1 * np.sin(2 * X3))
        assert float(ip.ns["pipeline"](ip.ns["x"])) < float(r.value)


class TestCellAndLine:
    def test_cell_magic_runs_the_cell_and_uses_its_last_function(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=2.0\ndef helper(x):\n    return 3.0 * x\ndef g(x):\n    return helper(x) ** 2\n")
        assert r.fn_name == "g"
        close(r.derivative, 2 * 9.0 * 2.0)
        assert "helper" in ip.ns and "g_grad" in ip.ns

    def test_cell_magic_finds_a_lambda(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=3.0\ncube = lambda x: x ** 3\n")
        assert r.fn_name == "cube"
        close(r.derivative, 27.0)
        assert "cube_grad" in ip.ns

    def test_fn_picks_the_function_in_a_cell(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad fn=first at=2.0\ndef first(x):\n    return x ** 2\ndef second(x):\n    return x\n")
        assert r.fn_name == "first"
        close(r.derivative, 4.0)

    def test_fn_in_a_line_magic(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        close(ip.run_cell("%jgrad fn=f at=(5.0, 2.0)").derivative, 10.0)

    def test_a_dotted_function(self, ip: Shell) -> None:
        ip.run_cell("import types\nmodel = types.SimpleNamespace(loss=lambda w: jnp.sum(w ** 2))")
        r = ip.run_cell("%jgrad model.loss at=jnp.array([1.0, -2.0])")
        close(r.derivative, [2.0, -4.0])
        assert r.bound_name == "loss_grad" and "loss_grad" in ip.ns

    def test_the_cell_runs_exactly_once(self, ip: Shell) -> None:
        ip.run_cell("calls = []")
        ip.run_cell("%%jgrad at=1.0\ncalls.append('ran')\ndef g(x):\n    return x * 2.0\n")
        assert ip.ns["calls"] == ["ran"]
        ip.run_cell("%%jac at=1.0\ncalls.append('ran')\ndef g(x):\n    return x * 2.0\n")
        ip.run_cell("%%hess at=1.0\ncalls.append('ran')\ndef g(x):\n    return x * 2.0\n")
        assert ip.ns["calls"] == ["ran", "ran", "ran"]

    def test_cell_output_and_magics_inside_the_cell_work(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("%%jgrad at=1.0\nprint('hello from the cell')\nscale = 2.0\ndef g(x):\n    return scale * x\n;")
        assert "hello from the cell" in capsys.readouterr().out

    def test_at_is_evaluated_after_the_cell_ran(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=start\nstart = jnp.array([0.5, 1.5])\n" + PIPELINE)
        close(r.derivative, np.sin(2 * np.array([0.5, 1.5])))
        assert r.point_names == ("start",)


class TestPoint:
    def test_at(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell("%jgrad f at=(5.0, 2.0)")
        assert r.point_source == "at=" and r.point == (5.0, 2.0)

    def test_defaults(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad\ndef g(x=3.0, y=2.0):\n    return x * y\n")
        assert r.point_source == "defaults" and r.point == (3.0, 2.0)
        close(r.derivative, 2.0)

    def test_notebook_variables_named_like_the_parameters(self, ip: Shell) -> None:
        ip.run_cell("x = 5.0; y = 2.0")
        r = ip.run_cell("%%jgrad argnums=0,1\n" + BOWL)
        assert r.point_source == "notebook variables" and r.point_names == ("x", "y")
        close(r.derivative, (10.0, 2.0))

    def test_nothing_found_builds_and_binds_only(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad\n" + BOWL)
        assert r.point is None and r.value is None and r.derivative is None
        assert r.point_source == "none"
        assert "not evaluated" in str(r) and "f_grad(x, y)" in str(r) and "at=" in str(r)
        close(ip.ns["f_grad"](5.0, 2.0), 10.0)

    def test_at_wins_over_defaults_and_variables(self, ip: Shell) -> None:
        ip.run_cell("x = 9.0")
        r = ip.run_cell("%%jgrad at=1.5\ndef g(x=4.0):\n    return x ** 2\n")
        close(r.derivative, 3.0)


class TestOptions:
    def test_wrt_by_parameter_name(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell("%jgrad f at=(5.0, 2.0) wrt=y")
        assert r.argnums == 1 and r.wrt == ("y",)
        close(r.derivative, 2.0)
        close(ip.run_cell("%jgrad f at=(5.0, 2.0) wrt=x,y").derivative, (10.0, 2.0))

    def test_values_are_python_expressions_in_the_namespace(self, ip: Shell) -> None:
        ip.run_cell(BOWL + "a = 4.0\nwhich = (0, 1)")
        r = ip.run_cell("%jgrad f at=(a + 1, a / 2) argnums=which")
        close(r.derivative, (10.0, 2.0))

    def test_name_binds_where_asked(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell("%jgrad f at=(5.0, 2.0) name=df")
        assert r.bound_name == "df" and "df" in ip.ns and "f_grad" not in ip.ns
        close(ip.ns["df"](1.0, 1.0), 2.0)

    @pytest.mark.parametrize(("magic", "suffix"), [("jgrad", "grad"), ("jac", "jac"), ("hess", "hess")])
    def test_each_magic_binds_fn_suffix(self, ip: Shell, magic: str, suffix: str) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell(f"%{magic} f at=(5.0, 2.0)")
        assert r.bound_name == f"f_{suffix}" and ip.ns[f"f_{suffix}"] is r.transformed

    def test_jit_false(self, ip: Shell) -> None:
        ip.run_cell(PIPELINE)
        r = ip.run_cell("%jgrad pipeline at=jnp.array([1.0, 2.0, 3.0]) jit=False")
        assert r.composition == "jax.grad(pipeline)"
        close(r.derivative, np.sin(2 * X3))
        assert "jax.jit(" in ip.run_cell("%jgrad pipeline at=jnp.array([1.0, 2.0, 3.0])").composition

    def test_configured_default_for_jit(self, ip: Shell) -> None:
        ip.run_cell(PIPELINE)
        try:
            ip.run_cell("%config JaxGradMagics.jit = False")
            assert ip.run_cell("%jgrad pipeline at=1.0").composition == "jax.grad(pipeline)"
            assert ip.run_cell("%jgrad pipeline at=1.0 jit=True").composition == "jax.jit(jax.grad(pipeline))"
        finally:
            ip.run_cell("%config JaxGradMagics.jit = True")

    @pytest.mark.parametrize("mode", ["rev", "fwd"])
    def test_jac_modes(self, ip: Shell, mode: str) -> None:
        ip.run_cell(PAIR)
        r = ip.run_cell(f"%jac pair at=jnp.array([1.0, 2.0, 3.0]) mode={mode}")
        assert r.mode == mode and f"jax.jac{mode}(pair" in r.composition and "as asked" in r.mode_reason
        close(r.derivative[0], np.diag(np.cos(X3)))

    def test_jac_auto_says_which_mode_it_chose(self, ip: Shell) -> None:
        ip.run_cell("def tall(x):\n    return jnp.outer(x, jnp.arange(10.0)).ravel()\n")
        ip.run_cell("def wide(x):\n    return jnp.sum(x) * jnp.ones(2)\n")
        tall = ip.run_cell("%jac tall at=jnp.ones(2)")
        wide = ip.run_cell("%jac wide at=jnp.ones(10)")
        assert tall.mode == "fwd" and "jacfwd" in tall.mode_reason and "jacfwd" in str(tall)
        assert wide.mode == "rev" and "jacrev" in wide.mode_reason and "jacrev" in str(wide)
        expected = np.zeros((20, 2))  # out[10 i + j] = x[i] * j
        for i in range(2):
            expected[10 * i : 10 * i + 10, i] = np.arange(10.0)
        close(tall.derivative, expected)
        close(wide.derivative, np.ones((2, 10)))

    def test_order(self, ip: Shell) -> None:
        ip.run_cell("def cube(x):\n    return x ** 3\n")
        for order, expected in ((1, 3 * 4.0), (2, 6 * 2.0), (3, 6.0)):
            r = ip.run_cell(f"%jgrad cube at=2.0 order={order}")
            close(r.derivative, expected)


class TestResult:
    def test_attributes(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        r = ip.run_cell("%jgrad f at=(5.0, 2.0) argnums=(0, 1)")
        assert r.kind == "grad" and r.point == (5.0, 2.0)
        close(r.value, 26.0)
        assert isinstance(r.derivative, tuple)
        assert callable(r.transformed)
        assert r.mode is None
        j = ip.run_cell("%jac f at=(5.0, 2.0)")
        assert j.kind == "jac" and j.mode in ("rev", "fwd")
        assert ip.run_cell("%hess f at=(5.0, 2.0)").kind == "hess"

    def test_assigning_the_line_magic_keeps_the_result(self, ip: Shell) -> None:
        ip.run_cell(BOWL)
        ip.run_cell("r = %jgrad f at=(5.0, 2.0)")
        assert isinstance(ip.ns["r"], DerivativeResult)
        close(ip.ns["r"].derivative, 10.0)

    def test_a_trailing_semicolon_silences_the_line_magic(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell(BOWL)
        ip.ns["Out"].clear()
        capsys.readouterr()
        assert ip.run_cell("%jgrad f at=(5.0, 2.0);") is None
        assert ip.ns["Out"] == {}
        assert capsys.readouterr().out == ""
        assert "f_grad" in ip.ns  # silenced, not skipped
        shown = ip.run_cell("%jgrad f at=(5.0, 2.0)")
        assert isinstance(shown, DerivativeResult)
        assert "gradient of f" in capsys.readouterr().out

    @pytest.mark.parametrize("magic", ["jgrad", "jac", "hess", "jvp", "vjp"])
    def test_every_magic_is_silenced_by_a_trailing_semicolon(
        self, ip: Shell, capsys: pytest.CaptureFixture[str], magic: str
    ) -> None:
        ip.run_cell("def sq(x):\n    return x**2\n")
        vector = {"jvp": " tangent=1.0", "vjp": " cotangent=1.0"}.get(magic, "")
        capsys.readouterr()
        assert ip.run_cell(f"%{magic} sq at=3.0{vector} ;  ") is None
        assert ip.run_cell(f"r = %{magic} sq at=3.0{vector};") is None and ip.ns["r"] is None
        assert capsys.readouterr().out == ""
        assert f"sq_{'grad' if magic == 'jgrad' else magic}" in ip.ns  # silenced, not skipped
        assert isinstance(ip.run_cell(f"%{magic} sq at=3.0{vector}  # a comment;"), DerivativeResult)
        assert isinstance(ip.run_cell(f"%{magic} sq at=(';', 3.0)[1]{vector}"), DerivativeResult)

    @pytest.mark.parametrize("magic", ["jgrad", "jac", "hess"])
    def test_dollar_and_braces_are_left_alone(self, ip: Shell, magic: str) -> None:
        ip.run_cell("def g(d):\n    return d['a'] ** 2\n")
        r = ip.run_cell(f"%{magic} g at={{'a': 2.0}}")
        close(jax.tree_util.tree_leaves(r.derivative)[0], 4.0 if magic != "hess" else 2.0)

    def test_help_shows_usage_with_examples_of_every_option(
        self, ip: Shell, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        ip.run_cell("%jgrad?")
        text = capsys.readouterr().out
        assert "Usage" in text and "%%jgrad" in text and "%jgrad f" in text
        for option in ("at=", "argnums=0,1", "argnums=(0, 1)", "wrt=", "fn=", "order=2", "aux=True", "jit=False"):
            assert option in text, option
        assert "name=" in text
        for magic, extra in (("jac", "mode=fwd"), ("hess", "argnums=0,1")):
            capsys.readouterr()
            ip.run_cell(f"%{magic}?")
            assert extra in capsys.readouterr().out


class TestPytreesAndAux:
    PARAMS = "params = {'w': jnp.array([1.0, -1.0]), 'b': [jnp.asarray(0.5)]}\n"
    LOSS = "def loss(p):\n    return jnp.sum((2.0 * p['w'] + p['b'][0]) ** 2)\n"

    def test_grad_of_a_pytree(self, ip: Shell) -> None:
        r = ip.run_cell("%%jgrad at=params\n" + self.PARAMS + self.LOSS)
        w, b = np.array([1.0, -1.0]), 0.5
        close(r.derivative["w"], 4.0 * (2 * w + b))
        close(r.derivative["b"][0], np.sum(2.0 * (2 * w + b)))

    def test_jac_of_a_pytree(self, ip: Shell) -> None:
        ip.run_cell(self.PARAMS + "def pred(p):\n    return {'out': 2.0 * p['w'] + p['b'][0]}\n")
        r = ip.run_cell("%jac pred at=params")
        close(r.derivative["out"]["w"], 2.0 * np.eye(2))
        close(r.derivative["out"]["b"][0], [1.0, 1.0])

    def test_hess_of_a_pytree(self, ip: Shell) -> None:
        ip.run_cell(self.PARAMS + self.LOSS)
        r = ip.run_cell("%hess loss at=params")
        close(r.derivative["w"]["w"], 8.0 * np.eye(2))
        close(r.derivative["w"]["b"][0], [4.0, 4.0])
        close(r.derivative["b"][0]["b"][0], 4.0)

    @pytest.mark.parametrize("magic", ["jgrad", "jac", "hess"])
    def test_has_aux(self, ip: Shell, magic: str) -> None:
        ip.run_cell("def loss(x):\n    return jnp.sum(x ** 2), {'mean': jnp.mean(x)}\n")
        r = ip.run_cell(f"%{magic} loss at=jnp.array([1.0, 3.0]) aux=True")
        close(r.value, 10.0)
        close(r.aux["mean"], 2.0)
        expected = {"jgrad": [2.0, 6.0], "jac": [2.0, 6.0], "hess": 2.0 * np.eye(2)}[magic]
        close(r.derivative, expected)
        out, aux = ip.ns[r.bound_name](jax.numpy.array([1.0, 3.0]))
        close(out, expected)
        close(aux["mean"], 2.0)


class TestNoRecompile:
    CELL = (
        "%%jgrad at=jnp.array([1.0, 2.0, 3.0])\n"
        "w = jnp.array([1.0, 2.0, 3.0])\n"
        "def weighted(x):\n"
        "    return jnp.sum(w * jnp.sin(x) ** 2)\n"
    )

    def test_rerunning_an_unchanged_cell_compiles_nothing(self, ip: Shell, compiles: Compiles) -> None:
        CACHE.clear()
        first = ip.run_cell(self.CELL)
        assert compiles.count >= 1  # the first run compiles
        compiles.reset()
        again = ip.run_cell(self.CELL)
        assert compiles.count == 0
        close(again.derivative, first.derivative)
        close(again.derivative, X3 * np.sin(2 * X3))

    def test_rerunning_a_line_magic_compiles_nothing(self, ip: Shell, compiles: Compiles) -> None:
        ip.run_cell(BOWL + "x = 5.0; y = 2.0")
        ip.run_cell("%jac f argnums=0,1")
        compiles.reset()
        close(ip.run_cell("%jac f argnums=0,1").derivative, (10.0, 2.0))
        close(ip.run_cell("%jac f at=(1.0, 3.0) argnums=0,1").derivative, (2.0, 4.0))  # new values, same shapes
        assert compiles.count == 0

    def test_a_changed_global_gives_the_new_result(self, ip: Shell) -> None:
        ip.run_cell(self.CELL)
        changed = ip.run_cell(self.CELL.replace("w = jnp.array([1.0, 2.0, 3.0])", "w = jnp.array([3.0, 2.0, 1.0])"))
        close(changed.derivative, np.array([3.0, 2.0, 1.0]) * np.sin(2 * X3))

    def test_a_global_changed_outside_the_cell(self, ip: Shell) -> None:
        ip.run_cell("%%jgrad at=1.0\nscale = 2.0\ndef g(x):\n    return scale * x ** 2\n")
        ip.run_cell("scale = 5.0")
        close(ip.run_cell("%jgrad g at=1.0").derivative, 10.0)

    def test_a_changed_shape_gives_a_correct_result(self, ip: Shell) -> None:
        ip.run_cell(self.CELL)
        x4 = np.array([1.0, 2.0, 3.0, 4.0])
        cell = self.CELL.replace("[1.0, 2.0, 3.0]", "[1.0, 2.0, 3.0, 4.0]")
        close(ip.run_cell(cell).derivative, x4 * np.sin(2 * x4))

    def test_a_changed_function_body_gives_the_new_result(self, ip: Shell) -> None:
        ip.run_cell("%%jgrad at=2.0\ndef g(x):\n    return x ** 2\n")
        close(ip.run_cell("%%jgrad at=2.0\ndef g(x):\n    return x ** 3\n").derivative, 12.0)

    def test_an_attribute_changed_between_runs(self, ip: Shell) -> None:
        cell = "%%jgrad at=1.0\ndef g(x):\n    return cfg.scale * x ** 2\n"
        ip.run_cell("import types\ncfg = types.SimpleNamespace(scale=2.0)")
        close(ip.run_cell(cell).derivative, 4.0)
        ip.run_cell("cfg.scale = 5.0")
        close(ip.run_cell(cell).derivative, 10.0)

    def test_values_changed_in_place_deep_down_or_in_long_lists(self, ip: Shell) -> None:
        ip.run_cell(
            "import types\nS = types.SimpleNamespace\ncfg = S(model=S(layers=[S(w=2.0)]))\n"
            "weights = [1.0] * 300\ndef g(x):\n    return cfg.model.layers[0].w * weights[0] * x ** 2\n"
        )
        close(ip.run_cell("%jgrad g at=1.0").derivative, 4.0)
        ip.run_cell("cfg.model.layers[0].w = 5.0")
        close(ip.run_cell("%jgrad g at=1.0").derivative, 10.0)
        ip.run_cell("weights[0] = 3.0")
        close(ip.run_cell("%jgrad g at=1.0").derivative, 30.0)

    def test_a_global_read_by_a_helper(self, ip: Shell) -> None:
        ip.run_cell("%%jgrad at=1.0\nk = 2.0\ndef h(x):\n    return k * x\ndef g(x):\n    return h(x) ** 2\n")
        ip.run_cell("k = 3.0")
        close(ip.run_cell("%jgrad g at=1.0").derivative, 18.0)
