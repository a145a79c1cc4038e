"""The descent stepper core: exact steps, optimizers against optax by hand, divergence, history.

Every expected value is computed independently: closed forms, NumPy arithmetic in float32,
or the optax optimizer applied by hand in a plain Python loop with ``jax.grad``.
"""

from __future__ import annotations

import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad_magic import Stepper
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.stepper import HISTORY_LIMIT, OPTIMIZERS, RunInfo, StepInfo

A = np.array([[2.0, -1.0, 0.5], [0.3, 1.5, -0.7], [1.0, 0.2, 0.8], [-0.4, 0.6, 1.2]], dtype=np.float32)
B = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


def quadratic(x: Any, y: Any) -> Any:
    return x**2 + (y - 1.0) ** 2


def least_squares(w: Any) -> Any:
    return jnp.sum((jnp.asarray(A) @ w - jnp.asarray(B)) ** 2)


def rosenbrock(x: Any, y: Any) -> Any:
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


# The optimizers as optax builds them, written out here (not taken from the stepper).
BY_HAND = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr),
    "nadam": lambda lr: optax.nadam(lr),
    "adamax": lambda lr: optax.adamax(lr),
    "amsgrad": lambda lr: optax.amsgrad(lr),
    "adabelief": lambda lr: optax.adabelief(lr),
    "radam": lambda lr: optax.radam(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adagrad": lambda lr: optax.adagrad(lr),
    "yogi": lambda lr: optax.yogi(lr),
    "lion": lambda lr: optax.lion(lr),
    "lamb": lambda lr: optax.lamb(lr),
}


def descend_by_hand(
    f: Any, params: Any, opt: optax.GradientTransformation, steps: int
) -> tuple[list[Any], list[float]]:
    """Params and losses after each of ``steps`` optax steps, applied by hand (eager JAX)."""
    state = opt.init(params)
    path, losses = [params], [float(f(params))]
    for _ in range(steps):
        grads = jax.grad(f)(params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        path.append(params)
        losses.append(float(f(params)))
    return path, losses


def test_one_sgd_step_is_the_hand_written_formula() -> None:
    s = Stepper(quadratic, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    info = s.step()
    lr, x, y = np.float32(0.1), np.float32(5.0), np.float32(2.0)
    x1, y1 = x - lr * (2 * x), y - lr * (2 * (y - 1))  # d/dx = 2x, d/dy = 2(y - 1)
    px, py = s.params
    assert (float(px), float(py)) == (4.0, float(np.float32(1.8)))
    assert (np.float32(px), np.float32(py)) == (x1, y1)
    assert isinstance(info, StepInfo) and info.steps == 1 and info.step == s.steps == 1
    assert s.loss == info.loss == float(x1**2 + (y1 - 1) ** 2)
    assert s.grad_norm == pytest.approx(float(np.hypot(2 * x1, 2 * (y1 - 1))), rel=1e-6)
    np.testing.assert_array_equal(s.history, [26.0, float(x1**2 + (y1 - 1) ** 2)])
    np.testing.assert_array_equal(s.history_steps, [0, 1])
    np.testing.assert_array_equal(s.trajectory, [[5.0, 2.0], [x1, y1]])
    assert s.point == s.params
    assert "step 1" in s.message and "step 1" in repr(s)


def test_every_named_optimizer_is_covered() -> None:
    assert set(BY_HAND) == set(OPTIMIZERS) == set(Stepper.optimizer_names)
    assert {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"} <= set(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_each_optimizer_matches_optax_applied_by_hand(name: str) -> None:
    lr, w0 = 0.05, jnp.array([0.5, -0.3, 0.8], dtype=jnp.float32)
    path, losses = descend_by_hand(least_squares, w0, BY_HAND[name](lr), 6)
    s = Stepper(least_squares, (w0,), lr=lr, optimizer=name)
    s.step()  # the fused single step ...
    s.step()
    info = s.run(4)  # ... and the compiled chunk runner continue the same descent
    assert isinstance(info, RunInfo) and info.steps == 4 and s.steps == 6 and not s.diverged
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(s.history, losses, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.grad), np.asarray(jax.grad(least_squares)(path[-1])), rtol=1e-4, atol=1e-5)
    assert s.optimizer == name and s.lr_adjustable


def test_a_transformation_object_and_a_learning_rate_function() -> None:
    w0 = jnp.array([0.5, -0.3, 0.8], dtype=jnp.float32)
    chained = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.05, momentum=0.5))
    path, _ = descend_by_hand(least_squares, w0, chained, 5)
    s = Stepper(least_squares, (w0,), optimizer=chained)
    s.run(5)
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=2e-5, atol=1e-6)
    assert s.optimizer is chained and not s.lr_adjustable
    s.lr = 0.5
    assert "nothing changes" in s.message

    s = Stepper(least_squares, (w0,), lr=0.02, optimizer=optax.adam)  # a function of the learning rate
    s.run(5)
    path, _ = descend_by_hand(least_squares, w0, optax.adam(0.02), 5)
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=2e-5, atol=1e-6)
    assert s.lr_adjustable


