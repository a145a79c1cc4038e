"""Redo: a burst of requests costs one more run of the job, never one per request, and close stops it."""

from __future__ import annotations

import threading
import time

from jaxgrad_magic.background import Redo


class Job:
    """A job that counts its runs and, when asked, holds its first run until released."""

    def __init__(self, hold: bool) -> None:
        self.runs = 0
        self.threads: set[str] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self) -> None:
        self.runs += 1
        self.threads.add(threading.current_thread().name)
        self.started.set()
        assert self.release.wait(10)


def test_requests_made_during_a_run_coalesce_into_one_more_run() -> None:
    job = Job(hold=True)
    redo = Redo(job, "test-redo")
    redo.request()
    assert job.started.wait(10)
    for _ in range(50):  # a burst while the first run is held
        redo.request()
    assert not redo.wait(0.01)  # still going
    job.release.set()
    assert redo.wait(10)
    assert job.runs == 2 and job.threads == {"test-redo"}
    redo.request()  # idle again: a new request runs it once more
    assert redo.wait(10) and job.runs == 3


def test_close_lets_the_run_going_on_finish_and_runs_no_more() -> None:
    job = Job(hold=True)
    redo = Redo(job, "test-redo")
    redo.request()
    assert job.started.wait(10)
    redo.request()  # due after the first run
    closing = threading.Thread(target=redo.close)
    closing.start()
    while not redo.closed:  # close() marks it closed first, then waits for the run going on
        threading.Event().wait(0.001)
    job.release.set()
    closing.join(10)
    assert redo.closed and redo.wait(0) and job.runs == 1  # the due run was dropped
    redo.request()
    assert redo.wait(10) and job.runs == 1


def test_waiting_on_an_idle_redo_returns_at_once() -> None:
    redo = Redo(Job(hold=False), "test-redo")
    assert redo.wait(0)


def test_a_settling_redo_waits_for_the_requests_to_stop_then_runs_once() -> None:
    job = Job(hold=False)
    redo = Redo(job, "test-redo", settle=1.0)
    for _ in range(6):  # a burst of requests, each well inside the settling time of the last
        redo.request()
        time.sleep(0.05)
    last = time.monotonic()
    assert job.runs == 0  # still being asked: nothing has run
    assert redo.wait(30)
    assert job.runs == 1 and time.monotonic() - last >= 0.9
