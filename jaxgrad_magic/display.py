"""Pure renderers: a result -> its sections -> text or HTML. Only small summaries leave the device.

:func:`layout` turns a result into a heading and a list of :class:`Section` records (plain
strings, plus what only HTML draws: a heatmap's blocks, a check's table, a folded program).
:func:`render_text` and :func:`render_html` are two small renderers of those same sections,
so the two renderings always show the same things in the same order.
"""

from __future__ import annotations

import base64
import functools
import html
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import jax
import numpy as np

from . import heatmap, norms
from .argnums import Argnums, param_name
from .formatting import format_array, number, scientific

if TYPE_CHECKING:
    from .curvature import Spectrum
    from .gradcheck import GradCheck
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


def _keystr(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) if path else ""


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(_keystr(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _diff_args(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(name, argument)`` for each differentiated argument."""
    idx = Argnums.of(result.argnums).positions
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
    multi = not Argnums.of(result.argnums).single
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


class Matrix(NamedTuple):
    """A Jacobian-like derivative as flattened-matrix blocks, with labels and leaf shapes."""

    blocks: list[list[Any]]
    row_labels: list[str]
    row_shapes: list[tuple[int, ...]]
    col_labels: list[str]
    col_shapes: list[tuple[int, ...]]


def _as_matrix(result: DerivativeResult, limits: DisplayLimits) -> Matrix | None:
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
    multi = not Argnums.of(result.argnums).single
    blocks = []
    for sub in out_struct.flatten_up_to(result.derivative):
        per_arg = list(sub) if multi else [sub]
        blocks.append([leaf for block in per_arg for leaf in jax.tree_util.tree_leaves(block)])
    return Matrix(blocks, row_labels, row_shapes, col_labels, col_shapes)


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
    return f"({result.jaxpr.count(chr(10)) + 1:,} lines; all of them in the result's .jaxpr)"


def point_rows(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(label, argument)`` for every argument of the point."""
    if result.point is None:
        return []
    names = result.param_names
    # Past the named parameters (values for *args): labelled as the derivative labels them.
    return [(param_name(names, i), a) for i, a in enumerate(result.point)]


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
        f"{s.shape[0]}x{s.shape[1]} matrix: min {number(s.min, 4)}, max {number(s.max, 4)}, "
        f"norm {number(s.norm, 4)}, {100 * s.zero_fraction:.1f}% zeros"
    )


# ---------------------------------------------------------------------------- sections


class Entry(NamedTuple):
    """One labelled value, e.g. ``∂f/∂x = f32[3] [1, 2, 3]``.

    Attributes:
      label: what the value is (``x``, ``∂f/∂x``, ``aux['half']``).
      tag: its type, JAX-style (``f32[3]``).
      text: the value, formatted; a matrix spans several lines.
    """

    label: str
    tag: str
    text: str


class CheckArg(NamedTuple):
    """One argument's line of a finite-difference check, every number already written out."""

    name: str
    passed: bool
    abs_error: str
    rel_error: str
    atol: str
    rtol: str
    probes: str  # "every element" or "16 random directions"
    noise: str = ""  # "rounding noise up to 1e-05", when rounding rather than atol sets the bar
    one_sided: str = ""  # "2 one-sided", near a domain edge; "at a finer step" past a kink


class CheckReport(NamedTuple):
    """A finite-difference check as the renderings show it."""

    passed: bool
    dtype: str  # "float32", or "bfloat16 (differenced in float32)"
    step: str
    args: tuple[CheckArg, ...]
    note: str


class Section(NamedTuple):
    """One part of a rendered result: a title, a short note after it, and what it holds.

    At most one of ``entries``, ``matrix``, ``check`` and ``program`` is set; ``spectrum`` comes
    with the entries that give its numbers.

    Attributes:
      title: ``point``, ``value``, ``derivative``, ``check``...; empty for a note alone.
      note: one line after the title (where the point came from, why this mode).
      code: the note is code (the bound signature).
      entries: labelled values, with an :class:`Elided` count where a long tree was cut.
      matrix: a derivative too big to read as numbers: summarised in text, drawn in HTML.
      check: a finite-difference check.
      program: a program's text (already cut to ``max_lines``): folded away in HTML.
      spectrum: a Hessian's spectrum, whose density HTML draws (text has the numbers alone).
    """

    title: str
    note: str = ""
    code: bool = False
    entries: tuple[Entry | Elided, ...] = ()
    matrix: Matrix | None = None
    check: CheckReport | None = None
    program: str | None = None
    spectrum: Spectrum | None = None


class Layout(NamedTuple):
    """A result, ready to render: its heading and its sections in order."""

    title: str  # "gradient", "Hessian (order 2)"...
    fn_name: str
    composition: str  # the JAX expression that was built
    sections: tuple[Section, ...]


def _check_report(check: GradCheck) -> CheckReport:
    where = f" (differenced in {check.differenced_in})" if check.differenced_in not in ("", check.dtype) else ""
    args = tuple(
        CheckArg(
            name=a.name,
            passed=a.passed,
            abs_error=scientific(a.max_abs_error),
            rel_error=scientific(a.max_rel_error),
            atol=scientific(a.atol, 0),
            rtol=scientific(a.rtol, 0),
            probes="every element" if a.exhaustive else f"{a.directions} random directions",
            # Only worth a word when rounding, not atol, sets the bar.
            noise=f"rounding noise up to {scientific(a.noise, 0)}" if a.noise > a.atol else "",
            one_sided=", ".join(
                filter(None, [f"{a.one_sided} one-sided" if a.one_sided else "", "at a finer step" * a.refined])
            ),
        )
        for a in check.args
    )
    return CheckReport(check.passed, check.dtype + where, number(check.step, 2), args, check.note)


def _norms_section(result: DerivativeResult, limits: DisplayLimits) -> Section | None:
    """The gradient's norm per leaf, for a gradient of more than one leaf: vanishing and exploding
    layers stand out (the largest and smallest are marked, and always shown). Not for scalars
    alone, whose norms are the derivative's own numbers."""
    leaves = jax.tree_util.tree_leaves(result.derivative) if result.kind == "grad" else []
    if len(leaves) < 2 or all(np.size(leaf) == 1 for leaf in leaves) or not result.grad_norms:
        return None
    grad_norms = result.grad_norms
    rows = norms.shown(grad_norms, limits.max_leaves, max(1, min(limits.edge_leaves, limits.max_leaves // 2)))
    entries = tuple(Elided(row) if isinstance(row, int) else Entry(row.label, "norm", row.text) for row in rows)
    return Section("norms", "of the gradient, per leaf in tree order", entries=entries)


def layout(result: DerivativeResult, limits: DisplayLimits | None = None) -> Layout:
    """Everything a rendering of ``result`` shows, in the order it shows it.

    Both :func:`render_text` and :func:`render_html` are made from this, so they never
    disagree on what is shown or where. Only the kept rows of a long tree are formatted.

    Args:
      result: the result to show.
      limits: how much to show; the result's own limits when None.
    """
    limits = limits or result.display_limits

    def entries(rows: Iterable[tuple[str, Any]]) -> tuple[Entry | Elided, ...]:
        return tuple(
            row if isinstance(row, Elided) else Entry(row[0], type_tag(row[1]), format_array(row[1], limits.max_items))
            for row in elide(rows, limits)
        )

    f = result.fn_name
    parts = []
    if result.mode_reason:
        parts.append(Section("mode", result.mode_reason))
    if result.point is None:
        parts.append(Section("", _not_evaluated_text(result)))
    else:
        parts.append(Section("point", f"({_source_text(result)})", entries=entries(point_leaves(result))))
        if result.direction is not None:
            rows = ((path or "·", leaf) for path, leaf in _leaves(result.direction))
            parts.append(Section(_direction_label(result), entries=entries(rows)))
        parts.append(Section("value", entries=entries((f"{f}{path}", leaf) for path, leaf in _leaves(result.value))))
        if result.has_aux:
            parts.append(Section("aux", entries=entries((f"aux{path}", leaf) for path, leaf in _leaves(result.aux))))
        if result.spectrum is not None:  # the matrix was never formed
            parts.append(spectrum_section(result.spectrum))
        elif (matrix := _as_matrix(result, limits)) is not None:
            parts.append(Section("derivative", matrix=matrix))
        else:
            parts.append(Section("derivative", entries=entries(derivative_rows(result))))
        if (norms_section := _norms_section(result, limits)) is not None:
            parts.append(norms_section)
    if result.check is not None:
        parts.append(Section("check", check=_check_report(result.check)))
    if result.bound_name:
        parts.append(Section("bound", _signature(result), code=True))
    if result.jaxpr:
        parts.append(Section("jaxpr", _whole_program_hint(result, limits), program=elide_lines(result.jaxpr, limits)))
    return Layout(_title(result), f, result.composition, tuple(parts))


# ---------------------------------------------------------------------------- text


def _check_lines(c: CheckReport) -> list[str]:
    lines = [f"{'PASS' if c.passed else 'FAIL'}: central differences, {c.dtype}, step {c.step}·|x|"]
    for a in c.args:
        tolerance = ", ".join(filter(None, [f"atol {a.atol}", f"rtol {a.rtol}", a.noise]))
        probes = ", ".join(filter(None, [a.probes, a.one_sided]))
        lines.append(
            f"  {a.name}: {'ok' if a.passed else 'MISMATCH'}  max abs err {a.abs_error}, "
            f"max rel err {a.rel_error} ({tolerance}; {probes})"
        )
    if c.note:
        lines.append(f"  note: {c.note}")
    return lines


def _entry_text(row: Entry | Elided) -> str:
    if isinstance(row, Elided):
        return f"    {row}"
    # A matrix prints on several lines: keep its rows under the first one, not at the margin.
    head = f"    {row.label} = {row.tag} " if row.tag else f"    {row.label} = "
    return head + row.text.replace("\n", "\n" + " " * len(head))


def _section_text(s: Section) -> list[str]:
    if s.check is not None:
        first, *rest = _check_lines(s.check)
        return [f"  {s.title:<8}{first}", *(" " * 10 + line for line in rest)]
    lines = [f"  {s.title:<8}{s.note}".rstrip() if s.title else f"  {s.note}"]
    lines += [_entry_text(row) for row in s.entries]
    if s.matrix is not None:  # the numbers only: text has no picture
        summary = heatmap.summarize_blocks(s.matrix.blocks, s.matrix.row_shapes, s.matrix.col_shapes)
        lines.append(f"    {_summary_text(summary)} (a heatmap in notebooks)")
    if s.program is not None:
        lines += [f"    {line}" for line in s.program.splitlines()]
    if s.spectrum is not None:
        grid = s.spectrum.density.grid
        lines.append(f"    density over [{number(grid[0], 4)}, {number(grid[-1], 4)}] (a plot in notebooks)")
    return lines


def render_text(result: DerivativeResult, limits: DisplayLimits | None = None) -> str:
    """Readable plain text for terminal IPython and ``print``."""
    page = layout(result, limits)
    lines = [f"{page.title} of {page.fn_name}: {page.composition}"]
    for s in page.sections:
        lines += _section_text(s)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- HTML


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
    ".jgm-result .jgm-tag{opacity:.6;margin-right:.5em}.jgm-result .jgm-e .jgm-k{padding-left:1.2em}"
    ".jgm-pass{color:var(--jp-success-color1,#388e3c);font-weight:600}"
    ".jgm-fail{color:var(--jp-error-color1,#d32f2f);font-weight:600}"
    ".jgm-heat{display:grid;grid-template-columns:auto auto;gap:2px 6px;align-items:start}"
    ".jgm-heat .jgm-axis{font-size:11px;opacity:.8;position:relative}"
    ".jgm-heat img{image-rendering:pixelated;border:1px solid var(--jp-border-color2,#8888)}</style>"
)


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
        f"{number(-h.vmax, 3)} <img src='{_colorbar_src()}' width='160' height='10' "
        f"style='vertical-align:middle' alt='colour scale'/> {number(h.vmax, 3)}<br>"
        f"{html.escape(_summary_text(h.summary))}{pooled}"
        "</div></div>"
    )


def _entry_html(row: Entry | Elided) -> str:
    if isinstance(row, Elided):
        return f"<tr class='jgm-e'><td class='jgm-k'></td><td><span class='jgm-tag'>{row}</span></td></tr>"
    return (
        f"<tr class='jgm-e'><td class='jgm-k'>{html.escape(row.label)}</td><td>"
        f"<span class='jgm-tag'>{html.escape(row.tag)}</span> <pre>{html.escape(row.text)}</pre></td></tr>"
    )


def _check_html(c: CheckReport) -> str:
    verdict = (
        "<span class='jgm-pass'>✓ matches finite differences</span>"
        if c.passed
        else "<span class='jgm-fail'>✗ does NOT match finite differences</span>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(a.name)}</td><td class='{'jgm-pass' if a.passed else 'jgm-fail'}'>"
        f"{'ok' if a.passed else 'mismatch'}</td><td>{a.abs_error}</td><td>{a.rel_error}</td>"
        f"<td>{html.escape(', '.join(filter(None, [f'{a.atol} / {a.rtol}', a.noise])))}</td>"
        f"<td>{html.escape(', '.join(filter(None, [a.probes, a.one_sided])))}</td></tr>"
        for a in c.args
    )
    head = "<tr><td></td><td></td><td>max abs err</td><td>max rel err</td><td>atol / rtol</td><td>directions</td></tr>"
    note = f"<div class='jgm-tag'>{html.escape(c.note)}</div>" if c.note else ""
    about = f"<span class='jgm-tag'>({html.escape(c.dtype)}, step {c.step}·|x|)</span>"
    return f"{verdict} {about}<table>{head}{rows}</table>{note}"


def _section_html(s: Section, page: Layout, limits: DisplayLimits) -> str:
    if s.check is not None:
        body = _check_html(s.check)
    elif s.matrix is not None:
        body = _heatmap_html(heatmap.render_blocks(*s.matrix), limits)
    elif s.program is not None:
        body = (
            f"<details><summary>{html.escape(s.title)} of <code>{html.escape(page.composition)}</code>"
            f"{html.escape(' ' + s.note if s.note else '')}</summary><pre>{html.escape(s.program)}</pre></details>"
        )
    else:
        body = f"<code>{html.escape(s.note)}</code>" if s.code else html.escape(s.note)
    head = f"<tr class='jgm-h'><td class='jgm-k'>{html.escape(s.title)}</td><td>{body}</td></tr>"
    return head + "".join(_entry_html(row) for row in s.entries) + _density_html(s.spectrum)


def render_html(result: DerivativeResult, limits: DisplayLimits | None = None) -> str:
    """A compact HTML table of the same sections as :func:`render_text`, with pictures."""
    limits = limits or result.display_limits
    page = layout(result, limits)
    head = (
        f"<b>{html.escape(page.title)}</b> of <code>{html.escape(page.fn_name)}</code>: "
        f"<code>{html.escape(page.composition)}</code>"
    )
    rows = "".join(_section_html(s, page, limits) for s in page.sections)
    return f"{_CSS}<div class='jgm-result'>{head}<table>{rows}</table></div>"


# ---------------------------------------------------------------------------- spectrum


def spectrum_section(sp: Spectrum) -> Section:
    """A Hessian's spectrum as one section: the extreme eigenvalues, the trace, the density, the cost.

    A negative smallest eigenvalue is named a saddle direction; the condition number is shown
    only where both ends are surely positive.
    """

    def values(xs: Any) -> str:
        return ", ".join(number(v, 4) for v in xs)

    negative = int(np.sum(np.asarray(sp.bottom) < -sp.noise))
    saddle = ""
    if negative:
        saddle = f"  (negative: {'a saddle direction' if negative == 1 else f'{negative} saddle directions'})"
    rows = [
        Entry("λmax", "", f"{number(sp.top[0], 6)} (residual {float(sp.top_error[0]):.1g})"),
        Entry(f"top {sp.k}", "", values(sp.top)),
        Entry(f"bottom {sp.k}", "", values(sp.bottom) + saddle),
        Entry("trace", "", f"{number(sp.trace, 6)} ± {number(sp.trace_error, 2)} (Hutchinson, {sp.probes} probes)"),
    ]
    if sp.condition is not None:
        rows.append(Entry("condition", "", f"{number(sp.condition, 4)} (λmax / λmin)"))
    if sp.converged:
        how = f"converged to tol={sp.tol:g} in {sp.iterations} steps"
    else:
        worst = max(float(np.max(sp.top_error)), float(np.max(sp.bottom_error)))
        how = (
            f"not converged to tol={sp.tol:g} in {sp.iterations} steps: residuals up to {worst:.1g}, "
            "and each eigenvalue lies within its residual"
        )
    rows.append(Entry("Lanczos", "", how))
    rows.append(
        Entry("cost", "", f"{sp.hvps} Hessian-vector products; the {sp.size:,}x{sp.size:,} matrix was not formed")
    )
    return Section("spectrum", entries=tuple(rows), spectrum=sp)


def _density_html(sp: Spectrum | None) -> str:
    if sp is None:
        return ""
    from .spectrum_plot import HEIGHT, WIDTH, density_png  # matplotlib loads when a density is drawn

    d = sp.density
    png = density_png(d.grid, d.values, sp.top, sp.bottom, title=f"spectral density ({sp.probes} probes, SLQ)")
    alt = f"spectral density of the Hessian over [{number(d.grid[0], 4)}, {number(d.grid[-1], 4)}]"
    return (
        f"<tr class='jgm-e'><td class='jgm-k'>density</td><td><img src='{_png_src(png)}' width='{WIDTH}' "
        f"height='{HEIGHT}' alt='{html.escape(alt, quote=True)}'/></td></tr>"
    )


def _spectrum_title(sp: Spectrum) -> str:
    return f"Hessian spectrum of {sp.fn_name} ({sp.size:,} parameters)"


def render_spectrum_text(sp: Spectrum) -> str:
    """A spectrum alone (what :func:`jaxgrad_magic.spectrum` returns) as plain text."""
    return "\n".join([_spectrum_title(sp), *_section_text(spectrum_section(sp))])


def render_spectrum_html(sp: Spectrum) -> str:
    """A spectrum alone as HTML, with its density drawn."""
    section = spectrum_section(sp)
    page = Layout("Hessian spectrum", sp.fn_name, "", (section,))
    rows = _section_html(section, page, DisplayLimits())
    return f"{_CSS}<div class='jgm-result'><b>{html.escape(_spectrum_title(sp))}</b><table>{rows}</table></div>"
