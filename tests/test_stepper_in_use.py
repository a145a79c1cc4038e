"""The stepper as people use it: step then read, tiny learning rates, apply, x64, replaced panels.

Expected values are closed forms (sgd on ``x²`` multiplies ``x`` by ``1 - 2 lr``); widgets are
real ipywidgets objects, counted in ipywidgets' own registry of live widgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from jaxgrad_magic import Stepper
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.panel import StepperPanel
from jaxgrad_magic.show import close_all_panels

RERUNS = 30


def is_live(widget: Any) -> bool:
    """Open, and in ipywidgets' registry of live widgets (closing drops it from there)."""
    return widget.comm is not None and widget.model_id in live_widgets


def square(x: Any) -> Any:
    return jnp.sum(x**2)


# ---------------------------------------------------------------- step, then read


def test_each_step_leaves_its_own_result_to_read() -> None:
    s = Stepper(square, (jnp.array([4.0, -2.0]),), lr=0.25)
    for k in range(1, 5):
        info = s.step()
        params = s.params
        # x <- x - 0.25 * 2x = x / 2, exactly in float32
        np.testing.assert_array_equal(np.asarray(params), np.array([4.0, -2.0]) / 2**k)
        assert info.loss == s.loss == float(np.sum((np.array([4.0, -2.0]) / 2**k) ** 2))
        # What the step computed is what is read: nothing sliced, copied or computed ahead.
        assert params is s.state.params and s.params is params and params.is_ready()
        np.testing.assert_array_equal(np.asarray(s.grad), 2 * np.asarray(params))
        assert float(s.state.loss) == s.loss and s.state.loss.dtype == jnp.float32


def test_reading_between_steps_changes_nothing_in_the_descent() -> None:
    read, unread = Stepper(square, (jnp.array([3.0]),), lr=0.1), Stepper(square, (jnp.array([3.0]),), lr=0.1)
    for _ in range(20):
        read.step()
        _ = read.params, read.loss, read.grad, read.state
        unread.step()
    np.testing.assert_array_equal(np.asarray(read.params), np.asarray(unread.params))
    np.testing.assert_allclose(np.asarray(read.params), [3.0 * 0.8**20], rtol=1e-6)
    np.testing.assert_array_equal(read.history, unread.history)


# ---------------------------------------------------------------- a learning rate that is 0 in the dtype


def test_a_rate_that_rounds_to_zero_in_the_parameters_dtype_is_refused_like_zero() -> None:
    x = jnp.ones(2, jnp.float32)
    with pytest.raises(JaxGradUsageError, match=r"learning rate 1e-300 is 0 in float32.*as with lr=0"):
        Stepper(square, (x,), lr=1e-300)
    s = Stepper(square, (x,), lr=0.1)
    with pytest.raises(JaxGradUsageError, match=r"0 in float32"):
        s.lr = 1e-300
    assert s.lr == 0.1  # refused: the rate stays
    s.lr = 1e-44  # the smallest float32 rates are still numbers: 1e-44 is not 0
    assert s.step().steps == 1
    with pytest.raises(JaxGradUsageError, match=r"0 in bfloat16"):
        Stepper(square, (jnp.ones(2, jnp.bfloat16),), lr=1e-42)  # bfloat16's smallest is ~9.2e-41


def test_a_tiny_rate_is_accepted_and_used_in_float64_when_the_parameters_are(x64: None) -> None:
    # f(x) = 1e300 x: one sgd step at lr 1e-300 moves x by exactly 1 (in float32 the rate would be 0).
    s = Stepper(lambda x: 1e300 * x, (jnp.float64(5.0),), lr=1e-300)
    s.step()
    assert s.params.dtype == jnp.float64 and float(s.params) == 4.0


def test_the_magic_refuses_such_a_rate_when_the_stepper_is_built(ip: Any) -> None:
    ip.run_cell("x = 2.0")
    result = ip.cell("jgrad", "lr=1e-300", "def f(x):\n    return x**2\n")
    np.testing.assert_allclose(float(result.derivative), 4.0)  # the derivative is there all the same
    with pytest.raises(JaxGradUsageError, match="0 in float32"):
        _ = result.stepper


# ---------------------------------------------------------------- apply() with two arguments from one variable


def two_targets(a: Any, b: Any) -> Any:
    return (a - 1.0) ** 2 + (b + 1.0) ** 2


def test_apply_with_two_arguments_from_one_variable_leaves_it_and_says_so() -> None:
    ns: dict[str, Any] = {"xa": 0.0}
    s = Stepper(two_targets, (0.0, 0.0), argnums=(0, 1), lr=0.25, names=("xa", "xa"), namespace=ns)
    s.step()  # a <- a - 0.25 * 2 (a - 1) = 0.5, b <- b - 0.25 * 2 (b + 1) = -0.5
    with pytest.warns(UserWarning, match=r"a and b both came from `xa`.*`xa` stayed as before"):
        written = s.apply()
    assert ns["xa"] == 0.0  # not half of the answer
    assert written == {"two_targets_params": (0.5, -0.5)} and ns["two_targets_params"] == (0.5, -0.5)
    assert all(isinstance(v, float) for v in ns["two_targets_params"])  # floats, as they were given
    assert "two_targets_params" in s.message and "xa" in s.message


def test_apply_from_the_magic_with_at_xa_xa(ip: Any) -> None:
    ip.run_cell("xa = 0.0")
    result = ip.cell(
        "jgrad", "at=(xa, xa) argnums=0,1 lr=0.25", "def g(a, b):\n    return (a - 1.0)**2 + (b + 1.0)**2\n"
    )
    s = result.stepper
    s.step()
    with pytest.warns(UserWarning, match="both came from `xa`"):
        s.apply()
    assert ip.ns["xa"] == 0.0 and ip.ns["g_params"] == (0.5, -0.5)


