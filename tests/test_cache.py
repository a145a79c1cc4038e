"""The cache key: equal for a re-run of the same cell, different whenever the traced program could differ.

A cell is simulated by executing source into a namespace dict, as IPython does (each run has
its own file name, so the code objects are distinct but equal).
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad_magic.cache import TransformCache, function_key

_runs = itertools.count()


def run_cell(source: str, ns: dict[str, Any]) -> None:
    """Execute ``source`` in ``ns`` under a fresh file name, like a notebook cell."""
    exec(compile(source, f"<cell-{next(_runs)}>", "exec"), ns)


def key_of(ns: dict[str, Any], name: str = "f") -> Hashable:
    return function_key(ns[name])[0]


@pytest.fixture
def ns() -> dict[str, Any]:
    return {"jax": jax, "jnp": jnp, "np": np}


def test_rerunning_the_same_cell_gives_the_same_key(ns: dict[str, Any]) -> None:
    cell = "w = jnp.array([1.0, 2.0, 3.0])\nscale = 2.0\ndef f(x):\n    return scale * jnp.sum(w * jnp.sin(x) ** 2)\n"
    run_cell(cell, ns)
    first, first_fn = key_of(ns), ns["f"]
    run_cell(cell, ns)
    assert ns["f"] is not first_fn and ns["w"] is not None
    assert key_of(ns) == first
    assert hash(key_of(ns)) == hash(first)


def test_a_changed_global_changes_the_key_and_changing_it_back_restores_it(ns: dict[str, Any]) -> None:
    run_cell("scale = 2.0\ndef f(x):\n    return scale * x\n", ns)
    before = key_of(ns)
    ns["scale"] = 3.0
    assert key_of(ns) != before
    ns["scale"] = 2.0
    assert key_of(ns) == before


@pytest.mark.parametrize(("a", "b"), [(0.0, -0.0), (1, 1.0), (1, True), ("a", "b"), (None, 0)])
def test_python_values_that_trace_differently_are_different(ns: dict[str, Any], a: object, b: object) -> None:
    run_cell("def f(x):\n    return c * x\n", ns)
    ns["c"] = a
    key_a = key_of(ns)
    ns["c"] = b
    assert key_of(ns) != key_a


def test_arrays_are_keyed_by_content_shape_dtype_and_weak_type(ns: dict[str, Any]) -> None:
    run_cell("def f(x):\n    return jnp.sum(w * x)\n", ns)
    keys = {}
    for label, w in {
        "f32": jnp.array([1.0, 2.0]),
        "other values": jnp.array([1.0, 3.0]),
        "f16": jnp.array([1.0, 2.0], dtype=jnp.float16),
        "shape": jnp.array([[1.0, 2.0]]),
        "numpy": np.array([1.0, 2.0]),
        "weak": jnp.asarray(1.0),
        "strong": jnp.asarray(1.0, dtype=jnp.float32),
    }.items():
        ns["w"] = w
        keys[label] = key_of(ns)
    assert len(set(keys.values())) == len(keys)
    ns["w"] = jnp.array([1.0, 2.0])  # a new array with the same contents
    assert key_of(ns) == keys["f32"]


def test_a_numpy_array_changed_in_place_changes_the_key(ns: dict[str, Any]) -> None:
    run_cell("w = np.array([1.0, 2.0])\ndef f(x):\n    return jnp.sum(w * x)\n", ns)
    before = key_of(ns)
    ns["w"][0] = 7.0
    assert key_of(ns) != before


def test_closures_and_defaults_are_part_of_the_key(ns: dict[str, Any]) -> None:
    run_cell("def make(c):\n    def f(x, k=1.0):\n        return c * k * x\n    return f\n", ns)
    k3, k4 = function_key(ns["make"](3.0))[0], function_key(ns["make"](4.0))[0]
    assert k3 != k4
    assert function_key(ns["make"](3.0))[0] == k3
    f = ns["make"](3.0)
    f.__defaults__ = (2.0,)
    assert function_key(f)[0] != k3


def test_a_global_read_by_a_helper_is_part_of_the_key(ns: dict[str, Any]) -> None:
    run_cell("k = 2.0\ndef helper(x):\n    return k * x\ndef f(x):\n    return helper(x) ** 2\n", ns)
    before = key_of(ns)
    ns["k"] = 3.0
    assert key_of(ns) != before


def test_a_global_read_deep_down_a_chain_of_helpers_is_part_of_the_key(ns: dict[str, Any]) -> None:
    chain = "k = 2.0\ndef h0(x):\n    return k * x\n" + "".join(
        f"def h{i}(x):\n    return h{i - 1}(x)\n" for i in range(1, 12)
    )
    run_cell(chain + "def f(x):\n    return h11(x) ** 2\n", ns)
    before = key_of(ns)
    run_cell(chain + "def f(x):\n    return h11(x) ** 2\n", ns)
    assert key_of(ns) == before  # re-running the cell hits
    ns["k"] = 3.0
    assert key_of(ns) != before


def test_recursive_and_mutually_recursive_functions_have_keys(ns: dict[str, Any]) -> None:
    run_cell("def f(x, n=3):\n    return x if n == 0 else g(x, n - 1)\ndef g(x, n):\n    return f(x, n)\n", ns)
    assert key_of(ns) == key_of(ns)


def test_an_attribute_of_an_object_the_function_reads(ns: dict[str, Any]) -> None:
    run_cell(
        "import types\ncfg = types.SimpleNamespace(scale=2.0)\nclass Model:\n    def __init__(self):\n"
        "        self.w = jnp.ones(2)\nmodel = Model()\ndef f(x):\n    return cfg.scale * jnp.sum(model.w * x)\n",
        ns,
    )
    before = key_of(ns)
    ns["cfg"].scale = 5.0
    after_cfg = key_of(ns)
    assert after_cfg != before
    ns["model"].w = jnp.array([1.0, 3.0])
    assert key_of(ns) != after_cfg


def test_a_bound_method_depends_on_its_object(ns: dict[str, Any]) -> None:
    run_cell(
        "class Scaler:\n    def __init__(self, s):\n        self.s = s\n    def __call__(self, x):\n"
        "        return self.s * x\n    def apply(self, x):\n        return self.s * x\n"
        "scaler = Scaler(2.0)\napply = scaler.apply\ndef f(x):\n    return apply(x)\n",
        ns,
    )
    before = key_of(ns)
    ns["scaler"].s = 3.0
    assert key_of(ns) != before
    assert isinstance(ns["apply"], types.MethodType)


def test_a_changed_custom_jvp_rule_changes_the_key(ns: dict[str, Any]) -> None:
    cell = (
        "@jax.custom_jvp\ndef soft(x):\n    return jnp.maximum(x, 0.0)\n"
        "@soft.defjvp\ndef soft_jvp(primals, tangents):\n    (x,), (t,) = primals, tangents\n"
        "    return soft(x), RULE * t\ndef f(x):\n    return soft(x)\n"
    )
    run_cell(cell.replace("RULE", "1.0"), ns)
    before = key_of(ns)
    run_cell(cell.replace("RULE", "1.0"), ns)
    assert key_of(ns) == before
    run_cell(cell.replace("RULE", "0.5"), ns)
    assert key_of(ns) != before


def test_a_jitted_helper_is_keyed_by_the_function_it_wraps(ns: dict[str, Any]) -> None:
    cell = "@jax.jit\ndef helper(x):\n    return c * x\ndef f(x):\n    return helper(x)\n"
    ns["c"] = 2.0
    run_cell(cell, ns)
    before = key_of(ns)
    run_cell(cell, ns)
    assert key_of(ns) == before
    ns["c"] = 3.0
    assert key_of(ns) != before


def test_a_prng_key_global_can_be_keyed(ns: dict[str, Any]) -> None:
    run_cell("key = jax.random.key(0)\ndef f(x):\n    return jnp.sum(x * jax.random.normal(key, x.shape))\n", ns)
    before = key_of(ns)
    ns["key"] = jax.random.key(0)
    assert key_of(ns) == before
    ns["key"] = jax.random.key(1)
    assert key_of(ns) != before


def test_cyclic_containers_have_keys(ns: dict[str, Any]) -> None:
    box: list[Any] = [1.0]
    box.append(box)
    ns["box"] = box
    run_cell("def f(x):\n    return box[0] * x\n", ns)
    assert key_of(ns) == key_of(ns)


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("data = [1.0] * 300", "data[0] = 7.0"),
        ("data = list(range(100_000))", "data[-1] = -1"),
        ("data = [0.0] * 100", "data[50] = -0.0"),
        ("data = {f'k{i}': float(i) for i in range(300)}", "data['k0'] = 7.0"),
        ("data = {'bias', 'scale'}", "data.discard('bias')"),
        (
            "import types\nS = types.SimpleNamespace\ndata = S(model=S(layers=[S(w=1.0)]))",
            "data.model.layers[0].w = 7.0",
        ),
        (
            "import dataclasses\n@dataclasses.dataclass(slots=True)\nclass Cfg:\n    scale: float\ndata = Cfg(2.0)",
            "data.scale = 7.0",
        ),
    ],
    ids=["long list", "long list of ints", "minus zero", "long dict", "set", "nested attribute", "slotted dataclass"],
)
def test_a_value_changed_in_place_changes_the_key(ns: dict[str, Any], setup: str, change: str) -> None:
    run_cell(setup + "\ndef f(x):\n    return x * len(str(data))\n", ns)
    before = key_of(ns)
    assert key_of(ns) == before  # unchanged: the same key, so a re-run hits
    run_cell(change, ns)
    assert key_of(ns) != before


def test_data_past_the_walks_bounds_gives_a_key_that_is_never_reused(ns: dict[str, Any]) -> None:
    # Too many items to key by content: it may change in place unseen, so no two keys are equal.
    run_cell("data = ['a'] * (1 << 17)\ndef f(x):\n    return len(data[0]) * x\n", ns)
    assert key_of(ns) != key_of(ns)
    run_cell("data = tuple(data)", ns)  # immutable: keyed by identity, and reused
    assert key_of(ns) == key_of(ns)


def test_modules_are_keyed_by_name(ns: dict[str, Any]) -> None:
    run_cell("def f(x):\n    return jnp.sin(x)\n", ns)
    before = key_of(ns)
    ns["jnp"] = np
    assert key_of(ns) != before


class TestTransformCache:
    def test_a_hit_builds_nothing_and_lru_eviction(self) -> None:
        cache = TransformCache(maxsize=2)
        built: list[str] = []

        def build(name: str) -> Any:
            built.append(name)
            return name.upper()

        assert cache.get_or_build("a", [], lambda: build("a")) == "A"
        assert cache.get_or_build("a", [], lambda: build("a")) == "A"
        assert built == ["a"]  # the second call hit: nothing was built
        cache.get_or_build("b", [], lambda: build("b"))
        cache.get_or_build("a", [], lambda: build("a"))  # a is now the most recent
        cache.get_or_build("c", [], lambda: build("c"))  # evicts b
        assert len(cache) == 2
        cache.get_or_build("b", [], lambda: build("b"))
        assert built == ["a", "b", "c", "b"]
        cache.clear()
        assert len(cache) == 0
        cache.get_or_build("a", [], lambda: build("a"))
        assert built == ["a", "b", "c", "b", "a"]  # cleared: built again

    def test_a_failed_build_is_not_stored(self) -> None:
        cache = TransformCache()

        def fail() -> Any:
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            cache.get_or_build("k", [], fail)
        assert len(cache) == 0
        assert cache.get_or_build("k", [], lambda: 1) == 1

    def test_a_volatile_key_is_built_but_never_stored(self, ns: dict[str, Any]) -> None:
        cache = TransformCache()
        run_cell("data = ['a'] * (1 << 17)\ndef f(x):\n    return len(data[0]) * x\n", ns)
        key, refs = function_key(ns["f"])
        assert cache.get_or_build(("transform", key), refs, lambda: 1) == 1
        assert len(cache) == 0


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("from collections import deque\nv = deque([1.0, 2.0])", "v.append(3.0)"),
        ("v = bytearray(b'ab')", "v[0] = 0"),
        ("import array\nv = array.array('d', [1.0])", "v[0] = 2.0"),
    ],
)
def test_mutable_containers_are_keyed_by_content(ns: dict[str, Any], setup: str, change: str) -> None:
    run_cell(setup + "\ndef f(x):\n    return len(v) * x\n", ns)
    before = key_of(ns)
    assert key_of(ns) == before  # reused while nothing changes
    run_cell(change, ns)
    assert key_of(ns) != before


def test_a_dict_whose_attribute_lookup_raises_is_keyed_by_its_items(ns: dict[str, Any]) -> None:
    run_cell("class AttrDict(dict):\n    __getattr__ = lambda s, k: s[k]\ncfg = AttrDict(a=1)\n", ns)
    run_cell("def f(x):\n    return cfg.a * x\n", ns)
    before = key_of(ns)
    assert key_of(ns) == before
    run_cell("cfg['a'] = 2", ns)
    assert key_of(ns) != before


def test_an_object_whose_attribute_lookup_raises_gets_a_volatile_key(ns: dict[str, Any]) -> None:
    run_cell("class Odd:\n    __slots__ = ('a',)\n    def __getattr__(self, k):\n        raise KeyError(k)\n", ns)
    run_cell("o = Odd()\ndef f(x):\n    return 2.0 * x\ndef g(x):\n    return f(x) + len(str(o))\n", ns)
    assert key_of(ns, "g") != key_of(ns, "g")  # its unset slot raises KeyError: rebuilt, never stale
