"""Execute a notebook in a real kernel and write the executed copy: `python execute_notebook.py IN OUT`."""

from __future__ import annotations

import sys

import nbformat
from nbclient import NotebookClient


def main(src: str, dst: str) -> int:
    nb = nbformat.read(src, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600).execute()
    nbformat.write(nb, dst)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    print(f"executed {src} -> {dst}: {len(nb.cells)} cells, {len(errors)} error outputs")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
