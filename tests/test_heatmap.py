"""What a result shows beyond a table of numbers: heatmaps of big Jacobians and Hessians, with
labelled blocks and a summary, and the transformed program (``show=jaxpr``, ``composition``).

PNGs are decoded by Pillow through conftest.png_pixels; statistics are compared
with numpy; Jacobians with closed forms written here.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Shell, png_pixels

from jaxgrad_magic import heatmap
from jaxgrad_magic.display import DisplayLimits, derivative_heatmap, derivative_summary, render_html, render_text
from jaxgrad_magic.heatmap import MAX_SIDE, Block, Heatmap, encode_png, flatten_matrix, palette, render_blocks

_PNG = re.compile(r"src='data:image/png;base64,([^']+)'")


def first_image(page: str) -> np.ndarray:
    """The palette indices of the first inline PNG of an HTML page (the heatmap; the colour bar comes after it)."""
    match = _PNG.search(page)
    assert match, "no inline PNG in the HTML"
    return png_pixels(base64.b64decode(match.group(1)))


def render(m: jax.Array | np.ndarray) -> Heatmap:
    """One matrix as a heatmap of one row block ``f`` and one column block ``x``, as a result draws it."""
    rows, cols = m.shape
    return render_blocks([[jnp.asarray(m)]], ["f"], [(rows,)], ["x"], [(cols,)])


class TestPng:
    def test_indexed_png_decodes_to_size_and_palette(self) -> None:
        colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
        indices = np.array([[0, 1, 2], [3, 2, 1]], dtype=np.uint8)
        png = encode_png(indices, colors)
        np.testing.assert_array_equal(png_pixels(png), indices)  # (height, width) of palette indices
        np.testing.assert_array_equal(png_pixels(png, "RGB"), colors[indices])
        # A picture of few runs is deflated, and palette indices keep it small: a byte a pixel at most.
        flat = np.repeat(np.arange(4, dtype=np.uint8), 100 * 400).reshape(400, 400)
        assert len(encode_png(flat, colors)) < 0.02 * flat.size

    def test_palette_runs_blue_to_red_through_white(self) -> None:
        table = palette()
        assert table.shape == (256, 3)
        lo, mid, hi = table[0].astype(int), table[127].astype(int), table[253].astype(int)
        assert lo[2] > lo[0]  # negative: blue
        assert hi[0] > hi[2]  # positive: red
        assert mid.min() > 230  # zero: near white

    def test_values_map_to_palette_ends(self) -> None:
        m = jnp.array([[-2.0, 0.0], [1.0, 2.0]])
        h = render(m)
        idx = png_pixels(h.png)
        up = h.width // 2
        assert idx[0, 0] == 0  # -vmax: first colour
        assert idx[-1, -1] == 253  # +vmax: last value colour
        assert idx[0, up] in (126, 127)  # zero: the middle of the ramp
        assert h.vmax == 2.0 and not h.pooled

    def test_host_and_device_colouring_agree(self) -> None:
        # Pictures up to MAX_SIDE per side are coloured by numpy, bigger ones on the device.
        values = np.random.default_rng(1).standard_normal((40, 30)).astype(np.float32)
        values[3, 4], values[5, 6] = np.nan, np.inf
        on_device, vmax = heatmap._colorize(jnp.asarray(values))
        assert float(vmax) == pytest.approx(np.abs(values[np.isfinite(values)]).max())
        on_host = heatmap.colorize(values, float(vmax))
        assert np.abs(on_host.astype(int) - np.asarray(on_device).astype(int)).max() <= 1
        assert on_host[3, 4] == on_device[3, 4] == 255 and on_host[5, 6] == 255

    def test_nan_gets_its_own_grey(self) -> None:
        m = jnp.array([[1.0, jnp.nan], [0.0, -1.0]])
        h = render(m)
        idx = png_pixels(h.png)
        assert idx[0, -1] == 255 and 255 not in idx[:, 0]


class TestPooling:
    def test_a_single_spike_survives_pooling(self) -> None:
        m = np.zeros((1000, 1000), dtype=np.float32)
        m[517, 823] = -7.0
        m[3, 4] = 0.5
        h = render(m)
        assert h.pooled
        assert h.width <= MAX_SIDE and h.height <= MAX_SIDE
        idx = png_pixels(h.png)
        assert h.vmax == 7.0  # the spike is the scale
        rows, cols = np.nonzero(idx == 0)  # the most negative colour
        assert len(rows) == 1
        # Each pixel covers a block of ceil(1000 / MAX_SIDE) cells per axis.
        block = -(-1000 // MAX_SIDE)
        assert (rows[0], cols[0]) == (517 // block, 823 // block)

    def test_pooling_keeps_the_sign_of_the_largest_magnitude(self) -> None:
        m = np.full((700, 700), 0.1, dtype=np.float32)
        m[10, 10] = -3.0  # bigger in magnitude than its positive neighbours
        h = render(m)
        idx = png_pixels(h.png)
        block = -(-700 // MAX_SIDE)
        assert idx[10 // block, 10 // block] == 0

    def test_summary_statistics_match_numpy(self) -> None:
        rng = np.random.default_rng(0)
        m = rng.standard_normal((400, 250)).astype(np.float32)
        m[m < -0.5] = 0.0
        h = render(m)
        s = h.summary
        assert s.shape == (400, 250)
        assert s.min == pytest.approx(float(m.min()))
        assert s.max == pytest.approx(float(m.max()))
        assert s.norm == pytest.approx(float(np.linalg.norm(m.astype(np.float64))), rel=1e-5)
        assert s.zero_fraction == pytest.approx(float(np.mean(m == 0)))

    def test_huge_matrix_moves_only_a_bounded_image(self) -> None:
        m = jnp.ones((3000, 2000), dtype=jnp.float32)
        h = render(m)
        assert h.width <= MAX_SIDE and h.height <= MAX_SIDE and h.pooled
        assert len(h.png) < 50_000


class TestFlatten:
    def test_blocks_assemble_in_order(self) -> None:
        # Output leaves (2,) and (3,), input leaves (2,) and (): the flattened matrix is 5x3.
        blocks = [
            [jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([5.0, 6.0])],
            [jnp.arange(6.0).reshape(3, 2) + 10, jnp.array([20.0, 21.0, 22.0])],
        ]
        matrix, rows, cols = flatten_matrix(blocks, ["f[0]", "f[1]"], [(2,), (3,)], ["p['a']", "p['b']"], [(2,), ()])
        want = np.array(
            [[1, 2, 5], [3, 4, 6], [10, 11, 20], [12, 13, 21], [14, 15, 22]],
            dtype=np.float32,
        )
        np.testing.assert_array_equal(np.asarray(matrix), want)
        assert rows == (Block("f[0]", 0, 2), Block("f[1]", 2, 3))
        assert cols == (Block("p['a']", 0, 2), Block("p['b']", 2, 1))


PYTREE_PAIR = """
def two(p):
    return jnp.sin(p['w']) * jnp.sum(p['x']), jnp.cos(p['x']) * jnp.sum(p['w'])
