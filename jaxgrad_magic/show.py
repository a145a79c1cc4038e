"""Show a result in IPython: the rich result, then the descent panel where widgets render.

The extension registers :func:`show_result` with the shell's display formatter for
:class:`~jaxgrad_magic.results.DerivativeResult` (the result type knows no view). Results
and panels are remembered by where they were made or shown, a key the caller passes: the
cell's id where the frontend sends one, else the bound name. A re-run of that cell, or another cell binding the
same name, replaces them: the panels of the results it replaces are closed, whether they were
displayed or only built through ``r.stepper.widget``, so the number of live widgets stays
flat however often a cell runs.
"""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING

from .errors import JaxGradUsageError

if TYPE_CHECKING:
    from .results import DerivativeResult
    from .stepper import Stepper

_PANELS: dict[str, Stepper] = {}  # display key -> the stepper whose panel is shown there
_RESULTS: dict[str, tuple[int, list[DerivativeResult]]] = {}  # key -> (the cell run, the results it made there)
_RUNS = itertools.count(1)
KEEP_PER_RUN = 256  # results one run makes at one place that a re-run will close; older ones are let go


def new_run() -> int:
    """A number for a cell run, never given before in this process (so also not after ``%reload_ext``)."""
    return next(_RUNS)


def widgets_render() -> bool:
    """True in a Jupyter kernel (widgets have a frontend); False in terminal IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def display_key(cell_id: str | None, result: DerivativeResult) -> str:
    """Where ``result`` belongs: its cell (by id) where the frontend sends one, else its bound name."""
    return f"cell:{cell_id}" if cell_id else f"name:{result.bound_name or result.fn_name}"


def _close_stepper_widget(result: DerivativeResult) -> None:
    stepper = vars(result).get("stepper")  # only a stepper already built can have a panel
    if stepper is not None:
        stepper.close_widget()


def replace_results(result: DerivativeResult, run: int, key: str) -> None:
    """Remember ``result`` where it was made; close the panels of the results it replaces.

    The results an earlier run made at the same place (the same cell, or without a cell id
    the same bound name) are replaced: their steppers' panels are closed, displayed or not.
    Results that one run makes at one place (a loop in a cell) are kept together, up to
    :data:`KEEP_PER_RUN` of them (the oldest beyond that are no longer remembered).

    Args:
      result: a result the magic just made.
      run: which cell run made it (from :func:`new_run`).
      key: where it was made (:func:`display_key`).
    """
    made = _RESULTS.get(key)
    if made is not None and made[0] == run:
        made[1].append(result)
        del made[1][:-KEEP_PER_RUN]
        return
    _RESULTS[key] = (run, [result])
    for old in made[1] if made is not None else ():
        if old is not result:
            _close_stepper_widget(old)


def close_all_panels() -> None:
    """Close every panel this module showed, and those of the results it remembers (on ``%unload_ext``)."""
    for stepper in list(_PANELS.values()):
        stepper.close_widget()
    _PANELS.clear()
    for _, results in list(_RESULTS.values()):
        for result in results:
            _close_stepper_widget(result)
    _RESULTS.clear()


def show_result(result: DerivativeResult, key: str) -> None:
    """Display ``result`` as HTML and text, then its stepper panel when it has one.

    Args:
      result: the result to show.
      key: where it is shown (:func:`display_key`): a panel shown there before is closed.
    """
    from IPython.display import display

    from .display import render_html, render_text

    display({"text/plain": render_text(result), "text/html": render_html(result)}, raw=True)
    if getattr(result, "show_stepper", False) and widgets_render():  # a magic's result (NotebookResult)
        try:
            widget = result.stepper.widget
        except JaxGradUsageError as exc:  # e.g. a function only jit=False can run: say why, keep the result
            note = f"No descent panel: {exc}"
            display({"text/plain": note, "text/html": f"<div class='jgm-note'>{html.escape(note)}</div>"}, raw=True)
            return
        old = _PANELS.get(key)
        if old is not None and old is not result.stepper:
            old.close_widget()  # the panel this one replaces here
        _PANELS[key] = result.stepper
        display(widget)
