"""What a magic adds to a result: the notebook it belongs to, its panel, how much it shows.

The core's :class:`~jaxgrad_magic.results.DerivativeResult` knows nothing of notebooks. A
magic returns a :class:`NotebookResult`, the same result plus what the IPython layer decided:
the namespace the stepper writes back to, the panel's starting learning rate and optimizer,
whether a display shows the panel, and the configured display limits. No IPython here either:
the glue in :mod:`jaxgrad_magic.magics` builds it.
"""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .display import DisplayLimits
from .results import DerivativeResult

if TYPE_CHECKING:
    from .stepper import Stepper


@dataclass(frozen=True, eq=False)
class NotebookResult(DerivativeResult):
    """A :class:`DerivativeResult` made by a magic in a notebook.

    Attributes:
      namespace: the notebook's namespace: ``stepper.apply()`` writes the parameters back there.
      stepper_options: the stepper's starting ``lr`` and ``optimizer``.
      show_stepper: whether displaying the result shows the descent panel under it.
      display_limits: how much the text and HTML renderings show (``%config``).
    """

    namespace: MutableMapping[str, Any] | None = field(default=None, repr=False)
    stepper_options: dict[str, Any] = field(default_factory=dict, repr=False)
    show_stepper: bool = field(default=False, repr=False)
    display_limits: DisplayLimits = field(default_factory=DisplayLimits, repr=False)  # type: ignore[misc]

    @functools.cached_property
    def stepper(self) -> Stepper:
        """A gradient-descent stepper from this point that writes back to the notebook."""
        return self.make_stepper(namespace=self.namespace, **self.stepper_options)
