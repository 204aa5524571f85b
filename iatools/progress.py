"""ia-fetch's progress for a human on stderr: live lines on a terminal, a
line per finished job with -v otherwise, nothing with -q."""

import os
import sys
import threading
import time

from iatools.sizes import format_duration, format_size


class Slot:
    """One transfer in flight, as the display shows it."""

    def __init__(self, identifier, name, size):
        self.identifier, self.name, self.size = identifier, name, size
        self.done = 0
        self.started = time.monotonic()
        self.total_counter = None

    def add(self, n):
        self.done += n
        self.total_counter.add(n)


class _ByteCounter:
    def __init__(self):
        self.total = 0

    def add(self, n):
        self.total += n  # one thread per slot; a lost update only blurs a rate


class Progress:
    def __init__(self, live, verbose):
        self.live = live
        self.verbose = verbose
        self.colour = live and not os.environ.get("NO_COLOR")
        self.slots = []
        self.lock = threading.Lock()
        self.bytes = _ByteCounter()
        self.done = self.failed = self.skipped = 0
        self.total = None
        self.started = time.monotonic()
        self._drawn = 0
        self._rate = _Rate()
        self.slowdown = None  # a callable: why the run is slowed now, or ""

    def begin(self, identifier, name, size):
        slot = Slot(identifier, name, size)
        slot.total_counter = self.bytes
        with self.lock:
            self.slots.append(slot)
        return slot

    def end(self, slot):
        with self.lock:
            self.slots.remove(slot)

    def finished(self, event):
        """Count an outcome event; on request, say it in one line."""
        kind = event["event"]
        if kind == "failed":
            self.failed += 1
        elif kind == "completed":
            self.done += 1
        else:
            self.skipped += 1
        if self.verbose and not self.live:
            self._write(f"ia-fetch: {kind} {event['id']}{_details(event)}\n")

    def render(self):
        if not self.live:
            return
        lines = [self._summary()] + [self._slot_line(s) for s in self._snapshot()]
        text = (f"\x1b[{self._drawn}F" if self._drawn else "") + "\x1b[J" + "\n".join(lines) + "\n"
        self._drawn = len(lines)
        self._write(text)

    def clear(self):
        if self.live and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _snapshot(self):
        with self.lock:
            return list(self.slots)

    def _summary(self):
        rate = self._rate.update(self.bytes.total)
        failed = f"{self.failed} failed"
        if self.colour and self.failed:
            failed = f"\x1b[31m{failed}\x1b[0m"
        total = f"/{self.total}" if self.total is not None else ""
        eta = ""
        finished = self.done + self.failed + self.skipped
        if self.total and finished:
            elapsed = time.monotonic() - self.started
            eta = f", ETA {format_duration(elapsed / finished * (self.total - finished))}"
        slowed = self.slowdown() if self.slowdown else ""
        return (f"ia-fetch: {finished}{total} jobs, {failed}, {len(self.slots)} transfers, "
                f"{format_size(rate)}/s{eta}" + (f"; {slowed}" if slowed else ""))

    def _slot_line(self, slot):
        elapsed = max(time.monotonic() - slot.started, 1e-3)
        size = format_size(slot.size) if slot.size is not None else "?"
        name = slot.name if len(slot.name) <= 40 else "…" + slot.name[-39:]
        return (f"  {slot.identifier[:30]:<30} {name:<40} {format_size(slot.done)}/{size} "
                f"{format_size(slot.done / elapsed)}/s")

    def _write(self, text):
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


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

