"""The only IPython module: parse the line, run the cell, call the core, bind, return."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.displayhook import DisplayHook
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import All, Bool, Enum, Float, Int, TraitError, Unicode, observe, validate

from .api import default_name, derive, require_function
from .compile_cache import use as use_compile_cache
from .curvature import DEFAULT_TOL, Request
from .display import DisplayLimits
from .errors import JaxGradUsageError, did_you_mean, magic_messages
from .notebook import NotebookResult
from .point import resolve_point
from .results import DerivativeResult
from .show import display_key, new_run, replace_results, show_result
from .spec import MAGIC, Options, Spec, constant_but_at, evaluate_at, parse_line, resolve_options, usage_options
from .target import find_target

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .transforms import Kind

USAGE = """
Usage, as a cell magic (runs the cell, then works on the function it defines)::

  %%{magic} [OPTIONS]
  def f(x, y): ...

and as a line magic, on a function that already exists::

  %{magic} f [OPTIONS]
  r = %{magic} f at=(x, y)      # the magic returns a result object; a trailing ; hides it

Options are key=value words; values are Python expressions evaluated in the notebook:

{options}
Examples::

{examples}
The result has .value, .derivative (JAX's structure: a tuple for several argnums),
.transformed, .point, .point_source, .kind{result_extra}.
Defaults are configurable: %config JaxGradMagics.jit = False (see %config JaxGradMagics).
"""

_EXAMPLES = {
    "grad": (
        "  %%jgrad\n  def pipeline(x):\n      return jnp.sum(jnp.sin(x) ** 2)\n\n"
        "  %jgrad pipeline at=jnp.array([1.0, 2.0, 3.0])\n"
        "  %jgrad pipeline at=1.0 order=2\n"
        "  %jgrad f argnums=0,1 at=(5.0, 2.0)\n"
        "  %jgrad f wrt=y\n"
        "  %jgrad loss aux=True at=params\n"
    ),
    "jac": (
        "  %%jac\n  def pair(x):\n      return jnp.sin(x), jnp.cos(x)\n\n"
        "  %jac pair at=x mode=fwd\n"
        "  %jac f argnums=(0, 1) at=(5.0, 2.0)\n"
    ),
    "hess": (
        "  %hess f at=(5.0, 2.0) argnums=0,1\n  %hess loss at=params check=True\n"
        "  %hess loss at=params spectrum=True k=5\n"
    ),
    "jvp": "  %jvp f at=x tangent=jnp.ones_like(x)\n  %jvp f at=(5.0, 2.0) argnums=0,1 tangent=(1.0, 0.0)\n",
    "vjp": "  %vjp pair at=x cotangent=(jnp.ones(3), jnp.zeros(3))\n  %vjp f at=x cotangent=1.0 check=True\n",
}
_RESULT_EXTRA = {
    "grad": ", .stepper",
    "jac": ", .mode, .mode_reason",
    "hess": ", .spectrum (with spectrum=True; .derivative is then None)",
    "jvp": ", .direction (the tangent)",
    "vjp": ", .direction (the cotangent)",
}


def _usage(kind: Kind) -> str:
    magic = MAGIC[kind]
    return USAGE.format(
        magic=magic,
        options=usage_options(kind),
        examples=_EXAMPLES[kind],
        result_extra=_RESULT_EXTRA[kind],
    )


def _spectrum_request(opts: Options) -> Request | None:
    """What ``spectrum=True k=... tol=...`` asks for, or None without ``spectrum=True``."""
    if not opts.spectrum:
        return None
    return Request(k=opts.k, tol=DEFAULT_TOL if opts.tol is None else opts.tol)


def _silenced(line: str) -> bool:
    """A trailing ``;`` on the magic's line asks for no output, as after any Python expression.

    IPython's ``output_can_be_silenced`` makes the same test, but tokenizes every line to do
    so (~6% of a cache-hit ``r = %jgrad f at=x`` cell); lines without a ``;`` skip the tokenizer.
    """
    return ";" in line and DisplayHook.semicolon_at_end_of_expression(line)


class _RefusedSetting(UsageError, TraitError):
    """A refused ``%config`` value: shown as a ``UsageError``, and a ``TraitError`` so traitlets keeps the old value.

    ``%config`` assigns the value before validating it and rolls it back only on a ``TraitError``.
    """


@magics_class
class JaxGradMagics(Magics):
    """``%jgrad``, ``%jac``, ``%hess``, ``%jvp`` and ``%vjp``: JAX derivatives of notebook functions."""

    jit = Bool(True, help="Compile derivatives with jax.jit.").tag(config=True)
    mode = Enum(("auto", "rev", "fwd"), "auto", help="Jacobian mode for %jac: auto, rev or fwd.").tag(config=True)
    lr = Float(0.1, help="Starting learning rate of the descent panel.").tag(config=True)
    optimizer = Unicode("sgd", help="Starting optimizer of the descent panel.").tag(config=True)
    stepper = Bool(True, help="Show the descent panel under %jgrad results.").tag(config=True)
    max_items = Int(DisplayLimits().max_items, min=1, help="Arrays with more elements are shown abbreviated.").tag(
        config=True
    )
    heatmap_above = Int(
        DisplayLimits().heatmap_above,
        min=1,
        help="Jacobians and Hessians with more rows or columns than this are drawn as heatmaps.",
    ).tag(config=True)
    compile_cache = Unicode(
        "",
        help="Directory of JAX's persistent compilation cache, e.g. '~/.cache/jaxgrad_magic/xla': a restarted "
        "kernel loads the programs it compiled before instead of compiling them. It must be private to you "
        "(it is created with mode 0700). '' turns the cache off.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.cell_id: str | None = None  # the running cell's id, where the frontend sends one
        self.cell_run = new_run()  # which cell run this is: results of one run at one place do not replace each other
        # Lines whose values are constants but at=: their options, resolved once per configuration.
        self._resolved: dict[Spec, tuple[Options, DisplayLimits]] = {}

    @validate("lr")
    def _positive_lr(self, proposal: Any) -> float:
        if not 0 < proposal["value"] < float("inf"):  # NaN fails both
            raise TraitError(f"JaxGradMagics.lr must be a positive learning rate, e.g. 0.1; got {proposal['value']}.")
        return proposal["value"]

    @validate("optimizer")
    def _known_optimizer(self, proposal: Any) -> str:
        from .stepper import OPTIMIZERS

        if proposal["value"] not in OPTIMIZERS:
            raise TraitError(
                f"JaxGradMagics.optimizer must name an optimizer ({', '.join(OPTIMIZERS)}); "
                f"got {proposal['value']!r}. Pass an optax transformation per call with optimizer=..."
            )
        return proposal["value"]

    @validate("compile_cache")
    def _use_compile_cache(self, proposal: Any) -> str:
        # Turned on here rather than in an observer: a refused directory leaves the value and JAX as they were.
        try:
            use_compile_cache(proposal["value"])
        except JaxGradUsageError as exc:
            raise _RefusedSetting(str(exc)) from None
        return proposal["value"]

    @observe(All)
    def _configured(self, change: Any) -> None:
        """A default changed (``%config JaxGradMagics...``): resolve every line afresh."""
        self._resolved = {}

    def remember_cell(self, info: Any) -> None:
        """``pre_run_cell`` hook: note the cell's id, so a re-run replaces its own panel."""
        self.cell_id = getattr(info, "cell_id", None)
        self.cell_run = new_run()

    def _defaults(self) -> dict[str, Any]:
        return {"jit": self.jit, "mode": self.mode, "lr": self.lr, "optimizer": self.optimizer, "stepper": self.stepper}

    def _run_cell(self, cell: str) -> str:
        """Run the cell once in the user's namespace, like any cell; return its Python source."""
        shell = self.shell
        source = shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
        tree = shell.compile.ast_parse(source, filename=filename)
        code = shell.compile(tree, filename, "exec")
        exec(code, shell.user_global_ns, shell.user_ns)  # the user's own cell
        return source

    def _lookup(self, name: str, magic: str) -> Callable[..., Any]:
        ns = self.shell.user_ns
        head, *rest = name.split(".")
        if head not in ns:
            functions = sorted(
                k for k, v in ns.items() if callable(v) and not k.startswith("_") and hasattr(v, "__code__")
            )
            raise JaxGradUsageError(
                f"%{magic}: no function named '{name}' in the notebook.{did_you_mean(head, functions)} "
                "Define it first (run its cell), or give the cell to %%" + magic + " directly."
            )
        obj = ns[head]
        for i, attr in enumerate(rest):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                owner = ".".join([head, *rest[:i]])
                raise JaxGradUsageError(f"%{magic}: '{name}' not found: {owner} has no attribute '{attr}'.") from None
        return obj

    def _derive(self, kind: Kind, spec: Spec, source: str) -> DerivativeResult:
        magic = MAGIC[kind]
        ns = self.shell.user_ns
        resolved = self._resolved.get(spec)
        if resolved is None:
            opts = resolve_options(spec, ns, self._defaults())
            limits = DisplayLimits(self.max_items, self.heatmap_above)
            at = opts.at
            if constant_but_at(spec) and len(self._resolved) < 256:
                self._resolved[spec] = (opts, limits)
        else:
            opts, limits = resolved
            at = evaluate_at(spec, ns)  # resolving the whole line again costs ~3% of a cache hit
        fn_name = spec.target or opts.fn or find_target(source, magic)
        fn = self._lookup(fn_name, magic)
        require_function(fn, fn_name, kind)
        # The notebook's part of the point: names written in at= (for write-back), and variables
        # named like the parameters when there is no at=.
        point = resolve_point(fn, fn_name, at, opts.at_names, ns)
        result = derive(
            kind,
            fn,
            at=point,
            argnums=opts.argnums,
            wrt=opts.wrt,
            order=opts.order,
            mode=opts.mode,
            aux=opts.aux,
            jit=opts.jit,
            fn_name=fn_name,
            tangent=opts.tangent,
            cotangent=opts.cotangent,
            check=opts.check,
            show=opts.show,
            spectrum=_spectrum_request(opts),
        )
        mode_reason = result.mode_reason
        if spec.source("mode") is None and mode_reason is not None:
            mode_reason = mode_reason.replace("(as asked)", "(configured)")
        core = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        bound_name = opts.name or default_name(kind, fn_name, opts.order)
        return NotebookResult(
            **{**core, "mode_reason": mode_reason, "bound_name": bound_name},
            namespace=ns,
            stepper_options={"lr": opts.lr, "optimizer": opts.optimizer},
            show_stepper=opts.stepper and kind == "grad" and opts.order == 1 and result.evaluated,
            display_limits=limits,
        )

    def _magic(self, kind: Kind, line: str, cell: str | None) -> DerivativeResult | None:
        __tracebackhide__ = True
        magic = MAGIC[kind]
        try:
            spec = parse_line(kind, line)
            if cell is None and spec.target is None and spec.source("fn") is None:
                raise JaxGradUsageError(
                    f"%{magic} needs a function: `%{magic} f at=x` for an existing function, or "
                    f"`%%{magic}` at the top of a cell that defines one. See `%{magic}?`."
                )
        except JaxGradUsageError as exc:
            raise UsageError(str(exc)) from None
        # The cell runs like any cell: what it defines stays, also when the magic then fails (the
        # user fixes the line and goes on with `%jac vec`). What the magic binds is bound only
        # after it succeeded, so a failure binds nothing and overwrites nothing.
        source = self._run_cell(cell) if cell is not None else ""
        try:
            with magic_messages():  # the core's messages name %jgrad, not jaxgrad_magic.grad
                result = self._derive(kind, spec, source)
        except JaxGradUsageError as exc:
            raise UsageError(str(exc)) from None
        if result.bound_name:
            self.shell.user_ns[result.bound_name] = result.transformed
        # Closes the panels of what an earlier run made here.
        replace_results(result, self.cell_run, display_key(self.cell_id, result))
        return None if _silenced(line) else result

    @no_var_expand
    @line_cell_magic
    def jgrad(self, line: str = "", cell: str | None = None) -> DerivativeResult | None:
        __tracebackhide__ = True
        return self._magic("grad", line, cell)

    @no_var_expand
    @line_cell_magic
    def jac(self, line: str = "", cell: str | None = None) -> DerivativeResult | None:
        __tracebackhide__ = True
        return self._magic("jac", line, cell)

    @no_var_expand
    @line_cell_magic
    def hess(self, line: str = "", cell: str | None = None) -> DerivativeResult | None:
        __tracebackhide__ = True
        return self._magic("hess", line, cell)

    @no_var_expand
    @line_cell_magic
    def jvp(self, line: str = "", cell: str | None = None) -> DerivativeResult | None:
        __tracebackhide__ = True
        return self._magic("jvp", line, cell)

    @no_var_expand
    @line_cell_magic
    def vjp(self, line: str = "", cell: str | None = None) -> DerivativeResult | None:
        __tracebackhide__ = True
        return self._magic("vjp", line, cell)


JaxGradMagics.jgrad.__doc__ = "jax.grad of a notebook function, evaluated at a point.\n" + _usage("grad")
JaxGradMagics.jac.__doc__ = "The Jacobian (jacrev / jacfwd) of a notebook function at a point.\n" + _usage("jac")
JaxGradMagics.hess.__doc__ = "The Hessian (jax.hessian) of a notebook function at a point.\n" + _usage("hess")
JaxGradMagics.jvp.__doc__ = "The Jacobian-vector product J v (jax.jvp) at a point.\n" + _usage("jvp")
JaxGradMagics.vjp.__doc__ = "The vector-Jacobian product uᵀ J (jax.vjp) at a point.\n" + _usage("vjp")


def _hold_panels(info: object) -> None:
    """Before each cell: the panels' still pictures wait for the cell's end."""
    from .panel import cell_started

    cell_started()


def _publish_panels(result: object) -> None:
    """After each cell: the displayed panels' still pictures show the state the cell left."""
    from .panel import publish_pending

    publish_pending()


def load(shell: InteractiveShell) -> JaxGradMagics:
    """Register the magics and make them configurable with ``%config``."""
    from . import panel  # noqa: F401  (registers the descent panel as Stepper.widget)

    magics = JaxGradMagics(shell=shell, config=shell.config)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    shell.events.register("pre_run_cell", magics.remember_cell)
    shell.events.register("pre_run_cell", _hold_panels)
    shell.events.register("post_run_cell", _publish_panels)
    # The result type knows no view: the shell shows it (with its panel) through this printer,
    # which knows the running cell.
    formatter = shell.display_formatter.ipython_display_formatter
    formatter.for_type(DerivativeResult, lambda result: show_result(result, display_key(magics.cell_id, result)))
    return magics


def unload(shell: InteractiveShell) -> None:
    """Remove the magics, their configurable and hook, and close the panels they showed."""
    from .show import close_all_panels

    for magics in [c for c in shell.configurables if isinstance(c, JaxGradMagics)]:
        with contextlib.suppress(ValueError):
            shell.events.unregister("pre_run_cell", magics.remember_cell)
    use_compile_cache(None)  # JAX's settings as they were before the extension turned the cache on
    for event, hook in (("pre_run_cell", _hold_panels), ("post_run_cell", _publish_panels)):
        with contextlib.suppress(ValueError):
            shell.events.unregister(event, hook)
    for kind in MAGIC.values():
        for table in shell.magics_manager.magics.values():
            if isinstance(getattr(table.get(kind), "__self__", None), JaxGradMagics):
                del table[kind]
    shell.magics_manager.registry.pop(JaxGradMagics.__name__, None)
    shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, JaxGradMagics)]
    shell.display_formatter.ipython_display_formatter.pop(DerivativeResult, None)
    close_all_panels()
