"""Random magic lines and cells through the real shell: nothing but ``UsageError`` or the user's own
errors comes out, bad input leaves the namespace exactly as it was, names are bound only on
success, and the shell keeps working.

The functions are tiny, so after the first few hundred examples almost every call is a cache hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import clean_namespace
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

SETUP = """
def fs(x):
    return jnp.sum(jnp.sin(x) ** 2)

def fv(x):
    return jnp.sin(x) * 2.0

def f2(x, y):
    return x ** 2 + (y - 1) ** 2

def fp(p):
    return jnp.sum(p['w'] ** 2) + p['b'] * 3.0

def fa(x):
    return jnp.sum(x ** 2), {'peak': jnp.max(x)}

def boom(x):
    raise ZeroDivisionError('injected by boom')

def ctrl(x):
    if x > 0:
        return x ** 2
    return -x

x3 = jnp.array([0.5, 1.0, 1.5])
s = 1.5
p = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array(0.5)}
ix = jnp.arange(3)
"""

MAGICS = ("jgrad", "jac", "hess", "jvp", "vjp")
TARGETS = ("fs", "fv", "f2", "fp", "fa", "boom", "ctrl", "nothere", "fs.attr", "3x", "fs fv")
MATCHING_AT = {"fs": "x3", "fv": "x3", "f2": "(s, 2.0)", "fp": "p", "fa": "x3", "boom": "x3", "ctrl": "s"}
POINTS = ("x3", "s", "(s, 2.0)", "p", "ix", "nothere", "(", "(1.0, 2.0, 3.0)", "'text'", "[1.0, 2.0]", "1")
OPTIONS = (
    "argnums=0",
    "argnums=1",
    "argnums=0,1",
    "argnums=-1",
    "argnums=x3",
    "wrt=x",
    "wrt=y",
    "wrt=q",
    "aux=True",
    "aux=maybe",
    "jit=False",
    "jit=True",
    "check=True",
    "show=jaxpr",
    "show=hlo",
    "order=2",
    "order=0",
    "mode=fwd",
    "mode=rev",
    "mode=sideways",
    "stepper=False",
    "lr=0.05",
    "lr=-1",
    "optimizer=adam",
    "optimizer=bogus",
    "name=fuzzed",
    "name=1bad",
    "fn=fs",
    "bogus=1",
    "at=",
    "argnums=0 argnums=1",
)
DIRECTIONS = ("jnp.ones(3)", "1.0", "(1.0, 0.0)", "jnp.ones(4)", "jax.tree.map(jnp.ones_like, p)", "nothere", "x3")
CELLS = {
    "scalar": "def cf(x):\n    return jnp.sum(jnp.cos(x))\n",
    "vector": "def cv(x):\n    return jnp.cos(x) * 3.0\n",
    "lambda": "cl = lambda x: jnp.sum(x ** 3)\n",
    "two args": "def cpair(x, y):\n    return jnp.sum(x * y)\n",
    "no function": "cz = 1\n",
    "empty": "",
    "cell raises": "def cuser(x):\n    return jnp.sum(x)\nraise ValueError('injected by the cell')\n",
    "function raises": "def cboom(x):\n    raise ZeroDivisionError('injected by cboom')\n",
    "syntax error": "def broken(:\n    pass\n",
}
# Lines that should succeed: target -> (at, tangent, cotangent, required option).
VALID = {
    "fs": ("x3", "jnp.ones(3)", "1.0", ""),
    "fv": ("x3", "jnp.ones(3)", "jnp.ones(3)", ""),
    "f2": ("(s, 2.0)", "1.0", "1.0", ""),
    "fp": ("p", "jax.tree.map(jnp.ones_like, p)", "1.0", ""),
    "fa": ("x3", "jnp.ones(3)", "1.0", "aux=True"),
}
CLEAN_CELLS = {
    "scalar": ("x3", "jnp.ones(3)", "1.0"),
    "vector": ("x3", "jnp.ones(3)", "jnp.ones(3)"),
    "lambda": ("x3", "jnp.ones(3)", "1.0"),
    "two args": ("(x3, x3)", "jnp.ones(3)", "1.0"),
}
_SAFE = ("jit=False", "check=True", "show=jaxpr", "name=fuzzed")
SAFE = {
    "jgrad": (*_SAFE, "stepper=False", "lr=0.05", "optimizer=adam"),
    "jac": (*_SAFE, "mode=fwd", "mode=rev"),
    "hess": _SAFE,
    "jvp": _SAFE,
    "vjp": _SAFE,
}
SUFFIXES = ("_grad", "_grad2", "_jac", "_hess", "_jvp", "_vjp")
# Names IPython itself writes while running a cell (output cache, the last values).
SHELL_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


@dataclass(frozen=True)
class Example:
    """One generated cell: its source and what it may legitimately raise or bind."""

    source: str
    cell_magic: bool
    body: str
    assigned: bool


@st.composite
def examples(draw: st.DrawFn) -> Example:
    """Half the time a line that should work (then a few safe options), else anything goes."""
    magic = draw(st.sampled_from(MAGICS))
    cell_magic = draw(st.booleans())
    clean = draw(st.booleans())
    words: list[str] = []
    if clean:
        if cell_magic:
            body = CELLS[draw(st.sampled_from(sorted(CLEAN_CELLS)))]
            target, (at, tangent, cotangent) = "", CLEAN_CELLS[next(k for k, v in CELLS.items() if v == body)]
            required = ""
        else:
            target = draw(st.sampled_from(sorted(VALID)))
            at, tangent, cotangent, required = VALID[target]
        words.append(f"at={at}")
        if magic == "jvp":
            words.append(f"tangent={tangent}")
        if magic == "vjp":
            words.append(f"cotangent={cotangent}")
        if required:
            words.append(required)
        words += draw(st.lists(st.sampled_from(SAFE[magic]), max_size=2, unique=True))
    else:
        target = draw(st.sampled_from(TARGETS))
        body = CELLS[draw(st.sampled_from(sorted(CELLS)))]
        if draw(st.integers(0, 9)) < 7:
            matching = MATCHING_AT.get(target, "x3")
            words.append("at=" + (matching if draw(st.booleans()) else draw(st.sampled_from(POINTS))))
        if magic in ("jvp", "vjp") and draw(st.integers(0, 9)) < 7:
            word = "tangent" if magic == "jvp" else "cotangent"
            words.append(f"{word}={draw(st.sampled_from(DIRECTIONS))}")
        words += draw(st.lists(st.sampled_from(OPTIONS), max_size=3))
    options = " ".join(draw(st.permutations(words)))
    if cell_magic:
        return Example(f"%%{magic} {options}\n{body}", True, body, False)
    if not clean and draw(st.integers(0, 9)) == 0:
        target = ""  # no function at all
    assigned = draw(st.booleans())
    line = f"%{magic} {target} {options}".rstrip()
    if draw(st.integers(0, 9)) == 0:
        line += ";"
    return Example(f"r = {line}" if assigned else line, False, "", assigned)


def visible(ns: dict[str, Any]) -> dict[str, Any]:
    """The user's names: without IPython's own bookkeeping."""
    return {k: v for k, v in ns.items() if not k.startswith("_") and k not in SHELL_NAMES}


def users_own(error: BaseException, example: Example) -> bool:
    """True for the user's own errors: raised on purpose by the generated code, or inside a
    function the notebook defined (``fs`` given a tuple fails in ``jnp.sin``, as it would
    under plain ``jax.grad``)."""
    if isinstance(error, SyntaxError):
        return example.body == CELLS["syntax error"]
    if "injected by" in str(error):
        return True
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<ipython-input-") and code.co_name != "<module>":
            return True
        tb = tb.tb_next
    return False


def cell_names(body: str) -> set[str]:
    """Names a cell body binds at top level (cheap: these bodies are one-liners)."""
    names = set()
    for line in body.splitlines():
        if line.startswith("def ") and "(" in line:
            names.add(line[4 : line.index("(")])
        elif " = " in line and not line.startswith(" "):
            names.add(line.split(" = ", 1)[0])
    return names


@pytest.fixture
def fuzz_shell(shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell with the fuzz functions and points defined; the namespace is put back afterwards."""
    baseline = dict(shell.user_ns)
    result = shell.run_cell("import jax\nimport jax.numpy as jnp\nimport numpy as np\n" + SETUP, store_history=False)
    result.raise_error()
    try:
        yield shell
    finally:
        clean_namespace(shell, baseline)