def test_adam_converges_on_rosenbrock_to_the_closed_form_minimum() -> None:
    s = Stepper(rosenbrock, (-1.0, 1.0), argnums=(0, 1), lr=0.01, optimizer="adam")
    info = s.run(20_000)
    assert not info.diverged and info.steps == 20_000
    np.testing.assert_allclose([float(v) for v in s.params], [1.0, 1.0], atol=1e-2)  # argmin (1, 1), f = 0
    assert s.loss < 1e-4 and s.history[0] == pytest.approx(4.0)


def test_a_large_learning_rate_diverges_and_keeps_the_last_finite_state() -> None:
    # x <- x - 1.5 * 2x = -2x: |x| doubles every step until x**2 overflows float32.
    lr = np.float32(1.5)
    xs = [np.float32(1.0)]
    with np.errstate(over="ignore"):
        while np.isfinite(xs[-1] ** 2) and np.isfinite(2 * xs[-1]):
            xs.append(xs[-1] - lr * (2 * xs[-1]))
    last = len(xs) - 2  # the last step whose loss and gradient are finite

    def f(x: Any) -> Any:
        return x**2

    s = Stepper(f, (1.0,), lr=1.5)
    s.run(3)  # a clean chunk first, so the bad one starts mid-descent
    info = s.run(1000)
    assert info.diverged and s.diverged and info.steps == last - 3
    assert s.steps == last and s.diverged_at == last + 1
    assert float(s.params) == xs[last] and np.isfinite(s.loss) and s.loss == float(xs[last] ** 2)
    assert f"diverged at step {last + 1}" in s.message and "lower the learning rate (now 1.5)" in s.message
    assert len(s.history) == last + 1 and np.isfinite(s.history).all()

    # A single step from there diverges the same way and changes nothing.
    step = s.step()
    assert step.diverged and step.steps == 0 and s.steps == last and float(s.params) == xs[last]

    # A smaller learning rate continues from the kept state and clears the mark; until then the
    # reason stays, whatever the messages say.
    reason = s.divergence
    assert reason is not None and f"diverged at step {last + 1}" in reason
    s.lr = 0.1
    assert s.message.startswith("learning rate changed") and s.divergence == reason
    assert s.step().steps == 1 and not s.diverged and s.diverged_at is None and s.divergence is None
    assert float(s.params) == pytest.approx(float(xs[last]) * 0.8, rel=1e-6)


def test_a_nan_gradient_with_a_finite_loss_stops_the_run() -> None:
    # For x < 1 the sqrt term is flat (0), but its derivative is 0.5 / sqrt(0) * 0 = nan.
    def f(x: Any) -> Any:
        return x**2 + jnp.sqrt(jnp.maximum(x - 1.0, 0.0))

    def grad_by_hand(x: float) -> float:
        return 2 * x + (0.5 / np.sqrt(x - 1.0) if x > 1.0 else np.nan)

    xs = [3.0]
    while np.isfinite(grad_by_hand(xs[-1])):
        xs.append(xs[-1] - 0.3 * grad_by_hand(xs[-1]))
    bad = len(xs) - 1  # the first step whose gradient is nan; its loss is finite
    assert bad >= 2 and np.isfinite(xs[bad] ** 2)

    s = Stepper(f, (3.0,), lr=0.3)
    info = s.run(100)
    assert info.diverged and s.diverged_at == bad and s.steps == bad - 1
    assert float(s.params) == pytest.approx(xs[bad - 1], rel=1e-5)
    assert "the gradient became nan" in s.message


