"""--bwlimit: one byte rate for all of ia-fetch's transfers together, as
rclone's --bwlimit and wget's --limit-rate, with rclone's daily timetable:

    --bwlimit 10M
    --bwlimit "08:00,512K 19:00,10M 23:00,off"

A timetable's rate holds from its time until the next one's, and the last
one holds past midnight until the first (local time).  Bytes are paid for as
they are read: a worker that read ahead of the rate sleeps, its socket's
buffer fills, and TCP slows the server down.
"""

import argparse
import re
import threading
import time

from iatools.base.sizes import parse_size
from iatools.fetching.http import Cancelled

#: Seconds of idleness that may be caught up at once.  Small, so that the
#: rate holds over short windows too (0.1 s of credit is 0.3 % of 30 s).
CREDIT = 0.1
_ENTRY = re.compile(r"(\d{1,2}):(\d{2}),(\S+)")


def parse_rate(text):
    """Bytes per second (K, M, G: binary multiples), or None for "off"."""
    if text.strip().lower() == "off":
        return None
    rate = parse_size(text)
    if rate <= 0:
        raise ValueError(f"invalid rate {text!r} (use a positive size, e.g. 512K, or off)")
    return rate


def parse_timetable(text):
    """[(minute of the day, rate or None)], sorted; a single rate is one
    entry at 00:00."""
    entries = text.split()
    if len(entries) == 1 and "," not in entries[0]:
        return [(0, parse_rate(entries[0]))]
    table = []
    for entry in entries:
        match = _ENTRY.fullmatch(entry)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ValueError(f"invalid timetable entry {entry!r} (use HH:MM,RATE, e.g. "
                             "08:00,512K)")
        table.append((int(match.group(1)) * 60 + int(match.group(2)), parse_rate(match.group(3))))
    if not table or len({minute for minute, _ in table}) != len(table):
        raise ValueError(f"invalid timetable {text!r} (empty, or a time given twice)")
    return sorted(table)


def bwlimit_argument(text):
    try:
        return parse_timetable(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rate_at(table, now=None):
    """The rate the timetable gives at ``now`` (time.time(); local time)."""
    moment = time.localtime(now)
    minute = moment.tm_hour * 60 + moment.tm_min
    rate = table[-1][1]  # from the day before
    for start, entry_rate in table:
        if start > minute:
            break
        rate = entry_rate
    return rate


class BandwidthLimit:
    """Shared by every worker: ``take(n)`` returns once ``n`` more bytes
    fit the rate (raises Cancelled when the run is cancelled meanwhile)."""

    def __init__(self, table, cancel):
        self.table = table
        self.cancel = cancel
        self._lock = threading.Lock()
        self._paid_until = 0.0

    def take(self, nbytes):
        rate = rate_at(self.table)
        if rate is None:
            return
        with self._lock:
            now = time.monotonic()
            self._paid_until = max(self._paid_until, now - CREDIT) + nbytes / rate
            wait = self._paid_until - now
        if wait > 0 and self.cancel.wait(wait):
            raise Cancelled()
