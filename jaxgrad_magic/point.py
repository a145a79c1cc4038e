"""Where to evaluate: ``at=``, else defaults, else notebook variables named like the parameters."""

from __future__ import annotations

import contextlib
import inspect
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeGuard

import jax
import numpy as np

from .errors import JaxGradUsageError
from .modules import is_module

AT, DEFAULTS, VARIABLES, NONE = "at=", "defaults", "notebook variables", "none"


class _Missing:
    """Marker for an argument or option that was not given."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Point(NamedTuple):
    """The arguments a function is evaluated at, and where they came from.

    Attributes:
      args: all positional arguments, or None when no point could be found.
      source: ``"at="``, ``"defaults"``, ``"notebook variables"``,
        ``"defaults and notebook variables"`` or ``"none"``.
      names: per argument, the notebook variable it was read from (or None).
      missing: the parameters that could not be resolved (when ``args`` is None).
    """

    args: tuple[Any, ...] | None
    source: str
    names: tuple[str | None, ...]
    missing: tuple[str, ...] = ()


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_Facts = tuple[tuple[inspect.Parameter, ...], bool]
# fn -> (code, defaults, kwdefaults, facts): inspect.signature costs ~5 us (~10 us for a jax.jit
# wrapper), paid on every magic call otherwise. A plain function's parameters follow from exactly
# those three attributes; a JAX wrapper's from those of the function it wraps.
_known: weakref.WeakKeyDictionary[Callable[..., Any], tuple[Any, Any, Any, _Facts]] = weakref.WeakKeyDictionary()


def _plain(fn: Any) -> TypeGuard[types.FunctionType]:
    return type(fn) is types.FunctionType and "__wrapped__" not in fn.__dict__ and "__signature__" not in fn.__dict__


def _signature_source(fn: Callable[..., Any]) -> types.FunctionType | None:
    """The plain function whose attributes decide ``fn``'s signature, or None when unknown.

    That is ``fn`` itself, or the function a JAX wrapper (``jax.jit``, ``jax.custom_jvp``)
    wraps; partials, methods and other callables are inspected on every call.
    """
    if _plain(fn):
        return fn
    if type(fn).__module__.startswith("jax"):
        inner = getattr(fn, "__wrapped__", None)
        if _plain(inner):
            return inner
    return None


def signature_facts(fn: Callable[..., Any]) -> tuple[tuple[inspect.Parameter, ...], bool]:
    """``(positional parameters, takes *args)`` of ``fn``; no signature counts as taking anything.

    Plain functions and JAX wrappers of one are answered from a cache checked against the
    function's code and defaults; other callables are inspected on every call.
    """
    source = _signature_source(fn)
    if source is not None:
        known = _known.get(fn)
        if (
            known
            and known[0] is source.__code__
            and known[1] is source.__defaults__
            and known[2] is source.__kwdefaults__
        ):
            return known[3]
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return (), True
    facts = (
        tuple(p for p in params if p.kind in _POSITIONAL),
        any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params),
    )
    if source is not None:
        with contextlib.suppress(TypeError):  # a wrapper without weak references: inspected every time
            _known[fn] = (source.__code__, source.__defaults__, source.__kwdefaults__, facts)
    return facts


def parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The positional parameters of ``fn`` (what ``argnums`` indexes)."""
    return list(signature_facts(fn)[0])


def is_number(leaf: Any) -> bool:
    """True when JAX takes ``leaf`` as numbers: a Python number, a JAX array (or anything with
    ``__jax_array__``), or a NumPy array or scalar of a numeric dtype.

    Whether those numbers can be differentiated (floating point) is a question of :func:`dtype_of`.
    """
    if isinstance(leaf, int | float | complex | jax.Array) or hasattr(leaf, "__jax_array__"):
        return True
    if isinstance(leaf, np.ndarray | np.generic):
        # bfloat16 and the other ml_dtypes have kind 'V': JAX's issubdtype knows them.
        return leaf.dtype.kind in "biufc" or jax.dtypes.issubdtype(leaf.dtype, np.inexact)
    return False


