"""Derivatives of inputs sharded over four CPU devices, run by ``test_sharding.py`` in its own process.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX starts). Prints
one line ``RESULT <json>`` with what was computed, as plain lists, for the test to compare with
closed forms; facts it cannot see from outside (shardings, display text) are reported as well.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def listed(tree: Any) -> Any:
    """Arrays as nested lists (float64), in the tree's structure."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64).tolist(), tree)


def same_sharding(a: jax.Array, b: jax.Array) -> bool:
    return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"devices": len(jax.devices())}
    mesh = Mesh(np.array(jax.devices()), ("d",))
    rows = NamedSharding(mesh, PartitionSpec("d"))
    rows2 = NamedSharding(mesh, PartitionSpec("d", None))

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jaxgrad_magic")

    def run(cell: str) -> Any:
        with capture_output():  # only the RESULT line goes to stdout
            result = shell.run_cell(cell, store_history=False)
        result.raise_error()
        return result.result

    xs = jax.device_put(jnp.linspace(-1.0, 1.0, 8), rows)
    ms = jax.device_put(jnp.arange(32.0).reshape(8, 4) / 10, rows2)
    wide = jax.device_put(jnp.linspace(-1.0, 1.0, 16), rows)
    shell.user_ns.update({"jax": jax, "jnp": jnp, "xs": xs, "ms": ms, "wide": wide})
    out["input_sharded"] = len(xs.sharding.device_set) == 4 and not xs.sharding.is_fully_replicated
    run(
        "def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n"
        "def cube(m):\n    return jnp.sum(m ** 3)\n"
        "def double_sin(x):\n    return 2.0 * jnp.sin(x)\n"
        "def quartic(x):\n    return jnp.sum(x ** 4) / 4\n"
        "def bowl(x):\n    return 0.5 * jnp.sum((x - 0.25) ** 2)\n"
        "def bowl_again(x):\n    return 0.5 * jnp.sum((x - 0.25) ** 2)\n"
    )

    g = run("%jgrad wave at=xs check=True stepper=False")
    out["grad"] = listed(g.derivative)
    out["grad_value"] = float(g.value)
    out["grad_sharding_kept"] = same_sharding(g.derivative, xs)
    out["grad_check"] = g.check.passed
    out["grad_text"] = str(g)
    out["grad_html"] = g._repr_html_()

    g2 = run("%jgrad cube at=ms stepper=False")
    out["grad2d"] = listed(g2.derivative)
    out["grad2d_sharding_kept"] = same_sharding(g2.derivative, ms)

    j = run("%jac double_sin at=xs check=True")
    out["jac"] = listed(j.derivative)
    out["jac_value_sharding_kept"] = same_sharding(j.value, xs)
    out["jac_check"] = j.check.passed

    h = run("%hess quartic at=xs check=True")
    out["hess"] = listed(h.derivative)
    out["hess_check"] = h.check.passed

    big = run("%jac double_sin at=wide")
    out["heat_html"] = big._repr_html_()
    out["heat_text"] = str(big)

    jv = run("%jvp double_sin at=xs tangent=jnp.ones_like(xs) check=True")
    out["jvp"] = listed(jv.derivative)
    out["jvp_check"] = jv.check.passed
    vj = run("%vjp double_sin at=xs cotangent=jnp.ones_like(xs) check=True")
    out["vjp"] = listed(vj.derivative)
    out["vjp_sharding_kept"] = same_sharding(vj.derivative, xs)
    out["vjp_check"] = vj.check.passed

    shown = run("%jgrad wave at=xs show=jaxpr stepper=False")
    out["jaxpr"] = shown.jaxpr

    # The descent stepper, through the result and directly.
    try:
        from jaxgrad_magic import Stepper
    except ImportError as exc:
        out["stepper"] = f"missing: {exc}"
        return out
    r = run("%jgrad bowl at=xs lr=0.1")
    stepper = r.stepper
    for _ in range(3):
        stepper.step()
    stepper.run(5)
    out["stepper"] = "ok"
    out["stepper_params"] = listed(stepper.params)
    out["stepper_steps"] = stepper.steps
    out["stepper_loss"] = stepper.loss
    out["stepper_sharding_kept"] = same_sharding(stepper.params, xs) and same_sharding(stepper.grad, xs)

    # The same function and shape on one device first: its compiled programs must not be
    # reused for the sharded point.
    plain = Stepper(shell.user_ns["bowl_again"], (jnp.linspace(-1.0, 1.0, 8),), lr=0.1, optimizer="sgd")
    plain.step()
    plain.run(7)
    out["plain_params"] = listed(plain.params)
    out["plain_on_one_device"] = len(plain.params.sharding.device_set) == 1
    direct = Stepper(shell.user_ns["bowl_again"], (xs,), lr=0.1, optimizer="sgd")
    for _ in range(3):
        direct.step()
    direct.run(5)
    out["direct_params"] = listed(direct.params)
    out["direct_params_sharded"] = (
        isinstance(direct.params, jax.Array) and not direct.params.sharding.is_fully_replicated
    )
    out["direct_sharding_kept"] = same_sharding(direct.params, xs)

    # adam on a row-sharded matrix: the parameters and adam's moments keep the rows' sharding.
    adam = Stepper(lambda m: 0.5 * jnp.sum((m - 1.0) ** 2), (ms,), lr=0.05, optimizer="adam", fn_name="pull")
    adam.step()
    adam.step()
    adam.run(3)
    moments = adam.state.opt_state[0]
    out["adam_params"] = listed(adam.params)
    out["adam_steps"] = adam.steps
    out["adam_sharding_kept"] = {
        "params": same_sharding(adam.params, ms),
        "grad": same_sharding(adam.grad, ms),
        "mu": same_sharding(moments.mu, ms),
        "nu": same_sharding(moments.nu, ms),
    }
    return out


if __name__ == "__main__":
    result = main()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
