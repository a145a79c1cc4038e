"""Walking traced programs with JAX's public types, the same way on every supported JAX.

``jax.extend.core.subjaxprs`` only arrived in recent JAX releases, while ``ClosedJaxpr`` and
``Jaxpr`` have been public in ``jax.extend.core`` for much longer; the walk is written here
against those two, so the package imports on the oldest JAX it declares.
"""

from __future__ import annotations

from collections.abc import Iterator

from jax.extend.core import ClosedJaxpr, Jaxpr


def subjaxprs(jaxpr: Jaxpr) -> Iterator[Jaxpr]:
    """The programs nested one level down in ``jaxpr``: ``cond`` branches, loop bodies, inner jits.

    Looks through the parameters of every equation, as ``jax.extend.core.subjaxprs`` does, for
    jaxprs held directly or in a tuple or list. It does not descend into what it finds.

    Args:
      jaxpr: an open jaxpr (``closed.jaxpr`` of what ``jax.make_jaxpr`` returns).

    Yields:
      Each nested program as an open :class:`jax.extend.core.Jaxpr`.
    """
    for eqn in jaxpr.eqns:
        for value in eqn.params.values():
            for item in value if isinstance(value, tuple | list) else (value,):
                if isinstance(item, ClosedJaxpr):
                    yield item.jaxpr
                elif isinstance(item, Jaxpr):
                    yield item
