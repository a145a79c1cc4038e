"""Pure renderers: a result -> text or HTML. Only small summaries leave the device."""

from __future__ import annotations

import base64
import functools
import html
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import heatmap

if TYPE_CHECKING:
    from .gradcheck import ArgCheck, GradCheck
    from .results import DerivativeResult

_KIND_TITLE = {
    "grad": "gradient",
    "jac": "Jacobian",
    "hess": "Hessian",
    "jvp": "Jacobian-vector product",
    "vjp": "vector-Jacobian product",
}


class DisplayLimits(NamedTuple):
    """How much a result shows.

    Attributes:
      max_items: arrays with more elements are abbreviated (first and last few values).
      heatmap_above: Jacobians and Hessians with more rows or columns than this (and more
        than one of each) are drawn as a heatmap instead of a table of numbers.
      max_leaves: pytrees (a point, a value, a derivative) with more leaves than this show
        only their first and last ``edge_leaves`` leaves and a count of the rest.
      edge_leaves: how many leaves show at each end of a long pytree.
      max_lines: programs (``show=jaxpr``) with more lines show their first and last
        ``max_lines // 2`` lines and a count of the rest.
    """

    max_items: int = 24
    heatmap_above: int = 8
    max_leaves: int = 12
    edge_leaves: int = 3
    max_lines: int = 60


T = TypeVar("T")


class Elided(NamedTuple):
    """Where rows were left out of a rendering, and how many."""

    count: int
    what: str = "leaves"

    def __str__(self) -> str:
        return f"… {self.count:,} more {self.what} …"