def test_a_huge_finite_gradient_is_neither_inf_nor_divergence() -> None:
    # x² at 1e19: the loss 1e38 and the gradient 2e19 are finite float32, the gradient's square is not.
    s = Stepper(lambda x: x**2, (1e19,), lr=0.1)
    assert not s.diverged and s.loss == pytest.approx(1e38, rel=1e-6)
    assert s.grad_norm == pytest.approx(2e19, rel=1e-6)
    assert s.step().steps == 1 and not s.diverged  # x <- x - 0.1 * 2x = 0.8x
    assert float(s.params) == pytest.approx(8e18, rel=1e-6) and s.grad_norm == pytest.approx(1.6e19, rel=1e-6)

    c = jnp.array([3e19, 4e19])  # a linear loss c · w: its gradient is c everywhere, ‖c‖ = 5e19
    s = Stepper(lambda w: jnp.dot(c, w), (jnp.zeros(2),), lr=1e-20)
    assert s.grad_norm == pytest.approx(5e19, rel=1e-6) and "‖∇f‖ 5e+19" in s.message
    info = s.run(3)
    assert info.steps == 3 and not info.diverged and s.grad_norm == pytest.approx(5e19, rel=1e-6)
    np.testing.assert_allclose(np.asarray(s.params), [-0.9, -1.2], rtol=1e-5)  # w - 3 lr c


def test_an_inf_gradient_with_a_finite_loss_is_divergence() -> None:
    # sqrt(x + 1) from 0 at lr 2: x <- 0 - 2 * 0.5 = -1, where the loss is 0 and the gradient 0.5 / 0 = inf.
    s = Stepper(lambda x: jnp.sqrt(x + 1.0), (0.0,), lr=2.0)
    info = s.step()
    assert info.diverged and s.diverged_at == 1 and s.steps == 0 and float(s.params) == 0.0
    assert "the gradient became inf" in s.message
    assert s.run(5).diverged and s.steps == 0


def test_a_start_where_f_is_not_finite_is_reported() -> None:
    s = Stepper(lambda x: jnp.log(x), (-1.0,), fn_name="logf")
    assert s.diverged and s.diverged_at == 0 and "not finite at the starting point" in s.message
    assert s.divergence == s.message
    assert s.step().diverged and s.run(10).steps == 0 and s.steps == 0


def test_apply_writes_back_to_the_variables_the_point_came_from() -> None:
    ns: dict[str, Any] = {"x": 5.0, "y": np.array([2.0, 3.0])}

    def f(x: Any, y: Any) -> Any:
        return x**2 + jnp.sum((y - 1.0) ** 2)

    s = Stepper(f, (ns["x"], ns["y"]), argnums=(0, 1), lr=0.1, names=("x", "y"), namespace=ns)
    s.step()
    written = s.apply()
    assert set(written) == {"x", "y"} and "wrote x, y" in s.message
    assert isinstance(ns["x"], float) and ns["x"] == 4.0  # 5 - 0.1 * 10, a Python float as before
    assert isinstance(ns["y"], np.ndarray) and ns["y"].dtype == np.float64 and ns["y"].flags.writeable
    np.testing.assert_allclose(ns["y"], [1.8, 2.6], rtol=1e-6)  # y - 0.1 * 2 (y - 1)


def test_apply_writes_fn_params_when_the_point_has_no_names() -> None:
    ns: dict[str, Any] = {}

    def loss(w: Any, data: Any) -> Any:
        return jnp.sum((w - data) ** 2)

    data = jnp.array([1.0, 2.0])
    s = Stepper(loss, (jnp.zeros(2), data), lr=0.25, names=(None, "data"), namespace=ns)
    s.step()  # w <- w - 0.25 * 2 (w - data) = data / 2
    assert list(s.apply()) == ["loss_params"] and "loss_params" in s.message
    np.testing.assert_array_equal(ns["loss_params"], [0.5, 1.0])
    assert "data" not in ns


