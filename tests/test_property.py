"""Any %jgrad line gives a result or a UsageError, never an internal error.

Random lines mix valid options, unknown keys, random values, brackets, quotes and unicode,
and go through the real shell's ``run_line_magic`` on functions that exist. The only other
exception allowed is one raised inside the user's own function (the line may well give it
an argument it cannot take): that is the user's error, shown as theirs.
"""

from __future__ import annotations

import types
from typing import Any

import jax.numpy as jnp
import pytest
from conftest import clean_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jaxgrad_magic import DerivativeResult
from jaxgrad_magic.spec import OPTIONS

SETUP = """
def f(x, y=2.0):
    return jnp.sum(jnp.sin(x) ** 2) * y

def g(p):
    return jnp.sum(p["w"] ** 2)

x = 1.5
y = 2.0
v = jnp.array([1.0, 2.0])
params = {"w": jnp.ones(2)}
"""

NAMES = ["x", "y", "v", "f", "g", "params", "jnp", "None", "True", "False", "undefined_name", "é", "λ"]
KEYS = [*OPTIONS["grad"], "argnum", "mode", "tangent", "foo", "AT", "_", "x1", "fn_", "ordre"]
JUNK = "abcxyz_ .,:;()[]{}'\"=-+/\\#$!?&|~^`é∂λ∇→中\t"

numbers = st.one_of(
    st.integers(-3, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
)
atoms = st.one_of(
    numbers,
    st.sampled_from(NAMES),
    st.text(JUNK, max_size=6).map(repr),  # a string literal
    st.integers(0, 4).map(lambda n: f"jnp.ones({n})"),
    st.lists(st.floats(-3, 3, width=32).map(repr), max_size=3).map(lambda xs: f"jnp.array([{', '.join(xs)}])"),
)
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: f"({', '.join(xs)},)"),
        st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(st.tuples(st.sampled_from(["'w'", "'b'", "1"]), inner), max_size=2).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
        st.tuples(inner, st.sampled_from(["+", "-", "/", "==", " if x else "]), inner).map("".join),
    ),
    max_leaves=6,
)
junk = st.text(JUNK + "0123456789", max_size=12)
# order= is only ever small or not a number: a large order nests jax.grad that many times.
order_values = st.one_of(st.integers(-1, 3).map(str), st.sampled_from(["2.0", "'2'", "x", "None"]), st.text(JUNK))
option_values = {
    "order": order_values,
    "argnums": st.one_of(
        st.sampled_from(["0", "1", "0,1", "(0, 1)", "(1, 0)", "2", "-1", "(0, 0)", "()"]), expressions
    ),
    "wrt": st.one_of(st.sampled_from(["x", "y", "x,y", "(x, y)", "z", "p", "x,x"]), junk),
    "aux": st.one_of(st.sampled_from(["True", "False", "1", "0", "2", "v"]), junk),
    "jit": st.one_of(st.sampled_from(["True", "False", "0"]), junk),
    "fn": st.one_of(st.sampled_from(["f", "g", "jnp", "h.x", "x", "1f"]), junk),
    "name": st.one_of(st.sampled_from(["df", "g2", "lambda", "1x", "a.b"]), junk),
    "check": st.sampled_from(["True", "False"]),
    "show": st.one_of(st.sampled_from(["jaxpr", "'jaxpr'", "hlo"]), junk),
}
points = st.one_of(
    st.sampled_from(["x", "(x, y)", "(1.0, 2.0)", "v", "(v, 3.0)", "params", "{'w': v}", "1.0", "(x,)"]),
    expressions,
)
option_values["at"] = points
valid_words = st.sampled_from(OPTIONS["grad"]).flatmap(
    lambda key: option_values.get(key, expressions).map(lambda value: f"{key}={value}")
)
other_words = st.sampled_from(KEYS).flatmap(
    lambda key: st.one_of(expressions, junk).map(lambda value: f"{key}={value}")
)
# Only the notebook's own functions: an error inside a library function (jnp.sin given a
# tuple) is that function's own, like the user's, but is not recognisable by its frames.
heads = st.one_of(st.just("f"), st.just("g"), st.sampled_from(["", "jnp", "h", "f.g", "1f", "f g", "é", "f;"]))
lines = st.tuples(
    heads,
    # Mostly known options, each once, so many lines get as far as evaluating.
    st.lists(
        st.one_of(valid_words, valid_words, valid_words, valid_words, other_words, junk),
        max_size=4,
        unique_by=lambda word: word.split("=", 1)[0],
    ),
    st.sampled_from(["", "", ";", " ", " ;"]),
).map(lambda t: " ".join([t[0], *t[1]]) + t[2])


def _raised_in(exc: BaseException, codes: set[types.CodeType]) -> bool:
    """True when ``exc`` passed through one of ``codes`` (the user's functions) on its way up."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


@pytest.fixture(scope="module")
def prepared(shell: InteractiveShell) -> Any:
    baseline = dict(shell.user_ns)
    shell.run_cell(SETUP, store_history=False).raise_error()
    ready = dict(shell.user_ns)
    yield shell, ready
    clean_namespace(shell, baseline)


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=lines)
def test_any_line_gives_a_result_or_a_usage_error(prepared: Any, line: str) -> None:
    shell, ready = prepared
    user_code = {ready["f"].__code__, ready["g"].__code__}
    try:
        result = shell.run_line_magic("jgrad", line)
        assert result is None or isinstance(result, DerivativeResult)
    except UsageError as exc:
        assert str(exc).strip(), "an empty message"
    except Exception as exc:
        if not _raised_in(exc, user_code):
            raise AssertionError(f"%jgrad {line!r} raised {type(exc).__name__}: {exc}") from exc
    finally:
        clean_namespace(shell, ready)


def test_the_strategy_reaches_results_and_errors(shell: InteractiveShell) -> None:
    """The generator is not vacuous: a few fixed lines of each outcome pass through the same checks."""
    baseline = dict(shell.user_ns)
    try:
        shell.run_cell(SETUP, store_history=False).raise_error()
        assert isinstance(shell.run_line_magic("jgrad", "f at=(x, y) argnums=0,1"), DerivativeResult)
        assert isinstance(shell.run_line_magic("jgrad", "g at=params"), DerivativeResult)
        assert shell.run_line_magic("jgrad", "f at=v;") is None
        with pytest.raises(UsageError):
            shell.run_line_magic("jgrad", "f at=( ordre=2")
        with pytest.raises(TypeError) as info:
            shell.run_line_magic("jgrad", "f at=[1.0, 2.0]")  # jnp.sin of a list, inside f
        assert _raised_in(info.value, {shell.user_ns["f"].__code__})
        assert float(jnp.asarray(shell.user_ns["f_grad"](1.0))) != 0.0
    finally:
        clean_namespace(shell, baseline)
