"""The append-only event log: safe concurrent appends and tolerant reads.

Writing: each batch of lines goes out in one ``write`` on an ``O_APPEND``
descriptor under an exclusive ``flock``, so appenders never interleave or
tear each other's lines.  A batch that cannot be written whole (disk full) is
cut back off, keeping the log valid.  After each batch the writer stamps
the log (iatools.log.checkpoint.AppendStamp), so that a checkpoint can be
trusted without reading the log again.  Once written, an event survives the
death of any process; ``fsync`` runs at most once per ``SYNC_INTERVAL``
(group commit) and at close, which bounds what a power cut can take.  It
runs on a thread of its own while the writing goes on (skip of ten million
jobs waited 0.8 to 1.5 s in all for its fsyncs), one at a time; an error it
meets is raised by the next append, or at close.

Reading: the log comes in chunks of whole lines (``read_chunks``), which
the commands scan with regular expressions on the beginning of each line
(iatools.contract.linegrammar) and hand to the full parser (``events_in``) only when a
line does not have the shape the writers give it.  A torn last line (a crash
mid-write) is reported once and ignored; any other malformed line is
reported with its number and skipped.  The log is never rewritten.
"""

import fcntl
import os
import stat
import threading
import time
from bisect import bisect_right
from itertools import repeat
from operator import sub

from iatools.base import errors
from iatools.contract.jsonl import MAX_LINE_BYTES, BadLine, split_lines, whole_lines, without_cr
from iatools.contract.linegrammar import parse_event
from iatools.log.checkpoint import START, AppendStamp

SYNC_INTERVAL = 1.0
#: Reading the log in large chunks leaves fewer, longer steps to Python.
READ_SIZE = 1 << 19  # half the line limit: most chunks are within it


class LogWriter:
    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._stamp = AppendStamp(path)
        self._last_sync = time.monotonic()
        self._syncing = None  # the thread of the last fsync
        self._sync_error = None

    def append(self, lines):
        """Append complete lines (bytes ending in a newline) as one write;
        the offset in the log where they begin (None for no lines)."""
        if not lines:
            return None
        self._raise_sync_error()
        data = b"".join(lines)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            self._stamp.before(self.fd)
            offset = self._write_at_end(data)
            self._stamp.after(self.fd)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        if time.monotonic() - self._last_sync >= SYNC_INTERVAL:
            self._sync_in_background()
        return offset

    @property
    def epoch(self):
        """The stamp's epoch of the last append (iatools.log.checkpoint)."""
        return self._stamp.epoch

    def _write_at_end(self, data):
        size = os.fstat(self.fd).st_size
        torn = size and os.pread(self.fd, 1, size - 1) != b"\n"
        if torn:
            data = b"\n" + data  # a torn line from a crash: start afresh
        try:
            written = os.write(self.fd, data)
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError:
            os.ftruncate(self.fd, size)  # never leave half a batch behind
            raise
        return size + 1 if torn else size

    def _sync_in_background(self):
        if self._syncing is not None and self._syncing.is_alive():
            return  # (the next append starts the next one)
        self._last_sync = time.monotonic()
        self._syncing = threading.Thread(target=self._sync_noting_error, daemon=True,
                                         name="iatools-log-fsync")
        self._syncing.start()

    def _sync_noting_error(self):
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self._sync_error = exc

    def _raise_sync_error(self):
        error, self._sync_error = self._sync_error, None
        if error is not None:
            raise error

    def sync(self):
        """Everything appended is on disk when this returns."""
        if self._syncing is not None:
            self._syncing.join()
        self._raise_sync_error()
        os.fsync(self.fd)
        self._last_sync = time.monotonic()

    def close(self):
        try:
            self.sync()
        finally:
            os.close(self.fd)


