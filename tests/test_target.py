"""Finding the function a cell defines, from its source (``ast``, no execution)."""

from __future__ import annotations

import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.target import defined_functions, defined_names, find_target


def test_defs_and_lambdas_in_order() -> None:
    source = """
import jax.numpy as jnp
def first(x):
    def nested(y):
        return y
    return nested(x)
second = lambda x: x ** 2
third: object = lambda x: x
async def fourth(x):
    return x
a = b = lambda x: x
"""
    assert defined_functions(source) == ["first", "second", "third", "fourth", "b"]


def test_the_last_function_is_the_target() -> None:
    assert find_target("def f(x):\n    return x\n\ndef g(x):\n    return 2 * x\n", "jgrad") == "g"
    assert find_target("def f(x):\n    return x\nh = lambda x: x\ny = 3.0\n", "jgrad") == "h"


def test_decorated_functions_count() -> None:
    assert find_target("import functools\n@functools.cache\ndef f(x):\n    return x\n", "jgrad") == "f"


def test_methods_and_nested_functions_do_not_count() -> None:
    source = "class Model:\n    def loss(self, x):\n        return x\n"
    assert defined_functions(source) == []
    assert defined_names(source) == ["Model"]


def test_syntax_errors_find_nothing() -> None:
    assert defined_functions("def f(:\n") == []
    assert defined_names("def f(:\n") == []


def test_names_a_cell_binds() -> None:
    source = "import numpy as np\nimport jax.numpy\nx, (y, z) = 1, (2, 3)\nw: int = 4\nw += 1\nclass C: ...\n"
    assert defined_names(source) == ["np", "jax", "x", "y", "z", "w", "C"]


def test_a_cell_without_a_function_says_what_it_defined() -> None:
    with pytest.raises(JaxGradUsageError) as info:
        find_target("x = 5.0\ny = jnp.ones(3)\n", "jgrad")
    message = str(info.value)
    assert "defines only x, y" in message
    assert "%%jgrad fn=NAME" in message and "%jgrad NAME at=" in message


def test_a_cell_that_binds_nothing() -> None:
    with pytest.raises(JaxGradUsageError, match="defines no names at all"):
        find_target("print('hello')\n", "jac")


def test_names_in_any_script_as_the_namespace_holds_them() -> None:
    # Python NFKC-normalises identifiers when it parses them, and so does ast: `def ﬁt` binds `fit`.
    assert find_target("def φ(x):\n    return x\n", "jgrad") == "φ"
    assert find_target("δf = lambda x: x\n", "jgrad") == "δf"
    namespace: dict[str, object] = {}
    source = "def ﬁt(x):\n    return x\n"
    exec(source, namespace)
    assert find_target(source, "jgrad") in namespace
