"""demo.ipynb executed headlessly in a real kernel: no error output, every story step shown."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

DEMO = Path(__file__).resolve().parent.parent / "demo.ipynb"
pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    nb = nbformat.read(DEMO, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(DEMO.parent)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[tuple[str, dict]]:
    return [(c.source, o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


def test_demo_has_no_error_output(executed: nbformat.NotebookNode) -> None:
    errors = [(src, o) for src, o in _outputs(executed) if o.output_type == "error" or o.get("name") == "stderr"]
    assert not errors, "\n\n".join(
        f"{src}\n-> {o.get('ename', '')}: {o.get('evalue', o.get('text'))}" for src, o in errors
    )


def test_every_magic_cell_shows_a_rich_result(executed: nbformat.NotebookNode) -> None:
    magic_cells = [
        c for c in executed.cells if c.cell_type == "code" and re.match(r"\s*(%%?|\w+ = %)(jgrad|jac|hess)", c.source)
    ]
    assert len(magic_cells) >= 8
    for cell in magic_cells:
        html = [o for o in cell.outputs if "text/html" in o.get("data", {})]
        assert html or "=" in cell.source.splitlines()[0], f"no rich result for:\n{cell.source}"


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+(?=[,\]\s]|$)", text)]


def test_story_values_match_closed_forms(executed: nbformat.NotebookNode) -> None:
    import numpy as np

    texts = {c.source: "\n".join(_text(o) for o in c.outputs) for c in executed.cells if c.cell_type == "code"}
    grad_cell = next(t for s, t in texts.items() if s.startswith("%%jgrad\ndef pipeline"))
    line = next(ln for ln in grad_cell.splitlines() if "∂pipeline/∂x" in ln)
    got = np.array(_numbers(line)[-3:])
    np.testing.assert_allclose(got, np.sin(2 * np.array([1.0, 2.0, 3.0])), rtol=1e-4)

    xy = next(t for s, t in texts.items() if s.startswith("grad_xy.derivative"))
    assert "10" in xy and "2" in xy

    step = next(t for s, t in texts.items() if s.startswith("x_new ="))
    assert "Updated x: 4.0" in step and "Updated y: 1.8" in step

    # The edge of stability: the sharpness history shows as a picture, and its repr holds 2/lr.
    edge = next(
        c for c in executed.cells if c.cell_type == "code" and c.source.startswith("from jaxgrad_magic import Stepper")
    )
    (shown,) = [o for o in edge.outputs if o.get("output_type") == "execute_result"]
    assert "image/png" in shown["data"] and "SharpnessHistory(" in shown["data"]["text/plain"]


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _panels(nb: nbformat.NotebookNode) -> list[tuple[str, dict]]:
    """The panels' still pictures (each panel's second output, after the live widget)."""
    return [(src, o) for src, o in _outputs(nb) if WIDGET_VIEW in o.get("data", {}) and "image/png" in o["data"]]


def test_every_panel_carries_a_still_picture_of_its_last_state(executed: nbformat.NotebookNode) -> None:
    import base64
    import io

    from PIL import Image

    panels = _panels(executed)
    assert len(panels) >= 3
    live = [o for _, o in _outputs(executed) if WIDGET_VIEW in o.get("data", {}) and "image/png" not in o["data"]]
    assert len(live) == len(panels) and all(o["data"]["text/plain"] == "" for o in live)
    for _, output in panels:
        data = output["data"]
        picture = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
        assert picture.format == "PNG" and picture.width >= 300 and picture.height >= 200
        assert data["text/html"].count("data:image/png;base64,") == 1
        assert data["text/plain"].startswith("Gradient descent on ") and "\n" not in data["text/plain"]
    # The panel of `descent = %jgrad ...` as the later cells left it: one step, then run(100).
    (_, descent), *_ = [(s, o) for s, o in panels if s.startswith("descent = %jgrad")]
    assert "step 101," in descent["data"]["text/plain"]


def test_nbconvert_html_shows_the_pictures_never_the_widget_repr(executed: nbformat.NotebookNode) -> None:
    import copy

    from nbconvert import HTMLExporter

    n_panels = len(_panels(executed))
    # Saved from JupyterLab (no widget state, its default) or read where no widget manager
    # runs: each panel is its still picture.
    bare = copy.deepcopy(executed)
    bare.metadata.pop("widgets", None)
    html, _ = HTMLExporter().from_notebook_node(bare)
    stills = re.findall(r"""<div class=["']jgm-still["']><img [^>]*src=["']data:image/png;base64,""", html)
    assert len(stills) == n_panels
    assert "PanelWidget(" not in html
    # Executed with the widget state stored (nbclient's default): nbconvert embeds the widgets
    # from that state instead; never the widget's text.
    html, _ = HTMLExporter().from_notebook_node(executed)
    assert "PanelWidget(" not in html and html.count(WIDGET_VIEW) >= n_panels
