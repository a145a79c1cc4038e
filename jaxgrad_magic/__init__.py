"""See and steer JAX's automatic differentiation in IPython and Jupyter.

``%load_ext jaxgrad_magic`` registers ``%jgrad``, ``%jac``, ``%hess``, ``%jvp`` and ``%vjp``;
the same work is available as plain Python through :func:`grad`, :func:`jac`, :func:`hess`,
:func:`jvp`, :func:`vjp`, :class:`Stepper`, :func:`race` and :func:`spectrum` (the Hessian's
eigenvalues, trace and density from Hessian-vector products).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "DerivativeResult",
    "Stepper",
    "__version__",
    "derive",
    "grad",
    "hess",
    "jac",
    "jvp",
    "load_ipython_extension",
    "race",
    "spectrum",
    "unload_ipython_extension",
    "vjp",
]

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .api import derive, grad, hess, jac, jvp, spectrum, vjp
    from .racing import race
    from .results import DerivativeResult
    from .stepper import Stepper

_LAZY = {
    "derive": "api",
    "grad": "api",
    "jac": "api",
    "hess": "api",
    "jvp": "api",
    "vjp": "api",
    "spectrum": "api",
    "race": "racing",
    "DerivativeResult": "results",
    "Stepper": "stepper",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import jaxgrad_magic` does not pay for importing jax and optax.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Called by ``%load_ext jaxgrad_magic``."""
    from .magics import load

    load(shell)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Called by ``%unload_ext jaxgrad_magic``."""
    from .magics import unload

    unload(shell)