p = {'w': jnp.linspace(0.1, 0.6, 6), 'x': jnp.linspace(-0.5, 0.5, 5)}
"""


def pair_jacobian(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The 11x11 Jacobian of ``two`` above, rows (two[0], two[1]), columns (p['w'], p['x'])."""
    sx, sw = x.sum(), w.sum()
    top = np.hstack([np.diag(np.cos(w)) * sx, np.outer(np.sin(w), np.ones_like(x))])
    bottom = np.hstack([np.outer(np.cos(x), np.ones_like(w)), np.diag(-np.sin(x)) * sw])
    return np.vstack([top, bottom])


class TestResultHeatmaps:
    def test_300_by_300_jacobian_is_a_heatmap(self, ip: Shell) -> None:
        ip.run_cell(
            "A = jax.random.normal(jax.random.key(0), (300, 300)) / 300 ** 0.5\n"
            "def layer(x):\n    return jnp.tanh(A @ x)\n"
            "x = jnp.linspace(-1.0, 1.0, 300)"
        )
        r = ip.run_cell("%jac layer at=x")
        A, x = np.asarray(ip.ns["A"], np.float64), np.linspace(-1.0, 1.0, 300)
        want = (1 - np.tanh(A @ x) ** 2)[:, None] * A  # d tanh(Ax) = diag(1 - tanh²) A
        np.testing.assert_allclose(r.derivative, want, atol=1e-5)
        page = r._repr_html_()
        assert "class='jgm-heat'" in page
        image = first_image(page)
        assert image.shape == (300, 300)
        text = str(r)
        summary = re.search(r"300x300 matrix: min (\S+), max (\S+), norm (\S+), ([\d.]+)% zeros", text)
        assert summary, text
        assert float(summary.group(1).rstrip(",")) == pytest.approx(want.min(), rel=1e-3)
        assert float(summary.group(2).rstrip(",")) == pytest.approx(want.max(), rel=1e-3)
        assert float(summary.group(3).rstrip(",")) == pytest.approx(np.linalg.norm(want), rel=1e-3)
        assert "∂layer/∂x" not in text  # no 90,000 numbers
        assert "(a heatmap in notebooks)" in text

    def test_text_summary_is_the_pictures_summary(self, ip: Shell) -> None:
        ip.run_cell(PYTREE_PAIR)
        r = ip.run_cell("%jac two at=p")
        summary = derivative_summary(r, DisplayLimits())
        picture = derivative_heatmap(r, DisplayLimits())
        assert summary is not None and picture is not None
        assert summary.shape == picture.summary.shape == (11, 11)
        np.testing.assert_allclose(summary[1:], picture.summary[1:], rtol=1e-6)
        assert derivative_summary(r, DisplayLimits(heatmap_above=100)) is None

    def test_small_jacobian_shows_numbers(self, ip: Shell) -> None:
        ip.run_cell("def pair(x):\n    return jnp.sin(x) * x[::-1]")
        r = ip.run_cell("%jac pair at=jnp.array([0.5, 1.0, 1.5])")
        x = np.array([0.5, 1.0, 1.5])
        want = np.diag(np.cos(x) * x[::-1]) + np.sin(x)[:, None] * np.eye(3)[::-1]
        np.testing.assert_allclose(r.derivative, want, rtol=1e-5, atol=1e-6)
        page, text = r._repr_html_(), str(r)
        assert "jgm-heat'" not in page and "data:image/png" not in page
        assert "∂pair/∂x = f32[3,3]" in text
        assert f"{want[0, 0]:.6f}"[:6] in text

    def test_pytree_and_multi_output_blocks_are_labelled(self, ip: Shell) -> None:
        ip.run_cell(PYTREE_PAIR)
        r = ip.run_cell("%jac two at=p")
        w, x = np.linspace(0.1, 0.6, 6), np.linspace(-0.5, 0.5, 5)
        picture = derivative_heatmap(r, DisplayLimits())
        assert picture is not None
        assert [(b.label, b.start, b.size) for b in picture.rows] == [("two[0]", 0, 6), ("two[1]", 6, 5)]
        assert [(b.label, b.start, b.size) for b in picture.cols] == [("p['w']", 0, 6), ("p['x']", 6, 5)]
        page = r._repr_html_()
        for label in ("two[0]", "two[1]", "p['w']", "p['x']"):
            assert html.escape(label) in page
        # The flattened matrix (what the picture shows) is the closed-form Jacobian.
        blocks = [
            [r.derivative[0]["w"], r.derivative[0]["x"]],
            [r.derivative[1]["w"], r.derivative[1]["x"]],
        ]
        matrix, _, _ = flatten_matrix(blocks, ["a", "b"], [(6,), (5,)], ["w", "x"], [(6,), (5,)])
        np.testing.assert_allclose(np.asarray(matrix), pair_jacobian(w, x), atol=1e-5)
        # One-pixel separators between the blocks, in both directions.
        idx = png_pixels(picture.png)
        scale = picture.height / 11
        assert np.all(idx[round(6 * scale), :] == 254) and np.all(idx[:, round(6 * scale)] == 254)

    def test_pytree_hessian_is_a_labelled_heatmap(self, ip: Shell) -> None:
        ip.run_cell("def energy(p):\n    return jnp.sum(p['a'] ** 2) * jnp.sum(jnp.sin(p['b']))")
        r = ip.run_cell("%hess energy at={'a': jnp.linspace(0.1, 1.0, 6), 'b': jnp.linspace(0.0, 1.0, 4)}")
        a, b = np.linspace(0.1, 1.0, 6), np.linspace(0.0, 1.0, 4)
        np.testing.assert_allclose(r.derivative["a"]["a"], 2 * np.eye(6) * np.sum(np.sin(b)), rtol=1e-5)
        np.testing.assert_allclose(r.derivative["a"]["b"], 2 * np.outer(a, np.cos(b)), rtol=1e-5)
        picture = derivative_heatmap(r, DisplayLimits())
        assert picture is not None and picture.summary.shape == (10, 10)
        assert [b.label for b in picture.rows] == ["p['a']", "p['b']"]
        assert [b.label for b in picture.cols] == ["p['a']", "p['b']"]
        assert "10x10 matrix" in str(r)

    def test_small_pytree_derivative_is_a_labelled_tree(self, ip: Shell) -> None:
        ip.run_cell("def small(p):\n    return jnp.sum(p['w'] * p['b'])")
        r = ip.run_cell("%jgrad small at={'w': jnp.array([1.0, 2.0]), 'b': 3.0} stepper=False")
        text = str(r)
        assert "∂small/∂p['w'] = f32[2] [3., 3.]" in text
        assert "∂small/∂p['b'] = f32[] 3" in text

    def test_2000_by_2000_is_a_summary_not_a_table(self, ip: Shell) -> None:
        ip.run_cell("def wide(x):\n    return jnp.sin(x) * 2.0\nx = jnp.linspace(-1.0, 1.0, 2000)")
        r = ip.run_cell("%jac wide at=x")
        assert r.derivative.shape == (2000, 2000)
        page, text = r._repr_html_(), str(r)
        assert len(page) < 300_000 and len(text) < 3_000
        assert "2000x2000 matrix: min 0, max 2" in text
        zeros = re.search(r"([\d.]+)% zeros", text)
        assert zeros and float(zeros.group(1)) == pytest.approx(100 * (1 - 1 / 2000), abs=0.05)
        picture = derivative_heatmap(r, r.display_limits)
        assert picture is not None and picture.pooled
        assert picture.width <= MAX_SIDE and picture.height <= MAX_SIDE
        idx = first_image(page)
        assert max(idx.shape) <= MAX_SIDE
        # The diagonal (2 cos x >= 2 cos 1, on a scale to 2) survives pooling: each pooled cell keeps
        # its largest entry. Off the diagonal everything is zero: the middle of the ramp.
        assert idx.diagonal().min() >= int((np.cos(1.0) + 1) * 127)
        assert np.all(idx[~np.eye(idx.shape[0], dtype=bool)] == 127)

    def test_heatmap_threshold_is_a_display_limit(self, ip: Shell) -> None:
        ip.run_cell("def grow(x):\n    return jnp.outer(x, x).ravel()[:12]")
        r = ip.run_cell("%jac grow at=jnp.linspace(0.0, 1.0, 12)")
        assert "data:image/png" in render_html(r)
        loose = DisplayLimits(heatmap_above=100)
        assert "data:image/png" not in render_html(r, loose)
        assert "∂grow/∂x = f32[12,12]" in render_text(r, loose)

    def test_a_vector_gradient_is_never_a_heatmap(self, ip: Shell) -> None:
        ip.run_cell("def total(x):\n    return jnp.sum(x ** 2)")
        r = ip.run_cell("%jac total at=jnp.linspace(0.0, 1.0, 50)")
        assert derivative_heatmap(r, DisplayLimits()) is None
        assert "data:image/png" not in r._repr_html_()


