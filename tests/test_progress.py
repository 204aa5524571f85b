"""ia-fetch's progress for a human: live lines when stderr is a terminal
(a real pty here), nothing but errors otherwise, -v and -q, NO_COLOR."""

import os
import re
import select
import subprocess

from tests.emulator import Catalog
from tests.helpers import command, jsonl_bytes, parse_jsonl, run

MISSING = "no-such-item-anywhere"


def slow_catalog(make_emulator):
    catalog = Catalog.generate(items=3, files_per_item=2, file_size=384 * 1024)
    emu, env = make_emulator(catalog, bandwidth=256 * 1024)
    jobs = [{"id": item.identifier} for item in catalog.sorted_items()] + [{"id": MISSING}]
    return catalog, env, jsonl_bytes(jobs)


def fetch_with_terminal_stderr(env, jobs, destdir, *args):
    """Run ia-fetch with stderr on a pty; return (status, stdout, what the
    terminal showed)."""
    controller, terminal = os.openpty()
    process = subprocess.Popen([command("ia-fetch"), "-j", "2", "-d", str(destdir), *args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=terminal,
                               env=env)
    os.close(terminal)
    process.stdin.write(jobs)
    process.stdin.close()
    shown = read_terminal(controller)
    stdout = process.stdout.read()
    return process.wait(timeout=30), stdout, shown


def read_terminal(controller, timeout=30):
    """All that is written to a pty until its last writer closes it (or
    nothing comes for ``timeout`` seconds); the controller is closed."""
    shown = bytearray()
    while select.select([controller], [], [], timeout)[0]:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(controller)
    return bytes(shown)


def test_a_terminal_shows_a_summary_and_a_line_per_transfer(make_emulator, tmp_path):
    catalog, env, jobs = slow_catalog(make_emulator)
    status, stdout, shown = fetch_with_terminal_stderr(env, jobs, tmp_path)
    assert status == 1  # the missing item
    text = shown.decode()
    assert "ia-fetch: 0/4 jobs (0%), 0 failed, " in text  # the total, once the input ended
    assert "ia-fetch: 4/4 jobs (100%), " in text
    assert re.search(r", avg [\d.]+ [KM]iB/s, 0m0\ds", text), "no average rate and elapsed time"
    identifier = catalog.sorted_items()[0].identifier
    assert any(line.lstrip().startswith(identifier) and "KiB" in line
               for line in text.splitlines()), "no line for a transfer in flight"
    assert "\x1b[31m1 failed\x1b[0m" in text  # failures in red
    assert f"ia-fetch: error: {MISSING}: item {MISSING} does not exist" in text
    assert re.search(r"\x1b\[\d+F\x1b\[Jia-fetch: 3 completed, 1 failed; 6 files, 2.2 MiB in "
                     r"0m0\ds \([\d.]+ KiB/s\)\r\n$", text), \
        "the live lines were not replaced by the summary at the end"
    assert len([e for e in parse_jsonl(stdout) if e["event"] == "completed"]) == 3


def test_no_color_keeps_the_live_lines_but_drops_colour(make_emulator, tmp_path):
    _, env, jobs = slow_catalog(make_emulator)
    status, _, shown = fetch_with_terminal_stderr({**env, "NO_COLOR": "1"}, jobs, tmp_path)
    assert status == 1
    assert b"1 failed" in shown and b"\x1b[31m" not in shown
    assert b"/4 jobs" in shown


def test_quiet_on_a_terminal_prints_only_errors(make_emulator, tmp_path):
    _, env, jobs = slow_catalog(make_emulator)
    status, _, shown = fetch_with_terminal_stderr(env, jobs, tmp_path, "-q")
    assert status == 1
    assert shown.decode().splitlines() == [
        f"ia-fetch: error: {MISSING}: item {MISSING} does not exist"]


def test_a_pipe_gets_only_errors_and_with_v_a_line_per_job(emulator, tmp_path):
    emu, env = emulator
    items = [item.identifier for item in emu.catalog.sorted_items()[:2]]
    jobs = jsonl_bytes([{"id": i} for i in items] + [{"id": MISSING}])
    plain = run([command("ia-fetch"), "-d", str(tmp_path)], jobs, env)
    assert plain.stderr.decode().splitlines() == [
        f"ia-fetch: error: {MISSING}: item {MISSING} does not exist"]

    verbose = run([command("ia-fetch"), "-v", "-d", str(tmp_path)], jobs, env)
    lines = verbose.stderr.decode().splitlines()
    for identifier in items:  # already present now: completed, nothing fetched
        assert f"ia-fetch: completed {identifier} (0 files, 0 B)" in lines
    assert any(line.startswith(f"ia-fetch: failed {MISSING} (0 files, 0 B, item ")
               for line in lines)
    assert lines[-1].startswith("ia-fetch: 2 completed, 1 failed; 0 files, 0 B in 0m0")
    assert "\x1b[" not in verbose.stderr.decode()


def test_a_dry_run_counts_a_job_it_cannot_plan_as_failed(emulator, tmp_path):
    emu, env = emulator
    items = [item.identifier for item in emu.catalog.sorted_items()[:2]]
    jobs = jsonl_bytes([{"id": i} for i in items] + [{"id": MISSING}])
    verbose = run([command("ia-fetch"), "-v", "--dry-run", "-d", str(tmp_path)], jobs, env)
    assert verbose.returncode == 1
    lines = verbose.stderr.decode().splitlines()
    assert any(line.startswith(f"ia-fetch: planned {MISSING} (") and "not exist" in line
               for line in lines), lines
    assert lines[-1].startswith("ia-fetch: 2 planned, 0 completed, 1 failed; "), lines


def test_names_lose_their_middle_and_wide_characters_count_twice():
    from iatools.fetching.progress import display_width, fit, fit_parts, shorten_middle

    assert shorten_middle("demo-0001/a-long-file-name.mp4", 16) == "demo-00…name.mp4"
    assert shorten_middle("short", 16) == "short"
    wide = "写真集/" + "東京" * 20 + ".jpg"
    shortened = shorten_middle(wide, 21)
    assert "…" in shortened and display_width(shortened) <= 21
    assert shortened.startswith("写真集/") and shortened.endswith(".jpg")
    assert display_width(fit("東京" * 50, 80)) <= 79
    assert fit_parts(["ia-fetch: 3/9 jobs", "0 failed", "1.0 MiB", "ETA 1m00s"], 40) == \
        "ia-fetch: 3/9 jobs, 0 failed, 1.0 MiB"
