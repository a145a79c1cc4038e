"""Magic line -> frozen :class:`Spec`, and a spec's values -> typed :class:`Options`.

Parsing is pure syntax (no namespace) so a bad line fails before the cell runs.
Resolving evaluates the values as Python expressions in the notebook's namespace.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import keyword
import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .argnums import as_argnums, position
from .errors import MAGIC, JaxGradUsageError, did_you_mean, first_line
from .point import MISSING

if TYPE_CHECKING:
    from .transforms import Kind


_ALL: tuple[Kind, ...] = tuple(MAGIC)


@dataclass(frozen=True)
class OptionDoc:
    """One magic option: what the parser accepts and what the usage text and README say of it.

    Attributes:
      name: the key, as in ``name=value``.
      value: the value as the docs write it (``EXPR``, ``0``, ``auto|rev|fwd``).
      kinds: the magics that accept it.
      reads: how its value is read: a Python ``expr`` evaluated in the notebook, a bare
        ``word``, or a True/False ``flag`` (an expression too).
      usage: the line(s) of ``%jgrad?`` (plain text; ``{bound}`` is the default bound name).
      readme: the README table's cell (markdown), after the "only" note that ``kinds`` gives.
    """

    name: str
    value: str
    kinds: tuple[Kind, ...]
    reads: Literal["expr", "word", "flag"]
    usage: str
    readme: str

    @property
    def word(self) -> str:
        """``name=value``, as the docs show the option."""
        return f"{self.name}={self.value}"


OPTION_TABLE: tuple[OptionDoc, ...] = (
    OptionDoc(
        "at",
        "EXPR",
        _ALL,
        "expr",
        "the point: one argument (at=x) or a tuple of all (at=(1.0, 2.0)).\n"
        "Default: the function's defaults, else notebook variables named like\n"
        "its parameters, else nothing is evaluated (only built and bound).",
        "the point: one argument (`at=x`) or a tuple of all arguments (`at=(1.0, 2.0)`)",
    ),
    OptionDoc(
        "argnums",
        "0",
        _ALL,
        "expr",
        "which arguments to differentiate: argnums=1, argnums=0,1, argnums=(0, 1)",
        "which positional arguments to differentiate: `argnums=1`, `argnums=0,1`, `argnums=(0, 1)`",
    ),
    OptionDoc("wrt", "x,y", _ALL, "word", "... or by parameter name", "the same by parameter name"),
    OptionDoc(
        "fn",
        "NAME",
        _ALL,
        "word",
        "which function (default: the last `def` / `name = lambda` in the cell)",
        "which function (default: the last one the cell defines)",
    ),
    OptionDoc(
        "aux",
        "True",
        _ALL,
        "flag",
        "the function returns (output, aux): JAX's has_aux",
        "the function returns `(output, aux)`: JAX's `has_aux`",
    ),
    OptionDoc(
        "jit",
        "False",
        _ALL,
        "flag",
        "do not compile with jax.jit (default: configurable, True)",
        "do not compile with `jax.jit`",
    ),
    OptionDoc(
        "name",
        "NAME",
        _ALL,
        "word",
        "bind the transformed function as NAME (default: {bound})",
        "bind the transformed function as `NAME`",
    ),
    OptionDoc(
        "check",
        "True",
        _ALL,
        "flag",
        "compare with central finite differences at the point, per argument",
        "compare the derivative with central finite differences at the point (below)",
    ),
    OptionDoc(
        "show",
        "jaxpr",
        _ALL,
        "word",
        "show the transformed program (jax.make_jaxpr)",
        "show the transformed program, `jax.make_jaxpr` of what was built",
    ),
    OptionDoc(
        "order",
        "N",
        ("grad",),
        "expr",
        "N-th derivative of a scalar argument: nested grad up to 4, Taylor mode to 20",
        "N-th derivative of a scalar input; nested `jax.grad` up to 4, Taylor mode "
        "(`jax.experimental.jet`) from 5 to 20, refused above 20 (compile time grows, and N! "
        "overflows float32 past 34)",
    ),
    OptionDoc("stepper", "False", ("grad",), "flag", "no gradient-descent panel under the result", "no descent panel"),
    OptionDoc(
        "lr", "0.1", ("grad",), "expr", "the panel's starting learning rate", "the panel's starting learning rate"
    ),
    OptionDoc(
        "optimizer",
        "adam",
        ("grad",),
        "expr",  # a bare optimizer name is read as a word unless the notebook defines it
        "the panel's optimizer: sgd, momentum, nesterov, adam, adamw,\n"
        "rmsprop, adagrad, or an optax.GradientTransformation",
        "the panel's starting optimizer: `sgd`, `momentum`, `nesterov`, `adam`, `adamw`, "
        "`rmsprop`, `adagrad`, or an `optax.GradientTransformation`",
    ),
    OptionDoc(
        "mode",
        "auto|rev|fwd",
        ("jac",),
        "word",
        "rev (jacrev), fwd (jacfwd) or auto (from the input/output sizes)",
        "`auto` chooses `jacfwd` when there are more outputs than inputs, else `jacrev`, and says why",
    ),
    OptionDoc(
        "spectrum",
        "True",
        ("hess",),
        "flag",
        "the Hessian's extreme eigenvalues, trace and density from\n"
        "Hessian-vector products (Lanczos), never forming the matrix",
        "the Hessian's `k` largest and smallest eigenvalues (Lanczos), trace (Hutchinson) and spectral "
        "density (stochastic Lanczos quadrature) from Hessian-vector products, never forming the matrix "
        "(see [Curvature](#curvature-the-hessians-spectrum-and-a-stable-learning-rate))",
    ),
    OptionDoc(
        "k",
        "3",
        ("hess",),
        "expr",
        "with spectrum=True: eigenvalues at each end (default 3)",
        "with `spectrum=True`: eigenvalues at each end (default 3)",
    ),
    OptionDoc(
        "tol",
        "1e-3",
        ("hess",),
        "expr",
        "with spectrum=True: Lanczos stops when the extreme residuals are\n"
        "below tol times the largest |eigenvalue| (default 1e-3)",
        "with `spectrum=True`: Lanczos stops when the extreme eigenvalues' residuals are below `tol` "
        "times the largest magnitude (default 1e-3)",
    ),
    OptionDoc(
        "tangent",
        "v",
        ("jvp",),
        "expr",
        "the direction v in J v (a tuple for several argnums); required",
        "the direction `v` in `J v` (required), shaped like the differentiated argument(s) "
        "(a tuple for several argnums)",
    ),
    OptionDoc(
        "cotangent",
        "u",
        ("vjp",),
        "expr",
        "the u in uᵀ J, shaped like the output; required",
        "the `u` in `uᵀ J` (required), shaped like the output",
    ),
)
"""Every magic option, in the order the usage text and the README list them."""

OPTIONS: dict[Kind, tuple[str, ...]] = {kind: tuple(o.name for o in OPTION_TABLE if kind in o.kinds) for kind in MAGIC}
"""The options each kind of magic accepts (kind -> names), for the parser."""
_WORD_OPTIONS = frozenset(o.name for o in OPTION_TABLE if o.reads == "word")
_BOOL_OPTIONS = frozenset(o.name for o in OPTION_TABLE if o.reads == "flag")
_MODES = ("auto", "rev", "fwd")
_SHOWS = ("jaxpr",)
_OPEN, _CLOSE = "([{", ")]}"
_HELP_COLUMN = 20  # where the usage text's help starts, after "  name=value"


def usage_options(kind: Kind) -> str:
    """The option lines of ``%jgrad?`` (and the other magics' usage) for ``kind``.

    Args:
      kind: one of ``grad``, ``jac``, ``hess``, ``jvp``, ``vjp``.

    Returns:
      One line per option the magic accepts (help wrapped onto indented lines), newline-ended.
    """
    lines: list[str] = []
    for option in OPTION_TABLE:
        if kind in option.kinds:
            first, *rest = option.usage.format(bound=f"<fn>_{kind}").splitlines()
            lines.append(f"  {option.word}".ljust(_HELP_COLUMN - 1) + " " + first)
            lines += [" " * _HELP_COLUMN + line for line in rest]
    return "".join(line + "\n" for line in lines)


def readme_table() -> str:
    """The README's options table, in markdown: one row per option.

    Returns:
      The table, header included, newline-ended.
    """
    rows = ["| option | meaning |", "|---|---|"]
    for option in OPTION_TABLE:
        only = "" if option.kinds == _ALL else " / ".join(f"`%{MAGIC[k]}`" for k in option.kinds) + " only: "
        word = option.word.replace("|", "\\|")  # a bar inside a table cell ends the cell
        rows.append(f"| `{word}` | {only}{option.readme} |")
    return "".join(row + "\n" for row in rows)


@dataclass(frozen=True)
class Spec:
    """A parsed magic line: the kind, the positional target and raw option sources."""

    kind: Kind
    target: str | None
    options: tuple[tuple[str, str], ...]
    line: str

    def source(self, key: str) -> str | None:
        """The raw source text of option ``key``, or None when absent."""
        for name, src in self.options:  # a few options: a scan beats building a dict on every call
            if name == key:
                return src
        return None


def _key_at(line: str, i: int) -> tuple[int, str] | None:
    """The ``key=`` word that starts at ``line[i]`` as ``(end, key)``, else None.

    A key is a Python name in any script (``δf=``), so it is read with ``str.isidentifier``
    rather than an ASCII pattern; ``key==`` is a comparison, not an option.
    """
    j = i
    while j < len(line) and ("_" + line[j]).isidentifier():  # line[j] may continue a name
        j += 1
    key = line[i:j]
    if key.isidentifier() and line.startswith("=", j) and not line.startswith("==", j):
        return j + 1, key
    return None


def _dotted(text: str) -> bool:
    """``text`` is a name or a dotted name (``f``, ``model.loss``, ``φ``)."""
    return all(part.isidentifier() for part in text.split("."))


def _python_name(text: str) -> str:
    """``text`` as Python itself spells the name: identifiers are NFKC-normalised when parsed."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _split_words(line: str) -> tuple[str, list[tuple[str, str]]]:
    """Split ``line`` at ``key=`` words that stand outside brackets and strings."""
    depth, quote, starts = 0, "", []
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                raise JaxGradUsageError(f"Unbalanced '{ch}' in the magic line {line!r}: check the brackets.")
        elif depth == 0 and (i == 0 or line[i - 1].isspace()):
            found = _key_at(line, i)
            if found:
                starts.append((i, *found))
        i += 1
    if quote or depth:
        raise JaxGradUsageError(
            f"Unclosed {'string' if quote else 'bracket'} in the magic line {line!r}: check the quotes and brackets."
        )
    head = line[: starts[0][0]] if starts else line
    words = []
    for n, (_, end, key) in enumerate(starts):
        stop = starts[n + 1][0] if n + 1 < len(starts) else len(line)
        words.append((key, line[end:stop].strip()))
    return head.strip(), words


@functools.lru_cache(maxsize=512)  # pure, and a re-run line is parsed once (the Spec is frozen)
def parse_line(kind: Kind, line: str) -> Spec:
    """Parse a magic line of ``kind`` into a :class:`Spec` (syntax only, no evaluation).

    Args:
      kind: one of ``grad``, ``jac``, ``hess``, ``jvp``, ``vjp``.
      line: the text after the magic's name, e.g. ``"f at=(x, y) argnums=0,1"``.

    Returns:
      The spec; values are kept as source text.

    Raises:
      JaxGradUsageError: unknown or repeated option, empty value, or a malformed target.
    """
    magic = MAGIC[kind]
    allowed = OPTIONS[kind]
    # IPython passes a trailing `;` on to the magic: it asks for no output and is not part of a value.
    stripped = line.rstrip()
    if stripped.endswith(";"):
        line = stripped[:-1]
    head, words = _split_words(line)
    head = _python_name(head)
    if head and not _dotted(head):
        raise JaxGradUsageError(
            f"%{magic} expected a function name before the options, got {head!r}. Write "
            f"`%{magic} f at=x` (the function's name, then key=value options with no spaces "
            "around '='), or `fn=NAME` in a cell magic."
        )
    seen: dict[str, str] = {}
    for key, value in words:
        if key not in allowed:
            raise JaxGradUsageError(
                f"%{magic} has no option '{key}'.{did_you_mean(key, allowed)} "
                f"Its options are: {', '.join(allowed)}. See `%{magic}?` for examples."
            )
        if key in seen:
            raise JaxGradUsageError(f"Option '{key}' is given twice in %{magic}; keep one.")
        if not value:
            raise JaxGradUsageError(
                f"Option '{key}=' in %{magic} has no value. Write it as `{key}=VALUE` with no "
                "spaces around '=' (see `%" + magic + "?`)."
            )
        seen[key] = value
    if "argnums" in seen and "wrt" in seen:
        raise JaxGradUsageError(f"%{magic} got both argnums= and wrt=; give one of them (wrt names the parameters).")
    if head and "fn" in seen:
        raise JaxGradUsageError(f"%{magic} got the function twice: '{head}' and fn={seen['fn']}. Give one of them.")
    return Spec(kind=kind, target=head or None, options=tuple(seen.items()), line=line)


@dataclass(frozen=True)
class Options:
    """Typed options of one magic call; unset values take the configured defaults."""

    fn: str | None = None
    at: Any = MISSING
    at_names: tuple[str | None, ...] | None = None
    argnums: int | tuple[int, ...] | None = None
    wrt: tuple[str, ...] | None = None
    aux: bool = False
    jit: bool = True
    name: str | None = None
    check: bool = False
    show: str | None = None
    order: int = 1
    mode: str = "auto"
    stepper: bool = True
    lr: float = 0.1
    optimizer: Any = "sgd"
    tangent: Any = MISSING
    cotangent: Any = MISSING
    spectrum: bool = False
    k: int | None = None
    tol: float | None = None


_FIELDS = frozenset(f.name for f in dataclasses.fields(Options))


def _word(key: str, src: str) -> str:
    """A bare word option; quotes are allowed and stripped."""
    text = src.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


@functools.lru_cache(maxsize=512)
def _compiled(src: str) -> types.CodeType:
    """``src`` compiled once: evaluating a re-run line's values then skips the compiler."""
    return compile(src.lstrip(" \t"), "<string>", "eval")  # eval() of a string strips these too


def _evaluate(key: str, src: str, namespace: Mapping[str, Any]) -> Any:
    try:
        return eval(_compiled(src), namespace if isinstance(namespace, dict) else dict(namespace))
    except SyntaxError:
        raise JaxGradUsageError(
            f"The value of {key}={src} is not a valid Python expression. Values are Python "
            f"expressions evaluated in the notebook, e.g. `{key}=(x, y)`."
        ) from None
    except Exception as exc:  # the expression is the user's; report it as bad input
        raise JaxGradUsageError(
            f"Could not evaluate {key}={src}: {type(exc).__name__}: {first_line(exc)}. Values are Python "
            "expressions evaluated in the notebook's namespace: define the names first or fix "
            "the expression."
        ) from None


@functools.lru_cache(maxsize=512)
def _names_of(src: str) -> tuple[str | None, ...] | None:
    """The notebook variable names in ``at=`` source: ``x`` -> (x,), ``(x, y)`` -> (x, y)."""
    try:
        node = ast.parse(src, mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Tuple):
        return tuple(e.id if isinstance(e, ast.Name) else None for e in node.elts)
    return None


def as_flag(key: str, value: Any, src: str | None = None) -> bool:
    """``value`` of a True/False option as a Python bool; ``np.True_`` and 0/1 count.

    Raises:
      JaxGradUsageError: ``value`` is not a boolean, 0 or 1.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    # Type first: `in` on an array compares elementwise and raises.
    if position(value) not in (0, 1):
        raise JaxGradUsageError(f"{key}={repr(value) if src is None else src} must be True or False.")
    return bool(value)


@functools.lru_cache(maxsize=512)
def constant_but_at(spec: Spec) -> bool:
    """True when every value on the line but ``at=`` is a word or a Python literal.

    Such a line resolves to the same :class:`Options` on every run (for the same configured
    defaults) whatever the notebook holds, so a caller may keep them and evaluate only ``at=``
    again with :func:`evaluate_at`.
    """
    for key, src in spec.options:
        if key == "at" or key in _WORD_OPTIONS:
            continue
        try:
            ast.literal_eval(src)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False  # a name or an expression: its value may change between runs
    return True


def evaluate_at(spec: Spec, namespace: Mapping[str, Any]) -> Any:
    """The line's ``at=`` value evaluated in ``namespace`` (MISSING when the line has none).

    Raises:
      JaxGradUsageError: the expression does not evaluate.
    """
    src = spec.source("at")
    return MISSING if src is None else _evaluate("at", src, namespace)


def resolve_options(spec: Spec, namespace: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> Options:
    """Evaluate a spec's values in ``namespace`` into typed :class:`Options`.

    Args:
      spec: the parsed line.
      namespace: where expressions are evaluated (the notebook's namespace).
      defaults: configured defaults for options not on the line (field name -> value).

    Returns:
      The options.

    Raises:
      JaxGradUsageError: a value that does not evaluate or has the wrong type.
    """
    magic = MAGIC[spec.kind]
    values: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if k in _FIELDS}
    for key, src in spec.options:
        if key in _WORD_OPTIONS:
            word = _word(key, src)
            if key == "wrt":
                names = tuple(w.strip() for w in word.strip("()[]").split(",") if w.strip())
                names = tuple(_python_name(_word(key, n)) for n in names)
                bad = [n for n in names if not n.isidentifier()]
                if bad or not names:
                    raise JaxGradUsageError(
                        f"wrt={src} must name parameters of the function, e.g. `wrt=x` or `wrt=x,y`."
                    )
                values["wrt"] = names
            elif key == "mode":
                if word not in _MODES:
                    raise JaxGradUsageError(
                        f"mode={src} is not a Jacobian mode.{did_you_mean(word, _MODES)} Use "
                        "`mode=rev` (jacrev, best for few outputs), `mode=fwd` (jacfwd, best for "
                        "few inputs) or `mode=auto` (chosen from the shapes)."
                    )
                values["mode"] = word
            elif key == "show":
                if word not in _SHOWS:
                    raise JaxGradUsageError(
                        f"show={src} is not something %{magic} can show.{did_you_mean(word, _SHOWS)} "
                        "Use `show=jaxpr` to see the transformed program."
                    )
                values["show"] = word
            else:  # fn, name
                word = _python_name(word)
                if (
                    not _dotted(word)
                    or any(keyword.iskeyword(part) for part in word.split("."))
                    or (key == "name" and not word.isidentifier())
                ):
                    raise JaxGradUsageError(f"{key}={src} must be a Python name, e.g. `{key}=f`.")
                if key == "name" and word.startswith("__") and word.endswith("__"):
                    # Binding __builtins__ (or __name__, ...) would break the notebook's namespace.
                    raise JaxGradUsageError(
                        f"name={src} is a name Python reserves for itself; binding the derivative "
                        "there would break the notebook. Choose an ordinary name, e.g. `name=df`."
                    )
                values[key] = word
            continue
        if key == "optimizer":
            from .optimizers import resolve_optimizer  # the stepper's own check, now rather than when drawn

            word = _word(key, src)
            value = word if word.isidentifier() and word not in namespace else _evaluate(key, src, namespace)
            resolve_optimizer(value)
            values["optimizer"] = value
            continue
        value = _evaluate(key, src, namespace)
        if key in _BOOL_OPTIONS:
            value = as_flag(key, value, src)
        elif key == "argnums":
            value = as_argnums(value, src).jax
        elif key == "order":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JaxGradUsageError(
                    f"order={src} must be a whole number of at least 1 (order=2 is the second derivative)."
                )
        elif key == "lr":
            from .optimizers import check_lr

            value = check_lr(value)
        elif key == "at":
            values["at_names"] = _names_of(src)
        values[key] = value
    if not values.get("spectrum") and (given := [k for k in ("k", "tol") if spec.source(k) is not None]):
        raise JaxGradUsageError(
            f"{' and '.join(f'{k}=' for k in given)} go{'es' * (len(given) == 1)} with spectrum=True (they shape "
            f"the Lanczos run): add `spectrum=True`, e.g. `%{magic} f at=x spectrum=True k=5`."
        )
    return Options(**values)
