"""Show a result in IPython: the rich result, then the descent panel where widgets render."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import DerivativeResult


def widgets_render() -> bool:
    """True in a Jupyter kernel (widgets have a frontend); False in terminal IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_result(result: DerivativeResult) -> None:
    """Display ``result`` as HTML and text, then its stepper panel when it has one."""
    from IPython.display import display

    from .display import render_html, render_text

    display({"text/plain": render_text(result), "text/html": render_html(result)}, raw=True)
    if result.show_stepper and widgets_render():
        display(result.stepper.widget)
