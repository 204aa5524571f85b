"""Torture: a catalogue of hostile input lines, fed to every command that
reads JSONL, each between good lines.  Each bad line gets a message naming
its line, the good lines around it are still processed, the exit status is
the documented 1 (some lines bad), and nothing is written outside the
destdirs."""

import json
import os
import re
from pathlib import Path

import pytest

from tests.emulator import Catalog
from tests.helpers import command, jsonl_bytes, parse_jsonl, run
from tests.torture import snapshot

FAILED = 1  # iatools(7), every man page: some lines or jobs failed
EVIL = f"/tmp/iatools-torture-evil-{os.getpid()}"
GOOD = "demo-0001"

#: name -> a line no command may accept (without its newline).
BAD_JOB_LINES = {
    "truncated JSON": b'{"id": "demo-0001"',
    "not JSON at all": b"demo-0001 please",
    "a JSON array": b'["demo-0001"]',
    "a JSON string": b'"demo-0001"',
    "a JSON number": b"42",
    "JSON null": b"null",
    "no id": b'{"file": "x.txt"}',
    "id null": b'{"id": null}',
    "id a number": b'{"id": 5}',
    "id a list": b'{"id": ["demo-0001"]}',
    "id empty": b'{"id": ""}',
    "id with a space": b'{"id": "demo 0001"}',
    "id with a slash": b'{"id": "demo/0001"}',
    "id ..": b'{"id": ".."}',
    "id with ..": b'{"id": "a..b"}',
    "id absolute": b'{"id": "%s"}' % EVIL.encode(),
    "id with backslashes": b'{"id": "..\\\\..\\\\evil"}',
    "id too long": b'{"id": "%s"}' % (b"a" * 101),
    "id duplicated, last one bad": b'{"id": "demo-0001", "id": 7}',
    "file with ..": b'{"id": "demo-0001", "file": "../../evil.txt"}',
    "file absolute": b'{"id": "demo-0001", "file": "%s"}' % EVIL.encode(),
    "file with backslashes": b'{"id": "demo-0001", "file": "..\\\\..\\\\evil.txt"}',
    "file with an escaped NUL": b'{"id": "demo-0001", "file": "a\\u0000b"}',
    "size negative": b'{"id": "demo-0001", "size": -5}',
    "size a string": b'{"id": "demo-0001", "size": "100"}',
    "size fractional": b'{"id": "demo-0001", "size": 1.5}',
    "size true": b'{"id": "demo-0001", "size": true}',
    "destdir empty": b'{"id": "demo-0001", "destdir": ""}',
    "destdir a number": b'{"id": "demo-0001", "destdir": 3}',
    "raw NUL bytes": b'{"id": "demo\x000001"}',
    "invalid UTF-8": b'{"id": "demo-\xff\xfe"}',
    "a lone surrogate": b'{"id": "demo-\\ud800"}',
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a 10 MB line": b'{"id": "demo-0001", "pad": "%s"}' % (b"x" * (10 << 20)),
}
#: Events ia-joblog append must refuse: the job-level ones, and these.
BAD_EVENT_LINES = {
    **BAD_JOB_LINES,
    "a job, not an event": b'{"id": "demo-0001"}',
    "event not a string": b'{"event": 1, "id": "demo-0001"}',
}


def stream(bad_lines, good_line):
    """good, bad, good, bad, ..., good, with CRLF on every other good line;
    returns (bytes, {line number: case name}, number of good lines).
    ``good_line`` may be a list: one good line for each place."""
    goods = good_line if isinstance(good_line, list) else [good_line] * (len(bad_lines) + 1)
    lines, bad_at = [], {}
    for (name, line), good in zip(bad_lines.items(), goods):
        lines.append(good + (b"\r" if len(lines) % 4 == 0 else b""))
        lines.append(line)
        bad_at[len(lines)] = name
    lines.append(goods[-1])
    return b"\n".join(lines) + b"\n", bad_at, len(lines) - len(bad_at)


def assert_each_bad_line_reported(stderr, prog, bad_at, source="line"):
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text[-3000:]
    for number, name in bad_at.items():
        pattern = rf"^{prog}: error: .*\b{source} {number}: .+$"
        assert re.search(pattern, text, re.MULTILINE), f"line {number} ({name}) not reported"
    reported = re.findall(rf"^{prog}: error: .*\b{source} (\d+):", text, re.MULTILINE)
    assert set(int(n) for n in reported) == set(bad_at), "good lines reported as bad"
    assert all(len(line) < 2000 for line in text.splitlines()), "a message quotes a huge line"


@pytest.fixture
def places(tmp_path):
    """A destdir, a work directory (the commands' cwd), and a snapshot of
    everything around them to compare with afterwards."""
    dest, work = tmp_path / "dest", tmp_path / "work"
    dest.mkdir(), work.mkdir()
    passwd = os.stat("/etc/passwd")
    before = snapshot(tmp_path.parent)
    yield dest, work
    # (make_emulator writes each client's ia.ini in a "client" directory)
    written = {p for p in snapshot(tmp_path.parent) - before
               if not (p.startswith(str(dest) + os.sep) or p.startswith(str(work) + os.sep)
                       or Path(p).relative_to(tmp_path.parent).parts[0].startswith("client"))}
    assert written == set(), f"written outside the destdirs: {sorted(written)[:10]}"
    assert not os.path.lexists(EVIL)
    assert os.stat("/etc/passwd").st_mtime_ns == passwd.st_mtime_ns


