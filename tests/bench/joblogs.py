"""J1: ia-joblog over a run of 10 million jobs, at every moment of it.

The run is recorded as the README pipeline records it, into a fresh log:
``ia-joblog skip`` of the 10 M jobs, then ``ia-joblog append`` of the 14.2 M
started/completed/failed events (the cached log's events without its
queued lines), fed through a FIFO by the bench.  The four readers
(``status``, ``pending``, ``failed``, ``completed``) are timed right after
``skip`` exits, while ``append`` runs (the feeder pauses at a third and
at two thirds of the events, sent at full speed, append alive and waiting,
as when events trickle in a real run; and once more after a minute at a
fast run's pace, PACE events a second), and after it exits, from the index
the writers left; then, as a log copied from elsewhere, with no index at all, against
the floors (``grep -c`` and a bare Python loop over the same log).
``append`` is timed apart at full speed, from a file.  Every output is
checked against what the log holds at that moment: a fast wrong answer
fails its row.

The events carry the generator's timestamps (2026-11-01 to 11-06), not
the run's: ``status``'s last day is empty of them.
"""

import errno
import itertools
import json
import os
import re
import shutil
import threading
import time
import zlib
from dataclasses import dataclass

from iatools.log import checkpoint
from tests.bench import measure
from tests.bench.logs import (LogShape, _check, _count_lines, _env, _judge, _row, _run_to_file,
                              cached_data)
from tests.bench.server import VENV_BIN
from tests.helpers import command, processes_with

#: The checkout's code, as bin/ runs it (what `make bench` in a checkout
#: measures).
JOBLOG = command("ia-joblog")
READERS = ("status", "pending", "failed", "completed")
#: Where the feeder pauses, as fractions of the events.
PAUSES = (1 / 3, 2 / 3)
#: After the last pause, the feeder sends events at a fast real run's pace
#: (ia-fetch writes two or three events a job: started, completed) for a
#: while, then pauses once more: the readings at any moment of a run whose
#: writer keeps the index, not right after a burst at full speed.
PACE, PACED_SECONDS = 5_000, 60
#: A reading is stopped after this long: far beyond its target (5 to 15 s),
#: but a first reading of the code of 2026-12 takes 80 to 140 s, and the
#: rows should say how far it is.
READING_TIMEOUT = 300
#: Recording the 10 M jobs, or the 14.2 M events, is stopped after this long.
WRITER_TIMEOUT = 900
#: A reading quicker than this is taken three times (restoring the index in
#: between), and the median kept: near the targets the machine's noise
#: matters; a slower one is far from them anyway.
REPEAT_UNDER = 15
#: Seconds append may take to have on disk what it was sent, at a pause.
CATCH_UP = 60
_FEED_CHUNK = 1 << 22
_COMPLETED, _FAILED = b'{"event":"completed"', b'{"event":"failed"'


@dataclass(frozen=True)
class Moment:
    """What the log holds at a moment of the run: what readings must say."""
    jobs: int
    completed: int
    failed: int
    permanent: int = 0  # failures not retryable, which skip drops