def test_history_is_bounded_and_keeps_the_step_numbers() -> None:
    # f(x) = x has gradient 1, so x_k = -k / 1024 exactly in float32: the loss is the closed form.
    def f(x: Any) -> Any:
        return x

    s = Stepper(f, (0.0,), lr=2.0**-10)
    info = s.run(300_000)
    assert info.steps == s.steps == 300_000 and not info.diverged
    h, steps = s.history, s.history_steps
    assert len(h) == len(steps) == HISTORY_LIMIT + 1 == 100_001
    assert h[0] == 0.0 and steps[0] == 0  # the initial loss is always kept
    np.testing.assert_array_equal(steps[1:], np.arange(200_001, 300_001))  # then the most recent
    np.testing.assert_array_equal(h, -steps / 1024.0)
    np.testing.assert_array_equal(s.trajectory[:, 0], h)  # one parameter, equal to the loss here
    assert s.loss == h[-1] == -300_000 / 1024.0

    s.step()  # single steps keep the same window
    assert len(s.history) == 100_001 and s.history_steps[-1] == 300_001 and s.history[-1] == -300_001 / 1024.0
    s.reset()
    assert s.steps == 0 and list(s.history) == [0.0] and list(s.history_steps) == [0]


def test_pytree_params_and_a_fixed_data_argument() -> None:
    x = jnp.linspace(-1.0, 1.0, 5)
    target = 3.0 * x - 0.5

    def loss(p: dict[str, Any], x: Any, target: Any) -> Any:
        return jnp.mean((p["w"] * x + p["b"] - target) ** 2)

    p0 = {"w": jnp.array(0.0), "b": jnp.array(0.0)}
    path, losses = descend_by_hand(lambda p: loss(p, x, target), p0, optax.sgd(0.1, momentum=0.9), 7)
    s = Stepper(loss, (p0, x, target), lr=0.1, optimizer="momentum")
    s.run(7)
    assert set(s.params) == {"b", "w"}
    for key in ("w", "b"):
        np.testing.assert_allclose(float(s.params[key]), float(path[-1][key]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.history, losses, rtol=1e-5)
    assert s.point[1] is x and s.point[2] is target
    assert s.trajectory.shape == (8, 2)  # two scalars: the path is kept, flattened like ravel_pytree
    np.testing.assert_allclose(s.trajectory[-1], [float(path[-1]["b"]), float(path[-1]["w"])], rtol=1e-5)


def test_a_large_state_steps_like_optax_by_hand() -> None:
    target = jnp.linspace(-1.0, 1.0, 20_000)

    def f(w: Any) -> Any:
        return jnp.sum((w - target) ** 2)

    s = Stepper(f, (jnp.zeros_like(target),), lr=0.1, optimizer="momentum")
    s.step()
    s.run(2)
    path, losses = descend_by_hand(f, jnp.zeros_like(target), optax.sgd(0.1, momentum=0.9), 3)
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.history, losses, rtol=1e-5)
    assert s.trajectory is None  # the path is kept for at most two parameters


def test_an_int_argument_is_baked_in_not_traced() -> None:
    def head_norm(x: Any, n: int) -> Any:
        return jnp.sum(x[:n] ** 2)  # slicing needs n concrete

    s = Stepper(head_norm, (jnp.ones(4), 2), lr=0.25)
    s.step()  # the first two entries halve, the rest have zero gradient
    np.testing.assert_array_equal(np.asarray(s.params), [0.5, 0.5, 1.0, 1.0])


def test_an_object_argument_changed_in_place_is_not_stepped_with_its_old_value() -> None:
    class Config:
        def __init__(self) -> None:
            self.scale = 1.0

    def scaled(x: Any, config: Config) -> Any:
        return config.scale * x**2

    config = Config()
    s = Stepper(scaled, (1.0, config), lr=0.1)
    s.step()
    assert float(s.params) == pytest.approx(0.8)  # 1 - 0.1 * 2
    config.scale = 10.0
    s = Stepper(scaled, (1.0, config), lr=0.01)
    s.step()
    assert float(s.params) == pytest.approx(0.8)  # 1 - 0.01 * 20, not 1 - 0.01 * 2


