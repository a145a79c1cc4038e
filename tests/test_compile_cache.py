"""``%config JaxGradMagics.compile_cache``: JAX's persistent compilation cache in a private directory.

A fresh process re-running the same cells loads its programs from the cache instead of
compiling them (two real processes, counted with ``jax.monitoring``); the directory must be
private to the user, and a refused one leaves the setting and JAX as they were.
"""

from __future__ import annotations

import itertools
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import Shell, close, run_json_script, run_without_notebook
from IPython.core.error import UsageError
from traitlets.config import Config

from jaxgrad_magic import compile_cache
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.magics import JaxGradMagics

_FRESH = itertools.count(1)
README = Path(__file__).resolve().parent.parent / "README.md"
SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def jax_settings() -> dict[str, object]:
    return {name: getattr(jax.config, name) for name in SETTINGS}


def magics_of(ip: Shell) -> JaxGradMagics:
    magics = ip.shell.magics_manager.registry["JaxGradMagics"]
    assert isinstance(magics, JaxGradMagics)
    return magics


@pytest.fixture
def cache_ip(ip: Shell) -> Iterator[Shell]:
    """The shell; afterwards the cache is off and the configuration as it was."""
    section = ip.shell.config.get("JaxGradMagics")
    saved = section.copy() if section is not None else None
    try:
        yield ip
    finally:
        magics_of(ip).compile_cache = ""
        compile_cache.use(None)
        if saved is None:
            ip.shell.config.pop("JaxGradMagics", None)
        else:
            ip.shell.config["JaxGradMagics"] = Config(saved)


def config(ip: Shell, directory: str | Path) -> None:
    ip.run_cell(f"%config JaxGradMagics.compile_cache = {str(directory)!r}")


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def new_gradient(ip: Shell) -> None:
    """A ``%%jgrad`` cell whose program this process has never compiled: a constant of its own."""
    c = 1.0 + next(_FRESH) / 64  # exact in float32, and new each call
    r = ip.cell("jgrad", "at=1.5 stepper=False", f"def g(x):\n    return {c!r} * x ** 3")
    close(r.derivative, 3 * c * 1.5**2)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_off_by_default(cache_ip: Shell) -> None:
    assert magics_of(cache_ip).compile_cache == ""
    assert compile_cache.active() is None
    assert jax.config.jax_compilation_cache_dir == os.environ.get("JAX_COMPILATION_CACHE_DIR")


