"""ia-joblog's main in this process, on streams of bytes (cli.Streams)."""

import orjson

from iatools.commands.joblog import main
from tests.inprocess import call

JOBS = b'{"id":"item-a","size":3}\n{"id":"item-b","size":5}\n'


def event(kind, identifier, **fields):
    return orjson.dumps({"event": kind, "id": identifier, "ts": "2026-12-06T10:00:00.000Z",
                         "host": "h", "pid": 1, **fields}) + b"\n"


def test_skip_append_and_the_readings_on_given_streams(tmp_path):
    log = tmp_path / "s.jsonl"
    skipped = call(main, ["skip", log], stdin=JOBS)
    assert (skipped.status, skipped.stdout, skipped.stderr) == (0, JOBS, "")
    appended = call(main, ["append", log], stdin=event("completed", "item-a", size=3, bytes=3))
    assert (appended.status, appended.stdout) == (0, b"")
    assert call(main, ["pending", log]).stdout == b'{"id":"item-b","size":5}\n'
    assert call(main, ["completed", log]).lines() == ['{"id":"item-a","size":3}']
    summary = orjson.loads(call(main, ["status", "--json", log]).stdout)
    assert (summary["total"], summary["completed"], summary["remaining_bytes"]) == (2, 1, 5)
    table = call(main, ["status", log], environ={"LANG": "C"}).stdout.decode()
    assert "completed" in table and "▁" not in table


def test_a_bad_event_is_named_on_the_given_stderr(tmp_path):
    log = tmp_path / "s.jsonl"
    result = call(main, ["tee", log], stdin=b'{"id":"x"}\n' + event("started", "item-a"))
    assert result.status == 1
    assert result.stdout == event("started", "item-a")
    assert result.messages()[0].startswith("ia-joblog: error: input line 1: ")
    assert "no \"event\" field" in result.stderr


def test_a_terminal_on_stdin_is_told_on_stderr(tmp_path):
    result = call(main, ["append", tmp_path / "s.jsonl"], stdin_is_terminal=True)
    assert result.status == 0 and "reading events from the terminal" in result.stderr


def test_an_event_glued_after_a_torn_one_is_kept_and_the_tear_counted(tmp_path):
    log = tmp_path / "s.jsonl"
    torn = event("started", "item-a")[:25]
    result = call(main, ["append", log], stdin=torn + event("completed", "item-b"))
    assert result.status == 1
    assert log.read_bytes() == event("completed", "item-b")
    assert "kept the whole event from byte 26" in result.stderr
