"""A command run in-process leaves the caller's signal handlers as they
were, and may be run from a thread other than the main one."""

import signal
import threading

import pytest

from iatools.base.signals import STOP_SIGNALS
from iatools.commands import joblog, route
from tests.inprocess import call

EVENT = b'{"event":"queued","id":"item-1","ts":"2026-12-07T00:00:00Z","host":"h","pid":1}\n'


def runs(tmp_path):
    log = tmp_path / "s.jsonl"
    return [(joblog.main, ["append", log], EVENT), (joblog.main, ["status", log], b""),
            (route.main, ["-d", tmp_path, "--no-disk-check"], b'{"id":"item-1"}\n')]


def test_the_callers_handlers_are_kept(tmp_path):
    def mine(signum, frame):
        pass
    before = {signum: signal.signal(signum, mine) for signum in STOP_SIGNALS}
    try:
        for main, argv, stdin in runs(tmp_path):
            assert call(main, argv, stdin).status == 0
            assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == dict.fromkeys(
                STOP_SIGNALS, mine), argv
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_command_runs_in_a_thread_other_than_the_main_one(tmp_path):
    outcomes = []
    for main, argv, stdin in runs(tmp_path):
        worker = threading.Thread(target=lambda: outcomes.append(call(main, argv, stdin)))
        worker.start()
        worker.join(30)
    assert [outcome.status for outcome in outcomes] == [0, 0, 0], outcomes


@pytest.fixture(autouse=True)
def handlers_unchanged():
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before
