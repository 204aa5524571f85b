"""Messages that teach: each common mistake gets one line that says what
was meant and what to type, and a documented exit status."""

import os
import subprocess
import time

import pytest

from tests.emulator import Catalog
from tests.helpers import base_env, command, jsonl_bytes, parse_jsonl, run
from tests.test_progress import read_terminal

PRETTY = b'{\n  "id": "nasa",\n  "batch": "x"\n}\n'
JOB_READERS = [["ia-fetch", "--dry-run"], ["ia-joblog", "skip", "LOG"],
               ["ia-route", "--no-disk-check", "-d", "DIR"]]


def job_reader(args, tmp_path):
    """A command reading jobs on stdin, with LOG and DIR made real."""
    return [command(args[0])] + [{"LOG": str(tmp_path / "log.jsonl"),
                                  "DIR": str(tmp_path)}.get(a, a) for a in args[1:]]


def error_lines(process):
    return process.stderr.decode().splitlines()


@pytest.mark.parametrize("args", JOB_READERS, ids=lambda a: " ".join(a[:2]))
def test_pretty_printed_json_is_recognised(args, tmp_path):
    process = run(job_reader(args, tmp_path), PRETTY)
    assert process.returncode == 1
    lines = error_lines(process)
    assert len(lines) == 4  # one per physical line: below the cap
    assert all(line.startswith(f"{args[0]}: error: input line ") and
               "looks like pretty-printed JSON: use jq -c" in line for line in lines)


@pytest.mark.parametrize("args", JOB_READERS, ids=lambda a: " ".join(a[:2]))
def test_bad_lines_are_reported_up_to_a_cap_then_counted(args, tmp_path):
    jobs = PRETTY * 1000 + jsonl_bytes([{"id": "good-one"}])
    process = run(job_reader(args, tmp_path), jobs)
    assert process.returncode == 1
    # ia-fetch --dry-run's good job fails, and says so: archive.org is out of reach here.
    lines = [line for line in error_lines(process) if "good-one" not in line]
    assert len(lines) == 12, lines
    assert lines[9].startswith(f"{args[0]}: error: input line 10: ")
    assert lines[10] == (f"{args[0]}: error: more lines with this same problem are skipped "
                         "without a message each; their number is told at the end")
    assert lines[11] == f"{args[0]}: error: 4000 bad lines skipped in all (3990 not shown)"
    if args[0] != "ia-fetch":  # the good line still flows
        assert [job["id"] for job in parse_jsonl(process.stdout)] == ["good-one"]


def test_plain_identifiers_point_to_ia_resolve(tmp_path):
    process = run([command("ia-fetch"), "-d", str(tmp_path)], b"nasa\n1234\n")
    assert process.returncode == 1
    lines = error_lines(process)
    assert len(lines) == 2
    for number, line in enumerate(lines, 1):
        assert line.startswith(f"ia-fetch: error: input line {number}: ")
        assert line.endswith("looks like a plain identifier: make jobs of a list of "
                             "identifiers with ia-resolve -i FILE (or -i - for stdin); skipped")


def test_identifier_arguments_point_to_ia_resolve():
    process = run([command("ia-fetch"), "nasa", "gov.archives.arc.1"])
    assert process.returncode == 2
    assert error_lines(process) == [
        "ia-fetch: error: jobs come as JSONL on stdin, not as arguments; make them with "
        "ia-resolve nasa gov.archives.arc.1 | ia-fetch"]


