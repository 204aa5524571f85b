"""ia-fetch's progress under a real pseudo-terminal, stdout and stderr both
on it as in the --help example ``ia-resolve nasa | ia-fetch``: what was
written is rendered with a terminal model (pyte) to see what a user sees.

The frame must never wrap (a wrapped line throws the redraw out and leaves
fragments), every event line and message written while it was up must stay
on screen, and the summary line must be there at the end."""

import fcntl
import os
import re
import struct
import subprocess
import termios
from itertools import repeat

import pyte
import pytest

from tests.emulator import Catalog, FileSpec
from tests.test_progress import read_terminal

#: Long enough that IDENTIFIER/NAME overflows a transfer line at 80 columns.
PREFIX = "an-archivists-rather-long-collection-name-for-the-ellipsis-"
ITEMS = 20
MISSING = f"{PREFIX}missing"
HEADLINE = re.compile(r"ia-fetch: \d+(/\d+)? jobs")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def catalog_with_a_missing_item():
    catalog = Catalog.generate(items=ITEMS, files_per_item=1, file_size=24 * 1024,
                               identifier_prefix=PREFIX)
    catalog.add_item(MISSING, [FileSpec("gone.bin", 10)], missing=True)
    return catalog


def run_on_a_terminal(shell_command, env, columns, rows):
    """Run ``shell_command`` with stdout and stderr on a new pty of the
    given size; return what was written to the terminal."""
    controller, terminal = os.openpty()
    set_size(terminal, columns, rows)
    process = subprocess.Popen(["bash", "-c", shell_command], stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    shown = read_terminal(controller, timeout=60)
    assert process.wait(timeout=60) == 1  # the missing item failed
    return shown


def screen_after(shown, columns, rows):
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(shown)
    return screen.display


def logical_lines(display, columns):
    """The screen's rows joined where a line was wrapped (a full row)."""
    text = "".join(row if len(row.rstrip()) == columns else row.rstrip() + "\n"
                   for row in display)
    return text.rstrip("\n").splitlines()


@pytest.mark.parametrize("columns", [80, 200])
def test_the_frame_fits_and_events_stay_on_screen(make_emulator, tmp_path, columns):
    _, env = make_emulator(catalog_with_a_missing_item(), bandwidth=48 * 1024)
    rows = 300  # room for every event line, wrapped, and the summary
    shown = run_on_a_terminal(
        f"ia-resolve --total --search 'collection:demo' | ia-fetch -j 2 -d {tmp_path}",
        env, columns, rows)

    text = shown.decode()
    events = [line for line in text.split("\r\n") if ESCAPE.sub("", line).startswith('{"event"')]
    frame_lines = [line for line in map(ESCAPE.sub, repeat(""), re.split(r"\r\n", text))
                   if HEADLINE.match(line) or line.startswith("  ")]
    assert frame_lines, "no frame was drawn"
    assert max(map(len, frame_lines)) < columns, "a line of the frame would wrap"
    if columns == 80:
        assert any("…" in line for line in frame_lines), "a long name was not shortened"

    on_screen = logical_lines(screen_after(shown, columns, rows), columns)
    written = [ESCAPE.sub("", line) for line in events]
    assert len([e for e in written if e.startswith('{"event":"completed"')]) == ITEMS
    missing = [line for line in written if line not in on_screen]
    assert not missing, f"{len(missing)} of {len(written)} event lines were erased"
    assert any(line.startswith(f"ia-fetch: error: {MISSING}: ") for line in on_screen)
    summary = [line for line in on_screen if line.startswith("ia-fetch: ")
               and " completed, " in line]
    assert summary and summary[-1].startswith(f"ia-fetch: {ITEMS} completed, 1 failed; "
                                              f"{ITEMS} files, ")
    assert on_screen[-1] == summary[-1], "the frame was left behind the summary"


def test_the_search_total_is_shown_from_the_first_frame(make_emulator, tmp_path):
    """ia-fetch reads only a few jobs ahead; the total comes from the
    search's count, which ia-resolve announces in a comment line."""
    _, env = make_emulator(catalog_with_a_missing_item(), bandwidth=48 * 1024)
    shown = run_on_a_terminal(
        f"ia-resolve --total --search 'collection:demo' | ia-fetch -j 1 -d {tmp_path}",
        env, 100, 40).decode()
    headlines = re.findall(r"ia-fetch: (\d+)(/\d+)? jobs", shown)
    # A frame may be drawn before ia-resolve has written anything (a loaded
    # machine); the total line comes before the first job, so every frame
    # drawn once a job is done must show it.
    after_a_job = [total for done, total in headlines if int(done) > 0]
    assert after_a_job, f"no frame after the first job: {headlines}"
    assert all(total == f"/{ITEMS + 1}" for total in after_a_job), headlines[:3]
    assert "ETA " in shown


def test_the_frame_follows_a_resize(make_emulator, tmp_path):
    _, env = make_emulator(catalog_with_a_missing_item(), bandwidth=32 * 1024)
    controller, terminal = os.openpty()
    set_size(terminal, 120, 40)
    pipeline = f"ia-resolve --total --search 'collection:demo' | ia-fetch -j 2 -d {tmp_path}"
    process = subprocess.Popen(["bash", "-c", pipeline], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=terminal, env=env)
    before = b""
    while b"ia-fetch: " not in before:  # the first frame, at 120 columns
        before += os.read(controller, 65536)
    set_size(terminal, 50, 40)
    os.close(terminal)
    after = read_terminal(controller, timeout=60).decode()
    assert process.wait(timeout=60) == 1
    frame_lines = [line for line in map(ESCAPE.sub, repeat(""), after.split("\r\n"))
                   if HEADLINE.match(line) or line.startswith("  ")]
    # A frame drawn as the size changed may still be a wide one: the test
    # starts at the second headline after the change.
    headlines = [i for i, line in enumerate(frame_lines) if HEADLINE.match(line)]
    assert len(headlines) > 2 and max(map(len, frame_lines[headlines[1]:])) < 50


def set_size(terminal, columns, rows):
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
