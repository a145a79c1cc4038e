"""JAX's persistent compilation cache in a directory private to the user.

With the cache on, every program JAX compiles (the derivatives, the stepper's step and run
loops, JAX's own small programs) is written to a directory, and a fresh process that builds the
same program loads it from there instead of compiling it: a restarted kernel re-running a
notebook compiles (nearly) nothing.

JAX runs what it loads from the cache, so whoever can write to the directory can make the
process run their code. :func:`use` therefore accepts only a directory that no one else can
write to or replace: owned by the user, not writable by group or others, and held by folders
that others cannot write to either (a shared sticky folder such as ``/tmp`` is accepted only
with a private directory of the user's own in between). Missing directories are created with
mode 0700. Where owners and mode bits cannot be read (Windows), only a directory inside the
user's profile is accepted.

JAX's cache settings are process-wide; :func:`use` changes them and puts back what it found
when the cache is turned off again.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any, Final

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

from .errors import JaxGradUsageError

MIN_COMPILE_TIME_SECS: Final = 0.0
"""Store every program, however fast it compiled.

JAX's default (1 s) stores almost nothing here: the derivatives and the stepper's programs of a
notebook compile in 7 to 300 ms each on a CPU, and loading one from the cache takes 1 to 8 ms,
so even the quickest compile costs several loads.
"""

MIN_ENTRY_SIZE_BYTES: Final = -1
"""No lower bound on an entry's size, and none that JAX may substitute (its meaning of -1).

