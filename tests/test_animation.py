"""Stepper.animate: a GIF of a real descent, read back with Pillow.

Real steppers on real JAX functions; the GIF is decoded by Pillow and its pixels checked against
positions computed here from the plot area's fractions (``plots.AXES_BOX``) and the stepper's
own trajectory, not through the plots' pixel maps.
"""

from __future__ import annotations

import io
import itertools
import threading
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_without_notebook
from PIL import Image, ImageColor, ImageSequence

from jaxgrad_magic import Stepper, animation, plots
from jaxgrad_magic.errors import JaxGradUsageError

RED = ImageColor.getrgb(plots.PATH_COLOR)  # the path and the current point
BLUE = ImageColor.getrgb(plots.LOSS_COLOR)  # the loss line
WHITE = (255, 255, 255)  # the start point's dot (ringed in red)


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1.0) ** 2


def parabola(x: Any) -> Any:
    return (x - 1.0) ** 2


def five(v: Any) -> Any:
    return jnp.sum((v - jnp.arange(5.0)) ** 2)


def read_gif(source: Path | bytes) -> tuple[list[np.ndarray], list[int]]:
    """Every frame as RGB pixels, and every frame's duration in milliseconds."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        assert image.format == "GIF"
        frames, durations = [], []
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("RGB")))
            durations.append(int(frame.info["duration"]))
    return frames, durations


def count(pixels: np.ndarray, colour: tuple[int, ...]) -> int:
    return int((pixels == np.asarray(colour, dtype=np.uint8)).all(axis=-1).sum())


def columns(pixels: np.ndarray, colour: tuple[int, ...]) -> np.ndarray:
    """The columns that hold a pixel of ``colour``."""
    return np.flatnonzero((pixels == np.asarray(colour, dtype=np.uint8)).all(axis=-1).any(axis=0))


def projection(box: plots.Box) -> tuple[Any, Any]:
    """Pixel column and row of a data point in a picture whose axes show ``box``.

    From the plot area's place in the figure (fractions of WIDTH and HEIGHT), rows counted down.
    """
    left, bottom, right, top = plots.AXES_BOX
    w, h = plots.WIDTH, plots.HEIGHT

    def column(x: float) -> int:
        return int(np.floor(w * (left + (right - left) * (x - box.lo[0]) / (box.hi[0] - box.lo[0]))))

    def row(y: float) -> int:
        return int(np.floor(h - h * (bottom + (top - bottom) * (y - box.lo[1]) / (box.hi[1] - box.lo[1]))))

    return column, row


def around(pixels: np.ndarray, col: int, row: int, reach: int = 1) -> np.ndarray:
    """The pixels within ``reach`` of ``(col, row)``, as a list of colours."""
    return pixels[row - reach : row + reach + 1, col - reach : col + reach + 1].reshape(-1, 3)


def all_of(colours: np.ndarray, colour: tuple[int, ...]) -> bool:
    return bool((colours == np.asarray(colour, dtype=np.uint8)).all())


# --------------------------------------------------------------------------- the three pictures


def test_two_parameters_draw_the_contour_with_the_path_growing(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.02)
    s.run(40)
    target = tmp_path / "descent.gif"
    made = s.animate(target, frames=12)
    assert made.path == target and made.kind == "contour" and made.frames == 12
    assert made.size == target.stat().st_size
    assert made.steps[0] == 0 and made.steps[-1] == 40 and list(made.steps) == sorted(set(made.steps))

    frames, durations = read_gif(target)
    assert len(frames) == 12
    assert all(f.shape == (plots.HEIGHT, plots.WIDTH, 3) for f in frames)
    assert durations == [animation.FRAME_MS] * 11 + [animation.HOLD_MS]
    assert all((a != b).any() for a, b in itertools.pairwise(frames))
    # The path grows: more of it is drawn in every frame.
    reds = [count(f, RED) for f in frames]
    assert all(b > a for a, b in itertools.pairwise(reds)), reds

    trajectory = np.asarray(s.trajectory, dtype=np.float64)
    start, current = trajectory[0], trajectory[-1]
    # The box the panel grows to hold the path: the start's box, grown around the path drawn.
    column, row = projection(plots.box_around(plots.start_box(start), trajectory))
    # First frame: the current point is the start, a red dot there.
    assert all_of(around(frames[0], column(start[0]), row(start[1])), RED)
    assert not all_of(around(frames[0], column(current[0]), row(current[1])), RED)
    # Last frame: the start is a white dot ringed in red; the current point a red dot.
    assert all_of(around(frames[-1], column(start[0]), row(start[1])), WHITE)
    assert all_of(around(frames[-1], column(current[0]), row(current[1])), RED)


def test_one_parameter_draws_the_curve_with_the_point_moving(tmp_path: Path) -> None:
    s = Stepper(parabola, (3.0,), lr=0.05)
    s.run(30)
    made = s.animate(str(tmp_path / "curve.gif"), frames=8)
    assert made.kind == "curve" and made.frames == 8 and made.path == tmp_path / "curve.gif"
    frames, _ = read_gif(tmp_path / "curve.gif")
    assert len(frames) == 8
    # The red dot is the current point (the visited points are lighter): it moves left, toward
    # the minimum at 1, and sits over the point of each frame's step.
    trajectory = np.asarray(s.trajectory, dtype=np.float64)[:, 0]
    box = plots.box_around(plots.start_box(trajectory[:1]), trajectory[:, None])
    column, _ = projection(plots.Box((box.lo[0], 0.0), (box.hi[0], 1.0)))
    centres = [float(columns(f, RED).mean()) for f in frames]
    assert all(b < a for a, b in itertools.pairwise(centres)), centres
    for centre, step in zip(centres, made.steps, strict=True):
        assert abs(centre - column(trajectory[step])) <= 1.0, (step, centre)


def test_more_parameters_draw_the_loss_curve_growing(tmp_path: Path) -> None:
    s = Stepper(five, (jnp.zeros(5),), lr=0.01)
    s.run(200)
    made = s.animate(tmp_path / "loss.gif", frames=10)
    assert made.kind == "loss" and made.frames == 10
    frames, _ = read_gif(tmp_path / "loss.gif")
    assert len(frames) == 10
    assert all((a != b).any() for a, b in itertools.pairwise(frames))
    left, _, right, _ = plots.AXES_BOX
    # Step 0 alone: the loss dot at the left edge of the plot area. Step 200 last: the step axis
    # ends at 200, so the line spans the plot area and its dot sits at the right edge.
    first, last = columns(frames[0], BLUE), columns(frames[-1], BLUE)
    assert abs(first.mean() - left * plots.WIDTH) <= 2.0
    assert last.min() <= left * plots.WIDTH + 2 and abs(last.max() - right * plots.WIDTH) <= 4.0
    assert count(frames[-1], BLUE) > 5 * count(frames[0], BLUE)


def test_a_diverged_run_is_marked_on_its_last_frame_only(tmp_path: Path) -> None:
    s = Stepper(five, (jnp.zeros(5),), lr=1.5)  # each step doubles the distance to the minimum
    s.run(1000)
    assert s.diverged
    frames, _ = read_gif(s.animate(tmp_path / "diverged.gif", frames=10).path)
    # The dashed line at the divergence is the only red in a loss curve.
    assert [count(f, RED) > 0 for f in frames] == [False] * 9 + [True]


def test_an_f_that_cannot_be_drawn_on_a_grid_gets_the_loss_curve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(10)

    def refuse(*_: Any) -> None:
        raise NotImplementedError("no batching rule")  # as for a function jax.vmap cannot batch

    monkeypatch.setattr(animation.Landscape, "grid", refuse)
    made = s.animate(tmp_path / "loss.gif", frames=4)
    assert made.kind == "loss" and len(read_gif(made.path)[0]) == 4


# --------------------------------------------------------------------------- bounds


def test_a_short_descent_has_a_frame_per_step(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(5)
    made = s.animate(tmp_path / "short.gif")  # 60 asked, 6 history entries
    assert made.frames == 6 and made.steps == (0, 1, 2, 3, 4, 5)
    assert len(read_gif(made.path)[0]) == 6


def test_frames_and_size_do_not_grow_with_the_steps(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(1000)
    small = s.animate(tmp_path / "small.gif")
    s.run(99_000)
    big = s.animate(tmp_path / "big.gif")
    assert s.steps == 100_000 and len(s.history) == 100_001
    assert small.frames == big.frames == 60
    assert len(read_gif(big.path)[0]) == 60
    assert big.size < 1.25 * small.size and big.size < 400_000
    # The steps that move get frames (this descent settles in ~60 steps), and the rest of the run too.
    assert big.steps[0] == 0 and big.steps[-1] == 100_000
    assert sum(step <= 60 for step in big.steps) >= 20
    assert sum(step >= 50_000 for step in big.steps) >= 10


def test_a_long_descent_of_many_parameters_is_bounded_too() -> None:
    s = Stepper(five, (jnp.zeros(5),), lr=0.01)
    s.run(100_000)
    data = animation.gif_bytes(s, frames=30)
    frames, _ = read_gif(data)
    assert len(frames) == 30 and len(data) < 200_000


def test_sample_spreads_distinct_entries_over_steps_and_motion() -> None:
    steps = np.arange(1001)
    motion = np.zeros(1000)
    motion[:10] = 1.0  # all the motion in the first ten steps
    chosen = animation.sample(steps, motion, 21)
    assert chosen[0] == 0 and chosen[-1] == 1000 and (np.diff(chosen) > 0).all()
    assert (chosen <= 10).sum() >= 10  # half the frames for the motion, each a distinct step
    assert list(animation.sample(steps, np.zeros(1000), 11)) == list(range(0, 1001, 100))  # no motion: even steps
    assert list(animation.sample(np.arange(4), np.ones(3), 60)) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- where it goes


def test_a_binary_file_object_gets_the_same_bytes_as_gif_bytes() -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(20)
    out = io.BytesIO()
    made = s.animate(out, frames=5)
    assert made.path is None and made.frames == 5 and made.size == len(out.getvalue())
    assert out.getvalue().startswith(b"GIF89a")
    assert out.getvalue() == animation.gif_bytes(s, frames=5)


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(10)
    target = tmp_path / "again.GIF"
    target.write_bytes(b"old")
    s.animate(target, frames=3)
    assert len(read_gif(target)[0]) == 3


# --------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def stepped() -> Stepper:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1), lr=0.1)
    s.run(10)
    return s


@pytest.mark.parametrize("frames", [1, 0, -5, animation.MAX_FRAMES + 1, 2.5, True, "60"])
def test_bad_frame_counts_are_refused(stepped: Stepper, tmp_path: Path, frames: Any) -> None:
    with pytest.raises(JaxGradUsageError, match=r"frames to be a whole number from 2 to 1000.*Leave it at 60"):
        stepped.animate(tmp_path / "d.gif", frames=frames)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("duration", [0, 10, 19, 50.0])
def test_bad_durations_are_refused(stepped: Stepper, tmp_path: Path, duration: Any) -> None:
    with pytest.raises(JaxGradUsageError, match=r"duration in whole milliseconds per frame, at least 20"):
        stepped.animate(tmp_path / "d.gif", duration=duration)
    assert list(tmp_path.iterdir()) == []


def test_bad_targets_are_refused(stepped: Stepper, tmp_path: Path) -> None:
    with pytest.raises(JaxGradUsageError, match=r"is a folder\. Name the file in it, e\.g\. .*descent\.gif"):
        stepped.animate(tmp_path)
    with pytest.raises(JaxGradUsageError, match=r"must end in \.gif .*Use e\.g\. .*descent\.gif"):
        stepped.animate(tmp_path / "descent.png")
    with pytest.raises(JaxGradUsageError, match=r"the folder .*missing.* does not exist\. Create it first"):
        stepped.animate(tmp_path / "missing" / "descent.gif")
    with open(tmp_path / "text.txt", "w") as text, pytest.raises(JaxGradUsageError, match=r"got a text file"):
        stepped.animate(text)
    with pytest.raises(JaxGradUsageError, match=r"got a NoneType\. Pass a path such as 'descent\.gif'"):
        stepped.animate(None)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt"]


def test_a_stepper_with_no_steps_is_refused(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1))
    with pytest.raises(JaxGradUsageError, match=r"Nothing to animate: .* at step 0.*s\.run\(200\)"):
        s.animate(tmp_path / "d.gif")
    s.run(3)
    s.reset()
    with pytest.raises(JaxGradUsageError, match=r"at step 0"):
        animation.gif_bytes(s)
    assert list(tmp_path.iterdir()) == []


def test_a_running_stepper_is_refused(tmp_path: Path) -> None:
    s = Stepper(bowl, (5.0, 2.0), argnums=(0, 1))
    s.run(3)
    asked, release = threading.Event(), threading.Event()

    def should_stop() -> bool:  # holds the run between two chunks until the test is done
        asked.set()
        release.wait(10)
        return True

    run = threading.Thread(target=s.run, args=(1000,), kwargs={"should_stop": should_stop})
    run.start()
    try:
        assert asked.wait(10) and s.running
        with pytest.raises(JaxGradUsageError, match=r"is running .* Wait for the run to end"):
            s.animate(tmp_path / "d.gif")
    finally:
        release.set()
        run.join(10)
    assert s.animate(tmp_path / "d.gif", frames=2).frames == 2


# --------------------------------------------------------------------------- the pure core


SCRIPT = r"""
import io
from jaxgrad_magic import Stepper

s = Stepper(lambda x, y: x ** 2 + (y - 1) ** 2, (5.0, 2.0), argnums=(0, 1))
s.run(20)
made = s.animate(io.BytesIO(), frames=4)
report(frames=made.frames, kind=made.kind)
"""


def test_animate_needs_neither_ipython_nor_widgets() -> None:
    out = run_without_notebook(SCRIPT)
    assert out == {"frames": 4, "kind": "contour", "loaded": []}
