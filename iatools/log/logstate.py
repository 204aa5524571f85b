"""What a log says about each job, read in one pass without a dict per key.

A key is completed when its latest outcome among completed, verified,
damaged and "changed upstream" (iatools.contract.linegrammar.reopens) is a completed or
verified event; a started or failed event after a completion changes
nothing.  For a key not completed, its latest started or failed event since
it was last completed decides whether it is in progress or failed; else it
is to do: damaged, changed, or (seen only in queued, planned, skipped
events) pending.

Keys are held as 64-bit hashes in ``KeySet``s (see iatools(7) on the tiny
chance of two keys colliding), and each chunk of the log is judged in C by
regular expressions on the beginning of its lines: ``"event"`` and the key
come first (iatools(7)).  A chunk with a line of any other shape goes to the
full parser, line by line, which reports the bad lines.  Only failed events,
which are few, are always parsed whole.

A reading starts from the log's checkpoint, when it has one to trust, and
saves a new one when it has read enough past it (iatools.log.checkpoint).
"""

import os
import re
from collections import Counter, deque
from functools import cached_property, partial
from itertools import compress, repeat
from operator import attrgetter
from typing import NamedTuple

import orjson

from iatools.base.keymap import KeyMap
from iatools.base.keyset import KeySet
from iatools.contract.linegrammar import (COMPLETED_BYTES, COMPLETED_WHEN, DONE_EVENTS, DONE_LINE,
                                          FAILED_LINE, LAST_TS, MINUTE, OPEN_LINE, QUEUED_START,
                                          SIZE, TS, all_lines_closed, key_bytes, line_starts,
                                          marked, may_reopen, outcome_with_fields, queued_only,
                                          reopens, whole_numbers)
from iatools.log import checkpoint
from iatools.log.eventlog import events_in, lines_at, read_chunks, rereadable
from iatools.log.sharedread import read_cut
from iatools.log.standing import CHANGED, COMPLETED, DAMAGED, FAILED, QUEUED, STARTED, Standing

#: Events that change the state of a key not completed; the others only
#: make it known.
_UNFINISHED = {b"started": STARTED, b"failed": FAILED}
_TIMESTAMP = re.compile(TS.decode())
#: A queued event whose job fields are plain, up to its "ts"; groups: the
#: key and its "size" (b"" without).
_QUEUED_SIZE = outcome_with_fields(b"queued", (b"size", b"(" + SIZE + b")"))
#: The key sets, which hold a key once per event, drop their duplicates
#: once they pass this many and twice as many as after the last compaction.
_COMPACT_AFTER = 1 << 24
#: A reading from a checkpoint moves the standing of the keys that the
#: events after it name (iatools.log.standing) when there are at most this
#: many bytes of them; past that, counting every key afresh costs less.
TAIL_LIMIT = 64 << 20


def _restore(reader):
    """The attributes of a LogState that ``LogState._dump`` saved."""
    completed, seen = KeySet.load(reader), KeySet.load(reader)
    sizes = KeyMap.load(reader, 1, keys_like=seen)
    rest = orjson.loads(reader.blob())
    hashes, states = rest["unfinished"]
    failed, errors, *failures = rest["failure"]
    reopened, why = rest["reopened"]
    errors_told = {}
    errors = map(errors_told.setdefault, errors, errors)
    return {"completed": completed, "seen": seen, "unfinished": dict(zip(hashes, states)),
            "failure": dict(zip(failed, map(Failure._make, zip(errors, *failures)))),
            "_errors_told": errors_told,
            "reopened": dict(zip(reopened, why)), "sizes": sizes, "minutes": rest["minutes"],
            "bytes_done": rest["bytes_done"], "last_ts": rest["last_ts"],
            "_after_compact": rest["after_compact"],
            "standing": Standing.restored(rest["standing"]), "_pruned": True}


class Failure(NamedTuple):
    """The latest failure of a key: what went wrong, and where it is told
    (the offset of its line, which holds the rest: ``RecentFailure``).
    Tens of thousands are held at once, each error told once
    (``LogState._failure``): 70,000 failures took 43 MB with their ids and
    times, 11 without."""
    error: str
    retryable: bool
    offset: int


class RecentFailure(NamedTuple):
    """A Failure as status shows it: with its job and its time."""
    error: str
    retryable: bool
    id: str
    file: str  # "" for an item job
    ts: str

    @classmethod
    def of(cls, failure, job_and_time):
        return cls(failure.error, failure.retryable, *job_and_time)


