"""Torture: many writers on one log, two whole pipelines over the same item
list and disks at once, and duplicate jobs within one ia-fetch."""

import json
import subprocess
import time

import pytest

from tests.emulator import Catalog
from tests.helpers import PYTHON, command, jsonl_bytes, parse_jsonl, run
from tests.torture import (Pipeline, assert_no_traceback, assert_status_matches_log, file_key,
                           full_pipeline, locks, log_events, storage_requests, temporaries, tmpfs,
                           tree)
from tests.trees import catalog_md5s

WRITERS, PER_WRITER = 4, 50_000


def events_of(writer, count):
    """Lines of varied length; every 997th is over 64 KiB (more than one
    read, more than a pipe buffer), so a torn or spliced line cannot parse."""
    for n in range(count):
        pad = writer * (200_000 if n % 997 == 0 else n % 300)
        yield b'{"event":"completed","id":"%s-%06d","n":%d,"pad":"%s"}\n' % (
            writer.encode(), n, n, pad.encode())


def test_four_appenders_of_fifty_thousand_events_each(tmp_path):
    log = tmp_path / "s.jsonl"
    writers = "ABCD"
    for writer in writers:
        (tmp_path / f"{writer}.jsonl").write_bytes(b"".join(events_of(writer, PER_WRITER)))
    start = time.time() + 1.0  # all four begin writing at the same moment
    feed = ("import sys, time; time.sleep(max(0, float(sys.argv[2]) - time.time())); "
            "sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())")
    appenders = []
    for writer in writers:
        feeder = subprocess.Popen([PYTHON, "-c", feed, str(tmp_path / f"{writer}.jsonl"),
                                   str(start)], stdout=subprocess.PIPE)
        appenders.append(subprocess.Popen([command("ia-joblog"), "append", str(log)],
                                          stdin=feeder.stdout, stderr=subprocess.PIPE))
        feeder.stdout.close()
    results = [(a.wait(timeout=120), a.stderr.read()) for a in appenders]
    assert results == [(0, b"")] * WRITERS
    data = log.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) == WRITERS * PER_WRITER
    events = [json.loads(line) for line in lines]  # no torn or spliced line
    for writer in writers:
        mine = [e for e in events if e["id"][0] == writer]
        assert [e["n"] for e in mine] == list(range(PER_WRITER)), "lost, doubled or reordered"
        assert all(e["pad"] == writer * len(e["pad"]) for e in mine)
    switches = sum(a["id"][0] != b["id"][0] for a, b in zip(events, events[1:]))
    assert switches >= WRITERS, "the appenders did not overlap; the test proved nothing"


def test_two_full_pipelines_over_the_same_items_and_disks(make_emulator, tmp_path):
    """Per-item locks keep the second pipeline off items the first is
    fetching: it reports them skipped (locked) and they stay pending in its
    log.  Two disks that fill as the runs go make ia-route's choices change."""
    catalog = Catalog.generate(items=12, files_per_item=2, file_size=96 * 1024)
    emu, env = make_emulator(catalog, bandwidth=1 << 20)
    expected = catalog_md5s(catalog)
    itemlist = tmp_path / "ids.txt"
    itemlist.write_text("".join(f"{item.identifier}\n" for item in catalog.sorted_items()))
    with tmpfs(tmp_path / "a", 4 << 20) as a, tmpfs(tmp_path / "b", 4 << 20) as b:
        disks = [a, b]
        logs = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
        runs = [Pipeline(full_pipeline(log, disks, ["--itemlist", str(itemlist)],
                                       fetch_args=["-j", "3"], append="tee"),
                         env, tmp_path / log.stem, stdout=subprocess.PIPE)
                for log in logs]
        outputs = [p.processes["append"].stdout.read() for p in runs]
        statuses = [p.wait(timeout=120) for p in runs]
        on_disk, left, lock_files = tree(disks), temporaries(disks), locks(disks)
    for pipeline, status in zip(runs, statuses):
        assert set(status.values()) == {0}, (status, pipeline.stderr())
        assert_no_traceback(pipeline)
    assert on_disk == expected and left == {} and lock_files == []
    served = {}
    for request in storage_requests(emu):
        served[file_key(request)] = served.get(file_key(request), 0) + request["bytes"]
    doubled = {k: v for k, v in served.items() if v != catalog.file(*k.split("/", 1)).size}
    assert doubled == {}, f"downloaded more than once: {doubled}"
    assert served.keys() == expected.keys()

    completed = [set(), set()]
    for index, (log, output) in enumerate(zip(logs, outputs)):
        events = parse_jsonl(output)
        assert [e for e in log_events(log) if e["event"] != "queued"] == events
        state = assert_status_matches_log(log, env)
        completed[index] = {k for k, s in state.items() if s == "completed"}
        skipped = {e["id"] for e in events if e["event"] == "skipped"}
        assert all(e["reason"] == "locked" and e["lock_owner"]["pid"]
                   for e in events if e["event"] == "skipped")
        assert {k for k, s in state.items() if s != "completed"} == skipped
    assert completed[0] | completed[1] == set(catalog.items)
    assert completed[0] and completed[1], "one run did everything: they never overlapped"


@pytest.mark.parametrize("connections", [1, 4], ids=["j1", "j4"])
def test_duplicate_jobs_in_one_fetch_each_complete_and_fetch_once(
        make_emulator, tmp_path, connections):
    """The same item twice in one input (two lists concatenated, a pending
    list plus a new search): both jobs complete, each file is fetched once."""
    catalog = Catalog.generate(items=3, files_per_item=2, file_size=128 * 1024)
    emu, env = make_emulator(catalog, bandwidth=4 << 20)
    jobs = [{"id": item.identifier} for item in catalog.sorted_items() for _ in range(3)]
    result = run([command("ia-fetch"), "-j", str(connections), "-d", str(tmp_path)],
                 input=jsonl_bytes(jobs), env=env)
    events = parse_jsonl(result.stdout)
    failures = [(e["id"], e.get("error")) for e in events if e["event"] == "failed"]
    assert failures == [] and result.returncode == 0, failures
    assert sum(e["event"] == "completed" for e in events) == len(jobs)
    assert tree([tmp_path]) == catalog_md5s(catalog)
    served = emu.stats(with_log=False)["bytes_by_file"]
    assert served == {key: catalog.file(*key.split("/", 1)).size for key in served}
