"""What a log says about each job, read in one pass without a dict per key.

A key that has ever completed stays completed; otherwise its latest started
or failed event decides whether it is in progress or failed; a key seen only
in other events (queued, planned, skipped) is still to do.

Keys are held as 64-bit hashes in ``KeySet``s (see iatools(7) on the tiny
chance of two keys colliding), and each chunk of the log is judged in C by
regular expressions on the beginning of its lines: ``"event"`` and the key
come first (iatools(7)).  A chunk with a line of any other shape goes to the
full parser, line by line, which reports the bad lines.  Only failed events,
which are few, are always parsed whole.

A reading starts from the log's checkpoint, when it has one to trust, and
saves a new one when it has read enough past it (iatools.checkpoint).
"""

import re
from collections import Counter, deque
from functools import cached_property
from itertools import compress, repeat

import orjson

from iatools import checkpoint
from iatools.eventlog import all_lines_closed, events_in, read_chunks
from iatools.keyset import KEY, KeySet, key_bytes

QUEUED, STARTED, FAILED, COMPLETED = 0, 1, 2, 3
#: Events that change the state of a key not completed; the others only
#: make it known.
_UNFINISHED = {b"started": STARTED, b"failed": FAILED}
# Timestamps compare as strings only in this exact form; anything else a
# hand-edited log holds is treated as unknown rather than trusted.
_TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z"
_TIMESTAMP = re.compile(_TS.decode())
_LAST_TS = re.compile(rb'.*,"ts":"(' + _TS + rb')"')
# Each pattern is searched for in b"\n" + chunk, so that every line starts
# with a newline and a match can only begin a line.
COMPLETED_LINE = re.compile(rb'\n\{"event":"completed",' + KEY + rb"[,}]")
_OTHER_LINE = re.compile(rb'\n\{"event":"(?!completed")([a-z_]+)",' + KEY + rb"[,}]")
# "bytes" is found from the end of the line, where the writers put it.
_COMPLETED_BYTES = re.compile(rb'\n\{"event":"completed",[^\n]*,"bytes":([0-9]+)[,}]')
_FAILED_LINE = re.compile(rb'\n(\{"event":"failed",[^\n]*)')
#: The key sets, which hold a key once per event, drop their duplicates
#: once they pass this many and twice as many as after the last fold.
_FOLD_AFTER = 1 << 24


def completed_keys(path, report=True):
    """The hashes of every key with a completed event, read from the log's
    checkpoint and the events after it, and the position read up to."""
    loaded, done = checkpoint.load(path, "completed", KeySet.load)
    done = done or KeySet()
    position = loaded
    for first, lines, data in read_chunks(path, report, loaded):
        keys = COMPLETED_LINE.findall(b"\n" + data)
        if len(keys) != data.count(b"completed") or not all_lines_closed(lines, data):
            keys = [key_bytes(event) for _, event
                    in events_in(path, first, data, _may_be_completed, report)
                    if event["event"] == "completed"]
        done.add(done.hash_keys(keys))
        position = position.after(data, lines)
    if checkpoint.worth_saving(loaded, position):
        checkpoint.save(path, "completed", position, done.dumped_size(), done.dump)
    return done, position


def _restore(reader):
    """The attributes of a LogState that ``LogState._dump`` saved."""
    completed, seen = KeySet.load(reader), KeySet.load(reader)
    rest = orjson.loads(reader.blob())
    hashes, states = rest["unfinished"]
    failed, failures, retryable = rest["failure"]
    return {"completed": completed, "seen": seen, "unfinished": dict(zip(hashes, states)),
            "failure": dict(zip(failed, zip(failures, retryable))),
            "bytes_done": rest["bytes_done"], "last_ts": rest["last_ts"],
            "_after_fold": rest["after_fold"]}


def _may_be_completed(line):
    return b"completed" in line