def test_has_aux_functions_step_on_the_loss_and_keep_the_aux() -> None:
    def f(w: Any) -> tuple[Any, dict[str, Any]]:
        pred = jnp.asarray(A) @ w
        return jnp.sum((pred - jnp.asarray(B)) ** 2), {"pred": pred}

    w0 = jnp.array([0.5, -0.3, 0.8], dtype=jnp.float32)
    path, losses = descend_by_hand(least_squares, w0, optax.adam(0.05), 5)
    s = Stepper(f, (w0,), lr=0.05, optimizer="adam", has_aux=True)
    s.run(3)
    s.step()
    s.step()
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(s.history, losses, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(s.aux["pred"]), A @ np.asarray(s.params), rtol=1e-5, atol=1e-6)


def test_changing_the_optimizer_continues_from_the_current_point() -> None:
    w0 = jnp.array([0.5, -0.3, 0.8], dtype=jnp.float32)
    s = Stepper(least_squares, (w0,), lr=0.05)
    s.run(10)
    here = s.params
    s.optimizer = "adam"
    assert s.steps == 10 and "adam" in s.message and "step 10" in s.message
    np.testing.assert_array_equal(np.asarray(s.params), np.asarray(here))
    s.run(5)
    path, _ = descend_by_hand(least_squares, here, optax.adam(0.05), 5)  # fresh adam state from there
    np.testing.assert_allclose(np.asarray(s.params), np.asarray(path[-1]), rtol=2e-5, atol=1e-6)
    assert s.steps == 15 and len(s.history) == 16


def test_changing_the_learning_rate_compiles_nothing(compiles: Any) -> None:
    s = Stepper(quadratic, (5.0, 2.0), argnums=(0, 1), lr=0.1, optimizer="adam")
    s.step()
    s.run(50)
    _ = s.params, s.history, s.trajectory
    before = [float(v) for v in s.params]
    compiles.reset()
    s.lr = 0.01
    assert s.message == "learning rate changed to 0.01; continuing from step 51"
    s.step()
    s.run(1000)
    s.run(7)
    _ = s.params, s.history
    s.reset()
    s.run(3)
    assert compiles.count == 0
    assert before != [float(v) for v in s.params]


def test_a_re_defined_identical_function_compiles_nothing(compiles: Any) -> None:
    source = "def cell_fn(x, y):\n    return jnp.sum(jnp.sin(x) ** 2) + (y - 2.0) ** 2\n"
    ns: dict[str, Any] = {"jnp": jnp}
    exec(source, ns)
    first = Stepper(ns["cell_fn"], (jnp.ones(3), 0.5), argnums=(0, 1), lr=0.1)
    first.step()
    first.run(100)
    _ = first.params
    compiles.reset()
    exec(source, ns)  # the cell runs again: a new function object, the same program
    second = Stepper(ns["cell_fn"], (jnp.ones(3), 0.5), argnums=(0, 1), lr=0.1)
    second.step()
    second.run(100)
    _ = second.params
    assert compiles.count == 0
    np.testing.assert_array_equal(np.asarray(second.params[0]), np.asarray(first.params[0]))


def test_each_step_uses_the_learning_rate_and_state_it_is_taken_with() -> None:
    # Each change between steps (rate, reset, optimizer) applies from the next step on.
    s = Stepper(lambda x: x**2, (5.0,), lr=0.1)
    assert float(s.params) == 5.0
    s.step()
    assert float(s.params) == 4.0  # 5 - 0.1 * 10
    s.lr = 0.25
    s.step()
    assert float(s.params) == 2.0  # 4 - 0.25 * 8
    s.run(1)
    assert float(s.params) == 1.0
    s.step()
    assert float(s.params) == 0.5
    s.reset()
    s.step()
    assert float(s.params) == 2.5 and s.steps == 1  # 5 - 0.25 * 10, from the start again
    s.optimizer = "momentum"
    s.step()  # fresh momentum state: the first step is plain sgd
    assert float(s.params) == 1.25
    assert list(s.history_steps) == [0, 1, 2] and list(s.history) == [25.0, 6.25, 1.5625]