def _job_and_time(event):
    """The id, file ("" for none) and "ts" ("" for none) of a failed event."""
    ts = event.get("ts")
    return event["id"], event.get("file", ""), ts if isinstance(ts, str) else ""


class LogState:
    """The state of every key of a log.  ``history_since``: completions at
    or after this minute (as a timestamp begins: 2026-12-06T19:42) are
    counted per minute, for the rates and the history; ``by_field``: count
    by the value of this job field too (every line is then parsed:
    slower); ``salt``: that of the key hashes (iatools.base.keyset)."""

    def __init__(self, by_field=None, history_since="", salt=None):
        self.by_field = by_field
        self.history_since = history_since[:MINUTE]
        # The keys of the completed events, and of all the others.
        self.completed = KeySet(salt)
        self.seen = KeySet(self.completed.salt)
        self._after_compact = 0
        # For keys not (yet) completed: the latest started or failed event
        # (hash -> state), the latest failure (hash -> Failure), and for
        # those completed once, what undid it (hash -> DAMAGED or CHANGED).
        self.unfinished = {}
        self.failure = {}
        self._errors_told = {}
        # The job and time of each failure, for a log that cannot be read
        # again for them (a pipe): hash -> (id, file, ts).
        self._failed_jobs = None
        self.reopened = {}
        self.group = {}
        # The "bytes" of every completed event.
        self.bytes_done = 0
        # Completions since history_since: minute -> [jobs, bytes].
        self.minutes = {}
        # The "size" of each key's latest queued event that has one.
        self.sizes = KeyMap(1)
        self.last_ts = ""
        # Where the keys stand (counted at the end of the reading).
        self.standing = None
        # Do unfinished, failure and reopened hold only keys not completed
        # (as a checkpoint saves them)?
        self._pruned = False

    def read(self, path):
        """Fold the events of the log at ``path``: those after its
        checkpoint, if it has one to trust, on the state saved there; then
        save the checkpoint again, at the end.  (Not with by_field: a
        checkpoint does not keep the groups.)"""
        loaded, epoch = checkpoint.START, checkpoint.current_epoch(path)
        self._path = path
        if not rereadable(path):
            self._failed_jobs = {}
        if self.by_field is None:
            loaded, saved = checkpoint.load(path, "status", _restore)
            self.__dict__.update(saved or {})
        named, end = self._keys_named_after(path, loaded)
        before = Standing.of_keys(self, named) if named else None
        # No further than the keys were looked for: on a log that grows
        # meanwhile, the keys of the events past that would be folded in
        # and never counted.
        position = read_cut(path, loaded, self._cut if self.by_field is None else _no_cut,
                            self._fold_cut, partial(self._read_slow_compacting, path), end=end,
                            share=named is None and self.by_field is None)
        if named is None:
            self.standing = self._count_all()
        elif named:
            self.standing = self.standing.moved(before, Standing.of_keys(self, named))
        if self.by_field is None:
            self._save(path, loaded, position, epoch)
        return self

    def _keys_named_after(self, path, loaded):
        """The hashes of the keys that the events after the checkpoint name,
        each once, and the offset they were looked for up to; (None, None)
        when there is no standing to move (no checkpoint) or too much to
        read."""
        if self.standing is None or os.stat(path).st_size - loaded.offset > TAIL_LIMIT:
            return None, None
        keys, end = [], loaded.offset
        for first, lines, data in read_chunks(path, report=False, start=loaded):
            text = marked(data)
            named = DONE_LINE.findall(text) + [key for _, key in OPEN_LINE.findall(text)]
            if len(named) != lines:
                named = [key_bytes(event) for _, event in events_in(path, first, data,
                                                                     report=False)]
            keys += named
            end += len(data)
        return list(set(self.completed.hash_keys(keys))), end

    def _compact_if_large(self):
        held = self.completed.added + self.seen.added + self.sizes.added
        if held > max(_COMPACT_AFTER, 2 * self._after_compact):
            self.completed.compact()
            self.seen.compact()
            self.sizes.compact(without=self.completed)
            self._after_compact = self.completed.added + self.seen.added + self.sizes.added

    def _save(self, path, loaded, position, epoch):
        """Save the state as the checkpoint at ``position``, if worth it."""
        if checkpoint.worth_saving(loaded, position):
            held = self.completed.added + self.seen.added + self.sizes.added
            if held > self._after_compact * 5 // 4:
                # A key held once, in one set, is all the counts need; fewer
                # to save and to load.  (Not after a short tail: compacting
                # ten million keys takes seconds, and saves a few bytes.)
                self.completed.compact()
                self.seen.compact(without=self.completed)
                self.sizes.compact(without=self.completed)
                self._after_compact = self.completed.added + self.seen.added + self.sizes.added
            self.minutes = {m: n for m, n in self.minutes.items() if m >= self.history_since}
            self._prune()
            size = (self.completed.dumped_size() + self.seen.dumped_size()
                    + self.sizes.dumped_size() + 50 * len(self.minutes)
                    + 100 * (len(self.unfinished) + len(self.failure) + len(self.reopened)))
            checkpoint.save(path, "status", position, size, self._dump, epoch)

    def _prune(self):
        """Forget the latest state, failure and reopening of the keys
        completed since: a reading from the checkpoint that has no events
        after it to fold then answers without looking up (and loading) the
        completed keys."""
        completed = self.completed
        for held in self._held_per_key():
            gone = list(compress(held, completed.contains_each(list(held))))
            deque(map(held.pop, gone), maxlen=0)
        self._pruned = True

    def _dump(self, writer):
        self.completed.dump(writer)
        self.seen.dump(writer)
        self.sizes.dump(writer)
        writer.blob(orjson.dumps({
            "unfinished": [list(self.unfinished), list(self.unfinished.values())],
            "failure": [list(self.failure), *map(list, zip(*self.failure.values()))]
            if self.failure else [[]] + [[]] * len(Failure._fields),
            "reopened": [list(self.reopened), list(self.reopened.values())],
            "bytes_done": self.bytes_done, "last_ts": self.last_ts, "minutes": self.minutes,
            "after_compact": self._after_compact, "standing": self.standing.saved()}))

    def _cut(self, lines, data, base):
        """What a chunk whose lines all have the writers' shape, judged by
        their beginning, tells (``_Cut``); None for any other chunk, or one
        that may reopen a key.  ``base``: the chunk's offset in the log."""
        last_ts = LAST_TS.match(data, data.rfind(b"\n", 0, -1) + 1)
        if not last_ts or may_reopen(data):
            return None
        last_ts = last_ts[1].decode()
        text = marked(data)
        if queued_only(lines, data):
            return self._cut_queued(lines, data, text, last_ts)
        done_keys = DONE_LINE.findall(text)
        others = OPEN_LINE.findall(text)
        if len(done_keys) + len(others) != lines or not all_lines_closed(lines, data):
            return None
        try:
            failures = [(orjson.loads(m[1]), base + m.start()) for m in FAILED_LINE.finditer(text)]
        except orjson.JSONDecodeError:
            return None
        sized = _QUEUED_SIZE.findall(text)
        if len(sized) != data.count(QUEUED_START):
            return None
        kinds, keys = zip(*others) if others else ((), ())
        hash_keys = self.completed.hash_keys
        minutes = {}
        if last_ts >= self.history_since:  # (the log is in time order)
            for minute, size in COMPLETED_WHEN.findall(text):
                _count(minutes, minute.decode(), int(size or 0), self.history_since)
        return _Cut(hash_keys(keys), kinds, hash_keys(done_keys), failures,
                    hash_keys([key for key, size in sized if size]),
                    [int(size) for _, size in sized if size],
                    sum(map(int, COMPLETED_BYTES.findall(text))), minutes, last_ts)

    def _cut_queued(self, lines, data, text, last_ts):
        """``_cut`` for a chunk of queued events only, as skip writes them by
        the million: one expression over the chunk, one hash of each key (a
        queued event only makes its key known, with its size)."""
        sized = _QUEUED_SIZE.findall(text)
        if len(sized) != lines or not all_lines_closed(lines, data):
            return None
        keys, sizes = zip(*sized)
        hashes = self.completed.hash_array(keys)
        if b"" in sizes:
            with_size = hashes[list(map(bool, sizes))], list(map(int, filter(None, sizes)))
        else:
            with_size = hashes, whole_numbers(sizes)
        return _Cut(hashes, None, (), (), *with_size, 0, {}, last_ts)

    def _fold_cut(self, cut):
        """Fold what ``_cut`` found in a chunk."""
        if cut.kinds is None:  # (queued events only)
            self.seen.add(cut.hashes)
        else:
            self._fold(cut.hashes, cut.kinds, cut.done_hashes, cut.failures)
        self.sizes.add(cut.sized_hashes, cut.sizes)
        self.bytes_done += cut.bytes_done
        for minute, (jobs, size) in cut.minutes.items():
            counts = self.minutes.setdefault(minute, [0, 0])
            counts[0] += jobs
            counts[1] += size
        self.last_ts = max(self.last_ts, cut.last_ts)
        self._compact_if_large()

    def _read_slow_compacting(self, path, first, data, base):
        self._read_slow(path, first, data, base)
        self._compact_if_large()

    def save_counted(self, path, position, epoch):
        """For a writer that folded every event of the log up to the
        Position ``position`` (written in the stamp's ``epoch``): count
        every key, and save the checkpoint there."""
        self.standing = self._count_all()
        self._save(path, checkpoint.START, position, epoch)

    def _read_slow(self, path, first, data, base):
        """Fold a chunk line by line, in order: the full parser reports bad
        lines; an event that reopens a key takes effect where it stands."""
        starts = line_starts(data)
        batch = ([], [], [], [])
        numbered = list(events_in(path, first, data))
        hashes = self.completed.hash_keys([key_bytes(event) for _, event in numbered])
        for (line_number, event), h in zip(numbered, hashes):
            kind = event["event"]
            ts = event.get("ts")
            ts = ts if isinstance(ts, str) and _TIMESTAMP.fullmatch(ts) else ""
            self.last_ts = max(self.last_ts, ts)
            hashes, kinds, done_hashes, failures = batch
            if kind in DONE_EVENTS:
                if kind == "completed":
                    self._completed_bytes(ts, event.get("bytes"))
                done_hashes.append(h)
            elif reopens(event):
                self._fold(*batch)
                batch = ([], [], [], [])
                self._reopen(h, DAMAGED if kind == "damaged" else CHANGED)
            else:
                hashes.append(h)
                kinds.append(kind.encode())
                if kind == "failed":
                    failures.append((event, base + starts[line_number - first]))
            if kind == "queued" and _is_size(event.get("size")):
                self.sizes.add([h], [event["size"]])
            if self.by_field is not None:
                self._group(h, event)
        self._fold(*batch)

    def _completed_bytes(self, ts, size):
        size = size if _is_size(size) else 0
        self.bytes_done += size
        if ts:
            _count(self.minutes, ts[:MINUTE], size, self.history_since)

    def _group(self, h, event):
        """The group of a key: the value of the field in its latest event
        that has it (ia-route adds "destdir" after skip queued the job)."""
        if self.by_field in event:
            self.group[h] = _group_value(event[self.by_field])
        else:
            self.group.setdefault(h, _group_value(None))

    def _fold(self, hashes, kinds, done_hashes, failures):
        """Fold a chunk's events, in log order: the keys and kinds of those
        not completed, the keys of the completed ones, the failed events
        and their offsets."""
        self._pruned = False
        self.seen.add(hashes)
        self.completed.add(done_hashes)
        states = list(map(_UNFINISHED.get, kinds))
        self.unfinished.update(compress(zip(hashes, states), states))
        failed_hashes = self.completed.hash_keys([key_bytes(event) for event, _ in failures])
        self.failure.update((h, self._failure(event, offset))
                            for h, (event, offset) in zip(failed_hashes, failures))
        if self._failed_jobs is not None:
            self._failed_jobs.update((h, _job_and_time(event))
                                     for h, (event, _) in zip(failed_hashes, failures))
        # A completed key needs no unfinished state; dropping it keeps the
        # dicts small.  (A later event of a completed key is ignored in the
        # end, by _unfinished_states.)
        for held in self._held_per_key():
            deque(map(held.pop, done_hashes, repeat(None)), maxlen=0)

    def _held_per_key(self):
        """What is held of the keys not completed, key by key."""
        held = (self.unfinished, self.failure, self.reopened)
        return held if self._failed_jobs is None else held + (self._failed_jobs,)

    def _failure(self, event, offset):
        error = str(event.get("error") or "unknown error")
        # Only "retryable": false says that trying again is useless.
        return Failure(self._errors_told.setdefault(error, error),
                       event.get("retryable") is not False, offset)

    def _reopen(self, h, why):
        """A completed key is to do again: its files are damaged, or the
        item changed upstream."""
        self.completed.discard([h])
        self.seen.add([h])
        self.unfinished.pop(h, None)
        self.failure.pop(h, None)
        if self._failed_jobs is not None:
            self._failed_jobs.pop(h, None)
        self.reopened[h] = why
        # The size it was queued with before it completed is not what is
        # left to do now (and a checkpoint no longer has it): 0 until it is
        # queued again.
        self.sizes.add([h], [0])

    @cached_property
    def _unfinished_states(self):
        """hash -> STARTED, FAILED, DAMAGED or CHANGED, for the keys not
        completed (once the log is read)."""
        if self._pruned:
            return {**self.reopened, **self.unfinished}
        states = {}
        for held in (self.reopened, self.unfinished):
            # Looked up all at once: one by one, each lookup would make
            # the completed keys build their index.
            hashes = list(held)
            states.update((h, held[h]) for h, done
                          in zip(hashes, self.completed.contains_each(hashes)) if not done)
        return states

    def _count_all(self):
        """The Standing of every key, counted afresh."""
        tally = Counter(self._unfinished_states.values())
        completed, total = self.completed.count_with(self.seen)
        tally[COMPLETED] = completed
        tally[QUEUED] = total - sum(tally.values())
        return Standing([tally[state] for state in range(6)],
                        sum(not f.retryable for f in self._failures()), self._remaining_bytes())

    def counts(self):
        return self.standing.counts()

    def _failures(self):
        """The Failure of each key whose latest outcome is a failure."""
        return [self.failure[h] for h in self._failed_keys()]

    def _failed_keys(self):
        return [h for h, s in self._unfinished_states.items() if s == FAILED]

    def failures(self, retryable=None):
        """The Failures of the keys failed now (only the retryable or the
        permanent ones, if ``retryable`` says), in log order."""
        return sorted((f for f in self._failures() if retryable in (None, f.retryable)),
                      key=attrgetter("offset"))

    def remaining_bytes(self):
        return self.standing.remaining

    def _remaining_bytes(self):
        """The sum of the latest "size" of the keys to do: neither completed
        nor failed (a key never queued with a size counts 0)."""
        return (self.sizes.column_total(without=self.completed)
                - sum(size for size, in filter(None, self.sizes.latest(self._failed_keys()))))

    def recent_failures(self, limit=5):
        """The latest failures of the keys failed now, the latest first, as
        RecentFailures: with the job and time their lines tell."""
        latest = sorted(self._failed_keys(), key=lambda h: self.failure[h].offset,
                        reverse=True)[:limit]
        failures = [self.failure[h] for h in latest]
        if self._failed_jobs is not None:
            told = [self._failed_jobs[h] for h in latest]
        else:
            lines = lines_at(self._path, [f.offset for f in reversed(failures)])
            told = [_job_and_time(orjson.loads(line)) for line in reversed(lines)]
        return list(map(RecentFailure.of, failures, told))

    def common_errors(self, limit=5):
        return Counter(f.error for f in self._failures()).most_common(limit)

    def groups(self):
        unfinished = self._unfinished_states
        members = {}
        for h, value in self.group.items():
            state = COMPLETED if h in self.completed else unfinished.get(h, QUEUED)
            members.setdefault(value, Counter())[state] += 1
        return {value: _counts(tally) for value, tally in sorted(members.items())}


