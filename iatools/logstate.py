"""What a log says about each job: folded from its events in one pass.

Keys are held as 64-bit hashes, not strings, so a log of millions of jobs
fits in memory (see iatools(7) on the tiny chance of two keys colliding).
A key that has ever completed stays completed; otherwise its latest event
decides whether it failed, is in progress, or is still to do.
"""

from collections import Counter

QUEUED, STARTED, FAILED, COMPLETED = 0, 1, 2, 3
_STATE_OF_EVENT = {"started": STARTED, "failed": FAILED, "completed": COMPLETED}


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
        self.recent = []  # (ts, bytes) of completions since recent_since
        self.last_ts = ""

    def fold(self, events):
        for _, event, key in events:
            self._fold_one(event, hash(key))
        return self

    def _fold_one(self, event, h):
        kind = event["event"]
        ts = event.get("ts")
        ts = ts if isinstance(ts, str) else ""
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
        if ts >= self.recent_since:
            self.recent.append((ts, size))

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