def test_the_panels_apply_button_says_why_the_variable_was_left() -> None:
    ns: dict[str, Any] = {"xa": 0.0}
    s = Stepper(two_targets, (0.0, 0.0), argnums=(0, 1), lr=0.25, names=("xa", "xa"), namespace=ns)
    panel = StepperPanel(s)
    try:
        panel.step_button.click()
        panel.apply_button.click()  # the warning is said on the status line, not raised
        status = panel.status.value
        assert "two_targets_params" in status and "both came from `xa`" in status
        assert ns["xa"] == 0.0 and ns["two_targets_params"] == (0.5, -0.5)
    finally:
        panel.close()


# ---------------------------------------------------------------- a stepper made with x64, then x64 off


@pytest.fixture
def x64() -> Iterator[None]:
    """jax_enable_x64 on for the test, and back as it was afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def test_an_x64_stepper_after_x64_is_switched_off_says_what_to_do(x64: None) -> None:
    s = Stepper(square, (jnp.array([1.0, -3.0], dtype=jnp.float64),), lr=0.25, optimizer="adam")
    s.optimizer = "sgd"
    s.step()  # x / 2
    assert s.params.dtype == jnp.float64
    jax.config.update("jax_enable_x64", False)
    for action in (s.step, lambda: s.run(3), s.reset, lambda: setattr(s, "optimizer", "adam")):
        with pytest.raises(JaxGradUsageError, match=r"jax_enable_x64 is now off.*jax\.config\.update") as caught:
            action()
        assert "\n" not in str(caught.value)  # one paragraph
    # What it holds can still be read, and nothing moved.
    np.testing.assert_array_equal(np.asarray(s.params), [0.5, -1.5])
    assert s.steps == 1 and s.loss == 2.5
    panel = StepperPanel(s)
    try:
        panel.step_button.click()  # the panel shows the same advice on its status line
        assert "jax_enable_x64 is now off" in panel.status.value and s.steps == 1
    finally:
        panel.close()
    jax.config.update("jax_enable_x64", True)  # as the message says: it goes on from there
    s.step()
    s.run(2)
    np.testing.assert_array_equal(np.asarray(s.params), [1.0 / 16, -3.0 / 16])
    assert s.params.dtype == jnp.float64 and s.steps == 4


def test_a_float32_stepper_made_with_x64_on_keeps_working_after_it_is_off(x64: None) -> None:
    s = Stepper(square, (jnp.array([1.0], dtype=jnp.float32),), lr=0.25)
    jax.config.update("jax_enable_x64", False)
    s.step()
    s.run(1)
    np.testing.assert_array_equal(np.asarray(s.params), [0.25])


# ---------------------------------------------------------------- panels of replaced results


CELL = "r = %jgrad f at=(x, y) argnums=0,1\nw = r.stepper.widget\n"


@pytest.fixture
def shell_with_f(ip: Any) -> Iterator[Any]:
    ip.run_cell("x = 5.0\ny = 2.0\ndef f(x, y):\n    return x**2 + (y - 1.0) ** 2\n")
    try:
        yield ip
    finally:
        close_all_panels()  # the panels of the last run are still live: nothing replaced them


@pytest.mark.slow  # RERUNS cell runs, each building a panel: about 8 s
def test_re_running_a_cell_closes_the_widgets_of_the_results_it_replaces(shell_with_f: Any) -> None:
    shell = shell_with_f.shell
    start = len(live_widgets)
    counts = []
    for _ in range(RERUNS):
        shell.run_cell(CELL, store_history=False, cell_id="cell-1").raise_error()
        counts.append(len(live_widgets))
    assert counts[0] > start  # the first run built a panel ...
    assert set(counts) == {counts[0]}  # ... and every re-run closed the one it replaced
    w = shell_with_f.ns["w"]
    assert is_live(w)  # the current panel stays open
    w.panel.step_button.click()
    assert shell_with_f.ns["r"].stepper.steps == 1


def test_cells_binding_the_same_name_replace_each_other_without_cell_ids(shell_with_f: Any) -> None:
    counts = []
    for _ in range(RERUNS):
        shell_with_f.run_cell(CELL)  # no cell id (terminal IPython): the bound name f_grad is the place
        counts.append(len(live_widgets))
    assert set(counts) == {counts[0]}


def test_results_one_run_makes_in_one_place_stay_until_the_cell_runs_again(shell_with_f: Any) -> None:
    loop = "ws = []\nfor _ in range(3):\n    r = %jgrad f at=(x, y) argnums=0,1\n    ws.append(r.stepper.widget)\n"
    start = len(live_widgets)
    shell_with_f.run_cell(loop)
    ws = shell_with_f.ns["ws"]
    assert len({id(w) for w in ws}) == 3 and all(is_live(w) for w in ws)
    per_panel = (len(live_widgets) - start) // 3
    shell_with_f.run_cell(loop)  # the re-run replaces all three
    assert not any(is_live(w) for w in ws)
    assert len(live_widgets) == start + 3 * per_panel


def test_a_replaced_result_whose_stepper_is_still_used_builds_a_fresh_panel(shell_with_f: Any) -> None:
    shell_with_f.run_cell(CELL)
    s = shell_with_f.ns["r"].stepper
    old = s.widget
    shell_with_f.run_cell(CELL)
    assert not is_live(old)  # closed with the result it belonged to
    s.step()  # the stepper itself goes on
    fresh = s.widget
    assert fresh is not old and is_live(fresh) and fresh.panel.steps_label.value == "1"
    fresh.panel.close()
