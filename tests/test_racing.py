"""The optimizer race: every member against an independent Stepper, the best rate in closed form, errors.

Expected values come from elsewhere: a :class:`Stepper` per (optimizer, rate), built on its
own, and for the best rate the convergence theory of gradient descent on a quadratic.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import close, run_without_notebook

import jaxgrad_magic
from jaxgrad_magic import Stepper
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.racing import CHUNK, DEFAULT_LRS, GRID_SIZE, RaceResult, default_grid, race


def rosenbrock(x: Any, y: Any) -> Any:
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def tree_loss(p: dict[str, Any], w: Any) -> Any:
    return jnp.sum((p["a"] - w) ** 2) + jnp.sum(jnp.cos(p["b"]))


TREE = {"a": jnp.ones(3), "b": jnp.array([[0.5, 1.0], [2.0, 3.0]])}
W = np.arange(3.0, dtype=np.float32)


def assert_matches_stepper(result: RaceResult, fn: Any, point: tuple[Any, ...], argnums: Any, **stepper: Any) -> None:
    """Every member of ``result`` equals a Stepper run at its optimizer and rate, to float tolerance."""
    for (label, lr), run in result.runs.items():
        opt = stepper.get("optimizers", {}).get(label, label)
        s = Stepper(fn, point, argnums=argnums, lr=lr, optimizer=opt)
        s.run(result.steps)
        assert run.diverged_at == s.diverged_at, (label, lr)
        assert len(run.losses) == len(s.history), (label, lr)
        close(run.losses, s.history, 1e-5)
        if s.trajectory is not None:
            close(run.path, s.trajectory, 1e-5)
        best = result.best[label]
        if best.lr == lr and not run.diverged:
            leaves = jax.tree_util.tree_leaves(best.params)
            for got, want in zip(leaves, jax.tree_util.tree_leaves(s.params), strict=True):
                close(got, want, 1e-5)


def test_every_member_equals_an_independent_stepper_run() -> None:
    # The default grids reach rates at which sgd and momentum diverge on Rosenbrock: those members
    # stop where a stepper at that rate stops.
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), steps=300)
    assert r.optimizers == ("sgd", "momentum", "adam")
    assert len(r.runs) == 3 * GRID_SIZE
    assert any(run.diverged for run in r.runs.values())
    assert not all(run.diverged for run in r.runs.values())
    assert_matches_stepper(r, rosenbrock, (-1.0, 1.0), (0, 1))


def test_pytrees_extra_arguments_and_factories_match_the_stepper() -> None:
    def heavy_ball(lr: Any) -> optax.GradientTransformation:
        return optax.sgd(lr, momentum=0.5)

    r = race(tree_loss, (TREE, W), optimizers=("nesterov", optax.adam, heavy_ball), lrs=[0.01, 0.3, 1.5], steps=120)
    assert r.optimizers == ("nesterov", "adam", "heavy_ball")
    assert r.projected  # 7 parameters: a projected path
    assert_matches_stepper(r, tree_loss, (TREE, W), 0, optimizers={"adam": optax.adam, "heavy_ball": heavy_ball})
    assert set(r.best["adam"].params) == {"a", "b"}
    for run in r.runs.values():
        assert run.path.shape == (len(run.losses), 2)
        close(run.path[0], [0.0, 0.0], 0.0)  # the displacement from the start


def test_the_projection_is_fixed_and_orthonormal() -> None:
    # Projected on orthonormal directions, a displacement is never longer than it is.
    r1 = race(tree_loss, (TREE, W), optimizers="sgd", lrs=[0.1], steps=40)
    r2 = race(tree_loss, (TREE, W), optimizers="sgd", lrs=[0.1], steps=40)
    run = r1.runs["sgd", 0.1]
    np.testing.assert_array_equal(run.path, r2.runs["sgd", 0.1].path)
    start = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(TREE)])
    end = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(r1.best["sgd"].params)])
    assert 0 < np.linalg.norm(run.path[-1]) <= np.linalg.norm(end - start) * (1 + 1e-5)


def test_the_best_sgd_rate_on_a_quadratic_is_the_one_theory_predicts() -> None:
    # f(x) = ½ xᵀ diag(a) x: gradient descent contracts by max|1 - lr·aᵢ| per step, least at
    # lr* = 2 / (min a + max a). The grid puts lr* among rates whose contraction is clearly worse
    # (0.85 lr* contracts by 0.845 against lr*'s 0.818), so after 100 steps lr* is best by far.
    a = np.array([1.0, 2.5, 6.0, 10.0], dtype=np.float32)

    def quadratic(x: Any) -> Any:
        return 0.5 * jnp.sum(jnp.asarray(a) * x**2)

    lr_star = 2.0 / (a.min() + a.max())
    grid = [float(lr_star * k) for k in (0.25, 0.5, 0.7, 0.85, 1.0, 1.05, 1.15, 1.3)]
    r = race(quadratic, jnp.ones(4), optimizers="sgd", lrs=grid, steps=100)
    best = r.best["sgd"]
    assert best.lr == grid[4]
    assert r.winner == best
    # The loss is a sum of (1 - lr aᵢ)^(2t) terms: the best one's final loss in closed form.
    want = 0.5 * np.sum(a * (1.0 - grid[4] * a) ** 200)
    close(best.loss, want, rtol=1e-3)
    # Rates past 2 / max a diverge (a member that overflowed stops there).
    assert r.runs["sgd", grid[-1]].final_loss > r.runs["sgd", grid[0]].losses[0]


def test_settled_at_is_the_first_step_within_one_percent_of_the_final_loss() -> None:
    r = race(lambda x: (x - 3.0) ** 2 + 1.0, 0.0, optimizers="sgd", lrs=[0.1], steps=200)
    best = r.best["sgd"]
    losses = r.runs["sgd", 0.1].losses
    assert abs(losses[best.settled_at] - losses[-1]) <= 0.01 * losses[-1]
    assert abs(losses[best.settled_at - 1] - losses[-1]) > 0.01 * losses[-1]
    # (x - 3)² = 9 · 0.64^t over the floor 1: within 0.01 of it once t >= ln 900 / ln(1 / 0.64) = 15.2.
    assert best.settled_at == 16


def test_winner_is_the_lowest_best_and_diverged_members_do_not_touch_the_others() -> None:
    good, bad = 1e-3, 0.02  # sgd on Rosenbrock from (-1, 1): 0.02 overflows within a few steps
    both = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=[good, bad], steps=200)
    alone = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=[good], steps=200)
    assert both.runs["sgd", bad].diverged and both.runs["sgd", bad].diverged_at < 20
    np.testing.assert_array_equal(both.runs["sgd", good].losses, alone.runs["sgd", good].losses)
    assert both.best["sgd"].lr == good
    assert both.winner is not None
    assert both.winner.loss == min(b.loss for b in both.best.values())
    assert "1 of 4 diverged" in both.summary and "\n" not in both.summary


def test_when_every_rate_diverges_the_best_says_so_and_there_is_no_winner() -> None:
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers="sgd", lrs=[0.05, 0.1], steps=50)
    best = r.best["sgd"]
    assert best.diverged_at is not None and best.params is None
    assert r.winner is None
    assert "every run diverged" in r.summary


def test_rerunning_with_other_rates_or_steps_compiles_nothing(compiles: Any) -> None:
    race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), steps=500)
    compiles.reset()
    r = race(
        rosenbrock,
        (-1.0, 1.0),
        argnums=(0, 1),
        optimizers=("sgd", "adam"),
        lrs=[np.geomspace(1e-5, 1e-3, 8), np.geomspace(1e-3, 1e-1, 8)],
        steps=300,
    )
    assert compiles.count == 0
    assert r.lrs["adam"][0] == pytest.approx(1e-3)
    # A re-defined identical function (a re-run cell) is the same program.
    cell = "def bowl(x, y):\n    return x**2 + 3.0 * (y - 1.0) ** 2\n"
    notebook: dict[str, Any] = {}
    exec(cell, notebook)
    bowl = notebook["bowl"]
    race(bowl, (0.5, 0.5), argnums=(0, 1), optimizers="sgd", steps=100)
    compiles.reset()
    exec(cell, notebook)
    assert notebook["bowl"] is not bowl
    # Steps share a compile within a power of two (here 65 to 128: the history buffer's length).
    lrs = np.geomspace(1e-3, 0.3, 8)
    race(notebook["bowl"], (2.0, -1.0), argnums=(0, 1), optimizers="sgd", lrs=lrs, steps=120)
    assert compiles.count == 0


def test_a_race_longer_than_one_chunk_matches_the_stepper() -> None:
    steps = CHUNK + 100
    r = race(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(2), optimizers="momentum", lrs=[1e-4], steps=steps)
    run = r.runs["momentum", 1e-4]
    s = Stepper(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(2), lr=1e-4, optimizer="momentum")
    s.run(steps)
    assert len(run.losses) == steps + 1
    close(run.losses, s.history, 1e-5)
    close(run.path, s.trajectory, 1e-5)


def test_aux_functions_race_on_their_loss() -> None:
    def with_aux(x: Any) -> Any:
        return jnp.sum(x**2), {"norm": jnp.linalg.norm(x)}

    r = race(with_aux, jnp.array([1.0, -2.0, 3.0]), optimizers="adam", lrs=[0.1], steps=50, has_aux=True)
    s = Stepper(with_aux, jnp.array([1.0, -2.0, 3.0]), lr=0.1, optimizer="adam", has_aux=True)
    s.run(50)
    close(r.runs["adam", 0.1].losses, s.history, 1e-5)


def test_the_default_grid_is_eight_log_spaced_rates_around_the_usual_one() -> None:
    for name in ("sgd", "adam", "lion"):
        grid = np.array(default_grid(name))
        assert len(grid) == GRID_SIZE
        ratios = grid[1:] / grid[:-1]
        close(ratios, np.full(GRID_SIZE - 1, 10**0.5), 0.01)
        assert DEFAULT_LRS[name] in grid and grid[0] < DEFAULT_LRS[name] < grid[-1]
    assert default_grid(optax.adam) == default_grid("adam")  # a factory by its name
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("adam",), steps=5)
    assert r.lrs["adam"] == default_grid("adam")


def test_one_rate_or_one_grid_for_every_optimizer() -> None:
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=1e-3, steps=5)
    assert r.lrs == {"sgd": (1e-3,), "adam": (1e-3,)}
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=(1e-3, 1e-2), steps=5)
    assert r.lrs == {"sgd": (1e-3, 1e-2), "adam": (1e-3, 1e-2)}
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers=("sgd", "adam"), lrs=[[1e-3], [1e-2, 0.1]], steps=5)
    assert r.lrs == {"sgd": (1e-3,), "adam": (1e-2, 0.1)}


def test_race_is_exported_and_the_result_reads_in_one_line() -> None:
    assert jaxgrad_magic.race is race
    r = race(rosenbrock, (-1.0, 1.0), argnums=(0, 1), optimizers="adam", lrs=[0.01], steps=20)
    assert repr(r).startswith("RaceResult(race on rosenbrock, 1 optimizer × 1 rates, 20 steps: adam wins at lr 0.01")
    assert "\n" not in repr(r) and "\n" not in repr(r.best["adam"])


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (dict(optimizers=()), "at least one optimizer"),
        (dict(optimizers=[]), "at least one optimizer"),
        (dict(optimizers=("sgd", "adamm")), "Did you mean 'adam'?"),
        (dict(optimizers=(optax.adam(1e-3),)), "carries its own fixed rate"),
        (dict(optimizers=("adam", "ADAM")), "twice"),
        (dict(optimizers=("sgd", "adam"), lrs=[[0.1], [0.1], [0.1]]), "3 lists of learning rates for 2 optimizers"),
        (dict(optimizers=("sgd", "adam"), lrs=[0.1, [0.1]]), "mixes rates and lists"),
        (dict(optimizers=("sgd",), lrs=[[[0.1]]]), "nest one deep"),
        (dict(optimizers=("sgd", "adam"), lrs=[[0.1], []]), "empty list of learning rates for adam"),
        (dict(lrs=[]), "no learning rates"),
        (dict(lrs={"sgd": [0.1]}), "lrs=None"),
        (dict(lrs=[0.1, -0.1]), "positive number"),
        (dict(lrs=[0.0]), "positive number"),
        (dict(lrs=[float("nan")]), "positive number"),
        (dict(lrs=[1e-300]), "is 0 in float32"),
        (dict(lrs=[0.1, 0.1]), "twice"),
        (dict(steps=0), "steps to be a whole number"),
        (dict(steps=-5), "steps to be a whole number"),
        (dict(steps=2.5), "steps to be a whole number"),
        (dict(steps=True), "steps to be a whole number"),
        (dict(steps=10**7), "steps to be a whole number"),
        (dict(argnums=3), "argnums=3 does not pick arguments"),
    ],
)
def test_bad_input_is_one_paragraph_saying_what_to_do(call: dict[str, Any], says: str) -> None:
    with pytest.raises(JaxGradUsageError) as caught:
        race(rosenbrock, (-1.0, 1.0), **{"argnums": (0, 1), **call})
    message = str(caught.value)
    assert says in message
    assert "\n" not in message
    assert any(word in message for word in ("Pass", "Use", "Give", "Leave", "pass", "use", "give"))


def test_a_function_that_cannot_be_raced_is_told_so() -> None:
    with pytest.raises(JaxGradUsageError, match="not finite at the starting point"):
        race(lambda x: jnp.log(x), 0.0, optimizers="sgd", lrs=[0.1], steps=5)
    with pytest.raises(JaxGradUsageError, match="real scalar loss"):
        race(lambda x: x * 2.0, jnp.ones(3), optimizers="sgd", lrs=[0.1], steps=5)
    with pytest.raises(JaxGradUsageError, match="needs a function"):
        race(3.0, 1.0)  # type: ignore[arg-type]


SCRIPT = r"""
import jaxgrad_magic

