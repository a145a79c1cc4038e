"""The magic-line parser and option resolution, as plain functions (no shell)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.spec import MISSING, OPTIONS, Options, parse_line, resolve_options
from jaxgrad_magic.transforms import Kind


def _resolve(kind: Kind, line: str, **namespace: object) -> Options:
    return resolve_options(parse_line(kind, line), dict(namespace))


def _error(kind: Kind, line: str, **namespace: object) -> str:
    with pytest.raises(JaxGradUsageError) as info:
        _resolve(kind, line, **namespace)
    return str(info.value)


class TestParseLine:
    def test_target_and_options_are_kept_as_source_text(self) -> None:
        spec = parse_line("grad", "f at=(x, y) argnums=0,1")
        assert spec.kind == "grad"
        assert spec.target == "f"
        assert spec.options == (("at", "(x, y)"), ("argnums", "0,1"))
        assert spec.source("at") == "(x, y)"
        assert spec.source("wrt") is None

    def test_empty_line_has_no_target_and_no_options(self) -> None:
        spec = parse_line("jac", "")
        assert spec.target is None and spec.options == ()

    def test_dotted_target(self) -> None:
        assert parse_line("hess", "model.loss at=p").target == "model.loss"

    def test_keys_inside_brackets_and_strings_are_part_of_the_value(self) -> None:
        spec = parse_line("grad", "f at=dict(a=1.0, b=[2.0]) name='g x=1'")
        assert spec.source("at") == "dict(a=1.0, b=[2.0])"
        assert spec.source("name") == "'g x=1'"

    def test_comparison_is_not_an_option(self) -> None:
        assert parse_line("grad", "f at=x==y").source("at") == "x==y"

    def test_values_may_contain_spaces(self) -> None:
        assert parse_line("grad", "f at=(1.0, 2.0)   argnums=(0, 1)").options == (
            ("at", "(1.0, 2.0)"),
            ("argnums", "(0, 1)"),
        )

    def test_a_trailing_semicolon_is_not_part_of_the_last_value(self) -> None:
        # IPython hands the magic the whole line; the `;` only asks it to stay quiet.
        assert parse_line("grad", "f at=1.0;").source("at") == "1.0"
        assert parse_line("grad", "f at=(1.0, 2.0) ;").source("at") == "(1.0, 2.0)"
        assert parse_line("grad", "f;").target == "f"

    @pytest.mark.parametrize("kind", ["grad", "jac", "hess"])
    def test_every_magic_accepts_the_common_options(self, kind: Kind) -> None:
        for key in ("fn", "at", "argnums", "aux", "jit", "name"):
            assert key in OPTIONS[kind]
        assert parse_line(kind, "at=1.0 argnums=0 aux=False jit=True name=g").target is None
        assert parse_line(kind, "wrt=x fn=f").source("wrt") == "x"

    def test_order_is_for_jgrad_and_mode_for_jac(self) -> None:
        assert parse_line("grad", "f order=2").source("order") == "2"
        assert parse_line("jac", "f mode=fwd").source("mode") == "fwd"
        with pytest.raises(JaxGradUsageError, match="no option 'mode'"):
            parse_line("grad", "f mode=fwd")
        with pytest.raises(JaxGradUsageError, match="no option 'order'"):
            parse_line("hess", "f order=2")

    def test_unknown_option_suggests_the_closest(self) -> None:
        with pytest.raises(JaxGradUsageError) as info:
            parse_line("grad", "f argnum=1")
        message = str(info.value)
        assert "no option 'argnum'" in message
        assert "Did you mean 'argnums'?" in message
        assert "%jgrad?" in message

    def test_unknown_option_without_a_close_match_lists_the_options(self) -> None:
        with pytest.raises(JaxGradUsageError) as info:
            parse_line("jac", "f zzz=1")
        assert "Did you mean" not in str(info.value)
        assert "mode" in str(info.value)

    @pytest.mark.parametrize(
        ("line", "fragment"),
        [
            ("f at=1.0 at=2.0", "given twice"),
            ("f at=", "has no value"),
            ("f at= argnums=0", "has no value"),
            ("f argnums=0 wrt=x", "both argnums= and wrt="),
            ("f fn=g", "the function twice"),
            ("f g at=1.0", "expected a function name"),
            ("f at =1.0", "no spaces"),
            ("1f at=1.0", "expected a function name"),
            ("f at=(1.0, 2.0", "Unclosed bracket"),
            ("f at=1.0)", "Unbalanced ')'"),
            ("f at='abc", "Unclosed string"),
        ],
    )
    def test_malformed_lines(self, line: str, fragment: str) -> None:
        with pytest.raises(JaxGradUsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            parse_line("grad", line)


class TestResolveOptions:
    def test_defaults(self) -> None:
        opts = _resolve("grad", "f")
        assert opts.at is MISSING
        assert opts.argnums is None and opts.wrt is None
        assert (opts.aux, opts.jit, opts.order, opts.name, opts.fn) == (False, True, 1, None, None)
        assert _resolve("jac", "f").mode == "auto"

    def test_configured_defaults_apply_when_the_line_is_silent(self) -> None:
        opts = resolve_options(parse_line("jac", "f"), {}, {"jit": False, "mode": "fwd", "unknown": 1})
        assert (opts.jit, opts.mode) == (False, "fwd")
        assert resolve_options(parse_line("jac", "f jit=True"), {}, {"jit": False}).jit is True

    @pytest.mark.parametrize(
        ("src", "expected"),
        [("0", 0), ("1", 1), ("0,1", (0, 1)), ("(0, 1)", (0, 1)), ("[0, 1]", (0, 1)), ("(1,)", (1,))],
    )
    def test_argnums_forms(self, src: str, expected: object) -> None:
        assert _resolve("grad", f"f argnums={src}").argnums == expected

    def test_argnums_is_an_expression_in_the_namespace(self) -> None:
        assert _resolve("grad", "f argnums=which", which=(0, 1)).argnums == (0, 1)

    @pytest.mark.parametrize("src", ["1.0", "'0'", "True", "()", "(0, 'a')", "(0, 1.0)", "None"])
    def test_argnums_must_be_integers(self, src: str) -> None:
        message = _error("grad", f"f argnums={src}")
        assert "argnums=" in message and "argnums=0,1" in message

    @pytest.mark.parametrize(("src", "names"), [("x", ("x",)), ("x,y", ("x", "y")), ("(x, y)", ("x", "y"))])
    def test_wrt_names(self, src: str, names: tuple[str, ...]) -> None:
        assert _resolve("grad", f"f wrt={src}").wrt == names

    def test_wrt_must_name_parameters(self) -> None:
        assert "must name parameters" in _error("grad", "f wrt=1x")

    @pytest.mark.parametrize(("src", "value"), [("True", True), ("False", False), ("1", True), ("0", False)])
    def test_boolean_options(self, src: str, value: bool) -> None:
        opts = _resolve("grad", f"f aux={src} jit={src}")
        assert opts.aux is value and opts.jit is value

    @pytest.mark.parametrize("src", ["2", "1.0", "'yes'", "None", "flags"])
    def test_boolean_options_reject_other_values(self, src: str) -> None:
        assert "must be True or False" in _error("grad", f"f jit={src}", flags=np.array([True, False]))

    def test_order(self) -> None:
        assert _resolve("grad", "f order=3").order == 3

    @pytest.mark.parametrize("src", ["0", "-1", "1.5", "True", "'2'"])
    def test_order_must_be_a_whole_number_of_at_least_one(self, src: str) -> None:
        assert "order=" in _error("grad", f"f order={src}")

    @pytest.mark.parametrize("mode", ["auto", "rev", "fwd", "'fwd'"])
    def test_modes(self, mode: str) -> None:
        assert _resolve("jac", f"f mode={mode}").mode == mode.strip("'")

    def test_unknown_mode_suggests_the_closest(self) -> None:
        message = _error("jac", "f mode=fw")
        assert "not a Jacobian mode" in message and "Did you mean 'fwd'?" in message

    def test_name_and_fn_are_words(self) -> None:
        opts = _resolve("grad", "fn=model.loss name=dloss")
        assert (opts.fn, opts.name) == ("model.loss", "dloss")

    @pytest.mark.parametrize("src", ["1g", "a.b", "g-x", "lambda", "for"])
    def test_name_must_be_a_plain_python_name(self, src: str) -> None:
        assert "must be a Python name" in _error("grad", f"f name={src}")

    @pytest.mark.parametrize("src", ["__builtins__", "__name__", "'__doc__'"])
    def test_name_refuses_dunder_names(self, src: str) -> None:
        assert "reserves" in _error("grad", f"f name={src}")
        assert _resolve("grad", "f name=_private").name == "_private"

    def test_at_is_evaluated_in_the_namespace_and_remembers_the_names(self) -> None:
        opts = _resolve("grad", "f at=(x, y + 1.0)", x=5.0, y=2.0)
        assert opts.at == (5.0, 3.0)
        assert opts.at_names == ("x", None)
        single = _resolve("grad", "f at=x", x=5.0)
        assert (single.at, single.at_names) == (5.0, ("x",))

    def test_value_that_is_not_python(self) -> None:
        message = _error("grad", "f at=1.0+")
        assert "not a valid Python expression" in message

    def test_value_that_fails_to_evaluate_names_the_problem(self) -> None:
        message = _error("grad", "f at=undefined_thing")
        assert "undefined_thing" in message and "NameError" in message

    def test_value_that_raises_is_bad_input(self) -> None:
        assert "ZeroDivisionError" in _error("grad", "f at=1/0")

    def test_a_long_error_from_the_value_is_cut_to_its_first_line(self) -> None:
        message = _error("grad", "f at=jax.jit(lambda v: float(v))(1.0)", jax=jax)
        assert "ConcretizationTypeError: Abstract tracer value" in message and "\n" not in message

    def test_lr_must_be_positive(self) -> None:
        assert _resolve("grad", "f lr=0.5").lr == 0.5
        assert _resolve("grad", "f lr=np.float32(0.25)", np=np).lr == 0.25
        for src in ("-1", "0", "float('inf')", "True", "'fast'"):
            assert "positive" in _error("grad", f"f lr={src}"), src

    def test_optimizer_is_checked_when_the_line_is_read(self) -> None:
        assert _resolve("grad", "f optimizer=adam").optimizer == "adam"
        message = _error("grad", "f optimizer=nesterof")
        assert "Unknown optimizer 'nesterof'" in message and "Did you mean 'nesterov'?" in message
        assert "not an optimizer" in _error("grad", "f optimizer=3")


class TestPythonNamesInAnyScript:
    """Python names are not ASCII-only: `def φ(x)` is a function, and the line must name it."""

    def test_a_greek_target_and_options(self) -> None:
        spec = parse_line("grad", "φ at=1.0 name=δf")
        assert spec.target == "φ"
        assert spec.options == (("at", "1.0"), ("name", "δf"))
        assert _resolve("grad", "φ at=1.0 name=δf").name == "δf"

    def test_dotted_names_wrt_and_fn_in_other_scripts(self) -> None:
        assert parse_line("jac", "модель.потеря at=p").target == "модель.потеря"
        opts = _resolve("grad", "fn=損失 wrt=θ,β name=勾配")
        assert (opts.fn, opts.wrt, opts.name) == ("損失", ("θ", "β"), "勾配")

    def test_names_are_read_as_python_spells_them(self) -> None:
        # Python NFKC-normalises identifiers: `def ﬁt(x)` defines `fit`.
        namespace: dict[str, object] = {}
        exec("def ﬁt(x):\n    return x\n", namespace)
        assert "fit" in namespace
        assert parse_line("grad", "ﬁt at=1.0").target == "fit"
        assert _resolve("grad", "f name=ﬁt_grad").name == "fit_grad"

    @pytest.mark.parametrize("line", ["1φ at=1.0", "φ-ψ at=1.0", "φ. at=1.0"])
    def test_what_is_not_a_name_is_still_refused(self, line: str) -> None:
        with pytest.raises(JaxGradUsageError, match="expected a function name"):
            parse_line("grad", line)

    def test_a_comparison_in_another_script_is_not_an_option(self) -> None:
        assert parse_line("grad", "f at=(λ==1)").options == (("at", "(λ==1)"),)


class TestNumpyScalarsAsOptions:
    """Array code hands around NumPy scalars; an option that takes an int or a bool takes them too."""

    @pytest.mark.parametrize(
        ("src", "expected"),
        [("np.int64(1)", 1), ("np.int32(0)", 0), ("(np.int64(0), 1)", (0, 1)), ("np.array([0, 1])", (0, 1))],
    )
    def test_numpy_integers_as_argnums(self, src: str, expected: object) -> None:
        argnums = _resolve("grad", f"f argnums={src}", np=np).argnums
        assert argnums == expected and type(argnums) is type(expected)
        if isinstance(argnums, tuple):
            assert all(type(a) is int for a in argnums)

    @pytest.mark.parametrize("src", ["np.True_", "np.bool_(True)", "np.int64(1)"])
    def test_numpy_booleans_as_flags(self, src: str) -> None:
        opts = _resolve("grad", f"f aux={src} check={src}", np=np)
        assert opts.aux is True and opts.check is True
        assert _resolve("grad", "f jit=np.False_", np=np).jit is False

    @pytest.mark.parametrize("src", ["np.bool_(True)", "np.float64(1.0)", "(np.int64(0), np.True_)"])
    def test_numpy_values_that_are_not_positions_are_refused(self, src: str) -> None:
        assert "argnums=" in _error("grad", f"f argnums={src}", np=np)
        assert "must be True or False" in _error("grad", "f aux=np.int64(2)", np=np)
