"""ia-joblog end to end: the real command, real pipes, real signals.

Nothing is monkeypatched: every test runs bin/ia-joblog as a subprocess
(often inside a shell pipeline) and judges it by its stdout, stderr, exit
status and the bytes of the log it leaves behind.  ia-fetch is stood in for
by a small script (FAKE_FETCH) that turns jobs into completed or failed
events, so these tests need no network and no emulator.
"""

import calendar
import fcntl
import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import threading
import time

import pytest

from iatools.contract import jsonl, linegrammar
from iatools.contract.jobs import make_event
from tests.helpers import (PYTHON, base_env, command, jsonl_bytes, parse_jsonl, read_jsonl, run,
                           start_group)
from tests.logmodel import (EVENT_FIELDS, assert_readings_agree_with_model, big_log, compact,
                            days_of_events, iso, job_keys, stderr_text)

JOBLOG = command("ia-joblog")
#: Stands in for ia-fetch: one event per job on stdin; ids given as
#: arguments fail (retryably), the others complete with their "size" as bytes.
FAKE_FETCH = r'''
import json, sys, time
fail = set(sys.argv[1:])
for line in sys.stdin:
    job = json.loads(line)
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (now % 1 * 1000)
    if job["id"] in fail:
        event = {"event": "failed", **job, "ts": ts, "host": "test", "pid": 1,
                 "error": "HTTP 503", "retryable": True, "http_status": 503, "attempts": 3}
    else:
        event = {"event": "completed", **job, "ts": ts, "host": "test", "pid": 1,
                 "files": 1, "bytes": job.get("size", 0), "seconds": 0.01}
    sys.stdout.write(json.dumps(event) + "\n")
'''


@pytest.fixture
def fake_fetch(tmp_path):
    path = tmp_path / "fake_fetch.py"
    path.write_text(FAKE_FETCH)
    return f"{PYTHON} {path}"


def joblog(*args, input=b""):
    return run([JOBLOG, *map(str, args)], input=input)


def event(kind, id, ts=None, **fields):
    record = {"event": kind, "id": id, **fields}
    if ts is not None:
        record["ts"] = ts
    return record


def write_log(path, records):
    path.write_bytes(jsonl_bytes(records))
    return path


def assert_quiet(result):
    assert "Traceback" not in stderr_text(result), stderr_text(result)


def shell(script, **kwargs):
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=60, **kwargs)


# ---------------------------------------------------------------- append, tee

def test_append_records_each_event_verbatim(tmp_path):
    log = tmp_path / "s.jsonl"
    events = [event("started", "a", ts=iso(0)), event("completed", "a", bytes=5, mine="x"),
              event("failed", "b", file="d/f.txt", error="boom")]
    result = joblog("append", log, input=jsonl_bytes(events))
    assert result.returncode == 0, stderr_text(result)
    assert result.stdout == b""
    assert log.read_bytes() == jsonl_bytes(events)
    # a second append adds to the end and never rewrites what is there
    more = [event("completed", "b", file="d/f.txt")]
    assert joblog("append", log, input=jsonl_bytes(more)).returncode == 0
    assert log.read_bytes() == jsonl_bytes(events + more)


def test_append_judges_each_line_even_when_two_would_make_one_event(tmp_path):
    """A line cut inside a string (a crash mid-write, then more events)
    and the line after it read together as one well-formed event: each
    line must still be judged alone, and the two reported."""
    good = b'{"event":"started","id":"a","ts":"2026-12-07T00:00:00Z","host":"h","pid":1}\n'
    cut = b'{"event":"started","id":"b","ts":"2026-12\n-07T00:00:00Z","host":"h","pid":1}\n'
    log = tmp_path / "s.jsonl"
    result = joblog("append", log, input=good + cut + good)
    assert result.returncode == 1
    assert "line 2: " in stderr_text(result) and "line 3: " in stderr_text(result)
    assert log.read_bytes() == good + good


def test_tee_copies_the_valid_events_to_stdout(tmp_path):
    log = tmp_path / "s.jsonl"
    good = [event("completed", "a"), event("failed", "b", error="x")]
    data = jsonl_bytes(good[:1]) + b"not json\n" + jsonl_bytes(good[1:])
    result = joblog("tee", log, input=data)
    assert result.returncode == 1
    assert parse_jsonl(result.stdout) == good
    assert read_jsonl(log) == good
    assert "input line 2" in stderr_text(result)


@pytest.mark.parametrize("subcommand", ["append", "tee", "skip"])
def test_empty_input_succeeds_silently(tmp_path, subcommand):
    result = joblog(subcommand, tmp_path / "s.jsonl", input=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


# ---------------------------------------------------------------- skip

def test_skip_with_a_missing_log_passes_everything_and_records_it_queued(tmp_path):
    log = tmp_path / "new.jsonl"
    jobs = [{"id": "a", "batch": "7"}, {"id": "b", "file": "x/y.pdf", "size": 12},
            {"id": "c", "destdir": "/mnt/a"}]
    result = joblog("skip", log, input=jsonl_bytes(jobs))
    assert result.returncode == 0, stderr_text(result)
    assert parse_jsonl(result.stdout) == jobs
    queued = read_jsonl(log)
    assert [e["event"] for e in queued] == ["queued"] * 3
    for job, recorded in zip(jobs, queued):
        assert {k: v for k, v in recorded.items() if k not in EVENT_FIELDS} == job
        assert {"ts", "host", "pid"} <= recorded.keys()


def test_skip_passes_only_jobs_without_a_completed_event(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("queued", "done"), event("completed", "done"),
        event("completed", "failed-later"), event("failed", "failed-later"),  # once done, done
        event("failed", "failed"), event("started", "started"), event("queued", "queued"),
    ])
    ids = ["done", "failed-later", "failed", "started", "queued", "new"]
    result = joblog("skip", log, input=jsonl_bytes({"id": i} for i in ids))
    assert result.returncode == 0, stderr_text(result)
    assert [j["id"] for j in parse_jsonl(result.stdout)] == ["failed", "started", "queued", "new"]


def test_item_and_file_keys_are_independent(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("completed", "item"), event("completed", "other", file="f.txt")])
    jobs = [{"id": "item", "file": "f.txt"}, {"id": "other"},
            {"id": "item"}, {"id": "other", "file": "f.txt"}, {"id": "other", "file": "g.txt"}]
    result = joblog("skip", log, input=jsonl_bytes(jobs))
    assert job_keys(parse_jsonl(result.stdout)) == [
        ("item", "f.txt"), ("other", None), ("other", "g.txt")]


def test_skip_accepts_events_as_jobs_and_passes_only_the_job(tmp_path):
    log = tmp_path / "s.jsonl"
    failed = event("failed", "a", ts=iso(0), error="HTTP 503", retryable=True, http_status=503,
                   attempts=3, failed_file="x.pdf", mine="kept")
    result = joblog("skip", log, input=jsonl_bytes([failed]))
    assert parse_jsonl(result.stdout) == [{"id": "a", "mine": "kept"}]


# ---------------------------------------------------------------- resume

def test_resume_by_key_after_reordering_and_re_resolving(tmp_path, fake_fetch):
    log = tmp_path / "s.jsonl"
    ids = [f"item{i:03d}" for i in range(60)]
    failing = ids[::7]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(jsonl_bytes({"id": i, "size": n, "batch": "1"} for n, i in enumerate(ids)))
    first = shell(f"{JOBLOG} skip {log} < {jobs} | {fake_fetch} {' '.join(failing)} "
                  f"| {JOBLOG} append {log}")
    assert first.returncode == 0, first.stderr

    # Re-resolved (a new user field) and in another order: only the failures run again.
    reordered = [{"id": i, "size": ids.index(i), "batch": "2", "note": "retry"} for i in ids]
    random.Random(4).shuffle(reordered)
    jobs.write_bytes(jsonl_bytes(reordered))
    second = shell(f"{JOBLOG} skip {log} < {jobs} | tee {tmp_path}/passed.jsonl "
                   f"| {fake_fetch} | {JOBLOG} append {log}")
    assert second.returncode == 0, second.stderr
    passed = read_jsonl(tmp_path / "passed.jsonl")
    assert sorted(j["id"] for j in passed) == sorted(failing)
    assert all(j["batch"] == "2" and j["note"] == "retry" for j in passed)

    status = json.loads(joblog("status", "--json", log).stdout)
    assert (status["total"], status["completed"], status["failed"]) == (60, 60, 0)
    assert joblog("pending", log).stdout == b""
    assert joblog("failed", log).stdout == b""


# ---------------------------------------------------------------- pending, failed