Small programs are exactly the ones a notebook makes; their entries are a few kilobytes.
"""

_SETTINGS: Final = {
    "jax_enable_compilation_cache": True,
    "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_TIME_SECS,
    "jax_persistent_cache_min_entry_size_bytes": MIN_ENTRY_SIZE_BYTES,
}
_DIR_SETTING: Final = "jax_compilation_cache_dir"
_SUGGESTED: Final = "~/.cache/jaxgrad_magic/xla"
_GROUP_OTHER_WRITE: Final = stat.S_IWGRP | stat.S_IWOTH
_GROUP_OTHER_ANY: Final = stat.S_IRWXG | stat.S_IRWXO

_lock = threading.Lock()
_saved: dict[str, Any] | None = None  # JAX's settings before the cache was turned on; None while off
_active: Path | None = None


def _refuse(path: Path, reason: str, fix: str = "") -> JaxGradUsageError:
    """One paragraph: what is wrong with ``path``, why it matters, and what to use instead."""
    fix = fix or f"Use a directory only you can write to, such as {_SUGGESTED!r} (created with mode 0700)."
    return JaxGradUsageError(
        f"Compile cache directory {str(path)!r} refused: {reason}. JAX runs the programs it loads from "
        f"its compilation cache, so whoever can write to the cache can make your kernel run their code. {fix}"
    )


def _check_holders(path: Path) -> None:
    """Refuse ``path`` when someone else could replace it through a folder that holds it.

    Whoever can write to a folder can rename what it holds and put their own directory in its
    place, unless the folder is sticky (like ``/tmp``), where only an entry's owner may rename
    it; there the entry must be the user's own and private, so nothing below it is reachable.
    ``path`` itself need not exist yet; the folders holding it must.
    """
    uid = os.geteuid()
    child = path
    for folder in path.parents:
        info = folder.stat()
        if info.st_uid not in (uid, 0):
            raise _refuse(path, f"{str(folder)!r}, which holds it, belongs to another user (uid {info.st_uid})")
        if info.st_mode & _GROUP_OTHER_WRITE:
            if not info.st_mode & stat.S_ISVTX:
                raise _refuse(path, f"others can write to {str(folder)!r}, which holds it, and so replace it")
            if child.exists():  # else it is made below, private
                mine = child.stat()
                if mine.st_uid != uid or mine.st_mode & _GROUP_OTHER_ANY:
                    raise _refuse(
                        path,
                        f"it lies in the shared folder {str(folder)!r}, and {str(child)!r} there is not private "
                        f"to you (owner uid {mine.st_uid}, mode {stat.S_IMODE(mine.st_mode):o})",
                        f"Use a directory in your home, such as {_SUGGESTED!r}, or make {str(child)!r} private "
                        f"with `chmod 700 {child}` if it is yours.",
                    )
        child = folder


def _in_profile(path: Path) -> Path:
    """Where owners and mode bits cannot be read (Windows): only a directory in the user's profile.

    A profile's folders are, by default, writable by the user and administrators only.
    """
    home = Path.home().resolve()
    if path == home or not path.is_relative_to(home):
        raise _refuse(
            path,
            f"on this system who may write to a directory cannot be checked here, so only one inside your "
            f"user profile {str(home)!r} is accepted",
        )
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise JaxGradUsageError(f"Compile cache directory {str(path)!r} refused: it is a file, not a directory.")
    return path


def private_directory(directory: str | os.PathLike[str]) -> Path:
    """The cache directory ``directory`` as an absolute path, created (mode 0700) when missing.

    Args:
      directory: the directory; ``~`` is expanded, a relative path is taken from the current
        directory, and symbolic links are resolved (JAX is given the real directory, so a link
        changed later cannot redirect it).

    Returns:
      The resolved directory, which exists.

    Raises:
      JaxGradUsageError: when it is not a directory, cannot be created, belongs to another
        user, can be written by group or others, or could be replaced by someone else through
        a folder that holds it (see the module's description). Where owners and modes cannot
        be read (Windows), a directory outside the user's profile is refused instead.
    """
    path = Path(directory)
    try:
        path = path.expanduser().resolve()
        if not hasattr(os, "geteuid"):
            return _in_profile(path)
        to_make: list[Path] = []  # the missing directories, outermost first
        missing = path
        while not missing.exists():
            to_make.insert(0, missing)
            missing = missing.parent
        # Judge the folders that will hold new directories before making anything in them.
        if to_make:
            _check_holders(to_make[0])
        for made in to_make:
            try:
                made.mkdir(mode=0o700)
            except FileExistsError:
                continue  # made by someone else meanwhile: judged below like any existing directory
            made.chmod(0o700)  # mkdir's mode passes through the umask
        if not path.is_dir():
            raise JaxGradUsageError(
                f"Compile cache directory {str(path)!r} refused: it is a file, not a directory. "
                f"Give a directory, such as {_SUGGESTED!r} (it is created with mode 0700 when missing)."
            )
        info = path.stat()
        if info.st_uid != os.geteuid():
            raise _refuse(path, f"it belongs to another user (uid {info.st_uid})")
        if info.st_mode & _GROUP_OTHER_WRITE and info.st_mode & stat.S_ISVTX:  # /tmp itself: shared, keep it so
            raise _refuse(
                path,
                f"it is a shared folder (mode {stat.S_IMODE(info.st_mode):o})",
                f"Use a directory in your home, such as {_SUGGESTED!r} (created with mode 0700).",
            )
        if info.st_mode & _GROUP_OTHER_WRITE:
            raise _refuse(
                path,
                f"group or others can write to it (mode {stat.S_IMODE(info.st_mode):o})",
                f"Make it private with `chmod 700 {path}`, or use a directory only you can write to, "
                f"such as {_SUGGESTED!r}.",
            )
        _check_holders(path)  # again: a folder may have changed, or been made by someone else, meanwhile
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory for ~, or a loop of links
        reason = getattr(exc, "strerror", None) or exc
        raise _refuse(path, f"it could not be made or checked ({reason})") from None
    return path


def use(directory: str | os.PathLike[str] | None) -> Path | None:
    """Turn JAX's persistent compilation cache on in ``directory``, or off.

    On, JAX stores every compiled program there (:data:`MIN_COMPILE_TIME_SECS`,
    :data:`MIN_ENTRY_SIZE_BYTES`) and a later process loads it instead of compiling. Programs
    compiled before the cache was turned on stay in memory only; turn it on first.

    Args:
      directory: the cache directory (see :func:`private_directory`), or ``""`` / None to turn
        the cache off and put JAX's own settings back as they were.

    Returns:
      The directory in use, or None when off.

    Raises:
      JaxGradUsageError: the directory is refused; the cache stays as it was.
    """
    global _saved, _active
    with _lock:
        if not directory:
            if _saved is not None:
                for name, value in _saved.items():
                    jax.config.update(name, value)
                _saved = None
                _active = None
                _jax_cache.reset_cache()  # else JAX keeps writing to the directory it opened
            return None
        path = private_directory(directory)
        if _saved is None:
            _saved = {name: getattr(jax.config, name) for name in (_DIR_SETTING, *_SETTINGS)}
        for name, value in _SETTINGS.items():
            jax.config.update(name, value)
        jax.config.update(_DIR_SETTING, str(path))
        # JAX opens its cache once, at the first compile after a directory is set, and keeps it:
        # a new directory takes effect only after a reset.
        _jax_cache.reset_cache()
        _active = path
        return path


def active() -> Path | None:
    """The directory :func:`use` turned the cache on in, or None when it is off."""
    return _active
