"""A GIF of a descent: the panel's pictures at sampled steps, saved by Pillow.

The frames are the pictures the descent panel draws (:mod:`jaxgrad_magic.plots`), without
widgets: for two parameters the contour plot of ``f`` with the path growing, for one the curve
of ``f`` with the point moving along it, else the loss curve growing. Each frame shows one
entry of the stepper's bounded history, so a GIF of a million steps has as many frames, and
about as many bytes, as one of a thousand: :data:`MAX_FRAMES` at most, each a palette picture
of ``plots.WIDTH`` x ``plots.HEIGHT`` pixels.

The entries shown are spread over a mix of the steps taken and the motion drawn
(:func:`sample`): a descent that settles in 50 steps and then sits for 100,000 more gets frames
for the 50 steps that move, and frames that show it sitting. Every frame is captioned with its
step, so no two frames are alike and Pillow keeps each one (it merges identical neighbours).

Pure: NumPy, matplotlib, Pillow and JAX (for ``f`` on the contour grid); no IPython, no widgets.
:func:`write_gif` writes a file (``Stepper.animate``); :func:`gif_bytes` returns the bytes, for
a download link.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, NamedTuple

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from . import plots
from .errors import JaxGradUsageError
from .landscape import Landscape

if TYPE_CHECKING:
    from .stepper import Stepper

GifTarget = str | os.PathLike[str] | BinaryIO
"""Where :func:`write_gif` writes: a file path, or a binary file object open for writing."""
Kind = Literal["contour", "curve", "loss"]

DEFAULT_FRAMES = 60
MAX_FRAMES = 1000  # 100 s at the default speed; a contour GIF of this many is about 1 MB
FRAME_MS = 100  # milliseconds per frame: 60 frames play in 6 s
MIN_FRAME_MS = 20  # browsers play shorter GIF delays as 100 ms
HOLD_MS = 1500  # the last frame stays at least this long, so the end is seen before the loop
MOTION_SHARE = 0.5  # of the frames' spread: motion drawn; the rest follows the steps taken
CAPTION_GAP = 4  # pixels between the caption's baseline and the top of the plot area


@dataclass(frozen=True)
class Animation:
    """A GIF of a descent, as :func:`write_gif` wrote it.

    Attributes:
      path: the file written, or None when written to a file object.
      frames: the number of frames.
      kind: what the frames show: ``"contour"`` (two parameters), ``"curve"`` (one), or
        ``"loss"`` (the loss curve, for more parameters or an ``f`` that cannot be drawn on a grid).
      size: the GIF's length in bytes.
      steps: the step each frame shows, in order (the first is 0, the last the current step).
    """

    path: Path | None
    frames: int
    kind: Kind
    size: int
    steps: tuple[int, ...] = field(repr=False)


class _Gif(NamedTuple):
    """An encoded GIF and what its frames show."""

    data: bytes
    kind: Kind
    steps: tuple[int, ...]


def write_gif(
    stepper: Stepper, target: GifTarget, frames: int = DEFAULT_FRAMES, *, duration: int = FRAME_MS
) -> Animation:
    """Write a GIF of ``stepper``'s descent so far.

    Args:
      stepper: the descent, with at least one step taken.
      target: a path ending in ``.gif`` (``str`` or ``os.PathLike``; ``~`` is expanded; an
        existing file is replaced), or a binary file object open for writing.
      frames: how many frames, 2 to :data:`MAX_FRAMES`; fewer when the history holds fewer
        entries (a stepper 10 steps in makes 11 frames: steps 0 to 10).
      duration: milliseconds per frame, at least :data:`MIN_FRAME_MS`; the last frame stays
        at least :data:`HOLD_MS`.

    Returns:
      What was written (:class:`Animation`).

    Raises:
      JaxGradUsageError: bad ``frames``, ``duration`` or ``target``, no step taken yet, or a
        run going on. Nothing is written then (nor when drawing fails: the GIF is made in
        memory, then written).
    """
    destination = _destination(target)
    gif = _encode(stepper, frames, duration)
    if isinstance(destination, Path):
        destination.write_bytes(gif.data)
    else:
        destination.write(gif.data)
    path = destination if isinstance(destination, Path) else None
    return Animation(path, len(gif.steps), gif.kind, len(gif.data), gif.steps)


def gif_bytes(stepper: Stepper, frames: int = DEFAULT_FRAMES, *, duration: int = FRAME_MS) -> bytes:
    """A GIF of ``stepper``'s descent so far, as bytes (e.g. for a ``data:image/gif;base64,`` link).

    Args and refusals as :func:`write_gif`, without a target.
    """
    return _encode(stepper, frames, duration).data


# --------------------------------------------------------------------------- checks


def _destination(target: GifTarget) -> Path | BinaryIO:
    """The file to write: a checked path, or the file object as given."""
    if isinstance(target, str | os.PathLike):
        path = Path(os.fsdecode(os.fspath(target))).expanduser()
        if path.is_dir():
            raise JaxGradUsageError(
                f"Stepper.animate(path) writes a GIF file, but {str(path)!r} is a folder. Name the file "
                f"in it, e.g. s.animate({str(path / 'descent.gif')!r})."
            )
        if path.suffix.lower() != ".gif":
            raise JaxGradUsageError(
                f"Stepper.animate(path) writes a GIF, so the file name must end in .gif (got {str(path)!r}), "
                f"or programs will not know how to open it. Use e.g. {str(path.with_suffix('.gif'))!r}."
            )
        if not path.parent.is_dir():
            raise JaxGradUsageError(
                f"Stepper.animate(path) cannot write {str(path)!r}: the folder {str(path.parent)!r} does not "
                "exist. Create it first (pathlib.Path(folder).mkdir(parents=True)), or pick a path in an "
                "existing folder."
            )
        return path
    if callable(getattr(target, "write", None)) and not isinstance(target, io.TextIOBase):
        return target
    what = "a text file" if isinstance(target, io.TextIOBase) else f"a {type(target).__name__}"
    raise JaxGradUsageError(
        f"Stepper.animate(path) writes to a file path (str or pathlib.Path) or a binary file object, but got "
        f"{what}. Pass a path such as 'descent.gif', or a file opened with open(name, 'wb') or io.BytesIO()."
    )


def _check(stepper: Stepper, frames: int, duration: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, int | np.integer) or not 2 <= frames <= MAX_FRAMES:
        raise JaxGradUsageError(
            f"Stepper.animate needs frames to be a whole number from 2 to {MAX_FRAMES}, but got {frames!r}. "
            f"Leave it at {DEFAULT_FRAMES} (a 6-second GIF), or pass e.g. frames=120; a long run needs no "
            "more frames, since they sample its history."
        )
    if isinstance(duration, bool) or not isinstance(duration, int | np.integer) or duration < MIN_FRAME_MS:
        raise JaxGradUsageError(
            f"Stepper.animate needs duration in whole milliseconds per frame, at least {MIN_FRAME_MS} "
            f"(browsers play shorter delays as 100 ms), but got {duration!r}. Leave it at {FRAME_MS}, or "
            "pass fewer frames for a shorter GIF."
        )
    if stepper.steps == 0:
        raise JaxGradUsageError(
            f"Nothing to animate: the stepper on {stepper.fn_name} is at step 0, so there is no descent yet "
            "(a reset clears it). Take steps first, e.g. s.run(200), then call s.animate('descent.gif')."
        )
    if stepper.running:
        raise JaxGradUsageError(
            f"The stepper on {stepper.fn_name} is running (Run N in the panel, or run() in another thread), "
            "and its history changes while the frames are drawn. Wait for the run to end (or press Stop), "
            "then call animate again."
        )


# --------------------------------------------------------------------------- frames


def sample(steps: np.ndarray, motion: np.ndarray, count: int) -> np.ndarray:
    """Which history entries to show: ``min(count, len(steps))`` distinct indices, in order.

    The entries are spaced evenly over a progress measure that mixes the steps taken with the
    motion drawn (:data:`MOTION_SHARE` of each): a spacing by steps alone would give the few
    steps in which a fast descent moves one frame or none, a spacing by motion alone would hide
    how long it then sat still. The first entry (the start) and the last (the current state)
    are always in.

    Args:
      steps: the step number of each history entry, increasing.
      motion: how far the picture moves from each entry to the next, ``len(steps) - 1``
        values (any unit; non-finite values count as none).
      count: how many entries to pick, at least 2.

    Returns:
      Increasing indices into ``steps``, the first 0 and the last ``len(steps) - 1``.
    """
    n = len(steps)
    count = min(count, n)
    at = np.asarray(steps, dtype=np.float64)
    span = at[-1] - at[0]
    progress = (at - at[0]) / span if span > 0 else np.linspace(0.0, 1.0, n)
    moved = np.abs(np.asarray(motion, dtype=np.float64))
    moved = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(moved), moved, 0.0))])
    if moved[-1] > 0:
        progress = (1.0 - MOTION_SHARE) * progress + MOTION_SHARE * moved / moved[-1]
    targets = np.linspace(0.0, 1.0, count)
    after = np.searchsorted(progress, targets).clip(1, n - 1)
    idx = np.where(targets - progress[after - 1] <= progress[after] - targets, after - 1, after)  # the nearest
    idx[0], idx[-1] = 0, n - 1
    # Distinct entries: a jump in progress maps several targets to one entry; move the later ones
    # on (idx - k non-decreasing makes idx increasing), leaving room for those after them.
    k = np.arange(count)
    return np.minimum(np.maximum.accumulate(idx - k), n - count) + k


def _loss_motion(losses: np.ndarray) -> np.ndarray:
    """How far the loss line moves between entries, in the loss plot's own scale."""
    y = np.asarray(losses, dtype=np.float64)
    if plots.loss_scale(y) == "log":
        positive = y[np.isfinite(y) & (y > 0)]
        y = np.log10(np.maximum(y, positive.min()))  # zeros sit on the bottom edge, as drawn
    return np.abs(np.diff(y))