def test_pending_prints_each_unfinished_job_once_with_its_fields(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("queued", "a", ts=iso(1), batch="1", size=10),
        event("started", "a", ts=iso(2), batch="1", size=10),
        event("failed", "a", ts=iso(3), batch="1", size=10, error="x", retryable=True),
        event("queued", "b", file="f.txt", ts=iso(1), batch="1"),
        event("completed", "b", file="f.txt", ts=iso(4), batch="1", bytes=3),
        event("queued", "b", ts=iso(1), destdir="/mnt/b"),
        event("planned", "c", ts=iso(1), plan=[], files=2),
        event("completed", "d"),
    ])
    result = joblog("pending", log)
    assert result.returncode == 0, stderr_text(result)
    assert parse_jsonl(result.stdout) == [
        {"id": "a", "batch": "1", "size": 10},
        {"id": "b", "destdir": "/mnt/b"},
        {"id": "c"},
    ]


def test_failed_prints_jobs_whose_latest_outcome_is_a_failure(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("failed", "recovered", error="x"), event("completed", "recovered"),
        event("failed", "twice", error="first", mine="1"),
        event("started", "twice"),
        event("failed", "twice", error="second", mine="1"),
        event("failed", "file", file="a/b.txt", error="HTTP 404", retryable=False,
              http_status=404, failed_file="a/b.txt", attempts=1, ts=iso(5), host="h", pid=9),
        event("completed", "file"),  # the item job, not the file job
        event("started", "running"),
        event("completed", "done"),
    ])
    result = joblog("failed", log)
    assert result.returncode == 0, stderr_text(result)
    jobs = parse_jsonl(result.stdout)
    assert jobs == [{"id": "twice", "mine": "1", "error": "second"},
                    {"id": "file", "file": "a/b.txt", "error": "HTTP 404", "retryable": False,
                     "http_status": 404}]
    # What it failed of, and why, and nothing else of the event.
    assert all(EVENT_FIELDS & job.keys() <= {"error", "retryable", "http_status"}
               for job in jobs)
    retryable, permanent = joblog("failed", "--retryable", log), joblog("failed", "--permanent", log)
    assert [j["id"] for j in parse_jsonl(retryable.stdout)] == ["twice"]
    assert [j["id"] for j in parse_jsonl(permanent.stdout)] == ["file"]


def test_failed_jobs_feed_straight_back_into_a_retry(tmp_path, fake_fetch):
    log = tmp_path / "s.jsonl"
    jobs = jsonl_bytes({"id": f"i{n}", "size": n} for n in range(10))
    (tmp_path / "jobs.jsonl").write_bytes(jobs)
    shell(f"{JOBLOG} skip {log} < {tmp_path}/jobs.jsonl | {fake_fetch} i3 i7 "
          f"| {JOBLOG} append {log}", check=True)
    assert [j["id"] for j in parse_jsonl(joblog("failed", log).stdout)] == ["i3", "i7"]
    retry = shell(f"{JOBLOG} failed {log} | {fake_fetch} | {JOBLOG} tee {log}")
    assert retry.returncode == 0, retry.stderr
    retried = parse_jsonl(retry.stdout)
    assert [(e["event"], e["id"], e["bytes"]) for e in retried] == [
        ("completed", "i3", 3), ("completed", "i7", 7)]
    assert joblog("failed", log).stdout == b""


def test_why_a_job_failed_does_not_travel_on_with_it(tmp_path):
    """failed prints the error on each job; read back as a job (by skip, by
    ia-fetch) the job drops it, and keeps its own fields."""
    log = write_log(tmp_path / "s.jsonl", [
        event("failed", "a", ts=iso(1), note="mine", error="HTTP 503", retryable=True,
              http_status=503, failed_files=[{"name": "x", "error": "HTTP 503"}])])
    printed = joblog("failed", log).stdout
    assert parse_jsonl(printed)[0]["error"] == "HTTP 503"
    again = joblog("skip", log, input=printed)
    assert parse_jsonl(again.stdout) == [{"id": "a", "note": "mine"}]
    assert read_jsonl(log)[-1]["event"] == "queued" and "error" not in read_jsonl(log)[-1]


# ---------------------------------------------------------------- a mirror kept true

#: Both ways a job stream is read: compact lines (judged a chunk at a time)
#: and lines with spaces (the full parser).
WRITERS = {"fast": compact, "full": jsonl_bytes}


def queued_reasons(log, start=0):
    """(id, reason) of the queued events of the log from its line ``start``."""
    return [(e["id"], e.get("reason")) for e in read_jsonl(log)[start:] if e["event"] == "queued"]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_skip_passes_a_job_again_when_its_item_changed_upstream(tmp_path, writer):
    log = write_log(tmp_path / "s.jsonl", [
        event("completed", "same", ts=iso(1), size=10, updated="u1"),
        event("completed", "bigger", ts=iso(1), size=5),
        event("completed", "unknown", ts=iso(1)),
        event("completed", "twice", ts=iso(1), size=1, updated="u1"),
        event("completed", "twice", ts=iso(2), size=2, updated="u2"),  # the latest counts
        event("verified", "newer", ts=iso(1), size=3, updated="u1"),
        event("completed", "plain", ts=iso(1), size=4, updated="u1"),
    ])
    jobs = [{"id": "same", "size": 10, "updated": "u1"},
            {"id": "bigger", "size": 6, "updated": "u9"},   # no date recorded: size decides
            {"id": "unknown", "size": 1},                   # no version recorded
            {"id": "twice", "size": 1, "updated": "u1"},
            {"id": "newer", "size": 3, "updated": "u2"},
            {"id": "plain"},                                # the job says nothing of it
            {"id": "new", "size": 7}]
    lines = len(read_jsonl(log))
    result = joblog("-v", "skip", log, input=WRITERS[writer](jobs))
    assert result.returncode == 0, stderr_text(result)
    assert parse_jsonl(result.stdout) == [jobs[1], jobs[3], jobs[4], jobs[6]]
    assert sorted(queued_reasons(log, lines)) == [
        ("bigger", "changed"), ("new", None), ("newer", "changed"), ("twice", "changed")]
    assert "3 changed upstream" in stderr_text(result)
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert {k: summary[k] for k in ("completed", "changed", "pending")} == {
        "completed": 3, "changed": 3, "pending": 4}
    # Not completed now: passed on again until fetched, plainly queued.
    lines = len(read_jsonl(log))
    again = joblog("skip", log, input=WRITERS[writer](jobs))
    assert parse_jsonl(again.stdout) == [jobs[1], jobs[3], jobs[4], jobs[6]]
    assert queued_reasons(log, lines) and all(r is None for _, r in queued_reasons(log, lines))


def test_a_changed_item_fetched_again_is_skipped_after(tmp_path, fake_fetch):
    log = tmp_path / "s.jsonl"
    jobs = tmp_path / "jobs.jsonl"
    run_pipeline = (f"{JOBLOG} skip {log} < {jobs} | tee -a {tmp_path}/passed "
                    f"| {fake_fetch} | {JOBLOG} append {log}")
    jobs.write_bytes(compact([{"id": "a", "size": 1, "updated": "d1"}, {"id": "b", "size": 2}]))
    shell(run_pipeline, check=True)
    jobs.write_bytes(compact([{"id": "a", "size": 1, "updated": "d2"}, {"id": "b", "size": 2}]))
    shell(run_pipeline, check=True)
    shell(run_pipeline, check=True)
    assert [j["id"] for j in read_jsonl(tmp_path / "passed")] == ["a", "b", "a"]
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert (summary["completed"], summary["changed"]) == (2, 0)


def test_damaged_undoes_a_completion_and_verified_counts_as_one(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("completed", "a", ts=iso(1), size=1),
        event("damaged", "a", ts=iso(2), size=1, files=1, bytes=0),
        event("completed", "b", ts=iso(1)), event("verified", "b", ts=iso(2), files=1, bytes=9),
        event("completed", "c", ts=iso(1)), event("damaged", "c", ts=iso(2)),
        event("completed", "c", ts=iso(3)),  # repaired: the latest outcome wins
        event("verified", "d", ts=iso(1)),  # adopted: never fetched, found whole
        event("damaged", "e", ts=iso(1)),
        event("failed", "a", ts=iso(3), error="HTTP 503", retryable=True),
    ])
    skipped = joblog("skip", log, input=compact([{"id": i} for i in "abcdef"]))
    assert [j["id"] for j in parse_jsonl(skipped.stdout)] == ["a", "e", "f"]
    pending = joblog("pending", log)
    assert parse_jsonl(pending.stdout) == [{"id": "a", "size": 1}, {"id": "e"}, {"id": "f"}]
    completed = joblog("completed", log)
    assert completed.returncode == 0, stderr_text(completed)
    assert parse_jsonl(completed.stdout) == [{"id": "b"}, {"id": "c"}, {"id": "d"}]
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert {k: summary[k] for k in ("completed", "damaged", "failed", "pending")} == {
        "completed": 3, "damaged": 1, "failed": 1, "pending": 2}


