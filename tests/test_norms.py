"""The gradient's norm per leaf: ``r.grad_norms`` and the result's ``norms`` section."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrad_magic as jgm
from jaxgrad_magic import norms
from jaxgrad_magic.display import DisplayLimits, render_html, render_text


def _mlp_params() -> dict[str, Any]:
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": {"kernel": jax.random.normal(k1, (3, 8)), "bias": jnp.zeros(8)},
        "out": {"kernel": jax.random.normal(k2, (8, 1)) * 1e-3, "bias": jax.random.normal(k3, (1,))},
    }


def _mlp_loss(p: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ p["dense"]["kernel"] + p["dense"]["bias"])
    return jnp.mean(((h @ p["out"]["kernel"] + p["out"]["bias"])[:, 0] - y) ** 2)


def _data() -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    return x, jnp.cos(x[:, 1])


def test_grad_norms_are_the_norms_of_the_gradient_by_hand() -> None:
    p, (x, y) = _mlp_params(), _data()
    r = jgm.grad(_mlp_loss, at=(p, x, y))
    by_hand = jax.grad(_mlp_loss)(p, x, y)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(by_hand)[0]]
    assert list(r.grad_norms) == paths  # tree order
    assert "['dense']['kernel']" in r.grad_norms
    for path, leaf in jax.tree_util.tree_flatten_with_path(by_hand)[0]:
        np.testing.assert_allclose(
            r.grad_norms[jax.tree_util.keystr(path)], np.linalg.norm(np.asarray(leaf)), rtol=1e-5
        )


def test_several_arguments_are_named_and_a_scalar_is_its_name() -> None:
    def f(w: jax.Array, b: jax.Array, s: jax.Array) -> jax.Array:
        return jnp.sum(w**2) + jnp.sum(b["u"] ** 3) + s**2

    r = jgm.grad(f, at=(jnp.arange(3.0), {"u": jnp.ones(2)}, 2.0), argnums=(0, 1, 2))
    assert list(r.grad_norms) == ["w", "b['u']", "s"]
    np.testing.assert_allclose(list(r.grad_norms.values()), [np.linalg.norm([0, 2, 4]), np.linalg.norm([3, 3]), 4.0])
    one = jgm.grad(lambda x: x**2, at=3.0)
    assert one.grad_norms == {"x": 6.0}
    assert "norms" not in str(one)  # one leaf: nothing to compare
    two = jgm.grad(lambda x, y: x * y, at=(2.0, 3.0), argnums=(0, 1))
    assert "norms" not in str(two)  # scalars: their norms are the derivative's own numbers


def test_only_gradients_have_grad_norms() -> None:
    assert jgm.jac(lambda x: x**2, at=jnp.ones(3)).grad_norms is None
    assert jgm.grad(lambda x: x**3, at=2.0, order=2).grad_norms is None


def test_a_huge_gradient_has_a_finite_norm_in_float32() -> None:
    big = jnp.full(4, 1e20, jnp.float32)  # squaring would overflow float32
    assert norms.leaf_norms({"a": big, "b": jnp.array([3.0, 4.0])}).tolist() == pytest.approx([2e20, 5.0], rel=1e-6)
    assert np.isinf(norms.leaf_norms([jnp.array([jnp.inf, 1.0])])[0])
    assert np.isnan(norms.leaf_norms([jnp.array([jnp.nan, 1.0])])[0])


def test_the_display_marks_the_largest_and_smallest() -> None:
    p, (x, y) = _mlp_params(), _data()
    r = jgm.grad(_mlp_loss, at=(p, x, y))
    text = render_text(r)
    section = text.split("  norms")[1]
    largest = max(r.grad_norms, key=r.grad_norms.__getitem__)
    smallest = min(r.grad_norms, key=r.grad_norms.__getitem__)
    assert section.count("◀ largest") == 1 and section.count("◀ smallest") == 1
    assert next(line for line in section.splitlines() if "largest" in line).strip().startswith(largest)
    assert next(line for line in section.splitlines() if "smallest" in line).strip().startswith(smallest)
    # Tree order: the rows follow the leaves.
    rows = [line.split(" = ")[0].strip() for line in section.splitlines() if " = norm " in line]
    assert rows == list(r.grad_norms)
    assert "◀ largest" in render_html(r)


def test_a_big_tree_shows_its_ends_and_its_extremes() -> None:
    p = {f"l{i:03d}": jnp.full(3, 1.0 + i) for i in range(200)}
    p["l100"] = jnp.full(3, 1e4)  # an exploding layer in the middle

    def f(p: dict[str, jax.Array]) -> jax.Array:
        return sum(jnp.sum(v**2) for v in jax.tree_util.tree_leaves(p))

    r = jgm.grad(f, at=p)
    assert len(r.grad_norms) == 200
    text = render_text(r, DisplayLimits(max_leaves=12, edge_leaves=3)).split("  norms")[1]
    rows = [line.split(" = ")[0].strip() for line in text.splitlines() if " = norm " in line]
    assert rows == ["['l000']", "['l001']", "['l002']", "['l100']", "['l197']", "['l198']", "['l199']"]
    assert "['l100'] = norm" in text and "◀ largest" in text and "more leaves" in text


def test_shown_rows_and_the_panel_list() -> None:
    values = {f"x{i}": float(i + 1) for i in range(10)}
    rows = norms.shown(values, max_rows=4, edge=1)
    assert [r if isinstance(r, int) else r.label for r in rows] == ["x0", 8, "x9"]
    assert rows[0].mark == norms.SMALLEST and rows[-1].mark == norms.LARGEST
    assert norms.shown({"a": 1.0, "b": 1.0}, 8, 3)[0].mark == ""  # all equal: nothing stands out
    listing = norms.html_list(values, max_rows=4, edge=1)
    assert "x0" in listing and "x9" in listing and "8 more" in listing and "x5" not in listing
    assert norms.html_list({"only": 1.0}) == ""


def test_equinox_paths() -> None:
    eqx = pytest.importorskip("equinox")
    mlp = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(0))
    x, y = _data()

    def loss(m: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((jax.vmap(m)(x)[:, 0] - y) ** 2)

    r = jgm.grad(loss, at=(mlp, x, y))
    want = eqx.filter_grad(loss)(mlp, x, y)
    assert list(r.grad_norms)[:2] == ["layers[0].weight", "layers[0].bias"]
    np.testing.assert_allclose(r.grad_norms["layers[1].weight"], np.linalg.norm(want.layers[1].weight), rtol=1e-5)


def test_nnx_paths() -> None:
    pytest.importorskip("flax")
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    x, y = _data()

    def loss(m: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((m(x)[:, 0] - y) ** 2)

    r = jgm.grad(loss, at=(model, x, y))
    want = nnx.grad(loss)(nnx.clone(model), x, y)
    assert list(r.grad_norms) == ["['bias']", "['kernel']"]
    np.testing.assert_allclose(r.grad_norms["['kernel']"], np.linalg.norm(want["kernel"][...]), rtol=1e-5)