def test_on_stores_every_program_and_off_puts_jax_back(cache_ip: Shell, tmp_path: Path) -> None:
    before = jax_settings()
    directory = tmp_path / "made" / "xla"
    config(cache_ip, directory)
    assert magics_of(cache_ip).compile_cache == str(directory)
    assert compile_cache.active() == directory.resolve()
    # Made private, the missing folder above it too.
    assert mode(directory) == 0o700 and mode(directory.parent) == 0o700
    assert jax_settings() == {
        "jax_compilation_cache_dir": str(directory.resolve()),
        "jax_enable_compilation_cache": True,
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    new_gradient(cache_ip)
    stored = entries(directory)
    assert stored, "a small program compiled with the cache on was not stored"

    config(cache_ip, "")
    assert jax_settings() == before and compile_cache.active() is None
    new_gradient(cache_ip)
    assert entries(directory) == stored  # off: nothing more is written


def test_a_new_directory_takes_effect(cache_ip: Shell, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    config(cache_ip, first)
    new_gradient(cache_ip)
    config(cache_ip, second)
    kept = entries(first)
    new_gradient(cache_ip)
    assert kept and entries(first) == kept  # JAX let go of the first directory
    assert entries(second)


def test_home_is_expanded(cache_ip: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    config(cache_ip, "~/.cache/jaxgrad_magic/xla")
    made = home / ".cache" / "jaxgrad_magic" / "xla"
    assert compile_cache.active() == made.resolve()
    assert [mode(p) for p in (made, made.parent, made.parent.parent)] == [0o700] * 3


def test_without_owners_and_modes_only_the_profile_is_accepted(
    cache_ip: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Windows sees: no os.geteuid, so the checks fall back to "inside your user profile".
    home = tmp_path / "profile"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delattr(os, "geteuid")
    with pytest.raises(JaxGradUsageError, match="inside your user profile"):
        compile_cache.use(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists() and compile_cache.active() is None
    assert compile_cache.use(home / "xla") == (home / "xla").resolve()
    assert (home / "xla").is_dir()


def _shared_folder() -> Path:
    """A folder everyone may write to, sticky like /tmp, or skip."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        info = os.stat(candidate) if os.path.isdir(candidate) else None
        if info and info.st_mode & stat.S_IWOTH and info.st_mode & stat.S_ISVTX:
            return Path(candidate)
    pytest.skip("no shared sticky folder such as /tmp on this machine")


def _another_users_directory(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        other = tmp_path / "theirs"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        return other
    return Path("/")  # root's


@pytest.fixture
def in_shared_folder() -> Iterator[Path]:
    """A directory of ours directly in the shared temporary folder (mode 0755), removed afterwards."""
    made = Path(tempfile.mkdtemp(prefix="jgm-cache-test-", dir=_shared_folder()))
    made.chmod(0o755)
    try:
        yield made
    finally:
        for path in sorted(made.rglob("*"), reverse=True):
            path.rmdir()
        made.rmdir()


def _world_writable(tmp_path: Path) -> Path:
    path = tmp_path / "everyone"
    path.mkdir()
    path.chmod(0o777)
    return path


def _group_writable(tmp_path: Path) -> Path:
    path = tmp_path / "group"
    path.mkdir()
    path.chmod(0o770)
    return path


def _under_a_writable_folder(tmp_path: Path) -> Path:
    return _world_writable(tmp_path) / "cache"


REFUSED = {
    "world-writable": (_world_writable, "can write to it"),
    "group-writable": (_group_writable, "can write to it"),
    "another user's": (_another_users_directory, "belongs to another user"),
    "held by a folder others can write": (_under_a_writable_folder, "which holds it, and so replace it"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_directory_others_can_write_is_refused(
    cache_ip: Shell, tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good"
    config(cache_ip, good)
    make, reason = REFUSED[case]
    bad = make(tmp_path)
    config(cache_ip, bad)  # %config reports a refused value through logging
    said = caplog.text
    assert reason in said and "run their code" in said and "~/.cache/jaxgrad_magic/xla" in said, said
    # Refused: the setting and JAX stay on the good directory, and nothing was made in the bad place.
    assert magics_of(cache_ip).compile_cache == str(good)
    assert jax.config.jax_compilation_cache_dir == str(good.resolve()) == str(compile_cache.active())
    assert bad.exists() == (case != "held by a folder others can write")


def test_a_refusal_is_a_usage_error_of_one_paragraph(cache_ip: Shell, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        magics_of(cache_ip).compile_cache = str(_world_writable(tmp_path))
    message = str(refused.value)
    assert "\n" not in message and "mode 777" in message and "chmod 700" in message, message
    assert magics_of(cache_ip).compile_cache == "" and compile_cache.active() is None
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="a file, not a directory"):
        magics_of(cache_ip).compile_cache = str(tmp_path / "file")


def test_a_shared_temporary_folder_needs_a_private_directory(
    cache_ip: Shell, in_shared_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = in_shared_folder.parent
    config(cache_ip, shared)
    assert compile_cache.active() is None
    assert "shared folder" in caplog.text or "another user" in caplog.text, caplog.text
    caplog.clear()
    config(cache_ip, in_shared_folder / "xla")  # ours, but 0755 directly in the shared folder
    assert compile_cache.active() is None
    assert "not private to you" in caplog.text and f"chmod 700 {in_shared_folder}" in caplog.text, caplog.text
    assert not (in_shared_folder / "xla").exists()
    in_shared_folder.chmod(0o700)  # private: nobody else can reach what it holds
    config(cache_ip, in_shared_folder / "xla")
    assert compile_cache.active() == (in_shared_folder / "xla").resolve()


def test_readme_says_how_and_warns() -> None:
    text = README.read_text(encoding="utf-8")
    assert "%config JaxGradMagics.compile_cache" in text
    section = text[text.index("### Compiled programs that survive a kernel restart") :]
    section = section[: section.index("\n## ")]
    assert "%config JaxGradMagics.compile_cache" in section and '""' in section  # how to turn it on and off
    assert "make your kernel run their code" in section and "0700" in section  # the warning
    assert "RATIO" not in section  # the measured ratio is filled in


PURE = r"""
from pathlib import Path
import jax
import jax.numpy as jnp
from jaxgrad_magic import compile_cache
from jaxgrad_magic.errors import JaxGradUsageError

directory = Path(sys.argv[1]) / "xla"
used = compile_cache.use(directory)
value = float(jax.jit(jax.grad(lambda x: jnp.sin(x) * 2.5))(0.25))
stored = len(list(directory.iterdir()))
compile_cache.use("")
report(used=str(used), value=value, stored=stored, dir_after=jax.config.jax_compilation_cache_dir)
"""


def test_the_cache_module_needs_no_ipython(tmp_path: Path) -> None:
    out = run_without_notebook(PURE, str(tmp_path))
    assert out["loaded"] == [] and out["used"] == str((tmp_path / "xla").resolve())
    assert out["stored"] > 0 and out["dir_after"] is None
    close(out["value"], 2.5 * np.cos(0.25))


# One fresh process, as a restarted kernel: the extension, %config, a %%jgrad cell, %hess and a
# stepper run. Every backend compile is reported as a duration event; a program loaded from the
# persistent cache reports a cache hit first, so a duration event after a hit is a load.
RESTART = r"""
import json, sys
import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
HIT_EVENT = "/jax/compilation_cache/cache_hits"
seen = {"programs": 0, "loaded": 0, "compiled": []}
hits = [0]

def on_event(event, **kwargs):
    if event == HIT_EVENT:
        hits[0] += 1

def on_duration(event, duration, **kwargs):
    if event == COMPILE_EVENT:
        seen["programs"] += 1
        if hits[0]:
            hits[0] -= 1
            seen["loaded"] += 1
        else:
            seen["compiled"].append(kwargs.get("fun_name", "?"))

jax.monitoring.register_event_listener(on_event)
jax.monitoring.register_event_duration_secs_listener(on_duration)

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

config = Config()
config.HistoryManager.enabled = False
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)

def run(cell):
    with capture_output():
        result = shell.run_cell(cell, store_history=False)
    result.raise_error()
    return result.result

run("%load_ext jaxgrad_magic")
run(f"%config JaxGradMagics.compile_cache = {sys.argv[1]!r}")
run("import jax.numpy as jnp\nx = 5.0\ny = 2.0")
r = run("%%jgrad argnums=0,1\ndef f(x, y):\n    return x ** 2 + (y - 1) ** 2")
h = run("%hess f argnums=0,1")
s = r.stepper
s.step()
s.run(50)
params = [float(p) for p in s.params]
counts = dict(seen)

from jaxgrad_magic import compile_cache
from jaxgrad_magic.errors import JaxGradUsageError
run("%reload_ext jaxgrad_magic")  # the configured directory comes back with the extension
reloaded = str(compile_cache.active())
run("%unload_ext jaxgrad_magic")
print("RESULT " + json.dumps({
    **counts,
    "derivative": [float(d) for d in r.derivative],
    "hessian": [[float(v) for v in row] for row in h.derivative],
    "params": params,
    "reloaded": reloaded,
    "unloaded": [str(compile_cache.active()), jax.config.jax_compilation_cache_dir],
}))
"""


def test_a_fresh_process_loads_its_programs_instead_of_compiling(tmp_path: Path) -> None:
    directory = tmp_path / "xla"
    first = run_json_script(["-c", RESTART, str(directory)])
    stored = entries(directory)
    second = run_json_script(["-c", RESTART, str(directory)])

    # The first process compiles everything and stores it; the second loads all of it.
    assert first["programs"] > 0 and first["loaded"] == 0 and len(first["compiled"]) == first["programs"]
    assert len(stored) > 0
    assert second["loaded"] == second["programs"] > 0, second
    assert second["compiled"] == [], second["compiled"]
    assert entries(directory) == stored  # nothing new to store
    for out in (first, second):
        assert out["derivative"] == [10.0, 2.0]  # (2x, 2(y - 1)) at (5, 2)
        assert out["hessian"] == [[2.0, 0.0], [0.0, 2.0]]
        # sgd with lr 0.1 on x^2 + (y - 1)^2 scales (x, y - 1) by 0.8 per step: 51 steps
        close(out["params"], [5.0 * 0.8**51, 1.0 + 0.8**51], tol=1e-6)
        assert out["reloaded"] == str(directory.resolve())
        assert out["unloaded"] == ["None", None]
