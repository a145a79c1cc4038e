"""Pure renderers: a result -> text or HTML. Only small summaries leave the device."""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from .results import DerivativeResult

MAX_ITEMS = 24  # arrays with more elements are abbreviated
_SUPERSCRIPT = lambda n: str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))  # noqa: E731
_KIND_TITLE = {"grad": "gradient", "jac": "Jacobian", "hess": "Hessian"}


def type_tag(x: Any) -> str:
    """JAX-style ``f32[3,2]`` for an array or number."""
    if isinstance(x, bool | int | float | complex):
        return type(x).__name__  # a Python number: JAX treats it as weakly typed
    dtype = np.result_type(x)
    short = {"float": "f", "int": "i", "uint": "u", "complex": "c", "bool": "bool"}
    kind = next((v for k, v in short.items() if dtype.name.startswith(k)), dtype.name)
    bits = "" if kind == "bool" else str(dtype.itemsize * 8)
    return f"{kind}{bits}[{','.join(map(str, np.shape(x)))}]"


def format_array(x: Any, max_items: int = MAX_ITEMS) -> str:
    """A short, rounded rendering; big arrays are summarised without moving them whole."""
    size = math.prod(np.shape(x))
    if size > 100 * max_items and isinstance(x, jax.Array):
        # Only a few corner values and the statistics travel to the host.
        flat = x.reshape(-1)
        head = np.asarray(flat[:3])
        tail = np.asarray(flat[-3:])
        stats = np.asarray(jax.numpy.stack([x.min(), x.max(), jax.numpy.linalg.norm(flat)]))
        return (
            f"[{', '.join(f'{v:.4g}' for v in head)}, ..., {', '.join(f'{v:.4g}' for v in tail)}]"
            f"  min {stats[0]:.4g}, max {stats[1]:.4g}, norm {stats[2]:.4g}"
        )
    arr = np.asarray(x)
    if arr.ndim == 0:
        return f"{arr.item():.6g}" if np.issubdtype(arr.dtype, np.floating) else str(arr.item())
    with np.printoptions(precision=6, threshold=max_items, edgeitems=3, suppress=True):
        return np.array2string(arr, separator=", ")