def test_joblog_skip(places):
    dest, work = places
    data, bad_at, good = stream(BAD_JOB_LINES, b'{"id": "demo-0001", "n": 1}')
    result = run([command("ia-joblog"), "skip", str(work / "s.jsonl")], input=data,
                 cwd=work, timeout=120)
    assert result.returncode == FAILED
    assert_each_bad_line_reported(result.stderr, "ia-joblog", bad_at)
    passed = parse_jsonl(result.stdout)
    assert passed == [{"id": GOOD, "n": 1}] * good


def test_joblog_append(places):
    dest, work = places
    log = work / "s.jsonl"
    data, bad_at, good = stream(BAD_EVENT_LINES, b'{"event": "completed", "id": "demo-0001"}')
    result = run([command("ia-joblog"), "append", str(log)], input=data, cwd=work, timeout=120)
    assert result.returncode == FAILED
    assert_each_bad_line_reported(result.stderr, "ia-joblog", bad_at)
    assert log.read_bytes() == b'{"event": "completed", "id": "demo-0001"}\n' * good


def test_route(places):
    dest, work = places
    data, bad_at, good = stream(BAD_JOB_LINES, b'{"id": "demo-0001", "size": 10}')
    result = run([command("ia-route"), "-d", str(dest)], input=data, cwd=work, timeout=120)
    assert result.returncode == FAILED
    assert_each_bad_line_reported(result.stderr, "ia-route", bad_at)
    routed = parse_jsonl(result.stdout)
    assert routed == [{"id": GOOD, "size": 10, "destdir": str(dest)}] * good


def test_resolve_itemlist_and_arguments(places):
    dest, work = places
    plain = {"plain: " + json.dumps(i): i.encode() for i in
             ("demo 0001", "a/b", "..", EVIL, "..\\evil", "x" * 101)}
    plain["plain: invalid UTF-8"] = b"demo-\xff"
    # In an item list a line not starting with "{" is an identifier: "42"
    # and "null" are good ones there.
    bad = {name: line for name, line in {**BAD_JOB_LINES, **plain}.items()
           if name not in ("a JSON number", "JSON null")}
    data, bad_at, good = stream(bad, b"demo-0001")
    itemlist = work / "ids.txt"
    itemlist.write_bytes(data)
    result = run([command("ia-resolve"), "--itemlist", str(itemlist), "--", GOOD, "../evil",
                  EVIL, "a\\b"], cwd=work, timeout=120)
    assert result.returncode == FAILED
    assert_each_bad_line_reported(result.stderr, "ia-resolve", bad_at, source=r"ids\.txt line")
    stderr = result.stderr.decode()
    for position in (2, 3, 4):
        assert re.search(rf"^ia-resolve: error: argument {position}: ", stderr, re.MULTILINE)
    assert parse_jsonl(result.stdout) == [{"id": GOOD}] * (good + 1)


def test_fetch_with_hostile_lines_metadata_and_a_symlink_out(make_emulator, places, tmp_path):
    dest, work = places
    catalog = Catalog.generate(items=3, files_per_item=1, file_size=4096, mix="realistic")
    catalog.add_special_items()
    emu, env = make_emulator(catalog)
    outside = tmp_path / "work" / "outside"  # inside work: the scan must not see writes here
    outside.mkdir()
    (dest / "demo-0002" / "extras").parent.mkdir()
    (dest / "demo-0002" / "extras").symlink_to(outside)
    hostile_items = {  # good lines whose items are hostile
        "special-unsafe-names": r"unsafe file name",
        "special-not-json": r"metadata response was not JSON",
        "demo-0002": r"symlink leads outside",
    }
    # Each good line has a destdir of its own: duplicate jobs of one item
    # are a concurrency question (test_torture_concurrency), not an input one.
    lines = []
    for number in range(len(BAD_JOB_LINES) + 1):
        (dest / f"g{number}").mkdir()
        lines.append(json.dumps({"id": GOOD, "destdir": str(dest / f"g{number}")}).encode())
    data, bad_at, good = stream(BAD_JOB_LINES, lines)
    data += jsonl_bytes({"id": i} for i in hostile_items)
    result = run([command("ia-fetch"), "-d", str(dest), "--retries", "0"], input=data, env=env,
                 cwd=work, timeout=120)
    assert result.returncode == FAILED
    assert_each_bad_line_reported(result.stderr, "ia-fetch", bad_at)
    events = parse_jsonl(result.stdout)
    outcomes = [e for e in events if e["event"] in ("completed", "failed")]
    completed = [e for e in outcomes if e["event"] == "completed"]
    assert [e["id"] for e in completed] == [GOOD] * good, [
        (e["id"], e.get("error")) for e in outcomes if e["event"] == "failed"]
    for identifier, says in hostile_items.items():
        event = next(e for e in outcomes if e["id"] == identifier)
        assert event["event"] == "failed" and re.search(says, event["error"]), event
    # A bad line whose id is fine gets a failed event naming the line.
    for event in outcomes:
        if event["event"] == "failed" and event["id"] == GOOD:
            assert re.match(r"input line \d+: ", event["error"]), event
    assert list(outside.iterdir()) == []
    assert (dest / "special-unsafe-names" / "ok.txt").exists()
    assert not any(Path(dest).rglob("evil*"))


@pytest.mark.parametrize("argv", [
    ["ia-fetch", "-q"], ["ia-route", "-d", "."], ["ia-resolve", "--itemlist", "-"],
], ids=["fetch", "route", "resolve"])
def test_an_empty_stream_is_nothing_to_do(places, argv, make_emulator):
    dest, work = places
    emu, env = make_emulator()
    result = run([command(argv[0]), *argv[1:]], input=b"", env=env, cwd=dest)
    assert (result.returncode, result.stdout) == (0, b""), result.stderr
    assert b"Traceback" not in result.stderr