def _path_motion(path: np.ndarray, box: plots.Box) -> np.ndarray:
    """How far the point moves between entries, in fractions of the picture's box."""
    scaled = path / (np.asarray(box.hi) - np.asarray(box.lo))
    return np.sqrt((np.diff(scaled, axis=0) ** 2).sum(axis=1))


class _Plan(NamedTuple):
    """What the frames show: the history entries chosen, and how to draw the frame of entry ``i``."""

    kind: Kind
    chosen: np.ndarray
    draw: Callable[[int], bytes]


def _landscape_plan(
    stepper: Stepper, steps: np.ndarray, losses: np.ndarray, path: np.ndarray, frames: int
) -> _Plan | None:
    """The contour or curve of ``f`` over a box that holds the whole path; None when ``f`` cannot be drawn."""
    try:
        landscape = Landscape(stepper.fn, tuple(stepper.point), stepper.argnums, has_aux=stepper.has_aux)
        if not landscape.drawable:
            return None
        # One box for every frame, the one the panel grows to by the end: f is evaluated once.
        box = plots.box_around(plots.start_box(path[0]), path)
        xs, ys, zs = landscape.grid(box)
    except Exception:  # f cannot be evaluated on a grid (e.g. not vmappable): the loss curve instead
        return None
    motion = _path_motion(path, box)
    chosen = sample(steps, motion, frames)
    # The path drawn: picked once for all frames (so it only grows, never redrawn through other
    # points), by steps and motion like the frames (plots.thin, even in steps, would draw the
    # few steps where a long run moves as one straight line), and through every frame's point.
    drawn = np.union1d(sample(steps, motion, plots.MAX_PATH_POINTS - len(chosen)), chosen)

    def upto(i: int) -> np.ndarray:
        return path[drawn[: np.searchsorted(drawn, i, side="right")]]

    if ys is None:
        curve = plots.CurvePlot(xs, zs, label=landscape.labels[0])
        return _Plan("curve", chosen, lambda i: curve.render((path[i, 0], losses[i]), upto(i)[:, 0]))
    contour = plots.ContourPlot(xs, ys, zs, labels=(landscape.labels[0], landscape.labels[1]))
    return _Plan("contour", chosen, lambda i: contour.render(upto(i), path[i]))