@pytest.mark.parametrize("args, hint", [
    (["ia-joblog", "append", "LOG"],
     "reading events from the terminal; type JSON events and press Ctrl-D, or pipe events in "
     "(e.g. ia-fetch < jobs.jsonl | ia-joblog append LOG); see --help"),
    (["ia-joblog", "skip", "LOG"],
     "reading jobs from the terminal; type JSON jobs and press Ctrl-D, or pipe jobs in "
     "(e.g. ia-resolve ID | ia-joblog skip LOG); see --help"),
    (["ia-resolve", "-i", "-"],
     "reading an item list from the terminal; type identifiers, one a line, and press Ctrl-D, "
     "or pipe an item list in (e.g. ia-resolve -i - < ids.txt); see --help"),
    (["ia-route", "-d", "DIR", "--no-disk-check"],
     "reading jobs from the terminal; type JSON jobs and press Ctrl-D, or pipe jobs in "
     "(e.g. ia-resolve ID | ia-route -d DIR); see --help"),
    (["ia-verify", "-d", "DIR"],
     "reading jobs from the terminal; type JSON jobs and press Ctrl-D, or pipe jobs in "
     "(e.g. ia-resolve ID | ia-verify -d DIR); see --help"),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else "")
def test_stdin_on_a_terminal_gets_the_hint_of_its_command(args, hint, tmp_path):
    controller, terminal = os.openpty()
    process = subprocess.Popen(job_reader(args, tmp_path), stdin=terminal,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=base_env())
    os.close(terminal)
    os.write(controller, b"\x04")  # Ctrl-D: the end of the input
    assert process.wait(timeout=30) == 0
    read_terminal(controller, timeout=1)
    assert process.stderr.read().decode().splitlines() == [f"{args[0]}: warning: {hint}"]


@pytest.mark.parametrize("args", [["ia-resolve", "-s", "collection:x"], ["ia-fetch"],
                                  ["ia-resolve", "nasa"]], ids=" ".join)
@pytest.mark.parametrize("where", ["-c", "IA_CONFIG_FILE"])
@pytest.mark.parametrize("problem", ["missing", "directory"])
def test_a_config_file_that_cannot_be_read_is_a_usage_error(args, where, problem, tmp_path):
    path = tmp_path / "ia.ini"
    if problem == "directory":
        path.mkdir()
    # A proxy that refuses: any network I/O would add an error of its own.
    env = base_env(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    if where == "-c":
        argv = [command(args[0]), "-c", str(path), *args[1:]]
    else:
        argv, env["IA_CONFIG_FILE"] = [command(args[0]), *args[1:]], str(path)
    process = run(argv, jsonl_bytes([{"id": "nasa"}]), env)
    assert process.returncode == 2
    why = "is a directory" if problem == "directory" else ": No such file or directory"
    (line,) = error_lines(process)
    assert line.startswith(f"{args[0]}: ") and f"config file {path} (from {where})" in line
    assert line.endswith(why)
    assert process.stdout == b""


def test_a_search_that_cannot_connect_says_where_at_once(emulator, tmp_path):
    _, env = emulator
    env = {**env, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    started = time.monotonic()
    process = run([command("ia-resolve"), "-s", "collection:demo"], env=env)
    assert time.monotonic() - started < 10  # not two minutes of retries
    assert process.returncode == 1
    assert error_lines(process) == [
        "ia-resolve: error: search 'collection:demo' failed: proxy error: cannot connect to "
        "127.0.0.1: Connection refused"]


def test_a_fetch_that_cannot_connect_names_the_host(emulator, tmp_path):
    emu, env = emulator
    env = {**env, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    item = emu.catalog.sorted_items()[0].identifier
    process = run([command("ia-fetch"), "--retries", "0", "-d", str(tmp_path)],
                  jsonl_bytes([{"id": item}]), env)
    assert process.returncode == 1
    assert error_lines(process) == [
        f"ia-fetch: error: {item}: proxy error: cannot connect to 127.0.0.1: Connection refused"]


@pytest.mark.parametrize("query, found", [("collection:demo", 5), ("collection:nosuchthing", 0)])
def test_verbose_resolve_says_how_many_results(emulator, query, found):
    _, env = emulator
    process = run([command("ia-resolve"), "-v", "-s", query], env=env)
    assert process.returncode == 0
    assert f"ia-resolve: search {query!r}: {found} results" in error_lines(process)
    assert len(parse_jsonl(process.stdout)) == found


def test_halt_now_starts_nothing_more(make_emulator, tmp_path):
    catalog = Catalog.generate(items=3, files_per_item=1, file_size=1024)
    catalog.add_special_items()
    _, env = make_emulator(catalog)
    jobs = [{"id": "special-missing"}] + [{"id": i.identifier} for i in catalog.sorted_items()
                                          if i.identifier.startswith("demo")]
    process = run([command("ia-fetch"), "-j", "1", "-d", str(tmp_path), "--halt", "now,fail=1"],
                  jsonl_bytes(jobs), env)
    assert process.returncode == 1
    assert {event["id"] for event in parse_jsonl(process.stdout)} == {"special-missing"}


def test_the_search_count_is_announced_on_request(emulator, tmp_path):
    _, env = emulator
    assert b"#" not in run([command("ia-resolve"), "-s", "collection:demo"], env=env).stdout
    announced = run([command("ia-resolve"), "--total", "-s", "collection:demo",
                     "--shard", "1/2"], env=env)
    lines = announced.stdout.splitlines()
    assert lines[0] == b"# total 5"
    jobs = parse_jsonl(b"\n".join(line for line in lines if not line.startswith(b"#")))
    assert lines[-1] == f"# skipped {5 - len(jobs)}".encode()  # the other shard's
    routed = run([command("ia-route"), "--no-disk-check", "-d", str(tmp_path)], announced.stdout)
    assert [line for line in routed.stdout.splitlines() if line.startswith(b"#")] == \
        [lines[0], lines[-1]]


def test_an_item_list_of_pretty_printed_jobs_is_recognised():
    process = run([command("ia-resolve"), "-i", "-"], PRETTY)
    assert process.returncode == 1
    lines = error_lines(process)
    assert len(lines) == 4
    assert all(line.startswith("ia-resolve: error: stdin line ") and
               "looks like pretty-printed JSON: use jq -c" in line for line in lines)