class TestJaxpr:
    def test_text_shows_the_primitives(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%jgrad wave at=jnp.array([1.0, 2.0]) show=jaxpr stepper=False")
        for primitive in ("sin", "cos", "mul"):
            assert re.search(rf"\b{primitive}\b", r.jaxpr), r.jaxpr
        assert r.jaxpr.lstrip().startswith("{ lambda")
        text = str(r)
        assert "\n  jaxpr\n" in text and " cos " in text

    def test_html_folds_the_program_away(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%jgrad wave at=jnp.array([1.0, 2.0]) show=jaxpr stepper=False")
        page = r._repr_html_()
        details = re.search(r"<details><summary>(.*?)</summary><pre>(.*?)</pre></details>", page, re.S)
        assert details, page
        assert html.escape(r.composition) in details.group(1)
        assert "cos" in details.group(2) and html.unescape(details.group(2)) == r.jaxpr

    def test_no_jaxpr_unless_asked(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%jgrad wave at=jnp.array([1.0, 2.0]) stepper=False")
        assert r.jaxpr is None and "<details>" not in r._repr_html_()

    def test_hessian_program_differentiates_twice(self, ip: Shell) -> None:
        ip.run_cell("def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)")
        r = ip.run_cell("%hess wave at=jnp.array([1.0, 2.0]) show=jaxpr")
        assert "sin" in r.jaxpr and "cos" in r.jaxpr
        assert "jax.jacfwd(jax.jacrev(wave))" in r._repr_html_()

    def test_show_needs_a_point_and_a_known_view(self, ip: Shell, capsys: pytest.CaptureFixture[str]) -> None:
        ip.run_cell("def lonely(q):\n    return q ** 2")
        assert "at=" in ip.usage_error("%jgrad lonely show=jaxpr", capsys)
        assert "show=jaxpr" in ip.usage_error("%jgrad lonely at=1.0 show=hlo", capsys)


class TestComposition:
    @pytest.mark.parametrize(
        ("line", "built"),
        [
            ("%jgrad wave at=0.7 order=2", "jax.jit(jax.grad(jax.grad(wave)))"),
            ("%jgrad wave at=0.7 order=3 jit=False", "jax.grad(jax.grad(jax.grad(wave)))"),
            ("%hess wave at=jnp.array([0.5, 1.0])", "jax.jit(jax.jacfwd(jax.jacrev(wave)))"),
            (
                "%hess bowl at=(1.0, 2.0) argnums=0,1",
                "jax.jit(jax.jacfwd(jax.jacrev(bowl, argnums=(0, 1)), argnums=(0, 1)))",
            ),
            ("%jac wave at=jnp.array([0.5, 1.0]) mode=fwd", "jax.jit(jax.jacfwd(wave))"),
            ("%jac wave at=jnp.array([0.5, 1.0]) mode=rev", "jax.jit(jax.jacrev(wave))"),
        ],
    )
    def test_composition_is_the_code_that_was_built(self, ip: Shell, line: str, built: str) -> None:
        ip.run_cell(
            "def wave(x):\n    return jnp.sum(jnp.sin(x) ** 2)\ndef bowl(x, y):\n    return x ** 2 * y + (y - 1) ** 2"
        )
        r = ip.run_cell(f"{line} stepper=False" if line.startswith("%jgrad") else line)
        assert r.composition == built
        assert built in str(r) and html.escape(built) in r._repr_html_()
        # Running the composition as written gives the same derivative.
        again = eval(built, dict(ip.ns))(*r.point)
        for got, want in zip(jax.tree_util.tree_leaves(r.derivative), jax.tree_util.tree_leaves(again), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_heatmap_module_has_no_notebook_imports() -> None:
    source = Path(heatmap.__file__).read_text(encoding="utf-8")
    assert "IPython" not in source and "ipywidgets" not in source