def _loss_plan(stepper: Stepper, steps: np.ndarray, losses: np.ndarray, frames: int) -> _Plan:
    curve, last = plots.LossCurve(), len(losses) - 1

    def draw(i: int) -> bytes:
        # The step axis grows with the line (in 1-2-5 steps, as in the panel between runs): fixed
        # to a long run's end, it would squeeze the first steps, where the loss falls, into a column.
        # The loss curve needs no thinning: it reduces a long series to what each pixel column shows.
        diverged_at = stepper.diverged_at if i == last else None
        return curve.render(steps[: i + 1], losses[: i + 1], diverged_at=diverged_at)

    return _Plan("loss", sample(steps, _loss_motion(losses), frames), draw)


@functools.cache
def _font() -> ImageFont.ImageFont:
    # Pillow's bitmap font: the same pixels in every Pillow version, and no FreeType needed.
    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


def _captioned(png: bytes, text: str) -> Image.Image:
    """The frame as a palette image, ``text`` at its top right, above the plot area."""
    image = Image.open(io.BytesIO(png))
    image.load()
    palette = np.asarray(image.getpalette(), dtype=np.float64).reshape(-1, 3)
    ink = int(np.argmin(((palette - np.asarray(ImageColor.getrgb(plots.INK))) ** 2).sum(axis=1)))
    font = _font()
    left, _, right, bottom = font.getbbox(text)
    x = round(plots.AXES_BOX[2] * image.width) - (right - left)
    y = round((1.0 - plots.AXES_BOX[3]) * image.height) - CAPTION_GAP - bottom
    ImageDraw.Draw(image).text((x, y), text, fill=ink, font=font)
    return image


