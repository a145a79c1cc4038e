"""Re-running a magic cell in a kernel closes the panel it replaces: live widgets stay flat.

Runs in its own process: an in-process kernel's shell class cannot share a pytest process
with the terminal-style shell the other tests use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_json_script

pytestmark = pytest.mark.slow  # a kernel in a fresh process, 300 cell runs

SCRIPT = Path(__file__).with_name("rerun_leak_check.py")


def test_live_widgets_stay_flat_over_100_reruns() -> None:
    counts = run_json_script([str(SCRIPT), "100"], env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    by_id, by_name = counts["cell_id"], counts["bound_name"]
    # The first run builds one panel; every later run replaces it, so the count never grows.
    assert len(set(by_id)) == 1, by_id[:5]
    # Without a cell id the bound name identifies the panel: the same flat line.
    assert len(set(by_name)) == 1, by_name[:5]
    # %reload_ext keeps working and does not leak either: one panel for the new cell.
    assert len(set(counts["reload"])) == 1
    # %unload_ext closes the panels it showed and removes the magics.
    assert counts["after_unload"][0] < counts["reload"][-1]
    assert counts["magic_gone"] == [1]