def read_chunks(path, report=True, start=START, end=None):
    """Yield ``(first_line_number, lines, data)``: ``lines`` whole lines of
    the log from the ``checkpoint.Position`` ``start`` on (to the offset
    ``end``, a line boundary, if given), each ending in a newline, in
    chunks of about ``READ_SIZE`` bytes.

    A torn last line is reported (with ``report``) and left out.  A missing
    log yields nothing: nothing has happened yet.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise errors.UsageError(f"cannot read log {path}: {exc.strerror}") from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise errors.UsageError(f"cannot read log {path}: Is a directory")
        if start.offset:  # (a log read from a pipe has no checkpoint)
            os.lseek(fd, start.offset, os.SEEK_SET)
        source = fd if end is None else _Upto(fd, end - start.offset)
        next_line = start.line
        for first, lines, data in whole_lines(source, READ_SIZE, start.line, what=f"log {path}"):
            if not lines:
                if report:
                    _report_torn(path, first)
                break
            yield first, lines, data
            next_line = first + lines
        if end is not None and report and _torn_after(fd, end):
            _report_torn(path, next_line)
    finally:
        os.close(fd)


def _report_torn(path, line_number):
    errors.warning(f"{path}: line {line_number} is incomplete "
                   "(a write cut short by a crash?); ignored")


def _torn_after(fd, end):
    """Is what follows the offset ``end`` one line, cut short?"""
    rest = os.fstat(fd).st_size - end
    return 0 < rest <= MAX_LINE_BYTES and b"\n" not in os.pread(fd, rest, end)


class _Upto:
    """The bytes of a file descriptor, ``left`` of them at most."""

    def __init__(self, fd, left):
        self.fd = fd
        self.left = left

    def read1(self, size):
        data = os.read(self.fd, min(size, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data

    read = read1


def lines_at(path, offsets):
    """The lines of the log that start at each of the increasing
    ``offsets``, without their line endings, read a block at a time: the
    lines of each block are found and cut in C (``map``), not one by one in
    Python (a million lines a second more, for pending's millions)."""
    lines = []
    for data, starts in _blocks_at(path, offsets):
        lines += _cut(data, starts)
    return without_cr(lines)


def texts_at(path, offsets):
    """``lines_at``, as (text, count): the lines of a block joined by
    newlines, and how many.  Where the offsets are every line of a stretch
    of the log (as skip queued them, say), the text is that stretch, cut
    once: no line is cut apart, nor joined again.  (Line endings are left
    as they are: a CR stays before its newline.)"""
    texts = []
    for data, starts in _blocks_at(path, offsets):
        end = data.find(b"\n", starts[-1])
        # (The count is skipped where the first two lines are apart, as
        # completions are: a pass over every byte of the block.)
        if ((len(starts) == 1 or data.find(b"\n", starts[0]) + 1 == starts[1])
                and data.count(b"\n", starts[0], end) == len(starts) - 1):
            texts.append((data[starts[0]:end], len(starts)))
        else:
            texts.append((lines_in(data, starts), len(starts)))
    return texts


def regions_at(path, offsets):
    """``texts_at`` without cutting the lines out: each block's stretch of
    the log from the first line at the increasing ``offsets`` to the end of
    the last (its newline included, and the lines between them), and the
    offsets of those lines in it."""
    for data, starts in _blocks_at(path, offsets):
        yield data[:data.find(b"\n", starts[-1]) + 1], starts  # (starts[0] is 0)


def lines_in(data, starts):
    """The lines of ``data`` that start at ``starts``, joined by newlines
    (as ``texts_at`` gives them)."""
    return b"\n".join(_cut(data, starts))


def _cut(data, starts):
    """The lines of ``data`` that start at ``starts``, without their newline
    (an iterator)."""
    ends = map(data.find, repeat(b"\n"), starts)
    return map(data.__getitem__, map(slice, starts, ends))


def _blocks_at(path, offsets):
    """The blocks of the log that hold the lines starting at each of the
    increasing ``offsets``: (data, the offsets of the lines in it)."""
    with open(path, "rb", buffering=0) as log:
        first = 0
        while first < len(offsets):
            base = offsets[first]
            log.seek(base)
            data = log.read(READ_SIZE + MAX_LINE_BYTES)
            # The offsets whose lines end in this block: up to its last newline.
            after = bisect_right(offsets, base + data.rfind(b"\n"), first)
            if after == first:
                raise errors.IatoolsError(f"{path} was cut short while being read")
            yield data, list(map(sub, offsets[first:after], repeat(base)))
            first = after


def line_bounds(path, start, end, every):
    """Line boundaries in the log at ``path`` about ``every`` bytes apart
    from the line boundary ``start`` on, before the offset ``end``:
    ``start``, then the first one at or after each ``every`` bytes; None
    when a line there is longer than the limit (a reading in turn reports
    it)."""
    bounds = [start]
    with open(path, "rb") as log:
        for nominal in range(start + every, end, every):
            log.seek(nominal - 1)  # (a line may begin right at ``nominal``)
            head = log.read(1 << 16)
            newline = head.find(b"\n")
            if newline < 0:
                newline = (head + log.read(MAX_LINE_BYTES + 1 - len(head))).find(b"\n")
            if newline < 0:
                return None
            if nominal + newline >= end:
                break
            bounds.append(nominal + newline)
    return bounds


def check_existing(path):
    """A log that a reader is given must be there: a typo in its name must
    not pass for a log where nothing has happened yet."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise errors.UsageError(f"cannot read log {path}: No such file "
                                "(only skip, append and tee create a log)") from None
    except OSError:
        pass  # reported when it is read


def rereadable(path):
    """Can the log at ``path`` be read twice: a file (or missing), not a
    pipe, whose second reading would find nothing?  (A directory, or a log
    that cannot be looked at, is reported when it is read.)"""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def check_rereadable(path):
    """A log that a command reads twice must be ``rereadable``."""
    if not rereadable(path):
        raise errors.UsageError(f"cannot read log {path} twice, as this command does: "
                                "not a regular file (save it to a file first)")


def events_in(path, first_line_number, data, prefilter=None, report=True):
    """Yield ``(line_number, event)`` for each valid event in a chunk from
    ``read_chunks``, parsing every line: the slow path, which reports bad
    lines.  ``prefilter(line)`` may reject lines before they are parsed (a
    cheap substring test); rejected lines are not checked for validity."""
    for line_number, line in enumerate(split_lines(data), first_line_number):
        if prefilter is not None and not prefilter(line):
            continue
        try:
            event = parse_event(line)
        except BadLine as exc:
            if report and line.strip():
                errors.warning(f"{path}: line {line_number}: {exc}; skipped")
            continue
        yield line_number, event


def read_events(path, prefilter=None, report=True):
    """Yield ``(line_number, event)`` for each valid event in the log, every
    line parsed (see ``events_in``).  With ``report`` false, a second pass
    over a log stays silent about what the first already reported."""
    for first, _, data in read_chunks(path, report):
        yield from events_in(path, first, data, prefilter, report)
