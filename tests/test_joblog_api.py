"""iatools.JobLog in-process: the same answers as ia-joblog on the same
log (which tests/logmodel judges), and events recorded through it read by
the command."""

import random
import shutil
import sys
import time

import pytest

from iatools.log import checkpoint
from iatools.log.checkpoint import SAVE_AFTER
from iatools.log.joblog import JobLog
from tests.helpers import REPO, parse_jsonl, run
from tests.logmodel import (JOBLOG, _jobs_to_skip, assert_readings_agree_with_model, big_log,
                            compact, model_of)


def command(*args, input=b""):
    result = run([JOBLOG, *map(str, args)], input=input)
    assert result.returncode == 0, result.stderr
    return parse_jsonl(result.stdout)


def without_clock(summary):
    return {k: v for k, v in summary.items()
            if k not in ("last_event_seconds_ago", "rates", "jobs_per_second",
                         "bytes_per_second", "eta_seconds", "eta_bytes_seconds", "eta_window",
                         "history", "recent_failures")}


@pytest.fixture
def recorded(tmp_path):
    """A log of 3,000 random events recorded through JobLog.append."""
    events = big_log(random.Random(5), 3000)
    log = JobLog(tmp_path / "s.jsonl")
    assert log.append(iter(events)) == len(events)
    return log, events


def test_what_append_recorded_the_command_reads_as_the_model_says(recorded):
    log, events = recorded
    assert_readings_agree_with_model(log.path, events)


def test_the_readings_are_the_commands(recorded):
    log, _ = recorded
    assert without_clock(log.status()) == without_clock(command("status", "--json", log.path)[0])
    assert list(log.pending()) == command("pending", log.path)
    assert list(log.completed()) == command("completed", log.path)
    assert list(log.failed()) == command("failed", log.path)
    assert list(log.failed(retryable=False)) == command("failed", "--permanent", log.path)
    assert log.status(by="batch")["by"] == command("status", "--json", "--by", "batch",
                                                   log.path)[0]["by"]


def test_skip_passes_on_what_the_command_passes_on_and_records_it(recorded, tmp_path):
    log, events = recorded
    state, _, _, _, version, _ = model_of(events)
    jobs, _ = _jobs_to_skip(random.Random(2), state, version)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(log.path, copy)
    from_command = command("skip", copy, input=compact(jobs))
    passed = list(log.skip(jobs))
    assert passed == from_command
    assert {(j["id"], j.get("file")) for j in log.pending()} >= {
        (j["id"], j.get("file")) for j in passed}


def test_tee_yields_each_event_once_recorded(tmp_path):
    log = JobLog(tmp_path / "s.jsonl")
    events = big_log(random.Random(6), 10)
    for n, event in enumerate(log.tee(events), 1):
        assert len(parse_jsonl((tmp_path / "s.jsonl").read_bytes())) == n
        assert event is events[n - 1]


def test_a_bad_event_is_refused_and_those_before_it_kept(tmp_path):
    log = JobLog(tmp_path / "s.jsonl")
    good = big_log(random.Random(7), 3)
    with pytest.raises(ValueError, match='"event"'):
        log.append(good + [{"id": "item-1"}] + good)
    assert len(parse_jsonl((tmp_path / "s.jsonl").read_bytes())) == 3
    with pytest.raises(ValueError):
        list(log.skip([{"id": "../etc"}]))


_WRITER_PROGRAM = r"""
import os, random, sys, threading
from iatools.log.joblog import JobLog
from tests.logmodel import big_log
events = big_log(random.Random(8), 50_000)
log = JobLog(sys.argv[1])
busy = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
busy.start()  # a program with threads, as one using the API often is
for _ in range(3):
    log.append(events)
    list(log.tee(events[:10]))
try:
    child = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    child = None
print("child" if child else "none")
"""


def test_writing_through_the_api_leaves_no_child_behind(tmp_path):
    """The writers refresh the index in the background: in a program
    using the API (which lives on, and may have threads) that must leave
    neither a process to reap nor a fork of the program, yet bring the
    checkpoints up to date."""
    log = tmp_path / "s.jsonl"
    result = run([sys.executable, "-c", _WRITER_PROGRAM, str(log)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"none\n"
    assert log.stat().st_size > 3 * SAVE_AFTER
    deadline = time.monotonic() + 120
    while checkpoint.covered(str(log), "status") != checkpoint.covered(str(log), "completed") \
            or getattr(checkpoint.covered(str(log), "status"), "offset", 0) != log.stat().st_size:
        assert time.monotonic() < deadline, "the index never caught up"
        time.sleep(0.2)
    assert_readings_agree_with_model(log, parse_jsonl(log.read_bytes()))


def test_what_is_not_a_list_of_dicts_is_refused_before_anything_is_recorded(tmp_path):
    path = tmp_path / "s.jsonl"
    log = JobLog(path)
    event = {"event": "queued", "id": "item-1"}
    with pytest.raises(TypeError, match="iterable of dicts, not a dict"):
        log.append(event)
    with pytest.raises(TypeError, match="iterable of dicts, not a str"):
        list(log.skip("item-1"))
    with pytest.raises(TypeError, match="must be dicts, not a str"):
        list(log.tee(["item-1"]))
    with pytest.raises(ValueError, match='"event" must be a string, not 5'):
        log.append([{**event, "event": 5}])
    assert not path.exists() or path.read_bytes() == b""