def _encode(stepper: Stepper, frames: int, duration: int) -> _Gif:
    """Draw the chosen frames and encode them as one looping GIF."""
    _check(stepper, frames, duration)
    steps, losses, trajectory = stepper.history_steps, stepper.history, stepper.trajectory
    if len(steps) != len(losses) or int(steps[-1]) != stepper.steps:
        raise JaxGradUsageError(  # a step from another thread between the reads above
            f"The stepper on {stepper.fn_name} took a step while its history was read. Call animate again "
            "once nothing else steps it."
        )
    losses = np.asarray(losses, dtype=np.float64)
    plan = None
    if trajectory is not None and len(trajectory) == len(losses):
        path = np.asarray(trajectory, dtype=np.float64).reshape(len(trajectory), -1)
        plan = _landscape_plan(stepper, steps, losses, path, int(frames))
    if plan is None:
        plan = _loss_plan(stepper, steps, losses, int(frames))
    chosen = plan.chosen.tolist()
    first, *rest = (_captioned(plan.draw(i), f"step {int(steps[i])}") for i in chosen)
    durations = [int(duration)] * len(chosen)
    durations[-1] = max(int(duration), HOLD_MS)
    out = io.BytesIO()
    # Pillow stores each frame after the first as the rectangle that changed; its palette
    # optimisation (a histogram and a remap per frame) is left off: 5x the time, and with
    # Pillow 9 not a byte smaller.
    first.save(out, format="GIF", save_all=True, append_images=rest, duration=durations, loop=0, optimize=False)
    return _Gif(out.getvalue(), plan.kind, tuple(int(steps[i]) for i in chosen))