def test_completed_prints_the_jobs_alike_from_either_path(tmp_path):
    jobs = [{"id": f"i{n}", "size": n, "updated": "2026-01-01", "destdir": "/m", "mine": None}
            for n in range(3)] + [{"id": "f", "file": "d/caf\u00e9.txt"}]
    events = [{"event": "completed", **job, "ts": iso(n), "host": "h", "pid": 1, "files": 2,
               "files_skipped": 0, "bytes": 10, "seconds": 0.25, "attempts": 3,
               "files_removed": ["old.pdf"], "files_extra": [], "reason": "x"}
              for n, job in enumerate(jobs)]
    printed = {}
    for name, writer in WRITERS.items():
        log = tmp_path / f"{name}.jsonl"
        log.write_bytes(writer(events))
        result = joblog("completed", log)
        assert result.returncode == 0, stderr_text(result)
        printed[name] = result.stdout
    assert parse_jsonl(printed["fast"]) == jobs
    assert printed["fast"] == compact(jobs)  # cut out of the lines, byte for byte


def test_completed_and_pending_cut_jobs_alike_whatever_order_and_values_their_fields_have(
        tmp_path):
    """The usual job fields (size, updated, destdir) and outcome fields
    (files ... attempts) are tried by name first when lines are cut: lines
    with them in another order, with values of another kind, or with more
    fields after them give the same jobs as the full parser."""
    stamp = '"ts":"2026-12-06T00:00:00.000Z","host":"h","pid":1'
    outcome = '"files":3,"files_skipped":0,"bytes":10,"seconds":0.5,"attempts":4'
    lines = {
        "usual": f'"size":5,"updated":"2026-01-01","destdir":"/m",{stamp},{outcome}',
        "other order": f'"destdir":"/m","size":5,{stamp},"bytes":10,"files":3',
        "a number as JSON writes it": f'"size":5,{stamp},{outcome[:-1]}4e5,"reason":"x"',
        "a string count": f'"updated":"u",{stamp},"files":"3","files_skipped":0',
        "more after": f'"size":0,"title":"t",{stamp},{outcome},"files_removed":["a.pdf"]',
    }
    events = [f'{{"event":"{kind}","id":"i{n}",{rest}}}'
              for n, rest in enumerate(lines.values()) for kind in ("queued", "completed")]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(events) + "\n")
    jobs = [{k: v for k, v in json.loads(e).items() if k not in EVENT_FIELDS}
            for e in events[1::2]]
    for reader in ("completed", "pending"):
        result = joblog(reader, log)
        assert result.returncode == 0, stderr_text(result)
        assert result.stdout == (compact(jobs) if reader == "completed" else b"")
    log.write_text("\n".join(events[::2]) + "\n")
    result = joblog("pending", log)
    assert result.stdout == compact(jobs), stderr_text(result)


@pytest.mark.parametrize("case", ["each once", "one spaced", "one twice", "dots in a name"])
def test_completed_prints_each_latest_completion_found_among_other_lines(tmp_path, case):
    """Where every completion in the log is the latest of its key, completed
    finds the jobs where they are, between started and failed lines (a
    line of another shape sends its block to the cut-out path); where a key
    completed twice, only the latest is printed (the cut-out path)."""
    stamp = '"ts":"2026-12-06T00:00:00.000Z","host":"h","pid":1'
    outcome = '"files":1,"files_skipped":0,"bytes":10,"seconds":0.5,"attempts":1'
    lines = []
    for n in range(40):
        lines.append(f'{{"event":"started","id":"i{n}","size":{n},{stamp}}}')
        if n % 7 == 3:
            lines.append(f'{{"event":"failed","id":"i{n}","size":{n},{stamp},"error":"e"}}')
        lines.append(f'{{"event":"completed","id":"i{n}","size":{n},{stamp},{outcome}}}')
    expected = [{"id": f"i{n}", "size": n} for n in range(40)]
    if case == "one spaced":
        lines[20] = lines[20].replace(',"size"', ', "size"')  # parsed, not matched
    if case == "dots in a name":  # (the jobs found are judged again, strictly)
        lines = [line.replace('"id":"i7",', '"id":"i7","file":"a..b.txt",') for line in lines]
        expected[7] = {"id": "i7", "file": "a..b.txt", "size": 7}
    if case == "one twice":
        lines.append(f'{{"event":"completed","id":"i5","size":99,{stamp},{outcome}}}')
        expected.append({"id": "i5", "size": 99})  # its latest completion, in log order
        del expected[5]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    result = joblog("completed", log)
    assert result.returncode == 0, stderr_text(result)
    assert result.stdout == compact(expected)


#: Stands in for ia-verify: a job whose id is given as an argument is
#: damaged, the others verified.
FAKE_VERIFY = r"""
import json, sys
for line in sys.stdin:
    job = json.loads(line)
    kind = "damaged" if job["id"] in sys.argv[1:] else "verified"
    print(json.dumps({"event": kind, **job, "ts": "2026-12-06T00:00:00.000Z", "files": 1,
                      "bytes": 1}))
"""


def test_an_audit_of_the_completed_jobs_reopens_the_damaged_ones(tmp_path, fake_fetch):
    log = tmp_path / "s.jsonl"
    verify = tmp_path / "verify.py"
    verify.write_text(FAKE_VERIFY)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(compact([{"id": f"i{n}", "size": n, "destdir": "/m"} for n in range(6)]))
    shell(f"{JOBLOG} skip {log} < {jobs} | {fake_fetch} i5 | {JOBLOG} append {log}", check=True)
    completed = joblog("completed", log)
    assert parse_jsonl(completed.stdout) == [
        {"id": f"i{n}", "size": n, "destdir": "/m"} for n in range(5)]
    audit = shell(f"{JOBLOG} completed {log} | {PYTHON} {verify} i1 i3 | {JOBLOG} append {log}")
    assert audit.returncode == 0, audit.stderr
    again = shell(f"{JOBLOG} skip {log} < {jobs}")
    assert [j["id"] for j in parse_jsonl(again.stdout)] == ["i1", "i3", "i5"]
    assert [j["id"] for j in parse_jsonl(joblog("pending", log).stdout)] == ["i5", "i1", "i3"]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_permanent_failure_is_dropped_unless_asked(tmp_path, writer):
    log = write_log(tmp_path / "s.jsonl", [
        event("failed", "dark", ts=iso(1), error="item is dark", retryable=False,
              http_status=403),
        event("failed", "busy", ts=iso(2), error="HTTP 503", retryable=True, http_status=503),
        event("failed", "gone", ts=iso(3), error="HTTP 404", retryable=False, http_status=404),
        event("started", "gone", ts=iso(4)),  # not an outcome: still failed for good
        event("failed", "back", ts=iso(1), error="HTTP 404", retryable=False),
        event("failed", "back", ts=iso(5), error="HTTP 503", retryable=True),
    ])
    jobs = WRITERS[writer]([{"id": i} for i in ("dark", "busy", "gone", "back", "new")])
    result = joblog("-v", "skip", log, input=jobs)
    assert result.returncode == 0, stderr_text(result)
    assert [j["id"] for j in parse_jsonl(result.stdout)] == ["busy", "back", "new"]
    assert "2 dropped as failed for good" in stderr_text(result)
    forced = joblog("skip", "--retry-permanent", log, input=jobs)
    assert [j["id"] for j in parse_jsonl(forced.stdout)] == ["dark", "busy", "gone", "back", "new"]


def test_status_tells_permanent_failures_apart_and_lists_the_latest(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [
        event("failed", "dark", ts=iso(1), error="item is dark", retryable=False),
        event("failed", "busy", ts=iso(2), error="HTTP 503", retryable=True),
        event("failed", "f", file="a/b.pdf", ts=iso(3), error="md5 mismatch", retryable=True),
        event("failed", "fixed", ts=iso(4), error="HTTP 503", retryable=True),
        event("completed", "fixed", ts=iso(5)),
    ])
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert (summary["failed"], summary["failed_retryable"], summary["failed_permanent"]) == (3, 2, 1)
    assert [{k: v for k, v in f.items() if k != "seconds_ago"}
            for f in summary["recent_failures"]] == [
        {"id": "f", "file": "a/b.pdf", "error": "md5 mismatch", "retryable": True, "ts": iso(3)},
        {"id": "busy", "error": "HTTP 503", "retryable": True, "ts": iso(2)},
        {"id": "dark", "error": "item is dark", "retryable": False, "ts": iso(1)}]
    assert "f/a/b.pdf: md5 mismatch" in joblog("status", log).stdout.decode()
    table = joblog("status", log).stdout.decode()
    assert "3 (2 retryable, 1 permanent)" in table
    assert "dark: item is dark (permanent)" in table


