"""Errors that teach: bad input and JAX's tracing failures as one clear paragraph.

The core raises :class:`JaxGradUsageError`; the IPython glue turns it into IPython's
``UsageError`` (one line, no traceback). Errors raised by the user's own code are never
wrapped: they reach the user as their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import re
from collections.abc import Iterable, Iterator

import jax


class JaxGradUsageError(ValueError):
    """Bad input to a jaxgrad magic or API call; the message says what to do instead."""


MAGIC = {"grad": "jgrad", "jac": "jac", "hess": "hess", "jvp": "jvp", "vjp": "vjp"}  # kind -> its magic
_IN_MAGIC: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxgrad_magic_in_magic", default=False)


@contextlib.contextmanager
def magic_messages() -> Iterator[None]:
    """Messages raised inside name the magics (``%jgrad``); outside they name the Python API.

    The IPython layer wraps its calls into the core in this, so one core serves both: a
    plain-Python user is never told about a magic they did not use.
    """
    token = _IN_MAGIC.set(True)
    try:
        yield
    finally:
        _IN_MAGIC.reset(token)


def entry(kind: str) -> str:
    """What the user calls for ``kind``: ``%jgrad`` in a magic, ``jaxgrad_magic.grad`` in Python."""
    return f"%{MAGIC[kind]}" if _IN_MAGIC.get() else f"jaxgrad_magic.{kind}"


def call(kind: str, fn_name: str, *options: str) -> str:
    """An example call: ``%jvp f at=x tangent=v`` in a magic, ``jaxgrad_magic.jvp(f, at=x, tangent=v)`` in Python."""
    if _IN_MAGIC.get():
        return " ".join([f"%{MAGIC[kind]}", fn_name, *options])
    return f"jaxgrad_magic.{kind}({', '.join([fn_name, *options])})"


def examples(kind: str) -> str:
    """Where the examples are: ``%jgrad?`` in a notebook, ``help(jaxgrad_magic.grad)`` in Python."""
    return f"%{MAGIC[kind]}?" if _IN_MAGIC.get() else f"help(jaxgrad_magic.{kind})"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message: JAX's run to several, and a usage error is one paragraph."""
    return next(iter(str(exc).splitlines()), "")


