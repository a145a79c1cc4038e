"""The core works without IPython and ipywidgets: ``grad`` and ``Stepper`` are plain Python.

Runs in a fresh process whose import system refuses IPython, ipywidgets and what they bring
(``conftest.run_without_notebook``), so a core module importing any of them, even lazily on the
path taken, fails the test.
"""

from __future__ import annotations

import numpy as np
from conftest import run_without_notebook

SCRIPT = r"""
import numpy as np
import jax.numpy as jnp
import jaxgrad_magic

def bowl(x, y):
    return x ** 2 + (y - 1) ** 2

r = jaxgrad_magic.grad(bowl, at=(5.0, 2.0), argnums=(0, 1))
text = str(r)
s = r.stepper
s.run(200)
j = jaxgrad_magic.jac(lambda x: jnp.stack([jnp.sin(x[0]), x[0] * x[1]]), at=jnp.array([0.5, 2.0]))
report(
    derivative=[float(d) for d in r.derivative],
    text_has_value="26" in text,
    params=[float(p) for p in s.params],
    jac=np.asarray(j.derivative).tolist(),
)
"""


def test_grad_jac_and_the_stepper_need_neither_ipython_nor_widgets() -> None:
    out = run_without_notebook(SCRIPT)
    assert out["loaded"] == []
    assert out["derivative"] == [10.0, 2.0]  # (2x, 2(y - 1)) at (5, 2)
    assert out["text_has_value"]
    assert abs(out["params"][0]) < 1e-3 and abs(out["params"][1] - 1.0) < 1e-3  # the bowl's minimum (0, 1)
    # d/dx (sin x0, x0 x1) at (0.5, 2): [[cos 0.5, 0], [2, 0.5]]
    np.testing.assert_allclose(out["jac"], [[np.cos(0.5), 0.0], [2.0, 0.5]], rtol=1e-6)
