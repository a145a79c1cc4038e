"""Shared fixtures: one real IPython shell with the extension loaded, and a compile counter.

The shell is created once per session (IPython's shell is a process-wide singleton, and two
different shell classes cannot live in one process). Each test gets :class:`Shell`, whose
``run_cell`` re-raises whatever the cell raised, so a failing cell fails the test, and whose
namespace is put back as it was after the test.

Helpers every test file imports from here rather than writing again: :func:`close` (arrays equal
within a tolerance), :func:`central_difference`, :func:`run_json_script` (a check that needs a
fresh process) and :func:`png_pixels`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image
from traitlets.config import Config

from jaxgrad_magic import background

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _CompileCounter:
    """Counts XLA compilations reported through ``jax.monitoring`` (registered once per process)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT:
            with self._lock:
                self.count += 1


_COUNTER = _CompileCounter()
jax.monitoring.register_event_duration_secs_listener(_COUNTER)


class Compiles:
    """Compilations since the fixture started (or since :meth:`reset`).

    The panels measure λmax on background threads, and a first measurement compiles: both ends
    of a count wait for that work, so it is counted where it was asked for, never elsewhere.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start counting from zero again."""
        assert background.wait_all(120), "a panel's background work did not finish"
        self._start = _COUNTER.count

    @property
    def count(self) -> int:
        """How many XLA compilations happened since the last reset."""
        assert background.wait_all(120), "a panel's background work did not finish"
        return _COUNTER.count - self._start


@pytest.fixture(autouse=True)
def _background_work_ends_with_its_test() -> Iterator[None]:
    """A panel's background measurement never runs on into the next test."""
    yield
    assert background.wait_all(120), "a panel's background work did not finish"


class Shell:
    """A thin testing view of the real shell: cells that fail make the test fail."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    @property
    def ns(self) -> dict[str, Any]:
        """The user namespace (the notebook's globals)."""
        return self.shell.user_ns

    def run_cell(self, source: str) -> Any:
        """Run ``source`` like a notebook cell; re-raise its error; return its displayed value."""
        result = self.shell.run_cell(source, store_history=False)
        result.raise_error()
        return result.result

    def line(self, magic: str, line: str) -> Any:
        """Call a line magic directly and return what it returns."""
        return self.shell.run_line_magic(magic, line)

    def cell(self, magic: str, line: str, cell: str) -> Any:
        """Call a cell magic directly and return what it returns."""
        return self.shell.run_cell_magic(magic, line, cell)

    def usage_error(self, source: str, capsys: pytest.CaptureFixture[str]) -> str:
        """Run ``source``, expect a one-line ``UsageError`` with no traceback; return its message."""
        capsys.readouterr()
        result = self.shell.run_cell(source, store_history=False)
        out = capsys.readouterr()
        printed = out.out + out.err
        assert isinstance(result.error_in_exec, UsageError), (
            f"expected a UsageError from {source!r}, got {result.error_in_exec!r}\n{printed}"
        )
        assert "Traceback" not in printed, printed
        assert "UsageError" in printed, printed
        return str(result.error_in_exec)

    def user_error(self, source: str) -> BaseException:
        """Run ``source``, expect an error that is not a ``UsageError``; return it."""
        result = self.shell.run_cell(source, store_history=False)
        error = result.error_in_exec or result.error_before_exec
        assert error is not None, f"{source!r} raised nothing"
        assert not isinstance(error, UsageError), f"{source!r} raised a UsageError: {error}"
        return error


_BASE_NAMES = {"jax": jax, "jnp": jnp, "np": np}


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """The process's one real IPython shell, history off, with the extension loaded once."""
    config = Config()
    config.HistoryManager.enabled = False
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("colors", "nocolor")
    shell.run_line_magic("load_ext", "jaxgrad_magic")
    shell.user_ns.update(_BASE_NAMES)
    return shell


def clean_namespace(shell: InteractiveShell, baseline: dict[str, Any]) -> None:
    """Put the user namespace back to ``baseline`` (same keys, same objects)."""
    ns = shell.user_ns
    for key in [k for k in ns if k not in baseline]:
        del ns[key]
    ns.update(baseline)


@pytest.fixture
def ip(shell: InteractiveShell) -> Iterator[Shell]:
    """The shell for one test; its namespace is put back afterwards (the shell is kept)."""
    baseline = dict(shell.user_ns)
    try:
        yield Shell(shell)
    finally:
        clean_namespace(shell, baseline)


@pytest.fixture
def compiles() -> Compiles:
    """Counts XLA compilations from the start of the test."""
    return Compiles()


def central_difference(fn: Callable[..., Any], args: tuple[Any, ...], argnum: int = 0, eps: float = 1e-3) -> np.ndarray:
    """Numerical Jacobian of ``fn`` w.r.t. argument ``argnum`` by central differences, in float64.

    Independent of JAX's autodiff: it only calls ``fn`` at shifted points.
    """
    base = [np.asarray(a, dtype=np.float64) for a in args]
    x = base[argnum]
    out = np.zeros(np.shape(fn(*base)) + x.shape, dtype=np.float64)  # JAX's layout: output axes first
    for idx in np.ndindex(x.shape):
        plus, minus = [a.copy() for a in base], [a.copy() for a in base]
        plus[argnum][idx] += eps
        minus[argnum][idx] -= eps
        diff = np.asarray(fn(*plus), dtype=np.float64) - np.asarray(fn(*minus), dtype=np.float64)
        out[(Ellipsis, *idx)] = diff / (2 * eps)
    return out


@pytest.fixture
def fd() -> Callable[..., np.ndarray]:
    """:func:`central_difference`, for tests that check derivatives numerically."""
    return central_difference


def close(got: Any, want: Any, tol: float = 1e-5, *, rtol: float | None = None) -> None:
    """Assert that ``got`` equals ``want`` elementwise within a tolerance, both compared in float64.

    Args:
        got: What the code under test computed (array, scalar or nested sequence).
        want: The expected value, usually a closed form in NumPy.
        tol: The absolute tolerance, and the relative one unless ``rtol`` is given.
        rtol: A relative tolerance different from ``tol``.
    """
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64),
        np.asarray(want, dtype=np.float64),
        rtol=tol if rtol is None else rtol,
        atol=tol,
    )


