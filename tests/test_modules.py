"""Equinox and Flax NNX modules as parameters: only what the frameworks differentiate.

The framework tests skip where equinox or flax is not installed (the floor environment); CI's
main environment has both (the ``models`` extra, which ``.ci/setup`` installs).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_json_script

import jaxgrad_magic as jgm
from jaxgrad_magic import modules
from jaxgrad_magic.point import is_numeric_tree


def _data(n: int = 32, d: int = 3) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.PRNGKey(1), (n, d))
    return x, jnp.sin(x[:, 0])


def _arrays(tree: Any) -> list[np.ndarray]:
    """Every array leaf of ``tree`` on the host (PRNG keys as their raw data)."""

    def host(x: Any) -> np.ndarray:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.array(x)

    return [host(x) for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "dtype")]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------- no framework


def test_plain_values_are_not_modules() -> None:
    assert modules.framework(1.0) is None
    assert not modules.holds_module({"w": jnp.ones(3), "b": 0.0})
    assert modules.lift(lambda p: p, ({"w": jnp.ones(3)},), (0,)) is None


def test_the_package_imports_no_framework() -> None:
    script = r"""
import json, sys
import jax.numpy as jnp
import jaxgrad_magic as jgm

def loss(p, x):
    return jnp.sum((p["w"] * x - 1.0) ** 2) + p["b"] ** 2

