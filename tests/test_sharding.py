"""Inputs sharded over a 4-device ``Mesh`` with ``NamedSharding``: derivatives, checks, display and
the stepper work unchanged, and the derivative keeps the input's sharding.

JAX fixes its device count when it starts, so ``sharding_check.py`` runs in its own process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it reports what it computed and this file
compares that with closed forms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import close, run_json_script

pytestmark = pytest.mark.slow  # a fresh JAX process with four host devices

SCRIPT = Path(__file__).resolve().parent / "sharding_check.py"
X8 = np.linspace(-1.0, 1.0, 8)


@pytest.fixture(scope="module")
def sharded() -> dict[str, Any]:
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=4".strip(),
        "JAX_PLATFORMS": "cpu",
        "JAX_ENABLE_X64": None,
    }
    return run_json_script([str(SCRIPT)], env=env)


def test_four_devices_and_a_sharded_input(sharded: dict[str, Any]) -> None:
    assert sharded["devices"] == 4
    assert sharded["input_sharded"]


def test_gradient_keeps_the_sharding(sharded: dict[str, Any]) -> None:
    close(sharded["grad"], np.sin(2 * X8))  # d/dx sum sin²x = sin 2x
    assert sharded["grad_value"] == pytest.approx(np.sum(np.sin(X8) ** 2), rel=1e-6)
    assert sharded["grad_sharding_kept"]
    assert sharded["grad_check"]


def test_gradient_of_a_row_sharded_matrix(sharded: dict[str, Any]) -> None:
    m = np.arange(32.0).reshape(8, 4) / 10
    close(sharded["grad2d"], 3 * m**2)
    assert sharded["grad2d_sharding_kept"]


def test_jacobian_and_hessian(sharded: dict[str, Any]) -> None:
    close(sharded["jac"], np.diag(2 * np.cos(X8)))
    assert sharded["jac_value_sharding_kept"] and sharded["jac_check"]
    close(sharded["hess"], np.diag(3 * X8**2))  # d² (x⁴/4) = 3x²
    assert sharded["hess_check"]


def test_directional_derivatives(sharded: dict[str, Any]) -> None:
    close(sharded["jvp"], 2 * np.cos(X8))
    close(sharded["vjp"], 2 * np.cos(X8))
    assert sharded["vjp_sharding_kept"]
    assert sharded["jvp_check"] and sharded["vjp_check"]


def test_display(sharded: dict[str, Any]) -> None:
    text, page = sharded["grad_text"], sharded["grad_html"]
    assert text.startswith("gradient of wave: jax.jit(jax.grad(wave))")
    assert "x = f32[8]" in text and "∂wave/∂x = f32[8]" in text and "PASS" in text
    assert f"{np.sin(2 * X8[-1]):.6f}" in text
    assert "<table>" in page and "f32[8]" in page
    heat_text, heat_page = sharded["heat_text"], sharded["heat_html"]
    assert "16x16 matrix" in heat_text
    assert "class='jgm-heat'" in heat_page and "data:image/png;base64," in heat_page
    assert " sin " in sharded["jaxpr"] and " cos " in sharded["jaxpr"]


def test_stepper_descends_from_a_sharded_point(sharded: dict[str, Any]) -> None:
    assert sharded["stepper"] == "ok", f"jaxgrad_magic.Stepper is not available: {sharded['stepper']}"
    # bowl(x) = ½‖x - ¼‖², so sgd gives x_k - ¼ = (1 - lr)^k (x_0 - ¼); 3 steps, then run(5).
    want = 0.25 + 0.9**8 * (X8 - 0.25)
    assert sharded["stepper_steps"] == 8
    close(sharded["stepper_params"], want)
    assert sharded["stepper_loss"] == pytest.approx(0.5 * np.sum((want - 0.25) ** 2), rel=1e-5)
    close(sharded["direct_params"], want)
    close(sharded["plain_params"], want)


def test_stepper_keeps_the_sharding_of_its_point(sharded: dict[str, Any]) -> None:
    assert sharded["stepper"] == "ok", f"jaxgrad_magic.Stepper is not available: {sharded['stepper']}"
    assert sharded["stepper_sharding_kept"]  # through %jgrad's stepper: steps, then a run
    assert sharded["direct_params_sharded"] and sharded["direct_sharding_kept"]
    assert sharded["plain_on_one_device"]  # the same function on one device first changes nothing


def test_adam_on_a_sharded_matrix_keeps_the_sharding_of_params_and_moments(sharded: dict[str, Any]) -> None:
    assert sharded["stepper"] == "ok", f"jaxgrad_magic.Stepper is not available: {sharded['stepper']}"
    # pull(m) = ½‖m - 1‖², gradient m - 1; adam written out in NumPy, five steps.
    m = np.arange(32.0).reshape(8, 4) / 10
    mu, nu, lr, b1, b2, eps = np.zeros_like(m), np.zeros_like(m), 0.05, 0.9, 0.999, 1e-8
    for t in range(1, 6):
        g = m - 1.0
        mu, nu = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g**2
        m = m - lr * (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
    assert sharded["adam_steps"] == 5
    close(sharded["adam_params"], m)
    assert sharded["adam_sharding_kept"] == {"params": True, "grad": True, "mu": True, "nu": True}
