"""show.py's pure parts: where a result belongs, and what a re-run closes.

Panels are real: each result's stepper builds its ``.widget`` (``jaxgrad_magic.panel`` is
imported, which registers the view), and live widgets are counted in ipywidgets' own registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from ipywidgets.widgets import widget as widget_module

import jaxgrad_magic.panel  # noqa: F401  (registers the panel that Stepper.widget builds)
from jaxgrad_magic import grad, show
from jaxgrad_magic.results import DerivativeResult


def bowl(x: Any, y: Any) -> Any:
    return x**2 + (y - 1) ** 2


def result(fn_name: str = "bowl") -> DerivativeResult:
    return grad(bowl, at=(5.0, 2.0), argnums=(0, 1), fn_name=fn_name)


def with_panel(fn_name: str = "bowl") -> DerivativeResult:
    """A result whose stepper has built its panel (never displayed)."""
    r = result(fn_name)
    _ = r.stepper.widget
    return r


def live() -> int:
    return len(widget_module._instances)


def has_panel(r: DerivativeResult) -> bool:
    stepper = vars(r).get("stepper")
    return stepper is not None and stepper._view is not None


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with nothing remembered, and closes what it made."""
    monkeypatch.setattr(show, "_RESULTS", {})
    monkeypatch.setattr(show, "_PANELS", {})
    yield
    show.close_all_panels()


class TestDisplayKey:
    def test_a_cell_id_comes_first(self) -> None:
        r = result()
        assert show.display_key("abc-123", r) == "cell:abc-123"

    def test_else_the_bound_name(self) -> None:
        r = result()
        assert show.display_key(None, r) == "name:bowl"  # nothing bound: the function's name
        bound = dataclasses.replace(r, bound_name="bowl_grad")  # as a magic binds it
        assert show.display_key(None, bound) == "name:bowl_grad"
        assert show.display_key("", bound) == "name:bowl_grad"  # an empty id is no id

    def test_runs_are_never_numbered_twice(self) -> None:
        runs = [show.new_run() for _ in range(5)]
        assert len(set(runs)) == 5 and runs == sorted(runs)


class TestReplaceResults:
    def test_a_rerun_closes_the_panels_it_replaces(self) -> None:
        first = with_panel()
        show.replace_results(first, show.new_run(), "cell:a")
        assert has_panel(first)
        before = live()
        again = with_panel()
        assert live() > before  # the new panel's widgets
        show.replace_results(again, show.new_run(), "cell:a")
        assert not has_panel(first) and has_panel(again)
        assert live() == before  # the old panel's widgets are gone: the count stays flat

    def test_many_reruns_leave_one_panel(self) -> None:
        show.replace_results(with_panel(), show.new_run(), "cell:a")
        flat = live()
        for _ in range(5):
            show.replace_results(with_panel(), show.new_run(), "cell:a")
            assert live() == flat

    def test_results_of_one_run_stay_together(self) -> None:
        run = show.new_run()
        loop = [with_panel() for _ in range(3)]  # a loop in one cell
        for r in loop:
            show.replace_results(r, run, "cell:a")
        assert all(has_panel(r) for r in loop)  # none replaces another
        show.replace_results(with_panel(), show.new_run(), "cell:a")
        assert not any(has_panel(r) for r in loop)  # the next run replaces them all

    def test_other_places_are_left_alone(self) -> None:
        here, there = with_panel(), with_panel()
        show.replace_results(here, show.new_run(), "cell:a")
        show.replace_results(there, show.new_run(), "cell:b")
        show.replace_results(with_panel(), show.new_run(), "cell:a")
        assert not has_panel(here) and has_panel(there)

    def test_a_stepper_never_built_is_not_built_to_be_closed(self) -> None:
        plain = result()
        show.replace_results(plain, show.new_run(), "name:bowl")
        show.replace_results(result(), show.new_run(), "name:bowl")
        assert "stepper" not in vars(plain)

    def test_the_same_result_again_is_kept(self) -> None:
        r = with_panel()
        show.replace_results(r, show.new_run(), "cell:a")
        show.replace_results(r, show.new_run(), "cell:a")  # shown again by a later run
        assert has_panel(r)

    def test_one_run_remembers_a_bounded_number(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(show, "KEEP_PER_RUN", 2)
        run = show.new_run()
        made = [result() for _ in range(3)]
        for r in made:
            show.replace_results(r, run, "cell:a")
        assert show._RESULTS["cell:a"] == (run, made[1:])  # the oldest is let go

    def test_close_all_panels_closes_what_it_remembers(self) -> None:
        before = live()
        made = [with_panel() for _ in range(2)]
        show.replace_results(made[0], show.new_run(), "cell:a")
        show.replace_results(made[1], show.new_run(), "cell:b")
        show.close_all_panels()
        assert not any(has_panel(r) for r in made) and live() == before
        assert show._RESULTS == {}