r = jgm.grad(loss, at=({"w": jnp.ones(3), "b": 1.0}, jnp.arange(3.0)))
s = r.stepper
s.run(10)
print("RESULT " + json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("equinox", "flax"))}))
"""
    assert run_json_script(["-c", script])["loaded"] == []


# ---------------------------------------------------------------------------- Equinox


@pytest.fixture
def eqx() -> Any:
    return pytest.importorskip("equinox")


def _eqx_loss(model: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((jax.vmap(model)(x)[:, 0] - y) ** 2)


def _eqx_mlp(eqx: Any) -> Any:
    return eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(0))


def test_equinox_gradient_is_filter_grad(eqx: Any) -> None:
    mlp, (x, y) = _eqx_mlp(eqx), _data()
    r = jgm.grad(_eqx_loss, at=(mlp, x, y))
    want = eqx.filter_grad(_eqx_loss)(mlp, x, y)
    assert type(r.derivative) is type(mlp)
    assert r.derivative.activation is None  # not differentiated, as in eqx.filter_grad
    assert jax.tree_util.tree_structure(r.derivative) == jax.tree_util.tree_structure(want)
    for got, expected in zip(jax.tree_util.tree_leaves(r.derivative), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.value, _eqx_loss(mlp, x, y), rtol=1e-6)
    # The bound derivative takes the module, as the function does.
    again = r.transformed(mlp, x, y)
    np.testing.assert_allclose(again.layers[0].weight, want.layers[0].weight, rtol=1e-5, atol=1e-7)


def test_equinox_integer_leaves_ride_along(eqx: Any) -> None:
    class Scaled(eqx.Module):
        w: jax.Array
        count: jax.Array  # an integer array: kept, not differentiated

        def __call__(self, x: jax.Array) -> jax.Array:
            return jnp.sum((self.w * x) ** 2) * self.count

    model = Scaled(jnp.array([1.0, 2.0]), jnp.array(3, jnp.int32))
    r = jgm.grad(lambda m, x: m(x), at=(model, jnp.array([1.0, 1.0])))
    np.testing.assert_allclose(r.derivative.w, [6.0, 12.0])  # d/dw 3 (w x)^2 = 6 w x^2
    assert r.derivative.count is None
    s = r.stepper
    s.step()
    assert isinstance(s.params, Scaled) and int(s.params.count) == 3 and s.params.count.dtype == jnp.int32


def test_equinox_stepper_steps_resets_and_applies(eqx: Any) -> None:
    mlp, (x, y) = _eqx_mlp(eqx), _data()
    start = _arrays(eqx.filter(mlp, eqx.is_array))
    namespace: dict[str, Any] = {}
    s = jgm.Stepper(_eqx_loss, (mlp, x, y), names=("model", "x", "y"), namespace=namespace, lr=0.1)
    first = s.loss
    s.step()
    assert s.loss < first
    s.run(20)
    assert s.loss < first
    assert type(s.params) is type(mlp) and s.params.activation is mlp.activation
    assert type(s.grad) is type(mlp) and s.grad.activation is None
    np.testing.assert_allclose(float(_eqx_loss(s.params, x, y)), s.loss, rtol=1e-5)
    written = s.apply()
    assert list(written) == ["model"] and type(namespace["model"]) is type(mlp)
    np.testing.assert_allclose(float(_eqx_loss(namespace["model"], x, y)), s.loss, rtol=1e-5)
    s.reset()
    assert s.loss == first and s.steps == 0
    assert _same(_arrays(eqx.filter(s.params, eqx.is_array)), start)
    assert _same(_arrays(eqx.filter(mlp, eqx.is_array)), start)  # the given model never changes


def test_equinox_stepper_compiles_once_per_model_layout(eqx: Any, compiles: Any) -> None:
    mlp, (x, y) = _eqx_mlp(eqx), _data()
    jgm.Stepper(_eqx_loss, (mlp, x, y)).run(3)
    compiles.reset()
    other = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(5))  # other weights, same layout
    s = jgm.Stepper(_eqx_loss, (other, x, y))
    s.run(3)
    s.step()
    assert compiles.count == 0


# ---------------------------------------------------------------------------- Flax NNX


@pytest.fixture
def nnx() -> Any:
    pytest.importorskip("flax")
    from flax import nnx

    return nnx


def _nnx_net(nnx: Any) -> Any:
    class Net(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.l1 = nnx.Linear(3, 8, rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)
            self.drop = nnx.Dropout(0.2, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))

    return Net(nnx.Rngs(0))


def _nnx_loss(model: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x)[:, 0] - y) ** 2)


def test_nnx_gradient_is_nnx_grad_of_the_params(nnx: Any) -> None:
    net, (x, y) = _nnx_net(nnx), _data()
    r = jgm.grad(_nnx_loss, at=(net, x, y))
    # nnx.grad changes the model it is given (batch statistics, the dropout counter): a clone.
    want = nnx.grad(_nnx_loss)(nnx.clone(net), x, y)
    assert type(r.derivative) is type(want)  # an nnx.State of the Params
    assert jax.tree_util.tree_structure(r.derivative) == jax.tree_util.tree_structure(want)
    for got, expected in zip(jax.tree_util.tree_leaves(r.derivative), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    paths = [modules.leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(r.derivative)[0]]
    assert "['l1']['kernel']" in paths and not any("mean" in p or "rngs" in p for p in paths)


def test_nnx_stepper_keeps_state_resets_exactly_and_applies(nnx: Any) -> None:
    net, (x, y) = _nnx_net(nnx), _data()
    given = _arrays(nnx.state(net))
    namespace: dict[str, Any] = {}
    s = jgm.Stepper(_nnx_loss, (net, x, y), names=("model", "x", "y"), namespace=namespace, lr=0.05)
    first = s.loss
    start = _arrays(nnx.state(s.params))
    assert _same(start, given)
    s.step()
    assert s.loss < first
    s.run(20)
    assert s.loss < first
    assert type(s.params) is type(net) and s.params is not net
    # Batch statistics and RNG state are kept as given, not differentiated.
    assert _same(_arrays(nnx.state(s.params, nnx.BatchStat)), _arrays(nnx.state(net, nnx.BatchStat)))
    assert _same(_arrays(nnx.state(s.params, nnx.RngState)), _arrays(nnx.state(net, nnx.RngState)))
    written = s.apply()
    assert list(written) == ["model"] and type(namespace["model"]) is type(net)
    # Whatever is done to a module handed out never reaches the stepper.
    handed = s.params
    handed.l1.kernel[...] = jnp.zeros_like(handed.l1.kernel[...])
    _nnx_loss(handed, x, y)  # a forward pass in training mode updates its batch statistics
    s.reset()
    assert s.loss == first and s.steps == 0
    assert _same(_arrays(nnx.state(s.params)), start)
    assert _same(_arrays(nnx.state(net)), given)  # the given model never changes


def test_nnx_reset_is_exact_after_the_given_model_trains_elsewhere(nnx: Any) -> None:
    net, (x, y) = _nnx_net(nnx), _data()
    given = _arrays(nnx.state(net))
    s = jgm.Stepper(_nnx_loss, (net, x, y))
    first = s.loss
    net.l1.kernel[...] = net.l1.kernel[...] + 1.0  # the user's model changes in place afterwards
    s.run(5)
    s.reset()
    assert s.loss == first
    assert _same(_arrays(nnx.state(s.params)), given)


def test_a_module_in_the_notebook_is_a_point(nnx: Any) -> None:
    assert is_numeric_tree(_nnx_net(nnx))
    assert is_numeric_tree({"net": _nnx_net(nnx), "scale": 1.0})


def test_a_modules_landscape_is_centred_on_its_loss(eqx: Any) -> None:
    mlp, (x, y) = _eqx_mlp(eqx), _data()
    s = jgm.Stepper(_eqx_loss, (mlp, x, y))
    s.run(10)
    for kind in ("random", "pca", "hessian"):
        plane = s.landscape(kind, grid=5)
        assert plane.values[2, 2] == pytest.approx(s.loss, rel=1e-5)
        assert type(plane.u) is type(mlp)  # directions shaped like what is differentiated


def test_an_nnx_landscape_is_centred_on_its_loss(nnx: Any) -> None:
    net, (x, y) = _nnx_net(nnx), _data()
    s = jgm.Stepper(_nnx_loss, (net, x, y))
    s.run(10)
    for kind in ("random", "pca", "hessian"):
        assert s.landscape(kind, grid=5).values[2, 2] == pytest.approx(s.loss, rel=1e-5)


def test_the_magic_takes_a_model_and_apply_writes_it_back(eqx: Any, ip: Any) -> None:
    ip.ns.update(eqx=eqx, jax=jax, jnp=jnp, model=_eqx_mlp(eqx), X=_data()[0], Y=_data()[1])
    given = ip.ns["model"]
    ip.run_cell("def loss(m, X, Y):\n    return jnp.mean((jax.vmap(m)(X)[:, 0] - Y) ** 2)")
    r = ip.run_cell("r = %jgrad loss at=(model, X, Y)\nr")
    assert type(r.derivative) is type(given) and "layers[0].weight" in r.grad_norms
    again = ip.run_cell("loss_grad(model, X, Y)")  # the bound derivative takes the model
    np.testing.assert_allclose(again.layers[0].weight, r.derivative.layers[0].weight, rtol=1e-6)
    r.stepper.run(5)
    written = r.stepper.apply()
    assert list(written) == ["model"] and type(ip.ns["model"]) is type(given) and ip.ns["model"] is not given
    np.testing.assert_allclose(float(_eqx_loss(ip.ns["model"], *_data())), r.stepper.loss, rtol=1e-5)