def explain_jax_error(exc: BaseException, *, kind: str, fn_name: str, aux: bool) -> JaxGradUsageError | None:
    """Translate a JAX failure while transforming ``fn_name`` into a teaching error.

    Args:
      exc: the exception JAX raised while tracing or differentiating.
      kind: the magic's kind (``grad``, ``jac``, ``hess``, ``jvp``, ``vjp``).
      fn_name: the user's function name, for the message.
      aux: whether ``aux=True`` was given.

    Returns:
      A :class:`JaxGradUsageError`, or None when the failure is not a known JAX misuse
      (then it is the user's own error and must propagate unchanged).
    """
    msg = str(exc)
    if isinstance(exc, jax.errors.TracerBoolConversionError | jax.errors.ConcretizationTypeError):
        return JaxGradUsageError(
            f"{fn_name} uses a traced value where Python needs a concrete one (an `if`, "
            "`while`, `bool()`, `float()` or `int()` on an input-dependent value). Under "
            "jax.jit every input is abstract, so Python control flow cannot branch on it. "
            "Use `jnp.where(cond, a, b)` or `jax.lax.cond(cond, f_true, f_false, x)` for "
            "branches and `jax.lax.while_loop` / `fori_loop` for loops, or pass `jit=False` "
            f"to differentiate without compiling. JAX said: {first_line(exc)}"
        )
    if isinstance(exc, jax.errors.TracerIntegerConversionError):
        return JaxGradUsageError(
            f"{fn_name} uses a traced value where Python needs an int (`range(n)`, an index, a size). "
            "Arguments that are not differentiated stay plain Python when given as Python ints, strings "
            "or tuples of them: pass `n` as `3`, not `np.int64(3)` or `jnp.array(3)` (`int(n)` converts "
            f"it), or pass `jit=False`. JAX said: {first_line(exc)}"
        )
    if isinstance(exc, jax.errors.TracerArrayConversionError):
        return JaxGradUsageError(
            f"{fn_name} converts a traced value to a NumPy array (a `numpy` function or "
            "`np.asarray` on an input-dependent value). Use the same function from "
            "`jax.numpy` (`jnp.sin` instead of `np.sin`) so JAX can differentiate it."
        )
    if not isinstance(exc, TypeError):
        return None
    if "can't apply forward-mode autodiff (jvp) to a custom_vjp function" in msg:
        how = {
            "hess": f"{entry('hess')} builds jax.jacfwd(jax.jacrev(f)), whose outer jacfwd is forward mode. "
            "Build reverse over reverse yourself, `jax.jacrev(jax.jacrev(f))(x)`",
            "jac": "this Jacobian is built with jax.jacfwd (forward mode). Use `mode=rev` (jax.jacrev)",
            "jvp": f"{entry('jvp')} is forward mode. Use {entry('vjp')} (reverse mode) for its derivatives",
        }.get(kind, f"this derivative uses forward mode. Use reverse mode ({entry('grad')}, {entry('vjp')})")
        return JaxGradUsageError(
            f"{fn_name} (or a function it calls) is a jax.custom_vjp, which defines only a reverse-mode "
            f"rule, and {how}, or define the rule with jax.custom_jvp instead: JAX derives reverse mode "
            "from it, so both modes work."
        )
    if "expected function with aux output to return a two-element tuple" in msg:
        return JaxGradUsageError(
            f"aux=True expects {fn_name} to return a pair `(output, aux)`, but it returned "
            "a single value. Drop `aux=True`, or return `(loss, extra)` from the function."
        )
    if msg.startswith("Gradient only defined for scalar-output functions"):
        if msg.startswith("Gradient only defined for scalar-output functions. Output was ("):
            hint = (
                "It returned a tuple: if the first element is the loss and the rest is "
                f"extra data, pass `aux=True`; for the derivative of every output use `{entry('jac')}`."
            )
        else:
            hint = (
                f"Use `{entry('jac')}` for the Jacobian of a vector output, or reduce the output to a "
                "scalar first (e.g. `return out.sum()`)."
            )
        shape = msg.split("Output had shape:", 1)[1].strip().rstrip(".") if "shape:" in msg else ""
        had = f" (its output has shape {shape})" if shape else ""
        asked = entry("hess" if kind == "hess" else "grad")
        return JaxGradUsageError(f"{asked} needs {fn_name} to return a scalar{had}. {hint}")
    if "requires real" in msg and "valued inputs" in msg:
        got = msg.split("but got", 1)[1].split(".")[0].strip() if "but got" in msg else "an integer dtype"
        if got.startswith("complex"):
            # jacfwd's check: forward mode here takes real inputs only.
            rev = "use `mode=rev` (jax.jacrev) for a real-valued output, " if kind == "jac" else ""
            return JaxGradUsageError(
                f"Cannot differentiate {fn_name} in forward mode (jax.jacfwd) at a complex point ({got}): it "
                "takes real inputs only. Give a real point (e.g. the real and imaginary parts as two float "
                f"arguments), {rev}or use `{entry('jvp')}` / `{entry('vjp')}`, which carry complex values."
            )
        return JaxGradUsageError(
            f"Cannot differentiate {fn_name} with respect to an input of dtype {got}: "
            "derivatives need floating-point inputs. Write `1.0` instead of `1`, or convert "
            "with `jnp.asarray(x, dtype=jnp.float32)` (or `x.astype(float)`)."
        )
    if "Error interpreting argument to" in msg and "as an abstract array" in msg:
        found = re.search(r"of type <class '([\w.]+)'>", msg)
        what = found.group(1) if found else ""
        return JaxGradUsageError(
            f"{fn_name} was given a non-array argument{f' (of type {what})' if what else ''}, and jax.jit "
            "traces arguments as arrays (plain ints, strings and tuples of them are kept static; lists and "
            "dicts are not). Make it a default value of the parameter (defaults stay plain Python), a "
            "plain string or tuple, close over it, or pass `jit=False`."
        )
    if "is not a valid JAX type" in msg:
        return JaxGradUsageError(
            f"{fn_name} was given or returned something JAX cannot trace ({first_line(exc)}). "
            "Arguments and outputs must be numbers, arrays, or pytrees (dicts/lists/tuples) of arrays: "
            "fix the value in `at=`, or pass `jit=False` to keep a non-array argument as plain Python."
        )
    return None
