"""Find the function a cell defines, from its source, with ``ast``."""

from __future__ import annotations

import ast

from .errors import JaxGradUsageError


def _is_lambda_assign(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return names[-1] if names else None
    if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Lambda) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def defined_functions(source: str) -> list[str]:
    """Names of the top-level ``def`` and ``name = lambda`` statements, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif (name := _is_lambda_assign(node)) is not None:
            names.append(name)
    return names


def defined_names(source: str) -> list[str]:
    """Every top-level name the source binds (for telling the user what a cell defined)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.extend(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.extend((a.asname or a.name).split(".")[0] for a in node.names)
    return list(dict.fromkeys(names))


def find_target(source: str, magic: str) -> str:
    """The name of the last top-level function the cell defines.

    Args:
      source: the cell's Python source (after IPython's transforms).
      magic: the magic's name, for the message.

    Returns:
      The function's name.

    Raises:
      JaxGradUsageError: the cell defines no function.
    """
    functions = defined_functions(source)
    if functions:
        return functions[-1]
    names = defined_names(source)
    what = f"it defines only {', '.join(names)}" if names else "it defines no names at all"
    raise JaxGradUsageError(
        f"%%{magic} needs a cell that defines a function (`def f(x): ...` or `f = lambda x: ...`), "
        f"but {what}. Define the function in the cell, or name an existing one with "
        f"`%%{magic} fn=NAME` or the line form `%{magic} NAME at=...`."
    )