@pytest.mark.slow
@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(example=examples())
def test_random_magics_fail_cleanly(fuzz_shell: InteractiveShell, example: Example) -> None:
    shell = fuzz_shell
    ns = shell.user_ns
    before = dict(ns)
    before_visible = visible(ns)
    try:
        with capture_output():
            result = shell.run_cell(example.source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        now = visible(ns)
        new = set(now) - set(before_visible)
        event("ok" if error is None else "UsageError" if isinstance(error, UsageError) else "user's error")
        if error is None:
            value = ns["r"] if example.assigned else result.result
            if value is not None:  # a trailing ';' hides the result but still binds
                assert value.bound_name in ns and ns[value.bound_name] is value.transformed
                allowed = {value.bound_name, "r"} | cell_names(example.body)
                assert new <= allowed, (example.source, new - allowed)
        elif isinstance(error, UsageError):
            # Bad input binds nothing: same names, bound to the same objects, but for what a cell
            # magic's own cell defined (when the line parsed, the cell ran, like any cell).
            own = cell_names(example.body)
            assert set(now) - own == set(before_visible) - own, (example.source, set(now) ^ set(before_visible))
            changed = [k for k in now if k not in own and now[k] is not before_visible[k]]
            assert not changed, (example.source, changed)
            assert str(error).strip(), example.source
        else:
            assert users_own(error, example), f"{example.source!r} raised {type(error).__name__}: {error}"
            # The user's cell may have run partly, as any cell; the magic bound nothing.
            magic_bound = {k for k in new if k.endswith(SUFFIXES) or k in ("r", "fuzzed")}
            assert not magic_bound, (example.source, magic_bound)
            assert new <= cell_names(example.body), (example.source, new)
        with capture_output():
            alive = shell.run_cell("1 + 1", store_history=False)
        assert alive.success and alive.result == 2, example.source
    finally:
        for key in [k for k in ns if k not in before]:
            del ns[key]
        ns.update(before)
