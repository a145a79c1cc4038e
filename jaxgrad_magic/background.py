"""One job on a background thread for a burst of requests: what the panel's slow views redraw with.

The panel's loss plane and its stability line each take a measurement after every step, run or
reset: tens of milliseconds, too slow for the thread that clicks a button or runs a loop. A
:class:`Redo` runs its job on its own thread, and requests made while it works coalesce into
one more run, so a burst of fifty steps costs two jobs, not fifty, and the last one sees the last
state. Pure: no IPython, no widgets.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

SETTLE = 0.25
"""Seconds a panel's background view waits for the requests to stop before it runs: a loop of
steps in a cell gets one measurement when it ends, not one every few steps beside it."""


class Redo:
    """Run ``job`` on a background thread when asked, once more for all the requests made meanwhile.

    Args:
      job: what to run (it reads the state itself, so a later run sees a later state).
      name: the thread's name.
      settle: seconds without a request before a run starts. While a loop of steps keeps
        asking, the thread waits (without the GIL, using no CPU), so neither its Python nor its
        computation takes turns with the loop's; one run follows the loop.
    """

    def __init__(self, job: Callable[[], None], name: str, settle: float = 0.0) -> None:
        self._job = job
        self._name = name
        self._settle = settle
        self._asked = 0.0  # when the last request came
        self._rest = threading.Event()  # set by close(): a wait for the requests to settle ends at once
        self._lock = threading.Lock()
        self._due = False
        self._thread: threading.Thread | None = None
        self.closed = False
        _LIVE.add(self)

    def request(self) -> None:
        """Run the job soon: now if it is idle, else once more when the run going on ends."""
        with self._lock:
            self._due = True
            self._asked = time.monotonic()
            if self.closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no run is due or going; True when that is so (False after ``timeout``)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not (self._thread is not None and self._thread.is_alive())

    def close(self, timeout: float = 5.0) -> None:
        """Run no more (the run going on, if any, finishes; :attr:`closed` tells the job to skip its output)."""
        self.closed = True
        self._rest.set()
        self.wait(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._due or self.closed:
                    self._thread = None
                    return
                quiet = self._settle - (time.monotonic() - self._asked)
                if quiet <= 0:
                    self._due = False
            if quiet > 0:
                self._rest.wait(quiet)  # until the requests have stopped for `settle` seconds
                continue
            self._job()


_LIVE: weakref.WeakSet[Redo] = weakref.WeakSet()


def wait_all(timeout: float | None = None) -> bool:
    """Wait until no :class:`Redo` has a run due or going (a script or a test that must see
    the panels' measurements done, or count the programs they compile); False after ``timeout``."""
    end = None if timeout is None else time.monotonic() + timeout
    for redo in list(_LIVE):
        left = None if end is None else max(0.0, end - time.monotonic())
        if not redo.wait(left):
            return False
    return True