def dtype_of(leaf: Any) -> np.dtype:
    """The dtype of an array or a Python number (a bool is bool, not an int)."""
    if isinstance(leaf, bool):
        return np.dtype(bool)
    # The leaf's own dtype: np.result_type(array) is deprecated for JAX arrays, and slower.
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.result_type(leaf)


def is_numeric_tree(value: Any) -> bool:
    """True when every leaf of ``value`` is a number, an array or a module (a valid point)."""
    try:
        leaves = jax.tree_util.tree_leaves(value, is_leaf=is_module)
    except (TypeError, ValueError):  # not a pytree, e.g. a dict with keys of mixed types
        return False
    return bool(leaves) and all((is_number(v) and not isinstance(v, bool)) or is_module(v) for v in leaves)


def resolve_point(
    fn: Callable[..., Any],
    fn_name: str,
    at: Any = MISSING,
    at_names: tuple[str | None, ...] | None = None,
    namespace: Mapping[str, Any] | None = None,
    facts: _Facts | None = None,
) -> Point:
    """Resolve the point to evaluate ``fn`` at.

    Args:
      fn: the function.
      fn_name: its name, for messages.
      at: the ``at=`` value (one argument, or a tuple of all arguments), or MISSING. A
        function of one positional parameter takes a tuple as that one argument, unless
        it also takes ``*args``.
      at_names: the variable names written in ``at=`` (``at=(x, y)`` -> ``("x", "y")``).
      namespace: the notebook's namespace, searched for variables named like parameters.
      facts: ``fn``'s :func:`signature_facts` when the caller has them already.

    Returns:
      The point; ``args`` is None when nothing could be resolved.

    Raises:
      JaxGradUsageError: ``at=`` has the wrong number of arguments.
    """
    params, varargs = signature_facts(fn) if facts is None else facts
    total = len(params)
    required = sum(p.default is inspect.Parameter.empty for p in params)
    if at is not MISSING:
        spread = isinstance(at, tuple) and (total > 1 or varargs)  # a tuple of all the arguments
        if not spread and (total <= 1 or required <= 1):
            args: tuple[Any, ...] = (at,)
            names = (at_names[0] if at_names and len(at_names) == 1 else None,)
        elif spread and required <= len(at) and (len(at) <= total or varargs):
            args = at
            names = at_names if at_names and len(at_names) == len(at) else (None,) * len(at)
        else:
            more = " or more" if varargs else f" to {total}" if required < total else ""
            got = f"a tuple of {len(at)}" if isinstance(at, tuple) else "one value"
            pnames = ", ".join(p.name for p in params)
            raise JaxGradUsageError(
                f"at= must give {fn_name}({pnames}) a tuple of {required}{more} arguments, but got {got}. "
                f"Write `at=({pnames})` with one value per parameter."
            )
        defaults = tuple(p.default for p in params[len(args) :])
        return Point(args + defaults, AT, tuple(names) + (None,) * len(defaults))

    namespace = namespace or {}
    args_list: list[Any] = []
    names_list: list[str | None] = []
    missing: list[str] = []
    used_default = used_variable = False
    for p in params:
        if p.default is not inspect.Parameter.empty:
            args_list.append(p.default)
            names_list.append(None)
            used_default = True
        elif p.name in namespace and is_numeric_tree(namespace[p.name]):
            args_list.append(namespace[p.name])
            names_list.append(p.name)
            used_variable = True
        else:
            missing.append(p.name)
    if missing or not params:
        return Point(None, NONE, (), tuple(missing))
    source = (
        "defaults and notebook variables"
        if used_default and used_variable
        else (DEFAULTS if used_default else VARIABLES)
    )
    return Point(tuple(args_list), source, tuple(names_list))