def test_a_function_with_a_side_effect_runs_once_per_step(capfd: Any) -> None:
    def f(x: Any) -> Any:
        jax.debug.print("visited {x}", x=x)
        return x**2

    s = Stepper(f, (4.0,), lr=0.25)
    s.step()
    s.step()
    jax.effects_barrier()
    assert capfd.readouterr().out.split() == ["visited", "4.0", "visited", "2.0", "visited", "1.0"]


def _checked_on_the_host(kind: str, seen: list[float]) -> Any:
    """The identity, checked by host code that records each value and raises once it drops below 1."""

    def check(x: np.ndarray) -> np.ndarray:
        seen.append(float(x))
        if x < 1.0:
            raise ValueError("x went below 1")
        return np.asarray(x, dtype=x.dtype)

    @jax.custom_jvp
    def at_least_one(x: jax.Array) -> jax.Array:
        if kind == "pure_callback":
            return jax.pure_callback(check, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        jax.debug.callback(check, x)
        return x

    @at_least_one.defjvp
    def _jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
        return at_least_one(primals[0]), tangents[0]

    return at_least_one


@pytest.mark.parametrize("kind", ["pure_callback", "debug_callback"])
def test_host_code_runs_and_fails_only_for_the_steps_taken(kind: str, caplog: Any) -> None:
    # f(x) = x², so sgd multiplies x by 1 - 2 lr: 1.2 -> 1.08 at lr 0.05, then 0.972 would be below 1.
    seen: list[float] = []
    at_least_one = _checked_on_the_host(kind, seen)
    s = Stepper(lambda x: at_least_one(x) ** 2, (1.2,), lr=0.05, fn_name="f")
    assert s.step().steps == 1
    s.lr = 0.01  # x 0.98 per step: 1.0584 stays above 1
    assert s.step().steps == 1
    assert float(s.params) == pytest.approx(1.2 * 0.9 * 0.98, rel=1e-6)
    jax.effects_barrier()
    # One evaluation per state reached (the start and two steps); none for a step not taken.
    np.testing.assert_allclose(seen, [1.2, 1.08, 1.2 * 0.9 * 0.98], rtol=1e-6)
    assert not [r for r in caplog.records if "callback failed" in r.getMessage()]

    s.lr = 0.05  # the next step lands at 0.95256: its own error, reported on the step that takes it
    with pytest.raises(Exception, match="x went below 1"):
        s.step()
    assert s.steps == 2 and float(s.params) == pytest.approx(1.2 * 0.9 * 0.98, rel=1e-6)
    s.lr = 0.01
    assert s.step().steps == 1 and s.steps == 3
    assert float(s.params) == pytest.approx(1.2 * 0.9 * 0.98**2, rel=1e-6)


def test_nan_debugging_reports_only_the_steps_taken(capfd: Any) -> None:
    # f(x) = sqrt(x), lr 1: x <- x - 1 / (2 sqrt x), which is negative (sqrt is nan) at step 5.
    xs = [2.0]
    while xs[-1] > 0:
        xs.append(xs[-1] - 1.0 / (2.0 * np.sqrt(xs[-1])))
    bad = len(xs) - 1
    assert bad == 5
    with jax.debug_nans(True):
        s = Stepper(lambda x: jnp.sqrt(x), (2.0,), lr=1.0, fn_name="root")
        for _ in range(bad - 1):
            assert s.step().steps == 1
        assert "nan" not in capfd.readouterr().out.lower()  # nothing said about step 5 yet
        with pytest.raises(FloatingPointError):
            s.step()
    assert s.steps == bad - 1 and float(s.params) == pytest.approx(xs[bad - 1], rel=1e-5)


def test_the_magic_builds_the_stepper_lazily_and_a_re_run_compiles_nothing(ip: Any, compiles: Any) -> None:
    ip.run_cell("x = 5.0\ny = 2.0")
    cell = "def f(x, y):\n    return x**2 + (y - 1.0) ** 2\n"
    result = ip.cell("jgrad", "argnums=0,1 lr=0.1", cell)
    assert "stepper" not in vars(result)  # nothing built until asked
    s = result.stepper
    assert s.step().steps == 1 and (float(s.params[0]), float(s.params[1])) == (4.0, float(np.float32(1.8)))
    s.run(10)
    compiles.reset()
    again = ip.cell("jgrad", "argnums=0,1 lr=0.1", cell).stepper
    again.step()
    again.run(10)
    _ = again.params
    assert compiles.count == 0
    again.reset()
    again.step()
    assert again.apply() == {"x": 4.0, "y": pytest.approx(1.8)}
    assert ip.ns["x"] == 4.0 and isinstance(ip.ns["x"], float)


def test_should_stop_ends_a_run_early_and_progress_is_reported() -> None:
    s = Stepper(least_squares, (jnp.zeros(3),), lr=1e-3)
    seen: list[int] = []
    info = s.run(10**7, should_stop=lambda: len(seen) >= 2, on_progress=seen.append)
    assert info.stopped and not info.diverged and len(seen) == 2
    assert seen[0] < seen[1] == info.steps == s.steps < 10**7
    assert len(s.history) == s.steps + 1


def test_a_run_in_a_thread_stops_when_asked() -> None:
    s = Stepper(least_squares, (jnp.zeros(3),), lr=1e-3)
    stop, started = threading.Event(), threading.Event()
    out: list[RunInfo] = []

    def progress(done: int) -> None:
        started.set()

    thread = threading.Thread(target=lambda: out.append(s.run(10**9, should_stop=stop.is_set, on_progress=progress)))
    thread.start()
    assert started.wait(30)
    assert s.running
    with pytest.raises(JaxGradUsageError, match="already running"):
        s.run(1)
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and out[0].stopped and out[0].steps == s.steps and not s.running


def test_a_chunk_in_progress_holds_up_no_other_thread() -> None:
    armed, inside, resume = threading.Event(), threading.Event(), threading.Event()

    def host(x: np.ndarray) -> np.ndarray:
        if armed.is_set() and not inside.is_set():  # the first evaluation once armed waits here
            inside.set()
            resume.wait(60)
        return np.asarray(x)

    @jax.custom_jvp
    def through_host(x: jax.Array) -> jax.Array:
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    through_host.defjvp(lambda p, t: (through_host(p[0]), t[0]))
    s = Stepper(lambda x: through_host(x) ** 2, (1.0,), lr=0.1)
    armed.set()
    out: list[RunInfo] = []
    thread = threading.Thread(target=lambda: out.append(s.run(100)))
    thread.start()
    try:
        assert inside.wait(60)  # the run's first chunk is computing, held in host code
        # None of this waits for the chunk; the optimizer change makes the run drop it.
        s.lr = 0.05
        s.optimizer = "momentum"
        assert s.steps == 0 and float(s.params) == 1.0 and list(s.history) == [1.0]
    finally:
        resume.set()
        thread.join(60)
    assert out and out[0].steps == 100 and not out[0].diverged and s.steps == 100
    path, losses = descend_by_hand(lambda x: x**2, jnp.float32(1.0), optax.sgd(0.05, momentum=0.9), 100)
    assert float(s.params) == pytest.approx(float(path[-1]), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(s.history, losses, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Stepper(quadratic, (5.0, 2.0), argnums=(0, 1), optimizer="adamm"), "Did you mean 'adam'"),
        (lambda: Stepper(quadratic, (5, 2.0), argnums=(0, 1)), r"floats \(`5.0`, not `5`\)"),
        (lambda: Stepper(quadratic, (5.0, 2.0), argnums=2), "positions 0 to 1"),
        (lambda: Stepper(quadratic, (5.0, 2.0), lr=-1.0), "positive number"),
        (lambda: Stepper(lambda x: x * 2.0, (jnp.ones(3),), fn_name="g"), "returns shape"),
        (lambda: Stepper(quadratic, (5.0, 2.0), optimizer=42), "is not an optimizer"),
        (lambda: Stepper(quadratic, (5.0, 2.0)).run(-1), "0 or more"),
        (lambda: Stepper(lambda x: x if x > 0 else -x, (1.0,)), r"jnp.where"),
        (lambda: Stepper(quadratic, (5.0, 2.0), has_aux=True), r"pair `\(loss, aux\)`"),
    ],
)
def test_bad_input_says_what_to_do(make: Any, match: str) -> None:
    with pytest.raises(JaxGradUsageError, match=match):
        make()
