"""Run by test_rerun_leaks.py in its own process: an in-process kernel (widgets render there)."""

from __future__ import annotations

import json
import sys

from ipykernel.inprocess.manager import InProcessKernelManager
from ipywidgets.widgets.widget import _instances


def main(runs: int) -> None:
    km = InProcessKernelManager()
    km.start_kernel()
    shell = km.kernel.shell
    for src in ("%load_ext jaxgrad_magic", "x = 5.0\ny = 2.0"):
        assert shell.run_cell(src).success
    cell = "%%jgrad argnums=0,1\ndef f(x, y):\n    return x**2 + (y - 1)**2\n"
    counts: dict[str, list[int]] = {"cell_id": [], "bound_name": [], "reload": []}
    for _ in range(runs):
        result = shell.run_cell(cell, cell_id="cell-a")  # the frontend sends the cell's id
        assert result.success, result.error_in_exec
        counts["cell_id"].append(len(_instances))
    for _ in range(runs):
        result = shell.run_cell(cell)  # no id: the bound name f_grad identifies the panel
        assert result.success, result.error_in_exec
        counts["bound_name"].append(len(_instances))
    for _ in range(3):
        assert shell.run_cell("%reload_ext jaxgrad_magic").success
        assert shell.run_cell(cell, cell_id="cell-b").success
        counts["reload"].append(len(_instances))
    assert shell.run_cell("%unload_ext jaxgrad_magic").success
    counts["after_unload"] = [len(_instances)]
    ok = shell.run_cell("%jgrad f at=(1.0, 1.0)")
    counts["magic_gone"] = [int(not ok.success)]
    print("RESULT " + json.dumps(counts))
    km.shutdown_kernel()


if __name__ == "__main__":
    main(int(sys.argv[1]))
