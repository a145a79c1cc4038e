"""Result objects returned by the magics and the Python API (like ``%timeit -o``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from .argnums import Argnums, JaxArgnums
from .display import DisplayLimits

if TYPE_CHECKING:
    from .curvature import Spectrum
    from .gradcheck import GradCheck
    from .racing import RaceResult
    from .stepper import Stepper
    from .transforms import Kind


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class DerivativeResult:
    """One derivative evaluated (or only built) at a point.

    Attributes:
      kind: ``"grad"``, ``"jac"``, ``"hess"``, ``"jvp"`` or ``"vjp"``.
      fn_name: the differentiated function's name.
      fn: the function itself.
      transformed: the derivative function (bound in the notebook as ``bound_name``).
      composition: the JAX expression that was built, e.g. ``jax.jit(jax.grad(f))``.
      argnums: which positional arguments were differentiated (JAX's ``argnums``).
      param_names: the function's positional parameter names.
      point: all positional arguments, or None when no point was found.
      point_source: where the point came from (``at=``, ``defaults``,
        ``notebook variables``, ``none``).
      point_names: per argument, the notebook variable it came from (or None).
      value: the function's value at the point (its main output when ``aux=True``).
      derivative: the derivative, in exactly JAX's structure (a tuple for several argnums).
      aux: the auxiliary output when ``aux=True``.
      mode: ``"rev"`` or ``"fwd"`` for a Jacobian; ``"taylor"`` (``jax.experimental.jet``) or
        ``"nested"`` for a gradient of a high ``order``; else None.
      mode_reason: why that mode was chosen.
      order: derivative order for ``grad``.
      bound_name: the notebook name the transformed function is bound to, if any.
      missing: parameters that had no value when no point was found.
      seconds: wall time of building and evaluating, including compilation.
      direction: the tangent (``jvp``) or cotangent (``vjp``).
      check: the finite-difference check, when asked for with ``check=True``;
        ``check.passed`` is its overall verdict (see :class:`~jaxgrad_magic.gradcheck.GradCheck`).
      jaxpr: the transformed program as text, when asked for with ``show="jaxpr"``.
      spectrum: the Hessian's spectrum from Hessian-vector products, when asked for with
        ``spectrum=True`` (``derivative`` is then None: the matrix is not formed).
      display_limits: how much the text and HTML renderings show (the defaults here; a
        notebook's result carries its configured limits).
    """

    kind: Kind
    fn_name: str
    fn: Callable[..., Any] = field(repr=False)
    transformed: Callable[..., Any] = field(repr=False)
    composition: str
    argnums: JaxArgnums
    param_names: tuple[str, ...]
    point: tuple[Any, ...] | None
    point_source: str
    point_names: tuple[str | None, ...]
    value: Any
    derivative: Any
    aux: Any = None
    has_aux: bool = False
    mode: str | None = None
    mode_reason: str | None = None
    order: int = 1
    bound_name: str | None = None
    missing: tuple[str, ...] = ()
    seconds: float = 0.0
    direction: Any = None
    check: GradCheck | None = None
    jaxpr: str | None = None
    spectrum: Spectrum | None = None
    display_limits: ClassVar[DisplayLimits] = DisplayLimits()

    @property
    def evaluated(self) -> bool:
        """True when the derivative was evaluated at a point."""
        return self.point is not None

    @property
    def wrt(self) -> tuple[str, ...]:
        """The names of the differentiated parameters."""
        return Argnums.of(self.argnums).names(self.param_names)

    @functools.cached_property
    def grad_norms(self) -> dict[str, float] | None:
        """The norm of the gradient of each differentiated leaf, by its path, in tree order.

        E.g. ``{"layers[0].weight": 0.12, "layers[0].bias": 0.03, ...}`` or
        ``{"['dense']['kernel']": ...}``; with several ``argnums`` each path starts with the
        argument's name. Computed on the device in one program (only the norms come to the
        host), on first access. None unless this is an evaluated gradient (``order=1``).
        """
        if self.kind != "grad" or self.order != 1 or self.point is None:
            return None
        from .norms import grad_norms

        return grad_norms(self.derivative, Argnums.of(self.argnums), self.param_names)

    @functools.cached_property
    def stepper(self) -> Stepper:
        """A gradient-descent stepper on ``fn`` from this point (built on first access)."""
        return self.make_stepper()

    def make_stepper(self, **options: Any) -> Stepper:
        """A new gradient-descent stepper on ``fn`` from this point.

        Args:
          **options: more :class:`~jaxgrad_magic.stepper.Stepper` arguments (``lr``,
            ``optimizer``, ``namespace`` to write back to).

        Raises:
          JaxGradUsageError: the result was not evaluated at a point.
        """
        from .stepper import Stepper

        if self.point is None:
            from .errors import JaxGradUsageError

            raise JaxGradUsageError(
                f"{self.fn_name} was not evaluated at a point, so there is nothing to step "
                "from. Give a point with `at=...`."
            )
        return Stepper(
            self.fn,
            self.point,
            argnums=self.argnums,
            names=self.point_names,
            fn_name=self.fn_name,
            has_aux=self.has_aux,
            **options,
        )

    def race(self, optimizers: Any = ("sgd", "momentum", "adam"), lrs: Any = None, steps: int = 500) -> RaceResult:
        """Race optimizers on ``fn`` from this point, each over a grid of learning rates.

        :func:`jaxgrad_magic.race` with this result's function, point and ``argnums``; the
        :class:`~jaxgrad_magic.racing.RaceResult` shows as one picture in a notebook.

        Args:
          optimizers: names or functions of the learning rate.
          lrs: None for each optimizer's default grid, one list of rates, or one list per optimizer.
          steps: optimizer steps per rate.

        Raises:
          JaxGradUsageError: bad input (see :func:`~jaxgrad_magic.racing.race`), or no point.
        """
        from .racing import race

        if self.point is None:
            from .errors import JaxGradUsageError

            raise JaxGradUsageError(
                f"{self.fn_name} was not evaluated at a point, so there is nothing to race from. Give a point "
                "with `at=...`."
            )
        point, argnums = self.point, self.argnums
        return race(self.fn, point, optimizers, lrs, steps, argnums, has_aux=self.has_aux, fn_name=self.fn_name)

    def __repr__(self) -> str:
        # Bounded like the renderings: a point of 2,000 leaves shows its ends and a count.
        from .display import short_repr

        shown = ", ".join(
            f"{f.name}={short_repr(getattr(self, f.name), self.display_limits)}" for f in fields(self) if f.repr
        )
        return f"DerivativeResult({shown})"

    def __str__(self) -> str:
        from .display import render_text

        return render_text(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("DerivativeResult(...)" if cycle else str(self))

    def _repr_html_(self) -> str:
        from .display import render_html

        return render_html(self)