def elide(rows: Iterable[T], limits: DisplayLimits, what: str = "leaves") -> list[T | Elided]:
    """``rows`` when there are at most ``limits.max_leaves``, else the first and last
    ``limits.edge_leaves`` with an :class:`Elided` count between them.

    Only the kept rows are ever formatted, so the cost of a rendering does not grow with the tree.
    """
    rows = list(rows)
    edge = max(1, min(limits.edge_leaves, limits.max_leaves // 2))
    if len(rows) <= max(limits.max_leaves, 2 * edge + 1):
        return rows
    return [*rows[:edge], Elided(len(rows) - 2 * edge, what), *rows[-edge:]]


def elide_lines(text: str, limits: DisplayLimits) -> str:
    """``text`` with at most ``limits.max_lines`` lines: its first and last half and a count."""
    lines = text.splitlines()
    half = max(1, limits.max_lines // 2)
    if len(lines) <= 2 * half + 1:
        return text
    return "\n".join([*lines[:half], str(Elided(len(lines) - 2 * half, "lines")), *lines[-half:]])


def short_repr(x: Any, limits: DisplayLimits | None = None, max_chars: int = 2000) -> str:
    """A ``repr`` that stays short for any value: long pytrees as their first and last leaves
    with a count, long strings cut with their length."""
    limits = limits or DisplayLimits()
    if isinstance(x, str):
        return repr(x) if len(x) <= max_chars else f"{x[:max_chars]!r}… ({len(x):,} characters)"
    try:
        leaves = jax.tree_util.tree_leaves(x)
    except Exception:  # not a pytree JAX can flatten (a dict whose keys do not sort)
        leaves = [x]
    if len(leaves) <= limits.max_leaves:
        text = repr(x)
        if len(text) <= max_chars:
            return text
    shown = [
        row if isinstance(row, Elided) else f"{row[0] or '·'}={type_tag(row[1])} {_one_line(row[1], limits)}"
        for row in elide(_leaves(x), limits)
    ]
    return f"<{type(x).__name__} of {len(leaves):,} leaves: {', '.join(map(str, shown))}>"


def _one_line(x: Any, limits: DisplayLimits) -> str:
    text = " ".join(format_array(x, limits.max_items).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def type_tag(x: Any) -> str:
    """JAX-style ``f32[3,2]`` for an array, the type name for a Python number or other value."""
    if isinstance(x, bool | int | float | complex):
        # A Python number (JAX treats it as weakly typed); a subclass shows as its builtin.
        return next(t.__name__ for t in (bool, int, float, complex) if isinstance(x, t))
    dtype = getattr(x, "dtype", None)
    if not isinstance(dtype, np.dtype) and not jax.dtypes.issubdtype(dtype, jax.dtypes.extended):
        return type(x).__name__  # not an array: a string flag, a config object
    if not isinstance(dtype, np.dtype):  # an extended dtype, e.g. a typed PRNG key
        return f"{dtype}[{','.join(map(str, np.shape(x)))}]"
    shape = ",".join(map(str, np.shape(x)))
    bits = dtype.itemsize * 8
    short = {"bfloat": "bf", "float": "f", "int": "i", "uint": "u", "complex": "c"}
    kind = next((v for k, v in short.items() if dtype.name == f"{k}{bits}"), None)
    # bool, and dtypes without a short JAX name (int4, float8 variants): the full name
    return f"{kind}{bits}[{shape}]" if kind else f"{dtype.name}[{shape}]"


@jax.jit
def _summary(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    flat = jnp.ravel(x)
    stats = jnp.stack([jnp.min(flat), jnp.max(flat), jnp.linalg.norm(flat.astype(jnp.float32))])
    return flat[:3], flat[-3:], stats


def format_array(x: Any, max_items: int = 24) -> str:
    """A short, rounded rendering; big arrays are summarised without moving them whole."""
    size = math.prod(np.shape(x))
    big = size > max(1000, max_items)
    real = isinstance(x, jax.Array) and (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating))
    if big and real:  # complex values have no min or max, and the float32 norm would drop their imaginary parts
        # Only a few corner values and three statistics travel to the host.
        head, tail, stats = (np.asarray(a) for a in _summary(x))
        return (
            f"[{', '.join(f'{v:.4g}' for v in head)}, ..., {', '.join(f'{v:.4g}' for v in tail)}]"
            f"  ({size} values: min {stats[0]:.4g}, max {stats[1]:.4g}, norm {stats[2]:.4g})"
        )
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.extended):
        x = jax.random.key_data(x)  # a PRNG key: show its raw key data
    elif not isinstance(x, bool | int | float | complex | np.ndarray | np.generic | jax.Array):
        text = repr(x)  # not an array: its repr, cut short
        return text if len(text) <= 80 else text[:77] + "..."
    arr = np.asarray(x)
    if arr.ndim == 0:
        return f"{arr.item():.6g}" if np.issubdtype(arr.dtype, np.floating) else str(arr.item())
    with np.printoptions(precision=6, threshold=max_items, edgeitems=3, suppress=True, linewidth=100):
        return np.array2string(arr, separator=", ")


def _keystr(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) if path else ""


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(_keystr(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _diff_args(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(name, argument)`` for each differentiated argument."""
    idx = (result.argnums,) if isinstance(result.argnums, int) else result.argnums
    point = result.point or ()
    return [(name, point[i] if i < len(point) else None) for name, i in zip(result.wrt, idx, strict=True)]


def _out_struct(result: DerivativeResult) -> tuple[list[str], Any]:
    """Labels and tree structure of the rows of a Jacobian-like derivative."""
    if result.kind == "hess":
        diff = [a for _, a in _diff_args(result)]
        tree = tuple(diff) if len(diff) > 1 else diff[0]
        labels = [f"{n}{p}" for n, a in _diff_args(result) for p, _ in _leaves(a)]
        return labels, jax.tree_util.tree_structure(tree)
    return [f"{result.fn_name}{p}" for p, _ in _leaves(result.value)], jax.tree_util.tree_structure(result.value)


def derivative_rows(result: DerivativeResult) -> Iterator[tuple[str, Any]]:
    """``(label, array)`` for every leaf of the derivative, e.g. ``("∂f/∂x", g)``."""
    f, wrt = result.fn_name, result.wrt
    multi = not isinstance(result.argnums, int)
    d = result.derivative
    if result.kind == "jvp":
        for path, leaf in _leaves(d):
            yield f"∂{f}{path}·v", leaf
        return
    if result.kind == "vjp":
        for name, block in zip(wrt, d if multi else (d,), strict=True):
            for path, leaf in _leaves(block):
                yield f"uᵀ∂{f}/∂{name}{path}", leaf
        return
    if result.kind in ("jac", "hess"):  # JAX puts the output's structure outermost
        out_paths = [p for p, _ in _leaves(result.value)] or [""]
        per_out = jax.tree_util.tree_structure(result.value).flatten_up_to(d)
    else:
        out_paths, per_out = [""], [d]
    args = dict(_diff_args(result))
    for out_path, sub in zip(out_paths, per_out, strict=True):
        blocks = list(zip(wrt, sub, strict=True)) if multi else [(wrt[0], sub)]
        for name, block in blocks:
            if result.kind == "hess":
                # block: the structure of argument `name`, each leaf holding one of argument `name2`.
                outer = jax.tree_util.tree_flatten_with_path(args[name])[0]
                per_leaf = jax.tree_util.tree_structure(args[name]).flatten_up_to(block)
                for (p1, _), rows in zip(outer, per_leaf, strict=True):
                    inner = list(zip(wrt, rows, strict=True)) if multi else [(name, rows)]
                    for name2, b2 in inner:
                        for p2, leaf in _leaves(b2):
                            yield f"∂²{f}{out_path}/∂{name}{_keystr(p1)}∂{name2}{p2}", leaf
                continue
            sup = _superscript(result.order) if result.order > 1 else ""
            for path, leaf in _leaves(block):
                yield f"∂{sup}{f}{out_path}/∂{name}{path}{sup}", leaf


class _Matrix(NamedTuple):
    """A Jacobian-like derivative as flattened-matrix blocks, with labels and leaf shapes."""

    blocks: list[list[Any]]
    row_labels: list[str]
    row_shapes: list[tuple[int, ...]]
    col_labels: list[str]
    col_shapes: list[tuple[int, ...]]


def _as_matrix(result: DerivativeResult, limits: DisplayLimits) -> _Matrix | None:
    """The blocks to draw when the derivative is a matrix too big to read as numbers, else None."""
    if result.kind not in ("jac", "hess") or result.point is None:
        return None
    if result.kind == "hess" and sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(result.value)) != 1:
        return None  # the Hessian of a non-scalar output is a stack of matrices: shown as rows
    row_labels, out_struct = _out_struct(result)
    col_labels = [f"{n}{p}" for n, a in _diff_args(result) for p, _ in _leaves(a)]
    col_shapes = [np.shape(leaf) for _, a in _diff_args(result) for _, leaf in _leaves(a)]
    row_shapes = col_shapes if result.kind == "hess" else [np.shape(leaf) for _, leaf in _leaves(result.value)]
    n_rows = sum(math.prod(s) for s in row_shapes)
    n_cols = sum(math.prod(s) for s in col_shapes)
    if min(n_rows, n_cols) <= 1 or max(n_rows, n_cols) <= limits.heatmap_above:
        return None
    multi = not isinstance(result.argnums, int)
    blocks = []
    for sub in out_struct.flatten_up_to(result.derivative):
        per_arg = list(sub) if multi else [sub]
        blocks.append([leaf for block in per_arg for leaf in jax.tree_util.tree_leaves(block)])
    return _Matrix(blocks, row_labels, row_shapes, col_labels, col_shapes)


def derivative_heatmap(result: DerivativeResult, limits: DisplayLimits) -> heatmap.Heatmap | None:
    """A heatmap of the flattened Jacobian or Hessian when it is too big to read as numbers."""
    m = _as_matrix(result, limits)
    return None if m is None else heatmap.render_blocks(*m)


def derivative_summary(result: DerivativeResult, limits: DisplayLimits) -> heatmap.MatrixSummary | None:
    """The heatmap's summary alone (shape, min, max, norm, zeros), without drawing the picture."""
    m = _as_matrix(result, limits)
    return None if m is None else heatmap.summarize_blocks(m.blocks, m.row_shapes, m.col_shapes)


def point_leaves(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(label, leaf)`` for every leaf of every argument of the point, e.g. ``("q['w']", w)``."""
    return [(f"{name}{path}", leaf) for name, a in point_rows(result) for path, leaf in _leaves(a)]


def _whole_program_hint(result: DerivativeResult, limits: DisplayLimits) -> str:
    """Where the whole program is when the rendering shows only its ends."""
    if result.jaxpr is None or result.jaxpr.count("\n") < limits.max_lines:
        return ""
    return f" ({result.jaxpr.count(chr(10)) + 1:,} lines; all of them in the result's .jaxpr)"


def point_rows(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(label, argument)`` for every argument of the point."""
    if result.point is None:
        return []
    names = result.param_names
    # Past the named parameters (values for *args): labelled as the derivative labels them.
    return [(names[i] if i < len(names) else f"arg{i}", a) for i, a in enumerate(result.point)]


def _source_text(result: DerivativeResult) -> str:
    return "given by at=" if result.point_source == "at=" else f"from {result.point_source}"


def _not_evaluated_text(result: DerivativeResult) -> str:
    missing = ", ".join(result.missing) or "its parameters"
    call = _signature(result) if result.bound_name else f"the result's .transformed({', '.join(result.param_names)})"
    return (
        f"not evaluated: no value for {missing} (no default, no notebook variable of that name). "
        f"Call {call}, or add at=... to evaluate here."
    )


def _title(result: DerivativeResult) -> str:
    return _KIND_TITLE[result.kind] + (f" (order {result.order})" if result.order > 1 else "")


def _signature(result: DerivativeResult) -> str:
    extra = {"jvp": ["v"], "vjp": ["u"]}.get(result.kind, [])
    return f"{result.bound_name}({', '.join([*result.param_names, *extra])})"


def _direction_label(result: DerivativeResult) -> str:
    return "tangent v" if result.kind == "jvp" else "cotangent u"


def _summary_text(s: heatmap.MatrixSummary) -> str:
    return (
        f"{s.shape[0]}x{s.shape[1]} matrix: min {s.min:.4g}, max {s.max:.4g}, norm {s.norm:.4g}, "
        f"{100 * s.zero_fraction:.1f}% zeros"
    )


def render_text(result: DerivativeResult, limits: DisplayLimits | None = None) -> str:
    """Readable plain text for terminal IPython and ``print``."""
    limits = limits or result.display_limits

    def entry(label: str, x: Any) -> str:
        # A matrix prints on several lines: keep its rows under the first one, not at the margin.
        head = f"    {label} = {type_tag(x)} "
        return head + format_array(x, limits.max_items).replace("\n", "\n" + " " * len(head))

    def entries(rows: Iterable[tuple[str, Any]]) -> list[str]:
        return [f"    {row}" if isinstance(row, Elided) else entry(*row) for row in elide(rows, limits)]

    lines = [f"{_title(result)} of {result.fn_name}: {result.composition}"]
    if result.mode_reason:
        lines.append(f"  mode    {result.mode_reason}")
    if result.point is None:
        lines.append("  " + _not_evaluated_text(result))
    else:
        lines.append(f"  point   ({_source_text(result)})")
        lines += entries(point_leaves(result))
        if result.direction is not None:
            lines.append(f"  {_direction_label(result)}")
            lines += entries((path or "·", leaf) for path, leaf in _leaves(result.direction))
        lines.append("  value")
        lines += entries((f"{result.fn_name}{path}", leaf) for path, leaf in _leaves(result.value))
        if result.has_aux:
            lines.append("  aux")
            lines += entries((f"aux{path}", leaf) for path, leaf in _leaves(result.aux))
        lines.append("  derivative")
        summary = derivative_summary(result, limits)  # the numbers only: text has no picture
        if summary is not None:
            lines.append(f"    {_summary_text(summary)} (a heatmap in notebooks)")
        else:
            lines += entries(derivative_rows(result))
    if result.check is not None:
        lines.append("  check   " + result.check.summary().replace("\n", "\n          "))
    if result.bound_name:
        lines.append(f"  bound   {_signature(result)}")
    if result.jaxpr:
        lines.append("  jaxpr" + _whole_program_hint(result, limits))
        lines += [f"    {ln}" for ln in elide_lines(result.jaxpr, limits).splitlines()]
    return "\n".join(lines)


_CSS = (
    # Classes doubled: JupyterLab's rendered-HTML rules (right-aligned cells, block <pre>) are as
    # specific as a single class and would win.
    "<style>.jgm-result{border-left:3px solid var(--jp-brand-color1,#1976d2);padding:2px 8px;"
    "font-size:var(--jp-content-font-size1,13px)}.jgm-result.jgm-result td{padding:1px 10px 1px 0;"
    "vertical-align:top;text-align:left;border:none;white-space:normal}"
    ".jgm-result.jgm-result tr{background:transparent}.jgm-result .jgm-k{opacity:.7;white-space:nowrap}"
    ".jgm-result.jgm-result code,.jgm-result.jgm-result pre{font-family:var(--jp-code-font-family,monospace);"
    "background:transparent;margin:0;padding:0;border:none;white-space:pre;word-break:normal;"
    "overflow-wrap:normal}.jgm-result.jgm-result pre{display:inline-block;vertical-align:top}"
    ".jgm-result .jgm-tag{opacity:.6;margin-right:.5em}"
    ".jgm-pass{color:var(--jp-success-color1,#388e3c);font-weight:600}"
    ".jgm-fail{color:var(--jp-error-color1,#d32f2f);font-weight:600}"
    ".jgm-heat{display:grid;grid-template-columns:auto auto;gap:2px 6px;align-items:start}"
    ".jgm-heat .jgm-axis{font-size:11px;opacity:.8;position:relative}"
    ".jgm-heat img{image-rendering:pixelated;border:1px solid var(--jp-border-color2,#8888)}</style>"
)


def _cell(label: str, body: str) -> str:
    return f"<tr><td class='jgm-k'>{html.escape(label)}</td><td>{body}</td></tr>"


def _png_src(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@functools.cache
def _colorbar_src() -> str:
    return _png_src(heatmap.colorbar_png())  # the same legend under every heatmap


def _heatmap_html(h: heatmap.Heatmap, limits: DisplayLimits | None = None) -> str:
    """The picture with its block labels along both axes, a colour bar and the summary.

    With many blocks (leaves), only the first and last few are labelled; one span stands for
    the rest, so the HTML stays small.
    """
    rows, cols = h.summary.shape
    limits = limits or DisplayLimits()

    def labels(blocks: tuple[heatmap.Block, ...], total: int, px: int, vertical: bool) -> str:
        spans = []
        shown = elide(blocks, limits)
        for k, b in enumerate(shown):
            if isinstance(b, Elided):  # the blocks between its neighbours, as one span
                start, end = shown[k - 1].start + shown[k - 1].size, shown[k + 1].start
                b = heatmap.Block(str(b), start, end - start)
            size = max(1, round(b.size / total * px))
            style = f"height:{size}px" if vertical else f"width:{size}px;display:inline-block;text-align:center"
            spans.append(
                f"<div style='{style};overflow:hidden;white-space:nowrap' title='{html.escape(b.label)} "
                f"[{b.start}:{b.start + b.size}]'>{html.escape(b.label)}</div>"
            )
        return "".join(spans)

    pooled = " (pooled: the largest-magnitude entry of each block)" if h.pooled else ""
    return (
        "<div class='jgm-heat'>"
        f"<div></div><div class='jgm-axis' style='width:{h.width}px'>{labels(h.cols, cols, h.width, False)}</div>"
        f"<div class='jgm-axis' style='text-align:right'>{labels(h.rows, rows, h.height, True)}</div>"
        f"<img src='{_png_src(h.png)}' width='{h.width}' height='{h.height}' alt='heatmap'/>"
        "<div></div><div class='jgm-axis'>"
        f"{-h.vmax:.3g} <img src='{_colorbar_src()}' width='160' height='10' "
        f"style='vertical-align:middle' alt='colour scale'/> {h.vmax:.3g}<br>"
        f"{html.escape(_summary_text(h.summary))}{pooled}"
        "</div></div>"
    )


def _array_html(x: Any, limits: DisplayLimits) -> str:
    return (
        f"<span class='jgm-tag'>{html.escape(type_tag(x))}</span> "
        f"<pre>{html.escape(format_array(x, limits.max_items))}</pre>"
    )


def _check_html(check: GradCheck) -> str:
    verdict = (
        "<span class='jgm-pass'>✓ matches finite differences</span>"
        if check.passed
        else "<span class='jgm-fail'>✗ does NOT match finite differences</span>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(a.name)}</td><td class='{'jgm-pass' if a.passed else 'jgm-fail'}'>"
        f"{'ok' if a.passed else 'mismatch'}</td><td>{a.max_abs_error:.2e}</td><td>{a.max_rel_error:.2e}</td>"
        f"<td>{a.atol:.0e} / {a.rtol:.0e}</td><td>{_probes(a)}</td></tr>"
        for a in check.args
    )
    head = "<tr><td></td><td></td><td>max abs err</td><td>max rel err</td><td>atol / rtol</td><td>directions</td></tr>"
    note = f"<div class='jgm-tag'>{html.escape(check.note)}</div>" if check.note else ""
    about = f"<span class='jgm-tag'>({check.dtype}, step {check.step:.2g})</span>"
    return f"{verdict} {about}<table>{head}{rows}</table>{note}"


def _probes(a: ArgCheck) -> str:
    return "every element" if a.exhaustive else f"{a.directions} random"


def render_html(result: DerivativeResult, limits: DisplayLimits | None = None) -> str:
    """A compact HTML table: function, point and its source, value, derivative, binding."""
    limits = limits or result.display_limits

    def cells(leaves: Iterable[tuple[str, Any]]) -> list[str]:
        return [
            _cell("", f"<span class='jgm-tag'>{row}</span>")
            if isinstance(row, Elided)
            else _cell(row[0], _array_html(row[1], limits))
            for row in elide(leaves, limits)
        ]

    rows = [_cell("built", f"<code>{html.escape(result.composition)}</code>")]
    if result.mode_reason:
        rows.append(_cell("mode", html.escape(result.mode_reason)))
    if result.point is None:
        rows.append(_cell("point", html.escape(_not_evaluated_text(result))))
    else:
        rows += cells(point_leaves(result))
        rows.append(_cell("point", html.escape(_source_text(result))))
        if result.direction is not None:
            label = _direction_label(result)
            rows += cells((f"{label}{path}", leaf) for path, leaf in _leaves(result.direction))
        rows += cells((f"{result.fn_name}{p}", leaf) for p, leaf in _leaves(result.value))
        if result.has_aux:
            rows += cells((f"aux{path}", leaf) for path, leaf in _leaves(result.aux))
        picture = derivative_heatmap(result, limits)
        if picture is not None:
            rows.append(_cell("derivative", _heatmap_html(picture, limits)))
        else:
            rows += cells(derivative_rows(result))
    if result.check is not None:
        rows.append(_cell("check", _check_html(result.check)))
    if result.bound_name:
        rows.append(_cell("bound", f"<code>{html.escape(_signature(result))}</code>"))
    jaxpr = ""
    if result.jaxpr:
        jaxpr = (
            f"<details><summary>jaxpr of <code>{html.escape(result.composition)}</code>"
            f"{html.escape(_whole_program_hint(result, limits))}</summary>"
            f"<pre>{html.escape(elide_lines(result.jaxpr, limits))}</pre></details>"
        )
    head = f"<b>{html.escape(_title(result))}</b> of <code>{html.escape(result.fn_name)}</code>"
    return f"{_CSS}<div class='jgm-result'>{head}<table>{''.join(rows)}</table>{jaxpr}</div>"
