"""Standard streams and files that fail: an output on a full disk
(/dev/full), an input opened write-only, an item list that is a directory,
an output closed by its reader.  Each command says what it could not do,
in one line, with the documented status; a fetch stops as it does on
Ctrl-C, its item locks released."""

import json
import os
import subprocess
import time

import pytest

from tests.helpers import base_env, command, jsonl_bytes


def run_on(args, stdin, stdout, env=None):
    """Run a command on the given files as its stdin and stdout; its exit
    status and stderr."""
    process = subprocess.run(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                             env=env or base_env(), timeout=120)
    return process.returncode, process.stderr.decode()


def assert_says(status, stderr, expected_status, message):
    assert "Traceback" not in stderr, stderr
    assert message in stderr.splitlines(), stderr
    assert status == expected_status, stderr


def test_an_item_list_that_is_a_directory_is_a_usage_error(tmp_path):
    status, stderr = run_on([command("ia-resolve"), "-i", str(tmp_path)], subprocess.DEVNULL,
                            subprocess.PIPE)
    assert_says(status, stderr, 2, f"ia-resolve: error: cannot read item list {tmp_path}: "
                                   "Is a directory")


FULL_DISK = "ia-{}: error: cannot write {}: No space left on device"
WRITE_ONLY = "ia-{}: error: cannot read {}: Bad file descriptor"


def jobs_file(tmp_path, ids):
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(jsonl_bytes({"id": i} for i in ids))
    return path


def write_only(tmp_path):
    """A file opened for writing only, to be a command's stdin (``0>>file``)."""
    return open(tmp_path / "write-only", "ab")


def test_route_and_resolve_say_they_cannot_write_their_jobs(tmp_path):
    with open(jobs_file(tmp_path, ["a", "b"]), "rb") as jobs, open("/dev/full", "wb") as full:
        status, stderr = run_on([command("ia-route"), "-d", str(tmp_path), "--no-disk-check"],
                                jobs, full)
        assert_says(status, stderr, 1, FULL_DISK.format("route", "jobs"))
        status, stderr = run_on([command("ia-resolve"), "demo-0001"], subprocess.DEVNULL, full)
        assert_says(status, stderr, 1, FULL_DISK.format("resolve", "jobs"))


def test_route_resolve_and_joblog_say_they_cannot_read_their_input(tmp_path):
    with write_only(tmp_path) as stdin:
        status, stderr = run_on([command("ia-route"), "-d", str(tmp_path), "--no-disk-check"],
                                stdin, subprocess.PIPE)
        assert_says(status, stderr, 1, WRITE_ONLY.format("route", "jobs"))
        status, stderr = run_on([command("ia-resolve"), "-i", "-"], stdin, subprocess.PIPE)
        assert_says(status, stderr, 1, WRITE_ONLY.format("resolve", "item list stdin"))
        status, stderr = run_on([command("ia-joblog"), "append", str(tmp_path / "log.jsonl")],
                                stdin, subprocess.PIPE)
        assert_says(status, stderr, 1, WRITE_ONLY.format("joblog", "events"))


@pytest.mark.parametrize("args", [["ia-joblog", "skip", "{log}"], ["ia-route", "-d", "{dir}",
                                                                  "--no-disk-check"]])
def test_a_non_blocking_input_is_waited_on(tmp_path, args):
    """O_NONBLOCK belongs to the pipe, shared with whoever set it: a read
    with nothing there yet must wait, not fail with EAGAIN."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    argv = [command(args[0])] + [a.format(log=tmp_path / "s.jsonl", dir=tmp_path)
                                 for a in args[1:]]
    process = subprocess.Popen(argv, stdin=read_end, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=base_env())
    os.close(read_end)
    time.sleep(0.5)  # the command is reading by now, and the pipe is empty
    os.write(write_end, b'{"id":"a"}\n')
    time.sleep(0.3)
    os.write(write_end, b'{"id":"b"}\n')
    os.close(write_end)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert [json.loads(line)["id"] for line in stdout.splitlines()] == ["a", "b"]


@pytest.fixture
def item_ids(emulator):
    emu, env = emulator
    return [item.identifier for item in emu.catalog.sorted_items()]


@pytest.mark.parametrize("name", ["fetch", "verify"])
def test_a_full_disk_under_the_events_stops_the_run_with_status_1(name, emulator, item_ids,
                                                                  tmp_path):
    """As on Ctrl-C: the jobs in flight end and ia-fetch releases its locks."""
    emu, env = emulator
    destdir = tmp_path / "data"
    destdir.mkdir()
    with open(jobs_file(tmp_path, item_ids), "rb") as jobs, open("/dev/full", "wb") as full:
        status, stderr = run_on([command(f"ia-{name}"), "-d", str(destdir)], jobs, full, env)
    assert_says(status, stderr, 1, FULL_DISK.format(name, "events"))
    assert not [p.name for p in destdir.iterdir() if p.name.endswith(".iatools-lock")]


@pytest.mark.parametrize("name", ["fetch", "verify"])
def test_jobs_that_cannot_be_read_end_the_run_with_status_1(name, emulator, tmp_path):
    emu, env = emulator
    with write_only(tmp_path) as stdin:
        status, stderr = run_on([command(f"ia-{name}"), "-d", str(tmp_path)], stdin,
                                subprocess.PIPE, env)
    assert_says(status, stderr, 1, WRITE_ONLY.format(name, "jobs"))


def test_a_fetch_whose_reader_goes_away_ends_quietly(emulator, item_ids, tmp_path):
    """``| head -1``: status 141, and not a word about the jobs it cut short."""
    emu, env = emulator
    jobs = jobs_file(tmp_path, item_ids)
    pipeline = (f"ia-fetch -j 4 -d {tmp_path} < {jobs} | head -1 > /dev/null;"
                " echo ${PIPESTATUS[0]}")
    process = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True,
                             timeout=120)
    assert process.stdout == b"141\n", process.stderr
    assert process.stderr == b""


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_on_a_full_disk_is_an_error(option):
    with open("/dev/full", "wb") as full:
        status, stderr = run_on([command("ia-route"), option], subprocess.DEVNULL, full)
    assert_says(status, stderr, 1, FULL_DISK.format("route", "output"))


def test_the_status_table_says_it_cannot_be_written(tmp_path):
    """The report of ia-joblog status, a table for people, goes through
    the same writer as the JSONL, and fails the same way."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(jsonl_bytes([{"event": "completed", "id": "a"}]))
    with open("/dev/full", "wb") as full:
        status, stderr = run_on([command("ia-joblog"), "status", str(log)], subprocess.DEVNULL,
                                full)
    assert_says(status, stderr, 1, "ia-joblog: error: cannot write output: No space left on device")
