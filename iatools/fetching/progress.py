"""ia-fetch's progress for a human on stderr: a live frame on a terminal, a
line per finished job with -v otherwise, nothing with -q; and one summary
line when the run ends.

The frame is a block of lines at the bottom of the terminal, redrawn in
place.  It never wraps (a wrapped line would throw the cursor-up count out
and leave fragments behind): every line is fitted to the terminal's width,
asked again at each frame so that a resize is followed.  Whatever else is
written to the terminal while the frame is up (messages from any thread,
events when stdout is the same terminal) goes through ``above``: the frame
is erased, the text written where it stood, and the frame drawn again below
it, so the text stays on screen.
"""

import os
import threading
import time
import unicodedata

from iatools.base import errors
from iatools.base.sizes import format_duration, format_size
from iatools.contract.jobs import is_failure

#: Lines of the terminal the frame leaves free: the line under it, where
#: the cursor waits, and one more so that nothing scrolls on a resize.
_SPARE_ROWS = 2
_ELLIPSIS = "…"


class Slot:
    """One transfer in flight, as the display shows it."""

    def __init__(self, identifier, name, size, total_counter):
        self.identifier, self.name, self.size = identifier, name, size
        self.done = 0
        self.started = time.monotonic()
        self.total_counter = total_counter

    def add(self, n):
        self.done += n
        self.total_counter.add(n)


class _ByteCounter:
    def __init__(self):
        self.total = 0

    def add(self, n):
        self.total += n  # one thread per slot; a lost update only blurs a rate


class Tally:
    """What the run has done so far: the frame's numbers and the summary's."""

    def __init__(self):
        self.completed = self.failed = self.skipped = self.planned = self.files = 0
        self.bytes = _ByteCounter()
        self.started = time.monotonic()
        #: Jobs announced upstream (``# total N`` less ``# skipped N``), and
        #: the exact number once the input has ended; None while unknown.
        self.announced = None
        self.total = None

    @property
    def finished(self):
        return self.completed + self.failed + self.skipped + self.planned

    def count(self, event):
        kind = event["event"]
        if is_failure(event):  # (a dry run's job that could not be planned too)
            self.failed += 1
        elif kind == "completed":
            self.completed += 1
        elif kind == "planned":  # --dry-run
            self.planned += 1
        else:
            self.skipped += 1
        self.files += event.get("files") or 0

    def announce(self, kind, count):
        self.announced = (self.announced or 0) + (count if kind == "total" else -count)

    def known_total(self, read):
        """The total to show: exact, or as announced while no more jobs
        than that have been read (else the announcement missed some)."""
        if self.total is not None:
            return self.total
        if self.announced is not None and self.announced >= read:
            return self.announced
        return None

    def elapsed(self):
        return time.monotonic() - self.started

    def summary(self, prog, width=None):
        """The line that stays when the run ends; within ``width`` columns
        if given (the average rate goes first, then the end is cut)."""
        elapsed = self.elapsed()
        average = int(self.bytes.total / elapsed) if elapsed > 0 else 0
        counts = [f"{self.completed} completed", f"{self.failed} failed"]
        if self.skipped:
            counts.append(f"{self.skipped} skipped")
        if self.planned:
            counts.insert(0, f"{self.planned} planned")
        line = (f"{prog}: {', '.join(counts)}; {self.files} files, "
                f"{format_size(self.bytes.total)} in {format_duration(elapsed)}")
        rate = f" ({format_size(average)}/s)"
        if width is None or display_width(line + rate) < width:
            return line + rate
        return fit(line, width)


