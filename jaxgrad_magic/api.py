"""The plain Python API: ``grad``, ``jac`` and ``hess`` of a function at a point, as results.

The magics call :func:`derive` too; nothing here imports IPython or widgets.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import numpy as np

from . import curvature
from .argnums import Argnums, JaxArgnums, as_argnums, param_name
from .cache import CACHE, function_key
from .errors import JaxGradUsageError, call, did_you_mean, entry, examples, explain_jax_error, first_line
from .gradcheck import check_derivative, check_directional
from .modules import Lifted, calling, lift
from .objective import make_objective
from .point import MISSING, Point, dtype_of, is_number, resolve_point, signature_facts
from .results import DerivativeResult
from .spec import as_flag
from .transforms import (
    Built,
    Kind,
    Transform,
    build,
    choose_mode,
    choose_order_method,
    composition,
    direction_error,
    not_a_direction,
)

_VECTOR = {"jvp": "tangent", "vjp": "cotangent"}


def default_name(kind: Kind, fn_name: str, order: int = 1) -> str:
    """Where the magics bind the transformed function: ``f_grad``, ``f_jac``, ``f_hess`` (``f_grad2``)."""
    return f"{fn_name.rsplit('.', 1)[-1]}_{kind}{order if order > 1 else ''}"


def _argnums_for(
    kind: Kind,
    fn_name: str,
    param_names: tuple[str, ...],
    has_varargs: bool,
    picked: Argnums | None,
    wrt: tuple[str, ...] | None,
) -> Argnums:
    """The positions to differentiate, from ``argnums`` (read already) or ``wrt``, checked against ``fn``."""
    if wrt is not None:
        idx = []
        for name in wrt:
            if name not in param_names:
                raise JaxGradUsageError(
                    f"wrt={name}: {fn_name} has no parameter '{name}'.{did_you_mean(name, param_names)} "
                    f"Its parameters are ({', '.join(param_names)}); name one of them or use argnums=."
                )
            idx.append(param_names.index(name))
        picked = Argnums(tuple(idx), len(idx) == 1)
    n = len(param_names)
    if n == 0 and not has_varargs:
        raise JaxGradUsageError(
            f"{fn_name}() takes no positional parameters, so there is nothing to differentiate. Give it "
            f"the input as a parameter (`def {fn_name.rsplit('.', 1)[-1]}(x): ...`)."
        )
    if picked is None:
        return Argnums.of(0)
    if picked.outside(None if has_varargs else n) is not None:
        numbered = f"numbered 0 to {n - 1}" if n > 1 else "number 0"
        raise JaxGradUsageError(
            f"argnums={picked.jax} is out of range: {fn_name}({', '.join(param_names)}) has {n} "
            f"positional parameter{'s' if n != 1 else ''}, {numbered}. Use "
            f"`argnums=0`{' or `argnums=0,1`' if n > 1 else ''}, or name them with `wrt=`. "
            f"({examples(kind)} shows examples.)"
        )
    if picked.repeats:
        given = f"wrt={','.join(wrt)}" if wrt is not None else f"argnums={picked.jax}"
        raise JaxGradUsageError(f"{given} repeats an argument; list each argument once.")
    return picked


def _check_differentiable(fn_name: str, args: tuple[Any, ...], picked: Argnums, names: tuple[str, ...]) -> None:
    """Every differentiated argument exists and holds floating-point numbers: what JAX can differentiate."""
    try:
        jax.tree_util.tree_flatten(args)
    except (TypeError, ValueError) as exc:  # e.g. a dict whose keys do not sort: {'w': 1.0, 1: 2.0}
        raise JaxGradUsageError(
            f"The point for {fn_name} is not a pytree JAX can flatten ({first_line(exc)}). Use numbers, arrays, "
            "and lists, tuples or dicts of them, with dict keys of one type (all strings, say)."
        ) from None
    for i in picked.positions:
        if i >= len(args):
            raise JaxGradUsageError(
                f"argnums={picked.jax} asks for argument {i} of {fn_name}, but the point has only "
                f"{len(args)} argument{'s' * (len(args) != 1)}. Give every argument in `at=(...)`."
            )
        name = param_name(names, i)
        leaves = jax.tree_util.tree_leaves(args[i])
        bad = next((leaf for leaf in leaves if not is_number(leaf)), None)
        if not leaves or bad is not None:
            what = f"{args[i]!r}"[:60] if bad is None else f"a {type(bad).__name__} ({bad!r:.40})"
            raise JaxGradUsageError(
                f"Cannot differentiate {fn_name} with respect to {name}: it is {what}, and derivatives "
                "need numbers. Pass a float, an array, or a pytree (dict/list/tuple) of arrays, e.g. "
                f"`at=1.0` or `at=jnp.array([1.0, 2.0])`."
            )
        for leaf in leaves:
            dtype = dtype_of(leaf)
            if not jax.dtypes.issubdtype(dtype, np.inexact):
                shown = repr(leaf) if np.ndim(leaf) == 0 else f"an array of dtype {dtype}"
                plain_int = isinstance(leaf, int) and not isinstance(leaf, bool)
                example = f" (`{leaf}.0` instead of `{leaf}`)" if plain_int else ""
                raise JaxGradUsageError(
                    f"Cannot differentiate {fn_name} with respect to {name} = {shown}: it is an "
                    f"integer or boolean ({dtype}), and derivatives need floating-point inputs. "
                    f"Pass a float{example}, or convert with `jnp.asarray({name}, dtype=jnp.float32)`."
                )


def derive(
    kind: Kind,
    fn: Callable[..., Any],
    *,
    at: Any = MISSING,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    order: int = 1,
    mode: str = "auto",
    aux: bool = False,
    jit: bool = True,
    fn_name: str | None = None,
    tangent: Any = MISSING,
    cotangent: Any = MISSING,
    check: bool = False,
    show: str | None = None,
    spectrum: curvature.Request | None = None,
) -> DerivativeResult:
    """Build ``kind`` of ``fn`` and evaluate it at a point.

    The core of the package: a function, its point and what to derive go in, a plain result
    comes out. Where the point came from in a notebook, the names bound there, the panel and
    how much a display shows belong to the IPython layer.

    Args:
      kind: ``"grad"``, ``"jac"``, ``"hess"``, ``"jvp"`` or ``"vjp"``.
      fn: the function to differentiate.
      at: the point: one argument, a tuple of all positional arguments, or a
        :class:`~jaxgrad_magic.point.Point` already resolved. When missing, the function's
        defaults are used; when it has none, the derivative is built but not evaluated.
      argnums: which positional arguments to differentiate (default 0).
      wrt: parameter names instead of ``argnums``.
      order: repeated ``grad`` (scalar inputs), e.g. 2 for the second derivative.
      mode: Jacobian mode, ``"rev"``, ``"fwd"`` or ``"auto"`` (from the shapes).
      aux: the function returns ``(output, aux)`` (JAX's ``has_aux``).
      jit: compile with ``jax.jit``.
      fn_name: the name to show (default ``fn.__name__``).
      tangent: for ``jvp``, the direction ``v`` in ``J v`` (a tuple for several argnums).
      cotangent: for ``vjp``, the ``u`` in ``uᵀ J`` (shaped like the output).
      check: compare the derivative with central finite differences at the point.
      show: ``"jaxpr"`` to keep the transformed program (``jax.make_jaxpr``) as text.
      spectrum: for ``hess``, find the Hessian's spectrum from Hessian-vector products instead
        of forming it (the result's ``derivative`` is then None); see :mod:`.curvature`.

    Returns:
      A :class:`DerivativeResult`.

    Raises:
      JaxGradUsageError: bad options, or a known JAX misuse, explained.
    """
    started = time.perf_counter()
    # NumPy scalars (np.int64(1), np.True_) are what array code hands around: take them as Python's.
    picked = None if argnums is None else as_argnums(argnums)
    if type(aux) is not bool:
        aux = as_flag("aux", aux)
    fn_name = require_function(fn, fn_name, kind)
    params, has_varargs = signature_facts(fn)  # once: inspect.signature of a jitted function costs ~10 us
    param_names = tuple(p.name for p in params)
    picked = _argnums_for(kind, fn_name, param_names, has_varargs, picked, wrt)
    argnums = picked.jax  # JAX's form, for the transforms, the cache keys and the result
    if order > 1 and kind != "grad":
        raise JaxGradUsageError(f"order= is for {entry('grad')}; {entry(kind)} has no order option.")
    if order > 1 and not picked.single:
        raise JaxGradUsageError(
            f"order={order} needs a single argument (argnums=0, say): repeated grad of several "
            f"arguments is a Hessian block. Use `{entry('hess')}` for all second derivatives."
        )
    if order > 1 and aux:
        raise JaxGradUsageError(f"order={order} cannot be combined with aux=True; drop one of them.")
    if spectrum is not None and (kind != "hess" or check):
        raise JaxGradUsageError(
            "spectrum=True goes with the Hessian alone, and without check=True: the check compares the dense "
            "matrix, which the spectrum never forms. Drop one of them."
        )
    if kind == "jac" and mode not in ("auto", "rev", "fwd"):
        raise JaxGradUsageError(f"mode={mode!r} is not a Jacobian mode: use 'rev', 'fwd' or 'auto'.")
    point = at if isinstance(at, Point) else resolve_point(fn, fn_name, at, facts=(params, has_varargs))
    # Modules (Equinox, Flax NNX) are differentiated in what their frameworks differentiate: fn
    # becomes a function of those parts, the rest of each module one more, last argument.
    lifted = None if point.args is None else lift(fn, point.args, picked.positions)
    if point.args is not None:
        _check_differentiable(fn_name, point.args if lifted is None else lifted.args, picked, param_names)
        if order > 1:
            _check_scalar_input(fn_name, point.args[picked.positions[0]], param_names, picked.positions[0], order)
    call_args = () if point.args is None else _call_args(point.args, params, picked)
    user_fn = fn
    if lifted is not None:
        fn, call_args = lifted.fn, lifted.args
    vector = {"jvp": tangent, "vjp": cotangent}.get(kind, MISSING)
    if kind in _VECTOR and vector is MISSING:
        word = _VECTOR[kind]
        shape = "shaped like the differentiated argument(s)" if kind == "jvp" else "shaped like the output"
        example = call(kind, fn_name, "at=x", f"{word}=jnp.ones_like({'x' if kind == 'jvp' else fn_name + '(x)'})")
        raise JaxGradUsageError(f"{entry(kind)} needs a direction: `{word}=v`, {shape}, e.g. `{example}`.")
    if vector is not MISSING and (bad := not_a_direction(vector)) is not None:
        # Found before jax.jit sees it: jit would fail on the argument with a message about JAX types.
        first = param_name(param_names, picked.positions[0])
        what = "the differentiated argument(s)" if kind == "jvp" else f"the output of {fn_name}"
        example = f"jnp.ones_like({first})" if kind == "jvp" else f"jnp.ones_like({fn_name}({first}))"
        raise direction_error(_VECTOR[kind], what, bad, example)

    hint = _whole_tuple_hint(fn_name, params, point)
    static = _static_positions(call_args)
    key, refs = function_key(fn)
    chosen, reason = None, None
    if kind == "jac":
        if mode != "auto":
            chosen, reason = mode, f"mode={mode} (as asked)"
        elif point.args is None:
            chosen, reason = "rev", "auto: jacrev (no point to measure the shapes)"
        else:
            probe, probe_args = _with_static(fn, call_args, static)
            chosen, reason = CACHE.get_or_build(
                ("mode", key, argnums, aux, _point_signature(call_args)),
                refs,
                lambda: _guarded(
                    lambda: choose_mode(probe, probe_args, argnums, aux), kind, fn_name, aux, fn, call_args, hint
                ),
            )
    elif kind == "grad" and order > 1:  # nested grad, or Taylor mode for high orders (or a refusal)
        chosen, reason = CACHE.get_or_build(
            ("order", key, argnums, order, jit, None if point.args is None else _point_signature(call_args)),
            refs,
            lambda: choose_order_method(fn, None if point.args is None else call_args, argnums, order, jit, fn_name),
        )
    t = Transform(kind, argnums, order, chosen, aux, jit, static=static)
    built = CACHE.get_or_build(("transform", key, t), refs, lambda: build(fn, t))

    value = derivative = aux_value = found = None
    extra = () if vector is MISSING else (vector,)
    if point.args is not None and spectrum is not None:
        value, aux_value, found = _guarded(
            lambda: curvature.spectrum(
                make_objective(fn, call_args, argnums, fn_name, aux), spectrum, has_aux=aux, fn_name=fn_name
            ),
            kind,
            fn_name,
            aux,
            fn,
            call_args,
            hint,
        )
    elif point.args is not None:
        value, derivative, aux_value = _guarded(
            lambda: built.evaluate(*call_args, *extra), kind, fn_name, aux, fn, call_args, hint
        )
    elif check or show or spectrum is not None:
        asked = "check=True" if check else f"show={show}" if show else "The spectrum"
        raise JaxGradUsageError(
            f"{asked} needs a point to evaluate {fn_name} at: "
            f"add at=... (no value was found for {', '.join(point.missing) or 'its parameters'})."
        )
    grad_check = None
    if check:
        checked_fn, checked_args = _with_static(fn, call_args, static)  # the check traces every argument
        if kind in _VECTOR:
            grad_check = check_directional(
                kind, checked_fn, checked_args, argnums, vector, derivative, aux=aux, jit=jit
            )
        else:
            grad_check = check_derivative(
                kind,
                checked_fn,
                checked_args,
                argnums,
                derivative,
                value,
                names=param_names,
                aux=aux,
                order=order,
                mode=chosen,
                jit=jit,
            )
    jaxpr = None
    if show == "jaxpr":
        plain = build(fn, t._replace(jit=False)).transformed  # unwrapped: no pjit shell around the program
        jaxpr = _jaxpr(plain, (*call_args, *extra), static, kind, fn_name, aux)
    fields = {
        "kind": kind,
        "fn_name": fn_name,
        "fn": user_fn,
        "transformed": built.transformed if lifted is None else _with_modules(user_fn, picked, lifted, built, t),
        "composition": composition(t, fn_name),
        "argnums": argnums,
        "param_names": param_names,
        "has_aux": aux,
        "mode": chosen,
        "mode_reason": reason,
        "order": order,
        "direction": None if vector is MISSING else vector,
        "check": grad_check,
        "jaxpr": jaxpr,
        "spectrum": found,
    }
    evaluated = (value, derivative, aux_value)
    return _result(fields, point, evaluated, started)


def _with_modules(
    fn: Callable[..., Any], picked: Argnums, lifted: Lifted, built: Built, t: Transform
) -> Callable[..., Any]:
    """The derivative function to bind when the point holds modules: called with modules, as ``fn`` is."""

    def make(again: Lifted) -> Callable[..., Any]:
        return build(again.fn, t._replace(static=_static_positions(again.args))).transformed

    return calling(fn, picked.positions, lifted, built.transformed, make)


def require_function(fn: Any, fn_name: str | None, kind: Kind) -> str:
    """Check that ``fn`` is a function that returns numbers; return the name to show it by.

    Raises:
      JaxGradUsageError: ``fn`` is not callable, or is a generator or async function.
    """
    if not callable(fn):
        raise JaxGradUsageError(
            f"{entry(kind)} needs a function, but {fn_name or 'the target'} is a {type(fn).__name__}. "
            "Name a function defined with `def` or `lambda`."
        )
    fn_name = fn_name or getattr(fn, "__name__", "f")
    _check_plain_function(fn, fn_name, entry(kind))
    return fn_name


def _result(
    fields: dict[str, Any],
    point: Point,
    evaluated: tuple[Any, Any, Any],
    started: float,
) -> DerivativeResult:
    """The result from ``fields`` (what the derivative is) and what belongs to this call: the
    point and ``(value, derivative, aux)``."""
    value, derivative, aux = evaluated
    return DerivativeResult(
        **fields,
        point=point.args,
        point_source=point.source,
        point_names=point.names,
        missing=point.missing,
        value=value,
        derivative=derivative,
        aux=aux,
        seconds=time.perf_counter() - started,
    )


def _point_signature(args: tuple[Any, ...]) -> Hashable:
    """What the checks, the Jacobian mode and the compiled program depend on: all but the values.

    Python ints and strings count with their values: as static arguments (a size, a mode) they
    shape the program, and the Jacobian mode with it.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    leaf_facts = tuple(
        (type(x), x)
        if isinstance(x, int | str | bytes)
        else (type(x), getattr(x, "shape", None), getattr(x, "dtype", None), getattr(x, "weak_type", None))
        for x in leaves
    )
    return treedef, leaf_facts


def _call_args(args: tuple[Any, ...], params: Sequence[inspect.Parameter], picked: Argnums) -> tuple[Any, ...]:
    """The point without its trailing default values, which Python fills in when called.

    A default that is not differentiated (a flag, a step count, a mode string) then stays a
    plain Python constant under ``jax.jit`` instead of becoming a traced input, which would
    fail for strings and break ``range(n)``.
    """
    diff = set(picked.positions)
    n = len(args)
    while 0 < n <= len(params) and n - 1 not in diff and args[n - 1] is params[n - 1].default:
        n -= 1
    return args[:n]


def _check_scalar_input(fn_name: str, arg: Any, names: tuple[str, ...], i: int, order: int) -> None:
    shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(arg)]
    if shapes != [()]:
        name = param_name(names, i)
        shown = f"shape {shapes[0]}" if len(shapes) == 1 else f"{len(shapes)} leaves"
        raise JaxGradUsageError(
            f"order={order} applies jax.grad {order} times, which needs {name} to be a scalar (one number), "
            f"but it has {shown}. For all second derivatives of an array input use "
            f"`{call('hess', fn_name)}` (jax.hessian); for one element, write a function of that element."
        )


def _aux_mismatch(fn: Callable[..., Any], args: tuple[Any, ...], fn_name: str) -> JaxGradUsageError | None:
    """The teaching error when ``aux=True`` but ``fn`` does not return a pair, else None."""
    try:
        out = jax.eval_shape(fn, *args)  # shapes only: nothing runs or compiles
    except Exception:
        return None
    if isinstance(out, tuple | list) and len(out) == 2:
        return None
    got = f"a {type(out).__name__} of {len(out)}" if isinstance(out, tuple | list) else "a single value"
    return JaxGradUsageError(
        f"aux=True expects {fn_name} to return a pair `(output, aux)`, but it returned {got}. Drop "
        "`aux=True`, or return `(loss, extra)` from the function."
    )


def _output_mismatch(
    kind: Kind, fn: Callable[..., Any], args: tuple[Any, ...], fn_name: str, aux: bool
) -> JaxGradUsageError | None:
    """The teaching error when ``fn``'s output is nothing to differentiate for ``kind``, else None.

    ``jax.grad`` and ``jax.jacrev`` need floating-point outputs; JAX's own errors for None, bool,
    int and complex outputs differ by transform (a bare ``ValueError`` for ``jacrev`` of None),
    so the output is looked at directly, and only after a failure.
    """
    if kind not in ("grad", "jac", "hess"):
        return None
    try:
        out = jax.eval_shape(fn, *args)  # shapes only: nothing runs or compiles
    except Exception:
        return None  # the function's own error: it surfaces as it is
    if aux and isinstance(out, tuple | list) and len(out) == 2:
        out = out[0]
    magic = entry(kind)
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves:
        got = "None" if out is None else f"an empty {type(out).__name__}"
        return JaxGradUsageError(
            f"{magic} needs {fn_name} to return a number or an array, but it returned {got}, so there is "
            f"nothing to differentiate. Check that {fn_name} ends with `return <value>` (a function without "
            "`return` returns None)."
        )
    dtype = next((leaf.dtype for leaf in leaves if not jax.dtypes.issubdtype(leaf.dtype, np.floating)), None)
    if dtype is None:
        return None
    if jax.dtypes.issubdtype(dtype, np.complexfloating):
        return JaxGradUsageError(
            f"{magic} differentiates real-valued outputs, but {fn_name} returns complex numbers ({dtype}) here. "
            "Give a real point (`at=1.0` rather than `at=1+2j`), return a real quantity (`jnp.abs(z) ** 2` or "
            "`z.real`), or use `%jvp` / `%vjp`, which carry complex values."
        )
    what = "a comparison or another boolean" if dtype == np.dtype(bool) else "an integer"
    return JaxGradUsageError(
        f"{magic} needs {fn_name} to return floating-point numbers, but it returns {what} ({dtype}), which is "
        "piecewise constant and has no useful derivative. Return a float instead: `3.0` rather than `3`, "
        "`jnp.where(x > 0, x, 0.0)` rather than `x > 0`, or `out.astype(jnp.float32)`."
    )


def _is_static(value: Any) -> bool:
    """A plain, immutable Python value: an int, a bool, a string, None, or a tuple of them.

    As an argument that is not differentiated, such a value is a loop count, a size, a flag or a
    mode, and user code treats it as Python (``range(n)``, ``jnp.zeros(n)``, ``if mode == 'l2'``).
    Floats and arrays are not: they stay traced, so a new value does not recompile. Nor is a
    long tuple: that is data (indices, say), which would be baked into the program and
    recompiled for every new value.
    """
    if value is None or isinstance(value, int | str | bytes):  # bool is an int
        return True
    return isinstance(value, tuple) and len(value) <= _STATIC_TUPLE_MAX and all(_is_static(v) for v in value)


_STATIC_TUPLE_MAX = 16  # a shape, a few flags or sizes; longer tuples are data


def _static_positions(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Positions of ``args`` that :func:`_is_static` keeps out of tracing.

    Differentiated arguments never qualify: they were checked to hold floating-point numbers.
    """
    return tuple(i for i, a in enumerate(args) if _is_static(a))


def _call_with_static(fn: Callable[..., Any], fixed: tuple[tuple[int, Any], ...], *args: Any) -> Any:
    full = list(args)
    for i, value in fixed:
        full[i] = value
    return fn(*full)


def _with_static(
    fn: Callable[..., Any], args: tuple[Any, ...], static: tuple[int, ...]
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``fn`` and ``args`` for code that traces every argument (``jax.eval_shape``, the gradient check).

    The static arguments travel as None (an empty pytree) and are put back in place inside, so
    positions, and with them ``argnums``, stay as they were. A partial of a module function, so
    the cache keys it by what it holds.
    """
    if not static:
        return fn, args
    fixed = tuple((i, args[i]) for i in static)
    return (
        functools.partial(_call_with_static, fn, fixed),
        tuple(None if i in static else a for i, a in enumerate(args)),
    )


def _check_plain_function(fn: Callable[..., Any], fn_name: str, magic: str) -> None:
    """A generator or async function returns a generator or coroutine, never numbers: say so first."""
    # fn itself (inspect sees through partials and methods), not what it wraps: a decorator may
    # well turn a generator into a function that sums it.
    inner = fn
    if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
        raise JaxGradUsageError(
            f"{magic} cannot differentiate {fn_name}: it is a generator function (it uses `yield`), so calling "
            "it gives a generator, not numbers. Return the value instead of yielding it, or differentiate a "
            f"function that consumes it, e.g. `def total(x): return sum({fn_name}(x))`."
        )
    if inspect.iscoroutinefunction(inner):
        raise JaxGradUsageError(
            f"{magic} cannot differentiate {fn_name}: it is an `async def` function, so calling it gives a "
            "coroutine, not numbers. Define it with a plain `def`."
        )


def _jaxpr(
    plain: Callable[..., Any], args: tuple[Any, ...], static: tuple[int, ...], kind: Kind, fn_name: str, aux: bool
) -> str:
    """``show=jaxpr``: the transformed program as text, traced with every input abstract."""
    try:
        traced = jax.make_jaxpr(plain, static_argnums=static)(*args)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError) as exc:
        # Also with jit=False: a program is a trace, so Python branches on inputs cannot be in it.
        raise JaxGradUsageError(
            f"show=jaxpr cannot show the program of {fn_name}: a program is traced with abstract inputs, "
            f"even with jit=False, and {fn_name} uses Python control flow (`if`, `while`, `int()`) on an "
            "input-dependent value. The derivative itself works without jit: drop show=jaxpr, or write the "
            f"branch with `jnp.where(cond, a, b)` or `jax.lax.cond` so it can be traced. JAX said: {first_line(exc)}"
        ) from None
    except Exception as exc:
        explained = explain_jax_error(exc, kind=kind, fn_name=fn_name, aux=aux)
        if explained is None:
            raise
        raise explained from None
    return traced.pretty_print(use_color=False)  # no terminal colours


def _guarded(
    call: Callable[[], Any],
    kind: Kind,
    fn_name: str,
    aux: bool,
    fn: Callable[..., Any] | None = None,
    args: tuple[Any, ...] = (),
    hint: str | None = None,
) -> Any:
    """Run ``call``; JAX misuse becomes a teaching error, the user's own errors pass through.

    With ``aux=True`` a failure is first checked against the output's structure: JAX's own
    error for a missing aux differs between modes (jacfwd fails unpacking a 0-d array).
    ``hint`` is added as a note to the user's own ``TypeError`` or ``AttributeError``.
    """
    __tracebackhide__ = True
    try:
        return call()
    except JaxGradUsageError:
        raise  # explained already
    except Exception as exc:
        probe, probe_args = (None, ()) if fn is None else _with_static(fn, args, _static_positions(args))
        explained = _aux_mismatch(probe, probe_args, fn_name) if aux and probe is not None else None
        if explained is None and probe is not None and isinstance(exc, TypeError | ValueError):
            explained = _output_mismatch(kind, probe, probe_args, fn_name, aux)
        explained = explained or explain_jax_error(exc, kind=kind, fn_name=fn_name, aux=aux)
        if explained is None:
            if hint is not None and isinstance(exc, TypeError | AttributeError):
                exc.add_note(hint)
            raise
        raise explained from None


def _whole_tuple_hint(fn_name: str, params: Sequence[inspect.Parameter], point: Point) -> str | None:
    """What to say when a function of one parameter fails on the ``at=`` tuple it was given whole."""
    if not (point.source == "at=" and point.args and len(point.args) == 1 and isinstance(point.args[0], tuple)):
        return None
    at = point.args[0]
    name = params[0].name if params else "its argument"
    return (
        f"Hint: {fn_name} takes one positional argument, so at= gave it the whole tuple as {name} "
        f"(a tuple of {len(at)}). For a vector write `at=jnp.array([...])`; for several arguments, "
        f"give {fn_name} one parameter each."
    )


def grad(
    fn: Callable[..., Any],
    at: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    order: int = 1,
    aux: bool = False,
    jit: bool = True,
    check: bool = False,
    show: str | None = None,
    fn_name: str | None = None,
) -> DerivativeResult:
    """``jax.grad`` of ``fn`` evaluated at ``at`` (``order=N``: the N-th derivative of a scalar input).

    See :func:`derive` for the arguments.
    """
    return derive(
        "grad", fn, at=at, argnums=argnums, wrt=wrt, order=order, aux=aux, jit=jit, check=check, show=show,
        fn_name=fn_name,
    )  # fmt: skip


def jac(
    fn: Callable[..., Any],
    at: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    mode: str = "auto",
    aux: bool = False,
    jit: bool = True,
    check: bool = False,
    show: str | None = None,
    fn_name: str | None = None,
) -> DerivativeResult:
    """The Jacobian of ``fn`` at ``at`` (``mode="auto"`` picks jacfwd or jacrev from the shapes).

    See :func:`derive` for the arguments.
    """
    return derive(
        "jac", fn, at=at, argnums=argnums, wrt=wrt, mode=mode, aux=aux, jit=jit, check=check, show=show,
        fn_name=fn_name,
    )  # fmt: skip


def hess(
    fn: Callable[..., Any],
    at: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    aux: bool = False,
    jit: bool = True,
    check: bool = False,
    show: str | None = None,
    fn_name: str | None = None,
) -> DerivativeResult:
    """The Hessian of ``fn`` at ``at`` (``jax.hessian``, forward over reverse).

    See :func:`derive` for the arguments.
    """
    return derive(
        "hess", fn, at=at, argnums=argnums, wrt=wrt, aux=aux, jit=jit, check=check, show=show, fn_name=fn_name
    )


def jvp(
    fn: Callable[..., Any],
    at: Any = MISSING,
    tangent: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    aux: bool = False,
    jit: bool = True,
    check: bool = False,
    show: str | None = None,
    fn_name: str | None = None,
) -> DerivativeResult:
    """The Jacobian-vector product ``J v`` of ``fn`` at ``at`` (``jax.jvp``), ``v`` = ``tangent``.

    See :func:`derive` for the arguments.
    """
    return derive(
        "jvp", fn, at=at, tangent=tangent, argnums=argnums, wrt=wrt, aux=aux, jit=jit, check=check, show=show,
        fn_name=fn_name,
    )  # fmt: skip


def vjp(
    fn: Callable[..., Any],
    at: Any = MISSING,
    cotangent: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    aux: bool = False,
    jit: bool = True,
    check: bool = False,
    show: str | None = None,
    fn_name: str | None = None,
) -> DerivativeResult:
    """The vector-Jacobian product ``uᵀ J`` of ``fn`` at ``at`` (``jax.vjp``), ``u`` = ``cotangent``.

    See :func:`derive` for the arguments.
    """
    return derive(
        "vjp", fn, at=at, cotangent=cotangent, argnums=argnums, wrt=wrt, aux=aux, jit=jit, check=check, show=show,
        fn_name=fn_name,
    )  # fmt: skip


def spectrum(
    fn: Callable[..., Any],
    at: Any = MISSING,
    *,
    argnums: JaxArgnums | None = None,
    wrt: tuple[str, ...] | None = None,
    k: int | None = None,
    tol: float = curvature.DEFAULT_TOL,
    probes: int = curvature.DEFAULT_PROBES,
    iterations: int | None = None,
    seed: int = 0,
    aux: bool = False,
    fn_name: str | None = None,
) -> curvature.Spectrum:
    """The spectrum of ``fn``'s Hessian at ``at``, from Hessian-vector products: the matrix is never formed.

    The ``k`` largest and smallest eigenvalues (Lanczos), the trace with its standard error
    (Hutchinson, Rademacher probes) and the spectral density (stochastic Lanczos quadrature),
    computed on the device in a few hundred products; what ``%hess f spectrum=True`` shows.

    Args:
      fn: a function returning one real number.
      at: the point (as for :func:`derive`).
      argnums: which positional arguments the Hessian is taken over (default 0).
      wrt: parameter names instead of ``argnums``.
      k: eigenvalues at each end (default 3, fewer when there are fewer parameters).
      tol: the residual, relative to the largest eigenvalue's magnitude, at which Lanczos stops.
      probes: Rademacher probes of the trace and density (at least 2).
      iterations: the most Lanczos steps (default up to 100, fewer for very many parameters).
      seed: the random start and probes; the same seed gives the same numbers.
      aux: ``fn`` returns ``(loss, aux)``.
      fn_name: the name to show (default ``fn.__name__``).

    Returns:
      A :class:`~jaxgrad_magic.curvature.Spectrum`.

    Raises:
      JaxGradUsageError: bad options (``k`` < 1 or more than the parameters, ``tol`` not in (0, 1)),
        no point, or a function that does not return a real scalar.
    """
    request = curvature.Request(k, tol, probes, iterations, seed)
    result = derive("hess", fn, at=at, argnums=argnums, wrt=wrt, aux=aux, fn_name=fn_name, spectrum=request)
    assert result.spectrum is not None  # derive raised when there was no point
    return result.spectrum
