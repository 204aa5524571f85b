"""The worker pool's own guarantees, on a pool built in-process: an
unexpected error in a worker (a bug) must stop the run and say so, never
leave the run waiting forever or ending with exit status 0."""

import threading
import time

from iatools.fetching.hostpacing import HostPacing
from iatools.fetching.pool import Pool


class _BrokenSettings:
    """Settings whose connections cannot be made: each worker dies at once."""

    read_ahead = 4
    retries = 0
    bwlimit = None

    def new_connection(self, pacing):
        raise RuntimeError("no connection for you")


def test_a_worker_that_dies_stops_the_run_and_is_reported(capsys):
    cancel = threading.Event()
    finished = threading.Event()
    pool = Pool(_BrokenSettings(), emit=lambda event: None, cancel=cancel,
                pacing=HostPacing(2), progress=None, locks=None)
    pool.start(2, on_finished=finished.set)
    assert finished.wait(10), "the workers did not end"
    assert not pool.alive()
    assert pool.crashed and cancel.is_set()
    assert not pool.offer({"id": "x"}), "a stopped pool still takes jobs"
    stderr = capsys.readouterr().err
    assert stderr.count("internal error in worker-") == 2
    assert "RuntimeError: no connection for you" in stderr


def test_the_last_worker_to_end_calls_on_finished_once():
    cancel = threading.Event()
    calls = []
    pool = Pool(_BrokenSettings(), emit=lambda event: None, cancel=cancel,
                pacing=HostPacing(2), progress=None, locks=None)
    pool.start(3, on_finished=lambda: calls.append(time.monotonic()))
    deadline = time.monotonic() + 10
    while pool.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(calls) == 1