RESULT_PREFIX = "RESULT "


def run_json_script(args: Sequence[str], *, env: Mapping[str, str | None] | None = None, timeout: float = 600) -> Any:
    """Run ``python *args`` in a fresh process and return the JSON on its last ``RESULT`` line.

    Some checks need a process of their own: a forced device count or ``JAX_ENABLE_X64`` is fixed
    when JAX starts, and an in-process kernel's shell cannot share a process with the test shell.
    Such a script prints ``RESULT <json>``; this runs it and fails the test if it fails.

    Args:
        args: The arguments after the interpreter: a script path and its arguments, or ``-c`` code.
        env: Changes to this process's environment; a ``None`` value removes the variable.
        timeout: Seconds before the script is killed and the test fails.

    Returns:
        The decoded JSON the script printed after :data:`RESULT_PREFIX`.
    """
    environ = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    done = subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith(RESULT_PREFIX)), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(line.removeprefix(RESULT_PREFIX))


REFUSE_NOTEBOOK = r"""
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("IPython", "ipywidgets", "traitlets", "ipykernel", "comm"):
            raise ImportError(f"refused: {name}")

sys.meta_path.insert(0, Refuse())

def report(**values):
    values["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("IPython", "ipywidgets"))
    print("RESULT " + json.dumps(values))
"""


def run_without_notebook(script: str, *args: str) -> Any:
    """Run ``script`` in a fresh process whose import system refuses IPython, ipywidgets and what
    they bring, so a module importing any of them, even lazily on the path taken, fails.

    The script ends with ``report(name=value, ...)``; this returns those values, and ``loaded``:
    the IPython and ipywidgets modules imported by then (none, when the import was refused).
    ``args`` are the script's ``sys.argv[1:]``.
    """
    return run_json_script(["-c", REFUSE_NOTEBOOK + script, *args])


def png_pixels(data: bytes, mode: str | None = None) -> np.ndarray:
    """Decode PNG bytes with Pillow (a whole, valid PNG or the test fails) into an array.

    Args:
        data: The PNG bytes.
        mode: A Pillow mode to convert to first (``"RGB"`` for colours); None keeps the stored
            values: palette indices for an indexed-colour PNG.

    Returns:
        The pixels, shape ``(height, width)`` or ``(height, width, channels)``.
    """
    with Image.open(io.BytesIO(bytes(data))) as image:
        assert image.format == "PNG", image.format
        image.load()
        return np.asarray(image if mode is None else image.convert(mode))