class LogState:
    """The state of every key of a log.  ``recent_since``: completions at or
    after this timestamp make the rate; ``by_field``: count by the value of
    this job field too (every line is then parsed: slower)."""

    def __init__(self, by_field=None, recent_since=""):
        self.by_field = by_field
        self.recent_since = recent_since
        # The keys of the completed events, and of all the others.
        self.completed = KeySet()
        self.seen = KeySet(self.completed.salt)
        self._after_fold = 0
        # For keys not (yet) completed: the latest started or failed event
        # (hash -> state), and the latest failure (hash -> (error, retryable)).
        self.unfinished = {}
        self.failure = {}
        self.group = {}
        # The "bytes" of every completed event: a job completed again
        # transferred nothing, so this is also the bytes of each first one.
        self.bytes_done = 0
        # Completions since recent_since: how many, their bytes, the earliest.
        self.recent_jobs = 0
        self.recent_bytes = 0
        self.recent_first = ""
        self.last_ts = ""

    def read(self, path):
        """Fold the events of the log at ``path``: those after its
        checkpoint, if it has one to trust, on the state saved there.  The
        checkpoint is saved again up to where the recent window starts,
        whose events every status reads for the rate.  (Not with by_field:
        a checkpoint does not keep the groups.)"""
        loaded = checkpoint.START
        if self.by_field is None:
            loaded, saved = checkpoint.load(path, "status", _restore)
            self.__dict__.update(saved or {})
        position, unsaved = loaded, self.by_field is None
        for first, lines, data in read_chunks(path, start=loaded):
            settled_ts = self._settled_ts(data)
            if settled_ts is None and unsaved:
                self._save(path, loaded, position)
                unsaved = False
            if (self.by_field is not None or settled_ts is None
                    or not self._read_fast(lines, data, settled_ts)):
                self._read_slow(path, first, data)
            self._fold_if_large()
            position = position.after(data, lines)
        if unsaved:
            self._save(path, loaded, position)
        return self

    def _settled_ts(self, data):
        """The time of the chunk's last line if the whole chunk is older than
        the recent window (the log is written in time order), else None: a
        recent chunk is read exactly, line by line, for the rate."""
        last_ts = _LAST_TS.match(data, data.rfind(b"\n", 0, -1) + 1)
        if last_ts and last_ts[1].decode() < self.recent_since:
            return last_ts[1].decode()
        return None

    def _fold_if_large(self):
        held = self.completed.added + self.seen.added
        if held > max(_FOLD_AFTER, 2 * self._after_fold):
            self.completed.fold()
            self.seen.fold()
            self._after_fold = self.completed.added + self.seen.added

    def _save(self, path, loaded, position):
        """Save the state as the checkpoint at ``position``, if worth it."""
        if checkpoint.worth_saving(loaded, position):
            # A key held once, in one set, is all the counts need; fewer
            # to save and to load.
            self.completed.fold()
            self.seen.fold(without=self.completed)
            self._after_fold = self.completed.added + self.seen.added
            size = (self.completed.dumped_size() + self.seen.dumped_size()
                    + 100 * (len(self.unfinished) + len(self.failure)))
            checkpoint.save(path, "status", position, size, self._dump)

    def _dump(self, writer):
        self.completed.dump(writer)
        self.seen.dump(writer)
        failures = list(self.failure.values())
        writer.blob(orjson.dumps({
            "unfinished": [list(self.unfinished), list(self.unfinished.values())],
            "failure": [list(self.failure), [e for e, _ in failures], [r for _, r in failures]],
            "bytes_done": self.bytes_done, "last_ts": self.last_ts,
            "after_fold": self._after_fold}))

    def _read_fast(self, lines, data, last_ts):
        """Fold a chunk whose lines all have the writers' shape, judged by
        their beginning; False (nothing folded) for any other chunk."""
        text = b"\n" + data
        done_keys = COMPLETED_LINE.findall(text)
        others = _OTHER_LINE.findall(text)
        if len(done_keys) + len(others) != lines or not all_lines_closed(lines, data):
            return False
        try:
            failures = [orjson.loads(line) for line in _FAILED_LINE.findall(text)]
        except orjson.JSONDecodeError:
            return False
        kinds, keys = zip(*others) if others else ((), ())
        hash_keys = self.completed.hash_keys
        self._fold(hash_keys(keys), kinds, hash_keys(done_keys), failures)
        self.bytes_done += sum(map(int, _COMPLETED_BYTES.findall(text)))
        self.last_ts = max(self.last_ts, last_ts)
        return True

    def _read_slow(self, path, first, data):
        hashes, kinds, done_hashes, failures = [], [], [], []
        for _, event in events_in(path, first, data):
            h = self.completed.hash_key(key_bytes(event))
            kind = event["event"]
            ts = event.get("ts")
            ts = ts if isinstance(ts, str) and _TIMESTAMP.fullmatch(ts) else ""
            self.last_ts = max(self.last_ts, ts)
            if kind == "completed":
                size = event.get("bytes")
                size = size if isinstance(size, int) else 0
                self.bytes_done += size
                self._recent(ts, size)
                done_hashes.append(h)
            else:
                hashes.append(h)
                kinds.append(kind.encode())
                if kind == "failed":
                    failures.append(event)
            if self.by_field is not None and h not in self.group:
                self.group[h] = _group_value(event.get(self.by_field))
        self._fold(hashes, kinds, done_hashes, failures)

    def _fold(self, hashes, kinds, done_hashes, failures):
        """Fold a chunk's events, in log order: the keys and kinds of those
        not completed, the keys of the completed ones, the failed events."""
        self.seen.add(hashes)
        self.completed.add(done_hashes)
        states = list(map(_UNFINISHED.get, kinds))
        self.unfinished.update(compress(zip(hashes, states), states))
        for event in failures:
            self.failure[self.completed.hash_key(key_bytes(event))] = (
                str(event.get("error") or "unknown error"), bool(event.get("retryable")))
        # A completed key needs no unfinished state; dropping it keeps the
        # dicts small.  (A later event of a completed key is ignored in the
        # end, by _unfinished_states.)
        deque(map(self.unfinished.pop, done_hashes, repeat(None)), maxlen=0)
        deque(map(self.failure.pop, done_hashes, repeat(None)), maxlen=0)

    def _recent(self, ts, size):
        if ts and ts >= self.recent_since:
            self.recent_jobs += 1
            self.recent_bytes += size
            self.recent_first = min(self.recent_first or ts, ts)

    @cached_property
    def _unfinished_states(self):
        """hash -> STARTED or FAILED, for the keys that never completed (once
        the log is read)."""
        completed = self.completed
        return {h: s for h, s in self.unfinished.items() if h not in completed}

    def counts(self):
        tally = Counter(self._unfinished_states.values())
        completed, total = self.completed.count_with(self.seen)
        return {
            "total": total,
            "completed": completed,
            "failed": tally[FAILED],
            "in_progress": tally[STARTED],
            "pending": total - completed - tally[FAILED] - tally[STARTED],
        }

    def _failures(self):
        """(error, retryable) of each key whose latest outcome is a failure."""
        return [self.failure[h] for h, s in self._unfinished_states.items() if s == FAILED]

    def failed_retryable(self):
        return sum(retryable for _, retryable in self._failures())

    def common_errors(self, limit=5):
        return Counter(error for error, _ in self._failures()).most_common(limit)

    def groups(self):
        unfinished = self._unfinished_states
        members = {}
        for h, value in self.group.items():
            state = COMPLETED if h in self.completed else unfinished.get(h, QUEUED)
            members.setdefault(value, Counter())[state] += 1
        return {value: _counts(tally) for value, tally in sorted(members.items())}


def _counts(tally):
    return {"total": sum(tally.values()), "completed": tally[COMPLETED],
            "failed": tally[FAILED], "in_progress": tally[STARTED], "pending": tally[QUEUED]}


def _group_value(value):
    return "(none)" if value is None else str(value)