class Progress:
    def __init__(self, live, verbose, prog="ia-fetch"):
        self.live = live
        self.verbose = verbose
        self.prog = prog
        self.colour = live and not os.environ.get("NO_COLOR")
        self.slots = []
        self.tally = Tally()
        self.bytes = self.tally.bytes
        self.read = 0  # jobs read from the input so far
        self.lock = threading.RLock()  # one writer on the terminal at a time
        self._drawn = 0  # lines of the frame now on screen
        self._frame = ""  # the text of that frame, to draw it again
        self._rate = _Rate()
        self.slowdown = None  # a callable: why the run is slowed now, or ""

    def begin(self, identifier, name, size):
        slot = Slot(identifier, name, size, self.bytes)
        with self.lock:
            self.slots.append(slot)
        return slot

    def end(self, slot):
        with self.lock:
            self.slots.remove(slot)

    def finished(self, event):
        """Count an outcome event; on request, say it in one line."""
        self.tally.count(event)
        if self.verbose and not self.live:
            self.message(f"{self.prog}: {event['event']} {event['id']}{_details(event)}\n")

    # -- writing to the terminal ----------------------------------------------
    def render(self):
        if not self.live:
            return
        width, rows = terminal_size()
        lines = [self._headline(width)] + self._slot_lines(width, rows - _SPARE_ROWS - 1)
        with self.lock:
            self._frame = "".join(line + "\n" for line in lines)
            _write_stderr(self._erase() + self._frame)
            self._drawn = len(lines)

    def above(self, write):
        """Run ``write()``, which writes to the terminal, above the frame."""
        with self.lock:
            if not self._drawn:
                return write()
            _write_stderr(self._erase())
            try:
                return write()
            finally:
                _write_stderr(self._frame)

    def message(self, text):
        """Write a message line for a human (errors.set_display)."""
        self.above(lambda: _write_stderr(text))

    def clear(self):
        with self.lock:
            if self._drawn:
                _write_stderr(self._erase())
                self._drawn = 0

    def finish(self):
        """Take the frame away and leave the summary line in its place
        (on a terminal, or with -v)."""
        with self.lock:
            self.clear()
            if self.live:
                _write_stderr(self.tally.summary(self.prog, terminal_size()[0]) + "\n")
            elif self.verbose:
                _write_stderr(self.tally.summary(self.prog) + "\n")

    def _erase(self):
        """Back to the frame's first line, and everything below erased.
        The count of lines is right because no line of the frame wrapped."""
        return (f"\x1b[{self._drawn}F" if self._drawn else "") + "\x1b[J"

    # -- the frame --------------------------------------------------------------
    def _headline(self, width):
        """Jobs done/total, failures, bytes, current and average rate,
        elapsed and ETA; parts at the end are left out when the width is
        short (``fit_parts``)."""
        tally = self.tally
        elapsed = tally.elapsed()
        rate = int(self._rate.update(self.bytes.total))
        total = tally.known_total(self.read)
        finished = tally.finished
        jobs = f"{finished}/{total} jobs" if total is not None else f"{finished} jobs"
        if total:
            jobs += f" ({100 * finished // total}%)"
        failed = f"{tally.failed} failed"
        parts = [f"{self.prog}: {jobs}", failed, format_size(self.bytes.total),
                 f"{format_size(rate)}/s"]
        slowed = self.slowdown() if self.slowdown else ""
        if slowed:  # why the rate is what it is
            parts.append(slowed)
        if elapsed > 0:
            parts.append(f"avg {format_size(int(self.bytes.total / elapsed))}/s")
        parts.append(format_duration(elapsed))
        if total is not None and finished:
            remaining = max(total - finished, 0)
            parts.append(f"ETA {format_duration(elapsed / finished * remaining)}")
        if tally.skipped:
            parts.insert(2, f"{tally.skipped} skipped")
        line = fit_parts(parts, width)
        if self.colour and tally.failed:
            line = line.replace(failed, f"\x1b[31m{failed}\x1b[0m", 1)
        return line

    def _slot_lines(self, width, room):
        with self.lock:
            slots = list(self.slots)
        lines = [self._slot_line(slot, width) for slot in slots[:max(room, 0)]]
        if len(slots) > len(lines) and room > 0:
            lines[-1] = fit(f"  … and {len(slots) - room + 1} more transfers", width)
        return lines

    def _slot_line(self, slot, width):
        elapsed = max(time.monotonic() - slot.started, 1e-3)
        size = format_size(slot.size) if slot.size is not None else "?"
        numbers = f" {format_size(slot.done)}/{size} {format_size(int(slot.done / elapsed))}/s"
        name_width = width - 1 - 2 - len(numbers)
        if name_width < 8:  # a very narrow terminal: the name, then what fits
            return fit(f"  {slot.identifier}/{slot.name}{numbers}", width)
        name = shorten_middle(f"{slot.identifier}/{slot.name}", name_width)
        return f"  {name}{' ' * (name_width - display_width(name))}{numbers}"


def terminal_size():
    """Columns and rows of the terminal, asked at each frame (a resize
    is then followed within a frame); 80 by 24 when it does not say (a
    new pseudo-terminal says 0 by 0)."""
    try:
        size = os.get_terminal_size(errors.stderr().fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


def _write_stderr(text):
    stderr = errors.stderr()  # the run's, where its messages go too
    try:
        stderr.write(text)
        stderr.flush()
    except (OSError, ValueError):
        pass


def display_width(text):
    """Columns ``text`` takes on a terminal: wide (East Asian) characters
    take two, combining marks none."""
    return sum(_char_width(c) for c in text)


def _char_width(char):
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(line, width):
    """``line`` cut to less than ``width`` columns, an ellipsis at the cut.
    The last column stays empty: a line that fills it leaves some terminals
    waiting to wrap, and the next newline would then count twice."""
    limit = width - 1
    if display_width(line) <= limit:
        return line
    kept, used = [], 0
    for char in line:
        w = _char_width(char)
        if used + w > limit - 1:
            break
        kept.append(char)
        used += w
    return "".join(kept) + _ELLIPSIS


def fit_parts(parts, width):
    """``parts`` joined by commas, leaving out the last ones until the line
    fits; cut (``fit``) when even the first does not."""
    for count in range(len(parts), 0, -1):
        line = ", ".join(parts[:count])
        if display_width(line) < width:
            return line
    return fit(parts[0], width)


def shorten_middle(text, width):
    """``text`` in at most ``width`` columns, its middle replaced by an
    ellipsis: both the item and the end of a file name stay readable."""
    if display_width(text) <= width:
        return text
    keep = width - 1
    head = _take(text, keep // 2)  # the end, which tells files apart, gets the odd column
    tail = _take(text[::-1], keep - display_width(head))[::-1]
    return head + _ELLIPSIS + tail


def _take(text, columns):
    """The longest start of ``text`` within ``columns``."""
    used = 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > columns:
            return text[:i]
    return text


class _Rate:
    """Bytes per second over the last few seconds."""

    def __init__(self, window=5.0):
        self.window = window
        self.samples = []

    def update(self, total):
        now = time.monotonic()
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.pop(0)
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def _details(event):
    parts = [f"{event.get('files', 0)} files", format_size(event.get("bytes") or 0)]
    if event.get("error"):
        parts.append(event["error"])
    return " (" + ", ".join(parts) + ")"
