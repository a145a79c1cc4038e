"""Never stale: after a value the function reads changes, a re-run gives what a fresh ``jax.grad`` gives.

Each case runs in the real shell: define, derive once (so the package has compiled and cached
a program that captured the value), change the value the way notebooks do (in place, through an
attribute, a default, a property...), derive again, and compare with the closed form for the
new value. JAX keeps converted copies of NumPy constants keyed by the array's identity while a
traced program holds them, so an in-place change is the trap every case walks into.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Compiles, Shell


def grad_of(ip: Shell, cell: str, line: str = "at=jnp.ones(2)") -> np.ndarray:
    return np.asarray(ip.cell("jgrad", line, cell).derivative)


@pytest.mark.parametrize("jit", ["", " jit=False"])
def test_a_numpy_global_changed_in_place(ip: Shell, jit: str) -> None:
    ip.run_cell("w = np.array([1.0, 2.0])")
    cell = "def f(x):\n    return jnp.sum(w * x)\n"
    np.testing.assert_allclose(grad_of(ip, cell, "at=jnp.ones(2)" + jit), [1.0, 2.0])
    ip.run_cell("w[0] = 10")
    np.testing.assert_allclose(grad_of(ip, cell, "at=jnp.ones(2)" + jit), [10.0, 2.0])
    ip.run_cell("w = w.copy()")
    np.testing.assert_allclose(grad_of(ip, cell, "at=jnp.ones(2)" + jit), [10.0, 2.0])
    ip.run_cell("w[1] = -3")
    np.testing.assert_allclose(grad_of(ip, cell, "at=jnp.ones(2)" + jit), [10.0, -3.0])


def test_the_line_magic_on_an_existing_function_sees_the_change(ip: Shell) -> None:
    ip.run_cell("w = np.array([1.0, 2.0])\ndef f(x):\n    return jnp.sum(w * x ** 2)\nx0 = jnp.ones(2)")
    np.testing.assert_allclose(ip.line("jgrad", "f at=x0").derivative, [2.0, 4.0])
    ip.run_cell("w *= 3")
    np.testing.assert_allclose(ip.line("jgrad", "f at=x0").derivative, [6.0, 12.0])
    # The bound derivative is fresh too once the magic has seen the change.
    np.testing.assert_allclose(ip.run_cell("f_grad(x0)"), [6.0, 12.0])


def test_a_default_array_changed_in_place(ip: Shell) -> None:
    cell = "def f(x, w=np.array([1.0, 2.0])):\n    return jnp.sum(w * x)\n"
    np.testing.assert_allclose(grad_of(ip, cell), [1.0, 2.0])
    ip.run_cell("f.__defaults__[0][0] = 10")
    np.testing.assert_allclose(ip.line("jgrad", "f at=jnp.ones(2)").derivative, [10.0, 2.0])


def test_an_attribute_holding_an_array_changed_in_place(ip: Shell) -> None:
    ip.run_cell("class Model:\n    pass\nm = Model()\nm.w = np.array([1.0, 2.0])")
    cell = "def f(x):\n    return jnp.sum(m.w * x)\n"
    np.testing.assert_allclose(grad_of(ip, cell), [1.0, 2.0])
    ip.run_cell("m.w[1] = 7")
    np.testing.assert_allclose(grad_of(ip, cell), [1.0, 7.0])


def test_a_new_stepper_descends_the_new_target(ip: Shell) -> None:
    ip.run_cell("c = np.array([1.0, 2.0])")
    cell = "def f(x):\n    return jnp.sum((x - c) ** 2)\n"
    r = ip.cell("jgrad", "at=jnp.zeros(2) lr=0.25", cell)
    r.stepper.run(200)
    np.testing.assert_allclose(r.stepper.params, [1.0, 2.0], atol=1e-5)
    ip.run_cell("c[:] = [-4.0, 5.0]")
    r2 = ip.cell("jgrad", "at=jnp.zeros(2) lr=0.25", cell)
    np.testing.assert_allclose(r2.derivative, [8.0, -10.0])  # 2 (x - c) at x = 0
    r2.stepper.run(200)
    np.testing.assert_allclose(r2.stepper.params, [-4.0, 5.0], atol=1e-5)


@pytest.mark.parametrize(
    ("setup", "read", "change", "before", "after"),
    [
        (
            "scale = 2.0\nclass K:\n    @property\n    def s(self):\n        return scale\nk = K()",
            "k.s",
            "scale = 5.0",
            2.0,
            5.0,
        ),
        (
            "scale = 2.0\nclass K:\n    @staticmethod\n    def s():\n        return scale",
            "K.s()",
            "scale = 5.0",
            2.0,
            5.0,
        ),
        (
            "class K:\n    scale = 2.0\n    @classmethod\n    def s(cls):\n        return cls.scale",
            "K.s()",
            "K.scale = 5.0",
            2.0,
            5.0,
        ),
        ("from collections import deque\nd = deque([2.0])", "d[0]", "d[0] = 5.0", 2.0, 5.0),
        ("b = bytearray([2])", "float(b[0])", "b[0] = 5", 2.0, 5.0),
        ("import array\na = array.array('d', [2.0])", "a[0]", "a[0] = 5.0", 2.0, 5.0),
    ],
    ids=["property", "staticmethod", "classmethod", "deque", "bytearray", "array.array"],
)
def test_values_read_through_properties_methods_and_mutable_containers(
    ip: Shell, setup: str, read: str, change: str, before: float, after: float
) -> None:
    ip.run_cell(setup)
    cell = f"def f(x):\n    return {read} * jnp.sum(x ** 2)\n"
    np.testing.assert_allclose(grad_of(ip, cell), [2 * before, 2 * before])
    ip.run_cell(change)
    np.testing.assert_allclose(grad_of(ip, cell), [2 * after, 2 * after])


def test_an_object_whose_getattr_raises_is_read_like_any_other(ip: Shell) -> None:
    ip.run_cell("class AttrDict(dict):\n    __getattr__ = lambda s, k: s[k]\ncfg = AttrDict(scale=3.0)")
    cell = "def f(x):\n    return cfg.scale * jnp.sum(x ** 2)\n"
    np.testing.assert_allclose(grad_of(ip, cell), [6.0, 6.0])
    ip.run_cell("cfg['scale'] = 0.5")
    np.testing.assert_allclose(grad_of(ip, cell), [1.0, 1.0])


def test_an_unchanged_rerun_compiles_nothing_after_an_in_place_change(ip: Shell, compiles: Compiles) -> None:
    ip.run_cell("w = np.array([1.0, 2.0])")
    cell = "def f(x):\n    return jnp.sum(w * jnp.sin(x))\n"
    grad_of(ip, cell)
    ip.run_cell("w[0] = 3")
    np.testing.assert_allclose(grad_of(ip, cell), 3 * np.cos(1.0) * np.array([1.0, 0.0]) + [0, 2 * np.cos(1.0)])
    # Clearing JAX's caches drops its small helper programs too (`jnp.ones` of the point): the
    # next run compiles those once again, and from then on a re-run compiles nothing.
    grad_of(ip, cell)
    compiles.reset()
    np.testing.assert_allclose(grad_of(ip, cell), [3 * np.cos(1.0), 2 * np.cos(1.0)], rtol=1e-6)
    assert compiles.count == 0