def j1(workdir, quick):
    scale = 100 if quick else 1
    shape = LogShape(10_000_000 // scale, 7_000_000 // scale, 100_000 // scale)
    cached_log, jobs, generated = cached_data(shape)
    events, derived = cached_events(cached_log)
    live = workdir / "live" / "j1-log.jsonl"  # alone in its directory, with its index
    live.parent.mkdir()
    note = (f"{shape.jobs:,} jobs, {shape.lines - shape.jobs:,} events "
            f"({shape.completed:,} completed, {shape.failed:,} failed) into a fresh log")
    if generated or derived:
        note += f"; data generated in {generated + derived:.0f} s"
    rows = [_skip_fresh(live, jobs, shape, workdir, note)]
    exited = time.monotonic()
    rows += _readings(live, Moment(shape.jobs, 0, 0), workdir, "right after skip")
    _note_index_catching_up(rows[0], live, exited)
    after_skip = _Snapshot(live, workdir / "after-skip")
    rows.append(_append_full_speed(live, events, shape, workdir))
    _note_index_catching_up(rows[-1], live, time.monotonic())
    after_skip.restore()
    rows += _append_live(live, events, shape, workdir)
    _note_index_catching_up(rows[-1], live, time.monotonic())
    settled = Moment(shape.jobs, shape.completed, shape.failed, shape.permanent)
    index = _Snapshot(live, workdir / "settled")
    rows += _readings(live, settled, workdir, "settled, from the index", index.restore)
    rows.append(_skip_row(live, jobs, settled, workdir, "settled, from the index",
                          index.restore))
    floors = _floors(live, shape, workdir)
    rows += floors
    rows += _first_readings(live, jobs, settled, workdir, floors[-1])
    return rows


def cached_events(log):
    """The events of the cached log without its queued lines (what ia-fetch
    sends to append), derived once beside it; (path, seconds spent)."""
    events = log.with_name(log.name.replace("j1-log-", "j1-events-"))
    if events.exists():
        return events, 0.0
    started = time.monotonic()
    queued = re.compile(rb'^\{"event":"queued".*\n', re.MULTILINE)
    temp = events.with_suffix(".tmp")
    with open(log, "rb") as source, open(temp, "wb") as out:
        while chunk := source.read(1 << 24):
            chunk += source.readline()  # whole lines only
            out.write(queued.sub(b"", chunk))
    os.replace(temp, events)
    return events, time.monotonic() - started


#: The writers leave their last index refresh to a child (ia-joblog(1),
#: CHECKPOINTS); how long the bench waits for it to cover the whole log.
INDEX_PATIENCE = 900


def _note_index_catching_up(row, log, exited):
    """Wait until the refreshes the writer left are done (or INDEX_PATIENCE),
    and say in the writer's row how long that took after it ``exited``:
    the time a reading still parses a tail of its own.  (A writer leaves
    none for less than checkpoint.SAVE_AFTER: a --quick run's last tail.)"""
    started = exited
    while _refreshing(log):
        if time.monotonic() - started > INDEX_PATIENCE:
            row.note += f"; index not caught up {INDEX_PATIENCE} s after"
            return
        time.sleep(0.5)
    size = log.stat().st_size
    behind = size - min(getattr(checkpoint.covered(str(log), kind), "offset", 0)
                        for kind in ("completed", "pending", "status"))
    caught_up = (f"index caught up {time.monotonic() - started:.0f} s after it exited"
                 if not behind else f"index {behind:,} bytes short of the end")
    row.note += f"; {caught_up}"


def _refreshing(log):
    """Is a refresh of the log's index running, or waiting for the one
    before (a writer's last)?  One left running when a phase puts the index
    back (or drops it) would read the log before and save after, and go on
    taking a core from the readings timed."""
    return bool(processes_with(f"iatools.log.refresher {log}"))


def _wait_for_refreshes(log):
    deadline = time.monotonic() + INDEX_PATIENCE
    while _refreshing(log):
        if time.monotonic() > deadline:
            raise RuntimeError(f"J1: a refresh of {log} still runs {INDEX_PATIENCE} s on")
        time.sleep(0.2)


class _Snapshot:
    """The log's length and its index (every other file of its directory)
    at a moment, to return to it."""

    def __init__(self, log, aside):
        self.log, self.aside, self.size = log, aside, log.stat().st_size
        aside.mkdir()
        _copy_all(_index_files(log), aside)

    def restore(self):
        _drop_index(self.log)
        # Only when something was appended: a truncation changes the log's
        # ctime even to the same size.
        if self.log.stat().st_size != self.size:
            os.truncate(self.log, self.size)
        _copy_all(self.aside.iterdir(), self.log.parent)
        _restamp(self.log)


def _restamp(log):
    """After the log was cut back to what a snapshot held (the bytes before
    never change: it is only appended to), put its new ctime in the writers'
    stamp, with the snapshot's epoch.  Else the stamp, and with it every
    checkpoint saved under it, would no longer hold: every reading would
    check the log's CRC (2 to 9 s), as after an edit by hand, and the writer
    after would begin a new epoch -- not the run measured, in which no one
    but iatools writes to the log."""
    stamp = checkpoint.path_for(str(log), "stamp")
    saved, now = checkpoint._read_stamp(stamp), checkpoint._identity(log.stat())
    # (The same file, as long: only its ctime moved.)
    if saved is None or saved[:3] != now[:3] or saved[3] == now[3]:
        return
    record = checkpoint._STAMP.pack(*now, saved[4])
    with open(stamp, "wb") as file:
        file.write(record + zlib.crc32(record).to_bytes(4, "big"))


def _index_files(log):
    return [p for p in log.parent.iterdir() if p != log]


def _copy_all(paths, directory):
    for path in paths:
        if path.is_dir():
            shutil.copytree(path, directory / path.name)
        else:
            shutil.copyfile(path, directory / path.name)


def _drop_index(log):
    _wait_for_refreshes(log)
    for path in _index_files(log):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _skip_fresh(log, jobs, shape, workdir, note):
    """``skip`` of every job into a new log: every job passes and is recorded."""
    out = workdir / "j1-out.jsonl"
    m = _run_to_file([JOBLOG, "skip", str(log)], out, workdir, WRITER_TIMEOUT,
                     stdin_path=jobs)
    passed, recorded = _count_lines(out), _count_lines(log)
    out.unlink()
    row = _row("J1", "ia-joblog skip (fresh log)", m, shape.jobs, note=note)
    _check(row, passed == recorded == shape.jobs,
           f"passed {passed:,} jobs, recorded {recorded:,}")
    _judge(row, "<= 15 s", m.wall <= 15)
    return row


def _readings(log, moment, workdir, when, before=None, note=""):
    """A row per reader at this moment of the run, judged on the targets
    that hold at every moment."""
    rows = [_reader_row(reader, log, moment, workdir, when, before, note)
            for reader in READERS]
    for row in rows:
        _judge(row, "<= 5 s and <= 200 MB",
               row.wall <= 5 and row.peak_rss_mb is not None and row.peak_rss_mb <= 200)
    return rows


def _reader_row(reader, log, moment, workdir, when, before=None, note=""):
    m, runs, wrong = _repeated(lambda: _read(reader, log, moment, workdir), before)
    row = _row("J1", f"ia-joblog {reader} ({when})", m, moment.jobs, note=note)
    row.runs = runs
    _check(row, wrong is None, wrong)
    return row


def _repeated(run_once, before=None):
    """``run_once()`` -> (Measurement, None or what was wrong), after
    ``before()``; twice more when the first took under REPEAT_UNDER seconds
    and there is a ``before`` to put the log back as it was.  Returns the
    median run, the number of runs and the first thing wrong."""
    results = []
    while True:
        if before:
            before()
        results.append(run_once())
        if not before or len(results) == 3 or results[0][0].wall >= REPEAT_UNDER:
            break
    chosen = measure.median([m for m, _ in results])
    wrong = next((seen for _, seen in results if seen is not None), None)
    return chosen, len(results), wrong


def _read(reader, log, moment, workdir):
    """Run one reader; (Measurement, None or what is wrong in its output)."""
    out = workdir / "j1-out.jsonl"
    argv = [JOBLOG, reader, *(["--json"] if reader == "status" else []), str(log)]
    m = _run_to_file(argv, out, workdir, READING_TIMEOUT)
    if reader == "status":
        summary = _first_json(out)
        seen = {k: summary.get(k) for k in ("total", "completed", "failed")}
        wrong = seen != {"total": moment.jobs, "completed": moment.completed,
                         "failed": moment.failed}
        found = f"counts {seen}"
    else:
        expected = {"pending": moment.jobs - moment.completed, "failed": moment.failed,
                    "completed": moment.completed}[reader]
        printed = _count_lines(out)
        wrong, found = printed != expected, f"printed {printed:,} jobs, not {expected:,}"
    out.unlink()
    return m, found if wrong else None


def _first_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    except (IndexError, ValueError):
        return {}


def _skip_row(log, jobs, moment, workdir, when, before=None, note=""):
    """``skip`` of every job of the run into the log as it is; what it
    appended is cut off again after each run."""
    out = workdir / "j1-out.jsonl"
    size = log.stat().st_size

    def run_once():
        try:
            m = _run_to_file([JOBLOG, "skip", str(log)], out, workdir, READING_TIMEOUT,
                             stdin_path=jobs)
        finally:
            os.truncate(log, size)
            # (The refresh skip left reads what is cut off: not alongside
            # the next run, nor the floors after the last.)
            _wait_for_refreshes(log)
        passed = _count_lines(out)
        out.unlink()
        expected = moment.jobs - moment.completed - moment.permanent
        return m, None if passed == expected else f"passed {passed:,} jobs, not {expected:,}"

    m, runs, wrong = _repeated(run_once, before)
    row = _row("J1", f"ia-joblog skip ({when})", m, moment.jobs,
               note="; ".join(filter(None, [f"all {moment.jobs:,} jobs in", note])))
    row.runs = runs
    _check(row, wrong is None, wrong)
    per_job = None if m.peak_rss_mb is None else m.peak_rss_mb * 1e6 / moment.completed
    row.extra["rss_bytes_per_completed_job"] = per_job and round(per_job, 1)
    _judge(row, "<= 15 s and <= 64 B RSS per completed job (got "
                f"{'unknown' if per_job is None else f'{per_job:.0f}'})",
           m.wall <= 15 and per_job is not None and per_job <= 64)
    return row


def _append_full_speed(log, events, shape, workdir):
    """``append`` of every event from a file, to its exit (what it does
    at the end of its input included)."""
    size = log.stat().st_size
    with open(events, "rb") as stdin:
        m = measure.run([JOBLOG, "append", str(log)], _env(), timeout=WRITER_TIMEOUT,
                        cwd=workdir, stdin=stdin, stderr_path=workdir / "append-stderr.txt")
    count = shape.lines - shape.jobs
    row = _row("J1", "ia-joblog append (full speed, from a file)", m, count,
               unit="events/s", note=f"{count:,} events after skip's {shape.jobs:,} jobs")
    appended = log.stat().st_size - size
    _check(row, appended == events.stat().st_size,
           f"{appended:,} bytes appended of {events.stat().st_size:,}")
    _judge(row, ">= 500,000 events/s", row.rate and row.rate >= 500_000)
    return row


def _append_live(log, events, shape, workdir):
    """``append`` fed through a FIFO, pausing at each of PAUSES for the
    readings (rows), then to the end (a row: its wall time, pauses and all)."""
    fifo = workdir / "events.fifo"
    os.mkfifo(fifo)
    result = {}
    # Longer than for a writer alone: the paced feed and the readings of the
    # pauses are inside.
    timeout = (WRITER_TIMEOUT + PACED_SECONDS
               + (len(PAUSES) + 1) * len(READERS) * READING_TIMEOUT)
    writer = threading.Thread(target=lambda: result.update(m=measure.run(
        ["bash", "-c", 'exec "$0" append "$1" < "$2"', JOBLOG, str(log), str(fifo)],
        _env(), timeout=timeout, cwd=workdir, stderr_path=workdir / "append-stderr.txt")))
    feeder = _Feeder(events, log)
    rows = []
    writer.start()
    try:
        pipe = _open_fifo(fifo, writer)
        try:
            for fraction in PAUSES:
                rows += _pause(feeder, pipe, fraction, log, shape, workdir)
            rows += _paced_pause(feeder, pipe, log, shape, workdir)
            feeder.feed_to(pipe, 1.0)
        finally:
            os.close(pipe)
        ended = time.monotonic()
    finally:
        writer.join()
        feeder.close()
    exit_after = time.monotonic() - ended
    count = shape.lines - shape.jobs
    row = _row("J1", "ia-joblog append (live, through a pipe, paused three times)", result["m"],
               count, unit="events/s",
               note=f"fed in {feeder.feeding:.1f} s outside the pauses; exited "
                    f"{exit_after:.1f} s after the end of its input (paced for "
                    f"{PACED_SECONDS} s)")
    _check(row, feeder.appended() == feeder.total and not feeder.broken,
           f"{feeder.appended():,} bytes appended of {feeder.total:,}")
    return rows + [row]


def _pause(feeder, pipe, fraction, log, shape, workdir):
    """Feed up to ``fraction`` of the events, stop, and read the log."""
    caught_up = feeder.feed_to(pipe, fraction)
    return _readings_at_pause(feeder, caught_up, f"while append runs, {fraction:.0%} in",
                              log, shape, workdir)


def _paced_pause(feeder, pipe, log, shape, workdir):
    """Feed PACE events a second for PACED_SECONDS, stop, and read the log."""
    caught_up = feeder.feed_paced(pipe, PACE, PACED_SECONDS)
    return _readings_at_pause(feeder, caught_up,
                              f"while append runs at {PACE:,} events/s for {PACED_SECONDS} s",
                              log, shape, workdir)


def _readings_at_pause(feeder, caught_up, when, log, shape, workdir):
    moment = Moment(shape.jobs, feeder.completed, feeder.failed)
    note = (f"{feeder.lines:,} of {shape.lines - shape.jobs:,} events in; " +
            (f"all in the log {caught_up * 1000:.0f} ms after the feeder stopped"
             if caught_up is not None else
             f"NOT all in the log {CATCH_UP} s after the feeder stopped"))
    rows = _readings(log, moment, workdir, when, note=note)
    if caught_up is None:
        for row in rows:
            _check(row, False, "append had not written what it was sent")
    return rows


def _open_fifo(fifo, writer, patience=30):
    """The FIFO's write end, once append has opened the other."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            if not writer.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("ia-joblog append did not open its input") from None
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd


class _Feeder:
    """Sends the events file to append, counting what it sent."""

    def __init__(self, events, log):
        self.file = open(events, "rb")
        self.total = os.fstat(self.file.fileno()).st_size
        self.log, self.log_start = log, log.stat().st_size
        self.sent = self.lines = self.completed = self.failed = 0
        self.feeding = 0.0  # seconds spent sending, pauses left out
        self.broken = False

    def feed_to(self, pipe, fraction):
        """Send the events up to the first line boundary at ``fraction`` of
        them; the seconds append took to have them all in the log, or None
        when it did not within CATCH_UP."""
        end = self._boundary(fraction)
        started = time.monotonic()
        try:
            while self.sent < end:
                chunk = self.file.read(min(_FEED_CHUNK, end - self.sent))
                if not chunk:  # the file was cut short meanwhile
                    break
                # Whole lines (``end`` is a line's end): an event cut in two
                # would be counted in neither chunk.
                if not chunk.endswith(b"\n"):
                    chunk += self.file.readline()
                self._send(pipe, chunk)
        except BrokenPipeError:  # append died: its row says how
            self.broken = True
        return self._caught_up(started)

    def feed_paced(self, pipe, events_per_second, seconds):
        """Send the next events at ``events_per_second``, a tenth of a
        second's worth at a time, for ``seconds``; then as ``feed_to``."""
        started = time.monotonic()
        sent = 0
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * events_per_second) - sent
                chunk = b"".join(itertools.islice(self.file, due))
                if due and not chunk:  # the end of the events
                    break
                self._send(pipe, chunk)
                sent += due
                time.sleep(0.1)
        except BrokenPipeError:
            self.broken = True
        return self._caught_up(started)

    def _send(self, pipe, chunk):
        _write_all(pipe, chunk)
        self.sent += len(chunk)
        self.lines += chunk.count(b"\n")
        self.completed += chunk.count(_COMPLETED)
        self.failed += chunk.count(_FAILED)

    def _caught_up(self, started):
        """The seconds append took, once the feeder stopped, to have all it
        was sent in the log; None when it did not within CATCH_UP."""
        stopped = time.monotonic()
        self.feeding += stopped - started
        while self.appended() < self.sent and time.monotonic() - stopped < CATCH_UP:
            time.sleep(0.005)
        return time.monotonic() - stopped if self.appended() == self.sent else None

    def _boundary(self, fraction):
        if fraction >= 1:
            return self.total
        self.file.seek(int(self.total * fraction))
        self.file.readline()
        end = self.file.tell()
        self.file.seek(self.sent)
        return end

    def appended(self):
        return self.log.stat().st_size - self.log_start

    def close(self):
        self.file.close()


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: A bare Python pass over the log's lines: the floor of any reader in Python.
_LINE_LOOP = "import sys\nn = 0\nfor line in open(sys.argv[1], 'rb'):\n    n += 1\nprint(n)"