def bowl(x, y):
    return x ** 2 + (y - 1) ** 2

r = jaxgrad_magic.race(bowl, (5.0, 2.0), argnums=(0, 1), optimizers=("sgd", "adam"), steps=100)
png = r.png  # drawn with matplotlib and Pillow, no IPython
report(winner=r.winner.optimizer, png=png[:8] == b"\x89PNG\r\n\x1a\n")
"""


def test_the_race_and_its_picture_need_neither_ipython_nor_widgets() -> None:
    out = run_without_notebook(SCRIPT)
    assert out["loaded"] == []
    assert out["winner"] in ("sgd", "adam")
    assert out["png"]


def test_an_equinox_module_races_like_its_stepper_and_comes_back_a_module() -> None:
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(2, 1, 8, 2, key=jax.random.key(0))  # its activation is a non-array leaf
    x = jax.random.normal(jax.random.key(1), (32, 2))
    y = jnp.sum(x**2, axis=1, keepdims=True)

    def loss(m: Any, x: Any, y: Any) -> Any:
        return jnp.mean((jax.vmap(m)(x) - y) ** 2)

    r = race(loss, (model, x, y), optimizers=("sgd", "adam"), lrs=[1e-2, 3e-2], steps=40)
    for name in ("sgd", "adam"):
        for lr in (1e-2, 3e-2):
            s = Stepper(loss, (model, x, y), argnums=0, lr=lr, optimizer=name)
            s.run(40)
            close(r.runs[(name, lr)].losses[-1], s.loss, rtol=1e-5)
    best = r.best[r.winner.optimizer]
    assert type(best.params) is type(model)
    close(float(loss(best.params, x, y)), best.loss, rtol=1e-5)
