"""Per-item locks: two ia-fetch runs never work on one item at once, a dead
owner's lock is taken over, and ``ia-joblog locks`` shows and clears them."""

import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.emulator import Catalog
from tests.helpers import command, jsonl_bytes, parse_jsonl, run
from tests.trees import catalog_md5s, tree_md5s

HOST = socket.gethostname()
# Holds an exclusive flock on argv[1] (as a live ia-fetch would) until killed.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, sys.argv[2].encode())
print("held", flush=True)
time.sleep(600)
"""


def lock_file(destdir, identifier):
    return destdir / f".{identifier}.iatools-lock"


def owner(pid, host=HOST, started="2026-01-01T00:00:00.000Z"):
    return json.dumps({"host": host, "pid": pid, "started": started})


@pytest.fixture
def holder():
    """Start a process holding a lock file: ``holder(path, owner_json)``."""
    started = []

    def hold(path, content):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), content],
                                   stdout=subprocess.PIPE)
        assert process.stdout.readline() == b"held\n"
        started.append(process)
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def a_dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def fetch(env, destdir, identifiers, *extra):
    jobs = jsonl_bytes({"id": i} for i in identifiers)
    return run([command("ia-fetch"), "-j", "2", "-d", str(destdir), *extra], jobs, env)


def events_of(result, kind):
    return [e for e in parse_jsonl(result.stdout) if e["event"] == kind]


def test_an_item_locked_by_a_live_process_is_skipped_and_stays_pending(
        emulator, tmp_path, holder):
    emu, env = emulator
    first, second = [item.identifier for item in emu.catalog.sorted_items()[:2]]
    holder(lock_file(tmp_path, first), owner(12345, host="elsewhere"))
    result = fetch(env, tmp_path, [first, second])
    assert result.returncode == 0, result.stderr
    skipped = events_of(result, "skipped")
    assert [(e["id"], e["reason"], e["lock_owner"]["host"]) for e in skipped] == \
        [(first, "locked", "elsewhere")]
    assert [e["id"] for e in events_of(result, "completed")] == [second]
    assert not (tmp_path / first).exists()
    assert lock_file(tmp_path, first).exists()  # not ours to remove

    log = tmp_path / "log.jsonl"
    run([command("ia-joblog"), "append", str(log)], result.stdout, env)
    pending = run([command("ia-joblog"), "pending", str(log)], env=env)
    assert [j["id"] for j in parse_jsonl(pending.stdout)] == [first]


def test_the_lock_of_a_dead_owner_is_taken_over_with_a_warning(emulator, tmp_path):
    emu, env = emulator
    identifier = emu.catalog.sorted_items()[0].identifier
    lock_file(tmp_path, identifier).write_text(owner(a_dead_pid()))
    result = fetch(env, tmp_path, [identifier])
    assert result.returncode == 0, result.stderr
    assert b"taking over the lock" in result.stderr
    assert [e["id"] for e in events_of(result, "completed")] == [identifier]
    assert tree_md5s(tmp_path) == catalog_md5s(emu.catalog, [identifier])  # lock removed


def test_a_live_lock_not_refreshed_within_lock_timeout_is_taken_over(
        emulator, tmp_path, holder):
    emu, env = emulator
    identifier = emu.catalog.sorted_items()[0].identifier
    path = lock_file(tmp_path, identifier)
    holder(path, owner(12345, host="hung-host"))
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    result = fetch(env, tmp_path, [identifier], "--lock-timeout", "30m")
    assert result.returncode == 0, result.stderr
    assert b"taking over the stale lock" in result.stderr and b"hung-host" in result.stderr
    assert [e["id"] for e in events_of(result, "completed")] == [identifier]


def test_file_jobs_of_one_item_in_one_process_share_its_lock(emulator, tmp_path):
    emu, env = emulator
    item = emu.catalog.sorted_items()[0]
    jobs = jsonl_bytes({"id": item.identifier, "file": name} for name in item.files)
    result = run([command("ia-fetch"), "-j", "4", "-d", str(tmp_path)], jobs, env)
    assert result.returncode == 0, result.stderr
    assert len(events_of(result, "completed")) == len(item.files)
    assert not events_of(result, "skipped")
    assert not lock_file(tmp_path, item.identifier).exists()


def test_two_fetches_at_once_download_every_file_exactly_once(make_emulator, tmp_path):
    catalog = Catalog.generate(items=8, files_per_item=2, file_size=256 * 1024)
    emu, env = make_emulator(catalog, bandwidth=2 << 20)
    identifiers = [item.identifier for item in catalog.sorted_items()]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(jsonl_bytes({"id": i} for i in identifiers))
    data = tmp_path / "data"
    data.mkdir()
    fetch_command = [command("ia-fetch"), "-j", "3", "-d", str(data)]
    with open(jobs, "rb") as first, open(jobs, "rb") as second:
        runs = [subprocess.Popen(fetch_command, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env) for stdin in (first, second)]
        outputs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [err for _, err in outputs]
    events = [e for out, _ in outputs for e in parse_jsonl(out)]
    completed = [e["id"] for e in events if e["event"] == "completed"]
    skipped = [e["id"] for e in events if e["event"] == "skipped"]
    # Each item was either fetched, or found locked by the other run while
    # it was being fetched, or found complete after the other run's fetch.
    assert set(completed) == set(identifiers)
    assert skipped, "the runs never met on an item: the test proves nothing"
    assert tree_md5s(data) == catalog_md5s(catalog)
    served = emu.stats(with_log=False)["bytes_by_file"]
    assert served == {key: catalog.file(*key.split("/", 1)).size for key in served}
    assert len(served) == len(catalog_md5s(catalog))


def test_joblog_locks_lists_locks_and_clears_only_stale_ones(tmp_path, holder):
    live, dead = lock_file(tmp_path, "live_item"), lock_file(tmp_path, "dead_item")
    holder(live, owner(4242))
    dead.write_text(owner(a_dead_pid()))
    listing = run([command("ia-joblog"), "locks", str(tmp_path)])
    assert listing.returncode == 0, listing.stderr
    found = {e["id"]: e for e in parse_jsonl(listing.stdout)}
    assert {i: e["stale"] for i, e in found.items()} == {"live_item": False, "dead_item": True}
    assert found["live_item"]["owner"]["pid"] == 4242
    assert not any(e["cleared"] for e in found.values())

    cleared = run([command("ia-joblog"), "locks", "--clear", str(tmp_path)])
    assert {e["id"]: e["cleared"] for e in parse_jsonl(cleared.stdout)} == \
        {"live_item": False, "dead_item": True}
    assert live.exists() and not dead.exists()


def test_joblog_locks_refuses_a_missing_destdir(tmp_path):
    result = run([command("ia-joblog"), "locks", str(tmp_path / "nowhere")])
    assert result.returncode == 2
    assert b"nowhere: not a directory" in result.stderr


def test_cron_flock_idiom_lets_one_run_at_a_time_and_a_run_with_nothing_to_do_succeeds(
        emulator, tmp_path):
    emu, env = emulator
    identifiers = " ".join(item.identifier for item in emu.catalog.sorted_items())
    log, data, guard = tmp_path / "s.jsonl", tmp_path / "data", tmp_path / "cron.lock"
    data.mkdir()
    pipeline = (f"flock -n {guard} sh -c 'ia-resolve {identifiers} | ia-joblog skip {log}"
                f" | ia-fetch -q -j 2 -d {data} | ia-joblog append {log}'")
    with open(guard, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        blocked = run(["bash", "-c", pipeline], env=env)
    assert blocked.returncode == 1 and not log.exists()

    first = run(["bash", "-c", "set -o pipefail; " + pipeline], env=env)
    assert first.returncode == 0, first.stderr
    again = run(["bash", "-c", "set -o pipefail; " + pipeline], env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == b""
    assert tree_md5s(data) == catalog_md5s(emu.catalog)
