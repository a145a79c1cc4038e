"""fetch: a device value on the host, whether or not its program has finished."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad_magic.host import SPIN_SECONDS, fetch


def test_a_result_still_being_computed_arrives_whole() -> None:
    # A program long enough to outlast the polling (about 0.1 s of matrix products), so the
    # blocking wait after it is taken too; its value is known in closed form.
    @jax.jit
    def powers(x: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, 200, lambda _, m: m @ x / 256.0, jnp.eye(256))

    x = jnp.ones((256, 256))  # (J / 256)^k = J / 256 for the all-ones matrix J
    powers(x).block_until_ready()  # compiled first, so the timed call below is only the program
    out = powers(x)
    value = fetch(out)
    assert isinstance(value, np.ndarray) and value.shape == (256, 256)
    np.testing.assert_allclose(value, np.full((256, 256), 1 / 256), rtol=1e-5)
    assert SPIN_SECONDS < 0.01  # the polling is bounded well below a person's notice


def test_a_ready_array_and_host_values_pass_straight_through() -> None:
    ready = jnp.arange(3.0)
    ready.block_until_ready()
    np.testing.assert_array_equal(fetch(ready), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(fetch(np.array([1, 2])), [1, 2])
    assert fetch(2.5) == np.asarray(2.5)
