"""The compiled descent programs on their own: steps, reports, chunks, the replay.

Expected values are closed forms: sgd on ``½‖x - t‖²`` moves ``x - t`` by ``1 - lr`` per step,
and sgd on ``x²`` multiplies ``x`` by ``1 - 2 lr``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad_magic.descent import (
    CHUNK,
    Descent,
    Every,
    Programs,
    Report,
    StepperState,
    advance,
    evaluator,
    guard,
    init,
    lr_dtype,
    path_width,
    replay,
    run_chunk,
    stats,
)
from jaxgrad_magic.errors import JaxGradUsageError

TARGET = jnp.array([1.0, -2.0, 0.5])
LR = jnp.float32(0.25)


def bowl(params: Any, dynamic: Any) -> Any:
    (target,) = dynamic
    return 0.5 * jnp.sum((params - target) ** 2)


def square(params: Any, dynamic: Any) -> Any:
    return params**2


SGD = Descent(evaluator(bowl, False), optax.sgd)


def test_init_and_advance_are_sgd_by_hand() -> None:
    x0 = jnp.zeros(3)
    state = init(SGD, x0, (TARGET,), LR)
    assert isinstance(state, StepperState) and state.aux is None
    np.testing.assert_allclose(state.grad, -TARGET)  # x - t
    assert float(state.loss) == pytest.approx(0.5 * float(jnp.sum(TARGET**2)))
    for k in range(1, 4):
        state = jax.jit(functools.partial(advance, SGD))(state, (TARGET,), LR)
        want = TARGET - 0.75**k * TARGET  # x_k - t = (1 - lr)^k (x_0 - t)
        np.testing.assert_allclose(state.params, want, rtol=1e-6)
        np.testing.assert_allclose(state.grad, want - TARGET, rtol=1e-6)
        assert not state.loss.weak_type


def test_aux_rides_along_and_stays_strongly_typed() -> None:
    def with_aux(params: Any, dynamic: Any) -> tuple[Any, Any]:
        return bowl(params, dynamic), {"mean": jnp.mean(params), "tag": 2.0}

    d = Descent(evaluator(with_aux, True), optax.sgd)
    state = advance(d, init(d, jnp.zeros(3), (TARGET,), LR), (TARGET,), LR)
    assert float(state.aux["mean"]) == pytest.approx(float(jnp.mean(0.25 * TARGET)))
    assert state.aux["tag"].dtype == jnp.float32 and not state.aux["tag"].weak_type


def test_stats_are_loss_norm_finite_then_the_path() -> None:
    two = (jnp.float32(3.0), jnp.float32(4.0))
    state = StepperState(two, None, two, jnp.float32(12.5), None)
    np.testing.assert_allclose(stats(state), [12.5, 5.0, 1.0, 3.0, 4.0])  # ‖(3, 4)‖ = 5
    three = jnp.array([1.0, 2.0, 2.0])
    np.testing.assert_allclose(stats(StepperState(three, None, three, jnp.float32(1.0), None)), [1.0, 3.0, 1.0])
    for bad in (jnp.array([1.0, jnp.nan, 2.0]), jnp.array([jnp.inf, 0.0, 0.0])):
        assert not Report.read(stats(StepperState(bad, None, three, jnp.float32(1.0), None))).finite
        assert not Report.read(stats(StepperState(three, None, bad, jnp.float32(1.0), None))).finite
    assert not Report.read(stats(StepperState(three, None, three, jnp.float32(jnp.inf), None))).finite
    half = jnp.ones(2, jnp.bfloat16)
    assert stats(StepperState(half, None, half, jnp.bfloat16(1.0), None)).dtype == jnp.float32


def test_a_report_reads_the_stats_by_name() -> None:
    two = (jnp.float32(3.0), jnp.float32(4.0))
    report = Report.read(stats(StepperState(two, None, two, jnp.float32(12.5), None)))
    assert (report.loss, report.grad_norm, report.finite) == (12.5, 5.0, True)
    assert type(report.loss) is float and type(report.finite) is bool
    assert report.point == [3.0, 4.0]
    three = jnp.ones(3)
    assert Report.read(stats(StepperState(three, None, three, jnp.float32(1.0), None))).point == []  # no path


def test_the_gradient_norm_of_a_huge_finite_gradient_is_finite() -> None:
    def report(params: Any, grad: Any) -> list[Any]:
        """[gradient norm, whether everything is finite]."""
        read = Report.read(stats(StepperState(jnp.asarray(params), None, jnp.asarray(grad), jnp.float32(1.0), None)))
        return [read.grad_norm, read.finite]

    # ‖(3e19, 4e19)‖ = 5e19, though each square is past float32's largest number (3.4e38).
    norm, ok = report([0.0, 0.0], [3e19, 4e19])
    assert norm == pytest.approx(5e19, rel=1e-6) and ok is True
    assert report([0.0, 0.0], [0.0, 0.0]) == [0.0, True]
    # A real inf or NaN is still caught, and the norm says which: inf for inf, NaN for NaN.
    assert report([0.0, 0.0], [3e19, jnp.inf]) == [np.inf, False]
    norm, ok = report([0.0, 0.0], [3e19, jnp.nan])
    assert np.isnan(norm) and ok is False
    # Parameters that left the finite are caught without spoiling the gradient's norm: ‖(3, 4)‖ = 5.
    assert report([1.0, jnp.inf], [3.0, 4.0]) == [5.0, False]


def test_the_path_is_kept_for_at_most_two_float_entries() -> None:
    assert path_width(jnp.float32(1.0)) == 1
    assert path_width(jnp.ones(2)) == 2
    assert path_width({"w": jnp.float32(1.0), "b": jnp.float32(0.0)}) == 2
    assert path_width(jnp.ones(3)) is None
    assert path_width((jnp.ones(2), jnp.float32(1.0))) is None


def test_a_chunk_writes_n_losses_like_n_steps() -> None:
    d = Descent(evaluator(square, False), optax.sgd)
    state = init(d, jnp.float32(1.0), (), LR)
    last, losses, path, snaps = jax.jit(functools.partial(run_chunk, d))(state, (), LR, jnp.int32(5))
    assert snaps is None  # one number: the whole path is kept, no snapshots
    xs = 0.5 ** np.arange(1, 6)  # x <- (1 - 2 * 0.25) x
    assert losses.shape == (CHUNK,) and path.shape == (CHUNK, 1)
    np.testing.assert_allclose(losses[:5], xs**2, rtol=1e-6)
    np.testing.assert_allclose(path[:5, 0], xs, rtol=1e-6)
    assert not np.asarray(losses[5:]).any()
    assert float(last.params) == pytest.approx(xs[-1])


def test_the_replay_stops_before_the_first_non_finite_state() -> None:
    # lr 1.5 on x²: x <- -2x, so x_k = (-2)^k; x² = 4^k overflows float32 first at k = 64.
    d = Descent(evaluator(square, False), optax.sgd)
    lr = jnp.float32(1.5)
    state = init(d, jnp.float32(1.0), (), lr)
    last, losses, _, _, done, bad = jax.jit(functools.partial(replay, d))(state, (), lr, jnp.int32(100))
    assert int(done) == 63 and float(last.params) == (-2.0) ** 63
    np.testing.assert_array_equal(losses[:63], 4.0 ** np.arange(1, 64))
    bad = Report.read(bad)
    assert np.isinf(bad.loss) and not bad.finite
    last, _, _, _, done, _ = replay(d, state, (), lr, jnp.int32(10))  # all finite: it takes them all
    assert int(done) == 10 and float(last.params) == 1024.0


def test_programs_start_step_and_run_and_hand_back_the_state_as_it_is() -> None:
    p = Programs(bowl, optax.sgd, False, jnp.zeros(3), (TARGET,), "bowl")
    assert p.path_width is None
    lr = jax.device_put(np.float32(0.25))
    carry, first = p.start(jnp.zeros(3), (TARGET,), lr)
    carry, after = p.step(carry, (TARGET,), lr)
    assert all(isinstance(x, jax.Array) for x in carry)  # a flat list of arrays crosses the boundary
    state = p.unpack(carry)
    assert isinstance(state, StepperState)  # the parameters are read as the step left them
    assert state.loss is None and p.loss_dtype == jnp.float32  # the loss travels in the report
    np.testing.assert_allclose(state.params, 0.25 * TARGET, rtol=1e-6)
    assert p.params(carry) is carry[0] and p.pack(state) == carry
    carry, losses, _, _, last = p.run(carry, float(after[0]), (TARGET,), lr, np.int32(2), Every.at(1, 1, 2))
    np.testing.assert_allclose(p.params(carry), TARGET - 0.75**3 * TARGET, rtol=1e-6)
    assert float(first[0]) > float(after[0]) > float(losses[0]) > float(losses[1]) == pytest.approx(float(last[0]))


def test_a_chunk_writes_the_snapshots_of_its_due_steps() -> None:
    p = Programs(bowl, optax.sgd, False, jnp.zeros(3), (TARGET,), "bowl")
    assert p.snapshot_slots is not None and p.snapshot_slots >= 2
    lr = jax.device_put(np.float32(0.25))
    carry, first = p.start(jnp.zeros(3), (TARGET,), lr)
    # As from step 3 with every 2: steps 4 and 6 are due (1 and 3 steps in), in rows 0 and 1;
    # from x = 0 the k-th step reaches (1 - 0.75^k) TARGET.
    carry, _, _, snaps, _ = p.run(carry, float(first[0]), (TARGET,), lr, np.int32(4), Every.at(3, 2, 4))
    snaps = p.snapshot_rows.of(snaps)
    assert snaps.shape == (p.snapshot_slots + 1, 3)
    np.testing.assert_allclose(snaps[0], (1 - 0.75) * TARGET, rtol=1e-6)
    np.testing.assert_allclose(snaps[1], (1 - 0.75**3) * TARGET, rtol=1e-6)


@pytest.mark.parametrize(
    ("step", "every", "n"), [(0, 1, 5), (3, 2, 4), (5, 4, 3), (7, 4, 9), (6, 3, 6), (0, 8, 8), (1, 8, 3)]
)
def test_a_run_and_its_replay_write_the_due_steps_snapshots(step: int, every: int, n: int) -> None:
    p = Programs(bowl, optax.sgd, False, jnp.zeros(3), (TARGET,), "bowl")
    lr = jax.device_put(np.float32(0.25))
    carry, first = p.start(-TARGET, (TARGET,), lr)
    due = [k for k in range(step + 1, step + n + 1) if k % every == 0]  # the steps counted from `step`
    assert int(Every.at(step, every, n).due) == len(due)
    for program in (p.run, p.guarded):
        out = program(carry, float(first[0]), (TARGET,), lr, np.int32(n), Every.at(step, every, n))
        losses, snaps = np.asarray(out[1]), np.asarray(p.snapshot_rows.of(out[3]))
        # From -TARGET the k-th step of this chunk reaches (1 - 2 * 0.75^k) TARGET: due step s is k = s - step.
        for row, s in enumerate(due):
            np.testing.assert_allclose(snaps[row], (1 - 2 * 0.75 ** (s - step)) * TARGET, rtol=1e-6)
        assert not snaps[len(due) : -1].any()  # rows past the due ones stay empty
        np.testing.assert_allclose(losses[:n], 2 * 0.75 ** (2 * np.arange(1, n + 1)) * np.sum(TARGET**2), rtol=1e-5)
        assert not losses[n:].any()


def test_the_learning_rate_travels_in_float32_or_the_parameters_wider_dtype() -> None:
    assert lr_dtype(jnp.zeros(3, jnp.bfloat16)) == jnp.float32
    assert lr_dtype({"a": jnp.zeros(3), "b": jnp.zeros(2, jnp.float16)}) == jnp.float32
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        assert lr_dtype({"a": jnp.zeros(3), "b": jnp.zeros(2, jnp.float64)}) == jnp.float64
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_misuse_becomes_a_teaching_error_and_the_users_own_error_passes_through() -> None:
    def branchy(params: Any, dynamic: Any) -> Any:
        return params if params > 0 else -params

    with pytest.raises(JaxGradUsageError, match=r"jnp\.where"):
        Programs(branchy, optax.sgd, False, jnp.float32(1.0), (), "branchy")

    def broken(params: Any, dynamic: Any) -> Any:
        raise KeyError("the user's own bug")

    with pytest.raises(KeyError, match="own bug"):
        guard(lambda: jax.eval_shape(broken, jax.ShapeDtypeStruct((), jnp.float32), ()), "broken", False)
