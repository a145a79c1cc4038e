"""The dependency floor: what CI installs in ``.venv-floor`` is what ``pyproject.toml`` declares.

``.ci/floor`` installs the pins of ``.ci/floor-constraints.txt`` and runs the fast suite with
them; these tests keep those pins and the ``>=`` floors of ``pyproject.toml`` from drifting
apart, so a floor is only ever declared where it is tested.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def declared_floors() -> dict[str, Version]:
    """Each runtime dependency of ``pyproject.toml`` and the version its ``>=`` names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floors = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        lows = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        assert len(lows) == 1, f"{text!r}: every dependency declares exactly one floor with >="
        floors[canonicalize_name(requirement.name)] = lows[0]
    return floors


def floor_pins() -> dict[str, Version]:
    """Each package ``.ci/floor-constraints.txt`` pins and the version it pins."""
    pins = {}
    for line in (ROOT / ".ci" / "floor-constraints.txt").read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        specs = list(Requirement(text).specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{text!r}: a floor pin is one exact version (==)"
        pins[canonicalize_name(Requirement(text).name)] = Version(specs[0].version)
    return pins


def test_the_floor_environment_pins_exactly_the_declared_floors() -> None:
    assert floor_pins() == declared_floors()


def test_the_floor_pins_the_libraries_whose_apis_move_fastest() -> None:
    assert {"jax", "jaxlib", "optax", "ipython", "ipywidgets"} <= set(floor_pins())
