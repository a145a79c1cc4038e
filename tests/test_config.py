"""Defaults by configuration: ``%config JaxGradMagics.<option> = ...`` reaches every magic call,
an option on the line still wins, and the options are documented where people look."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Shell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from jaxgrad_magic.magics import JaxGradMagics

OPTIONS = ("jit", "mode", "lr", "optimizer", "stepper", "max_items", "heatmap_above")
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def configured(ip: Shell) -> Iterator[Shell]:
    """The shell; every JaxGradMagics option is put back to its value before the test."""
    magics = ip.shell.magics_manager.registry["JaxGradMagics"]
    before = {name: getattr(magics, name) for name in OPTIONS}
    section = ip.shell.config.get("JaxGradMagics")
    saved = section.copy() if section is not None else None
    ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)\nx = jnp.array([1.0, 2.0, 3.0])")
    try:
        yield ip
    finally:
        for name, value in before.items():
            setattr(magics, name, value)
        if saved is None:
            ip.shell.config.pop("JaxGradMagics", None)
        else:
            ip.shell.config["JaxGradMagics"] = Config(saved)


def config(ip: Shell, assignment: str) -> None:
    ip.run_cell(f"%config JaxGradMagics.{assignment}")


def test_defaults_are_the_documented_ones(configured: Shell) -> None:
    magics = configured.shell.magics_manager.registry["JaxGradMagics"]
    assert isinstance(magics, JaxGradMagics)
    assert (magics.jit, magics.mode, magics.stepper) == (True, "auto", True)
    assert (magics.max_items, magics.heatmap_above) == (24, 8)


def test_jit_off(configured: Shell) -> None:
    assert configured.run_cell("%jgrad wave at=x stepper=False").composition == "jax.jit(jax.grad(wave))"
    config(configured, "jit = False")
    r = configured.run_cell("%jgrad wave at=x stepper=False")
    assert "jax.jit(" not in r.composition and r.composition == "jax.grad(wave)"
    np.testing.assert_allclose(r.derivative, np.sin(2 * np.array([1.0, 2.0, 3.0])), rtol=1e-5)
    assert "jax.jit(" not in configured.run_cell("%hess wave at=x").composition
    # The line still wins over the configuration.
    assert configured.run_cell("%jgrad wave at=x jit=True stepper=False").composition.startswith("jax.jit(")


def test_jacobian_mode(configured: Shell) -> None:
    configured.run_cell("def pair(x):\n    return jnp.sin(x) * jnp.sum(x)")
    assert configured.run_cell("%jac pair at=x").mode == "rev"  # auto: as many outputs as inputs
    config(configured, 'mode = "fwd"')
    r = configured.run_cell("%jac pair at=x")
    assert r.mode == "fwd" and r.composition == "jax.jit(jax.jacfwd(pair))"
    assert r.mode_reason == "mode=fwd (configured)"  # not on the line, so not "as asked"
    x = np.array([1.0, 2.0, 3.0])
    want = np.diag(np.cos(x) * x.sum()) + np.sin(x)[:, None]
    np.testing.assert_allclose(r.derivative, want, rtol=1e-5)
    asked = configured.run_cell("%jac pair at=x mode=fwd")
    assert asked.mode == "fwd" and asked.mode_reason == "mode=fwd (as asked)"
    assert configured.run_cell("%jac pair at=x mode=rev").mode == "rev"


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ('mode = "sideways"', ("sideways", "rev", "fwd")),
        ("lr = -1", ("positive",)),
        ("lr = float('inf')", ("positive",)),
        ('optimizer = "adamx"', ("adamx", "adam", "sgd")),
        ("max_items = 0", ("max_items",)),
    ],
)
def test_a_bad_value_is_refused_when_set(
    configured: Shell, assignment: str, words: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    magics = configured.shell.magics_manager.registry["JaxGradMagics"]
    name = assignment.split()[0]
    before = getattr(magics, name)
    config(configured, assignment)  # %config reports a refused value through logging
    assert getattr(magics, name) == before  # refused: the old default stays
    said = caplog.text
    assert all(w in said for w in words), said


def test_max_items(configured: Shell) -> None:
    configured.run_cell("ten = jnp.arange(10.0)")
    r = configured.run_cell("%jgrad wave at=ten stepper=False")
    assert "..." not in str(r)  # 10 values: all shown by default
    config(configured, "max_items = 5")
    r = configured.run_cell("%jgrad wave at=ten stepper=False")
    assert r.display_limits.max_items == 5
    text = str(r)
    assert "..." in text and re.search(r"x = f32\[10\] \[0\., 1\., 2\., \.\.\., 7\., 8\., 9\.\]", text), text
    assert "..." in r._repr_html_()


def test_heatmap_threshold(configured: Shell) -> None:
    configured.run_cell("def pair(x):\n    return jnp.sin(x) * jnp.sum(x)")
    assert "data:image/png" not in configured.run_cell("%jac pair at=x")._repr_html_()  # 3x3: numbers
    config(configured, "heatmap_above = 2")
    r = configured.run_cell("%jac pair at=x")
    assert r.display_limits.heatmap_above == 2
    assert "data:image/png" in r._repr_html_() and "3x3 matrix" in str(r)
    config(configured, "heatmap_above = 1000")
    configured.run_cell("big = jnp.linspace(0.0, 1.0, 20)")
    r = configured.run_cell("%jac pair at=big")
    assert "data:image/png" not in r._repr_html_() and "∂pair/∂x = f32[20,20]" in str(r)


def test_stepper_options_reach_the_result(configured: Shell) -> None:
    r = configured.run_cell("%jgrad wave at=x")
    assert r.show_stepper and r.stepper_options == {"lr": 0.1, "optimizer": "sgd"}
    config(configured, "lr = 0.05")
    config(configured, 'optimizer = "adam"')
    config(configured, "stepper = False")
    r = configured.run_cell("%jgrad wave at=x")
    assert r.stepper_options == {"lr": 0.05, "optimizer": "adam"}
    assert not r.show_stepper
    r = configured.run_cell("%jgrad wave at=x lr=0.3 optimizer=momentum stepper=True")
    assert r.stepper_options == {"lr": 0.3, "optimizer": "momentum"} and r.show_stepper


def test_options_are_restored_between_tests(configured: Shell) -> None:
    # Runs after the tests above in file order: nothing they configured leaks here.
    r = configured.run_cell("%jgrad wave at=x")
    assert r.composition.startswith("jax.jit(") and r.show_stepper
    assert r.display_limits.max_items == 24 and r.stepper_options["lr"] == 0.1


def test_config_lists_every_option(configured: Shell) -> None:
    with capture_output() as shown:
        configured.run_cell("%config JaxGradMagics")
    for name in OPTIONS:
        assert f"JaxGradMagics.{name}=" in shown.stdout


def test_usage_mentions_config() -> None:
    for magic in ("jgrad", "jac", "hess", "jvp", "vjp"):
        doc = getattr(JaxGradMagics, magic).__doc__
        assert "%config JaxGradMagics" in doc, magic


def test_pinfo_shows_the_usage(configured: Shell) -> None:
    with capture_output() as shown:
        configured.run_cell("%jgrad?")
    printed = shown.stdout + "".join(str(o.data.get("text/plain", "")) for o in shown.outputs)
    assert "%config JaxGradMagics" in printed


def test_readme_documents_every_option() -> None:
    text = README.read_text(encoding="utf-8")
    for name in OPTIONS:
        assert f"%config JaxGradMagics.{name}" in text, name