def _count(minutes, minute, size, since):
    """Count a completion of ``size`` bytes in its minute, if ``since``."""
    if minute >= since:
        counts = minutes.setdefault(minute, [0, 0])
        counts[0] += 1
        counts[1] += size


class _Cut(NamedTuple):
    """What a chunk of the writers' lines tells, for ``LogState._fold_cut``:
    the hashes of the keys of its events not completions and their kinds
    (None: all queued), those of its completions, its failed events and
    their offsets, the hashes and sizes of its queued jobs with a size, the
    bytes and the per-minute counts (minute -> [jobs, bytes]) of its
    completions, and its last timestamp."""
    hashes: object
    kinds: object
    done_hashes: object
    failures: object
    sized_hashes: object
    sizes: object
    bytes_done: int
    minutes: dict
    last_ts: str


def _counts(tally):
    return {"total": sum(tally.values()), "completed": tally[COMPLETED],
            "failed": tally[FAILED], "in_progress": tally[STARTED],
            "pending": tally[QUEUED] + tally[DAMAGED] + tally[CHANGED]}


def _group_value(value):
    return "(none)" if value is None else str(value)


def _is_size(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _no_cut(lines, data, base):
    """With by_field: every chunk is read with the full parser (the groups
    need each event's fields)."""
    return None
