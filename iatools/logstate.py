"""What a log says about each job: folded from its events in one pass.

Keys are held as 64-bit hashes, not strings, so a log of millions of jobs
fits in memory (see iatools(7) on the tiny chance of two keys colliding).
A key that has ever completed stays completed; otherwise its latest event
decides whether it failed, is in progress, or is still to do.
"""

import re
from collections import Counter

QUEUED, STARTED, FAILED, COMPLETED = 0, 1, 2, 3
_STATE_OF_EVENT = {"started": STARTED, "failed": FAILED, "completed": COMPLETED}
# Timestamps compare as strings only in this exact form; anything else a
# hand-edited log holds is treated as unknown rather than trusted.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def completed_keys(events):
    """The hashes of every key with a completed event."""
    return {hash(key) for _, event, key in events if event["event"] == "completed"}


class LogState:
    def __init__(self, by_field=None, recent_since=""):
        self.by_field = by_field
        self.recent_since = recent_since
        self.state = {}
        self.group = {}
        self.last_error = {}
        self.retryable = {}
        self.bytes_done = 0
        # Completions since recent_since: how many, their bytes, the earliest.
        self.recent_jobs = 0
        self.recent_bytes = 0
        self.recent_first = ""
        self.last_ts = ""

    def fold(self, events):
        for _, event, key in events:
            self._fold_one(event, hash(key))
        return self

    def _fold_one(self, event, h):
        kind = event["event"]
        ts = event.get("ts")
        ts = ts if isinstance(ts, str) and _TIMESTAMP.fullmatch(ts) else ""
        self.last_ts = max(self.last_ts, ts)
        if self.by_field is not None and h not in self.group:
            self.group[h] = _group_value(event.get(self.by_field))
        previous = self.state.get(h)
        if previous == COMPLETED:
            return
        new = _STATE_OF_EVENT.get(kind, QUEUED if previous is None else previous)
        self.state[h] = new
        if new == FAILED and kind == "failed":
            self.last_error[h] = str(event.get("error") or "unknown error")
            self.retryable[h] = bool(event.get("retryable"))
        elif kind == "completed":
            self._completed(event, h, ts)

    def _completed(self, event, h, ts):
        self.last_error.pop(h, None)
        self.retryable.pop(h, None)
        size = event.get("bytes")
        size = size if isinstance(size, int) else 0
        self.bytes_done += size
        if ts and ts >= self.recent_since:
            self.recent_jobs += 1
            self.recent_bytes += size
            self.recent_first = min(self.recent_first or ts, ts)

    def counts(self, keys=None):
        """Counts by state, over all keys or the hashes in ``keys``."""
        states = self.state.values() if keys is None else (self.state[h] for h in keys)
        tally = Counter(states)
        return {
            "total": sum(tally.values()),
            "completed": tally[COMPLETED],
            "failed": tally[FAILED],
            "in_progress": tally[STARTED],
            "pending": tally[QUEUED],
        }

    def failed_retryable(self):
        return sum(1 for h, r in self.retryable.items() if r and self.state[h] == FAILED)

    def common_errors(self, limit=5):
        return Counter(self.last_error.values()).most_common(limit)

    def groups(self):
        members = {}
        for h, value in self.group.items():
            members.setdefault(value, []).append(h)
        return {value: self.counts(keys) for value, keys in sorted(members.items())}


def _group_value(value):
    return "(none)" if value is None else str(value)