def test_status_by_destdir_shows_the_disk_each_job_went_to(tmp_path):
    # skip queues the job before ia-route gives it a disk.
    log = write_log(tmp_path / "s.jsonl", [
        event("queued", "a"), event("queued", "b"), event("queued", "c"),
        event("started", "a", destdir="/mnt/1"), event("completed", "a", destdir="/mnt/1"),
        event("failed", "b", destdir="/mnt/2", error="x"),
    ])
    (summary,) = parse_jsonl(joblog("status", "--json", "--by", "destdir", log).stdout)
    groups = summary["by"]["groups"]
    assert {v: (g["total"], g["completed"], g["failed"]) for v, g in groups.items()} == {
        "/mnt/1": (1, 1, 0), "/mnt/2": (1, 0, 1), "(none)": (1, 0, 0)}


# ---------------------------------------------------------------- status

def status_log(tmp_path, now):
    return write_log(tmp_path / "s.jsonl", [
        event("queued", "a", ts=iso(now - 60), coll="x"),
        event("completed", "a", ts=iso(now - 50), bytes=1000, coll="x"),
        event("completed", "b", ts=iso(now - 40), bytes=2000, coll="x"),
        event("completed", "c", file="f", ts=iso(now - 30), bytes=500, coll="y"),
        event("failed", "d", ts=iso(now - 20), error="HTTP 503", retryable=True, coll="y"),
        event("failed", "e", ts=iso(now - 20), error="HTTP 503", retryable=True, coll="y"),
        event("failed", "f", ts=iso(now - 20), error="md5 mismatch", retryable=False),
        event("started", "g", ts=iso(now - 10), coll="x"),
        event("queued", "h", ts=iso(now - 10), coll="y"),
        event("queued", "i", ts=iso(now - 10), coll="y"),
    ])


def test_status_json_counts(tmp_path):
    result = joblog("status", "--json", status_log(tmp_path, time.time()))
    assert result.returncode == 0, stderr_text(result)
    (summary,) = parse_jsonl(result.stdout)
    assert {k: summary[k] for k in ("total", "completed", "failed", "in_progress", "pending")} \
        == {"total": 9, "completed": 3, "failed": 3, "in_progress": 1, "pending": 2}
    assert summary["bytes"] == 3500
    assert summary["failed_retryable"] == 2
    assert summary["errors"][0] == {"error": "HTTP 503", "count": 2}
    assert {"error": "md5 mismatch", "count": 1} in summary["errors"]


def test_status_by_field(tmp_path):
    result = joblog("status", "--json", "--by", "coll", status_log(tmp_path, time.time()))
    (summary,) = parse_jsonl(result.stdout)
    assert summary["by"]["field"] == "coll"
    groups = summary["by"]["groups"]
    assert set(groups) == {"x", "y", "(none)"}
    assert (groups["x"]["total"], groups["x"]["completed"], groups["x"]["in_progress"]) == (3, 2, 1)
    assert (groups["y"]["total"], groups["y"]["failed"], groups["y"]["pending"]) == (5, 2, 2)
    assert (groups["(none)"]["total"], groups["(none)"]["failed"]) == (1, 1)
    table = joblog("status", "--by", "coll", tmp_path / "s.jsonl").stdout.decode()
    assert "by coll" in table and "(none)" in table


def test_status_table_for_humans(tmp_path):
    result = joblog("status", status_log(tmp_path, time.time()))
    assert result.returncode == 0, stderr_text(result)
    table = result.stdout.decode()
    for label, number in (("total", "9"), ("completed", "3"), ("failed", "3"),
                          ("in progress", "1"), ("pending", "2")):
        line = next(line for line in table.splitlines() if line.startswith(label))
        assert number in line.split(), line
    assert "HTTP 503" in table and "3.4 KiB" in table


def test_status_gives_rate_and_eta_for_recent_completions(tmp_path):
    log = status_log(tmp_path, time.time())
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert summary["jobs_per_second"] > 0 and summary["bytes_per_second"] > 0
    assert summary["eta_seconds"] > 0
    labels = [line.split()[0] for line in joblog("status", log).stdout.decode().splitlines()]
    assert "rate" in labels and "eta" in labels


def test_status_gives_no_rate_for_an_old_log(tmp_path):
    log = status_log(tmp_path, time.time() - 30 * 86400)
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert summary["jobs_per_second"] is None and summary["eta_seconds"] is None
    labels = [line.split()[0] for line in joblog("status", log).stdout.decode().splitlines()]
    assert "rate" not in labels and "eta" not in labels
    assert summary["completed"] == 3  # old completions still count


def test_status_survives_timestamps_it_did_not_write(tmp_path):
    """ts is not checked when a line is read; a hand-written or foreign one
    must not crash the rate computation."""
    log = write_log(tmp_path / "s.jsonl", [
        event("completed", "a", ts="garbage"), event("completed", "b", ts="2026-11-22T09:3"),
        event("completed", "c", ts=7), event("completed", "d", ts=iso(time.time()))])
    result = joblog("status", "--json", log)
    assert_quiet(result)
    assert result.returncode == 0
    assert parse_jsonl(result.stdout)[0]["completed"] == 4


@pytest.mark.parametrize("reader", ["status", "pending", "failed", "completed"])
def test_a_missing_log_is_an_error_that_names_it(tmp_path, reader):
    """A typo (w.jsnol) must not pass for a log where nothing happened."""
    result = joblog(reader, tmp_path / "w.jsnol")
    assert (result.returncode, result.stdout) == (2, b"")
    assert stderr_text(result).startswith("ia-joblog: error: cannot read log ")
    assert "w.jsnol" in stderr_text(result)
    assert not (tmp_path / "w.jsnol").exists()