def _floors(log, shape, workdir):
    """Anchors: counting the completed events with grep, and the lines with
    a Python loop that looks at none of them: what any reader, in C or in
    Python, needs at the least.  The line loop comes last."""
    rows = []
    for label, argv, expected in (
            ("grep -c completed (floor)", ["grep", "-c", '"event":"completed"', str(log)],
             shape.completed),
            ("python line loop (floor)", [str(VENV_BIN / "python"), "-c", _LINE_LOOP, str(log)],
             shape.lines)):
        out = workdir / "j1-out.jsonl"
        m = _run_to_file(argv, out, workdir, READING_TIMEOUT)
        printed = out.read_text(encoding="utf-8").strip()
        out.unlink()
        row = _row("J1", label, m, shape.jobs, note=f"{shape.lines:,} lines")
        row.anchor = True
        _check(row, printed == str(expected), f"printed {printed!r}, expected {expected}")
        rows.append(row)
    return rows


#: A first reading (no index) may take this many times the line loop.
FIRST_READING_RATIO = 20


def _first_readings(log, jobs, moment, workdir, loop):
    """Each reader, and skip, on the settled log with its index deleted
    before each run (a log copied from elsewhere, or an older version's)."""
    when, drop = "first reading, no index", lambda: _drop_index(log)
    rows = [_reader_row(reader, log, moment, workdir, when, drop) for reader in READERS]
    limit = FIRST_READING_RATIO * loop.wall
    for row in rows:
        _judge(row, f"<= {FIRST_READING_RATIO}x the line loop ({limit:.1f} s) and <= 200 MB",
               row.wall <= limit and row.peak_rss_mb is not None and row.peak_rss_mb <= 200)
    rows.append(_skip_row(log, jobs, moment, workdir, when, drop))
    for row in rows:
        row.add_note(f"{row.wall / loop.wall:.1f}x the line loop's time")
    return rows