def _keystr(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) if path else ""


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(_keystr(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def derivative_rows(result: DerivativeResult) -> Iterator[tuple[str, Any]]:
    """``(label, array)`` for every leaf of the derivative, e.g. ``("∂f/∂x", g)``."""
    f, wrt = result.fn_name, result.wrt
    multi = not isinstance(result.argnums, int)
    d = result.derivative
    if result.kind == "jac":
        out_paths = [p for p, _ in _leaves(result.value)] or [""]
        per_out = jax.tree_util.tree_structure(result.value).flatten_up_to(d)
    else:
        out_paths, per_out = [""], [d]
    for out_path, sub in zip(out_paths, per_out, strict=True):
        blocks = list(zip(wrt, sub, strict=True)) if multi else [(wrt[0], sub)]
        for name, block in blocks:
            if result.kind == "hess":
                inner = list(zip(wrt, block, strict=True)) if multi else [(name, block)]
                for name2, b2 in inner:
                    for path, leaf in _leaves(b2):
                        yield f"∂²{f}/∂{name}∂{name2}{path}", leaf
                continue
            sup = _SUPERSCRIPT(result.order) if result.order > 1 else ""
            for path, leaf in _leaves(block):
                yield f"∂{sup}{f}{out_path}/∂{name}{path}{sup}", leaf


def point_rows(result: DerivativeResult) -> list[tuple[str, Any]]:
    """``(label, argument)`` for every argument of the point."""
    if result.point is None:
        return []
    names = result.param_names or tuple(f"arg{i}" for i in range(len(result.point)))
    return [(n, a) for n, a in zip(names, result.point, strict=False)]


def _source_text(result: DerivativeResult) -> str:
    if result.point_source == "at=":
        return "given by at="
    return f"from {result.point_source}"


def _not_evaluated_text(result: DerivativeResult) -> str:
    missing = ", ".join(result.missing) or "its parameters"
    args = ", ".join(result.param_names)
    call = f"{result.bound_name}({args})" if result.bound_name else f"the result's .transformed({args})"
    return (
        f"not evaluated: no value for {missing} (no default, no notebook variable of that name). "
        f"Call {call}, or add at=... to evaluate here."
    )


def _value_lines(tree: Any) -> list[tuple[str, str]]:
    return [(path, f"{type_tag(leaf)} {format_array(leaf)}") for path, leaf in _leaves(tree)]


def render_text(result: DerivativeResult) -> str:
    """Readable plain text for terminal IPython and ``print``."""
    title = _KIND_TITLE[result.kind] + (f" (order {result.order})" if result.order > 1 else "")
    lines = [f"{title} of {result.fn_name}: {result.composition}"]
    if result.mode_reason:
        lines.append(f"  mode    {result.mode_reason}")
    if result.point is None:
        lines.append("  " + _not_evaluated_text(result))
    else:
        lines.append(f"  point   ({_source_text(result)})")
        for name, arg in point_rows(result):
            for path, text in _value_lines(arg):
                lines.append(f"    {name}{path} = {text}")
        lines.append("  value")
        for path, text in _value_lines(result.value):
            lines.append(f"    {result.fn_name}{path} = {text}")
        if result.has_aux:
            lines.append("  aux")
            for path, text in _value_lines(result.aux):
                lines.append(f"    aux{path} = {text}")
        lines.append("  derivative")
        for label, leaf in derivative_rows(result):
            lines.append(f"    {label} = {type_tag(leaf)} {format_array(leaf)}")
    if result.bound_name:
        lines.append(f"  bound   {result.bound_name}({', '.join(result.param_names)})")
    return "\n".join(lines)


_CSS = (
    "<style>.jgm-result{border-left:3px solid var(--jp-brand-color1,#1976d2);padding:2px 8px;"
    "font-size:var(--jp-content-font-size1,13px)}.jgm-result td{padding:1px 8px 1px 0;"
    "vertical-align:top;text-align:left;border:none}.jgm-result .jgm-k{opacity:.7;white-space:nowrap}"
    ".jgm-result code,.jgm-result pre{font-family:var(--jp-code-font-family,monospace);"
    "background:transparent;margin:0;white-space:pre-wrap}.jgm-result .jgm-tag{opacity:.6}</style>"
)


def _cell(label: str, body: str) -> str:
    return f"<tr><td class='jgm-k'>{html.escape(label)}</td><td>{body}</td></tr>"


def _array_html(x: Any) -> str:
    return f"<span class='jgm-tag'>{html.escape(type_tag(x))}</span> <pre>{html.escape(format_array(x))}</pre>"


def render_html(result: DerivativeResult) -> str:
    """A compact HTML table: function, point and its source, value, derivative, binding."""
    title = _KIND_TITLE[result.kind] + (f" (order {result.order})" if result.order > 1 else "")
    rows = [
        _cell("built", f"<code>{html.escape(result.composition)}</code>"),
    ]
    if result.mode_reason:
        rows.append(_cell("mode", html.escape(result.mode_reason)))
    if result.point is None:
        rows.append(_cell("point", html.escape(_not_evaluated_text(result))))
    else:
        for name, arg in point_rows(result):
            for path, leaf in _leaves(arg):
                rows.append(_cell(f"{name}{path}", _array_html(leaf)))
        rows.append(_cell("point", html.escape(_source_text(result))))
        for path, leaf in _leaves(result.value):
            rows.append(_cell(f"{result.fn_name}{path}", _array_html(leaf)))
        if result.has_aux:
            for path, leaf in _leaves(result.aux):
                rows.append(_cell(f"aux{path}", _array_html(leaf)))
        for label, leaf in derivative_rows(result):
            rows.append(_cell(label, _array_html(leaf)))
    if result.bound_name:
        args = ", ".join(result.param_names)
        rows.append(_cell("bound", f"<code>{html.escape(result.bound_name)}({html.escape(args)})</code>"))
    head = f"<b>{html.escape(title)}</b> of <code>{html.escape(result.fn_name)}</code>"
    return f"{_CSS}<div class='jgm-result'>{head}<table>{''.join(rows)}</table></div>"