def test_status_of_an_empty_log_is_all_zero(tmp_path):
    log = tmp_path / "s.jsonl"
    assert joblog("skip", log).returncode == 0  # creates it
    (summary,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert (summary["total"], summary["bytes"], summary["eta_seconds"]) == (0, 0, None)


# ---------------------------------------------------------------- a run of days

@pytest.fixture(params=sorted(WRITERS))
def days(request, tmp_path):
    """A log of four days of a run to now (tests.logmodel.days_of_events),
    written compact or spaced; its events, and the jobs completed per hour."""
    events, per_hour = days_of_events(time.time())
    log = tmp_path / "s.jsonl"
    log.write_bytes(WRITERS[request.param](events))
    return log, events, per_hour


def test_status_of_a_run_of_days_says_what_is_left_and_when_it_ends(days):
    log, events, per_hour = days
    (s,) = parse_jsonl(joblog("status", "--json", log).stdout)
    completed = [e for e in events if e["event"] == "completed"]
    failed = {e["id"] for e in events if e["event"] == "failed"}
    done = {e["id"] for e in completed}
    sizes = {e["id"]: e["size"] for e in events if e["event"] == "queued"}
    assert (s["total"], s["completed"], s["failed"], s["failed_permanent"]) == (
        1000, len(done), 3, 1)
    assert s["remaining_jobs"] == 1000 - len(done) - 3
    assert s["remaining_bytes"] == sum(size for i, size in sizes.items()
                                       if i not in done and i not in failed)
    # The rates over each window: its completions over the time since the
    # first of them in it.
    for window, count in (("10min", 5), ("1h", per_hour[0]), ("1d", sum(per_hour[:24]))):
        rate = s["rates"][window]
        assert rate["jobs_per_second"] * rate["seconds"] == pytest.approx(count, rel=0.02)
    assert s["rates"]["1h"]["seconds"] == pytest.approx(1800 + 30, abs=60)
    assert s["rates"]["1d"]["seconds"] == pytest.approx(23 * 3600 + 1800 + 30, abs=60)
    assert (s["jobs_per_second"], s["bytes_per_second"]) == (
        s["rates"]["10min"]["jobs_per_second"], s["rates"]["10min"]["bytes_per_second"])
    hour = s["rates"]["1h"]
    assert s["eta_window"] == "1h"
    assert s["eta_seconds"] == pytest.approx(s["remaining_jobs"] / hour["jobs_per_second"], 0.01)
    assert s["eta_bytes_seconds"] == pytest.approx(
        s["remaining_bytes"] / hour["bytes_per_second"], 0.01)
    assert s["eta_seconds"] > 86400  # a run of days still to go
    # A day of history per hour, the oldest first.
    assert s["history"]["jobs"] == per_hour[:24][::-1]
    by_hour = [sum(e["bytes"] for e in completed
                   if h * 3600 <= time.time() - _epoch(e["ts"]) < (h + 1) * 3600)
               for h in range(24)]
    assert s["history"]["bytes"] == by_hour[::-1]
    assert s["last_event_seconds_ago"] == pytest.approx(98, abs=30)
    assert [f["id"] for f in s["recent_failures"]] == sorted(failed, reverse=True)


def test_no_eta_by_bytes_when_the_jobs_left_have_no_size(tmp_path):
    now = time.time()
    log = write_log(tmp_path / "s.jsonl", [event("queued", i, ts=iso(now - 300)) for i in "abcd"]
                    + [event("completed", i, ts=iso(now - 200 + n), bytes=1000)
                       for n, i in enumerate("ab")])
    (s,) = parse_jsonl(joblog("status", "--json", log).stdout)
    assert (s["remaining_jobs"], s["remaining_bytes"]) == (2, 0)
    assert s["eta_seconds"] > 0 and s["eta_bytes_seconds"] is None
    assert "by bytes" not in joblog("status", log).stdout.decode()


def _epoch(ts):
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + float(ts[19:-1])


def test_status_table_of_a_run_of_days(days):
    log, events, per_hour = days
    failures = [e for e in events if e["event"] == "failed"]
    dark = next(e["id"] for e in failures if not e["retryable"])
    busy = failures[-1]["id"]
    result = run([JOBLOG, "status", str(log)], env=base_env(LC_ALL="en_US.UTF-8"))
    assert result.returncode == 0, stderr_text(result)
    table = result.stdout.decode()
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert re.search(r"last event +1m[0-9]{2}s ago \(", table)
    assert re.fullmatch(r"eta +[0-9]d[0-9]{2}h by jobs, [0-9]d[0-9]{2}h by bytes"
                        r" \(rate of the last 1 h\)", lines["eta"])
    assert re.search(r"^rate +10 min: .*\n +1 h: .*\n +1 day: ", table, re.MULTILINE)
    history = re.search(r"^history +(\S{24})  per hour, 24 h to now", table, re.MULTILINE)
    assert history and set(history[1]) <= set("▁▂▃▄▅▆▇█")
    # The busiest hour is a full block.
    assert history[1][::-1][per_hour[:24].index(max(per_hour[:24]))] == "█"
    assert f"{dark}: item is dark (permanent)" in table
    assert re.search(rf"^  1m[0-9]{{2}}s ago +{busy}: HTTP 503$", table, re.MULTILINE)
    assert max(len(line) for line in table.splitlines()[1:]) <= 80  # but the path


def test_status_draws_its_history_in_ascii_under_the_c_locale(days):
    log, _, _ = days
    result = run([JOBLOG, "status", str(log)], env=base_env(LC_ALL="C"))
    assert result.returncode == 0
    assert result.stdout.isascii()
    assert re.search(rb"^history +[_.\-:=+*# ]{24}  per hour", result.stdout, re.MULTILINE)


def read_until(fd, done, seconds=60):
    """What comes out of ``fd`` until ``done(all of it)`` or ``seconds``."""
    data = b""
    deadline = time.monotonic() + seconds
    while not done(data) and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data


def test_status_watch_redraws_until_interrupted(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [event("completed", "a", ts=iso(time.time()))])
    process = start_group(f"exec {JOBLOG} status --watch 0.2 {log}",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = read_until(process.stdout.fileno(), lambda out: out.count(b"every 0.2s") >= 2)
    # A new event shows in a later frame.
    with open(log, "ab") as f:
        f.write(jsonl_bytes([event("completed", "b", ts=iso(time.time()))]))
    later = read_until(process.stdout.fileno(),
                       lambda out: re.search(rb"^completed +2 ", out, re.MULTILINE))
    os.killpg(process.pid, signal.SIGINT)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    out = (first + later + rest).decode()
    frames = out.split("every 0.2s: ia-joblog status ")[1:]
    assert len(frames) >= 3
    assert re.search(r"^completed +1 ", frames[0], re.MULTILINE)
    assert re.search(r"^completed +2 ", frames[-1], re.MULTILINE)
    assert "\x1b" not in out  # not a terminal: frames one after the other


def test_status_watch_redraws_in_place_on_a_terminal(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [event("completed", "a", ts=iso(time.time()))])
    leader, follower = pty.openpty()
    process = start_group(f"exec {JOBLOG} status --watch 0.2 {log}", stdout=follower,
                          stderr=subprocess.PIPE)
    os.close(follower)
    screen = read_until(leader, lambda out: out.count(b"\x1b[H") >= 3)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 0
    os.close(leader)
    assert screen.count(b"\x1b[H") >= 3  # home, then each line cleared to its end
    assert b"\x1b[K" in screen and b"every 0.2s" in screen


def test_status_watch_json_prints_a_summary_per_interval(tmp_path):
    log = write_log(tmp_path / "s.jsonl", [event("completed", "a", ts=iso(time.time()))])
    process = start_group(f"exec {JOBLOG} status --json --watch 0.2 {log}",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    summaries = parse_jsonl(out)
    assert len(summaries) >= 2 and all(s["completed"] == 1 for s in summaries)


@pytest.mark.parametrize("seconds", ["0", "-1", "x", "nan"])
def test_status_watch_needs_a_positive_interval(tmp_path, seconds):
    log = write_log(tmp_path / "s.jsonl", [event("completed", "a")])
    result = joblog("status", "--watch", seconds, log)
    assert result.returncode == 2 and "--watch" in stderr_text(result)


# ---------------------------------------------------------------- concurrency

def test_two_appenders_at_once_never_tear_or_interleave_lines(tmp_path):
    log = tmp_path / "s.jsonl"
    per_writer = 50_000
    for writer in "AB":
        (tmp_path / f"{writer}.jsonl").write_bytes(b"".join(
            # lengths vary so that a torn or spliced line could not parse by luck
            b'{"event":"completed","id":"%s-%06d","bytes":%d,"pad":"%s"}\n'
            % (writer.encode(), n, n, writer.encode() * (n % 150))
            for n in range(per_writer)))
    # Each appender is fed through a pipe that starts flowing at the same
    # moment, so both are writing while the other is.
    start = time.time() + 1.0
    feed = (f"{PYTHON} -c 'import sys, time; time.sleep(max(0, {start} - time.time())); "
            "sys.stdout.buffer.write(open(sys.argv[1], \"rb\").read())'")
    script = (f"{feed} {tmp_path}/A.jsonl | {JOBLOG} append {log} & a=$!; "
              f"{feed} {tmp_path}/B.jsonl | {JOBLOG} append {log} & b=$!; "
              "wait $a || exit 1; wait $b")
    result = shell(script)
    assert result.returncode == 0, result.stderr
    data = log.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) == 2 * per_writer
    events = [json.loads(line) for line in lines]  # every line parses
    for writer in "AB":
        mine = [e for e in events if e["id"].startswith(writer)]
        assert [e["id"] for e in mine] == [f"{writer}-{n:06d}" for n in range(per_writer)]
        assert all(e["pad"] == writer * (e["bytes"] % 150) for e in mine)
    switches = sum(a["id"][0] != b["id"][0] for a, b in zip(events, events[1:]))
    assert switches >= 2, "the two appenders did not overlap; the test proved nothing"


def test_skip_and_append_of_one_pipeline_share_the_log(tmp_path, fake_fetch):
    log = tmp_path / "s.jsonl"
    count = 20_000
    (tmp_path / "jobs.jsonl").write_bytes(
        jsonl_bytes({"id": f"j{n:05d}", "size": n} for n in range(count)))
    result = shell(f"{JOBLOG} skip {log} < {tmp_path}/jobs.jsonl | {fake_fetch} "
                   f"| {JOBLOG} append {log}")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert len(events) == 2 * count
    kinds = {}
    for e in events:
        kinds.setdefault(e["id"], []).append(e["event"])
    assert len(kinds) == count
    assert all(sorted(k) == ["completed", "queued"] for k in kinds.values())
    again = shell(f"{JOBLOG} skip {log} < {tmp_path}/jobs.jsonl")
    assert again.returncode == 0 and again.stdout == b""
    # The same jobs as plain lines, judged a chunk at a time: none passed,
    # none recorded.
    (tmp_path / "plain.jsonl").write_bytes(compact([{"id": f"j{n:05d}", "size": n}
                                                    for n in range(count)]))
    size = log.stat().st_size
    again = shell(f"{JOBLOG} skip {log} < {tmp_path}/plain.jsonl")
    assert again.returncode == 0 and again.stdout == b""
    assert log.stat().st_size == size


def test_skip_records_jobs_as_queued_before_passing_them_on(tmp_path):
    """A job must reach the log before it reaches downstream; otherwise its
    outcome can be logged before its queued event, and a skip that dies
    passes on jobs it never recorded.  We hold the log's lock (as a
    concurrent appender would) while skip gets a batch longer than its
    output buffer: nothing of that batch may come out before the lock is
    released and skip has recorded it."""
    log = tmp_path / "s.jsonl"
    log.touch()
    skip = subprocess.Popen([JOBLOG, "skip", str(log)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    big = json.dumps({"id": "big", "pad": "p" * 60_000}).encode() + b"\n"
    small = jsonl_bytes({"id": f"j{n:05d}"} for n in range(4000))
    try:
        # batch 1: one job, then most of a long line that will end batch 2
        os.write(skip.stdin.fileno(), b'{"id":"first"}\n' + big[:-1000])
        assert skip.stdout.readline() == b'{"id":"first"}\n'
        with open(log, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            writer = threading.Thread(target=os.write, args=(skip.stdin.fileno(),
                                                             big[-1000:] + small))
            writer.start()
            ready, _, _ = select.select([skip.stdout], [], [], 1.0)
            early = os.read(skip.stdout.fileno(), 1 << 20) if ready else b""
            fcntl.flock(lock, fcntl.LOCK_UN)
        writer.join(10)
        skip.stdin.close()
        rest = skip.stdout.read()
    finally:
        if skip.poll() is None:
            skip.kill()
        skip.wait(10)
    assert early == b"", (f"{early.count(b'{')} jobs passed on while the log was locked, "
                          "before their queued events could be written")
    assert skip.returncode == 0
    assert len(parse_jsonl(rest)) == 4001
    assert len(read_jsonl(log)) == 4002


# ---------------------------------------------------------------- a damaged log

TORN = b'{"event":"completed","id":"tor'


@pytest.mark.parametrize("reader", [["pending"], ["failed"], ["status"], ["status", "--json"]])
def test_a_torn_last_line_is_reported_once_and_ignored(tmp_path, reader):
    log = tmp_path / "s.jsonl"
    log.write_bytes(jsonl_bytes([event("queued", "a"), event("failed", "b", error="x")]) + TORN)
    before = log.read_bytes()
    result = joblog(*reader, log)
    assert result.returncode == 0, stderr_text(result)
    assert_quiet(result)
    warnings = [line for line in stderr_text(result).splitlines() if "line 3" in line]
    assert len(warnings) == 1, stderr_text(result)
    assert stderr_text(result).count("\n") == 1
    assert log.read_bytes() == before


def test_a_torn_last_line_does_not_hide_jobs_from_skip(tmp_path):
    log = tmp_path / "s.jsonl"
    log.write_bytes(jsonl_bytes([event("completed", "a")]) + TORN)
    result = joblog("skip", log, input=jsonl_bytes([{"id": "a"}, {"id": "torn"}]))
    assert result.returncode == 0
    assert parse_jsonl(result.stdout) == [{"id": "torn"}]
    assert stderr_text(result).count("line 2") == 1


def test_append_after_a_torn_line_starts_a_fresh_line(tmp_path):
    log = tmp_path / "s.jsonl"
    log.write_bytes(jsonl_bytes([event("completed", "a")]) + TORN)
    new = [event("completed", "b"), event("completed", "c")]
    assert joblog("append", log, input=jsonl_bytes(new)).returncode == 0
    lines = log.read_bytes().split(b"\n")
    assert lines[1] == TORN and lines[-1] == b""
    assert [json.loads(line) for i, line in enumerate(lines[:-1]) if i != 1] == \
        [event("completed", "a")] + new
    # from now on the torn line is just a malformed line, reported and skipped
    result = joblog("pending", log)
    assert result.returncode == 0 and result.stdout == b""
    assert "line 2" in stderr_text(result)


#: Each malformed line mentions "completed", so even a reader that only
#: parses lines that could complete a job has to judge them.
MALFORMED = [
    b'completed, but not JSON',
    b'["completed", "a"]',
    b'{"event": "completed"}',
    b'{"id": "no-event", "state": "completed"}',
    b'{"event": "completed", "id": "a/b"}',
]


@pytest.mark.parametrize("reader", ["pending", "failed", "status", "skip"])
def test_malformed_log_lines_are_reported_by_number_and_skipped(tmp_path, reader):
    log = tmp_path / "s.jsonl"
    good = [event("failed", "x", error="e"), event("completed", "y")]
    log.write_bytes(jsonl_bytes(good[:1]) + b"\n".join(MALFORMED) + b"\n" + jsonl_bytes(good[1:]))
    before = log.read_bytes()
    result = joblog(reader, log, input=jsonl_bytes([{"id": "x"}, {"id": "y"}]))
    assert_quiet(result)
    stderr = stderr_text(result)
    for number in range(2, 2 + len(MALFORMED)):
        assert f"line {number}:" in stderr, stderr
    assert "line 1:" not in stderr and f"line {2 + len(MALFORMED)}:" not in stderr
    if reader == "skip":
        assert parse_jsonl(result.stdout) == [{"id": "x"}]
        assert log.read_bytes().startswith(before)
    else:
        assert log.read_bytes() == before
    if reader == "pending":
        assert parse_jsonl(result.stdout) == [{"id": "x"}]
    if reader == "failed":
        assert parse_jsonl(result.stdout) == [{"id": "x", "error": "e"}]


# ---------------------------------------------------------------- bad input

def bad_input(kind):
    """(input bytes, {line number: what the message must say}) for skip or append."""
    def line(**fields):
        record = {"event": "completed", **fields} if kind == "append" else fields
        return json.dumps(record).encode()

    lines = [
        (line(id="good1") + b"\r", None),            # CRLF is a valid line ending
        (b"", None),
        (b"   \t", None),
        (b"# a comment", None),
        (b"{not json", "invalid JSON"),
        (b'["an", "array"]', "not a JSON object"),
        (line(file="x.txt"), "id"),
        (line(id="a/b"), "a/b"),
        (line(id=".."), ".."),
        (line(id="x").replace(b'"x"', b'"\xff\xfe"'), "UTF-8"),
        (line(id="x").replace(b'"x"', b'"x\x00y"'), ""),
        (line(id="big", pad="x" * (2 << 20)), "too long"),
        (line(id="good2"), None),
    ]
    if kind == "append":
        lines.insert(-1, (json.dumps({"id": "a-job"}).encode(), "event"))
    data = b"\n".join(text for text, _ in lines)  # the last line has no newline
    expected = {n: why for n, (_, why) in enumerate(lines, 1) if why is not None}
    return data, expected


@pytest.mark.parametrize("subcommand", ["skip", "append"])
def test_bad_input_lines_are_reported_and_the_good_ones_flow(tmp_path, subcommand):
    log = tmp_path / "s.jsonl"
    data, expected = bad_input(subcommand)
    result = joblog(subcommand, log, input=data)
    assert result.returncode == 1
    assert_quiet(result)
    messages = stderr_text(result).splitlines()
    assert len(messages) == len(expected), messages
    for message, (number, why) in zip(messages, sorted(expected.items())):
        assert message.startswith("ia-joblog: error: ")
        assert f"line {number}:" in message and why in message, message
    recorded = [e["id"] for e in read_jsonl(log)]
    assert recorded == ["good1", "good2"]
    if subcommand == "skip":
        assert parse_jsonl(result.stdout) == [{"id": "good1"}, {"id": "good2"}]
        assert b"\r" not in result.stdout


@pytest.mark.parametrize("subcommand", ["skip", "append", "tee"])
def test_only_valid_and_ignored_lines_exit_zero(tmp_path, subcommand):
    record = {"id": "a"} if subcommand == "skip" else {"event": "completed", "id": "a"}
    data = b"# jobs\r\n\r\n" + json.dumps(record).encode() + b"\r\n  \n# end"
    result = joblog(subcommand, tmp_path / "s.jsonl", input=data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert read_jsonl(tmp_path / "s.jsonl")[0]["id"] == "a"


# ---------------------------------------------------------------- signals

#: Prints events slowly until a stop signal comes, then five more: the tail
#: of a pipeline that is still finishing its work after Ctrl-C.
SLOW_PRODUCER = r'''
import json, signal, sys, time
got = []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda n, f: got.append(n))
def emit(tag, n):
    sys.stdout.write(json.dumps({"event": "completed", "id": "%s-%d" % (tag, n)}) + "\n")
    sys.stdout.flush()
n = 0
while not got and n < 400:
    emit("before", n); n += 1; time.sleep(0.02)
for n in range(5):
    time.sleep(0.05); emit("after", n)
'''


@pytest.mark.parametrize("subcommand", ["append", "tee"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_lets_the_recorder_drain_its_input(tmp_path, subcommand, signum):
    log = tmp_path / "s.jsonl"
    producer = tmp_path / "producer.py"
    producer.write_text(SLOW_PRODUCER)
    # `trap true` keeps the shell alive to report append's status; the
    # commands it starts get the default dispositions, as from a terminal.
    pipeline = start_group(
        f"trap true INT TERM; {PYTHON} {producer} | {JOBLOG} {subcommand} {log} >/dev/null; "
        "echo status=${PIPESTATUS[1]}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and log.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        os.killpg(pipeline.pid, signum)
        out, err = pipeline.communicate(timeout=20)
    finally:
        if pipeline.poll() is None:
            os.killpg(pipeline.pid, signal.SIGKILL)
    assert out.decode().strip().splitlines()[-1] == "status=130", (out, err)
    assert b"Traceback" not in err
    ids = [e["id"] for e in read_jsonl(log)]
    assert ids[-5:] == [f"after-{n}" for n in range(5)]


def test_a_stop_signal_ends_skip_with_130(tmp_path):
    """skip is a filter: the signal ends it at once, quietly."""
    pipeline = start_group(
        f"trap true TERM; sleep 30 | {JOBLOG} skip {tmp_path}/s.jsonl; "
        "echo status=${PIPESTATUS[1]}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # skip creates its log once its handlers are in place
        deadline = time.monotonic() + 10
        while not (tmp_path / "s.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(pipeline.pid, signal.SIGTERM)
        out, err = pipeline.communicate(timeout=20)
    finally:
        if pipeline.poll() is None:
            os.killpg(pipeline.pid, signal.SIGKILL)
    assert out.decode().strip().splitlines()[-1] == "status=130"
    assert b"Traceback" not in err


# ---------------------------------------------------------------- exit statuses

@pytest.mark.parametrize("args", [
    [],
    ["bogus", "LOG"],
    ["append"],
    ["status"],
    ["status", "--bogus", "LOG"],
    ["status", "LOG", "--by"],
    ["--bogus", "append", "LOG"],
    ["append", "LOG", "extra"],
])
def test_usage_errors_exit_2(tmp_path, args):
    result = run([JOBLOG, *[str(tmp_path / a) if a == "LOG" else a for a in args]])
    assert result.returncode == 2
    assert stderr_text(result).startswith("ia-joblog: error: ")
    assert_quiet(result)
    assert result.stdout == b""
    assert not (tmp_path / "LOG").exists()


@pytest.mark.parametrize("subcommand", ["append", "tee", "skip", "pending", "failed", "status"])
def test_a_log_that_is_a_directory_exits_2(tmp_path, subcommand):
    result = joblog(subcommand, tmp_path, input=jsonl_bytes([event("completed", "a")]))
    assert_quiet(result)
    assert result.returncode == 2
    assert stderr_text(result).startswith("ia-joblog: error: ")
    assert str(tmp_path) in stderr_text(result)


def test_a_log_in_a_missing_directory_exits_2(tmp_path):
    result = joblog("append", tmp_path / "no" / "s.jsonl",
                    input=jsonl_bytes([event("completed", "a")]))
    assert result.returncode == 2
    assert "ia-joblog: error: cannot open log" in stderr_text(result)


@pytest.mark.parametrize("subcommand", ["pending", "failed"])
def test_a_closed_pipe_ends_quietly_with_141(tmp_path, subcommand):
    kind = "queued" if subcommand == "pending" else "failed"
    log = tmp_path / "s.jsonl"
    log.write_bytes(b"".join(b'{"event":"%s","id":"job%06d","pad":"%s"}\n'
                             % (kind.encode(), n, b"p" * 40) for n in range(20_000)))
    result = shell(f"{JOBLOG} {subcommand} {log} 2>{tmp_path}/err | head -1; "
                   "echo status=${PIPESTATUS[0]}")
    lines = result.stdout.decode().splitlines()
    assert json.loads(lines[0]) == {"id": "job000000", "pad": "p" * 40}
    assert lines[-1] == "status=141"
    assert (tmp_path / "err").read_bytes() == b""


# ---------------------------------------------------------------- the fast paths
#
# The writers put "event" and the key first in compact JSON, and ia-joblog
# judges such lines by their beginning, a chunk at a time; any other line
# goes to the full parser.  (jsonl_bytes above writes "key": value with
# spaces, so the tests above exercise the full parser.)  These tests write
# compact lines, spread over several 1 MiB chunks of the log, and check the
# commands against a model of the log folded event by event.

def test_fast_and_full_readings_agree_on_a_large_log(tmp_path):
    events = big_log(random.Random(7), 24_000, recent_from=23_000)
    log = tmp_path / "s.jsonl"
    data = compact(events)
    assert len(data) > 3 << 20  # several chunks
    log.write_bytes(data)
    assert_readings_agree_with_model(log, events, recent_from=23_000)


def test_readings_agree_with_the_model_after_a_run_of_queued_events(tmp_path):
    """skip writes queued events by the million: chunks of nothing else are
    read on a path of their own, which must agree with the model too (sizes
    given or not, item and file keys, keys queued twice)."""
    rng = random.Random(11)
    queued = []
    for n in range(12_000):
        job = {"id": f"new-{n % 9_000:05d}"}
        if n % 4 == 0:
            job["file"] = f"d/f{n % 9_000}.bin"
        if n % 3:
            job["size"] = rng.randrange(10**12)
        queued.append(make_event("queued", job))
    events = queued + big_log(rng, 6_000)
    log = tmp_path / "q.jsonl"
    assert len(compact(queued)) > 1 << 20  # chunks of queued events only
    log.write_bytes(compact(events))
    assert_readings_agree_with_model(log, events)


def test_the_line_grammar_reads_the_bytes_make_event_writes():
    """The readers' fast paths match and splice the bytes of make_event's
    events through iatools.contract.linegrammar: a change to one that the other does
    not follow fails here, rather than sending every chunk to the slow path
    in silence (or worse)."""
    job = {"id": "item-1", "file": "dir/a b.txt", "size": 3, "updated": "2026-01-01", "n": 1}
    job_line = jsonl.dumps(job)
    queued = jsonl.dumps(make_event("queued", job))
    done = jsonl.dumps(make_event("completed", job, files=1, bytes=3, seconds=0.5))
    key = linegrammar.key_bytes(job)
    assert key == b'item-1","file":"dir/a b.txt'
    assert linegrammar.OPEN_LINE.findall(b"\n" + queued) == [(b"queued", key)]
    assert linegrammar.DONE_LINE.findall(b"\n" + done) == [key]
    assert linegrammar.COMPLETED_BYTES.findall(b"\n" + done) == [b"3"]
    assert linegrammar.LAST_TS.match(done)[1] == json.loads(done)["ts"].encode()
    with_size = linegrammar.outcome_with_fields(b"completed|verified",
                                                (b"size", b"(" + linegrammar.SIZE + b")"))
    assert with_size.match(b"\n" + done).groups() == (key, b"3")
    assert linegrammar.QUEUED_EVENT.fullmatch(queued[:-1])[1] == job_line[1:-2]
    assert linegrammar.COMPLETION_EVENT.fullmatch(done[:-1])[1] == job_line[1:-2]
    assert linegrammar.jobs_in(queued[:-1], 1, linegrammar.QUEUED_EVENT) == [job_line]
    assert linegrammar.jobs_in(done[:-1], 1, linegrammar.COMPLETION_EVENT) == [job_line]
    sized = linegrammar.plain_job_line(b',"size":(' + linegrammar.SIZE + b")")
    assert sized.fullmatch(job_line[:-1]).groups() == (key, b"3")
    spliced = json.loads(linegrammar.queued_events(job_line))
    assert list(spliced) == list(json.loads(queued))
    assert {**spliced, "ts": None} == {**json.loads(queued), "ts": None}


def test_skip_writes_the_same_queued_events_on_either_path(tmp_path):
    """Plain job lines are turned into queued events by splicing bytes; they
    must come out as make_event and the full parser would write them."""
    log = tmp_path / "s.jsonl"
    plain = [{"id": "a", "size": 0, "destdir": "/mnt/x", "n": -12, "t": True, "u": None,
              "s": "with spaces, commas: and {braces}"},
             {"id": "b", "file": "d/e f.txt", "size": 12, "batch": "7"},
             {"id": "c"}]
    odd = [{"id": "d", "f": 1.5}, {"size": 3, "id": "e"}, {"id": "g", "title": "caf\u00e9"}]
    for batch in (plain, odd):
        result = joblog("skip", log, input=compact(batch))
        assert result.returncode == 0, stderr_text(result)
        assert result.stdout == compact(batch)  # passed on as they came
    lines = log.read_bytes().splitlines()
    assert len(lines) == 6
    for line, job in zip(lines, plain + odd):
        queued = json.loads(line)
        # "event", the key, the job's other fields in order, then when and where
        key_fields = ["id", "file"] if "file" in job else ["id"]
        order = ["event", *key_fields, *[k for k in job if k not in key_fields],
                 "ts", "host", "pid"]
        assert list(queued) == order
        assert {k: queued[k] for k in job} == job and queued["event"] == "queued"
        assert line == json.dumps(queued, separators=(",", ":"), ensure_ascii=False).encode()
        assert queued["ts"].endswith("Z") and queued["pid"] > 0


def test_a_key_matches_however_its_json_is_written(tmp_path):
    """A file name written raw or with \\u escapes is the same key."""
    log = tmp_path / "s.jsonl"
    log.write_bytes(b'{"event":"completed","id":"x","file":"caf\\u00e9.txt"}\n'
                    + '{"event":"completed","id":"y","file":"café.txt"}\n'.encode())
    jobs = ('{"id":"x","file":"café.txt"}\n{"id":"y","file":"caf\\u00e9.txt"}\n'
            '{"id":"y","file":"cafe.txt"}\n').encode()
    result = joblog("skip", log, input=jobs)
    assert result.returncode == 0, stderr_text(result)
    assert parse_jsonl(result.stdout) == [{"id": "y", "file": "cafe.txt"}]


#: Lines that begin like an event but must not be trusted: the full parser
#: reports them, wherever they are in a large log.
SUSPECT = [
    b'{"event":"completed","id":"a..b","bytes":1}',
    b'{"event":"completed","id":"' + b"x" * 101 + b'"}',
    b'{"event":"completed","id":"c","file":null}',
    b'{"event":"completed","id":"c","file":"../etc/passwd"}',
    b'{"event":"completed","id":"torn","files":1,"byt',
]


@pytest.mark.parametrize("reader", ["pending", "status", "skip"])
def test_suspect_lines_deep_in_a_large_log_are_reported_by_number(tmp_path, reader):
    log = tmp_path / "s.jsonl"
    filler = compact({"event": "queued", "id": f"q{n:06d}", "pad": "p" * 80,
                      "ts": iso(0), "host": "h", "pid": 1} for n in range(30_000))
    log.write_bytes(filler + b"\n".join(SUSPECT) + b"\n" + filler[:1000])
    result = joblog(reader, log, input=b'{"id":"a..b"}\n{"id":"torn"}\n{"id":"c"}\n')
    stderr = stderr_text(result)
    for number in range(30_001, 30_001 + len(SUSPECT)):
        assert f"line {number}:" in stderr, stderr
    if reader == "skip":
        # the bad input line is reported too; "torn" and "c" never completed
        assert result.returncode == 1 and "input line 1" in stderr
        assert parse_jsonl(result.stdout) == [{"id": "torn"}, {"id": "c"}]
    elif reader == "status":
        (line,) = [l for l in result.stdout.decode().splitlines() if l.startswith("completed")]
        assert line.split()[1] == "0"


@pytest.mark.parametrize("reader", ["pending", "completed", "skip"])
def test_a_completion_beside_glued_queued_events_counts(tmp_path, reader):
    """A chunk of queued events is passed over whole; a line with two
    queued events glued must not make a chunk that holds a completion look
    like one (as many "queued" beginnings as lines).  pending, which prints
    the lines it notes, sends such a chunk to the full parser."""
    log = tmp_path / "s.jsonl"
    queued = [compact([{"event": "queued", "id": f"q{n:06d}", "ts": iso(0), "host": "h",
                        "pid": 1}]).rstrip(b"\n") for n in range(3)]
    done = compact([{"event": "completed", "id": "q000000", "bytes": 1, "ts": iso(0),
                     "host": "h", "pid": 1}])
    log.write_bytes(queued[0] + b"\n" + queued[1] + queued[2] + b"\n" + done)
    result = joblog(reader, log, input=b'{"id":"q000000"}\n')
    assert_quiet(result)
    assert ("line 2:" in stderr_text(result)) == (reader == "pending"), stderr_text(result)
    ids = [job["id"] for job in parse_jsonl(result.stdout)]
    assert ids == (["q000000"] if reader == "completed" else [])


@pytest.mark.parametrize("reader", ["pending", "status", "skip"])
def test_a_dotted_identifier_alone_in_a_large_log_is_reported(tmp_path, reader):
    """The fast paths match such a key and must still send it to the full
    parser, while ".." inside a file name is a valid key."""
    log = tmp_path / "s.jsonl"
    filler = compact({"event": "queued", "id": f"q{n:06d}", "ts": iso(0), "host": "h", "pid": 1}
                     for n in range(30_000))
    done = [{"event": "completed", "id": "a..b"},
            {"event": "completed", "id": "c", "file": "d..e.txt"}]
    # Dated long ago: status reads recent lines one by one anyway.
    log.write_bytes(filler + compact(dict(event, bytes=1, ts=iso(0)) for event in done))
    result = joblog(reader, log, input=b'{"id":"c","file":"d..e.txt"}\n{"id":"q000001"}\n')
    stderr = stderr_text(result)
    assert "line 30001:" in stderr and "line 30002" not in stderr, stderr
    if reader == "skip":
        assert parse_jsonl(result.stdout) == [{"id": "q000001"}]
    elif reader == "status":
        (line,) = [l for l in result.stdout.decode().splitlines() if l.startswith("completed")]
        assert line.split()[1] == "1"
    else:
        assert len(parse_jsonl(result.stdout)) == 30_000


def test_pending_gives_back_the_jobs_skip_recorded(tmp_path):
    log = tmp_path / "s.jsonl"
    jobs = compact([{"id": f"j{n}", "size": n, "destdir": "/d", "bytes": "user"} for n in range(5000)]
                   + [{"id": "k", "file": "a/b", "x": [1, 2]}])
    assert joblog("skip", log, input=jobs).returncode == 0
    result = joblog("pending", log)
    assert result.returncode == 0, stderr_text(result)
    # "bytes" is an event field: a queued event cannot tell it from the job's
    expected = [{k: v for k, v in job.items() if k != "bytes"} for job in parse_jsonl(jobs)]
    assert parse_jsonl(result.stdout) == expected


def test_pending_cuts_a_stretch_of_open_lines_at_once_and_only_that(tmp_path):
    """Jobs queued one after the other are cut out of the log as one text;
    a completion among them, or a CR before each newline (a log edited on
    Windows), and the lines are taken one by one: the same jobs."""
    log = tmp_path / "s.jsonl"
    jobs = [{"id": f"j{n}", "size": n} for n in range(300)]
    assert joblog("skip", log, input=compact(jobs)).returncode == 0
    every_line_open = joblog("pending", log)
    assert every_line_open.returncode == 0, stderr_text(every_line_open)
    assert parse_jsonl(every_line_open.stdout) == jobs
    lines = log.read_bytes().splitlines(keepends=True)
    done = compact([{"event": "completed", "id": "j7", "ts": iso(9), "host": "h", "pid": 1}])
    log.write_bytes(b"".join(lines[:100]) + done + b"".join(lines[100:]).replace(b"\n", b"\r\n"))
    result = joblog("pending", log)
    assert result.returncode == 0, stderr_text(result)
    assert parse_jsonl(result.stdout) == [job for job in jobs if job["id"] != "j7"]
    log.write_bytes(b"".join(lines[:100]) + done + b"".join(lines[100:]))
    assert joblog("pending", log).stdout == result.stdout


def test_compact_lines_over_the_limit_are_rejected_on_either_side(tmp_path):
    log = tmp_path / "s.jsonl"
    pad = "x" * (1 << 20)
    log.write_bytes(compact([{"event": "completed", "id": "long", "pad": pad},
                             {"event": "completed", "id": "short"}]))
    jobs = compact([{"id": "long"}, {"id": "short"}, {"id": "big", "pad": pad}, {"id": "ok"}])
    result = joblog("skip", log, input=jobs)
    stderr = stderr_text(result)
    assert "line 1: line too long" in stderr and "input line 3: line too long" in stderr, stderr
    assert result.returncode == 1
    assert parse_jsonl(result.stdout) == [{"id": "long"}, {"id": "ok"}]


def test_skip_passes_an_announced_total_on_and_announces_what_it_drops(tmp_path):
    """ia-fetch shows a total from the start when ia-resolve --total
    announces one; skip passes it on and says how many of those jobs it
    kept back, so the total stays true (iatools(7), COUNTS ANNOUNCED)."""
    log = write_log(tmp_path / "s.jsonl", [event("completed", "a", ts=iso(1))])
    announced = joblog("skip", log, input=b'# total 3\n{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n')
    assert announced.returncode == 0, stderr_text(announced)
    assert announced.stdout.splitlines() == [b"# total 3", b"# skipped 1",
                                             b'{"id":"b"}', b'{"id":"c"}']
    plain = joblog("skip", log, input=b'{"id":"a"}\n{"id":"d"}\n')
    assert plain.stdout == b'{"id":"d"}\n'  # nothing announced upstream: no count lines
