"""Errors that teach: bad input and JAX's tracing failures as one clear paragraph.

The core raises :class:`JaxGradUsageError`; the IPython glue turns it into IPython's
``UsageError`` (one line, no traceback). Errors raised by the user's own code are never
wrapped: they reach the user as their own.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import jax


class JaxGradUsageError(ValueError):
    """Bad input to a jaxgrad magic or API call; the message says what to do instead."""


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
            "hess": "%hess builds jax.jacfwd(jax.jacrev(f)), whose outer jacfwd is forward mode. "
            "Build reverse over reverse yourself, `jax.jacrev(jax.jacrev(f))(x)`",
            "jac": "this Jacobian is built with jax.jacfwd (forward mode). Use `mode=rev` (jax.jacrev)",
            "jvp": "%jvp is forward mode. Use %vjp (reverse mode) for its derivatives",
        }.get(kind, "this derivative uses forward mode. Use a reverse-mode magic (%jgrad, %vjp)")
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
                "extra data, pass `aux=True`; for the derivative of every output use `%jac`."
            )
        else:
            hint = (
                "Use `%jac` for the Jacobian of a vector output, or reduce the output to a "
                "scalar first (e.g. `return out.sum()`)."
            )
        shape = msg.split("Output had shape:", 1)[1].strip().rstrip(".") if "shape:" in msg else ""
        had = f" (its output has shape {shape})" if shape else ""
        magic = "%hess" if kind == "hess" else "%jgrad"
        return JaxGradUsageError(f"{magic} needs {fn_name} to return a scalar{had}. {hint}")
    if "requires real" in msg and "valued inputs" in msg:
        got = msg.split("but got", 1)[1].split(".")[0].strip() if "but got" in msg else "an integer dtype"
        if got.startswith("complex"):
            # jacfwd's check: forward mode here takes real inputs only.
            rev = "use `mode=rev` (jax.jacrev) for a real-valued output, " if kind == "jac" else ""
            return JaxGradUsageError(
                f"Cannot differentiate {fn_name} in forward mode (jax.jacfwd) at a complex point ({got}): it "
                "takes real inputs only. Give a real point (e.g. the real and imaginary parts as two float "
                f"arguments), {rev}or use `%jvp` / `%vjp`, which carry complex values."
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
